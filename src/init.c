/* init.c: registration of the .Call entry points, nothing else. */
#include "sfpceval.h"

#define CALLDEF(name, n) {#name, (DL_FUNC) &name, n}

static const R_CallMethodDef call_entries[] = {
  /* data: records simulator */
  CALLDEF(ffi_simulate_sfp, 8),

  /* cohort */
  CALLDEF(ffi_union_days, 5),
  CALLDEF(ffi_first_in_range, 4),
  CALLDEF(ffi_first_overlap, 5),
  CALLDEF(ffi_plan_return, 7),
  CALLDEF(ffi_term_sums, 7),

  /* matching */
  CALLDEF(ffi_cem_strata, 5),
  CALLDEF(ffi_cem_l1, 6),
  CALLDEF(ffi_cem_codes, 3),
  CALLDEF(ffi_cem_moments, 1),

  /* DiD: linear model */
  CALLDEF(ffi_demean, 6),
  CALLDEF(ffi_wls, 4),

  /* DiD: conditional logit */
  CALLDEF(ffi_clogit, 12),

  /* DiD: cluster-robust variance */
  CALLDEF(ffi_crve, 11),

  /* DiD: wild bootstrap */
  CALLDEF(ffi_boot_weights, 4),
  CALLDEF(ffi_wcr_stats, 5),

  /* other models */
  CALLDEF(ffi_mle_newton, 8),

  /* stepped wedge: GLMM / LMM */
  CALLDEF(ffi_glmm_binom, 12),
  CALLDEF(ffi_glmm_row_groups, 3),

  /* stepped wedge: permutations */

  /* staggered timing */

  /* power */
  CALLDEF(ffi_sim_trial, 8),

  {NULL, NULL, 0}
};

void attribute_visible R_init_sfpceval(DllInfo *dll) {
  R_registerRoutines(dll, NULL, call_entries, NULL, NULL);
  R_useDynamicSymbols(dll, FALSE);
  R_forceSymbols(dll, TRUE);
}
