# few_treated_test() and the few-treated-clusters warning of did_fit() and
# wild_boot(). The reference builds the G T x G T covariance by hand and
# solves the moment equations with uniroot(); the package interpolates on a
# grid of rho with step 0.002, whose linear-interpolation error in rho is
# below 1e-4 (the ratio of traces is smooth), hence that tolerance on rho.

ft_data <- function(G = 6, treated = 1, Tn = 6, n = 25, seed = 1, effect = 0) {
  set.seed(seed)
  d <- expand.grid(i = seq_len(n), year = 2016 + seq_len(Tn), la = paste0("LA", seq_len(G)),
                   stringsAsFactors = FALSE)
  shock <- matrix(0, G, Tn)
  shock[, 1] <- rnorm(G, sd = 0.15)
  for (t in 2:Tn) shock[, t] <- 0.5 * shock[, t - 1] + rnorm(G, sd = 0.13)
  gi <- match(d$la, paste0("LA", seq_len(G)))
  go <- c(2020.4, 2019.7, rep(NA, G))[seq_len(G)]
  go[-seq_len(treated)] <- NA
  d$when <- d$year + runif(nrow(d))
  d$treated <- as.integer(!is.na(go[gi]) & d$when >= go[gi])
  d$age <- sample(0:17, nrow(d), TRUE)
  d$w <- sample(c(0.5, 1, 2), nrow(d), TRUE)
  d$y <- 0.1 * gi + 0.02 * d$year + 0.01 * d$age + effect * d$treated +
    shock[cbind(gi, d$year - 2016)] + rnorm(nrow(d), sd = 0.5)
  d
}

# plain-R: cells, sigma2_e, the moments' exact expectations by brute force
ft_ref <- function(d, weights = NULL, k_treated = 1) {
  w <- if (is.null(weights)) rep(1, nrow(d)) else d[[weights]]
  d$w_ <- w
  d$arm <- interaction(d$la, d$year, d$treated, drop = TRUE)
  gam <- coef(lm(y ~ age + arm, d, weights = w_))[["age"]]
  d$r <- d$y - gam * d$age
  gl <- sort(unique(d$la))
  tl <- sort(unique(d$year))
  G <- length(gl)
  TT <- length(tl)
  Y <- D <- V <- matrix(0, G, TT)
  num <- den <- 0
  for (a in levels(d$arm)) {
    s <- d$arm == a
    if (!any(s)) next
    rb <- weighted.mean(d$r[s], d$w_[s])
    num <- num + sum(d$w_[s] * (d$r[s] - rb)^2)
    den <- den + sum(d$w_[s]) - sum(d$w_[s]^2) / sum(d$w_[s])
  }
  s2e <- num / den
  for (g in seq_len(G)) for (t in seq_len(TT)) {
    s <- d$la == gl[g] & d$year == tl[t]
    Y[g, t] <- weighted.mean(d$r[s], d$w_[s])
    D[g, t] <- weighted.mean(d$treated[s], d$w_[s])
    V[g, t] <- s2e * sum(d$w_[s]^2) / sum(d$w_[s])^2
  }
  cells <- data.frame(Y = c(Y), D = c(D), g = factor(rep(seq_len(G), TT)),
                      t = factor(rep(seq_len(TT), each = G)))
  est <- coef(lm(Y ~ D + g + t, cells))[["D"]]
  # brute-force model covariance and expectations (cells g-fastest)
  M <- diag(G * TT) - qr.Q(qr(model.matrix(~ g + t, cells))) %*%
    t(qr.Q(qr(model.matrix(~ g + t, cells))))
  k <- ifelse(rowSums(D) > 0, k_treated, 1)
  Sig <- function(rho, s2v) {
    S <- matrix(0, G * TT, G * TT)
    for (i in seq_len(G * TT)) for (j in seq_len(G * TT)) {
      gi <- (i - 1) %% G; gj <- (j - 1) %% G
      ti <- (i - 1) %/% G; tj <- (j - 1) %/% G
      if (gi == gj) S[i, j] <- s2v * k[gi + 1] * rho^abs(ti - tj)
    }
    S + diag(c(V))
  }
  L1 <- matrix(0, G * TT, G * TT)
  for (i in seq_len(G * TT)) if (i > G) L1[i, i - G] <- 1
  u <- M %*% c(Y)
  m0 <- sum(u^2)
  m1 <- drop(t(u) %*% L1 %*% u)
  E0 <- function(rho, s2v) sum(diag(M %*% Sig(rho, s2v)))
  E1 <- function(rho, s2v) sum(diag(L1 %*% M %*% Sig(rho, s2v) %*% M))
  s2v_of <- function(rho) (m0 - E0(rho, 0)) / (E0(rho, 1) - E0(rho, 0))
  rho <- uniroot(function(r) E1(r, s2v_of(r)) - m1, c(-0.98, 0.98))$root
  s2v <- s2v_of(rho)
  cvec <- qr.coef(qr(cbind(c(D), model.matrix(~ g + t, cells))), diag(G * TT))[1, ]
  se <- sqrt(drop(t(cvec) %*% Sig(rho, s2v) %*% cvec))
  list(estimate = est, s2e = s2e, rho = rho, s2v = s2v, se = se, Y = Y, D = D, V = V,
       cvec = cvec, Sig = Sig, M = M, L1 = L1, E0 = E0, E1 = E1)
}

