# wild_boot(): wild cluster restricted (WCR) bootstrap-t for one coefficient
# of a linear did_fit(), and the Kline-Santos score bootstrap for a logit
# did_fit() (`vignette("methods")`, section 3; Roodman, MacKinnon, Nielsen & Webb 2019).
#
# Fast algebra (linear model with absorbed fixed effects D, absorbed design
# Xt, weights W, M = (Xt'W Xt)^{-1}, m = M e_j):
#   restricted residuals u(r) = u0 + r z, u0 = M_{Xt[-j]} yt, z = -M_{Xt[-j]} xt_j;
#   a_g(u)   = m' Xt_g' W_g u_g                     (numerator: beta*_j - r = a'v)
#   K_hg(u)  = delta_hg a_h - Phi_h' (D'WD)^+ Psi_g - Xi_h' M Omega_g
#     with Phi_h = D_h'W_h Xt_h m, Psi_g = D_g'W_g u_g, Xi_h = Xt_h'W_h Xt_h m,
#     Omega_g = Xt_g'W_g u_g, so that the bootstrap residual scores are
#     m' Xt_h'W_h (M_Z (v o u))_h = (K v)_h, the fixed-effect projection
#     included (needed when an effect, e.g. year, crosses clusters);
#   t*(v; r) = a(r)'v / sqrt(c sum_h (K(r) v)_h^2), c the CR1 factor.
# a and K are affine in r, so each draw reduces to five scalars (wildboot.c)
# and p(r) for the test inversion costs O(B).

#' Wild cluster restricted bootstrap (and score bootstrap) for a
#' difference-in-differences coefficient
#'
#' For a linear [did_fit()], the wild cluster restricted bootstrap-t (WCR,
#' Cameron, Gelbach & Miller 2008) of \eqn{H_0: \beta_{param} = r}: the model
#' is refitted under the null, the restricted residuals are multiplied by
#' cluster-level weights, and each bootstrap sample's CR1 t-statistic is
#' compared with the observed one. It uses the single-restriction algebra of
#' Roodman et al. (2019) (`vignette("methods")`, section 3), including the projection on
#' absorbed fixed effects that cross clusters, so a draw costs
#' \eqn{O(G^2)}. With `B = "enumerate"` all \eqn{2^G} Rademacher vectors
#' (G <= 12) or all \eqn{6^G} Webb vectors (G <= 6) are used; otherwise (or
#' with Mammen weights) `B` random draws (10,000 by default when enumeration
#' is impossible), seeded by `seed`.
#'
#' Two p-values are reported: `p_value`, with the strict inequality
#' \eqn{\#\{|t^*| > |t|\}/B} (as boottest), and `p_value_geq` with
#' \eqn{\ge} (ties counted; Webb 2013: with few clusters p is only known up
#' to that interval). Ties are judged with a relative tolerance of 1e-8. The
#' confidence interval inverts the strict-inequality test: p(r) is evaluated
#' on a 25-point grid each side of the estimate and the crossing of
#' \eqn{1 - level} is found by bisection. When the number of distinct draws
#' bounds the smallest attainable p-value above \eqn{1 - level}, the result
#' says so.
#'
#' For a binomial [sw_glmm()] fit (the Family Valued GLMM), `variant`
#' (through `...`) chooses the test; see the section "Binomial GLMM" for
#' the default, which with fewer than 10 clusters studentises each draw by
#' a linearised CR3 jackknife. With
#' `variant = "score"`, the same score
#' bootstrap uses the scores of each cluster's integrated (Laplace or
#' adaptive quadrature) log-likelihood at the fit restricted to `param = r`
#' (r times `param`'s column an offset in the linear predictor) and the Hessian
#' there (`vignette("methods")` section 3). The confidence interval inverts
#' this test in r with the same weight vectors at every r: each p(r) is a
#' restricted refit, started from the nearest one already made moved along
#' its tangent (so a step or two of Newton's method), and the limits are
#' found on a 9-point grid, scanned outward from the estimate to its first
#' rejected point, and by bisection to \eqn{10^{-3}} standard
#' errors: each limit is the first crossing of \eqn{1 - level} moving out
#' from the estimate (where p(r) is not monotone, an acceptance region
#' further out is not joined to the interval) (inside a bracket of refits 0.02 standard errors apart, the cluster
#' contributions are interpolated linearly between them); a side still
#' accepted 128 standard errors from the estimate is `NA`. `refits` in the
#' result counts the refits and their Newton iterations.
#'
#' For a logistic fit (`family = "binomial"`) and a conditional logit
#' (`"conditional_logit"`), the score bootstrap of Kline & Santos (2012): the
#' restricted ML fit's cluster scores \eqn{s_g} and Hessian give
#' \eqn{a_g = (H^{-1} s_g)_{param}};
#' \eqn{t^* = \sum_g v_g a_g / \sqrt{\sum_g (v_g a_g - \pi_g \sum_h v_h a_h)^2}}
#' with \eqn{\pi_g = N_g/N}, no refitting per draw. For the logit the
#' restricted fit absorbs the fixed effects inside IRLS (the param row of
#' \eqn{H^{-1}} by Frisch-Waugh-Lovell). The confidence interval inverts
#' this test in r with the same weight vectors at every r, found on a grid and
#' by bisection to \eqn{10^{-6}} standard errors (`conf_int = FALSE` skips
#' it). Each p(r) is a restricted refit started from the nearest one already
#' made moved along its tangent (by the implicit function theorem on the
#' restricted score equations), so it takes one or two IRLS (Newton) steps
#' and ends where a refit from the data ends, to the optimiser's tolerance;
#' the grid is tested outward only up to its first rejection, and inside a
#' bracket of refits 0.01 standard errors wide the cluster contributions are
#' interpolated (quadratic through the bracket's ends and the nearest other
#' refit; a is smooth in r, so the error is far below the \eqn{10^{-6}}
#' standard errors of the limits). `refits` in the result counts the
#' restricted refits.
#'
#' @param fit A [did_fit()] object (any family), or a
#'   binomial [sw_glmm()] fit.
#' @param param Name of the coefficient to test (default `"treated"`).
#' @param weights `"webb"` (default; six-point, `vignette("methods")`, section 0 item 7),
#'   `"rademacher"` or `"mammen"`.
#' @param B `"enumerate"` (default) or a number of random draws.
#' @param level Confidence level of the interval (default 0.95).
#' @param r The null value (default 0).
#' @param seed Optional integer seed for random draws (the global RNG state is
#'   restored afterwards).
#' @param conf_int Compute the confidence interval by test inversion
#'   (default `TRUE`; set `FALSE` in simulations to save time).
#' @param ... For a gaussian [sw_glmm()] fit, `variant`: see the section
#'   "Linear mixed models"; for a binomial one, `variant` `"auto"` (default),
#'   `"score_cr3"`, `"CR3t"` or `"score"`: see the section "Binomial GLMM".
#'   A [did_fit()] takes none (an error names them).
#' @return An object of class `wild_boot`: a list with `param`, `estimate`,
#'   `null`, `statistic` (observed CR1 t), `p_value` (strict), `p_value_geq`,
#'   `conf_int`, `level`, `B`, `enumerated`, `weights`, `p_min` (smallest
#'   attainable p-value with ties counted), `note`, `tstar` (bootstrap t at r)
#'   and `method`; for a binomial [sw_glmm()] fit also `variant`, and for
#'   its score bootstraps (`"score"`, `"score_cr3"`) `scores` (cluster x
#'   parameter), `restricted` (the restricted estimates at r) and `refits`
#'   (and for `"score_cr3"` `std.error`, the linearised jackknife's); for its CR3 t-test
#'   `std.error`, `df`, `jackknife` (the leave-one-cluster-out estimates)
#'   and `refits`; for a logit or conditional logit [did_fit()] also
#'   `refits` (the number of restricted refits).
#' @examples
#' set.seed(1)
#' d <- expand.grid(child = 1:30, la = letters[1:6], year = 2015:2019)
#' d$treated <- as.integer(d$la %in% c("a", "b", "c") & d$year >= 2018)
#' d$y <- 0.1 * d$treated + rnorm(nrow(d))
#' fit <- did_fit(y ~ treated | la + year, d, cluster = ~la)
#' wild_boot(fit, "treated", weights = "webb")
#' @export
wild_boot <- function(fit, param = "treated", weights = c("webb", "rademacher", "mammen"),
                      B = "enumerate", level = 0.95, r = 0, seed = NULL, conf_int = TRUE, ...) {
  if (!inherits(fit, c("did_fit", "sw_glmm"))) {
    stop_arg("fit", sprintf("must be a did_fit() or a binomial sw_glmm() object, not %s", class(fit)[1]),
             "fit the model with did_fit() or sw_glmm() first.")
  }
  weights <- match_choice(if (is.character(weights)) weights[1] else weights,
                          c("webb", "rademacher", "mammen"), "weights")
  level <- check_number(level, "level", 0, 1, lower_open = TRUE, upper_open = TRUE,
                        fix = "give e.g. level = 0.95.")
  if (!is.numeric(r) || length(r) != 1L || !is.finite(r)) {
    stop_arg("r", sprintf("must be a finite number, not %s", describe_value(r)), "give the null value, e.g. r = 0.")
  }
  if (inherits(fit, "sw_glmm") && isTRUE(fit$nested) && fit$family$family == "binomial") {
    stop_arg("fit", "is a logit with nested random intercepts `(1 | la / child_id)`, for which wild_boot() has no score bootstrap",
             "use perm_test() for few-cluster inference, or the authority intercept alone `(1 | la)`.")
  }
  if (inherits(fit, "sw_glmm") && is.null(fit$cells)) return(lmm_wild_boot(fit, param, weights, B, level, r, seed, conf_int, ...))
  if (inherits(fit, "sw_glmm")) return(glmm_wild_boot(fit, param, weights, B, level, r, seed, conf_int, ...))
  if (...length()) {
    nm <- names(list(...)) %||% character(...length())
    nm <- ifelse(nzchar(nm), nm, paste0("unnamed argument ", seq_along(nm)))
    stop_arg("...", sprintf("has arguments a did_fit() does not use: %s", paste(nm, collapse = ", ")),
             "drop them; a did_fit() takes param, weights, B, level, r, seed and conf_int (`variant` is for sw_glmm() fits).")
  }
  if (!is.character(param) || length(param) != 1L || !param %in% names(fit$coefficients)) {
    got <- if (is.character(param)) paste0("\"", paste(param, collapse = ", "), "\"") else describe_value(param)
    stop_arg("param", sprintf("must name one coefficient of the fit (got %s)", got),
             sprintf("use one of: %s.", paste(names(fit$coefficients), collapse = ", ")))
  }
  G <- fit$n_clusters
  few_treated_warn_(fit$n_treated_clusters, G, weights, "wild_boot()")
  draws <- boot_draws(G, weights, B, seed)
  res <- if (fit$family == "gaussian") wcr_linear(fit, param, draws, level, r, isTRUE(conf_int)) else
    score_boot(fit, param, draws, level, r, isTRUE(conf_int))
  finish_boot(res, draws, param, weights, level, r, G)
}

