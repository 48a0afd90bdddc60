# Analytic power for the two designs (issue #7, analytic part).
#
#   sw_power()     stepped wedge (and any 0/1 cluster x period design): GLS
#                  variance of the treatment effect for cluster-period means
#                  (Hussey & Hughes 2007, extended to a block-exchangeable
#                  correlation, cell-specific variances and no period effects)
#   woertman_de()  the Woertman et al. (2013) design effect
#   cra_mdes()     two-level cluster-randomised MDES (PowerUpR's cra2)
#   did_mdes()     clustered DiD / ANCOVA MDES (Teerenstra et al. 2012) and the
#                  design-effect two-proportion calculation the Family
#                  Safeguarding protocol used
#   icc_anova()    one-way ANOVA ICC as Stata's `loneway`
#
# Everything here is closed-form or a small dense GLS on T x T matrices, so it
# is plain R: no C kernel is needed (src/power.c belongs to the simulator).

# ---------------------------------------------------------------------------
# Argument checks (user-facing, so they name the argument and the fix)

check_number <- function(x, arg, lower = -Inf, upper = Inf,
                         lower_open = FALSE, upper_open = FALSE,
                         what = NULL, fix = NULL) {
  interval <- paste0(if (lower_open) "(" else "[", format(lower), ", ",
                     format(upper), if (upper_open) ")" else "]")
  if (!is.numeric(x) || length(x) != 1L || is.na(x)) {
    stop_arg(arg, sprintf("must be a single number in %s, not %s", interval,
                          describe_value(x)), fix)
  }
  bad <- (if (lower_open) x <= lower else x < lower) ||
    (if (upper_open) x >= upper else x > upper)
  if (bad) {
    stop_arg(arg, sprintf("must be %s in %s, not %s",
                          what %||% "a number", interval, format(x)), fix)
  }
  as.double(x)
}

describe_value <- function(x) {
  if (is.null(x)) return("NULL")
  if (length(x) != 1L) {
    cls <- class(x)[1]
    return(sprintf("%s %s vector of length %d",
                   if (grepl("^[aeiou]", cls)) "an" else "a", cls, length(x)))
  }
  if (is.numeric(x) && is.na(x)) return(if (is.nan(x)) "NaN" else "NA")
  if (is.na(x)) return("NA")
  sprintf("%s `%s`", class(x)[1], format(x))
}

check_whole <- function(x, arg, lower = 1, fix = NULL) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || !is.finite(x) ||
      x != round(x) || abs(x) > .Machine$integer.max) {
    stop_arg(arg, sprintf("must be a single whole number, not %s",
                          describe_value(x)), fix)
  }
  if (x < lower) {
    stop_arg(arg, sprintf("must be at least %d, not %s", lower, format(x)), fix)
  }
  as.integer(x)
}

check_dots <- function(...) {
  dots <- list(...)
  if (length(dots)) {
    nms <- names(dots)
    nms[is.null(nms) | nms == ""] <- "<unnamed>"
    stop_arg("...", sprintf("has %d unused argument%s: %s", length(dots),
                            if (length(dots) == 1L) "" else "s",
                            paste0("`", nms, "`", collapse = ", ")),
             "check the spelling of the argument names.")
  }
}

# One of p0 (binary outcome) or sd (continuous outcome).
check_outcome <- function(p0, sd) {
  if (is.null(p0) == is.null(sd)) {
    stop(sprintf(
      "Give exactly one of `p0` (a binary outcome's baseline rate) or `sd` (a continuous outcome's standard deviation); %s given.\nFix: e.g. `p0 = 0.04` for the proportion of children looked after.",
      if (is.null(p0)) "neither was" else "both were"), call. = FALSE)
  }
  if (!is.null(p0)) {
    p0 <- check_number(p0, "p0", 0, 1, TRUE, TRUE, "a baseline rate",
                       "give the control-condition proportion, e.g. 0.04.")
  } else {
    if (is.numeric(sd) && length(sd) == 1L && is.infinite(sd)) {
      stop_arg("sd", "must be finite, not Inf", "give the outcome's standard deviation (> 0).")
    }
    sd <- check_number(sd, "sd", 0, Inf, TRUE, TRUE, "a standard deviation",
                       "give the outcome's standard deviation (> 0).")
  }
  list(p0 = p0, sd = sd, binary = !is.null(p0))
}

check_icc <- function(icc, arg = "icc") {
  check_number(icc, arg, 0, 1, FALSE, TRUE, "an intracluster correlation",
               "an ICC is a proportion of variance: use a value in [0, 1), e.g. 0.01566.")
}

# ---------------------------------------------------------------------------
# The variance kernel

# Cluster-level and individual-level variance of each cell, from the
# individual outcome variance v of that cell and the ICC on either scale.
#   within: v is the within-cluster (individual) variance, and the ICC defines
#           the cluster variance c = icc * v / (1 - icc)
#   total:  v is the total variance, split as c = icc * v, w = (1 - icc) * v
icc_split <- function(v, icc, icc_scale) {
  if (icc_scale == "within") {
    list(c = icc * v / (1 - icc), w = v)
  } else {
    list(c = icc * v, w = (1 - icc) * v)
  }
}

# GLS variance of the treatment effect from cluster-period means.
#   design: I x T 0/1 matrix; m: I x T positive cluster-period sizes;
#   cmat, wmat: I x T cluster and individual variances of each cell;
#   cluster_autocorr: correlation of a cluster's effects in two periods
#   (1 = Hussey & Hughes' constant cluster effect);
#   period_effects: fixed period effects (TRUE) or a common intercept.
# Each cluster's T x T covariance of cluster-period means is
#   Sigma[j, j] = c_j + w_j / m_j,  Sigma[j, k] = cluster_autocorr * sqrt(c_j c_k),
# and Var = [sum_i Z_i' Sigma_i^-1 Z_i]^-1 for the treatment column of Z.
sw_gls_variance <- function(design, m, cmat, wmat, cluster_autocorr = 1,
                            period_effects = TRUE) {
  n_periods <- ncol(design)
  base <- if (period_effects) diag(n_periods) else matrix(1, n_periods, 1L)
  p <- ncol(base) + 1L
  info <- matrix(0, p, p)
  # identical clusters contribute identical information: do each pattern once
  key <- apply(cbind(design, m, cmat, wmat), 1L, paste, collapse = "\r")
  first <- !duplicated(key)
  count <- tabulate(match(key, key[first]), sum(first))
  rows <- which(first)
  for (k in seq_along(rows)) {
    i <- rows[k]
    sc <- sqrt(cmat[i, ])
    sigma <- cluster_autocorr * outer(sc, sc)
    diag(sigma) <- cmat[i, ] + wmat[i, ] / m[i, ]
    z <- cbind(base, design[i, ])
    info <- info + count[k] * crossprod(z, solve(sigma, z))
  }
  # Var(theta) = 1 / Schur complement of the nuisance block
  a <- info[-p, -p, drop = FALSE]
  b <- info[-p, p]
  schur <- info[p, p] - sum(b * solve(a, b))
  if (!is.finite(schur) || schur <= 1e-12 * info[p, p]) return(Inf)
  1 / schur
}

