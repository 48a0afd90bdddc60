# Staggered roll-out: the Goodman-Bacon decomposition and Callaway-Sant'Anna
# group-time effects for repeated cross-sections of children (Family
# Safeguarding protocol, "Decomposition").

# ---- shared: cluster x period cells ----------------------------------------

# Index a period column by its sorted distinct values: the analyst's periods
# (calendar years 2015..2020, 0..5, financial years as numbers, labels such
# as "2020/21", dates, factors in level order) become positions 1..T.
# A gap -- a value between two others that no row has, e.g. no 2017 in
# 2015..2020 -- is not a period: 2018 follows 2016 (base periods, event times
# and the decomposition's shares count the periods present); numeric periods
# with uneven steps get a warning saying so. Returns index, labels and gaps
# (the missing numeric values, for the result).
period_index <- function(x, arg) {
  if (anyNA(x)) {
    stop_rows("data", arg, which(is.na(x)), "are missing",
              "drop or fill rows with a missing period first (and count them).")
  }
  if (is.numeric(x) && !inherits(x, "Date")) {
    if (any(!is.finite(x))) {
      stop_rows("data", arg, which(!is.finite(x)), "are not finite",
                "give periods as numbers (e.g. 2019) or as labels such as \"2019/20\".")
    }
    lev <- sort(unique(x))
    gaps <- period_gaps(lev)
    if (length(gaps)) {
      warning(sprintf(paste0(
        "`%s` has no rows at %s (its values step by %s otherwise): a period with no ",
        "rows is not a period, so %s follows %s; base periods and event times count ",
        "the periods present.\nFix: if those periods were dropped by mistake, restore them."),
        arg, paste(utils::head(gaps, 5), collapse = ", "), format(min(diff(lev))),
        format(lev[findInterval(gaps[1], lev) + 1L]), format(lev[findInterval(gaps[1], lev)])),
        call. = FALSE)
    }
    return(list(index = match(x, lev), labels = lev, gaps = gaps))
  }
  lev <- if (is.factor(x)) levels(x)[levels(x) %in% x] else sort(unique(x))
  list(index = match(as.character(x), as.character(lev)), labels = lev, gaps = NULL)
}

# Values missing from an otherwise evenly stepped sorted vector: with the
# smallest step s, every multiple of s between neighbours that is absent.
# As many values missing as present, or more, is a coding, not a gap
# (quarters as 20171..20174, 20181, months as 201701..201712): not reported.
period_gaps <- function(lev) {
  if (length(lev) < 3L) return(numeric())
  s <- min(diff(lev))
  k <- round(diff(lev) / s)
  if (all(k == 1L) || any(abs(diff(lev) / s - k) > 1e-8)) return(numeric())
  gaps <- unlist(lapply(which(k > 1L), function(i) lev[i] + s * seq_len(k[i] - 1L)))
  if (length(gaps) >= length(lev)) numeric() else gaps
}

# Labels of period positions for results: the analyst's numbers when the
# periods are numeric (Inf stays Inf, the never treated), positions otherwise.
period_label <- function(i, labels) {
  if (!is.numeric(labels) || inherits(labels, "Date")) return(i)
  out <- rep(Inf, length(i))
  fin <- is.finite(i)
  out[fin] <- labels[i[fin]]
  out
}

# Each cluster's first treated period (Inf = never treated), checking that the
# treatment is absorbing within a cluster.
first_treated <- function(treated, cl, t, treatment) {
  if (!all(treated %in% c(0, 1))) {
    stop_rows("data", treatment, which(!treated %in% c(0, 1)), "are not 0/1",
              "code the treatment 1 = after the authority's go-live, 0 = before or never.")
  }
  g <- tapply(ifelse(treated == 1, t, Inf), cl, min)
  bad <- treated == 0 & t >= g[as.character(cl)]
  if (any(bad)) {
    stop_rows("data", treatment, which(bad),
              "are untreated after their authority's first treated period",
              "the staggered-timing estimators need an absorbing treatment: check the go-live dates.")
  }
  g
}

# ---- Goodman-Bacon decomposition -------------------------------------------

