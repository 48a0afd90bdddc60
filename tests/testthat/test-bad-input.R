# The bad-input battery: hostile records and arguments for the exported
# functions, each answered by an R error that names the table or argument
# (and the column and first rows where there are rows) and says how to fix
# it. The messages are kept as snapshots; every message must also carry a
# "Fix:" line and must not come from the C layer's second line of defence.

battery_records <- function() {
  suppressWarnings(simulate_sfp("family_safeguarding", n_la = 3,
                                children_per_la_year = 5, seed = 3))
}

# sfp_data() on the records with one table replaced
records_with <- function(x, ...) {
  tabs <- unclass(x)[sfp_tables()]
  tabs[names(list(...))] <- list(...)
  do.call(sfp_data, c(tabs, warn = FALSE))
}

# The message of the error of `expr`, or "" if there is none.
error_message <- function(expr) {
  tryCatch({
    suppressWarnings(suppressMessages(expr))
    ""
  }, error = function(e) {
    expect_false(inherits(e, "sfpceval_internal_error"),
                 label = "a C-level check answered a user's input")
    conditionMessage(e)
  })
}

# Each quoted call of `cases` (evaluated where the test defines them) must be
# refused with a message carrying a "Fix:" line and a `name` (argument, table
# or column); the messages, passed through `clean`, are kept as a snapshot.
expect_refused <- function(cases, clean = identity, env = parent.frame()) {
  msgs <- vapply(cases, function(e) error_message(eval(e, env)), "")
  for (nm in names(cases)) {
    expect_true(nzchar(msgs[[nm]]), label = paste(nm, "is refused"))
    expect_match(msgs[[nm]], "Fix:", label = nm)
    expect_match(msgs[[nm]], "`", label = paste(nm, "names an argument, table or column"))
  }
  msgs <- clean(msgs)
  expect_snapshot(cat(paste0("[", names(msgs), "]\n", msgs), sep = "\n\n"))
  invisible(msgs)
}

test_that("the input tables: wrong types, unknown codes, reversed dates, duplicate keys, empty tables", {
  x <- battery_records()
  ch <- x$children
  rf <- x$referrals
  # each case: a function giving the call's result
  cases <- list(
    wrong_type = function() {
      r <- rf
      r$referral_date <- seq_len(nrow(r))
      records_with(x, referrals = r)
    },
    unknown_code = function() {
      r <- rf
      r$primary_need[2] <- "N99"
      records_with(x, referrals = r)
    },
    dates_reversed = function() {
      r <- rf
      r$closure_date[3] <- r$referral_date[3] - 10
      records_with(x, referrals = r)
    },
    duplicate_key = function() records_with(x, children = rbind(ch, ch[1, ])),
    empty_children = function() records_with(x, children = ch[0, ]),
    empty_referrals = function() records_with(x, referrals = rf[0, ])
  )
  msgs <- vapply(cases, function(f) error_message(f()), "")
  for (nm in names(cases)) {
    expect_match(msgs[[nm]], "Fix:", label = nm)
    expect_match(msgs[[nm]], "Table `[a-z_]+`", label = paste(nm, "names the table"))
  }
  expect_snapshot(cat(paste0("[", names(msgs), "]\n", msgs), sep = "\n\n"))
})

