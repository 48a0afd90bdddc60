# Analytic power (#7): sw_power(), woertman_de(), cra_mdes(), did_mdes(),
# icc_anova().

# ---- plain-R references ----------------------------------------------------

# Brute-force GLS: the full (I*T) x (I*T) covariance of all cluster-period
# means, fixed period effects (or an intercept) plus treatment, inverted whole.
ref_gls_var <- function(design, m, c_cell, w_cell, cac = 1, period_effects = TRUE) {
  n_cl <- nrow(design)
  n_t <- ncol(design)
  n <- n_cl * n_t
  cl <- rep(seq_len(n_cl), each = n_t)          # row order: cluster-major
  per <- rep(seq_len(n_t), times = n_cl)
  cc <- as.vector(t(c_cell))
  ww <- as.vector(t(w_cell))
  mm <- as.vector(t(m))
  big_v <- matrix(0, n, n)
  for (a in seq_len(n)) for (b in seq_len(n)) {
    if (cl[a] != cl[b]) next
    big_v[a, b] <- if (a == b) cc[a] + ww[a] / mm[a] else cac * sqrt(cc[a] * cc[b])
  }
  x <- if (period_effects) outer(per, seq_len(n_t), "==") * 1 else matrix(1, n, 1)
  x <- cbind(x, as.vector(t(design)))
  solve(t(x) %*% solve(big_v) %*% x)[ncol(x), ncol(x)]
}

# Hussey & Hughes (2007) closed form, written out again.
ref_hh <- function(x, sigma2, tau2) {
  i <- nrow(x); t <- ncol(x)
  u <- sum(x); w <- sum(colSums(x)^2); v <- sum(rowSums(x)^2)
  i * sigma2 * (sigma2 + t * tau2) /
    ((i * u - w) * sigma2 + (u^2 + i * t * u - t * w - i * v) * tau2)
}

# Variance of the two-way fixed-effects OLS DiD estimator on cluster-period
# means under a block covariance, by the sandwich (X'X)^-1 X'VX (X'X)^-1.
ref_did_ols_var <- function(treated, n_pre, n_post, m, icc, rho_c, v_cell) {
  n_cl <- length(treated)
  n_t <- n_pre + n_post
  n <- n_cl * n_t
  cl <- rep(seq_len(n_cl), each = n_t)
  per <- rep(seq_len(n_t), times = n_cl)
  d <- as.numeric(treated[cl] == 1 & per > n_pre)
  x <- cbind(outer(cl, seq_len(n_cl), "==") * 1,
             outer(per, seq_len(n_t)[-1], "==") * 1, d)
  cc <- icc * as.vector(t(v_cell))
  ww <- (1 - icc) * as.vector(t(v_cell))
  big_v <- matrix(0, n, n)
  for (a in seq_len(n)) for (b in seq_len(n)) {
    if (cl[a] != cl[b]) next
    big_v[a, b] <- if (a == b) cc[a] + ww[a] / m else rho_c * sqrt(cc[a] * cc[b])
  }
  bread <- solve(crossprod(x))
  (bread %*% t(x) %*% big_v %*% x %*% bread)[ncol(x), ncol(x)]
}

# loneway by the textbook sums of squares, loops and all.
ref_loneway <- function(y, g) {
  groups <- unique(g)
  n <- length(y); k <- length(groups)
  grand <- mean(y)
  ssb <- 0; ssw <- 0; n_g <- numeric(k)
  for (j in seq_len(k)) {
    yy <- y[g == groups[j]]
    n_g[j] <- length(yy)
    ssb <- ssb + length(yy) * (mean(yy) - grand)^2
    ssw <- ssw + sum((yy - mean(yy))^2)
  }
  msb <- ssb / (k - 1); msw <- ssw / (n - k)
  n0 <- (n - sum(n_g^2) / n) / (k - 1)
  (msb - msw) / (msb + (n0 - 1) * msw)
}

z80 <- qnorm(0.975) + qnorm(0.8)

# ---- sw_power: published values ------------------------------------------

