# analyse(): runs a protocol's analysis plan (the rows of protocol_models())
# on the records. One runner per estimator (plan_runners); the data each row
# needs is prepared once per cohort/outcome (plan_data()); missing covariates
# are imputed once and every model refitted per imputation.

#' Run a protocol's whole analysis plan
#'
#' Builds the cohorts the plan needs, handles missing covariates as the
#' protocols say, runs every model of [protocol_models()] (or an edited
#' copy), and returns one results table with a row per estimate, the fitted
#' objects, and the tables the reports need.
#'
#' **Family Safeguarding.** For each outcome, authorities are matched on
#' pre-period trends ([match_trends()]; the nearest candidate unless
#' `matches` gives a selection), the cohort is stacked by matched pair
#' ([stack_pairs()]) and children are matched by CEM within pair and
#' financial year on the outcome's sample ([cem()] with the design's
#' coarsening); the DiD regressions are weighted by the CEM weights and
#' clustered by the physical authority. The stepped-wedge strand uses the
#' treated authorities only.
#'
#' **Family Valued.** The stepped-wedge models run on the cohort of the
#' treated authorities (children in care for the care outcomes). The DiD
#' strand needs comparator authorities in the design
#' (`design_family_valued(strand = "did")` with comparators in the roll-out);
#' it follows the Family Safeguarding DiD as above (trend matching per
#' outcome, stacking by pair, CEM within pair and financial year with the
#' design's `cem` coarsening, the CEM-weighted regressions clustered by
#' authority) on the referrals of its own window, from the design's
#' `did_start` (two financial years before the first go-live by default) to
#' the end of the trial period.
#'
#' **Missing data** ("drop covariates that are missing at a rate greater than
#' 30%. For covariates with lower levels of missingness, we will conduct
#' multiple imputation"): covariates above the design's `max_missing` are
#' dropped by [build_cohort()] and removed from every formula; the others are
#' imputed `imputations` times with `mice` (on the cohort's covariates, arm,
#' authority, period and the outcomes that are fully observed); each
#' imputation's covariates are given to every cohort of the plan (the
#' covariates are the child's at the same first referral), CEM and every
#' model are refitted per imputation and the estimates pooled by
#' [pool_rubin()] with the model's own degrees of freedom as complete-data
#' df. Bootstrap and permutation p-values, which Rubin's rules do not cover,
#' are the median over the imputations (the "median P rule", Eekhout, van de
#' Wiel & Heymans 2017, *BMC Medical Research Methodology* 17:129), and so
#' are the bounds of their confidence intervals: the bootstrap is run within
#' each imputed data set ("MI Boot", Schomaker & Heumann 2018, *Statistics
#' in Medicine* 37:2252) and its interval found there by test inversion with
#' the same draws. When the per-imputation intervals have a point in common
#' (imputation moves each by less than its width) and the number of
#' imputations is odd, the median bounds are exactly the null values whose
#' median p-value is at least 1 - level, so the interval and the p-value
#' agree. Without `mice`, or with
#' `imputations = 0`, the models use complete cases and the results say so.
#'
#' **Multiplicity.** Hochberg's step-up adjustment within each family of
#' secondary outcomes (programme x strand; the plan's `hochberg` column),
#' next to the unadjusted p-values.
#'
#' **Few-cluster inference of the Family Valued linear secondaries.** The
#' wild cluster bootstrap of the linear mixed model ([wild_boot()] with its
#' defaults) and the CR3 t-test with G - 1 df (`tidy(fit, vcov = "CR3")`,
#' estimator `"cr3"`) re-use the model's fit, which is then fitted with
#' `cluster` (its own row keeps the model-based standard error). Over
#' imputations the CR3 rows are pooled by Rubin's rules with G - 1 as the
#' complete-data df; the bootstrap p-values are the median.
#'
#' **Covariates a model's rows cannot estimate.** The plan is pre-specified,
#' but in a small sample a covariate (X or Z) can be constant or aliased in
#' the rows a model fits (complete cases, CEM weight above 0): it is left out
#' of that model, as [lm()] leaves out aliased columns, and the estimand is
#' unchanged. Factor levels absent from those rows are dropped. The check
#' follows each estimator: the hurdle's count part is checked on the
#' positive counts alone (a covariate aliased there is left out of that part
#' only), the FGLS's individual-level regressors within authority x period x
#' arm cells and its cell-level ones against the authority and period
#' effects. For a logit (the protocol's rule: "If the baseline rate is
#' outside of that range, we employ a logistic regression instead"), and for
#' the hurdle's zero part, a covariate level in which the outcome never (or
#' always) occurs is merged into the covariate's largest level. Each such
#' change is a note in `tables$notes` and listed by `summary()`; the
#' estimators themselves still stop with a clear error on such input. With
#' imputations, every imputation fits the same model (Rubin's rules pool one
#' parameter): a covariate left out in one imputation is left out in all, and
#' levels merged in one are merged in all (the union of the imputations'
#' decisions). The rows checked are complete on every column the estimator
#' reads, weights, cluster and absorbed fixed effects included.
#'
#' **Family of the alternative treatment definitions.** The rule "a linear
#' regression if the baseline rate of our outcome is between 5 and 95%" is
#' applied to the outcome's baseline rate under the main definition (referral
#' date), so that the open-days rows are on the primary's scale. Those
#' definitions code a child by the open days of their referrals after
#' go-live, and children who enter care keep their cases open: their
#' estimates carry that selection (see the protocol's own reading, "to
#' analyse the magnitude of the treatment effect further").
#'
#' Rows that need a capability the package does not have yet, or whose
#' condition (`run_if`) is not met, or that fail, are kept with their reason
#' in `status`.
#'
#' Independent models run on the user's `future` plan (through
#' `future.apply`) when one other than sequential is set; results equal the
#' serial ones. A progress bar is shown with `cli` when `progress = TRUE`.
#'
#' @param data An `sfp_data` object (the records).
#' @param design An `sfp_design`.
#' @param models The plan to run: `NULL` for [protocol_models()] of the
#'   design (restricted to `outcomes`, `sensitivity`, `strands`), or an
#'   edited copy of it.
#' @param outcomes,sensitivity Passed to [protocol_models()].
#' @param strands `NULL` (every strand, the DiD strand of a design without
#'   comparators reported as not available) or some of `"stepped_wedge"`,
#'   `"did"` (a strand asked for explicitly must be possible).
#' @param imputations Number of imputations (0 for complete cases).
#' @param matches The DiD strands: a named list by outcome of
#'   [match_trends()] results (after [select_matches()]) or of selections
#'   (lists named by treated authority, as for [select_matches()]).
#' @param shock A common shock for [common_shock_test()] (a date or a 0/1
#'   column of the cohort); `NULL` skips that row.
#' @param assumptions Passed to [triangulate()].
#' @param cost Arguments of [cost_benefit()] other than `effect` and
#'   `p.value` (e.g. `list(cost_per_child = 60000, costs = ...)`);
#'   `children_per_year` defaults to the cohort's. `NULL` skips it.
#' @param fidelity An input table for [fidelity()]; `NULL` skips it.
#' @param alpha Significance level (cost-benefit rule, triangulation).
#' @param censor_share Share of an outcome at its cap above which the tobit
#'   row runs.
#' @param bacon_risk Share of the decomposition's weight on comparisons that
#'   use already-treated authorities as controls above which the
#'   Callaway-Sant'Anna row runs.
#' @param seed Seed of the imputations (and of the bootstraps).
#' @param progress Show a progress bar (needs cli).
#' @return An object of class `sfp_analysis`: `results` (one row per
#'   estimate: `programme`, `strand`, `outcome`, `analysis`, `term`, `scale`,
#'   `estimate`, `std.error`, `df`, `conf.low`, `conf.high`, `p.value`,
#'   `p.adjusted`, `model`, `method` (the inference the row ran: the plan's
#'   `inference`, except a wild bootstrap row of a mixed model with fewer
#'   than 10 authorities, which runs what [wild_boot()] does by default
#'   there: for a linear one the CR3 t-test with G - 1 df, for a binomial one
#'   the score bootstrap studentised by a linearised CR3 jackknife), `status`, `n_imputations`), `models` (the plan
#'   run), `fits` (by model id; with imputations, the fit on the first
#'   imputation), `tables` (`table1`, `exclusion_flow`, `mdes`, `matching`,
#'   `cem`, `missing`, `multiplicity`, `triangulation`, `imputation`, and
#'   `cost_benefit`, `fidelity` when asked), `extras` (the DiD strand's
#'   matching objects by outcome: `matching`, the [match_trends()] results,
#'   and `cem`, the [cem()] results of the outcome's first DiD model, on the
#'   first imputation; [report()] draws them), `design`, `call`, `settings`.
#'   `as.data.frame()` gives `results`.
#' @examples
#' \donttest{
#' data(sfp_example_fv)
#' d <- design_family_valued(sfp_example_fv)
#' a <- analyse(sfp_example_fv, d, sensitivity = FALSE, imputations = 0,
#'              progress = FALSE)
#' a
#' }
#' @export
analyse <- function(data, design, models = NULL, outcomes = NULL, sensitivity = TRUE,
                    strands = NULL, imputations = 5L, matches = NULL, shock = NULL,
                    assumptions = c(did = NA, stepped_wedge = NA), cost = NULL,
                    fidelity = NULL, alpha = 0.05, censor_share = 0.05,
                    bacon_risk = 0.1, seed = 1L, progress = interactive()) {
  call <- match.call()
  if (!inherits(design, "sfp_design")) {
    stop_arg("design", "must be an `sfp_design`",
             "build one with design_family_safeguarding() or design_family_valued().")
  }
  if (!inherits(data, "sfp_data")) {
    stop_arg("data", "must be an `sfp_data` object (the records)", "build it with sfp_data() or simulate_sfp().")
  }
  if (!is.numeric(imputations) || length(imputations) != 1L || is.na(imputations) ||
      imputations < 0 || imputations == 1 || imputations != round(imputations)) {
    stop_arg("imputations", sprintf("must be 0 (complete cases) or a whole number of at least 2, not %s",
                                    describe_value(imputations)), "give e.g. imputations = 5.")
  }
  if (!isTRUE(progress) && !isFALSE(progress)) {
    stop_arg("progress", sprintf("must be TRUE or FALSE, not %s", describe_value(progress)),
             "use progress = FALSE for no progress bar.")
  }
  if (!is.null(cost) && (!is.list(cost) || is.data.frame(cost) || length(cost) && is.null(names(cost)))) {
    stop_arg("cost", sprintf("must be NULL or a named list of cost_benefit() arguments, not %s",
                             describe_value(cost)),
             "give e.g. cost = list(cost_per_child = 60000).")
  }
  if (!isTRUE(sensitivity) && !isFALSE(sensitivity)) {
    stop_arg("sensitivity", "must be TRUE or FALSE", "use sensitivity = FALSE for the primary and secondary analyses only.")
  }
  for (a in c("alpha", "censor_share", "bacon_risk")) {
    check_number(get(a), a, 0, 1, lower_open = TRUE, upper_open = TRUE, fix = "see ?analyse for its default.")
  }
  has_comp <- design$programme == "FS" || any(design$las$role == "comparator")
  if (!is.null(strands)) {
    strands <- match_choices(strands, c("stepped_wedge", "did"), "strands")
    if ("did" %in% strands && !has_comp) {
      stop_arg("strands", "asks for the DiD strand but the design has no comparator authorities",
               "add comparator authorities to the roll-out table, or use strands = \"stepped_wedge\".")
    }
  }
  if (is.null(models)) {
    models <- protocol_models(design, outcomes, sensitivity,
                              strands %||% c("stepped_wedge", "did"))
  } else {
    models <- plan_check_models(models, design)
  }
  if (!nrow(models)) {
    stop_arg(if (is.null(call$models)) "outcomes" else "models", "leaves no model to run",
             "give at least one row of protocol_models(design), or leave `outcomes` NULL for all the design's outcomes.")
  }
  if (is.null(strands) && !has_comp && any(models$strand == "did")) {
    message("analyse(): the ", design$programme, " design has no comparator authorities; ",
            "the DiD strand is reported as not available.")
  }
  settings <- list(imputations = as.integer(imputations), alpha = alpha,
                   censor_share = censor_share, bacon_risk = bacon_risk, seed = seed,
                   shock = shock)
  ctx <- plan_context(data, design, models, settings, matches)
  settings$imputations <- ctx$m
  models <- ctx$models
  out <- plan_run(models, ctx, progress)
  results <- plan_hochberg(out$results, models)
  tables <- plan_tables(ctx, out, results, models)
  tri <- plan_triangulation(results, assumptions, alpha)
  tables$triangulation <- tri
  if (!is.null(cost)) tables$cost_benefit <- plan_cost_benefit(results, ctx, cost, alpha)
  if (!is.null(fidelity)) tables$fidelity <- fidelity(fidelity)
  structure(list(results = results, models = models, fits = out$fits, tables = tables,
                 extras = plan_extras(ctx, out$extras, models),
                 design = design, call = call, settings = settings),
            class = "sfp_analysis")
}