quantile_sum <- function(alpha, power, dist, df) {
  if (dist == "normal") {
    stats::qnorm(1 - alpha / 2) + stats::qnorm(power)
  } else {
    stats::qt(1 - alpha / 2, df) + stats::qt(power, df)
  }
}

power_from_z <- function(z, alpha, dist, df) {
  if (dist == "normal") {
    stats::pnorm(z - stats::qnorm(1 - alpha / 2))
  } else {
    stats::pt(z - stats::qt(1 - alpha / 2, df), df)
  }
}

check_power_alpha <- function(power, alpha) {
  alpha <- check_number(alpha, "alpha", 0, 1, TRUE, TRUE, "a significance level",
                        "use a two-sided level such as 0.05.")
  if (!is.null(power)) {
    power <- check_number(power, "power", alpha / 2, 1, TRUE, TRUE, "a power",
                          "ask for a power above alpha / 2 and below 1, e.g. 0.8.")
  }
  list(power = power, alpha = alpha)
}

# Root-find the MDES in one direction when the variance depends on the
# effect. f(theta) = theta - M * se(theta); theta in (0, upper).
solve_mdes <- function(se_fun, mult, upper) {
  f <- function(theta) theta - mult * se_fun(theta)
  eps <- upper * 1e-9
  if (!is.finite(f(upper - eps)) || f(upper - eps) <= 0) return(NA_real_)
  stats::uniroot(f, c(eps, upper - eps), tol = 1e-12 * max(upper, 1))$root
}

# ---------------------------------------------------------------------------
# sw_power()

