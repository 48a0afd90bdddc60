# Cluster-robust (CR2) standard errors for the fixed effects of a linear
# mixed model, with Satterthwaite (Bell-McCaffrey) degrees of freedom, as
# clubSandwich::vcovCR(type = "CR2") and coef_test(test = "Satterthwaite")
# compute them for lmer fits (Pustejovsky & Tipton 2018), without n_g x n_g
# matrices. Two paths: random effects nested inside the clusters without one
# spanning a cluster (b = 0 below: child random effects clustered by
# authority) take cr2_cluster_fast(); the others (b > 0), or
# options(sfpceval.cr2_fast = FALSE), cr2_awx().
#
# Working model (target): V = sigma^2 Phi, in a cluster g
#   Phi_g = I + a sum_c J_c + b J_g
# with units c (children, or lower-level groups, or single rows) nested in g.
# M = (X'Phi^-1 X)^-1. The CR2 adjustment A_g = F' G_g^-1/2 F for any F with
# F'F = Phi_g, G_g = F (Phi_g - X_g M X_g') F' (it does not depend on the
# choice of F). With E the orthonormal unit-mean directions e_c = 1_c / sqrt(m_c)
# and Lambda = diag(1 + a m_c): Phi = Lambda (on span E; I elsewhere) +
# b (E w)(E w)', w_c = sqrt(m_c); F = (I + k u u') Lambda^1/2 on span E (I
# elsewhere), u = Lambda^-1/2 w, (1 + k |u|^2)^2 = 1 + b |u|^2. Then
# G = D + U C U' with D = Lambda^2 (constant on each class of unit size, 1
# off span E) and U = [E u, E Lambda u, E Lambda^2 u, F X]. The span S of the
# class projections of U is invariant under D, so with Q an orthonormal basis
# of S:  G^-1/2 = Q (Q'GQ)^-1/2 Q' + D^-1/2 (I - QQ').  Cost per cluster
# O(n_g r^2), r = (classes) x (p_g + 3) + p_g, p_g the rank of X_g.
#
# Prior weights (residual variance sigma^2 / w_i), constant within a unit
# (w_c): Phi_g = W^-1 + a sum_c J_c + b J_g, in the original frame (the
# target clubSandwich takes for nlme::lme(weights = varFixed(~ 1 / w))).
# Then Phi = 1 / w_c on the part of unit c orthogonal to e_c (in place of
# I), Lambda = diag(1 / w_c + a m_c); F = w_c^-1/2 there, so D = w_c^-2 off
# span E and the classes of D are the distinct 1 / w_c off span E and the
# distinct lambda_c on it. Without weights w = 1.
#
# The meat is sum_g (X_g' Phi_g^-1 A_g e_g)(...)', e = y - X beta; for a
# coefficient j with p_g = A_g Phi_g^-1 X_g M e_j the Satterthwaite df is
# (sum_g T_gg)^2 / sum_gh T_gh^2, T_gh = delta_gh p_g'Phi_g p_g -
# (X_g'p_g)' M (X_h'p_h) (the covariance of the residuals under the working
# model is Phi - X M X').

# One cluster's pieces. X: n x p, e: n residuals, unit: integer unit codes
# 1..C (rows of one unit together or not), a, b: as above. Returns
# list(AWX = n x p matrix A Phi^-1 X, phi = function(v) Phi v).
cr2_cluster <- function(X, unit, a, b, wu = NULL) {
  n <- nrow(X)
  m <- tabulate(unit)
  C <- length(m)
  sm <- sqrt(m)
  wu <- if (is.null(wu)) rep(1, C) else wu
  wr <- wu[unit]                                                     # w of each row
  lam <- 1 / wu + a * m
  Et <- function(v) rowsum(v, unit, reorder = TRUE) / sm            # E'v  (C x k)
  E <- function(z) z[unit, , drop = FALSE] / sm[unit]               # E z  (n x k)
  perp <- function(v) v - E(Et(v))
  w <- sm
  u <- w / sqrt(lam)
  uu <- sum(u^2)
  k <- if (b > 0) (sqrt(1 + b * uu) - 1) / uu else 0
  # F, F' and Phi, Phi^-1 through E coordinates (F acts as I off span E)
  Fmul <- function(v) {                                              # F v
    z <- Et(v)
    z2 <- sqrt(lam) * z
    z2 <- z2 + k * u %*% crossprod(u, z2)
    perp(v) / sqrt(wr) + E(z2)
  }
  Ftmul <- function(v) {                                             # F'v
    z <- Et(v)
    z2 <- z + k * u %*% crossprod(u, z)
    perp(v) / sqrt(wr) + E(sqrt(lam) * z2)
  }
  FFt <- function(v) Fmul(Ftmul(v))
  phi <- function(v) {
    z <- Et(v)
    perp(v) / wr + E(lam * z + b * w %*% crossprod(w, z))
  }
  phi_inv <- function(v) {
    z <- Et(v)
    zl <- z / lam
    wl <- w / lam
    zi <- zl - (b / (1 + b * sum(w * wl))) * wl %*% crossprod(w, zl)
    perp(v) * wr + E(zi)
  }
  list(Et = Et, E = E, perp = perp, Fmul = Fmul, Ftmul = Ftmul, FFt = FFt,
       phi = phi, phi_inv = phi_inv, u = u, lam = lam, m = m, n = n, wr = wr, k = k)
}

