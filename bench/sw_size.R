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
#   nice Rscript bench/sw_size.R [reps] [paths] [shock_sd] [n_la]
# paths: comma-separated from wcr, auto, perm_npwp, perm_glmm (default all but
# auto; auto runs only wild_boot()'s default for the LMM, to measure its size
# at other numbers of LAs quickly);
# shock_sd: SD of the LA x step shocks (default 0.25; 0 = the random-intercept
# model holds); n_la: number of LAs for the wcr path (default 5, the trial;
# more LAs get one go-live per step and n_la + 1 steps, to find how many
# clusters the LMM bootstrap needs).
# The wcr path runs every variant of the LMM bootstrap on the same data set:
# restricted (WCR) or unrestricted (WCU); the fit's residuals (1) or each
# cluster's from the fit without it (3) in the bootstrap DGP; studentised by
# CR1 (1) or the CR3 jackknife (3) (MacKinnon, Nielsen & Webb 2023's names,
# e.g. WCU31), each with Webb, Mammen and Rademacher weights, and, for comparison, the t-tests with CR2 (Satterthwaite
# df) and CR3 (t with G - 1 df: vcov(fit, type = "CR3"), tidy(fit, vcov = "CR3")), and wild_boot()'s default
# (variant = "auto": the CR3 t-test with G - 1 df below 10 clusters, where no bootstrap held its size, else WCU31).
# Every bootstrap is enumerated with 5 LAs (Webb 6^5, Mammen and Rademacher 2^5 with their probabilities).
suppressMessages(pkgload::load_all(".", quiet = TRUE))
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 1000L
paths <- if (length(args) > 1) strsplit(args[2], ",")[[1]] else c("wcr", "perm_npwp", "perm_glmm")
shock_sd <- if (length(args) > 2) as.numeric(args[3]) else 0.25
n_la <- if (length(args) > 3) as.integer(args[4]) else 5L
cat(sprintf("%d null data sets, LA x step shock SD %g\n", reps, shock_sd))
set.seed(20261203)
las <- paste0("L", 1:5)
strata <- c(L1 = "high", L2 = "high", L3 = "low", L4 = "low", L5 = "low")
start <- as.Date("2019-10-01")
go_live <- stats::setNames(start + 182 * (1:5) + c(74, 35, 53, 92, 21), las)
n_la_step <- 40                                   # new children per LA and step

