/* cem.c: coarsened exact matching strata, weights and the L1 imbalance.
 *
 * R (R/cem.R) validates the input and plans the coarsening: the breaks of
 * each numeric variable, the groupings, the factor levels.  Here
 *   ffi_cem_codes()   turns each column into integer codes in one pass
 *                     (findInterval() semantics for bins, match(x, unique(x))
 *                     semantics for values, strings by their cached CHARSXP);
 *   ffi_cem_strata()  groups the rows by their code vectors, counts treated
 *                     and controls per stratum and assigns the weights;
 *   ffi_cem_l1()      groups the rows into L1 cells and computes the L1
 *                     imbalance, the one-variable tables and weighted sums
 *                     for several weightings (before and after) at once;
 *   ffi_cem_moments() gives n, min, max and variance for the default breaks.
 * Rows are grouped by the engine of rowgroup.c (codes packed exactly into one
 * 64-bit key whenever they fit, else hashed with collisions resolved by
 * comparing the codes).  Group ids are 1-based and numbered in order of first
 * appearance.
 * Loops over rows avoid branches on the treatment arm, which is interleaved
 * at random (mispredicted branches dominated the first version).
 */
#include "sfpceval.h"
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <limits.h>

/* ---- grouping rows ------------------------------------------------------ */

/* Group the n rows of the p integer columns cols[0..p-1] by their code
 * vectors, with the engine of rowgroup.c.  Writes id[i] in 1..G (order of
 * first appearance) and, when first_out is not NULL, points *first_out to
 * the 0-based first row of each group.  Returns G.  Column k holds codes in
 * 0..maxes[k] (checked at the entry point: the engine sizes its table from
 * them). */
static int group_rows(const int *const *cols, int n, int p, int *id,
                      int **first_out, const int *maxes) {
  sfp_key_col *kc = (sfp_key_col *) R_alloc(p > 0 ? p : 1, sizeof(sfp_key_col));
  for (int k = 0; k < p; k++) {
    kc[k].i = cols[k];
    kc[k].d = NULL;
    kc[k].max = maxes[k];
  }
  return sfp_group_rows(kc, p, n, id, first_out, 0);
}

/* ---- coding the variables -------------------------------------------------- */

/* 64-bit identity of element i of an atomic vector: equal values (NA and
 * NaN one value, -0 == 0, strings by their cached CHARSXP) give equal words. */
static inline uint64_t value_word(SEXP x, R_xlen_t i) {
  switch (TYPEOF(x)) {
  case LGLSXP:
  case INTSXP:
    return (uint64_t) (uint32_t) INTEGER(x)[i];
  case REALSXP: {
    double v = REAL(x)[i];
    if (ISNAN(v)) return UINT64_C(0x7ff8dead00000000);
    if (v == 0.0) v = 0.0;
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
  }
  case STRSXP:
    return (uint64_t) (uintptr_t) STRING_ELT(x, i);
  default:
    return 0;
  }
}

/* Dense codes 1..U of the distinct values of x in order of first appearance
 * (match(x, unique(x)) in R, but NA and NaN are one value). Writes first[u]
 * = 0-based row of the first occurrence of code u + 1. Returns U. */
static int code_values(SEXP x, int n, int *out, int *first) {
  sfp_word_codes t;
  sfp_word_codes_init(&t);
  for (int i = 0; i < n; i++) {
    int added;
    out[i] = sfp_word_code(&t, value_word(x, i), &added);
    if (added) first[out[i] - 1] = i;
  }
  return t.n;
}

/* Bins of cut(x, breaks, include.lowest = TRUE) (findInterval(x, breaks,
 * left.open = TRUE, rightmost.closed = TRUE)): [b1, b2] -> 1, (b2, b3] -> 2,
 * ..., below b1 -> 0, above bK -> K, NA/NaN -> K + 1. */
static inline int bin_few(double v, const double *b, int K) {
  if (ISNAN(v)) return K + 1;
  /* a few breaks: count those below v without branches (data arrive in
   * random order, so branches on them would mispredict) */
  int below = 0;
  for (int j = 0; j < K; j++) below += b[j] < v;
  return below + (v == b[0]); /* include.lowest: b1 itself is in bin 1 */
}

