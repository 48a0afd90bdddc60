# The Kline-Santos score bootstrap for the stepped-wedge GLMM.
glmm_boot_data <- function(n = 60, seed = 1) {
  set.seed(seed)
  d <- expand.grid(la = paste0("L", 1:5), step = 0:5, rep = seq_len(n), stringsAsFactors = FALSE)
  go <- c(L1 = 1, L2 = 2, L3 = 3, L4 = 4, L5 = 5)
  d$treated <- as.integer(d$step >= go[d$la])
  u <- c(L1 = -0.4, L2 = 0.3, L3 = 0, L4 = 0.5, L5 = -0.3)
  d$y <- rbinom(nrow(d), 1, plogis(-1.2 + u[d$la] + 0.05 * d$step + 0.3 * d$treated))
  d
}

test_that("cluster scores are gradients of each cluster's integrated log-likelihood", {
  d <- glmm_boot_data()
  fit <- sw_glmm(y ~ treated + factor(step) + (1 | la), d, nAGQ = 25)
  wb <- wild_boot(fit, "treated")
  theta <- wb$restricted
  expect_equal(unname(theta["treated"]), 0)
  X <- model.matrix(~ treated + factor(step), d)
  # plain R: the exact integrated log-likelihood of one cluster by integrate()
  ll_cluster <- function(th, a) {
    rows <- d$la == paste0("L", a)
    eta <- drop(X[rows, ] %*% th[1:ncol(X)])
    y <- d$y[rows]
    f <- function(b) vapply(b, function(bb) exp(sum(y * (eta + bb) - log1p(exp(eta + bb))) + 150), 0) *
      dnorm(b, 0, th[ncol(X) + 1])
    log(integrate(f, -Inf, Inf, rel.tol = 1e-12)$value) - 150
  }
  num_grad <- function(a) vapply(seq_along(theta), function(k) {
    h <- 1e-5
    tp <- tm <- theta
    tp[k] <- tp[k] + h
    tm[k] <- tm[k] - h
    (ll_cluster(tp, a) - ll_cluster(tm, a)) / (2 * h)
  }, 0)
  for (a in 1:5) expect_equal(unname(wb$scores[a, ]), num_grad(a), tolerance = 1e-5)
  # the restricted fit is a maximum in every coordinate but the treatment
  expect_equal(unname(colSums(wb$scores))[-2], rep(0, ncol(X)), tolerance = 1e-6)
  skip_if_not_installed("lme4")
  g <- lme4::glmer(y ~ factor(step) + (1 | la), family = binomial, data = d, nAGQ = 25)
  expect_equal(unname(theta[-2][1:6]), unname(lme4::fixef(g)), tolerance = 1e-4)
})

test_that("the score bootstrap p-value equals a plain-R loop over the weight vectors", {
  d <- glmm_boot_data(seed = 2)
  fit <- sw_glmm(y ~ treated + factor(step) + (1 | la), d)
  wb <- wild_boot(fit, "treated", weights = "webb")
  expect_equal(wb$B, 6^5)
  # plain R: a_g from the scores and the Hessian by finite differences of the
  # summed scores; all 6^5 Webb vectors
  S <- wb$scores
  w6 <- c(-sqrt(3 / 2), -1, -sqrt(1 / 2), sqrt(1 / 2), 1, sqrt(3 / 2))
  V <- t(as.matrix(expand.grid(rep(list(w6), 5))))
  pig <- as.numeric(table(d$la)) / nrow(d)
  tstat <- function(a, v) { va <- v * a; N <- sum(va); N / sqrt(sum((va - pig * N)^2)) }
  H <- sfpceval:::binom_hessian(fit$cells, wb$restricted, 1:8,
                                sfpceval:::binom_eval(fit$cells, wb$restricted[1:7], wb$restricted[8], 1L)$mode,
                                sfpceval:::binom_eval(fit$cells, wb$restricted[1:7], wb$restricted[8], 1L)$gradient)
  a <- drop(S %*% solve(-H)[, 2])
  t0 <- tstat(a, rep(1, 5))
  ts <- apply(V, 2, function(v) tstat(a, v))
  expect_equal(wb$statistic, t0, tolerance = 1e-10)
  expect_equal(wb$p_value_geq, mean(abs(ts) >= abs(t0) - 1e-8 * max(1, abs(t0))))
  expect_equal(sort(wb$tstar), sort(ts), tolerance = 1e-10)
})

test_that("the GLMM score bootstrap says when it cannot reject", {
  d <- glmm_boot_data(n = 30, seed = 3)
  fit <- sw_glmm(y ~ treated + factor(step) + (1 | la), d)
  wr <- wild_boot(fit, "treated", weights = "rademacher")
  expect_equal(wr$B, 32)
  expect_match(wr$note, "cannot reject")
  expect_snapshot(wild_boot(fit, "nope"), error = TRUE)
})
