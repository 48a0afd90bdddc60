/* mle.c: maximum likelihood for the "other models" of the Family
 * Safeguarding protocol (`vignette("methods")`, section 8): the logit zero hurdle, the
 * zero-truncated Poisson and negative binomial (NB2) count parts, their
 * untruncated versions (for the excess-zeros check) and the two-limit Tobit.
 *
 * Every model's log-likelihood depends on observation i only through the
 * linear predictor eta_i = x_i'beta and, for NB2 and Tobit, one extra scalar
 * a (a = log theta for NB2, a = log sigma for Tobit).  So each model supplies
 * one static function giving, for one observation, the log-likelihood and
 * its first and second derivatives in (eta, a), all analytic.  A single
 * Newton-Raphson driver with step halving (and a Levenberg ridge when the
 * Hessian is not negative definite) maximises the sum, and returns the
 * per-observation scores (for cluster-robust variances) and the Hessian.
 */
#define USE_FC_LEN_T /* hidden Fortran string lengths: FCONE after "L" */
#include "sfpceval.h"
#include <Rmath.h>
#include <R_ext/Lapack.h>
#include <R_ext/BLAS.h>
#include <math.h>
#include <float.h>
#include <limits.h>

#ifndef FCONE
#define FCONE
#endif

enum { MLE_LOGIT = 0, MLE_ZTPOIS = 1, MLE_ZTNEGBIN = 2, MLE_TOBIT = 3,
       MLE_POIS = 4, MLE_NEGBIN = 5 };

/* Per-observation derivatives: l, dl/deta, dl/da, d2/deta2, d2/deta da,
 * d2/da2.  For one-parameter models the a-terms are left at 0. */
typedef struct {
  double l, de, da, dee, dea, daa;
} obs_deriv;

/* log(1 - exp(x)) for x < 0, accurately. */
static double log1mexp_(double x) {
  return x > -M_LN2 ? log(-expm1(x)) : log1p(-exp(x));
}

static void obs_logit(double y, double eta, obs_deriv *o) {
  /* y is 0/1 (1 = crossed the hurdle, i.e. a positive count) */
  double p = 1.0 / (1.0 + exp(-eta));
  double lp = -log1p(exp(-eta)); /* log p */
  double lq = -log1p(exp(eta));  /* log(1 - p) */
  if (!R_FINITE(lp)) lp = eta;
  if (!R_FINITE(lq)) lq = -eta;
  o->l = y > 0 ? lp : lq;
  o->de = (y > 0 ? 1.0 : 0.0) - p;
  o->dee = -p * (1.0 - p);
}

/* Poisson, truncated at zero when trunc != 0. */
static void obs_pois(double y, double eta, int trunc, obs_deriv *o) {
  double mu = exp(eta);
  o->l = y * eta - mu - lgamma(y + 1.0);
  o->de = y - mu;
  o->dee = -mu;
  if (trunc) {
    double L0 = -mu;                                 /* log f(0) */
    double r = exp(L0 - log1mexp_(L0));              /* f0 / (1 - f0) */
    double d0 = -mu, d00 = -mu;                      /* derivatives of L0 */
    o->l -= log1mexp_(L0);
    o->de += r * d0;
    o->dee += r * d00 + (r + r * r) * d0 * d0;
  }
}

/* NB2 with size theta = exp(a), truncated at zero when trunc != 0.  With
 * deriv == 0 only the log-likelihood is computed (line searches). */
static void obs_negbin(double y, double eta, double a, int trunc, int deriv,
                       obs_deriv *o) {
  double mu = exp(eta), th = exp(a), tm = th + mu, ltm = log(tm);
  if (!deriv) {
    o->l = lgamma(y + th) - lgamma(th) - lgamma(y + 1.0) + th * a + y * eta -
           (y + th) * ltm;
    if (trunc) o->l -= log1mexp_(th * (a - ltm));
    return;
  }
  double g = digamma(y + th) - digamma(th) + a + 1.0 - ltm - (y + th) / tm;
  double gp = trigamma(y + th) - trigamma(th) + 1.0 / th - 1.0 / tm -
              (mu - y) / (tm * tm);
  o->l = lgamma(y + th) - lgamma(th) - lgamma(y + 1.0) + th * a + y * eta -
         (y + th) * ltm;
  o->de = th * (y - mu) / tm;
  o->da = th * g;
  o->dee = -th * mu * (th + y) / (tm * tm);
  o->dea = th * (y - mu) * mu / (tm * tm);
  o->daa = th * g + th * th * gp;
  if (trunc) {
    double q = a - ltm;
    double L0 = th * q;
    double r = exp(L0 - log1mexp_(L0));
    double e = -th * mu / tm, f = th * q + th * mu / tm;
    double ee = -th * th * mu / (tm * tm), ef = -th * mu * mu / (tm * tm);
    double ff = th * q + 2.0 * th * mu / tm - th * th * mu / (tm * tm);
    double rr = r + r * r;
    o->l -= log1mexp_(L0);
    o->de += r * e;
    o->da += r * f;
    o->dee += r * ee + rr * e * e;
    o->dea += r * ef + rr * e * f;
    o->daa += r * ff + rr * f * f;
  }
}

