# The protocols' analysis plans as data: one row per model of the plan, built
# from the design (covariate lists, exclusions, outcomes). analyse() runs the
# rows; a capability that lands later is one more row (the runner dispatches
# on `estimator`).

#' The models of a protocol's analysis plan
#'
#' Lists every model of the Family Safeguarding (difference-in-differences)
#' or Family Valued (stepped-wedge) analysis plan as a data frame that can be
#' read, edited and passed back to [analyse()]. Each row is specified from the
#' design, never by hand: the outcome, its population, the treatment
#' definition, the formula with the individual covariates X and the
#' authority covariates Z as the protocol lists them for that outcome
#' (primary need is left out where the design says so), the family by the
#' protocol's rule, weights, fixed and random effects, clustering and
#' inference.
#'
#' The rules written into the rows:
#' * **Family Safeguarding, primary** (DiD protocol, "Primary Analysis"):
#'   \eqn{Y_{iat} = \beta_0 + \beta_1 FS_a + \gamma X_{iat} + \rho Z_{at} +
#'   \theta Year_t + \delta LA_a + \varepsilon_{iat}}, with standard errors
#'   clustered by authority, estimated by feasible GLS with "the robust
#'   inference technique and bias corrections suggested by Brewer et al."
#'   ([fgls_bcj()]: AR(2) authority x quarter shocks, CEM-weighted) and by
#'   the CEM-weighted regression with few-cluster inference ([did_fit()] with
#'   CR2 and [wild_boot()]). Family: "a linear regression if the baseline rate of
#'   our outcome is between 5 and 95%", logistic otherwise (`family =
#'   "auto"`, resolved on the data). Secondary outcomes: re-referrals by the
#'   same rule, CPP duration, days on CPPs and absence linear; absence with
#'   individual random effects, term indicators and the time since the
#'   referral: a CEM-weighted linear mixed model ([sw_glmm()] with `weights`)
#'   with LA and year fixed effects, a random intercept per child (its copy
#'   in each stacked pair, `child_pair`) and CR2 errors clustered by
#'   authority. Hochberg across the secondary outcomes.
#' * **Family Valued, primary** (stepped-wedge protocol, "Primary
#'   Analysis"): \eqn{logit(Y_{iat}) = \beta_0 + \alpha_{0a} + \beta_1
#'   FV_{iat} + \sum \beta_{i+1} I(t = i) + \gamma X_{iat} + \rho Z_{at}}, a
#'   logistic GLMM with a random intercept per authority and step dummies
#'   ([sw_glmm()]), and the wild bootstrap "with a correction for the small
#'   number of clusters". Binary secondary outcomes: "the same regression
#'   specification as for the primary outcome"; days on plans and absence:
#'   linear; absence with individual random effects. Hochberg across the
#'   secondary outcomes.
#' * The sensitivity grid of each protocol (alternative treatment
#'   definitions, care entry for the care outcomes, permutation test,
#'   differential time effects, embedding period, alternative go-live date,
#'   hurdle and tobit where the checks call for them, absence logit,
#'   Goodman-Bacon and Callaway-Sant'Anna, placebo, common shocks, serial
#'   correlation and Hausman steps) and the readiness interaction.
#' * The other strand of each programme: the DiD strand of Family Valued
#'   (needs comparator authorities in the design; its rows' `analysis` is
#'   `"triangulation"`, as the protocol sets the "additional DiD analysis" out
#'   under "Triangulation of results" in its Sensitivity Analysis, to be pooled
#'   with the stepped-wedge estimate; kept with `sensitivity = FALSE`, it is a
#'   strand chosen by `strands`) and the stepped-wedge strand
#'   of Family Safeguarding (the treated authorities only; period = financial
#'   year as the DiD's \eqn{Year_t}; its rows' `analysis` is
#'   `"triangulation"` too: the DiD protocol's own analysis is the DiD, "intended
#'   to complement the stepped wedge RCT analysis", and it sets the
#'   stepped-wedge strand out under "Triangulation of results" in its
#'   Sensitivity Analysis, to be pooled with the DiD estimate).
#'
#' Formula placeholders expanded by [analyse()] on the data: `.exposure`
#' (the indicators of time since go-live of the differential-time model).
#' Rows whose `run_if` is not `NA` run only when their check calls for them
#' (`"excess_zeros"`: [zero_check()] finds more zeros than a Poisson model
#' predicts; `"censored"`: more than `censor_share` of the outcome at its
#' cap; `"bacon_risk"`: the decomposition puts weight on comparisons with
#' already-treated controls; `"repeats"`: more than 15% repeated
#' individuals; `"shock"`: a common shock is supplied). Rows that need a
#' capability the package does not have yet carry the reason in
#' `requires`, and [analyse()] reports them with that status.
#'
#' @param design An `sfp_design` from [design_family_safeguarding()] or
#'   [design_family_valued()].
#' @param outcomes Outcomes to keep (default: all the design's).
#' @param sensitivity Include the sensitivity and exploratory rows (the
#'   `"triangulation"` rows of each programme's other strand, the Family
#'   Valued DiD and the Family Safeguarding stepped wedge, are kept either
#'   way).
#' @param strands `"stepped_wedge"`, `"did"` or both.
#' @return A data frame of class `sfp_models`, one row per model, with
#'   columns `id`, `programme`, `strand`, `analysis`, `outcome`,
#'   `population`, `treatment` (the [build_cohort()] treatment definition),
#'   `estimator` (the function run), `depends_on` (the model a bootstrap or
#'   test re-uses), `family`, `formula`, `x` and `z` (the covariates, comma
#'   separated), `fixed_effects`, `random_effects`, `weights`, `cluster`,
#'   `time`, `inference`, `term`, `scale`, `hochberg` (the family of tests
#'   the row's p-value is adjusted in), `run_if`, `requires` and `protocol`
#'   (where in the protocol the row comes from).
#' @examples
#' rollout <- data.frame(
#'   la_code = c("301", "302", "303"), programme = "FV", role = "treated",
#'   go_live_date = as.Date(c("2020-01-01", "2020-07-01", "2021-01-01")),
#'   wedge_order = 1:3, stratum = c("high", "low", "low")
#' )
#' m <- protocol_models(design_family_valued(rollout))
#' m[m$analysis == "primary", c("id", "formula", "family")]
#' @export
protocol_models <- function(design, outcomes = NULL, sensitivity = TRUE,
                            strands = c("stepped_wedge", "did")) {
  if (!inherits(design, "sfp_design")) {
    stop_arg("design", "must be an `sfp_design`",
             "build one with design_family_safeguarding() or design_family_valued().")
  }
  strands <- match_choices(strands, c("stepped_wedge", "did"), "strands")
  if (!isTRUE(sensitivity) && !isFALSE(sensitivity)) {
    stop_arg("sensitivity", "must be TRUE or FALSE", "use sensitivity = FALSE for the primary and secondary analyses only.")
  }
  if (!is.null(outcomes) && (!is.character(outcomes) || anyNA(outcomes))) {
    stop_arg("outcomes", "must be outcome names (a character vector without NA)",
             sprintf("use some of %s.", paste0("\"", design$outcomes, "\"", collapse = ", ")))
  }
  if (!is.null(outcomes)) {
    bad <- setdiff(outcomes, design$outcomes)
    if (length(bad)) {
      stop_arg("outcomes", sprintf("names %s, which the %s design does not know",
                                   paste0("\"", bad, "\"", collapse = ", "), design$programme),
               sprintf("use some of %s.", paste0("\"", design$outcomes, "\"", collapse = ", ")))
    }
  }
  rows <- if (design$programme == "FV") plan_rows_fv(design, strands) else
    plan_rows_fs(design, strands)
  if (!sensitivity) rows <- rows[rows$analysis %in% c("primary", "secondary", "triangulation"), , drop = FALSE]
  if (!is.null(outcomes)) rows <- rows[rows$outcome %in% outcomes, , drop = FALSE]
  rows <- rows[!duplicated(rows$id), , drop = FALSE]
  rownames(rows) <- NULL
  structure(rows, class = c("sfp_models", "data.frame"))
}

