# Tests for sw_glmm() (random-intercept logit GLMM, LMM) and sw_terms().
# Each estimator is checked against (1) a plain-R reference written here,
# (2) lme4, (3) hand-made cases derived on paper.

las <- paste0("LA", 1:5)

# 5 LAs x 6 periods stepped wedge: LA k goes live at the start of period k.
sim_sw <- function(nper, sd, seed, beta_trt = 0.4) {
  set.seed(seed)
  d <- expand.grid(child = seq_len(nper), period = 0:5, la = las,
                   stringsAsFactors = FALSE)
  d$treated <- as.integer(d$period >= match(d$la, las))
  d$x1 <- round(rnorm(nrow(d)), 1)
  d$sex <- factor(sample(c("F", "M"), nrow(d), TRUE))
  b <- rnorm(5, sd = sd)[match(d$la, las)]
  d$y <- rbinom(nrow(d), 1, plogis(-0.8 + beta_trt * d$treated + 0.5 * d$x1 +
                                     0.3 * (d$sex == "M") + 0.1 * d$period + b))
  d
}

# Plain-R log-likelihood of the random-intercept logit at (beta, sigma):
# one integrate() per cluster on the Bernoulli rows.
ref_loglik <- function(X, y, cl, beta, sigma) {
  eta <- drop(X %*% beta)
  sum(vapply(split(seq_along(y), cl), function(i) {
    lp <- function(b) vapply(b, function(bb) {
      sum(y[i] * (eta[i] + bb) - log1p(exp(eta[i] + bb)))
    }, 0) + stats::dnorm(b, 0, sigma, log = TRUE)
    m <- stats::optimize(lp, c(-10, 10) * max(sigma, 1), maximum = TRUE)$objective
    m + log(stats::integrate(function(b) exp(lp(b) - m), -Inf, Inf,
                             rel.tol = 1e-13, abs.tol = 0)$value)
  }, 0))
}

# Plain-R Laplace approximation: mode by optimize, curvature analytic.
ref_laplace <- function(X, y, cl, beta, sigma) {
  eta <- drop(X %*% beta)
  sum(vapply(split(seq_along(y), cl), function(i) {
    h <- function(b) sum(y[i] * (eta[i] + b) - log1p(exp(eta[i] + b))) +
      stats::dnorm(b, 0, sigma, log = TRUE)
    bh <- stats::optimize(h, c(-20, 20), maximum = TRUE, tol = 1e-12)$maximum
    p <- stats::plogis(eta[i] + bh)
    H <- sum(p * (1 - p)) + 1 / sigma^2
    h(bh) + 0.5 * log(2 * pi) - 0.5 * log(H)
  }, 0))
}

glmer_tight <- function(formula, data, nAGQ) {
  suppressMessages(lme4::glmer(formula, data, family = stats::binomial, nAGQ = nAGQ,
                               control = lme4::glmerControl(optimizer = "bobyqa",
                                                            optCtrl = list(rhoend = 1e-10, maxfun = 1e5))))
}

f_main <- y ~ treated + factor(period) + x1 + sex + (1 | la)

test_that("Gauss-Hermite rule matches the closed forms for 1 to 3 nodes", {
  # Hermite polynomials: H2 = 4x^2 - 2 has roots +-1/sqrt(2), weights sqrt(pi)/2;
  # H3 = 8x^3 - 12x has roots 0, +-sqrt(3/2), weights 2 sqrt(pi)/3, sqrt(pi)/6.
  expect_equal(gauss_hermite(1L), list(x = 0, w = sqrt(pi)))
  g2 <- gauss_hermite(2L)
  expect_equal(g2$x, c(-1, 1) / sqrt(2), tolerance = 1e-14)
  expect_equal(g2$w, rep(sqrt(pi) / 2, 2), tolerance = 1e-14)
  g3 <- gauss_hermite(3L)
  expect_equal(g3$x, c(-1, 0, 1) * sqrt(1.5), tolerance = 1e-14)
  expect_equal(g3$w, sqrt(pi) * c(1, 4, 1) / 6, tolerance = 1e-14)
  # 25 nodes integrate x^48 e^{-x^2} exactly: Gamma(24.5)
  g25 <- gauss_hermite(25L)
  expect_equal(sum(g25$w * g25$x^48), gamma(24.5), tolerance = 1e-10)
})

test_that("C likelihood equals integrate() (AGQ 25) and the plain-R Laplace", {
  d <- sim_sw(10, 0.6, 11)
  fit <- sw_glmm(f_main, d, nAGQ = 25)
  X <- stats::model.matrix(~ treated + factor(period) + x1 + sex, d)
  cl <- match(d$la, las)
  cells25 <- fit$cells
  for (pt in list(list(b = fit$coefficients, s = 0.6), list(b = fit$coefficients + 0.05, s = 1.3),
                  list(b = fit$coefficients * 0.5, s = 0.15))) {
    ref <- ref_loglik(X, d$y, cl, pt$b, pt$s)
    got <- binom_eval(cells25, pt$b, pt$s)$loglik
    expect_equal(got, ref, tolerance = 1e-8)
    # the likelihood is even in sigma (spherical parametrisation)
    expect_equal(binom_eval(cells25, pt$b, -pt$s)$loglik, got, tolerance = 1e-13)
    cells1 <- cells25
    cells1$gh <- gauss_hermite(1L)
    expect_equal(binom_eval(cells1, pt$b, pt$s)$loglik,
                 ref_laplace(X, d$y, cl, pt$b, pt$s), tolerance = 1e-9)
  }
})

test_that("analytic gradient equals central differences (Laplace and AGQ)", {
  d <- sim_sw(10, 0.6, 12)
  fit <- sw_glmm(f_main, d)
  for (Q in c(1L, 7L)) {
    cells <- fit$cells
    cells$gh <- gauss_hermite(Q)
    th <- c(fit$coefficients + 0.03, 0.8)
    p <- length(th) - 1L
    g <- binom_eval(cells, th[1:p], th[p + 1], 1L)$gradient
    num <- vapply(seq_along(th), function(j) {
      h <- 1e-5
      tp <- th
      tm <- th
      tp[j] <- tp[j] + h
      tm[j] <- tm[j] - h
      (binom_eval(cells, tp[1:p], tp[p + 1])$loglik -
         binom_eval(cells, tm[1:p], tm[p + 1])$loglik) / (2 * h)
    }, 0)
    expect_equal(g, num, tolerance = 1e-6)
  }
  # the information pieces returned for the Newton steps, against plain R
  cells <- fit$cells
  r <- binom_eval(cells, coef(fit), 0.7, 2L)
  eta <- drop(cells$X %*% coef(fit)) + 0.7 * r$mode[cells$cell_cluster]
  v <- cells$n * stats::plogis(eta) * (1 - stats::plogis(eta))
  expect_equal(r$v, v, tolerance = 1e-12, ignore_attr = TRUE)
  expect_equal(r$r, cells$s - cells$n * stats::plogis(eta), tolerance = 1e-12, ignore_attr = TRUE)
  expect_equal(r$xvx, crossprod(cells$X * sqrt(v)), tolerance = 1e-12, ignore_attr = TRUE)
  expect_equal(r$xv, rowsum(cells$X * v, cells$cell_cluster), tolerance = 1e-12, ignore_attr = TRUE)
})

test_that("exact Laplace Hessian equals central differences of the analytic gradient", {
  d <- sim_sw(10, 0.6, 12)
  fit <- sw_glmm(f_main, d)
  # Bernoulli cells, and binomial counts (successes out of trials)
  db <- expand.grid(la = las, period = 0:5, sex = c("F", "M"), stringsAsFactors = FALSE)
  set.seed(4)
  db$treated <- as.integer(db$period >= match(db$la, las))
  db$possible <- sample(20:60, nrow(db), TRUE)
  db$missed <- rbinom(nrow(db), db$possible, plogis(-1 + 0.3 * db$treated + rnorm(5)[match(db$la, las)]))
  fb <- sw_glmm(cbind(missed, possible - missed) ~ treated + factor(period) + sex + (1 | la), db)
  for (ft in list(fit, fb)) {
    cells <- ft$cells
    p <- length(coef(ft))
    # at and away from the estimate, at sigma = 0 and at a negative sigma
    # (the likelihood is even in sigma)
    for (th in list(ft$theta, c(coef(ft) + 0.05, 0.9), c(coef(ft), 0), c(coef(ft) - 0.02, -0.5))) {
      H <- binom_eval(cells, th[1:p], th[p + 1], 3L)$hessian
      num <- vapply(seq_along(th), function(j) {
        h <- 1e-5
        tp <- th
        tm <- th
        tp[j] <- tp[j] + h
        tm[j] <- tm[j] - h
        (binom_eval(cells, tp[1:p], tp[p + 1], 1L)$gradient -
           binom_eval(cells, tm[1:p], tm[p + 1], 1L)$gradient) / (2 * h)
      }, double(p + 1))
      expect_equal(H, t(H))
      expect_equal(H, num, tolerance = 1e-6)
    }
  }
  # at sigma = 0 the sigma-sigma entry is sum over clusters of (R_a^2 - V_a)
  # (derived on paper: the second-order term of E exp(sigma u R_a - ...)),
  # with R_a and V_a the cluster's residual and binomial variance sums, and
  # the beta block is the logistic regression's -X'VX
  cells <- fit$cells
  p <- length(coef(fit))
  H0 <- binom_eval(cells, coef(fit), 0, 3L)$hessian
  pr <- stats::plogis(drop(cells$X %*% coef(fit)))
  Ra <- rowsum(cells$s - cells$n * pr, cells$cell_cluster)
  Va <- rowsum(cells$n * pr * (1 - pr), cells$cell_cluster)
  expect_equal(H0[p + 1, p + 1], sum(Ra^2 - Va), tolerance = 1e-10)
  expect_equal(H0[1:p, 1:p], -crossprod(cells$X * sqrt(cells$n * pr * (1 - pr))),
               tolerance = 1e-12, ignore_attr = TRUE)
  expect_equal(H0[1:p, p + 1], double(p), tolerance = 1e-12)
  # the non-zeros by row (as binom_estimate() passes them) give the same
  # results as the dense model matrix
  cr <- cells
  cr$rows <- binom_rows(cells$X)
  for (w in 0:3) {
    expect_equal(binom_eval(cr, coef(fit) + 0.01, 0.6, w), binom_eval(cells, coef(fit) + 0.01, 0.6, w),
                 tolerance = 1e-13)
  }
  bad <- cr
  bad$rows$col[2:3] <- bad$rows$col[3:2]
  expect_error(binom_eval(bad, coef(fit), 0.6, 3L), "increasing columns")
  # only with the Laplace approximation
  cells$gh <- gauss_hermite(3L)
  expect_error(binom_eval(cells, coef(fit), 0.5, 3L), "internal error")
})

