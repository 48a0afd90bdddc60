# fgls_bcj(), hansen_plim().  Least-squares steps are compared to rounding
# (1e-10); the simulated plim uses a tolerance of 4 Monte Carlo standard
# errors computed in the test.

make_panel <- function(G = 8, T = 10, rho = 0.5, beta = 0.3, seed = 1) {
  set.seed(seed)
  d <- expand.grid(la = 1:G, year = 2010 + 1:T)
  d$treated <- as.integer(d$la <= G / 2 & d$year > 2010 + T / 2)
  d$x <- rnorm(G * T)
  e <- matrix(0, G, T)
  e[, 1] <- rnorm(G) / sqrt(1 - rho^2)
  for (t in 2:T) e[, t] <- rho * e[, t - 1] + rnorm(G)
  d$y <- beta * d$treated + 0.5 * d$x + rnorm(G)[d$la] + rnorm(T)[d$year - 2010] +
    e[cbind(d$la, d$year - 2010)]
  d
}

# exact plim by the expectation of each demeaned cross-product, in loops:
# E[u~_a u~_b] = g(a - b) - r_a / T - r_b / T + S / T^2
plim_ref <- function(rho, T) {
  p <- length(rho)
  # autocorrelations by simulating the Yule-Walker recursion on a long
  # AR(p) impulse response: gamma_h = sum_j psi_j psi_{j+h} / sum_j psi_j^2
  psi <- numeric(5000)
  psi[1] <- 1
  for (j in 2:5000) for (l in seq_len(p)) if (j - l >= 1) psi[j] <- psi[j] + rho[l] * psi[j - l]
  g <- function(h) {
    h <- abs(h)
    sum(psi[1:(5000 - h)] * psi[(1 + h):5000]) / sum(psi^2)
  }
  R <- outer(1:T, 1:T, Vectorize(function(a, b) g(a - b)))
  r <- rowSums(R)
  S <- sum(R)
  Ecp <- function(a, b) R[a, b] - r[a] / T - r[b] / T + S / T^2
  A <- matrix(0, p, p)
  b <- numeric(p)
  for (t in (p + 1):T) {
    for (i in 1:p) {
      b[i] <- b[i] + Ecp(t - i, t)
      for (j in 1:p) A[i, j] <- A[i, j] + Ecp(t - i, t - j)
    }
  }
  solve(A, b)
}

test_that("hansen_plim: exact formula equals the expectation, by hand and methods-vignette numbers", {
  expect_equal(hansen_plim(0.5, 10, "exact"), plim_ref(0.5, 10), tolerance = 1e-10)
  expect_equal(hansen_plim(c(0.5, 0.2), 12, "exact"), plim_ref(c(0.5, 0.2), 12),
               tolerance = 1e-10)
  # by hand: white noise, E[u~_t u~_{t-1}] = -1/T and E[u~^2] = 1 - 1/T, so
  # pi_T(0) = -1/(T - 1) (Nickell's bias; the H0 of Wooldridge's test)
  for (T in c(3, 5, 10)) expect_equal(hansen_plim(0, T, "exact"), -1 / (T - 1))
  # `vignette("methods")`, section 2: AR(1), rho = 0.5, T = 10: exact 0.312, ado formula 0.368
  expect_equal(round(hansen_plim(0.5, 10, "exact"), 3), 0.312)
  expect_equal(round(hansen_plim(0.5, 10, "hansen"), 3), 0.368)
  # correcting the exact plim: the ado's iteration recovers about 0.44, the
  # exact inversion 0.50
  r <- hansen_plim(0.5, 10, "exact")
  h <- hansen_correct_(r, 10, "hansen", 1e-10, 100)
  e <- hansen_correct_(r, 10, "exact", 1e-10, 100)
  expect_true(h$converged && e$converged)
  expect_equal(round(h$rho, 2), 0.44)
  expect_equal(e$rho, 0.5, tolerance = 1e-8)
  expect_equal(hansen_correct_(r, 10, "none", 1e-6, 100)$rho, r)
})

