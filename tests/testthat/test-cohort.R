# Cohorts and outcomes (#3). Hand-made children whose answers are derived on
# paper (each case says how), a plain-R reference of every outcome compared
# with the C kernels on generated records, and the exclusion flow.

# ---- small builders for hand-made records ----------------------------------

kids <- function(ids, dob = "2015-01-01", la = "101", ...) {
  data.frame(child_id = ids, la_code = la, dob = as.Date(dob), gender_raw = "1",
             ethnicity = "WBRI", ..., stringsAsFactors = FALSE)
}
refs <- function(ids, dates, closure = NA, rid = NULL, ...) {
  data.frame(referral_id = rid %||% paste0("r_", ids), child_id = ids,
             referral_date = as.Date(dates), closure_date = as.Date(closure), ...,
             stringsAsFactors = FALSE)
}
eps <- function(ids, decom, dec = NA, rne = "S", ls = "C2", place = "U4", rec = NA) {
  data.frame(child_id = ids, decom = as.Date(decom), dec = as.Date(dec), rne = rne,
             ls = ls, place = place, rec = rec, stringsAsFactors = FALSE)
}
plans <- function(rid, start, end = NA, ...) {
  data.frame(referral_id = rid, start = as.Date(start), end = as.Date(end), ...,
             stringsAsFactors = FALSE)
}
`%||%` <- function(x, y) if (is.null(x)) y else x
# The validator warns about open referrals, plans and episodes: expected here.
quiet_data <- function(...) suppressWarnings(sfp_data(...))

fs_rollout <- data.frame(la_code = c("101", "201"), programme = "FS",
                         role = c("treated", "comparator"),
                         go_live_date = as.Date(c("2020-01-01", NA)),
                         stringsAsFactors = FALSE)
fv_rollout <- data.frame(la_code = c("301", "302"), programme = "FV", role = "treated",
                         go_live_date = as.Date(c("2020-01-01", "2020-07-01")),
                         alt_go_live_date = as.Date(c("2020-03-01", "2020-09-01")),
                         embed_start = as.Date(c("2019-10-01", "2020-04-01")),
                         embed_end = as.Date(c("2019-12-31", "2020-06-30")),
                         wedge_order = 1:2, stratum = c("high", "low"),
                         stringsAsFactors = FALSE)

fs_build <- function(..., outcomes, treatment = "referral_date", design_args = list(),
                     extra_referrals = NULL) {
  d <- quiet_data(..., rollout = fs_rollout)
  # records a validator would reject, added afterwards
  if (!is.null(extra_referrals)) d$referrals <- rbind(d$referrals, extra_referrals)
  des <- do.call(design_family_safeguarding,
                 c(list(d, data_end = as.Date("2023-12-31")), design_args))
  suppressMessages(build_cohort(d, des, treatment = treatment, outcomes = outcomes))
}
fv_build <- function(..., outcomes, treatment = "referral_date", design_args = list()) {
  d <- quiet_data(..., rollout = fv_rollout)
  des <- do.call(design_family_valued,
                 c(list(d, data_end = as.Date("2023-12-31")), design_args))
  suppressMessages(build_cohort(d, des, treatment = treatment, outcomes = outcomes))
}
val <- function(cohort, col) stats::setNames(cohort[[col]], cohort$child_id)

# The flow adds up: per LA and arm, the records equal the exclusions plus the
# cohort; per outcome, the cohort equals the four outcome steps.
expect_flow_adds_up <- function(cohort) {
  f <- exclusion_flow(cohort)
  pop <- f[f$stage == "population", ]
  key <- paste(pop$la, pop$arm)
  start <- tapply(pop$n[pop$step == "children in the records"],
                  key[pop$step == "children in the records"], sum)
  rest <- tapply(pop$n[pop$step != "children in the records"],
                 key[pop$step != "children in the records"], sum)
  expect_equal(c(start[names(rest)]), c(rest))
  expect_equal(sum(pop$n[pop$step == "cohort"]), nrow(cohort))
  for (s in setdiff(unique(f$stage), "population")) {
    o <- f[f$stage == s & !startsWith(f$step, "of which"), ]
    k <- paste(o$la, o$arm)
    a <- tapply(o$n[o$step == "cohort"], k[o$step == "cohort"], sum)
    b <- tapply(o$n[o$step != "cohort"], k[o$step != "cohort"], sum)
    expect_equal(c(a[names(b)]), c(b))
    expect_equal(sum(o$n[o$step == "cohort"]), nrow(cohort))
  }
}

# ---- dates -------------------------------------------------------------------

test_that("month arithmetic clamps to the month end and agrees with seq.Date", {
  am <- function(d, m) sfpceval:::day_to_date(sfpceval:::add_months(as.Date(d), m))
  # Paper: 31 August + 6 months has no 31st, so the last day of February.
  expect_equal(am("2020-08-31", 6), as.Date("2021-02-28"))
  expect_equal(am("2019-08-31", 6), as.Date("2020-02-29"))
  expect_equal(am("2020-02-29", 12), as.Date("2021-02-28"))
  expect_equal(am("2020-02-29", 18), as.Date("2021-08-29"))
  expect_equal(am("2020-02-29", 48), as.Date("2024-02-29"))
  expect_equal(am("2020-01-31", -2), as.Date("2019-11-30"))
  expect_equal(am(c("2019-03-01", NA), 18), as.Date(c("2020-09-01", NA)))
  expect_equal(am(as.Date(character()), 18), as.Date(character()))
  # Where no clamping is needed, seq.Date is the trusted reference.
  set.seed(1)
  days <- as.Date("1960-01-01") + sample(0:40000, 300)
  days <- as.Date(format(days, "%Y-%m-15"))
  for (m in c(-7, 1, 6, 12, 18, 36)) {
    ref <- as.Date(vapply(days, function(d) as.numeric(seq(d, by = paste(m, "months"),
                                                             length.out = 2)[2]), 0),
                   origin = "1970-01-01")
    expect_equal(am(days, m), ref)
  }
  # civil() and days_from_civil() invert each other; agree with format().
  z <- c(-800000L, -1L, 0L, 59L, 60L, 11016L, 18321L, 2932896L)
  cv <- sfpceval:::civil(z)
  expect_equal(sprintf("%04d-%02d-%02d", cv$y, cv$m, cv$d),
               format(as.Date(z, origin = "1970-01-01")))
  expect_equal(sfpceval:::days_from_civil(cv$y, cv$m, cv$d), z)
})

test_that("age at referral counts completed years; 29 February birthdays on 1 March", {
  age <- function(b, o) sfpceval:::age_years(as.integer(as.Date(b)), as.integer(as.Date(o)))
  expect_equal(age("2006-07-01", "2019-06-30"), 12L)   # day before the 13th birthday
  expect_equal(age("2006-07-01", "2019-07-01"), 13L)   # on it
  expect_equal(age("2008-02-29", "2021-02-28"), 12L)   # non-leap year: not yet
  expect_equal(age("2008-02-29", "2021-03-01"), 13L)
  expect_equal(age("2008-02-29", "2020-02-29"), 12L)   # leap year: the day itself
  expect_equal(age(c("2010-05-05", NA), c("2020-05-04", "2020-01-01")), c(9L, NA))
})

test_that("Easter and the school terms follow the calendar", {
  # Easter Sundays from published calendars.
  known <- as.Date(c("2017-04-16", "2018-04-01", "2019-04-21", "2020-04-12",
                     "2021-04-04", "2022-04-17", "2023-04-09", "2024-03-31",
                     "2025-04-20", "2026-04-05"))
  expect_equal(sfpceval:::day_to_date(sfpceval:::easter_sunday(2017:2026)), known)
})

# ---- C kernels against slow references -----------------------------------------

test_that("interval kernels match day-by-day references; length 0, NA windows, ties", {
  set.seed(42)
  n <- 40
  child <- sample(n, 300, TRUE)
  start <- sample(0:400, 300, TRUE)
  start[1:10] <- start[11:20]                            # ties
  child[1:10] <- child[11:20]
  end <- start + sample(0:90, 300, TRUE)
  end[sample(300, 30)] <- NA                             # open
  tab <- sfpceval:::index_table(child, start, n)
  s <- as.integer(start[tab$rows])
  e <- as.integer(end[tab$rows])
  lo <- as.integer(sample(0:300, n, TRUE))
  hi <- lo + sample(0:200, n, TRUE)
  lo[3] <- NA
  days <- .Call(sfpceval:::ffi_union_days, s, e, tab$offsets, lo, hi)
  first <- .Call(sfpceval:::ffi_first_in_range, s, tab$offsets, lo, hi)
  ovl <- .Call(sfpceval:::ffi_first_overlap, s, e, tab$offsets, lo, hi)
  for (i in seq_len(n)) {
    k <- which(child == i)
    if (is.na(lo[i])) {
      expect_true(is.na(days[i]))
      expect_equal(first[i], -1L)
      next
    }
    covered <- unlist(lapply(k, function(j) {
      b <- if (is.na(end[j])) hi[i] else min(end[j], hi[i])
      a <- max(start[j], lo[i])
      if (b > a) a:(b - 1) else integer()
    }))
    expect_equal(days[i], length(unique(covered)))
    cand <- k[start[k] >= lo[i] & start[k] <= hi[i]]
    expect_equal(if (length(cand)) min(start[cand]) else NA,
                 if (first[i] >= 0) s[first[i] + 1] else NA)
    cand <- k[start[k] <= hi[i] & (is.na(end[k]) | end[k] >= lo[i])]
    expect_equal(length(cand) > 0, ovl[i] >= 0)
    if (length(cand)) expect_equal(min(start[cand]), s[ovl[i] + 1])
  }
  # length 0: no children, or children without records
  z <- integer()
  expect_equal(.Call(sfpceval:::ffi_union_days, z, z, 0L, z, z), integer())
  expect_equal(.Call(sfpceval:::ffi_union_days, z, z, c(0L, 0L), 5L, 9L), 0L)
  expect_equal(.Call(sfpceval:::ffi_first_in_range, z, c(0L, 0L), 5L, 9L), -1L)
  expect_equal(.Call(sfpceval:::ffi_plan_return, z, z, c(0L, 0L), z, c(0L, 0L), 5L, 9L), 0L)
})

test_that("C entry points refuse internal misuse instead of crashing", {
  expect_error(.Call(sfpceval:::ffi_union_days, 1, 2L, c(0L, 1L), 0L, 5L), "internal error")
  expect_error(.Call(sfpceval:::ffi_union_days, 1L, 2L, c(0L, 2L), 0L, 5L), "internal error")
  expect_error(.Call(sfpceval:::ffi_union_days, 1:2, 2:3, c(0L, 2L, 1L), 0:1, 5:6),
               "internal error")
  expect_error(.Call(sfpceval:::ffi_first_in_range, 1L, 0L, 0L, 5L), "internal error")
  expect_error(.Call(sfpceval:::ffi_term_sums, 1L, 2019L, 1L, 6057L, 4L, 10L, 1L), "internal error")
  expect_error(.Call(sfpceval:::ffi_plan_return, 1L, 2L, c(0L, 1L), 1L, c(0L, 2L), 0L, 5L),
               "internal error")
})

# ---- population ---------------------------------------------------------------

