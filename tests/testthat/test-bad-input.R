# The bad-input battery: hostile records and arguments for the exported
# functions, each answered by an R error that names the table or argument
# (and the column and first rows where there are rows) and says how to fix
# it. The messages are kept as snapshots; every message must also carry a
# "Fix:" line and must not come from the C layer's second line of defence.

battery_panel <- function(n = 120, seed = 3) {
  set.seed(seed)
  d <- data.frame(la = sample(letters[1:6], n, TRUE), year = sample(2015:2019, n, TRUE),
                  stringsAsFactors = FALSE)
  d$treated <- as.integer(d$la %in% c("a", "b") & d$year >= 2017)
  d$x <- rnorm(n)
  d$w <- runif(n, 0.5, 2)
  d$y <- 0.2 * d$treated + d$x + rnorm(n)
  d$count <- ifelse(runif(n) < 0.5, rpois(n, 2) + 1, 0)
  d$days <- pmin(pmax(100 + 80 * d$x + rnorm(n, sd = 90), 0), 300)
  d$yb <- rbinom(n, 1, 0.4)
  d
}

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
  d <- battery_panel()
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
  msgs <- vapply(cases, function(e) error_message(eval(e)), "")
  for (nm in names(cases)) {
    expect_true(nzchar(msgs[[nm]]), label = paste(nm, "is refused"))
    expect_match(msgs[[nm]], "Fix:", label = nm)
    expect_match(msgs[[nm]], "`", label = paste(nm, "names an argument, table or column"))
  }
  expect_snapshot(cat(paste0("[", names(msgs), "]\n", msgs), sep = "\n\n"))
})
