# analyse(FS)'s matched stacks by hand (test-analyse.R): match_trends() on the
# cohort built from the earliest referral on, for the primary outcome
# cla_18m; then the cohort rows `p` stacked by those pairs, the rows with
# `outcome` kept, CEM weights within pair x financial year, and the matched
# rows (weight > 0).
fs_stack_by_hand <- function(run, p, outcome) {
  mt <- suppressWarnings(match_trends(
    build_cohort(run$x, `[[<-`(run$d, "trial_start", min(run$x$referrals$referral_date)),
                 outcomes = c("cla_18m", "cpp_duration", "days_cpp_18m", "rereferral_18m")),
    run$d, "cla_18m"))
  st <- stack_pairs(p, mt, run$d)
  st <- st[!is.na(st[[outcome]]), ]
  st$cem_weight <- cem(data = st, design = run$d)$weights
  st[st$cem_weight > 0, ]
}
