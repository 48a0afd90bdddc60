# wild_boot() on a gaussian sw_glmm() fit with fewer than 10 clusters (#13):
# no wild cluster bootstrap variant held its size with 5 LAs in
# bench/sw_size.R, so the default (variant = "auto") is the t-test with the
# CR3 (leave-one-cluster-out jackknife) standard error and G - 1 df, which did.

# the data: lmm_boot_data() in helper-lmm-data.R

# Plain R: dense V at the fit's variance components, the GLS fit and the G
# GLS refits without one cluster; CR3 = (G - 1) / G sum_g (b_(g) - b)^2;
# t = (b - r) / sqrt(CR3) against t(G - 1); the interval b -+ t_{G-1} se.
ref_cr3_t <- function(fit, d, f, j, r, nested, level = 0.95) {
  X <- model.matrix(parse_glmm_formula(f)$fixed, d)
  th <- fit$theta
  cl <- match(d$la, sort(unique(d$la)))
  G <- max(cl)
  V <- diag(nrow(d)) + th[1]^2 * outer(cl, cl, "==")
  if (nested) {
    ch <- paste(d$child_id, d$la)
    V <- V + th[2]^2 * outer(ch, ch, "==")
  }
  W <- solve(V)
  gls <- function(i) {
    drop(solve(crossprod(X[i, ], W[i, i] %*% X[i, ]), crossprod(X[i, ], W[i, i] %*% d$y[i])))[j]
  }
  b <- unname(gls(rep(TRUE, nrow(d))))
  bg <- vapply(seq_len(G), function(g) gls(cl != g), 0)
  se <- sqrt((G - 1) / G * sum((bg - b)^2))
  tt <- (b - r) / se
  list(t = tt, se = se, p = 2 * pt(-abs(tt), G - 1),
       ci = b + c(-1, 1) * qt(1 - (1 - level) / 2, G - 1) * se)
}

test_that("below 10 clusters the default is the CR3 t-test with G - 1 df, equal to plain-R GLS refits", {
  d <- lmm_boot_data(seed = 3)
  cases <- list(list(f = y ~ treated + factor(period) + since + (1 | la / child_id), nested = TRUE, r = 0, level = 0.95),
                list(f = y ~ treated + since + (1 | la), nested = FALSE, r = 0.5, level = 0.9))
  for (cs in cases) {
    fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la")
    expect_message(wb <- expect_no_warning(wild_boot(fit, "treated", r = cs$r, level = cs$level)),
                   "no wild bootstrap of a linear mixed model held its size, so this is the CR3 t-test")
    ref <- ref_cr3_t(fit, d, cs$f, 2L, cs$r, cs$nested, cs$level)
    expect_s3_class(wb, c("wild_boot_t", "wild_boot"))
    expect_equal(wb$variant, "CR3t")
    expect_match(wb$note, "it rejected 4.3% and 5.8% of true nulls at 5%, the bootstrap WCU31 with Webb weights 7.7% and 7.6%",
                 fixed = TRUE)
    expect_equal(wb$df, 4L)
    expect_equal(wb$std.error, ref$se, tolerance = 1e-9)
    expect_equal(wb$statistic, ref$t, tolerance = 1e-9)
    expect_equal(wb$p_value, ref$p, tolerance = 1e-9)
    expect_equal(wb$p_value_geq, wb$p_value)
    expect_equal(wb$conf_int, ref$ci, tolerance = 1e-9)
    expect_equal(wb$estimate, unname(coef(fit)["treated"]))
    # the same variance as vcov(fit, type = "CR3") and the WC?13 bootstraps
    expect_equal(wb$std.error^2, vcov(fit, type = "CR3")["treated", "treated"], tolerance = 1e-9)
    w13 <- suppressWarnings(wild_boot(fit, "treated", r = cs$r, conf_int = FALSE, variant = "WCU13"))
    expect_equal(wb$statistic, w13$statistic, tolerance = 1e-9)
    # asked for by name: the same test, silently, and the note is NULL
    wn <- expect_silent(wild_boot(fit, "treated", r = cs$r, level = cs$level, variant = "CR3t"))
    expect_equal(wn[c("statistic", "p_value", "conf_int")], wb[c("statistic", "p_value", "conf_int")])
    expect_null(wn$note)
    # the interval is the set of r the test does not reject
    for (k in 1:2) {
      pr <- wild_boot(fit, "treated", r = wb$conf_int[k], level = cs$level, variant = "CR3t")$p_value
      expect_equal(pr, 1 - cs$level, tolerance = 1e-9)
    }
  }
  if (requireNamespace("generics", quietly = TRUE)) {
    fit <- sw_glmm(cases[[1]]$f, d, family = gaussian(), cluster = "la")
    tt <- generics::tidy(fit, vcov = "CR3")
    tt <- tt[tt$term == "treated", ]
    wt <- generics::tidy(wild_boot(fit, "treated", variant = "CR3t"))
    expect_equal(wt$statistic, tt$statistic, tolerance = 1e-9)
    expect_equal(wt$p.value, tt$p.value, tolerance = 1e-9)
    expect_equal(c(wt$conf.low, wt$conf.high), c(tt$conf.low, tt$conf.high), tolerance = 1e-9)
  }
})