# The null space of G_g (G v = 0 iff F'v = Phi^-1 X_g n with X_(-g) n = 0):
# the n (p x nn, columns of X's coordinates) spanning the null space of
# O = X_(-g)'Phi^-1 X_(-g) = Minv - A_g, A_g = X_g'Phi_g^-1 X_g, with Minv =
# sum_g A_g summed directly (not solve(M), which loses kappa(M) digits when
# the design is near-collinear). One rule for both paths: an eigenvalue of O
# scaled to unit diagonal of Minv (invariant to column scale) at most 1e-12
# of the largest, the relative cut of the dense reference; rounding puts
# an exact null near 1e-16, a near-collinear covariate (eps noise around a
# cluster dummy) near eps^2.
cr2_null_dirs <- function(Minv, Ag) {
  ds <- 1 / sqrt(pmax(diag(Minv), .Machine$double.xmin))
  O <- (Minv - Ag) * outer(ds, ds)
  eo <- eigen((O + t(O)) / 2, symmetric = TRUE)
  nul <- eo$values <= 1e-12 * max(abs(eo$values))
  ds * eo$vectors[, nul, drop = FALSE]
}

# A_g Phi_g^-1 X_g for one cluster, given M (p x p).
cr2_awx <- function(X, unit, a, b, M, wu = NULL, nvec = NULL) {
  op <- cr2_cluster(X, unit, a, b, wu)
  if (is.null(nvec)) nvec <- matrix(0, ncol(X), 0L)
  FX <- op$Fmul(X)
  # class projections of U = [E u, E Lambda u, E Lambda^2 u, F X]; only the
  # span of F X matters, so F is applied to a basis of the cluster's column
  # space (a few columns when most fixed effects are other clusters' dummies)
  sx <- svd(X, nv = 0L)
  FB <- op$Fmul(sx$u[, sx$d > 1e-10 * max(sx$d, 0), drop = FALSE])
  Uc <- cbind(op$u, op$lam * op$u, op$lam^2 * op$u)                 # in E coordinates
  FXc <- op$Et(FB)
  FXp <- op$perp(FB)
  # the blocks (one per class of D) have disjoint supports (units of one
  # lambda on span E, rows of one weight off it), so they are orthogonal and
  # each gets its own orthonormal basis: an SVD per block, not of the whole;
  # columns that vanish in this cluster (other clusters' fixed effects) and
  # directions below 1e-10 of the largest column norm are dropped
  Ucl <- cbind(Uc, FXc)
  tol <- 1e-10 * max(sqrt(colSums(Ucl^2)), sqrt(colSums(FXp^2)), 0)
  block_basis <- function(B, rows) {
    B <- B[rows, , drop = FALSE]
    B <- B[, colSums(abs(B)) > 0, drop = FALSE]
    if (!ncol(B)) return(NULL)
    sv <- svd(B, nv = 0L)
    k <- sv$d > tol
    if (!any(k)) return(NULL)
    Qk <- matrix(0, op$n, sum(k))
    Qk[rows, ] <- sv$u[, k, drop = FALSE]
    Qk
  }
  lam_r <- op$lam[unit]
  # many classes (weights): the exact basis would be about n_g x n_g, so
  # G^+1/2 is applied by quadrature instead (cr2_ginvh_quad())
  r_exact <- sum(vapply(split(seq_len(op$n), lam_r), function(i) min(length(i), ncol(Ucl)), 0)) +
    sum(vapply(split(seq_len(op$n), op$wr), function(i) min(length(i), ncol(FXp)), 0))
  if (r_exact > getOption("sfpceval.cr2_exact_max", 400)) {
    Ginvh <- cr2_ginvh_quad(op, X, M, nvec)
    Y <- op$phi_inv(X)
    return(list(AWX = op$Ftmul(Ginvh(op$Fmul(Y))), phi = op$phi))
  }
  Qs <- c(lapply(sort(unique(op$lam)), function(l) {
    block_basis(op$E(Ucl * (op$lam == l)), which(lam_r == l))
  }), lapply(sort(unique(op$wr)), function(wk) block_basis(FXp, which(op$wr == wk))))
  Q <- do.call(cbind, Qs[!vapply(Qs, is.null, TRUE)])
  if (is.null(Q)) Q <- matrix(0, op$n, 0L)
  GQ <- op$FFt(op$FFt(Q)) - FX %*% (M %*% crossprod(FX, Q))
  Gs <- crossprod(Q, GQ)
  # G is singular when X has a column constant within the cluster (a
  # cluster-level fixed effect): the inverse square root is then taken on the
  # non-null eigenvalues, as clubSandwich's matrix_power() does. The exact
  # null space (cr2_null_dirs(): F'^-1 Phi^-1 X_g n, inside span Q) is
  # removed first: computed as an eigenvalue of Gs it is rounding, of order
  # 1e-16 kappa(M) of the largest, above the 1e-12 cut when the design is
  # near-collinear, and its inverse square root then inflated p_g'Phi p_g
  # (the Satterthwaite df) by orders of magnitude
  Qc <- diag(ncol(Q))
  if (ncol(nvec) && ncol(Q)) {
    QN <- crossprod(Q, cr2_finv_t(op, op$phi_inv(X %*% nvec)))
    qn <- qr(QN)
    Qc <- qr.Q(qn, complete = TRUE)[, -seq_len(qn$rank), drop = FALSE]
  }
  Gc <- crossprod(Qc, Gs %*% Qc)
  # (every direction of Q in the null space -- a cluster whose columns are
  # all its own fixed effects -- leaves nothing: Gs^-1/2 is 0 on span Q)
  ev <- if (ncol(Qc)) eigen((Gc + t(Gc)) / 2, symmetric = TRUE) else list(values = double(0), vectors = matrix(0, 0, 0))
  ih <- ifelse(ev$values > 1e-12 * max(ev$values, 0), 1 / sqrt(pmax(ev$values, 0)), 0)
  Vc <- Qc %*% ev$vectors
  Gs_mh <- Vc %*% (t(Vc) * ih)
  Dmh <- function(v) {                                               # D^-1/2 v
    z <- op$Et(v)
    op$perp(v) * op$wr + op$E(z / op$lam)
  }
  Ginvh <- function(v) {
    Qv <- crossprod(Q, v)
    Q %*% (Gs_mh %*% Qv) + Dmh(v - Q %*% Qv)
  }
  Y <- op$phi_inv(X)
  list(AWX = op$Ftmul(Ginvh(op$Fmul(Y))), phi = op$phi, min_eigen = if (length(ev$values)) min(ev$values) else NA_real_)
}

