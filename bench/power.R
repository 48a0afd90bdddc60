# Benchmark: 1,000 simulated Family Valued trials (5 LAs x 6 periods x 2,600
# children = 78,000 children each) analysed with the stepped-wedge GLMM
# (Laplace), on one core. Target: at most 60 s. Also times one glmer fit of
# one trial, for scale.
library(sfpceval)
design <- power_design()                      # the Family Valued trial
n_sims <- 1000L
t <- system.time(ps <- power_sim(design, effect = 0.007, n_sims = n_sims,
                                 parallel = FALSE, progress = FALSE))
print(ps)
cat(sprintf("power_sim(): %d trials of %s children, GLMM on each: %.1f s elapsed, %.1f s CPU (one core; target 60 s)\n",
            n_sims, format(sum(design$m), big.mark = ","), t[["elapsed"]],
            t[["user.self"]] + t[["sys.self"]]))
if (requireNamespace("lme4", quietly = TRUE)) {
  rows <- simulate_trial(design, 0.007, seed = 1, rows = TRUE)
  tg <- system.time(lme4::glmer(y ~ treated + factor(period) + (1 | cluster),
                                family = stats::binomial(), data = rows))
  cat(sprintf("one glmer() fit of one trial: %.1f s, so 1,000 would take about %.0f min\n",
              tg[["elapsed"]], 1000 * tg[["elapsed"]] / 60))
}
