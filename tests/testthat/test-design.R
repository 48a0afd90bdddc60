fv_rollout <- function() {
  data.frame(
    la_code = c("303", "301", "302", "304", "305"), programme = "FV",
    role = "treated",
    go_live_date = as.Date(c("2021-01-01", "2020-01-01", "2020-07-01",
                             "2021-07-01", "2022-01-01")),
    wedge_order = c(3L, 1L, 2L, 4L, 5L),
    stratum = c("low", "high", "high", "low", "low"),
    stringsAsFactors = FALSE
  )
}

test_that("Family Valued trial period is 6 months before the first to 6 after the last go-live", {
  d <- design_family_valued(fv_rollout())
  # FV p. 8: first go-live 2020-01-01 - 6 months; last 2022-01-01 + 6 months.
  expect_equal(d$trial_start, as.Date("2019-07-01"))
  expect_equal(d$trial_end, as.Date("2022-07-01"))
  expect_equal(d$las$la_code, c("301", "302", "303", "304", "305"))
  expect_equal(unname(d$strata[c("301", "305")]), c("high", "low"))
  expect_equal(d$windows[["cla"]], 18)
  expect_equal(d$windows[["return"]], 36)
  expect_equal(d$age_range, c(0L, 17L))
  expect_equal(d$codes$reunification, "E4A")
  expect_equal(design_family_valued(fv_rollout(), reunification = "sensitivity")$codes$reunification,
               c("E4A", "E4B"))
  # explicit trial period in the roll-out table wins
  ro <- fv_rollout()
  ro$trial_start <- as.Date("2019-06-01")
  ro$trial_end <- as.Date("2022-08-01")
  d2 <- design_family_valued(ro)
  expect_equal(c(d2$trial_start, d2$trial_end), as.Date(c("2019-06-01", "2022-08-01")))
  # month-end clamping: 2020-08-31 - 6 months = 2020-02-29 (leap year)
  ro <- fv_rollout()[1, ]
  ro$go_live_date <- as.Date("2020-08-31")
  expect_equal(design_family_valued(ro)$trial_start, as.Date("2020-02-29"))
  expect_equal(design_family_valued(ro)$trial_end, as.Date("2021-02-28"))
})

test_that("a design takes the roll-out table from an sfp_data object", {
  d <- design_family_valued(suppressWarnings(sfp_data(rollout = fv_rollout())))
  expect_s3_class(d, "sfp_design")
  expect_equal(nrow(d$las), 5L)
  # rows of the other programme are ignored
  ro <- rbind(fv_rollout(), data.frame(la_code = "999", programme = "FS", role = "treated",
                                       go_live_date = as.Date(NA), wedge_order = NA,
                                       stratum = NA))
  expect_equal(nrow(design_family_valued(ro)$las), 5L)
})

test_that("Family Safeguarding design keeps treated LAs, comparators and pairs", {
  ro <- data.frame(
    la_code = c("101", "102", "201", "201", "202"), programme = "FS",
    role = c("treated", "treated", "comparator", "comparator", "comparator"),
    matched_to_la = c(NA, NA, "101", "102", "101"),
    outcome = c(NA, NA, "cla_18m", "cla_18m", "cla_18m"),
    go_live_date = as.Date(c("2020-04-01", "2020-10-01", NA, NA, NA)),
    stringsAsFactors = FALSE
  )
  d <- design_family_safeguarding(ro)
  expect_equal(d$las$la_code, c("101", "102", "201", "202"))
  expect_equal(d$las$role, c("treated", "treated", "comparator", "comparator"))
  expect_equal(nrow(d$pairs), 3L)
  expect_equal(d$trial_start, as.Date("2017-04-01"))
  expect_null(d$trial_end)
  # design table values (FS p. 6), not the text's
  expect_equal(d$windows[["cla"]], 18)
  expect_equal(d$windows[["cpp_duration_cap"]], 12)
  expect_equal(d$windows[["days_cpp"]], 18)
  expect_equal(d$age_range, c(0L, 12L))
  expect_equal(d$codes$toxic_trio, c("1B", "2B", "3A", "3B", "3C", "4B"))
  expect_true(all(c("4C", "1C") %in%
                    design_family_safeguarding(ro, toxic_trio = "broad")$codes$toxic_trio))
  expect_equal(design_family_safeguarding(ro, cla_window = 24)$windows[["cla"]], 24)
})

