# Matching local authorities on pre-period trends (Family Safeguarding
# protocol, "Local Authority Level Matching", pp. 8-9, footnotes 7 and 8).

#' Match treated local authorities to comparators on pre-period trends
#'
#' For each treated authority and outcome, the protocol (pp. 8-9) matches on
#' "the shortest normalised distance" between the quarter-on-quarter changes
#' of the standardised outcome of the treated authority and of each eligible
#' comparator over the two years before go-live, with replacement (one
#' comparator may serve several treated authorities). `match_trends()`:
#'
#' 1. aggregates the outcome to authority x calendar quarter (quarter of the
#'    referral date), leaving out the children referred in the
#'    `exclusion_months` (18) before the treated authority's go-live, whose
#'    outcome windows would overlap the treatment (footnote 7);
#' 2. standardises each quarter's outcome across all authorities (z-scores),
#'    so that changes in how the outcome is measured over time cancel out;
#' 3. takes the quarter-on-quarter changes over the last `n_quarters` (8)
#'    quarters of usable pre-period data -- by default the eight quarters
#'    ending where the exclusion window starts (`window = "exclusion"`); with
#'    `window = "go_live"` the eight quarters before go-live, which leaves
#'    only those quarters the exclusion did not empty;
#' 4. computes the distance between the treated authority's changes and each
#'    eligible comparator's: the root mean squared difference;
#' 5. ranks the comparators and returns the `n_candidates` nearest, with the
#'    first preselected. The protocol asks for a visual inspection (footnote
#'    8): `plot()` draws each treated authority's trend against its
#'    candidates, and [select_matches()] records the analyst's choice.
#'
#' Eligible comparators are not treated, not in `exclude` (e.g. the Partners
#' in Practice authorities), and have data at least `min_pre_years` (2) years
#' before the treated authority's go-live.
#'
#' **The matching cohort.** The protocol matches on "the four years prior to
#' the intervention, excluding cases that entered the sample population in
#' the final 18 months", and on the changes "for all quarters in the two
#' years prior": the default window is the 8 quarters before the exclusion
#' starts, so the cohort must reach back 3.5 years before each go-live --
#' further than the analysis period of [design_family_safeguarding()] (from
#' 2017-04-01) does for the early go-lives. Build the matching cohort with an
#' earlier `trial_start`; when the cohort is too short, `match_trends()` uses
#' the quarters it has and warns.
#'
#' **What standardising does.** Each quarter is standardised across the
#' authorities in the cohort. When that spread changes from quarter to
#' quarter, two authorities whose rates move in parallel but sit at
#' different levels get different standardised changes; and the binomial
#' noise of a quarterly rate (about 0.8 percentage points at 850 children
#' and a 6% rate) is of the size of real quarter-to-quarter movements, so a
#' comparator with a truly parallel trend need not rank first. Inspect the
#' candidates (`plot()`), as the protocol asks, and see `bench/match_trends.R`
#' for how often the parallel comparator ranks first on simulated data.
#'
#' @param cohort A cohort with columns `la`, `referral_date` and the outcome
#'   (one row per child; an `sfp_cohort` from `build_cohort()`).
#' @param design The Family Safeguarding design (`design$las` gives the
#'   treated authorities and go-live dates), or a data frame with `la_code`
#'   and `go_live_date` of the treated authorities.
#' @param outcome Outcome column (e.g. `"cla_18m"`).
#' @param n_candidates Candidates returned per treated authority.
#' @param exclude Authorities never to use as comparators.
#' @param n_quarters Quarters of pre-period data the changes are taken over.
#' @param exclusion_months Months before go-live whose children are left out.
#' @param window `"exclusion"` or `"go_live"`, see above.
#' @param min_pre_years Years of data a comparator needs before go-live.
#' @return An object of class `sfp_trend_match`: `candidates` (data frame
#'   `treated_la`, `comparator_la`, `distance`, `rank`, `selected`),
#'   `trends` (authority x quarter matrix of standardised outcomes), `windows`
#'   (the quarters used per treated authority) and the settings.
#' @examples
#' set.seed(1)
#' las <- sprintf("L%02d", 1:8)
#' d <- data.frame(la = sample(las, 8000, TRUE),
#'                 referral_date = as.Date("2016-04-01") + sample(0:1800, 8000, TRUE))
#' d$cla_18m <- rbinom(nrow(d), 1, 0.06)
#' go <- data.frame(la_code = c("L01", "L02"),
#'                  go_live_date = as.Date(c("2020-09-01", "2021-01-01")))
#' m <- match_trends(d, go, "cla_18m", n_candidates = 3)
#' m
#' @export
match_trends <- function(cohort, design, outcome, n_candidates = 10L, exclude = NULL,
                         n_quarters = 8L, exclusion_months = 18L,
                         window = c("exclusion", "go_live"), min_pre_years = 2) {
  window <- match.arg(window)
  treated <- treated_go_live(design)
  for (v in c("la", "referral_date", outcome)) {
    if (!v %in% names(cohort)) stop_arg("cohort", sprintf("has no column `%s`", v),
                                        "give the cohort from build_cohort().")
  }
  y <- cohort[[outcome]]
  if (is.logical(y)) y <- as.numeric(y)
  if (!is.numeric(y)) stop_arg("outcome", sprintf("`%s` must be numeric or 0/1", outcome))
  la <- as.character(cohort$la)
  date <- as.Date(cohort$referral_date)
  q <- quarter_index(date)
  missing_la <- setdiff(treated$la_code, la)
  if (length(missing_la)) {
    stop_arg("design", sprintf("names treated authorit%s %s with no children in `cohort`",
                               if (length(missing_la) > 1) "ies" else "y",
                               paste(missing_la, collapse = ", ")))
  }
  all_treated <- treated$la_code
  first_date <- tapply(date, la, min)
  out <- list()
  windows <- list()
  zs <- list()
  short <- character()
  for (k in seq_len(nrow(treated))) {
    tla <- treated$la_code[k]
    go <- treated$go_live_date[k]
    cut <- add_months_date(go, -exclusion_months)
    use <- !is.na(y) & date < cut
    if (!any(use & la == tla)) {
      stop(sprintf("Treated authority %s has no children referred before %s (its go-live %s minus %d months).\nFix: the cohort must start at least %d quarters before that date.",
                   tla, format(cut), format(go), exclusion_months, n_quarters), call. = FALSE)
    }
    cells <- la_quarter_means(y[use], la[use], q[use])
    zq <- standardise_quarters(cells)
    last_q <- quarter_index(if (window == "exclusion") cut else go) - 1L
    qs <- seq(last_q - n_quarters + 1L, last_q)
    qs <- qs[qs %in% colnames_int(zq)]
    if (length(qs) < 3L) {
      stop(sprintf("Treated authority %s has only %d usable pre-period quarter%s before %s.\nFix: check the cohort starts early enough (at least %d quarters before %s), or use `window = \"exclusion\"`.",
                   tla, length(qs), if (length(qs) == 1) "" else "s", format(cut),
                   n_quarters, format(cut)), call. = FALSE)
    }
    if (length(qs) < n_quarters) {
      short <- c(short, sprintf("%s: %d of %d quarters (%s to %s)", tla, length(qs),
                                n_quarters, quarter_label(min(qs)), quarter_label(max(qs))))
    }
    Z <- zq[, as.character(qs), drop = FALSE]
    dZ <- Z[, -1, drop = FALSE] - Z[, -ncol(Z), drop = FALSE]
    eligible <- setdiff(rownames(dZ), c(all_treated, exclude))
    eligible <- eligible[as.Date(first_date[eligible], origin = "1970-01-01") <=
                           add_months_date(go, -12 * min_pre_years)]
    eligible <- eligible[stats::complete.cases(dZ[eligible, , drop = FALSE])]
    if (!length(eligible)) {
      stop(sprintf("No eligible comparator for treated authority %s (none untreated, outside `exclude`, with %g years of data before go-live and data in every quarter used).\nFix: widen the pool of comparators or check the cohort.",
                   tla, min_pre_years), call. = FALSE)
    }
    if (anyNA(dZ[tla, ])) {
      stop(sprintf("Treated authority %s has quarters with no children in the matching window.\nFix: use fewer quarters (`n_quarters`) or check its data.", tla),
           call. = FALSE)
    }
    dist <- sqrt(colMeans((t(dZ[eligible, , drop = FALSE]) - dZ[tla, ])^2))
    o <- order(dist, eligible)
    keep <- utils::head(o, n_candidates)
    out[[k]] <- data.frame(treated_la = tla, comparator_la = eligible[keep],
                           distance = unname(dist[keep]), rank = seq_along(keep),
                           selected = seq_along(keep) == 1L, stringsAsFactors = FALSE)
    windows[[tla]] <- list(quarters = quarter_label(qs), exclusion_from = cut,
                           go_live = go)
    zs[[tla]] <- zq
  }
  if (length(short)) {
    warning(sprintf("The matching window is short for %d treated authorit%s, as the cohort has no earlier data:\n%s\nFix: the matching cohort needs the %d quarters before each go-live minus %d months; build it from earlier records, e.g. with design_family_safeguarding(x, trial_start = ...).",
                    length(short), if (length(short) == 1) "y" else "ies",
                    paste0("  ", short, collapse = "\n"), n_quarters, exclusion_months),
            call. = FALSE)
  }
  structure(list(candidates = do.call(rbind, out), trends = zs, windows = windows,
                 outcome = outcome, treated = treated, n_quarters = n_quarters,
                 exclusion_months = exclusion_months, window = window,
                 exclude = exclude),
            class = "sfp_trend_match")
}

