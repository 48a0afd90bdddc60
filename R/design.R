# Design objects: every protocol parameter of the two evaluations in one
# object. Values the protocols contradict themselves on (see `vignette("methods")`
# section 0) are arguments whose default is the design table's value; the
# protocols say the design tables take precedence (FS p. 12 "Outcome
# measures"; FV p. 11 "Outcome measures").
#
# Page numbers are those of the protocols' own tables of contents: FS = Family
# Safeguarding DiD protocol (Design p. 6, Matching p. 8, Outcome measures
# p. 12, Analysis plan p. 14, Sensitivity analysis p. 17); FV = Family Valued
# stepped-wedge protocol (Design p. 6, Randomisation p. 8, Participants and
# Conditions p. 10, Outcome measures p. 11, Analysis plan p. 15).

#' Family Safeguarding difference-in-differences design
#'
#' Collects every parameter of the Family Safeguarding DiD protocol (design
#' table, FS p. 6) in one object for [build_cohort()]. Go-live dates and the
#' treated/comparator roles come from the roll-out table; everything else is
#' an argument whose default is the design table's value.
#'
#' Choices where the protocol is silent or contradicts itself:
#' * Outcome windows: the design table's 18 months for the primary outcome
#'   (the analysis plan, FS p. 14, says 24), a 12-month cap on single-CPP
#'   duration (text FS p. 12: 24 months), a 6-month window for starting that
#'   CPP (text: 12) and 18 months for days on CPPs (text: 36).
#' * Trial period: referrals from 1 April 2017 ("from 2017/18 ... two years
#'   before any treatment local authority", FS p. 11) to the end of the data.
#'   Outcome windows that end after the end of the data are flagged as not
#'   yet observable, never coded 0.
#' * "Within m months": the window of a child referred on day `d` ends on
#'   `d` plus m calendar months with month-end clamping (31 August + 6 months
#'   is 28 or 29 February; 29 February + 12 months is 28 February), and an
#'   event on the last day counts. A window is observable when its last day is
#'   on or before `data_end`.
#' * Toxic-trio factors (FS p. 13): the core set of `vignette("data")` (1B, 2B, 3A-3C,
#'   4B) of the first assessment of the first referral; `toxic_trio = "broad"`
#'   adds 1C, 2C, 4C.
#' * Short breaks: care episodes with legal status V3/V4 are not "looked
#'   after" for the outcomes (`short_breaks = "exclude"`).
#' * Unborn children (referred before birth, gender code 0 "not
#'   recorded/unborn", FS p. 15) are in the sample with age 0.
#'
#' @param data_or_rollout An `sfp_data` object holding a `rollout` table, or
#'   the roll-out table itself (columns `la_code`, `programme`, `role`,
#'   `go_live_date`, optionally `matched_to_la`, `outcome`). Rows of other
#'   programmes are ignored. Treated LAs must have a go-live date.
#' @param trial_start First referral day of the trial period (`Date`).
#' @param trial_end Last referral day of the trial period; `NULL` for the end
#'   of the data.
#' @param data_end Last day the records cover: one date, or one per source
#'   (a named `Date` vector, names among `cin` for the CIN census, `ssda903`
#'   for care episodes, `npd` for school records), since the returns lag
#'   differently; each outcome's window is observable by the end of the
#'   source it comes from (see [outcome_table()]). `NULL` (or a missing name)
#'   takes, when the cohort is built, the latest referral or closure date
#'   (CIN) and the latest care start or end date (SSDA903). Give it
#'   explicitly when the extraction dates are known.
#' @param age_range Age in completed years at referral, inclusive (FS p. 6).
#' @param age_bands Lower limits of the age bands (FS p. 9: 0-3, 4-12); the
#'   last band ends at the upper age limit.
#' @param cla_window Months after referral for `cla_18m` (design table).
#' @param cla_definition What "has become looked after at any point within 18
#'   months" (design table, FS p. 6; FV p. 6) counts: `"entered"` (the
#'   default: a new period of care starts in the window, so a child already
#'   in care at referral counts only if they leave and enter care again) or
#'   `"looked_after"` (sensitivity: the child is looked after on some day of
#'   the window, including a child already in care at referral). It affects
#'   `cla_18m` only: the Family Valued kinship sample is always the children
#'   entering care in the window.
#' @param step_months Length of a stepped-wedge step in months (the
#'   `"stepped_wedge"` strand).
#' @param cpp_start_window Months after referral within which the CPP of
#'   `cpp_duration` must start (design table: 6).
#' @param cpp_duration_cap Months from the CPP start at which `cpp_duration`
#'   is censored (design table: 12).
#' @param days_cpp_window Months after referral for `days_cpp_18m` (design
#'   table: 18).
#' @param rereferral_window Months after referral for `rereferral_18m`.
#' @param toxic_trio `"core"` or `"broad"` factor set (see [sfp_codes()]).
#' @param absence_terms Number of school terms starting after the referral.
#' @param term_dates `NULL` for the standard term starts (autumn 1 September,
#'   spring 1 January, summer Easter Monday), or a data frame of the
#'   authorities' real term starts with columns `academic_year` ("2019/20"
#'   or its first year, 2019), `term` ("autumn", "spring", "summer") and
#'   `start` (`Date`); the terms it lists replace the standard ones.
#' @param short_breaks `"exclude"` (default) or `"include"` care episodes with
#'   legal status V3/V4.
#' @param include_unborn Keep children referred before birth (age 0).
#' @param chne Where Chinese ethnicity goes, see [ethnic_group()].
#' @param ethnicity The ethnicity covariate of the regressions: `"cin"` (the
#'   CIN census categories, as both protocols write: "In the categories
#'   defined in the DfE's CIN census") or `"major"` (the five major groups,
#'   `ethnic_group`). CEM always uses the major groups (FS p. 9).
#' @param fsm_column Column of `children` used for the CEM's FSM eligibility
#'   (`"fsm_ever6"`: FSM in the last six years or early-years pupil premium,
#'   FS p. 9). The regressions use `fsm_ever` ("ever been recorded as
#'   eligible for free school meals on Census day in any Spring Census up to
#'   the pupil's current year"), or this column when `children` has no
#'   `fsm_ever`.
#' @param max_missing Covariates missing for more than this share of the
#'   cohort are reported and dropped (FS p. 16: 30%).
#' @param pre_go_live_exclusion Months before go-live whose referrals are
#'   left out (FS footnote 7: "excluding cases that entered the sample
#'   population in the final 18 months prior to implementation", for the
#'   sensitivity analysis of the under-estimation of treatment; 0, the
#'   default, keeps them). For a comparator LA the go-live of its matched
#'   treated LA (roll-out `matched_to_la`) is used.
#' @param strand Which strand of the evaluation (each protocol triangulates
#'   a stepped-wedge analysis with a DiD). `design_family_safeguarding()`:
#'   `"did"` (treated and comparator authorities) or `"stepped_wedge"` (the
#'   treated authorities' staggered go-lives only, with six-month `step`s;
#'   the trial period then defaults to `step_months` before the first to
#'   `step_months` after the last go-live). `design_family_valued()`:
#'   `"stepped_wedge"` or `"did"` (the roll-out table may then hold
#'   comparator authorities, role `"comparator"`, optionally `matched_to_la`
#'   and `outcome`).
#' @param quarter `"calendar"` quarters ("2020Q2", April-June) or
#'   `"financial"` ("2020/21 Q1", April-June).
#' @return An object of class `sfp_design`: a list with `programme` ("FS"),
#'   `las` (one row per LA: `la_code`, `role`, `go_live_date`), `pairs` (the
#'   matched pairs of the roll-out table), `trial_start`, `trial_end`,
#'   `data_end`, `age_range`, `age_bands`, `windows` (months), `codes` (the
#'   code sets), `covariates`, `cem` (the CEM coarsening, FS p. 9) and the
#'   other arguments.
#' @examples
#' rollout <- data.frame(
#'   la_code = c("101", "102", "201"), programme = "FS",
#'   role = c("treated", "treated", "comparator"),
#'   go_live_date = as.Date(c("2020-04-01", "2020-10-01", NA))
#' )
#' design_family_safeguarding(rollout)
#' @export
design_family_safeguarding <- function(data_or_rollout,
                                       trial_start = as.Date("2017-04-01"),
                                       trial_end = NULL, data_end = NULL,
                                       age_range = c(0L, 12L),
                                       age_bands = c(0L, 4L),
                                       cla_window = 18L,
                                       cla_definition = c("entered", "looked_after"),
                                       cpp_start_window = 6L,
                                       cpp_duration_cap = 12L,
                                       days_cpp_window = 18L,
                                       rereferral_window = 18L,
                                       toxic_trio = c("core", "broad"),
                                       absence_terms = 3L, term_dates = NULL,
                                       short_breaks = c("exclude", "include"),
                                       include_unborn = TRUE,
                                       chne = c("other", "asian"),
                                       ethnicity = c("cin", "major"),
                                       fsm_column = "fsm_ever6",
                                       max_missing = 0.3,
                                       pre_go_live_exclusion = 0L,
                                       strand = c("did", "stepped_wedge"),
                                       step_months = 6L,
                                       quarter = c("calendar", "financial")) {
  toxic_trio <- match.arg(toxic_trio)
  strand <- match.arg(strand)
  if (!is.numeric(pre_go_live_exclusion) || length(pre_go_live_exclusion) != 1L ||
      is.na(pre_go_live_exclusion) || pre_go_live_exclusion < 0 ||
      pre_go_live_exclusion != round(pre_go_live_exclusion)) {
    stop_arg("pre_go_live_exclusion", "must be a whole number of months (0 for none)",
             "give 18 for the footnote-7 sensitivity analysis.")
  }
  short_breaks <- match.arg(short_breaks)
  chne <- match.arg(chne)
  ethnicity <- match.arg(ethnicity)
  quarter <- match.arg(quarter)
  ro <- design_rollout(data_or_rollout, "FS")
  las <- design_las(ro, "FS")
  if (strand == "stepped_wedge") {
    # the stepped-wedge strand: the treated authorities' staggered go-lives,
    # six months before the first to six months after the last by default
    las <- las[las$role == "treated", , drop = FALSE]
    if (missing(trial_start)) trial_start <- day_to_date(add_months(min(las$go_live_date), -step_months))
    if (is.null(trial_end)) trial_end <- day_to_date(add_months(max(las$go_live_date), step_months))
  }
  trial_start <- check_date_arg(trial_start, "trial_start")
  trial_end <- if (is.null(trial_end)) NULL else check_date_arg(trial_end, "trial_end")
  data_end <- check_data_end(data_end)
  check_age_args(age_range, age_bands)
  windows <- c(cla = cla_window, cpp_start = cpp_start_window,
               cpp_duration_cap = cpp_duration_cap, days_cpp = days_cpp_window,
               rereferral = rereferral_window)
  check_windows(windows)
  check_terms(absence_terms)
  pairs <- design_pairs(ro)
  structure(list(
    programme = "FS", strand = strand,
    step_months = if (strand == "stepped_wedge") as.integer(step_months),
    name = "Family Safeguarding (difference-in-differences)",
    las = las, pairs = pairs,
    trial_start = trial_start, trial_end = trial_end, data_end = data_end,
    age_range = as.integer(age_range), age_bands = as.integer(age_bands),
    windows = windows,
    outcomes = c("cla_18m", "cpp_duration", "days_cpp_18m", "rereferral_18m",
                 "absence"),
    toxic_trio = toxic_trio,
    pre_go_live_exclusion = as.integer(pre_go_live_exclusion),
    cla_definition = match.arg(cla_definition),
    codes = list(toxic_trio = sfp_codes(paste0("toxic_trio_", toxic_trio)),
                 short_breaks = sfp_codes("short_breaks")),
    absence_terms = as.integer(absence_terms),
    term_dates = check_term_dates(term_dates),
    short_breaks = short_breaks, include_unborn = isTRUE(include_unborn),
    chne = chne, ethnicity = ethnicity, fsm_column = fsm_column, max_missing = max_missing,
    quarter = quarter,
    require_open_after_assessment = FALSE, entry = "first",
    covariates = c("gender", eth_covariate(ethnicity), "age", "disabled", "fsm_ever", "uasc",
                   "n_previous_cpp", "primary_need", "prop_fsm",
                   "prop_white_british", "other_innovation_programme"),
    # FS footnote 31 (p. 15): primary need is left out of the models for the
    # primary outcome and re-referrals.
    covariates_exclude = list(cla_18m = "primary_need",
                              rereferral_18m = "primary_need"),
    cem = c(fs_coarsening(),
            list(variables = c("gender", "age_band", "ethnic_group", "disabled",
                             "fsm", "uasc", "previous_cpp"),
               coarsening = list(gender = "codes 0-3", age_band = "0-3, 4-12",
                                 ethnic_group = "major group",
                                 previous_cpp = "n_previous_cpp > 0"),
               within = c("pair", "fin_year"), widen_to = "period"))
  ), class = "sfp_design")
}