test_that("the Family Valued protocol's MDES is reproduced by the defaults", {
  # FV protocol table and Appendix B (Stata steppedwedge ... p1(0.04) m(2600)
  # k(1) rho(0.01566) alpha(0.05) beta(0.8) steps(5)): MDES 0.007.
  fv <- sw_power(p0 = 0.04, icc = 0.01566)
  expect_s3_class(fv, "sfp_sw_power")
  expect_identical(dim(fv$design), c(5L, 6L))
  expect_equal(signif(fv$mdes$effect, 3), c(-0.00704, 0.00704))
  expect_equal(round(fv$mdes$effect, 4), c(-0.0070, 0.0070))
  # `vignette("methods")`, section 4 quotes 0.0067 / 0.0074 for pbar = (p0 + p1)/2; the
  # root of theta = (z_0.975 + z_0.8) se(theta) is 0.006747 / 0.007340, so the
  # increase is 0.0073 to four decimals (checked below by plugging it back in)
  mean_pbar <- sw_power(p0 = 0.04, icc = 0.01566, pbar = "mean")
  expect_equal(round(mean_pbar$mdes$effect, 4), c(-0.0067, 0.0073))
  # the total-variance scale is the other reading; it gives 0.00698, not 0.00704
  tot <- sw_power(p0 = 0.04, icc = 0.01566, icc_scale = "total")
  expect_equal(signif(tot$mdes$effect[2], 3), 0.00698)
  # the MDES solves theta = (z_0.975 + z_0.8) * se at the solution
  th <- mean_pbar$mdes$effect[1]
  at <- sw_power(p0 = 0.04, icc = 0.01566, pbar = "mean", effect = th)
  expect_equal(at$power$power, 0.8, tolerance = 1e-8)
  expect_snapshot(print(fv))
})

test_that("swdpwr's Example 3 (marginal model, no period effects) gives 0.946", {
  # swdpwr R manual, Example 3: 12 clusters, 4 periods, 6 per sequence
  # (0,1,1,1) and (0,0,1,1); K = 100; 0.15 -> 0.20 (identity link, RD 0.05);
  # within-period ICC alpha0 = 0.02, between-period ICC alpha1 = 0.015;
  # no time effects. Output: power 0.946. Our reading: block-exchangeable
  # correlation with cluster_autocorr = alpha1/alpha0, ICCs on the total
  # (marginal) scale, arm-specific binomial variances, no period effects.
  x <- rbind(matrix(rep(c(0, 1, 1, 1), 6), 6, byrow = TRUE),
             matrix(rep(c(0, 0, 1, 1), 6), 6, byrow = TRUE))
  res <- sw_power(design = x, m = 100, p0 = 0.15, effect = 0.05, icc = 0.02,
                  cluster_autocorr = 0.015 / 0.02, icc_scale = "total",
                  pbar = "arm", period_effects = FALSE)
  expect_equal(round(res$power$power, 3), 0.946)
})

test_that("clusterPower's cpa.sw.normal() documented example is reproduced", {
  # clusterPower ?cpa.sw.normal: nsubjects = 50, ntimes = 5, d = 1.5,
  # icc = 0.2, rho_c = 0.8, rho_s = 0, vart = 16 -> nclusters = 1.288772
  # clusters switching per step (normal quantiles, 80% power).
  # Information is additive over identical clusters, so the variance with c
  # clusters per step is the one-per-step variance divided by c.
  one <- sw_power(steps = 5, clusters_per_step = 1, m = 50, sd = 4, icc = 0.2,
                  cluster_autocorr = 0.8, icc_scale = "total", effect = 1.5)
  se <- sqrt(one$variance / 1.288772)
  # clusterPower's uniroot tolerance is .Machine$double.eps^0.25 on nclusters
  expect_equal(pnorm(1.5 / se - qnorm(0.975)), 0.8, tolerance = 1e-4)
})

