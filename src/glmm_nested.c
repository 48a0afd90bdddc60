/* glmm_nested.c: logistic GLMM with random intercepts for an authority and
 * for each child within it, (1 | la / child_id), by the Laplace
 * approximation.
 *
 * Model: logit P(y = 1 | u_a, v_c) = eta_k + s1 u_a + s2 v_c, with u_a and
 * v_c independent N(0, 1) (lme4's spherical parametrisation: s1 and s2 are
 * the SDs, the likelihood is even in each, and 0 is an ordinary point).
 * Cells k (a child's rows with the same model-matrix row) have n_k trials
 * and s_k successes; the binomial coefficient is omitted (R adds it).
 *
 * Per authority a with children c = 1..m and b = (u, v_1..v_m):
 *   h_a(b) = sum_k [s_k lp_k - n_k log(1 + e^lp_k)] - u^2/2 - sum_c v_c^2/2,
 *   lp_k = eta_k + s1 u + s2 v_c(k),
 *   log L_a ~= h_a(b_hat) - log det H / 2,  H = -h_a''(b_hat).
 * With W_c = sum_{k in c} n_k p_k (1 - p_k), H is an ARROWHEAD matrix:
 *   H_uu = 1 + s1^2 sum_c W_c,  H_cc = D_c = 1 + s2^2 W_c,
 *   H_uc = b_c = s1 s2 W_c,     H_cc' = 0 for c != c',
 * so with the Schur complement S = H_uu - sum_c b_c^2 / D_c:
 *   det H = S prod_c D_c;  H^-1 = diag(0, 1/D) + y y' / S, y = (1, -b/D);
 * the Newton step for the mode and every solve are O(m); no m x m matrix.
 *
 * The gradient in theta = (beta, s1, s2) is exact for the approximation:
 *   dl/dtheta = dh/dtheta - (1/2) [dL/dtheta|_b + a' db/dtheta],
 * L = log det H, a = dL/db, db/dtheta = H^-1 d2h/(db dtheta) (implicit
 * function theorem at the mode), evaluated with one extra arrowhead solve
 * w = H^-1 a per authority (the adjoint), so the cost is O(cells) and not
 * O(cells x p).  dL/dlp_k = t_k lev_c, t_k = v_k (1 - 2 p_k), lev_c = z' H^-1 z
 * with z = (s1, s2 e_c) the derivative of lp_k in b.
 */
#include "sfpceval.h"
#include <math.h>
#include <string.h>

#define NESTED_MAX_NEWTON 200

/* The data of one fit, on plain pointers. */
typedef struct {
  const double *eta, *s, *n;
  const int *cs; /* cells of child c: [cs[c], cs[c + 1]) */
  double s1, s2;
} nested_data;

/* h_a at (u, v[c0..c1)) */
static double nested_h(const nested_data *d, int c0, int c1, double u, const double *v) {
  double out = -0.5 * u * u;
  for (int c = c0; c < c1; c++) {
    out -= 0.5 * v[c] * v[c];
    double off = d->s1 * u + d->s2 * v[c];
    for (int k = d->cs[c]; k < d->cs[c + 1]; k++) {
      double lp = d->eta[k] + off;
      out += d->s[k] * lp - d->n[k] * sfp_log1pexp(lp);
    }
  }
  return out;
}

/* Per-child sums at (u, v): R_c = sum (s - n p), W_c = sum n p (1 - p),
 * T_c = sum t (if T != NULL). */
static void nested_sums(const nested_data *d, int c0, int c1, double u, const double *v,
                        double *R, double *W, double *T) {
  for (int c = c0; c < c1; c++) {
    double off = d->s1 * u + d->s2 * v[c], r = 0, w = 0, t = 0;
    for (int k = d->cs[c]; k < d->cs[c + 1]; k++) {
      double p = sfp_plogis(d->eta[k] + off);
      double vk = d->n[k] * p * (1.0 - p);
      r += d->s[k] - d->n[k] * p;
      w += vk;
      t += vk * (1.0 - 2.0 * p);
    }
    R[c] = r;
    W[c] = w;
    if (T != NULL) T[c] = t;
  }
}

/* nested_sums() and h_a at (u, v) in one pass (one exp and one log1p per
 * cell): returns h_a. */
