# How often does the protocol's pre-period trend matching find a comparator
# the simulator built parallel to a treated authority? (Not a speed target:
# an accuracy study of match_trends() on simulate_sfp() data.)
#
# For each setting and seed: simulate the Family Safeguarding pool (25 LAs,
# 5 treated, 15 comparators built parallel to a treated LA and 5 with their
# own paths; records to mid-2022 are all the matching needs), build the
# cohort from 2015-04-01 (the protocol matches on the four years before
# go-live), run match_trends() with the protocol's settings and record the
# rank of the best parallel comparator for each treated LA.
#
# Settings: the defaults (4,700 new children per LA-year, about 3,400 aged
# 0-12 in the cohort: the protocol's cluster size; quarter-to-quarter LA
# movement SD 0.8 on the logit scale), weaker movement (trend_sd 0.4) and
# the default movement at the earlier default size (1,500 per LA-year).
# Run after
#   R CMD INSTALL --library=/tmp/lib-mt .
# with R_LIBS=/tmp/lib-mt:  Rscript bench/match_trends.R [n_seeds]
library(sfpceval)
args <- commandArgs(TRUE)
n_seeds <- if (length(args)) as.integer(args[1]) else 5L

settings <- list(
  "default (4,700/LA-year, trend_sd 0.8)" = list(),
  "weaker movement (trend_sd 0.4)" = list(trend_sd = 0.4),
  "smaller LAs (1,500/LA-year)" = list(children_per_la_year = 1500)
)

best_parallel_rank <- function(seed, extra) {
  x <- do.call(simulate_sfp, c(list("family_safeguarding", seed = seed,
                                    end = "2022-06-30",
                                    last_referral = "2020-12-31"), extra))
  d <- design_family_safeguarding(x, trial_start = as.Date("2015-04-01"))
  co <- suppressMessages(build_cohort(x, d))
  m <- match_trends(co, d, "cla_18m", n_candidates = 20)
  par <- attr(x, "truth")$parallel_to
  cand <- m$candidates
  hit <- !is.na(par[cand$comparator_la]) & par[cand$comparator_la] == cand$treated_la
  tapply(seq_len(nrow(cand)), cand$treated_la,
         function(i) min(c(cand$rank[i][hit[i]], Inf)))
}

cat(sprintf("%d simulated data sets per setting, 5 treated LAs each\n\n", n_seeds))
for (nm in names(settings)) {
  t0 <- proc.time()[["elapsed"]]
  ranks <- sapply(seq_len(n_seeds), best_parallel_rank, extra = settings[[nm]])
  cat(sprintf("%-40s parallel ranked first: %5.1f%% of treated LAs, all five in %d of %d data sets; median rank when not first: %s (%.0f s)\n",
              nm, 100 * mean(ranks == 1), sum(colSums(ranks == 1) == 5), n_seeds,
              if (any(ranks > 1)) format(stats::median(ranks[ranks > 1])) else "-",
              proc.time()[["elapsed"]] - t0))
}