test_that("Teerenstra's SAS example (t on I df) gives an MDES of 0.42 SD", {
  # steventeerenstra/stepped-wedge, 2-level-samplesize/
  # 2level_SomeNonstandardDesign.sas, last data step: I = 6 clusters, N = 30,
  # T = 5, rho = 0.1 (tau2 = rho/(1 - rho) SD^2, the within scale), design
  # rows 01111 / 00111 x2 / 00011 x2 / 00001 (U = 15, V = 43, W = 71),
  # power_sw_df = probt(tinv(0.025, I) + |theta|/se, I); its title reads
  # "minimal detectable difference seems to be 0.42*SD".
  x <- rbind(c(0, 1, 1, 1, 1), c(0, 0, 1, 1, 1), c(0, 0, 1, 1, 1),
             c(0, 0, 0, 1, 1), c(0, 0, 0, 1, 1), c(0, 0, 0, 0, 1))
  expect_equal(c(sum(x), sum(rowSums(x)^2), sum(colSums(x)^2)), c(15, 43, 71))
  res <- sw_power(design = x, m = 30, sd = 1, icc = 0.1, dist = "t")
  expect_equal(res$settings$df, 6)
  expect_equal(round(res$mdes$effect[2], 2), 0.42)
  # the SAS power formula at the MDES gives 80%
  se <- res$se
  expect_equal(pt(qt(0.025, 6) + res$mdes$effect[2] / se, 6), 0.8)
})

test_that("PowerUpR's cluster-randomised MDES (0.629) via cra_mdes() and sw_power()", {
  # PowerUpR mdes.cra2(rho2 = .17, n = 15, J = 20, P = .5, g2 = 0): 0.629
  # with df = J - 2 = 18.
  expect_equal(round(cra_mdes(icc = 0.17, n = 15, J = 20), 3), 0.629)
  # the same through the GLS machinery: one period, 10 treated, 10 control
  d <- matrix(rep(c(1, 0), each = 10), ncol = 1)
  sw <- sw_power(design = d, m = 15, sd = 1, icc = 0.17, icc_scale = "total",
                 dist = "t", df = 18, power = 0.8)
  expect_equal(sw$mdes$effect[2], cra_mdes(icc = 0.17, n = 15, J = 20))
  # covariates shrink the variance components
  expect_lt(cra_mdes(0.17, 15, 20, r2_cluster = 0.5), cra_mdes(0.17, 15, 20))
})

# ---- sw_power: against plain-R references --------------------------------

test_that("the GLS variance equals brute-force GLS and the HH closed form", {
  # standard design, continuous outcome
  for (icc_scale in c("within", "total")) {
    res <- sw_power(clusters_per_step = 2, steps = 3, m = 20, sd = 2, icc = 0.1,
                    icc_scale = icc_scale, effect = 0.5)
    x <- sw_design(2, 3)
    cw <- if (icc_scale == "within") c(0.1 * 4 / 0.9, 4) else c(0.4, 3.6)
    brute <- ref_gls_var(x, matrix(20, 6, 4), matrix(cw[1], 6, 4), matrix(cw[2], 6, 4))
    expect_equal(res$variance, brute, tolerance = 1e-10)
    expect_equal(res$variance, ref_hh(x, cw[2] / 20, cw[1]), tolerance = 1e-10)
  }
  # an irregular design with never-treated rows, unequal sizes, cluster
  # autocorrelation below 1 and arm-specific binomial variances
  set.seed(7)
  x <- rbind(c(0, 0, 1, 1, 1), c(0, 1, 1, 1, 1), c(0, 0, 0, 0, 1),
             c(0, 0, 0, 0, 0), c(0, 0, 0, 1, 1))
  m <- matrix(sample(5:40, 25, replace = TRUE), 5, 5)
  res <- sw_power(design = x, m = m, p0 = 0.3, effect = -0.1, icc = 0.05,
                  cluster_autocorr = 0.6, pbar = "arm", icc_scale = "within")
  v <- ifelse(x == 1, 0.2 * 0.8, 0.3 * 0.7)
  brute <- ref_gls_var(x, m, 0.05 * v / 0.95, v, cac = 0.6)
  expect_equal(res$power$se^2, brute, tolerance = 1e-10)
  # without period effects
  res2 <- sw_power(design = x, m = m, sd = 1, effect = 1, icc = 0.05,
                   cluster_autocorr = 0.6, period_effects = FALSE)
  brute2 <- ref_gls_var(x, m, matrix(0.05 / 0.95, 5, 5), matrix(1, 5, 5),
                        cac = 0.6, period_effects = FALSE)
  expect_equal(res2$variance, brute2, tolerance = 1e-10)
})

