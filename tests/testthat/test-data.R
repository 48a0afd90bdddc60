# Tests of sfp_data(): the input schema validator, its print()/summary() and
# fin_year().

# A tiny hand-made data set that is valid with no soft problems: 3 children
# in 2 local authorities with a few records in every table. The counts of the
# summary tests below are read off these rows by hand.
tiny_sfp <- function() {
  list(
    children = data.frame(
      child_id = c("C1", "C2", "C3"),
      la_code = c("L01", "L01", "L02"),
      dob = as.Date(c("2010-06-15", "2015-01-20", "2008-11-02")),
      gender_raw = c("1", "2", "M"),
      ethnicity = c("WBRI", "BAFR", "APKN"),
      disability = c("NONE", "MOB;LD", NA),
      uasc = c(FALSE, FALSE, TRUE),
      stringsAsFactors = FALSE
    ),
    referrals = data.frame(
      referral_id = c("R1", "R2", "R3", "R4"),
      child_id = c("C1", "C1", "C2", "C3"),
      # fin years: 2019/20, 2020/21, 2020/21 (1 April), 2019/20 (31 March)
      referral_date = as.Date(c("2019-05-10", "2021-02-01", "2020-04-01",
                                "2020-03-31")),
      closure_date = as.Date(c("2019-09-01", "2021-08-15", "2020-12-31",
                               "2021-04-30")),
      primary_need = c("N1", "N4", "N2", "N1"),
      referral_source = c("1A", "5B", "10", "4"),
      closure_reason = c("RC8", "RC7", "RC9", "RC5"),
      referral_nfa = c(FALSE, FALSE, FALSE, FALSE),
      stringsAsFactors = FALSE
    ),
    assessments = data.frame(
      assessment_id = c("A1", "A2", "A3"),
      referral_id = c("R1", "R3", "R4"),
      assessment_start = as.Date(c("2019-05-12", "2020-04-03", "2020-04-01")),
      assessment_end = as.Date(c("2019-06-20", "2020-05-15", "2020-05-01")),
      stringsAsFactors = FALSE
    ),
    assessment_factors = data.frame(
      assessment_id = c("A1", "A1", "A2", "A3"),
      factor = c("1B", "3A", "4B", "2B"),
      stringsAsFactors = FALSE
    ),
    cin_plans = data.frame(
      referral_id = c("R3", "R4"),
      start = as.Date(c("2020-05-20", "2020-05-02")),  # both 2020/21
      end = as.Date(c("2020-12-31", "2021-03-31")),
      stringsAsFactors = FALSE
    ),
    cp_plans = data.frame(
      referral_id = c("R1", "R4"),
      start = as.Date(c("2019-06-25", "2021-04-01")),  # 2019/20, 2021/22
      end = as.Date(c("2019-08-30", "2021-04-30")),
      initial_category = c("NEG", "EMO"),
      latest_category = c("NEG", "MUL"),
      n_previous_cpp = c(0L, 1L),
      stringsAsFactors = FALSE
    ),
    cla_episodes = data.frame(
      child_id = c("C3", "C3", "C1"),
      # care entries (rne S): C3 2021-04-30 (2021/22), C1 2021-03-15 (2020/21)
      decom = as.Date(c("2021-04-30", "2021-06-01", "2021-03-15")),
      dec = as.Date(c("2021-06-01", "2022-01-10", "2021-05-01")),
      rne = c("S", "P", "S"),
      ls = c("C2", "C1", "V2"),
      cin = c("N1", "N1", "N4"),
      place = c("U1", "U4", "P1"),
      place_provider = c("PR1", "PR1", "PR0"),
      rec = c("X1", "E4A", "E13"),
      stringsAsFactors = FALSE
    ),
    absence = data.frame(
      child_id = c("C1", "C1", "C2", "C3", "C3", "C3"),
      academic_year = c("2020/21", "2020/21", "2020/21", "2021/22", "2021/22",
                        "2021/22"),
      term = c("autumn", "spring", "autumn", "autumn", "spring", "summer"),
      sessions_possible = c(150L, 120L, 140L, 150L, 110L, 0L),
      unauth_sessions = c(5L, 0L, 10L, 30L, 110L, 0L),  # 110 of 110: allowed
      stringsAsFactors = FALSE
    ),
    la_covariates = data.frame(
      la_code = c("L01", "L01", "L02", "L02"),
      month = as.Date(c("2020-04-01", "2020-05-01", "2020-04-01", "2020-05-01")),
      prop_fsm = c(0.2, 0.21, 0, 1),  # the bounds 0 and 1 are allowed
      prop_white_british = c(0.8, 0.8, 0.5, 0.5),
      other_innovation_programme = c(FALSE, FALSE, TRUE, TRUE),
      stringsAsFactors = FALSE
    ),
    rollout = data.frame(
      la_code = c("L01", "L02"),
      programme = c("FV", "FV"),
      role = c("treated", "treated"),
      go_live_date = as.Date(c("2020-10-01", "2021-04-01")),
      wedge_order = c(1L, 2L),
      stratum = c("high", "low"),
      trial_start = as.Date(c("2020-04-01", "2020-04-01")),
      trial_end = as.Date(c("2021-10-01", "2021-10-01")),
      stringsAsFactors = FALSE
    )
  )
}