test_that("the models: no events, all events, separation, collinearity, zero weights, one cluster, one period", {
  d <- la_year_rows()
  fit_cr1 <- did_fit(y ~ treated | la + year, d, cluster = ~la, vcov = "CR1")
  cases <- list(
    did_char_outcome = quote(did_fit(y ~ treated | la + year,
                                     transform(d, y = as.character(y)), cluster = ~la)),
    did_empty = quote(did_fit(y ~ treated | la + year, d[0, ], cluster = ~la)),
    did_one_authority = quote(did_fit(y ~ treated | year, transform(d, la = "a"),
                                      cluster = ~la)),
    did_all_weights_zero = quote(did_fit(y ~ treated | la + year, transform(d, w = 0),
                                         cluster = ~la, weights = ~w)),
    did_no_events = quote(did_fit(yb ~ treated | la + year, transform(d, yb = 0L),
                                  cluster = ~la, family = "binomial")),
    did_all_events = quote(did_fit(yb ~ treated | la + year, transform(d, yb = 1L),
                                   cluster = ~la, family = "binomial")),
    did_separation = quote(did_fit(yb ~ x | la, transform(d, yb = as.integer(x > 0)),
                                   cluster = ~la, family = "binomial")),
    did_treatment_absorbed = quote(did_fit(y ~ treated | la + year,
                                           transform(d, treated = 0L), cluster = ~la)),
    cem_treat_not_01 = quote(cem(treated ~ x, transform(d, treated = treated * 2))),
    cem_empty = quote(cem(treated ~ x, d[0, ])),
    imbalance_all_weights_zero = quote(imbalance(treated ~ x, d, weights = rep(0, nrow(d)))),
    hurdle_no_events = quote(hurdle_fit(count ~ x | x, transform(d, count = 0), cluster = "la")),
    hurdle_all_events = quote(hurdle_fit(count ~ x | x, transform(d, count = 3), cluster = "la")),
    hurdle_collinear = quote(hurdle_fit(count ~ x + x2 | x, transform(d, x2 = 2 * x),
                                        cluster = "la")),
    hurdle_one_authority = quote(hurdle_fit(count ~ x | x, transform(d, la = "a"),
                                            cluster = "la")),
    tobit_limits_reversed = quote(tobit_fit(days ~ x, d, left = 300, right = 0)),
    tobit_char_outcome = quote(tobit_fit(days ~ x, transform(d, days = as.character(days)))),
    glmm_no_events = quote(sw_glmm(yb ~ treated + (1 | la), transform(d, yb = 0L))),
    glmm_all_events = quote(sw_glmm(yb ~ treated + (1 | la), transform(d, yb = 1L))),
    glmm_one_authority = quote(sw_glmm(yb ~ treated + (1 | la), transform(d, la = "a"))),
    glmm_collinear = quote(sw_glmm(yb ~ x + x2 + (1 | la), transform(d, x2 = 2 * x))),
    glmm_empty = quote(sw_glmm(yb ~ treated + (1 | la), d[0, ])),
    fgls_one_period = quote(fgls_bcj(y ~ treated, transform(d, year = 2017), "la", "year")),
    icc_one_cluster = quote(icc_anova(d$y, rep("a", nrow(d)))),
    icc_clusters_of_one_child = quote(icc_anova(d$y, seq_len(nrow(d)))),
    icc_char = quote(icc_anova(as.character(d$y), d$la)),
    serial_duplicate_keys = quote(serial_test(y ~ treated, transform(d, year = 2017), "la", "year")),
    bacon_empty = quote(bacon(y ~ treated, d[0, ], "la", "year")),
    sw_randomise_duplicates = quote(sw_randomise(c("A", "A", "B"), seed = 1)),
    power_sim_bad_effect = quote(power_sim(power_design(m = 50), effect = NA)),
    event_time_bad_column = quote(event_time(d, go_live = "nope", time = "year")),
    wild_boot_unknown_param = quote(wild_boot(fit_cr1, "nope")),
    wild_boot_negative_B = quote(wild_boot(fit_cr1, "treated", B = -5)),
    att_gt_unknown_outcome = quote(att_gt(d, outcome = "nope", time = "year")),
    sw_terms_no_date = quote(sw_terms(d, rollout = data.frame())),
    practically_different_char = quote(practically_different("a", 1)),
    placebo_no_pairs = quote(placebo_test(list(), d)),
    select_matches_wrong_input = quote(select_matches(list(), 1)),
    repeat_share_empty = quote(repeat_share(character(0))),
    icc_empty = quote(icc_anova(numeric(0), character(0))),
    sfp_codes_unknown_list = quote(sfp_codes("nope")),
    fin_year_not_a_date = quote(fin_year("x"))
  )
  expect_refused(cases)
})

# The exports of the analysis plan, its tables and outputs (#14, #15, #16):
# wrong types, NA, empty tables, missing columns, duplicated ids, negative or
# zero weights, a design without comparators for the DiD strand, an outcome
# the design does not know.
# battery_fv(): tests/testthat/helper-fv-small.R

