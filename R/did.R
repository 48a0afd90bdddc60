# did_fit(): the Family Safeguarding difference-in-differences regression
# (protocol "Analysis plan", pp. 14-17) with absorbed fixed effects and
# inference that stays honest with few clusters (`vignette("methods")`, sections 0 and 3).
#
# Layers: did_fit() parses the formula, validates and counts exclusions,
# absorbs the fixed effects (ffi_demean, linreg.c), fits by weighted least
# squares (ffi_wls) and hands the absorbed design to the variance code
# (ffi_crve, crve.c). A fit keeps what re-inference needs (absorbed design,
# residuals, weights, cluster and fixed-effect codes), never the data frame.

#' Difference-in-differences regression with absorbed fixed effects and
#' few-cluster inference
#'
#' Fits the Family Safeguarding protocol's primary regression, e.g.
#' `y ~ treated + age + sex | la + year`: covariates before `|`, fixed
#' effects after it. Fixed effects are absorbed by the weighted
#' within-transformation: exact group demeaning for one effect; for two, the
#' alternating projections iterated on the coefficients of the effect with
#' fewer levels over the sparse cross-tabulation of the two (as fixest),
#' accelerated by Irons & Tuck (1969); for three or more, the same
#' acceleration on the demeaned vectors, each sweep projecting out the two
#' largest effects together as above; to tolerance `1e-10`. The
#' absorption's convergence is reported in `fit$convergence` (and
#' `glance()`), with a warning when the sweep limit is reached. The model is
#' then fitted by weighted least squares from the QR of \eqn{W^{1/2}X} in C
#' (LINPACK `dqrls`, as [lm.fit()]: the same rank detection, so the same
#' collinear covariates are dropped and named; triangular solves on R, the
#' bread \eqn{(R'R)^{-1}}; the normal equations are never formed).
#'
#' **Family.** `family = "auto"` applies the protocol's rule (footnote 22): a
#' linear probability model when the outcome's *baseline rate* lies in
#' \[5%, 95%\], logistic regression otherwise. The baseline rate is the
#' (weighted) mean outcome over the untreated observations, i.e. the rows
#' where the first right-hand-side term (the treatment indicator) is 0:
#' comparator LAs in every period and treated LAs before go-live. A
#' non-binary outcome is always fitted as `"gaussian"`. `"binomial"` fits a
#' logit by IRLS with the fixed effects absorbed at every step (the working
#' response and design demeaned with the working weights, as
#' `fixest::feglm`; step halving on the deviance; converged when its relative
#' change is below 1e-10), so no dummy matrix is formed and the fit keeps
#' n-vectors and the k absorbed columns only; `"conditional_logit"`
#' conditions on the first fixed effect (LA-stratified) with the Breslow
#' approximation to the conditional likelihood, which equals
#' `survival::clogit(..., method = "approximate")` (the exact conditional
#' likelihood is combinatorial in the stratum size and infeasible for LAs
#' with thousands of children). Further fixed effects (e.g. year) cannot be
#' conditioned away and are parameters of the likelihood, but no dummy matrix
#' is formed: their score and information are computed in C from sums per
#' stratum and level (the first level of each effect is the reference; a
#' level not identified within the strata is dropped), so memory is linear in
#' the rows. Newton's method with step halving; the fit keeps the covariates,
#' the codes and the cluster sums of the scores (clusters x parameters).
#' Both report convergence in `fit$convergence` and warn when it fails.
#'
#' **Variance** (`vcov`), with \eqn{V = c\,M \sum_g X_g' W_g A_g e_g e_g' A_g' W_g X_g M}
#' and \eqn{M = (X'WX)^{-1}}:
#' * `"CR0"`: \eqn{A_g = I}, \eqn{c = 1}.
#' * `"CR1"`: Stata's factor \eqn{c = G/(G-1) \cdot (N-1)/(N-K)}, where K counts
#'   the absorbed fixed-effect parameters (the rank of the dummy matrix) as an
#'   `lm()` with dummies does, so that it equals
#'   `sandwich::vcovCL(type = "HC1")` on that fit (Stata's `areg`; `reghdfe`
#'   and fixest by default do not count fixed effects nested in the
#'   clusters, which changes c by a factor close to 1 when N is large).
#'   Reference distribution \eqn{t(G-1)}.
#' * `"CR2"` (default): Bell-McCaffrey, \eqn{A_g = (I - H_{gg})^{-1/2}}
#'   (symmetric pseudo-power, eigenvalues below 1e-12 set to zero, the
#'   weighted analogue for weighted fits exactly as `clubSandwich::vcovCR()`
#'   on `lm()`), with Satterthwaite (Bell-McCaffrey) degrees of freedom per
#'   coefficient. The hat matrix includes the fixed-effect projection.
#'   Computed in k x k blocks, never forming an \eqn{n_g \times n_g} matrix,
#'   on the orthonormalised design \eqn{X R^{-1}} so that nearly collinear
#'   covariates do not cost the adjustment its precision.
#' * `"CR3"`: \eqn{A_g = (I - H_{gg})^{-1}} (clubSandwich's CR3, no (G-1)/G
#'   factor; Moore-Penrose inverse when fixed effects nested in the clusters
#'   make \eqn{I - H_{gg}} singular, which then equals the leave-one-cluster-out
#'   jackknife). Reference \eqn{t(G-1)}.
#'
#' For the logit (`"binomial"`) all four apply to the working linear model of
#' the last IRLS step: design X, working residuals \eqn{(y - \mu)/v},
#' working weights \eqn{w v}, \eqn{v = \mu(1 - \mu)}. CR0/CR1 are the
#' usual score sandwich (equal to `sandwich::vcovCL()` on the `glm()` with
#' dummies) and CR3 equals `clubSandwich::vcovCR(type = "CR3")` on that
#' `glm()`. Because the working weights are inverse variances, CR2 is the
#' Bell-McCaffrey adjustment on the scaled system \eqn{(W^{1/2}X, W^{1/2}e)},
#' \eqn{A_g = (I - \tilde H_{gg})^{-1/2}} with the symmetric hat matrix
#' \eqn{\tilde H}, and Satterthwaite df from the same system. It equals
#' clubSandwich's CR2 for `glm` when the working weights are constant
#' within clusters; otherwise clubSandwich takes a different (non-symmetric)
#' square root that needs an \eqn{n_g \times n_g} decomposition per
#' cluster, infeasible for LAs with thousands of children. For the
#' conditional logit only `"CR0"` and `"CR1"` are available; a request for
#' CR2/CR3 falls back to CR1 with a message. Use [wild_boot()] for the wild
#' cluster restricted bootstrap (linear) or the score bootstrap (logit and
#' conditional logit).
#'
#' **Exclusions.** Rows with a missing value in any variable used, and rows
#' with zero weight (e.g. unmatched in CEM), are dropped with a message that
#' counts them; they are recorded in `fit$exclusions`. Infinite values,
#' negative or missing weights are errors. For the logit (`"binomial"`), a
#' fixed-effect level in which the outcome is all 0 or all 1 is perfectly
#' predicted (its coefficient is infinite) and says nothing about the
#' slopes: its rows are excluded, repeatedly until no level of any effect is
#' constant, with a message naming the levels and a line "perfectly
#' predicted by a fixed effect" in `fit$exclusions` (as `fixest::feglm`).
#' A covariate that separates the outcome remains an error.
#'
#' @param formula A two-sided formula `y ~ treated + covariates | fe1 + fe2`.
#'   The first right-hand-side term is the treatment (it may not be absorbed
#'   by the fixed effects). The part after `|` is optional.
#' @param data A data frame.
#' @param cluster The clustering variable (the physical LA, `vignette("methods")`, section
#'   0 item 5): a one-sided formula such as `~ la` or a column name.
#' @param weights Optional non-negative weights (e.g. CEM weights): a column
#'   name, a one-sided formula or a numeric vector with one value per row.
#' @param family `"auto"` (protocol rule, see Details), `"gaussian"`,
#'   `"binomial"` or `"conditional_logit"`.
#' @param vcov `"CR2"` (default), `"CR1"`, `"CR3"` or `"CR0"`.
#' @param ... Control settings: `tol` (absorption tolerance, default 1e-10),
#'   `maxit` (absorption sweeps, default 10000), `baseline` (a number in
#'   (0, 1) overriding the baseline rate used by `family = "auto"`).
#' @return An object of class `did_fit`: a list with `call`, `formula`,
#'   `coefficients`, `vcov`, `df` (per coefficient), `vcov_type`,
#'   `family`, `nobs`, `n_clusters`, `dropped` (collinear covariates),
#'   `exclusions`, `convergence` (see `optim_status()`: the absorption for
#'   the linear model, IRLS or Newton for the logit models), the absorbed
#'   design `X`, `residuals`, `weights`, cluster and fixed-effect codes (what
#'   [update()] and [wild_boot()] need).
#' @examples
#' set.seed(1)
#' d <- expand.grid(child = 1:40, la = letters[1:6], year = 2015:2019)
#' d$treated <- as.integer(d$la %in% c("a", "b", "c") & d$year >= 2018)
#' d$age <- sample(0:17, nrow(d), replace = TRUE)
#' d$y <- 0.3 + 0.1 * d$treated + 0.01 * d$age + rnorm(nrow(d), sd = 0.3)
#' fit <- did_fit(y ~ treated + age | la + year, d, cluster = ~la)
#' fit
#' update(fit, vcov = "CR1")
#' @export
did_fit <- function(formula, data, cluster, weights = NULL, family = "auto",
                    vcov = "CR2", ...) {
  call <- match.call()
  ctrl <- did_control(...)
  if (!is.data.frame(data)) {
    stop_arg("data", "must be a data frame", "pass the analysis cohort as a data frame.")
  }
  parts <- split_did_formula(formula)
  family <- match_choice(family, c("auto", "gaussian", "binomial", "conditional_logit"), "family")
  vcov <- match_choice(vcov, c("CR2", "CR1", "CR3", "CR0"), "vcov")
  n_data <- nrow(data)

  # ---- evaluate everything on the full data, then one exclusion step ----
  mf <- tryCatch(stats::model.frame(parts$main, data, na.action = stats::na.pass),
                 error = function(e) stop_arg("formula", paste0("could not be evaluated in `data`: ", conditionMessage(e)),
                                              "check the variable names."))
  tt <- stats::terms(mf)
  y <- stats::model.response(mf)
  yname <- deparse(parts$main[[2]])
  if (is.logical(y)) y <- as.numeric(y)
  if (!is.numeric(y) || !is.null(dim(y))) {
    stop_arg("formula", sprintf("has outcome `%s` that is not numeric", yname),
             "use a numeric or 0/1 outcome.")
  }
  y <- as.double(y)
  X <- stats::model.matrix(tt, mf)
  rownames(X) <- NULL
  labs <- attr(tt, "term.labels")
  if (length(labs) == 0L) {
    stop_arg("formula", "has no treatment term on the right-hand side",
             "write `y ~ treated + covariates | la + year`.")
  }
  treat_cols <- which(attr(X, "assign") == 1L)
  treat_name <- colnames(X)[treat_cols[1L]]
  fe_vals <- lapply(parts$fe, function(lab) {
    v <- tryCatch(eval(str2lang(lab), data, environment(formula)),
                  error = function(e) stop_arg("formula", sprintf("has fixed effect `%s` that could not be evaluated in `data`", lab),
                                               "check the variable name after `|`."))
    if (length(v) != n_data) {
      stop_arg("formula", sprintf("has fixed effect `%s` of length %d, not %d", lab, length(v), n_data))
    }
    v
  })
  names(fe_vals) <- parts$fe
  cl <- eval_column(cluster, data, "cluster")
  w <- if (is.null(weights)) NULL else eval_column(weights, data, "weights")
  if (!is.null(w)) {
    if (!is.numeric(w)) stop_arg("weights", "must be numeric", "pass non-negative numeric weights.")
    bad <- which(is.na(w))
    if (length(bad)) {
      stop_rows("data", "weights", bad, "have missing weights",
                "give every row a weight (0 to exclude it, e.g. unmatched in CEM).")
    }
    bad <- which(!is.finite(w) | w < 0)
    if (length(bad)) {
      stop_rows("data", "weights", bad, "have negative or infinite weights",
                "weights must be finite and >= 0.")
    }
  }

  # infinite values are errors, NA rows are counted exclusions
  inf_y <- which(is.infinite(y) | is.nan(y))
  if (length(inf_y)) {
    stop_rows("data", yname, inf_y, "have infinite or NaN outcomes", "recode or drop them before fitting.")
  }
  inf_x <- which(rowSums(!is.finite(X) & !is.na(X)) > 0 | rowSums(is.nan(X)) > 0)
  if (length(inf_x)) {
    bad_cols <- colnames(X)[colSums(!is.finite(X) & !is.na(X)) > 0 | colSums(is.nan(X)) > 0]
    stop_rows("data", paste(bad_cols, collapse = ", "), inf_x,
              "have infinite or NaN covariate values", "recode or drop them before fitting.")
  }
  miss <- is.na(y) | rowSums(is.na(X)) > 0 | is.na(cl)
  for (v in fe_vals) miss <- miss | is.na(v)
  zero_w <- if (is.null(w)) rep(FALSE, n_data) else (w == 0 & !miss)
  # each exclusion: a message naming the first rows, and a line of the flow
  excluded <- function(drop, what, reason) {
    rows <- which(drop)
    if (!length(rows)) return(NULL)
    message(sprintf("did_fit(): %s row%s with %s excluded (%s).",
                    format(length(rows), big.mark = ","), if (length(rows) == 1) "" else "s",
                    what, describe_rows(rows)))
    data.frame(reason = reason, n = length(rows))
  }
  excl <- rbind(data.frame(reason = character(0), n = integer(0)),
                excluded(miss, "a missing outcome, covariate, fixed effect or cluster",
                         "missing value"),
                excluded(zero_w, "zero weight", "zero weight"))
  keep <- !miss & !zero_w
  if (!any(keep)) {
    stop_arg("data", "has no usable rows after excluding missing values and zero weights",
             "check that `data` has rows and that the model variables and weights are filled in.")
  }
  y <- y[keep]
  X <- X[keep, , drop = FALSE]
  cl <- droplevels(as.factor(cl[keep]))
  fe_f <- lapply(fe_vals, function(v) droplevels(as.factor(v[keep])))
  if (!is.null(w)) w <- as.double(w[keep])
  G <- nlevels(cl)
  if (G < 2L) {
    stop(sprintf(paste0("`cluster` has %d cluster after exclusions (%s): cluster-robust inference ",
                        "needs at least 2 (and is only trustworthy with more).\n",
                        "Fix: cluster on the physical LA across treated and comparator LAs."),
                 G, paste(utils::head(levels(cl), 3), collapse = ", ")), call. = FALSE)
  }

  # ---- family rule ----
  binary <- all(y %in% c(0, 1))
  rule <- NULL
  if (family == "auto") {
    rule <- did_family_rule(y, X[, treat_cols[1L]], w, ctrl$baseline)
    base_rate <- rule$baseline_rate
    family <- rule$chosen
    if (binary) message(sprintf("did_fit(): family = \"auto\" chose %s (%s).", family,
                      sprintf("baseline rate among untreated rows %.3f %s [0.05, 0.95]", base_rate,
                              if (family == "gaussian") "in" else "outside")))
  }
  if (family %in% c("binomial", "conditional_logit") && !binary) {
    stop_arg("family", sprintf("is \"%s\" but outcome `%s` is not 0/1", family, yname),
             "use family = \"gaussian\" or recode the outcome.")
  }

  if (family %in% c("binomial", "conditional_logit") && length(y) && all(y == y[1])) {
    stop(sprintf(paste0("The outcome `%s` is %s in every row (%s): a logit is not identified.\n",
                        "Fix: check the outcome and the sample (the rows kept after exclusions)."),
                 yname, y[1], if (y[1] == 0) "no events" else "all events"), call. = FALSE)
  }
  # rows that carry no information for a logit are left out and counted,
  # before the clusters are counted; `what` names them in the error when
  # fewer than two clusters remain
  exclude_rows <- function(drop, reason, model, what, fix) {
    excl <<- rbind(excl, data.frame(reason = reason, n = sum(drop)))
    k2 <- !drop
    keep[keep] <<- k2
    y <<- y[k2]
    X <<- X[k2, , drop = FALSE]
    cl <<- droplevels(cl[k2])
    fe_f <<- lapply(fe_f, function(v) droplevels(v[k2]))
    if (!is.null(w)) w <<- w[k2]
    G <<- nlevels(cl)
    if (G < 2L) {
      stop(sprintf("The %s of `%s` has %d cluster left after excluding %s.\nFix: %s",
                   model, yname, G, what, fix), call. = FALSE)
    }
  }
  if (family == "binomial" && length(fe_f)) {
    # fixed-effect levels whose outcome is all 0 or all 1 are perfectly
    # predicted: their rows carry no information and are left out, counted
    # (as fixest::feglm)
    pp <- logit_perfect_rows(y, fe_f)
    if (any(pp$drop)) {
      message(sprintf("did_fit(): %s row%s in %s with an outcome that is all 0 or all 1 excluded (perfectly predicted by the fixed effects; %s).",
                      format(sum(pp$drop), big.mark = ","), if (sum(pp$drop) == 1) "" else "s",
                      pp$what, describe_rows(which(keep)[pp$drop])))
      exclude_rows(pp$drop, "perfectly predicted by a fixed effect", "logit",
                   "the fixed-effect levels that predict the outcome perfectly", "use family = \"gaussian\".")
    }
  }
  if (family == "conditional_logit" && length(fe_f)) {
    # strata (the first fixed effect) with a constant outcome carry no
    # information in the conditional likelihood
    ww <- if (is.null(w)) rep(1, length(y)) else w
    dS <- tapply(ww * y, fe_f[[1]], sum)
    nS <- tapply(ww, fe_f[[1]], sum)
    uninf <- which(dS == 0 | dS == nS)
    drop <- as.integer(fe_f[[1]]) %in% uninf
    if (all(drop)) stop("No stratum has both outcomes 0 and 1: the conditional logit is not identified.", call. = FALSE)
    if (any(drop)) {
      message(sprintf("did_fit(): %d stratum/strata of `%s` with a constant outcome carry no information and were excluded (%s rows): %s.",
                      length(uninf), names(fe_f)[1], format(sum(drop), big.mark = ","),
                      paste(utils::head(levels(fe_f[[1]])[uninf], 5), collapse = ", ")))
      exclude_rows(drop, "stratum with a constant outcome (conditional logit)", "conditional logit",
                   "the strata with a constant outcome", "use family = \"binomial\" or \"gaussian\".")
    }
  }

  fit <- switch(family,
    gaussian = fit_gaussian(y, X, fe_f, w, cl, treat_name, ctrl),
    binomial = fit_logit(y, X, fe_f, w, cl, treat_name, yname, ctrl, rows = which(keep)),
    conditional_logit = fit_clogit(y, X, fe_f, w, cl, treat_name, yname, ctrl)
  )
  fit$call <- call
  fit$formula <- formula
  fit$family <- family
  fit$family_rule <- rule
  fit$treatment <- treat_name
  fit$fe_names <- names(fe_f)
  fit$exclusions <- excl
  fit$n_clusters <- G
  fit$cluster_levels <- levels(cl)
  fit$cluster <- as.integer(cl)
  fit$n_treated_clusters <- few_treated_check_(X[, treat_cols[1L]], cl, vcov, "did_fit()")
  fit$weights <- w
  fit$nobs <- length(y)
  fit$ctrl <- ctrl
  class(fit) <- "did_fit"
  fit <- set_inference(fit, vcov)
  fit
}

