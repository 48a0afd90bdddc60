# Panel data: clusters with first-treated periods `go` (Inf = never), `n`
# individuals per cluster-period, effects growing with time since go-live.
stagger_data <- function(go, TT = 6, n = 5, seed = 1, dynamic = 0.2, sizes = NULL) {
  set.seed(seed)
  d <- expand.grid(la = names(go), year = seq_len(TT), child = seq_len(n),
                   stringsAsFactors = FALSE)
  if (!is.null(sizes)) d <- d[d$child <= sizes[d$la], ]
  g <- go[d$la]
  d$treated <- as.integer(d$year >= g)
  u <- setNames(rnorm(length(go)), names(go))
  since <- ifelse(d$treated == 1, d$year - g, 0)
  d$y <- u[d$la] + 0.3 * d$year + d$treated * (0.5 + dynamic * since) + rnorm(nrow(d))
  d
}
panel_of <- function(d) {
  p <- aggregate(cbind(y, treated) ~ la + year, d, mean)
  p[order(p$la, p$year), ]
}

test_that("bacon: weighted 2x2 estimates sum to the TWFE coefficient", {
  go <- c(A = 3, B = 3, C = 5, D = Inf, E = Inf, F = 4, G = 2)
  d <- stagger_data(go, sizes = c(A = 5, B = 3, C = 4, D = 5, E = 2, F = 5, G = 3))
  b <- bacon(y ~ treated, d, id = "la", time = "year")
  twfe <- coef(lm(y ~ treated + factor(la) + factor(year), panel_of(d)))[["treated"]]
  expect_equal(b$estimate, twfe, tolerance = 1e-10)
  expect_equal(sum(b$comparisons$estimate * b$comparisons$weight), twfe, tolerance = 1e-10)
  expect_equal(sum(b$comparisons$weight), 1)
  # no never-treated group
  go2 <- c(A = 2, B = 3, C = 5, D = 4)
  d2 <- stagger_data(go2, TT = 7, seed = 2)
  b2 <- bacon(y ~ treated, d2, id = "la", time = "year")
  twfe2 <- coef(lm(y ~ treated + factor(la) + factor(year), panel_of(d2)))[["treated"]]
  expect_equal(sum(b2$comparisons$estimate * b2$comparisons$weight), twfe2, tolerance = 1e-10)
  expect_false(any(b2$comparisons$type == "treated vs never"))
})

test_that("bacon: 2x2 estimates and weights equal a plain-R reference", {
  go <- c(A = 3, B = 5, C = Inf, D = Inf, E = 4)
  d <- stagger_data(go, TT = 7, seed = 3)
  p <- panel_of(d)
  b <- bacon(y ~ treated, d, id = "la", time = "year")
  g <- go[p$la]
  # Goodman-Bacon: s = (N_sub / N)^2 * V_sub / V, with V the mean squared
  # residual of D on unit and time dummies (in the subsample / full panel).
  vD <- function(s) mean(resid(lm(treated ~ factor(la) + factor(year), p[s, ]))^2)
  V <- vD(rep(TRUE, nrow(p)))
  for (i in seq_len(nrow(b$comparisons))) {
    cmp <- b$comparisons[i, ]
    a <- cmp$treated; c0 <- cmp$control
    win <- switch(cmp$type,
      "treated vs never" = rep(TRUE, nrow(p)),
      "earlier vs later" = p$year < c0,
      "later vs earlier" = p$year >= c0)
    s <- (g == a | g == c0) & win
    sub <- p[s, ]
    sub$D <- as.integer(sub$year >= go[sub$la] & go[sub$la] == a)
    est <- coef(lm(y ~ D + factor(la) + factor(year), sub))[["D"]]
    expect_equal(cmp$estimate, est, tolerance = 1e-10)
    sub$treated <- sub$D
    wt <- (sum(s) / nrow(p))^2 * mean(resid(lm(treated ~ factor(la) + factor(year), sub))^2) / V
    expect_equal(cmp$weight, wt, tolerance = 1e-10)
  }
})

