# wild_boot() for a gaussian sw_glmm() fit: the wild cluster bootstrap-t for
# one fixed effect of the linear mixed model, at the level of the outer
# random-effect grouping (the authority); restricted (WCR) or unrestricted
# (WCU), with the fit's or the leave-one-cluster-out (jackknife) residuals in
# the bootstrap DGP, studentised by CR1 or by the CR3 jackknife (MacKinnon,
# Nielsen & Webb 2023's WC{R,U}{1,3}{1,3}). Mammen weights are enumerated with
# their probabilities (2^G vectors, G <= 12).
#
# With the variance components held at their estimates, the fixed effects are
# the GLS estimator beta = M X'W y, M = (X'WX)^-1, W = V^-1 block-diagonal by
# cluster, a linear function of y. For a contrast c (the coefficient, in the
# standardised frame of lmm_standardise()) and m = M c:
#   restricted fit   b0 = beta - m (c'beta - r) / (c'm), u0 = y - X b0
#                    (unrestricted: b0 = beta, u0 = u, and the bootstrap
#                    centre is c'beta instead of r);
#   jackknife DGP    u0_g replaced by y_g - X_g b0_(g), b0_(g) the (restricted)
#                    fit without cluster g; Om_g below is then X_g'W_g times
#                    it, and everything else is unchanged (lmm_jack_dgp());
#   bootstrap data   y* = X b0 + (u0 o v), v constant within a cluster;
#   numerator        c'beta* - r = sum_g v_g a_g,  a_g = m' Om_g,
#                    Om_g = X_g'W_g u0_g;
#   CR1: cluster scores m' X_h'W_h u*_h = (K v)_h,
#                    K_hg = delta_hg a_h - (X_h'W_h X_h m)' M Om_g;
#   CR3: with A_g = X_g'W_g X_g, A = sum A_g, the leave-g-out GLS of the
#        draw is beta*_(g) = (A - A_g)^-1 sum_{h != g} X_h'W_h y*_h
#                          = b0 + (A - A_g)^-1 sum_{h != g} v_h Om_h,
#        and beta* = b0 + M sum_h v_h Om_h, so
#        c'(beta*_(g) - beta*) = (J v)_g,
#        J_gh = [h != g] c'(A - A_g)^-1 Om_h - a_h,
#        and CR3 = (G - 1) / G sum_g (J v)_g^2;
#   t*(v) = a'v / sqrt(cf sum_h (K v)_h^2) (K or J; cf = G / (G - 1) or
#   (G - 1) / G cancels between t and t*). With the fit's residuals v = 1
#   gives the observed t.
# Every piece is a per-cluster cross-product of Z = [X y] under W, which
# sw_glmm() keeps (G matrices of (p + 1) x (p + 1)), so a draw costs O(G^2)
# (CR3 adds G solves of p x p once) and the data are not revisited. a, K and
# J are linear in Om, which is affine in the null value r, so the confidence
# interval by test inversion reuses the draws.

# MacKinnon, Nielsen & Webb's names: restricted (R) or unrestricted (U); the
# residuals of the bootstrap DGP (1 the fit's, 3 leave-one-cluster-out);
# the variance (1 CR1, 3 CR3). The first is the default.
lmm_boot_variants_ <- c("WCU31", "WCU33", "WCU13", "WCU11", "WCR31", "WCR33", "WCR13", "WCR11")

# Size of each variant with 5 LAs in bench/sw_size.R (1,000 null data sets
# shaped like the Family Valued trial: with LA x step shocks of SD 0.25, and
# with the random-intercept model true; every vector enumerated), and the
# number of clusters below which wild_boot() warns and its default is the CR3
# t-test instead: no variant held 3.5-6.5% with usable power with 5 LAs; with
# Webb weights every variant held 6.0-6.7% with 10 (300 data sets).
lmm_boot_size_5la_ <- data.frame(
  variant = rep(lmm_boot_variants_, 3),
  weights = rep(c("webb", "mammen", "rademacher"), each = 8),
  shocks = c(7.7, 8.0, 10.3, 10.4, 9.3, 9.9, 10.3, 10.2, 14.5, 14.5, 16.9, 15.9, 5.6, 7.1, 12.8, 12.8,
             7.2, 6.8, 9.2, 9.0, 4.8, 6.1, 10.6, 10.5),
  ri_true = c(7.6, 8.2, 9.9, 9.8, 9.3, 10.6, 10.5, 9.6, 13.2, 13.6, 15.2, 14.4, 5.9, 7.3, 12.3, 12.2,
              7.0, 6.9, 8.5, 8.5, 5.4, 6.8, 10.9, 10.2),
  stringsAsFactors = FALSE)
lmm_boot_min_clusters_ <- 10L