# The protocol's family rule (FS footnote 22): a linear model when the
# outcome's baseline rate -- the (weighted) mean over the untreated rows,
# treat == 0 -- is in [0.05, 0.95], a logit otherwise; a non-binary outcome is
# linear. `baseline` overrides the rate. y, treat, w: the rows fitted.
did_family_rule <- function(y, treat, w = NULL, baseline = NULL) {
  binary <- all(y %in% c(0, 1))
  untreated <- treat == 0
  base_rate <- baseline %||% if (any(untreated)) {
    stats::weighted.mean(y[untreated], if (is.null(w)) rep(1, sum(untreated)) else w[untreated])
  } else NA_real_
  chosen <- if (!binary || is.na(base_rate)) "gaussian" else
    if (base_rate >= 0.05 && base_rate <= 0.95) "gaussian" else "binomial"
  list(binary = binary, baseline_rate = base_rate, chosen = chosen)
}

did_control <- function(tol = 1e-10, maxit = 10000L, baseline = NULL, ...) {
  extra <- list(...)
  if (length(extra)) {
    stop_arg(names(extra)[1] %||% "...", "is not an argument of did_fit()",
             "the control settings are tol, maxit and baseline.")
  }
  if (!is.numeric(tol) || length(tol) != 1 || !(tol > 0)) stop_arg("tol", "must be a positive number")
  if (!is.null(baseline) && (!is.numeric(baseline) || length(baseline) != 1 || !(baseline > 0 && baseline < 1))) {
    stop_arg("baseline", "must be a single number in (0, 1)")
  }
  list(tol = tol, maxit = as.integer(maxit), baseline = baseline)
}

