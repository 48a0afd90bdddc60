#' Synthetic example records for the two protocols
#'
#' Small synthetic data sets in the input schema, made by [simulate_sfp()]
#' for examples and tests. They describe no real child or local authority:
#' LA codes are synthetic (`"901"`, `"902"`, ...), and every effect is zero.
#' `sfp_example_fv` follows the Family Valued stepped wedge (5 LAs going live
#' at six-month steps from 2020-04-01, stratified random order, trial period
#' 2019-10-01 to 2022-09-30, 400 new children per LA per year, records to
#' 2025-09-30). `sfp_example_fs` follows the Family Safeguarding
#' difference-in-differences design, scaled down to 3 treated LAs (going live
#' 2020-09-01, 2021-01-01 and 2021-05-01) and 5 candidate comparators (four
#' with trajectories parallel to a treated LA), 150 new children per LA per
#' year, records 2015-04-01 to 2024-03-31.
#'
#' `DESCRIPTION` has `LazyData: false`, so load them with
#' `data(sfp_example_fv)` or `data(sfp_example_fs)`.
#'
#' @format An `sfp_data` object: a named list of the ten input tables
#'   (`children`, `referrals`, `assessments`, `assessment_factors`,
#'   `cin_plans`, `cp_plans`, `cla_episodes`, `absence`, `la_covariates`,
#'   `rollout`; see [sfp_tables()]), with the true parameters in
#'   `attr(x, "truth")` (see [simulate_sfp()]). About 10,000 children and
#'   16,000 referrals each.
#' @source Simulated by `data-raw/example.R` with [simulate_sfp()]
#'   (`seed = 2020` and `seed = 2015`).
#' @examples
#' data(sfp_example_fv)
#' sapply(sfp_example_fv, NROW)
#' sfp_example_fv$rollout
#' data(sfp_example_fs)
#' attr(sfp_example_fs, "truth")$la
#' @name sfp_example
#' @aliases sfp_example_fv sfp_example_fs
#' @docType data
#' @keywords datasets
NULL