# sfp_data() on tiny_sfp() with some tables replaced.
tiny <- function(..., warn = TRUE) {
  tabs <- tiny_sfp()
  repl <- list(...)
  for (nm in names(repl)) tabs[nm] <- list(repl[[nm]])
  do.call(sfp_data, c(tabs, list(warn = warn)))
}

# ---------------------------------------------------------------------------
# A valid data set

test_that("the tiny data set validates cleanly and keeps its shape", {
  tabs <- tiny_sfp()
  expect_no_warning(x <- do.call(sfp_data, tabs))
  expect_s3_class(x, "sfp_data")
  expect_identical(names(x), sfp_tables())
  expect_identical(names(x), c("children", "referrals", "assessments",
                               "assessment_factors", "cin_plans", "cp_plans",
                               "cla_episodes", "absence", "la_covariates",
                               "rollout"))
  # nothing dropped, columns in the order given
  for (nm in names(tabs)) {
    expect_identical(dim(x[[nm]]), dim(tabs[[nm]]))
    expect_identical(names(x[[nm]]), names(tabs[[nm]]))
  }
  # the only conversion is the ";"-separated disability column
  conv <- attr(x, "conversions")
  expect_identical(conv$table, "children")
  expect_identical(conv$column, "disability")
  expect_identical(conv$n, 2L)
  expect_identical(x$children$disability,
                   list("NONE", c("MOB", "LD"), NA_character_))
  expect_identical(nrow(attr(x, "problems")), 0L)
  # Date columns stay identical
  expect_identical(x$referrals$referral_date, tabs$referrals$referral_date)
  expect_snapshot(print(x))
})

test_that("summary counts match the hand counts of tiny_sfp()", {
  x <- do.call(sfp_data, tiny_sfp())
  s <- summary(x)
  expect_s3_class(s, "summary.sfp_data")
  expect_equal(s$counts$rows, c(3L, 4L, 3L, 4L, 2L, 2L, 3L, 6L, 4L, 2L))
  expect_equal(s$counts$columns, c(7L, 8L, 4L, 2L, 3L, 6L, 9L, 5L, 5L, 8L))
  # L01: children C1, C2; referrals R1-R3; assessments A1 (R1), A2 (R3);
  # CIN plan of R3; CPP of R1; episode of C1; absence rows of C1 (2), C2 (1).
  # L02: child C3 with R4, A3, a CIN plan, a CPP, 2 episodes, 3 absence rows.
  expect_equal(s$per_la, data.frame(
    la_code = c("L01", "L02"), children = c(2L, 1L), referrals = c(3L, 1L),
    assessments = c(2L, 1L), cin_plans = c(1L, 1L), cp_plans = c(1L, 1L),
    cla_episodes = c(1L, 2L), absence = c(3L, 3L)
  ))
  # Financial years: referrals 2019/20 x2 (10 May 2019, 31 Mar 2020), 2020/21
  # x2 (1 Apr 2020, 1 Feb 2021); CIN plans both May 2020; CPPs June 2019 and
  # 1 April 2021; care entries (rne S) 15 Mar 2021 and 30 Apr 2021.
  expect_equal(s$per_year, data.frame(
    year = c("2019/20", "2020/21", "2021/22"),
    referrals = c(2L, 2L, 0L), cin_plan_starts = c(0L, 2L, 0L),
    cpp_starts = c(1L, 0L, 1L), care_entries = c(0L, 1L, 1L)
  ))
  dr <- s$date_ranges
  expect_equal(dr$first[dr$table == "referrals" & dr$column == "referral_date"],
               as.Date("2019-05-10"))
  expect_equal(dr$last[dr$table == "referrals" & dr$column == "referral_date"],
               as.Date("2021-02-01"))
  expect_equal(dr$missing, rep(0L, nrow(dr)))
  expect_snapshot(print(s))
})

