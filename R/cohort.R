# build_cohort(): from validated records to one row per child, exactly as each
# protocol defines its analytic sample, arm, covariates and outcomes, with an
# exclusion flow that accounts for every child.
#
# Dates become integer day numbers here; the interval work runs in C
# (src/intervals.c) on tables sorted by child and start day, with 0-based
# offsets of each child's rows built here with order() and tabulate().

.treatments <- c("referral_date", "open_days_half", "open_days_28",
                 "care_entry", "alt_go_live", "embedding")

# Tables each outcome needs (besides children and referrals).
.outcome_tables <- list(
  cla_18m = "cla_episodes",
  cpp_duration = "cp_plans",
  days_cpp_18m = "cp_plans",
  rereferral_18m = c("assessments", "assessment_factors"),
  return_36m = c("cp_plans", "cin_plans", "cla_episodes"),
  cpp_12m = "cp_plans",
  days_plan_18m = c("cp_plans", "cin_plans"),
  kinship_first = "cla_episodes",
  reunified_18m = "cla_episodes",
  absence = "absence"
)

#' Build a protocol's analytic cohort
#'
#' Turns the records into one row per child as the design defines the
#' sample: each child's first referral in the trial period, age at referral
#' in range, and for Family Valued a case still open after assessment. Adds
#' the arm, the period (financial year, quarter and for Family Valued the
#' six-month step), the covariates and every outcome of the design, and
#' counts every child left out in an exclusion flow. Rows follow the order
#' of the `children` table; referrals on the same day are ordered by
#' `referral_id`.
#'
#' Outcomes are 0/1 integers (binary) or day counts, `NA` where the child is
#' outside the outcome's sample or its window is not yet observable. The
#' companion column `<outcome>_observable` makes the reason recoverable:
#' `NA` outside the sample, `FALSE` when the window ends after `data_end`,
#' `TRUE` otherwise (an `NA` outcome with `TRUE` is a missing value).
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
#' * `cla_18m`: a care episode (short breaks V3/V4 excluded by default)
#'   overlaps the window, i.e. the child is looked after on some day of it
#'   (whether or not the episode results from this referral, FS footnote 16);
#'   with the design's `cla_definition = "entered"`, an episode starts in it.
#' * `cpp_duration` (FS): days on the first CPP starting within 6 months of
#'   the referral, capped at 12 months from its start;
#'   `cpp_duration_censored` is `TRUE` when the plan ran past the cap (or is
#'   still open at it).
#' * `days_cpp_18m` (FS), `days_plan_18m` (FV): days on CPPs (and CIN plans)
#'   in the window; at most the window's length (the censoring point).
#' * `rereferral_18m` (FS): a later referral (strictly after the first
#'   referral's day) within 18 months, for children whose first assessment
#'   after the first referral recorded a toxic-trio factor.
#' * `return_36m` (FV): a spell of CPP/CIN plans (overlapping or touching
#'   plans merged, so stepping up from CIN plan to CPP is not a return) ends
#'   within 36 months of the referral and the child then starts a new plan or
#'   a care episode within the 36 months.
#' * `cpp_12m` (FV): a CPP starts within 12 months of the referral.
#' * `kinship_first` (FV): children looked after on some day of the 18-month
#'   window (`cla_18m == 1` by the default definition); the first placement
#'   of the period of care (started by the latest `rne == "S"` episode) that
#'   the child is in on or after the referral is `U1`-`U3`.
#' * `reunified_18m` (FV): children whose period of care (as for kinship)
#'   started within the trial period and who do not turn 18 within 18 months
#'   of its start; 1 if the period ends (first episode with `rec` other than
#'   X1) with a return home (E4A) within 18 months of its start.
#' * Absence: the three school terms starting after the referral (autumn 1
#'   August, spring 1 January, summer Easter Monday; NPD's Summer and
#'   Summer6th added together), see [absence_panel()].
#'
#' Covariates: `gender` (protocol codes 0-4 as a factor; values that conflict
#' over time become "missing" unless the others are missing or "not
#' recorded"), `ethnic_group` (major group, conflicting groups become
#' Missing), `age` in completed years at referral (a 29 February birthday
#' falls on 1 March in other years; children referred before birth are 0),
#' `age_band`, `disabled`, `fsm`, `uasc` (maximum over the records up to the
#' referral, or the earliest record if none precedes it), `n_previous_cpp`
#' (CPPs starting before the referral in the records, or the recorded
#' NumberOfPreviousCPP of the next CPP if larger) and `previous_cpp` (0/1, for
#' CEM), `primary_need`, and the LA
#' covariates at the latest month on or before the referral (gaps filled by
#' linear interpolation, last/next observation carried at the ends; the
#' innovation-programme flag is carried forward). Covariates missing for more
#' than `design$max_missing` of the cohort are reported and dropped.
#'
#' Treatment definitions (`treatment`): `"referral_date"` (the referral
#' started on or after go-live; primary), `"open_days_half"` (at least half
#' of the child's open-referral days in the trial period were on or after
#' go-live; a referral is open from its referral day to its closure day
#' inclusive, open referrals to the end of the trial period; a child with no
#' open day in it keeps the referral-date arm), `"open_days_28"` (at least 28
#' such days), `"care_entry"` (FV:
#' the period of care used for `kinship_first` and `reunified_18m` began on or
#' after go-live; `NA` for children with no care), `"alt_go_live"` (FV: the
#' roll-out table's `alt_go_live_date`) and `"embedding"` (FV: children
#' referred between `embed_start` and `embed_end` are excluded, the arm is
#' by referral date).
#'
#' @param data An `sfp_data` object (see [sfp_data()]) with at least the
#'   `children` and `referrals` tables and the tables the outcomes need.
#' @param design An `sfp_design` from [design_family_safeguarding()] or
#'   [design_family_valued()].
#' @param treatment How the arm is defined, one of `"referral_date"`,
#'   `"open_days_half"`, `"open_days_28"`, `"care_entry"`, `"alt_go_live"`,
#'   `"embedding"` (see Details).
#' @param outcomes The outcomes to build; `NULL` for all of the design's
#'   (`"absence"` stands for the absence panel).
#' @return An `sfp_cohort`: a data frame with one row per child and columns
#'   `child_id`, `la`, `referral_id`, `referral_date`, `age`, `unborn`,
#'   `treated`, `fin_year`, `quarter`, `step` (FV), the covariates, the
#'   outcomes and their `_observable` companions. Attributes: `design`,
#'   `treatment`, `data_end`, `exclusion_flow` (see [exclusion_flow()]),
#'   `absence` (see [absence_panel()]), `covariates_dropped`.
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
  fs <- design$programme == "FS"
  allowed <- if (fs) .treatments[1:3] else .treatments
  if (!is.character(treatment) || length(treatment) != 1L || !treatment %in% allowed) {
    stop_arg("treatment",
             sprintf("must be one of %s for the %s design, not %s",
                     paste0("\"", allowed, "\"", collapse = ", "), design$programme,
                     if (is.character(treatment)) paste0("\"", treatment[1], "\"") else
                       class(treatment)[1]),
             if (fs) "care_entry, alt_go_live and embedding are Family Valued sensitivity analyses." else NULL)
  }
  outcomes <- outcomes %||% design$outcomes
  bad <- setdiff(outcomes, design$outcomes)
  if (!is.character(outcomes) || length(bad)) {
    stop_arg("outcomes", sprintf("has %s not in the %s design",
                                 paste0("\"", bad, "\"", collapse = ", "), design$programme),
             paste0("choose among ", paste(design$outcomes, collapse = ", "), "."))
  }
  need <- unique(c("children", "referrals", unlist(.outcome_tables[outcomes]),
                   if (treatment == "care_entry") "cla_episodes"))
  lacking <- need[vapply(need, function(t) is.null(data[[t]]), TRUE)]
  if (length(lacking)) {
    users <- vapply(lacking, function(t) {
      o <- outcomes[vapply(outcomes, function(o) t %in% .outcome_tables[[o]], TRUE)]
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
  check_columns(data, outcomes, design)

  las <- design$las
  if (treatment %in% c("alt_go_live", "embedding")) {
    cols <- if (treatment == "alt_go_live") "alt_go_live_date" else c("embed_start", "embed_end")
    for (col in cols) {
      bad <- which(is.na(las[[col]]))
      if (length(bad)) {
        stop_rows("rollout", col, bad, "have no date",
                  sprintf("give every LA its `%s` to use treatment = \"%s\".", col, treatment),
                  keys = las$la_code[bad], key_name = "la_code")
      }
    }
  }

  # ---- children: one row per child (rules over time applied later) -------
  ch <- data$children
  child_ids <- unique(c(as.character(ch$child_id), as.character(data$referrals$child_id)))
  over_time <- "recorded_date" %in% names(ch)
  if (!over_time && anyDuplicated(ch$child_id)) {
    dup <- which(duplicated(ch$child_id))
    stop_rows("children", "child_id", dup, "have a child_id already seen",
              "give one row per child, or add `recorded_date` for one row per child per return.",
              keys = ch$child_id[dup], key_name = "child_id")
  }
  chi <- match(child_ids, ch$child_id)           # first row; replaced by latest below
  if (over_time) {
    o <- order(ch$child_id, ch$recorded_date, decreasing = c(FALSE, TRUE),
               method = "radix")
    latest <- o[!duplicated(ch$child_id[o])]
    chi <- latest[match(child_ids, ch$child_id[latest])]
  }
  la <- as.character(ch$la_code[chi])
  dob <- latest_non_na(ch, "dob", child_ids, over_time)
  edob <- if ("expected_dob" %in% names(ch)) latest_non_na(ch, "expected_dob", child_ids, over_time) else
    rep(NA_integer_, length(child_ids))

  data_end <- as.integer(design$data_end %||% records_end(data))
  ts <- as.integer(design$trial_start)
  te <- if (is.null(design$trial_end)) data_end else as.integer(design$trial_end)

  # ---- population --------------------------------------------------------
  n_all <- length(child_ids)
  reason <- rep(NA_character_, n_all)
  set_reason <- function(cond, why) {
    cond <- cond %in% TRUE & is.na(reason)
    reason[cond] <<- why
  }
  set_reason(is.na(la), "not in the children table")
  go_live <- as.integer(las$go_live_date[match(la, las$la_code)])
  if (!fs) set_reason(!la %in% las$la_code, "LA not in the trial")

  rf <- data$referrals
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
  set_reason(is.na(first_ref), "no referral in the trial period")
  if (!fs && design$require_open_after_assessment && design$entry == "first_open") {
    first_open <- first_of(in_period & rf_open %in% TRUE)
    set_reason(is.na(first_open), "no referral open after assessment")
    first_ref <- ifelse(is.na(first_open), first_ref, first_open)
  }
  ref <- rf_day[first_ref]

  unborn <- !is.na(ref) & ((is.na(dob) & !is.na(edob)) | (!is.na(dob) & dob > ref))
  age <- age_years(dob, ref)
  age[unborn] <- 0L
  set_reason(is.na(age), "date of birth missing")
  if (!design$include_unborn) set_reason(unborn, "unborn at referral")
  set_reason(age < design$age_range[1] | age > design$age_range[2], "age out of range")
  if (!fs && design$require_open_after_assessment) {
    set_reason(!(rf_open[first_ref] %in% TRUE), "closed after assessment")
  }

  # Arm of every child by the referral-date rule (for the flow); refined below.
  arm_ref <- as.integer(!is.na(go_live) & !is.na(ref) & ref >= go_live)
  arm_ref[is.na(ref)] <- NA_integer_
  if (treatment == "alt_go_live") {
    alt <- as.integer(las$alt_go_live_date[match(la, las$la_code)])
    arm_ref <- as.integer(!is.na(alt) & !is.na(ref) & ref >= alt)
    arm_ref[is.na(ref)] <- NA_integer_
  }
  if (treatment == "embedding") {
    es <- as.integer(las$embed_start[match(la, las$la_code)])
    ee <- as.integer(las$embed_end[match(la, las$la_code)])
    set_reason(!is.na(ref) & !is.na(es) & ref >= es & ref <= ee,
               "referred in the embedding window")
  }

  keep <- which(is.na(reason))
  n <- length(keep)
  r <- ref[keep]
  coh <- data.frame(child_id = child_ids[keep], la = la[keep],
                    referral_id = as.character(rf$referral_id[first_ref[keep]]),
                    referral_date = day_to_date(r), age = age[keep],
                    unborn = unborn[keep], stringsAsFactors = FALSE)

  # ---- record tables indexed by cohort child -----------------------------
  ci_of_child <- function(ids) match(as.character(ids), coh$child_id)
  ci_rf <- ci_of_child(rf$child_id)
  ci_of_ref <- function(rid) ci_rf[match(as.character(rid), as.character(rf$referral_id))]
  refs_tab <- index_table(ci_rf, rf_day, n)

  cpp <- data$cp_plans
  cpp_tab <- if (!is.null(cpp)) index_table(ci_of_ref(cpp$referral_id),
                                            as.integer(cpp$start), n)
  cin <- data$cin_plans
  cla <- data$cla_episodes
  cla_tab <- NULL
  if (!is.null(cla)) {
    keep_ep <- if (design$short_breaks == "exclude") !(cla$ls %in% design$codes$short_breaks) else
      rep(TRUE, nrow(cla))
    cla_tab <- index_table(ifelse(keep_ep, ci_of_child(cla$child_id), NA_integer_),
                           as.integer(cla$decom), n)
  }
  win <- function(m) add_months(r, m)
  observable <- function(end_day) end_day <= data_end

  # ---- treatment ---------------------------------------------------------
  gl <- go_live[keep]
  treated <- arm_ref[keep]
  care <- NULL
  if (!is.null(cla_tab)) {
    rows <- cla_tab$rows
    ends_period <- as.integer(!is.na(cla$dec[rows]) & !is.na(cla$rec[rows]) &
                                cla$rec[rows] != "X1")
    m <- .Call(ffi_care_period, as.integer(cla$decom[rows]), as.integer(cla$dec[rows]),
               as.integer(cla$rne[rows] %in% "S"), ends_period, cla_tab$offsets,
               as.integer(r))
    care <- list(first = m[, 1], pstart = m[, 2], pend = m[, 3], rows = rows)
    care$pstart_day <- as.integer(cla$decom[orig_row(rows, care$pstart)])
  }
  if (treatment %in% c("open_days_half", "open_days_28")) {
    rows <- refs_tab$rows
    s <- rf_day[rows]
    e <- as.integer(rf$closure_date[rows]) + 1L   # closure day counted
    lo_all <- rep(ts, n)
    hi_all <- rep(te + 1L, n)
    lo_fs <- ifelse(is.na(gl), te + 1L, pmax(ts, gl))
    total <- .Call(ffi_union_days, s, e, refs_tab$offsets, lo_all, hi_all)
    under <- .Call(ffi_union_days, s, e, refs_tab$offsets, as.integer(lo_fs), hi_all)
    treated <- if (treatment == "open_days_half") as.integer(2L * under >= total) else
      as.integer(under >= 28L)
    if (treatment == "open_days_half") treated[total == 0L] <- arm_ref[keep][total == 0L]
  }
  if (treatment == "care_entry") {
    treated <- as.integer(!is.na(gl) & care$pstart_day >= gl)
    treated[is.na(gl)] <- 0L
    treated[is.na(care$pstart_day)] <- NA_integer_
  }
  coh$treated <- as.integer(treated)

  # ---- periods -----------------------------------------------------------
  civ <- civil(r)
  fy <- civ$y - (civ$m < 4L)
  coh$fin_year <- sprintf("%d/%02d", fy, (fy + 1L) %% 100L)
  coh$quarter <- if (design$quarter == "calendar") {
    sprintf("%dQ%d", civ$y, (civ$m - 1L) %/% 3L + 1L)
  } else {
    sprintf("%s Q%d", coh$fin_year, ((civ$m - 4L) %% 12L) %/% 3L + 1L)
  }
  if (!fs) {
    breaks <- add_months(rep(ts, 64L), design$step_months * (0:63))
    # complete steps in the trial period: a step's break is the day after it
    # ends, and the trial end date is inclusive
    n_steps <- max(1L, sum(breaks[-1] <= te + 1L))
    coh$step <- pmin(findInterval(r, breaks) - 1L, n_steps - 1L)
  }

  # ---- covariates --------------------------------------------------------
  cov <- child_covariates(ch, child_ids[keep], r, over_time, design)
  for (nm in names(cov)) coh[[nm]] <- cov[[nm]]
  coh$age_band <- factor(findInterval(coh$age, design$age_bands),
                         levels = seq_along(design$age_bands),
                         labels = age_band_labels(design$age_bands, design$age_range[2]))
  coh$n_previous_cpp <- if (is.null(cpp_tab)) rep(NA_integer_, n) else
    previous_cpp(cpp, cpp_tab, r)
  coh$previous_cpp <- as.integer(coh$n_previous_cpp > 0L)   # CEM (FS p. 9)
  pn <- rf$primary_need[first_ref[keep]]
  coh$primary_need <- factor(if (is.null(pn)) rep(NA_character_, n) else pn,
                             levels = paste0("N", 0:9), labels = .primary_need_labels)
  lac <- la_covariates(data$la_covariates, coh$la, r)
  for (nm in names(lac)) coh[[nm]] <- lac[[nm]]

  # ---- outcomes ----------------------------------------------------------
  w <- design$windows
  put <- function(name, value, in_sample, obs) {
    value[!in_sample | !obs] <- NA
    coh[[name]] <<- value
    coh[[paste0(name, "_observable")]] <<- ifelse(in_sample, obs, NA)
  }
  if ("cla_18m" %in% outcomes) {
    W <- win(w[["cla"]])
    rows <- cla_tab$rows
    idx <- if (identical(design$cla_definition, "entered")) {
      .Call(ffi_first_in_range, as.integer(cla$decom[rows]), cla_tab$offsets,
            as.integer(r), as.integer(W))
    } else {
      .Call(ffi_first_overlap, as.integer(cla$decom[rows]), as.integer(cla$dec[rows]),
            cla_tab$offsets, as.integer(r), as.integer(W))
    }
    put("cla_18m", as.integer(idx >= 0L), rep(TRUE, n), observable(W))
  }
  if ("cpp_duration" %in% outcomes) {
    W <- win(w[["cpp_start"]])
    rows <- cpp_tab$rows
    idx <- .Call(ffi_first_in_range, as.integer(cpp$start[rows]), cpp_tab$offsets,
                 as.integer(r), as.integer(W))
    has <- idx >= 0L
    s <- as.integer(cpp$start[orig_row(rows, idx)])
    e <- as.integer(cpp$end[orig_row(rows, idx)])
    cap <- add_months(s, w[["cpp_duration_cap"]])
    dur <- pmax(0L, pmin(ifelse(is.na(e), cap, e), cap) - s)
    obs <- observable(W) & (!has | observable(cap))
    # membership is unknown until the start window is over
    in_sample <- has | !observable(W)
    put("cpp_duration", as.integer(dur), in_sample, obs)
    cens <- has & (is.na(e) | e > cap)
    coh$cpp_duration_censored <- ifelse(is.na(coh$cpp_duration), NA, cens)
  }
  if ("days_cpp_18m" %in% outcomes) {
    W <- win(w[["days_cpp"]])
    rows <- cpp_tab$rows
    d <- .Call(ffi_union_days, as.integer(cpp$start[rows]), as.integer(cpp$end[rows]),
               cpp_tab$offsets, as.integer(r), as.integer(W))
    put("days_cpp_18m", d, rep(TRUE, n), observable(W))
  }
  if ("rereferral_18m" %in% outcomes) {
    W <- win(w[["rereferral"]])
    tt <- toxic_trio_at_assessment(data, coh$referral_id, design$codes$toxic_trio)
    idx <- .Call(ffi_first_in_range, rf_day[refs_tab$rows], refs_tab$offsets,
                 as.integer(r + 1L), as.integer(W))
    put("rereferral_18m", as.integer(idx >= 0L), tt, observable(W))
  }
  if (any(c("return_36m", "days_plan_18m") %in% outcomes)) {
    plan_child <- c(ci_of_ref(cpp$referral_id), ci_of_ref(cin$referral_id))
    plan_start <- c(as.integer(cpp$start), as.integer(cin$start))
    plan_end <- c(as.integer(cpp$end), as.integer(cin$end))
    plan_tab <- index_table(plan_child, plan_start, n)
    ps <- plan_start[plan_tab$rows]
    pe <- plan_end[plan_tab$rows]
  }
  if ("return_36m" %in% outcomes) {
    W <- win(w[["return"]])
    ret <- .Call(ffi_plan_return, ps, pe, plan_tab$offsets,
                 as.integer(cla$decom[cla_tab$rows]), cla_tab$offsets,
                 as.integer(r), as.integer(W))
    put("return_36m", ret, rep(TRUE, n), observable(W))
  }
  if ("cpp_12m" %in% outcomes) {
    W <- win(w[["cpp"]])
    idx <- .Call(ffi_first_in_range, as.integer(cpp$start[cpp_tab$rows]), cpp_tab$offsets,
                 as.integer(r), as.integer(W))
    put("cpp_12m", as.integer(idx >= 0L), rep(TRUE, n), observable(W))
  }
  if ("days_plan_18m" %in% outcomes) {
    W <- win(w[["days_plan"]])
    d <- .Call(ffi_union_days, ps, pe, plan_tab$offsets, as.integer(r), as.integer(W))
    put("days_plan_18m", d, rep(TRUE, n), observable(W))
  }
  if (any(c("kinship_first", "reunified_18m") %in% outcomes)) {
    rows <- care$rows
    pst <- orig_row(rows, care$pstart)
    pen <- orig_row(rows, care$pend)
  }
  if ("kinship_first" %in% outcomes) {
    W <- win(w[["cla"]])
    first_day <- as.integer(cla$decom[orig_row(rows, care$first)])
    in_care <- !is.na(first_day) & first_day <= W
    kin <- ifelse(is.na(cla$place[pst]), NA_integer_,
                  as.integer(cla$place[pst] %in% design$codes$kinship))
    # membership (looked after within the window) is unknown until it is over
    put("kinship_first", kin, in_care | !observable(W), observable(W))
  }
  if ("reunified_18m" %in% outcomes) {
    P <- care$pstart_day
    in_s <- !is.na(P) & P >= ts & P <= te
    WR <- add_months(P, w[["reunification"]])
    birth <- ifelse(is.na(dob[keep]), edob[keep], dob[keep])
    turns18 <- add_months(birth, 216L)
    in_s <- in_s & !(is.na(birth) | turns18 <= WR)
    dec_p <- as.integer(cla$dec[pen])
    home <- !is.na(pen) & !is.na(dec_p) & dec_p <= WR &
      cla$rec[pen] %in% design$codes$reunification
    put("reunified_18m", as.integer(home), in_s, !is.na(WR) & observable(WR))
  }
  absence <- NULL
  if ("absence" %in% outcomes) {
    absence <- absence_terms(data$absence, coh$child_id, r, design$absence_terms)
  }

  # ---- missing covariates ------------------------------------------------
  cov_cols <- intersect(c("gender", "ethnic_group", "age", "disabled", "fsm", "uasc",
                          "n_previous_cpp", "previous_cpp", "primary_need", "prop_fsm",
                          "prop_white_british", "other_innovation_programme"),
                        names(coh))
  miss <- vapply(coh[cov_cols], function(v) if (n) mean(is.na(v)) else 0, 0)
  drop <- names(miss)[miss > design$max_missing]
  if (length(drop) && n) {
    message(sprintf("Covariate%s missing for more than %s%% of the cohort, dropped: %s.",
                    if (length(drop) > 1) "s" else "", format(100 * design$max_missing),
                    paste0(drop, " (", sprintf("%.1f", 100 * miss[drop]), "%)",
                           collapse = ", ")))
    coh[drop] <- NULL
  }

  # ---- exclusion flow ----------------------------------------------------
  arm_all <- arm_ref
  arm_all[keep] <- coh$treated
  flow <- build_flow(la, arm_all, reason, keep, coh, outcomes, absence)

  class(coh) <- c("sfp_cohort", "data.frame")
  attr(coh, "design") <- design
  attr(coh, "treatment") <- treatment
  attr(coh, "data_end") <- day_to_date(data_end)
  attr(coh, "exclusion_flow") <- flow
  attr(coh, "absence") <- absence
  attr(coh, "covariate_missing") <- miss
  attr(coh, "covariates_dropped") <- drop
  coh
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

check_columns <- function(data, outcomes, design) {
  need <- list(children = c("child_id", "la_code", "dob"),
               referrals = c("referral_id", "child_id", "referral_date"))
  if (any(c("cla_18m", "return_36m", "kinship_first", "reunified_18m") %in% outcomes))
    need$cla_episodes <- c("child_id", "decom", "dec", "ls",
                           if (any(c("kinship_first", "reunified_18m") %in% outcomes)) c("rne", "place", "rec"))
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

# End of the data: the latest referral, closure, care start or care end day
# in the records (the CIN and SSDA903 spines; plan and assessment dates are
# nested in referrals and cannot legitimately be later).
records_end <- function(data) {
  cols <- list(referrals = c("referral_date", "closure_date"),
               cla_episodes = c("decom", "dec"))
  days <- unlist(lapply(names(cols), function(t) {
    x <- data[[t]]
    if (is.null(x)) return(NULL)
    vapply(intersect(cols[[t]], names(x)), function(cl) {
      v <- suppressWarnings(max(as.integer(x[[cl]]), na.rm = TRUE))
      if (is.finite(v)) as.numeric(v) else NA_real_
    }, 0)
  }))
  if (!length(days) || all(is.na(days))) {
    stop("The records hold no dates, so the end of the data is unknown.\nFix: give `data_end` to the design.",
         call. = FALSE)
  }
  as.integer(max(days, na.rm = TRUE))
}

# ---- index vectors ----------------------------------------------------------

# Rows of a table sorted by cohort child (1..n, NA = not in the cohort) and
# start day, with the 0-based offsets of each child's rows.
index_table <- function(child, start, n) {
  child <- as.integer(child)
  k <- which(!is.na(child))
  k <- k[order(child[k], start[k], method = "radix")]
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
  uasc <- if ("uasc" %in% names(ch)) ch$uasc else rep(NA, nrow(ch))
  list(
    gender = factor(gen, levels = 0:4, labels = .gender_labels),
    ethnic_group = factor(eth, levels = levels(ethnic_group(character()))),
    disabled = group_max01(gu, dis, n),
    fsm = group_max01(gu, fsm, n),
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

# Start days of the terms of academic year y (starting in August of y).
term_starts <- function(y) {
  u <- unique(y)
  i <- match(y, u)
  cbind(autumn = days_from_civil(u, 8L, 1L)[i], spring = days_from_civil(u + 1L, 1L, 1L)[i],
        summer = easter_sunday(u + 1L)[i] + 1L)
}

academic_year_start <- function(x) {
  y <- suppressWarnings(as.integer(substr(gsub("[^0-9]", "", as.character(x)), 1L, 4L)))
  y
}

# The `k` terms starting after each referral, matched with the absence
# records (Summer and Summer6th added together). Terms are numbered by an
# ordinal 3 * academic year + (0 autumn, 1 spring, 2 summer), so matching a
# record to a child's term index is integer arithmetic: the record's ordinal
# minus the ordinal of the child's first term after the referral, plus one.
absence_terms <- function(ab, ids, r, k) {
  n <- length(ids)
  empty <- data.frame(child_id = character(), term_index = integer(),
                      academic_year = character(), term = character(),
                      term_start = as.Date(character()), days_since_referral = integer(),
                      sessions_possible = integer(), unauth_sessions = integer(),
                      absence_rate = numeric(), stringsAsFactors = FALSE)
  if (!n) return(empty)
  civ <- civil(r)
  y0 <- civ$y - (civ$m < 8L)                      # academic year of the referral
  cand <- cbind(term_starts(y0), term_starts(y0 + 1L))
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
  start <- term_starts(yy)[cbind(seq_along(yy), tt)]
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

# ---- exclusion flow ---------------------------------------------------------

.population_steps <- c("not in the children table", "LA not in the trial",
                       "no referral in the trial period",
                       "no referral open after assessment",
                       "date of birth missing", "unborn at referral",
                       "age out of range", "closed after assessment",
                       "referred in the embedding window")

build_flow <- function(la, arm, reason, keep, coh, outcomes, absence) {
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
  for (s in .population_steps) add("population", s, count(reason %in% s))
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
    add(o, "outside the outcome's sample", count_c(is.na(obs)))
    add(o, "window not yet observable", count_c(obs %in% FALSE))
    add(o, "missing outcome", count_c(obs %in% TRUE & is.na(v)))
    add(o, "analysed", count_c(!is.na(v)))
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
#' `"outside the outcome's sample"` + `"window not yet observable"` +
#' `"missing outcome"` + `"analysed"`. Arms are those of the cohort's
#' treatment definition; excluded children are assigned by their first
#' referral in the trial period and go-live date, `"unassigned"` if they have
#' none.
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
  outs <- intersect(d$outcomes, names(x))
  for (o in outs) {
    v <- x[[o]]
    cat(sprintf("  %-15s analysed %7d  mean %s\n", o, sum(!is.na(v)),
                if (any(!is.na(v))) format(round(mean(v, na.rm = TRUE), 3)) else "-"))
  }
  if (length(attr(x, "covariates_dropped")))
    cat("Dropped covariates (missing > ", 100 * d$max_missing, "%): ",
        paste(attr(x, "covariates_dropped"), collapse = ", "), "\n", sep = "")
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
