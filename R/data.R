# sfp_data(): validate and bundle the input tables of the schema in
# R/schema.R (`vignette("data")`), plus its print() and summary()
# methods and fin_year().
#
# Flow: each given table is checked on its own (columns present, types with
# the documented conversions, missing values, code lists, keys, date order,
# plausible dates, value rules), then across tables (foreign keys). A hard
# problem stops at once with an error from stop_rows(); soft problems are
# collected while checking and raised at the end as one warning per kind, and
# kept in attr(x, "problems"). Every conversion (date strings, factors, code
# case, logical and count forms) is counted in attr(x, "conversions"). No row
# is ever dropped and no value is changed other than by those conversions.

#' Validate and bundle the input tables
#'
#' `sfp_data()` checks the records of the input schema (CIN census, SSDA903
#' and NPD extracts plus the local-authority tables; see [sfp_tables()]) and
#' bundles them into one object that the rest of sfpceval reads. Tables an
#' analysis does not need may be `NULL`.
#'
#' @section What is checked (a hard problem is an error):
#' * every required column is present (extra columns are kept as they are);
#' * types: codes and ids are character (factors and whole numbers are
#'   converted); dates are `Date`, or character as ISO `YYYY-MM-DD` or
#'   903-style `dd/mm/YYYY` (converted); logicals accept `TRUE`/`FALSE`,
#'   `"true"`/`"false"` (any case), `1`/`0` and `"1"`/`"0"`; counts accept
#'   whole doubles; `disability` is a list of character vectors or a character
#'   column of codes separated by `;` or `,`;
#' * columns that may not be missing have no `NA`;
#' * codes are in the official lists of [sfp_codes()] (surrounding blanks and
#'   letter case are normalised first, and counted as conversions);
#' * keys are unique: `child_id` in `children` (or `child_id` +
#'   `recorded_date` when that column is present: one row per child per
#'   return), `referral_id`, `assessment_id`, `assessment_id` + `factor`,
#'   `referral_id` + `start` for plans, `child_id` + `decom` for care
#'   episodes, `child_id` + `academic_year` + `term` for absence, `la_code` +
#'   `month`, and `la_code` + `programme` + `role` (+ `matched_to_la` +
#'   `outcome`) for roll-out;
#' * foreign keys, when both tables are given: `child_id` of `referrals`,
#'   `cla_episodes` and `absence` in `children`; `referral_id` of
#'   `assessments`, `cin_plans` and `cp_plans` in `referrals`;
#'   `assessment_id` of `assessment_factors` in `assessments`;
#' * end dates are not before start dates (`closure_date` vs
#'   `referral_date`, `assessment_end` vs `assessment_start`, plan `end` vs
#'   `start`, `dec` vs `decom`, `trial_end` vs `trial_start`, `embed_end` vs
#'   `embed_start`);
#' * dates are in `date_range`;
#' * counts are not negative and `unauth_sessions <= sessions_possible`;
#'   `la_covariates` proportions are in \[0, 1\]; a `treated` roll-out row
#'   has a `go_live_date`.
#'
#' @section Soft problems (one warning per kind, with counts):
#' unknown codes in columns no analysis uses (`referral_source`, CPP
#' categories, 903 `cin`, `place_provider`); referrals with no
#' `closure_date`, CIN plans, child protection plans and care episodes with no
#' end date (treated as open at the end of the data); children with no
#' referral; children with neither `dob` nor `expected_dob`; exact duplicate
#' rows in `assessment_factors`; local authorities in `la_covariates` or
#' `rollout` with no children; Family Valued roll-out rows without
#' `trial_start`/`trial_end`. They are also kept in `attr(x, "problems")`.
#'
#' @param children,referrals,assessments,assessment_factors,cin_plans,cp_plans,cla_episodes,absence,la_covariates,rollout
#'   Data frames in the schema of [sfp_tables()], or `NULL` for a table an
#'   analysis does not need.
#'   Each may also come from a database: a table name or a `SELECT` query
#'   (with `con`), a `DBI::Id()`, or a lazy table (dbplyr); see [write_db()].
#' @param con A DBI connection for tables given by name or query (`NULL`
#'   when all tables are data frames or lazy tables). Dates a database keeps
#'   as numbers (days since 1970-01-01, as SQLite does) or date-times become
#'   `Date` and logicals kept as 0/1 become logical; these conversions are
#'   counted with the others.
#' @param date_range A list with two `Date` (or ISO string) ranges of length
#'   2: `dob` for `dob` and `expected_dob` (default 1980-01-01 to 2035-12-31)
#'   and `events` for every other date (default 1990-01-01 to 2035-12-31).
#'   Dates outside them are an error.
#' @param warn `TRUE` (the default) to raise the soft problems as warnings;
#'   `FALSE` only records them in `attr(x, "problems")` (for callers such as
#'   the simulator that report them another way).
#' @return An object of class `sfp_data`: a named list of the ten tables in the
#'   order of the arguments (`NULL` where not given), each a data frame with
#'   the converted columns. Attributes: `conversions`, a data frame (`table`,
#'   `column`, `conversion`, `n`) of what was converted; `problems`, a data
#'   frame (`table`, `column`, `n`, `problem`) of the soft problems.
#' @seealso [sfp_tables()] for the columns of each table, [sfp_codes()] for
#'   the code lists, [fin_year()].
#' @examples
#' children <- data.frame(child_id = c("C1", "C2"), la_code = "801",
#'                        dob = c("2012-05-01", "03/02/2016"),
#'                        gender_raw = c("1", "2"),
#'                        ethnicity = c("WBRI", "BAFR"))
#' referrals <- data.frame(referral_id = c("R1", "R2", "R3"),
#'                         child_id = c("C1", "C1", "C2"),
#'                         referral_date = as.Date(c("2020-05-01",
#'                                                   "2021-06-01",
#'                                                   "2020-09-15")),
#'                         closure_date = as.Date(c("2020-08-01", NA,
#'                                                  "2021-01-10")))
#' x <- sfp_data(children = children, referrals = referrals)
#' x
#' summary(x)
#' attr(x, "conversions")
#' @export
sfp_data <- function(children = NULL, referrals = NULL, assessments = NULL,
                     assessment_factors = NULL, cin_plans = NULL,
                     cp_plans = NULL, cla_episodes = NULL, absence = NULL,
                     la_covariates = NULL, rollout = NULL,
                     date_range = list(dob = c("1980-01-01", "2035-12-31"),
                                       events = c("1990-01-01", "2035-12-31")),
                     warn = TRUE, con = NULL) {
  tables <- list(children = children, referrals = referrals,
                 assessments = assessments,
                 assessment_factors = assessment_factors,
                 cin_plans = cin_plans, cp_plans = cp_plans,
                 cla_episodes = cla_episodes, absence = absence,
                 la_covariates = la_covariates, rollout = rollout)
  db <- dbi_collect(tables, con)   # database tables and queries (R/dbi.R)
  tables <- db$tables
  date_range <- check_date_range(date_range)
  if (!is.logical(warn) || length(warn) != 1L || is.na(warn)) {
    stop_arg("warn", "must be TRUE or FALSE", "use warn = FALSE to keep the problems in attr(x, \"problems\") only.")
  }
  log <- new.env(parent = emptyenv())
  log$conversions <- db$conversions
  log$problems <- list()
  for (nm in names(tables)) {
    if (!is.null(tables[[nm]])) {
      tables[[nm]] <- validate_table(tables[[nm]], nm, date_range, log)
    }
  }
  check_foreign_keys(tables)
  soft_across_tables(tables, log)
  problems <- problems_frame(log$problems)
  out <- structure(tables, class = "sfp_data",
                   conversions = conversions_frame(log$conversions),
                   problems = problems)
  if (warn) {
    for (msg in problem_messages(log$problems)) warning(msg, call. = FALSE)
  }
  out
}