test_that("summary works without children and per LA follows the latest return", {
  tabs <- tiny_sfp()
  s <- summary(sfp_data(referrals = tabs$referrals))
  expect_null(s$per_la)
  expect_equal(s$per_year$referrals, c(2L, 2L))
  expect_true(all(is.na(s$per_year$care_entries)))
  # C1 moved from L02 to L01: counted once, in its latest LA
  ch <- rbind(tabs$children[1, ], tabs$children)
  ch$la_code[1] <- "L02"
  ch$recorded_date <- as.Date(c("2019-03-31", "2020-03-31", "2020-03-31",
                                "2020-03-31"))
  s <- summary(sfp_data(children = ch, referrals = tabs$referrals))
  expect_equal(s$per_la$children, c(2L, 1L))
  expect_equal(s$per_la$referrals, c(3L, 1L))
  expect_true(all(is.na(s$per_la$cla_episodes)))
  # one local authority (one cluster): every record in one row
  tabs$children$la_code <- "L01"
  expect_warning(x <- do.call(sfp_data, tabs), "no children in `children`")
  s <- summary(x)
  expect_equal(s$per_la$la_code, "L01")
  expect_equal(unlist(s$per_la[-1], use.names = FALSE),
               c(3L, 4L, 3L, 2L, 2L, 3L, 6L))
})

test_that("NULL tables and zero-row tables are accepted", {
  x <- sfp_data()
  expect_s3_class(x, "sfp_data")
  expect_true(all(vapply(x, is.null, TRUE)))
  expect_length(x, 10L)
  expect_snapshot(print(x))
  expect_snapshot(print(summary(x)))
  tabs <- tiny_sfp()
  empty <- lapply(tabs, function(t) t[0, , drop = FALSE])
  expect_no_warning(y <- do.call(sfp_data, empty))
  expect_equal(summary(y)$counts$rows, rep(0L, 10L))
  expect_equal(nrow(summary(y)$per_year), 0L)
  expect_length(y$children$disability, 0L)
})

# ---------------------------------------------------------------------------
# Conversions

test_that("ISO and dd/mm/YYYY strings convert to the same Date", {
  tabs <- tiny_sfp()
  iso <- tabs$referrals
  iso$referral_date <- format(iso$referral_date, "%Y-%m-%d")
  dmy <- tabs$referrals
  dmy$referral_date <- format(dmy$referral_date, "%d/%m/%Y")
  a <- sfp_data(referrals = iso)
  b <- sfp_data(referrals = dmy)
  expect_identical(a$referrals$referral_date, tabs$referrals$referral_date)
  expect_identical(b$referrals$referral_date, tabs$referrals$referral_date)
  expect_equal(attr(b, "conversions")$conversion, "dd/mm/YYYY string -> Date")
  expect_equal(attr(b, "conversions")$n, 4L)
  # mixed forms, blanks and NA in one column
  mixed <- tabs$referrals
  mixed$closure_date <- c("2019-09-01", "15/08/2021", "", NA)
  expect_warning(m <- sfp_data(referrals = mixed), "no closure_date")
  expect_identical(m$referrals$closure_date,
                   as.Date(c("2019-09-01", "2021-08-15", NA, NA)))
  conv <- attr(m, "conversions")
  expect_equal(conv$n[conv$column == "closure_date"], c(1L, 1L, 1L))
  # factor dates and date-times
  f <- tabs$referrals
  f$referral_date <- factor(format(f$referral_date))
  expect_identical(sfp_data(referrals = f)$referrals$referral_date,
                   tabs$referrals$referral_date)
  p <- tabs$referrals
  p$referral_date <- as.POSIXct(format(p$referral_date), tz = "Europe/London")
  expect_identical(sfp_data(referrals = p)$referrals$referral_date,
                   tabs$referrals$referral_date)
})

