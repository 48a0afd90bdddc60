# simulate_sfp(): synthetic CIN census, SSDA903 and NPD records for the two
# protocols. Child-level demographics are drawn here, vectorised; one C
# routine (src/simulate.c) walks each child's history and emits every event
# record as integer columns, which are turned into the ten tables here.

# The code vectors the C kernel indexes (1-based): the official lists of
# R/codes.R, whose order the enums at the top of src/simulate.c mirror, so
# a change to a list there must be made in the C enums too.
.sim_codes <- .code_lists[c("referral_source", "primary_need", "closure_reason",
                             "factor", "cp_category", "rne", "ls", "cin_903",
                             "place", "place_provider", "rec", "term")]

# The true effects simulate_sfp() understands, in the order of the C enum.
.sim_effect_names <- c("cla", "cpp", "cpp_duration", "rereferral", "return",
                       "kinship", "reunification", "absence")

# The model constants, in the order of the C parameter enum.
.sim_par_names <- c("day0", "day_end", "a0", "b_cpp", "b_noplan", "p_nfa",
                    "p_assessed", "p_cpp", "p_cin", "p_noplan", "p_rc8",
                    "p_rc9", "p_reref12", "p_reref_later", "p_kin",
                    "p_reunify", "cut_f2021", "cut_f24a", "cut_k3", "cut_p2",
                    "cut_z11", "abs_cin", "cla_w1", "cla_w2", "cla_d1",
                    "cla_d2", "cla_d3", "cpp_median", "cpp_sdlog",
                    "cin_median", "cin_sdlog")

# Shares and shapes of the records (England-like; see ?simulate_sfp).
.sim_model <- list(
  b_cpp = 1.4,         # CLA log odds: child protection plan vs CIN plan
  b_noplan = -1.2,     # CLA log odds: open without a plan vs CIN plan
  p_nfa = 0.07,        # referral NFA
  p_assessed = 0.88,   # assessed, among referrals not NFA
  p_cpp = 0.165,       # CPP after assessment (baseline)
  p_cin = 0.29,        # CIN plan after assessment
  p_noplan = 0.145,    # open without a plan, closed RC7 within months
  p_rc8 = 0.30,        # closed after assessment, no further action
  p_rc9 = 0.10,        # closed after assessment, early help
  p_reref12 = 0.26,    # re-referral within 12 months of the referral
  p_reref_later = 0.30,# later re-referral otherwise
  p_kin = 0.21,        # first placement with relatives or friends (U1-U3)
  p_reunify = 0.36,    # period of care ends with a return home
  abs_cin = 0.25,      # absence logit shift in terms after the referral
  cla_w1 = 0.65, cla_w2 = 0.22,          # CLA delay mixture weights
  cla_d1 = 182, cla_d2 = 548, cla_d3 = 900, # ... and its day bounds
  cpp_median = 260, cpp_sdlog = 0.55,    # CPP duration (days)
  cin_median = 165, cin_sdlog = 0.70     # CIN plan duration (days)
)

# CLA logit shift by age at referral (years; -1 = unborn).
sim_age_logit <- function(age) {
  out <- rep(0, length(age))
  out[age < 0] <- 1.3
  out[age >= 0 & age < 1] <- 1.0
  out[age >= 5 & age < 10] <- -0.35
  out[age >= 10 & age < 13] <- -0.2
  out[age >= 13 & age < 16] <- 0.35
  out[age >= 16] <- 0.1
  out
}
.sim_uasc_logit <- 3

.sim_defaults <- list(
  family_valued = list(
    n_la = 5L, children_per_la_year = 5200, icc = 0.01566, baseline = 0.04,
    start = "2017-10-01", end = "2025-09-30",
    go_live = c("2020-04-01", "2020-10-01", "2021-04-01", "2021-10-01",
                "2022-04-01"),
    age_max = 17, trend_sd = 0.06, trend_ar = 0.5),
  family_safeguarding = list(
    n_la = 25L, children_per_la_year = 4700, icc = 0.00722, baseline = 0.06,
    start = "2015-04-01", end = "2024-03-31",
    go_live = c("2020-09-01", "2021-01-01", "2021-05-01", "2021-10-01",
                "2022-04-01"),
    age_max = 12, trend_sd = 0.8, trend_ar = 0)
)