/* Tobit, a = log sigma; status 0 interior, 1 left-censored at lo,
 * 2 right-censored at hi. */
static void obs_tobit(double y, double eta, double a, int status, double lo,
                      double hi, obs_deriv *o) {
  double s = exp(a);
  if (status == 0) {
    double z = (y - eta) / s;
    o->l = -0.5 * z * z - a - M_LN_SQRT_2PI;
    o->de = z / s;
    o->da = z * z - 1.0;
    o->dee = -1.0 / (s * s);
    o->dea = -2.0 * z / s;
    o->daa = -2.0 * z * z;
  } else {
    /* left: z = (lo - eta)/s, dz/deta = -1/s; right: z = (eta - hi)/s,
     * dz/deta = +1/s.  In both cases dz/da = -z and l = log Phi(z). */
    double sg = status == 1 ? -1.0 : 1.0;
    double z = status == 1 ? (lo - eta) / s : (eta - hi) / s;
    double lPhi = pnorm(z, 0.0, 1.0, 1, 1);
    double lam = exp(dnorm(z, 0.0, 1.0, 1) - lPhi); /* phi / Phi */
    double lp = -lam * (z + lam);                    /* d lam / dz */
    o->l = lPhi;
    o->de = sg * lam / s;
    o->da = -lam * z;
    o->dee = lp / (s * s);
    o->dea = sg * (-lp * z - lam) / s;
    o->daa = -(lp * z + lam) * (-z);
  }
}

typedef struct {
  int model, n, k, np;     /* np = k + (model has an extra parameter) */
  const double *X, *y;     /* X: n x k column-major */
  const double *Xt;        /* the same, row-major (k x n): row i contiguous */
  const double *w;         /* case weights (n), or NULL for unit weights */
  const int *status;       /* Tobit only */
  double lo, hi;
} mle_problem;

static int has_extra(int model) {
  return model == MLE_ZTNEGBIN || model == MLE_TOBIT || model == MLE_NEGBIN;
}

static void obs_eval(const mle_problem *P, int i, double eta, double a,
                     int deriv, obs_deriv *o) {
  o->l = o->de = o->da = o->dee = o->dea = o->daa = 0.0;
  switch (P->model) {
  case MLE_LOGIT: obs_logit(P->y[i], eta, o); break;
  case MLE_ZTPOIS: obs_pois(P->y[i], eta, 1, o); break;
  case MLE_POIS: obs_pois(P->y[i], eta, 0, o); break;
  case MLE_ZTNEGBIN: obs_negbin(P->y[i], eta, a, 1, deriv, o); break;
  case MLE_NEGBIN: obs_negbin(P->y[i], eta, a, 0, deriv, o); break;
  case MLE_TOBIT:
    obs_tobit(P->y[i], eta, a, P->status[i], P->lo, P->hi, o);
    break;
  }
}

/* Log-likelihood, gradient (np), Hessian (np x np, column-major) and,
 * when score != NULL, the n x np matrix of per-observation scores. */
