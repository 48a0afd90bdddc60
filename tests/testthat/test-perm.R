# A stepped-wedge data set: 5 clusters going live at steps 1..5, 6 periods.
sw_data <- function(n_per_cell = 30, effect = 0.4, seed = 1) {
  set.seed(seed)
  d <- expand.grid(la = paste0("L", 1:5), step = 0:5, rep = seq_len(n_per_cell),
                   stringsAsFactors = FALSE)
  go <- c(L1 = 1, L2 = 2, L3 = 3, L4 = 4, L5 = 5)
  d$treated <- as.integer(d$step >= go[d$la])
  u <- c(L1 = -0.3, L2 = 0.2, L3 = 0, L4 = 0.4, L5 = -0.2)
  d$age <- sample(0:17, nrow(d), replace = TRUE)
  d$y <- rbinom(nrow(d), 1, plogis(-1.2 + u[d$la] + 0.05 * d$step +
                                     effect * d$treated - 0.03 * d$age))
  d
}
fv_strata <- c(L1 = "high", L2 = "high", L3 = "low", L4 = "low", L5 = "low")

# Plain R: the 12 allocations of the go-lives `gl` (named L1-L5) within the
# strata (L1, L2 high; L3-L5 low): go-live steps, or dates from which each
# child's treatment is rebuilt.
date_allocations <- function(gl) {
  high <- list(c(1, 2), c(2, 1))
  low <- list(c(3, 4, 5), c(3, 5, 4), c(4, 3, 5), c(4, 5, 3), c(5, 3, 4), c(5, 4, 3))
  out <- list()
  for (h in high) for (l in low) out[[length(out) + 1]] <- stats::setNames(gl[c(h, l)], names(gl))
  out
}

# Plain R: the treatment estimate `est(data)` refitted with the treatment
# rebuilt under each allocation (a go-live per cluster, named by cluster: the
# rows of perm_test()'s `allocations` or a list from date_allocations()); a
# row is treated when its `when` is on or after its authority's go-live.
refit_each <- function(allocs, d, est, when = "step") {
  if (is.matrix(allocs)) allocs <- lapply(seq_len(nrow(allocs)), function(i) allocs[i, ])
  vapply(allocs, function(go) {
    dd <- d
    dd$treated <- as.integer(dd[[when]] >= go[dd$la])
    est(dd)
  }, 0)
}

test_that("sw_randomise follows the protocol's stratified scheme", {
  las <- c("A", "B", "C", "D", "E")
  st <- c("low", "high", "low", "high", "low")
  a <- sw_randomise(las, strata = st, seed = 7)
  expect_equal(nrow(a$admissible), 12L)                # 2! x 3!
  expect_equal(anyDuplicated(a$admissible), 0L)
  # high-readiness authorities take steps 1-2 in every admissible allocation
  expect_true(all(a$admissible[, c("B", "D")] %in% 1:2))
  expect_true(all(a$admissible[, c("A", "C", "E")] %in% 3:5))
  expect_true(all(apply(a$admissible, 1, function(r) setequal(r, 1:5))))
  # the drawn allocation is admissible and reproducible from its seed
  drawn <- a$allocation$step[match(las, a$allocation$la)]
  expect_true(any(apply(a$admissible, 1, function(r) all(r == drawn))))
  expect_identical(sw_randomise(las, strata = st, seed = 7)$allocation, a$allocation)
  expect_equal(nrow(sw_randomise(las, seed = 7)$admissible), 120L)   # 5!
  # the user's random stream is left alone
  set.seed(99); x1 <- runif(1)
  set.seed(99); sw_randomise(las, strata = st, seed = 1); x2 <- runif(1)
  expect_identical(x1, x2)
})

test_that("sw_randomise rejects bad input", {
  expect_snapshot(sw_randomise(c("A", "A"), seed = 1), error = TRUE)
  expect_snapshot(sw_randomise(c("A", "B")), error = TRUE)
  expect_snapshot(sw_randomise(c("A", "B"), strata = "high", seed = 1), error = TRUE)
})

