/* intervals.c: interval work on integer day numbers for the cohort builder.
 *
 * Every entry point works on one table of records (referrals, plans, care
 * episodes) sorted by child and then by start day, plus an index vector
 * `offsets` of length n + 1: the rows of child i are offsets[i] ..
 * offsets[i + 1] - 1 (0-based).  The R side (R/cohort.R) builds the sort
 * order and the offsets with order()/tabulate(); C trusts them after a cheap
 * check and never allocates per child.  Day numbers are days since
 * 1970-01-01 (as.integer(Date)); NA_INTEGER in an end column means "still
 * open".  Windows are given per child; an NA window bound yields NA (or -1
 * for row indices).
 */
#include "sfpceval.h"
#include <limits.h>

#define OPEN_END INT_MAX

/* Check the index vector: length n + 1, starts at 0, non-decreasing, ends at
 * the table length.  Internal misuse only: the classed error of checks.c. */
static void check_offsets(SEXP offsets, R_xlen_t n, R_xlen_t nrow,
                          const char *fn) {
  sfp_offsets(offsets, n, nrow, fn, "offsets");
}

static void check_int(SEXP x, R_xlen_t len, const char *what, const char *fn) {
  sfp_int(x, len, fn, what);
}

/* The arguments most entry points share: one table's start (and end) days
 * with its offsets, and one window [lo, hi] per child, checked and unpacked.
 * `end` may be R_NilValue (then e is NULL). */
typedef struct {
  R_xlen_t n, nrow;
  const int *s, *e, *o, *lo, *hi;
} child_windows;

static child_windows windows_arg(SEXP start, SEXP end, SEXP offsets,
                                 SEXP win_lo, SEXP win_hi, const char *fn) {
  child_windows w;
  w.nrow = Rf_xlength(start);
  w.n = Rf_xlength(win_lo);
  check_int(start, w.nrow, "start", fn);
  if (end != R_NilValue) check_int(end, w.nrow, "end", fn);
  check_int(win_lo, w.n, "win_lo", fn);
  check_int(win_hi, w.n, "win_hi", fn);
  check_offsets(offsets, w.n, w.nrow, fn);
  w.s = INTEGER_RO(start);
  w.e = end == R_NilValue ? NULL : INTEGER_RO(end);
  w.o = INTEGER_RO(offsets);
  w.lo = INTEGER_RO(win_lo);
  w.hi = INTEGER_RO(win_hi);
  return w;
}

/* The result for child i (its window bounds are not NA); `extra` carries
 * what one entry point needs besides the windows. */
typedef int (*child_kernel)(const child_windows *w, R_xlen_t i,
                            const void *extra);

/* An integer vector of length n: kernel() per child, `na_window` where a
 * window bound is NA. */
static SEXP map_children(const child_windows *w, child_kernel kernel,
                         int na_window, const void *extra) {
  SEXP out = PROTECT(Rf_allocVector(INTSXP, w->n));
  int *po = INTEGER(out);
  for (R_xlen_t i = 0; i < w->n; i++) {
    if ((i & 0xFFFF) == 0xFFFF) R_CheckUserInterrupt();
    po[i] = (w->lo[i] == NA_INTEGER || w->hi[i] == NA_INTEGER)
              ? na_window : kernel(w, i, extra);
  }
  UNPROTECT(1);
  return out;
}

/* ---- union of intervals inside a window ------------------------------ */

/* Days covered by the union of the half-open intervals [s, e) of rows
 * lo..hi-1 (sorted by s), clipped to the half-open window [wlo, whi). */