# The fields every bootstrap result carries, and a note when the number of
# distinct draws bounds the smallest attainable p-value (ties counted: with
# enumeration v and -v give the same |t*|, and v = 1 reproduces t).
finish_boot <- function(res, draws, param, weights, level, r, G) {
  res$param <- param
  res$weights <- weights
  res$B <- ncol(draws$V)
  res$enumerated <- draws$enumerated
  res$level <- level
  res$null <- r
  res$n_clusters <- G
  res$p_min <- if (draws$enumerated) 2 / res$B else 1 / res$B
  res$note <- if (res$p_min > 1 - level) {
    sprintf(paste0("With G = %d clusters and %s weights there are only %s distinct draws: the smallest attainable ",
                   "p-value (ties counted) is %.4g > %.4g, so the test cannot reject at that level%s."),
            G, weights, format(res$B, big.mark = ","), res$p_min, 1 - level,
            if (weights == "rademacher" && G <= 6) "; use weights = \"webb\"" else "")
  } else NULL
  class(res) <- "wild_boot"
  res
}

boot_draws <- function(G, weights, B, seed) {
  type <- match(weights, c("rademacher", "webb", "mammen"))
  enumerated <- FALSE
  if (identical(B, "enumerate")) {
    if (weights == "rademacher" && G <= 12) {
      B <- 2^G
      enumerated <- TRUE
    } else if (weights == "webb" && G <= 6) {
      B <- 6^G
      enumerated <- TRUE
    } else {
      B <- 9999L
      message(sprintf("wild_boot(): %s weights cannot be enumerated with G = %d clusters; using B = 9999 random draws.",
                      weights, G))
    }
  } else if (!is.numeric(B) || length(B) != 1L || !is.finite(B) || B < 1 || B != round(B)) {
    stop_arg("B", sprintf("must be \"enumerate\" or a whole number of draws of at least 1, not %s",
                          describe_value(B)), "for example B = 9999.")
  }
  if (as.double(B) * G > 2.5e7) {
    stop_arg("B", sprintf("asks for %s draws of %d cluster weights (%.1f GB)", format(B, big.mark = ","), G,
                          8 * as.double(B) * G / 1e9),
             sprintf("use at most B = %s (9,999 is usual).", format(floor(2.5e7 / G), big.mark = ",")))
  }
  B <- as.integer(B)
  draw <- function() .Call(ffi_boot_weights, as.integer(G), as.integer(type), B, enumerated)
  # a seed draws from its own stream and leaves the caller's random state untouched
  V <- if (!enumerated && !is.null(seed)) with_seed(seed, draw()) else draw()
  list(V = V, enumerated = enumerated)
}

# residuals of weighted LS of v on X (no fixed effects: X is absorbed already)
wls_resid <- function(X, v, w) .Call(ffi_wls, X, v, w, 1e-7)$resid

wcr_linear <- function(fit, param, draws, level, r, want_ci = TRUE) {
  X <- fit$X
  j <- match(param, colnames(X))
  w <- fit$weights
  ww <- if (is.null(w)) rep(1, nrow(X)) else w
  yt <- fit$fitted_absorbed + fit$residuals
  Xmj <- X[, -j, drop = FALSE]
  u0 <- wls_resid(Xmj, yt, w)
  z <- -wls_resid(Xmj, X[, j], w)
  M <- fit$bread
  m <- M[, j]
  cl <- fit$cluster
  G <- fit$n_clusters
  xm <- drop(X %*% m)
  Xi <- rowsum(X * (ww * xm), cl, reorder = TRUE)              # G x k
  fe <- fit$fe
  L <- fe$L
  Phi <- NULL
  if (L > 0) {
    if (L > 3000L) stop("wild_boot() supports at most 3000 fixed-effect levels.", call. = FALSE)
    Dplus <- fit$Dplus %||% pinv_sym(fe_crossprod(fe, w, L))$inv
    lc <- function(v) {
      out <- matrix(0, L, G)
      for (f in seq_len(ncol(fe$codes))) {
        s <- rowsum(v, fe$codes[, f] + L * (cl - 1L))
        out[as.numeric(rownames(s)) + 1] <- out[as.numeric(rownames(s)) + 1] + s[, 1]
      }
      out
    }
    Phi <- lc(ww * xm)
    PhiD <- crossprod(Phi, Dplus)                               # G x L
  }
  aK <- function(u) {
    Om <- rowsum(X * (ww * u), cl, reorder = TRUE)              # G x k
    a <- drop(Om %*% m)
    K <- diag(a, G) - Xi %*% M %*% t(Om)
    if (L > 0) K <- K - PhiD %*% lc(ww * u)
    list(a = a, K = K)
  }
  p0 <- aK(u0)
  p1 <- aK(z)
  st <- .Call(ffi_wcr_stats, draws$V, p0$a, p1$a, p0$K, p1$K)
  cf <- cr1_factor(fit)
  beta <- unname(fit$coefficients[j])
  k1 <- rowSums(p0$K)
  se <- sqrt(cf * sum(k1^2))
  res <- wcr_invert(st, beta, se, cf, r, level, want_ci)
  c(list(method = "wild cluster restricted bootstrap-t (CR1)"),
    res[c("estimate", "statistic")], list(std.error = se),
    res[c("p_value", "p_value_geq", "conf_int", "tstar")])
}

# The Kline-Santos score bootstrap for the logit and the conditional logit:
# the cluster contributions a_g(r) = (H^{-1} s_g)_param of the fit restricted
# to param = r (refitted with param * r as an offset), and the confidence
# interval by inverting the test in r with the same draws at every r. Each
# p(r) is a restricted refit started from the nearest one already made,
# moved along the tangent, so it takes a step or two of IRLS / Newton (the
# logit's starts carry n-vectors: only the last `keep_starts` are kept, O(rows)
# memory). The grid is tested outward only up to its first rejection
# (invert_test(lazy = TRUE)), and once bisection has narrowed a bracket of
# refits to `interp` standard errors, a_g(r) inside it is the quadratic
# through the bracket's ends and the nearest other refit (a is smooth in r:
# the error is of order interp^3 se^3 |a'''| / 10, far below the 1e-6 se the
# limits are found to), so the last bisection steps cost no refit;
# interp = 0 refits at every r.
score_boot <- function(fit, param, draws, level, r, want_ci = TRUE, keep_starts = 4L, interp = 0.01) {
  logit <- fit$family == "binomial"
  pig <- tabulate(fit$cluster, fit$n_clusters) / length(fit$cluster)
  beta <- unname(fit$coefficients[param])
  # restricted fits that did not converge: counted, and one warning at the end
  refits <- 0L
  failed <- NULL
  made <- list()
  got <- list(r = numeric(), a = list())
  parts <- if (logit) logit_score_parts(fit, param)
  a_of <- function(rr) {
    near <- if (length(made)) made[[which.min(abs(vapply(made, `[[`, 0, "r") - rr))]]
    a <- if (logit) logit_score_contrib(fit, param, rr, start = near, parts = parts) else
      clogit_score_contrib(fit, param, rr, start = near)
    made <<- c(if (logit) utils::tail(made, keep_starts - 1L) else made, list(attr(a, "start")))
    refits <<- refits + 1L
    st <- attr(a, "convergence")
    if (!st$converged) failed <<- c(failed, list(st))
    got$r <<- c(got$r, rr)
    got$a <<- c(got$a, list(as.vector(a)))
    as.vector(a)
  }
  res <- score_boot_test(a_of(r), pig, draws$V, beta)
  if (want_ci) {
    se <- sqrt(fit$vcov[param, param])
    pv <- function(rr) {
      a <- score_between(got, rr, interp * se) %||% a_of(rr)
      score_boot_test(a, pig, draws$V, beta)$p_value
    }
    res$conf_int <- invert_test(pv, beta, se, 1 - level, lazy = TRUE)
  }
  res$refits <- refits
  if (length(failed)) {
    warn_not_converged(sprintf("wild_boot(): %d of %d restricted refits of the score bootstrap (the first)",
                               length(failed), refits), failed[[1L]],
                       if (logit) "raise `maxit` in did_fit() (e.g. maxit = 1e5), or check for a covariate that (nearly) separates the outcome." else
                         "check for a covariate that (nearly) separates the outcome within strata.")
  }
  res
}