test_that("model statistic equals a plain-R loop refitting glm under each allocation", {
  d <- sw_data()
  fit <- glm(y ~ treated + factor(step) + la + age, binomial, data = d)
  res <- perm_test(fit, stratum = fv_strata, data = d)
  # Plain R: the 12 allocations permute go-live steps within strata.
  est <- refit_each(date_allocations(c(L1 = 1, L2 = 2, L3 = 3, L4 = 4, L5 = 5)), d, function(dd)
    coef(glm(y ~ treated + factor(step) + la + age, binomial, data = dd))[["treated"]])
  obs <- coef(fit)[["treated"]]
  expect_equal(res$estimate, obs)
  expect_equal(sort(res$statistics), sort(est), tolerance = 1e-10)
  expect_equal(res$p_value, mean(abs(est) >= abs(obs) - 1e-12))
  expect_equal(res$n_allocations, 12L)
  expect_false(res$can_reject)
  expect_equal(res$min_p, 1 / 12)
  expect_match(res$note, "can never reject")
  all120 <- perm_test(fit, strata = FALSE, data = d)
  expect_equal(all120$n_allocations, 120L)
  expect_true(all120$can_reject)
})

test_that("model statistic refits lme4::glmer like a plain-R loop", {
  skip_if_not_installed("lme4")
  d <- sw_data(n_per_cell = 25, seed = 3)
  fit <- lme4::glmer(y ~ treated + factor(step) + (1 | la), family = binomial, data = d)
  res <- perm_test(fit, stratum = fv_strata, data = d)
  est <- refit_each(res$allocations, d, function(dd)
    lme4::fixef(lme4::glmer(y ~ treated + factor(step) + (1 | la),
                            family = binomial, data = dd))[["treated"]])
  expect_equal(res$statistics, unname(est), tolerance = 1e-8)
  expect_equal(res$p_value, mean(abs(est) >= abs(lme4::fixef(fit)[["treated"]]) - 1e-12))
})

test_that("NPWP statistic matches the hand-derived value", {
  # Three clusters, periods 0-2; A goes live at 1, B at 2, C never.
  # Period 1: A = 5 treated; B = 1, C = 3 control: theta = 5 - 2 = 3,
  #   pooled variance = var(1, 3) = 2 on 1 df, w = 1 / (2 * (1 + 1/2)) = 1/3.
  # Period 2: A = 7, B = 3 treated; C = 1 control: theta = 5 - 1 = 4,
  #   pooled SS = 2^2 + 2^2 = 8 on 1 df, w = 1 / (8 * (1/2 + 1)) = 1/12.
  # Estimate = (3/3 + 4/12) / (1/3 + 1/12) = 16/5.
  d <- data.frame(la = rep(c("A", "B", "C"), 3), step = rep(0:2, each = 3),
                  y = c(2, 2, 2, 5, 1, 3, 7, 3, 1))
  d$treated <- as.integer((d$la == "A" & d$step >= 1) | (d$la == "B" & d$step >= 2))
  res <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d, adjust = FALSE)
  expect_equal(res$estimate, 16 / 5)
  expect_equal(res$n_allocations, 6L)   # 3! sequences for 3 distinct go-lives
})

# Plain-R reference of Thompson et al.'s statistic on cluster-period means.
npwp_ref <- function(d, go) {
  cp <- aggregate(y ~ la + step, d, mean)
  cp$tr <- cp$step >= go[cp$la]
  num <- den <- 0
  for (j in unique(cp$step)) {
    a <- cp$y[cp$step == j & cp$tr]; b <- cp$y[cp$step == j & !cp$tr]
    if (!length(a) || !length(b) || length(a) + length(b) < 3) next
    s2 <- (sum((a - mean(a))^2) + sum((b - mean(b))^2)) / (length(a) + length(b) - 2)
    w <- 1 / (s2 * (1 / length(a) + 1 / length(b)))
    num <- num + w * (mean(a) - mean(b)); den <- den + w
  }
  num / den
}

test_that("NPWP p-value and statistics equal a plain-R reference", {
  d <- sw_data(n_per_cell = 40, seed = 11)
  res <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d, adjust = FALSE)
  go <- c(L1 = 1, L2 = 2, L3 = 3, L4 = 4, L5 = 5)
  ref <- apply(res$allocations, 1, function(g) npwp_ref(d, g))
  expect_equal(res$statistics, unname(ref), tolerance = 1e-12)
  obs <- npwp_ref(d, go)
  expect_equal(res$estimate, obs, tolerance = 1e-12)
  expect_equal(res$p_value, mean(abs(ref) >= abs(obs) - 1e-12))
  # The CI inverts the test: at its ends the p-value crosses alpha.
  ci <- res$conf_int
  expect_true(ci[1] < obs && obs < ci[2])
  shifted_p <- function(theta) {
    dd <- d
    dd$y <- dd$y - theta * dd$treated
    ps <- apply(res$allocations, 1, function(g) npwp_ref(dd, g))
    mean(abs(ps) >= abs(npwp_ref(dd, go)) - 1e-12)
  }
  expect_ci_inverts(shifted_p, ci)
})

