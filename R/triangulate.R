# Triangulation of a programme's two strands (DiD and stepped wedge).

#' Triangulate the difference-in-differences and stepped-wedge estimates
#'
#' Both protocols ("Triangulation of results") pool the two strands' effects
#' "to arrive at a single coherent estimate" when they align, and when they
#' diverge rely on the strand whose assumptions hold, or, if both hold, look
#' for what accounts for the difference. `triangulate()` pools the two
#' estimates by inverse variance (fixed effect:
#' \eqn{\hat\theta = \sum w_s\hat\theta_s / \sum w_s}, \eqn{w_s = 1/se_s^2},
#' \eqn{se = (\sum w_s)^{-1/2}}), tests their difference
#' (\eqn{z = (\hat\theta_{DiD} - \hat\theta_{SW}) / \sqrt{se_{DiD}^2 +
#' se_{SW}^2}}) and writes the protocol's reading. The strands align when the
#' test of their difference does not reject at `alpha`.
#'
#' @param did,sw The two strands' estimates: each a list or one-row data
#'   frame with `estimate`, `std.error` and optionally `scale` (e.g. rows of
#'   `as.data.frame()` of an [analyse()] result).
#' @param assumptions Named logical `c(did = , stepped_wedge = )`: whether
#'   each strand's identifying assumptions hold (parallel trends and common
#'   shocks; randomised order kept). `NA` when not assessed.
#' @param level Confidence level of the pooled interval.
#' @param alpha Level of the test of the difference.
#' @return A data frame of class `sfp_triangulation` with rows `did`,
#'   `stepped_wedge`, `pooled` and `difference` (columns `estimate`,
#'   `std.error`, `conf.low`, `conf.high`, `statistic`, `p.value`, `weight`,
#'   `scale`) and attribute `reading` (also in the column of that name).
#' @examples
#' triangulate(list(estimate = -0.012, std.error = 0.006),
#'             list(estimate = -0.008, std.error = 0.005))
#' @export
triangulate <- function(did, sw, assumptions = c(did = NA, stepped_wedge = NA),
                        level = 0.95, alpha = 0.05) {
  level <- check_number(level, "level", 0, 1, lower_open = TRUE, upper_open = TRUE,
                        fix = "give e.g. level = 0.95.")
  alpha <- check_number(alpha, "alpha", 0, 1, lower_open = TRUE, upper_open = TRUE,
                        fix = "give e.g. alpha = 0.05.")
  a <- tri_input(did, "did")
  b <- tri_input(sw, "sw")
  if (!is.na(a$scale) && !is.na(b$scale) && a$scale != b$scale) {
    stop_arg("sw", sprintf("is on the %s scale but `did` is on the %s scale", b$scale, a$scale),
             "give both strands on one scale (e.g. the risk difference of each).")
  }
  z <- stats::qnorm(1 - (1 - level) / 2)
  w <- c(1 / a$se^2, 1 / b$se^2)
  est <- c(a$est, b$est)
  pooled <- sum(w * est) / sum(w)
  se_p <- sqrt(1 / sum(w))
  d <- a$est - b$est
  se_d <- sqrt(a$se^2 + b$se^2)
  stat <- c(a$est / a$se, b$est / b$se, pooled / se_p, d / se_d)
  out <- data.frame(
    row = c("did", "stepped_wedge", "pooled", "difference"),
    estimate = c(est, pooled, d), std.error = c(a$se, b$se, se_p, se_d),
    conf.low = c(est, pooled, d) - z * c(a$se, b$se, se_p, se_d),
    conf.high = c(est, pooled, d) + z * c(a$se, b$se, se_p, se_d),
    statistic = stat, p.value = 2 * stats::pnorm(-abs(stat)),
    weight = c(w / sum(w), 1, NA), scale = a$scale %|NA|% b$scale,
    stringsAsFactors = FALSE)
  reading <- tri_reading(out$p.value[4] >= alpha, assumptions)
  out$reading <- reading
  structure(out, class = c("sfp_triangulation", "data.frame"), reading = reading)
}

tri_input <- function(x, arg) {
  if (is.data.frame(x)) {
    if (nrow(x) != 1L) {
      stop_arg(arg, sprintf("must be one estimate (a one-row data frame), not %d rows", nrow(x)),
               "pass the row of the strand's primary estimate.")
    }
    x <- as.list(x)
  }
  if (!is.list(x) || is.null(x$estimate) || is.null(x$std.error)) {
    stop_arg(arg, "must be a list or one-row data frame with `estimate` and `std.error`",
             "pass e.g. the strand's row of as.data.frame(analysis), or list(estimate =, std.error =).")
  }
  est <- x$estimate
  se <- x$std.error
  if (!is.numeric(est) || !is.numeric(se) || length(est) != 1L || length(se) != 1L ||
      !is.finite(est) || !is.finite(se) || se <= 0) {
    stop_arg(arg, sprintf("must have one finite `estimate` and one positive `std.error`, not %s and %s",
                          describe_value(est), describe_value(se)),
             "triangulate estimates that ran (status \"ok\") with their standard errors.")
  }
  list(est = est, se = se, scale = if (is.null(x$scale)) NA_character_ else as.character(x$scale))
}

# The protocols' reading (FS and FV "Triangulation of results").
tri_reading <- function(aligned, assumptions) {
  if (aligned) {
    return("aligned: the strands do not differ significantly; the pooled estimate is the programme's single coherent estimate")
  }
  hold <- assumptions[c("did", "stepped_wedge")]
  names(hold) <- c("did", "stepped_wedge")
  if (isTRUE(hold[["did"]]) && isFALSE(hold[["stepped_wedge"]])) {
    return("diverge: the assumptions hold for the DiD only; rely primarily on the DiD estimate")
  }
  if (isFALSE(hold[["did"]]) && isTRUE(hold[["stepped_wedge"]])) {
    return("diverge: the assumptions hold for the stepped wedge only; rely primarily on the stepped-wedge estimate")
  }
  if (isTRUE(hold[["did"]]) && isTRUE(hold[["stepped_wedge"]])) {
    return("diverge: the assumptions hold for both; identify what accounts for the difference before drawing conclusions (the pooled estimate is not the programme's estimate)")
  }
  "diverge: assess which strand's assumptions hold (parallel trends and common shocks; the randomised order) and rely primarily on it (the pooled estimate is not the programme's estimate)"
}

#' @export
print.sfp_triangulation <- function(x, ...) {
  cat("<sfp_triangulation>", if (!is.na(x$scale[1])) paste0("(", x$scale[1], ")"), "\n")
  df <- as.data.frame(unclass(x))[, c("row", "estimate", "std.error", "conf.low",
                                      "conf.high", "p.value", "weight")]
  print(df, row.names = FALSE, digits = 4)
  cat("Reading:", attr(x, "reading"), "\n")
  invisible(x)
}