static inline int bin_spaced(double v, const double *b, int K, double inv_h) {
  if (ISNAN(v)) return K + 1;
  /* guess the number of breaks below v from the mean spacing (right for the
   * equally spaced breaks of seq() and pretty()), then correct it exactly */
  double g = (v - b[0]) * inv_h;
  int j = !(g > 0.0) ? 0 : (g >= K - 1 ? K : (int) g + 1);
  while (j > 0 && !(b[j - 1] < v)) j--;
  while (j < K && b[j] < v) j++;
  return j + (v == b[0]);
}

/* Counting codes: four interleaved tables (row i counts in table i & 3), so
 * that runs of equal codes do not chain increments of one counter; then
 * folded into the first table. */
#define CNT(c) cnt4[((size_t) (i & 3)) * ((size_t) top + 1) + (size_t) (c)]
static int *fold_counts(int *cnt4, int top) {
  size_t len = (size_t) top + 1;
  for (size_t c = 0; c < len; c++)
    cnt4[c] += cnt4[c + len] + cnt4[c + 2 * len] + cnt4[c + 3 * len];
  return cnt4;
}

/* How many of the codes 0..top are in use (cnt[c] > 0), and the largest. */
static void codes_in_use(const int *cnt, int top, int *n_used, int *largest) {
  int u = 0, mx = 0;
  for (int c = 0; c <= top; c++) {
    if (cnt[c] > 0) {
      u++;
      mx = c;
    }
  }
  *n_used = u;
  *largest = mx;
}

/* ffi_cem_codes(cols, kinds, args)
 *   cols:  VECSXP of p atomic vectors of one length n.
 *   kinds: INTSXP length p: 0 = values (any atomic type; dense codes 1..U in
 *          order of first appearance, NA/NaN one value), 1 = factor (INTSXP
 *          level codes; NA becomes nlevels + 1), 2 = bins (LGLSXP, INTSXP or
 *          REALSXP; codes as bin_few()/bin_spaced() above).
 *   args:  VECSXP length p: NULL (values), INTSXP scalar nlevels (factor),
 *          REALSXP strictly increasing breaks of length K >= 2 (bins); R has
 *          checked them.
 * Returns a named list: codes (VECSXP of p INTSXP columns of length n,
 * every code >= 0; a factor column without NA is returned as it is, its level
 * codes being the codes),
 * n_values (INTSXP p: distinct codes), n_below, n_above (INTSXP p: rows in
 * bin 0 and bin K of binned columns), first (VECSXP p: for value-coded
 * columns the 1-based row of the first occurrence of each code, else NULL),
 * max_code (INTSXP p: the largest code present, 0 when n = 0). */
