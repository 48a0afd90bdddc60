# build_cohort(): from validated records to one row per child, exactly as each
# protocol defines its analytic sample, arm, covariates and outcomes, with an
# exclusion flow that accounts for every child.
#
# The builder is a walker: it builds one population (the referral cohort, or
# for reunification the children entering care), assigns the authority at
# the anchor date, the arm, the periods and the covariates, and then walks
# the outcome table (.outcome_defs below): each outcome is one definition --
# population, anchor, window, event, observability source -- and one small
# function that scores it.
#
# Dates become integer day numbers here; the interval work runs in C
# (src/intervals.c) on tables sorted by child and start day, with 0-based
# offsets of each child's rows built here with order() and tabulate().

.treatments <- c("referral_date", "open_days_half", "open_days_28",
                 "care_entry", "alt_go_live", "embedding")

# ---- the outcome table --------------------------------------------------------
#
# One entry per outcome, read like its line in the protocols' outcome tables:
#   population  "referral" (first referral in the trial period) or
#               "care_entry" (first period of care starting in the trial period)
#   anchor      the day the window starts from
#   window      name in design$windows (months), NA for absence (three terms)
#   source      the return the event comes from; its data end decides
#               observability ("cin" census, "ssda903", "npd")
#   tables      the tables the outcome reads
#   sample      who is in the outcome's sample
#   outside     the exclusion flow's label for the rest of the cohort
#   event       what is counted
#   score       function(x) -> list(value, in_sample, observable[, extra]);
#               `x` is the cohort context (cohort_context()).
.outcome_defs <- list(
  cla_18m = list(
    population = "referral", anchor = "referral date", window = "cla",
    source = "ssda903", tables = "cla_episodes",
    sample = "the analytic sample",
    event = paste("a new period of care (short breaks excluded) starts within the",
                  "window (design cla_definition = \"entered\"); \"looked_after\":",
                  "looked after on some day of it")),
  cpp_duration = list(
    population = "referral", anchor = "referral date", window = "cpp_start",
    source = "cin", tables = "cp_plans",
    sample = "children starting a CPP within the window",
    outside = "no CPP starting within the window",
    event = "days on the first such CPP, capped at cpp_duration_cap months"),
  days_cpp_18m = list(
    population = "referral", anchor = "referral date", window = "days_cpp",
    source = "cin", tables = "cp_plans", sample = "the analytic sample",
    event = "days on child protection plans in the window"),
  rereferral_18m = list(
    population = "referral", anchor = "referral date", window = "rereferral",
    source = "cin", tables = c("assessments", "assessment_factors"),
    sample = "children with a toxic-trio factor at the first assessment",
    outside = "no toxic-trio factor at assessment",
    event = "a later referral in the window"),
  return_36m = list(
    population = "referral", anchor = "referral date", window = "return",
    source = c("cin", "ssda903"), tables = c("cp_plans", "cin_plans", "cla_episodes"),
    sample = "the analytic sample",
    event = "a spell of plans ends and a new plan or care follows in the window"),
  cpp_12m = list(
    population = "referral", anchor = "referral date", window = "cpp",
    source = "cin", tables = "cp_plans", sample = "the analytic sample",
    event = "a child protection plan starts in the window"),
  days_plan_18m = list(
    population = "referral", anchor = "referral date", window = "days_plan",
    source = "cin", tables = c("cp_plans", "cin_plans"), sample = "the analytic sample",
    event = "days on CPPs or CIN plans in the window"),
  kinship_first = list(
    population = "referral", anchor = "referral date", window = "cla",
    source = "ssda903", tables = "cla_episodes",
    sample = "children entering care (a new period) within the window",
    outside = "did not enter care within the window",
    event = "the first placement of that period is kinship foster care (U1-U3)"),
  reunified_18m = list(
    population = "care_entry", anchor = "care start", window = "reunification",
    source = "ssda903", tables = "cla_episodes",
    sample = "children who do not turn 18 within the window",
    outside = "turns 18 within the window",
    event = "the period of care ends with a return home (E4A; E4B as sensitivity) within the window"),
  absence = list(
    population = "referral", anchor = "referral date", window = NA_character_,
    source = "npd", tables = "absence", sample = "children with absence records",
    event = "unauthorised absence over the three terms starting after the referral")
)

#' The outcome table of a design
#'
#' One row per outcome of the design, as [build_cohort()] builds it: the
#' population it is defined on, the anchor date its window starts from, the
#' window in months, the sample, the event counted and the source whose data
#' end decides when the window is observable. `build_cohort()` walks this
#' table; outcomes of the `"care_entry"` population (reunification) are
#' built on their own (`build_cohort(data, design, outcomes = "reunified_18m")`).
#'
#' @param design An `sfp_design`.
#' @return A data frame with columns `outcome`, `population` (`"referral"`:
#'   one row per child, first referral in the trial period; `"care_entry"`:
#'   one row per child whose period of care started in the trial period),
#'   `anchor`, `window_months` (`NA` for absence: three school terms),
#'   `sample`, `event`, `source` (`"cin"`, `"ssda903"`, `"npd"`; several
#'   joined by `"+"`) and `tables`.
#' @examples
#' rollout <- data.frame(la_code = c("301", "302"), programme = "FV",
#'                       role = "treated",
#'                       go_live_date = as.Date(c("2020-01-01", "2020-07-01")))
#' outcome_table(design_family_valued(rollout))
#' @export
outcome_table <- function(design) {
  if (!inherits(design, "sfp_design")) {
    stop_arg("design", "must be an `sfp_design`",
             "build one with design_family_safeguarding() or design_family_valued().")
  }
  defs <- .outcome_defs[design$outcomes]
  wm <- vapply(defs, function(d) if (is.na(d$window)) NA_integer_ else
    as.integer(design$windows[[d$window]]), 0L)
  data.frame(outcome = names(defs),
             population = vapply(defs, `[[`, "", "population"),
             anchor = vapply(defs, `[[`, "", "anchor"),
             window_months = wm,
             sample = vapply(defs, `[[`, "", "sample"),
             event = vapply(defs, `[[`, "", "event"),
             source = vapply(defs, function(d) paste(d$source, collapse = "+"), ""),
             tables = vapply(defs, function(d) paste(d$tables, collapse = "+"), ""),
             row.names = NULL, stringsAsFactors = FALSE)
}