test_that("bacon: hand-made 2 x 2 case and weighted cell means", {
  # A treated from period 2, B never: one comparison, weight 1, estimate the
  # difference in differences (4 - 1) - (2 - 1) = 2.
  d <- data.frame(la = c("A", "A", "B", "B"), year = c(1, 2, 1, 2),
                  y = c(1, 4, 1, 2), treated = c(0, 1, 0, 0))
  b <- bacon(y ~ treated, d, id = "la", time = "year")
  expect_equal(nrow(b$comparisons), 1L)
  expect_equal(b$comparisons$weight, 1)
  expect_equal(b$comparisons$estimate, 2)
  # individual weights enter the cell means
  d2 <- rbind(d, data.frame(la = "A", year = 2, y = 10, treated = 1))
  b2 <- bacon(y ~ treated, d2, id = "la", time = "year", weights = c(1, 3, 1, 1, 1))
  expect_equal(unname(b2$panel["A", 2]), (3 * 4 + 10) / 4)
  expect_equal(b2$estimate, ((3 * 4 + 10) / 4 - 1) - (2 - 1))
})

test_that("bacon: bad input gives clear errors", {
  go <- c(A = 3, B = Inf, C = 4)
  d <- stagger_data(go, n = 2)
  expect_snapshot(bacon(y ~ treated, d[!(d$la == "A" & d$year == 2), ], id = "la", time = "year"), error = TRUE)
  d1 <- stagger_data(c(A = 1, B = Inf, C = 3), n = 2)
  expect_snapshot(bacon(y ~ treated, d1, id = "la", time = "year"), error = TRUE)
  back <- d; back$treated[back$la == "A" & back$year == 6] <- 0
  expect_snapshot(bacon(y ~ treated, back, id = "la", time = "year"), error = TRUE)
  expect_snapshot(bacon(y ~ treated + x, d, id = "la", time = "year"), error = TRUE)
})

# Plain-R reference for ATT(g, t) in repeated cross-sections.
att_ref <- function(d, g, t, base, control, X = NULL, delta = 0) {
  G <- tapply(ifelse(d$treated == 1, d$year, Inf), d$la, min)
  gr <- G[d$la]
  ctrl <- if (control == "never") is.infinite(gr) else
    (is.infinite(gr) | gr > max(t, base) + delta) & gr != g
  m <- function(s) mean(d$y[s])
  tr <- m(gr == g & d$year == t) - m(gr == g & d$year == base)
  if (is.null(X)) return(tr - (m(ctrl & d$year == t) - m(ctrl & d$year == base)))
  ft <- lm(y ~ x, d[ctrl & d$year == t, ])
  fb <- lm(y ~ x, d[ctrl & d$year == base, ])
  both <- d[gr == g & d$year %in% c(t, base), ]
  tr - mean(predict(ft, both) - predict(fb, both))
}

test_that("att_gt equals a plain-R reference (never, not yet, covariates)", {
  go <- c(A = 3, B = 3, C = 5, D = Inf, E = Inf, F = 4)
  d <- stagger_data(go, TT = 6, n = 8, seed = 4, sizes = c(A = 8, B = 5, C = 6, D = 8, E = 7, F = 4))
  d$x <- rnorm(nrow(d))
  for (control in c("never", "not_yet")) {
    a <- att_gt(d, outcome = "y", time = "year", control = control)
    for (i in seq_len(nrow(a$att))) {
      r <- a$att[i, ]
      base <- if (r$post) r$group - 1 else r$time - 1
      expect_equal(r$att, att_ref(d, r$group, r$time, base, control), tolerance = 1e-12)
    }
    ac <- att_gt(d, outcome = "y", time = "year", control = control, covariates = ~x)
    for (i in seq_len(nrow(ac$att))) {
      r <- ac$att[i, ]
      base <- if (r$post) r$group - 1 else r$time - 1
      expect_equal(r$att, att_ref(d, r$group, r$time, base, control, X = TRUE), tolerance = 1e-10)
    }
  }
  au <- att_gt(d, outcome = "y", time = "year", base_period = "universal")
  r <- au$att[!au$att$post, ][1, ]
  expect_equal(r$att, att_ref(d, r$group, r$time, r$group - 1, "never"), tolerance = 1e-12)
  ad <- att_gt(d, outcome = "y", time = "year", anticipation = 1)
  r <- ad$att[ad$att$post, ][1, ]
  expect_equal(r$att, att_ref(d, r$group, r$time, r$group - 2, "never"), tolerance = 1e-12)
})