# a(rr) from the refits made (got: their r and a) when rr lies in a bracket
# of refits at most h wide: the quadratic through its two ends and the
# nearest other refit within 2 h of the bracket (linear when there is none
# there); NULL otherwise (a refit is needed).
score_between <- function(got, rr, h) {
  r <- got$r
  if (!(h > 0) || !any(r <= rr) || !any(r >= rr)) return(NULL)
  lo <- which(r == max(r[r <= rr]))[1]
  hi <- which(r == min(r[r >= rr]))[1]
  if (r[hi] - r[lo] > h) return(NULL)
  if (r[hi] == r[lo]) return(got$a[[lo]])
  x <- r[c(lo, hi)]
  third <- which(r != x[1] & r != x[2] & abs(r - rr) <= 2 * h + (x[2] - x[1]))
  idx <- c(lo, hi, if (length(third)) third[which.min(abs(r[third] - rr))])
  x <- r[idx]
  wt <- vapply(seq_along(idx), function(i) prod((rr - x[-i]) / (x[i] - x[-i])), 0)
  drop(do.call(cbind, got$a[idx]) %*% wt)
}

# Confidence limits {r: p(r) >= alpha} (strict = TRUE: p(r) > alpha, for
# tests that reject when p <= alpha) by test inversion: from the estimate,
# step out by `step` (2 se by default; doubling, at most max_double times)
# until p leaves the acceptance region, then an n_grid-point grid (25 by
# default; fewer where each p(r) is a costly refit) and bisection
# (at most max_bisect steps) to rel * se on the first crossing each side
# (lazy = TRUE: the grid tested outward only up to its first rejection). A
# side still accepted after max_double doublings is `side * unbounded` (NA,
# or Inf for an interval that is truly unbounded); when the estimate itself
# is rejected both limits are NA. The package's one test inversion: the
# score bootstraps, the linear and LMM wild cluster bootstraps (through
# wcr_invert()), few_treated_test() and the randomisation inference of
# aggregate_att().
invert_test <- function(pv, beta, se, alpha, rel = 1e-6, max_double = 30,
                        max_bisect = Inf, step = 2 * se, strict = FALSE,
                        unbounded = NA_real_, n_grid = 25L, lazy = FALSE) {
  ci <- c(NA_real_, NA_real_)
  if (!is.finite(se) || se <= 0 || !is.finite(beta) || !is.finite(step) || step <= 0) return(ci)
  accept <- if (strict) function(r) pv(r) > alpha else function(r) pv(r) >= alpha
  if (!accept(beta)) return(ci)
  for (side in c(-1, 1)) {
    width <- step
    it <- 0
    while (it < max_double && accept(beta + side * width)) {
      width <- width * 2
      it <- it + 1
    }
    # the last doubled width is tested too: unbounded only if accepted
    if (it >= max_double && accept(beta + side * width)) {
      ci[(side + 3) / 2] <- side * unbounded
      next
    }
    grid <- beta + side * width * seq(0, 1, length.out = n_grid)
    # the ends are known: beta accepted, beta + side * width not
    ok <- if (lazy) invert_grid_lazy(accept, grid) else c(TRUE, vapply(grid[-c(1L, n_grid)], accept, NA), FALSE)
    first <- which(!ok)[1]
    lo <- grid[first - 1]
    hi <- grid[first]
    b <- 0
    while (abs(hi - lo) > rel * se && b < max_bisect) {
      mid <- (lo + hi) / 2
      if (accept(mid)) lo <- mid else hi <- mid
      b <- b + 1
    }
    ci[(side + 3) / 2] <- (lo + hi) / 2
  }
  ci
}

# invert_test(lazy = TRUE)'s grid: the points tested outward from the
# estimate only up to the first rejected one (the only one the limit needs;
# the rest NA), for tests whose p(r) is costly.
invert_grid_lazy <- function(accept, grid) {
  n <- length(grid)
  ok <- c(TRUE, rep(NA, n - 2L), FALSE)
  for (i in seq_len(n - 2L) + 1L) {
    ok[i] <- accept(grid[i])
    if (!ok[i]) break
  }
  ok
}

# a_g(r) for a logit did_fit(): restricted IRLS with the fixed effects
# absorbed, then (by Frisch-Waugh-Lovell) the param row of the inverse
# Hessian applied to cluster g's score is (M Xt_g' w_g (y_g - mu_g))_param,
# Xt the design demeaned with the restricted working weights. `start`: NULL
# (IRLS from the data) or an earlier restricted fit's attr(, "start"),
# list(r, eta, coef, tangent, dcoef), whose linear predictor
# and coefficients moved along the tangent to r start IRLS (a warm start;
# list(r, eta) alone moves only the offset). The tangent is the implicit
# function theorem on the restricted score equations: d eta / dr = (I - P)
# x_param, P the working-weighted projection on the other columns and the
# fixed effects, i.e. Xt m / m_param with m = M[, param] (the partitioned
# inverse), and d coef / dr = m_(-param) / m_param. From a start that close
# IRLS takes one step (two from a start moved by the offset alone). `parts`:
# logit_score_parts(), made once per inversion.
logit_score_contrib <- function(fit, param, r, start = NULL, parts = logit_score_parts(fit, param)) {
  ctrl <- fit$ctrl %||% did_control()
  w <- fit$weights
  ww <- if (is.null(w)) 1 else w
  dr <- if (is.null(start)) 0 else r - start$r
  xj <- parts$xj
  # param's column demeaned with the others at the final working weights
  # (last in Xt and the bread): the bread of the full design, M[, param]
  rf <- irls_fe(fit$y, parts$X_other, parts$codes, fit$fe$nlev, w,
                offset = r * xj, ctrl = ctrl,
                eta_start = if (!is.null(start)) start$eta + dr * (start$tangent %||% xj),
                coef_start = if (!is.null(start$tangent)) start$coef + dr * start$dcoef,
                extra = xj)
  q <- ncol(rf$Xt)
  if (ncol(rf$bread) < q) {
    stop_arg("param", sprintf("`%s` is collinear with the other columns and fixed effects at the restricted fit (r = %g)", param, r))
  }
  m <- rf$bread[, q]
  xm <- drop(rf$Xt %*% m)                                     # a_g = sum_(i in g) xm_i w_i (y_i - mu_i)
  a <- rowsum(xm * (ww * (fit$y - rf$mu)), fit$cluster, reorder = TRUE)[, 1]
  dcoef <- rep(NA_real_, ncol(parts$X_other))
  dcoef[rf$keep] <- m[-q] / m[q]
  structure(unname(a), convergence = rf$convergence,
            start = list(r = r, eta = rf$eta, coef = rf$coef, tangent = xm / m[q], dcoef = dcoef))
}

# What every restricted logit refit of param uses, made once per inversion:
# the other columns, param's column and the fixed-effect codes.
logit_score_parts <- function(fit, param) {
  j <- match(param, colnames(fit$X_raw))
  list(X_other = fit$X_raw[, -j, drop = FALSE], xj = fit$X_raw[, j], codes = local_codes(fit$fe))
}

# a_g(r) for a conditional logit did_fit(): restricted Newton fit, then the
# cluster score sums and information at the restricted coefficients
# (clogit.c; no n x K matrix). `start`: NULL (Newton from zero) or an
# earlier restricted fit's attr(, "start"), list(r, coef, dcoef), whose
# coefficients moved along the tangent d coef / dr = -H_(-j,-j)^-1 H_(-j,j)
# (the implicit function theorem on the restricted score equations, H the
# information there) to r start Newton.
clogit_score_contrib <- function(fit, param, r, start = NULL) {
  cd <- fit$clogit
  j <- match(param, colnames(cd$X))
  rf <- clogit_newton(cd$y, cd$X[, -j, drop = FALSE], cd$w, cd$s, offset = r * cd$X[, j],
                      fe = cd$fe, free = cd$free,
                      start = if (!is.null(start)) start$coef + (r - start$r) * start$dcoef)
  b <- append(rf$coef, r, after = j - 1L)
  sh <- clogit_scores(cd, b, fit$cluster[cd$rows], fit$n_clusters)
  Hi <- solve(sh$H)
  dcoef <- tryCatch(-solve(sh$H[-j, -j, drop = FALSE], sh$H[-j, j]), error = function(e) 0 * rf$coef)
  structure(drop(sh$S %*% Hi[, j]), convergence = rf$convergence,
            start = list(r = r, coef = rf$coef, dcoef = dcoef))
}

