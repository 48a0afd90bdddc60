# Size of wild_boot() on a binomial sw_glmm() fit with few clusters (#13):
# the score bootstrap studentised by a linearised CR3 jackknife (variant
# "score_cr3", the default below 10 clusters), the CR3 t-test with G - 1 df
# (variant "CR3t") and the Kline-Santos score bootstrap (variant "score"),
# Webb weights (all 6^G vectors for G <= 6, else B random draws), on the
# same data sets. Data shaped like the Family Valued trial (as bench/glmm_ci.R): G
# authorities going live one per step over G + 1 steps (step 0 all control),
# `n` children per authority and step, a random intercept per authority (SD
# 0.4), a period trend, and optionally authority x step shocks (SD `shock`,
# outside the model). The treatment effect is `effect` (0: size). Rejection
# at 5% with its Monte Carlo s.e., coverage of the 95% intervals of the
# default and of the CR3 t-test, CPU per data set, peak R heap.
# Run from the package root:
#   nice Rscript bench/glmm_size.R [reps] [G] [effect] [shock] [n] [B]
pkgload::load_all(quiet = TRUE)
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args) >= 1) as.integer(args[1]) else 1000L
G <- if (length(args) >= 2) as.integer(args[2]) else 5L
effect <- if (length(args) >= 3) as.numeric(args[3]) else 0
shock <- if (length(args) >= 4) as.numeric(args[4]) else 0
n <- if (length(args) >= 5) as.integer(args[5]) else 60L
B <- if (length(args) >= 6) as.integer(args[6]) else if (G <= 6L) "enumerate" else 999L

las <- paste0("L", seq_len(G))
# an interval side not determined (NA: accepted as far as inversion looked) counts as unbounded
cover <- function(ci) max(-Inf, ci[1], na.rm = TRUE) <= effect && effect <= min(Inf, ci[2], na.rm = TRUE)
one <- function(seed) {
  set.seed(seed)
  d <- expand.grid(la = las, step = 0:G, rep = seq_len(n), stringsAsFactors = FALSE)
  d$treated <- as.integer(d$step >= match(d$la, las))
  u <- rnorm(G, sd = 0.4)[match(d$la, las)]
  e <- rnorm(G * (G + 1), sd = shock)[match(paste(d$la, d$step), paste(rep(las, G + 1), rep(0:G, each = G)))]
  d$y <- rbinom(nrow(d), 1, plogis(-1.2 + 0.05 * d$step + effect * d$treated + u + e))
  fit <- suppressWarnings(suppressMessages(sw_glmm(y ~ treated + factor(step) + (1 | la), d)))
  t1 <- system.time(jk <- suppressWarnings(suppressMessages(wild_boot(fit, "treated", variant = "CR3t"))))
  t2 <- system.time(sb <- suppressWarnings(suppressMessages(
    wild_boot(fit, "treated", variant = "score", B = B, seed = seed, conf_int = FALSE))))
  t3 <- system.time(sc <- suppressWarnings(suppressMessages(
    wild_boot(fit, "treated", variant = "score_cr3", B = B, seed = seed))))
  se <- sqrt(fit$vcov["treated", "treated"])
  # the jackknife centred at the mean of the leave-one-out estimates (for comparison)
  bj <- jk$jackknife
  sej <- sqrt((G - 1) / G * sum((bj - mean(bj))^2))
  cr3j <- 2 * stats::pt(-abs(jk$estimate) / sej, G - 1) < 0.05
  c(cr3 = jk$p_value < 0.05, score = sb$p_value < 0.05, wald = abs(fit$coefficients[["treated"]]) > 1.96 * se,
    cr3j = cr3j,
    cover = jk$conf_int[1] <= effect && effect <= jk$conf_int[2],
    cpu_cr3 = t1[["user.self"]], cpu_score = t2[["user.self"]], se_ratio = jk$std.error / se,
    score_cr3 = sc$p_value < 0.05, cover_sc = cover(sc$conf_int), open_sc = anyNA(sc$conf_int),
    cpu_sc = t3[["user.self"]])
}
tt <- system.time(res <- t(vapply(seq_len(reps), function(s) one(1000 + s), numeric(12))))
rate <- function(x) {
  x <- x[!is.na(x)]
  p <- mean(x)
  sprintf("%5.1f%% (MC s.e. %.1f, n = %d)", 100 * p, 100 * sqrt(p * (1 - p) / length(x)), length(x))
}
cat(sprintf("Binomial GLMM, %d data sets, %d LAs x %d steps x %d children, effect %.2f, LA x step shock SD %.2f\n",
            reps, G, G + 1L, n, effect, shock))
cat(sprintf("  rejection at 5%%, score bootstrap / linearised CR3 (default): %s\n", rate(res[, "score_cr3"])))
cat(sprintf("  rejection at 5%%, CR3 t-test, t(%d):            %s\n", G - 1L, rate(res[, "cr3"])))
cat(sprintf("  rejection at 5%%, score bootstrap (Webb, %s): %s\n",
            if (identical(B, "enumerate")) "enumerated" else paste(B, "draws"), rate(res[, "score"])))
cat(sprintf("  rejection at 5%%, model-based Wald:              %s\n", rate(res[, "wald"])))
cat(sprintf("  (CR3 centred at the mean of the leave-one-out estimates, t(%d): %s)\n", G - 1L, rate(res[, "cr3j"])))
cat(sprintf("  coverage of the true effect, CR3 t interval:    %s\n", rate(res[, "cover"])))
cat(sprintf("  coverage of the true effect, default's interval: %s\n", rate(res[, "cover_sc"])))
cat(sprintf("  default's interval with a side not determined (NA): %s\n", rate(res[, "open_sc"])))
cat(sprintf("  CR3 SE / model SE (median) %.2f; CPU per data set (median): CR3 t %.3f s, score bootstrap %.3f s, default with its interval %.3f s\n",
            stats::median(res[, "se_ratio"]), stats::median(res[, "cpu_cr3"]), stats::median(res[, "cpu_score"]),
            stats::median(res[, "cpu_sc"])))
cat(sprintf("  total %.0f s CPU, peak R heap %.0f MB\n", tt[["user.self"]],
            sum(gc()[, "max used"] * c(56, 8)) / 2^20))
