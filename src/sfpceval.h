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

/* ---- DiD: weighted least squares and absorbed effects (linreg.c) ---- */

/* ---- DiD: cluster-robust variance (crve.c) ---- */

/* ---- DiD: wild cluster bootstrap (wildboot.c) ---- */

/* ---- other models: hurdle, tobit (mle.c) ---- */

/* ---- stepped wedge: GLMM / LMM (glmm.c) ---- */
SEXP ffi_glmm_binom(SEXP X, SEXP s, SEXP n, SEXP cstart, SEXP beta, SEXP sigma,
                    SEXP x, SEXP w, SEXP u0, SEXP what);
SEXP ffi_glmm_row_groups(SEXP X, SEXP g, SEXP full);

/* ---- stepped wedge: permutations (perm.c) ---- */

/* ---- staggered timing (bacon.c) ---- */

/* ---- power: trial simulator (power.c) ---- */

#endif