# Kline-Santos score bootstrap from the cluster contributions a_g = R H^-1 s_g
# and cluster shares pi_g (`vignette("methods")`, section 3): t*(v) = N*(v) / sqrt(V*(v)),
# N* = sum_g v_g a_g, V* = sum_g (v_g a_g - pi_g N*)^2; v = 1 gives t.
score_boot_test <- function(a, pig, V, estimate) {
  va <- V * a
  Nst <- colSums(va)
  Vst <- colSums((va - outer(pig, Nst))^2)
  tst <- Nst / sqrt(Vst)
  t0 <- sum(a) / sqrt(sum((a - pig * sum(a))^2))
  tol <- 1e-8 * max(1, abs(t0))
  list(method = "score bootstrap (Kline & Santos)", estimate = estimate,
       statistic = t0, std.error = NA_real_, p_value = mean(abs(tst) > abs(t0) + tol),
       p_value_geq = mean(abs(tst) >= abs(t0) - tol), conf_int = c(NA_real_, NA_real_),
       tstar = tst)
}

#' @rdname wild_boot
#' @section Binomial GLMM:
#' For a binomial [sw_glmm()] fit (a random-intercept logit whose grouping is
#' the cluster, e.g. the authority), `variant` (passed through `...`) is
#' `"score_cr3"`, `"CR3t"`, `"score"` or `"auto"`:
#'
#' * `"score_cr3"`: the score bootstrap (below) with each draw's t
#'   studentised by a linearised CR3 jackknife, the WCR33-type
#'   studentisation of MacKinnon, Nielsen & Webb (2023) carried to the
#'   Kline-Santos score bootstrap. At the fit restricted to `param = r`, with
#'   \eqn{s_h} the scores and \eqn{H_h} the Hessian of cluster h's
#'   integrated log-likelihood (exact for the Laplace approximation; with
#'   adaptive quadrature by forward differences of its gradient) and
#'   \eqn{H = \sum_h H_h}, \eqn{a_h = (H^{-1} s_h)_{param}}; for a weight
#'   vector v the one-step estimate without cluster g moves by
#'   \eqn{((H - H_g)^{-1} \sum_{h \ne g} v_h s_h)_{param}}, so
#'   \eqn{(Jv)_g = \sum_{h \ne g} v_h ((H - H_g)^{-1} s_h)_{param} - a'v}
#'   and \eqn{t^*(v) = a'v / \sqrt{\frac{G-1}{G}\sum_g (Jv)_g^2}}, the
#'   observed t being \eqn{t^*(1)} (`std.error` its denominator). No refit
#'   per draw or per cluster: one restricted fit and G Hessians. At the
#'   boundary (sigma = 0) sigma is not a free parameter and the Hessians are
#'   the plain logit's. A column that only cluster g identifies (e.g. an
#'   authority-level covariate only that authority has) makes \eqn{H - H_g}
#'   singular: it is left out of cluster g's term (as the CR3 t-test leaves
#'   it out of that refit), and the note says so; when leaving out a cluster
#'   loses `param` itself the jackknife is not defined and the score
#'   bootstrap runs, with a warning, `method` saying why. The interval
#'   inverts this test in r with the same weight vectors at every r, as for
#'   `"score"` (each p(r) a restricted refit and its G Hessians).
#' * `"CR3t"`: the t-test with the CR3 (leave-one-cluster-out jackknife)
#'   standard error, \eqn{se^2 = \frac{G-1}{G}\sum_g (\hat\beta_{(g)} -
#'   \hat\beta)^2} with \eqn{\hat\beta_{(g)}} the maximum likelihood
#'   estimate of the GLMM (same approximation, Laplace or adaptive
#'   quadrature) without cluster g (MacKinnon, Nielsen & Webb 2023), against
#'   a t distribution with G - 1 degrees of freedom; the interval is
#'   \eqn{\hat\beta \mp t_{G-1} se}. Each of the G refits starts from
#'   the full fit (its estimates and conditional modes) and takes a few
#'   Newton steps; one at the boundary (random-intercept SD below
#'   `control$boundary_tol`) is the plain logit, as in [sw_glmm()]. A column
#'   a leave-one-out fit does not identify (e.g. a covariate only the cluster
#'   left out has), or a 0/1 column whose rows there have no events or only
#'   events (its coefficient infinite: the fit is the limit, without those
#'   rows), is left out of that fit, which leaves \eqn{\hat\beta_{(g)}}
#'   unchanged; the note says so. When leaving out a cluster loses `param`
#'   itself (e.g. only that cluster is ever treated) the jackknife is not
#'   defined: the score bootstrap runs instead, with a warning, and `method`
#'   says why. The result has class `c("wild_boot_t", "wild_boot")`, the
#'   bootstrap's fields with `std.error`, `df`, `jackknife` (the
#'   \eqn{\hat\beta_{(g)}}) and `refits` (`B = 0`, no `tstar`; `weights`
#'   are not used).
#' * `"score"`: the Kline-Santos score bootstrap described above (the
#'   method of earlier versions).
#' * `"auto"` (**the default**): `"score_cr3"` with fewer than 10 clusters,
#'   `"score"` from 10; a message and the note say which ran and why.
#'
#' **Size with few clusters** (`bench/glmm_size.R`: null data sets shaped
#' like the Family Valued trial, G authorities going live one per step over
#' G + 1 steps, 60 children per authority and step, authority random
#' intercepts of SD 0.4, the model true; rejection of a true null at 5%,
#' Monte Carlo s.e. in brackets, target 3.5-6.5%). With 5 authorities (1,000
#' data sets) the score bootstrap (Webb weights, all 6^5 vectors) rejected
#' 8.7% (0.9) and the model-based Wald test 6.5% (0.8); the CR3 t-test
#' rejected 3.2% (0.6), its interval covering 96.8%: it errs on the
#' conservative side, where the bootstrap errs on the other (the jackknife
#' centred at the mean of the \eqn{\hat\beta_{(g)}} made the same
#' decisions). With 6 authorities (300 data sets) the score bootstrap
#' rejected 9.3% (1.7), the Wald test 6.7% and the CR3 t-test 3.7% (1.1);
#' with 8, 5.3% (1.3), 5.3% and 2.7% (0.9); with 10 (999 random Webb
#' draws), 4.3% (1.2), 4.7% and 2.7% (0.9). So the score bootstrap is the
#' default from 10 clusters (as for linear mixed models); with 8 it held its
#' size too. On the default simulated Family Valued data (23,335 binomial
#' cells, 49 coefficients) the CR3 t-test takes about 1 s CPU (5 refits,
#' 40 Newton iterations), no more than the score bootstrap with its interval.
#' Being conservative costs power: at a true log odds ratio of 0.4 (5
#' authorities, 300 data sets) the CR3 t-test rejected 23.7%, the score
#' bootstrap 49.3% and the Wald test 61.3% (both over-rejecting under the
#' null). The score bootstrap studentised by a linearised CR3 jackknife
#' inside each draw (`variant = "score_cr3"`, the default below 10
#' clusters) rejected 5.2% of true nulls (0.7) and 28.7% at 0.4: it holds
#' its size, and has more power than the CR3 t-test. With 6 and 8
#' authorities (300 data sets each; 999 random Webb draws with 8) it
#' rejected 4.7% (1.2) and 3.7% (1.1); its interval by test inversion
#' covered 94.0% (1.4) of true effects with 5 authorities (the first 300 of
#' the data sets), 95.3% (1.2) with 6 and 96.7% (1.0) with 8, with a side
#' not determined (NA: the test accepted every r out to 128 standard
#' errors) in 0.7%, 0% and 0% of them. On smaller data that can be more frequent: on the package's
#' example Family Valued data (`sfp_example_fv`) the test accepts 16
#' standard errors either side of the estimate and both ends are NA. On
#' `make demo`'s simulated Family Valued data (23,335 cells) it takes about
#' 1.3 s CPU with its interval (21 restricted refits, 44 Newton iterations),
#' the CR3 t-test 0.5 s.
#' A score bootstrap asked for with fewer than 10 clusters warns (class
#' `sfpceval_few_clusters`) with its measured size: read it as a
#' sensitivity analysis; [perm_test()] on the go-live dates is exact.
#' @name wild_boot
NULL

