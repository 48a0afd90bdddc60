# wild_boot(): WCR p-values under full enumeration against a plain-R loop
# that refits lm() with dummies under H0 for every weight vector.

make_wb <- function(n = 150, G = 5, seed = 3) {
  set.seed(seed)
  d <- data.frame(la = sample(letters[seq_len(G)], n, TRUE), year = sample(2015:2018, n, TRUE),
                  stringsAsFactors = FALSE)
  d$treated <- as.integer(d$la %in% c("a", "b") & d$year >= 2017)
  d$x <- rnorm(n)
  d$w <- runif(n, 0.5, 2)
  d$y <- 0.2 * d$treated + 0.3 * d$x + rnorm(n)
  d
}

# All weight vectors in the order wild_boot() enumerates them (first cluster
# fastest): Rademacher digit 0 -> +1, 1 -> -1; Webb digits 0..5.
enum_weights <- function(G, type) {
  vals <- if (type == "rademacher") c(1, -1) else
    c(-sqrt(3 / 2), -1, -sqrt(1 / 2), sqrt(1 / 2), 1, sqrt(3 / 2))
  as.matrix(expand.grid(rep(list(vals), G)))
}

# The plain loop: y* = restricted fit + v_g * restricted residual, refit
# lm() with dummies, CR1 t-statistic computed by hand.
loop_wcr <- function(d, fml, r0, V, wt) {
  X <- model.matrix(fml, d)
  j <- match("treated", colnames(X))
  w <- if (wt) d$w else rep(1, nrow(d))
  cl <- as.integer(factor(d$la))
  G <- max(cl)
  fit_t <- function(yy) {
    m <- lm.wfit(X, yy, w)
    M <- chol2inv(m$qr$qr[seq_len(m$rank), seq_len(m$rank)])
    piv <- m$qr$pivot[seq_len(m$rank)]
    Xk <- X[, piv]
    jj <- match(j, piv)
    s <- rowsum(Xk * (w * m$residuals), cl)
    V1 <- G / (G - 1) * (nrow(d) - 1) / (nrow(d) - m$rank) * M %*% crossprod(s) %*% M
    (m$coefficients[j] - r0) / sqrt(V1[jj, jj])
  }
  mr <- lm.wfit(X[, -j], d$y - r0 * X[, j], w)
  fr <- mr$fitted.values + r0 * X[, j]
  ur <- mr$residuals
  list(t = fit_t(d$y), tstar = apply(V, 1, function(v) fit_t(fr + v[cl] * ur)))
}

test_that("WCR p-values under full enumeration equal the plain-R loop", {
  d <- make_wb()
  fml <- ~ factor(la) + factor(year) + treated + x
  for (wt in c(FALSE, TRUE)) {
    for (type in c("rademacher", "webb")) {
      G <- 5
      if (type == "webb") {
        d4 <- d[d$la != "e", ]           # 6^4 = 1296 refits keep the loop fast
        G <- 4
      } else {
        d4 <- d
      }
      f <- did_fit(y ~ treated + x | la + year, d4, cluster = ~la, weights = if (wt) d4$w else NULL,
                   vcov = "CR1")
      for (r0 in c(0, 0.15)) {
        wb <- wild_boot(f, "treated", weights = type, r = r0)
        ref <- loop_wcr(d4, fml, r0, enum_weights(G, type), wt)
        expect_equal(wb$B, nrow(enum_weights(G, type)))
        expect_true(wb$enumerated)
        expect_equal(wb$statistic, unname(ref$t), tolerance = 1e-9)
        expect_equal(wb$tstar, unname(ref$tstar), tolerance = 1e-8)
        tol <- 1e-8 * max(1, abs(ref$t))
        expect_equal(wb$p_value, mean(abs(ref$tstar) > abs(ref$t) + tol))
        expect_equal(wb$p_value_geq, mean(abs(ref$tstar) >= abs(ref$t) - tol))
      }
    }
  }
})

