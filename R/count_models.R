# Hurdle, Tobit and the excess-zeros check for the days-on-CPP outcomes
# (Family Safeguarding protocol, "Regression specifications"; `vignette("methods")`, section 8).
# The likelihoods are maximised by one Newton-Raphson driver in src/mle.c
# with analytic first and second derivatives.

# ---- internal helpers ---------------------------------------------------

mle_models_ <- c(logit = 0L, ztpois = 1L, ztnegbin = 2L, tobit = 3L,
                 pois = 4L, negbin = 5L)

# Fit one model through the C driver.  Returns par, loglik, hessian, score,
# iter, converged, and the package's optimiser report `convergence`
# (optim_status(): converged, iterations, what was checked).
mle_fit_ <- function(model, X, y, start, status = integer(),
                     limits = c(-Inf, Inf), tol = 1e-10, maxit = 100L,
                     weights = NULL) {
  storage.mode(X) <- "double"
  f <- .Call(ffi_mle_newton, mle_models_[[model]], X, as.double(y),
             as.double(weights %||% double()), as.integer(status),
             as.double(limits), as.double(start), c(tol, maxit))
  f$convergence <- optim_status(f$converged, f$iter, sprintf(
    "Newton-Raphson step %s tol = %g", if (isTRUE(f$converged)) "below" else "not below", tol))
  f
}

# One report for a fit made of several Newton fits (the hurdle's two parts).
merge_status_ <- function(parts) {
  optim_status(all(vapply(parts, function(p) p$converged, TRUE)),
               max(vapply(parts, function(p) p$iterations, 1L)),
               paste(names(parts), vapply(parts, function(p) p$message, ""), sep = ": ", collapse = "; "))
}

# Resolve `weights` (NULL, a column name or a vector with one value per row)
# and check them: finite and non-negative.  Returns NULL or a double vector.
resolve_weights_ <- function(weights, data) {
  if (is.null(weights)) return(NULL)
  if (is.character(weights) && length(weights) == 1L && nrow(data) != 1L) {
    if (!weights %in% names(data)) {
      stop_arg("weights", sprintf("names a column \"%s\" that `data` lacks", weights),
               "give the name of the weight column, e.g. \"cem_weight\"")
    }
    name <- weights
    weights <- data[[weights]]
  } else {
    name <- "weights"
  }
  if (!is.numeric(weights) || length(weights) != nrow(data)) {
    stop_arg("weights", sprintf("must be numeric with one value per row of `data` (%d), or a column name; not %s",
                                nrow(data), describe_value(weights)),
             "give a weight column's name, e.g. weights = \"cem_weight\".")
  }
  bad <- which(is.na(weights) | !is.finite(weights) | weights < 0)
  if (length(bad)) {
    stop_rows("data", name, bad, "with a missing, infinite or negative weight",
              "weights must be finite and non-negative (unmatched units get 0)")
  }
  as.double(weights)
}

# Resolve `cluster` (NULL, a column name, a one-sided formula, or a vector
# of length nrow(data)) to a vector of length nrow(data), or NULL.
resolve_cluster_ <- function(cluster, data) {
  if (is.null(cluster)) return(NULL)
  if (inherits(cluster, "formula")) {
    v <- all.vars(cluster)
    if (length(v) != 1L || !v %in% names(data)) {
      stop_arg("cluster", "must name one column of `data`",
               "give it as a column name, e.g. cluster = \"la_code\"")
    }
    return(data[[v]])
  }
  if (is.character(cluster) && length(cluster) == 1L && nrow(data) != 1L) {
    if (!cluster %in% names(data)) {
      stop_arg("cluster", sprintf("names a column \"%s\" that `data` lacks",
                                  cluster),
               "give the name of the cluster column, e.g. \"la_code\"")
    }
    return(data[[cluster]])
  }
  if (length(cluster) != nrow(data)) {
    stop_arg("cluster", sprintf("has length %d but `data` has %d rows",
                                length(cluster), nrow(data)),
             "give a column name or a vector with one value per row")
  }
  cluster
}

# Rows of `data` usable for the variables in `formula` (and the cluster):
# returns the logical vector of complete rows; the caller reports the rest.
complete_rows_ <- function(formula, data, cluster_vec) {
  vars <- all.vars(formula)
  missing_vars <- setdiff(vars, names(data))
  if (length(missing_vars)) {
    stop_arg("formula", sprintf("uses %s, not found in `data`",
                                paste0("`", missing_vars, "`", collapse = ", ")),
             "check the spelling of the variable names")
  }
  ok <- stats::complete.cases(data[vars])
  if (!is.null(cluster_vec)) ok <- ok & !is.na(cluster_vec)
  ok
}

report_dropped_ <- function(ok, what) {
  if (all(ok)) return(invisible(0L))
  warn_rows("data", NULL, which(!ok),
            sprintf("with a missing value in %s, left out", what),
            "impute or remove them first if they should count")
  invisible(sum(!ok))
}