#' Confirm or override the comparators chosen by `match_trends()`
#'
#' The protocol selects, for each treated authority, the nearest candidates
#' whose trends are also convincing when inspected visually (footnote 8); if
#' none is, the treated authority is excluded. `select_matches()` records the
#' analyst's decision.
#'
#' @param x An `sfp_trend_match`.
#' @param selection A named list: for each treated authority to change, the
#'   comparator(s) to select, or `character()` to exclude the treated
#'   authority. Authorities not named keep their current selection.
#' @return `x` with the `selected` column updated, and `pairs`: the selected
#'   treated-comparator pairs.
#' @examples
#' set.seed(1)
#' las <- sprintf("L%02d", 1:8)
#' d <- data.frame(la = sample(las, 8000, TRUE),
#'                 referral_date = as.Date("2016-04-01") + sample(0:1800, 8000, TRUE))
#' d$cla_18m <- rbinom(nrow(d), 1, 0.06)
#' go <- data.frame(la_code = "L01", go_live_date = as.Date("2020-09-01"))
#' m <- match_trends(d, go, "cla_18m", n_candidates = 3)
#' m2 <- select_matches(m, list(L01 = m$candidates$comparator_la[1:2]))
#' m2$pairs
#' @export
select_matches <- function(x, selection) {
  if (!inherits(x, "sfp_trend_match")) stop_arg("x", "must come from match_trends()",
                                                "give the result of match_trends().")
  if (!is.list(selection) || is.null(names(selection))) {
    stop_arg("selection", "must be a list named by treated authority")
  }
  cand <- x$candidates
  for (tla in names(selection)) {
    rows <- cand$treated_la == tla
    if (!any(rows)) stop_arg("selection", sprintf("names %s, which is not a treated authority here", tla))
    chosen <- as.character(selection[[tla]])
    bad <- setdiff(chosen, cand$comparator_la[rows])
    if (length(bad)) {
      stop_arg("selection", sprintf("picks %s for %s, not among its %d candidates",
                                    paste(bad, collapse = ", "), tla, sum(rows)),
               "choose among x$candidates, or rerun match_trends() with more `n_candidates`.")
    }
    cand$selected[rows] <- cand$comparator_la[rows] %in% chosen
  }
  x$candidates <- cand
  x$pairs <- cand[cand$selected, c("treated_la", "comparator_la", "distance")]
  rownames(x$pairs) <- NULL
  x
}

