# sw_glmm() binomial with nested random intercepts (1 | la / child_id):
# the Laplace approximation of src/glmm_nested.c (issue #14).

# Absence-shaped data: children within authorities, sessions missed out of
# sessions possible per term.
nested_data <- function(G = 6, m = 30, seed = 3, sd_la = 0.4, sd_child = 0.9) {
  set.seed(seed)
  d <- expand.grid(term = 1:3, child = 1:m, la = paste0("L", 1:G), stringsAsFactors = FALSE)
  d$child_id <- paste0("c", d$child)
  d$x <- round(rnorm(nrow(d)), 2)
  d$treated <- as.integer(d$term >= 2 & match(d$la, unique(d$la)) %% 2 == 0)
  ua <- rnorm(G, sd = sd_la)[match(d$la, unique(d$la))]
  key <- paste(d$la, d$child_id)
  vc <- rnorm(G * m, sd = sd_child)[match(key, unique(key))]
  d$possible <- sample(20:60, nrow(d), TRUE)
  d$missed <- rbinom(nrow(d), d$possible, stats::plogis(-2 + 0.3 * d$treated + 0.2 * d$x + ua + vc))
  d
}
nested_formula <- cbind(missed, possible - missed) ~ treated + x + factor(term) + (1 | la / child_id)

# Plain-R reference: the Laplace log-likelihood at theta = (beta, s1, s2),
# per authority with the DENSE (1 + m) x (1 + m) Hessian: the mode by Newton
# on b = (u, v_1..v_m), then h(b) - log det(H) / 2. Binomial coefficients
# omitted (as the C code returns it).
laplace_ref <- function(X, s, n, la, child, beta, s1, s2) {
  eta <- drop(X %*% beta)
  tot <- 0
  for (a in unique(la)) {
    ia <- which(la == a)
    ch <- unique(child[ia])
    Z <- cbind(s1, s2 * outer(child[ia], ch, "==")) # d lp / d b
    h <- function(b) {
      lp <- eta[ia] + drop(Z %*% b)
      sum(s[ia] * lp - n[ia] * log1p(exp(lp))) - sum(b^2) / 2
    }
    b <- rep(0, 1 + length(ch))
    for (it in 1:100) {
      p <- stats::plogis(eta[ia] + drop(Z %*% b))
      g <- drop(crossprod(Z, s[ia] - n[ia] * p)) - b
      H <- crossprod(Z, Z * (n[ia] * p * (1 - p))) + diag(length(b))
      step <- solve(H, g)
      b <- b + step
      if (max(abs(step)) < 1e-13) break
    }
    p <- stats::plogis(eta[ia] + drop(Z %*% b))
    H <- crossprod(Z, Z * (n[ia] * p * (1 - p))) + diag(length(b))
    tot <- tot + h(b) - as.numeric(determinant(H)$modulus) / 2
  }
  tot
}

# The C log-likelihood on the rows of a data frame (each row its own cell).
nested_ll <- function(fit, theta) nested_eval(fit$nested_cells, theta)$loglik

test_that("the Laplace log-likelihood equals a dense plain-R reference (1e-8)", {
  d <- nested_data(G = 3, m = 4, seed = 11)
  d <- d[-c(2, 3, 17), ] # a child with one row
  d <- d[!(d$la == "L3" & d$child_id != "c1"), ] # an authority with one child
  fit <- sw_glmm(nested_formula, d)
  X <- stats::model.matrix(~ treated + x + factor(term), d)
  for (th in list(c(-1.5, 0.2, 0.1, 0, 0.1, 0.7, 1.3), c(-2, 0.5, -0.3, 0.2, -0.1, 0.05, 2),
                  c(-1, 0, 0, 0, 0, 1.5, 0.2))) {
    ref <- laplace_ref(X, d$missed, d$possible, d$la, paste(d$la, d$child_id), th[1:5], th[6], th[7])
    expect_equal(nested_ll(fit, th), ref, tolerance = 1e-8)
  }
  # at the estimate, with the binomial coefficients (the fit's logLik)
  th <- unname(fit$theta)
  ref <- laplace_ref(X, d$missed, d$possible, d$la, paste(d$la, d$child_id), th[1:5], th[6], th[7]) +
    sum(lchoose(d$possible, d$missed))
  expect_equal(as.numeric(logLik(fit)), ref, tolerance = 1e-8)
})