test_that("the exact plim reproduces a simulated plim; the ado formula does not", {
  set.seed(42)
  G <- 4000
  T <- 10
  rho <- 0.5
  u <- matrix(0, G, T)
  u[, 1] <- rnorm(G) / sqrt(1 - rho^2)
  for (t in 2:T) u[, t] <- rho * u[, t - 1] + rnorm(G)
  ud <- u - rowMeans(u)
  a <- rowSums(ud[, 2:T] * ud[, 1:(T - 1)])
  b <- rowSums(ud[, 1:(T - 1)]^2)
  est <- sum(a) / sum(b)
  # Monte Carlo SE of a ratio of sums over independent panels (delta method)
  mc_se <- sd(a - est * b) / (sqrt(G) * mean(b))
  expect_lt(abs(est - hansen_plim(rho, T, "exact")), 4 * mc_se)
  expect_gt(abs(est - hansen_plim(rho, T, "hansen")), 4 * mc_se)
})

# plain-R BCJ FGLS: lm() with dummies, loops for the AR regression and the
# quasi-differencing, a loop over clusters for CR1
fgls_ref <- function(d, p, correct = identity) {
  G <- max(d$la)
  T <- length(unique(d$year))
  d$t <- match(d$year, sort(unique(d$year)))
  W <- model.matrix(~ treated + x + factor(la) + factor(t), d)
  u <- residuals(lm(d$y ~ W - 1))
  U <- matrix(NA, G, T)
  for (i in seq_len(nrow(d))) U[d$la[i], d$t[i]] <- u[i]
  resp <- numeric()
  Z <- NULL
  for (g in 1:G) for (t in (p + 1):T) {
    resp <- c(resp, U[g, t])
    Z <- rbind(Z, U[g, t - seq_len(p)])
  }
  rho <- correct(drop(solve(crossprod(Z), crossprod(Z, resp))))
  ys <- numeric()
  Ws <- NULL
  cl <- integer()
  for (g in 1:G) for (t in (p + 1):T) {
    i <- which(d$la == g & d$t == t)
    wi <- W[i, ]
    yi <- d$y[i]
    for (l in seq_len(p)) {
      j <- which(d$la == g & d$t == t - l)
      wi <- wi - rho[l] * W[j, ]
      yi <- yi - rho[l] * d$y[j]
    }
    ys <- c(ys, yi)
    Ws <- rbind(Ws, wi)
    cl <- c(cl, g)
  }
  f <- lm(ys ~ Ws - 1)
  Ws <- Ws[, !is.na(coef(f)), drop = FALSE]     # lm drops the redundant dummies
  f <- lm(ys ~ Ws - 1)
  e <- residuals(f)
  bread <- solve(crossprod(Ws))
  meat <- 0
  for (g in unique(cl)) {
    s <- crossprod(Ws[cl == g, , drop = FALSE], e[cl == g])
    meat <- meat + s %*% t(s)
  }
  N <- nrow(Ws)
  K <- ncol(Ws)
  V <- G / (G - 1) * (N - 1) / (N - K) * bread %*% meat %*% bread
  list(coef = unname(coef(f)[2:3]), se = unname(sqrt(diag(V))[2:3]), rho = rho,
       fit = f, Ws = Ws, cl = cl, N = N, K = K)
}

test_that("fgls_bcj equals a plain-R implementation on a balanced panel", {
  d <- make_panel()
  for (p in 1:2) {
    ref <- fgls_ref(d, p)
    fit <- fgls_bcj(y ~ treated + x, d, "la", "year", p = p, bc = "none")
    expect_equal(unname(coef(fit)), ref$coef, tolerance = 1e-10)
    expect_equal(unname(sqrt(diag(vcov(fit)))), ref$se, tolerance = 1e-10)
    expect_equal(unname(fit$rho), ref$rho, tolerance = 1e-10)
    expect_equal(c(fit$nobs, fit$K), c(ref$N, ref$K))
    for (bc in c("exact", "hansen")) {
      corr <- function(r) hansen_correct_(r, 10, bc, 1e-6, 100)$rho
      ref <- fgls_ref(d, p, corr)
      fit <- fgls_bcj(y ~ treated + x, d, "la", "year", p = p, bc = bc)
      expect_equal(unname(coef(fit)), ref$coef, tolerance = 1e-10)
      expect_equal(unname(sqrt(diag(vcov(fit)))), ref$se, tolerance = 1e-10)
    }
  }
  expect_equal(fit$df, 7)
})

test_that("fgls_bcj's CR1 equals sandwich::vcovCL(type = 'HC1') on the quasi-differenced data", {
  skip_if_not_installed("sandwich")
  d <- make_panel(seed = 2)
  ref <- fgls_ref(d, 1)
  fit <- fgls_bcj(y ~ treated + x, d, "la", "year", p = 1, bc = "none")
  V <- sandwich::vcovCL(ref$fit, cluster = ref$cl, type = "HC1")
  expect_equal(unname(vcov(fit)), unname(V[2:3, 2:3]), tolerance = 1e-10)
})