check_finite_ <- function(X, y, yname) {
  bad <- which(!is.finite(y))
  if (length(bad)) {
    stop_rows("data", yname, bad, "with a non-finite value",
              "remove or recode those rows (Inf and NaN are not allowed)")
  }
  if (all(is.finite(X))) return(invisible())
  badx <- which(rowSums(!is.finite(X)) > 0)
  if (length(badx)) {
    cols <- unique(colnames(X)[colSums(!is.finite(X)) > 0])
    stop_rows("data", paste(cols, collapse = ", "), badx,
              "with a non-finite covariate value",
              "remove or recode those rows (Inf and NaN are not allowed)")
  }
}

check_rank_ <- function(X, part) {
  if (ncol(X) == 0L) return(invisible())
  # the cheap crossprod check first: full rank there is full rank for qr()
  # (its tolerance 1e-7 is below the check's; see plan_aliased())
  if (glmm_full_rank(X)) return(invisible())
  q <- qr(X)
  if (q$rank < ncol(X)) {
    drop <- colnames(X)[q$pivot[(q$rank + 1L):ncol(X)]]
    stop_arg("formula", sprintf(
      "gives collinear columns in the %s model: %s", part,
      paste0("`", drop, "`", collapse = ", ")),
      "remove those terms (or a category with no observations)")
  }
}

# Cluster-robust sandwich: H^{-1} (sum_g s_g s_g') H^{-1} * G/(G-1),
# the default of sandwich::vcovCL() for non-lm models (HC0 with the
# G/(G-1) cluster adjustment).
sandwich_cl_ <- function(bread, score, cluster) {
  g <- as.integer(factor(cluster))
  G <- max(g)
  sg <- rowsum(score, g, reorder = FALSE)
  meat <- crossprod(sg) * G / (G - 1)
  bread %*% meat %*% bread
}

# Inverse of the information matrix; NA (with a warning) when it is singular,
# e.g. after a non-converged fit with diverging estimates.
safe_inverse_ <- function(M) {
  out <- tryCatch(solve(M), error = function(e) NULL)
  if (is.null(out)) {
    warning("The information matrix is singular, so standard errors are NA.",
            call. = FALSE)
    out <- matrix(NA_real_, nrow(M), ncol(M))
  }
  out
}

# Coefficient table with normal (no cluster) or t(G - 1) reference.
coef_table_ <- function(est, V, df) {
  se <- sqrt(diag(V))
  stat <- est / se
  p <- if (is.finite(df)) 2 * stats::pt(-abs(stat), df) else
    2 * stats::pnorm(-abs(stat))
  data.frame(term = names(est), estimate = unname(est), std.error = unname(se),
             statistic = unname(stat), p.value = unname(p),
             stringsAsFactors = FALSE)
}

# ---- hurdle ------------------------------------------------------------

#' Hurdle model for counts with excess zeros
#'
#' Fits Mullahy's hurdle model: a logit for crossing the hurdle (a positive
#' count) and a zero-truncated Poisson or negative binomial (NB2) model for
#' the positive counts, as the Family Safeguarding protocol allows for days on
#' child protection plans when zeros are more common than the count model
#' predicts (see `zero_check()`). The two parts have separate likelihoods and
#' are maximised by Newton-Raphson with analytic derivatives in C; the
#' results equal `pscl::hurdle()` to the optimiser's tolerance.
#'
#' The formula `y ~ x1 + x2` uses the same regressors in both parts;
#' `y ~ x1 + x2 | z1` gives the zero hurdle its own regressors, as in pscl.
#'
#' With `cluster`, the variance is the cluster-robust sandwich
#' \eqn{H^{-1}(\sum_g s_g s_g')H^{-1} \cdot G/(G-1)} over both parts
#' (the default of `sandwich::vcovCL()`), and tests use t(G - 1). For the
#' negative binomial the score of \eqn{\log\theta} enters the meat when
#' `theta_in_meat = TRUE` (the full M-estimation sandwich); `FALSE` treats
#' \eqn{\theta} as known there, which is what `sandwich::vcovCL()` does on a
#' pscl fit.
#'
#' Rows with a missing value in a variable of the formula or in the cluster
#' are left out with a warning that counts them.
#'
#' @param formula `count ~ regressors` or `count ~ count regressors | zero
#'   regressors`.
#' @param data A data frame.
#' @param dist Distribution of the positive counts: `"poisson"` or
#'   `"negbin"` (NB2, variance \eqn{\mu + \mu^2/\theta}).
#' @param cluster `NULL`, the name of the cluster column (e.g. `"la_code"`),
#'   a one-sided formula, or a vector with one value per row.
#' @param weights `NULL`, the name of a weight column (e.g. CEM weights), or a
#'   vector with one finite non-negative value per row. The log-likelihood,
#'   scores and Hessian are weighted sums (as in pscl and survreg); rows with
#'   weight 0 (unmatched units) are left out and counted. The cluster-robust
#'   variance weights every score, \eqn{\log\sigma}'s included (sandwich
#'   3.0-2's `vcovCL()` on a weighted `AER::tobit()` leaves that one
#'   unweighted).
#' @param theta_in_meat Logical; see Details. Only used for `"negbin"`.
#' @param tol Convergence tolerance: the largest Newton step relative to
#'   1 + |parameter|.
#' @param maxit Maximum number of Newton iterations per part.
#' @return An object of class `sfp_hurdle`: a list with `coefficients`
#'   (named `count_*` and `zero_*` as in pscl), `theta` and `se_log_theta`
#'   (negbin), `loglik`, `vcov` (cluster-robust if `cluster` was given, else
#'   model-based), `vcov_model`, `df` (G - 1 or `Inf`), `nobs`, `n_zero`,
#'   `n_clusters`, `n_dropped`, `converged` and `call`. Methods: `print`,
#'   `summary`, `coef`, `vcov`, `confint`, `nobs`, `logLik`, `tidy`, `glance`.
#' @examples
#' set.seed(1)
#' d <- data.frame(x = rnorm(300), la = rep(1:6, 50))
#' d$y <- ifelse(runif(300) < plogis(0.3 + d$x), rpois(300, exp(1 + 0.5 * d$x)), 0)
#' fit <- hurdle_fit(y ~ x, d, cluster = "la")
#' fit
#' @export
hurdle_fit <- function(formula, data, dist = c("poisson", "negbin"),
                       cluster = NULL, weights = NULL, theta_in_meat = TRUE,
                       tol = 1e-10, maxit = 100L) {
  hurdle_fit_(match.call(), formula, data, match.arg(dist), cluster, weights, theta_in_meat,
              tol, maxit)
}

