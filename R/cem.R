# Coarsened exact matching (Iacus, King & Porro) of children inside the
# Family Safeguarding treated-comparator pairs, and the L1 imbalance.
# METHODS.md section 1; the Family Safeguarding protocol, "Individual-level
# Matching" (pp. 9-11). R coarsens and integer-codes every variable; the strata,
# the counts and the weights are built in C (src/cem.c).

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
#' (`NA` or `NaN`) is a value of its own, so no child is dropped.
#'
#' **Weights** (the cem package's and MatchIt's ATT weights): 1 for a matched
#' treated child; \eqn{(m_C/m_T)(m_T^s/m_C^s)} for a matched control child in
#' stratum \eqn{s}, where \eqn{m_T^s, m_C^s} count the treated and control
#' children of the stratum and \eqn{m_T, m_C} all matched treated and control
#' children; 0 for an unmatched child. With `normalise = "exact_group"`,
#' \eqn{m_T} and \eqn{m_C} are counted within each exact group (e.g. each
#' pair by financial year), so the control weights sum to the number of
#' matched controls in every group (METHODS.md section 0 item 9).
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
#' @param keep_all If `FALSE` (default) the result's `data` holds the matched
#'   rows of `data` only; if `TRUE` all rows (unmatched ones with weight 0).
#'   Either way three columns are appended: `cem_weight`, `cem_stratum`,
#'   `cem_matched`.
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
#'   * `data`: `data` with the three `cem_*` columns (see `keep_all`);
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
                keep_all = FALSE) {
  call <- match.call()
  normalise <- match.arg(normalise)
  if (!is.logical(keep_all) || length(keep_all) != 1L || is.na(keep_all)) {
    stop_arg("keep_all", "must be TRUE or FALSE")
  }
  bf <- balance_frame(formula, data)
  check_arms(bf$treat, bf$treat_name)
  ex <- exact_frame(exact, data)
  co <- coarsen_vars(bf$vars, cutpoints, grouping)
  n <- length(bf$treat)
  if (length(bf$vars) + length(ex$vars) == 0L) {
    stop_arg("formula", "has no matching variables",
             "put covariates on the right-hand side or give `exact`.")
  }
  codes <- matrix(c(unlist(co$codes, use.names = FALSE),
                    unlist(ex$codes, use.names = FALSE)),
                  nrow = n, ncol = length(co$codes) + length(ex$codes))
  storage.mode(codes) <- "integer"

  res <- .Call(ffi_cem_strata, codes, bf$treat, length(ex$codes),
               as.integer(normalise == "exact_group"))

  treated <- bf$treat == 1L
  S <- length(res$stratum_treated)
  matched_strata <- res$stratum_treated > 0L & res$stratum_control > 0L
  if (!any(matched_strata)) {
    stop(sprintf(paste0(
      "Table `data`: no stratum holds both a treated and a control row ",
      "(%s strata; %s treated and %s control rows; none matched).\n",
      "Fix: coarsen further (fewer cutpoints, `grouping`), match on fewer ",
      "variables, or widen `exact` (e.g. the period instead of the ",
      "financial year)."), fmt_n(S), fmt_n(sum(treated)),
      fmt_n(sum(!treated))), call. = FALSE)
  }

  counts <- rbind(
    All = c(Control = sum(!treated), Treated = sum(treated)),
    Matched = c(sum(!treated & res$matched), sum(treated & res$matched)),
    Unmatched = c(sum(!treated & !res$matched), sum(treated & !res$matched))
  )
  storage.mode(counts) <- "integer"

  strata <- data.frame(
    stratum = seq_len(S),
    exact_group = res$stratum_group,
    n_treated = res$stratum_treated,
    n_control = res$stratum_control,
    matched = matched_strata
  )
  ctrl_rows <- which(!treated)
  ctrl_first <- ctrl_rows[match(seq_len(S), res$stratum[ctrl_rows])]
  strata$control_weight <- ifelse(matched_strata, res$weight[ctrl_first],
                                  NA_real_)

  by_exact <- exact_table(ex, res, treated, matched_strata)

  l1_vars <- c(bf$vars, lapply(ex$vars, as_category))
  before <- imbalance_fit(l1_vars, bf$treat, NULL, NULL, weighted = FALSE)
  after <- imbalance_fit(l1_vars, bf$treat, res$weight, before$breaks,
                         weighted = TRUE)

  out_data <- NULL
  new_cols <- c("cem_weight", "cem_stratum", "cem_matched")
  clash <- intersect(new_cols, names(data))
  if (length(clash) > 0L) {
    stop_arg("data", sprintf("already has column(s) %s",
                             paste0("`", clash, "`", collapse = ", ")),
             "rename or drop them before matching.")
  }
  keep <- if (keep_all) seq_len(n) else which(res$matched)
  out_data <- data[keep, , drop = FALSE]
  out_data$cem_weight <- res$weight[keep]
  out_data$cem_stratum <- res$stratum[keep]
  out_data$cem_matched <- res$matched[keep]

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
    coarsening = co$record,
    imbalance = list(before = before, after = after),
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
#' @return A list with `formula`, `cutpoints`, `grouping` (empty: the
#'   protocol merges no levels) and `exact` (a character vector), ready for
#'   [cem()].
#' @examples
#' fs <- fs_coarsening()
#' fs$cutpoints
#' fs$exact
#' # cem(fs$formula, cohort, cutpoints = fs$cutpoints,
#' #     grouping = fs$grouping, exact = fs$exact)
#' @export
fs_coarsening <- function(time = c("fin_year", "period"), pair = "pair") {
  time <- match.arg(time)
  if (!is.character(pair) || length(pair) != 1L || is.na(pair)) {
    stop_arg("pair", "must be one column name")
  }
  list(
    formula = treated ~ gender + age + ethnic_group + disabled + fsm + uasc +
      n_previous_cpp,
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
#'   variable alone), `means` (weighted means by arm and their difference;
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
  out <- imbalance_fit(bf$vars, bf$treat, weights, breaks,
                       weighted = !is.null(weights))
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
  if (is.logical(t)) t <- as.integer(t)
  if (!is.numeric(t) || is.factor(t)) {
    stop_arg("formula", sprintf(
      "has the response `%s` of class %s; it must be numeric 0/1 or logical",
      name, class(t)[1L]),
      sprintf("code `%s` as 1 = treated, 0 = control.", name))
  }
  bad <- which(is.na(t) | !(t %in% c(0, 1)))
  if (length(bad) > 0L) {
    stop_rows("data", name, bad, "not coded 0 or 1", keys = t[bad],
              key_name = "values",
              fix = sprintf(paste0("code `%s` as 1 = treated, 0 = control, ",
                                   "and resolve missing values before ",
                                   "matching."), name))
  }
  as.integer(t)
}

check_arms <- function(treat, name) {
  n_t <- sum(treat == 1L)
  n_c <- sum(treat == 0L)
  if (n_t == 0L || n_c == 0L) {
    stop(sprintf(paste0(
      "Table `data`, column `%s`: no %s rows (%s treated and %s control ",
      "rows).\nFix: match on data holding both treated and control ",
      "children."), name, if (n_t == 0L) "treated" else "control",
      fmt_n(n_t), fmt_n(n_c)), call. = FALSE)
  }
  invisible(NULL)
}

# Exact-match variables: names, values and integer codes.
exact_frame <- function(exact, data) {
  if (is.null(exact)) return(list(vars = list(), codes = list()))
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
    vars <- as.list(data[unique(exact)])
  } else {
    stop_arg("exact", "must be NULL, a one-sided formula or a character vector")
  }
  n <- nrow(data)
  for (v in names(vars)) {
    x <- vars[[v]]
    if (!is.null(dim(x)) || is.list(x)) {
      stop_arg("exact", sprintf("variable `%s` is not a plain column", v))
    }
    u <- unique(x)
    if (n > 0L && length(u) == 1L) {
      warning(sprintf(paste0(
        "Exact variable `%s` has one value (%s) in all %s rows, so it does ",
        "not split the data.\nFix: check it is the intended column (e.g. ",
        "the treated-comparator pair), or drop it from `exact`."),
        v, format(u), fmt_n(n)), call. = FALSE)
    }
  }
  list(vars = vars, codes = lapply(vars, value_codes))
}

# Integer codes of the values of x (NA a value of its own), in order of first
# appearance for non-factors; no sorting, no pasting.
value_codes <- function(x) {
  if (is.factor(x)) {
    codes <- as.integer(x)
    codes[is.na(codes)] <- nlevels(x) + 1L
    return(codes)
  }
  match(x, unique(x))
}

as_category <- function(x) if (is.factor(x)) x else factor(x, exclude = NULL)

# One row per exact group: counts by arm, matched counts, strata.
exact_table <- function(ex, res, treated, matched_strata) {
  G <- max(c(0L, res$exact_group))
  grp <- res$exact_group
  first <- match(seq_len(G), grp)
  out <- if (length(ex$vars) > 0L) {
    as.data.frame(lapply(ex$vars, function(x) x[first]),
                  stringsAsFactors = FALSE)
  } else {
    data.frame(row.names = seq_len(G))
  }
  out$n_treated <- tabulate(grp[treated], G)
  out$n_control <- tabulate(grp[!treated], G)
  out$matched_treated <- tabulate(grp[treated & res$matched], G)
  out$matched_control <- tabulate(grp[!treated & res$matched], G)
  out$share_treated_matched <- ifelse(out$n_treated > 0,
                                      out$matched_treated / out$n_treated,
                                      NA_real_)
  out$n_strata <- tabulate(res$stratum_group, G)
  out$matched_strata <- tabulate(res$stratum_group[matched_strata], G)
  rownames(out) <- NULL
  out
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

coarsen_vars <- function(vars, cutpoints, grouping) {
  vn <- names(vars)
  cutpoints <- check_named_list(cutpoints, "cutpoints", vn)
  grouping <- check_named_list(grouping, "grouping", vn)
  both <- intersect(names(cutpoints), names(grouping))
  if (length(both) > 0L) {
    stop_arg("cutpoints", sprintf("and `grouping` both name `%s`", both[1L]),
             "coarsen a variable either by cutpoints or by grouping.")
  }
  codes <- vector("list", length(vn))
  names(codes) <- vn
  record <- data.frame(variable = vn, method = character(length(vn)),
                       n_values = integer(length(vn)),
                       stringsAsFactors = FALSE)
  brk <- vector("list", length(vn))
  names(brk) <- vn
  for (k in seq_along(vn)) {
    v <- vn[k]
    x <- vars[[v]]
    if (!is.null(grouping[[v]])) {
      r <- code_grouped(x, grouping[[v]], v)
      method <- "grouping"
    } else if (is.numeric(x) && !is.factor(x) ||
               is.logical(x) && !is.null(cutpoints[[v]])) {
      r <- code_numeric(as.double(x), cutpoints[[v]] %||% "sturges", v,
                        given = !is.null(cutpoints[[v]]))
      method <- r$method
    } else {
      if (!is.null(cutpoints[[v]])) {
        stop_arg(sprintf("cutpoints$%s", v), sprintf(
          "is given but `%s` is not numeric (it is %s)", v, class(x)[1L]),
          sprintf("use `grouping$%s` to merge its values.", v))
      }
      r <- list(codes = value_codes(x),
                breaks = if (is.factor(x)) levels(x) else NULL)
      method <- "values"
    }
    codes[[v]] <- r$codes
    brk[v] <- list(r$breaks)
    record$method[k] <- method
    record$n_values[k] <- length(unique(r$codes))
  }
  attr(record, "breaks") <- brk
  list(codes = codes, record = record)
}

# cem's default numbers of breakpoints
n_breakpoints <- function(method, x) {
  fin <- x[is.finite(x)]
  switch(method,
         sturges = grDevices::nclass.Sturges(x),
         fd = if (length(fin) > 1L) grDevices::nclass.FD(fin) else 1L,
         scott = if (length(fin) > 1L) grDevices::nclass.scott(fin) else 1L)
}

code_numeric <- function(x, spec, v, given) {
  arg <- sprintf("cutpoints$%s", v)
  method <- "cutpoints"
  if (is.character(spec)) {
    if (length(spec) != 1L || !spec %in% c("sturges", "fd", "scott")) {
      stop_arg(arg, "must be cutpoints, a number of breakpoints, or one of \"sturges\", \"fd\", \"scott\"")
    }
    method <- spec
    spec <- n_breakpoints(spec, x)
  } else if (!is.numeric(spec) || length(spec) == 0L || anyNA(spec)) {
    stop_arg(arg, "must be a numeric vector of cutpoints without missing values, a number of breakpoints, or a method name")
  }
  if (length(spec) == 1L) {
    if (method == "cutpoints") {
      if (!is.finite(spec) || spec < 1 || spec != round(spec)) {
        stop_arg(arg, "is a single number, so it must be a whole number of breakpoints >= 1")
      }
      method <- sprintf("%d breakpoints", as.integer(spec))
    }
    fin <- x[is.finite(x)]
    breaks <- if (length(fin) == 0L) numeric(0) else
      unique(seq(min(fin), max(fin), length.out = spec))
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
  if (length(breaks) < 2L) {
    # All breakpoints coincide: match on the values (the cem package does).
    return(list(codes = match(x, unique(x)), breaks = breaks,
                method = paste(method, "(constant: values)")))
  }
  K <- length(breaks)
  codes <- bin_codes(x, breaks)
  out <- which(!is.na(x) & (codes == 0L | codes == K))
  if (length(out) > 0L) {
    warn_rows("data", v, out, sprintf(
      "lie outside the %s [%s, %s]; each side gets a bin of its own",
      if (given) "cutpoints" else "range of the finite values",
      format(breaks[1L]), format(breaks[K])),
      keys = x[out], key_name = "values",
      fix = sprintf("widen `cutpoints$%s` if they should share a bin.", v))
  }
  list(codes = codes, breaks = breaks, method = method)
}

# Bins of cut(x, breaks, include.lowest = TRUE): [b1, b2] is 1, (b2, b3] is
# 2, ...; below b1 is 0, above the last break is K; NA/NaN is K + 1.
bin_codes <- function(x, breaks) {
  K <- length(breaks)
  codes <- findInterval(x, breaks, left.open = TRUE, rightmost.closed = TRUE)
  codes[is.na(x)] <- K + 1L
  codes
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

# cem's default L1 breaks for a numeric variable
l1_default_breaks <- function(x) {
  fin <- x[is.finite(x)]
  if (length(fin) == 0L) return(NULL)
  k <- if (length(fin) > 1L) grDevices::nclass.scott(fin) else 1L
  pretty(range(fin), n = k, min.n = 1)
}

imbalance_fit <- function(vars, treat, weights, breaks, weighted) {
  n <- length(treat)
  vn <- names(vars)
  breaks <- check_named_list(breaks, "breaks", vn)
  used <- vector("list", length(vn))
  names(used) <- vn
  codes <- vector("list", length(vn))
  for (k in seq_along(vn)) {
    v <- vn[k]
    x <- vars[[v]]
    if (is.numeric(x) && !is.factor(x)) {
      b <- breaks[[v]]
      if (is.null(b)) {
        b <- l1_default_breaks(as.double(x))
      } else if (!is.numeric(b) || anyNA(b) || is.unsorted(b, strictly = TRUE)) {
        stop_arg(sprintf("breaks$%s", v),
                 "must be a strictly increasing numeric vector")
      }
      used[v] <- list(b)
      codes[[k]] <- if (length(b) >= 2L) bin_codes(as.double(x), b) else
        value_codes(x)
    } else {
      codes[[k]] <- value_codes(x)
    }
  }
  w <- if (is.null(weights)) rep(1, n) else weights
  pos <- w > 0
  if (!any(pos & treat == 1L) || !any(pos & treat == 0L)) {
    stop_arg("weights", sprintf(
      "are 0 for every %s row", if (!any(pos & treat == 1L)) "treated" else "control"),
      "give positive weight to some treated and some control rows.")
  }
  mat <- matrix(unlist(codes, use.names = FALSE), nrow = n, ncol = length(vn))
  storage.mode(mat) <- "integer"
  tot <- .Call(ffi_cem_l1, mat, treat, w)
  uni <- vapply(seq_along(vn), function(k) {
    .Call(ffi_cem_l1, mat[, k, drop = FALSE], treat, w)[["L1"]]
  }, numeric(1))
  is_num <- vapply(vars, function(x) is.numeric(x) && !is.factor(x), logical(1))
  univariate <- data.frame(variable = vn,
                           type = ifelse(is_num, "numeric", "categorical"),
                           L1 = uni, stringsAsFactors = FALSE)
  rownames(univariate) <- NULL
  structure(list(
    L1 = tot[["L1"]],
    LCS = tot[["LCS"]],
    n_cells = as.integer(tot[["n_cells"]]),
    n_cells_both = as.integer(tot[["n_cells_both"]]),
    univariate = univariate,
    means = balance_means(vars, treat, w),
    n_treated = sum(pos & treat == 1L),
    n_control = sum(pos & treat == 0L),
    share_treated_matched = if (weighted) {
      sum(pos & treat == 1L) / sum(treat == 1L)
    } else NA_real_,
    weighted = weighted,
    breaks = used
  ), class = "sfp_imbalance")
}

# Weighted means by arm; categorical variables: one row per value (share).
balance_means <- function(vars, treat, w) {
  t1 <- treat == 1L & w > 0
  t0 <- treat == 0L & w > 0
  wm <- function(x, idx) {
    ok <- idx & !is.na(x)
    if (!any(ok)) NA_real_ else sum(w[ok] * x[ok]) / sum(w[ok])
  }
  rows <- lapply(names(vars), function(v) {
    x <- vars[[v]]
    if (is.numeric(x) && !is.factor(x) || is.logical(x)) {
      x <- as.double(x)
      x[!is.finite(x)] <- NA
      data.frame(variable = v, term = v, treated = wm(x, t1),
                 control = wm(x, t0), stringsAsFactors = FALSE)
    } else {
      f <- as_category(if (is.factor(x)) x else as.character(x))
      if (anyNA(f)) f <- addNA(f, ifany = TRUE)
      lv <- levels(f)
      lab <- ifelse(is.na(lv), "(missing)", lv)
      codes <- as.integer(f)
      data.frame(variable = v, term = paste0(v, ": ", lab),
                 treated = vapply(seq_along(lv), function(j)
                   wm(as.double(codes == j), t1), numeric(1)),
                 control = vapply(seq_along(lv), function(j)
                   wm(as.double(codes == j), t0), numeric(1)),
                 stringsAsFactors = FALSE)
    }
  })
  out <- do.call(rbind, c(rows, list(make.row.names = FALSE)))
  if (is.null(out)) {
    out <- data.frame(variable = character(), term = character(),
                      treated = numeric(), control = numeric())
  }
  out$difference <- out$treated - out$control
  out
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
  cat(sprintf("L1 imbalance: %.4f before, %.4f after\n",
              x$imbalance$before$L1, x$imbalance$after$L1))
  invisible(x)
}

#' @export
#' @noRd
summary.sfp_cem <- function(object, ...) {
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
  univ <- data.frame(variable = b$univariate$variable,
                     L1_before = b$univariate$L1,
                     L1_after = a$univariate$L1,
                     stringsAsFactors = FALSE)
  structure(list(formula = object$formula, exact = object$exact,
                 normalise = object$normalise, overall = overall,
                 means = means, univariate = univ,
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
  cat("\nUnivariate L1:\n")
  print(zap_df(x$univariate, digits), digits = digits, row.names = FALSE)
  cat("\nCoarsening:\n")
  print(x$coarsening, row.names = FALSE)
  if (length(x$exact) > 0L) {
    cat("\nBy exact group:\n")
    print(x$by_exact, digits = digits, row.names = FALSE)
  }
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
    L1_before = x$imbalance$before$L1, L1_after = x$imbalance$after$L1,
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
  invisible(x)
}