match_choice <- function(x, choices, arg) {
  if (!is.character(x) || length(x) != 1L || !(x %in% choices)) {
    stop_arg(arg, sprintf("must be one of %s", paste0("\"", choices, "\"", collapse = ", ")),
             sprintf("for example %s = \"%s\".", arg, choices[1]))
  }
  x
}

# Split `y ~ x1 + x2 | fe1 + fe2` into the main formula and FE labels.
split_did_formula <- function(formula) {
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    stop_arg("formula", "must be a two-sided formula",
             "write `y ~ treated + covariates | la + year`.")
  }
  rhs <- formula[[3]]
  fe <- character(0)
  if (is.call(rhs) && identical(rhs[[1]], as.name("|"))) {
    fe_f <- stats::as.formula(call("~", rhs[[3]]))
    fe <- attr(stats::terms(fe_f), "term.labels")
    rhs <- rhs[[2]]
  }
  main <- stats::as.formula(call("~", formula[[2]], rhs), env = environment(formula))
  list(main = main, fe = fe)
}

eval_column <- function(x, data, arg) {
  if (inherits(x, "formula")) {
    if (length(x) != 2L) stop_arg(arg, "must be a one-sided formula such as `~ la` or a column name")
    v <- tryCatch(eval(x[[2]], data, environment(x)),
                  error = function(e) stop_arg(arg, sprintf("refers to `%s`, which is not a column of `data`", deparse(x[[2]]))))
  } else if (is.character(x) && length(x) == 1L) {
    if (!x %in% names(data)) {
      stop_arg(arg, sprintf("refers to column `%s`, which is not in `data`", x),
               sprintf("use one of: %s.", paste(utils::head(names(data), 8), collapse = ", ")))
    }
    v <- data[[x]]
  } else if (length(x) == nrow(data)) {
    v <- x
  } else {
    stop_arg(arg, "must be a one-sided formula, a column name, or a vector with one value per row of `data`")
  }
  if (length(v) != nrow(data)) stop_arg(arg, sprintf("has length %d, not nrow(data) = %d", length(v), nrow(data)))
  v
}

# Codes of the fixed effects: global 0-based level index (n x nfe integer
# matrix), levels per effect.
fe_codes <- function(fe_f, n) {
  nlev <- vapply(fe_f, nlevels, 1L)
  off <- c(0L, cumsum(nlev))[seq_along(fe_f)]
  m <- matrix(0L, n, length(fe_f))
  for (f in seq_along(fe_f)) m[, f] <- as.integer(fe_f[[f]]) - 1L + off[f]
  list(codes = m, nlev = as.integer(nlev), L = sum(nlev))
}

# The 0-based codes of each effect within its own levels (what ffi_demean
# takes), from the global codes.
local_codes <- function(fe) {
  off <- c(0L, cumsum(fe$nlev))
  lapply(seq_along(fe$nlev), function(f) fe$codes[, f] - off[f])
}

# D'WD for the stacked dummies of all fixed effects (L x L).
fe_crossprod <- function(fe, w, L) {
  n <- nrow(fe$codes)
  ww <- if (is.null(w)) rep(1, n) else w
  out <- matrix(0, L, L)
  nfe <- ncol(fe$codes)
  for (a in seq_len(nfe)) for (b in seq_len(nfe)) {
    if (b < a) next
    idx <- fe$codes[, a] + 1 + L * fe$codes[, b]
    s <- rowsum(ww, idx, reorder = FALSE)
    ii <- as.numeric(rownames(s))
    out[ii] <- s[, 1]
  }
  out[lower.tri(out)] <- t(out)[lower.tri(out)]
  out
}

pinv_sym <- function(A, rel = 1e-10) {
  if (!length(A)) return(list(inv = A, rank = 0L))
  e <- eigen(A, symmetric = TRUE)
  keep <- e$values > rel * max(e$values)
  V <- e$vectors[, keep, drop = FALSE]
  list(inv = V %*% (t(V) / e$values[keep]), rank = sum(keep))
}