lmm_boot_size_ <- function(variant, weights) {
  row <- lmm_boot_size_5la_[lmm_boot_size_5la_$variant == variant & lmm_boot_size_5la_$weights == weights, ]
  list(min = lmm_boot_min_clusters_,
       what = sprintf("with 5 LAs %s with %s weights rejected %.1f%% and %.1f%% of true nulls at 5%%%s", variant,
                      weights, row$shocks, row$ri_true,
                      if (row$shocks < 6.5 && row$ri_true < 6.5) ", but its power stops growing (?wild_boot)" else ""))
}

# Per-cluster Z_a' W_a Z_a (times the residual variance) at the relative SDs
# th, in the standardised frame; their sum is the P of lmm_crit().
lmm_cluster_xprod <- function(s, th) {
  t1 <- th[1]
  t2 <- if (s$nested) th[2] else 0
  f <- 1 / (1 + s$m * t2^2)
  q <- drop(s$cnt %*% (s$m * f))
  gam <- t1^2 / (1 + t1^2 * q)
  Ta <- Reduce(`+`, Map(function(Tm, fi) fi * Tm, s$Tam, f))
  P <- s$ZZg
  if (s$nested && is.null(s$Mg)) {
    # many child-size classes (weights): sum alpha_c S_c S_c' per cluster
    alpha <- t2^2 * f[match(s$nc, s$m)]
    Sa <- s$S * sqrt(alpha)
    for (a in seq_len(s$G)) {
      P[, , a] <- P[, , a] - crossprod(Sa[s$ccl == a, , drop = FALSE])
    }
  }
  for (a in seq_len(s$G)) {
    if (s$nested && !is.null(s$Mg)) {
      for (i in seq_along(s$m)) P[, , a] <- P[, , a] - (t2^2 * f[i]) * s$Mg[[i]][, , a]
    }
    P[, , a] <- P[, , a] - gam[a] * tcrossprod(Ta[a, ])
  }
  P
}

# Pieces of the LMM bootstrap for coefficient j (standardised frame) shared by
# every variant: per-cluster A_g = X_g'W_g X_g (p x p x G), Om(r) = Om0 + r Om1
# (p x G, columns X_g'W_g u_g of the restricted residuals), Omh (unrestricted).
lmm_boot_pieces <- function(fit, j) {
  s <- fit$setup
  p <- s$p
  G <- s$G
  P <- lmm_cluster_xprod(s, fit$theta)
  XWX <- P[1:p, 1:p, , drop = FALSE]
  XWy <- matrix(P[1:p, p + 1L, ], p, G)
  A <- apply(XWX, 1:2, sum)
  M <- solve(A)
  beta_s <- drop(M %*% rowSums(XWy))
  Tx <- s$T[1:p, 1:p, drop = FALSE]
  sc <- s$T[p + 1L, p + 1L]
  Txi <- solve(Tx)
  cvec <- Txi[j, ]
  kappa <- sum(Txi[j, ] * s$T[1:p, p + 1L])
  m <- drop(M %*% cvec)
  cm <- sum(cvec * m)
  b0 <- beta_s - m * (sum(cvec * beta_s) + kappa / sc) / cm
  db <- m / (sc * cm)
  Ab <- function(b) matrix(apply(XWX, 3L, function(Ag) Ag %*% b), p, G)
  list(G = G, p = p, XWX = XWX, XWy = XWy, A = A, M = M, m = m, cvec = cvec, sc = sc,
       kappa = kappa, beta = beta_s, Om0 = XWy - Ab(b0), Om1 = -Ab(db), Omh = XWy - Ab(beta_s),
       Xi = t(Ab(m)), loo = NULL)
}

# The leave-one-cluster-out fits of the pieces pc (loo_reduced(), R/lmm_cr2.R):
# for each cluster the generalised inverse of its reduced fit (columns that
# only cluster g identifies dropped for that fit), the dropped columns, and
# whether the tested contrast stays identified. Stored in pc$loo once.
lmm_boot_loo <- function(pc) {
  if (!is.null(pc$loo)) return(pc)
  los <- lapply(seq_len(pc$G), function(g) loo_reduced(pc$A, pc$XWX[, , g]))
  pc$loo <- list(inv = lapply(los, `[[`, "inv"), drop = lapply(los, `[[`, "drop"),
                 identified = vapply(los, function(lo) lo$identified(pc$cvec), TRUE))
  pc
}

