# The modelling conventions R users reach for, on sfpceval's fits:
# * sw_glmm(): the lme4 generics that R/glmm.R does not already give
#   (VarCorr(), predict() conditional / at b = 0 / marginal, anova() between
#   nested fits, fitted(), residuals(), formula(), df.residual()), registered
#   for nlme's generics (which lme4 re-exports) without importing either;
# * tidy(), glance() and augment() (the generics package) for every fit,
#   test and bootstrap that lacks them, so table tools (modelsummary,
#   gtsummary-style) take them.
# AIC() and BIC() work through logLik().

# ---- sw_glmm: data and model matrices ----------------------------------------

# The data a fit was made from: its call's `data`, evaluated where the
# formula was written (sw_glmm() keeps no copy of the data).
glmm_data <- function(object) {
  ok <- function(d) is.data.frame(d) && (is.null(object$n_data) || nrow(d) == object$n_data)
  look <- function(env) tryCatch(eval(object$call$data, env), error = function(e) NULL)
  d <- look(environment(object$formula))
  # Else where the caller is (a formula written elsewhere, data made here).
  frames <- rev(sys.frames())
  i <- 0L
  while (!ok(d) && i < length(frames)) {
    i <- i + 1L
    d <- look(frames[[i]])
  }
  if (!ok(d)) {
    stop_arg("newdata", "is needed: the data the model was fitted to cannot be found (or has changed)",
             "give `newdata`, the data frame to predict for.")
  }
  d
}

# Model matrix of the fixed part and the random intercepts' grouping keys
# for `newdata`, with the factor levels of the fitted data.
glmm_newdata <- function(object, newdata) {
  pf <- parse_glmm_formula(object$formula)
  train <- glmm_data(object)
  rows <- object$kept_rows %||% seq_len(nrow(train))
  tt <- stats::terms(pf$fixed)
  mf0 <- stats::model.frame(tt, train[rows, , drop = FALSE], drop.unused.levels = TRUE)
  xlev <- stats::.getXlevels(tt, mf0)
  rhs <- stats::delete.response(tt)
  mf <- stats::model.frame(rhs, newdata, xlev = xlev, na.action = stats::na.pass)
  X <- stats::model.matrix(rhs, mf, contrasts.arg = attr(stats::model.matrix(tt, mf0), "contrasts"))
  cf <- object$coefficients
  miss <- setdiff(names(cf), colnames(X))
  if (length(miss)) {
    stop_arg("newdata", sprintf("does not give the model's columns %s",
                                paste0("`", miss, "`", collapse = ", ")),
             "give the variables of the fixed part with the fitted levels.")
  }
  env <- environment(object$formula)
  g <- lapply(pf$groups, function(e) as.character(eval(e, newdata, env)))
  keys <- if (length(g) == 1L) list(g[[1L]]) else
    list(g[[1L]], paste(g[[2L]], g[[1L]], sep = ":"))
  list(X = X[, names(cf), drop = FALSE], keys = keys)
}