#' Simulate synthetic children's social care records
#'
#' Draws synthetic CIN census, SSDA903 and NPD records shaped like
#' England's, for the Family Valued stepped-wedge trial or the Family
#' Safeguarding difference-in-differences study, with known true effects.
#' Child demographics are drawn in R; one C routine walks every child's
#' history (referrals, assessments and their factors, CIN plans, child
#' protection plans, periods of care, school terms) and emits all records.
#'
#' **Family Valued** (defaults): 5 local authorities (LAs) going live at
#' six-month steps from 2020-04-01 to 2022-04-01 in a stratified random order
#' (2 high-readiness LAs randomly to steps 1-2, 3 low-readiness LAs to steps
#' 3-5; with more LAs, they are shared out over the five steps and the first
#' two steps are the high-readiness stratum); trial period 2019-10-01 to
#' 2022-09-30; first referrals from 2017-10-01 to the end of the trial period,
#' records to 2025-09-30; 5,200 new children per LA per year; becoming looked
#' after within 18 months about 4% among children aged 0-17 whose case is
#' open after assessment; ICC 0.01566. With `n_comparators` (default 0), the
#' records also hold that many comparator LAs for the protocol's DiD strand
#' (codes after the trial's LAs, never live, in the `rollout` table with role
#' `"comparator"`, so `design_family_valued(x, strand = "did")` takes them):
#' as for Family Safeguarding, three per treated LA at most, while a quarter
#' of them keep their own paths, are built parallel to a treated LA (its
#' logit trajectory, a level near its level; `attr(x, "truth")$parallel_to`),
#' the others have their own pandemic shock and movement. They share the
#' trial's LA size, random-effect and covariate distributions.
#'
#' **Family Safeguarding** (defaults): 25 LAs, 5 treated going live between
#' 2020-09-01 and 2022-04-01 and 20 never-treated candidate comparators;
#' records from 2015-04-01 to 2024-03-31; 4,700 new children per LA per year
#' (about 3,400 aged 0-12 referred per LA per year, the protocol's cluster
#' size); becoming looked after within 18 months about 6% among referred
#' children aged 0-12; ICC 0.00722. Each treated LA, and each comparator
#' built with its own path, has an LA x quarter trajectory on the logit
#' scale: a secular trend, a quarter-to-quarter movement (independent from
#' quarter to quarter, SD `trend_sd` = 0.8) and a 2020 pandemic shock of
#' LA-specific size and timing, shifted so that its average rate before the
#' first go-live is the LA's calibrated level. Three comparators per treated
#' LA (fifteen in all; in general three per treated LA while a quarter of
#' the comparators keep their own paths) are built parallel to it: their
#' level is near the treated LA's and their expected rate in the protocol's
#' population moves, quarter by quarter, by as much as the treated LA's (on
#' the probability scale, the scale of the protocol's linear DiD; a rate
#' cannot fall below zero, so where the treated LA's falls by more than the
#' comparator's whole level the comparator's stops near zero). The movement
#' is large on purpose: against the binomial noise of quarterly rates of
#' about 850 children, a more realistic movement (SD 0.4) often leaves the
#' parallel comparators indistinguishable from the others in the protocol's
#' pre-period matching (`bench/match_trends.R`). The `rollout` table holds
#' rows for the treated LAs only: the comparators are a candidate pool,
#' matched later (they are listed in `attr(x, "truth")$la`).
#'
#' The LA random intercept is calibrated so that the expected LA rate of
#' becoming looked after within 18 months in the protocol's population equals
#' `baseline` and its between-LA variance divided by `baseline * (1 -
#' baseline)` (the one-way ANOVA / Stata `loneway` scale) equals `icc`, by
#' Gauss-Hermite quadrature over the random effect, on the model's own age
#' distribution at referral. A pilot walk of 60,000 children (one LA, no LA
#' effects or trends; its own fixed seed, so the data still depend only on
#' `seed`; cached for the session) corrects the analytic rate for
#' re-referrals and the timing rules.
#'
#' What the records look like (defaults, roughly): 7% of referrals NFA
#' (closed within days, RC7); 88% of the others assessed (assessment within
#' two weeks, 1-45 days long, 1-5 factors: domestic violence 3A/3B/3C in
#' about 30% of assessments, parental mental health 4B 25%, parental
#' substance misuse 1B/2B 17%); after assessment 16.5% a child protection
#' plan (median 8-9 months, about 3% over two years, often followed by a
#' CIN plan), 29% a CIN plan (median 5-6 months), 14.5% open without a plan
#' (closed RC7 within months), 30% closed RC8 and 10% RC9. "Open after
#' assessment" (the Family Valued population) means assessed, not NFA and
#' not closed RC8/RC9. Only open cases lead to care, with odds higher for
#' infants, teenagers, UASC and children on a CPP; most entries come within
#' six months of the referral, some up to 2.5 years later. A period of care
#' has up to three further episodes; first placements are with relatives or
#' friends (U1-U3) for about 17-18%; about 24% of periods end with a return
#' home (E4A) within 18 months, others with adoption, SGO, CAO, at 18 or
#' stay open. About 21% of referrals are followed by another within 12
#' months. Children with a CPP before the records start are counted in
#' `n_previous_cpp`.
#'
#' Effects (all zero by default) apply to referrals on or after the child's
#' LA's go-live date and to what flows from them: `cla` (log odds ratio of
#' becoming looked after), `cpp` (log odds ratio of a child protection plan
#' after assessment), `cpp_duration` (log ratio of CPP durations),
#' `rereferral` (log odds ratio of re-referral after a referral closed
#' without a plan), `return` (log odds ratio of re-referral after a referral
#' closed after a CIN plan or CPP), `kinship` (log odds ratio of a first
#' placement with relatives or friends), `reunification` (log odds ratio of a
#' period of care ending with a return home) and `absence` (percentage points
#' added to the rate of unauthorised absence in terms starting after such a
#' referral).
#'
#' Other realistic features: first referrals fall by a quarter in the first
#' 2020 lockdown (23 March to 30 June); about 1.5% of children are unborn at
#' referral
#' (`expected_dob` set); factor codes 18A/19A before 2020-04-01 and
#' 18B/18C/19B/19C after, 24A from 2021-04-01; placement H5 becomes K3 from
#' 2024-04-01, P2 is not used after 2023-10-28, Z1 becomes Z11-Z14 from
#' 2025-04-01; about 1% of children have only short-break (V3/V4) episodes;
#' children still in care at 18 leave on their 18th birthday; summer-term
#' 2019/20 absence is absent (it was not collected); one summer term in ten
#' is split, as the NPD does, into a `summer` row (first half-term) and a
#' `summer6th` row (sixth half-term), to be added together; the monthly LA
#' covariates have gaps.
#'
#' @param design `"family_safeguarding"` or `"family_valued"`.
#' @param n_la Number of LAs (`NULL` for the design's default: 5 for Family
#'   Valued, 25 for Family Safeguarding).
#' @param children_per_la_year New children referred per LA per year, before
#'   an LA size factor (`NULL`: 5,200 for Family Valued, 4,700 for Family
#'   Safeguarding).
#' @param effects Named list (or named numeric vector) of true effects; names
#'   from `cla`, `cpp`, `cpp_duration`, `rereferral`, `return`, `kinship`,
#'   `reunification`, `absence`. Missing ones are zero.
#' @param seed One whole number: the seed for R's default generator
#'   (Mersenne-Twister, Inversion, Rejection); the user's generator and
#'   random-number state are restored on exit.
#' @param icc Target intracluster correlation of becoming looked after within
#'   18 months, in `[0, 1)` (`NULL`: 0.01566 Family Valued, 0.00722 Family
#'   Safeguarding).
#' @param baseline Target rate of becoming looked after within 18 months
#'   (`NULL`: 0.04 Family Valued, 0.06 Family Safeguarding).
#' @param start,end First and last dates of the records (`Date` or
#'   `"YYYY-MM-DD"`; `NULL` for the design's defaults).
#' @param ... Design settings: `n_treated` (Family Safeguarding, 1-5 treated
#'   LAs, default 5), `n_comparators` (Family Valued, comparator LAs of the
#'   DiD strand in addition to the `n_la` LAs of the trial, 0 to 200, default
#'   0), `last_referral` (last date of a first referral;
#'   default the end of the trial period for Family Valued, `end` for Family
#'   Safeguarding) and `standardise_la` (default `TRUE`: with 3 or more LAs
#'   the drawn LA effects are centred and scaled to have SD exactly
#'   `sigma_la`, so that a few LAs still show the target baseline and ICC;
#'   `FALSE` for plain independent draws) and `trend_sd` (SD of an LA's
#'   quarter-to-quarter movement on the logit scale, from 0 to 3; default
#'   0.8 for Family Safeguarding, 0.06 for Family Valued).
#' @param format `"tables"` (default) to return the tables only, or
#'   `"returns"` to also write them to `path` in the layouts of the CIN census
#'   and SSDA903 returns with [write_returns()] (read back with
#'   [read_returns()]).
#' @param path Directory for `format = "returns"`.
#' @return An [sfp_data()] object with the ten tables, and in
#'   `attr(x, "truth")` a list: `design`, `seed`, `effects`, `baseline`,
#'   `icc`, `sigma_la` (SD of the LA random intercept, logit scale),
#'   `intercept`, `calibration_inflation` (the pilot walk's ratio of
#'   simulated to analytic rate), `la` (one row per LA: `la_code`, `role`, `go_live_date`,
#'   `size`, `random_effect`, `parallel_to`, `stratum`, `wedge_order`,
#'   `n_children`), `trajectories` (LA x quarter logit shifts; columns are
#'   quarter start dates), `pandemic_shock` (per LA: `amplitude`, `onset`,
#'   `decay_quarters`), `parallel_to` (named by comparator LA),
#'   `model` (the model constants) and `period` (start, end, last referral).
#' @examples
#' x <- simulate_sfp("family_valued", children_per_la_year = 100, seed = 3)
#' sapply(x, NROW)
#' attr(x, "truth")$la
#' @export
simulate_sfp <- function(design = c("family_safeguarding", "family_valued"),
                         n_la = NULL, children_per_la_year = NULL,
                         effects = list(), seed = 1, icc = NULL,
                         baseline = NULL, start = NULL, end = NULL,
                         format = c("tables", "returns"), path = NULL, ...) {
  format <- match.arg(format)
  if (format == "returns" && (!is.character(path) || length(path) != 1L)) {
    stop_arg("path", "must be one directory path when format = \"returns\"",
             "give e.g. `path = tempfile()`.")
  }
  if (!is.character(design) || length(design) < 1L ||
      !design[1] %in% c("family_safeguarding", "family_valued")) {
    stop_arg("design", "must be \"family_safeguarding\" or \"family_valued\"",
             "give one of the two protocols' designs.")
  }
  design <- design[1]
  def <- .sim_defaults[[design]]
  dots <- list(...)
  bad <- setdiff(names(dots) %||% rep("", length(dots)),
                 c("n_treated", "n_comparators", "last_referral", "standardise_la",
                   "trend_sd"))
  if (length(dots) && (is.null(names(dots)) || length(bad))) {
    stop_arg("...", sprintf("has unknown setting%s %s",
                            if (length(bad) > 1) "s" else "",
                            paste0("`", bad, "`", collapse = ", ")),
             "name them: `n_treated`, `n_comparators`, `last_referral`, `standardise_la` or `trend_sd`.")
  }
  if (design == "family_safeguarding" && !is.null(dots$n_comparators)) {
    stop_arg("n_comparators", "is a Family Valued setting",
             "for Family Safeguarding the LAs other than the `n_treated` treated ones are the comparators: set `n_la`.")
  }
  n_la <- check_count(n_la %||% def$n_la, "n_la")
  cpy <- check_positive(children_per_la_year %||% def$children_per_la_year,
                        "children_per_la_year")
  eff <- check_effects(effects)
  check_seed(seed)
  icc <- icc %||% def$icc
  if (!is.numeric(icc) || length(icc) != 1L || !is.finite(icc) || icc < 0 ||
      icc >= 1) {
    stop_arg("icc", "must be one number in [0, 1)",
             "give e.g. `icc = 0.016`, or NULL for the design's value.")
  }
  baseline <- baseline %||% def$baseline
  if (!is.numeric(baseline) || length(baseline) != 1L ||
      !is.finite(baseline) || baseline <= 0 || baseline >= 0.5) {
    stop_arg("baseline", "must be one number in (0, 0.5)",
             "give e.g. `baseline = 0.05`, or NULL for the design's value.")
  }
  start <- check_date(start %||% def$start, "start")
  end <- check_date(end %||% def$end, "end")
  if (end <= start + 365) {
    stop_arg("end", "must be more than a year after `start`",
             sprintf("give an `end` after %s.", format(start + 365)))
  }

  x <- with_seed(seed, sim_draw(design, def, dots, n_la, cpy, eff, icc, baseline,
                                 start, end, seed))
  if (format == "returns") write_returns(x, path)
  x
}