test_that("logicals, counts, codes and factors are converted and recorded", {
  tabs <- tiny_sfp()
  ch <- tabs$children
  ch$uasc <- c("true", "FALSE", "1")
  ch$fsm_ever6 <- c(1, 0, NA)
  ch$fsm_ever <- c("0", " True ", "")
  ch$ethnicity <- factor(c("wbri", " BAFR", "APKN"))
  ch$gender_raw <- c(1, 2, NA)  # 903 SEX as numbers
  x <- sfp_data(children = ch)
  expect_identical(x$children$uasc, c(TRUE, FALSE, TRUE))
  expect_identical(x$children$fsm_ever6, c(TRUE, FALSE, NA))
  expect_identical(x$children$fsm_ever, c(FALSE, TRUE, NA))
  expect_identical(x$children$ethnicity, c("WBRI", "BAFR", "APKN"))
  expect_identical(x$children$gender_raw, c("1", "2", NA))
  conv <- attr(x, "conversions")
  expect_equal(conv$n[conv$column == "ethnicity"], c(3L, 2L))
  expect_snapshot(attr(x, "conversions"))

  cp <- tabs$cp_plans
  cp$n_previous_cpp <- c(0, 3)  # whole doubles
  y <- sfp_data(cp_plans = cp)
  expect_identical(y$cp_plans$n_previous_cpp, c(0L, 3L))
  ab <- tabs$absence
  ab$sessions_possible <- as.double(ab$sessions_possible)
  ab$unauth_sessions <- as.character(ab$unauth_sessions)
  z <- sfp_data(absence = ab)
  expect_identical(z$absence$sessions_possible, tabs$absence$sessions_possible)
  expect_identical(z$absence$unauth_sessions, tabs$absence$unauth_sessions)
  # integer and double proportions give the same result
  lc <- tabs$la_covariates
  lc$prop_fsm <- c(0L, 1L, 0L, 1L)
  expect_identical(sfp_data(la_covariates = lc)$la_covariates$prop_fsm,
                   c(0, 1, 0, 1))
  # lower-case 903 code (the 2024-25 rule spells it k3) and lower-case term
  cl <- tabs$cla_episodes
  cl$place[2] <- "k3"
  expect_identical(sfp_data(cla_episodes = cl)$cla_episodes$place[2], "K3")
  ab <- tabs$absence
  ab$term <- c("Autumn", "Spring", "AUTUMN", "autumn", "spring", "Summer")
  expect_identical(sfp_data(absence = ab)$absence$term, tabs$absence$term)
  # ids given as whole numbers become character without scientific notation
  ref <- tabs$referrals
  ref$referral_id <- c(1e6, 2, 3, 4)
  expect_identical(sfp_data(referrals = ref)$referrals$referral_id,
                   c("1000000", "2", "3", "4"))
})

test_that("disability accepts lists and ';' or ',' separated codes", {
  tabs <- tiny_sfp()
  ch <- tabs$children
  ch$disability <- c("MOB, LD", "none", ";")
  x <- sfp_data(children = ch)
  expect_identical(x$children$disability,
                   list(c("MOB", "LD"), "NONE", NA_character_))
  ch$disability <- I(list(c("MOB", "ld"), NULL, factor("AUT")))
  y <- sfp_data(children = ch)
  expect_identical(y$children$disability,
                   list(c("MOB", "LD"), character(), "AUT"))
  ch$disability <- NULL
  expect_false("disability" %in% names(sfp_data(children = ch)$children))
})

test_that("rows are never reordered or dropped (unsorted input, ties)", {
  tabs <- tiny_sfp()
  set.seed(1)
  ref <- tabs$referrals[sample(4), ]
  ref$referral_date[1:2] <- as.Date("2019-05-01")  # ties
  x <- sfp_data(referrals = ref)
  expect_identical(x$referrals$referral_id, ref$referral_id)
  expect_identical(x$referrals$referral_date, ref$referral_date)
  # extra columns are kept as they are
  ref$note <- letters[1:4]
  expect_identical(sfp_data(referrals = ref)$referrals$note, letters[1:4])
})