test_that("the plan and its tables: analyse(), protocol_models(), table1(), mdes_table(), report()", {
  b <- battery_fv()
  x <- b$x
  d <- b$d
  co <- b$co
  d_fs <- design_family_safeguarding(battery_records())
  no_comparators <- d
  no_comparators$las <- d$las[d$las$role != "comparator", ]
  cases <- list(
    analyse_not_records = quote(analyse(list(), d)),
    analyse_not_design = quote(analyse(x, list())),
    analyse_unknown_outcome = quote(analyse(x, d, outcomes = "nope")),
    analyse_did_without_comparators = quote(analyse(x, no_comparators, strands = "did")),
    analyse_imputations_fraction = quote(analyse(x, d, imputations = 2.5)),
    analyse_imputations_one = quote(analyse(x, d, imputations = 1)),
    analyse_imputations_na = quote(analyse(x, d, imputations = NA)),
    analyse_alpha = quote(analyse(x, d, alpha = 2)),
    analyse_seed = quote(analyse(x, d, seed = 1.5)),
    analyse_sensitivity_na = quote(analyse(x, d, sensitivity = NA)),
    analyse_models_missing_columns = quote(analyse(x, d, models = data.frame(id = "a"))),
    analyse_unknown_strand = quote(analyse(x, d, strands = "nope")),
    protocol_models_not_design = quote(protocol_models(list())),
    protocol_models_unknown_outcome = quote(protocol_models(d, outcomes = "nope")),
    protocol_models_outcome_na = quote(protocol_models(d, outcomes = NA)),
    protocol_models_sensitivity = quote(protocol_models(d, sensitivity = "yes")),
    table1_not_a_table = quote(table1(1:3)),
    table1_no_arm = quote(table1(data.frame(age = 1:3))),
    table1_arm_not_01 = quote(table1(transform(co, treated = 2L))),
    table1_empty = quote(table1(co[0, ])),
    table1_unknown_covariate = quote(table1(co, "nope")),
    mdes_table_not_cohort = quote(mdes_table(data.frame(), d)),
    mdes_table_not_design = quote(mdes_table(co, list())),
    mdes_table_other_design = quote(mdes_table(co, d_fs)),
    report_not_analysis = quote(report(list(), tempfile())),
    report_dir_na = quote(report(structure(list(), class = "sfp_analysis"), NA_character_)),
    report_threshold = quote(report(structure(list(), class = "sfp_analysis"), tempfile(), threshold = 0)),
    report_round_to = quote(report(structure(list(), class = "sfp_analysis"), tempfile(), round_to = 2.5)),
    cohort_covariates_not_cohort = quote(cohort_covariates(data.frame(), "cla_18m")),
    outcome_table_not_design = quote(outcome_table("FV"))
  )
  expect_refused(cases)
})

