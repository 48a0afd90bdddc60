# Cost-benefit analysis of the primary effect (FS "Cost Benefit Analysis";
# FV Exploratory Analysis, "Cost benefit analysis").

#' Cost-benefit analysis of the effect on children becoming looked after
#'
#' The Family Safeguarding protocol's calculation ("Benefits"): the
#' unmonetised benefit per authority is the average treatment effect times
#' the average number of children in the sample per year per authority; the
#' monetised benefit per authority is
#' \eqn{\sum_{i=0}^{5}} (unmonetised benefit \eqn{\times} GBP benefit per
#' person \eqn{\times} discount factor\eqn{_i}), the benefit per person being
#' the weighted average cost of a child going into care by placement type.
#' Costs are discounted to the same base year. The result gives the
#' benefit-cost ratio (present value of benefits over present value of
#' costs) and the net present social value (their difference). The Family
#' Valued protocol's cost-savings analysis uses the same calculation on the
#' risk difference implied by its primary coefficient.
#'
#' An effect is a change in the probability of becoming looked after
#' (treated minus control, a risk difference): a negative effect means fewer
#' children in care, i.e. a saving, so the benefit is
#' \eqn{-}effect \eqn{\times} children \eqn{\times} cost per child. "We will
#' only compute benefits of the programme if the point estimate of the
#' corresponding regression is statistically significant": with `p.value` at
#' or above `alpha` nothing is computed unless `force = TRUE`.
#'
#' @param effect Treatment effect on the probability of becoming looked after
#'   (risk difference, e.g. -0.01 for one percentage point fewer).
#' @param p.value Its p-value (`NULL` to skip the significance rule).
#' @param children_per_year Average number of children in the sample per
#'   year per authority.
#' @param cost_per_child Saving per child not looked after (GBP), or `NULL`
#'   when `placement_costs` is given.
#' @param placement_costs Data frame with columns `placement`, `cost` (GBP per
#'   child) and `n` (children, or shares) for the weighted average cost by
#'   placement type.
#' @param costs Programme costs per authority by year: a numeric vector for
#'   years `years`, or a data frame with `year` and `cost`. `NULL` for none
#'   (then no ratio).
#' @param years Years of the benefit stream, 0 being the base year (the
#'   protocol sums i = 0 to 5).
#' @param discount_rate Annual discount rate (HM Treasury Green Book: 3.5%).
#' @param alpha Significance level of the rule above.
#' @param force Compute even when the effect is not significant.
#' @return An object of class `sfp_cost_benefit`: `by_year` (year, discount
#'   factor, children not looked after, benefit, cost, their present values),
#'   `summary` (one row: `effect`, `cost_per_child`, `pv_benefit`, `pv_cost`,
#'   `bcr`, `npsv`, `status`).
#' @examples
#' cost_benefit(effect = -0.012, p.value = 0.01, children_per_year = 3400,
#'              cost_per_child = 60000, costs = rep(400000, 6))
#' @export
cost_benefit <- function(effect, p.value = NULL, children_per_year,
                         cost_per_child = NULL, placement_costs = NULL,
                         costs = NULL, years = 0:5, discount_rate = 0.035,
                         alpha = 0.05, force = FALSE) {
  if (missing(children_per_year)) {
    stop_arg("children_per_year", "is missing",
             "give the children referred per authority and year the effect applies to.")
  }
  cb_number(effect, "effect")
  cb_number(children_per_year, "children_per_year", positive = TRUE)
  cb_number(discount_rate, "discount_rate")
  if (discount_rate <= -1) stop_arg("discount_rate", "must be above -1", "give e.g. 0.035 (the Green Book rate).")
  if (!is.numeric(years) || !length(years) || anyNA(years) || anyDuplicated(years)) {
    stop_arg("years", sprintf("must be distinct year offsets from the base year, not %s", describe_value(years)),
             "give e.g. years = 0:5.")
  }
  if (!is.null(p.value)) {
    p.value <- check_number(p.value, "p.value", 0, 1, fix = "give the effect's p-value, or NULL.")
  }
  alpha <- check_number(alpha, "alpha", 0, 1, lower_open = TRUE, upper_open = TRUE,
                        fix = "give e.g. alpha = 0.05.")
  if (!isTRUE(force) && !isFALSE(force)) stop_arg("force", "must be TRUE or FALSE", "give force = TRUE to compute a non-significant effect.")
  unit <- cb_unit_cost(cost_per_child, placement_costs)
  cost <- cb_costs(costs, years)
  significant <- is.null(p.value) || (is.finite(p.value) && p.value < alpha)
  status <- if (significant) "ok" else if (force) {
    sprintf("computed on request: effect not significant (p = %.3g >= %g)", p.value, alpha)
  } else sprintf("not computed: effect not significant (p = %.3g >= %g)", p.value, alpha)
  disc <- 1 / (1 + discount_rate)^years
  avoided <- -effect * children_per_year
  by_year <- data.frame(year = years, discount_factor = disc,
                        children_not_looked_after = avoided,
                        benefit = avoided * unit, cost = cost,
                        pv_benefit = avoided * unit * disc, pv_cost = cost * disc)
  computed <- significant || force
  if (!computed) by_year[c("benefit", "pv_benefit")] <- NA_real_
  pv_b <- sum(by_year$pv_benefit)
  pv_c <- if (is.null(costs)) NA_real_ else sum(by_year$pv_cost)
  summary <- data.frame(effect = effect, p.value = p.value %||% NA_real_,
                        children_per_year = children_per_year, cost_per_child = unit,
                        discount_rate = discount_rate, pv_benefit = pv_b, pv_cost = pv_c,
                        bcr = if (is.na(pv_c) || pv_c == 0) NA_real_ else pv_b / pv_c,
                        npsv = pv_b - pv_c, status = status, stringsAsFactors = FALSE)
  structure(list(by_year = by_year, summary = summary), class = "sfp_cost_benefit")
}