test_that("print() shows the whole design", {
  ro <- data.frame(la_code = c("101", "201"), programme = "FS",
                   role = c("treated", "comparator"),
                   go_live_date = as.Date(c("2020-04-01", NA)))
  expect_snapshot(print(design_family_safeguarding(ro, data_end = as.Date("2023-03-31"))))
  expect_snapshot(print(design_family_valued(fv_rollout())))
})

test_that("bad designs stop with clear errors", {
  ro <- fv_rollout()
  ro$go_live_date[c(2, 4)] <- NA
  expect_snapshot(design_family_valued(ro), error = TRUE)
  fs <- data.frame(la_code = c("101", "201"), programme = "FS",
                   role = c("treated", "comparator"),
                   go_live_date = as.Date(c(NA, NA)))
  expect_snapshot(design_family_safeguarding(fs), error = TRUE)
  expect_snapshot(design_family_valued(sfp_data()), error = TRUE)
  expect_snapshot(design_family_valued(fv_rollout()[, -4]), error = TRUE)
  expect_snapshot(design_family_safeguarding(fv_rollout()), error = TRUE)
  expect_snapshot(design_family_valued(fv_rollout(), cla_window = 0), error = TRUE)
  expect_snapshot(design_family_valued(fv_rollout(), age_range = c(17, 0)), error = TRUE)
  expect_snapshot(design_family_valued(fv_rollout(), age_bands = c(4, 0)), error = TRUE)
  fs$go_live_date[1] <- as.Date("2020-01-01")
  expect_snapshot(design_family_safeguarding(fs, trial_start = "not a date"), error = TRUE)
  ro <- fv_rollout()
  ro <- rbind(ro, ro[1, ])
  ro$stratum[6] <- "high"
  expect_snapshot(design_family_valued(ro), error = TRUE)
  ro <- fv_rollout()
  ro$role[1] <- "comparator"
  expect_snapshot(design_family_valued(ro), error = TRUE)
  expect_snapshot(design_family_valued(fv_rollout(), absence_terms = 4), error = TRUE)
})

test_that("one definition of go-live, embedding and step boundaries, in build_cohort() and sw_terms()", {
  # FV: "children who entered the sample population between the start of
  # ... the Family Group Conference service ... and the completion of the
  # restorative theory to practice training will be excluded"; the go-live
  # date "is marked by the completion of the restorative theory to practice
  # training", so a referral on the go-live day is treated, never embedding.
  # The trial starts 2019-08-31: steps start on 2019-08-31, 2020-02-29 (month
  # end clamped), 2020-08-31, ...
  ro <- data.frame(la_code = c("301", "302"), programme = "FV", role = "treated",
                   go_live_date = as.Date(c("2020-02-29", "2020-08-31")),
                   embed_start = as.Date(c("2020-01-01", "2020-07-01")),
                   embed_end = as.Date(c("2020-02-29", "2020-08-30")),
                   trial_start = as.Date("2019-08-31"), trial_end = as.Date("2021-02-27"),
                   stringsAsFactors = FALSE)
  ids <- c("a", "b", "c", "d", "e")
  ch <- data.frame(child_id = ids, la_code = c("301", "301", "301", "302", "302"),
                   dob = as.Date("2012-01-01"), gender_raw = "1", ethnicity = "WBRI")
  rf <- data.frame(referral_id = ids, child_id = ids,
                   referral_date = as.Date(c("2020-02-28", "2020-02-29", "2019-12-31",
                                             "2020-08-30", "2020-08-31")),
                   closure_date = as.Date(NA), referral_nfa = FALSE)
  d <- suppressWarnings(sfp_data(children = ch, referrals = rf, rollout = ro))
  des <- design_family_valued(d, data_end = as.Date("2023-12-31"))
  co <- suppressMessages(build_cohort(d, des, outcomes = character()))
  # a: the day before go-live, step 0; b: on go-live day (and the first day
  # of step 1): treated; c: before the embedding period; d, e likewise in 302.
  expect_equal(stats::setNames(co$treated, co$child_id), c(a = 0L, b = 1L, c = 0L, d = 0L, e = 1L))
  expect_equal(stats::setNames(co$step, co$child_id), c(a = 0L, b = 1L, c = 0L, d = 1L, e = 2L))
  emb <- suppressMessages(build_cohort(d, des, treatment = "embedding", outcomes = character()))
  expect_setequal(emb$child_id, c("b", "c", "e"))
  # sw_terms() on the same referrals: the same arms, steps and exclusions
  kids <- data.frame(child_id = ids, la_code = ch$la_code, referral_date = rf$referral_date)
  st <- sw_terms(kids, ro, trial_start = as.Date("2019-08-31"), n_periods = 4L)
  expect_equal(st$treated, co$treated[match(st$child_id, co$child_id)])
  expect_equal(st$period, co$step[match(st$child_id, co$child_id)])
  st_e <- suppressWarnings(sw_terms(kids, ro, trial_start = as.Date("2019-08-31"),
                                    n_periods = 4L, embedding = TRUE))
  expect_setequal(st_e$child_id, emb$child_id)
})

