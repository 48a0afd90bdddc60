# Statistical disclosure control for every table that may leave a secure
# research environment: primary suppression of small counts, secondary
# suppression so no suppressed cell can be recovered from margins or from the
# differences between linked counts, optional rounding, and a log.

#' Disclosure control of tables of counts
#'
#' Masks every count below `threshold` (primary suppression), then masks
#' further cells (secondary suppression) so that no masked cell can be
#' recovered exactly from the published margins or from differences between
#' linked counts (the successive steps of an exclusion flow), masks every
#' statistic computed from a masked count, and optionally rounds the published
#' counts. The Family Valued protocol: outputs "will be checked for statistical
#' disclosure (e.g. mask cells with smaller than 10 observations)"; the Family
#' Safeguarding protocol: results "undergo checking for statistical
#' disclosure" before they leave the ONS Secure Research Service.
#'
#' @section Rules:
#' * **Primary.** A count is masked when it is below `threshold`; zeros too
#'   unless `zeros = FALSE` (a zero is a count below 10 and can disclose an
#'   attribute of a whole group).
#' * **Margins.** A row is a margin when one of its label (non-numeric) columns
#'   holds a label in `margins` (default "Total" and "All", any case): it is
#'   the sum of the rows that differ from it in that column only. A count
#'   column named in `margins` is the sum of the row's other count columns.
#' * **Secondary.** Every additive relation (a margin and its members; an
#'   exclusion-flow step and its parts; the same count published twice) that
#'   holds exactly one masked cell gets a second masked cell: the smallest
#'   published member, a margin only when no member is left. The pattern is
#'   then audited exactly: a masked cell is recoverable by linear combination of
#'   the published relations when the unit vector of that cell lies in the row
#'   space of the relations restricted to the masked cells (checked by a
#'   singular value decomposition); each such cell gets one more partner until
#'   none is recoverable.
#' * **Derived statistics.** Every other numeric column of a row (percentages,
#'   means, rates) is masked when a count of that row it is computed from is
#'   masked; `derived` names the count each depends on (default: all the row's
#'   counts).
#' * **Rounding.** With `round_to = 5`, published counts are rounded to the
#'   nearest multiple of 5 after suppression (margins are rounded on their own,
#'   so they need not add up).
#'
#' @section Compared with sdcTable:
#' `sdcTable::primarySuppression(type = "freq", maxN = 9)` marks the same
#' primary cells, except zeros, which it leaves published by default
#' (`zeros = FALSE` here does the same). Its `"SIMPLEHEURISTIC"` also gives
#' every relation with one masked cell a second one, choosing by cell weight
#' (frequency), and then attacks each primary cell with linear programmes
#' (`solve_attackerprobs = TRUE`), adding cells until no primary cell's
#' feasible interval is too narrow. `disclose()` keeps the first step, with
#' margins chosen last, and replaces the linear programmes by an exact linear
#' algebra audit: it catches every exactly recoverable cell (the case in
#' sdcTable's own tests that the pairwise rule misses is one of ours), but
#' not narrow intervals implied by the non-negativity of counts, and it does
#' not minimise the information lost as sdcTable's `"OPT"` and `"HITAS"`
#' methods do. Where a checker asks for protection intervals, export the
#' masked pattern and run `sdcTable` on it. On tables of authorities by arms
#' with both margins the two mask the same cells (tested where `sdcTable` is
#' installed).
#'
#' @section Subsetting, binding and editing a disclosed table:
#' * `x[i, j]`, `head()`, `tail()` and `subset()` return an `sfp_disclosed`
#'   table of the cells kept, each with its mask and log entry (rows
#'   renumbered), so masked cells still print `[c]`. A result that is not a
#'   data frame (`x[, "n"]`, `x[["n"]]`, `x$n`, `x[2, , drop = TRUE]`) is the
#'   plain values, in which a masked cell is `NA`: the masked value is never
#'   in the table, so no subset can reach it.
#' * `rbind()` of disclosed tables with the same columns stacks their masks
#'   and logs; `cbind()` of disclosed tables with the same rows and distinct
#'   column names puts them side by side. The result is disclosed at the
#'   lowest of their thresholds; tables rounded differently are refused. Each
#'   table was protected on its own: totals or counts linked across the
#'   tables (a grand total of both) are protected only when the original
#'   tables are bound first and the result disclosed.
#' * A table that has not been through `disclose()` never becomes disclosed:
#'   `rbind()` or `cbind()` of a disclosed table with a plain data frame or a
#'   vector is an error (disclose it first), except that R hands
#'   `rbind(plain, disclosed)` (a plain table first) to the data frame
#'   method, whose result is a plain data frame; assigning into a disclosed
#'   table (`x$col <- v`, `x[i, j] <- v`, `x[[col]] <- v`) returns a plain data
#'   frame too. Either prints masked cells as `NA` and passes through
#'   `disclose()` again before release. Renaming columns (`names(x)[2] <-
#'   "n"`) keeps the table disclosed and renames them in the mask and log.
#'
#' @param x A data frame of counts (long, with label columns, or wide, with a
#'   count column per category), a matrix or `table` of counts, an exclusion
#'   flow (columns `stage`, `step`, `n`, and `la`, `arm`), or one of the
#'   package's objects: an `sfp_cohort` (its exclusion flow), a summary of an
#'   `sfp_data`, an `sfp_cem` or its summary, an `sfp_analysis` (every table),
#'   or a list of tables.
#' @param threshold Smallest count that may be published (10, the Family
#'   Valued protocol's rule).
#' @param counts Names of the count columns. Default: whole-number numeric
#'   columns, except those whose names say they count clusters, authorities,
#'   periods, strata or cells (units, not children) or hold estimates,
#'   p-values, degrees of freedom, years, codes, indices, ranks, distances,
#'   numbers of draws or imputations.
#' @param margins Labels of margin rows and columns.
#' @param derived `NULL` (every numeric non-count column depends on all the
#'   row's counts), or a named list: derived column = the count column(s) it is
#'   computed from.
#' @param round_to `NULL` (no rounding) or the base to round published counts
#'   to (5).
#' @param zeros Mask zero counts (`TRUE`, the protocol's "smaller than 10").
#' @param ... Passed to the data frame method.
#' @return For a table, an `sfp_disclosed` data frame: the table with masked
#'   cells set to `NA` and the attributes `suppressed` (a logical matrix of the
#'   table's shape) and `disclosure` (threshold, rounding and `log`, a data
#'   frame of every masked cell: `row`, `label`, `column`, `rule` (primary,
#'   secondary or derived) and `reason`; the log never holds a masked value).
#'   Printing shows masked cells as `[c]`; [disclosure_log()] returns the log.
#'   For objects holding several tables, an `sfp_disclosed_list`.
#' @examples
#' tab <- data.frame(la = c("A", "B", "C", "Total"),
#'                   control = c(25L, 4L, 30L, 59L),
#'                   treated = c(22L, 18L, 35L, 75L),
#'                   Total = c(47L, 22L, 65L, 134L))
#' d <- disclose(tab)
#' d
#' disclosure_log(d)
#' disclose(tab, round_to = 5)
#' @export
disclose <- function(x, threshold = 10, ...) {
  check_threshold_(threshold)
  UseMethod("disclose")
}