test_that("observed t equals the CR1 t of did_fit(); v = 1 reproduces it", {
  d <- make_wb()
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1")
  wb <- wild_boot(f, "treated", weights = "rademacher")
  expect_equal(wb$statistic, unname(coef(f)["treated"] / sqrt(vcov(f)["treated", "treated"])))
  expect_equal(wb$tstar[1], wb$statistic)          # first enumerated vector is all +1
  expect_equal(wb$tstar[32], -wb$statistic)        # and the last all -1
})

test_that("the confidence interval inverts the strict-inequality test", {
  d <- make_wb(n = 200, G = 6, seed = 5)
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1")
  wb <- wild_boot(f, "treated", weights = "webb", level = 0.9)
  ci <- wb$conf_int
  expect_true(ci[1] < wb$estimate && wb$estimate < ci[2])
  eps <- 1e-6 * wb$std.error
  expect_gte(wild_boot(f, "treated", r = ci[1] + eps)$p_value, 0.1)
  expect_lt(wild_boot(f, "treated", r = ci[1] - eps)$p_value, 0.1)
  expect_gte(wild_boot(f, "treated", r = ci[2] - eps)$p_value, 0.1)
  expect_lt(wild_boot(f, "treated", r = ci[2] + eps)$p_value, 0.1)
})

test_that("few distinct draws are reported (Rademacher with G = 5)", {
  d <- make_wb()
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1")
  wb <- wild_boot(f, "treated", weights = "rademacher")
  # 2^5 = 32 draws, v and -v tie with the observed t: smallest p = 2/32
  expect_equal(wb$p_min, 2 / 32)
  expect_gte(wb$p_value_geq, 2 / 32)
  expect_match(wb$note, "smallest attainable")
  expect_output(print(wb), "Note")
  expect_null(wild_boot(f, "treated", weights = "webb")$note)
})

test_that("random draws are reproducible with a seed and leave the RNG alone", {
  d <- make_wb()
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1")
  set.seed(42)
  before <- .Random.seed
  a <- wild_boot(f, "treated", weights = "mammen", B = 499, seed = 1)
  expect_identical(.Random.seed, before)
  b <- wild_boot(f, "treated", weights = "mammen", B = 499, seed = 1)
  expect_identical(a$tstar, b$tstar)
  expect_false(a$enumerated)
  expect_equal(a$B, 499)
  # the same draws through the plain loop
  set.seed(1)
  V <- t(.Call(sfpceval:::ffi_boot_weights, 5L, 3L, 499L, FALSE))
  ref <- loop_wcr(d, ~ factor(la) + factor(year) + treated + x, 0, V, FALSE)
  expect_equal(a$tstar, unname(ref$tstar), tolerance = 1e-8)
  # Mammen weights have mean 0 and variance 1
  phi <- (1 + sqrt(5)) / 2
  expect_setequal(unique(round(as.vector(V), 12)), round(c(1 - phi, phi), 12))
  expect_snapshot(wild_boot(f, "treated", weights = "webb", B = "enumerate", seed = 1)$B)
  d7 <- make_wb(n = 210, G = 7)
  f7 <- did_fit(y ~ treated + x | la + year, d7, cluster = ~la, vcov = "CR1")
  expect_snapshot(w7 <- wild_boot(f7, "treated", weights = "webb", seed = 2))
  expect_equal(w7$B, 9999)
})

