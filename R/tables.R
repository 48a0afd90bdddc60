# Tables the reports need: baseline characteristics by arm (Table 1), the
# exclusion flow, the MDES table as laid out in each protocol, matching, CEM,
# missingness, multiplicity.

#' Baseline characteristics by arm (Table 1)
#'
#' One row per covariate level: for factors and 0/1 covariates the number and
#' percentage of children in each arm, for numeric covariates the mean and SD;
#' the number missing per arm is its own row (`level = "missing"`).
#'
#' @param cohort A cohort from [build_cohort()] (or a data frame with a 0/1
#'   `treated` column): one row per child, so a repeated `child_id` is an
#'   error.
#' @param covariates Columns to describe (default: the design's covariates
#'   present in the cohort).
#' @return A data frame with `variable`, `level`, `statistic` (`"n (%)"` or
#'   `"mean (SD)"`), and for the control (`treated = 0`) and treated arms
#'   `n_control`, `value_control` (percentage or mean), `sd_control`,
#'   `n_treated`, `value_treated`, `sd_treated`.
#' @examples
#' data(sfp_example_fv)
#' co <- build_cohort(sfp_example_fv, design_family_valued(sfp_example_fv))
#' head(table1(co))
#' @export
table1 <- function(cohort, covariates = NULL) {
  if (!is.data.frame(cohort)) {
    stop_arg("cohort", sprintf("must be a cohort (a data frame), not %s", class(cohort)[1]),
             "build it with build_cohort().")
  }
  df <- as.data.frame(cohort)
  if (!"treated" %in% names(df)) {
    stop_arg("cohort", "has no column `treated`", "build it with build_cohort(), or add the 0/1 arm as `treated`.")
  }
  bad <- which(!df$treated %in% c(0, 1))
  if (length(bad)) {
    stop_rows("cohort", "treated", bad, "are not 0 or 1", "give the arm as 0 (control) or 1 (treated).",
              keys = df$treated[bad], key_name = "values")
  }
  if (!nrow(df)) stop_arg("cohort", "has no rows", "check the exclusion flow: exclusion_flow(cohort).")
  check_one_row_per_child_(df, "table1()")
  if (!is.null(covariates) && !is.character(covariates)) {
    stop_arg("covariates", sprintf("must be column names, not %s", describe_value(covariates)),
             "give e.g. covariates = c(\"gender\", \"age\").")
  }
  if (is.null(covariates)) {
    design <- attr(cohort, "design")
    covariates <- intersect(c(design$covariates %||% character(), "age", "age_band"), names(df))
    covariates <- unique(covariates)
  }
  miss <- setdiff(covariates, names(df))
  if (length(miss)) {
    stop_arg("covariates", sprintf("names columns the cohort lacks: %s", paste(miss, collapse = ", ")),
             sprintf("use columns of the cohort, e.g. %s.", paste(utils::head(setdiff(names(df), "treated"), 5), collapse = ", ")))
  }
  arm <- df$treated
  rows <- list()
  for (v in covariates) {
    x <- df[[v]]
    if (is.logical(x)) x <- as.integer(x)
    binary <- is.numeric(x) && all(x %in% c(0, 1, NA))
    if (is.factor(x) || is.character(x) || binary) {
      lv <- if (binary) "1" else if (is.factor(x)) levels(x) else sort(unique(x[!is.na(x)]))
      for (l in lv) {
        cnt <- function(a) sum(!is.na(x) & arm %in% a & as.character(x) == l)
        den <- function(a) sum(!is.na(x) & arm %in% a)
        rows[[length(rows) + 1L]] <- t1_row(v, l, "n (%)", cnt(0), 100 * cnt(0) / den(0), NA,
                                            cnt(1), 100 * cnt(1) / den(1), NA)
      }
    } else {
      s <- function(a, f) f(x[arm %in% a & !is.na(x)])
      rows[[length(rows) + 1L]] <- t1_row(v, "", "mean (SD)", s(0, length), s(0, mean), s(0, stats::sd),
                                          s(1, length), s(1, mean), s(1, stats::sd))
    }
    if (anyNA(x)) {
      rows[[length(rows) + 1L]] <- t1_row(v, "missing", "n (%)", sum(is.na(x) & arm %in% 0),
                                          100 * mean(is.na(x[arm %in% 0])), NA,
                                          sum(is.na(x) & arm %in% 1), 100 * mean(is.na(x[arm %in% 1])), NA)
    }
  }
  n <- t1_row("children", "", "n", sum(arm %in% 0), NA, NA, sum(arm %in% 1), NA, NA)
  out <- do.call(rbind, c(list(n), rows))
  rownames(out) <- NULL
  out
}