# F'^-1 v for one cluster's operators op (cr2_cluster()).
cr2_finv_t <- function(op, v) {
  z <- op$Et(v)
  z <- z / sqrt(op$lam)
  z <- z - (op$k / (1 + op$k * sum(op$u^2))) * op$u %*% crossprod(op$u, z)
  op$perp(v) * sqrt(op$wr) + op$E(z)
}

# G^+1/2 (the pseudo-inverse square root of G = F (Phi - X M X') F') as a
# function, without a basis of the invariant subspace, for clusters whose D
# has many classes (many distinct weights). With the null space of G
# deflated (G~ = G + N N', N orthonormal, so G^+1/2 = G~^-1/2 - N N'),
#   G~^-1/2 y = (2 / pi) int_0^Inf (G~ + t^2 I)^-1 y dt,
# and G~ = D + U C U' with U = [E B, F Ux, N] of a few columns: B an
# orthonormal basis of span(u, Lambda u, Lambda^2 u) (F F' F F' = D + E B C2
# B'E' on span E, nothing off it), Ux S V' the SVD of X_g (F X M X'F' = F Ux
# S V'M V S Ux'F'). Each resolvent is D's plus a Woodbury term in U, and
# U'(D + s)^-1 U is a sum over D's classes of precomputed Gram matrices, so a
# node costs O(K r^2), K classes, r columns. The integral in x = log t by the
# trapezoid rule (the integrand is a sech in x for each eigenvalue, analytic
# in a strip of half-width pi / 2: step 1/4 gives an error of exp(-pi^2 * 4))
# over [log sqrt(lambda_min) - 36, log sqrt(lambda_max) + 36], lambda_min =
# 1e-13 lambda_max: the margin of 36 resolves eigenvalues down to about
# 1e-21 lambda_max to a relative 1e-12 (an eigenvalue is not cut at 1e-12 as
# in the exact path; below 1e-21 it would get a bounded weight, not its
# own). The null space is deflated exactly: G v = 0 iff F'v = Phi^-1 X_g n
# with X_(-g) n = 0 (a combination of columns that is zero outside the
# cluster, e.g. its own LA dummy), nvec from cr2_null_dirs().
cr2_ginvh_quad <- function(op, X, M, nvec) {
  C <- length(op$lam)
  # span E part of (F F')^2 - D
  KE <- function(z) {                                                # (F F') on E coords
    z <- z + op$k * op$u %*% crossprod(op$u, z)
    z <- op$lam * z
    z + op$k * op$u %*% crossprod(op$u, z)
  }
  V2 <- cbind(op$u, op$lam * op$u, op$lam^2 * op$u)
  sv2 <- svd(V2, nv = 0L)
  B <- sv2$u[, sv2$d > 1e-12 * max(sv2$d, 0), drop = FALSE]
  C2 <- if (op$k != 0 && ncol(B)) crossprod(B, KE(KE(B)) - op$lam^2 * B) else matrix(0, ncol(B), ncol(B))
  C2 <- (C2 + t(C2)) / 2
  # F X M X'F' from the SVD of X_g
  sx <- svd(X)
  keep <- sx$d > 1e-10 * max(sx$d, 0)
  Ux <- sx$u[, keep, drop = FALSE]
  SV <- t(sx$v[, keep, drop = FALSE]) * sx$d[keep]                   # S V'
  CX <- -SV %*% M %*% t(SV)
  # null space of G (cr2_null_dirs())
  NG <- NULL
  if (ncol(nvec)) NG <- qr.Q(qr(cr2_finv_t(op, op$phi_inv(X %*% nvec))))
  U <- cbind(op$E(B), op$Fmul(Ux), NG)
  r <- ncol(U)
  Cm <- matrix(0, r, r)
  i1 <- seq_len(ncol(B))
  i2 <- ncol(B) + seq_len(ncol(Ux))
  i3 <- ncol(B) + ncol(Ux) + seq_len(if (is.null(NG)) 0L else ncol(NG))
  Cm[i1, i1] <- C2
  Cm[i2, i2] <- CX
  Cm[i3, i3] <- diag(length(i3))
  # D's classes: lambda^2 on span E (by unit), w^-2 off it (by row)
  ue <- op$Et(U)
  up <- op$perp(U)
  cls_e <- split(seq_len(C), op$lam)
  cls_p <- split(seq_len(op$n), op$wr)
  d <- c(as.numeric(names(cls_e))^2, 1 / as.numeric(names(cls_p))^2)
  gram <- cbind(vapply(cls_e, function(i) c(crossprod(ue[i, , drop = FALSE])), double(r * r)),
                vapply(cls_p, function(i) c(crossprod(up[i, , drop = FALSE])), double(r * r)))
  dim(gram) <- c(r * r, length(d))
  lmax <- max(d) + max(abs(Cm)) * r * max(eigen(crossprod(U), symmetric = TRUE, only.values = TRUE)$values)
  lmin <- 1e-13 * lmax
  h <- 0.25
  x <- seq(0.5 * log(lmin) - 36, 0.5 * log(lmax) + 36, by = h)
  s <- exp(2 * x)
  cw <- (2 / pi) * h * exp(x)
  # the r x r solves do not depend on y: Gamma_j = C (I + Psi_j C)^-1 (U'(D + s_j)^-1 y)
  Hs <- lapply(s, function(sj) {
    Psi <- matrix(gram %*% (1 / (d + sj)), r, r)
    Cm %*% solve(diag(r) + Psi %*% Cm)
  })
  function(y) {
    y <- as.matrix(y)
    ny <- ncol(y)
    ye <- op$Et(y)
    yp <- op$perp(y)
    cross <- cbind(vapply(cls_e, function(i) c(crossprod(ue[i, , drop = FALSE], ye[i, , drop = FALSE])), double(r * ny)),
                   vapply(cls_p, function(i) c(crossprod(up[i, , drop = FALSE], yp[i, , drop = FALSE])), double(r * ny)))
    dim(cross) <- c(r * ny, length(d))
    J <- matrix(0, r * ny, length(d))
    for (j in seq_along(s)) {
      g <- 1 / (d + s[j])
      Gam <- Hs[[j]] %*% matrix(cross %*% g, r, ny)
      J <- J + c(Gam) %o% (cw[j] * g)
    }
    ke <- length(cls_e)
    ze <- matrix(0, C, ny)
    for (k in seq_len(ke)) {
      i <- cls_e[[k]]
      ze[i, ] <- ue[i, , drop = FALSE] %*% matrix(J[, k], r, ny)
    }
    zp <- matrix(0, op$n, ny)
    for (k in seq_along(cls_p)) {
      i <- cls_p[[k]]
      zp[i, ] <- up[i, , drop = FALSE] %*% matrix(J[, ke + k], r, ny)
    }
    out <- op$perp(y) * op$wr + op$E(ye / op$lam) - (op$E(ze) + zp)
    if (!is.null(NG)) out <- out - NG %*% crossprod(NG, y)
    out
  }
}

