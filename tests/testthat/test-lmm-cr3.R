# CR3 (leave-one-cluster-out jackknife) variance and t(G - 1) tests for the
# linear mixed model (#13).

# cr3_data(): helper-lmm-data.R

# Plain R, dense: refit the GLS without each cluster (working covariance Phi,
# the fit's variance components), V = (G - 1) / G sum_g (b_(g) - b)(b_(g) - b)'.
ref_cr3 <- function(X, y, cl, Phi) {
  gls <- function(i) {
    Pi <- solve(Phi[i, i])
    drop(solve(crossprod(X[i, , drop = FALSE], Pi %*% X[i, , drop = FALSE]),
               crossprod(X[i, , drop = FALSE], Pi %*% y[i])))
  }
  b <- gls(seq_along(y))
  gs <- sort(unique(cl))
  D <- sapply(gs, function(g) gls(which(cl != g)) - b)
  (length(gs) - 1) / length(gs) * tcrossprod(D)
}

test_that("LMM CR3 equals a dense leave-one-cluster-out GLS refit and clubSandwich's CR3 times (G - 1) / G", {
  d <- cr3_data(3)
  cl <- match(d$la, sort(unique(d$la)))
  cases <- lmm_variance_cases(d, child_fixed = y ~ treated + yr)
  for (cs in cases) {
    X <- model.matrix(parse_glmm_formula(cs$f)$fixed, d)
    fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la")
    ref <- ref_cr3(X, d$y, cl, diag(nrow(d)) + cs$phi(fit$theta))
    expect_equal(unname(vcov(fit, type = "CR3")), unname(ref), tolerance = 1e-8)
    # prior weights: residual variance sigma^2 / w
    fw <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la", weights = "w")
    refw <- ref_cr3(X, d$y, cl, diag(1 / d$w) + cs$phi(fw$theta))
    expect_equal(unname(vcov(fw, type = "CR3")), unname(refw), tolerance = 1e-8)
  }
  skip_if_not_installed("clubSandwich")
  skip_if_not_installed("lme4")
  # clubSandwich's CR3 adjustment (I - X_g M X_g'W_g)^-1 gives the same
  # leave-out differences without the factor (G - 1) / G of MacKinnon,
  # Nielsen & Webb (2023); lmer's variance components agree with sw_glmm's to
  # about 1e-6
  for (cs in cases) {
    fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la")
    l <- lme4::lmer(cs$f, d)
    vc <- clubSandwich::vcovCR(l, cluster = d$la, type = "CR3")
    expect_equal(unname(vcov(fit, type = "CR3")), unname(as.matrix(vc)) * 5 / 6, tolerance = 1e-5)
  }
})

test_that("LMM CR3 on a hand-made 3-cluster case, and its t-test with G - 1 df", {
  # balanced clusters, intercept only: the GLS estimate is the mean of the
  # cluster means m_g whatever the variance components, the fit without g the
  # mean of the other two, so b_(g) - b = -(m_g - b) / 2 and
  # CR3 = (2 / 3) sum_g (m_g - b)^2 / 4. Means 1, 2, 6: b = 3, CR3 = 14 / 6.
  d <- data.frame(la = rep(c("A", "B", "C"), each = 4),
                  y = c(0, 2, 1, 1, 1, 3, 2, 2, 5, 7, 6, 6))
  fit <- sw_glmm(y ~ 1 + (1 | la), d, family = gaussian(), cluster = "la")
  expect_equal(unname(coef(fit)), 3, tolerance = 1e-10)
  expect_equal(unname(vcov(fit, type = "CR3")[1, 1]), 14 / 6, tolerance = 1e-10)
  tab <- generics::tidy(fit, vcov = "CR3", conf.level = 0.9)
  r <- tab[tab$term == "(Intercept)", ]
  expect_equal(r$std.error, sqrt(14 / 6), tolerance = 1e-10)
  expect_equal(r$df, 2)
  expect_equal(r$statistic, 3 / sqrt(14 / 6), tolerance = 1e-10)
  expect_equal(r$p.value, 2 * pt(-3 / sqrt(14 / 6), 2), tolerance = 1e-10)
  expect_equal(r$conf.high - r$estimate, qt(0.95, 2) * sqrt(14 / 6), tolerance = 1e-10)
  # the default table is unchanged (model-based, normal reference)
  t0 <- generics::tidy(fit)
  expect_null(t0$df)
  expect_equal(t0$std.error[1], sqrt(vcov(fit)[1, 1]))
  # CR2 table: Satterthwaite df
  t2 <- generics::tidy(fit, vcov = "CR2")
  expect_equal(t2$df[1], unname(fit$cr2$df[1]))
  expect_equal(t2$std.error[1], sqrt(vcov(fit, type = "CR2")[1, 1]))
})

test_that("LMM CR3: invariant to shifting/scaling the outcome and row order; agrees with wild_boot's CR3; errors", {
  d <- cr3_data(4)
  f <- y ~ treated + since + (1 | la / child_id)
  f0 <- sw_glmm(f, d, family = gaussian(), cluster = "la")
  d2 <- d
  d2$y <- (d$y + 1e4) * 1000
  f2 <- sw_glmm(f, d2, family = gaussian(), cluster = "la")
  expect_equal(sqrt(diag(vcov(f2, type = "CR3")))[-1], 1000 * sqrt(diag(vcov(f0, type = "CR3")))[-1],
               tolerance = 1e-6)
  o <- rev(seq_len(nrow(d)))
  f3 <- sw_glmm(f, d[o, ], family = gaussian(), cluster = "la")
  expect_equal(vcov(f3, type = "CR3"), vcov(f0, type = "CR3"), tolerance = 1e-8)
  # the studentising variance of the WC?13 bootstrap is the same CR3
  wb <- suppressWarnings(wild_boot(f0, "treated", variant = "WCU13", B = 99, seed = 1))
  expect_equal(wb$std.error, sqrt(vcov(f0, type = "CR3")["treated", "treated"]), tolerance = 1e-8)
  # no cluster: an error saying how to get one
  expect_error(vcov(sw_glmm(f, d, family = gaussian()), type = "CR3"), "no cluster-robust")
  expect_error(generics::tidy(sw_glmm(f, d, family = gaussian()), vcov = "CR3"), "no cluster-robust")
  # LA fixed effects: without an LA its dummy is not identified, so CR3 is
  # not defined; the error names the cluster
  fl <- sw_glmm(y ~ treated + factor(la) + (1 | child_id), d, family = gaussian(), cluster = "la")
  expect_error(vcov(fl, type = "CR3"), "not all identified")
  expect_true(all(is.finite(vcov(fl, type = "CR2"))))
})