static double nested_sums_h(const nested_data *d, int c0, int c1, double u, const double *v,
                            double *R, double *W, double *T) {
  double out = -0.5 * u * u;
  for (int c = c0; c < c1; c++) {
    out -= 0.5 * v[c] * v[c];
    double off = d->s1 * u + d->s2 * v[c], r = 0, w = 0, t = 0;
    for (int k = d->cs[c]; k < d->cs[c + 1]; k++) {
      double lp = d->eta[k] + off, e = exp(-fabs(lp));
      double p = lp > 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
      double vk = d->n[k] * p * (1.0 - p);
      out += d->s[k] * lp - d->n[k] * ((lp > 0 ? lp : 0) + log1p(e));
      r += d->s[k] - d->n[k] * p;
      w += vk;
      t += vk * (1.0 - 2.0 * p);
    }
    R[c] = r;
    W[c] = w;
    T[c] = t;
  }
  return out;
}

/* Arrowhead solve H x = g, H_uu = huu, H_cc = D_c, H_uc = b_c: returns x_u,
 * writes x_c into xc[c0..c1).  S is the Schur complement. */
static double arrow_solve(int c0, int c1, double S, const double *D, const double *b,
                          double gu, const double *gc, double *xc) {
  double acc = gu;
  for (int c = c0; c < c1; c++) acc -= b[c] * gc[c] / D[c];
  double xu = acc / S;
  for (int c = c0; c < c1; c++) xc[c] = (gc[c] - b[c] * xu) / D[c];
  return xu;
}

/* Schur complement S and D, b at the sums W */
static double arrow_build(const nested_data *d, int c0, int c1, const double *W,
                          double *D, double *b) {
  double s1 = d->s1, s2 = d->s2, huu = 1.0;
  for (int c = c0; c < c1; c++) {
    D[c] = 1.0 + s2 * s2 * W[c];
    b[c] = s1 * s2 * W[c];
    huu += s1 * s1 * W[c];
  }
  double S = huu;
  for (int c = c0; c < c1; c++) S -= b[c] * b[c] / D[c];
  return S;
}

/* Per-child scratch; after nested_authority(), W, D, b and S hold its
 * authority's sums at the mode (for nested_info()). */
typedef struct {
  double *R, *W, *T, *D, *b, *g, *step, *vnew, *lev, *wc;
  double S, wu;
} nested_scratch;

/* Joint mode of h_a by Newton, from (*u, v) in place.  h_a is strictly
 * concave; a step that changes a linear predictor by more than 0.1 logits
 * or has a component larger than 0.1 (far from the mode) is halved until
 * h_a does not decrease, small steps near the mode are taken whole (the
 * test is on the linear-predictor scale: with SDs of 10 to 50 a step of 0.1
 * spherical units moves it by 1 to 5 logits, and whole steps of that size
 * can oscillate).  A non-finite step or h_a sets *fail = 2 and returns;
 * the iteration limit sets *fail = 1 (unless it is 2 already).  Stops
 * after a step whose largest component is below 1e-7
 * (relative to 1 + |b|): Newton converges quadratically, so the mode is then
 * exact to about 1e-14, which the finite-difference Hessian (steps of 1e-7)
 * needs; it spares the pass that would only confirm it. */
static void nested_mode(const nested_data *d, int c0, int c1, double *u, double *v,
                        nested_scratch *w, int *fail) {
  for (int it = 0; it < NESTED_MAX_NEWTON; it++) {
    nested_sums(d, c0, c1, *u, v, w->R, w->W, NULL);
    double gu = -*u, Rtot = 0;
    for (int c = c0; c < c1; c++) {
      Rtot += w->R[c];
      w->g[c] = d->s2 * w->R[c] - v[c];
    }
    gu += d->s1 * Rtot;
    double S = arrow_build(d, c0, c1, w->W, w->D, w->b);
    double du = arrow_solve(c0, c1, S, w->D, w->b, gu, w->g, w->step);
    /* big: the largest component (spherical units); blp: the largest change
     * of a linear predictor, s1 du + s2 dv_c is at most blp */
    double big = fabs(du), scale = 1.0 + fabs(*u);
    double blp = fabs(d->s1 * du), as2 = fabs(d->s2);
    for (int c = c0; c < c1; c++) {
      if (fabs(w->step[c]) > big) big = fabs(w->step[c]);
      if (fabs(v[c]) + 1.0 > scale) scale = fabs(v[c]) + 1.0;
      if (as2 * fabs(w->step[c]) > blp) blp = as2 * fabs(w->step[c]);
    }
    if (!R_FINITE(big) || !R_FINITE(blp)) {
      *fail = 2;
      return;
    }
    if (big <= 0.1 && blp <= 0.1) {
      *u += du;
      for (int c = c0; c < c1; c++) v[c] += w->step[c];
      if (big < 1e-7 * scale) return;
      continue;
    }
    double h0 = nested_h(d, c0, c1, *u, v), t = 1.0, hn, un;
    if (!R_FINITE(h0)) {
      *fail = 2;
      return;
    }
    int halvings = 0;
    for (;;) {
      un = *u + t * du;
      for (int c = c0; c < c1; c++) w->vnew[c] = v[c] + t * w->step[c];
      hn = nested_h(d, c0, c1, un, w->vnew);
      if (hn >= h0 - 1e-13 * (1.0 + fabs(h0)) || halvings >= 60) break;
      t *= 0.5;
      halvings++;
    }
    *u = un;
    for (int c = c0; c < c1; c++) v[c] = w->vnew[c];
  }
  if (*fail < 1) *fail = 1;
}