#' Goodman-Bacon decomposition of the two-way fixed-effects DiD
#'
#' Builds the cluster x period panel from individual data (weighted cell means
#' of the outcome, so CEM weights are carried through) and decomposes the
#' two-way fixed-effects estimate on that panel into its 2 x 2 comparisons
#' (Goodman-Bacon 2021): timing groups against the never treated
#' (`"treated vs never"`), earlier against later treated groups before the
#' later ones start (`"earlier vs later"`), and later against earlier ones
#' after those started (`"later vs earlier"`, the comparisons that use
#' already-treated authorities as controls). The weighted sum of the 2 x 2
#' estimates equals the two-way fixed-effects coefficient on the panel.
#'
#' The panel regression is unweighted (one observation per cluster-period), as
#' in Goodman-Bacon (2021); it must be balanced, and no cluster may be treated
#' in the first period (such "always treated" units have no pre-period).
#'
#' @param formula `outcome ~ treatment`, the treatment 0/1 and absorbing.
#' @param data Individual-level data (or a panel).
#' @param id Column naming the cluster (local authority).
#' @param time Column naming the period: numbers as the analyst has them
#'   (calendar years 2015, ..., 2020, or 0, ..., 5), labels sorted in time
#'   order such as financial years `"2019/20"`, dates or a factor. Periods
#'   are the distinct values present, in sorted order; a value no row has
#'   (a gap, e.g. no 2017) is not a period, so the period after 2016 is 2018
#'   (a warning says so for numeric periods).
#' @param weights Optional individual weights (e.g. CEM weights) for the cell
#'   means: a column name or a numeric vector.
#' @return An object of class `sfp_bacon`: `comparisons` (data frame with
#'   `treated`, `control` (timing groups, by first treated period: the
#'   period's value when periods are numeric, else its position; `Inf` =
#'   never), `type`, `estimate`, `weight`), `estimate` (the two-way
#'   fixed-effects coefficient), `panel` (the cell means), `by_type`,
#'   `first_treated`, `periods` and `gaps` (numeric periods with no rows).
#' @examples
#' set.seed(1)
#' d <- expand.grid(la = paste0("L", 1:6), year = 1:6, child = 1:20)
#' go <- c(L1 = 3, L2 = 3, L3 = 5, L4 = Inf, L5 = Inf, L6 = 4)
#' d$treated <- as.integer(d$year >= go[as.character(d$la)])
#' d$y <- rnorm(nrow(d)) + 0.5 * d$treated + 0.1 * d$year
#' b <- bacon(y ~ treated, d, id = "la", time = "year")
#' b
#' sum(b$comparisons$estimate * b$comparisons$weight)
#' @export
bacon <- function(formula, data, id, time, weights = NULL) {
  vars <- all.vars(formula)
  if (length(vars) != 2L) {
    stop_arg("formula", "must be `outcome ~ treatment` (covariates are not decomposed)")
  }
  for (v in c(vars, id, time)) {
    if (!v %in% names(data)) stop_arg("data", sprintf("has no column `%s`", v),
                                      "name columns of `data`.")
  }
  if (nrow(data) == 0L) stop_arg("data", "has no rows", "give the cluster x period panel.")
  y <- data[[vars[1]]]
  d <- data[[vars[2]]]
  w <- if (is.null(weights)) rep(1, nrow(data)) else
    if (is.character(weights)) data[[weights]] else weights
  if (any(is.na(w) | w < 0)) {
    stop_rows("data", "weights", which(is.na(w) | w < 0), "are missing or negative",
              "give non-negative weights (0 leaves a row out).")
  }
  tp <- period_index(data[[time]], time)
  cl <- as.character(data[[id]])
  g <- first_treated(d, cl, tp$index, vars[2])
  keep <- !is.na(y) & w > 0
  excluded <- c(missing_outcome = sum(is.na(y)), zero_weight = sum(!is.na(y) & w == 0))
  panel <- cell_means(y[keep], w[keep], cl[keep], tp$index[keep])
  clusters <- rownames(panel$mean)
  TT <- ncol(panel$mean)
  if (anyNA(panel$mean)) {
    empty <- which(is.na(panel$mean), arr.ind = TRUE)
    stop(sprintf("The cluster x period panel is unbalanced: %d empty cells (first: cluster %s, period %s).\nFix: use a coarser period (e.g. year instead of quarter), or drop the clusters or periods with no children, so that every cluster has data in every period.",
                 nrow(empty), clusters[empty[1, 1]], tp$labels[empty[1, 2]]), call. = FALSE)
  }
  g <- g[clusters]
  if (any(g == 1)) {
    stop(sprintf("Cluster%s %s %s treated in the first period: with no pre-period %s cannot enter the decomposition.\nFix: start the panel earlier, or drop %s.",
                 if (sum(g == 1) > 1) "s" else "", paste(names(g)[g == 1], collapse = ", "),
                 if (sum(g == 1) > 1) "are" else "is",
                 if (sum(g == 1) > 1) "they" else "it",
                 if (sum(g == 1) > 1) "them" else "it"), call. = FALSE)
  }
  if (all(is.infinite(g))) stop_arg("data", "has no treated cluster")
  Y <- panel$mean
  twfe <- twfe_panel(Y, outer(g, seq_len(TT), "<="))
  timing <- sort(unique(g[is.finite(g)]))
  has_never <- any(is.infinite(g))
  n_share <- table(factor(g, levels = c(timing, if (has_never) Inf))) / length(g)
  Dbar <- function(k) if (is.infinite(k)) 0 else (TT - k + 1) / TT
  # One 2 x 2 comparison: group a treated, group b control, periods `win`.
  two_by_two <- function(a, b, win, type) {
    ya <- colMeans(Y[g == a, win, drop = FALSE])
    yb <- colMeans(Y[g == b, win, drop = FALSE])
    post <- win >= a
    est <- (mean(ya[post]) - mean(ya[!post])) - (mean(yb[post]) - mean(yb[!post]))
    na <- n_share[[as.character(a)]]
    nb <- n_share[[as.character(b)]]
    nab <- na / (na + nb)
    Dt <- mean(post)
    data.frame(treated = a, control = b, type = type, estimate = est,
               weight = ((na + nb) * length(win) / TT)^2 * nab * (1 - nab) * Dt * (1 - Dt))
  }
  rows <- list()
  for (k in timing) {
    if (has_never) rows[[length(rows) + 1]] <- two_by_two(k, Inf, seq_len(TT), "treated vs never")
    for (l in timing[timing > k]) {
      rows[[length(rows) + 1]] <- two_by_two(k, l, seq_len(l - 1), "earlier vs later")
      rows[[length(rows) + 1]] <- two_by_two(l, k, k:TT, "later vs earlier")
    }
  }
  comp <- do.call(rbind, rows)
  comp$weight <- comp$weight / sum(comp$weight)
  by_type <- do.call(rbind, lapply(split(comp, comp$type), function(s) {
    data.frame(type = s$type[1], weight = sum(s$weight),
               estimate = sum(s$estimate * s$weight) / sum(s$weight))
  }))
  rownames(by_type) <- NULL
  comp$treated <- period_label(comp$treated, tp$labels)
  comp$control <- period_label(comp$control, tp$labels)
  colnames(Y) <- as.character(tp$labels)
  structure(list(comparisons = comp, estimate = twfe, by_type = by_type,
                 panel = Y, first_treated = stats::setNames(period_label(g, tp$labels), names(g)),
                 periods = tp$labels, gaps = tp$gaps,
                 excluded = excluded, call = match.call()),
            class = "sfp_bacon")
}