# Starting values for a refit of the same hurdle model (see hurdle_fit_()):
# each part's estimates (the count part's with log theta for "negbin"),
# named by its model matrix's columns.
hurdle_start <- function(fit) {
  if (!inherits(fit, "sfp_hurdle")) return(NULL)
  b <- fit$coefficients
  cnt <- startsWith(names(b), "count_")
  count <- stats::setNames(b[cnt], sub("^count_", "", names(b)[cnt]))
  if (identical(fit$dist, "negbin")) count <- c(count, .log_theta = log(fit$theta))
  list(dist = fit$dist, count = count,
       zero = stats::setNames(b[!cnt], sub("^zero_", "", names(b)[!cnt])))
}

# hurdle_fit() after match.call(). `start` (internal: analyse() refits a
# model per imputation) is hurdle_start() of an earlier fit of the same
# model, from which each part's Newton iterations start (the negative
# binomial part without its Poisson start); a part whose columns differ, or
# that does not converge from it, is fitted from the usual start. The
# estimates are the same to the optimiser's tolerance.
hurdle_fit_ <- function(cl, formula, data, dist, cluster = NULL, weights = NULL,
                        theta_in_meat = TRUE, tol = 1e-10, maxit = 100L, start = NULL) {
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    stop_arg("formula", "must be a two-sided formula such as `days ~ treated + age`")
  }
  if (!is.data.frame(data)) stop_arg("data", "must be a data frame")
  rhs <- formula[[3]]
  if (is.call(rhs) && identical(rhs[[1]], as.name("|"))) {
    f_count <- stats::as.formula(call("~", formula[[2]], rhs[[2]]),
                                 env = environment(formula))
    f_zero <- stats::as.formula(call("~", formula[[2]], rhs[[3]]),
                                env = environment(formula))
  } else {
    f_count <- f_zero <- formula
  }
  f_all <- stats::as.formula(call("~", formula[[2]],
                                  call("+", f_count[[3]], f_zero[[3]])),
                             env = environment(formula))
  use <- analysed_rows_(f_all, data, cluster, weights, f_count,
                        "give a count (non-negative whole numbers)")
  d <- use$data
  cvec <- use$cluster
  wvec <- use$weights
  yname <- use$yname
  y <- use$y
  X <- stats::model.matrix(f_count, d)
  # (the same regressors in both parts: the same matrix)
  same <- identical(f_zero, f_count)
  Z <- if (same) X else stats::model.matrix(f_zero, d)
  check_finite_(if (same) X else cbind(X, Z), y, yname)
  rows <- use$kept
  bad <- which(y < 0)
  if (length(bad)) {
    stop_rows("data", yname, rows[bad], "with a negative count",
              "a count must be zero or positive; check how it was derived")
  }
  bad <- which(y != round(y))
  if (length(bad)) {
    stop_rows("data", yname, rows[bad], "with a count that is not a whole number",
              "round the counts (e.g. days) before fitting a count model")
  }
  if (all(y == 0)) {
    stop_arg("data", sprintf("has only zeros in `%s` (%d rows)", yname, length(y)),
             "a hurdle model needs some positive counts; report the zero rate instead")
  }
  if (all(y > 0)) {
    stop_arg("data", sprintf("has no zeros in `%s` (%d rows)", yname, length(y)),
             "with no zeros there is no hurdle; fit a (truncated) count model")
  }
  if (ncol(X) == 0L || ncol(Z) == 0L) {
    stop_arg("formula", sprintf("gives the %s part no columns",
                                if (ncol(X) == 0L) "count" else "zero hurdle"),
             "keep the intercept or add a regressor to each part")
  }
  check_rank_(X[y > 0, , drop = FALSE], "count (positive counts only)")
  check_rank_(Z, "zero hurdle")
  pos <- y > 0
  Xp <- X[pos, , drop = FALSE]
  yp <- y[pos]
  wp <- wvec[pos]

  warm <- !is.null(start) && identical(start$dist, dist)
  cnames <- c(colnames(X), if (dist == "negbin") ".log_theta")
  fc <- if (warm && identical(names(start$count), cnames)) {
    mle_fit_(if (dist == "negbin") "ztnegbin" else "ztpois", Xp, yp, unname(start$count),
             tol = tol, maxit = maxit, weights = wp)
  }
  if (is.null(fc) || !fc$converged) {
    # count part: zero-truncated Poisson, then NB2 started from it
    s0 <- rep(0, ncol(X))
    if ("(Intercept)" %in% colnames(X)) {
      s0[colnames(X) == "(Intercept)"] <- log(if (is.null(wp)) mean(yp) else
        stats::weighted.mean(yp, wp))
    }
    fc <- mle_fit_("ztpois", Xp, yp, s0, tol = tol, maxit = maxit, weights = wp)
    if (dist == "negbin") {
      fc <- mle_fit_("ztnegbin", Xp, yp, c(fc$par, 0), tol = tol, maxit = maxit,
                     weights = wp)
    }
  }
  fz <- if (warm && identical(names(start$zero), colnames(Z))) {
    mle_fit_("logit", Z, as.numeric(pos), unname(start$zero), tol = tol, maxit = maxit,
             weights = wvec)
  }
  if (is.null(fz) || !fz$converged) {
    fz <- mle_fit_("logit", Z, as.numeric(pos), rep(0, ncol(Z)), tol = tol,
                   maxit = maxit, weights = wvec)
  }
  if (!fz$converged) {
    pz <- stats::plogis(drop(Z %*% fz$par))
    sep <- any(pz < 1e-8 | pz > 1 - 1e-8)
    warn_not_converged("hurdle_fit(): Newton-Raphson in the zero hurdle", fz$convergence,
                       if (sep) paste0("a regressor separates zeros from positive counts ",
                                       "perfectly, so the logit estimates diverge; remove or merge it.") else
                         "increase `maxit` or simplify the model.")
  }
  if (!fc$converged) {
    warn_not_converged("hurdle_fit(): Newton-Raphson in the count part", fc$convergence,
                       "increase `maxit` or simplify the model.")
  }
  kx <- ncol(X)
  kz <- ncol(Z)
  ncp <- length(fc$par)
  nm <- c(paste0("count_", colnames(X)), paste0("zero_", colnames(Z)))
  est <- c(fc$par[seq_len(kx)], fz$par)
  names(est) <- nm
  bread_c <- safe_inverse_(-fc$hessian)
  bread_z <- safe_inverse_(-fz$hessian)
  keep_c <- seq_len(kx)
  vm <- matrix(0, kx + kz, kx + kz, dimnames = list(nm, nm))
  vm[keep_c, keep_c] <- bread_c[keep_c, keep_c]
  vm[kx + seq_len(kz), kx + seq_len(kz)] <- bread_z
  theta <- se_log_theta <- NULL
  if (dist == "negbin") {
    theta <- exp(fc$par[kx + 1L])
    se_log_theta <- sqrt(bread_c[kx + 1L, kx + 1L])
  }
  V <- vm
  G <- use$n_clusters
  df <- Inf
  if (!is.null(cvec)) {
    # full score matrix (n x (ncp + kz)); count scores are zero where y = 0
    sc <- matrix(0, length(y), ncp + kz)
    sc[pos, seq_len(ncp)] <- fc$score
    sc[, ncp + seq_len(kz)] <- fz$score
    bread <- matrix(0, ncp + kz, ncp + kz)
    bread[seq_len(ncp), seq_len(ncp)] <- bread_c
    bread[ncp + seq_len(kz), ncp + seq_len(kz)] <- bread_z
    keep <- c(keep_c, ncp + seq_len(kz))
    if (dist == "negbin" && !theta_in_meat) {
      Vf <- sandwich_cl_(bread[keep, keep], sc[, keep, drop = FALSE], cvec)
    } else {
      Vf <- sandwich_cl_(bread, sc, cvec)[keep, keep]
    }
    V <- Vf
    dimnames(V) <- list(nm, nm)
    df <- G - 1
  }
  structure(list(
    coefficients = est, theta = theta, se_log_theta = se_log_theta,
    loglik = fc$loglik + fz$loglik, vcov = V, vcov_model = vm, df = df,
    npar = length(est) + (dist == "negbin"), nobs = length(y),
    n_zero = sum(!pos), n_clusters = G, n_dropped = use$n_dropped,
    n_zero_weight = use$n_zero_weight, weighted = !is.null(wvec),
    dist = dist, converged = fc$converged && fz$converged,
    iterations = c(count = fc$iter, zero = fz$iter),
    convergence = merge_status_(list(count = fc$convergence, zero = fz$convergence)), call = cl
  ), class = c("sfp_hurdle", "sfp_mle"))
}