test_that("pool_rubin(), triangulate(), cost_benefit(), fidelity(), disclose(), few_treated_test()", {
  ind <- data.frame(la = "A", time_point = c("pre", "6m"), indicator = "caseload", value = c(18, 16))
  ftd <- expand.grid(child = 1:4, la = paste0("L", 1:4), year = 1:4)
  ftd$treated <- as.integer(ftd$la == "L1" & ftd$year >= 3)
  ftd$y <- sin(seq_len(nrow(ftd)))
  cases <- list(
    pool_char = quote(pool_rubin(c("a", "b"), c(1, 1))),
    pool_shape = quote(pool_rubin(c(1, 2), 1)),
    pool_one_imputation = quote(pool_rubin(1, 1)),
    pool_empty = quote(pool_rubin(numeric(0), numeric(0))),
    pool_na = quote(pool_rubin(c(1, NA, 3), c(1, 1, 1))),
    pool_negative_se = quote(pool_rubin(c(1, 2, 3), c(1, -1, 1))),
    pool_df = quote(pool_rubin(c(1, 2), c(1, 1), df_complete = 0)),
    pool_level = quote(pool_rubin(c(1, 2), c(1, 1), level = 95)),
    triangulate_numbers = quote(triangulate(1, 2)),
    triangulate_two_rows = quote(triangulate(data.frame(estimate = 1:2, std.error = 1),
                                             list(estimate = 1, std.error = 1))),
    triangulate_na = quote(triangulate(list(estimate = NA, std.error = 1), list(estimate = 1, std.error = 1))),
    triangulate_zero_se = quote(triangulate(list(estimate = 1, std.error = 0), list(estimate = 1, std.error = 1))),
    triangulate_scales = quote(triangulate(list(estimate = 1, std.error = 1, scale = "log_odds"),
                                           list(estimate = 1, std.error = 1, scale = "risk_difference"))),
    triangulate_level = quote(triangulate(list(estimate = 1, std.error = 1), list(estimate = 1, std.error = 1),
                                          level = 2)),
    cost_benefit_effect_char = quote(cost_benefit("a", children_per_year = 100, cost_per_child = 1)),
    cost_benefit_no_children = quote(cost_benefit(-0.01, cost_per_child = 1)),
    cost_benefit_zero_children = quote(cost_benefit(-0.01, children_per_year = 0, cost_per_child = 1)),
    cost_benefit_no_cost = quote(cost_benefit(-0.01, children_per_year = 100)),
    cost_benefit_negative_cost = quote(cost_benefit(-0.01, children_per_year = 100, cost_per_child = -5)),
    cost_benefit_both_costs = quote(cost_benefit(-0.01, children_per_year = 100, cost_per_child = 1,
                                                 placement_costs = data.frame(placement = "a", cost = 1, n = 1))),
    cost_benefit_placement_columns = quote(cost_benefit(-0.01, children_per_year = 100,
                                                        placement_costs = data.frame(type = "a", price = 1))),
    cost_benefit_placement_zero_weights = quote(cost_benefit(-0.01, children_per_year = 100,
      placement_costs = data.frame(placement = c("a", "b"), cost = 1:2, n = 0))),
    cost_benefit_placement_negative = quote(cost_benefit(-0.01, children_per_year = 100,
      placement_costs = data.frame(placement = c("a", "b"), cost = c(1, -2), n = 3))),
    cost_benefit_years_duplicated = quote(cost_benefit(-0.01, children_per_year = 100, cost_per_child = 1,
                                                       years = c(0, 0, 1))),
    cost_benefit_costs_duplicated = quote(cost_benefit(-0.01, children_per_year = 100, cost_per_child = 1,
                                                       costs = data.frame(year = c(0, 0), cost = 1))),
    cost_benefit_costs_length = quote(cost_benefit(-0.01, children_per_year = 100, cost_per_child = 1,
                                                   costs = c(1, 2))),
    cost_benefit_p_value = quote(cost_benefit(-0.01, p.value = 2, children_per_year = 100, cost_per_child = 1)),
    cost_benefit_discount = quote(cost_benefit(-0.01, children_per_year = 100, cost_per_child = 1,
                                               discount_rate = -1)),
    fidelity_not_table = quote(fidelity(1)),
    fidelity_missing_columns = quote(fidelity(data.frame(la = "A"))),
    fidelity_empty = quote(fidelity(ind[0, ])),
    fidelity_unknown_indicator = quote(fidelity(transform(ind, indicator = "nope"))),
    fidelity_unknown_time_point = quote(fidelity(transform(ind, time_point = "3m"))),
    fidelity_duplicated = quote(fidelity(rbind(ind, ind[1, ]))),
    fidelity_value_char = quote(fidelity(transform(ind, value = c("18", "x")))),
    fidelity_value_negative = quote(fidelity(transform(ind, value = c(18, -1)))),
    fidelity_la_na = quote(fidelity(transform(ind, la = NA))),
    disclose_unknown_object = quote(disclose("a")),
    disclose_threshold = quote(disclose(data.frame(n = c(3, 20)), threshold = -1)),
    disclose_threshold_na = quote(disclose(data.frame(n = c(3, 20)), threshold = NA)),
    disclose_negative_count = quote(disclose(data.frame(g = c("a", "b", "Total"), n = c(-3, 20, 17)))),
    disclose_unknown_count_column = quote(disclose(data.frame(n = c(3, 20)), counts = "m")),
    disclose_round_to = quote(disclose(data.frame(n = c(3, 20)), round_to = 2.5)),
    disclose_char_matrix = quote(disclose(matrix("a", 2, 2))),
    disclosure_log_not_disclosed = quote(disclosure_log(data.frame(n = 1))),
    few_treated_B_fraction = quote(few_treated_test(y ~ treated, ftd, "la", "year", B = 99.5)),
    few_treated_seed_fraction = quote(few_treated_test(y ~ treated, ftd, "la", "year", B = 19, seed = 0.5)),
    few_treated_missing_column = quote(few_treated_test(y ~ treated, ftd, "la", "period")),
    few_treated_empty = quote(few_treated_test(y ~ treated, ftd[0, ], "la", "year")),
    few_treated_char_outcome = quote(few_treated_test(y ~ treated, transform(ftd, y = "a"), "la", "year")),
    few_treated_negative_weight = quote(few_treated_test(y ~ treated, ftd, "la", "year",
                                                         weights = c(-1, rep(1, nrow(ftd) - 1)))),
    few_treated_zero_weights = quote(few_treated_test(y ~ treated, ftd, "la", "year",
                                                      weights = rep(0, nrow(ftd)))),
    few_treated_no_comparators = quote(few_treated_test(y ~ treated, transform(ftd, treated = as.integer(year >= 3)),
                                                        "la", "year")),
    few_treated_level = quote(few_treated_test(y ~ treated, ftd, "la", "year", level = 1)),
    few_treated_treatment_not_01 = quote(few_treated_test(y ~ treated, transform(ftd, treated = 2 * treated),
                                                          "la", "year")),
    few_treated_treatment_missing = quote(few_treated_test(y ~ treat, ftd, "la", "year"))
  )
  expect_refused(cases)
})

