# sw_glmm(): the Family Valued stepped-wedge models (issue #6).
#
# Binomial: random-intercept logit by Laplace / adaptive Gauss-Hermite
#   quadrature in C (src/glmm.c) on binomial cells (rows with identical
#   cluster and model-matrix row collapsed to n trials, s successes).
#   Parameters (beta, sigma) with sigma the SD of the random intercept in the
#   spherical parametrisation of lme4 (b = sigma * u, u ~ N(0, 1)), so sigma = 0
#   is an ordinary point of the likelihood and a boundary fit needs no
#   special casing of log(sigma).  Outer optimisation: damped Newton with the
#   analytic gradient and, for the Laplace approximation, the exact analytic
#   Hessian (with more quadrature nodes: an analytic approximation of the
#   beta block of the information and a finite-difference sigma column).
# Gaussian: linear mixed model with (1 | g) or (1 | g / h), profiled REML (or
#   ML) on the variance ratios; the criterion is computed from a handful of
#   (p + 1) x (p + 1) cross-product matrices prepared once (block structure:
#   a child has few rows, all children with the same number of rows share the
#   same within-child weight).

#' Stepped-wedge mixed models: random-intercept logit GLMM and linear mixed model
#'
#' Fits the Family Valued protocol's primary model, a logistic GLMM with a
#' random intercept per local authority (LA), and the linear mixed models of
#' its secondary analysis (days on plans; school absence with a nested
#' individual random effect). The formula is written as for `lme4::glmer()` /
#' `lme4::lmer()`; lme4 is not needed.
#'
#' **Binomial (logit).** The likelihood factorises over clusters; rows with the
#' same cluster and the same model-matrix row are collapsed into binomial cells
#' (n trials, s successes) before fitting, so a cohort of 78,000 children with
#' categorical covariates costs a few thousand cells (when every row is
#' distinct the cells are simply the rows). Each cluster's integral is
#' evaluated in C by the Laplace approximation (`nAGQ = 1`) or adaptive
#' Gauss-Hermite quadrature with `nAGQ` nodes (Golub-Welsch rule) centred at
#' the cluster's conditional mode (found by Newton's method) and scaled by the
#' conditional curvature, exactly as lme4 does for a single scalar random
#' effect. The log-likelihood omits the binomial coefficients, so it equals
#' `logLik(glmer(...))` fitted to the Bernoulli rows. The parameters
#' (beta, sigma) are estimated by a damped Newton method with the analytic
#' gradient of the approximated log-likelihood and, for the Laplace
#' approximation, its exact Hessian (differentiated through the conditional
#' modes); standard errors come from the Hessian of the log-likelihood in
#' (beta, sigma): that exact Hessian for the Laplace approximation, forward
#' differences of the analytic gradient with more quadrature nodes. If the random-intercept SD is
#' estimated at the boundary (sigma < `1e-4` or no better than sigma = 0) the
#' model is refitted with sigma = 0 (a plain logistic regression), a message
#' says so, and `print()` repeats it.
#'
#' **Successes out of trials.** A response `cbind(successes, failures)`
#' (e.g. `cbind(missed, possible - missed)`, sessions of unauthorised absence
#' out of sessions possible: the protocol's logit robustness check for
#' absence) is fitted as binomial counts; the rows collapse into cells as
#' above, `nobs()` counts rows and `ntrials` the trials, and the
#' log-likelihood then includes the binomial coefficients, as glmer's does.
#' Negative counts, successes above the trials (negative failures) and
#' non-whole counts are errors naming the rows; rows with no trials are
#' excluded and counted.
#'
#' The treatment effect is reported as an odds ratio and as a marginal risk
#' difference: the average over the analysed rows of the predicted risk with
#' `treatment` set to 1 minus that with `treatment` set to 0, either at
#' b = 0 (`"conditional"`, the risk for a typical LA) or integrated over the
#' random-intercept distribution N(0, sigma^2) (`"marginal"`, the
#' population-averaged risk); both are given, with delta-method standard
#' errors.
#'
#' **Binomial, nested.** `(1 | la / child_id)` gives random intercepts for
#' the LA and for the child within it (children measured repeatedly, as the
#' school terms of the absence outcome), as `lme4::glmer()`'s
#' `(1 | la) + (1 | la:child_id)`: a child id seen in two LAs is two children.
#' It is fitted by the Laplace approximation (`nAGQ = 1`; adaptive
#' quadrature needs a single scalar random effect). Per LA the joint mode of
#' its intercept and its children's has an arrowhead Hessian, so the mode,
#' the log-determinant and the exact gradient cost O(rows), with no
#' children x children matrix; the standard errors invert the exact Hessian
#' of the Laplace log-likelihood in (beta, both SDs), also computed in O(rows)
#' (second derivatives through the modes). (lme4's `vcov()` for this model
#' takes the fixed-effects block from its PIRLS factor instead, and differs
#' by up to a few percent.)
#'
#' **Gaussian.** Linear mixed model fitted by REML (default) or ML with one
#' random intercept `(1 | la)` or nested random intercepts `(1 | la / child_id)`
#' (LA and child within LA). The criterion is profiled over the residual
#' variance and the fixed effects and optimised over the variance ratios; it
#' equals lme4's REML criterion / deviance.
#'
#' **Prior weights** (`weights`, gaussian only), e.g. the CEM weights of the
#' Family Safeguarding DiD: row i has residual variance sigma^2 / w_i, as
#' `lme4::lmer(weights = )` (and `nlme::lme(weights = varFixed(~ 1 / w))`);
#' the weights enter the cross-products (a child's number of rows becomes
#' the sum of its weights), the log-likelihood includes +sum(log w) / 2 as
#' lme4's does, rows with weight 0 are excluded and counted in
#' `exclusion_flow`, and negative, missing or infinite weights are errors.
#' With `cluster`, CR2 takes the weighted model's covariance as its target,
#' in the original frame (as clubSandwich for the `lme` fit); it needs one
#' weight per child (per unit of the random effect nested in the cluster),
#' which CEM weights are. The binomial family takes no prior weights (write
#' counts as `cbind(successes, failures)`).
#'
#' With 5 LAs the Wald tests are optimistic; the protocol's permutation test
#' is the reference for inference on the treatment effect. For a gaussian
#' fit, [wild_boot()] gives the wild cluster restricted bootstrap-t at the
#' level of the outer grouping (the LA): the restricted GLS fit with the
#' variance components held at their estimates, its residuals multiplied by
#' cluster weights (Rademacher, or Webb's six-point weights, enumerated when
#' there are 2^G / 6^G <= 4,096 / 46,656 vectors), the CR1 t-statistic of each
#' bootstrap GLS fit; the confidence interval inverts the test. It works from
#' per-cluster cross-products kept in the fit, so a draw costs O(G^2). With
#' 5 LAs every wild bootstrap over-rejects (7.6-10.6% at 5% in a size
#' simulation shaped like the Family Valued trial), while CR2 standard errors
#' with Satterthwaite df (`cluster = "la"`) held 5.5-7% and the CR3 t-test
#' with G - 1 df (`tidy(fit, vcov = "CR3")`) 4.3-5.8%, so below 10 clusters
#' `wild_boot()` gives that CR3 t-test by default and says so (its section
#' "Linear mixed models").
#'
#' **Choices where the protocol is silent**:
#' * sigma is the SD of the random intercept, optimised on its own scale
#'   (b = sigma u, u ~ N(0, 1), as lme4's theta) rather than on log(sigma), so
#'   that a fit at or near sigma = 0 is regular; the boundary rule is
#'   sigma < `control$boundary_tol` (1e-4, lme4's singularity tolerance) or a
#'   log-likelihood no better than that of the plain logistic regression.
#' * Standard errors are the inverse of the Hessian of the log-likelihood in
#'   (beta, sigma): analytic for the Laplace approximation, by forward
#'   differences of the analytic gradient (relative accuracy about 1e-7) with
#'   more quadrature nodes (as lme4's default `vcov()` for `glmer`, which also
#'   inverts the joint Hessian); Wald tests use the normal distribution.
#' * The profile interval of a gaussian model uses the maximum-likelihood
#'   profile with the coefficient as an offset (REML is not a likelihood for
#'   the fixed effects); lme4's profile intervals for a REML fit agree with
#'   it (they refit by ML).
#' * Rows are always collapsed to cells; when every row is distinct (a
#'   continuous covariate) the cells are the rows, so the sufficient-statistics
#'   and row-wise computations are one code path.
#' * Missing values in any model variable exclude the row (counted in
#'   `exclusion_flow`, with a warning); the protocol's multiple imputation is
#'   done before calling `sw_glmm()`.
#' * Rows are identified by `kept_rows` (row numbers of `data`), so a
#'   permutation test can refit under another treatment allocation cheaply
#'   (internal `sw_glmm_refit()`), reusing the cells.
#'
#' @param formula A two-sided formula with fixed effects and exactly one
#'   random-intercept term: `y ~ treated + factor(period) + x1 + (1 | la)`.
#'   Both families accept the nested form `(1 | la / child_id)`.
#'   Random slopes are not supported.
#' @param data A data frame holding every variable of `formula`.
#' @param family `binomial()` (logit link; the outcome is 0/1 or logical,
#'   or successes out of trials written `cbind(successes, failures)` as for
#'   `glm()` and `lme4::glmer()`) or `gaussian()` (identity link), as a
#'   family object, a function or a string.
#' @param nAGQ Number of adaptive Gauss-Hermite quadrature nodes per cluster
#'   for the binomial family: 1 (Laplace approximation) to 25; 1 with nested
#'   random intercepts.
#' @param REML For the gaussian family: `TRUE` (default) for REML, `FALSE`
#'   for maximum likelihood.
#' @param treatment Name of the 0/1 (or logical) treatment variable used for
#'   the odds ratio, the risk difference and the profile interval. If it is
#'   not a variable of the model these are not reported.
#' @param sigma `NULL` (estimate the random-intercept SD) or a fixed value
#'   for it; `sigma = 0` fits a plain logistic regression (binomial family)
#'   and is the only way to fit a single cluster.
#' @param control A list of tuning values: `tol` (Newton decrement at
#'   convergence, default `1e-10`), `maxit` (default `100`; Newton
#'   iterations, or nlminb's iterations for the gaussian family),
#'   `boundary_tol` (default `1e-4`), `verbose` (default `FALSE`).
#' @param cluster For the gaussian family: the column of `data` (the local
#'   authority) by which to cluster CR2 standard errors of the fixed effects,
#'   with Satterthwaite (Bell-McCaffrey) degrees of freedom, as
#'   `clubSandwich::vcovCR(type = "CR2")` and `coef_test(test =
#'   "Satterthwaite")` give for an lmer fit (Pustejovsky & Tipton 2018): the
#'   working covariance of the fit is the target. The random-effect groups
#'   must nest in the clusters: cluster by the outer grouping of
#'   `(1 | la)` / `(1 | la / child_id)`, or by the LA for a child random
#'   effect `(1 | child_id)` with LA fixed effects (the Family Safeguarding
#'   absence model). Computed per cluster from low-rank updates, without
#'   n_g x n_g matrices. The CR3 (leave-one-cluster-out jackknife) variance
#'   is computed too: `vcov(fit, type = "CR3")`, and t-tests with G - 1 df by
#'   `tidy(fit, vcov = "CR3")` (see [sw_glmm-methods]). `NULL` (default):
#'   none.
#' @param weights For the gaussian family: `NULL` (default) or prior weights,
#'   the name of a column of `data` or one non-negative number per row
#'   (residual variance sigma^2 / w). Rows with weight 0 are excluded and
#'   counted.
#' @param ... Not used; an error if given.
#' @return An object of class `sw_glmm`, a list with `coefficients`, `vcov`,
#'   `sigma` (random-intercept SD(s)), `loglik`, `nobs`, `ngroups`, `family`,
#'   `method`, `boundary`, `treatment` (odds ratio and risk differences for
#'   the binomial family), `ranef`, `exclusion_flow` (rows dropped for
#'   missing values), `design` (treated and control clusters per value of
#'   the period variable when there is one), `converged` and `convergence`
#'   (`converged`, `iterations`, `message`: the optimiser's report), for the
#'   gaussian family `residual_sd`, `theta` (the SDs relative to the
#'   residual SD) and, with `cluster`, `cr2` (`vcov`, `df` per coefficient,
#'   `cluster`, `n_clusters`; also `vcov(fit, type = "CR2")`; and `cr3`:
#'   `vcov`, `df` = G - 1, `unidentified`, the clusters without which the
#'   fixed effects are not identified), for a
#'   binomial response written `cbind(successes, failures)` `ntrials`,
#'   `prior_weights` (the weights given, one per row of `data`, or `NULL`), and
#'   what is needed to refit it cheaply.
#' @examples
#' set.seed(1)
#' d <- expand.grid(la = paste0("LA", 1:5), period = 0:5, child = 1:40)
#' d$treated <- as.integer(d$period >= match(d$la, paste0("LA", 1:5)))
#' d$x <- rnorm(nrow(d))
#' b <- rnorm(5, sd = 0.4)[match(d$la, paste0("LA", 1:5))]
#' d$y <- rbinom(nrow(d), 1, plogis(-1 + 0.3 * d$treated + 0.5 * d$x + b))
#' fit <- sw_glmm(y ~ treated + factor(period) + x + (1 | la), d)
#' fit
#' coef(fit)
#'
#' # repeated outcomes per child (as school absence): nested random intercepts
#' d$child_id <- d$child
#' d$absence <- 10 + 2 * d$treated + rnorm(40)[d$child] + rnorm(nrow(d), sd = 3)
#' sw_glmm(absence ~ treated + factor(period) + (1 | la / child_id), d,
#'         family = gaussian())
#' # and a logit with random intercepts for the LA and the child within it
#' sw_glmm(y ~ treated + factor(period) + x + (1 | la / child_id), d)
#' @export
sw_glmm <- function(formula, data, family = stats::binomial(), nAGQ = 1L,
                    REML = TRUE, treatment = "treated", sigma = NULL,
                    control = list(), cluster = NULL, weights = NULL, ...) {
  if (...length()) {
    stop_arg("...", sprintf("has unused argument%s %s",
                            if (...length() > 1) "s" else "",
                            paste0("`", ...names() %||% rep("", ...length()), "`", collapse = ", ")),
             "check the spelling of the argument names.")
  }
  sw_glmm_fit(match.call(), formula, data, family, nAGQ, REML, treatment, sigma, control, cluster,
              weights)
}