test_that("the quick full-rank check agrees with qr() and defers to it near collinearity", {
  set.seed(8)
  n <- 400
  X <- cbind(1, rbinom(n, 1, 0.3), rnorm(n), runif(n))
  expect_true(glmm_full_rank(X))
  expect_equal(qr(X)$rank, ncol(X))
  # exactly aliased, nearly aliased (qr() keeps it: 1e-6 of the norm), and
  # aliased to rounding (qr() drops it): each left to qr()
  for (eps in c(0, 1e-6, 1e-12)) {
    Xa <- cbind(X, X[, 2] + X[, 3] + eps * rnorm(n))
    expect_false(glmm_full_rank(Xa))
  }
  expect_false(glmm_full_rank(cbind(X, 0)))
  # the design error is the same as before for an aliased treatment
  d <- sim_sw(5, 0.5, 3)
  d$dup <- d$x1 * 2
  expect_error(sw_glmm(y ~ treated + x1 + dup + (1 | la), d), "dup")
})

test_that("a warm start (refit per imputation) reaches the same estimates", {
  d <- sim_sw(10, 0.6, 33)
  fit <- sw_glmm(f_main, d)
  d2 <- d
  set.seed(5)
  i <- sample(nrow(d2), 60)
  d2$sex[i] <- ifelse(d2$sex[i] == "F", "M", "F")
  cold <- sw_glmm(f_main, d2)
  warm <- sw_glmm_fit(quote(sw_glmm(f_main, d2)), f_main, d2, start = glmm_start(fit))
  expect_lt(warm$iterations, cold$iterations)
  expect_equal(coef(warm), coef(cold), tolerance = 1e-8)
  expect_equal(warm$sigma, cold$sigma, tolerance = 1e-8)
  expect_equal(warm$loglik, cold$loglik, tolerance = 1e-12)
  expect_equal(vcov(warm), vcov(cold), tolerance = 1e-8)
  expect_equal(warm$treatment, cold$treatment, tolerance = 1e-8)
  # starting values for other columns are not used
  other <- sw_glmm_fit(quote(x), y ~ treated + factor(period) + (1 | la), d2, start = glmm_start(fit))
  expect_equal(other$iterations, sw_glmm(y ~ treated + factor(period) + (1 | la), d2)$iterations)
  expect_null(glmm_start(suppressMessages(sw_glmm(y ~ treated + (1 | la), transform(d, y = x1), family = gaussian()))))
})

test_that("binomial fits agree with lme4::glmer (Laplace and 25-node AGQ)", {
  skip_if_not_installed("lme4")
  for (cfg in list(list(n = 12, sd = 0.5, seed = 21, f = f_main),
                   list(n = 15, sd = 1.0, seed = 22, f = y ~ treated + factor(period) + (1 | la)))) {
    d <- sim_sw(cfg$n, cfg$sd, cfg$seed)
    for (Q in c(1L, 25L)) {
      fit <- sw_glmm(cfg$f, d, nAGQ = Q)
      g <- glmer_tight(cfg$f, d, Q)
      expect_equal(unname(fit$coefficients), unname(lme4::fixef(g)), tolerance = 1e-4)
      expect_equal(unname(fit$sigma), unname(g@theta), tolerance = 1e-4)
      expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(g)), tolerance = 1e-4)
      expect_equal(attr(logLik(fit), "df"), attr(logLik(g), "df"))
      expect_false(fit$boundary)
      # conditional modes: b_a = sigma * u_a
      expect_equal(unname(coef(fit, type = "random")$la), unname(lme4::ranef(g)$la[, 1]), tolerance = 1e-3)
    }
  }
})

test_that("a near-zero random-effect variance is a boundary fit equal to glm", {
  skip_if_not_installed("lme4")
  d <- sim_sw(8, 0, 1)
  expect_snapshot(fit <- sw_glmm(f_main, d))
  g <- glmer_tight(f_main, d, 1L)
  expect_true(lme4::isSingular(g))
  expect_true(fit$boundary)
  expect_identical(unname(fit$sigma), 0)
  expect_equal(unname(fit$coefficients), unname(lme4::fixef(g)), tolerance = 1e-4)
  expect_equal(fit$loglik, as.numeric(logLik(g)), tolerance = 1e-4)
  gl <- stats::glm(y ~ treated + factor(period) + x1 + sex, binomial, d)
  expect_equal(fit$coefficients, stats::coef(gl), tolerance = 1e-8)
  expect_equal(fit$loglik, as.numeric(logLik(gl)), tolerance = 1e-10)
  expect_equal(sqrt(diag(vcov(fit))), sqrt(diag(stats::vcov(gl))), tolerance = 1e-5)
  out <- utils::capture.output(print(fit))
  expect_true(any(grepl("boundary", out)))
})

test_that("one cluster with sigma = 0 is the 2 x 2 table logit (derived on paper)", {
  # control: 2 events in 8, treated: 4 in 8. Logit MLE: b0 = log(2/6) = -log 3,
  # b1 = log(4/4) - log(2/6) = log 3; loglik = 2 log(1/4) + 6 log(3/4) + 8 log(1/2).
  d <- data.frame(la = "A", treated = rep(0:1, each = 8),
                  y = c(1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0))
  fit <- sw_glmm(y ~ treated + (1 | la), d, sigma = 0)
  expect_equal(unname(coef(fit)), c(-log(3), log(3)), tolerance = 1e-10)
  expect_equal(fit$loglik, 2 * log(1 / 4) + 6 * log(3 / 4) + 8 * log(1 / 2), tolerance = 1e-12)
  # SE of log OR: sqrt(1/2 + 1/6 + 1/4 + 1/4)
  expect_equal(unname(sqrt(vcov(fit)[2, 2])), sqrt(1 / 2 + 1 / 6 + 1 / 4 + 1 / 4), tolerance = 1e-6)
  expect_equal(fit$ncells, 2L)
  # risk difference at sigma = 0: 4/8 - 2/8 for both definitions
  expect_equal(fit$treatment$risk_difference$estimate, c(0.25, 0.25), tolerance = 1e-10)
  expect_equal(fit$treatment$odds_ratio$odds_ratio, 3, tolerance = 1e-10)
  expect_snapshot(sw_glmm(y ~ treated + (1 | la), d), error = TRUE)
})

test_that("risk differences equal a plain-R computation", {
  d <- sim_sw(15, 0.8, 31)
  fit <- sw_glmm(f_main, d)
  b <- coef(fit)
  s <- unname(fit$sigma)
  mm <- function(v) {
    d2 <- d
    d2$treated <- v
    stats::model.matrix(~ treated + factor(period) + x1 + sex, d2)
  }
  e1 <- drop(mm(1) %*% b)
  e0 <- drop(mm(0) %*% b)
  cond <- mean(stats::plogis(e1)) - mean(stats::plogis(e0))
  marg_one <- function(e) stats::integrate(function(z) stats::plogis(e + s * z) * stats::dnorm(z),
                                           -Inf, Inf, rel.tol = 1e-12)$value
  marg <- mean(vapply(e1, marg_one, 0)) - mean(vapply(e0, marg_one, 0))
  rd <- fit$treatment$risk_difference
  expect_equal(rd$estimate[rd$type == "conditional"], cond, tolerance = 1e-10)
  expect_equal(rd$estimate[rd$type == "marginal"], marg, tolerance = 1e-8)
  expect_equal(fit$treatment$odds_ratio$odds_ratio, unname(exp(b["treated"])))
})

test_that("risk difference with a treatment x readiness interaction equals plain R", {
  d <- sim_sw(12, 0.5, 33)
  d$high_readiness <- as.integer(d$la %in% c("LA1", "LA2"))
  f <- y ~ treated * high_readiness + factor(period) + (1 | la)
  fit <- suppressMessages(sw_glmm(f, d))
  expect_false(fit$trt_info$main_only)
  b <- coef(fit)
  X1 <- stats::model.matrix(~ treated * high_readiness + factor(period), transform(d, treated = 1))
  X0 <- stats::model.matrix(~ treated * high_readiness + factor(period), transform(d, treated = 0))
  rd <- fit$treatment$risk_difference
  expect_equal(rd$estimate[rd$type == "conditional"],
               mean(stats::plogis(X1 %*% b)) - mean(stats::plogis(X0 %*% b)), tolerance = 1e-10)
  expect_snapshot(sw_glmm_refit(fit, d$treated), error = TRUE)
  if (requireNamespace("lme4", quietly = TRUE)) {
    g <- glmer_tight(f, d, 1L)
    expect_equal(unname(coef(fit)), unname(lme4::fixef(g)), tolerance = 1e-4)
  }
})