#' Build a protocol's analytic cohort
#'
#' Turns the records into one row per child as the design defines the
#' sample: each child's first referral in the trial period, age at referral
#' in range, and for Family Valued a case still open after assessment. Adds
#' the local authority at the referral date, the arm, the period (financial
#' year, quarter and for Family Valued the six-month step), the covariates
#' and every outcome of the design (see [outcome_table()]), and counts every
#' child left out in an exclusion flow. Rows follow the order of the
#' `children` table; referrals on the same day are ordered by `referral_id`.
#'
#' Outcomes are 0/1 integers (binary) or day counts, `NA` where the child is
#' outside the outcome's sample or its window is not yet observable. The
#' companion column `<outcome>_observable` makes the reason recoverable:
#' `NA` outside the sample, `FALSE` when the window ends after the data end
#' of the outcome's source, `TRUE` otherwise (an `NA` outcome with `TRUE` is
#' a missing value).
#'
#' Definitions (the design's arguments give the windows and code sets):
#' * A window of m months from day `d` runs from `d` to `d` plus m calendar
#'   months (month-end clamped: `seq(d, by = "m months")` would overflow 31
#'   August + 6 months into March; here it is 28/29 February), both ends
#'   included for events. Day counts (days on plans) count the days from `d`
#'   up to but not including the window's end (18 months from 1 January 2020
#'   is 547 days) and a plan from `start` to `end` covers `end - start` days
#'   (the end day is not counted; open plans run on); overlapping plans are
#'   counted once.
#' * A new period of care starts with a care episode (short breaks V3/V4
#'   excluded by default) whose reason for new episode is `S` or that does
#'   not continue an episode the child was in (no earlier episode still open
#'   on its start day).
#' * `cla_18m` ("Coded 1 if the child has become looked after at any point
#'   within 18 months of the referral", both protocols' design tables): a new
#'   period of care starts in the window, whether or not it results from this
#'   referral (FS footnote 16, FV footnote 3). A child already looked after on
#'   the referral day stays in the sample and is scored by the same rule
#'   (column `in_care_at_referral`; counted in the flow). The design's
#'   `cla_definition = "looked_after"` gives the sensitivity reading: looked
#'   after on some day of the window.
#' * `cpp_duration` (FS): days on the first CPP starting within 6 months of
#'   the referral, capped at 12 months from its start;
#'   `cpp_duration_censored` is `TRUE` when the plan ran past the cap (or is
#'   still open at it).
#' * `days_cpp_18m` (FS), `days_plan_18m` (FV): days on CPPs (and CIN plans)
#'   in the window; at most the window's length (the censoring point).
#' * `rereferral_18m` (FS): a later referral (strictly after the first
#'   referral's day) within 18 months, for children whose first assessment
#'   after the first referral recorded a toxic-trio factor; referrals marked
#'   `marac` (leading directly to a Multi Agency Risk Assessment Conference)
#'   are not re-referrals (FS footnote 18).
#' * `return_36m` (FV): a spell of CPP/CIN plans (overlapping or touching
#'   plans merged, so stepping up from CIN plan to CPP is not a return) ends
#'   within 36 months of the referral and the child then starts a new plan or
#'   a care episode within the 36 months.
#' * `cpp_12m` (FV): a CPP starts within 12 months of the referral.
#' * `kinship_first` (FV secondary 5): sample, the children who became looked
#'   after within 18 months of the referral (a new period of care starts in
#'   the window); 1 if the first placement of that first new period is
#'   kinship foster care (`U1`-`U3`). A period that began before the referral
#'   never supplies it.
#' * `reunified_18m` (FV secondary 6) has its own population: one row per
#'   child aged 0-17 whose (first) period of care started within the trial
#'   period, whatever the date of any referral; the authority, arm, periods
#'   and covariates follow the day care started (`care_start`). Children who
#'   turn 18 within 18 months of entering care are outside the sample
#'   (counted). 1 if the period ends (first episode with `rec` other than X1)
#'   with a return home (E4A; E4B too with the design's `reunification =
#'   "sensitivity"`) within 18 months of its start. Build it on its own:
#'   `build_cohort(data, design, outcomes = "reunified_18m")`.
#' * Absence: the three school terms starting after the referral (autumn 1
#'   September, spring 1 January, summer Easter Monday; NPD's Summer and
#'   Summer6th added together), see [absence_panel()].
#'
#' The local authority is the one at the time of the anchor date ("their
#' local authority at the time of their referral start date", FV
#' Conditions): the referral's `la_code` when the referrals table has one,
#' else the `children` row current on that day (latest `recorded_date` on or
#' before it, the earliest row where none precede). Arm, go-live, step and
#' LA covariates follow it; the number of cohort children whose authority
#' changed over their records is in the attribute `la_changed`.
#'
#' Covariates: `gender` (protocol codes 0-4 as a factor; values that conflict
#' over time become "missing" unless the others are missing or "not
#' recorded"), `ethnicity_cin` (the CIN census categories, "Ethnicity: in
#' the categories defined in the DfE's CIN census", FS footnote 27, FV
#' footnote 10; conflicting codes missing, REFU/NOBT only where nothing else
#' is recorded), `ethnic_group` (major group, for CEM and with the design's
#' `ethnicity = "major"`; conflicting groups become Missing),
#' `academic_year` of the referral (September-August, FV), `fsm_ever` (ever
#' eligible, the regression covariate of both protocols, from the column
#' `fsm_ever`, else the design's `fsm_column`) and `fsm` (the design's
#' `fsm_column`, FSM in the last six years, for CEM), `age` in completed years at referral (a 29 February birthday
#' falls on 1 March in other years; children referred before birth are 0),
#' `age_band`, `disabled`, `fsm`, `uasc` (maximum over the records up to the
#' referral, or the earliest record if none precedes it), `n_previous_cpp`
#' (CPPs starting before the referral in the records, or the recorded
#' NumberOfPreviousCPP of the next CPP if larger) and `previous_cpp` (0/1, for
#' CEM), `primary_need`, and the LA
#' covariates at the latest month on or before the referral (gaps filled by
#' linear interpolation, last/next observation carried at the ends; the
#' innovation-programme flag is carried forward).
#'
#' Missing data ("will drop covariates that are missing at a rate greater
#' than 30%", both protocols): levels that record nothing count as missing
#' (ethnicity "Missing" -- refused, not obtained or conflicting -- gender
#' "missing", primary need "not stated"), and so does FSM below school age.
#' The rule is applied to each outcome's analysed sample (and to the whole
#' cohort): the attribute `missing_covariates` has one row per sample and
#' covariate (`n`, `n_missing`, `share`, `dropped`, `reason`),
#' `covariates_dropped_by_sample` lists the dropped ones per sample, and
#' [cohort_covariates()] gives an outcome's model covariates. The columns
#' stay in the cohort: multiple imputation and [cem()] use them (CEM matches
#' a missing FSM as its own "not recorded" level).
#'
#' Treatment definitions (`treatment`): `"referral_date"` (the referral
#' started on or after go-live; primary), `"open_days_half"` (at least half
#' of the child's open-referral days in the trial period were on or after
#' go-live; a referral is open from its referral day to its closure day
#' inclusive, open referrals to the end of the trial period; a child with no
#' open day in it keeps the referral-date arm), `"open_days_28"` (at least 28
#' such days), `"care_entry"` (FV: the new period of care of the kinship
#' sample began on or after go-live; `NA` for children who did not enter
#' care in the window; for the reunification population the arm already
#' follows the care start), `"alt_go_live"` (FV: the roll-out table's
#' `alt_go_live_date`) and `"embedding"` (FV: children whose anchor date
#' falls in the embedding period are excluded, the arm is by go-live; see
#' [sw_terms()] for the one definition of the boundaries).
#'
#' @param data An `sfp_data` object (see [sfp_data()]) with at least the
#'   `children` and `referrals` tables and the tables the outcomes need.
#' @param design An `sfp_design` from [design_family_safeguarding()] or
#'   [design_family_valued()].
#' @param treatment How the arm is defined, one of `"referral_date"`,
#'   `"open_days_half"`, `"open_days_28"`, `"care_entry"`, `"alt_go_live"`,
#'   `"embedding"` (see Details).
#' @param outcomes The outcomes to build; `NULL` for all of the design's
#'   referral-based outcomes (`"absence"` stands for the absence panel).
#'   `"reunified_18m"` has its own population and is built alone.
#' @return An `sfp_cohort`: a data frame with one row per child and columns
#'   `child_id`, `la`, `referral_id`, `referral_date` (for the reunification
#'   population: `care_start`, and the latest referral on or before it),
#'   `age`, `unborn`, `treated`, `fin_year`, `quarter`, `step` (FV), the
#'   covariates, `in_care_at_referral` (when care episodes are read), the
#'   outcomes and their `_observable` companions. Attributes: `design`,
#'   `treatment`, `population`, `data_end` (one per source),
#'   `exclusion_flow` (see [exclusion_flow()]), `absence` (see
#'   [absence_panel()]), `missing_covariates`, `covariates_dropped` (those
#'   dropped on the whole cohort), `covariates_dropped_by_sample` (a list
#'   per sample: the cohort and each outcome), `covariate_missing` (shares
#'   in the cohort), `la_changed`.
#' @examples
#' children <- data.frame(
#'   child_id = c("a", "b", "c"), la_code = "301",
#'   dob = as.Date(c("2012-05-01", "2019-01-10", "2001-01-01")),
#'   gender_raw = c("1", "2", "1"), ethnicity = c("WBRI", "BAFR", "AIND")
#' )
#' referrals <- data.frame(
#'   referral_id = c("r1", "r2", "r3"), child_id = c("a", "b", "c"),
#'   referral_date = as.Date(c("2019-09-01", "2020-02-01", "2019-10-01")),
#'   closure_date = as.Date(c("2020-03-01", "2021-02-01", "2019-12-01")),
#'   referral_nfa = FALSE
#' )
#' cla <- data.frame(
#'   child_id = "a", decom = as.Date("2020-01-15"),
#'   dec = as.Date("2020-11-30"), rne = "S", ls = "C2", place = "U1",
#'   rec = "E4A"
#' )
#' rollout <- data.frame(la_code = "301", programme = "FV", role = "treated",
#'                       go_live_date = as.Date("2020-01-01"),
#'                       trial_start = as.Date("2019-07-01"),
#'                       trial_end = as.Date("2020-07-01"))
#' d <- sfp_data(children = children, referrals = referrals,
#'               cla_episodes = cla, rollout = rollout)
#' design <- design_family_valued(d, data_end = as.Date("2022-12-31"))
#' cohort <- build_cohort(d, design, outcomes = c("cla_18m", "kinship_first"))
#' cohort[, c("child_id", "treated", "age", "cla_18m", "kinship_first")]
#' exclusion_flow(cohort)
#' # reunification: its own population, children entering care
#' build_cohort(d, design, outcomes = "reunified_18m")[, c("child_id", "care_start",
#'                                                        "reunified_18m")]
#' @export
build_cohort <- function(data, design, treatment = "referral_date",
                         outcomes = NULL) {
  if (!inherits(design, "sfp_design")) {
    stop_arg("design", "must be an `sfp_design`",
             "build one with design_family_safeguarding() or design_family_valued().")
  }
  if (!is.list(data) || is.data.frame(data)) {
    stop_arg("data", "must be an `sfp_data` object", "build it with sfp_data().")
  }
  outcomes <- check_outcomes(outcomes, design)
  population <- if (length(outcomes)) .outcome_defs[[outcomes[1]]]$population else "referral"
  check_cohort_treatment(treatment, design, population)
  check_tables(data, outcomes, treatment)
  check_columns(data, outcomes, design)
  check_rollout_dates(design$las, treatment)

  ends <- source_ends(data, design)
  pop <- if (population == "referral") referral_population(data, design, ends) else
    care_population(data, design, ends)
  arm <- assign_arm(pop, design, treatment)

  keep <- which(is.na(pop$reason$why))
  r <- pop$anchor[keep]
  coh <- data.frame(child_id = pop$child_ids[keep], la = pop$la[keep],
                    referral_id = as.character(pop$referral_id[keep]),
                    referral_date = day_to_date(pop$referral_day[keep]),
                    stringsAsFactors = FALSE)
  if (population == "care_entry") coh$care_start <- day_to_date(r)
  coh$age <- pop$age[keep]
  coh$unborn <- pop$unborn[keep]
  x <- cohort_context(data, design, coh, r, ends, pop, keep)

  coh$treated <- treatment_arm(x, treatment, arm$arm[keep], pop$go_live[keep])
  coh <- add_periods(coh, r, design)
  coh <- add_covariates(coh, x)
  if (!is.null(data$cla_episodes) && any(c("cla_18m", "kinship_first") %in% outcomes)) {
    coh$in_care_at_referral <- x$in_care_at(r)
  }

  # ---- outcomes: walk the outcome table ---------------------------------
  absence <- NULL
  for (o in outcomes) {
    res <- outcome_scorers[[o]](x)
    if (o == "absence") {
      absence <- res
      coh$absence_rate <- absence_rate_per_child(absence, coh$child_id)
      next
    }
    value <- res$value
    value[!res$in_sample | !res$observable] <- NA
    coh[[o]] <- value
    coh[[paste0(o, "_observable")]] <- ifelse(res$in_sample, res$observable, NA)
    for (nm in names(res$extra)) coh[[nm]] <- res$extra[[nm]]
  }
  if (!is.null(coh$cpp_duration_censored)) {
    coh$cpp_duration_censored[is.na(coh$cpp_duration)] <- NA
  }

  dropped <- drop_missing_covariates(coh, design, outcomes, absence)

  arm_all <- arm$arm
  arm_all[keep] <- coh$treated
  flow <- build_flow(pop$la, arm_all, pop$reason$why, keep, coh, outcomes, absence,
                     pop$steps)

  class(coh) <- c("sfp_cohort", "data.frame")
  attr(coh, "design") <- design
  attr(coh, "treatment") <- treatment
  attr(coh, "population") <- population
  attr(coh, "data_end") <- day_to_date(ends[[if (population == "referral") "cin" else "ssda903"]])
  attr(coh, "data_ends") <- stats::setNames(day_to_date(ends), names(ends))
  attr(coh, "exclusion_flow") <- flow
  attr(coh, "absence") <- absence
  attr(coh, "covariate_missing") <- dropped$miss
  attr(coh, "missing_covariates") <- dropped$table
  attr(coh, "covariates_dropped") <- dropped$drop$cohort %||% character()
  attr(coh, "covariates_dropped_by_sample") <- dropped$drop
  attr(coh, "la_changed") <- sum(pop$la_changed[keep])
  coh
}

# ---- argument checks ------------------------------------------------------------

check_outcomes <- function(outcomes, design) {
  referral_based <- design$outcomes[vapply(.outcome_defs[design$outcomes],
                                           function(d) d$population == "referral", TRUE)]
  if (is.null(outcomes)) return(referral_based)
  bad <- setdiff(outcomes, design$outcomes)
  if (!is.character(outcomes) || length(bad)) {
    stop_arg("outcomes", sprintf("has %s not in the %s design",
                                 paste0("\"", bad, "\"", collapse = ", "), design$programme),
             paste0("choose among ", paste(design$outcomes, collapse = ", "), "."))
  }
  pops <- vapply(.outcome_defs[outcomes], `[[`, "", "population")
  if (length(unique(pops)) > 1L) {
    care <- outcomes[pops == "care_entry"]
    stop_arg("outcomes",
             sprintf("mixes %s, defined on the children entering care in the trial period, with referral-based outcomes (%s)",
                     paste0("\"", care, "\"", collapse = ", "),
                     paste(outcomes[pops == "referral"], collapse = ", ")),
             sprintf("build it on its own: build_cohort(data, design, outcomes = \"%s\").", care[1]))
  }
  unique(outcomes)
}

check_cohort_treatment <- function(treatment, design, population) {
  fs <- design$programme == "FS"
  allowed <- if (fs) .treatments[1:3] else if (population == "care_entry")
    .treatments[c(1, 4:6)] else .treatments
  if (!is.character(treatment) || length(treatment) != 1L || !treatment %in% allowed) {
    stop_arg("treatment",
             sprintf("must be one of %s for the %s design%s, not %s",
                     paste0("\"", allowed, "\"", collapse = ", "), design$programme,
                     if (population == "care_entry") " and the reunification population" else "",
                     if (is.character(treatment)) paste0("\"", treatment[1], "\"") else
                       class(treatment)[1]),
             if (fs) "care_entry, alt_go_live and embedding are Family Valued sensitivity analyses." else
               if (population == "care_entry") "open-referral days do not apply to children entering care." else NULL)
  }
}