# ---- Fast path: no random effect spanning the cluster (b = 0) ---------------
# With b = 0 (the Family Safeguarding absence model: child random effects,
# clustered by authority), Phi_g is block-diagonal by unit, with the known
# spectral decomposition Phi_g = sum_k l_k P_k: on the unit mean direction
# e_c the eigenvalue 1 / w_c + a m_c, on the rest of unit c 1 / w_c. Take
# F = Phi_g^1/2 (A_g does not depend on the choice of F). Then F, F'^-1 and
# D = (F F')^2 = Phi^2 act on class k as the scalars l^1/2, l^-1/2, l^2, and
#   G = D - V M V',  V = F X_g,
# a diagonal matrix minus a rank-p_g term. With Y = F'^-1 X_g (= F Phi^-1 X_g)
# and Z = G^+1/2 Y, A_g Phi^-1 X_g = F'Z, so everything lmm_cr2() needs is a
# bilinear form in G^+1/2 (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018):
#   AWX'e             = (F e)' G^+1/2 Y
#   X_g'AWX           = V' G^+1/2 Y
#   AWX'Phi AWX       = Z'(F Phi F')Z = Z'(G + V M V')Z
#                     = Y'Y - (N'Y)'(N'Y) + (V'Z)' M (V'Z),
# N an orthonormal basis of the null space of G (G G^+1/2 G^+1/2 = I - N N').
# G v = 0 iff F'v = Phi^-1 X_g n with X_(-g) n = 0 (a combination of columns
# that vanishes outside the cluster, e.g. its own authority's dummy), so
# N = Phi^-3/2 X_g n R^-1, n from the null space of M^-1 - X_g'Phi^-1 X_g.
# With G~ = G + c N N' (c = max l^2, inside the spectrum), G^+1/2 = G~^-1/2 -
# c^-1/2 N N', and G~^-1/2 by the quadrature of Hale, Higham & Trefethen
# (2008, method 3) on (2 / pi) int_0^Inf (G~ + t^2 I)^-1 dt: t = sqrt(lo)
# sc(u | k), k'^2 = lo / hi, [lo, hi] containing the spectrum, turns the
# integrand into an even 2K-periodic function analytic in |Im u| < K', so the
# midpoint rule converges as exp(-pi^2 n / K): n = 56 nodes give relative
# error about 3e-12 (the rounding floor) for hi / lo = 1e13, with hi = max l^2
# (G <= D). Below lo the quadrature does not give lambda^-1/2 (it stays
# finite: about 3.4e7 hi^-1/2 as lambda -> 0, neither 0 nor lambda^-1/2), so
# the interval must contain the spectrum of G~: the exact null space is
# deflated (cr2_null_dirs(), the same rule as the exact path), lo = 1e-13 hi
# unless a lower bound on the smallest eigenvalue of G~ (from the s = 0
# Woodbury system, below) is smaller, in which case lo is that bound / 2 and
# 80 nodes (relative error below 1e-11 down to lo = 1e-15 hi, the floor of
# the node computation; a warning below it). Each resolvent is D's plus a Woodbury term in U = [V, N],
# Cm = diag(-M, c I):
#   Q1'(G~ + s)^-1 Q2 = Q1'R Q2 - Q1'R U Cm (I + U'R U Cm)^-1 U'R Q2,
# R = (D + s)^-1, and every block is a sum over the classes of
#   sum_k l_k^gamma / (l_k^2 + s) Gamma_k,  Gamma_k = B'P_k B,  B = [X_g, e_g]
# (V, F e: gamma 1/2 each side; Y: -1/2; N: -3/2). So the cluster costs one
# pass over its rows for the class Gram matrices (O(n_g q^2), q = p_g + 1) and
# O(K q^2) per node for K classes (distinct eigenvalues of Phi_g): memory
# O(n_g q + q^2 (nodes + chunk)), never n_g x n_g.