#' @export
print.sfp_models <- function(x, ...) {
  # A subset of the columns (e.g. m[, c("id", "formula")]) prints as it is.
  if (!all(c("id", "analysis", "outcome", "estimator", "family", "requires",
             "programme", "strand") %in% names(x))) {
    print.data.frame(x, ...)
    return(invisible(x))
  }
  cat(sprintf("<sfp_models> %d models of the %s plan (%s)\n", nrow(x),
              paste(unique(x$programme), collapse = "/"),
              paste(unique(x$strand), collapse = ", ")))
  show <- as.data.frame(x)[, c("id", "analysis", "outcome", "estimator", "family")]
  show$requires <- ifelse(is.na(x$requires), "", "not available yet")
  print(show, row.names = FALSE, right = FALSE)
  invisible(x)
}

# --- building blocks ------------------------------------------------------

# Authority-level covariates (Z) among the design's covariates.
plan_z_names <- c("prop_fsm", "prop_white_british", "other_innovation_programme")

# X and Z for an outcome, as the design lists them.
plan_covariates <- function(design, outcome) {
  cv <- setdiff(design$covariates, design$covariates_exclude[[outcome]])
  list(x = setdiff(cv, plan_z_names), z = intersect(cv, plan_z_names))
}

plan_rhs <- function(...) {
  parts <- unlist(list(...))
  paste(parts[nzchar(parts)], collapse = " + ")
}