#' @export
disclose.default <- function(x, threshold = 10, ...) {
  stop_arg("x", sprintf("is a %s, which disclose() does not know",
                        paste(class(x), collapse = "/")),
           "pass a data frame of counts, a matrix or table of counts, or an sfpceval object.")
}

#' @rdname disclose
#' @export
disclose.data.frame <- function(x, threshold = 10, counts = NULL,
                                margins = c("Total", "All"), derived = NULL,
                                round_to = NULL, zeros = TRUE, ...) {
  if (!isTRUE(zeros) && !isFALSE(zeros)) {
    stop_arg("zeros", sprintf("must be TRUE or FALSE, not %s", describe_value(zeros)),
             "use zeros = TRUE (the protocol's rule: zero is smaller than 10).")
  }
  if (!is.character(margins) || anyNA(margins)) {
    stop_arg("margins", sprintf("must be the labels of margin rows and columns, not %s",
                                describe_value(margins)),
             "give e.g. margins = c(\"Total\", \"All\"), or character() for none.")
  }
  if (!is.null(counts) && (!is.character(counts) || anyNA(counts))) {
    stop_arg("counts", sprintf("must be column names, not %s", describe_value(counts)),
             sprintf("choose among %s.", paste(names(x), collapse = ", ")))
  }
  if (is.null(counts)) {
    if (is_flow_(x)) return(disclose_flow_(x, threshold, round_to = round_to, zeros = zeros))
    if (is_table1_(x)) return(disclose_table1_(x, threshold, round_to = round_to, zeros = zeros))
    if (is_cem_table_(x)) return(disclose_cem_table_(x, threshold, round_to = round_to, zeros = zeros))
  }
  disclose_table_(x, threshold, counts = counts, margins = margins,
                  derived = derived, round_to = round_to, zeros = zeros)
}

#' @export
disclose.matrix <- function(x, threshold = 10, ...) {
  disclose(matrix_to_df_(x), threshold = threshold, ...)
}

#' @export
disclose.table <- function(x, threshold = 10, ...) {
  if (length(dim(x)) == 2L) return(disclose.matrix(unclass(x), threshold, ...))
  df <- as.data.frame(x, stringsAsFactors = FALSE)
  disclose(df, threshold = threshold, counts = "Freq", ...)
}

#' @export
disclose.sfp_cohort <- function(x, threshold = 10, ...) {
  disclose(exclusion_flow(x), threshold = threshold, ...)
}

#' @export
disclose.sfp_cem <- function(x, threshold = 10, ...) {
  disclose.matrix(x$n, threshold = threshold, ...)
}

#' @export
disclose.summary.sfp_cem <- function(x, threshold = 10, ...) {
  ov <- data.frame(matching = rownames(x$overall), x$overall, row.names = NULL,
                   stringsAsFactors = FALSE)
  out <- list(overall = disclose_table_(ov, threshold,
                                        counts = c("treated", "control"),
                                        derived = list(share_treated_matched = "treated",
                                                       L1 = c("treated", "control"),
                                                       LCS = c("treated", "control")),
                                        ...),
              means = disclose_table_(x$means, threshold, counts = character()))
  if (!is.null(x$by_exact)) out$by_exact <- disclose(x$by_exact, threshold, ...)
  new_disclosed_list_(out)
}

#' @export
disclose.summary.sfp_data <- function(x, threshold = 10, ...) {
  add_total <- function(df, key) {
    if (is.null(df) || !nrow(df)) return(df)
    num <- vapply(df, is.numeric, TRUE)
    tot <- df[1L, , drop = FALSE]
    tot[num] <- lapply(df[num], function(v) if (anyNA(v)) NA else sum(v))
    tot[[key]] <- "All"
    rbind(df, tot)
  }
  out <- list()
  if (!is.null(x$per_la)) out$per_la <- disclose(add_total(x$per_la, "la_code"), threshold, ...)
  if (NROW(x$per_year)) out$per_year <- disclose(add_total(x$per_year, "year"), threshold, ...)
  new_disclosed_list_(out, withheld = c(
    "date ranges (the first and last dates are single records' dates)",
    "conversions and problems (they may describe single records)"))
}

#' @export
disclose.list <- function(x, threshold = 10, ...) {
  keep <- vapply(x, function(t) !is.null(t), TRUE)
  new_disclosed_list_(lapply(x[keep], disclose, threshold = threshold, ...))
}

