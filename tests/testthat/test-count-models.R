# hurdle_fit(), tobit_fit(), zero_check().
#
# Tolerances.  Our Newton-Raphson stops when the largest step is below 1e-10
# relative to the parameter, so our estimates are exact to ~1e-10.
# * pscl maximises with BFGS, stopping when the log-likelihood changes by
#   less than reltol = eps^(1/1.6) (~1.6e-10) relative.  A parameter can then
#   be off the optimum by up to sqrt(2 reltol |logLik|) standard errors, so
#   coefficients are compared on that scale (and our log-likelihood must be
#   at least as high).  pscl's Hessian is optim()'s central difference of the
#   gradient with step 1e-3, accurate to about (1e-3)^2 = 1e-6 relative, so
#   variances are compared at 1e-5.
# * survreg (AER::tobit) iterates Newton with an analytic Hessian to
#   rel.tolerance 1e-9, so tobit is compared at 1e-6.
# * The plain-R references differentiate the log-likelihood numerically:
#   Hessians by central second differences with Richardson extrapolation
#   (error O(h^4) + eps |l| / h^2, ~1e-9 relative for h = 1e-3), scores by
#   central first differences (h = 1e-6, error ~1e-9); compared at 1e-7.

pscl_tol_ok <- function(fit, ref) {
  reltol <- .Machine$double.eps^(1 / 1.6)
  bound <- sqrt(2 * reltol * abs(fit$loglik))
  se <- sqrt(diag(vcov(fit, "model")))
  expect_gte(fit$loglik, as.numeric(logLik(ref)) - 1e-9 * abs(fit$loglik))
  expect_true(all(abs(coef(fit) - coef(ref)) <= bound * se))
}

# numerical Hessian: central second differences, Richardson-extrapolated;
# steps h are per parameter (we use 1e-2 standard errors, so the
# log-likelihood moves by ~1e-4 and rounding stays ~eps |l| / 1e-4)
num_hess <- function(f, par, h) {
  H1 <- function(h) {
    k <- length(par)
    H <- matrix(0, k, k)
    for (i in seq_len(k)) for (j in i:k) {
      e <- function(si, sj) {
        p <- par
        p[i] <- p[i] + si * h[i]
        p[j] <- p[j] + sj * h[j]
        f(p)
      }
      H[i, j] <- H[j, i] <- (e(1, 1) - e(1, -1) - e(-1, 1) + e(-1, -1)) / (4 * h[i] * h[j])
    }
    H
  }
  (4 * H1(h / 2) - H1(h)) / 3
}

sim_counts <- function(n = 400, seed = 1) {
  set.seed(seed)
  d <- data.frame(x = rnorm(n), z = rbinom(n, 1, 0.4),
                  la = sample(sprintf("L%02d", 1:8), n, TRUE))
  pos <- runif(n) < plogis(0.2 + 0.8 * d$x)
  d$y <- ifelse(pos, rnbinom(n, mu = exp(1 + 0.4 * d$x - 0.3 * d$z), size = 1.5), 0)
  d
}

sim_tobit <- function(n = 300, seed = 2) {
  set.seed(seed)
  d <- data.frame(x = rnorm(n), z = rbinom(n, 1, 0.5),
                  la = sample(1:6, n, TRUE))
  d$days <- pmin(pmax(100 + 80 * d$x - 20 * d$z + rnorm(n, sd = 90), 0), 300)
  d
}

# plain-R log-likelihood of the hurdle model, per observation
hurdle_ll_obs <- function(par, y, X, Z, dist) {
  kx <- ncol(X)
  beta <- par[seq_len(kx)]
  if (dist == "negbin") {
    theta <- exp(par[kx + 1])
    gam <- par[-seq_len(kx + 1)]
  } else {
    gam <- par[-seq_len(kx)]
  }
  mu <- exp(drop(X %*% beta))
  pz <- plogis(drop(Z %*% gam))
  count <- if (dist == "poisson") {
    dpois(y, mu, log = TRUE) - log(1 - dpois(0, mu))
  } else {
    dnbinom(y, size = theta, mu = mu, log = TRUE) - log(1 - dnbinom(0, size = theta, mu = mu))
  }
  ifelse(y == 0, log(1 - pz), log(pz) + count)
}

