# serial_test(), hausman_test(), repeat_share(), practically_different().
# Everything here is closed-form least squares, so comparisons with plm and
# with the plain-R references are to rounding (1e-10).

sim_panel <- function(N = 30, T = 6, rho = 0.4, seed = 2, shuffle = TRUE) {
  set.seed(seed)
  d <- expand.grid(id = 1:N, t = 1:T)
  u <- rnorm(N)
  d$x1 <- rnorm(N * T) + 0.5 * u[d$id]
  d$x2 <- rnorm(N * T)
  e <- matrix(0, N, T)
  e[, 1] <- rnorm(N)
  for (t in 2:T) e[, t] <- rho * e[, t - 1] + rnorm(N)
  d$y <- 1 + d$x1 - d$x2 + u[d$id] + e[cbind(d$id, d$t)]
  d$la <- (d$id - 1) %/% 5 + 1
  if (shuffle) d <- d[sample(nrow(d)), ]
  d
}

test_that("serial tests equal plm's pbgtest and pwartest", {
  skip_if_not_installed("plm")
  skip_if_not_installed("lmtest")
  d <- sim_panel()
  pd <- plm::pdata.frame(d, index = c("id", "t"))
  fits <- list(
    within = plm::plm(y ~ x1 + x2, pd, model = "within"),
    random = plm::plm(y ~ x1 + x2, pd, model = "random"),
    pooling = plm::plm(y ~ x1 + x2, pd, model = "pooling"))
  for (m in names(fits)) {
    for (type in c("Chisq", "F")) {
      ref <- plm::pbgtest(fits[[m]], type = type)
      got <- serial_test(y ~ x1 + x2, d, "id", "t", model = m, lags = "stacked",
                         type = type)
      expect_equal(unname(got$statistic), unname(ref$statistic), tolerance = 1e-10)
      expect_equal(unname(got$parameter), unname(ref$parameter))
      expect_equal(got$p.value, ref$p.value, tolerance = 1e-10)
    }
  }
  ref <- plm::pbgtest(fits$within, order = 2)
  got <- serial_test(y ~ x1 + x2, d, "id", "t", order = 2, lags = "stacked")
  expect_equal(unname(got$statistic), unname(ref$statistic), tolerance = 1e-10)
  fe2 <- plm::plm(y ~ x1 + x2, pd, model = "within", effect = "twoways")
  ref <- plm::pbgtest(fe2)
  got <- serial_test(y ~ x1 + x2, d, "id", "t", effect = "twoways", lags = "stacked")
  expect_equal(unname(got$statistic), unname(ref$statistic), tolerance = 1e-10)
  ref <- plm::pwartest(fits$within)
  got <- serial_test(y ~ x1 + x2, d, "id", "t", test = "wooldridge")
  expect_equal(unname(got$statistic), unname(ref$statistic), tolerance = 1e-10)
  expect_equal(unname(got$parameter), unname(ref$parameter))
  expect_equal(got$p.value, unname(ref$p.value), tolerance = 1e-10)
})

test_that("three-term absence panel: unbalanced, as plm (variance components with dfcor 3)", {
  skip_if_not_installed("plm")
  set.seed(11)
  d <- expand.grid(child = 1:80, term = 1:3)
  d <- d[-sample(nrow(d), 25), ]            # some terms missing
  d$age <- runif(nrow(d), 5, 12)
  d$absence <- 3 + 0.2 * d$age + rnorm(80)[d$child] + rnorm(nrow(d))
  pd <- plm::pdata.frame(d, index = c("child", "term"))
  fe <- plm::plm(absence ~ age, pd, model = "within")
  expect_equal(unname(serial_test(absence ~ age, d, "child", "term", lags = "stacked")$statistic),
               unname(plm::pbgtest(fe)$statistic), tolerance = 1e-10)
  for (rm in c("swar", "amemiya")) {
    re <- plm::plm(absence ~ age, pd, model = "random", random.method = rm)
    expect_equal(unname(serial_test(absence ~ age, d, "child", "term", model = "random",
                                    lags = "stacked", random_method = rm)$statistic),
                 unname(plm::pbgtest(re)$statistic), tolerance = 1e-10)
    h <- hausman_test(absence ~ age, d, "child", "term", method = "classic",
                      random_method = rm)
    expect_equal(h$sigma2, re$ercomp$sigma2, tolerance = 1e-10, ignore_attr = TRUE)
    expect_equal(unname(h$statistic),
                 unname(plm::phtest(fe, re)$statistic), tolerance = 1e-10)
  }
})