# Nodes s_j and weights w_j with sum_j w_j / (lambda + s_j) = lambda^-1/2 for
# lambda in [lo, hi] (Hale, Higham & Trefethen 2008): the Jacobi functions at
# the midpoints u_j of [0, K] by the arithmetic-geometric mean (Abramowitz &
# Stegun 16.4), the upper half from the reflection u -> K - u (sn(K - v) =
# cd(v), cn(K - v) = k' sd(v)) so that cn is never taken near its zero.
cr2_isqrt_nodes <- function(lo, hi, n = 56L) {
  kp <- sqrt(lo / hi)
  a <- 1
  b <- kp
  cc <- sqrt((1 - kp) * (1 + kp))
  as <- a
  cs <- cc
  while (abs(cc) > 1e-15 * a && length(as) < 60L) {
    an <- (a + b) / 2
    cc <- (a - b) / 2
    b <- sqrt(a * b)
    a <- an
    as <- c(as, a)
    cs <- c(cs, cc)
  }
  N <- length(as) - 1L
  K <- pi / (2 * a)
  u <- (seq_len(n) - 0.5) * K / n
  v <- pmin(u, K - u)
  phi <- 2^N * a * v
  for (i in rev(seq_len(N))) phi <- (phi + asin(cs[i + 1L] / as[i + 1L] * sin(phi))) / 2
  sn <- sin(phi)
  cn <- cos(phi)
  dn <- sqrt(kp^2 + (1 - kp) * (1 + kp) * cn^2)
  low <- u <= K / 2
  list(s = ifelse(low, lo * sn^2 / cn^2, hi * cn^2 / sn^2),
       w = (2 / pi) * (K / n) * ifelse(low, sqrt(lo) * dn / cn^2, sqrt(hi) * dn / sn^2))
}