# central differences of a vector-valued function (per-observation scores)
num_jac <- function(f, par, h = 1e-6) {
  vapply(seq_along(par), function(j) {
    up <- dn <- par
    up[j] <- up[j] + h
    dn[j] <- dn[j] - h
    (f(up) - f(dn)) / (2 * h)
  }, numeric(length(f(par))))
}

# a rough Hessian (fixed steps) only to choose step sizes for num_hess()
fit_hessian <- function(fit, par, f) num_hess(function(p) sum(f(p)), par, rep(1e-3, length(par)))

test_that("hurdle equals a plain-R likelihood: optimum, Hessian, cluster sandwich", {
  d <- sim_counts()
  X <- model.matrix(~ x + z, d)
  Z <- model.matrix(~ x, d)
  for (dist in c("poisson", "negbin")) {
    fit <- hurdle_fit(y ~ x + z | x, d, dist = dist, cluster = "la")
    par <- c(coef(fit)[1:3], if (dist == "negbin") log(fit$theta), coef(fit)[4:5])
    f <- function(p) hurdle_ll_obs(p, d$y, X, Z, dist)
    expect_equal(sum(f(par)), fit$loglik, tolerance = 1e-10)
    S <- num_jac(f, par)
    # the gradient vanishes at the optimum (central differences, error ~1e-8)
    expect_lt(max(abs(colSums(S))), 1e-5)
    se <- sqrt(diag(solve(-fit_hessian(fit, par, f))))
    Vm <- solve(-num_hess(function(p) sum(f(p)), par, 1e-2 * se))
    keep <- if (dist == "negbin") -4 else seq_along(par)
    expect_equal(unname(vcov(fit, "model")), unname(Vm[keep, keep]), tolerance = 1e-7)
    # cluster sandwich by an explicit loop over clusters, full parameter
    meat <- matrix(0, length(par), length(par))
    for (g in unique(d$la)) {
      s <- colSums(S[d$la == g, , drop = FALSE])
      meat <- meat + tcrossprod(s)
    }
    G <- length(unique(d$la))
    Vc <- Vm %*% meat %*% Vm * G / (G - 1)
    expect_equal(unname(vcov(fit)), unname(Vc[keep, keep]), tolerance = 1e-7)
  }
})

test_that("hurdle equals pscl::hurdle and sandwich::vcovCL", {
  skip_if_not_installed("pscl")
  skip_if_not_installed("sandwich")
  d <- sim_counts()
  for (dist in c("poisson", "negbin")) {
    fit <- hurdle_fit(y ~ x + z | x, d, dist = dist, cluster = "la",
                      theta_in_meat = FALSE)
    ref <- pscl::hurdle(y ~ x + z | x, data = d, dist = dist)
    pscl_tol_ok(fit, ref)
    expect_equal(vcov(fit, "model"), vcov(ref), tolerance = 1e-5)
    # sandwich's computation on pscl's object carrying our estimates: the same
    # formula, so equal to rounding
    mine <- ref
    mine$coefficients$count[] <- coef(fit)[1:3]
    mine$coefficients$zero[] <- coef(fit)[4:5]
    if (dist == "negbin") mine$theta[["count"]] <- fit$theta
    mine$vcov[] <- vcov(fit, "model")
    expect_equal(vcov(fit), sandwich::vcovCL(mine, cluster = ~la), tolerance = 1e-10)
    # on pscl's own estimates, which may sit up to 4.5e-4 SE from the optimum,
    # moving each cluster's score sum by that order relative
    expect_equal(vcov(fit), sandwich::vcovCL(ref, cluster = ~la), tolerance = 1e-3)
    if (dist == "negbin") {
      reltol <- .Machine$double.eps^(1 / 1.6)
      expect_lte(abs(log(fit$theta) - log(ref$theta[["count"]])),
                 sqrt(2 * reltol * abs(fit$loglik)) * fit$se_log_theta)
      # pscl's SE is a finite-difference Hessian at its own (slightly off) theta
      expect_equal(fit$se_log_theta, ref$SE.logtheta[["count"]], tolerance = 1e-4)
      # with theta's score in the meat (the default) the Poisson part is
      # unchanged but the count part's sandwich differs
      full <- hurdle_fit(y ~ x + z | x, d, dist = dist, cluster = "la")
      expect_equal(vcov(full)[4:5, 4:5], vcov(fit)[4:5, 4:5], tolerance = 1e-10)
    }
  }
  # same regressors in both parts without `|`
  pscl_tol_ok(hurdle_fit(y ~ x, d), pscl::hurdle(y ~ x, data = d))
})

