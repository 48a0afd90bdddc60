# Coverage of the GLMM score bootstrap's confidence interval (issue #13):
# wild_boot(variant = "score") on a binomial sw_glmm() fit (below 10 clusters
# the default is the CR3 t-test: bench/glmm_size.R), Webb weights enumerated (6^5
# vectors), interval by test inversion with warm-started restricted refits.
# Data shaped like the Family Valued trial: 5 authorities going live one per
# step over 6 steps, a random intercept per authority (SD 0.4), a period
# trend, and optionally authority x step shocks (SD `shock`, outside the
# model). For each of `reps` data sets: whether the interval covers the true
# effect, whether the test of 0 rejects at 5% (size when the effect is 0),
# the CPU of the interval, the refits it took. Monte Carlo standard errors
# printed with each rate.
# Run from the package root:
#   nice Rscript bench/glmm_ci.R [reps] [effect] [shock] [children per LA-step]
pkgload::load_all(quiet = TRUE)
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args) >= 1) as.integer(args[1]) else 200L
effect <- if (length(args) >= 2) as.numeric(args[2]) else 0
shock <- if (length(args) >= 3) as.numeric(args[3]) else 0
n <- if (length(args) >= 4) as.integer(args[4]) else 60L

las <- paste0("L", 1:5)
one <- function(seed) {
  set.seed(seed)
  d <- expand.grid(la = las, step = 0:5, rep = seq_len(n), stringsAsFactors = FALSE)
  d$treated <- as.integer(d$step >= match(d$la, las))
  u <- rnorm(5, sd = 0.4)[match(d$la, las)]
  e <- rnorm(30, sd = shock)[match(paste(d$la, d$step), paste(rep(las, 6), rep(0:5, each = 5)))]
  d$y <- rbinom(nrow(d), 1, plogis(-1.2 + 0.05 * d$step + effect * d$treated + u + e))
  fit <- suppressWarnings(suppressMessages(sw_glmm(y ~ treated + factor(step) + (1 | la), d)))
  t <- system.time(wb <- suppressWarnings(wild_boot(fit, "treated", variant = "score")))
  t0 <- system.time(suppressWarnings(wild_boot(fit, "treated", variant = "score", conf_int = FALSE)))
  ci <- wb$conf_int
  se <- sqrt(fit$vcov["treated", "treated"])
  c(cover = ci[1] <= effect && effect <= ci[2], reject0 = wb$p_value < 0.05 && effect == 0,
    wald_cover = abs(wb$estimate - effect) <= 1.96 * se, finite = all(is.finite(ci)),
    cpu_ci = t[["user.self"]] - t0[["user.self"]], refits = wb$refits$n,
    newton = wb$refits$iterations, width = diff(ci) / se)
}
tt <- system.time(res <- t(vapply(seq_len(reps), function(s) one(1000 + s), numeric(8))))
rate <- function(x) {
  x <- x[!is.na(x)]
  p <- mean(x)
  sprintf("%5.1f%% (MC s.e. %.1f, n = %d)", 100 * p, 100 * sqrt(p * (1 - p) / length(x)), length(x))
}
cat(sprintf("GLMM score bootstrap interval: %d data sets, 5 LAs x 6 steps x %d children, effect %.2f, LA x step shock SD %.2f\n",
            reps, n, effect, shock))
cat("  coverage of the true effect (95% interval):", rate(res[, "cover"]), "\n")
if (effect == 0) cat("  rejection of the true null at 5%:           ", rate(res[, "reject0"]), "\n")
cat("  Wald (model-based) coverage, for reference:", rate(res[, "wald_cover"]), "\n")
cat(sprintf("  finite intervals %d of %d; width %.2f Wald SEs (median)\n", sum(res[, "finite"]), reps,
            stats::median(res[, "width"], na.rm = TRUE)))
cat(sprintf("  interval cost: %.3f s CPU per data set (median), %.0f refits, %.0f Newton iterations (median)\n",
            stats::median(res[, "cpu_ci"]), stats::median(res[, "refits"]), stats::median(res[, "newton"])))
cat(sprintf("  total %.0f s CPU, peak R heap %.0f MB\n", tt[["user.self"]],
            sum(gc()[, "max used"] * c(56, 8)) / 2^20))