#' Power and minimum detectable effect of a stepped-wedge trial
#'
#' Analytic power for a stepped-wedge (or any cross-sectional cluster x
#' period) design, from the generalised least squares variance of the
#' treatment effect estimated from cluster-period means (Hussey & Hughes
#' 2007). With the defaults it is exactly Hussey & Hughes' closed form; options
#' add a cluster autocorrelation below 1 (a block-exchangeable correlation:
#' within-period ICC `icc`, between-period ICC `icc * cluster_autocorr`),
#' cell-specific binomial variances, and a model without period effects.
#'
#' **Model.** Cluster-period means \eqn{\bar Y_{ij} = \mu + \beta_j + X_{ij}\theta
#' + a_{ij} + \bar e_{ij}} with cluster effects of variance \eqn{\tau^2}
#' correlated `cluster_autocorr` across periods, and individual variance
#' \eqn{\sigma_e^2}. For a binary outcome \eqn{\sigma_e^2 = \bar p(1-\bar p)}.
#' With `icc_scale = "within"` that is the within-cluster variance and
#' \eqn{\tau^2 = \rho\sigma_e^2/(1-\rho)} (Teerenstra's SAS code for Hussey &
#' Hughes; the Stata `steppedwedge` call in the Family Valued protocol has
#' `vartotal(0)`, i.e. \eqn{\bar p(1-\bar p)} is *not* the total variance);
#' with `icc_scale = "total"` it is the total variance, split as
#' \eqn{\tau^2 = \rho\sigma^2} and \eqn{\sigma_e^2 = (1-\rho)\sigma^2}.
#'
#' **Which p-bar.** `pbar = "p0"` evaluates the variance at the baseline rate
#' everywhere; `"mean"` at \eqn{(p_0+p_1)/2} everywhere (so the MDES differs
#' for a decrease and an increase and is found by root-finding); `"arm"` uses
#' \eqn{p_0(1-p_0)} in control cells and \eqn{p_1(1-p_1)} in intervention
#' cells (the marginal-model variance of swdpwr, Li et al. 2018).
#'
#' **The Family Valued figure.** With 5 LAs, 5 steps, one baseline period,
#' 2,600 children per LA-period, \eqn{p_0 = 0.04}, ICC 0.01566, 80% power and a
#' two-sided 5% test, the defaults (`pbar = "p0"`, `icc_scale = "within"`,
#' normal quantiles) give an MDES of 0.00704, the protocol's 0.007 to three
#' significant figures. `icc_scale = "total"` gives 0.00698; `pbar = "mean"`
#' gives 0.0067 (decrease) and 0.0073 (increase).
#'
#' **Power** is \eqn{\Phi(|\theta|/\sqrt{Var} - z_{1-\alpha/2})} (the far tail
#' is ignored, as in Hussey & Hughes); with `dist = "t"` both quantiles come
#' from a t distribution with `df` degrees of freedom (default: the number of
#' clusters, as in Teerenstra's SAS code). The MDES solves
#' \eqn{\theta = (q_{1-\alpha/2} + q_{power})\sqrt{Var(\theta)}}.
#'
#' @param clusters_per_step Number of clusters crossing over at each step.
#' @param steps Number of steps (groups of clusters crossing over).
#' @param m Individuals per cluster-period: one number, or a clusters x
#'   periods matrix matching the design.
#' @param p0 Baseline (control) proportion of a binary outcome, in (0, 1).
#'   Give exactly one of `p0` and `sd`.
#' @param sd Standard deviation of a continuous outcome (on the scale set by
#'   `icc_scale`).
#' @param icc Intracluster correlation, in \[0, 1). For `cluster_autocorr < 1`
#'   the within-period ICC.
#' @param effect Effect(s) for which to compute power: the difference
#'   \eqn{p_1 - p_0} (negative for a decrease) or a difference in means.
#' @param power Power for which to find the MDES. If neither `effect` nor
#'   `power` is given, `power = 0.8`.
#' @param alpha Two-sided significance level.
#' @param design Optional 0/1 matrix, clusters x periods (1 = intervention);
#'   overrides `clusters_per_step`, `steps` and `baseline_periods`. Rows of
#'   zeros are never-treated (comparator) clusters.
#' @param pbar Where the binomial variance is evaluated: `"p0"`, `"mean"` or
#'   `"arm"` (see Details).
#' @param icc_scale `"within"` or `"total"` (see Details).
#' @param dist `"normal"` or `"t"` quantiles.
#' @param baseline_periods Periods before the first step.
#' @param cluster_autocorr Correlation between a cluster's effects in two
#'   different periods, in \[0, 1\]; 1 (default) is Hussey & Hughes.
#' @param period_effects Fixed period effects in the analysis model (default
#'   `TRUE`); `FALSE` assumes no secular trend (swdpwr's default).
#' @param df Degrees of freedom for `dist = "t"`; default the number of
#'   clusters.
#' @param ... Must be empty.
#' @return An object of class `sfp_sw_power`: a list with `mdes` (a data frame
#'   with one row per direction: `direction`, `effect`, `p1`, `cohens_d`) when
#'   `power` was given, or `power` (a data frame: `effect`, `p1`, `se`,
#'   `power`) when `effect` was given, plus `variance` and `se` (at no effect),
#'   `design`, `m` and the settings.
#' @references Hussey MA, Hughes JP (2007) Design and analysis of stepped wedge
#'   cluster randomized trials. Contemp Clin Trials 28:182-191.
#'   Woertman W et al. (2013) Stepped wedge designs could reduce the required
#'   sample size in cluster randomized trials. J Clin Epidemiol 66:752-758.
#'   Li F, Turner EL, Preisser JS (2018) Sample size determination for GEE
#'   analyses of stepped wedge cluster randomized trials. Biometrics
#'   74:1450-1458.
#' @examples
#' # The Family Valued protocol: MDES 0.007
#' sw_power(p0 = 0.04, icc = 0.01566)
#' # Power to detect a 1 percentage point decrease
#' sw_power(p0 = 0.04, icc = 0.01566, effect = -0.01)$power
#' # Any design matrix: two clusters per step, three steps, continuous outcome
#' d <- sw_design(2, 3)
#' sw_power(design = d, m = 20, sd = 1, icc = 0.05, effect = 0.3)
#' @export
sw_power <- function(clusters_per_step = 1, steps = 5, m = 2600, p0 = NULL,
                     sd = NULL, icc, effect = NULL, power = NULL, alpha = 0.05,
                     design = NULL, pbar = c("p0", "mean", "arm"),
                     icc_scale = c("within", "total"), dist = c("normal", "t"),
                     baseline_periods = 1, cluster_autocorr = 1,
                     period_effects = TRUE, df = NULL, ...) {
  check_dots(...)
  pbar <- match.arg(pbar)
  icc_scale <- match.arg(icc_scale)
  dist <- match.arg(dist)
  outcome <- check_outcome(p0, sd)
  if (missing(icc)) stop_arg("icc", "is missing", "give the intracluster correlation, e.g. `icc = 0.01566`.")
  icc <- check_icc(icc)
  cluster_autocorr <- check_number(cluster_autocorr, "cluster_autocorr", 0, 1,
                                   what = "a correlation",
                                   fix = "use 1 for a cluster effect constant over time (Hussey & Hughes).")
  if (!is.logical(period_effects) || length(period_effects) != 1L || is.na(period_effects)) {
    stop_arg("period_effects", "must be TRUE or FALSE")
  }
  pa <- check_power_alpha(power, alpha)
  alpha <- pa$alpha
  power <- pa$power
  if (!is.null(effect) && !is.null(power)) {
    stop_arg("effect", "and `power` were both given",
             "give `effect` to compute power, or `power` to compute the MDES, not both.")
  }
  if (is.null(effect) && is.null(power)) power <- 0.8

  design <- if (is.null(design)) {
    clusters_per_step <- check_whole(clusters_per_step, "clusters_per_step", 1L,
                                     "a trial needs at least one cluster per step.")
    steps <- check_whole(steps, "steps", 1L, "a stepped wedge needs at least one step.")
    baseline_periods <- check_whole(baseline_periods, "baseline_periods", 0L)
    sw_design(clusters_per_step, steps, baseline_periods)
  } else {
    given <- c(clusters_per_step = !missing(clusters_per_step), steps = !missing(steps),
               baseline_periods = !missing(baseline_periods))
    if (any(given)) {
      stop_arg("design", sprintf("was given together with %s, which it replaces",
                                 paste0("`", names(given)[given], "`", collapse = " and ")),
               "give either a design matrix or the standard design's dimensions, not both.")
    }
    check_design(design)
  }
  m <- check_sizes(m, design)
  n_clusters <- nrow(design)
  if (dist == "t") {
    df <- if (is.null(df)) n_clusters else
      check_number(df, "df", 0, Inf, TRUE, what = "degrees of freedom")
  } else if (!is.null(df)) {
    stop_arg("df", "is only used with `dist = \"t\"`", "drop `df` or set `dist = \"t\"`.")
  }

  # variance of theta-hat for a given effect (p1 = p0 + effect)
  var_at <- function(eff) {
    if (outcome$binary) {
      p1 <- outcome$p0 + eff
      v <- switch(pbar,
        p0 = matrix(outcome$p0 * (1 - outcome$p0), n_clusters, ncol(design)),
        mean = {
          pb <- (outcome$p0 + p1) / 2
          matrix(pb * (1 - pb), n_clusters, ncol(design))
        },
        arm = ifelse(design == 1, p1 * (1 - p1), outcome$p0 * (1 - outcome$p0))
      )
    } else {
      v <- matrix(outcome$sd^2, n_clusters, ncol(design))
    }
    parts <- icc_split(v, icc, icc_scale)
    sw_gls_variance(design, m, parts$c, parts$w, cluster_autocorr,
                    period_effects)
  }
  var0 <- var_at(0)
  if (!is.finite(var0)) {
    stop_arg("design", sprintf(
      "does not identify the treatment effect (%s)",
      if (all(design == design[1L])) "every cell has the same condition" else
        "treatment is confounded with the period effects"),
      "include both conditions within periods, or set `period_effects = FALSE`.")
  }
  settings <- list(icc = icc, alpha = alpha, pbar = pbar, icc_scale = icc_scale,
                   dist = dist, df = df, cluster_autocorr = cluster_autocorr,
                   period_effects = period_effects, p0 = outcome$p0,
                   sd = outcome$sd, binary = outcome$binary)
  scale_d <- if (outcome$binary) sqrt(outcome$p0 * (1 - outcome$p0)) else outcome$sd
  out <- list(variance = var0, se = sqrt(var0), design = design, m = m,
              settings = settings, mdes = NULL, power = NULL)

  if (!is.null(power)) {
    mult <- quantile_sum(alpha, power, dist, df)
    const <- !outcome$binary || pbar == "p0"
    if (const) {
      d <- mult * sqrt(var0)
      dec <- d
      inc <- d
      if (outcome$binary) {
        if (outcome$p0 - d <= 0) dec <- NA_real_
        if (outcome$p0 + d >= 1) inc <- NA_real_
      }
    } else {
      se_fun_dec <- function(th) sqrt(var_at(-th))
      se_fun_inc <- function(th) sqrt(var_at(th))
      dec <- solve_mdes(se_fun_dec, mult, outcome$p0)
      inc <- solve_mdes(se_fun_inc, mult, 1 - outcome$p0)
    }
    if (is.na(dec) && is.na(inc)) {
      stop_arg("power", sprintf(
        "of %s cannot be reached with this design: even p1 = 0 or p1 = 1 is not detectable",
        format(power)),
        "add clusters or periods, or ask for a lower power.")
    }
    mdes <- data.frame(direction = c("decrease", "increase"),
                       effect = c(-dec, inc), stringsAsFactors = FALSE)
    mdes$p1 <- if (outcome$binary) outcome$p0 + mdes$effect else NA_real_
    mdes$cohens_d <- mdes$effect / scale_d
    if (anyNA(mdes$effect)) {
      warning(sprintf(
        "`power` of %s cannot be reached for %s with this design (p1 would leave (0, 1)): that MDES is NA.",
        format(power), if (is.na(dec)) "a decrease" else "an increase"), call. = FALSE)
    }
    if (!outcome$binary) mdes$p1 <- NULL
    out$mdes <- mdes
    settings$power <- power
    out$settings <- settings
  } else {
    if (!is.numeric(effect) || !length(effect) || anyNA(effect) || any(!is.finite(effect))) {
      stop_arg("effect", "must be finite numbers (the difference p1 - p0, or in means)",
               "e.g. `effect = -0.01` for a one percentage point decrease.")
    }
    if (outcome$binary) {
      p1 <- outcome$p0 + effect
      bad <- which(p1 <= 0 | p1 >= 1)
      if (length(bad)) {
        stop_arg("effect", sprintf(
          "gives p1 = p0 + effect outside (0, 1) for %d value%s (first: %s)",
          length(bad), if (length(bad) == 1L) "" else "s", format(effect[bad[1L]])),
          "an effect must keep the intervention proportion strictly between 0 and 1.")
      }
    }
    vars <- vapply(as.double(effect), var_at, numeric(1))
    se <- sqrt(vars)
    pw <- power_from_z(abs(effect) / se, alpha, dist, df)
    res <- data.frame(effect = as.double(effect))
    if (outcome$binary) res$p1 <- outcome$p0 + res$effect
    res$se <- se
    res$power <- pw
    out$power <- res
  }
  structure(out, class = "sfp_sw_power")
}