fit_gaussian <- function(y, X, fe_f, w, cl, treat_name, ctrl) {
  nfe <- length(fe_f)
  if (nfe > 0L) {
    X <- X[, colnames(X) != "(Intercept)", drop = FALSE]
  }
  fe <- fe_codes(fe_f, length(y))
  codes0 <- lapply(seq_len(nfe), function(f) as.integer(fe_f[[f]]) - 1L)
  Xy <- cbind(X, .y = y)
  if (nfe > 0L) {
    Xt_all <- .Call(ffi_demean, Xy, codes0, fe$nlev, w, ctrl$tol, ctrl$maxit)
    conv <- demean_status(Xt_all, nfe, ctrl)
  } else {
    Xt_all <- Xy
    conv <- optim_status(TRUE, 0L, "no fixed effects to absorb")
  }
  Xt <- Xt_all[, seq_len(ncol(X)), drop = FALSE]
  yt <- Xt_all[, ncol(Xy)]
  colnames(Xt) <- colnames(X)
  # columns absorbed by the fixed effects
  absorbed <- character(0)
  if (nfe > 0L && ncol(X)) {
    ww <- if (is.null(w)) rep(1, length(y)) else w
    before <- sqrt(colSums(ww * sweep(X, 2, colSums(ww * X) / sum(ww))^2))
    after <- sqrt(colSums(ww * Xt^2))
    gone <- after <= 1e-6 * pmax(before, 1e-300) | after == 0
    if (gone[1L] && colnames(X)[1L] == treat_name) {
      stop(sprintf(paste0("The treatment `%s` never varies within the fixed effects (%s): its effect is not identified.\n",
                          "Fix: check the treatment coding, or remove a fixed effect that absorbs it ",
                          "(e.g. an LA-by-period effect)."),
                   treat_name, paste(names(fe_f), collapse = " + ")), call. = FALSE)
    }
    absorbed <- colnames(X)[gone]
  }
  use <- !(colnames(X) %in% absorbed)
  res <- .Call(ffi_wls, Xt[, use, drop = FALSE], yt, w, 1e-7)
  collinear <- colnames(X)[use][!res$keep]
  if (treat_name %in% collinear) {
    stop(sprintf(paste0("The treatment `%s` is collinear with the intercept, fixed effects or covariates: its effect is not identified.\n",
                        "Fix: check that `%s` varies (0 for untreated rows, 1 for treated), and drop a covariate that repeats it."),
                 treat_name, treat_name), call. = FALSE)
  }
  dropped <- c(absorbed, collinear)
  if (length(dropped)) {
    message(sprintf("did_fit(): dropped %d covariate%s collinear with the fixed effects or other covariates: %s.",
                    length(dropped), if (length(dropped) == 1) "" else "s",
                    paste0("`", dropped, "`", collapse = ", ")))
  }
  kept <- colnames(X)[use][res$keep]
  Xk <- Xt[, kept, drop = FALSE]
  coef <- res$coef[res$keep]
  names(coef) <- kept
  bread <- res$bread
  dimnames(bread) <- list(kept, kept)
  qr_R <- res$R
  dimnames(qr_R) <- list(kept, kept)
  # rank of the fixed-effect dummies (K_fe) for the CR1 factor
  K_fe <- 0L
  Dplus <- NULL
  if (nfe == 1L) {
    K_fe <- fe$nlev[1L]
  } else if (nfe > 1L) {
    if (fe$L <= 3000L) {
      pi <- pinv_sym(fe_crossprod(fe, w, fe$L))
      K_fe <- pi$rank
      Dplus <- pi$inv
    } else {
      K_fe <- fe$L - (nfe - 1L)
    }
  }
  list(coefficients = coef, dropped = dropped, X = Xk, residuals = res$resid,
       fitted_absorbed = yt - res$resid, bread = bread, qr_R = qr_R, fe = fe,
       fe_names = names(fe_f), K = length(coef) + K_fe, K_fe = K_fe, Dplus = Dplus,
       iterations = attr(Xt_all, "iterations") %||% 0L, convergence = conv)
}

# The convergence report of an absorption by ffi_demean() (alternating
# projections with Irons-Tuck acceleration; one effect is exact), with the
# package's warning when the sweep limit was reached.
demean_status <- function(Xt, nfe, ctrl) {
  its <- attr(Xt, "iterations") %||% 0L
  ok <- isTRUE(attr(Xt, "converged"))
  conv <- optim_status(ok, its, if (nfe == 1L) "one fixed effect: exact group demeaning" else if (ok)
    sprintf("alternating projections (Irons-Tuck) moved no value by more than tol = %g in the last sweep", ctrl$tol) else
      sprintf("sweep limit maxit = %d reached before the tolerance tol = %g", ctrl$maxit, ctrl$tol))
  if (!ok) {
    warn_not_converged(sprintf("did_fit(): absorbing %d fixed effects", nfe), conv,
                       "raise `maxit` (e.g. maxit = 1e5), or check for fixed effects that are only weakly connected.")
  }
  conv
}

# ---- inference ----

set_inference <- function(fit, type) {
  if (fit$family == "conditional_logit" && type %in% c("CR2", "CR3")) {
    message(sprintf("did_fit(): %s is not available for family \"%s\"; using CR1 with t(G - 1).",
                    type, fit$family))
    type <- "CR1"
  }
  inf <- switch(fit$family,
    gaussian = crve_gaussian(fit, type, inv_var = isTRUE(fit$freq_weights)),
    binomial = crve_gaussian(logit_working(fit), type, inv_var = TRUE),
    conditional_logit = crve_score(fit, type))
  fit$vcov <- inf$vcov
  fit$df <- inf$df
  fit$vcov_type <- type
  fit
}

# A linear did_fit() on cells (rows sharing every regressor collapsed to
# their mean, weights = the number of rows) turned into the fit on the rows:
# the coefficients are the same; nobs is the number of rows; and, because the
# rows' hat matrix has the cells' structure, the rows' CR2 adjustment is the
# symmetric one on the scaled cell system (crve.c type 4, the adjustment for
# inverse-variance weights), CR3 the cells' CR3 with weights n, Satterthwaite
# df included. Residual-free quantities are unaffected.
did_freq_weights <- function(fit, type) {
  fit$nobs <- sum(fit$weights)
  fit$freq_weights <- TRUE
  set_inference(fit, type)
}

cluster_order <- function(fit) {
  cl <- fit$cluster
  ord <- order(cl) - 1L
  starts <- c(0L, cumsum(tabulate(cl, fit$n_clusters)))
  list(ord = as.integer(ord), starts = as.integer(starts))
}

cr1_factor <- function(fit) {
  G <- fit$n_clusters
  N <- fit$nobs
  G / (G - 1) * (N - 1) / (N - fit$K)
}

# B = diag((D'WD)^+, M) and, for weighted fits, C = B (U'W^2 U) B
hat_blocks <- function(fit, need_C = TRUE) {
  fe <- fit$fe
  L <- fe$L
  k <- ncol(fit$X)
  w <- fit$weights
  if (L > 3000L) {
    stop(sprintf("vcov = \"CR2\"/\"CR3\" with %d fixed-effect levels is not supported (limit 3000).\nFix: use vcov = \"CR1\" or wild_boot().", L),
         call. = FALSE)
  }
  Dplus <- fit$Dplus
  if (is.null(Dplus) && L > 0) Dplus <- pinv_sym(fe_crossprod(fe, w, L))$inv
  B <- matrix(0, L + k, L + k)
  if (L > 0) B[seq_len(L), seq_len(L)] <- Dplus
  B[L + seq_len(k), L + seq_len(k)] <- fit$bread
  C <- NULL
  if (!is.null(w) && need_C) {
    w2 <- w^2
    UW2U <- matrix(0, L + k, L + k)
    if (L > 0) {
      UW2U[seq_len(L), seq_len(L)] <- fe_crossprod(fe, w2, L)
      DX <- matrix(0, L, k)
      for (f in seq_len(ncol(fe$codes))) {
        s <- rowsum(w2 * fit$X, fe$codes[, f])
        DX[as.integer(rownames(s)) + 1L, ] <- s
      }
      UW2U[seq_len(L), L + seq_len(k)] <- DX
      UW2U[L + seq_len(k), seq_len(L)] <- t(DX)
    }
    UW2U[L + seq_len(k), L + seq_len(k)] <- crossprod(fit$X, w2 * fit$X)
    C <- B %*% UW2U %*% B
  }
  list(B = B, C = C, L = L)
}

# Computed on the W-orthonormal Q = Xt R^{-1} (R from the QR of sqrt(W) Xt),
# whose bread is the identity, so that the hat blocks and the CR2/CR3
# adjustments do not lose the precision that (Xt'W Xt)^{-1} loses when the
# covariates are nearly collinear; back-transformed by V = R^{-1} V_Q R^{-T}
# (the score of cluster g is R' Q_g'W_g A_g e_g; the contrast of coefficient j
# is R^{-T} e_j).
# inv_var: the weights are inverse variances (a logit's working weights), so
# CR2 uses the symmetric adjustment on the scaled system (crve.c type 4).
crve_gaussian <- function(fit, type, inv_var = FALSE) {
  co <- cluster_order(fit)
  k <- ncol(fit$X)
  G <- fit$n_clusters
  Rr <- fit$qr_R %||% chol(solve(fit$bread))
  Ri <- backsolve(Rr, diag(k))
  fit$X <- fit$X %*% Ri
  fit$bread <- diag(k)
  M <- diag(k)
  nm <- names(fit$coefficients)
  if (type %in% c("CR0", "CR1")) {
    r <- .Call(ffi_crve, fit$X, fit$residuals, fit$weights, co$ord, co$starts,
               matrix(0L, nrow(fit$X), 0L), 0L, NULL, NULL, 0L, FALSE)
  } else {
    hb <- hat_blocks(fit, need_C = type == "CR2" && !inv_var)
    kern <- if (type == "CR3") 3L else if (inv_var) 4L else 2L
    r <- .Call(ffi_crve, fit$X, fit$residuals, fit$weights, co$ord, co$starts,
               fit$fe$codes, hb$L, hb$B, hb$C, kern, type == "CR2")
  }
  meat <- tcrossprod(r$scores)
  cf <- if (type == "CR1") cr1_factor(fit) else 1
  V <- cf * Ri %*% meat %*% t(Ri)
  V <- (V + t(V)) / 2
  dimnames(V) <- list(nm, nm)
  df <- rep(G - 1, k)
  if (type == "CR2") {
    pk <- hb$L + k
    K1 <- array(r$K1, c(k, k, G))
    Ua <- array(r$Ua, c(pk, k, G))
    Ub <- if (is.null(r$Ub)) NULL else array(r$Ub, c(pk, k, G))
    for (j in seq_len(k)) {
      m <- Ri[j, ]
      d <- vapply(seq_len(G), function(g) sum(m * (matrix(K1[, , g], k, k) %*% m)), 0)
      A <- vapply(seq_len(G), function(g) matrix(Ua[, , g], pk, k) %*% m, numeric(pk))
      A <- matrix(A, pk, G)
      if (is.null(Ub)) {
        P <- -crossprod(A, hb$B %*% A)
      } else {
        Bm <- matrix(vapply(seq_len(G), function(g) matrix(Ub[, , g], pk, k) %*% m, numeric(pk)), pk, G)
        cross <- crossprod(A, hb$B %*% Bm)
        P <- crossprod(A, hb$C %*% A) - cross - t(cross)
      }
      diag(P) <- diag(P) + d
      df[j] <- sum(diag(P))^2 / sum(P^2)
    }
  }
  names(df) <- nm
  list(vcov = V, df = df)
}

