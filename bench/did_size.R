# Size simulation for did_fit()/wild_boot() (issue #5): 5 treated + 5
# comparator LAs, no treatment effect, LA-by-year shocks with AR(1) serial
# correlation (where DiD inference goes wrong), staggered go-live.
# Rejection rate at 5% of each inference method. Not a test: run once,
#   R_LIBS=/tmp/lib-did Rscript bench/did_size.R [reps]
library(sfpceval)
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 2000L
set.seed(20261122)
G <- 10
Tn <- 6
n_cell <- 60                                # children per LA-year
go_live <- c(3, 3, 4, 4, 5, rep(NA, 5))     # treated LAs 1-5 (years since start)
rho <- 0.5
sim_one <- function() {
  d <- expand.grid(i = seq_len(n_cell), year = seq_len(Tn), la = seq_len(G))
  shock <- matrix(0, G, Tn)
  for (a in seq_len(G)) {
    e <- stats::arima.sim(list(ar = rho), Tn, sd = 0.15)
    shock[a, ] <- e
  }
  d$treated <- as.integer(!is.na(go_live[d$la]) & d$year >= go_live[d$la])
  d$age <- sample(0:17, nrow(d), TRUE)
  d$y <- 0.3 + 0.05 * d$la / G + 0.02 * d$year + 0.005 * d$age +
    shock[cbind(d$la, d$year)] + rnorm(nrow(d), sd = 0.5)
  d
}
res <- matrix(NA, reps, 4, dimnames = list(NULL, c("CR1, normal (naive)", "CR1, t(G-1)",
                                                     "CR2, Satterthwaite (default)", "WCR Webb (B = 999)")))
t0 <- proc.time()[["elapsed"]]
for (b in seq_len(reps)) {
  d <- sim_one()
  f2 <- did_fit(y ~ treated + age | la + year, d, cluster = ~la, family = "gaussian")
  f1 <- update(f2, vcov = "CR1")
  t1 <- coef(f1)[["treated"]] / sqrt(vcov(f1)["treated", "treated"])
  t2 <- coef(f2)[["treated"]] / sqrt(vcov(f2)["treated", "treated"])
  wb <- wild_boot(f1, "treated", weights = "webb", B = 999, seed = b, conf_int = FALSE)
  res[b, ] <- c(2 * pnorm(-abs(t1)) < 0.05,
                2 * pt(-abs(t1), G - 1) < 0.05,
                2 * pt(-abs(t2), f2$df[["treated"]]) < 0.05,
                wb$p_value < 0.05)
}
el <- proc.time()[["elapsed"]] - t0
rate <- colMeans(res)
mcse <- sqrt(rate * (1 - rate) / reps)
out <- data.frame(method = colnames(res), rejection_rate = round(rate, 3), mc_se = round(mcse, 3))
cat(sprintf("Size at nominal 5%%: %d replications, G = %d (5 treated, staggered), T = %d, %d children per LA-year, AR(1) LA-year shocks rho = %.1f\n",
            reps, G, Tn, n_cell, rho))
print(out, row.names = FALSE)
cat(sprintf("(%.1f s)\n", el))
