# Size simulation for the stepped-wedge inference paths of issue #13:
# the wild cluster restricted bootstrap of the linear mixed model
# (wild_boot() on a gaussian sw_glmm() fit) and the permutation test on
# go-live dates (perm_test(), dates inside their steps).
#
# Null data shaped like the Family Valued trial: 5 LAs randomised within
# readiness strata (2 high first, 3 low), six 6-month steps, go-live dates
# shifted inside their steps (as COVID moved them), each child's treatment
# from its own referral date; an LA random intercept, LA x step shocks (the
# misspecification few-cluster inference has to survive), child noise; no
# treatment effect. Rejection rate at 5% with its Monte Carlo standard error.
# Not a test: run once,
#   nice Rscript bench/sw_size.R [reps] [paths] [shock_sd]
# paths: comma-separated from wcr, perm_npwp, perm_glmm (default all);
# shock_sd: SD of the LA x step shocks (default 0.25; 0 = the random-intercept
# model holds).
suppressMessages(pkgload::load_all(".", quiet = TRUE))
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 1000L
paths <- if (length(args) > 1) strsplit(args[2], ",")[[1]] else c("wcr", "perm_npwp", "perm_glmm")
shock_sd <- if (length(args) > 2) as.numeric(args[3]) else 0.25
cat(sprintf("%d null data sets, LA x step shock SD %g\n", reps, shock_sd))
set.seed(20261203)
las <- paste0("L", 1:5)
strata <- c(L1 = "high", L2 = "high", L3 = "low", L4 = "low", L5 = "low")
start <- as.Date("2019-10-01")
go_live <- stats::setNames(start + 182 * (1:5) + c(74, 35, 53, 92, 21), las)
n_la_step <- 40                                   # new children per LA and step

sim_one <- function(binary = FALSE) {
  n <- n_la_step * 6 * 5
  d <- data.frame(la = rep(las, each = n / 5),
                  referral_date = start + sample(0:(6 * 182 - 1), n, TRUE))
  d$step <- as.integer(d$referral_date - start) %/% 182L
  d$treated <- as.integer(d$referral_date >= go_live[d$la])
  u <- stats::rnorm(5, sd = 0.4)[match(d$la, las)]
  shock <- matrix(stats::rnorm(30, sd = shock_sd), 5, 6)[cbind(match(d$la, las), d$step + 1L)]
  lin <- 0.05 * d$step + u + shock
  d$y <- if (binary) stats::rbinom(n, 1, stats::plogis(-1 + lin)) else lin + stats::rnorm(n)
  d
}

rate <- function(rej) {
  p <- mean(rej, na.rm = TRUE)
  n <- sum(!is.na(rej))
  sprintf("%5.1f%% (MC s.e. %.1f%%, %d data sets)", 100 * p, 100 * sqrt(p * (1 - p) / n), n)
}

out <- list()
if ("wcr" %in% paths) {
  t0 <- proc.time()[["elapsed"]]
  res <- t(replicate(reps, {
    d <- sim_one()
    fit <- suppressWarnings(suppressMessages(
      sw_glmm(y ~ treated + factor(step) + (1 | la), d, family = gaussian(), cluster = "la")))
    wb <- wild_boot(fit, "treated", weights = "webb", conf_int = FALSE)
    z <- coef(fit)[["treated"]] / sqrt(vcov(fit)["treated", "treated"])
    t2 <- coef(fit)[["treated"]] / sqrt(vcov(fit, type = "CR2")["treated", "treated"])
    c(wald = 2 * stats::pnorm(-abs(z)), wcr = wb$p_value, wcr_geq = wb$p_value_geq,
      cr2 = 2 * stats::pt(-abs(t2), fit$cr2$df[["treated"]]))
  }))
  cat(sprintf("LMM, Wald (model-based SE, normal):               %s\n", rate(res[, "wald"] < 0.05)))
  cat(sprintf("LMM, CR2 by LA, Satterthwaite df:                 %s\n", rate(res[, "cr2"] < 0.05)))
  cat(sprintf("LMM, wild cluster restricted bootstrap, Webb:     %s\n", rate(res[, "wcr"] < 0.05)))
  cat(sprintf("LMM, WCR Webb, ties counted (|t*| >= |t|):        %s\n", rate(res[, "wcr_geq"] < 0.05)))
  cat(sprintf("  (%.0f s)\n", proc.time()[["elapsed"]] - t0))
  out$wcr <- res
}
if ("perm_npwp" %in% paths) {
  t0 <- proc.time()[["elapsed"]]
  res <- t(replicate(reps, {
    d <- sim_one()
    st <- perm_test(y ~ 1, statistic = "npwp", stratum = strata, data = d, go_live = go_live,
                    adjust = FALSE, conf_int = FALSE)
    un <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d, go_live = go_live,
                    adjust = FALSE, conf_int = FALSE)
    c(strat = st$p_value, unstrat = un$p_value)
  }))
  cat(sprintf("Permutation of go-live dates, NPWP, unstratified (120 allocations), alpha 5%%: %s\n",
              rate(res[, "unstrat"] <= 0.05)))
  cat(sprintf("Permutation of go-live dates, NPWP, stratified (12 allocations), alpha 1/12:  %s\n",
              rate(res[, "strat"] <= 1 / 12 + 1e-12)))
  cat(sprintf("  (stratified at 5%%: %s -- the smallest attainable p-value is 1/12)\n",
              rate(res[, "strat"] <= 0.05)))
  cat(sprintf("  (%.0f s)\n", proc.time()[["elapsed"]] - t0))
  out$perm_npwp <- res
}
if ("perm_glmm" %in% paths) {
  t0 <- proc.time()[["elapsed"]]
  res <- replicate(reps, {
    d <- sim_one(binary = TRUE)
    fit <- suppressWarnings(suppressMessages(sw_glmm(y ~ treated + factor(step) + (1 | la), d)))
    perm_test(fit, stratum = strata, data = d, go_live = go_live)$p_value
  })
  cat(sprintf("Permutation of go-live dates, GLMM estimate, stratified (12), alpha 1/12: %s\n",
              rate(res <= 1 / 12 + 1e-12)))
  cat(sprintf("  (%.0f s)\n", proc.time()[["elapsed"]] - t0))
  out$perm_glmm <- res
}
invisible(out)
