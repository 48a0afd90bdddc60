# Whole-plan runs on the bundled examples (fixed seeds); each takes seconds.
contract <- c("programme", "strand", "outcome", "analysis", "term", "scale", "estimate",
              "std.error", "conf.low", "conf.high", "p.value", "p.adjusted", "model", "status")

fv_run <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      data(sfp_example_fv, package = "sfpceval", envir = environment())
      d <- design_family_valued(sfp_example_fv)
      a <- suppressMessages(analyse(sfp_example_fv, d, imputations = 0))
      cache <<- list(x = sfp_example_fv, d = d, a = a)
    }
    cache
  }
})
fs_run <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      data(sfp_example_fs, package = "sfpceval", envir = environment())
      d <- design_family_safeguarding(sfp_example_fs)
      a <- suppressMessages(analyse(sfp_example_fs, d, imputations = 0))
      cache <<- list(x = sfp_example_fs, d = d, a = a)
    }
    cache
  }
})

# Every number of a results row equals the object it came from.
walk_results <- function(a) {
  r <- a$results
  ok <- r[r$status == "ok", ]
  expect_gt(nrow(ok), 0)
  n_checked <- 0L
  for (i in seq_len(nrow(ok))) {
    row <- ok[i, ]
    fit <- a$fits[[row$model]]
    expect_false(is.null(fit))
    est <- row$estimate
    if (inherits(fit, "sw_glmm") || inherits(fit, "did_fit") || inherits(fit, "sfp_count_fit") ||
        !is.null(fit$coefficients) && row$term %in% names(fit$coefficients)) {
      if (row$scale == "risk_difference" && inherits(fit, "sw_glmm") &&
          identical(fit$family$family, "binomial")) {
        rd <- fit$treatment$risk_difference
        rd <- rd[rd$type == "marginal", ]
        expect_equal(est, rd$estimate)
        expect_equal(row$std.error, rd$std.error)
      } else {
        expect_equal(est, unname(fit$coefficients[[row$term]]))
        V <- if (inherits(fit, "sw_glmm") && !is.null(fit$cr2)) fit$cr2$vcov else fit$vcov
        expect_equal(row$std.error, sqrt(unname(V[row$term, row$term])))
        if (inherits(fit, "sw_glmm") && !is.null(fit$cr2)) expect_equal(row$df, unname(fit$cr2$df[[row$term]]))
      }
      q <- if (is.finite(row$df)) stats::qt(0.975, row$df) else stats::qnorm(0.975)
      expect_equal(row$conf.high, est + q * row$std.error)
      if (inherits(fit, "did_fit")) expect_equal(row$df, unname(fit$df[[row$term]]))
      n_checked <- n_checked + 1L
    } else if (inherits(fit, "sw_perm_test") || !is.null(fit$p_value)) {
      expect_equal(row$p.value, fit$p_value)
      expect_equal(est, fit$estimate)
      n_checked <- n_checked + 1L
    } else if (inherits(fit, "sfp_bacon")) {
      expect_equal(est, fit$estimate)
      n_checked <- n_checked + 1L
    } else if (inherits(fit, "sfp_placebo")) {
      expect_equal(est, fit$stacked$estimate)
      expect_equal(row$p.value, fit$stacked$p.value)
      n_checked <- n_checked + 1L
    } else if (!is.null(fit$statistic)) {
      expect_equal(est, unname(fit$statistic))
      expect_equal(row$p.value, unname(fit$p.value))
      n_checked <- n_checked + 1L
    }
  }
  expect_equal(n_checked, nrow(ok))
}

test_that("analyse(FV): the output contract", {
  run <- fv_run()
  a <- run$a
  expect_s3_class(a, "sfp_analysis")
  expect_true(all(contract %in% names(a$results)))
  expect_identical(as.data.frame(a), a$results)
  expect_true(all(a$results$model %in% a$models$id))
  expect_true(all(names(a$fits) %in% a$models$id))
  expect_setequal(unique(a$results$strand), c("stepped_wedge", "did"))
  expect_true(all(c("table1", "exclusion_flow", "mdes", "missing", "multiplicity",
                    "triangulation") %in% names(a$tables)))
  expect_true(all(a$results$status[a$results$strand == "did"] != "ok"))
  # the absence logit runs (sessions missed out of sessions possible), so
  # walk_results() checks it against its sw_glmm() fit
  expect_true(all(a$results$status[a$results$model == "fv_sw_absence_logit"] == "ok"))
  expect_false(any(grepl("^not available yet", a$results$status)))
  expect_output(print(a), "sfp_analysis")
  expect_output(print(summary(a)), "Status")
})

test_that("analyse(FV): every number equals the function call it came from", {
  walk_results(fv_run()$a)
})

