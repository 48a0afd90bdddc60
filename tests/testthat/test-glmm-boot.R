# The Kline-Santos score bootstrap for the stepped-wedge GLMM.

# wild_boot()'s GLMM score bootstrap (variant = "score"), its few-clusters
# warning muffled (tested below)
score_boot_of <- function(fit, ...) {
  withCallingHandlers(wild_boot(fit, ..., variant = "score"),
                      sfpceval_few_clusters = function(w) invokeRestart("muffleWarning"))
}
glmm_boot_data <- function(n = 60, seed = 1, G = 5) {
  set.seed(seed)
  las <- paste0("L", seq_len(G))
  d <- expand.grid(la = las, step = 0:5, rep = seq_len(n), stringsAsFactors = FALSE)
  go <- stats::setNames(rep_len(1:5, G), las)
  d$treated <- as.integer(d$step >= go[d$la])
  u <- stats::setNames(rep_len(c(-0.4, 0.3, 0, 0.5, -0.3), G) + (seq_len(G) > 5) * 0.1, las)
  d$y <- rbinom(nrow(d), 1, plogis(-1.2 + u[d$la] + 0.05 * d$step + 0.3 * d$treated))
  d
}

test_that("cluster scores are gradients of each cluster's integrated log-likelihood", {
  d <- glmm_boot_data()
  fit <- sw_glmm(y ~ treated + factor(step) + (1 | la), d, nAGQ = 25)
  wb <- score_boot_of(fit, "treated")
  theta <- wb$restricted
  expect_equal(unname(theta["treated"]), 0)
  X <- model.matrix(~ treated + factor(step), d)
  # plain R: the exact integrated log-likelihood of one cluster by integrate()
  ll_cluster <- function(th, a) {
    rows <- d$la == paste0("L", a)
    eta <- drop(X[rows, ] %*% th[1:ncol(X)])
    y <- d$y[rows]
    f <- function(b) vapply(b, function(bb) exp(sum(y * (eta + bb) - log1p(exp(eta + bb))) + 150), 0) *
      dnorm(b, 0, th[ncol(X) + 1])
    log(integrate(f, -Inf, Inf, rel.tol = 1e-12)$value) - 150
  }
  num_grad <- function(a) vapply(seq_along(theta), function(k) {
    h <- 1e-5
    tp <- tm <- theta
    tp[k] <- tp[k] + h
    tm[k] <- tm[k] - h
    (ll_cluster(tp, a) - ll_cluster(tm, a)) / (2 * h)
  }, 0)
  for (a in 1:5) expect_equal(unname(wb$scores[a, ]), num_grad(a), tolerance = 1e-5)
  # the restricted fit is a maximum in every coordinate but the treatment
  expect_equal(unname(colSums(wb$scores))[-2], rep(0, ncol(X)), tolerance = 1e-6)
  skip_if_not_installed("lme4")
  g <- lme4::glmer(y ~ factor(step) + (1 | la), family = binomial, data = d, nAGQ = 25)
  expect_equal(unname(theta[-2][1:6]), unname(lme4::fixef(g)), tolerance = 1e-4)
})

test_that("the score bootstrap p-value equals a plain-R loop over the weight vectors", {
  d <- glmm_boot_data(seed = 2)
  fit <- sw_glmm(y ~ treated + factor(step) + (1 | la), d)
  wb <- score_boot_of(fit, "treated", weights = "webb")
  expect_equal(wb$B, 6^5)
  # plain R: a_g from the scores and the Hessian by finite differences of the
  # summed scores; all 6^5 Webb vectors
  S <- wb$scores
  w6 <- c(-sqrt(3 / 2), -1, -sqrt(1 / 2), sqrt(1 / 2), 1, sqrt(3 / 2))
  V <- t(as.matrix(expand.grid(rep(list(w6), 5))))
  pig <- as.numeric(table(d$la)) / nrow(d)
  tstat <- function(a, v) { va <- v * a; N <- sum(va); N / sqrt(sum((va - pig * N)^2)) }
  H <- sfpceval:::binom_hessian(fit$cells, wb$restricted, 1:8,
                                sfpceval:::binom_eval(fit$cells, wb$restricted[1:7], wb$restricted[8], 1L)$mode,
                                sfpceval:::binom_eval(fit$cells, wb$restricted[1:7], wb$restricted[8], 1L)$gradient)
  a <- drop(S %*% solve(-H)[, 2])
  t0 <- tstat(a, rep(1, 5))
  ts <- apply(V, 2, function(v) tstat(a, v))
  expect_equal(wb$statistic, t0, tolerance = 1e-10)
  expect_equal(wb$p_value_geq, mean(abs(ts) >= abs(t0) - 1e-8 * max(1, abs(t0))))
  expect_equal(sort(wb$tstar), sort(ts), tolerance = 1e-10)
})

test_that("the GLMM score bootstrap says when it cannot reject", {
  d <- glmm_boot_data(n = 30, seed = 3)
  fit <- sw_glmm(y ~ treated + factor(step) + (1 | la), d)
  wr <- score_boot_of(fit, "treated", weights = "rademacher")
  expect_equal(wr$B, 32)
  expect_match(wr$note, "cannot reject")
  expect_snapshot(wild_boot(fit, "nope"), error = TRUE)
})

# ---- the CR3 t-test for the binomial GLMM (variant "CR3t", #13) ----

# Plain R: the CR3 t-test from the leave-one-cluster-out estimates b_(g) and
# the full estimate b, as MacKinnon, Nielsen & Webb (2023) define it.
ref_cr3_t <- function(b, bg, r = 0, level = 0.95) {
  G <- length(bg)
  se <- sqrt((G - 1) / G * sum((bg - b)^2))
  t <- (b - r) / se
  list(se = se, t = t, p = 2 * pt(-abs(t), G - 1), ci = b + c(-1, 1) * qt(1 - (1 - level) / 2, G - 1) * se)
}