static int union_days_one(const int *s, const int *e, int from, int to,
                          int wlo, int whi) {
  long long total = 0;
  int cur_a = 0, cur_b = 0, have = 0;
  for (int r = from; r < to; r++) {
    int a = s[r], b = (e[r] == NA_INTEGER) ? OPEN_END : e[r];
    if (a == NA_INTEGER) continue;
    if (a < wlo) a = wlo;
    if (b > whi) b = whi;
    if (b <= a) continue;
    if (!have) {
      cur_a = a; cur_b = b; have = 1;
    } else if (a > cur_b) {
      total += (long long) cur_b - cur_a;
      cur_a = a; cur_b = b;
    } else if (b > cur_b) {
      cur_b = b;
    }
  }
  if (have) total += (long long) cur_b - cur_a;
  return (int) total;
}

/* ffi_union_days(start, end, offsets, win_lo, win_hi)
 *   start, end: integer day numbers of one table sorted by child then start;
 *               end NA = open.  Each row is the half-open interval
 *               [start, end): the end day is not counted (CIN convention:
 *               duration = end - start).
 *   offsets:    integer, length n + 1 (see top of file).
 *   win_lo, win_hi: integer, length n; the half-open window [lo, hi).
 * Returns an integer vector of length n: days in the window covered by at
 * least one interval (overlaps merged), NA where a window bound is NA. */
static int union_days_kernel(const child_windows *w, R_xlen_t i,
                             const void *extra) {
  (void) extra;
  return union_days_one(w->s, w->e, w->o[i], w->o[i + 1], w->lo[i], w->hi[i]);
}

SEXP ffi_union_days(SEXP start, SEXP end, SEXP offsets, SEXP win_lo,
                    SEXP win_hi) {
  sfp_check_vec(end, INTSXP, -1, "ffi_union_days", "end"); /* NULL would mean no end */
  child_windows w = windows_arg(start, end, offsets, win_lo, win_hi,
                                "ffi_union_days");
  return map_children(&w, union_days_kernel, NA_INTEGER, NULL);
}

/* ---- first record starting inside a window ---------------------------- */

/* ffi_first_in_range(start, offsets, win_lo, win_hi)
 *   start:   integer day numbers sorted by child then start.
 *   offsets: integer, length n + 1.
 *   win_lo, win_hi: integer, length n; the closed window [lo, hi].
 * Returns an integer vector of length n: the 0-based row of the child's first
 * record with lo <= start <= hi, or -1 if there is none (or a bound is NA).
 * With win_hi = .Machine$integer.max this is "first record on or after lo". */
static int first_in_range_kernel(const child_windows *w, R_xlen_t i,
                                 const void *extra) {
  (void) extra;
  for (int r = w->o[i]; r < w->o[i + 1]; r++) {
    if (w->s[r] == NA_INTEGER || w->s[r] < w->lo[i]) continue;
    return w->s[r] <= w->hi[i] ? r : -1; /* sorted: the first start >= lo decides */
  }
  return -1;
}

SEXP ffi_first_in_range(SEXP start, SEXP offsets, SEXP win_lo, SEXP win_hi) {
  child_windows w = windows_arg(start, R_NilValue, offsets, win_lo, win_hi,
                                "ffi_first_in_range");
  return map_children(&w, first_in_range_kernel, -1, NULL);
}

/* ---- first record overlapping a window -------------------------------- */

/* ffi_first_overlap(start, end, offsets, win_lo, win_hi)
 *   start, end: integer day numbers sorted by child then start; end NA =
 *               open.  Each row is the closed interval [start, end] (a care
 *               episode: the child is looked after on both days).
 *   offsets:    integer, length n + 1.
 *   win_lo, win_hi: integer, length n; the closed window [lo, hi].
 * Returns an integer vector of length n: the 0-based row of the child's first
 * record (in start order) with start <= hi and (end NA or end >= lo), or -1. */
static int first_overlap_kernel(const child_windows *w, R_xlen_t i,
                                const void *extra) {
  (void) extra;
  for (int r = w->o[i]; r < w->o[i + 1]; r++) {
    if (w->s[r] == NA_INTEGER) continue;
    if (w->s[r] > w->hi[i]) break;
    if (w->e[r] == NA_INTEGER || w->e[r] >= w->lo[i]) return r;
  }
  return -1;
}