test_that("analyse(FV): the primary model refitted by hand gives the same numbers", {
  run <- fv_run()
  a <- run$a
  fit <- a$fits$fv_sw_cla_18m_primary
  co <- as.data.frame(build_cohort(run$x, run$d))
  p <- co[!is.na(co$cla_18m), ]
  # the plan's rule, written out: factor levels without an event are merged
  # into the largest level; constant covariates are left out (fit$formula)
  vars <- intersect(all.vars(fit$formula), names(p))
  for (v in vars) {
    if (!is.factor(p[[v]])) next
    keep <- !is.na(p$cla_18m) & stats::complete.cases(p[vars])
    tab <- table(droplevels(p[[v]][keep]), p$cla_18m[keep])
    bad <- rownames(tab)[tab[, 1] == 0 | tab[, 2] == 0]
    if (length(bad)) {
      big <- names(which.max(table(droplevels(p[[v]][keep]))[setdiff(rownames(tab), bad)]))
      x <- as.character(p[[v]]); x[x %in% bad] <- big; p[[v]] <- factor(x)
    }
    p[[v]] <- droplevels(p[[v]])
  }
  ref <- suppressWarnings(sw_glmm(fit$formula, p))
  r <- a$results[a$results$model == "fv_sw_cla_18m_primary" & a$results$scale == "log_odds", ]
  expect_equal(r$estimate, unname(ref$coefficients[["treated"]]))
  expect_equal(r$std.error, sqrt(ref$vcov["treated", "treated"]))
  # the bootstrap and the permutation test on that fit
  wb <- wild_boot(ref, "treated", seed = 1)
  expect_equal(a$results$p.value[a$results$model == "fv_sw_cla_18m_wild"], wb$p_value)
})

test_that("analyse(FV): the absence logit equals sw_glmm() on the absence panel by hand (and lme4)", {
  run <- fv_run()
  a <- run$a
  fit <- a$fits$fv_sw_absence_logit
  # "a logit model to check the robustness of our regression on unauthorised
  # school absence rates": sessions missed out of sessions possible per term
  expect_identical(deparse(fit$formula[[2]]),
                   "cbind(unauth_sessions, sessions_possible - unauth_sessions)")
  cohort <- build_cohort(run$x, run$d)
  ab <- absence_panel(cohort)
  co <- as.data.frame(cohort)
  co <- co[setdiff(names(co), setdiff(names(ab), "child_id"))]
  p <- merge(ab, co, by = "child_id")
  vars <- intersect(all.vars(fit$formula), names(p))
  for (v in vars) if (is.factor(p[[v]])) p[[v]] <- droplevels(p[[v]])
  ref <- suppressWarnings(sw_glmm(fit$formula, p))  # the same rows with missing covariates left out
  expect_equal(fit$ntrials, ref$ntrials)
  expect_equal(fit$ntrials, sum(p$sessions_possible[stats::complete.cases(p[vars])]))
  r <- a$results[a$results$model == "fv_sw_absence_logit" & a$results$scale == "log_odds", ]
  expect_equal(r$estimate, unname(ref$coefficients[["treated"]]))
  expect_equal(r$std.error, sqrt(ref$vcov["treated", "treated"]))
  skip_if_not_installed("lme4")
  gl <- suppressMessages(suppressWarnings(lme4::glmer(fit$formula, p, family = stats::binomial())))
  expect_equal(r$estimate, unname(lme4::fixef(gl)[["treated"]]), tolerance = 1e-4)
})

test_that("analyse(FV): Hochberg within the secondary family equals p.adjust()", {
  r <- fv_run()$a$results
  fam <- r[r$analysis == "secondary" & r$status == "ok" & !duplicated(r$model), ]
  expect_equal(fam$p.adjusted, stats::p.adjust(fam$p.value, method = "hochberg"))
  expect_true(all(is.na(r$p.adjusted[r$analysis != "secondary"])))
  expect_equal(nrow(fv_run()$a$tables$multiplicity), nrow(fam))
})

test_that("analyse(FS): output, matching and CEM tables, the walk", {
  run <- fs_run()
  a <- run$a
  expect_true(all(contract %in% names(a$results)))
  expect_true(all(c("matching", "cem") %in% names(a$tables)))
  expect_true(all(a$tables$cem$pct_treated_matched > 0 & a$tables$cem$pct_treated_matched <= 100))
  expect_true(all(a$tables$cem$l1_after <= a$tables$cem$l1_before))
  # the weighted BCJ FGLS, the hurdle and the tobit run: covariates constant
  # or aliased in their rows are left out and noted (#14)
  for (id in c("fs_did_cla_18m_fgls", "fs_did_days_cpp_18m_hurdle", "fs_did_cpp_duration_tobit")) {
    expect_equal(unique(a$results$status[a$results$model == id]), "ok")
  }
  sp <- summary(a)$specification
  expect_true(all(c("fs_did_cla_18m_fgls", "fs_did_cla_18m_primary") %in% sp$model))
  expect_output(print(summary(a)), "Covariates left out or levels merged")
  # each left-out covariate is really absent from the fitted formula
  f <- a$fits$fs_did_cla_18m_primary$formula
  gone <- regmatches(sp$note[sp$model == "fs_did_cla_18m_primary"],
                     gregexpr("`[^`]+`", sp$note[sp$model == "fs_did_cla_18m_primary"]))[[1]]
  expect_gt(length(gone), 0)
  expect_false(any(gsub("`", "", gone) %in% all.vars(f)))
  expect_match(a$results$status[a$results$model == "fs_did_cla_18m_hausman"], "^not run")
  # the stepped-wedge strand's wild bootstrap runs on the linear mixed model
  # the baseline-rate rule chose (walked below against its wild_boot() object)
  expect_equal(a$fits$fs_sw_cla_18m_primary$family$family, "gaussian")
  expect_equal(a$results$status[a$results$model == "fs_sw_cla_18m_wild"], "ok")
  expect_s3_class(a$fits$fs_sw_cla_18m_wild, "wild_boot")
  wb <- suppressWarnings(wild_boot(a$fits$fs_sw_cla_18m_primary, "treated", seed = 1L), classes = "sfpceval_few_clusters")
  expect_equal(a$results$p.value[a$results$model == "fs_sw_cla_18m_wild"], wb$p_value)
  expect_equal(a$results$conf.low[a$results$model == "fs_sw_cla_18m_wild"], wb$conf_int[1])
  walk_results(a)
  # triangulation of the two strands equals triangulate() on their primary rows
  tr <- a$tables$triangulation
  r <- a$results
  did <- r[r$model == tr$model[1] & r$scale == tr$scale[1], ]
  sw <- r[r$model == tr$model[2] & r$scale == tr$scale[1], ]
  ref <- triangulate(did, sw)
  expect_equal(tr$estimate, ref$estimate)
})