test_that("GLMM CR3 t-test, hand-made: sigma = 0 is the pooled log odds ratio, left out one authority at a time", {
  # 3 authorities, control and treated cells of 10 children; with sigma
  # fixed at 0 the fit is the logit of the pooled 2 x 2 table:
  #   all:       control 10/30, treated 15/30 -> OR = (15/15) / (10/20) = 2
  #   without A: control  7/20, treated  9/20 -> OR = (9/11) / (7/13) = 117/77
  #   without B: control  8/20, treated 11/20 -> OR = (11/9) / (8/12) = 11/6
  #   without C: control  5/20, treated 10/20 -> OR = (10/10) / (5/15) = 3
  cells <- data.frame(la = rep(c("A", "B", "C"), each = 2), treated = rep(0:1, 3),
                      s = c(3, 6, 2, 4, 5, 5))
  d <- do.call(rbind, lapply(seq_len(nrow(cells)), function(i) {
    data.frame(la = cells$la[i], treated = cells$treated[i], y = rep(1:0, c(cells$s[i], 10 - cells$s[i])))
  }))
  fit <- suppressMessages(sw_glmm(y ~ treated + (1 | la), d, sigma = 0))
  expect_equal(unname(coef(fit)[["treated"]]), log(2), tolerance = 1e-10)
  wb <- wild_boot(fit, "treated", variant = "CR3t")
  expect_equal(wb$jackknife, log(c(117 / 77, 11 / 6, 3)), tolerance = 1e-10)
  se <- sqrt(2 / 3 * sum((log(c(117 / 77, 11 / 6, 3)) - log(2))^2))
  expect_equal(wb$std.error, se, tolerance = 1e-10)
  expect_equal(wb$statistic, log(2) / se, tolerance = 1e-10)
  expect_equal(wb$p_value, 2 * pt(-log(2) / se, 2), tolerance = 1e-10)
  expect_equal(wb$conf_int, log(2) + c(-1, 1) * qt(0.975, 2) * se, tolerance = 1e-10)
  expect_equal(wb$df, 2L)
  expect_s3_class(wb, "wild_boot_t")
  expect_identical(wb$variant, "CR3t")
})

test_that("GLMM CR3 t-test equals refits without each authority (sw_glmm, lme4::glmer), Laplace and AGQ", {
  d <- glmm_boot_data(seed = 4)
  f <- y ~ treated + factor(step) + (1 | la)
  for (Q in c(1L, 7L)) {
    fit <- sw_glmm(f, d, nAGQ = Q)
    wb <- wild_boot(fit, "treated", r = 0.1, level = 0.9, variant = "CR3t")
    las <- sort(unique(d$la))
    bg <- vapply(las, function(l) coef(suppressMessages(sw_glmm(f, d[d$la != l, ], nAGQ = Q)))[["treated"]], 0)
    ref <- ref_cr3_t(coef(fit)[["treated"]], bg, r = 0.1, level = 0.9)
    expect_equal(unname(wb$jackknife), unname(bg), tolerance = 1e-6)
    expect_equal(wb$std.error, ref$se, tolerance = 1e-6)
    expect_equal(wb$statistic, ref$t, tolerance = 1e-6)
    expect_equal(wb$p_value, ref$p, tolerance = 1e-6)
    expect_equal(wb$conf_int, ref$ci, tolerance = 1e-6)
    # the interval is the test inverted: p at its ends is 1 - level
    for (k in 1:2) {
      expect_equal(wild_boot(fit, "treated", r = wb$conf_int[k], variant = "CR3t")$p_value, 0.1, tolerance = 1e-10)
    }
    skip_if_not_installed("lme4")
    bl <- vapply(las, function(l) {
      g <- lme4::glmer(f, family = binomial, data = d[d$la != l, ], nAGQ = Q,
                       control = lme4::glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10)))
      unname(lme4::fixef(g)[["treated"]])
    }, 0)
    expect_equal(unname(wb$jackknife), unname(bl), tolerance = 1e-4)
  }
})

test_that("GLMM CR3 t-test: row order, the default by number of clusters, the score bootstrap's warning", {
  d <- glmm_boot_data(seed = 5)
  f <- y ~ treated + factor(step) + (1 | la)
  fit <- sw_glmm(f, d)
  # explicit, it is silent; one refit per authority
  expect_silent(wb <- wild_boot(fit, "treated", variant = "CR3t"))
  expect_match(wb$method, "CR3 .* G - 1 = 4 df")
  expect_equal(wb$refits$n, 5)
  set.seed(2)
  wb2 <- wild_boot(sw_glmm(f, d[sample(nrow(d)), ]), "treated", variant = "CR3t")
  expect_equal(wb2$jackknife, wb$jackknife, tolerance = 1e-8)
  expect_equal(wb2$p_value, wb$p_value, tolerance = 1e-8)
  # below 10 clusters the default is the score bootstrap studentised by a
  # linearised CR3 jackknife (tested at the end of this file), with a message
  expect_message(wc <- wild_boot(fit, "treated"), "linearised CR3 jackknife")
  expect_identical(wc$variant, "score_cr3")
  expect_match(wc$note, sprintf("rejected %.1f%% of true nulls", glmm_boot_size_$score_cr3[1]))
  # the score bootstrap, asked for below 10 clusters, warns with its size
  expect_warning(ws <- wild_boot(fit, "treated", variant = "score", conf_int = FALSE),
                 class = "sfpceval_few_clusters")
  expect_identical(ws$variant, "score")
  expect_match(ws$note, "does not hold its size")
  # from 10 clusters the default is the score bootstrap, without warning
  d10 <- glmm_boot_data(seed = 6, n = 20, G = 10)
  f10 <- suppressMessages(sw_glmm(f, d10))
  w10 <- expect_no_warning(wild_boot(f10, "treated", B = 99, seed = 1, conf_int = FALSE))
  expect_identical(w10$variant, "score")
  expect_equal(w10$p_value, wild_boot(f10, "treated", B = 99, seed = 1, conf_int = FALSE, variant = "score")$p_value)
  # bad input
  expect_error(wild_boot(fit, "treated", variant = "WCU31"), "variant")
  expect_error(wild_boot(fit, "treated", varient = "CR3t"), "varient")
  expect_error(wild_boot(fit, c("treated", "x")), "param")
})

