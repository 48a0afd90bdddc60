# Family Valued implementation and process evaluation: indicators against the
# protocol's suggested thresholds (FV "Implementation and Process Evaluation",
# Design table, research questions 1 and 3).

#' Family Valued implementation indicators against the protocol's thresholds
#'
#' Sets each authority's implementation and success indicators, at each time
#' point, against the suggested thresholds of the Family Valued protocol's
#' implementation and process evaluation (see [fidelity_thresholds()]):
#' at least 70% of frontline staff and leaders trained (at least awareness
#' raising training), more FGC coordinators than before implementation, a
#' vacancy rate of 20% or below, an average caseload of 17 or below, and at
#' least 70% of staff agreeing with each of the eight survey items at 6, 12
#' and 24 months. FGC conversion and agreed-plan shares (and the other
#' indicators without a threshold) are reported as they are.
#'
#' @param indicators A data frame, one row per authority, time point and
#'   indicator, with columns `la` (authority), `time_point` (`"pre"`, `"6m"`,
#'   `"12m"` or `"24m"`), `indicator` (a name of [fidelity_thresholds()]) and
#'   `value` (shares as proportions in \[0, 1\], caseload and counts as
#'   numbers).
#' @return A data frame with the input columns plus `threshold` (its text),
#'   `met` (`TRUE`/`FALSE`, `NA` where there is no threshold or no baseline)
#'   and `baseline` (the pre-implementation value for "increased"
#'   thresholds), ordered by authority, indicator and time point.
#' @examples
#' ind <- data.frame(la = "A", time_point = c("pre", "6m", "6m", "6m"),
#'                   indicator = c("fgc_coordinators", "fgc_coordinators",
#'                                 "staff_trained", "caseload"),
#'                   value = c(3, 5, 0.74, 18))
#' fidelity(ind)
#' @export
fidelity <- function(indicators) {
  if (!is.data.frame(indicators)) {
    stop_arg("indicators", sprintf("must be a data frame, not %s", class(indicators)[1]),
             "give one row per authority, time point and indicator (see ?fidelity).")
  }
  need <- c("la", "time_point", "indicator", "value")
  miss <- setdiff(need, names(indicators))
  if (length(miss)) {
    stop(sprintf("Table `indicators` lacks column%s %s.\nFix: give one row per authority, time point and indicator (see ?fidelity).",
                 if (length(miss) > 1) "s" else "", paste0("`", miss, "`", collapse = ", ")),
         call. = FALSE)
  }
  if (!nrow(indicators)) {
    stop("Table `indicators` has no rows.\nFix: give one row per authority, time point and indicator (see ?fidelity).",
         call. = FALSE)
  }
  th <- fidelity_thresholds()
  x <- as.data.frame(indicators, stringsAsFactors = FALSE)[need]
  for (v in c("la", "time_point", "indicator")) {
    bad <- which(is.na(x[[v]]) | !nzchar(trimws(as.character(x[[v]]))))
    if (length(bad)) {
      stop_rows("indicators", v, bad, "are missing", "give the authority, time point and indicator of every row.")
    }
  }
  x$indicator <- as.character(x$indicator)
  x$time_point <- as.character(x$time_point)
  bad <- which(!x$indicator %in% th$indicator)
  if (length(bad)) {
    stop_rows("indicators", "indicator", bad, "are not among the protocol's indicators",
              sprintf("use one of %s.", paste0("\"", th$indicator, "\"", collapse = ", ")),
              keys = x$indicator[bad], key_name = "values")
  }
  bad <- which(!x$time_point %in% c("pre", "6m", "12m", "24m"))
  if (length(bad)) {
    stop_rows("indicators", "time_point", bad, "are not among the protocol's time points",
              "use \"pre\", \"6m\", \"12m\" or \"24m\".", keys = x$time_point[bad], key_name = "values")
  }
  if (!is.numeric(x$value)) {
    bad <- which(is.na(suppressWarnings(as.numeric(as.character(x$value)))) & !is.na(x$value))
    stop_rows("indicators", "value", if (length(bad)) bad else seq_len(nrow(x)), "are not numeric",
              "give each indicator as a number (a share as a proportion, e.g. 0.74).",
              keys = x$value[bad], key_name = "values")
  }
  bad <- which(is.infinite(x$value) | (!is.na(x$value) & x$value < 0))
  if (length(bad)) {
    stop_rows("indicators", "value", bad, "are negative or infinite",
              "give counts, shares and rates as non-negative numbers (NA where not measured).")
  }
  key <- paste(x$la, x$time_point, x$indicator, sep = "\r")
  if (anyDuplicated(key)) {
    bad <- which(duplicated(key))
    stop_rows("indicators", "indicator", bad, "repeat an authority, time point and indicator",
              "give one value per authority, time point and indicator.")
  }
  t <- th[match(x$indicator, th$indicator), ]
  pre <- x[x$time_point == "pre", ]
  x$baseline <- pre$value[match(paste(x$la, x$indicator), paste(pre$la, pre$indicator))]
  x$threshold <- t$threshold
  x$met <- ifelse(t$rule == "min", x$value >= t$value,
           ifelse(t$rule == "max", x$value <= t$value,
           ifelse(t$rule == "increase", x$value > x$baseline, NA)))
  x$met[x$time_point == "pre" & t$rule == "increase"] <- NA
  ord <- order(x$la, match(x$indicator, th$indicator),
               match(x$time_point, c("pre", "6m", "12m", "24m")))
  out <- x[ord, c("la", "time_point", "indicator", "value", "baseline", "threshold", "met")]
  rownames(out) <- NULL
  out
}