test_that("analyse(FS): the primary DiD equals stack_pairs() + cem() + did_fit() by hand", {
  run <- fs_run()
  a <- run$a
  co <- build_cohort(run$x, run$d)
  m <- a$fits$fs_did_cla_18m_primary
  mt <- suppressWarnings(match_trends(
    build_cohort(run$x, `[[<-`(run$d, "trial_start", min(run$x$referrals$referral_date)),
                 outcomes = c("cla_18m", "cpp_duration", "days_cpp_18m", "rereferral_18m")),
    run$d, "cla_18m"))
  st <- stack_pairs(co, mt, run$d)
  st <- st[!is.na(st$cla_18m), ]
  st$cem_weight <- cem(data = st, design = run$d)$weights
  st <- st[st$cem_weight > 0, ]
  ref <- suppressMessages(did_fit(m$formula, st, cluster = "la", weights = "cem_weight"))
  r <- a$results[a$results$model == "fs_did_cla_18m_primary", ]
  expect_equal(r$estimate, unname(ref$coefficients[["treated"]]))
  expect_equal(r$std.error, sqrt(ref$vcov["treated", "treated"]))
  expect_equal(r$df, unname(ref$df[["treated"]]))
})

test_that("analyse(FS): the absence DiD (weighted LMM, CR2 by LA) equals sw_glmm() by hand", {
  run <- fs_run()
  a <- run$a
  r <- a$results[a$results$model == "fs_did_absence_secondary", ]
  expect_equal(r$status, "ok")
  fit <- a$fits$fs_did_absence_secondary
  expect_s3_class(fit, "sw_glmm")
  # by hand: the absence panel, stacked by the primary outcome's pairs, CEM
  # within pair x financial year, the matched rows (weight > 0)
  co <- build_cohort(run$x, run$d)
  ab <- absence_panel(co)
  p <- as.data.frame(co)
  p <- merge(ab, p[setdiff(names(p), setdiff(names(ab), "child_id"))], by = "child_id")
  mt <- suppressWarnings(match_trends(
    build_cohort(run$x, `[[<-`(run$d, "trial_start", min(run$x$referrals$referral_date)),
                 outcomes = c("cla_18m", "cpp_duration", "days_cpp_18m", "rereferral_18m")),
    run$d, "cla_18m"))
  st <- stack_pairs(p, mt, run$d)
  st <- st[!is.na(st$absence_rate), ]
  st$cem_weight <- cem(data = st, design = run$d)$weights
  st <- st[st$cem_weight > 0, ]
  st$child_pair <- paste(st$child_id, st$pair)
  vars <- intersect(all.vars(fit$formula), names(st))
  for (v in vars) if (is.factor(st[[v]])) st[[v]] <- droplevels(st[[v]])
  ref <- suppressWarnings(sw_glmm(fit$formula, st, family = gaussian(), weights = "cem_weight",
                                  cluster = "la"))
  expect_equal(nobs(fit), nobs(ref))
  expect_equal(coef(fit), coef(ref), tolerance = 1e-10)
  expect_equal(r$estimate, unname(ref$coefficients[["treated"]]), tolerance = 1e-10)
  expect_equal(r$std.error, sqrt(ref$cr2$vcov["treated", "treated"]), tolerance = 1e-8)
  expect_equal(r$df, unname(ref$cr2$df[["treated"]]), tolerance = 1e-8)
  # the protocol's specification: the child random effect, LA and year effects,
  # school terms and time since referral, CEM weights, CR2 by authority
  expect_equal(names(fit$sigma), "child_pair")
  expect_true(all(c("treated", "days_since_referral") %in% names(coef(fit))))
  expect_true(any(grepl("^factor\\(la\\)", names(coef(fit)))))
  expect_true(any(grepl("^factor\\(fin_year\\)", names(coef(fit)))))
  expect_true(any(grepl("^factor\\(term_index\\)", names(coef(fit)))))
  expect_equal(fit$cr2$cluster, "la")
  expect_equal(fit$cr2$n_clusters, length(unique(st$la)))
})