check_design <- function(design) {
  if (is.data.frame(design)) design <- as.matrix(design)
  if (!is.matrix(design) || !(is.numeric(design) || is.logical(design))) {
    stop_arg("design", "must be a numeric 0/1 matrix, clusters x periods",
             "e.g. `sw_design(1, 5)` for five steps of one cluster.")
  }
  if (nrow(design) == 0L || ncol(design) == 0L) {
    stop_arg("design", sprintf("has %d clusters and %d periods", nrow(design), ncol(design)),
             "a design needs at least one cluster and one period.")
  }
  bad <- which(is.na(design) | !(design %in% c(0, 1)))
  if (length(bad)) {
    rc <- arrayInd(bad[1L], dim(design))
    stop_arg("design", sprintf(
      "must contain only 0 (control) and 1 (intervention); %d cell%s %s not (first: cluster %d, period %d = %s)",
      length(bad), if (length(bad) == 1L) "" else "s",
      if (length(bad) == 1L) "is" else "are", rc[1], rc[2],
      format(design[bad[1L]])),
      "code each cluster-period as 0 or 1.")
  }
  storage.mode(design) <- "double"
  dimnames(design) <- NULL
  design
}

check_sizes <- function(m, design) {
  if (!is.numeric(m) || !length(m)) {
    stop_arg("m", "must be a positive number of individuals per cluster-period")
  }
  if (length(m) == 1L) {
    m <- matrix(m, nrow(design), ncol(design))
  } else if (!is.matrix(m) || !identical(dim(m), dim(design))) {
    stop_arg("m", sprintf("must be one number or a %d x %d matrix (clusters x periods)",
                          nrow(design), ncol(design)),
             "give one size per cluster-period, matching `design`.")
  }
  bad <- which(is.na(m) | !is.finite(m) | m <= 0)
  if (length(bad)) {
    stop_arg("m", sprintf("has %d cell%s that %s not a positive finite size (first: %s)",
                          length(bad), if (length(bad) == 1L) "" else "s",
                          if (length(bad) == 1L) "is" else "are", format(m[bad[1L]])),
             "every cluster-period needs at least some individuals.")
  }
  storage.mode(m) <- "double"
  dimnames(m) <- NULL
  m
}

#' @export
print.sfp_sw_power <- function(x, digits = 4, ...) {
  s <- x$settings
  cat(sprintf("Stepped-wedge power (GLS on cluster-period means, %s)\n",
              if (s$cluster_autocorr == 1 && s$period_effects &&
                  (!s$binary || s$pbar != "arm")) "Hussey & Hughes" else
                "block-exchangeable correlation"))
  cat(sprintf("  %d clusters x %d periods, %s individuals per cluster-period\n",
              nrow(x$design), ncol(x$design),
              if (length(unique(as.vector(x$m))) == 1L)
                format(x$m[1L], big.mark = ",") else "varying"))
  if (s$binary) {
    cat(sprintf("  binary outcome: p0 = %s, variance at %s\n", format(s$p0),
                switch(s$pbar, p0 = "p0", mean = "(p0 + p1) / 2",
                       arm = "each arm's own rate")))
  } else {
    cat(sprintf("  continuous outcome: sd = %s\n", format(s$sd)))
  }
  cat(sprintf("  ICC = %s (%s scale), cluster autocorrelation = %s, %s\n",
              format(s$icc), s$icc_scale, format(s$cluster_autocorr),
              if (s$period_effects) "period effects" else "no period effects"))
  cat(sprintf("  two-sided alpha = %s, %s quantiles%s\n", format(s$alpha),
              s$dist, if (s$dist == "t") sprintf(" (df = %s)", format(s$df)) else ""))
  cat(sprintf("  SE of the effect under no effect: %s\n",
              format(x$se, digits = digits)))
  if (!is.null(x$mdes)) {
    cat(sprintf("Minimum detectable effect at %s%% power:\n", format(100 * s$power)))
    print(x$mdes, digits = digits, row.names = FALSE)
  } else {
    cat("Power:\n")
    print(x$power, digits = digits, row.names = FALSE)
  }
  invisible(x)
}

#' Standard stepped-wedge design matrix
#'
#' @param clusters_per_step Clusters crossing over at each step.
#' @param steps Number of steps.
#' @param baseline_periods Periods before the first step.
#' @return A 0/1 matrix, clusters x periods (`baseline_periods + steps`
#'   columns), 1 = intervention.
#' @examples
#' sw_design(1, 5)
#' @export
sw_design <- function(clusters_per_step, steps, baseline_periods = 1) {
  clusters_per_step <- check_whole(clusters_per_step, "clusters_per_step", 1L,
                                   "a trial needs at least one cluster per step.")
  steps <- check_whole(steps, "steps", 1L, "a stepped wedge needs at least one step.")
  baseline_periods <- check_whole(baseline_periods, "baseline_periods", 0L)
  n_periods <- baseline_periods + steps
  one <- outer(seq_len(steps), seq_len(n_periods),
               function(s, j) as.numeric(j >= baseline_periods + s))
  one[rep(seq_len(steps), each = clusters_per_step), , drop = FALSE]
}