# The jackknife bootstrap DGP (MacKinnon, Nielsen & Webb 2023): the residuals
# of cluster g from the fit without it, u_g - X_g (beta_(g) - beta) (restricted:
# the restricted fit without g, affine in r). Returns Om0, Om1, Omh built
# from them (X_g'W_g times those residuals). A leave-out fit that loses
# columns is the reduced fit with the dropped coefficients at the full fit's
# values (loo_reduced()): beta_(g) - beta = Mg (S - s_g), Mg the padded
# inverse, S - s_g the other clusters' X_h'W_h u_h.
lmm_jack_dgp <- function(pc) {
  pc <- lmm_boot_loo(pc)
  tot <- rowSums(pc$Omh)
  out <- list(Om0 = pc$Om0, Om1 = pc$Om1, Omh = pc$Omh)
  for (g in seq_len(pc$G)) {
    Ag <- pc$XWX[, , g]
    Mg <- pc$loo$inv[[g]]
    bg <- pc$beta + drop(Mg %*% (tot - pc$Omh[, g]))
    mg <- drop(Mg %*% pc$cvec)
    cmg <- sum(pc$cvec * mg)
    rg <- bg - mg * (sum(pc$cvec * bg) + pc$kappa / pc$sc) / cmg
    out$Omh[, g] <- pc$XWy[, g] - Ag %*% bg
    out$Om0[, g] <- pc$XWy[, g] - Ag %*% rg
    out$Om1[, g] <- -Ag %*% mg / (pc$sc * cmg)
  }
  out
}

# The G x G matrix whose product with the draw v gives the per-cluster pieces
# of the variance: CR1, (K v)_h = m'X_h'W_h u*_h, the cluster scores of the
# bootstrap fit; CR3, (J v)_g = c'(beta*_(g) - beta*), the leave-cluster-g-out
# GLS estimate minus the full one. Linear in Om.
lmm_var_matrix <- function(pc, Om, vcov, Cg) {
  a <- drop(crossprod(Om, pc$m))
  if (vcov == "CR1") return(diag(a, pc$G) - pc$Xi %*% pc$M %*% Om)
  Q <- Cg %*% Om
  diag(Q) <- 0
  Q - matrix(a, pc$G, pc$G, byrow = TRUE)
}

# rows (A - A_g)^-1 c: the leave-one-cluster-out GLS for the contrast (the
# reduced fit's when the leave-out fit loses columns: loo_reduced(); the
# contrast identified, c'(A - A_g)^- Om_h is then the same for every
# generalised inverse)
lmm_jack_rows <- function(pc) {
  pc <- lmm_boot_loo(pc)
  rows <- vapply(seq_len(pc$G), function(g) drop(pc$loo$inv[[g]] %*% pc$cvec), double(pc$p))
  matrix(rows, pc$G, pc$p, byrow = TRUE)
}

# a0, a1, K0, K1 (t*(v; r) = (a0 + r a1)'v / sqrt(cf |(K0 + r K1) v|^2)), cf,
# and the observed standard error in the standardised frame, for the
# bootstrap `boot` ("WCR" restricted, "WCU" unrestricted), the residuals of
# its DGP (dgp 1 the fit's, 3 leave-one-cluster-out; jd: lmm_jack_dgp(),
# if already computed) and the variance vcov ("CR1" or "CR3"; Cg:
# lmm_jack_rows(), if already computed).
lmm_boot_variant <- function(pc, boot, vcov, Cg = NULL, dgp = 1L, jd = NULL) {
  G <- pc$G
  if (vcov != "CR1" && is.null(Cg)) Cg <- lmm_jack_rows(pc)
  cf <- if (vcov == "CR1") G / (G - 1) else (G - 1) / G
  Kh <- lmm_var_matrix(pc, pc$Omh, vcov, Cg)
  se <- sqrt(cf * sum(rowSums(Kh)^2))
  if (dgp == 3L) pc[c("Om0", "Om1", "Omh")] <- jd %||% lmm_jack_dgp(pc)
  if (boot == "WCU") {
    K0 <- lmm_var_matrix(pc, pc$Omh, vcov, Cg)
    a0 <- drop(crossprod(pc$Omh, pc$m))
    return(list(a0 = a0, a1 = 0 * a0, K0 = K0, K1 = 0 * K0, cf = cf, se = se))
  }
  list(a0 = drop(crossprod(pc$Om0, pc$m)), a1 = drop(crossprod(pc$Om1, pc$m)),
       K0 = lmm_var_matrix(pc, pc$Om0, vcov, Cg), K1 = lmm_var_matrix(pc, pc$Om1, vcov, Cg),
       cf = cf, se = se)
}