test_that("analyse(): multiple imputation pools every model by Rubin's rules", {
  skip_if_not_installed("mice")
  run <- fv_run()
  a <- suppressMessages(analyse(run$x, run$d, imputations = 2, sensitivity = FALSE,
                                strands = "stepped_wedge", outcomes = c("cla_18m", "cpp_12m")))
  imp <- a$tables$imputation
  expect_setequal(unique(imp$imputation), 1:2)
  expect_true(any(grepl("^imputed", a$tables$missing$action[grepl("^fsm", a$tables$missing$covariate)])))
  for (id in c("fv_sw_cla_18m_primary", "fv_sw_cpp_12m_secondary")) {
    it <- imp[imp$model == id & imp$scale == "log_odds", ]
    p <- pool_rubin(it$estimate, it$std.error)
    r <- a$results[a$results$model == id & a$results$scale == "log_odds", ]
    expect_equal(r$estimate, p$estimate)
    expect_equal(r$std.error, p$std.error)
    expect_equal(r$p.value, p$p.value)
    expect_equal(r$n_imputations, 2L)
    # the stored fit is the first imputation's
    expect_equal(unname(a$fits[[id]]$coefficients[["treated"]]), it$estimate[1])
  }
  # the same seed gives the same imputations; the caller's random state is kept
  set.seed(42); u1 <- runif(1)
  set.seed(42)
  b <- suppressMessages(analyse(run$x, run$d, imputations = 2, sensitivity = FALSE,
                                strands = "stepped_wedge", outcomes = "cla_18m"))
  expect_equal(runif(1), u1)
  expect_equal(b$results$estimate[1], a$results$estimate[1])
})

test_that("plan_mice_method() gives mice::make.method()'s default methods (#14)", {
  skip_if_not_installed("mice")
  set.seed(1)
  n <- 40
  d <- data.frame(num = rnorm(n), two = factor(sample(c("a", "b"), n, TRUE)),
                  ord = factor(sample(c("lo", "mid", "hi"), n, TRUE), ordered = TRUE),
                  many = factor(sample(letters[1:5], n, TRUE)), full = rnorm(n),
                  fullf = factor(sample(c("x", "y"), n, TRUE)))
  for (v in c("num", "two", "ord", "many")) d[[v]][sample(n, 5)] <- NA
  ref <- mice::make.method(d)
  expect_equal(plan_mice_method(d, names(d)), ref)
  # variables not asked for are not imputed
  ref[c("two", "many")] <- ""
  expect_equal(plan_mice_method(d, c("num", "ord", "full")), ref)
})

test_that("analyse(): imputation without mice says what was done", {
  run <- fv_run()
  old <- options(sfpceval.use_mice = FALSE)
  on.exit(options(old), add = TRUE)
  expect_message(a <- analyse(run$x, run$d, imputations = 5, sensitivity = FALSE,
                              strands = "stepped_wedge", outcomes = "cla_18m"),
                 "mice is not installed.*complete cases")
  expect_equal(a$settings$imputations, 0L)
  expect_true(any(grepl("^complete cases", a$tables$missing$action[grepl("^fsm", a$tables$missing$covariate)])))
})

test_that("analyse(): bad input gives clear errors", {
  run <- fv_run()
  expect_snapshot(error = TRUE, analyse(run$x, run$d, strands = "did"))
  expect_snapshot(error = TRUE, analyse(run$x, run$d, outcomes = "cla_24m"))
  expect_snapshot(error = TRUE, analyse(run$x, run$d, imputations = 1))
  expect_snapshot(error = TRUE, analyse(list(), run$d))
  m <- protocol_models(run$d)
  m$estimator[1] <- "lm"
  expect_snapshot(error = TRUE, analyse(run$x, run$d, models = m))
  # FV design without comparators: the DiD strand is reported, with a message
  expect_message(analyse(run$x, run$d, sensitivity = FALSE, imputations = 0,
                         outcomes = "cla_18m"), "no comparator authorities")
})

test_that("analyse(): an edited plan is run as edited", {
  run <- fv_run()
  m <- protocol_models(run$d, outcomes = "cla_18m", sensitivity = FALSE, strands = "stepped_wedge")
  m <- m[m$id == "fv_sw_cla_18m_primary", ]
  m$formula <- "cla_18m ~ treated + factor(step) + age_band + (1 | la)"
  m$x <- "age_band"; m$z <- ""
  a <- analyse(run$x, run$d, models = m, imputations = 0)
  co <- as.data.frame(build_cohort(run$x, run$d))
  ref <- sw_glmm(cla_18m ~ treated + factor(step) + age_band + (1 | la), co[!is.na(co$cla_18m), ])
  expect_equal(a$results$estimate[1], unname(ref$coefficients[["treated"]]))
})

test_that("analyse(): the primary interval covers the simulated effect (both programmes)", {
  skip_on_cran()
  # Family Valued: log odds ratio -0.5 of becoming looked after
  x <- simulate_sfp("family_valued", children_per_la_year = 1500, effects = list(cla = -0.5), seed = 11)
  d <- design_family_valued(x)
  a <- suppressMessages(analyse(x, d, outcomes = "cla_18m", sensitivity = FALSE,
                                strands = "stepped_wedge", imputations = 0))
  r <- a$results[a$results$model == "fv_sw_cla_18m_primary" & a$results$scale == "log_odds", ]
  expect_true(r$conf.low < -0.5 && -0.5 < r$conf.high)
  # Family Safeguarding: the DiD risk difference; the truth is the difference
  # the effect makes to the treated children after go-live (same seed, no effect)
  sim <- function(eff) simulate_sfp("family_safeguarding", n_la = 8, n_treated = 3,
                                    children_per_la_year = 600, effects = list(cla = eff), seed = 5)
  x1 <- sim(-0.6)
  x0 <- sim(0)
  ds <- design_family_safeguarding(x1)
  c1 <- as.data.frame(suppressMessages(build_cohort(x1, ds, outcomes = "cla_18m")))
  c0 <- as.data.frame(suppressMessages(build_cohort(x0, ds, outcomes = "cla_18m")))
  truth <- mean(c1$cla_18m[c1$treated == 1], na.rm = TRUE) - mean(c0$cla_18m[c0$treated == 1], na.rm = TRUE)
  b <- suppressMessages(analyse(x1, ds, outcomes = "cla_18m", sensitivity = FALSE, imputations = 0))
  r <- b$results[b$results$model == "fs_did_cla_18m_primary", ]
  expect_true(r$conf.low < truth && truth < r$conf.high)
  s <- b$results[b$results$model == "fs_sw_cla_18m_primary" & b$results$scale == r$scale, ]
  expect_true(s$conf.low < truth && truth < s$conf.high)
})