# ---------------------------------------------------------------------------
# Arguments

check_date_range <- function(date_range) {
  fix <- paste0("give a list like list(dob = c(\"1980-01-01\", \"2035-12-31\"), ",
                "events = c(\"1990-01-01\", \"2035-12-31\")).")
  if (!is.list(date_range) || !all(c("dob", "events") %in% names(date_range))) {
    stop_arg("date_range", "must be a list with elements `dob` and `events`", fix)
  }
  out <- list()
  for (nm in c("dob", "events")) {
    r <- date_range[[nm]]
    d <- if (inherits(r, "Date")) r else if (is.character(r)) {
      parse_dates(r)$date
    } else NULL
    if (is.null(d) || length(d) != 2L || anyNA(d) || d[2] < d[1]) {
      stop_arg("date_range",
               sprintf("has an invalid `%s` element: it must be two dates, the earliest first", nm),
               fix)
    }
    out[[nm]] <- d
  }
  out
}

# ---------------------------------------------------------------------------
# One table

validate_table <- function(x, table, date_range, log) {
  if (is.character(x) && length(x) == 1L) {
    stop_arg(table, sprintf("must be a data frame or NULL, not the text \"%s\" (a table name or query needs a database connection `con`)", x),
             sprintf("give a data frame with the columns of sfp_tables(\"%s\"), or pass `con` (a DBI connection); to read a CSV file, read it first (utils::read.csv()).",
                     table))
  }
  if (!is.data.frame(x)) {
    stop_arg(table, "must be a data frame or NULL",
             sprintf("give a data frame with the columns of sfp_tables(\"%s\").",
                     table))
  }
  x <- as.data.frame(x, stringsAsFactors = FALSE)
  rownames(x) <- NULL
  spec <- .schema[[table]]
  cols <- spec$columns
  dup_names <- unique(names(x)[duplicated(names(x))])
  if (length(dup_names)) {
    stop(sprintf("Table `%s` has more than one column named %s.\nFix: give each column once.",
                 table, paste0("`", dup_names, "`", collapse = ", ")),
         call. = FALSE)
  }
  required <- names(cols)[vapply(cols, `[[`, TRUE, "required")]
  missing <- setdiff(required, names(x))
  if (length(missing)) {
    stop(sprintf("Table `%s` lacks required column%s %s.\nFix: add %s (see sfp_tables(\"%s\")).",
                 table, if (length(missing) > 1) "s" else "",
                 paste0("`", missing, "`", collapse = ", "),
                 if (length(missing) > 1) "them" else "it", table),
         call. = FALSE)
  }
  present <- intersect(names(cols), names(x))

  # Types, with the documented conversions.
  for (col in present) {
    x[[col]] <- coerce_column(x[[col]], table, col, cols[[col]], log)
  }

  # Missing values.
  for (col in present[!vapply(cols[present], `[[`, TRUE, "na")]) {
    bad <- which(is.na(x[[col]]))
    if (length(bad)) {
      stop_rows(table, col, bad, "with a missing value",
                sprintf("fill in `%s`: it may not be missing in `%s`.", col, table))
    }
  }

  # Code lists.
  for (col in present[!vapply(cols[present], function(s) is.null(s$codes), TRUE)]) {
    check_codes(x[[col]], table, col, cols[[col]], log)
  }

  check_keys(x, table, spec, log)
  check_date_range_table(x, table, cols, present, date_range)
  check_date_order(x, table, spec)
  check_values(x, table, cols, present)
  soft_within_table(x, table, log)
  x
}

# ---------------------------------------------------------------------------
# Types

type_label <- c(chr = "character codes or ids", date = "dates",
                lgl = "logical values", int = "whole-number counts",
                dbl = "numbers", list_chr = "lists of codes")

type_fix <- c(
  chr = "give character codes or ids (a factor or whole numbers are converted).",
  date = "give `Date` values or character dates as YYYY-MM-DD or dd/mm/YYYY.",
  lgl = "give TRUE/FALSE, \"true\"/\"false\", 1/0 or \"1\"/\"0\" (NA where unknown).",
  int = "give whole-number counts (integer, or double with no fractional part).",
  dbl = "give numbers (numeric, or character strings that read as numbers).",
  list_chr = "give a list of character vectors, or a character column of codes separated by \";\" or \",\"."
)