test_that("score bootstrap for the logit equals a plain-R computation", {
  set.seed(12)
  n <- 500
  d <- data.frame(la = sample(letters[1:5], n, TRUE), year = sample(2015:2018, n, TRUE))
  d$treated <- as.integer(d$la %in% c("a", "b") & d$year >= 2017)
  d$x <- rnorm(n)
  d$y <- rbinom(n, 1, plogis(-2 + 0.3 * d$treated + 0.5 * d$x))
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "binomial", vcov = "CR1")
  wb <- wild_boot(f, "treated", weights = "rademacher")
  # restricted ML with treated fixed at 0, via glm
  g <- glm(y ~ x + factor(la) + factor(year), binomial, d, control = glm.control(epsilon = 1e-14))
  X <- model.matrix(~ treated + x + factor(la) + factor(year), d)
  mu <- fitted(g)
  S <- rowsum(X * (d$y - mu), d$la)
  H <- crossprod(X, (mu * (1 - mu)) * X)
  a <- drop(S %*% solve(H)[, "treated"])
  pig <- as.vector(table(d$la)) / n
  V <- enum_weights(5, "rademacher")
  tst <- apply(V, 1, function(v) sum(v * a) / sqrt(sum((v * a - pig * sum(v * a))^2)))
  t0 <- sum(a) / sqrt(sum((a - pig * sum(a))^2))
  expect_equal(wb$statistic, t0, tolerance = 1e-7)
  expect_equal(wb$tstar, unname(tst), tolerance = 1e-7)
  expect_equal(wb$p_value_geq, mean(abs(tst) >= abs(t0) - 1e-8 * max(1, abs(t0))))
})

test_that("the score bootstrap warns (once) when a restricted fit did not converge", {
  set.seed(12)
  n <- 500
  d <- data.frame(la = sample(letters[1:5], n, TRUE), year = sample(2015:2018, n, TRUE))
  d$treated <- as.integer(d$la %in% c("a", "b") & d$year >= 2017)
  d$x <- rnorm(n)
  d$y <- rbinom(n, 1, plogis(-2 + 0.3 * d$treated + 0.5 * d$x))
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "binomial", vcov = "CR1")
  expect_no_warning(suppressWarnings(wild_boot(f, "treated", weights = "rademacher", conf_int = FALSE),
                                     classes = "sfpceval_few_treated"))
  # restricted fits whose fixed-effect absorption stops after one sweep
  f$ctrl$maxit <- 1L
  f$ctrl$tol <- 1e-14
  warns <- character(0)
  withCallingHandlers(wild_boot(f, "treated", weights = "rademacher", conf_int = FALSE),
                      warning = function(w) {
                        warns <<- c(warns, conditionMessage(w))
                        invokeRestart("muffleWarning")
                      })
  nc <- grep("did not converge", warns, value = TRUE)
  expect_length(nc, 1L)
  expect_match(nc, "restricted", fixed = TRUE)
})

test_that("bad input to wild_boot() gives clear errors (snapshots)", {
  d <- make_wb()
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1")
  expect_snapshot(error = TRUE, wild_boot(f, "treatment"))
  expect_snapshot(error = TRUE, wild_boot(f, "treated", B = -5))
  expect_snapshot(error = TRUE, wild_boot(f, "treated", weights = "normal"))
  expect_snapshot(error = TRUE, wild_boot(f, "treated", level = 2))
  expect_snapshot(error = TRUE, wild_boot(lm(y ~ x, d)))
})