test_that("aggregations follow the did package's formulas", {
  go <- c(A = 3, B = 3, C = 5, D = Inf, E = Inf, F = 4)
  d <- stagger_data(go, TT = 6, n = 6, seed = 5, sizes = c(A = 6, B = 3, C = 5, D = 6, E = 6, F = 2))
  a <- att_gt(d, outcome = "y", time = "year")
  at <- a$att
  G <- tapply(ifelse(d$treated == 1, d$year, Inf), d$la, min)
  pg <- c(`3` = mean(G[d$la] == 3), `4` = mean(G[d$la] == 4), `5` = mean(G[d$la] == 5))
  at$pg <- pg[as.character(at$group)]
  post <- at[at$post, ]
  s <- aggregate_att(a, "simple", inference = "none")
  expect_equal(s$overall$estimate, sum(post$att * post$pg) / sum(post$pg))
  dy <- aggregate_att(a, "dynamic", inference = "none")
  theta <- sapply(sort(unique(at$event_time)), function(e) {
    k <- at$event_time == e; sum(at$att[k] * at$pg[k]) / sum(at$pg[k]) })
  expect_equal(dy$by$estimate, theta)
  expect_equal(dy$overall$estimate, mean(theta[sort(unique(at$event_time)) >= 0]))
  gr <- aggregate_att(a, "group", inference = "none")
  tg <- sapply(3:5, function(g) mean(post$att[post$group == g]))
  expect_equal(gr$by$estimate, tg)
  expect_equal(gr$overall$estimate, sum(tg * pg) / sum(pg))
  ca <- aggregate_att(a, "calendar", inference = "none")
  tt <- sapply(3:6, function(t) { k <- post$time == t; sum(post$att[k] * post$pg[k]) / sum(post$pg[k]) })
  expect_equal(ca$by$estimate, tt)
  expect_equal(ca$overall$estimate, mean(tt))
})

test_that("one treated cohort: the event study equals the event-time DiD regression", {
  go <- c(A = 4, B = 4, C = Inf, D = Inf, E = Inf)
  d <- stagger_data(go, TT = 6, n = 4, seed = 6)   # balanced cells
  a <- att_gt(d, outcome = "y", time = "year", base_period = "universal")
  dy <- aggregate_att(a, "dynamic", inference = "none")
  e <- ifelse(is.finite(go[d$la]), d$year - go[d$la], NA)
  for (k in setdiff(sort(unique(e[!is.na(e)])), -1)) {
    d[[paste0("e", k + 10)]] <- as.integer(!is.na(e) & e == k)
  }
  f <- reformulate(c(grep("^e[0-9]", names(d), value = TRUE), "factor(la)", "factor(year)"), "y")
  b <- coef(lm(f, d))
  es <- dy$by$event_time[dy$by$event_time != -1]
  expect_equal(dy$by$estimate[dy$by$event_time != -1], unname(b[paste0("e", es + 10)]),
               tolerance = 1e-10)
})

test_that("randomisation inference equals a plain-R loop over go-live assignments", {
  go <- c(A = 3, B = 4, C = Inf, D = Inf, E = Inf)
  d <- stagger_data(go, TT = 5, n = 4, seed = 7)
  a <- att_gt(d, outcome = "y", time = "year")
  s <- aggregate_att(a, "simple")
  # all 5! / 3! = 20 distinct assignments of (3, 4, Inf, Inf, Inf)
  perms <- as.matrix(expand.grid(rep(list(1:5), 5)))
  perms <- perms[apply(perms, 1, function(p) length(unique(p)) == 5), ]   # the 120 orders
  assign <- unique(t(apply(perms, 1, function(p) go[p])))
  expect_equal(nrow(assign), 20L)
  stat <- apply(assign, 1, function(gv) {
    gv <- setNames(gv, names(go))
    dd <- d
    dd$treated <- as.integer(dd$year >= gv[dd$la])
    aggregate_att(att_gt(dd, outcome = "y", time = "year"), "simple", inference = "none")$overall$estimate
  })
  expect_equal(s$overall$p_value, mean(abs(stat) >= abs(s$overall$estimate) - 1e-12))
  expect_equal(s$n_assignments, 20)
  expect_equal(s$min_p, 1 / 20)
})