# wild_boot() on a binomial sw_glmm() fit: `variant` "auto" (the default),
# "score_cr3", "CR3t" or "score". "auto" is the score bootstrap studentised
# by a linearised CR3 jackknife below glmm_boot_min_clusters_ clusters,
# where the plain score bootstrap did not hold its size (bench/glmm_size.R),
# and the score bootstrap from there. When leaving out a cluster loses
# `param`, the jackknife (of "score_cr3" or "CR3t") is not defined: the
# score bootstrap runs instead, with a warning, and its `method` says why.
glmm_wild_boot <- function(fit, param, weights, B, level, r, seed, conf_int = TRUE,
                           variant = "auto", ...) {
  extra <- list(...)
  if (length(extra)) {
    stop_arg(names(extra)[1] %||% "...", "is not an argument of wild_boot() for a binomial GLMM",
             "the GLMM bootstrap takes param, weights, B, level, r, seed, conf_int and variant.")
  }
  variant <- match_choice(variant, c("auto", glmm_boot_variants_), "variant")
  d <- fit$cells
  if (is.null(d)) stop_arg("fit", "must be a binomial sw_glmm() fit")
  j <- match(param, colnames(d$X))
  if (!is.character(param) || length(param) != 1L || is.na(j)) {
    stop_arg("param", sprintf("must name one coefficient of the fit (got \"%s\")", paste(param, collapse = ", ")),
             sprintf("use one of: %s.", paste(colnames(d$X), collapse = ", ")))
  }
  G <- length(d$cstart) - 1L
  asked <- variant
  if (variant == "auto") variant <- if (G < glmm_boot_min_clusters_) "score_cr3" else "score"
  fallback <- NULL
  if (variant == "score_cr3") {
    kp <- glmm_cr3_keep(fit, j)
    if (!isTRUE(kp$few) && is.null(kp$unidentified)) {
      out <- glmm_score_cr3(fit, j, param, weights, B, level, r, seed, conf_int, kp$keep)
      if (asked == "auto") {
        out$note <- paste(c(out$note, glmm_score_cr3_note_(G)), collapse = " ")
        message(sprintf(paste0("wild_boot(): with G = %d clusters (fewer than %d) the GLMM score bootstrap does not ",
                               "hold its size, so each draw's t is studentised by a linearised CR3 jackknife ",
                               "(see the note and ?wild_boot)."), G, glmm_boot_min_clusters_))
      }
      return(out)
    }
    fallback <- if (isTRUE(kp$few)) sprintf("the CR3 jackknife needs at least 3 clusters (the fit has %d)", G) else
      sprintf("the CR3 jackknife is not defined: without %s `%s` is not identified",
              paste(fit$info$groups[1], "=", fit$info$levels[kp$unidentified], collapse = ", "), param)
    variant <- "score"
  }
  if (variant == "CR3t") {
    jk <- if (G >= 3L) glmm_jackknife(fit, j) else list(unidentified = integer(0), few = TRUE)
    if (is.null(jk$unidentified)) {
      return(glmm_cr3_t(fit, jk, param, level, r))
    }
    fallback <- if (isTRUE(jk$few)) sprintf("the CR3 t-test needs at least 3 clusters (the fit has %d)", G) else
      sprintf("the CR3 t-test is not defined: without %s `%s` is not identified",
              paste(fit$info$groups[1], "=", fit$info$levels[jk$unidentified], collapse = ", "), param)
    variant <- "score"
  }
  out <- glmm_score_boot(fit, j, param, weights, B, level, r, seed, conf_int)
  out$variant <- "score"
  if (!is.null(fallback)) {
    out$method <- sprintf("%s, as %s", out$method, fallback)
    out$note <- paste(c(out$note, paste0("The score bootstrap was used because ", fallback, ".")), collapse = " ")
  }
  if (G < glmm_boot_min_clusters_) {
    sz <- glmm_score_size_note_(G)
    out$note <- paste(c(out$note, sz), collapse = " ")
    glmm_few_clusters_warn_(G, fallback, sz)
  }
  out
}

# The variants of wild_boot() for a binomial GLMM, and the number of clusters
# from which "auto" is the score bootstrap (below it, the CR3 t-test).
glmm_boot_variants_ <- c("score_cr3", "CR3t", "score")
glmm_boot_min_clusters_ <- 10L

# Rejection rates (%) of true nulls at 5% in bench/glmm_size.R (null data
# shaped like the Family Valued trial: one authority going live per step,
# the random-intercept logit true; Monte Carlo s.e. 0.6-1.7 points, in the
# roxygen), by number of authorities; the notes quote the 5-authority row.
glmm_boot_size_ <- data.frame(G = c(5L, 6L, 8L, 10L), reps = c(1000L, 300L, 300L, 300L),
                              CR3t = c(3.2, 3.7, 2.7, 2.7), score = c(8.7, 9.3, 5.3, 4.3),
                              score_cr3 = c(5.2, 4.7, 3.7, NA))

glmm_size_of_ <- function(G, variant) {
  row <- glmm_boot_size_[glmm_boot_size_$G == G, ]
  row[[variant]]
}

glmm_score_size_note_ <- function(G) {
  sprintf(paste0(
    "With G = %d clusters (fewer than %d) the GLMM score bootstrap does not hold its size: in a size simulation ",
    "shaped like the Family Valued trial (5 authorities, one going live per step, the model true) it rejected ",
    "%.1f%% of true nulls at 5%%, studentised by a linearised CR3 jackknife (variant = \"score_cr3\", the ",
    "default there) %.1f%%. Read it as a sensitivity analysis."),
    G, glmm_boot_min_clusters_, glmm_size_of_(5L, "score"), glmm_size_of_(5L, "score_cr3"))
}

glmm_score_cr3_note_ <- function(G) {
  sprintf(paste0(
    "With G = %d clusters (fewer than %d) the GLMM score bootstrap does not hold its size, so each draw's t is ",
    "studentised by a linearised CR3 (leave-one-cluster-out) jackknife: in a size simulation shaped like the ",
    "Family Valued trial (5 authorities) it rejected %.1f%% of true nulls at 5%%, the score bootstrap %.1f%% and ",
    "the CR3 t-test with G - 1 df (variant = \"CR3t\") %.1f%%."),
    G, glmm_boot_min_clusters_, glmm_size_of_(5L, "score_cr3"), glmm_size_of_(5L, "score"), glmm_size_of_(5L, "CR3t"))
}

# Warn (class "sfpceval_few_clusters") when the GLMM score bootstrap runs
# with fewer clusters than its size held for: asked for, or because the CR3
# t-test is not defined (`fallback` says why).
glmm_few_clusters_warn_ <- function(G, fallback, size_note) {
  msg <- sprintf("wild_boot(): %d clusters: %s%s\nFix: %s", G,
                 if (!is.null(fallback)) paste0(fallback, ", so the score bootstrap was used. ") else "",
                 size_note,
                 if (!is.null(fallback)) "perm_test() on the go-live dates is exact; or drop the covariate that only that authority identifies." else
                   "the default variant = \"auto\" studentises each draw by a linearised CR3 jackknife; perm_test() on the go-live dates is exact.")
  warning(structure(class = c("sfpceval_few_clusters", "warning", "condition"),
                    list(message = msg, call = NULL)))
  invisible(TRUE)
}

# The CR3 t-test with G - 1 df for coefficient `param` of a binomial GLMM
# (variant "CR3t"): the jackknife variance (G - 1) / G sum_g (b_(g) - b)^2,
# b_(g) the maximum likelihood estimate without cluster g (glmm_jackknife()),
# the statistic (b - r) / se against t(G - 1), the interval b -+ t_{G-1} se.
# The fields of a bootstrap result, with df, no draws (B = 0, tstar NULL).
glmm_cr3_t <- function(fit, jk, param, level, r) {
  G <- length(jk$beta)
  beta <- unname(fit$coefficients[[param]])
  se <- sqrt((G - 1) / G * sum((jk$beta - beta)^2))
  tt <- (beta - r) / se
  q <- stats::qt(1 - (1 - level) / 2, G - 1)
  p <- 2 * stats::pt(-abs(tt), G - 1)
  lab <- function(x) paste(fit$info$groups[1], "=", fit$info$levels[as.integer(names(x))], collapse = ", ")
  note <- c(if (length(jk$dropped)) {
    sprintf("Leave-one-out fits without %s left out the columns they do not identify (%s); `%s` is identified in each.",
            lab(jk$dropped), paste(unique(unlist(jk$dropped)), collapse = ", "), param)
  }, if (length(jk$separated)) {
    sprintf(paste0("Without %s, %s separate%s the outcome (no events, or only events, in %s rows): that leave-one-out ",
                   "fit is the limit, without those rows and columns."),
            lab(jk$separated), paste(unique(unlist(jk$separated)), collapse = ", "),
            if (length(unique(unlist(jk$separated))) > 1L) "" else "s",
            if (length(unique(unlist(jk$separated))) > 1L) "their" else "its")
  })
  note <- if (length(note)) paste(note, collapse = " ")
  structure(list(
    estimate = beta, statistic = tt, p_value = p, p_value_geq = p, conf_int = beta + c(-1, 1) * q * se,
    tstar = NULL, df = G - 1L, std.error = se, variant = "CR3t", jackknife = jk$beta,
    refits = list(n = G, iterations = jk$iterations),
    method = sprintf(paste0("t-test with the CR3 (leave-one-cluster-out jackknife) standard error and G - 1 = %d df ",
                            "for the binomial GLMM (%s)"), G - 1L, fit$method),
    param = param, weights = NA_character_, B = 0L, enumerated = FALSE, level = level, null = r,
    n_clusters = G, p_min = 0, note = note), class = c("wild_boot_t", "wild_boot"))
}