#' Family Valued stepped-wedge design
#'
#' Collects every parameter of the Family Valued stepped-wedge protocol (RCT
#' design table, FV p. 6) in one object for [build_cohort()]. Go-live
#' (Operationally Live) dates, wedge order, readiness strata, trial period,
#' embedding window and alternative go-live dates come from the roll-out
#' table; everything else is an argument whose default is the design table's
#' value.
#'
#' Choices where the protocol is silent or contradicts itself:
#' * Windows: 18 months for the primary outcome (design table; the analysis
#'   plan, FV p. 15, says 24), 36 months for return to services, 12 months for
#'   starting a CPP, 18 months for days on plans, kinship (looked after
#'   within 18 months) and reunification.
#' * Trial period: `trial_start`/`trial_end` from the roll-out table, else 6
#'   months before the first to 6 months after the last go-live (FV p. 8).
#'   Six-month steps: step 0 is the first six months of the trial period.
#' * Sample (FV p. 10): the child's first referral in the trial period must
#'   have stayed open after assessment (not `referral_nfa`, closure reason not
#'   RC8/RC9). `entry = "first_open"` instead takes the first referral in the
#'   trial period that stayed open.
#' * Age bands: the protocol's 0-3, 4-12 (FV p. 16) do not cover 0-17; a
#'   13-17 band is added (`vignette("methods")`, section 0 item 2).
#' * "Within m months" and observability as in [design_family_safeguarding()].
#' * The DiD strand (`strand = "did"`): the protocol adds "a DiD analysis"
#'   ("Triangulation of results": "Since we will conduct an analysis
#'   exploiting the stepped wedge design of the implementation as well as a
#'   DiD analysis, results will have to be triangulated") and specifies it no
#'   further, so it follows the Family Safeguarding DiD protocol: comparator
#'   authorities matched on pre-period trends per outcome, children matched
#'   by coarsened exact matching within the treated-comparator pair and
#'   financial year ("We match on individual-level control variables within
#'   the same financial year"), the DiD weighted by the CEM weights. The CEM
#'   coarsening is that protocol's ([fs_coarsening()]: gender, age at
#'   referral, ethnic major group, disability, FSM or pupil premium
#'   eligibility, UASC, a previous CPP), with the age bins widened to the
#'   Family Valued ages (0-3, 4-12, 13-17, the `age_bands`); argument `cem`.
#'   Its window (`did_start`): the Family Safeguarding DiD analyses the
#'   records "from 2017/18 (which is two years before any treatment local
#'   authority they are matched to started Family Safeguarding)" and matches
#'   on "the two years prior to the intervention"; so the Family Valued DiD
#'   starts on 1 April of the financial year two years before the financial
#'   year of the first go-live (for a first go-live in April 2020, 1 April
#'   2018), giving every treated authority at least two years of pre-period.
#'   The stepped-wedge trial period ("6 months prior to the first local
#'   authority implements the model") would give the first authority six
#'   months. The DiD ends with the trial period. The stepped-wedge strand of
#'   the same design keeps the trial period.
#'
#' @inheritParams design_family_safeguarding
#' @param data_or_rollout An `sfp_data` object holding a `rollout` table, or
#'   the roll-out table itself (columns `la_code`, `programme`, `role`,
#'   `go_live_date`, and optionally `wedge_order`, `stratum`, `trial_start`,
#'   `trial_end`, `embed_start`, `embed_end`, `alt_go_live_date`). Every LA
#'   must have a go-live date.
#' @param age_range Age in completed years at referral, inclusive (FV p. 10).
#' @param age_bands Lower limits of the age bands: 0-3, 4-12, 13-17.
#' @param cla_window Months after referral for `cla_18m`.
#' @param return_window Months after referral for `return_36m`.
#' @param cpp_window Months after referral for `cpp_12m`.
#' @param days_plan_window Months after referral for `days_plan_18m`.
#' @param reunification_window Months after entering care for
#'   `reunified_18m`.
#' @param reunification Codes of `rec` counted as a return home:
#'   `"primary"` (E4A, as part of the care plan, FV p. 13) or `"sensitivity"`
#'   (E4A, E4B).
#' @param require_open_after_assessment Apply the FV sample rule "following
#'   assessment, their case remains open" (FV p. 10).
#' @param entry `"first"`: the first referral in the trial period defines the
#'   sample and arm; `"first_open"`: the first one that stayed open after
#'   assessment.
#' @param step_months Length of a stepped-wedge period in months (FV p. 8).
#' @param did_start First referral day of the DiD strand's window (used only
#'   with `strand = "did"`; `Date`): `NULL` (default) for 1 April of the
#'   financial year two years before that of the first go-live (see Details).
#' @param cem The child-level CEM of the DiD strand (used only with
#'   `strand = "did"`): `NULL` for the Family Safeguarding protocol's
#'   coarsening with this design's age bands (see Details), `"period"` for
#'   the same matched within pre/post go-live instead of financial year (the
#'   Family Safeguarding protocol's fallback "if this results in dropping too
#'   many observations"), or a list as [fs_coarsening()] returns (`formula`,
#'   `cutpoints`, `grouping`, `exact`).
#' @return An object of class `sfp_design` (see
#'   [design_family_safeguarding()]) with programme "FV", `las` also holding
#'   `wedge_order`, `stratum`, `embed_start`, `embed_end`, `alt_go_live_date`,
#'   and `step_months`; with `strand = "did"`, `cem` holds the CEM
#'   specification and `did_start` the DiD window's first day (else both
#'   `NULL`).
#' @examples
#' rollout <- data.frame(
#'   la_code = c("301", "302", "303"), programme = "FV", role = "treated",
#'   go_live_date = as.Date(c("2020-01-01", "2020-07-01", "2021-01-01")),
#'   wedge_order = 1:3, stratum = c("high", "low", "low")
#' )
#' design_family_valued(rollout)
#' @export
design_family_valued <- function(data_or_rollout, data_end = NULL,
                                 age_range = c(0L, 17L),
                                 age_bands = c(0L, 4L, 13L),
                                 cla_window = 18L,
                                 cla_definition = c("entered", "looked_after"),
                                 return_window = 36L,
                                 cpp_window = 12L, days_plan_window = 18L,
                                 reunification_window = 18L,
                                 reunification = c("primary", "sensitivity"),
                                 require_open_after_assessment = TRUE,
                                 entry = c("first", "first_open"),
                                 step_months = 6L, absence_terms = 3L,
                                 term_dates = NULL,
                                 short_breaks = c("exclude", "include"),
                                 include_unborn = TRUE,
                                 chne = c("other", "asian"),
                                 ethnicity = c("cin", "major"),
                                 fsm_column = "fsm_ever6",
                                 max_missing = 0.3,
                                 strand = c("stepped_wedge", "did"),
                                 quarter = c("calendar", "financial"),
                                 cem = NULL, did_start = NULL) {
  strand <- match.arg(strand)
  reunification <- match.arg(reunification)
  entry <- match.arg(entry)
  short_breaks <- match.arg(short_breaks)
  chne <- match.arg(chne)
  ethnicity <- match.arg(ethnicity)
  quarter <- match.arg(quarter)
  ro <- design_rollout(data_or_rollout, "FV")
  las <- design_las(ro, "FV", comparators = strand == "did")
  data_end <- check_data_end(data_end)
  check_age_args(age_range, age_bands)
  windows <- c(cla = cla_window, return = return_window, cpp = cpp_window,
               days_plan = days_plan_window,
               reunification = reunification_window, step = step_months)
  check_windows(windows)
  check_terms(absence_terms)
  first_live <- min(las$go_live_date, na.rm = TRUE)
  last_live <- max(las$go_live_date, na.rm = TRUE)
  ts <- first_non_na(ro$trial_start)
  te <- first_non_na(ro$trial_end)
  trial_start <- if (is.na(ts)) day_to_date(add_months(first_live, -step_months)) else ts
  trial_end <- if (is.na(te)) day_to_date(add_months(last_live, step_months)) else te
  if (strand == "did") {
    did_start <- if (is.null(did_start)) fin_year_start(first_live, -2L) else
      check_date_arg(did_start, "did_start")
    if (did_start > trial_end) {
      stop_arg("did_start", sprintf("is %s, after the end of the trial period (%s)", did_start, trial_end),
               "give a day before the first go-live, or NULL for two financial years before it.")
    }
  } else {
    did_start <- NULL
  }
  structure(list(
    programme = "FV", strand = strand,
    name = if (strand == "did") "Family Valued (difference-in-differences)" else
      "Family Valued (stepped-wedge cluster randomised trial)",
    las = las,
    pairs = if (strand == "did") design_pairs(ro) else NULL,
    trial_start = trial_start, trial_end = trial_end, data_end = data_end,
    age_range = as.integer(age_range), age_bands = as.integer(age_bands),
    windows = windows, step_months = as.integer(step_months),
    outcomes = c("cla_18m", "return_36m", "cpp_12m", "days_plan_18m",
                 "kinship_first", "reunified_18m", "absence"),
    reunification = reunification,
    cla_definition = match.arg(cla_definition),
    codes = list(kinship = sfp_codes("kinship"),
                 reunification = sfp_codes(if (reunification == "primary")
                   "reunification" else "reunification_sensitivity"),
                 short_breaks = sfp_codes("short_breaks"),
                 closed_after_assessment = sfp_codes("closed_after_assessment")),
    absence_terms = as.integer(absence_terms),
    term_dates = check_term_dates(term_dates),
    short_breaks = short_breaks, include_unborn = isTRUE(include_unborn),
    chne = chne, ethnicity = ethnicity, fsm_column = fsm_column, max_missing = max_missing,
    quarter = quarter,
    require_open_after_assessment = isTRUE(require_open_after_assessment),
    entry = entry,
    covariates = c("gender", eth_covariate(ethnicity), "age_band", "academic_year",
                   "disabled", "fsm_ever", "uasc", "n_previous_cpp", "primary_need",
                   "prop_fsm", "prop_white_british", "other_innovation_programme"),
    covariates_exclude = list(),
    strata = stats::setNames(las$stratum, las$la_code),
    cem = if (strand == "did") design_cem(cem, age_bands, age_range),
    did_start = did_start
  ), class = "sfp_design")
}