crve_score <- function(fit, type) {
  S <- fit$score_sums
  M <- fit$bread_full
  cf <- if (type == "CR1") cr1_factor(fit) else 1
  V <- (cf * M %*% crossprod(S) %*% M)[fit$sel, fit$sel, drop = FALSE]
  nm <- names(fit$coefficients)
  dimnames(V) <- list(nm, nm)
  df <- stats::setNames(rep(fit$n_clusters - 1, length(nm)), nm)
  list(vcov = V, df = df)
}

# ---- logit models ----

# Rows of fixed-effect levels in which the outcome is all 0 or all 1 (the
# level's dummy would go to -Inf or +Inf and predict them perfectly; they
# carry no information on the slopes). Removed repeatedly until no level of
# any effect is constant, as fixest::feglm does. Rows of weight 0 are not in
# `y` (did_fit() excludes them first). Returns `drop` (logical, per row) and
# `what` (the levels, for the message), `levels` (count per effect).
logit_perfect_rows <- function(y, fe_f) {
  drop <- rep(FALSE, length(y))
  gone <- stats::setNames(vector("list", length(fe_f)), names(fe_f))
  repeat {
    found <- FALSE
    for (f in names(fe_f)) {
      g <- fe_f[[f]][!drop]
      yy <- y[!drop]
      n1 <- tabulate(as.integer(g), nlevels(g))
      s1 <- tabulate(as.integer(g)[yy == 1], nlevels(g))
      bad <- which(n1 > 0 & (s1 == 0 | s1 == n1))
      if (length(bad)) {
        found <- TRUE
        gone[[f]] <- c(gone[[f]], levels(g)[bad])
        drop[!drop] <- as.integer(g) %in% bad
      }
    }
    if (!found || all(drop)) break
  }
  hit <- lengths(gone) > 0
  what <- paste(vapply(names(gone)[hit], function(f) {
    lv <- gone[[f]]
    sprintf("%d level%s of `%s` (%s%s)", length(lv), if (length(lv) == 1) "" else "s", f,
            paste(utils::head(lv, 5), collapse = ", "), if (length(lv) > 5) ", ..." else "")
  }, ""), collapse = " and ")
  list(drop = drop, what = what, levels = lengths(gone))
}

dummy_matrix <- function(fe_f) {
  if (!length(fe_f)) return(NULL)
  df <- as.data.frame(fe_f)
  names(df) <- paste0("fe", seq_along(fe_f))
  D <- stats::model.matrix(stats::as.formula(paste("~", paste(names(df), collapse = " + "))), df)
  D[, colnames(D) != "(Intercept)", drop = FALSE]
}

# IRLS for the logit with the fixed effects absorbed at every step (as
# fixest::feglm): the working response z = eta + (y - mu)/v and the design
# are demeaned with the working weights w v (ffi_demean), the slopes come
# from the QR (ffi_wls), and the linear predictor is z minus the residual of
# that weighted within regression (the fixed effects are never formed).
# Step halving on the deviance; converged when its relative change is below
# `tol` (glm's criterion). `offset`: a fixed part of eta (the restricted fits
# of the score bootstrap). X: n x k without the intercept when there are
# fixed effects. `eta_start`: a linear predictor (offset included) to start
# from instead of the data (a warm start: the score bootstrap's restricted
# refits start from the previous one's). `coef_start`: the coefficients
# that go with eta_start; given both, the start's deviance is the first one
# compared (glm.fit's devold), so a start already at the optimum converges
# after one step. `extra`: columns (n x m) not in the model, demeaned with
# the design at the final working weights and put after its kept columns
# in Xt, R and the bread (the score bootstrap's restricted parameter).
# Returns the coefficients (NA for
# dropped columns), mu, eta, the demeaned design at the final working
# weights, the QR's R and bread, and an optim_status() report.
irls_fe <- function(y, X, codes0, nlev, w, offset = NULL, ctrl = did_control(),
                    tol = 1e-10, maxit = 100L, eta_start = NULL, coef_start = NULL, extra = NULL) {
  n <- length(y)
  ww <- if (is.null(w)) rep(1, n) else w
  off <- if (is.null(offset)) 0 else offset
  nfe <- length(codes0)
  dev_of <- function(mu) -2 * sum(ww * (y * log(pmax(mu, 1e-300)) + (1 - y) * log(pmax(1 - mu, 1e-300))))
  fe_failed <- 0L   # absorptions that hit the sweep limit (folded into the status)
  absorb <- function(M, wt) {
    if (!nfe) return(M)
    out <- .Call(ffi_demean, M, codes0, nlev, wt, ctrl$tol, ctrl$maxit)
    if (!isTRUE(attr(out, "converged"))) fe_failed <<- fe_failed + 1L
    out
  }
  k <- ncol(X)
  if (is.null(eta_start)) {
    mu <- (ww * y + 0.5) / (ww + 1)
    eta <- stats::qlogis(mu)
  } else {
    eta <- eta_start
    mu <- inv_logit(eta)
  }
  dev <- Inf
  b <- rep(NA_real_, k)
  if (!is.null(eta_start) && !is.null(coef_start)) {
    dev <- dev_of(mu)
    b <- coef_start
  }
  conv <- FALSE
  halvings <- 0L
  for (it in seq_len(maxit)) {
    v <- mu * (1 - mu)
    wv <- ww * v
    z <- eta - off + (y - mu) / v
    # X and z absorbed apart (column by column as together, without an
    # n x (k + 1) copy); one absorption that hit its limit counts once
    failed <- fe_failed
    Xa <- absorb(X, wv)
    za <- absorb(z, wv)
    fe_failed <- failed + (fe_failed > failed)
    res <- .Call(ffi_wls, Xa, as.vector(za), wv, 1e-7)
    eta_new <- z - res$resid + off
    b_new <- res$coef
    mu_new <- inv_logit(eta_new)
    dev_new <- dev_of(mu_new)
    # step halving when the deviance rises (or is not finite)
    h <- 0L
    while (is.finite(dev) && !isTRUE(dev_new <= dev * (1 + 1e-12)) && h < 30L) {
      eta_new <- (eta_new + eta) / 2
      b_new <- (b_new + b) / 2
      mu_new <- inv_logit(eta_new)
      dev_new <- dev_of(mu_new)
      h <- h + 1L
    }
    halvings <- halvings + h
    done <- is.finite(dev) && abs(dev_new - dev) / (abs(dev_new) + 0.1) < tol
    eta <- eta_new
    mu <- mu_new
    b <- b_new
    dev <- dev_new
    if (done) {
      conv <- TRUE
      break
    }
  }
  # the design demeaned at the final working weights, its QR and the bread
  wv <- ww * mu * (1 - mu)
  keep <- !is.na(b)
  Xk <- if (all(keep)) X else X[, keep, drop = FALSE]
  Xt <- absorb(if (is.null(extra)) Xk else cbind(Xk, extra), wv)
  fin <- .Call(ffi_wls, Xt, rep(0, n), wv, 1e-7)
  status <- optim_status(conv && !fe_failed, it, sprintf("%s; relative deviance change %s tol = %g%s%s",
                                           if (conv) "converged" else "iteration limit reached",
                                           if (conv) "<" else ">=", tol,
                                           if (halvings) sprintf("; %d step halving%s", halvings, if (halvings == 1) "" else "s") else "",
                                           if (fe_failed) sprintf(paste0("; the fixed-effect absorption reached its sweep limit maxit = %d ",
                                                                         "before tol = %g in %d of %d demeanings"),
                                                                  ctrl$maxit, ctrl$tol, fe_failed, it + 1L) else ""))
  list(coef = b, keep = keep, mu = mu, eta = eta, Xt = Xt, bread = fin$bread, R = fin$R,
       deviance = dev, convergence = status, fe_failed = fe_failed)
}