SEXP ffi_cem_codes(SEXP cols, SEXP kinds, SEXP args) {
  sfp_check_cem_codes(cols, kinds, args);
  int p = (int) XLENGTH(cols);
  int n = p > 0 ? (int) XLENGTH(VECTOR_ELT(cols, 0)) : 0;
  const int *kind = INTEGER(kinds);
  const char *names[] = {"codes", "n_values", "n_below", "n_above", "first",
                         "max_code", ""};
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  SET_VECTOR_ELT(out, 0, Rf_allocVector(VECSXP, p));
  SEXP code_list = VECTOR_ELT(out, 0);
  SET_VECTOR_ELT(out, 1, Rf_allocVector(INTSXP, p));
  SET_VECTOR_ELT(out, 2, Rf_allocVector(INTSXP, p));
  SET_VECTOR_ELT(out, 3, Rf_allocVector(INTSXP, p));
  SET_VECTOR_ELT(out, 4, Rf_allocVector(VECSXP, p));
  SET_VECTOR_ELT(out, 5, Rf_allocVector(INTSXP, p));
  int *max_code = INTEGER(VECTOR_ELT(out, 5));
  int *n_values = INTEGER(VECTOR_ELT(out, 1));
  int *n_below = INTEGER(VECTOR_ELT(out, 2));
  int *n_above = INTEGER(VECTOR_ELT(out, 3));
  int *first = NULL; /* only value-coded columns need it */
  for (int k = 0; k < p && first == NULL; k++)
    if (kind[k] == 0) first = (int *) R_alloc(n > 0 ? n : 1, sizeof(int));

  for (int k = 0; k < p; k++) {
    SEXP x = VECTOR_ELT(cols, k), a = VECTOR_ELT(args, k);
    n_below[k] = n_above[k] = 0;
    if (kind[k] == 1) {
      /* a factor: its level codes are the codes; without NA the column is
       * returned as it is (no copy) */
      int L = INTEGER(a)[0], top = L + 1, has_na = 0;
      int *cnt4 = (int *) R_alloc(4 * ((size_t) top + 1), sizeof(int));
      memset(cnt4, 0, 4 * ((size_t) top + 1) * sizeof(int));
      const int *xv = INTEGER(x);
      for (int i = 0; i < n; i++) {
        int c = xv[i] == NA_INTEGER ? L + 1 : xv[i];
        CNT(c)++;
      }
      int *cnt = fold_counts(cnt4, top);
      has_na = cnt[L + 1] > 0;
      if (has_na) {
        SET_VECTOR_ELT(code_list, k, Rf_allocVector(INTSXP, n));
        int *ck = INTEGER(VECTOR_ELT(code_list, k));
        for (int i = 0; i < n; i++) ck[i] = xv[i] == NA_INTEGER ? L + 1 : xv[i];
      } else {
        SET_VECTOR_ELT(code_list, k, x);
      }
      codes_in_use(cnt, top, &n_values[k], &max_code[k]);
      continue;
    }
    SET_VECTOR_ELT(code_list, k, Rf_allocVector(INTSXP, n));
    int *ck = INTEGER(VECTOR_ELT(code_list, k));
    if (kind[k] == 0) {
      int U = code_values(x, n, ck, first);
      n_values[k] = U;
      max_code[k] = U;
      SET_VECTOR_ELT(VECTOR_ELT(out, 4), k, Rf_allocVector(INTSXP, U));
      int *fk = INTEGER(VECTOR_ELT(VECTOR_ELT(out, 4), k));
      for (int u = 0; u < U; u++) fk[u] = first[u] + 1;
      continue;
    }
    /* Codes lie in 0..top; tabulate them in the same pass (distinct codes,
     * rows below and above the breaks). */
    int top;
    int *cnt4, *cnt;
    {
      const double *b = REAL(a);
      int K = (int) XLENGTH(a);
      double inv_h = (K - 1) / (b[K - 1] - b[0]);
      top = K + 1;
      cnt4 = (int *) R_alloc(4 * ((size_t) top + 1), sizeof(int));
      memset(cnt4, 0, 4 * ((size_t) top + 1) * sizeof(int));
      if (TYPEOF(x) == REALSXP) {
        const double *xv = REAL(x);
        if (K <= 8) {
          for (int i = 0; i < n; i++) {
            int c = bin_few(xv[i], b, K);
            ck[i] = c;
            CNT(c)++;
          }
        } else {
          for (int i = 0; i < n; i++) {
            int c = bin_spaced(xv[i], b, K, inv_h);
            ck[i] = c;
            CNT(c)++;
          }
        }
      } else {
        /* integers: bin each distinct value once (a lookup table over the
         * range) when the range is small, else value by value */
        const int *xv = INTEGER(x);
        int mn = INT_MAX, mx = INT_MIN;
        for (int i = 0; i < n; i++) {
          if (xv[i] == NA_INTEGER) continue;
          if (xv[i] < mn) mn = xv[i];
          if (xv[i] > mx) mx = xv[i];
        }
        if (mn <= mx && (double) mx - mn < 4.0 * n + 1024) {
          int span = mx - mn + 1;
          int *lut = (int *) R_alloc((size_t) span, sizeof(int));
          for (int v = 0; v < span; v++)
            lut[v] = K <= 8 ? bin_few((double) mn + v, b, K)
                            : bin_spaced((double) mn + v, b, K, inv_h);
          for (int i = 0; i < n; i++) {
            int c = xv[i] == NA_INTEGER ? K + 1 : lut[xv[i] - mn];
            ck[i] = c;
            CNT(c)++;
          }
        } else {
          for (int i = 0; i < n; i++) {
            int c = xv[i] == NA_INTEGER ? K + 1
                                        : bin_spaced((double) xv[i], b, K, inv_h);
            ck[i] = c;
            CNT(c)++;
          }
        }
      }
      cnt = fold_counts(cnt4, top);
      n_below[k] = cnt[0];
      n_above[k] = cnt[K];
    }
    codes_in_use(cnt, top, &n_values[k], &max_code[k]);
  }
  UNPROTECT(1);
  return out;
}

/* ffi_cem_moments(x)
 *   x: REALSXP or INTSXP (or LGLSXP) vector.
 * Returns a double vector c(n_finite, min, max, var) over the finite values
 * (var two-pass with a mean correction, as stats::var; NA when fewer than
 * two finite values; min/max NA when none) -- what the default breaks need
 * (nclass.Sturges, nclass.scott, the range) in one pass per moment. */
