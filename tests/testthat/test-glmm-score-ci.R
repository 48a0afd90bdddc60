# The binomial GLMM with an offset, and the confidence interval of its score
# bootstrap by test inversion (#13).

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
# offset, each cluster's mode by optimize().
ref_laplace_ll <- function(th, X, y, cl, off) {
  p <- ncol(X)
  eta <- drop(X %*% th[1:p]) + off
  s <- th[p + 1]
  sum(vapply(split(seq_along(y), cl), function(i) {
    h <- function(u) sum(y[i] * (eta[i] + s * u) - log1p(exp(eta[i] + s * u))) - u^2 / 2
    m <- optimize(h, c(-10, 10), maximum = TRUE, tol = 1e-12)$maximum
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