test_that("hurdle with intercepts only has the closed-form answer", {
  # zero part: logit of the share of positive counts; count part: mu solves
  # mean(y | y > 0) = mu / (1 - exp(-mu)) (the truncated-Poisson mean).
  d <- data.frame(y = c(0, 0, 0, 1, 1, 2, 3, 0, 5, 2))
  fit <- hurdle_fit(y ~ 1, d)
  ybar <- mean(d$y[d$y > 0])          # 14 / 6
  mu <- uniroot(function(m) m / (1 - exp(-m)) - ybar, c(1e-6, 10), tol = 1e-14)$root
  expect_equal(unname(coef(fit)), c(log(mu), qlogis(6 / 10)), tolerance = 1e-9)
})

test_that("hurdle input: integer vs double, unsorted rows, NA rows", {
  d <- sim_counts(200, seed = 3)
  a <- hurdle_fit(y ~ x, d, cluster = "la")
  di <- d
  di$y <- as.integer(di$y)
  expect_equal(coef(hurdle_fit(y ~ x, di, cluster = "la")), coef(a))
  o <- sample(nrow(d))
  b <- hurdle_fit(y ~ x, d[o, ], cluster = "la")
  expect_equal(coef(b), coef(a), tolerance = 1e-10)
  expect_equal(vcov(b), vcov(a), tolerance = 1e-8)
  dn <- d
  dn$x[c(3, 7)] <- NA
  expect_warning(f <- hurdle_fit(y ~ x, dn), "2 rows with a missing value")
  expect_equal(nobs(f), nrow(d) - 2)
  expect_equal(f$n_dropped, 2L)
})

test_that("hurdle errors are clear", {
  d <- sim_counts(100, seed = 4)
  neg <- d
  neg$y[c(2, 5)] <- -1
  expect_snapshot(hurdle_fit(y ~ x, neg), error = TRUE)
  frac <- d
  frac$y[4] <- 1.5
  expect_snapshot(hurdle_fit(y ~ x, frac), error = TRUE)
  zero <- d
  zero$y <- 0
  expect_snapshot(hurdle_fit(y ~ x, zero), error = TRUE)
  allpos <- d
  allpos$y <- allpos$y + 1
  expect_snapshot(hurdle_fit(y ~ x, allpos), error = TRUE)
  inf <- d
  inf$x[9] <- Inf
  expect_snapshot(hurdle_fit(y ~ x, inf), error = TRUE)
  expect_snapshot(hurdle_fit(y ~ x, d[0, ]), error = TRUE)
  expect_snapshot(hurdle_fit(y ~ x, d, cluster = rep(1, nrow(d))), error = TRUE)
  expect_snapshot(hurdle_fit(y ~ x, d, cluster = "nope"), error = TRUE)
  d$x2 <- 2 * d$x
  expect_snapshot(hurdle_fit(y ~ x + x2, d), error = TRUE)
  expect_snapshot(hurdle_fit(y ~ w, d), error = TRUE)
  expect_snapshot(hurdle_fit(y ~ 0, d), error = TRUE)
})

test_that("hurdle warns when the zero hurdle is perfectly separated", {
  # every positive count has s = 1 and every zero s = 0: the logit slope
  # diverges, so Newton-Raphson cannot converge
  d <- data.frame(y = c(0, 0, 0, 0, 2, 1, 3, 1), s = c(0, 0, 0, 0, 1, 1, 1, 1))
  expect_snapshot(fit <- hurdle_fit(y ~ 1 | s, d))
  expect_true(all(is.na(vcov(fit)[2:3, 2:3])))
})