test_that("population: first referral in the trial period, age range, unborn, referred twice", {
  ch <- rbind(
    kids(c("m", "n"), dob = "2006-07-01"),
    kids(c("o", "p"), dob = "2008-02-29"),
    kids("q", dob = NA, expected_dob = NA)[, names(kids("a"))],
    kids(c("s", "t", "u")),
    kids("v", la = "201"), kids("w", la = "202")
  )
  ch$expected_dob <- as.Date(NA)
  ch <- rbind(ch, cbind(kids("un", dob = NA), expected_dob = as.Date("2019-08-01")),
              cbind(kids("un2", dob = "2019-08-01"), expected_dob = as.Date(NA)))
  rf <- rbind(
    refs(c("m", "n"), c("2019-06-30", "2019-07-01")),     # 12 / 13 years old
    refs(c("o", "p"), c("2021-02-28", "2021-03-01")),     # 12 / 13 (29 Feb birthday)
    refs("q", "2019-05-01"),                              # no date of birth
    refs("s", "2017-03-31"),                              # before the trial period
    refs(c("t", "t", "t"), c("2019-06-01", "2016-05-01", "2020-03-01"),
         rid = c("t2", "t1", "t3")),                      # unsorted, referred thrice
    refs("u", "2020-01-01"),                              # on the go-live day
    refs("v", "2021-05-01"), refs("w", "2021-05-01"),     # comparator / other LA
    refs(c("un", "un2"), "2019-05-01")                    # unborn at referral
  )
  cla <- eps("m", "2019-07-01")
  co <- fs_build(children = ch, referrals = rf, cla_episodes = cla, outcomes = "cla_18m",
                 extra_referrals = refs("x", "2019-05-01"))  # not in the children table
  expect_s3_class(co, "sfp_cohort")
  expect_setequal(co$child_id, c("m", "o", "t", "u", "v", "w", "un", "un2"))
  expect_equal(co$referral_date[co$child_id == "t"], as.Date("2019-06-01"))
  expect_equal(co$referral_id[co$child_id == "t"], "t2")
  expect_equal(val(co, "age")[c("m", "o", "un", "un2")], c(m = 12L, o = 12L, un = 0L, un2 = 0L))
  expect_equal(val(co, "unborn")[c("m", "un", "un2")], c(m = FALSE, un = TRUE, un2 = TRUE))
  # Arm: referral on or after go-live 2020-01-01 in LA 101; comparators never.
  expect_equal(val(co, "treated")[c("m", "t", "u", "v", "w")],
               c(m = 0L, t = 0L, u = 1L, v = 0L, w = 0L))
  f <- exclusion_flow(co, stage = "population", by = "total")
  expect_equal(f$n[match(c("children in the records", "not in the children table",
                           "no referral in the trial period", "date of birth missing",
                           "age out of range", "cohort"), f$step)],
               c(13L, 1L, 1L, 1L, 2L, 8L))
  expect_flow_adds_up(co)
  co2 <- fs_build(children = ch, referrals = rf, cla_episodes = cla, outcomes = "cla_18m",
                  design_args = list(include_unborn = FALSE))
  expect_false("x" %in% co2$child_id)
  expect_false(any(c("un", "un2") %in% co2$child_id))
  f2 <- exclusion_flow(co2, stage = "population", by = "total")
  expect_equal(f2$n[f2$step == "unborn at referral"], 2L)
  # FV age range 0-17 keeps the 13-year-olds, in the 13-17 band.
})

test_that("periods: financial year, quarter and stepped-wedge step", {
  ch <- kids(c("a", "b", "c", "d", "e"), la = "301")
  rf <- refs(c("a", "b", "c", "d", "e"),
             c("2020-03-31", "2020-04-01", "2019-12-31", "2021-01-01", "2019-07-01"),
             referral_nfa = FALSE)
  co <- fv_build(children = ch, referrals = rf, cla_episodes = eps("a", "2019-01-01"),
                 outcomes = "cla_18m")
  expect_equal(val(co, "fin_year"), c(a = "2019/20", b = "2020/21", c = "2019/20",
                                       d = "2020/21", e = "2019/20"))
  expect_equal(val(co, "quarter"), c(a = "2020Q1", b = "2020Q2", c = "2019Q4",
                                      d = "2021Q1", e = "2019Q3"))
  # Trial period 2019-07-01 .. 2021-01-01: steps start 2019-07-01 (0),
  # 2020-01-01 (1), 2020-07-01 (2); a referral on the last day stays in step 2.
  expect_equal(val(co, "step"), c(a = 1L, b = 1L, c = 0L, d = 2L, e = 0L))
  co_f <- fv_build(children = ch, referrals = rf, cla_episodes = eps("a", "2019-01-01"),
                   outcomes = "cla_18m", design_args = list(quarter = "financial"))
  expect_equal(val(co_f, "quarter")[c("a", "b")], c(a = "2019/20 Q4", b = "2020/21 Q1"))
  expect_equal(as.character(val(co, "age_band")), rep("4-12", 5))
})

# ---- Family Safeguarding outcomes -------------------------------------------------

test_that("cla_18m: window edges, straddling and open episodes, short breaks, leap years", {
  ids <- c("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k")
  ch <- kids(ids)
  rf <- refs(ids, c("2019-03-01", "2019-03-01", "2020-02-29", "2020-08-31", "2020-08-31",
                    "2019-05-01", "2019-05-01", "2019-05-01", "2019-06-01", "2019-07-01",
                    "2022-12-01"))
  cla <- rbind(
    eps("a", "2020-09-01"),                      # 2019-03-01 + 18 m = 2020-09-01: last day counts
    eps("b", "2020-09-02"),                      # one day late
    eps("c", "2021-08-29"),                      # 2020-02-29 + 18 m = 2021-08-29
    eps("d", "2022-02-28"),                      # 2020-08-31 + 18 m = 2022-02-28 (clamped)
    eps("e", "2022-03-01"),                      # one day late
    eps("f", "2018-06-01"),                      # in care since before the referral, open
    eps("g", "2018-06-01", "2019-04-30", rec = "E4A"),  # left care the day before
    eps("h", "2018-06-01", "2019-05-01", rec = "E4A"),  # left care on the referral day
    eps("i", "2019-06-01", ls = "V3"),           # short break only
    eps("j", "2019-07-01"),                      # same day as the referral
    eps("k", "2023-01-01")                       # window ends 2024-06-01 > data end
  )
  # Primary outcome, both protocols: "Coded 1 if the child has become looked
  # after at any point within 18 months of the referral": a new period of
  # care starts in the window. f (in care since 2018, still open) and h (in
  # care on the referral day, leaving that day) never start a new period: 0,
  # kept in the sample and flagged in_care_at_referral.
  co <- fs_build(children = ch, referrals = rf, cla_episodes = cla, outcomes = "cla_18m")
  expect_equal(val(co, "cla_18m"),
               c(a = 1L, b = 0L, c = 1L, d = 1L, e = 0L, f = 0L, g = 0L, h = 0L, i = 0L,
                 j = 1L, k = NA))
  expect_equal(val(co, "in_care_at_referral"),
               c(a = FALSE, b = FALSE, c = FALSE, d = FALSE, e = FALSE, f = TRUE, g = FALSE,
                 h = TRUE, i = FALSE, j = FALSE, k = FALSE))
  expect_equal(val(co, "cla_18m_observable")[c("a", "k")], c(a = TRUE, k = FALSE))
  co2 <- fs_build(children = ch, referrals = rf, cla_episodes = cla, outcomes = "cla_18m",
                  design_args = list(short_breaks = "include"))
  expect_equal(val(co2, "cla_18m")[["i"]], 1L)
  # the sensitivity reading "looked after on some day of the window": f and h are 1
  co3 <- fs_build(children = ch, referrals = rf, cla_episodes = cla, outcomes = "cla_18m",
                  design_args = list(cla_definition = "looked_after"))
  expect_equal(val(co3, "cla_18m"),
               c(a = 1L, b = 0L, c = 1L, d = 1L, e = 0L, f = 1L, g = 0L, h = 1L, i = 0L,
                 j = 1L, k = NA))
  fl <- exclusion_flow(co, stage = "cla_18m", by = "total")
  expect_equal(fl$n[fl$step == "of which in care at referral (kept)"], 2L)
  f <- exclusion_flow(co, stage = "cla_18m", by = "total")
  expect_equal(f$n[match(c("cohort", "window not yet observable", "analysed"), f$step)],
               c(11L, 1L, 10L))
  expect_flow_adds_up(co)
})

test_that("a new period of care: S, or an episode that continues none (short breaks excluded)", {
  # l: a short break (S, V3) then full care (L, C2) from the day it ends; with
  # short breaks excluded the C2 episode continues no episode, so it starts a
  # new period in the window (2019-08-01 .. 2021-02-01): 1, and its
  # placement is the first of that period. q: episodes with no S after a
  # gap (records missing the code) also start one. s: a placement move (P)
  # inside a period that began before the referral does not.
  ch <- kids(c("l", "q", "s"), la = "301")
  rf <- refs(c("l", "q", "s"), "2019-08-01", referral_nfa = FALSE)
  cla <- rbind(eps("l", "2019-05-01", "2019-09-01", ls = "V3", rec = "X1"),
               eps("l", "2019-09-01", rne = "L", place = "U2"),
               eps("q", "2019-10-01", rne = "P", place = "U1"),
               eps("s", "2019-01-01", "2019-09-01", rec = "X1", place = "U1"),
               eps("s", "2019-09-01", rne = "P", place = "U1"))
  co <- fv_build(children = ch, referrals = rf, cla_episodes = cla,
                 outcomes = c("cla_18m", "kinship_first"))
  expect_equal(val(co, "cla_18m"), c(l = 1L, q = 1L, s = 0L))
  expect_equal(val(co, "kinship_first"), c(l = 1L, q = 1L, s = NA))
  expect_equal(val(co, "in_care_at_referral"), c(l = FALSE, q = FALSE, s = TRUE))
})

test_that("same-day episodes: the S episode starts the period whatever the row order", {
  # u: a zero-length S episode in kinship care (U1) and a placement move (P,
  # U4) starting the same day. The S episode starts the new period and the P
  # episode continues it (it starts on the day the S one ends), so the
  # first placement of the period is U1: kinship_first 1, in either row order.
  ch <- kids("u", la = "301")
  rf <- refs("u", "2019-08-01", referral_nfa = FALSE)
  cla <- rbind(eps("u", "2019-09-01", "2019-09-01", place = "U1", rec = "X1"),
               eps("u", "2019-09-01", rne = "P", place = "U4"))
  # sfp_data() refuses two episodes of a child starting the same day; this
  # tests the cohort code on records that got past it
  cla$decom[2] <- as.Date("2019-09-02")
  d <- quiet_data(children = ch, referrals = rf, cla_episodes = cla, rollout = fv_rollout)
  d$cla_episodes$decom[2] <- as.Date("2019-09-01")
  des <- design_family_valued(d, data_end = as.Date("2023-12-31"))
  for (ord in list(1:2, 2:1)) {
    d$cla_episodes <- d$cla_episodes[ord, ]
    co <- suppressMessages(build_cohort(d, des, outcomes = c("cla_18m", "kinship_first")))
    expect_equal(val(co, "cla_18m"), c(u = 1L))
    expect_equal(val(co, "kinship_first"), c(u = 1L))
  }
})

test_that("cpp_duration and days_cpp_18m: overlaps merged, open plans capped, same-day plans", {
  ids <- c("a", "b", "c", "d", "e", "f", "g")
  ch <- kids(ids)
  rf <- rbind(refs(ids, "2019-03-01"), refs("d", "2019-03-20", rid = "r_d2"))
  cp <- rbind(
    plans("r_a", "2019-04-01", "2019-10-01"),    # 30+31+30+31+31+30 = 183 days
    plans("r_b", "2019-09-01"),                  # last day of the 6-month window; open:
                                                 # capped at 2020-09-01, 366 days (29 Feb)
    plans("r_c", "2019-09-02"),                  # starts too late for cpp_duration
    plans("r_d", "2019-03-10", "2019-04-10"),    # 31 days
    plans("r_d2", "2019-04-01", "2019-05-01"),   # overlaps: union Mar 10 - May 1 = 52
    plans("r_d", "2020-08-01"),                  # open past the window end: 31 days
    plans("r_e", "2019-01-01"),                  # started before the referral, open
    plans("r_f", "2019-05-01", "2019-05-01"),    # same-day plan: 0 days
    cbind(plans("r_g", "2019-04-01", "2019-05-01"))
  )
  cp$n_previous_cpp <- c(NA, NA, NA, NA, NA, NA, NA, NA, 2L)
  co <- fs_build(children = ch, referrals = rf, cp_plans = cp,
                 outcomes = c("cpp_duration", "days_cpp_18m"))
  expect_equal(val(co, "cpp_duration"),
               c(a = 183L, b = 366L, c = NA, d = 31L, e = NA, f = 0L, g = 30L))
  expect_equal(val(co, "cpp_duration_censored"),
               c(a = FALSE, b = TRUE, c = NA, d = FALSE, e = NA, f = FALSE, g = FALSE))
  expect_equal(val(co, "cpp_duration_observable"),
               c(a = TRUE, b = TRUE, c = NA, d = TRUE, e = NA, f = TRUE, g = TRUE))
  # Window 2019-03-01 .. 2020-09-01 (exclusive) is 550 days: e is on a plan
  # throughout; c from 2019-09-02 is 365 days; d is 52 + 31.
  expect_equal(val(co, "days_cpp_18m"),
               c(a = 183L, b = 366L, c = 365L, d = 83L, e = 550L, f = 0L, g = 30L))
  # Previous CPPs: e had one before the referral; g's recorded count is 2.
  expect_equal(val(co, "n_previous_cpp"), c(a = 0L, b = 0L, c = 0L, d = 0L, e = 1L, f = 0L, g = 2L))
  expect_equal(val(co, "previous_cpp"), c(a = 0L, b = 0L, c = 0L, d = 0L, e = 1L, f = 0L, g = 1L))
  expect_flow_adds_up(co)
})