test_that("micro data: cell effects from a within-cell regression, then the panel FGLS", {
  d <- make_panel(seed = 3)
  set.seed(3)
  m <- d[rep(seq_len(nrow(d)), times = sample(2:6, nrow(d), TRUE)), ]
  m$age <- rnorm(nrow(m))
  m$y <- m$y + 0.4 * m$age + rnorm(nrow(m))
  fit <- fgls_bcj(y ~ treated + x + age, m, "la", "year", p = 1, bc = "exact")
  cell <- interaction(m$la, m$year, drop = TRUE)
  gamma <- coef(lm(y ~ age + cell, m))[["age"]]
  expect_equal(fit$first_step[["age"]], gamma, tolerance = 1e-10)
  cm <- aggregate(cbind(r = m$y - gamma * m$age, treated = m$treated, x = m$x),
                  list(la = m$la, year = m$year), mean)
  panel <- fgls_bcj(r ~ treated + x, cm, "la", "year", p = 1, bc = "exact")
  expect_equal(coef(fit), coef(panel), tolerance = 1e-10)
  expect_equal(vcov(fit), vcov(panel), tolerance = 1e-10)
  expect_true(fit$micro)
  expect_output(print(fit), "cell effects from micro data")
})

test_that("fgls_bcj: FE absorb group and period shifts; unsorted, integer input, NA rows", {
  d <- make_panel(seed = 4)
  a <- fgls_bcj(y ~ treated + x, d, "la", "year", p = 2)
  d2 <- d
  d2$y <- d2$y + 3 * d2$la - 0.5 * d2$year          # on paper: absorbed by the FE
  expect_equal(coef(fgls_bcj(y ~ treated + x, d2, "la", "year", p = 2)), coef(a),
               tolerance = 1e-8)
  b <- fgls_bcj(y ~ treated + x, d[sample(nrow(d)), ], "la", "year", p = 2)
  expect_equal(coef(b), coef(a), tolerance = 1e-10)
  expect_equal(vcov(b), vcov(a), tolerance = 1e-10)
  di <- d
  di$treated <- as.double(di$treated)
  di$la <- paste0("LA", di$la)                        # character groups sort alike
  expect_equal(coef(fgls_bcj(y ~ treated + x, di, "la", "year", p = 2)), coef(a),
               tolerance = 1e-10)
  m <- d[rep(seq_len(nrow(d)), 2), ]
  m$x[1] <- NA
  expect_warning(fgls_bcj(y ~ treated + x, m, "la", "year", p = 1), "1 row with a missing value")
})

test_that("fgls_bcj(method = 're') equals plm's random effects (Amemiya) and vcovCL", {
  skip_if_not_installed("plm")
  skip_if_not_installed("sandwich")
  d <- make_panel(seed = 5)
  set.seed(5)
  m <- d[rep(seq_len(nrow(d)), times = sample(1:4, nrow(d), TRUE)), ]
  m$age <- rnorm(nrow(m))
  m$y <- m$y + 0.4 * m$age + rnorm(nrow(m))
  m$row <- ave(m$la, m$la, FUN = seq_along)
  fit <- fgls_bcj(y ~ treated + age, m, "la", "year", method = "re")
  pr <- plm::plm(y ~ treated + age + factor(year), m, index = c("la", "row"),
                 model = "random", random.method = "amemiya")
  expect_equal(unname(fit$coefficients_all), unname(coef(pr)), tolerance = 1e-10)
  expect_equal(fit$sigma2, pr$ercomp$sigma2, tolerance = 1e-10, ignore_attr = TRUE)
  # CR1 on the quasi-demeaned data with plm's theta
  th <- pr$ercomp$theta[as.character(m$la)]
  if (length(pr$ercomp$theta) == 1L) th <- rep(pr$ercomp$theta, nrow(m))
  X <- model.matrix(~ treated + age + factor(year), m)
  gm <- function(v) ave(v, m$la)
  Xs <- X - th * apply(X, 2, gm)
  ys <- m$y - th * gm(m$y)
  lf <- lm(ys ~ Xs - 1)
  V <- sandwich::vcovCL(lf, cluster = m$la, type = "HC1")
  expect_equal(unname(vcov(fit)), unname(V[2:3, 2:3]), tolerance = 1e-10)
  expect_equal(fit$df, 7)
  expect_output(print(fit), "Random-effects GLS")
})