SEXP ffi_cem_moments(SEXP x) {
  sfp_check_cem_moments(x);
  int t = TYPEOF(x);
  R_xlen_t n = XLENGTH(x);
  R_xlen_t m = 0;
  double mn = R_PosInf, mx = R_NegInf, var = NA_REAL;
  double sum = 0.0; /* the second pass corrects the mean's rounding */
  if (t == REALSXP) {
    const double *xv = REAL(x);
    for (R_xlen_t i = 0; i < n; i++) {
      double v = xv[i];
      if (!isfinite(v)) continue;
      m++;
      sum += v;
      mn = v < mn ? v : mn;
      mx = v > mx ? v : mx;
    }
    if (m >= 2) {
      double mean = sum / (double) m, ss = 0.0, corr = 0.0;
      for (R_xlen_t i = 0; i < n; i++) {
        double v = xv[i];
        if (!isfinite(v)) continue;
        ss += (v - mean) * (v - mean);
        corr += v - mean;
      }
      var = (ss - corr * corr / m) / (m - 1);
    }
  } else {
    const int *xv = INTEGER(x);
    /* exact integer sums: |x| < 2^31 and n <= 2^32 keep sum x in int64;
     * sum x^2 is exact while |x| < 2^16 (x^2 < 2^32) and n < 2^31.  The
     * sums run in uint64_t, whose wrap-around is defined: the range checks
     * after the loop decide whether they are used (accumulating in int64_t
     * could overflow, undefined behaviour, before a check could reject it). */
    uint64_t usum = 0, usq = 0;
    int imn = INT_MAX, imx = INT_MIN;
    for (R_xlen_t i = 0; i < n; i++) {
      int v = xv[i];
      if (v == NA_INTEGER) continue;
      m++;
      usum += (uint64_t) (int64_t) v;
      usq += (uint64_t) ((int64_t) v * v);
      imn = v < imn ? v : imn;
      imx = v > imx ? v : imx;
    }
    if (m > 0) {
      mn = imn;
      mx = imx;
    }
    /* the wrapped sums are the exact sums when they cannot have wrapped */
    int exact_sum = n <= (R_xlen_t) UINT32_MAX;
    int exact_sq = exact_sum && m < INT_MAX && imn > -65536 && imx < 65536;
    double dsum = 0.0; /* n > 2^32 only: the mean from a plain sum */
    if (!exact_sum)
      for (R_xlen_t i = 0; i < n; i++)
        if (xv[i] != NA_INTEGER) dsum += xv[i];
    if (m >= 2 && exact_sq) {
      long double S1 = (long double) (int64_t) usum, S2 = (long double) usq;
      /* exact sums, one rounding */
      var = (double) ((S2 - S1 * S1 / m) / (m - 1));
    } else if (m >= 2) {
      /* two passes, as stats::var: the mean, then squared deviations */
      double mean = (exact_sum ? (double) (int64_t) usum : dsum) / (double) m,
             ss = 0.0, corr = 0.0;
      for (R_xlen_t i = 0; i < n; i++) {
        if (xv[i] == NA_INTEGER) continue;
        double d = xv[i] - mean;
        ss += d * d;
        corr += d;
      }
      var = (ss - corr * corr / m) / (m - 1);
    }
  }
  SEXP out = PROTECT(Rf_allocVector(REALSXP, 4));
  REAL(out)[0] = (double) m;
  REAL(out)[1] = m > 0 ? mn : NA_REAL;
  REAL(out)[2] = m > 0 ? mx : NA_REAL;
  REAL(out)[3] = var;
  UNPROTECT(1);
  return out;
}

/* ---- CEM strata and weights ---------------------------------------------- */

/* Counts per stratum, the matched flag per stratum, and the weights.
 *   stratum[i] in 1..S, group[i] in 1..G (exact group), treat[i] in {0, 1}.
 *   normalise: 0 = m_C / m_T over all matched units, 1 = within exact group.
 * Weight: 1 for a matched treated unit, (m_C / m_T) (t_s / c_s) for a matched
 * control in stratum s, 0 for an unmatched unit. */