check_tables <- function(data, outcomes, treatment) {
  tabs <- lapply(.outcome_defs[outcomes], `[[`, "tables")
  pop_care <- any(vapply(.outcome_defs[outcomes], function(d) d$population == "care_entry", TRUE))
  need <- unique(c("children", if (!pop_care) "referrals", unlist(tabs),
                   if (treatment == "care_entry") "cla_episodes"))
  lacking <- need[vapply(need, function(t) is.null(data[[t]]), TRUE)]
  if (!length(lacking)) return(invisible(TRUE))
  users <- vapply(lacking, function(t) {
    o <- outcomes[vapply(outcomes, function(o) t %in% tabs[[o]], TRUE)]
    if (t == "cla_episodes" && treatment == "care_entry") o <- c(o, "treatment = \"care_entry\"")
    if (length(o)) paste0(" (needed by ", paste(o, collapse = ", "), ")") else ""
  }, "")
  stop(sprintf("`data` has no table%s %s.\nFix: give %s to sfp_data(), or leave the outcomes that need %s out of `outcomes`.",
               if (length(lacking) > 1) "s" else "",
               paste0("`", lacking, "`", users, collapse = ", "),
               if (length(lacking) > 1) "them" else "it",
               if (length(lacking) > 1) "them" else "it"),
       call. = FALSE)
}

check_rollout_dates <- function(las, treatment) {
  if (!treatment %in% c("alt_go_live", "embedding")) return(invisible(TRUE))
  cols <- if (treatment == "alt_go_live") "alt_go_live_date" else c("embed_start", "embed_end")
  for (col in cols) {
    # comparator LAs (the DiD strands) never go live: only treated LAs need the dates
    bad <- which(las$role %in% "treated" & is.na(las[[col]]))
    if (length(bad)) {
      stop_rows("rollout", col, bad, "have no date",
                sprintf("give every LA its `%s` to use treatment = \"%s\".", col, treatment),
                keys = las$la_code[bad], key_name = "la_code")
    }
  }
}

#' Covariates of a cohort's model for one outcome
#'
#' The design's covariates for an outcome's regression: less those the
#' protocol leaves out for it (FS footnote 31: primary need for the primary
#' outcome and re-referrals), those the 30% missing-data rule dropped on the
#' outcome's analysed sample (see the `missing_covariates` attribute of
#' [build_cohort()]'s result), and those not in the cohort.
#'
#' @param cohort An `sfp_cohort`.
#' @param outcome One outcome of the cohort.
#' @return A character vector of column names.
#' @examples
#' data(sfp_example_fs)
#' x <- sfp_example_fs
#' co <- suppressMessages(build_cohort(x, design_family_safeguarding(x),
#'                                     outcomes = "cla_18m"))
#' cohort_covariates(co, "cla_18m")
#' @export
cohort_covariates <- function(cohort, outcome) {
  if (!inherits(cohort, "sfp_cohort")) {
    stop_arg("cohort", "must be an `sfp_cohort`", "build it with build_cohort().")
  }
  d <- attr(cohort, "design")
  dropped <- attr(cohort, "covariates_dropped_by_sample")
  # an outcome column, or a sample without one (absence: `absence_rate`)
  if (!is.character(outcome) || length(outcome) != 1L ||
      !outcome %in% c(names(cohort), names(dropped))) {
    stop_arg("outcome", sprintf("must be one outcome of the cohort, not %s", describe_value(outcome)),
             "give the name of one outcome of the cohort's outcome table, e.g. \"cla_18m\".")
  }
  dr <- dropped[[outcome]]
  cv <- setdiff(d$covariates, c(d$covariates_exclude[[outcome]], dr))
  intersect(cv, names(cohort))
}

# ---- populations ------------------------------------------------------------------

# Exclusion reasons, first one wins (an environment, so helpers can add).
new_reasons <- function(n) {
  rs <- new.env(parent = emptyenv())
  rs$why <- rep(NA_character_, n)
  rs
}
set_reason <- function(rs, cond, why) {
  cond <- !is.na(cond) & cond & is.na(rs$why)
  rs$why[cond] <- why
  invisible(rs)
}

.referral_steps <- c("not in the children table", "no referral in the trial period",
                     "no referral open after assessment", "LA not in the trial",
                     "date of birth missing", "unborn at referral",
                     "age out of range", "closed after assessment",
                     "referred in the embedding window",
                     "referred in the months before go-live")
.care_steps <- c("not in the children table",
                 "no period of care starting in the trial period",
                 "LA not in the trial", "date of birth missing",
                 "age out of range", "entered care in the embedding window")

# Children (all ids in `children` and the population's own table), their
# dates of birth and the children-table rows (over time or not).
population_children <- function(data, other_ids) {
  ch <- data$children
  child_ids <- unique(c(as.character(ch$child_id), as.character(other_ids)))
  over_time <- "recorded_date" %in% names(ch)
  if (!over_time && anyDuplicated(ch$child_id)) {
    dup <- which(duplicated(ch$child_id))
    stop_rows("children", "child_id", dup, "have a child_id already seen",
              "give one row per child, or add `recorded_date` for one row per child per return.",
              keys = ch$child_id[dup], key_name = "child_id")
  }
  dob <- latest_non_na(ch, "dob", child_ids, over_time)
  edob <- if ("expected_dob" %in% names(ch)) latest_non_na(ch, "expected_dob", child_ids, over_time) else
    rep(NA_integer_, length(child_ids))
  list(ch = ch, child_ids = child_ids, over_time = over_time, dob = dob, edob = edob)
}

# First referral in the trial period (FV: open after assessment), age at it.
referral_population <- function(data, design, ends) {
  fs <- design$programme == "FS"
  rf <- data$referrals
  pc <- population_children(data, rf$child_id)
  child_ids <- pc$child_ids
  n_all <- length(child_ids)
  ts <- as.integer(design$trial_start)
  te <- if (is.null(design$trial_end)) ends[["cin"]] else as.integer(design$trial_end)
  rs <- new_reasons(n_all)
  set_reason(rs, !child_ids %in% pc$ch$child_id, "not in the children table")

  rf_child <- match(as.character(rf$child_id), child_ids)
  rf_day <- as.integer(rf$referral_date)
  rf_open <- referral_open_after_assessment(rf, design)
  in_period <- !is.na(rf_day) & rf_day >= ts & rf_day <= te
  first_of <- function(keep) {
    k <- which(keep)
    k <- k[order(rf_child[k], rf_day[k], as.character(rf$referral_id[k]), method = "radix")]
    k[match(seq_len(n_all), rf_child[k])]
  }
  first_ref <- first_of(in_period)
  set_reason(rs, is.na(first_ref), "no referral in the trial period")
  if (!fs && design$require_open_after_assessment && design$entry == "first_open") {
    first_open <- first_of(in_period & rf_open %in% TRUE)
    set_reason(rs, is.na(first_open), "no referral open after assessment")
    first_ref <- ifelse(is.na(first_open), first_ref, first_open)
  }
  anchor <- rf_day[first_ref]
  rf_la <- if ("la_code" %in% names(rf)) as.character(rf$la_code[first_ref]) else NULL
  la <- la_at(pc, anchor, rf_la)
  if (!fs || identical(design$strand, "stepped_wedge")) {
    set_reason(rs, !la %in% design$las$la_code, "LA not in the trial")
  }

  unborn <- !is.na(anchor) & ((is.na(pc$dob) & !is.na(pc$edob)) |
                                (!is.na(pc$dob) & pc$dob > anchor))
  age <- age_years(pc$dob, anchor)
  age[unborn] <- 0L
  set_reason(rs, is.na(age), "date of birth missing")
  if (!design$include_unborn) set_reason(rs, unborn, "unborn at referral")
  set_reason(rs, age < design$age_range[1] | age > design$age_range[2], "age out of range")
  if (!fs && design$require_open_after_assessment) {
    set_reason(rs, !(rf_open[first_ref] %in% TRUE), "closed after assessment")
  }
  list(child_ids = child_ids, pc = pc, reason = rs, anchor = anchor,
       ref_row = first_ref, referral_id = rf$referral_id[first_ref],
       referral_day = anchor, la = la, la_changed = la_changed(pc, la, rf),
       age = age, unborn = unborn, steps = .referral_steps,
       go_live = as.integer(design$las$go_live_date[match(la, design$las$la_code)]))
}

# Reunification (FV secondary 6): "Children/young people aged 0-17 that
# became looked after within the trial period": the first period of care
# starting in the trial period, whatever the date of any referral.
care_population <- function(data, design, ends) {
  cla <- data$cla_episodes
  pc <- population_children(data, cla$child_id)
  child_ids <- pc$child_ids
  n_all <- length(child_ids)
  ts <- as.integer(design$trial_start)
  te <- if (is.null(design$trial_end)) ends[["ssda903"]] else as.integer(design$trial_end)
  rs <- new_reasons(n_all)
  set_reason(rs, !child_ids %in% pc$ch$child_id, "not in the children table")
  care <- care_table(cla, design, match(as.character(cla$child_id), child_ids), n_all)
  idx <- .Call(ffi_first_in_range, care$pstart_day, care$ptab$offsets,
               rep(ts, n_all), rep(as.integer(te), n_all))
  anchor <- care$pstart_day[orig_row(seq_along(care$pstart_day), idx)]
  set_reason(rs, is.na(anchor), "no period of care starting in the trial period")
  la <- la_at(pc, anchor, NULL)
  set_reason(rs, !la %in% design$las$la_code, "LA not in the trial")
  age <- age_years(pc$dob, anchor)
  age[!is.na(age) & age < 0L] <- 0L
  set_reason(rs, is.na(age), "date of birth missing")
  set_reason(rs, age < design$age_range[1] | age > design$age_range[2], "age out of range")
  # the latest referral on or before care started supplies referral_id and
  # primary need (none: NA)
  rf <- data$referrals
  ref_row <- rep(NA_integer_, n_all)
  if (!is.null(rf)) {
    rc <- match(as.character(rf$child_id), child_ids)
    rtab <- index_table(rc, as.integer(rf$referral_date), n_all)
    nxt <- .Call(ffi_first_in_range, as.integer(rf$referral_date[rtab$rows]), rtab$offsets,
                 as.integer(ifelse(is.na(anchor), 0L, anchor + 1L)),
                 rep(.Machine$integer.max, n_all))
    lo <- rtab$offsets[-(n_all + 1L)]
    last <- ifelse(nxt >= 0L, nxt, rtab$offsets[-1L]) - 1L
    ref_row <- rtab$rows[ifelse(last >= lo & !is.na(anchor), last + 1L, NA_integer_)]
  }
  list(child_ids = child_ids, pc = pc, reason = rs, anchor = anchor,
       ref_row = ref_row, referral_id = rf$referral_id[ref_row] %||% rep(NA, n_all),
       referral_day = if (is.null(rf)) rep(NA_integer_, n_all) else
         as.integer(rf$referral_date[ref_row]),
       la = la, la_changed = la_changed(pc, la, NULL), age = age,
       unborn = rep(FALSE, n_all), steps = .care_steps,
       go_live = as.integer(design$las$go_live_date[match(la, design$las$la_code)]))
}