# The DiD strand's matching objects by outcome: the trend matching and the
# CEM of the outcome's first DiD model under the main treatment definition.
plan_extras <- function(ctx, extras, models) {
  cems <- list()
  did <- models[models$strand == "did" & models$treatment == "referral_date", , drop = FALSE]
  for (i in seq_len(nrow(did))) {
    o <- did$outcome[i]
    cm <- extras[[did$id[i]]]$cem
    if (is.null(cems[[o]]) && inherits(cm, "sfp_cem")) cems[[o]] <- cm
  }
  list(matching = ctx$matches %||% list(), cem = cems)
}

# --- checks ----------------------------------------------------------------

plan_check_models <- function(models, design) {
  if (!is.data.frame(models)) stop_arg("models", "must be a data frame from protocol_models()")
  need <- names(protocol_models(design, sensitivity = FALSE))
  miss <- setdiff(need, names(models))
  if (length(miss)) {
    stop_arg("models", sprintf("lacks column%s %s", if (length(miss) > 1) "s" else "",
                               paste0("`", miss, "`", collapse = ", ")),
             "start from protocol_models(design) and edit its rows.")
  }
  bad <- which(duplicated(models$id))
  if (length(bad)) {
    stop_rows("models", "id", bad, "repeat a model id", "give each row its own id.",
              keys = models$id[bad], key_name = "ids")
  }
  bad <- which(!models$estimator %in% names(plan_runners))
  if (length(bad)) {
    stop_rows("models", "estimator", bad, "name no estimator analyse() can run",
              sprintf("use one of %s.", paste(names(plan_runners), collapse = ", ")),
              keys = models$estimator[bad], key_name = "values")
  }
  known <- c(design$outcomes)
  bad <- which(!models$outcome %in% known)
  if (length(bad)) {
    stop_rows("models", "outcome", bad, "are not outcomes of the design",
              sprintf("use one of %s.", paste0("\"", known, "\"", collapse = ", ")),
              keys = models$outcome[bad], key_name = "values")
  }
  dep <- models$depends_on[!is.na(models$depends_on)]
  bad <- which(!is.na(models$depends_on) & !models$depends_on %in% models$id)
  if (length(bad)) {
    stop_rows("models", "depends_on", bad, "name a model that is not in the plan",
              "keep the model it re-uses, or drop the row.", keys = models$depends_on[bad],
              key_name = "ids")
  }
  rownames(models) <- NULL
  structure(as.data.frame(models, stringsAsFactors = FALSE), class = c("sfp_models", "data.frame"))
}

# --- context: cohorts, imputations, matching --------------------------------

plan_context <- function(data, design, models, settings, matches) {
  runnable <- is.na(models$requires)
  # the referral cohort per treatment definition; outcomes with their own
  # population (reunification: children entering care) are built alone
  keys <- unique(c("referral_date", plan_cohort_key(models$treatment[runnable], models$outcome[runnable],
                                                    models$strand[runnable], design)))
  cohorts <- list()
  cohort_errors <- list()
  for (key in keys) {
    # the FV DiD strand's cohorts: referrals from its own window (did_start)
    did <- startsWith(key, "did:")
    parts <- strsplit(sub("^did:", "", key), "|", fixed = TRUE)[[1]]
    outs <- if (length(parts) > 1L) parts[2] else setdiff(design$outcomes, plan_own_population)
    bd <- design
    if (did) bd$trial_start <- design$did_start
    r <- tryCatch(suppressMessages(build_cohort(data, bd, treatment = parts[1], outcomes = outs)),
                  error = function(e) e)
    if (inherits(r, "error")) cohort_errors[[key]] <- conditionMessage(r) else cohorts[[key]] <- r
  }
  primary <- cohorts[["referral_date"]]
  dropped <- attr(primary, "covariates_dropped_by_sample") %||% list()
  for (key in grep("|", names(cohorts), fixed = TRUE, value = TRUE)) {
    o <- strsplit(key, "|", fixed = TRUE)[[1]][2]
    dropped[[o]] <- unique(c(dropped[[o]], attr(cohorts[[key]], "covariates_dropped_by_sample")[[o]]))
  }
  models <- plan_drop_covariates(models, dropped)
  miss <- attr(primary, "covariate_missing")
  to_impute <- names(miss)[miss > 0 & miss <= design$max_missing]
  to_impute <- intersect(to_impute, plan_model_covariates(models))
  m <- settings$imputations
  imputed <- NULL
  if (length(to_impute) && m > 0) {
    if (!plan_has_mice()) {
      message("analyse(): mice is not installed, so no multiple imputation: the models use ",
              "complete cases (children with a missing ", paste(to_impute, collapse = ", "),
              " are excluded and counted in each fit). Install mice to impute.")
      m <- 0L
    } else {
      imputed <- plan_impute(plan_impute_frame(primary, cohorts, design), design, to_impute, m,
                             settings$seed)
    }
  } else if (!length(to_impute)) {
    m <- 0L
  }
  ctx <- list(data = data, design = design, cohorts = cohorts, cohort_errors = cohort_errors,
              models = models,
              settings = settings, m = as.integer(m), imputed = imputed,
              to_impute = to_impute, dropped = dropped, missing = miss)
  if (any(models$strand == "did" & runnable)) {
    ctx$matches <- plan_matches(data, design, models, matches)
  }
  ctx
}

# Outcomes whose sample is not the referral cohort (build_cohort() builds
# them alone).
plan_own_population <- c("reunified_18m")
plan_cohort_key <- function(treatment, outcome, strand = "stepped_wedge", design = NULL) {
  key <- ifelse(outcome %in% plan_own_population, paste0(treatment, "|", outcome), treatment)
  # the FV DiD strand has its own window (design$did_start)
  if (!is.null(design$did_start)) {
    did <- rep_len(strand %in% "did", length(key))
    key[did] <- paste0("did:", key[did])
  }
  key
}

# The children imputed: the primary cohort's and, for the FV DiD strand's
# window (design$did_start), the children of its cohorts not in the primary
# one, with the stepped-wedge period of their referral (step -1 before the
# trial period). A child is imputed once: the DiD rows of a child in both
# take the imputations of the child's primary-cohort row.
plan_impute_frame <- function(primary, cohorts, design) {
  df <- as.data.frame(primary)
  # the referral cohorts only: an outcome's own population (reunification,
  # key "did:<treatment>|<outcome>") lacks the other outcomes' columns, and
  # binding it would cut them from every child's imputation model; its
  # children outside the referral cohorts are left to complete cases (counted
  # in each fit), as the stepped-wedge strand's own populations are
  for (key in grep("^did:[^|]*$", names(cohorts), value = TRUE)) {
    e <- as.data.frame(cohorts[[key]])
    e <- e[!e$child_id %in% df$child_id & !duplicated(e$child_id), intersect(names(df), names(e)), drop = FALSE]
    if (!nrow(e)) next
    if ("step" %in% names(e)) {
      e$step <- sw_step(e$referral_date, design$trial_start, design$step_months, design$trial_end)
    }
    df <- rbind(df[names(e)], e)
  }
  df
}

plan_model_covariates <- function(models) {
  unique(unlist(strsplit(paste(models$x, models$z, sep = ", "), ", ")))
}

# Remove the covariates dropped for missingness (more than max_missing of
# an outcome's analysed sample, build_cohort()'s `covariates_dropped_by_sample`, a list
# by outcome; a plain vector applies to every outcome) from the formulas.
plan_drop_covariates <- function(models, dropped) {
  if (!length(dropped)) return(models)
  for (i in seq_len(nrow(models))) {
    vs <- if (is.list(dropped)) dropped[[models$outcome[i]]] else dropped
    for (v in vs) {
      pat <- paste0(" \\+ ", v, "(?=( \\+| \\||$|\\)))")
      models$formula[i] <- gsub(pat, "", models$formula[i], perl = TRUE)
      models$x[i] <- paste(setdiff(strsplit(models$x[i], ", ")[[1]], v), collapse = ", ")
      models$z[i] <- paste(setdiff(strsplit(models$z[i], ", ")[[1]], v), collapse = ", ")
    }
  }
  models
}

# (option sfpceval.use_mice = FALSE behaves as if mice were not installed)
plan_has_mice <- function() {
  isTRUE(getOption("sfpceval.use_mice", TRUE)) && requireNamespace("mice", quietly = TRUE)
}

# mice on the child-level covariates: the imputation model holds the
# covariates, arm, authority, period and the fully observed outcomes.
plan_impute <- function(cohort, design, vars, m, seed) {
  df <- as.data.frame(cohort)
  period <- if (design$programme == "FV") "step" else "fin_year"
  cand <- c(plan_model_covariates(list(x = paste(design$covariates, collapse = ", "), z = "")),
            "treated", "la", period, design$outcomes)
  cand <- intersect(cand, names(df))
  keep <- cand[vapply(df[cand], function(v) !anyNA(v), TRUE) | cand %in% vars]
  d <- df[keep]
  for (v in names(d)) {
    if (is.character(d[[v]]) || is.logical(d[[v]])) d[[v]] <- factor(d[[v]])
  }
  for (v in vars) {
    if (is.numeric(d[[v]]) && all(d[[v]] %in% c(0, 1, NA))) d[[v]] <- factor(d[[v]])
  }
  meth <- plan_mice_method(d, vars)
  # with_seed() restores the caller's random state afterwards
  # with one incomplete variable the chained equations converge in one
  # iteration (its model's predictors are all complete, so each iteration
  # draws afresh from the same posterior), so maxit = 1 is exact. Variables
  # listed but with no NA (their missing-like levels, e.g. ethnicity "REFU",
  # count for the 30% rule but stay a level) are not imputed and not counted.
  maxit <- if (sum(vapply(d[vars], anyNA, TRUE)) <= 1L) 1L else 5L
  imp <- with_seed(seed, suppressWarnings(mice::mice(d, m = m, method = meth, maxit = maxit,
                                                      printFlag = FALSE, seed = seed)))
  lapply(seq_len(m), function(k) {
    comp <- mice::complete(imp, k)[vars]
    for (v in vars) {
      if (is.factor(comp[[v]]) && !is.factor(df[[v]])) {
        comp[[v]] <- methods::as(as.character(comp[[v]]), class(df[[v]])[1])
      }
    }
    data.frame(child_id = df$child_id, comp, stringsAsFactors = FALSE)
  })
}