test_that("profile interval for the treatment agrees with lme4", {
  skip_if_not_installed("lme4")
  d <- sim_sw(15, 0.5, 21)
  f <- y ~ treated + factor(period) + (1 | la)
  fit <- sw_glmm(f, d)
  ci <- confint(fit, "treated", method = "profile")
  # plain-R check: the profile deviance at the bounds is qchisq(0.95, 1)
  prof <- profile_loglik_fun(fit, 2L)
  expect_equal(2 * (fit$loglik - prof(ci[1, 1])), stats::qchisq(0.95, 1), tolerance = 1e-6)
  expect_equal(2 * (fit$loglik - prof(ci[1, 2])), stats::qchisq(0.95, 1), tolerance = 1e-6)
  # lme4: refit with the treatment effect fixed at each bound (an offset);
  # the likelihood-ratio statistic must be qchisq(0.95, 1) there too
  g <- glmer_tight(f, d, 1L)
  for (b in ci[1, ]) {
    d$off <- b * d$treated
    g0 <- glmer_tight(y ~ factor(period) + offset(off) + (1 | la), d, 1L)
    expect_equal(2 * (as.numeric(logLik(g)) - as.numeric(logLik(g0))), stats::qchisq(0.95, 1),
                 tolerance = 1e-4)
  }
  expect_equal(confint(fit)["treated", ],
               coef(fit)["treated"] + c(-1, 1) * stats::qnorm(0.975) * sqrt(vcov(fit)["treated", "treated"]),
               ignore_attr = TRUE)
})

test_that("collapsing to cells, row order, integer/logical outcome do not change the fit", {
  d <- sim_sw(12, 0.7, 41)
  fit <- sw_glmm(f_main, d)
  # cells are the distinct (la, model-matrix row) patterns
  key <- unique(data.frame(d$la, stats::model.matrix(~ treated + factor(period) + x1 + sex, d)))
  expect_equal(fit$ncells, nrow(key))
  expect_equal(sum(fit$cells$n), nrow(d))
  expect_equal(sum(fit$cells$s), sum(d$y))
  # the hash grouping equals a plain-R grouping, and its full-comparison path
  X <- stats::model.matrix(~ treated + factor(period) + sex, d)
  X[5, 2] <- -0 # -0 and 0 are the same value
  k <- cell_key(X, match(d$la, las))
  ref <- match(paste(d$la, apply(X + 0, 1, paste, collapse = " ")),
               unique(paste(d$la, apply(X + 0, 1, paste, collapse = " "))))
  expect_identical(k, ref)
  expect_identical(cell_key(X, match(d$la, las), full = TRUE), ref)
  # the cells built from the distinct rows' key (as sw_glmm() builds them)
  # are those of the (cluster, row) key
  expect_identical(binom_cells(X, d$y, match(d$la, las), length(las),
                               row_key = cell_key(X, rep(1L, nrow(X)))),
                   binom_cells(X, d$y, match(d$la, las), length(las)))
  expect_identical(cell_key(X[0, ], integer(0)), integer(0))
  # unsorted rows
  d2 <- d[sample(nrow(d)), ]
  fit2 <- sw_glmm(f_main, d2)
  expect_equal(coef(fit2), coef(fit), tolerance = 1e-9)
  expect_equal(fit2$loglik, fit$loglik, tolerance = 1e-12)
  # integer and logical outcome, integer covariate
  d3 <- d
  d3$y <- as.integer(d3$y)
  d3$treated <- as.integer(d3$treated)
  expect_equal(coef(sw_glmm(f_main, d3)), coef(fit), tolerance = 1e-12)
  d3$y <- d3$y == 1L
  expect_equal(coef(sw_glmm(f_main, d3)), coef(fit), tolerance = 1e-12)
  # duplicating every row (ties) doubles the log-likelihood at fixed parameters
  dd <- rbind(d, d)
  fd <- sw_glmm(f_main, dd)
  expect_equal(fd$ncells, fit$ncells)
  expect_equal(binom_eval(fd$cells, coef(fit), 0)$loglik,
               2 * binom_eval(fit$cells, coef(fit), 0)$loglik, tolerance = 1e-12)
})

test_that("missing and infinite values: counted exclusion or error", {
  d <- sim_sw(8, 0.5, 51)
  d$x1[c(3, 40)] <- NA
  d$y[7] <- NaN
  expect_snapshot(fit <- sw_glmm(f_main, d))
  expect_equal(nobs(fit), nrow(d) - 3L)
  expect_equal(fit$exclusion_flow$excluded, c(0L, 3L))
  expect_equal(coef(fit), coef(suppressMessages(sw_glmm(f_main, d[-c(3, 7, 40), ]))))
  # a factor level present only in an excluded row is dropped, not an empty column
  d2 <- d
  d2$sex <- as.character(d2$sex)
  d2$sex[3] <- "U"
  f2 <- suppressMessages(suppressWarnings(sw_glmm(f_main, d2)))
  expect_equal(names(coef(f2)), names(coef(fit)))
  d$x1[5] <- Inf
  expect_snapshot(sw_glmm(f_main, d), error = TRUE)
})

test_that("bad input gives clear errors or warnings", {
  d <- sim_sw(8, 0.5, 61)
  # a cluster with no events
  d0 <- d
  d0$y[d0$la == "LA3"] <- 0
  expect_snapshot(fit <- sw_glmm(f_main, d0))
  expect_true(is.finite(fit$loglik))
  # all outcomes 0
  d1 <- d
  d1$y <- 0
  expect_snapshot(sw_glmm(f_main, d1), error = TRUE)
  # one LA
  expect_snapshot(sw_glmm(f_main, d[d$la == "LA1", ]), error = TRUE)
  # no period with both treated and control LAs: treatment is aliased
  d2 <- d
  d2$treated <- as.integer(d2$period >= 3)
  expect_snapshot(sw_glmm(f_main, d2), error = TRUE)
  # non-binary outcome
  d3 <- d
  d3$y[c(2, 9)] <- c(2, 0.5)
  expect_snapshot(sw_glmm(f_main, d3), error = TRUE)
  d3$y <- factor(d$y)
  expect_snapshot(sw_glmm(f_main, d3), error = TRUE)
  # length 0
  expect_snapshot(sw_glmm(f_main, d[0, ]), error = TRUE)
  # formula and arguments
  expect_snapshot(sw_glmm(y ~ treated + (1 | la) + (1 | sex), d), error = TRUE)
  expect_snapshot(sw_glmm(y ~ treated, d), error = TRUE)
  expect_snapshot(sw_glmm(y ~ 0 + (1 | la), d), error = TRUE)
  expect_snapshot(sw_glmm(y ~ treated + (x1 | la), d), error = TRUE)
  # nested random intercepts are fitted by the Laplace approximation only (#14)
  expect_snapshot(sw_glmm(y ~ treated + (1 | la / child), d, nAGQ = 5), error = TRUE)
  expect_snapshot(sw_glmm(y ~ treated + (1 | region), d), error = TRUE)
  expect_snapshot(sw_glmm(f_main, d, nAGQ = 30), error = TRUE)
  expect_snapshot(sw_glmm(f_main, d, family = stats::poisson()), error = TRUE)
  expect_snapshot(sw_glmm(f_main, d, control = list(tolerance = 1)), error = TRUE)
  expect_snapshot(sw_glmm(f_main, d, nagq = 2), error = TRUE)
  expect_snapshot(sw_glmm(f_main, d, sigma = -1), error = TRUE)
  expect_snapshot(sw_glmm(f_main, as.matrix(d)), error = TRUE)
  fit <- suppressMessages(sw_glmm(f_main, d))
  expect_snapshot(confint(fit, "nonsense"), error = TRUE)
})

test_that("methods: coef, fixef, ranef, vcov, nobs, logLik, tidy, glance, print, summary", {
  d <- sim_sw(10, 0.8, 71)
  fit <- sw_glmm(f_main, d)
  expect_identical(coef(fit), fit$coefficients)
  expect_identical(coef(fit, type = "random"), fit$ranef)
  expect_identical(fixef.sw_glmm(fit), coef(fit))
  expect_identical(ranef.sw_glmm(fit), coef(fit, type = "random"))
  if (requireNamespace("nlme", quietly = TRUE)) {
    expect_identical(nlme::fixef(fit), coef(fit))
  }
  expect_equal(dim(vcov(fit)), c(9L, 9L))
  expect_equal(nobs(fit), nrow(d))
  expect_s3_class(logLik(fit), "logLik")
  td <- tidy.sw_glmm(fit)
  expect_equal(td$estimate[td$effect == "fixed"], unname(coef(fit)))
  expect_equal(td$conf.low[2], unname(confint(fit)[2, 1]))
  expect_equal(td$estimate[td$effect == "ran_pars"], unname(fit$sigma))
  gl <- glance.sw_glmm(fit)
  expect_equal(gl$AIC, -2 * fit$loglik + 2 * 10)
  expect_equal(gl$nobs, nrow(d))
  s <- summary(fit)
  expect_equal(unname(s$profile[1, ]), unname(confint(fit, "treated", method = "profile")[1, ]))
  out <- utils::capture.output(print(s))
  expect_true(any(grepl("odds ratio", out)))
  expect_true(any(grepl("Clusters treated / control by period", out)))
  expect_equal(s$fit$design$treated_clusters, 0:5)
  # periods without a treated or a control LA are reported, not an error
  expect_snapshot(cat(design_note(fit$design)))
  expect_true(any(grepl("period 0 has no treated cluster", out)))
  expect_null(design_note(fit$design[2:5, ]))
})