# ---- tobit ---------------------------------------------------------------

#' Two-limit Tobit regression
#'
#' Fits \eqn{y = \min(\max(y^*, L), U)}, \eqn{y^* = x'\beta + \varepsilon},
#' \eqn{\varepsilon \sim N(0, \sigma^2)}, by Newton-Raphson in C with
#' analytic derivatives in \eqn{(\beta, \log\sigma)}. Observations at or
#' below `left` are left-censored and at or above `right` right-censored,
#' exactly as in `AER::tobit()`, whose estimates this reproduces to the
#' optimiser's tolerance. For days on a child protection plan use `left = 0`
#' and `right` = the cap (e.g. 548 days for 18 months); the protocol's
#' right-censored version is `left = -Inf`.
#'
#' The summary reports average marginal effects on the censored mean,
#' \eqn{\partial E[y|x]/\partial x_k = \beta_k[\Phi(b) - \Phi(a)]} with
#' \eqn{a = (L - x'\beta)/\sigma}, \eqn{b = (U - x'\beta)/\sigma} (`vignette("methods")`
#' s8), averaged over the sample, with delta-method standard errors from
#' the same variance as the coefficients. For a 0/1 regressor this is the
#' derivative, not the discrete change.
#'
#' @inheritParams hurdle_fit
#' @param formula `outcome ~ regressors`.
#' @param left,right Censoring limits, `left < right`; `-Inf`/`Inf` for
#'   none.
#' @return An object of class `sfp_tobit`: `coefficients` (\eqn{\beta} and
#'   `Log(scale)`), `scale`, `loglik`, `vcov` (cluster-robust if `cluster`
#'   was given), `vcov_model`, `df`, `nobs`, `n_left`, `n_right`,
#'   `n_clusters`, `n_dropped`, `effects` (average marginal effects) and
#'   `call`, with the methods of [hurdle_fit()].
#' @examples
#' set.seed(2)
#' d <- data.frame(x = rnorm(200), la = rep(1:5, 40))
#' d$days <- pmin(pmax(100 + 80 * d$x + rnorm(200, sd = 90), 0), 300)
#' fit <- tobit_fit(days ~ x, d, left = 0, right = 300, cluster = "la")
#' summary(fit)
#' @export
tobit_fit <- function(formula, data, left = 0, right = Inf, cluster = NULL,
                      weights = NULL, tol = 1e-10, maxit = 100L) {
  cl <- match.call()
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    stop_arg("formula", "must be a two-sided formula such as `days ~ treated + age`")
  }
  if (!is.data.frame(data)) stop_arg("data", "must be a data frame")
  if (!is.numeric(left) || !is.numeric(right) || length(left) != 1L ||
      length(right) != 1L || is.na(left) || is.na(right)) {
    stop_arg("left/right", "must each be a single number (-Inf/Inf for no limit)")
  }
  if (left >= right) {
    stop_arg("left", sprintf("(%s) must be below `right` (%s)", format(left),
                             format(right)),
             "give the lower censoring point as `left` and the cap as `right`")
  }
  use <- analysed_rows_(formula, data, cluster, weights, formula,
                        y_fix = "give the outcome as a number (e.g. days).")
  d <- use$data
  cvec <- use$cluster
  wvec <- use$weights
  yname <- use$yname
  y <- as.double(use$y)
  X <- stats::model.matrix(formula, d)
  if (ncol(X) == 0L) {
    stop_arg("formula", "gives no columns", "keep the intercept or add a regressor")
  }
  check_finite_(X, y, yname)
  check_rank_(X, "Tobit")
  rows <- use$kept
  status <- ifelse(y <= left, 1L, ifelse(y >= right, 2L, 0L))
  if (all(status != 0L)) {
    stop_arg("data", sprintf("has `%s` at a censoring limit in all %d rows", yname, length(y)),
             "a Tobit model needs uncensored values; check `left` and `right`")
  }
  if (sum(status == 0L) <= ncol(X)) {
    stop_rows("data", yname, rows[status == 0L],
              sprintf("uncensored, too few for %d coefficients", ncol(X)),
              "use fewer regressors or a binary model")
  }
  bad <- which((y < left & is.finite(left)) | (y > right & is.finite(right)))
  if (length(bad)) {
    warn_rows("data", yname, rows[bad],
              "outside [left, right], treated as censored at the nearer limit",
              "check that `left` and `right` are the censoring points of the outcome")
  }
  ww <- wvec %||% rep(1, length(y))
  ols <- stats::lm.wfit(X, y, ww)
  start <- c(ols$coefficients, log(sqrt(sum(ww * ols$residuals^2) / sum(ww))))
  f <- mle_fit_("tobit", X, y, start, status = status,
                limits = c(left, right), tol = tol, maxit = maxit, weights = wvec)
  if (!f$converged) {
    warn_not_converged("tobit_fit(): Newton-Raphson", f$convergence,
                       "increase `maxit` or simplify the model.")
  }
  nm <- c(colnames(X), "Log(scale)")
  est <- stats::setNames(f$par, nm)
  vm <- safe_inverse_(-f$hessian)
  dimnames(vm) <- list(nm, nm)
  V <- vm
  G <- use$n_clusters
  df <- Inf
  if (!is.null(cvec)) {
    V <- sandwich_cl_(vm, f$score, cvec)
    dimnames(V) <- list(nm, nm)
    df <- G - 1
  }
  # average marginal effects on E[y | x] and their delta-method SEs
  ame <- function(par) {
    k <- ncol(X)
    xb <- drop(X %*% par[seq_len(k)])
    s <- exp(par[k + 1L])
    share <- stats::weighted.mean(stats::pnorm((right - xb) / s) -
                                    stats::pnorm((left - xb) / s), ww)
    par[seq_len(k)] * share
  }
  eff <- ame(f$par)
  J <- vapply(seq_along(f$par), function(j) {
    h <- 1e-6 * max(1, abs(f$par[j]))
    up <- dn <- f$par
    up[j] <- up[j] + h
    dn[j] <- dn[j] - h
    (ame(up) - ame(dn)) / (2 * h)
  }, numeric(ncol(X)))
  J <- matrix(J, ncol(X))
  ve <- J %*% V %*% t(J)
  names(eff) <- colnames(X)
  effects <- coef_table_(eff, ve, df)
  effects <- effects[effects$term != "(Intercept)", , drop = FALSE]
  rownames(effects) <- NULL
  structure(list(
    coefficients = est, scale = exp(f$par[length(f$par)]), loglik = f$loglik,
    vcov = V, vcov_model = vm, df = df, npar = length(est), nobs = length(y),
    n_left = sum(status == 1L), n_right = sum(status == 2L),
    left = left, right = right, n_clusters = G, n_dropped = use$n_dropped,
    n_zero_weight = use$n_zero_weight, weighted = !is.null(wvec),
    effects = effects, converged = f$converged, iterations = f$iter,
    convergence = f$convergence, call = cl
  ), class = c("sfp_tobit", "sfp_mle"))
}