# mice's default methods (mice::make.method()) for the variables imputed,
# "" for the others: pmm for numeric, logreg for two levels, polr for an
# ordered factor, polyreg for more levels. (make.method() applies its rule
# to every element of a single-column block, which costs seconds on 50k
# children.)
plan_mice_method <- function(d, vars) {
  meth <- stats::setNames(rep("", ncol(d)), names(d))
  for (v in intersect(vars, names(d))) {
    y <- d[[v]]
    if (!anyNA(y)) next
    meth[[v]] <- if (is.numeric(y)) "pmm" else if (nlevels(y) == 2L) "logreg" else
      if (is.ordered(y) && nlevels(y) > 2L) "polr" else if (nlevels(y) > 2L) "polyreg" else
        if (is.logical(y)) "logreg" else "pmm"
  }
  meth
}

# Covariates of imputation k given to a cohort (by child).
plan_fill <- function(df, ctx, k) {
  if (is.null(ctx$imputed) || k == 0L) return(df)
  imp <- ctx$imputed[[k]]
  i <- match(df$child_id, imp$child_id)
  for (v in ctx$to_impute) {
    if (!v %in% names(df)) next
    fill <- is.na(df[[v]]) & !is.na(i)
    df[[v]][fill] <- imp[[v]][i[fill]]
  }
  df
}

# The DiD strands (FS, FV with comparators): trend matching per outcome on
# every referral from the start of the records (nearest candidate unless
# selected). An outcome with its own population (reunification: children
# entering care) is matched on that population's cohort.
plan_matches <- function(data, design, models, matches) {
  outs <- unique(models$outcome[models$strand == "did" & is.na(models$requires)])
  # the absence DiD uses the primary outcome's pairs (plan_did_data())
  outs <- unique(sub("^absence$", "cla_18m", outs))
  md <- design
  first <- min(data$referrals$referral_date, na.rm = TRUE)
  md$trial_start <- as.Date(first)
  mco <- list()
  res <- list()
  errors <- list()
  for (o in outs) {
    given <- matches[[o]]
    if (inherits(given, "sfp_trend_match")) {
      res[[o]] <- given
      next
    }
    key <- if (o %in% plan_own_population) o else "referral"
    if (is.null(mco[[key]])) {
      mco[[key]] <- suppressMessages(build_cohort(
        data, md, outcomes = if (key == "referral") setdiff(outs, plan_own_population) else o))
    }
    # an outcome whose matching fails (e.g. quarters without children in a
    # small sample) fails its DiD rows, not the plan
    mt <- tryCatch(suppressWarnings(match_trends(mco[[key]], design, o)),
                   error = function(e) e)
    if (inherits(mt, "error")) {
      errors[[o]] <- paste0("trend matching on ", o, ": ", conditionMessage(mt))
      next
    }
    if (!is.null(given)) mt <- select_matches(mt, given)
    res[[o]] <- mt
  }
  attr(res, "errors") <- errors
  res
}

# --- data for one row ------------------------------------------------------

# Analysis data of a row on imputation k (0: as recorded). The DiD data
# (stacking and CEM) are cached per (treatment, outcome, strand, k); the
# rest is the row's base data (plan_base(), cached) with imputation k's
# covariates filled in.
plan_data <- function(row, ctx, k, cache) {
  key <- paste(row$treatment, row$outcome, row$strand, k, row$estimator, sep = "|")
  if (!is.null(cache[[key]])) return(cache[[key]])
  base <- plan_base(row, ctx, cache)
  df <- plan_fill_base(base, ctx, k)
  if (row$strand != "did") return(list(df = df))
  # only the DiD data (stacking and CEM) are worth keeping between rows
  out <- plan_did_data(df, row, ctx, k)
  assign(key, out, envir = cache)
  out
}

# A row's data before imputation: the cohort (for absence, its panel, whose
# columns per term replace the cohort's per-child summaries), the derived
# columns, and for the stepped-wedge strand the treated authorities only
# (the cohort of a DiD design also holds the comparators'). Only the imputed
# covariates differ between imputations, so this is built once per cohort,
# panel and strand (cached) with what plan_fill() needs to fill them in:
# `fill`, by imputed column, the rows whose missing value an imputation
# fills, and `at`, each row's child in the imputations. The same data as
# filling the cohort first (the panel is merged and the rows kept by child,
# authority and date, never by an imputed column).
plan_base <- function(row, ctx, cache) {
  ckey <- plan_cohort_key(row$treatment, row$outcome, row$strand, ctx$design)
  absence <- row$outcome == "absence"
  sw <- row$strand == "stepped_wedge"
  key <- paste("base", ckey, absence, sw, sep = "|")
  if (!is.null(cache[[key]])) return(cache[[key]])
  cohort <- ctx$cohorts[[ckey]]
  if (is.null(cohort)) stop(ctx$cohort_errors[[ckey]] %||% "the cohort could not be built", call. = FALSE)
  df <- as.data.frame(cohort)
  vars <- intersect(ctx$to_impute, names(df))
  design <- ctx$design
  if (absence) {
    ab <- absence_panel(cohort)
    df <- df[setdiff(names(df), setdiff(names(ab), "child_id"))]
    vars <- intersect(vars, names(df))
    df <- merge(ab, df, by = "child_id", sort = FALSE)
  }
  df <- plan_derived(df, design)
  if (sw) {
    keep <- df$la %in% design$las$la_code[design$las$role == "treated"]
    if (!all(keep)) df <- df[keep, , drop = FALSE]
  }
  base <- list(df = df)
  if (!is.null(ctx$imputed)) {
    at <- match(df$child_id, ctx$imputed[[1]]$child_id)
    base$at <- at
    base$fill <- lapply(stats::setNames(vars, vars), function(v) which(is.na(df[[v]]) & !is.na(at)))
  }
  assign(key, base, envir = cache)
  base
}

# plan_fill() on a plan_base(): imputation k's covariates in the rows
# whose value is missing.
plan_fill_base <- function(base, ctx, k) {
  df <- base$df
  if (is.null(ctx$imputed) || k == 0L) return(df)
  imp <- ctx$imputed[[k]]
  # (plan_impute() gives every imputation the same children)
  if (!identical(imp$child_id, ctx$imputed[[1]]$child_id)) return(plan_fill(df, ctx, k))
  for (v in names(base$fill)) {
    f <- base$fill[[v]]
    df[[v]][f] <- imp[[v]][base$at[f]]
  }
  df
}

# Rows a weighted model is given: CEM weights of 0 are the unmatched
# children (counted in the CEM summary); a missing or negative weight is
# left for the estimator, which names it in an error.
plan_weighted_rows <- function(w) is.na(w) | w != 0

# Columns the formulas use beyond the cohort's: readiness, time since go-live.
plan_derived <- function(df, design) {
  las <- design$las
  if (!is.null(las$stratum)) {
    df$high_readiness <- as.integer(las$stratum[match(df$la, las$la_code)] %in% "high")
  }
  go <- las$go_live_date[match(df$la, las$la_code)]
  months <- design$step_months %||% 12L
  since <- floor(as.numeric(df$referral_date - go) / (365.25 / 12) / months)
  df$exposure_period <- ifelse(df$treated %in% 1 & !is.na(since), pmax(since, 0), NA)
  df
}

# DiD data (FS, FV): stacked pairs of the outcome's matching, CEM within
# pair x financial year on the outcome's sample.
plan_did_data <- function(df, row, ctx, k) {
  o <- if (row$outcome == "absence") "cla_18m" else row$outcome
  mt <- ctx$matches[[o]]
  if (is.null(mt)) {
    stop(attr(ctx$matches, "errors")[[o]] %||% paste("no trend matching for outcome", o),
         call. = FALSE)
  }
  st <- stack_pairs(df, mt, ctx$design)
  y <- if (row$outcome == "absence") "absence_rate" else row$outcome
  st <- st[!is.na(st[[y]]), , drop = FALSE]
  spec <- ctx$design$cem
  vars <- all.vars(spec$formula[[3]])
  gone <- setdiff(vars, names(st))
  f <- spec$formula
  if (length(gone)) {
    # a CEM variable dropped for missingness (> max_missing) is not matched on
    f <- stats::update(f, stats::as.formula(paste(". ~ . -", paste(gone, collapse = " - ")),
                                            env = globalenv()))
  }
  cm <- cem(f, data = st, cutpoints = spec$cutpoints[setdiff(names(spec$cutpoints), gone)],
            grouping = spec$grouping, exact = spec$exact)
  st$cem_weight <- cm$weights
  # the individual of the stacked regression: a child in one pair (a
  # comparator's children appear in every pair that uses their authority)
  st$child_pair <- paste(st$child_id, st$pair, sep = "@")
  list(df = st, cem = cm, matches = mt)
}

# Expand `.exposure` into indicators of periods since go-live (m >= 1).
plan_formula <- function(row, df) {
  f <- row$formula
  if (grepl(".exposure", f, fixed = TRUE)) {
    ms <- sort(unique(df$exposure_period[!is.na(df$exposure_period) & df$exposure_period >= 1]))
    terms <- character()
    for (m in ms) {
      v <- paste0("exposure_", m)
      df[[v]] <- as.integer(df$exposure_period %in% m)
      terms <- c(terms, v)
    }
    f <- sub(".exposure", if (length(terms)) paste(terms, collapse = " + ") else "0", f, fixed = TRUE)
    f <- gsub(" \\+ 0", "", f)
  }
  list(formula = stats::as.formula(f, env = globalenv()), df = df)
}

