/* cem.c: coarsened exact matching strata, weights and the L1 imbalance.
 *
 * R (R/cem.R) coarsens every variable and hands over one integer code per
 * row and variable (a column-major n x p matrix).  Here the rows are grouped
 * by their whole code vector in one pass with an open-addressing hash table
 * keyed on a 64-bit mix of the codes; collisions are resolved exactly by
 * comparing the codes.  Group ids are 1-based and numbered in order of first
 * appearance, so they do not depend on how the codes were chosen.
 */
#include "sfpceval.h"
#include <math.h>
#include <stdint.h>

/* ---- hashing ------------------------------------------------------------ */

/* splitmix64 finaliser: a bijective, well-mixing map of 64-bit words. */
static inline uint64_t mix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ULL;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z;
}

static inline uint64_t row_key(const int *codes, int n, int p, int i) {
  uint64_t h = 0x9e3779b97f4a7c15ULL;
  for (int k = 0; k < p; k++) {
    h = mix64(h ^ ((uint64_t) (uint32_t) codes[i + (R_xlen_t) k * n] +
                   0x9e3779b97f4a7c15ULL * (uint64_t) (k + 1)));
  }
  return h;
}

static inline int rows_equal(const int *codes, int n, int p, int i, int j) {
  for (int k = 0; k < p; k++) {
    R_xlen_t off = (R_xlen_t) k * n;
    if (codes[i + off] != codes[j + off]) return 0;
  }
  return 1;
}

/* Group the n rows of the column-major n x p integer matrix `codes` by their
 * code vectors.  Writes id[i] in 1..G (order of first appearance) and
 * first[g] = 0-based row of the first member of group g (first has room for n
 * entries).  Returns G.  With p == 0 every row is in group 1.  Scratch comes
 * from R_alloc, so an interrupt leaks nothing. */