test_that("Var_HH = DE * 4 sigma^2 / (I n) with the Woertman design effect", {
  # `vignette("methods")`, section 4 [checked]; the identity uses the total-variance ICC.
  build <- function(k, b, t) {
    outer(seq_len(k), seq_len(b + k * t), function(s, j) as.numeric(j > b + (s - 1) * t))
  }
  for (case in list(c(k = 5, b = 1, t = 1), c(k = 4, b = 1, t = 2), c(k = 3, b = 1, t = 3))) {
    x <- build(case[["k"]], case[["b"]], case[["t"]])
    res <- sw_power(design = x, m = 30, sd = 1, icc = 0.05, icc_scale = "total",
                    effect = 0.2)
    de <- woertman_de(steps = case[["k"]], m = 30, icc = 0.05,
                      baseline_periods = case[["b"]], periods_per_step = case[["t"]])
    expect_equal(res$variance, de * 4 / (nrow(x) * 30), tolerance = 1e-10)
  }
})

test_that("hand-derived cases", {
  # One period, one treated and one control cluster, total-scale ICC 0.2,
  # sd 1, m = 4: each cluster mean has variance tau2 + sigma_w2/m =
  # 0.2 + 0.8/4 = 0.4, and theta-hat is their difference: Var = 0.8.
  d <- matrix(c(1, 0), ncol = 1)
  res <- sw_power(design = d, m = 4, sd = 1, icc = 0.2, icc_scale = "total",
                  effect = 1)
  expect_equal(res$variance, 0.8)
  expect_equal(res$power$power, pnorm(1 / sqrt(0.8) - qnorm(0.975)))
  # Two clusters, two periods, rows (0, 1) and (0, 0): U = 1, W = 1, V = 1 in
  # Hussey & Hughes, so Var = 2 s (s + 2 t) / (s + t); with s = t = 1 that is 3.
  # Within-scale ICC 0.5 gives tau2 = sigma_e^2 = 1 (m = 1).
  x <- rbind(c(0, 1), c(0, 0))
  expect_equal(sw_power(design = x, m = 1, sd = 1, icc = 0.5, effect = 1)$variance, 3)
  # As the cluster variance grows, only within-cluster contrasts are
  # informative: theta-hat -> (Y12 - Y11) - (Y22 - Y21), of variance 4 s = 4.
  big <- sw_power(design = x, m = 1, sd = 1, icc = 1 - 1e-9, effect = 1)$variance
  expect_equal(big, 4, tolerance = 1e-6)
  # Continuous outcome: the MDES is (z_0.975 + z_0.8) * se in both directions
  res <- sw_power(steps = 4, m = 10, sd = 1, icc = 0.1)
  expect_equal(res$mdes$effect, c(-1, 1) * z80 * res$se)
  expect_equal(res$mdes$cohens_d, res$mdes$effect)
})

test_that("input types, order and edge cases", {
  a <- sw_power(p0 = 0.04, icc = 0.01566, m = 2600L, steps = 5L)
  b <- sw_power(p0 = 0.04, icc = 0.01566, m = 2600, steps = 5)
  expect_equal(a$mdes, b$mdes)
  # integer design and sizes give the same answer as double
  xi <- sw_design(1, 3)
  storage.mode(xi) <- "integer"
  expect_equal(sw_power(design = xi, m = matrix(7L, 3, 4), sd = 1, icc = 0.1, effect = 1)$variance,
               sw_power(design = sw_design(1, 3), m = 7, sd = 1, icc = 0.1, effect = 1)$variance)
  # logical design, permuted rows: same variance
  x <- sw_design(2, 3)
  perm <- x[c(4, 1, 6, 2, 5, 3), ]
  storage.mode(perm) <- "logical"
  expect_equal(sw_power(design = perm, m = 10, sd = 1, icc = 0.1, effect = 1)$variance,
               sw_power(design = x, m = 10, sd = 1, icc = 0.1, effect = 1)$variance)
  # ICC = 0: clusters carry no extra variance; ties in cluster sizes are fine
  expect_true(is.finite(sw_power(p0 = 0.5, icc = 0, effect = 0.01)$power$power))
  # one cluster: identifiable only without period effects
  one <- matrix(c(0, 1), 1)
  expect_equal(sw_power(design = one, m = 10, sd = 1, icc = 0.1, effect = 1,
                        period_effects = FALSE)$variance,
               ref_gls_var(one, matrix(10, 1, 2), matrix(0.1 / 0.9, 1, 2),
                           matrix(1, 1, 2), period_effects = FALSE))
  # vector of effects, t quantiles with the default df = clusters
  pw <- sw_power(p0 = 0.04, icc = 0.01566, effect = c(-0.01, 0, 0.01), dist = "t")
  expect_equal(pw$power$power[2], pt(-qt(0.975, 5), 5))
  # a power reachable in only one direction: NA with a warning
  expect_snapshot(res <- sw_power(steps = 2, m = 5, p0 = 0.02, icc = 0.3))
  expect_true(is.na(res$mdes$effect[1]))
  expect_false(is.na(res$mdes$effect[2]))
})