# Covariates (X, Z) that are constant or aliased in the rows a model analyses
# carry no information and make the design rank-deficient: they are left
# out, with a note (the estimand is unchanged), as lm() leaves out aliased
# columns. The rows are those the estimator fits: complete cases of the
# formula's variables and of the columns in `cc` (weights, cluster, absorbed
# fixed effects; factor levels empty among them are dropped, so that a
# reference level seen only in incomplete rows does not alias the others).
# For a logit, a level of a categorical covariate in which the outcome never
# (or always) occurs would have an infinite coefficient and no standard
# errors: it is merged into the covariate's largest level (a 0/1 covariate is
# left out), with a note. Per estimator (`row$estimator`): the hurdle's zero
# part is a logit of y > 0 (merged as above) and a covariate aliased among the
# positive counts is left out of the count part only (`y ~ count | zero`);
# the FGLS's individual-level regressors must vary within group x period x
# arm cells and its cell-level ones must not be aliased with the group and
# period effects (as fgls_bcj() checks).
#
# One rule per row for every imputation (Rubin's rules pool one parameter
# over the imputations, so every imputation must fit the same model):
# plan_run_one() first asks each imputation for its rule (plan_prune() in the
# rule pass, `cache$prune_pass`, returns it through a condition) and stores
# their union (plan_prune_union()): a covariate left out in one imputation
# is left out in all, levels merged in one are merged in all. Without
# imputations the rule is the data's own. Cached by row id.
plan_prune <- function(row, formula, df, cache, binomial = FALSE, cc = character(), k = NULL) {
  key <- paste("prune", row$id, sep = "|")
  rule <- cache[[key]]
  own <- NULL
  if (is.null(rule)) {
    rule <- plan_prune_rule(row, formula, df, binomial, cc, memo = cache)
    if (identical(cache$prune_pass, row$id)) {
      stop(structure(class = c("sfp_prune_rule", "condition"),
                     list(message = "prune rule", call = NULL, rule = rule)))
    }
    assign(key, rule, envir = cache)
    own <- rule$checked
  }
  for (v in names(rule$merge)) {
    x <- as.character(df[[v]])
    x[x %in% rule$merge[[v]]$from] <- rule$merge[[v]]$to
    df[[v]] <- factor(x, levels = setdiff(levels(factor(df[[v]])), rule$merge[[v]]$from))
  }
  if (length(rule$merge)) {
    message(sprintf("%s: merged %s (no variation in the outcome)", row$id,
                    paste(vapply(names(rule$merge), function(v) sprintf("`%s` level(s) %s into \"%s\"", v,
                          paste0("\"", rule$merge[[v]]$from, "\"", collapse = ", "), rule$merge[[v]]$to), ""),
                          collapse = "; ")))
  }
  if (length(rule$drop)) {
    message(sprintf("%s: left out %s (constant, aliased or without variation in the outcome in the analysed rows)",
                    row$id, paste0("`", rule$drop, "`", collapse = ", ")))
    formula <- plan_drop_terms(formula, rule$drop)
  }
  if (length(rule$drop_count)) {
    message(sprintf("%s: left out %s from the count part (constant or aliased among the positive counts)",
                    row$id, paste0("`", rule$drop_count, "`", collapse = ", ")))
    count <- plan_drop_terms(formula, rule$drop_count)
    formula <- stats::as.formula(paste(deparse1(count), "|", deparse1(formula[[3]])), env = globalenv())
  }
  df <- plan_cc_levels(df, c(all.vars(formula), cc))
  # the design this imputation's rule found of full rank (the rule pass
  # keeps it by imputation `k`); glmm_prepare() uses it only for that design
  if (is.null(own) && !is.null(k)) own <- cache[[paste("checked", row$id, k, sep = "|")]]
  list(formula = formula, df = df, checked = own)
}

# The rule every imputation can fit: the union of the imputations' rules
# (`rules`, one per imputation; NULL where the imputation failed before its
# rule). Left out anywhere: left out everywhere (and not merged). Levels
# merged anywhere: merged everywhere, into the covariate's largest level over
# the imputations among those not merged (`counts`, the level counts of each
# imputation's analysed rows); a covariate with fewer than two such levels
# (it would be constant) is left out.
plan_prune_union <- function(rules) {
  rules <- Filter(Negate(is.null), rules)
  if (!length(rules)) return(NULL)
  drop <- unique(unlist(lapply(rules, `[[`, "drop")))
  drop_count <- unique(unlist(lapply(rules, `[[`, "drop_count")))
  merge <- list()
  for (v in setdiff(unique(unlist(lapply(rules, function(r) names(r$merge)))), drop)) {
    from <- sort(unique(unlist(lapply(rules, function(r) r$merge[[v]]$from))))
    counts <- list()
    for (r in rules) {
      cn <- r$counts[[v]]
      for (l in names(cn)) counts[[l]] <- (counts[[l]] %||% 0) + cn[[l]]
    }
    counts <- unlist(counts)
    ok <- setdiff(names(counts), from)
    if (length(ok) < 2L) {  # merged into one level: constant, left out
      drop <- c(drop, v)
      next
    }
    merge[[v]] <- list(from = from, to = ok[which.max(counts[ok])])
  }
  list(drop = drop, merge = merge, drop_count = setdiff(drop_count, drop))
}

# `formula` without the terms `drop`.
plan_drop_terms <- function(formula, drop) {
  stats::update(formula, stats::as.formula(paste(". ~ . -", paste(drop, collapse = " - ")),
                                           env = globalenv()))
}

# Factors among `vars` keep only the levels that occur in the rows complete
# on `vars` (the rows a model fits); other rows are left as they are except
# that a value of a dropped level becomes NA (such a row is incomplete anyway).
plan_cc_levels <- function(df, vars) {
  vars <- intersect(vars, names(df))
  cc <- stats::complete.cases(df[vars])
  for (v in vars) {
    x <- df[[v]]
    if (!is.factor(x)) next
    # (a plain factor with every level present stays as it is: factor()
    # would rebuild the same one)
    present <- tabulate(as.integer(x)[cc], nlevels(x)) > 0L
    if (all(present) && setequal(names(attributes(x)), c("levels", "class")) &&
        identical(class(x), "factor")) next
    df[[v]] <- factor(x, levels = intersect(levels(x), as.character(x[cc])))
  }
  df
}

plan_prune_rule <- function(row, formula, df, binomial, cc = character(), memo = NULL) {
  covs <- setdiff(strsplit(paste(row$x, row$z, sep = ", "), ", ")[[1]], "")
  labels <- attr(stats::terms(formula), "term.labels")
  fixed <- labels[!grepl("|", labels, fixed = TRUE)]
  ff <- stats::reformulate(fixed, response = formula[[2]], env = globalenv())
  extra <- if (identical(row$estimator, "fgls_bcj")) c(row$cluster, row$time) else character()
  # the rows the estimator fits: complete on every column it reads (the
  # formula's, random-effect groupings included, and `cc`: weights, cluster,
  # absorbed fixed effects)
  ccv <- intersect(unique(c(all.vars(formula), cc, extra)), names(df))
  sig <- list(row$id, deparse1(formula), binomial, ccv, fixed)
  again <- plan_prune_again(memo, sig, df, ccv, fixed, cc)
  if (!is.null(again)) {
    mf <- again$mf
  } else {
    full_df <- df
    df <- df[stats::complete.cases(df[ccv]), ccv, drop = FALSE]  # only the columns read
    mf <- stats::model.frame(ff, plan_cc_levels(df, ccv), na.action = stats::na.omit)
    mf[] <- lapply(mf, function(v) if (is.factor(v)) droplevels(v) else v)
    memo_new <- list(sig = sig, df = full_df, mf = mf,
                     rows = match(rownames(mf), rownames(full_df)))
  }
  covs <- intersect(covs, names(mf))
  drop <- covs[vapply(covs, function(v) length(unique(mf[[v]])) < 2L, TRUE)]
  y <- mf[[1]]
  hurdle <- identical(row$estimator, "hurdle_fit")
  merge <- list()
  m <- list()
  if (binomial || hurdle) {
    m <- plan_merge_levels(if (hurdle) as.integer(y > 0) else y, mf, setdiff(covs, drop))
    merge <- m$merge
    drop <- c(drop, m$drop)
    for (v in names(merge)) {
      xx <- as.character(mf[[v]])
      xx[xx %in% merge[[v]]$from] <- merge[[v]]$to
      # the levels in plan_prune()'s order: the design checked is the one fitted
      mf[[v]] <- factor(xx, levels = setdiff(levels(factor(mf[[v]])), merge[[v]]$from))
    }
  }
  keep_terms <- setdiff(fixed, drop)
  decided <- list(drop, merge)
  if (!is.null(again) && identical(decided, again$memo$decided)) {
    # the first imputation's design with the imputed columns replaced, and
    # its cross-product updated in their rows and columns
    X <- again$memo$X
    G <- again$memo$G
    for (v in again$changed) {
      X[, v] <- as.double(mf[[v]])
      G[, v] <- G[v, ] <- crossprod(X, X[, v])[, 1]
    }
  } else {
    X <- stats::model.matrix(stats::reformulate(keep_terms, env = globalenv()), mf)
    G <- crossprod(X)
  }
  if (is.null(again) && !is.null(memo)) {
    memo_new$decided <- decided
    memo_new$X <- X
    memo_new$G <- G
    assign("prune_memo", memo_new, envir = memo)
  }
  full <- glmm_full_rank_gram(G)
  drop <- c(drop, plan_aliased(X, keep_terms, covs, full))
  # the design found of full rank, for sw_glmm() not to check it again
  # (glmm_prepare()'s `checked`: its rows and column sums identify it, so
  # it is used only if the rule applied leaves the same design)
  checked <- if (full) list(n = nrow(X), colsums = colSums(X))
  drop_count <- character()
  if (hurdle) {
    # the count part is fitted on the positive counts only
    keep_terms <- setdiff(keep_terms, drop)
    pos <- y > 0
    mp <- mf[pos, , drop = FALSE]
    mp[] <- lapply(mp, function(v) if (is.factor(v)) droplevels(v) else v)
    drop_count <- covs[covs %in% keep_terms & vapply(covs, function(v) length(unique(mp[[v]])) < 2L, TRUE)]
    keep_count <- setdiff(keep_terms, drop_count)
    Xp <- stats::model.matrix(stats::reformulate(keep_count, env = globalenv()), mp)
    drop_count <- c(drop_count, plan_aliased(Xp, keep_count, covs))
  }
  if (length(extra)) {
    keep_terms <- setdiff(keep_terms, drop)
    X <- stats::model.matrix(stats::reformulate(keep_terms, env = globalenv()), mf)
    drop <- c(drop, plan_fgls_aliased(X, keep_terms, covs, df[rownames(mf), extra], row$term))
  }
  list(drop = unique(drop), merge = merge, drop_count = unique(drop_count), counts = m$counts,
       checked = checked)
}

# The pruning on imputation k >= 2 of a row repeats the first imputation's
# work on the same rows: only the imputed columns differ. `memo` (the plan's
# cache) keeps the last rule's model frame, design and cross-product
# (`prune_memo`); when `df` differs from that rule's data only in numeric
# columns that enter the formula as main effects alone, with the same
# missing values (so the same complete rows), the model frame is the kept
# one with those columns replaced (list(mf, changed, memo)); otherwise NULL
# and the rule is computed from scratch. The same frame either way.
plan_prune_again <- function(memo, sig, df, ccv, fixed, cc) {
  if (is.null(memo)) return(NULL)
  pm <- memo$prune_memo
  if (is.null(pm) || !identical(pm$sig, sig) || nrow(df) != nrow(pm$df) ||
      !identical(attr(df, "row.names"), attr(pm$df, "row.names"))) {
    return(NULL)
  }
  changed <- ccv[!vapply(ccv, function(v) identical(df[[v]], pm$df[[v]]), TRUE)]
  for (v in changed) {
    x <- df[[v]]
    if (!is.numeric(x) || !v %in% fixed || v %in% cc || !v %in% names(pm$mf) ||
        !identical(is.na(x), is.na(pm$df[[v]])) ||
        sum(vapply(fixed, function(l) v %in% all.vars(str2lang(l)), TRUE)) != 1L ||
        !identical(class(x), class(pm$mf[[v]]))) {
      return(NULL)
    }
  }
  mf <- pm$mf
  for (v in changed) mf[[v]] <- df[[v]][pm$rows]
  list(mf = mf, changed = changed, memo = pm)
}