#' lme4-style methods for sw_glmm fits
#'
#' `VarCorr()`, `predict()`, `fitted()`, `residuals()` and `anova()` for
#' [sw_glmm()] fits, working like lme4's for `glmer()` / `lmer()` fits
#' (`fixef()`, `ranef()`, `logLik()`, `nobs()`, `confint()` are documented
#' with [sw_glmm()]; `AIC()` and `BIC()` work through `logLik()`). The
#' generics `fixef()`, `ranef()` and `VarCorr()` are nlme's, which lme4
#' re-exports: `lme4::VarCorr(fit)` works when lme4 is installed, and
#' neither package is needed otherwise (`VarCorr()` is then called as
#' `sfpceval:::VarCorr.sw_glmm(fit)`, or via `nlme::VarCorr()`).
#'
#' **Predictions.** `re.form = NULL` (default) includes the estimated
#' random intercepts (conditional on the authority: lme4's default; an
#' authority not in the fit gets 0, as with `allow.new.levels = TRUE`);
#' `re.form = NA` (or `~0`) sets them to 0 (a typical authority). With
#' `marginal = TRUE` (binomial, `type = "response"`) the risk is averaged
#' over the random-intercept distribution N(0, sigma^2) by 25-node
#' Gauss-Hermite quadrature: the population-averaged risk, the scale of the
#' marginal risk difference of [sw_glmm()]. Without `newdata` the
#' predictions are for the rows the model was fitted to (the data are found
#' through the fit's call).
#'
#' **anova()** compares nested fits to the same rows by likelihood-ratio
#' tests, with lme4's table (`npar`, `AIC`, `BIC`, `logLik`, `deviance`,
#' `Chisq`, `Df`, `Pr(>Chisq)`). Gaussian REML fits are refitted by maximum
#' likelihood first (REML criteria of models with different fixed effects
#' are not comparable), as lme4 does.
#'
#' @param x,object An `sw_glmm` fit.
#' @param newdata A data frame to predict for (`NULL`: the fitted rows).
#' @param type `"link"` (linear predictor) or `"response"` (probability for
#'   the binomial family); for `residuals()`, `"response"` (y - mu) or
#'   `"pearson"` ((y - mu) / sqrt(mu (1 - mu)) for the binomial family,
#'   (y - mu) sqrt(w) / sigma for the gaussian, w the prior weights).
#' @param re.form `NULL` to include the random intercepts, `NA` or `~0` to
#'   set them to 0.
#' @param marginal `TRUE` for the population-averaged risk (binomial,
#'   `type = "response"`, `re.form = NA`).
#' @param sigma Not used (for compatibility with the generic).
#' @param ... For `anova()`, further nested fits; otherwise not used.
#' @return `VarCorr()`: a data frame of class `VarCorr.sw_glmm` (`grp`,
#'   `var1`, `var2`, `vcov`, `sdcor`, as `as.data.frame(lme4::VarCorr())`).
#'   `predict()`, `fitted()`, `residuals()`: numeric vectors. `anova()`: a
#'   data frame of class `anova`.
#' @examples
#' set.seed(1)
#' d <- expand.grid(la = paste0("LA", 1:5), period = 0:5, child = 1:40)
#' d$treated <- as.integer(d$period >= match(d$la, paste0("LA", 1:5)))
#' b <- rnorm(5, sd = 0.4)[match(d$la, paste0("LA", 1:5))]
#' d$y <- rbinom(nrow(d), 1, plogis(-1 + 0.3 * d$treated + b))
#' fit <- sw_glmm(y ~ treated + factor(period) + (1 | la), d)
#' fit0 <- sw_glmm(y ~ factor(period) + (1 | la), d)
#' if (requireNamespace("lme4", quietly = TRUE)) lme4::VarCorr(fit)
#' head(predict(fit, type = "response"))
#' head(predict(fit, type = "response", re.form = NA, marginal = TRUE))
#' anova(fit0, fit)
#' AIC(fit0, fit)
#' @name sw_glmm-lme4
#' @importFrom stats predict fitted residuals anova formula
NULL

#' @rdname sw_glmm-lme4
#' @exportS3Method nlme::VarCorr
VarCorr.sw_glmm <- function(x, sigma = 1, ...) {
  # lme4 lists the inner level ("child_id:la") first.
  grp <- rev(names(x$ranef))
  sd <- rev(unname(x$sigma))
  out <- data.frame(grp = grp, var1 = "(Intercept)", var2 = NA_character_,
                    vcov = sd^2, sdcor = sd, stringsAsFactors = FALSE)
  if (!is.null(x$residual_sd)) {
    out <- rbind(out, data.frame(grp = "Residual", var1 = NA_character_, var2 = NA_character_,
                                 vcov = x$residual_sd^2, sdcor = x$residual_sd))
  }
  structure(out, class = c("VarCorr.sw_glmm", "data.frame"))
}

#' @export
print.VarCorr.sw_glmm <- function(x, digits = max(3L, getOption("digits") - 2L), ...) {
  d <- data.frame(Groups = x$grp, Name = ifelse(is.na(x$var1), "", x$var1),
                  Variance = format(x$vcov, digits = digits),
                  Std.Dev. = format(x$sdcor, digits = digits))
  print(d, row.names = FALSE, right = FALSE)
  invisible(x)
}