test_that("analyse(): independent models on a future plan give the serial results", {
  skip_if_not_installed("future.apply")
  skip_on_os("windows")
  run <- fv_run()
  args <- list(run$x, run$d, outcomes = c("cla_18m", "cpp_12m"), sensitivity = FALSE,
               strands = "stepped_wedge", imputations = 0)
  serial <- suppressMessages(do.call(analyse, args))
  old <- future::plan(future::multicore, workers = 2)
  on.exit(future::plan(old), add = TRUE)
  par <- suppressMessages(do.call(analyse, args))
  expect_equal(par$results, serial$results)
})

test_that("analyse(): cost-benefit and fidelity tables when asked", {
  run <- fs_run()
  a <- suppressMessages(analyse(run$x, run$d, outcomes = "cla_18m", sensitivity = FALSE,
                                imputations = 0, cost = list(cost_per_child = 50000, force = TRUE),
                                fidelity = data.frame(la = "901", time_point = "6m",
                                                      indicator = "caseload", value = 16)))
  cb <- a$tables$cost_benefit
  # the DiD strand's first primary estimate on the risk-difference scale
  # (the FGLS when it runs, as at the protocol's size)
  prim <- a$results[a$results$model == cb$model & a$results$scale == "risk_difference", ]
  expect_equal(cb$model, plan_primary(a$results, "did", "risk_difference")$model[1])
  ref <- cost_benefit(prim$estimate, prim$p.value, cb$children_per_year,
                      cost_per_child = 50000, force = TRUE)
  expect_equal(cb$pv_benefit, ref$summary$pv_benefit)
  expect_true(a$tables$fidelity$met)
})

test_that("analyse(FS): CEM and the DiD refitted per imputation and pooled", {
  skip_if_not_installed("mice")
  run <- fs_run()
  a <- suppressMessages(analyse(run$x, run$d, imputations = 2, outcomes = "cla_18m",
                                sensitivity = FALSE))
  imp <- a$tables$imputation
  it <- imp[imp$model == "fs_did_cla_18m_primary", ]
  expect_equal(nrow(it), 2L)
  # fsm is a CEM variable: the imputations give different matched samples
  expect_false(isTRUE(all.equal(it$estimate[1], it$estimate[2])))
  p <- pool_rubin(it$estimate, it$std.error, df_complete = it$df[1])
  r <- a$results[a$results$model == "fs_did_cla_18m_primary", ]
  expect_equal(r$estimate, p$estimate)
  expect_equal(r$std.error, p$std.error)
  expect_equal(r$df, p$df)
  expect_lt(r$df, it$df[1])   # never more than the complete-data df
  wb <- a$results[a$results$model == "fs_did_cla_18m_wild", ]
  expect_equal(wb$n_imputations, 2L)
})

# ---- covariates constant, aliased or separated in a row's sample (#14) ----

# A hand-made row of the plan (the columns plan_prune() reads).
prune_row <- function(id, estimator, x, z = "", term = "treated") {
  data.frame(id = id, estimator = estimator, x = x, z = z, cluster = "la", time = "year",
             term = term, stringsAsFactors = FALSE)
}
# 4 LAs x 6 years x 12 children; LAs a, b treated from 2019. `sex` has a
# reference level ("unknown") that only occurs in rows with a missing `fsm`;
# `remote` is constant within each LA (aliased with the LA effects).
prune_data <- function(seed = 3) {
  set.seed(seed)
  d <- expand.grid(child = 1:12, year = 2015:2020, la = c("a", "b", "c", "d"))
  n <- nrow(d)
  d$treated <- as.integer(d$la %in% c("a", "b") & d$year >= 2019)
  d$sex <- factor(sample(c("male", "female"), n, TRUE), levels = c("unknown", "male", "female"))
  d$age <- sample(0:17, n, TRUE)
  d$fsm <- rbinom(n, 1, 0.4)
  d$fsm[1:5] <- NA
  d$sex[1:5] <- "unknown"
  d$remote <- as.integer(d$la %in% c("a", "c"))
  d$y <- 0.3 + 0.1 * d$treated + 0.01 * d$age + 0.05 * (d$sex == "female") + rnorm(n, sd = 0.2)
  d
}