test_that("both strands for both programmes: the FS stepped-wedge and the FV DiD cohorts", {
  # "the current evaluation uses a triangulation of results from a stepped
  # wedge cluster randomised controlled trial approach and a
  # difference-in-differences analysis" (FS); FV: "we will conduct an
  # analysis exploiting the stepped wedge design ... as well as a DiD".
  ro_fs <- data.frame(la_code = c("101", "102", "201"), programme = "FS",
                      role = c("treated", "treated", "comparator"),
                      go_live_date = as.Date(c("2020-01-01", "2020-07-01", NA)))
  ch <- data.frame(child_id = c("a", "b", "c"), la_code = c("101", "102", "201"),
                   dob = as.Date("2012-01-01"), gender_raw = "1", ethnicity = "WBRI")
  rf <- data.frame(referral_id = c("a", "b", "c"), child_id = c("a", "b", "c"),
                   referral_date = as.Date(c("2020-02-01", "2020-02-01", "2020-02-01")),
                   closure_date = as.Date(NA), referral_nfa = FALSE)
  d <- suppressWarnings(sfp_data(children = ch, referrals = rf, rollout = ro_fs))
  sw <- design_family_safeguarding(d, strand = "stepped_wedge", data_end = as.Date("2023-12-31"))
  # the trial period is six months before the first to six after the last go-live
  expect_equal(c(sw$trial_start, sw$trial_end), as.Date(c("2019-07-01", "2021-01-01")))
  co <- suppressMessages(build_cohort(d, sw, outcomes = character()))
  # the comparator's child is not in the stepped-wedge cohort; a is treated
  # (101 live since January) in step 1, b is control (102 not yet live)
  expect_equal(co$child_id, c("a", "b"))
  expect_equal(co$treated, c(1L, 0L))
  expect_equal(co$step, c(1L, 1L))
  expect_equal(exclusion_flow(co, stage = "population", by = "total")$n[2], 1L)
  # the FV DiD strand admits comparator authorities (control throughout)
  ro_fv <- data.frame(la_code = c("301", "302", "401"), programme = "FV",
                      role = c("treated", "treated", "comparator"),
                      go_live_date = as.Date(c("2020-01-01", "2020-07-01", NA)),
                      matched_to_la = c(NA, NA, "301"), outcome = c(NA, NA, "cla_18m"))
  ch$la_code <- c("301", "302", "401")
  d2 <- suppressWarnings(sfp_data(children = ch, referrals = rf, rollout = ro_fv))
  expect_error(design_family_valued(d2), "strand = \"did\"")
  did <- design_family_valued(d2, strand = "did", data_end = as.Date("2023-12-31"))
  expect_equal(did$pairs$comparator_la, "401")
  co2 <- suppressMessages(build_cohort(d2, did, outcomes = character()))
  expect_equal(co2$child_id, c("a", "b", "c"))
  expect_equal(co2$treated, c(1L, 0L, 0L))
  # the comparator has no go-live, so no alternative go-live or embedding
  # dates either: only the treated authorities need them
  ro_fv$alt_go_live_date <- as.Date(c("2020-03-01", "2020-09-01", NA))
  ro_fv$embed_start <- as.Date(c("2019-10-01", "2020-04-01", NA))
  ro_fv$embed_end <- as.Date(c("2019-12-31", "2020-06-30", NA))
  d3 <- suppressWarnings(sfp_data(children = ch, referrals = rf, rollout = ro_fv))
  did3 <- design_family_valued(d3, strand = "did", data_end = as.Date("2023-12-31"))
  for (tr in c("alt_go_live", "embedding")) {
    co3 <- suppressMessages(build_cohort(d3, did3, treatment = tr, outcomes = character()))
    expect_equal(co3$child_id, c("a", "b", "c"))
    expect_equal(co3$treated[3], 0L)
  }
  ro_fv$embed_end[1] <- NA
  d4 <- suppressWarnings(sfp_data(children = ch, referrals = rf, rollout = ro_fv))
  did4 <- design_family_valued(d4, strand = "did", data_end = as.Date("2023-12-31"))
  expect_error(suppressMessages(build_cohort(d4, did4, treatment = "embedding",
                                             outcomes = character())),
               "embed_end.*301")
})