#' @export
print.sfp_bacon <- function(x, ...) {
  cat("Goodman-Bacon decomposition of the two-way fixed-effects estimate\n")
  cat(sprintf("  TWFE estimate on the %d x %d cluster-period panel: %s\n",
              nrow(x$panel), ncol(x$panel), format(x$estimate, digits = 5)))
  cat(sprintf("  sum of weighted 2 x 2 estimates:                 %s\n\n",
              format(sum(x$comparisons$estimate * x$comparisons$weight), digits = 5)))
  print(x$by_type, row.names = FALSE, digits = 4)
  if (any(x$excluded > 0)) {
    cat(sprintf("\n  rows left out of the cell means: %d with a missing outcome, %d with weight 0\n",
                x$excluded[["missing_outcome"]], x$excluded[["zero_weight"]]))
  }
  later <- x$by_type$weight[x$by_type$type == "later vs earlier"]
  if (length(later) && later > 0) {
    cat(sprintf("\n%.0f%% of the weight comes from comparisons that use already-treated clusters as controls:\nwith effects that change over time since go-live these bias the TWFE estimate; consider att_gt().\n",
                100 * later))
  }
  disclosure_status(x$excluded[x$excluded > 0])
  invisible(x)
}

#' @export
plot.sfp_bacon <- function(x, ...) {
  comp <- x$comparisons
  types <- c("treated vs never", "earlier vs later", "later vs earlier")
  pch <- c(16, 17, 4)[match(comp$type, types)]
  graphics::plot(comp$weight, comp$estimate, pch = pch,
                 xlab = "Weight", ylab = "2 x 2 DiD estimate",
                 main = "Goodman-Bacon decomposition", ...)
  graphics::abline(h = x$estimate, lty = 2)
  graphics::legend("topright", legend = types, pch = c(16, 17, 4), bty = "n")
  invisible(x)
}

# Weighted cell means and weights of a cluster x period table.
cell_means <- function(y, w, cl, t) {
  cls <- sort(unique(cl))
  TT <- max(t)
  ci <- match(cl, cls)
  key <- (t - 1L) * length(cls) + ci
  sw <- tabulate_sum(w, key, length(cls) * TT)
  swy <- tabulate_sum(w * y, key, length(cls) * TT)
  m <- matrix(swy / sw, length(cls), TT, dimnames = list(cls, NULL))
  m[matrix(sw, length(cls), TT) == 0] <- NA
  list(mean = m, weight = matrix(sw, length(cls), TT, dimnames = list(cls, NULL)))
}

tabulate_sum <- function(x, key, n) {
  out <- numeric(n)
  s <- rowsum(x, key, reorder = TRUE)
  out[as.integer(rownames(s))] <- s[, 1]
  out
}

# The TWFE coefficient on a balanced panel: within-transform D and Y.
twfe_panel <- function(Y, D) {
  dm <- function(M) M - outer(rowMeans(M), colMeans(M), "+") + mean(M)
  Dt <- dm(D * 1)
  sum(Dt * dm(Y)) / sum(Dt^2)
}

# ---- Callaway & Sant'Anna --------------------------------------------------