test_that("the analytic gradient equals central differences of the reference", {
  d <- nested_data(G = 3, m = 4, seed = 12)
  fit <- sw_glmm(nested_formula, d)
  X <- stats::model.matrix(~ treated + x + factor(term), d)
  th <- c(-1.7, 0.3, 0.1, -0.1, 0.2, 0.6, 1.1)
  g <- nested_eval(fit$nested_cells, th, 1L)$gradient
  f <- function(t) laplace_ref(X, d$missed, d$possible, d$la, paste(d$la, d$child_id), t[1:5], t[6], t[7])
  h <- 1e-5
  num <- vapply(seq_along(th), function(j) {
    e <- replace(double(length(th)), j, h)
    (f(th + e) - f(th - e)) / (2 * h)
  }, 0)
  # central differences: truncation error O(h^2) ~ 1e-10 relative
  expect_equal(g, num, tolerance = 1e-7)
  # and at the estimate the gradient vanishes
  expect_lt(max(abs(nested_eval(fit$nested_cells, unname(fit$theta), 1L)$gradient)), 1e-6)
})

test_that("the exact Hessian equals central differences of the dense reference", {
  # second differences of the plain-R Laplace log-likelihood (dense Hessian
  # per authority), Richardson-extrapolated from steps 2h and h: truncation
  # O(h^4) (measured below 1e-6 at h = 1e-3 on these points, so below 1e-7
  # at h = 5e-4), rounding ~ (4/3 + 1/12) eps |l| / h^2 per entry (~3e-7);
  # the bound is ten times eps |l| / h^2
  d <- nested_data(G = 3, m = 4, seed = 12)
  d <- d[-c(2, 3, 17), ] # a child with one row
  d <- d[!(d$la == "L3" & d$child_id != "c1"), ] # an authority with one child
  fit <- suppressMessages(sw_glmm(nested_formula, d))
  X <- stats::model.matrix(~ treated + x + factor(term), d)
  f <- function(t) laplace_ref(X, d$missed, d$possible, d$la, paste(d$la, d$child_id), t[1:5], t[6], t[7])
  second_diff <- function(th, h) {
    k <- length(th)
    Hn <- matrix(0, k, k)
    for (i in 1:k) for (j in i:k) {
      ei <- replace(double(k), i, h)
      ej <- replace(double(k), j, h)
      Hn[i, j] <- Hn[j, i] <- (f(th + ei + ej) - f(th + ei - ej) - f(th - ei + ej) + f(th - ei - ej)) / (4 * h^2)
    }
    Hn
  }
  h <- 5e-4
  # both SDs away from 0, one SD negative (the likelihood is even in each),
  # a small SD, large SDs
  for (th in list(c(-1.7, 0.3, 0.1, -0.1, 0.2, 0.6, 1.1), c(-2, 0.5, -0.3, 0.2, -0.1, -0.4, 0.05),
                  c(-1.5, 0.2, 0.1, 0, 0.1, 2.5, 3))) {
    Ha <- nested_eval(fit$nested_cells, th, 3L)$hessian
    Hn <- (4 * second_diff(th, h) - second_diff(th, 2 * h)) / 3
    expect_lt(max(abs(Ha - Hn)), 10 * .Machine$double.eps * abs(f(th)) / h^2)
    expect_equal(Ha, t(Ha))
  }
})

test_that("the exact Hessian equals the finite-difference one (the SEs' method until #14)", {
  d <- nested_data(G = 5, m = 10, seed = 7)
  fit <- sw_glmm(nested_formula, d)
  th <- unname(fit$theta)
  cur <- nested_eval(fit$nested_cells, th, 3L)
  for (free in list(fit$free, seq_along(th))) {
    Hfd <- nested_hessian_fd(fit$nested_cells, th, free, cur)
    Hex <- nested_hessian(fit$nested_cells, th, free, cur)
    expect_identical(attr(Hex, "fails"), 0L)
    # forward differences of step 1e-7 relative: ~1e-7 of the entries
    expect_equal(c(Hex), c(Hfd), tolerance = 1e-6)
    # every standard error to 1e-5 relative
    expect_lt(max(abs(sqrt(diag(solve(-Hex))) / sqrt(diag(solve(-Hfd))) - 1)), 1e-5)
  }
  # the fit's standard errors are the exact Hessian's
  expect_equal(unname(fit$vcov_theta[fit$free, fit$free]), solve(-nested_hessian(fit$nested_cells, th, fit$free, cur)),
               tolerance = 1e-10)
})