test_that("covariate adjustment uses null-model residuals", {
  d <- sw_data(n_per_cell = 40, seed = 5)
  res <- perm_test(y ~ age, statistic = "npwp", strata = FALSE, data = d)
  null <- glm(y ~ factor(step) + age, binomial, data = d)
  dd <- d
  dd$y <- d$y - fitted(null)
  expect_equal(res$estimate,
               npwp_ref(dd, c(L1 = 1, L2 = 2, L3 = 3, L4 = 4, L5 = 5)),
               tolerance = 1e-10)
})

test_that("sampling is used past max_enumerate and is reproducible", {
  d <- sw_data(n_per_cell = 10, seed = 2)
  a <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d,
                 adjust = FALSE, max_enumerate = 10, n_perm = 50, seed = 4)
  b <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d,
                 adjust = FALSE, max_enumerate = 10, n_perm = 50, seed = 4)
  expect_true(a$sampled)
  expect_identical(a$statistics, b$statistics)
  expect_equal(a$min_p, 1 / 51)
})

test_that("perm_test rejects bad input clearly", {
  d <- sw_data(n_per_cell = 5)
  fit <- glm(y ~ treated + factor(step) + la, binomial, data = d)
  expect_snapshot(perm_test(fit, data = d), error = TRUE)          # no strata given
  bad <- d; bad$treated[1] <- 2L
  expect_snapshot(perm_test(fit, data = bad, strata = FALSE), error = TRUE)
  back <- d; back$treated[back$la == "L1" & back$step == 5] <- 0L
  expect_snapshot(perm_test(fit, data = back, strata = FALSE), error = TRUE)
  one <- d[d$la == "L1", ]
  expect_snapshot(perm_test(fit, data = one, strata = FALSE), error = TRUE)
  expect_snapshot(perm_test(fit, data = d[, -1], strata = FALSE), error = TRUE)
})

test_that("model statistic on an sw_glmm fit equals refitting sw_glmm under each allocation", {
  d <- sw_data(n_per_cell = 30, seed = 9)
  fit <- sw_glmm(y ~ treated + factor(step) + age + (1 | la), d)
  res <- perm_test(fit, stratum = fv_strata, data = d)
  est <- refit_each(res$allocations, d, function(dd)
    coef(sw_glmm(y ~ treated + factor(step) + age + (1 | la), dd))[["treated"]])
  expect_equal(res$statistics, unname(est), tolerance = 1e-6)
  expect_equal(res$estimate, coef(fit)[["treated"]])
  skip_if_not_installed("lme4")
  # glmer converged tightly, so that the comparison tests sw_glmm, not
  # glmer's default stopping rule
  g <- lme4::glmer(y ~ treated + factor(step) + age + (1 | la), family = binomial, data = d,
                   control = lme4::glmerControl(optimizer = "bobyqa",
                                                optCtrl = list(rhoend = 1e-10, maxfun = 1e5)))
  rg <- perm_test(g, stratum = fv_strata, data = d)
  expect_equal(res$statistics, rg$statistics, tolerance = 1e-4)   # the issue's glmer tolerance
  expect_equal(res$p_value, rg$p_value)
})

# Absence-shaped stepped-wedge data for the nested model: children of the
# five authorities seen in three consecutive steps, sessions missed out of
# sessions possible.
sw_nested_data <- function(m = 20, seed = 31) {
  set.seed(seed)
  go <- c(L1 = 1, L2 = 2, L3 = 3, L4 = 4, L5 = 5)
  kids <- expand.grid(child = seq_len(m), la = names(go), stringsAsFactors = FALSE)
  kids$child_id <- paste0("c", kids$child)
  kid <- rep(seq_len(nrow(kids)), each = 3)
  d <- kids[kid, ]
  d$step <- sample(0:3, nrow(kids), TRUE)[kid] + rep(0:2, nrow(kids))
  d$treated <- as.integer(d$step >= go[d$la])
  ua <- c(L1 = -0.3, L2 = 0.2, L3 = 0, L4 = 0.4, L5 = -0.2)
  vc <- rnorm(nrow(kids), sd = 0.9)[kid]
  d$possible <- sample(20:60, nrow(d), TRUE)
  d$missed <- rbinom(nrow(d), d$possible, plogis(-2 + 0.3 * d$treated + ua[d$la] + vc))
  d
}

