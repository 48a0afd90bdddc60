/* clogit.c: the Breslow conditional logit of did_fit(family =
 * "conditional_logit") without an n x levels design.
 *
 * The log-likelihood, conditioning on the strata s (the first fixed effect),
 *
 *   l(theta) = sum_s [ sum_{i in s} w_i y_i eta_i - d_s log sum_{j in s} w_j exp(eta_j) ],
 *   d_s = sum_{i in s} w_i y_i,   eta_i = offset_i + x_i'beta + sum_f gamma[c_f(i)],
 *
 * has covariates x (k columns) and, for the further fixed effects, one
 * parameter per level (L levels over all of them, global codes c_f(i) in
 * 0..L-1). With p_i = w_i exp(eta_i) / sum_{j in s} w_j exp(eta_j) and
 * z_i = (x_i, the indicators of row i's levels), the score is
 * sum_i (w_i y_i - d_s p_i) z_i and the information is
 * sum_s d_s sum_{i in s} p_i (z_i - zbar_s)(z_i - zbar_s)',
 * zbar_s = sum_{i in s} p_i z_i. Their level parts are sums over strata of
 * per-(stratum, level) aggregates: with P_{s,a} the sum of p_i over the rows
 * of stratum s at level a,
 *   covariate x covariate  d_s sum_i p_i (x_i - xbar_s)(x_i - xbar_s)'
 *   covariate x level a    d_s sum_{i at a} p_i (x_i - xbar_s)
 *   level a x level a      d_s P_{s,a} (1 - P_{s,a}), 1 - P_{s,a} summed over
 *                          the stratum's other levels of a's effect
 *   level a x level b      d_s (Q_{s,ab} - P_{s,a} P_{s,b}), Q the sum of p_i
 *                          over rows at both a and b (0 within one effect),
 * so each stratum is read twice (eta, the denominator, xbar and P; then the
 * centred sums) and only the levels it touches are visited. Cluster score
 * sums (G x (k + L)) are accumulated the same way: row i adds
 * r_i (x_i - xbar_s) and r_i at its levels, r_i = w_i y_i - d_s p_i, and
 * each (stratum, cluster) pair subtracts R_{s,g} P_{s,a} at the stratum's
 * levels, R_{s,g} the sum of r_i over its rows. Nothing is n x (k + L).
 *
 * The linear predictor is centred at its maximum within each stratum before
 * exponentiating, so exp() never overflows.
 */
#include "sfpceval.h"
#include <math.h>
#include <string.h>

/* Touched-set scratch: a dense value per code plus the list of codes touched
 * since the last reset (so a reset costs what was touched). */
typedef struct {
  double *val;
  int *list;
  char *on;
  int n;
} touched;

static void touched_init(touched *t, int size) {
  int m = size > 0 ? size : 1;
  t->val = (double *) R_alloc(m, sizeof(double));
  t->list = (int *) R_alloc(m, sizeof(int));
  t->on = (char *) R_alloc(m, sizeof(char));
  memset(t->val, 0, m * sizeof(double));
  memset(t->on, 0, m * sizeof(char));
  t->n = 0;
}

static inline void touched_add(touched *t, int code, double v) {
  if (!t->on[code]) {
    t->on[code] = 1;
    t->list[t->n++] = code;
  }
  t->val[code] += v;
}

static void touched_reset(touched *t) {
  for (int u = 0; u < t->n; u++) {
    t->val[t->list[u]] = 0;
    t->on[t->list[u]] = 0;
  }
  t->n = 0;
}

/* The kernel. X n x k (column-major), y, w, off (NULL = 0) of length n; ord
 * (0-based rows grouped by stratum) and starts (S + 1 offsets into ord);
 * fe n x m global level codes in 0..L-1; theta = (beta, gamma) of length
 * P = k + L; cl (0-based cluster codes, used when what == 2). Outputs:
 * *ll; when what >= 1 grad (P) and info (P x P), zeroed here; when what == 2
 * sc (G x P), zeroed here. eta: scratch of length n. */