test_that("sw_power() errors are clear", {
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 1))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = -0.1))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = NA))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04))
  expect_snapshot(error = TRUE, sw_power(p0 = 0, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(p0 = 1.2, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(p0 = NaN, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, sd = 1, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(sd = Inf, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(clusters_per_step = 0, p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(steps = 0, p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(design = matrix(0, 0, 3), p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(design = matrix(c(0, 2, NA, 1), 2), p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(design = matrix(1, 3, 3), p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(design = cbind(0, c(1, 1)), p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(m = matrix(10, 2, 2), p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(design = sw_design(1, 3), steps = 3, p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(m = 0, p0 = 0.04, icc = 0.01))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, effect = 0.01, power = 0.8))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, effect = -0.05))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, effect = NA))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, effect = numeric(0)))
  expect_snapshot(error = TRUE, sw_power(sd = 1, icc = 0.01, effect = Inf))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, power = 1))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, alpha = 0))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, cluster_autocorr = 1.5))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, df = 3))
  expect_snapshot(error = TRUE, sw_power(p0 = 0.04, icc = 0.01, n_clusters = 5))
  # a power that cannot be reached in either direction
  expect_snapshot(error = TRUE, sw_power(steps = 2, m = 1, p0 = 0.5, icc = 0.9, power = 0.99))
  expect_snapshot(error = TRUE, woertman_de(steps = 1, m = 10, icc = 0.1))
  expect_snapshot(error = TRUE, cra_mdes(icc = 0.17, n = 15, J = 2))
})

# ---- did_mdes ----------------------------------------------------------------

test_that("the Family Safeguarding table: LA-years as independent clusters, a decrease", {
  # FS protocol p. 11: MDES 0.019 (percentage points), Cohen's d 0.08;
  # baseline 0.06, ICC 0.00722, 5 LAs, 3,400 per LA-year, 3 years, 51,000.
  fs <- did_mdes(method = "independent", clusters = 5, m = 3400, icc = 0.00722,
                 p0 = 0.06, pre_periods = 1, post_periods = 2)
  expect_equal(round(-fs$mdes$effect[1], 3), 0.019)
  expect_equal(round(-fs$mdes$cohens_d[1], 2), 0.08)
  # the increase does not round to the table's figure
  expect_false(round(fs$mdes$effect[2], 3) == 0.019)
  # plain two-proportion formula with the design effect 1 + (m - 1) rho and
  # 15 LA-years of 3,400 children per arm
  de <- 1 + 3399 * 0.00722
  p1 <- 0.06 + fs$mdes$effect[1]
  expect_equal(-fs$mdes$effect[1],
               z80 * sqrt(de * (0.06 * 0.94 + p1 * (1 - p1)) / 51000),
               tolerance = 1e-10)
  expect_snapshot(print(fs))
})

