# Coarsened exact matching (Iacus, King & Porro) of children inside the
# Family Safeguarding treated-comparator pairs, and the L1 imbalance.
# `vignette("methods")`, section 1; the Family Safeguarding protocol, "Individual-level
# Matching" (pp. 9-11). R validates and plans the coarsening (breaks,
# groupings, factor levels); C (src/cem.c) applies it, one pass per column
# (findInterval() semantics for bins, match(x, unique(x)) semantics for values,
# never pasting strings), builds the strata by hashing the integer codes,
# counts treated and controls per stratum, assigns the weights, and computes
# the L1 imbalance before and after in one pass over the cells.

#' Coarsened exact matching
#'
#' Matches treated and control children by coarsened exact matching (CEM;
#' Iacus, King and Porro 2012): every matching variable is coarsened, children
#' with the same coarsened values (and the same values of the `exact`
#' variables) form a stratum, strata without at least one treated and one
#' control child are pruned, and the children left are weighted so that the
#' weighted controls have the treated children's distribution over strata.
#'
#' **Coarsening.** For a numeric variable with cutpoints `c` (strictly
#' increasing), the bins are those of `cut(x, c, include.lowest = TRUE)`:
#' `[c1, c2], (c2, c3], ...`. Values below `c1` or above the last cutpoint
#' are not dropped: each side gets its own bin, with a warning that counts
#' them. A single number gives the number of equally spaced breakpoints from
#' the minimum to the maximum, and `"sturges"` (the default), `"fd"` or
#' `"scott"` choose that number as the cem package does
#' (`nclass.Sturges(x)` breakpoints, i.e. one fewer bins). When all
#' breakpoints coincide (a constant variable) the variable is matched on its
#' values. Logical variables given cutpoints are treated as 0/1. Factors,
#' characters, logicals and any other non-numeric variables are matched on
#' their values unless `grouping` merges some of them: `grouping = list(x =
#' list(c("a", "b"), c("c", "d")))` makes `a` and `b` one value and `c` and
#' `d` another; values not in any group keep their own value. A missing value
#' (`NA` or `NaN`) is a value of its own, so no child is dropped. Strings
#' are compared as R stores them (the same text declared in two different
#' encodings counts as two values).
#'
#' **Weights** (the cem package's and MatchIt's ATT weights): 1 for a matched
#' treated child; \eqn{(m_C/m_T)(m_T^s/m_C^s)} for a matched control child in
#' stratum \eqn{s}, where \eqn{m_T^s, m_C^s} count the treated and control
#' children of the stratum and \eqn{m_T, m_C} all matched treated and control
#' children; 0 for an unmatched child. With `normalise = "exact_group"`,
#' \eqn{m_T} and \eqn{m_C} are counted within each exact group (e.g. each
#' pair by financial year), so the control weights sum to the number of
#' matched controls in every group (`vignette("methods")`, section 0 item 9).
#'
#' **Imbalance.** The result carries the multivariate L1 imbalance before
#' and after matching, computed by [imbalance()] on the *original*
#' (uncoarsened) matching variables and the exact variables (as categories),
#' with the same breaks before and after.
#'
#' @param formula A two-sided formula `treated ~ x1 + x2 + ...`: the
#'   treatment indicator (1 = treated, 0 = control; numeric or logical, no
#'   missing values) and the variables to coarsen and match on.
#' @param data A data frame, one row per child.
#' @param cutpoints A named list: for a numeric matching variable, a strictly
#'   increasing vector of cutpoints, a single number of breakpoints, or one of
#'   `"sturges"`, `"fd"`, `"scott"`. Variables not named use `"sturges"`.
#' @param grouping A named list: for a matching variable, a list of vectors of
#'   values to merge (one vector per merged value).
#' @param exact Variables matched exactly and not coarsened: a one-sided
#'   formula (`~ pair + fin_year`) or a character vector of column names of
#'   `data`, or `NULL`. For the Family Safeguarding protocol, the
#'   treated-comparator pair and the financial year (the period, pre/post
#'   go-live, as the protocol's fallback).
#' @param normalise `"global"` (default) computes \eqn{m_C/m_T} over all
#'   matched children; `"exact_group"` within each combination of the `exact`
#'   variables.
#' @param keep_all If `TRUE`, the result also carries `data`: every row of
#'   `data` with three columns appended, `cem_weight`, `cem_stratum` and
#'   `cem_matched` (unmatched rows weigh 0), ready for a weighted regression.
#'   If `FALSE` (default), the result holds only the per-row vectors (no copy
#'   of the data); `data[m$matched, ]` gives the matched rows.
#' @param design Optional Family Safeguarding design: its protocol coarsening
#'   (`design$cem`, see [fs_coarsening()]) supplies `formula`, `cutpoints`,
#'   `grouping` and `exact` where they are not given.
#' @param l1 Compute the multivariate L1 imbalance before and after matching
#'   (about half the run time on large data; `FALSE` matches only).
#' @return An object of class `sfp_cem`, a list with
#'   * `weights`, `stratum`, `matched`, `exact_group`: one entry per row of
#'     `data`, in the order of `data` (strata and exact groups are numbered
#'     in order of first appearance);
#'   * `n`: a matrix of counts (all, matched, unmatched by arm);
#'   * `strata`: one row per stratum (exact group, treated and control
#'     counts, matched, control weight);
#'   * `by_exact`: counts and share of treated matched per exact group;
#'   * `coarsening`: one row per matching variable (how it was coarsened,
#'     number of coarsened values), with the breaks and groups used in
#'     `attr(, "breaks")`;
#'   * `imbalance`: a list of two [imbalance()] results, `before` and `after`;
#'   * `data`: `NULL`, or `data` with the three `cem_*` columns (see
#'     `keep_all`);
#'   * `call`, `formula`, `treatment`, `variables`, `exact`, `normalise`.
#'
#'   Methods: `print()`, `summary()`, `weights()`, `nobs()`, and `glance()`
#'   when the generics package is installed.
#' @references Iacus, S. M., King, G. and Porro, G. (2012). Causal inference
#'   without balance checking: coarsened exact matching. *Political
#'   Analysis* 20(1), 1-24.
#' @seealso [fs_coarsening()] for the protocol's coarsening, [imbalance()].
#' @examples
#' set.seed(1)
#' n <- 400
#' d <- data.frame(
#'   treated = rbinom(n, 1, 0.4),
#'   age = sample(0:12, n, replace = TRUE),
#'   gender = factor(sample(c("male", "female"), n, replace = TRUE)),
#'   fin_year = sample(c("2019/20", "2020/21"), n, replace = TRUE)
#' )
#' m <- cem(treated ~ age + gender, d, cutpoints = list(age = c(0, 3, 12)),
#'          exact = ~ fin_year)
#' m
#' summary(m)
#' head(weights(m))
#' @export
cem <- function(formula, data, cutpoints = list(), grouping = list(),
                exact = NULL, normalise = c("global", "exact_group"),
                keep_all = FALSE, l1 = TRUE, design = NULL) {
  call <- match.call()
  if (!is.null(design)) {
    spec <- design$cem
    if (is.null(spec$formula)) {
      stop_arg("design", "carries no CEM coarsening (only the Family Safeguarding design does)")
    }
    if (missing(formula)) formula <- spec$formula
    if (missing(cutpoints)) cutpoints <- spec$cutpoints
    if (missing(grouping)) grouping <- spec$grouping
    if (missing(exact)) exact <- spec$exact
  }
  if (!is.logical(l1) || length(l1) != 1L || is.na(l1)) stop_arg("l1", "must be TRUE or FALSE")
  normalise <- match.arg(normalise)
  if (!is.logical(keep_all) || length(keep_all) != 1L || is.na(keep_all)) {
    stop_arg("keep_all", "must be TRUE or FALSE")
  }
  bf <- balance_frame(formula, data)
  check_arms(bf$treat, bf$treat_name)
  n <- length(bf$treat)
  ex <- exact_frame(exact, data)
  if (length(bf$vars) + length(ex$vars) == 0L) {
    stop_arg("formula", "has no matching variables",
             "put covariates on the right-hand side or give `exact`.")
  }
  if (keep_all) {
    clash <- intersect(c("cem_weight", "cem_stratum", "cem_matched"),
                       names(data))
    if (length(clash) > 0L) {
      stop_arg("data", sprintf("already has column(s) %s",
                               paste0("`", clash, "`", collapse = ", ")),
               "rename or drop them, or use `keep_all = FALSE`.")
    }
  }
  co <- coarsen_plan(bf$vars, cutpoints, grouping)
  plan <- list(cols = c(co$cols, ex$cols), kinds = c(co$kinds, ex$kinds),
               args = c(co$args, ex$args))
  coded <- .Call(ffi_cem_codes, plan$cols, plan$kinds, plan$args)
  record <- coarsen_record(co, coded, bf$vars)
  warn_one_level(ex, coded$n_values[length(co$cols) + seq_along(ex$cols)], n)

  res <- .Call(ffi_cem_strata, coded$codes, bf$treat, length(ex$cols),
               as.integer(normalise == "exact_group"), coded$max_code)

  S <- length(res$stratum_treated)
  nt <- res$stratum_treated
  nc <- res$stratum_control
  matched_strata <- nt > 0L & nc > 0L
  if (!any(matched_strata)) {
    stop(sprintf(paste0(
      "Table `data`: no stratum holds both a treated and a control row ",
      "(%s strata; %s treated and %s control rows; none matched).\n",
      "Fix: coarsen further (fewer cutpoints, `grouping`), match on fewer ",
      "variables, or widen `exact` (e.g. the period instead of the ",
      "financial year)."), fmt_n(S), fmt_n(sum(nt)), fmt_n(sum(nc))),
      call. = FALSE)
  }
  mt <- sum(nt[matched_strata])
  mc <- sum(nc[matched_strata])
  counts <- rbind(
    All = c(Control = sum(nc), Treated = sum(nt)),
    Matched = c(mc, mt),
    Unmatched = c(sum(nc) - mc, sum(nt) - mt)
  )
  storage.mode(counts) <- "integer"

  # Control weight of each matched stratum, the C kernel's formula.
  sg <- res$stratum_group
  gc <- res$group_counts
  ratio <- if (normalise == "global") mc / mt else (gc[, 4L] / gc[, 3L])[sg]
  cw <- ratio * (nt / nc)
  cw[!matched_strata] <- NA_real_
  strata <- new_df(list(
    stratum = seq_len(S),
    exact_group = sg,
    n_treated = nt,
    n_control = nc,
    matched = matched_strata,
    control_weight = cw
  ))
  by_exact <- exact_table(ex, res, matched_strata)

  reuse <- which(plan$kinds <= 1L & c(co$method == "values",
                                         rep(TRUE, length(ex$cols))))
  precoded <- list(codes = coded$codes[reuse], first = coded$first[reuse],
                   max_code = coded$max_code[reuse])
  names(precoded$codes) <- names(precoded$first) <- names(precoded$max_code) <-
    c(names(co$cols), names(ex$cols))[reuse]
  imb <- NULL
  if (l1) {
    prep <- l1_prepare(c(bf$vars, ex$vars), NULL, categorical = names(ex$vars),
                       precoded = precoded)
    imb <- l1_evaluate(prep, bf$treat, list(NULL, res$weight),
                       weighted = c(FALSE, TRUE), univariate = FALSE)
  }

  out_data <- NULL
  if (keep_all) {
    out_data <- data
    out_data$cem_weight <- res$weight
    out_data$cem_stratum <- res$stratum
    out_data$cem_matched <- res$matched
  }

  structure(list(
    call = call,
    formula = formula,
    treatment = bf$treat_name,
    variables = names(bf$vars),
    exact = names(ex$vars),
    normalise = normalise,
    weights = res$weight,
    stratum = res$stratum,
    matched = res$matched,
    exact_group = res$exact_group,
    n = counts,
    strata = strata,
    by_exact = by_exact,
    coarsening = record,
    imbalance = if (l1) list(before = imb[[1L]], after = imb[[2L]]),
    data = out_data
  ), class = "sfp_cem")
}