# sw_glmm() after its `...` check. `start` (internal: analyse() refits a
# model per imputation) is glmm_start() of an earlier binomial fit of the
# same model, from which the Newton iterations start; the estimates are the
# same to the optimiser's tolerance.
sw_glmm_fit <- function(cl, formula, data, family = stats::binomial(), nAGQ = 1L,
                        REML = TRUE, treatment = "treated", sigma = NULL,
                        control = list(), cluster = NULL, weights = NULL, start = NULL) {
  family <- glmm_family(family)
  ctrl <- glmm_control(control)
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    stop_arg("formula", "must be a two-sided formula such as `y ~ treated + factor(period) + (1 | la)`")
  }
  if (!is.data.frame(data)) stop_arg("data", "must be a data frame")
  if (family$family == "binomial") {
    if (!is.numeric(nAGQ) || length(nAGQ) != 1L || is.na(nAGQ) ||
        nAGQ != round(nAGQ) || nAGQ < 1 || nAGQ > 25) {
      stop_arg("nAGQ", "must be a whole number from 1 (Laplace) to 25",
               "use nAGQ = 1 for the Laplace approximation or up to 25 quadrature nodes.")
    }
  }
  if (!is.null(sigma) && (!is.numeric(sigma) || length(sigma) != 1L ||
                          !is.finite(sigma) || sigma < 0)) {
    stop_arg("sigma", "must be NULL (estimate it) or one finite number >= 0")
  }
  if (!is.logical(REML) || length(REML) != 1L || is.na(REML)) {
    stop_arg("REML", "must be TRUE or FALSE")
  }
  if (!is.character(treatment) || length(treatment) != 1L) {
    stop_arg("treatment", "must be one variable name")
  }
  if (!is.null(sigma) && family$family != "binomial") {
    stop_arg("sigma", "can only be fixed for the binomial family")
  }
  if (!is.null(cluster)) {
    if (family$family != "gaussian") {
      stop_arg("cluster", "gives CR2 standard errors for the linear mixed model only",
               "drop `cluster` for a binomial fit (use wild_boot() or perm_test() for few clusters).")
    }
    if (!is.character(cluster) || length(cluster) != 1L || !cluster %in% names(data)) {
      stop_arg("cluster", "must name one column of `data` (the local authority)")
    }
  }
  w <- sw_glmm_weights(weights, data, family)
  prep <- glmm_prepare(formula, data, family, treatment, sigma, w)
  nested <- family$family == "binomial" && length(prep$groups) == 2L
  if (nested) nested_check_args(nAGQ, sigma, prep$groups)
  fit <- if (nested) {
    nested_fit(prep, ctrl, start)  # (1 | la / child_id): R/glmm_nested.R
  } else if (family$family == "binomial") {
    binom_fit(prep, as.integer(nAGQ), sigma, ctrl, start)
  } else {
    lmm_fit(prep, REML, ctrl, if (is.null(cluster)) NULL else
      list(name = cluster, values = data[[cluster]][prep$kept], kept = prep$kept))
  }
  fit$call <- cl
  fit$formula <- formula
  fit$family <- family
  fit$exclusion_flow <- prep$flow
  fit$design <- prep$design
  fit$kept_rows <- prep$kept
  fit$n_data <- nrow(data)
  fit$prior_weights <- w
  if (isTRUE(fit$boundary) && is.null(sigma)) {
    if (isTRUE(fit$nested)) {
      message(sprintf("sw_glmm(): the random-intercept SD of %s is estimated at the boundary (0); the model was refitted with it fixed at 0.",
                      paste0("`", fit$boundary_terms, "`", collapse = " and ")))
    } else if (family$family == "binomial") {
      message("sw_glmm(): the random-intercept SD is estimated at the boundary (sigma = 0); ",
              "the model was refitted as a plain logistic regression (sigma = 0).")
    } else {
      zero <- names(fit$sigma)[fit$theta < ctrl$boundary_tol]
      message(sprintf("sw_glmm(): the random-intercept SD of %s is estimated at the boundary (0).",
                      paste0("`", zero, "`", collapse = " and ")))
    }
  }
  fit
}

plural <- function(n, one, many) if (n == 1L) one else many

# Prior weights of a linear mixed model (NULL: none). Missing, negative or
# infinite weights are errors naming the rows; all-zero weights an error;
# zero weights exclude rows (glmm_prepare() counts them).
sw_glmm_weights <- function(weights, data, family) {
  if (is.null(weights)) return(NULL)
  if (family$family != "gaussian") {
    stop_arg("weights", "are supported for the gaussian family (linear mixed model) only",
             "for binomial counts write the response as cbind(successes, failures); drop `weights` for a binomial fit.")
  }
  w <- resolve_weights_(weights, data)
  if (!any(w > 0)) stop_arg("weights", "are all 0", "give the rows to analyse positive weights.")
  w
}

glmm_family <- function(family) {
  if (is.character(family)) {
    family <- tryCatch(get(family, mode = "function", envir = asNamespace("stats"))(),
                       error = function(e) NULL)
  }
  if (is.function(family)) family <- family()
  if (!inherits(family, "family")) {
    stop_arg("family", "must be binomial() or gaussian()")
  }
  ok <- (family$family == "binomial" && family$link == "logit") ||
    (family$family == "gaussian" && family$link == "identity")
  if (!ok) {
    stop_arg("family", sprintf("is %s(link = \"%s\"), which sw_glmm() does not fit",
                               family$family, family$link),
             "use binomial() (logit link) or gaussian() (identity link).")
  }
  family
}

glmm_control <- function(control) {
  if (!is.list(control)) stop_arg("control", "must be a list")
  def <- list(tol = 1e-10, maxit = 100L, boundary_tol = 1e-4, verbose = FALSE)
  bad <- setdiff(names(control), names(def))
  if (length(bad)) {
    stop_arg("control", sprintf("has unknown element%s %s",
                                if (length(bad) > 1) "s" else "",
                                paste0("`", bad, "`", collapse = ", ")),
             paste0("use only ", paste0("`", names(def), "`", collapse = ", "), "."))
  }
  utils::modifyList(def, control)
}

# ---- formula parsing -------------------------------------------------------

# Split an expression on top-level `+`.
split_plus <- function(e) {
  if (is.call(e) && identical(e[[1L]], as.name("+")) && length(e) == 3L) {
    c(split_plus(e[[2L]]), split_plus(e[[3L]]))
  } else {
    list(e)
  }
}

is_bar_term <- function(e) {
  is.call(e) && identical(e[[1L]], as.name("(")) && is.call(e[[2L]]) &&
    identical(e[[2L]][[1L]], as.name("|"))
}

# Returns list(fixed = formula without the random term, groups = character
# vector of grouping expressions (outer first), group_exprs = list of calls).
parse_glmm_formula <- function(formula) {
  parts <- split_plus(formula[[3L]])
  bars <- vapply(parts, is_bar_term, TRUE)
  if (sum(bars) != 1L) {
    stop_arg("formula", sprintf("has %d random-effect terms", sum(bars)),
             "write exactly one random intercept, e.g. `+ (1 | la)` or `+ (1 | la / child_id)`.")
  }
  bar <- parts[[which(bars)]][[2L]]
  lhs <- bar[[2L]]
  if (!(is.numeric(lhs) && identical(as.numeric(lhs), 1))) {
    stop_arg("formula", sprintf("has the random-effect term `(%s)`; only random intercepts `(1 | group)` are supported",
                                paste(deparse(bar), collapse = "")),
             "replace it with `(1 | la)`.")
  }
  g <- bar[[3L]]
  groups <- if (is.call(g) && identical(g[[1L]], as.name("/")) && length(g) == 3L) {
    list(g[[2L]], g[[3L]])
  } else {
    list(g)
  }
  for (gi in groups) {
    if (is.call(gi) && (identical(gi[[1L]], as.name("/")) || identical(gi[[1L]], as.name("|")))) {
      stop_arg("formula", "nests more than two grouping levels",
               "use `(1 | la)` or `(1 | la / child_id)`.")
    }
  }
  rest <- parts[!bars]
  rhs <- if (length(rest)) Reduce(function(a, b) call("+", a, b), rest) else 1
  fixed <- formula
  fixed[[3L]] <- rhs
  list(fixed = fixed, groups = groups,
       group_names = vapply(groups, function(x) paste(deparse(x), collapse = ""), ""))
}

# ---- data preparation --------------------------------------------------------

glmm_prepare <- function(formula, data, family, treatment, sigma = NULL, weights = NULL) {
  pf <- parse_glmm_formula(formula)
  env <- environment(formula) %||% parent.frame()
  n <- nrow(data)
  mf <- tryCatch(stats::model.frame(pf$fixed, data, na.action = stats::na.pass,
                                    drop.unused.levels = TRUE),
                 error = function(e) stop_arg("formula", paste0("could not be evaluated in `data`: ",
                                                                conditionMessage(e))))
  grp <- lapply(seq_along(pf$groups), function(i) {
    v <- tryCatch(eval(pf$groups[[i]], data, env), error = function(e) {
      stop_arg("formula", sprintf("has grouping variable `%s`, which is not in `data`",
                                  pf$group_names[i]), "add the column or fix its name.")
    })
    if (length(v) != n) {
      stop_arg("formula", sprintf("has grouping variable `%s` of length %d, not nrow(data) = %d",
                                  pf$group_names[i], length(v), n))
    }
    v
  })
  y <- stats::model.response(mf)
  yname <- paste(deparse(pf$fixed[[2L]]), collapse = "")
  # infinite values are errors, missing values exclusions
  for (j in seq_along(mf)) {
    v <- mf[[j]]
    if (is.numeric(v)) {
      bad <- which(is.infinite(v))
      if (length(bad)) {
        stop_rows("data", names(mf)[j], bad, if (length(bad) == 1L) "is infinite" else "are infinite",
                  "replace Inf/-Inf by a finite value or NA (NA rows are excluded and counted).")
      }
    }
  }
  miss <- !stats::complete.cases(mf)
  for (v in grp) miss <- miss | is.na(v)
  flow <- data.frame(step = "rows in data", excluded = 0L, remaining = n)
  if (any(miss)) {
    cols <- c(names(mf), pf$group_names)
    which_cols <- cols[c(vapply(mf, function(v) any(is.na(v)), TRUE),
                         vapply(grp, function(v) any(is.na(v)), TRUE))]
    warn_rows("data", paste(which_cols, collapse = ", "), which(miss),
              paste(plural(sum(miss), "has", "have"), "a missing (NA/NaN) value in a model variable and", plural(sum(miss), "was", "were"), "excluded"),
              "impute or drop them before fitting if this is not intended (see `exclusion_flow`).")
    flow <- rbind(flow, data.frame(step = "missing value in a model variable",
                                   excluded = sum(miss), remaining = sum(!miss)))
  }
  y0 <- stats::model.response(mf)
  if (!is.null(dim(y0)) && family$family == "binomial") {
    z <- binom_matrix_response(y0, miss, yname)
    if (any(z)) {
      warn_rows("data", yname, which(z),
                paste(plural(sum(z), "has", "have"), "no trials (successes + failures = 0) and", plural(sum(z), "was", "were"), "excluded"),
                "such rows carry no information; drop them before fitting to silence this warning.")
      flow <- rbind(flow, data.frame(step = "no trials (successes + failures = 0)",
                                     excluded = sum(z), remaining = sum(!(miss | z))))
      miss <- miss | z
    }
  }
  if (!is.null(weights)) {
    z <- !miss & weights == 0
    if (all(z | miss)) {
      stop_arg("weights", "are 0 in every row left to fit", "give the analysed rows positive weights.")
    }
    if (any(z)) {
      message(sprintf("sw_glmm(): %s row%s with zero weight excluded (%s).",
                      format(sum(z), big.mark = ","), if (sum(z) == 1) "" else "s",
                      describe_rows(which(z))))
      flow <- rbind(flow, data.frame(step = "zero weight", excluded = sum(z),
                                     remaining = sum(!(miss | z))))
      miss <- miss | z
    }
  }
  kept <- which(!miss)
  mf <- mf[kept, , drop = FALSE]
  # levels present only in excluded rows would give empty columns
  if (length(kept) < n) mf[] <- lapply(mf, function(v) if (is.factor(v)) droplevels(v) else v)
  y <- stats::model.response(mf)
  grp <- lapply(grp, function(v) v[kept])
  if (!length(kept)) {
    stop_arg("data", "has no rows left to fit (0 rows after excluding missing values)",
             "check that `data` is not empty and the model variables are filled in.")
  }
  if (is.factor(y) || is.character(y)) {
    stop_arg("formula", sprintf("has outcome `%s`, which is a %s column of `data`; the outcome must be numeric or logical",
                                yname, class(y)[1]),
             if (family$family == "binomial") "code the outcome as 0/1 or TRUE/FALSE." else
               "convert the outcome to numbers.")
  }
  if (is.logical(y)) y <- as.numeric(y)
  trials <- NULL
  if (!is.null(dim(y))) {
    if (family$family != "binomial") {
      stop_arg("formula", "has a matrix response", "use one numeric column per row.")
    }
    trials <- as.double(y[, 1] + y[, 2])
    y <- y[, 1]
  }
  y <- as.double(y)
  if (!is.null(trials)) {
    if (sum(y) == 0 || sum(y) == sum(trials)) {
      stop_rows("data", yname, seq_along(y),
                sprintf("all have %s, so there is nothing to model", if (sum(y) == 0) "no successes" else "no failures"),
                "check the outcome definition.")
    }
  } else if (family$family == "binomial") {
    bad <- which(!(y %in% c(0, 1)))
    if (length(bad)) {
      stop_rows("data", yname, kept[bad],
                sprintf("%s not 0 or 1 (the binomial family needs a binary outcome)",
                        if (length(bad) == 1L) "is" else "are"),
                "code the outcome as 0/1 or TRUE/FALSE, or use family = gaussian().",
                keys = utils::head(y[bad], 5), key_name = "values")
    }
    if (all(y == 0) || all(y == 1)) {
      stop_rows("data", yname, seq_along(y),
                sprintf("all have outcome %d, so there is nothing to model", y[1]),
                "check the outcome definition and the follow-up window.")
    }
  }
  terms <- attr(mf, "terms")
  X <- stats::model.matrix(terms, mf)
  storage.mode(X) <- "double"
  if (!ncol(X)) {
    stop_arg("formula", "has no fixed effects", "keep the intercept (`y ~ 1 + (1 | la)` at least).")
  }
  # clusters
  g1 <- as.character(grp[[1L]])
  lev1 <- sort(unique(g1))
  cl <- match(g1, lev1)
  child <- NULL
  lev2 <- NULL
  if (length(grp) == 2L) {
    key <- paste(as.character(grp[[2L]]), g1, sep = ":")
    lev2 <- unique(key)
    child <- match(key, lev2)
  }
  if (length(lev1) < 2L && (family$family == "gaussian" || is.null(sigma))) {
    stop_arg("data", sprintf("has a single cluster (`%s` = %s), so the random-intercept variance cannot be estimated",
                             pf$group_names[1], lev1[1]),
             if (family$family == "binomial") "fit several clusters, or fix `sigma = 0` to fit a plain logistic regression." else
               "fit several clusters, or use lm() for a single one.")
  }
  # rank (of the distinct rows, which is the rank of X); their key also
  # gives the binomial cells (binom_cells())
  row_key <- cell_key(X, rep(1L, nrow(X)))
  Xu <- X[!duplicated(row_key), , drop = FALSE]
  qrX <- if (glmm_full_rank(Xu)) list(rank = ncol(X)) else qr(Xu)
  if (qrX$rank < ncol(X)) {
    jt <- match(c(treatment, paste0(treatment, "TRUE")), colnames(X))
    jt <- jt[!is.na(jt)]
    if (length(jt) && qr(Xu[, -jt, drop = FALSE])$rank == qrX$rank) {
      stop_arg("formula", sprintf("gives a design in which the treatment `%s` is a linear combination of the other terms (in a stepped wedge: no period has both treated and control clusters)",
                                  colnames(X)[jt[1]]),
               "check the go-live dates and the period definition (see sw_terms()).")
    }
    alias <- colnames(X)[qrX$pivot[seq.int(qrX$rank + 1L, ncol(X))]]
    stop_arg("formula", sprintf("gives a rank-deficient design: column%s %s %s linear combination%s of the others",
                                if (length(alias) > 1) "s" else "",
                                paste0("`", alias, "`", collapse = ", "),
                                if (length(alias) > 1) "are" else "is a",
                                if (length(alias) > 1) "s" else ""),
             "drop or merge the aliased terms (for example empty factor levels or covariates constant within periods).")
  }
  # treatment: its coefficient and counterfactual model matrices
  trt <- NULL
  if (treatment %in% names(mf)) {
    tv <- mf[[treatment]]
    if ((is.numeric(tv) || is.logical(tv)) && all(tv %in% c(0, 1))) {
      coef_name <- intersect(colnames(X), c(treatment, paste0(treatment, "TRUE")))
      fac <- attr(terms, "factors")
      main_only <- length(coef_name) == 1L && treatment %in% rownames(fac) &&
        sum(fac[treatment, ] != 0) == 1L
      # counterfactual model matrices; with a main effect only they are X with
      # the treatment column set, built later from the binomial cells
      cf <- if (main_only) list(NULL, NULL) else lapply(c(0, 1), function(val) {
        m1 <- mf
        m1[[treatment]] <- if (is.logical(tv)) as.logical(val) else val
        stats::model.matrix(terms, m1)
      })
      trt <- list(name = treatment, coef = if (length(coef_name)) coef_name[1] else NULL,
                  X0 = cf[[1]], X1 = cf[[2]], main_only = main_only, value = as.double(tv))
    }
  }
  design <- NULL
  if (!is.null(trt) && "period" %in% names(mf) || (!is.null(trt) && "period" %in% names(data))) {
    per <- if ("period" %in% names(mf)) mf[["period"]] else data[["period"]][kept]
    lev_p <- sort(unique(per))
    G <- length(lev1)
    idx <- (match(per, lev_p) - 1L) * G + cl
    n_all <- tabulate(idx, length(lev_p) * G)
    n_trt <- tabulate(idx[trt$value == 1], length(lev_p) * G)
    design <- data.frame(period = as.character(lev_p),
                         treated_clusters = rowSums(matrix(n_trt > 0, ncol = G, byrow = TRUE)),
                         control_clusters = rowSums(matrix(n_all - n_trt > 0, ncol = G, byrow = TRUE)),
                         row.names = NULL)
  }
  list(X = X, y = y, trials = trials, weights = weights[kept], cl = cl, child = child,
       row_key = row_key,
       groups = pf$group_names,
       levels = lev1, child_levels = lev2, terms = terms, flow = flow,
       kept = kept, yname = yname, treatment = trt, design = design,
       xlevels = stats::.getXlevels(terms, mf))
}