# The draw itself, run by simulate_sfp() under with_seed(seed, ...) (so the
# caller's generator and random state are restored afterwards): arguments as
# checked there.
sim_draw <- function(design, def, dots, n_la, cpy, eff, icc, baseline, start, end,
                     seed) {
  # ---- local authorities and roll-out ----
  las <- if (design == "family_valued") sim_la_fv(n_la, def, dots$n_comparators)
    else sim_la_fs(n_la, def, dots$n_treated)
  la <- las$la
  # every LA of the records: the trial's and (Family Valued) the comparators
  n_all <- nrow(la)
  last_ref <- if (!is.null(dots$last_referral)) {
    check_date(dots$last_referral, "last_referral")
  } else if (design == "family_valued") {
    min(end, las$trial_end)
  } else end
  if (last_ref < start || last_ref > end) {
    stop_arg("last_referral", sprintf("must lie between `start` (%s) and `end` (%s)",
                                      format(start), format(end)),
             "give a date in that range, or leave it out for the default.")
  }
  la$size <- stats::rlnorm(n_all, 0, 0.3)
  la$size <- la$size / mean(la$size)
  years <- as.numeric(last_ref - start + 1) / 365.25
  la$n_children <- pmax(1L, as.integer(round(cpy * years * la$size)))
  if (sum(as.double(la$n_children)) > 5e6) {
    stop_arg("children_per_la_year",
             sprintf("would give %s children in all (more than 5 million)",
                     format(sum(as.double(la$n_children)), big.mark = ",")),
             "use fewer LAs or children per LA per year.")
  }
  la$prop_white_british <- stats::runif(n_all, 0.45, 0.92)

  # ---- children ----
  ch <- sim_children(la, start, last_ref)

  # ---- LA x quarter trajectories ----
  qstart <- seq(as.Date(cut(start, "quarter")), end, by = "quarter")
  trend_sd <- dots$trend_sd %||% def$trend_sd
  if (!is.numeric(trend_sd) || length(trend_sd) != 1L || !is.finite(trend_sd) ||
      trend_sd < 0 || trend_sd > 3) {
    stop_arg("trend_sd", "must be one number from 0 to 3",
             "give the SD of an LA's quarter-to-quarter movement on the logit scale, e.g. `trend_sd = 0.5`.")
  }
  traj <- sim_trajectories(design, la, las, qstart, trend_sd, def$trend_ar)

  # ---- calibrate the LA random intercept to baseline and ICC ----
  # First analytically (first referral only); then a pilot walk of 60,000
  # children (one LA, no LA effects, no trends, no treatment; its own fixed
  # seed, so it depends only on the design settings and is cached) measures
  # how far re-referrals and the timing rules move the rate, and the
  # calibration is solved again with that factor.
  day <- function(d) as.integer(unclass(as.Date(d)))
  par_of <- function(a0) {
    par <- c(.sim_model,
             day0 = day(start), day_end = day(end), a0 = a0,
             cut_f2021 = day("2020-04-01"), cut_f24a = day("2021-04-01"),
             cut_k3 = day("2024-04-01"), cut_p2 = day("2023-10-28"),
             cut_z11 = day("2025-04-01"))
    vapply(.sim_par_names, function(p) as.double(par[[p]]), 0)
  }
  qday <- as.integer(findInterval(seq(day(start), day(end)),
                                  day(qstart)) - 1L)
  terms <- sim_terms(start, end)
  pilot <- sim_pilot(design, def$age_max, baseline, icc, start, end,
                     last_ref, par_of, qday)
  cal <- sim_calibrate_cached(design, def$age_max, baseline, icc, pilot)
  z <- stats::rnorm(n_all)
  if (isTRUE(dots$standardise_la %||% TRUE) && n_all >= 3) {
    z <- (z - mean(z)) / stats::sd(z)
  }
  if (design == "family_safeguarding" || any(la$role == "comparator")) {
    z <- sim_parallel_levels(z, la, dots)
  }
  la$random_effect <- cal$sigma * z
  if (design == "family_safeguarding") {
    traj <- sim_rate_paths(traj, la, cal$intercept, design, def$age_max,
                           pilot, qstart < las$ref_date)
  }
  ch_eta <- ch$age_logit + .sim_uasc_logit * ch$uasc +
    la$random_effect[ch$la]

  # ---- the C walk ----
  raw <- sim_walk(ch, ch_eta, day(la$go_live_date), traj$matrix, qday,
                  par_of(cal$intercept), eff[.sim_effect_names], terms)

  x <- sim_tables(raw, ch, la, terms, las$rollout, start, end)
  truth <- list(
    design = design, seed = as.double(seed), effects = as.list(eff),
    baseline = baseline, icc = icc, sigma_la = cal$sigma,
    intercept = cal$intercept, calibration_inflation = pilot,
    la = la[c("la_code", "role", "go_live_date", "size", "random_effect",
              "parallel_to", "stratum", "wedge_order", "n_children")],
    trajectories = traj$matrix_named, pandemic_shock = traj$shocks,
    parallel_to = stats::setNames(la$parallel_to, la$la_code)[
      la$role == "comparator"],
    model = .sim_model,
    period = list(start = start, end = end, last_referral = last_ref,
                  trial_start = las$trial_start, trial_end = las$trial_end)
  )
  attr(x, "truth") <- truth
  x
}