# Leave-one-cluster-out maximum likelihood fits of a binomial sw_glmm():
# for each cluster g, the fit on the cells of the other clusters, started
# from the full fit (its estimates, and its conditional modes for the
# clusters kept), by Newton's method (binom_newton()) over beta and sigma;
# when sigma is fixed, the full fit is at the boundary (sigma = 0) or the
# refit reaches it, binom_estimate() decides with its boundary rule. Columns
# that are linear combinations of others without cluster g (e.g. a
# covariate level only that cluster has) are left out of that fit, which
# leaves the estimate of column j unchanged when j is identified (its column
# not in the span of the others); when it is not, g is listed in
# `unidentified` (NULL when every fit identifies j). Returns beta (b_(g) of
# column j), dropped (names of the columns left out, by cluster), iterations
# and the convergence failures (one warning).
glmm_jackknife <- function(fit, j) {
  d <- fit$cells
  ctrl <- fit$ctrl
  p <- ncol(d$X)
  G <- length(d$cstart) - 1L
  th <- fit$theta
  sig_free <- is.null(fit$info$sigma_fixed) && !isTRUE(fit$boundary) && th[p + 1L] > 0
  d$rows <- binom_rows(d$X)
  mode <- if (sig_free) binom_eval(d, th[1:p], th[p + 1L], 0L, double(0))$mode
  separated <- glmm_separation(d, j)
  cl <- d$cell_cluster
  # per-cluster X'X: their sum without g decides the rank
  XX <- lapply(seq_len(G), function(h) crossprod(d$X[cl == h, , drop = FALSE]))
  beta <- double(G)
  dropped <- list()
  sep_cols <- list()
  unidentified <- integer(0)
  failed <- list()
  iters <- 0L
  for (g in seq_len(G)) {
    keep <- d$cell_cluster != g
    sep <- separated(g)
    if (length(sep)) {
      keep[which(keep)[sep]] <- FALSE
      sep_cols[[as.character(g)]] <- attr(sep, "columns")
    }
    X <- d$X[keep, , drop = FALSE]
    XXg <- Reduce(`+`, XX[-g])
    if (length(sep)) XXg <- XXg - crossprod(d$X[which(cl != g)[sep], , drop = FALSE])
    cols <- glmm_identified_cols(X, j, XXg)
    if (is.null(cols)) {
      unidentified <- c(unidentified, g)
      next
    }
    lost <- setdiff(colnames(d$X)[setdiff(seq_len(p), cols)], sep_cols[[as.character(g)]])
    if (length(lost)) dropped[[as.character(g)]] <- lost
    dg <- list(X = X[, cols, drop = FALSE], s = d$s[keep], n = d$n[keep],
               cstart = c(0L, cumsum(tabulate(d$cell_cluster[keep], G)[-g])), gh = d$gh, u0 = double(0))
    jj <- match(j, cols)
    rf <- glmm_refit_without(dg, fit, cols, if (sig_free) mode[-g], ctrl)
    iters <- iters + rf$iterations
    if (!rf$conv$converged) failed[[length(failed) + 1L]] <- rf$conv
    beta[g] <- rf$theta[jj]
  }
  if (length(failed)) {
    warn_not_converged(sprintf("wild_boot(): %d of %d leave-one-cluster-out refits of the CR3 jackknife (the first)",
                               length(failed), G), failed[[1L]],
                       "merge sparse categories, or check for a covariate that (nearly) separates the outcome.")
  }
  list(beta = beta, dropped = dropped, separated = sep_cols, iterations = iters,
       unidentified = if (length(unidentified)) unidentified)
}

# Columns that separate the outcome once a cluster is left out: 0/1 columns
# other than j whose cells (x = 1) in the other clusters have no successes,
# or no failures. Their coefficient diverges there and Newton's method would
# creep towards the limit, whose estimates of the other coefficients are the
# fit without those cells (where the column is then zero and left out by
# glmm_identified_cols()). sep(g) gives the positions, among the cells of
# the other clusters, of the cells to leave out (none if that would leave a
# cluster without cells). Per-cluster sums are made once (rowsum()), so each
# g costs a column sum.
glmm_separation <- function(d, j) {
  X <- d$X
  cl <- d$cell_cluster
  bin <- setdiff(which(colSums(X != 0 & X != 1) == 0), j)
  Xb <- X[, bin, drop = FALSE]
  S <- rowsum(Xb * d$s, cl, reorder = TRUE)
  Fl <- rowsum(Xb * (d$n - d$s), cl, reorder = TRUE)
  N <- rowsum(Xb, cl, reorder = TRUE)
  function(g) {
    if (!length(bin)) return(integer(0))
    cnt <- colSums(N[-g, , drop = FALSE])
    sep <- cnt > 0 & (colSums(S[-g, , drop = FALSE]) == 0 | colSums(Fl[-g, , drop = FALSE]) == 0)
    if (!any(sep)) return(integer(0))
    others <- cl != g
    on <- rowSums(Xb[others, sep, drop = FALSE]) > 0
    if (!all(setdiff(unique(cl), g) %in% cl[others][!on])) return(integer(0))
    structure(which(on), columns = colnames(X)[bin[sep]])
  }
}

# The columns of X to keep so that every kept column is linearly independent
# of the others kept, with column j kept if it is identified (its column not
# in the span of the others): qr() with column j last keeps it only then.
# NULL when j is not identified; all columns when X has full rank.
glmm_identified_cols <- function(X, j, XX = crossprod(X)) {
  nz <- which(diag(XX) > 0)
  if (!j %in% nz) return(NULL)
  if (glmm_full_rank_gram(XX[nz, nz, drop = FALSE])) return(nz)
  ord <- c(setdiff(nz, j), j)
  q <- qr(X[, ord, drop = FALSE])
  kept <- ord[q$pivot[seq_len(q$rank)]]
  if (!j %in% kept) return(NULL)
  sort(kept)
}

# One exact Newton step from the end of binom_newton() (Laplace: the
# Hessian of its last evaluation), taken whatever the log-likelihood says.
# damped_newton() stops at a Newton decrement below ctrl$tol (1e-10) and
# takes its last step only if the log-likelihood does not decrease, which
# that close to the maximum is decided by rounding; the estimate is then
# only within about sqrt(tol) standard errors. The jackknife differences
# b_(g) - b need it to within rounding, so that two fits of the same data
# give the same CR3 standard error.
glmm_polish <- function(nw, free, exact) {
  H <- nw$cur$hessian
  if (!exact || is.null(H) || !nw$converged) return(nw)
  step <- tryCatch(solve(-H[free, free, drop = FALSE], nw$cur$gradient[free]), error = function(e) NULL)
  if (!is.null(step) && all(is.finite(step))) nw$theta[free] <- nw$theta[free] + step
  nw
}

# One leave-one-cluster-out fit (cells dg, the columns `cols` of the full
# fit): Newton's method from the full fit's estimates and modes (mode0; NULL
# when sigma is fixed or at the boundary), or binom_estimate() with its
# boundary rule when sigma is not free or Newton ends at (or near) sigma = 0.
glmm_refit_without <- function(dg, fit, cols, mode0, ctrl) {
  p <- ncol(fit$cells$X)
  k <- length(cols)
  dg$rows <- binom_rows(dg$X)
  th0 <- c(fit$theta[cols], fit$theta[p + 1L])
  # at the boundary (binom_estimate()'s rule: sigma below boundary_tol): the
  # plain logistic regression (sigma = 0, where one node is exact), from there
  at_boundary <- function(b, it0 = 0L) {
    dg$gh <- gauss_hermite(1L)
    dg$u0 <- double(0)
    nw0 <- glmm_polish(binom_newton(dg, c(b, 0), seq_len(k), ctrl), seq_len(k), TRUE)
    conv <- optim_status(nw0$converged, it0 + nw0$iterations, nw0$message)
    list(theta = nw0$theta, conv = conv, iterations = conv$iterations)
  }
  if (!is.null(mode0)) {
    dg$u0 <- mode0
    lap <- length(dg$gh$x) == 1L
    nw <- glmm_polish(binom_newton(dg, th0, seq_len(k + 1L), ctrl, hessian_last = lap), seq_len(k + 1L), lap)
    conv <- optim_status(nw$converged && !isTRUE(nw$cur$fail == 1L), nw$iterations, nw$message)
    if (abs(nw$theta[k + 1L]) >= ctrl$boundary_tol) {
      return(list(theta = nw$theta, conv = conv, iterations = nw$iterations))
    }
    return(at_boundary(nw$theta[seq_len(k)], nw$iterations))
  }
  info <- fit$info
  info$trt_info <- NULL
  info$levels <- seq_len(length(dg$cstart) - 1L)
  rf <- suppressWarnings(suppressMessages(
    binom_estimate(dg, info, ctrl, start = th0, se = FALSE,
                   start0 = if (!is.null(fit$theta0)) fit$theta0[cols])))
  list(theta = rf$theta, conv = rf$convergence, iterations = rf$iterations)
}