#' @export
disclose.sfp_disclosed <- function(x, threshold = 10, ...) {
  prev <- attr(x, "disclosure")$threshold
  if (threshold > prev) {
    stop_arg("threshold", sprintf("(%s) is above the one this table was disclosed at (%s)",
                                  threshold, prev),
             "disclose the original table again.")
  }
  x
}

#' @export
disclose.sfp_disclosed_list <- function(x, threshold = 10, ...) {
  x[] <- lapply(x, disclose, threshold = threshold)
  x
}

#' @export
disclose.sfp_analysis <- function(x, threshold = 10, ...) {
  tabs <- x$tables
  tabs <- tabs[!vapply(tabs, is.null, TRUE)]
  res <- as.data.frame(x$results %||% data.frame())
  mt <- tabs$missing
  tabs$missing <- NULL
  out <- c(list(results = disclose_table_(res, threshold, counts = count_cols_(res))),
           lapply(tabs, disclose, threshold = threshold, ...))
  if (!is.null(mt)) out$missing <- disclose_missing_(mt, tabs$table1, threshold)
  new_disclosed_list_(out)
}

#' The log of a disclosure-controlled table
#'
#' @param x An `sfp_disclosed` table or an `sfp_disclosed_list` from
#'   [disclose()].
#' @return A data frame, one row per masked cell: (`table`,) `row`, `label`,
#'   `column`, `rule` and `reason`. It holds no masked value, but it says
#'   which masks are primary: keep it with the checker, publish only the
#'   tables.
#' @examples
#' disclosure_log(disclose(data.frame(g = c("a", "b", "All"), n = c(3L, 40L, 43L))))
#' @export
disclosure_log <- function(x) {
  if (inherits(x, "sfp_disclosed_list")) {
    logs <- lapply(names(x), function(nm) {
      l <- disclosure_log(x[[nm]])
      if (nrow(l)) cbind(table = nm, l, stringsAsFactors = FALSE) else NULL
    })
    logs <- logs[!vapply(logs, is.null, TRUE)]
    if (!length(logs)) return(cbind(table = character(), empty_log_()))
    return(do.call(rbind, logs))
  }
  if (!inherits(x, "sfp_disclosed")) {
    stop_arg("x", "must come from disclose()", "run disclose() on the table first.")
  }
  attr(x, "disclosure")$log
}

# ---- the table engine --------------------------------------------------------

check_threshold_ <- function(threshold) {
  if (!is.numeric(threshold) || length(threshold) != 1L || is.na(threshold) ||
      threshold < 1) {
    stop_arg("threshold", sprintf("must be one number, 1 or more, not %s", describe_value(threshold)),
             "use threshold = 10, the protocol's rule.")
  }
}

is_flow_ <- function(x) all(c("stage", "step", "n") %in% names(x))

# Columns whose whole numbers count units that are not children, or are not
# counts at all.
.not_counts <- paste0("cluster|(^|_)las?($|_)|authorit|period|strat|cell|step|year|",
                      "estimate|std|conf|p\\.|^p_|p_value|adjusted|statistic|",
                      "^df|_df$|code|index|^id$|_id$|term|^l1$|^lcs$|icc|rho|mdes|",
                      "power|alpha|ratio|effect|months|days|share|pct|percent|prop|rate|",
                      "rank|order|quarter|distance|iteration|draws|allocation|seed|^b$|imput")

count_cols_ <- function(x) {
  nm <- names(x)
  whole <- vapply(x, function(v) {
    is.numeric(v) && !all(is.na(v)) && all(v[!is.na(v)] == round(v[!is.na(v)]))
  }, TRUE)
  named <- !grepl(.not_counts, nm, ignore.case = TRUE)
  # a whole-number column named like a count but holding a negative value
  # would silently not be taken as counts, and its small values published
  for (j in which(whole & named)) {
    neg <- which(!is.na(x[[j]]) & x[[j]] < 0)
    if (length(neg)) {
      stop_rows("x", nm[j], neg, "are negative, so the column cannot be taken as counts (its small values would be published)",
                "correct the counts, or name the count columns in `counts =` if this column is not one.")
    }
  }
  nm[whole & named]
}

matrix_to_df_ <- function(x) {
  if (!is.numeric(x)) stop_arg("x", "must be a numeric matrix of counts", "give counts, or a data frame with label columns.")
  rn <- rownames(x) %||% as.character(seq_len(nrow(x)))
  cn <- colnames(x) %||% paste0("V", seq_len(ncol(x)))
  df <- data.frame(row = rn, stringsAsFactors = FALSE)
  for (j in seq_along(cn)) df[[cn[j]]] <- x[, j]
  df
}

empty_log_ <- function() {
  data.frame(row = integer(), label = character(), column = character(),
             rule = character(), reason = character(), stringsAsFactors = FALSE)
}

# Additive relations as (cells, coefficients): sum(coef * value[cells]) == 0.
relation_ <- function(total, members) list(cells = c(total, members),
                                           coef = c(-1, rep(1, length(members))))

# Margin rows: for each label column, the row labelled as a margin there
# equals the sum of the rows that differ from it in that column only.
margin_relations_ <- function(x, labels, count_cols, margins, cell_of) {
  rel <- list()
  is_m <- function(v) tolower(as.character(v)) %in% tolower(margins)
  for (d in labels) {
    others <- setdiff(labels, d)
    key <- if (length(others)) do.call(paste, c(lapply(x[others], as.character), sep = "\r"))
           else rep("", nrow(x))
    m <- is_m(x[[d]])
    for (k in unique(key[m])) {
      tot <- which(m & key == k)
      mem <- which(!m & key == k)
      if (length(tot) != 1L || !length(mem)) next
      for (cc in count_cols) rel[[length(rel) + 1L]] <- relation_(cell_of(tot, cc), cell_of(mem, cc))
    }
  }
  tot_cols <- count_cols[is_m(count_cols)]
  if (length(tot_cols) == 1L && length(count_cols) > 1L) {
    mem_cols <- setdiff(count_cols, tot_cols)
    for (i in seq_len(nrow(x))) {
      rel[[length(rel) + 1L]] <- relation_(cell_of(i, tot_cols), cell_of(i, mem_cols))
    }
  }
  rel
}

