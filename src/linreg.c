/* linreg.c: weighted least squares with absorbed fixed effects.
 *
 * Two entry points:
 *   ffi_demean()  weighted within-transformation of the columns of a matrix
 *                 over one or several fixed effects (exact group demeaning
 *                 for one effect, alternating projections accelerated by
 *                 Irons-Tuck otherwise);
 *   ffi_wls()     weighted least squares on an already absorbed design
 *                 from the QR (LINPACK's dqrls, as lm.fit: the same limited
 *                 pivoting and tolerance, so the same columns are dropped;
 *                 triangular solve on R; the bread from R'R).
 */
#define USE_FC_LEN_T
#include "sfpceval.h"
#include <R_ext/Lapack.h>
#include <R_ext/BLAS.h>
#include <R_ext/Applic.h>
#include <math.h>
#include <string.h>

/* Two fixed effects, in the space of the coefficients (as fixest, Berge
 * 2018): with a the levels of one effect and b of the other (b the one with
 * fewer levels), the weighted cross-tabulation C[a, b] (sparse, rows by a)
 * and the level sums s_a = sum w x, s_b, one sweep of alternating
 * projections is the map on the b-coefficients
 *   alpha = (s_a - C beta) / sw_a,  beta' = (s_b - C' alpha) / sw_b,
 * which costs O(nnz(C)) instead of O(n). Irons-Tuck acceleration on beta;
 * converged when a sweep moves no coefficient by more than tol*max(1,max|x|).
 * Then x <- x - alpha[a] - beta[b]. */
typedef struct {
  int na, nb;            /* levels of the two effects */
  const int *ca, *cb;    /* codes (length n) */
  const double *swa, *swb;
  int *rowptr, *col;     /* CSR of C by a-level */
  double *val;
} fe2_tab;

static void fe2_build(fe2_tab *t, int n, const double *w) {
  int na = t->na, nb = t->nb;
  int *cnt = (int *) R_alloc((size_t) na + 1, sizeof(int));
  memset(cnt, 0, sizeof(int) * (size_t) (na + 1));
  for (int i = 0; i < n; ++i) cnt[t->ca[i] + 1]++;
  for (int l = 0; l < na; ++l) cnt[l + 1] += cnt[l];
  int *ord = (int *) R_alloc((size_t) n + 1, sizeof(int));
  int *pos = (int *) R_alloc((size_t) na + 1, sizeof(int));
  memcpy(pos, cnt, sizeof(int) * (size_t) na);
  for (int i = 0; i < n; ++i) ord[pos[t->ca[i]]++] = i;
  double *acc = (double *) R_alloc((size_t) nb + 1, sizeof(double));
  int *mark = (int *) R_alloc((size_t) nb + 1, sizeof(int));
  for (int m = 0; m < nb; ++m) mark[m] = -1;
  t->rowptr = (int *) R_alloc((size_t) na + 1, sizeof(int));
  int *colb = (int *) R_alloc((size_t) n + 1, sizeof(int));
  double *valb = (double *) R_alloc((size_t) n + 1, sizeof(double));
  int nnz = 0;
  for (int l = 0; l < na; ++l) {
    t->rowptr[l] = nnz;
    int first = nnz;
    for (int q = cnt[l]; q < cnt[l + 1]; ++q) {
      int i = ord[q], m = t->cb[i];
      if (mark[m] < first) {
        mark[m] = nnz;
        colb[nnz] = m;
        acc[m] = 0.0;
        ++nnz;
      }
      acc[m] += w ? w[i] : 1.0;
    }
    for (int q = first; q < nnz; ++q) valb[q] = acc[colb[q]];
  }
  t->rowptr[na] = nnz;
  t->col = colb;
  t->val = valb;
}