# plain-R Breusch-Godfrey with within-panel lags: loop over units
bg_within_ref <- function(d, order) {
  d <- d[order(d$id, d$t), ]
  yd <- d$y - ave(d$y, d$id)
  X <- cbind(d$x1 - ave(d$x1, d$id), d$x2 - ave(d$x2, d$id))
  r <- residuals(lm(yd ~ X - 1))
  lagm <- matrix(NA_real_, nrow(d), order)
  for (i in seq_len(nrow(d))) {
    for (l in seq_len(order)) {
      j <- which(d$id == d$id[i] & d$t == d$t[i] - l)
      if (length(j)) lagm[i, l] <- r[j]
    }
  }
  keep <- complete.cases(lagm)
  aux <- lm(r[keep] ~ X[keep, ] + lagm[keep, ] - 1)
  sum(keep) * sum(fitted(aux)^2) / sum(r[keep]^2)
}

test_that("within-panel BG equals a plain-R loop, with gaps in the panel", {
  d <- sim_panel(N = 12, T = 5, seed = 3)
  d <- d[-c(4, 17, 30), ]
  for (p in 1:2) {
    got <- serial_test(y ~ x1 + x2, d, "id", "t", order = p)
    expect_equal(unname(got$statistic), bg_within_ref(d, p), tolerance = 1e-10)
  }
})

test_that("Wooldridge test equals a plain-R computation, LA clusters", {
  d <- sim_panel(seed = 4)
  got <- serial_test(y ~ x1 + x2, d, "id", "t", test = "wooldridge", cluster = "la")
  s <- d[order(d$id, d$t), ]
  yd <- s$y - ave(s$y, s$id)
  X <- cbind(s$x1 - ave(s$x1, s$id), s$x2 - ave(s$x2, s$id))
  e <- residuals(lm(yd ~ X - 1))
  e1 <- ifelse(c(NA, head(s$id, -1)) == s$id, c(NA, head(e, -1)), NA)
  k <- !is.na(e1)
  A <- cbind(1, e1[k])
  b <- solve(crossprod(A), crossprod(A, e[k]))
  res <- e[k] - A %*% b
  meat <- matrix(0, 2, 2)
  for (g in unique(s$la[k])) {
    sg <- crossprod(A[s$la[k] == g, , drop = FALSE], res[s$la[k] == g])
    meat <- meat + sg %*% t(sg)
  }
  V <- solve(crossprod(A)) %*% meat %*% solve(crossprod(A))
  expect_equal(unname(got$statistic), ((b[2] + 1 / 5) / sqrt(V[2, 2]))^2, tolerance = 1e-10)
  expect_equal(unname(got$parameter), c(1, sum(k) - 2))
})

test_that("BG by hand: 2 units x 3 periods, intercept-only pooling model", {
  # y = (1, 2, 3) and (3, 2, 1): residuals from the mean 2 are (-1, 0, 1) and
  # (1, 0, -1).  Within-panel lags pair (0,-1), (1,0), (0,1), (-1,0): the
  # auxiliary slope is 0, so LM = 0.  Stacked lags (zero-filled, crossing the
  # unit boundary) give Z = (0,-1,0,1,1,0): slope 6/17, intercept -1/17,
  # sum of squared fits 102/289, sum r^2 = 4, LM = 6 (102/289) / 4 = 153/289.
  d <- data.frame(id = rep(1:2, each = 3), t = rep(1:3, 2), y = c(1, 2, 3, 3, 2, 1))
  w <- serial_test(y ~ 1, d, "id", "t", model = "pooling")
  s <- serial_test(y ~ 1, d, "id", "t", model = "pooling", lags = "stacked", order = 1)
  expect_equal(unname(w$statistic), 0, tolerance = 1e-12)
  expect_equal(unname(s$statistic), 153 / 289, tolerance = 1e-12)
  expect_equal(w$nobs, 4L)
  expect_equal(s$nobs, 6L)
})

