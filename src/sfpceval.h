/* sfpceval.h: the one shared header of the C core.
 *
 * Every .Call entry point (ffi_*) is declared here, grouped by topic, and
 * registered in init.c.  Everything else in a .c file is static, except the
 * shared validators of checks.c declared below.
 *
 * Threads: none.  The package is built without OpenMP and every kernel runs
 * on R's main thread; several kernels call the R API (R_alloc scratch,
 * R_CheckUserInterrupt, R's random numbers), so none may be moved into a
 * thread without first removing those calls.
 *
 * Validation: every entry point checks, at its top and in O(n), what it
 * indexes with, using the sfp_* validators (checks.c); a failed check raises
 * an R condition of class "sfpceval_internal_error" naming the entry point
 * and the argument.
 */
#ifndef SFPCEVAL_H
#define SFPCEVAL_H

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>
#include <R_ext/Utils.h>
#include <R_ext/Visibility.h>
#include <math.h>
#include <stdint.h>

/* splitmix64 finaliser: a bijective, well-mixing map of 64-bit words, for
 * the hash tables of rowgroup.c. */
static inline uint64_t mix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ULL;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z;
}

/* log(1 + e^x) and the logistic function without overflow, for the
 * binomial GLMMs (glmm.c, glmm_nested.c). */