# The authority at day `day` of each child: the referral's own `la_code`
# where given, else the children row current on that day (latest
# recorded_date on or before it, the earliest row if none precede it, the
# latest row when there is no day).
la_at <- function(pc, day, referral_la) {
  ch <- pc$ch
  ids <- pc$child_ids
  n <- length(ids)
  g <- match(as.character(ch$child_id), ids)
  if (!pc$over_time) {
    row <- match(ids, ch$child_id)
  } else {
    rd <- as.integer(ch$recorded_date)
    o <- order(g, rd, method = "radix")
    go <- g[o]
    base <- min(rd)
    span <- as.numeric(max(rd) - base + 2L)
    key <- go * span + (rd[o] - base)
    q <- seq_len(n) * span + pmin(pmax(as.numeric(day) - base, -1), span - 1)
    pos <- findInterval(q, key)
    hit <- !is.na(day) & pos > 0L & go[pmax(pos, 1L)] %in% seq_len(n) &
      go[pmax(pos, 1L)] == seq_len(n)
    first <- match(seq_len(n), go)
    last <- n_rows_last(go, n)
    row <- ifelse(hit, o[pmax(pos, 1L)], o[first])
    row[is.na(day)] <- o[last[is.na(day)]]
  }
  la <- as.character(ch$la_code[row])
  if (!is.null(referral_la)) la <- ifelse(is.na(referral_la), la, referral_la)
  la
}

# Position (in the sorted group vector) of each group's last element.
n_rows_last <- function(go, n) {
  last <- rep(NA_integer_, n)
  ok <- !is.na(go)
  last[go[ok]] <- which(ok)          # later positions overwrite earlier ones
  last
}

# TRUE for children whose records name more than one authority (children
# rows over time, and the referrals' own la_code where given).
la_changed <- function(pc, la, rf) {
  ids <- pc$child_ids
  n <- length(ids)
  g <- c(match(as.character(pc$ch$child_id), ids),
         if (!is.null(rf) && "la_code" %in% names(rf)) match(as.character(rf$child_id), ids))
  l <- c(as.character(pc$ch$la_code),
         if (!is.null(rf) && "la_code" %in% names(rf)) as.character(rf$la_code))
  ok <- !is.na(g) & !is.na(l)
  li <- match(l[ok], unique(l[ok]))
  key <- unique(as.numeric(g[ok]) * (max(li, 0L) + 1) + li)   # distinct (child, LA)
  tabulate(as.integer(key %/% (max(li, 0L) + 1)), nbins = n) > 1L
}

# ---- arm ------------------------------------------------------------------------

# Arm of every child at its anchor date (referral-date rule, or the
# alternative go-live); the embedding exclusion is a population step.
assign_arm <- function(pop, design, treatment) {
  las <- design$las
  gl <- pop$go_live
  if (treatment == "alt_go_live") {
    gl <- as.integer(las$alt_go_live_date[match(pop$la, las$la_code)])
  }
  arm <- treated_on(pop$anchor, gl)
  gap <- design$pre_go_live_exclusion %||% 0L
  if (gap > 0L) {
    # FS footnote 7: referrals in the `gap` months before go-live (the
    # matched treated LA's go-live for a comparator)
    own <- pop$go_live
    pr <- design$pairs
    if (!is.null(pr) && nrow(pr)) {
      via <- las$go_live_date[match(pr$treated_la, las$la_code)]
      m <- match(pop$la, pr$comparator_la)
      own[is.na(own) & !is.na(m)] <- as.integer(via[m[is.na(own) & !is.na(m)]])
    }
    before <- !is.na(own) & !is.na(pop$anchor) & pop$anchor < own &
      pop$anchor >= add_months(own, -gap)
    set_reason(pop$reason, before, "referred in the months before go-live")
  }
  if (treatment == "embedding") {
    m <- match(pop$la, las$la_code)
    emb <- in_embedding(pop$anchor, las$embed_start[m], las$embed_end[m], gl)
    set_reason(pop$reason, emb, if (identical(pop$steps, .care_steps))
      "entered care in the embedding window" else "referred in the embedding window")
  }
  list(arm = arm)
}

# The arm of the cohort under the other treatment definitions.
treatment_arm <- function(x, treatment, arm, gl) {
  if (treatment %in% c("open_days_half", "open_days_28")) {
    rf <- x$data$referrals
    tab <- x$tab("refs")
    s <- as.integer(rf$referral_date[tab$rows])
    e <- as.integer(rf$closure_date[tab$rows]) + 1L   # closure day counted
    lo_fs <- ifelse(is.na(gl), x$te + 1L, pmax(x$ts, gl))
    hi <- rep(x$te + 1L, x$n)
    total <- .Call(ffi_union_days, s, e, tab$offsets, rep(x$ts, x$n), hi)
    under <- .Call(ffi_union_days, s, e, tab$offsets, as.integer(lo_fs), hi)
    out <- if (treatment == "open_days_half") as.integer(2L * under >= total) else
      as.integer(under >= 28L)
    if (treatment == "open_days_half") out[total == 0L] <- arm[total == 0L]
    return(out)
  }
  if (treatment == "care_entry" && x$population == "referral") {
    entry <- x$entry(x$win("cla"))
    return(treated_on(entry$day, gl))
  }
  as.integer(arm)
}

# ---- periods ----------------------------------------------------------------------

add_periods <- function(coh, r, design) {
  civ <- civil(r)
  fy <- civ$y - (civ$m < 4L)
  coh$fin_year <- sprintf("%d/%02d", fy, (fy + 1L) %% 100L)
  coh$quarter <- if (design$quarter == "calendar") {
    sprintf("%dQ%d", civ$y, (civ$m - 1L) %/% 3L + 1L)
  } else {
    sprintf("%s Q%d", coh$fin_year, ((civ$m - 4L) %% 12L) %/% 3L + 1L)
  }
  ay <- civ$y - (civ$m < 9L)
  coh$academic_year <- sprintf("%d/%02d", ay, (ay + 1L) %% 100L)
  if (!is.null(design$step_months)) {
    coh$step <- sw_step(r, as.integer(design$trial_start), design$step_months,
                        as.integer(design$trial_end))
  }
  coh
}

# ---- the cohort context: records indexed by cohort child -------------------------

# Everything an outcome scorer reads: the anchor days `r`, windows, the
# observability of a window by source, and the record tables indexed by
# cohort child (built on first use and kept).
cohort_context <- function(data, design, coh, r, ends, pop, keep) {
  x <- new.env(parent = emptyenv())
  x$data <- data
  x$design <- design
  x$coh <- coh
  x$r <- r
  x$n <- length(r)
  x$ends <- ends
  x$population <- if (identical(pop$steps, .care_steps)) "care_entry" else "referral"
  x$ts <- as.integer(design$trial_start)
  x$te <- if (is.null(design$trial_end)) ends[["cin"]] else as.integer(design$trial_end)
  x$pc <- pop$pc
  x$ref_row <- pop$ref_row[keep]
  x$dob <- pop$pc$dob[keep]
  x$edob <- pop$pc$edob[keep]
  x$win <- function(name, from = r) add_months(from, design$windows[[name]])
  x$observable <- function(source, end_day) end_day <= min(ends[source])
  ci_of_child <- function(ids) match(as.character(ids), coh$child_id)
  rf <- data$referrals
  ci_rf <- if (is.null(rf)) integer() else ci_of_child(rf$child_id)
  x$ci_of_ref <- function(rid) ci_rf[match(as.character(rid), as.character(rf$referral_id))]
  cache <- new.env(parent = emptyenv())
  x$tab <- function(what) {
    if (is.null(cache[[what]])) {
      cache[[what]] <- switch(
        what,
        refs = index_table(ci_rf, as.integer(rf$referral_date), x$n),
        # referrals leading directly to a MARAC are no re-referral (FS fn 18)
        rerefs = index_table(replace(ci_rf, as.logical(rf$marac) %in% TRUE, NA_integer_),
                             as.integer(rf$referral_date), x$n),
        cpp = index_table(x$ci_of_ref(data$cp_plans$referral_id),
                          as.integer(data$cp_plans$start), x$n),
        care = care_table(data$cla_episodes, design,
                          ci_of_child(data$cla_episodes$child_id), x$n),
        plans = {
          cpp <- data$cp_plans
          cin <- data$cin_plans
          child <- c(x$ci_of_ref(cpp$referral_id), x$ci_of_ref(cin$referral_id))
          s <- c(as.integer(cpp$start), as.integer(cin$start))
          e <- c(as.integer(cpp$end), as.integer(cin$end))
          tab <- index_table(child, s, x$n)
          list(tab = tab, s = s[tab$rows], e = e[tab$rows])
        })
    }
    cache[[what]]
  }
  # first new period of care starting in [r, hi]: its day and episode row
  x$entry <- function(hi) {
    if (identical(hi, cache$entry_hi)) return(cache$entry)
    care <- x$tab("care")
    idx <- .Call(ffi_first_in_range, care$pstart_day, care$ptab$offsets,
                 as.integer(r), as.integer(hi))
    at <- orig_row(seq_along(care$prow), idx)
    cache$entry_hi <- hi
    cache$entry <- list(day = care$pstart_day[at], row = care$prow[at])
  }
  # looked after on day d by a period that began before it
  x$in_care_at <- function(d) {
    care <- x$tab("care")
    .Call(ffi_first_overlap, care$start, care$end, care$tab$offsets,
          as.integer(d), as.integer(d) - 1L) >= 0L
  }
  x
}

# Care episodes of the cohort (short breaks excluded by default), sorted by
# child and start, with the new periods of care: an episode starts one when
# its reason for new episode is "S" or when no earlier episode of the child
# is still open on its start day. `prow` are the original rows of the
# period-starting episodes, `ptab` their offsets.
care_table <- function(cla, design, child, n) {
  keep_ep <- if (design$short_breaks == "exclude") !(cla$ls %in% design$codes$short_breaks) else
    rep(TRUE, nrow(cla))
  # same-day episodes: an S episode first, then by end day (row order never matters)
  tab <- index_table(ifelse(keep_ep, child, NA_integer_), as.integer(cla$decom), n,
                     !(cla$rne %in% "S"), as.integer(cla$dec))
  k <- tab$rows
  s <- as.integer(cla$decom[k])
  e <- as.integer(cla$dec[k])
  g <- child[k]
  new_period <- rep(TRUE, length(k))
  if (length(k)) {
    base <- min(s)
    span <- 4e6                                      # > any day range; open = span - 1
    e_key <- g * span + ifelse(is.na(e), span - 1, pmin(e - base, span - 2))
    prev <- c(-Inf, cummax(e_key)[-length(k)])       # latest end so far (sorted by child)
    same <- prev >= g * span
    new_period <- cla$rne[k] %in% "S" | !same | (prev - g * span) < (s - base)
  }
  pk <- which(new_period)
  list(tab = tab, rows = k, start = s, end = e, new_period = new_period,
       prow = k[pk], pstart_day = s[pk],
       ptab = list(offsets = as.integer(c(0L, cumsum(tabulate(g[pk], nbins = n))))))
}

# ---- outcome scorers ----------------------------------------------------------------