# ---- argument checks ----

check_count <- function(x, arg) {
  if (!is.numeric(x) || length(x) != 1L || !is.finite(x) || x < 1 ||
      x != round(x)) {
    stop_arg(arg, "must be one whole number of at least 1",
             sprintf("give e.g. `%s = 5`, or NULL for the design's value.", arg))
  }
  as.integer(x)
}

check_positive <- function(x, arg) {
  if (!is.numeric(x) || length(x) != 1L || !is.finite(x) || x <= 0) {
    stop_arg(arg, sprintf("must be one positive number, not %s",
                          if (is.numeric(x)) format(x) else class(x)[1]),
             sprintf("give e.g. `%s = 1000`, or NULL for the design's value.",
                     arg))
  }
  as.double(x)
}

check_date <- function(x, arg) {
  d <- tryCatch(as.Date(x), error = function(e) as.Date(NA))
  if (length(d) != 1L || is.na(d)) {
    stop_arg(arg, "must be one date", "give a `Date` or \"YYYY-MM-DD\".")
  }
  d
}

check_effects <- function(effects) {
  if (is.numeric(effects)) effects <- as.list(effects)
  if (!is.list(effects) || (length(effects) && is.null(names(effects)))) {
    stop_arg("effects", "must be a named list of numbers",
             "give e.g. `effects = list(cla = -0.2)`.")
  }
  unknown <- setdiff(names(effects), .sim_effect_names)
  if (length(unknown)) {
    stop_arg("effects", sprintf("has unknown name%s %s",
                                if (length(unknown) > 1) "s" else "",
                                paste0("`", unknown, "`", collapse = ", ")),
             paste0("use names from: ",
                    paste(.sim_effect_names, collapse = ", "), "."))
  }
  ok <- vapply(effects, function(e) is.numeric(e) && length(e) == 1L &&
                 is.finite(e), TRUE)
  if (!all(ok)) {
    stop_arg("effects", sprintf("must hold one finite number per effect (%s)",
                                paste0("`", names(effects)[!ok], "`",
                                       collapse = ", ")),
             "give e.g. `effects = list(cla = -0.2)`; leave out zero effects.")
  }
  out <- stats::setNames(rep(0, length(.sim_effect_names)), .sim_effect_names)
  out[names(effects)] <- unlist(effects)
  out
}

# ---- local authorities ----

sim_la_codes <- function(n) as.character(900L + seq_len(n))

sim_la_fv <- function(n_la, def, n_comparators = NULL) {
  n_comp <- sim_check_comparators(n_comparators)
  n_steps <- min(5L, n_la)
  go <- as.Date(def$go_live)[seq_len(n_steps)]
  step_of <- rep(seq_len(n_steps), length.out = n_la)
  step_of <- sort(step_of)   # LAs per step, shared out evenly
  n_high_steps <- if (n_steps >= 2) max(1L, round(2 * n_steps / 5)) else 1L
  n_high <- sum(step_of <= n_high_steps)
  codes <- sim_la_codes(n_la)
  # readiness is a property of the LA; the order is randomised within stratum
  high <- sort(sample.int(n_la, n_high))
  low <- setdiff(seq_len(n_la), high)
  step <- integer(n_la)
  step[high] <- step_of[seq_len(n_high)][sample.int(n_high)]
  if (length(low)) {
    step[low] <- step_of[-seq_len(n_high)][sample.int(length(low))]
  }
  go_live <- go[step]
  trial_start <- seq(min(go), by = "-6 months", length.out = 2)[2]
  trial_end <- seq(max(go), by = "6 months", length.out = 2)[2] - 1
  embed_start <- go_live - sample(60:120, n_la, replace = TRUE)
  alt <- go_live + sample(91:183, n_la, replace = TRUE)
  stratum <- ifelse(seq_len(n_la) %in% high, "high", "low")
  la <- data.frame(la_code = codes, role = "treated", go_live_date = go_live,
                   parallel_to = NA_character_, stratum = stratum,
                   wedge_order = step, stringsAsFactors = FALSE)
  rollout <- data.frame(
    la_code = codes, programme = "FV", role = "treated",
    matched_to_la = NA_character_, outcome = NA_character_,
    go_live_date = go_live, wedge_order = as.integer(step),
    stratum = stratum, trial_start = trial_start, trial_end = trial_end,
    embed_start = embed_start, embed_end = go_live,
    alt_go_live_date = alt, stringsAsFactors = FALSE)
  rollout <- rollout[order(rollout$wedge_order, rollout$la_code), ]
  if (n_comp > 0L) {
    cmp <- sim_fv_comparators(n_la, n_comp, trial_start, trial_end)
    la <- rbind(la, cmp$la)
    rollout <- rbind(rollout, cmp$rollout)
  }
  rownames(rollout) <- NULL
  list(la = la, rollout = rollout, trial_start = trial_start,
       trial_end = trial_end, ref_date = min(go))
}

sim_check_comparators <- function(n) {
  if (is.null(n)) return(0L)
  if (!is.numeric(n) || length(n) != 1L || !is.finite(n) || n < 0 || n > 200 ||
      n != round(n)) {
    stop_arg("n_comparators", "must be a whole number from 0 to 200",
             "give the number of comparator LAs of the Family Valued DiD strand, e.g. `n_comparators = 10`.")
  }
  as.integer(n)
}

# Which comparators are built parallel to a treated LA (both programmes): up
# to three per treated LA, in turn, while a quarter of the comparators keep
# their own paths. NA for those.
sim_parallel_to <- function(treated, n_comp) {
  n_par <- max(0L, min(3L * length(treated), n_comp - n_comp %/% 4L))
  c(treated[rep_len(seq_along(treated), n_par)], rep(NA_character_, n_comp - n_par))
}

# Family Valued comparator LAs (the DiD strand): never treated, listed in the
# roll-out with role "comparator" (design_family_valued(strand = "did") takes
# them from there). As for Family Safeguarding, up to three per treated LA,
# while a quarter keep their own paths, are built parallel to a treated LA
# (sim_trajectories() copies its logit path, sim_parallel_levels() puts them
# near its level). No random draw here: with no comparators the records are
# those of the stepped-wedge design alone.
sim_fv_comparators <- function(n_la, n_comp, trial_start, trial_end) {
  treated <- sim_la_codes(n_la)
  codes <- sim_la_codes(n_la + n_comp)[n_la + seq_len(n_comp)]
  parallel_to <- sim_parallel_to(treated, n_comp)
  na_date <- as.Date(rep(NA, n_comp))
  la <- data.frame(la_code = codes, role = "comparator", go_live_date = na_date,
                   parallel_to = parallel_to, stratum = NA_character_,
                   wedge_order = NA_integer_, stringsAsFactors = FALSE)
  rollout <- data.frame(
    la_code = codes, programme = "FV", role = "comparator",
    matched_to_la = NA_character_, outcome = NA_character_,
    go_live_date = na_date, wedge_order = NA_integer_,
    stratum = NA_character_, trial_start = trial_start, trial_end = trial_end,
    embed_start = na_date, embed_end = na_date, alt_go_live_date = na_date,
    stringsAsFactors = FALSE)
  list(la = la, rollout = rollout)
}