# Error about values of the wrong kind; `rows` are the offending rows.
stop_type <- function(table, column, type, rows, what, values = NULL) {
  stop_rows(table, column, rows,
            sprintf("holding %s where %s are expected", what, type_label[[type]]),
            type_fix[[type]],
            keys = if (!is.null(values)) utils::head(values, 5L),
            key_name = "values")
}

note_conversion <- function(log, table, column, conversion, n) {
  if (n > 0L) {
    log$conversions[[length(log$conversions) + 1L]] <-
      list(table = table, column = column, conversion = conversion, n = n)
  }
}

non_na_rows <- function(v) {
  if (is.list(v)) return(seq_along(v))
  which(!is.na(v))
}

all_na_logical <- function(v) is.logical(v) && all(is.na(v))

coerce_column <- function(v, table, column, spec, log) {
  type <- spec$type
  if (type == "list_chr") return(coerce_list_chr(v, table, column, spec, log))
  if (is.list(v) || !is.atomic(v) && !is.factor(v)) {
    stop_type(table, column, type, seq_along(v), "a list or other non-atomic values")
  }
  if (is.factor(v)) {
    note_conversion(log, table, column, "factor -> character", sum(!is.na(v)))
    v <- as.character(v)
  }
  switch(type,
    chr = coerce_chr(v, table, column, spec, log),
    date = coerce_date(v, table, column, log),
    lgl = coerce_lgl(v, table, column, log),
    int = coerce_int(v, table, column, log),
    dbl = coerce_dbl(v, table, column, log),
    v
  )
}

coerce_chr <- function(v, table, column, spec, log) {
  if (all_na_logical(v)) {
    note_conversion(log, table, column, "all-NA logical -> character", length(v))
    return(rep(NA_character_, length(v)))
  }
  if (is.numeric(v) && !inherits(v, c("Date", "POSIXt"))) {
    bad <- which(!is.na(v) & (!is.finite(v) | v != round(v)))
    if (length(bad)) {
      stop_type(table, column, "chr", bad, "numbers that are not whole",
                as.character(v[bad]))
    }
    out <- rep(NA_character_, length(v))
    ok <- !is.na(v)
    out[ok] <- sprintf("%.0f", as.double(v[ok]))
    note_conversion(log, table, column, "number -> character", sum(ok))
    v <- out
  }
  if (!is.character(v)) {
    stop_type(table, column, "chr", non_na_rows(v),
              paste(class(v)[1], "values"))
  }
  if (!is.null(spec$codes)) {
    v <- normalise_codes(v, .code_lists[[spec$codes]], table, column, log)
  }
  v
}

# Blank strings become NA; a code that matches an official code after
# trimming blanks and ignoring letter case becomes the official spelling.
# Works on the unique values, so it is cheap on millions of rows.
normalise_codes <- function(v, codes, table, column, log) {
  u <- unique(v)
  u <- u[!is.na(u)]
  blank <- u[trimws(u) == ""]
  canon <- codes[match(toupper(trimws(u)), toupper(codes))]
  change <- !is.na(canon) & canon != u
  if (length(blank)) {
    hit <- v %in% blank
    note_conversion(log, table, column, "blank -> NA", sum(hit))
    v[hit] <- NA_character_
  }
  if (any(change)) {
    m <- match(v, u[change])
    hit <- !is.na(m)
    note_conversion(log, table, column,
                    "code blanks/letter case -> official spelling", sum(hit))
    v[hit] <- canon[change][m[hit]]
  }
  v
}

# Dates: ISO and dd/mm/YYYY strings parsed strictly (an impossible day such
# as 31/02/2020 is not a date). Returns the dates, the rows that cannot be
# read and how many of each form. Parses the unique strings only: a column of
# a million dates holds a few thousand distinct days.
parse_dates <- function(v) {
  v <- as.character(v)
  u <- unique(v)
  s <- trimws(u)
  s[!is.na(s) & s == ""] <- NA
  d <- .Date(rep(NA_real_, length(u)))
  iso <- !is.na(s) & grepl("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", s)
  dmy <- !is.na(s) & grepl("^[0-9]{2}/[0-9]{2}/[0-9]{4}$", s)
  if (any(iso)) {
    di <- as.Date(s[iso], format = "%Y-%m-%d")
    di[!is.na(di) & format(di, "%Y-%m-%d") != s[iso]] <- NA
    d[iso] <- di
  }
  if (any(dmy)) {
    dd <- as.Date(s[dmy], format = "%d/%m/%Y")
    dd[!is.na(dd) & format(dd, "%d/%m/%Y") != s[dmy]] <- NA
    d[dmy] <- dd
  }
  m <- match(v, u)
  blank <- !is.na(u) & is.na(s)
  list(date = d[m], bad = which((!is.na(s) & is.na(d))[m]),
       n_iso = sum(iso[m]), n_dmy = sum(dmy[m]), n_blank = sum(blank[m]))
}

coerce_date <- function(v, table, column, log) {
  if (inherits(v, "Date")) return(.Date(unclass(v)))
  if (all_na_logical(v)) {
    note_conversion(log, table, column, "all-NA logical -> Date", length(v))
    return(.Date(rep(NA_real_, length(v))))
  }
  if (inherits(v, "POSIXt")) {
    note_conversion(log, table, column, "date-time -> Date (local calendar day)",
                    sum(!is.na(v)))
    return(as.Date(format(v, "%Y-%m-%d")))
  }
  if (!is.character(v)) {
    stop_type(table, column, "date", non_na_rows(v),
              paste(class(v)[1], "values"))
  }
  p <- parse_dates(v)
  if (length(p$bad)) {
    stop_rows(table, column, p$bad, "with a date that cannot be read",
              type_fix[["date"]], keys = utils::head(v[p$bad], 5L),
              key_name = "values")
  }
  note_conversion(log, table, column, "YYYY-MM-DD string -> Date", p$n_iso)
  note_conversion(log, table, column, "dd/mm/YYYY string -> Date", p$n_dmy)
  note_conversion(log, table, column, "blank -> NA", p$n_blank)
  p$date
}