test_that("hand-made: at s1 = s2 = 0 the Hessian is -X'WX and sum(R^2 - W) per level", {
  # beta = 0: p = 1/2, W = n / 4 and R = s - n / 2 per cell. Authority A:
  # child x 3 of 4 (R 1, W 1), child y 1 of 4 twice (R -2, W 2); authority
  # B: child z 0 of 2 and 2 of 2 (R 0, W 1). To second order in the SDs the
  # Laplace log-likelihood is l(0) + s1^2 / 2 sum_a (R_a^2 - W_a) +
  # s2^2 / 2 sum_c (R_c^2 - W_c) (mode ~ (s1 R_a, s2 R_c), log det H ~
  # s1^2 W_a + s2^2 sum W_c), even in each SD, so the Hessian is
  #   d2/dbeta2 = -sum W = -4, d2/ds1^2 = (1 - 3) + (0 - 1) = -3,
  #   d2/ds2^2 = (1 - 1) + (4 - 2) + (0 - 1) = 1, the rest 0;
  # and the gradient is (sum R, 0, 0) = (-1, 0, 0).
  d <- data.frame(la = c("A", "A", "A", "B", "B"), child_id = c("x", "y", "y", "z", "z"),
                  s = c(3, 1, 1, 0, 2), f = c(1, 3, 3, 2, 0))
  fit <- suppressWarnings(suppressMessages(sw_glmm(cbind(s, f) ~ 1 + (1 | la / child_id), d)))
  r <- nested_eval(fit$nested_cells, c(0, 0, 0), 3L)
  expect_equal(r$hessian, diag(c(-4, -3, 1)), tolerance = 1e-14)
  expect_equal(r$gradient, c(-1, 0, 0), tolerance = 1e-14)
})

test_that("hand-made: success rate 1/2 everywhere gives modes 0 and a closed-form log-likelihood", {
  # one authority, two children with 4 and 8 trials, half of them successes;
  # at beta = 0 every mode is 0 (the score s - n/2 vanishes), W_c = n_c / 4,
  # so with s1 = s2 = 1: D = (2, 3), b = (1, 2), H_uu = 1 + 3 = 4,
  # S = 4 - 1/2 - 4/3 = 13/6, det H = S D_1 D_2 = 13, and
  # log L = sum(-n log 2) - log(13) / 2 = -12 log 2 - log(13) / 2.
  d <- data.frame(la = c("A", "A", "A", "B", "B"), child_id = c("x", "y", "y", "z", "z"),
                  s = c(2, 2, 2, 1, 2), f = c(2, 2, 2, 3, 0))
  fit <- suppressMessages(sw_glmm(cbind(s, f) ~ 1 + (1 | la / child_id), d))
  dA <- fit$nested_cells
  # authority A alone: children x (4 trials) and y (8 trials in two rows)
  r <- nested_eval(dA, c(0, 1, 1))
  expect_equal(r$loglik_cluster[1], -12 * log(2) - log(13) / 2, tolerance = 1e-12)
  expect_equal(r$mode[c(1, 3, 4)], c(0, 0, 0)) # authority A, children x and y
  # s1 = s2 = 0: the plain binomial log-likelihood
  r0 <- nested_eval(dA, c(0.3, 0, 0))
  expect_equal(r0$loglik, sum(stats::dbinom(d$s, d$s + d$f, stats::plogis(0.3), log = TRUE)) -
                 sum(lchoose(d$s + d$f, d$s)), tolerance = 1e-12)
})

test_that("one SD at zero reduces to the single-level Laplace likelihood of glmm.c", {
  d <- nested_data(G = 4, m = 5, seed = 4)
  fit <- suppressMessages(sw_glmm(nested_formula, d))
  th <- c(-1.8, 0.3, 0.2, 0, 0.1)
  cl <- sw_glmm(cbind(missed, possible - missed) ~ treated + x + factor(term) + (1 | la), d,
                sigma = 0.7)
  ce <- cl$cells
  one <- function(cells, sigma) {
    cells$gh <- gauss_hermite(1L) # the Laplace approximation
    binom_eval(cells, th, sigma, 0L, double(0))$loglik
  }
  expect_equal(nested_ll(fit, c(th, 0.7, 0)), one(ce, 0.7), tolerance = 1e-10)
  d$kid <- paste(d$la, d$child_id)
  ck <- sw_glmm(cbind(missed, possible - missed) ~ treated + x + factor(term) + (1 | kid), d,
                sigma = 1.2)
  expect_equal(nested_ll(fit, c(th, 0, 1.2)), one(ck$cells, 1.2), tolerance = 1e-10)
})