# Each returns list(value, in_sample, observable[, extra]) for the cohort.
outcome_scorers <- list(
  cla_18m = function(x) {
    W <- x$win("cla")
    hit <- if (identical(x$design$cla_definition, "looked_after")) {
      care <- x$tab("care")
      .Call(ffi_first_overlap, care$start, care$end, care$tab$offsets,
            as.integer(x$r), as.integer(W)) >= 0L
    } else {
      !is.na(x$entry(W)$day)
    }
    list(value = as.integer(hit), in_sample = rep(TRUE, x$n),
         observable = x$observable("ssda903", W))
  },
  cpp_duration = function(x) {
    cpp <- x$data$cp_plans
    W <- x$win("cpp_start")
    tab <- x$tab("cpp")
    idx <- .Call(ffi_first_in_range, as.integer(cpp$start[tab$rows]), tab$offsets,
                 as.integer(x$r), as.integer(W))
    has <- idx >= 0L
    s <- as.integer(cpp$start[orig_row(tab$rows, idx)])
    e <- as.integer(cpp$end[orig_row(tab$rows, idx)])
    cap <- x$win("cpp_duration_cap", from = s)
    dur <- pmax(0L, pmin(ifelse(is.na(e), cap, e), cap) - s)
    obs <- x$observable("cin", W) & (!has | x$observable("cin", cap))
    # membership is unknown until the start window is over
    list(value = as.integer(dur), in_sample = has | !x$observable("cin", W),
         observable = obs, extra = list(cpp_duration_censored = has & (is.na(e) | e > cap)))
  },
  days_cpp_18m = function(x) {
    cpp <- x$data$cp_plans
    W <- x$win("days_cpp")
    tab <- x$tab("cpp")
    d <- .Call(ffi_union_days, as.integer(cpp$start[tab$rows]), as.integer(cpp$end[tab$rows]),
               tab$offsets, as.integer(x$r), as.integer(W))
    list(value = d, in_sample = rep(TRUE, x$n), observable = x$observable("cin", W))
  },
  rereferral_18m = function(x) {
    W <- x$win("rereferral")
    tt <- toxic_trio_at_assessment(x$data, x$coh$referral_id, x$design$codes$toxic_trio)
    tab <- x$tab("rerefs")
    idx <- .Call(ffi_first_in_range, as.integer(x$data$referrals$referral_date[tab$rows]),
                 tab$offsets, as.integer(x$r + 1L), as.integer(W))
    list(value = as.integer(idx >= 0L), in_sample = tt, observable = x$observable("cin", W))
  },
  return_36m = function(x) {
    W <- x$win("return")
    p <- x$tab("plans")
    care <- x$tab("care")
    ret <- .Call(ffi_plan_return, p$s, p$e, p$tab$offsets, care$start, care$tab$offsets,
                 as.integer(x$r), as.integer(W))
    list(value = ret, in_sample = rep(TRUE, x$n),
         observable = x$observable(c("cin", "ssda903"), W))
  },
  cpp_12m = function(x) {
    W <- x$win("cpp")
    tab <- x$tab("cpp")
    idx <- .Call(ffi_first_in_range, as.integer(x$data$cp_plans$start[tab$rows]), tab$offsets,
                 as.integer(x$r), as.integer(W))
    list(value = as.integer(idx >= 0L), in_sample = rep(TRUE, x$n),
         observable = x$observable("cin", W))
  },
  days_plan_18m = function(x) {
    W <- x$win("days_plan")
    p <- x$tab("plans")
    d <- .Call(ffi_union_days, p$s, p$e, p$tab$offsets, as.integer(x$r), as.integer(W))
    list(value = d, in_sample = rep(TRUE, x$n), observable = x$observable("cin", W))
  },
  kinship_first = function(x) {
    W <- x$win("cla")
    entry <- x$entry(W)
    place <- x$data$cla_episodes$place[entry$row]
    kin <- ifelse(is.na(place), NA_integer_, as.integer(place %in% x$design$codes$kinship))
    obs <- x$observable("ssda903", W)
    # membership (entering care within the window) is unknown until it is over
    list(value = kin, in_sample = !is.na(entry$day) | !obs, observable = obs)
  },
  reunified_18m = function(x) {
    cla <- x$data$cla_episodes
    P <- x$r
    WR <- x$win("reunification")
    birth <- ifelse(is.na(x$dob), x$edob, x$dob)
    turns18 <- add_months(birth, 216L)
    in_s <- !(is.na(birth) | turns18 <= WR)
    # the period ends with the first episode from its start on that has
    # ceased with a reason other than X1
    care <- x$tab("care")
    ends <- !is.na(care$end) & !is.na(cla$rec[care$rows]) & cla$rec[care$rows] != "X1"
    g <- rep(seq_len(x$n), diff(care$tab$offsets))
    etab <- list(offsets = as.integer(c(0L, cumsum(tabulate(g[ends], nbins = x$n)))))
    idx <- .Call(ffi_first_in_range, care$start[ends], etab$offsets, as.integer(P),
                 rep(.Machine$integer.max, x$n))
    erow <- orig_row(care$rows[ends], idx)
    dec_p <- as.integer(cla$dec[erow])
    home <- !is.na(erow) & dec_p <= WR & cla$rec[erow] %in% x$design$codes$reunification
    list(value = as.integer(home), in_sample = in_s,
         observable = !is.na(WR) & x$observable("ssda903", WR))
  },
  absence = function(x) {
    absence_terms(x$data$absence, x$coh$child_id, x$r, x$design$absence_terms,
                  x$design$term_dates)
  }
)

# ---- covariates ---------------------------------------------------------------------

add_covariates <- function(coh, x) {
  design <- x$design
  n <- x$n
  cov <- child_covariates(x$pc$ch, coh$child_id, x$r, x$pc$over_time, design)
  for (nm in names(cov)) coh[[nm]] <- cov[[nm]]
  coh$age_band <- factor(findInterval(coh$age, design$age_bands),
                         levels = seq_along(design$age_bands),
                         labels = age_band_labels(design$age_bands, design$age_range[2]))
  coh$n_previous_cpp <- if (is.null(x$data$cp_plans) || is.null(x$data$referrals))
    rep(NA_integer_, n) else previous_cpp(x$data$cp_plans, x$tab("cpp"), x$r)
  coh$previous_cpp <- as.integer(coh$n_previous_cpp > 0L)   # CEM (FS p. 9)
  pn <- x$data$referrals$primary_need[x$ref_row]
  coh$primary_need <- factor(if (is.null(pn)) rep(NA_character_, n) else pn,
                             levels = paste0("N", 0:9), labels = .primary_need_labels)
  lac <- la_covariates(x$data$la_covariates, coh$la, x$r)
  for (nm in names(lac)) coh[[nm]] <- lac[[nm]]
  # "continuous variable based on all children in our sample" (FS, FV):
  # shares the user does not supply come from the cohort itself
  own <- sample_la_shares(coh, x$r)
  for (nm in names(own)) {
    given <- x$data$la_covariates[[nm]]
    if (is.null(given) || all(is.na(given))) coh[[nm]] <- own[[nm]]
  }
  attr(coh, "la_shares_from_sample") <- names(own)[vapply(names(own), function(nm) {
    given <- x$data$la_covariates[[nm]]
    is.null(given) || all(is.na(given))
  }, TRUE)]
  coh
}

# LA shares of FSM-eligible (fsm_ever) and White British (CIN code WBRI)
# children among the cohort's children referred in each authority and
# calendar quarter, known (as the protocols take "the most recently
# available measurement that took place prior to the referral date") from
# the first day of the next quarter; gaps interpolated and the ends carried
# as for supplied LA covariates (la_covariates()).
sample_la_shares <- function(coh, r) {
  if (!nrow(coh)) return(list(prop_fsm = numeric(), prop_white_british = numeric()))
  civ <- civil(r)
  q <- civ$y * 4L + (civ$m - 1L) %/% 3L
  key <- interaction(coh$la, q, drop = TRUE, lex.order = TRUE)
  share <- function(v) {
    s <- tapply(v, key, function(z) if (all(is.na(z))) NA_real_ else mean(z, na.rm = TRUE))
    as.numeric(s)
  }
  eth <- as.character(coh$ethnicity_cin)
  eth[eth %in% c("REFU", "NOBT")] <- NA
  first <- !duplicated(key)
  lk <- key[first]
  qn <- q[first][order(key[first])] + 1L                 # the next quarter
  lac <- data.frame(la_code = as.character(coh$la[first][order(key[first])]),
                    month = day_to_date(days_from_civil(qn %/% 4L, (qn %% 4L) * 3L + 1L, 1L)),
                    prop_fsm = share(as.numeric(coh$fsm_ever)),
                    prop_white_british = share(as.numeric(eth == "WBRI")),
                    stringsAsFactors = FALSE)
  out <- la_covariates(lac, coh$la, r)
  out[c("prop_fsm", "prop_white_british")]
}

# The 30% rule (FS and FV "Handling missing data": "will drop covariates
# that are missing at a rate greater than 30%"), applied to the sample each
# outcome is analysed on (the children with a value of it; for absence, the
# children with an absence rate) and to the whole cohort. Levels that record
# no information count as missing: ethnicity "Missing" (refused, not
# obtained, conflicting), gender "missing" (code 4) and primary need "not
# stated". FSM is structurally missing below school age and counts too.
# Columns stay in the cohort (multiple imputation and CEM use them); what is
# dropped is reported per sample.
.missing_like <- list(ethnic_group = "Missing", gender = "missing",
                      primary_need = "not stated", ethnicity_cin = c("REFU", "NOBT"))

drop_missing_covariates <- function(coh, design, outcomes, absence) {
  cov_cols <- intersect(c("gender", "ethnic_group", "ethnicity_cin", "age", "disabled", "fsm",
                          "fsm_ever", "uasc",
                          "n_previous_cpp", "previous_cpp", "primary_need", "prop_fsm",
                          "prop_white_british", "other_innovation_programme"),
                        names(coh))
  is_miss <- lapply(coh[cov_cols], function(v) {
    m <- is.na(v)
    if (is.factor(v)) m <- m | as.integer(v) %in% which(levels(v) %in% unlist(.missing_like))
    m
  })
  samples <- list(cohort = rep(TRUE, nrow(coh)))
  for (o in setdiff(outcomes, "absence")) samples[[o]] <- !is.na(coh[[o]])
  if ("absence" %in% outcomes && !is.null(absence)) {
    samples$absence <- coh$child_id %in% absence$child_id[!is.na(absence$absence_rate)]
  }
  rows <- lapply(names(samples), function(s) {
    in_s <- samples[[s]]
    n <- sum(in_s)
    nm <- vapply(is_miss, function(m) sum(m & in_s), 0L)
    share <- if (n) nm / n else rep(0, length(nm))
    data.frame(sample = rep(s, length(cov_cols)), covariate = cov_cols, n = rep(n, length(cov_cols)),
               n_missing = as.integer(nm), share = unname(share),
               dropped = unname(n > 0 & share > design$max_missing),
               stringsAsFactors = FALSE)
  })
  tab <- do.call(rbind, rows)
  if (is.null(tab)) tab <- data.frame(sample = character(), covariate = character(),
                                      n = integer(), n_missing = integer(), share = numeric(),
                                      dropped = logical(), stringsAsFactors = FALSE)
  tab$reason <- ifelse(tab$dropped,
                       sprintf("%.1f%% missing > %s%%", 100 * tab$share,
                               format(100 * design$max_missing)), NA_character_)
  rownames(tab) <- NULL
  drop <- lapply(split(tab$covariate[tab$dropped], factor(tab$sample[tab$dropped],
                                                           levels = names(samples))), unique)
  msg <- tab[tab$dropped, , drop = FALSE]
  if (nrow(msg)) {
    by_s <- split(paste0(msg$covariate, " (", sprintf("%.1f", 100 * msg$share), "%)"),
                  factor(msg$sample, levels = names(samples)))
    by_s <- by_s[lengths(by_s) > 0L]
    message(sprintf("Covariates missing for more than %s%% of the sample, dropped from its models: %s.",
                    format(100 * design$max_missing),
                    paste(names(by_s), vapply(by_s, paste, "", collapse = ", "),
                          sep = ": ", collapse = "; ")))
  }
  miss <- stats::setNames(tab$share[tab$sample == "cohort"], tab$covariate[tab$sample == "cohort"])
  list(table = tab, drop = drop, miss = miss)
}