SEXP ffi_first_overlap(SEXP start, SEXP end, SEXP offsets, SEXP win_lo,
                       SEXP win_hi) {
  sfp_check_vec(end, INTSXP, -1, "ffi_first_overlap", "end"); /* NULL would mean no end */
  child_windows w = windows_arg(start, end, offsets, win_lo, win_hi,
                                "ffi_first_overlap");
  return map_children(&w, first_overlap_kernel, -1, NULL);
}

/* ---- return to statutory services after a plan ends ------------------- */

/* ffi_plan_return(start, end, offsets, cla_start, cla_offsets, win_lo, win_hi)
 *   start, end:  integer day numbers of CPP and CIN plans together, sorted by
 *                child then start; end NA = open.  Plans are half-open
 *                [start, end); plans that overlap or touch (a plan starting
 *                on the day another ends) are merged into one spell, so a
 *                step up from CIN plan to CPP is not a return.
 *   offsets:     integer, length n + 1, rows of each child in the plans.
 *   cla_start:   integer day numbers of care episode starts sorted by child
 *                then day; cla_offsets their index vector (length n + 1).
 *   win_lo, win_hi: integer, length n; the closed window [lo, hi] (referral
 *                day, referral + 36 months).
 * Returns an integer vector of length n: 1 if a merged spell of plans ends
 * on a day E with lo <= E <= hi and afterwards (a new plan starting on or
 * before hi, or a care episode starting in [E, hi]) the child returns to
 * statutory services; 0 otherwise; NA where a bound is NA. */
typedef struct {
  const int *cs, *co; /* care episode starts and their offsets */
} care_starts;

static int plan_return_kernel(const child_windows *w, R_xlen_t i,
                              const void *extra) {
  const care_starts *cla = (const care_starts *) extra;
  const int *s = w->s, *e = w->e, lo = w->lo[i], hi = w->hi[i];
  /* Walk the merged spells; find the first closed spell ending in [lo, hi]. */
  int have = 0, cur_b = 0, ended = 0, spell_end = 0, next_start = OPEN_END;
  for (int r = w->o[i]; r < w->o[i + 1]; r++) {
    int a = s[r], b = (e[r] == NA_INTEGER) ? OPEN_END : e[r];
    if (a == NA_INTEGER) continue;
    if (b < a) b = a;
    if (!have) {
      cur_b = b; have = 1;
    } else if (a > cur_b) {
      /* the spell ending at cur_b is closed */
      if (cur_b != OPEN_END && cur_b >= lo && cur_b <= hi) {
        ended = 1; spell_end = cur_b; next_start = a;
        break;
      }
      if (cur_b > hi) break;
      cur_b = b;
    } else if (b > cur_b) {
      cur_b = b;
    }
  }
  if (!ended && have && cur_b != OPEN_END && cur_b >= lo && cur_b <= hi) {
    ended = 1; spell_end = cur_b; next_start = OPEN_END;
  }
  if (!ended) return 0;
  if (next_start <= hi) return 1;
  for (int r = cla->co[i]; r < cla->co[i + 1]; r++) {
    if (cla->cs[r] == NA_INTEGER || cla->cs[r] < spell_end) continue;
    return cla->cs[r] <= hi;
  }
  return 0;
}

SEXP ffi_plan_return(SEXP start, SEXP end, SEXP offsets, SEXP cla_start,
                     SEXP cla_offsets, SEXP win_lo, SEXP win_hi) {
  sfp_check_vec(end, INTSXP, -1, "ffi_plan_return", "end"); /* NULL would mean no end */
  child_windows w = windows_arg(start, end, offsets, win_lo, win_hi,
                                "ffi_plan_return");
  R_xlen_t ncla = Rf_xlength(cla_start);
  check_int(cla_start, ncla, "cla_start", "ffi_plan_return");
  check_offsets(cla_offsets, w.n, ncla, "ffi_plan_return");
  care_starts cla = {INTEGER_RO(cla_start), INTEGER_RO(cla_offsets)};
  return map_children(&w, plan_return_kernel, NA_INTEGER, &cla);
}

