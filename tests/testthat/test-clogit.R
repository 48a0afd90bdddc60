# The conditional-logit DiD (did_fit(family = "conditional_logit")): the
# stratum is the first fixed effect, the further fixed effects are
# parameters computed from per-(stratum, level) sums in C (clogit.c), never a
# dummy matrix.

# A dense plain-R Breslow conditional logit: the log-likelihood, score,
# information and the per-row scores (w y - d p)(z - zbar) of design Z at b,
# strata s, weights w, offset o.
dense_clogit <- function(Z, y, w, s, b, o = 0) {
  eta <- drop(Z %*% b) + o
  ew <- w * exp(eta)
  den <- ave(ew, s, FUN = sum)
  p <- ew / den
  dS <- ave(w * y, s, FUN = sum)
  Zbar <- apply(Z, 2, function(z) ave(p * z, s, FUN = sum))
  Zc <- Z - Zbar
  first <- !duplicated(s)
  list(ll = sum(w * y * eta) - sum(dS[first] * log(den[first])),
       grad = colSums((w * y - dS * p) * Z),
       info = crossprod(Zc, (p * dS) * Zc),
       score_obs = (w * y - dS * p) * Zc)
}

dense_newton <- function(Z, y, w, s, o = 0, its = 40) {
  b <- rep(0, ncol(Z))
  for (it in seq_len(its)) {
    q <- dense_clogit(Z, y, w, s, b, o)
    b <- b + solve(q$info, q$grad)
  }
  b
}

make_clogit <- function(n = 600, seed = 21) {
  set.seed(seed)
  d <- data.frame(la = sample(letters[1:7], n, TRUE), year = sample(2015:2019, n, TRUE),
                  q = sample(1:4, n, TRUE))
  d$treated <- as.integer(d$la %in% c("a", "b", "c") & d$year >= 2017)
  d$x <- rnorm(n)
  d$age <- sample(0:17, n, TRUE)
  d$y <- rbinom(n, 1, plogis(-1.5 + 0.4 * d$treated + 0.5 * d$x + (d$year - 2017) / 5 + d$q / 6))
  d$w <- sample(c(0.5, 1, 2, 3), n, TRUE)
  d
}

test_that("ffi_clogit's log-likelihood, score, information and cluster score sums equal the dense computation", {
  d <- make_clogit()
  s <- as.integer(factor(d$la))
  fe <- list(year = factor(d$year), q = factor(d$q))
  X <- cbind(treated = d$treated, x = d$x, age = d$age)
  pr <- clogit_problem(d$y, X, d$w, s, fe)
  expect_identical(pr$L, 9L)
  # every level, references included (the kernel does not drop any)
  Z <- cbind(X, model.matrix(~ factor(year) - 1, d), model.matrix(~ factor(q) - 1, d))
  set.seed(2)
  theta <- rnorm(ncol(Z), sd = 0.3)
  o <- rnorm(nrow(d), sd = 0.2)
  g <- as.integer(factor(d$year))   # clusters that cut across the strata
  r <- clogit_eval(pr, theta, offset = o, what = 2L, cluster = g, G = 5L)
  ref <- dense_clogit(Z, d$y, d$w, s, theta, o)
  expect_equal(r$loglik, ref$ll, tolerance = 1e-12)
  expect_equal(r$grad, unname(ref$grad), tolerance = 1e-12)
  expect_equal(r$info, unname(ref$info), tolerance = 1e-12)
  expect_equal(r$scores, unname(rowsum(ref$score_obs, g)), tolerance = 1e-12)
  expect_null(clogit_eval(pr, theta, offset = o, what = 0L)$grad)
  # the rows' order does not matter
  pm <- sample(nrow(d))
  pr2 <- clogit_problem(d$y[pm], X[pm, ], d$w[pm], s[pm], lapply(fe, `[`, pm))
  r2 <- clogit_eval(pr2, theta, offset = o[pm], what = 2L, cluster = g[pm], G = 5L)
  expect_equal(r2[c("loglik", "grad", "info", "scores")], r[c("loglik", "grad", "info", "scores")],
               tolerance = 1e-12)
})