.primary_need_labels <- c("not stated", "abuse or neglect",
                          "child's disability or illness",
                          "parental disability or illness",
                          "family in acute stress", "family dysfunction",
                          "socially unacceptable behaviour", "low income",
                          "absent parenting", "cases other than children in need")

.gender_labels <- c("not recorded/unborn", "male", "female", "indeterminate",
                    "missing")

# ---- input checks -----------------------------------------------------------


# ---- input checks -----------------------------------------------------------

check_columns <- function(data, outcomes, design) {
  need <- list(children = c("child_id", "la_code", "dob"))
  if (!is.null(data$referrals) || !identical(outcomes, "reunified_18m"))
    need$referrals <- c("referral_id", "child_id", "referral_date")
  if (any(c("cla_18m", "return_36m", "kinship_first", "reunified_18m") %in% outcomes))
    need$cla_episodes <- c("child_id", "decom", "dec", "ls", "rne",
                           if (any(c("kinship_first", "reunified_18m") %in% outcomes)) c("place", "rec"))
  if (any(c("cpp_duration", "days_cpp_18m", "return_36m", "cpp_12m", "days_plan_18m") %in% outcomes))
    need$cp_plans <- c("referral_id", "start", "end")
  if (any(c("return_36m", "days_plan_18m") %in% outcomes))
    need$cin_plans <- c("referral_id", "start", "end")
  if ("rereferral_18m" %in% outcomes) {
    need$assessments <- c("assessment_id", "referral_id", "assessment_start")
    need$assessment_factors <- c("assessment_id", "factor")
  }
  if ("absence" %in% outcomes)
    need$absence <- c("child_id", "academic_year", "term", "sessions_possible", "unauth_sessions")
  if (design$programme == "FV" && design$require_open_after_assessment &&
      !identical(outcomes, "reunified_18m") &&
      !any(c("referral_nfa", "closure_reason") %in% names(data$referrals))) {
    stop("Table `referrals` has neither `referral_nfa` nor `closure_reason`, so the Family Valued sample rule \"case open after assessment\" cannot be applied.\nFix: add them, or build the design with require_open_after_assessment = FALSE.",
         call. = FALSE)
  }
  for (t in names(need)) {
    miss <- setdiff(need[[t]], names(data[[t]]))
    if (length(miss)) {
      stop(sprintf("Table `%s` lacks column%s %s.\nFix: add %s (see sfp_tables(\"%s\")).",
                   t, if (length(miss) > 1) "s" else "",
                   paste0("`", miss, "`", collapse = ", "),
                   if (length(miss) > 1) "them" else "it", t), call. = FALSE)
    }
    for (col in intersect(need[[t]], c("dob", "referral_date", "decom", "dec",
                                      "start", "end", "assessment_start"))) {
      if (!inherits(data[[t]][[col]], "Date")) {
        stop(sprintf("Table `%s`, column `%s` holds %s values, not dates.\nFix: build the data with sfp_data(), which converts dates.",
                     t, col, class(data[[t]][[col]])[1]), call. = FALSE)
      }
    }
  }
  invisible(TRUE)
}

# Case still open after assessment (FV p. 10): not NFA at referral and not
# closed for "no further action" / early help after assessment (RC8, RC9).

referral_open_after_assessment <- function(rf, design) {
  nfa <- if ("referral_nfa" %in% names(rf)) as.logical(rf$referral_nfa) %in% TRUE else
    rep(FALSE, nrow(rf))
  closed <- if ("closure_reason" %in% names(rf))
    rf$closure_reason %in% sfp_codes("closed_after_assessment") else rep(FALSE, nrow(rf))
  !nfa & !closed
}

# One data end per source, each the last day its return covers: "cin" (CIN
# census: referrals, plans, assessments), "ssda903" (care episodes) and "npd"
# (school absence). design$data_end is NULL (each from its records: the
# latest referral or closure day, the latest care start or end day), one
# date for every source, or a named Date vector (names among cin, ssda903,
# npd; missing ones from the records). A source without dates takes the
# latest of the others.
source_ends <- function(data, design) {
  latest <- function(t, cols) {
    x <- data[[t]]
    if (is.null(x)) return(NA_real_)
    v <- unlist(lapply(intersect(cols, names(x)), function(cl) as.integer(x[[cl]])))
    v <- suppressWarnings(max(v, na.rm = TRUE))
    if (is.finite(v)) v else NA_real_
  }
  ends <- c(cin = latest("referrals", c("referral_date", "closure_date")),
            ssda903 = latest("cla_episodes", c("decom", "dec")), npd = NA_real_)
  de <- design$data_end
  if (!is.null(de)) {
    if (is.null(names(de)) || length(de) == 1L && !nzchar(names(de) %||% "")) {
      ends[] <- as.numeric(de[1])
    } else {
      ends[names(de)] <- as.numeric(de)
    }
  }
  if (all(is.na(ends))) {
    stop("The records hold no dates, so the end of the data is unknown.\nFix: give `data_end` to the design.",
         call. = FALSE)
  }
  ends[is.na(ends)] <- max(ends, na.rm = TRUE)
  stats::setNames(as.integer(ends), names(ends))
}

# ---- index vectors ----------------------------------------------------------

# Rows of a table sorted by cohort child (1..n, NA = not in the cohort),
# start day and any further keys in `...`, with the 0-based offsets of each child's rows.
index_table <- function(child, start, n, ...) {
  child <- as.integer(child)
  k <- which(!is.na(child))
  ties <- lapply(list(...), function(v) v[k])   # further sort keys for same-day rows
  k <- k[do.call(order, c(list(child[k], start[k]), ties, method = "radix"))]
  list(rows = k,
       offsets = as.integer(c(0L, cumsum(tabulate(child[k], nbins = n)))))
}

# Original table row of 0-based sorted positions from C (-1 = none -> NA).
orig_row <- function(rows, idx) {
  i <- rows[pmax(idx, 0L) + 1L]
  i[idx < 0L] <- NA_integer_
  i
}

# ---- dates on integer day numbers -----------------------------------------

day_to_date <- function(x) structure(as.numeric(x), class = "Date")

# Civil date of day numbers (days since 1970-01-01); H. Hinnant's algorithm.
civil <- function(z) {
  z <- as.integer(z) + 719468L
  era <- z %/% 146097L
  doe <- z - era * 146097L
  yoe <- (doe - doe %/% 1460L + doe %/% 36524L - doe %/% 146096L) %/% 365L
  doy <- doe - (365L * yoe + yoe %/% 4L - yoe %/% 100L)
  mp <- (5L * doy + 2L) %/% 153L
  d <- doy - (153L * mp + 2L) %/% 5L + 1L
  m <- mp + 3L - 12L * (mp >= 10L)
  y <- yoe + era * 400L + (m <= 2L)
  list(y = as.integer(y), m = as.integer(m), d = as.integer(d))
}

days_from_civil <- function(y, m, d) {
  y <- as.integer(y) - (m <= 2L)
  era <- y %/% 400L
  yoe <- y - era * 400L
  mp <- (as.integer(m) + 9L) %% 12L
  doy <- (153L * mp + 2L) %/% 5L + as.integer(d) - 1L
  doe <- yoe * 365L + yoe %/% 4L - yoe %/% 100L + doy
  as.integer(era * 146097L + doe - 719468L)
}

days_in_month <- function(y, m) {
  leap <- (y %% 4L == 0L & y %% 100L != 0L) | y %% 400L == 0L
  c(31L, 28L, 31L, 30L, 31L, 30L, 31L, 31L, 30L, 31L, 30L, 31L)[m] + (m == 2L & leap)
}

# Day number plus m calendar months, clamped to the end of the month
# (2020-08-31 + 6 months = 2021-02-28; 2020-02-29 + 12 months = 2021-02-28).
add_months <- function(day, m) {
  day <- as.integer(day)
  c <- civil(day)
  tm <- c$m - 1L + as.integer(m)
  y <- c$y + tm %/% 12L
  mo <- tm %% 12L + 1L
  out <- days_from_civil(y, mo, pmin(c$d, days_in_month(y, mo)))
  out[is.na(day)] <- NA_integer_
  out
}

# Age in completed years on day `on` of a child born on day `born`. A 29
# February birthday is reached on 1 March in other years.
age_years <- function(born, on) {
  b <- civil(born)
  o <- civil(on)
  age <- o$y - b$y - (o$m < b$m | (o$m == b$m & o$d < b$d))
  age[is.na(born) | is.na(on)] <- NA_integer_
  as.integer(age)
}

# ---- covariates -------------------------------------------------------------

latest_non_na <- function(ch, col, ids, over_time) {
  v <- as.integer(ch[[col]])
  k <- which(!is.na(v))
  if (over_time) k <- k[order(ch$recorded_date[k], decreasing = TRUE, method = "radix")]
  v[k][match(ids, ch$child_id[k])]
}

gender_code <- function(x) {
  x <- toupper(as.character(x))
  out <- rep(4L, length(x))
  out[x %in% "0"] <- 0L
  out[x %in% c("1", "M")] <- 1L
  out[x %in% c("2", "F")] <- 2L
  out[x %in% c("9", "U")] <- 3L
  out
}

# One value per child from values over time: the single value other than the
# missing-like ones; conflicting values give `conflict`; none gives the best
# missing-like value (`fallback`, in order of preference).
resolve_over_time <- function(g, v, missing_like, conflict, fallback, n) {
  v <- as.integer(v)
  ok <- !is.na(g) & !is.na(v) & !v %in% missing_like
  u <- unique(g[ok] * 64L + v[ok])                 # distinct (child, value) pairs
  ug <- u %/% 64L
  uv <- u %% 64L
  k <- tabulate(ug, nbins = n)
  out <- rep(fallback[length(fallback)], n)
  for (f in rev(fallback)) {
    has <- unique(g[!is.na(g) & v %in% f])
    out[has] <- f
  }
  one <- k[ug] == 1L
  out[ug[one]] <- uv[one]
  out[k > 1L] <- conflict
  out
}

# Maximum of a 0/1 (logical) column over rows: 1 if any 1, 0 if any 0, else NA.
group_max01 <- function(g, x, n) {
  x <- as.integer(x)
  ok <- !is.na(g) & !is.na(x)
  any1 <- tabulate(g[ok & x == 1L], nbins = n) > 0L
  any0 <- tabulate(g[ok], nbins = n) > 0L
  ifelse(any1, 1L, ifelse(any0, 0L, NA_integer_))
}