#' The Family Safeguarding protocol's CEM coarsening
#'
#' The coarsening the Family Safeguarding protocol pre-registers for the
#' child-level CEM ("Individual-level Matching", pp. 9-11): gender (protocol
#' codes, matched on its levels), age at referral 0-3 and 4-12, ethnic major
#' group (matched on its levels, see [ethnic_group()]), disability, free
#' school meal (or pupil premium) eligibility, unaccompanied asylum-seeking
#' child, and a previous child protection plan (0 vs 1 or more), matched
#' exactly within the treated-comparator pair and financial year. The cohort
#' column names are those of the cohort builder.
#'
#' `age` is in completed years at referral (an integer): the cutpoints
#' `c(0, 3, 12)` give the bins `[0, 3]` and `(3, 12]`, i.e. 0-3 and 4-12
#' years; floor a fractional age first. The indicators `disabled`, `fsm` and
#' `uasc` (0/1 or logical) get cutpoints `c(0, 0.5, 1)`, so they are matched
#' on 0 vs 1 whatever their type, and `n_previous_cpp` (a count) gets
#' `c(0, 0.5, Inf)`: none vs at least one.
#'
#' @param time The exact-match time variable: `"fin_year"` (the protocol's
#'   choice) or `"period"` (pre/post go-live, the protocol's fallback when
#'   matching within financial year dismisses a considerable share of the
#'   treated children).
#' @param pair Name of the column identifying the treated-comparator LA pair.
#' @param group Name of the 0/1 column marking children of the pair's treated
#'   authority (before and after its go-live), the "treated" side of the
#'   match; [stack_pairs()] makes it.
#' @return A list with `formula`, `cutpoints`, `grouping` (empty: the
#'   protocol merges no levels) and `exact` (a character vector), ready for
#'   [cem()]. `design_family_safeguarding()` carries it as `design$cem`, so
#'   `cem(data = stacked, design = design)` matches as the protocol says.
#' @examples
#' fs <- fs_coarsening()
#' fs$formula
#' fs$cutpoints
#' fs$exact
#' @export
fs_coarsening <- function(time = c("fin_year", "period"), pair = "pair",
                          group = "in_treated_la") {
  time <- match.arg(time)
  if (!is.character(pair) || length(pair) != 1L || is.na(pair)) {
    stop_arg("pair", "must be one column name")
  }
  if (!is.character(group) || length(group) != 1L || is.na(group)) {
    stop_arg("group", "must be one column name")
  }
  f <- stats::as.formula(paste(group, "~ gender + age + ethnic_group + disabled + fsm + uasc + n_previous_cpp"),
                         env = baseenv())
  list(
    formula = f,
    cutpoints = list(age = c(0, 3, 12), disabled = c(0, 0.5, 1),
                     fsm = c(0, 0.5, 1), uasc = c(0, 0.5, 1),
                     n_previous_cpp = c(0, 0.5, Inf)),
    grouping = list(),
    exact = c(pair, time)
  )
}