coerce_lgl <- function(v, table, column, log) {
  if (is.logical(v)) return(v)
  if (is.numeric(v)) {
    bad <- which(!is.na(v) & !(v %in% c(0, 1)))
    if (length(bad)) {
      stop_type(table, column, "lgl", bad, "numbers other than 1/0", as.character(v[bad]))
    }
    note_conversion(log, table, column, "1/0 -> TRUE/FALSE", sum(!is.na(v)))
    return(as.logical(v))
  }
  if (!is.character(v)) {
    stop_type(table, column, "lgl", non_na_rows(v), paste(class(v)[1], "values"))
  }
  s <- tolower(trimws(v))
  out <- rep(NA, length(v))
  out[s %in% c("true", "1")] <- TRUE
  out[s %in% c("false", "0")] <- FALSE
  blank <- !is.na(s) & s == ""
  bad <- which(!is.na(s) & !blank & is.na(out))
  if (length(bad)) {
    stop_type(table, column, "lgl", bad, "text other than true/false/1/0", v[bad])
  }
  note_conversion(log, table, column, "true/false/1/0 strings -> logical",
                  sum(!is.na(out)))
  note_conversion(log, table, column, "blank -> NA", sum(blank))
  out
}

coerce_int <- function(v, table, column, log) {
  if (is.integer(v)) return(v)
  if (all_na_logical(v)) {
    note_conversion(log, table, column, "all-NA logical -> integer", length(v))
    return(rep(NA_integer_, length(v)))
  }
  if (is.character(v)) {
    s <- trimws(v)
    blank <- !is.na(s) & s == ""
    bad <- which(!is.na(s) & !blank & !grepl("^-?[0-9]{1,9}$", s))
    if (length(bad)) {
      stop_type(table, column, "int", bad, "text that is not a whole number", v[bad])
    }
    s[blank] <- NA
    note_conversion(log, table, column, "digit strings -> integer", sum(!is.na(s)))
    note_conversion(log, table, column, "blank -> NA", sum(blank))
    return(as.integer(s))
  }
  if (!is.double(v)) {
    stop_type(table, column, "int", non_na_rows(v), paste(class(v)[1], "values"))
  }
  bad <- which(!is.na(v) & (!is.finite(v) | v != round(v) |
                              abs(v) > .Machine$integer.max))
  if (length(bad)) {
    stop_type(table, column, "int", bad, "numbers that are not whole counts",
              as.character(v[bad]))
  }
  note_conversion(log, table, column, "whole double -> integer", sum(!is.na(v)))
  as.integer(v)
}

coerce_dbl <- function(v, table, column, log) {
  if (is.double(v)) return(v)
  if (is.integer(v) || all_na_logical(v)) {
    note_conversion(log, table, column, paste(class(v)[1], "-> double"),
                    length(v))
    return(as.double(v))
  }
  if (!is.character(v)) {
    stop_type(table, column, "dbl", non_na_rows(v), paste(class(v)[1], "values"))
  }
  s <- trimws(v)
  blank <- !is.na(s) & s == ""
  s[blank] <- NA
  out <- suppressWarnings(as.numeric(s))
  bad <- which(!is.na(s) & is.na(out))
  if (length(bad)) {
    stop_type(table, column, "dbl", bad, "text that is not a number", v[bad])
  }
  note_conversion(log, table, column, "number strings -> double", sum(!is.na(out)))
  note_conversion(log, table, column, "blank -> NA", sum(blank))
  out
}

# disability: a list of character vectors (NULL -> character(0)) or a
# character column of codes separated by ";" or ",". A missing or blank
# string stays missing (NA_character_), which is not the same as "no codes".
coerce_list_chr <- function(v, table, column, spec, log) {
  if (is.factor(v)) v <- as.character(v)
  if (all_na_logical(v)) {
    note_conversion(log, table, column, "all-NA logical -> list", length(v))
    return(as.list(rep(NA_character_, length(v))))
  }
  if (is.character(v)) {
    na <- is.na(v) | trimws(v) == ""
    pieces <- strsplit(v[!na], "[;,]")
    flat <- unlist(pieces, use.names = FALSE)
    u <- unique(flat)
    flat <- trimws(u)[match(flat, u)]
    row <- rep(which(!na), lengths(pieces))
    keep <- flat != ""
    flat <- flat[keep]
    row <- row[keep]
    na <- na | !(seq_along(v) %in% row)
    note_conversion(log, table, column, "separated codes -> list", sum(!na))
  } else if (is.list(v)) {
    bad <- which(!vapply(v, function(e) is.null(e) || is.character(e) ||
                           is.factor(e) || (is.logical(e) && all(is.na(e))), TRUE))
    if (length(bad)) {
      stop_type(table, column, "list_chr", bad, "list elements that are not character")
    }
    v <- lapply(v, function(e) if (is.null(e)) character() else as.character(e))
    flat <- as.character(unlist(v, use.names = FALSE)) # character(0) for no rows
    row <- rep(seq_along(v), lengths(v))
    na <- rep(FALSE, length(v))
  } else {
    stop_type(table, column, "list_chr", non_na_rows(v), paste(class(v)[1], "values"))
  }
  if (!is.null(spec$codes) && length(flat)) {
    flat <- normalise_codes(flat, .code_lists[[spec$codes]], table, column, log)
  }
  # `row` is sorted, so an integer factor (no character conversion) splits
  # the codes back into one vector per row, empty rows included.
  out <- split(flat, structure(as.integer(row),
                               levels = as.character(seq_along(v)),
                               class = "factor"))
  names(out) <- NULL
  out[na] <- list(NA_character_)
  out
}

# ---------------------------------------------------------------------------
# Codes