sim_la_fs <- function(n_la, def, n_treated = NULL) {
  n_treated <- n_treated %||% min(5L, n_la)
  if (!is.numeric(n_treated) || length(n_treated) != 1L ||
      !is.finite(n_treated) || n_treated < 1 || n_treated > min(5, n_la) ||
      n_treated != round(n_treated)) {
    stop_arg("n_treated", sprintf("must be a whole number from 1 to %d",
                                  min(5L, n_la)),
             "Family Safeguarding has at most 5 treated LAs, at most `n_la`.")
  }
  n_treated <- as.integer(n_treated)
  codes <- sim_la_codes(n_la)
  go <- as.Date(def$go_live)[seq_len(n_treated)]
  n_comp <- n_la - n_treated
  parallel_to <- c(rep(NA_character_, n_treated),
                   sim_parallel_to(codes[seq_len(n_treated)], n_comp))
  role <- rep(c("treated", "comparator"), c(n_treated, n_comp))
  go_live <- as.Date(c(as.character(go), rep(NA, n_comp)))
  la <- data.frame(la_code = codes, role = role, go_live_date = go_live,
                   parallel_to = parallel_to, stratum = NA_character_,
                   wedge_order = c(seq_len(n_treated), rep(NA, n_comp)),
                   stringsAsFactors = FALSE)
  na_date <- as.Date(rep(NA, n_treated))
  rollout <- data.frame(
    la_code = codes[seq_len(n_treated)], programme = "FS", role = "treated",
    matched_to_la = NA_character_, outcome = NA_character_,
    go_live_date = go, wedge_order = seq_len(n_treated),
    stratum = NA_character_, trial_start = na_date, trial_end = na_date,
    embed_start = na_date, embed_end = na_date, alt_go_live_date = na_date,
    stringsAsFactors = FALSE)
  list(la = la, rollout = rollout, trial_start = NA, trial_end = NA,
       ref_date = min(go))
}

# LA x quarter logit shifts: smooth secular trend, AR(1) quarter-to-quarter
# movement (SD `wobble_sd`, autocorrelation `wobble_ar`) and a 2020
# pandemic shock of LA-specific size (0.3-0.5, sometimes negative), onset
# (2020 Q1-Q3) and decay; centred on the quarters before the first go-live
# so that the LA random intercept alone sets each LA's pre-period level.
# Family Safeguarding: own trajectory per treated LA and independent
# comparator, parallel comparators copy their treated LA's (made parallel in
# rates by sim_rate_paths()); the movement is large (SD 0.8, independent
# from quarter to quarter) so that it stands out from the binomial noise of
# quarterly rates, or no pre-period matching could find the parallel
# comparators. Family Valued: a common secular trend, LA-specific shock and
# a small smooth movement (SD 0.06, autocorrelation 0.5).
sim_trajectories <- function(design, la, las, qstart, wobble_sd, wobble_ar) {
  nq <- length(qstart)
  tyr <- as.numeric(qstart - as.Date("2020-01-01")) / 365.25
  one <- function(trend = NULL) {
    if (is.null(trend)) {
      trend <- stats::rnorm(1, 0, 0.04) * tyr +
        stats::rnorm(1, 0, 0.008) * tyr^2
    }
    wob <- numeric(nq)
    e <- stats::rnorm(nq, 0, wobble_sd)
    for (q in seq_len(nq)) wob[q] <- (if (q > 1) wobble_ar * wob[q - 1] else 0) + e[q]
    amp <- stats::runif(1, 0.3, 0.5) * (if (stats::runif(1) < 0.3) -1 else 1)
    onset <- as.Date("2020-01-01") + 91 * sample(0:2, 1)
    tau <- stats::runif(1, 1.5, 3)
    k <- as.numeric(qstart - onset) / 91.3
    shock <- ifelse(k >= -0.01, amp * exp(-pmax(k, 0) / tau), 0)
    list(path = trend + wob + shock,
         shock = data.frame(amplitude = amp, onset = onset, decay_quarters = tau))
  }
  m <- matrix(0, nrow(la), nq)
  shocks <- vector("list", nrow(la))
  common <- if (design == "family_valued") stats::rnorm(1, 0, 0.04) * tyr
  for (j in seq_len(nrow(la))) {
    if (is.na(la$parallel_to[j])) {
      o <- one(common)
      m[j, ] <- o$path
      shocks[[j]] <- o$shock
    }
  }
  for (j in which(!is.na(la$parallel_to))) {
    src <- match(la$parallel_to[j], la$la_code)
    m[j, ] <- m[src, ]
    shocks[[j]] <- shocks[[src]]
  }
  shocks <- cbind(la_code = la$la_code, do.call(rbind, shocks),
                  stringsAsFactors = FALSE)
  pre <- if (design == "family_valued") {
    qstart >= las$trial_start & qstart <= las$trial_end
  } else qstart < las$ref_date
  if (any(pre)) m <- m - rowMeans(m[, pre, drop = FALSE])
  named <- m
  dimnames(named) <- list(la$la_code, format(qstart))
  list(matrix = m, matrix_named = named, shocks = shocks)
}

# Family Safeguarding: a comparator built parallel to a treated LA sits near
# its level (its standardised LA effect is the treated LA's plus N(0,
# 0.25^2)). The protocol standardises each quarter's outcome across
# authorities; when that spread moves from quarter to quarter, authorities
# at different levels with the same movements in their rates get different
# standardised changes, so a distant level would blur the parallel trend the
# matching is meant to find.
sim_parallel_levels <- function(z, la, dots) {
  par <- which(!is.na(la$parallel_to))
  if (!length(par)) return(z)
  src <- match(la$parallel_to[par], la$la_code)
  z[par] <- z[src] + stats::rnorm(length(par), 0, 0.25)
  if (isTRUE(dots$standardise_la %||% TRUE) && length(z) >= 3) {
    z <- (z - mean(z)) / stats::sd(z)
  }
  z
}

# Family Safeguarding paths on the probability scale, the scale of the
# protocol's linear DiD (footnote 22: a linear model at baseline rates of
# 5-95%) and of its matching on standardised rates.
# * Each authority with its own path is shifted so that its expected rate
#   averaged over the pre-period quarters is the one its LA effect alone
#   gives: large quarter-to-quarter movements on the logit scale would
#   otherwise raise the average rate above the calibrated baseline.
# * A comparator built parallel to a treated LA follows that LA's path in
#   rates: each quarter's shift is the one that moves its expected rate (in
#   the protocol's population, by the calibration's quadrature over ages)
#   by as much as the treated LA's moves from its own level. Copying the
#   logit shifts would not do: at a different level the same logit shift
#   moves the rate by a different amount.
sim_rate_paths <- function(traj, la, intercept, design, age_max, inflation,
                           pre) {
  groups <- sim_age_groups()
  rate <- function(base, shift) {
    sim_calibrate(groups, design, age_max, NA, 0, inflation = inflation,
                  a0 = base, shift = shift)
  }
  m <- traj$matrix
  base <- intercept + la$random_effect
  if (any(pre)) {
    for (j in which(is.na(la$parallel_to))) {
      level <- rate(base[j], 0)
      gap <- function(c) mean(rate(base[j], m[j, pre] + c)) - level
      m[j, ] <- m[j, ] + stats::uniroot(gap, c(-2, 2), extendInt = "upX",
                                        tol = 1e-9)$root
    }
  }
  grid <- seq(-8, 8, by = 0.004)
  for (j in which(!is.na(la$parallel_to))) {
    src <- match(la$parallel_to[j], la$la_code)
    target <- rate(base[j], 0) + rate(base[src], m[src, ]) - rate(base[src], 0)
    on_grid <- rate(base[j], grid)
    target <- pmin(pmax(target, on_grid[1]), on_grid[length(on_grid)])
    m[j, ] <- stats::approx(on_grid, grid, target, ties = "ordered")$y
  }
  traj$matrix <- m
  traj$matrix_named[] <- m
  traj
}

