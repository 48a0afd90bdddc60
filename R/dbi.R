# Tables from a database: sfp_data() takes, for any table, a DBI table name
# or SQL query (with `con`), a DBI::Id, or a lazy dbplyr table, as well as a
# data frame. dbi_collect() turns them into data frames before validation,
# and maps what SQL cannot hold (dates stored as numbers, logicals as 0/1,
# date-times) to the schema's types, counting each conversion. DBI and
# dbplyr are Suggests: used only when a table comes from a database.

# Is `x` something dbi_collect() reads from a database? A character string
# is a table name or query only when a connection is given (without one,
# sfp_data() says a data frame is needed).
is_db_table <- function(x, con) {
  inherits(x, c("tbl_lazy", "tbl_sql", "Id", "SQL")) ||
    (!is.null(con) && is.character(x) && length(x) == 1L)
}

# Read one table from the database.
#   x:     a table name or SQL query (character), a DBI::Id or DBI::SQL, or a
#          lazy table (dbplyr)
#   con:   the DBI connection (NULL for a lazy table, which holds its own)
#   table: the sfp_data() argument, for messages
dbi_read <- function(x, con, table) {
  if (inherits(x, c("tbl_lazy", "tbl_sql"))) {
    if (!requireNamespace("dplyr", quietly = TRUE)) {
      stop_arg(table, "is a lazy database table, which needs the dplyr package",
               "install dplyr, or give a table name or SQL query with `con`.")
    }
    return(as.data.frame(dplyr::collect(x), stringsAsFactors = FALSE))
  }
  if (!requireNamespace("DBI", quietly = TRUE)) {
    stop_arg(table, "names a database table or query, which needs the DBI package",
             "install DBI, or give a data frame.")
  }
  if (is.null(con) || !inherits(con, "DBIConnection")) {
    stop_arg(table, sprintf("is %s, so `con` must be a DBI connection",
                            if (is.character(x)) sprintf("the text \"%s\"", x) else "a database table"),
             "give `con = DBI::dbConnect(...)`, or a data frame.")
  }
  if (inherits(x, "SQL") || (is.character(x) && grepl("^\\s*(SELECT|WITH)\\b", x, ignore.case = TRUE))) {
    return(DBI::dbGetQuery(con, x))
  }
  name <- if (inherits(x, "Id")) x else DBI::Id(table = x)
  if (!DBI::dbExistsTable(con, name)) {
    stop_arg(table, sprintf("names the database table \"%s\", which `con` does not hold",
                            paste(unlist(if (inherits(x, "Id")) x@name else x), collapse = ".")),
             "give an existing table (see DBI::dbListTables(con)) or a SELECT query.")
  }
  DBI::dbReadTable(con, name)
}

# The tables of sfp_data() with every database table read into a data frame,
# plus the conversions made (entries as sfp_data()'s log keeps them).
dbi_collect <- function(tables, con) {
  conv <- list()
  note <- function(table, column, conversion, n) {
    if (n > 0L) conv[[length(conv) + 1L]] <<-
        list(table = table, column = column, conversion = conversion, n = n)
  }
  if (!is.null(con) && !inherits(con, "DBIConnection")) {
    stop_arg("con", "must be a DBI connection or NULL", "give `con = DBI::dbConnect(...)`.")
  }
  for (nm in names(tables)) {
    x <- tables[[nm]]
    if (is.null(x) || is.data.frame(x) && !inherits(x, c("tbl_lazy", "tbl_sql"))) next
    if (!is_db_table(x, con)) next            # sfp_data() reports the wrong type
    d <- dbi_read(x, con, nm)
    note(nm, NA_character_, "read from the database (rows)", nrow(d))
    cols <- .schema[[nm]]$columns
    for (col in intersect(names(cols), names(d))) {
      v <- d[[col]]
      type <- cols[[col]]$type
      if (type == "date" && inherits(v, "POSIXt")) {
        note(nm, col, "date-time -> Date", sum(!is.na(v)))
        d[[col]] <- as.Date(v, tz = attr(v, "tzone") %||% "")
      } else if (type == "date" && is.numeric(v)) {
        note(nm, col, "number (days since 1970-01-01) -> Date", sum(!is.na(v)))
        d[[col]] <- .Date(as.double(v))
      } else if (type == "lgl" && is.numeric(v) && all(v[!is.na(v)] %in% c(0, 1))) {
        note(nm, col, "0/1 from the database -> logical", sum(!is.na(v)))
        d[[col]] <- as.logical(v)
      } else if (type == "int" && is.double(v) && all(v[!is.na(v)] == round(v[!is.na(v)]))) {
        d[[col]] <- as.integer(v)
      }
    }
    tables[[nm]] <- d
  }
  list(tables = tables, conversions = conv)
}

#' Write sfp_data tables into a database
#'
#' Writes the tables of an [sfp_data()] object into a DBI database (one
#' database table per non-empty table, named as in [sfp_tables()], with a
#' `prefix`), in a form every SQL database holds: dates stay dates where the
#' driver supports them, and the `disability` list column becomes codes
#' separated by `;`. [sfp_data()] reads them back with `con`. Used to put
#' records (for example simulated ones) where analysts keep theirs, and by
#' the tests.
#'
#' @param x An `sfp_data` object.
#' @param con A DBI connection.
#' @param prefix Prefix for the table names.
#' @param overwrite Passed to [DBI::dbWriteTable()].
#' @return The database table names, invisibly, named by schema table.
#' @examplesIf requireNamespace("RSQLite", quietly = TRUE)
#' x <- simulate_sfp("family_valued", children_per_la_year = 30, seed = 1)
#' con <- DBI::dbConnect(RSQLite::SQLite(), ":memory:")
#' write_db(x, con)
#' y <- sfp_data(children = "children",
#'               referrals = "SELECT * FROM referrals",
#'               con = con, warn = FALSE)
#' attr(y, "conversions")
#' DBI::dbDisconnect(con)
#' @export
write_db <- function(x, con, prefix = "", overwrite = FALSE) {
  if (!inherits(x, "sfp_data")) stop_arg("x", "must be an sfp_data object", "build it with sfp_data() or simulate_sfp().")
  if (!requireNamespace("DBI", quietly = TRUE)) stop_arg("con", "needs the DBI package", "install DBI.")
  if (!inherits(con, "DBIConnection")) {
    stop_arg("con", sprintf("must be a DBI connection, not %s", class(con)[1]), "give `con = DBI::dbConnect(...)`.")
  }
  if (!is.character(prefix) || length(prefix) != 1L || is.na(prefix)) {
    stop_arg("prefix", sprintf("must be one string, not %s", describe_value(prefix)), "give e.g. prefix = \"sfp_\", or \"\".")
  }
  if (!isTRUE(overwrite) && !isFALSE(overwrite)) {
    stop_arg("overwrite", sprintf("must be TRUE or FALSE, not %s", describe_value(overwrite)),
             "use overwrite = TRUE to replace tables of the same names.")
  }
  out <- character()
  for (nm in names(x)) {
    d <- x[[nm]]
    if (is.null(d)) next
    for (col in names(d)) if (is.list(d[[col]])) {
      d[[col]] <- vapply(d[[col]], function(v) {
        if (all(is.na(v))) NA_character_ else paste(v, collapse = ";")
      }, "")
    }
    DBI::dbWriteTable(con, paste0(prefix, nm), d, overwrite = overwrite)
    out[nm] <- paste0(prefix, nm)
  }
  invisible(out)
}
