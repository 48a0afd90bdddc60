# Multiple imputation: Rubin's rules with the Barnard-Rubin small-sample
# degrees of freedom, the complete-data degrees of freedom being those of the
# analysis (few clusters: G - 1 or the Satterthwaite df), not n - k.

#' Pool estimates from multiply imputed data by Rubin's rules
#'
#' Combines the estimates of one or more terms from `m` analyses of
#' multiply imputed data sets (Rubin 1987): the pooled estimate is the mean
#' \eqn{\bar Q}, the total variance \eqn{T = \bar U + (1 + 1/m) B} with
#' \eqn{\bar U} the mean within-imputation variance and \eqn{B} the
#' between-imputation variance. The degrees of freedom are Barnard & Rubin's
#' (1999) small-sample correction,
#' \eqn{\nu = \nu_{old}\nu_{obs}/(\nu_{old} + \nu_{obs})} with
#' \eqn{\lambda = (1 + 1/m)B/T}, \eqn{\nu_{old} = (m - 1)/\lambda^2} and
#' \eqn{\nu_{obs} = (\nu_{com} + 1)/(\nu_{com} + 3)\,\nu_{com}(1 - \lambda)},
#' where \eqn{\nu_{com}} is the complete-data degrees of freedom. With few
#' clusters give the analysis' own degrees of freedom (G - 1 for a
#' cluster-robust t test with G clusters, or the Satterthwaite df of CR2), so
#' the pooled interval is never narrower than a complete-data analysis would
#' allow; `Inf` gives Rubin's large-sample df. As in `mice`, \eqn{\lambda} is
#' bounded below by 1e-4. The result equals `mice::pool.scalar()` (and
#' `mice::pool()` with `dfcom`) for the same inputs.
#'
#' @param estimate Estimates: a numeric vector (one term, one value per
#'   imputation) or a matrix with one row per imputation and one named column
#'   per term.
#' @param std.error Their standard errors, same shape.
#' @param df_complete Complete-data degrees of freedom, one value or one per
#'   term (`Inf` for none).
#' @param level Confidence level of the intervals.
#' @return A data frame with one row per term: `term`, `estimate`,
#'   `std.error`, `df`, `statistic`, `p.value`, `conf.low`, `conf.high`, `m`,
#'   `ubar`, `b`, `riv` (relative increase in variance), `lambda` and `fmi`.
#' @references Rubin, D. B. (1987). *Multiple Imputation for Nonresponse in
#'   Surveys*. Wiley. Barnard, J. & Rubin, D. B. (1999). Small-sample degrees
#'   of freedom with multiple imputation. *Biometrika* 86, 948-955.
#' @examples
#' pool_rubin(c(0.21, 0.25, 0.19, 0.23, 0.22), c(0.05, 0.05, 0.06, 0.05, 0.05),
#'            df_complete = 4)
#' @export
pool_rubin <- function(estimate, std.error, df_complete = Inf, level = 0.95) {
  for (a in list(list("estimate", estimate), list("std.error", std.error))) {
    if (!is.numeric(a[[2]]) || !(is.null(dim(a[[2]])) || length(dim(a[[2]])) == 2L)) {
      stop_arg(a[[1]], sprintf("must be a numeric vector or matrix, not %s", class(a[[2]])[1]),
               "give one value per imputation (rows) and term (columns).")
    }
  }
  q <- as.matrix(estimate)
  se <- as.matrix(std.error)
  if (!identical(dim(q), dim(se))) {
    stop_arg("std.error", sprintf("must have the shape of `estimate` (%s), not %s",
                                  paste(dim(q), collapse = " x "), paste(dim(se), collapse = " x ")),
             "give one standard error per estimate: imputations in rows, terms in columns.")
  }
  m <- nrow(q)
  if (m < 2L) stop_arg("estimate", sprintf("must hold at least two imputations, not %d", m),
                       "give one value per imputation.")
  for (a in list(list("estimate", q, "missing or infinite"), list("std.error", se, "missing, infinite or negative"))) {
    bad <- which(rowSums(!is.finite(a[[2]]) | (a[[1]] == "std.error" & a[[2]] < 0)) > 0)
    if (length(bad)) {
      stop_arg(a[[1]], sprintf("has %s values (imputation %s)", a[[3]], describe_rows(bad)),
               "pool only analyses that ran on every imputation.")
    }
  }
  u <- se^2
  if (!is.numeric(df_complete) || !length(df_complete) %in% c(1L, ncol(q)) ||
      anyNA(df_complete) || any(df_complete <= 0)) {
    stop_arg("df_complete", "must be positive degrees of freedom, one value or one per term",
             "give the complete-data degrees of freedom (e.g. clusters - 1), or Inf.")
  }
  level <- check_number(level, "level", 0, 1, lower_open = TRUE, upper_open = TRUE,
                        fix = "give e.g. level = 0.95.")
  dfcom <- rep_len(df_complete, ncol(q))
  qbar <- colMeans(q)
  ubar <- colMeans(u)
  b <- apply(q, 2, stats::var)
  t <- ubar + (1 + 1 / m) * b
  riv <- (1 + 1 / m) * b / ubar
  lambda <- pmax((1 + 1 / m) * b / t, 1e-4)
  df_old <- (m - 1) / lambda^2
  df_obs <- (dfcom + 1) / (dfcom + 3) * dfcom * (1 - lambda)
  df <- ifelse(is.infinite(dfcom), df_old, df_old * df_obs / (df_old + df_obs))
  fmi <- (riv + 2 / (df + 3)) / (riv + 1)
  se <- sqrt(t)
  crit <- stats::qt(1 - (1 - level) / 2, df)
  stat <- qbar / se
  data.frame(term = colnames(q) %||% rep("estimate", ncol(q)), estimate = qbar,
             std.error = se, df = df, statistic = stat,
             p.value = 2 * stats::pt(-abs(stat), df),
             conf.low = qbar - crit * se, conf.high = qbar + crit * se,
             m = m, ubar = ubar, b = b, riv = riv,
             lambda = (1 + 1 / m) * b / t, fmi = fmi,
             row.names = NULL, stringsAsFactors = FALSE)
}