# One cluster's pieces for lmm_cr2() with b = 0. X: n x p (all columns), e:
# residuals, unit: unit codes 1..C, wu: weight per unit or NULL, M: p x p,
# Minv: solve(M). Returns ug = AWX'e (p), xa = X'AWX (p x p), apa = AWX'Phi
# AWX (p x p), AWX = A_g Phi_g^-1 X_g.
cr2_cluster_fast <- function(X, e, unit, a, wu, M, Minv, nodes = 56L, chunk = 256L) {
  p <- ncol(X)
  n <- nrow(X)
  m <- tabulate(unit)
  C <- length(m)
  if (is.null(wu)) wu <- rep(1, C)
  # the base columns: X_g = B_x T exactly, with the columns constant in the
  # cluster (its authority's dummies, authority-level covariates; all of
  # them when X is centred) collapsed into one column of ones, and columns
  # scaled to unit root mean square
  lo <- apply(X, 2L, min)
  hi <- apply(X, 2L, max)
  vary <- which(lo != hi)
  const <- which(lo == hi & lo != 0)
  Tm <- matrix(0, length(vary) + (length(const) > 0), p)
  Tm[cbind(seq_along(vary), vary)] <- 1
  if (length(const)) Tm[nrow(Tm), const] <- lo[const]
  B <- cbind(X[, vary, drop = FALSE], if (length(const)) 1, e)
  sc <- sqrt(colSums(B^2) / n)
  sc[!(sc > 0)] <- 1
  B <- B / rep(sc, each = n)
  q <- ncol(B)
  ix <- seq_len(q - 1L)
  Tm <- Tm * sc[ix]                                                  # X_g = B[, ix] Tm
  # the class pieces: per unit its mean direction (one row sqrt(m) bbar, at
  # 1 / w + a m) and, for units of several rows, the centred rows (at 1 / w)
  bbar <- rowsum(B, unit, reorder = TRUE) / m
  Bc <- B - bbar[unit, , drop = FALSE]
  rows <- rbind(bbar * sqrt(m), Bc[m[unit] > 1L, , drop = FALSE])
  ell <- c(1 / wu + a * m, (1 / wu)[unit][m[unit] > 1L])
  lev <- sort(unique(ell))
  cls <- match(ell, lev)
  K <- length(lev)
  hi <- max(lev)^2
  # null space of G (cr2_null_dirs()) in B's coordinates
  Gm1 <- crossprod(rows / sqrt(ell))                                 # B'Phi^-1 B
  XPX <- crossprod(Tm, Gm1[ix, ix, drop = FALSE] %*% Tm)
  nb <- Tm %*% cr2_null_dirs(Minv, XPX)
  nn <- ncol(nb)
  Mb <- Tm %*% M %*% t(Tm)
  cfix <- hi
  r <- q - 1L + nn
  Cm <- matrix(0, r, r)
  Cm[ix, ix] <- -Mb
  if (nn) Cm[q - 1L + seq_len(nn), q - 1L + seq_len(nn)] <- cfix * diag(nn)
  # a lower bound on the spectrum of G~ = D + U Cm U' = D^1/2 (I + D^-1/2 U
  # Cm U'D^-1/2) D^1/2: min(D) min(1, eigenvalues of I + S^1/2 Cm S^1/2),
  # S = U'D^-1 U (the s = 0 Woodbury Gram matrix; the middle factor is I off
  # span D^-1/2 U). The quadrature interval [lo, hi] is widened to contain it
  # (80 nodes, down to 1e-15 hi), so no eigenvalue outside cr2_null_dirs()
  # is cut or mis-weighted.
  S <- Gm1[ix, ix, drop = FALSE]                                     # V'D^-1 V
  if (nn) {
    z0 <- cr2_class_sums(rows, cls, K, cbind(lev^-3, lev^-5), chunk, right = rbind(nb, 0))
    Ri <- backsolve(chol(crossprod(nb, z0[[1L]][ix, , drop = FALSE])), diag(nn))   # N = N0 Ri
    VN <- z0[[1L]][ix, , drop = FALSE] %*% Ri
    S <- rbind(cbind(S, VN), cbind(t(VN), crossprod(Ri, crossprod(nb, z0[[2L]][ix, , drop = FALSE]) %*% Ri)))
  }
  es <- eigen((S + t(S)) / 2, symmetric = TRUE)
  Sh <- es$vectors %*% (sqrt(pmax(es$values, 0)) * t(es$vectors))
  mid <- diag(r) + Sh %*% Cm %*% Sh
  lb <- min(lev)^2 * min(1, eigen((mid + t(mid)) / 2, symmetric = TRUE, only.values = TRUE)$values)
  lo <- getOption("sfpceval.cr2_quad_lo", 1e-13) * hi                # option: tests only
  if (lb < lo) {
    lo <- max(lb / 2, 1e-15 * hi)
    nodes <- max(nodes, 80L)
    if (lb / 2 < lo) {
      warning("CR2: the cluster's adjustment matrix may have an eigenvalue below 1e-15 of its largest ",
              "beyond the cluster-level fixed effects (a covariate nearly collinear with them?); ",
              "its CR2 weight and Satterthwaite df are inaccurate", call. = FALSE)
    }
  }
  nd <- cr2_isqrt_nodes(lo, hi, nodes)
  # class weights: gamma 1 and 0 at every node; -1, -2, -3 at every node
  # (only against nb) and at s = 0 (no node) for N'N, N'Q
  W1 <- outer(lev, nd$s, function(l, s) l / (l^2 + s))
  W0 <- outer(lev, nd$s, function(l, s) 1 / (l^2 + s))
  full <- cr2_class_sums(rows, cls, K, cbind(W1, W0), chunk)
  S1 <- full[seq_len(nodes)]
  S0 <- full[nodes + seq_len(nodes)]
  if (nn) {
    thin <- cr2_class_sums(rows, cls, K, cbind(outer(lev, nd$s, function(l, s) l^-1 / (l^2 + s)),
                                               outer(lev, nd$s, function(l, s) l^-2 / (l^2 + s)),
                                               outer(lev, nd$s, function(l, s) l^-3 / (l^2 + s)),
                                               lev^-2), chunk, right = rbind(nb, 0))
    NQ1 <- crossprod(Ri, t(Gm1[, ix, drop = FALSE] %*% nb))                                    # N'(l^1/2 B): nn x q
    NY <- crossprod(Ri, t(thin[[3L * nodes + 1L]][ix, , drop = FALSE]))    # N'Y: nn x (q - 1)
  }
  acc <- matrix(0, q, q - 1L)
  for (j in seq_len(nodes)) {
    s1 <- S1[[j]]
    s0 <- S0[[j]]
    Q1U <- s1[, ix, drop = FALSE]                                          # (e, x) x U
    UU <- s1[ix, ix, drop = FALSE]
    UQ2 <- s0[ix, ix, drop = FALSE]
    if (nn) {
      t1 <- thin[[j]] %*% Ri                                               # l^1/2 B vs N: q x nn
      t2 <- crossprod(Ri, t(thin[[nodes + j]][ix, , drop = FALSE]))        # N vs Y: nn x (q - 1)
      t3 <- crossprod(Ri, crossprod(nb, thin[[2L * nodes + j]][ix, , drop = FALSE]) %*% Ri)
      Q1U <- cbind(Q1U, t1)
      UU <- rbind(cbind(UU, t1[ix, , drop = FALSE]), cbind(t(t1[ix, , drop = FALSE]), t3))
      UQ2 <- rbind(UQ2, t2)
    }
    Tj <- s0[, ix, drop = FALSE] - Q1U %*% (Cm %*% solve(diag(r) + UU %*% Cm, UQ2))
    acc <- acc + nd$w[j] * Tj
  }
  if (nn) acc <- acc - crossprod(NQ1, NY) / sqrt(cfix)
  # back to X's columns: rows of acc are (x..., e) of B, columns x
  xab <- acc[ix, , drop = FALSE]
  apb <- Gm1[ix, ix, drop = FALSE] + crossprod(xab, Mb %*% xab)      # Y'Y + (V'Z)'M(V'Z)
  if (nn) apb <- apb - crossprod(NY)
  ug <- drop(crossprod(Tm, acc[q, ] * sc[q]))
  xa <- crossprod(Tm, xab %*% Tm)
  apa <- crossprod(Tm, apb %*% Tm)
  list(ug = ug, xa = xa, apa = apa)
}