test_that("plan_prune(): a reference level seen only in incomplete rows aliases nothing", {
  d <- prune_data()
  row <- prune_row("r_lm", "did_fit", "sex, age, fsm")
  f <- y ~ treated + sex + age + fsm
  cache <- new.env()
  pr <- plan_prune(row, f, d, cache)
  # nothing is left out: sex varies in the complete rows
  expect_equal(deparse1(pr$formula), deparse1(f))
  expect_equal(levels(pr$df$sex), c("male", "female"))
  # the rows fitted are unchanged (those with a missing fsm stay out)
  expect_equal(sum(complete.cases(pr$df[all.vars(f)])), sum(complete.cases(d[all.vars(f)])))
  # lm() on the complete rows gives the same coefficients (it never saw "unknown")
  ref <- lm(f, d[complete.cases(d[all.vars(f)]), ])
  fit <- lm(pr$formula, pr$df)
  expect_equal(coef(fit), coef(ref)[names(coef(fit))])
  # the FGLS, which does not drop empty levels, now runs and equals the fit on
  # the data relevelled by hand
  row <- prune_row("r_fgls", "fgls_bcj", "sex, age, fsm")
  pr <- plan_prune(row, f, d, new.env())
  expect_error(suppressWarnings(fgls_bcj(f, d, group = "la", time = "year")), "collinear individual-level")
  fit <- suppressWarnings(fgls_bcj(pr$formula, pr$df, group = "la", time = "year"))
  h <- d[complete.cases(d[all.vars(f)]), ]
  h$sex <- factor(as.character(h$sex), levels = c("male", "female"))
  ref <- fgls_bcj(f, h, group = "la", time = "year")
  expect_equal(coef(fit), coef(ref))
  expect_equal(vcov(fit), vcov(ref))
})

test_that("plan_prune(): a covariate constant in the row's sample is left out, noted, as lm() aliases it", {
  d <- prune_data()
  d$fsm[d$year == 2015] <- NA
  d$disabled <- as.integer(d$year == 2015)   # 1 only where fsm is missing
  row <- prune_row("r_const", "did_fit", "sex, age, fsm, disabled")
  f <- y ~ treated + sex + age + fsm + disabled
  expect_message(pr <- plan_prune(row, f, d, new.env()),
                 "r_const: left out `disabled` (constant", fixed = TRUE)
  expect_equal(deparse1(pr$formula), "y ~ treated + sex + age + fsm")
  # lm() gives `disabled` an NA coefficient and the same others
  ref <- lm(f, d)
  expect_true(is.na(coef(ref)[["disabled"]]))
  fit <- lm(pr$formula, pr$df)
  expect_equal(coef(fit), coef(ref)[names(coef(fit))])
})

test_that("plan_prune(): the FGLS leaves out a cell-level covariate aliased with the LA effects", {
  d <- prune_data()
  row <- prune_row("r_z", "fgls_bcj", "sex, age", "remote")
  f <- y ~ treated + sex + age + remote
  h <- d[!is.na(d$fsm), ]
  h$sex <- droplevels(h$sex)
  expect_error(fgls_bcj(f, h, group = "la", time = "year"),
               "collinear with the group and period fixed effects")
  expect_message(pr <- plan_prune(row, f, d, new.env()), "left out `remote`", fixed = TRUE)
  expect_equal(deparse1(pr$formula), "y ~ treated + sex + age")
  # lm() with the LA and year dummies aliases `remote` too
  ref <- lm(y ~ factor(la) + factor(year) + treated + sex + age + remote, d)
  expect_true(is.na(coef(ref)[["remote"]]))
  # a cell-level covariate that varies over years is kept
  d$z2 <- as.numeric(d$year) * (d$la %in% c("a", "c")) + rnorm(4)[as.integer(d$la)]
  row <- prune_row("r_z2", "fgls_bcj", "sex, age", "z2")
  pr <- plan_prune(row, y ~ treated + sex + age + z2, d, new.env())
  expect_equal(deparse1(pr$formula), "y ~ treated + sex + age + z2")
  # an individual covariate whose within-cell variation repeats another's
  d$age2 <- d$age + 3 * as.integer(d$la) + d$year
  row <- prune_row("r_w", "fgls_bcj", "age, age2")
  expect_message(pr <- plan_prune(row, y ~ treated + age + age2, d, new.env()), "left out `age2`")
})