test_that("the randomisation interval inverts the test", {
  go <- c(A = 3, B = 4, C = 5, D = Inf, E = Inf, F = Inf, G = Inf)
  d <- stagger_data(go, TT = 6, n = 5, seed = 8, dynamic = 0)
  a <- att_gt(d, outcome = "y", time = "year")
  s <- aggregate_att(a, "simple")
  ci <- c(s$overall$conf.low, s$overall$conf.high)
  pval <- function(theta) {
    dd <- d
    dd$y <- dd$y - theta * dd$treated
    aggregate_att(att_gt(dd, outcome = "y", time = "year"), "simple")$overall$p_value
  }
  expect_ci_inverts(pval, ci)
})

test_that("att_gt: bad input gives clear errors", {
  go <- c(A = 3, B = 4, C = 5)
  d <- stagger_data(go, TT = 6, n = 2)
  expect_snapshot(att_gt(d, outcome = "y", time = "year"), error = TRUE)   # no never-treated
  expect_s3_class(att_gt(d, outcome = "y", time = "year", control = "not_yet"), "sfp_att_gt")
  d1 <- stagger_data(c(A = 1, B = Inf), TT = 3, n = 2)
  expect_snapshot(att_gt(d1, outcome = "y", time = "year"), error = TRUE)
  expect_snapshot(att_gt(d, outcome = "nope", time = "year"), error = TRUE)
})

test_that("one cohort, one pre-period: the event study equals did_fit() with event_time()", {
  go <- c(A = 2, B = 2, C = Inf, D = Inf, E = Inf)
  d <- stagger_data(go, TT = 4, n = 5, seed = 12)
  d$go <- ifelse(is.finite(go[d$la]), go[d$la], NA)
  d <- event_time(d, "go", "year")
  expect_warning(fit <- did_fit(y ~ event_1 + event_2 + event_3 | la + year, d, cluster = ~la,
                                family = "gaussian", vcov = "CR1"),
                 class = "sfpceval_few_treated")      # two treated authorities
  a <- att_gt(d, outcome = "y", time = "year")
  dy <- aggregate_att(a, "dynamic", inference = "none")
  expect_equal(dy$by$estimate, unname(coef(fit)[c("event_1", "event_2", "event_3")]),
               tolerance = 1e-10)
})

# ---- periods as analysts have them (#13) ----

# shaped like bacondecomp's `castle` (neither bacondecomp nor did is a
# Debian package, so their data are rebuilt here): 50 states x 2000..2010,
# treatment `post` from 2005..2009 in 21 states, 29 never, one row per
# state-year
castle_like <- function(seed = 41) {
  set.seed(seed)
  first <- c(2005, rep(2006, 13), rep(2007, 4), rep(2008, 2), 2009, rep(Inf, 29))
  d <- expand.grid(state = paste0("S", 1:50), year = 2000:2010, stringsAsFactors = FALSE)
  g <- setNames(first, paste0("S", 1:50))[d$state]
  d$post <- as.integer(d$year >= g)
  d$l_homicide <- rnorm(50)[match(d$state, paste0("S", 1:50))] + 0.02 * (d$year - 2000) +
    0.08 * d$post + rnorm(nrow(d), sd = 0.3)
  d
}

# shaped like did's `mpdta`: 500 counties x 2003..2007, first.treat 2004,
# 2006, 2007 or 0 (never)
mpdta_like <- function(seed = 42) {
  set.seed(seed)
  ft <- sample(c(0, 2004, 2006, 2007), 500, TRUE, prob = c(0.62, 0.04, 0.08, 0.26))
  d <- expand.grid(countyreal = 1:500, year = 2003:2007)
  d$first.treat <- ft[d$countyreal]
  d$treat <- as.integer(d$first.treat > 0)
  post <- d$first.treat > 0 & d$year >= d$first.treat
  d$lemp <- rnorm(500, 6)[d$countyreal] + 0.01 * (d$year - 2003) -
    0.04 * post + rnorm(nrow(d), sd = 0.1)
  d
}

