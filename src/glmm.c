/* glmm.c: random-intercept logistic GLMM on binomial cells.
 *
 * Model: logit P(y = 1 | u_a) = eta_k + sigma * u_a, u_a ~ N(0, 1) (the
 * "spherical" parametrisation of lme4, so sigma = 0 is an ordinary point and
 * the likelihood is symmetric in sigma).  Cells k are (cluster, x-row)
 * patterns with n_k trials and s_k successes; a Bernoulli row is a cell with
 * n_k = 1.  The binomial coefficient is omitted, so the log-likelihood equals
 * lme4::glmer's on Bernoulli rows.
 *
 * Per cluster a:  h_a(u) = sum_k [s_k (eta_k + sigma u) - n_k log(1 + e^(eta_k + sigma u))] - u^2 / 2
 *   mode u_hat by Newton (h_a is strictly concave), H = -h''(u_hat) = sigma^2 sum v_k + 1,
 *   s_hat = H^(-1/2), and with the Gauss-Hermite rule (x_q, w_q) for int e^(-x^2) f(x) dx
 *   L_a = sqrt(2) s_hat sum_q w_q e^(x_q^2) exp(h_a(u_hat + sqrt(2) s_hat x_q)) / sqrt(2 pi).
 *   Q = 1 (x = 0, w = sqrt(pi)) is the Laplace approximation.
 *
 * The gradient is exact for the approximation (it differentiates through the
 * mode and the curvature by the implicit function theorem); see the
 * comments in agq_cluster().
 */
#include "sfpceval.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#define GLMM_MAX_NEWTON 200

/* h_a(u) for the cells [k0, k1). */
static double h_value(const double *eta, const double *s, const double *n,
                      int k0, int k1, double sigma, double u) {
  double out = -0.5 * u * u;
  for (int k = k0; k < k1; k++) {
    double lp = eta[k] + sigma * u;
    out += s[k] * lp - n[k] * sfp_log1pexp(lp);
  }
  return out;
}

/* Newton for the mode of h_a, started at u0; returns u_hat. Large steps
 * (|step| > 0.1, i.e. far from the mode) are halved until h_a increases, so it
 * converges from any start (h_a is strictly concave); small steps near the
 * mode, the usual case with a warm start, skip the line search. */
static double mode_cluster(const double *eta, const double *s, const double *n,
                           int k0, int k1, double sigma, double u0, int *fail) {
  double u = u0;
  for (int it = 0; it < GLMM_MAX_NEWTON; it++) {
    double g = -u, H = 1.0;
    for (int k = k0; k < k1; k++) {
      double p = sfp_plogis(eta[k] + sigma * u);
      g += sigma * (s[k] - n[k] * p);
      H += sigma * sigma * n[k] * p * (1.0 - p);
    }
    double step = g / H;
    if (fabs(step) < 1e-12 * (1.0 + fabs(u))) return u + step;
    if (fabs(step) <= 0.1) {
      u += step;
      continue;
    }
    double hu = h_value(eta, s, n, k0, k1, sigma, u);
    double unew = u + step, hnew = h_value(eta, s, n, k0, k1, sigma, unew);
    int halvings = 0;
    while (!(hnew >= hu - 1e-13 * (1.0 + fabs(hu))) && halvings < 60) {
      step *= 0.5;
      unew = u + step;
      hnew = h_value(eta, s, n, k0, k1, sigma, unew);
      halvings++;
    }
    u = unew;
  }
  *fail = 1;
  return u;
}

/* One cluster: log L_a (returned), and if coef != NULL its gradient pieces:
 * coef[k] for the cells (g_beta += sum_k coef[k] x_k) and *gsig (d/d sigma).
 * rq: scratch of length (k1 - k0) * Q; lq: scratch of length Q + (k1 - k0).
 * Also returns the mode and the scale through *uhat, *shat, and each cell's
 * probability at the mode in pm[k] (k0 <= k < k1), which the gradient and
 * the Hessian reuse. */