# --- roll-out table --------------------------------------------------------

design_rollout <- function(x, programme) {
  if (inherits(x, "sfp_data")) {
    if (is.null(x$rollout)) {
      stop_arg("data_or_rollout",
               "is an `sfp_data` object without a `rollout` table",
               "pass the roll-out table to sfp_data(rollout = ) or give it directly.")
    }
    x <- x$rollout
  }
  if (!is.data.frame(x)) {
    stop_arg("data_or_rollout", "must be an `sfp_data` object or a roll-out data frame")
  }
  x <- as.data.frame(x, stringsAsFactors = FALSE)
  need <- c("la_code", "go_live_date")
  miss <- setdiff(need, names(x))
  if (length(miss)) {
    stop(sprintf("Table `rollout` lacks column%s %s.\nFix: add %s (see sfp_tables(\"rollout\")).",
                 if (length(miss) > 1) "s" else "",
                 paste0("`", miss, "`", collapse = ", "),
                 if (length(miss) > 1) "them" else "it"), call. = FALSE)
  }
  for (col in intersect(c("go_live_date", "trial_start", "trial_end",
                          "embed_start", "embed_end", "alt_go_live_date"),
                        names(x))) {
    x[[col]] <- rollout_date(x[[col]], col)
  }
  x$la_code <- as.character(x$la_code)
  if ("programme" %in% names(x)) x <- x[x$programme %in% programme, , drop = FALSE]
  if (!"role" %in% names(x)) x$role <- "treated"
  if (!nrow(x)) {
    stop(sprintf("Table `rollout` has no rows for programme \"%s\".\nFix: add one row per LA with `programme` = \"%s\".",
                 programme, programme), call. = FALSE)
  }
  rownames(x) <- NULL
  x
}