test_that("Wooldridge test by hand: FE residuals of white noise have slope -1/(T-1) in expectation", {
  # H0 of pwartest: for white-noise errors the within residuals have
  # E[e_t e_{t-1}] / E[e_{t-1}^2] = -1/(T-1); the test's reference value.
  d <- sim_panel(N = 3000, T = 4, rho = 0, seed = 5, shuffle = FALSE)
  got <- serial_test(y ~ x1 + x2, d, "id", "t", test = "wooldridge")
  expect_equal(unname(got$estimate["h0"]), -1 / 3)
  # slope SE about 0.01 with 9000 pairs: within 4 SE of -1/3
  expect_lt(abs(got$estimate[["slope"]] + 1 / 3), 0.04)
})

test_that("serial_test: integer vs double, unsorted input, NA rows", {
  d <- sim_panel(seed = 6, shuffle = FALSE)
  a <- serial_test(y ~ x1 + x2, d, "id", "t")
  b <- serial_test(y ~ x1 + x2, d[sample(nrow(d)), ], "id", "t")
  expect_equal(a$statistic, b$statistic, tolerance = 1e-12)
  di <- d
  di$t <- as.numeric(di$t)
  di$id <- as.character(di$id)
  expect_equal(serial_test(y ~ x1 + x2, di, "id", "t")$statistic, a$statistic,
               tolerance = 1e-12)
  dn <- d
  dn$x1[5] <- NA
  expect_warning(serial_test(y ~ x1 + x2, dn, "id", "t"), "1 row with a missing value")
})

test_that("serial_test errors are clear", {
  d <- sim_panel(N = 4, T = 3, seed = 7, shuffle = FALSE)
  expect_snapshot(serial_test(y ~ x1, rbind(d, d[1, ]), "id", "t"), error = TRUE)
  expect_snapshot(serial_test(y ~ x1, d[d$id == 1, ], "id", "t"), error = TRUE)
  expect_snapshot(serial_test(y ~ x1, d[d$t == 1, ], "id", "t"), error = TRUE)
  expect_snapshot(serial_test(y ~ x1, d, "child", "t"), error = TRUE)
  expect_snapshot(serial_test(y ~ x1, d, "id", "t", order = 3), error = TRUE)
  expect_snapshot(serial_test(y ~ x1, d, "id", "t", order = 0), error = TRUE)
  expect_snapshot(serial_test(y ~ x1, d, "id", "t", model = "random", effect = "twoways"),
                  error = TRUE)
  expect_snapshot(serial_test(y ~ x1, d[0, ], "id", "t"), error = TRUE)
})

# ---- Hausman ----

test_that("Hausman tests equal plm's phtest (classic, aux, aux with Arellano vcov)", {
  skip_if_not_installed("plm")
  d <- sim_panel(seed = 8)
  pd <- plm::pdata.frame(d, index = c("id", "t"))
  ref <- plm::phtest(plm::plm(y ~ x1 + x2, pd, model = "within"),
                     plm::plm(y ~ x1 + x2, pd, model = "random"))
  got <- hausman_test(y ~ x1 + x2, d, "id", "t", method = "classic")
  expect_equal(unname(got$statistic), unname(ref$statistic), tolerance = 1e-10)
  expect_equal(got$p.value, ref$p.value, tolerance = 1e-10)
  ref <- plm::phtest(y ~ x1 + x2, pd, method = "aux")
  got <- hausman_test(y ~ x1 + x2, d, "id", "t", vcov = "classical")
  expect_equal(unname(got$statistic), unname(ref$statistic), tolerance = 1e-10)
  ref <- plm::phtest(y ~ x1 + x2, pd, method = "aux",
                     vcov = function(x) plm::vcovHC(x, method = "arellano"))
  got <- hausman_test(y ~ x1 + x2, d, "id", "t", vcov = "CR0")
  expect_equal(unname(got$statistic), unname(ref$statistic), tolerance = 1e-10)
  re <- plm::plm(y ~ x1 + x2, pd, model = "random")
  expect_equal(got$sigma2, re$ercomp$sigma2, tolerance = 1e-10, ignore_attr = TRUE)
  re_a <- plm::plm(y ~ x1 + x2, pd, model = "random", random.method = "amemiya")
  got_a <- hausman_test(y ~ x1 + x2, d, "id", "t", method = "classic",
                        random_method = "amemiya")
  expect_equal(got_a$sigma2, re_a$ercomp$sigma2, tolerance = 1e-10, ignore_attr = TRUE)
  expect_equal(unname(got_a$statistic),
               unname(plm::phtest(plm::plm(y ~ x1 + x2, pd, model = "within"), re_a)$statistic),
               tolerance = 1e-10)
})