check_codes <- function(v, table, column, spec, log) {
  codes <- .code_lists[[spec$codes]]
  if (is.list(v)) {
    len <- lengths(v)
    flat <- unlist(v, use.names = FALSE)
    bad_flat <- !is.na(flat) & !(flat %in% codes)
    bad <- unique(rep(seq_along(v), len)[bad_flat])
    values <- flat[bad_flat]
  } else {
    bad_flat <- !is.na(v) & !(v %in% codes)
    bad <- which(bad_flat)
    values <- v[bad]
  }
  if (!length(bad)) return(invisible())
  shown <- if (length(codes) <= 25L) {
    paste0(": ", paste(codes, collapse = ", "))
  } else ""
  if (spec$unknown == "error") {
    stop_rows(table, column, bad, "with a code not in the official list",
              sprintf("use the codes of sfp_codes(\"%s\")%s.", spec$codes, shown),
              keys = utils::head(values, 5L), key_name = "codes")
  }
  tab <- sort(table(values), decreasing = TRUE)
  add_problem(log, table, column, length(bad),
              sprintf("`%s$%s`: %s with a code not in sfp_codes(\"%s\") (%s; %s)",
                      table, column, n_rows(length(bad)), spec$codes,
                      paste0(names(tab), " x", tab, collapse = ", ")[1],
                      describe_rows(bad)),
              kind = "unknown_codes")
}

a_an <- function(word) if (grepl("^[aeiou]", word)) "an" else "a"

n_rows <- function(n) {
  paste0(format(n, big.mark = ","), if (n == 1L) " row" else " rows")
}

# ---------------------------------------------------------------------------
# Keys

# Integer group ids (first occurrence) for the rows of several columns.
group_id <- function(cols) {
  g <- NULL
  for (v in cols) {
    h <- match(v, v)
    if (is.null(g)) {
      g <- h
    } else {
      k <- g * (length(v) + 1) + h
      g <- match(k, k)
    }
  }
  g
}

key_columns <- function(x, table, spec) {
  key <- spec$key
  if (table == "children" && "recorded_date" %in% names(x)) {
    key <- spec$key_over_time
  }
  intersect(key, names(x))
}

key_labels <- function(x, key, rows) {
  parts <- lapply(key, function(k) as.character(x[[k]][rows]))
  do.call(paste, c(parts, sep = " / "))
}

check_keys <- function(x, table, spec, log) {
  key <- key_columns(x, table, spec)
  if (!nrow(x) || !length(key)) return(invisible())
  gk <- group_id(x[key])
  if (table == "assessment_factors") {
    atomic <- names(x)[!vapply(x, is.list, TRUE)]
    exact <- duplicated(group_id(x[atomic]))
    if (any(exact)) {
      rows <- which(exact)
      add_problem(log, table, NULL, length(rows),
                  sprintf("%s of `assessment_factors` exactly repeat an earlier row (%s); they are kept, and a factor counts once per assessment.",
                          n_rows(length(rows)),
                          describe_rows(rows, key_labels(x, key, utils::head(rows, 5L)),
                                        paste(key, collapse = " / "))),
                  kind = "duplicate_factors")
    }
    # An exact repeat is a soft problem, not a key clash.
    gk[exact] <- -which(exact)
  }
  dup <- duplicated(gk) | duplicated(gk, fromLast = TRUE)
  if (any(dup)) {
    rows <- which(dup)
    rows <- rows[order(gk[rows], rows)]
    key_name <- paste(key, collapse = " + ")
    stop_rows(table, key_name, rows,
              sprintf("sharing %s %s with another row", a_an(key_name), key_name),
              sprintf("give each row of `%s` its own %s (remove repeated rows or correct the ids).",
                      table, key_name),
              keys = key_labels(x, key, utils::head(rows, 5L)),
              key_name = key_name)
  }
  invisible()
}

foreign_key_rules <- list(
  list(table = "referrals", column = "child_id", parent = "children"),
  list(table = "cla_episodes", column = "child_id", parent = "children"),
  list(table = "absence", column = "child_id", parent = "children"),
  list(table = "assessments", column = "referral_id", parent = "referrals"),
  list(table = "cin_plans", column = "referral_id", parent = "referrals"),
  list(table = "cp_plans", column = "referral_id", parent = "referrals"),
  list(table = "assessment_factors", column = "assessment_id",
       parent = "assessments")
)

check_foreign_keys <- function(tables) {
  for (r in foreign_key_rules) {
    x <- tables[[r$table]]
    p <- tables[[r$parent]]
    if (is.null(x) || is.null(p)) next
    bad <- which(!(x[[r$column]] %in% p[[r$column]]))
    if (length(bad)) {
      stop_rows(r$table, r$column, bad,
                sprintf("with %s %s that is not in table `%s`", a_an(r$column),
                        r$column, r$parent),
                sprintf("add the missing records to `%s`, or remove these rows from `%s`.",
                        r$parent, r$table),
                keys = utils::head(x[[r$column]][bad], 5L), key_name = r$column)
    }
  }
  invisible()
}

# ---------------------------------------------------------------------------
# Dates and values

check_date_order <- function(x, table, spec) {
  key <- key_columns(x, table, spec)
  for (pair in spec$order) {
    if (!all(pair %in% names(x))) next
    a <- x[[pair[1]]]
    b <- x[[pair[2]]]
    bad <- which(!is.na(a) & !is.na(b) & b < a)
    if (length(bad)) {
      stop_rows(table, pair[2], bad,
                sprintf("with %s before %s", pair[2], pair[1]),
                sprintf("correct the dates: `%s` may equal `%s` but not come before it.",
                        pair[2], pair[1]),
                keys = key_labels(x, key, utils::head(bad, 5L)),
                key_name = paste(key, collapse = " / "))
    }
  }
  invisible()
}

check_date_range_table <- function(x, table, cols, present, date_range) {
  for (col in present[vapply(cols[present], `[[`, "", "type") == "date"]) {
    r <- if (col %in% c("dob", "expected_dob")) date_range$dob else date_range$events
    v <- x[[col]]
    bad <- which(!is.na(v) & (v < r[1] | v > r[2]))
    if (length(bad)) {
      stop_rows(table, col, bad,
                sprintf("with a date outside %s to %s", format(r[1]), format(r[2])),
                "correct the dates, or widen `date_range` if they are right.",
                keys = format(utils::head(v[bad], 5L)), key_name = "values")
    }
  }
  invisible()
}

