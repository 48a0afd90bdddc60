# Cluster-robust (CR2) standard errors for the fixed effects of a linear
# mixed model, with Satterthwaite (Bell-McCaffrey) degrees of freedom, as
# clubSandwich::vcovCR(type = "CR2") and coef_test(test = "Satterthwaite")
# compute them for lmer fits (Pustejovsky & Tipton 2018), without n_g x n_g
# matrices.
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
       phi = phi, phi_inv = phi_inv, u = u, lam = lam, m = m, n = n, wr = wr)
}

# A_g Phi_g^-1 X_g for one cluster, given M (p x p).
cr2_awx <- function(X, unit, a, b, M, wu = NULL) {
  op <- cr2_cluster(X, unit, a, b, wu)
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
  Qs <- c(lapply(sort(unique(op$lam)), function(l) {
    block_basis(op$E(Ucl * (op$lam == l)), which(lam_r == l))
  }), lapply(sort(unique(op$wr)), function(wk) block_basis(FXp, which(op$wr == wk))))
  Q <- do.call(cbind, Qs[!vapply(Qs, is.null, TRUE)])
  if (is.null(Q)) Q <- matrix(0, op$n, 0L)
  GQ <- op$FFt(op$FFt(Q)) - FX %*% (M %*% crossprod(FX, Q))
  Gs <- crossprod(Q, GQ)
  ev <- eigen((Gs + t(Gs)) / 2, symmetric = TRUE)
  # G is singular when X has a column constant within the cluster (a
  # cluster-level fixed effect): the inverse square root is then taken on the
  # non-null eigenvalues, as clubSandwich's matrix_power() does
  ih <- ifelse(ev$values > 1e-12 * max(ev$values), 1 / sqrt(pmax(ev$values, 0)), 0)
  Gs_mh <- ev$vectors %*% (t(ev$vectors) * ih)
  Dmh <- function(v) {                                               # D^-1/2 v
    z <- op$Et(v)
    op$perp(v) * op$wr + op$E(z / op$lam)
  }
  Ginvh <- function(v) {
    Qv <- crossprod(Q, v)
    Q %*% (Gs_mh %*% Qv) + Dmh(v - Q %*% Qv)
  }
  Y <- op$phi_inv(X)
  list(AWX = op$Ftmul(Ginvh(op$Fmul(Y))), phi = op$phi, min_eigen = min(ev$values))
}

# CR2 vcov and Satterthwaite df for all coefficients. X, e: rows; cl: CR
# cluster codes 1..G; unit: unit codes within clusters (global codes);
# a, b: see above; M = (X'Phi^-1 X)^-1. Contrasts: the columns of L (p x k),
# default the identity. w: prior weights of the rows (constant within a
# unit) or NULL.
lmm_cr2 <- function(X, e, cl, unit, a, b, M, L = diag(ncol(X)), w = NULL) {
  G <- max(cl)
  p <- ncol(X)
  rows <- split(seq_len(nrow(X)), cl)
  Ug <- matrix(0, p, G)
  P <- vector("list", G)                  # p_g for every contrast: n_g x k
  XtP <- array(0, c(p, ncol(L), G))       # X_g'p_g
  TP <- matrix(0, G, ncol(L))             # p_g'Phi_g p_g
  ML <- M %*% L
  for (g in seq_len(G)) {
    i <- rows[[g]]
    un <- match(unit[i], unique(unit[i]))
    wu <- if (is.null(w)) NULL else w[i][match(seq_len(max(un)), un)]
    r <- cr2_awx(X[i, , drop = FALSE], un, a, b, M, wu)
    Ug[, g] <- crossprod(r$AWX, e[i])
    pg <- r$AWX %*% ML
    XtP[, , g] <- crossprod(X[i, , drop = FALSE], pg)
    TP[g, ] <- colSums(pg * r$phi(pg))
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
