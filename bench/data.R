# Benchmark of sfp_data() on England-scale tables (issue #2, section 3).
# Run after `R CMD INSTALL --library=/tmp/lib-data .` with
# `R_LIBS=/tmp/lib-data Rscript bench/data.R`. One core.
#
# There is no package that validates this schema, so the reference is the
# least a hand-written base-R check would do on the same table: parse the
# dates, look up the codes, test the key for duplicates and the date order
# (no messages, no conversions log, no soft problems).
library(sfpceval)
set.seed(2026)
n <- 1e6
referrals <- data.frame(
  referral_id = paste0("R", seq_len(n)),
  child_id = paste0("C", sample.int(4e5, n, TRUE)),
  referral_date = as.Date("2015-04-01") + sample.int(3000, n, TRUE),
  primary_need = sample(sfp_codes("primary_need"), n, TRUE),
  referral_source = sample(sfp_codes("referral_source"), n, TRUE),
  closure_reason = sample(sfp_codes("closure_reason"), n, TRUE),
  referral_nfa = sample(c(TRUE, FALSE), n, TRUE),
  stringsAsFactors = FALSE
)
referrals$closure_date <- referrals$referral_date + sample.int(400, n, TRUE)
as_strings <- referrals
as_strings$referral_date <- format(referrals$referral_date, "%d/%m/%Y")
as_strings$closure_date <- format(referrals$closure_date, "%Y-%m-%d")

reference <- function(x) {
  d1 <- as.Date(x$referral_date, format = "%d/%m/%Y")
  d2 <- as.Date(x$closure_date, format = "%Y-%m-%d")
  stopifnot(!anyNA(d1), !anyNA(d2),
            all(x$primary_need %in% sfp_codes("primary_need")),
            all(x$closure_reason %in% sfp_codes("closure_reason")),
            !anyDuplicated(x$referral_id), all(d2 >= d1))
  invisible(TRUE)
}

time <- function(expr) unname(system.time(expr)["elapsed"])
t_date <- time(sfp_data(referrals = referrals))
t_str <- time(x <- sfp_data(referrals = as_strings))
t_ref <- time(reference(as_strings))
t_sum <- time(summary(x))

children <- data.frame(
  child_id = paste0("C", seq_len(n)),
  la_code = sample(sprintf("L%02d", 1:25), n, TRUE),
  dob = as.Date("2000-01-01") + sample.int(8000, n, TRUE),
  gender_raw = sample(c("1", "2"), n, TRUE),
  ethnicity = sample(sfp_codes("ethnicity"), n, TRUE),
  disability = sample(c("NONE", "MOB;LD", NA, "AUT"), n, TRUE),
  stringsAsFactors = FALSE
)
t_ch <- time(sfp_data(children = children))

cat(sprintf("sfp_data(), %s referrals, Date columns:          %5.2f s\n",
            format(n, big.mark = ",", scientific = FALSE), t_date))
cat(sprintf("sfp_data(), %s referrals, date strings:          %5.2f s\n",
            format(n, big.mark = ",", scientific = FALSE), t_str))
cat(sprintf("bare base-R checks on the same strings (reference): %5.2f s; ratio %.2f\n",
            t_ref, t_str / t_ref))
cat(sprintf("summary() of that object:                            %5.2f s\n", t_sum))
cat(sprintf("sfp_data(), %s children with ';' disability codes: %5.2f s\n",
            format(n, big.mark = ",", scientific = FALSE), t_ch))
