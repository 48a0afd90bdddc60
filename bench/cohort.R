# Benchmark for issue #3: build both protocols' cohorts (every outcome, the
# absence panel and the exclusion flow) from 100,000 simulated children with
# all their records. Target: at most 2 s per cohort.
#
# Run after installing the package into a private library:
#   R CMD INSTALL --library=/tmp/lib-cohort . &&
#   R_LIBS=/tmp/lib-cohort Rscript --vanilla bench/cohort.R
#
# There is no reference package that builds these cohorts; the plain-R
# reference of tests/testthat/test-cohort.R is checked there for equality,
# not timed here (it loops over children and would take hours at this size).
library(sfpceval)

n_target <- 100000
time_it <- function(expr) {
  t <- system.time(expr)
  unname(t[["elapsed"]])
}

# Family Valued: 5 LAs; first referrals over the 5 years before the end of
# the trial period. Family Safeguarding: 25 LAs over 9 years of records.
settings <- list(
  family_valued = list(n_la = 5L, years = 5),
  family_safeguarding = list(n_la = 25L, years = 9)
)
res <- list()
for (design in names(settings)) {
  s <- settings[[design]]
  cpy <- n_target / (s$n_la * s$years)
  t_sim <- time_it(x <- suppressWarnings(simulate_sfp(design, n_la = s$n_la,
                                                     children_per_la_year = cpy,
                                                     seed = 1)))
  n_children <- length(unique(x$children$child_id))
  des <- if (design == "family_valued") design_family_valued(x) else
    design_family_safeguarding(x)
  invisible(gc(reset = TRUE))
  mem0 <- sum(gc()[, 2])
  t_build <- time_it(co <- suppressMessages(build_cohort(x, des)))
  peak_mb <- sum(gc()[, 6]) - mem0                  # "max used" (Mb) since the reset
  # a second run (warm caches), report the faster
  t_build2 <- time_it(co <- suppressMessages(build_cohort(x, des)))
  # Family Valued: the reunification population (children entering care)
  t_care <- if (design == "family_valued")
    time_it(suppressMessages(build_cohort(x, des, outcomes = "reunified_18m"))) else NA
  res[[design]] <- data.frame(
    design = design, children = n_children,
    records = sum(vapply(x, NROW, 1L)), cohort = nrow(co),
    absence_rows = nrow(absence_panel(co)), simulate_s = round(t_sim, 2),
    build_cohort_s = round(min(t_build, t_build2), 2),
    reunification_s = round(t_care, 2), peak_mem_mb = round(peak_mb),
    target_s = 2, ratio_to_target = round(min(t_build, t_build2) / 2, 2))
}
out <- do.call(rbind, res)
rownames(out) <- NULL
print(out)
cat(sprintf("Both cohorts: %.2f s (target 2 s each)\n", sum(out$build_cohort_s)))