# Population of each outcome, in the design table's words.
plan_population <- function(design, outcome) {
  ages <- sprintf("aged %d-%d", design$age_range[1], design$age_range[2])
  base <- if (design$programme == "FV")
    sprintf("children %s referred in the trial period, case open after assessment", ages) else
    sprintf("children %s referred in the trial period", ages)
  switch(outcome,
    cpp_duration = paste0(base, ", a CPP starting within ", design$windows[["cpp_start"]],
                          " months of the referral"),
    rereferral_18m = paste0(base, ", toxic-trio factor at the first assessment"),
    kinship_first = paste0(base, ", looked after within ", design$windows[["cla"]], " months"),
    reunified_18m = sprintf("children %s who became looked after within the trial period", ages),
    absence = paste0(base, ", school terms after the referral"),
    base)
}

plan_scale <- function(family) {
  switch(family, binomial = "log_odds", gaussian = "mean_difference",
         auto = "auto", "mean_difference")
}

# One row; every argument a length-1 value (NA where not relevant).
plan_row <- function(id, programme, strand, analysis, outcome, population,
                     estimator, formula, x = "", z = "", treatment = "referral_date",
                     depends_on = NA_character_, family = NA_character_,
                     fixed_effects = NA_character_, random_effects = NA_character_,
                     weights = NA_character_, cluster = "la", time = NA_character_,
                     inference = NA_character_, term = "treated", scale = NA_character_,
                     hochberg = NA_character_, run_if = NA_character_,
                     requires = NA_character_, protocol = NA_character_) {
  data.frame(id = id, programme = programme, strand = strand, analysis = analysis,
             outcome = outcome, population = population, treatment = treatment,
             estimator = estimator, depends_on = depends_on, family = family,
             formula = formula, x = paste(x, collapse = ", "),
             z = paste(z, collapse = ", "), fixed_effects = fixed_effects,
             random_effects = random_effects, weights = weights, cluster = cluster,
             time = time, inference = inference, term = term,
             scale = if (is.na(scale)) plan_scale(family %|NA|% "gaussian") else scale,
             hochberg = hochberg, run_if = run_if, requires = requires,
             protocol = protocol, stringsAsFactors = FALSE)
}

`%|NA|%` <- function(x, y) if (is.null(x) || is.na(x)) y else x

plan_bind <- function(rows) {
  out <- do.call(rbind, rows)
  rownames(out) <- NULL
  out
}

# Family of an outcome. FV: logit GLMM for binary outcomes ("because the
# baseline rate is low"; binary secondaries "the same regression
# specification as for the primary outcome"), linear for days and absence.
# FS: the baseline-rate rule for binary outcomes ("auto"), linear for the
# duration, days and absence outcomes.
plan_family <- function(design, outcome) {
  continuous <- c("cpp_duration", "days_cpp_18m", "days_plan_18m", "absence")
  if (outcome %in% continuous) return("gaussian")
  if (design$programme == "FV") "binomial" else "auto"
}