test_that("refit under another treatment vector equals a fresh fit", {
  d <- sim_sw(10, 0.6, 81)
  f <- y ~ treated + factor(period) + x1 + (1 | la)
  fit <- sw_glmm(f, d)
  again <- sw_glmm_refit(fit, d$treated)
  expect_equal(coef(again), coef(fit), tolerance = 1e-7)
  perm <- c("LA3", "LA1", "LA5", "LA2", "LA4")
  d2 <- d
  d2$treated <- as.integer(d$period >= match(d$la, perm))
  fresh <- sw_glmm(f, d2)
  re <- sw_glmm_refit(fit, d2$treated)
  expect_equal(coef(re), coef(fresh), tolerance = 1e-7)
  expect_equal(re$loglik, fresh$loglik, tolerance = 1e-10)
  expect_equal(sqrt(diag(vcov(re))), sqrt(diag(vcov(fresh))), tolerance = 1e-6)
  expect_snapshot(sw_glmm_refit(fit, d2$treated[-1]), error = TRUE)
  # without x1 the cells are LA x period, so one child cannot change arm alone
  fit0 <- sw_glmm(y ~ treated + factor(period) + (1 | la), d)
  d3 <- d
  d3$treated[1] <- 1 - d3$treated[1]
  expect_snapshot(sw_glmm_refit(fit0, d3$treated), error = TRUE)
})

# ---- gaussian ------------------------------------------------------------------

sim_absence <- function(nch, seed) {
  set.seed(seed)
  ch <- data.frame(child_id = seq_len(nch), la = sample(las, nch, TRUE),
                   period = sample(0:5, nch, TRUE))
  ch$treated <- as.integer(ch$period >= match(ch$la, las))
  ch$u <- rnorm(nch, sd = 3)
  nt <- sample(1:3, nch, TRUE, prob = c(0.2, 0.3, 0.5))
  d <- ch[rep(seq_len(nch), nt), ]
  d$term <- factor(unlist(lapply(nt, seq_len)))
  d$since <- as.numeric(d$term) * 4 + round(runif(nrow(d)), 2)
  d$absence <- 10 + 2 * d$treated + 0.3 * d$since +
    rnorm(5, sd = 2)[match(d$la, las)] + d$u + rnorm(nrow(d), sd = 4)
  d[sample(nrow(d)), ]
}

# Brute-force REML / ML log-likelihood with the dense covariance matrix.
# Prior weights w: residual variances sigma^2 / w.
ref_lmm_loglik <- function(X, y, Zs, sds, sigma, REML, w = rep(1, length(y))) {
  V <- diag(sigma^2 / w, length(y))
  for (k in seq_along(Zs)) V <- V + sds[k]^2 * tcrossprod(Zs[[k]])
  Vi <- solve(V)
  A <- crossprod(X, Vi %*% X)
  beta <- solve(A, crossprod(X, Vi %*% y))
  r <- y - X %*% beta
  ld <- determinant(V)$modulus
  if (REML) {
    -0.5 * (ld + determinant(A)$modulus + sum(r * (Vi %*% r)) + (length(y) - ncol(X)) * log(2 * pi))
  } else {
    -0.5 * (ld + sum(r * (Vi %*% r)) + length(y) * log(2 * pi))
  }
}

test_that("LMM (1 | la) and (1 | la / child_id) agree with lme4::lmer and a dense reference", {
  d <- sim_absence(150, 91)
  fs <- list(list(absence ~ treated + factor(period) + term + since + (1 | la / child_id),
                  ~ treated + factor(period) + term + since),
             list(absence ~ treated + factor(period) + since + (1 | la),
                  ~ treated + factor(period) + since))
  for (ff in fs) {
    f <- ff[[1]]
    for (reml in c(TRUE, FALSE)) {
      fit <- sw_glmm(f, d, family = gaussian(), REML = reml)
      X <- stats::model.matrix(ff[[2]], d)
      Zs <- list(stats::model.matrix(~ 0 + la, d))
      if (length(fit$sigma) == 2) Zs[[2]] <- stats::model.matrix(~ 0 + factor(paste(child_id, la)), d)
      ref <- ref_lmm_loglik(X, d$absence, Zs, fit$sigma, fit$residual_sd, reml)
      expect_equal(fit$loglik, as.numeric(ref), tolerance = 1e-8)
      if (requireNamespace("lme4", quietly = TRUE)) {
        l <- lme4::lmer(f, d, REML = reml)
        expect_equal(unname(coef(fit)), unname(lme4::fixef(l)), tolerance = 1e-4)
        vc <- as.data.frame(lme4::VarCorr(l))
        expect_equal(unname(fit$sigma[1]), vc$sdcor[vc$grp == "la"], tolerance = 1e-4)
        if (length(fit$sigma) == 2) {
          expect_equal(unname(fit$sigma[2]), vc$sdcor[vc$grp == "child_id:la"], tolerance = 1e-4)
        }
        expect_equal(fit$residual_sd, stats::sigma(l), tolerance = 1e-4)
        expect_equal(fit$loglik, as.numeric(logLik(l)), tolerance = 1e-4)
        expect_equal(attr(logLik(fit), "df"), attr(logLik(l), "df"))
        expect_equal(sqrt(diag(vcov(fit))), sqrt(diag(as.matrix(stats::vcov(l)))),
                     tolerance = 1e-4, ignore_attr = TRUE)
        expect_equal(unname(coef(fit, type = "random")$la), unname(lme4::ranef(l)$la[, 1]), tolerance = 1e-4)
      }
    }
  }
})

test_that("LMM on a balanced one-way layout has the ANOVA REML estimates (derived on paper)", {
  # G groups of n: REML gives sigma_e^2 = MSW and sigma_a^2 = (MSB - MSW) / n when
  # positive, and the grand mean as the intercept.
  y <- c(3, 5, 4, 8, 9, 10, 1, 2, 0)
  d <- data.frame(y = y, g = rep(c("a", "b", "c"), each = 3))
  m <- tapply(y, d$g, mean)
  msw <- sum((y - m[d$g])^2) / (9 - 3)
  msb <- 3 * sum((m - mean(y))^2) / (3 - 1)
  fit <- sw_glmm(y ~ 1 + (1 | g), d, family = "gaussian")
  expect_equal(fit$residual_sd^2, msw, tolerance = 1e-8)
  expect_equal(unname(fit$sigma^2), (msb - msw) / 3, tolerance = 1e-8)
  expect_equal(unname(coef(fit)), mean(y), tolerance = 1e-12)
  # var(mean) = (sigma_a^2 + sigma_e^2 / n) / G = MSB / 9
  expect_equal(unname(vcov(fit)[1, 1]), msb / 9, tolerance = 1e-8)
  # group means all equal: sigma_a at the boundary, reported as such
  d2 <- data.frame(y = c(1, 2, 3, 3, 2, 1, 2, 1, 3), g = rep(c("a", "b", "c"), each = 3))
  expect_snapshot(f2 <- sw_glmm(y ~ 1 + (1 | g), d2, family = gaussian))
  expect_equal(unname(f2$sigma), 0)
  expect_true(f2$boundary)
  expect_equal(f2$residual_sd^2, stats::var(d2$y), tolerance = 1e-8)
  expect_snapshot(sw_glmm(y ~ 1 + (1 | g), d2[d2$g == "a", ], family = gaussian), error = TRUE)
  expect_snapshot(sw_glmm(y ~ 1 + (1 | g), d, family = gaussian, sigma = 1), error = TRUE)
})

test_that("LMM profile interval agrees with lme4 (ML profile)", {
  skip_if_not_installed("lme4")
  d <- sim_absence(120, 92)
  f <- absence ~ treated + since + (1 | la / child_id)
  for (reml in c(FALSE, TRUE)) {
    fit <- sw_glmm(f, d, family = gaussian, REML = reml)
    l <- lme4::lmer(f, d, REML = reml)
    ci <- confint(fit, "treated", method = "profile")
    ci_l <- suppressMessages(stats::confint(l, parm = "treated", method = "profile", quiet = TRUE))
    expect_equal(unname(ci[1, ]), unname(ci_l[1, ]), tolerance = 1e-4)
  }
})

# ---- sw_terms ------------------------------------------------------------------------