static void cem_weights(int n, int S, int G, const int *stratum,
                        const int *group, const int *treat, int normalise,
                        int *n_t, int *n_c, int *s_group, double *w,
                        int *matched) {
  /* counts per stratum, arm-indexed (no branch on the arm) */
  int *cnt = (int *) R_alloc(2 * (size_t) (S > 0 ? S : 1), sizeof(int));
  memset(cnt, 0, 2 * (size_t) (S > 0 ? S : 1) * sizeof(int));
  for (int i = 0; i < n; i++) cnt[2 * (stratum[i] - 1) + treat[i]]++;
  for (int i = 0; i < n; i++) s_group[stratum[i] - 1] = group[i];
  for (int s = 0; s < S; s++) {
    n_c[s] = cnt[2 * s];
    n_t[s] = cnt[2 * s + 1];
  }
  int n_norm = normalise ? G : 1;
  double *m_t = (double *) R_alloc(n_norm > 0 ? n_norm : 1, sizeof(double));
  double *m_c = (double *) R_alloc(n_norm > 0 ? n_norm : 1, sizeof(double));
  for (int g = 0; g < n_norm; g++) m_t[g] = m_c[g] = 0.0;
  for (int s = 0; s < S; s++) {
    if (n_t[s] > 0 && n_c[s] > 0) {
      int g = normalise ? s_group[s] - 1 : 0;
      m_t[g] += n_t[s];
      m_c[g] += n_c[s];
    }
  }
  /* weight of a control and of a treated unit in each stratum */
  double *ws = (double *) R_alloc(2 * (size_t) (S > 0 ? S : 1), sizeof(double));
  int *ms = (int *) R_alloc(S > 0 ? S : 1, sizeof(int));
  for (int s = 0; s < S; s++) {
    ms[s] = n_t[s] > 0 && n_c[s] > 0;
    if (ms[s]) {
      int g = normalise ? s_group[s] - 1 : 0;
      ws[2 * s] = (m_c[g] / m_t[g]) * ((double) n_t[s] / (double) n_c[s]);
      ws[2 * s + 1] = 1.0;
    } else {
      ws[2 * s] = ws[2 * s + 1] = 0.0;
    }
  }
  for (int i = 0; i < n; i++) {
    int s = stratum[i] - 1;
    w[i] = ws[2 * s + treat[i]];
    matched[i] = ms[s];
  }
}

/* ffi_cem_strata(codes, treat, n_exact, normalise, maxes)
 *   codes:     VECSXP of p INTSXP columns of length n, one integer code per
 *              row and matching variable (from ffi_cem_codes()); equal codes
 *              mean equal coarsened values.
 *              The last n_exact columns are the exact-match variables.
 *   treat:     INTSXP length n, values 0 (control) or 1 (treated); R has
 *              checked this.
 *   n_exact:   INTSXP scalar, 0 <= n_exact <= p.
 *   normalise: INTSXP scalar, 0 = global m_C / m_T, 1 = within exact group.
 *   maxes:     INTSXP length p: column k holds codes in 0..maxes[k] (the
 *              max_code of ffi_cem_codes(), which made the codes; trusted).
 * Returns a named list: stratum (int n, 1..S), exact_group (int n, 1..G),
 * weight (double n), matched (logical n), stratum_treated, stratum_control,
 * stratum_group (int S each), exact_first (int G: 1-based first row of each
 * exact group), group_counts (int G x 6: treated, controls, matched treated,
 * matched controls, strata, matched strata of each exact group). */
