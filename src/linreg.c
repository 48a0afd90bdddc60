/* linreg.c: weighted least squares with absorbed fixed effects.
 *
 * Two entry points:
 *   ffi_demean()  weighted within-transformation of the columns of a matrix
 *                 over one or several fixed effects (exact group demeaning
 *                 for one effect, alternating projections otherwise);
 *   ffi_wls()     weighted least squares on an already absorbed design:
 *                 rank detection by LINPACK's dqrdc2 (the same limited
 *                 pivoting and tolerance as lm(), so the same columns are
 *                 dropped), then the Cholesky factor of X'WX through LAPACK.
 */
#define USE_FC_LEN_T
#include "sfpceval.h"
#include <R_ext/Lapack.h>
#include <R_ext/BLAS.h>
#include <R_ext/Applic.h>
#include <math.h>
#include <string.h>

/* Demean one column x (length n) in place over nfe effects.
 * codes[f] holds 0-based level codes (length n) of effect f, nlev[f] levels.
 * w: weights or NULL. sw[f]: per-level weight totals (precomputed).
 * Returns the number of sweeps used; *conv = 1 when converged. */
static int demean_column(double *x, int n, int nfe, const int **codes,
                         const int *nlev, const double *w, double **sw,
                         double **acc, double tol, int maxit, int *conv) {
  double scale = 0.0;
  for (int i = 0; i < n; ++i) {
    double a = fabs(x[i]);
    if (a > scale) scale = a;
  }
  if (scale < 1.0) scale = 1.0;
  int it = 0;
  *conv = 0;
  for (it = 1; it <= maxit; ++it) {
    double maxmove = 0.0;
    for (int f = 0; f < nfe; ++f) {
      double *s = acc[f];
      const int *cf = codes[f];
      memset(s, 0, sizeof(double) * (size_t) nlev[f]);
      if (w) {
        for (int i = 0; i < n; ++i) s[cf[i]] += w[i] * x[i];
      } else {
        for (int i = 0; i < n; ++i) s[cf[i]] += x[i];
      }
      for (int l = 0; l < nlev[f]; ++l) {
        s[l] = sw[f][l] > 0 ? s[l] / sw[f][l] : 0.0;
        if (fabs(s[l]) > maxmove) maxmove = fabs(s[l]);
      }
      for (int i = 0; i < n; ++i) x[i] -= s[cf[i]];
    }
    if (nfe == 1 || maxmove <= tol * scale) {
      *conv = 1;
      break;
    }
    if ((it & 63) == 0) R_CheckUserInterrupt();
  }
  return it > maxit ? maxit : it;
}

/* ffi_demean(X, codes, nlev, w, tol, maxit)
 *   X:     double matrix n x p (or a vector, p = 1); not modified.
 *   codes: list of nfe integer vectors, each length n, 0-based level codes
 *          in [0, nlev[f]) (R guarantees: no NA).
 *   nlev:  integer vector, nfe level counts.
 *   w:     double vector length n of positive weights, or NULL.
 *   tol:   convergence tolerance (max absolute group mean removed in a sweep,
 *          relative to max(1, max|x|)); maxit: sweep limit.
 * Returns a new double matrix n x p, the weighted within-transformation,
 * with attributes "iterations" (max sweeps over columns) and "converged". */