# glm's binomial()$linkinv: eta clamped to +-30 so that mu stays in (0, 1).
inv_logit <- function(eta) stats::plogis(pmin(pmax(eta, -30), 30))

# Errors for a separated logit fit `r` (from irls_fe()): fitted probabilities
# within 1e-10 of 0 or 1, or no convergence with linear predictors beyond
# +-15. rows: the row numbers of `data` of the rows fitted.
check_logit_separation <- function(r, rows, yname) {
  extreme <- which(r$mu < 1e-10 | r$mu > 1 - 1e-10)
  if (length(extreme)) {
    stop(sprintf(paste0("Perfect separation in the logit of `%s`: %s row%s of `data` have fitted probabilities within 1e-10 of 0 or 1 (%s).\n",
                        "Fix: find the covariate that predicts the outcome perfectly and drop or pool it, ",
                        "or use family = \"gaussian\"."),
                 yname, format(length(extreme), big.mark = ","),
                 if (length(extreme) == 1) "" else "s", describe_rows(rows[extreme])), call. = FALSE)
  }
  large <- which(abs(r$eta) > 15)
  if (!r$convergence$converged && length(large)) {
    stop(sprintf(paste0("The logit of `%s` did not converge (%s) and %s row%s of `data` have linear predictors beyond +-15 (%s): ",
                        "a covariate (nearly) separates the outcome.\n",
                        "Fix: find the covariate that predicts the outcome (almost) perfectly and drop or pool it, ",
                        "or use family = \"gaussian\"."),
                 yname, r$convergence$message, format(length(large), big.mark = ","),
                 if (length(large) == 1) "" else "s", describe_rows(rows[large])), call. = FALSE)
  }
  invisible(NULL)
}

# rows: the row numbers of `data` of the rows fitted (after exclusions).
fit_logit <- function(y, X, fe_f, w, cl, treat_name, yname, ctrl, rows = seq_along(y)) {
  nfe <- length(fe_f)
  if (nfe) X <- X[, colnames(X) != "(Intercept)", drop = FALSE]
  fe <- fe_codes(fe_f, length(y))
  r <- irls_fe(y, X, local_codes(fe), fe$nlev, w, ctrl = ctrl)
  check_logit_separation(r, rows, yname)
  if (!r$convergence$converged) {
    warn_not_converged("did_fit(): the logit (IRLS)", r$convergence,
                       if (r$fe_failed) "raise `maxit` (e.g. maxit = 1e5), or check for fixed effects that are only weakly connected." else
                         "check for a covariate that (nearly) separates the outcome, or use family = \"gaussian\".")
  }
  if (!r$keep[match(treat_name, colnames(X))]) {
    stop(sprintf("The treatment `%s` is collinear with the fixed effects and covariates: its effect is not identified.", treat_name),
         call. = FALSE)
  }
  dropped <- colnames(X)[!r$keep]
  if (length(dropped)) {
    message(sprintf("did_fit(): dropped %d covariate%s collinear with the fixed effects or other covariates: %s.",
                    length(dropped), if (length(dropped) == 1) "" else "s", paste0("`", dropped, "`", collapse = ", ")))
  }
  kept <- colnames(X)[r$keep]
  b <- r$coef[r$keep]
  names(b) <- kept
  colnames(r$Xt) <- kept
  dimnames(r$bread) <- dimnames(r$R) <- list(kept, kept)
  list(coefficients = b, dropped = dropped, X = r$Xt, X_raw = X[, kept, drop = FALSE], y = y,
       fitted = r$mu, bread = r$bread, qr_R = r$R, fe = fe,
       K = length(b) + fe_rank(fe, fe_f, NULL, nfe), deviance = r$deviance,
       convergence = r$convergence, iterations = r$convergence$iterations)
}

# Rank of the fixed-effect dummies (for the CR1 factor): the number of
# levels for one effect; for several, the rank of D'WD (exact up to 3000
# levels, else levels - (nfe - 1), i.e. a connected design).
fe_rank <- function(fe, fe_f, w, nfe) {
  if (nfe == 0L) return(0L)
  if (nfe == 1L) return(fe$nlev[1L])
  if (fe$L <= 3000L) pinv_sym(fe_crossprod(fe, w, fe$L))$rank else fe$L - (nfe - 1L)
}

# The working linear model of a logit's last IRLS step: the demeaned design,
# working residuals (y - mu)/v and working weights w v; CR0-CR3 of the logit
# are those of this weighted regression (CR2 with inverse-variance weights).
logit_working <- function(fit) {
  mu <- fit$fitted
  v <- mu * (1 - mu)
  ww <- if (is.null(fit$weights)) 1 else fit$weights
  fit$residuals <- (fit$y - mu) / v
  fit$weights <- ww * v
  fit$Dplus <- NULL
  fit
}

# The conditional logit (Breslow) with the stratum as the first fixed effect;
# the further fixed effects are parameters of the likelihood (they cannot be
# conditioned away) but never a dummy matrix: ffi_clogit() (clogit.c)
# computes the log-likelihood, score, information and cluster score sums from
# per-(stratum, level) aggregates. The fit keeps the covariates, the codes
# and the cluster score sums (G x K), not an n x K matrix.
fit_clogit <- function(y, X, fe_f, w, cl, treat_name, yname, ctrl = did_control()) {
  if (!length(fe_f)) {
    stop_arg("formula", "needs the stratum (LA) as the first fixed effect for family = \"conditional_logit\"",
             "write `y ~ treated + covariates | la + year`.")
  }
  # the strata with a constant outcome were left out (and counted) by did_fit()
  Xr <- X[, colnames(X) != "(Intercept)", drop = FALSE]
  s <- as.integer(fe_f[[1]])
  fe <- fe_f[-1]
  yr <- y
  wr <- if (is.null(w)) rep(1, length(y)) else w
  free <- clogit_free_levels(yr, wr, s, fe)
  kp <- clogit_free_covariates(Xr, wr, s, fe, ctrl)
  if (!kp[match(treat_name, colnames(Xr))]) {
    stop(sprintf(paste0("The treatment `%s` never varies within the strata of `%s` (given the other fixed effects): ",
                        "its effect is not identified.\n",
                        "Fix: check the treatment coding (it must change within a stratum, e.g. 0 before go-live ",
                        "and 1 after), or remove a fixed effect that absorbs it."),
                 treat_name, names(fe_f)[1]), call. = FALSE)
  }
  dropped <- colnames(Xr)[!kp]
  if (length(dropped)) {
    message(sprintf("did_fit(): dropped %d covariate%s collinear with the fixed effects or other covariates: %s.",
                    length(dropped), if (length(dropped) == 1) "" else "s", paste0("`", dropped, "`", collapse = ", ")))
  }
  Xk <- Xr[, kp, drop = FALSE]
  r <- clogit_newton(yr, Xk, wr, s, fe = fe, free = free)
  if (!r$convergence$converged) {
    warn_not_converged("did_fit(): the conditional logit (Newton)", r$convergence,
                       "check for a covariate that (nearly) separates the outcome within strata.")
  }
  cd <- list(y = yr, X = Xk, fe = fe, free = free, cols = names(r$coef),
             w = if (is.null(w)) NULL else wr, s = s, rows = seq_along(yr))
  # cluster sums of the scores (G x K), accumulated in C, not the n x K matrix
  sc <- clogit_scores(cd, r$coef, as.integer(cl), nlevels(cl))
  kz <- names(r$coef)
  bread <- r$bread
  dimnames(bread) <- list(kz, kz)
  sel <- kz %in% colnames(Xk)
  list(coefficients = r$coef[sel], coef_all = r$coef, dropped = dropped, bread_full = bread,
       bread = bread[sel, sel, drop = FALSE], score_sums = sc$S, sel = sel,
       K = length(kz), loglik = r$loglik, vcov_model = bread[sel, sel, drop = FALSE],
       convergence = r$convergence, iterations = r$convergence$iterations, residuals = NULL,
       clogit = cd)
}

# What ffi_clogit() needs besides the parameters: the rows sorted by stratum
# (`perm`, stable, so that each stratum is read sequentially; offsets
# `starts`), the covariates as a double matrix and the global 0-based codes of
# the fixed effects after the stratum (n x m; L levels in all, named as
# dummy_matrix() names their columns). s: stratum codes 1..S.
clogit_problem <- function(y, X, w, s, fe = list()) {
  n <- length(y)
  perm <- order(s)
  nlev <- vapply(fe, nlevels, 1L)
  off <- c(0L, cumsum(nlev))
  codes <- matrix(0L, n, length(fe))
  for (f in seq_along(fe)) codes[, f] <- as.integer(fe[[f]])[perm] - 1L + off[f]
  X <- as.matrix(X)[perm, , drop = FALSE]
  storage.mode(X) <- "double"
  list(y = as.double(y)[perm], X = X, w = if (is.null(w)) rep(1, n) else as.double(w)[perm],
       perm = perm, ord = seq_len(n) - 1L, starts = as.integer(c(0L, cumsum(tabulate(s, max(s))))),
       codes = codes, L = as.integer(sum(nlev)),
       lev_names = unlist(lapply(seq_along(fe), function(f) paste0("fe", f, levels(fe[[f]])))))
}

