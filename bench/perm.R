# Benchmark for counting before enumerating (issue #16): sw_randomise(),
# perm_test() and power_sim(analysis = "glmm_perm") on unstratified designs
# of 9, 12 and 20 clusters. Before: perm_test() listed every allocation
# before checking max_enumerate (9 clusters 2.6 s and 25 MB, about 15x per
# cluster: 11 clusters about 6 minutes and 2.7 GB, 12 out of memory), and
# sw_randomise() and power_sim() had no guard. Prints elapsed and CPU time
# and the peak memory of each call.
#   nice Rscript bench/perm.R
suppressMessages(pkgload::load_all(".", quiet = TRUE))

time_it <- function(label, expr) {
  gc(reset = TRUE)
  t0 <- proc.time()
  val <- force(expr)
  t1 <- proc.time() - t0
  cat(sprintf("%-62s %6.2f s elapsed, %6.2f s CPU, peak %5.0f Mb\n", label, t1[["elapsed"]],
              t1[["user.self"]] + t1[["sys.self"]], sum(gc()[, 6])))
  invisible(val)
}

sw_rows <- function(G, seed) {
  set.seed(seed)
  d <- expand.grid(la = sprintf("L%02d", seq_len(G)), step = 0:G, rep = 1:8, stringsAsFactors = FALSE)
  go <- stats::setNames(seq_len(G), sprintf("L%02d", seq_len(G)))
  d$treated <- as.integer(d$step >= go[d$la])
  d$y <- stats::rbinom(nrow(d), 1, 0.3)
  d
}

for (G in c(9L, 12L, 20L)) {
  a <- time_it(sprintf("sw_randomise(), %d clusters (%s allocations)", G,
                       format(factorial(G), big.mark = ",", scientific = FALSE)),
               sw_randomise(sprintf("L%02d", seq_len(G)), seed = 1))
  d <- sw_rows(G, G)
  time_it(sprintf("perm_test(npwp), %d clusters, 2,000 sampled", G),
          perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d, adjust = FALSE,
                    conf_int = FALSE))
  fit <- glm(y ~ treated + factor(step) + la, binomial, data = d)
  time_it(sprintf("perm_test(glm model statistic), %d clusters, 200 sampled", G),
          perm_test(fit, strata = FALSE, data = d, n_perm = 200))
}
des <- power_design(go_live = 1:20, periods = 21, m = 40)
time_it("power_sim(glmm_perm), 20 clusters, 2 trials x 200 allocations",
        power_sim(des, effect = 0.02, n_sims = 2, analysis = "glmm_perm", parallel = FALSE,
                  n_perm = 200))