#' Woertman design effect for a stepped-wedge trial
#'
#' The design effect of Woertman et al. (2013) relative to an individually
#' randomised trial:
#' \deqn{DE = \frac{1 + \rho(ktn + bn - 1)}{1 + \rho(\frac12 ktn + bn - 1)}
#'   \cdot \frac{3(1-\rho)}{2t(k - 1/k)}}
#' with `k` steps, `b` baseline periods, `t` periods per step, `n` individuals
#' per cluster-period and the ICC on the total-variance scale. With `I`
#' clusters the Hussey & Hughes variance equals \eqn{DE \cdot 4\sigma^2/(I n)}
#' exactly (for `b = 1`; `vignette("methods")`, section 4), so `I * n = DE * N_ind` where
#' `N_ind` is the total size of an individually randomised trial.
#'
#' @param steps Number of steps `k`.
#' @param m Individuals per cluster-period `n`.
#' @param icc Intracluster correlation (total-variance scale), in \[0, 1).
#' @param baseline_periods Baseline periods `b`.
#' @param periods_per_step Periods per step `t`.
#' @return The design effect (a number).
#' @references Woertman W, de Hoop E, Moerbeek M, Zuidema SU, Gerritsen DL,
#'   Teerenstra S (2013) J Clin Epidemiol 66:752-758.
#' @examples
#' woertman_de(steps = 5, m = 2600, icc = 0.01566)
#' @export
woertman_de <- function(steps, m, icc, baseline_periods = 1, periods_per_step = 1) {
  k <- check_whole(steps, "steps", 1L, "a stepped wedge needs at least one step.")
  if (k < 2L) stop_arg("steps", "must be at least 2 for the Woertman formula (k - 1/k = 0 at k = 1)")
  n <- check_number(m, "m", 0, Inf, TRUE, TRUE, "a cluster-period size")
  rho <- check_icc(icc)
  b <- check_whole(baseline_periods, "baseline_periods", 1L)
  t <- check_whole(periods_per_step, "periods_per_step", 1L)
  (1 + rho * (k * t * n + b * n - 1)) / (1 + rho * (0.5 * k * t * n + b * n - 1)) *
    3 * (1 - rho) / (2 * t * (k - 1 / k))
}

#' MDES of a two-level cluster-randomised trial
#'
#' The minimum detectable effect size, in standard deviation units, of a
#' parallel two-arm trial randomising `J` clusters of `n` individuals (the
#' `cra2` design of Dong & Maynard's PowerUp!):
#' \deqn{MDES = M_{df}\sqrt{\frac{\rho(1-R_2^2)}{P(1-P)J} +
#'   \frac{(1-\rho)(1-R_1^2)}{P(1-P)Jn}}}
#' with \eqn{M_{df} = t_{1-\alpha/2, df} + t_{power, df}}. The same variance
#' comes out of [sw_power()] for a one-period design with `P * J` treated
#' clusters and `icc_scale = "total"`.
#'
#' @param icc Intracluster correlation, in \[0, 1).
#' @param n Individuals per cluster.
#' @param J Number of clusters (at least 3).
#' @param P Proportion of clusters treated.
#' @param alpha Two-sided significance level.
#' @param power Power.
#' @param r2_cluster,r2_individual Proportions of cluster- and individual-level
#'   variance explained by covariates.
#' @param df Degrees of freedom; default `J - 2` (no cluster-level covariate).
#' @return The MDES (a number, in standard deviations).
#' @references Dong N, Maynard R (2013) PowerUp!: a tool for calculating
#'   minimum detectable effect sizes and minimum required sample sizes for
#'   experimental and quasi-experimental design studies. J Res Educ Eff
#'   6:24-67.
#' @examples
#' cra_mdes(icc = 0.17, n = 15, J = 20)   # 0.629, as PowerUpR
#' @export
cra_mdes <- function(icc, n, J, P = 0.5, alpha = 0.05, power = 0.8,
                     r2_cluster = 0, r2_individual = 0, df = J - 2) {
  rho <- check_icc(icc)
  n <- check_number(n, "n", 0, Inf, TRUE, TRUE, "a cluster size")
  J <- check_whole(J, "J", 3L, "a cluster-randomised trial needs clusters in both arms and J - 2 > 0 degrees of freedom.")
  P <- check_number(P, "P", 0, 1, TRUE, TRUE, "a proportion")
  pa <- check_power_alpha(power, alpha)
  r2_cluster <- check_number(r2_cluster, "r2_cluster", 0, 1, upper_open = TRUE)
  r2_individual <- check_number(r2_individual, "r2_individual", 0, 1, upper_open = TRUE)
  df <- check_number(df, "df", 0, Inf, TRUE, what = "degrees of freedom")
  mult <- quantile_sum(pa$alpha, pa$power, "t", df)
  mult * sqrt(rho * (1 - r2_cluster) / (P * (1 - P) * J) +
                (1 - rho) * (1 - r2_individual) / (P * (1 - P) * J * n))
}

# ---------------------------------------------------------------------------
# did_mdes()

