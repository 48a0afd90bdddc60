# Plain-R reference: Rubin (1987) with Barnard & Rubin (1999) df, written out.
rubin_ref <- function(q, se, dfcom) {
  m <- length(q); u <- se^2
  qbar <- sum(q) / m; ubar <- sum(u) / m
  b <- sum((q - qbar)^2) / (m - 1)
  t <- ubar + b + b / m
  lam <- max((b + b / m) / t, 1e-4)
  nu_old <- (m - 1) / lam^2
  nu_obs <- if (is.finite(dfcom)) (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lam) else Inf
  nu <- if (is.finite(dfcom)) 1 / (1 / nu_old + 1 / nu_obs) else nu_old
  list(est = qbar, se = sqrt(t), df = nu)
}

test_that("pool_rubin() equals a plain-R Rubin/Barnard-Rubin computation", {
  q <- c(0.21, 0.25, 0.19, 0.23, 0.22)
  se <- c(0.05, 0.052, 0.06, 0.049, 0.051)
  for (dfcom in c(4, 30, Inf)) {
    r <- rubin_ref(q, se, dfcom)
    p <- pool_rubin(q, se, df_complete = dfcom)
    expect_equal(p$estimate, r$est)
    expect_equal(p$std.error, r$se)
    expect_equal(p$df, r$df)
    expect_equal(p$conf.high - p$estimate, stats::qt(0.975, r$df) * r$se)
    expect_equal(p$p.value, 2 * stats::pt(-abs(r$est / r$se), r$df))
  }
})

test_that("pool_rubin() equals mice::pool.scalar() and mice::pool() with dfcom", {
  skip_if_not_installed("mice")
  q <- c(-0.31, -0.22, -0.40, -0.27, -0.35, -0.29)
  se <- c(0.11, 0.12, 0.10, 0.115, 0.12, 0.11)
  for (dfcom in c(4, 100)) {
    ms <- mice::pool.scalar(q, se^2, n = dfcom + 1, k = 1)
    p <- pool_rubin(q, se, df_complete = dfcom)
    expect_equal(p$estimate, ms$qbar)
    expect_equal(p$std.error^2, ms$t)
    expect_equal(p$df, ms$df)
    expect_equal(p$riv, ms$r)
    expect_equal(p$fmi, ms$fmi)
  }
  # through mice::pool() on lm fits of imputed data
  imp <- suppressWarnings(mice::mice(mice::nhanes, m = 5, printFlag = FALSE, seed = 1))
  fits <- with(imp, lm(chl ~ bmi + age))
  mp <- summary(mice::pool(fits, dfcom = 7), conf.int = TRUE)
  est <- t(sapply(fits$analyses, coef))
  ses <- t(sapply(fits$analyses, function(f) sqrt(diag(vcov(f)))))
  p <- pool_rubin(est, ses, df_complete = 7)
  expect_equal(p$term, as.character(mp$term))
  expect_equal(p$estimate, mp$estimate)
  expect_equal(p$std.error, mp$std.error)
  expect_equal(p$df, mp$df)
  expect_equal(p$p.value, mp$p.value)
  expect_equal(p$conf.low, mp[["2.5 %"]])
})

test_that("pool_rubin(): few clusters bound the df; identical imputations give the complete-data analysis", {
  q <- c(0.2, 0.2, 0.2)
  p <- pool_rubin(q, c(0.1, 0.1, 0.1), df_complete = 4)
  expect_equal(p$estimate, 0.2)
  expect_equal(p$std.error, 0.1)
  # B = 0: lambda at its floor 1e-4; nu_old = 2 / 1e-8, nu_obs = 5/7 * 4 * (1 - 1e-4)
  expect_equal(p$df, 1 / (1e-8 / 2 + 1 / (5 / 7 * 4 * (1 - 1e-4))))
  expect_lt(p$df, 4)                        # never more than the complete-data df
  # shift invariance of everything but the estimate
  a <- pool_rubin(c(1, 2, 4), c(1, 1, 2), 4)
  b <- pool_rubin(c(1, 2, 4) + 10, c(1, 1, 2), 4)
  expect_equal(b$estimate - a$estimate, 10)
  expect_equal(b$std.error, a$std.error)
  expect_equal(b$df, a$df)
})

test_that("pool_rubin() bad input", {
  expect_snapshot(error = TRUE, pool_rubin(1, 1))
  expect_snapshot(error = TRUE, pool_rubin(c(1, 2), c(1, NA)))
  expect_snapshot(error = TRUE, pool_rubin(c(1, 2), c(1, 1, 1)))
  expect_snapshot(error = TRUE, pool_rubin(c(1, 2), c(1, 1), df_complete = 0))
})