# sum_k W[k, j] B'P_k B for every column j of W: a list of q x q matrices
# (or q x ncol(right) with `right`), from the class rows (rows: the class
# pieces, cls their class 1..K), classes taken `chunk` at a time so that the
# per-class Gram matrices never all exist at once.
cr2_class_sums <- function(rows, cls, K, W, chunk = 256L, right = NULL) {
  q <- ncol(rows)
  qr <- if (is.null(right)) q else ncol(right)
  acc <- matrix(0, q * qr, ncol(W))
  o <- order(cls)
  rows <- rows[o, , drop = FALSE]
  cls <- cls[o]
  ends <- cumsum(tabulate(cls, K))
  starts <- c(1L, ends[-K] + 1L)
  for (k0 in seq(1L, K, by = chunk)) {
    ks <- k0:min(K, k0 + chunk - 1L)
    Gk <- vapply(ks, function(k) {
      r <- rows[starts[k]:ends[k], , drop = FALSE]
      if (is.null(right)) crossprod(r) else crossprod(r, r %*% right)
    }, double(q * qr))
    acc <- acc + matrix(Gk, q * qr) %*% W[ks, , drop = FALSE]
  }
  lapply(seq_len(ncol(W)), function(j) matrix(acc[, j], q, qr))
}

# CR2 vcov and Satterthwaite df for all coefficients. X, e: rows; cl: CR
# cluster codes 1..G; unit: unit codes within clusters (global codes);
# a, b: see above; M = (X'Phi^-1 X)^-1. Contrasts: the columns of L (p x k),
# default the identity. w: prior weights of the rows (constant within a
# unit) or NULL.
lmm_cr2 <- function(X, e, cl, unit, a, b, M, L = diag(ncol(X)), w = NULL,
                    fast = getOption("sfpceval.cr2_fast", TRUE)) {
  G <- max(cl)
  p <- ncol(X)
  rows <- split(seq_len(nrow(X)), cl)
  Ug <- matrix(0, p, G)
  XtP <- array(0, c(p, ncol(L), G))       # X_g'p_g, p_g = A_g Phi_g^-1 X_g M L
  TP <- matrix(0, G, ncol(L))             # p_g'Phi_g p_g
  ML <- M %*% L
  fast <- fast && b == 0
  ops <- lapply(seq_len(G), function(g) {
    i <- rows[[g]]
    un <- match(unit[i], unique(unit[i]))
    list(un = un, wu = if (is.null(w)) NULL else w[i][match(seq_len(max(un)), un)])
  })
  # X'Phi^-1 X summed over the clusters (cr2_null_dirs() needs it accurate)
  Ag <- function(g) {
    Xg <- X[rows[[g]], , drop = FALSE]
    crossprod(Xg, cr2_cluster(Xg, ops[[g]]$un, a, b, ops[[g]]$wu)$phi_inv(Xg))
  }
  Minv <- matrix(0, p, p)
  for (g in seq_len(G)) Minv <- Minv + Ag(g)                         # one A_g at a time
  for (g in seq_len(G)) {
    i <- rows[[g]]
    un <- ops[[g]]$un
    wu <- ops[[g]]$wu
    pc <- if (fast) {
      cr2_cluster_fast(X[i, , drop = FALSE], e[i], un, a, wu, M, Minv)
    } else {
      r <- cr2_awx(X[i, , drop = FALSE], un, a, b, M, wu, cr2_null_dirs(Minv, Ag(g)))
      list(ug = drop(crossprod(r$AWX, e[i])), xa = crossprod(X[i, , drop = FALSE], r$AWX),
           apa = crossprod(r$AWX, r$phi(r$AWX)))
    }
    Ug[, g] <- pc$ug
    XtP[, , g] <- pc$xa %*% ML
    TP[g, ] <- colSums(ML * (pc$apa %*% ML))
  }
  V <- M %*% tcrossprod(Ug) %*% M
  df <- vapply(seq_len(ncol(L)), function(j) {
    Xp <- matrix(XtP[, j, ], p, G)
    T <- -crossprod(Xp, M %*% Xp)
    diag(T) <- diag(T) + TP[, j]
    sum(diag(T))^2 / sum(T^2)
  }, 0)
  list(vcov = V, df = df)
}