#' The Family Valued protocol's implementation indicators and thresholds
#'
#' The documented input table of [fidelity()]: one row per indicator with
#' its description, the protocol's suggested threshold (`rule`: `"min"`
#' (at least `value`), `"max"` (at most `value`), `"increase"` (above the
#' pre-implementation value) or `"none"`) and the time points at which the
#' protocol collects it.
#' @return A data frame with columns `indicator`, `description`, `rule`,
#'   `value`, `threshold`, `time_points`, `source`.
#' @examples
#' fidelity_thresholds()[, c("indicator", "threshold")]
#' @export
fidelity_thresholds <- function() {
  survey <- c(leadership_buy_in = "staff perceive sufficient buy-in and support from leadership",
              time_direct_work = "staff feel they have enough time for direct work",
              time_full_model = "staff feel they have enough time to take full advantage of the model",
              change_managed = "staff satisfied with how the change process has been managed",
              job_satisfaction = "staff satisfied in their jobs",
              intend_to_remain = "staff intend to remain within the authority",
              prepared_supported = "staff feel prepared and supported by the information, training and support provided",
              confident_to_change = "staff feel confident to make changes to practice")
  rbind(
    data.frame(indicator = c("staff_trained", "partner_staff_trained", "fgc_coordinators",
                             "new_staff_recruited", "vacancy_rate", "caseload"),
               description = c("share of frontline staff and leaders trained in restorative practice (at least awareness raising training)",
                               "staff from partner agencies trained in restorative practice",
                               "number of FGC coordinators recruited and trained",
                               "new staff recruited to new or restructured restorative services",
                               "vacancy rate in children's services",
                               "average caseload in children's services"),
               rule = c("min", "none", "increase", "none", "max", "max"),
               value = c(0.7, NA, NA, NA, 0.2, 17),
               threshold = c(">= 70% trained", "no threshold", "more than before implementation",
                             "no threshold", "<= 20%", "<= 17"),
               time_points = c("6m, 12m, 24m", "6m, 12m, 24m", "pre, 6m, 12m, 24m",
                               "6m, 12m, 24m", "pre, 6m, 12m, 24m", "pre, 6m, 12m, 24m"),
               source = "admin data", stringsAsFactors = FALSE),
    data.frame(indicator = names(survey), description = unname(survey), rule = "min",
               value = 0.7, threshold = ">= 70% agree", time_points = "6m, 12m, 24m",
               source = "staff survey", stringsAsFactors = FALSE),
    data.frame(indicator = c("fgc_conversion", "fgc_agreed_plan"),
               description = c("share of families referred who progressed to an FGC (conversion rate)",
                               "share of FGCs which resulted in an agreed plan"),
               rule = "none", value = NA, threshold = "no threshold (descriptive)",
               time_points = "12m, 24m", source = "admin data", stringsAsFactors = FALSE)
  )
}