# TRUE if X certainly has full column rank by qr()'s rule (a column is
# aliased when its distance to the span of the others is below 1e-7 of its
# norm): that distance is at least the smallest singular value of X with
# unit columns, and its square, the smallest eigenvalue of the correlation-
# scaled X'X, is here required to exceed 1e-8 (rounding in X'X is far
# smaller). FALSE means "ask qr()", which costs twice as much.
glmm_full_rank <- function(X) glmm_full_rank_gram(crossprod(X))

# The same from the Gram matrix X'X (e.g. summed from per-cluster ones).
glmm_full_rank_gram <- function(G) {
  d <- sqrt(diag(G))
  if (!all(is.finite(d) & d > 0)) return(FALSE)
  C <- G / tcrossprod(d)
  if (!all(is.finite(C))) return(FALSE)
  min(eigen(C, symmetric = TRUE, only.values = TRUE)$values) > 1e-8
}

# A binomial response written cbind(successes, failures) (as glm() and
# lme4::glmer() take it): checks the rows not already excluded and returns
# the rows with no trials (to be excluded and counted).
binom_matrix_response <- function(y, miss, yname) {
  if (ncol(y) != 2L) {
    stop_arg("formula", sprintf("has a %d-column matrix response", ncol(y)),
             "write a binomial response as cbind(successes, failures), e.g. cbind(missed, possible - missed).")
  }
  ok <- !miss
  s <- y[, 1]
  f <- y[, 2]
  checks <- list(
    list(bad = ok & s < 0, what = "have a negative number of successes (first column of cbind(successes, failures))",
         fix = "check the successes column."),
    list(bad = ok & f < 0, what = "have more successes than trials (a negative number of failures in the second column of cbind(successes, failures))",
         fix = "the response is cbind(successes, failures), not cbind(successes, trials): write cbind(missed, possible - missed), and check rows where successes exceed the trials."),
    list(bad = ok & (s != round(s) | f != round(f)), what = "are not whole numbers of successes and failures",
         fix = "give counts (sessions missed and sessions attended), not rates."))
  for (ck in checks) {
    if (any(ck$bad)) {
      b <- which(ck$bad)
      stop_rows("data", yname, b, ck$what, ck$fix,
                keys = paste0("(", utils::head(s[b], 5), ", ", utils::head(f[b], 5), ")"),
                key_name = "(successes, failures)")
    }
  }
  ok & s + f == 0
}

# ---- binomial: cells, quadrature rule, likelihood ---------------------------

# Gauss-Hermite rule for int exp(-x^2) f(x) dx by Golub-Welsch: the nodes are
# the eigenvalues of the symmetric tridiagonal Jacobi matrix with
# off-diagonal sqrt(k / 2), the weights sqrt(pi) times the squared first
# components of the eigenvectors.
gauss_hermite <- function(Q) {
  if (Q == 1L) return(list(x = 0, w = sqrt(pi)))
  J <- matrix(0, Q, Q)
  off <- sqrt(seq_len(Q - 1L) / 2)
  J[cbind(seq_len(Q - 1L), 2:Q)] <- off
  J[cbind(2:Q, seq_len(Q - 1L))] <- off
  e <- eigen(J, symmetric = TRUE)
  o <- order(e$values)
  x <- e$values[o]
  x[abs(x) < 1e-14] <- 0
  list(x = x, w = sqrt(pi) * e$vectors[1L, o]^2)
}

# Integer key of identical (cluster, model-matrix row) patterns, numbered in
# order of first appearance (a hash table in C).
cell_key <- function(X, cl, full = FALSE) {
  if (!is.double(X)) storage.mode(X) <- "double"
  .Call(ffi_glmm_row_groups, X, as.integer(cl), as.integer(full))
}

# Collapse rows to binomial cells sorted by cluster. `y`: successes per row
# (0/1 for Bernoulli rows); `trials`: trials per row (NULL: 1 each).
# `row_key` (optional): cell_key(X, rep(1L, nrow(X))), the key of the
# distinct rows, from which the (cluster, row) key follows by integer
# matching, numbered in order of first appearance as cell_key(X, cl).
binom_cells <- function(X, y, cl, G, trials = NULL, row_key = NULL) {
  key <- if (is.null(row_key)) cell_key(X, cl) else {
    k <- (as.double(row_key) - 1) * G + cl
    match(k, unique(k))
  }
  cells_by_key(key, function(i) X[i, , drop = FALSE], y, trials, cl, G)
}

# Binomial cells from a row key (1..K in order of first appearance): the
# model-matrix rows come from rows_of(first row of each cell). The row-level
# successes and trials are kept (`row_s`, `row_n`) so that the cells can be
# split further (glmm_split_cells()).
cells_by_key <- function(key, rows_of, y, trials, cl, G) {
  K <- max(key)
  first <- match(seq_len(K), key)
  ccl <- cl[first]
  o <- order(ccl, first)
  n <- if (is.null(trials)) tabulate(key, K) else as.vector(rowsum(trials, key, reorder = TRUE))
  s <- as.vector(rowsum(y, key, reorder = TRUE))
  inv <- integer(K)
  inv[o] <- seq_len(K)
  list(X = rows_of(first[o]), n = as.double(n[o]), s = as.double(s[o]),
       cell_cluster = ccl[o],
       cstart = as.integer(c(0L, cumsum(tabulate(ccl[o], G)))),
       row_cell = inv[key], row_s = as.double(y),
       row_n = if (is.null(trials)) NULL else as.double(trials))
}

# The fit with its cells split by `split` (an integer per analysed row), so
# that a treatment that is a function of (cluster, split) is constant within
# every cell; the likelihood, and so the fit, is unchanged (the binomial
# coefficient is omitted). Used by the permutation test when go-live dates
# fall inside periods.
glmm_split_cells <- function(fit, split) {
  d <- fit$cells
  if (is.null(d$row_s)) {
    stop_arg("fit", "was made by an older version of sfpceval", "refit it with sw_glmm().")
  }
  S <- max(split) + 1
  k <- (d$row_cell - 1) * S + split
  key <- match(k, unique(k))
  if (max(key) == nrow(d$X)) return(fit)
  G <- length(fit$info$levels)
  d2 <- cells_by_key(key, function(i) d$X[d$row_cell[i], , drop = FALSE], d$row_s, d$row_n,
                     d$cell_cluster[d$row_cell], G)
  d2[c("gh", "u0")] <- d[c("gh", "u0")]
  fit$cells <- d2
  fit
}

# The non-zeros of the cells' model matrix by row (0-based columns, in
# increasing order within a row), for binom_eval(): X beta, the gradient and
# the Hessian then cost the non-zeros, not K x p. Kept only inside
# binom_estimate(), where X does not change.
binom_rows <- function(X) {
  K <- nrow(X)
  nz <- which(X != 0) - 1L  # 0-based positions, column by column
  r <- nz %% K
  o <- order(r, method = "radix")  # stable: columns stay increasing
  list(ptr = c(0L, cumsum(tabulate(r + 1L, K))), col = as.integer((nz %/% K)[o]), val = X[nz[o] + 1L])
}

# `d$offset` (optional, one per cell): added to the linear predictor, e.g.
# r * x_j for a fit with coefficient j held at r (the score bootstrap's
# restricted fits, R/wildboot.R).
binom_eval <- function(d, beta, sigma, what = 0L, u0 = d$u0) {
  .Call(ffi_glmm_binom, d$X, d$s, d$n, d$cstart, as.double(beta),
        as.double(sigma), d$gh$x, d$gh$w, u0, as.integer(what), d$rows,
        d$offset %||% double(0))
}

# Approximate information (minus Hessian) in (beta, sigma): the beta block is
# the exact Hessian of the Laplace approximation without its third-derivative
# terms, sum_k v_k x_k x_k' - sum_a sigma^2 (X_a' v_a)(v_a' X_a) / H_a; the
# sigma column is a forward difference of the analytic gradient.
binom_info <- function(d, theta, cur, free) {
  p <- ncol(d$X)
  sig <- theta[p + 1L]
  info <- matrix(0, p + 1L, p + 1L)
  XtV <- cur$xv
  H <- 1 / cur$scale^2
  info[1:p, 1:p] <- cur$xvx - crossprod(XtV * (sig / sqrt(H)))
  if ((p + 1L) %in% free) {
    h <- 1e-6 * max(1, abs(sig))
    g2 <- binom_eval(d, theta[1:p], sig + h, 1L, cur$mode)$gradient
    col <- -(g2 - cur$gradient) / h
    info[, p + 1L] <- col
    info[p + 1L, ] <- col
  }
  info[free, free, drop = FALSE]
}

