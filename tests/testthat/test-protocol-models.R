fv_rollout <- function() {
  data.frame(la_code = c("301", "302", "303", "304", "305"), programme = "FV",
             role = "treated",
             go_live_date = as.Date(c("2020-04-01", "2020-10-01", "2021-04-01",
                                      "2021-10-01", "2022-04-01")),
             wedge_order = 1:5, stratum = c("high", "high", "low", "low", "low"))
}
fs_rollout <- function() {
  data.frame(la_code = c("101", "102", "201"), programme = "FS",
             role = c("treated", "treated", "comparator"),
             go_live_date = as.Date(c("2020-09-01", "2021-01-01", NA)))
}
rhs_terms <- function(f) {
  f <- sub("\\|[^()|]*$", "", f)
  attr(stats::terms(stats::as.formula(f)), "term.labels")
}
row_of <- function(m, id) {
  r <- m[m$id == id, , drop = FALSE]
  expect_equal(nrow(r), 1L)
  r
}

test_that("FV primary: 'logit(Y) = b0 + a0a + b1 FV + sum b I(t = i) + gX + rZ' (FV p. 15)", {
  d <- design_family_valued(fv_rollout())
  m <- protocol_models(d)
  r <- row_of(m, "fv_sw_cla_18m_primary")
  # "We use a logistic regression within the GLMM framework ... because the baseline rate is low."
  expect_equal(r$family, "binomial")
  expect_equal(r$estimator, "sw_glmm")
  expect_equal(r$scale, "log_odds")
  terms <- rhs_terms(r$formula)
  expect_equal(terms[1], "treated")                      # beta_1 FV_iat
  expect_true("factor(step)" %in% terms)                 # sum beta I(t = i)
  expect_true("1 | la" %in% terms)                       # alpha_0a random intercept
  # X: gender, ethnicity, age (0-3, 4-12 and 13-17), disability, FSM, UASC,
  # number of previous CPPs, main need (FV p. 16, "Covariates")
  x <- c("gender", "ethnicity_cin", "age_band", "academic_year", "disabled", "fsm_ever", "uasc",
         "n_previous_cpp", "primary_need")
  expect_true(all(x %in% terms))
  expect_true(all(c("gender", "age_band", "academic_year", "disabled", "uasc",
                    "n_previous_cpp", "primary_need") %in% terms))
  expect_true(any(grepl("^ethni", terms)) && any(grepl("^fsm", terms)))
  # Z: "Proportion ... Free School Meals", "Proportion ... white British",
  # "Presence of other Innovation Programmes"
  z <- c("prop_fsm", "prop_white_british", "other_innovation_programme")
  expect_true(all(z %in% terms))
  expect_equal(strsplit(r$z, ", ")[[1]], z)
  expect_equal(r$cluster, "la")
  expect_true(is.na(r$requires))
})

test_that("FV: 'we will consider ... a wild bootstrap with a correction for the small number of clusters'", {
  m <- protocol_models(design_family_valued(fv_rollout()))
  r <- row_of(m, "fv_sw_cla_18m_wild")
  expect_equal(r$estimator, "wild_boot")
  expect_equal(r$depends_on, "fv_sw_cla_18m_primary")
  expect_equal(r$analysis, "primary")   # inference of the primary analysis
  # FS: "Due to the small number of clusters, we will employ a robust inference technique"
  fs <- protocol_models(design_family_safeguarding(fs_rollout()))
  w <- row_of(fs, "fs_did_cla_18m_wild")
  expect_equal(w$analysis, "primary")
  expect_equal(w$depends_on, "fs_did_cla_18m_primary")
})