#' @rdname sw_glmm-lme4
#' @export
predict.sw_glmm <- function(object, newdata = NULL, type = c("link", "response"),
                            re.form = NULL, marginal = FALSE, ...) {
  type <- match.arg(type)
  zero_re <- !is.null(re.form) && (identical(re.form, NA) || (inherits(re.form, "formula") &&
                                                              identical(re.form[[length(re.form)]], 0)))
  if (!is.null(re.form) && !zero_re) {
    stop_arg("re.form", "must be NULL (with the random intercepts) or NA / ~0 (without)")
  }
  if (!isTRUE(marginal) && !isFALSE(marginal)) stop_arg("marginal", "must be TRUE or FALSE")
  if (marginal && (object$family$family != "binomial" || type != "response" || !zero_re)) {
    stop_arg("marginal", "applies to binomial fits with type = \"response\" and re.form = NA",
             "use predict(fit, type = \"response\", re.form = NA, marginal = TRUE).")
  }
  if (is.null(newdata)) {
    d <- glmm_data(object)
    newdata <- d[object$kept_rows %||% seq_len(nrow(d)), , drop = FALSE]
  }
  nd <- glmm_newdata(object, newdata)
  eta <- drop(nd$X %*% object$coefficients)
  if (!zero_re) {
    for (k in seq_along(nd$keys)) {
      re <- object$ranef[[k]]
      b <- unname(re[nd$keys[[k]]])
      b[is.na(b)] <- 0
      eta <- eta + b
    }
  }
  names(eta) <- rownames(newdata)
  if (type == "link" || object$family$family != "binomial") return(eta)
  if (!marginal) return(stats::plogis(eta))
  q <- normal_quadrature(25L)
  s <- unname(object$sigma[1])
  vapply(eta, function(e) sum(q$w * stats::plogis(e + s * q$z)), 0)
}

#' @rdname sw_glmm-lme4
#' @export
fitted.sw_glmm <- function(object, ...) predict(object, type = "response")

#' @rdname sw_glmm-lme4
#' @export
residuals.sw_glmm <- function(object, type = c("response", "pearson"), ...) {
  type <- match.arg(type)
  d <- glmm_data(object)
  d <- d[object$kept_rows %||% seq_len(nrow(d)), , drop = FALSE]
  y <- as.numeric(eval(object$formula[[2L]], d, environment(object$formula)))
  mu <- predict(object, newdata = d, type = "response")
  r <- y - mu
  if (type == "pearson") {
    r <- r / if (object$family$family == "binomial") sqrt(mu * (1 - mu)) else object$residual_sd
    # prior weights: residual variance sigma^2 / w (as lme4's)
    if (!is.null(object$prior_weights)) r <- r * sqrt(object$prior_weights[object$kept_rows])
  }
  r
}

#' @export
formula.sw_glmm <- function(x, ...) x$formula

#' @rdname sw_glmm-lme4
#' @export
anova.sw_glmm <- function(object, ...) {
  fits <- c(list(object), list(...))
  if (length(fits) < 2L || !all(vapply(fits, inherits, TRUE, "sw_glmm"))) {
    stop_arg("...", "must hold at least one more sw_glmm() fit to compare with",
             "give nested fits: anova(fit0, fit1).")
  }
  names(fits) <- vapply(as.list(substitute(list(object, ...)))[-1], function(e) paste(deparse(e), collapse = ""), "")
  n <- vapply(fits, `[[`, 0L, "nobs")
  if (length(unique(n)) > 1L) {
    stop_arg("...", sprintf("holds fits to different numbers of rows (%s)", paste(n, collapse = ", ")),
             "fit every model to the same rows.")
  }
  reml <- vapply(fits, function(f) isTRUE(f$REML), TRUE)
  if (any(reml)) {
    message("anova(): refitting model(s) with ML (instead of REML)")
    fits[reml] <- lapply(fits[reml], function(f) {
      cl <- f$call
      cl$REML <- FALSE
      suppressMessages(eval(cl, environment(f$formula)))
    })
  }
  fits <- fits[order(vapply(fits, `[[`, 0L, "df"))]
  ll <- vapply(fits, `[[`, 0, "loglik")
  k <- vapply(fits, `[[`, 0L, "df")
  chisq <- c(NA, 2 * pmax(0, diff(ll)))
  df <- c(NA, diff(k))
  out <- data.frame(npar = k, AIC = -2 * ll + 2 * k, BIC = -2 * ll + log(n[1]) * k,
                    logLik = ll, deviance = -2 * ll, Chisq = chisq, Df = df,
                    `Pr(>Chisq)` = stats::pchisq(chisq, df, lower.tail = FALSE),
                    check.names = FALSE, row.names = names(fits))
  structure(out, heading = "Likelihood-ratio tests of nested sw_glmm() fits\n",
            class = c("anova", "data.frame"))
}