/* ---- school terms after the referral ---------------------------------- */

/* ffi_term_sums(child, year, term, ord0, k, possible, unauth)
 *   child:    integer, one per absence record: the 1-based cohort child, NA
 *             for records of children outside the cohort.
 *   year:     integer, the academic year's first calendar year (NA allowed).
 *   term:     integer 1 autumn, 2 spring, 3 summer (Summer6th already mapped
 *             to 3), NA allowed.
 *   ord0:     integer, length n: ordinal 3 * year + (term - 1) of each
 *             child's first term starting after the referral.
 *   k:        integer scalar, terms kept per child (1..3).
 *   possible, unauth: integer sessions of each record (NA allowed).
 * Records are matched to the child's term index i = ordinal - ord0 + 1 and
 * summed per child and index.  Returns a list of three vectors of length
 * n * k, child-major (cell (c, i) at (c - 1) * k + i - 1): `present`
 * (integer count of records), `possible`, `unauth` (double sums, NA if any
 * summed value is NA). */
SEXP ffi_term_sums(SEXP child, SEXP year, SEXP term, SEXP ord0, SEXP k,
                   SEXP possible, SEXP unauth) {
  R_xlen_t m = Rf_xlength(child), n = Rf_xlength(ord0);
  check_int(child, m, "child", "ffi_term_sums");
  check_int(year, m, "year", "ffi_term_sums");
  check_int(term, m, "term", "ffi_term_sums");
  check_int(possible, m, "possible", "ffi_term_sums");
  check_int(unauth, m, "unauth", "ffi_term_sums");
  check_int(ord0, n, "ord0", "ffi_term_sums");
  sfp_int1(k, 1, 3, "ffi_term_sums", "k");
  sfp_int(k, 1, "ffi_term_sums", "k");
  int kk = INTEGER_RO(k)[0];
  const int *ch = INTEGER_RO(child), *y = INTEGER_RO(year), *t = INTEGER_RO(term),
            *o0 = INTEGER_RO(ord0), *ps = INTEGER_RO(possible),
            *un = INTEGER_RO(unauth);
  R_xlen_t cells = n * kk;
  SEXP out = PROTECT(Rf_allocVector(VECSXP, 3));
  SET_VECTOR_ELT(out, 0, Rf_allocVector(INTSXP, cells));
  SET_VECTOR_ELT(out, 1, Rf_allocVector(REALSXP, cells));
  SET_VECTOR_ELT(out, 2, Rf_allocVector(REALSXP, cells));
  int *pr = INTEGER(VECTOR_ELT(out, 0));
  double *sp = REAL(VECTOR_ELT(out, 1)), *su = REAL(VECTOR_ELT(out, 2));
  for (R_xlen_t c = 0; c < cells; c++) {
    pr[c] = 0;
    sp[c] = 0.0;
    su[c] = 0.0;
  }
  for (R_xlen_t r = 0; r < m; r++) {
    if ((r & 0xFFFF) == 0xFFFF) R_CheckUserInterrupt();
    int c = ch[r];
    if (c == NA_INTEGER || c < 1 || c > n || y[r] == NA_INTEGER ||
        t[r] == NA_INTEGER || o0[c - 1] == NA_INTEGER)
      continue;
    long long idx = 3LL * y[r] + (t[r] - 1) - o0[c - 1] + 1;
    if (idx < 1 || idx > kk) continue;
    R_xlen_t cell = (R_xlen_t) (c - 1) * kk + (R_xlen_t) (idx - 1);
    pr[cell]++;
    sp[cell] = (ps[r] == NA_INTEGER) ? NA_REAL : sp[cell] + ps[r];
    su[cell] = (un[r] == NA_INTEGER) ? NA_REAL : su[cell] + un[r];
  }
  UNPROTECT(1);
  return out;
}