test_that("rereferral_18m: toxic-trio sample from the first assessment, same-day referrals", {
  ids <- c("a", "b", "c", "d", "e", "f", "g")
  ch <- kids(ids)
  rf <- rbind(refs(ids, "2019-03-01"),
              refs(c("a", "b", "d", "e", "g"),
                   c("2020-09-01", "2020-09-02", "2019-03-01", "2019-06-01", "2019-06-01"),
                   rid = paste0("z_", c("a", "b", "d", "e", "g"))))
  as <- data.frame(assessment_id = c("A_a", "A_b", "A_c", "A_d", "A_e1", "A_e2", "A_g"),
                   referral_id = c("r_a", "r_b", "r_c", "r_d", "r_e", "r_e", "r_g"),
                   assessment_start = as.Date(c("2019-03-05", "2019-03-05", "2019-03-05",
                                                "2019-03-05", "2019-03-02", "2019-05-01",
                                                "2019-03-05")),
                   stringsAsFactors = FALSE)
  as$assessment_end <- as$assessment_start + 20
  fa <- data.frame(assessment_id = c("A_a", "A_b", "A_c", "A_d", "A_e1", "A_e2", "A_g"),
                   factor = c("1B", "3C", "1A", "4B", "2A", "4B", "1C"),
                   stringsAsFactors = FALSE)
  co <- fs_build(children = ch, referrals = rf, assessments = as, assessment_factors = fa,
                 outcomes = "rereferral_18m")
  # a: re-referred on the window's last day; b: one day late; c: only the
  # child's own factor (1A); d: a second referral on the same day is not a
  # re-referral (same-day referrals are ordered by referral_id, so r_d is the
  # first); e: toxic trio only at the second assessment; f: no
  # assessment; g: 1C is in the broad set only.
  expect_equal(val(co, "rereferral_18m"),
               c(a = 1L, b = 0L, c = NA, d = 0L, e = NA, f = NA, g = NA))
  co2 <- fs_build(children = ch, referrals = rf, assessments = as, assessment_factors = fa,
                  outcomes = "rereferral_18m", design_args = list(toxic_trio = "broad"))
  expect_equal(val(co2, "rereferral_18m")[["g"]], 1L)
  expect_flow_adds_up(co)
})

test_that("absence: the three terms starting after the referral, Summer6th added", {
  ch <- kids(c("a", "b", "c"))
  rf <- refs(c("a", "b", "c"), c("2019-09-01", "2019-08-01", "2019-05-01"))
  ab <- data.frame(
    child_id = c("a", "a", "a", "a", "a", "a", "b", "b", "c"),
    academic_year = c("2019/20", "2019/20", "2019/20", "2020/21", "2020/21", "2019/20",
                      "2019/20", "2019/20", "2018/19"),
    term = c("spring", "summer", "summer6th", "autumn", "spring", "autumn",
             "autumn", "spring", "summer"),
    sessions_possible = c(120L, 60L, 50L, 140L, 100L, 130L, 0L, 100L, 100L),
    unauth_sessions = c(6L, 3L, 8L, 7L, 1L, 9L, 0L, 4L, 10L),
    stringsAsFactors = FALSE)
  co <- fs_build(children = ch, referrals = rf, absence = ab[sample(nrow(ab)), ],
                 outcomes = "absence")
  p <- absence_panel(co)
  # "three consecutive school terms, beginning with the closest school term
  # beginning after the start of the" referral (FS): real term starts,
  # autumn in September, spring in January, summer after Easter.
  # a, referred 2019-09-01, the first day of autumn 2019 (which therefore
  # does not begin after it): spring 2020 (1 Jan), summer 2020 (Easter
  # Monday 13 April; Summer + Summer6th = 110 sessions, 11 unauthorised),
  # autumn 2020 (1 September). Spring 2021 is the fourth term.
  pa <- p[p$child_id == "a", ]
  expect_equal(pa$term, c("spring", "summer", "autumn"))
  expect_equal(pa$term_index, 1:3)
  expect_equal(pa$term_start, as.Date(c("2020-01-01", "2020-04-13", "2020-09-01")))
  expect_equal(pa$sessions_possible, c(120L, 110L, 140L))
  expect_equal(pa$absence_rate, 100 * c(6 / 120, 11 / 110, 7 / 140))
  expect_equal(pa$days_since_referral, c(122L, 225L, 366L))
  # b, an August referral (2019-08-01): term 1 is autumn 2019, starting
  # 1 September (it used to be spring 2020, the census window starting in
  # August); no session was possible in it, so its rate is missing.
  pb <- p[p$child_id == "b", ]
  expect_equal(pb$term, c("autumn", "spring"))
  expect_equal(pb$term_index, 1:2)
  expect_equal(pb$absence_rate, c(NA, 4))
  # one row per child with the rate over the three terms: a 100 x (6 + 11 +
  # 7) / (120 + 110 + 140); b 100 x 4 / 100; c has no record.
  expect_equal(val(co, "absence_rate"), c(a = 100 * 24 / 370, b = 4, c = NA))
  # c, referred 2019-05-01 in the summer term: next is autumn 2019; the
  # summer 2019 record is not used.
  expect_false("c" %in% p$child_id)
  f <- exclusion_flow(co, stage = "absence", by = "total")
  expect_equal(f$n, c(3L, 1L, 2L))
  expect_flow_adds_up(co)
  # the cohort has absence_rate (and the panel), not a column `absence`; its
  # model covariates are the design's less those dropped on its sample
  dr <- attr(co, "covariates_dropped_by_sample")
  expect_true("absence" %in% names(dr))
  cv <- cohort_covariates(co, "absence")
  des <- attr(co, "design")
  expect_equal(cv, intersect(setdiff(des$covariates, c(des$covariates_exclude$absence, dr$absence)),
                             names(co)))
  expect_true(length(cv) > 0L && all(cv %in% names(co)))
  expect_error(cohort_covariates(co, "absent"), "one outcome of the cohort")
  # No session possible gives no rate; a missing count makes the term's sum
  # missing (never a silent zero); one term kept with absence_terms = 1.
  ab2 <- ab
  ab2$sessions_possible[ab2$child_id == "a" & ab2$term == "summer6th"] <- NA
  co2 <- fs_build(children = ch, referrals = rf, absence = ab2, outcomes = "absence",
                  design_args = list(absence_terms = 1))
  p2 <- absence_panel(co2)
  expect_equal(p2$term_index, c(1L, 1L))
  expect_equal(p2$absence_rate, c(5, NA))
  # double sessions and double design arguments give the same panel
  ab_dbl <- transform(ab, sessions_possible = as.double(sessions_possible),
                      unauth_sessions = as.double(unauth_sessions))
  co_dbl <- fs_build(children = ch, referrals = rf, absence = ab_dbl, outcomes = "absence",
                     design_args = list(absence_terms = 3, age_range = c(0, 12)))
  expect_identical(absence_panel(co_dbl), absence_panel(co))
  co3 <- fs_build(children = ch, referrals = rf, absence = ab2, outcomes = "absence")
  p3 <- absence_panel(co3)
  expect_equal(p3$sessions_possible[p3$child_id == "a"], c(120L, NA, 140L))
  expect_equal(p3$absence_rate[p3$child_id == "a"], c(5, NA, 5))
  expect_equal(p3$absence_rate[p3$child_id == "b"], c(NA, 4))
  expect_equal(val(co3, "absence_rate")[["a"]], NA_real_)
  # a term-dates table replaces the standard starts: autumn 2019 starting
  # 4 September leaves a (referred 2019-09-01) in that term first.
  td <- data.frame(academic_year = "2019/20", term = "autumn", start = as.Date("2019-09-04"))
  co4 <- fs_build(children = ch, referrals = rf, absence = ab, outcomes = "absence",
                  design_args = list(term_dates = td))
  p4 <- absence_panel(co4)
  expect_equal(p4$term[p4$child_id == "a"], c("autumn", "spring", "summer"))
  expect_equal(p4$term_start[p4$child_id == "a"], as.Date(c("2019-09-04", "2020-01-01", "2020-04-13")))
  expect_snapshot(design_family_safeguarding(fs_rollout, term_dates = rbind(td, td)), error = TRUE)
})

# ---- Family Valued outcomes -------------------------------------------------------

