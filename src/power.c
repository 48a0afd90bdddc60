/* power.c: the trial simulator behind power_sim().
 *
 * Draws one trial's binomial cells (cluster x period x covariate pattern)
 * from a random-intercept logistic model with cluster autocorrelation:
 *
 *   logit p_ijk = alpha_j + gamma_k + theta * X_ij + a_i + c_ij,
 *   a_i ~ N(0, sigma^2 r),  c_ij ~ N(0, sigma^2 (1 - r)),
 *   (n_ij1..n_ijK) ~ Multinomial(m_ij; pi_1..pi_K),
 *   s_ijk ~ Binomial(n_ijk, p_ijk).
 *
 * Random numbers come from R's generator (GetRNGstate / PutRNGstate), so a
 * replicate is reproducible from the generator's state alone: power_sim()
 * gives each replicate its own L'Ecuyer-CMRG stream.
 */
#include "sfpceval.h"
#include <Rmath.h>

/* Kernel: fills n_out, s_out (length I * J * K, pattern fastest, then
 * period, then cluster). m: I x J cluster-period sizes (column-major);
 * X: I x J treatment 0/1; alpha: J period effects (logit); gamma: K pattern
 * effects; prev: K pattern probabilities (sum 1). */
static void sim_cells(int I, int J, int K, const int *m, const double *X,
                      const double *alpha, const double *gamma,
                      const double *prev, double theta, double sigma,
                      double r, int *n_out, int *s_out) {
  double sa = sigma * sqrt(r), sc = sigma * sqrt(1.0 - r);
  for (int i = 0; i < I; i++) {
    double a = sa > 0 ? sa * norm_rand() : 0.0;
    for (int j = 0; j < J; j++) {
      double c = sc > 0 ? sc * norm_rand() : 0.0;
      int left = m[i + (size_t)I * j];
      double pleft = 1.0;
      double lin = alpha[j] + theta * X[i + (size_t)I * j] + a + c;
      for (int k = 0; k < K; k++) {
        size_t o = ((size_t)i * J + j) * K + k;
        int nk;
        if (k == K - 1 || pleft <= 0) {
          nk = left;
        } else {
          double q = prev[k] / pleft;
          if (q > 1) q = 1;
          nk = left > 0 ? (int)rbinom((double)left, q) : 0;
        }
        left -= nk;
        pleft -= prev[k];
        double p = 1.0 / (1.0 + exp(-(lin + gamma[k])));
        n_out[o] = nk;
        s_out[o] = nk > 0 ? (int)rbinom((double)nk, p) : 0;
      }
    }
  }
}

/* ffi_sim_trial(m, X, alpha, gamma, prev, theta, sigma, r)
 *   m:     integer I x J matrix of cluster-period sizes (>= 0)
 *   X:     double I x J matrix of 0/1 treatment
 *   alpha: double J; gamma, prev: double K (prev sums to 1)
 *   theta, sigma, r: double scalars (sigma >= 0, 0 <= r <= 1)
 * Returns list(n, s): integer vectors of length I * J * K. */
SEXP ffi_sim_trial(SEXP m, SEXP X, SEXP alpha, SEXP gamma, SEXP prev,
                   SEXP theta, SEXP sigma, SEXP r) {
  sfp_check_sim_trial(m, X, alpha, gamma, prev, theta, sigma, r);
  SEXP dim = Rf_getAttrib(m, R_DimSymbol);
  int I = INTEGER(dim)[0], J = INTEGER(dim)[1], K = Rf_length(gamma);
  double sg = Rf_asReal(sigma), rr = Rf_asReal(r), th = Rf_asReal(theta);
  R_xlen_t n = (R_xlen_t)I * J * K;
  SEXP out = PROTECT(Rf_allocVector(VECSXP, 2));
  SET_VECTOR_ELT(out, 0, Rf_allocVector(INTSXP, n));
  SET_VECTOR_ELT(out, 1, Rf_allocVector(INTSXP, n));
  SEXP nm = PROTECT(Rf_allocVector(STRSXP, 2));
  SET_STRING_ELT(nm, 0, Rf_mkChar("n"));
  SET_STRING_ELT(nm, 1, Rf_mkChar("s"));
  Rf_setAttrib(out, R_NamesSymbol, nm);
  GetRNGstate();
  sim_cells(I, J, K, INTEGER(m), REAL(X), REAL(alpha), REAL(gamma), REAL(prev),
            th, sg, rr, INTEGER(VECTOR_ELT(out, 0)), INTEGER(VECTOR_ELT(out, 1)));
  PutRNGstate();
  UNPROTECT(2);
  return out;
}