# The matched pairs of a roll-out table (comparator rows naming their
# treated LA in `matched_to_la`).
design_pairs <- function(ro) {
  if (all(c("matched_to_la", "outcome") %in% names(ro))) {
    p <- ro[ro$role == "comparator" & !is.na(ro$matched_to_la),
            c("matched_to_la", "la_code", "outcome"), drop = FALSE]
    names(p) <- c("treated_la", "comparator_la", "outcome")
    rownames(p) <- NULL
    p
  } else {
    data.frame(treated_la = character(), comparator_la = character(),
               outcome = character(), stringsAsFactors = FALSE)
  }
}

# One row per LA: role and dates. Treated LAs must have one go-live date.
design_las <- function(ro, programme, comparators = programme == "FS") {
  treated <- ro$role == "treated"
  if (!comparators && any(!treated)) {
    bad <- which(!treated)
    stop_rows("rollout", "role", bad, "are not \"treated\" in a stepped-wedge trial",
              "every Family Valued LA goes live at some step; give role \"treated\", or build the DiD strand with strand = \"did\".",
              keys = ro$la_code[bad], key_name = "la_code")
  }
  bad <- which(treated & is.na(ro$go_live_date))
  if (length(bad)) {
    stop_rows("rollout", "go_live_date", bad,
              "have no go-live date for a treated LA",
              "give each treated LA its Operationally Live date.",
              keys = ro$la_code[bad], key_name = "la_code")
  }
  tr <- ro[treated, , drop = FALSE]
  la_codes <- unique(c(tr$la_code, ro$la_code[!treated]))
  keep <- c("go_live_date", "wedge_order", "stratum", "embed_start",
            "embed_end", "alt_go_live_date")
  keep <- intersect(keep, names(ro))
  first <- tr[!duplicated(tr$la_code), c("la_code", keep), drop = FALSE]
  for (col in keep) {
    conflict <- tapply(tr[[col]], tr$la_code,
                       function(v) length(unique(v[!is.na(v)])) > 1)
    if (any(conflict)) {
      las <- names(conflict)[conflict]
      rows <- which(tr$la_code %in% las)
      stop_rows("rollout", col, rows, "give one LA different values",
                "give each LA one value (one row per LA and programme).",
                keys = tr$la_code[rows], key_name = "la_code")
    }
  }
  las <- data.frame(la_code = la_codes,
                    role = ifelse(la_codes %in% tr$la_code, "treated", "comparator"),
                    stringsAsFactors = FALSE)
  m <- match(las$la_code, first$la_code)
  las$go_live_date <- first$go_live_date[m]
  if (programme == "FV") {
    for (col in c("wedge_order", "stratum", "embed_start", "embed_end",
                  "alt_go_live_date")) {
      las[[col]] <- if (col %in% names(first)) first[[col]][m] else
        if (col %in% c("embed_start", "embed_end", "alt_go_live_date"))
          as.Date(rep(NA_real_, nrow(las))) else rep(NA, nrow(las))
    }
    if (all(is.na(las$wedge_order))) las$wedge_order <- rank(las$go_live_date, ties.method = "min")
    las <- las[order(las$go_live_date, las$la_code), , drop = FALSE]
  }
  rownames(las) <- NULL
  las
}