#' @export
print.sfp_trend_match <- function(x, ...) {
  cat(sprintf("Pre-period trend matching on `%s` (%d quarters; children referred in the %d months before go-live left out)\n",
              x$outcome, x$n_quarters, x$exclusion_months))
  for (tla in unique(x$candidates$treated_la)) {
    c <- x$candidates[x$candidates$treated_la == tla, ]
    w <- x$windows[[tla]]
    cat(sprintf("\n%s (go-live %s; quarters %s to %s):\n", tla, format(w$go_live),
                w$quarters[1], w$quarters[length(w$quarters)]))
    print(data.frame(rank = c$rank, comparator = c$comparator_la,
                     distance = round(c$distance, 4),
                     selected = ifelse(c$selected, "*", "")), row.names = FALSE)
  }
  invisible(x)
}

#' @export
plot.sfp_trend_match <- function(x, n = 3L, ...) {
  tl <- unique(x$candidates$treated_la)
  op <- graphics::par(mfrow = grDevices::n2mfrow(length(tl)), mar = c(4, 4, 2.5, 1))
  on.exit(graphics::par(op))
  for (tla in tl) {
    Z <- x$trends[[tla]]
    c <- x$candidates[x$candidates$treated_la == tla, ]
    show <- unique(c(c$comparator_la[c$selected], utils::head(c$comparator_la, n)))
    qs <- match(x$windows[[tla]]$quarters, quarter_label(colnames_int(Z)))
    cols <- seq_len(ncol(Z))
    yr <- range(Z[c(tla, show), ], na.rm = TRUE, finite = TRUE)
    graphics::plot(cols, Z[tla, ], type = "l", lwd = 3, ylim = yr,
                   xlab = "Quarter", ylab = "Standardised outcome",
                   main = sprintf("%s vs candidates", tla), xaxt = "n", ...)
    at <- pretty(cols)
    at <- at[at >= 1 & at <= ncol(Z)]
    graphics::axis(1, at = at, labels = quarter_label(colnames_int(Z))[at])
    for (i in seq_along(show)) {
      graphics::lines(cols, Z[show[i], ], col = i + 1L, lty = if (show[i] %in% c$comparator_la[c$selected]) 1 else 2)
    }
    graphics::rect(min(qs), yr[1], max(qs), yr[2], border = NA,
                   col = grDevices::adjustcolor("grey", 0.25))
    graphics::legend("topleft", c(tla, show), col = c(1, seq_along(show) + 1L),
                     lwd = c(3, rep(1, length(show))), bty = "n", cex = 0.7)
  }
  invisible(x)
}