test_that("FV secondary: 'For all binary secondary outcomes ... the same regression specification as for the primary outcome'", {
  d <- design_family_valued(fv_rollout())
  m <- protocol_models(d)
  prim <- rhs_terms(row_of(m, "fv_sw_cla_18m_primary")$formula)
  for (o in c("return_36m", "cpp_12m", "kinship_first", "reunified_18m")) {
    r <- row_of(m, paste0("fv_sw_", o, "_secondary"))
    expect_equal(r$family, "binomial")
    expect_equal(rhs_terms(r$formula), prim)
    expect_equal(r$hochberg, "FV stepped_wedge secondary")
  }
  # "For the secondary outcomes number of days on CPPs/CIN plans and
  # unauthorised school absence rates, we will use a linear probability model."
  expect_equal(row_of(m, "fv_sw_days_plan_18m_secondary")$family, "gaussian")
  ab <- row_of(m, "fv_sw_absence_secondary")
  expect_equal(ab$family, "gaussian")
  # "we include individual random effects ... indicator variables for the
  # school term and a variable controlling for the time since the relevant referral"
  t_ab <- rhs_terms(ab$formula)
  expect_true(all(c("factor(term_index)", "days_since_referral", "1 | la/child_id") %in% t_ab))
  # reunification on its own population: "children ... that became looked
  # after within the trial period"
  expect_match(row_of(m, "fv_sw_reunified_18m_secondary")$population, "became looked after")
  # "we will use Hochberg multiple comparison adjustments for the secondary outcomes"
  expect_setequal(m$outcome[!is.na(m$hochberg)],
                  c("return_36m", "cpp_12m", "days_plan_18m", "kinship_first",
                    "reunified_18m", "absence"))
})

test_that("FV linear secondaries: 'as above, we will consider ... a wild bootstrap', and the CR3 t-test", {
  m <- protocol_models(design_family_valued(fv_rollout()))
  for (o in c("days_plan_18m", "absence")) {
    pid <- paste0("fv_sw_", o, "_secondary")
    # "For the secondary outcomes number of days on CPPs/CIN plans and
    # unauthorised school absence rates, we will use a linear probability
    # model. ... However, as above, we will consider whether or not applying a
    # wild bootstrap with a correction for the small number of clusters is
    # appropriate in this instance."
    w <- row_of(m, paste0("fv_sw_", o, "_wild"))
    expect_equal(w$estimator, "wild_boot")
    expect_equal(w$depends_on, pid)
    expect_equal(w$family, "gaussian")
    expect_equal(w$analysis, "secondary")
    expect_match(w$protocol, "as above, we will consider whether or not applying a wild bootstrap", fixed = TRUE)
    # the same hypothesis tested again: not one more member of the Hochberg family
    expect_true(is.na(w$hochberg))
    # the CR3 t-test with G - 1 df: a sensitivity row on the same fit
    c3 <- row_of(m, paste0("fv_sw_", o, "_cr3"))
    expect_equal(c3$estimator, "cr3")
    expect_equal(c3$depends_on, pid)
    expect_equal(c3$analysis, "cr3")
    expect_match(c3$inference, "t(G - 1)", fixed = TRUE)
    expect_true(is.na(c3$hochberg))
  }
  # binary secondaries (logit GLMMs) get neither; the wild rows stay without
  # the sensitivity grid, the CR3 rows do not
  expect_false(any(grepl("^fv_sw_(return_36m|cpp_12m|kinship_first|reunified_18m)_(wild|cr3)$", m$id)))
  m0 <- protocol_models(design_family_valued(fv_rollout()), sensitivity = FALSE)
  expect_true(all(c("fv_sw_days_plan_18m_wild", "fv_sw_absence_wild") %in% m0$id))
  expect_false(any(grepl("_cr3$", m0$id)))
  # every row a runner: analyse() knows the estimator
  expect_true(all(m$estimator %in% names(plan_runners)))
})