/* beta_out = F(beta_in); alpha: scratch (na) that holds alpha(beta_in). */
static void fe2_map(const fe2_tab *t, const double *sa, const double *sb,
                    const double *bin, double *alpha, double *bout) {
  for (int l = 0; l < t->na; ++l) {
    double s = sa[l];
    for (int q = t->rowptr[l]; q < t->rowptr[l + 1]; ++q) s -= t->val[q] * bin[t->col[q]];
    alpha[l] = t->swa[l] > 0 ? s / t->swa[l] : 0.0;
  }
  memcpy(bout, sb, sizeof(double) * (size_t) t->nb);
  for (int l = 0; l < t->na; ++l)
    for (int q = t->rowptr[l]; q < t->rowptr[l + 1]; ++q) bout[t->col[q]] -= t->val[q] * alpha[l];
  for (int m = 0; m < t->nb; ++m) bout[m] = t->swb[m] > 0 ? bout[m] / t->swb[m] : 0.0;
}

static int demean_fe2(double *x, int n, const fe2_tab *t, const double *w,
                      double tol, int maxit, int *conv) {
  int na = t->na, nb = t->nb;
  double scale = 0.0;
  for (int i = 0; i < n; ++i) if (fabs(x[i]) > scale) scale = fabs(x[i]);
  if (scale < 1.0) scale = 1.0;
  double lim = tol * scale;
  double *sa = (double *) R_alloc((size_t) na + 1, sizeof(double));
  double *sb = (double *) R_alloc((size_t) nb + 1, sizeof(double));
  memset(sa, 0, sizeof(double) * (size_t) na);
  memset(sb, 0, sizeof(double) * (size_t) nb);
  for (int i = 0; i < n; ++i) {
    double v = w ? w[i] * x[i] : x[i];
    sa[t->ca[i]] += v;
    sb[t->cb[i]] += v;
  }
  double *b0 = (double *) R_alloc((size_t) nb + 1, sizeof(double));
  double *b1 = (double *) R_alloc((size_t) nb + 1, sizeof(double));
  double *b2 = (double *) R_alloc((size_t) nb + 1, sizeof(double));
  double *alpha = (double *) R_alloc((size_t) na + 1, sizeof(double));
  memset(b0, 0, sizeof(double) * (size_t) nb);
  *conv = 0;
  int sweeps = 0;
  double *bfin = b0;
  while (sweeps < maxit) {
    fe2_map(t, sa, sb, b0, alpha, b1);
    ++sweeps;
    double move = 0.0;
    for (int m = 0; m < nb; ++m) if (fabs(b1[m] - b0[m]) > move) move = fabs(b1[m] - b0[m]);
    bfin = b1;
    if (move <= lim) {
      *conv = 1;
      break;
    }
    if (sweeps >= maxit) break;
    fe2_map(t, sa, sb, b1, alpha, b2);
    ++sweeps;
    double num = 0.0, den = 0.0;
    move = 0.0;
    for (int m = 0; m < nb; ++m) {
      double d2 = b2[m] - b1[m], D2 = d2 - (b1[m] - b0[m]);
      num += d2 * D2;
      den += D2 * D2;
      if (fabs(d2) > move) move = fabs(d2);
    }
    bfin = b2;
    if (move <= lim) {
      *conv = 1;
      break;
    }
    double sc = den > 0 ? num / den : 0.0;
    for (int m = 0; m < nb; ++m) b0[m] = b2[m] - sc * (b2[m] - b1[m]);
    bfin = b0;
    if ((sweeps & 1023) == 0) R_CheckUserInterrupt();
  }
  /* alpha at the final beta, then the residual */
  double *bb = (double *) R_alloc((size_t) nb + 1, sizeof(double));
  fe2_map(t, sa, sb, bfin, alpha, bb);
  for (int i = 0; i < n; ++i) x[i] -= alpha[t->ca[i]] + bfin[t->cb[i]];
  return sweeps;
}

/* One sweep of alternating projections over the nfe effects, in place:
 * for each effect in turn, subtract the weighted level means. */