test_that("records in and out: the returns readers and writer, sfp_data(con =), write_db()", {
  x <- battery_records()
  empty_dir <- tempfile()
  dir.create(empty_dir)
  on.exit(unlink(empty_dir, recursive = TRUE), add = TRUE)
  cases <- list(
    read_cin_census_no_file = quote(read_cin_census(file.path(empty_dir, "nope.xml"))),
    read_cin_census_na = quote(read_cin_census(NA_character_)),
    read_cin_census_number = quote(read_cin_census(1)),
    read_cin_census_empty_dir = quote(read_cin_census(empty_dir)),
    read_cin_census_history = quote(read_cin_census(empty_dir, history = NA)),
    read_cin_census_la_code = quote(read_cin_census(empty_dir, la_code = c("301", "302"))),
    read_ssda903_warn = quote(read_ssda903(empty_dir, warn = NA)),
    read_ssda903_no_dir = quote(read_ssda903(file.path(empty_dir, "nope"))),
    read_ssda903_empty_dir = quote(read_ssda903(empty_dir)),
    read_returns_no_dir = quote(read_returns(file.path(empty_dir, "nope"))),
    read_returns_two_paths = quote(read_returns(c(empty_dir, empty_dir))),
    write_returns_not_records = quote(write_returns(list(), tempfile())),
    write_returns_path_na = quote(write_returns(x, NA_character_)),
    write_returns_unknown_format = quote(write_returns(x, tempfile(), cin = "json")),
    sfp_data_con_not_connection = quote(sfp_data(children = "children", con = "nope")),
    write_db_not_records = quote(write_db(list(), NULL)),
    write_db_not_connection = quote(write_db(x, "nope"))
  )
  # the messages name the temporary directory: snapshot them without it
  expect_refused(cases, clean = function(m) gsub(empty_dir, "<dir>", m, fixed = TRUE))
})

test_that("huge requests are counted before anything is listed: perm_test(), sw_randomise(), power_sim()", {
  # 20 authorities: 20! ~ 2.4e18 allocations are counted, never listed
  las <- sprintf("L%02d", 1:20)
  a <- sw_randomise(las, seed = 1, max_enumerate = 1e6)
  expect_null(a$admissible)
  expect_equal(a$n_admissible, factorial(20))
  d <- expand.grid(la = las, step = 0:20, rep = 1:2, stringsAsFactors = FALSE)
  d$treated <- as.integer(d$step >= match(d$la, las))
  d$y <- sin(seq_len(nrow(d)))
  p <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d, n_perm = 19,
                 conf_int = FALSE)
  expect_true(p$sampled)
  expect_equal(p$n_used, 19L)
  expect_equal(p$n_allocations, factorial(20))
  # requests of 1e9 draws (1e9 x 20 allocations, 1e9 trials) or worse are
  # refused at the argument check, before any allocation
  pd <- power_design(m = 50)
  cases <- list(
    perm_n_perm_huge = quote(perm_test(y ~ 1, statistic = "npwp", data = d, n_perm = 1e9)),
    perm_n_perm_inf = quote(perm_test(y ~ 1, statistic = "npwp", data = d, n_perm = Inf)),
    perm_n_perm_fraction = quote(perm_test(y ~ 1, statistic = "npwp", data = d, n_perm = 99.5)),
    perm_max_enumerate_huge = quote(perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d,
                                              max_enumerate = 1e19)),
    randomise_max_enumerate_huge = quote(sw_randomise(las, seed = 1, max_enumerate = 1e19)),
    power_sim_n_sims_huge = quote(power_sim(pd, 0.02, n_sims = 1e9, parallel = FALSE)),
    power_sim_n_sims_inf = quote(power_sim(pd, 0.02, n_sims = Inf, parallel = FALSE)),
    power_sim_n_sims_fraction = quote(power_sim(pd, 0.02, n_sims = 2.5, parallel = FALSE)),
    power_sim_n_perm_huge = quote(power_sim(pd, 0.02, n_sims = 2, analysis = "glmm_perm",
                                            n_perm = 1e9, parallel = FALSE))
  )
  msgs <- expect_refused(cases)
  for (nm in names(cases)) {
    expect_match(msgs[[nm]], "^`(n_perm|max_enumerate|n_sims)`", label = paste(nm, "names the argument"))
  }
})