test_that("fgls_bcj(method = 're') on a balanced panel equals plm's Amemiya (dfcor c(1, 1))", {
  skip_if_not_installed("plm")
  d <- make_panel(seed = 9)
  fit <- fgls_bcj(y ~ treated + x, d, "la", "year", method = "re")
  pr <- plm::plm(y ~ treated + x + factor(year), d, index = c("la", "year"),
                 model = "random", random.method = "amemiya")
  expect_equal(unname(fit$coefficients_all), unname(coef(pr)), tolerance = 1e-10)
  expect_equal(fit$sigma2, pr$ercomp$sigma2, tolerance = 1e-10, ignore_attr = TRUE)
  expect_equal(unname(fit$theta[1]), unname(pr$ercomp$theta[1]), tolerance = 1e-10)
  # the same components as the panel tests' re_components_()
  P <- list(y = d$y, X = model.matrix(~ treated + x + factor(year), d), id = d$la,
            N = 8L, Ti = tabulate(d$la))
  expect_equal(sfpceval:::re_components_(P, "amemiya")$sigma2, fit$sigma2, tolerance = 1e-12)
  # equal positive weights are the unweighted (balanced) fit
  f2 <- fgls_bcj(y ~ treated + x, d, "la", "year", method = "re", weights = rep(3, nrow(d)))
  expect_equal(f2$coefficients_all, fit$coefficients_all, tolerance = 1e-12)
  expect_equal(f2$sigma2, fit$sigma2, tolerance = 1e-12)
})

test_that("fgls_bcj methods", {
  d <- make_panel(seed = 6)
  fit <- fgls_bcj(y ~ treated + x, d, "la", "year", p = 1)
  td <- tidy.sfp_fgls(fit)
  expect_equal(td$term, c("treated", "x"))
  expect_equal(td$conf.high - td$estimate, qt(0.975, 7) * td$std.error)
  expect_equal(nobs(fit), 8L * 9L)
  expect_equal(glance.sfp_fgls(fit)$n_groups, 8L)
  expect_equal(confint(fit)["x", ], c(td$conf.low[2], td$conf.high[2]), ignore_attr = TRUE)
  expect_output(print(summary(fit)), "t\\(7\\) reference")
  expect_equal(nrow(fit$panel), 80L)
})

test_that("bias correction of a non-stationary estimate is skipped with a note", {
  h <- hansen_correct_(c(1.2), 10, "hansen", 1e-6, 100)
  expect_equal(h$rho, 1.2)
  expect_false(h$converged)
  expect_match(h$note, "not stationary")
})

test_that("fgls_bcj errors are clear", {
  d <- make_panel(G = 4, T = 5, seed = 7)
  expect_snapshot(fgls_bcj(y ~ treated, d[-c(3, 9), ], "la", "year", p = 1), error = TRUE)
  expect_snapshot(fgls_bcj(y ~ treated, d, "la", "year", p = 5), error = TRUE)
  expect_snapshot(fgls_bcj(y ~ treated, d, "la", "year", p = 3), error = TRUE)
  expect_snapshot(fgls_bcj(y ~ treated, d[d$la == 1, ], "la", "year"), error = TRUE)
  d$stratum <- as.integer(d$la <= 2)
  expect_snapshot(fgls_bcj(y ~ treated + stratum, d, "la", "year", p = 1), error = TRUE)
  expect_snapshot(fgls_bcj(y ~ 1, d, "la", "year"), error = TRUE)
  expect_snapshot(fgls_bcj(y ~ treated, d, "LA", "year"), error = TRUE)
  expect_snapshot(fgls_bcj(y ~ treated, d, "la", "year", p = 0), error = TRUE)
  m <- d[rep(seq_len(nrow(d)), 2), ]
  m$age <- rnorm(nrow(m))
  expect_snapshot(fgls_bcj(y ~ age, m, "la", "year", p = 1), error = TRUE)
  expect_snapshot(fgls_bcj(y ~ treated, d[0, ], "la", "year"), error = TRUE)
  expect_snapshot(hansen_plim(0.5, 2), error = TRUE)
  expect_snapshot(hansen_plim(1.1, 10), error = TRUE)
})

# ---- weights and cells split by a go-live inside a period (#13) -------------