test_that("equals lme4::glmer(cbind(s, f) ~ ... + (1 | la / child_id), nAGQ = 1)", {
  skip_if_not_installed("lme4")
  d <- nested_data()
  d <- d[-(1:2), ] # a child with one row
  d <- d[!(d$la == "L6" & d$child_id != "c1"), ] # an authority with one child
  fit <- sw_glmm(nested_formula, d)
  expect_true(fit$converged)
  f <- nested_formula
  # lme4's PIRLS stops the modes at a relative change in the penalised
  # residual sum of squares of tolPwrss (default 1e-7), which leaves its
  # Laplace log-likelihood up to ~1e-4 below the value at the exact modes
  # (measured: 7e-5 on these data); tolPwrss = 1e-12 makes its modes exact
  # to double precision, so the objectives can be compared to 1e-8
  ctl <- lme4::glmerControl(tolPwrss = 1e-12)
  gl <- lme4::glmer(f, d, family = stats::binomial(), nAGQ = 1, control = ctl)
  dev <- lme4::glmer(f, d, family = stats::binomial(), nAGQ = 1, devFunOnly = TRUE, control = ctl)
  th_gl <- lme4::getME(gl, "theta") # (child_id:la, la)
  expect_identical(names(th_gl), c("child_id:la.(Intercept)", "la.(Intercept)"))
  b_gl <- lme4::fixef(gl)
  p <- length(b_gl)
  # (1) the same objective: our log-likelihood at glmer's estimates is
  # glmer's (its deviance includes the binomial coefficients)
  ours_at_gl <- nested_ll(fit, c(b_gl, th_gl[2], th_gl[1])) + fit$loglik_const
  expect_equal(ours_at_gl, as.numeric(logLik(gl)), tolerance = 1e-8)
  expect_equal(ours_at_gl, -dev(c(th_gl, b_gl)) / 2, tolerance = 1e-8)
  # (2) our maximum is no lower than glmer's (its optimisers stop at a
  # relative tolerance, Newton at a decrement of 1e-10)
  dll <- fit$loglik - as.numeric(logLik(gl))
  expect_gte(dll, -1e-8)
  # (3) so the estimates differ by no more than that log-likelihood gap
  # allows: for a quadratic log-likelihood, |delta_j| <= sqrt(2 dll V_jj)
  # (x 1.5 for the non-quadratic part; 1e-7 floor for glmer's rounding)
  ours <- unname(fit$theta)
  theirs <- unname(c(b_gl, th_gl[2], th_gl[1]))
  bound <- 1.5 * sqrt(2 * max(dll, 0) * diag(fit$vcov_theta)) + 1e-7
  expect_true(all(abs(ours - theirs) <= bound))
  expect_equal(unname(fit$sigma), unname(th_gl[2:1]), tolerance = 1e-3)
  expect_equal(unname(fit$coefficients), unname(b_gl), tolerance = 1e-3)
  expect_equal(unname(fit$ngroups), unname(rev(lme4::ngrps(gl))))
  # (4) standard errors: the inverse Hessian of glmer's own Laplace deviance
  # in (beta, s1, s2), by central differences (step 1e-3: truncation
  # ~1e-6 relative, far above the deviance's PIRLS rounding / h^2)
  ll <- function(t) -dev(c(t[p + 2], t[p + 1], t[1:p])) / 2
  h <- 1e-3
  k <- length(ours)
  Hn <- matrix(0, k, k)
  for (i in 1:k) for (j in i:k) {
    ei <- replace(double(k), i, h)
    ej <- replace(double(k), j, h)
    Hn[i, j] <- Hn[j, i] <- (ll(ours + ei + ej) - ll(ours + ei - ej) - ll(ours - ei + ej) +
                               ll(ours - ei - ej)) / (4 * h^2)
  }
  se_ref <- sqrt(diag(solve(-Hn)))
  expect_equal(unname(sqrt(diag(fit$vcov))), se_ref[1:p], tolerance = 1e-4)
  expect_equal(unname(sqrt(diag(fit$vcov_theta))), se_ref, tolerance = 1e-4)
  # lme4's vcov() for this fit takes the fixed-effects block from its
  # PIRLS factor (RX): it leaves out how the modes move with beta, so it is
  # within a few percent of the Hessian SEs, not equal
  se_lme4 <- sqrt(diag(as.matrix(suppressWarnings(stats::vcov(gl)))))
  expect_equal(unname(sqrt(diag(fit$vcov))), unname(se_lme4), tolerance = 0.05)
  # with glmer's default PIRLS tolerance its maximum is no higher than ours
  gl0 <- lme4::glmer(f, d, family = stats::binomial(), nAGQ = 1)
  expect_gte(fit$loglik, as.numeric(logLik(gl0)) - 1e-8)
  expect_equal(unname(fit$coefficients), unname(lme4::fixef(gl0)), tolerance = 1e-3)
})