# For a logit of 0/1 `y`: categorical covariates' levels in which y is all 0
# or all 1 are merged into the covariate's largest level; a 0/1 covariate
# with such a level, or a categorical one left with a single level, is
# dropped. y may be a (successes, failures) matrix.
plan_merge_levels <- function(y, mf, covs) {
  merge <- list()
  drop <- character()
  counts <- list()
  for (v in covs) {
    x <- mf[[v]]
    if (!(is.factor(x) || is.character(x) || all(x %in% c(0, 1)))) next
    # 0/1 outcome: levels x (0, 1); successes out of trials: levels x
    # (successes, failures) summed
    if (!is.matrix(y)) {
      tt <- plan_level_table(x, y)
      if (is.factor(x) || is.character(x)) counts[[v]] <- tt$counts
      tab <- tt$tab
    } else {
      if (is.factor(x) || is.character(x)) counts[[v]] <- c(table(as.character(x)))
      tab <- rowsum(y, as.character(x))
    }
    bad <- rownames(tab)[tab[, 1] == 0 | (ncol(tab) > 1 & tab[, ncol(tab)] == 0)]
    if (!length(bad)) next
    if (!(is.factor(x) || is.character(x))) {
      drop <- c(drop, v)
      next
    }
    ok <- setdiff(names(counts[[v]]), bad)
    if (length(ok) < 2L) {  # merged into one level: constant, left out
      drop <- c(drop, v)
      next
    }
    merge[[v]] <- list(from = bad, to = ok[which.max(counts[[v]][ok])])
  }
  list(merge = merge, drop = drop, counts = counts)
}

# For a covariate `x` (a factor, character or 0/1; no NA) and an outcome `y`
# (no NA): what c(table(as.character(x))) and table(as.character(x), y)
# give (the values present, sorted as factor() sorts them), from integer
# codes, with as.character() on the distinct values only.
plan_level_table <- function(x, y) {
  if (is.factor(x)) {
    lv <- levels(x)
    code <- as.integer(x)
  } else {
    lv <- unique(x)
    code <- match(x, lv)
    lv <- as.character(lv)
  }
  present <- sort(lv[tabulate(code, length(lv)) > 0L])
  g <- match(lv, present)[code]
  np <- length(present)
  counts <- stats::setNames(tabulate(g, np), present)
  uy <- sort(unique(y))
  tab <- matrix(tabulate(g + (match(y, uy) - 1L) * np, np * length(uy)), np,
                dimnames = list(present, NULL))
  list(counts = counts, tab = tab)
}

# Covariate terms (among `covs`) with a column aliased in the design X
# (QR with pivoting, lm()'s tolerance); `terms` are X's term labels. The
# cheaper crossprod check glmm_full_rank() first: when it finds X of full
# rank (smallest eigenvalue of the scaled X'X above 1e-8, so every column's
# residual on the others is above 1e-4 of its norm) the QR would too.
plan_aliased <- function(X, terms, covs, full = glmm_full_rank(X)) {
  if (full) return(character())
  q <- qr(X, tol = 1e-7)
  if (q$rank == ncol(X)) return(character())
  bad <- unique(terms[attr(X, "assign")[q$pivot[-seq_len(q$rank)]]])
  intersect(bad, covs)
}

# BCJ's FGLS (fgls_bcj()) identifies a regressor that varies within group x
# period x arm cells from that within variation, and one constant within the
# cells from the cells' means against the group and period effects. Covariate
# terms aliased in either part. Computed on the cells for the cell-level
# part (G x T x 2 rows, never an n x levels matrix).
plan_fgls_aliased <- function(X, terms, covs, gt, treat) {
  arm <- if (treat %in% colnames(X) && all(X[, treat] %in% c(0, 1))) X[, treat] else 0
  key <- interaction(gt[[1]], gt[[2]], arm, drop = TRUE)
  a <- as.integer(key)
  n_a <- tabulate(a, nlevels(key))
  nz <- colnames(X) != "(Intercept)"
  asg <- attr(X, "assign")[nz]
  X <- X[, nz, drop = FALSE]
  M <- rowsum(X, a, reorder = TRUE) / n_a
  Xd <- X - M[a, , drop = FALSE]
  varies <- colSums(Xd^2) > 1e-10 * pmax(1, colSums(X^2))
  out <- character()
  if (any(varies)) {
    q <- qr(Xd[, varies, drop = FALSE], tol = 1e-7)
    if (q$rank < sum(varies)) out <- terms[asg[which(varies)[q$pivot[-seq_len(q$rank)]]]]
  }
  if (any(!varies)) {
    cells <- data.frame(g = factor(gt[[1]][match(seq_len(nlevels(key)), a)]),
                        t = factor(gt[[2]][match(seq_len(nlevels(key)), a)]))
    W <- cbind(stats::model.matrix(~ g + t, cells), M[, !varies, drop = FALSE])
    q <- qr(W, tol = 1e-7)
    if (q$rank < ncol(W)) {
      k0 <- ncol(W) - sum(!varies)
      idx <- q$pivot[-seq_len(q$rank)]
      out <- c(out, terms[asg[which(!varies)[idx[idx > k0] - k0]]])
    }
  }
  intersect(unique(out), covs)
}

# The family-by-baseline-rate rule (FS footnote 22) for estimators that do
# not apply it themselves.
plan_resolve_family <- function(family, y, treated) {
  if (!identical(family, "auto")) return(family)
  binary <- all(y %in% c(0, 1, NA))
  if (!binary) return("gaussian")
  base <- mean(y[treated %in% 0], na.rm = TRUE)
  if (base >= 0.05 && base <= 0.95) "gaussian" else "binomial"
}

# --- runners: one per estimator -------------------------------------------
# Each returns list(fit = , est = data frame of term, scale, estimate,
# std.error, df, conf.low, conf.high, p.value), or list(skip = reason).

plan_est <- function(term, scale, estimate, std.error = NA_real_, df = NA_real_,
                     conf.low = NA_real_, conf.high = NA_real_, p.value = NA_real_,
                     level = 0.95) {
  if (is.na(conf.low) && is.finite(std.error)) {
    q <- if (is.finite(df)) stats::qt(1 - (1 - level) / 2, df) else stats::qnorm(1 - (1 - level) / 2)
    conf.low <- estimate - q * std.error
    conf.high <- estimate + q * std.error
  }
  if (is.na(p.value) && is.finite(std.error)) {
    z <- estimate / std.error
    p.value <- if (is.finite(df)) 2 * stats::pt(-abs(z), df) else 2 * stats::pnorm(-abs(z))
  }
  data.frame(term = term, scale = scale, estimate = estimate, std.error = std.error,
             df = df, conf.low = conf.low, conf.high = conf.high, p.value = p.value,
             stringsAsFactors = FALSE)
}

plan_terms <- function(row, fit_terms) {
  if (row$term %in% fit_terms) {
    ex <- grep("^exposure_", fit_terms, value = TRUE)
    return(c(row$term, if (row$analysis == "differential_time") ex))
  }
  character()
}

run_sw_glmm <- function(row, ctx, k, cache, parent = NULL) {
  d <- plan_data(row, ctx, k, cache)
  pf <- plan_formula(row, d$df)
  # weighted rows (the FS absence DiD: CEM weights; unmatched rows have 0)
  # and CR2 clustered rows
  w <- if (!is.na(row$weights)) row$weights else NULL
  if (!is.null(w)) pf$df <- pf$df[plan_weighted_rows(pf$df[[w]]), , drop = FALSE]
  y <- all.vars(pf$formula[[2]])[1]
  fam <- plan_resolve_family(row$family, pf$df[[y]], pf$df$treated)
  cr2 <- grepl("CR2", row$inference, fixed = TRUE)
  # cluster-robust parts also when a CR3 row of the plan re-uses this fit
  # and its jackknife is defined (plan_cr3_unidentified())
  cr3 <- any(ctx$models$estimator == "cr3" & ctx$models$depends_on %in% row$id)
  pf <- plan_prune(row, pf$formula, pf$df, cache, binomial = fam == "binomial",
                   cc = c(w, if (cr2 || cr3) row$cluster), k = k)
  robust <- cr2
  un <- NULL
  if (cr3 && !cr2) {
    un <- plan_cr3_unidentified(pf$formula, pf$df, row$cluster, row$term)
    robust <- !length(un)
  }
  # a binomial model refitted on the next imputation starts from its fit on
  # the previous one (the same estimates to the optimiser's tolerance)
  key <- paste("start", row$id, sep = "|")
  fit <- sw_glmm_fit(quote(sw_glmm(formula = pf$formula, data = pf$df, family = family,
                                   weights = w, cluster = row$cluster)),
                     pf$formula, pf$df, family = if (fam == "binomial") stats::binomial() else stats::gaussian(),
                     weights = w, cluster = if (robust) row$cluster, start = cache[[key]],
                     checked = pf$checked)
  assign(key, glmm_start(fit), envir = cache)
  V <- if (cr2) fit$cr2$vcov else fit$vcov
  terms <- plan_terms(row, names(fit$coefficients))
  scale <- if (fam == "binomial") "log_odds" else if (all(pf$df[[y]] %in% c(0, 1, NA))) "risk_difference" else "mean_difference"
  est <- do.call(rbind, lapply(terms, function(t)
    plan_est(t, scale, fit$coefficients[[t]], sqrt(V[t, t]),
             if (cr2) fit$cr2$df[[t]] else NA_real_)))
  single <- !any(grepl("^exposure_|readiness", names(fit$coefficients)))
  if (fam == "binomial" && row$term == "treated" && single && !is.null(fit$treatment$risk_difference)) {
    rd <- fit$treatment$risk_difference
    rd <- rd[rd$type == "marginal", ]
    est <- rbind(est, plan_est("treated", "risk_difference", rd$estimate, rd$std.error))
  }
  # (the clusters without which a CR3 row re-using this fit is undefined)
  list(fit = fit, est = est, cr3_unidentified = un)
}

run_did_fit <- function(row, ctx, k, cache, parent = NULL) {
  d <- plan_data(row, ctx, k, cache)
  pf <- plan_formula(row, d$df)
  w <- if (!is.na(row$weights)) row$weights else NULL
  df <- if (!is.null(w)) pf$df[plan_weighted_rows(pf$df[[w]]), , drop = FALSE] else pf$df
  fam <- if (row$family %in% c("auto", "gaussian", "binomial", "conditional_logit")) row$family else "auto"
  if (fam == "auto" && row$treatment != "referral_date") {
    # the baseline rate of the outcome on the main treatment definition
    prow <- row
    prow$treatment <- "referral_date"
    pd <- plan_data(prow, ctx, k, cache)
    pp <- plan_formula(prow, pd$df)
    pdf <- if (!is.null(w)) pp$df[plan_weighted_rows(pp$df[[w]]), , drop = FALSE] else pp$df
    fam <- plan_did_family(pp$formula, pdf, w, row$term)
  }
  pr <- plan_prune_did(row, pf$formula, df, w, fam, cache)
  df <- pr$df
  # did_fit()'s messages on rows left out as perfectly predicted and on
  # dropped covariates become the row's notes; the rest is in the fit
  fit <- withCallingHandlers(did_fit(pr$formula, df, cluster = row$cluster, weights = w, family = fam),
                             message = function(m) {
                               if (!grepl("perfectly predicted|constant outcome carry no information|dropped [0-9]+ covariate", conditionMessage(m))) {
                                 invokeRestart("muffleMessage")
                               }
                             })
  y <- all.vars(pf$formula[[2]])[1]
  scale <- if (fit$family == "gaussian") {
    if (all(df[[y]] %in% c(0, 1, NA))) "risk_difference" else "mean_difference"
  } else "log_odds"
  terms <- plan_terms(row, names(fit$coefficients))
  est <- do.call(rbind, lapply(terms, function(t)
    plan_est(t, scale, fit$coefficients[[t]], sqrt(fit$vcov[t, t]), fit$df[[t]])))
  list(fit = fit, est = est, cem = d$cem, matches = d$matches)
}