disclose_table_ <- function(x, threshold, counts = NULL, margins = c("Total", "All"),
                            derived = NULL, round_to = NULL, zeros = TRUE,
                            relations = NULL, hidden = numeric(), ...) {
  if (!is.data.frame(x)) stop_arg("x", "must be a data frame", "give a data frame of counts.")
  x <- as.data.frame(x, stringsAsFactors = FALSE)
  counts <- counts %||% count_cols_(x)
  bad <- setdiff(counts, names(x))
  if (length(bad)) {
    stop_arg("counts", sprintf("names column(s) not in the table: %s", paste(bad, collapse = ", ")),
             paste0("choose among ", paste(names(x), collapse = ", "), "."))
  }
  for (cc in counts) {
    v <- x[[cc]]
    if (!is.numeric(v)) {
      stop_arg("counts", sprintf("names column `%s`, which holds %s, not numbers", cc, class(v)[1]),
               "name only count columns, or convert the column with as.numeric() first.")
    }
    if (any(v[!is.na(v)] < 0)) {
      stop_rows("x", cc, which(!is.na(v) & v < 0), "must hold counts (numbers >= 0)",
                "name the count columns in `counts`.")
    }
  }
  if (!is.null(round_to) && (!is.numeric(round_to) || length(round_to) != 1L || !is.finite(round_to) ||
                             round_to < 1 || round_to != round(round_to))) {
    stop_arg("round_to", sprintf("must be NULL or one whole number such as 5, not %s", describe_value(round_to)),
             "use round_to = 5 (the statistical-disclosure guidance) or NULL.")
  }
  labels <- names(x)[!vapply(x, is.numeric, TRUE)]
  num_other <- setdiff(names(x)[vapply(x, is.numeric, TRUE)], counts)
  if (is.null(derived)) {
    derived <- stats::setNames(rep(list(counts), length(num_other)), num_other)
  }
  bad <- setdiff(c(names(derived), unlist(derived)), names(x))
  if (length(bad)) stop_arg("derived", sprintf("names column(s) not in the table: %s",
                                                paste(bad, collapse = ", ")),
                            paste0("choose among ", paste(names(x), collapse = ", "), "."))

  n <- nrow(x)
  cell_of <- function(i, cc) (match(cc, counts) - 1L) * n + i
  # Hidden cells are counts the table implies without showing (the other
  # level of a 0/1 covariate, the unmatched children): they are protected
  # like published ones, except that an implied zero is not masked.
  hidden_of <- function(k) n * length(counts) + k
  values <- c(unlist(lapply(counts, function(cc) as.numeric(x[[cc]])), use.names = FALSE),
              as.numeric(hidden))
  if (is.function(relations)) relations <- relations(cell_of, hidden_of)
  rel <- c(margin_relations_(x, labels, counts, margins, cell_of), relations)
  # a relation with a missing count cannot be used (nor published as exact)
  rel <- Filter(function(r) !anyNA(values[r$cells]), rel)

  is_hidden <- seq_along(values) > n * length(counts)
  primary <- !is.na(values) & values < threshold & (zeros & !is_hidden | values > 0)
  is_total <- rep(FALSE, length(values))
  for (r in rel) is_total[r$cells[r$coef < 0]] <- TRUE
  supp <- secondary_suppression_(values, rel, primary, is_total)

  label_of <- if (length(labels)) {
    do.call(paste, c(lapply(x[labels], as.character), sep = " / "))
  } else as.character(seq_len(n))
  sup_mat <- matrix(FALSE, n, ncol(x), dimnames = list(NULL, names(x)))
  log <- list()
  add_log <- function(i, col, rule, reason) {
    if (length(i)) log[[length(log) + 1L]] <<- data.frame(
      row = i, label = label_of[i], column = col, rule = rule, reason = reason,
      stringsAsFactors = FALSE)
  }
  for (j in seq_along(counts)) {
    idx <- (j - 1L) * n + seq_len(n)
    cc <- counts[j]
    sup_mat[, cc] <- supp[idx]
    add_log(which(primary[idx]), cc, "primary",
            sprintf("count below %s", format(threshold)))
    add_log(which(supp[idx] & !primary[idx]), cc, "secondary",
            "protects a masked cell from recovery through totals or linked counts")
    v <- x[[cc]]
    v[supp[idx]] <- NA
    if (!is.null(round_to)) v <- floor(v / round_to + 0.5) * round_to
    x[[cc]] <- v
  }
  for (dcol in names(derived)) {
    hit <- Reduce(`|`, lapply(derived[[dcol]], function(cc) {
      if (cc %in% counts) sup_mat[, cc] else rep(FALSE, n)
    }), rep(FALSE, n)) & !is.na(x[[dcol]])
    sup_mat[, dcol] <- sup_mat[, dcol] | hit
    add_log(which(hit), dcol, "derived",
            sprintf("computed from a masked count (%s)", paste(derived[[dcol]], collapse = ", ")))
    x[[dcol]][hit] <- NA
  }
  log <- if (length(log)) do.call(rbind, log) else empty_log_()
  log <- log[order(log$row, match(log$column, names(x))), , drop = FALSE]
  rownames(log) <- NULL
  attr(x, "suppressed") <- sup_mat
  attr(x, "disclosure") <- list(threshold = threshold, round_to = round_to,
                                counts = counts, log = log)
  class(x) <- c("sfp_disclosed", "data.frame")
  x
}