test_that("warn = FALSE records soft problems without warning", {
  cin <- tiny_sfp()$cin_plans
  cin$end[1] <- NA
  expect_no_warning(x <- tiny(cin_plans = cin, warn = FALSE))
  p <- attr(x, "problems")
  expect_equal(p$table, "cin_plans")
  expect_equal(p$n, 1L)
  expect_snapshot(print(x))
})

# ---------------------------------------------------------------------------
# Hard errors: one snapshot per rule

test_that("a table that is not a data frame is an error", {
  expect_snapshot(sfp_data(children = list(child_id = "C1")), error = TRUE)
  expect_snapshot(sfp_data(referrals = "R1"), error = TRUE)
})

test_that("missing and repeated columns are errors", {
  ref <- tiny_sfp()$referrals
  expect_snapshot(sfp_data(referrals = ref[, -3]), error = TRUE)
  expect_snapshot(sfp_data(referrals = ref[, -(2:3)]), error = TRUE)
  r2 <- cbind(ref, ref["child_id"])
  expect_snapshot(sfp_data(referrals = r2), error = TRUE)
})

test_that("values of the wrong type are errors", {
  tabs <- tiny_sfp()
  ref <- tabs$referrals
  ref$referral_date <- as.numeric(ref$referral_date)
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ref <- tabs$referrals
  ref$closure_date <- c("2019-09-01", "31/02/2020", "2020/12/31", "1 May 2021")
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ref <- tabs$referrals
  ref$referral_nfa <- c("yes", "no", "true", NA)
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ref$referral_nfa <- c(2, 0, 1, NA)
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ref <- tabs$referrals
  ref$child_id <- c(1.5, 2, 3, 4)
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ref <- tabs$referrals
  ref$primary_need <- c(TRUE, FALSE, TRUE, NA)
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ref <- tabs$referrals
  ref$child_id <- I(as.list(ref$child_id))
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ab <- tabs$absence
  ab$sessions_possible <- c(150, 120.5, 140, Inf, 110, NaN)
  expect_snapshot(sfp_data(absence = ab), error = TRUE)
  ab <- tabs$absence
  ab$unauth_sessions <- c("5", "0", "ten", "30", "110", "0")
  expect_snapshot(sfp_data(absence = ab), error = TRUE)
  lc <- tabs$la_covariates
  lc$prop_fsm <- c("0.2", "21%", "0", "1")
  expect_snapshot(sfp_data(la_covariates = lc), error = TRUE)
  ch <- tabs$children
  ch$disability <- I(list("NONE", 1, NULL))
  expect_snapshot(sfp_data(children = ch), error = TRUE)
  ch$disability <- c(1, 2, 3)
  expect_snapshot(sfp_data(children = ch), error = TRUE)
})

test_that("missing values where none are allowed are errors", {
  ref <- tiny_sfp()$referrals
  ref$referral_date[c(2, 4)] <- NA
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  cl <- tiny_sfp()$cla_episodes
  cl$place[3] <- ""  # a blank code is missing
  expect_snapshot(sfp_data(cla_episodes = cl), error = TRUE)
})

test_that("codes outside the official lists are errors where analyses use them", {
  tabs <- tiny_sfp()
  cl <- tabs$cla_episodes
  cl$rec[2:3] <- c("E4", "E99")
  expect_snapshot(sfp_data(cla_episodes = cl), error = TRUE)
  cl <- tabs$cla_episodes
  cl$place[1] <- "Q9"  # long code list: points to sfp_codes()
  expect_snapshot(sfp_data(cla_episodes = cl), error = TRUE)
  ch <- tabs$children
  ch$disability <- c("NONE", "MOB;XYZ", NA)
  expect_snapshot(sfp_data(children = ch), error = TRUE)
  ro <- tabs$rollout
  ro$stratum[2] <- "medium"
  expect_snapshot(sfp_data(rollout = ro), error = TRUE)
  af <- tabs$assessment_factors
  af$factor[4] <- "25A"
  expect_snapshot(sfp_data(assessment_factors = af), error = TRUE)
})