#' Multivariate L1 imbalance
#'
#' The multivariate L1 imbalance of Iacus, King and Porro (2011) between the
#' treated and control rows, with the cem package's default breaks, and the
#' per-variable differences in (weighted) means.
#'
#' Each numeric variable is binned with `breaks` (default
#' `pretty(range(x), n = nclass.scott(x), min.n = 1)` over the finite values
#' of all rows, as the cem package does), by `cut(x, breaks, include.lowest
#' = TRUE)`; values outside the breaks get a bin of their own on each side.
#' Factors, characters and logicals are used as they are; a missing value is
#' a value of its own. The rows are cross-tabulated into cells; rows with
#' weight 0 are left out; with \eqn{f_\ell} (\eqn{g_\ell}) the share of the
#' treated (control) weight in cell \eqn{\ell},
#' \deqn{L_1 = \frac{1}{2}\sum_\ell |f_\ell - g_\ell|,}
#' 0 for identical joint distributions and 1 for disjoint ones. LCS, the
#' local common support, is the percentage of occupied cells that hold both
#' treated and control rows.
#'
#' @param formula A two-sided formula `treated ~ x1 + x2 + ...` (treatment
#'   1/0 or logical).
#' @param data A data frame.
#' @param weights `NULL` (every row weighs 1), a numeric vector of
#'   non-negative finite weights, one per row of `data`, or a [cem()] result
#'   fitted to the same rows (its weights are used).
#' @param breaks A named list of breaks for numeric variables (strictly
#'   increasing vectors); variables not named get the default breaks.
#' @return An object of class `sfp_imbalance`: a list with `L1`, `LCS`,
#'   `n_cells` (occupied cells), `n_cells_both`, `univariate` (L1 of each
#'   variable alone; in the `imbalance` of a [cem()] result, `NA` for numeric
#'   variables, which `imbalance()` itself fills in), `means` (weighted means by arm and their difference;
#'   one row per level for categorical variables), `n_treated`, `n_control`
#'   (rows with positive weight), `share_treated_matched` (treated rows with
#'   positive weight over all treated rows; `NA` without weights) and
#'   `breaks`.
#' @references Iacus, S. M., King, G. and Porro, G. (2011). Multivariate
#'   matching methods that are monotonic imbalance bounding. *Journal of the
#'   American Statistical Association* 106, 345-361.
#' @examples
#' set.seed(2)
#' d <- data.frame(treated = rep(0:1, each = 100),
#'                 age = c(runif(100, 0, 12), runif(100, 2, 12)),
#'                 sex = factor(sample(c("f", "m"), 200, replace = TRUE)))
#' imbalance(treated ~ age + sex, d)
#' @export
imbalance <- function(formula, data, weights = NULL, breaks = NULL) {
  bf <- balance_frame(formula, data)
  check_arms(bf$treat, bf$treat_name)
  n <- length(bf$treat)
  if (inherits(weights, "sfp_cem")) {
    weights <- weights$weights
    if (length(weights) != n) {
      stop_arg("weights", sprintf(
        "is a cem() result for %s rows but `data` has %s rows",
        fmt_n(length(weights)), fmt_n(n)),
        "pass the data the match was made on.")
    }
  }
  if (!is.null(weights)) {
    if (!is.numeric(weights) || length(weights) != n) {
      stop_arg("weights", sprintf(
        "must be NULL or a numeric vector with one weight per row of `data` (%s)",
        fmt_n(n)))
    }
    bad <- which(!is.finite(weights) | weights < 0)
    if (length(bad) > 0L) {
      stop_arg("weights", sprintf(
        "has %s missing, infinite or negative value(s) (%s)",
        fmt_n(length(bad)), describe_rows(bad)),
        "give every row a finite weight >= 0 (0 leaves it out).")
    }
    weights <- as.double(weights)
  }
  prep <- l1_prepare(bf$vars, breaks)
  out <- l1_evaluate(prep, bf$treat, list(weights),
                     weighted = !is.null(weights))[[1L]]
  out$call <- match.call()
  out
}