test_that("the C layer's whole-number scalars refuse non-whole doubles (B = 2.5 is not 2)", {
  boot <- get("ffi_boot_weights", envir = asNamespace("sfpceval"))
  for (B in list(2.5, 4 + 1e-9, -0.5)) {
    e <- expect_error(.Call(boot, 2L, 1L, B, FALSE), class = "sfpceval_internal_error")
    expect_match(conditionMessage(e), "ffi_boot_weights().*`B` must be a whole number", perl = TRUE)
  }
  e <- expect_error(.Call(boot, 2.5, 1L, 4L, TRUE), class = "sfpceval_internal_error")
  expect_match(conditionMessage(e), "`G` must be a whole number")
  # whole doubles are accepted as before, and give the integers' result
  expect_identical(.Call(boot, 2, 1, 4, TRUE), .Call(boot, 2L, 1L, 4L, TRUE))
  # the enumeration size is still checked, once, by the argument check
  e <- expect_error(.Call(boot, 2L, 1L, 5L, TRUE), class = "sfpceval_internal_error")
  expect_match(conditionMessage(e), "must be 2\\^G")
})

test_that("more hostile input to analyse(), report(), disclose() and sfp_data(): named, never R's own message", {
  b <- battery_fv()
  x <- b$x
  d <- b$d
  ch <- x$children
  a0 <- structure(list(results = data.frame(), tables = list(t = data.frame(g = "a", n = 20))),
                  class = "sfp_analysis")
  a_file <- withr::local_tempfile(lines = "not a directory")
  cases <- list(
    analyse_progress_na = quote(analyse(x, d, progress = NA)),
    analyse_no_outcomes = quote(analyse(x, d, outcomes = character(0))),
    analyse_no_models = quote(analyse(x, d, models = protocol_models(d)[0, ])),
    analyse_cost_text = quote(analyse(x, d, cost = "x")),
    analyse_cost_unnamed = quote(analyse(x, d, cost = list(60000))),
    report_title_number = quote(report(a0, tempfile(), html = FALSE, title = 1)),
    report_results_not_table = quote(report(structure(list(results = 1:3), class = "sfp_analysis"),
                                            tempfile(), html = FALSE)),
    report_tables_not_list = quote(report(structure(list(results = data.frame(), tables = "x"),
                                                    class = "sfp_analysis"), tempfile(), html = FALSE)),
    report_tables_unnamed = quote(report(structure(list(tables = list(data.frame(n = 20))),
                                                   class = "sfp_analysis"), tempfile(), html = FALSE)),
    report_dir_is_a_file = quote(report(a0, a_file, html = FALSE)),
    disclose_zeros_na = quote(disclose(data.frame(n = c(3, 20)), zeros = NA)),
    disclose_margins_number = quote(disclose(data.frame(n = c(3, 20)), margins = 1)),
    disclose_counts_number = quote(disclose(data.frame(n = c(3, 20)), counts = 1)),
    disclose_count_column_text = quote(disclose(data.frame(n = c("3", "20")), counts = "n")),
    sfp_data_children_vector = quote(sfp_data(children = 1:3)),
    sfp_data_path_without_con = quote(sfp_data(children = "/no/such/children.csv")),
    sfp_data_no_child_id = quote(sfp_data(children = ch[setdiff(names(ch), "child_id")])),
    sfp_data_child_id_all_na = quote(sfp_data(children = transform(ch, child_id = NA), warn = FALSE)),
    sfp_data_referral_date_all_na = quote(sfp_data(children = ch, referrals = transform(x$referrals, referral_date = NA),
                                                   warn = FALSE)),
    few_treated_group_all_na = quote(few_treated_test(y ~ x, transform(la_year_rows(), la = NA), "la", "year"))
  )
  msgs <- expect_refused(cases, clean = function(m) gsub(a_file, "<file>", m, fixed = TRUE))
  expect_match(msgs[["disclose_count_column_text"]], "`n`, which holds character")
  expect_match(msgs[["report_dir_is_a_file"]], "existing file, not a directory")
})