# --- Family Valued ---------------------------------------------------------

plan_rows_fv <- function(design, strands) {
  rows <- list()
  if ("stepped_wedge" %in% strands) rows <- c(rows, plan_sw_rows(design, "fv_sw"))
  if ("did" %in% strands) rows <- c(rows, plan_did_rows(design, "fv_did"))
  plan_bind(rows)
}

# Stepped-wedge rows (FV's own strand; FS's stepped-wedge strand uses the
# primary-outcome rows with the FS period).
plan_sw_rows <- function(design, prefix) {
  prog <- design$programme
  fv <- prog == "FV"
  period <- if (fv) "factor(step)" else "factor(fin_year)"
  outcomes <- if (fv) design$outcomes else "cla_18m"
  ref <- if (fv) "FV Analysis plan, Primary Analysis" else
    "FS Sensitivity Analysis, Triangulation of results (stepped-wedge strand): \"Since we will conduct an analysis exploiting the stepped wedge design of the implementation as well as a DiD analysis, results will have to be triangulated\""
  sw_one <- function(outcome, analysis, id, treatment = "referral_date", extra = "",
                     term = "treated", protocol = ref, requires = NA_character_,
                     family = NULL, random = "(1 | la)", resp = outcome,
                     more_fe = "") {
    cv <- plan_covariates(design, outcome)
    fam <- family %||% plan_family(design, outcome)
    rhs <- plan_rhs("treated", extra, period, more_fe, cv$x, cv$z, random)
    plan_row(id, prog, "stepped_wedge", analysis, outcome, plan_population(design, outcome),
             "sw_glmm", paste(resp, "~", rhs), cv$x, cv$z, treatment = treatment,
             family = fam, fixed_effects = paste(c(period, more_fe)[nzchar(c(period, more_fe))],
                                                 collapse = " + "),
             random_effects = random, time = sub("factor\\((.*)\\)", "\\1", period),
             inference = switch(fam, binomial = "Wald (Laplace GLMM)", gaussian = "Wald (REML LMM)",
                                "Wald (family by the baseline-rate rule)"),
             term = term,
             hochberg = if (analysis == "secondary") paste0(prog, " stepped_wedge secondary") else NA_character_,
             requires = requires, protocol = protocol)
  }
  pid <- paste0(prefix, "_cla_18m_primary")
  rows <- list(sw_one("cla_18m", "primary", pid))
  rows[[2]] <- plan_row(paste0(prefix, "_cla_18m_wild"), prog, "stepped_wedge",
                        "primary", "cla_18m", plan_population(design, "cla_18m"),
                        "wild_boot", NA_character_, depends_on = pid,
                        family = plan_family(design, "cla_18m"),
                        inference = "wild_boot() default: below 10 authorities the CR3 (leave-one-authority-out) t-test with G - 1 df, from 10 the score wild cluster bootstrap (Webb weights)",
                        protocol = if (fv) "FV Primary Analysis: \"a wild bootstrap with a correction for the small number of clusters\"" else ref)
  # FS: the DiD protocol's own analysis is the DiD ("This analysis is
  # intended to complement the stepped wedge RCT analysis"); the
  # stepped-wedge strand enters it under Sensitivity Analysis, "Triangulation
  # of results", to be pooled with the DiD estimate: every row of the strand
  # is labelled "triangulation", as the FV protocol's DiD strand is
  if (!fv) return(lapply(rows, function(r) `[[<-`(r, "analysis", value = "triangulation")))
  for (o in setdiff(outcomes, c("cla_18m", "absence"))) {
    rows[[length(rows) + 1L]] <- sw_one(o, "secondary", paste0(prefix, "_", o, "_secondary"),
                                        protocol = "FV Secondary Analysis")
  }
  if ("absence" %in% outcomes) {
    rows[[length(rows) + 1L]] <- sw_one(
      "absence", "secondary", paste0(prefix, "_absence_secondary"),
      resp = "absence_rate", more_fe = "factor(term_index) + days_since_referral",
      random = "(1 | la/child_id)",
      protocol = "FV Secondary Analysis: \"individual random effects ... indicator variables for the school term and a variable controlling for the time since the relevant referral\"")
  }
  # the linear secondary models (days on plans, absence): "as above, we
  # will consider whether or not applying a wild bootstrap with a correction
  # for the small number of clusters is appropriate" -- the wild cluster
  # bootstrap of the linear mixed model, and (sensitivity) the CR3 t-test
  # with G - 1 df, which holds its size with 5 authorities
  for (o in intersect(c("days_plan_18m", "absence"), outcomes)) {
    rows <- c(rows, plan_lmm_inference_rows(design, prefix, o))
  }
  sens <- "FV Sensitivity Analysis"
  rows <- c(rows, list(
    sw_one("cla_18m", "treatment_open_days_half", paste0(prefix, "_cla_18m_open_days_half"),
           treatment = "open_days_half", protocol = paste(sens, "(definition of treatment: half the open days)")),
    sw_one("cla_18m", "treatment_open_days_28", paste0(prefix, "_cla_18m_open_days_28"),
           treatment = "open_days_28", protocol = paste(sens, "(definition of treatment: 4 weeks)")),
    sw_one("kinship_first", "treatment_care_entry", paste0(prefix, "_kinship_first_care_entry"),
           treatment = "care_entry", protocol = paste(sens, "(care outcomes by care entry)")),
    sw_one("reunified_18m", "treatment_care_entry", paste0(prefix, "_reunified_18m_care_entry"),
           treatment = "care_entry", protocol = paste(sens, "(care outcomes by care entry)")),
    plan_row(paste0(prefix, "_cla_18m_permutation"), prog, "stepped_wedge", "permutation",
             "cla_18m", plan_population(design, "cla_18m"), "perm_test", NA_character_,
             depends_on = pid, family = "binomial", term = "treated", scale = "p_value",
             inference = "exact permutation of authorities within readiness strata",
             protocol = paste(sens, "(non-parametric permutation test)")),
    sw_one("cla_18m", "differential_time", paste0(prefix, "_cla_18m_differential_time"),
           extra = ".exposure", protocol = paste(sens, "(differential time effects)")),
    sw_one("cla_18m", "embedding", paste0(prefix, "_cla_18m_embedding"), treatment = "embedding",
           protocol = paste(sens, "(introduction of an embedding period)")),
    sw_one("cla_18m", "alt_go_live", paste0(prefix, "_cla_18m_alt_go_live"), treatment = "alt_go_live",
           protocol = paste(sens, "(definition of the implementation date)")),
    plan_count_row(design, prefix, "hurdle", "days_plan_18m", "hurdle_fit", "excess_zeros",
                   "factor(step) + factor(la)", paste(sens, "(regression specifications: hurdle)")),
    plan_count_row(design, prefix, "tobit", "days_plan_18m", "tobit_fit", "censored",
                   "factor(step) + factor(la)", paste(sens, "(regression specifications: tobit)")),
    sw_one("absence", "absence_logit", paste0(prefix, "_absence_logit"),
           resp = "cbind(unauth_sessions, sessions_possible - unauth_sessions)",
           family = "binomial", more_fe = "factor(term_index) + days_since_referral",
           # the same random effects as the linear absence model: children
           # (measured in three terms) within authorities
           random = "(1 | la/child_id)",
           protocol = paste(sens, "\"we will use a logit model to check the robustness of our regression on unauthorised school absence rates\"")),
    sw_one("cla_18m", "readiness", paste0(prefix, "_cla_18m_readiness"),
           extra = "high_readiness + treated:high_readiness", term = "treated:high_readiness",
           protocol = "FV Exploratory Analysis (high and low readiness)")
  ))
  rows
}