SEXP ffi_cem_strata(SEXP codes, SEXP treat, SEXP n_exact, SEXP normalise,
                    SEXP maxes) {
  sfp_check_cem_strata(codes, treat, n_exact, normalise, maxes);
  int n = (int) XLENGTH(treat), p = (int) XLENGTH(codes);
  int ne = INTEGER(n_exact)[0];
  const int **cols = (const int **) R_alloc(p > 0 ? p : 1, sizeof(int *));
  for (int k = 0; k < p; k++) {
    SEXP ck = VECTOR_ELT(codes, k);
    cols[k] = INTEGER(ck);
  }
  const int *tr = INTEGER(treat);

  const char *names[] = {"stratum", "exact_group", "weight", "matched",
                         "stratum_treated", "stratum_control",
                         "stratum_group", "exact_first", "group_counts", ""};
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  SET_VECTOR_ELT(out, 0, Rf_allocVector(INTSXP, n));
  SET_VECTOR_ELT(out, 1, Rf_allocVector(INTSXP, n));
  SET_VECTOR_ELT(out, 2, Rf_allocVector(REALSXP, n));
  SET_VECTOR_ELT(out, 3, Rf_allocVector(LGLSXP, n));
  int *stratum = INTEGER(VECTOR_ELT(out, 0));
  int *group = INTEGER(VECTOR_ELT(out, 1));

  const int *mx = INTEGER(maxes);
  int *sfirst = NULL;
  int S = group_rows(cols, n, p, stratum, &sfirst, mx);
  /* Exact groups: the exact variables are part of every stratum's key, so a
   * stratum lies in one exact group; group the strata (their first rows),
   * not the rows. Strata are numbered in order of first appearance, so the
   * groups are too. */
  int G = 0;
  int *gfirst = (int *) R_alloc(S > 0 ? S : 1, sizeof(int)); /* as rows */
  int *sgroup = (int *) R_alloc(S > 0 ? S : 1, sizeof(int));
  if (ne > 0 && S > 0) {
    const int **ecols = (const int **) R_alloc(ne, sizeof(int *));
    for (int k = 0; k < ne; k++) {
      int *e = (int *) R_alloc(S, sizeof(int));
      const int *src = cols[p - ne + k];
      for (int s_ = 0; s_ < S; s_++) e[s_] = src[sfirst[s_]];
      ecols[k] = e;
    }
    int *gfs = NULL;
    G = group_rows(ecols, S, ne, sgroup, &gfs, mx + (p - ne));
    for (int g = 0; g < G; g++) gfirst[g] = sfirst[gfs[g]];
  } else if (S > 0) {
    G = 1;
    for (int s_ = 0; s_ < S; s_++) sgroup[s_] = 1;
    gfirst[0] = 0;
  }
  for (int i = 0; i < n; i++) group[i] = sgroup[stratum[i] - 1];

  SET_VECTOR_ELT(out, 4, Rf_allocVector(INTSXP, S));
  SET_VECTOR_ELT(out, 5, Rf_allocVector(INTSXP, S));
  SET_VECTOR_ELT(out, 6, Rf_allocVector(INTSXP, S));
  SET_VECTOR_ELT(out, 7, Rf_allocVector(INTSXP, G));
  for (int g = 0; g < G; g++) INTEGER(VECTOR_ELT(out, 7))[g] = gfirst[g] + 1;
  cem_weights(n, S, G, stratum, group, tr, INTEGER(normalise)[0] != 0,
              INTEGER(VECTOR_ELT(out, 4)), INTEGER(VECTOR_ELT(out, 5)),
              INTEGER(VECTOR_ELT(out, 6)), REAL(VECTOR_ELT(out, 2)),
              LOGICAL(VECTOR_ELT(out, 3)));
  /* per exact group: treated, controls, matched treated, matched controls,
   * strata, matched strata */
  SET_VECTOR_ELT(out, 8, Rf_allocMatrix(INTSXP, G, 6));
  int *gc = INTEGER(VECTOR_ELT(out, 8));
  memset(gc, 0, (size_t) G * 6 * sizeof(int));
  const int *st_t = INTEGER(VECTOR_ELT(out, 4)), *st_c = INTEGER(VECTOR_ELT(out, 5));
  const int *st_g = INTEGER(VECTOR_ELT(out, 6));
  for (int s = 0; s < S; s++) {
    int g = st_g[s] - 1, ms = st_t[s] > 0 && st_c[s] > 0;
    gc[g] += st_t[s];
    gc[g + G] += st_c[s];
    gc[g + 2 * G] += ms * st_t[s];
    gc[g + 3 * G] += ms * st_c[s];
    gc[g + 4 * G] += 1;
    gc[g + 5 * G] += ms;
  }
  UNPROTECT(1);
  return out;
}

/* ---- L1 imbalance --------------------------------------------------------- */

