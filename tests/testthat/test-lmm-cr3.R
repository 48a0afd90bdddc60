# CR3 (leave-one-cluster-out jackknife) variance and t(G - 1) tests for the
# linear mixed model (#13).

# cr3_data(): helper-lmm-data.R

# Plain R, dense: refit the GLS without each cluster (working covariance Phi,
# the fit's variance components), V = (G - 1) / G sum_g (b_(g) - b)(b_(g) - b)'.
ref_cr3 <- function(X, y, cl, Phi) {
  gls <- function(i) {
    Pi <- solve(Phi[i, i])
    drop(solve(crossprod(X[i, , drop = FALSE], Pi %*% X[i, , drop = FALSE]),
               crossprod(X[i, , drop = FALSE], Pi %*% y[i])))
  }
  b <- gls(seq_along(y))
  gs <- sort(unique(cl))
  D <- sapply(gs, function(g) gls(which(cl != g)) - b)
  (length(gs) - 1) / length(gs) * tcrossprod(D)
}

test_that("LMM CR3 equals a dense leave-one-cluster-out GLS refit and clubSandwich's CR3 times (G - 1) / G", {
  d <- cr3_data(3)
  cl <- match(d$la, sort(unique(d$la)))
  cases <- lmm_variance_cases(d, child_fixed = y ~ treated + yr)
  for (cs in cases) {
    X <- model.matrix(parse_glmm_formula(cs$f)$fixed, d)
    fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la")
    ref <- ref_cr3(X, d$y, cl, diag(nrow(d)) + cs$phi(fit$theta))
    expect_equal(unname(vcov(fit, type = "CR3")), unname(ref), tolerance = 1e-8)
    # prior weights: residual variance sigma^2 / w
    fw <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la", weights = "w")
    refw <- ref_cr3(X, d$y, cl, diag(1 / d$w) + cs$phi(fw$theta))
    expect_equal(unname(vcov(fw, type = "CR3")), unname(refw), tolerance = 1e-8)
  }
  skip_if_not_installed("clubSandwich")
  skip_if_not_installed("lme4")
  # clubSandwich's CR3 adjustment (I - X_g M X_g'W_g)^-1 gives the same
  # leave-out differences without the factor (G - 1) / G of MacKinnon,
  # Nielsen & Webb (2023); lmer's variance components agree with sw_glmm's to
  # about 1e-6
  for (cs in cases) {
    fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la")
    l <- lme4::lmer(cs$f, d)
    vc <- clubSandwich::vcovCR(l, cluster = d$la, type = "CR3")
    expect_equal(unname(vcov(fit, type = "CR3")), unname(as.matrix(vc)) * 5 / 6, tolerance = 1e-5)
  }
})

test_that("LMM CR3 on a hand-made 3-cluster case, and its t-test with G - 1 df", {
  # balanced clusters, intercept only: the GLS estimate is the mean of the
  # cluster means m_g whatever the variance components, the fit without g the
  # mean of the other two, so b_(g) - b = -(m_g - b) / 2 and
  # CR3 = (2 / 3) sum_g (m_g - b)^2 / 4. Means 1, 2, 6: b = 3, CR3 = 14 / 6.
  d <- data.frame(la = rep(c("A", "B", "C"), each = 4),
                  y = c(0, 2, 1, 1, 1, 3, 2, 2, 5, 7, 6, 6))
  fit <- sw_glmm(y ~ 1 + (1 | la), d, family = gaussian(), cluster = "la")
  expect_equal(unname(coef(fit)), 3, tolerance = 1e-10)
  expect_equal(unname(vcov(fit, type = "CR3")[1, 1]), 14 / 6, tolerance = 1e-10)
  tab <- generics::tidy(fit, vcov = "CR3", conf.level = 0.9)
  r <- tab[tab$term == "(Intercept)", ]
  expect_equal(r$std.error, sqrt(14 / 6), tolerance = 1e-10)
  expect_equal(r$df, 2)
  expect_equal(r$statistic, 3 / sqrt(14 / 6), tolerance = 1e-10)
  expect_equal(r$p.value, 2 * pt(-3 / sqrt(14 / 6), 2), tolerance = 1e-10)
  expect_equal(r$conf.high - r$estimate, qt(0.95, 2) * sqrt(14 / 6), tolerance = 1e-10)
  # the default table is unchanged (model-based, normal reference)
  t0 <- generics::tidy(fit)
  expect_null(t0$df)
  expect_equal(t0$std.error[1], sqrt(vcov(fit)[1, 1]))
  # CR2 table: Satterthwaite df
  t2 <- generics::tidy(fit, vcov = "CR2")
  expect_equal(t2$df[1], unname(fit$cr2$df[1]))
  expect_equal(t2$std.error[1], sqrt(vcov(fit, type = "CR2")[1, 1]))
})