check_values <- function(x, table, cols, present) {
  # Counts are never negative.
  for (col in present[vapply(cols[present], `[[`, "", "type") == "int"]) {
    bad <- which(!is.na(x[[col]]) & x[[col]] < 0L)
    if (length(bad)) {
      stop_rows(table, col, bad, "with a negative count",
                sprintf("correct `%s`: counts are 0 or more.", col),
                keys = utils::head(x[[col]][bad], 5L), key_name = "values")
    }
  }
  if (table == "absence") {
    bad <- which(!is.na(x$unauth_sessions) & !is.na(x$sessions_possible) &
                   x$unauth_sessions > x$sessions_possible)
    if (length(bad)) {
      stop_rows(table, "unauth_sessions", bad,
                "with more unauthorised absence sessions than sessions possible",
                "correct the counts: `unauth_sessions` is part of `sessions_possible` (add NPD Summer and Summer6th into one `summer` row or keep both as separate terms, but consistently).",
                keys = key_labels(x, c("child_id", "academic_year", "term"),
                                  utils::head(bad, 5L)),
                key_name = "child_id / academic_year / term")
    }
  }
  if (table == "la_covariates") {
    for (col in intersect(c("prop_fsm", "prop_white_british"), names(x))) {
      v <- x[[col]]
      bad <- which(!is.na(v) & (v < 0 | v > 1 | !is.finite(v)))
      if (length(bad)) {
        stop_rows(table, col, bad, "with a proportion outside [0, 1]",
                  "give proportions as fractions between 0 and 1 (15% is 0.15).",
                  keys = as.character(utils::head(v[bad], 5L)), key_name = "values")
      }
    }
  }
  if (table == "rollout") {
    bad <- which(x$role == "treated" & is.na(x$go_live_date))
    if (length(bad)) {
      stop_rows(table, "go_live_date", bad,
                "with role \"treated\" but no go_live_date",
                "give the date each treated local authority went live (Operationally Live).",
                keys = utils::head(x$la_code[bad], 5L), key_name = "la_code")
    }
  }
  invisible()
}

# ---------------------------------------------------------------------------
# Soft problems

add_problem <- function(log, table, column, n, message, kind = NULL) {
  log$problems[[length(log$problems) + 1L]] <-
    list(table = table, column = column %||% NA_character_, n = n,
         message = message, kind = kind %||% paste(table, column))
}

soft_within_table <- function(x, table, log) {
  key <- key_columns(x, table, .schema[[table]])
  open <- function(col, what, end_name) {
    rows <- which(is.na(x[[col]]))
    n <- length(rows)
    if (n) {
      add_problem(log, table, col, n,
                  sprintf("%s %s %s no %s; %s treated as open at the end of the data (table `%s`, %s).",
                          format(n, big.mark = ","), what[1 + (n > 1L)],
                          if (n == 1L) "has" else "have", end_name,
                          if (n == 1L) "it is" else "they are", table,
                          describe_rows(rows, key_labels(x, key, utils::head(rows, 5L)),
                                        paste(key, collapse = " / "))))
    }
  }
  switch(table,
    referrals = open("closure_date", c("referral", "referrals"), "closure_date"),
    cin_plans = open("end", c("CIN plan", "CIN plans"), "end date"),
    cp_plans = open("end", c("child protection plan", "child protection plans"),
                    "end date"),
    cla_episodes = open("dec", c("care episode", "care episodes"),
                        "end date (dec)"),
    children = {
      no_dob <- is.na(x$dob)
      if ("expected_dob" %in% names(x)) no_dob <- no_dob & is.na(x$expected_dob)
      rows <- which(no_dob)
      if (length(rows)) {
        add_problem(log, table, "dob", length(rows),
                    sprintf("%s of `children` %s no dob and no expected_dob; age at referral is unknown for %s (%s).",
                            n_rows(length(rows)),
                            if (length(rows) == 1L) "has" else "have",
                            if (length(rows) == 1L) "it" else "them",
                            describe_rows(rows, utils::head(x$child_id[rows], 5L),
                                          "child_id")))
      }
    },
    rollout = {
      lacks <- x$programme == "FV"
      if (all(c("trial_start", "trial_end") %in% names(x))) {
        lacks <- lacks & (is.na(x$trial_start) | is.na(x$trial_end))
      }
      rows <- which(lacks)
      if (length(rows)) {
        add_problem(log, table, "trial_start", length(rows),
                    sprintf("%s Family Valued %s of `rollout` %s no trial_start/trial_end; give the trial period (6 months before the first go-live to 6 months after the last) (%s).",
                            format(length(rows), big.mark = ","),
                            if (length(rows) == 1L) "row" else "rows",
                            if (length(rows) == 1L) "has" else "have",
                            describe_rows(rows, utils::head(x$la_code[rows], 5L),
                                          "la_code")))
      }
    },
    NULL
  )
  invisible()
}

soft_across_tables <- function(tables, log) {
  ch <- tables$children
  if (!is.null(ch) && !is.null(tables$referrals)) {
    ids <- unique(ch$child_id)
    none <- ids[!(ids %in% tables$referrals$child_id)]
    if (length(none)) {
      add_problem(log, "children", "child_id", length(none),
                  sprintf("%s %s in `children` %s no referral in `referrals` (child_id %s%s).",
                          format(length(none), big.mark = ","),
                          if (length(none) == 1L) "child" else "children",
                          if (length(none) == 1L) "has" else "have",
                          paste(utils::head(none, 5L), collapse = ", "),
                          if (length(none) > 5L) sprintf(" and %d more", length(none) - 5L) else ""))
    }
  }
  if (!is.null(ch)) {
    las <- unique(ch$la_code)
    parts <- character()
    n <- 0L
    for (t in c("la_covariates", "rollout")) {
      x <- tables[[t]]
      if (is.null(x)) next
      extra <- sort(unique(x$la_code[!(x$la_code %in% las)]))
      if (length(extra)) {
        n <- n + length(extra)
        parts <- c(parts, sprintf("`%s`: %s", t, paste(extra, collapse = ", ")))
      }
    }
    if (length(parts)) {
      add_problem(log, "la_covariates/rollout", "la_code", n,
                  sprintf("Local authorities with no children in `children` (%s); they add nothing to child-level analyses.",
                          paste(parts, collapse = "; ")))
    }
  }
  invisible()
}