/* ffi_cem_l1(codes, treat, weights, values, want, maxes)
 *   codes:   VECSXP of p INTSXP columns of length n (binned values, one
 *            column per variable, built by ffi_cem_codes()); they index the
 *            margins.
 *   treat:   INTSXP length n, 0/1.
 *   weights: VECSXP of m weightings evaluated on one hashing of the cells
 *            (e.g. before and after matching): each NULL (every row weighs 1)
 *            or a REALSXP of length n, finite and >= 0 (R has checked). Rows with weight 0 are left out, as in the cem
 *            package.
 *   values:  VECSXP of length p; element k is NULL or the REALSXP, INTSXP or
 *            LGLSXP (length n) of numeric variable k, whose weighted means
 *            are wanted (over its finite values).
 *   want:    LGLSXP length p: TRUE for the columns whose margins are wanted.
 *   maxes:   INTSXP length p: column k holds codes in 0..maxes[k] (the
 *            max_code of ffi_cem_codes(), which made the codes; trusted).
 * For weighting j, L1 = 1/2 sum over cells of |f - g|, with f (g) the
 * treated (control) weight of the cell over the total treated (control)
 * weight. Returns a named list:
 *   L1, LCS (percent of the occupied cells holding both groups), n_cells
 *   (occupied cells), n_cells_both: double vectors of length m (L1 and LCS
 *   NA when a group has zero total weight);
 *   margins: a list of p double matrices (NULL where not wanted),
 *   (max code + 1) x 2m, row c + 1
 *   holding for code c the treated and control weight sums of weighting j in
 *   columns 2j - 1 and 2j (the one-variable tables: univariate L1 and the
 *   shares of each level);
 *   sums: a p x 4m double matrix, for numeric variable k and weighting j
 *   the weighted sums over rows with a finite value, columns 4j + 1..4j + 4:
 *   sum w x (treated), sum w (treated), sum w x (control), sum w (control);
 *   0 for the other variables;
 *   n_positive: a 2 x m integer matrix, rows with positive weight (control,
 *   treated) under each weighting. */
