# The binomial GLMM with an offset, and the confidence interval of its score
# bootstrap by test inversion (#13).

# wild_boot()'s GLMM score bootstrap (variant = "score"; below 10 clusters
# the default is the CR3 t-test), its few-clusters warning muffled (tested in
# test-glmm-boot.R)
score_boot_of <- function(fit, ...) {
  withCallingHandlers(wild_boot(fit, ..., variant = "score"),
                      sfpceval_few_clusters = function(w) invokeRestart("muffleWarning"))
}

offset_data <- function(seed = 1, n = 30) {
  set.seed(seed)
  las <- paste0("L", 1:5)
  d <- expand.grid(la = las, period = 0:3, rep = seq_len(n), stringsAsFactors = FALSE)
  d$treated <- as.integer(d$period >= match(d$la, las) - 1)
  d$x <- round(rnorm(nrow(d)), 2)
  d$z <- round(runif(nrow(d), -1, 1), 2)
  d$off <- 0.3 * d$treated + 0.5 * d$z
  u <- rnorm(5, sd = 0.5)[match(d$la, las)]
  d$y <- rbinom(nrow(d), 1, plogis(-0.8 + 0.1 * d$period + 0.4 * d$x + d$off + u))
  d
}

# Binomial cells of the rows with the offset as a per-cell value (rows with
# the same cluster, model-matrix row and offset share a cell), and the fit
# of those cells by the package's Laplace / AGQ code.
offset_fit <- function(X, y, la, off, Q = 1L) {
  las <- sort(unique(la))
  cells <- binom_cells(cbind(X, .off = off), y, match(la, las), length(las))
  k <- ncol(cells$X)
  cells$offset <- unname(cells$X[, k])
  cells$X <- cells$X[, -k, drop = FALSE]
  cells$gh <- gauss_hermite(Q)
  cells$u0 <- double(0)
  info <- list(levels = las, groups = "la", Q = Q, sigma_fixed = NULL, trt_info = NULL,
               loglik_const = 0)
  binom_estimate(cells, info, glmm_control(list()))
}

# Plain R: the Laplace log-likelihood of a random-intercept logit with an
# offset, each cluster's mode by 50 Newton steps (to machine precision, so
# that the log-likelihood can be differenced twice).
ref_laplace_ll <- function(th, X, y, cl, off) {
  p <- ncol(X)
  eta <- drop(X %*% th[1:p]) + off
  s <- th[p + 1]
  sum(vapply(split(seq_along(y), cl), function(i) {
    h <- function(u) sum(y[i] * (eta[i] + s * u) - log1p(exp(eta[i] + s * u))) - u^2 / 2
    m <- 0
    for (it in 1:50) {
      pr <- plogis(eta[i] + s * m)
      m <- m + (s * sum(y[i] - pr) - m) / (1 + s^2 * sum(pr * (1 - pr)))
    }
    pr <- plogis(eta[i] + s * m)
    h(m) - 0.5 * log(1 + s^2 * sum(pr * (1 - pr)))
  }, 0))
}

