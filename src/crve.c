/* crve.c: cluster-robust variance (CR0/CR1, CR2, CR3) and the ingredients
 * of the Bell-McCaffrey (Satterthwaite) degrees of freedom, without ever
 * forming an n_g x n_g matrix.
 *
 * Setting.  The full model is y = D alpha + X beta + e with fixed-effect
 * dummies D (absorbed) and weights W.  Let Xt = M_D X (the weighted
 * within-transformation) and U = [D, Xt].  Because D'W Xt = 0, the hat
 * matrix of the full model is H = U B U' W with the block-diagonal
 * B = diag((D'WD)^+, (Xt'W Xt)^{-1}), so its cluster block is
 *     H_gg = U_g B_act U_g' W_g,
 * where U_g keeps only the r_g columns of U that are non-zero in cluster g
 * (the fixed-effect levels present in g, plus the k columns of Xt) and
 * B_act is the matching sub-block of B.  r_g is small (levels in g + k).
 *
 * Low-rank powers.  Every adjustment matrix below has the form
 *     G = I + V T V'          (V: n_g x m, T: m x m symmetric).
 * Let V'V = E Gamma E' (keep Gamma_j > 1e-12 max Gamma after scaling the
 * columns of V to unit length), Q = V E Gamma^{-1/2} (orthonormal basis of
 * col(V)) and R = Gamma^{1/2} E', so that V = Q R.  Then
 *     G = I + Q S Q',  S = R T R' = F Lambda F',
 * i.e. G has eigenvalues 1 + lambda_j on col(QF) and 1 on its orthogonal
 * complement.  For any power h (with clubSandwich's pseudo-power rule:
 * eigenvalues below 1e-12 map to 0),
 *     h(G) = I + Q F diag(h(1 + lambda) - 1) F' Q'
 *          = I + V N V',   N = E Gamma^{-1/2} F diag(h(1+lambda)-1) F' Gamma^{-1/2} E'.
 * N is m x m; applying h(G) to a block costs O(n_g m k).
 *
 * CR2 (clubSandwich, lm): the adjustment is A_g = G_g^{-1/2} with
 *   unweighted: G_g = I - H_gg                         V = U_g, T = -B_act
 *   weighted:   G_g = [(I - H)(I - H)']_gg
 *             = I - H_gg - H_gg' + U_g C_act U_g'       V = [U_g, W_g U_g],
 *                                                       T = [[C, -B], [-B, 0]]
 *   with C = B (U'W^2 U) B.  The score of cluster g is X_g' W_g A_g e_g = Y_g' e_g
 *   with Y_g = A_g W_g Xt_g.
 * CR3: A_g = (I - H_gg)^{-1} = W_g^{-1/2} (I - Ht)^{-1} W_g^{1/2} with the
 *   symmetric Ht = W^{1/2} U B U' W^{1/2} (V = W^{1/2} U_g, T = -B_act, power
 *   -1, Moore-Penrose when singular), so Y_g = W^{1/2} (I - Ht)^+ W^{1/2} Xt_g.
 * CR2 with inverse-variance weights (type 4; the working weights of a
 *   logit's last IRLS step, whose working residuals have variance W^{-1}):
 *   on the scaled system (W^{1/2} U, W^{1/2} e) the working model is
 *   homoskedastic, so A_g = (I - Ht_gg)^{-1/2} there:
 *   Y_g = W^{1/2} (I - Ht)^{-1/2} W^{1/2} Xt_g (as CR3 with power -1/2), and
 *   the Satterthwaite ingredients are those of the unweighted case on the
 *   scaled system: K1 = Ys'Ys, Ua = (W^{1/2} U_g)'Ys, Ys = (I - Ht)^{-1/2} W^{1/2} Xt_g.
 * Satterthwaite (clubSandwich's get_GH/get_P_array): for contrast m = M c,
 *   p_g = Y_g m; P_gh = delta_gh p_g'p_g + a_g' Omega a_h - a_g' B b_h - b_g' B a_h,
 *   a_g = U_g' p_g, b_g = U_g' W_g p_g (= a_g unweighted), Omega = C (= B unweighted).
 *   So per cluster we return K1_g = Y_g'Y_g, Ua_g = U_g'Y_g, Ub_g = U_g'W_g Y_g
 *   (rows scattered into the L + k coordinates of U); R assembles the G x G P.
 */