# Secondary suppression: pairs every relation holding one masked cell, then
# audits the pattern exactly (row space of the relations on the masked cells)
# and adds partners until no masked cell is determined.
secondary_suppression_ <- function(values, rel, supp, is_total) {
  if (!length(rel) || !any(supp)) return(supp)
  pick <- function(cand) {
    cand <- cand[!supp[cand] & !is.na(values[cand])]
    if (!length(cand)) return(NA_integer_)
    cand[order(is_total[cand], values[cand], cand)][1L]
  }
  for (iter in seq_len(length(values) + 1L)) {
    changed <- FALSE
    for (r in rel) {
      if (sum(supp[r$cells]) == 1L) {
        p <- pick(r$cells)
        if (!is.na(p)) {
          supp[p] <- TRUE
          changed <- TRUE
        }
      }
    }
    if (changed) next
    det <- determined_cells_(rel, supp)
    if (!length(det)) return(supp)
    # one more partner for the first determined cell, from its relations,
    # else from the relations of the masked cells it is linked to
    touch <- Filter(function(r) det[1L] %in% r$cells, rel)
    p <- pick(unlist(lapply(touch, `[[`, "cells")))
    if (is.na(p)) {
      near <- unique(unlist(lapply(touch, `[[`, "cells")))
      p <- pick(unlist(lapply(Filter(function(r) any(r$cells %in% near), rel), `[[`, "cells")))
    }
    if (is.na(p)) {
      warning("disclose(): could not protect every masked cell from recovery; ",
              "withhold the table or publish it with fewer margins.", call. = FALSE)
      supp[unique(unlist(lapply(touch, `[[`, "cells")))] <- TRUE
      return(supp)
    }
    supp[p] <- TRUE
  }
  supp
}

# Masked cells whose value follows exactly from the published relations:
# e_j lies in the row space of A restricted to the masked cells.
determined_cells_ <- function(rel, supp) {
  s <- which(supp)
  rel <- Filter(function(r) any(supp[r$cells]), rel)
  if (!length(rel)) return(integer())
  A <- matrix(0, length(rel), length(s))
  for (i in seq_along(rel)) {
    on <- supp[rel[[i]]$cells]
    A[i, match(rel[[i]]$cells[on], s)] <- rel[[i]]$coef[on]
  }
  sv <- svd(A, nu = 0L, nv = ncol(A))
  rank <- sum(sv$d > max(dim(A)) * .Machine$double.eps * max(sv$d, 1))
  if (rank == 0L) return(integer())
  if (rank == ncol(A)) return(s)
  N <- sv$v[, seq.int(rank + 1L, ncol(A)), drop = FALSE]
  s[rowSums(N^2) < 1e-10]
}

# ---- Table 1, CEM and missingness tables ---------------------------------------

# Table 1 as table1() lays it out: one row per covariate level, counts per arm
# in n_control / n_treated, a "children" row with the arm sizes. Within each
# covariate and arm, the rows add up to the arm size, with the level a 0/1
# covariate does not show as a hidden cell; percentages, means and SDs go
# with their arm's count.
is_table1_ <- function(x) {
  all(c("variable", "level", "statistic", "n_control", "n_treated") %in% names(x))
}

disclose_table1_ <- function(x, threshold, round_to = NULL, zeros = TRUE) {
  arms <- c("n_control", "n_treated")
  tot <- which(x$variable == "children")
  spec <- list()
  if (length(tot) == 1L) {
    for (v in setdiff(unique(x$variable), "children")) {
      rows <- which(x$variable == v)
      for (a in arms) {
        rest <- x[[a]][tot] - sum(x[[a]][rows])
        spec[[length(spec) + 1L]] <- list(rows = rows, arm = a,
                                          rest = if (is.na(rest) || rest < 0) NA_real_ else rest)
      }
    }
  }
  has_hidden <- vapply(spec, function(s) isTRUE(s$rest > 0), TRUE)
  hidden <- vapply(spec[has_hidden], `[[`, 0, "rest")
  relations <- function(cell_of, hidden_of) {
    k <- cumsum(has_hidden)
    lapply(seq_along(spec), function(i) {
      s <- spec[[i]]
      if (is.na(s$rest)) return(list(cells = NA_integer_, coef = 0))
      relation_(cell_of(tot, s$arm), c(cell_of(s$rows, s$arm), if (has_hidden[i]) hidden_of(k[i])))
    })
  }
  derived <- list(value_control = "n_control", sd_control = "n_control",
                  value_treated = "n_treated", sd_treated = "n_treated")
  derived <- derived[names(derived) %in% names(x)]
  disclose_table_(x, threshold, counts = arms, margins = character(), derived = derived,
                  round_to = round_to, zeros = zeros, relations = relations, hidden = hidden)
}

# The CEM table of an analysis: per model, children per arm before
# (n_treated, n_control) and after matching (matched_*); the unmatched are
# hidden cells.
is_cem_table_ <- function(x) {
  all(c("n_treated", "n_control", "matched_treated", "matched_control") %in% names(x))
}

