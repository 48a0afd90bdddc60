# sfp_data(): validate and bundle the input tables.
# (Minimal constructor: required columns, types and coercion of dates. The
# full validation of issue #2 -- codes, keys, foreign keys, date order,
# plausible ranges, soft warnings -- is added on top of this.)

#' Validate and bundle the input tables
#'
#' @param children,referrals,assessments,assessment_factors,cin_plans,cp_plans,cla_episodes,absence,la_covariates,rollout
#'   Data frames in the schema of [sfp_tables()], or `NULL` for a table an
#'   analysis does not need.
#' @return An object of class `sfp_data`: a named list of the ten tables
#'   (`NULL` where not given), with dates as `Date`.
#' @examples
#' sfp_tables()
#' @export
sfp_data <- function(children = NULL, referrals = NULL, assessments = NULL,
                     assessment_factors = NULL, cin_plans = NULL,
                     cp_plans = NULL, cla_episodes = NULL, absence = NULL,
                     la_covariates = NULL, rollout = NULL) {
  tables <- list(children = children, referrals = referrals,
                 assessments = assessments,
                 assessment_factors = assessment_factors,
                 cin_plans = cin_plans, cp_plans = cp_plans,
                 cla_episodes = cla_episodes, absence = absence,
                 la_covariates = la_covariates, rollout = rollout)
  for (nm in names(tables)) {
    if (!is.null(tables[[nm]])) tables[[nm]] <- coerce_table(tables[[nm]], nm)
  }
  structure(tables, class = "sfp_data")
}

coerce_table <- function(x, table) {
  if (!is.data.frame(x)) {
    stop_arg(table, "must be a data frame or NULL")
  }
  x <- as.data.frame(x, stringsAsFactors = FALSE)
  spec <- .schema[[table]]$columns
  missing <- setdiff(names(spec)[vapply(spec, `[[`, TRUE, "required")], names(x))
  if (length(missing)) {
    stop(sprintf("Table `%s` lacks required column%s %s.\nFix: add %s (see sfp_tables(\"%s\")).",
                 table, if (length(missing) > 1) "s" else "",
                 paste0("`", missing, "`", collapse = ", "),
                 if (length(missing) > 1) "them" else "it", table),
         call. = FALSE)
  }
  for (col in intersect(names(spec), names(x))) {
    type <- spec[[col]]$type
    v <- x[[col]]
    x[[col]] <- switch(type,
      chr = if (is.factor(v)) as.character(v) else v,
      date = as_date_column(v, table, col),
      int = if (is.double(v) && all(is.na(v) | v == round(v))) as.integer(v) else v,
      list_chr = if (is.character(v)) strsplit(ifelse(is.na(v), "", v), "[;,][[:space:]]*") else v,
      v)
  }
  x
}

# Dates: Date as is; character in ISO (YYYY-MM-DD) or 903 CSV (dd/mm/YYYY)
# form converted; anything unparseable is an error naming the rows.
as_date_column <- function(v, table, column) {
  if (inherits(v, "Date")) return(v)
  if (inherits(v, "POSIXt")) return(as.Date(v))
  if (is.factor(v)) v <- as.character(v)
  if (!is.character(v) && !all(is.na(v))) {
    stop_rows(table, column, seq_along(v)[!is.na(v)][1],
              sprintf("hold %s values, not dates", class(v)[1]),
              "give `Date` values or character dates as YYYY-MM-DD or dd/mm/YYYY.")
  }
  v <- as.character(v)
  v[!is.na(v) & trimws(v) == ""] <- NA
  out <- as.Date(rep(NA_real_), origin = "1970-01-01")[rep(1L, length(v))]
  iso <- !is.na(v) & grepl("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", v)
  dmy <- !is.na(v) & grepl("^[0-9]{2}/[0-9]{2}/[0-9]{4}$", v)
  out[iso] <- as.Date(v[iso], format = "%Y-%m-%d")
  out[dmy] <- as.Date(v[dmy], format = "%d/%m/%Y")
  bad <- which(!is.na(v) & is.na(out))
  if (length(bad)) {
    stop_rows(table, column, bad, "are not valid dates",
              "give `Date` values or character dates as YYYY-MM-DD or dd/mm/YYYY.",
              keys = utils::head(v[bad], 5), key_name = "values")
  }
  out
}