test_that("a binomial GLMM with an offset equals a plain-R Laplace fit and lme4::glmer(offset =)", {
  d <- offset_data()
  X <- model.matrix(~ factor(period) + x, d)
  f1 <- offset_fit(X, d$y, d$la, d$off, 1L)
  expect_true(f1$converged)
  p <- ncol(X)
  cl <- match(d$la, sort(unique(d$la)))
  # the log-likelihood with the offset at any point, and the maximum
  th <- c(coef(f1) + 0.05, 0.7)
  expect_equal(binom_eval(f1$cells, th[1:p], th[p + 1])$loglik, ref_laplace_ll(th, X, d$y, cl, d$off),
               tolerance = 1e-9)
  ref <- optim(f1$theta, function(t) -ref_laplace_ll(t, X, d$y, cl, d$off), method = "BFGS",
               control = list(reltol = 1e-14, maxit = 500))
  expect_equal(f1$loglik, -ref$value, tolerance = 1e-9)
  expect_equal(unname(f1$theta), unname(ref$par), tolerance = 1e-4)
  # an offset that is a multiple of a column of X moves that coefficient only
  f2 <- offset_fit(X, d$y, d$la, 0.25 * d$x, 1L)
  g2 <- offset_fit(X, d$y, d$la, 0 * d$x, 1L)
  expect_equal(unname(coef(f2)), unname(coef(g2) - c(0, 0, 0, 0, 0.25)), tolerance = 1e-7)
  skip_if_not_installed("lme4")
  for (Q in c(1L, 9L)) {
    f <- if (Q == 1L) f1 else offset_fit(X, d$y, d$la, d$off, Q)
    g <- lme4::glmer(y ~ factor(period) + x + (1 | la), family = binomial, data = d,
                     offset = d$off, nAGQ = Q,
                     control = lme4::glmerControl(optimizer = "bobyqa",
                                                  optCtrl = list(rhobeg = 0.01, rhoend = 1e-10)))
    expect_equal(unname(coef(f)), unname(lme4::fixef(g)), tolerance = 1e-5)
    expect_equal(unname(f$sigma), unname(lme4::getME(g, "theta")), tolerance = 1e-4)
    expect_equal(f$loglik, as.numeric(logLik(g)), tolerance = 1e-7)
  }
})

test_that("a zero offset leaves the binomial fit bit-identical; C checks the offset", {
  d <- offset_data(seed = 2)
  fit <- sw_glmm(y ~ treated + factor(period) + x + (1 | la), d)
  for (Q in c(1L, 5L)) {
    cells <- fit$cells
    cells$gh <- gauss_hermite(Q)
    info <- fit$info
    info$Q <- Q
    a <- binom_estimate(cells, info, fit$ctrl)
    cells$offset <- double(nrow(cells$X))
    b <- binom_estimate(cells, info, fit$ctrl)
    keep <- c("coefficients", "vcov", "vcov_theta", "sigma", "loglik", "iterations", "ranef", "treatment")
    expect_identical(b[keep], a[keep])
  }
  c0 <- fit$cells
  args <- list(c0$X, c0$s, c0$n, c0$cstart, coef(fit), 0.5, c0$gh$x, c0$gh$w, double(0), 1L, NULL)
  expect_error(do.call(.Call, c(list(ffi_glmm_binom), args, list(c(0, 1)))),
               class = "sfpceval_internal_error")
  expect_error(do.call(.Call, c(list(ffi_glmm_binom), args, list(c(NA, double(nrow(c0$X) - 1))))),
               class = "sfpceval_internal_error")
  expect_error(do.call(.Call, c(list(ffi_glmm_binom), args, list(integer(nrow(c0$X))))),
               class = "sfpceval_internal_error")
})

# ---- the score bootstrap's interval by test inversion ----------------------

ci_data <- function(seed = 3, n = 40) {
  set.seed(seed)
  las <- paste0("L", 1:5)
  d <- expand.grid(la = las, step = 0:5, rep = seq_len(n), stringsAsFactors = FALSE)
  d$treated <- as.integer(d$step >= match(d$la, las))
  u <- rnorm(5, sd = 0.4)[match(d$la, las)]
  d$y <- rbinom(nrow(d), 1, plogis(-1 + 0.05 * d$step + 0.3 * d$treated + u))
  d
}