#define USE_FC_LEN_T
#include "sfpceval.h"
#include <R_ext/Lapack.h>
#include <R_ext/BLAS.h>
#include <math.h>
#include <string.h>

/* Symmetric eigen-decomposition in place: a (m x m) becomes eigenvectors,
 * vals gets eigenvalues (ascending). */
static void sym_eigen(double *a, int m, double *vals) {
  if (m == 0) return;
  int info = 0, lwork = -1;
  double wq = 0.0;
  F77_CALL(dsyev)("V", "U", &m, a, &m, vals, &wq, &lwork, &info FCONE FCONE);
  lwork = (int) wq;
  if (lwork < 3 * m) lwork = 3 * m;
  double *work = (double *) R_alloc((size_t) lwork, sizeof(double));
  F77_CALL(dsyev)("V", "U", &m, a, &m, vals, work, &lwork, &info FCONE FCONE);
  if (info != 0) sfp_abort("ffi_crve", "B", "gives a matrix whose eigen-decomposition failed (dsyev info %d)", info);
}

/* N (m x m) such that h(I + V T V') = I + V N V' (see the header).
 * V: n x m (column-major, overwritten by its column-scaled version Vs and
 * the returned N refers to Vs), T: m x m.  power: -0.5 or -1. */
static void lowrank_power(double *V, int n, int m, const double *T,
                          double power, double *N) {
  double *sc = (double *) R_alloc((size_t) m, sizeof(double));
  for (int j = 0; j < m; ++j) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += V[i + (size_t) j * n] * V[i + (size_t) j * n];
    s = sqrt(s);
    sc[j] = s > 0 ? s : 1.0;
    for (int i = 0; i < n; ++i) V[i + (size_t) j * n] /= sc[j];
  }
  memset(N, 0, sizeof(double) * (size_t) m * m);
  if (n == 0 || m == 0) return;
  /* Gram = Vs'Vs */
  double *E = (double *) R_alloc((size_t) m * m, sizeof(double));
  double one = 1.0, zero = 0.0;
  F77_CALL(dsyrk)("U", "T", &m, &n, &one, V, &n, &zero, E, &m FCONE FCONE);
  double *gam = (double *) R_alloc((size_t) m, sizeof(double));
  sym_eigen(E, m, gam);
  double gmax = gam[m - 1];
  int mp = 0;
  int *kidx = (int *) R_alloc((size_t) m, sizeof(int));
  for (int j = 0; j < m; ++j)
    if (gam[j] > 1e-12 * gmax && gam[j] > 0) kidx[mp++] = j;
  if (mp == 0) return;
  /* R = Gamma^{1/2} E' (mp x m); Ts = D T D with D = diag(sc) */
  double *R = (double *) R_alloc((size_t) mp * m, sizeof(double));
  for (int a = 0; a < mp; ++a) {
    double g = sqrt(gam[kidx[a]]);
    for (int j = 0; j < m; ++j) R[a + (size_t) j * mp] = g * E[j + (size_t) kidx[a] * m];
  }
  double *Ts = (double *) R_alloc((size_t) m * m, sizeof(double));
  for (int a = 0; a < m; ++a)
    for (int b = 0; b < m; ++b) Ts[a + (size_t) b * m] = sc[a] * T[a + (size_t) b * m] * sc[b];
  /* S = R Ts R' */
  double *RT = (double *) R_alloc((size_t) mp * m, sizeof(double));
  F77_CALL(dgemm)("N", "N", &mp, &m, &m, &one, R, &mp, Ts, &m, &zero, RT, &mp FCONE FCONE);
  double *S = (double *) R_alloc((size_t) mp * mp, sizeof(double));
  F77_CALL(dgemm)("N", "T", &mp, &mp, &m, &one, RT, &mp, R, &mp, &zero, S, &mp FCONE FCONE);
  for (int a = 0; a < mp; ++a)
    for (int b = a + 1; b < mp; ++b) {
      double v = 0.5 * (S[a + (size_t) b * mp] + S[b + (size_t) a * mp]);
      S[a + (size_t) b * mp] = S[b + (size_t) a * mp] = v;
    }
  double *lam = (double *) R_alloc((size_t) mp, sizeof(double));
  sym_eigen(S, mp, lam);
  /* P = E_+ Gamma^{-1/2} F  (m x mp), then N = P diag(f) P' */
  double *P = (double *) R_alloc((size_t) m * mp, sizeof(double));
  for (int j = 0; j < m; ++j)
    for (int c = 0; c < mp; ++c) {
      double s = 0.0;
      for (int a = 0; a < mp; ++a)
        s += E[j + (size_t) kidx[a] * m] / sqrt(gam[kidx[a]]) * S[a + (size_t) c * mp];
      P[j + (size_t) c * m] = s;
    }
  for (int c = 0; c < mp; ++c) {
    double mu = 1.0 + lam[c];
    double f = mu > 1e-12 ? pow(mu, power) - 1.0 : -1.0;
    for (int a = 0; a < m; ++a) {
      double pa = P[a + (size_t) c * m] * f;
      for (int b = 0; b < m; ++b) N[a + (size_t) b * m] += pa * P[b + (size_t) c * m];
    }
  }
}