static double mle_eval(const mle_problem *P, const double *par, double *grad,
                       double *hess, double *score) {
  int n = P->n, k = P->k, np = P->np, ex = has_extra(P->model);
  int deriv = grad != NULL || hess != NULL || score != NULL;
  double a = ex ? par[k] : 0.0, ll = 0.0;
  obs_deriv o;
  if (grad) for (int j = 0; j < np; j++) grad[j] = 0.0;
  if (hess) for (int j = 0; j < np * np; j++) hess[j] = 0.0;
  for (int i = 0; i < n; i++) {
    /* row i of X, contiguous (the sums are in the same order as by column) */
    const double *xi = P->Xt + (R_xlen_t)i * k;
    double eta = 0.0;
    for (int j = 0; j < k; j++) eta += xi[j] * par[j];
    obs_eval(P, i, eta, a, deriv, &o);
    if (P->w) {
      double wi = P->w[i];
      o.l *= wi; o.de *= wi; o.da *= wi;
      o.dee *= wi; o.dea *= wi; o.daa *= wi;
    }
    ll += o.l;
    if (grad) {
      for (int j = 0; j < k; j++) grad[j] += o.de * xi[j];
      if (ex) grad[k] += o.da;
    }
    if (score) {
      for (int j = 0; j < k; j++)
        score[i + (R_xlen_t)j * n] = o.de * xi[j];
      if (ex) score[i + (R_xlen_t)k * n] = o.da;
    }
    if (hess) {
      for (int j = 0; j < k; j++) {
        double xj = xi[j];
        if (xj == 0.0) continue;
        for (int l = j; l < k; l++)
          hess[j + l * np] += o.dee * xj * xi[l];
        if (ex) hess[j + k * np] += o.dea * xj;
      }
      if (ex) hess[k + k * np] += o.daa;
    }
    if ((i & 0xFFFF) == 0xFFFF) R_CheckUserInterrupt();
  }
  if (hess)
    for (int j = 0; j < np; j++)
      for (int l = 0; l < j; l++) hess[j + l * np] = hess[l + j * np];
  return ll;
}

/* Solve (-H + ridge I) step = grad by Cholesky; returns 0 on success. */
static int newton_step(int np, const double *hess, const double *grad,
                       double ridge, double *work, double *step) {
  int info = 0, one = 1;
  for (int j = 0; j < np * np; j++) work[j] = -hess[j];
  for (int j = 0; j < np; j++) {
    work[j + j * np] += ridge;
    step[j] = grad[j];
  }
  F77_CALL(dpotrf)("L", &np, work, &np, &info FCONE);
  if (info != 0) return info;
  F77_CALL(dpotrs)("L", &np, &one, work, &np, step, &np, &info FCONE);
  return info;
}

/* Newton-Raphson with step halving.  Converged when the largest relative
 * full Newton step is below tol.  Returns iterations used (negative if
 * maxit was reached). */
static int mle_newton(const mle_problem *P, double *par, double tol,
                      int maxit, double *ll_out) {
  int np = P->np;
  double *grad = (double *)R_alloc(np, sizeof(double));
  double *hess = (double *)R_alloc((size_t)np * np, sizeof(double));
  double *work = (double *)R_alloc((size_t)np * np, sizeof(double));
  double *step = (double *)R_alloc(np, sizeof(double));
  double *trial = (double *)R_alloc(np, sizeof(double));
  double ll = mle_eval(P, par, grad, hess, NULL);
  for (int it = 1; it <= maxit; it++) {
    double dmax = 0.0, ridge = 0.0;
    for (int j = 0; j < np; j++) dmax = fmax2(dmax, fabs(hess[j + j * np]));
    /* Levenberg: raise the ridge until -H + ridge I is positive definite */
    for (int tries = 0; newton_step(np, hess, grad, ridge, work, step) != 0;
         tries++) {
      if (tries > 30) { *ll_out = ll; return -it; }
      ridge = ridge == 0.0 ? 1e-8 * (dmax + 1.0) : ridge * 10.0;
    }
    double rel = 0.0;
    for (int j = 0; j < np; j++)
      rel = fmax2(rel, fabs(step[j]) / (1.0 + fabs(par[j])));
    double t = 1.0, ll_new = R_NegInf;
    for (int h = 0; h < 40; h++, t *= 0.5) {
      for (int j = 0; j < np; j++) trial[j] = par[j] + t * step[j];
      ll_new = mle_eval(P, trial, NULL, NULL, NULL);
      if (R_FINITE(ll_new) && ll_new >= ll - 1e-12 * (1.0 + fabs(ll))) break;
    }
    if (!R_FINITE(ll_new) || ll_new < ll - 1e-12 * (1.0 + fabs(ll))) {
      *ll_out = ll; /* no ascent possible: at the optimum to precision */
      return rel < sqrt(tol) ? it : -it;
    }
    for (int j = 0; j < np; j++) par[j] = trial[j];
    ll = mle_eval(P, par, grad, hess, NULL);
    if (rel < tol && ridge == 0.0) { *ll_out = ll; return it; }
  }
  *ll_out = ll;
  return -maxit;
}