# Table 1 and the MDES table count children, and a cohort has one row per
# child: a repeated child_id (stacked DiD pairs, bound cohorts, imputed copies)
# would count a child twice, with possibly two arms, so it is refused.
check_one_row_per_child_ <- function(df, fn) {
  if (!"child_id" %in% names(df)) return(invisible())
  dup <- which(duplicated(df$child_id) & !is.na(df$child_id))
  if (length(dup)) {
    stop_rows("cohort", "child_id", dup,
              sprintf("repeat a child_id of an earlier row (%s counts each child once)", fn),
              "pass the cohort from build_cohort() (one row per child), not stacked or imputed data; or keep one row per child, e.g. cohort[!duplicated(cohort$child_id), ].",
              keys = df$child_id[dup], key_name = "child_id")
  }
  invisible()
}

t1_row <- function(variable, level, statistic, n0, v0, sd0, n1, v1, sd1) {
  data.frame(variable = variable, level = level, statistic = statistic,
             n_control = n0, value_control = v0, sd_control = sd0,
             n_treated = n1, value_treated = v1, sd_treated = sd1, stringsAsFactors = FALSE)
}

#' The MDES table as laid out in each protocol
#'
#' The rows of the protocol's "Sample size / MDES calculations" table, with
#' the protocol's planned values next to the same quantities in the data: the
#' baseline rate (the primary outcome among untreated children), the ICC
#' ([icc_anova()] by authority), the number of clusters, the cluster sizes,
#' and the MDES recomputed with them ([did_mdes()] for Family Safeguarding,
#' [sw_power()] for Family Valued).
#'
#' @param cohort A cohort from [build_cohort()] with `cla_18m` (one row per
#'   child: a repeated `child_id` is an error).
#' @param design Its design.
#' @return A data frame with `row` (the protocol's row label), `protocol`
#'   and `data`.
#' @examples
#' data(sfp_example_fv)
#' d <- design_family_valued(sfp_example_fv)
#' mdes_table(build_cohort(sfp_example_fv, d), d)
#' @export
mdes_table <- function(cohort, design) {
  if (!inherits(cohort, "sfp_cohort")) {
    stop_arg("cohort", "must be an `sfp_cohort`", "build it with build_cohort().")
  }
  if (!inherits(design, "sfp_design")) {
    stop_arg("design", "must be an `sfp_design`",
             "build one with design_family_safeguarding() or design_family_valued().")
  }
  made <- attr(cohort, "design")$programme
  if (!is.null(made) && !identical(made, design$programme)) {
    stop_arg("design", sprintf("is the %s design but `cohort` was built with the %s design", design$programme, made),
             "pass the design the cohort was built with.")
  }
  df <- as.data.frame(cohort)
  check_one_row_per_child_(df, "mdes_table()")
  miss <- setdiff(c("cla_18m", "treated", "la", "referral_date"), names(df))
  if (length(miss)) {
    stop_arg("cohort", sprintf("lacks the column%s %s", if (length(miss) > 1) "s" else "",
                               paste0("`", miss, "`", collapse = ", ")),
             "build it with build_cohort(..., outcomes = \"cla_18m\") (the MDES is for the primary outcome).")
  }
  if (!any(!is.na(df$cla_18m))) stop_arg("cohort", "has no child with the primary outcome `cla_18m`",
                                          "check the exclusion flow: exclusion_flow(cohort).")
  y <- df$cla_18m
  ok <- !is.na(y)
  treated_las <- design$las$la_code[design$las$role == "treated"]
  base <- mean(y[ok & df$treated %in% 0])
  icc <- tryCatch(icc_anova(y[ok], df$la[ok])$icc, error = function(e) NA_real_)
  G <- length(treated_las)
  yrs <- max(as.numeric(diff(range(df$referral_date[ok]))) / 365.25, 1 / 12)
  n_tr <- sum(ok & df$la %in% treated_las)
  if (design$programme == "FS") {
    m_year <- n_tr / G / yrs
    md <- tryCatch(suppressWarnings(did_mdes(clusters = G, m = m_year, icc = max(icc, 1e-6), p0 = base))$mdes,
                   error = function(e) NULL)
    mdes_pp <- if (is.null(md)) NA_real_ else abs(md$effect[md$direction == "decrease"])
    p_sd <- sqrt(base * (1 - base))
    data.frame(row = c("MDES (Cohen's d)", "MDES (percentage point difference)", "Baseline measures",
                       "Intracluster correlations (ICCs) Local authority", "Alpha", "Power",
                       "One-sided or two-sided?", "Level of intervention clustering",
                       "Number of clusters",
                       "Average cluster size (children per local authority per year)",
                       "Average cluster size (children per local authority across all time periods)",
                       "Number of years", "Sample Size (children) Total"),
               protocol = c("0.08", "0.019", "0.06", "0.00722", "0.05", "0.8", "Two-sided",
                            "Local authority", "5", "3,400", "10,200", "3", "51,000"),
               data = c(format(signif(mdes_pp / p_sd, 3)), format(signif(mdes_pp, 3)),
                        format(signif(base, 3)), format(signif(icc, 3)), "0.05", "0.8",
                        "Two-sided", "Local authority", G, format(round(m_year)),
                        format(round(n_tr / G)), format(round(yrs, 1)), format(n_tr)),
               stringsAsFactors = FALSE)
  } else {
    steps <- length(unique(df$step[ok]))
    m_cell <- n_tr / G / max(steps, 1)
    sp <- tryCatch(suppressWarnings(sw_power(clusters_per_step = 1, steps = G, m = m_cell, p0 = base,
                            icc = max(icc, 1e-6), power = 0.8)),
                   error = function(e) NULL)
    mdes <- if (is.null(sp)) NA_real_ else abs(sp$mdes$effect[sp$mdes$direction == "decrease"])
    data.frame(row = c("MDES", "Baseline measures", "Intracluster correlation (ICC) Local authority",
                       "Alpha", "Power", "One-sided or two-sided?", "Level of intervention clustering",
                       "Number of clusters",
                       "Average cluster size (children per local authority across all time periods)",
                       "Average cluster cell size (children per local authority per time period)",
                       "Sample Size (children) Total"),
               protocol = c("0.007", "0.04", "0.01566", "0.05", "0.8", "Two-sided",
                            "Local authority", "5", "15,600", "2,600", "78,000"),
               data = c(format(signif(mdes, 3)), format(signif(base, 3)), format(signif(icc, 3)),
                        "0.05", "0.8", "Two-sided", "Local authority", G,
                        format(round(n_tr / G)), format(round(m_cell)), format(n_tr)),
               stringsAsFactors = FALSE)
  }
}