test_that("a variance component at the boundary: refitted at 0, as glmer's singular fit", {
  skip_if_not_installed("lme4")
  # sessions missed set to their expected number given the authority's
  # effect: less spread than binomial, so the child SD's estimate is 0
  d <- nested_data(G = 6, m = 10, seed = 2)
  ua <- c(-0.5, 0.3, 0, 0.6, -0.2, 0.1)[match(d$la, unique(d$la))]
  d$missed <- round(d$possible * stats::plogis(-2 + 0.3 * d$treated + 0.2 * d$x + ua))
  expect_message(fit <- sw_glmm(nested_formula, d), "`child_id:la` is estimated at the boundary")
  expect_true(fit$boundary)
  expect_identical(unname(fit$sigma[2]), 0)
  expect_true(is.na(fit$vcov_theta[7, 7]) && all(is.finite(fit$vcov_theta[1:6, 1:6])))
  expect_output(print(fit), "variance component is estimated at the boundary")
  gl <- lme4::glmer(nested_formula, d, family = stats::binomial(),
                    control = lme4::glmerControl(tolPwrss = 1e-12))
  expect_gte(fit$loglik, as.numeric(logLik(gl)) - 1e-6)
  expect_lt(lme4::getME(gl, "theta")[[1]], 0.05)
  expect_equal(unname(fit$coefficients), unname(lme4::fixef(gl)), tolerance = 1e-3)
})

test_that("invariant to row order and to relabelling the children", {
  d <- nested_data(G = 4, m = 8, seed = 5)
  fit <- sw_glmm(nested_formula, d)
  set.seed(1)
  d2 <- d[sample(nrow(d)), ]
  fit2 <- sw_glmm(nested_formula, d2)
  expect_equal(fit2$coefficients, fit$coefficients, tolerance = 1e-8)
  expect_equal(fit2$sigma, fit$sigma, tolerance = 1e-8)
  expect_equal(fit2$vcov, fit$vcov, tolerance = 1e-6)
  expect_equal(fit2$loglik, fit$loglik, tolerance = 1e-10)
  d3 <- d
  d3$child_id <- paste0("kid_", 1000 - as.integer(sub("c", "", d$child_id)))
  fit3 <- sw_glmm(nested_formula, d3)
  expect_equal(fit3$coefficients, fit$coefficients, tolerance = 1e-8)
  expect_equal(fit3$sigma, fit$sigma, tolerance = 1e-8)
  expect_equal(fit3$loglik, fit$loglik, tolerance = 1e-10)
  # the random effects follow their children
  r1 <- fit$ranef[[2]]
  r3 <- fit3$ranef[[2]]
  expect_equal(unname(r3[paste0("kid_", 1000 - as.integer(sub("c(\\d+):.*", "\\1", names(r1))), ":",
                                sub(".*:", "", names(r1)))]), unname(r1), tolerance = 1e-7)
})

test_that("a child id in two authorities is two level-2 units (child within la)", {
  d <- nested_data(G = 3, m = 6, seed = 6)
  # child ids c1..c6 are reused in every authority: 18 children, not 6
  fit <- sw_glmm(nested_formula, d)
  expect_equal(unname(fit$ngroups), c(3, 18))
  expect_equal(names(fit$ngroups), c("la", "child_id:la"))
  # the same fit as with globally unique ids
  d$uid <- paste(d$la, d$child_id)
  fu <- sw_glmm(cbind(missed, possible - missed) ~ treated + x + factor(term) + (1 | la / uid), d)
  expect_equal(fu$coefficients, fit$coefficients, tolerance = 1e-10)
  expect_equal(unname(fu$sigma), unname(fit$sigma), tolerance = 1e-10)
})