# ---- methods shared by sfp_hurdle and sfp_tobit ------------------------

#' @export
coef.sfp_mle <- function(object, ...) object$coefficients

#' @export
vcov.sfp_mle <- function(object, type = c("default", "model"), ...) {
  type <- match.arg(type)
  if (type == "model") object$vcov_model else object$vcov
}

#' @export
nobs.sfp_mle <- function(object, ...) object$nobs

#' @export
logLik.sfp_mle <- function(object, ...) {
  structure(object$loglik, df = object$npar, nobs = object$nobs,
            class = "logLik")
}

#' @export
confint.sfp_mle <- function(object, parm, level = 0.95, ...) {
  tab <- coef_table_(object$coefficients, object$vcov, object$df)
  q <- if (is.finite(object$df)) stats::qt(1 - (1 - level) / 2, object$df) else
    stats::qnorm(1 - (1 - level) / 2)
  ci <- cbind(tab$estimate - q * tab$std.error, tab$estimate + q * tab$std.error)
  pct <- paste(format(100 * c((1 - level) / 2, 1 - (1 - level) / 2),
                      trim = TRUE, scientific = FALSE, digits = 3), "%")
  dimnames(ci) <- list(tab$term, pct)
  if (!missing(parm)) ci <- ci[parm, , drop = FALSE]
  ci
}