# The log-likelihood (what = 0), + score and information (1), + cluster score
# sums (2; cluster: codes 1..G) at theta = (beta, gamma) over all L levels.
# offset and cluster are in the rows' original order.
clogit_eval <- function(pr, theta, offset = NULL, what = 1L, cluster = NULL, G = 0L) {
  .Call(ffi_clogit, pr$X, pr$y, pr$w, if (is.null(offset)) NULL else offset[pr$perm],
        pr$ord, pr$starts, pr$codes, pr$L, as.double(theta),
        if (is.null(cluster)) NULL else as.integer(cluster)[pr$perm] - 1L,
        as.integer(G), as.integer(what))
}

# The levels of the fixed effects after the stratum that the conditional
# likelihood identifies: the first level of each effect is the reference (as
# in model.matrix()), and a level whose column of the information at b = 0
# (the weighted within-stratum cross-product of the dummies, L x L) is a
# combination of the earlier ones is dropped too (rank in order).
clogit_free_levels <- function(y, w, s, fe) {
  if (!length(fe)) return(logical(0))
  pr <- clogit_problem(y, matrix(0, length(y), 0L), w, s, fe)
  info <- clogit_eval(pr, rep(0, pr$L))$info
  cand <- rep(TRUE, pr$L)
  cand[c(0L, cumsum(vapply(fe, nlevels, 1L)))[seq_along(fe)] + 1L] <- FALSE
  free <- rep(FALSE, pr$L)
  free[independent_cols(info, which(cand))] <- TRUE
  free
}

# Columns (among `cand`, taken in order) of a positive semi-definite matrix A
# that are not combinations of the columns kept before them: an incremental
# Cholesky factor of A[kept, kept]; column j is kept when A[j, j] > 0 and its
# residual variance exceeds `rel` times A[j, j] (scale-free, so a rare level
# is kept). A level constant within every stratum it appears in has exactly
# 0 on the diagonal (clogit.c sums 1 - P over the stratum's other levels).
independent_cols <- function(A, cand, rel = 1e-9) {
  kept <- integer(0)
  R <- matrix(0, 0, 0)
  for (j in cand) {
    ajj <- A[j, j]
    if (!(ajj > 0)) next
    v <- if (length(kept)) backsolve(R, A[kept, j], transpose = TRUE) else numeric(0)
    res <- ajj - sum(v^2)
    if (res <= rel * ajj) next
    R <- rbind(cbind(R, v), c(rep(0, length(kept)), sqrt(res)))
    kept <- c(kept, j)
  }
  kept
}

# The covariates the conditional logit identifies: a covariate absorbed by the
# strata and the further fixed effects (its weighted within residual below
# 1e-6 of its spread, as for the linear model) or collinear with the other
# covariates after that absorption (the QR's rank, tol 1e-7) is dropped.
clogit_free_covariates <- function(X, w, s, fe, ctrl) {
  if (!ncol(X)) return(logical(0))
  codes0 <- c(list(s - 1L), lapply(fe, function(f) as.integer(f) - 1L))
  nlev <- as.integer(c(max(s), vapply(fe, nlevels, 1L)))
  storage.mode(X) <- "double"
  Xt <- .Call(ffi_demean, X, codes0, nlev, w, ctrl$tol, ctrl$maxit)
  demean_status(Xt, length(codes0), ctrl)
  before <- sqrt(colSums(w * sweep(X, 2, colSums(w * X) / sum(w))^2))
  after <- sqrt(colSums(w * Xt^2))
  use <- !(after <= 1e-6 * pmax(before, 1e-300) | after == 0)
  kp <- use
  if (any(use)) {
    q <- .Call(ffi_wls, Xt[, use, drop = FALSE], rep(0, nrow(X)), w, 1e-7)
    kp[use] <- q$keep
  }
  kp
}

# The conditional logit's design (covariates and the dummies of the fixed
# effects after the stratum, the fitted columns) as a dense matrix, rebuilt
# from what the fit keeps (`fit$clogit`). Never used by the fit (n x levels):
# a reference for the tests on small data.
clogit_design <- function(cd) {
  D <- dummy_matrix(cd$fe)
  Z <- if (is.null(D)) cd$X else cbind(cd$X, D)
  Z[, cd$cols, drop = FALSE]
}

# Newton-Raphson on the Breslow conditional log-likelihood
#   l(b) = sum_s [ sum_{i in s} w_i y_i eta_i - d_s log sum_{j in s} w_j exp(eta_j) ],
# d_s = sum_{i in s} w_i y_i (= clogit(method = "approximate") = coxph Breslow),
# eta = X beta + the effects of the levels `free` of the fixed effects `fe`
# (a list of factors; default: all levels but the first of each) + offset,
# score and information from ffi_clogit(). Step halving when l falls;
# converged when the relative change in l is below tol and the step below
# 1e-8. Returns the coefficients (covariates, then levels named as
# dummy_matrix() names them), the information H and its inverse, l and an
# optim_status() report.
clogit_newton <- function(y, X, w, s, offset = 0, tol = 1e-12, maxit = 100L, start = NULL,
                          fe = list(), free = NULL) {
  pr <- clogit_problem(y, X, w, s, fe)
  k <- ncol(pr$X)
  if (is.null(free)) free <- clogit_default_free(fe)
  idx <- c(seq_len(k), k + which(free))
  off <- if (length(offset) == 1L && offset == 0) NULL else as.double(rep_len(offset, length(y)))
  at <- function(b, what = 1L) {
    theta <- numeric(k + pr$L)
    theta[idx] <- b
    r <- clogit_eval(pr, theta, off, what)
    if (what == 0L) return(list(ll = r$loglik))
    list(ll = r$loglik, grad = r$grad[idx], H = r$info[idx, idx, drop = FALSE])
  }
  b <- start %||% rep(0, length(idx))
  f <- at(b)
  conv <- FALSE
  singular <- FALSE
  halvings <- 0L
  it <- 0L
  for (it in seq_len(maxit)) {
    step <- tryCatch(solve(f$H, f$grad), error = function(e) NULL)
    if (is.null(step)) {
      singular <- TRUE
      break
    }
    h <- 0L
    ll_new <- at(b + step, 0L)$ll
    while (!isTRUE(ll_new >= f$ll - 1e-12 * (abs(f$ll) + 1)) && h < 30L) {
      step <- step / 2
      ll_new <- at(b + step, 0L)$ll
      h <- h + 1L
    }
    halvings <- halvings + h
    b <- b + step
    ll_old <- f$ll
    f <- at(b)
    if (abs(f$ll - ll_old) < tol * (abs(f$ll) + 1) && max(abs(step)) < 1e-8) {
      conv <- TRUE
      break
    }
  }
  names(b) <- c(colnames(pr$X) %||% rep("", k), pr$lev_names[free])
  # a diverging coefficient: beyond 30, or beyond 15 when Newton stopped
  # (iteration limit, or an information matrix singular to working precision)
  far <- abs(b) > 30 | (!conv & abs(b) > 15)
  if (any(far)) {
    stop(sprintf(paste0("Perfect separation in the conditional logit: the coefficient%s of %s diverge%s (%s).\n",
                        "Fix: drop or pool the covariate that predicts the outcome perfectly within strata ",
                        "(e.g. a treated authority with no events after go-live), or use family = \"gaussian\"."),
                 if (sum(far) == 1) "" else "s", paste0("`", names(b)[far], "`", collapse = ", "),
                 if (sum(far) == 1) "s" else "", paste(signif(b[far], 3), collapse = ", ")), call. = FALSE)
  }
  if (singular) {
    stop(sprintf(paste0("The conditional logit's information matrix is singular at Newton iteration %d: ",
                        "the covariates or fixed effects are (nearly) collinear within strata.\n",
                        "Fix: drop a covariate that repeats another or the fixed effects."), it), call. = FALSE)
  }
  status <- optim_status(conv, it, sprintf("%s%s", if (conv) "converged: change in the log-likelihood and step below tolerance" else
    "iteration limit reached", if (halvings) sprintf("; %d step halving%s", halvings, if (halvings == 1) "" else "s") else ""))
  list(coef = b, bread = solve(f$H), H = f$H, loglik = f$ll, convergence = status)
}

# All levels but the first of each fixed effect.
clogit_default_free <- function(fe) {
  unlist(lapply(fe, function(f) seq_len(nlevels(f)) > 1L)) %||% logical(0)
}