# children in an LA x year panel; LAs 1-3 go live inside a year, so the
# child's treatment (referral on or after go-live) splits those cells
make_children <- function(G = 6, T = 8, seed = 11) {
  set.seed(seed)
  d <- make_panel(G = G, T = T, seed = seed)
  m <- d[rep(seq_len(nrow(d)), times = sample(3:7, nrow(d), TRUE)), ]
  m$ref_date <- m$year + runif(nrow(m))
  go <- c(2015.4, 2014.7, 2016.2, NA, NA, NA)[seq_len(G)]
  m$treated <- as.integer(!is.na(go[m$la]) & m$ref_date >= go[m$la])
  m$age <- rnorm(nrow(m))
  m$y <- m$y + 0.3 * m$treated + 0.4 * m$age + rnorm(nrow(m))
  m$w <- sample(c(0.5, 1, 2.5), nrow(m), TRUE)
  rownames(m) <- NULL
  m
}

# plain-R weighted, split-cell BCJ: lm(weights =) for the within-arm step,
# loops over arms for the means, shares and quasi-differences, lm(weights =)
# for the panel and a loop over clusters for CR1
fgls_split_ref <- function(m, p, correct = identity) {
  G <- max(m$la)
  tl <- sort(unique(m$year))
  T <- length(tl)
  m$t <- match(m$year, tl)
  m$arm <- interaction(m$la, m$t, m$treated, drop = TRUE)
  gam <- coef(lm(y ~ age + arm, m, weights = w))[["age"]]
  m$r <- m$y - gam * m$age
  A <- NULL
  for (t in 1:T) for (g in 1:G) for (a in 0:1) {
    i <- which(m$la == g & m$t == t & m$treated == a)
    if (!length(i)) next
    A <- rbind(A, data.frame(g = g, t = t, treated = a, x = weighted.mean(m$x[i], m$w[i]),
                             r = weighted.mean(m$r[i], m$w[i]), W = sum(m$w[i])))
  }
  A$share <- A$W / ave(A$W, A$g, A$t, FUN = sum)
  D <- model.matrix(~ treated + x + factor(g) + factor(t), A)
  f0 <- lm(A$r ~ D - 1, weights = A$share)
  u <- A$r - drop(D %*% coef(f0))
  U <- matrix(NA, G, T)
  cellv <- function(v, g, t) {
    j <- which(A$g == g & A$t == t)
    colSums(A$share[j] * as.matrix(v)[j, , drop = FALSE])
  }
  for (g in 1:G) for (t in 1:T) U[g, t] <- cellv(u, g, t)
  resp <- numeric()
  Z <- NULL
  for (g in 1:G) for (t in (p + 1):T) {
    resp <- c(resp, U[g, t])
    Z <- rbind(Z, U[g, t - seq_len(p)])
  }
  rho <- correct(drop(solve(crossprod(Z), crossprod(Z, resp))))
  ys <- numeric()
  Ws <- NULL
  cl <- s <- numeric()
  for (i in which(A$t > p)) {
    wi <- D[i, ]
    yi <- A$r[i]
    for (l in seq_len(p)) {
      wi <- wi - rho[l] * cellv(D, A$g[i], A$t[i] - l)
      yi <- yi - rho[l] * cellv(A$r, A$g[i], A$t[i] - l)
    }
    ys <- c(ys, yi)
    Ws <- rbind(Ws, wi)
    cl <- c(cl, A$g[i])
    s <- c(s, A$share[i])
  }
  f <- lm(ys ~ Ws - 1, weights = s)
  Ws <- Ws[, !is.na(coef(f)), drop = FALSE]
  f <- lm(ys ~ Ws - 1, weights = s)
  e <- residuals(f)
  bread <- solve(crossprod(Ws * sqrt(s)))
  meat <- 0
  for (g in unique(cl)) {
    k <- cl == g
    sc <- crossprod(Ws[k, , drop = FALSE], s[k] * e[k])
    meat <- meat + sc %*% t(sc)
  }
  N <- nrow(Ws)
  K <- ncol(Ws)
  V <- G / (G - 1) * (N - 1) / (N - K) * bread %*% meat %*% bread
  list(coef = unname(coef(f)[2:3]), se = unname(sqrt(diag(V))[2:3]), rho = rho,
       gamma = gam, N = N, K = K, arms = A, fit = f, cl = cl)
}