# ---- internals: formula, treatment, exact variables -----------------------

fmt_n <- function(x) format(x, big.mark = ",", scientific = FALSE)

# The treatment and the matching variables of `treated ~ x1 + x2`, all rows
# kept (na.pass).
balance_frame <- function(formula, data) {
  if (!is.data.frame(data)) {
    stop_arg("data", "must be a data frame (one row per child)")
  }
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    stop_arg("formula", "must be a two-sided formula such as `treated ~ x1 + x2`")
  }
  # Plain column names (the usual case): take the columns, no model frame.
  tl <- tryCatch(attr(stats::terms(formula, data = data), "term.labels"),
                 error = function(e) NULL)
  resp <- if (is.name(formula[[2L]])) as.character(formula[[2L]]) else
    deparse1(formula[[2L]])
  if (!is.null(tl) && all(c(resp, tl) %in% names(data))) {
    vars <- lapply(tl, function(v) data[[v]])
    names(vars) <- tl
    return(list(treat_name = resp,
                treat = check_treatment(data[[resp]], resp),
                vars = vars))
  }
  mf <- tryCatch(
    stats::model.frame(formula, data, na.action = stats::na.pass,
                       drop.unused.levels = FALSE),
    error = function(e) {
      stop_arg("formula", paste0("cannot be evaluated in `data`: ",
                                 conditionMessage(e)),
               "use column names of `data`.")
    })
  treat_name <- names(mf)[1L]
  vars <- as.list(mf)[-1L]
  attr(vars, "terms") <- NULL
  is_mat <- vapply(vars, function(v) !is.null(dim(v)), logical(1))
  if (any(is_mat)) {
    stop_arg("formula", sprintf("has matrix-valued term(s) %s",
                                paste0("`", names(vars)[is_mat], "`",
                                       collapse = ", ")),
             "use plain columns of `data`.")
  }
  list(treat_name = treat_name,
       treat = check_treatment(mf[[1L]], treat_name),
       vars = vars)
}

check_treatment <- function(t, name) {
  if (!(is.numeric(t) || is.logical(t)) || is.factor(t)) {
    stop_arg("formula", sprintf(
      "has the response `%s` of class %s; it must be numeric 0/1 or logical",
      name, class(t)[1L]),
      sprintf("code `%s` as 1 = treated, 0 = control.", name))
  }
  ti <- suppressWarnings(as.integer(t))
  ok <- !anyNA(ti) && (length(ti) == 0L || all(range(ti) %in% 0:1)) &&
    (is.integer(t) || is.logical(t) || !any(ti != t))
  if (!ok) {
    bad <- which(is.na(t) | !(t %in% c(0, 1)))
    stop_rows("data", name, bad, "not coded 0 or 1", keys = t[bad],
              key_name = "values",
              fix = sprintf(paste0("code `%s` as 1 = treated, 0 = control, ",
                                   "and resolve missing values before ",
                                   "matching."), name))
  }
  ti
}

check_arms <- function(treat, name) {
  n_t <- sum(treat)
  n_c <- length(treat) - n_t
  if (n_t == 0L || n_c == 0L) {
    stop(sprintf(paste0(
      "Table `data`, column `%s`: no %s rows (%s treated and %s control ",
      "rows).\nFix: match on data holding both treated and control ",
      "children."), name, if (n_t == 0L) "treated" else "control",
      fmt_n(n_t), fmt_n(n_c)), call. = FALSE)
  }
  invisible(NULL)
}

# How the C coder treats a column: 0 = its values, 1 = factor level codes,
# 2 = bins between breaks (see ffi_cem_codes in src/cem.c).
check_column <- function(x, arg, v) {
  if (!is.atomic(x) || !is.null(dim(x)) || is.complex(x) || is.raw(x) ||
      is.null(x)) {
    stop_arg(arg, sprintf(
      "variable `%s` is a %s; matching variables must be plain numeric, logical, character or factor columns",
      v, class(x)[1L]))
  }
}