test_that("hurdle methods", {
  d <- sim_counts(200, seed = 5)
  fit <- hurdle_fit(y ~ x, d, dist = "negbin", cluster = "la")
  td <- tidy.sfp_mle(fit)
  expect_named(td, c("term", "estimate", "std.error", "statistic", "p.value",
                     "conf.low", "conf.high", "df"))
  expect_equal(td$df, rep(7, 4))
  ci <- confint(fit)
  expect_equal(unname(ci[, 2] - coef(fit)), qt(0.975, 7) * td$std.error)
  expect_equal(nobs(fit), 200L)
  expect_equal(attr(logLik(fit), "df"), 5)
  expect_equal(glance.sfp_mle(fit)$AIC, -2 * fit$loglik + 10)
  expect_output(print(summary(fit)), "Cluster-robust SEs \\(8 clusters\\), t\\(7\\)")
})

# ---- tobit ----

tobit_ll_obs <- function(par, y, X, left, right) {
  k <- ncol(X)
  xb <- drop(X %*% par[seq_len(k)])
  s <- exp(par[k + 1])
  ifelse(y <= left, pnorm((left - xb) / s, log.p = TRUE),
         ifelse(y >= right, pnorm((xb - right) / s, log.p = TRUE),
                dnorm((y - xb) / s, log = TRUE) - log(s)))
}

test_that("tobit equals a plain-R likelihood: optimum, Hessian, sandwich, effects", {
  d <- sim_tobit()
  X <- model.matrix(~ x + z, d)
  fit <- tobit_fit(days ~ x + z, d, left = 0, right = 300, cluster = "la")
  par <- unname(coef(fit))
  f <- function(p) tobit_ll_obs(p, d$days, X, 0, 300)
  expect_equal(sum(f(par)), fit$loglik, tolerance = 1e-12)
  S <- num_jac(f, par)
  expect_lt(max(abs(colSums(S))), 1e-5)
  Vm <- solve(-num_hess(function(p) sum(f(p)), par, 1e-2 * sqrt(diag(vcov(fit, "model")))))
  expect_equal(unname(vcov(fit, "model")), Vm, tolerance = 1e-7)
  meat <- matrix(0, 4, 4)
  for (g in unique(d$la)) meat <- meat + tcrossprod(colSums(S[d$la == g, ]))
  Vc <- Vm %*% meat %*% Vm * 6 / 5
  expect_equal(unname(vcov(fit)), Vc, tolerance = 1e-7)
  # average marginal effect of x: beta_x * mean(Phi(b) - Phi(a))
  xb <- drop(X %*% par[1:3])
  s <- exp(par[4])
  share <- mean(pnorm((300 - xb) / s) - pnorm((0 - xb) / s))
  expect_equal(fit$effects$estimate, par[2:3] * share, tolerance = 1e-12)
})

test_that("tobit equals AER::tobit and sandwich::vcovCL", {
  skip_if_not_installed("AER")
  skip_if_not_installed("sandwich")
  d <- sim_tobit()
  for (lim in list(c(0, 300), c(0, Inf), c(-Inf, 300))) {
    fit <- tobit_fit(days ~ x + z, d, left = lim[1], right = lim[2], cluster = "la")
    ref <- eval(bquote(AER::tobit(days ~ x + z, left = .(lim[1]), right = .(lim[2]),
                                  data = d)))
    expect_equal(coef(fit)[1:3], coef(ref), tolerance = 1e-6)
    expect_equal(fit$scale, ref$scale, tolerance = 1e-6)
    expect_equal(fit$loglik, as.numeric(logLik(ref)), tolerance = 1e-10)
    expect_equal(vcov(fit, "model"), vcov(ref), tolerance = 1e-6,
                 ignore_attr = TRUE)
    expect_equal(unname(vcov(fit)), unname(sandwich::vcovCL(ref, cluster = ~la)),
                 tolerance = 1e-6)
  }
})