#' Group-time average treatment effects (Callaway & Sant'Anna)
#'
#' ATT(g, t) for repeated cross-sections of children (each child appears once,
#' in the period of their first referral): for the authorities first treated
#' in period `g` (their "group"), the change in the mean outcome from the base
#' period to period `t`, minus the same change among the control authorities
#' (Callaway & Sant'Anna 2021). Controls are the
#' never-treated authorities (`control = "never"`) or those not yet treated by
#' period `max(t, base) + anticipation` (`"not_yet"`). With `covariates`, the
#' control change is the outcome-regression prediction for the group's
#' children (Sant'Anna & Zhao 2020, `reg_did` for repeated cross-sections):
#' separate weighted least-squares fits among the controls in `t` and in the
#' base period, averaged over the group's children in both periods.
#'
#' Pre-treatment ATT(g, t) use base period `t - 1` (`base_period =
#' "varying"`, the did package's default) or `g - 1 - anticipation`
#' (`"universal"`). Post-treatment ATT(g, t) use `g - 1 - anticipation`.
#'
#' Inference is left to [aggregate_att()]: with five treated authorities the
#' usual multiplier bootstrap is not credible, so sfpceval randomises the
#' go-live dates across authorities instead.
#'
#' @param cohort Individual-level data, one row per child (an `sfp_cohort` or
#'   any data frame).
#' @param design Optional design; only used to choose the default `time`
#'   column (`"step"` for Family Valued, `"fin_year"` otherwise).
#' @param outcome Name of the outcome column.
#' @param control `"never"` or `"not_yet"`.
#' @param covariates `NULL`, or a one-sided formula or character vector of
#'   covariate names for the outcome-regression adjustment.
#' @param time Period column: numbers as the analyst has them (calendar years,
#'   0, 1, ...), labels sorted in time order, dates or a factor. Periods are
#'   the distinct values present, sorted; a gap (a value no row has) is not a
#'   period, so base periods and event times count the periods present (a
#'   warning says so for numeric periods). `group` and `time` in the results
#'   are the period values when periods are numeric (group `Inf` = never
#'   treated), positions 1..T otherwise (`labels` holds the labels).
#' @param cluster Authority column.
#' @param treatment 0/1 treatment column (absorbing within an authority); each
#'   authority's group is its first treated period.
#' @param anticipation Number of periods of anticipation (delta).
#' @param base_period `"varying"` or `"universal"`.
#' @param weights Optional individual weights (column name or vector).
#' @return An object of class `sfp_att_gt`: `att` (data frame with `group`,
#'   `time`, `event_time`, `att`, `n_group`, `n_control`, `post`) and what
#'   [aggregate_att()] needs.
#' @examples
#' set.seed(2)
#' d <- expand.grid(la = paste0("L", 1:8), year = 1:6, child = 1:30)
#' go <- c(L1 = 3, L2 = 3, L3 = 4, L4 = 5, L5 = Inf, L6 = Inf, L7 = Inf, L8 = Inf)
#' d$treated <- as.integer(d$year >= go[as.character(d$la)])
#' d$y <- rbinom(nrow(d), 1, 0.2 + 0.05 * d$treated)
#' a <- att_gt(d, outcome = "y", time = "year")
#' head(a$att)
#' aggregate_att(a, "simple", n_perm = 199)
#' @export
att_gt <- function(cohort, design = NULL, outcome, control = c("never", "not_yet"),
                   covariates = NULL, time = NULL, cluster = "la",
                   treatment = "treated", anticipation = 0,
                   base_period = c("varying", "universal"), weights = NULL) {
  control <- match.arg(control)
  base_period <- match.arg(base_period)
  data <- as.data.frame(cohort)
  if (is.null(time)) {
    time <- if (!is.null(design) && identical(design$programme, "FV")) "step" else "fin_year"
  }
  for (v in c(outcome, time, cluster, treatment)) {
    if (!v %in% names(data)) stop_arg("cohort", sprintf("has no column `%s`", v),
                                      "name columns of `cohort` (or give the cohort from build_cohort()).")
  }
  if (!is.numeric(anticipation) || length(anticipation) != 1L || anticipation < 0) {
    stop_arg("anticipation", "must be one non-negative whole number of periods")
  }
  w <- if (is.null(weights)) rep(1, nrow(data)) else
    if (is.character(weights)) data[[weights]] else weights
  if (length(w) != nrow(data) || any(is.na(w) | w < 0)) {
    stop_arg("weights", "must be non-negative, one per row")
  }
  y <- data[[outcome]]
  tp <- period_index(data[[time]], time)
  cl <- as.character(data[[cluster]])
  G <- first_treated(data[[treatment]], cl, tp$index, treatment)
  keep <- !is.na(y) & w > 0
  excluded <- c(missing_outcome = sum(is.na(y)), zero_weight = sum(!is.na(y) & w == 0))
  X <- NULL
  if (!is.null(covariates)) {
    f <- if (inherits(covariates, "formula")) covariates else
      stats::reformulate(covariates)
    mf <- stats::model.frame(f, data, na.action = stats::na.pass)
    X <- stats::model.matrix(f, mf)
    if (nrow(X) != nrow(data) || anyNA(X)) {
      bad <- which(!stats::complete.cases(mf))
      stop_rows("cohort", paste(all.vars(f), collapse = ", "), bad,
                "have a missing covariate",
                "impute or drop them first (and count them), or leave the covariate out.")
    }
    X <- X[keep, , drop = FALSE]
  }
  if (any(G == 1)) {
    stop(sprintf("Authorit%s %s %s treated in the first period: there is no pre-period to compare with.\nFix: start the data earlier, or drop %s.",
                 if (sum(G == 1) > 1) "ies" else "y", paste(names(G)[G == 1], collapse = ", "),
                 if (sum(G == 1) > 1) "are" else "is", if (sum(G == 1) > 1) "them" else "it"),
         call. = FALSE)
  }
  if (control == "never" && !any(is.infinite(G))) {
    stop("No never-treated authority: `control = \"never\"` has no control group.\nFix: use `control = \"not_yet\"` (authorities not yet treated act as controls).",
         call. = FALSE)
  }
  if (all(is.infinite(G))) stop_arg("cohort", "has no treated authority")
  obj <- list(y = y[keep], w = w[keep], cl = cl[keep], t = tp$index[keep], X = X,
              G = G, TT = length(tp$labels), labels = tp$labels,
              control = control, anticipation = anticipation,
              base_period = base_period, excluded = excluded,
              outcome = outcome, call = match.call())
  obj$cluster_w <- as.numeric(tapply(obj$w, factor(obj$cl, names(G)), sum))
  obj$cluster_w[is.na(obj$cluster_w)] <- 0
  obj$att <- att_table(obj, obj$y, G)
  if (all(is.na(obj$att$att))) {
    stop("No group-time effect could be estimated: no group has both a base period and controls.\nFix: check the periods and the control group.", call. = FALSE)
  }
  obj$att$group <- period_label(obj$att$group, tp$labels)
  obj$att$time <- period_label(obj$att$time, tp$labels)
  obj$gaps <- tp$gaps
  class(obj) <- "sfp_att_gt"
  obj
}

# ATT(g, t) for all groups and periods, for outcome vector y (aligned with
# obj$t, obj$cl) and groups G (named by cluster): linear in y. Everything goes
# through cluster x period sufficient statistics, so a permutation of the
# groups costs O(clusters x periods) (times k^2 with covariates), not
# O(children).
att_table <- function(obj, y, G, cells = NULL) {
  cells <- cells %||% att_cells(obj, y)
  if (is.null(obj$X)) att_from_cells(obj, cells, G) else att_from_xcells(obj, cells, G)
}
# The (group, time, base) triples to estimate.
att_pairs <- function(obj, G) {
  d <- obj$anticipation
  out <- list()
  for (g in sort(unique(G[is.finite(G)]))) {
    for (t in seq_len(obj$TT)) {
      post <- t >= g - d
      base <- if (post || obj$base_period == "universal") g - 1 - d else t - 1
      if (base < 1 || base == t) next
      out[[length(out) + 1]] <- c(g, t, base)
    }
  }
  out
}

