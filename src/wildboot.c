/* wildboot.c: the wild cluster restricted (WCR) bootstrap, single
 * restriction, with the fast algebra of Roodman et al. (2019) (`vignette("methods")`
 * section 3), made affine in the null value r so that the confidence
 * interval by test inversion costs O(B) per r.
 *
 * For a draw v (G-vector of cluster weights) and the null value r,
 *   numerator   a(r)'v,           a(r) = a0 + r a1
 *   CR1 meat    sum_h ((K(r) v)_h)^2,  K(r) = K0 + r K1
 * so t*(v; r) = (n0 + r n1) / sqrt(c (A + 2 r Bc + r^2 Cc)) with the five
 * per-draw scalars n0 = a0'v, n1 = a1'v, A = |K0 v|^2, Bc = (K0 v)'(K1 v),
 * Cc = |K1 v|^2, computed here once (O(G^2) per draw).
 */
#include "sfpceval.h"
#include <math.h>

/* ffi_boot_weights(G, type, B, enumerate)
 *   G: number of clusters (>= 1); type: 1 Rademacher, 2 Webb, 3 Mammen;
 *   B: number of draws; enumerate: logical.  With enumerate, B must equal
 *   2^G (Rademacher) or 6^G (Webb) and column b holds the base-2 / base-6
 *   digits of b mapped to the weight values (column 0 is all +1 for
 *   Rademacher; for Webb the value order is -sqrt(3/2), -1, -sqrt(1/2),
 *   sqrt(1/2), 1, sqrt(3/2)).  Otherwise draws use R's RNG (unif_rand).
 * Returns a double G x B matrix. */
SEXP ffi_boot_weights(SEXP Gs, SEXP type, SEXP Bs, SEXP enumerate) {
  sfp_check_boot_weights(Gs, type, Bs, enumerate);
  int G = Rf_asInteger(Gs), typ = Rf_asInteger(type), B = Rf_asInteger(Bs);
  int en = Rf_asLogical(enumerate) == 1;
  static const double webb[6] = {-1.224744871391589, -1.0, -0.7071067811865476,
                                 0.7071067811865476, 1.0, 1.224744871391589};
  SEXP out = PROTECT(Rf_allocMatrix(REALSXP, G, B));
  double *v = REAL(out);
  if (en) {
    int base = typ == 1 ? 2 : 6;
    /* B == base^G and typ != 3: checked by sfp_check_boot_weights() */
    for (int b = 0; b < B; ++b) {
      int rem = b;
      for (int g = 0; g < G; ++g) {
        int d = rem % base;
        rem /= base;
        v[g + (size_t) b * G] = typ == 1 ? (d == 0 ? 1.0 : -1.0) : webb[d];
      }
    }
  } else {
    const double phi = (1.0 + sqrt(5.0)) / 2.0;
    GetRNGstate();
    for (int b = 0; b < B; ++b) {
      for (int g = 0; g < G; ++g) {
        double u = unif_rand(), x;
        if (typ == 1) {
          x = u < 0.5 ? -1.0 : 1.0;
        } else if (typ == 2) {
          int d = (int) floor(u * 6.0);
          if (d > 5) d = 5;
          x = webb[d];
        } else {
          x = u < phi / sqrt(5.0) ? 1.0 - phi : phi;
        }
        v[g + (size_t) b * G] = x;
      }
      if ((b & 0xFFFF) == 0xFFFF) sfp_check_interrupt_rng();
    }
    PutRNGstate();
  }
  UNPROTECT(1);
  return out;
}

/* ffi_wcr_stats(V, a0, a1, K0, K1)
 *   V: double G x B weights; a0, a1: double G; K0, K1: double G x G.
 * Returns a double 5 x B matrix with rows n0, n1, A, Bc, Cc (see header). */
SEXP ffi_wcr_stats(SEXP V, SEXP a0, SEXP a1, SEXP K0, SEXP K1) {
  sfp_check_wcr_stats(V, a0, a1, K0, K1);
  int G = Rf_nrows(V), B = Rf_ncols(V);
  const double *vp = REAL_RO(V), *a0p = REAL_RO(a0), *a1p = REAL_RO(a1);
  const double *k0 = REAL_RO(K0), *k1 = REAL_RO(K1);
  SEXP out = PROTECT(Rf_allocMatrix(REALSXP, 5, B));
  double *o = REAL(out);
  for (int b = 0; b < B; ++b) {
    const double *v = vp + (size_t) b * G;
    double n0 = 0, n1 = 0, A = 0, Bc = 0, Cc = 0;
    for (int g = 0; g < G; ++g) {
      n0 += a0p[g] * v[g];
      n1 += a1p[g] * v[g];
    }
    for (int h = 0; h < G; ++h) {
      double s0 = 0, s1 = 0;
      for (int g = 0; g < G; ++g) {
        s0 += k0[h + (size_t) g * G] * v[g];
        s1 += k1[h + (size_t) g * G] * v[g];
      }
      A += s0 * s0;
      Bc += s0 * s1;
      Cc += s1 * s1;
    }
    double *ob = o + (size_t) b * 5;
    ob[0] = n0;
    ob[1] = n1;
    ob[2] = A;
    ob[3] = Bc;
    ob[4] = Cc;
    if ((b & 0xFFFF) == 0xFFFF) R_CheckUserInterrupt();
  }
  UNPROTECT(1);
  return out;
}