# Plain R at the null value r: the restricted fit by glmer with r * treated
# as an offset; each cluster's score by central differences of its plain-R
# Laplace log-likelihood (ref_laplace_ll()) in the full model; the Hessian
# by central differences of the summed scores; a_g = (H^-1 s_g)_treated;
# t* for every column of V (the package's weight vectors).
ref_score_boot <- function(d, r, V) {
  X <- model.matrix(~ treated + factor(step), d)
  cl <- match(d$la, sort(unique(d$la)))
  g <- suppressMessages(lme4::glmer(y ~ factor(step) + (1 | la), family = binomial, data = d,
                                    offset = r * d$treated,
                                    control = lme4::glmerControl(optimizer = "bobyqa",
                                                                 optCtrl = list(rhoend = 1e-12))))
  th <- c(append(unname(lme4::fixef(g)), r, after = 1), unname(lme4::getME(g, "theta")))
  score <- function(t, a) {
    i <- cl == a
    vapply(seq_along(t), function(k) {
      h <- 1e-4
      tp <- tm <- t
      tp[k] <- t[k] + h
      tm[k] <- t[k] - h
      (ref_laplace_ll(tp, X[i, ], d$y[i], cl[i], 0) - ref_laplace_ll(tm, X[i, ], d$y[i], cl[i], 0)) / (2 * h)
    }, 0)
  }
  S <- t(vapply(1:5, function(a) score(th, a), th))
  H <- vapply(seq_along(th), function(k) {
    h <- 1e-4
    tp <- tm <- th
    tp[k] <- th[k] + h
    tm[k] <- th[k] - h
    rowSums(vapply(1:5, function(a) score(tp, a) - score(tm, a), th)) / (2 * h)
  }, th)
  a <- drop(S %*% solve(-(H + t(H)) / 2)[, 2])
  pig <- tabulate(cl) / length(cl)
  tstat <- function(v) { va <- v * a; N <- sum(va); N / sqrt(sum((va - pig * N)^2)) }
  t0 <- tstat(rep(1, 5))
  ts <- apply(V, 2, tstat)
  list(t = t0, tstar = ts, p = mean(abs(ts) > abs(t0) + 1e-8 * max(1, abs(t0))))
}

test_that("GLMM score bootstrap at r != 0 equals a plain-R reference (glmer restricted fit, scores by hand)", {
  skip_if_not_installed("lme4")
  d <- ci_data()
  fit <- sw_glmm(y ~ treated + factor(step) + (1 | la), d)
  V <- boot_draws(5L, "webb", "enumerate", NULL)$V
  for (r in c(-0.2, 0.35)) {
    wb <- score_boot_of(fit, "treated", r = r, conf_int = FALSE)
    expect_equal(unname(wb$restricted[2]), r)
    ref <- ref_score_boot(d, r, V)
    expect_equal(wb$statistic, ref$t, tolerance = 1e-5)
    expect_equal(wb$tstar, ref$tstar, tolerance = 1e-5)
    # p counts |t*| > |t|: equal unless a draw lies within the reference's
    # numerical error of t
    near <- sum(abs(abs(ref$tstar) - abs(ref$t)) < 1e-4 * abs(ref$t))
    expect_lte(abs(wb$p_value - ref$p), near / length(ref$tstar))
  }
})