value_plan <- function(x) {
  if (is.factor(x)) {
    list(col = x, kind = 1L, arg = nlevels(x))
  } else {
    list(col = x, kind = 0L, arg = NULL)
  }
}

# Exact-match variables: names, values and how to code them.
exact_frame <- function(exact, data) {
  if (is.null(exact)) {
    return(list(vars = list(), cols = list(), kinds = integer(), args = list()))
  }
  if (inherits(exact, "formula")) {
    if (length(exact) != 2L) {
      stop_arg("exact", "must be a one-sided formula such as `~ pair + fin_year`")
    }
    mf <- tryCatch(
      stats::model.frame(exact, data, na.action = stats::na.pass),
      error = function(e) {
        stop_arg("exact", paste0("cannot be evaluated in `data`: ",
                                 conditionMessage(e)),
                 "use column names of `data`.")
      })
    vars <- as.list(mf)
    attr(vars, "terms") <- NULL
  } else if (is.character(exact)) {
    miss <- setdiff(exact, names(data))
    if (length(miss) > 0L) {
      stop_arg("exact", sprintf("names column(s) %s not in `data`",
                                paste0("`", miss, "`", collapse = ", ")),
               "use column names of `data`.")
    }
    vars <- lapply(unique(exact), function(v) data[[v]])
    names(vars) <- unique(exact)
  } else {
    stop_arg("exact", "must be NULL, a one-sided formula or a character vector")
  }
  for (v in names(vars)) check_column(vars[[v]], "exact", v)
  plans <- lapply(vars, value_plan)
  list(vars = vars,
       cols = lapply(plans, `[[`, "col"),
       kinds = vapply(plans, `[[`, integer(1), "kind"),
       args = lapply(plans, `[[`, "arg"))
}

warn_one_level <- function(ex, n_values, n) {
  for (k in seq_along(ex$vars)) {
    if (n > 0L && n_values[k] == 1L) {
      v <- names(ex$vars)[k]
      warning(sprintf(paste0(
        "Exact variable `%s` has one value (%s) in all %s rows, so it does ",
        "not split the data.\nFix: check it is the intended column (e.g. ",
        "the treated-comparator pair), or drop it from `exact`."),
        v, format(ex$vars[[v]][1L]), fmt_n(n)), call. = FALSE)
    }
  }
}

# One row per exact group: counts by arm, matched counts, strata (counted
# in C from the strata).
exact_table <- function(ex, res, matched_strata) {
  gc <- res$group_counts
  out <- lapply(ex$vars, function(x) x[res$exact_first])
  out$n_treated <- gc[, 1L]
  out$n_control <- gc[, 2L]
  out$matched_treated <- gc[, 3L]
  out$matched_control <- gc[, 4L]
  share <- gc[, 3L] / gc[, 1L]
  share[gc[, 1L] == 0L] <- NA_real_
  out$share_treated_matched <- share
  out$n_strata <- gc[, 5L]
  out$matched_strata <- gc[, 6L]
  new_df(out)
}

# A data frame from a list of equal-length columns, without data.frame()'s
# checks and name mangling (internal results only).
new_df <- function(cols) {
  n <- if (length(cols) > 0L) length(cols[[1L]]) else 0L
  structure(cols, class = "data.frame", row.names = .set_row_names(n))
}

# ---- internals: coarsening -------------------------------------------------

check_named_list <- function(x, arg, vars) {
  if (is.null(x)) return(list())
  if (!is.list(x)) stop_arg(arg, "must be a named list")
  if (length(x) == 0L) return(list())
  nm <- names(x)
  if (is.null(nm) || anyNA(nm) || any(nm == "")) {
    stop_arg(arg, "must be a named list (one element per variable)")
  }
  if (anyDuplicated(nm)) {
    stop_arg(arg, sprintf("names `%s` twice", nm[anyDuplicated(nm)]))
  }
  bad <- setdiff(nm, vars)
  if (length(bad) > 0L) {
    stop_arg(arg, sprintf("names %s, not a matching variable of `formula`",
                          paste0("`", bad, "`", collapse = ", ")),
             sprintf("use the names of the right-hand side: %s.",
                     paste0("`", vars, "`", collapse = ", ")))
  }
  x
}

# The coarsening of every matching variable: what the C coder gets (column,
# kind, breaks or number of levels) and what the user is told.
coarsen_plan <- function(vars, cutpoints, grouping) {
  vn <- names(vars)
  cutpoints <- check_named_list(cutpoints, "cutpoints", vn)
  grouping <- check_named_list(grouping, "grouping", vn)
  both <- intersect(names(cutpoints), names(grouping))
  if (length(both) > 0L) {
    stop_arg("cutpoints", sprintf("and `grouping` both name `%s`", both[1L]),
             "coarsen a variable either by cutpoints or by grouping.")
  }
  p <- length(vn)
  cols <- vector("list", p)
  args <- vector("list", p)
  kinds <- integer(p)
  method <- character(p)
  given <- logical(p)
  brk <- vector("list", p)
  names(cols) <- names(args) <- names(brk) <- vn
  for (k in seq_along(vn)) {
    v <- vn[k]
    x <- vars[[v]]
    check_column(x, "formula", v)
    if (!is.null(grouping[[v]])) {
      g <- code_grouped(x, grouping[[v]], v)
      cols[[k]] <- g$codes
      kinds[k] <- 0L
      brk[v] <- list(g$breaks)
      method[k] <- "grouping"
    } else if (is.numeric(x) && !is.factor(x) ||
               is.logical(x) && !is.null(cutpoints[[v]])) {
      given[k] <- !is.null(cutpoints[[v]])
      r <- numeric_breaks(x, cutpoints[[v]] %||% "sturges", v)
      cols[k] <- list(x)
      method[k] <- r$method
      brk[v] <- list(r$breaks)
      if (length(r$breaks) >= 2L) {
        kinds[k] <- 2L
        args[[k]] <- as.double(r$breaks)
      } else {
        # All breakpoints coincide: match on the values (as cem does).
        kinds[k] <- 0L
        method[k] <- paste(method[k], "(constant: values)")
      }
    } else {
      if (!is.null(cutpoints[[v]])) {
        stop_arg(sprintf("cutpoints$%s", v), sprintf(
          "is given but `%s` is not numeric (it is %s)", v, class(x)[1L]),
          sprintf("use `grouping$%s` to merge its values.", v))
      }
      vp <- value_plan(x)
      cols[k] <- list(vp$col)
      kinds[k] <- vp$kind
      args[k] <- list(vp$arg)
      brk[v] <- list(if (is.factor(x)) levels(x) else NULL)
      method[k] <- "values"
    }
  }
  list(vars = vars, cols = cols, kinds = kinds, args = args, method = method,
       given = given, breaks = brk)
}