test_that("tobit without censored values is OLS with the ML variance", {
  # no observation at a limit: the likelihood is the normal linear model,
  # so beta = OLS and sigma^2 = RSS / n.
  d <- data.frame(y = c(3, 5, 4, 8, 9, 7), x = c(1, 2, 3, 4, 5, 6))
  fit <- tobit_fit(y ~ x, d, left = 0, right = 100)
  ols <- lm(y ~ x, d)
  expect_equal(coef(fit)[1:2], coef(ols), tolerance = 1e-10)
  expect_equal(fit$scale, sqrt(sum(resid(ols)^2) / 6), tolerance = 1e-10)
  expect_equal(fit$n_left + fit$n_right, 0L)
})

test_that("tobit: ties at the limits are censored, unsorted and integer input", {
  d <- sim_tobit(200, seed = 7)
  fit <- tobit_fit(days ~ x, d, 0, 300)
  expect_equal(fit$n_left, sum(d$days == 0))
  expect_equal(fit$n_right, sum(d$days == 300))
  o <- sample(nrow(d))
  expect_equal(coef(tobit_fit(days ~ x, d[o, ], 0, 300)), coef(fit), tolerance = 1e-10)
  di <- d
  di$days <- as.integer(round(di$days))
  dd <- di
  dd$days <- as.double(dd$days)
  expect_equal(coef(tobit_fit(days ~ x, di, 0, 300)), coef(tobit_fit(days ~ x, dd, 0, 300)))
  out <- d
  out$days[1] <- 400
  expect_warning(tobit_fit(days ~ x, out, 0, 300), "outside \\[left, right\\]")
})

test_that("tobit errors are clear", {
  d <- sim_tobit(50, seed = 8)
  expect_snapshot(tobit_fit(days ~ x, d, left = 300, right = 0), error = TRUE)
  expect_snapshot(tobit_fit(days ~ x, d, left = 0, right = 0), error = TRUE)
  cens <- d
  cens$days <- 0
  expect_snapshot(tobit_fit(days ~ x, cens), error = TRUE)
  expect_snapshot(tobit_fit(days ~ x, d, cluster = "nope"), error = TRUE)
  expect_snapshot(tobit_fit(days ~ x, d[0, ]), error = TRUE)
  expect_snapshot(tobit_fit(days ~ x, d, left = NA), error = TRUE)
  expect_snapshot(tobit_fit(days ~ x, d, cluster = rep("L1", nrow(d))), error = TRUE)
  expect_snapshot(tobit_fit(days ~ 0, d), error = TRUE)
})

# ---- zero_check ----

test_that("zero_check equals the formulas on a glm and a plain-R score test", {
  set.seed(9)
  d <- data.frame(x = rnorm(300))
  d$y <- ifelse(runif(300) < 0.3, 0, rpois(300, exp(0.8 + 0.4 * d$x)))
  g <- glm(y ~ x, poisson, d)
  zc <- zero_check(y ~ x, d)
  zg <- zero_check(g)
  mu <- fitted(g)
  p0 <- exp(-mu)
  X <- model.matrix(g)
  num <- sum(((d$y == 0) - p0) / p0)^2
  den <- sum((1 - p0) / p0) - t(mu) %*% X %*% solve(t(X) %*% diag(mu) %*% X) %*% t(X) %*% mu
  expect_equal(zg$expected, sum(dpois(0, mu)))
  expect_equal(zg$statistic, drop(num / den))
  expect_equal(zc$expected, zg$expected, tolerance = 1e-8)
  expect_equal(zc$statistic, zg$statistic, tolerance = 1e-8)
  expect_equal(zc$observed, sum(d$y == 0))
  expect_equal(zc$frequencies$observed[1:3], as.numeric(table(factor(d$y, 0:2))))
  expect_lt(zc$p.value, 0.05)
  expect_gt(zc$ratio, 1)
  expect_output(print(zc), "van den Broek")
})

test_that("zero_check: intercept-only Poisson expects n exp(-ybar) zeros", {
  # the Poisson MLE with only an intercept is mu = mean(y)
  d <- data.frame(y = c(0, 1, 2, 0, 3, 1, 0, 2))
  zc <- zero_check(y ~ 1, d)
  expect_equal(zc$expected, 8 * exp(-9 / 8), tolerance = 1e-10)
  expect_equal(zc$ratio, 3 / (8 * exp(-9 / 8)), tolerance = 1e-10)
})