control_mask <- function(obj, g_of, g, t, base) {
  if (obj$control == "never") is.infinite(g_of) else
    (is.infinite(g_of) | g_of > max(t, base) + obj$anticipation) & g_of != g
}

att_cells <- function(obj, y) {
  y <- as.matrix(y)
  cls <- names(obj$G)
  nc <- length(cls)
  key <- (obj$t - 1L) * nc + match(obj$cl, cls)
  n <- nc * obj$TT
  S <- vapply(seq_len(ncol(y)), function(k) tabulate_sum(obj$w * y[, k], key, n), numeric(n))
  out <- list(S = matrix(S, nc), W = matrix(tabulate_sum(obj$w, key, n), nc),
              N = matrix(tabulate(key, n), nc), K = ncol(y))
  if (!is.null(obj$X)) out <- c(out, att_xcells(obj, y, key, n, nc))
  out
}

# Covariate sufficient statistics of every cluster x period cell, as arrays
# [cluster, statistic, period]: SX = sum w x (k), XX = sum w x x' (k^2),
# XY = sum w x y (k per outcome column). Built one covariate at a time, so
# no n x k^2 matrix.
att_xcells <- function(obj, y, key, n, nc) {
  X <- obj$X
  k <- ncol(X)
  w <- obj$w
  cellsum <- function(M) {
    M <- as.matrix(M)
    out <- matrix(0, n, ncol(M))
    s <- rowsum(M, key, reorder = TRUE)
    out[as.integer(rownames(s)), ] <- s
    aperm(array(out, c(nc, obj$TT, ncol(M))), c(1L, 3L, 2L))
  }
  XX <- array(0, c(nc, k * k, obj$TT))
  for (j in seq_len(k)) XX[, (j - 1L) * k + seq_len(k), ] <- cellsum(w * X[, j] * X)
  XY <- array(0, c(nc, k * ncol(y), obj$TT))
  for (m in seq_len(ncol(y))) XY[, (m - 1L) * k + seq_len(k), ] <- cellsum(w * y[, m] * X)
  list(SX = cellsum(w * X), XX = XX, XY = XY, k = k)
}

# ATT(g, t) with the outcome-regression adjustment from the cells: for each
# (g, t, base), the control regressions in t and base are weighted least
# squares from the summed cross-products of the control clusters, and the
# adjustment is the group's summed covariates times their difference. Equal
# to fitting lm.wfit() on the control rows (a column the controls cannot
# identify gets coefficient 0, as there).
att_from_xcells <- function(obj, cells, G) {
  P <- do.call(rbind, att_pairs(obj, G))
  k <- cells$k
  K <- cells$K
  np <- nrow(P)
  g_of <- G[names(obj$G)]
  own <- outer(P[, 1], g_of, "==") * 1
  ctl <- t(vapply(seq_len(np), function(i) control_mask(obj, g_of, P[i, 1], P[i, 2], P[i, 3]) * 1,
                  numeric(length(g_of))))
  ctl <- matrix(ctl, np)
  # masked sums of a [cluster, stat, period] array at each pair's period
  at <- function(mask, A, tcol) {
    out <- matrix(0, np, dim(A)[2])
    for (tt in unique(tcol)) {
      r <- which(tcol == tt)
      out[r, ] <- mask[r, , drop = FALSE] %*% A[, , tt]
    }
    out
  }
  cellarr <- function(M, m) aperm(array(M, c(nrow(M), obj$TT, m)), c(1L, 3L, 2L))
  S <- cellarr(cells$S, K)
  W <- cellarr(cells$W, 1L)
  N <- cellarr(cells$N, 1L)
  tt <- P[, 2]
  bb <- P[, 3]
  Wt <- at(own, W, tt)[, 1]
  Wb <- at(own, W, bb)[, 1]
  treated <- at(own, S, tt) / Wt - at(own, S, bb) / Wb
  sx <- at(own, cells$SX, tt) + at(own, cells$SX, bb)
  XXt <- at(ctl, cells$XX, tt)
  XXb <- at(ctl, cells$XX, bb)
  XYt <- at(ctl, cells$XY, tt)
  XYb <- at(ctl, cells$XY, bb)
  Nct <- at(ctl, N, tt)[, 1]
  Ncb <- at(ctl, N, bb)[, 1]
  Not <- at(own, N, tt)[, 1]
  Nob <- at(own, N, bb)[, 1]
  wls <- function(xx, xy) {
    q <- qr(matrix(xx, k), tol = 1e-10)
    b <- qr.coef(q, matrix(xy, k))
    b[is.na(b)] <- 0
    b
  }
  att <- matrix(NA_real_, np, K)
  for (i in seq_len(np)) {
    if (Nct[i] == 0 || Ncb[i] == 0 || Not[i] == 0 || Nob[i] == 0) next
    d <- wls(XXt[i, ], XYt[i, ]) - wls(XXb[i, ], XYb[i, ])
    att[i, ] <- treated[i, ] - drop(sx[i, ] %*% d) / (Wt[i] + Wb[i])
  }
  out <- data.frame(group = P[, 1], time = tt, event_time = tt - P[, 1], att = att[, 1],
                    n_group = Not + Nob, n_control = Nct + Ncb,
                    post = tt >= P[, 1] - obj$anticipation)
  attr(out, "att_matrix") <- att
  out
}