test_that("cluster-robust Hausman equals a plain-R auxiliary regression (CR1, LA clusters)", {
  d <- sim_panel(seed = 9)
  got <- hausman_test(y ~ x1 + x2, d, "id", "t", cluster = "la")
  s <- d[order(d$id, d$t), ]
  # Swamy-Arora by hand (balanced: T = 6, N = 30)
  dm <- function(v) v - ave(v, s$id)
  Xw <- cbind(dm(s$x1), dm(s$x2))
  ew <- residuals(lm(dm(s$y) ~ Xw - 1))
  s2e <- sum(ew^2) / (180 - 30 - 2)
  mb <- function(v) ave(v, s$id)
  eb <- residuals(lm(mb(s$y) ~ mb(s$x1) + mb(s$x2)))
  s2u <- (sum(eb^2) / (30 - 2 - 1) - s2e) / 6
  th <- 1 - sqrt(s2e / (s2e + 6 * s2u))
  A <- cbind(1 - th, s$x1 - th * mb(s$x1), s$x2 - th * mb(s$x2), Xw)
  yq <- s$y - th * mb(s$y)
  b <- solve(crossprod(A), crossprod(A, yq))
  e <- drop(yq - A %*% b)
  meat <- 0
  for (g in unique(s$la)) {
    sg <- crossprod(A[s$la == g, ], e[s$la == g])
    meat <- meat + sg %*% t(sg)
  }
  G <- length(unique(s$la))
  V <- (G / (G - 1)) * (179 / (180 - 5)) * solve(crossprod(A)) %*% meat %*% solve(crossprod(A))
  H <- t(b[4:5]) %*% solve(V[4:5, 4:5]) %*% b[4:5]
  expect_equal(unname(got$statistic), drop(H), tolerance = 1e-10)
  expect_equal(got$prefer, if (got$p.value < 0.05) "fixed effects" else "random effects")
  expect_output(print(got), "Regression-based Hausman test \\(CR1 variance, 6 clusters\\)")
})

test_that("hausman_test errors are clear", {
  d <- sim_panel(N = 6, T = 3, seed = 10, shuffle = FALSE)
  d$z <- d$id %% 2
  expect_snapshot(hausman_test(y ~ z, d, "id", "t"), error = TRUE)
  expect_snapshot(hausman_test(y ~ x1 - 1, d, "id", "t"), error = TRUE)
  expect_snapshot(hausman_test(y ~ x1, d[d$id == 1, ], "id", "t"), error = TRUE)
  expect_snapshot(hausman_test(y ~ x1 + x2, d[d$id <= 3, ], "id", "t"), error = TRUE)
})

# ---- decision rules ----

test_that("repeat_share by hand", {
  # 5 individuals, b and d occur more than once: 2/5 = 40% of individuals;
  # their rows are 2 + 3 = 5 of 8 observations = 62.5%.
  r <- repeat_share(c("a", "b", "b", "c", "d", "d", "d", "e"))
  expect_equal(r$share_individuals, 0.4)
  expect_equal(r$share_observations, 5 / 8)
  expect_true(r$consider_multilevel)
  expect_false(repeat_share(1:10)$consider_multilevel)
  # one repeated child out of 10 (10% of individuals, 2/11 = 18% of rows)
  ids <- c(1:10, 1)
  expect_false(repeat_share(ids)$consider_multilevel)
  expect_true(repeat_share(ids, basis = "observations")$consider_multilevel)
  expect_output(print(r), "share of individuals 40.0%")
  expect_snapshot(repeat_share(c("a", NA, "b")), error = TRUE)
  expect_snapshot(repeat_share(character()), error = TRUE)
  expect_snapshot(repeat_share(1:3, threshold = 15), error = TRUE)
})

test_that("practically_different by hand", {
  # -0.05 / -0.04 - 1 = 0.25 > 0.2; -0.035 / -0.04 - 1 = -0.125
  out <- practically_different(c(-0.05, -0.035), -0.04)
  expect_equal(as.vector(out), c(TRUE, FALSE))
  expect_equal(attr(out, "relative_difference"), c(0.25, -0.125))
  expect_true(practically_different(0.7, 1, threshold = 0.2))
  expect_false(practically_different(0.9, 1))
  expect_equal(length(practically_different(numeric(), 1)), 0L)
  expect_snapshot(practically_different(0.1, 0), error = TRUE)
  expect_snapshot(practically_different("a", 1), error = TRUE)
})