SEXP ffi_cem_l1(SEXP codes, SEXP treat, SEXP weights, SEXP values,
                SEXP want, SEXP maxes) {
  sfp_check_cem_l1(codes, treat, weights, values, want, maxes);
  int n = (int) XLENGTH(treat), p = (int) XLENGTH(codes);
  int m = (int) XLENGTH(weights);
  const int *want_mg = LOGICAL(want);
  const int **cols = (const int **) R_alloc(p > 0 ? p : 1, sizeof(int *));
  for (int k = 0; k < p; k++) {
    SEXP ck = VECTOR_ELT(codes, k);
    cols[k] = INTEGER(ck);
  }
  const int *tr = INTEGER(treat);
  const int *maxc = INTEGER(maxes);

  int *cell = (int *) R_alloc(n > 0 ? n : 1, sizeof(int));
  int C = group_rows(cols, n, p, cell, NULL, maxc);
  int Cs = C > 0 ? C : 1;
  /* one record per cell, so a row touches one cache line */
  typedef struct {
    double f[2]; /* control, treated weight */
    int n[2];    /* control, treated rows with positive weight */
  } cell_sum;

  const char *names[] = {"L1", "LCS", "n_cells", "n_cells_both", "margins",
                         "sums", "n_positive", ""};
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  for (int k = 0; k < 4; k++) SET_VECTOR_ELT(out, k, Rf_allocVector(REALSXP, m));
  SET_VECTOR_ELT(out, 4, Rf_allocVector(VECSXP, p));
  SEXP margins = VECTOR_ELT(out, 4);
  SET_VECTOR_ELT(out, 5, Rf_allocMatrix(REALSXP, p, 4 * m));
  double *sums = REAL(VECTOR_ELT(out, 5));
  SET_VECTOR_ELT(out, 6, Rf_allocMatrix(INTSXP, 2, m));
  for (R_xlen_t r = 0; r < (R_xlen_t) p * 4 * m; r++) sums[r] = 0.0;
  for (int k = 0; k < p; k++) {
    if (!want_mg[k]) continue;
    SET_VECTOR_ELT(margins, k, Rf_allocMatrix(REALSXP, maxc[k] + 1, 2 * m));
    double *mg = REAL(VECTOR_ELT(margins, k));
    for (R_xlen_t r = 0; r < (R_xlen_t) (maxc[k] + 1) * 2 * m; r++) mg[r] = 0.0;
  }

  /* One pass over the rows per table, all m weightings at once (NULL
   * weights: every row weighs 1, no vector of ones is allocated).  The loops
   * are branch-free in the arm (tr[i] indexes arrays or multiplies): the arms
   * are interleaved at random, so branches on them would mispredict. */
  const double **wp = (const double **) R_alloc(m > 0 ? m : 1, sizeof(double *));
  for (int j = 0; j < m; j++) {
    SEXP wsx = VECTOR_ELT(weights, j);
    wp[j] = wsx == R_NilValue ? NULL : REAL(wsx);
  }
#define W_(j, i) (wp[j] == NULL ? 1.0 : wp[j][i])
  cell_sum *csm = (cell_sum *) R_alloc((size_t) Cs * (m > 0 ? m : 1),
                                       sizeof(cell_sum));
  memset(csm, 0, (size_t) Cs * (m > 0 ? m : 1) * sizeof(cell_sum));
  double *tot = (double *) R_alloc(2 * (size_t) (m > 0 ? m : 1), sizeof(double));
  int *npos = (int *) R_alloc(2 * (size_t) (m > 0 ? m : 1), sizeof(int));
  for (int j = 0; j < 2 * m; j++) {
    tot[j] = 0.0;
    npos[j] = 0;
  }
  for (int i = 0; i < n; i++) {
    int a = tr[i];
    cell_sum *cc = csm + (size_t) (cell[i] - 1) * m;
    for (int j = 0; j < m; j++) {
      double wi = W_(j, i);
      int pos = wi > 0.0;
      cc[j].f[a] += wi;
      cc[j].n[a] += pos;
      tot[2 * j + a] += wi;
      npos[2 * j + a] += pos;
    }
  }
  for (int k = 0; k < p; k++) {
    const int *xk = cols[k];
    int rows = maxc[k] + 1;
    if (want_mg[k]) {
      /* weighting j: treated in column 2j, control in column 2j + 1 */
      double *mg = REAL(VECTOR_ELT(margins, k));
      for (int i = 0; i < n; i++) {
        int r = xk[i] + (1 - tr[i]) * rows;
        for (int j = 0; j < m; j++) mg[r + (R_xlen_t) 2 * j * rows] += W_(j, i);
      }
    }
    SEXP v = VECTOR_ELT(values, k);
    if (v == R_NilValue) continue;
    /* the arm selects by multiplying by 0/1 (exact) */
    for (int j = 0; j < m; j++) {
      double s1 = 0.0, s0 = 0.0, w1 = 0.0, w0 = 0.0;
      if (TYPEOF(v) == REALSXP) {
        const double *xr = REAL(v);
        for (int i = 0; i < n; i++) {
          if (!isfinite(xr[i])) continue;
          double t = tr[i], wi = W_(j, i), wx = wi * xr[i];
          s1 += t * wx;
          s0 += wx - t * wx;
          w1 += t * wi;
          w0 += wi - t * wi;
        }
      } else {
        const int *xi = INTEGER(v);
        for (int i = 0; i < n; i++) {
          if (xi[i] == NA_INTEGER) continue;
          double t = tr[i], wi = W_(j, i), wx = wi * (double) xi[i];
          s1 += t * wx;
          s0 += wx - t * wx;
          w1 += t * wi;
          w0 += wi - t * wi;
        }
      }
      sums[k + (R_xlen_t) p * (4 * j + 0)] = s1;
      sums[k + (R_xlen_t) p * (4 * j + 1)] = w1;
      sums[k + (R_xlen_t) p * (4 * j + 2)] = s0;
      sums[k + (R_xlen_t) p * (4 * j + 3)] = w0;
    }
  }
#undef W_
  for (int j = 0; j < m; j++) {
    INTEGER(VECTOR_ELT(out, 6))[2 * j] = npos[2 * j];
    INTEGER(VECTOR_ELT(out, 6))[2 * j + 1] = npos[2 * j + 1];
    double tot_t = tot[2 * j + 1], tot_c = tot[2 * j];
    int occupied = 0, both = 0;
    double l1 = 0.0;
    int ok = tot_t > 0.0 && tot_c > 0.0;
    for (int c = 0; c < C; c++) {
      const cell_sum *cc = csm + (size_t) c * m + j;
      if (cc->n[0] + cc->n[1] == 0) continue;
      occupied++;
      if (cc->n[0] > 0 && cc->n[1] > 0) both++;
      if (ok) l1 += fabs(cc->f[1] / tot_t - cc->f[0] / tot_c);
    }
    REAL(VECTOR_ELT(out, 0))[j] = ok ? l1 / 2.0 : NA_REAL;
    REAL(VECTOR_ELT(out, 1))[j] =
      ok && occupied > 0 ? 100.0 * (double) both / (double) occupied : NA_REAL;
    REAL(VECTOR_ELT(out, 2))[j] = (double) occupied;
    REAL(VECTOR_ELT(out, 3))[j] = (double) both;
  }
  UNPROTECT(1);
  return out;
}