test_that("LMM CR3: invariant to shifting/scaling the outcome and row order; agrees with wild_boot's CR3; errors", {
  d <- cr3_data(4)
  f <- y ~ treated + since + (1 | la / child_id)
  f0 <- sw_glmm(f, d, family = gaussian(), cluster = "la")
  d2 <- d
  d2$y <- (d$y + 1e4) * 1000
  f2 <- sw_glmm(f, d2, family = gaussian(), cluster = "la")
  expect_equal(sqrt(diag(vcov(f2, type = "CR3")))[-1], 1000 * sqrt(diag(vcov(f0, type = "CR3")))[-1],
               tolerance = 1e-8)
  o <- rev(seq_len(nrow(d)))
  f3 <- sw_glmm(f, d[o, ], family = gaussian(), cluster = "la")
  expect_equal(vcov(f3, type = "CR3"), vcov(f0, type = "CR3"), tolerance = 1e-8)
  # the studentising variance of the WC?13 bootstrap is the same CR3
  wb <- suppressWarnings(wild_boot(f0, "treated", variant = "WCU13", B = 99, seed = 1))
  expect_equal(wb$std.error, sqrt(vcov(f0, type = "CR3")["treated", "treated"]), tolerance = 1e-8)
  # no cluster: an error saying how to get one
  expect_error(vcov(sw_glmm(f, d, family = gaussian()), type = "CR3"), "no cluster-robust")
  expect_error(generics::tidy(sw_glmm(f, d, family = gaussian()), vcov = "CR3"), "no cluster-robust")
  # LA fixed effects: without an LA its dummy is not identified, so that
  # leave-out fit drops it (MacKinnon, Nielsen & Webb's CV3 with cluster
  # fixed effects); `treated` keeps its CR3, the intercept and the dummies
  # (not identified without the reference LA) have none and the message
  # names them (values against the references in the next test)
  fl <- sw_glmm(y ~ treated + factor(la) + (1 | child_id), d, family = gaussian(), cluster = "la")
  expect_message(vl <- vcov(fl, type = "CR3"), "not identified without `la` = L1")
  lost <- grepl("^factor|Intercept", colnames(vl))
  expect_true(all(is.na(vl[lost, ])) && all(is.na(vl[, lost])))
  expect_true(is.finite(vl["treated", "treated"]) && vl["treated", "treated"] > 0)
  expect_true(all(is.finite(vcov(fl, type = "CR2"))))
})

# Plain R, dense, for leave-out fits that lose columns: the GLS without each
# cluster on the columns lm()'s pivoted QR keeps (aliased later columns
# dropped), V = (G - 1) / G sum_g (b_(g) - b)(b_(g) - b)' over the
# coefficients `keep` (identified without every cluster).
ref_cr3_drop <- function(X, y, cl, Phi, keep) {
  gls <- function(i) {
    q <- qr(X[i, , drop = FALSE])
    k <- sort(q$pivot[seq_len(q$rank)])
    Xi <- X[i, k, drop = FALSE]
    Pi <- solve(Phi[i, i])
    b <- rep(NA_real_, ncol(X))
    b[k] <- solve(crossprod(Xi, Pi %*% Xi), crossprod(Xi, Pi %*% y[i]))
    stats::setNames(b, colnames(X))
  }
  b <- gls(seq_along(y))
  gs <- sort(unique(cl))
  D <- sapply(gs, function(g) (gls(which(cl != g)) - b)[keep])
  (length(gs) - 1) / length(gs) * tcrossprod(matrix(D, length(keep)))
}