test_that("clusterPower's cpa.did.normal() documented example is reproduced", {
  # clusterPower ?cpa.did.normal / ?crtpwr.2meanD: m = 100, d = 0.5,
  # ICC = 0.05, rho_c = 0.5, rho_s = 0.7, vart = 1, 80% power ->
  # nclusters = 4.683358 per arm. That documented figure comes from the
  # change-score variance 2 * DEFF * 2(1 - r) / (G m) (crtpwr.2meanD source,
  # VIF <- DEFF*2*(1 - r)) with a noncentral t on 2(G - 1) df; later
  # clusterPower code switched to (1 - r^2) but kept the example's comment.
  g <- 4.683358
  res <- did_mdes(method = "did", clusters = g, m = 100, icc = 0.05, sd = 1,
                  cluster_autocorr = 0.5, subject_autocorr = 0.7)
  df <- 2 * (g - 1)
  pw <- pt(qt(0.975, df), df, ncp = 0.5 / res$se, lower.tail = FALSE)
  # clusterPower's uniroot tolerance is .Machine$double.eps^0.25 on nclusters
  expect_equal(pw, 0.8, tolerance = 1e-4)
})

test_that("did and ancova variances equal their closed forms and brute force", {
  m <- 50; icc <- 0.05; rc <- 0.7; rs <- 0.3
  deff <- 1 + (m - 1) * icc
  r <- (m * icc * rc + (1 - icc) * rs) / deff
  vbar <- deff / m
  did <- did_mdes(clusters = 6, m = m, icc = icc, sd = 1, cluster_autocorr = rc,
                  subject_autocorr = rs)
  anc <- did_mdes(clusters = 6, m = m, icc = icc, sd = 1, cluster_autocorr = rc,
                  subject_autocorr = rs, method = "ancova")
  # Teerenstra et al. (2012): 2(1 - r) and (1 - r^2), times 2/G for two arms
  expect_equal(did$se^2, 2 / 6 * 2 * (1 - r) * vbar)
  expect_equal(anc$se^2, 2 / 6 * (1 - r^2) * vbar)
  expect_equal(did$cluster_period_corr, r)
  # several periods, unequal arms, binary arm-specific variances: the
  # two-way fixed-effects OLS estimator's sandwich variance on all
  # cluster-period means (plain R)
  res <- did_mdes(clusters = 3, comparators = 4, m = 200, icc = 0.02, p0 = 0.2,
                  pre_periods = 2, post_periods = 3, cluster_autocorr = 0.6,
                  power = 0.8)
  p1 <- res$mdes$p1[1]
  treated <- c(1, 1, 1, 0, 0, 0, 0)
  v_cell <- t(sapply(treated, function(tr) {
    c(rep(0.2 * 0.8, 2), rep(if (tr == 1) p1 * (1 - p1) else 0.2 * 0.8, 3))
  }))
  brute <- ref_did_ols_var(treated, 2, 3, 200, 0.02, 0.6, v_cell)
  expect_equal((res$mdes$effect[1] / z80)^2, brute, tolerance = 1e-8)
  # rho_c = 0 with one period each: DiD doubles the two-arm variance
  d0 <- did_mdes(clusters = 5, m = 100, icc = 0.1, sd = 1)
  expect_equal(d0$se^2, 2 * 2 / 5 * (1 + 99 * 0.1) / 100)
})

test_that("did_mdes hand cases, t quantiles and types", {
  # independent, continuous: 2 cluster-periods of 10 per arm, icc 0:
  # Var = 1/20 + 1/20 = 0.1, MDES = (z + z) sqrt(0.1)
  res <- did_mdes(method = "independent", clusters = 1, m = 10, icc = 0, sd = 1)
  expect_equal(res$mdes$effect, c(-1, 1) * z80 * sqrt(0.1))
  # t quantiles: df = G1 + G0 - 2
  t5 <- did_mdes(clusters = 5, m = 3400, icc = 0.00722, p0 = 0.06, pbar = "p0",
                 dist = "t")
  expect_equal(t5$df, 8)
  expect_equal(-t5$mdes$effect[1], (qt(0.975, 8) + qt(0.8, 8)) * t5$se)
  expect_equal(did_mdes(clusters = 5L, m = 3400L, icc = 0.00722, p0 = 0.06)$mdes,
               did_mdes(clusters = 5, m = 3400, icc = 0.00722, p0 = 0.06)$mdes)
  # higher LA autocorrelation always helps a DiD
  se <- vapply(c(0, 0.5, 0.9), function(rc) {
    did_mdes(clusters = 5, m = 3400, icc = 0.00722, p0 = 0.06, pbar = "p0",
             cluster_autocorr = rc)$se
  }, numeric(1))
  expect_true(all(diff(se) < 0))
})