#' @exportS3Method generics::tidy
tidy.sfp_mle <- function(x, conf.int = TRUE, conf.level = 0.95, ...) {
  tab <- coef_table_(x$coefficients, x$vcov, x$df)
  if (conf.int) {
    ci <- confint(x, level = conf.level)
    tab$conf.low <- unname(ci[, 1])
    tab$conf.high <- unname(ci[, 2])
  }
  tab$df <- x$df
  tab
}

#' @exportS3Method generics::glance
glance.sfp_mle <- function(x, ...) {
  data.frame(logLik = x$loglik, AIC = -2 * x$loglik + 2 * x$npar,
             BIC = -2 * x$loglik + log(x$nobs) * x$npar, nobs = x$nobs,
             n_clusters = x$n_clusters, df = x$df, converged = x$converged)
}

#' @export
summary.sfp_mle <- function(object, ...) {
  structure(list(object = object,
                 table = coef_table_(object$coefficients, object$vcov,
                                     object$df)),
            class = "summary.sfp_mle")
}

#' @export
print.summary.sfp_mle <- function(x, digits = 4, ...) {
  o <- x$object
  print(o, digits = digits, table = x$table)
  if (inherits(o, "sfp_tobit")) {
    cat("\nAverage marginal effects on E[y | x]:\n")
    e <- o$effects
    rownames(e) <- e$term
    print(format(e[-1], digits = digits), quote = FALSE)
  }
  invisible(x)
}