test_that("score bootstrap for the conditional logit equals a plain-R computation", {
  set.seed(13)
  n <- 500
  d <- data.frame(la = sample(letters[1:5], n, TRUE), year = sample(2015:2018, n, TRUE))
  d$treated <- as.integer(d$la %in% c("a", "b") & d$year >= 2017)
  d$x <- rnorm(n)
  d$y <- rbinom(n, 1, plogis(-1 + 0.3 * d$treated + 0.5 * d$x))
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "conditional_logit", vcov = "CR1")
  # the fit keeps the covariates and the fixed-effect codes, not the n x K
  # design with the year dummies; the design rebuilt from them is the one fitted
  expect_null(f$clogit$Z)
  expect_equal(colnames(f$clogit$X), c("treated", "x"))
  Zref <- cbind(model.matrix(~ treated + x + factor(year), d)[, -1])
  expect_equal(unname(clogit_design(f$clogit)), unname(Zref[f$clogit$rows, ]))
  wb <- wild_boot(f, "treated", weights = "rademacher", conf_int = FALSE)
  # restricted Breslow conditional logit (treated = 0), Newton written out
  Z <- model.matrix(~ treated + x + factor(year), d)[, -1]
  s <- as.integer(factor(d$la))
  ll_parts <- function(b) {
    eta <- drop(Z %*% b)
    ew <- exp(eta)
    p <- ew / ave(ew, s, FUN = sum)
    dS <- ave(d$y, s, FUN = sum)
    Zbar <- apply(Z, 2, function(z) ave(p * z, s, FUN = sum))
    list(p = p, dS = dS, Zbar = Zbar)
  }
  b <- rep(0, ncol(Z))
  for (it in 1:50) {
    q <- ll_parts(b)
    Zc <- Z - q$Zbar
    g <- colSums((d$y - q$dS * q$p) * Z)
    H <- crossprod(Zc, (q$p * q$dS) * Zc)
    free <- -1
    b[free] <- b[free] + solve(H[free, free], g[free])
  }
  q <- ll_parts(b)
  Zc <- Z - q$Zbar
  S <- rowsum((d$y - q$dS * q$p) * Zc, d$la)
  H <- crossprod(Zc, (q$p * q$dS) * Zc)
  a <- drop(S %*% solve(H)[, 1])
  pig <- as.vector(table(d$la)) / n
  V <- enum_weights(5, "rademacher")
  tst <- apply(V, 1, function(v) sum(v * a) / sqrt(sum((v * a - pig * sum(v * a))^2)))
  t0 <- sum(a) / sqrt(sum((a - pig * sum(a))^2))
  expect_equal(wb$statistic, t0, tolerance = 1e-7)
  expect_equal(wb$tstar, unname(tst), tolerance = 1e-7)
})

test_that("score bootstrap confidence interval inverts the test (logit and conditional logit)", {
  set.seed(14)
  n <- 600
  d <- data.frame(la = sample(letters[1:8], n, TRUE), year = sample(2015:2018, n, TRUE))
  d$treated <- as.integer(d$la %in% c("a", "b", "c", "d") & d$year >= 2017)
  d$x <- rnorm(n)
  d$y <- rbinom(n, 1, plogis(-1 + 0.5 * d$treated + 0.5 * d$x + as.integer(factor(d$la)) / 8))
  for (fam in c("binomial", "conditional_logit")) {
    f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = fam, vcov = "CR1")
    wb <- wild_boot(f, "treated", weights = "rademacher", level = 0.9)
    ci <- wb$conf_int
    b <- unname(coef(f)["treated"])
    expect_true(all(is.finite(ci)) && ci[1] < b && b < ci[2])
    se <- sqrt(vcov(f)[1, 1])
    # just inside each limit the test does not reject at 10%, just outside it does
    p_at <- function(r) wild_boot(f, "treated", weights = "rademacher", r = r, conf_int = FALSE)$p_value
    expect_gte(p_at(ci[1] + 1e-4 * se), 0.1)
    expect_lt(p_at(ci[1] - 1e-4 * se), 0.1)
    expect_gte(p_at(ci[2] - 1e-4 * se), 0.1)
    expect_lt(p_at(ci[2] + 1e-4 * se), 0.1)
  }
})