static void clogit_int(const double *X, const double *y, const double *w,
                       const double *off, const int *ord, const int *starts,
                       int S, const int *fe, int m, int L, const double *theta,
                       const int *cl, int G, int n, int k, int what, double *ll,
                       double *grad, double *info, double *sc, double *eta) {
  const int P = k + L;
  const double *beta = theta, *gamma = theta + k;
  double *xbar = (double *) R_alloc(k > 0 ? k : 1, sizeof(double));
  double *xc = (double *) R_alloc(k > 0 ? k : 1, sizeof(double));
  touched lev, clu;
  touched_init(&lev, L);
  /* the effect of each level, and the sum of P over each effect's levels in
   * the stratum: 1 - P_a is computed as the sum over the other levels of a's
   * effect, exactly 0 when the stratum has one level of the effect */
  int *eff = (int *) R_alloc(L > 0 ? L : 1, sizeof(int));
  double *tot = (double *) R_alloc(m > 0 ? m : 1, sizeof(double));
  touched_init(&clu, what == 2 ? G : 0);
  if (what >= 1) {
    memset(grad, 0, (size_t) P * sizeof(double));
    memset(info, 0, (size_t) P * P * sizeof(double));
  }
  if (what == 2) memset(sc, 0, (size_t) G * P * sizeof(double));
  double loglik = 0;
  long long done = 0, next_check = 1 << 16;
  for (int s = 0; s < S; s++) {
    int a0 = starts[s], a1 = starts[s + 1];
    if (a1 == a0) continue;
    /* pass 1: eta, its maximum, d_s */
    double mx = R_NegInf, d = 0;
    for (int u = a0; u < a1; u++) {
      int i = ord[u];
      double e = off ? off[i] : 0;
      for (int j = 0; j < k; j++) e += X[i + (size_t) n * j] * beta[j];
      for (int f = 0; f < m; f++) e += gamma[fe[i + (size_t) n * f]];
      eta[u] = e;
      if (w[i] > 0 && e > mx) mx = e;
      d += w[i] * y[i];
    }
    double den = 0;
    for (int u = a0; u < a1; u++) {
      int i = ord[u];
      double ew = w[i] > 0 ? w[i] * exp(eta[u] - mx) : 0;
      loglik += w[i] * y[i] * (w[i] > 0 ? eta[u] - mx : 0);
      eta[u] = ew; /* now w exp(eta - max) */
      den += ew;
    }
    if (!(den > 0)) continue;
    loglik -= d * log(den);
    done += a1 - a0;
    if (done >= next_check) {
      R_CheckUserInterrupt();
      next_check = done + (1 << 16);
    }
    if (what == 0) continue;
    /* p, xbar and P_{s,a} */
    for (int j = 0; j < k; j++) xbar[j] = 0;
    for (int u = a0; u < a1; u++) {
      int i = ord[u];
      double p = eta[u] / den;
      eta[u] = p;
      for (int j = 0; j < k; j++) xbar[j] += p * X[i + (size_t) n * j];
      for (int f = 0; f < m; f++) {
        int a = fe[i + (size_t) n * f];
        eff[a] = f;
        touched_add(&lev, a, p);
      }
    }
    for (int f = 0; f < m; f++) tot[f] = 0;
    for (int u = 0; u < lev.n; u++) tot[eff[lev.list[u]]] += lev.val[lev.list[u]];
    /* pass 2: centred sums */
    for (int u = a0; u < a1; u++) {
      int i = ord[u];
      double p = eta[u], r = w[i] * y[i] - d * p, dp = d * p;
      for (int j = 0; j < k; j++) xc[j] = X[i + (size_t) n * j] - xbar[j];
      for (int j = 0; j < k; j++) {
        grad[j] += r * xc[j];
        for (int j2 = j; j2 < k; j2++) info[j + (size_t) P * j2] += dp * xc[j] * xc[j2];
      }
      for (int f = 0; f < m; f++) {
        int a = k + fe[i + (size_t) n * f];
        grad[a] += r;
        for (int j = 0; j < k; j++) info[j + (size_t) P * a] += dp * xc[j];
        for (int f2 = f + 1; f2 < m; f2++) {
          int b = k + fe[i + (size_t) n * f2];
          info[a + (size_t) P * b] += dp;
          info[b + (size_t) P * a] += dp;
        }
      }
      if (what == 2) {
        int g = cl[i];
        for (int j = 0; j < k; j++) sc[g + (size_t) G * j] += r * xc[j];
        for (int f = 0; f < m; f++) sc[g + (size_t) G * (k + fe[i + (size_t) n * f])] += r;
        touched_add(&clu, g, r);
      }
    }
    /* the stratum's level terms: d P_a (1 - P_a) and -d P_a P_b */
    for (int u = 0; u < lev.n; u++) {
      int a = lev.list[u];
      double Pa = lev.val[a], rest = tot[eff[a]] - Pa;
      info[(k + a) * ((size_t) P + 1)] += d * Pa * (rest > 0 ? rest : 0);
      for (int u2 = 0; u2 < lev.n; u2++) {
        if (u2 == u) continue;
        int b = lev.list[u2];
        info[(k + a) + (size_t) P * (k + b)] -= d * Pa * lev.val[b];
      }
      if (what == 2) {
        for (int v = 0; v < clu.n; v++) {
          int g = clu.list[v];
          sc[g + (size_t) G * (k + a)] -= clu.val[g] * Pa;
        }
      }
    }
    touched_reset(&lev);
    if (what == 2) touched_reset(&clu);
  }
  *ll = loglik;
  if (what >= 1) {
    /* mirror: covariate block (upper -> lower), covariate x level -> level x covariate */
    for (int j = 0; j < k; j++)
      for (int j2 = j + 1; j2 < k; j2++) info[j2 + (size_t) P * j] = info[j + (size_t) P * j2];
    for (int a = k; a < P; a++)
      for (int j = 0; j < k; j++) info[a + (size_t) P * j] = info[j + (size_t) P * a];
  }
}