test_that("FV sensitivity grid follows the protocol's sections", {
  m <- protocol_models(design_family_valued(fv_rollout()))
  sens <- m[!m$analysis %in% c("primary", "secondary"), ]
  # "Children whose spent at least half their time ..." / "at least 4 weeks"
  expect_equal(row_of(m, "fv_sw_cla_18m_open_days_half")$treatment, "open_days_half")
  expect_equal(row_of(m, "fv_sw_cla_18m_open_days_28")$treatment, "open_days_28")
  # "re-run the analysis on care outcomes ... by the time they entered care"
  ce <- m[m$analysis == "treatment_care_entry", ]
  expect_setequal(ce$outcome, c("kinship_first", "reunified_18m"))
  expect_true(all(ce$treatment == "care_entry"))
  # "non-parametric permutation test"
  expect_equal(row_of(m, "fv_sw_cla_18m_permutation")$estimator, "perm_test")
  # "sum (FV . T_t+m) delta_m"
  expect_true(".exposure" %in% rhs_terms(row_of(m, "fv_sw_cla_18m_differential_time")$formula))
  # embedding period and "the point after which both awareness training and deep dive training"
  expect_equal(row_of(m, "fv_sw_cla_18m_embedding")$treatment, "embedding")
  expect_equal(row_of(m, "fv_sw_cla_18m_alt_go_live")$treatment, "alt_go_live")
  # "hurdle models when evaluating the impact on days on CPPs/CIN plans" / "a tobit model instead"
  expect_equal(row_of(m, "fv_sw_days_plan_18m_hurdle")$run_if, "excess_zeros")
  expect_equal(row_of(m, "fv_sw_days_plan_18m_tobit")$run_if, "censored")
  # "a logit model to check the robustness of our regression on unauthorised school absence rates"
  al <- row_of(m, "fv_sw_absence_logit")
  expect_equal(al$family, "binomial")
  # sessions missed out of sessions possible, with the linear absence
  # model's "individual random effects" (children within authorities)
  expect_true(is.na(al$requires))
  expect_equal(al$estimator, "sw_glmm")
  expect_match(al$formula, "^cbind\\(unauth_sessions, sessions_possible - unauth_sessions\\) ~ treated")
  expect_equal(al$random_effects, "(1 | la/child_id)")
  expect_equal(al$random_effects, row_of(m, "fv_sw_absence_secondary")$random_effects)
  expect_match(al$formula, "\\(1 \\| la/child_id\\)$")
  # "beta_2 HR_a + beta_3 HR_a * FV_iat"
  rd <- row_of(m, "fv_sw_cla_18m_readiness")
  expect_true(all(c("high_readiness", "treated:high_readiness") %in% rhs_terms(rd$formula)))
  expect_equal(rd$term, "treated:high_readiness")
  expect_true(all(sens$strand == "stepped_wedge" | sens$strand == "did"))
})

test_that("FV DiD strand needs comparators: rows kept with a clear status", {
  m <- protocol_models(design_family_valued(fv_rollout()))
  did <- m[m$strand == "did", ]
  expect_gt(nrow(did), 0)
  expect_true(all(grepl("no comparator authorities", did$requires)))
  # design_family_valued(strand = "did") takes comparators: "we will conduct
  # an analysis exploiting the stepped wedge design ... as well as a DiD
  # analysis" (FV, Triangulation of results). The protocol specifies the DiD
  # no further, so its rows are the FS DiD's (LA and financial-year fixed
  # effects, CEM weights, clustered by LA), run by analyse()
  ro <- rbind(fv_rollout(), data.frame(la_code = "401", programme = "FV", role = "comparator",
                                       go_live_date = as.Date(NA), wedge_order = NA, stratum = NA))
  dd <- design_family_valued(ro, strand = "did")
  expect_true(any(dd$las$role == "comparator"))
  did2 <- protocol_models(dd, strands = "did")
  expect_gt(nrow(did2), 0)
  fs2 <- protocol_models(design_family_safeguarding(fs_rollout()), strands = "did", sensitivity = FALSE)
  # the same rows as the FS DiD strand's, every one runnable
  expect_true(all(is.na(did2$requires)))
  expect_identical(did2$estimator[did2$outcome == "absence"],
                   fs2$estimator[fs2$outcome == "absence"])
  expect_identical(did2$random_effects[did2$outcome == "absence"],
                   fs2$random_effects[fs2$outcome == "absence"])
  expect_identical(sub("^fv_", "", did2$id[did2$outcome == "cla_18m"]),
                   sub("^fs_", "", fs2$id[fs2$analysis == "primary"]))
  # "Since we will conduct an analysis exploiting the stepped wedge design of
  # the implementation as well as a DiD analysis, results will have to be
  # triangulated" -- the DiD is set out under Sensitivity Analysis,
  # "Triangulation of results" (FV protocol), so its rows are labelled so
  expect_true(all(did2$analysis == "triangulation"))
  expect_true(all(protocol_models(dd, sensitivity = FALSE, strands = "did")$id %in% did2$id))
  expect_equal(nrow(protocol_models(dd, sensitivity = FALSE, strands = "did")), nrow(did2))
  p <- row_of(did2, "fv_did_cla_18m_primary")
  expect_equal(p$estimator, "did_fit")
  expect_match(p$formula, "^cla_18m ~ treated \\+ .*\\| la \\+ fin_year$")
  expect_equal(p$weights, "cem_weight")
  expect_equal(p$cluster, "la")
  # the FV protocol's outcome rule: "a logistic regression ... because the baseline rate is low"
  expect_equal(p$family, "binomial")
  # every X and Z of the FV covariates (primary need kept: the FS footnote 31
  # exclusion is for the FS models)
  expect_setequal(rhs_terms(p$formula), c("treated", dd$covariates))
  expect_match(p$protocol, "^FV Triangulation of results \\(DiD strand\\), as the FS Primary Analysis")
  expect_equal(row_of(did2, "fv_did_cla_18m_wild")$depends_on, "fv_did_cla_18m_primary")
  expect_match(row_of(did2, "fv_did_cla_18m_fgls")$protocol, "as the FS Primary Analysis: \"we will use feasible GLS")
  expect_true(all(did2$hochberg[did2$outcome != "cla_18m" & did2$estimator != "wild_boot"] == "FV did secondary"))
  expect_true(all(is.na(did2$hochberg[did2$outcome == "cla_18m"])))
})