sim_one <- function(binary = FALSE, las = get("las", globalenv()),
                    go_live = get("go_live", globalenv())) {
  G <- length(las)
  n <- n_la_step * (G + 1) * G
  d <- data.frame(la = rep(las, each = n / G),
                  referral_date = start + sample(0:((G + 1) * 182 - 1), n, TRUE))
  d$step <- as.integer(d$referral_date - start) %/% 182L
  d$treated <- as.integer(d$referral_date >= go_live[d$la])
  u <- stats::rnorm(G, sd = 0.4)[match(d$la, las)]
  shock <- matrix(stats::rnorm(G * (G + 1), sd = shock_sd), G, G + 1)[cbind(match(d$la, las), d$step + 1L)]
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
  las_w <- paste0("L", seq_len(n_la))
  go_w <- if (n_la == 5L) go_live else
    stats::setNames(start + 182 * seq_len(n_la) + rep(c(74, 35, 53, 92, 21), length.out = n_la), las_w)
  # Mammen vectors are enumerated (2^G, with their probabilities) up to 12
  # LAs, Webb (6^G) up to 6; otherwise 999 seeded draws
  combos <- expand.grid(variant = lmm_boot_variants_, weights = c("webb", "mammen", "rademacher"),
                        stringsAsFactors = FALSE)
  combos$B <- ifelse(combos$weights == "webb", n_la <= 6L, n_la <= 12L)
  nm <- paste(combos$variant, combos$weights)
  quiet <- function(expr) withCallingHandlers(expr, sfpceval_few_clusters = function(w) invokeRestart("muffleWarning"))
  res <- t(replicate(reps, {
    d <- sim_one(las = las_w, go_live = go_w)
    fit <- suppressWarnings(suppressMessages(
      sw_glmm(y ~ treated + factor(step) + (1 | la), d, family = gaussian(), cluster = "la")))
    wb <- lapply(seq_len(nrow(combos)), function(k) quiet(wild_boot(
      fit, "treated", weights = combos$weights[k], B = if (combos$B[k]) "enumerate" else 999L, seed = 1L,
      conf_int = FALSE, variant = combos$variant[k])))
    z <- coef(fit)[["treated"]] / sqrt(vcov(fit)["treated", "treated"])
    t2 <- coef(fit)[["treated"]] / sqrt(vcov(fit, type = "CR2")["treated", "treated"])
    t3 <- coef(fit)[["treated"]] / sqrt(vcov(fit, type = "CR3")["treated", "treated"])
    # the same CR3 studentises the WC?13 bootstraps
    stopifnot(isTRUE(all.equal(t3, wb[[match("WCR13", combos$variant)]]$statistic, tolerance = 1e-8)))
    auto <- suppressMessages(quiet(wild_boot(fit, "treated", B = 999L, seed = 1L, conf_int = FALSE)))
    # below 10 clusters the default is that CR3 t-test
    stopifnot(n_la >= 10L || isTRUE(all.equal(auto$p_value, 2 * stats::pt(-abs(t3), n_la - 1), tolerance = 1e-8)))
    c(wald = 2 * stats::pnorm(-abs(z)),
      cr2 = 2 * stats::pt(-abs(t2), fit$cr2$df[["treated"]]),
      cr3 = 2 * stats::pt(-abs(t3), n_la - 1), auto = auto$p_value,
      stats::setNames(vapply(wb, function(w) w$p_value, 0), nm),
      wcr11_webb_geq = wb[[which(nm == "WCR11 webb")]]$p_value_geq)
  }))
  cat(sprintf("%d LAs; Mammen and Rademacher weights %s, Webb %s\n", n_la,
              if (n_la <= 12L) "enumerated" else "999 draws", if (n_la <= 6L) "enumerated" else "999 draws"))
  cat(sprintf("LMM, Wald (model-based SE, normal):                %s\n", rate(res[, "wald"] < 0.05)))
  cat(sprintf("LMM, CR2 by LA, Satterthwaite df:                  %s\n", rate(res[, "cr2"] < 0.05)))
  cat(sprintf("LMM, CR3 by LA, t(G - 1) (vcov(fit, type = \"CR3\")):%s\n", rate(res[, "cr3"] < 0.05)))
  cat(sprintf("LMM, wild_boot() default (variant = \"auto\"):     %s\n", rate(res[, "auto"] < 0.05)))
  for (k in seq_along(nm)) {
    lab <- if (k == 1L) " (default >= 10 LAs)" else if (nm[k] == "WCR11 webb") " (before #13)" else ""
    cat(sprintf("LMM, wild bootstrap %-31s%s\n", paste0(nm[k], lab, ":"), rate(res[, nm[k]] < 0.05)))
  }
  cat(sprintf("LMM, WCR11 webb, ties counted (|t*| >= |t|):       %s\n", rate(res[, "wcr11_webb_geq"] < 0.05)))
  cat(sprintf("  (%.0f s)\n", proc.time()[["elapsed"]] - t0))
  out$wcr <- res
}
if ("auto" %in% paths) {
  t0 <- proc.time()[["elapsed"]]
  las_w <- paste0("L", seq_len(n_la))
  go_w <- if (n_la == 5L) go_live else
    stats::setNames(start + 182 * seq_len(n_la) + rep(c(74, 35, 53, 92, 21), length.out = n_la), las_w)
  res <- replicate(reps, {
    d <- sim_one(las = las_w, go_live = go_w)
    fit <- suppressWarnings(suppressMessages(sw_glmm(y ~ treated + factor(step) + (1 | la), d, family = gaussian())))
    wb <- suppressMessages(wild_boot(fit, "treated", B = 999L, seed = 1L, conf_int = FALSE))
    c(p = wb$p_value, cr3t = wb$variant == "CR3t")
  })
  cat(sprintf("%d LAs, wild_boot() default (%s%s): %s\n", n_la, if (all(res["cr3t", ] == 1)) "CR3 t-test, G - 1 df" else
                "WCU31, Webb weights", if (n_la >= 10L) ", 999 draws" else "", rate(res["p", ] < 0.05)))
  cat(sprintf("  (%.0f s)\n", proc.time()[["elapsed"]] - t0))
  out$auto <- res
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