test_that("CR3 t-test, hand-made 3 clusters: the one-sample t-test on the cluster means", {
  # balanced clusters, intercept only: GLS is the mean of the cluster means
  # (2, 5, 11) whatever the variance components, and leaving a cluster out
  # gives the mean of the other two, so CR3 is var(means) / 3 = 21 / 3 = 7 and
  # the test is t.test(c(2, 5, 11), mu = r): t = (6 - r) / sqrt(7) on 2 df
  d <- data.frame(la = rep(c("a", "b", "c"), each = 2), y = c(1, 3, 4, 6, 8, 14))
  fit <- sw_glmm(y ~ 1 + (1 | la), d, family = gaussian())
  for (r in c(0, 1)) {
    wb <- suppressMessages(wild_boot(fit, "(Intercept)", r = r))
    ref <- stats::t.test(c(2, 5, 11), mu = r)
    expect_equal(wb$std.error, sqrt(7))
    expect_equal(wb$statistic, (6 - r) / sqrt(7))
    expect_equal(wb$statistic, unname(ref$statistic))
    expect_equal(wb$df, 2L)
    expect_equal(wb$p_value, ref$p.value)
    expect_equal(wb$conf_int, as.numeric(ref$conf.int))
  }
})

test_that("CR3 t-test: invariant to shifting and scaling the outcome and to the order of the rows", {
  d <- lmm_boot_data(seed = 4)
  f <- y ~ treated + since + (1 | la / child_id)
  wb <- wild_boot(sw_glmm(f, d, family = gaussian()), "treated", variant = "CR3t")
  d2 <- d
  d2$y <- (d$y + 1e4) * 1000
  w2 <- wild_boot(sw_glmm(f, d2, family = gaussian()), "treated", variant = "CR3t")
  expect_equal(w2$statistic, wb$statistic, tolerance = 1e-7)
  expect_equal(w2$p_value, wb$p_value, tolerance = 1e-7)
  expect_equal(w2$conf_int, 1000 * wb$conf_int, tolerance = 1e-7)
  set.seed(9)
  d3 <- d[sample(nrow(d)), ]
  w3 <- wild_boot(sw_glmm(f, d3, family = gaussian()), "treated", variant = "CR3t")
  expect_equal(w3$statistic, wb$statistic, tolerance = 1e-7)
  expect_equal(w3$conf_int, wb$conf_int, tolerance = 1e-7)
})

test_that("from 10 clusters the default is the WCU31 bootstrap; a bootstrap asked for below 10 warns", {
  fit10 <- sw_glmm(y ~ treated + since + (1 | la), lmm_boot_data(nch = 300, seed = 5, G = 10), family = gaussian())
  wd <- expect_silent(wild_boot(fit10, "treated", B = 999, seed = 1, conf_int = FALSE))
  expect_equal(wd$variant, "WCU31")
  expect_equal(wd$p_value, wild_boot(fit10, "treated", B = 999, seed = 1, conf_int = FALSE,
                                     variant = "WCU31")$p_value)
  fit5 <- sw_glmm(y ~ treated + since + (1 | la), lmm_boot_data(seed = 5), family = gaussian())
  expect_warning(wb <- wild_boot(fit5, "treated", conf_int = FALSE, variant = "WCU31"),
                 "the default variant = \"auto\" gives the CR3 t-test", class = "sfpceval_few_clusters")
  expect_equal(wb$variant, "WCU31")
  # weights are a bootstrap's: the t-test says it does not use them
  wm <- suppressMessages(wild_boot(fit5, "treated", weights = "mammen"))
  expect_equal(wm$variant, "CR3t")
  expect_match(wm$note, "weights = \"mammen\"` is not used", fixed = TRUE)
  expect_equal(wm$p_value, wild_boot(fit5, "treated", variant = "CR3t")$p_value)
})