# ---- tidy(), glance(), augment() -------------------------------------------

#' Tidy summaries of sfpceval's fits, tests and bootstraps
#'
#' Methods for the generics package's `tidy()`, `glance()` and `augment()`
#' (which broom re-exports), so the table tools built on them take
#' sfpceval's results. Each fit already has `tidy()` and `glance()` where
#' documented with it ([did_fit()], [sw_glmm()], [fgls_bcj()],
#' [hurdle_fit()], [tobit_fit()], [cem()], [wild_boot()]); these complete
#' the set:
#' * `augment()` of an [sw_glmm()] fit: the fitted rows with `.fitted`
#'   (probability or mean, with the random intercepts), `.fixed` (linear
#'   predictor at b = 0) and `.resid`;
#' * `augment()` of a [cem()] result: `data` with `.weight`, `.stratum` and
#'   `.matched`;
#' * `augment()` of a linear [did_fit()]: `data` with `.fitted` and `.resid`
#'   (the fixed effects included), when no row was excluded;
#' * `tidy()` of a [cem()] result: matched and unmatched counts per group;
#' * `tidy()` of trend matching ([match_trends()]: the ranked candidates)
#'   and of [imbalance()] (L1 by variable; `glance()`: the multivariate L1);
#' * `tidy()` of the staggered-adoption results ([att_gt()],
#'   [aggregate_att()], [bacon()]; `glance()` of [bacon()]);
#' * `tidy()` / `glance()` of a permutation test ([perm_test()]), of the
#'   panel tests ([serial_test()], [hausman_test()]), of a placebo test
#'   ([placebo_test()]), of [zero_check()], and `glance()` of a bootstrap
#'   ([wild_boot()]).
#'
#' @param x A fit, test or bootstrap result.
#' @param data For `augment()`: the data frame the fit was made on (for a
#'   [cem()] result made with `keep_all = TRUE` it may be left out).
#' @param ... Not used.
#' @return A data frame.
#' @examples
#' set.seed(1)
#' d <- expand.grid(la = paste0("LA", 1:5), period = 0:5, child = 1:20)
#' d$treated <- as.integer(d$period >= match(d$la, paste0("LA", 1:5)))
#' d$y <- rbinom(nrow(d), 1, plogis(-1 + 0.3 * d$treated))
#' fit <- sw_glmm(y ~ treated + factor(period) + (1 | la), d)
#' if (requireNamespace("generics", quietly = TRUE)) {
#'   print(generics::tidy(fit))
#'   print(head(generics::augment(fit)))
#' }
#' @name sfpceval-tidiers
NULL

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::augment
augment.sw_glmm <- function(x, data = NULL, ...) {
  if (is.null(data)) {
    d <- glmm_data(x)
    data <- d[x$kept_rows %||% seq_len(nrow(d)), , drop = FALSE]
  }
  y <- as.numeric(eval(x$formula[[2L]], data, environment(x$formula)))
  data$.fitted <- unname(predict(x, newdata = data, type = "response"))
  data$.fixed <- unname(predict(x, newdata = data, re.form = NA))
  data$.resid <- y - data$.fitted
  data
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::augment
augment.did_fit <- function(x, data, ...) {
  if (x$family != "gaussian") {
    stop_arg("x", sprintf("is a %s DiD: augment() gives the residuals of linear (gaussian) fits", x$family))
  }
  dropped <- sum(x$exclusions$n)
  if (missing(data) || !is.data.frame(data) || nrow(data) != x$nobs + dropped || dropped > 0) {
    stop_arg("data", sprintf("must be the data frame did_fit() was run on, with no rows excluded (the fit used %d rows%s)",
                             x$nobs, if (dropped) sprintf(" of %d", x$nobs + dropped) else ""),
             "give the data, after removing the rows with missing values or zero weights.")
  }
  y <- eval(x$formula[[2L]], data, environment(x$formula))
  data$.resid <- x$residuals
  data$.fitted <- y - x$residuals
  data
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_cem <- function(x, ...) {
  n <- x$n
  if (is.matrix(n) || is.data.frame(n)) {
    n <- as.data.frame(as.table(as.matrix(n)), stringsAsFactors = FALSE)
    names(n) <- c("count", "group", "n")
    return(n)
  }
  data.frame(count = names(n), n = unname(n), stringsAsFactors = FALSE)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::augment
augment.sfp_cem <- function(x, data = NULL, ...) {
  data <- data %||% x$data
  if (is.null(data) || nrow(data) != length(x$weights)) {
    stop_arg("data", "must be the data frame cem() was run on",
             "give `data`, or run cem(..., keep_all = TRUE).")
  }
  data$.weight <- x$weights
  data$.stratum <- x$stratum
  data$.matched <- x$matched
  data
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sw_perm_test <- function(x, ...) {
  data.frame(statistic = x$statistic, estimate = x$estimate, p.value = x$p_value,
             conf.low = x$conf_int[1] %||% NA_real_, conf.high = x$conf_int[2] %||% NA_real_,
             n_allocations = x$n_allocations, min_p = x$min_p, can_reject = x$can_reject,
             method = "Stratified permutation test", stringsAsFactors = FALSE)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::glance
glance.sw_perm_test <- function(x, ...) {
  data.frame(n_allocations = x$n_allocations, n_used = x$n_used, sampled = x$sampled,
             strata = x$strata, min_p = x$min_p, can_reject = x$can_reject, alpha = x$alpha)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::glance
glance.wild_boot <- function(x, ...) {
  data.frame(B = x$B, enumerated = x$enumerated, weights = x$weights,
             n_clusters = x$n_clusters, level = x$level, null = x$null,
             p_min = x$p_min, stringsAsFactors = FALSE)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_panel_test <- function(x, ...) {
  data.frame(statistic = unname(x$statistic), parameter = if (length(x$parameter) == 1L) unname(x$parameter) else NA_real_,
             p.value = x$p.value, method = x$method, stringsAsFactors = FALSE)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::glance
glance.sfp_panel_test <- function(x, ...) tidy.sfp_panel_test(x)

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_placebo <- function(x, ...) {
  s <- x$stacked
  s <- as.data.frame(s, stringsAsFactors = FALSE)
  cbind(data.frame(outcome = x$outcome, months_before = x$months_before, vcov = x$vcov,
                   stringsAsFactors = FALSE), s)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_zero_check <- function(x, ...) {
  keep <- vapply(unclass(x), function(v) is.atomic(v) && length(v) == 1L, TRUE)
  as.data.frame(unclass(x)[keep], stringsAsFactors = FALSE)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_att_gt <- function(x, ...) {
  a <- x$att
  attr(a, "att_matrix") <- NULL
  data.frame(term = sprintf("ATT(%s,%s)", a$group, a$time), a[setdiff(names(a), "att")],
             estimate = a$att, stringsAsFactors = FALSE, row.names = NULL)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_aggte <- function(x, ...) {
  o <- cbind(data.frame(term = "overall", stringsAsFactors = FALSE), x$overall)
  if (is.null(x$by)) return(`rownames<-`(o, NULL))
  by <- x$by
  key <- names(by)[1]
  b <- cbind(data.frame(term = paste0(key, " ", by[[key]]), stringsAsFactors = FALSE),
             by[setdiff(names(by), key)])
  cols <- union(names(o), names(b))
  o[setdiff(cols, names(o))] <- NA
  b[setdiff(cols, names(b))] <- NA
  out <- rbind(o[cols], b[cols])
  rownames(out) <- NULL
  out
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_bacon <- function(x, ...) {
  out <- x$comparisons
  rownames(out) <- NULL
  out
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::glance
glance.sfp_bacon <- function(x, ...) {
  data.frame(estimate = x$estimate, n_comparisons = nrow(x$comparisons),
             n_periods = length(x$periods))
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_imbalance <- function(x, ...) {
  out <- x$univariate
  rownames(out) <- NULL
  out
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::glance
glance.sfp_imbalance <- function(x, ...) {
  data.frame(L1 = x$L1, LCS = x$LCS, n_cells = x$n_cells, n_cells_both = x$n_cells_both,
             n_treated = x$n_treated, n_control = x$n_control)
}

#' @rdname sfpceval-tidiers
#' @exportS3Method generics::tidy
tidy.sfp_trend_match <- function(x, ...) {
  out <- x$candidates
  rownames(out) <- NULL
  out
}