test_that("the FV DiD strand's window: two financial years before the first go-live, as the FS DiD", {
  # FS DiD: "from 2017/18 (which is two years before any treatment local
  # authority they are matched to started Family Safeguarding)"; matching on
  # "the two years prior to the intervention". FV first go-live April 2020
  # (2020/21): the DiD starts on 1 April 2018; the stepped-wedge trial period
  # "from 6 months prior to the first local authority implements the model".
  ro <- data.frame(la_code = c("301", "302", "401"), programme = "FV",
                   role = c("treated", "treated", "comparator"),
                   go_live_date = as.Date(c("2020-04-01", "2020-10-01", NA)))
  ids <- c("a", "b", "c", "d", "e")
  ch <- data.frame(child_id = ids, la_code = c("301", "301", "302", "401", "401"),
                   dob = as.Date("2012-01-01"), gender_raw = "1", ethnicity = "WBRI")
  rf <- data.frame(referral_id = ids, child_id = ids,
                   referral_date = as.Date(c("2018-03-31", "2018-04-01", "2019-09-30", "2019-10-01", "2020-11-01")),
                   closure_date = as.Date(NA), referral_nfa = FALSE)
  x <- suppressWarnings(sfp_data(children = ch, referrals = rf, rollout = ro))
  did <- design_family_valued(x, strand = "did", data_end = as.Date("2023-12-31"))
  expect_equal(did$did_start, as.Date("2018-04-01"))
  expect_equal(did$trial_start, as.Date("2019-10-01"))
  expect_output(print(did), "DiD strand \\(referral dates\\): +2018-04-01 to 2021-04-01")
  # the DiD strand's cohort (analyse() builds it with trial_start = did_start)
  dd <- did
  dd$trial_start <- did$did_start
  co <- suppressMessages(build_cohort(x, dd, outcomes = character()))
  expect_equal(co$child_id, c("b", "c", "d", "e"))
  expect_equal(co$treated, c(0L, 0L, 0L, 0L))
  co_sw <- suppressMessages(build_cohort(x, did, outcomes = character()))
  expect_equal(co_sw$child_id, c("d", "e"))
  # analyse(): the DiD rows read the DiD window's cohort, the stepped-wedge rows the trial period's
  expect_equal(plan_cohort_key(c("referral_date", "referral_date"), c("cla_18m", "reunified_18m"), "did", did),
               c("did:referral_date", "did:referral_date|reunified_18m"))
  expect_equal(plan_cohort_key("referral_date", "cla_18m", "stepped_wedge", did), "referral_date")
  # a first go-live in January-March: its financial year began the April before
  ro$go_live_date[1:2] <- as.Date(c("2020-01-15", "2020-07-01"))
  expect_equal(design_family_valued(ro, strand = "did")$did_start, as.Date("2017-04-01"))
  # given explicitly; the stepped-wedge strand has none
  expect_equal(design_family_valued(ro, strand = "did", did_start = as.Date("2019-01-01"))$did_start,
               as.Date("2019-01-01"))
  expect_null(design_family_valued(ro[1:2, ])$did_start)
  expect_error(design_family_valued(ro, strand = "did", did_start = "2030-01-01"), "did_start")
  expect_error(design_family_valued(ro, strand = "did", did_start = 3), "did_start")
})

