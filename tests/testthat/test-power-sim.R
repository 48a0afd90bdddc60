test_that("the trial simulator hits the baseline rate and the ICC", {
  d <- power_design(m = 2600)
  # the calibration itself, against integrate()
  mu <- d$intercept; s <- d$sigma
  m1 <- integrate(function(b) plogis(mu + s * b) * dnorm(b), -Inf, Inf)$value
  m2 <- integrate(function(b) plogis(mu + s * b)^2 * dnorm(b), -Inf, Inf)$value
  expect_equal(m1, 0.04, tolerance = 1e-8)
  expect_equal((m2 - m1^2) / (0.04 * 0.96), 0.01566, tolerance = 1e-6)
  # and in draws: 400 trials x 5 clusters of 15,600 children
  r <- vapply(1:400, function(i) {
    c <- simulate_trial(d, 0, seed = i)
    as.numeric(tapply(c$s, c$cluster, sum) / tapply(c$n, c$cluster, sum))
  }, numeric(5))
  se_mean <- sqrt(0.01566 * 0.04 * 0.96 / length(r))
  expect_lt(abs(mean(r) - 0.04), 4 * se_mean)
  icc_hat <- var(as.vector(r)) / (0.04 * 0.96) - 1 / 15600
  # sampling SD of a variance from 2,000 draws: about var * sqrt(2 / 2000)
  expect_lt(abs(icc_hat - 0.01566), 4 * 0.01566 * sqrt(2 / 2000) + 0.002)
})

test_that("the effect is a marginal risk difference", {
  d <- power_design(m = 100)
  th <- sfpceval:::effect_to_theta(0.01, d)
  m1 <- integrate(function(b) plogis(d$intercept + th + d$sigma * b) * dnorm(b), -Inf, Inf)$value
  expect_equal(m1, 0.05, tolerance = 1e-8)
  expect_equal(sfpceval:::effect_to_theta(0, d), 0)
})

test_that("the GLMM on simulated cells equals sw_glmm() on the rows", {
  d <- power_design(m = 150, covariates = list(age = list(prevalence = c(0.6, 0.4),
                                                          log_odds = c(0, 0.5))))
  cells <- simulate_trial(d, 0.02, seed = 3)
  rows <- sfpceval:::expand_cells(cells, d)
  expect_equal(nrow(rows), sum(d$m))
  f1 <- sfpceval:::glmm_fit_trial(cells, d)
  f2 <- sw_glmm(y ~ treated + factor(period) + age2 + (1 | cluster), rows)
  expect_equal(unname(f1$coefficients), unname(coef(f2)), tolerance = 1e-8)
  expect_equal(unname(f1$sigma), unname(f2$sigma), tolerance = 1e-8)
  expect_equal(unname(sqrt(diag(f1$vcov))), unname(sqrt(diag(vcov(f2)))), tolerance = 1e-6)
  # the permutation analysis equals perm_test() on that sw_glmm fit
  p1 <- sfpceval:::power_glmm_perm(cells, d)
  strata <- setNames(d$strata, 1:5)
  rows$cl <- as.character(rows$cluster)
  f3 <- sw_glmm(y ~ treated + factor(period) + age2 + (1 | cl), rows)
  p2 <- perm_test(f3, data = rows, cluster = "cl", period = "period", stratum = strata)
  expect_equal(p1[3], p2$p_value)
  expect_equal(p1[1], p2$estimate, tolerance = 1e-8)
})

test_that("glmm_perm's p-value is never below the smallest attainable one (the observed allocation ties with itself)", {
  # with a strong effect the observed statistic is the most extreme; its own
  # allocation must count, so p = 1 / (number of allocations) at least
  d <- power_design(m = 150)
  n_alloc <- nrow(sfpceval:::power_perm_allocations(d)$allocations)
  p <- vapply(1:4, function(s) sfpceval:::power_glmm_perm(simulate_trial(d, 0.08, seed = s), d)[3], 0)
  expect_true(all(p >= 1 / n_alloc - 1e-12))
  expect_true(all(p * n_alloc == round(p * n_alloc)))
})

test_that("the same seed gives the same answer serially and in parallel", {
  d <- power_design(m = 200)
  a <- power_sim(d, effect = 0.02, n_sims = 6, parallel = FALSE, seed = 7)
  b <- power_sim(d, effect = 0.02, n_sims = 6, parallel = TRUE, cores = 2, seed = 7)
  expect_identical(a$replicates, b$replicates)
  skip_if_not_installed("future.apply")
  cc <- power_sim(d, effect = 0.02, n_sims = 6, parallel = "future", seed = 7)
  expect_identical(a$replicates, cc$replicates)
  expect_false(identical(a$replicates, power_sim(d, 0.02, n_sims = 6, parallel = FALSE, seed = 8)$replicates))
})

test_that("simulated power agrees with Hussey & Hughes where the models coincide", {
  # continuous outcome, 20 clusters (4 per step), known period effects zero
  d <- power_design(go_live = rep(1:5, each = 4), m = 20, outcome = "continuous",
                    sd = 1, icc = 0.05)
  ps <- power_sim(d, effect = 0.2, n_sims = 400, parallel = FALSE, seed = 1)
  hh <- sw_power(clusters_per_step = 4, steps = 5, m = 20, sd = 1, icc = 0.05,
                 effect = 0.2, icc_scale = "total")
  an <- hh$power$power
  mc_se <- sqrt(an * (1 - an) / 400)
  expect_lt(abs(ps$results$power - an), 3 * mc_se)
  expect_lt(abs(ps$results$bias), 4 * sd(ps$replicates$estimate) / sqrt(400))
  expect_gt(ps$results$coverage, 0.92)
})