#' @rdname wild_boot
#' @section Linear mixed models:
#' For a gaussian [sw_glmm()] fit whose outer random-effect grouping is the
#' cluster (the authority, e.g. `(1 | la)` or `(1 | la / child_id)`), the
#' wild cluster bootstrap-t for one fixed effect holds the variance
#' components at their estimates, so the fixed effects are a GLS estimator,
#' linear in the outcome. Each draw multiplies every cluster's residuals by
#' one weight and refits the GLS, with the t-statistic of each draw
#' studentised inside the draw; all of it comes from per-cluster
#' cross-products kept in the fit, so the data are not revisited.
#'
#' `variant` (passed through `...`) names the bootstrap as MacKinnon,
#' Nielsen & Webb (2023) do, `"WC"` followed by three characters:
#' `R` (restricted: the null imposed on the bootstrap DGP) or `U`
#' (unrestricted, t* centred at the estimate); the residuals multiplied by
#' the weights, `1` the fit's or `3` each cluster's from the fit without it
#' (the jackknife DGP); the variance that studentises t and every t*, `1`
#' CR1 (the cluster scores) or `3` CR3, the jackknife
#' \eqn{\frac{G-1}{G}\sum_g (\hat\beta_{(g)} - \hat\beta)^2} with
#' \eqn{\hat\beta_{(g)}} the GLS without cluster g. `"CR3t"` is no
#' bootstrap: the t-test with that CR3 standard error against a t
#' distribution with G - 1 degrees of freedom (as `tidy(fit, vcov = "CR3")`),
#' its interval \eqn{\hat\beta \mp t_{G-1} se}; the result has the same
#' fields (`df`, `B = 0`, no `tstar`; `weights` are not used).
#'
#' **The default, `variant = "auto"`, is `"CR3t"` with fewer than 10
#' clusters and `"WCU31"` (with the default Webb weights) from 10**, because
#' no wild bootstrap held its size with 5 authorities and the CR3 t-test did
#' (below); it says so in a message and the note. `"WCR11"` was the method
#' before #13. `std.error` and `statistic` use the chosen variance (CR3 or
#' CR1); the result also carries `variant`. Variants with a 3 need three
#' clusters.
#'
#' **Leave-one-cluster-out fits that lose columns.** Without cluster g a
#' column may not be identified: a covariate that varies in that authority
#' only, a step indicator present in it alone, its own fixed effect. As
#' MacKinnon, Nielsen & Webb (2023, "guide") do for CV3 with cluster fixed
#' effects, that leave-out fit then drops, for that fit only, the columns
#' that cluster alone identifies (the last ones in the columns' order that
#' leave the rest identified, as `lm()` aliases later columns), and the
#' jackknife uses the tested coefficient's estimate in the reduced fit. That
#' is well defined when the coefficient stays identified without g: every
#' solution of the leave-out fit's normal equations, whichever columns are
#' dropped, gives it the same value (the value lme4's `lmer()` gives on those
#' rows at the same variance components; it drops rank-deficient columns
#' too). The dropped coefficients are held at the full (unrestricted) fit's
#' values, which also gives cluster g's jackknife residuals in the
#' `"WC?3?"` bootstrap DGP (restricted: the leave-out fit with the tested
#' coefficient at the null and the dropped ones at those values). The result's `dropped` lists the columns dropped per cluster, and
#' the note says so. Only when the tested coefficient itself is not
#' identified without some cluster is the jackknife undefined: then
#' `"WCR11"` or `"WCU11"` is used instead (`"WCU11"` for `"CR3t"`, with the
#' few-clusters warning) and the note says so. In a size simulation with a
#' covariate that varies in one of 5 authorities (`bench/lmm_cr3_lost.R`,
#' 1,000 null data sets each, Monte Carlo s.e. 0.5-0.6 points) the CR3
#' t-test rejected 2.7% and 4.2% of true nulls at 5% with authority x step
#' shocks (two seeds; on the same data sets the model without the covariate,
#' no column lost, 2.5% and 3.6%) and 4.4% with the random-intercept model
#' true (without the covariate 4.3%): dropping the column leaves the size
#' where it is without it.
#'
#' Mammen weights are enumerated (all
#' 2^G vectors with their probabilities, G <= 12; `p_value` is then a
#' probability and the result carries `draw_prob`).
#'
#' **Size with few clusters** (`bench/sw_size.R`: null data shaped like the
#' Family Valued trial, a stepped wedge with go-lives inside their steps,
#' authority random intercepts with or without authority x step shocks;
#' rejection at 5%, target 3.5-6.5%, 1,000 data sets each, Monte Carlo
#' s.e. 0.6-1.2 points). **With 5 authorities no wild bootstrap holds its
#' size with usable power**: with Webb weights (all 6^5 vectors) `"WCU31"`
#' rejected 7.7% (with shocks) and 7.6% (random-intercept model true),
#' `"WCU33"` 8.0% and 8.2%, the others 9.3-10.6% (the previous `"WCR11"`
#' 10.2% and 9.6%); with Gaussian weights (9,999 draws) 10.3-13.5%. The t-test
#' with the CR3 standard error and G - 1 df (`"CR3t"`, the default there)
#' rejected 4.3% and 5.8%, with power close to the bootstraps' (with a true
#' effect of 0.4, child-level SD 1: 42% against 45% for `"WCU31"` and
#' `"WCU33"`, over 300 data sets), and with 4, 6 and 8 authorities (with
#' shocks) 2.7%, 4.9% and 4.1% (`bench/sw_size.R` path `auto`), where with 4
#' the bootstraps rejected 7.4-18.9%; CR2 with Satterthwaite df
#' (`sw_glmm(cluster = )`) 5.5% and 7.0%. With 10 authorities every variant
#' with Webb weights rejected 6.0-6.7% (300 data sets), and `"WCU31"`, the
#' default there, 4.9% and 6.2% (1,000 data sets, 999 draws each). A bootstrap variant asked for with fewer than 10 clusters warns
#' (class `sfpceval_few_clusters`) with its measured size: read it as a
#' sensitivity analysis.
#'
#' Why the bootstrap over-rejects here (`bench/lmm_boot_diag.R`, on the same
#' data sets): not the variance components held fixed -- ordinary least
#' squares with authority fixed effects (no variance components at all)
#' over-rejected alike (WCR11 9.9% and 8.3% against the LMM's 10.2% and 9.6%;
#' the same decision in 97.9% and 96.9% of the data sets), as expected when each authority has hundreds of children and
#' the GLS is close to the within-authority fit; not the studentisation (t and
#' every t* use the same variance), the enumeration or the p-value convention
#' (counting ties moved the rates by less than half a point). It is the
#' restricted residuals: the step effects are estimated from 5 authorities
#' with different go-live steps, so each authority's residuals carry the
#' others' errors, which flipping each authority's sign does not reproduce
#' (the homogeneity condition of Canay, Santos & Shaikh 2021 fails). The same
#' bootstrap built from the true errors rejected 6.5% and 6.7% (WCR11, Webb); the
#' jackknife DGP (`"WCU31"`) recovers about half of the gap. What is left is
#' the coarseness of any sign-flip distribution with 5 clusters: with the
#' fit's residuals the 2^5 Rademacher vectors give p-values (ties counted)
#' of at least 2/32, and Webb's six points only approximate a symmetry.
#'
#' With Mammen or Rademacher weights (2^5 vectors enumerated) the restricted
#' jackknife variants come closer -- `"WCR31"` Mammen 5.6% and 5.9%,
#' Rademacher 4.8% and 5.4%; `"WCR33"` Rademacher 6.1% and 6.8% -- but they
#' are not usable tests: the constant weight vector has probability 0.72^G
#' (Mammen) or 2^(1-G) (Rademacher) above 5%, and with leave-one-out
#' residuals in the restricted DGP its t* moves with the observed t, so the
#' power stops growing: with Rademacher weights `"WCR31"` rejected 42%, 72%
#' and 71% at true effects of 0.4, 0.8 and 1.6, where the CR3 t-test rejected
#' 42%, 91% and 100% (300 data sets each); with Mammen weights 80% where the
#' others rejected every time. The size of `"WCR31"` with Mammen weights
#' also moves with the design: 13.3% and 7.0% with 4 authorities, 2.0-3.3%
#' with 6-10, 8.7% with shocks of twice the SD (300 data sets each). The
#' other variants over-rejected more with Mammen weights than with Webb's
#' (12.2-16.9%), and with Rademacher weights 6.8-10.9%.
#'
#' @references
#' MacKinnon, J. G., Nielsen, M. Ø. and Webb, M. D. (2023). Fast and
#' reliable jackknife and bootstrap methods for cluster-robust inference.
#' *Journal of Applied Econometrics*, 38(5), 671-694.
#'
#' MacKinnon, J. G., Nielsen, M. Ø. and Webb, M. D. (2023). Cluster-robust
#' inference: A guide to empirical practice. *Journal of Econometrics*,
#' 232(2), 272-299.
#'
#' Canay, I. A., Santos, A. and Shaikh, A. M. (2021). The wild bootstrap
#' with a "small" number of "large" clusters. *Review of Economics and
#' Statistics*, 103(2), 346-363.
#' @name wild_boot
NULL