disclose_cem_table_ <- function(x, threshold, round_to = NULL, zeros = TRUE) {
  pairs <- list(c("n_treated", "matched_treated"), c("n_control", "matched_control"))
  counts <- c("n_treated", "n_control", "matched_treated", "matched_control")
  spec <- list()
  for (p in pairs) {
    for (i in seq_len(nrow(x))) {
      spec[[length(spec) + 1L]] <- list(i = i, total = p[1], part = p[2],
                                        rest = x[[p[1]]][i] - x[[p[2]]][i])
    }
  }
  has_hidden <- vapply(spec, function(s) isTRUE(s$rest > 0), TRUE)
  hidden <- vapply(spec[has_hidden], `[[`, 0, "rest")
  relations <- function(cell_of, hidden_of) {
    k <- cumsum(has_hidden)
    lapply(seq_along(spec), function(j) {
      s <- spec[[j]]
      relation_(cell_of(s$i, s$total), c(cell_of(s$i, s$part), if (has_hidden[j]) hidden_of(k[j])))
    })
  }
  other <- setdiff(names(x)[vapply(x, is.numeric, TRUE)], counts)
  derived <- stats::setNames(rep(list(counts), length(other)), other)
  derived <- derived[!grepl("^strata", names(derived))]
  disclose_table_(x, threshold, counts = counts, margins = character(), derived = derived,
                  round_to = round_to, zeros = zeros, relations = relations, hidden = hidden)
}

# The missingness table gives shares; with Table 1's arm sizes they are
# counts (share x arm size), so they are disclosed as counts per arm with
# their total and masked with them.
disclose_missing_ <- function(mt, t1, threshold) {
  need <- c("share_missing", "share_missing_control", "share_missing_treated")
  if (!all(need %in% names(mt)) || is.null(t1) || !is_table1_(t1) ||
      sum(t1$variable == "children") != 1L) {
    return(disclose(mt, threshold))
  }
  n_c <- t1$n_control[t1$variable == "children"]
  n_t <- t1$n_treated[t1$variable == "children"]
  cnt <- data.frame(key = seq_len(nrow(mt)),
                    control = round(mt$share_missing_control * n_c),
                    treated = round(mt$share_missing_treated * n_t))
  cnt$Total <- cnt$control + cnt$treated
  cnt$key <- as.character(cnt$key)
  # a zero here says a covariate is complete: a fact about the records, not
  # about any child, so it is published
  d <- disclose_table_(cnt, threshold, counts = c("control", "treated", "Total"), zeros = FALSE)
  sup <- attr(d, "suppressed")
  out <- mt
  mask <- matrix(FALSE, nrow(mt), ncol(mt), dimnames = list(NULL, names(mt)))
  mask[, "share_missing_control"] <- sup[, "control"]
  mask[, "share_missing_treated"] <- sup[, "treated"]
  mask[, "share_missing"] <- sup[, "Total"]
  if ("p_arm" %in% names(mt)) mask[, "p_arm"] <- sup[, "control"] | sup[, "treated"]
  for (nm in colnames(mask)) out[[nm]][mask[, nm]] <- NA
  lab <- as.character(mt[[1]])
  log <- do.call(rbind, c(list(empty_log_()), lapply(colnames(mask), function(nm) {
    i <- which(mask[, nm])
    if (!length(i)) return(NULL)
    data.frame(row = i, label = lab[i], column = nm, rule = "derived",
               reason = "share x arm size of Table 1 is a masked count", stringsAsFactors = FALSE)
  })))
  attr(out, "suppressed") <- mask
  attr(out, "disclosure") <- list(threshold = threshold, round_to = NULL,
                                  counts = character(), log = log)
  class(out) <- c("sfp_disclosed", "data.frame")
  out
}
# ---- exclusion flows -------------------------------------------------------

# An exclusion flow is published with its totals over authorities and arms;
# its relations: within each stage (and LA and arm) the first step is the sum
# of the others; the cohort of every outcome stage is the population's cohort;
# each step's total is the sum over authorities and arms.
disclose_flow_ <- function(flow, threshold, round_to = NULL, zeros = TRUE) {
  flow <- as.data.frame(flow, stringsAsFactors = FALSE)
  class(flow) <- "data.frame"
  by_cell <- all(c("la", "arm") %in% names(flow))
  if (by_cell) {
    key <- paste(flow$stage, flow$step, sep = "\r")
    tot <- tapply(flow$n, factor(key, levels = unique(key)), sum)
    first <- !duplicated(key)
    all_rows <- data.frame(stage = flow$stage[first], step = flow$step[first],
                           la = "All", arm = "All", n = as.integer(tot),
                           stringsAsFactors = FALSE)
    flow <- rbind(flow[c("stage", "step", "la", "arm", "n")], all_rows)
    group <- paste(flow$la, flow$arm, sep = "\r")
  } else {
    group <- rep("", nrow(flow))
  }
  rel <- list()
  for (g in unique(group)) {
    in_g <- group == g
    for (st in unique(flow$stage[in_g])) {
      # "of which" steps are sub-counts of the step before them, not summands
      rows <- which(in_g & flow$stage == st & !startsWith(flow$step, "of which"))
      if (length(rows) > 1L) rel[[length(rel) + 1L]] <- relation_(rows[1L], rows[-1L])
    }
    coh <- which(in_g & flow$step == "cohort")
    pop <- coh[flow$stage[coh] == "population"]
    if (length(pop) == 1L) {
      for (o in setdiff(coh, pop)) rel[[length(rel) + 1L]] <- relation_(pop, o)
    }
  }
  if (by_cell) {
    for (a in which(flow$la == "All")) {
      mem <- which(flow$la != "All" & flow$stage == flow$stage[a] & flow$step == flow$step[a])
      rel[[length(rel) + 1L]] <- relation_(a, mem)
    }
  }
  disclose_table_(flow, threshold, counts = "n", margins = character(),
                  derived = list(), round_to = round_to, zeros = zeros, relations = rel)
}

# ---- printing and writing ------------------------------------------------------

# The table as published: masked cells shown as "[c]" (the Government
# Statistical Service's mark for confidential).
published_table_ <- function(x, mark = "[c]", digits = NULL) {
  sup <- attr(x, "suppressed")
  out <- as.data.frame(lapply(seq_along(x), function(j) {
    v <- x[[j]]
    s <- if (is.numeric(v)) format_num_(v, digits) else as.character(v)
    s[is.na(v) & !sup[, j]] <- ""
    s[sup[, j]] <- mark
    s
  }), stringsAsFactors = FALSE)
  names(out) <- names(x)
  out
}