test_that("the DiD analysis runs the real did_fit() and reports the null rejection rate", {
  d <- power_design("did", m = 100)
  ps <- power_sim(d, effect = 0.03, n_sims = 5, parallel = FALSE, null = TRUE)
  cells <- simulate_trial(d, 0, seed = 1)
  rows <- sfpceval:::expand_cells(cells, d)
  fit <- did_fit(y ~ treated | cluster + period, rows, cluster = ~cluster,
                 family = "gaussian", vcov = "CR2")
  expect_equal(sfpceval:::power_did(cells, d)[1], fit$coefficients[["treated"]])
  expect_true("null_rejection" %in% names(ps$results))
  expect_equal(ps$results$truth, 0.03)
})

test_that("the DiD analysis on cell sufficient statistics equals did_fit() on one row per child", {
  # estimate, CR2 standard error, Satterthwaite p-value and interval, with and
  # without covariate patterns
  for (covs in list(NULL, list(risk = list(prevalence = c(0.5, 0.3, 0.2), log_odds = c(0, 0.3, -0.2))))) {
    d <- power_design("did", m = 80, covariates = covs)
    for (seed in 1:2) {
      cells <- simulate_trial(d, 0.02, seed = seed)
      rows <- sfpceval:::expand_cells(cells, d)
      rhs <- paste(paste(c("treated", colnames(d$patterns$X)), collapse = " + "), "| cluster + period")
      f <- as.formula(paste("y ~", rhs))
      fit <- did_fit(f, rows, cluster = ~cluster, family = "gaussian", vcov = "CR2")
      r <- sfpceval:::did_term(fit, "treated")
      q <- qt(0.975, r$df)
      expect_equal(sfpceval:::power_did(cells, d),
                   c(r$estimate, r$std.error, r$p.value, r$estimate - q * r$std.error,
                     r$estimate + q * r$std.error), tolerance = 1e-10)
      # CR3 and CR1 on cells with frequency weights equal the rows' too
      cw <- cells[cells$n > 0, ]
      cw$ybar <- cw$s / cw$n
      if (ncol(d$patterns$X)) cw <- cbind(cw, d$patterns$X[cw$pattern, , drop = FALSE])
      fc <- suppressMessages(did_fit(as.formula(paste("ybar ~", rhs)), cw, cluster = ~cluster, weights = ~n,
                                     family = "gaussian", vcov = "CR0"))
      for (type in c("CR1", "CR3")) {
        expect_equal(vcov(sfpceval:::did_freq_weights(fc, type)), vcov(update(fit, vcov = type)),
                     tolerance = 1e-10)
      }
    }
  }
})

test_that("power designs reject bad input", {
  expect_snapshot(power_design(icc = 1), error = TRUE)
  expect_snapshot(power_design(p0 = 0), error = TRUE)
  expect_snapshot(power_design(go_live = 1), error = TRUE)
  expect_snapshot(power_design(go_live = c(1, Inf)), error = TRUE)
  expect_snapshot(power_sim(power_design(m = 10), effect = 0.99, n_sims = 1), error = TRUE)
  expect_snapshot(power_sim(power_design(m = 10), effect = 0.01, n_sims = 0), error = TRUE)
})

test_that("the Monte Carlo interval is Wilson's", {
  # equals prop.test() without continuity correction, which is Wilson's
  expect_equal(sfpceval:::wilson_interval(30, 100),
               as.numeric(prop.test(30, 100, correct = FALSE)$conf.int))
  expect_equal(sfpceval:::wilson_interval(0, 5)[1], 0)
})

test_that("glmm_perm counts allocations and samples them once per design (20 clusters)", {
  d <- power_design(go_live = 1:20, periods = 21, m = 40)
  al <- power_perm_allocations(d, max_enumerate = 10000, n_perm = 200, seed = 4)
  expect_true(al$sampled)
  expect_equal(al$count, factorial(20))
  expect_equal(dim(al$allocations), c(200L, 20L))
  expect_true(all(apply(al$allocations, 1, function(r) setequal(r, 1:20))))
  ps <- power_sim(d, effect = 0.02, n_sims = 2, analysis = "glmm_perm", parallel = FALSE,
                  n_perm = 200, seed = 4)
  expect_equal(sum(is.na(ps$replicates$p.value)), 0L)
  # replicate 1 by hand: the same trial, the same 200 allocations
  cells <- with_stream(replicate_streams(4, 1)[[1]], simulate_trial_cells(d, effect_to_theta(0.02, d)))
  fit <- glmm_fit_trial(cells, d, se = FALSE)
  per <- attr(fit$cells, "period")
  st <- apply(al$allocations, 1, function(g) {
    coef(sw_glmm_refit(fit, as.integer(per >= g[fit$cells$cell_cluster]), se = FALSE))[["treated"]]
  })
  obs <- coef(fit)[["treated"]]
  expect_equal(ps$replicates$p.value[1], (1 + sum(abs(st) >= abs(obs) - 1e-12 * max(1, abs(obs)))) / 201)
  expect_equal(ps$replicates$estimate[1], obs)
  # the stratified Family Valued design is enumerated: 2! x 3!
  a5 <- power_perm_allocations(power_design())
  expect_false(a5$sampled)
  expect_equal(nrow(a5$allocations), 12L)
})