lmm_wild_boot <- function(fit, param, weights, B, level, r, seed, conf_int = TRUE,
                          variant = "auto", ...) {
  s <- fit$setup
  extra <- list(...)
  if (length(extra)) {
    stop_arg(names(extra)[1] %||% "...", "is not an argument of wild_boot() for a linear mixed model",
             "the LMM bootstrap takes param, weights, B, level, r, seed, conf_int and variant.")
  }
  variant <- match_choice(variant, c("auto", "CR3t", lmm_boot_variants_), "variant")
  if (is.null(s$ZZg)) {
    stop_arg("fit", sprintf("has %s clusters of `%s` for %s rows: the wild cluster bootstrap is for a few clusters (the LAs)",
                            format(s$G, big.mark = ","), names(fit$ngroups)[1], format(s$N, big.mark = ",")),
             "make the LA the outer random-effect grouping, e.g. (1 | la / child_id).")
  }
  nm <- names(fit$coefficients)
  if (!is.character(param) || length(param) != 1L || !param %in% nm) {
    stop_arg("param", sprintf("must name one coefficient of the fit (got \"%s\")", paste(param, collapse = ", ")),
             sprintf("use one of: %s.", paste(nm, collapse = ", ")))
  }
  if (!is.numeric(level) || length(level) != 1L || !(level > 0 && level < 1)) {
    stop_arg("level", "must be a number in (0, 1)")
  }
  if (!is.numeric(r) || length(r) != 1L || !is.finite(r)) stop_arg("r", "must be a finite number")
  G <- s$G
  if (G < 2L) stop_arg("fit", "has one cluster; the cluster bootstrap needs several")
  # "auto": below the number of clusters at which the bootstrap held its size,
  # the CR3 t-test with G - 1 df, which did (lmm_boot_min_clusters_)
  asked <- variant
  if (variant == "auto") variant <- if (G < lmm_boot_min_clusters_) "CR3t" else lmm_boot_variants_[1]
  if (G < 3L && variant != "WCR11" && variant != "WCU11") {
    stop_arg("variant", sprintf("\"%s\" needs at least 3 clusters (the fit has 2)", variant),
             "use variant = \"WCR11\".")
  }
  pc <- lmm_boot_pieces(fit, match(param, nm))
  # the jackknife needs the tested coefficient identified in every
  # leave-one-cluster-out fit; columns that only one cluster identifies are
  # dropped from that cluster's leave-out fit (loo_reduced()), and only when
  # `param` itself is lost is the fit's residuals and CR1 used instead
  fallback <- NULL
  dropped <- NULL
  if (variant != "WCR11" && variant != "WCU11") {
    pc <- lmm_boot_loo(pc)
    clus <- names(fit$ranef[[1]]) %||% as.character(seq_len(G))
    short <- which(!pc$loo$identified)
    if (length(short)) {
      to <- if (variant == "CR3t") "WCU11" else paste0(substr(variant, 1, 3), "11")
      fallback <- sprintf(paste0(
        "Without cluster%s %s `%s` is not identified, so the leave-one-cluster-out fits of %s ",
        "are not defined: %s was used instead."), if (length(short) > 1L) "s" else "",
        paste(names(fit$ngroups)[1], "=", clus[short], collapse = ", "), param, variant, to)
      variant <- to
    } else {
      dropped <- lmm_loo_dropped_(pc, clus, nm)
    }
  }
  if (variant == "CR3t") {
    out <- lmm_cr3_t(pc, fit, param, level, r)
    out$dropped <- dropped
    out$note <- c(fallback, lmm_loo_dropped_note_(dropped, names(fit$ngroups)[1]),
                  if (asked == "auto") lmm_cr3_t_note_(G, weights))
    if (asked == "auto") {
      message(sprintf(paste0("wild_boot(): with G = %d clusters (fewer than %d) no wild bootstrap of a linear mixed ",
                             "model held its size, so this is the CR3 t-test with G - 1 df (see the note and ?wild_boot)."),
                      G, lmm_boot_min_clusters_))
    }
    return(out)
  }
  size <- lmm_boot_size_(variant, weights)
  lmm_few_clusters_warn_(G, variant, weights, size)
  vb <- lmm_boot_variant(pc, substr(variant, 1, 3), paste0("CR", substr(variant, 5, 5)),
                         dgp = as.integer(substr(variant, 4, 4)))
  draws <- if (weights == "mammen" && identical(B, "enumerate") && G <= 12L) mammen_enumerate(G) else
    boot_draws(G, weights, B, seed)
  st <- .Call(ffi_wcr_stats, draws$V, vb$a0, vb$a1, vb$K0, vb$K1)
  beta <- unname(fit$coefficients[param])
  se <- pc$sc * vb$se
  res <- wcr_invert(st, beta, se, vb$cf, r, level, isTRUE(conf_int), draws$prob)
  res$method <- sprintf("wild cluster %s bootstrap-t for the linear mixed model (%s: %s residuals, %s; variance components fixed)",
                        if (substr(variant, 3, 3) == "R") "restricted" else "unrestricted", variant,
                        if (substr(variant, 4, 4) == "1") "the fit's" else "leave-one-cluster-out",
                        if (substr(variant, 5, 5) == "1") "CR1" else "CR3 jackknife")
  res$variant <- variant
  res$std.error <- se
  out <- finish_boot(res, draws, param, weights, level, r, G)
  if (!is.null(draws$prob)) out <- mammen_p_min(out, draws$prob, level)
  out$note <- c(out$note, fallback, lmm_loo_dropped_note_(dropped, names(fit$ngroups)[1]))
  out$dropped <- dropped
  if (G < size$min) {
    out$note <- c(out$note, sprintf(paste0(
      "With G = %d clusters this bootstrap (%s, %s weights) does not hold its size: in a size simulation ",
      "shaped like the Family Valued trial (a stepped wedge, go-lives inside their steps) %s. ",
      "Read it as a sensitivity analysis."), G, variant, weights, size$what))
  }
  out
}