/* ffi_mle_newton(model, X, y, weights, status, limits, start, control)
 *   model:   integer(1): 0 logit (y 0/1), 1 zero-truncated Poisson (y > 0),
 *            2 zero-truncated NB2, 3 Tobit, 4 Poisson, 5 NB2.
 *   X:       double n x k model matrix (column-major), finite.
 *   y:       double(n), finite; non-negative integers for the count models.
 *   weights: double(n) finite non-negative case weights, or double(0) for
 *            unit weights; the log-likelihood, scores and Hessian are
 *            weighted sums.
 *   status:  integer(n) for Tobit (0 interior, 1 at the left limit, 2 at
 *            the right limit); ignored otherwise (pass integer(0)).
 *   limits:  double(2) (left, right) for Tobit; ignored otherwise.
 *   start:   double(np) starting values, np = k (+1 for NB2: log theta;
 *            +1 for Tobit: log sigma).
 *   control: double(2): tol (relative Newton step), maxit.
 * Invariants (checked in R): no NA, n >= 1, X has full column rank.
 * Returns list(par, loglik, hessian (np x np), score (n x np), iter,
 *   converged).  The arguments are never modified.
 */
SEXP ffi_mle_newton(SEXP model, SEXP X, SEXP y, SEXP weights, SEXP status,
                    SEXP limits, SEXP start, SEXP control) {
  const char *fn = "ffi_mle_newton";
  int mdl = sfp_int1(model, 0, 5, fn, "model");
  sfp_check_matrix(X, REALSXP, -1, -1, fn, "X");
  R_xlen_t nx = Rf_nrows(X);
  sfp_dbl(y, nx, fn, "y");
  sfp_dbl(weights, -1, fn, "weights");
  if (XLENGTH(weights) != 0 && XLENGTH(weights) != nx)
    sfp_abort(fn, "weights", "must have length 0 or %lld", (long long) nx);
  if (mdl == MLE_TOBIT) sfp_check_codes(sfp_int(status, nx, fn, "status"), nx, 0, 2, 0, fn, "status");
  else sfp_int(status, -1, fn, "status");
  sfp_dbl(limits, 2, fn, "limits");
  sfp_dbl(start, Rf_ncols(X) + has_extra(mdl), fn, "start");
  const double *ctl = sfp_dbl(control, 2, fn, "control");
  if (!(ctl[0] >= 0) || !(ctl[1] >= 0 && ctl[1] <= INT_MAX))
    sfp_abort(fn, "control", "must hold tol >= 0 and maxit in 0..%d", INT_MAX);
  mle_problem P;
  P.model = mdl;
  P.n = Rf_nrows(X);
  P.k = Rf_ncols(X);
  P.np = P.k + has_extra(P.model);
  P.X = REAL(X);
  {
    double *xt = (double *)R_alloc((size_t)P.n * P.k, sizeof(double));
    for (int j = 0; j < P.k; j++)
      for (int i = 0; i < P.n; i++) xt[j + (R_xlen_t)i * P.k] = P.X[i + (R_xlen_t)j * P.n];
    P.Xt = xt;
  }
  P.y = REAL(y);
  P.w = XLENGTH(weights) > 0 ? REAL(weights) : NULL;
  P.status = INTEGER(status);
  P.lo = REAL(limits)[0];
  P.hi = REAL(limits)[1];
  double tol = REAL(control)[0];
  int maxit = (int)REAL(control)[1];
  int np = P.np;

  SEXP out = PROTECT(Rf_allocVector(VECSXP, 6));
  SEXP nms = PROTECT(Rf_allocVector(STRSXP, 6));
  const char *names[] = {"par", "loglik", "hessian", "score", "iter",
                         "converged"};
  for (int j = 0; j < 6; j++) SET_STRING_ELT(nms, j, Rf_mkChar(names[j]));
  Rf_setAttrib(out, R_NamesSymbol, nms);

  SET_VECTOR_ELT(out, 0, Rf_allocVector(REALSXP, np));
  double *par = REAL(VECTOR_ELT(out, 0));
  for (int j = 0; j < np; j++) par[j] = REAL(start)[j];
  double ll = 0.0;
  int it = mle_newton(&P, par, tol, maxit, &ll);

  SET_VECTOR_ELT(out, 2, Rf_allocMatrix(REALSXP, np, np));
  SET_VECTOR_ELT(out, 3, Rf_allocMatrix(REALSXP, P.n, np));
  ll = mle_eval(&P, par, (double *)R_alloc(np, sizeof(double)),
                REAL(VECTOR_ELT(out, 2)), REAL(VECTOR_ELT(out, 3)));
  SET_VECTOR_ELT(out, 1, Rf_ScalarReal(ll));
  SET_VECTOR_ELT(out, 4, Rf_ScalarInteger(it < 0 ? -it : it));
  SET_VECTOR_ELT(out, 5, Rf_ScalarLogical(it > 0));
  UNPROTECT(2);
  return out;
}