static double agq_cluster(const double *eta, const double *s, const double *n,
                          int k0, int k1, double sigma, const double *x,
                          const double *w, int Q, double u0, double *uhat,
                          double *shat, double *coef, double *gsig,
                          double *rq, double *lq, double *pm, int *fail) {
  double u = mode_cluster(eta, s, n, k0, k1, sigma, u0, fail);
  double V = 0, T = 0, R0 = 0;
  for (int k = k0; k < k1; k++) {
    double p = sfp_plogis(eta[k] + sigma * u);
    pm[k] = p;
    double v = n[k] * p * (1.0 - p);
    V += v;
    T += v * (1.0 - 2.0 * p);
    R0 += s[k] - n[k] * p;
  }
  double H = sigma * sigma * V + 1.0, sh = 1.0 / sqrt(H);
  *uhat = u;
  *shat = sh;
  int K = k1 - k0;
  /* log of each quadrature term, and r_k(u_q) = s_k - n_k p_k(u_q) */
  double lmax = -INFINITY;
  /* e^(eta_k + sigma u_q) = e^(eta_k + sigma u_hat) * e^(sigma (u_q - u_hat)):
   * one exp per cell (ek) and one per node instead of one per cell and node,
   * when no exponent can overflow; otherwise the stable per-term formulas. */
  double dmax = fabs(sigma * M_SQRT2 * sh * x[0]);
  if (fabs(sigma * M_SQRT2 * sh * x[Q - 1]) > dmax) dmax = fabs(sigma * M_SQRT2 * sh * x[Q - 1]);
  double *ek = lq + Q;
  int fast = dmax < 300;
  for (int k = k0; k < k1 && fast; k++) {
    double lp0 = eta[k] + sigma * u;
    if (fabs(lp0) > 300) fast = 0;
    else ek[k - k0] = exp(lp0);
  }
  for (int q = 0; q < Q; q++) {
    double uq = u + M_SQRT2 * sh * x[q];
    double hq = -0.5 * uq * uq;
    double *r = rq + (size_t) q * K;
    if (fast) {
      double cq = exp(sigma * (uq - u));
      for (int k = k0; k < k1; k++) {
        double lp = eta[k] + sigma * uq;
        double e = ek[k - k0] * cq;
        hq += s[k] * lp - n[k] * log1p(e);
        r[k - k0] = s[k] - n[k] * (e / (1.0 + e));
      }
    } else {
      for (int k = k0; k < k1; k++) {
        double lp = eta[k] + sigma * uq;
        double e = exp(-fabs(lp));
        double l1 = log1p(e);
        double p = lp > 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        hq += s[k] * lp - n[k] * (lp > 0 ? lp + l1 : l1);
        r[k - k0] = s[k] - n[k] * p;
      }
    }
    lq[q] = log(w[q]) + x[q] * x[q] + hq;
    if (lq[q] > lmax) lmax = lq[q];
  }
  double tot = 0;
  for (int q = 0; q < Q; q++) tot += exp(lq[q] - lmax);
  double logL = log(M_SQRT2 * sh) - 0.5 * log(2.0 * M_PI) + lmax + log(tot);
  if (coef == NULL) return logL;

  /* pi_q: normalised quadrature weights; A = sum pi_q h'(u_q),
   * B = sum pi_q h'(u_q) sqrt(2) x_q s_hat, dh/dsigma(u) = u sum_k r_k(u). */
  double A = 0, B = 0, Gs = 0;
  for (int k = 0; k < K; k++) coef[k0 + k] = 0;
  for (int q = 0; q < Q; q++) {
    double piq = exp(lq[q] - lmax) / tot;
    double uq = u + M_SQRT2 * sh * x[q];
    const double *r = rq + (size_t) q * K;
    double rho = 0;
    for (int k = 0; k < K; k++) {
      rho += r[k];
      coef[k0 + k] += piq * r[k];
    }
    double hp = sigma * rho - uq;
    A += piq * hp;
    B += piq * hp * M_SQRT2 * x[q] * sh;
    Gs += piq * uq * rho;
  }
  /* du/dsigma = (R0 - sigma u V) / H;  dH/dsigma = 2 sigma V + sigma^2 T (u + sigma du/dsigma);
   * dlog s_hat = -dH / (2H).  Beta: du/dbeta = -(sigma/H) sum v_k x_k,
   * dH/dbeta = sigma^2 sum t_k x_k - (sigma^4 T / H) sum v_k x_k. */
  double dus = (R0 - sigma * u * V) / H;
  double dHs = 2.0 * sigma * V + sigma * sigma * T * (u + sigma * dus);
  *gsig = (1.0 + B) * (-0.5 * dHs / H) + Gs + A * dus;
  double ct = -(1.0 + B) * sigma * sigma / (2.0 * H);
  double cv = (1.0 + B) * pow(sigma, 4) * T / (2.0 * H * H) - A * sigma / H;
  for (int k = k0; k < k1; k++) {
    double p = pm[k];
    double v = n[k] * p * (1.0 - p);
    coef[k] += ct * v * (1.0 - 2.0 * p) + cv * v;
  }
  return logL;
}