test_that("wild_boot(seed =) uses with_seed(): the caller's generator and state are untouched", {
  d <- make_wb()
  # (two treated clusters of five: the few-treated warning is not the point here)
  wild_boot <- function(...) suppressWarnings(sfpceval::wild_boot(...), classes = "sfpceval_few_treated")
  f <- suppressWarnings(did_fit(y ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1"),
                        classes = "sfpceval_few_treated")
  a <- wild_boot(f, "treated", weights = "mammen", B = 199, seed = 7, conf_int = FALSE)
  # under another generator the draws are the same, and the generator is given back
  old_kind <- RNGkind()
  on.exit(RNGkind(old_kind[1], old_kind[2], old_kind[3]), add = TRUE)
  RNGkind("L'Ecuyer-CMRG", "Box-Muller", "Rounding") |> suppressWarnings()
  set.seed(3)
  before <- .Random.seed
  b <- wild_boot(f, "treated", weights = "mammen", B = 199, seed = 7, conf_int = FALSE)
  expect_identical(.Random.seed, before)
  expect_identical(RNGkind(), c("L'Ecuyer-CMRG", "Box-Muller", "Rounding"))
  expect_identical(b$tstar, a$tstar)
  RNGkind(old_kind[1], old_kind[2], old_kind[3])
  # a session that has drawn no random number yet still has none afterwards
  if (exists(".Random.seed", globalenv())) {
    saved <- get(".Random.seed", globalenv())
    rm(".Random.seed", envir = globalenv())
    on.exit(assign(".Random.seed", saved, envir = globalenv()), add = TRUE)
  }
  c2 <- wild_boot(f, "treated", weights = "mammen", B = 199, seed = 7, conf_int = FALSE)
  expect_false(exists(".Random.seed", globalenv()))
  expect_identical(c2$tstar, a$tstar)
  # without a seed the draws come from (and advance) the caller's stream
  set.seed(7)
  d1 <- wild_boot(f, "treated", weights = "mammen", B = 199, conf_int = FALSE)
  expect_identical(d1$tstar, a$tstar)
  # a seed or B that is not a whole number is refused, not truncated
  expect_error(wild_boot(f, "treated", weights = "mammen", B = 199, seed = 2.5),
               "`seed` must be one whole number, not numeric `2.5`")
  expect_error(wild_boot(f, "treated", weights = "mammen", B = 99.5, seed = 1),
               "`B` must be \"enumerate\" or a whole number of draws of at least 1, not numeric `99.5`")
})

test_that("invert_test(): a z-test inverts to beta -/+ z se; steps, strictness and unbounded sides", {
  beta <- 0.3
  se <- 0.2
  pv <- function(r) 2 * pnorm(-abs(beta - r) / se)
  z <- qnorm(0.975)
  for (step in c(2 * se, se, 10 * se, 0.01 * se)) {
    ci <- invert_test(pv, beta, se, 0.05, rel = 1e-10, step = step)
    expect_equal(ci, beta + c(-1, 1) * z * se, tolerance = 1e-8)
  }
  # a p-value with a flat top at alpha: ">=" accepts it, ">" does not
  flat <- function(r) if (abs(r - beta) <= se) 0.05 else 0.01
  expect_equal(invert_test(flat, beta, se, 0.05, rel = 1e-10), beta + c(-1, 1) * se, tolerance = 1e-8)
  expect_identical(invert_test(flat, beta, se, 0.05, strict = TRUE), c(NA_real_, NA_real_))
  # never rejected on the right: NA by default, Inf when asked
  half <- function(r) if (r < beta - se) 0 else 1
  expect_equal(invert_test(half, beta, se, 0.05, rel = 1e-10)[1], beta - se, tolerance = 1e-8)
  expect_identical(invert_test(half, beta, se, 0.05)[2], NA_real_)
  expect_identical(invert_test(half, beta, se, 0.05, unbounded = Inf, max_double = 10)[2], Inf)
  # nothing to invert
  expect_identical(invert_test(pv, beta, 0, 0.05), c(NA_real_, NA_real_))
  expect_identical(invert_test(pv, NA_real_, se, 0.05), c(NA_real_, NA_real_))
})

test_that("invert_test() tests the last doubled width before calling a side unbounded", {
  # steps 1, 2, 4 accepted; the last doubled width, 8, is rejected: the
  # limits are +-5 (accepted up to 5), not unbounded
  pv <- function(r) as.numeric(abs(r) <= 5)
  ci <- sfpceval:::invert_test(pv, 0, 0.5, 0.5, max_double = 3, step = 1, unbounded = Inf)
  expect_equal(ci, c(-5, 5), tolerance = 1e-5)
  # accepted everywhere: unbounded after max_double doublings
  ci2 <- sfpceval:::invert_test(function(r) 1, 0, 0.5, 0.5, max_double = 3, step = 1, unbounded = Inf)
  expect_identical(ci2, c(-Inf, Inf))
})

# logit and conditional logit fits for the warm-start tests (#13, #14)
warm_data <- function(seed, n, G) {
  set.seed(seed)
  d <- data.frame(la = sample(letters[seq_len(G)], n, TRUE), year = sample(2015:2018, n, TRUE))
  d$treated <- as.integer(d$la %in% letters[seq_len(G / 2)] & d$year >= 2017)
  d$x <- rnorm(n)
  d$z <- sample(c("p", "q", "s"), n, TRUE)
  d$y <- rbinom(n, 1, plogis(-1.5 + 0.4 * d$treated + 0.5 * d$x + 0.3 * (d$z == "q")))
  d
}

test_that("logit score bootstrap: tangent warm starts give the cold refits' a_g(r), p(r) and interval (#13, #14)", {
  d <- warm_data(21, 800, 6)
  f <- suppressWarnings(did_fit(y ~ treated + x + z | la + year, d, cluster = ~la, family = "binomial",
                                vcov = "CR1"))
  V <- boot_draws(6L, "webb", "enumerate", NULL)$V
  pig <- tabulate(f$cluster, f$n_clusters) / length(f$cluster)
  beta <- unname(f$coefficients["treated"])
  se <- sqrt(f$vcov["treated", "treated"])
  p_of <- function(a) score_boot_test(as.vector(a), pig, V, beta)$p_value
  # the tangent is d eta / dr and d coef / dr of the restricted fit (central
  # differences of cold refits)
  h <- 1e-4
  s0 <- attr(logit_score_contrib(f, "treated", 0.3), "start")
  sp <- attr(logit_score_contrib(f, "treated", 0.3 + h), "start")
  sm <- attr(logit_score_contrib(f, "treated", 0.3 - h), "start")
  expect_equal(s0$tangent, (sp$eta - sm$eta) / (2 * h), tolerance = 1e-6)
  expect_equal(s0$dcoef, unname((sp$coef - sm$coef) / (2 * h)), tolerance = 1e-6)
  # walking a grid of r outward from the estimate, each refit started from
  # the one before: the contributions and p(r) of a cold refit at every r
  rs <- beta + se * c(0, 0.25, 0.5, 1, 2, 3, 4, 6, -0.5, -1, -2, -4)
  # (a start at most 1 se away: at most two IRLS steps)
  start <- NULL
  its <- c(warm = 0, cold = 0)
  for (r in rs) {
    a_warm <- logit_score_contrib(f, "treated", r, start = start)
    a_cold <- logit_score_contrib(f, "treated", r)
    expect_equal(as.vector(a_warm), as.vector(a_cold), tolerance = 1e-8)
    expect_identical(p_of(a_warm), p_of(a_cold))
    its <- its + c(attr(a_warm, "convergence")$iterations, attr(a_cold, "convergence")$iterations)
    if (!is.null(start) && abs(r - start$r) <= se) expect_lte(attr(a_warm, "convergence")$iterations, 2L)
    start <- attr(a_warm, "start")
  }
  expect_lt(its[["warm"]], its[["cold"]])
  # near the start one IRLS step; moving the offset alone takes more
  s1 <- attr(logit_score_contrib(f, "treated", 0.5), "start")
  one <- logit_score_contrib(f, "treated", 0.5 + 0.01 * se, start = s1)
  offset_only <- logit_score_contrib(f, "treated", 0.5 + 0.01 * se, start = s1[c("r", "eta")])
  expect_identical(attr(one, "convergence")$iterations, 1L)
  expect_gt(attr(offset_only, "convergence")$iterations, 1L)
  expect_equal(as.vector(one), as.vector(offset_only), tolerance = 1e-8)
  # the interval: wild_boot() (warm starts, lazy grid, 0.01 se brackets
  # interpolated), a refit at every r (interp = 0), and the former path
  # (a cold refit at every r, the full grid) agree to 1e-6 se
  wb <- suppressWarnings(wild_boot(f, "treated", weights = "webb"))
  n_cold <- 0L
  pv_cold <- function(r) {
    n_cold <<- n_cold + 1L
    p_of(logit_score_contrib(f, "treated", r))
  }
  ci_cold <- invert_test(pv_cold, beta, se, 0.05)
  ex <- score_boot(f, "treated", list(V = V), 0.95, 0, interp = 0)
  expect_true(all(is.finite(wb$conf_int)))
  expect_lt(max(abs(wb$conf_int - ci_cold)), 1e-6 * se)
  expect_lt(max(abs(ex$conf_int - ci_cold)), 1e-6 * se)
  expect_lt(wb$refits, ex$refits)
  # the limits invert the test: cold refits just inside accept, just outside reject
  expect_gte(pv_cold(wb$conf_int[1] + 1e-5 * se), 0.05)
  expect_lt(pv_cold(wb$conf_int[1] - 1e-5 * se), 0.05)
  expect_gte(pv_cold(wb$conf_int[2] - 1e-5 * se), 0.05)
  expect_lt(pv_cold(wb$conf_int[2] + 1e-5 * se), 0.05)
})

test_that("logit score bootstrap warm starts: CEM-type weights and a row order change give the same interval", {
  d <- warm_data(5, 900, 8)
  d$w <- sample(c(0.5, 1, 2.5), nrow(d), TRUE)
  f <- suppressWarnings(did_fit(y ~ treated + x + z | la + year, d, cluster = ~la, family = "binomial",
                                weights = d$w, vcov = "CR1"))
  V <- boot_draws(8L, "rademacher", "enumerate", NULL)$V
  pig <- tabulate(f$cluster, f$n_clusters) / length(f$cluster)
  beta <- unname(f$coefficients["treated"])
  se <- sqrt(f$vcov["treated", "treated"])
  pv_cold <- function(r) score_boot_test(as.vector(logit_score_contrib(f, "treated", r)), pig, V, beta)$p_value
  ci_cold <- invert_test(pv_cold, beta, se, 0.1)
  wb <- suppressWarnings(wild_boot(f, "treated", weights = "rademacher", level = 0.9))
  expect_true(all(is.finite(wb$conf_int)))
  expect_lt(max(abs(wb$conf_int - ci_cold)), 1e-6 * se)
  o <- sample(nrow(d))
  f2 <- suppressWarnings(did_fit(y ~ treated + x + z | la + year, d[o, ], cluster = ~la, family = "binomial",
                                 weights = d$w[o], vcov = "CR1"))
  wb2 <- suppressWarnings(wild_boot(f2, "treated", weights = "rademacher", level = 0.9))
  expect_lt(max(abs(wb2$conf_int - wb$conf_int)), 1e-6 * se)
})

test_that("conditional logit score bootstrap: tangent warm starts give the cold refits' a_g(r) and interval (#13, #14)", {
  d <- warm_data(14, 700, 8)
  f <- did_fit(y ~ treated + x + z | la + year, d, cluster = ~la, family = "conditional_logit", vcov = "CR1")
  V <- boot_draws(8L, "rademacher", "enumerate", NULL)$V
  pig <- tabulate(f$cluster, f$n_clusters) / length(f$cluster)
  beta <- unname(f$coefficients["treated"])
  se <- sqrt(f$vcov["treated", "treated"])
  p_of <- function(a) score_boot_test(as.vector(a), pig, V, beta)$p_value
  h <- 1e-4
  s0 <- attr(clogit_score_contrib(f, "treated", 0.2), "start")
  sp <- attr(clogit_score_contrib(f, "treated", 0.2 + h), "start")
  sm <- attr(clogit_score_contrib(f, "treated", 0.2 - h), "start")
  expect_equal(unname(s0$dcoef), unname((sp$coef - sm$coef) / (2 * h)), tolerance = 1e-6)
  start <- NULL
  its <- c(warm = 0, cold = 0)
  for (r in beta + se * c(0, 0.5, 1, 2, 4, -1, -3)) {
    a_warm <- clogit_score_contrib(f, "treated", r, start = start)
    a_cold <- clogit_score_contrib(f, "treated", r)
    expect_equal(as.vector(a_warm), as.vector(a_cold), tolerance = 1e-8)
    expect_identical(p_of(a_warm), p_of(a_cold))
    its <- its + c(attr(a_warm, "convergence")$iterations, attr(a_cold, "convergence")$iterations)
    start <- attr(a_warm, "start")
  }
  expect_lt(its[["warm"]], its[["cold"]])
  pv_cold <- function(r) p_of(clogit_score_contrib(f, "treated", r))
  ci_cold <- invert_test(pv_cold, beta, se, 0.1)
  wb <- wild_boot(f, "treated", weights = "rademacher", level = 0.9)
  expect_true(all(is.finite(wb$conf_int)))
  expect_lt(max(abs(wb$conf_int - ci_cold)), 1e-6 * se)
})

test_that("invert_test(lazy = TRUE) finds the limits of the full grid with fewer p(r)", {
  beta <- 0.3
  se <- 0.2
  count <- function(pv) {
    n <- 0L
    list(pv = function(r) {
      n <<- n + 1L
      pv(r)
    }, n = function() n)
  }
  z <- function(r) 2 * pnorm(-abs(beta - r) / se)
  # accepted, rejected, accepted again on the right: both stop at the first crossing
  bump <- function(r) if (r > beta + 0.7 && r < beta + 0.9) 0.01 else z(r / 3 + 2 * beta / 3)
  for (pv in list(z, bump)) {
    a <- count(pv)
    b <- count(pv)
    full <- invert_test(a$pv, beta, se, 0.05, rel = 1e-9)
    lazy <- invert_test(b$pv, beta, se, 0.05, rel = 1e-9, lazy = TRUE)
    expect_identical(lazy, full)
    expect_lte(b$n(), a$n())
  }
  # the second crossing is beyond the first rejection of the grid: not tested
  a <- count(bump)
  b <- count(bump)
  invert_test(a$pv, beta, se, 0.05)
  invert_test(b$pv, beta, se, 0.05, lazy = TRUE)
  expect_lt(b$n(), a$n())
  expect_equal(invert_test(bump, beta, se, 0.05, lazy = TRUE)[2], beta + 0.7, tolerance = 1e-6)
  # the grid's points up to the first rejection, NA beyond
  ok <- invert_grid_lazy(function(r) r < 0.5, seq(0, 1, by = 0.1))
  expect_identical(ok, c(rep(TRUE, 5), FALSE, rep(NA, 4), FALSE))
})

test_that("score_between() interpolates a(r) only inside narrow brackets of refits, exactly for a quadratic", {
  a_fun <- function(r) c(1 + 2 * r - 3 * r^2, -0.5 * r^2, 4)
  rs <- c(0, 0.1, 0.05, 0.075, 0.0625)
  got <- list(r = rs, a = lapply(rs, a_fun))
  # bracket [0.0625, 0.075] (0.0125 wide) with a third refit near: exact for a quadratic
  expect_equal(score_between(got, 0.07, 0.02), a_fun(0.07), tolerance = 1e-12)
  # a refit point itself
  expect_identical(score_between(got, 0.075, 0.02), a_fun(0.075))
  # bracket wider than h, or outside the refits: NULL (a refit is needed)
  expect_null(score_between(got, 0.07, 0.01))
  expect_null(score_between(got, 0.2, 0.5))
  expect_null(score_between(got, 0.07, 0))
  # no third refit within reach: the line through the bracket's ends
  got2 <- list(r = c(0, 1), a = list(a_fun(0), a_fun(1)))
  expect_equal(score_between(got2, 0.25, 1), 0.75 * a_fun(0) + 0.25 * a_fun(1))
})