# Cluster score sums (G x K; cluster: codes 1..G of the fitted rows) and the
# information (K x K) of the conditional logit `cd` (a fit's `clogit` part)
# at coefficients b (covariates, then the free levels).
clogit_scores <- function(cd, b, cluster, G) {
  pr <- clogit_problem(cd$y, cd$X, cd$w, cd$s, cd$fe)
  k <- ncol(pr$X)
  idx <- c(seq_len(k), k + which(cd$free))
  theta <- numeric(k + pr$L)
  theta[idx] <- b
  r <- clogit_eval(pr, theta, what = 2L, cluster = cluster, G = G)
  list(S = r$scores[, idx, drop = FALSE], H = r$info[idx, idx, drop = FALSE])
}

# ---- methods ----

#' @export
coef.did_fit <- function(object, ...) object$coefficients

#' @export
vcov.did_fit <- function(object, ...) object$vcov

#' @export
nobs.did_fit <- function(object, ...) object$nobs

did_table <- function(object, level = 0.95) {
  b <- object$coefficients
  se <- sqrt(diag(object$vcov))
  df <- object$df
  t <- b / se
  p <- 2 * stats::pt(abs(t), df = df, lower.tail = FALSE)
  q <- stats::qt(1 - (1 - level) / 2, df = df)
  data.frame(term = names(b), estimate = unname(b), std.error = unname(se),
             statistic = unname(t), df = unname(df), p.value = unname(p),
             conf.low = unname(b - q * se), conf.high = unname(b + q * se),
             stringsAsFactors = FALSE)
}

#' @export
confint.did_fit <- function(object, parm, level = 0.95, ...) {
  tab <- did_table(object, level)
  out <- cbind(tab$conf.low, tab$conf.high)
  a <- (1 - level) / 2
  dimnames(out) <- list(tab$term, paste(format(100 * c(a, 1 - a), trim = TRUE), "%"))
  if (!missing(parm)) out <- out[parm, , drop = FALSE]
  out
}

df_label <- function(object) {
  if (object$vcov_type == "CR2") "Satterthwaite (Bell-McCaffrey) df" else
    sprintf("t(G - 1) = t(%d)", object$n_clusters - 1L)
}

#' @export
print.did_fit <- function(x, digits = 4, ...) {
  cat(sprintf("Difference-in-differences fit (%s), %s observations, %d clusters\n",
              x$family, format(x$nobs, big.mark = ","), x$n_clusters))
  if (length(x$fe_names)) cat("Absorbed fixed effects:", paste(x$fe_names, collapse = " + "), "\n")
  cat(sprintf("Variance: %s; reference distribution: %s\n", x$vcov_type, df_label(x)))
  tab <- did_table(x)
  rownames(tab) <- tab$term
  print(tab[, c("estimate", "std.error", "statistic", "df", "p.value")], digits = digits)
  if (length(x$dropped)) cat("Dropped (collinear):", paste(x$dropped, collapse = ", "), "\n")
  disclosure_status(x$nobs)
  invisible(x)
}

#' @export
summary.did_fit <- function(object, level = 0.95, ...) {
  out <- list(table = did_table(object, level), family = object$family,
              family_rule = object$family_rule, vcov_type = object$vcov_type,
              nobs = object$nobs, n_clusters = object$n_clusters,
              exclusions = object$exclusions, dropped = object$dropped,
              fe_names = object$fe_names, level = level, df_label = df_label(object))
  class(out) <- "summary.did_fit"
  out
}

#' @export
print.summary.did_fit <- function(x, digits = 4, ...) {
  cat(sprintf("Difference-in-differences fit (%s)\n", x$family))
  if (!is.null(x$family_rule)) {
    cat(sprintf("  family = \"auto\": baseline rate %.4f among untreated rows -> %s\n",
                x$family_rule$baseline_rate, x$family_rule$chosen))
  }
  cat(sprintf("  %s observations in %d clusters", format(x$nobs, big.mark = ","), x$n_clusters))
  if (nrow(x$exclusions)) {
    cat("; excluded:", paste(sprintf("%s %s", format(x$exclusions$n, big.mark = ","), x$exclusions$reason), collapse = ", "))
  }
  cat("\n")
  if (length(x$fe_names)) cat("  Absorbed fixed effects:", paste(x$fe_names, collapse = " + "), "\n")
  cat(sprintf("  Variance %s, %s, %g%% intervals\n\n", x$vcov_type, x$df_label, 100 * x$level))
  tab <- x$table
  rownames(tab) <- tab$term
  print(tab[, -1], digits = digits)
  if (length(x$dropped)) cat("\nDropped (collinear):", paste(x$dropped, collapse = ", "), "\n")
  disclosure_status(c(x$nobs, x$exclusions$n))
  invisible(x)
}

#' @export
update.did_fit <- function(object, ..., evaluate = TRUE) {
  args <- list(...)
  if (length(args) == 1L && identical(names(args), "vcov")) {
    return(set_inference(object, match_choice(args$vcov, c("CR2", "CR1", "CR3", "CR0"), "vcov")))
  }
  call <- object$call
  for (nm in names(args)) call[[nm]] <- args[[nm]]
  if (evaluate) eval(call, parent.frame()) else call
}

#' @exportS3Method generics::tidy
tidy.did_fit <- function(x, conf.int = TRUE, conf.level = 0.95, ...) {
  tab <- did_table(x, conf.level)
  if (!conf.int) tab$conf.low <- tab$conf.high <- NULL
  tab
}

#' @exportS3Method generics::glance
glance.did_fit <- function(x, ...) {
  data.frame(nobs = x$nobs, n_clusters = x$n_clusters, family = x$family,
             vcov_type = x$vcov_type, n_fixed_effects = length(x$fe_names),
             n_dropped = length(x$dropped), converged = isTRUE(x$convergence$converged),
             iterations = x$convergence$iterations %||% NA_integer_, stringsAsFactors = FALSE)
}

#' Event-time (periods since go-live) interaction dummies
#'
#' Builds the protocol's differential-time-effects regressors ("Differential
#' time effects": \eqn{\sum_m FS_{iat} T_m \beta_m}): for an observation in a
#' treated LA at time `time` with go-live `go_live`, period
#' \eqn{m = \lfloor (time - go\_live)/period \rfloor + 1} (m = 1 is the
#' first period after implementation, the go-live date itself counts as
#' period 1); rows before go-live, or in LAs that never go live (`go_live`
#' NA), get 0 in every dummy. Periods beyond `max_period` are pooled into the
#' last dummy. Put the new columns in place of the single treatment term:
#' `y ~ event_1 + event_2 + ... | la + year`.
#'
#' @param data A data frame.
#' @param go_live Name of the column with the LA's go-live time (numeric
#'   period index or Date; NA for LAs that never implement).
#' @param time Name of the column with the observation's time (same type).
#' @param period Length of one period in the units of `time` (e.g. 1 for a
#'   year index, 365.25 or 91.3125 for Dates). Default 1.
#' @param max_period Optional: pool periods >= `max_period`. Default: the
#'   largest period observed.
#' @param prefix Prefix of the new column names (default `"event_"`).
#' @return `data` with the columns `event_1` ... `event_M` (integer 0/1)
#'   added; attribute `"event_terms"` holds their names.
#' @examples
#' d <- data.frame(la = rep(c("a", "b"), each = 4), year = rep(1:4, 2),
#'                 go = rep(c(2, NA), each = 4))
#' event_time(d, "go", "year")
#' @export
event_time <- function(data, go_live, time, period = 1, max_period = NULL, prefix = "event_") {
  if (!is.data.frame(data)) stop_arg("data", "must be a data frame")
  for (a in list(c("go_live", go_live), c("time", time))) {
    if (!is.character(a[2]) || !a[2] %in% names(data)) {
      stop_arg(a[1], sprintf("must name a column of `data` (got \"%s\")", a[2]),
               "give the column's name as a string.")
    }
  }
  g <- data[[go_live]]
  t <- data[[time]]
  if (inherits(g, "Date") != inherits(t, "Date")) {
    stop_arg("go_live", "and `time` must both be Dates or both be numeric")
  }
  if (!is.numeric(period) || length(period) != 1 || !(period > 0)) stop_arg("period", "must be a positive number")
  bad <- which(is.na(t))
  if (length(bad)) stop_rows("data", time, bad, "have a missing time", "give every row its period.")
  m <- floor(as.numeric(t - g) / period) + 1
  m[is.na(m) | m < 1] <- 0
  M <- max_period %||% max(c(m, 1))
  if (!is.numeric(M) || length(M) != 1 || M < 1) stop_arg("max_period", "must be a number >= 1")
  m <- pmin(m, M)
  nms <- paste0(prefix, seq_len(M))
  for (j in seq_len(M)) data[[nms[j]]] <- as.integer(m == j)
  attr(data, "event_terms") <- nms
  data
}