# ---- Leave-one-cluster-out fits that lose columns ----------------------------
# Without cluster g a column of X may not be identified: an authority-level
# covariate or a step indicator that varies in cluster g alone, the
# authority's own fixed effect. As MacKinnon, Nielsen & Webb (2023, "a
# guide to empirical practice") do for CV3 with cluster fixed effects, the
# leave-g-out fit then drops, for that fit only, columns until the rest are
# identified, and the jackknife uses the coefficients that stay identified.
#
# Which quantity: let A_(g) = X_(-g)'W X_(-g) (the information without g)
# with null space N (columns X_(-g) n = 0). A contrast c'beta is identified
# without g iff N'c = 0; then every solution of the leave-g-out normal
# equations gives the same c'beta_(g), and the fit on the remaining columns
# K (the dropped columns D are combinations of them on the rows X_(-g)) is
# one such solution, padded with the dropped coefficients. So the jackknife
# estimate of an identified coefficient is its estimate in the reduced
# leave-one-out fit, whatever columns are dropped; a coefficient that is not
# identified without g (the dropped ones, and those its column is aliased
# with, e.g. the intercept when the dropped column is constant without g)
# has no jackknife estimate. In residual form, with S_(g) = X_(-g)'W e_(-g)
# at the full fit beta,
#   beta_(g) - beta = (d_K, d_D) = (A_(g),KK^-1 S_(g),K, 0),
# the reduced fit with the dropped coefficients held at the full fit's values
# (an offset): its fitted values on the rows without g are those of every
# solution, and it also predicts cluster g's rows (the jackknife residuals of
# the bootstrap DGP) from the full fit's value of what only g identifies
# (the unrestricted full fit's, also in the restricted DGP: lmm_jack_dgp()).
# Reusable for any GLS/IRLS jackknife with per-cluster information matrices.
#
# loo_reduced(A, Ag): A = X'WX (all clusters, summed directly), Ag = cluster
# g's X_g'W_g X_g. The null space by cr2_null_dirs() (the rule of the CR2
# adjustment's null space). D: the last columns, in the columns' order, whose
# removal leaves a full-rank set (as lm() aliases later columns). Returns
# drop (indices into the columns), inv (p x p: solve(A_(g),KK) padded with
# zeros, a generalised inverse of A_(g)), and identified(L): for each
# column of L (contrasts), TRUE when it is identified without g.
loo_reduced <- function(A, Ag) {
  p <- ncol(A)
  Ai <- A - Ag
  Ai <- (Ai + t(Ai)) / 2
  ds <- 1 / sqrt(pmax(diag(A), .Machine$double.xmin))
  N <- cr2_null_dirs(A, Ag) / ds                                     # orthonormal, scaled coordinates
  nn <- ncol(N)
  drop <- integer(0)
  if (nn) {
    for (k in rev(seq_len(p))) {
      if (length(drop) == nn) break
      cand <- c(drop, k)
      # N has orthonormal columns: its rows' singular values are on an
      # absolute scale (qr()'s rank is relative to the rows' own size)
      if (min(svd(N[cand, , drop = FALSE], 0L, 0L)$d) > 1e-6) drop <- cand
    }
    drop <- sort(drop)
  }
  keep <- setdiff(seq_len(p), drop)
  inv <- matrix(0, p, p)
  inv[keep, keep] <- solve(Ai[keep, keep, drop = FALSE])
  identified <- function(L) {
    L <- as.matrix(L)
    if (!nn) return(rep(TRUE, ncol(L)))
    Ls <- L * ds                                                     # c'n = (ds c)'v
    off <- sqrt(colSums(crossprod(N, Ls)^2))
    off <= 1e-6 * sqrt(colSums(Ls^2))
  }
  list(drop = drop, inv = inv, identified = identified)
}

# CR3: the leave-one-cluster-out (jackknife) variance of MacKinnon, Nielsen &
# Webb (2023), with the variance components held at their estimates (so each
# leave-out fit is the GLS without cluster g, as in the CR3 bootstrap of
# R/lmm_boot.R):  V = (G - 1) / G sum_g d_g d_g',  d_g = beta_(g) - beta
# = (A - A_g)^-1 (S - s_g), A_g = X_g'Phi_g^-1 X_g, s_g = X_g'Phi_g^-1 e_g,
# S = sum_g s_g (zero at the GLS fit), from per-cluster cross-products.
# clubSandwich's vcovCR(type = "CR3") is sum_g d_g d_g' (its adjustment
# (I - X_g M X_g'W_g)^-1 gives the same d_g), i.e. G / (G - 1) times this.
# When a leave-out fit loses columns, d_g is the reduced fit's
# (loo_reduced()), and a contrast not identified without some cluster has
# no CR3 (NA row and column).
# Arguments as lmm_cr2(); L: contrasts (columns), default the identity.
# Returns the k x k variance of L'beta (NA for the contrasts without a
# jackknife), the indices of the clusters whose leave-out fit dropped
# columns (unidentified), the dropped columns per such cluster (dropped, a
# list), and per contrast the clusters without which it is not identified
# (lost, a list; empty vectors for the others).
lmm_cr3 <- function(X, e, cl, unit, a, b, M, w = NULL, L = diag(ncol(X))) {
  G <- max(cl)
  p <- ncol(X)
  rows <- split(seq_len(nrow(X)), cl)
  # one cluster's Phi_g^-1 applied to v (rows of the cluster)
  phi_inv <- function(g, v) {
    i <- rows[[g]]
    un <- match(unit[i], unique(unit[i]))
    wu <- if (is.null(w)) NULL else w[i][match(seq_len(max(un)), un)]
    cr2_cluster(X[i, , drop = FALSE], un, a, b, wu)$phi_inv(v)
  }
  # s_g and A_g in one pass over each cluster's rows (G matrices p x p: the
  # clusters are the authorities); A summed directly, not solve(M), which
  # loses kappa(M) digits that loo_reduced()'s null space needs
  sg <- matrix(0, p, G)
  Ags <- vector("list", G)
  for (g in seq_len(G)) {
    Xg <- X[rows[[g]], , drop = FALSE]
    PX <- phi_inv(g, cbind(Xg, e[rows[[g]]]))
    sg[, g] <- crossprod(Xg, PX[, p + 1L])
    Ags[[g]] <- crossprod(PX[, seq_len(p), drop = FALSE], Xg)
  }
  S <- rowSums(sg)
  A <- Reduce(`+`, Ags)
  D <- matrix(0, p, G)
  ok <- matrix(TRUE, ncol(L), G)
  dropped <- list()
  for (g in seq_len(G)) {
    lo <- loo_reduced(A, Ags[[g]])
    D[, g] <- lo$inv %*% (S - sg[, g])
    if (length(lo$drop)) {
      dropped[[as.character(g)]] <- lo$drop
      ok[, g] <- lo$identified(L)
    }
  }
  DL <- crossprod(L, D)
  V <- (G - 1) / G * tcrossprod(DL)
  bad <- !apply(ok, 1L, all)
  V[bad, ] <- NA_real_
  V[, bad] <- NA_real_
  list(vcov = V, unidentified = as.integer(names(dropped)), dropped = dropped,
       lost = lapply(seq_len(ncol(L)), function(j) which(!ok[j, ])))
}