/* The non-zero entries of the K x p column-major X by row (CSR): a row of a
 * dummy-coded design has a handful of non-zeros, so weighted cross-products
 * sum_k w_k x_k x_k' cost O(sum_k nnz_k^2) instead of O(K p^2). */
typedef struct {
  int *ptr;     /* K + 1 row offsets */
  int *col;     /* column of each non-zero */
  double *val;  /* its value */
} sparse_rows;

static sparse_rows rows_of_X(const double *X, int K, int p) {
  sparse_rows sr;
  sr.ptr = (int *) R_alloc((size_t) K + 1, sizeof(int));
  for (int k = 0; k <= K; k++) sr.ptr[k] = 0;
  for (int j = 0; j < p; j++) {
    const double *c = X + (size_t) j * K;
    for (int k = 0; k < K; k++) if (c[k] != 0) sr.ptr[k + 1]++;
  }
  for (int k = 0; k < K; k++) sr.ptr[k + 1] += sr.ptr[k];
  size_t nnz = (size_t) sr.ptr[K];
  sr.col = (int *) R_alloc(nnz > 0 ? nnz : 1, sizeof(int));
  sr.val = (double *) R_alloc(nnz > 0 ? nnz : 1, sizeof(double));
  int *pos = (int *) R_alloc((size_t) K + 1, sizeof(int));
  memcpy(pos, sr.ptr, ((size_t) K + 1) * sizeof(int));
  for (int j = 0; j < p; j++) {
    const double *c = X + (size_t) j * K;
    for (int k = 0; k < K; k++) {
      if (c[k] != 0) {
        sr.col[pos[k]] = j;
        sr.val[pos[k]++] = c[k];
      }
    }
  }
  return sr;
}

/* The rows given from R (list(ptr, col, val), validated by
 * sfp_check_glmm_binom()), or built from X when `rows` is NULL. */
static sparse_rows rows_get(SEXP rows, const double *X, int K, int p) {
  if (Rf_isNull(rows)) return rows_of_X(X, K, p);
  sparse_rows sr;
  sr.ptr = INTEGER(VECTOR_ELT(rows, 0));
  sr.col = INTEGER(VECTOR_ELT(rows, 1));
  sr.val = REAL(VECTOR_ELT(rows, 2));
  return sr;
}

/* M (upper triangle, m x m column-major) += w z z' for the row z = (x_k, [u])
 * with x_k the k-th row of X (sparse) and, if m > p, u in position p. */
static void add_row_outer(double *M, int m, int p, const sparse_rows *sr, int k,
                          double w, double u) {
  int a0 = sr->ptr[k], a1 = sr->ptr[k + 1];
  for (int a = a0; a < a1; a++) {
    int ja = sr->col[a];
    double wa = w * sr->val[a];
    for (int b = a; b < a1; b++) M[ja + (size_t) sr->col[b] * m] += wa * sr->val[b];
    if (m > p) M[ja + (size_t) p * m] += wa * u;
  }
  if (m > p) M[p + (size_t) p * m] += w * u * u;
}

/* M += c (x y' + y x') (full m x m) */
static void add_sym(double *M, int m, const double *x, const double *y, double c) {
  if (c == 0) return;
  for (int j = 0; j < m; j++)
    for (int i = 0; i < m; i++) M[i + (size_t) j * m] += c * (x[i] * y[j] + y[i] * x[j]);
}