test_that("GLMM CR3 t-test: columns a leave-one-out fit does not identify are left out; an unidentified treatment falls back", {
  d <- glmm_boot_data(seed = 7)
  # a covariate level that only authority L2 has
  d$x <- factor(ifelse(d$la == "L2" & d$step %% 2 == 0, "rare", "common"))
  f <- y ~ treated + factor(step) + x + (1 | la)
  fit <- sw_glmm(f, d)
  wb <- wild_boot(fit, "treated", variant = "CR3t")
  expect_match(wb$note, "without la = L2 left out the columns they do not identify \\(xrare\\)")
  f0 <- y ~ treated + factor(step) + (1 | la)
  bg <- vapply(sort(unique(d$la)), function(l) {
    coef(suppressMessages(sw_glmm(if (l == "L2") f0 else f, d[d$la != l, ])))[["treated"]]
  }, 0)
  expect_equal(unname(wb$jackknife), unname(bg), tolerance = 1e-6)
  # a level whose only events are in L3 separates the outcome without L3:
  # that fit is the limit, the one without the level's rows and column
  set.seed(3)
  d$z <- factor(ifelse(runif(nrow(d)) < 0.05, "sep", "usual"), c("usual", "sep"))
  d$y[d$z == "sep" & d$la != "L3"] <- 0L
  d$y[d$z == "sep" & d$la == "L3"][1] <- 1L
  fz <- y ~ treated + factor(step) + z + (1 | la)
  ws <- wild_boot(sw_glmm(fz, d), "treated", variant = "CR3t")
  expect_match(ws$note, "Without la = L3, zsep separates the outcome")
  bz <- vapply(sort(unique(d$la)), function(l) {
    dl <- d[d$la != l, ]
    coef(suppressMessages(if (l == "L3") sw_glmm(f0, dl[dl$z != "sep", ]) else sw_glmm(fz, dl)))[["treated"]]
  }, 0)
  expect_equal(unname(ws$jackknife), unname(bz), tolerance = 1e-6)
  # only L1 is ever treated: without L1 the treatment is not identified
  d1 <- d[d$la %in% c("L1", "L3", "L5"), ]
  d1$treated <- as.integer(d1$la == "L1" & d1$step >= 2)
  f1 <- suppressMessages(sw_glmm(f0, d1))
  expect_warning(w1 <- wild_boot(f1, "treated", weights = "rademacher", conf_int = FALSE),
                 "not defined: without la = L1 `treated` is not identified", class = "sfpceval_few_clusters")
  expect_identical(w1$variant, "score")
  expect_match(w1$method, "score bootstrap .*as the CR3 jackknife is not defined")
  expect_equal(w1$p_value, suppressWarnings(wild_boot(f1, "treated", weights = "rademacher", conf_int = FALSE,
                                                      variant = "score"))$p_value)
  expect_warning(w3 <- wild_boot(f1, "treated", weights = "rademacher", conf_int = FALSE, variant = "CR3t"),
                 "not defined: without la = L1 `treated` is not identified", class = "sfpceval_few_clusters")
  expect_match(w3$method, "score bootstrap .*as the CR3 t-test is not defined")
  expect_equal(w3$p_value, w1$p_value)
})

# ---- the wild cluster restricted bootstrap for the linear mixed model (#13) ----

# lmm_boot_data(): tests/testthat/helper-lmm-data.R

# Plain R: dense V, GLS with the variance components fixed at the fit's,
# restricted residuals, every Rademacher vector, CR1 t-statistics.
ref_lmm_wcr <- function(fit, d, X, j, r, nested) {
  th <- fit$theta
  cl <- match(d$la, sort(unique(d$la)))
  G <- max(cl)
  V <- diag(nrow(d)) + th[1]^2 * outer(cl, cl, "==")
  if (nested) {
    ch <- paste(d$child_id, d$la)
    V <- V + th[2]^2 * outer(ch, ch, "==")
  }
  W <- solve(V)
  M <- solve(crossprod(X, W %*% X))
  bh <- M %*% crossprod(X, W %*% d$y)
  b0 <- bh - M[, j] * (bh[j] - r) / M[j, j]
  u0 <- drop(d$y - X %*% b0)
  tstat <- function(yy) {
    b <- M %*% crossprod(X, W %*% yy)
    u <- drop(yy - X %*% b)
    sc <- vapply(seq_len(G), function(g) {
      i <- cl == g
      sum(M[j, ] * crossprod(X[i, , drop = FALSE], W[i, i] %*% u[i]))
    }, 0)
    (b[j] - r) / sqrt(G / (G - 1) * sum(sc^2))
  }
  Vr <- as.matrix(expand.grid(rep(list(c(-1, 1)), G)))
  list(t = tstat(d$y), tstar = apply(Vr, 1, function(v) tstat(drop(X %*% b0) + u0 * v[cl])),
       beta = bh[j])
}

# the fixed-effects part of an sw_glmm formula, for model.matrix()
fixed_part <- function(f) parse_glmm_formula(f)$fixed

# muffle only the few-clusters warning of the LMM bootstrap (tested below)
few_ok <- function(expr) {
  withCallingHandlers(expr, sfpceval_few_clusters = function(w) invokeRestart("muffleWarning"))
}