test_that("a nested binomial sw_glmm is refitted from the observed fit, with the cold refits' statistics", {
  d <- sw_nested_data()
  f <- cbind(missed, possible - missed) ~ treated + factor(step) + (1 | la / child_id)
  fit <- sw_glmm(f, d, control = list(tol = 1e-11))
  expect_true(all(fit$sigma > 0.05))  # both SDs away from the boundary
  # every refit starts from the observed fit's estimates, with its control
  log <- new.env()
  log$seen <- list()
  trace("nested_fit", where = asNamespace("sfpceval"), print = FALSE,
        tracer = bquote(assign("seen", c(.(log)$seen, list(list(start = start, tol = ctrl$tol))),
                               envir = .(log))))
  res <- perm_test(fit, stratum = fv_strata, data = d)
  untrace("nested_fit", where = asNamespace("sfpceval"))
  seen <- log$seen
  expect_length(seen, nrow(res$allocations) + 1L)
  expect_true(all(vapply(seen, function(s) identical(unname(s$start$theta), unname(fit$theta)), TRUE)))
  expect_true(all(vapply(seen, function(s) s$tol, 0) == 1e-11))
  # plain R: each allocation refitted cold, as perm_test() did before
  cold <- refit_each(res$allocations, d, function(dd)
    coef(suppressMessages(sw_glmm(f, dd, control = list(tol = 1e-11))))[["treated"]])
  expect_equal(res$statistics, unname(cold), tolerance = 1e-6)
  expect_equal(res$estimate, coef(fit)[["treated"]])
  expect_equal(res$p_value, mean(abs(cold) >= abs(coef(fit)[["treated"]]) - 1e-12))
  skip_if_not_installed("lme4")
  g <- lme4::glmer(f, family = binomial, data = d,
                   control = lme4::glmerControl(optimizer = "bobyqa",
                                                optCtrl = list(rhoend = 1e-10, maxfun = 1e5)))
  rg <- perm_test(g, stratum = fv_strata, data = d)
  expect_equal(res$statistics, rg$statistics, tolerance = 1e-4)   # the issue's glmer tolerance
  expect_equal(res$p_value, rg$p_value)
})

# ---- counting before enumerating (#16) -----------------------------------------

test_that("allocations are counted before they are listed (ties, strata)", {
  # plain R: all permutations within groups, then distinct rows
  all_perms <- function(v) {
    if (length(v) == 1L) return(matrix(v, 1L))
    do.call(rbind, lapply(seq_along(v), function(i) cbind(v[i], all_perms(v[-i]))))
  }
  ref <- function(values, groups) {
    pg <- lapply(groups, function(g) unique(all_perms(values[g])))
    idx <- expand.grid(lapply(pg, function(m) seq_len(nrow(m))))
    out <- matrix(0, nrow(idx), length(values))
    for (k in seq_along(groups)) out[, groups[[k]]] <- pg[[k]][idx[[k]], , drop = FALSE]
    out
  }
  cases <- list(
    list(v = c(1, 2, 3, 4, 5), g = list(1:2, 3:5), n = 12),
    list(v = c(1, 1, 2, 3), g = list(1:4), n = 12),            # 4! / 2!
    list(v = c(10, 10, 20, 20, 20, 30), g = list(1:6), n = 60), # 6! / (2! 3!)
    list(v = c(5, 6, 6, 7, 7), g = list(c(1, 3), c(2, 4, 5)), n = 2 * 3))
  for (cs in cases) {
    names(cs$v) <- letters[seq_along(cs$v)]
    expect_equal(count_allocations(cs$v, cs$g), cs$n)
    e <- enumerate_allocations(cs$v, cs$g)
    r <- ref(unname(cs$v), cs$g)
    expect_equal(nrow(e), cs$n)
    expect_equal(anyDuplicated(e), 0L)
    key <- function(m) sort(apply(m, 1, paste, collapse = ","))
    expect_equal(key(e), key(r))
  }
  # far too many to list: counted in closed form, nothing listed
  expect_equal(count_allocations(stats::setNames(1:20, letters[1:20]), list(1:20)), factorial(20))
})