test_that("few_treated_test equals a plain-R reference: cells, moments, estimate and SE", {
  d <- ft_data(seed = 2)
  for (wt in list(NULL, "w")) {
    ref <- ft_ref(d, wt)
    f <- few_treated_test(y ~ treated + age, d, "la", "year", weights = wt, B = 99,
                          conf_int = FALSE)
    expect_equal(f$cells$y, ref$Y, tolerance = 1e-10, ignore_attr = TRUE)
    expect_equal(f$cells$treated, ref$D, tolerance = 1e-12, ignore_attr = TRUE)
    expect_equal(f$cells$noise_var, ref$V, tolerance = 1e-10, ignore_attr = TRUE)
    expect_equal(f$sigma2[["e"]], ref$s2e, tolerance = 1e-10)
    expect_equal(f$estimate, ref$estimate, tolerance = 1e-10)
    expect_equal(f$rho, ref$rho, tolerance = 1e-4)
    expect_equal(f$sigma2[["v"]], ref$s2v, tolerance = 1e-3)
    expect_equal(f$std.error, ref$se, tolerance = 1e-3)
  }
  expect_equal(f$n_treated, 1L)
  expect_equal(sum(f$cells$treated > 0 & f$cells$treated < 1), 1L)  # the go-live year is split
  # the treated authority's shock variance 3 times the comparators'
  ref <- ft_ref(d, "w", k_treated = 3)
  f3 <- few_treated_test(y ~ treated + age, d, "la", "year", weights = "w", B = 99,
                         conf_int = FALSE, shock_ratio = 3)
  expect_equal(f3$rho, ref$rho, tolerance = 1e-4)
  expect_equal(f3$sigma2[["v"]], ref$s2v, tolerance = 1e-3)
  expect_equal(f3$std.error, ref$se, tolerance = 1e-3)
  expect_gt(f3$std.error, f$std.error)
  expect_output(print(f3), "treated authorities x 3")
})

test_that("few_treated_test's bootstrap equals a plain-R loop over the same draws", {
  d <- ft_data(G = 7, treated = 2, seed = 3)
  B <- 49
  f <- few_treated_test(y ~ treated + age, d, "la", "year", B = B, seed = 5, conf_int = FALSE)
  ref <- ft_ref(d)
  G <- 7
  TT <- 6
  set.seed(5)
  Z <- array(rnorm(B * G * TT), c(B, G, TT))
  E <- matrix(rnorm(B * G * TT), B, G * TT)
  L <- chol(toeplitz(f$rho^(0:(TT - 1))))
  tstar <- numeric(B)
  for (b in seq_len(B)) {
    U <- matrix(0, G, TT)
    for (g in seq_len(G)) U[g, ] <- sqrt(f$sigma2[["v"]]) * drop(Z[b, g, ] %*% L)
    U <- U + matrix(E[b, ], G, TT) * sqrt(ref$V)
    u <- ref$M %*% c(U)
    m0 <- sum(u^2)
    m1 <- drop(t(u) %*% ref$L1 %*% u)
    s2v_of <- function(r) max(0, (m0 - ref$E0(r, 0)) / (ref$E0(r, 1) - ref$E0(r, 0)))
    h <- function(r) ref$E1(r, s2v_of(r)) - m1
    rho <- if (m0 <= ref$E0(0, 0)) 0 else if (h(-0.98) * h(0.98) > 0) {
      if (abs(h(-0.98)) < abs(h(0.98))) -0.98 else 0.98
    } else uniroot(h, c(-0.98, 0.98))$root
    se <- sqrt(drop(t(ref$cvec) %*% ref$Sig(rho, s2v_of(rho)) %*% ref$cvec))
    tstar[b] <- sum(ref$cvec * c(U)) / se
  }
  p_ref <- (1 + sum(abs(tstar) >= abs(f$statistic))) / (B + 1)
  expect_equal(f$p_value, p_ref)
  expect_equal(f$statistic, f$estimate / f$std.error)
})

