# Robustness checks of the matched comparison (Family Safeguarding protocol,
# "Matching", p. 9): placebo go-live dates in the pre-period and the common
# shocks assumption.

#' Placebo test at false go-live dates in the pre-period
#'
#' Re-estimates the DiD for the selected treated-comparator pairs at a false
#' go-live date inside the pre-period, where the true effect is zero. Only
#' children whose outcome window closes before the true go-live are used
#' (referred more than `exclusion_months` before it), and the false date is
#' `months_before` months before that cut. For each pair the 2 x 2 estimate
#' is reported; the pairs are then stacked (pair-specific authority and period
#' effects, standard errors clustered on the physical authority, since
#' matching with replacement lets one comparator serve several pairs) and
#' tested with [did_fit()].
#'
#' @param matches An `sfp_trend_match` (after [select_matches()] if the
#'   selection was changed), or a data frame of pairs with `treated_la` and
#'   `comparator_la`.
#' @param cohort The cohort (`la`, `referral_date`, the outcome).
#' @param design The Family Safeguarding design, or a data frame with the
#'   treated authorities' `la_code` and `go_live_date`; default: the one
#'   `matches` was made with.
#' @param outcome Outcome column; default: the one matched on.
#' @param months_before Months between the false go-live and the cut.
#' @param exclusion_months Months before the true go-live whose children are
#'   left out (their windows overlap the treatment).
#' @param vcov Variance for the stacked test (see [did_fit()]).
#' @return An object of class `sfp_placebo`: `pairs` (per pair: false
#'   go-live, children, 2 x 2 estimate) and `stacked` (estimate, standard
#'   error, df, p-value).
#' @examples
#' set.seed(1)
#' las <- sprintf("L%02d", 1:8)
#' d <- data.frame(la = sample(las, 8000, TRUE),
#'                 referral_date = as.Date("2016-04-01") + sample(0:1800, 8000, TRUE))
#' d$cla_18m <- rbinom(nrow(d), 1, 0.06)
#' go <- data.frame(la_code = c("L01", "L02"),
#'                  go_live_date = as.Date(c("2020-09-01", "2021-01-01")))
#' m <- match_trends(d, go, "cla_18m", n_candidates = 3)
#' placebo_test(m, d)
#' @export
placebo_test <- function(matches, cohort, design = NULL, outcome = NULL,
                         months_before = 12L, exclusion_months = 18L, vcov = "CR2") {
  pairs <- selected_pairs(matches)
  outcome <- outcome %||% matches$outcome
  if (is.null(outcome)) stop_arg("outcome", "must name the outcome column")
  treated <- treated_go_live(design %||% matches$treated)
  for (v in c("la", "referral_date", outcome)) {
    if (!v %in% names(cohort)) stop_arg("cohort", sprintf("has no column `%s`", v),
                                        "give the cohort from build_cohort().")
  }
  la <- as.character(cohort$la)
  date <- as.Date(cohort$referral_date)
  y <- as.numeric(cohort[[outcome]])
  stacked <- list()
  per_pair <- list()
  for (i in seq_len(nrow(pairs))) {
    tla <- pairs$treated_la[i]
    cla <- pairs$comparator_la[i]
    go <- treated$go_live_date[match(tla, treated$la_code)]
    if (is.na(go)) stop_arg("design", sprintf("has no go-live date for %s", tla))
    cut <- add_months_date(go, -exclusion_months)
    false_go <- add_months_date(cut, -months_before)
    use <- la %in% c(tla, cla) & date < cut & !is.na(y)
    d <- data.frame(y = y[use], la = la[use], date = date[use])
    d$placebo <- as.integer(d$la == tla & d$date >= false_go)
    d$post <- as.integer(d$date >= false_go)
    m <- tapply(d$y, list(d$la == tla, d$post == 1), mean)
    est <- if (all(dim(m) == 2) && !anyNA(m)) (m["TRUE", "TRUE"] - m["TRUE", "FALSE"]) -
      (m["FALSE", "TRUE"] - m["FALSE", "FALSE"]) else NA_real_
    per_pair[[i]] <- data.frame(treated_la = tla, comparator_la = cla,
                                false_go_live = false_go, cut = cut,
                                n_children = nrow(d), estimate = est)
    d$pair <- paste(tla, cla, sep = "-")
    stacked[[i]] <- d
  }
  s <- do.call(rbind, stacked)
  s$pair_la <- paste(s$pair, s$la)
  s$pair_post <- paste(s$pair, s$post)
  fit <- did_fit(y ~ placebo | pair_la + pair_post, s, cluster = ~la,
                 family = "gaussian", vcov = vcov)
  structure(list(pairs = do.call(rbind, per_pair),
                 stacked = cbind(did_term(fit, "placebo"), clusters = length(unique(s$la))),
                 outcome = outcome, months_before = months_before, vcov = vcov),
            class = "sfp_placebo")
}

#' @export
print.sfp_placebo <- function(x, ...) {
  cat(sprintf("Placebo DiD on `%s`: false go-live %d months before the pre-period cut\n",
              x$outcome, x$months_before))
  print(x$pairs, row.names = FALSE, digits = 4)
  cat(sprintf("\nStacked over pairs (%s, %d authorities): %s (SE %s, df %.1f, p = %s)\n",
              x$vcov, x$stacked$clusters, format(x$stacked$estimate, digits = 4),
              format(x$stacked$std.error, digits = 3), x$stacked$df,
              format(x$stacked$p.value, digits = 3)))
  invisible(x)
}