att_from_cells <- function(obj, cells, G) {
  P <- do.call(rbind, att_pairs(obj, G))           # group, time, base
  gv <- sort(unique(G[is.finite(G)]))
  code <- match(G, gv)                             # NA = never treated
  fin <- !is.na(code)
  TT <- obj$TT
  K <- cells$K %||% 1L
  gi <- match(P[, 1], gv)
  tt <- P[, 2]
  bb <- P[, 3]
  h <- pmax(tt, bb) + obj$anticipation
  j <- findInterval(h, gv) + 1L                    # first group with g > h
  self <- P[, 1] > h                               # the group itself is in that set
  # For a clusters x (T * k) matrix M: own-group and control sums at t and
  # base for every pair (rows) and block (columns).
  sums <- function(M, k) {
    GM <- matrix(0, length(gv), ncol(M))
    r <- rowsum(M[fin, , drop = FALSE], code[fin])
    GM[as.integer(rownames(r)), ] <- r
    NM <- colSums(M[!fin, , drop = FALSE])
    if (obj$control == "not_yet") {
      SUF <- rbind(apply(GM, 2, function(v) rev(cumsum(rev(v)))), 0)
      if (length(gv) == 1L) SUF <- rbind(GM, 0)
    }
    at <- function(tcol) {
      idx <- outer(tcol, (seq_len(k) - 1L) * TT, "+")
      own <- matrix(GM[cbind(rep(gi, k), as.vector(idx))], length(tcol))
      ctl <- matrix(NM[as.vector(idx)], length(tcol))
      if (obj$control == "not_yet") {
        ctl <- ctl + matrix(SUF[cbind(rep(j, k), as.vector(idx))], length(tcol)) - self * own
      }
      list(own = own, ctl = ctl)
    }
    list(t = at(tt), b = at(bb))
  }
  S <- sums(cells$S, K)
  W <- sums(cells$W, 1L)
  N <- sums(cells$N, 1L)
  att <- (S$t$own / W$t$own[, 1] - S$b$own / W$b$own[, 1]) -
    (S$t$ctl / W$t$ctl[, 1] - S$b$ctl / W$b$ctl[, 1])
  att[!is.finite(att)] <- NA_real_
  out <- data.frame(group = P[, 1], time = tt, event_time = tt - P[, 1],
                    att = att[, 1], n_group = N$t$own[, 1] + N$b$own[, 1],
                    n_control = N$t$ctl[, 1] + N$b$ctl[, 1],
                    post = tt >= P[, 1] - obj$anticipation)
  attr(out, "att_matrix") <- att
  out
}

#' @export
print.sfp_att_gt <- function(x, ...) {
  cat(sprintf("Group-time average treatment effects (Callaway & Sant'Anna), outcome `%s`\n",
              x$outcome))
  cat(sprintf("  control group: %s; base period: %s; anticipation: %d\n",
              if (x$control == "never") "never treated" else "not yet treated",
              x$base_period, x$anticipation))
  a <- x$att
  if (!is.numeric(x$labels) || inherits(x$labels, "Date")) {
    a$group <- x$labels[a$group]
    a$time <- x$labels[a$time]
  }
  print(a, row.names = FALSE, digits = 4)
  invisible(x)
}