# Damped Newton over the parameters `free` of theta, for binom_newton() and
# nested_newton(): ev(th) evaluates the log-likelihood and its gradient (and
# what info() needs) at th, info(th, cur) is the information (minus the
# Hessian, or an approximation) over `free` at the evaluation `cur`
# (= ev(theta) by default), last(th) evaluates the point after the last
# step, moved(cur) is told of each accepted point (e.g. to start the next
# modes there). Steps solve the information (an indefinite one replaced by
# its absolute eigenvalues), halved until the log-likelihood does not
# decrease; stop when the Newton decrement is below ctrl$tol, after one
# last, nearly free step that squares the error. `fails` counts the
# evaluations (ev(), last(), and info()'s attribute "fails") whose
# conditional-mode search failed (their `fail` > 0).
damped_newton <- function(ev, info, theta, free, ctrl, cur = ev(theta), last = ev,
                          moved = function(cur) NULL) {
  fails <- 0L
  tally <- function(r) {
    fails <<- fails + isTRUE(r$fail > 0L)
    r
  }
  tally(cur)
  converged <- FALSE
  it <- 0L
  msg <- NULL
  dec <- NA_real_
  for (it in seq_len(ctrl$maxit)) {
    g <- cur$gradient[free]
    I <- info(theta, cur)
    fails <- fails + (attr(I, "fails") %||% 0L)
    step <- tryCatch({
      R <- chol(I)
      backsolve(R, forwardsolve(t(R), g))
    }, error = function(e) {
      ei <- eigen((I + t(I)) / 2, symmetric = TRUE)
      lam <- pmax(abs(ei$values), 1e-8 * max(abs(ei$values), 1))
      drop(ei$vectors %*% (crossprod(ei$vectors, g) / lam))
    })
    dec <- sum(step * g)
    if (ctrl$verbose) message(sprintf("iter %d: loglik %.10f, decrement %.3g", it, cur$loglik, dec))
    if (is.finite(dec) && dec < ctrl$tol) {
      th <- theta
      th[free] <- theta[free] + step
      new <- tally(last(th))
      if (is.finite(new$loglik) && new$loglik >= cur$loglik) {
        theta <- th
        cur <- new
      }
      converged <- TRUE
      break
    }
    t <- 1
    repeat {
      th <- theta
      th[free] <- theta[free] + t * step
      new <- tally(ev(th))
      if (is.finite(new$loglik) && new$loglik >= cur$loglik - 1e-12 * abs(cur$loglik)) break
      t <- t / 2
      if (t < 1e-12) break
    }
    if (t < 1e-12) {
      converged <- dec < 1e-6
      msg <- sprintf("step halving failed with Newton decrement %.2g", dec)
      break
    }
    theta <- th
    cur <- new
    moved(cur)
  }
  msg <- if (converged) sprintf("Newton decrement %.2g below %.2g", dec, ctrl$tol) else
    msg %||% sprintf("iteration limit (%d) reached, Newton decrement %.2g", ctrl$maxit, dec)
  list(theta = theta, cur = cur, converged = converged, iterations = it, message = msg,
       fails = fails)
}

# Damped Newton (damped_newton()) over the parameters `free` of theta =
# (beta, sigma). With the Laplace approximation (one node) the information
# is minus the exact Hessian (computed in C with the gradient); with more
# nodes the approximation of binom_info(). `hessian_last = FALSE`: the
# evaluation after the last step has no Hessian (the caller needs none
# there). The modes start from d$u0, then from the last accepted point's.
binom_newton <- function(d, theta, free, ctrl, hessian_last = TRUE) {
  p <- ncol(d$X)
  u0 <- d$u0
  exact <- length(d$gh$x) == 1L
  ev <- function(th, what = if (exact) 3L else 2L) binom_eval(d, th[1:p], th[p + 1L], what, u0)
  info <- function(th, cur) {
    if (exact) -cur$hessian[free, free, drop = FALSE] else binom_info(d, th, cur, free)
  }
  damped_newton(ev, info, theta, free, ctrl,
                last = if (hessian_last) ev else function(th) ev(th, 1L),
                moved = function(cur) u0 <<- cur$mode)
}

# Hessian of the log-likelihood over `free`: exact for the Laplace
# approximation (src/glmm.c); with more quadrature nodes by forward
# differences of the analytic gradient (step 1e-7 relative: the truncation
# error, about 1e-7 relative, dominates the rounding error of the gradient;
# central differences would double the cost for accuracy no standard error
# needs), symmetrised.
binom_hessian <- function(d, theta, free, u0, g0) {
  p <- ncol(d$X)
  if (length(d$gh$x) == 1L) {
    return(binom_eval(d, theta[1:p], theta[p + 1L], 3L, u0)$hessian[free, free, drop = FALSE])
  }
  m <- length(free)
  Hs <- matrix(0, m, m)
  for (i in seq_len(m)) {
    j <- free[i]
    h <- 1e-7 * max(1, abs(theta[j]))
    tp <- theta
    tp[j] <- tp[j] + h
    h <- tp[j] - theta[j]
    gp <- binom_eval(d, tp[1:p], tp[p + 1L], 1L, u0)$gradient[free]
    Hs[, i] <- (gp - g0[free]) / h
  }
  (Hs + t(Hs)) / 2
}

# Starting values for a refit of the same binomial model (see sw_glmm_fit()):
# the estimates (beta, sigma) and the beta of the sigma = 0 fit, named.
glmm_start <- function(fit) {
  if (!inherits(fit, "sw_glmm") || !identical(fit$family$family, "binomial")) return(NULL)
  nm <- names(fit$coefficients)
  list(theta = stats::setNames(fit$theta, c(nm, ".sigma")),
       beta0 = if (!is.null(fit$theta0)) stats::setNames(fit$theta0, nm),
       # nested fits: the conditional modes, by level (nested_start_modes())
       modes = fit$modes)
}

binom_fit <- function(prep, Q, sigma_fixed, ctrl, start = NULL) {
  G <- length(prep$levels)
  ev_by <- as.vector(rowsum(prep$y, prep$cl, reorder = TRUE))
  none <- which(ev_by == 0)
  if (length(none) && G >= 2L) {
    warning(sprintf("Cluster%s %s of `%s` ha%s no events (outcome 0 in all %s rows); %s random intercept is pulled towards -Inf and held back only by its normal distribution.",
                    if (length(none) > 1) "s" else "",
                    paste(prep$levels[none], collapse = ", "), prep$groups[1],
                    if (length(none) > 1) "ve" else "s",
                    paste(format(tabulate(prep$cl, G)[none], big.mark = ","), collapse = "/"),
                    if (length(none) > 1) "their" else "its"),
            "\nFix: check the outcome in that cluster; the estimates are valid but the cluster says little about the treatment effect.",
            call. = FALSE)
  }
  d <- binom_cells(prep$X, prep$y, prep$cl, G, prep$trials, prep$row_key)
  d$gh <- gauss_hermite(Q)
  d$u0 <- double(0)
  trt_info <- NULL
  if (!is.null(prep$treatment)) {
    tr <- prep$treatment
    # with a main effect only, the counterfactual rows are the cells with the
    # treatment column set (binom_treatment()), so none are stored
    cf <- if (!tr$main_only) {
      w <- prep$trials %||% rep(1, nrow(tr$X0))
      list(X0 = unique_rows(tr$X0, w), X1 = unique_rows(tr$X1, w))
    }
    trt_info <- list(name = tr$name, coef = tr$coef, cf = cf, main_only = tr$main_only)
  }
  # glmer's log-likelihood of a cbind(successes, failures) response has the
  # binomial coefficients (0 for Bernoulli rows); the C code omits them
  lchoose_sum <- if (is.null(prep$trials)) 0 else sum(lchoose(prep$trials, prep$y))
  info <- list(levels = prep$levels, groups = prep$groups, Q = Q,
               sigma_fixed = sigma_fixed, trt_info = trt_info, loglik_const = lchoose_sum)
  # a warm start applies only to the same columns
  nm <- c(colnames(d$X), ".sigma")
  if (!is.null(start) && !identical(names(start$theta), nm)) start <- NULL
  binom_estimate(d, info, ctrl, start = unname(start$theta),
                 start0 = if (!is.null(start$beta0)) unname(start$beta0))
}

# Fit on prepared cells `d`; `info` holds labels and options; `start` an
# optional theta = (beta, sigma) to start from (a refit), `start0` an
# optional beta to start the sigma = 0 fit from (default: start's beta).
binom_estimate <- function(d, info, ctrl, start = NULL, se = TRUE, start0 = NULL) {
  p <- ncol(d$X)
  cells <- d
  d$rows <- binom_rows(d$X)
  G <- length(info$levels)
  sigma_fixed <- info$sigma_fixed
  beta0 <- if (!is.null(start0)) start0 else if (is.null(start)) {
    b <- double(p)
    j0 <- which(colnames(d$X) == "(Intercept)")
    if (length(j0)) b[j0] <- stats::qlogis(sum(d$s) / sum(d$n))
    b
  } else start[1:p]
  # at sigma = 0 every quadrature rule gives the plain logistic likelihood
  # exactly, so the one-node rule is used there
  d1 <- d
  d1$gh <- gauss_hermite(1L)
  # (its Hessian is needed only if it is the estimate: computed then)
  f0 <- binom_newton(d1, c(beta0, 0), seq_len(p), ctrl, hessian_last = FALSE)
  boundary <- FALSE
  if (!is.null(sigma_fixed)) {
    res <- if (sigma_fixed == 0) f0 else
      binom_newton(d, c(f0$theta[1:p], sigma_fixed), seq_len(p), ctrl)
    free <- seq_len(p)
  } else {
    if (is.null(start) && info$Q > 1L) {
      # AGQ starts from the Laplace estimates, which are cheap and close
      lap <- binom_newton(d1, c(f0$theta[1:p], 1), seq_len(p + 1L), ctrl)
      if (abs(lap$theta[p + 1L]) > ctrl$boundary_tol) start <- lap$theta
    }
    s0 <- if (is.null(start)) 1 else max(abs(start[p + 1L]), 0.1)
    b0 <- if (is.null(start)) f0$theta[1:p] else start[1:p]
    res <- binom_newton(d, c(b0, s0), seq_len(p + 1L), ctrl, hessian_last = se)
    free <- seq_len(p + 1L)
    if (abs(res$theta[p + 1L]) < ctrl$boundary_tol ||
        res$cur$loglik <= f0$cur$loglik + 1e-10 * abs(f0$cur$loglik)) {
      boundary <- TRUE
      res <- f0
      free <- seq_len(p)
    }
  }
  theta <- res$theta
  theta[p + 1L] <- abs(theta[p + 1L])
  dd <- if (theta[p + 1L] == 0) d1 else d
  laplace <- length(dd$gh$x) == 1L
  # with the Laplace approximation the exact Hessian comes with the gradient
  # the Newton iterations end with the evaluation at their estimate (with
  # the exact Hessian for the Laplace approximation), unless sigma flips sign
  cur <- if (res$theta[p + 1L] >= 0 && !(se && laplace && is.null(res$cur$hessian))) res$cur else
    binom_eval(dd, theta[1:p], theta[p + 1L], if (se && laplace) 3L else 1L)
  nm <- colnames(d$X)
  Vfull <- matrix(NA_real_, p + 1L, p + 1L)
  if (se) {
    Hs <- if (laplace) cur$hessian[free, free, drop = FALSE] else
      binom_hessian(dd, theta, free, cur$mode, cur$gradient)
    Vi <- tryCatch(solve(-Hs), error = function(e) NULL)
    if (is.null(Vi) || any(!is.finite(diag(Vi))) || any(diag(Vi) <= 0)) {
      warning("sw_glmm(): the Hessian is not negative definite at the estimate (separation or a flat likelihood); standard errors are not available.",
              call. = FALSE)
    } else {
      Vfull[free, free] <- Vi
    }
  }
  dimnames(Vfull) <- list(c(nm, "sigma"), c(nm, "sigma"))
  beta <- stats::setNames(theta[1:p], nm)
  vc <- Vfull[1:p, 1:p, drop = FALSE]
  conv <- optim_status(res$converged && !isTRUE(cur$fail == 1L), res$iterations,
                       if (isTRUE(cur$fail == 1L)) "a cluster's conditional-mode search hit its iteration limit" else res$message)
  if (!conv$converged) {
    warn_not_converged(sprintf("sw_glmm(): the %s Newton iteration", if (info$Q == 1L) "Laplace" else "adaptive quadrature"),
                       conv, "treat the estimates with caution; merge sparse categories or increase `control$maxit`.")
  }
  big <- abs(beta) > 20
  if (any(big)) {
    warning(sprintf("sw_glmm(): coefficient%s %s exceed%s 20 in absolute value: a category with no (or only) events (separation)?",
                    if (sum(big) > 1) "s" else "", paste0("`", nm[big], "`", collapse = ", "),
                    if (sum(big) > 1) "" else "s"),
            "\nFix: merge sparse categories.", call. = FALSE)
  }
  sig <- theta[p + 1L]
  re <- stats::setNames(list(stats::setNames(sig * cur$mode, info$levels)), info$groups[1])
  re_sd <- stats::setNames(list(stats::setNames(sig * cur$scale, info$levels)), info$groups[1])
  out <- list(coefficients = beta, vcov = vc, vcov_theta = Vfull,
              sigma = stats::setNames(sig, info$groups[1]),
              loglik = cur$loglik + (info$loglik_const %||% 0), df = length(free),
              nobs = length(d$row_cell), ntrials = sum(d$n),
              ngroups = stats::setNames(G, info$groups[1]),
              ncells = nrow(d$X),
              method = if (info$Q == 1L) "Laplace" else sprintf("adaptive Gauss-Hermite quadrature, %d nodes", info$Q),
              nAGQ = info$Q, boundary = boundary, sigma_fixed = sigma_fixed,
              converged = conv$converged, convergence = conv, iterations = res$iterations,
              ranef = re, ranef_sd = re_sd, cells = cells, theta = theta, theta0 = f0$theta[1:p],
              free = free, ctrl = ctrl, info = info, trt_info = info$trt_info)
  class(out) <- "sw_glmm"
  out$treatment <- if (se) binom_treatment(out) else NULL
  out
}

#' Refit a binomial `sw_glmm()` fit under another treatment vector
#'
#' Internal helper for permutation tests: reuses the parsed design and the
#' binomial cells of `fit`, replaces the treatment column and refits from the
#' old estimates. The new treatment must be constant within the cells of the
#' original fit (it is, when it is a function of cluster and period and the
#' period is in the model) and enter the model only as a main effect.
#' @param fit A binomial `sw_glmm` fit.
#' @param treated 0/1 vector over the rows of the original data (or over
#'   the rows analysed, `nobs(fit)` long).
#' @param se Compute standard errors (and the odds ratio and risk
#'   differences)? `FALSE` is faster.
#' @return An `sw_glmm` object.
#' @keywords internal
#' @noRd
sw_glmm_refit <- function(fit, treated, se = TRUE) {
  if (!inherits(fit, "sw_glmm") || is.null(fit$cells)) {
    stop_arg("fit", "must be a binomial sw_glmm() fit")
  }
  ti <- fit$trt_info
  if (is.null(ti) || is.null(ti$coef)) {
    stop_arg("fit", "has no 0/1 treatment variable to replace",
             "refit with sw_glmm() on data with the new treatment column.")
  }
  if (!isTRUE(ti$main_only)) {
    stop_arg("fit", sprintf("has the treatment `%s` in an interaction; only a main effect can be replaced in place",
                            ti$name),
             "refit with sw_glmm() on data with the new treatment column.")
  }
  d <- fit$cells
  if (length(treated) == fit$n_data) treated <- treated[fit$kept_rows]
  if (length(treated) != length(d$row_cell)) {
    stop_arg("treated", sprintf("has length %d, not nrow(data) = %d or nobs = %d",
                                length(treated), fit$n_data, length(d$row_cell)))
  }
  treated <- as.double(treated)
  if (anyNA(treated) || !all(treated %in% c(0, 1))) stop_arg("treated", "must be 0/1 without NA")
  first <- match(seq_len(nrow(d$X)), d$row_cell)
  cellv <- treated[first]
  bad <- which(treated != cellv[d$row_cell])
  if (length(bad)) {
    stop_rows("treated", NULL, bad, paste(plural(length(bad), "changes", "change"), "the treatment within a cell of the original fit"),
              "make the treatment a function of cluster and period (with the period in the model), or refit with sw_glmm().")
  }
  d$X[, ti$coef] <- cellv
  fit2 <- binom_estimate(d, fit$info, fit$ctrl, start = fit$theta, se = se, start0 = fit$theta0)
  fit2[c("call", "formula", "family", "exclusion_flow", "kept_rows", "n_data")] <-
    fit[c("call", "formula", "family", "exclusion_flow", "kept_rows", "n_data")]
  fit2
}

