# Size of fgls_bcj() on the protocol's treatment (issue #13): the child's
# referral date decides treatment, so each go-live year is a split cell, and
# CEM-like weights enter the cell means. Null data shaped like the Family
# Safeguarding protocol: 5 treated + 5 comparator authorities, 6 years, 60
# children per authority-year, AR(1) authority-year shocks (rho = 0.5).
# Rejection rate at 5% (t(G - 1), CR1 as BCJ) with its Monte Carlo SE.
# Not a test: run once with
#   nice Rscript bench/fgls_size.R [reps]
library(sfpceval)   # installed: R CMD INSTALL . (or make bench)
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 1000L
G <- 10
Tn <- 6
n_cell <- 60
go_live <- c(3.3, 3.8, 4.2, 4.6, 5.5, rep(NA, 5))
sim_one <- function() {
  d <- expand.grid(i = seq_len(n_cell), year = seq_len(Tn), la = seq_len(G))
  shock <- t(vapply(seq_len(G), function(a) as.numeric(stats::arima.sim(list(ar = 0.5), Tn, sd = 0.15)),
                    numeric(Tn)))
  d$when <- d$year + stats::runif(nrow(d))
  d$treated <- as.integer(!is.na(go_live[d$la]) & d$when >= go_live[d$la])
  d$age <- sample(0:17, nrow(d), TRUE)
  d$w <- sample(c(0, 0.5, 1, 2), nrow(d), TRUE, prob = c(0.1, 0.3, 0.4, 0.2))
  d$y <- 0.3 + 0.05 * d$la / G + 0.02 * d$year + 0.005 * d$age +
    shock[cbind(d$la, d$year)] + stats::rnorm(nrow(d), sd = 0.5)
  d
}
set.seed(20261203)
rej <- matrix(NA, reps, 2, dimnames = list(NULL, c("weighted, bc = hansen", "unweighted, bc = hansen")))
t0 <- proc.time()[["elapsed"]]
for (b in seq_len(reps)) {
  d <- sim_one()
  p <- function(f) {
    s <- summary(f)$table
    s$p.value[s$term == "treated"]
  }
  fw <- suppressWarnings(fgls_bcj(y ~ treated + age, d, "la", "year", p = 1, weights = "w"))
  fu <- suppressWarnings(fgls_bcj(y ~ treated + age, d, "la", "year", p = 1))
  rej[b, ] <- c(p(fw), p(fu)) < 0.05
}
cat(sprintf("%d null data sets, %d authorities (5 treated, go-lives inside years), %.0f s\n",
            reps, G, proc.time()[["elapsed"]] - t0))
for (k in seq_len(ncol(rej))) {
  r <- mean(rej[, k])
  cat(sprintf("  %-24s rejects %5.1f%% at 5%% (Monte Carlo SE %.1f)\n", colnames(rej)[k],
              100 * r, 100 * sqrt(r * (1 - r) / reps)))
}