# ---- the protocol's comparison with the main regression (#13) ----

# plain-R reference: the chosen model (within or RE quasi-demeaned, from
# plm) and the main OLS stacked block-diagonally; the stacked regression's
# cluster-robust covariance (sandwich::vcovCL, HC0 with G/(G-1)) gives the
# joint variance, so the difference's variance is c' V c
compare_ref <- function(d, chosen, main) {
  s <- d[order(d$id, d$t), ]
  pd <- plm::pdata.frame(s, index = c("id", "t"))
  model <- if (chosen == "fixed effects") "within" else "random"
  fit <- plm::plm(y ~ x1 + x2, pd, model = model)
  Xc <- model.matrix(fit)
  yc <- plm::pmodel.response(fit)
  Xm <- model.matrix(main, s)
  ym <- s$y
  n <- nrow(s)
  Z <- rbind(cbind(Xc, matrix(0, n, ncol(Xm))), cbind(matrix(0, n, ncol(Xc)), Xm))
  f <- lm(c(yc, ym) ~ Z - 1)
  V <- sandwich::vcovCL(f, cluster = rep(s$la, 2), type = "HC0", cadjust = TRUE)
  jc <- match("x1", colnames(Xc))
  jm <- ncol(Xc) + match("x1", colnames(Xm))
  b <- coef(f)
  d <- b[jc] - b[jm]
  se <- sqrt(V[jc, jc] + V[jm, jm] - 2 * V[jc, jm])
  list(bc = unname(b[jc]), bm = unname(b[jm]), d = unname(d), se = unname(se),
       se_c = sqrt(V[jc, jc]), se_m = sqrt(V[jm, jm]))
}

test_that("hausman_test(main =): the statistical and practical comparison equals a stacked reference", {
  skip_if_not_installed("plm")
  skip_if_not_installed("sandwich")
  main <- y ~ x1 + x2 + factor(t)
  for (seed in c(8, 21)) {
    d <- sim_panel(seed = seed)
    got <- hausman_test(y ~ x1 + x2, d, "id", "t", cluster = "la", main = main,
                        param = "x1")
    cm <- got$comparison
    ref <- compare_ref(d, got$prefer, main)
    expect_equal(cm$chosen, got$prefer)
    expect_equal(cm$estimate_chosen, ref$bc, tolerance = 1e-10)
    expect_equal(cm$estimate_main, ref$bm, tolerance = 1e-10)
    expect_equal(cm$se_difference, ref$se, tolerance = 1e-10)
    expect_equal(cm$se_chosen, unname(ref$se_c), tolerance = 1e-10)
    expect_equal(cm$se_main, unname(ref$se_m), tolerance = 1e-10)
    expect_equal(cm$p.value, 2 * pt(-abs(ref$d / ref$se), 5), tolerance = 1e-10)
    expect_equal(cm$relative_difference, ref$bc / ref$bm - 1, tolerance = 1e-10)
    expect_equal(cm$different, cm$statistically_different && cm$practically_different)
  }
  # x1 independent of the unit effect: random effects chosen
  d <- sim_panel(seed = 8)
  set.seed(8)
  d$x1 <- rnorm(nrow(d))
  d$y <- 1 + d$x1 - d$x2 + rnorm(30)[d$id] + rnorm(nrow(d))
  got <- hausman_test(y ~ x1 + x2, d, "id", "t", cluster = "la", main = main, param = "x1")
  expect_equal(got$prefer, "random effects")
  ref <- compare_ref(d, got$prefer, main)
  expect_equal(got$comparison$estimate_chosen, ref$bc, tolerance = 1e-10)
  expect_equal(got$comparison$se_difference, ref$se, tolerance = 1e-10)
  # the main estimate equals lm(); the FE estimate plm's within
  s <- d[order(d$id, d$t), ]
  expect_equal(got$comparison$estimate_main, unname(coef(lm(main, s))[["x1"]]),
               tolerance = 1e-10)
  # row order does not matter
  got2 <- hausman_test(y ~ x1 + x2, d[sample(nrow(d)), ], "id", "t", cluster = "la",
                       main = main, param = "x1")
  expect_equal(got2$comparison, got$comparison, tolerance = 1e-10)
})