static inline double sfp_log1pexp(double x) {
  return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static inline double sfp_plogis(double x) {
  if (x > 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x);
  return e / (1.0 + e);
}

/* ---- row grouping (rowgroup.c) ----
 * Dense codes 1..U of 64-bit words in order of first insertion: open
 * addressing with linear probing on mix64(word); the table starts small and
 * doubles when half full.  Scratch from R_alloc. */
typedef struct {
  size_t size;
  int *table;     /* code, 0 = empty */
  uint64_t *word; /* word of code u + 1; room for size / 2 */
  int n;          /* codes so far */
} sfp_word_codes;
void sfp_word_codes_init(sfp_word_codes *t);
void sfp_word_codes_grow(sfp_word_codes *t);
/* The code of w, adding it as code n + 1 (and setting *added) if new; the
 * inner step of grouping loops, so inline. */
static inline int sfp_word_code(sfp_word_codes *t, uint64_t w, int *added) {
  if (2 * (size_t) (t->n + 1) > t->size) sfp_word_codes_grow(t);
  size_t mask = t->size - 1, slot = (size_t) (mix64(w) & mask);
  for (;;) {
    int g = t->table[slot];
    if (g == 0) {
      t->word[t->n] = w;
      t->table[slot] = ++t->n;
      *added = 1;
      return t->n;
    }
    if (t->word[g - 1] == w) {
      *added = 0;
      return g;
    }
    slot = (slot + 1) & mask;
  }
}
/* A key column: integer codes (i, with max >= 0 when every code is known to
 * lie in 0..max -- validated by the caller, it sizes a table -- or max = -1)
 * or doubles (d, when i is NULL; compared bitwise after -0 -> 0). */
typedef struct {
  const int *i;
  const double *d;
  int max;
} sfp_key_col;
/* Number the distinct rows of the p key columns (n rows) in order of first
 * appearance: id[i] in 1..G; *first_out (if not NULL) gets the 0-based first
 * row of each group.  full = 1 compares rows in full while hashing (else the
 * fastest exact way is chosen).  Returns G. */
int sfp_group_rows(const sfp_key_col *cols, int p, int n, int *id,
                   int **first_out, int full);

/* ---- validators and condition (checks.c) ----
 * fn is the entry point's name ("ffi_crve"), arg the argument's name.  Each
 * returns only if the check passes; otherwise sfp_abort() raises
 * "internal error in <fn>(): `<arg>` <problem>" of class
 * c("sfpceval_internal_error", "error", "condition"). */
#if defined(__GNUC__)
#define SFP_NORETURN __attribute__((noreturn))
#else
#define SFP_NORETURN
#endif
SFP_NORETURN void sfp_abort(const char *fn, const char *arg, const char *fmt, ...);
/* type `type`, and length `len` unless len < 0 */
void sfp_check_vec(SEXP x, int type, R_xlen_t len, const char *fn, const char *arg);
const int *sfp_int(SEXP x, R_xlen_t len, const char *fn, const char *arg);
const double *sfp_dbl(SEXP x, R_xlen_t len, const char *fn, const char *arg);
/* NULL for R_NilValue, else as sfp_dbl() */
const double *sfp_dbl_or_null(SEXP x, R_xlen_t len, const char *fn, const char *arg);
/* a matrix of `type`; nrow/ncol checked unless < 0 */
void sfp_check_matrix(SEXP x, int type, int nrow, int ncol, const char *fn,
                      const char *arg);
/* a length-1 integer, logical or double holding a whole number in lo..hi */
int sfp_int1(SEXP x, int lo, int hi, const char *fn, const char *arg);
/* a length-1 integer or double (finite if `finite`) */
double sfp_dbl1(SEXP x, int finite, const char *fn, const char *arg);
/* every x[i] in lo..hi (NA allowed if na_ok) */
void sfp_check_codes(const int *x, R_xlen_t n, int lo, int hi, int na_ok,
                     const char *fn, const char *arg);
void sfp_check_finite(const double *x, R_xlen_t n, const char *fn, const char *arg);
/* integer offsets of length n + 1: 0, non-decreasing, ending at nrow */
const int *sfp_offsets(SEXP o, R_xlen_t n, R_xlen_t nrow, const char *fn,
                       const char *arg);
/* a result of `size` elements is allowed: 0 <= size <= 2^31 - 1 */
int sfp_check_size(double size, const char *fn, const char *arg);
/* R_CheckUserInterrupt() for loops between GetRNGstate() and PutRNGstate():
 * when the user interrupts, the generator's state is saved (PutRNGstate)
 * before the interrupt unwinds the loop, so the next draw in R continues the
 * stream instead of repeating it. */
void sfp_check_interrupt_rng(void);

/* the argument contracts of the entry points (checks.c), one per entry
 * point, called as its first line */
void sfp_check_cem_strata(SEXP codes, SEXP treat, SEXP n_exact, SEXP normalise,
                          SEXP maxes);
void sfp_check_cem_l1(SEXP codes, SEXP treat, SEXP weights, SEXP values,
                      SEXP want, SEXP maxes);
void sfp_check_cem_codes(SEXP cols, SEXP kinds, SEXP args);
void sfp_check_cem_moments(SEXP x);
void sfp_check_demean(SEXP X, SEXP codes, SEXP nlev, SEXP w, SEXP tol,
                      SEXP maxit);
void sfp_check_wls(SEXP X, SEXP y, SEXP w, SEXP tol);
void sfp_check_clogit(SEXP X, SEXP y, SEXP w, SEXP offset, SEXP ord,
                      SEXP starts, SEXP fe, SEXP L, SEXP theta, SEXP cluster,
                      SEXP G, SEXP what);
void sfp_check_crve(SEXP Xt, SEXP e, SEXP w, SEXP ord, SEXP starts, SEXP fe,
                    SEXP Ls, SEXP B, SEXP C, SEXP type, SEXP satt);
void sfp_check_boot_weights(SEXP Gs, SEXP type, SEXP Bs, SEXP enumerate);
void sfp_check_wcr_stats(SEXP V, SEXP a0, SEXP a1, SEXP K0, SEXP K1);
void sfp_check_glmm_binom(SEXP X, SEXP s, SEXP n, SEXP cstart, SEXP beta,
                          SEXP sigma, SEXP x, SEXP w, SEXP u0, SEXP what,
                          SEXP rows, SEXP offset);
void sfp_check_glmm_row_groups(SEXP X, SEXP g, SEXP full);
void sfp_check_glmm_nested(SEXP s, SEXP n, SEXP cstart, SEXP lstart, SEXP rows,
                           SEXP beta, SEXP sigma, SEXP u0, SEXP what);
void sfp_check_sim_trial(SEXP m, SEXP X, SEXP alpha, SEXP gamma, SEXP prev,
                         SEXP theta, SEXP sigma, SEXP r);
void sfp_check_simulate(SEXP ci, SEXP cd, SEXP la_go_live, SEXP traj,
                        SEXP qday, SEXP par, int n_par, SEXP eff, int n_eff,
                        SEXP terms);

/* ---- data: records simulator (simulate.c) ---- */
SEXP ffi_simulate_sfp(SEXP ci, SEXP cd, SEXP la_go_live, SEXP traj,
                      SEXP qday, SEXP par, SEXP eff, SEXP terms);

/* ---- cohort: interval work on day numbers (intervals.c) ---- */
SEXP ffi_union_days(SEXP start, SEXP end, SEXP offsets, SEXP win_lo, SEXP win_hi);
SEXP ffi_first_in_range(SEXP start, SEXP offsets, SEXP win_lo, SEXP win_hi);
SEXP ffi_first_overlap(SEXP start, SEXP end, SEXP offsets, SEXP win_lo, SEXP win_hi);
SEXP ffi_plan_return(SEXP start, SEXP end, SEXP offsets, SEXP cla_start,
                     SEXP cla_offsets, SEXP win_lo, SEXP win_hi);
SEXP ffi_term_sums(SEXP child, SEXP year, SEXP term, SEXP ord0, SEXP k,
                   SEXP possible, SEXP unauth);

/* ---- matching: CEM strata (cem.c) ---- */
SEXP ffi_cem_strata(SEXP codes, SEXP treat, SEXP n_exact, SEXP normalise,
                    SEXP maxes);
SEXP ffi_cem_l1(SEXP codes, SEXP treat, SEXP weights, SEXP values,
                SEXP want, SEXP maxes);
SEXP ffi_cem_codes(SEXP cols, SEXP kinds, SEXP args);
SEXP ffi_cem_moments(SEXP x);

/* ---- DiD: weighted least squares and absorbed effects (linreg.c) ---- */
SEXP ffi_demean(SEXP X, SEXP codes, SEXP nlev, SEXP w, SEXP tol, SEXP maxit);
SEXP ffi_wls(SEXP X, SEXP y, SEXP w, SEXP tol);

/* ---- DiD: conditional logit (clogit.c) ---- */
SEXP ffi_clogit(SEXP X, SEXP y, SEXP w, SEXP offset, SEXP ord, SEXP starts,
                SEXP fe, SEXP L, SEXP theta, SEXP cluster, SEXP G, SEXP what);

/* ---- DiD: cluster-robust variance (crve.c) ---- */
SEXP ffi_crve(SEXP Xt, SEXP e, SEXP w, SEXP ord, SEXP starts, SEXP fe,
              SEXP Ls, SEXP B, SEXP C, SEXP type, SEXP satt);

/* ---- DiD: wild cluster bootstrap (wildboot.c) ---- */
SEXP ffi_boot_weights(SEXP Gs, SEXP type, SEXP Bs, SEXP enumerate);
SEXP ffi_wcr_stats(SEXP V, SEXP a0, SEXP a1, SEXP K0, SEXP K1);

/* ---- other models: hurdle, tobit (mle.c) ---- */
SEXP ffi_mle_newton(SEXP model, SEXP X, SEXP y, SEXP weights, SEXP status,
                    SEXP limits, SEXP start, SEXP control);

/* ---- stepped wedge: GLMM / LMM (glmm.c) ---- */
SEXP ffi_glmm_binom(SEXP X, SEXP s, SEXP n, SEXP cstart, SEXP beta, SEXP sigma,
                    SEXP x, SEXP w, SEXP u0, SEXP what, SEXP rows,
                    SEXP offset);
SEXP ffi_glmm_row_groups(SEXP X, SEXP g, SEXP full);

/* ---- stepped wedge: logistic GLMM with (1 | la / child) (glmm_nested.c) ---- */
SEXP ffi_glmm_nested(SEXP s, SEXP n, SEXP cstart, SEXP lstart, SEXP rows, SEXP beta,
                     SEXP sigma, SEXP u0, SEXP what);

/* ---- stepped wedge: permutations (perm.c) ---- */

/* ---- staggered timing (bacon.c) ---- */

/* ---- power: trial simulator (power.c) ---- */
SEXP ffi_sim_trial(SEXP m, SEXP X, SEXP alpha, SEXP gamma, SEXP prev,
                   SEXP theta, SEXP sigma, SEXP r);

#endif