test_that("LMM CR3 when leave-one-cluster-out fits lose columns: the reduced fits' estimates, as dense GLS refits and lmer", {
  d <- cr3_data(3)
  cl <- match(d$la, sort(unique(d$la)))
  ch <- paste(d$child_id, d$la)
  # a covariate that lives in one LA, a step indicator present in one LA
  # only, LA fixed effects
  d$z <- ifelse(d$la == "L2", d$since, 0)
  d$per <- ifelse(d$period == 5 & d$la != "L3", 4, d$period)
  cases <- list(
    list(f = y ~ treated + since + z + (1 | la), keep = c("(Intercept)", "treated", "since"),
         lost = list(L2 = "z"), phi = function(th) th[1]^2 * outer(cl, cl, "==")),
    list(f = y ~ treated + factor(per) + since + (1 | la / child_id), keep = c("treated", "since", "factor(per)1"),
         lost = list(L3 = "factor(per)5"),
         phi = function(th) th[1]^2 * outer(cl, cl, "==") + th[2]^2 * outer(ch, ch, "==")),
    list(f = y ~ treated + since + factor(la) + (1 | child_id), keep = c("treated", "since"),
         lost = NULL, phi = function(th) th[1]^2 * outer(d$child_id, d$child_id, "==")))
  for (cs in cases) {
    X <- model.matrix(parse_glmm_formula(cs$f)$fixed, d)
    fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la")
    V <- suppressMessages(vcov(fit, type = "CR3"))
    ref <- ref_cr3_drop(X, d$y, cl, diag(nrow(d)) + cs$phi(fit$theta), cs$keep)
    expect_equal(unname(V[cs$keep, cs$keep]), unname(ref), tolerance = 1e-8)
    # every other coefficient is lost without some cluster: NA
    other <- setdiff(colnames(V), cs$keep)
    if (!grepl("factor(la)", deparse(cs$f), fixed = TRUE)) {
      expect_equal(fit$cr2$cr3$dropped, cs$lost)
      expect_equal(other[vapply(other, function(k) all(is.na(V[k, ])), TRUE)], unlist(cs$lost, use.names = FALSE))
    } else {
      expect_true(all(is.na(V[other, ])))
      expect_equal(length(fit$cr2$cr3$dropped), 6L)                  # every LA's fit drops one column
    }
    fw <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la", weights = "w")
    refw <- ref_cr3_drop(X, d$y, cl, diag(1 / d$w) + cs$phi(fw$theta), cs$keep)
    expect_equal(unname(suppressMessages(vcov(fw, type = "CR3"))[cs$keep, cs$keep]), unname(refw), tolerance = 1e-8)
    # the CR3 t-test of wild_boot() is the same, and it names what was
    # dropped (wild_boot() needs the LA as the outer random effect)
    if (grepl("factor(la)", deparse(cs$f), fixed = TRUE)) next
    wb <- suppressMessages(wild_boot(fit, "treated"))
    expect_equal(wb$variant, "CR3t")
    expect_equal(wb$std.error, sqrt(V["treated", "treated"]), tolerance = 1e-8)
    expect_equal(names(wb$dropped), names(fit$cr2$cr3$dropped))
    expect_match(wb$note, "its jackknife estimate is its estimate in the reduced fit", all = FALSE, fixed = TRUE)
  }
  # near-collinear but identified: the covariate with small noise (1e-4 of
  # its SD) outside L2 is kept in every leave-out fit (no column dropped),
  # and CR3 is the full-rank dense refits'
  dn <- d
  set.seed(9)
  dn$z <- dn$z + ifelse(dn$la == "L2", 0, 1e-4 * sd(dn$since) * rnorm(nrow(dn)))
  fn <- sw_glmm(cases[[1]]$f, dn, family = gaussian(), cluster = "la")
  expect_length(fn$cr2$cr3$dropped, 0L)
  Xn <- model.matrix(~ treated + since + z, dn)
  Vn <- unname(vcov(fn, type = "CR3"))
  refn <- unname(ref_cr3(Xn, dn$y, cl, diag(nrow(dn)) + cases[[1]]$phi(fn$theta)))
  expect_equal(Vn[1:3, 1:3], refn[1:3, 1:3], tolerance = 1e-8)
  # z's own entries: its information without L2 is about 1e-8 of the
  # others', so both computations lose about 8 digits there (eps x kappa)
  expect_equal(Vn, refn, tolerance = 1e-6)
  skip_if_not_installed("lme4")
  # lmer with the variance components fixed at sw_glmm's (relative SDs as
  # theta; optimizer = NULL: no optimisation) drops rank-deficient columns
  # itself ("fixed-effect model matrix is rank deficient"): its
  # leave-one-out fixed effects give the same CR3
  cs <- cases[[1]]
  fit <- sw_glmm(cs$f, d, family = gaussian(), cluster = "la")
  lfix <- function(dd) lme4::fixef(suppressMessages(lme4::lmer(cs$f, dd, start = list(theta = fit$theta),
                                                                 control = lme4::lmerControl(optimizer = NULL))))
  b <- lfix(d)
  expect_equal(b, coef(fit), tolerance = 1e-8)
  D <- sapply(sort(unique(d$la)), function(g) lfix(d[d$la != g, ])[cs$keep] - b[cs$keep])
  expect_equal(unname(suppressMessages(vcov(fit, type = "CR3"))[cs$keep, cs$keep]), unname(5 / 6 * tcrossprod(D)),
               tolerance = 1e-8)
})