test_that("repeated keys are errors", {
  tabs <- tiny_sfp()
  ref <- tabs$referrals
  ref$referral_id[4] <- "R2"
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ch <- tabs$children
  ch$child_id[3] <- "C1"
  expect_snapshot(sfp_data(children = ch), error = TRUE)
  # with recorded_date: one row per child per return is fine, two in one
  # return is not
  ch <- rbind(tabs$children, tabs$children[1, ])
  ch$recorded_date <- as.Date(c("2020-03-31", "2020-03-31", "2020-03-31",
                                "2021-03-31"))
  expect_no_warning(sfp_data(children = ch))
  ch$recorded_date[4] <- as.Date("2020-03-31")
  expect_snapshot(sfp_data(children = ch), error = TRUE)
  cl <- tabs$cla_episodes
  cl$decom[2] <- cl$decom[1]
  cl$dec[1] <- cl$decom[1]
  expect_snapshot(sfp_data(cla_episodes = cl), error = TRUE)
  # a repeated factor that is not an exact repeat of its row
  af <- tabs$assessment_factors
  af$source <- c("a", "b", "c", "d")
  af$factor[2] <- "1B"
  expect_snapshot(sfp_data(assessment_factors = af), error = TRUE)
})

test_that("foreign keys must be present when both tables are given", {
  tabs <- tiny_sfp()
  ref <- tabs$referrals
  ref$child_id[c(1, 4)] <- c("C9", "C8")
  expect_snapshot(tiny(referrals = ref), error = TRUE)
  # not checked when the parent table is not given
  expect_silent(sfp_data(referrals = ref))
  cl <- tabs$cla_episodes
  cl$child_id[3] <- "C7"
  expect_snapshot(tiny(cla_episodes = cl), error = TRUE)
  ab <- tabs$absence
  ab$child_id[6] <- "C7"
  expect_snapshot(tiny(absence = ab), error = TRUE)
  as <- tabs$assessments
  as$referral_id[2] <- "R9"
  expect_snapshot(tiny(assessments = as), error = TRUE)
  cin <- tabs$cin_plans
  cin$referral_id[1] <- "R9"
  expect_snapshot(tiny(cin_plans = cin), error = TRUE)
  cp <- tabs$cp_plans
  cp$referral_id[2] <- "R9"
  expect_snapshot(tiny(cp_plans = cp), error = TRUE)
  af <- tabs$assessment_factors
  af$assessment_id[3] <- "A9"
  expect_snapshot(tiny(assessment_factors = af), error = TRUE)
})

test_that("end dates before start dates are errors (equal dates are fine)", {
  tabs <- tiny_sfp()
  ref <- tabs$referrals
  ref$closure_date[1] <- ref$referral_date[1]
  expect_silent(sfp_data(referrals = ref))
  ref$closure_date[3] <- ref$referral_date[3] - 1
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  as <- tabs$assessments
  as$assessment_end[2] <- as.Date("2020-01-01")
  expect_snapshot(sfp_data(assessments = as), error = TRUE)
  cin <- tabs$cin_plans
  cin$end[2] <- as.Date("2020-05-01")
  expect_snapshot(sfp_data(cin_plans = cin), error = TRUE)
  cp <- tabs$cp_plans
  cp$end[1] <- as.Date("2019-06-24")
  expect_snapshot(sfp_data(cp_plans = cp), error = TRUE)
  cl <- tabs$cla_episodes
  cl$dec[3] <- as.Date("2021-03-14")
  expect_snapshot(sfp_data(cla_episodes = cl), error = TRUE)
  ro <- tabs$rollout
  ro$trial_end[1] <- as.Date("2019-01-01")
  expect_snapshot(sfp_data(rollout = ro), error = TRUE)
  ro <- tabs$rollout
  ro$embed_start <- as.Date(c("2020-06-01", "2021-01-01"))
  ro$embed_end <- as.Date(c("2020-09-01", "2020-12-31"))
  expect_snapshot(sfp_data(rollout = ro), error = TRUE)
})

