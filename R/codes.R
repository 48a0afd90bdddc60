# The official code lists of the input schema (`vignette("data")`) and the
# outcome code sets the protocols rely on. One place, used by validation,
# simulation and the cohort builder alike.

.code_lists <- list(
  gender_raw = c("0", "1", "2", "9", "M", "F", "U"),
  ethnicity = c("WBRI", "WIRI", "WIRT", "WOTH", "WROM",
                "MWBC", "MWBA", "MWAS", "MOTH",
                "AIND", "APKN", "ABAN", "AOTH",
                "BCRB", "BAFR", "BOTH",
                "CHNE", "OOTH",
                "REFU", "NOBT"),
  disability = c("NONE", "MOB", "HAND", "PC", "INC", "COMM", "LD", "HEAR",
                 "VIS", "BEH", "CON", "AUT", "DDA"),
  referral_source = c("1A", "1B", "1C", "1D", "2A", "2B",
                      "3A", "3B", "3C", "3D", "3E", "3F", "4",
                      "5A", "5B", "5C", "5D", "6", "7", "8", "9", "10"),
  primary_need = paste0("N", 0:9),
  closure_reason = paste0("RC", 1:9),
  factor = c("1A", "1B", "1C", "2A", "2B", "2C", "3A", "3B", "3C",
             "4A", "4B", "4C", "5A", "5B", "5C", "6A", "6B", "6C", "7A",
             "8B", "8C", "8D", "8E", "8F", "9A", "10A", "11A", "12A", "13A",
             "14A", "15A", "16A", "17A", "18A", "19A", "18B", "18C", "19B",
             "19C", "20", "21", "22A", "23A", "24A"),
  cp_category = c("NEG", "PHY", "SAB", "EMO", "MUL"),
  rne = c("S", "L", "P", "T", "B", "U"),
  ls = c("C1", "C2", "D1", "E1", "V2", "V3", "V4", "L1", "L2", "L3",
         "J1", "J2", "J3"),
  cin_903 = paste0("N", 1:8),
  place = c("A3", "A4", "A5", "A6", "H5", "K1", "K2", "K3", "P1", "P2", "P3",
            "R1", "R2", "R3", "R5", "S1", "T0", "T1", "T2", "T3", "T4",
            "U1", "U2", "U3", "U4", "U5", "U6", "Z1", "Z11", "Z12", "Z13",
            "Z14"),
  place_provider = paste0("PR", 0:5),
  rec = c("X1", "E11", "E12", "E2", "E3", "E4A", "E4B", "E13", "E41", "E45",
          "E46", "E47", "E48", "E5", "E6", "E7", "E8", "E9", "E14", "E15",
          "E16", "E17"),
  term = c("autumn", "spring", "summer", "summer6th"),
  programme = c("FS", "FV"),
  role = c("treated", "comparator"),
  stratum = c("high", "low")
)

.code_sets <- list(
  kinship = c("U1", "U2", "U3"),
  reunification = c("E4A"),
  reunification_sensitivity = c("E4A", "E4B"),
  short_breaks = c("V3", "V4"),
  toxic_trio_core = c("1B", "2B", "3A", "3B", "3C", "4B"),
  toxic_trio_broad = c("1B", "2B", "1C", "2C", "3A", "3B", "3C", "4B", "4C"),
  substance_misuse = c("1B", "2B"),
  domestic_violence = c("3A", "3B", "3C"),
  mental_health = c("4B"),
  closed_after_assessment = c("RC8", "RC9")
)

#' Official code lists and outcome code sets
#'
#' The code lists the input schema accepts (CIN census, SSDA903, NPD; see
#' `vignette("sfpceval")` and `vignette("data")`) and the code
#' sets the protocols' outcomes are built from.
#'
#' Code sets: `kinship` (first placement `U1`-`U3`, foster placement with
#' relatives or friends), `reunification` (`rec` `E4A`, returned home as part
#' of care planning; `reunification_sensitivity` adds `E4B`), `short_breaks`
#' (legal status `V3`/`V4`), the toxic-trio assessment factors
#' (`toxic_trio_core`: 1B, 2B parental substance misuse, 3A-3C domestic
#' violence, 4B parental mental health; `toxic_trio_broad` adds 1C, 2C, 4C)
#' and `closed_after_assessment` (`RC8`, `RC9`).
#'
#' @param name `NULL` for every list, or the name of one code list or code
#'   set.
#' @return A named list of character vectors, or one character vector.
#' @examples
#' sfp_codes("kinship")
#' names(sfp_codes())
#' @export
sfp_codes <- function(name = NULL) {
  all <- c(.code_lists, .code_sets)
  if (is.null(name)) return(all)
  if (!is.character(name) || length(name) != 1L || !name %in% names(all)) {
    stop("`name` must be one of: ", paste(names(all), collapse = ", "), ".",
         "\nFix: give one of these names, or call sfp_codes() for all the lists.",
         call. = FALSE)
  }
  all[[name]]
}

#' Ethnic major group from CIN ethnicity codes
#'
#' Groups the CIN census ethnicity codes into the major groups of the Family
#' Safeguarding protocol (footnote 11): White (`W*`), Mixed (`M*`), Asian
#' (`AIND`, `APKN`, `ABAN`, `AOTH`), Black (`B*`), Other (`OOTH`, and `CHNE`
#' by the DfE ChAT convention) and Missing (`REFU`, `NOBT`, `NA`).
#'
#' @param x Character vector of CIN ethnicity codes.
#' @param chne Where Chinese (`CHNE`) goes: `"other"` (DfE ChAT convention,
#'   the default) or `"asian"`.
#' @return A factor with levels White, Mixed, Asian, Black, Other, Missing.
#' @examples
#' ethnic_group(c("WBRI", "CHNE", "BAFR", NA))
#' ethnic_group("CHNE", chne = "asian")
#' @export
ethnic_group <- function(x, chne = c("other", "asian")) {
  chne <- match.arg(chne)
  x <- as.character(x)
  out <- rep("Missing", length(x))
  out[startsWith(x, "W")] <- "White"
  out[startsWith(x, "M")] <- "Mixed"
  out[x %in% c("AIND", "APKN", "ABAN", "AOTH")] <- "Asian"
  out[startsWith(x, "B")] <- "Black"
  out[x %in% "OOTH"] <- "Other"
  out[x %in% "CHNE"] <- if (chne == "other") "Other" else "Asian"
  out[is.na(x) | x %in% c("REFU", "NOBT")] <- "Missing"
  factor(out, levels = c("White", "Mixed", "Asian", "Black", "Other", "Missing"))
}
