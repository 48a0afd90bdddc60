#' sfpceval: impact analyses for the Strengthening Families, Protecting
#' Children evaluations
#'
#' sfpceval runs the pre-registered impact analyses of the Family Safeguarding
#' difference-in-differences protocol and the Family Valued stepped-wedge
#' cluster randomised trial protocol on pseudonymised children's social care
#' records.
#'
#' The data flow one way: raw tables are validated and bundled by
#' `sfp_data()` (or simulated by `simulate_sfp()`); a design object holds
#' every protocol parameter; the cohort builder turns records into one row per
#' child with arm, covariates, outcomes and an exclusion flow; the estimators
#' work on the cohort.
#'
#' @keywords internal
#' @useDynLib sfpceval, .registration = TRUE
#' @importFrom stats coef confint logLik nobs vcov update
"_PACKAGE"