/* ffi_crve(Xt, e, w, ord, starts, fe, L, B, C, type, satt)
 *   Xt:     double n x k, absorbed design (kept columns).
 *   e:      double n, residuals.
 *   w:      double n positive weights, or NULL (unweighted).
 *   ord:    integer n, 0-based row indices sorted by cluster.
 *   starts: integer G + 1, cluster g holds ord[starts[g] .. starts[g+1]).
 *   fe:     integer matrix n x nfe of global 0-based FE level indices in
 *           [0, L) (nfe may be 0).
 *   L:      total number of FE levels.
 *   B:      double (L+k) x (L+k), diag((D'WD)^+, (Xt'W Xt)^{-1}).
 *   C:      double (L+k) x (L+k), B (U'W^2 U) B, or NULL when unweighted.
 *   type:   0 (CR0/CR1), 2 (CR2), 3 (CR3), 4 (CR2 with inverse-variance
 *           weights: the IRLS working weights of a logit).
 *   satt:   logical; also return the Satterthwaite ingredients (CR2).
 * Returns list(scores = k x G matrix of adjusted cluster scores
 *   X_g'W_g A_g e_g; K1 = k*k*G array; Ua, Ub = (L+k)*k*G arrays) (the last
 *   three NULL unless satt). */
SEXP ffi_crve(SEXP Xt, SEXP e, SEXP w, SEXP ord, SEXP starts, SEXP fe,
              SEXP Ls, SEXP B, SEXP C, SEXP type, SEXP satt) {
  sfp_check_crve(Xt, e, w, ord, starts, fe, Ls, B, C, type, satt);
  int n = Rf_nrows(Xt), k = Rf_ncols(Xt);
  int G = (int) XLENGTH(starts) - 1;
  int nfe = Rf_ncols(fe);
  int L = Rf_asInteger(Ls);
  int typ = Rf_asInteger(type);
  int sat = Rf_asLogical(satt) == 1;
  int pk = L + k;
  const double *wp = Rf_isNull(w) ? NULL : REAL_RO(w);
  const double *xp = REAL_RO(Xt), *ep = REAL_RO(e);
  const int *op = INTEGER_RO(ord), *sp = INTEGER_RO(starts), *fp = INTEGER_RO(fe);
  const double *Bp = NULL, *Cp = NULL;
  if (typ >= 2) {
    Bp = REAL_RO(B);
    if (wp && typ == 2) {
      Cp = REAL_RO(C);
    }
  }
  if (typ != 2 && typ != 4) sat = 0;

  int nout = 4;
  SEXP out = PROTECT(Rf_allocVector(VECSXP, nout));
  SEXP nms = PROTECT(Rf_allocVector(STRSXP, nout));
  SET_STRING_ELT(nms, 0, Rf_mkChar("scores"));
  SET_STRING_ELT(nms, 1, Rf_mkChar("K1"));
  SET_STRING_ELT(nms, 2, Rf_mkChar("Ua"));
  SET_STRING_ELT(nms, 3, Rf_mkChar("Ub"));
  Rf_setAttrib(out, R_NamesSymbol, nms);
  SET_VECTOR_ELT(out, 0, Rf_allocMatrix(REALSXP, k, G));
  double *S = REAL(VECTOR_ELT(out, 0));
  double *K1 = NULL, *Ua = NULL, *Ub = NULL;
  if (sat) {
    SET_VECTOR_ELT(out, 1, Rf_allocVector(REALSXP, (R_xlen_t) k * k * G));
    SET_VECTOR_ELT(out, 2, Rf_allocVector(REALSXP, (R_xlen_t) pk * k * G));
    K1 = REAL(VECTOR_ELT(out, 1));
    Ua = REAL(VECTOR_ELT(out, 2));
    memset(Ua, 0, sizeof(double) * (size_t) pk * k * G);
    if (wp && typ == 2) {
      SET_VECTOR_ELT(out, 3, Rf_allocVector(REALSXP, (R_xlen_t) pk * k * G));
      Ub = REAL(VECTOR_ELT(out, 3));
      memset(Ub, 0, sizeof(double) * (size_t) pk * k * G);
    }
  }

  int *mark = (int *) R_alloc((size_t) (L > 0 ? L : 1), sizeof(int));
  for (int l = 0; l < L; ++l) mark[l] = -1;
  int *act = (int *) R_alloc((size_t) pk + 1, sizeof(int));
  double one = 1.0, zero = 0.0;

  for (int g = 0; g < G; ++g) {
    const void *vmax = vmaxget();
    int s0 = sp[g], ng = sp[g + 1] - sp[g];
    /* scores for CR0/CR1 directly */
    if (typ == 0) {
      for (int j = 0; j < k; ++j) {
        double s = 0.0;
        for (int t = 0; t < ng; ++t) {
          int i = op[s0 + t];
          s += xp[i + (size_t) j * n] * (wp ? wp[i] : 1.0) * ep[i];
        }
        S[j + (size_t) g * k] = s;
      }
      vmaxset(vmax);
      continue;
    }
    /* active FE levels */
    int nact = 0;
    for (int t = 0; t < ng; ++t) {
      int i = op[s0 + t];
      for (int f = 0; f < nfe; ++f) {
        int l = fp[i + (size_t) f * n];
        if (mark[l] < 0) {
          mark[l] = nact;
          act[nact++] = l;
        }
      }
    }
    int r = nact + k;
    for (int j = 0; j < k; ++j) act[nact + j] = L + j;
    /* U_g (ng x r), Xg, eg, wg */
    double *U = (double *) R_alloc((size_t) ng * r + 1, sizeof(double));
    memset(U, 0, sizeof(double) * (size_t) ng * r);
    double *Xg = (double *) R_alloc((size_t) ng * k + 1, sizeof(double));
    double *eg = (double *) R_alloc((size_t) ng + 1, sizeof(double));
    double *wg = (double *) R_alloc((size_t) ng + 1, sizeof(double));
    for (int t = 0; t < ng; ++t) {
      int i = op[s0 + t];
      for (int f = 0; f < nfe; ++f) U[t + (size_t) mark[fp[i + (size_t) f * n]] * ng] = 1.0;
      for (int j = 0; j < k; ++j) {
        double v = xp[i + (size_t) j * n];
        U[t + (size_t) (nact + j) * ng] = v;
        Xg[t + (size_t) j * ng] = v;
      }
      eg[t] = ep[i];
      wg[t] = wp ? wp[i] : 1.0;
    }
    for (int a = 0; a < nact; ++a) mark[act[a]] = -1;

    /* V and T */
    int wcr2 = (typ == 2 && wp != NULL);
    int m = wcr2 ? 2 * r : r;
    double *V = (double *) R_alloc((size_t) ng * m + 1, sizeof(double));
    double *T = (double *) R_alloc((size_t) m * m + 1, sizeof(double));
    memset(T, 0, sizeof(double) * (size_t) m * m);
    for (int a = 0; a < r; ++a)
      for (int b = 0; b < r; ++b) {
        double bab = Bp[act[a] + (size_t) act[b] * pk];
        if (wcr2) {
          T[a + (size_t) b * m] = Cp[act[a] + (size_t) act[b] * pk];
          T[a + (size_t) (r + b) * m] = -bab;
          T[(r + a) + (size_t) b * m] = -bab;
        } else {
          T[a + (size_t) b * m] = -bab;
        }
      }
    for (int j = 0; j < r; ++j)
      for (int t = 0; t < ng; ++t) {
        double u = U[t + (size_t) j * ng];
        if (typ >= 3) {
          V[t + (size_t) j * ng] = sqrt(wg[t]) * u;
        } else {
          V[t + (size_t) j * ng] = u;
          if (wcr2) V[t + (size_t) (r + j) * ng] = wg[t] * u;
        }
      }
    double *N = (double *) R_alloc((size_t) m * m + 1, sizeof(double));
    lowrank_power(V, ng, m, T, typ == 3 ? -1.0 : -0.5, N);
    /* Z0 = W Xg (CR2) or W^{1/2} Xg (CR3); Y = Z0 + V N V' Z0 (then W^{1/2} for CR3) */
    double *Y = (double *) R_alloc((size_t) ng * k + 1, sizeof(double));
    for (int j = 0; j < k; ++j)
      for (int t = 0; t < ng; ++t)
        Y[t + (size_t) j * ng] = Xg[t + (size_t) j * ng] * (typ == 2 ? wg[t] : sqrt(wg[t]));
    if (m > 0 && k > 0 && ng > 0) {
      double *VZ = (double *) R_alloc((size_t) m * k, sizeof(double));
      F77_CALL(dgemm)("T", "N", &m, &k, &ng, &one, V, &ng, Y, &ng, &zero, VZ, &m FCONE FCONE);
      double *NVZ = (double *) R_alloc((size_t) m * k, sizeof(double));
      F77_CALL(dgemm)("N", "N", &m, &k, &m, &one, N, &m, VZ, &m, &zero, NVZ, &m FCONE FCONE);
      F77_CALL(dgemm)("N", "N", &ng, &k, &m, &one, V, &ng, NVZ, &m, &one, Y, &ng FCONE FCONE);
    }
    if (sat) {
      double *k1 = K1 + (size_t) g * k * k;
      for (int a = 0; a < k; ++a)
        for (int b = 0; b < k; ++b) {
          double s = 0.0;
          for (int t = 0; t < ng; ++t) s += Y[t + (size_t) a * ng] * Y[t + (size_t) b * ng];
          k1[a + (size_t) b * k] = s;
        }
      double *ua = Ua + (size_t) g * pk * k;
      double *ub = Ub ? Ub + (size_t) g * pk * k : NULL;
      for (int a = 0; a < r; ++a)
        for (int j = 0; j < k; ++j) {
          double s = 0.0, sb = 0.0;
          for (int t = 0; t < ng; ++t) {
            double uy = U[t + (size_t) a * ng] * Y[t + (size_t) j * ng];
            if (typ == 4) uy *= sqrt(wg[t]);
            s += uy;
            sb += uy * wg[t];
          }
          ua[act[a] + (size_t) j * pk] = s;
          if (ub) ub[act[a] + (size_t) j * pk] = sb;
        }
    }
    if (typ >= 3)
      for (int j = 0; j < k; ++j)
        for (int t = 0; t < ng; ++t) Y[t + (size_t) j * ng] *= sqrt(wg[t]);
    for (int j = 0; j < k; ++j) {
      double s = 0.0;
      for (int t = 0; t < ng; ++t) s += Y[t + (size_t) j * ng] * eg[t];
      S[j + (size_t) g * k] = s;
    }
    vmaxset(vmax);
    if ((g & 255) == 255) R_CheckUserInterrupt();
  }
  UNPROTECT(2);
  return out;
}