# A date column of a roll-out table given directly (not through sfp_data()):
# Date as is, character as YYYY-MM-DD or dd/mm/YYYY, anything else an error.
rollout_date <- function(v, column) {
  if (inherits(v, "Date")) return(v)
  if (inherits(v, "POSIXt")) return(as.Date(v))
  if (is.logical(v) && all(is.na(v))) return(as.Date(rep(NA_real_, length(v))))
  if (is.factor(v)) v <- as.character(v)
  out <- as.Date(rep(NA_real_, length(v)))
  if (is.character(v)) {
    iso <- !is.na(v) & grepl("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", v)
    dmy <- !is.na(v) & grepl("^[0-9]{2}/[0-9]{2}/[0-9]{4}$", v)
    out[iso] <- as.Date(v[iso], format = "%Y-%m-%d")
    out[dmy] <- as.Date(v[dmy], format = "%d/%m/%Y")
  }
  bad <- which(!is.na(v) & is.na(out))
  if (length(bad)) {
    stop_rows("rollout", column, bad, "are not dates",
              "give `Date` values or character dates as YYYY-MM-DD or dd/mm/YYYY.",
              keys = utils::head(as.character(v[bad]), 5), key_name = "values")
  }
  out
}

# data_end: NULL, one date, or one date per source (names cin, ssda903, npd).
check_data_end <- function(x) {
  if (is.null(x)) return(NULL)
  if (length(x) == 1L && is.null(names(x))) return(check_date_arg(x, "data_end"))
  if (is.character(x)) x <- stats::setNames(tryCatch(as.Date(x), error = function(e)
    as.Date(rep(NA, length(x)))), names(x))
  nm <- names(x)
  if (!inherits(x, "Date") || anyNA(x) || is.null(nm) || !all(nm %in% .sources) ||
      anyDuplicated(nm)) {
    stop_arg("data_end", "must be one date or one date per source named among cin, ssda903, npd",
             "give e.g. c(cin = as.Date(\"2023-03-31\"), ssda903 = as.Date(\"2023-03-31\"), npd = as.Date(\"2022-08-31\")).")
  }
  x
}
.sources <- c("cin", "ssda903", "npd")