# The coarsening table, and a warning for values outside the cutpoints.
coarsen_record <- function(co, coded, vars) {
  vn <- names(co$cols)
  p <- length(vn)
  for (k in which(coded$n_below[seq_len(p)] + coded$n_above[seq_len(p)] > 0L)) {
    v <- vn[k]
    K <- length(co$args[[k]])
    ck <- coded$codes[[k]]
    out <- which(ck == 0L | ck == K)
    b <- co$args[[k]]
    warn_rows("data", v, out, sprintf(
      "lie outside the %s [%s, %s]; each side gets a bin of its own",
      if (co$given[k]) "cutpoints" else "range of the finite values",
      format(b[1L]), format(b[K])),
      keys = vars[[v]][out], key_name = "values",
      fix = sprintf("widen `cutpoints$%s` if they should share a bin.", v))
  }
  record <- new_df(list(variable = vn, method = co$method,
                        n_values = coded$n_values[seq_len(p)]))
  attr(record, "breaks") <- co$breaks
  record
}

# Moments of the finite values, in C: c(n_finite, min, max, var).
moments <- function(x) .Call(ffi_cem_moments, x)

# nclass.scott() from the moments (h = 3.5 sd n^(-1/3)).
scott_bins <- function(mom) {
  if (mom[1L] < 2) return(1L)
  h <- 3.5 * sqrt(mom[4L]) * mom[1L]^(-1 / 3)
  if (h > 0) max(1, ceiling((mom[3L] - mom[2L]) / h)) else 1L
}

# Breaks of a numeric matching variable: cutpoints, a number of breakpoints
# or a rule (the cem package's: that many equally spaced breakpoints).
numeric_breaks <- function(x, spec, v) {
  arg <- sprintf("cutpoints$%s", v)
  method <- "cutpoints"
  if (is.character(spec)) {
    if (length(spec) != 1L || !spec %in% c("sturges", "fd", "scott")) {
      stop_arg(arg, "must be cutpoints, a number of breakpoints, or one of \"sturges\", \"fd\", \"scott\"")
    }
    method <- spec
    mom <- moments(x)
    spec <- switch(spec,
      sturges = grDevices::nclass.Sturges(x),
      fd = if (mom[1L] > 1) grDevices::nclass.FD(x[is.finite(x)]) else 1L,
      scott = scott_bins(mom))
  } else if (!is.numeric(spec) || length(spec) == 0L || anyNA(spec)) {
    stop_arg(arg, "must be a numeric vector of cutpoints without missing values, a number of breakpoints, or a method name")
  } else if (length(spec) == 1L) {
    if (!is.finite(spec) || spec < 1 || spec != round(spec)) {
      stop_arg(arg, "is a single number, so it must be a whole number of breakpoints >= 1")
    }
    method <- sprintf("%d breakpoints", as.integer(spec))
    mom <- moments(x)
  }
  if (length(spec) == 1L) {
    breaks <- if (mom[1L] == 0) numeric(0) else
      unique(seq(mom[2L], mom[3L], length.out = spec))
  } else {
    if (is.unsorted(spec, strictly = TRUE)) {
      i <- which(diff(spec) <= 0)[1L]
      stop_arg(arg, sprintf(
        "is not strictly increasing (element %d is %s, element %d is %s)",
        i, format(spec[i]), i + 1L, format(spec[i + 1L])),
        "give the cutpoints in increasing order, each once.")
    }
    breaks <- as.double(spec)
  }
  list(breaks = breaks, method = method)
}

code_grouped <- function(x, groups, v) {
  if (!is.list(groups)) groups <- list(groups)
  if (is.factor(x)) x <- as.character(x)
  seen <- unlist(groups, use.names = FALSE)
  if (anyDuplicated(seen)) {
    stop_arg(sprintf("grouping$%s", v), sprintf(
      "puts the value %s in more than one group", format(seen[anyDuplicated(seen)])),
      "give each value to at most one group.")
  }
  codes <- integer(length(x))
  for (g in seq_along(groups)) codes[x %in% groups[[g]]] <- g
  rest <- codes == 0L
  codes[rest] <- length(groups) + match(x[rest], unique(x[rest]))
  list(codes = codes, breaks = groups)
}

# ---- internals: imbalance ---------------------------------------------------

# cem's default L1 breaks for a numeric variable:
# pretty(range(x), n = nclass.scott(x), min.n = 1) over the finite values.
l1_default_breaks <- function(x) {
  mom <- moments(x)
  if (mom[1L] == 0) return(NULL)
  pretty(mom[2:3], n = scott_bins(mom), min.n = 1)
}