test_that("did_mdes() errors are clear", {
  expect_snapshot(error = TRUE, did_mdes(clusters = 0, icc = 0.01, p0 = 0.06))
  expect_snapshot(error = TRUE, did_mdes(comparators = 0, icc = 0.01, p0 = 0.06))
  expect_snapshot(error = TRUE, did_mdes(icc = 1, p0 = 0.06))
  expect_snapshot(error = TRUE, did_mdes(icc = NaN, p0 = 0.06))
  expect_snapshot(error = TRUE, did_mdes(icc = 0.01, sd = -1))
  expect_snapshot(error = TRUE, did_mdes(icc = 0.01, p0 = 1))
  expect_snapshot(error = TRUE, did_mdes(icc = 0.01, p0 = 0.06, pre_periods = 0))
  expect_snapshot(error = TRUE, did_mdes(clusters = 1, comparators = 1, icc = 0.01,
                                         p0 = 0.06, dist = "t"))
  expect_snapshot(error = TRUE, did_mdes(clusters = 1, m = 2, icc = 0.9, p0 = 0.5,
                                         power = 0.99))
  expect_snapshot(error = TRUE, did_mdes(icc = 0.01, p0 = 0.06, cluster_autocorr = -1))
})

# ---- icc_anova -----------------------------------------------------------------

test_that("icc_anova matches loneway's published output and hand sums", {
  # Statalist 2003-04 msg00019: loneway mes sub on 9 observations gives
  # ICC 0.99311, asy. SE 0.00792, 95% CI 0.97759 to 1.00863.
  mes <- c(25, 36, 14, 24, 35, 12, 25, 37, 14)
  sub <- rep(1:3, 3)
  res <- icc_anova(mes, sub)
  expect_equal(round(res$icc, 5), 0.99311)
  expect_equal(round(res$se, 5), 0.00792)
  expect_equal(round(c(res$conf.low, res$conf.high), 5), c(0.97759, 1.00863))
  expect_equal(round(res$msb, 5), 385.33333)
  # hand: y = 1,2,3 | 4,5,6: MSB = 13.5, MSW = 1, n0 = 3,
  # rho = (13.5 - 1) / (13.5 + 2 * 1) = 12.5 / 15.5
  hand <- icc_anova(1:6, rep(c("a", "b"), each = 3))
  expect_equal(hand$icc, 12.5 / 15.5)
  expect_equal(c(hand$msb, hand$msw, hand$n0), c(13.5, 1, 3))
  # unbalanced: n0 = (N - sum n^2 / N) / (G - 1); sizes 2, 3, 5:
  # (10 - 38/10) / 2 = 3.1
  y <- c(1, 3, 2, 2, 5, 7, 6, 9, 8, 6)
  g <- rep(1:3, c(2, 3, 5))
  expect_equal(icc_anova(y, g)$n0, 3.1)
  expect_equal(icc_anova(y, g)$icc, ref_loneway(y, g))
  expect_snapshot(print(res))
})

test_that("icc_anova agrees with a plain-R reference, stats::anova and lme4", {
  set.seed(11)
  g <- sample(rep(1:25, times = sample(5:30, 25, replace = TRUE)))
  y <- rbinom(length(g), 1, plogis(-1.5 + rnorm(25, sd = 0.6)[g]))
  res <- icc_anova(y, g)
  expect_equal(res$icc, ref_loneway(y, g))
  tab <- stats::anova(stats::lm(y ~ factor(g)))
  expect_equal(c(res$msb, res$msw), tab[["Mean Sq"]])
  # balanced data: the REML variance components equal the ANOVA ones
  skip_if_not_installed("lme4")
  gb <- rep(1:12, each = 8)
  yb <- rnorm(12, sd = 0.7)[gb] + rnorm(96)
  fit <- lme4::lmer(yb ~ 1 + (1 | gb), REML = TRUE)
  vc <- as.data.frame(lme4::VarCorr(fit))$vcov
  # the optimiser's convergence tolerance, not the formula, limits agreement
  expect_equal(icc_anova(yb, gb)$icc, vc[1] / sum(vc), tolerance = 1e-6)
})