child_covariates <- function(ch, ids, r, over_time, design) {
  n <- length(ids)
  g <- match(as.character(ch$child_id), ids)
  gen <- resolve_over_time(g, gender_code(ch$gender_raw), c(0L, 4L), 4L, c(0L, 4L), n)
  eth_levels <- levels(ethnic_group(character()))
  eth <- as.integer(ethnic_group(ch$ethnicity, chne = design$chne))   # 6 = Missing
  eth <- eth_levels[resolve_over_time(g, eth, 6L, 6L, 6L, n)]
  # rows that count for "maximum up to the referral"
  if (over_time) {
    rd <- as.integer(ch$recorded_date)
    upto <- !is.na(g) & rd <= r[g]
    has_upto <- tabulate(g[upto], nbins = n) > 0L
    first_rd <- rep(NA_integer_, n)
    k <- which(!is.na(g))
    k <- k[order(rd[k], method = "radix")]
    first_rd[g[k][!duplicated(g[k])]] <- rd[k][!duplicated(g[k])]
    use <- !is.na(g) & (upto | (!has_upto[g] & rd == first_rd[g]))
    gu <- ifelse(use, g, NA_integer_)
  } else {
    gu <- g
  }
  dis <- if ("disability" %in% names(ch)) disabled_flag(ch$disability) else rep(NA, nrow(ch))
  fsm <- if (design$fsm_column %in% names(ch)) ch[[design$fsm_column]] else rep(NA, nrow(ch))
  fsm_ever <- if ("fsm_ever" %in% names(ch)) ch$fsm_ever else fsm
  uasc <- if ("uasc" %in% names(ch)) ch$uasc else rep(NA, nrow(ch))
  # CIN census categories: refused/not obtained only where nothing else is
  # recorded, conflicting codes missing
  cin <- sfp_codes("ethnicity")
  ec <- match(toupper(trimws(as.character(ch$ethnicity))), cin)
  miss_codes <- match(c("REFU", "NOBT"), cin)
  ec <- resolve_over_time(g, ec, miss_codes, NA_integer_, c(miss_codes, NA_integer_), n)
  list(
    gender = factor(gen, levels = 0:4, labels = .gender_labels),
    ethnic_group = factor(eth, levels = levels(ethnic_group(character()))),
    ethnicity_cin = factor(cin[ec], levels = cin),
    disabled = group_max01(gu, dis, n),
    fsm = group_max01(gu, fsm, n),
    fsm_ever = group_max01(gu, fsm_ever, n),
    uasc = group_max01(gu, uasc, n)
  )
}

# Disabled: any code other than NONE; only NONE gives 0; no code gives NA.
disabled_flag <- function(x) {
  if (is.character(x) || is.factor(x)) {
    x <- strsplit(ifelse(is.na(x), "", as.character(x)), "[;,][[:space:]]*")
  }
  len <- lengths(x)
  codes <- toupper(as.character(unlist(x, use.names = FALSE)))
  row <- rep(seq_along(x), len)
  ok <- !is.na(codes) & nzchar(codes)
  any_dis <- tabulate(row[ok & codes != "NONE"], nbins = length(x)) > 0L
  any_code <- tabulate(row[ok], nbins = length(x)) > 0L
  ifelse(any_dis, 1L, ifelse(any_code, 0L, NA_integer_))
}

# CPPs before the referral: counted in the records, or the recorded
# NumberOfPreviousCPP of the first CPP on or after the referral if larger.
previous_cpp <- function(cpp, tab, r) {
  n <- length(r)
  big <- rep(.Machine$integer.max, n)
  idx <- .Call(ffi_first_in_range, as.integer(cpp$start[tab$rows]), tab$offsets,
               as.integer(r), big)
  lo <- tab$offsets[-(n + 1L)]
  hi <- tab$offsets[-1L]
  counted <- ifelse(idx >= 0L, idx, hi) - lo
  if ("n_previous_cpp" %in% names(cpp)) {
    rec <- as.integer(cpp$n_previous_cpp[orig_row(tab$rows, idx)])
    counted <- pmax(counted, rec, na.rm = TRUE)
  }
  as.integer(counted)
}

# LA covariates at the latest month on or before the referral. Gaps are
# filled by linear interpolation (the innovation-programme flag is carried
# forward), and values are carried backward/forward at the ends (FS p. 16).
la_covariates <- function(lac, la, r) {
  vars <- c("prop_fsm", "prop_white_british", "other_innovation_programme")
  out <- list(prop_fsm = rep(NA_real_, length(la)),
              prop_white_british = rep(NA_real_, length(la)),
              other_innovation_programme = rep(NA, length(la)))
  if (is.null(lac) || !length(la)) return(out)
  month <- as.integer(lac$month)
  for (code in intersect(unique(la), unique(as.character(lac$la_code)))) {
    rows <- which(lac$la_code == code)
    rows <- rows[order(month[rows])]
    m <- month[rows]
    who <- which(la == code)
    pos <- pmax(findInterval(r[who], m), 1L)       # before the first month: next one
    for (v in intersect(vars, names(lac))) {
      x <- lac[[v]][rows]
      ok <- !is.na(x)
      if (!any(ok)) next
      logical_v <- is.logical(x)
      filled <- if (sum(ok) == 1L) rep(as.numeric(x[ok]), length(x)) else
        stats::approx(m[ok], as.numeric(x[ok]), xout = m, rule = 2,
                      method = if (logical_v) "constant" else "linear", f = 0,
                      ties = mean)$y
      out[[v]][who] <- if (logical_v) as.logical(filled[pos]) else filled[pos]
    }
  }
  out
}

# Toxic-trio factor at the end of the first assessment of the first referral.
toxic_trio_at_assessment <- function(data, referral_id, codes) {
  a <- data$assessments
  f <- data$assessment_factors
  k <- which(as.character(a$referral_id) %in% referral_id)
  k <- k[order(as.character(a$referral_id[k]), as.integer(a$assessment_start[k]),
               as.character(a$assessment_id[k]), method = "radix")]
  first <- k[!duplicated(a$referral_id[k])]
  aid <- as.character(a$assessment_id[first])[match(referral_id, as.character(a$referral_id[first]))]
  hit <- unique(as.character(f$assessment_id[f$factor %in% codes]))
  !is.na(aid) & aid %in% hit
}

# ---- absence ----------------------------------------------------------------

# Easter Sunday (day number) of year y: anonymous Gregorian algorithm.
easter_sunday <- function(y) {
  a <- y %% 19L; b <- y %/% 100L; c <- y %% 100L
  d <- b %/% 4L; e <- b %% 4L; f <- (b + 8L) %/% 25L
  g <- (b - f + 1L) %/% 3L
  h <- (19L * a + b - d - g + 15L) %% 30L
  i <- c %/% 4L; k <- c %% 4L
  l <- (32L + 2L * e + 2L * i - h - k) %% 7L
  m <- (a + 11L * h + 22L * l) %/% 451L
  month <- (h + l - 7L * m + 114L) %/% 31L
  day <- (h + l - 7L * m + 114L) %% 31L + 1L
  days_from_civil(y, month, day)
}

# Start days of the terms of academic year y (starting in September of y):
# autumn 1 September, spring 1 January, summer Easter Monday -- the real
# term starts ("the closest school term beginning after" the referral, FS;
# "the three closest school terms beginning after", FV), not the census
# collection windows. `dates` (design$term_dates: academic year, term,
# start) replaces the starts it lists.
term_starts <- function(y, dates = NULL) {
  u <- unique(y)
  i <- match(y, u)
  out <- cbind(autumn = days_from_civil(u, 9L, 1L)[i], spring = days_from_civil(u + 1L, 1L, 1L)[i],
               summer = easter_sunday(u + 1L)[i] + 1L)
  if (!is.null(dates) && nrow(dates)) {
    key <- 3L * dates$year + dates$term - 1L
    for (t in 1:3) {
      m <- match(3L * y + t - 1L, key)
      out[!is.na(m), t] <- dates$start[m[!is.na(m)]]
    }
  }
  out
}

# First calendar year of an academic year written "2019/20", "2019-20", "201920"
# (NA when it has no digits); one parser for absence records and term dates.
academic_year_start <- function(x) {
  y <- suppressWarnings(as.integer(substr(gsub("[^0-9]", "", as.character(x)), 1L, 4L)))
  y
}

# The `k` terms starting after each referral, matched with the absence
# records (Summer and Summer6th added together). Terms are numbered by an
# ordinal 3 * academic year + (0 autumn, 1 spring, 2 summer), so matching a
# record to a child's term index is integer arithmetic: the record's ordinal
# minus the ordinal of the child's first term after the referral, plus one.
absence_terms <- function(ab, ids, r, k, dates = NULL) {
  n <- length(ids)
  empty <- data.frame(child_id = character(), term_index = integer(),
                      academic_year = character(), term = character(),
                      term_start = as.Date(character()), days_since_referral = integer(),
                      sessions_possible = integer(), unauth_sessions = integer(),
                      absence_rate = numeric(), stringsAsFactors = FALSE)
  if (!n) return(empty)
  civ <- civil(r)
  y0 <- civ$y - (civ$m < 9L) - 1L                 # the year before the referral's
  cand <- cbind(term_starts(y0, dates), term_starts(y0 + 1L, dates),
                term_starts(y0 + 2L, dates))
  first <- rowSums(cand <= r) + 1L                 # later terms are a suffix
  ord0 <- 3L * y0 + first - 1L                     # ordinal of term 1
  # the records: child, academic year and term as integers (codes parsed once)
  ci <- match(as.character(ab$child_id), ids)
  ay <- as.character(ab$academic_year)
  ay_u <- unique(ay)
  y <- academic_year_start(ay_u)[match(ay, ay_u)]
  tm <- as.character(ab$term)
  tm_u <- unique(tm)
  t <- match(tolower(tm_u), c("autumn", "spring", "summer", "summer6th"))[match(tm, tm_u)]
  t[t == 4L] <- 3L
  sums <- .Call(ffi_term_sums, ci, as.integer(y), as.integer(t), as.integer(ord0),
                as.integer(k), as.integer(ab$sessions_possible), as.integer(ab$unauth_sessions))
  cell <- which(sums[[1]] > 0L)
  if (!length(cell)) return(empty)
  child <- (cell - 1L) %/% k + 1L
  idx <- (cell - 1L) %% k + 1L
  o <- ord0[child] + idx - 1L                      # term ordinal
  yy <- o %/% 3L
  tt <- o %% 3L + 1L
  start <- term_starts(yy, dates)[cbind(seq_along(yy), tt)]
  sp <- cbind(sums[[2]][cell], sums[[3]][cell])
  out <- data.frame(
    child_id = ids[child],
    term_index = idx,
    academic_year = sprintf("%d/%02d", yy, (yy + 1L) %% 100L),
    term = c("autumn", "spring", "summer")[tt],
    term_start = day_to_date(start),
    days_since_referral = as.integer(start - r[child]),
    sessions_possible = as.integer(sp[, 1]),
    unauth_sessions = as.integer(sp[, 2]),
    stringsAsFactors = FALSE
  )
  out$absence_rate <- ifelse(!is.na(out$sessions_possible) & out$sessions_possible > 0,
                             100 * out$unauth_sessions / out$sessions_possible, NA_real_)
  rownames(out) <- NULL
  out
}

# One rate per child over the terms of the panel (FS outcome table: "the
# percentage of sessions missed due to unauthorised absence out of all the
# school sessions the child was expected to attend for the three terms"):
# 100 x unauthorised / possible sessions summed over the terms with a
# record; NA without records, without a possible session, or when a term's
# count is missing.
absence_rate_per_child <- function(panel, ids) {
  n <- length(ids)
  out <- rep(NA_real_, n)
  if (!nrow(panel)) return(out)
  g <- match(panel$child_id, ids)
  s <- rowsum(cbind(as.numeric(panel$sessions_possible), as.numeric(panel$unauth_sessions)), g,
              reorder = FALSE)
  gi <- as.integer(rownames(s))
  ok <- !is.na(s[, 1]) & s[, 1] > 0
  out[gi[ok]] <- 100 * s[ok, 2] / s[ok, 1]
  out
}