static void ap_sweep(double *x, int n, int nfe, const int **codes,
                     const int *nlev, const double *w, double **sw,
                     double **acc, const fe2_tab *t2, int f1, int f2,
                     double tol, int maxit) {
  if (t2) {
    /* the two largest effects projected out together (coefficient space) */
    const void *vmax = vmaxget();
    int conv = 0;
    demean_fe2(x, n, t2, w, tol, maxit, &conv);
    vmaxset(vmax);
  }
  for (int f = 0; f < nfe; ++f) {
    if (t2 && (f == f1 || f == f2)) continue;
    double *s = acc[f];
    const int *cf = codes[f];
    memset(s, 0, sizeof(double) * (size_t) nlev[f]);
    if (w) {
      for (int i = 0; i < n; ++i) s[cf[i]] += w[i] * x[i];
    } else {
      for (int i = 0; i < n; ++i) s[cf[i]] += x[i];
    }
    for (int l = 0; l < nlev[f]; ++l) s[l] = sw[f][l] > 0 ? s[l] / sw[f][l] : 0.0;
    for (int i = 0; i < n; ++i) x[i] -= s[cf[i]];
  }
}

/* Demean one column x (length n) in place over nfe effects (used for one
 * effect, and for three or more, where t2 holds the cross-tabulation of the
 * two largest effects f1, f2, projected out together in each sweep).
 * codes[f] holds 0-based level codes (length n) of effect f, nlev[f] levels.
 * w: weights or NULL. sw[f]: per-level weight totals (precomputed).
 * x0, x1: scratch of length n.
 * One effect: one sweep is exact. Several: alternating projections F
 * (one sweep over all effects) accelerated by Irons & Tuck (1969), as in
 * fixest (Berge 2018): from x0, x1 = F(x0), x2 = F(x1),
 *   x <- x2 - (d2'D2 / D2'D2) d2,  d2 = x2 - x1,  D2 = x2 - 2 x1 + x0.
 * Converged when a sweep moves no value by more than tol * max(1, max|x|).
 * Returns the number of sweeps used; *conv = 1 when converged. */
static int demean_column(double *x, int n, int nfe, const int **codes,
                         const int *nlev, const double *w, double **sw,
                         double **acc, double *x0, double *x1, double tol,
                         int maxit, int *conv, const fe2_tab *t2, int f1, int f2) {
  double scale = 0.0;
  for (int i = 0; i < n; ++i) {
    double a = fabs(x[i]);
    if (a > scale) scale = a;
  }
  if (scale < 1.0) scale = 1.0;
  double lim = tol * scale;
  *conv = 0;
  if (nfe == 1) {
    ap_sweep(x, n, nfe, codes, nlev, w, sw, acc, t2, f1, f2, tol, maxit);
    *conv = 1;
    return 1;
  }
  int sweeps = 0;
  while (sweeps < maxit) {
    memcpy(x0, x, sizeof(double) * (size_t) n);
    ap_sweep(x, n, nfe, codes, nlev, w, sw, acc, t2, f1, f2, tol, maxit);
    ++sweeps;
    double move = 0.0;
    for (int i = 0; i < n; ++i) {
      double d = fabs(x[i] - x0[i]);
      if (d > move) move = d;
    }
    if (move <= lim) {
      *conv = 1;
      break;
    }
    if (sweeps >= maxit) break;
    memcpy(x1, x, sizeof(double) * (size_t) n);
    ap_sweep(x, n, nfe, codes, nlev, w, sw, acc, t2, f1, f2, tol, maxit);
    ++sweeps;
    double num = 0.0, den = 0.0;
    move = 0.0;
    for (int i = 0; i < n; ++i) {
      double d2 = x[i] - x1[i];
      double D2 = d2 - (x1[i] - x0[i]);
      num += d2 * D2;
      den += D2 * D2;
      if (fabs(d2) > move) move = fabs(d2);
    }
    if (move <= lim) {
      *conv = 1;
      break;
    }
    if (den > 0) {
      double s = num / den;
      for (int i = 0; i < n; ++i) x[i] -= s * (x[i] - x1[i]);
    }
    if ((sweeps & 63) == 0) R_CheckUserInterrupt();
  }
  return sweeps;
}