test_that("sw_randomise() and perm_test() on 12 unstratified clusters count, then sample", {
  a <- sw_randomise(paste0("L", 1:12), seed = 3)
  expect_null(a$admissible)
  expect_equal(a$n_admissible, factorial(12))
  expect_output(print(a), "479,001,600 admissible allocations")
  expect_equal(sw_randomise(paste0("L", 1:5), seed = 3, max_enumerate = 100)$n_admissible, 120)
  set.seed(12)
  d <- expand.grid(la = sprintf("L%02d", 1:12), step = 0:12, rep = 1:6, stringsAsFactors = FALSE)
  go <- stats::setNames(1:12, sprintf("L%02d", 1:12))
  d$treated <- as.integer(d$step >= go[d$la])
  d$y <- rnorm(nrow(d)) + 0.2 * d$treated
  res <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d, adjust = FALSE,
                   n_perm = 500, seed = 5)
  expect_true(res$sampled)
  expect_equal(res$n_allocations, factorial(12))
  expect_equal(nrow(res$allocations), 500L)
  expect_equal(res$min_p, 1 / 501)
  # each sampled allocation is a permutation of the observed go-lives
  expect_true(all(apply(res$allocations, 1, function(r) setequal(r, 1:12))))
  fit <- glm(y ~ treated + factor(step) + la, data = d)
  res2 <- perm_test(fit, strata = FALSE, data = d, n_perm = 100, seed = 5)
  expect_equal(res2$n_used, 100L)
})

# ---- permuting go-live dates (#13) -----------------------------------------------

# 5 LAs with go-lives inside their 6-month steps (the protocol's COVID
# shifts); each child's treatment comes from its own referral date.
date_data <- function(seed, n = 400) {
  set.seed(seed)
  las <- paste0("L", 1:5)
  start <- as.Date("2020-01-01")
  gl <- stats::setNames(as.Date(c("2020-08-15", "2021-02-01", "2021-09-20",
                                  "2022-01-10", "2022-10-05")), las)
  alt <- gl + c(30, 45, 20, 60, 10)
  d <- data.frame(la = sample(las, n * 5, TRUE),
                  referral_date = start + sample(0:(6 * 182), n * 5, TRUE))
  d$step <- pmin(as.integer(d$referral_date - start) %/% 183L, 5L)
  d$treated <- as.integer(d$referral_date >= gl[d$la])
  d$age <- sample(0:17, nrow(d), TRUE)
  u <- c(L1 = -0.3, L2 = 0.2, L3 = 0, L4 = 0.4, L5 = -0.2)
  d$y <- rbinom(nrow(d), 1, plogis(-1 + u[d$la] + 0.05 * d$step + 0.4 * d$treated))
  d$z <- rnorm(nrow(d)) + u[d$la] + 0.3 * d$treated
  list(d = d, gl = gl, alt = alt,
       design = list(las = data.frame(la_code = las, go_live_date = gl, alt_go_live_date = alt),
                     strata = fv_strata))
}

test_that("the model statistic permutes go-live dates within strata (glm, plain-R loop)", {
  x <- date_data(21)
  d <- x$d
  # go-lives inside steps: the period rule cannot express the treatment
  expect_true(any(tapply(d$treated, paste(d$la, d$step), function(v) length(unique(v))) > 1))
  fit <- glm(y ~ treated + factor(step) + la + age, binomial, data = d)
  expect_error(perm_test(fit, stratum = fv_strata, data = d), "not a function of the period")
  res <- perm_test(fit, stratum = fv_strata, data = d, go_live = x$gl, date = "referral_date")
  est <- refit_each(date_allocations(x$gl), d, when = "referral_date", function(dd)
    coef(glm(y ~ treated + factor(step) + la + age, binomial, data = dd))[["treated"]])
  expect_equal(res$n_allocations, 12)
  expect_equal(sort(res$statistics), sort(est), tolerance = 1e-10)
  expect_equal(res$estimate, coef(fit)[["treated"]])
  expect_equal(res$p_value, mean(abs(est) >= abs(coef(fit)[["treated"]]) - 1e-12))
  expect_equal(res$permuted, "go-live dates")
  # the design supplies dates and strata
  res_d <- perm_test(fit, x$design, data = d)
  expect_equal(res_d$statistics, res$statistics)
})

test_that("sw_glmm under permuted dates equals refitting sw_glmm on each allocation", {
  x <- date_data(22, n = 300)
  d <- x$d
  fit <- sw_glmm(y ~ treated + factor(step) + age + (1 | la), d)
  res <- perm_test(fit, x$design, data = d)
  est <- refit_each(date_allocations(x$gl), d, when = "referral_date", function(dd)
    coef(sw_glmm(y ~ treated + factor(step) + age + (1 | la), dd))[["treated"]])
  expect_equal(sort(res$statistics), sort(unname(est)), tolerance = 1e-6)
  expect_equal(res$estimate, coef(fit)[["treated"]])
})