# ---- children ----

# Age (years) at referral: more infants and teenagers; -1 = unborn.
.sim_age_weights <- c(9, 6, 5.5, 5.5, 5.5, 5.2, 5.2, 5.2, 5.2, 5.2, 5.3, 5.3,
                      5.3, 6.5, 6.5, 6.5, 5.5, 4)

.sim_ethnicity <- c(WBRI = 65, WIRI = 0.3, WIRT = 0.2, WOTH = 4.5, WROM = 0.5,
                    MWBC = 3, MWBA = 1, MWAS = 1.2, MOTH = 2.5, AIND = 1.5,
                    APKN = 3, ABAN = 1.2, AOTH = 1.5, BCRB = 1.2, BAFR = 3.5,
                    BOTH = 1, CHNE = 0.2, OOTH = 2.5, REFU = 1, NOBT = 4)

.sim_disability <- c(LD = 25, COMM = 18, AUT = 20, BEH = 12, CON = 6, MOB = 5,
                     HAND = 4, PC = 3, INC = 2, HEAR = 2, VIS = 2, DDA = 1)

sim_children <- function(la, start, last_ref) {
  n_by <- la$n_children
  n <- sum(n_by)
  la_i <- rep(seq_len(nrow(la)), n_by)
  span <- as.integer(last_ref - start)
  # referrals fell by about a quarter in the first 2020 lockdown
  days <- as.integer(unclass(start)) + 0:span
  w_day <- ifelse(days >= as.integer(unclass(as.Date("2020-03-23"))) &
                    days <= as.integer(unclass(as.Date("2020-06-30"))), 0.75, 1)
  ref0 <- days[sample.int(span + 1L, n, replace = TRUE, prob = w_day)]
  unborn <- stats::runif(n) < 0.015
  age_y <- sample.int(18L, n, replace = TRUE, prob = .sim_age_weights) - 1L
  # (0.997: the age stays under 18 years, which may be 6,574 days)
  dob <- ref0 - as.integer(floor((age_y + 0.997 * stats::runif(n)) * 365.25))
  dob[unborn] <- ref0[unborn] + sample.int(150L, sum(unborn), replace = TRUE)
  expected_dob <- rep(NA_integer_, n)
  expected_dob[unborn] <- dob[unborn] + sample(-14:14, sum(unborn), replace = TRUE)
  age <- ifelse(unborn, -1, age_y)
  dob_lt <- as.POSIXlt(structure(as.double(dob), class = "Date"))
  dob_lt$year <- dob_lt$year + 18L
  b18 <- as.integer(unclass(as.Date(dob_lt)))
  male <- stats::runif(n) < 0.515
  gender <- ifelse(male, "1", "2")
  r <- stats::runif(n)
  gender[r < 0.003] <- "9"
  gender[r >= 0.003 & r < 0.005] <- "0"
  gender[unborn] <- "0"
  uasc <- !unborn & male & age >= 14 & stats::runif(n) < 0.12
  # ethnicity: the LA's share of White British, the rest in England's mix
  other <- .sim_ethnicity[-1] / sum(.sim_ethnicity[-1])
  wbri <- stats::runif(n) < la$prop_white_british[la_i]
  eth <- rep("WBRI", n)
  eth[!wbri] <- sample(names(other), sum(!wbri), replace = TRUE, prob = other)
  eth[uasc] <- sample(c("AOTH", "BAFR", "OOTH", "WOTH", "BOTH"), sum(uasc),
                      replace = TRUE, prob = c(35, 25, 20, 10, 10))
  disabled <- stats::runif(n) < 0.08
  disability <- rep(list("NONE"), n)
  nd <- sum(disabled)
  if (nd) {
    d1 <- sample(names(.sim_disability), nd, replace = TRUE,
                 prob = .sim_disability)
    d2 <- sample(names(.sim_disability), nd, replace = TRUE,
                 prob = .sim_disability)
    two <- stats::runif(nd) < 0.2 & d2 != d1
    dl <- as.list(d1)
    dl[two] <- Map(c, d1[two], d2[two], USE.NAMES = FALSE)
    disability[disabled] <- dl
  }
  short_break <- disabled & stats::runif(n) < 0.12
  fsm6 <- stats::runif(n) < 0.45
  fsm <- fsm6 | stats::runif(n) < 0.15
  pre_school <- age < 3
  fsm6[pre_school] <- NA
  fsm[pre_school] <- NA
  prior_cpp <- as.integer((stats::runif(n) < 0.03 + 0.002 * pmax(age, 0)) +
                            (stats::runif(n) < 0.01))
  o <- order(ref0, la_i)
  out <- data.frame(
    la = la_i, ref0 = ref0, dob = dob, expected_dob = expected_dob, b18 = b18,
    age = age, age_exact = pmax((ref0 - dob) / 365.25, 0),
    age_logit = sim_age_logit(age), gender_raw = gender,
    ethnicity = eth, uasc = uasc, fsm_ever6 = fsm6, fsm_ever = fsm,
    prior_cpp = prior_cpp, short_break = short_break,
    part_time = stats::runif(n) < 0.03,
    abs_logit = -3.5 + stats::rnorm(n),
    stringsAsFactors = FALSE
  )[o, ]
  out$disability <- disability[o]
  rownames(out) <- NULL
  out
}

# ---- the C walk ----

sim_walk <- function(ch, eta, go_live_day, traj, qday, par, eff, terms) {
  ci <- list(as.integer(ch$la - 1L), as.integer(ch$ref0),
             as.integer(ch$dob), as.integer(ch$b18), as.integer(ch$uasc),
             as.integer(ch$prior_cpp), as.integer(ch$short_break),
             as.integer(ch$part_time))
  cd <- list(as.double(eta), as.double(ch$abs_logit))
  .Call(ffi_simulate_sfp, ci, cd, as.integer(go_live_day), traj, qday, par,
        as.double(eff),
        list(as.integer(terms$start), as.integer(terms$end),
             as.integer(terms$ay), as.integer(terms$term),
             as.integer(terms$sessions)))
}

# Ratio of the simulated to the analytic rate of becoming looked after
# within 18 months of the first referral, in the protocol's population,
# over a pilot walk of 60,000 children of one LA with no random effects, no
# trends, no treatment and no school terms. The pilot draws from its own
# fixed seed (with_seed(): the caller's stream is restored), so its result
# depends only on the arguments and is cached for the session.
.sim_cache <- new.env(parent = emptyenv())

sim_pilot <- function(design, age_max, baseline, icc, start, end, last_ref,
                      par_of, qday, n_pilot = 60000L) {
  key <- paste(design, age_max, baseline, icc, start, end, last_ref, sep = "|")
  if (!is.null(.sim_cache[[key]])) return(.sim_cache[[key]])
  .sim_cache[[key]] <- with_seed(20240101L, sim_pilot_ratio(
    design, age_max, baseline, icc, start, end, last_ref, par_of, qday, n_pilot))
  .sim_cache[[key]]
}