#' Aggregate group-time effects, with randomisation inference
#'
#' Aggregates ATT(g, t) as the did package does, with
#' group weights `p_g` the (weighted) share of children in group `g`:
#' `"simple"` (post-treatment ATT(g, t) weighted by `p_g`), `"dynamic"` (event
#' study: for each time since go-live e, ATT(g, g + e) weighted by `p_g`;
#' overall: the mean over e >= 0), `"group"` (mean post-treatment effect per
#' group; overall weighted by `p_g`) and `"calendar"` (per period, ATT(g, t)
#' of the groups treated by then weighted by `p_g`; overall: their mean).
#'
#' Inference randomises the go-live dates: the authorities' groups (first
#' treated periods, never treated included) are permuted across authorities,
#' every distinct assignment enumerated when there are at most
#' `max_enumerate`, else `n_perm` sampled. The p-value counts assignments
#' whose statistic is at least as large in absolute value as the observed
#' one. Confidence intervals invert the test under the sharp null of a
#' constant effect: because every estimate here is linear in the outcomes,
#' the permutation distribution at any hypothesised effect is exact and the
#' interval's ends are found by bisection. For the event-study estimates the
#' hypothesised effect shifts the cells at that event time only, the other
#' post-treatment cells being shifted by their own estimates (a plug-in).
#'
#' @param x An `sfp_att_gt` from [att_gt()].
#' @param type `"simple"`, `"dynamic"`, `"group"` or `"calendar"`.
#' @param inference `"randomisation"` or `"none"`.
#' @param n_perm,max_enumerate,seed Permutations: sampled count, enumeration
#'   limit and seed.
#' @param alpha Level for the intervals.
#' @return An object of class `sfp_aggte`: `overall` (estimate, p-value,
#'   interval), `by` (per event time / group / period, where relevant) and
#'   the permutation details.
#' @examples
#' set.seed(2)
#' d <- expand.grid(la = paste0("L", 1:6), year = 1:5, child = 1:30)
#' go <- c(L1 = 3, L2 = 4, L3 = Inf, L4 = Inf, L5 = Inf, L6 = Inf)
#' d$treated <- as.integer(d$year >= go[as.character(d$la)])
#' d$y <- rnorm(nrow(d)) + 0.3 * d$treated
#' a <- att_gt(d, outcome = "y", time = "year")
#' aggregate_att(a, "dynamic")
#' @export
aggregate_att <- function(x, type = c("simple", "dynamic", "group", "calendar"),
                          inference = c("randomisation", "none"), n_perm = 999L,
                          max_enumerate = 5000L, seed = 1, alpha = 0.05) {
  type <- match_choice(if (is.character(type)) type[1] else type, c("simple", "dynamic", "group", "calendar"), "type")
  inference <- match_choice(if (is.character(inference)) inference[1] else inference,
                            c("randomisation", "none"), "inference")
  if (!inherits(x, "sfp_att_gt")) stop_arg("x", "must come from att_gt()", "run att_gt() on the panel first.")
  if (inference == "randomisation") {
    n_perm <- check_whole(n_perm, "n_perm", 1L, "sample e.g. n_perm = 999 assignments.")
    max_enumerate <- check_whole(max_enumerate, "max_enumerate", 0L, "list at most e.g. max_enumerate = 5000 assignments.")
    # each assignment is a row of the authorities' groups and a refit of
    # every aggregate: a million is hours, more does not fit in memory
    if (n_perm > 1e6) {
      stop_arg("n_perm", sprintf("is %s, above the 1,000,000 assignments this can list", format(n_perm, big.mark = ",")),
               "999 sampled assignments (or 9,999) give the p-value to +-0.01 or better.")
    }
    alpha <- check_number(alpha, "alpha", 0, 1, lower_open = TRUE, upper_open = TRUE, fix = "give e.g. alpha = 0.05.")
  }
  # Every aggregate is a fixed linear combination of the ATT(g, t), and every
  # ATT(g, t) is linear in the outcome: estimates = A(G) %*% att(Y, G).
  estimates <- function(Y, G, cells = NULL) {
    tab <- att_table(x, Y, G, cells)
    A <- aggregation_weights(x, tab, G, type)
    list(est = A$A %*% att_matrix(tab, x, Y, G), by = A$by)
  }
  obs <- estimates(x$y, x$G)
  by <- obs$by
  if (!is.null(by)) by$estimate <- obs$est[-1, 1]
  relabel <- function(b) {
    if (!is.null(b$group)) b$group <- period_label(b$group, x$labels)
    if (!is.null(b$time)) b$time <- period_label(b$time, x$labels)
    b
  }
  res <- list(type = type, overall = data.frame(estimate = obs$est[1, 1]), by = by,
              inference = inference, call = match.call())
  if (inference == "randomisation") {
    perms <- group_assignments(x$G, max_enumerate, n_perm, seed)
    Gs <- perms$assignments
    post_row <- x$t >= x$G[x$cl] - x$anticipation
    Y <- cbind(x$y, as.numeric(post_row))
    if (type == "dynamic") {
      e_row <- x$t - x$G[x$cl]
      for (e in by$event_time) {
        other <- by$estimate[match(e_row, by$event_time)]
        other[is.na(other) | e_row == e | e_row < 0] <- 0
        Y <- cbind(Y, x$y - other * post_row, as.numeric(e_row == e & is.finite(e_row)))
      }
    }
    cells <- att_cells(x, Y)
    R <- vapply(seq_len(nrow(Gs)), function(i) {
      estimates(Y, stats::setNames(Gs[i, ], names(x$G)), cells)$est
    }, matrix(0, nrow(obs$est), ncol(Y)))
    R <- array(R, c(nrow(obs$est), ncol(Y), nrow(Gs)))
    base <- estimates(Y, x$G, cells)$est
    pv <- perm_pvalues(R[, 1, ], base[, 1], perms$sampled)
    res$overall$p_value <- pv[1]
    ci <- invert_linear(R[1, 1, ], R[1, 2, ], base[1, 1], base[1, 2], alpha, perms$sampled)
    res$overall$conf.low <- ci[1]
    res$overall$conf.high <- ci[2]
    if (!is.null(by)) {
      res$by$p_value <- pv[-1]
      res$by$conf.low <- NA_real_
      res$by$conf.high <- NA_real_
      if (type == "dynamic") {
        for (k in seq_len(nrow(by))) {
          ci <- invert_linear(R[1 + k, 1 + 2 * k, ], R[1 + k, 2 + 2 * k, ],
                              base[1 + k, 1 + 2 * k], base[1 + k, 2 + 2 * k],
                              alpha, perms$sampled)
          res$by$conf.low[k] <- ci[1]
          res$by$conf.high[k] <- ci[2]
        }
      }
    }
    res$n_assignments <- perms$n_distinct
    res$n_used <- nrow(Gs)
    res$sampled <- perms$sampled
    res$min_p <- if (perms$sampled) 1 / (nrow(Gs) + 1) else 1 / perms$n_distinct
    res$alpha <- alpha
  }
  if (!is.null(res$by)) res$by <- relabel(res$by)
  class(res) <- "sfp_aggte"
  res
}

# ATT(g, t) for every column of Y (the cells' matrix).
att_matrix <- function(tab, x, Y, G) attr(tab, "att_matrix")

# The aggregation as a weight matrix over the ATT(g, t) rows of `tab`: first
# row the overall estimate, then one row per event time / group / period.
aggregation_weights <- function(x, tab, G, type) {
  groups <- sort(unique(G[is.finite(G)]))
  pg_g <- as.numeric(tapply(x$cluster_w, factor(G, groups), sum)) / sum(x$cluster_w)
  pg <- pg_g[match(tab$group, groups)]
  ok <- !is.na(tab$att)
  post <- tab$post & ok
  np <- nrow(tab)
  norm <- function(v) if (sum(v) > 0) v / sum(v) else v
  switch(type,
    simple = list(A = matrix(norm(pg * post), 1L), by = NULL),
    dynamic = {
      es <- sort(unique(tab$event_time[ok]))
      rows <- matrix(t(vapply(es, function(e) norm(pg * (ok & tab$event_time == e)), numeric(np))), length(es))
      overall <- colMeans(rows[es >= 0, , drop = FALSE])
      list(A = rbind(overall, rows), by = data.frame(event_time = es))
    },
    group = {
      gs <- sort(unique(tab$group[post]))
      rows <- matrix(t(vapply(gs, function(g) norm(as.numeric(post & tab$group == g)), numeric(np))), length(gs))
      overall <- colSums(rows * norm(pg_g[match(gs, groups)]))
      list(A = rbind(overall, rows), by = data.frame(group = gs))
    },
    calendar = {
      ts <- sort(unique(tab$time[post]))
      rows <- matrix(t(vapply(ts, function(tt) norm(pg * (post & tab$time == tt)), numeric(np))), length(ts))
      list(A = rbind(colMeans(rows), rows), by = data.frame(time = ts))
    })
}