/* ffi_demean(X, codes, nlev, w, tol, maxit)
 *   X:     double matrix n x p (or a vector, p = 1); not modified.
 *   codes: list of nfe integer vectors, each length n, 0-based level codes
 *          in [0, nlev[f]) (R guarantees: no NA).
 *   nlev:  integer vector, nfe level counts.
 *   w:     double vector length n of positive weights, or NULL.
 *   tol:   convergence tolerance (max absolute change in a sweep, relative
 *          to max(1, max|x|)); maxit: sweep limit.
 * One effect: exact. Two: coefficient-space iteration (demean_fe2). Three
 * or more: accelerated alternating projections on the vectors, the two
 * largest effects projected out together in each sweep. 
 * Returns a new double matrix n x p, the weighted within-transformation,
 * with attributes "iterations" (max sweeps over columns) and "converged". */
SEXP ffi_demean(SEXP X, SEXP codes, SEXP nlev, SEXP w, SEXP tol, SEXP maxit) {
  sfp_check_demean(X, codes, nlev, w, tol, maxit);
  int n = Rf_isMatrix(X) ? Rf_nrows(X) : (int) XLENGTH(X);
  int p = Rf_isMatrix(X) ? Rf_ncols(X) : 1;
  int nfe = (int) XLENGTH(codes);
  const double *wp = NULL;
  if (!Rf_isNull(w)) {
    wp = REAL_RO(w);
  }
  const int **cp = (const int **) R_alloc((size_t) (nfe > 0 ? nfe : 1), sizeof(int *));
  const int *nl = INTEGER_RO(nlev);
  double **sw = (double **) R_alloc((size_t) (nfe > 0 ? nfe : 1), sizeof(double *));
  double **acc = (double **) R_alloc((size_t) (nfe > 0 ? nfe : 1), sizeof(double *));
  for (int f = 0; f < nfe; ++f) {
    SEXP cf = VECTOR_ELT(codes, f);
    cp[f] = INTEGER_RO(cf);
    sw[f] = (double *) R_alloc((size_t) nl[f] + 1, sizeof(double));
    acc[f] = (double *) R_alloc((size_t) nl[f] + 1, sizeof(double));
    memset(sw[f], 0, sizeof(double) * (size_t) (nl[f] + 1));
    for (int i = 0; i < n; ++i) {
      int c = cp[f][i];
      sw[f][c] += wp ? wp[i] : 1.0;
    }
  }
  double tl = Rf_asReal(tol);
  int mi = Rf_asInteger(maxit);
  SEXP out = PROTECT(Rf_allocMatrix(REALSXP, n, p));
  double *o = REAL(out);
  memcpy(o, REAL_RO(X), sizeof(double) * (size_t) n * (size_t) p);
  int maxits = 0, allconv = 1;
  if (nfe == 2) {
    fe2_tab t;
    int big = nl[0] >= nl[1] ? 0 : 1;
    t.na = nl[big];
    t.nb = nl[1 - big];
    t.ca = cp[big];
    t.cb = cp[1 - big];
    t.swa = sw[big];
    t.swb = sw[1 - big];
    fe2_build(&t, n, wp);
    for (int j = 0; j < p; ++j) {
      const void *vmax = vmaxget();
      int conv = 0;
      int its = demean_fe2(o + (size_t) j * n, n, &t, wp, tl, mi, &conv);
      if (its > maxits) maxits = its;
      if (!conv) allconv = 0;
      vmaxset(vmax);
    }
  } else if (nfe > 0) {
    /* three or more: the two effects with the most levels are projected out
     * together by demean_fe2() in every sweep, the others one by one */
    fe2_tab t;
    int t3 = nfe >= 3, f1 = -1, f2 = -1;
    if (t3) {
      for (int f = 0; f < nfe; ++f)
        if (f1 < 0 || nl[f] > nl[f1]) f1 = f;
      for (int f = 0; f < nfe; ++f)
        if (f != f1 && (f2 < 0 || nl[f] > nl[f2])) f2 = f;
      t.na = nl[f1];
      t.nb = nl[f2];
      t.ca = cp[f1];
      t.cb = cp[f2];
      t.swa = sw[f1];
      t.swb = sw[f2];
      fe2_build(&t, n, wp);
    }
    double *x0 = (double *) R_alloc((size_t) n + 1, sizeof(double));
    double *x1 = (double *) R_alloc((size_t) n + 1, sizeof(double));
    for (int j = 0; j < p; ++j) {
      int conv = 0;
      int its = demean_column(o + (size_t) j * n, n, nfe, cp, nl, wp, sw, acc,
                              x0, x1, tl, mi, &conv, t3 ? &t : NULL, f1, f2);
      if (its > maxits) maxits = its;
      if (!conv) allconv = 0;
    }
  }
  SEXP its = PROTECT(Rf_ScalarInteger(maxits));
  Rf_setAttrib(out, Rf_install("iterations"), its);
  SEXP cv = PROTECT(Rf_ScalarLogical(allconv));
  Rf_setAttrib(out, Rf_install("converged"), cv);
  UNPROTECT(3);
  return out;
}