# The pilot walk: observed / predicted rate (its random state set by sim_pilot()).
sim_pilot_ratio <- function(design, age_max, baseline, icc, start, end, last_ref,
                            par_of, qday, n_pilot) {
  one <- data.frame(n_children = n_pilot, prop_white_british = 0.7)
  pc <- sim_children(one, start, last_ref)
  a0 <- sim_calibrate_cached(design, age_max, baseline, icc, 1)$intercept
  day_end <- as.integer(unclass(end))
  eta <- pc$age_logit + .sim_uasc_logit * pc$uasc
  no_terms <- list(start = integer(), end = integer(), ay = integer(),
                   term = integer(), sessions = integer())
  raw <- sim_walk(pc, eta, NA_integer_, matrix(0, 1L, max(qday) + 1L), qday,
                  par_of(a0), rep(0, length(.sim_effect_names)), no_terms)
  ref <- raw[[1]]
  first <- !duplicated(ref[[1]])
  child <- ref[[1]][first]
  ref_day <- ref[[2]][first]
  in_pop <- pc$age[child] <= age_max & ref_day + 548L <= day_end
  if (design == "family_valued") {
    assessed <- seq_along(ref[[1]]) %in% raw[[2]][[1]]
    open <- !(ref[[6]] %in% c(8L, 9L)) & ref[[7]] == 0L & assessed
    in_pop <- in_pop & open[first]
  }
  cla <- raw[[6]]
  s <- cla[[4]] == 1L & !(cla[[5]] %in% c(6L, 7L))
  rday <- rep(NA_integer_, nrow(pc))
  rday[child] <- ref_day
  cc <- cla[[1]][s]
  dd <- cla[[2]][s]
  entered <- unique(cc[dd >= rday[cc] & dd <= rday[cc] + 548L])
  hit <- in_pop & child %in% entered
  observed <- sum(hit) / sum(in_pop)
  predicted <- sim_calibrate(pc[child[in_pop], ], design, age_max, NA, 0,
                             a0 = a0)
  observed / predicted
}

# ---- calibration ----

# The distribution of children at their first referral that sim_children()
# draws from, as weighted groups by month of age (-1 = unborn) and UASC.
sim_age_groups <- function() {
  wy <- .sim_age_weights / sum(.sim_age_weights)
  months <- 0:215
  y <- months %/% 12
  p_uasc <- 0.515 * 0.12
  born <- data.frame(age = y, age_exact = (months + 0.5) / 12, uasc = FALSE,
                     w = 0.985 * wy[y + 1] / 12)
  teen <- born$age >= 14
  u <- born[teen, ]
  u$uasc <- TRUE
  u$w <- u$w * p_uasc
  born$w[teen] <- born$w[teen] * (1 - p_uasc)
  out <- rbind(data.frame(age = -1, age_exact = 0, uasc = FALSE, w = 0.015),
               born, u)
  out$age_logit <- sim_age_logit(out$age)
  out
}

# Cached: the calibration depends only on the design and its targets.
sim_calibrate_cached <- function(design, age_max, baseline, icc, inflation) {
  key <- paste("cal", design, age_max, baseline, icc, inflation, sep = "|")
  if (is.null(.sim_cache[[key]])) {
    .sim_cache[[key]] <- sim_calibrate(sim_age_groups(), design, age_max,
                                       baseline, icc, inflation = inflation)
  }
  .sim_cache[[key]]
}

# Gauss-Hermite nodes and weights for E f(Z), Z ~ N(0, 1) (Golub-Welsch).

# Probability that the CLA delay (days) is at most x, for the mixture of
# uniforms in .sim_model.
sim_cla_delay_cdf <- function(x) {
  m <- .sim_model
  piece <- function(lo, hi) pmin(pmax((x - lo + 1) / (hi - lo + 1), 0), 1)
  m$cla_w1 * piece(1, m$cla_d1) + m$cla_w2 * piece(m$cla_d1 + 1, m$cla_d2) +
    (1 - m$cla_w1 - m$cla_w2) * piece(m$cla_d2 + 1, m$cla_d3)
}

# Intercept and LA random-effect SD such that the expected LA rate of
# becoming looked after within 18 months of the first referral, in the
# protocol's population, is `baseline` and its between-LA variance is
# icc * baseline * (1 - baseline).
# `ch` holds children (age, age_exact, uasc, age_logit) or, with a column
# `w`, groups of children with their weights (sim_age_groups()).
# With `a0` given, returns the analytic rate at u = `shift` (a vector of
# logit shifts) instead. `inflation`
# multiplies the analytic rate (from the pilot walk).
sim_calibrate <- function(ch, design, age_max, baseline, icc, inflation = 1,
                          a0 = NULL, shift = 0) {
  m <- .sim_model
  pop <- ch$age <= age_max
  months <- ifelse(ch$age[pop] < 0, -1, floor(ch$age_exact[pop] * 12))
  if (is.null(ch$w)) {
    key <- (months + 1L) * 2L + ch$uasc[pop] + 1L
    g <- !duplicated(key)
    w <- tabulate(key, nbins = max(key))[key[g]]
  } else {
    g <- rep(TRUE, sum(pop))
    w <- ch$w[pop]
  }
  w <- w / sum(w)
  eta <- (ch$age_logit + .sim_uasc_logit * ch$uasc)[pop][g]
  days_to_18 <- (18 * 12 - (months[g] + 0.5)) * 365.25 / 12
  f18 <- sim_cla_delay_cdf(pmin(548, days_to_18))
  open <- m$p_cpp + m$p_cin + m$p_noplan
  pi_k <- c(m$p_cpp, m$p_cin, m$p_noplan) / open
  b_k <- c(m$b_cpp, 0, m$b_noplan)
  scale <- if (design == "family_valued") 1 else
    (1 - m$p_nfa) * m$p_assessed * open
  wf <- inflation * scale * w * f18
  la_rate <- function(a0, u) {
    p <- 0
    for (k in 1:3) {
      p <- p + pi_k[k] * stats::plogis(outer(a0 + eta + b_k[k], u, `+`))
    }
    colSums(wf * p)
  }
  if (!is.null(a0)) return(la_rate(a0, shift))
  gh <- normal_quadrature(30L)
  top <- sum(gh$w * la_rate(8, 0 * gh$z))
  if (baseline >= top) {
    stop_arg("baseline", sprintf(
      "is more than the %s design can reach (at most about %.3f)",
      gsub("_", " ", design), top),
      "give a smaller rate of becoming looked after within 18 months.")
  }
  solve_a0 <- function(sigma) {
    stats::uniroot(function(a0) sum(gh$w * la_rate(a0, sigma * gh$z)) - baseline,
                   c(-15, 8), tol = 1e-7)$root
  }
  icc_of <- function(sigma) {
    a0 <- solve_a0(sigma)
    r <- la_rate(a0, sigma * gh$z)
    mu <- sum(gh$w * r)
    sum(gh$w * (r - mu)^2) / (mu * (1 - mu))
  }
  if (icc > 0 && icc_of(5) <= icc) {
    stop_arg("icc", sprintf(
      "is more than the %s design can reach at this baseline (at most about %.3f)",
      gsub("_", " ", design), icc_of(5)),
      "give a smaller intracluster correlation.")
  }
  sigma <- if (icc <= 0) 0 else
    stats::uniroot(function(s) icc_of(s) - icc, c(1e-6, 5), tol = 1e-6)$root
  list(intercept = solve_a0(sigma), sigma = sigma)
}

# ---- school terms (NPD) ----

# Easter Sunday (Gregorian, anonymous algorithm).