/* One authority (children [c0, c1)): log L_a; its modes in *u, v; the
 * conditional SDs of the spherical effects in *su, sv; if coef != NULL, the
 * gradient pieces: coef[k] per cell (g_beta += coef[k] x_k) and gs[0..1]. */
static double nested_authority(const nested_data *d, int c0, int c1, double *u, double *v,
                               double *su, double *sv, double *coef, double *gs,
                               nested_scratch *w, int *fail) {
  nested_mode(d, c0, c1, u, v, w, fail);
  double s1 = d->s1, s2 = d->s2, U = *u;
  double hmode = nested_sums_h(d, c0, c1, U, v, w->R, w->W, w->T);
  double S = arrow_build(d, c0, c1, w->W, w->D, w->b);
  w->S = S;
  double logdet = log(S);
  for (int c = c0; c < c1; c++) logdet += log(w->D[c]);
  double ll = hmode - 0.5 * logdet;
  if (!R_FINITE(ll)) *fail = 2;
  /* H^-1: uu = 1/S, uc = -(b_c/D_c)/S, cc = 1/D_c + (b_c/D_c)^2/S */
  double Huu_i = 1.0 / S;
  *su = sqrt(Huu_i);
  for (int c = c0; c < c1; c++) {
    double bd = w->b[c] / w->D[c];
    double Huc = -bd / S, Hcc = 1.0 / w->D[c] + bd * bd / S;
    sv[c] = sqrt(Hcc);
    w->lev[c] = s1 * s1 * Huu_i + 2.0 * s1 * s2 * Huc + s2 * s2 * Hcc;
  }
  if (coef == NULL) return ll;
  /* a = dL/db: a_u = s1 sum_c T_c lev_c, a_c = s2 T_c lev_c; w = H^-1 a */
  double au = 0;
  for (int c = c0; c < c1; c++) {
    au += w->T[c] * w->lev[c];
    w->g[c] = s2 * w->T[c] * w->lev[c];
  }
  au *= s1;
  double wu = arrow_solve(c0, c1, S, w->D, w->b, au, w->g, w->wc);
  w->wu = wu;
  /* beta: coef_k = r_k - t_k lev_c / 2 + v_k (s1 w_u + s2 w_c) / 2 */
  double Wtot = 0, Rtot = 0, TL = 0, TLv = 0, HucW = 0, HccW = 0, WV = 0, RV = 0,
         wcW = 0, wcRsW = 0;
  for (int c = c0; c < c1; c++) {
    double off = s1 * U + s2 * v[c], lev = w->lev[c], m = s1 * wu + s2 * w->wc[c];
    for (int k = d->cs[c]; k < d->cs[c + 1]; k++) {
      double p = sfp_plogis(d->eta[k] + off);
      double vk = d->n[k] * p * (1.0 - p);
      coef[k] = (d->s[k] - d->n[k] * p) - 0.5 * vk * (1.0 - 2.0 * p) * lev + 0.5 * vk * m;
    }
    double bd = w->b[c] / w->D[c];
    double Huc = -bd / S, Hcc = 1.0 / w->D[c] + bd * bd / S;
    Wtot += w->W[c];
    Rtot += w->R[c];
    TL += w->T[c] * lev;
    TLv += w->T[c] * lev * v[c];
    HucW += Huc * w->W[c];
    HccW += Hcc * w->W[c];
    WV += w->W[c] * v[c];
    RV += w->R[c] * v[c];
    wcW += w->wc[c] * w->W[c];
    wcRsW += w->wc[c] * (w->R[c] - s2 * w->W[c] * v[c]);
  }
  /* s1: dh = U R; dL|_b = U TL + 2 s1 W / S + 2 s2 sum Huc W_c;
   *     d2h/db ds1: u: R - s1 U W, c: -s2 U W_c */
  gs[0] += U * Rtot - 0.5 * (U * TL + 2.0 * s1 * Wtot * Huu_i + 2.0 * s2 * HucW +
                             wu * (Rtot - s1 * U * Wtot) - s2 * U * wcW);
  /* s2: dh = sum R_c v_c; dL|_b = TLv + 2 s1 sum Huc W_c + 2 s2 sum Hcc W_c;
   *     d2h/db ds2: u: -s1 sum W_c v_c, c: R_c - s2 W_c v_c */
  gs[1] += RV - 0.5 * (TLv + 2.0 * s1 * HucW + 2.0 * s2 * HccW - wu * s1 * WV + wcRsW);
  return ll;
}