test_that("conditional logit with strata and two further fixed effects equals a dense plain-R fit", {
  d <- make_clogit()
  f <- suppressWarnings(did_fit(y ~ treated + x + age | la + year + q, d, cluster = ~la,
                                weights = ~w, family = "conditional_logit", vcov = "CR1"))
  # dense reference: year and quarter dummies without their first levels
  Z <- model.matrix(~ treated + x + age + factor(year) + factor(q), d)[, -1]
  s <- as.integer(factor(d$la))
  b <- dense_newton(Z, d$y, d$w, s)
  q <- dense_clogit(Z, d$y, d$w, s, b)
  expect_equal(f$coef_all, b, tolerance = 1e-9, ignore_attr = TRUE)
  expect_equal(coef(f), b[1:3], tolerance = 1e-9, ignore_attr = TRUE)
  M <- solve(q$info)
  expect_equal(f$vcov_model, M[1:3, 1:3], tolerance = 1e-9, ignore_attr = TRUE)
  S <- rowsum(q$score_obs, d$la)
  G <- 7
  N <- nrow(d)
  cf <- G / (G - 1) * (N - 1) / (N - ncol(Z))
  expect_equal(vcov(f), (cf * M %*% crossprod(S) %*% M)[1:3, 1:3], tolerance = 1e-8, ignore_attr = TRUE)
  expect_equal(f$K, ncol(Z))
  # the fit keeps no n x K matrix
  expect_null(f$score_obs)
  expect_identical(dim(f$score_sums), c(7L, ncol(Z)))
  expect_identical(colnames(f$clogit$X), c("treated", "x", "age"))
})

test_that("conditional logit equals survival::clogit(method = \"approximate\") with strata and further fixed effects", {
  skip_if_not_installed("survival")
  d <- make_clogit(800, seed = 5)
  # clogit() builds a call to coxph(Surv(...) ~ ...) and evaluates it here;
  # strata() must be written unqualified for coxph() to stratify
  strata <- survival::strata
  coxph <- survival::coxph
  Surv <- survival::Surv
  for (wt in c(FALSE, TRUE)) {
    f <- suppressWarnings(did_fit(y ~ treated + x + age | la + year + q, d, cluster = ~la,
                                  weights = if (wt) ~w else NULL,
                                  family = "conditional_logit", vcov = "CR0"))
    cl <- if (wt) {
      survival::clogit(y ~ treated + x + age + factor(year) + factor(q) + strata(la), d,
                       weights = w, method = "approximate", cluster = la)
    } else {
      survival::clogit(y ~ treated + x + age + factor(year) + factor(q) + strata(la), d,
                       method = "approximate", cluster = la)
    }
    # really stratified: no LA coefficient
    expect_length(coef(cl), 3 + 4 + 3)
    expect_equal(unname(f$coef_all), unname(coef(cl)), tolerance = 1e-8)
    expect_equal(f$loglik, cl$loglik[2], tolerance = 1e-10)
    expect_equal(unname(f$vcov_model), unname(cl$naive.var[1:3, 1:3]), tolerance = 1e-8)
    expect_equal(unname(vcov(f)), unname(vcov(cl)[1:3, 1:3]), tolerance = 1e-8)
  }
  # clusters that are not the strata (the robust variance sums the score
  # residuals of each cluster across strata)
  f <- suppressWarnings(did_fit(y ~ treated + x | la + year, d, cluster = ~q,
                                family = "conditional_logit", vcov = "CR0"))
  cl <- survival::clogit(y ~ treated + x + factor(year) + strata(la), d,
                         method = "approximate", cluster = q)
  expect_equal(unname(coef(f)), unname(coef(cl)[1:2]), tolerance = 1e-8)
  expect_equal(unname(vcov(f)), unname(vcov(cl)[1:2, 1:2]), tolerance = 1e-8)
})

test_that("conditional logit: levels and covariates not identified within the strata are dropped", {
  skip_if_not_installed("survival")
  d <- make_clogit(700, seed = 9)
  # LA g is only observed in 2020 and 2020 only in LA g: the 2020 effect is
  # the stratum's, so it is not identified (coxph gives NA)
  d$year[d$la == "g"] <- 2020L
  # a covariate constant within years is absorbed by the year effects; a
  # copy of the year as a second effect adds no parameter
  d$index <- (d$year - 2015)^2
  d$cohort <- d$year
  expect_message(f <- suppressWarnings(did_fit(y ~ treated + x + index | la + year + cohort, d, cluster = ~la,
                                               family = "conditional_logit", vcov = "CR0")),
                 "dropped 1 covariate collinear with the fixed effects or other covariates: `index`")
  strata <- survival::strata
  coxph <- survival::coxph
  Surv <- survival::Surv
  cl <- suppressWarnings(survival::clogit(y ~ treated + x + factor(year) + strata(la), d,
                                          method = "approximate", cluster = la))
  expect_true(is.na(coef(cl)[["factor(year)2020"]]))
  ok <- !is.na(coef(cl))
  expect_identical(unname(f$clogit$cols), c("treated", "x", paste0("fe1", 2016:2019)))
  expect_equal(unname(f$coef_all), unname(coef(cl)[ok]), tolerance = 1e-8)
  expect_equal(unname(vcov(f)), unname(vcov(cl)[1:2, 1:2]), tolerance = 1e-8)
  expect_identical(f$dropped, "index")
  # a treatment that never varies within the strata
  d$la_treated <- as.integer(d$la %in% c("a", "b"))
  expect_snapshot(error = TRUE, suppressWarnings(
    did_fit(y ~ la_treated + x | la + year, d, cluster = ~la, family = "conditional_logit")))
})