test_that("FS primary: 'Y = b0 + b1 FS + gX + rZ + theta Year + delta LA + e' (FS p. 14)", {
  d <- design_family_safeguarding(fs_rollout())
  m <- protocol_models(d)
  r <- row_of(m, "fs_did_cla_18m_primary")
  expect_equal(r$estimator, "did_fit")
  # "We use a linear regression if the baseline rate of our outcome is between
  # 5 and 95%. If the baseline rate is outside of that range, we employ a logistic regression"
  expect_equal(r$family, "auto")
  expect_match(r$formula, "\\| la \\+ fin_year$")       # LA_a and Year_t
  expect_equal(r$cluster, "la")                          # "clustered at the level of the local authority"
  expect_equal(r$weights, "cem_weight")                  # "weighted by the weights that equalise ..."
  terms <- rhs_terms(r$formula)
  expect_equal(terms[1], "treated")
  # X (FS p. 15): gender, ethnicity, age at referral, disabled, FSM, UASC, previous CPPs
  x <- c("gender", "ethnicity_cin", "age", "disabled", "fsm_ever", "uasc", "n_previous_cpp")
  expect_true(all(x %in% terms))
  expect_true(any(grepl("^ethni", terms)) && any(grepl("^fsm", terms)))
  # footnote 31: "This covariate will not be included for the primary outcome
  # and outcomes on re-referrals"
  expect_false("primary_need" %in% terms)
  expect_false("primary_need" %in% rhs_terms(row_of(m, "fs_did_rereferral_18m_secondary")$formula))
  expect_true("primary_need" %in% rhs_terms(row_of(m, "fs_did_cpp_duration_secondary")$formula))
  expect_true("primary_need" %in% rhs_terms(row_of(m, "fs_did_days_cpp_18m_secondary")$formula))
  z <- c("prop_fsm", "prop_white_british", "other_innovation_programme")
  expect_true(all(z %in% terms))
  # "we will use feasible GLS estimates employing a random effects model"
  g <- row_of(m, "fs_did_cla_18m_fgls")
  expect_equal(g$estimator, "fgls_bcj")
  expect_equal(g$analysis, "primary")
  expect_equal(rhs_terms(g$formula), terms)
})