test_that("CR3 t-test: output, and what it does when the jackknife is not defined", {
  d <- lmm_boot_data(seed = 6)
  fit <- sw_glmm(y ~ treated + since + (1 | la), d, family = gaussian())
  wb <- suppressMessages(wild_boot(fit, "treated"))
  expect_output(print(wb), "G - 1 = 4 df")
  expect_output(print(wb), "confidence interval")
  expect_null(wb$tstar)
  if (requireNamespace("generics", quietly = TRUE)) {
    expect_equal(generics::glance(wb)$B, 0L)
    expect_equal(generics::tidy(wb)$p.value, wb$p_value)
  }
  # the fields of every bootstrap result, and df
  wr <- suppressWarnings(wild_boot(fit, "treated", variant = "WCR11", conf_int = FALSE))
  expect_setequal(setdiff(names(wb), "df"), names(wr))
  # `only_L1` is nonzero in authority L1 only: without L1 it is not
  # identified, so that leave-out fit drops it and `treated` keeps its
  # jackknife (values: test-lmm-cr3.R); the result names the column
  d$only_L1 <- as.numeric(d$la == "L1") * d$since
  f1 <- sw_glmm(y ~ treated + since + only_L1 + (1 | la), d, family = gaussian(), cluster = "la")
  w1 <- suppressMessages(wild_boot(f1, "treated", conf_int = FALSE))
  expect_equal(w1$variant, "CR3t")
  expect_equal(w1$dropped, list(L1 = "only_L1"))
  expect_match(w1$note, "without la = L1 dropped the column that cluster alone identifies (only_L1; 1 in all)",
               all = FALSE, fixed = TRUE)
  expect_equal(w1$std.error, sqrt(suppressMessages(vcov(f1, type = "CR3"))["treated", "treated"]), tolerance = 1e-8)
  # the jackknife bootstraps run too (the same reduced leave-out fits)
  wj <- suppressWarnings(wild_boot(f1, "treated", variant = "WCR33", B = 99, seed = 1, conf_int = FALSE))
  expect_equal(wj$variant, "WCR33")
  expect_equal(wj$std.error, w1$std.error, tolerance = 1e-8)
  # `alias_L1` equals `treated` outside L1: without L1 the treatment itself
  # is not identified, so the default falls back to WCU11 (and warns)
  d$alias_L1 <- ifelse(d$la == "L1", 0, d$treated)
  f3 <- sw_glmm(y ~ treated + since + alias_L1 + (1 | la), d, family = gaussian())
  expect_warning(w3 <- wild_boot(f3, "treated", conf_int = FALSE), class = "sfpceval_few_clusters")
  expect_equal(w3$variant, "WCU11")
  expect_match(w3$note, "Without cluster la = L1 `treated` is not identified, so the leave-one-cluster-out fits of CR3t are not defined: WCU11 was used instead",
               all = FALSE, fixed = TRUE)
  expect_null(w3$dropped)
  # bad input
  expect_error(wild_boot(fit, "treated", variant = "CR3"), "variant")
  d2 <- d[d$la %in% c("L1", "L2"), ]
  f2 <- suppressMessages(sw_glmm(y ~ treated + since + (1 | la), d2, family = gaussian()))
  expect_error(wild_boot(f2, "treated"), "needs at least 3 clusters")
})

