# The input schema (`vignette("data")`) as data: for each table its key,
# its columns (type, required or optional, whether NA is allowed, the code
# list it is checked against and whether an unknown code is an error or a
# warning), its foreign keys and its date-order rules. sfp_data() validates
# against this; simulate_sfp() produces it; build_cohort() reads it.
#
# Types: "chr" character codes/ids, "date" Date, "lgl" logical, "int" integer
# count, "dbl" double, "list_chr" list of character vectors (or a character
# column of codes separated by ";" or ",").

col_spec <- function(type, required = TRUE, na = TRUE, codes = NULL,
                     unknown = c("error", "warning")) {
  list(type = type, required = required, na = na, codes = codes,
       unknown = match.arg(unknown))
}

.schema <- list(
  children = list(
    key = "child_id",
    # With a `recorded_date` column the table may hold one row per child per
    # return (census); the key is then child_id + recorded_date and the cohort
    # builder applies the protocol's rules over time.
    key_over_time = c("child_id", "recorded_date"),
    columns = list(
      child_id = col_spec("chr", na = FALSE),
      la_code = col_spec("chr", na = FALSE),
      dob = col_spec("date"),
      expected_dob = col_spec("date", required = FALSE),
      gender_raw = col_spec("chr", codes = "gender_raw"),
      ethnicity = col_spec("chr", codes = "ethnicity"),
      disability = col_spec("list_chr", required = FALSE, codes = "disability"),
      uasc = col_spec("lgl", required = FALSE),
      fsm_ever6 = col_spec("lgl", required = FALSE),
      fsm_ever = col_spec("lgl", required = FALSE),
      recorded_date = col_spec("date", required = FALSE, na = FALSE)
    ),
    foreign = list(),
    order = list()
  ),
  referrals = list(
    key = "referral_id",
    columns = list(
      referral_id = col_spec("chr", na = FALSE),
      child_id = col_spec("chr", na = FALSE),
      referral_date = col_spec("date", na = FALSE),
      referral_source = col_spec("chr", required = FALSE,
                                 codes = "referral_source", unknown = "warning"),
      primary_need = col_spec("chr", required = FALSE, codes = "primary_need"),
      closure_date = col_spec("date"),
      closure_reason = col_spec("chr", required = FALSE, codes = "closure_reason"),
      referral_nfa = col_spec("lgl", required = FALSE),
      # the authority the referral was made to, where the extract records it
      la_code = col_spec("chr", required = FALSE),
      # the referral led directly to a MARAC (FS re-referral outcome)
      marac = col_spec("lgl", required = FALSE)
    ),
    foreign = list(child_id = "children"),
    order = list(c("referral_date", "closure_date"))
  ),
  assessments = list(
    key = "assessment_id",
    columns = list(
      assessment_id = col_spec("chr", na = FALSE),
      referral_id = col_spec("chr", na = FALSE),
      assessment_start = col_spec("date", na = FALSE),
      assessment_end = col_spec("date")
    ),
    foreign = list(referral_id = "referrals"),
    order = list(c("assessment_start", "assessment_end"))
  ),
  assessment_factors = list(
    key = c("assessment_id", "factor"),
    columns = list(
      assessment_id = col_spec("chr", na = FALSE),
      factor = col_spec("chr", na = FALSE, codes = "factor")
    ),
    foreign = list(assessment_id = "assessments"),
    order = list()
  ),
  cin_plans = list(
    key = c("referral_id", "start"),
    columns = list(
      referral_id = col_spec("chr", na = FALSE),
      start = col_spec("date", na = FALSE),
      end = col_spec("date")
    ),
    foreign = list(referral_id = "referrals"),
    order = list(c("start", "end"))
  ),
  cp_plans = list(
    key = c("referral_id", "start"),
    columns = list(
      referral_id = col_spec("chr", na = FALSE),
      start = col_spec("date", na = FALSE),
      end = col_spec("date"),
      initial_category = col_spec("chr", required = FALSE,
                                  codes = "cp_category", unknown = "warning"),
      latest_category = col_spec("chr", required = FALSE,
                                 codes = "cp_category", unknown = "warning"),
      n_previous_cpp = col_spec("int", required = FALSE)
    ),
    foreign = list(referral_id = "referrals"),
    order = list(c("start", "end"))
  ),
  cla_episodes = list(
    key = c("child_id", "decom"),
    columns = list(
      child_id = col_spec("chr", na = FALSE),
      decom = col_spec("date", na = FALSE),
      dec = col_spec("date"),
      rne = col_spec("chr", na = FALSE, codes = "rne"),
      ls = col_spec("chr", na = FALSE, codes = "ls"),
      cin = col_spec("chr", required = FALSE, codes = "cin_903",
                     unknown = "warning"),
      place = col_spec("chr", na = FALSE, codes = "place"),
      place_provider = col_spec("chr", required = FALSE,
                                codes = "place_provider", unknown = "warning"),
      rec = col_spec("chr", codes = "rec")
    ),
    foreign = list(child_id = "children"),
    order = list(c("decom", "dec"))
  ),
  absence = list(
    key = c("child_id", "academic_year", "term"),
    columns = list(
      child_id = col_spec("chr", na = FALSE),
      academic_year = col_spec("chr", na = FALSE),
      term = col_spec("chr", na = FALSE, codes = "term"),
      sessions_possible = col_spec("int"),
      unauth_sessions = col_spec("int")
    ),
    foreign = list(child_id = "children"),
    order = list()
  ),
  la_covariates = list(
    key = c("la_code", "month"),
    columns = list(
      la_code = col_spec("chr", na = FALSE),
      month = col_spec("date", na = FALSE),
      prop_fsm = col_spec("dbl", required = FALSE),
      prop_white_british = col_spec("dbl", required = FALSE),
      other_innovation_programme = col_spec("lgl", required = FALSE)
    ),
    foreign = list(),
    order = list()
  ),
  rollout = list(
    key = c("la_code", "programme", "role", "matched_to_la", "outcome"),
    columns = list(
      la_code = col_spec("chr", na = FALSE),
      programme = col_spec("chr", na = FALSE, codes = "programme"),
      role = col_spec("chr", na = FALSE, codes = "role"),
      matched_to_la = col_spec("chr", required = FALSE),
      outcome = col_spec("chr", required = FALSE),
      go_live_date = col_spec("date"),
      wedge_order = col_spec("int", required = FALSE),
      stratum = col_spec("chr", required = FALSE, codes = "stratum"),
      trial_start = col_spec("date", required = FALSE),
      trial_end = col_spec("date", required = FALSE),
      embed_start = col_spec("date", required = FALSE),
      embed_end = col_spec("date", required = FALSE),
      alt_go_live_date = col_spec("date", required = FALSE)
    ),
    foreign = list(),
    order = list(c("trial_start", "trial_end"), c("embed_start", "embed_end"))
  )
)

#' The tables of the input schema
#'
#' The names of the tables `sfp_data()` takes, in order, and for one table the
#' columns it expects with their types and whether they are required.
#'
#' @param table `NULL` for the table names, or one table name for its columns.
#' @return A character vector of table names, or a data frame with one row per
#'   column: `column`, `type`, `required`, `na_allowed`, `codes` (the
#'   [sfp_codes()] list its values are checked against).
#' @examples
#' sfp_tables()
#' sfp_tables("cla_episodes")
#' @export
sfp_tables <- function(table = NULL) {
  if (is.null(table)) return(names(.schema))
  if (!is.character(table) || length(table) != 1L || !table %in% names(.schema)) {
    stop_arg("table", paste0("must be one of: ",
                             paste(names(.schema), collapse = ", ")))
  }
  cols <- .schema[[table]]$columns
  data.frame(
    column = names(cols),
    type = vapply(cols, `[[`, "", "type"),
    required = vapply(cols, `[[`, TRUE, "required"),
    na_allowed = vapply(cols, `[[`, TRUE, "na"),
    codes = vapply(cols, function(x) x$codes %||% NA_character_, ""),
    row.names = NULL, stringsAsFactors = FALSE
  )
}