# The family by the protocol's rule ("a linear regression if the baseline
# rate of our outcome is between 5 and 95%", did_family_rule()) on the rows
# a did_fit() formula fits (complete cases, weights). For the rows of an
# alternative treatment definition, analyse() decides it on the outcome's
# main definition (referral date): an alternative definition moves children
# between the arms -- the open-days definitions move the children whose
# referrals stay open, those entering care, into the treated arm -- but it
# does not change the baseline rate of the outcome, and its estimate must be
# on the main analysis's scale to be compared with it.
plan_did_family <- function(formula, df, w, term) {
  vars <- c(all.vars(formula), w)
  cc <- stats::complete.cases(df[intersect(vars, names(df))])
  y <- df[[all.vars(split_did_formula(formula)$main[[2]])[1]]][cc]
  did_family_rule(y, df[[term]][cc], if (!is.null(w)) df[[w]][cc])$chosen
}

# plan_prune() for a did_fit() formula `y ~ x | fe`: the covariates before
# `|`, with levels merged where a logit (the family the protocol's rule picks
# on the rows fitted, as did_fit() does) would be separated.
plan_prune_did <- function(row, formula, df, w, fam, cache) {
  parts <- split_did_formula(formula)
  if (fam == "auto") fam <- plan_did_family(formula, df, w, row$term)
  # the rows did_fit() fits: complete on the fixed effects, weights and
  # cluster too
  cc <- c(unlist(lapply(parts$fe, function(t) all.vars(stats::as.formula(paste("~", t))))), w, row$cluster)
  pr <- plan_prune(row, parts$main, df, cache, binomial = fam %in% c("binomial", "conditional_logit"),
                   cc = cc)
  if (length(parts$fe)) {
    pr$formula <- stats::as.formula(paste(deparse1(pr$formula), "|", paste(parts$fe, collapse = " + ")),
                                    env = globalenv())
  }
  pr
}

run_fgls_bcj <- function(row, ctx, k, cache, parent = NULL) {
  d <- plan_data(row, ctx, k, cache)
  pf <- plan_formula(row, d$df)
  df <- pf$df
  # Brewer, Crossley & Joyce's FGLS (the protocol's "feasible GLS ... robust
  # inference technique and bias corrections suggested by Brewer et al.")
  args <- list(pf$formula, df, group = row$cluster, time = row$time, method = "ar")
  if (!is.na(row$weights) && "weights" %in% names(formals(fgls_bcj))) {
    df <- df[plan_weighted_rows(df[[row$weights]]), , drop = FALSE]
    args[[2]] <- df
    args$weights <- df[[row$weights]]
  }
  pr <- plan_prune(row, args[[1]], args[[2]], cache,
                   cc = if (!is.null(args$weights)) row$weights)
  args[[1]] <- pr$formula
  args[[2]] <- pr$df
  if (!is.null(args$weights)) args$weights <- pr$df[[row$weights]]
  fit <- do.call(fgls_bcj, args)
  y <- all.vars(pf$formula[[2]])[1]
  scale <- if (all(df[[y]] %in% c(0, 1, NA))) "risk_difference" else "mean_difference"
  t <- row$term
  list(fit = fit, est = plan_est(t, scale, fit$coefficients[[t]], sqrt(fit$vcov[t, t]), fit$df))
}

run_wild_boot <- function(row, ctx, k, cache, parent) {
  fit <- parent$fit
  wb <- suppressMessages(wild_boot(fit, row$term, seed = ctx$settings$seed))
  if (inherits(wb, "wild_boot_t")) message(wb$note)   # an LMM with < 10 LAs: the CR3 t-test, not a bootstrap
  scale <- parent$est$scale[1]
  ci <- wb$conf_int %||% c(NA_real_, NA_real_)
  list(fit = wb, method = wild_boot_method_(wb),
       est = plan_est(row$term, scale, wb$estimate, NA_real_, NA_real_, ci[1], ci[2], wb$p_value))
}

# The results table's `method` of a wild_boot() result: the test it ran,
# which for a linear mixed model below 10 clusters is the CR3 t-test.
wild_boot_method_ <- function(wb) {
  if (inherits(wb, "wild_boot_t")) return(sprintf("CR3 t (G - 1 = %d df)", as.integer(wb$df)))
  what <- if (!is.null(wb$variant) && wb$variant != "score") paste("wild bootstrap", wb$variant) else wb$method
  if (identical(wb$variant, "score_cr3")) what <- "score bootstrap, linearised CR3 jackknife t"  # binomial GLMM < 10 LAs
  w <- wb$weights %||% NA_character_
  if (is.na(w)) what else sprintf("%s (%s%s weights)", what, toupper(substr(w, 1, 1)), substring(w, 2))
}

# The CR3 t-test with G - 1 df of a linear mixed model fitted with the
# cluster (its parent row): tidy(fit, vcov = "CR3").
run_cr3 <- function(row, ctx, k, cache, parent) {
  # undefined when the term is not identified without some authority (a
  # column only one authority identifies is dropped from that leave-out fit
  # instead, loo_reduced()): a status, not a failure
  un <- c(parent$cr3_unidentified, parent$fit$cr2$cr3$lost[[row$term]])
  if (length(un)) {
    return(list(skip = sprintf(paste0("not run: the CR3 jackknife is not defined on these data (without %s = %s ",
                                      "`%s` is not identified)"),
                               row$cluster, paste(utils::head(unique(un), 3), collapse = ", "), row$term)))
  }
  tab <- tidy.sw_glmm(parent$fit, vcov = "CR3")
  tab <- tab[tab$term == row$term, , drop = FALSE]
  if (nrow(tab) != 1L) stop("the model it re-uses has no coefficient `", row$term, "`", call. = FALSE)
  list(fit = tab, est = plan_est(row$term, parent$est$scale[1], tab$estimate, tab$std.error, tab$df,
                                 tab$conf.low, tab$conf.high, tab$p.value))
}

# The clusters without which `term` of a mixed model is not identified (so
# its CR3 jackknife is not defined; columns that only one cluster identifies
# are dropped from that cluster's leave-out fit, loo_reduced()): checked on
# the fixed part's model matrix of the complete rows before the fit, so that
# the cluster-robust parts (seconds per imputation for the absence panel)
# are not computed for a CR3 row that cannot run. The rank of the leave-out
# rows' X equals that of their GLS information X'V^-1 X (V positive
# definite). `term` not a column: any column lost.
plan_cr3_unidentified <- function(formula, df, cluster, term = NULL) {
  labels <- attr(stats::terms(formula), "term.labels")
  ff <- stats::reformulate(labels[!grepl("|", labels, fixed = TRUE)], response = formula[[2]],
                           env = globalenv())
  vars <- intersect(c(all.vars(formula), cluster), names(df))
  df <- df[stats::complete.cases(df[vars]), vars, drop = FALSE]  # only the columns read
  X <- stats::model.matrix(ff, df)
  X <- X / rep(pmax(sqrt(colSums(X^2)), .Machine$double.eps), each = nrow(X))
  cl <- as.character(df[[cluster]])
  j <- match(term %||% NA_character_, colnames(X))
  # X'X summed over the clusters' parts, so that X is crossed once
  gs <- sort(unique(cl))
  parts <- lapply(gs, function(g) crossprod(X[cl == g, , drop = FALSE]))
  A <- Reduce(`+`, parts)
  out <- character()
  for (i in seq_along(gs)) {
    lo <- loo_reduced(A, parts[[i]])
    lost <- if (is.na(j)) length(lo$drop) > 0L else !lo$identified(diag(ncol(X))[, j])
    if (lost) out <- c(out, gs[i])
  }
  out
}

run_perm_test <- function(row, ctx, k, cache, parent) {
  d <- plan_data(ctx$models[ctx$models$id == row$depends_on, ], ctx, k, cache)
  pt <- suppressMessages(perm_test(parent$fit, ctx$design, data = d$df, period = "step"))
  ci <- pt$conf_int %||% c(NA_real_, NA_real_)
  list(fit = pt, est = plan_est(row$term, parent$est$scale[1], pt$estimate, NA_real_,
                                NA_real_, ci[1], ci[2], pt$p_value))
}

# Weights and cluster columns of a count-model row (the rows it fits).
plan_cc_columns <- function(row) c(if (!is.na(row$weights)) row$weights, row$cluster)

run_hurdle_fit <- function(row, ctx, k, cache, parent = NULL) {
  d <- plan_data(row, ctx, k, cache)
  df <- d$df
  f <- stats::as.formula(row$formula, env = globalenv())
  y <- all.vars(f[[2]])[1]
  if (!is.na(row$weights)) df <- df[plan_weighted_rows(df[[row$weights]]), , drop = FALSE]
  pr <- plan_prune(row, f, df, cache, binomial = FALSE, cc = plan_cc_columns(row))
  f <- pr$formula
  df <- pr$df
  zc <- zero_check(stats::as.formula(paste(y, "~ treated"), env = globalenv()), df)
  if (!(zc$ratio > 1 && zc$p.value < 0.05)) {
    return(list(skip = sprintf("not run: no excess zeros (observed/expected %.2f, p = %.3g)", zc$ratio, zc$p.value)))
  }
  w <- if (!is.na(row$weights)) df[[row$weights]] else NULL
  # refitted on the next imputation from its fit on the previous one (the
  # same estimates to the optimiser's tolerance)
  key <- paste("start", row$id, sep = "|")
  fit <- hurdle_fit_(quote(hurdle_fit(formula = f, data = df,
                                      cluster = stats::as.formula(paste("~", row$cluster)),
                                      weights = w)),
                     f, df, "poisson", cluster = stats::as.formula(paste("~", row$cluster)),
                     weights = w, start = cache[[key]])
  assign(key, hurdle_start(fit), envir = cache)
  V <- fit$vcov
  est <- rbind(
    plan_est("count_treated", "log_count_ratio", fit$coefficients[["count_treated"]], sqrt(V["count_treated", "count_treated"])),
    plan_est("zero_treated", "log_odds", fit$coefficients[["zero_treated"]], sqrt(V["zero_treated", "zero_treated"])))
  list(fit = fit, est = est)
}

run_tobit_fit <- function(row, ctx, k, cache, parent = NULL) {
  d <- plan_data(row, ctx, k, cache)
  df <- d$df
  f <- stats::as.formula(row$formula, env = globalenv())
  y <- all.vars(f[[2]])[1]
  cens <- if (paste0(y, "_censored") %in% names(df)) df[[paste0(y, "_censored")]] else
    df[[y]] >= max(df[[y]], na.rm = TRUE)
  share <- mean(cens[!is.na(df[[y]])], na.rm = TRUE)
  if (!is.na(row$weights)) df <- df[plan_weighted_rows(df[[row$weights]]), , drop = FALSE]
  pr <- plan_prune(row, f, df, cache, cc = plan_cc_columns(row))
  f <- pr$formula
  df <- pr$df
  if (!is.finite(share) || share <= ctx$settings$censor_share) {
    return(list(skip = sprintf("not run: %.1f%% censored (at most %.0f%%)", 100 * share,
                               100 * ctx$settings$censor_share)))
  }
  right <- max(df[[y]], na.rm = TRUE)
  w <- if (!is.na(row$weights)) df[[row$weights]] else NULL
  fit <- tobit_fit(f, df, left = 0, right = right, cluster = stats::as.formula(paste("~", row$cluster)),
                   weights = w)
  list(fit = fit, est = plan_est("treated", "mean_difference", fit$coefficients[["treated"]],
                                 sqrt(fit$vcov["treated", "treated"])))
}

