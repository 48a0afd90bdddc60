/* checks.c: the second line of defence at the C boundary.
 *
 * The R wrappers validate what a user gives them and answer in the user's
 * words (stop_rows(), stop_arg()).  Every .Call entry point then re-checks,
 * in O(n) and before it indexes anything, the arguments it indexes with:
 * types and lengths, code ranges, 0/1 flags, monotone offsets, sizes.  A
 * failed check means an R-side bug (or a direct call with bad arguments), so
 * it raises one classed R condition:
 *
 *   class   c("sfpceval_internal_error", "error", "condition")
 *   message "internal error in <entry>(): `<arg>` <problem>"
 *   fields  entry (the ffi_* name) and arg (the argument's name)
 *
 * It is raised with base::stop() on a condition object, so it can be caught
 * by class (tryCatch(..., sfpceval_internal_error = ...)).  Scratch memory in
 * the entry points comes from R_alloc, so the long jump leaks nothing.
 *
 * Also here: sfp_check_interrupt_rng(), the interrupt check for loops between
 * GetRNGstate() and PutRNGstate() (it saves the generator's state before an
 * interrupt unwinds the loop).
 */
#include "sfpceval.h"
#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#include <math.h>
#include <string.h>

void sfp_abort(const char *fn, const char *arg, const char *fmt, ...) {
  char problem[512], msg[800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(problem, sizeof problem, fmt, ap);
  va_end(ap);
  snprintf(msg, sizeof msg, "internal error in %s(): `%s` %s", fn, arg, problem);
  const char *names[] = {"message", "call", "entry", "arg", ""};
  SEXP cond = PROTECT(Rf_mkNamed(VECSXP, names));
  SET_VECTOR_ELT(cond, 0, Rf_mkString(msg));
  SET_VECTOR_ELT(cond, 2, Rf_mkString(fn));
  SET_VECTOR_ELT(cond, 3, Rf_mkString(arg));
  SEXP cls = PROTECT(Rf_allocVector(STRSXP, 3));
  SET_STRING_ELT(cls, 0, Rf_mkChar("sfpceval_internal_error"));
  SET_STRING_ELT(cls, 1, Rf_mkChar("error"));
  SET_STRING_ELT(cls, 2, Rf_mkChar("condition"));
  Rf_setAttrib(cond, R_ClassSymbol, cls);
  SEXP call = PROTECT(Rf_lang2(Rf_install("stop"), cond));
  Rf_eval(call, R_BaseNamespace);
  UNPROTECT(3); /* not reached: stop() does not return */
  Rf_error("%s", msg);
}

static const char *type_name(int type) {
  switch (type) {
  case INTSXP: return "integer";
  case REALSXP: return "double";
  case LGLSXP: return "logical";
  case VECSXP: return "a list";
  case STRSXP: return "character";
  default: return Rf_type2char((SEXPTYPE) type);
  }
}

void sfp_check_vec(SEXP x, int type, R_xlen_t len, const char *fn,
                   const char *arg) {
  if (TYPEOF(x) != type)
    sfp_abort(fn, arg, "must be %s, not %s", type_name(type),
              type_name(TYPEOF(x)));
  if (len >= 0 && XLENGTH(x) != len)
    sfp_abort(fn, arg, "must have length %lld, not %lld", (long long) len,
              (long long) XLENGTH(x));
}

const int *sfp_int(SEXP x, R_xlen_t len, const char *fn, const char *arg) {
  sfp_check_vec(x, INTSXP, len, fn, arg);
  return INTEGER_RO(x);
}

const double *sfp_dbl(SEXP x, R_xlen_t len, const char *fn, const char *arg) {
  sfp_check_vec(x, REALSXP, len, fn, arg);
  return REAL_RO(x);
}

const double *sfp_dbl_or_null(SEXP x, R_xlen_t len, const char *fn,
                              const char *arg) {
  if (x == R_NilValue) return NULL;
  return sfp_dbl(x, len, fn, arg);
}

void sfp_check_matrix(SEXP x, int type, int nrow, int ncol, const char *fn,
                      const char *arg) {
  sfp_check_vec(x, type, -1, fn, arg);
  if (!Rf_isMatrix(x)) sfp_abort(fn, arg, "must be a matrix");
  if (nrow >= 0 && Rf_nrows(x) != nrow)
    sfp_abort(fn, arg, "must have %d rows, not %d", nrow, Rf_nrows(x));
  if (ncol >= 0 && Rf_ncols(x) != ncol)
    sfp_abort(fn, arg, "must have %d columns, not %d", ncol, Rf_ncols(x));
}

int sfp_int1(SEXP x, int lo, int hi, const char *fn, const char *arg) {
  int t = TYPEOF(x);
  if ((t != INTSXP && t != LGLSXP && t != REALSXP) || XLENGTH(x) != 1)
    sfp_abort(fn, arg, "must be one number");
  double v = t == REALSXP ? REAL_RO(x)[0]
                          : (t == INTSXP ? INTEGER_RO(x)[0] : LOGICAL_RO(x)[0]);
  /* a non-whole double (B = 2.5) would be truncated by the (int) cast */
  if ((t != REALSXP && (int) v == NA_INTEGER) || ISNAN(v) || v < lo || v > hi ||
      v != floor(v))
    sfp_abort(fn, arg, "must be a whole number in %d..%d", lo, hi);
  return (int) v;
}

double sfp_dbl1(SEXP x, int finite, const char *fn, const char *arg) {
  int t = TYPEOF(x);
  if ((t != INTSXP && t != REALSXP) || XLENGTH(x) != 1)
    sfp_abort(fn, arg, "must be one number");
  double v = t == REALSXP ? REAL_RO(x)[0]
                          : (INTEGER_RO(x)[0] == NA_INTEGER ? NA_REAL
                                                             : INTEGER_RO(x)[0]);
  if (finite && !R_FINITE(v)) sfp_abort(fn, arg, "must be finite");
  return v;
}

void sfp_check_codes(const int *x, R_xlen_t n, int lo, int hi, int na_ok,
                     const char *fn, const char *arg) {
  for (R_xlen_t i = 0; i < n; i++) {
    int v = x[i];
    if (v == NA_INTEGER) {
      if (na_ok) continue;
      sfp_abort(fn, arg, "is NA at position %lld", (long long) i + 1);
    }
    if (v < lo || v > hi)
      sfp_abort(fn, arg, "must lie in %d..%d (position %lld holds %d)", lo, hi,
                (long long) i + 1, v);
  }
}

void sfp_check_finite(const double *x, R_xlen_t n, const char *fn,
                      const char *arg) {
  for (R_xlen_t i = 0; i < n; i++)
    if (!R_FINITE(x[i]))
      sfp_abort(fn, arg, "must be finite (position %lld is not)",
                (long long) i + 1);
}

const int *sfp_offsets(SEXP o, R_xlen_t n, R_xlen_t nrow, const char *fn,
                       const char *arg) {
  const int *op = sfp_int(o, n + 1, fn, arg);
  if (op[0] != 0 || (R_xlen_t) op[n] != nrow)
    sfp_abort(fn, arg, "must run from 0 to %lld", (long long) nrow);
  for (R_xlen_t i = 0; i < n; i++)
    if (op[i + 1] < op[i])
      sfp_abort(fn, arg, "must be non-decreasing (position %lld)",
                (long long) i + 2);
  return op;
}

/* A result (or scratch block) of more than 2^31 - 1 elements (16 GB of
 * doubles) is refused: on the machines this runs on it is the sign of an
 * R-side bug, and trying to allocate it would exhaust memory or fail with an
 * unclassed error. */
int sfp_check_size(double size, const char *fn, const char *arg) {
  if (!(size >= 0) || size > (double) INT_MAX)
    sfp_abort(fn, arg, "asks for %g elements (more than %d)", size, INT_MAX);
  return 0;
}

/* ---- interrupts inside a GetRNGstate() ... PutRNGstate() block ---------- */

static SEXP check_interrupt_body(void *data) {
  (void) data;
  R_CheckUserInterrupt();
  return R_NilValue;
}

static void put_rng_on_jump(void *data, Rboolean jump) {
  (void) data;
  if (jump) PutRNGstate();
}

void sfp_check_interrupt_rng(void) {
  SEXP token = PROTECT(R_MakeUnwindCont());
  R_UnwindProtect(check_interrupt_body, NULL, put_rng_on_jump, NULL, token);
  UNPROTECT(1);
}

/* ---- the argument contracts of the entry points ---------------------------
 * One function per entry point (or family), called as the first line of the
 * entry point; the contract itself is documented in the entry point's header
 * comment.  Kept here, apart from the kernels, so that the kernels' files
 * stay about the computation. */

/* integer columns of one length n in a list of p (codes of cem.c), each
 * within 0..maxes[k] (maxes: integer p, each 0..INT_MAX - 1) */
static void check_code_columns(SEXP codes, R_xlen_t n, SEXP maxes,
                               const char *fn) {
  sfp_check_vec(codes, VECSXP, -1, fn, "codes");
  R_xlen_t p = XLENGTH(codes);
  const int *mx = sfp_int(maxes, p, fn, "maxes");
  sfp_check_codes(mx, p, 0, INT_MAX - 1, 0, fn, "maxes");
  for (R_xlen_t k = 0; k < p; k++) {
    const int *ck = sfp_int(VECTOR_ELT(codes, k), n, fn, "codes");
    sfp_check_codes(ck, n, 0, mx[k], 0, fn, "codes");
  }
}

static void check_flags01(SEXP x, R_xlen_t n, const char *fn, const char *arg) {
  sfp_check_codes(sfp_int(x, n, fn, arg), n, 0, 1, 0, fn, arg);
}

/* NULL or double n, finite and >= 0 */
static void check_weights(SEXP w, R_xlen_t n, const char *fn, const char *arg) {
  const double *wp = sfp_dbl_or_null(w, n, fn, arg);
  if (wp == NULL) return;
  for (R_xlen_t i = 0; i < n; i++)
    if (!(wp[i] >= 0) || !R_FINITE(wp[i]))
      sfp_abort(fn, arg, "must be finite and >= 0 (position %lld is not)",
                (long long) i + 1);
}

void sfp_check_cem_strata(SEXP codes, SEXP treat, SEXP n_exact, SEXP normalise,
                          SEXP maxes) {
  const char *fn = "ffi_cem_strata";
  sfp_check_vec(treat, INTSXP, -1, fn, "treat");
  R_xlen_t n = XLENGTH(treat);
  if (n > INT_MAX) sfp_abort(fn, "treat", "is longer than %d", INT_MAX);
  check_flags01(treat, n, fn, "treat");
  check_code_columns(codes, n, maxes, fn);
  sfp_int1(n_exact, 0, (int) XLENGTH(codes), fn, "n_exact");
  sfp_check_vec(n_exact, INTSXP, 1, fn, "n_exact");
  sfp_int1(normalise, 0, 1, fn, "normalise");
  sfp_check_vec(normalise, INTSXP, 1, fn, "normalise");
}

void sfp_check_cem_l1(SEXP codes, SEXP treat, SEXP weights, SEXP values,
                      SEXP want, SEXP maxes) {
  const char *fn = "ffi_cem_l1";
  sfp_check_vec(treat, INTSXP, -1, fn, "treat");
  R_xlen_t n = XLENGTH(treat);
  if (n > INT_MAX) sfp_abort(fn, "treat", "is longer than %d", INT_MAX);
  check_flags01(treat, n, fn, "treat");
  check_code_columns(codes, n, maxes, fn);
  R_xlen_t p = XLENGTH(codes);
  sfp_check_vec(weights, VECSXP, -1, fn, "weights");
  R_xlen_t m = XLENGTH(weights);
  for (R_xlen_t j = 0; j < m; j++) {
    SEXP wj = VECTOR_ELT(weights, j);
    if (wj == R_NilValue) continue;
    const double *w = sfp_dbl(wj, n, fn, "weights");
    for (R_xlen_t i = 0; i < n; i++)
      if (!(w[i] >= 0) || !R_FINITE(w[i]))
        sfp_abort(fn, "weights", "must be finite and >= 0 (weighting %lld, row %lld)",
                  (long long) j + 1, (long long) i + 1);
  }
  sfp_check_vec(values, VECSXP, p, fn, "values");
  for (R_xlen_t k = 0; k < p; k++) {
    SEXP v = VECTOR_ELT(values, k);
    int t = TYPEOF(v);
    if (v != R_NilValue &&
        ((t != REALSXP && t != INTSXP && t != LGLSXP) || XLENGTH(v) != n))
      sfp_abort(fn, "values", "must hold NULL or numeric vectors of length %lld",
                (long long) n);
  }
  sfp_check_vec(want, LGLSXP, p, fn, "want");
  sfp_check_codes(LOGICAL_RO(want), p, 0, 1, 0, fn, "want");
  const int *mx = INTEGER_RO(maxes);
  for (R_xlen_t k = 0; k < p; k++)
    if (LOGICAL_RO(want)[k])
      sfp_check_size(((double) mx[k] + 1.0) * 2.0 * (double) m, fn, "maxes");
}

void sfp_check_cem_codes(SEXP cols, SEXP kinds, SEXP args) {
  const char *fn = "ffi_cem_codes";
  sfp_check_vec(cols, VECSXP, -1, fn, "cols");
  R_xlen_t p = XLENGTH(cols);
  const int *kind = sfp_int(kinds, p, fn, "kinds");
  sfp_check_codes(kind, p, 0, 2, 0, fn, "kinds");
  sfp_check_vec(args, VECSXP, p, fn, "args");
  R_xlen_t n = -1;
  for (R_xlen_t k = 0; k < p; k++) {
    SEXP x = VECTOR_ELT(cols, k), a = VECTOR_ELT(args, k);
    int t = TYPEOF(x);
    if (t != LGLSXP && t != INTSXP && t != REALSXP && t != STRSXP)
      sfp_abort(fn, "cols", "must hold atomic vectors (column %lld does not)",
                (long long) k + 1);
    if (n < 0) n = XLENGTH(x);
    if (XLENGTH(x) != n) sfp_abort(fn, "cols", "must hold columns of one length");
    if (n > INT_MAX) sfp_abort(fn, "cols", "must hold columns shorter than %d", INT_MAX);
    if (kind[k] == 1) {
      if (t != INTSXP) sfp_abort(fn, "cols", "must be integer for a factor column");
      int L = sfp_int1(a, 0, 1 << 26, fn, "args"); /* counts: 4 (L + 2) ints */
      sfp_check_vec(a, INTSXP, 1, fn, "args");
      sfp_check_codes(INTEGER_RO(x), n, 1, L, 1, fn, "cols");
    } else if (kind[k] == 2) {
      if (t == STRSXP) sfp_abort(fn, "cols", "must be numeric for a binned column");
      const double *b = sfp_dbl(a, -1, fn, "args");
      R_xlen_t K = XLENGTH(a);
      if (K < 2 || K > (1 << 26))
        sfp_abort(fn, "args", "must hold 2 or more breaks for a binned column");
      for (R_xlen_t j = 0; j < K; j++)
        if (ISNAN(b[j])) sfp_abort(fn, "args", "must hold breaks without NA");
      for (R_xlen_t j = 1; j < K; j++)
        if (!(b[j] > b[j - 1]))
          sfp_abort(fn, "args", "must hold strictly increasing breaks");
    }
  }
}

void sfp_check_cem_moments(SEXP x) {
  int t = TYPEOF(x);
  if (t != REALSXP && t != INTSXP && t != LGLSXP)
    sfp_abort("ffi_cem_moments", "x", "must be numeric, not %s", type_name(t));
}

void sfp_check_demean(SEXP X, SEXP codes, SEXP nlev, SEXP w, SEXP tol,
                      SEXP maxit) {
  const char *fn = "ffi_demean";
  sfp_check_vec(X, REALSXP, -1, fn, "X");
  R_xlen_t n = Rf_isMatrix(X) ? Rf_nrows(X) : XLENGTH(X);
  if (n > INT_MAX) sfp_abort(fn, "X", "has more than %d rows", INT_MAX);
  sfp_check_vec(codes, VECSXP, -1, fn, "codes");
  R_xlen_t nfe = XLENGTH(codes);
  const int *nl = sfp_int(nlev, nfe, fn, "nlev");
  sfp_check_codes(nl, nfe, 0, INT_MAX - 1, 0, fn, "nlev");
  for (R_xlen_t f = 0; f < nfe; f++) {
    const int *c = sfp_int(VECTOR_ELT(codes, f), n, fn, "codes");
    sfp_check_codes(c, n, 0, nl[f] - 1, 0, fn, "codes");
  }
  check_weights(w, n, fn, "w");
  sfp_dbl1(tol, 0, fn, "tol");
  sfp_int1(maxit, 0, INT_MAX - 1, fn, "maxit");
}

void sfp_check_wls(SEXP X, SEXP y, SEXP w, SEXP tol) {
  const char *fn = "ffi_wls";
  sfp_check_matrix(X, REALSXP, -1, -1, fn, "X");
  int n = Rf_nrows(X);
  sfp_check_finite(REAL_RO(X), XLENGTH(X), fn, "X");
  sfp_check_finite(sfp_dbl(y, n, fn, "y"), n, fn, "y");
  check_weights(w, n, fn, "w");
  sfp_dbl1(tol, 1, fn, "tol");
}

void sfp_check_crve(SEXP Xt, SEXP e, SEXP w, SEXP ord, SEXP starts, SEXP fe,
                    SEXP Ls, SEXP B, SEXP C, SEXP type, SEXP satt) {
  const char *fn = "ffi_crve";
  sfp_check_matrix(Xt, REALSXP, -1, -1, fn, "Xt");
  int n = Rf_nrows(Xt), k = Rf_ncols(Xt);
  sfp_check_finite(REAL_RO(Xt), XLENGTH(Xt), fn, "Xt");
  sfp_check_finite(sfp_dbl(e, n, fn, "e"), n, fn, "e");
  check_weights(w, n, fn, "w");
  sfp_check_codes(sfp_int(ord, n, fn, "ord"), n, 0, n - 1, 0, fn, "ord");
  sfp_check_vec(starts, INTSXP, -1, fn, "starts");
  if (XLENGTH(starts) < 1) sfp_abort(fn, "starts", "must have length >= 1");
  R_xlen_t G = XLENGTH(starts) - 1;
  sfp_offsets(starts, G, n, fn, "starts");
  sfp_check_matrix(fe, INTSXP, n, -1, fn, "fe");
  int L = sfp_int1(Ls, 0, INT_MAX - 1 - k, fn, "L");
  sfp_check_codes(INTEGER_RO(fe), XLENGTH(fe), 0, L - 1, 0, fn, "fe");
  int typ = sfp_int1(type, 0, 4, fn, "type");
  if (typ == 1) sfp_abort(fn, "type", "must be 0 (CR0/CR1), 2 (CR2), 3 (CR3) or 4 (CR2, inverse-variance weights)");
  int sat = Rf_asLogical(satt) == 1 && (typ == 2 || typ == 4);
  if (TYPEOF(satt) != LGLSXP || XLENGTH(satt) != 1)
    sfp_abort(fn, "satt", "must be TRUE or FALSE");
  int pk = L + k;
  if (typ >= 2) {
    sfp_check_matrix(B, REALSXP, pk, pk, fn, "B");
    sfp_check_finite(REAL_RO(B), XLENGTH(B), fn, "B");
    if (w != R_NilValue && typ == 2) {
      sfp_check_matrix(C, REALSXP, pk, pk, fn, "C");
      sfp_check_finite(REAL_RO(C), XLENGTH(C), fn, "C");
    }
  }
  if (sat) sfp_check_size((double) pk * k * (double) G, fn, "L");
}

void sfp_check_boot_weights(SEXP Gs, SEXP type, SEXP Bs, SEXP enumerate) {
  const char *fn = "ffi_boot_weights";
  int G = sfp_int1(Gs, 1, INT_MAX, fn, "G");
  int typ = sfp_int1(type, 1, 3, fn, "type");
  int B = sfp_int1(Bs, 1, INT_MAX, fn, "B");
  int en = sfp_int1(enumerate, 0, 1, fn, "enumerate");
  sfp_check_size((double) G * (double) B, fn, "B");
  if (en && (typ == 3 || pow(typ == 1 ? 2.0 : 6.0, (double) G) != (double) B))
    sfp_abort(fn, "B", "must be 2^G (Rademacher) or 6^G (Webb) to enumerate");
}

void sfp_check_wcr_stats(SEXP V, SEXP a0, SEXP a1, SEXP K0, SEXP K1) {
  const char *fn = "ffi_wcr_stats";
  sfp_check_matrix(V, REALSXP, -1, -1, fn, "V");
  R_xlen_t G = Rf_nrows(V);
  sfp_dbl(a0, G, fn, "a0");
  sfp_dbl(a1, G, fn, "a1");
  sfp_dbl(K0, G * G, fn, "K0");
  sfp_dbl(K1, G * G, fn, "K1");
}

/* Integer offsets (length >= 1) of *n = length - 1 groups of the nrow
 * items, every group non-empty ("must give every <group> a <item>"). */
static const int *sfp_groups(SEXP o, R_xlen_t nrow, R_xlen_t *n, const char *fn,
                             const char *arg, const char *group, const char *item) {
  sfp_check_vec(o, INTSXP, -1, fn, arg);
  if (XLENGTH(o) < 1) sfp_abort(fn, arg, "must have length >= 1");
  *n = XLENGTH(o) - 1;
  const int *op = sfp_offsets(o, *n, nrow, fn, arg);
  for (R_xlen_t a = 0; a < *n; a++)
    if (op[a + 1] == op[a])
      sfp_abort(fn, arg, "must give every %s a %s (%s %lld has none)", group, item, group,
                (long long) a + 1);
  return op;
}

/* A K x p model matrix by row (CSR), rows = list(ptr, col, val): ptr of
 * K + 1 offsets from 0, non-decreasing; col 0-based, increasing within a
 * row, in [0, p); val double (finite if `finite`).  The caller has checked
 * that rows is a list of 3. */
static void sfp_check_csr(SEXP rows, R_xlen_t K, R_xlen_t p, int finite, const char *fn) {
  const int *ptr = sfp_int(VECTOR_ELT(rows, 0), K + 1, fn, "rows$ptr");
  if (ptr[0] != 0) sfp_abort(fn, "rows$ptr", "must start at 0");
  for (R_xlen_t k = 0; k < K; k++)
    if (ptr[k + 1] < ptr[k])
      sfp_abort(fn, "rows$ptr", "must be non-decreasing (position %lld)", (long long) k + 2);
  R_xlen_t nnz = ptr[K];
  const int *col = sfp_int(VECTOR_ELT(rows, 1), nnz, fn, "rows$col");
  const double *val = sfp_dbl(VECTOR_ELT(rows, 2), nnz, fn, "rows$val");
  if (finite) sfp_check_finite(val, nnz, fn, "rows$val");
  for (R_xlen_t k = 0; k < K; k++)
    for (int b = ptr[k]; b < ptr[k + 1]; b++)
      if (col[b] < 0 || col[b] >= p || (b > ptr[k] && col[b] <= col[b - 1]))
        sfp_abort(fn, "rows$col", "must hold increasing columns in [0, %lld) within each row",
                  (long long) p);
}

void sfp_check_glmm_binom(SEXP X, SEXP s, SEXP n, SEXP cstart, SEXP beta,
                          SEXP sigma, SEXP x, SEXP w, SEXP u0, SEXP what,
                          SEXP rows, SEXP offset) {
  const char *fn = "ffi_glmm_binom";
  sfp_check_vec(s, REALSXP, -1, fn, "s");
  R_xlen_t K = XLENGTH(s);
  if (K > INT_MAX) sfp_abort(fn, "s", "is longer than %d", INT_MAX);
  sfp_dbl(n, K, fn, "n");
  sfp_check_vec(beta, REALSXP, -1, fn, "beta");
  R_xlen_t p = XLENGTH(beta);
  sfp_dbl(X, K * p, fn, "X");
  R_xlen_t G;
  sfp_groups(cstart, K, &G, fn, "cstart", "cluster", "cell");
  sfp_dbl1(sigma, 0, fn, "sigma");
  sfp_check_vec(sigma, REALSXP, 1, fn, "sigma");
  sfp_check_vec(x, REALSXP, -1, fn, "x");
  R_xlen_t Q = XLENGTH(x);
  if (Q < 1) sfp_abort(fn, "x", "must hold at least one quadrature node");
  sfp_dbl(w, Q, fn, "w");
  sfp_check_vec(u0, REALSXP, -1, fn, "u0");
  if (XLENGTH(u0) != 0 && XLENGTH(u0) != G)
    sfp_abort(fn, "u0", "must have length 0 or %lld", (long long) G);
  sfp_int1(what, 0, 3, fn, "what");
  sfp_check_vec(what, INTSXP, 1, fn, "what");
  sfp_check_vec(offset, REALSXP, -1, fn, "offset");
  if (XLENGTH(offset) != 0) {
    if (XLENGTH(offset) != K)
      sfp_abort(fn, "offset", "must have length 0 or %lld", (long long) K);
    sfp_check_finite(REAL_RO(offset), K, fn, "offset");
  }
  /* the (p + 1) x (p + 1) Hessian and the p x p X'VX are indexed with int */
  sfp_check_size(((double) p + 1.0) * ((double) p + 1.0), fn, "beta");
  if (!Rf_isNull(rows)) {
    if (TYPEOF(rows) != VECSXP || XLENGTH(rows) != 3)
      sfp_abort(fn, "rows", "must be NULL or a list of 3 (ptr, col, val)");
    sfp_check_csr(rows, K, p, 0, fn);
  }
}

/* ffi_glmm_nested(): cells by child, children by authority, the model
 * matrix by row (CSR) */
void sfp_check_glmm_nested(SEXP s, SEXP n, SEXP cstart, SEXP lstart, SEXP rows,
                           SEXP beta, SEXP sigma, SEXP u0, SEXP what) {
  const char *fn = "ffi_glmm_nested";
  sfp_check_vec(s, REALSXP, -1, fn, "s");
  R_xlen_t K = XLENGTH(s);
  if (K > INT_MAX) sfp_abort(fn, "s", "is longer than %d", INT_MAX);
  const double *sp = sfp_dbl(s, K, fn, "s"), *np = sfp_dbl(n, K, fn, "n");
  for (R_xlen_t k = 0; k < K; k++)
    if (!(np[k] > 0) || !(sp[k] >= 0) || !(sp[k] <= np[k]) || !R_FINITE(np[k]))
      sfp_abort(fn, "s", "must satisfy 0 <= s <= n, n > 0 finite (cell %lld)", (long long) k + 1);
  R_xlen_t C, G;
  sfp_groups(cstart, K, &C, fn, "cstart", "child", "cell");
  sfp_groups(lstart, C, &G, fn, "lstart", "authority", "child");
  sfp_check_vec(beta, REALSXP, -1, fn, "beta");
  R_xlen_t p = XLENGTH(beta);
  sfp_check_finite(REAL_RO(beta), p, fn, "beta");
  sfp_check_vec(sigma, REALSXP, 2, fn, "sigma");
  sfp_check_finite(REAL_RO(sigma), 2, fn, "sigma");
  sfp_check_vec(u0, REALSXP, -1, fn, "u0");
  if (XLENGTH(u0) != 0 && XLENGTH(u0) != G + C)
    sfp_abort(fn, "u0", "must have length 0 or %lld", (long long) (G + C));
  if (XLENGTH(u0)) sfp_check_finite(REAL_RO(u0), G + C, fn, "u0");
  sfp_int1(what, 0, 3, fn, "what");
  sfp_check_vec(what, INTSXP, 1, fn, "what");
  /* the p x p information and the (p + 2) x (p + 2) Hessian are indexed
   * with size_t, their sizes with int */
  sfp_check_size((double) (p + 2) * (double) (p + 2), fn, "beta");
  if (TYPEOF(rows) != VECSXP || XLENGTH(rows) != 3)
    sfp_abort(fn, "rows", "must be a list of 3 (ptr, col, val)");
  sfp_check_csr(rows, K, p, 1, fn);
}

void sfp_check_glmm_row_groups(SEXP X, SEXP g, SEXP full) {
  const char *fn = "ffi_glmm_row_groups";
  sfp_check_vec(g, INTSXP, -1, fn, "g");
  R_xlen_t N = XLENGTH(g);
  if (N > INT_MAX) sfp_abort(fn, "g", "is longer than %d", INT_MAX);
  sfp_check_vec(X, REALSXP, -1, fn, "X");
  if (N == 0 ? XLENGTH(X) != 0 : XLENGTH(X) % N != 0)
    sfp_abort(fn, "X", "must have length(g) rows");
  sfp_int1(full, 0, 1, fn, "full");
  sfp_check_vec(full, INTSXP, 1, fn, "full");
}

void sfp_check_sim_trial(SEXP m, SEXP X, SEXP alpha, SEXP gamma, SEXP prev,
                         SEXP theta, SEXP sigma, SEXP r) {
  const char *fn = "ffi_sim_trial";
  sfp_check_matrix(m, INTSXP, -1, -1, fn, "m");
  int I = Rf_nrows(m), J = Rf_ncols(m);
  R_xlen_t IJ = (R_xlen_t) I * J;
  if (IJ > INT_MAX) sfp_abort(fn, "m", "has more than %d cells", INT_MAX);
  sfp_check_codes(INTEGER_RO(m), IJ, 0, INT_MAX, 0, fn, "m");
  sfp_check_finite(sfp_dbl(X, IJ, fn, "X"), IJ, fn, "X");
  sfp_check_finite(sfp_dbl(alpha, J, fn, "alpha"), J, fn, "alpha");
  sfp_check_vec(gamma, REALSXP, -1, fn, "gamma");
  R_xlen_t K = XLENGTH(gamma);
  if (K < 1) sfp_abort(fn, "gamma", "must have length >= 1");
  sfp_check_finite(REAL_RO(gamma), K, fn, "gamma");
  const double *pv = sfp_dbl(prev, K, fn, "prev");
  for (R_xlen_t k = 0; k < K; k++)
    if (!(pv[k] >= 0 && pv[k] <= 1))
      sfp_abort(fn, "prev", "must hold probabilities (position %lld)", (long long) k + 1);
  sfp_dbl1(theta, 1, fn, "theta");
  double sg = sfp_dbl1(sigma, 1, fn, "sigma");
  double rr = sfp_dbl1(r, 1, fn, "r");
  if (sg < 0) sfp_abort(fn, "sigma", "must be >= 0");
  if (rr < 0 || rr > 1) sfp_abort(fn, "r", "must lie in [0, 1]");
  sfp_check_size((double) IJ * (double) K, fn, "gamma");
}

/* Days and day-like parameters of the records simulator stay within
 * +-SIM_DAY_MAX, so no day arithmetic can overflow an int. */
#define SIM_DAY_MAX 10000000

static void check_days(const int *x, R_xlen_t n, int na_ok, const char *fn,
                       const char *arg) {
  sfp_check_codes(x, n, -SIM_DAY_MAX, SIM_DAY_MAX, na_ok, fn, arg);
}

void sfp_check_simulate(SEXP ci, SEXP cd, SEXP la_go_live, SEXP traj,
                        SEXP qday, SEXP par, int n_par, SEXP eff, int n_eff,
                        SEXP terms) {
  const char *fn = "ffi_simulate_sfp";
  sfp_check_vec(ci, VECSXP, 8, fn, "ci");
  sfp_check_vec(cd, VECSXP, 2, fn, "cd");
  sfp_check_vec(terms, VECSXP, 5, fn, "terms");
  const double *p = sfp_dbl(par, n_par, fn, "par");
  for (int j = 0; j < n_par; j++)
    if (!(fabs(p[j]) <= SIM_DAY_MAX))
      sfp_abort(fn, "par", "must hold finite values within +-%d (position %d)",
                SIM_DAY_MAX, j + 1);
  sfp_check_finite(sfp_dbl(eff, n_eff, fn, "eff"), n_eff, fn, "eff");
  int day0 = (int) p[0], day_end = (int) p[1]; /* P_DAY0, P_DAY_END */
  if (day_end < day0) sfp_abort(fn, "par", "must have the end day on or after day 0");
  sfp_check_vec(VECTOR_ELT(ci, 0), INTSXP, -1, fn, "ci");
  R_xlen_t n = XLENGTH(VECTOR_ELT(ci, 0));
  for (int j = 0; j < 8; j++) sfp_int(VECTOR_ELT(ci, j), n, fn, "ci");
  for (int j = 0; j < 2; j++)
    sfp_check_finite(sfp_dbl(VECTOR_ELT(cd, j), n, fn, "cd"), n, fn, "cd");
  const int *gl = sfp_int(la_go_live, -1, fn, "la_go_live");
  R_xlen_t n_la = XLENGTH(la_go_live);
  check_days(gl, n_la, 1, fn, "la_go_live");
  sfp_check_matrix(traj, REALSXP, (int) n_la, -1, fn, "traj");
  int nq = Rf_ncols(traj);
  sfp_check_finite(REAL_RO(traj), XLENGTH(traj), fn, "traj");
  const int *qd = sfp_int(qday, -1, fn, "qday");
  if (XLENGTH(qday) < (R_xlen_t) day_end - day0 + 1)
    sfp_abort(fn, "qday", "must cover every day from day 0 to the end day");
  sfp_check_codes(qd, XLENGTH(qday), 0, nq - 1, 0, fn, "qday");
  /* ci: la, ref0, dob, b18, uasc, prior_cpp, short_break, part_time */
  sfp_check_codes(INTEGER_RO(VECTOR_ELT(ci, 0)), n, 0, (int) n_la - 1, 0, fn, "ci$la");
  sfp_check_codes(INTEGER_RO(VECTOR_ELT(ci, 1)), n, day0, SIM_DAY_MAX, 0, fn, "ci$ref0");
  check_days(INTEGER_RO(VECTOR_ELT(ci, 2)), n, 0, fn, "ci$dob");
  check_days(INTEGER_RO(VECTOR_ELT(ci, 3)), n, 0, fn, "ci$b18");
  check_flags01(VECTOR_ELT(ci, 4), n, fn, "ci$uasc");
  sfp_check_codes(INTEGER_RO(VECTOR_ELT(ci, 5)), n, 0, 1000000, 0, fn, "ci$prior_cpp");
  check_flags01(VECTOR_ELT(ci, 6), n, fn, "ci$short_break");
  check_flags01(VECTOR_ELT(ci, 7), n, fn, "ci$part_time");
  /* terms: start, end, ay, term (1..3), sessions (>= 6: up to 6 are taken
   * off at random) */
  sfp_check_vec(VECTOR_ELT(terms, 0), INTSXP, -1, fn, "terms");
  R_xlen_t nt = XLENGTH(VECTOR_ELT(terms, 0));
  for (int j = 0; j < 5; j++) sfp_int(VECTOR_ELT(terms, j), nt, fn, "terms");
  check_days(INTEGER_RO(VECTOR_ELT(terms, 0)), nt, 0, fn, "terms$start");
  check_days(INTEGER_RO(VECTOR_ELT(terms, 1)), nt, 0, fn, "terms$end");
  check_days(INTEGER_RO(VECTOR_ELT(terms, 2)), nt, 1, fn, "terms$ay");
  sfp_check_codes(INTEGER_RO(VECTOR_ELT(terms, 3)), nt, 1, 3, 0, fn, "terms$term");
  sfp_check_codes(INTEGER_RO(VECTOR_ELT(terms, 4)), nt, 6, 100000, 0, fn, "terms$sessions");
}

void sfp_check_clogit(SEXP X, SEXP y, SEXP w, SEXP offset, SEXP ord,
                      SEXP starts, SEXP fe, SEXP L, SEXP theta, SEXP cluster,
                      SEXP G, SEXP what) {
  const char *fn = "ffi_clogit";
  sfp_check_matrix(X, REALSXP, -1, -1, fn, "X");
  int n = Rf_nrows(X), k = Rf_ncols(X);
  sfp_check_finite(REAL_RO(X), XLENGTH(X), fn, "X");
  sfp_check_finite(sfp_dbl(y, n, fn, "y"), n, fn, "y");
  if (w == R_NilValue) sfp_abort(fn, "w", "must be a double vector, not NULL");
  check_weights(w, n, fn, "w");
  const double *op = sfp_dbl_or_null(offset, n, fn, "offset");
  if (op != NULL) sfp_check_finite(op, n, fn, "offset");
  sfp_check_codes(sfp_int(ord, n, fn, "ord"), n, 0, n - 1, 0, fn, "ord");
  sfp_check_vec(starts, INTSXP, -1, fn, "starts");
  if (XLENGTH(starts) < 1) sfp_abort(fn, "starts", "must have length >= 1");
  sfp_offsets(starts, XLENGTH(starts) - 1, n, fn, "starts");
  sfp_check_matrix(fe, INTSXP, n, -1, fn, "fe");
  int Lv = sfp_int1(L, 0, INT_MAX - 1 - k, fn, "L");
  sfp_check_codes(INTEGER_RO(fe), XLENGTH(fe), 0, Lv - 1, 0, fn, "fe");
  /* the kernel reads each column's codes as its own block of levels: the
   * columns' code ranges must be disjoint and increasing */
  {
    int nf = Rf_ncols(fe), prev_max = -1;
    const int *fp = INTEGER_RO(fe);
    for (int f = 0; f < nf; f++) {
      int lo = INT_MAX, hi = -1;
      for (int i = 0; i < n; i++) {
        int c = fp[(R_xlen_t) f * n + i];
        if (c < lo) lo = c;
        if (c > hi) hi = c;
      }
      if (n > 0 && lo <= prev_max)
        sfp_abort(fn, "fe", "column %d's codes overlap the previous column's (each column needs its own range of levels)", f + 1);
      if (n > 0) prev_max = hi;
    }
  }
  /* ord must be a permutation of 0..n-1 (a repeated row would count twice) */
  {
    const int *op2 = INTEGER_RO(ord);
    char *seen = (char *) R_alloc((size_t) n + 1, 1);
    memset(seen, 0, (size_t) n + 1);
    for (int i = 0; i < n; i++) {
      if (seen[op2[i]]) sfp_abort(fn, "ord", "repeats row %d (must be a permutation)", op2[i] + 1);
      seen[op2[i]] = 1;
    }
  }
  int P = k + Lv;
  sfp_check_finite(sfp_dbl(theta, P, fn, "theta"), P, fn, "theta");
  int wh = sfp_int1(what, 0, 2, fn, "what");
  int Gv = sfp_int1(G, wh == 2 ? 1 : 0, INT_MAX, fn, "G");
  if (wh >= 1) sfp_check_size((double) P * (double) P, fn, "L");
  if (wh == 2) {
    sfp_check_codes(sfp_int(cluster, n, fn, "cluster"), n, 0, Gv - 1, 0, fn,
                    "cluster");
    sfp_check_size((double) Gv * (double) P, fn, "G");
  }
}