test_that("methods: print, summary (profile interval), tidy, vcov, confint, glance", {
  d <- nested_data(G = 5, m = 10, seed = 7)
  fit <- sw_glmm(nested_formula, d)
  expect_s3_class(fit, "sw_glmm")
  expect_output(print(fit), "child_id:la")
  expect_identical(rownames(vcov(fit)), names(coef(fit)))
  tb <- tidy.sw_glmm(fit)
  expect_equal(tb$std.error[tb$term == "treated"], sqrt(vcov(fit)["treated", "treated"]))
  expect_equal(tb$estimate[tb$effect == "ran_pars"], unname(fit$sigma))
  expect_error(vcov(fit, type = "CR2"), "no cluster-robust variance")
  ci <- confint(fit, "treated", method = "profile")
  wald <- confint(fit, "treated")
  # the profile interval brackets the estimate and is close to Wald's
  expect_true(ci[1] < coef(fit)[["treated"]] && coef(fit)[["treated"]] < ci[2])
  expect_equal(unname(ci), unname(wald), tolerance = 0.05)
  # at the profile interval's ends the likelihood-ratio statistic is the
  # chi-squared quantile
  pl <- nested_profile_fun(fit, match("treated", names(coef(fit))))
  expect_equal(2 * (fit$loglik - pl(ci[2])), stats::qchisq(0.95, 1), tolerance = 1e-5)
  s <- summary(fit)
  expect_output(print(s), "Profile-likelihood")
  expect_equal(glance.sw_glmm(fit)$logLik, fit$loglik)
  expect_equal(fit$treatment$odds_ratio$odds_ratio, exp(coef(fit)[["treated"]]))
  expect_true(all(is.finite(fit$treatment$risk_difference$std.error)))
})

test_that("the marginal risk difference integrates over both intercepts (plain R)", {
  d <- nested_data(G = 4, m = 8, seed = 8)
  fit <- sw_glmm(nested_formula, d)
  b <- fit$coefficients
  st <- sqrt(sum(fit$sigma^2))
  X <- stats::model.matrix(~ treated + x + factor(term), d)
  w <- d$possible
  risk <- function(X) {
    sum(w * vapply(drop(X %*% b), function(e)
      stats::integrate(function(z) stats::plogis(e + st * z) * stats::dnorm(z), -Inf, Inf,
                       rel.tol = 1e-10)$value, 0)) / sum(w)
  }
  X1 <- X; X1[, "treated"] <- 1
  X0 <- X; X0[, "treated"] <- 0
  rd <- fit$treatment$risk_difference
  expect_equal(rd$estimate[rd$type == "marginal"], risk(X1) - risk(X0), tolerance = 1e-8)
})

# glmm_prepare() of the nested formula on d (what sw_glmm() fits)
fit_prep <- function(d) {
  glmm_prepare(nested_formula, d, stats::binomial(), "treated")
}

test_that("a warm start (analyse() across imputations) gives the same fit", {
  d <- nested_data(G = 4, m = 8, seed = 9)
  fit <- sw_glmm(nested_formula, d)
  warm <- sw_glmm_fit(quote(sw_glmm()), nested_formula, d, start = glmm_start(fit))
  expect_equal(warm$coefficients, fit$coefficients, tolerance = 1e-7)
  expect_equal(warm$sigma, fit$sigma, tolerance = 1e-7)
  expect_lte(warm$iterations, fit$iterations)
  # it starts the mode search from the earlier fit's modes (the same
  # authorities and children)...
  st <- glmm_start(fit)
  expect_identical(nested_start_modes(st, names(fit$ranef[[1]]), nested_cells(fit_prep(d))),
                   fit$modes$value)
  expect_length(st$modes$value, sum(fit$ngroups))
  # ... and from 0 when the children differ (a child left out), with the
  # same fit as a cold start
  d2 <- d[!(d$la == "L2" & d$child_id == "c3"), ]
  expect_identical(nested_start_modes(st, names(fit$ranef[[1]]), nested_cells(fit_prep(d2))), double(0))
  warm2 <- sw_glmm_fit(quote(sw_glmm()), nested_formula, d2, start = st)
  cold2 <- sw_glmm(nested_formula, d2)
  expect_equal(warm2$coefficients, cold2$coefficients, tolerance = 1e-7)
  expect_equal(warm2$sigma, cold2$sigma, tolerance = 1e-7)
  expect_equal(warm2$vcov, cold2$vcov, tolerance = 1e-6)
})