# The columns each leave-one-cluster-out fit dropped (lmm_boot_loo()), as a
# list named by cluster (only the clusters whose fit lost columns; NULL when
# none did), and the note saying so.
lmm_loo_dropped_ <- function(pc, clus, nm) {
  d <- pc$loo$drop
  has <- lengths(d) > 0L
  if (!any(has)) return(NULL)
  stats::setNames(lapply(d[has], function(k) nm[k]), clus[has])
}

lmm_loo_dropped_note_ <- function(dropped, cluster) {
  if (!length(dropped)) return(NULL)
  sprintf(paste0("The leave-one-cluster-out fits without %s dropped the column%s that cluster alone identifies ",
                 "(%s; %d in all), for that fit only; the tested coefficient stays identified, so its jackknife ",
                 "estimate is its estimate in the reduced fit."),
          paste(cluster, "=", names(dropped), collapse = ", "), if (sum(lengths(dropped)) > 1L) "s" else "",
          paste(vapply(dropped, function(x) paste(utils::head(x, 4), collapse = ", "), ""), collapse = "; "),
          sum(lengths(dropped)))
}

# The CR3 t-test with G - 1 df for coefficient `param` (what variant "auto"
# gives below lmm_boot_min_clusters_): the jackknife variance of the WC?13
# variants, (G - 1) / G sum_g (beta_(g) - beta)^2 with beta_(g) the GLS fit
# without cluster g at the fit's variance components, the same as
# vcov(fit, type = "CR3"); the interval is beta -+ t_{G-1} se. The fields of
# a bootstrap result, with df, no draws (B = 0, tstar NULL).
lmm_cr3_t <- function(pc, fit, param, level, r) {
  G <- pc$G
  se <- pc$sc * lmm_boot_variant(pc, "WCU", "CR3")$se
  beta <- unname(fit$coefficients[param])
  tt <- (beta - r) / se
  q <- stats::qt(1 - (1 - level) / 2, G - 1)
  p <- 2 * stats::pt(-abs(tt), G - 1)
  structure(list(
    estimate = beta, statistic = tt, p_value = p, p_value_geq = p, conf_int = beta + c(-1, 1) * q * se,
    tstar = NULL, df = G - 1L, std.error = se, variant = "CR3t",
    method = sprintf(paste0("t-test with the CR3 (leave-one-cluster-out jackknife) standard error and G - 1 = %d df ",
                            "for the linear mixed model (variance components fixed)"), G - 1L),
    param = param, weights = NA_character_, B = 0L, enumerated = FALSE, level = level, null = r,
    n_clusters = G, p_min = 0, note = NULL), class = c("wild_boot_t", "wild_boot"))
}

