# The plots a reader expects, as ggplot objects through ggplot2's autoplot()
# when ggplot2 is installed (registered lazily, so ggplot2 stays in
# Suggests), mirroring the base-graphics plot() methods: event study
# (att_gt() aggregated by event time), Goodman-Bacon decomposition, trend
# matching, CEM balance, permutation distribution and simulated power.
# plot() methods for the balance and the permutation distribution (which had
# none) are here too. Each autoplot() builds a small data frame first, so the
# plotted values can be checked.

utils::globalVariables(".data")

need_ggplot2 <- function() {
  if (!requireNamespace("ggplot2", quietly = TRUE)) {
    stop_arg("object", "can be drawn with autoplot() only when ggplot2 is installed",
             "install ggplot2, or use plot() for base graphics.")
  }
}

#' ggplot2 versions of sfpceval's plots
#'
#' `autoplot()` methods (for ggplot2's generic; ggplot2 is needed only to
#' call them) that return ggplot objects showing what the base-graphics
#' `plot()` methods show, so they can be themed and combined:
#' * an event study ([aggregate_att()] with `type = "dynamic"`): estimates
#'   and intervals by periods since go-live;
#' * a Goodman-Bacon decomposition ([bacon()]): each 2 x 2 estimate against
#'   its weight, by comparison type, with the TWFE estimate;
#' * trend matching ([match_trends()]): each treated authority's
#'   standardised quarterly outcome with its closest candidates and the
#'   matching window shaded;
#' * CEM balance ([cem()] with `l1 = TRUE`): the difference in means between
#'   treated and controls for each covariate term, before and after matching;
#' * a permutation test ([perm_test()]): the permutation distribution of the
#'   statistic with the observed value;
#' * simulated power ([power_sim()]): power by effect with its Monte Carlo
#'   interval and the 80% line.
#'
#' `plot()` draws the balance and the permutation distribution in base
#' graphics (the other objects already have `plot()` methods).
#'
#' @param object,x The result to draw.
#' @param n For trend matching: how many best candidates to show per
#'   treated authority besides the selected ones.
#' @param ... Not used.
#' @return `autoplot()`: a ggplot object. `plot()`: `x`, invisibly.
#' @examples
#' set.seed(1)
#' d <- expand.grid(la = paste0("LA", 1:5), step = 0:5, child = 1:20)
#' d$treated <- as.integer(d$step >= match(d$la, paste0("LA", 1:5)))
#' d$y <- rbinom(nrow(d), 1, plogis(-1 + 0.3 * d$treated))
#' pt <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d,
#'                 adjust = FALSE)
#' plot(pt)
#' if (requireNamespace("ggplot2", quietly = TRUE)) ggplot2::autoplot(pt)
#' @name sfpceval-autoplot
NULL

#' @rdname sfpceval-autoplot
#' @exportS3Method ggplot2::autoplot
autoplot.sfp_aggte <- function(object, ...) {
  need_ggplot2()
  if (object$type != "dynamic") stop_arg("object", "must be a dynamic (event-study) aggregation to plot")
  b <- object$by
  d <- data.frame(event_time = b$event_time, estimate = b$estimate,
                  conf.low = b$conf.low %||% NA_real_, conf.high = b$conf.high %||% NA_real_)
  ggplot2::ggplot(d, ggplot2::aes(.data$event_time, .data$estimate)) +
    ggplot2::geom_hline(yintercept = 0, linetype = 2) +
    ggplot2::geom_vline(xintercept = -0.5, linetype = 3) +
    ggplot2::geom_pointrange(ggplot2::aes(ymin = .data$conf.low, ymax = .data$conf.high),
                             na.rm = TRUE) +
    ggplot2::labs(x = "Periods since go-live", y = "ATT",
                  title = "Event study (Callaway & Sant'Anna)")
}

#' @rdname sfpceval-autoplot
#' @exportS3Method ggplot2::autoplot
autoplot.sfp_bacon <- function(object, ...) {
  need_ggplot2()
  d <- object$comparisons[c("type", "weight", "estimate")]
  ggplot2::ggplot(d, ggplot2::aes(.data$weight, .data$estimate, shape = .data$type)) +
    ggplot2::geom_hline(yintercept = object$estimate, linetype = 2) +
    ggplot2::geom_point(size = 2) +
    ggplot2::labs(x = "Weight", y = "2 x 2 DiD estimate", shape = NULL,
                  title = "Goodman-Bacon decomposition")
}

#' @rdname sfpceval-autoplot
#' @exportS3Method ggplot2::autoplot
autoplot.sfp_power_sim <- function(object, ...) {
  need_ggplot2()
  r <- object$results
  d <- data.frame(effect = r$effect, power = r$power, low = r$power_low, high = r$power_high)
  ggplot2::ggplot(d, ggplot2::aes(.data$effect, .data$power)) +
    ggplot2::geom_hline(yintercept = 0.8, linetype = 3) +
    ggplot2::geom_line() +
    ggplot2::geom_pointrange(ggplot2::aes(ymin = .data$low, ymax = .data$high)) +
    ggplot2::coord_cartesian(ylim = c(0, 1)) +
    ggplot2::labs(x = "Effect (risk difference)", y = "Power",
                  title = sprintf("Simulated power (%d trials per effect)", object$n_sims))
}