test_that("icc_anova: formula interface, types, order, ties, truncation, missing", {
  set.seed(3)
  d <- data.frame(y = rnorm(40), la = rep(letters[1:8], each = 5))
  a <- icc_anova(y ~ la, d)
  b <- icc_anova(d$y, d$la)
  expect_equal(a$icc, b$icc)
  expect_equal(icc_anova(y ~ la, data = d)$icc, b$icc)
  # unsorted input gives the same answer
  o <- sample(40)
  expect_equal(icc_anova(d$y[o], d$la[o])$icc, b$icc)
  # integer, double and logical outcomes
  yi <- rep(c(0L, 1L, 1L, 0L), 10)
  expect_equal(icc_anova(yi, d$la)$icc, icc_anova(as.double(yi), d$la)$icc)
  expect_equal(icc_anova(yi == 1L, d$la)$icc, icc_anova(as.double(yi), d$la)$icc)
  # ties: identical values within each cluster -> MSW = 0 -> ICC = 1
  expect_equal(icc_anova(rep(1:4, each = 3), rep(1:4, each = 3))$icc, 1)
  # a negative ANOVA estimate is truncated at 0 unless asked otherwise
  neg <- icc_anova(c(1, 2, 1, 2, 1, 2), rep(1:3, each = 2))
  expect_equal(neg$icc, 0)
  expect_lt(neg$icc_anova_raw, 0)
  expect_equal(icc_anova(c(1, 2, 1, 2, 1, 2), rep(1:3, each = 2), truncate = FALSE)$icc,
               neg$icc_anova_raw)
  expect_snapshot(print(neg))
  # missing values are dropped, counted and reported
  y <- d$y
  y[c(3, 17)] <- NA
  y[20] <- NaN
  expect_snapshot(res <- icc_anova(y, d$la))
  expect_equal(res$n_dropped, 3)
  expect_equal(res$icc, icc_anova(d$y[-c(3, 17, 20)], d$la[-c(3, 17, 20)])$icc)
})

test_that("icc_anova() errors are clear", {
  expect_snapshot(error = TRUE, icc_anova(numeric(0), character(0)))
  expect_snapshot(error = TRUE, icc_anova(c(1, 2, 3), c(1, 1, 1)))
  expect_snapshot(error = TRUE, icc_anova(c(1, 2, 3), c(1, 2, 3)))
  expect_snapshot(error = TRUE, icc_anova(c(1, Inf, 3, 4), c(1, 1, 2, 2)))
  expect_snapshot(error = TRUE, icc_anova(c(1, 1, 1, 1), c(1, 1, 2, 2)))
  expect_snapshot(error = TRUE, icc_anova(letters[1:4], c(1, 1, 2, 2)))
  expect_snapshot(error = TRUE, icc_anova(1:4, 1:3))
  expect_snapshot(error = TRUE, icc_anova(y ~ a + b, data.frame(y = 1, a = 1, b = 1)))
})

test_that("tidy methods return the tables", {
  fv <- sw_power(p0 = 0.04, icc = 0.01566)
  td <- tidy.sfp_sw_power(fv)
  expect_equal(td$effect, fv$mdes$effect)
  expect_equal(td$std.error, rep(fv$se, 2))
  pw <- sw_power(p0 = 0.04, icc = 0.01566, effect = -0.01)
  expect_equal(tidy.sfp_sw_power(pw)$std.error, pw$power$se)
  fs <- did_mdes(method = "independent", clusters = 5, m = 3400, icc = 0.00722,
                 p0 = 0.06)
  expect_equal(tidy.sfp_did_mdes(fs)$effect, fs$mdes$effect)
  ic <- icc_anova(1:6, rep(1:2, each = 3))
  expect_equal(tidy.sfp_icc(ic)$estimate, 12.5 / 15.5)
  expect_named(tidy.sfp_icc(ic), c("term", "estimate", "std.error", "conf.low", "conf.high"))
})