# Sizes at 5% in bench/sw_size.R with 5 LAs (LA x step shocks, random-intercept
# model true; 1,000 null data sets each) of the CR3 t-test with G - 1 df
lmm_cr3_size_5la_ <- c(shocks = 4.3, ri_true = 5.8)

lmm_cr3_t_note_ <- function(G, weights) {
  sz <- lmm_boot_size_5la_[lmm_boot_size_5la_$variant == lmm_boot_variants_[1] & lmm_boot_size_5la_$weights == "webb", ]
  sprintf(paste0(
    "With G = %d clusters (fewer than %d) no wild cluster bootstrap of a linear mixed model held its size, so this is ",
    "the t-test with the CR3 standard error and G - 1 = %d df: in a size simulation shaped like the Family Valued ",
    "trial (5 LAs) it rejected %.1f%% and %.1f%% of true nulls at 5%%, the bootstrap %s with Webb weights %.1f%% and ",
    "%.1f%%. variant = \"%s\" gives that bootstrap (as a sensitivity analysis)%s."),
    G, lmm_boot_min_clusters_, G - 1L, lmm_cr3_size_5la_[["shocks"]], lmm_cr3_size_5la_[["ri_true"]],
    lmm_boot_variants_[1], sz$shocks, sz$ri_true, lmm_boot_variants_[1],
    if (weights != "webb") sprintf("; `weights = \"%s\"` is not used by the t-test", weights) else "")
}

