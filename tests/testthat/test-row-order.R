# Results do not depend on the order of the rows of an analysis input: each
# analysis is run on its data and on a random permutation of the rows.
# Closed-form estimators must agree to rounding (1e-10); iterative ones to
# their convergence tolerance (the permutation changes the order of sums, so
# the optimiser takes another path to the same optimum).

permute <- function(d, seed = 99) {
  set.seed(seed)
  p <- sample.int(nrow(d))
  out <- d[p, , drop = FALSE]
  rownames(out) <- NULL
  attr(out, "perm") <- p
  out
}

panel_data <- function(n = 240, seed = 3) {
  la_year_rows(n, seed, y_x = 0.3, p_count = function(x) plogis(0.2 + 0.8 * x), yb = FALSE)
}

test_that("cem() weights and imbalance() do not depend on row order", {
  set.seed(1)
  d <- data.frame(treated = rbinom(300, 1, 0.4), x = rnorm(300),
                  g = sample(c("p", "q", "r"), 300, TRUE), age = sample(0:12, 300, TRUE))
  dp <- permute(d)
  p <- attr(dp, "perm")
  a <- cem(treated ~ x + age, d, exact = "g")
  b <- cem(treated ~ x + age, dp, exact = "g")
  expect_equal(b$weights, a$weights[p], tolerance = 1e-12)
  expect_identical(b$matched, a$matched[p])
  expect_equal(imbalance(treated ~ x + age, dp)$L1, imbalance(treated ~ x + age, d)$L1,
               tolerance = 1e-12)
})

test_that("did_fit() and wild_boot() do not depend on row order", {
  d <- panel_data()
  dp <- permute(d)
  for (v in c("CR1", "CR2")) {
    a <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, weights = ~w, vcov = v)
    b <- did_fit(y ~ treated + x | la + year, dp, cluster = ~la, weights = ~w, vcov = v)
    expect_equal(coef(b), coef(a), tolerance = 1e-10)
    expect_equal(vcov(b), vcov(a), tolerance = 1e-10)
  }
  a <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1")
  b <- did_fit(y ~ treated + x | la + year, dp, cluster = ~la, vcov = "CR1")
  wa <- wild_boot(a, "treated", weights = "rademacher", conf_int = FALSE)
  wb <- wild_boot(b, "treated", weights = "rademacher", conf_int = FALSE)
  expect_equal(wb$p_value, wa$p_value, tolerance = 1e-10)
})

test_that("hurdle_fit() and tobit_fit() do not depend on row order", {
  d <- panel_data()
  dp <- permute(d)
  # Newton to a relative step of 1e-8 (the fits' default)
  a <- hurdle_fit(count ~ x | x, d, dist = "poisson", cluster = "la")
  b <- hurdle_fit(count ~ x | x, dp, dist = "poisson", cluster = "la")
  expect_equal(coef(b), coef(a), tolerance = 1e-7)
  a <- tobit_fit(days ~ x, d, left = 0, right = 300, cluster = "la")
  b <- tobit_fit(days ~ x, dp, left = 0, right = 300, cluster = "la")
  expect_equal(coef(b), coef(a), tolerance = 1e-7)
})

test_that("sw_glmm() does not depend on row order", {
  las <- c("A", "B", "C", "D", "E")
  set.seed(11)
  d <- expand.grid(child = 1:12, period = 0:5, la = las, stringsAsFactors = FALSE)
  d$treated <- as.integer(d$period >= match(d$la, las))
  d$x1 <- round(rnorm(nrow(d)), 1)
  d$y <- rbinom(nrow(d), 1, plogis(-0.8 + 0.4 * d$treated + 0.5 * d$x1 +
                                     rnorm(5, sd = 0.5)[match(d$la, las)]))
  dp <- permute(d)
  f <- y ~ treated + factor(period) + x1 + (1 | la)
  a <- sw_glmm(f, d)
  b <- sw_glmm(f, dp)
  # the optimiser stops at a relative change of about 1e-8 in the log-likelihood
  expect_equal(coef(b), coef(a), tolerance = 1e-5)
  expect_equal(as.numeric(logLik(b)), as.numeric(logLik(a)), tolerance = 1e-8)
})

test_that("build_cohort() does not depend on the row order of the input tables", {
  x <- suppressWarnings(simulate_sfp("family_safeguarding", n_la = 4,
                                     children_per_la_year = 15, seed = 3))
  end <- as.Date(attr(x, "truth")$period$end)
  xp <- x
  for (tb in intersect(sfp_tables(), names(unclass(x)))) {
    if (is.data.frame(x[[tb]]) && nrow(x[[tb]]) > 1) xp[[tb]] <- permute(x[[tb]])
  }
  a <- as.data.frame(suppressMessages(build_cohort(x, design_family_safeguarding(x, data_end = end))))
  b <- as.data.frame(suppressMessages(build_cohort(xp, design_family_safeguarding(xp, data_end = end))))
  key <- intersect(c("child_id", "referral_date"), names(a))
  a <- a[do.call(order, unname(as.list(a[key]))), ]
  b <- b[do.call(order, unname(as.list(b[key]))), ]
  rownames(a) <- rownames(b) <- NULL
  expect_gt(nrow(a), 50)
  expect_equal(b, a, ignore_attr = TRUE)
})