# Long data of trend matching: one row per authority x quarter shown.
trend_match_frame <- function(x, n) {
  out <- list()
  for (tla in unique(x$candidates$treated_la)) {
    Z <- x$trends[[tla]]
    c <- x$candidates[x$candidates$treated_la == tla, ]
    sel <- c$comparator_la[c$selected]
    show <- unique(c(sel, utils::head(c$comparator_la, n)))
    q <- quarter_label(colnames_int(Z))
    for (la in c(tla, show)) {
      out[[length(out) + 1L]] <- data.frame(
        treated_la = tla, la = la, quarter = seq_len(ncol(Z)), label = q,
        value = unname(Z[la, ]),
        role = if (la == tla) "treated" else if (la %in% sel) "selected" else "candidate",
        window = q %in% x$windows[[tla]]$quarters, stringsAsFactors = FALSE)
    }
  }
  do.call(rbind, out)
}

#' @rdname sfpceval-autoplot
#' @exportS3Method ggplot2::autoplot
autoplot.sfp_trend_match <- function(object, n = 3L, ...) {
  need_ggplot2()
  d <- trend_match_frame(object, n)
  win <- stats::aggregate(quarter ~ treated_la, d[d$window, ], range)
  win <- data.frame(treated_la = win$treated_la, from = win$quarter[, 1], to = win$quarter[, 2])
  ggplot2::ggplot(d, ggplot2::aes(.data$quarter, .data$value, group = .data$la)) +
    ggplot2::geom_rect(data = win, inherit.aes = FALSE, fill = "grey", alpha = 0.25,
                       ggplot2::aes(xmin = .data$from, xmax = .data$to, ymin = -Inf, ymax = Inf)) +
    ggplot2::geom_line(ggplot2::aes(colour = .data$la, linetype = .data$role,
                                    linewidth = .data$role == "treated"), na.rm = TRUE) +
    ggplot2::scale_linewidth_manual(values = c(`TRUE` = 1.2, `FALSE` = 0.5), guide = "none") +
    ggplot2::scale_linetype_manual(values = c(treated = 1, selected = 1, candidate = 2)) +
    ggplot2::facet_wrap(~treated_la, scales = "free_y") +
    ggplot2::labs(x = "Quarter", y = "Standardised outcome", colour = NULL, linetype = NULL,
                  title = "Pre-period trends: treated authorities and candidates")
}

# Difference in means by covariate term before and after matching, from
# summary.sfp_cem() (which report()'s balance figure draws too).
balance_means <- function(x) {
  if (is.null(x$imbalance)) {
    stop_arg("x", "has no imbalance (it was run with l1 = FALSE)", "rerun cem(..., l1 = TRUE).")
  }
  m <- summary(x)$means
  rbind(data.frame(term = m$term, stage = "before", difference = m$diff_before, stringsAsFactors = FALSE),
        data.frame(term = m$term, stage = "after", difference = m$diff_after, stringsAsFactors = FALSE))
}

#' @rdname sfpceval-autoplot
#' @exportS3Method ggplot2::autoplot
autoplot.sfp_cem <- function(object, ...) {
  need_ggplot2()
  d <- balance_means(object)
  d$stage <- factor(d$stage, c("before", "after"))
  ggplot2::ggplot(d, ggplot2::aes(.data$difference, .data$term, shape = .data$stage)) +
    ggplot2::geom_vline(xintercept = 0, linetype = 2) +
    ggplot2::geom_point(size = 2) +
    ggplot2::scale_shape_manual(values = c(before = 1, after = 16)) +
    ggplot2::labs(x = "Treated minus control mean", y = NULL, shape = NULL,
                  title = sprintf("Balance: L1 %.3f before, %.3f after matching",
                                  object$imbalance$before$L1, object$imbalance$after$L1))
}

#' @rdname sfpceval-autoplot
#' @export
plot.sfp_cem <- function(x, ...) {
  balance_means(x)                     # the check that L1 was computed
  plot_balance_(summary(x))            # the balance figure of report()
  invisible(x)
}

#' @rdname sfpceval-autoplot
#' @exportS3Method ggplot2::autoplot
autoplot.sw_perm_test <- function(object, ...) {
  need_ggplot2()
  d <- data.frame(statistic = object$statistics)
  ggplot2::ggplot(d, ggplot2::aes(.data$statistic)) +
    ggplot2::geom_histogram(bins = min(30L, max(5L, length(unique(d$statistic))))) +
    ggplot2::geom_vline(xintercept = object$estimate, colour = "red") +
    ggplot2::labs(x = "Statistic under each allocation", y = "Allocations",
                  title = sprintf("Permutation distribution (%d allocations), p = %s",
                                  object$n_used, format(object$p_value, digits = 3)))
}

#' @rdname sfpceval-autoplot
#' @export
plot.sw_perm_test <- function(x, ...) {
  graphics::hist(x$statistics, breaks = min(30L, max(5L, length(unique(x$statistics)))),
                 xlab = "Statistic under each allocation", ylab = "Allocations",
                 main = sprintf("Permutation distribution (%d allocations), p = %s",
                                x$n_used, format(x$p_value, digits = 3)), ...)
  graphics::abline(v = x$estimate, col = "red", lwd = 2)
  invisible(x)
}