test_that("bad input: counts, nAGQ, a fixed sigma, internal misuse", {
  d <- nested_data(G = 3, m = 4, seed = 10)
  bad <- d
  bad$missed[c(4, 9)] <- bad$possible[c(4, 9)] + 1L
  expect_snapshot(error = TRUE, sw_glmm(nested_formula, bad))
  expect_snapshot(error = TRUE, sw_glmm(nested_formula, d, nAGQ = 5))
  expect_snapshot(error = TRUE, sw_glmm(nested_formula, d, sigma = 0.5))
  fit <- sw_glmm(nested_formula, d)
  cc <- fit$nested_cells
  expect_error(.Call(ffi_glmm_nested, cc$s, cc$n, cc$cstart, rev(cc$lstart), cc$rows,
                     unname(fit$theta[1:5]), c(1, 1), double(0), 0L),
               class = "sfpceval_internal_error")
  expect_error(.Call(ffi_glmm_nested, cc$n + 1, cc$n, cc$cstart, cc$lstart, cc$rows,
                     unname(fit$theta[1:5]), c(1, 1), double(0), 0L),
               class = "sfpceval_internal_error")
  # `what` is 0 to 3 (3: the exact Hessian)
  expect_error(.Call(ffi_glmm_nested, cc$s, cc$n, cc$cstart, cc$lstart, cc$rows,
                     unname(fit$theta[1:5]), c(1, 1), double(0), 4L),
               class = "sfpceval_internal_error")
  # a column index beyond beta (the Hessian's scratch is indexed by column)
  bad_rows <- cc$rows
  bad_rows$col[length(bad_rows$col)] <- 5L
  expect_error(.Call(ffi_glmm_nested, cc$s, cc$n, cc$cstart, cc$lstart, bad_rows,
                     unname(fit$theta[1:5]), c(1, 1), double(0), 3L),
               class = "sfpceval_internal_error")
})

test_that("wild_boot() refuses the nested logit with a clear error", {
  d <- nested_data(G = 4, m = 6, seed = 13, sd_la = 0.8)
  fit <- suppressMessages(sw_glmm(nested_formula, d))
  expect_snapshot(error = TRUE, wild_boot(fit, "treated"))
})

# Plain-R reference for the modes: per authority, dense Newton on
# b = (u, v_1..v_m) with step halving until h does not decrease (an ascent
# check on every step), to a step below 1e-12. Returns the modes (authority,
# then child, in first-appearance order) and the Laplace log-likelihood.
mode_ref <- function(X, s, n, la, child, beta, s1, s2) {
  eta <- drop(X %*% beta)
  u <- v <- NULL
  tot <- 0
  for (a in unique(la)) {
    ia <- which(la == a)
    ch <- unique(child[ia])
    Z <- cbind(s1, s2 * outer(child[ia], ch, "=="))
    h <- function(b) {
      lp <- eta[ia] + drop(Z %*% b)
      sum(s[ia] * lp - n[ia] * ifelse(lp > 0, lp + log1p(exp(-lp)), log1p(exp(lp)))) - sum(b^2) / 2
    }
    hess <- function(b) {
      p <- stats::plogis(eta[ia] + drop(Z %*% b))
      crossprod(Z, Z * (n[ia] * p * (1 - p))) + diag(length(b))
    }
    b <- rep(0, 1 + length(ch))
    for (it in 1:500) {
      p <- stats::plogis(eta[ia] + drop(Z %*% b))
      step <- solve(hess(b), drop(crossprod(Z, s[ia] - n[ia] * p)) - b)
      t <- 1
      while (h(b + t * step) < h(b) && t > 1e-10) t <- t / 2
      b <- b + t * step
      if (max(abs(step)) < 1e-12) break
    }
    u <- c(u, b[1])
    v <- c(v, b[-1])
    tot <- tot + h(b) - as.numeric(determinant(hess(b))$modulus) / 2
  }
  list(u = u, v = v, loglik = tot)
}

test_that("large SDs (20, 50): the mode search converges to the dense reference's modes", {
  d <- nested_data(G = 3, m = 4, seed = 11)
  fit <- suppressWarnings(sw_glmm(nested_formula, d))
  X <- stats::model.matrix(~ treated + x + factor(term), d)
  ch <- paste(d$la, d$child_id)
  for (sg in list(c(20, 50), c(50, 20), c(50, 50), c(20, 0.5))) {
    th <- c(-1.5, 0.2, 0.1, 0, 0.1, sg)
    ev <- nested_eval(fit$nested_cells, th)
    ref <- mode_ref(X, d$missed, d$possible, d$la, ch, th[1:5], sg[1], sg[2])
    expect_identical(ev$fail, 0L)
    # the rows are sorted by authority and child: both order the children so
    expect_equal(unname(ev$mode), unname(c(ref$u, ref$v)), tolerance = 1e-8)
    expect_equal(ev$loglik, ref$loglik, tolerance = 1e-8)
  }
})