# ---- the one definition of go-live, embedding and step boundaries ----------
# Used by build_cohort() and sw_terms() alike. A day is treated from the
# go-live day on (a referral on the go-live day is treated). The embedding
# period runs from `embed_start` to `embed_end` inclusive but never includes
# a treated day. Steps are `months`-long from the trial start: step k starts
# on trial_start + k * months (calendar months, month-end clamped); days
# after the last complete step belong to it.

treated_on <- function(day, go_live) {
  day <- as.integer(day)
  go_live <- as.integer(go_live)
  out <- as.integer(!is.na(go_live) & day >= go_live)
  out[is.na(day)] <- NA_integer_
  out
}

in_embedding <- function(day, start, end, go_live) {
  day <- as.integer(day)
  !is.na(day) & !is.na(start) & !is.na(end) & day >= as.integer(start) &
    day <= as.integer(end) & !(treated_on(day, go_live) %in% 1L)
}

# 1 April of the financial year `shift` years from that of `day`.
fin_year_start <- function(day, shift = 0L) {
  lt <- as.POSIXlt(as.Date(day))
  fy <- lt$year + 1900L - (lt$mon < 3L)
  as.Date(sprintf("%d-04-01", fy + shift))
}

sw_step <- function(day, trial_start, months, trial_end = NULL) {
  breaks <- add_months(rep(as.integer(trial_start), 64L), months * (0:63))
  n_steps <- if (is.null(trial_end) || !length(trial_end) || is.na(trial_end)) 64L else
    max(1L, sum(breaks[-1] <= as.integer(trial_end) + 1L))
  pmin(findInterval(as.integer(day), breaks) - 1L, n_steps - 1L)
}