# Plain R for the jackknife variants when a leave-one-out fit loses columns
# (random intercept by LA): each leave-out fit on the columns qr() keeps,
# the dropped coefficients held at the full (unrestricted) fit's values (an
# offset), restricted with coefficient j at r where the DGP is; the bootstrap
# data of each weight vector (rows of Vr) and each draw's t from GLS refits
# (CR3: the reduced leave-out refits; CR1: the cluster scores).
ref_lmm_boot_drop <- function(fit, d, X, j, r, variant, Vr) {
  cl <- match(d$la, sort(unique(d$la)))
  G <- max(cl)
  W <- solve(diag(nrow(d)) + fit$theta[1]^2 * outer(cl, cl, "=="))
  fit_on <- function(yy, i, hold, restricted) {
    q <- qr(X[i, , drop = FALSE])
    K <- sort(q$pivot[seq_len(q$rank)])
    stopifnot(j %in% K)
    Dd <- setdiff(seq_len(ncol(X)), K)
    yo <- yy[i] - X[i, Dd, drop = FALSE] %*% hold[Dd]
    XK <- X[i, K, drop = FALSE]
    Mi <- solve(crossprod(XK, W[i, i] %*% XK))
    b <- drop(Mi %*% crossprod(XK, W[i, i] %*% yo))
    jk <- match(j, K)
    if (restricted) b <- b - Mi[, jk] * (b[jk] - r) / Mi[jk, jk]
    out <- hold
    out[K] <- b
    out
  }
  all <- rep(TRUE, nrow(d))
  restricted <- substr(variant, 3, 3) == "R"
  bfull <- fit_on(d$y, all, rep(0, ncol(X)), FALSE)
  b0 <- fit_on(d$y, all, bfull, restricted)
  u0 <- drop(d$y - X %*% b0)
  if (substr(variant, 4, 4) == "3") {
    for (g in seq_len(G)) {
      i <- cl == g
      u0[i] <- d$y[i] - drop(X[i, , drop = FALSE] %*% fit_on(d$y, !i, bfull, restricted))
    }
  }
  centre <- if (restricted) r else bfull[j]
  M <- solve(crossprod(X, W %*% X))
  tstat <- function(yy, centre) {
    b <- fit_on(yy, all, rep(0, ncol(X)), FALSE)
    if (substr(variant, 5, 5) == "1") {
      u <- drop(yy - X %*% b)
      sc <- vapply(seq_len(G), function(g) {
        i <- cl == g
        sum(M[j, ] * crossprod(X[i, , drop = FALSE], W[i, i] %*% u[i]))
      }, 0)
      v <- G / (G - 1) * sum(sc^2)
    } else {
      bj <- vapply(seq_len(G), function(g) fit_on(yy, cl != g, b, FALSE)[j], 0)
      v <- (G - 1) / G * sum((bj - b[j])^2)
    }
    (b[j] - centre) / sqrt(v)
  }
  list(t = unname(tstat(d$y, r)),
       tstar = apply(Vr, 1, function(v) tstat(drop(X %*% b0) + u0 * v[cl], centre)))
}

test_that("jackknife variants when a leave-one-out fit loses a column equal plain-R reduced refits over every Rademacher vector", {
  d <- lmm_boot_data(seed = 6)
  # `only_L1` varies in authority L1 only; `step5` is a step indicator
  # present in L3 alone
  d$only_L1 <- as.numeric(d$la == "L1") * d$since
  d$step5 <- as.numeric(d$la == "L3" & d$period == 5)
  f <- y ~ treated + since + only_L1 + step5 + (1 | la)
  fit <- sw_glmm(f, d, family = gaussian())
  X <- model.matrix(~ treated + since + only_L1 + step5, d)
  Vr <- as.matrix(expand.grid(rep(list(c(-1, 1)), 5)))
  quiet <- function(expr) suppressMessages(withCallingHandlers(expr, sfpceval_few_clusters = function(w) invokeRestart("muffleWarning")))
  for (variant in c("WCR31", "WCU31", "WCR33", "WCU33", "WCU13")) {
    wb <- quiet(wild_boot(fit, "treated", weights = "rademacher", r = 0.3, variant = variant))
    ref <- ref_lmm_boot_drop(fit, d, X, 2L, 0.3, variant, Vr)
    expect_equal(wb$variant, variant)
    expect_equal(wb$dropped, list(L1 = "only_L1", L3 = "step5"))
    expect_equal(wb$statistic, ref$t, tolerance = 1e-9)
    expect_equal(sort(wb$tstar), sort(ref$tstar), tolerance = 1e-9)
  }
  # the CR3 t-test is the WC?13 studentisation
  w3 <- quiet(wild_boot(fit, "treated", r = 0.3))
  expect_equal(w3$statistic, ref$t, tolerance = 1e-9)
  expect_equal(w3$p_value, 2 * pt(-abs(ref$t), 4), tolerance = 1e-9)
})