test_that("zero_check negbin equals a plain-R NB2 likelihood maximum", {
  set.seed(10)
  d <- data.frame(x = rnorm(300))
  d$y <- rnbinom(300, mu = exp(1 + 0.5 * d$x), size = 2)
  zc <- zero_check(y ~ x, d, dist = "negbin")
  nll <- function(p) -sum(dnbinom(d$y, size = exp(p[3]), mu = exp(p[1] + p[2] * d$x), log = TRUE))
  o <- optim(c(1, 0.5, log(2)), nll, method = "BFGS", control = list(reltol = 1e-14))
  mu <- exp(o$par[1] + o$par[2] * d$x)
  # optim's optimum is accurate to ~1e-6 in the parameters
  expect_equal(zc$theta, exp(o$par[3]), tolerance = 1e-5)
  expect_equal(zc$expected, sum(dnbinom(0, size = exp(o$par[3]), mu = mu)), tolerance = 1e-5)
  expect_true(is.na(zc$statistic))
})

test_that("zero_check errors are clear", {
  d <- data.frame(y = c(0, 1, -2, 3), x = 1:4)
  expect_snapshot(zero_check(y ~ x, d), error = TRUE)
  d$y <- 0
  expect_snapshot(zero_check(y ~ x, d), error = TRUE)
  expect_snapshot(zero_check("y ~ x", d), error = TRUE)
  expect_snapshot(zero_check(y ~ x, d[0, ]), error = TRUE)
  expect_snapshot(zero_check(glm(y ~ x, gaussian, data.frame(y = 1:4 + 0.5, x = 1:4))),
                  error = TRUE)
})

# ---- weights ----

test_that("weighted hurdle and tobit equal pscl, AER and vcovCL", {
  skip_if_not_installed("pscl")
  skip_if_not_installed("AER")
  skip_if_not_installed("sandwich")
  d <- sim_counts(300, seed = 12)
  d$w <- runif(300, 0.2, 3)
  fit <- hurdle_fit(y ~ x + z | x, d, dist = "negbin", cluster = "la", weights = "w",
                    theta_in_meat = FALSE)
  ref <- pscl::hurdle(y ~ x + z | x, data = d, dist = "negbin", weights = w)
  pscl_tol_ok(fit, ref)
  expect_equal(vcov(fit, "model"), vcov(ref), tolerance = 1e-5)
  mine <- ref
  mine$coefficients$count[] <- coef(fit)[1:3]
  mine$coefficients$zero[] <- coef(fit)[4:5]
  mine$theta[["count"]] <- fit$theta
  mine$vcov[] <- vcov(fit, "model")
  expect_equal(vcov(fit), sandwich::vcovCL(mine, cluster = ~la), tolerance = 1e-10)
  t <- sim_tobit(300, seed = 13)
  t$w <- runif(300, 0.2, 3)
  fit <- tobit_fit(days ~ x + z, t, 0, 300, cluster = "la", weights = t$w)
  ref <- AER::tobit(days ~ x + z, left = 0, right = 300, data = t, weights = w)
  expect_equal(coef(fit)[1:3], coef(ref), tolerance = 1e-6)
  expect_equal(fit$loglik, as.numeric(logLik(ref)), tolerance = 1e-10)
  expect_equal(vcov(fit, "model"), vcov(ref), tolerance = 1e-6, ignore_attr = TRUE)
  # sandwich 3.0-2's estfun.survreg weights the scores of beta but not that
  # of Log(scale), so vcovCL() on a weighted survreg is not the weighted
  # sandwich (with all weights 2 it changes, which it must not; see the next
  # test).  The weighted cluster sandwich is checked against plain R instead.
  X <- model.matrix(~ x + z, t)
  par <- unname(coef(fit))
  S <- t$w * num_jac(function(p) tobit_ll_obs(p, t$days, X, 0, 300), par)
  Vm <- vcov(fit, "model")
  meat <- matrix(0, 4, 4)
  for (g in unique(t$la)) meat <- meat + tcrossprod(colSums(S[t$la == g, ]))
  expect_equal(unname(vcov(fit)), unname(Vm %*% meat %*% Vm * 6 / 5), tolerance = 1e-7)
})

