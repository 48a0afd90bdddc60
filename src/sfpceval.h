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

/* ---- data: records simulator (simulate.c) ---- */

/* ---- cohort: interval work on day numbers (intervals.c) ---- */

/* ---- matching: CEM strata (cem.c) ---- */
SEXP ffi_cem_strata(SEXP codes, SEXP treat, SEXP n_exact, SEXP normalise,
                    SEXP maxes);
SEXP ffi_cem_l1(SEXP codes, SEXP treat, SEXP weights, SEXP values,
                SEXP want, SEXP maxes);
SEXP ffi_cem_codes(SEXP cols, SEXP kinds, SEXP args);
SEXP ffi_cem_moments(SEXP x);

/* ---- DiD: weighted least squares and absorbed effects (linreg.c) ---- */

/* ---- DiD: cluster-robust variance (crve.c) ---- */

/* ---- DiD: wild cluster bootstrap (wildboot.c) ---- */

/* ---- other models: hurdle, tobit (mle.c) ---- */

/* ---- stepped wedge: GLMM / LMM (glmm.c) ---- */

/* ---- stepped wedge: permutations (perm.c) ---- */

/* ---- staggered timing (bacon.c) ---- */

/* ---- power: trial simulator (power.c) ---- */

#endif