/* Exact Hessian of the Laplace log-likelihood in theta = (beta, sigma),
 * (p + 1) x (p + 1), added into Hs. Per cluster, with the mode u (h_u = 0),
 * z_k = (x_k, u) = d eta_k / d theta, r, v, t, q the first to fourth
 * derivatives of the cell log-likelihood in eta (signs: v = n p (1 - p),
 * t = dv/deta, q = dt/deta), H = sigma^2 V + 1 and l = h(u) - log(H) / 2:
 *   d2l = F_tt + F_tu a' + a F_tu' + F_uu a a' + F_u u_tt
 * (implicit differentiation through the mode: a = du/dtheta = h_tu / H,
 * u_tt = (h_utt - H_t a' - a H_t' - H_u a a') / H, where
 * h_tu = -sigma w_v + R0 e, h_utt = -sigma sum t z z' - (e w_v' + w_v e'),
 * H_t = sigma^2 w_t + 2 sigma V e, H_u = sigma^3 T, H_uu = sigma^4 Q,
 * H_tu = sigma^3 w_q + 3 sigma^2 T e,
 * H_tt = sigma^2 sum q z z' + 2 sigma (w_t e' + e w_t') + 2 V e e',
 * e the unit vector of sigma). The terms in z_k z_k' are one weighted
 * cross-product, the rest rank-one updates with the cluster sums
 * w_v = sum v z, w_t = sum t z, w_q = sum q z. pm: each cell's probability
 * at its cluster's mode (agq_cluster()). */
static void laplace_hessian(const double *s, const double *n, const double *pm,
                            const int *cs, int G, const double *mode, double sig,
                            const sparse_rows *sr, int p, double *Hs) {
  int m = p + 1;
  double *wv = (double *) R_alloc((size_t) 7 * m, sizeof(double));
  double *wt = wv + m, *wq = wt + m, *Ht = wq + m, *av = Ht + m, *Ftu = av + m, *e = Ftu + m;
  double *Mz = (double *) R_alloc((size_t) m * m, sizeof(double));
  for (R_xlen_t i = 0; i < (R_xlen_t) m * m; i++) Mz[i] = 0;
  for (int i = 0; i < m; i++) e[i] = i == p;
  for (int a = 0; a < G; a++) {
    double u = mode[a];
    double R0 = 0, V = 0, T = 0, Qs = 0;
    for (int i = 0; i < m; i++) wv[i] = wt[i] = wq[i] = 0;
    for (int k = cs[a]; k < cs[a + 1]; k++) {
      double pk = pm[k];
      double v = n[k] * pk * (1.0 - pk), t = v * (1.0 - 2.0 * pk),
             q = v * (1.0 - 6.0 * pk * (1.0 - pk));
      R0 += s[k] - n[k] * pk;
      V += v;
      T += t;
      Qs += q;
      for (int b = sr->ptr[k]; b < sr->ptr[k + 1]; b++) {
        int j = sr->col[b];
        double x = sr->val[b];
        wv[j] += v * x;
        wt[j] += t * x;
        wq[j] += q * x;
      }
    }
    wv[p] = V * u;
    wt[p] = T * u;
    wq[p] = Qs * u;
    double s2 = sig * sig, H = s2 * V + 1.0;
    double Hu = s2 * sig * T, Huu = s2 * s2 * Qs;
    double Fu = -0.5 * Hu / H;
    double Fuu = -H - 0.5 * Huu / H + 0.5 * Hu * Hu / (H * H);
    for (int i = 0; i < m; i++) {
      Ht[i] = s2 * wt[i] + 2.0 * sig * V * e[i];
      av[i] = (-sig * wv[i] + R0 * e[i]) / H;
      Ftu[i] = -sig * wv[i] + R0 * e[i] - 0.5 * (s2 * sig * wq[i] + 3.0 * s2 * T * e[i]) / H +
        0.5 * Ht[i] * Hu / (H * H);
    }
    /* cell terms: -v z z' (h_tt) - sigma^2 q z z' / (2H) (from H_tt) -
     * F_u sigma t z z' / H (from h_utt) */
    double cq = -0.5 * s2 / H, ct = -Fu * sig / H;
    for (int k = cs[a]; k < cs[a + 1]; k++) {
      double pk = pm[k];
      double v = n[k] * pk * (1.0 - pk), t = v * (1.0 - 2.0 * pk),
             q = v * (1.0 - 6.0 * pk * (1.0 - pk));
      add_row_outer(Mz, m, p, sr, k, -v + cq * q + ct * t, u);
    }
    /* rank-one terms: F_tt's -(2 sigma (w_t e' + e w_t') + 2 V e e') / (2H)
     * + H_t H_t' / (2 H^2); the mode's F_tu a' + a F_tu' + F_uu a a';
     * F_u (-(e w_v' + w_v e') - H_t a' - a H_t' - H_u a a') / H */
    add_sym(Hs, m, wt, e, -sig / H);
    add_sym(Hs, m, e, e, -0.5 * V / H);
    add_sym(Hs, m, Ht, Ht, 0.25 / (H * H));
    add_sym(Hs, m, Ftu, av, 1.0);
    add_sym(Hs, m, av, av, 0.5 * Fuu);
    add_sym(Hs, m, e, wv, -Fu / H);
    add_sym(Hs, m, Ht, av, -Fu / H);
    add_sym(Hs, m, av, av, -0.5 * Fu * Hu / H);
  }
  for (int j = 0; j < m; j++)
    for (int i = 0; i <= j; i++) {
      Hs[i + (size_t) j * m] += Mz[i + (size_t) j * m];
      if (i != j) Hs[j + (size_t) i * m] += Mz[i + (size_t) j * m];
    }
}