test_that("the protocol's decision: different only when statistically AND practically different", {
  # by hand: x1's effect is 1 for the unit-invariant part; the main
  # regression omits the unit effect u correlated with x1, so it is biased by
  # a known amount in large samples (pooled OLS slope 1 + cov(x1, u)/var(x1))
  set.seed(31)
  N <- 400
  d <- expand.grid(id = 1:N, t = 1:4)
  u <- rnorm(N)
  d$x1 <- rnorm(nrow(d)) + u[d$id]
  d$x2 <- rnorm(nrow(d))
  d$y <- d$x1 + d$x2 + 2 * u[d$id] + rnorm(nrow(d))
  d$la <- (d$id - 1) %/% 20 + 1
  h <- hausman_test(y ~ x1 + x2, d, "id", "t", cluster = "la", main = y ~ x1 + x2,
                    param = "x1")
  cm <- h$comparison
  expect_equal(h$prefer, "fixed effects")
  expect_equal(cm$estimate_chosen, 1, tolerance = 0.05)   # FE: unbiased, SE about 0.02
  expect_equal(cm$estimate_main, 2, tolerance = 0.05)     # pooled: 1 + 2 * 1/2
  expect_true(cm$statistically_different && cm$practically_different && cm$different)
  expect_output(print(h), "Protocol decision: statistically and practically different")
  # a main regression with the unit effects: the same estimate, neither
  h2 <- hausman_test(y ~ x1 + x2, d, "id", "t", cluster = "la",
                     main = y ~ x1 + x2 + factor(id), param = "x1")
  expect_equal(h2$comparison$difference, 0, tolerance = 1e-10)
  expect_false(h2$comparison$different)
  expect_output(print(h2), "the main regression stands")
  # practically but not statistically different: few, noisy clusters
  set.seed(35)
  N <- 40
  d <- expand.grid(id = 1:N, t = 1:3)
  u <- rnorm(N)
  d$x1 <- rnorm(nrow(d)) + 0.3 * u[d$id]
  d$x2 <- rnorm(nrow(d))
  d$y <- d$x1 + d$x2 + u[d$id] + 3 * rnorm(nrow(d))
  d$la <- (d$id - 1) %/% 5 + 1
  h3 <- hausman_test(y ~ x1 + x2, d, "id", "t", cluster = "la", main = y ~ x1 + x2,
                     param = "x1")
  cm <- h3$comparison
  expect_true(cm$practically_different)
  expect_false(cm$statistically_different)
  expect_false(cm$different)
})

test_that("hausman_test(main =) with one time-varying regressor (a 1 x 1 bread)", {
  d <- sim_panel(seed = 12)
  h <- hausman_test(y ~ x1, d, "id", "t", cluster = "la", main = y ~ x1 + factor(t),
                    param = "x1")
  s <- d[order(d$id, d$t), ]
  fe <- coef(lm(y ~ x1 + factor(id), s))[["x1"]]
  expect_equal(h$prefer, "fixed effects")
  expect_equal(h$comparison$estimate_chosen, fe, tolerance = 1e-10)
  expect_equal(h$comparison$estimate_main, coef(lm(y ~ x1 + factor(t), s))[["x1"]],
               tolerance = 1e-10)
})

test_that("hausman_test(main =) errors name the problem", {
  d <- sim_panel(seed = 8)
  expect_error(hausman_test(y ~ x1 + x2, d, "id", "t", main = "y ~ x1"),
               "`main` must be the main regression as a two-sided formula")
  expect_error(hausman_test(y ~ x1 + x2, d, "id", "t", main = y ~ x1 + w, param = "x1"),
               "`main` uses `w`, not found")
  expect_error(hausman_test(y ~ x1 + x2, d, "id", "t", main = y ~ x2, param = "x1"),
               "`param` \\(`x1`\\) is not a coefficient of the main model")
  d$w <- d$x2
  d$w[c(3, 7)] <- NA
  expect_error(hausman_test(y ~ x1 + x2, d, "id", "t", main = y ~ x1 + w, param = "x1"),
               "2 rows with a missing value in a variable of `main`")
})