SEXP ffi_demean(SEXP X, SEXP codes, SEXP nlev, SEXP w, SEXP tol, SEXP maxit) {
  sfp_check_demean(X, codes, nlev, w, tol, maxit);
  if (TYPEOF(X) != REALSXP || TYPEOF(codes) != VECSXP ||
      TYPEOF(nlev) != INTSXP)
    Rf_error("internal error in ffi_demean(): bad argument types");
  int n = Rf_isMatrix(X) ? Rf_nrows(X) : (int) XLENGTH(X);
  int p = Rf_isMatrix(X) ? Rf_ncols(X) : 1;
  int nfe = (int) XLENGTH(codes);
  if (XLENGTH(nlev) != nfe)
    Rf_error("internal error in ffi_demean(): codes/nlev lengths differ");
  const double *wp = NULL;
  if (!Rf_isNull(w)) {
    if (TYPEOF(w) != REALSXP || XLENGTH(w) != n)
      Rf_error("internal error in ffi_demean(): bad weights");
    wp = REAL_RO(w);
  }
  const int **cp = (const int **) R_alloc((size_t) (nfe > 0 ? nfe : 1), sizeof(int *));
  const int *nl = INTEGER_RO(nlev);
  double **sw = (double **) R_alloc((size_t) (nfe > 0 ? nfe : 1), sizeof(double *));
  double **acc = (double **) R_alloc((size_t) (nfe > 0 ? nfe : 1), sizeof(double *));
  for (int f = 0; f < nfe; ++f) {
    SEXP cf = VECTOR_ELT(codes, f);
    if (TYPEOF(cf) != INTSXP || XLENGTH(cf) != n)
      Rf_error("internal error in ffi_demean(): bad codes[%d]", f + 1);
    cp[f] = INTEGER_RO(cf);
    sw[f] = (double *) R_alloc((size_t) nl[f] + 1, sizeof(double));
    acc[f] = (double *) R_alloc((size_t) nl[f] + 1, sizeof(double));
    memset(sw[f], 0, sizeof(double) * (size_t) (nl[f] + 1));
    for (int i = 0; i < n; ++i) {
      int c = cp[f][i];
      if (c < 0 || c >= nl[f])
        Rf_error("internal error in ffi_demean(): code out of range");
      sw[f][c] += wp ? wp[i] : 1.0;
    }
  }
  double tl = Rf_asReal(tol);
  int mi = Rf_asInteger(maxit);
  SEXP out = PROTECT(Rf_allocMatrix(REALSXP, n, p));
  double *o = REAL(out);
  memcpy(o, REAL_RO(X), sizeof(double) * (size_t) n * (size_t) p);
  int maxits = 0, allconv = 1;
  if (nfe > 0) {
    for (int j = 0; j < p; ++j) {
      int conv = 0;
      int its = demean_column(o + (size_t) j * n, n, nfe, cp, nl, wp, sw, acc,
                              tl, mi, &conv);
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
 * Rank: dqrdc2 on sqrt(w) X (limited pivoting: a column is moved to the end
 * when it is collinear with the columns before it, exactly as lm.fit).
 * Then for the kept columns: XtWX = X'WX by dsyrk, Cholesky (dpotrf),
 * coefficients by dpotrs, inverse by dpotri.
 * Returns list(coef = p vector with NA for dropped columns, keep = logical
 * p, resid = n vector y - X b, bread = (X'WX)^{-1} over kept columns,
 * xtwx = X'WX over kept columns). */
SEXP ffi_wls(SEXP X, SEXP y, SEXP w, SEXP tol) {
  sfp_check_wls(X, y, w, tol);
  if (TYPEOF(X) != REALSXP || TYPEOF(y) != REALSXP || !Rf_isMatrix(X))
    Rf_error("internal error in ffi_wls(): bad argument types");
  int n = Rf_nrows(X), p = Rf_ncols(X);
  if (XLENGTH(y) != n) Rf_error("internal error in ffi_wls(): length of y");
  const double *wp = NULL;
  if (!Rf_isNull(w)) {
    if (TYPEOF(w) != REALSXP || XLENGTH(w) != n)
      Rf_error("internal error in ffi_wls(): bad weights");
    wp = REAL_RO(w);
  }
  const double *xp = REAL_RO(X), *yp = REAL_RO(y);
  double tl = Rf_asReal(tol);

  /* rank detection on sqrt(w) X */
  int *keep = (int *) R_alloc((size_t) p + 1, sizeof(int));
  int rank = 0;
  if (p > 0 && n > 0) {
    double *qx = (double *) R_alloc((size_t) n * p, sizeof(double));
    for (int j = 0; j < p; ++j)
      for (int i = 0; i < n; ++i)
        qx[i + (size_t) j * n] = xp[i + (size_t) j * n] * (wp ? sqrt(wp[i]) : 1.0);
    double *qraux = (double *) R_alloc((size_t) p, sizeof(double));
    double *work = (double *) R_alloc((size_t) 2 * p, sizeof(double));
    int *piv = (int *) R_alloc((size_t) p, sizeof(int));
    for (int j = 0; j < p; ++j) piv[j] = j + 1;
    int ldx = n, nn = n, pp = p;
    F77_CALL(dqrdc2)(qx, &ldx, &nn, &pp, &tl, &rank, qraux, piv, work);
    for (int j = 0; j < p; ++j) keep[j] = 0;
    for (int j = 0; j < rank; ++j) keep[piv[j] - 1] = 1;
  } else {
    for (int j = 0; j < p; ++j) keep[j] = 0;
  }
  int k = rank;
  int *kidx = (int *) R_alloc((size_t) k + 1, sizeof(int));
  for (int j = 0, m = 0; j < p; ++j)
    if (keep[j]) kidx[m++] = j;

  /* sqrt(w) X_kept, sqrt(w) y */
  double *xs = (double *) R_alloc((size_t) n * (k > 0 ? k : 1), sizeof(double));
  double *ys = (double *) R_alloc((size_t) (n > 0 ? n : 1), sizeof(double));
  for (int i = 0; i < n; ++i) ys[i] = yp[i] * (wp ? sqrt(wp[i]) : 1.0);
  for (int m = 0; m < k; ++m)
    for (int i = 0; i < n; ++i)
      xs[i + (size_t) m * n] = xp[i + (size_t) kidx[m] * n] * (wp ? sqrt(wp[i]) : 1.0);

  SEXP out = PROTECT(Rf_allocVector(VECSXP, 5));
  SEXP nms = PROTECT(Rf_allocVector(STRSXP, 5));
  SET_STRING_ELT(nms, 0, Rf_mkChar("coef"));
  SET_STRING_ELT(nms, 1, Rf_mkChar("keep"));
  SET_STRING_ELT(nms, 2, Rf_mkChar("resid"));
  SET_STRING_ELT(nms, 3, Rf_mkChar("bread"));
  SET_STRING_ELT(nms, 4, Rf_mkChar("xtwx"));
  Rf_setAttrib(out, R_NamesSymbol, nms);
  SET_VECTOR_ELT(out, 0, Rf_allocVector(REALSXP, p));
  SET_VECTOR_ELT(out, 1, Rf_allocVector(LGLSXP, p));
  SET_VECTOR_ELT(out, 2, Rf_allocVector(REALSXP, n));
  SET_VECTOR_ELT(out, 3, Rf_allocMatrix(REALSXP, k, k));
  SET_VECTOR_ELT(out, 4, Rf_allocMatrix(REALSXP, k, k));
  double *coef = REAL(VECTOR_ELT(out, 0));
  int *kp = LOGICAL(VECTOR_ELT(out, 1));
  double *res = REAL(VECTOR_ELT(out, 2));
  double *bread = REAL(VECTOR_ELT(out, 3));
  double *xtwx = REAL(VECTOR_ELT(out, 4));
  for (int j = 0; j < p; ++j) {
    coef[j] = NA_REAL;
    kp[j] = keep[j];
  }
  double *b = (double *) R_alloc((size_t) (k > 0 ? k : 1), sizeof(double));
  if (k > 0) {
    double one = 1.0, zero = 0.0;
    int kk = k, nn = n, inc = 1, info = 0;
    F77_CALL(dsyrk)("U", "T", &kk, &nn, &one, xs, &nn, &zero, xtwx, &kk FCONE FCONE);
    for (int a = 0; a < k; ++a)
      for (int c = a + 1; c < k; ++c) xtwx[c + a * k] = xtwx[a + c * k];
    F77_CALL(dgemv)("T", &nn, &kk, &one, xs, &nn, ys, &inc, &zero, b, &inc FCONE);
    memcpy(bread, xtwx, sizeof(double) * (size_t) k * k);
    F77_CALL(dpotrf)("U", &kk, bread, &kk, &info FCONE);
    if (info != 0) sfp_abort("ffi_wls", "X", "gives X'WX that is not positive definite");
    int one_i = 1;
    F77_CALL(dpotrs)("U", &kk, &one_i, bread, &kk, b, &kk, &info FCONE);
    F77_CALL(dpotri)("U", &kk, bread, &kk, &info FCONE);
    for (int a = 0; a < k; ++a)
      for (int c = a + 1; c < k; ++c) bread[c + a * k] = bread[a + c * k];
    for (int m = 0; m < k; ++m) coef[kidx[m]] = b[m];
  }
  for (int i = 0; i < n; ++i) {
    double f = 0.0;
    for (int m = 0; m < k; ++m) f += xp[i + (size_t) kidx[m] * n] * b[m];
    res[i] = yp[i] - f;
  }
  UNPROTECT(2);
  return out;
}
