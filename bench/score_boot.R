# Benchmark (issue #13): the logit did_fit() score bootstrap's confidence
# interval, each p(r) a restricted IRLS refit with the fixed effects
# absorbed. wild_boot() warm-starts each refit from the nearest one's linear
# predictor; the reference is the former path, every refit from the data
# (logit_score_contrib() without `start`), through the same invert_test() and
# the same draws, in the same process. Prints CPU times, the ratio, the two
# intervals and the peak R heap.
# Run from the package root:  nice Rscript bench/score_boot.R [rows]
pkgload::load_all(quiet = TRUE)
args <- commandArgs(trailingOnly = TRUE)
n <- if (length(args) >= 1) as.integer(args[1]) else 40000L
set.seed(1)
d <- data.frame(la = sample(sprintf("LA%02d", 1:10), n, TRUE), year = sample(2016:2021, n, TRUE),
                age = sample(c("0-4", "5-9", "10-15", "16+"), n, TRUE), sex = sample(c("f", "m"), n, TRUE))
d$treated <- as.integer(d$la %in% sprintf("LA%02d", 1:5) & d$year >= 2019)
d$y <- rbinom(n, 1, plogis(-3 + 0.2 * d$treated + 0.1 * (d$age == "16+") +
                             rnorm(10, sd = 0.2)[as.integer(factor(d$la))]))
f <- suppressWarnings(did_fit(y ~ treated + age + sex | la + year, d, cluster = ~la, family = "binomial"))
cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
invisible(gc(reset = TRUE))
t_new <- system.time(w <- suppressWarnings(wild_boot(f, "treated", B = 999, seed = 1)))
# the former path: the same draws, a cold restricted refit at every r
V <- boot_draws(f$n_clusters, "webb", 999L, 1)$V
pig <- tabulate(f$cluster, f$n_clusters) / length(f$cluster)
beta <- unname(f$coefficients["treated"])
pv <- function(r) score_boot_test(as.vector(logit_score_contrib(f, "treated", r)), pig, V, beta)$p_value
t_old <- system.time(ci_old <- invert_test(pv, beta, sqrt(f$vcov["treated", "treated"]), 0.05))
cat(sprintf("logit did_fit(), %s rows, FE la + year, %d LAs; score bootstrap, 999 Webb draws\n",
            format(n, big.mark = ","), f$n_clusters))
cat(sprintf("  wild_boot() (test + interval, warm-started refits): %.2f s CPU\n", cpu(t_new)))
cat(sprintf("  interval with cold refits (the former path):         %.2f s CPU; ratio %.1f\n",
            cpu(t_old), cpu(t_old) / cpu(t_new)))
cat(sprintf("  intervals: [%.8f, %.8f] and [%.8f, %.8f]; peak R heap %.0f MB\n", w$conf_int[1], w$conf_int[2],
            ci_old[1], ci_old[2], sum(gc()[, "max used"] * c(56, 8)) / 2^20))