test_that("bacon() takes calendar years (castle shape): equal to the TWFE lm and to 1..T", {
  d <- castle_like()
  b <- bacon(l_homicide ~ post, d, id = "state", time = "year")
  twfe <- coef(lm(l_homicide ~ post + factor(state) + factor(year), d))[["post"]]
  expect_equal(b$estimate, twfe, tolerance = 1e-10)
  expect_equal(sum(b$comparisons$estimate * b$comparisons$weight), twfe, tolerance = 1e-10)
  # groups are the analyst's years; Inf the never treated
  expect_true(all(b$comparisons$treated %in% 2005:2009))
  expect_true(all(b$comparisons$control %in% c(2005:2009, Inf)))
  expect_equal(colnames(b$panel), as.character(2000:2010))
  # the same as the periods coded 1..11 and 0..10, labels aside
  for (shift in c(1999, 2000)) {
    d1 <- d
    d1$year <- d1$year - shift
    b1 <- bacon(l_homicide ~ post, d1, id = "state", time = "year")
    expect_equal(b1$estimate, b$estimate, tolerance = 1e-12)
    expect_equal(b1$comparisons$estimate, b$comparisons$estimate, tolerance = 1e-12)
    expect_equal(b1$comparisons$weight, b$comparisons$weight, tolerance = 1e-12)
    expect_equal(b1$comparisons$treated, b$comparisons$treated - shift)
  }
})

test_that("att_gt() takes calendar years (mpdta shape): equal to the plain-R ATT(g, t) and to 1..T", {
  d <- mpdta_like()
  d$treated <- as.integer(d$first.treat > 0 & d$year >= d$first.treat)
  d$la <- d$countyreal
  d$y <- d$lemp
  a <- att_gt(d, outcome = "lemp", time = "year", cluster = "countyreal")
  expect_setequal(unique(a$att$group), c(2004, 2006, 2007))
  expect_true(all(a$att$time %in% 2003:2007))
  for (i in seq_len(nrow(a$att))) {
    r <- a$att[i, ]
    base <- if (r$post) r$group - 1 else r$time - 1
    expect_equal(r$att, att_ref(d, r$group, r$time, base, "never"), tolerance = 1e-12)
  }
  expect_equal(a$att$event_time, a$att$time - a$att$group)
  d0 <- d
  d0$year <- d0$year - 2003                         # 0..4
  a0 <- att_gt(d0, outcome = "lemp", time = "year", cluster = "countyreal")
  expect_equal(a0$att$att, a$att$att, tolerance = 1e-12)
  expect_equal(a0$att$group, a$att$group - 2003)
  s <- aggregate_att(a, "group", inference = "none")
  expect_equal(s$by$group, c(2004, 2006, 2007))
  s0 <- aggregate_att(a0, "group", inference = "none")
  expect_equal(s0$overall$estimate, s$overall$estimate, tolerance = 1e-12)
})

test_that("a gap in numeric periods is not a period: warned, and equal to the periods present", {
  go <- c(A = 3, B = 4, C = Inf, D = Inf, E = 5)
  d <- stagger_data(go, TT = 6, n = 6, seed = 43)
  years <- c(2015, 2016, 2018, 2019, 2020, 2021)      # no 2017
  dy <- d
  dy$year <- years[d$year]
  expect_warning(ay <- att_gt(dy, outcome = "y", time = "year"),
                 "`year` has no rows at 2017 .* 2018 follows 2016")
  a <- att_gt(d, outcome = "y", time = "year")
  expect_equal(ay$att$att, a$att$att, tolerance = 1e-12)
  expect_equal(ay$att$group, years[a$att$group])
  expect_equal(ay$att$event_time, a$att$event_time)   # counted in periods present
  expect_equal(ay$gaps, 2017)
  # the pre-period effect of the 2018 group at 2018 - 1 period uses base 2016
  r <- ay$att[ay$att$group == 2018 & ay$att$time == 2016, ]
  d$yr <- years[d$year]
  expect_equal(r$att, att_ref(d, 3, 2, 1, "never"), tolerance = 1e-12)
  expect_warning(by <- bacon(y ~ treated, dy, id = "la", time = "year"), "no rows at 2017")
  expect_equal(by$estimate, bacon(y ~ treated, d, id = "la", time = "year")$estimate,
               tolerance = 1e-12)
  # evenly spaced numbers (2-year steps) are no gap
  d2 <- d
  d2$year <- 2010 + 2 * d2$year
  expect_silent(a2 <- att_gt(d2, outcome = "y", time = "year"))
  expect_equal(a2$att$att, a$att$att, tolerance = 1e-12)
  # quarters coded as numbers (20171, ..., 20174, 20181, ...) are no gap
  d4 <- d
  d4$year <- c(20171, 20172, 20173, 20174, 20181, 20182)[d4$year]
  expect_silent(a4 <- att_gt(d4, outcome = "y", time = "year"))
  expect_equal(a4$att$att, a$att$att, tolerance = 1e-12)
  expect_equal(period_gaps(c(2015, 2016, 2018, 2020)), c(2017, 2019))
  # financial years as labels keep working, results in positions
  d3 <- d
  d3$year <- sprintf("%d/%02d", 2014 + d3$year, (15 + d3$year) %% 100)
  a3 <- att_gt(d3, outcome = "y", time = "year")
  expect_equal(a3$att$att, a$att$att, tolerance = 1e-12)
  expect_output(print(a3), "2017/18")
})