# ---- exclusion flow ---------------------------------------------------------

build_flow <- function(la, arm, reason, keep, coh, outcomes, absence, steps) {
  arm_levels <- c("control", "treated", "unassigned")
  ai <- ifelse(is.na(arm), 3L, ifelse(arm == 1L, 2L, 1L))
  la_lab <- ifelse(is.na(la), "(unknown)", la)
  la_levels <- sort(unique(la_lab))
  cell <- (match(la_lab, la_levels) - 1L) * 3L + ai
  ncell <- 3L * length(la_levels)
  tab_cells <- function(cells) {
    tab <- tabulate(cells, nbins = ncell)
    nz <- which(tab > 0L)
    if (!length(nz)) return(NULL)
    data.frame(la = la_levels[(nz - 1L) %/% 3L + 1L], arm = arm_levels[(nz - 1L) %% 3L + 1L],
               Freq = tab[nz], stringsAsFactors = FALSE)
  }
  count <- function(sel) tab_cells(cell[sel])
  rows <- list()
  add <- function(stage, step, tab) {
    if (is.null(tab) || !nrow(tab)) return()
    rows[[length(rows) + 1L]] <<- data.frame(stage = stage, step = step, la = tab$la,
                                              arm = tab$arm, n = as.integer(tab$Freq),
                                              stringsAsFactors = FALSE)
  }
  all <- rep(TRUE, length(la))
  add("population", "children in the records", count(all))
  for (s in steps) add("population", s, count(reason %in% s))
  in_c <- seq_along(la) %in% keep
  add("population", "cohort", count(in_c))
  # outcome samples, among the cohort
  cell_c <- cell[keep]
  count_c <- function(sel) tab_cells(cell_c[sel])
  for (o in setdiff(outcomes, "absence")) {
    if (!o %in% names(coh)) next
    obs <- coh[[paste0(o, "_observable")]]
    v <- coh[[o]]
    add(o, "cohort", count_c(rep(TRUE, nrow(coh))))
    add(o, .outcome_defs[[o]]$outside %||% "outside the outcome's sample", count_c(is.na(obs)))
    add(o, "window not yet observable", count_c(obs %in% FALSE))
    add(o, "missing outcome", count_c(obs %in% TRUE & is.na(v)))
    add(o, "analysed", count_c(!is.na(v)))
    if (o == "cla_18m" && !is.null(coh$in_care_at_referral)) {
      add(o, "of which in care at referral (kept)",
          count_c(!is.na(v) & coh$in_care_at_referral))
    }
  }
  if ("absence" %in% outcomes) {
    has <- coh$child_id %in% absence$child_id[!is.na(absence$absence_rate)]
    add("absence", "cohort", count_c(rep(TRUE, nrow(coh))))
    add("absence", "no absence record in the terms after referral", count_c(!has))
    add("absence", "analysed", count_c(has))
  }
  out <- if (length(rows)) do.call(rbind, rows) else
    data.frame(stage = character(), step = character(), la = character(),
               arm = character(), n = integer(), stringsAsFactors = FALSE)
  rownames(out) <- NULL
  class(out) <- c("sfp_flow", "data.frame")
  out
}

#' Exclusion flow of a cohort
#'
#' The table that accounts for every child from the records to the cohort and
#' to each outcome's analysed sample, per LA and arm. Population stage: the
#' first row of each LA and arm (`"children in the records"`) equals the sum
#' of the exclusion steps and `"cohort"`. Outcome stages: `"cohort"` equals
#' the children outside the outcome's sample (one step named for the reason,
#' e.g. `"turns 18 within the window"`; see [outcome_table()]) + `"window
#' not yet observable"` + `"missing outcome"`
#' + `"analysed"`. Steps starting with `"of which"` are sub-counts of the
#' step before them (`cla_18m`: the analysed children already looked after
#' on the referral day, kept and scored by the new-period rule), not part of
#' the sum. Arms are those of the cohort's treatment definition; excluded
#' children are assigned by their first referral in the trial period (the
#' care start for the reunification population) and go-live date,
#' `"unassigned"` if they have none.
#'
#' @param cohort An `sfp_cohort` from [build_cohort()].
#' @param stage `NULL` for every stage, or `"population"` or an outcome name.
#' @param by `"la_arm"` (one row per step, LA and arm) or `"total"` (one row
#'   per step).
#' @return A data frame with columns `stage`, `step`, (`la`, `arm`) and `n`.
#' @examples
#' children <- data.frame(child_id = c("a", "b"), la_code = "301",
#'                        dob = as.Date(c("2012-05-01", "1990-01-01")),
#'                        gender_raw = "1", ethnicity = "WBRI")
#' referrals <- data.frame(referral_id = c("r1", "r2"), child_id = c("a", "b"),
#'                         referral_date = as.Date("2019-09-01"),
#'                         closure_date = as.Date("2019-12-01"))
#' cla <- data.frame(child_id = "a", decom = as.Date("2020-01-15"),
#'                   dec = as.Date("2020-06-01"), rne = "S", ls = "C2",
#'                   place = "U1", rec = "E4A")
#' rollout <- data.frame(la_code = "301", programme = "FS", role = "treated",
#'                       go_live_date = as.Date("2020-01-01"))
#' d <- sfp_data(children = children, referrals = referrals,
#'               cla_episodes = cla, rollout = rollout)
#' design <- design_family_safeguarding(d, data_end = as.Date("2022-03-31"))
#' cohort <- build_cohort(d, design, outcomes = "cla_18m")
#' exclusion_flow(cohort, by = "total")
#' @export
exclusion_flow <- function(cohort, stage = NULL, by = c("la_arm", "total")) {
  if (!inherits(cohort, "sfp_cohort")) {
    stop_arg("cohort", "must be an `sfp_cohort`", "build it with build_cohort().")
  }
  by <- match.arg(by)
  flow <- attr(cohort, "exclusion_flow")
  if (!is.null(stage)) {
    if (!is.character(stage) || length(stage) != 1L || !stage %in% flow$stage) {
      stop_arg("stage", "must be \"population\" or one of the cohort's outcomes",
               paste0("choose among ", paste(unique(flow$stage), collapse = ", "), "."))
    }
    flow <- flow[flow$stage == stage, , drop = FALSE]
  }
  if (by == "total") {
    key <- paste(flow$stage, flow$step, sep = "\r")
    tot <- tapply(flow$n, factor(key, levels = unique(key)), sum)
    first <- !duplicated(key)
    flow <- data.frame(stage = flow$stage[first], step = flow$step[first],
                       n = as.integer(tot), stringsAsFactors = FALSE)
  }
  rownames(flow) <- NULL
  class(flow) <- setdiff(class(flow), "sfp_flow")
  flow
}

#' Absence panel of a cohort
#'
#' The long table of unauthorised absence for the school terms starting after
#' each child's referral (up to three rows per child): `child_id`,
#' `term_index` (1-3), `academic_year`, `term` (autumn, spring, summer),
#' `term_start`, `days_since_referral` (the protocols' control for the time
#' since referral), `sessions_possible`, `unauth_sessions` and `absence_rate`
#' (100 x unauthorised / possible sessions; `NA` when no session was
#' possible). Terms without a record have no row.
#'
#' @param cohort An `sfp_cohort` built with the `"absence"` outcome.
#' @return A data frame, one row per child and term.
#' @examples
#' children <- data.frame(child_id = "a", la_code = "301",
#'                        dob = as.Date("2012-05-01"), gender_raw = "2",
#'                        ethnicity = "WBRI")
#' referrals <- data.frame(referral_id = "r1", child_id = "a",
#'                         referral_date = as.Date("2019-09-01"),
#'                         closure_date = as.Date("2019-10-01"))
#' absence <- data.frame(child_id = "a", academic_year = "2019/20",
#'                       term = c("spring", "summer", "summer6th"),
#'                       sessions_possible = c(120L, 60L, 50L),
#'                       unauth_sessions = c(6L, 3L, 0L))
#' rollout <- data.frame(la_code = "301", programme = "FS", role = "treated",
#'                       go_live_date = as.Date("2020-01-01"))
#' d <- sfp_data(children = children, referrals = referrals, absence = absence,
#'               rollout = rollout)
#' cohort <- build_cohort(d, design_family_safeguarding(d), outcomes = "absence")
#' absence_panel(cohort)
#' @export
absence_panel <- function(cohort) {
  if (!inherits(cohort, "sfp_cohort")) {
    stop_arg("cohort", "must be an `sfp_cohort`", "build it with build_cohort().")
  }
  ab <- attr(cohort, "absence")
  if (is.null(ab)) {
    stop_arg("cohort", "was built without the absence outcome",
             "build it with build_cohort(outcomes = ) including \"absence\".")
  }
  ab
}

#' @export
print.sfp_cohort <- function(x, ...) {
  d <- attr(x, "design")
  cat("<sfp_cohort> ", d$name, ": ", format(nrow(x), big.mark = ","),
      " children in ", length(unique(x$la)), " LAs; treatment = \"",
      attr(x, "treatment"), "\"; data end ", format(attr(x, "data_end")), "\n", sep = "")
  cat("Arms: control ", sum(x$treated %in% 0L), ", treated ", sum(x$treated %in% 1L),
      if (anyNA(x$treated)) paste0(", undefined ", sum(is.na(x$treated))), "\n", sep = "")
  if (isTRUE(attr(x, "la_changed") > 0)) {
    cat("Children whose authority changed over their records: ", attr(x, "la_changed"),
        " (each placed in the authority at the ",
        if (identical(attr(x, "population"), "care_entry")) "care start" else "referral",
        ")\n", sep = "")
  }
  outs <- intersect(d$outcomes, names(x))
  for (o in outs) {
    v <- x[[o]]
    cat(sprintf("  %-15s analysed %7d  mean %s\n", o, sum(!is.na(v)),
                if (any(!is.na(v))) format(round(mean(v, na.rm = TRUE), 3)) else "-"))
  }
  dr <- attr(x, "covariates_dropped_by_sample")
  dr <- dr[lengths(dr) > 0L]
  if (length(dr))
    cat("Covariates dropped (missing > ", 100 * d$max_missing, "% of the sample): ",
        paste(names(dr), vapply(dr, paste, "", collapse = ", "), sep = ": ", collapse = "; "),
        "\n", sep = "")
  cat("\n")
  print(utils::head(as.data.frame(x)), ...)
  disclosure_status(NULL, unsafe = "it shows row-level records")
  invisible(x)
}

# Subsetting gives a plain data frame: the exclusion flow and absence panel
# describe the whole cohort, not a subset.
#' @export
`[.sfp_cohort` <- function(x, ...) {
  out <- NextMethod()
  if (is.data.frame(out)) {
    attr(out, "exclusion_flow") <- NULL
    attr(out, "absence") <- NULL
    attr(out, "design") <- NULL
    class(out) <- "data.frame"
  }
  out
}

#' @export
as.data.frame.sfp_cohort <- function(x, ...) {
  attr(x, "exclusion_flow") <- NULL
  attr(x, "absence") <- NULL
  attr(x, "design") <- NULL
  class(x) <- "data.frame"
  x
}

#' @export
summary.sfp_cohort <- function(object, ...) {
  exclusion_flow(object, by = "total")
}