# Codes of every variable for the L1 cells (binned numeric variables,
# categorical ones as they are), computed once for every weighting.
# `categorical` names variables used as they are even when numeric (the
# exact variables).
l1_prepare <- function(vars, breaks, categorical = character(),
                       precoded = NULL) {
  vn <- names(vars)
  p <- length(vn)
  breaks <- check_named_list(breaks, "breaks", vn)
  used <- vector("list", p)
  names(used) <- vn
  cols <- vector("list", p)
  args <- vector("list", p)
  kinds <- integer(p)
  values <- vector("list", p)
  is_num <- logical(p)
  for (k in seq_along(vn)) {
    v <- vn[k]
    x <- vars[[v]]
    check_column(x, "formula", v)
    cols[k] <- list(x)
    if (is.numeric(x) && !is.factor(x) && !v %in% categorical) {
      is_num[k] <- TRUE
      values[k] <- list(x)
      b <- breaks[[v]]
      if (is.null(b)) {
        b <- l1_default_breaks(x)
      } else if (!is.numeric(b) || anyNA(b) || is.unsorted(b, strictly = TRUE)) {
        stop_arg(sprintf("breaks$%s", v),
                 "must be a strictly increasing numeric vector")
      }
      used[v] <- list(b)
      if (length(b) >= 2L) {
        kinds[k] <- 2L
        args[[k]] <- as.double(b)
      }
    } else if (!is.null(precoded) && v %in% names(precoded$codes)) {
      # Already coded by value for the strata: the codes are reused.
      cols[k] <- list(precoded$codes[[v]])
      kinds[k] <- -1L
    } else {
      vp <- value_plan(x)
      kinds[k] <- vp$kind
      args[k] <- list(vp$arg)
    }
  }
  todo <- which(kinds >= 0L)
  coded <- .Call(ffi_cem_codes, cols[todo], kinds[todo], args[todo])
  codes <- vector("list", p)
  first <- vector("list", p)
  max_code <- integer(p)
  codes[todo] <- coded$codes
  first[todo] <- coded$first
  max_code[todo] <- coded$max_code
  for (k in which(kinds < 0L)) {
    codes[k] <- list(cols[[k]])
    first[k] <- list(precoded$first[[vn[k]]])
    max_code[k] <- precoded$max_code[[vn[k]]]
  }
  labels <- vector("list", p)
  for (k in which(!is_num)) {
    x <- vars[[k]]
    lab <- if (is.factor(x)) {
      # the code nlevels + 1 (NA) is present iff the largest code exceeds
      # nlevels
      c(levels(x), if (max_code[k] > nlevels(x)) NA)
    } else {
      as.character(x[first[[k]]])
    }
    labels[[k]] <- ifelse(is.na(lab), "(missing)", lab)
  }
  list(vars = vars, codes = codes, max_code = max_code, labels = labels,
       values = values, is_num = is_num, breaks = used)
}

# The imbalance under each weighting in W (a list of weight vectors, NULL
# meaning every row weighs 1) in one C call.
# `univariate = FALSE` (cem()) skips the one-variable tables of numeric
# variables (their univariate L1 is then NA).
l1_evaluate <- function(prep, treat, W, weighted, univariate = TRUE) {
  want <- if (univariate) rep(TRUE, length(prep$is_num)) else !prep$is_num
  res <- .Call(ffi_cem_l1, prep$codes, treat, W, prep$values, want,
               prep$max_code)
  vn <- names(prep$vars)
  n_t <- sum(treat)
  lapply(seq_along(W), function(j) {
    pos_t <- res$n_positive[2L, j]
    pos_c <- res$n_positive[1L, j]
    if (pos_t == 0L || pos_c == 0L) {
      stop_arg("weights", sprintf(
        "are 0 for every %s row", if (pos_t == 0L) "treated" else "control"),
        "give positive weight to some treated and some control rows.")
    }
    uni <- numeric(length(vn))
    term <- treated <- control <- variable <- vector("list", length(vn))
    for (k in seq_along(vn)) {
      mg <- res$margins[[k]]
      if (is.null(mg)) {
        uni[k] <- NA_real_
      } else {
        mt <- mg[, 2L * j - 1L]
        mc <- mg[, 2L * j]
        uni[k] <- sum(abs(mt / sum(mt) - mc / sum(mc))) / 2
      }
      if (prep$is_num[k]) {
        sm <- res$sums[k, 4L * (j - 1L) + 1:4]
        term[[k]] <- vn[k]
        treated[[k]] <- if (sm[2L] > 0) sm[1L] / sm[2L] else NA_real_
        control[[k]] <- if (sm[4L] > 0) sm[3L] / sm[4L] else NA_real_
      } else {
        lab <- prep$labels[[k]]
        idx <- seq_along(lab) + 1L          # codes 1..L sit in rows 2..L+1
        pad <- max(0L, max(c(0L, idx)) - length(mt))  # unused last levels
        mt <- c(mt, numeric(pad))
        mc <- c(mc, numeric(pad))
        term[[k]] <- paste0(vn[k], ": ", lab)
        treated[[k]] <- mt[idx] / sum(mt)
        control[[k]] <- mc[idx] / sum(mc)
      }
      variable[[k]] <- rep(vn[k], length(term[[k]]))
    }
    tr_m <- as.double(unlist(treated))
    co_m <- as.double(unlist(control))
    means <- new_df(list(variable = as.character(unlist(variable)),
                         term = as.character(unlist(term)),
                         treated = tr_m, control = co_m,
                         difference = tr_m - co_m))
    univariate <- new_df(list(
      variable = as.character(vn),
      type = ifelse(prep$is_num, "numeric", "categorical"),
      L1 = uni))
    structure(list(
      L1 = res$L1[j],
      LCS = res$LCS[j],
      n_cells = as.integer(res$n_cells[j]),
      n_cells_both = as.integer(res$n_cells_both[j]),
      univariate = univariate,
      means = means,
      n_treated = pos_t,
      n_control = pos_c,
      share_treated_matched = if (weighted[j]) pos_t / n_t else NA_real_,
      weighted = weighted[j],
      breaks = prep$breaks
    ), class = "sfp_imbalance")
  })
}