test_that("plan_prune(): the hurdle merges levels without zeros/positives and prunes the count part alone", {
  set.seed(5)
  n <- 600
  d <- data.frame(la = rep(letters[1:6], each = n / 6), year = rep(2016:2020, length.out = n))
  d$treated <- as.integer(d$la %in% c("a", "b") & d$year >= 2019)
  d$eth <- factor(sample(c("w", "b", "a"), n, TRUE, prob = c(0.7, 0.2, 0.1)), levels = c("w", "b", "a", "o"))
  d$age <- sample(0:17, n, TRUE)
  d$y <- ifelse(runif(n) < 0.5, rpois(n, exp(2 + 0.1 * d$treated)) + 1, 0)
  # level "o": 4 children, all with zero days (a logit of y > 0 is separated)
  d$eth[1:4] <- "o"
  d$y[1:4] <- 0
  # `age2` repeats `age` among the positive counts only: aliased in the
  # count part, identified in the zero part
  d$age2 <- ifelse(d$y > 0, 2 * d$age, sample(0:17, n, TRUE))
  row <- prune_row("r_h", "hurdle_fit", "eth, age, age2")
  f <- y ~ treated + eth + age + age2
  msgs <- character()
  pr <- withCallingHandlers(plan_prune(row, f, d, new.env()),
                            message = function(m) {
                              msgs <<- c(msgs, conditionMessage(m))
                              invokeRestart("muffleMessage")
                            })
  expect_match(msgs, "merged `eth` level(s) \"o\" into \"w\"", fixed = TRUE, all = FALSE)
  expect_match(msgs, "left out `age2` from the count part", fixed = TRUE, all = FALSE)
  expect_equal(deparse1(pr$formula), "y ~ treated + eth + age | treated + eth + age + age2")
  expect_error(hurdle_fit(f, d, cluster = "la"), "collinear columns in the count")
  fit <- hurdle_fit(pr$formula, pr$df, cluster = "la")
  # references on the data merged by hand: the zero part is glm()'s logit of
  # y > 0 with all four covariates, the count part the fit without `age2`
  h <- d
  h$eth <- factor(ifelse(h$eth == "o", "w", as.character(h$eth)), levels = c("w", "b", "a"))
  g <- glm(I(y > 0) ~ treated + eth + age + age2, binomial, h, control = glm.control(epsilon = 1e-14))
  expect_equal(unname(coef(fit)[grep("^zero_", names(coef(fit)))]), unname(coef(g)), tolerance = 1e-8)
  ref <- hurdle_fit(y ~ treated + eth + age | treated + eth + age + age2, h, cluster = "la")
  expect_equal(coef(fit), coef(ref))
  expect_equal(vcov(fit), vcov(ref))
})

test_that("plan_prune_did(): the logit the family rule picks gets separated levels merged", {
  set.seed(8)
  n <- 3000
  d <- data.frame(la = sample(letters[1:6], n, TRUE), year = sample(2016:2020, n, TRUE))
  d$treated <- as.integer(d$la %in% c("a", "b", "c") & d$year >= 2019)
  d$eth <- factor(sample(c("w", "b", "a"), n, TRUE, prob = c(0.7, 0.2, 0.1)),
                  levels = c("w", "b", "a", "c"))
  d$age <- sample(0:17, n, TRUE)
  d$y <- rbinom(n, 1, plogis(-3.3 - 0.2 * d$treated + 0.03 * d$age))
  # level "c": 6 children, none entering care
  d$eth[1:6] <- "c"
  d$y[1:6] <- 0
  d$w <- runif(n, 0.5, 2)
  row <- prune_row("r_logit", "did_fit", "eth, age")
  f <- y ~ treated + eth + age | la + year
  # baseline rate below 5%: the protocol's rule picks the logit
  expect_equal(did_family_rule(d$y, d$treated, d$w)$chosen, "binomial")
  # unmerged, the level's coefficient runs off towards -Inf
  f0 <- suppressWarnings(suppressMessages(did_fit(f, d, cluster = "la", weights = "w")))
  expect_lt(coef(f0)[["ethc"]], -8)
  expect_message(pr <- plan_prune_did(row, f, d, "w", "auto", new.env()),
                 "merged `eth` level(s) \"c\" into \"w\"", fixed = TRUE)
  expect_equal(deparse1(pr$formula), "y ~ treated + eth + age | la + year")
  fit <- suppressMessages(did_fit(pr$formula, pr$df, cluster = "la", weights = "w", vcov = "CR1"))
  expect_equal(fit$family, "binomial")
  h <- d
  h$eth <- factor(ifelse(h$eth == "c", "w", as.character(h$eth)), levels = c("w", "b", "a"))
  g <- suppressWarnings(glm(y ~ treated + eth + age + factor(la) + factor(year), binomial, h,
                            weights = w, control = glm.control(epsilon = 1e-14)))
  expect_equal(coef(fit), coef(g)[names(coef(fit))], tolerance = 1e-8)
  # a linear model (baseline rate within 5-95%) needs no merging
  d$y2 <- rbinom(n, 1, 0.3)
  d$y2[1:6] <- 0
  pr2 <- plan_prune_did(prune_row("r_lpm", "did_fit", "eth, age"), y2 ~ treated + eth + age | la + year,
                        d, "w", "auto", new.env())
  expect_equal(levels(pr2$df$eth), c("w", "b", "a", "c"))
})

# ---- the Family Valued DiD strand (comparators simulated) -------------------

# Five treated LAs, five comparators (four built parallel to a treated LA),
# a known log odds ratio of becoming looked after. The analyst's selection
# (the protocol's visual inspection) keeps the parallel comparator where a
# treated LA has one.
fv_did_run <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      x <- simulate_sfp("family_valued", children_per_la_year = 400, n_comparators = 5,
                        effects = list(cla = -0.5), seed = 3)
      d <- design_family_valued(x, strand = "did")
      par <- attr(x, "truth")$parallel_to
      par <- par[!is.na(par)]
      sel <- lapply(split(names(par), unname(par)), identity)
      a <- suppressMessages(analyse(x, d, outcomes = "cla_18m", sensitivity = FALSE,
                                    imputations = 0, matches = list(cla_18m = sel),
                                    progress = FALSE))
      cache <<- list(x = x, d = d, a = a, sel = sel)
    }
    cache
  }
})