# Whole numbers as integers; others in full (CSV) or to `digits` significant
# digits (printing).
format_num_ <- function(v, digits = NULL) {
  out <- rep(NA_character_, length(v))
  ok <- !is.na(v)
  whole <- ok & is.finite(v) & v == round(v)
  out[whole] <- format(v[whole], big.mark = "", scientific = FALSE, trim = TRUE)
  frac <- ok & !whole
  out[frac] <- as.character(if (is.null(digits)) v[frac] else signif(v[frac], digits))
  out
}

disclosure_summary_ <- function(x) {
  d <- attr(x, "disclosure")
  log <- d$log
  sprintf("Disclosure control: counts below %s masked [c] (%d primary, %d secondary, %d derived)%s.",
          format(d$threshold), sum(log$rule == "primary"), sum(log$rule == "secondary"),
          sum(log$rule == "derived"),
          if (!is.null(d$round_to)) sprintf("; published counts rounded to %s", d$round_to) else "")
}

#' @export
print.sfp_disclosed <- function(x, ...) {
  print(published_table_(x, digits = 4), row.names = FALSE, right = TRUE)
  cat(disclosure_summary_(x), "\n")
  invisible(x)
}

# Subsetting keeps the mask: the same `[` is applied to the cells' positions,
# so the kept cells keep their `suppressed` flag and log entries (renumbered).
# Masked values are NA in the data itself, so no subset can reach them; a
# result that is not a data frame (one column, drop = TRUE) is that column.
#' @export
`[.sfp_disclosed` <- function(x, i, j, drop) {
  mi <- missing(i)
  mj <- missing(j)
  md <- missing(drop)
  n_idx <- nargs() - !md
  sub <- function(d) {
    if (n_idx < 3L) return(if (mi) d[] else d[i])
    if (md) {
      if (mi && mj) d[, ] else if (mi) d[, j] else if (mj) d[i, ] else d[i, j]
    } else {
      if (mi && mj) d[, , drop = drop] else if (mi) d[, j, drop = drop] else
        if (mj) d[i, , drop = drop] else d[i, j, drop = drop]
    }
  }
  plain <- x
  attr(plain, "suppressed") <- NULL
  attr(plain, "disclosure") <- NULL
  class(plain) <- "data.frame"
  out <- sub(plain)
  if (!is.data.frame(out)) return(out)
  n <- nrow(x)
  cells <- plain
  cells[] <- lapply(seq_along(x), function(k) (k - 1L) * n + seq_len(n))
  cell <- as.vector(as.matrix(sub(cells)))
  if (!length(cell)) cell <- integer()
  sup <- attr(x, "suppressed")
  out_sup <- matrix(sup[cell], nrow(out), ncol(out), dimnames = list(NULL, names(out)))
  dis <- attr(x, "disclosure")
  log <- dis$log
  if (nrow(log)) {
    log_cell <- (match(log$column, names(x)) - 1L) * n + log$row
    hit <- match(cell, log_cell)
    k <- which(!is.na(hit))
    new <- log[hit[k], , drop = FALSE]
    new$row <- as.integer((k - 1L) %% nrow(out) + 1L)
    new$column <- names(out)[(k - 1L) %/% nrow(out) + 1L]
    new <- new[order(new$row, match(new$column, names(out))), , drop = FALSE]
    rownames(new) <- NULL
    dis$log <- new
  }
  attr(out, "suppressed") <- out_sup
  attr(out, "disclosure") <- dis
  class(out) <- c("sfp_disclosed", "data.frame")
  out
}

# Binding disclosed tables keeps each cell's mask and log entry: rbind()
# stacks the masks (columns matched by name, as rbind.data.frame() matches
# them) and renumbers the log's rows; cbind() puts the masks side by side.
# Every argument must be an sfp_disclosed table: a plain table would enter a
# "disclosed" table without disclosure control, so it is an error (R picks
# the data frame method when a plain data frame comes first: the result is
# then a plain data frame, never an sfp_disclosed one). The result is
# disclosed at the lowest of the tables' thresholds; tables rounded
# differently are refused.
#' @export
rbind.sfp_disclosed <- function(..., deparse.level = 1) {
  args <- list(...)
  # rbind.data.frame()'s own arguments are not tables
  args <- args[!(names(args) %||% rep("", length(args))) %in%
                 c("make.row.names", "stringsAsFactors", "factor.exclude")]
  args <- disclosed_args_(args, "rbind")
  if (!length(args)) return(NULL)
  nm <- names(args[[1L]])
  for (k in seq_along(args)[-1L]) {
    if (length(names(args[[k]])) != length(nm) || !setequal(names(args[[k]]), nm)) {
      stop_arg("...", sprintf("(table %d of rbind()) has columns %s, not those of the first table (%s)",
                              k, paste(names(args[[k]]), collapse = ", "), paste(nm, collapse = ", ")),
               "stack tables with the same columns.")
    }
  }
  out <- do.call(rbind, c(lapply(args, plain_df_), list(make.row.names = FALSE)))
  sup <- do.call(rbind, lapply(args, function(a) attr(a, "suppressed")[, nm, drop = FALSE]))
  rownames(sup) <- NULL
  offset <- cumsum(c(0L, vapply(args, nrow, 1L)))
  log <- do.call(rbind, c(list(empty_log_()), lapply(seq_along(args), function(k) {
    l <- attr(args[[k]], "disclosure")$log
    l$row <- as.integer(l$row + offset[k])
    l
  })))
  log <- log[order(log$row, match(log$column, nm)), , drop = FALSE]
  new_disclosed_bind_(out, sup, log, args)
}