# Unique rows with counts (rows weighted by w).
unique_rows <- function(X, w = rep(1, nrow(X))) {
  key <- cell_key(X, rep(1L, nrow(X)))
  K <- max(key)
  first <- match(seq_len(K), key)
  list(X = X[first, , drop = FALSE], w = as.double(rowsum(w, key, reorder = TRUE)))
}

# Average risk over rows with linear predictors `eta` and counts `w`: at
# b = 0, or integrated over N(0, sigma^2) with a 25-node Gauss-Hermite rule.
# Returns the value, its derivative in each row's eta (`deta`) and in sigma.
# (1 / (1 + e^-eta e^-sigma z) is plogis(eta + sigma z) with one exp per row
# and per node; plogis() where a product could be 0 * Inf.)
mean_risk <- function(eta, w, sigma, marginal, gh) {
  W <- sum(w)
  if (!marginal || sigma == 0) {
    p <- stats::plogis(eta)
    return(list(value = sum(w * p) / W, deta = w * p * (1 - p) / W, dsigma = 0))
  }
  z <- sqrt(2) * gh$x
  om <- gh$w / sqrt(pi)
  P <- 1 / (1 + exp(-eta) %o% exp(-sigma * z))
  if (anyNA(P)) P <- stats::plogis(outer(eta, sigma * z, "+"))
  DD <- (P * (1 - P)) %*% cbind(om, om * z)
  list(value = sum(w * drop(P %*% om)) / W, deta = DD[, 1L] * w / W,
       dsigma = sum(w * DD[, 2L]) / W)
}

# The counterfactual risks under treatment 1 and 0 (marginal or at b = 0)
# with their gradients in (beta, sigma). With a main effect only the rows
# are the fit's cells with the treatment column set to 0 or 1 (weighted by
# their trials): eta moves by the coefficient and the treatment's entry of
# the gradient is 0 or the sum of the row derivatives. Otherwise the unique
# rows of the counterfactual model matrices made by glmm_prepare().
binom_cf_risks <- function(fit, marginal, gh) {
  ti <- fit$trt_info
  p <- length(fit$coefficients)
  beta <- fit$theta[1:p]
  sigma <- fit$theta[p + 1L]
  if (isTRUE(ti$main_only)) {
    X <- fit$cells$X
    j <- if (is.numeric(ti$coef)) ti$coef else match(ti$coef, colnames(X))
    base <- drop(X %*% beta) - X[, j] * beta[j]
    return(lapply(c(X0 = 0, X1 = 1), function(val) {
      r <- mean_risk(base + val * beta[j], fit$cells$n, sigma, marginal, gh)
      g <- drop(crossprod(X, r$deta))
      g[j] <- val * sum(r$deta)
      list(value = r$value, gradient = c(g, r$dsigma))
    }))
  }
  lapply(ti$cf[c("X0", "X1")], function(cf) {
    r <- mean_risk(drop(cf$X %*% beta), cf$w, sigma, marginal, gh)
    list(value = r$value, gradient = c(drop(crossprod(cf$X, r$deta)), r$dsigma))
  })
}

binom_treatment <- function(fit) {
  ti <- fit$trt_info
  if (is.null(ti) || is.null(ti$coef)) return(NULL)
  j <- match(ti$coef, names(fit$coefficients))
  b <- fit$coefficients[j]
  se <- sqrt(fit$vcov[j, j])
  z <- stats::qnorm(0.975)
  or <- data.frame(term = ti$coef, log_odds_ratio = unname(b), std.error = unname(se),
                   odds_ratio = exp(unname(b)), conf.low = exp(unname(b) - z * se),
                   conf.high = exp(unname(b) + z * se))
  gh <- gauss_hermite(25L)
  V <- fit$vcov_theta
  free <- fit$free
  rd <- lapply(c(conditional = FALSE, marginal = TRUE), function(marg) {
    r <- binom_cf_risks(fit, marg, gh)
    est <- r$X1$value - r$X0$value
    gr <- (r$X1$gradient - r$X0$gradient)[free]
    se <- sqrt(drop(crossprod(gr, V[free, free, drop = FALSE] %*% gr)))
    c(estimate = est, std.error = se, conf.low = est - z * se, conf.high = est + z * se)
  })
  rd <- data.frame(type = names(rd), do.call(rbind, rd), row.names = NULL)
  list(odds_ratio = or, risk_difference = rd)
}

# ---- gaussian: linear mixed model --------------------------------------------

# Cross-products that the profiled criterion needs, computed once.
# Z = [X y]. With child sums S_c (children = rows if there is no nested term),
#   Z' W^-1 Z = Z'Z - sum_m alpha_m M_m - sum_a gamma_a T_a T_a'
# where M_m = sum over children with m rows of S_c S_c', T_a = sum_m f_m T_am,
# T_am = sum of S_c over the children of cluster a with m rows,
# alpha_m = t2^2 / (1 + m t2^2), f_m = 1 / (1 + m t2^2),
# q_a = sum_m cnt_am m f_m, gamma_a = t1^2 / (1 + t1^2 q_a).
# Prior weights w (residual variance sigma^2 / w_i, as lmer(weights =)): the
# model for the rows scaled by sqrt(w_i) has the random-effect design
# sqrt(w_i) in place of 1, so Z'Z becomes Z'diag(w)Z, the child and cluster
# sums become weighted sums (S_c = sum_i w_i z_i) and a child's "number of
# rows" m becomes the sum of its weights; without a nested term cnt_a is the
# weight sum of cluster a (the rows are the children, m = 1 scales nothing
# since t2 = 0). w = NULL: all 1.
lmm_setup <- function(X, y, cl, child, G, w = NULL) {
  Z <- cbind(X, y)
  Zw <- if (is.null(w)) Z else Z * w
  ones <- if (is.null(w)) rep(1, nrow(Z)) else w
  # unweighted: crossprod(Z) (one symmetric product, half the work of Z'Zw)
  cp <- if (is.null(w)) function(i) crossprod(Z[i, , drop = FALSE]) else
    function(i) crossprod(Z[i, , drop = FALSE], Zw[i, , drop = FALSE])
  out <- list(ZZ = if (is.null(w)) crossprod(Z) else crossprod(Z, Zw), N = nrow(X), p = ncol(X), G = G,
              nested = !is.null(child))
  # the same cross-products per cluster (for the cluster bootstrap):
  # ZZg[, , a] = Z_a'Z_a, Mg[[i]][, , a] = sum of S_c S_c' over cluster a's
  # children with m_i rows; kept only when they are no larger than the data
  # (G (p + 1) <= N: LAs, not children as the outer grouping)
  keep_g <- G * ncol(Z) <= nrow(Z)
  if (keep_g) {
    rows <- split(seq_len(nrow(Z)), factor(cl, levels = seq_len(G)))
    out$ZZg <- vapply(rows, cp, out$ZZ * 0)
  }
  if (is.null(child)) {
    out$m <- 1
    out$Tam <- list(rowsum(Zw, cl, reorder = TRUE))
    out$cnt <- matrix(rowsum(ones, cl, reorder = TRUE)[, 1], G, 1L)
    out$M <- list(NULL)
  } else {
    S <- rowsum(Zw, child, reorder = TRUE)
    nc <- rowsum(ones, child, reorder = TRUE)[, 1]
    ccl <- cl[match(seq_len(nrow(S)), child)]
    m <- sort(unique(nc))
    cls <- match(nc, m)
    out$m <- m
    out$M <- lapply(seq_along(m), function(k) crossprod(S[cls == k, , drop = FALSE]))
    out$Tam <- lapply(seq_along(m), function(k) {
      T0 <- matrix(0, G, ncol(Z))
      sel <- cls == k
      rs <- rowsum(S[sel, , drop = FALSE], ccl[sel], reorder = TRUE)
      T0[as.integer(rownames(rs)), ] <- rs
      T0
    })
    out$cnt <- vapply(seq_along(m), function(k) tabulate(ccl[cls == k], G), double(G))
    dim(out$cnt) <- c(G, length(m))
    # per-cluster M's only while they stay no larger than the data (with
    # continuous weights every child can have its own weight sum)
    if (keep_g && length(m) * G * ncol(Z) <= nrow(Z)) out$Mg <- lapply(seq_along(m), function(k) {
      vapply(seq_len(G), function(a) crossprod(S[cls == k & ccl == a, , drop = FALSE]),
             out$ZZ * 0)
    })
    # otherwise the cluster bootstrap sums S_c S_c' from the child sums
    out$keep_S <- keep_g && is.null(out$Mg)
    out$S <- S
    out$nc <- nc
    out$ccl <- ccl
  }
  lmm_stack(out)
}

# The child-size classes' M_m and T_am side by side ((p + 1)^2 x K and
# G (p + 1) x K), so that the criterion sums over K classes in one product
# (K is large when weighted children have many distinct weight sums).
lmm_stack <- function(s) {
  if (s$nested) {
    s$Mmat <- vapply(s$M, c, double(length(s$ZZ)))
    dim(s$Mmat) <- c(length(s$ZZ), length(s$M))
  }
  s$Tmat <- vapply(s$Tam, c, double(length(s$Tam[[1]])))
  dim(s$Tmat) <- c(length(s$Tam[[1]]), length(s$Tam))
  s
}

# Newton polish of the optimum of a smooth criterion in 1-2 parameters
# (nlminb stops on the criterion, which is flat at the optimum, so its
# parameters are only accurate to about the square root of its tolerance).
lmm_polish <- function(obj, th) {
  f0 <- obj(th)
  for (it in 1:20) {
    if (any(th < 1e-6)) break
    k <- length(th)
    h <- 1e-4 * pmax(th, 1e-2)
    g <- double(k)
    H <- matrix(0, k, k)
    for (i in seq_len(k)) {
      ei <- replace(double(k), i, h[i])
      fp <- obj(th + ei)
      fm <- obj(th - ei)
      g[i] <- (fp - fm) / (2 * h[i])
      H[i, i] <- (fp - 2 * f0 + fm) / h[i]^2
      for (j in seq_len(i - 1L)) {
        ej <- replace(double(k), j, h[j])
        H[i, j] <- H[j, i] <- (obj(th + ei + ej) - obj(th + ei - ej) - obj(th - ei + ej) +
                                 obj(th - ei - ej)) / (4 * h[i] * h[j])
      }
    }
    step <- tryCatch(solve(H, g), error = function(e) NULL)
    if (is.null(step) || any(!is.finite(step)) ||
        any(eigen(H, symmetric = TRUE, only.values = TRUE)$values <= 0)) break
    new <- pmax(th - step, 0)
    fn <- obj(new)
    # near the optimum the criterion is flat to rounding (a change of 1e-7 in
    # th moves it by 1e-16 relative); the Newton step, from differences over
    # 1e-4 th, is then more accurate than a comparison of the two values
    if (!(fn <= f0 + 8 * .Machine$double.eps * abs(f0))) break
    done <- max(abs(new - th) / pmax(th, 1e-8)) < 1e-12
    th <- new
    f0 <- fn
    if (done) break
  }
  th
}

# Profiled -2 log-likelihood (ML) or REML criterion at the relative SDs
# t = (t1, t2) (t2 = 0 without a nested term). Returns the criterion and the
# pieces needed afterwards.
lmm_crit <- function(s, t, REML, pieces = FALSE) {
  t1 <- t[1]
  t2 <- if (s$nested) t[2] else 0
  p <- s$p
  f <- 1 / (1 + s$m * t2^2)
  P <- s$ZZ
  if (s$nested) P <- P - matrix(s$Mmat %*% (t2^2 * f), nrow(P))
  Ta <- matrix(s$Tmat %*% f, nrow(s$Tam[[1]]))
  q <- drop(s$cnt %*% (s$m * f))
  gam <- t1^2 / (1 + t1^2 * q)
  P <- P - crossprod(Ta * sqrt(gam))
  logdetW <- sum(log(1 + t1^2 * q))
  if (s$nested) logdetW <- logdetW + sum(colSums(s$cnt) * log(1 + s$m * t2^2))
  A <- P[1:p, 1:p, drop = FALSE]
  R <- tryCatch(chol(A), error = function(e) NULL)
  if (is.null(R)) return(if (pieces) NULL else Inf)
  beta <- backsolve(R, forwardsolve(t(R), P[1:p, p + 1L]))
  rss <- P[p + 1L, p + 1L] - sum(P[1:p, p + 1L] * beta)
  N <- s$N
  dev <- if (REML) {
    logdetW + 2 * sum(log(diag(R))) + (N - p) * (1 + log(2 * pi * rss / (N - p)))
  } else {
    logdetW + N * (1 + log(2 * pi * rss / N))
  }
  if (!pieces) return(dev)
  list(dev = dev, beta = beta, rss = rss, R = R, Ta = Ta, q = q, f = f)
}