test_that("FS secondary: linear for duration, days and absence; rule for re-referrals; Hochberg", {
  m <- protocol_models(design_family_safeguarding(fs_rollout()))
  # "For the secondary outcomes CP plan duration, days on CPPs, and unauthorised
  # school absence rates, we will use a linear probability model."
  for (o in c("cpp_duration", "days_cpp_18m", "absence")) {
    expect_equal(row_of(m, paste0("fs_did_", o, "_secondary"))$family, "gaussian")
  }
  # "For all binary secondary outcomes ... using the same decision criteria as for the primary outcome."
  expect_equal(row_of(m, "fs_did_rereferral_18m_secondary")$family, "auto")
  # "we will use Hochberg multiple comparison adjustments"
  expect_setequal(m$outcome[!is.na(m$hochberg)],
                  c("cpp_duration", "days_cpp_18m", "rereferral_18m", "absence"))
  # "In the case of unauthorised school absence rates ... we include individual
  # random effects in the regression specification as well as indicator
  # variables for the school term and a variable controlling for the time since
  # the relevant referral. Other specifications remain as specified in the
  # primary analysis": the primary's LA and year effects, CEM weights and
  # authority clustering, with a child random intercept (#14)
  ab <- row_of(m, "fs_did_absence_secondary")
  expect_true(is.na(ab$requires))
  expect_equal(ab$estimator, "sw_glmm")
  expect_equal(ab$weights, "cem_weight")
  expect_equal(ab$cluster, "la")
  expect_match(ab$inference, "CR2")
  expect_equal(ab$random_effects, "(1 | child_pair)")
  rhs <- rhs_terms(ab$formula)
  expect_true(all(c("treated", "factor(term_index)", "days_since_referral", "factor(la)",
                    "factor(fin_year)", "1 | child_pair") %in% rhs))
  expect_true(all(plan_covariates(design_family_safeguarding(fs_rollout()), "absence")$x %in% rhs))
  expect_equal(sub(" ~.*", "", ab$formula), "absence_rate")
})

test_that("FS sensitivity grid follows the protocol's sections", {
  m <- protocol_models(design_family_safeguarding(fs_rollout()))
  expect_equal(row_of(m, "fs_did_cla_18m_open_days_half")$treatment, "open_days_half")
  expect_equal(row_of(m, "fs_did_cla_18m_open_days_28")$treatment, "open_days_28")
  expect_true(".exposure" %in% rhs_terms(row_of(m, "fs_did_cla_18m_differential_time")$formula))
  expect_equal(row_of(m, "fs_did_cla_18m_bacon")$estimator, "bacon")
  # "Callaway and Sant'Anna (2020) if the decomposition suggests a significant risk of bias"
  expect_equal(row_of(m, "fs_did_cla_18m_att_gt")$run_if, "bacon_risk")
  # "hurdle models when evaluating the impact on days on CPPs"
  expect_equal(row_of(m, "fs_did_days_cpp_18m_hurdle")$estimator, "hurdle_fit")
  # "If the data turns out to be more heavily censored, we will consider employing a tobit model"
  expect_equal(row_of(m, "fs_did_cpp_duration_tobit")$estimator, "tobit_fit")
  expect_equal(row_of(m, "fs_did_cla_18m_placebo")$estimator, "placebo_test")
  expect_equal(row_of(m, "fs_did_cla_18m_common_shock")$run_if, "shock")
  expect_equal(row_of(m, "fs_did_cla_18m_serial")$estimator, "serial_test")
  # "if the share of individuals that occur repeatedly in our sample is larger than 15 percent"
  expect_equal(row_of(m, "fs_did_cla_18m_hausman")$run_if, "repeats")
  # the FS stepped-wedge strand: treated authorities, period dummies, random intercept
  sw <- row_of(m, "fs_sw_cla_18m_primary")
  expect_true(all(c("factor(fin_year)", "1 | la") %in% rhs_terms(sw$formula)))
  expect_equal(sw$strand, "stepped_wedge")
})

