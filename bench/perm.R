# Benchmark for counting before enumerating (issue #16): sw_randomise(),
# perm_test() and power_sim(analysis = "glmm_perm") on unstratified designs
# of 9, 12 and 20 clusters. Before: perm_test() listed every allocation
# before checking max_enumerate (9 clusters 2.6 s and 25 MB, about 15x per
# cluster: 11 clusters about 6 minutes and 2.7 GB, 12 out of memory), and
# sw_randomise() and power_sim() had no guard. Prints elapsed and CPU time
# and the peak memory of each call. Then perm_test()'s warm starts on a
# nested binomial sw_glmm() fit (below), against cold refits and glmer.
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

# Warm starts (nested binomial sw_glmm): perm_test() refits a
# `(1 | la / child_id)` model under each allocation starting from the observed
# fit's estimates; before, each refit started cold (the logistic regression,
# then both SDs at 1). "cold" below is that former path, sw_glmm() refitted
# under each allocation and the observed one; glmer is the reference.
# Absence-shaped data: children seen in three consecutive steps, sessions
# missed out of sessions possible. On the shared 2-core machine (3 December
# 2026, loaded: elapsed times are not the measure, CPU times are):
#   5 LAs, 15,000 rows, the 12 stratified allocations: warm 1.53 s CPU, cold
#     2.69 s (ratio 0.61), glmer 85.4 s; statistics equal cold to 7e-14 and
#     glmer to 2e-5; p-values 0.0833 all three; peak 153 / 150 / 295 Mb
#   10 LAs, 15,000 rows, 40 sampled allocations: warm 4.71 s CPU, cold 6.83 s
#     (ratio 0.72), statistics equal to 2e-13; peak 266 Mb both
sw_nested <- function(G, m, seed) {
  set.seed(seed)
  las <- sprintf("L%02d", seq_len(G))
  go <- stats::setNames(seq_len(G), las)
  kids <- expand.grid(child = seq_len(m), la = las, stringsAsFactors = FALSE)
  kids$child_id <- paste0("c", kids$child)
  kid <- rep(seq_len(nrow(kids)), each = 3)
  d <- kids[kid, ]
  d$step <- sample(0:(G - 2), nrow(kids), TRUE)[kid] + rep(0:2, nrow(kids))
  d$treated <- as.integer(d$step >= go[d$la])
  ua <- stats::rnorm(G, sd = 0.4)[match(d$la, las)]
  vc <- stats::rnorm(nrow(kids), sd = 0.9)[kid]
  d$possible <- sample(20:60, nrow(d), TRUE)
  d$missed <- stats::rbinom(nrow(d), d$possible, stats::plogis(-2 + 0.2 * d$treated + ua + vc))
  d
}
# the former path: sw_glmm() refitted cold under each allocation and the
# observed one (perm_test() refits that too)
cold_refits <- function(f, d, allocs, observed) {
  apply(rbind(allocs, observed), 1, function(go) {
    dd <- d
    dd$treated <- as.integer(dd$step >= go[dd$la])
    coef(suppressMessages(sw_glmm(f, dd)))[["treated"]]
  })
}
fn <- cbind(missed, possible - missed) ~ treated + factor(step) + (1 | la / child_id)
for (cfg in list(list(G = 5L, m = 1000L, strata = TRUE), list(G = 10L, m = 500L, strata = FALSE))) {
  d <- sw_nested(cfg$G, cfg$m, cfg$G)
  las <- sprintf("L%02d", seq_len(cfg$G))
  st <- if (cfg$strata) stats::setNames(rep(c("high", "low"), c(2, cfg$G - 2)), las)
  fit <- sw_glmm(fn, d)
  # (untimed: R compiles the functions on their first calls)
  invisible(perm_test(fit, strata = FALSE, data = d, n_perm = 2, max_enumerate = 1))
  invisible(cold_refits(fn, d, matrix(seq_len(cfg$G), 1, dimnames = list(NULL, las)), seq_len(cfg$G)))
  what <- sprintf("%d LAs, %d children, %d rows, SDs %.2f (LA) %.2f (child)", cfg$G, cfg$G * cfg$m,
                  nrow(d), fit$sigma[1], fit$sigma[2])
  cat(sprintf("\nnested binomial sw_glmm, %s; %s\n", what,
              if (cfg$strata) "the 12 allocations within strata" else "40 sampled allocations"))
  tw <- system.time(warm <- time_it("perm_test(sw_glmm nested), warm starts",
                                    perm_test(fit, stratum = st, strata = cfg$strata, data = d,
                                              n_perm = 40, max_enumerate = 100)))
  tc <- system.time(cold <- time_it("the former cold refits (sw_glmm() per allocation)",
                                    cold_refits(fn, d, warm$allocations, stats::setNames(seq_len(cfg$G), las))))
  cat(sprintf("  CPU ratio warm / cold %.2f; largest |statistic difference| %.1e; p-value %.4f\n",
              (tw[[1]] + tw[[2]]) / (tc[[1]] + tc[[2]]), max(abs(c(warm$statistics, warm$estimate) - cold)),
              warm$p_value))
  if (cfg$strata && requireNamespace("lme4", quietly = TRUE)) {
    g <- lme4::glmer(fn, family = stats::binomial(), data = d)
    tg <- system.time(rg <- time_it("perm_test(glmer nested), reference",
                                    perm_test(g, stratum = st, data = d)))
    cat(sprintf("  CPU ratio sfpceval warm / glmer %.2f; largest |statistic difference| %.1e; p-values %.4f / %.4f\n",
                (tw[[1]] + tw[[2]]) / (tg[[1]] + tg[[2]]), max(abs(warm$statistics - rg$statistics)),
                warm$p_value, rg$p_value))
  }
}