# The score bootstrap for the stepped-wedge GLMM (`vignette("methods")`,
# section 3; variant "score"): the scores of each cluster's integrated (Laplace / AGQ)
# log-likelihood at the fit restricted to param = r, and the Hessian of the
# whole integrated log-likelihood there. The interval inverts the test in r
# with the same draws at every r; each p(r) is a restricted refit started
# from the nearest one already made (glmm_restricted()), and the limits are
# found to 1e-3 standard errors on a 9-point grid scanned outward to its
# first rejected point (the first crossing from the estimate: score_cr3's
# p(r) need not be monotone far from the estimate; each point costs a refit). Once bisection has narrowed a bracket
# of refits to 0.02 standard errors, a_g(r) inside it is interpolated
# linearly between them (a is smooth in r: the error is of order
# (0.02 se)^2 times its curvature, far below the tolerance), so the last
# bisection steps cost no refit.
glmm_score_boot <- function(fit, j, param, weights, B, level, r, seed, conf_int = TRUE) {
  d <- fit$cells
  G <- length(d$cstart) - 1L
  rs <- glmm_restricted(fit, j)
  draws <- boot_draws(G, weights, B, seed)
  beta <- unname(fit$coefficients[[param]])
  at_r <- rs$contrib(r)
  res <- score_boot_test(at_r$a, rs$pig, draws$V, beta)
  if (isTRUE(conf_int)) {
    se <- sqrt(fit$vcov[j, j])
    # inside a bracket of refits 0.02 se apart, a(r) by linear interpolation
    pv <- glmm_pv_singular(function(rr) {
      a <- rs$between(rr, 0.02 * se) %||% rs$contrib(rr)$a
      score_boot_test(a, rs$pig, draws$V, beta)$p_value
    })
    res$conf_int <- invert_test(pv, beta, se, 1 - level, rel = 1e-3, n_grid = 9L, max_double = 6, lazy = TRUE)
    res$note <- glmm_singular_note(pv, res$conf_int)
  }
  glmm_boot_finish(res, at_r, rs, draws, param, weights, level, r, G)
}

# The fields both GLMM score bootstraps (glmm_score_boot(), glmm_score_cr3())
# return: the restricted fit at r, its refits (a warning if any failed), and
# finish_boot()'s fields with the notes joined.
glmm_boot_finish <- function(res, at_r, rs, draws, param, weights, level, r, G) {
  res$scores <- at_r$scores
  res$restricted <- at_r$theta
  res$refits <- rs$refits()
  failed <- rs$failed()
  if (length(failed)) {
    warn_not_converged(sprintf("wild_boot(): %d of %d restricted refits of the GLMM score bootstrap (the first)",
                               length(failed), res$refits$n), failed[[1L]],
                       "merge sparse categories, or check for a covariate that (nearly) separates the outcome.")
  }
  out <- finish_boot(res, draws, param, weights, level, r, G)
  out$note <- paste(c(res$note, out$note), collapse = " ")
  if (!nzchar(out$note)) out$note <- NULL
  out
}

# p(r) for the GLMM bootstraps' test inversion. Far from the estimate the
# restricted fit's fitted probabilities can saturate and its Hessian become
# singular: the test is not defined there, and such an r counts as accepted,
# so that a side which reaches it before a rejection is NA (not determined).
# attr "singular": the first such r.
glmm_pv_singular <- function(f) {
  first <- NULL
  pv <- function(rr) {
    tryCatch(f(rr), error = function(e) {
      if (!grepl("singular", conditionMessage(e))) stop(e)
      if (is.null(first)) first <<- rr
      1
    })
  }
  attr(pv, "singular") <- function() first
  pv
}

glmm_singular_note <- function(pv, ci) {
  r0 <- attr(pv, "singular")()
  if (is.null(r0) || all(is.finite(ci))) return(NULL)
  sprintf(paste0("The test accepted every r tried on the side of the interval that is NA, out to where the ",
                 "restricted fit's Hessian is singular (r = %.4g, fitted probabilities saturated) and the test is ",
                 "not defined: that side is not determined (NA)."), r0)
}

# The score bootstrap studentised by a linearised CR3 jackknife (variant
# "score_cr3"; the WCR33 idea of MacKinnon, Nielsen & Webb 2023 carried to
# the Kline-Santos score bootstrap). At the fit restricted to param = r, s_h
# the cluster scores and H_h each cluster's Hessian of its integrated
# log-likelihood (H = sum_h H_h), a_h = (H^-1 s_h)_j is the numerator's term
# and, for a draw v, the leave-g-out one-step estimate moves by
# ((H - H_g)^-1 sum_{h != g} v_h s_h)_j, so (J v)_g = (C v)_g - a'v with
# C[g, h] = ((H - H_g)^-1 s_h)_j (h != g, C[g, g] = 0) and
# t*(v) = a'v / sqrt((G - 1) / G sum_g (J v)_g^2), t = t*(1). keep[[g]]: the
# columns of X identified without cluster g (glmm_cr3_keep()); the others
# are left out of H - H_g, as the CR3 t-test leaves them out of that refit.
# The interval inverts the test in r with the same draws at every r, a and
# C interpolated inside brackets of refits 0.02 se apart (as the score
# bootstrap's a).
glmm_score_cr3 <- function(fit, j, param, weights, B, level, r, seed, conf_int, keep) {
  d <- fit$cells
  G <- length(d$cstart) - 1L
  rs <- glmm_restricted(fit, j)
  draws <- boot_draws(G, weights, B, seed)
  beta <- unname(fit$coefficients[[param]])
  at_r <- rs$contrib(r, keep)
  res <- glmm_score_cr3_test(at_r$ac, draws$V, beta)
  if (isTRUE(conf_int)) {
    se <- sqrt(fit$vcov[j, j])
    pv <- glmm_pv_singular(function(rr) {
      ac <- rs$between(rr, 0.02 * se, "ac") %||% rs$contrib(rr, keep)$ac
      glmm_score_cr3_test(ac, draws$V, beta)$p_value
    })
    res$conf_int <- invert_test(pv, beta, se, 1 - level, rel = 1e-3, n_grid = 9L, max_double = 6, lazy = TRUE)
    res$note <- glmm_singular_note(pv, res$conf_int)
  }
  dropped <- Filter(length, lapply(keep, function(k) colnames(d$X)[-k]))
  if (length(dropped)) {
    res$note <- c(res$note, sprintf(paste0("The linearised leave-one-out estimates without %s leave out the columns they do not ",
                               "identify (%s); `%s` is identified in each."),
                        paste(fit$info$groups[1], "=", fit$info$levels[as.integer(names(dropped))], collapse = ", "),
                        paste(unique(unlist(dropped)), collapse = ", "), param))
  }
  res$variant <- "score_cr3"
  glmm_boot_finish(res, at_r, rs, draws, param, weights, level, r, G)
}

# a and C of glmm_score_cr3() as one vector c(a, C) (so that it can be
# interpolated in r): S the G x m cluster scores over the free parameters,
# Hg their G Hessians, fj the position of param among them, kf[[g]] the
# positions kept for cluster g's leave-out term (0 = not free).
glmm_cr3_parts <- function(S, Hg, fj, kf) {
  G <- nrow(S)
  H <- Reduce(`+`, Hg)
  a <- drop(S %*% solve(-H)[, fj])
  C <- matrix(0, G, G)
  for (g in seq_len(G)) {
    k <- kf[[g]][kf[[g]] > 0L]
    Hm <- (H - Hg[[g]])[k, k, drop = FALSE]
    C[g, ] <- drop(S[, k, drop = FALSE] %*% solve(-Hm)[, match(fj, k)])
  }
  diag(C) <- 0
  c(a, C)
}

# The test of glmm_score_cr3() from ac = c(a, C): t* for every draw (column
# of V), the observed t = t*(1), the p-values (strict and with ties, as
# score_boot_test()) and the linearised jackknife standard error at v = 1.
glmm_score_cr3_test <- function(ac, V, estimate) {
  G <- nrow(V)
  a <- ac[seq_len(G)]
  C <- matrix(ac[-seq_len(G)], G, G)
  tstat <- function(V) {
    num <- colSums(V * a)
    Jv <- C %*% V - rep(num, each = G)
    list(t = num / sqrt((G - 1) / G * colSums(Jv^2)), se = sqrt((G - 1) / G * colSums(Jv^2)))
  }
  tst <- tstat(V)$t
  o <- tstat(matrix(1, G, 1L))
  t0 <- o$t
  tol <- 1e-8 * max(1, abs(t0))
  list(method = paste0("score bootstrap (Kline & Santos) studentised by a linearised CR3 jackknife ",
                       "(WCR33-type, MacKinnon, Nielsen & Webb)"),
       estimate = estimate, statistic = t0, std.error = o$se, p_value = mean(abs(tst) > abs(t0) + tol),
       p_value_geq = mean(abs(tst) >= abs(t0) - tol), conf_int = c(NA_real_, NA_real_), tstar = tst)
}