#' @export
cbind.sfp_disclosed <- function(..., deparse.level = 1) {
  args <- disclosed_args_(list(...), "cbind")
  if (!length(args)) return(NULL)
  n <- vapply(args, nrow, 1L)
  if (any(n != n[1L])) {
    stop_arg("...", sprintf("holds tables of %s rows, which cbind() cannot put side by side",
                            paste(unique(n), collapse = " and ")),
             "bind tables with the same rows, or rbind() tables with the same columns.")
  }
  nm <- unlist(lapply(args, names), use.names = FALSE)
  if (anyDuplicated(nm)) {
    stop_arg("...", sprintf("holds tables that share column names (%s): a masked cell would be ambiguous",
                            paste(unique(nm[duplicated(nm)]), collapse = ", ")),
             "rename the columns of one table (names(x)[...] <- ...) before cbind().")
  }
  out <- do.call(cbind, lapply(args, plain_df_))
  sup <- do.call(cbind, lapply(args, function(a) attr(a, "suppressed")))
  log <- do.call(rbind, c(list(empty_log_()), lapply(args, function(a) attr(a, "disclosure")$log)))
  log <- log[order(log$row, match(log$column, nm)), , drop = FALSE]
  new_disclosed_bind_(out, sup, log, args)
}

# Assigning into a disclosed table (x[i, j] <- v, x$col <- v, x[[col]] <- v)
# can put a value that has not been through disclosure control beside the
# masked cells (a new column, a small count in a published cell): the result
# is a plain data frame (masked cells stay NA), to be disclosed again.
#' @export
`[<-.sfp_disclosed` <- function(x, i, j, value) {
  x <- plain_df_(x)
  NextMethod()
}

#' @export
`[[<-.sfp_disclosed` <- function(x, i, j, value) {
  x <- plain_df_(x)
  NextMethod()
}

#' @export
`$<-.sfp_disclosed` <- function(x, name, value) {
  x <- plain_df_(x)
  NextMethod()
}

# Renaming columns renames them in the mask and the log too.
#' @export
`names<-.sfp_disclosed` <- function(x, value) {
  old <- names(x)
  sup <- attr(x, "suppressed")
  dis <- attr(x, "disclosure")
  x <- NextMethod()
  new <- names(x)
  if (!is.null(sup) && ncol(sup) == length(new)) colnames(sup) <- new
  if (length(old) == length(new)) {
    dis$log$column <- new[match(dis$log$column, old)]
    dis$counts <- new[match(dis$counts, old)]
    dis$counts <- dis$counts[!is.na(dis$counts)]
  }
  attr(x, "suppressed") <- sup
  attr(x, "disclosure") <- dis
  x
}

# The arguments of rbind()/cbind() on disclosed tables: NULLs dropped, every
# other one an sfp_disclosed table.
disclosed_args_ <- function(args, fun) {
  args <- args[!vapply(args, is.null, TRUE)]
  for (k in seq_along(args)) {
    if (!inherits(args[[k]], "sfp_disclosed")) {
      stop_arg("...", sprintf(paste0(
        "(argument %d of %s()) is %s, not a table from disclose(): bound to disclosed tables, ",
        "its cells would be published as disclosed without disclosure control"),
        k, fun, if (is.data.frame(args[[k]])) "a data frame" else describe_value(args[[k]])),
        sprintf(paste0("disclose() it first (%s(d, disclose(x))), or %s() the original tables and ",
                       "disclose() the result, which also protects totals and counts linked across them."),
                fun, fun))
    }
  }
  rt <- lapply(args, function(a) attr(a, "disclosure")$round_to)
  if (length(unique(lapply(rt, function(r) r %||% 0))) > 1L) {
    stop_arg("...", sprintf("holds tables rounded differently (round_to %s)",
                            paste(vapply(rt, function(r) if (is.null(r)) "NULL" else format(r), ""),
                                  collapse = ", ")),
             "disclose the original tables with the same round_to.")
  }
  args
}

plain_df_ <- function(x) {
  attr(x, "suppressed") <- NULL
  attr(x, "disclosure") <- NULL
  class(x) <- "data.frame"
  x
}

new_disclosed_bind_ <- function(out, sup, log, args) {
  rownames(log) <- NULL
  dis <- lapply(args, attr, "disclosure")
  rownames(out) <- NULL
  attr(out, "suppressed") <- sup
  attr(out, "disclosure") <- list(
    threshold = min(vapply(dis, `[[`, 1, "threshold")), round_to = dis[[1L]]$round_to,
    counts = unique(unlist(lapply(dis, `[[`, "counts"))), log = log)
  class(out) <- c("sfp_disclosed", "data.frame")
  out
}

new_disclosed_list_ <- function(x, withheld = character()) {
  structure(x, withheld = withheld, class = "sfp_disclosed_list")
}

#' @export
print.sfp_disclosed_list <- function(x, ...) {
  for (nm in names(x)) {
    cat("== ", nm, "\n", sep = "")
    print(x[[nm]])
    cat("\n")
  }
  w <- attr(x, "withheld")
  if (length(w)) cat("Withheld:", paste(w, collapse = "; "), "\n")
  invisible(x)
}

# One line for the print method of any object carrying child counts: does
# what was printed pass the threshold rule?
disclosure_status <- function(counts, unsafe = NULL, threshold = 10) {
  v <- suppressWarnings(as.numeric(unlist(counts, use.names = FALSE)))
  k <- sum(!is.na(v) & v < threshold)
  why <- c(if (k) sprintf("%d count%s below %s", k, if (k == 1L) "" else "s", format(threshold)),
           unsafe)
  cat(if (length(why)) {
    sprintf("Disclosure: NOT safe to release (%s); use disclose().\n", paste(why, collapse = "; "))
  } else {
    sprintf("Disclosure: no count below %s; release only through disclose().\n", format(threshold))
  })
  invisible(!length(why))
}