static int group_rows(const int *codes, int n, int p, int *id, int *first) {
  if (n == 0) return 0;
  if (p == 0) {
    for (int i = 0; i < n; i++) id[i] = 1;
    first[0] = 0;
    return 1;
  }
  size_t size = 16;
  while (size < 2 * (size_t) n) size <<= 1;
  size_t mask = size - 1;
  int *table = (int *) R_alloc(size, sizeof(int)); /* group + 1, 0 = empty */
  uint64_t *keys = (uint64_t *) R_alloc(n, sizeof(uint64_t));
  for (size_t s = 0; s < size; s++) table[s] = 0;

  int n_groups = 0;
  for (int i = 0; i < n; i++) {
    if ((i & 65535) == 65535) R_CheckUserInterrupt();
    uint64_t key = row_key(codes, n, p, i);
    size_t slot = (size_t) (key & mask);
    for (;;) {
      int g = table[slot];
      if (g == 0) {
        keys[n_groups] = key;
        first[n_groups] = i;
        table[slot] = ++n_groups;
        id[i] = n_groups;
        break;
      }
      if (keys[g - 1] == key && rows_equal(codes, n, p, first[g - 1], i)) {
        id[i] = g;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  return n_groups;
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
  for (int s = 0; s < S; s++) n_t[s] = n_c[s] = 0;
  for (int i = 0; i < n; i++) {
    int s = stratum[i] - 1;
    if (treat[i]) n_t[s]++; else n_c[s]++;
    s_group[s] = group[i];
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
  for (int i = 0; i < n; i++) {
    int s = stratum[i] - 1;
    if (n_t[s] > 0 && n_c[s] > 0) {
      matched[i] = 1;
      if (treat[i]) {
        w[i] = 1.0;
      } else {
        int g = normalise ? s_group[s] - 1 : 0;
        w[i] = (m_c[g] / m_t[g]) * ((double) n_t[s] / (double) n_c[s]);
      }
    } else {
      matched[i] = 0;
      w[i] = 0.0;
    }
  }
}

/* ffi_cem_strata(codes, treat, n_exact, normalise)
 *   codes:     INTSXP matrix, n x p (column-major), one integer code per row
 *              and matching variable; any int values (NA_INTEGER included)
 *              are fine, equal codes mean equal coarsened values.  The last
 *              n_exact columns are the exact-match variables.
 *   treat:     INTSXP length n, values 0 (control) or 1 (treated); R has
 *              checked this.
 *   n_exact:   INTSXP scalar, 0 <= n_exact <= p.
 *   normalise: INTSXP scalar, 0 = global m_C / m_T, 1 = within exact group.
 * Returns a named list: stratum (int n, 1..S), exact_group (int n, 1..G),
 * weight (double n), matched (logical n), stratum_treated, stratum_control,
 * stratum_group (int S each). */
SEXP ffi_cem_strata(SEXP codes, SEXP treat, SEXP n_exact, SEXP normalise) {
  if (TYPEOF(codes) != INTSXP || TYPEOF(treat) != INTSXP ||
      TYPEOF(n_exact) != INTSXP || TYPEOF(normalise) != INTSXP ||
      XLENGTH(n_exact) != 1 || XLENGTH(normalise) != 1)
    Rf_error("internal error in ffi_cem_strata(): bad argument types");
  SEXP dim = Rf_getAttrib(codes, R_DimSymbol);
  if (TYPEOF(dim) != INTSXP || XLENGTH(dim) != 2)
    Rf_error("internal error in ffi_cem_strata(): `codes` must be a matrix");
  int n = INTEGER(dim)[0], p = INTEGER(dim)[1];
  int ne = INTEGER(n_exact)[0];
  if (XLENGTH(treat) != n || ne < 0 || ne > p)
    Rf_error("internal error in ffi_cem_strata(): inconsistent sizes");
  const int *x = INTEGER(codes);
  const int *tr = INTEGER(treat);
  for (int i = 0; i < n; i++) {
    if (tr[i] != 0 && tr[i] != 1)
      Rf_error("internal error in ffi_cem_strata(): `treat` must be 0/1");
  }

  int *first = (int *) R_alloc(n > 0 ? n : 1, sizeof(int));
  int *gfirst = (int *) R_alloc(n > 0 ? n : 1, sizeof(int));

  const char *names[] = {"stratum", "exact_group", "weight", "matched",
                         "stratum_treated", "stratum_control",
                         "stratum_group", ""};
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  SET_VECTOR_ELT(out, 0, Rf_allocVector(INTSXP, n));
  SET_VECTOR_ELT(out, 1, Rf_allocVector(INTSXP, n));
  SET_VECTOR_ELT(out, 2, Rf_allocVector(REALSXP, n));
  SET_VECTOR_ELT(out, 3, Rf_allocVector(LGLSXP, n));
  int *stratum = INTEGER(VECTOR_ELT(out, 0));
  int *group = INTEGER(VECTOR_ELT(out, 1));

  int S = group_rows(x, n, p, stratum, first);
  int G = group_rows(x + (R_xlen_t) (p - ne) * n, n, ne, group, gfirst);

  SET_VECTOR_ELT(out, 4, Rf_allocVector(INTSXP, S));
  SET_VECTOR_ELT(out, 5, Rf_allocVector(INTSXP, S));
  SET_VECTOR_ELT(out, 6, Rf_allocVector(INTSXP, S));
  cem_weights(n, S, G, stratum, group, tr, INTEGER(normalise)[0] != 0,
              INTEGER(VECTOR_ELT(out, 4)), INTEGER(VECTOR_ELT(out, 5)),
              INTEGER(VECTOR_ELT(out, 6)), REAL(VECTOR_ELT(out, 2)),
              LOGICAL(VECTOR_ELT(out, 3)));
  UNPROTECT(1);
  return out;
}

/* ---- L1 imbalance --------------------------------------------------------- */

/* ffi_cem_l1(codes, treat, weight)
 *   codes:  INTSXP matrix n x p of binned values (one column per variable).
 *   treat:  INTSXP length n, 0/1.
 *   weight: REALSXP length n, finite and >= 0 (R has checked); rows with
 *           weight 0 are left out, as in the cem package.
 * L1 = 1/2 sum over cells of |f - g|, f (g) the treated (control) weight in
 * the cell over the total treated (control) weight.  Returns a named double
 * vector: L1, LCS (percent of the occupied cells holding both groups),
 * n_cells (occupied cells), n_cells_both.  L1 and LCS are NA when either
 * group has zero total weight. */
SEXP ffi_cem_l1(SEXP codes, SEXP treat, SEXP weight) {
  if (TYPEOF(codes) != INTSXP || TYPEOF(treat) != INTSXP ||
      TYPEOF(weight) != REALSXP)
    Rf_error("internal error in ffi_cem_l1(): bad argument types");
  SEXP dim = Rf_getAttrib(codes, R_DimSymbol);
  if (TYPEOF(dim) != INTSXP || XLENGTH(dim) != 2)
    Rf_error("internal error in ffi_cem_l1(): `codes` must be a matrix");
  int n = INTEGER(dim)[0], p = INTEGER(dim)[1];
  if (XLENGTH(treat) != n || XLENGTH(weight) != n)
    Rf_error("internal error in ffi_cem_l1(): inconsistent sizes");
  const int *x = INTEGER(codes);
  const int *tr = INTEGER(treat);
  const double *w = REAL(weight);

  int *cell = (int *) R_alloc(n > 0 ? n : 1, sizeof(int));
  int *first = (int *) R_alloc(n > 0 ? n : 1, sizeof(int));
  int C = group_rows(x, n, p, cell, first);
  double *ft = (double *) R_alloc(C > 0 ? C : 1, sizeof(double));
  double *fc = (double *) R_alloc(C > 0 ? C : 1, sizeof(double));
  int *nt = (int *) R_alloc(C > 0 ? C : 1, sizeof(int));
  int *nc = (int *) R_alloc(C > 0 ? C : 1, sizeof(int));
  for (int c = 0; c < C; c++) {
    ft[c] = fc[c] = 0.0;
    nt[c] = nc[c] = 0;
  }
  double tot_t = 0.0, tot_c = 0.0;
  for (int i = 0; i < n; i++) {
    if (!(w[i] > 0.0)) continue;
    int c = cell[i] - 1;
    if (tr[i]) {
      ft[c] += w[i];
      nt[c]++;
      tot_t += w[i];
    } else {
      fc[c] += w[i];
      nc[c]++;
      tot_c += w[i];
    }
  }
  int occupied = 0, both = 0;
  double l1 = 0.0;
  for (int c = 0; c < C; c++) {
    if (nt[c] + nc[c] == 0) continue;
    occupied++;
    if (nt[c] > 0 && nc[c] > 0) both++;
    if (tot_t > 0.0 && tot_c > 0.0) l1 += fabs(ft[c] / tot_t - fc[c] / tot_c);
  }
  const char *names[] = {"L1", "LCS", "n_cells", "n_cells_both", ""};
  SEXP out = PROTECT(Rf_allocVector(REALSXP, 4));
  SEXP nms = PROTECT(Rf_allocVector(STRSXP, 4));
  for (int k = 0; k < 4; k++) SET_STRING_ELT(nms, k, Rf_mkChar(names[k]));
  Rf_setAttrib(out, R_NamesSymbol, nms);
  double *o = REAL(out);
  int ok = tot_t > 0.0 && tot_c > 0.0;
  o[0] = ok ? l1 / 2.0 : NA_REAL;
  o[1] = ok ? 100.0 * (double) both / (double) occupied : NA_REAL;
  o[2] = (double) occupied;
  o[3] = (double) both;
  UNPROTECT(2);
  return out;
}