/* The fixed-effects information without the third-derivative terms (the
 * change of the weights v_k with the modes), for Newton steps:
 *   I = X'VX - sum_a Q_a' H_a^-1 Q_a,  Q_a = Lambda Z_a' V X_a,
 * with H^-1 = diag(0, 1/D) + y y' / S, y = (1, -b/D):
 *   Q' H^-1 Q = sum_c s2^2 xv_c xv_c' / D_c + zeta zeta' / S,
 *   xv_c = sum_{k in c} v_k x_k,  zeta = sum_c (s1 - s2 b_c / D_c) xv_c.
 * Needs the sums of nested_authority() for this authority (W, D, b, S);
 * adds into I (p x p, upper triangle).  acc, zeta: p doubles (zero on
 * entry and exit); mark: p ints (0 on entry and exit); touched: p ints. */
static void nested_info(const nested_data *d, int c0, int c1, double U, const double *v,
                        const double *D, const double *b, double S, const int *ptr,
                        const int *col, const double *val, int p, double *I, double *acc,
                        double *zeta, int *mark, int *touched) {
  double s1 = d->s1, s2 = d->s2;
  for (int c = c0; c < c1; c++) {
    double off = s1 * U + s2 * v[c];
    int nt = 0;
    for (int k = d->cs[c]; k < d->cs[c + 1]; k++) {
      double pk = sfp_plogis(d->eta[k] + off);
      double vk = d->n[k] * pk * (1.0 - pk);
      for (int a = ptr[k]; a < ptr[k + 1]; a++) {
        int ja = col[a];
        double wa = vk * val[a];
        for (int bb = a; bb < ptr[k + 1]; bb++) I[ja + (size_t) col[bb] * p] += wa * val[bb];
        if (!mark[ja]) {
          mark[ja] = 1;
          touched[nt++] = ja;
        }
        acc[ja] += wa;
      }
    }
    double f = s2 * s2 / D[c], z = s1 - s2 * b[c] / D[c];
    for (int i = 0; i < nt; i++) {
      int ji = touched[i];
      zeta[ji] += z * acc[ji];
      for (int j = 0; j < nt; j++) {
        int jj = touched[j];
        if (ji <= jj) I[ji + (size_t) jj * p] -= f * acc[ji] * acc[jj];
      }
    }
    for (int i = 0; i < nt; i++) {
      acc[touched[i]] = 0;
      mark[touched[i]] = 0;
    }
  }
  for (int i = 0; i < p; i++) {
    if (zeta[i] == 0) continue;
    for (int j = i; j < p; j++) I[i + (size_t) j * p] -= zeta[i] * zeta[j] / S;
  }
  for (int i = 0; i < p; i++) zeta[i] = 0;
}

/* The exact Hessian of the Laplace log-likelihood in theta = (beta, s1, s2)
 * (for the standard errors). With l = h(b^, theta) - L / 2 and the modes
 * b^(theta), the total derivative of a linear predictor along theta_i is
 *   g_ki = x~_ki + z_k' B_i,  x~_k = (x_k, u, v_c),  B = db^/dtheta = H^-1 h_btheta,
 * and, differentiating the gradient of nested_authority() once more,
 *   d2l = h_thth + h_thb H^-1 h_bth                         (the modes' part)
 *       - (1/2) [L'' along (e_i, B_i), (e_j, B_j)  +  h''' (omega, ., .)],
 * omega = H^-1 dL/db (the adjoint).  L = log det H depends on theta only
 * through s1, s2 and the per-child weights W_c, in closed form:
 *   L = log S + sum_c log D_c,  S = 1 + s1^2 sum_c W_c / D_c,  D_c = 1 + s2^2 W_c,
 * so its second derivatives in (s1, s2, W) are diagonal per child plus rank
 * one.  With H's arrowhead inverse, g_k = x~_k + gamma_c + (s1 / D_c) beta_a:
 * a cell part, a child part gamma_c = (s2 / D_c) hc_c (hc_c = -s2 xv~_c + R_c e_s2,
 * xv~_c = sum_{k in c} v_k x~_k) on the child's columns, and one dense vector
 * per authority (beta_a = B_u).  Every term is then a sum over cells of
 * products of a row's non-zeros, a sum over children of products on the
 * child's columns, and dense rank-one terms per authority: O(sum_c nnz_c^2
 * + G P^2) work, O(P) scratch besides the P x P result (P = p + 2).
 * Needs nested_authority() on this authority first (R, W, T, D, b, S, lev,
 * the adjoint wu, wc).  Adds into Hm (P x P, upper triangle).  The dense
 * scratch vectors are zero on entry and exit. */