#' Minimum detectable effect of a clustered difference-in-differences design
#'
#' Three calculations for `clusters` treated and `comparators` comparison
#' clusters (local authorities) observed for `pre_periods` periods before and
#' `post_periods` after implementation, with `m` (new) individuals per
#' cluster-period.
#'
#' * `method = "did"`: the difference in mean change. Cluster-period means have
#'   variance \eqn{V = \sigma^2[1 + (m-1)\rho]/m} and correlation
#'   \eqn{r = [m\rho\rho_c + (1-\rho)\rho_s]/[1 + (m-1)\rho]} between periods,
#'   with \eqn{\rho_c} = `cluster_autocorr` (the correlation of an LA's effect
#'   across periods) and \eqn{\rho_s} = `subject_autocorr` (0 for new children
#'   each period). Then
#'   \eqn{Var = (1/G_1 + 1/G_0)(1/P_{pre} + 1/P_{post})(1 - r)V}; for one
#'   period each this is the \eqn{2(1-r)} design effect of the change-score
#'   analysis (Teerenstra et al. 2012; clusterPower's `crtpwr.2meanD()`,
#'   whose documented example, 4.683358 clusters per arm, it reproduces).
#' * `method = "ancova"`: the post-period mean adjusted for the pre-period mean
#'   (Teerenstra et al. 2012; the formula in current clusterPower
#'   `cpa.did.normal()` code):
#'   \eqn{(1 - r^2)} in place of \eqn{2(1 - r)} for one period each; in
#'   general \eqn{Var(Q) - Cov(Q,P)^2/Var(P)} per arm, with the slope taken
#'   from the comparison arm.
#' * `method = "independent"`: every LA-period is treated as an independent
#'   cluster, and the two arms are compared as two proportions (or means) with
#'   the design effect \eqn{1 + (m-1)\rho}:
#'   \eqn{Var = [1 + (m-1)\rho][v_1/(k_1 m) + v_0/(k_0 m)]}, with
#'   \eqn{k = } clusters x (`pre_periods` + `post_periods`). This is the
#'   calculation that reproduces the Family Safeguarding protocol's table:
#'   `did_mdes(method = "independent", clusters = 5, m = 3400, icc = 0.00722,
#'   p0 = 0.06, pre_periods = 1, post_periods = 2)` gives a decrease of 0.0194
#'   (1.9 percentage points) and Cohen's d = 0.0194/sqrt(0.06 x 0.94) = 0.08.
#'   It ignores the LA effect's persistence and the fact that only five LAs
#'   are treated; see `vignette("power")`.
#'
#' For a binary outcome the individual variance is \eqn{p(1-p)} at the rate
#' chosen by `pbar` ("arm": \eqn{p_1} in treated post-period cells and
#' \eqn{p_0} elsewhere; "p0"; "mean": \eqn{(p_0+p_1)/2}); the ICC is on the
#' total-variance scale. The MDES solves \eqn{\delta = M\sqrt{Var(\delta)}}
#' with \eqn{M = q_{1-\alpha/2} + q_{power}}, normal or t with `df` degrees of
#' freedom (default \eqn{G_1 + G_0 - 2} for "did"/"ancova", as clusterPower,
#' and \eqn{k_1 + k_0 - 2} for "independent").
#'
#' @param clusters Treated clusters. Non-integer values are accepted so that
#'   sample sizes can be found by inversion.
#' @param m Individuals per cluster-period.
#' @param icc Intracluster correlation (total-variance scale), in \[0, 1).
#' @param p0 Baseline proportion of a binary outcome, in (0, 1).
#' @param sd Standard deviation of a continuous outcome. Give exactly one of
#'   `p0` and `sd`.
#' @param pre_periods,post_periods Periods before and after implementation.
#' @param method `"did"`, `"ancova"` or `"independent"` (see Details).
#' @param cluster_autocorr Correlation of a cluster's effect between periods,
#'   in \[0, 1\]. 0 is conservative.
#' @param subject_autocorr Correlation of an individual's outcomes between
#'   periods (cohort designs); 0 for cross-sections.
#' @param comparators Comparison clusters; default `clusters`.
#' @param pbar For a binary outcome, where \eqn{p(1-p)} is evaluated: `"arm"`,
#'   `"p0"` or `"mean"`.
#' @param power Power.
#' @param alpha Two-sided significance level.
#' @param dist `"normal"` or `"t"` quantiles.
#' @param df Degrees of freedom for `dist = "t"`.
#' @param ... Must be empty.
#' @return An object of class `sfp_did_mdes`: a list with `mdes` (data frame:
#'   `direction`, `effect`, `p1`, `cohens_d`), `se` (at no effect), `df` and
#'   the settings.
#' @references Teerenstra S, Eldridge S, Graff M, de Hoop E, Borm GF (2012) A
#'   simple sample size formula for analysis of covariance in cluster
#'   randomized trials. Stat Med 31:2169-2178.
#' @examples
#' # The Family Safeguarding protocol's table (LA-years as independent clusters)
#' did_mdes(method = "independent", clusters = 5, m = 3400, icc = 0.00722,
#'          p0 = 0.06, pre_periods = 1, post_periods = 2)
#' # The same trial as a five-LA DiD with a persistent LA effect
#' did_mdes(clusters = 5, m = 3400, icc = 0.00722, p0 = 0.06, pre_periods = 1,
#'          post_periods = 2, cluster_autocorr = 0.8, dist = "t")
#' @export
did_mdes <- function(clusters = 5, m = 3400, icc, p0 = NULL, sd = NULL,
                     pre_periods = 1, post_periods = 1,
                     method = c("did", "ancova", "independent"),
                     cluster_autocorr = 0, subject_autocorr = 0,
                     comparators = clusters, pbar = c("arm", "p0", "mean"),
                     power = 0.8, alpha = 0.05, dist = c("normal", "t"),
                     df = NULL, ...) {
  check_dots(...)
  method <- match.arg(method)
  pbar <- match.arg(pbar)
  dist <- match.arg(dist)
  outcome <- check_outcome(p0, sd)
  if (missing(icc)) stop_arg("icc", "is missing", "give the intracluster correlation, e.g. `icc = 0.00722`.")
  icc <- check_icc(icc)
  g1 <- check_number(clusters, "clusters", 0, Inf, TRUE, TRUE, "a number of clusters",
                     "a DiD needs at least one treated cluster.")
  g0 <- check_number(comparators, "comparators", 0, Inf, TRUE, TRUE, "a number of clusters",
                     "a DiD needs at least one comparison cluster.")
  m <- check_number(m, "m", 0, Inf, TRUE, TRUE, "a cluster-period size",
                    "give the number of individuals per cluster per period.")
  n_pre <- check_whole(pre_periods, "pre_periods", 1L)
  n_post <- check_whole(post_periods, "post_periods", 1L)
  rho_c <- check_number(cluster_autocorr, "cluster_autocorr", 0, 1, what = "a correlation")
  rho_s <- check_number(subject_autocorr, "subject_autocorr", 0, 1, what = "a correlation")
  pa <- check_power_alpha(power, alpha)
  n_periods <- n_pre + n_post
  if (dist == "t") {
    df <- if (!is.null(df)) check_number(df, "df", 0, Inf, TRUE, what = "degrees of freedom") else
      if (method == "independent") (g1 + g0) * n_periods - 2 else g1 + g0 - 2
    if (df <= 0) stop_arg("df", sprintf("would be %s: too few clusters for t quantiles", format(df)),
                          "add clusters or use `dist = \"normal\"`.")
  } else if (!is.null(df)) {
    stop_arg("df", "is only used with `dist = \"t\"`", "drop `df` or set `dist = \"t\"`.")
  }

  var_at <- function(eff) {
    if (outcome$binary) {
      p0 <- outcome$p0
      p1 <- p0 + eff
      pb <- (p0 + p1) / 2
      v_ctrl <- switch(pbar, arm = p0 * (1 - p0), p0 = p0 * (1 - p0), mean = pb * (1 - pb))
      v_trt <- switch(pbar, arm = p1 * (1 - p1), p0 = p0 * (1 - p0), mean = pb * (1 - pb))
    } else {
      v_ctrl <- v_trt <- outcome$sd^2
    }
    if (method == "independent") {
      de <- 1 + (m - 1) * icc
      return(de * (v_trt / (g1 * n_periods * m) + v_ctrl / (g0 * n_periods * m)))
    }
    # per-arm covariance of cluster-period means (pre periods first)
    arm_cov <- function(v) {
      c_ <- icc * v
      w_ <- (1 - icc) * v
      s <- rho_c * outer(sqrt(c_), sqrt(c_)) + rho_s * outer(sqrt(w_), sqrt(w_)) / m
      diag(s) <- c_ + w_ / m
      s
    }
    s0 <- arm_cov(rep(v_ctrl, n_periods))
    s1 <- arm_cov(c(rep(v_ctrl, n_pre), rep(v_trt, n_post)))
    pre <- c(rep(1 / n_pre, n_pre), rep(0, n_post))
    post <- c(rep(0, n_pre), rep(1 / n_post, n_post))
    if (method == "did") {
      a <- post - pre
      return(sum(a * (s1 %*% a)) / g1 + sum(a * (s0 %*% a)) / g0)
    }
    beta <- sum(post * (s0 %*% pre)) / sum(pre * (s0 %*% pre))
    a <- post - beta * pre
    sum(a * (s1 %*% a)) / g1 + sum(a * (s0 %*% a)) / g0
  }

  var0 <- var_at(0)
  mult <- quantile_sum(pa$alpha, pa$power, dist, df)
  if (!outcome$binary || pbar == "p0") {
    d <- mult * sqrt(var0)
    dec <- inc <- d
    if (outcome$binary) {
      if (outcome$p0 - d <= 0) dec <- NA_real_
      if (outcome$p0 + d >= 1) inc <- NA_real_
    }
  } else {
    dec <- solve_mdes(function(th) sqrt(var_at(-th)), mult, outcome$p0)
    inc <- solve_mdes(function(th) sqrt(var_at(th)), mult, 1 - outcome$p0)
  }
  if (is.na(dec) && is.na(inc)) {
    stop_arg("power", sprintf(
      "of %s cannot be reached with this design: even p1 = 0 or p1 = 1 is not detectable",
      format(pa$power)), "add clusters or periods, or ask for a lower power.")
  }
  if (is.na(dec) || is.na(inc)) {
    warning(sprintf("`power` of %s cannot be reached for %s with this design (p1 would leave (0, 1)): that MDES is NA.",
                    format(pa$power), if (is.na(dec)) "a decrease" else "an increase"),
            call. = FALSE)
  }
  scale_d <- if (outcome$binary) sqrt(outcome$p0 * (1 - outcome$p0)) else outcome$sd
  mdes <- data.frame(direction = c("decrease", "increase"), effect = c(-dec, inc),
                     stringsAsFactors = FALSE)
  if (outcome$binary) mdes$p1 <- outcome$p0 + mdes$effect
  mdes$cohens_d <- mdes$effect / scale_d
  r <- (m * icc * rho_c + (1 - icc) * rho_s) / (1 + (m - 1) * icc)
  structure(list(
    mdes = mdes, se = sqrt(var0), df = df, design_effect = 1 + (m - 1) * icc,
    cluster_period_corr = r,
    settings = list(method = method, clusters = g1, comparators = g0, m = m,
                    icc = icc, p0 = outcome$p0, sd = outcome$sd,
                    binary = outcome$binary, pre_periods = n_pre,
                    post_periods = n_post, cluster_autocorr = rho_c,
                    subject_autocorr = rho_s, pbar = pbar, power = pa$power,
                    alpha = pa$alpha, dist = dist)),
    class = "sfp_did_mdes")
}