# For each cluster g, the columns of the cells' X identified without it
# (glmm_identified_cols(), as the CR3 t-test's refits); `unidentified`: the
# clusters without which param's column j is not, `few`: fewer than 3
# clusters.
glmm_cr3_keep <- function(fit, j) {
  d <- fit$cells
  G <- length(d$cstart) - 1L
  if (G < 3L) return(list(few = TRUE))
  cl <- d$cell_cluster
  XX <- lapply(seq_len(G), function(h) crossprod(d$X[cl == h, , drop = FALSE]))
  keep <- lapply(seq_len(G), function(g) glmm_identified_cols(d$X[cl != g, , drop = FALSE], j, Reduce(`+`, XX[-g])))
  names(keep) <- seq_len(G)
  bad <- which(vapply(keep, is.null, NA))
  list(keep = keep, unidentified = if (length(bad)) bad)
}

# Restricted fits of a binomial sw_glmm() with coefficient j held at r
# (r * x_j an offset in the linear predictor) and the score bootstrap's
# cluster contributions there: a_g = (H^{-1} s_g)_j over the free parameters
# (beta and, unless it is at the boundary, sigma), s_g the gradient of
# cluster g's integrated log-likelihood and H the Hessian of the whole one,
# both in the full model at the restricted estimate. The first fit is
# binom_estimate() (with its boundary rule) on the cells without column j
# and with the offset, from the unrestricted estimates. Each later one is
# Newton's method in the full model over all parameters but beta_j (the same
# likelihood: x_j beta_j = x_j r), started from the nearest fit already made
# moved along the tangent d theta / dr = -H_{-j,-j}^{-1} H_{-j,j} (the
# implicit function theorem on the restricted score equations), so it takes
# a step or two and its last evaluation brings the Hessian (Laplace).
glmm_restricted <- function(fit, j) {
  d <- fit$cells
  ctrl <- fit$ctrl
  p <- ncol(d$X)
  G <- length(d$cstart) - 1L
  d$rows <- binom_rows(d$X)
  d$u0 <- double(0)
  d$offset <- NULL
  d1 <- d
  d1$gh <- gauss_hermite(1L)
  cl_rows <- lapply(seq_len(G), function(g) (d$cstart[g] + 1L):d$cstart[g + 1L])
  by_cluster <- lapply(cl_rows, function(idx) {
    X <- d$X[idx, , drop = FALSE]
    list(X = X, s = d$s[idx], n = d$n[idx], cstart = c(0L, length(idx)), rows = binom_rows(X))
  })
  pig <- vapply(cl_rows, function(idx) sum(d$n[idx]), 0) / sum(d$n)
  made <- list()
  failed <- list()
  iters <- 0L
  first_fit <- function(rr, start = fit$theta[-j], start0 = fit$theta0[-j]) {
    d0 <- d
    d0$X <- d$X[, -j, drop = FALSE]
    d0$offset <- rr * d$X[, j]
    info0 <- fit$info
    info0$trt_info <- NULL
    rf <- suppressWarnings(suppressMessages(
      binom_estimate(d0, info0, ctrl, start = start, se = FALSE, start0 = start0)))
    theta <- c(append(rf$theta[seq_len(p - 1L)], rr, after = j - 1L), abs(rf$theta[p]))
    list(theta = theta, boundary = isTRUE(rf$boundary) || theta[p + 1L] == 0,
         conv = rf$convergence, iterations = rf$iterations, cur = NULL)
  }
  refit <- function(rr) {
    if (!length(made)) return(first_fit(rr))
    prev <- made[[which.min(abs(vapply(made, `[[`, 0, "r") - rr))]]
    th <- prev$theta + (rr - prev$r) * prev$slope
    th[j] <- rr
    # at or near sigma = 0, binom_estimate()'s boundary rule decides (a
    # restricted fit may leave the boundary, or reach it)
    if (prev$boundary) return(first_fit(rr, th[-j], th[-c(j, p + 1L)]))
    dd <- d
    dd$u0 <- prev$mode
    nw <- binom_newton(dd, th, seq_len(p + 1L)[-j], ctrl)
    if (abs(nw$theta[p + 1L]) < ctrl$boundary_tol) return(first_fit(rr, th[-j], th[-c(j, p + 1L)]))
    nw$theta[p + 1L] <- abs(nw$theta[p + 1L])
    conv <- optim_status(nw$converged && !isTRUE(nw$cur$fail == 1L), nw$iterations, nw$message)
    list(theta = nw$theta, boundary = FALSE, conv = conv, iterations = nw$iterations, cur = nw$cur)
  }
  contrib <- function(rr, keep = NULL) {
    rf <- refit(rr)
    iters <<- iters + rf$iterations
    if (!rf$conv$converged) failed[[length(failed) + 1L]] <<- rf$conv
    theta <- rf$theta
    beta <- theta[seq_len(p)]
    sigma <- theta[p + 1L]
    free <- if (rf$boundary) seq_len(p) else seq_len(p + 1L)
    dd <- if (rf$boundary) d1 else d
    lap <- length(dd$gh$x) == 1L
    cur <- rf$cur
    if (is.null(cur) || !lap) cur <- binom_eval(dd, beta, sigma, if (lap) 3L else 1L)
    H <- if (lap) cur$hessian[free, free, drop = FALSE] else
      binom_hessian(dd, theta, free, cur$mode, cur$gradient)
    # keep (variant "score_cr3"): also each cluster's Hessian, exact for
    # Laplace, else forward differences of its gradient (binom_hessian())
    want_h <- !is.null(keep)
    ev <- lapply(seq_len(G), function(g) {
      dg <- by_cluster[[g]]
      dg$gh <- dd$gh
      e <- binom_eval(dg, beta, sigma, if (want_h && lap) 3L else 1L, cur$mode[g])
      if (want_h) e$hessian <- if (lap) e$hessian[free, free, drop = FALSE] else
        binom_hessian(dg, theta, free, cur$mode[g], e$gradient)
      e
    })
    S <- t(vapply(ev, `[[`, numeric(p + 1L), "gradient"))
    fj <- match(j, free)
    a <- drop(S[, free, drop = FALSE] %*% solve(-H, diag(length(free))[, fj]))
    ac <- if (want_h) glmm_cr3_parts(S[, free, drop = FALSE], lapply(ev, `[[`, "hessian"), fj,
                                     lapply(keep, function(k) match(c(k, p + 1L), free, 0L)))
    slope <- double(p + 1L)
    slope[free[-fj]] <- -solve(H[-fj, -fj, drop = FALSE], H[-fj, fj])
    made[[length(made) + 1L]] <<- list(r = rr, theta = theta, slope = slope, mode = cur$mode,
                                       boundary = rf$boundary, a = a, ac = ac)
    list(a = a, ac = ac, scores = S, theta = stats::setNames(theta, c(colnames(d$X), "sigma")))
  }
  # a(r) interpolated between the refits just below and above r when they
  # are at most h apart (NULL otherwise)
  between <- function(rr, h, field = "a") {
    if (length(made) < 2L) return(NULL)
    rs <- vapply(made, `[[`, 0, "r")
    lo <- which(rs <= rr)
    hi <- which(rs >= rr)
    if (!length(lo) || !length(hi)) return(NULL)
    lo <- lo[which.max(rs[lo])]
    hi <- hi[which.min(rs[hi])]
    if (rs[hi] - rs[lo] > h || made[[lo]]$boundary != made[[hi]]$boundary) return(NULL)
    if (is.null(made[[lo]][[field]]) || is.null(made[[hi]][[field]])) return(NULL)
    if (lo == hi) return(made[[lo]][[field]])
    w <- (rr - rs[lo]) / (rs[hi] - rs[lo])
    (1 - w) * made[[lo]][[field]] + w * made[[hi]][[field]]
  }
  list(contrib = contrib, between = between, pig = pig, failed = function() failed,
       refits = function() list(n = length(made), iterations = iters))
}

#' @export
print.wild_boot <- function(x, digits = 4, ...) {
  cat(sprintf("%s, %s weights, %s draws (%s), G = %d clusters\n", x$method, x$weights,
              format(x$B, big.mark = ","), if (x$enumerated) "full enumeration" else "random", x$n_clusters))
  cat(sprintf("H0: %s = %s\n", x$param, format(x$null)))
  cat(sprintf("  estimate %s, t = %s\n", format(x$estimate, digits = digits), format(x$statistic, digits = digits)))
  cat(sprintf("  p-value %s (|t*| > |t|), %s (|t*| >= |t|)\n", format(x$p_value, digits = digits),
              format(x$p_value_geq, digits = digits)))
  if (all(is.finite(x$conf_int))) {
    cat(sprintf("  %g%% confidence interval (test inversion): [%s, %s]\n", 100 * x$level,
                format(x$conf_int[1], digits = digits), format(x$conf_int[2], digits = digits)))
  }
  if (!is.null(x$note)) cat("Note:", x$note, "\n")
  invisible(x)
}

#' @exportS3Method generics::tidy
tidy.wild_boot <- function(x, ...) {
  data.frame(term = x$param, estimate = x$estimate, statistic = x$statistic,
             p.value = x$p_value, p.value.geq = x$p_value_geq,
             conf.low = x$conf_int[1], conf.high = x$conf_int[2], stringsAsFactors = FALSE)
}