test_that("sw_terms() builds period, treatment, exposure and readiness (by hand)", {
  rollout <- data.frame(la_code = c("201", "202", "203"), programme = "FV",
                        go_live_date = as.Date(c("2022-01-01", "2022-07-01", "2023-01-01")),
                        alt_go_live_date = as.Date(c("2022-03-01", "2022-09-01", "2023-03-01")),
                        stratum = c("high", "low", "low"),
                        embed_start = as.Date(c("2021-11-01", "2022-05-01", "2022-11-01")),
                        embed_end = as.Date(c("2022-01-01", "2022-07-01", "2023-01-01")))
  kids <- data.frame(la_code = c("201", "202", "203", "201", "203", "202"),
                     referral_date = as.Date(c("2021-08-01", "2022-08-01", "2022-10-01",
                                               "2023-02-01", "2022-12-31", "2022-06-30")))
  out <- sw_terms(kids, rollout)
  # trial starts 2021-07-01 (6 months before the first go-live); periods of 6 months
  expect_equal(out$period, c(0L, 2L, 2L, 3L, 2L, 1L))
  expect_equal(out$treated, c(0L, 1L, 0L, 1L, 0L, 0L))
  # 201 live since 2022-01-01, referral 2023-02-01: 13 months -> 2 whole periods
  expect_equal(as.character(out$exposure), c("control", "0", "control", "2", "control", "control"))
  expect_equal(out$high_readiness, c(1L, 0L, 0L, 1L, 0L, 0L))
  alt <- sw_terms(kids, rollout, go_live = "alt_go_live_date")
  expect_equal(alt$treated, c(0L, 0L, 0L, 1L, 0L, 0L))
  # embedding: [embed_start, embed_end) -> rows 3? no: 2022-10-01 is before 203's
  # window start 2022-11-01; rows 5 (2022-12-31, LA 203) and 6 (2022-06-30, LA 202) are in it
  expect_snapshot(emb <- sw_terms(kids, rollout, embedding = TRUE))
  expect_equal(nrow(emb), 4L)
  expect_equal(attr(emb, "exclusion_flow")$excluded, c(0L, 2L))
  late <- rbind(kids, data.frame(la_code = "201", referral_date = as.Date(c("2020-01-01", "2024-01-01"))))
  expect_snapshot(x <- sw_terms(late, rollout))
  expect_equal(nrow(x), 6L)
  expect_snapshot(sw_terms(kids, rollout[-1, ]), error = TRUE)
  expect_snapshot(sw_terms(kids, rollout[, -3]), error = TRUE)
  k2 <- kids
  k2$referral_date <- as.character(k2$referral_date)
  expect_snapshot(sw_terms(k2, rollout), error = TRUE)
  k2 <- kids
  k2$referral_date[2] <- NA
  expect_snapshot(sw_terms(k2, rollout), error = TRUE)
  # length 0
  expect_equal(nrow(sw_terms(kids[0, ], rollout)), 0L)
})

test_that("sw_terms() and the design start a trial on the same month-end-clamped day", {
  # first go-live 31 August 2020: six calendar months before is 29 February
  # 2020 (clamped), as design_family_valued() says; a referral that day is in
  # step 0, one on 28 February is before the trial
  rollout <- data.frame(la_code = c("301", "302"), programme = "FV", role = "treated",
                        go_live_date = as.Date(c("2020-08-31", "2021-02-28")))
  des <- design_family_valued(suppressWarnings(sfp_data(rollout = rollout)),
                              data_end = as.Date("2023-12-31"))
  expect_equal(des$trial_start, as.Date("2020-02-29"))
  kids <- data.frame(la_code = "301", referral_date = as.Date(c("2020-02-28", "2020-02-29")))
  expect_warning(out <- sw_terms(kids, rollout), "outside the trial period")
  expect_equal(out$referral_date, des$trial_start)
  expect_equal(out$period, 0L)
})

test_that("sw_terms() columns feed sw_glmm() (stepped wedge from go-live dates)", {
  set.seed(101)
  rollout <- data.frame(la_code = las, go_live_date = as.Date("2022-01-01") + c(0, 181, 365, 546, 730),
                        stratum = c("high", "high", "low", "low", "low"))
  n <- 1500
  kids <- data.frame(la_code = sample(las, n, TRUE),
                     referral_date = as.Date("2021-07-01") + sample(0:1094, n, TRUE))
  kids <- sw_terms(kids, rollout)
  expect_equal(sort(unique(kids$period)), 0:5)
  kids$y <- rbinom(n, 1, plogis(-1 + 0.3 * kids$treated + rnorm(5, sd = 0.4)[match(kids$la_code, las)]))
  fit <- suppressMessages(sw_glmm(y ~ treated + factor(period) + (1 | la_code), kids))
  expect_true(all(fit$design$treated_clusters + fit$design$control_clusters >= 5))
  fit2 <- suppressMessages(sw_glmm(y ~ treated * high_readiness + factor(period) + (1 | la_code), kids))
  expect_true("treated:high_readiness" %in% names(coef(fit2)))
  fit3 <- suppressMessages(sw_glmm(y ~ exposure + factor(period) + (1 | la_code), kids, treatment = "exposure"))
  expect_null(fit3$treatment)
  expect_true(all(paste0("exposure", 0:4) %in% names(coef(fit3))))
})


test_that("LMM is invariant to shifting and scaling the outcome and covariates (against lme4)", {
  skip_if_not_installed("lme4")
  d <- sim_absence(150, 91)
  base <- list(absence ~ treated + factor(period) + since + (1 | la),
               absence ~ treated + since + (1 | la / child_id))
  for (f in base) {
    f0 <- sw_glmm(f, d, family = gaussian())
    for (k in 1:3) {
      d2 <- d
      a <- c(0, 1e4, 1e4)[k]
      b <- c(1000, 1, 1000)[k]
      d2$absence <- (d$absence + a) * b
      d2$since <- d$since + 2e4  # a covariate far from 0 (days since 1970)
      fit <- sw_glmm(f, d2, family = gaussian())
      l <- lme4::lmer(f, d2)
      vc <- as.data.frame(lme4::VarCorr(l))
      expect_true(fit$converged)
      expect_equal(fit$convergence$converged, TRUE)
      expect_equal(fit$loglik, as.numeric(logLik(l)), tolerance = 1e-6)
      expect_equal(unname(fit$sigma[1]), vc$sdcor[vc$grp == "la"], tolerance = 1e-5)
      expect_equal(fit$residual_sd, stats::sigma(l), tolerance = 1e-5)
      expect_equal(unname(coef(fit)), unname(lme4::fixef(l)), tolerance = 1e-6)
      expect_equal(sqrt(diag(vcov(fit))), sqrt(diag(as.matrix(stats::vcov(l)))),
                   tolerance = 1e-5, ignore_attr = TRUE)
      # and the fit is the affine image of the untransformed fit
      expect_equal(unname(coef(fit)["treated"]), b * unname(coef(f0)["treated"]), tolerance = 1e-8)
      expect_equal(unname(fit$sigma), b * unname(f0$sigma), tolerance = 1e-6)
      # REML: V scales by b^2 and X'V^-1 X by b^-2, so the log-likelihood
      # moves by -(N - p) log b; the shift of `since` has Jacobian 1
      expect_equal(fit$loglik, f0$loglik - (fit$nobs - length(coef(fit))) * log(b),
                   tolerance = 1e-9)
      ci <- confint(fit, "treated", method = "profile")
      expect_equal(unname(ci[1, ]), b * unname(confint(f0, "treated", method = "profile")[1, ]),
                   tolerance = 1e-6)
    }
  }
})

test_that("LMM convergence is judged from nlminb's message and the gradient", {
  obj <- function(t) sum((t - c(0.7, 1.3))^2) * 10
  ok <- lmm_convergence(obj, c(0.7, 1.3), list(message = "false convergence (8)", iterations = 9L),
                        list(boundary_tol = 1e-4))
  expect_true(ok$converged)
  expect_match(ok$message, "false convergence")
  lim <- lmm_convergence(obj, c(0.7, 1.3), list(message = "iteration limit reached without convergence (10)",
                                                iterations = 500L), list(boundary_tol = 1e-4))
  expect_false(lim$converged)
  off <- lmm_convergence(obj, c(0.9, 1.3), list(message = "relative convergence (4)", iterations = 9L),
                         list(boundary_tol = 1e-4))
  expect_false(off$converged)
  expect_match(off$message, "scaled gradient 4")
  # a component at the boundary is not judged by its one-sided derivative
  bd <- lmm_convergence(function(t) t[1] + (t[2] - 1)^2, c(0, 1),
                        list(message = "relative convergence (4)", iterations = 9L),
                        list(boundary_tol = 1e-4))
  expect_true(bd$converged)
  # a component at 0 where the criterion falls off 0 (a stationary point of a
  # criterion in t^2, not its minimum) is not converged
  sad <- lmm_convergence(function(t) -t[1]^2 + t[1]^4 + (t[2] - 1)^2, c(0, 1),
                         list(message = "relative convergence (4)", iterations = 9L),
                         list(boundary_tol = 1e-4))
  expect_false(sad$converged)
})

test_that("the Laplace Newton reports non-convergence with the package's convention", {
  d <- sim_sw(20, 0.5, 5)
  expect_warning(fit <- sw_glmm(f_main, d, control = list(maxit = 1L)),
                 class = "sfpceval_not_converged")
  expect_false(fit$converged)
  expect_false(glance.sw_glmm(fit)$converged)
  expect_match(fit$convergence$message, "iteration limit")
  fit2 <- sw_glmm(f_main, d)
  expect_true(fit2$convergence$converged)
  expect_match(fit2$convergence$message, "Newton decrement")
})

# ---- successes out of trials (#13) ----------------------------------------------