test_that("conditional logit is invariant to the order of the rows", {
  d <- make_clogit(500, seed = 3)
  fit <- function(dd) suppressWarnings(did_fit(y ~ treated + x + age | la + year + q, dd, cluster = ~la,
                                               weights = ~w, family = "conditional_logit", vcov = "CR1"))
  f1 <- fit(d)
  set.seed(4)
  f2 <- fit(d[sample(nrow(d)), ])
  expect_equal(coef(f2), coef(f1), tolerance = 1e-10)
  expect_equal(vcov(f2), vcov(f1), tolerance = 1e-10)
  expect_equal(f2$loglik, f1$loglik, tolerance = 1e-12)
  wb1 <- suppressWarnings(wild_boot(f1, "treated", weights = "rademacher", conf_int = FALSE))
  wb2 <- suppressWarnings(wild_boot(f2, "treated", weights = "rademacher", conf_int = FALSE))
  expect_equal(wb2$statistic, wb1$statistic, tolerance = 1e-9)
  expect_equal(wb2$p_value, wb1$p_value)
})

test_that("score bootstrap for the conditional logit with two further fixed effects equals the dense computation", {
  d <- make_clogit(600, seed = 12)
  f <- suppressWarnings(did_fit(y ~ treated + x | la + year + q, d, cluster = ~la,
                                family = "conditional_logit", vcov = "CR1"))
  wb <- suppressWarnings(wild_boot(f, "treated", weights = "rademacher", r = 0.1, conf_int = FALSE))
  Z <- model.matrix(~ treated + x + factor(year) + factor(q), d)[, -1]
  s <- as.integer(factor(d$la))
  w <- rep(1, nrow(d))
  # restricted fit: treated's coefficient fixed at 0.1 (an offset)
  br <- dense_newton(Z[, -1], d$y, w, s, o = 0.1 * Z[, 1])
  q <- dense_clogit(Z, d$y, w, s, c(0.1, br))
  a <- drop(rowsum(q$score_obs, d$la) %*% solve(q$info)[, 1])
  pig <- as.vector(table(d$la)) / nrow(d)
  t0 <- sum(a) / sqrt(sum((a - pig * sum(a))^2))
  expect_equal(wb$statistic, t0, tolerance = 1e-8)
})

test_that("conditional logit DiD on 1,000,000 rows with 150 LAs + 8 years: fit object < 5x the data", {
  set.seed(1)
  n <- 1e6
  d <- data.frame(la = sample.int(150, n, TRUE), year = sample.int(8, n, TRUE) + 2014L)
  d$treated <- as.integer(d$la <= 5 & d$year >= 2019)
  d$y <- rbinom(n, 1, plogis(-3.5 + 0.2 * d$treated + d$la / 300 + (d$year - 2018) / 20))
  f <- did_fit(y ~ treated | la + year, d, cluster = ~la, family = "conditional_logit", vcov = "CR1")
  expect_lt(as.numeric(object.size(f)), 5 * as.numeric(object.size(d)))
  expect_true(f$convergence$converged)
  expect_true(is.finite(f$vcov[1, 1]) && f$vcov[1, 1] > 0)
  expect_identical(dim(f$score_sums), c(150L, 8L))
  # Breslow's conditional likelihood with one event time per stratum is the
  # Poisson likelihood with the stratum's effect profiled out, so the same
  # estimate comes from the Poisson GLM with LA and year dummies on the
  # 1,200 LA x year cells
  cells <- aggregate(cbind(s = y, n = 1) ~ la + year + treated, d, sum)
  g <- glm(s ~ treated + factor(la) + factor(year) + offset(log(n)), poisson, cells,
           control = glm.control(epsilon = 1e-14))
  expect_equal(unname(coef(f)), unname(coef(g)["treated"]), tolerance = 1e-8)
})

test_that("conditional logit: a separated treatment is an error naming it, not a singular-matrix crash", {
  d <- make_clogit(600, seed = 30)
  # no event in any treated row: the treatment's coefficient diverges to -Inf
  d$y[d$treated == 1] <- 0
  # (where Newton stops on the way to -Inf depends on rounding: masked)
  expect_snapshot(error = TRUE, suppressWarnings(
    did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "conditional_logit")),
    transform = function(x) gsub("diverges \\(-?[0-9.e+]+\\)", "diverges (<value>)", x))
})