test_that("few_treated_test: invariances and a known effect", {
  d <- ft_data(seed = 4)
  a <- few_treated_test(y ~ treated + age, d, "la", "year", B = 199, seed = 2)
  d2 <- d
  d2$y <- 3 + d2$y + 0.7 * match(d2$la, unique(d2$la)) - 0.2 * d2$year   # absorbed
  b <- few_treated_test(y ~ treated + age, d2, "la", "year", B = 199, seed = 2)
  expect_equal(b$estimate, a$estimate, tolerance = 1e-10)
  expect_equal(b$p_value, a$p_value)
  expect_equal(b$conf_int, a$conf_int, tolerance = 1e-6)
  d3 <- d
  d3$y <- 10 * d3$y
  s <- few_treated_test(y ~ treated + age, d3, "la", "year", B = 199, seed = 2)
  expect_equal(s$estimate, 10 * a$estimate, tolerance = 1e-10)
  expect_equal(s$statistic, a$statistic, tolerance = 1e-8)
  expect_equal(s$p_value, a$p_value)
  o <- few_treated_test(y ~ treated + age, d[sample(nrow(d)), ], "la", "year", B = 199, seed = 2)
  expect_equal(o$estimate, a$estimate, tolerance = 1e-10)
  expect_equal(o$p_value, a$p_value)
  # the interval holds the estimate
  expect_true(a$conf_int[1] < a$estimate && a$estimate < a$conf_int[2])
  # a large effect is found
  e <- few_treated_test(y ~ treated + age, ft_data(seed = 4, effect = 1.5, n = 60), "la", "year",
                        B = 199, seed = 2)
  expect_lt(e$p_value, 0.05)
  expect_true(e$conf_int[1] < 1.5 && 1.5 < e$conf_int[2])
  expect_output(print(a), "6 authorities \\(1 treated\\) x 6 periods")
  td <- tidy.sfp_few_treated(a)
  expect_equal(c(td$estimate, td$p.value, td$conf.low, td$conf.high),
               c(a$estimate, a$p_value, a$conf_int))
  expect_equal(glance.sfp_few_treated(a)$n_treated, 1L)
})

# The interval's own expanding-and-bisection loop, as it was before it went
# through invert_test() (#13): the reference for the shared test inversion.
few_treated_ci_loop <- function(pfun, est, se, alpha) {
  if (pfun(est) <= alpha) return(c(NA_real_, NA_real_))
  invert_loop_ref(pfun, est, max(se, 1e-8), alpha, expand = 40, bisect = 40, width = 1e-6 * se)
}

test_that("few_treated_test's interval through invert_test() equals the former loop (#13)", {
  # p(b0) is the p-value of the test on y - b0 * treated: the cells' outcome
  # shifts by b0 times their treated share, the draws stay the same
  for (case in list(list(seed = 4, treated = 1, G = 6), list(seed = 5, treated = 2, G = 7))) {
    d <- ft_data(seed = case$seed, treated = case$treated, G = case$G)
    a <- few_treated_test(y ~ treated + age, d, "la", "year", B = 99, seed = 2)
    pfun <- function(b0) {
      d$y <- d$y - b0 * d$treated
      few_treated_test(y ~ treated + age, d, "la", "year", B = 99, seed = 2,
                       conf_int = FALSE)$p_value
    }
    expect_equal(pfun(0), a$p_value)
    old <- few_treated_ci_loop(pfun, a$estimate, a$std.error, 0.05)
    expect_true(all(is.finite(old)))
    # each end is a jump of the p-value, found to 1e-6 SE by both bisections
    expect_lte(max(abs(a$conf_int - old)), 2e-6 * a$std.error)
  }
})