test_that("LMM CR3 with a lost column, hand-made: 3 balanced clusters, a covariate that is cluster C's dummy", {
  # y ~ 1 + zc, zc = 1 in cluster C: C's rows only inform intercept + zc, so
  # the GLS intercept is the mean of A's and B's cluster means m_A = 1,
  # m_B = 3 (balanced, whatever the variance components): 2; zc = m_C - 2 =
  # 4. Without A (B, C left): intercept m_B, so b_(A) - b = 1; without B: -1;
  # without C zc is not identified, dropped, the intercept stays 2: 0.
  # CR3 = (2 / 3) (1 + 1 + 0) = 4 / 3; zc has none (lost without C).
  d <- data.frame(la = rep(c("A", "B", "C"), each = 4),
                  y = c(0, 2, 1, 1, 2, 4, 3, 3, 5, 7, 6, 6))
  d$zc <- as.numeric(d$la == "C")
  fit <- sw_glmm(y ~ zc + (1 | la), d, family = gaussian(), cluster = "la")
  expect_equal(unname(coef(fit)), c(2, 4), tolerance = 1e-10)
  expect_message(V <- vcov(fit, type = "CR3"), "`zc` is not identified without `la` = C")
  expect_equal(V[1, 1], 4 / 3, tolerance = 1e-10)
  expect_true(all(is.na(V[2, ])) && all(is.na(V[, 2])))
  expect_equal(fit$cr2$cr3$dropped, list(C = "zc"))
  expect_equal(fit$cr2$cr3$lost, list(`(Intercept)` = character(), zc = "C"))
  tab <- suppressMessages(generics::tidy(fit, vcov = "CR3"))
  expect_equal(tab$p.value[1], 2 * pt(-2 / sqrt(4 / 3), 2), tolerance = 1e-10)
  expect_true(is.na(tab$std.error[2]))
  wb <- suppressMessages(wild_boot(fit, "(Intercept)"))
  expect_equal(wb$std.error, sqrt(4 / 3), tolerance = 1e-10)
  expect_equal(wb$dropped, list(C = "zc"))
  # the coefficient lost itself: the fallback (WCU11, with the warning)
  expect_warning(wz <- wild_boot(fit, "zc", conf_int = FALSE), class = "sfpceval_few_clusters")
  expect_equal(wz$variant, "WCU11")
  expect_match(wz$note, "Without cluster la = C `zc` is not identified", all = FALSE, fixed = TRUE)
  # invariant to shifting/scaling the outcome and to row order
  d2 <- d
  d2$y <- (d$y + 100) * 10
  f2 <- sw_glmm(y ~ zc + (1 | la), d2, family = gaussian(), cluster = "la")
  expect_equal(suppressMessages(vcov(f2, type = "CR3"))[1, 1], 100 * 4 / 3, tolerance = 1e-8)
  f3 <- sw_glmm(y ~ zc + (1 | la), d[12:1, ], family = gaussian(), cluster = "la")
  expect_equal(suppressMessages(vcov(f3, type = "CR3")), V, tolerance = 1e-8)
})

