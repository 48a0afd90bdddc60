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
       phi = phi, phi_inv = phi_inv, u = u, lam = lam, m = m, n = n, wr = wr, k = k)
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
  # many classes (weights): the exact basis would be about n_g x n_g, so
  # G^+1/2 is applied by quadrature instead (cr2_ginvh_quad())
  r_exact <- sum(vapply(split(seq_len(op$n), lam_r), function(i) min(length(i), ncol(Ucl)), 0)) +
    sum(vapply(split(seq_len(op$n), op$wr), function(i) min(length(i), ncol(FXp)), 0))
  if (r_exact > getOption("sfpceval.cr2_exact_max", 400)) {
    Ginvh <- cr2_ginvh_quad(op, X, M)
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
# 1e-13 lambda_max (eigenvalues below are treated as null, as the exact
# path's 1e-12 threshold). Null space: G v = 0 iff F'v = Phi^-1 X_g n with
# X_(-g) n = 0 (a combination of columns that is zero outside the cluster,
# e.g. its own LA dummy), found from X'Phi^-1 X - X_g'Phi_g^-1 X_g = M^-1 -
# X_g'Phi_g^-1 X_g.
cr2_ginvh_quad <- function(op, X, M) {
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
  # null space of G
  O <- solve(M) - crossprod(X, op$phi_inv(X))
  eo <- eigen((O + t(O)) / 2, symmetric = TRUE)
  nul <- eo$values <= 1e-9 * max(abs(eo$values))
  NG <- NULL
  if (any(nul)) {
    v <- op$phi_inv(X %*% eo$vectors[, nul, drop = FALSE])
    z <- op$Et(v)
    z <- z / sqrt(op$lam)
    z <- z - (op$k / (1 + op$k * sum(op$u^2))) * op$u %*% crossprod(op$u, z)
    v <- op$perp(v) * sqrt(op$wr) + op$E(z)                          # F'^-1 v
    NG <- qr.Q(qr(v))
  }
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

# CR3: the leave-one-cluster-out (jackknife) variance of MacKinnon, Nielsen &
# Webb (2023), with the variance components held at their estimates (so each
# leave-out fit is the GLS without cluster g, as in the CR3 bootstrap of
# R/lmm_boot.R):  V = (G - 1) / G sum_g d_g d_g',  d_g = beta_(g) - beta
# = (A - A_g)^-1 (S - s_g), A_g = X_g'Phi_g^-1 X_g, s_g = X_g'Phi_g^-1 e_g,
# S = sum_g s_g (zero at the GLS fit), from per-cluster cross-products.
# clubSandwich's vcovCR(type = "CR3") is sum_g d_g d_g' (its adjustment
# (I - X_g M X_g'W_g)^-1 gives the same d_g), i.e. G / (G - 1) times this.
# Arguments as lmm_cr2(). Returns the p x p variance (NA when a cluster's
# leave-out fit is not identified) and the indices of such clusters.
lmm_cr3 <- function(X, e, cl, unit, a, b, M, w = NULL) {
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
  # s_g first (one column each), then A_g one cluster at a time: never all
  # A_g at once (p x p x G)
  sg <- vapply(seq_len(G), function(g) {
    drop(crossprod(X[rows[[g]], , drop = FALSE], phi_inv(g, as.matrix(e[rows[[g]]]))))
  }, double(p))
  sg <- matrix(sg, p, G)
  S <- rowSums(sg)
  A <- solve(M)
  D <- matrix(NA_real_, p, G)
  short <- integer(0)
  for (g in seq_len(G)) {
    Xg <- X[rows[[g]], , drop = FALSE]
    Ai <- A - crossprod(phi_inv(g, Xg), Xg)
    Ai <- (Ai + t(Ai)) / 2
    if (pinv_sym(Ai)$rank < p) {
      short <- c(short, g)
      next
    }
    D[, g] <- solve(Ai, S - sg[, g])
  }
  V <- if (length(short)) matrix(NA_real_, p, p) else (G - 1) / G * tcrossprod(D)
  list(vcov = V, unidentified = short)
}