test_that("a constant weight changes nothing, the cluster sandwich included", {
  # on paper: weights c multiply the Hessian by c and the meat by c^2, so
  # H^-1 B H^-1 is unchanged
  t <- sim_tobit(200, seed = 17)
  a <- tobit_fit(days ~ x + z, t, 0, 300, cluster = "la")
  b <- tobit_fit(days ~ x + z, t, 0, 300, cluster = "la", weights = rep(2, 200))
  expect_equal(coef(a), coef(b), tolerance = 1e-10)
  expect_equal(vcov(a), vcov(b), tolerance = 1e-10)
  d <- sim_counts(200, seed = 18)
  a <- hurdle_fit(y ~ x, d, dist = "negbin", cluster = "la")
  b <- hurdle_fit(y ~ x, d, dist = "negbin", cluster = "la", weights = rep(3, 200))
  expect_equal(coef(a), coef(b), tolerance = 1e-10)
  expect_equal(vcov(a), vcov(b), tolerance = 1e-10)
})

test_that("integer weights equal replicated rows; zero weights leave rows out", {
  # on paper: a weight of k multiplies an observation's log-likelihood term
  # by k, exactly as k copies of the row do
  d <- sim_counts(120, seed = 14)
  d$w <- sample(0:3, 120, TRUE)
  rep_rows <- d[rep(seq_len(120), d$w), ]
  a <- hurdle_fit(y ~ x, d, dist = "negbin", weights = "w")
  b <- hurdle_fit(y ~ x, rep_rows, dist = "negbin")
  expect_equal(coef(a), coef(b), tolerance = 1e-9)
  expect_equal(a$loglik, b$loglik, tolerance = 1e-10)
  expect_equal(vcov(a, "model"), vcov(b, "model"), tolerance = 1e-8)
  expect_equal(a$n_zero_weight, sum(d$w == 0))
  expect_output(print(a), sprintf("%d rows with weight 0 left out", sum(d$w == 0)))
  t <- sim_tobit(120, seed = 15)
  t$w <- sample(0:3, 120, TRUE)
  expect_equal(coef(tobit_fit(days ~ x, t, 0, 300, weights = "w")),
               coef(tobit_fit(days ~ x, t[rep(seq_len(120), t$w), ], 0, 300)),
               tolerance = 1e-9)
})

test_that("bad weights are clear errors", {
  d <- sim_counts(50, seed = 16)
  d$w <- 1
  d$w[c(3, 8)] <- c(-1, NA)
  expect_snapshot(hurdle_fit(y ~ x, d, weights = "w"), error = TRUE)
  expect_snapshot(tobit_fit(y ~ x, d, weights = 1:3), error = TRUE)
  expect_snapshot(tobit_fit(y ~ x, d, weights = "wt"), error = TRUE)
})

test_that("the Newton fits report convergence the package's way (#16)", {
  d <- sim_tobit()
  fit <- tobit_fit(days ~ x + z, d, left = 0, right = 300, cluster = "la")
  expect_true(fit$convergence$converged)
  expect_identical(fit$convergence$iterations, as.integer(fit$iterations))
  expect_warning(f1 <- tobit_fit(days ~ x + z, d, left = 0, right = 300, cluster = "la", maxit = 1L),
                 class = "sfpceval_not_converged")
  expect_false(f1$convergence$converged)
  expect_identical(f1$convergence$iterations, 1L)
  dc <- sim_counts()
  h <- hurdle_fit(y ~ x + z | x, dc, dist = "poisson", cluster = "la")
  expect_true(h$convergence$converged)
  expect_identical(h$convergence$iterations, as.integer(max(h$iterations)))
  expect_match(h$convergence$message, "count: .*; zero: ")
  # both parts stop after one step: two warnings of the package's class
  expect_warning(expect_warning(hurdle_fit(y ~ x + z | x, dc, dist = "poisson", cluster = "la", maxit = 1L),
                                class = "sfpceval_not_converged"), class = "sfpceval_not_converged")
})