#' @export
print.sfp_mle <- function(x, digits = 4, table = NULL, ...) {
  if (inherits(x, "sfp_hurdle")) {
    cat(sprintf("Hurdle model: logit zero hurdle + zero-truncated %s\n",
                if (x$dist == "poisson") "Poisson" else "negative binomial (NB2)"))
    cat(sprintf("%d observations, %d zeros (%.1f%%)", x$nobs, x$n_zero,
                100 * x$n_zero / x$nobs))
  } else {
    cat(sprintf("Tobit model, censored at left = %s, right = %s\n",
                format(x$left), format(x$right)))
    cat(sprintf("%d observations: %d left-censored, %d right-censored",
                x$nobs, x$n_left, x$n_right))
  }
  if (x$n_dropped > 0) cat(sprintf("; %d rows with missing values left out",
                                   x$n_dropped))
  if (isTRUE(x$n_zero_weight > 0)) cat(sprintf("; %d rows with weight 0 left out",
                                               x$n_zero_weight))
  if (isTRUE(x$weighted)) cat("; weighted")
  cat("\n")
  cat(if (is.finite(x$df)) sprintf(
    "Cluster-robust SEs (%d clusters), t(%d) reference\n", x$n_clusters,
    as.integer(x$df)) else "Model-based SEs, normal reference\n")
  tab <- table %||% coef_table_(x$coefficients, x$vcov, x$df)
  m <- as.matrix(tab[-1])
  rownames(m) <- tab$term
  colnames(m) <- c("Estimate", "Std. Error", if (is.finite(x$df)) "t value" else
    "z value", "Pr(>|t|)")
  print(signif(m, digits))
  if (!is.null(x$theta)) {
    cat(sprintf("theta = %s (SE of log(theta) %s)\n", format(x$theta, digits = digits),
                format(x$se_log_theta, digits = digits)))
  }
  if (!is.null(x$scale)) cat(sprintf("scale = %s\n", format(x$scale, digits = digits)))
  cat(sprintf("log-likelihood %s\n", format(x$loglik, digits = digits + 3)))
  disclosure_status(c(x$nobs, x$n_zero, x$n_left, x$n_right, if (x$n_dropped > 0) x$n_dropped))
  invisible(x)
}

# ---- excess zeros ---------------------------------------------------------

#' Check a count outcome for excess zeros
#'
#' Implements the Family Safeguarding protocol's footnote 33: compare the
#' number of zeros observed with the number expected under the standard
#' Poisson or negative binomial model, \eqn{E_0 = \sum_i f(0; \hat\mu_i)}.
#' For the Poisson model it also gives van den Broek's (1995) score test for
#' zero inflation,
#' \deqn{S = \frac{[\sum_i (1\{y_i = 0\} - \hat p_i)/\hat p_i]^2}
#'   {\sum_i (1 - \hat p_i)/\hat p_i - \hat\mu'X(X'\mathrm{diag}(\hat\mu)X)^{-1}X'\hat\mu}
#'   \sim \chi^2_1,}
#' \eqn{\hat p_i = e^{-\hat\mu_i}}; with the negative binomial the test is
#' not defined and is `NA`. A ratio well above 1 (and a small p-value)
#' supports the hurdle model (`hurdle_fit()`).
#'
#' @param fit_or_formula A formula `count ~ regressors`, or a fitted
#'   `glm(..., family = poisson)`.
#' @param data A data frame (for a formula).
#' @param dist `"poisson"` or `"negbin"` (NB2 by maximum likelihood), for a
#'   formula.
#' @param max_count Largest count shown in the table of observed and
#'   expected frequencies (a hanging rootogram's data).
#' @return An object of class `sfp_zero_check`: a list with `observed`
#'   (\eqn{O_0}), `expected` (\eqn{E_0}), `ratio` (\eqn{O_0/E_0}),
#'   `statistic`, `p.value`, `dist`, `theta` (negbin), `nobs`, `n_dropped`
#'   and `frequencies` (data frame of count, observed, expected).
#' @examples
#' set.seed(3)
#' d <- data.frame(x = rnorm(400))
#' d$y <- ifelse(runif(400) < 0.4, 0, rpois(400, exp(1 + 0.3 * d$x)))
#' zero_check(y ~ x, d)
#' @export
zero_check <- function(fit_or_formula, data = NULL,
                       dist = c("poisson", "negbin"), max_count = 10L) {
  dist <- match.arg(dist)
  theta <- NULL
  n_dropped <- 0L
  if (inherits(fit_or_formula, "glm")) {
    fam <- stats::family(fit_or_formula)
    if (fam$family != "poisson" || fam$link != "log") {
      stop_arg("fit_or_formula", "is a glm that is not Poisson with a log link",
               "fit glm(..., family = poisson) or pass a formula")
    }
    dist <- "poisson"
    y <- fit_or_formula$y
    X <- stats::model.matrix(fit_or_formula)
    mu <- stats::fitted(fit_or_formula)
    pw <- stats::weights(fit_or_formula, "prior")
    if (!is.null(pw) && any(pw != 1)) {
      stop_arg("fit_or_formula", "has prior weights", "refit without weights")
    }
  } else if (inherits(fit_or_formula, "formula")) {
    formula <- fit_or_formula
    if (length(formula) != 3L) stop_arg("fit_or_formula", "must be two-sided")
    if (!is.data.frame(data)) stop_arg("data", "must be a data frame")
    ok <- complete_rows_(formula, data, NULL)
    n_dropped <- report_dropped_(ok, "the outcome or a regressor")
    d <- data[ok, , drop = FALSE]
    yname <- deparse(formula[[2]])
    if (nrow(d) == 0L) stop_arg("data", "has no complete rows for this formula")
    y <- as.double(stats::model.response(stats::model.frame(formula, d)))
    X <- stats::model.matrix(formula, d)
    check_finite_(X, y, yname)
    rows <- which(ok)
    bad <- which(y < 0 | y != round(y))
    if (length(bad)) {
      stop_rows("data", yname, rows[bad], "with a negative or non-whole count",
                "a count must be a non-negative whole number")
    }
    if (all(y == 0)) {
      stop_arg("data", sprintf("has only zeros in `%s` (%d rows)", yname, length(y)),
               "there is nothing to model; report the zero rate instead")
    }
    if (ncol(X) == 0L) {
      stop_arg("fit_or_formula", "gives no columns", "keep the intercept or add a regressor")
    }
    check_rank_(X, "count")
    start <- rep(0, ncol(X))
    if ("(Intercept)" %in% colnames(X)) start[colnames(X) == "(Intercept)"] <- log(mean(y))
    f <- mle_fit_("pois", X, y, start)
    if (dist == "negbin") {
      f <- mle_fit_("negbin", X, y, c(f$par, 0))
      theta <- exp(f$par[ncol(X) + 1L])
    }
    if (!f$converged) {
      warn_not_converged("zero_check(): the count model (Newton-Raphson)", f$convergence,
                         "simplify the model or fit it with glm() and pass the fit.")
    }
    mu <- exp(drop(X %*% f$par[seq_len(ncol(X))]))
  } else {
    stop_arg("fit_or_formula", "must be a formula or a Poisson glm")
  }
  p0 <- if (dist == "poisson") exp(-mu) else (theta / (theta + mu))^theta
  O0 <- sum(y == 0)
  E0 <- sum(p0)
  stat <- NA_real_
  if (dist == "poisson") {
    num <- sum(((y == 0) - p0) / p0)^2
    Xm <- crossprod(X, mu)
    den <- sum((1 - p0) / p0) - drop(crossprod(Xm, solve(crossprod(X * sqrt(mu)), Xm)))
    stat <- num / den
  }
  ks <- 0:max_count
  expct <- vapply(ks, function(k) {
    if (dist == "poisson") sum(stats::dpois(k, mu)) else
      sum(stats::dnbinom(k, size = theta, mu = mu))
  }, numeric(1))
  freq <- data.frame(count = ks, observed = vapply(ks, function(k) sum(y == k), 0),
                     expected = expct)
  structure(list(observed = O0, expected = E0, ratio = O0 / E0,
                 statistic = stat,
                 p.value = stats::pchisq(stat, 1, lower.tail = FALSE),
                 dist = dist, theta = theta, nobs = length(y),
                 n_dropped = n_dropped, frequencies = freq),
            class = "sfp_zero_check")
}