sim_counts <- function(seed) {
  set.seed(seed)
  d <- expand.grid(child = 1:25, period = 0:5, la = las, stringsAsFactors = FALSE)
  d$treated <- as.integer(d$period >= match(d$la, las))
  d$x <- round(rnorm(nrow(d)), 1)
  d$possible <- sample(10:40, nrow(d), TRUE)
  b <- rnorm(5, sd = 0.4)[match(d$la, las)]
  d$missed <- rbinom(nrow(d), d$possible, plogis(-2 + 0.2 * d$treated + 0.3 * d$x + b))
  d
}

test_that("cbind(successes, failures) equals the Bernoulli expansion (plain R) and lme4::glmer", {
  d <- sim_counts(31)
  f <- cbind(missed, possible - missed) ~ treated + factor(period) + x + (1 | la)
  fit <- sw_glmm(f, d)
  # plain R: one Bernoulli row per trial gives the same likelihood up to the
  # binomial coefficients
  long <- d[rep(seq_len(nrow(d)), d$possible), ]
  long$y <- unlist(lapply(seq_len(nrow(d)), function(i) rep(c(1, 0), c(d$missed[i], d$possible[i] - d$missed[i]))))
  fb <- sw_glmm(y ~ treated + factor(period) + x + (1 | la), long)
  expect_equal(coef(fit), coef(fb), tolerance = 1e-10)
  expect_equal(fit$sigma, fb$sigma, tolerance = 1e-10)
  expect_equal(fit$loglik, fb$loglik + sum(lchoose(d$possible, d$missed)), tolerance = 1e-10)
  expect_equal(nobs(fit), nrow(d))
  expect_equal(fit$ntrials, sum(d$possible))
  expect_equal(fit$treatment$risk_difference, fb$treatment$risk_difference, tolerance = 1e-8)
  expect_equal(vcov(fit), vcov(fb), tolerance = 1e-6)
  # the likelihood at the estimate equals the dense plain-R integral on the long rows
  X <- model.matrix(~ treated + factor(period) + x, long)
  expect_equal(fit$loglik - sum(lchoose(d$possible, d$missed)),
               ref_laplace(X, long$y, long$la, coef(fit), fit$sigma), tolerance = 1e-8)
  skip_if_not_installed("lme4")
  for (q in c(1L, 25L)) {
    fq <- sw_glmm(f, d, nAGQ = q)
    g <- glmer_tight(f, d, q)
    expect_equal(unname(coef(fq)), unname(lme4::fixef(g)), tolerance = 1e-5)
    expect_equal(unname(fq$sigma), as.data.frame(lme4::VarCorr(g))$sdcor, tolerance = 1e-4)
    # glmer's AGQ (nAGQ > 1) log-likelihood is relative to the saturated
    # model (its deviance residuals); its Laplace one has the coefficients
    sat <- if (q > 1L) sum(dbinom(d$missed, d$possible, d$missed / d$possible, log = TRUE)) else 0
    expect_equal(fq$loglik - sat, as.numeric(logLik(g)), tolerance = 1e-8)
    # glmer's vcov() comes from its own finite-difference Hessian (lme4's
    # deriv12, accurate to about 1e-4 relative), so this checks agreement
    # at that accuracy; the exact check is the Bernoulli expansion below
    expect_equal(unname(sqrt(diag(vcov(fq)))), unname(sqrt(diag(as.matrix(vcov(g))))), tolerance = 1e-3)
  }
  fb25 <- sw_glmm(y ~ treated + factor(period) + x + (1 | la), long, nAGQ = 25)
  expect_equal(vcov(sw_glmm(f, d, nAGQ = 25)), vcov(fb25), tolerance = 1e-6)
})

test_that("cbind response: a hand-made one-cluster table (sigma = 0) is the 2 x 2 logit", {
  # control 3 of 10, treated 6 of 8: log odds ratio log((6/2) / (3/7))
  d <- data.frame(la = "A", treated = c(0, 0, 1, 1), s = c(1, 2, 4, 2), f = c(4, 3, 1, 1))
  fit <- sw_glmm(cbind(s, f) ~ treated + (1 | la), d, sigma = 0)
  expect_equal(unname(coef(fit)), c(log(3 / 7), log((6 / 2) / (3 / 7))), tolerance = 1e-9)
  expect_equal(fit$loglik, sum(dbinom(d$s, d$s + d$f, ifelse(d$treated == 1, 6 / 8, 3 / 10), log = TRUE)),
               tolerance = 1e-10)
})

test_that("cbind response: bad counts are errors naming rows; rows with no trials are counted", {
  d <- sim_counts(32)[1:200, ]
  f <- cbind(missed, possible - missed) ~ treated + factor(period) + (1 | la)
  bad <- d
  bad$missed[c(7, 9)] <- bad$possible[c(7, 9)] + 2
  expect_snapshot(sw_glmm(f, bad), error = TRUE)
  neg <- d
  neg$missed[3] <- -1
  expect_snapshot(sw_glmm(f, neg), error = TRUE)
  frac <- d
  frac$missed[5] <- 2.5
  expect_snapshot(sw_glmm(f, frac), error = TRUE)
  expect_snapshot(sw_glmm(cbind(missed, possible, x) ~ treated + (1 | la), d), error = TRUE)
  expect_snapshot(sw_glmm(f, d, family = gaussian()), error = TRUE)
  zero <- d
  zero$possible[c(2, 4)] <- 0
  zero$missed[c(2, 4)] <- 0
  expect_warning(fz <- sw_glmm(f, zero), "no trials")
  expect_equal(fz$exclusion_flow$excluded[2], 2)
  expect_equal(nobs(fz), 198L)
  expect_equal(coef(fz), coef(sw_glmm(f, zero[-c(2, 4), ])), tolerance = 1e-10)
})

# ---- CR2 for the linear mixed model (#13) -------------------------------------------

# cr2_data(): helper-lmm-data.R

# Plain R, dense: Pustejovsky & Tipton's CR2 with the working model as target
# (A_g = R' (R (I - H)_gg Phi_g R')^-1/2 R, R = chol(Phi_g)) and the
# Satterthwaite df from the full n x n matrices.
ref_cr2 <- function(X, y, cl, Phi) {
  n <- length(y)
  Phii <- solve(Phi)
  M <- solve(crossprod(X, Phii %*% X))
  beta <- M %*% crossprod(X, Phii %*% y)
  e <- drop(y - X %*% beta)
  IH <- diag(n) - X %*% M %*% crossprod(X, Phii)
  mpow <- function(x) {
    ev <- eigen(x, symmetric = TRUE)
    ev$vectors %*% (ifelse(ev$values > 1e-12 * max(ev$values), ev$values^-0.5, 0) * t(ev$vectors))
  }
  A <- lapply(sort(unique(cl)), function(g) {
    i <- which(cl == g)
    R <- chol(Phi[i, i])
    t(R) %*% mpow(R %*% IH[i, i] %*% Phi[i, i] %*% t(R)) %*% R
  })
  gs <- sort(unique(cl))
  E <- sapply(seq_along(gs), function(k) {
    i <- which(cl == gs[k])
    crossprod(X[i, , drop = FALSE], Phii[i, i] %*% A[[k]] %*% e[i])
  })
  V <- M %*% tcrossprod(E) %*% M
  df <- vapply(seq_len(ncol(X)), function(j) {
    Q <- sapply(seq_along(gs), function(k) {
      i <- which(cl == gs[k])
      p <- A[[k]] %*% Phii[i, i] %*% X[i, , drop = FALSE] %*% M[, j]
      q <- double(n)
      q <- drop(t(IH[i, , drop = FALSE]) %*% p)
      q
    })
    T <- crossprod(Q, Phi %*% Q)
    sum(diag(T))^2 / sum(T^2)
  }, 0)
  list(vcov = V, df = df)
}

test_that("LMM CR2 and its Satterthwaite df equal a dense plain-R reference and clubSandwich", {
  d <- cr2_data(3)
  cl <- match(d$la, sort(unique(d$la)))
  # the third case, the Family Safeguarding absence model (child random
  # effects, LA and year fixed effects), is clustered by LA: LA-level columns
  # make (I - H)_gg singular
  cases <- lmm_variance_cases(d)
  for (cs in cases) {
    fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la")
    X <- model.matrix(parse_glmm_formula(cs$f)$fixed, d)
    ref <- ref_cr2(X, d$y, cl, diag(nrow(d)) + cs$phi(fit$theta))
    expect_equal(unname(vcov(fit, type = "CR2")), unname(ref$vcov), tolerance = 1e-8)
    expect_equal(unname(fit$cr2$df), ref$df, tolerance = 1e-8)
    expect_equal(fit$cr2$n_clusters, 6L)
    skip_if_not_installed("clubSandwich")
    skip_if_not_installed("lme4")
    expect_cr2_clubsandwich(fit, lme4::lmer(cs$f, d), d$la)
  }
})