test_that("LMM wild bootstrap equals a plain-R GLS loop over every Rademacher vector", {
  d <- lmm_boot_data(seed = 3)
  cases <- list(list(f = y ~ treated + factor(period) + since + (1 | la / child_id), nested = TRUE, r = 0),
                list(f = y ~ treated + since + (1 | la), nested = FALSE, r = 0.5))
  for (cs in cases) {
    fit <- sw_glmm(cs$f, d, family = gaussian())
    X <- model.matrix(fixed_part(cs$f), d)
    wb <- few_ok(wild_boot(fit, "treated", weights = "rademacher", r = cs$r, variant = "WCR11"))
    ref <- ref_lmm_wcr(fit, d, X, 2L, cs$r, cs$nested)
    expect_equal(wb$statistic, ref$t, tolerance = 1e-9)
    expect_equal(sort(wb$tstar), sort(ref$tstar), tolerance = 1e-9)
    tol <- 1e-8 * max(1, abs(ref$t))
    expect_equal(wb$p_value, mean(abs(ref$tstar) > abs(ref$t) + tol))
    expect_equal(wb$p_value_geq, mean(abs(ref$tstar) >= abs(ref$t) - tol))
    expect_equal(wb$estimate, unname(coef(fit)["treated"]))
    expect_equal(wb$B, 32L)
    expect_true(wb$enumerated)
  }
})

test_that("LMM wild bootstrap: Webb enumeration, interval by inversion, invariance, output", {
  d <- lmm_boot_data(seed = 4)
  f <- y ~ treated + since + (1 | la / child_id)
  fit <- sw_glmm(f, d, family = gaussian())
  combos <- list(c("WCR31", "mammen"), c("WCR13", "webb"), c("WCU13", "webb"), c("WCR11", "webb"),
                 c("WCU33", "webb"), c("WCU31", "mammen"))
  for (cb in combos) {
    variant <- cb[1]
    w <- cb[2]
    wb <- few_ok(wild_boot(fit, "treated", weights = w, variant = variant))
    expect_equal(wb$B, if (w == "webb") 6^5 else 2^5)
    expect_true(wb$enumerated)
    expect_equal(wb$weights, w)
    expect_equal(wb$variant, variant)
    # the interval's ends are where the p-value crosses 1 - level
    pv_at <- function(r) few_ok(wild_boot(fit, "treated", weights = w, r = r, conf_int = FALSE,
                                          variant = variant))$p_value
    for (k in 1:2) {
      e <- wb$conf_int[k]
      step <- 1e-6 * wb$std.error * c(-1, 1)[k]
      expect_gte(pv_at(e - step), 0.05)
      expect_lt(pv_at(e + step), 0.05)
    }
    # shifting and scaling the outcome moves nothing but the scale
    d2 <- d
    d2$y <- (d$y + 1e4) * 1000
    wb2 <- few_ok(wild_boot(sw_glmm(f, d2, family = gaussian()), "treated", weights = w, variant = variant))
    expect_equal(wb2$statistic, wb$statistic, tolerance = 1e-7)
    expect_equal(wb2$p_value, wb$p_value)
    expect_equal(wb2$conf_int, 1000 * wb$conf_int, tolerance = 1e-6)
  }
  # the default bootstrap (what variant = "auto" gives from 10 clusters; below,
  # the CR3 t-test, test-lmm-boot.R): WCU31 with the 6^5 Webb vectors
  wdef <- few_ok(wild_boot(fit, "treated", variant = "WCU31"))
  expect_equal(wdef$variant, "WCU31")
  expect_equal(wdef$weights, "webb")
  expect_equal(wdef$B, 6^5)
  expect_equal(wdef$p_value, few_ok(wild_boot(fit, "treated", weights = "webb", variant = "WCU31",
                                              conf_int = FALSE))$p_value)
  for (k in 1:2) {
    e <- wdef$conf_int[k]
    step <- 1e-6 * wdef$std.error * c(-1, 1)[k]
    expect_gte(few_ok(wild_boot(fit, "treated", r = e - step, conf_int = FALSE, variant = "WCU31"))$p_value, 0.05)
    expect_lt(few_ok(wild_boot(fit, "treated", r = e + step, conf_int = FALSE, variant = "WCU31"))$p_value, 0.05)
  }
  # enumerated Mammen weights: all 2^5 vectors with their probabilities
  wm <- few_ok(wild_boot(fit, "treated", weights = "mammen", variant = "WCR31", conf_int = FALSE))
  expect_equal(wm$B, 32)
  expect_equal(sum(wm$draw_prob), 1)
  # random Mammen draws (B given) approach the enumerated p-value
  wr <- few_ok(wild_boot(fit, "treated", weights = "mammen", variant = "WCR31", B = 20000, seed = 3,
                         conf_int = FALSE))
  expect_false(wr$enumerated)
  expect_null(wr$draw_prob)
  expect_lt(abs(wr$p_value - wm$p_value), 4 * sqrt(wm$p_value * (1 - wm$p_value) / 20000) + 1e-12)
  wb <- few_ok(wild_boot(fit, "treated", weights = "webb", variant = "WCR11"))
  # the same fields as the bootstrap of a did_fit()
  dd <- expand.grid(child = 1:10, la = letters[1:6], year = 2015:2019)
  dd$treated <- as.integer(dd$la %in% c("a", "b", "c") & dd$year >= 2018)
  set.seed(1)
  dd$y <- rnorm(nrow(dd))
  wd <- wild_boot(did_fit(y ~ treated | la + year, dd, cluster = ~la), "treated")
  # note: NULL when none; variant: the LMM bootstrap's own
  expect_setequal(setdiff(names(wb), c("note", "variant")), setdiff(names(wd), "note"))
  expect_setequal(setdiff(names(wm), c("note", "variant", "draw_prob")), setdiff(names(wd), "note"))
  expect_match(wb$note, "does not hold its size", all = FALSE)
  expect_s3_class(wb, "wild_boot")
  expect_output(print(wb), "linear mixed model")
  expect_error(few_ok(wild_boot(fit, "nope")), "must name one coefficient")
  expect_error(few_ok(wild_boot(fit, variant = "WCR3")), "variant")
  expect_error(few_ok(wild_boot(fit, varient = "WCR11")), "varient")
})

