# Size of the CR3 t-test of the linear mixed model (wild_boot()'s default
# below 10 clusters, tidy(fit, vcov = "CR3")) when a leave-one-cluster-out
# fit loses a column (#13): a covariate that varies in one LA only (as
# `other_innovation_programme` can, an innovation programme in one
# authority), so without that LA it is not identified and that fit drops it
# (the treatment stays identified, and its jackknife estimate is its
# estimate in the reduced fit). Before, wild_boot() fell back to WCU11 there
# and analyse() left the CR3 rows "not run".
#
# Null data shaped like the Family Valued trial as in bench/sw_size.R (5 LAs,
# six 6-month steps, go-live dates inside their steps, an LA random
# intercept, LA x step shocks, child noise; no treatment effect), plus
# `prog`: 1 for LA L5's children referred in its last two steps, 0
# otherwise, with an effect of 0.3 on the outcome (third argument). The model is
# y ~ treated + factor(step) + prog + (1 | la). Rejection at 5% with its
# Monte Carlo standard error (aim 3.5-6.5%), of: the CR3 t-test with G - 1 df
# (the lost column dropped from L5's leave-out fit), the same test when
# `prog` is left out of the model (no column lost; the effect of `prog` then
# goes into the LA x step error), CR2 with Satterthwaite df, and the
# jackknife bootstraps WCU31 / WCR33 (Webb, enumerated) on the same fits.
#   nice Rscript bench/lmm_cr3_lost.R [reps] [shock_sd] [prog_effect] [seed]
suppressMessages(pkgload::load_all(".", quiet = TRUE))
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 500L
shock_sd <- if (length(args) > 1) as.numeric(args[2]) else 0.25
prog_eff <- if (length(args) > 2) as.numeric(args[3]) else 0.3
set.seed(if (length(args) > 3) as.integer(args[4]) else 20261204L)
las <- paste0("L", 1:5)
start <- as.Date("2019-10-01")
go_live <- stats::setNames(start + 182 * (1:5) + c(74, 35, 53, 92, 21), las)
n_la_step <- 40

sim_one <- function() {
  G <- length(las)
  n <- n_la_step * (G + 1) * G
  d <- data.frame(la = rep(las, each = n / G),
                  referral_date = start + sample(0:((G + 1) * 182 - 1), n, TRUE))
  d$step <- as.integer(d$referral_date - start) %/% 182L
  d$treated <- as.integer(d$referral_date >= go_live[d$la])
  d$prog <- as.integer(d$la == "L5" & d$step >= 4L)
  u <- stats::rnorm(G, sd = 0.4)[match(d$la, las)]
  shock <- matrix(stats::rnorm(G * (G + 1), sd = shock_sd), G, G + 1)[cbind(match(d$la, las), d$step + 1L)]
  d$y <- 0.05 * d$step + prog_eff * d$prog + u + shock + stats::rnorm(n)
  d
}

rate <- function(rej) {
  p <- mean(rej, na.rm = TRUE)
  n <- sum(!is.na(rej))
  sprintf("%5.1f%% (MC s.e. %.1f%%, %d data sets)", 100 * p, 100 * sqrt(p * (1 - p) / n), n)
}

cat(sprintf("%d null data sets, 5 LAs, LA x step shock SD %g; `prog` varies in L5 only, effect %g\n",
            reps, shock_sd, prog_eff))
t0 <- proc.time()[["elapsed"]]
quiet <- function(expr) suppressMessages(withCallingHandlers(expr, sfpceval_few_clusters = function(w) invokeRestart("muffleWarning")))
res <- t(replicate(reps, {
  d <- sim_one()
  fit <- quiet(sw_glmm(y ~ treated + factor(step) + prog + (1 | la), d, family = gaussian(), cluster = "la"))
  f0 <- quiet(sw_glmm(y ~ treated + factor(step) + (1 | la), d, family = gaussian(), cluster = "la"))
  auto <- quiet(wild_boot(fit, "treated", conf_int = FALSE))
  stopifnot(auto$variant == "CR3t", identical(auto$dropped, list(L5 = "prog")))
  t3 <- coef(fit)[["treated"]] / sqrt(quiet(vcov(fit, type = "CR3"))["treated", "treated"])
  stopifnot(isTRUE(all.equal(auto$p_value, 2 * stats::pt(-abs(t3), 4), tolerance = 1e-8)))
  t30 <- coef(f0)[["treated"]] / sqrt(vcov(f0, type = "CR3")["treated", "treated"])
  t2 <- coef(fit)[["treated"]] / sqrt(vcov(fit, type = "CR2")["treated", "treated"])
  w31 <- quiet(wild_boot(fit, "treated", variant = "WCU31", B = "enumerate", conf_int = FALSE))
  w33 <- quiet(wild_boot(fit, "treated", variant = "WCR33", B = "enumerate", conf_int = FALSE))
  c(cr3 = auto$p_value, cr3_without = 2 * stats::pt(-abs(t30), 4),
    cr2 = 2 * stats::pt(-abs(t2), fit$cr2$df[["treated"]]), wcu31 = w31$p_value, wcr33 = w33$p_value)
}))
cat(sprintf("CR3 t(G - 1), `prog` dropped from L5's leave-out fit (wild_boot() default): %s\n", rate(res[, "cr3"] < 0.05)))
cat(sprintf("CR3 t(G - 1), model without `prog` (no column lost):                        %s\n", rate(res[, "cr3_without"] < 0.05)))
cat(sprintf("CR2, Satterthwaite df:                                                      %s\n", rate(res[, "cr2"] < 0.05)))
cat(sprintf("WCU31, Webb weights enumerated (with the dropped column):                  %s\n", rate(res[, "wcu31"] < 0.05)))
cat(sprintf("WCR33, Webb weights enumerated (with the dropped column):                  %s\n", rate(res[, "wcr33"] < 0.05)))
cat(sprintf("  (%.0f s; peak memory %.0f MB)\n", proc.time()[["elapsed"]] - t0, sum(gc()[, 6])))