test_that("weighted FGLS with cells split by a go-live equals a plain-R implementation", {
  m <- make_children()
  for (p in 1:2) {
    ref <- fgls_split_ref(m, p)
    fit <- fgls_bcj(y ~ treated + x + age, m, "la", "year", p = p, bc = "none",
                    weights = "w")
    expect_equal(unname(coef(fit)), ref$coef, tolerance = 1e-10)
    expect_equal(unname(sqrt(diag(vcov(fit)))), ref$se, tolerance = 1e-10)
    expect_equal(unname(fit$rho), ref$rho, tolerance = 1e-10)
    expect_equal(fit$first_step[["age"]], ref$gamma, tolerance = 1e-10)
    expect_equal(c(fit$nobs, fit$K), c(ref$N, ref$K))
    for (bc in c("exact", "hansen")) {
      corr <- function(r) hansen_correct_(r, 8, bc, 1e-6, 100)$rho
      ref <- fgls_split_ref(m, p, corr)
      fit <- fgls_bcj(y ~ treated + x + age, m, "la", "year", p = p, bc = bc,
                      weights = m$w)
      expect_equal(unname(coef(fit)), ref$coef, tolerance = 1e-10)
      expect_equal(unname(sqrt(diag(vcov(fit)))), ref$se, tolerance = 1e-10)
    }
  }
  # the arms: go-live years with children on both sides are split
  both <- tapply(m$treated, list(m$la, m$year), function(v) length(unique(v)) == 2)
  expect_equal(fit$n_split, sum(both))
  expect_gte(fit$n_split, 2L)
  A <- ref$arms
  P <- fit$panel[order(fit$panel$year, fit$panel$la, fit$panel$treated), ]
  expect_equal(P$share, A$share, tolerance = 1e-12)
  expect_equal(P$weight, A$W, tolerance = 1e-12)
  expect_equal(P$y, A$r, tolerance = 1e-10)
  expect_output(print(fit), sprintf("%d cells split by treatment .*; weighted cell means",
                                    sum(both)))
})

test_that("weighted split-cell CR1 equals sandwich::vcovCL on the quasi-differenced arms", {
  skip_if_not_installed("sandwich")
  m <- make_children(seed = 12)
  ref <- fgls_split_ref(m, 1)
  fit <- fgls_bcj(y ~ treated + x + age, m, "la", "year", p = 1, bc = "none", weights = "w")
  V <- sandwich::vcovCL(ref$fit, cluster = ref$cl, type = "HC1")
  expect_equal(unname(vcov(fit)), unname(V[2:3, 2:3]), tolerance = 1e-10)
})

test_that("unit weights and no split cell give today's FGLS; weights scale-free, zero weights left out", {
  d <- make_panel(seed = 13)
  set.seed(13)
  m <- d[rep(seq_len(nrow(d)), times = sample(2:5, nrow(d), TRUE)), ]
  m$age <- rnorm(nrow(m))
  m$y <- m$y + 0.4 * m$age + rnorm(nrow(m))
  a <- fgls_bcj(y ~ treated + x + age, m, "la", "year", p = 1)
  b <- fgls_bcj(y ~ treated + x + age, m, "la", "year", p = 1, weights = rep(1, nrow(m)))
  expect_equal(coef(b), coef(a), tolerance = 1e-12)
  expect_equal(vcov(b), vcov(a), tolerance = 1e-12)
  expect_equal(b$n_split, 0L)
  # the micro data reduced to unweighted cell means by hand: the same panel
  cm <- aggregate(cbind(r = m$y - a$first_step[["age"]] * m$age, treated = m$treated, x = m$x),
                  list(la = m$la, year = m$year), mean)
  expect_equal(coef(fgls_bcj(r ~ treated + x, cm, "la", "year", p = 1)), coef(a),
               tolerance = 1e-10)
  # weights: scaling them changes nothing; rows of weight 0 are as if absent
  mw <- make_children(seed = 14)
  f1 <- fgls_bcj(y ~ treated + x + age, mw, "la", "year", p = 1, weights = "w")
  f2 <- fgls_bcj(y ~ treated + x + age, mw, "la", "year", p = 1, weights = 7 * mw$w)
  expect_equal(coef(f2), coef(f1), tolerance = 1e-10)
  expect_equal(vcov(f2), vcov(f1), tolerance = 1e-10)
  z <- mw
  z$w[c(2, 5, 9)] <- 0
  f3 <- fgls_bcj(y ~ treated + x + age, z, "la", "year", p = 1, weights = "w")
  f4 <- fgls_bcj(y ~ treated + x + age, z[-c(2, 5, 9), ], "la", "year", p = 1, weights = "w")
  expect_equal(coef(f3), coef(f4), tolerance = 1e-10)
  expect_equal(f3$n_zero_weight, 3L)
  # integer weights = replicated rows (frequency weights give the same means)
  fr <- mw[rep(seq_len(nrow(mw)), times = 2 * mw$w), ]
  f5 <- fgls_bcj(y ~ treated + x + age, fr, "la", "year", p = 1)
  expect_equal(coef(f5), coef(f1), tolerance = 1e-10)
  # row order
  f6 <- fgls_bcj(y ~ treated + x + age, mw[sample(nrow(mw)), ], "la", "year", p = 1,
                 weights = "w")
  expect_equal(coef(f6), coef(f1), tolerance = 1e-10)
})

