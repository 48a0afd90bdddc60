# Benchmark of simulate_sfp(): 100,000 children with all their records on
# one core (target: at most 5 s, aim ~1 s). There is no reference package
# for this step; the figures are the time and the rows per table.
# Run after R CMD INSTALL --library=/tmp/lib-sim . with R_LIBS=/tmp/lib-sim.
library(sfpceval)

time_it <- function(expr) {
  t <- system.time(x <- expr)
  list(x = x, t = t)
}

# Family Valued: 5 LAs x 4,000 new children a year x 5 years of first
# referrals (2017-10-01 to 2022-09-30) = 100,000 children. The first call
# in a session includes the pilot walk of the calibration (cached after).
r <- time_it(simulate_sfp("family_valued", children_per_la_year = 4000,
                          seed = 1))
cat(sprintf("family_valued: %s children in %.2f s elapsed (%.2f s user)\n",
            format(nrow(r$x$children), big.mark = ","), r$t[["elapsed"]],
            r$t[["user.self"]]))
print(vapply(r$x, NROW, 0L))
cat(sprintf("records in all: %s\n",
            format(sum(vapply(r$x, NROW, 0L)), big.mark = ",")))
r1 <- time_it(simulate_sfp("family_valued", children_per_la_year = 4000,
                           seed = 2))
cat(sprintf("again (calibration cached): %.2f s elapsed (%.2f s user)\n",
            r1$t[["elapsed"]], r1$t[["user.self"]]))

# Family Safeguarding defaults: 25 LAs x 4,700 a year x 9 years (the
# protocol's cluster size; about a million children).
r2 <- time_it(simulate_sfp("family_safeguarding", seed = 1))
cat(sprintf("family_safeguarding (defaults): %s children in %.2f s elapsed (%.2f s user)\n",
            format(nrow(r2$x$children), big.mark = ","), r2$t[["elapsed"]],
            r2$t[["user.self"]]))
print(vapply(r2$x, NROW, 0L))