# Centre and scale the columns of Z = [X y] so that the cross-products below
# do not cancel (an outcome of 10,000 + noise, a covariate in days since
# 1970): Z = Zs T with Zs = [Xs ys] and T (p + 1) x (p + 1) invertible.
# With an intercept column every other column (y included) is centred at its
# mean and divided by its SD; without one the columns are only scaled (a
# shift is then not a reparametrisation). The fit in the Zs frame maps back
# exactly: beta = Tx^-1 (s beta_s + t), the residual variance times s^2, and
# the criterion changes by 2 log|det Tx| (REML only) + 2 (N - p) log s (REML)
# or 2 N log s (ML). With prior weights w the means and SDs are weighted
# (the map is row-wise, so it commutes with the weighting).
lmm_standardise <- function(X, y, w = NULL) {
  Z <- cbind(X, y)
  k <- ncol(Z)
  w <- if (is.null(w)) rep(1, nrow(Z)) else w
  j0 <- which(colnames(X) == "(Intercept)")
  j0 <- if (length(j0) == 1L && all(X[, j0] == 1)) j0 else integer()
  T <- diag(k)
  for (j in setdiff(seq_len(k), j0)) {
    v <- Z[, j]
    m <- if (length(j0)) sum(w * v) / sum(w) else 0
    v <- v - m
    sdv <- sqrt(sum(w * v^2) / sum(w))
    if (!(sdv > 0)) sdv <- 1
    Z[, j] <- v / sdv
    T[j, j] <- sdv
    if (length(j0)) T[j0, j] <- m
  }
  list(X = Z[, -k, drop = FALSE], y = Z[, k], T = T, j0 = j0)
}

lmm_fit <- function(prep, REML, ctrl, cluster = NULL) {
  G <- length(prep$levels)
  p <- ncol(prep$X)
  if (length(prep$y) <= p) {
    stop_arg("data", sprintf("has %d rows for %d fixed effects", length(prep$y), p),
             "use more data or fewer terms.")
  }
  w <- prep$weights
  st <- lmm_standardise(prep$X, prep$y, w)
  s <- lmm_setup(st$X, st$y, prep$cl, prep$child, G, w)
  s$T <- st$T
  s$j0 <- st$j0
  k <- if (s$nested) 2L else 1L
  obj <- function(t) lmm_crit(s, t, REML)
  best <- NULL
  run <- function(st0) {
    o <- stats::nlminb(st0, obj, lower = rep(0, k), upper = rep(1e4, k),
                       control = list(rel.tol = 1e-14, x.tol = 1e-12, eval.max = 10L * ctrl$maxit,
                                      iter.max = ctrl$maxit))
    if (is.null(best) || o$objective < best$objective) best <<- o
  }
  for (st0 in list(rep(1, k), rep(0.1, k))) run(st0)
  # the criterion depends on each t_i through t_i^2, so t_i = 0 is always a
  # stationary point and nlminb can stop there short of an interior optimum:
  # restart with each component at 0 moved off the boundary
  for (i in which(best$par < ctrl$boundary_tol)) {
    for (v in c(0.1, 1, 10) * max(1, best$par)) run(replace(best$par, i, v))
  }
  th <- lmm_polish(obj, best$par)
  # each component at the boundary: is 0 better?
  for (i in seq_len(k)) {
    t0 <- th
    t0[i] <- 0
    if (obj(t0) <= obj(th)) th <- t0
  }
  # polish the components left inside with those at 0 held there
  free <- which(th >= 1e-6)
  if (length(free) && length(free) < k) {
    th[free] <- lmm_polish(function(u) obj(replace(th, free, u)), th[free])
  }
  conv <- lmm_convergence(obj, th, best, ctrl)
  pc <- lmm_crit(s, th, REML, pieces = TRUE)
  N <- s$N
  ss <- st$T[p + 1L, p + 1L]
  Tx <- st$T[1:p, 1:p, drop = FALSE]
  Txi <- solve(Tx)
  sig2 <- ss^2 * pc$rss / (if (REML) N - p else N)
  nm <- colnames(prep$X)
  beta <- stats::setNames(drop(Txi %*% (ss * pc$beta + st$T[1:p, p + 1L])), nm)
  Ri <- backsolve(pc$R, diag(p))
  TRi <- Txi %*% Ri
  vc <- sig2 * tcrossprod(TRi)
  dimnames(vc) <- list(nm, nm)
  dev <- pc$dev + (if (REML) 2 * sum(log(abs(diag(Tx)))) + 2 * (N - p) * log(ss) else 2 * N * log(ss))
  # residual variances sigma^2 / w_i: log|V| has - sum(log w) (as lme4's)
  if (!is.null(w)) dev <- dev - sum(log(w))
  sds <- sqrt(sig2) * th
  names(sds) <- prep$groups
  boundary <- any(th < ctrl$boundary_tol)
  # conditional modes (BLUPs), in the standardised frame, times s
  rT <- pc$Ta[, p + 1L] - drop(pc$Ta[, 1:p, drop = FALSE] %*% pc$beta)
  b1 <- th[1]^2 * rT / (1 + th[1]^2 * pc$q)
  re <- list(stats::setNames(ss * b1, prep$levels))
  if (s$nested) {
    Sr <- s$S[, p + 1L] - drop(s$S[, 1:p, drop = FALSE] %*% pc$beta)
    b2 <- th[2]^2 * (Sr - s$nc * b1[s$ccl]) / (1 + s$nc * th[2]^2)
    re[[2]] <- stats::setNames(ss * b2, prep$child_levels)
  }
  names(re) <- c(prep$groups[1], if (s$nested) paste0(prep$groups[2], ":", prep$groups[1]))
  if (!conv$converged) {
    warn_not_converged("sw_glmm(): the linear mixed model", conv,
                       "check the model for a variance component that is not identified, or simplify the random effects.")
  }
  out <- list(coefficients = beta, vcov = vc, sigma = sds, residual_sd = sqrt(sig2),
              theta = th, loglik = -dev / 2, df = p + k + 1L, REML = REML,
              nobs = N, ngroups = stats::setNames(c(G, if (s$nested) nrow(s$S)), prep$groups),
              method = if (REML) "REML" else "ML", boundary = boundary,
              converged = conv$converged, convergence = conv, ranef = re,
              setup = if (isTRUE(s$keep_S)) s else s[setdiff(names(s), c("S", "nc", "ccl"))])
  if (!is.null(prep$treatment) && !is.null(prep$treatment$coef)) {
    out$trt_info <- list(name = prep$treatment$name, coef = prep$treatment$coef)
  }
  if (!is.null(cluster)) {
    e_s <- st$y - drop(st$X %*% pc$beta)
    out$cr2 <- lmm_fit_cr2(prep, st, th, e_s, tcrossprod(Ri), Txi, ss, cluster, nm)
  }
  class(out) <- "sw_glmm"
  out
}

# The CR2 variance of the fixed effects clustered by `cluster` (list(name,
# values, kept)), in the original frame: units and (a, b) of lmm_cr2() from
# the random-effect structure, which must nest in the clusters.
lmm_fit_cr2 <- function(prep, st, th, e_s, M, Txi, ss, cluster, nm) {
  v <- cluster$values
  bad <- which(is.na(v))
  if (length(bad)) {
    stop_rows("data", cluster$name, cluster$kept[bad], "have no cluster", "fill in the cluster or drop the rows.")
  }
  ccl <- match(as.character(v), sort(unique(as.character(v))))
  G <- max(ccl)
  if (G < 2L) stop_arg("cluster", sprintf("has one value (`%s`); CR2 needs several clusters", cluster$name))
  top <- prep$cl
  per_top <- tapply(ccl, top, function(z) length(unique(z)))
  if (any(per_top > 1L)) {
    g <- prep$levels[as.integer(names(per_top))[per_top > 1L]]
    stop_arg("cluster", sprintf("does not nest the random-effect groups: `%s` = %s lies in several clusters",
                                prep$groups[1], paste(utils::head(g, 3), collapse = ", ")),
             sprintf("cluster by `%s` or by a grouping that contains each of its levels.", prep$groups[1]))
  }
  same <- length(unique(top)) == G
  if (same) {
    unit <- if (is.null(prep$child)) seq_along(ccl) else prep$child
    a <- if (is.null(prep$child)) 0 else th[2]^2
    b <- th[1]^2
  } else {
    if (!is.null(prep$child)) {
      stop_arg("cluster", sprintf("is coarser than `%s` in a nested random-effect model, which CR2 here does not support",
                                  prep$groups[1]),
               sprintf("cluster by `%s`.", prep$groups[1]))
    }
    unit <- top
    a <- th[1]^2
    b <- 0
  }
  w <- prep$weights
  if (!is.null(w)) {
    # the weight must be constant within a unit (a child: CEM weights are)
    ub <- unit[!duplicated(unit)]
    bad <- which(w != w[!duplicated(unit)][match(unit, ub)])
    if (length(bad)) {
      lev <- if (!is.null(prep$child)) prep$groups[2] else prep$groups[1]
      stop_rows("data", "weights", cluster$kept[bad],
                sprintf("differ from the weight of another row of the same `%s`", lev),
                sprintf("CR2 with weights needs one weight per `%s` (as CEM gives per child); give its rows the same weight, or drop `cluster`.", lev))
    }
  }
  r <- lmm_cr2(st$X, e_s, ccl, unit, a, b, M, L = t(Txi), w = w)
  V <- ss^2 * Txi %*% r$vcov %*% t(Txi)
  dimnames(V) <- list(nm, nm)
  r3 <- lmm_cr3(st$X, e_s, ccl, unit, a, b, M, w = w, L = t(Txi))
  V3 <- ss^2 * r3$vcov
  dimnames(V3) <- list(nm, nm)
  cl_names <- sort(unique(as.character(v)))
  cr3 <- list(vcov = V3, df = G - 1L, unidentified = cl_names[r3$unidentified],
              dropped = stats::setNames(lapply(r3$dropped, function(k) nm[k]), cl_names[r3$unidentified]),
              lost = stats::setNames(lapply(r3$lost, function(g) cl_names[g]), nm))
  list(vcov = V, df = stats::setNames(r$df, nm), cluster = cluster$name, n_clusters = G, cr3 = cr3)
}

# Convergence of the LMM optimisation: nlminb's message (an iteration or
# evaluation limit is a failure; "false convergence" on a flat optimum is not
# by itself) and the gradient of the criterion at the final relative SDs by
# central differences, over the components inside the parameter space.
# Tolerance 1e-3 on the deviance scale, lme4's check of the scaled gradient
# (2e-3) made stricter. A component at 0 has a zero derivative whatever the
# optimum, so it is checked by moving it off 0 (allowance: rounding).
lmm_convergence <- function(obj, th, opt, ctrl) {
  inside <- which(th >= ctrl$boundary_tol)
  g <- vapply(inside, function(i) {
    h <- 1e-5 * max(th[i], 1e-2)
    (obj(replace(th, i, th[i] + h)) - obj(replace(th, i, th[i] - h))) / (2 * h)
  }, 0)
  gmax <- if (length(g)) max(abs(g * pmax(th[inside], 1))) else 0
  f0 <- obj(th)
  down <- vapply(setdiff(seq_along(th), inside), function(i) f0 - obj(replace(th, i, 1e-2)), 0)
  limit <- grepl("limit", opt$message)
  ok <- is.finite(gmax) && gmax < 1e-3 && !limit && all(down <= 1e-10 * max(1, abs(f0)))
  optim_status(ok, opt$iterations,
               sprintf("nlminb: %s; largest scaled gradient %.2g", opt$message, gmax))
}

# ---- profile likelihood -------------------------------------------------------

# Profile log-likelihood of coefficient j at the values b: binomial refits the
# other parameters (beta and sigma) by Newton; gaussian uses the ML criterion
# with the coefficient moved into an offset.
profile_loglik_fun <- function(fit, j) {
  if (isTRUE(fit$nested)) return(nested_profile_fun(fit, j))
  if (!is.null(fit$cells)) {
    d <- fit$cells
    p <- ncol(d$X)
    free <- setdiff(fit$free, j)
    last <- fit$theta
    function(b) {
      th <- last
      th[j] <- b
      r <- binom_newton(d, th, free, fit$ctrl)
      last <<- r$theta
      r$cur$loglik + (fit$info$loglik_const %||% 0)
    }
  } else {
    s <- fit$setup
    p <- s$p
    k <- length(fit$theta)
    ll_at <- function(b) {
      L <- diag(p + 1L)[, -j, drop = FALSE]
      L[j, p] <- -b
      L <- lmm_profile_map(s, L, j, b)
      s2 <- s
      s2$ZZ <- crossprod(L, s$ZZ %*% L)
      if (s$nested) s2$M <- lapply(s$M, function(M) crossprod(L, M %*% L))
      s2$Tam <- lapply(s$Tam, function(Tm) Tm %*% L)
      s2 <- lmm_stack(s2)
      s2$p <- p - 1L
      o <- stats::nlminb(fit$theta, function(t) lmm_crit(s2, t, REML = FALSE),
                         lower = rep(0, k), upper = rep(1e4, k),
                         control = list(rel.tol = 1e-14, x.tol = 1e-12))
      -o$objective / 2
    }
    ll_at
  }
}

# The cross-products are kept in the standardised frame Zs (Z = Zs T, see
# lmm_standardise()); the profile at beta_j = b needs [X_-j, y - b x_j] =
# Zs T L. Columns may be changed by multiples of the intercept column and
# the X columns rescaled without changing the ML deviance, and the new
# outcome column is divided by s for every b alike, so the profile's
# differences are exact and the columns stay well scaled.
lmm_profile_map <- function(s, L, j, b) {
  T <- s$T %||% diag(nrow(L))
  K <- T %*% L
  p1 <- nrow(K)
  j0 <- s$j0 %||% integer()
  if (length(j0) && j != j0) {
    keep0 <- match(j0, seq_len(p1)[-j])
    K[j0, -keep0] <- 0
  }
  m <- ncol(K)
  K[, m] <- K[, m] / T[p1, p1]
  if (m > 1L) {
    sc <- apply(abs(K[, -m, drop = FALSE]), 2L, max)
    K[, -m] <- sweep(K[, -m, drop = FALSE], 2L, sc, "/")
  }
  K
}