# ---- helpers ----------------------------------------------------------------

treated_go_live <- function(design) {
  las <- if (inherits(design, "sfp_design")) design$las else design
  if (!is.data.frame(las) || !all(c("la_code", "go_live_date") %in% names(las))) {
    stop_arg("design", "must be a Family Safeguarding design or a data frame with `la_code` and `go_live_date`")
  }
  if ("role" %in% names(las)) las <- las[las$role == "treated", , drop = FALSE]
  las <- las[!is.na(las$go_live_date), c("la_code", "go_live_date"), drop = FALSE]
  if (!nrow(las)) stop_arg("design", "has no treated authority with a go-live date")
  las$la_code <- as.character(las$la_code)
  las$go_live_date <- as.Date(las$go_live_date)
  las[!duplicated(las$la_code), , drop = FALSE]
}

# Calendar quarter as an integer: year * 4 + (quarter - 1).
quarter_index <- function(date) {
  lt <- as.POSIXlt(date)
  (lt$year + 1900L) * 4L + lt$mon %/% 3L
}
quarter_label <- function(q) sprintf("%dQ%d", q %/% 4L, q %% 4L + 1L)
colnames_int <- function(M) as.integer(colnames(M))

add_months_date <- function(date, months) {
  lt <- as.POSIXlt(date)
  target <- lt$mon + months
  y <- lt$year + 1900L + target %/% 12L
  m <- target %% 12L + 1L
  last <- as.POSIXlt(as.Date(sprintf("%04d-%02d-01", y + (m == 12L), m %% 12L + 1L)) - 1L)$mday
  as.Date(sprintf("%04d-%02d-%02d", y, m, pmin(lt$mday, last)))
}