# The wild cluster bootstrap (a secondary analysis, as the protocol's
# sentence sits in its Secondary Analysis) and the CR3 t-test (a
# sensitivity row) of an FV linear secondary model; both re-use its fit.
plan_lmm_inference_rows <- function(design, prefix, outcome) {
  pid <- paste0(prefix, "_", outcome, "_secondary")
  pop <- plan_population(design, outcome)
  list(
    plan_row(paste0(prefix, "_", outcome, "_wild"), design$programme, "stepped_wedge", "secondary",
             outcome, pop, "wild_boot", NA_character_, depends_on = pid, family = "gaussian",
             inference = "wild cluster bootstrap-t of the linear mixed model (wild_boot() defaults), Webb weights, enumerated",
             protocol = "FV Secondary Analysis: \"as above, we will consider whether or not applying a wild bootstrap with a correction for the small number of clusters is appropriate\""),
    plan_row(paste0(prefix, "_", outcome, "_cr3"), design$programme, "stepped_wedge", "cr3",
             outcome, pop, "cr3", NA_character_, depends_on = pid, family = "gaussian",
             inference = "CR3 (leave-one-authority-out jackknife) t-test, t(G - 1)",
             protocol = "FV Secondary Analysis (small-cluster correction: the CR3 t-test that holds its size with 5 authorities)")
  )
}