/* ffi_glmm_binom(X, s, n, cstart, beta, sigma, x, w, u0, what, rows, offset)
 *   X      double K x p matrix (column-major), cells sorted by cluster
 *   s, n   double K: successes and trials, 0 <= s <= n, n > 0
 *   cstart integer G + 1: 0-based first cell of each cluster, cstart[G] = K,
 *          nondecreasing, every cluster non-empty
 *   beta   double p;  sigma: double 1 (any real; the likelihood is even in sigma)
 *   x, w   double Q: Gauss-Hermite nodes and weights for int e^(-x^2) f(x) dx
 *   u0     double G: starting values for the modes (or length 0: start at 0)
 *   what   integer 1: 0 = log-likelihood only, 1 = also the gradient,
 *          2 = also v_k = n p (1 - p) and r_k = s - n p at the modes and the
 *          G x p matrix xv of per-cluster sums of v_k x_k and the p x p matrix
 *          xvx = sum_k v_k x_k x_k' (for the approximate information matrix),
 *          3 = also the exact Hessian of the Laplace log-likelihood in (beta,
 *          sigma) (Q must be 1; v, r, xv and xvx are not computed)
 *   rows   NULL, or the non-zeros of X by row: list(ptr = integer K + 1
 *          offsets from 0, col = integer 0-based columns, increasing within a
 *          row, val = double values); then X * beta, the gradient and the
 *          cross-products run over the non-zeros only
 *   offset double K (finite), added to each cell's linear predictor
 *          (eta = X beta + offset; e.g. a coefficient held fixed at r enters
 *          as r * x_j), or length 0: no offset
 * Returns list(loglik = double 1, gradient = double p + 1 (beta, sigma) or NULL,
 *   mode = double G (u_hat), scale = double G (s_hat), loglik_cluster = double G,
 *   v = double K or NULL, r = double K or NULL, fail = integer 1 (1 if a mode
 *   search hit the iteration limit), xv = double G x p or NULL,
 *   xvx = double p x p or NULL, hessian = double (p + 1) x (p + 1) or NULL).
 * R validates everything; this only guards against internal misuse. */
