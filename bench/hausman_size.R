# Size of hausman_test(main =)'s test of "statistically different" (issue
# #13): null data where the chosen (FE or RE) model and the main regression
# estimate the same effect, shaped like the protocol's school-absence panel
# (children x three terms, clustered by authority), with few authorities.
# Rejection rate at 5% with its Monte Carlo SE. Not a test: run once with
#   nice Rscript bench/hausman_size.R [reps]
library(sfpceval)   # installed: R CMD INSTALL . (or make bench)
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 1000L
sim_one <- function(G, n_per) {
  N <- G * n_per
  d <- expand.grid(child = seq_len(N), term = 1:3)
  d$la <- (d$child - 1) %/% n_per + 1
  u <- rnorm(N)                                    # child effect, unrelated to x
  la_term <- matrix(rnorm(G * 3, sd = 0.3), G, 3)  # authority-term shocks
  d$x <- rnorm(nrow(d)) + 0.5 * rnorm(G)[d$la]
  d$absence <- 5 + 0.5 * d$x + u[d$child] + la_term[cbind(d$la, d$term)] + rnorm(nrow(d))
  d
}
run <- function(G, n_per, seed) {
  set.seed(seed)
  rej <- chosen_fe <- logical(reps)
  t0 <- proc.time()[["elapsed"]]
  for (b in seq_len(reps)) {
    d <- sim_one(G, n_per)
    h <- suppressWarnings(hausman_test(absence ~ x, d, "child", "term", cluster = "la",
                                       main = absence ~ x + factor(term), param = "x"))
    rej[b] <- h$comparison$statistically_different
    chosen_fe[b] <- h$prefer == "fixed effects"
  }
  p <- mean(rej)
  cat(sprintf("%2d authorities x %d children x 3 terms: rejects %.1f%% at 5%% (MC SE %.1f); FE chosen in %.0f%%; %.0f s\n",
              G, n_per, 100 * p, 100 * sqrt(p * (1 - p) / reps), 100 * mean(chosen_fe),
              proc.time()[["elapsed"]] - t0))
}
run(6, 100, 1)
run(10, 60, 2)
run(30, 20, 3)