test_that("the GLMM score bootstrap interval: ends where p crosses 1 - level, contains the estimate, warm = cold refits", {
  d <- ci_data(seed = 4)
  fit <- sw_glmm(y ~ treated + factor(step) + (1 | la), d)
  wb <- score_boot_of(fit, "treated")
  ci <- wb$conf_int
  se <- sqrt(fit$vcov["treated", "treated"])
  expect_true(all(is.finite(ci)))
  expect_true(ci[1] < wb$estimate && wb$estimate < ci[2])
  expect_gt(wb$refits$n, 10)
  # with 5 clusters the note gives the measured size (bench/glmm_ci.R)
  expect_match(wb$note, sprintf("does not hold its size: .* rejected %.1f%% of true nulls", glmm_boot_size_$score[1]))
  # p(r) by a fresh restricted fit (binom_estimate() from the estimates) at
  # the ends -/+ the inversion tolerance (1e-3 se)
  pv_at <- function(r) score_boot_of(fit, "treated", r = r, conf_int = FALSE)$p_value
  for (k in 1:2) {
    step <- 1e-3 * se * c(-1, 1)[k]
    expect_gte(pv_at(ci[k] - step), 0.05)
    expect_lt(pv_at(ci[k] + step), 0.05)
  }
  # a refit at every point of the inversion (no interpolation inside
  # brackets of 0.02 se) gives the same interval to the tolerance
  rs2 <- glmm_restricted(fit, 2L)
  V <- boot_draws(5L, "webb", "enumerate", NULL)$V
  pv_all <- function(r) score_boot_test(rs2$contrib(r)$a, rs2$pig, V, wb$estimate)$p_value
  ci_all <- invert_test(pv_all, wb$estimate, se, 0.05, rel = 1e-3, n_grid = 5L, max_double = 6)
  expect_lt(max(abs(ci_all - ci)), 1e-3 * se)
  expect_gt(rs2$refits()$n, wb$refits$n)
  # the warm-started refits along a path equal fresh ones
  j <- 2L
  rs <- glmm_restricted(fit, j)
  rr <- c(0, 0.4, -0.3, 0.41)
  warm <- lapply(rr, rs$contrib)
  for (i in seq_along(rr)) {
    cold <- glmm_restricted(fit, j)$contrib(rr[i])
    expect_equal(warm[[i]]$a, cold$a, tolerance = 1e-7)
    expect_equal(warm[[i]]$theta, cold$theta, tolerance = 1e-7)
  }
  skip_if_not_installed("lme4")
  # and the reference's p-values straddle 0.05 at the ends (a margin of
  # 0.01 se for the reference's finite differences)
  for (k in 1:2) {
    step <- 0.01 * se * c(-1, 1)[k]
    expect_gte(ref_score_boot(d, ci[k] - step, V)$p, 0.05)
    expect_lt(ref_score_boot(d, ci[k] + step, V)$p, 0.05)
  }
})

test_that("the GLMM score bootstrap interval does not depend on the row order; AGQ and boundary fits", {
  d <- ci_data(seed = 5)
  f <- y ~ treated + factor(step) + (1 | la)
  fit <- sw_glmm(f, d)
  wb <- score_boot_of(fit, "treated")
  set.seed(9)
  d2 <- d[sample(nrow(d)), ]
  wb2 <- score_boot_of(sw_glmm(f, d2), "treated")
  se <- sqrt(fit$vcov["treated", "treated"])
  expect_equal(wb2$p_value, wb$p_value)
  expect_equal(wb2$statistic, wb$statistic, tolerance = 1e-8)
  expect_lt(max(abs(wb2$conf_int - wb$conf_int)), 1e-3 * se)
  # adaptive quadrature: the Hessian by differences of the analytic gradient
  fa <- sw_glmm(f, d, nAGQ = 7)
  wa <- score_boot_of(fa, "treated")
  expect_true(wa$conf_int[1] < wa$estimate && wa$estimate < wa$conf_int[2])
  sea <- sqrt(fa$vcov["treated", "treated"])
  for (k in 1:2) {
    step <- 1e-3 * sea * c(-1, 1)[k]
    expect_gte(score_boot_of(fa, "treated", r = wa$conf_int[k] - step, conf_int = FALSE)$p_value, 0.05)
    expect_lt(score_boot_of(fa, "treated", r = wa$conf_int[k] + step, conf_int = FALSE)$p_value, 0.05)
  }
  # no between-cluster variation: the fit and its restricted fits at sigma = 0
  d3 <- d
  set.seed(6)
  d3$y <- rbinom(nrow(d3), 1, plogis(-1 + 0.3 * d3$treated))
  f3 <- suppressMessages(sw_glmm(f, d3))
  skip_if_not(isTRUE(f3$boundary))
  w3 <- score_boot_of(f3, "treated")
  expect_equal(unname(w3$restricted["sigma"]), 0)
  se3 <- sqrt(f3$vcov["treated", "treated"])
  for (k in 1:2) {
    step <- 1e-3 * se3 * c(-1, 1)[k]
    expect_gte(score_boot_of(f3, "treated", r = w3$conf_int[k] - step, conf_int = FALSE)$p_value, 0.05)
    expect_lt(score_boot_of(f3, "treated", r = w3$conf_int[k] + step, conf_int = FALSE)$p_value, 0.05)
  }
})