check_date_arg <- function(x, arg) {
  if (is.character(x)) x <- tryCatch(as.Date(x), error = function(e) as.Date(NA))
  if (!inherits(x, "Date") || length(x) != 1L || is.na(x)) {
    stop_arg(arg, "must be one date", "give a `Date` such as as.Date(\"2017-04-01\").")
  }
  x
}

check_age_args <- function(age_range, age_bands) {
  if (!is.numeric(age_range) || length(age_range) != 2L || anyNA(age_range) ||
      age_range[1] > age_range[2]) {
    stop_arg("age_range", "must be two ages (lowest, highest) in years",
             "give e.g. c(0, 12).")
  }
  if (!is.numeric(age_bands) || !length(age_bands) || anyNA(age_bands) ||
      is.unsorted(age_bands, strictly = TRUE) || age_bands[1] > age_range[1] ||
      age_bands[length(age_bands)] > age_range[2]) {
    stop_arg("age_bands", "must be increasing lower limits of the age bands within `age_range`",
             "give e.g. c(0, 4) for the bands 0-3 and 4-12.")
  }
}

check_terms <- function(absence_terms) {
  if (!is.numeric(absence_terms) || length(absence_terms) != 1L ||
      !absence_terms %in% 1:3) {
    stop_arg("absence_terms", "must be 1, 2 or 3 (school terms after the referral)")
  }
}

# A term-dates table as year (first calendar year of the academic year),
# term (1 autumn, 2 spring, 3 summer) and start (day number).
check_term_dates <- function(x) {
  if (is.null(x)) return(NULL)
  if (!is.data.frame(x) || !all(c("academic_year", "term", "start") %in% names(x))) {
    stop_arg("term_dates", "must be a data frame with columns `academic_year`, `term` and `start`",
             "give one row per academic year and term, e.g. academic_year = \"2019/20\", term = \"autumn\", start = as.Date(\"2019-09-04\").")
  }
  y <- academic_year_start(x$academic_year)
  t <- match(tolower(as.character(x$term)), c("autumn", "spring", "summer"))
  st <- if (inherits(x$start, "Date")) as.integer(x$start) else rep(NA_integer_, nrow(x))
  bad <- which(is.na(y) | is.na(t) | is.na(st))
  if (length(bad)) {
    stop_rows("term_dates", NULL, bad, "have no academic year, a term other than autumn/spring/summer, or no start date",
              "give `academic_year` as \"2019/20\", `term` as autumn, spring or summer and `start` as a Date.")
  }
  ord <- 3L * y + t - 1L
  bad <- which(duplicated(ord))
  if (length(bad)) {
    stop_rows("term_dates", "term", bad, "give an academic year and term already given", "give one start per term.")
  }
  o <- order(ord)
  bad <- o[-1][diff(st[o]) <= 0L]
  if (length(bad)) {
    stop_rows("term_dates", "start", bad, "start on or before the term before them",
              "check the dates: each term starts after the previous one.")
  }
  data.frame(year = y, term = t, start = st)
}