test_that("the alternative date and the embedding exclusion permute the same way", {
  x <- date_data(23)
  d <- x$d
  d$treated <- as.integer(d$referral_date >= x$alt[d$la])
  fit <- glm(y ~ treated + factor(step) + la, binomial, data = d)
  # the Operationally Live dates did not build this treatment: an error naming rows
  expect_snapshot(perm_test(fit, x$design, data = d), error = TRUE)
  res <- perm_test(fit, x$design, data = d, go_live = "alt_go_live_date")
  est <- refit_each(date_allocations(x$alt), d, when = "referral_date", function(dd)
    coef(glm(y ~ treated + factor(step) + la, binomial, data = dd))[["treated"]])
  expect_equal(sort(res$statistics), sort(est), tolerance = 1e-10)
  # embedding: rows in a window before each go-live are excluded; the test
  # runs on the rows analysed
  d$treated <- as.integer(d$referral_date >= x$gl[d$la])
  emb <- d$referral_date >= x$gl[d$la] - 60 & d$referral_date < x$gl[d$la]
  de <- d[!emb, ]
  fe <- glm(y ~ treated + factor(step) + la, binomial, data = de)
  re <- perm_test(fe, x$design, data = de)
  est_e <- refit_each(date_allocations(x$gl), de, when = "referral_date", function(dd)
    coef(glm(y ~ treated + factor(step) + la, binomial, data = dd))[["treated"]])
  expect_equal(sort(re$statistics), sort(est_e), tolerance = 1e-10)
})

test_that("NPWP with go-lives inside periods: one summary per cluster, period and arm", {
  x <- date_data(24)
  d <- x$d
  res <- perm_test(z ~ 1, x$design, statistic = "npwp", data = d, adjust = FALSE)
  # plain R: cluster-period-arm means, Thompson's weighted within-period difference
  npwp_ref <- function(tr) {
    m <- aggregate(z ~ la + step + tr, data.frame(d, tr = tr), mean)
    num <- den <- 0
    for (j in unique(m$step)) {
      a <- m$z[m$step == j & m$tr == 1]
      b <- m$z[m$step == j & m$tr == 0]
      if (!length(a) || !length(b) || length(a) + length(b) < 3) next
      s2 <- (sum((a - mean(a))^2) + sum((b - mean(b))^2)) / (length(a) + length(b) - 2)
      w <- 1 / (s2 * (1 / length(a) + 1 / length(b)))
      num <- num + w * (mean(a) - mean(b))
      den <- den + w
    }
    num / den
  }
  ref <- vapply(date_allocations(x$gl), function(g) npwp_ref(as.integer(d$referral_date >= g[d$la])), 0)
  expect_equal(sort(res$statistics), sort(ref), tolerance = 1e-12)
  expect_equal(res$estimate, npwp_ref(d$treated), tolerance = 1e-12)
})

test_that("no admissible allocation other than the observed one is an error", {
  x <- date_data(25)
  d <- x$d
  fit <- glm(y ~ treated + factor(step) + la, binomial, data = d)
  one_each <- stats::setNames(paste0("s", 1:5), names(x$gl))
  expect_snapshot(perm_test(fit, data = d, go_live = x$gl, stratum = one_each), error = TRUE)
  expect_snapshot(perm_test(fit, data = d, go_live = x$gl[1:4], strata = FALSE), error = TRUE)
  expect_snapshot(perm_test(fit, data = d, go_live = x$gl, date = "when", strata = FALSE), error = TRUE)
})

test_that("the model statistic on a gaussian sw_glmm refits the LMM under each allocation of dates", {
  x <- date_data(26, n = 150)
  d <- x$d
  f <- z ~ treated + factor(step) + (1 | la)   # a formula held in a variable
  fit <- sw_glmm(f, d, family = gaussian())
  res <- perm_test(fit, x$design, data = d)
  est <- refit_each(date_allocations(x$gl), d, when = "referral_date", function(dd)
    coef(suppressMessages(sw_glmm(z ~ treated + factor(step) + (1 | la), dd, family = gaussian())))[["treated"]])
  expect_equal(sort(res$statistics), sort(unname(est)), tolerance = 1e-10)
  expect_equal(res$estimate, coef(fit)[["treated"]])
})