# LA x quarter live indicator (FS; calendar quarters "2020Q1").
plan_live <- function(df, design) {
  if (!all(grepl("^[0-9]{4}Q[1-4]$", df$quarter))) {
    stop("the decomposition needs calendar quarters (design quarter = \"calendar\")", call. = FALSE)
  }
  qs <- as.Date(paste0(substr(df$quarter, 1, 4), "-",
                       3 * as.integer(substr(df$quarter, 6, 6)) - 2, "-01"))
  go <- design$las$go_live_date[match(df$la, design$las$la_code)]
  df$live <- as.integer(!is.na(go) & qs >= go)
  df
}

# Cohort of the treated authorities and the selected comparators of the
# primary outcome (each authority once), outcome observed.
plan_panel_data <- function(row, ctx, cache) {
  d <- plan_data(transform(row, strand = "stepped_wedge_all"), ctx, 0L, cache)$df
  mt <- ctx$matches[[row$outcome]]
  las <- unique(c(ctx$design$las$la_code[ctx$design$las$role == "treated"],
                  mt$candidates$comparator_la[mt$candidates$selected]))
  d <- d[d$la %in% las & !is.na(d[[row$outcome]]), , drop = FALSE]
  plan_live(d, ctx$design)
}

run_bacon <- function(row, ctx, k, cache, parent = NULL) {
  d <- plan_panel_data(row, ctx, cache)
  b <- bacon(stats::as.formula(row$formula, env = globalenv()), d, id = "la", time = "quarter")
  list(fit = b, est = plan_est("twfe", "risk_difference", b$estimate))
}

run_att_gt <- function(row, ctx, k, cache, parent = NULL) {
  b <- ctx$fits_so_far[[sub("_att_gt$", "_bacon", row$id)]]
  if (is.null(b)) return(list(skip = "not run: needs the Goodman-Bacon decomposition row"))
  bt <- b$by_type
  share <- sum(bt$weight[bt$type == "later vs earlier"])
  if (share <= ctx$settings$bacon_risk) {
    return(list(skip = sprintf("not run: %.1f%% of the decomposition's weight on already-treated controls (at most %.0f%%)",
                               100 * share, 100 * ctx$settings$bacon_risk)))
  }
  d <- plan_panel_data(row, ctx, cache)
  a <- att_gt(d, outcome = row$outcome, time = "quarter", treatment = "live", control = "not_yet")
  ag <- aggregate_att(a, "simple", seed = ctx$settings$seed)
  o <- ag$overall
  list(fit = ag, est = plan_est("simple", "risk_difference", o$estimate, NA_real_, NA_real_,
                                o$conf.low %||% NA_real_, o$conf.high %||% NA_real_,
                                o$p.value %||% NA_real_))
}

run_placebo_test <- function(row, ctx, k, cache, parent = NULL) {
  df <- plan_fill(as.data.frame(ctx$cohorts[["referral_date"]]), ctx, 0L)
  pl <- placebo_test(ctx$matches[[row$outcome]], df, ctx$design, outcome = row$outcome)
  s <- pl$stacked
  list(fit = pl, est = plan_est("placebo", "risk_difference", s$estimate, s$std.error, s$df,
                                p.value = s$p.value))
}

run_common_shock_test <- function(row, ctx, k, cache, parent = NULL) {
  if (is.null(ctx$settings$shock)) return(list(skip = "not run: no common shock given (argument `shock`)"))
  df <- as.data.frame(ctx$cohorts[["referral_date"]])
  cs <- common_shock_test(df, ctx$matches[[row$outcome]], ctx$settings$shock,
                          outcome = row$outcome, design = ctx$design)
  list(fit = cs, est = plan_est(row$term, "risk_difference", cs$estimate[1], cs$std.error[1],
                                cs$df[1], p.value = cs$p.value[1]))
}

run_serial_test <- function(row, ctx, k, cache, parent = NULL) {
  d <- plan_panel_data(row, ctx, cache)
  cells <- stats::aggregate(cbind(y = d[[row$outcome]], live = d$live) ~ la + quarter, d, mean)
  st <- serial_test(y ~ live, cells, id = "la", time = "quarter", effect = "twoways")
  list(fit = st, est = plan_est("statistic", "test", unname(st$statistic), p.value = unname(st$p.value)))
}

run_hausman_test <- function(row, ctx, k, cache, parent = NULL) {
  df <- as.data.frame(ctx$cohorts[["referral_date"]])
  rs <- repeat_share(df$child_id, threshold = 0.15, basis = "individuals")
  share <- rs$share_individuals
  if (!isTRUE(rs$consider_multilevel)) {
    return(list(skip = sprintf("not run: %.1f%% of individuals occur repeatedly (the protocol's multilevel step needs more than 15%%)",
                               100 * share)))
  }
  h <- hausman_test(stats::as.formula(row$formula, env = globalenv()), df, id = "child_id",
                    time = "fin_year", cluster = row$cluster)
  list(fit = h, est = plan_est("statistic", "test", unname(h$statistic), p.value = unname(h$p.value)))
}

# Estimator -> runner and how its results combine over imputations.
plan_runners <- list(
  sw_glmm = list(run = run_sw_glmm, mi = "pool", prune = TRUE),
  did_fit = list(run = run_did_fit, mi = "pool", prune = TRUE),
  fgls_bcj = list(run = run_fgls_bcj, mi = "pool", prune = TRUE),
  hurdle_fit = list(run = run_hurdle_fit, mi = "pool", prune = TRUE),
  tobit_fit = list(run = run_tobit_fit, mi = "pool", prune = TRUE),
  wild_boot = list(run = run_wild_boot, mi = "median_p"),
  cr3 = list(run = run_cr3, mi = "pool"),
  perm_test = list(run = run_perm_test, mi = "median_p"),
  bacon = list(run = run_bacon, mi = "none"),
  att_gt = list(run = run_att_gt, mi = "none"),
  placebo_test = list(run = run_placebo_test, mi = "none"),
  common_shock_test = list(run = run_common_shock_test, mi = "none"),
  serial_test = list(run = run_serial_test, mi = "none"),
  hausman_test = list(run = run_hausman_test, mi = "none")
)

# --- running the plan ------------------------------------------------------

# One model on every imputation (or once), combined.
plan_run_one <- function(row, ctx, parents, cache) {
  runner <- plan_runners[[row$estimator]]
  ks <- if (ctx$m > 0L && runner$mi != "none") seq_len(ctx$m) else 0L
  if (isTRUE(runner$prune) && length(ks) > 1L) plan_prune_pass(row, ctx, ks, cache, runner)
  runs <- vector("list", length(ks))
  notes <- character()
  for (j in seq_along(ks)) {
    parent <- NULL
    if (!is.na(row$depends_on)) {
      pr <- parents[[row$depends_on]]$runs
      parent <- if (j <= length(pr)) pr[[j]] else NULL
      if (is.null(parent$fit)) {
        return(list(status = "not run: the model it re-uses did not run", runs = list(), notes = notes))
      }
    }
    r <- withCallingHandlers(
      tryCatch(runner$run(row, ctx, ks[j], cache, parent),
               error = function(e) list(error = conditionMessage(e))),
      warning = function(w) {
        notes <<- c(notes, paste0("warning: ", conditionMessage(w)))
        invokeRestart("muffleWarning")
      },
      message = function(m) {
        notes <<- c(notes, sub("\n$", "", conditionMessage(m)))
        invokeRestart("muffleMessage")
      })
    if (!is.null(r$error)) return(list(status = paste("failed:", r$error), runs = list(), notes = notes))
    if (!is.null(r$skip)) return(list(status = r$skip, runs = list(), notes = notes))
    runs[[j]] <- r
  }
  est <- plan_combine(runs, runner$mi)
  notes <- c(notes, attr(est, "notes"))
  attr(est, "notes") <- NULL
  list(status = "ok", runs = runs, est = est, fit = runs[[1]]$fit, notes = unique(notes))
}

# The rule pass (see plan_prune()): each imputation's rule for `row`, their
# union cached as the row's rule. An imputation that fails before its rule
# is left to the full run, which reports the error.
plan_prune_pass <- function(row, ctx, ks, cache, runner) {
  key <- paste("prune", row$id, sep = "|")
  if (!is.null(cache[[key]])) return(invisible())
  assign("prune_pass", row$id, envir = cache)
  on.exit(assign("prune_pass", NULL, envir = cache))
  rules <- lapply(ks, function(k) {
    tryCatch(suppressWarnings(suppressMessages(runner$run(row, ctx, k, cache))),
             sfp_prune_rule = function(cnd) cnd$rule,
             error = function(e) NULL)
  })
  for (j in seq_along(ks)) {
    if (is.list(rules[[j]])) assign(paste("checked", row$id, ks[j], sep = "|"), rules[[j]]$checked, envir = cache)
  }
  rules <- Filter(function(r) is.list(r) && !is.null(r$drop), rules)
  rule <- plan_prune_union(rules)
  if (!is.null(rule)) assign(key, rule, envir = cache)
  invisible()
}

plan_combine <- function(runs, mi) {
  if (length(runs) == 1L) return(runs[[1]]$est)
  ests <- lapply(runs, `[[`, "est")
  base <- ests[[1]]
  notes <- character()
  key <- paste(base$term, base$scale)
  for (i in seq_len(nrow(base))) {
    pick <- vapply(ests, function(e) {
      j <- match(key[i], paste(e$term, e$scale))
      if (is.na(j)) NA_real_ else j
    }, 1)
    if (anyNA(pick)) next
    q <- mapply(function(e, j) e$estimate[j], ests, pick)
    if (mi == "pool") {
      se <- mapply(function(e, j) e$std.error[j], ests, pick)
      bad <- which(!is.finite(q) | !is.finite(se) | se < 0)
      if (length(bad)) {
        # Rubin's rules need every imputation's estimate and standard error:
        # the point estimate is the mean where every estimate exists, the
        # inference is not reported, and the note says which imputations lacked it
        base$estimate[i] <- if (all(is.finite(q))) mean(q) else NA_real_
        base[i, c("std.error", "df", "conf.low", "conf.high", "p.value")] <- NA_real_
        notes <- c(notes, sprintf(paste0("%s: no pooled standard error, confidence interval or p-value ",
                                         "(the estimate or its standard error is missing in %s %s)"),
                                  base$term[i], plural(length(bad), "imputation", "imputations"),
                                  paste(bad, collapse = ", ")))
        next
      }
      dfc <- base$df[i]
      p <- pool_rubin(q, se, df_complete = if (is.finite(dfc)) dfc else Inf)
      base[i, c("estimate", "std.error", "df", "conf.low", "conf.high", "p.value")] <-
        p[, c("estimate", "std.error", "df", "conf.low", "conf.high", "p.value")]
    } else {
      med <- function(col) stats::median(mapply(function(e, j) e[[col]][j], ests, pick))
      base$estimate[i] <- mean(q)
      base$conf.low[i] <- med("conf.low")
      base$conf.high[i] <- med("conf.high")
      base$p.value[i] <- med("p.value")
    }
  }
  attr(base, "notes") <- notes
  base
}