fv_case <- function() {
  ids <- c("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "m")
  ch <- kids(ids, dob = "2010-01-01", la = "301")
  ch$dob[ch$child_id == "i"] <- as.Date("2002-09-01")
  rf <- refs(ids, "2019-08-01", referral_nfa = FALSE,
             closure_reason = NA_character_)
  rf$referral_nfa[rf$child_id == "a"] <- TRUE
  rf$closure_reason[rf$child_id == "b"] <- "RC8"
  rf <- rbind(rf, refs("b", "2019-10-01", rid = "r_b2", referral_nfa = FALSE,
                       closure_reason = NA_character_))
  cin <- rbind(
    plans("r_c", "2019-08-10", "2019-12-01"),    # c: CIN plan ends ...
    plans("r_d", "2019-08-10", "2019-12-01"),    # d: steps up to a CPP the same day
    plans("r_f", "2019-01-01", "2019-07-15")     # f: ended before the referral
  )
  cpp <- rbind(
    plans("r_c", "2020-03-01", "2020-06-01"),    # ... and a CPP starts later: a return
    plans("r_d", "2019-12-01"),                  # open: the spell never ends
    plans("r_e", "2019-09-01", "2020-01-01"),    # e: CPP ends, care starts that day
    plans("r_f", "2019-09-01")
  )
  cla <- rbind(
    eps("e", "2020-01-01", place = "U2"),
    eps("g", "2020-02-01", "2020-05-01", place = "U5", rec = "X1"),
    eps("g", "2020-05-01", "2021-06-01", rne = "P", place = "U1", rec = "E4A"),
    eps("h", "2020-02-01", "2020-10-01", rec = "E4B"),
    eps("i", "2019-10-01", "2020-06-01", rec = "E4A"),
    eps("j", "2019-09-01", "2021-03-02", rec = "E4A"),
    eps("k", "2019-05-01", place = "U3"),
    eps("m", "2021-04-01", place = "U1")
  )
  list(children = ch, referrals = rf, cin_plans = cin, cp_plans = cpp, cla_episodes = cla)
}

test_that("Family Valued sample: case open after assessment", {
  x <- fv_case()
  co <- do.call(fv_build, c(x, list(outcomes = "cla_18m")))
  expect_false(any(c("a", "b") %in% co$child_id))
  f <- exclusion_flow(co, stage = "population", by = "total")
  expect_equal(f$n[f$step == "closed after assessment"], 2L)
  co2 <- do.call(fv_build, c(x, list(outcomes = "cla_18m",
                                     design_args = list(entry = "first_open"))))
  expect_true("b" %in% co2$child_id)
  expect_equal(co2$referral_date[co2$child_id == "b"], as.Date("2019-10-01"))
  expect_false("a" %in% co2$child_id)
  co3 <- do.call(fv_build, c(x, list(outcomes = "cla_18m",
                                     design_args = list(require_open_after_assessment = FALSE))))
  expect_true(all(c("a", "b") %in% co3$child_id))
  expect_flow_adds_up(co2)
})

test_that("Family Valued outcomes derived on paper", {
  x <- fv_case()
  co <- do.call(fv_build, c(x, list(outcomes = c("cla_18m", "return_36m", "cpp_12m",
                                                 "days_plan_18m", "kinship_first"))))
  ids <- c("c", "d", "e", "f", "g", "h", "i", "j", "k", "m")
  expect_equal(co$child_id, ids)
  # return_36m (window 2019-08-01 .. 2022-08-01): c's CIN plan ends and a CPP
  # starts later; d steps up CIN -> CPP the same day (one spell, still open);
  # e's CPP ends the day care starts (care counts as a return); f's plan ended
  # before the referral and the next one is still open.
  expect_equal(val(co, "return_36m")[c("c", "d", "e", "f", "g")],
               c(c = 1L, d = 0L, e = 1L, f = 0L, g = 0L))
  # cpp_12m: a CPP starting 2019-08-01 .. 2020-08-01.
  expect_equal(val(co, "cpp_12m")[c("c", "d", "e", "f", "g")],
               c(c = 1L, d = 1L, e = 1L, f = 1L, g = 0L))
  # days_plan_18m, window 2019-08-01 .. 2021-02-01 (550 days):
  # c: CIN Aug 10 - Dec 1 (113) + CPP Mar 1 - Jun 1 (92) = 205;
  # d: from Aug 10 2019 on (CIN then open CPP) = 541; e: Sep 1 - Jan 1 = 122;
  # f: open CPP from Sep 1 2019 = 519.
  expect_equal(val(co, "days_plan_18m")[c("c", "d", "e", "f", "g")],
               c(c = 205L, d = 541L, e = 122L, f = 519L, g = 0L))
  # cla_18m: a new period of care starts 2019-08-01 .. 2021-02-01; k has
  # been in care since 2019-05-01 (no new period: 0); m enters in April 2021.
  expect_equal(val(co, "cla_18m"),
               c(c = 0L, d = 0L, e = 1L, f = 0L, g = 1L, h = 1L, i = 1L, j = 1L, k = 0L,
                 m = 0L))
  # kinship_first (FV secondary 5), sample "became looked after within 18
  # months of the referral start date", "Coded 1 if the child went into
  # kinship foster care as their first episode of care": e U2, g U5 (moved
  # to U1 later: still 0), h U4, i U4, j U4; k's period began before the
  # referral: never supplies it (outside the sample); m enters too late.
  expect_equal(val(co, "kinship_first"),
               c(c = NA, d = NA, e = 1L, f = NA, g = 0L, h = 0L, i = 0L, j = 0L, k = NA,
                 m = NA))
  expect_flow_adds_up(co)
  # reunified_18m (FV secondary 6) is its own population: "children/young
  # people aged 0-17 that became looked after within the trial period"
  # (2019-07-01 .. 2021-01-01), whatever their referral: e, g, h, i, j (k
  # entered in May 2019, m in April 2021: not in it). g returns home (E4A)
  # 2021-06-01 <= 2020-02-01 + 18 m; h returns home outside care planning
  # (E4B); i turns 18 on 2020-09-01, within 18 months of entering care:
  # outside the sample; j returns one day after 2019-09-01 + 18 m =
  # 2021-03-01; e is still in care 18 months on.
  cr <- do.call(fv_build, c(x, list(outcomes = "reunified_18m")))
  expect_equal(val(cr, "reunified_18m"), c(e = 0L, g = 1L, h = 0L, i = NA, j = 0L))
  expect_equal(val(cr, "care_start"),
               c(e = as.Date("2020-01-01"), g = as.Date("2020-02-01"), h = as.Date("2020-02-01"),
                 i = as.Date("2019-10-01"), j = as.Date("2019-09-01")))
  expect_equal(val(cr, "treated"), c(e = 1L, g = 1L, h = 1L, i = 0L, j = 0L))
  fl <- exclusion_flow(cr, stage = "reunified_18m", by = "total")
  expect_equal(fl$n[fl$step == "turns 18 within the window"], 1L)
  expect_flow_adds_up(cr)
  co_s <- do.call(fv_build, c(x, list(outcomes = "reunified_18m",
                                      design_args = list(reunification = "sensitivity"))))
  expect_equal(val(co_s, "reunified_18m")[["h"]], 1L)
  # asking for it with referral-based outcomes is an error
  expect_snapshot(do.call(fv_build, c(x, list(outcomes = c("cla_18m", "reunified_18m")))),
                  error = TRUE)
})

test_that("treatment definitions: open days, 28 days, care entry, alternative go-live, embedding", {
  ids <- c("n", "o", "p", "g", "c")
  ch <- kids(ids, la = "301")
  rf <- rbind(
    refs("n", "2019-11-22", "2020-02-09"),       # 40 open days before go-live, 40 after
    refs("o", "2019-12-10", "2020-01-20"),       # 22 before, 20 after
    refs(c("p", "p"), c("2019-08-01", "2020-03-01"), c("2019-08-10", "2020-03-30"),
         rid = c("p1", "p2")),                   # 10 before, 30 after
    refs(c("g", "c"), c("2019-08-01", "2020-02-15"))
  )
  rf$referral_nfa <- FALSE
  cla <- eps("g", "2020-02-01")
  mk <- function(tr) fv_build(children = ch, referrals = rf, cla_episodes = cla,
                              outcomes = "cla_18m", treatment = tr)
  expect_equal(val(mk("referral_date"), "treated")[ids], c(n = 0L, o = 0L, p = 0L, g = 0L, c = 1L))
  expect_equal(val(mk("open_days_half"), "treated")[c("n", "o", "p")], c(n = 1L, o = 0L, p = 1L))
  expect_equal(val(mk("open_days_28"), "treated")[c("n", "o", "p")], c(n = 1L, o = 0L, p = 1L))
  # care entry: g enters care 2020-02-01, after go-live; others never in care.
  expect_equal(val(mk("care_entry"), "treated")[ids], c(n = NA, o = NA, p = NA, g = 1L, c = NA))
  # alternative go-live 2020-03-01: c (2020-02-15) is now control.
  expect_equal(val(mk("alt_go_live"), "treated")[["c"]], 0L)
  # embedding window 2019-10-01 .. 2019-12-31 excludes n and o.
  co <- mk("embedding")
  expect_setequal(co$child_id, c("c", "g", "p"))
  f <- exclusion_flow(co, stage = "population", by = "total")
  expect_equal(f$n[f$step == "referred in the embedding window"], 2L)
  expect_flow_adds_up(co)
  # Family Safeguarding open days: comparator LAs never accrue days under the model.
  ch2 <- kids(c("n", "v"), la = c("101", "201"))
  rf2 <- refs(c("n", "v"), c("2019-11-22", "2019-11-22"), c("2020-02-09", "2020-02-09"))
  co2 <- fs_build(children = ch2, referrals = rf2, cla_episodes = eps("n", "2019-01-01"),
                  outcomes = "cla_18m", treatment = "open_days_half")
  expect_equal(val(co2, "treated"), c(n = 1L, v = 0L))
})

test_that("the authority is the one at the time of the referral; movers are counted", {
  # FV Conditions: "according to whether Family Valued was implemented in
  # their local authority at the time of their referral start date". 301
  # goes live 2020-01-01, 302 on 2020-07-01.
  ch <- data.frame(
    child_id = c("mv", "mv", "mr", "ea", "ea", "st"),
    la_code = c("301", "302", "301", "302", "301", "302"),
    dob = as.Date("2012-01-01"), gender_raw = "1", ethnicity = "WBRI",
    recorded_date = as.Date(c("2019-03-31", "2020-03-31", "2019-03-31", "2019-09-30",
                              "2020-03-31", "2019-03-31")),
    stringsAsFactors = FALSE)
  rf <- refs(c("mv", "mr", "ea", "st"), c("2020-02-01", "2020-02-01", "2019-08-01", "2020-02-01"),
             referral_nfa = FALSE, la_code = c(NA, "302", NA, NA))
  lac <- data.frame(la_code = c("301", "302"), month = as.Date("2019-01-01"),
                    prop_fsm = c(0.1, 0.4), stringsAsFactors = FALSE)
  co <- fv_build(children = ch, referrals = rf, la_covariates = lac, outcomes = character(),
                 design_args = list(max_missing = 1))
  # mv: the row current on 2020-02-01 is the 2019-03-31 one (301, live since
  # January: treated), not the latest (302); mr: the referral names 302
  # (not yet live: control); ea: no row precedes the 2019-08-01 referral, so
  # the earliest (302); st never moved.
  expect_equal(val(co, "la"), c(mv = "301", mr = "302", ea = "302", st = "302"))
  expect_equal(val(co, "treated"), c(mv = 1L, mr = 0L, ea = 0L, st = 0L))
  expect_equal(val(co, "prop_fsm"), c(mv = 0.1, mr = 0.4, ea = 0.4, st = 0.4))
  expect_equal(attr(co, "la_changed"), 3L)
  expect_output(print(co), "authority changed over their records: 3")
})

# ---- covariates ----------------------------------------------------------------

test_that("covariates over time: conflicts become missing, maxima up to the referral", {
  ch <- data.frame(
    child_id = c("z", "z", "y", "y", "x", "x", "w"),
    la_code = "101", dob = as.Date("2012-01-01"),
    gender_raw = c("1", "2", "0", "M", NA, "U", "F"),
    ethnicity = c("WBRI", "WIRI", NA, "BAFR", "AIND", "BAFR", "REFU"),
    fsm_ever6 = c(FALSE, TRUE, FALSE, TRUE, NA, NA, TRUE),
    uasc = c(FALSE, FALSE, NA, NA, NA, TRUE, FALSE),
    recorded_date = as.Date(c("2019-03-31", "2020-03-31", "2019-03-31", "2020-03-31",
                              "2019-03-31", "2020-03-31", "2019-03-31")),
    stringsAsFactors = FALSE)
  ch$disability <- list("NONE", c("LD", "HEAR"), "NONE", "AUT", character(), "NONE", "MOB")
  rf <- refs(c("z", "y", "x", "w"), c("2019-06-01", "2019-01-01", "2020-06-01", "2019-06-01"))
  co <- fs_build(children = ch, referrals = rf, cla_episodes = eps("z", "2010-01-01", "2010-02-01"),
                 outcomes = "cla_18m", design_args = list(max_missing = 1))
  # z: male then female -> missing (4); White both times; disability, FSM only
  # counted up to the referral (2019-06-01): the 2019 record says no.
  # y: not recorded/unborn then male -> male; missing then Black -> Black; no
  # record precedes the 2019-01-01 referral, so the earliest one is used.
  # x: missing then indeterminate; Asian vs Black -> Missing; both records
  # precede the referral: UASC yes; disability NONE -> 0.
  expect_equal(as.character(val(co, "gender")),
               c("missing", "male", "indeterminate", "female"))
  expect_equal(as.integer(val(co, "gender")) - 1L, c(4L, 1L, 3L, 2L))
  expect_equal(as.character(val(co, "ethnic_group")), c("White", "Black", "Missing", "Missing"))
  expect_equal(unname(val(co, "disabled")), c(0L, 0L, 0L, 1L))
  expect_equal(unname(val(co, "fsm")), c(0L, 0L, NA, 1L))
  expect_equal(unname(val(co, "uasc")), c(0L, NA, 1L, 0L))
  expect_equal(levels(co$gender),
               c("not recorded/unborn", "male", "female", "indeterminate", "missing"))
  # one row per child without recorded_date: a repeated child is an error
  ch1 <- ch[!duplicated(ch$child_id), setdiff(names(ch), "recorded_date")]
  d <- quiet_data(children = ch1, referrals = rf, cla_episodes = eps("z", "2010-01-01"),
                  rollout = fs_rollout)
  d$children <- rbind(d$children, d$children[1, ])   # as if built without validation
  expect_snapshot(build_cohort(d, design_family_safeguarding(d), outcomes = "cla_18m"),
                  error = TRUE)
})

test_that("print() summarises the cohort", {
  x <- fv_case()
  co <- do.call(fv_build, c(x, list(outcomes = c("cla_18m", "kinship_first"))))
  expect_snapshot(print(co))
  expect_snapshot(exclusion_flow(co, by = "total"))
})

test_that("LA covariates: latest month before the referral, interpolated, carried at the ends", {
  ch <- kids(c("a", "b", "c", "d"), la = c("101", "101", "101", "201"))
  rf <- refs(c("a", "b", "c", "d"), c("2019-03-15", "2018-06-01", "2019-08-01", "2019-03-15"))
  lac <- data.frame(la_code = "101",
                    month = as.Date(c("2019-05-01", "2019-01-01", "2019-03-01")),
                    prop_fsm = c(0.4, 0.2, NA),
                    prop_white_british = c(NA, 0.8, NA),
                    other_innovation_programme = c(NA, FALSE, TRUE))
  co <- fs_build(children = ch, referrals = rf, cla_episodes = eps("a", "2010-01-01", "2010-02-01"),
                 la_covariates = lac, outcomes = "cla_18m", design_args = list(max_missing = 1))
  # a (2019-03-15): latest month 2019-03-01, interpolated between 0.2 on
  # 2019-01-01 and 0.4 on 2019-05-01: 0.2 + 0.2 * 59 / 120.
  # b (2018-06-01) precedes every month: next observation carried back (0.2).
  # c (2019-08-01): latest month 2019-05-01: 0.4. d: LA without data: NA.
  expect_equal(unname(val(co, "prop_fsm")), c(0.2 + 0.2 * 59 / 120, 0.2, 0.4, NA))
  expect_equal(unname(val(co, "prop_white_british")), c(0.8, 0.8, 0.8, NA))
  expect_equal(unname(val(co, "other_innovation_programme")), c(TRUE, FALSE, TRUE, NA))
})

test_that("covariates missing for more than 30% are reported and dropped", {
  ch <- kids(c("a", "b", "c"))
  ch$uasc <- c(TRUE, NA, NA)
  rf <- refs(c("a", "b", "c"), "2019-03-01")
  d <- quiet_data(children = ch, referrals = rf, cla_episodes = eps("a", "2019-04-01"),
                rollout = fs_rollout)
  des <- design_family_safeguarding(d, data_end = as.Date("2023-12-31"))
  expect_snapshot(co <- build_cohort(d, des, outcomes = "cla_18m"))
  # the column stays (imputation and CEM use it); the models drop it
  expect_true("uasc" %in% names(co))
  expect_true("uasc" %in% attr(co, "covariates_dropped_by_sample")$cla_18m)
  expect_true("uasc" %in% attr(co, "covariates_dropped"))
  expect_equal(attr(co, "covariate_missing")[["uasc"]], 2 / 3)
  tab <- attr(co, "missing_covariates")
  expect_equal(tab[tab$sample == "cla_18m" & tab$covariate == "uasc",
                   c("n", "n_missing", "dropped", "reason")],
               data.frame(n = 3L, n_missing = 2L, dropped = TRUE, reason = "66.7% missing > 30%"),
               ignore_attr = TRUE)
})

test_that("the 30% rule: 'Missing' levels are missing, and it applies per analysed sample", {
  # "will drop covariates that are missing at a rate greater than 30%" (FS
  # and FV, Handling missing data). a, b, c: ethnicity refused (REFU) or not
  # obtained (NOBT) is the level "Missing": 2 of 3 (67%) missing, so dropped,
  # where it used to pass as observed.
  ch <- kids(c("a", "b", "c"))
  ch$ethnicity <- c("WBRI", "REFU", "NOBT")
  rf <- refs(c("a", "b", "c"), "2019-03-01")
  co <- fs_build(children = ch, referrals = rf, cla_episodes = eps("a", "2019-04-01"),
                 outcomes = "cla_18m")
  expect_equal(as.character(co$ethnic_group), c("White", "Missing", "Missing"))
  expect_true("ethnic_group" %in% attr(co, "covariates_dropped_by_sample")$cla_18m)
  tab <- attr(co, "missing_covariates")
  expect_equal(tab$n_missing[tab$sample == "cla_18m" & tab$covariate == "ethnic_group"], 2L)
  # The analysed sample decides: p, q enter care (the kinship sample), r, s
  # do not. UASC is unknown for p only: 1 of 4 in the cohort (25%: kept for
  # cla_18m), 1 of 2 in the kinship sample (50%: dropped for kinship_first).
  ch2 <- kids(c("p", "q", "r", "s"), la = "301", uasc = c(NA, TRUE, FALSE, FALSE))
  rf2 <- refs(c("p", "q", "r", "s"), "2019-08-01", referral_nfa = FALSE)
  cla2 <- rbind(eps("p", "2019-09-01", place = "U1"), eps("q", "2019-10-01"))
  co2 <- fv_build(children = ch2, referrals = rf2, cla_episodes = cla2,
                  outcomes = c("cla_18m", "kinship_first"))
  dr <- attr(co2, "covariates_dropped_by_sample")
  expect_false("uasc" %in% dr$cla_18m)
  expect_true("uasc" %in% dr$kinship_first)
  tab <- attr(co2, "missing_covariates")
  expect_equal(tab$share[tab$covariate == "uasc"], c(0.25, 0.25, 0.5))
  expect_equal(tab$sample[tab$covariate == "uasc"], c("cohort", "cla_18m", "kinship_first"))
  expect_equal(cohort_covariates(co2, "kinship_first"),
               setdiff(attr(co2, "design")$covariates,
                       c(dr$kinship_first, "n_previous_cpp", "primary_need")))
})

test_that("FSM missing below school age: dropped from the regression, its own level in cem()", {
  # Children below school age have no FSM record (structural). Here 3 of 4
  # children are 0-3: FSM is 75% missing, dropped from the cla_18m model,
  # but the column stays and cem() matches on it with the missing values as
  # one explicit level, counted in the coarsening.
  ch <- kids(c("a", "b", "c", "d", "e", "f", "g", "h"),
             dob = rep(c("2018-01-01", "2018-06-01", "2017-09-01", "2010-01-01"), 2),
             la = rep(c("101", "201"), each = 4), fsm_ever6 = rep(c(NA, NA, NA, TRUE), 2))
  rf <- refs(ch$child_id, rep(c("2019-03-01", "2020-03-01"), 4))
  co <- fs_build(children = ch, referrals = rf, cla_episodes = eps("a", "2019-04-01"),
                 outcomes = "cla_18m")
  expect_true("fsm" %in% attr(co, "covariates_dropped_by_sample")$cla_18m)
  expect_equal(sum(is.na(co$fsm)), 6L)
  st <- as.data.frame(co)
  st$in_treated_la <- as.integer(st$la == "101")
  st$pair <- "101-201"
  m <- cem(data = st, design = attr(co, "design"), exact = "fin_year", l1 = FALSE)
  expect_length(m$weights, 8L)
  # FSM: the one observed value (yes) and the explicit not-recorded level
  expect_equal(m$coarsening$n_values[m$coarsening$variable == "fsm"], 2L)
  tab <- attr(co, "missing_covariates")
  expect_equal(tab$n_missing[tab$sample == "cohort" & tab$covariate == "fsm"], 6L)
})

# ---- edge cases and errors ---------------------------------------------------------

test_that("an empty cohort and a one-LA cohort work", {
  ch <- kids("a", dob = "2000-01-01")        # too old
  rf <- refs("a", "2019-03-01")
  co <- fs_build(children = ch, referrals = rf, cla_episodes = eps("a", "2019-04-01"),
                 cp_plans = plans("r_a", "2019-03-02"), absence = data.frame(
                   child_id = "a", academic_year = "2019/20", term = "spring",
                   sessions_possible = 1L, unauth_sessions = 0L),
                 assessments = data.frame(assessment_id = "x", referral_id = "r_a",
                                          assessment_start = as.Date("2019-03-01"),
                                          assessment_end = as.Date("2019-03-02")),
                 assessment_factors = data.frame(assessment_id = "x", factor = "1B"),
                 outcomes = NULL)
  expect_equal(nrow(co), 0L)
  expect_true(all(c("cla_18m", "cpp_duration", "days_cpp_18m", "rereferral_18m") %in% names(co)))
  expect_equal(nrow(absence_panel(co)), 0L)
  expect_flow_adds_up(co)
  expect_output(print(co), "0 children")
  expect_s3_class(as.data.frame(co), "data.frame")
  expect_identical(class(co[, c("child_id", "la")]), "data.frame")
  expect_null(attr(co[co$la == "101", ], "exclusion_flow"))
  expect_null(attr(as.data.frame(co), "exclusion_flow"))
  expect_equal(summary(co)$n[1], 1L)
})

test_that("bad input stops with clear errors", {
  ch <- kids("a")
  rf <- refs("a", "2019-03-01")
  d <- quiet_data(children = ch, referrals = rf, rollout = fs_rollout)
  des <- design_family_safeguarding(d, data_end = as.Date("2023-12-31"))
  expect_snapshot(build_cohort(d, des, treatment = "first_contact"), error = TRUE)
  expect_snapshot(build_cohort(d, des, treatment = "care_entry"), error = TRUE)
  expect_snapshot(build_cohort(d, des), error = TRUE)
  expect_snapshot(build_cohort(d, des, outcomes = "kinship_first"), error = TRUE)
  expect_snapshot(build_cohort(d, "FS"), error = TRUE)
  expect_snapshot(build_cohort(ch, des), error = TRUE)
  d2 <- quiet_data(children = ch, referrals = rf, rollout = fs_rollout,
                 cla_episodes = eps("a", "2019-04-01"))
  d2$cla_episodes$ls <- NULL                   # as if built without validation
  expect_snapshot(build_cohort(d2, des, outcomes = "cla_18m"), error = TRUE)
  d2b <- quiet_data(children = ch, referrals = rf, rollout = fs_rollout,
                    cla_episodes = eps("a", "2019-04-01"))
  d2b$cla_episodes$decom <- "2019-04-01"       # as if built without validation
  expect_snapshot(build_cohort(d2b, des, outcomes = "cla_18m"), error = TRUE)
  # Family Valued: no column to tell whether the case stayed open
  ch3 <- kids("a", la = "301")
  d3 <- quiet_data(children = ch3, referrals = rf, cla_episodes = eps("a", "2019-04-01"),
                 rollout = fv_rollout)
  des3 <- design_family_valued(d3, data_end = as.Date("2023-12-31"))
  expect_snapshot(build_cohort(d3, des3, outcomes = "cla_18m"), error = TRUE)
  # alternative go-live dates missing for an LA
  ro <- fv_rollout
  ro$alt_go_live_date[2] <- NA
  rf3 <- refs("a", "2019-09-01", referral_nfa = FALSE)
  d4 <- quiet_data(children = ch3, referrals = rf3, cla_episodes = eps("a", "2019-04-01"),
                 rollout = ro)
  des4 <- design_family_valued(d4, data_end = as.Date("2023-12-31"))
  expect_snapshot(build_cohort(d4, des4, treatment = "alt_go_live", outcomes = "cla_18m"),
                  error = TRUE)
  co <- suppressMessages(build_cohort(d4, des4, outcomes = "cla_18m"))
  expect_snapshot(exclusion_flow(co, stage = "absence"), error = TRUE)
  expect_snapshot(absence_panel(co), error = TRUE)
  expect_snapshot(exclusion_flow(data.frame()), error = TRUE)
  # children in an LA the Family Valued design does not know are excluded, counted
  ch5 <- rbind(ch3, kids("b", la = "999"))
  rf5 <- refs(c("a", "b"), "2019-09-01", referral_nfa = FALSE)
  d5 <- quiet_data(children = ch5, referrals = rf5, cla_episodes = eps("a", "2019-04-01"),
                 rollout = fv_rollout)
  co5 <- suppressMessages(build_cohort(d5, des4, outcomes = "cla_18m"))
  f <- exclusion_flow(co5, stage = "population", by = "total")
  expect_equal(f$n[f$step == "LA not in the trial"], 1L)
  # records without any date and no data_end
  d6 <- quiet_data(children = ch, referrals = rf[0, ], rollout = fs_rollout,
                 cla_episodes = eps("a", "2019-04-01")[0, ])
  expect_snapshot(build_cohort(d6, design_family_safeguarding(d6), outcomes = "cla_18m"),
                  error = TRUE)
})

# ---- generated records: plain-R reference vs the C kernels ---------------------

# A small generator of realistic-looking records (used until simulate_sfp()
# is available): unsorted tables, ties, open plans and episodes, short
# breaks, unborn children, several referrals and periods of care per child.
gen_records <- function(n = 400, seed = 1, data_end = as.Date("2023-12-31")) {
  set.seed(seed)
  ids <- sprintf("c%04d", seq_len(n))
  dob <- as.Date("2001-01-01") + sample(0:(365 * 22), n, TRUE)
  unborn <- runif(n) < 0.04
  edob <- dob
  edob[!unborn] <- NA
  dob[unborn] <- NA
  dob[sample(n, 3)] <- NA                       # unknown date of birth
  children <- data.frame(
    child_id = ids, la_code = sample(c("301", "302", "303"), n, TRUE),
    dob = dob, expected_dob = edob,
    gender_raw = sample(c("0", "1", "2", "9", "M", "F", NA), n, TRUE),
    ethnicity = sample(c("WBRI", "WOTH", "MWBC", "ABAN", "BAFR", "CHNE", "REFU", NA), n, TRUE),
    fsm_ever6 = sample(c(TRUE, FALSE, NA), n, TRUE),
    uasc = sample(c(TRUE, FALSE, FALSE, FALSE), n, TRUE),
    stringsAsFactors = FALSE)
  children$disability <- lapply(seq_len(n), function(i) sample(c("NONE", "LD", "AUT"), sample(0:2, 1)))
  k <- sample(1:3, n, TRUE, prob = c(0.6, 0.3, 0.1))
  rc <- rep(ids, k)
  m <- length(rc)
  rdate <- as.Date("2017-01-01") + sample(0:(365 * 7 - 1), m, TRUE)
  dup <- which(duplicated(rc))[1:5]
  rdate[dup] <- rdate[dup - 1L]                 # same-day referrals
  closure <- rdate + sample(0:500, m, TRUE)
  closure[runif(m) < 0.15 | closure > data_end] <- NA
  referrals <- data.frame(
    referral_id = sprintf("R%05d", sample(m)), child_id = rc, referral_date = rdate,
    closure_date = closure, referral_nfa = runif(m) < 0.1,
    closure_reason = ifelse(is.na(closure), NA, sample(paste0("RC", 1:9), m, TRUE)),
    primary_need = sample(c(paste0("N", 0:9), NA), m, TRUE), stringsAsFactors = FALSE)
  mk_plans <- function(p) {
    has <- runif(m) < p
    st <- referrals$referral_date[has] + sample(-30:250, sum(has), TRUE)
    en <- st + sample(1:700, sum(has), TRUE)
    en[runif(sum(has)) < 0.2 | en > data_end] <- NA
    out <- data.frame(referral_id = referrals$referral_id[has], start = st, end = en,
                      stringsAsFactors = FALSE)
    out <- out[out$start <= data_end, ]
    out[!duplicated(out[c("referral_id", "start")]), ]
  }
  cp <- mk_plans(0.35)
  cp$n_previous_cpp <- sample(c(0L, 0L, 1L, 2L, NA), nrow(cp), TRUE)
  cin <- mk_plans(0.45)
  ep <- list()
  for (i in which(runif(n) < 0.35)) {
    day <- as.Date("2016-06-01") + sample(0:(365 * 7), 1)
    for (p in seq_len(sample(1:2, 1))) {
      ne <- sample(1:3, 1)
      for (e in seq_len(ne)) {
        end <- day + sample(20:500, 1)
        last <- e == ne
        ep[[length(ep) + 1L]] <- data.frame(
          child_id = ids[i], decom = day, dec = end,
          rne = if (e == 1L) "S" else sample(c("P", "L", "T"), 1),
          ls = sample(c("C2", "C1", "J1", "V3", "V4"), 1, prob = c(0.5, 0.2, 0.1, 0.1, 0.1)),
          place = sample(c("U1", "U2", "U3", "U4", "U5", "U6", "P1", "K2", "R1"), 1),
          rec = if (last) sample(c("E4A", "E4B", "E13", "E11", "E41", "E2"), 1) else "X1",
          stringsAsFactors = FALSE)
        day <- end
      }
      day <- day + sample(10:600, 1)
    }
  }
  cla <- do.call(rbind, ep)
  cla <- cla[cla$decom <= data_end, ]
  open <- cla$dec > data_end
  cla$dec[open] <- NA
  cla$rec[open] <- NA
  has_a <- runif(m) < 0.7
  as <- data.frame(assessment_id = sprintf("A%05d", seq_len(sum(has_a))),
                   referral_id = referrals$referral_id[has_a],
                   assessment_start = referrals$referral_date[has_a] + sample(0:20, sum(has_a), TRUE),
                   stringsAsFactors = FALSE)
  as$assessment_end <- as$assessment_start + sample(1:45, nrow(as), TRUE)
  two <- as[sample(nrow(as), 20), ]
  two$assessment_id <- paste0(two$assessment_id, "b")
  two$assessment_start <- two$assessment_start + 1
  two$assessment_end <- two$assessment_end + 1
  as <- rbind(as, two)
  fa <- do.call(rbind, lapply(as$assessment_id, function(a) {
    f <- sample(c("1A", "1B", "1C", "2B", "3A", "3B", "4A", "4B", "4C", "6A", "24A"), sample(0:3, 1))
    if (length(f)) data.frame(assessment_id = a, factor = f, stringsAsFactors = FALSE)
  }))
  ab <- expand.grid(child_id = ids, academic_year = paste0(2016:2023, "/", 17:24),
                    term = c("autumn", "spring", "summer", "summer6th"),
                    stringsAsFactors = FALSE)
  ab <- ab[runif(nrow(ab)) < 0.6, ]
  ab$sessions_possible <- sample(c(0L, 40:150), nrow(ab), TRUE)
  ab$unauth_sessions <- pmin(ab$sessions_possible, sample(0:12, nrow(ab), TRUE))
  lac <- expand.grid(la_code = c("301", "302", "303"),
                     month = seq(as.Date("2017-06-01"), as.Date("2023-06-01"), by = "3 months"),
                     stringsAsFactors = FALSE)
  lac$prop_fsm <- ifelse(runif(nrow(lac)) < 0.3, NA, runif(nrow(lac), 0.1, 0.4))
  lac$prop_white_british <- ifelse(runif(nrow(lac)) < 0.3, NA, runif(nrow(lac), 0.5, 0.9))
  lac$other_innovation_programme <- ifelse(runif(nrow(lac)) < 0.3, NA, runif(nrow(lac)) < 0.5)
  shuffle <- function(x) x[sample(nrow(x)), , drop = FALSE]
  list(children = shuffle(children), referrals = shuffle(referrals),
       assessments = shuffle(as), assessment_factors = shuffle(fa),
       cin_plans = shuffle(cin), cp_plans = shuffle(cp), cla_episodes = shuffle(cla),
       absence = shuffle(ab), la_covariates = shuffle(lac))
}

gen_rollout <- function(programme) {
  if (programme == "FV") {
    data.frame(la_code = c("301", "302", "303"), programme = "FV", role = "treated",
               go_live_date = as.Date(c("2020-01-01", "2020-07-01", "2021-01-01")),
               alt_go_live_date = as.Date(c("2020-03-01", "2020-09-01", "2021-03-01")),
               embed_start = as.Date(c("2019-10-01", "2020-04-01", "2020-10-01")),
               embed_end = as.Date(c("2019-12-31", "2020-06-30", "2020-12-31")),
               stringsAsFactors = FALSE)
  } else {
    data.frame(la_code = c("301", "302", "303"), programme = "FS",
               role = c("treated", "treated", "comparator"),
               go_live_date = as.Date(c("2020-01-01", "2020-10-01", NA)),
               stringsAsFactors = FALSE)
  }
}

# Slow, obvious reference: one child at a time, days as sets of dates.
r_add_months <- function(d, m) {
  lt <- as.POSIXlt(d)
  mo <- lt$mon + m
  y <- lt$year + 1900 + mo %/% 12
  first <- as.Date(sprintf("%04d-%02d-01", y, mo %% 12 + 1))
  last <- seq(first, by = "month", length.out = 2)[2] - 1
  min(first + (lt$mday - 1), last)
}
r_age <- function(dob, on) {
  a <- as.POSIXlt(dob)
  b <- as.POSIXlt(on)
  age <- b$year - a$year
  if (b$mon < a$mon || (b$mon == a$mon && b$mday < a$mday)) age <- age - 1
  age
}
# days (as numbers) covered by half-open plans [start, end) inside [lo, hi)
r_days <- function(start, end, lo, hi) {
  d <- numeric()
  for (j in seq_along(start)) {
    e <- if (is.na(end[j])) hi else min(end[j], hi)
    s <- max(start[j], lo)
    if (e > s) d <- c(d, as.numeric(seq(s, e - 1, by = "day")))
  }
  length(unique(d))
}
r_easter <- c(`2017` = "2017-04-16", `2018` = "2018-04-01", `2019` = "2019-04-21",
              `2020` = "2020-04-12", `2021` = "2021-04-04", `2022` = "2022-04-17",
              `2023` = "2023-04-09", `2024` = "2024-03-31", `2025` = "2025-04-20")

r_cohort <- function(x, design, treatment, data_end, outcomes = TRUE) {
  fs <- design$programme == "FS"
  las <- design$las
  ts <- design$trial_start
  te <- design$trial_end %||% data_end
  w <- design$windows
  ch <- x$children
  out <- list()
  # each child's records (split once: the loop below stays linear)
  child_of_ref <- function(rid) x$referrals$child_id[match(rid, x$referrals$referral_id)]
  by_child <- function(tab, child) if (is.null(tab)) list() else split(tab, child)
  rf_by <- by_child(x$referrals, x$referrals$child_id)
  cpp_by <- by_child(x$cp_plans, child_of_ref(x$cp_plans$referral_id))
  cin_by <- by_child(x$cin_plans, child_of_ref(x$cin_plans$referral_id))
  ep_by <- by_child(x$cla_episodes, x$cla_episodes$child_id)
  as_by <- by_child(x$assessments, x$assessments$referral_id)
  fa_by <- by_child(x$assessment_factors, x$assessment_factors$assessment_id)
  empty_of <- function(tab) if (is.null(tab)) NULL else tab[0, , drop = FALSE]
  get <- function(lst, key, tab) if (!is.null(lst[[key]])) lst[[key]] else empty_of(tab)
  for (id in sort(ch$child_id)) {
    c1 <- ch[ch$child_id == id, ]
    if (!fs && !c1$la_code %in% las$la_code) next
    rf <- get(rf_by, id, x$referrals)
    rf <- rf[order(rf$referral_date, rf$referral_id), ]
    inp <- rf[rf$referral_date >= ts & rf$referral_date <= te, ]
    if (!nrow(inp)) next
    if (!fs && design$entry == "first_open") {
      op <- inp[!inp$referral_nfa & !inp$closure_reason %in% c("RC8", "RC9"), ]
      if (!nrow(op)) next
      first <- op[1, ]
    } else {
      first <- inp[1, ]
    }
    r <- first$referral_date
    unborn <- (is.na(c1$dob) && !is.na(c1$expected_dob)) || (!is.na(c1$dob) && c1$dob > r)
    if (unborn) age <- 0 else if (is.na(c1$dob)) next else age <- r_age(c1$dob, r)
    if (age < design$age_range[1] || age > design$age_range[2]) next
    if (!fs && (first$referral_nfa || first$closure_reason %in% c("RC8", "RC9"))) next
    gl <- las$go_live_date[match(c1$la_code, las$la_code)]
    if (treatment == "embedding") {
      es <- las$embed_start[match(c1$la_code, las$la_code)]
      ee <- las$embed_end[match(c1$la_code, las$la_code)]
      if (r >= es && r <= ee && r < gl) next
    }
    treated <- as.integer(!is.na(gl) && r >= gl)
    if (treatment == "alt_go_live") treated <- as.integer(r >= las$alt_go_live_date[match(c1$la_code, las$la_code)])
    if (treatment %in% c("open_days_half", "open_days_28")) {
      total <- under <- 0
      days <- numeric()
      for (j in seq_len(nrow(rf))) {
        s <- max(rf$referral_date[j], ts)
        e <- min(if (is.na(rf$closure_date[j])) te else rf$closure_date[j], te)
        if (e >= s) days <- c(days, as.numeric(seq(s, e, by = "day")))
      }
      days <- unique(days)
      total <- length(days)
      under <- if (is.na(gl)) 0 else sum(days >= as.numeric(gl))
      treated <- if (treatment == "open_days_28") as.integer(under >= 28) else
        if (total == 0) treated else as.integer(2 * under >= total)
    }
    cpp <- get(cpp_by, id, x$cp_plans)
    cpp <- cpp[order(cpp$start), ]
    cin <- get(cin_by, id, x$cin_plans)
    ep <- get(ep_by, id, x$cla_episodes)
    if (design$short_breaks == "exclude") ep <- ep[!ep$ls %in% c("V3", "V4"), ]
    ep <- ep[order(ep$decom), ]
    row <- list(child_id = id, referral_date = r, age = as.integer(age), treated = treated)
    if (!outcomes && treatment != "care_entry") {
      out[[id]] <- row
      next
    }
    W <- function(m) r_add_months(r, m)
    obs <- function(end) end <= data_end
    cla_W <- W(w[["cla"]])
    # care: the first new period of care starting in [r, r + 18 months]
    ps <- which(r_new_period(ep) & ep$decom >= r & ep$decom <= cla_W)[1]
    if (treatment == "care_entry") {
      treated <- if (is.na(ps)) NA_integer_ else as.integer(!is.na(gl) && ep$decom[ps] >= gl)
      row$treated <- treated
    }
    if (!outcomes) {
      out[[id]] <- row
      next
    }
    cla <- if (identical(design$cla_definition, "entered")) {
      as.integer(!is.na(ps))
    } else {
      as.integer(any(ep$decom <= cla_W & (is.na(ep$dec) | ep$dec >= r)))
    }
    row$cla_18m <- if (obs(cla_W)) cla else NA_integer_
    if (fs) {
      W6 <- W(w[["cpp_start"]])
      k <- which(cpp$start >= r & cpp$start <= W6)[1]
      if (!obs(W6)) {
        row$cpp_duration <- NA_integer_
        row$cpp_duration_observable <- FALSE
      } else if (is.na(k)) {
        row$cpp_duration <- NA_integer_
        row$cpp_duration_observable <- NA
      } else {
        cap <- r_add_months(cpp$start[k], w[["cpp_duration_cap"]])
        e <- if (is.na(cpp$end[k])) cap else min(cpp$end[k], cap)
        row$cpp_duration <- if (obs(cap)) as.integer(max(0, e - cpp$start[k])) else NA_integer_
        row$cpp_duration_observable <- obs(cap)
      }
      Wd <- W(w[["days_cpp"]])
      row$days_cpp_18m <- if (obs(Wd)) as.integer(r_days(cpp$start, cpp$end, r, Wd)) else NA_integer_
      a <- get(as_by, first$referral_id, x$assessments)
      a <- a[order(a$assessment_start, a$assessment_id), ]
      tt <- nrow(a) > 0 && any(get(fa_by, a$assessment_id[1], x$assessment_factors)$factor %in%
                                 design$codes$toxic_trio)
      Wr <- W(w[["rereferral"]])
      rr <- as.integer(any(rf$referral_date > r & rf$referral_date <= Wr))
      row$rereferral_18m <- if (tt && obs(Wr)) rr else NA_integer_
    } else {
      W36 <- W(w[["return"]])
      pl <- rbind(cpp[c("start", "end")], cin[c("start", "end")])
      ret <- 0L
      if (nrow(pl)) {
        span <- seq(min(pl$start, r) - 1, W36 + 1, by = "day")
        covered <- numeric()
        for (j in seq_len(nrow(pl))) {
          e <- if (is.na(pl$end[j])) W36 + 2 else pl$end[j]
          if (e > pl$start[j]) covered <- c(covered, as.numeric(seq(pl$start[j], e - 1, by = "day")))
        }
        on <- as.numeric(span) %in% covered
        E <- span[which(!on & c(FALSE, head(on, -1)) & span >= r & span <= W36)[1]]
        if (!is.na(E)) {
          ret <- as.integer(any(on[span >= E & span <= W36]) ||
                              any(ep$decom >= E & ep$decom <= W36))
        }
      }
      row$return_36m <- if (obs(W36)) ret else NA_integer_
      W12 <- W(w[["cpp"]])
      row$cpp_12m <- if (obs(W12)) as.integer(any(cpp$start >= r & cpp$start <= W12)) else NA_integer_
      Wd <- W(w[["days_plan"]])
      row$days_plan_18m <- if (obs(Wd)) as.integer(r_days(pl$start, pl$end, r, Wd)) else NA_integer_
      row$kinship_first <- if (!obs(cla_W) || is.na(ps)) NA_integer_ else
        as.integer(ep$place[ps] %in% c("U1", "U2", "U3"))
    }
    out[[id]] <- row
  }
  do.call(rbind, lapply(out, as.data.frame, stringsAsFactors = FALSE))
}

# An episode starts a new period of care when its reason for new episode is
# S or no earlier episode (sorted by start) is still open on its start day.
r_new_period <- function(ep) {
  vapply(seq_len(nrow(ep)), function(j) {
    if (ep$rne[j] == "S" || j == 1L) return(TRUE)
    prev <- ep[seq_len(j - 1L), ]
    !any(is.na(prev$dec) | prev$dec >= ep$decom[j])
  }, TRUE)
}

# Reunification population: one row per child whose (first) new period of
# care starts in the trial period, LA in the trial, aged 0-17 then.
r_care_cohort <- function(x, design, treatment, data_end) {
  las <- design$las
  w <- design$windows
  out <- list()
  for (id in sort(x$children$child_id)) {
    c1 <- x$children[x$children$child_id == id, ]
    ep <- x$cla_episodes[x$cla_episodes$child_id == id, ]
    if (design$short_breaks == "exclude") ep <- ep[!ep$ls %in% c("V3", "V4"), ]
    ep <- ep[order(ep$decom), ]
    k <- which(r_new_period(ep) & ep$decom >= design$trial_start & ep$decom <= design$trial_end)[1]
    if (is.na(k) || !c1$la_code %in% las$la_code || is.na(c1$dob)) next
    P <- ep$decom[k]
    age <- max(0, r_age(c1$dob, P))
    if (age > design$age_range[2]) next
    m <- match(c1$la_code, las$la_code)
    gl <- if (treatment == "alt_go_live") las$alt_go_live_date[m] else las$go_live_date[m]
    if (treatment == "embedding" && P >= las$embed_start[m] && P <= las$embed_end[m] && P < gl) next
    WR <- r_add_months(P, w[["reunification"]])
    reun <- NA_integer_
    if (r_add_months(c1$dob, 216) > WR && WR <= data_end) {
      ends <- which(seq_len(nrow(ep)) >= k & !is.na(ep$dec) & !is.na(ep$rec) & ep$rec != "X1")
      pe <- ends[1]
      reun <- as.integer(!is.na(pe) && ep$dec[pe] <= WR && ep$rec[pe] %in% design$codes$reunification)
    }
    out[[id]] <- list(child_id = id, care_start = P, age = as.integer(age),
                      treated = as.integer(P >= gl), reunified_18m = reun)
  }
  do.call(rbind, lapply(out, as.data.frame, stringsAsFactors = FALSE))
}

r_absence <- function(x, cohort) {
  starts <- do.call(rbind, lapply(2016:2024, function(y) data.frame(
    y = y, term = c("autumn", "spring", "summer"),
    start = c(as.Date(sprintf("%d-09-01", y)), as.Date(sprintf("%d-01-01", y + 1)),
              as.Date(r_easter[[as.character(y + 1)]]) + 1))))
  ab <- x$absence
  ab$term[ab$term == "summer6th"] <- "summer"
  ab$y <- as.integer(substr(ab$academic_year, 1, 4))
  out <- list()
  for (i in seq_len(nrow(cohort))) {
    nx <- starts[starts$start > cohort$referral_date[i], ]
    nx <- nx[order(nx$start), ][1:3, ]
    for (t in 1:3) {
      recs <- ab[ab$child_id == cohort$child_id[i] & ab$y == nx$y[t] & ab$term == nx$term[t], ]
      if (!nrow(recs)) next
      out[[length(out) + 1]] <- data.frame(
        child_id = cohort$child_id[i], term_index = t, term = nx$term[t],
        term_start = nx$start[t], sessions_possible = sum(recs$sessions_possible),
        unauth_sessions = sum(recs$unauth_sessions), stringsAsFactors = FALSE)
    }
  }
  do.call(rbind, out)
}

compare_with_reference <- function(programme, treatment = "referral_date", design_args = list(),
                                   outcomes = TRUE, x = NULL, data_end = as.Date("2023-12-31")) {
  if (is.null(x)) {
    x <- gen_records(n = if (programme == "FS") 180 else 250, seed = if (programme == "FS") 11 else 12)
    d <- do.call(quiet_data, c(x, list(rollout = gen_rollout(programme))))
  } else {
    d <- x
    x <- unclass(x)
  }
  design <- do.call(if (programme == "FS") design_family_safeguarding else design_family_valued,
                    c(list(d, data_end = data_end), design_args))
  co <- suppressMessages(build_cohort(d, design, treatment = treatment))
  ref <- r_cohort(x, design, treatment, data_end, outcomes)
  expect_flow_adds_up(co)
  cohort <- co
  co <- co[order(co$child_id), ]
  expect_equal(co$child_id, ref$child_id)
  expect_equal(co$referral_date, ref$referral_date)
  expect_equal(co$age, ref$age)
  expect_equal(co$treated, ref$treated)
  outs <- if (outcomes) setdiff(design$outcomes, c("absence", "reunified_18m")) else character()
  for (o in outs) expect_equal(co[[o]], ref[[o]], info = o)
  if (programme == "FS" && outcomes) {
    expect_equal(co$cpp_duration_observable, ref$cpp_duration_observable)
  }
  if (programme == "FV" && treatment %in% c("referral_date", "alt_go_live", "embedding")) {
    cr <- suppressMessages(build_cohort(d, design, treatment = treatment,
                                        outcomes = "reunified_18m"))
    expect_flow_adds_up(cr)
    cr <- cr[order(cr$child_id), ]
    rr <- r_care_cohort(x, design, treatment, data_end)
    expect_equal(cr$child_id, rr$child_id)
    expect_equal(cr$care_start, rr$care_start)
    expect_equal(cr$age, rr$age)
    expect_equal(cr$treated, rr$treated)
    expect_equal(cr$reunified_18m, rr$reunified_18m)
  }
  list(cohort = cohort, data = x)
}

test_that("Family Safeguarding cohort matches the plain-R reference on generated records", {
  res <- compare_with_reference("FS")
  co <- res$cohort
  expect_gt(nrow(co), 50)
  # every outcome has both values among the analysed children
  for (o in c("cla_18m", "rereferral_18m")) expect_setequal(na.omit(co[[o]]), 0:1)
  expect_gt(sum(!is.na(co$cpp_duration)), 5)
  p <- absence_panel(co)
  rp <- r_absence(res$data, co)
  p <- p[order(p$child_id, p$term_index), ]
  rp <- rp[order(rp$child_id, rp$term_index), ]
  expect_equal(p$child_id, rp$child_id)
  expect_equal(p$term_start, rp$term_start)
  expect_equal(p$term, rp$term)
  expect_equal(p$sessions_possible, rp$sessions_possible)
  expect_equal(p$unauth_sessions, rp$unauth_sessions)
  compare_with_reference("FS", treatment = "open_days_28", outcomes = FALSE)
  compare_with_reference("FS", design_args = list(toxic_trio = "broad", short_breaks = "include",
                                                  cla_definition = "entered"))
})

test_that("Family Valued cohort matches the plain-R reference on generated records", {
  co <- compare_with_reference("FV")$cohort
  expect_gt(nrow(co), 50)
  for (o in c("cla_18m", "return_36m", "cpp_12m", "kinship_first"))
    expect_equal(sort(unique(c(na.omit(co[[o]])))), 0:1, info = o)
  for (tr in c("care_entry", "alt_go_live", "embedding"))
    compare_with_reference("FV", treatment = tr, outcomes = FALSE)
  compare_with_reference("FV", design_args = list(entry = "first_open",
                                                  reunification = "sensitivity"))
})

test_that("simulated records (simulate_sfp): C matches the plain-R reference, the flow adds up", {
  fv <- suppressWarnings(simulate_sfp("family_valued", children_per_la_year = 40, seed = 5))
  end_fv <- as.Date(attr(fv, "truth")$period$end)
  res <- compare_with_reference("FV", x = fv, data_end = end_fv)
  co <- res$cohort
  expect_gt(nrow(co), 200)
  rp <- r_absence(res$data, co)
  p <- absence_panel(co)
  p <- p[order(p$child_id, p$term_index), ]
  rp <- rp[order(rp$child_id, rp$term_index), ]
  expect_equal(p[c("child_id", "term_index", "term", "term_start", "sessions_possible",
                   "unauth_sessions")],
               rp[c("child_id", "term_index", "term", "term_start", "sessions_possible",
                    "unauth_sessions")], ignore_attr = TRUE)
  compare_with_reference("FV", x = fv, data_end = end_fv, treatment = "open_days_half",
                         outcomes = FALSE)
  fs <- suppressWarnings(simulate_sfp("family_safeguarding", n_la = 6, children_per_la_year = 25,
                                      seed = 5))
  end_fs <- as.Date(attr(fs, "truth")$period$end)
  co_fs <- suppressMessages(build_cohort(fs, design_family_safeguarding(fs, data_end = end_fs)))
  expect_flow_adds_up(co_fs)
  expect_gt(nrow(co_fs), 200)
  # every LA of the records is in the Family Safeguarding cohort (candidate
  # comparators included), and only the treated LAs have treated children
  expect_setequal(unique(co_fs$la), unique(fs$children$la_code))
  treated_las <- fs$rollout$la_code[fs$rollout$role == "treated"]
  expect_true(all(co_fs$la[co_fs$treated == 1L] %in% treated_las))
  # outcome windows past the end of the data are never coded 0
  late <- co_fs$referral_date > seq(end_fs, by = "-18 months", length.out = 2)[2]
  expect_true(any(late))
  expect_true(all(is.na(co_fs$cla_18m[late])))
  expect_true(all(co_fs$cla_18m_observable[late] %in% FALSE))
})

test_that("a trial period ending on the last day of a step has all its steps", {
  # FV: 2019-10-01 .. 2022-09-30 inclusive is six six-month steps (0-5); a
  # referral on 2022-04-01 or on the last day is in step 5, not merged into 4.
  ro <- fv_rollout
  ro$trial_start <- as.Date("2019-10-01")
  ro$trial_end <- as.Date("2022-09-30")
  ch <- kids(c("a", "b", "c", "d"), la = "301")
  rf <- refs(c("a", "b", "c", "d"), c("2019-10-01", "2022-03-31", "2022-04-01", "2022-09-30"),
             referral_nfa = FALSE)
  d <- quiet_data(children = ch, referrals = rf, rollout = ro)
  des <- design_family_valued(d, data_end = as.Date("2025-12-31"))
  co <- suppressMessages(build_cohort(d, des, outcomes = character()))
  expect_equal(val(co, "step"), c(a = 0L, b = 4L, c = 5L, d = 5L))
})

test_that("covariates as written: CIN ethnicity, FSM ever, academic year, MARAC re-referrals", {
  # Ethnicity "In the categories defined in the DfE's CIN census" (FS fn 27,
  # FV fn 10): a keeps WIRI; b is REFU then BAFR -> BAFR; c WBRI then MWBC
  # conflicts -> missing. FSM: "ever been recorded as eligible ... up to the
  # pupil's current year" (fsm_ever) for the regression, ever-6 for CEM.
  ch <- data.frame(child_id = c("a", "b", "b", "c", "c"), la_code = "101",
                   dob = as.Date("2012-01-01"), gender_raw = "1",
                   ethnicity = c("WIRI", "REFU", "BAFR", "WBRI", "MWBC"),
                   fsm_ever6 = c(FALSE, FALSE, FALSE, NA, NA),
                   fsm_ever = c(TRUE, FALSE, FALSE, NA, NA),
                   recorded_date = as.Date(c("2019-01-31", "2018-01-31", "2019-01-31",
                                             "2018-01-31", "2019-01-31")),
                   stringsAsFactors = FALSE)
  # FS footnote 18: a re-referral "does not include cases that lead directly
  # to a MARAC": a's only later referral (2019-06-01) is a MARAC one, so 0;
  # b's later referral is an ordinary one, so 1.
  rf <- rbind(refs(c("a", "b", "c"), c("2019-08-31", "2019-09-01", "2019-03-01"), marac = FALSE),
              refs(c("a", "b"), "2020-06-01", rid = c("a2", "b2"), marac = c(TRUE, FALSE)))
  as <- data.frame(assessment_id = c("A1", "B1"), referral_id = c("r_a", "r_b"),
                   assessment_start = as.Date(c("2019-09-01", "2019-09-02")),
                   assessment_end = as.Date(c("2019-09-10", "2019-09-12")))
  fa <- data.frame(assessment_id = c("A1", "B1"), factor = "1B")
  co <- fs_build(children = ch, referrals = rf, assessments = as, assessment_factors = fa,
                 outcomes = "rereferral_18m", design_args = list(max_missing = 1))
  expect_equal(as.character(val(co, "ethnicity_cin")), c("WIRI", "BAFR", NA))
  expect_equal(as.character(val(co, "ethnic_group")), c("White", "Black", "Missing"))
  expect_equal(val(co, "fsm_ever"), c(a = 1L, b = 0L, c = NA))
  expect_equal(val(co, "fsm"), c(a = 0L, b = 0L, c = NA))
  expect_equal(val(co, "rereferral_18m"), c(a = 0L, b = 1L, c = NA))
  # the academic year runs September-August: a (31 August) is 2018/19
  expect_equal(val(co, "academic_year"), c(a = "2018/19", b = "2019/20", c = "2018/19"))
  des <- attr(co, "design")
  expect_true(all(c("ethnicity_cin", "fsm_ever") %in% des$covariates))
  expect_true("ethnic_group" %in% design_family_safeguarding(fs_rollout, ethnicity = "major")$covariates)
})

test_that("one data end per source: each outcome is observable by its own source", {
  # CIN census to 2021-12-31, SSDA903 to 2020-12-31. a (referred 2019-03-01):
  # both 18-month windows end 2020-09-01, observable. b (2019-08-01): the
  # windows end 2021-02-01, after the 903 end (cla_18m not yet observable)
  # but before the CIN end (days_cpp_18m observable).
  ch <- kids(c("a", "b"))
  rf <- refs(c("a", "b"), c("2019-03-01", "2019-08-01"))
  d <- quiet_data(children = ch, referrals = rf, cla_episodes = eps("a", "2019-04-01"),
                  cp_plans = plans("r_b", "2019-09-01", "2019-10-01"), rollout = fs_rollout)
  des <- design_family_safeguarding(d, data_end = c(cin = as.Date("2021-12-31"),
                                                    ssda903 = as.Date("2020-12-31")))
  co <- suppressMessages(build_cohort(d, des, outcomes = c("cla_18m", "days_cpp_18m")))
  expect_equal(val(co, "cla_18m_observable"), c(a = TRUE, b = FALSE))
  expect_equal(val(co, "days_cpp_18m"), c(a = 0L, b = 30L))
  expect_equal(attr(co, "data_ends"),
               c(cin = as.Date("2021-12-31"), ssda903 = as.Date("2020-12-31"),
                 npd = as.Date("2021-12-31")))
  expect_error(design_family_safeguarding(d, data_end = c(census = as.Date("2021-12-31"))),
               "one date per source")
})

test_that("LA shares come from the sample when none are supplied", {
  # "Proportion of children / young people eligible for Free School Meals
  # (continuous variable based on all children in our sample)", using "the
  # most recently available measurement that took place prior to the
  # referral date": the shares of each LA's children referred in a quarter
  # are known from the next quarter on. 2019Q1: a (FSM, WBRI), b (no, BAFR)
  # -> 0.5, 0.5 from 2019-04-01; 2019Q3: c (FSM, WBRI), d (unknown, REFU)
  # -> 1, 1 from 2019-10-01. a, b (before the first value) take the next;
  # c, d (July) the 2019-04-01 one; e (November) the 2019-10-01 one.
  ch <- kids(c("a", "b", "c", "d", "e"), fsm_ever = c(TRUE, FALSE, TRUE, NA, FALSE))
  ch$ethnicity <- c("WBRI", "BAFR", "WBRI", "REFU", "WOTH")
  rf <- refs(ch$child_id, c("2019-01-15", "2019-03-01", "2019-07-01", "2019-08-01", "2019-11-01"))
  co <- fs_build(children = ch, referrals = rf, cla_episodes = eps("a", "2010-01-01", "2010-02-01"),
                 outcomes = "cla_18m", design_args = list(max_missing = 1))
  expect_equal(val(co, "prop_fsm"), c(a = 0.5, b = 0.5, c = 0.5, d = 0.5, e = 1))
  expect_equal(val(co, "prop_white_british"), c(a = 0.5, b = 0.5, c = 0.5, d = 0.5, e = 1))
  expect_setequal(attr(co, "la_shares_from_sample"), c("prop_fsm", "prop_white_british"))
})

test_that("FS footnote 7 sensitivity: referrals in the 18 months before go-live left out", {
  # "excluding cases that entered the sample population in the final 18
  # months prior to implementation" (FS fn 7). 101 goes live 2020-01-01: the
  # window is 2018-07-01 .. 2019-12-31. a (2018-06-30) stays, b (2018-07-01)
  # and c (2019-12-31) go, d (on go-live day) stays; comparator 201 is
  # matched to 101, so e (2019-01-01) goes and f (2018-01-01) stays.
  ro <- fs_rollout
  ro$matched_to_la <- c(NA, "101")
  ro$outcome <- c(NA, "cla_18m")
  ch <- kids(c("a", "b", "c", "d", "e", "f"), la = c("101", "101", "101", "101", "201", "201"))
  rf <- refs(ch$child_id, c("2018-06-30", "2018-07-01", "2019-12-31", "2020-01-01",
                            "2019-01-01", "2018-01-01"))
  d <- quiet_data(children = ch, referrals = rf, rollout = ro)
  des <- design_family_safeguarding(d, data_end = as.Date("2023-12-31"), pre_go_live_exclusion = 18)
  co <- suppressMessages(build_cohort(d, des, outcomes = character()))
  expect_equal(co$child_id, c("a", "d", "f"))
  f <- exclusion_flow(co, stage = "population", by = "total")
  expect_equal(f$n[f$step == "referred in the months before go-live"], 3L)
  expect_equal(nrow(suppressMessages(build_cohort(d, design_family_safeguarding(d),
                                                  outcomes = character()))), 6L)
})