test_that("dates outside the plausible range are errors", {
  tabs <- tiny_sfp()
  ch <- tabs$children
  ch$dob[2] <- as.Date("1890-02-01")
  expect_snapshot(sfp_data(children = ch), error = TRUE)
  # a dob of 1985 is plausible; a referral in 1985 is not
  ch$dob[2] <- as.Date("1985-02-01")
  expect_silent(sfp_data(children = ch))
  ref <- tabs$referrals
  ref$referral_date[2] <- as.Date("1985-02-01")
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  ref$referral_date[2] <- as.Date("2036-01-01")
  ref$closure_date[2] <- as.Date("2036-02-01")
  expect_snapshot(sfp_data(referrals = ref), error = TRUE)
  # an infinite Date is outside any range
  inf <- tabs$referrals
  inf$closure_date[1] <- .Date(Inf)
  expect_error(sfp_data(referrals = inf), "column `closure_date`: 1 row with a date outside")
  # the range is an argument
  ok <- sfp_data(referrals = ref,
                 date_range = list(dob = c("1980-01-01", "2035-12-31"),
                                   events = as.Date(c("1990-01-01", "2040-12-31"))))
  expect_identical(ok$referrals$referral_date[2], as.Date("2036-01-01"))
  expect_snapshot(sfp_data(date_range = list(dob = "1980-01-01")), error = TRUE)
  expect_snapshot(sfp_data(date_range = list(dob = c("2000-01-01", "1990-01-01"),
                                             events = c("1990-01-01", "2035-12-31"))),
                  error = TRUE)
  expect_snapshot(sfp_data(warn = NA), error = TRUE)
})

test_that("value rules: counts, absence, proportions, roll-out", {
  tabs <- tiny_sfp()
  ab <- tabs$absence
  ab$sessions_possible[2] <- -1L
  expect_snapshot(sfp_data(absence = ab), error = TRUE)
  ab <- tabs$absence
  ab$unauth_sessions[c(1, 3)] <- c(151L, 141L)
  expect_snapshot(sfp_data(absence = ab), error = TRUE)
  cp <- tabs$cp_plans
  cp$n_previous_cpp[2] <- -2
  expect_snapshot(sfp_data(cp_plans = cp), error = TRUE)
  lc <- tabs$la_covariates
  lc$prop_white_british[c(1, 4)] <- c(80, Inf)
  expect_snapshot(sfp_data(la_covariates = lc), error = TRUE)
  lc <- tabs$la_covariates
  lc$prop_fsm[2] <- NaN  # NaN is missing, which is allowed
  expect_silent(sfp_data(la_covariates = lc))
  ro <- tabs$rollout
  ro$go_live_date[2] <- NA
  expect_snapshot(sfp_data(rollout = ro), error = TRUE)
})

# ---------------------------------------------------------------------------
# Soft problems: one warning per kind

test_that("unknown codes in columns no analysis uses warn once, with counts", {
  tabs <- tiny_sfp()
  ref <- tabs$referrals
  ref$referral_source[c(1, 3, 4)] <- c("11", "11", "ZZ")
  cp <- tabs$cp_plans
  cp$latest_category[2] <- "MIX"
  cl <- tabs$cla_episodes
  cl$place_provider[1] <- "PR9"
  w <- expect_warning(x <- tiny(referrals = ref, cp_plans = cp,
                                cla_episodes = cl), "Unknown codes")
  expect_snapshot(tiny(referrals = ref, cp_plans = cp, cla_episodes = cl))
  # kept as given
  expect_identical(x$referrals$referral_source, ref$referral_source)
  p <- attr(x, "problems")
  expect_equal(p$n, c(3L, 1L, 1L))
})

test_that("open plans, episodes and referrals warn with counts", {
  tabs <- tiny_sfp()
  cin <- tabs$cin_plans
  cin$end <- as.Date(NA)
  cp <- tabs$cp_plans
  cp$end[2] <- NA
  cl <- tabs$cla_episodes
  cl$dec[2] <- NA
  ref <- tabs$referrals
  ref$closure_date[2:4] <- NA
  expect_snapshot(x <- tiny(cin_plans = cin, cp_plans = cp, cla_episodes = cl,
                            referrals = ref))
  expect_equal(attr(x, "problems")$n, c(3L, 2L, 1L, 1L))
  expect_true(all(is.na(x$cin_plans$end)))
})

test_that("children without referral or dob, LAs without children warn", {
  tabs <- tiny_sfp()
  ch <- rbind(tabs$children, tabs$children[3, ])
  ch$child_id[4] <- "C4"
  ch$dob[3:4] <- NA
  ch$expected_dob <- as.Date(c(NA, NA, "2021-01-01", NA))  # C3 is unborn
  lc <- rbind(tabs$la_covariates, tabs$la_covariates[1, ])
  lc$la_code[5] <- "L99"
  ro <- rbind(tabs$rollout, tabs$rollout[1, ])
  ro$la_code[3] <- "L98"
  ro$stratum[3] <- NA
  expect_snapshot(x <- tiny(children = ch, la_covariates = lc, rollout = ro))
  p <- attr(x, "problems")
  expect_equal(p$n, c(1L, 1L, 2L))
  expect_equal(p$column, c("dob", "child_id", "la_code"))
})