#' @export
print.sfp_did_mdes <- function(x, digits = 4, ...) {
  s <- x$settings
  cat(sprintf("Clustered DiD minimum detectable effect (%s)\n", switch(s$method,
    did = "difference in mean change", ancova = "ANCOVA on the baseline mean",
    independent = "cluster-periods as independent clusters")))
  cat(sprintf("  %s treated and %s comparison clusters, %d pre + %d post periods, %s per cluster-period\n",
              format(s$clusters), format(s$comparators), s$pre_periods,
              s$post_periods, format(s$m, big.mark = ",")))
  cat(sprintf("  ICC = %s (design effect %s)", format(s$icc),
              format(x$design_effect, digits = digits)))
  if (s$method != "independent") {
    cat(sprintf(", cluster autocorrelation = %s, cluster-period mean correlation r = %s",
                format(s$cluster_autocorr), format(x$cluster_period_corr, digits = digits)))
  }
  cat("\n")
  if (s$binary) {
    cat(sprintf("  binary outcome: p0 = %s, variance at %s\n", format(s$p0),
                switch(s$pbar, p0 = "p0", mean = "(p0 + p1) / 2",
                       arm = "each cell's own rate")))
  }
  cat(sprintf("  %s%% power, two-sided alpha = %s, %s quantiles%s\n",
              format(100 * s$power), format(s$alpha), s$dist,
              if (s$dist == "t") sprintf(" (df = %s)", format(x$df)) else ""))
  print(x$mdes, digits = digits, row.names = FALSE)
  invisible(x)
}

# ---------------------------------------------------------------------------
# icc_anova()