typedef struct {
  double *beta, *V1, *E1, *E2, *rho, *xv, *xt, *xc, *xa, *lhc, *lg, *lsp, *lxc, *lxv;
  int *mark, *touched;
} hess_scratch;

/* Hm[i, j] += x for the upper-triangle position of (i, j) */
#define HM_ADD(Hm, P, i, j, x) \
  ((i) <= (j) ? ((Hm)[(i) + (size_t) (j) * (P)] += (x)) : ((Hm)[(j) + (size_t) (i) * (P)] += (x)))

static void nested_hess(const nested_data *d, int c0, int c1, double U, const double *v,
                        const nested_scratch *w, const int *ptr, const int *col,
                        const double *val, int p, double *Hm, hess_scratch *h) {
  int P = p + 2, i1 = p, i2 = p + 1;
  double s1 = d->s1, s2 = d->s2, S = w->S, wu = w->wu;
  double *beta = h->beta, *xv = h->xv, *xt = h->xt, *xc = h->xc, *xa = h->xa;
  int *mark = h->mark, *touched = h->touched;
  /* beta_a = B_u = sum_c [hu_c - (b_c / D_c) hc_c] / S, hu_c = -s1 xv~_c + R_c e_s1 */
  for (int c = c0; c < c1; c++) {
    double D = w->D[c], z = s1 / D, off = s1 * U + s2 * v[c];
    for (R_xlen_t k = d->cs[c]; k < d->cs[c + 1]; k++) {
      double pk = sfp_plogis(d->eta[k] + off), wk = d->n[k] * pk * (1.0 - pk);
      for (int a = ptr[k]; a < ptr[k + 1]; a++) beta[col[a]] -= z * wk * val[a];
    }
    beta[i1] += w->R[c] - z * w->W[c] * U;
    beta[i2] += -z * w->W[c] * v[c] - w->b[c] / D * w->R[c];
  }
  for (int i = 0; i < P; i++) beta[i] /= S;
  /* sB: coefficient of beta beta'; e1b, e2b, rhob: of beta in E1, E2, rho */
  double sB = S, e1b = 0, e2b = 0, rhob = 0, Q = 0, sq2 = 0, sq22 = 0, sld22 = 0;
  for (int c = c0; c < c1; c++) {
    double D = w->D[c], W = w->W[c], T = w->T[c], R = w->R[c], vc = v[c], wcc = w->wc[c];
    double z = s1 / D, lev = w->lev[c], o = s1 * wu + s2 * wcc;
    double off = s1 * U + s2 * vc, Cs = 0, A = 0;
    int nt = 0;
    for (R_xlen_t k = d->cs[c]; k < d->cs[c + 1]; k++) {
      double pk = sfp_plogis(d->eta[k] + off), wk = d->n[k] * pk * (1.0 - pk);
      double w1 = wk * (1.0 - 2.0 * pk), w2 = wk * (1.0 - 6.0 * pk * (1.0 - pk));
      double ck = lev * w2 - o * w1, ak = -wk - 0.5 * ck;
      for (int a = ptr[k]; a < ptr[k + 1]; a++) {
        int ja = col[a];
        double x = val[a], ax = ak * x;
        for (int bb = a; bb < ptr[k + 1]; bb++) Hm[ja + (size_t) col[bb] * P] += ax * val[bb];
        if (!mark[ja]) {
          mark[ja] = 1;
          touched[nt++] = ja;
        }
        xv[ja] += wk * x;
        xt[ja] += w1 * x;
        xc[ja] += ck * x;
        xa[ja] += ax;
      }
      Cs += ck;
      A += ak;
    }
    /* the SD entries of x~_k = (x_k, u, v_c) */
    xv[i1] = U * W, xv[i2] = vc * W;
    xt[i1] = U * T, xt[i2] = vc * T;
    xc[i1] = U * Cs, xc[i2] = vc * Cs;
    xa[i1] = U * A, xa[i2] = vc * A;
    touched[nt++] = i1;
    touched[nt++] = i2;
    /* sum_k a_k x~_k x~_k': the SDs' columns (the x_k x_k' part is above) */
    for (int t = 0; t < nt; t++) {
      int i = touched[t];
      if (i <= i1) Hm[i + (size_t) i1 * P] += xa[i] * U;
      Hm[i + (size_t) i2 * P] += xa[i] * vc;
    }
    /* local vectors on the child's columns: hc, gamma, the cell-free part
     * of dW_c (sp = xt~ + T gamma; dW_c = sp + T z beta), xc~, xv~ */
    double kap = -2.0 * s1 * s1 * s2 * s2 / (S * D * D * D) - s2 * s2 * s2 * s2 / (D * D);
    double aW = T * z, kp = lev * T - o * W;
    double S1W = 2.0 * s1 / (D * D), c2 = s1 * s1 * (-4.0 * s2 * W / (D * D * D)) / S + 2.0 * s2 / (D * D);
    double SW = s1 * s1 / (D * D);
    for (int t = 0; t < nt; t++) {
      int i = touched[t];
      double hc = -s2 * xv[i] + (i == i2 ? R : 0.0), g = s2 / D * hc;
      h->lhc[t] = hc;
      h->lg[t] = g;
      h->lsp[t] = xt[i] + T * g;
      h->lxc[t] = xc[i];
      h->lxv[t] = xv[i];
    }
    for (int t = 0; t < nt; t++) {
      int i = touched[t];
      double hct = h->lhc[t] / D, spt = -0.5 * kap * h->lsp[t], xct = h->lxc[t], gt = h->lg[t];
      for (int u = 0; u < nt; u++) {
        int j = touched[u];
        if (i > j) continue;
        Hm[i + (size_t) j * P] += hct * h->lhc[u] + spt * h->lsp[u] -
                                  0.5 * (xct * h->lg[u] + gt * h->lxc[u] + Cs * gt * h->lg[u]);
      }
      double wg = h->lxv[t] + W * gt;
      h->V1[i] += -0.5 * kap * aW * h->lsp[t] - 0.5 * z * (xct + Cs * gt);
      h->E1[i] += -0.5 * S1W / S * h->lsp[t] + 0.5 * wu * wg;
      h->E2[i] += -0.5 * c2 * h->lsp[t] - 0.5 * kp / D * h->lhc[t] + 0.5 * wcc * wg;
      h->rho[i] += SW * h->lsp[t];
    }
    sB += -0.5 * kap * aW * aW - 0.5 * Cs * z * z;
    e1b += -0.5 * S1W / S * aW + 0.5 * wu * W * z - 0.5 * kp;
    e2b += -0.5 * c2 * aW + 0.5 * kp * w->b[c] / D + 0.5 * wcc * W * z;
    rhob += SW * aW;
    Q += W / D;
    sq2 += -2.0 * s2 * W * W / (D * D);
    sq22 += -2.0 * W * W / (D * D) + 8.0 * s2 * s2 * W * W * W / (D * D * D);
    sld22 += 2.0 * W / D - 4.0 * s2 * s2 * W * W / (D * D);
    for (int t = 0; t < nt; t++) {
      int i = touched[t];
      xv[i] = xt[i] = xc[i] = xa[i] = 0;
      if (i < p) mark[i] = 0;
    }
  }
  /* the authority's dense terms: beta, the pairs with e_s1 and e_s2, and
   * rho rho' / (2 S^2) (rho = dS along theta) */
  for (int i = 0; i < P; i++) {
    h->E1[i] += e1b * beta[i];
    h->E2[i] += e2b * beta[i];
    h->rho[i] += rhob * beta[i];
  }
  h->rho[i1] += 2.0 * s1 * Q;
  h->rho[i2] += s1 * s1 * sq2;
  for (int j = 0; j < P; j++) {
    for (int i = 0; i <= j; i++) {
      Hm[i + (size_t) j * P] += h->V1[i] * beta[j] + beta[i] * h->V1[j] + sB * beta[i] * beta[j] +
                                0.5 * h->rho[i] * h->rho[j] / (S * S);
    }
  }
  for (int i = 0; i < P; i++) {
    HM_ADD(Hm, P, i, i1, h->E1[i]);
    HM_ADD(Hm, P, i, i2, h->E2[i]);
  }
  Hm[i1 + (size_t) i1 * P] += h->E1[i1] - Q / S;
  Hm[i1 + (size_t) i2 * P] += -s1 * sq2 / S;
  Hm[i2 + (size_t) i2 * P] += h->E2[i2] - 0.5 * (s1 * s1 * sq22 / S + sld22);
  for (int i = 0; i < P; i++) beta[i] = h->V1[i] = h->E1[i] = h->E2[i] = h->rho[i] = 0;
}