#' @export
print.wild_boot_t <- function(x, digits = 4, ...) {
  cat(sprintf("%s, G = %d clusters\n", x$method, x$n_clusters))
  cat(sprintf("H0: %s = %s\n", x$param, format(x$null)))
  cat(sprintf("  estimate %s, std. error %s, t = %s, p-value %s\n", format(x$estimate, digits = digits),
              format(x$std.error, digits = digits), format(x$statistic, digits = digits),
              format(x$p_value, digits = digits)))
  cat(sprintf("  %g%% confidence interval: [%s, %s]\n", 100 * x$level,
              format(x$conf_int[1], digits = digits), format(x$conf_int[2], digits = digits)))
  if (!is.null(x$note)) cat("Note:", x$note, "\n")
  invisible(x)
}

# All 2^G Mammen vectors (values 1 - phi and phi, phi the golden ratio, with
# probabilities phi / sqrt(5) and 1 - phi / sqrt(5)) and the probability of
# each: the bootstrap distribution exactly, for G <= 12 (the count, 2^G, is
# checked by the caller). Asymmetric: v and -v are not both drawn.
mammen_enumerate <- function(G) {
  phi <- (1 + sqrt(5)) / 2
  V <- .Call(ffi_boot_weights, as.integer(G), 1L, as.integer(2^G), TRUE)   # +-1 digits
  up <- V < 0
  V[] <- ifelse(up, phi, 1 - phi)
  k <- colSums(up)
  list(V = V, enumerated = TRUE, prob = (1 - phi / sqrt(5))^k * (phi / sqrt(5))^(G - k))
}

# With probability-weighted draws the smallest attainable p-value (ties
# counted) is the probability of the largest |t*|; the note of finish_boot()
# (which assumes 2/B) is replaced accordingly.
mammen_p_min <- function(out, prob, level) {
  ts <- abs(out$tstar)
  out$p_min <- sum(prob[ts >= max(ts) * (1 - 1e-8)])
  out$draw_prob <- prob
  out$note <- if (out$p_min > 1 - level) {
    sprintf(paste0("With G = %d clusters the %s enumerated Mammen draws give a smallest attainable p-value ",
                   "(ties counted) of %.4g > %.4g, so the test cannot reject at that level."),
            out$n_clusters, format(out$B, big.mark = ","), out$p_min, 1 - level)
  } else NULL
  out
}

# p-values and the confidence interval by test inversion (for wcr_linear()
# and the LMM bootstrap alike) from the five
# per-draw sums of ffi_wcr_stats() (numerator and squared denominator affine
# and quadratic in the null value rr): t*(rr) = (s1 + rr s2) /
# sqrt(cf (s3 + 2 rr s4 + rr^2 s5)); the observed t is (beta - rr) / se.
# With prob (enumerated Mammen draws) the p-value is the probability, not the
# share, of the draws beyond |t|.
# The interval: invert_test() (R/wildboot.R).
wcr_invert <- function(st, beta, se, cf, r, level, want_ci, prob = NULL) {
  tstar <- function(rr) {
    num <- st[1, ] + rr * st[2, ]
    den <- cf * (st[3, ] + 2 * rr * st[4, ] + rr^2 * st[5, ])
    ifelse(den > 0, num / sqrt(pmax(den, 0)), ifelse(num == 0, 0, sign(num) * Inf))
  }
  pv <- function(rr, strict = TRUE) {
    t0 <- abs((beta - rr) / se)
    ts <- abs(tstar(rr))
    tol <- 1e-8 * max(1, t0)
    hit <- if (strict) ts > t0 + tol else ts >= t0 - tol
    if (is.null(prob)) mean(hit) else sum(prob[hit])
  }
  ci <- if (want_ci) invert_test(pv, beta, se, 1 - level, rel = 1e-10,
                                 max_double = 60, max_bisect = 80) else
    c(NA_real_, NA_real_)
  list(estimate = beta, statistic = (beta - r) / se, p_value = pv(r, TRUE),
       p_value_geq = pv(r, FALSE), conf_int = ci, tstar = tstar(r))
}

# Warn (class "sfpceval_few_clusters") when an LMM bootstrap runs with fewer
# clusters than its size held for (lmm_boot_size_()).
lmm_few_clusters_warn_ <- function(G, variant, weights, size) {
  if (G >= size$min) return(invisible(FALSE))
  msg <- sprintf(paste0(
    "wild_boot(): %d clusters: the wild cluster bootstrap of a linear mixed model does not hold its size with ",
    "fewer than %d clusters (stepped-wedge size simulation: %s).\nFix: read it as a sensitivity analysis; ",
    "the default variant = \"auto\" gives the CR3 t-test with G - 1 df, which rejected %.1f-%.1f%% in the same ",
    "simulation (CR2 with Satterthwaite df, sw_glmm(cluster =), 5.5-7.0%%), and perm_test() on the go-live dates is exact."),
    G, size$min, size$what, min(lmm_cr3_size_5la_), max(lmm_cr3_size_5la_))
  warning(structure(class = c("sfpceval_few_clusters", "warning", "condition"),
                    list(message = msg, call = NULL)))
  invisible(TRUE)
}