test_that("LMM CR2 is invariant to shifting and scaling the outcome; bad clusters are errors", {
  d <- cr2_data(4)
  f <- y ~ treated + since + (1 | la / child_id)
  f0 <- sw_glmm(f, d, family = gaussian(), cluster = "la")
  d2 <- d
  d2$y <- (d$y + 1e4) * 1000
  d2$since <- d$since + 2e4
  f2 <- sw_glmm(f, d2, family = gaussian(), cluster = "la")
  expect_equal(sqrt(diag(vcov(f2, type = "CR2")))[-1], 1000 * sqrt(diag(vcov(f0, type = "CR2")))[-1],
               tolerance = 1e-6)
  expect_equal(f2$cr2$df[-1], f0$cr2$df[-1], tolerance = 1e-6)
  expect_error(vcov(sw_glmm(f, d, family = gaussian()), type = "CR2"), "no cluster-robust")
  d$half <- ifelse(d$child_id %% 2 == 0, "A", "B")
  expect_snapshot(sw_glmm(f, d, family = gaussian(), cluster = "half"), error = TRUE)
  d$region <- ifelse(d$la %in% c("L1", "L2", "L3"), "north", "south")
  expect_snapshot(sw_glmm(f, d, family = gaussian(), cluster = "region"), error = TRUE)
  expect_snapshot(sw_glmm(f, d, family = gaussian(), cluster = "nope"), error = TRUE)
  db <- d
  db$yb <- as.integer(db$y > 15)
  expect_snapshot(sw_glmm(yb ~ treated + (1 | la), db, cluster = "la"), error = TRUE)
  # a coarser cluster over a single random-effect level: LAs in regions
  fr <- sw_glmm(y ~ treated + since + (1 | la), d, family = gaussian(), cluster = "region")
  X <- model.matrix(~ treated + since, d)
  cl <- match(d$la, sort(unique(d$la)))
  reg <- match(d$region, c("north", "south"))
  ref <- ref_cr2(X, d$y, reg, diag(nrow(d)) + fr$theta[1]^2 * outer(cl, cl, "=="))
  expect_equal(unname(vcov(fr, type = "CR2")), unname(ref$vcov), tolerance = 1e-8)
  expect_equal(unname(fr$cr2$df), ref$df, tolerance = 1e-8)
})

test_that("LMM with 5 LAs and children nested in them converges to lmer's optimum, flagged converged", {
  skip_if_not_installed("lme4")
  # 81: the child SD at 0, the LA SD left unpolished by nlminb (was flagged not
  # converged); 83: nlminb stopped at the LA SD = 0 stationary point (was
  # flagged converged with a log-likelihood 0.94 below lmer's)
  sim5 <- function(seed) {
    set.seed(seed)
    las <- paste0("LA", 1:5)
    nch <- sample(c(100, 200, 400, 800), 1)
    ch <- data.frame(child_id = seq_len(nch), la = sample(las, nch, TRUE), period = sample(0:5, nch, TRUE))
    ch$treated <- as.integer(ch$period >= match(ch$la, las))
    d <- ch[rep(seq_len(nch), sample(1:6, nch, TRUE)), ]
    sla <- exp(runif(1, log(0.01), log(10)))
    sch <- exp(runif(1, log(0.01), log(10)))
    d$y <- runif(1, -1e3, 1e3) + 0.5 * d$treated + 0.1 * d$period + rnorm(5, sd = sla)[match(d$la, las)] +
      rnorm(nch, sd = sch)[d$child_id] + rnorm(nrow(d), sd = exp(runif(1, -3, 3)))
    d
  }
  for (seed in c(81, 83)) {
    d <- sim5(seed)
    f <- y ~ treated + factor(period) + (1 | la / child_id)
    for (reml in c(TRUE, FALSE)) {
      expect_no_warning(fit <- suppressMessages(sw_glmm(f, d, family = gaussian(), REML = reml)),
                        class = "sfpceval_not_converged")
      l <- suppressMessages(lme4::lmer(f, d, REML = reml))
      expect_true(fit$converged)
      expect_equal(fit$loglik, as.numeric(logLik(l)), tolerance = 1e-6)
      expect_gte(fit$loglik, as.numeric(logLik(l)) - 1e-6)
    }
  }
  # the optimiser really stopped short: flagged, with a warning
  expect_warning(fit <- suppressMessages(sw_glmm(f, sim5(83), family = gaussian(), control = list(maxit = 1L))),
                 class = "sfpceval_not_converged")
  expect_false(fit$converged)
  expect_match(fit$convergence$message, "limit")
})

# ---- prior weights in the linear mixed model (#13, #14) ---------------------------

# cr2_data() with a weight per child (as CEM gives) and, for the nested
# clubSandwich comparison, child ids that sort as nlme orders them
weighted_cr2_data <- function(seed) {
  d <- cr2_data(seed)
  set.seed(seed + 100)
  d$w <- runif(max(d$child_id), 0.3, 3)[d$child_id]
  d$y <- d$y + rnorm(nrow(d), sd = 3) * (1 / sqrt(d$w) - 1)
  d$child_id <- sprintf("c%04d", d$child_id)
  d[order(d$la, d$child_id), ]
}

test_that("weighted LMM equals lme4::lmer(weights =) and a dense reference", {
  d <- sim_absence(150, 93)
  set.seed(7)
  d$w <- runif(nrow(d), 0.2, 4)
  fs <- list(list(absence ~ treated + factor(period) + term + since + (1 | la / child_id),
                  ~ treated + factor(period) + term + since),
             list(absence ~ treated + factor(period) + since + (1 | la),
                  ~ treated + factor(period) + since))
  for (ff in fs) {
    f <- ff[[1]]
    for (reml in c(TRUE, FALSE)) {
      fit <- sw_glmm(f, d, family = gaussian(), REML = reml, weights = "w")
      X <- stats::model.matrix(ff[[2]], d)
      Zs <- list(stats::model.matrix(~ 0 + la, d))
      if (length(fit$sigma) == 2) Zs[[2]] <- stats::model.matrix(~ 0 + factor(paste(child_id, la)), d)
      ref <- ref_lmm_loglik(X, d$absence, Zs, fit$sigma, fit$residual_sd, reml, d$w)
      expect_equal(fit$loglik, as.numeric(ref), tolerance = 1e-8)
      # the same fit with the weights given as a vector
      expect_equal(coef(sw_glmm(f, d, family = gaussian(), REML = reml, weights = d$w)), coef(fit),
                   tolerance = 1e-12)
      skip_if_not_installed("lme4")
      l <- lme4::lmer(f, d, REML = reml, weights = w)
      expect_equal(unname(coef(fit)), unname(lme4::fixef(l)), tolerance = 1e-4)
      vc <- as.data.frame(lme4::VarCorr(l))
      expect_equal(unname(fit$sigma[1]), vc$sdcor[vc$grp == "la"], tolerance = 1e-4)
      if (length(fit$sigma) == 2) {
        expect_equal(unname(fit$sigma[2]), vc$sdcor[vc$grp == "child_id:la"], tolerance = 1e-4)
        expect_equal(unname(coef(fit, type = "random")[[2]]),
                     unname(lme4::ranef(l)[["child_id:la"]][names(coef(fit, type = "random")[[2]]), 1]),
                     tolerance = 1e-4)
      }
      expect_equal(fit$residual_sd, stats::sigma(l), tolerance = 1e-4)
      expect_equal(fit$loglik, as.numeric(logLik(l)), tolerance = 1e-4)
      expect_equal(sqrt(diag(vcov(fit))), sqrt(diag(as.matrix(stats::vcov(l)))),
                   tolerance = 1e-4, ignore_attr = TRUE)
      expect_equal(unname(coef(fit, type = "random")$la), unname(lme4::ranef(l)$la[, 1]), tolerance = 1e-4)
      # Pearson residuals (y - mu) sqrt(w) / sigma (lme4's are not divided by sigma)
      expect_equal(unname(residuals(fit, type = "pearson")) * fit$residual_sd,
                   unname(residuals(l, type = "pearson")), tolerance = 1e-4)
    }
  }
})

test_that("weighted LMM profile interval: lme4's likelihood-ratio at its ends is the chi-square quantile", {
  skip_if_not_installed("lme4")
  # (lme4's own profile() is non-monotonic on these data; its ML refits with
  # the coefficient as an offset are the reference)
  d <- sim_absence(120, 92)
  set.seed(3)
  d$w <- runif(nrow(d), 0.3, 3)
  f <- absence ~ treated + since + (1 | la / child_id)
  fit <- sw_glmm(f, d, family = gaussian, REML = FALSE, weights = "w")
  ci <- confint(fit, "treated", method = "profile")
  l1 <- lme4::lmer(f, d, REML = FALSE, weights = w)
  for (b in ci[1, ]) {
    d$off <- b * d$treated
    l0 <- lme4::lmer(absence ~ since + offset(off) + (1 | la / child_id), d, REML = FALSE, weights = w)
    expect_equal(2 * (as.numeric(logLik(l1)) - as.numeric(logLik(l0))), stats::qchisq(0.95, 1),
                 tolerance = 1e-5)
  }
})

test_that("weighted LMM: equal weights change only the residual SD; zero weights drop rows (by hand)", {
  d <- sim_absence(120, 94)
  f <- absence ~ treated + since + (1 | la / child_id)
  fit <- sw_glmm(f, d, family = gaussian())
  # weights all c: var(e) = s^2 / c, the same model with s^2 = c sigma^2, so
  # the same fixed effects, variances, SDs and likelihood
  f4 <- sw_glmm(f, d, family = gaussian(), weights = rep(4, nrow(d)))
  expect_equal(coef(f4), coef(fit), tolerance = 1e-8)
  expect_equal(vcov(f4), vcov(fit), tolerance = 1e-7)
  expect_equal(f4$sigma, fit$sigma, tolerance = 1e-7)
  expect_equal(f4$residual_sd, 2 * fit$residual_sd, tolerance = 1e-8)
  expect_equal(f4$loglik, fit$loglik, tolerance = 1e-10)
  # zero weights: the rows are excluded and counted, as if dropped
  d$w <- runif(nrow(d), 0.5, 2)
  d$w[c(3, 10, 11)] <- 0
  expect_snapshot(f0 <- sw_glmm(f, d, family = gaussian(), weights = "w"))
  f1 <- sw_glmm(f, d[-c(3, 10, 11), ], family = gaussian(), weights = "w")
  expect_equal(coef(f0), coef(f1), tolerance = 1e-12)
  expect_equal(f0$loglik, f1$loglik, tolerance = 1e-12)
  expect_equal(nobs(f0), nrow(d) - 3L)
  expect_equal(f0$exclusion_flow$step, c("rows in data", "zero weight"))
  expect_equal(f0$exclusion_flow$excluded, c(0, 3))
  expect_equal(f0$kept_rows, setdiff(seq_len(nrow(d)), c(3, 10, 11)))
  expect_output(print(f0), "Excluded: 3 rows \\(zero weight\\)")
  expect_output(print(f0), "Prior weights")
  # a refit under another allocation (perm_test(statistic = "model")) keeps the weights
  expect_equal(coef(refit_with(f0, d)), coef(f0), tolerance = 1e-12)
})