# Hurdle / tobit rows: the count models have no random effects, so the
# authority enters as fixed effects and the errors are clustered by it.
plan_count_row <- function(design, prefix, analysis, outcome, estimator, run_if, fe, protocol,
                           weights = NA_character_, strand = NULL) {
  cv <- plan_covariates(design, outcome)
  strand <- strand %||% if (design$programme == "FV") "stepped_wedge" else "did"
  plan_row(paste0(prefix, "_", outcome, "_", analysis), design$programme, strand,
           analysis, outcome, plan_population(design, outcome), estimator,
           paste(outcome, "~", plan_rhs("treated", cv$x, cv$z, fe)), cv$x, cv$z,
           family = if (estimator == "hurdle_fit") "hurdle_poisson" else "tobit",
           fixed_effects = fe, weights = weights,
           inference = "cluster-robust (authority)", run_if = run_if,
           scale = if (estimator == "hurdle_fit") "log_count_ratio" else "mean_difference",
           protocol = protocol)
}

# --- Family Safeguarding ---------------------------------------------------

plan_rows_fs <- function(design, strands) {
  rows <- list()
  if ("did" %in% strands) rows <- c(rows, plan_did_rows(design, "fs_did"))
  if ("stepped_wedge" %in% strands) rows <- c(rows, plan_sw_rows(design, "fs_sw"))
  plan_bind(rows)
}