test_that("the LMM bootstrap warns with fewer clusters than its size holds for", {
  # no variant held its size with 5 LAs (bench/sw_size.R); WCR11/WCR13 with Webb weights did with 10
  fit5 <- sw_glmm(y ~ treated + since + (1 | la), lmm_boot_data(seed = 5), family = gaussian())
  expect_warning(wb <- wild_boot(fit5, "treated", conf_int = FALSE, variant = "WCU31"), class = "sfpceval_few_clusters")
  expect_match(wb$note, "WCU31 with webb weights rejected 7.7% and 7.6%", all = FALSE)
  expect_warning(wild_boot(fit5, "treated", conf_int = FALSE, variant = "WCR11"), "fewer than 10 clusters")
  expect_warning(wild_boot(fit5, "treated", conf_int = FALSE, weights = "rademacher", variant = "WCU31"),
                 "WCU31 with rademacher weights rejected")
  # the variants near 5% with 2^5 vectors say why they are no remedy
  expect_warning(wild_boot(fit5, "treated", conf_int = FALSE, weights = "rademacher", variant = "WCR31"),
                 "rejected 4.8% and 5.4% of true nulls at 5%, but its power stops growing", fixed = TRUE)
  fit10 <- sw_glmm(y ~ treated + since + (1 | la), lmm_boot_data(nch = 300, seed = 5, G = 10),
                   family = gaussian())
  wb <- expect_no_warning(wild_boot(fit10, "treated", B = 999, seed = 1, conf_int = FALSE, variant = "WCR11"))
  expect_null(wb$note)
  expect_no_warning(wild_boot(fit10, "treated", B = 999, seed = 1, conf_int = FALSE))
})

# Plain R for every variant (MacKinnon, Nielsen & Webb's names: WC, R or U,
# the residuals of the bootstrap DGP -- 1 the fit's, 3 each cluster's from
# the fit without it -- and the variance -- 1 CR1, 3 CR3): dense V at the
# fit's variance components, the bootstrap data of each Rademacher vector
# (restricted: X b0 + u v; unrestricted: X b + u v), and each draw's t from
# GLS refits -- CR1 from the cluster scores, CR3 from the G
# leave-one-cluster-out GLS refits.
ref_lmm_boot <- function(fit, d, X, j, r, nested, variant,
                         Vr = as.matrix(expand.grid(rep(list(c(-1, 1)), length(unique(d$la))))),
                         w = rep(1, nrow(d))) {
  th <- fit$theta
  cl <- match(d$la, sort(unique(d$la)))
  G <- max(cl)
  V <- diag(1 / w) + th[1]^2 * outer(cl, cl, "==")
  if (nested) {
    ch <- paste(d$child_id, d$la)
    V <- V + th[2]^2 * outer(ch, ch, "==")
  }
  W <- solve(V)
  gls <- function(yy, i) {
    drop(solve(crossprod(X[i, ], W[i, i] %*% X[i, ]), crossprod(X[i, ], W[i, i] %*% yy[i])))
  }
  rgls <- function(yy, i) {            # GLS with coefficient j held at r
    Mi <- solve(crossprod(X[i, ], W[i, i] %*% X[i, ]))
    b <- gls(yy, i)
    b - Mi[, j] * (b[j] - r) / Mi[j, j]
  }
  all <- rep(TRUE, nrow(d))
  restricted <- substr(variant, 3, 3) == "R"
  fitb <- if (restricted) rgls else gls
  b0 <- fitb(d$y, all)
  u0 <- drop(d$y - X %*% b0)
  if (substr(variant, 4, 4) == "3") {
    for (g in seq_len(G)) {
      i <- cl == g
      u0[i] <- d$y[i] - drop(X[i, , drop = FALSE] %*% fitb(d$y, !i))
    }
  }
  centre <- if (restricted) r else gls(d$y, all)[j]
  M <- solve(crossprod(X, W %*% X))
  tstat <- function(yy, centre) {
    b <- gls(yy, all)
    if (substr(variant, 5, 5) == "1") {
      u <- drop(yy - X %*% b)
      sc <- vapply(seq_len(G), function(g) {
        i <- cl == g
        sum(M[j, ] * crossprod(X[i, , drop = FALSE], W[i, i] %*% u[i]))
      }, 0)
      v <- G / (G - 1) * sum(sc^2)
    } else {
      bj <- vapply(seq_len(G), function(g) gls(yy, cl != g)[j], 0)
      v <- (G - 1) / G * sum((bj - b[j])^2)
    }
    (b[j] - centre) / sqrt(v)
  }
  list(t = unname(tstat(d$y, r)),
       tstar = apply(Vr, 1, function(v) tstat(drop(X %*% b0) + u0 * v[cl], centre)))
}