# The child-level CEM of a DiD strand: the Family Safeguarding protocol's
# coarsening ("Gender ...; Age of children at the time of referral (0-3,
# 4-12); Ethnicity (major group); Disability; Free school meal eligibility
# ...; Unaccompanied Asylum Seeker; ... previously been made the subject of a
# CP"), within pair x financial year, with the age bins of `age_bands` (the
# last ending at the upper age limit); `spec` "period" matches within pre/post
# go-live, a list replaces it.
design_cem <- function(spec, age_bands, age_range) {
  time <- "fin_year"
  if (is.character(spec) && length(spec) == 1L && spec %in% c("fin_year", "period")) {
    time <- spec
    spec <- NULL
  }
  if (is.null(spec)) {
    spec <- fs_coarsening(time)
    spec$cutpoints$age <- as.numeric(c(age_bands[1], age_bands[-1] - 1L, age_range[2]))
    labels <- paste(age_band_labels(age_bands, age_range[2]), collapse = ", ")
  } else {
    ok <- is.list(spec) && inherits(spec$formula, "formula") && length(spec$formula) == 3L &&
      is.list(spec$cutpoints %||% list()) && is.list(spec$grouping %||% list()) &&
      (is.null(spec$exact) || is.character(spec$exact))
    if (!ok) {
      stop_arg("cem", "must be NULL, \"fin_year\", \"period\" or a list with a two-sided `formula`, `cutpoints` and `grouping` (lists) and `exact` (column names)",
               "start from fs_coarsening() and edit it.")
    }
    spec <- list(formula = spec$formula, cutpoints = spec$cutpoints %||% list(),
                 grouping = spec$grouping %||% list(), exact = spec$exact)
    labels <- NULL
  }
  coarsening <- if (is.null(labels)) "as given" else
    list(gender = "codes 0-3", age_band = labels, ethnic_group = "major group",
         previous_cpp = "n_previous_cpp > 0")
  c(spec, list(variables = all.vars(spec$formula[[3]]), coarsening = coarsening,
               within = spec$exact, widen_to = if (time == "fin_year") "period"))
}

eth_covariate <- function(ethnicity) {
  if (match.arg(ethnicity, c("cin", "major")) == "cin") "ethnicity_cin" else "ethnic_group"
}

check_windows <- function(windows) {
  bad <- !is.finite(windows) | windows <= 0 | windows != round(windows)
  if (any(bad)) {
    stop_arg(paste0(names(windows)[bad][1], "_window"),
             "must be a positive whole number of months")
  }
}

first_non_na <- function(x) {
  if (is.null(x)) return(as.Date(NA))
  x <- x[!is.na(x)]
  if (length(x)) x[1] else as.Date(NA)
}

#' @export
print.sfp_design <- function(x, ...) {
  cat("<sfp_design> ", x$name, "\n", sep = "")
  fmt <- function(d) if (is.null(d)) "end of the data" else format(d)
  cat("Trial period (referral dates): ", fmt(x$trial_start), " to ",
      fmt(x$trial_end), "\n", sep = "")
  if (!is.null(x$did_start)) {
    cat("DiD strand (referral dates):   ", fmt(x$did_start), " to ", fmt(x$trial_end), "\n", sep = "")
  }
  cat("Data end:                      ", fmt(x$data_end), "\n", sep = "")
  cat("Ages at referral:              ", x$age_range[1], "-", x$age_range[2],
      "; bands ", paste(age_band_labels(x$age_bands, x$age_range[2]), collapse = ", "),
      "\n", sep = "")
  cat("Outcome windows (months):      ",
      paste0(names(x$windows), " ", x$windows, collapse = ", "), "\n", sep = "")
  cat("Outcomes:                      ", paste(x$outcomes, collapse = ", "), "\n", sep = "")
  if (x$programme == "FS") {
    cat("Toxic-trio factors (", x$toxic_trio, "): ",
        paste(x$codes$toxic_trio, collapse = " "), "\n", sep = "")
    cat("CEM on:                        ", paste(x$cem$variables, collapse = ", "),
        " within ", paste(x$cem$within, collapse = " x "), "\n", sep = "")
  } else {
    if (!is.null(x$cem)) {
      cat("CEM on (DiD strand):           ", paste(x$cem$variables, collapse = ", "),
          " within ", paste(x$cem$within, collapse = " x "), "\n", sep = "")
    }
    cat("Kinship placements:            ", paste(x$codes$kinship, collapse = " "), "\n", sep = "")
    cat("Returned home (", x$reunification, "):        ",
        paste(x$codes$reunification, collapse = " "), "\n", sep = "")
    cat("Open after assessment:         ", x$require_open_after_assessment,
        " (entry: ", x$entry, ")\n", sep = "")
  }
  cat("Looked after counts:           ", x$cla_definition, "\n", sep = "")
  cat("Short breaks (V3/V4):          ", x$short_breaks, "\n", sep = "")
  cat("Covariates:                    ", paste(x$covariates, collapse = ", "), "\n", sep = "")
  cat("Drop covariates missing for >  ", format(100 * x$max_missing), "%\n", sep = "")
  cat("Local authorities:\n")
  las <- x$las
  las <- las[, vapply(las, function(v) !all(is.na(v)), TRUE), drop = FALSE]
  for (col in names(las)) if (inherits(las[[col]], "Date")) las[[col]] <- format(las[[col]])
  print(las, row.names = FALSE)
  invisible(x)
}

age_band_labels <- function(bands, top) {
  upper <- c(bands[-1] - 1L, top)
  paste0(bands, "-", upper)
}