test_that("the FV DiD strand's CEM: the FS protocol's coarsening with the FV age bands", {
  ro <- data.frame(la_code = c("301", "302", "401"), programme = "FV",
                   role = c("treated", "treated", "comparator"),
                   go_live_date = as.Date(c("2020-01-01", "2020-07-01", NA)))
  sw <- design_family_valued(ro[1:2, ])
  expect_null(sw$cem)
  d <- design_family_valued(ro, strand = "did")
  fs <- fs_coarsening()
  # FS: "Gender ...; Age of children at the time of referral (0-3, 4-12);
  # Ethnicity (major group); Disability; Free school meal eligibility ...;
  # Unaccompanied Asylum Seeker; ... previously been made the subject of a CP"
  expect_equal(d$cem$formula, fs$formula)
  expect_equal(d$cem$cutpoints[setdiff(names(fs$cutpoints), "age")],
               fs$cutpoints[setdiff(names(fs$cutpoints), "age")])
  # the FV ages 0-17 in the FV bands 0-3, 4-12, 13-17
  expect_equal(d$cem$cutpoints$age, c(0, 3, 12, 17))
  # "We only match individuals from the same financial year", within the pair
  expect_equal(d$cem$exact, c("pair", "fin_year"))
  expect_equal(d$cem$widen_to, "period")
  # the same cem() call as the FS design's on the same stacked rows
  st <- data.frame(in_treated_la = rep(0:1, each = 6), gender = "male",
                   age = c(0, 3, 4, 12, 13, 17, 1, 2, 5, 11, 14, 16), ethnic_group = "White",
                   disabled = 0, fsm = 1, uasc = 0, n_previous_cpp = 0, pair = "301-401",
                   fin_year = "2020/21")
  st <- rbind(st, transform(st, fin_year = "2021/22"))
  st <- rbind(st, transform(st, pair = "302-401"))
  m <- cem(data = st, design = d)
  # strata 0-3, 4-12, 13-17 in each pair x financial year: two treated and
  # two control children in each
  expect_equal(length(unique(m$stratum[m$matched])), 12L)
  expect_equal(as.vector(table(m$stratum)), rep(4L, 12))
  expect_true(all(m$weights == 1))
  dfs <- design_family_safeguarding(data.frame(la_code = c("1", "2"), role = c("treated", "comparator"),
                                               go_live_date = as.Date(c("2020-01-01", NA))))
  st12 <- st[st$age <= 12, ]
  expect_equal(cem(data = st12, design = d)$weights, cem(data = st12, design = dfs)$weights)
  # the protocol's fallback: within pre/post go-live
  dp <- design_family_valued(ro, strand = "did", cem = "period")
  expect_equal(dp$cem$exact, c("pair", "period"))
  expect_null(dp$cem$widen_to)
  # or the analyst's own specification
  own <- fs_coarsening()
  own$cutpoints$age <- c(0, 17)
  du <- design_family_valued(ro, strand = "did", cem = own)
  expect_equal(du$cem$cutpoints$age, c(0, 17))
  expect_equal(du$cem$coarsening, "as given")
  expect_output(print(d), "CEM on \\(DiD strand\\):.*within pair x fin_year")
  expect_snapshot(design_family_valued(ro, strand = "did", cem = list(formula = ~ age)),
                  error = TRUE)
})