test_that("every LMM bootstrap variant equals plain-R GLS refits over every Rademacher vector", {
  d <- lmm_boot_data(seed = 3)
  cases <- list(list(f = y ~ treated + factor(period) + since + (1 | la / child_id), nested = TRUE, r = 0),
                list(f = y ~ treated + since + (1 | la), nested = FALSE, r = 0.5))
  for (cs in cases) {
    fit <- sw_glmm(cs$f, d, family = gaussian())
    X <- model.matrix(fixed_part(cs$f), d)
    for (variant in c("WCR13", "WCU13", "WCR11", "WCU11", "WCR33", "WCU33", "WCR31", "WCU31")) {
      wb <- few_ok(wild_boot(fit, "treated", weights = "rademacher", r = cs$r, variant = variant))
      ref <- ref_lmm_boot(fit, d, X, 2L, cs$r, cs$nested, variant)
      expect_equal(wb$variant, variant)
      expect_equal(wb$statistic, ref$t, tolerance = 1e-9)
      expect_equal(sort(wb$tstar), sort(ref$tstar), tolerance = 1e-9)
      tol <- 1e-8 * max(1, abs(ref$t))
      expect_equal(wb$p_value, mean(abs(ref$tstar) > abs(ref$t) + tol))
      expect_equal(wb$p_value_geq, mean(abs(ref$tstar) >= abs(ref$t) - tol))
    }
    # Mammen: every one of the 2^5 vectors with its probability, by hand:
    # values 1 - phi (probability phi / sqrt(5)) and phi
    phi <- (1 + sqrt(5)) / 2
    Vm <- as.matrix(expand.grid(rep(list(c(1 - phi, phi)), 5)))
    pm <- apply(Vm, 1, function(v) prod(ifelse(v < 0, phi / sqrt(5), 1 - phi / sqrt(5))))
    for (variant in c("WCR31", "WCU33")) {
      wb <- few_ok(wild_boot(fit, "treated", weights = "mammen", r = cs$r, variant = variant))
      ref <- ref_lmm_boot(fit, d, X, 2L, cs$r, cs$nested, variant, Vr = Vm)
      key <- function(t, p) order(round(t, 8), round(p, 12))
      expect_equal(wb$statistic, ref$t, tolerance = 1e-9)
      expect_equal(wb$tstar[key(wb$tstar, wb$draw_prob)], ref$tstar[key(ref$tstar, pm)], tolerance = 1e-9)
      expect_equal(wb$draw_prob[key(wb$tstar, wb$draw_prob)], pm[key(ref$tstar, pm)], tolerance = 1e-12)
      tol <- 1e-8 * max(1, abs(ref$t))
      expect_equal(wb$p_value, sum(pm[abs(ref$tstar) > abs(ref$t) + tol]), tolerance = 1e-12)
      expect_equal(wb$p_value_geq, sum(pm[abs(ref$tstar) >= abs(ref$t) - tol]), tolerance = 1e-12)
    }
  }
})

test_that("LMM bootstrap, hand-made 3 clusters: CR3 is the one-sample t on the cluster means", {
  # balanced clusters, intercept only: GLS is the mean of the cluster means
  # (2, 5, 11), 6, whatever the variance components; leaving cluster g out
  # gives the mean of the other two, so beta_(g) - beta = (6 - ybar_g) / 2 and
  # CR3 = (2/3) sum (6 - ybar_g)^2 / 4 = (16 + 1 + 25) / 6 = 7: t = 6 / sqrt(7).
  d <- data.frame(la = rep(c("a", "b", "c"), each = 2), y = c(1, 3, 4, 6, 8, 14))
  fit <- sw_glmm(y ~ 1 + (1 | la), d, family = gaussian())
  wb <- few_ok(wild_boot(fit, "(Intercept)", weights = "rademacher", variant = "WCU13"))
  expect_equal(wb$std.error, sqrt(7))
  expect_equal(wb$statistic, 6 / sqrt(7))
  # unrestricted draws: cluster means 6 + v_g (ybar_g - 6), so t* is the
  # one-sample t of z = v o (-4, -1, 5), mean(z) / sqrt(var(z) / 3):
  #   v = +-(1, 1, 1):  z = (-4, -1, 5),  t* = 0
  #   v = +-(-1, 1, 1): z = (4, -1, 5),   mean 8/3,   var 31/3, |t*| = 8 / sqrt(31)
  #   v = +-(1, -1, 1): z = (-4, 1, 5),   mean 2/3,   var 61/3, |t*| = 2 / sqrt(61)
  #   v = +-(1, 1, -1): z = (-4, -1, -5), mean -10/3, var 13/3, |t*| = 10 / sqrt(13)
  expect_equal(sort(abs(wb$tstar)), rep(sort(c(0, 8 / sqrt(31), 2 / sqrt(61), 10 / sqrt(13))), each = 2),
               tolerance = 1e-10)
  # only 10 / sqrt(13) = 2.77 exceeds 6 / sqrt(7) = 2.27: p = 2/8
  expect_equal(wb$p_value, 2 / 8)
  expect_equal(wb$p_value_geq, 2 / 8)
})

test_that("LMM bootstrap: a leave-one-out fit that loses the tested coefficient falls back to CR1 with the fit's residuals", {
  # `alias_L1` equals `treated` outside authority L1: without L1 `treated`
  # is not identified (a column only L1 identifies is dropped instead:
  # test-lmm-boot.R)
  d <- lmm_boot_data(seed = 6)
  d$alias_L1 <- ifelse(d$la == "L1", 0, d$treated)
  fit <- sw_glmm(y ~ treated + since + alias_L1 + (1 | la), d, family = gaussian())
  wb <- few_ok(wild_boot(fit, "treated", conf_int = FALSE, variant = "WCU31"))
  expect_match(wb$note, "Without cluster la = L1 `treated` is not identified", all = FALSE, fixed = TRUE)
  expect_match(wb$note, "WCU31 are not defined: WCU11 was used instead", all = FALSE, fixed = TRUE)
  expect_equal(wb$variant, "WCU11")
  w1 <- few_ok(wild_boot(fit, "treated", conf_int = FALSE, variant = "WCU11"))
  expect_equal(wb$p_value, w1$p_value)
  expect_false(any(grepl("is not identified", w1$note)))
  expect_equal(few_ok(wild_boot(fit, "treated", conf_int = FALSE, variant = "WCR33"))$variant, "WCR11")
})

test_that("LMM bootstrap with prior weights equals plain-R weighted GLS refits", {
  d <- lmm_boot_data(seed = 7)
  set.seed(8)
  d$w <- runif(nrow(d), 0.3, 3)
  f <- y ~ treated + since + (1 | la / child_id)
  fit <- sw_glmm(f, d, family = gaussian(), weights = "w")
  X <- model.matrix(~ treated + since, d)
  for (variant in c("WCU31", "WCR13")) {
    wb <- few_ok(wild_boot(fit, "treated", weights = "rademacher", r = 0.2, variant = variant))
    ref <- ref_lmm_boot(fit, d, X, 2L, 0.2, TRUE, variant, w = d$w)
    expect_equal(wb$statistic, ref$t, tolerance = 1e-9)
    expect_equal(sort(wb$tstar), sort(ref$tstar), tolerance = 1e-9)
  }
})