/* ffi_glmm_nested(s, n, cstart, lstart, rows, beta, sigma, u0, what)
 *   s, n    double K: successes and trials per cell, 0 <= s <= n, n > 0
 *   cstart  integer C + 1: 0-based first cell of each child, cstart[C] = K,
 *           every child non-empty (cells sorted by child)
 *   lstart  integer G + 1: 0-based first child of each authority,
 *           lstart[G] = C, every authority non-empty (children sorted by
 *           authority)
 *   rows    the model matrix (K x p) by row: list(ptr = integer K + 1
 *           offsets from 0, col = integer 0-based columns increasing within
 *           a row, val = double)
 *   beta    double p;  sigma: double 2 (s1 authority, s2 child; any reals)
 *   u0      double G + C (authority modes, then child modes) or length 0
 *   what    integer 1: 0 = log-likelihood, 1 = also the gradient, 2 = also
 *           the fixed-effects information without third-derivative terms
 *           (see nested_info(); for Newton steps, not standard errors),
 *           3 = the gradient and the exact Hessian (nested_hess(); for the
 *           standard errors)
 * Returns list(loglik = double 1 (without the binomial coefficients),
 *   gradient = double p + 2 (beta, s1, s2) or NULL, mode = double G + C,
 *   scale = double G + C (conditional SDs of the spherical effects: sqrt of
 *   the diagonal of H^-1), loglik_cluster = double G, fail = integer 1 (1 if
 *   a mode search hit its iteration limit; 2 if a mode search or a
 *   log-likelihood term was not finite, e.g. SDs of 1e200: loglik is then
 *   not finite), info = p x p or NULL, hessian = (p + 2) x (p + 2) or NULL).
 * Memory: O(K + C + p^2) scratch. */