la_quarter_means <- function(y, la, q) {
  las <- sort(unique(la))
  qs <- seq(min(q), max(q))
  key <- (match(q, qs) - 1L) * length(las) + match(la, las)
  n <- length(las) * length(qs)
  s <- tabulate_sum(y, key, n)
  c <- tabulate(key, n)
  m <- matrix(ifelse(c > 0, s / pmax(c, 1), NA_real_), length(las),
              dimnames = list(las, qs))
  m
}

standardise_quarters <- function(M) {
  mu <- colMeans(M, na.rm = TRUE)
  sdv <- apply(M, 2, stats::sd, na.rm = TRUE)
  sdv[!is.finite(sdv) | sdv == 0] <- 1
  sweep(sweep(M, 2, mu), 2, sdv, "/")
}

#' Stack the cohort by treated-comparator pair
#'
#' The Family Safeguarding analysis compares each treated authority with its
#' selected comparator(s). Because comparators are chosen with replacement,
#' one comparator's children can belong to several pairs: `stack_pairs()`
#' returns one block of rows per pair (the treated authority's children and
#' the comparator's), so that CEM matches within pair (and financial year)
#' and the DiD is a stacked regression clustered on the physical authority
#' (`vignette("methods")`, section 0 item 5).
#'
#' @param cohort The cohort (needs `la` and `referral_date`).
#' @param matches An `sfp_trend_match` (its selected pairs) or a data frame
#'   with `treated_la` and `comparator_la`.
#' @param design The design or a data frame of treated authorities' go-live
#'   dates; default: the one `matches` was made with.
#' @return The stacked rows of `cohort` (a data frame) with `pair` (e.g.
#'   `"901-906"`), `in_treated_la` (1 for the pair's treated authority) and
#'   `period` (`"pre"`/`"post"` relative to the pair's go-live date).
#' @examples
#' co <- data.frame(la = c("A", "B", "C"), referral_date = as.Date("2020-01-01") + 0:2)
#' pairs <- data.frame(treated_la = c("A", "B"), comparator_la = c("C", "C"))
#' go <- data.frame(la_code = c("A", "B"), go_live_date = as.Date("2020-01-02"))
#' stack_pairs(co, pairs, go)
#' @export
stack_pairs <- function(cohort, matches, design = NULL) {
  pairs <- selected_pairs(matches)
  treated <- treated_go_live(design %||% matches$treated)
  if (!all(c("la", "referral_date") %in% names(cohort))) {
    stop_arg("cohort", "must have columns `la` and `referral_date`")
  }
  df <- as.data.frame(cohort)
  la <- as.character(df$la)
  blocks <- lapply(seq_len(nrow(pairs)), function(i) {
    tla <- pairs$treated_la[i]
    go <- treated$go_live_date[match(tla, treated$la_code)]
    if (is.na(go)) stop_arg("design", sprintf("has no go-live date for %s", tla))
    rows <- which(la %in% c(tla, pairs$comparator_la[i]))
    b <- df[rows, , drop = FALSE]
    b$pair <- paste(tla, pairs$comparator_la[i], sep = "-")
    b$in_treated_la <- as.integer(la[rows] == tla)
    b$period <- ifelse(as.Date(b$referral_date) >= go, "post", "pre")
    b
  })
  out <- do.call(rbind, blocks)
  rownames(out) <- NULL
  out
}
