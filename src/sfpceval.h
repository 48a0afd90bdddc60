/* sfpceval.h: the one shared header of the C core.
 *
 * Every .Call entry point (ffi_*) is declared here, grouped by topic, and
 * registered in init.c.  Everything else in a .c file is static.  Kernels
 * work on plain C arrays and never touch a SEXP, so they are safe in threads.
 */
#ifndef SFPCEVAL_H
#define SFPCEVAL_H

#define R_NO_REMAP
#include <R.h>
#include <Rinternals.h>
#include <R_ext/Rdynload.h>
#include <R_ext/Utils.h>
#include <R_ext/Visibility.h>
#include <stdint.h>

/* splitmix64 finaliser: a bijective, well-mixing map of 64-bit words, for
 * the hash tables that group rows (cem.c, glmm.c). */
static inline uint64_t mix64(uint64_t z) {
  z ^= z >> 30;
  z *= 0xbf58476d1ce4e5b9ULL;
  z ^= z >> 27;
  z *= 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z;
}

/* ---- data: records simulator (simulate.c) ---- */
SEXP ffi_simulate_sfp(SEXP ci, SEXP cd, SEXP la_go_live, SEXP traj,
                      SEXP qday, SEXP par, SEXP eff, SEXP terms);

/* ---- cohort: interval work on day numbers (intervals.c) ---- */
SEXP ffi_union_days(SEXP start, SEXP end, SEXP offsets, SEXP win_lo, SEXP win_hi);
SEXP ffi_first_in_range(SEXP start, SEXP offsets, SEXP win_lo, SEXP win_hi);
SEXP ffi_first_overlap(SEXP start, SEXP end, SEXP offsets, SEXP win_lo, SEXP win_hi);
SEXP ffi_care_period(SEXP decom, SEXP dec, SEXP starts_period, SEXP ends_period,
                     SEXP offsets, SEXP ref);
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
                    SEXP x, SEXP w, SEXP u0, SEXP what);
SEXP ffi_glmm_row_groups(SEXP X, SEXP g, SEXP full);

/* ---- stepped wedge: permutations (perm.c) ---- */

/* ---- staggered timing (bacon.c) ---- */

/* ---- power: trial simulator (power.c) ---- */
SEXP ffi_sim_trial(SEXP m, SEXP X, SEXP alpha, SEXP gamma, SEXP prev,
                   SEXP theta, SEXP sigma, SEXP r);

#endif