test_that("protocol_models() reads the design: dropped and excluded covariates, outcome subsets", {
  d <- design_family_safeguarding(fs_rollout())
  d$covariates_exclude$cpp_duration <- "uasc"
  m <- protocol_models(d, outcomes = "cpp_duration", sensitivity = FALSE)
  expect_equal(unique(m$outcome), "cpp_duration")
  expect_false("uasc" %in% rhs_terms(m$formula[1]))
  expect_true(all(m$analysis %in% c("primary", "secondary")))
  expect_false(anyDuplicated(protocol_models(d)$id) > 0)
})

test_that("bad input: unknown outcome, not a design, unknown strand", {
  d <- design_family_valued(fv_rollout())
  expect_snapshot(error = TRUE, protocol_models(d, outcomes = "cla_24m"))
  expect_snapshot(error = TRUE, protocol_models(list()))
  expect_snapshot(error = TRUE, protocol_models(d, strands = "rct"))
})

test_that("FS stepped-wedge strand: 'triangulation', as the FS protocol places it", {
  d <- design_family_safeguarding(fs_rollout())
  m <- protocol_models(d)
  sw <- m[m$strand == "stepped_wedge", ]
  expect_setequal(sw$id, c("fs_sw_cla_18m_primary", "fs_sw_cla_18m_wild"))
  # FS protocol, Design: "This analysis is intended to complement the stepped
  # wedge RCT analysis conducted by WWCS" -- the DiD is the protocol's own
  # (primary) analysis. Sensitivity Analysis, "Triangulation of results":
  # "Since we will conduct an analysis exploiting the stepped wedge design of
  # the implementation as well as a DiD analysis, results will have to be
  # triangulated ... we will reach an average estimate of the impact of
  # Family Safeguarding by pooling the two treatment effects"
  expect_true(all(sw$analysis == "triangulation"))
  expect_true(all(grepl("^FS Sensitivity Analysis, Triangulation of results", sw$protocol)))
  # the DiD strand keeps the primary analysis: "Primary Analysis: ... Y_iat =
  # b0 + b1 FS_a + ..." with feasible GLS and few-cluster inference
  expect_setequal(m$id[m$analysis == "primary"],
                  c("fs_did_cla_18m_fgls", "fs_did_cla_18m_primary", "fs_did_cla_18m_wild"))
  expect_true(all(m$strand[m$analysis == "primary"] == "did"))
  # the same label as the FV protocol's DiD strand, which it places under the
  # same heading ("Triangulation of results", FV Sensitivity Analysis)
  ro <- rbind(fv_rollout(), data.frame(la_code = "401", programme = "FV", role = "comparator",
                                       go_live_date = as.Date(NA), wedge_order = NA, stratum = NA))
  fv <- protocol_models(design_family_valued(ro, strand = "did"))
  expect_setequal(unique(fv$analysis[fv$strand == "did"]), "triangulation")
  expect_true("fv_sw_cla_18m_primary" %in% fv$id[fv$analysis == "primary"])
  expect_true(all(fv$strand[fv$analysis == "primary"] == "stepped_wedge"))
  # kept with sensitivity = FALSE (a strand, chosen by `strands`), and only
  # with the stepped-wedge strand asked for
  m0 <- protocol_models(d, sensitivity = FALSE)
  expect_true(all(sw$id %in% m0$id))
  expect_false(any(protocol_models(d, strands = "did")$strand == "stepped_wedge"))
  expect_setequal(protocol_models(d, strands = "stepped_wedge")$id, sw$id)
  # the specification is unchanged: the wild bootstrap re-uses the GLMM row
  expect_equal(row_of(m, "fs_sw_cla_18m_wild")$depends_on, "fs_sw_cla_18m_primary")
  # Hochberg families are unchanged: "Due to the high number of secondary
  # outcomes, we will use Hochberg multiple comparison adjustments" -- the
  # strand has only the primary outcome, in no family; the families are the
  # DiD's secondary outcomes
  expect_true(all(is.na(sw$hochberg)))
  expect_setequal(unique(stats::na.omit(m$hochberg)), "FS did secondary")
  expect_setequal(m$id[m$hochberg %in% "FS did secondary"],
                  m$id[m$strand == "did" & m$analysis == "secondary"])
})