/* ffi_wls(X, y, w, tol)
 *   X: double matrix n x p (absorbed design), y: double n, w: double n
 *   (positive) or NULL, tol: rank tolerance for dqrdc2 (lm uses 1e-7).
 * Least squares from the QR of sqrt(w) X, exactly as lm.fit(): LINPACK's
 * dqrls (dqrdc2 with limited pivoting -- a column collinear with the
 * columns before it is moved to the end, so the same columns are dropped
 * as by lm() -- then Q'y and the triangular solve R b = Q'y). The normal
 * equations are never formed, so the condition number is not squared.
 * The bread (X'WX)^{-1} = (R'R)^{-1} comes from R by dpotri (R^{-1} by a
 * triangular inversion, then R^{-1} R^{-T}).
 * Returns list(coef = p vector with NA for dropped columns, keep = logical
 * p, resid = n vector y - X b, bread = (X'WX)^{-1} over kept columns,
 * xtwx = R'R = X'WX over kept columns, R = the k x k triangular factor
 * of sqrt(w) X over kept columns, so that X R^{-1} is W-orthonormal). */
SEXP ffi_wls(SEXP X, SEXP y, SEXP w, SEXP tol) {
  sfp_check_wls(X, y, w, tol);
  int n = Rf_nrows(X), p = Rf_ncols(X);
  const double *wp = NULL;
  if (!Rf_isNull(w)) {
    wp = REAL_RO(w);
  }
  const double *xp = REAL_RO(X), *yp = REAL_RO(y);
  double tl = Rf_asReal(tol);

  /* QR of sqrt(w) X and the solve, by dqrls (lm.fit's routine) */
  int *keep = (int *) R_alloc((size_t) p + 1, sizeof(int));
  int rank = 0;
  double *qx = (double *) R_alloc((size_t) n * p + 1, sizeof(double));
  double *bq = (double *) R_alloc((size_t) p + 1, sizeof(double));
  int *piv = (int *) R_alloc((size_t) p + 1, sizeof(int));
  for (int j = 0; j < p; ++j) keep[j] = 0;
  if (p > 0 && n > 0) {
    double *ys = (double *) R_alloc((size_t) n, sizeof(double));
    double *rsd = (double *) R_alloc((size_t) n, sizeof(double));
    double *qty = (double *) R_alloc((size_t) n, sizeof(double));
    double *qraux = (double *) R_alloc((size_t) p, sizeof(double));
    double *work = (double *) R_alloc((size_t) 2 * p, sizeof(double));
    for (int i = 0; i < n; ++i) {
      double sq = wp ? sqrt(wp[i]) : 1.0;
      ys[i] = yp[i] * sq;
      for (int j = 0; j < p; ++j) qx[i + (size_t) j * n] = xp[i + (size_t) j * n] * sq;
    }
    for (int j = 0; j < p; ++j) piv[j] = j + 1;
    int nn = n, pp = p, ny = 1;
    F77_CALL(dqrls)(qx, &nn, &pp, ys, &ny, &tl, bq, rsd, qty, &rank, piv, qraux, work);
    for (int j = 0; j < rank; ++j) keep[piv[j] - 1] = 1;
  }
  int k = rank;

  SEXP out = PROTECT(Rf_allocVector(VECSXP, 6));
  SEXP nms = PROTECT(Rf_allocVector(STRSXP, 6));
  SET_STRING_ELT(nms, 0, Rf_mkChar("coef"));
  SET_STRING_ELT(nms, 1, Rf_mkChar("keep"));
  SET_STRING_ELT(nms, 2, Rf_mkChar("resid"));
  SET_STRING_ELT(nms, 3, Rf_mkChar("bread"));
  SET_STRING_ELT(nms, 4, Rf_mkChar("xtwx"));
  SET_STRING_ELT(nms, 5, Rf_mkChar("R"));
  Rf_setAttrib(out, R_NamesSymbol, nms);
  SET_VECTOR_ELT(out, 0, Rf_allocVector(REALSXP, p));
  SET_VECTOR_ELT(out, 1, Rf_allocVector(LGLSXP, p));
  SET_VECTOR_ELT(out, 2, Rf_allocVector(REALSXP, n));
  SET_VECTOR_ELT(out, 3, Rf_allocMatrix(REALSXP, k, k));
  SET_VECTOR_ELT(out, 4, Rf_allocMatrix(REALSXP, k, k));
  SET_VECTOR_ELT(out, 5, Rf_allocMatrix(REALSXP, k, k));
  double *coef = REAL(VECTOR_ELT(out, 0));
  int *kp = LOGICAL(VECTOR_ELT(out, 1));
  double *res = REAL(VECTOR_ELT(out, 2));
  double *bread = REAL(VECTOR_ELT(out, 3));
  double *xtwx = REAL(VECTOR_ELT(out, 4));
  for (int j = 0; j < p; ++j) {
    coef[j] = NA_REAL;
    kp[j] = keep[j];
  }
  /* the kept columns are piv[0..k-1], in their original order (limited
   * pivoting only moves columns to the end) */
  for (int m = 0; m < k; ++m) coef[piv[m] - 1] = bq[m];
  if (k > 0) {
    /* R: leading k x k upper triangle of the QR */
    memset(bread, 0, sizeof(double) * (size_t) k * k);
    for (int c = 0; c < k; ++c)
      for (int a = 0; a <= c; ++a) bread[a + (size_t) c * k] = qx[a + (size_t) c * n];
    memcpy(REAL(VECTOR_ELT(out, 5)), bread, sizeof(double) * (size_t) k * k);
    double one = 1.0, zero = 0.0;
    int kk = k, info = 0;
    F77_CALL(dsyrk)("U", "T", &kk, &kk, &one, bread, &kk, &zero, xtwx, &kk FCONE FCONE);
    for (int a = 0; a < k; ++a)
      for (int c = a + 1; c < k; ++c) xtwx[c + (size_t) a * k] = xtwx[a + (size_t) c * k];
    F77_CALL(dpotri)("U", &kk, bread, &kk, &info FCONE);
    if (info != 0) sfp_abort("ffi_wls", "X", "gives a singular R after rank detection");
    for (int a = 0; a < k; ++a)
      for (int c = a + 1; c < k; ++c) bread[c + (size_t) a * k] = bread[a + (size_t) c * k];
  }
  for (int i = 0; i < n; ++i) {
    double f = 0.0;
    for (int m = 0; m < k; ++m) f += xp[i + (size_t) (piv[m] - 1) * n] * bq[m];
    res[i] = yp[i] - f;
  }
  UNPROTECT(2);
  return out;
}