test_that("exact duplicate factor rows and FV roll-out without trial dates warn", {
  tabs <- tiny_sfp()
  af <- tabs$assessment_factors[c(1, 2, 3, 1, 4, 1), ]
  expect_snapshot(x <- tiny(assessment_factors = af))
  expect_equal(nrow(x$assessment_factors), 6L)
  ro <- tabs$rollout
  ro$trial_end[2] <- NA
  expect_snapshot(tiny(rollout = ro))
  ro$trial_start <- NULL
  ro$trial_end <- NULL
  expect_snapshot(tiny(rollout = ro))
  # FS rows need no trial period
  ro$programme <- "FS"
  ro$stratum <- NULL
  expect_silent(tiny(rollout = ro))
})

# ---------------------------------------------------------------------------
# Helpers against plain-R references

test_that("fin_year() matches a slow reference and hand-derived labels", {
  # by hand: 31 March belongs to the year that began the previous April
  expect_identical(
    fin_year(as.Date(c("2020-03-31", "2020-04-01", "2021-03-31", "1999-04-01",
                       "2009-12-31", NA))),
    c("2019/20", "2020/21", "2020/21", "1999/00", "2009/10", NA)
  )
  expect_identical(fin_year("01/04/2020"), "2020/21")
  expect_identical(fin_year(character()), character())
  slow <- function(d) {
    vapply(seq_along(d), function(i) {
      if (is.na(d[i])) return(NA_character_)
      y <- as.integer(format(d[i], "%Y"))
      if (d[i] < as.Date(paste0(y, "-04-01"))) y <- y - 1L
      paste0(y, "/", substr(as.character(y + 1L), 3, 4))
    }, "")
  }
  set.seed(2)
  d <- as.Date("1995-01-01") + sample.int(15000, 300)
  d[c(5, 9)] <- NA
  expect_identical(fin_year(d), slow(d))
  expect_snapshot(fin_year(20200401), error = TRUE)
  expect_snapshot(fin_year(c("2020-04-01", "April 2020")), error = TRUE)
})

test_that("key grouping matches duplicated() on a data frame", {
  set.seed(3)
  n <- 500
  df <- data.frame(a = sample(c(letters[1:4], NA), n, TRUE),
                   b = as.Date("2020-01-01") + sample(c(0:3, NA), n, TRUE),
                   c = sample(1:3, n, TRUE), stringsAsFactors = FALSE)
  g <- group_id(df)
  expect_identical(duplicated(g), duplicated(df))
  expect_identical(duplicated(group_id(df["a"])), duplicated(df$a))
  # same group id exactly when the rows are equal, compared cell by cell
  m <- 60
  same <- outer(g[1:m], g[1:m], `==`)
  ref <- matrix(FALSE, m, m)
  for (i in 1:m) for (j in 1:m) {
    ref[i, j] <- identical(df$a[i], df$a[j]) && identical(df$b[i], df$b[j]) &&
      identical(df$c[i], df$c[j])
  }
  expect_identical(same, ref)
})

test_that("a 1e6-row referrals table validates", {
  skip_on_cran()
  skip_on_ci()
  set.seed(4)
  n <- 1e6
  ref <- data.frame(
    referral_id = paste0("R", seq_len(n)),
    child_id = paste0("C", sample.int(4e5, n, TRUE)),
    referral_date = as.Date("2015-04-01") + sample.int(3000, n, TRUE),
    primary_need = sample(sfp_codes("primary_need"), n, TRUE),
    stringsAsFactors = FALSE
  )
  ref$closure_date <- ref$referral_date + sample.int(400, n, TRUE)
  x <- sfp_data(referrals = ref)
  expect_identical(nrow(x$referrals), as.integer(n))
  ref$referral_id[n] <- "R17"
  expect_error(sfp_data(referrals = ref), "rows 17, 1000000")
})