test_that("few_treated_test: bad input is named", {
  d <- ft_data(seed = 5)
  d$treated <- 0
  expect_error(few_treated_test(y ~ treated, d, "la", "year"), "has no treated group")
  d$treated <- as.integer(d$year >= 2020)
  expect_error(few_treated_test(y ~ treated, d, "la", "year"), "has no untreated group")
  d <- ft_data(seed = 5)
  d$size <- match(d$la, unique(d$la))
  expect_error(few_treated_test(y ~ treated + size, d, "la", "year"),
               "constant within cells besides the treatment: `size`")
  expect_error(few_treated_test(y ~ treated, d, "la", "year", B = 5), "`B` must be")
  expect_error(few_treated_test(y ~ treated, d, "la", "year", shock_ratio = 0), "`shock_ratio`")
  d$treated <- as.integer(d$la == "LA1")                 # treated in every period
  expect_error(few_treated_test(y ~ treated, d, "la", "year"),
               "collinear with the authority and period effects")
  expect_error(few_treated_test(y ~ treated, d[!(d$la == "LA2" & d$year == 2018), ], "la", "year"),
               "panel is unbalanced")
  d$w[1:3] <- -1
  expect_error(few_treated_test(y ~ treated, d, "la", "year", weights = "w"),
               "3 rows with a missing, infinite or negative weight \\(rows 1, 2, 3\\)")
})

test_that("did_fit() and wild_boot() warn below the treated clusters their size needs", {
  d <- ft_data(seed = 6)
  expect_warning(f <- suppressMessages(did_fit(y ~ treated + age | la + year, d, cluster = ~la,
                                               family = "gaussian")),
                 class = "sfpceval_few_treated")
  expect_equal(f$n_treated_clusters, 1L)
  f1 <- suppressWarnings(update(f, vcov = "CR1"))
  expect_warning(wild_boot(f1, "treated", B = 99, seed = 1, conf_int = FALSE),
                 "1 treated cluster of 6: the wild cluster bootstrap \\(webb weights\\)")
  d2 <- ft_data(G = 7, treated = 2, seed = 6)
  expect_warning(f2 <- suppressMessages(did_fit(y ~ treated + age | la + year, d2, cluster = ~la,
                                                family = "gaussian")),
                 "2 treated clusters of 7: cluster-robust t-tests \\(CR2\\) do not hold")
  f2 <- suppressWarnings(update(f2, vcov = "CR1"))
  expect_no_warning(wild_boot(f2, "treated", B = 99, seed = 1, conf_int = FALSE),
                    class = "sfpceval_few_treated")
  expect_warning(wild_boot(f2, "treated", weights = "rademacher", B = 99, seed = 1,
                           conf_int = FALSE), class = "sfpceval_few_treated")
  # three treated: silent
  d3 <- ft_data(G = 8, treated = 2, seed = 7)
  d3$treated[d3$la == "LA3" & d3$year >= 2021] <- 1L
  expect_no_warning(suppressMessages(did_fit(y ~ treated + age | la + year, d3, cluster = ~la,
                                             family = "gaussian")),
                    class = "sfpceval_few_treated")
})

test_that("a group, period or formula column missing in every row is named, not `data`", {
  d <- ft_data(n = 4, seed = 2)
  # the group column: logical NA (as read from an empty column) and character NA
  for (na in list(NA, NA_character_)) {
    d$la_na <- na
    expect_error(few_treated_test(y ~ treated, d, "la_na", "year", B = 19),
                 "Table `data`, column `la_na`: .*the `group` column is missing in every row")
    expect_error(fgls_bcj(y ~ treated, d, "la_na", "year"),
                 "Table `data`, column `la_na`: .*the `group` column is missing in every row")
  }
  d$year_na <- NA_integer_
  expect_error(few_treated_test(y ~ treated, d, "la", "year_na", B = 19),
               "column `year_na`: .*the `time` column is missing in every row")
  d$y_na <- NA_real_
  expect_error(few_treated_test(y_na ~ treated, d, "la", "year", B = 19),
               "column `y_na`: .*this variable of the formula is missing in every row")
  # a column missing in some rows only is left out with a count, as before
  d$la_part <- d$la
  d$la_part[1:2] <- NA
  expect_warning(r <- few_treated_test(y ~ treated, d, "la_part", "year", B = 19, conf_int = FALSE),
                 "2 rows with a missing value in the outcome, a regressor, the group or the period, left out")
  expect_identical(r$n_dropped, 2L)
  expect_snapshot(error = TRUE, few_treated_test(y ~ treated, transform(d, la = NA), "la", "year"))
})
