# Size of few_treated_test() with one or two treated authorities (issue #13),
# next to the cluster-robust and wild-bootstrap tests it replaces there.
# Null data shaped like the Family Safeguarding protocol: 5 comparator
# authorities plus 1 (or 2) treated, 6 years, 60 children per authority-year,
# authority-year shocks AR(1) (rho = 0.5), a child covariate, go-lives inside
# a year (the child's referral date decides treatment, so go-live years are
# split cells), no effect. Rejection rate at 5% with its Monte Carlo SE.
# Not a test: run once with
#   nice Rscript bench/few_treated_size.R [reps] [B] [extra]
# With "extra", it also runs the designs the model does not assume or that
# give it little to learn from: one comparator only, rho = 0.8, a treated
# authority with twice the shock SD (analysed with shock_ratio 1 and 4),
# treated authorities four times larger.
library(sfpceval)   # installed: R CMD INSTALL . (or make bench)
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args) >= 1) as.integer(args[1]) else 1000L
B <- if (length(args) >= 2) as.integer(args[2]) else 399L
extra <- length(args) >= 3 && args[3] == "extra"
Tn <- 6
n_cell <- 60
sim_one <- function(G, go_live, rho = 0.5, sd = rep(0.15, G), size = rep(1, G)) {
  d <- expand.grid(i = seq_len(n_cell * max(size)), year = seq_len(Tn), la = seq_len(G))
  d <- d[d$i <= n_cell * size[d$la], ]
  shock <- t(vapply(seq_len(G), function(a) as.numeric(stats::arima.sim(list(ar = rho), Tn, sd = sd[a])),
                    numeric(Tn)))
  d$when <- d$year + stats::runif(nrow(d))                 # referral date within the year
  d$treated <- as.integer(!is.na(go_live[d$la]) & d$when >= go_live[d$la])
  d$age <- sample(0:17, nrow(d), TRUE)
  d$y <- 0.3 + 0.05 * d$la / G + 0.02 * d$year + 0.005 * d$age +
    shock[cbind(d$la, d$year)] + stats::rnorm(nrow(d), sd = 0.5)
  d
}
run <- function(G, go_live, label, seed, ..., shock_ratio = 1) {
  set.seed(seed)
  res <- matrix(NA, reps, 3, dimnames = list(NULL, c("few_treated_test()", "CR2, Satterthwaite",
                                                     "WCR, Webb")))
  t0 <- proc.time()[["elapsed"]]
  for (b in seq_len(reps)) {
    d <- sim_one(G, go_live, ...)
    ft <- few_treated_test(y ~ treated + age, d, "la", "year", B = B, seed = b, conf_int = FALSE,
                           shock_ratio = shock_ratio)
    f2 <- suppressWarnings(suppressMessages(
      did_fit(y ~ treated + age | la + year, d, cluster = ~la, family = "gaussian")))
    f1 <- suppressWarnings(update(f2, vcov = "CR1"))
    t2 <- coef(f2)[["treated"]] / sqrt(vcov(f2)["treated", "treated"])
    wb <- suppressWarnings(wild_boot(f1, "treated", weights = "webb", B = B, seed = b,
                                     conf_int = FALSE))
    res[b, ] <- c(ft$p_value < 0.05, 2 * pt(-abs(t2), f2$df[["treated"]]) < 0.05,
                  wb$p_value < 0.05)
  }
  secs <- proc.time()[["elapsed"]] - t0
  p <- colMeans(res)
  cat(sprintf("\n%s: %d null data sets, B = %d (%.0f s)\n", label, reps, B, secs))
  for (k in seq_along(p)) {
    cat(sprintf("  %-22s rejects %5.1f%% at 5%% (Monte Carlo SE %.1f)\n", colnames(res)[k],
                100 * p[k], 100 * sqrt(p[k] * (1 - p[k]) / reps)))
  }
  invisible(p)
}
invisible(gc(reset = TRUE))
run(6, c(4.4, rep(NA, 5)), "1 treated authority of 6 (go-live inside year 4)", 20261203)
run(7, c(3.6, 4.4, rep(NA, 5)), "2 treated authorities of 7 (go-lives inside years 3 and 4)", 20261204)
if (extra) {
  run(2, c(4.4, NA), "1 treated authority, 1 comparator", 20261205)
  run(6, c(4.4, rep(NA, 5)), "1 of 6, rho = 0.8", 20261206, rho = 0.8)
  run(6, c(4.4, rep(NA, 5)), "1 of 6, the treated authority's shocks twice as variable", 20261207,
      sd = c(0.3, rep(0.15, 5)))
  run(6, c(4.4, rep(NA, 5)), "the same, analysed with shock_ratio = 4 (the true ratio)", 20261207,
      sd = c(0.3, rep(0.15, 5)), shock_ratio = 4)
  run(7, c(3.6, 4.4, rep(NA, 5)), "2 of 7, treated authorities 4x the children", 20261208,
      size = c(4, 4, rep(1, 5)))
}
cat(sprintf("\npeak memory %.0f MB\n", sum(gc()[, 6])))