test_that("analyse(FV, DiD strand): the primary intervals of both strands cover the simulated effect", {
  skip_on_cran()
  run <- fv_did_run()
  r <- run$a$results
  expect_true(all(r$status[r$model %in% c("fv_did_cla_18m_primary", "fv_did_cla_18m_wild")] == "ok"))
  # the FV DiD strand's logit: the log odds ratio the simulation applies to
  # referrals after go-live in the treated authorities
  did <- r[r$model == "fv_did_cla_18m_primary", ]
  expect_equal(did$scale, "log_odds")
  expect_true(did$conf.low < -0.5 && -0.5 < did$conf.high)
  # the stepped-wedge strand of the same design runs on the treated LAs only
  sw <- r[r$model == "fv_sw_cla_18m_primary" & r$scale == "log_odds", ]
  expect_true(sw$conf.low < -0.5 && -0.5 < sw$conf.high)
  expect_equal(unname(run$a$fits$fv_sw_cla_18m_primary$ngroups[["la"]]),
               sum(run$d$las$role == "treated"))
  walk_results(run$a)
})

test_that("analyse(FV, DiD strand): the primary DiD equals match_trends() + stack_pairs() + cem() + did_fit() by hand", {
  skip_on_cran()
  run <- fv_did_run()
  a <- run$a
  x <- run$x
  d <- run$d
  # trend matching on every referral since the start of the records
  md <- d
  md$trial_start <- min(x$referrals$referral_date)
  mco <- suppressMessages(build_cohort(x, md, outcomes = "cla_18m"))
  mt <- select_matches(suppressWarnings(match_trends(mco, d, "cla_18m")), run$sel)
  expect_identical(a$extras$matching$cla_18m$candidates, mt$candidates)
  # stacked by pair; CEM within pair x financial year, the FS coarsening with
  # the FV age bands
  co <- suppressMessages(build_cohort(x, d, outcomes = "cla_18m"))
  st <- stack_pairs(co, mt, d)
  st <- st[!is.na(st$cla_18m), ]
  cm <- cem(data = st, design = d)
  expect_equal(a$extras$cem$cla_18m$weights, cm$weights)
  expect_equal(cm$coarsening$variable, c("gender", "age", "ethnic_group", "disabled", "fsm",
                                          "uasc", "n_previous_cpp"))
  st$cem_weight <- cm$weights
  st <- st[st$cem_weight > 0, ]
  # the logit: covariate levels without an event merged into the largest level
  m <- a$fits$fv_did_cla_18m_primary
  row <- a$models[a$models$id == "fv_did_cla_18m_primary", ]
  covs <- intersect(strsplit(paste(row$x, row$z, sep = ", "), ", ")[[1]], all.vars(m$formula))
  keep <- stats::complete.cases(st[c("cla_18m", "treated", covs)])
  for (v in covs) {
    if (!is.factor(st[[v]]) && !is.character(st[[v]])) next
    tab <- table(as.character(st[[v]][keep]), st$cla_18m[keep])
    bad <- rownames(tab)[tab[, 1] == 0 | tab[, 2] == 0]
    if (length(bad)) {
      n <- table(as.character(st[[v]][keep]))
      big <- names(which.max(n[setdiff(names(n), bad)]))
      z <- as.character(st[[v]]); z[z %in% bad] <- big; st[[v]] <- factor(z)
    }
    if (is.factor(st[[v]])) st[[v]] <- droplevels(st[[v]])
  }
  ref <- suppressMessages(did_fit(m$formula, st, cluster = "la", weights = "cem_weight",
                                  family = "binomial"))
  r <- a$results[a$results$model == "fv_did_cla_18m_primary", ]
  expect_equal(r$estimate, unname(ref$coefficients[["treated"]]))
  expect_equal(r$std.error, sqrt(ref$vcov["treated", "treated"]))
  expect_equal(r$df, unname(ref$df[["treated"]]))
  # the wild bootstrap row is wild_boot() on that fit
  wb <- suppressMessages(wild_boot(ref, "treated", seed = 1L))
  expect_equal(a$results$p.value[a$results$model == "fv_did_cla_18m_wild"], wb$p_value)
  # the CEM table reports the CEM object
  ct <- a$tables$cem[a$tables$cem$model == "fv_did_cla_18m_primary", ]
  expect_equal(ct$matched_treated, unname(cm$n["Matched", "Treated"]))
  expect_equal(ct$l1_after, cm$imbalance$after$L1)
})

test_that("report(): the DiD strand's trend-matching and balance figures (FS and FV)", {
  skip_on_cran()
  for (a in list(fs_run()$a, fv_did_run()$a)) {
    expect_true(length(a$extras$matching) > 0)
    expect_true(all(vapply(a$extras$matching, inherits, TRUE, "sfp_trend_match")))
    expect_true(all(vapply(a$extras$cem, inherits, TRUE, "sfp_cem")))
    dir <- tempfile("report")
    rp <- suppressWarnings(report(a, dir, html = FALSE))
    for (o in names(a$extras$matching)) {
      expect_true(file.exists(file.path(dir, paste0("trend_matching_matching_", o, ".png"))))
    }
    for (o in names(a$extras$cem)) {
      f <- file.path(dir, paste0("balance_cem_", o, ".png"))
      expect_true(file.exists(f) || any(rp$withheld$item == paste0("figure balance_cem_", o)))
    }
    expect_true(file.exists(file.path(dir, "balance_cem_cla_18m.png")))
    unlink(dir, recursive = TRUE)
  }
})