# One row per term: autumn (1 Sep-31 Dec), spring (1 Jan-Easter Sunday),
# summer (Easter Monday-31 Jul); summer 2019/20 was not collected.
sim_terms <- function(start, end) {
  y0 <- as.integer(format(start, "%Y")) - 2L
  y1 <- as.integer(format(end, "%Y"))
  ys <- y0:y1
  easter <- day_to_date(easter_sunday(ys + 1L))
  st <- c(as.Date(sprintf("%d-09-01", ys)), as.Date(sprintf("%d-01-01", ys + 1L)),
          easter + 1)
  en <- c(as.Date(sprintf("%d-12-31", ys)), easter,
          as.Date(sprintf("%d-07-31", ys + 1L)))
  term <- rep(1:3, each = length(ys))
  ay <- rep(seq_along(ys), 3)
  sessions <- c(140L, 110L, 130L)[term]
  keep <- !(ys[ay] == 2019L & term == 3L)
  o <- order(st[keep])
  labels <- sprintf("%d/%02d", ys, (ys + 1L) %% 100L)
  list(start = as.integer(unclass(st[keep][o])),
       end = as.integer(unclass(en[keep][o])),
       ay = as.integer(ay[keep][o]), term = as.integer(term[keep][o]),
       sessions = sessions[keep][o], labels = labels)
}

# ---- monthly LA covariates ----

sim_la_covariates <- function(la, start, end) {
  months <- seq(as.Date(cut(start, "month")), end, by = "month")
  nm <- length(months)
  tyr <- as.numeric(months - as.Date("2020-04-01")) / 365.25
  out <- vector("list", nrow(la))
  for (j in seq_len(nrow(la))) {
    base <- stats::runif(1, 0.15, 0.28)
    fsm <- base + 0.004 * pmin(tyr, 0) + 0.02 * pmax(tyr, 0) +
      stats::rnorm(nm, 0, 0.003)
    wb <- la$prop_white_british[j] - 0.002 * tyr + stats::rnorm(nm, 0, 0.002)
    on <- if (stats::runif(1) < 0.25) months[sample.int(nm, 1)] else
      as.Date(Inf)
    keep <- rep(TRUE, nm)
    if (stats::runif(1) < 0.4) keep[seq_len(sample.int(4, 1))] <- FALSE
    if (stats::runif(1) < 0.3 && nm > 24) {
      g <- sample.int(nm - 20L, 1) + 10L
      keep[g + seq_len(sample.int(3, 1)) - 1L] <- FALSE
    }
    out[[j]] <- data.frame(
      la_code = la$la_code[j], month = months,
      prop_fsm = round(pmin(pmax(fsm, 0.05), 0.6), 4),
      prop_white_british = round(pmin(pmax(wb, 0.05), 0.99), 4),
      other_innovation_programme = months >= on,
      stringsAsFactors = FALSE)[keep, ]
  }
  out <- do.call(rbind, out)
  rownames(out) <- NULL
  out
}

# ---- assembling the tables ----


sim_tables <- function(raw, ch, la, terms, rollout, start, end) {
  child_id <- sprintf("C%07d", seq_len(nrow(ch)))
  codes <- .sim_codes
  children <- data.frame(
    child_id = child_id, la_code = la$la_code[ch$la],
    dob = day_to_date(ch$dob), expected_dob = day_to_date(ch$expected_dob),
    gender_raw = ch$gender_raw, ethnicity = ch$ethnicity,
    uasc = ch$uasc, fsm_ever6 = ch$fsm_ever6, fsm_ever = ch$fsm_ever,
    stringsAsFactors = FALSE)
  children$disability <- ch$disability
  children <- children[c("child_id", "la_code", "dob", "expected_dob",
                         "gender_raw", "ethnicity", "disability", "uasc",
                         "fsm_ever6", "fsm_ever")]

  r <- raw[[1]]
  referral_id <- sprintf("R%08d", seq_along(r[[1]]))
  referrals <- data.frame(
    referral_id = referral_id, child_id = child_id[r[[1]]],
    referral_date = day_to_date(r[[2]]),
    referral_source = codes$referral_source[r[[3]]],
    primary_need = codes$primary_need[r[[4]]],
    closure_date = day_to_date(r[[5]]),
    closure_reason = codes$closure_reason[r[[6]]],
    referral_nfa = r[[7]] == 1L, stringsAsFactors = FALSE)

  a <- raw[[2]]
  assessment_id <- sprintf("A%08d", seq_along(a[[1]]))
  assessments <- data.frame(
    assessment_id = assessment_id, referral_id = referral_id[a[[1]]],
    assessment_start = day_to_date(a[[2]]),
    assessment_end = day_to_date(a[[3]]), stringsAsFactors = FALSE)

  f <- raw[[3]]
  assessment_factors <- data.frame(
    assessment_id = assessment_id[f[[1]]], factor = codes$factor[f[[2]]],
    stringsAsFactors = FALSE)

  s <- raw[[4]]
  cin_plans <- data.frame(
    referral_id = referral_id[s[[1]]], start = day_to_date(s[[2]]),
    end = day_to_date(s[[3]]), stringsAsFactors = FALSE)

  p <- raw[[5]]
  cp_plans <- data.frame(
    referral_id = referral_id[p[[1]]], start = day_to_date(p[[2]]),
    end = day_to_date(p[[3]]),
    initial_category = codes$cp_category[p[[4]]],
    latest_category = codes$cp_category[p[[5]]],
    n_previous_cpp = p[[6]], stringsAsFactors = FALSE)

  e <- raw[[6]]
  cla_episodes <- data.frame(
    child_id = child_id[e[[1]]], decom = day_to_date(e[[2]]),
    dec = day_to_date(e[[3]]), rne = codes$rne[e[[4]]],
    ls = codes$ls[e[[5]]], cin = codes$cin_903[e[[6]]],
    place = codes$place[e[[7]]], place_provider = codes$place_provider[e[[8]]],
    rec = codes$rec[e[[9]]], stringsAsFactors = FALSE)
  cla_episodes <- cla_episodes[order(e[[1]], e[[2]]), ]
  rownames(cla_episodes) <- NULL

  b <- raw[[7]]
  absence <- data.frame(
    child_id = child_id[b[[1]]], academic_year = terms$labels[b[[2]]],
    term = codes$term[b[[3]]], sessions_possible = b[[4]],
    unauth_sessions = b[[5]], stringsAsFactors = FALSE)

  # The extract holds only what had started by its date: an assessment or a
  # plan the walk scheduled after `end` is not in the records (its referral
  # stays open).
  cut <- as.Date(end)
  late_a <- assessments$assessment_start > cut
  assessment_factors <- assessment_factors[!assessment_factors$assessment_id %in%
                                             assessments$assessment_id[late_a], ]
  assessments <- assessments[!late_a, ]
  cin_plans <- cin_plans[cin_plans$start <= cut, ]
  cp_plans <- cp_plans[cp_plans$start <= cut, ]
  rownames(assessments) <- rownames(assessment_factors) <- NULL
  rownames(cin_plans) <- rownames(cp_plans) <- NULL

  args <- list(
    children = children, referrals = referrals, assessments = assessments,
    assessment_factors = assessment_factors, cin_plans = cin_plans,
    cp_plans = cp_plans, cla_episodes = cla_episodes, absence = absence,
    la_covariates = sim_la_covariates(la, start, end), rollout = rollout)
  # Open referrals, plans and episodes are soft problems of the validator;
  # here they are by design, so they are kept in attr(x, "problems") rather
  # than raised as warnings.
  if ("warn" %in% names(formals(sfp_data))) args$warn <- FALSE
  do.call(sfp_data, args)
}