# Missingness of the covariates: share overall and by arm, a test of
# missingness against the arm, and what was done.
missing_table <- function(cohort, design, dropped, to_impute, m) {
  df <- as.data.frame(cohort)
  miss <- attr(cohort, "covariate_missing")
  vars <- names(miss)
  rows <- lapply(vars, function(v) {
    x <- if (v %in% names(df)) is.na(df[[v]]) else rep(NA, nrow(df))
    p <- if (v %in% names(df) && any(x) && !all(x)) {
      tryCatch(suppressWarnings(stats::chisq.test(table(x, df$treated))$p.value), error = function(e) NA_real_)
    } else NA_real_
    in_out <- if (is.list(dropped)) names(dropped)[vapply(dropped, function(d) v %in% d, TRUE)] else
      if (v %in% dropped) "all outcomes" else character()
    action <- if (length(in_out)) sprintf("dropped (missing > %.0f%%) for %s", 100 * design$max_missing,
                                          paste(in_out, collapse = ", ")) else
      if (v %in% to_impute && m > 0) sprintf("imputed (%d imputations)", m) else
      if (v %in% to_impute) "complete cases (no imputation)" else "none needed"
    data.frame(covariate = v, share_missing = unname(miss[v]),
               share_missing_control = if (v %in% names(df)) mean(x[df$treated %in% 0]) else NA_real_,
               share_missing_treated = if (v %in% names(df)) mean(x[df$treated %in% 1]) else NA_real_,
               p_arm = p, action = action, stringsAsFactors = FALSE)
  })
  out <- do.call(rbind, rows)
  cv <- intersect(vars[miss > 0], names(df))
  if (length(cv)) {
    pat <- apply(is.na(df[cv]), 1, function(r) paste(ifelse(r, "missing", "observed"), collapse = "/"))
    tab <- table(pat)
    attr(out, "patterns") <- data.frame(pattern = names(tab), n = as.integer(tab),
                                        variables = paste(cv, collapse = "/"),
                                        stringsAsFactors = FALSE)
  }
  out
}