# ---- randomisation inference with covariates from cell statistics (#16) ----

# plain-R reference: for every assignment of the groups, each ATT(g, t) by
# weighted lm() fits on the control rows (Sant'Anna & Zhao's reg_did), for the
# outcome and the post-treatment indicator; the package's aggregation
# weights, p-values and test inversion then act on these.
ri_ref <- function(a, type, n_perm, max_enumerate, seed = 1) {
  obj <- a
  perms <- group_assignments(obj$G, max_enumerate, n_perm, seed)
  d <- data.frame(y = obj$y, w = obj$w, t = obj$t, cl = obj$cl, obj$X[, -1, drop = FALSE])
  xs <- colnames(obj$X)[-1]
  one <- function(G, ycol) {
    gr <- G[d$cl]
    P <- do.call(rbind, att_pairs(obj, G))
    vapply(seq_len(nrow(P)), function(i) {
      g <- P[i, 1]; t <- P[i, 2]; b <- P[i, 3]
      ctrl <- if (obj$control == "never") is.infinite(gr) else
        (is.infinite(gr) | gr > max(t, b) + obj$anticipation) & gr != g
      m <- function(s) sum(d$w[s] * ycol[s]) / sum(d$w[s])
      tr <- m(gr == g & d$t == t) - m(gr == g & d$t == b)
      dd <- d
      dd$yy <- ycol
      f <- reformulate(xs, "yy")
      ft <- lm(f, dd[ctrl & d$t == t, ], weights = w)
      fb <- lm(f, dd[ctrl & d$t == b, ], weights = w)
      both <- dd[gr == g & d$t %in% c(t, b), ]
      tr - sum(both$w * (predict(ft, both) - predict(fb, both))) / sum(both$w)
    }, 0)
  }
  post <- as.numeric(obj$t >= obj$G[obj$cl] - obj$anticipation)
  est <- function(G, ycol) {
    tab <- att_table(obj, ycol, G)
    tab$att <- one(G, ycol)
    A <- aggregation_weights(obj, tab, G, type)$A
    drop(A %*% tab$att)[1]
  }
  Ry <- apply(perms$assignments, 1, function(g) est(setNames(g, names(obj$G)), obj$y))
  Rp <- apply(perms$assignments, 1, function(g) est(setNames(g, names(obj$G)), post))
  a0 <- est(obj$G, obj$y)
  b0 <- est(obj$G, post)
  list(estimate = a0, p = perm_pvalues(Ry, a0, perms$sampled),
       ci = invert_linear(Ry, Rp, a0, b0, 0.05, perms$sampled),
       parts = list(A = Ry, B = Rp, a = a0, b = b0, sampled = perms$sampled))
}

test_that("randomisation inference with covariates equals row-level regressions for every draw", {
  go <- c(A = 3, B = 4, C = Inf, D = Inf, E = Inf, F = 3)
  d <- stagger_data(go, TT = 5, n = 6, seed = 51,
                    sizes = c(A = 6, B = 4, C = 5, D = 6, E = 3, F = 4))
  d$x <- rnorm(nrow(d)) + 0.2 * d$year
  d$z <- rbinom(nrow(d), 1, 0.4)
  d$wt <- runif(nrow(d), 0.5, 2)
  for (control in c("never", "not_yet")) {
    a <- att_gt(d, outcome = "y", time = "year", control = control, covariates = ~ x + z,
                weights = "wt")
    s <- aggregate_att(a, "simple", max_enumerate = 500)   # 60 assignments, all
    ref <- ri_ref(a, "simple", 999, 500)
    expect_equal(s$overall$estimate, ref$estimate, tolerance = 1e-10)
    expect_equal(s$overall$p_value, ref$p, tolerance = 1e-12)
    expect_equal(c(s$overall$conf.low, s$overall$conf.high), ref$ci, tolerance = 1e-8)
    expect_false(s$sampled)
  }
  # sampled draws
  s <- aggregate_att(a, "group", max_enumerate = 10, n_perm = 25, seed = 3)
  ref <- ri_ref(a, "group", 25, 10, seed = 3)
  expect_equal(s$overall$p_value, ref$p, tolerance = 1e-12)
  expect_true(s$sampled)
})