# ---- the score bootstrap studentised by a linearised CR3 jackknife (variant "score_cr3", #13) ----

# Plain R: each cluster's integrated log-likelihood (Laplace: the conditional
# mode by Newton's method; or `ll` given), its scores and Hessian by central
# differences over the free parameters (beta, and sigma unless it is 0), a
# and the linearised leave-one-out terms, and t* over every column of V:
# a_h = (H^-1 s_h)_j, C[g, h] = ((H - H_g)^-1 s_h)_j over the columns
# present outside cluster g, (J v)_g = sum_{h != g} C[g, h] v_h - a'v,
# t*(v) = a'v / sqrt((G - 1) / G sum_g (J v)_g^2). With h = 1e-4 the
# differenced Hessians are within about 1e-5 of the exact Laplace ones
# (measured on these data), hence the tolerances 1e-5 below.
laplace_ll <- function(X, y, th) {
  p <- ncol(X)
  eta <- drop(X %*% th[1:p])
  s2 <- th[p + 1]^2
  if (s2 == 0) return(sum(y * eta - log1p(exp(eta))))
  u <- 0
  for (it in 1:100) {
    pr <- plogis(eta + u)
    u <- u - (sum(y - pr) - u / s2) / (-sum(pr * (1 - pr)) - 1 / s2)
  }
  pr <- plogis(eta + u)
  sum(y * (eta + u) - log1p(exp(eta + u))) - u^2 / (2 * s2) - 0.5 * log(s2) - 0.5 * log(sum(pr * (1 - pr)) + 1 / s2)
}
ref_score_cr3 <- function(X, y, cl, theta, j, V, ll = laplace_ll, h = 1e-4) {
  G <- max(cl)
  free <- if (theta[length(theta)] == 0) seq_len(ncol(X)) else seq_along(theta)
  m <- length(free)
  at <- function(g, k, dk) {
    th <- theta
    th[free[k]] <- th[free[k]] + dk
    ll(X[cl == g, , drop = FALSE], y[cl == g], th)
  }
  at2 <- function(g, k, l, dk, dl) {
    th <- theta
    th[free[k]] <- th[free[k]] + dk
    th[free[l]] <- th[free[l]] + dl
    ll(X[cl == g, , drop = FALSE], y[cl == g], th)
  }
  S <- t(vapply(seq_len(G), function(g) vapply(seq_len(m), function(k) (at(g, k, h) - at(g, k, -h)) / (2 * h), 0),
                numeric(m)))
  Hg <- lapply(seq_len(G), function(g) {
    Hm <- matrix(0, m, m)
    for (k in seq_len(m)) for (l in seq_len(m)) {
      Hm[k, l] <- (at2(g, k, l, h, h) - at2(g, k, l, h, -h) - at2(g, k, l, -h, h) + at2(g, k, l, -h, -h)) / (4 * h^2)
    }
    Hm
  })
  H <- Reduce(`+`, Hg)
  fj <- match(j, free)
  a <- drop(S %*% solve(-H)[, fj])
  C <- matrix(0, G, G)
  for (g in seq_len(G)) {
    k <- which(c(colSums(X[cl != g, , drop = FALSE] != 0) > 0, TRUE)[free])
    for (hh in setdiff(seq_len(G), g)) C[g, hh] <- solve(-(H - Hg[[g]])[k, k], S[hh, k])[match(fj, k)]
  }
  tstat <- function(v) {
    num <- sum(v * a)
    num / sqrt((G - 1) / G * sum((drop(C %*% v) - num)^2))
  }
  t0 <- tstat(rep(1, G))
  ts <- apply(V, 2, tstat)
  tol <- 1e-8 * max(1, abs(t0))
  list(t = t0, tstar = ts, p = mean(abs(ts) > abs(t0) + tol), p_geq = mean(abs(ts) >= abs(t0) - tol))
}
webb_all <- function(G) {
  w6 <- c(-sqrt(3 / 2), -1, -sqrt(1 / 2), sqrt(1 / 2), 1, sqrt(3 / 2))
  t(as.matrix(expand.grid(rep(list(w6), G))))
}

test_that("score_cr3, hand-made: sigma = 0, per-cluster logit Hessians in closed form", {
  # 3 authorities, a control and a treated cell of 10 children each
  # (successes 3/6, 2/4, 5/5), sigma fixed at 0. Restricted to treated = 0
  # the fit is the pooled rate p = 25/60; each authority's Hessian is
  # -p q [20 10; 10 10] (q = 1 - p), so a_g = (T_g - C_g) / (30 p q) (treated
  # minus control successes: 3, 2, 0) and ((H - H_g)^-1 s_h)_2 = 3/2 a_h:
  # (J v)_g = a'v / 2 - 3/2 v_g a_g; at v = 1, J = k (-2, -1/2, 5/2) with
  # k = 1 / (30 p q), so the standard error is k sqrt(7) and t = 5 / sqrt(7).
  cells <- data.frame(la = rep(c("A", "B", "C"), each = 2), treated = rep(0:1, 3),
                      s = c(3, 6, 2, 4, 5, 5))
  d <- do.call(rbind, lapply(seq_len(nrow(cells)), function(i) {
    data.frame(la = cells$la[i], treated = cells$treated[i], y = rep(1:0, c(cells$s[i], 10 - cells$s[i])))
  }))
  fit <- suppressMessages(sw_glmm(y ~ treated + (1 | la), d, sigma = 0))
  expect_message(wb <- wild_boot(fit, "treated"), "linearised CR3 jackknife")
  expect_identical(wb$variant, "score_cr3")
  pq <- 25 / 60 * 35 / 60
  k <- 1 / (30 * pq)
  expect_equal(wb$statistic, 5 / sqrt(7), tolerance = 1e-10)
  expect_equal(wb$std.error, k * sqrt(7), tolerance = 1e-10)
  a <- c(3, 2, 0)
  V <- webb_all(3)
  ts <- apply(V, 2, function(v) { N <- sum(v * a); N / sqrt(2 / 3 * sum((N / 2 - 1.5 * v * a)^2)) })
  expect_equal(wb$B, 216)
  expect_equal(sort(wb$tstar), sort(ts), tolerance = 1e-10)
  t0 <- 5 / sqrt(7)
  expect_equal(wb$p_value, mean(abs(ts) > t0 + 1e-8))
  expect_equal(wb$p_value_geq, mean(abs(ts) >= t0 - 1e-8))
  # far below the estimate the restricted fit saturates (its Hessian is
  # singular) before the test rejects: that side is NA and the note says so
  # (for the plain score bootstrap too, which stopped with an error before)
  expect_true(is.na(wb$conf_int[1]))
  expect_match(wb$note, "restricted fit's Hessian is singular")
  ws <- suppressWarnings(wild_boot(fit, "treated", variant = "score"))
  expect_true(is.na(ws$conf_int[1]))
  expect_match(ws$note, "restricted fit's Hessian is singular")
})