test_that("conditional logit is invariant to shifting and scaling a covariate", {
  d <- make_clogit(600, seed = 41)
  fit <- function(dd) suppressWarnings(did_fit(y ~ treated + x | la + year + q, dd, cluster = ~la,
                                               family = "conditional_logit", vcov = "CR1"))
  f0 <- fit(d)
  d2 <- d
  d2$x <- 1e4 + 1000 * d$x     # e.g. a count in days since 1970
  f2 <- fit(d2)
  expect_equal(coef(f2)[["treated"]], coef(f0)[["treated"]], tolerance = 1e-8)
  expect_equal(coef(f2)[["x"]] * 1000, coef(f0)[["x"]], tolerance = 1e-8)
  expect_equal(vcov(f2)[1, 1], vcov(f0)[1, 1], tolerance = 1e-8)
  expect_equal(vcov(f2)[2, 2] * 1000^2, vcov(f0)[2, 2], tolerance = 1e-8)
  expect_equal(f2$loglik, f0$loglik, tolerance = 1e-10)
})

test_that("conditional logit keeps a rare level of a further fixed effect", {
  skip_if_not_installed("survival")
  d <- make_clogit(3000, seed = 50)
  # one row of year 2021 among 3,000, in a large stratum, with a small weight
  # (an event: with y = 0 its effect would diverge to -Inf)
  d$year[1] <- 2021L
  d$w[1] <- 0.01
  d$y[1] <- 1
  f <- suppressWarnings(did_fit(y ~ treated + x | la + year, d, cluster = ~la, weights = ~w,
                                family = "conditional_logit", vcov = "CR0"))
  expect_true("fe12021" %in% f$clogit$cols)
  strata <- survival::strata
  coxph <- survival::coxph
  Surv <- survival::Surv
  cl <- survival::clogit(y ~ treated + x + factor(year) + strata(la), d, weights = w,
                         method = "approximate", cluster = la)
  expect_equal(unname(coef(f)), unname(coef(cl)[1:2]), tolerance = 1e-8)
  expect_equal(unname(vcov(f)), unname(vcov(cl)[1:2, 1:2]), tolerance = 1e-8)
})

test_that("conditional logit with the stratum only equals survival::clogit", {
  skip_if_not_installed("survival")
  d <- make_clogit(500, seed = 60)
  f <- suppressWarnings(did_fit(y ~ treated + x + age | la, d, cluster = ~la,
                                family = "conditional_logit", vcov = "CR0"))
  expect_length(f$clogit$free, 0L)
  strata <- survival::strata
  coxph <- survival::coxph
  Surv <- survival::Surv
  cl <- survival::clogit(y ~ treated + x + age + strata(la), d, method = "approximate", cluster = la)
  expect_equal(unname(coef(f)), unname(coef(cl)), tolerance = 1e-8)
  expect_equal(unname(vcov(f)), unname(vcov(cl)), tolerance = 1e-8)
})

test_that("strata with a constant outcome are excluded and counted, and nobs is the rows fitted", {
  set.seed(11)
  d <- expand.grid(i = 1:40, la = letters[1:6], year = 1:4, stringsAsFactors = FALSE)
  d$treated <- as.integer(d$la %in% c("a", "b", "c") & d$year >= 3)
  d$x <- rnorm(nrow(d))
  d$y <- rbinom(nrow(d), 1, plogis(-1 + 0.3 * d$treated + 0.2 * d$x))
  d$y[d$la == "f"] <- 0L
  fit <- suppressMessages(did_fit(y ~ treated + x | la + year, d, cluster = ~la,
                                  family = "conditional_logit"))
  ex <- fit$exclusions
  expect_identical(ex$n[grepl("constant outcome", ex$reason)], 160L)
  expect_identical(nobs(fit), nrow(d) - 160L)
  # the estimate is the fit without those rows
  fit2 <- did_fit(y ~ treated + x | la + year, d[d$la != "f", ], cluster = ~la,
                  family = "conditional_logit")
  expect_equal(coef(fit), coef(fit2), tolerance = 1e-10)
  # the excluded authority is not a cluster of the variance
  expect_identical(fit$n_clusters, 5L)
  expect_equal(vcov(fit), vcov(fit2), tolerance = 1e-10)
  expect_message(did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "conditional_logit"),
                 "constant outcome")
})

test_that("ffi_clogit's contract: fixed-effect columns need disjoint code ranges, ord a permutation", {
  a <- valid_calls()$ffi_clogit
  call <- function(a) do.call(.Call, c(list(sfpceval:::ffi_clogit), a))
  expect_silent(call(a))
  b <- a
  b[[7]] <- cbind(a[[7]], a[[7]])  # second column reuses the first's codes
  expect_error(call(b), class = "sfpceval_internal_error")
  b <- a
  b[[5]] <- c(0L, 2L, 4L, 1L, 3L, 3L)  # row 4 twice, row 6 never
  expect_error(call(b), class = "sfpceval_internal_error")
})