problems_frame <- function(p) {
  data.frame(
    table = vapply(p, `[[`, "", "table"),
    column = vapply(p, `[[`, "", "column"),
    n = vapply(p, function(e) as.integer(e$n), 1L),
    problem = vapply(p, `[[`, "", "message"),
    stringsAsFactors = FALSE
  )
}

conversions_frame <- function(p) {
  data.frame(
    table = vapply(p, `[[`, "", "table"),
    column = vapply(p, `[[`, "", "column"),
    conversion = vapply(p, `[[`, "", "conversion"),
    n = vapply(p, function(e) as.integer(e$n), 1L),
    stringsAsFactors = FALSE
  )
}

# One message per kind; the unknown codes of several columns share one.
problem_messages <- function(p) {
  kinds <- vapply(p, `[[`, "", "kind")
  out <- character()
  for (k in unique(kinds)) {
    msgs <- vapply(p[kinds == k], `[[`, "", "message")
    out <- c(out, if (k == "unknown_codes") {
      paste0("Unknown codes in columns no analysis uses (kept as given):\n",
             paste0("* ", msgs, collapse = "\n"))
    } else paste(msgs, collapse = "\n"))
  }
  out
}

# ---------------------------------------------------------------------------
# Financial year

#' Financial-year label of a date
#'
#' The English financial year runs from 1 April to 31 March; the year starting
#' on 1 April 2020 is labelled `"2020/21"`. Used for the yearly counts of
#' [sfp_data()]'s summary and by the cohort builder.
#'
#' @param date A `Date` vector, or character dates as `YYYY-MM-DD` or
#'   `dd/mm/YYYY`.
#' @return A character vector of labels like `"2020/21"`, `NA` where `date` is
#'   `NA`.
#' @examples
#' fin_year(as.Date(c("2020-03-31", "2020-04-01", "2021-03-31", NA)))
#' fin_year("01/04/1999")
#' @export
fin_year <- function(date) {
  if (is.character(date) || is.factor(date)) {
    p <- parse_dates(as.character(date))
    if (length(p$bad)) {
      stop_arg("date",
               sprintf("has %d value%s that cannot be read as a date (first: \"%s\")",
                       length(p$bad), if (length(p$bad) == 1L) "" else "s",
                       as.character(date)[p$bad[1]]),
               "give `Date` values or character dates as YYYY-MM-DD or dd/mm/YYYY.")
    }
    date <- p$date
  }
  if (!inherits(date, "Date")) {
    stop_arg("date", sprintf("must be a Date vector, not %s", class(date)[1]),
             "convert it with as.Date().")
  }
  # Label the distinct days only, then look them up.
  u <- unique(date)
  lt <- as.POSIXlt(u)
  y <- lt$year + 1900L - (lt$mon < 3L)
  lab <- sprintf("%d/%02d", y, (y + 1L) %% 100L)
  lab[is.na(u)] <- NA_character_
  lab[match(date, u)]
}

# ---------------------------------------------------------------------------
# print() and summary()

#' @rdname sfp_data
#' @param x,object An `sfp_data` object (or its summary, for `print()`).
#' @param ... Unused.
#' @export
print.sfp_data <- function(x, ...) {
  given <- !vapply(x, is.null, TRUE)
  cat(sprintf("<sfp_data> %d of %d tables given\n", sum(given), length(x)))
  w <- max(nchar(names(x)))
  for (nm in names(x)) {
    t <- x[[nm]]
    cat(sprintf("  %-*s  %s\n", w, nm, if (is.null(t)) "not given" else
      sprintf("%s %s x %d %s", format(nrow(t), big.mark = ","),
              if (nrow(t) == 1L) "row" else "rows", ncol(t),
              if (ncol(t) == 1L) "column" else "columns")))
  }
  conv <- attr(x, "conversions")
  prob <- attr(x, "problems")
  if (!is.null(conv) && nrow(conv)) {
    cat(sprintf("  %d conversion%s (attr(x, \"conversions\"))\n", nrow(conv),
                if (nrow(conv) == 1L) "" else "s"))
  }
  if (!is.null(prob) && nrow(prob)) {
    cat(sprintf("  %d soft problem%s (attr(x, \"problems\"))\n", nrow(prob),
                if (nrow(prob) == 1L) "" else "s"))
  }
  disclosure_status(vapply(x[given], nrow, 1L))
  invisible(x)
}

# The local authority of each child: the la_code of its latest row (by
# recorded_date when the table has one row per child per return).
child_la_map <- function(ch) {
  if ("recorded_date" %in% names(ch)) {
    o <- order(ch$child_id, ch$recorded_date)
    last <- o[!duplicated(ch$child_id[o], fromLast = TRUE)]
    ch <- ch[last, , drop = FALSE]
  }
  list(child_id = ch$child_id, la_code = ch$la_code)
}