#' Common-shock check for a matched pair design
#'
#' The protocol (p. 9) tests the common shocks assumption on data from after
#' the treated authorities went live: a shock that should hit all authorities
#' alike (a new practice model, a serious case review) is interacted with the
#' presence of the programme; a significant interaction suggests the matched
#' comparators did not respond like the treated authorities. The protocol
#' says "we control for the common shock and its interaction with the
#' presence of Family Safeguarding", so the model is `y ~ treated_la:shock +
#' shock | pair x la + pair x period`, clustered by authority (the
#' authority's main effect is in its fixed effect). When the shock starts on
#' a period boundary its main effect is constant within pair x period cells
#' and the period effects absorb it: the `shock` row is then `NA` with
#' `absorbed = TRUE`; a shock dated inside a period, or a child-level 0/1
#' column, keeps its own coefficient.
#'
#' @param cohort The cohort (`la`, `referral_date`, the outcome).
#' @param matches Selected pairs (`sfp_trend_match` or data frame).
#' @param shock The shock: a date (every child referred on or after it is
#'   exposed) or the name of a 0/1 column of `cohort`.
#' @param outcome Outcome column; default: the one matched on.
#' @param design Treated authorities' go-live dates; default: from `matches`.
#' @param period Period fixed effects: `"quarter"` (calendar quarter of
#'   referral) or the name of a column of `cohort`.
#' @param vcov Variance (see [did_fit()]).
#' @return A data frame with two rows, the interaction (`"programme x
#'   shock"`, the test) and the shock's main effect (`"shock"`): estimate,
#'   standard error, df, p-value, `absorbed` and the number of children and
#'   authorities used.
#' @examples
#' set.seed(1)
#' las <- sprintf("L%02d", 1:8)
#' d <- data.frame(la = sample(las, 8000, TRUE),
#'                 referral_date = as.Date("2016-04-01") + sample(0:2400, 8000, TRUE))
#' d$cla_18m <- rbinom(nrow(d), 1, 0.06)
#' go <- data.frame(la_code = c("L01", "L02"),
#'                  go_live_date = as.Date(c("2019-09-01", "2020-01-01")))
#' m <- match_trends(d, go, "cla_18m", n_candidates = 2)
#' common_shock_test(d, m, shock = as.Date("2021-06-01"))
#' @export
common_shock_test <- function(cohort, matches, shock, outcome = NULL, design = NULL,
                              period = "quarter", vcov = "CR2") {
  pairs <- selected_pairs(matches)
  outcome <- outcome %||% matches$outcome
  treated <- treated_go_live(design %||% matches$treated)
  la <- as.character(cohort$la)
  date <- as.Date(cohort$referral_date)
  exposed <- if (inherits(shock, "Date")) as.integer(date >= shock) else {
    if (!is.character(shock) || !shock %in% names(cohort)) {
      stop_arg("shock", "must be a date or the name of a 0/1 column of `cohort`")
    }
    as.integer(cohort[[shock]])
  }
  # post-implementation data: each pair from its treated authority's go-live
  rows <- list()
  for (i in seq_len(nrow(pairs))) {
    go <- treated$go_live_date[match(pairs$treated_la[i], treated$la_code)]
    use <- la %in% c(pairs$treated_la[i], pairs$comparator_la[i]) & date >= go &
      !is.na(cohort[[outcome]])
    rows[[i]] <- data.frame(y = as.numeric(cohort[[outcome]][use]), la = la[use],
                            treated_la = as.integer(la[use] == pairs$treated_la[i]),
                            shock = exposed[use],
                            period = if (period == "quarter") quarter_index(date[use]) else cohort[[period]][use],
                            pair = i)
  }
  d <- do.call(rbind, rows)
  if (length(unique(d$shock)) < 2L) {
    stop_arg("shock", "does not vary in the post-implementation data",
             "choose a shock that happened after the treated authorities went live.")
  }
  d$fs_shock <- d$treated_la * d$shock
  d$pair_la <- paste(d$pair, d$la)
  d$pair_period <- paste(d$pair, d$period)
  # the shock's main effect, unless the pair x period effects absorb it (a
  # shock that starts on a period boundary): then it is controlled for by them
  absorbed <- all(tapply(d$shock, d$pair_period, function(v) all(v == v[1])))
  f <- if (absorbed) y ~ fs_shock | pair_la + pair_period else
    y ~ fs_shock + shock | pair_la + pair_period
  fit <- did_fit(f, d, cluster = ~la, family = "gaussian", vcov = vcov)
  main <- if (absorbed || "shock" %in% fit$dropped) {
    data.frame(estimate = NA_real_, std.error = NA_real_, df = NA_real_, p.value = NA_real_)
  } else did_term(fit, "shock")
  cbind(term = c("programme x shock", "shock"),
        rbind(did_term(fit, "fs_shock"), main),
        absorbed = c(FALSE, absorbed || "shock" %in% fit$dropped),
        n_children = nrow(d), authorities = length(unique(d$la)))
}

# One term of a did_fit(): estimate, standard error, its reference df and the
# two-sided p-value.
did_term <- function(fit, term) {
  b <- fit$coefficients[[term]]
  se <- sqrt(fit$vcov[term, term])
  df <- fit$df[[term]]
  data.frame(estimate = b, std.error = se, df = df,
             p.value = 2 * stats::pt(-abs(b / se), df))
}

selected_pairs <- function(matches) {
  p <- if (inherits(matches, "sfp_trend_match")) {
    matches$candidates[matches$candidates$selected, c("treated_la", "comparator_la")]
  } else matches
  if (!is.data.frame(p) || !all(c("treated_la", "comparator_la") %in% names(p)) || !nrow(p)) {
    stop_arg("matches", "must hold at least one selected treated-comparator pair",
             "select pairs with select_matches() first.")
  }
  p
}