profile_ci <- function(fit, j, level) {
  est <- fit$coefficients[j]
  se <- sqrt(fit$vcov[j, j])
  if (!is.finite(se)) return(c(NA_real_, NA_real_))
  pl <- profile_loglik_fun(fit, j)
  ll_hat <- if (is.null(fit$cells) && !isTRUE(fit$nested)) {
    # ML maximum for the gaussian profile
    s <- fit$setup
    -stats::nlminb(fit$theta, function(t) lmm_crit(s, t, REML = FALSE),
                   lower = rep(0, length(fit$theta)), upper = rep(1e4, length(fit$theta)),
                   control = list(rel.tol = 1e-14, x.tol = 1e-12))$objective / 2
  } else fit$loglik
  z <- stats::qnorm(1 - (1 - level) / 2)
  root <- function(b) sign(b - est) * sqrt(max(0, 2 * (ll_hat - pl(b)))) 
  side <- function(dir) {
    lo <- est
    k <- 1
    hi <- est + dir * 1.5 * z * se
    while (abs(root(hi)) < z && k < 20) {
      lo <- hi
      hi <- est + dir * 1.5 * z * se * 2^k
      k <- k + 1
    }
    stats::uniroot(function(b) abs(root(b)) - z, sort(c(lo, hi)), tol = 1e-8 * max(1, se))$root
  }
  c(side(-1), side(1))
}

# ---- methods -------------------------------------------------------------------

#' Methods for `sw_glmm` fits
#'
#' `coef()` returns the fixed effects (`type = "fixed"`, the default) or the
#' predicted random intercepts (`type = "random"`, a list with one named
#' vector per grouping factor); `fixef()` and `ranef()` do the same and are
#' registered for the generics of nlme (which lme4 re-exports), so they work
#' whenever nlme or lme4 is loaded. `confint()` gives Wald intervals
#' (`method = "Wald"`) or profile-likelihood intervals (`method = "profile"`;
#' for the binomial family the other fixed effects and sigma are refitted at
#' each value; for the gaussian family the maximum-likelihood profile is
#' used, since REML is not a likelihood for the fixed effects).
#'
#' @param object,x An `sw_glmm` fit.
#' @param type For `vcov()`: `"model"` (the model-based variance), `"CR2"`
#'   or `"CR3"` (cluster-robust, for a gaussian fit made with `cluster`;
#'   see the section below).
#' @param vcov For `tidy()`: `"model"` (default; z tests), `"CR2"` (t tests
#'   with Satterthwaite df) or `"CR3"` (t tests with G - 1 df); with `"CR2"`
#'   or `"CR3"` the table has a `df` column and the intervals use the t
#'   quantile.
#' @param type `"fixed"` or `"random"`.
#' @param parm Coefficient names or indices (default: all; profile
#'   intervals default to the treatment coefficient).
#' @param level Confidence level.
#' @param method `"Wald"` or `"profile"`.
#' @param digits Significant digits to print.
#' @param conf.int,conf.level For `tidy()`: add Wald intervals at this level.
#' @param ... Not used.
#' @return `coef()`, `fixef()`: named numeric vector; `ranef()`: list of named
#'   vectors; `vcov()`: matrix; `confint()`: matrix with one row per
#'   coefficient; `logLik()`: a `logLik` object; `nobs()`: number of rows
#'   analysed; `summary()`: an object of class `summary.sw_glmm`; `tidy()`,
#'   `glance()`: data frames; `print()` returns `x` invisibly.
#' @section CR3 for the linear mixed model:
#' For a gaussian fit made with `cluster`, `vcov(fit, type = "CR3")` is the
#' jackknife variance of MacKinnon, Nielsen & Webb (2023),
#' \eqn{\frac{G-1}{G}\sum_g (\hat\beta_{(g)} - \hat\beta)(\hat\beta_{(g)} -
#' \hat\beta)'}, with \eqn{\hat\beta_{(g)}} the GLS fit without cluster g at
#' the variance components of the full fit (the same variance as the
#' \code{"WC?13"} variants of [wild_boot()]). It comes from per-cluster
#' cross-products. clubSandwich's `vcovCR(type = "CR3")` for an lmer fit has
#' the same leave-out differences (its adjustment \eqn{(I - X_g M X_g' W_g)^{-1}}
#' is Bell & McCaffrey's (2002) jackknife form) without the factor
#' \eqn{(G-1)/G}, so it is \eqn{G/(G-1)} times this one. `tidy(fit, vcov =
#' "CR3")` gives the t-tests against a t distribution with G - 1 degrees of
#' freedom. When leaving a cluster out loses a fixed effect (a covariate
#' that varies in one authority only, LA fixed effects), that leave-out fit
#' drops, for that fit only, the columns that cluster alone identifies, and
#' each coefficient that stays identified gets its estimate in the reduced
#' fit as its jackknife estimate (the same whichever columns are dropped; as
#' MacKinnon, Nielsen & Webb's CV3 with cluster fixed effects). A
#' coefficient not identified without some cluster has no CR3: its row and
#' column of `vcov()` are `NA` and a message names it and the cluster. The
#' fit's `cr2$cr3` carries `dropped` (the columns dropped, by cluster) and
#' `lost` (per coefficient, the clusters without which it is not
#' identified). In a size
#' simulation shaped like the Family Valued trial (5 authorities, a stepped
#' wedge, 1,000 null data sets; `bench/sw_size.R`) this test rejected 4.3%
#' (authority x step shocks) and 5.8% (random-intercept model true) of true
#' nulls at 5%, where the wild bootstraps rejected 7.6-10.6% and CR2 with
#' Satterthwaite df 5.5% and 7.0%.
#' @references
#' MacKinnon, J. G., Nielsen, M. Ø. and Webb, M. D. (2023). Fast and
#' reliable jackknife and bootstrap methods for cluster-robust inference.
#' *Journal of Applied Econometrics*, 38(5), 671-694.
#'
#' Bell, R. M. and McCaffrey, D. F. (2002). Bias reduction in standard
#' errors for linear regression with multi-stage samples. *Survey
#' Methodology*, 28(2), 169-181.
#' @name sw_glmm-methods
#' @examples
#' set.seed(2)
#' d <- expand.grid(la = paste0("LA", 1:5), period = 0:5, child = 1:30)
#' d$treated <- as.integer(d$period >= match(d$la, paste0("LA", 1:5)))
#' d$y <- rbinom(nrow(d), 1, plogis(-1 + 0.4 * d$treated + rnorm(5)[match(d$la, paste0("LA", 1:5))]))
#' fit <- sw_glmm(y ~ treated + factor(period) + (1 | la), d)
#' coef(fit, type = "random")
#' confint(fit, "treated", method = "profile")
#' summary(fit)
#' if (requireNamespace("lme4", quietly = TRUE)) lme4::fixef(fit)
#' # linear mixed model: CR3 variance and t-tests with G - 1 df
#' d$z <- 0.3 * d$treated + rnorm(5)[match(d$la, paste0("LA", 1:5))] + rnorm(nrow(d))
#' lf <- sw_glmm(z ~ treated + factor(period) + (1 | la), d, family = gaussian(), cluster = "la")
#' vcov(lf, type = "CR3")["treated", "treated"]
#' if (requireNamespace("generics", quietly = TRUE)) generics::tidy(lf, vcov = "CR3")
NULL

#' @rdname sw_glmm-methods
#' @export
coef.sw_glmm <- function(object, type = c("fixed", "random"), ...) {
  type <- match.arg(type)
  if (type == "fixed") object$coefficients else object$ranef
}

#' @rdname sw_glmm-methods
#' @exportS3Method nlme::fixef
fixef.sw_glmm <- function(object, ...) object$coefficients

#' @rdname sw_glmm-methods
#' @exportS3Method nlme::ranef
ranef.sw_glmm <- function(object, ...) object$ranef

#' @rdname sw_glmm-methods
#' @export
vcov.sw_glmm <- function(object, type = c("model", "CR2", "CR3"), ...) {
  type <- match.arg(type)
  if (type == "model") return(object$vcov)
  robust_part(object, type)$vcov
}

# The CR2 or CR3 part of a gaussian fit made with `cluster` (vcov, df), or
# an error saying how to get it.
robust_part <- function(object, type) {
  if (is.null(object$cr2)) {
    stop_arg("type", sprintf("is \"%s\" but the fit has no cluster-robust variance", type),
             "refit the linear mixed model with sw_glmm(..., cluster = \"la\").")
  }
  if (type == "CR2") return(object$cr2)
  r3 <- object$cr2$cr3
  # a leave-one-cluster-out fit that loses columns drops them (for that fit
  # only); the coefficients not identified without some cluster have no CR3
  lost <- Filter(length, r3$lost %||% list())
  if (length(lost)) {
    message(sprintf(paste0("CR3: %s %s not identified without `%s` = %s, so %s no jackknife (NA); ",
                           "the other coefficients' leave-one-cluster-out fits drop the columns that cluster alone identifies."),
                    paste0("`", utils::head(names(lost), 3), "`", collapse = ", "),
                    if (length(lost) > 1L) "are" else "is", object$cr2$cluster,
                    paste(utils::head(unique(unlist(lost)), 3), collapse = ", "),
                    if (length(lost) > 1L) "they have" else "it has"))
  }
  r3
}

#' @rdname sw_glmm-methods
#' @export
nobs.sw_glmm <- function(object, ...) object$nobs

#' @rdname sw_glmm-methods
#' @export
logLik.sw_glmm <- function(object, ...) {
  structure(object$loglik, df = object$df,
            nobs = object$nobs, class = "logLik")
}

#' @rdname sw_glmm-methods
#' @export
confint.sw_glmm <- function(object, parm, level = 0.95, method = c("Wald", "profile"), ...) {
  method <- match.arg(method)
  cf <- object$coefficients
  if (missing(parm)) {
    parm <- if (method == "profile" && !is.null(object$trt_info$coef)) object$trt_info$coef else names(cf)
  }
  if (is.numeric(parm)) parm <- names(cf)[parm]
  bad <- setdiff(parm, names(cf))
  if (length(bad)) {
    stop_arg("parm", sprintf("names %s, not a coefficient of the model",
                             paste0("`", bad, "`", collapse = ", ")),
             paste0("use one of ", paste0("`", utils::head(names(cf), 8), "`", collapse = ", "),
                    if (length(cf) > 8) ", ..." else "", "."))
  }
  if (!is.numeric(level) || length(level) != 1L || !(level > 0 && level < 1)) {
    stop_arg("level", "must be one number between 0 and 1")
  }
  a <- (1 - level) / 2
  out <- matrix(NA_real_, length(parm), 2L,
                dimnames = list(parm, paste(format(100 * c(a, 1 - a), trim = TRUE, scientific = FALSE, digits = 3), "%")))
  for (i in seq_along(parm)) {
    j <- match(parm[i], names(cf))
    se <- sqrt(object$vcov[j, j])
    out[i, ] <- if (method == "Wald") {
      cf[j] + c(-1, 1) * stats::qnorm(1 - a) * se
    } else {
      profile_ci(object, j, level)
    }
  }
  out
}

coef_table <- function(object) {
  est <- object$coefficients
  se <- sqrt(diag(object$vcov))
  z <- est / se
  data.frame(term = names(est), estimate = unname(est), std.error = unname(se),
             statistic = unname(z), p.value = unname(2 * stats::pnorm(-abs(z))),
             row.names = NULL)
}

#' @rdname sw_glmm-methods
#' @exportS3Method generics::tidy
tidy.sw_glmm <- function(x, conf.int = TRUE, conf.level = 0.95, vcov = c("model", "CR2", "CR3"), ...) {
  vcov <- match.arg(vcov)
  tab <- coef_table(x)
  q <- stats::qnorm(1 - (1 - conf.level) / 2)
  if (vcov != "model") {
    rob <- robust_part(x, vcov)
    tab$std.error <- unname(sqrt(diag(rob$vcov)))
    tab$statistic <- tab$estimate / tab$std.error
    tab$df <- unname(rep_len(rob$df, nrow(tab)))
    tab$p.value <- 2 * stats::pt(-abs(tab$statistic), tab$df)
    q <- stats::qt(1 - (1 - conf.level) / 2, tab$df)
  }
  if (conf.int) {
    tab$conf.low <- tab$estimate - q * tab$std.error
    tab$conf.high <- tab$estimate + q * tab$std.error
  }
  tab$effect <- "fixed"
  sds <- data.frame(term = paste0("sd__(Intercept)|", names(x$sigma)),
                    estimate = unname(x$sigma), std.error = NA_real_,
                    statistic = NA_real_, p.value = NA_real_)
  if (!is.null(x$residual_sd)) {
    sds <- rbind(sds, data.frame(term = "sd__Observation", estimate = x$residual_sd,
                                 std.error = NA_real_, statistic = NA_real_, p.value = NA_real_))
  }
  if (conf.int) {
    sds$conf.low <- NA_real_
    sds$conf.high <- NA_real_
  }
  sds$effect <- "ran_pars"
  if (!is.null(tab$df)) sds$df <- NA_real_
  rbind(tab, sds)
}

#' @rdname sw_glmm-methods
#' @exportS3Method generics::glance
glance.sw_glmm <- function(x, ...) {
  ll <- x$loglik
  k <- x$df
  data.frame(nobs = x$nobs, ngroups = unname(x$ngroups[1]),
             sigma = unname(x$sigma[1]), logLik = ll, AIC = -2 * ll + 2 * k,
             BIC = -2 * ll + log(x$nobs) * k, method = x$method,
             boundary = isTRUE(x$boundary), converged = isTRUE(x$converged))
}