#' @rdname sfp_data
#' @return `summary()` returns an object of class `summary.sfp_data`, a list
#'   with `counts` (rows and columns per table), `per_la` (children and records
#'   per local authority, through the child's `la_code`; `NULL` without
#'   `children`), `per_year` (referrals, CIN plan starts, child protection plan
#'   starts and care entries, `decom` of episodes with `rne == "S"`, per
#'   financial year), `date_ranges` (first and last date and missing values of
#'   each date column), `conversions` and `problems`.
#' @export
summary.sfp_data <- function(object, ...) {
  x <- object
  counts <- data.frame(
    table = names(x),
    rows = vapply(x, function(t) if (is.null(t)) NA_integer_ else nrow(t), 1L),
    columns = vapply(x, function(t) if (is.null(t)) NA_integer_ else ncol(t), 1L),
    row.names = NULL, stringsAsFactors = FALSE
  )

  per_la <- NULL
  if (!is.null(x$children)) {
    map <- child_la_map(x$children)
    las <- sort(unique(map$la_code))
    tab <- function(la) as.integer(table(factor(la, levels = las)))
    la_of_child <- function(id) map$la_code[match(id, map$child_id)]
    la_of_referral <- function(id) {
      if (is.null(x$referrals)) return(NULL)
      la_of_child(x$referrals$child_id[match(id, x$referrals$referral_id)])
    }
    count_by <- function(la) if (is.null(la)) rep(NA_integer_, length(las)) else tab(la)
    per_la <- data.frame(
      la_code = las,
      children = tab(map$la_code),
      referrals = count_by(if (!is.null(x$referrals)) la_of_child(x$referrals$child_id)),
      assessments = count_by(if (!is.null(x$assessments)) la_of_referral(x$assessments$referral_id)),
      cin_plans = count_by(if (!is.null(x$cin_plans)) la_of_referral(x$cin_plans$referral_id)),
      cp_plans = count_by(if (!is.null(x$cp_plans)) la_of_referral(x$cp_plans$referral_id)),
      cla_episodes = count_by(if (!is.null(x$cla_episodes)) la_of_child(x$cla_episodes$child_id)),
      absence = count_by(if (!is.null(x$absence)) la_of_child(x$absence$child_id)),
      row.names = NULL, stringsAsFactors = FALSE
    )
  }

  events <- list(
    referrals = if (!is.null(x$referrals)) x$referrals$referral_date,
    cin_plan_starts = if (!is.null(x$cin_plans)) x$cin_plans$start,
    cpp_starts = if (!is.null(x$cp_plans)) x$cp_plans$start,
    care_entries = if (!is.null(x$cla_episodes)) {
      x$cla_episodes$decom[x$cla_episodes$rne %in% "S"]
    }
  )
  fy <- lapply(events, function(d) if (is.null(d)) NULL else fin_year(d))
  years <- sort(unique(unlist(fy, use.names = FALSE)))
  per_year <- data.frame(year = years, stringsAsFactors = FALSE)
  for (nm in names(fy)) {
    per_year[[nm]] <- if (is.null(fy[[nm]])) rep(NA_integer_, length(years)) else
      as.integer(table(factor(fy[[nm]], levels = years)))
  }

  ranges <- list()
  for (nm in names(x)) {
    t <- x[[nm]]
    if (is.null(t)) next
    for (col in names(t)[vapply(t, inherits, TRUE, "Date")]) {
      v <- t[[col]]
      ok <- !is.na(v)
      ranges[[length(ranges) + 1L]] <- data.frame(
        table = nm, column = col,
        first = if (any(ok)) min(v[ok]) else .Date(NA_real_),
        last = if (any(ok)) max(v[ok]) else .Date(NA_real_),
        missing = sum(!ok), stringsAsFactors = FALSE)
    }
  }
  date_ranges <- if (length(ranges)) do.call(rbind, ranges) else
    data.frame(table = character(), column = character(), first = .Date(numeric()),
               last = .Date(numeric()), missing = integer(),
               stringsAsFactors = FALSE)

  structure(list(counts = counts, per_la = per_la, per_year = per_year,
                 date_ranges = date_ranges,
                 conversions = attr(x, "conversions"),
                 problems = attr(x, "problems")),
            class = "summary.sfp_data")
}

#' @rdname sfp_data
#' @export
print.summary.sfp_data <- function(x, ...) {
  big <- function(df) {
    for (nm in names(df)) {
      if (is.numeric(df[[nm]])) {
        df[[nm]] <- ifelse(is.na(df[[nm]]), "-",
                           format(df[[nm]], big.mark = ",", trim = TRUE))
      }
    }
    df
  }
  cat("sfp_data summary\n\nTables (rows x columns):\n")
  w <- max(nchar(x$counts$table))
  for (i in seq_len(nrow(x$counts))) {
    r <- x$counts[i, ]
    cat(sprintf("  %-*s  %s\n", w, r$table, if (is.na(r$rows)) "not given" else
      sprintf("%s x %d", format(r$rows, big.mark = ","), r$columns)))
  }
  if (!is.null(x$per_la)) {
    cat("\nPer local authority (records linked through the child's la_code; - = table not given):\n")
    print(big(x$per_la), row.names = FALSE, right = TRUE)
  }
  if (nrow(x$per_year)) {
    cat("\nPer financial year (April-March; care entries = episodes with rne \"S\"):\n")
    print(big(x$per_year), row.names = FALSE, right = TRUE)
  }
  if (nrow(x$date_ranges)) {
    cat("\nDate ranges:\n")
    d <- x$date_ranges
    w <- max(nchar(d$table))
    for (t in unique(d$table)) {
      s <- d[d$table == t, ]
      cat(sprintf("  %-*s  %s\n", w, t, paste0(
        s$column, " ", ifelse(is.na(s$first), "all missing",
                              paste0(format(s$first), " to ", format(s$last))),
        ifelse(s$missing > 0 & !is.na(s$first),
               paste0(" (", format(s$missing, big.mark = ","), " missing)"), ""),
        collapse = "; ")))
    }
  }
  if (!is.null(x$conversions) && nrow(x$conversions)) {
    cat("\nConversions:\n")
    cv <- x$conversions
    cat(paste0("  ", cv$table, "$", cv$column, ": ", cv$conversion, " (",
               format(cv$n, big.mark = ",", trim = TRUE), ")", collapse = "\n"), "\n",
        sep = "")
  }
  if (!is.null(x$problems) && nrow(x$problems)) {
    cat("\nSoft problems (warnings):\n")
    cat(paste0("  * ", gsub("\n", "\n    ", x$problems$problem), collapse = "\n"),
        "\n", sep = "")
  }
  disclosure_status(c(x$per_la[-1], x$per_year[-1]), unsafe = if (nrow(x$date_ranges)) "the date ranges are single records' dates")
  invisible(x)
}