plan_tables <- function(ctx, out, results, models) {
  primary <- ctx$cohorts[["referral_date"]]
  tabs <- list(
    table1 = table1(primary),
    exclusion_flow = exclusion_flow(primary, by = "total"),
    mdes = tryCatch(mdes_table(primary, ctx$design), error = function(e)
      data.frame(row = "MDES", protocol = NA_character_, data = paste("not computed:", conditionMessage(e)))),
    missing = missing_table(primary, ctx$design, ctx$dropped, ctx$to_impute, ctx$m)
  )
  tabs$matching <- plan_matching_table(ctx)
  tabs$cem <- plan_cem_table(out$extras, models)
  mult <- results[!is.na(results$p.adjusted), c("programme", "strand", "outcome", "model",
                                                 "p.value", "p.adjusted")]
  if (nrow(mult)) mult$method <- "hochberg"
  tabs$multiplicity <- mult
  if (!is.null(out$imputation)) tabs$imputation <- out$imputation
  tabs$notes <- out$notes
  tabs
}

plan_matching_table <- function(ctx) {
  if (is.null(ctx$matches) || !length(ctx$matches)) return(NULL)
  rows <- lapply(names(ctx$matches), function(o) cbind(outcome = o, ctx$matches[[o]]$candidates))
  out <- do.call(rbind, rows)
  rownames(out) <- NULL
  out
}

plan_cem_table <- function(extras, models) {
  rows <- list()
  for (id in names(extras)) {
    cm <- extras[[id]]$cem
    if (is.null(cm)) next
    n <- cm$n
    imb <- cm$imbalance
    rows[[length(rows) + 1L]] <- data.frame(
      model = id, outcome = models$outcome[models$id == id],
      n_treated = n["All", "Treated"], n_control = n["All", "Control"],
      matched_treated = n["Matched", "Treated"], matched_control = n["Matched", "Control"],
      pct_treated_matched = 100 * n["Matched", "Treated"] / n["All", "Treated"],
      strata = nrow(cm$strata), strata_matched = sum(cm$strata$matched),
      l1_before = imb$before$L1 %||% NA_real_, l1_after = imb$after$L1 %||% NA_real_,
      row.names = NULL, stringsAsFactors = FALSE)
  }
  if (!length(rows)) return(NULL)
  do.call(rbind, rows)
}