# Distinct re-assignments of the groups across authorities: enumerated
# multiset permutations, or sampled ones (first row: the observed one).
group_assignments <- function(G, max_enumerate, n_perm, seed) {
  vals <- as.character(G)
  n_distinct <- exp(lfactorial(length(vals)) - sum(lfactorial(table(vals))))
  if (n_distinct <= max_enumerate) {
    if (n_distinct > 1e6) {
      stop_arg("max_enumerate", sprintf("asks to list all %s assignments, above the 1,000,000 this can list",
                                        format(n_distinct, big.mark = ",", scientific = FALSE)),
               "lower `max_enumerate` (e.g. the default 5000) to sample `n_perm` assignments instead.")
    }
    idx <- multiset_permutations(vals)
    out <- matrix(as.numeric(idx), nrow = nrow(idx))
    return(list(assignments = out, n_distinct = round(n_distinct), sampled = FALSE))
  }
  out <- with_seed(seed, t(replicate(n_perm, G[sample.int(length(G))])))
  list(assignments = unname(out), n_distinct = n_distinct, sampled = TRUE)
}

multiset_permutations <- function(vals) {
  if (length(vals) == 0L) return(matrix(character(), 1L, 0L))
  u <- unique(vals)
  v <- u[1]
  k <- sum(vals == v)
  rest <- vals[vals != v]
  sub <- multiset_permutations(rest)
  pos <- utils::combn(length(vals), k)
  out <- matrix("", ncol(pos) * nrow(sub), length(vals))
  r <- 0L
  for (i in seq_len(ncol(pos))) {
    for (j in seq_len(nrow(sub))) {
      r <- r + 1L
      out[r, pos[, i]] <- v
      out[r, -pos[, i]] <- sub[j, ]
    }
  }
  out
}

perm_pvalues <- function(A, obs, sampled) {
  A <- matrix(A, nrow = length(obs))
  vapply(seq_len(nrow(A)), function(i) {
    ext <- abs(A[i, ]) >= abs(obs[i]) - 1e-12 * max(1, abs(obs[i]))
    if (sampled) (1 + sum(ext, na.rm = TRUE)) / (ncol(A) + 1) else mean(ext, na.rm = TRUE)
  }, numeric(1))
}

# Test inversion for a statistic linear in the outcome: under the shift
# theta, T_pi(theta) = A_pi - theta * B_pi and T_obs(theta) = a - theta * b.
invert_linear <- function(A, B, a, b, alpha, sampled) {
  pval <- function(theta) {
    ext <- abs(A - theta * B) >= abs(a - theta * b) - 1e-12
    if (sampled) (1 + sum(ext)) / (length(A) + 1) else mean(ext)
  }
  # invert_test() (R/wildboot.R): steps of the permutation SE (or |est|),
  # the test rejects at p <= alpha, 60 bisections' precision
  est <- a / b
  scale <- max(1e-8, stats::sd(A) / max(abs(b), 1e-8), abs(est))
  invert_test(pval, est, scale, alpha, rel = 1e-12, max_double = 61, max_bisect = 60,
              step = scale, strict = TRUE, unbounded = Inf)
}

#' @export
print.sfp_aggte <- function(x, ...) {
  cat(sprintf("Aggregated ATT (%s)\n", x$type))
  print(x$overall, row.names = FALSE, digits = 4)
  if (!is.null(x$by)) {
    cat("\n")
    print(x$by, row.names = FALSE, digits = 4)
  }
  if (identical(x$inference, "randomisation")) {
    cat(sprintf("\nRandomisation inference over %s assignments of go-live dates to authorities%s.\n",
                format(x$n_assignments, big.mark = ","),
                if (x$sampled) sprintf(" (%d sampled)", x$n_used) else " (all enumerated)"))
    if (x$min_p > x$alpha) {
      cat(sprintf("The smallest attainable p-value is %s > alpha = %s: this test can never reject.\n",
                  format(x$min_p, digits = 3), format(x$alpha)))
    }
  }
  invisible(x)
}

#' @export
plot.sfp_aggte <- function(x, ...) {
  if (x$type != "dynamic") stop_arg("x", "must be a dynamic (event-study) aggregation to plot")
  b <- x$by
  lo <- b$conf.low %||% rep(NA, nrow(b))
  hi <- b$conf.high %||% rep(NA, nrow(b))
  yl <- range(c(b$estimate, lo, hi), na.rm = TRUE, finite = TRUE)
  graphics::plot(b$event_time, b$estimate, pch = 16, ylim = yl,
                 xlab = "Periods since go-live", ylab = "ATT",
                 main = "Event study (Callaway & Sant'Anna)", ...)
  ok <- is.finite(lo) & is.finite(hi)
  graphics::arrows(b$event_time[ok], lo[ok], b$event_time[ok], hi[ok],
                   angle = 90, code = 3, length = 0.03)
  graphics::abline(h = 0, lty = 2)
  graphics::abline(v = -0.5, lty = 3)
  invisible(x)
}