/* ffi_clogit(X, y, w, offset, ord, starts, fe, L, theta, cluster, G, what)
 *   X       double matrix n x k (k >= 0), finite: the covariates
 *   y, w    double n, finite, w >= 0: outcome and weights
 *   offset  NULL or double n, finite: a fixed part of eta
 *   ord     integer n, 0-based rows ordered by stratum
 *   starts  integer S + 1 offsets into ord (0, non-decreasing, n)
 *   fe      integer matrix n x m (m >= 0), global level codes in 0..L-1 of
 *           the fixed effects after the stratum
 *   L       integer >= 0, the number of levels
 *   theta   double k + L, finite: (beta, gamma)
 *   cluster integer n, 0-based codes in 0..G-1 (read only when what = 2)
 *   G       integer >= 0 (>= 1 when what = 2)
 *   what    0: log-likelihood; 1: + gradient and information; 2: + cluster
 *           score sums
 * Returns list(loglik, grad, info, scores); the parts not asked for NULL. */
SEXP ffi_clogit(SEXP X, SEXP y, SEXP w, SEXP offset, SEXP ord, SEXP starts,
                SEXP fe, SEXP L, SEXP theta, SEXP cluster, SEXP G, SEXP what) {
  sfp_check_clogit(X, y, w, offset, ord, starts, fe, L, theta, cluster, G, what);
  int n = Rf_nrows(X), k = Rf_ncols(X), m = Rf_ncols(fe);
  int Lv = Rf_asInteger(L), Gv = Rf_asInteger(G), wh = Rf_asInteger(what);
  int S = (int) XLENGTH(starts) - 1, P = k + Lv;
  const char *names[] = {"loglik", "grad", "info", "scores", ""};
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  SET_VECTOR_ELT(out, 0, Rf_allocVector(REALSXP, 1));
  double *grad = NULL, *info = NULL, *sc = NULL;
  if (wh >= 1) {
    SET_VECTOR_ELT(out, 1, Rf_allocVector(REALSXP, P));
    SET_VECTOR_ELT(out, 2, Rf_allocMatrix(REALSXP, P, P));
    grad = REAL(VECTOR_ELT(out, 1));
    info = REAL(VECTOR_ELT(out, 2));
  }
  if (wh == 2) {
    SET_VECTOR_ELT(out, 3, Rf_allocMatrix(REALSXP, Gv, P));
    sc = REAL(VECTOR_ELT(out, 3));
  }
  double *eta = (double *) R_alloc(n > 0 ? n : 1, sizeof(double));
  clogit_int(REAL_RO(X), REAL_RO(y), REAL_RO(w),
             offset == R_NilValue ? NULL : REAL_RO(offset), INTEGER_RO(ord),
             INTEGER_RO(starts), S, INTEGER_RO(fe), m, Lv, REAL_RO(theta),
             wh == 2 ? INTEGER_RO(cluster) : NULL, Gv, n, k, wh,
             REAL(VECTOR_ELT(out, 0)), grad, info, sc, eta);
  UNPROTECT(1);
  return out;
}