test_that("a hand-made split cell: arm means, shares and variances from the protocol's definition", {
  # LA 1 goes live mid-2012: of its three 2012 children, the one referred
  # after go-live (weight 2) is treated; the two before (weights 1, 1) not
  d <- data.frame(la = c(1, 1, 1, 1, 1, 2, 2, 2, 1, 2, 1, 2),
                  year = c(2012, 2012, 2012, 2011, 2013, 2011, 2012, 2013, 2010, 2010,
                           2014, 2014),
                  treated = c(0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0),
                  y = c(1, 3, 10, 0, 9, 1, 2, 3, 0, 0, 8, 4),
                  w = c(1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1))
  fit <- fgls_bcj(y ~ treated, d, "la", "year", p = 1, bc = "none", weights = "w")
  P <- fit$panel[fit$panel$la == 1 & fit$panel$year == 2012, ]
  expect_equal(P$treated, c(0, 1))
  expect_equal(P$y, c(2, 10))                   # (1 + 3) / 2 and 10
  expect_equal(P$share, c(0.5, 0.5))            # weight 2 of 4 on each arm
  expect_equal(P$n, c(2L, 1L))
  expect_equal(P$n_eff, c(2, 1))
  expect_equal(P$var_mean, c((1 + 1) / 4, 0))   # sum w^2 (y - ybar)^2 / (sum w)^2
  expect_equal(fit$n_split, 1L)
  expect_equal(nrow(fit$panel), 11L)
})

test_that("fgls_bcj weights: negative, missing or all-zero weights are named", {
  m <- make_children(seed = 15)
  m$w[c(4, 8)] <- -1
  expect_error(fgls_bcj(y ~ treated, m, "la", "year", p = 1, weights = "w"),
               "column `w`: 2 rows with a missing, infinite or negative weight \\(rows 4, 8\\)")
  m$w <- 0
  expect_error(fgls_bcj(y ~ treated, m, "la", "year", p = 1, weights = "w"),
               "column `w`: .* rows all have weight 0.*\\(rows 1, 2, 3, 4, 5 and")
  m$w <- 1
  m$w[m$la == 2 & m$year == 2013] <- 0
  expect_error(fgls_bcj(y ~ treated, m, "la", "year", p = 1, weights = "w"),
               "1 of 48 cells have no rows with a positive weight \\(la 2 in year 2013\\)")
  expect_error(fgls_bcj(y ~ treated, m, "la", "year", weights = 1:3), "one value per row")
})

# ---- weighted random-effects FGLS (#13) -------------------------------------

# Plain R: the weighted Amemiya components, written with lm() and dense
# between-group operators, then GLS with V_g = s2e W_g^-1 + s2u J.
ref_re_weighted <- function(m, w) {
  m$w <- w
  X <- model.matrix(~ treated + age + factor(year), m)
  n <- nrow(m)
  g <- match(m$la, sort(unique(m$la)))
  G <- max(g)
  # within WLS: lm with group dummies
  lw <- lm(y ~ treated + age + factor(year) + factor(la), m, weights = w)
  bW <- coef(lw)[c("treated", "age", grep("^factor\\(year\\)", names(coef(lw)), value = TRUE))]
  KW <- length(bW)
  s2e <- sum(w * residuals(lw)^2) / (n - G - KW)
  Bw <- outer(g, g, "==") * matrix(w, n, n, byrow = TRUE)
  Bw <- Bw / rowSums(Bw)                                   # weighted group-mean operator
  e <- m$y - X[, -1] %*% bW
  e <- e - sum(w * e) / sum(w)
  quad2 <- sum(w * (Bw %*% e)^2)
  XB <- Bw %*% X[, -1]
  XB <- sweep(XB, 2, colSums(w * XB) / sum(w))
  Xw <- X[, -1] - Bw %*% X[, -1]
  m_nu <- G - 1 + sum(diag(solve(crossprod(Xw, w * Xw), crossprod(XB, w * XB))))
  Wg <- tapply(w, g, sum)
  s2u <- (quad2 - m_nu * s2e) / (sum(w) - sum(Wg^2) / sum(w))
  V <- s2e * diag(1 / w) + s2u * outer(g, g, "==")
  Vi <- solve(V)
  b <- solve(crossprod(X, Vi %*% X), crossprod(X, Vi %*% m$y))
  list(b = drop(b), sigma2 = c(s2e, s2u), theta = 1 - sqrt(s2e / (s2e + Wg * s2u)))
}