plan_run <- function(models, ctx, progress) {
  cache <- new.env(parent = emptyenv())
  n <- nrow(models)
  done <- list()
  bar <- progress && requireNamespace("cli", quietly = TRUE)
  if (bar) id <- cli::cli_progress_bar("Running the analysis plan", total = n, .auto_close = FALSE)
  tick <- function() if (bar) cli::cli_progress_update(id = id)
  # independent rows (no depends_on, no conditions on other rows) on a future plan
  indep <- is.na(models$depends_on) & is.na(models$requires) & models$estimator != "att_gt"
  if (plan_use_future() && sum(indep) > 1L) {
    ids <- models$id[indep]
    res <- future.apply::future_lapply(ids, function(i) {
      plan_run_one(models[models$id == i, ], ctx, list(), new.env(parent = emptyenv()))
    }, future.seed = TRUE)
    names(res) <- ids
    done[ids] <- res
    for (i in ids) tick()
  }
  for (i in seq_len(n)) {
    row <- models[i, ]
    if (!is.null(done[[row$id]])) next
    if (!is.na(row$requires)) {
      done[[row$id]] <- list(status = row$requires, runs = list())
    } else {
      ctx$fits_so_far <- lapply(done, `[[`, "fit")
      res <- plan_run_one(row, ctx, done, cache)
      # keep the other imputations' fits only where a later row re-uses them
      if (length(res$runs) > 1L && !row$id %in% models$depends_on) {
        for (j in seq_along(res$runs)[-1]) res$runs[[j]]["fit"] <- list(NULL)
      }
      done[[row$id]] <- res
    }
    tick()
  }
  if (bar) cli::cli_progress_done(id = id)
  results <- do.call(rbind, lapply(seq_len(n), function(i) plan_result_rows(models[i, ], done[[models$id[i]]], ctx$m)))
  fits <- lapply(done, `[[`, "fit")
  fits <- fits[!vapply(fits, is.null, TRUE)]
  extras <- lapply(done, function(d) if (length(d$runs)) d$runs[[1]][c("cem", "matches")] else NULL)
  imp <- plan_imputation_table(models, done)
  notes <- do.call(rbind, lapply(names(done), function(id) {
    nt <- done[[id]]$notes
    if (length(nt)) data.frame(model = id, note = nt, stringsAsFactors = FALSE)
  }))
  list(results = results, fits = fits, extras = extras, done = done, imputation = imp,
       notes = notes)
}

plan_use_future <- function() {
  requireNamespace("future", quietly = TRUE) &&
    requireNamespace("future.apply", quietly = TRUE) &&
    !inherits(future::plan(), "sequential")
}

plan_result_rows <- function(row, d, m) {
  base <- data.frame(programme = row$programme, strand = row$strand, outcome = row$outcome,
                     analysis = row$analysis, stringsAsFactors = FALSE)
  est <- d$est
  if (is.null(est) || !nrow(est)) {
    est <- plan_est(row$term, row$scale, NA_real_)
  }
  out <- cbind(base[rep(1, nrow(est)), , drop = FALSE], est)
  out$p.adjusted <- NA_real_
  out$model <- row$id
  # the inference the row ran: the plan's, unless its runner says otherwise
  # (a wild bootstrap row that ran the CR3 t-test)
  out$method <- (if (length(d$runs)) d$runs[[1]]$method) %||% row$inference %||% NA_character_
  out$status <- d$status
  out$n_imputations <- if (length(d$runs) > 1L) length(d$runs) else 0L
  rownames(out) <- NULL
  out[, c("programme", "strand", "outcome", "analysis", "term", "scale", "estimate",
          "std.error", "df", "conf.low", "conf.high", "p.value", "p.adjusted", "model",
          "method", "status", "n_imputations")]
}

# Per-imputation estimates of every pooled model (what pool_rubin() combined).
plan_imputation_table <- function(models, done) {
  rows <- list()
  for (id in names(done)) {
    runs <- done[[id]]$runs
    if (length(runs) < 2L) next
    for (k in seq_along(runs)) {
      e <- runs[[k]]$est
      rows[[length(rows) + 1L]] <- data.frame(model = id, imputation = k, e, stringsAsFactors = FALSE)
    }
  }
  if (!length(rows)) return(NULL)
  out <- do.call(rbind, rows)
  rownames(out) <- NULL
  out
}

# Hochberg within each family of tests: the plan's `hochberg` column (the
# secondary outcomes' models of a programme x strand; a bootstrap or CR3 row
# of a secondary outcome is another test of the same hypothesis, not one
# more member of the family).
plan_hochberg <- function(results, models) {
  fam <- models$hochberg[match(results$model, models$id)]
  # one p-value per model: its first row (the treatment term on the model's scale)
  sel <- !is.na(fam) & results$status == "ok" &
    !is.na(results$p.value) & !duplicated(results$model)
  for (f in unique(fam[sel])) {
    i <- which(sel & fam == f)
    results$p.adjusted[i] <- stats::p.adjust(results$p.value[i], method = "hochberg")
  }
  results
}

# --- triangulation and cost-benefit ---------------------------------------

# Rows estimating the primary outcome (cla_18m in both protocols) in a primary
# or triangulation model: what each protocol triangulates and report() heads with.
primary_outcome_row_ <- function(r) r$analysis %in% c("primary", "triangulation") & r$outcome %in% "cla_18m"

plan_primary <- function(results, strand, scale = NULL) {
  r <- results[results$strand == strand & primary_outcome_row_(results) & results$status == "ok" &
                 results$term == "treated" & is.finite(results$std.error), , drop = FALSE]
  if (!is.null(scale)) r <- r[r$scale == scale, , drop = FALSE]
  r
}

plan_triangulation <- function(results, assumptions, alpha) {
  did <- plan_primary(results, "did")
  sw <- plan_primary(results, "stepped_wedge")
  if (!nrow(did) || !nrow(sw)) {
    return(data.frame(row = NA_character_, estimate = NA_real_, std.error = NA_real_,
                      reading = sprintf("not computed: needs both strands' primary estimates (DiD: %s, stepped wedge: %s)",
                                        if (nrow(did)) "available" else "not available",
                                        if (nrow(sw)) "available" else "not available")))
  }
  common <- intersect(did$scale, sw$scale)
  if (!length(common)) {
    return(data.frame(row = NA_character_, estimate = NA_real_, std.error = NA_real_,
                      reading = "not computed: the strands' primary estimates share no scale"))
  }
  s <- if ("risk_difference" %in% common) "risk_difference" else common[1]
  a <- did[did$scale == s, ][1, ]
  b <- sw[sw$scale == s, ][1, ]
  tr <- triangulate(a, b, assumptions = assumptions, alpha = alpha)
  tr$model <- c(a$model, b$model, NA, NA)
  tr
}

plan_cost_benefit <- function(results, ctx, cost, alpha) {
  prim <- plan_primary(results, if (ctx$design$programme == "FS") "did" else "stepped_wedge",
                       "risk_difference")
  if (!nrow(prim)) {
    return(data.frame(status = "not computed: no primary estimate on the risk-difference scale"))
  }
  co <- as.data.frame(ctx$cohorts[["referral_date"]])
  if (is.null(cost$children_per_year)) {
    n_years <- as.numeric(diff(range(co$referral_date))) / 365.25
    cost$children_per_year <- nrow(co) / length(unique(co$la)) / max(n_years, 1)
  }
  cb <- do.call(cost_benefit, c(list(effect = prim$estimate[1], p.value = prim$p.value[1],
                                     alpha = alpha), cost))
  cbind(model = prim$model[1], cb$summary)
}

# --- methods ---------------------------------------------------------------

#' @export
as.data.frame.sfp_analysis <- function(x, ...) x$results

#' @export
print.sfp_analysis <- function(x, ...) {
  r <- x$results
  cat(sprintf("<sfp_analysis> %s: %d models, %d estimates (%d ok)%s\n", x$design$name,
              nrow(x$models), nrow(r), sum(r$status == "ok"),
              if (x$settings$imputations > 0) sprintf(", %d imputations pooled by Rubin's rules", x$settings$imputations) else ", complete cases"))
  show <- r[r$analysis %in% c("primary", "secondary", "triangulation") & r$status == "ok",
            c("strand", "outcome", "analysis", "scale", "estimate", "conf.low", "conf.high",
              "p.value", "p.adjusted")]
  if (nrow(show)) print(show, row.names = FALSE, digits = 3)
  nr <- sum(r$status != "ok")
  if (nr) cat(sprintf("%d rows not run or not available (see summary())\n", nr))
  tr <- x$tables$triangulation
  if (!is.null(tr$reading)) cat("Triangulation:", tr$reading[1], "\n")
  invisible(x)
}

# The test each wild bootstrap row ran (a bootstrap, or the CR3 t-test of a
# linear mixed model below 10 clusters): model and method.
plan_wild_methods <- function(results, models) {
  if (is.null(results$method) || is.null(models$estimator)) return(NULL)
  wild <- models$estimator[match(results$model, models$id)] %in% "wild_boot" &
    results$status == "ok"
  out <- unique(data.frame(model = results$model[wild], method = results$method[wild],
                           stringsAsFactors = FALSE))
  rownames(out) <- NULL
  out
}

#' @export
summary.sfp_analysis <- function(object, ...) {
  r <- object$results
  structure(list(results = r, status = table(ifelse(r$status == "ok", "ok",
                                                    sub(":.*$", "", r$status))),
                 not_ok = unique(r[r$status != "ok", c("model", "status")]),
                 wild_methods = plan_wild_methods(r, object$models),
                 specification = plan_spec_notes(object$tables$notes),
                 tables = names(object$tables), settings = object$settings),
            class = "summary.sfp_analysis")
}

#' @export
print.summary.sfp_analysis <- function(x, ...) {
  cat("Analysis plan results\n")
  print(x$results[, c("model", "term", "scale", "estimate", "std.error", "p.value",
                      "p.adjusted", "status")], row.names = FALSE, digits = 3)
  cat("\nStatus:\n")
  print(x$status)
  if (NROW(x$wild_methods)) {
    cat("\nTest run by each wild bootstrap row:\n")
    for (i in seq_len(nrow(x$wild_methods))) {
      cat(" ", x$wild_methods$model[i], "-", x$wild_methods$method[i], "\n")
    }
  }
  if (nrow(x$not_ok)) {
    cat("\nNot run:\n")
    for (i in seq_len(nrow(x$not_ok))) cat(" ", x$not_ok$model[i], "-", x$not_ok$status[i], "\n")
  }
  if (NROW(x$specification)) {
    cat("\nCovariates left out or levels merged (constant, aliased or separated in a model's rows):\n")
    for (i in seq_len(nrow(x$specification))) cat(" ", x$specification$note[i], "\n")
  }
  cat("\nTables:", paste(x$tables, collapse = ", "), "\n")
  invisible(x)
}

# The notes of plan_prune() (covariates left out, levels merged) among an
# analysis's notes.
plan_spec_notes <- function(notes) {
  if (is.null(notes) || !nrow(notes)) return(NULL)
  notes[grepl("^[^ ]+: (left out|merged) ", notes$note), , drop = FALSE]
}