SEXP ffi_glmm_binom(SEXP X, SEXP s, SEXP n, SEXP cstart, SEXP beta, SEXP sigma,
                    SEXP x, SEXP w, SEXP u0, SEXP what, SEXP rows, SEXP offset) {
  sfp_check_glmm_binom(X, s, n, cstart, beta, sigma, x, w, u0, what, rows, offset);
  int K = Rf_length(s), p = Rf_length(beta), G = Rf_length(cstart) - 1,
      Q = Rf_length(x);
  const double *Xp = REAL_RO(X), *sp = REAL_RO(s), *np = REAL_RO(n),
               *bp = REAL_RO(beta), *xp = REAL_RO(x), *wp = REAL_RO(w),
               *u0p = Rf_length(u0) ? REAL_RO(u0) : NULL;
  const int *cs = INTEGER_RO(cstart);
  int mx = 0;
  for (int a = 0; a < G; a++) {
    if (cs[a + 1] - cs[a] > mx) mx = cs[a + 1] - cs[a];
  }
  double sig = REAL_RO(sigma)[0];
  int wh = INTEGER_RO(what)[0];

  int given = !Rf_isNull(rows);
  sparse_rows sr0;
  if (given) sr0 = rows_get(rows, Xp, K, p);
  double *eta = (double *) R_alloc(K > 0 ? K : 1, sizeof(double));
  for (int k = 0; k < K; k++) eta[k] = 0;
  if (given) {
    for (int k = 0; k < K; k++) {
      double acc = 0;
      for (int b = sr0.ptr[k]; b < sr0.ptr[k + 1]; b++) acc += sr0.val[b] * bp[sr0.col[b]];
      eta[k] = acc;
    }
  } else {
    for (int j = 0; j < p; j++) {
      const double *col = Xp + (size_t) j * K;
      double b = bp[j];
      if (b == 0) continue;
      for (int k = 0; k < K; k++) eta[k] += col[k] * b;
    }
  }
  if (Rf_length(offset)) {
    const double *op = REAL_RO(offset);
    for (int k = 0; k < K; k++) eta[k] += op[k];
  }
  double *rq = (double *) R_alloc((size_t) (mx > 0 ? mx : 1) * Q, sizeof(double));
  double *lq = (double *) R_alloc((size_t) Q + (mx > 0 ? mx : 1), sizeof(double));
  double *coef = wh >= 1 ? (double *) R_alloc(K > 0 ? K : 1, sizeof(double)) : NULL;
  double *pm = (double *) R_alloc(K > 0 ? K : 1, sizeof(double));

  const char *names[] = {"loglik", "gradient", "mode", "scale", "loglik_cluster",
                         "v", "r", "fail", "xv", "xvx", "hessian", ""};
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  SEXP ll = SET_VECTOR_ELT(out, 0, Rf_allocVector(REALSXP, 1));
  SEXP md = SET_VECTOR_ELT(out, 2, Rf_allocVector(REALSXP, G));
  SEXP sc = SET_VECTOR_ELT(out, 3, Rf_allocVector(REALSXP, G));
  SEXP lc = SET_VECTOR_ELT(out, 4, Rf_allocVector(REALSXP, G));
  SEXP fl = SET_VECTOR_ELT(out, 7, Rf_allocVector(INTSXP, 1));
  double *mdp = REAL(md), *scp = REAL(sc), *lcp = REAL(lc);
  double total = 0, gsig_tot = 0, work = 0;
  int fail = 0;
  for (int a = 0; a < G; a++) {
    double gs = 0;
    lcp[a] = agq_cluster(eta, sp, np, cs[a], cs[a + 1], sig, xp, wp, Q,
                         u0p ? u0p[a] : 0.0, mdp + a, scp + a, coef, &gs, rq,
                         lq, pm, &fail);
    total += lcp[a];
    gsig_tot += gs;
    work += (double) (cs[a + 1] - cs[a]) * Q;
    if (work >= 65536.0) {
      R_CheckUserInterrupt();
      work = 0;
    }
  }
  REAL(ll)[0] = total;
  INTEGER(fl)[0] = fail;
  if (wh >= 1) {
    SEXP gr = SET_VECTOR_ELT(out, 1, Rf_allocVector(REALSXP, p + 1));
    double *g = REAL(gr);
    if (given) {
      for (int j = 0; j < p; j++) g[j] = 0;
      for (int k = 0; k < K; k++)
        for (int b = sr0.ptr[k]; b < sr0.ptr[k + 1]; b++) g[sr0.col[b]] += sr0.val[b] * coef[k];
    } else {
      for (int j = 0; j < p; j++) {
        const double *col = Xp + (size_t) j * K;
        double acc = 0;
        for (int k = 0; k < K; k++) acc += col[k] * coef[k];
        g[j] = acc;
      }
    }
    g[p] = gsig_tot;
  }
  if (wh == 3) {
    if (Q != 1) Rf_error("internal error in ffi_glmm_binom(): the exact Hessian needs Q = 1");
    sparse_rows sr = given ? sr0 : rows_of_X(Xp, K, p);
    SEXP hh = SET_VECTOR_ELT(out, 10, Rf_allocMatrix(REALSXP, p + 1, p + 1));
    double *hp = REAL(hh);
    for (R_xlen_t i = 0; i < (R_xlen_t) (p + 1) * (p + 1); i++) hp[i] = 0;
    laplace_hessian(sp, np, pm, cs, G, mdp, sig, &sr, p, hp);
  }
  if (wh == 2) {
    SEXP vv = SET_VECTOR_ELT(out, 5, Rf_allocVector(REALSXP, K));
    SEXP rr = SET_VECTOR_ELT(out, 6, Rf_allocVector(REALSXP, K));
    SEXP xv = SET_VECTOR_ELT(out, 8, Rf_allocMatrix(REALSXP, G, p));
    double *vp = REAL(vv), *rp = REAL(rr), *xvp = REAL(xv);
    for (int a = 0; a < G; a++) {
      for (int k = cs[a]; k < cs[a + 1]; k++) {
        double pk = pm[k];
        vp[k] = np[k] * pk * (1.0 - pk);
        rp[k] = sp[k] - np[k] * pk;
      }
    }
    for (int j = 0; j < p; j++) {
      const double *col = Xp + (size_t) j * K;
      for (int a = 0; a < G; a++) {
        double acc = 0;
        for (int k = cs[a]; k < cs[a + 1]; k++) acc += col[k] * vp[k];
        xvp[a + (size_t) j * G] = acc;
      }
    }
    /* X' diag(v) X row by row over the non-zeros (a dummy-coded row has a
     * handful), accumulated in the upper triangle and mirrored */
    SEXP xx = SET_VECTOR_ELT(out, 9, Rf_allocMatrix(REALSXP, p, p));
    double *xxp = REAL(xx);
    for (R_xlen_t i = 0; i < (R_xlen_t) p * p; i++) xxp[i] = 0;
    sparse_rows sr = given ? sr0 : rows_of_X(Xp, K, p);
    for (int k = 0; k < K; k++) add_row_outer(xxp, p, p, &sr, k, vp[k], 0.0);
    for (int j = 0; j < p; j++)
      for (int i = 0; i < j; i++) xxp[j + (size_t) i * p] = xxp[i + (size_t) j * p];
  }
  UNPROTECT(1);
  return out;
}

