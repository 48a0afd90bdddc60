/* init.c: registration of the .Call entry points, nothing else. */
#include "sfpceval.h"

#define CALLDEF(name, n) {#name, (DL_FUNC) &name, n}

static const R_CallMethodDef call_entries[] = {
  /* data: records simulator */

  /* cohort */

  /* matching */

  /* DiD: linear model */

  /* DiD: cluster-robust variance */

  /* DiD: wild bootstrap */

  /* other models */

  /* stepped wedge: GLMM / LMM */
  CALLDEF(ffi_glmm_binom, 10),
  CALLDEF(ffi_glmm_row_groups, 3),

  /* stepped wedge: permutations */

  /* staggered timing */

  /* power */

  {NULL, NULL, 0}
};

void attribute_visible R_init_sfpceval(DllInfo *dll) {
  R_registerRoutines(dll, NULL, call_entries, NULL, NULL);
  R_useDynamicSymbols(dll, FALSE);
  R_forceSymbols(dll, TRUE);
}