test_that("covariate-adjusted ATT(g, t): a covariate only the controls cannot identify gets 0, as lm.wfit", {
  go <- c(A = 3, B = Inf, C = Inf, D = 4)
  d <- stagger_data(go, TT = 5, n = 6, seed = 52)
  d$x <- rnorm(nrow(d))
  d$x2 <- 2 * d$x                                    # collinear: lm drops it
  a <- att_gt(d, outcome = "y", time = "year", covariates = ~ x + x2)
  b <- att_gt(d, outcome = "y", time = "year", covariates = ~ x)
  expect_equal(a$att$att, b$att$att, tolerance = 1e-8)
  # shifting and scaling the covariate changes nothing
  d$x <- 1000 + 50 * d$x
  b2 <- att_gt(d, outcome = "y", time = "year", covariates = ~ x)
  expect_equal(b2$att$att, b$att$att, tolerance = 1e-8)
})

# The randomisation interval's own doubling-and-bisection loop, as it was
# before it went through invert_test() (#13): the reference for the shared
# test inversion.
invert_linear_loop <- function(A, B, a, b, alpha, sampled) {
  pval <- function(theta) {
    ext <- abs(A - theta * B) >= abs(a - theta * b) - 1e-12
    if (sampled) (1 + sum(ext)) / (length(A) + 1) else mean(ext)
  }
  est <- a / b
  if (!is.finite(est) || pval(est) <= alpha) return(c(NA_real_, NA_real_))
  scale <- max(1e-8, stats::sd(A) / max(abs(b), 1e-8), abs(est))
  invert_loop_ref(pval, est, scale, alpha, expand = 60, bisect = 60)
}

test_that("the randomisation interval through invert_test() equals the former loop (#13)", {
  go <- c(A = 3, B = 4, C = Inf, D = Inf, E = Inf, F = 3)
  d <- stagger_data(go, TT = 5, n = 6, seed = 51,
                    sizes = c(A = 6, B = 4, C = 5, D = 6, E = 3, F = 4))
  d$x <- rnorm(nrow(d)) + 0.2 * d$year
  d$z <- rbinom(nrow(d), 1, 0.4)
  a <- att_gt(d, outcome = "y", time = "year", covariates = ~ x + z)
  for (enum in c(500, 10)) {                       # all 60 assignments; 25 sampled
    s <- aggregate_att(a, "simple", max_enumerate = enum, n_perm = 25, seed = 3)
    p <- ri_ref(a, "simple", 25, enum, seed = 3)$parts
    old <- invert_linear_loop(p$A, p$B, p$a, p$b, 0.05, p$sampled)
    scale <- max(sd(p$A) / abs(p$b), abs(p$a / p$b))
    expect_true(all(is.finite(old)))
    # both bisect to a jump of the p-value step function (60 halvings)
    expect_equal(c(s$overall$conf.low, s$overall$conf.high), old, tolerance = 1e-9 * scale)
    expect_identical(s$sampled, enum == 10)
  }
  # an interval unbounded on one side: the permutations' B all equal b
  set.seed(2)
  A <- rnorm(40)
  A[1] <- 0.3
  for (sampled in c(FALSE, TRUE)) {
    old <- invert_linear_loop(A, rep(1, 40), 0.3, 1, 0.05, sampled)
    new <- invert_linear(A, rep(1, 40), 0.3, 1, 0.05, sampled)
    expect_identical(is.finite(new), is.finite(old))
    expect_true(any(is.infinite(new)))
    expect_equal(new[is.finite(new)], old[is.finite(old)], tolerance = 1e-9)
  }
})