#' @rdname sw_glmm-methods
#' @export
print.sw_glmm <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  fam <- x$family$family
  cat("Stepped-wedge ", if (fam == "binomial") "random-intercept logistic GLMM" else "linear mixed model",
      " (", x$method, ")\n", sep = "")
  if (!is.null(x$formula)) cat("Formula: ", paste(deparse(x$formula), collapse = " "), "\n", sep = "")
  cat(sprintf("Rows: %s in %s clusters", format(x$nobs, big.mark = ","),
              paste(paste(x$ngroups, names(x$ngroups)), collapse = " / ")))
  if (!is.null(x$ntrials) && x$ntrials != x$nobs) cat(sprintf(", %s trials", format(x$ntrials, big.mark = ",")))
  if (!is.null(x$ncells)) cat(sprintf(" (%s binomial cells)", format(x$ncells, big.mark = ",")))
  cat("\n")
  if (!is.null(x$exclusion_flow) && nrow(x$exclusion_flow) > 1L) {
    steps <- x$exclusion_flow$step[-1]
    cat(sprintf("Excluded: %s rows %s (see `exclusion_flow`)\n",
                format(sum(x$exclusion_flow$excluded), big.mark = ","),
                if (all(steps == "missing value in a model variable")) "with a missing value" else
                  paste0("(", paste(steps, collapse = "; "), ")")))
  }
  if (!is.null(x$prior_weights)) cat("Prior weights: residual variance sigma^2 / w\n")
  cat("\nFixed effects:\n")
  tab <- coef_table(x)
  m <- as.matrix(tab[, -1])
  rownames(m) <- tab$term
  colnames(m) <- c("Estimate", "Std. Error", "z value", "Pr(>|z|)")
  stats::printCoefmat(m, digits = digits, has.Pvalue = TRUE, P.values = TRUE)
  if (!is.null(x$cr2)) {
    cat(sprintf("\nFixed effects, CR2 standard errors clustered by `%s` (%d clusters), Satterthwaite df:\n",
                x$cr2$cluster, x$cr2$n_clusters))
    est <- x$coefficients
    se <- sqrt(diag(x$cr2$vcov))
    tt <- est / se
    m2 <- cbind(Estimate = est, `Std. Error` = se, df = x$cr2$df, `t value` = tt,
                `Pr(>|t|)` = 2 * stats::pt(-abs(tt), x$cr2$df))
    stats::printCoefmat(m2, digits = digits, has.Pvalue = TRUE, P.values = TRUE, cs.ind = 1:2, tst.ind = 4)
  }
  cat("\nRandom effects (SD):", paste(sprintf("%s %s", names(x$sigma),
                                              format(x$sigma, digits = digits)), collapse = ", "))
  if (!is.null(x$residual_sd)) cat(", residual", format(x$residual_sd, digits = digits))
  cat("\n")
  cat(sprintf("log-likelihood%s: %s\n", if (isTRUE(x$REML)) " (REML)" else "",
              format(x$loglik, digits = digits + 3L)))
  if (!is.null(x$treatment)) {
    or <- x$treatment$odds_ratio
    rd <- x$treatment$risk_difference
    cat(sprintf("\nTreatment (`%s`): odds ratio %s (95%% Wald CI %s to %s)\n", or$term,
                format(or$odds_ratio, digits = digits), format(or$conf.low, digits = digits),
                format(or$conf.high, digits = digits)))
    for (i in seq_len(nrow(rd))) {
      cat(sprintf("  risk difference, %s: %s (95%% CI %s to %s)\n",
                  if (rd$type[i] == "conditional") "at b = 0 (typical cluster)" else "marginal over the random intercept",
                  format(rd$estimate[i], digits = digits), format(rd$conf.low[i], digits = digits),
                  format(rd$conf.high[i], digits = digits)))
    }
  }
  if (isTRUE(x$boundary)) {
    if (fam == "binomial" && !isTRUE(x$nested)) {
      cat("\nNote: the random-intercept SD was estimated at the boundary (sigma = 0);",
          "\nthe model was refitted as a plain logistic regression (sigma = 0).\n")
    } else {
      cat("\nNote: a variance component is estimated at the boundary (0).\n")
    }
  } else if (!is.null(x$sigma_fixed)) {
    cat(sprintf("\nNote: the random-intercept SD was fixed at %s, not estimated.\n",
                format(x$sigma_fixed)))
  }
  note <- design_note(x$design)
  if (!is.null(note)) cat(note, "\n", sep = "")
  if (x$ngroups[1] < 10) {
    cat(sprintf("Note: only %d clusters: Wald tests are optimistic; use the permutation test.\n",
                x$ngroups[1]))
  }
  disclosure_status(c(x$nobs, if (NROW(x$exclusion_flow) > 1L) sum(x$exclusion_flow$excluded)))
  invisible(x)
}

# Periods without a treatment contrast (all clusters treated or all control):
# normal at the ends of a stepped wedge, worth saying.
design_note <- function(design) {
  if (is.null(design)) return(NULL)
  none_t <- design$period[design$treated_clusters == 0]
  none_c <- design$period[design$control_clusters == 0]
  if (!length(none_t) && !length(none_c)) return(NULL)
  paste0("Note: ", paste(c(
    if (length(none_t)) sprintf("period%s %s %s no treated cluster", if (length(none_t) > 1) "s" else "",
                                paste(none_t, collapse = ", "), if (length(none_t) > 1) "have" else "has"),
    if (length(none_c)) sprintf("period%s %s %s no control cluster", if (length(none_c) > 1) "s" else "",
                                paste(none_c, collapse = ", "), if (length(none_c) > 1) "have" else "has")),
    collapse = " and "),
    "; such periods inform the period and cluster effects, not the treatment contrast.")
}

#' @rdname sw_glmm-methods
#' @export
summary.sw_glmm <- function(object, ...) {
  out <- list(fit = object, coefficients = coef_table(object), profile = NULL)
  j <- object$trt_info$coef
  if (!is.null(j) && is.finite(object$vcov[j, j])) {
    out$profile <- confint(object, j, method = "profile")
  }
  class(out) <- "summary.sw_glmm"
  out
}

#' @rdname sw_glmm-methods
#' @export
print.summary.sw_glmm <- function(x, digits = max(3L, getOption("digits") - 3L), ...) {
  print(x$fit, digits = digits)
  if (!is.null(x$profile)) {
    cat(sprintf("\nProfile-likelihood 95%% CI for `%s`: %s to %s", rownames(x$profile),
                format(x$profile[1], digits = digits), format(x$profile[2], digits = digits)))
    if (x$fit$family$family == "binomial") {
      cat(sprintf(" (odds ratio %s to %s)", format(exp(x$profile[1]), digits = digits),
                  format(exp(x$profile[2]), digits = digits)))
    } else {
      cat(" (maximum-likelihood profile)")
    }
    cat("\n")
  }
  if (!is.null(x$fit$design)) {
    cat("\nClusters treated / control by period:\n")
    print(x$fit$design, row.names = FALSE)
  }
  invisible(x)
}

# ---- sw_terms(): the design columns of the protocol's specifications ------------

#' Stepped-wedge design columns: treatment, period, exposure time, readiness
#'
#' Adds to a one-row-per-child (or per-observation) table the columns that the
#' Family Valued models use, from each LA's roll-out dates:
#' * `period`: the 6-month (by default) step of the referral date, 0 for the
#'   first step (the trial starts `period_months` before the first go-live);
#' * `treated`: 1 if the referral date is on or after the LA's go-live date;
#' * `exposure`: a factor, `"control"` before go-live and `"0"`, `"1"`, ...
#'   for the number of whole periods since go-live (the differential time
#'   effects sensitivity analysis: `y ~ exposure + factor(period) + (1 | la)`
#'   estimates one effect per exposure time; the protocol's
#'   `FV + sum_m FV x T_m` parametrisation is the same model with the effects
#'   written as differences);
#' * `high_readiness`: 1 for LAs in the high-readiness stratum (the
#'   exploratory interaction `y ~ treated * high_readiness + ...`).
#'
#' `go_live = "alt_go_live_date"` gives the alternative implementation date
#' (deep-dive training complete) of the sensitivity analysis;
#' `embedding = TRUE` excludes referrals between an LA's `embed_start` and
#' `embed_end` dates (both inclusive) that are not on or after its go-live
#' date, as [build_cohort()] does. Rows outside the trial
#' period and embedding exclusions are dropped with a warning and counted in
#' the `exclusion_flow` attribute of the result.
#'
#' @param data A data frame with the cluster and date columns.
#' @param rollout One row per LA: the cluster column, the go-live column,
#'   and as needed `stratum` (`"high"`/`"low"`), `embed_start`, `embed_end`.
#'   Rows with `programme` other than `"FV"` are ignored if that column exists.
#' @param date Name of the date column of `data` (Date).
#' @param cluster Name of the LA column, in both tables.
#' @param go_live Name of the go-live column of `rollout`
#'   (`"go_live_date"`, or `"alt_go_live_date"` for the sensitivity analysis).
#' @param trial_start Start of the trial period (Date); default
#'   `period_months` before the first go-live.
#' @param period_months Length of a step in months.
#' @param n_periods Number of periods in the trial; rows after them are
#'   excluded. Default: one more than the number of LAs (a complete wedge).
#' @param embedding Exclude referrals in each LA's embedding window?
#' @return `data` with the columns `period`, `treated`, `exposure` and
#'   `high_readiness` (if `rollout` has `stratum`) added, rows excluded as
#'   described, and an `exclusion_flow` attribute (a data frame of steps and
#'   counts).
#' @examples
#' rollout <- data.frame(la_code = c("201", "202", "203"),
#'                       go_live_date = as.Date(c("2022-01-01", "2022-07-01", "2023-01-01")),
#'                       stratum = c("high", "low", "low"))
#' kids <- data.frame(la_code = c("201", "202", "203", "201"),
#'                    referral_date = as.Date(c("2021-08-01", "2022-08-01",
#'                                              "2022-10-01", "2023-02-01")))
#' sw_terms(kids, rollout)
#' @export
sw_terms <- function(data, rollout, date = "referral_date", cluster = "la_code",
                     go_live = "go_live_date", trial_start = NULL,
                     period_months = 6L, n_periods = NULL, embedding = FALSE) {
  if (!is.data.frame(data)) stop_arg("data", "must be a data frame")
  if (!is.data.frame(rollout)) stop_arg("rollout", "must be a data frame")
  for (a in c("date", "cluster", "go_live")) {
    v <- get(a)
    if (!is.character(v) || length(v) != 1L) stop_arg(a, "must be one column name")
  }
  if (!date %in% names(data)) stop_arg("date", sprintf("is `%s`, which is not a column of `data`", date),
                                       "name the column holding each row's date.")
  if (!cluster %in% names(data)) stop_arg("cluster", sprintf("is `%s`, which is not a column of `data`", cluster),
                                          "name the column holding each row's local authority.")
  need <- c(cluster, go_live, if (embedding) c("embed_start", "embed_end"))
  miss <- setdiff(need, names(rollout))
  if (length(miss)) {
    stop_arg("rollout", sprintf("lacks column%s %s", if (length(miss) > 1) "s" else "",
                                paste0("`", miss, "`", collapse = ", ")),
             "add the roll-out dates (see sfp_tables(\"rollout\")).")
  }
  if ("programme" %in% names(rollout)) rollout <- rollout[rollout$programme %in% "FV", , drop = FALSE]
  if (!inherits(data[[date]], "Date")) {
    stop_arg("date", sprintf("names column `%s`, which is %s, not Date", date, class(data[[date]])[1]),
             "convert it with as.Date().")
  }
  if (!inherits(rollout[[go_live]], "Date")) {
    stop_arg("go_live", sprintf("names column `%s` of `rollout`, which is not Date", go_live),
             "convert it with as.Date().")
  }
  gl <- rollout[[go_live]]
  bad <- which(is.na(gl) | duplicated(rollout[[cluster]]))
  if (length(bad)) {
    stop_rows("rollout", go_live, bad, paste(plural(length(bad), "has", "have"), "a missing go-live date or a repeated LA"),
              "give one row per LA with its go-live date.", keys = rollout[[cluster]][bad], key_name = cluster)
  }
  idx <- match(as.character(data[[cluster]]), as.character(rollout[[cluster]]))
  bad <- which(is.na(idx))
  if (length(bad)) {
    stop_rows("data", cluster, bad, paste(plural(length(bad), "names", "name"), "an LA that is not in `rollout`"),
              "add the LA to `rollout` or drop its rows.", keys = data[[cluster]][bad], key_name = cluster)
  }
  dt <- data[[date]]
  bad <- which(is.na(dt))
  if (length(bad)) {
    stop_rows("data", date, bad, paste(plural(length(bad), "has", "have"), "no date"), "fill in the date or drop the rows.")
  }
  months <- function(from, to) {
    lt0 <- as.POSIXlt(from)
    lt1 <- as.POSIXlt(to)
    m <- (lt1$year - lt0$year) * 12 + (lt1$mon - lt0$mon)
    m - (lt1$mday < lt0$mday)
  }
  # the trial period is fixed by the primary (Operationally Live) dates, also
  # when the alternative implementation date defines the treatment
  gl_trial <- if ("go_live_date" %in% names(rollout) && inherits(rollout$go_live_date, "Date")) {
    rollout$go_live_date
  } else gl
  # calendar months, month-end clamped, as the design functions count them
  start <- trial_start %||% day_to_date(add_months(min(gl_trial, na.rm = TRUE), -period_months))
  np <- n_periods %||% (nrow(rollout) + 1L)
  # the one definition of step and go-live boundaries (R/design.R), shared
  # with build_cohort(): a referral on the go-live day is treated
  period <- sw_step(dt, start, period_months)
  treated <- treated_on(dt, gl[idx])
  since <- ifelse(treated == 1L, months(gl[idx], dt) %/% period_months, NA)
  data$period <- as.integer(period)
  data$treated <- treated
  data$exposure <- factor(ifelse(treated == 1L, as.character(since), "control"),
                          levels = c("control", as.character(sort(unique(since[!is.na(since)])))))
  if ("stratum" %in% names(rollout)) {
    data$high_readiness <- as.integer(tolower(as.character(rollout$stratum[idx])) == "high")
  }
  flow <- data.frame(step = "rows in data", excluded = 0L, remaining = nrow(data))
  out <- dt < start | period >= np
  if (any(out)) {
    warn_rows("data", date, which(out), paste(plural(sum(out), "falls", "fall"), "outside the trial period and", plural(sum(out), "was", "were"), "excluded"),
              sprintf("the trial runs from %s for %d periods of %d months; check `trial_start`/`n_periods`.",
                      format(start), np, period_months))
    flow <- rbind(flow, data.frame(step = "outside the trial period", excluded = sum(out),
                                   remaining = sum(!out)))
  }
  keep <- !out
  if (embedding) {
    es <- rollout$embed_start[idx]
    ee <- rollout$embed_end[idx]
    emb <- in_embedding(dt, es, ee, gl[idx]) & keep
    if (any(emb)) {
      warn_rows("data", date, which(emb), paste(plural(sum(emb), "falls in its", "fall in their"), "LA's embedding period and", plural(sum(emb), "was", "were"), "excluded"),
                "this is the embedding-period sensitivity analysis; use embedding = FALSE for the primary analysis.")
    }
    flow <- rbind(flow, data.frame(step = "embedding period", excluded = sum(emb),
                                   remaining = sum(keep & !emb)))
    keep <- keep & !emb
  }
  res <- data[keep, , drop = FALSE]
  attr(res, "exclusion_flow") <- flow
  res
}