# ---- methods ----------------------------------------------------------------

# Round away floating-point dust (1e-17) in printed tables.
zap_df <- function(df, digits) {
  num <- vapply(df, is.numeric, logical(1))
  df[num] <- lapply(df[num], zapsmall, digits = digits + 3L)
  df
}

#' @export
#' @noRd
print.sfp_cem <- function(x, ...) {
  cat("Coarsened exact matching: ", deparse1(x$formula), "\n", sep = "")
  if (length(x$exact) > 0L) {
    cat("Exact on: ", paste(x$exact, collapse = ", "),
        if (x$normalise == "exact_group") " (weights normalised within exact group)"
        else "", "\n", sep = "")
  }
  cat("\n")
  print(x$n)
  cat(sprintf("\nStrata: %s, of which %s matched\n", fmt_n(nrow(x$strata)),
              fmt_n(sum(x$strata$matched))))
  cat(sprintf("Treated matched: %.1f%%\n",
              100 * x$n["Matched", "Treated"] / x$n["All", "Treated"]))
  if (is.null(x$imbalance)) {
    cat("L1 imbalance: not computed (`l1 = FALSE`); see imbalance()\n")
  } else {
    cat(sprintf("L1 imbalance: %.4f before, %.4f after\n",
                x$imbalance$before$L1, x$imbalance$after$L1))
  }
  disclosure_status(x$n)
  invisible(x)
}

#' @export
#' @noRd
summary.sfp_cem <- function(object, ...) {
  if (is.null(object$imbalance)) {
    stop_arg("object", "was matched with `l1 = FALSE`, so it has no imbalance to summarise",
             "rerun cem() with `l1 = TRUE`, or call imbalance() with its weights.")
  }
  b <- object$imbalance$before
  a <- object$imbalance$after
  overall <- data.frame(
    row.names = c("Before", "After"),
    treated = c(b$n_treated, a$n_treated),
    control = c(b$n_control, a$n_control),
    share_treated_matched = c(1, a$share_treated_matched),
    L1 = c(b$L1, a$L1),
    LCS = c(b$LCS, a$LCS),
    cells = c(b$n_cells, a$n_cells),
    strata = c(nrow(object$strata), sum(object$strata$matched))
  )
  means <- data.frame(term = b$means$term,
                      diff_before = b$means$difference,
                      diff_after = a$means$difference,
                      stringsAsFactors = FALSE)
  structure(list(formula = object$formula, exact = object$exact,
                 normalise = object$normalise, overall = overall,
                 means = means,
                 coarsening = object$coarsening, by_exact = object$by_exact),
            class = "summary.sfp_cem")
}

#' @export
#' @noRd
print.summary.sfp_cem <- function(x, digits = 4, ...) {
  cat("Coarsened exact matching: ", deparse1(x$formula), "\n", sep = "")
  if (length(x$exact) > 0L) {
    cat("Exact on: ", paste(x$exact, collapse = ", "), " (weights normalised ",
        if (x$normalise == "exact_group") "within exact group" else "globally",
        ")\n", sep = "")
  }
  cat("\nBefore and after matching (counts are rows with positive weight):\n")
  print(x$overall, digits = digits)
  cat("\nDifferences in (weighted) means, treated - control:\n")
  print(zap_df(x$means, digits), digits = digits, row.names = FALSE)
  cat("\nCoarsening:\n")
  print(x$coarsening, row.names = FALSE)
  if (length(x$exact) > 0L) {
    cat("\nBy exact group:\n")
    print(x$by_exact, digits = digits, row.names = FALSE)
  }
  disclosure_status(x$overall[c("treated", "control")])
  invisible(x)
}

#' @importFrom stats weights
#' @export
#' @noRd
weights.sfp_cem <- function(object, ...) {
  object$weights
}

#' @importFrom stats nobs
#' @export
#' @noRd
nobs.sfp_cem <- function(object, ...) {
  length(object$weights)
}

#' @exportS3Method generics::glance
#' @noRd
glance.sfp_cem <- function(x, ...) {
  data.frame(
    n_treated = x$n["All", "Treated"], n_control = x$n["All", "Control"],
    matched_treated = x$n["Matched", "Treated"],
    matched_control = x$n["Matched", "Control"],
    share_treated_matched = x$n["Matched", "Treated"] / x$n["All", "Treated"],
    n_strata = nrow(x$strata), matched_strata = sum(x$strata$matched),
    L1_before = x$imbalance$before$L1 %||% NA_real_,
    L1_after = x$imbalance$after$L1 %||% NA_real_,
    row.names = NULL
  )
}

#' @export
#' @noRd
print.sfp_imbalance <- function(x, digits = 4, ...) {
  cat(sprintf("Multivariate imbalance: L1 = %.4f, LCS = %.1f%% (%s cells)\n",
              x$L1, x$LCS, fmt_n(x$n_cells)))
  cat(sprintf("Rows with positive weight: %s treated, %s control",
              fmt_n(x$n_treated), fmt_n(x$n_control)))
  if (isTRUE(x$weighted)) {
    cat(sprintf("; treated matched: %.1f%%", 100 * x$share_treated_matched))
  }
  cat("\n\nDifferences in (weighted) means, treated - control:\n")
  print(zap_df(x$means, digits), digits = digits, row.names = FALSE)
  disclosure_status(c(x$n_treated, x$n_control))
  invisible(x)
}