test_that("non-finite SDs' products (1e200) are a clean failure (fail = 2), not an iteration limit", {
  d <- nested_data(G = 2, m = 3, seed = 5)
  fit <- sw_glmm(nested_formula, d)
  ev <- nested_eval(fit$nested_cells, c(unname(fit$theta[1:5]), 1e200, 1e200), 1L)
  expect_identical(ev$fail, 2L)
  expect_false(is.finite(ev$loglik))
  # the exact Hessian's pass runs on the failed modes without crashing
  ev3 <- nested_eval(fit$nested_cells, c(unname(fit$theta[1:5]), 1e200, 1e200), 3L)
  expect_identical(ev3$fail, 2L)
  expect_identical(dim(ev3$hessian), c(7L, 7L))
})

test_that("failed mode searches anywhere in the fit reach optim_status() (counted, not dropped)", {
  d <- nested_data(G = 2, m = 3, seed = 5)
  fit <- sw_glmm(nested_formula, d)
  cells <- fit$nested_cells
  # the Hessian's and the Newton information's gradient evaluations report
  # their failures (SDs of 1e200: every evaluation fails)
  th <- c(unname(fit$theta[1:5]), 1e200, 1e200)
  cur <- nested_eval(cells, th, 2L)
  expect_identical(attr(nested_hessian_fd(cells, th, 1:7, cur), "fails"), 7L)
  expect_identical(attr(nested_info(cells, th, 1:7, cur), "fails"), 2L)
  expect_identical(attr(nested_hessian_fd(cells, unname(fit$theta), 1:7,
                                          nested_eval(cells, unname(fit$theta), 1L)), "fails"), 0L)
  # the exact Hessian: one evaluation when `cur` has none (counted), none
  # when it has
  expect_identical(attr(nested_hessian(cells, th, 1:7, cur), "fails"), 1L)
  ok <- nested_eval(cells, unname(fit$theta), 3L)
  expect_identical(attr(nested_hessian(cells, unname(fit$theta), 1:7, ok), "fails"), 0L)
  expect_identical(attr(nested_hessian(cells, unname(fit$theta), 1:7,
                                       nested_eval(cells, unname(fit$theta), 1L)), "fails"), 0L)
  # damped_newton() counts the failed evaluations of its line searches: a
  # concave quadratic whose points with theta > 1 "fail" (with 0.4 of the
  # information the first step from -3 goes to 7, rejected, then to 2)
  ev <- function(th) list(loglik = -(th - 1)^2, gradient = -2 * (th - 1), fail = as.integer(th > 1))
  r <- damped_newton(ev, function(th, cur) matrix(0.8), -3, 1L, list(maxit = 100L, tol = 1e-14, verbose = FALSE))
  expect_true(r$converged)
  # decrement 4 (theta - 1)^2 / 0.8 below the tolerance 1e-14
  expect_lte(abs(r$theta - 1), sqrt(0.8 * 1e-14) / 2)
  expect_gte(r$fails, 2L)
  # the status: a failure at the estimate or in the Hessian is not converged,
  # elsewhere it is counted in the message
  res <- list(converged = TRUE, iterations = 4L, message = "Newton decrement 1e-12 below 1e-10")
  ok <- nested_status(res, list(fail = 0L), 0L, 0L)
  expect_true(ok$converged)
  expect_identical(ok$message, res$message)
  st <- nested_status(res, list(fail = 0L), 0L, 3L)
  expect_true(st$converged)
  expect_match(st$message, "failed in 3 evaluations of the line searches")
  st <- nested_status(res, list(fail = 0L), 2L, 0L)
  expect_false(st$converged)
  expect_match(st$message, "2 of the Hessian's gradient evaluations")
  st <- nested_status(res, list(fail = 2L), 0L, 1L)
  expect_false(st$converged)
  expect_match(st$message, "not finite .* at the estimate; .* 1 evaluation of")
  expect_warning(warn_not_converged("sw_glmm(): nested", st, "fix"), class = "sfpceval_not_converged")
})