#' @export
print.sfp_zero_check <- function(x, digits = 4, ...) {
  cat(sprintf("Excess zeros under the %s model (%d observations)\n",
              if (x$dist == "poisson") "Poisson" else "negative binomial", x$nobs))
  cat(sprintf("observed zeros %d, expected %s, ratio %s\n", x$observed,
              format(x$expected, digits = digits), format(x$ratio, digits = digits)))
  if (!is.na(x$statistic)) {
    cat(sprintf("van den Broek score test: chi-squared(1) = %s, %s\n",
                format(x$statistic, digits = digits), format_p_(x$p.value, digits)))
  }
  disclosure_status(c(x$nobs, x$observed))
  invisible(x)
}

# The rows a hurdle or tobit fit analyses: complete in every variable of
# `f_all` and the cluster, with a positive weight; the exclusions are
# reported and counted. Also the numeric response of `f_y` on those rows
# (an error with `y_fix` if it is not numeric) and the number of clusters
# (NA without a cluster; an error if there is only one).
analysed_rows_ <- function(f_all, data, cluster, weights, f_y, y_fix = NULL) {
  cvec <- resolve_cluster_(cluster, data)
  wvec <- resolve_weights_(weights, data)
  ok <- complete_rows_(f_all, data, cvec)
  n_dropped <- report_dropped_(ok, "the outcome, a regressor or the cluster")
  n_zero_weight <- if (is.null(wvec)) 0L else sum(ok & wvec == 0)
  if (!is.null(wvec)) ok <- ok & wvec > 0
  if (!any(ok)) {
    stop_arg("data", "has no complete rows with a positive weight for this formula",
             "check the variables for missing values and the weights")
  }
  d <- data[ok, , drop = FALSE]
  yname <- deparse(f_y[[2]])
  y <- stats::model.response(stats::model.frame(f_y, d))
  if (!is.numeric(y)) {
    stop_arg("formula", sprintf("has outcome `%s` that is not numeric", yname), y_fix)
  }
  n_clusters <- if (is.null(cvec)) NA_integer_ else length(unique(cvec[ok]))
  if (isTRUE(n_clusters < 2L)) {
    stop_arg("cluster", "has a single cluster, so a cluster-robust variance is undefined",
             "use cluster = NULL, or data from two or more clusters")
  }
  list(data = d, y = y, yname = yname, cluster = cvec[ok], weights = wvec[ok],
       n_clusters = n_clusters, kept = which(ok), n_dropped = n_dropped,
       n_zero_weight = n_zero_weight)
}