/* ffi_glmm_row_groups(X, g, full)
 *   X     double N x p matrix without NA/NaN (R checks)
 *   g     integer N group codes (e.g. cluster; all equal to group rows alone)
 *   full  integer 1: 1 = compare rows in full while hashing (the fallback
 *         after a hash collision; for tests), 0 = hash then verify
 * Returns integer N: 1-based key of the distinct (g, X-row) patterns, numbered
 * in order of first appearance, by the row-grouping engine of rowgroup.c
 * (hashing; expected O(N p)). */
SEXP ffi_glmm_row_groups(SEXP X, SEXP g, SEXP full) {
  sfp_check_glmm_row_groups(X, g, full);
  R_xlen_t N = Rf_xlength(g);
  int p = N > 0 ? (int) (Rf_xlength(X) / N) : 0;
  if ((R_xlen_t) p * N != Rf_xlength(X))
    Rf_error("internal error in ffi_glmm_row_groups(): wrong dimensions");
  const double *Xp = REAL_RO(X);
  const int *gp = INTEGER_RO(g);
  SEXP out = PROTECT(Rf_allocVector(INTSXP, N));
  /* key columns: the group, then the columns of X (rowgroup.c) */
  sfp_key_col *kc = (sfp_key_col *) R_alloc((size_t) p + 1, sizeof(sfp_key_col));
  kc[0].i = gp;
  kc[0].d = NULL;
  kc[0].max = -1;
  for (int j = 0; j < p; j++) {
    kc[j + 1].i = NULL;
    kc[j + 1].d = Xp + (R_xlen_t) j * N;
    kc[j + 1].max = -1;
  }
  sfp_group_rows(kc, p + 1, (int) N, INTEGER(out), NULL, INTEGER_RO(full)[0]);
  UNPROTECT(1);
  return out;
}