# DiD rows: FS's own strand, and FV's DiD strand. The FV protocol adds "a
# DiD analysis" ("Triangulation of results") without specifying it, so its
# rows are the FS specification (trend matching, CEM within pair x financial
# year, the weighted FGLS and DiD regressions, few-cluster inference) with
# the FV outcomes, covariates and family rule.
plan_did_rows <- function(design, prefix) {
  prog <- design$programme
  fs <- prog == "FS"
  needs_comparators <- if (fs || any(design$las$role == "comparator")) NA_character_ else
    "not available: the design has no comparator authorities (build the DiD strand with design_family_valued(strand = \"did\") and comparator authorities in the roll-out)"
  ref <- if (fs) "FS Analysis plan, Primary Analysis" else
    "FV Triangulation of results (DiD strand)"
  # FV: the DiD strand's rows name the FS statement they follow
  as_fs <- function(what) if (fs) what else paste0(ref, ", as the ", what)
  fe <- "la + fin_year"
  did_one <- function(outcome, analysis, id, treatment = "referral_date", extra = "",
                      term = "treated", protocol = ref, requires = needs_comparators,
                      estimator = "did_fit", family = NULL) {
    cv <- plan_covariates(design, outcome)
    fam <- family %||% plan_family(design, outcome)
    rhs <- plan_rhs("treated", extra, cv$x, cv$z)
    plan_row(id, prog, "did", analysis, outcome, plan_population(design, outcome),
             estimator, paste(outcome, "~", rhs, "|", fe), cv$x, cv$z,
             treatment = treatment, family = fam, fixed_effects = fe,
             weights = "cem_weight", time = "fin_year",
             inference = "CR2, Satterthwaite df (logit: CR1, t(G - 1))", term = term,
             hochberg = if (analysis == "secondary") paste0(prog, " did secondary") else NA_character_,
             requires = requires, protocol = protocol)
  }
  cv <- plan_covariates(design, "cla_18m")
  fgls_req <- needs_comparators
  if (is.na(fgls_req) && !"weights" %in% names(formals(fgls_bcj))) {
    fgls_req <- "not available yet: needs fgls_bcj() with CEM weights (weighted FGLS)"
  }
  pid <- paste0(prefix, "_cla_18m_primary")
  rows <- list(
    plan_row(paste0(prefix, "_cla_18m_fgls"), prog, "did", "primary", "cla_18m",
             plan_population(design, "cla_18m"), "fgls_bcj",
             paste("cla_18m ~", plan_rhs("treated", cv$x, cv$z)), cv$x, cv$z,
             family = "gaussian", fixed_effects = "la + quarter",
             weights = "cem_weight", time = "quarter",
             inference = "Brewer, Crossley & Joyce FGLS: AR(2) authority x quarter shocks, Hansen bias correction, cluster-robust, t(G - 1)",
             requires = fgls_req,
             protocol = as_fs("FS Primary Analysis: \"we will use feasible GLS estimates employing a random effects model that accounts for cluster-robust estimates\"")),
    did_one("cla_18m", "primary", pid,
            protocol = as_fs("FS Primary Analysis (regression with LA and year fixed effects, clustered by LA, few-cluster inference)")),
    plan_row(paste0(prefix, "_cla_18m_wild"), prog, "did", "primary", "cla_18m",
             plan_population(design, "cla_18m"), "wild_boot", NA_character_,
             depends_on = pid, family = plan_family(design, "cla_18m"),
             inference = "wild cluster restricted bootstrap (score bootstrap for a logit), Webb weights",
             requires = needs_comparators,
             protocol = as_fs("FS Primary Analysis: \"a robust inference technique ... that produce correctly sized tests even with few groups\""))
  )
  secondary <- setdiff(design$outcomes, c("cla_18m", "absence"))
  for (o in secondary) {
    rows[[length(rows) + 1L]] <- did_one(o, "secondary", paste0(prefix, "_", o, "_secondary"),
                                         protocol = as_fs("FS Secondary Analysis"))
  }
  if ("absence" %in% design$outcomes) {
    # the primary specification (LA and year fixed effects, CEM weights,
    # clustered by LA) plus "individual random effects ... indicator
    # variables for the school term and a variable controlling for the time
    # since the relevant referral": a CEM-weighted linear mixed model with a
    # random intercept per child (its copy in each stacked pair, nested in
    # the authority) and CR2 errors clustered by authority
    cva <- plan_covariates(design, "absence")
    rows[[length(rows) + 1L]] <- plan_row(
      paste0(prefix, "_absence_secondary"), prog, "did", "secondary", "absence",
      plan_population(design, "absence"), "sw_glmm",
      paste("absence_rate ~", plan_rhs("treated", "factor(term_index)", "days_since_referral",
                                       cva$x, cva$z, "factor(la)", "factor(fin_year)",
                                       "(1 | child_pair)")),
      cva$x, cva$z, family = "gaussian", fixed_effects = fe,
      random_effects = "(1 | child_pair)", weights = "cem_weight", time = "fin_year",
      inference = "CR2 clustered by authority, Satterthwaite df (REML LMM)",
      hochberg = paste0(prog, " did secondary"),
      requires = needs_comparators,
      protocol = "FS Secondary Analysis: \"we include individual random effects in the regression specification as well as indicator variables for the school term and a variable controlling for the time since the relevant referral\"")
  }
  # FV: the DiD is the protocol's "additional DiD analysis", set out under
  # Sensitivity Analysis, "Triangulation of results" ("we will reach an
  # average estimate of the impact of Family Valued by pooling the two
  # treatment effects"): every row of the strand is labelled "triangulation"
  if (!fs) return(lapply(rows, function(r) `[[<-`(r, "analysis", value = "triangulation")))
  sens <- "FS Sensitivity Analysis"
  c(rows, list(
    did_one("cla_18m", "treatment_open_days_half", paste0(prefix, "_cla_18m_open_days_half"),
            treatment = "open_days_half", protocol = paste(sens, "(definition of treatment: half the open days)")),
    did_one("cla_18m", "treatment_open_days_28", paste0(prefix, "_cla_18m_open_days_28"),
            treatment = "open_days_28", protocol = paste(sens, "(definition of treatment: 4 weeks)")),
    did_one("cla_18m", "differential_time", paste0(prefix, "_cla_18m_differential_time"),
            extra = ".exposure", protocol = paste(sens, "(differential time effects)")),
    plan_row(paste0(prefix, "_cla_18m_bacon"), prog, "did", "bacon", "cla_18m",
             plan_population(design, "cla_18m"), "bacon", "cla_18m ~ live",
             family = "gaussian", fixed_effects = "la + quarter", time = "quarter",
             term = "twfe", scale = "risk_difference", inference = "decomposition (no test)",
             protocol = paste(sens, "(decomposition, Goodman-Bacon)")),
    plan_row(paste0(prefix, "_cla_18m_att_gt"), prog, "did", "callaway_santanna", "cla_18m",
             plan_population(design, "cla_18m"), "att_gt", NA_character_,
             family = "gaussian", time = "quarter", term = "simple", scale = "risk_difference",
             inference = "aggregated ATT(g, t), not-yet-treated controls",
             run_if = "bacon_risk",
             protocol = paste(sens, "(\"approaches such as the one put forward by Callaway and Sant'Anna (2020) if the decomposition suggests a significant risk of bias\")")),
    plan_count_row(design, prefix, "hurdle", "days_cpp_18m", "hurdle_fit", "excess_zeros",
                   "factor(la) + factor(fin_year)", paste(sens, "(regression specifications: hurdle for days on CPPs)"),
                   weights = "cem_weight"),
    plan_count_row(design, prefix, "tobit", "cpp_duration", "tobit_fit", "censored",
                   "factor(la) + factor(fin_year)", paste(sens, "(regression specifications: tobit for time on CPP)"),
                   weights = "cem_weight"),
    plan_row(paste0(prefix, "_cla_18m_placebo"), prog, "did", "placebo", "cla_18m",
             plan_population(design, "cla_18m"), "placebo_test", NA_character_,
             family = "gaussian", term = "placebo", scale = "risk_difference",
             inference = "DiD at a false go-live date 12 months earlier",
             protocol = "FS Matching on parallel trends (placebo tests)"),
    plan_row(paste0(prefix, "_cla_18m_common_shock"), prog, "did", "common_shock", "cla_18m",
             plan_population(design, "cla_18m"), "common_shock_test", NA_character_,
             family = "gaussian", term = "shock:treated", scale = "risk_difference",
             inference = "interaction of the shock with Family Safeguarding", run_if = "shock",
             protocol = "FS Matching: \"we control for the common shock and its interaction with the presence of Family Safeguarding\""),
    plan_row(paste0(prefix, "_cla_18m_serial"), prog, "did", "serial_correlation", "cla_18m",
             plan_population(design, "cla_18m"), "serial_test", "cla_18m ~ live",
             family = "gaussian", time = "quarter", term = "statistic", scale = "test",
             inference = "Breusch-Godfrey on the authority x quarter panel, serial correlation if p < 0.05",
             protocol = "FS Primary Analysis: \"We check for serial correlation using the Breusch-Godfrey test\""),
    plan_row(paste0(prefix, "_cla_18m_hausman"), prog, "did", "hausman", "cla_18m",
             plan_population(design, "cla_18m"), "hausman_test", "cla_18m ~ treated",
             family = "gaussian", term = "statistic", scale = "test", run_if = "repeats",
             inference = "cluster-robust Hausman test (individual FE vs RE)",
             protocol = "FS Primary Analysis: \"if the share of individuals that occur repeatedly in our sample is larger than 15 percent\"")
  ))
}

# Several choices from a set (argument check).
match_choices <- function(x, choices, arg) {
  if (!is.character(x) || !length(x) || !all(x %in% choices)) {
    stop_arg(arg, sprintf("must be some of %s", paste0("\"", choices, "\"", collapse = ", ")),
             sprintf("for example %s = \"%s\".", arg, choices[1]))
  }
  unique(x)
}