cb_number <- function(x, arg, positive = FALSE) {
  if (!is.numeric(x) || length(x) != 1L || !is.finite(x) || (positive && x <= 0)) {
    stop_arg(arg, sprintf("must be one %s number, not %s", if (positive) "positive" else "finite",
                          describe_value(x)), "see ?cost_benefit for what it holds.")
  }
}

cb_unit_cost <- function(cost_per_child, placement_costs) {
  if (!is.null(cost_per_child) && !is.null(placement_costs)) {
    stop_arg("cost_per_child", "and `placement_costs` are both given", "give one of them.")
  }
  if (!is.null(cost_per_child)) {
    cb_number(cost_per_child, "cost_per_child", positive = TRUE)
    return(cost_per_child)
  }
  if (is.null(placement_costs)) {
    stop_arg("cost_per_child", "is missing", "give the saving per child or `placement_costs`.")
  }
  pc <- placement_costs
  if (!is.data.frame(pc) || !all(c("cost", "n") %in% names(pc))) {
    stop_arg("placement_costs", "must be a data frame with columns `placement`, `cost` and `n`",
             "give one row per placement type: its annual cost and the number of children in it.")
  }
  bad <- which(!is.finite(pc$cost) | !is.finite(pc$n) | pc$n < 0 | pc$cost < 0)
  if (length(bad)) {
    stop_rows("placement_costs", "cost/n", bad, "are missing or negative",
              "give a cost and a non-negative number of children for every placement type.")
  }
  if (sum(pc$n) <= 0) {
    stop_arg("placement_costs", "has no children (`n` sums to 0)",
             "give the number of children in each placement type (the weights of the average cost).")
  }
  sum(pc$cost * pc$n) / sum(pc$n)
}

cb_costs <- function(costs, years) {
  if (is.null(costs)) return(rep(0, length(years)))
  if (is.data.frame(costs)) {
    if (!all(c("year", "cost") %in% names(costs))) {
      stop_arg("costs", "must have columns `year` and `cost`", "give one row per year of `years`.")
    }
    bad <- which(duplicated(costs$year))
    if (length(bad)) stop_rows("costs", "year", bad, "repeat a year", "give one cost per year.")
    bad <- which(!is.finite(costs$cost) | costs$cost < 0)
    if (length(bad)) stop_rows("costs", "cost", bad, "are missing or negative", "give each year's cost (0 for none).")
    bad <- which(!costs$year %in% years)
    if (length(bad)) {
      stop_rows("costs", "year", bad, "are not among `years`", "give costs for the years of the benefit stream.")
    }
    out <- rep(0, length(years))
    out[match(costs$year, years)] <- costs$cost
    return(out)
  }
  if (!is.numeric(costs) || length(costs) != length(years) || any(!is.finite(costs)) || any(costs < 0)) {
    stop_arg("costs", sprintf("must be %d non-negative costs, one per year of `years`, not %s",
                              length(years), describe_value(costs)),
             "give each year's cost (0 for none), or a data frame with `year` and `cost`.")
  }
  costs
}

#' @export
print.sfp_cost_benefit <- function(x, ...) {
  s <- x$summary
  cat("<sfp_cost_benefit>", s$status, "\n")
  cat(sprintf("Effect %.4g x %.0f children/year x \u00a3%.0f per child, discounted at %.1f%%\n",
              s$effect, s$children_per_year, s$cost_per_child, 100 * s$discount_rate))
  cat(sprintf("PV benefits \u00a3%.0f; PV costs \u00a3%s; BCR %s; NPSV \u00a3%s\n", s$pv_benefit,
              format(round(s$pv_cost)), format(round(s$bcr, 2)), format(round(s$npsv))))
  invisible(x)
}

#' @export
as.data.frame.sfp_cost_benefit <- function(x, ...) x$summary