test_that("fgls_bcj(method = 're', weights =) equals a plain-R weighted GLS; equal weights are no weights", {
  d <- make_panel(seed = 7)
  set.seed(7)
  m <- d[rep(seq_len(nrow(d)), times = sample(1:4, nrow(d), TRUE)), ]
  m$age <- rnorm(nrow(m))
  m$y <- m$y + 0.4 * m$age + rnorm(nrow(m)) + rnorm(8, sd = 0.8)[m$la]
  m$w <- runif(nrow(m), 0.2, 3)
  fit <- fgls_bcj(y ~ treated + age, m, "la", "year", method = "re", weights = "w")
  ref <- ref_re_weighted(m, m$w)
  expect_equal(unname(fit$sigma2), ref$sigma2, tolerance = 1e-10)
  expect_equal(unname(fit$theta), unname(c(ref$theta)), tolerance = 1e-10)
  expect_equal(unname(fit$coefficients_all), unname(ref$b), tolerance = 1e-10)
  expect_true(fit$weighted)
  # cluster-robust CR1 of the weighted quasi-demeaned regression, as sandwich
  skip_if_not_installed("sandwich")
  th <- fit$theta[as.character(m$la)]
  X <- model.matrix(~ treated + age + factor(year), m)
  gm <- function(v) ave(v * m$w, m$la, FUN = sum) / ave(m$w, m$la, FUN = sum)
  Xs <- X - th * apply(X, 2, gm)
  ys <- m$y - th * gm(m$y)
  lf <- lm(ys ~ Xs - 1, weights = m$w)
  expect_equal(unname(fit$coefficients_all), unname(coef(lf)), tolerance = 1e-10)
  V <- sandwich::vcovCL(lf, cluster = m$la, type = "HC1")
  expect_equal(unname(vcov(fit)), unname(V[2:3, 2:3]), tolerance = 1e-10)
  # with w = 1 the weighted formulas are plm's unbalanced Amemiya
  P <- panel_rows_(y ~ treated + age, m, "la", "year", NULL)
  f1 <- fgls_re_w_(P$y, P$X, rep(1, length(P$y)), P$gi, P$ti, P$glev, P$tlev, 0L, 0L, NULL)
  f0 <- fgls_bcj(y ~ treated + age, m, "la", "year", method = "re")
  expect_equal(f1$coefficients_all, f0$coefficients_all, tolerance = 1e-10)
  expect_equal(unname(f1$sigma2), unname(f0$sigma2), tolerance = 1e-10)
  expect_equal(vcov(f1), vcov(f0), tolerance = 1e-10)
  # equal weights (and zero weights) are the unweighted fit on the positive rows
  m$w2 <- 2.5
  m$w2[c(3, 7)] <- 0
  f2 <- fgls_bcj(y ~ treated + age, m, "la", "year", method = "re", weights = "w2")
  f3 <- fgls_bcj(y ~ treated + age, m[-c(3, 7), ], "la", "year", method = "re")
  expect_equal(f2$coefficients_all, f3$coefficients_all, tolerance = 1e-12)
  expect_equal(vcov(f2), vcov(f3), tolerance = 1e-12)
  expect_equal(f2$n_zero_weight, 2L)
  # invariant to scaling the weights, shifting and scaling the outcome
  m$y2 <- 1000 * m$y + 1e5
  f4 <- fgls_bcj(y2 ~ treated + age, m, "la", "year", method = "re", weights = 7 * m$w)
  expect_equal(f4$coefficients, 1000 * fit$coefficients, tolerance = 1e-8)
  expect_equal(vcov(f4), 1e6 * vcov(fit), tolerance = 1e-8)
  # a group whose rows all have weight 0 is an error
  m$w3 <- m$w
  m$w3[m$la == 2] <- 0
  expect_snapshot(fgls_bcj(y ~ treated, m, "la", "year", weights = "w3", method = "re"), error = TRUE)
})
