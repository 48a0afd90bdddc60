# Benchmark for did_fit() (CR2 + Satterthwaite df) and wild_boot() (issue #5).
# Run after installing the package into a private library:
#   R CMD INSTALL --library=/tmp/lib-did . && R_LIBS=/tmp/lib-did Rscript bench/did.R
# Targets: 100,000 children in 10 LAs with LA and year effects, CR2 + df in
# <= 1 s and >= 100x faster than clubSandwich on a 20,000-child subsample;
# full Webb enumeration (6^5 = 7,776 draws, 5 clusters) in <= 0.5 s.
library(sfpceval)
set.seed(2026)
n <- 100000
d <- data.frame(la = sample(sprintf("LA%02d", 1:10), n, TRUE),
                year = sample(2014:2020, n, TRUE))
d$treated <- as.integer(d$la %in% sprintf("LA%02d", 1:5) & d$year >= 2017)
d$age <- sample(0:17, n, TRUE)
d$female <- rbinom(n, 1, 0.5)
d$w <- runif(n, 0.5, 2)
la_eff <- rnorm(10, sd = 0.05)
d$y <- rbinom(n, 1, pmin(pmax(0.2 + la_eff[as.integer(factor(d$la))] + 0.01 * (d$year - 2014) +
                               0.005 * d$age, 0.01), 0.99))

time_it <- function(expr, reps = 3) {
  e <- substitute(expr)
  env <- parent.frame()
  min(vapply(seq_len(reps), function(i) system.time(eval(e, env))[["elapsed"]], 0))
}
fml <- y ~ treated + age + female | la + year

t_full <- time_it(fit <- did_fit(fml, d, cluster = ~la, vcov = "CR2", family = "gaussian"))
t_full_w <- time_it(did_fit(fml, d, cluster = ~la, weights = "w", vcov = "CR2", family = "gaussian"))
sub <- d[sample(n, 20000), ]
t_sub <- time_it(fs <- did_fit(fml, sub, cluster = ~la, vcov = "CR2", family = "gaussian"))
cat(sprintf("did_fit CR2 + Satterthwaite, N = 100,000, 10 LAs: %.3f s (weighted: %.3f s)\n", t_full, t_full_w))
cat(sprintf("did_fit CR2 + Satterthwaite, N =  20,000, 10 LAs: %.3f s\n", t_sub))
if (requireNamespace("clubSandwich", quietly = TRUE)) {
  st <- system.time({
    m <- lm(y ~ factor(la) + factor(year) + treated + age + female, sub)
    V <- clubSandwich::vcovCR(m, cluster = sub$la, type = "CR2")
    ct <- clubSandwich::coef_test(m, vcov = V, test = "Satterthwaite")
  })
  t_cs <- st[["elapsed"]]
  cat(sprintf("clubSandwich (lm + vcovCR CR2 + coef_test Satterthwaite), N = 20,000: %.2f s elapsed (%.2f s CPU)\n",
              t_cs, st[["user.self"]] + st[["sys.self"]]))
  cat(sprintf("ratio clubSandwich(20,000) / sfpceval(20,000):  %.0fx\n", t_cs / t_sub))
  cat(sprintf("ratio clubSandwich(20,000) / sfpceval(100,000): %.0fx\n", t_cs / t_full))
  cat(sprintf("max |df difference| on the subsample: %.2e; max |SE rel. diff|: %.2e\n",
              max(abs(fs$df - ct[names(fs$df), "df_Satt"])),
              max(abs(sqrt(diag(vcov(fs))) / ct[names(fs$df), "SE"] - 1))))
}

d5 <- d[d$la %in% sprintf("LA%02d", c(1:3, 6:7)), ]
f5 <- did_fit(fml, d5, cluster = ~la, vcov = "CR1", family = "gaussian")
t_wb <- time_it(wb <- wild_boot(f5, "treated", weights = "webb"))
cat(sprintf("wild_boot Webb full enumeration (%d draws, 5 clusters, N = %s) incl. CI: %.3f s\n",
            wb$B, format(nrow(d5), big.mark = ","), t_wb))
