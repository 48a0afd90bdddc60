# wild_boot() for a gaussian sw_glmm() fit: the wild cluster restricted
# bootstrap-t for one fixed effect of the linear mixed model, at the level of
# the outer random-effect grouping (the authority).
#
# With the variance components held at their estimates, the fixed effects are
# the GLS estimator beta = M X'W y, M = (X'WX)^-1, W = V^-1 block-diagonal by
# cluster, a linear function of y. For a contrast c (the coefficient, in the
# standardised frame of lmm_standardise()) and m = M c:
#   restricted fit   b0 = beta - m (c'beta - r) / (c'm), u0 = y - X b0;
#   bootstrap data   y* = X b0 + (u0 o v), v constant within a cluster;
#   numerator        c'beta* - r = sum_g v_g a_g,  a_g = m' X_g'W_g u0_g;
#   cluster scores   m' X_h'W_h u*_h = (K v)_h,
#                    K_hg = delta_hg a_h - (X_h'W_h X_h m)' M (X_g'W_g u0_g);
#   t*(v) = a'v / sqrt(c sum_h (K v)_h^2), c = G / (G - 1) (CR1; it cancels
#   between t and t*). v = 1 gives the observed t.
# Every piece is a per-cluster cross-product of Z = [X y] under W, which
# sw_glmm() keeps (G matrices of (p + 1) x (p + 1)), so a draw costs O(G^2)
# and the data are not revisited. a and K are affine in the null value r, so
# the confidence interval by test inversion reuses the draws.

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

lmm_wild_boot <- function(fit, param, weights, B, level, r, seed, conf_int = TRUE) {
  s <- fit$setup
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
  j <- match(param, nm)
  p <- s$p
  P <- lmm_cluster_xprod(s, fit$theta)
  XWX <- P[1:p, 1:p, , drop = FALSE]
  XWy <- matrix(P[1:p, p + 1L, ], p, G)
  M <- solve(apply(XWX, 1:2, sum))
  beta_s <- drop(M %*% rowSums(XWy))
  # the coefficient in the original frame: beta_j = sc * c'beta_s + kappa
  Tx <- s$T[1:p, 1:p, drop = FALSE]
  sc <- s$T[p + 1L, p + 1L]
  Txi <- solve(Tx)
  cvec <- Txi[j, ]
  kappa <- sum(Txi[j, ] * s$T[1:p, p + 1L])
  m <- drop(M %*% cvec)
  cm <- sum(cvec * m)
  beta <- unname(fit$coefficients[j])
  # restricted fit at r = 0 and its derivative in r
  b0 <- beta_s - m * (sum(cvec * beta_s) + kappa / sc) / cm
  db <- m / (sc * cm)
  omega <- function(b) XWy - matrix(apply(XWX, 3L, function(A) A %*% b), p, G)   # p x G
  Om0 <- omega(b0)
  Om1 <- -matrix(apply(XWX, 3L, function(A) A %*% db), p, G)
  Xi <- t(matrix(apply(XWX, 3L, function(A) A %*% m), p, G))                       # G x p
  aK <- function(Om) {
    a <- drop(crossprod(Om, m))
    list(a = a, K = diag(a, G) - Xi %*% M %*% Om)
  }
  k0 <- aK(Om0)
  k1 <- aK(Om1)
  draws <- boot_draws(G, weights, B, seed)
  st <- .Call(ffi_wcr_stats, draws$V, k0$a, k1$a, k0$K, k1$K)
  cf <- G / (G - 1)
  score <- drop(crossprod(omega(beta_s), m))
  se <- sc * sqrt(cf * sum(score^2))
  res <- wcr_invert(st, beta, se, cf, r, level, isTRUE(conf_int))
  res$method <- "wild cluster restricted bootstrap-t for the linear mixed model (variance components fixed, CR1)"
  res$std.error <- se
  out <- finish_boot(res, draws, param, weights, level, r, G)
  if (G < 10L) {
    # bench/sw_size.R: 5 LAs in a stepped wedge, 1,000 null data sets
    out$note <- c(out$note, sprintf(paste0(
      "With G = %d clusters this bootstrap over-rejects: in a size simulation shaped like the Family Valued trial ",
      "(5 LAs, go-lives inside their steps) it rejected 9.6%% (random-intercept model true) to 10.2%% (LA x step shocks) ",
      "of true nulls at 5%%; CR2 with Satterthwaite df (sw_glmm(cluster =)) rejected 7.0%% and 5.5%%. ",
      "Read it as a sensitivity analysis."), G))
  }
  out
}

# p-values and the confidence interval by test inversion (for wcr_linear()
# and the LMM bootstrap alike) from the five
# per-draw sums of ffi_wcr_stats() (numerator and squared denominator affine
# and quadratic in the null value rr): t*(rr) = (s1 + rr s2) /
# sqrt(cf (s3 + 2 rr s4 + rr^2 s5)); the observed t is (beta - rr) / se.
# The interval: invert_test() (R/wildboot.R).
wcr_invert <- function(st, beta, se, cf, r, level, want_ci) {
  tstar <- function(rr) {
    num <- st[1, ] + rr * st[2, ]
    den <- cf * (st[3, ] + 2 * rr * st[4, ] + rr^2 * st[5, ])
    ifelse(den > 0, num / sqrt(pmax(den, 0)), ifelse(num == 0, 0, sign(num) * Inf))
  }
  pv <- function(rr, strict = TRUE) {
    t0 <- abs((beta - rr) / se)
    ts <- abs(tstar(rr))
    tol <- 1e-8 * max(1, t0)
    if (strict) mean(ts > t0 + tol) else mean(ts >= t0 - tol)
  }
  ci <- if (want_ci) invert_test(pv, beta, se, 1 - level, rel = 1e-10,
                                 max_double = 60, max_bisect = 80) else
    c(NA_real_, NA_real_)
  list(estimate = beta, statistic = (beta - r) / se, p_value = pv(r, TRUE),
       p_value_geq = pv(r, FALSE), conf_int = ci, tstar = tstar(r))
}