test_that("score_cr3 equals a plain-R reference (Laplace, AGQ), invariant to row order, interval by inversion", {
  d <- glmm_boot_data(seed = 8)
  f <- y ~ treated + factor(step) + (1 | la)
  X <- model.matrix(~ treated + factor(step), d)
  cl <- match(d$la, sort(unique(d$la)))
  fit <- sw_glmm(f, d)
  wb <- wild_boot(fit, "treated", r = 0.1, level = 0.9, variant = "score_cr3")
  expect_equal(unname(wb$restricted[["treated"]]), 0.1)
  ref <- ref_score_cr3(X, d$y, cl, unname(wb$restricted), 2L, webb_all(5))
  expect_equal(wb$statistic, ref$t, tolerance = 1e-5)
  expect_equal(sort(wb$tstar), sort(ref$tstar), tolerance = 1e-5)
  expect_equal(wb$p_value, ref$p)
  expect_equal(wb$p_value_geq, ref$p_geq)
  expect_match(wb$method, "linearised CR3 jackknife")
  # row order
  set.seed(3)
  wr <- wild_boot(sw_glmm(f, d[sample(nrow(d)), ]), "treated", r = 0.1, level = 0.9, variant = "score_cr3")
  expect_equal(wr$statistic, wb$statistic, tolerance = 1e-8)
  expect_equal(wr$p_value, wb$p_value)
  expect_equal(wr$conf_int, wb$conf_int, tolerance = 1e-6)
  # the interval inverts the test: accepted (p >= 1 - level) just inside
  # each end, rejected just outside (bisection to 1e-3 standard errors)
  se <- sqrt(fit$vcov["treated", "treated"])
  expect_true(all(is.finite(wb$conf_int)))
  pv <- function(rr) wild_boot(fit, "treated", r = rr, variant = "score_cr3", conf_int = FALSE)$p_value
  for (k in 1:2) {
    inward <- if (k == 1) 1 else -1
    expect_gte(pv(wb$conf_int[k] + inward * 1e-3 * se), 0.1)
    expect_lt(pv(wb$conf_int[k] - inward * 1e-3 * se), 0.1)
  }
  # adaptive quadrature: per-cluster Hessians by differences of the
  # gradient; the reference integrates each cluster with integrate()
  fa <- sw_glmm(f, d, nAGQ = 25)
  wa <- wild_boot(fa, "treated", variant = "score_cr3", conf_int = FALSE)
  exact_ll <- function(Xg, y, th) {
    p <- ncol(Xg)
    eta <- drop(Xg %*% th[1:p])
    fn <- function(b) vapply(b, function(bb) exp(sum(y * (eta + bb) - log1p(exp(eta + bb))) + 150), 0) *
      dnorm(b, 0, abs(th[p + 1]))
    log(integrate(fn, -Inf, Inf, rel.tol = 1e-12)$value) - 150
  }
  ra <- ref_score_cr3(X, d$y, cl, unname(wa$restricted), 2L, webb_all(5), ll = exact_ll)
  expect_equal(wa$statistic, ra$t, tolerance = 1e-4)
  expect_equal(sort(wa$tstar), sort(ra$tstar), tolerance = 1e-4)
  expect_equal(wa$p_value, ra$p)
})

test_that("score_cr3: a column only one cluster has is left out of that cluster's term; an unidentified treatment falls back", {
  d <- glmm_boot_data(seed = 7)
  d$x <- factor(ifelse(d$la == "L2" & d$step %% 2 == 0, "rare", "common"))
  f <- y ~ treated + factor(step) + x + (1 | la)
  fit <- sw_glmm(f, d)
  wb <- wild_boot(fit, "treated", variant = "score_cr3", conf_int = FALSE)
  expect_match(wb$note, "without la = L2 leave out the columns they do not identify \\(xrare\\)")
  X <- model.matrix(~ treated + factor(step) + x, d)
  ref <- ref_score_cr3(X, d$y, match(d$la, sort(unique(d$la))), unname(wb$restricted), 2L, webb_all(5))
  expect_equal(wb$statistic, ref$t, tolerance = 1e-5)
  expect_equal(sort(wb$tstar), sort(ref$tstar), tolerance = 1e-5)
  expect_equal(wb$p_value, ref$p)
  # only L1 is ever treated: the jackknife is not defined
  d1 <- d[d$la %in% c("L1", "L3", "L5"), ]
  d1$treated <- as.integer(d1$la == "L1" & d1$step >= 2)
  f1 <- suppressMessages(sw_glmm(y ~ treated + factor(step) + (1 | la), d1))
  expect_warning(w1 <- wild_boot(f1, "treated", variant = "score_cr3", conf_int = FALSE),
                 "the CR3 jackknife is not defined", class = "sfpceval_few_clusters")
  expect_identical(w1$variant, "score")
})