test_that("weighted LMM is invariant to shifting and scaling the outcome, a covariate and the row order", {
  d <- weighted_cr2_data(5)
  f <- y ~ treated + since + (1 | la / child_id)
  f0 <- sw_glmm(f, d, family = gaussian(), weights = "w", cluster = "la")
  d2 <- d
  d2$y <- (d$y + 1e4) * 1000
  d2$since <- d$since / 1000 + 2e4
  f2 <- sw_glmm(f, d2, family = gaussian(), weights = "w", cluster = "la")
  expect_equal(unname(coef(f2)[2:3]), unname(coef(f0)[2:3] * c(1000, 1e6)), tolerance = 1e-6)
  expect_equal(sqrt(diag(vcov(f2)))[2:3], sqrt(diag(vcov(f0)))[2:3] * c(1000, 1e6),
               tolerance = 1e-6, ignore_attr = TRUE)
  expect_equal(sqrt(diag(vcov(f2, type = "CR2")))[2:3], sqrt(diag(vcov(f0, type = "CR2")))[2:3] * c(1000, 1e6),
               tolerance = 1e-6, ignore_attr = TRUE)
  expect_equal(f2$cr2$df[-1], f0$cr2$df[-1], tolerance = 1e-6)
  expect_equal(f2$sigma, 1000 * f0$sigma, tolerance = 1e-6)
  # REML: y times c moves the criterion by (N - p) log c, a column of X times
  # 1 / c by -log c (through log det X'V^-1 X)
  expect_equal(f2$loglik, f0$loglik - (nrow(d) - 3) * log(1000) + log(1000), tolerance = 1e-6)
  o <- sample(nrow(d))
  f3 <- sw_glmm(f, d[o, ], family = gaussian(), weights = "w", cluster = "la")
  expect_equal(coef(f3), coef(f0), tolerance = 1e-9)
  expect_equal(vcov(f3, type = "CR2"), vcov(f0, type = "CR2"), tolerance = 1e-9)
  expect_equal(f3$cr2$df, f0$cr2$df, tolerance = 1e-9)
  expect_equal(f3$loglik, f0$loglik, tolerance = 1e-10)
  # the quadrature path of the CR2 on the same fits
  old <- options(sfpceval.cr2_exact_max = 0)
  on.exit(options(old))
  q0 <- sw_glmm(f, d, family = gaussian(), weights = "w", cluster = "la")
  q2 <- sw_glmm(f, d2, family = gaussian(), weights = "w", cluster = "la")
  expect_equal(vcov(q0, type = "CR2"), vcov(f0, type = "CR2"), tolerance = 1e-9)
  expect_equal(vcov(q2, type = "CR2"), vcov(f2, type = "CR2"), tolerance = 1e-9)
  expect_equal(q2$cr2$df, f2$cr2$df, tolerance = 1e-9)
})

test_that("weighted LMM CR2 and df equal a dense reference and clubSandwich on the same lme model", {
  d <- weighted_cr2_data(3)
  cl <- match(d$la, sort(unique(d$la)))
  # the third case: the Family Safeguarding absence model, CEM-type weights
  # per child, clustered by LA
  cases <- lmm_variance_cases(d)
  # both ways of applying G^+1/2: the exact invariant-subspace basis, and the
  # quadrature used when D has many classes (forced here by the option)
  for (exact_max in c(1e9, 0)) {
    old <- options(sfpceval.cr2_exact_max = exact_max)
    for (cs in cases) {
      fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la", weights = "w")
      X <- model.matrix(parse_glmm_formula(cs$f)$fixed, d)
      ref <- ref_cr2(X, d$y, cl, diag(1 / d$w) + cs$phi(fit$theta))
      expect_equal(unname(vcov(fit, type = "CR2")), unname(ref$vcov), tolerance = 1e-8)
      expect_equal(unname(fit$cr2$df), ref$df, tolerance = 1e-8)
    }
    # unweighted, too
    fit <- sw_glmm(cases[[1]]$f, d, family = gaussian(), cluster = "la")
    ref <- ref_cr2(model.matrix(~ treated + since, d), d$y, cl, diag(nrow(d)) + cases[[1]]$phi(fit$theta))
    expect_equal(unname(vcov(fit, type = "CR2")), unname(ref$vcov), tolerance = 1e-8)
    expect_equal(unname(fit$cr2$df), ref$df, tolerance = 1e-8)
    options(old)
  }
  # clubSandwich does not take lmer fits with weights; the same model is
  # nlme::lme with varFixed(~ 1 / w) (residual variance sigma^2 / w), whose CR2
  # clubSandwich computes with the model's covariance as target. (With nested
  # groups clubSandwich 0.5.8 needs the rows in nlme's group order, as here.)
  # (clubSandwich's lme method takes only clusters at a random-effect level,
  # so not the third case.)
  skip_if_not_installed("clubSandwich")
  skip_if_not_installed("nlme")
  d$iw <- 1 / d$w
  for (cs in cases[1:2]) {
    fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la", weights = "w")
    m <- nlme::lme(cs$lme[[1]], random = cs$lme[[2]], data = d, weights = nlme::varFixed(~ iw),
                   control = nlme::lmeControl(tolerance = 1e-12, msTol = 1e-12, returnObject = TRUE))
    expect_equal(unname(coef(fit)), unname(nlme::fixef(m)), tolerance = 1e-6)
    expect_cr2_clubsandwich(fit, m, d$la)
  }
})

test_that("weighted LMM: the cluster bootstrap's per-cluster cross-products equal a dense reference", {
  # continuous weights give every child its own weight sum, so the per-cluster
  # pieces come from the child sums (not per-class matrices)
  d <- weighted_cr2_data(6)
  d$w <- runif(nrow(d), 0.3, 3)
  f <- y ~ treated + since + (1 | la / child_id)
  fit <- sw_glmm(f, d, family = gaussian(), weights = "w")
  expect_null(fit$setup$Mg)
  # weights constant within children: few weight sums, per-class matrices
  d$wc <- ave(d$w, d$child_id, FUN = function(x) round(2 * x[1]) / 2)
  fc <- sw_glmm(f, d, family = gaussian(), weights = "wc")
  expect_false(is.null(fc$setup$Mg))
  X <- model.matrix(~ treated + since, d)
  for (ft in list(list(fit, d$w), list(fc, d$wc))) {
    th <- ft[[1]]$theta
    w <- ft[[2]]
    st <- lmm_standardise(X, d$y, w)
    Z <- cbind(st$X, st$y)
    P <- lmm_cluster_xprod(ft[[1]]$setup, th)
    las <- sort(unique(d$la))
    for (a in seq_along(las)) {
      i <- which(d$la == las[a])
      Phi <- diag(1 / w[i]) + th[1]^2 + th[2]^2 * outer(d$child_id[i], d$child_id[i], "==")
      expect_equal(P[, , a], crossprod(Z[i, ], solve(Phi, Z[i, ])), tolerance = 1e-10,
                   ignore_attr = TRUE)
    }
  }
  wb <- suppressWarnings(wild_boot(fit, "treated", weights = "rademacher"), classes = "sfpceval_few_clusters")
  expect_true(wb$p_value > 0 && wb$p_value <= 1)
})

test_that("weights: bad input is an error naming the rows; binomial refuses them", {
  d <- weighted_cr2_data(7)
  f <- y ~ treated + since + (1 | la / child_id)
  bad <- d
  bad$w[c(2, 5)] <- -1
  expect_snapshot(sw_glmm(f, bad, family = gaussian(), weights = "w"), error = TRUE)
  bad$w[c(2, 5)] <- NA
  expect_snapshot(sw_glmm(f, bad, family = gaussian(), weights = "w"), error = TRUE)
  expect_snapshot(sw_glmm(f, d, family = gaussian(), weights = rep(0, nrow(d))), error = TRUE)
  expect_snapshot(sw_glmm(f, d, family = gaussian(), weights = "nope"), error = TRUE)
  expect_snapshot(sw_glmm(f, d, family = gaussian(), weights = 1:3), error = TRUE)
  d$yb <- as.integer(d$y > 15)
  expect_snapshot(sw_glmm(yb ~ treated + (1 | la), d, weights = "w"), error = TRUE)
  # CR2 needs one weight per child
  d$w2 <- d$w * (1 + (seq_len(nrow(d)) %% 2))
  expect_snapshot(sw_glmm(f, d, family = gaussian(), weights = "w2", cluster = "la"), error = TRUE)
  expect_silent(sw_glmm(f, d, family = gaussian(), weights = "w2"))
})