#' One-way ANOVA intracluster correlation (Stata `loneway`)
#'
#' \deqn{\hat\rho = \frac{MSB - MSW}{MSB + (n_0 - 1)MSW}, \quad
#'   n_0 = \frac{N - \sum_g n_g^2 / N}{G - 1}}
#' as Stata's `loneway`, which the Family Valued protocol used to estimate its
#' ICC. The standard error is loneway's asymptotic one (Smith 1956, for
#' unbalanced clusters) and the confidence interval is
#' \eqn{\hat\rho \pm z_{1-\alpha/2} SE}. A negative estimate (MSB < MSW) is set
#' to 0 when `truncate = TRUE`; the unrestricted value is kept in
#' `icc_anova_raw`. (The loneway manual text retrieved while writing this did
#' not settle whether loneway itself truncates; use `truncate = FALSE` for the
#' raw ANOVA estimate.)
#'
#' Rows with a missing outcome or cluster are dropped with a warning that
#' counts them; infinite outcomes are an error.
#'
#' @param y Numeric outcome (0/1 for a binary outcome), or a formula
#'   `outcome ~ cluster` with `data`.
#' @param cluster Cluster identifiers (any atomic vector), or for the formula
#'   interface the data frame.
#' @param data Data frame for the formula interface (alternatively passed as
#'   `cluster`).
#' @param truncate Set a negative estimate to 0.
#' @param level Confidence level of the interval.
#' @return An object of class `sfp_icc`: a list with `icc`, `icc_anova_raw`,
#'   `se`, `conf.low`, `conf.high`, `msb`, `msw`, `n0`, `n_clusters`, `n`,
#'   `n_dropped`.
#' @references Smith CAB (1956) On the estimation of intraclass correlation.
#'   Ann Hum Genet 21:363-373.
#' @examples
#' set.seed(1)
#' g <- rep(1:20, times = sample(30:60, 20, replace = TRUE))
#' y <- rbinom(length(g), 1, plogis(-3 + rnorm(20, sd = 0.4)[g]))
#' icc_anova(y, g)
#' icc_anova(y ~ g, data.frame(y = y, g = g))
#' @export
icc_anova <- function(y, cluster = NULL, data = NULL, truncate = TRUE, level = 0.95) {
  if (inherits(y, "formula")) {
    if (is.null(data) && is.data.frame(cluster)) data <- cluster
    if (length(y) != 3L || length(all.vars(y[[3L]])) != 1L || length(all.vars(y[[2L]])) != 1L) {
      stop_arg("y", "must be a formula `outcome ~ cluster` with one variable on each side")
    }
    env <- environment(y)
    y_name <- deparse(y[[2L]])
    c_name <- deparse(y[[3L]])
    cluster <- eval(y[[3L]], data, env)
    y <- eval(y[[2L]], data, env)
  } else {
    y_name <- "y"
    c_name <- "cluster"
  }
  if (!is.numeric(y) && !is.logical(y)) {
    stop_arg(y_name, sprintf("must be numeric or logical, not %s", class(y)[1]),
             "give a numeric or 0/1 outcome.")
  }
  if (is.null(cluster) || !is.atomic(cluster) || length(cluster) != length(y)) {
    stop_arg(c_name, sprintf("must be an atomic vector as long as `%s` (%d), not %s",
                             y_name, length(y), describe_value(cluster)))
  }
  if (!is.logical(truncate) || length(truncate) != 1L || is.na(truncate)) {
    stop_arg("truncate", "must be TRUE or FALSE")
  }
  level <- check_number(level, "level", 0, 1, TRUE, TRUE, "a confidence level")
  y <- as.double(y)
  inf <- which(is.infinite(y))
  if (length(inf)) {
    stop_arg(y_name, sprintf("has %d infinite value%s (%s)", length(inf),
                             if (length(inf) == 1L) "" else "s", describe_rows(inf)),
             "remove or correct them before estimating the ICC.")
  }
  drop <- which(is.na(y) | is.na(cluster))
  if (length(drop)) {
    warning(sprintf(
      "%d row%s with a missing `%s` or `%s` %s dropped (%s).\nFix: impute or remove them yourself if that is not what you want.",
      length(drop), if (length(drop) == 1L) "" else "s", y_name, c_name,
      if (length(drop) == 1L) "was" else "were", describe_rows(drop)), call. = FALSE)
    y <- y[-drop]
    cluster <- cluster[-drop]
  }
  n <- length(y)
  if (n == 0L) stop_arg(y_name, "has no non-missing values", "give at least two clusters of data.")
  g <- match(cluster, unique(cluster))
  n_g <- tabulate(g)
  n_clusters <- length(n_g)
  if (n_clusters < 2L) {
    stop_arg(c_name, sprintf("has %d cluster: an ICC needs at least 2", n_clusters),
             "check the cluster identifiers.")
  }
  if (n - n_clusters < 1L) {
    stop_arg(c_name, "has one observation per cluster, so there is no within-cluster variation to estimate",
             "an ICC needs at least one cluster with two or more members.")
  }
  if (all(y == y[1L])) {
    stop_arg(y_name, sprintf("has the same value (%s) in all %d rows, so the ICC is undefined",
                             format(y[1L]), n),
             "an ICC needs variation in the outcome.")
  }
  # two-pass sums for accuracy
  means <- vapply(split(y, g), mean, numeric(1))
  grand <- mean(y)
  ssb <- sum(n_g * (means - grand)^2)
  ssw <- sum((y - means[g])^2)
  msb <- ssb / (n_clusters - 1)
  msw <- ssw / (n - n_clusters)
  n0 <- (n - sum(n_g^2) / n) / (n_clusters - 1)
  denom <- msb + (n0 - 1) * msw
  raw <- if (denom > 0) (msb - msw) / denom else NaN
  rho <- if (truncate && !is.nan(raw)) max(raw, 0) else raw
  # loneway / Smith (1956) asymptotic standard error
  s2 <- sum(n_g^2)
  s3 <- sum(n_g^3)
  var_rho <- 2 * (1 - rho)^2 / n0^2 *
    ((1 + rho * (n0 - 1))^2 / (n - n_clusters) +
       ((n_clusters - 1) * (1 - rho) * (1 + rho * (2 * n0 - 1)) +
          rho^2 * (s2 - 2 * s3 / n + s2^2 / n^2)) / (n_clusters - 1)^2)
  se <- sqrt(var_rho)
  z <- stats::qnorm(1 - (1 - level) / 2)
  structure(list(icc = rho, icc_anova_raw = raw, se = se,
                 conf.low = rho - z * se, conf.high = rho + z * se, level = level,
                 msb = msb, msw = msw, n0 = n0, n_clusters = n_clusters, n = n,
                 n_dropped = length(drop)),
            class = "sfp_icc")
}

#' @export
print.sfp_icc <- function(x, digits = 5, ...) {
  cat("One-way ANOVA intracluster correlation (as Stata loneway)\n")
  cat(sprintf("  %s observations in %d clusters (n0 = %s)%s\n",
              format(x$n, big.mark = ","), x$n_clusters, format(x$n0, digits = digits),
              if (x$n_dropped) sprintf("; %d rows with missing values dropped", x$n_dropped) else ""))
  cat(sprintf("  MSB = %s, MSW = %s\n", format(x$msb, digits = digits),
              format(x$msw, digits = digits)))
  cat(sprintf("  ICC = %s (asy. SE %s, %s%% CI %s to %s)%s\n",
              format(x$icc, digits = digits), format(x$se, digits = digits),
              format(100 * x$level), format(x$conf.low, digits = digits),
              format(x$conf.high, digits = digits),
              if (!is.nan(x$icc_anova_raw) && x$icc_anova_raw < 0 && x$icc == 0)
                sprintf("; ANOVA estimate %s truncated at 0", format(x$icc_anova_raw, digits = digits))
              else ""))
  invisible(x)
}

#' Tidy summaries of power calculations and ICC estimates
#'
#' @param x An `sfp_sw_power`, `sfp_did_mdes` or `sfp_icc` object.
#' @param ... Unused.
#' @return A data frame: for power objects, the MDES table (`direction`,
#'   `effect`, `p1`, `cohens_d`, with the standard error at no effect as
#'   `std.error`) or the power table; for an ICC, one row with `term`,
#'   `estimate`, `std.error`, `conf.low`, `conf.high`.
#' @name tidy_power
#' @examples
#' if (requireNamespace("generics", quietly = TRUE)) {
#'   generics::tidy(sw_power(p0 = 0.04, icc = 0.01566))
#' }
NULL

#' @rdname tidy_power
#' @exportS3Method generics::tidy
tidy.sfp_sw_power <- function(x, ...) {
  if (!is.null(x$mdes)) {
    out <- x$mdes
    out$std.error <- x$se
    out
  } else {
    out <- x$power
    names(out)[names(out) == "se"] <- "std.error"
    out
  }
}

#' @rdname tidy_power
#' @exportS3Method generics::tidy
tidy.sfp_did_mdes <- function(x, ...) {
  out <- x$mdes
  out$std.error <- x$se
  out
}

#' @rdname tidy_power
#' @exportS3Method generics::tidy
tidy.sfp_icc <- function(x, ...) {
  data.frame(term = "icc", estimate = x$icc, std.error = x$se,
             conf.low = x$conf.low, conf.high = x$conf.high)
}