SEXP ffi_glmm_nested(SEXP s, SEXP n, SEXP cstart, SEXP lstart, SEXP rows, SEXP beta,
                     SEXP sigma, SEXP u0, SEXP what) {
  sfp_check_glmm_nested(s, n, cstart, lstart, rows, beta, sigma, u0, what);
  int K = Rf_length(s), p = Rf_length(beta), C = Rf_length(cstart) - 1,
      G = Rf_length(lstart) - 1;
  const int *cs = INTEGER_RO(cstart), *ls = INTEGER_RO(lstart);
  const int *ptr = INTEGER_RO(VECTOR_ELT(rows, 0)), *col = INTEGER_RO(VECTOR_ELT(rows, 1));
  const double *val = REAL_RO(VECTOR_ELT(rows, 2)), *bp = REAL_RO(beta);
  int wh = INTEGER_RO(what)[0];
  double *eta = (double *) R_alloc(K > 0 ? K : 1, sizeof(double));
  for (int k = 0; k < K; k++) {
    double acc = 0;
    for (int b = ptr[k]; b < ptr[k + 1]; b++) acc += val[b] * bp[col[b]];
    eta[k] = acc;
  }
  nested_data d = {eta, REAL_RO(s), REAL_RO(n), cs, REAL_RO(sigma)[0], REAL_RO(sigma)[1]};
  size_t Cs = C > 0 ? (size_t) C : 1;
  nested_scratch w;
  double *blk = (double *) R_alloc(10 * Cs, sizeof(double));
  w.R = blk;
  w.W = blk + Cs;
  w.T = blk + 2 * Cs;
  w.D = blk + 3 * Cs;
  w.b = blk + 4 * Cs;
  w.g = blk + 5 * Cs;
  w.step = blk + 6 * Cs;
  w.vnew = blk + 7 * Cs;
  w.lev = blk + 8 * Cs;
  w.wc = blk + 9 * Cs;
  double *coef = wh >= 1 ? (double *) R_alloc(K > 0 ? K : 1, sizeof(double)) : NULL;

  const char *names[] = {"loglik", "gradient", "mode", "scale", "loglik_cluster", "fail",
                         "info", "hessian", ""};
  SEXP out = PROTECT(Rf_mkNamed(VECSXP, names));
  SEXP ll = SET_VECTOR_ELT(out, 0, Rf_allocVector(REALSXP, 1));
  SEXP md = SET_VECTOR_ELT(out, 2, Rf_allocVector(REALSXP, (R_xlen_t) G + C));
  SEXP sc = SET_VECTOR_ELT(out, 3, Rf_allocVector(REALSXP, (R_xlen_t) G + C));
  SEXP lc = SET_VECTOR_ELT(out, 4, Rf_allocVector(REALSXP, G));
  SEXP fl = SET_VECTOR_ELT(out, 5, Rf_allocVector(INTSXP, 1));
  double *mdp = REAL(md), *scp = REAL(sc), *lcp = REAL(lc);
  if (Rf_length(u0) > 0) {
    memcpy(mdp, REAL_RO(u0), ((size_t) G + C) * sizeof(double));
  } else {
    for (R_xlen_t i = 0; i < (R_xlen_t) G + C; i++) mdp[i] = 0;
  }
  /* child modes and scales are indexed by the global child number */
  double *vm = mdp + G, *vs = scp + G;
  double *Ip = NULL, *acc = NULL, *zeta = NULL;
  int *mark = NULL, *touched = NULL;
  if (wh == 2) {
    SEXP inf = SET_VECTOR_ELT(out, 6, Rf_allocMatrix(REALSXP, p, p));
    Ip = REAL(inf);
    for (R_xlen_t i = 0; i < (R_xlen_t) p * p; i++) Ip[i] = 0;
    size_t ps = p > 0 ? (size_t) p : 1;
    acc = (double *) R_alloc(2 * ps, sizeof(double));
    zeta = acc + ps;
    mark = (int *) R_alloc(2 * ps, sizeof(int));
    touched = mark + ps;
    for (size_t i = 0; i < ps; i++) acc[i] = zeta[i] = 0, mark[i] = 0;
  }
  double *Hm = NULL;
  hess_scratch hs;
  if (wh == 3) {
    size_t P = (size_t) p + 2;
    SEXP hes = SET_VECTOR_ELT(out, 7, Rf_allocMatrix(REALSXP, p + 2, p + 2));
    Hm = REAL(hes);
    for (size_t i = 0; i < P * P; i++) Hm[i] = 0;
    double *hb = (double *) R_alloc(14 * P, sizeof(double));
    for (size_t i = 0; i < 14 * P; i++) hb[i] = 0;
    double **vecs[] = {&hs.beta, &hs.V1, &hs.E1, &hs.E2, &hs.rho, &hs.xv, &hs.xt,
                       &hs.xc, &hs.xa, &hs.lhc, &hs.lg, &hs.lsp, &hs.lxc, &hs.lxv};
    for (int i = 0; i < 14; i++) *vecs[i] = hb + i * P;
    hs.mark = (int *) R_alloc(2 * P, sizeof(int));
    hs.touched = hs.mark + P;
    for (size_t i = 0; i < 2 * P; i++) hs.mark[i] = 0;
  }
  double gs[2] = {0, 0}, total = 0, work = 0;
  int fail = 0;
  for (int a = 0; a < G; a++) {
    lcp[a] = nested_authority(&d, ls[a], ls[a + 1], mdp + a, vm, scp + a, vs, coef, gs, &w,
                              &fail);
    total += lcp[a];
    if (wh == 2) {
      /* nested_authority() left this authority's D, b, S in the scratch */
      nested_info(&d, ls[a], ls[a + 1], mdp[a], vm, w.D, w.b, w.S, ptr, col, val, p, Ip, acc,
                  zeta, mark, touched);
    }
    if (wh == 3) nested_hess(&d, ls[a], ls[a + 1], mdp[a], vm, &w, ptr, col, val, p, Hm, &hs);
    work += (double) (cs[ls[a + 1]] - cs[ls[a]]);
    if (work >= 65536.0) {
      R_CheckUserInterrupt();
      work = 0;
    }
  }
  REAL(ll)[0] = total;
  INTEGER(fl)[0] = fail;
  if (wh == 3) {
    size_t P = (size_t) p + 2;
    for (size_t j = 0; j < P; j++)
      for (size_t i = 0; i < j; i++) Hm[j + i * P] = Hm[i + j * P];
  }
  if (wh == 2) {
    for (int j = 0; j < p; j++)
      for (int i = 0; i < j; i++) Ip[j + (size_t) i * p] = Ip[i + (size_t) j * p];
  }
  if (wh >= 1) {
    SEXP gr = SET_VECTOR_ELT(out, 1, Rf_allocVector(REALSXP, (R_xlen_t) p + 2));
    double *g = REAL(gr);
    for (int j = 0; j < p; j++) g[j] = 0;
    for (int k = 0; k < K; k++)
      for (int b = ptr[k]; b < ptr[k + 1]; b++) g[col[b]] += val[b] * coef[k];
    g[p] = gs[0];
    g[p + 1] = gs[1];
  }
  UNPROTECT(1);
  return out;
}
