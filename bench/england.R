# England-sized Family Safeguarding chain (issue #16): a national comparator
# pool of about 150 authorities and 3 million children referred over seven
# years. Simulates the records with simulate_sfp() (or reads them from a
# cached file), then times and reports the peak memory of every step after
# the simulation: the cohort builds, trend matching of the five treated
# authorities against all others, stacking the matched pairs, CEM, the
# primary DiD (linear and logit, CR2; conditional logit, CR1) with the CEM
# weights and the Webb wild cluster bootstrap, and a conditional logit on the
# national pool (every authority's children, LA strata and year effects).
# Goal: the whole chain in <= 60 s and <= 4 GB peak on one core. After the
# chain, the national-pool conditional logit is refitted by sfpceval and by
# survival::clogit(method = "approximate") on the same rows (when survival is
# installed): times, their ratio, peak memory and the difference in the
# estimate.
#
# Run after installing the package into a private library:
#   R CMD INSTALL --library=/tmp/lib-didnum . &&
#   R_LIBS=/tmp/lib-didnum nice Rscript --vanilla bench/england.R [children] [cache.rds]
# children: children referred in the seven years (default 3e6);
# cache.rds: where the simulated records are kept between runs (default a
# file under tempdir(), so only within one session; give a path to keep it).
# Peak memory is R's heap high-water mark since the simulation (gc(reset =
# TRUE) before the chain, "max used" after each step) and the process's
# VmHWM from /proc/self/status (which includes the simulation).
library(sfpceval)
args <- commandArgs(TRUE)
n_children <- if (length(args) >= 1) as.numeric(args[1]) else 3e6
cache <- if (length(args) >= 2) args[2] else
  file.path(tempdir(), sprintf("sfp_england_%d.rds", round(n_children)))
n_la <- 150L
years <- 7
cpy <- n_children / (n_la * years)

vmhwm <- function() {
  f <- "/proc/self/status"
  if (!file.exists(f)) return(NA_real_)
  l <- grep("^VmHWM", readLines(f), value = TRUE)
  as.numeric(gsub("[^0-9]", "", l)) / 1024^2          # GB
}
heap_peak <- function() sum(gc()[, 6]) / 1024          # GB ("max used", Mb columns)
steps <- data.frame(step = character(0), elapsed_s = numeric(0), cpu_s = numeric(0),
                    heap_peak_gb = numeric(0), vmhwm_gb = numeric(0), result_mb = numeric(0),
                    result = character(0), stringsAsFactors = FALSE)
step <- function(name, expr) {
  tm <- system.time(val <- force(expr))
  t <- tm[["elapsed"]]
  cpu <- tm[["user.self"]] + tm[["sys.self"]]
  mb <- as.numeric(object.size(val)) / 2^20
  desc <- if (is.data.frame(val)) sprintf("%s rows x %d columns", format(nrow(val), big.mark = ","), ncol(val)) else
    class(val)[1]
  hp <- heap_peak()
  steps[nrow(steps) + 1L, ] <<- list(name, round(t, 2), round(cpu, 2), round(hp, 2), round(vmhwm(), 2),
                                     round(mb, 1), desc)
  cat(sprintf("%-40s %7.2f s (CPU %6.2f s)  heap peak %5.2f GB  result %7.1f MB %s\n", name, t, cpu, hp, mb, desc))
  val
}

# ---- simulation (not part of the timed chain) ----
if (file.exists(cache)) {
  cat("Reading cached records from", cache, "\n")
  t_sim <- system.time(x <- readRDS(cache))[["elapsed"]]
} else {
  cat(sprintf("Simulating %s children in %d authorities (%.0f per authority-year)...\n",
              format(n_children, big.mark = ","), n_la, cpy))
  t_sim <- system.time(x <- suppressWarnings(simulate_sfp(
    "family_safeguarding", n_la = n_la, children_per_la_year = cpy, seed = 2026,
    start = "2015-04-01", end = "2022-03-31")))[["elapsed"]]
  saveRDS(x, cache, compress = FALSE)
}
cat(sprintf("Records: %s children, %s referrals, %.2f GB; simulation/reading %.0f s\n\n",
            format(nrow(x$children), big.mark = ","), format(nrow(x$referrals), big.mark = ","),
            as.numeric(object.size(x)) / 2^30, t_sim))

# The DiD outcomes; school absence is a panel with its own model (and its
# table is the largest), so it is left out of this chain.
x$absence <- NULL
records_gb <- as.numeric(object.size(x)) / 2^30
invisible(gc(reset = TRUE))
heap0 <- heap_peak()
t_chain <- system.time({
  design <- design_family_safeguarding(x)
  outs <- setdiff(design$outcomes, "absence")
  cohort <- step("build_cohort (analysis, DiD outcomes)", suppressMessages(build_cohort(x, design, outcomes = outs)))
  matching_design <- design_family_safeguarding(x, trial_start = as.Date("2015-04-01"))
  mcoh <- step("build_cohort (matching, cla_18m)",
               suppressMessages(build_cohort(x, matching_design, outcomes = "cla_18m")))
  rm(x)
  m <- step("match_trends (5 treated vs all others)",
            match_trends(mcoh, design, "cla_18m", n_candidates = 3))
  rm(mcoh)
  stacked <- step("stack_pairs", stack_pairs(cohort, m))
  # the national pool: every authority's children in one conditional logit
  # (LA strata, year effects), the model the issue's scale targets
  pool <- cohort[!is.na(cohort$cla_18m), c("cla_18m", "treated", "age", "la", "fin_year")]
  pool$female <- as.integer(cohort$gender[!is.na(cohort$cla_18m)] == "female")
  rm(cohort)
  fitp <- step("did_fit clogit, national pool, CR1",
               suppressMessages(did_fit(cla_18m ~ treated + age + female | la + fin_year, pool,
                                        cluster = ~la, family = "conditional_logit", vcov = "CR1")))
  # the design's CEM variables that the cohort kept (build_cohort() drops a
  # covariate missing for more than design$max_missing of the children, e.g.
  # FSM, which is unknown before school age)
  spec <- design$cem
  gone <- setdiff(all.vars(spec$formula[[3]]), names(stacked))
  if (length(gone)) {
    cat("CEM without", paste(gone, collapse = ", "), "(dropped from the cohort as mostly missing)\n")
    spec$formula <- stats::update(spec$formula, stats::as.formula(paste(". ~ . -", paste(gone, collapse = " - "))))
    spec$cutpoints <- spec$cutpoints[setdiff(names(spec$cutpoints), gone)]
    spec$grouping <- spec$grouping[setdiff(names(spec$grouping), gone)]
  }
  matched <- step("cem", cem(spec$formula, data = stacked, cutpoints = spec$cutpoints,
                             grouping = spec$grouping, exact = spec$exact))
  stacked$cem_weight <- matched$weights
  primary <- stacked[!is.na(stacked$cla_18m) & stacked$cem_weight > 0,
                     c("cla_18m", "treated", "age", "gender", "la", "fin_year", "cem_weight")]
  rm(stacked, matched)
  fit <- step("did_fit linear, CR2, CEM weights",
              suppressMessages(did_fit(cla_18m ~ treated + age + gender | la + fin_year, primary,
                                       cluster = ~la, weights = ~cem_weight, family = "gaussian")))
  fitl <- step("did_fit logit, CR2, CEM weights",
               suppressMessages(did_fit(cla_18m ~ treated + age + gender | la + fin_year, primary,
                                        cluster = ~la, weights = ~cem_weight, family = "binomial")))
  # the conditional logit errors on a separated covariate: gender's rare
  # categories (indeterminate, missing) have no care entries in some pools,
  # so its models use a female indicator
  primary$female <- as.integer(primary$gender == "female")
  fitc <- step("did_fit clogit, CR1, CEM weights",
               suppressMessages(did_fit(cla_18m ~ treated + age + female | la + fin_year, primary,
                                        cluster = ~la, weights = ~cem_weight,
                                        family = "conditional_logit", vcov = "CR1")))
  wb <- step("wild_boot (Webb, linear fit)", wild_boot(fit, "treated", weights = "webb", seed = 1))
  wbp <- step("wild_boot score (Webb, pool clogit)",
              suppressWarnings(wild_boot(fitp, "treated", weights = "webb", seed = 1, conf_int = FALSE)))
})[["elapsed"]]

cat("\n")
print(steps, row.names = FALSE)
big <- which.max(steps$result_mb)
cat(sprintf(paste0("\nWhole chain after simulation: %.1f s elapsed, %.1f s CPU in the steps (goal <= 60 s on one core)\n",
                   "R heap peak %.2f GB, of which %.2f GB are the records held at the start (%.2f GB before the chain); ",
                   "process VmHWM %.2f GB incl. the simulation (goal <= 4 GB)\n"),
            t_chain, sum(steps$cpu_s), max(steps$heap_peak_gb), records_gb, heap0, vmhwm()))
cat(sprintf("Analysis rows: %s in %d clusters; largest object made in the chain: %s (%s, %.0f MB)\n",
            format(fit$nobs, big.mark = ","), fit$n_clusters, steps$step[big], steps$result[big],
            steps$result_mb[big]))
cat(sprintf("Linear: %.4f (SE %.4f, df %.1f); logit: %.4f (SE %.4f, df %.1f); Webb p = %.3f, B = %d\n",
            coef(fit)[["treated"]], sqrt(vcov(fit)[1, 1]), fit$df[[1]],
            coef(fitl)[["treated"]], sqrt(vcov(fitl)[1, 1]), fitl$df[[1]], wb$p_value, wb$B))
cat(sprintf("Conditional logit: %.4f (SE %.4f, CR1), %d Newton iterations; national pool (%s rows): %.4f (SE %.4f), %d iterations, fit object %.0f MB\n",
            coef(fitc)[["treated"]], sqrt(vcov(fitc)[1, 1]), fitc$convergence$iterations,
            format(fitp$nobs, big.mark = ","), coef(fitp)[["treated"]], sqrt(vcov(fitp)[1, 1]),
            fitp$convergence$iterations, as.numeric(object.size(fitp)) / 2^20))
cat(sprintf("Score bootstrap on the national-pool conditional logit: p = %.3f, B = %d\n", wbp$p_value, wbp$B))

# ---- reference: survival::clogit (Breslow) on the same rows ----
if (requireNamespace("survival", quietly = TRUE)) {
  # clogit() builds a coxph(Surv(...) ~ ... + strata(la)) call evaluated here
  strata <- survival::strata
  coxph <- survival::coxph
  Surv <- survival::Surv
  peak_of <- function(expr) {
    invisible(gc(reset = TRUE))
    h0 <- heap_peak()
    tm <- system.time(val <- force(expr))
    list(value = val, cpu = tm[["user.self"]] + tm[["sys.self"]], elapsed = tm[["elapsed"]],
         peak_gb = heap_peak() - h0)
  }
  rm(fit, fitl, wb, fitp, wbp, primary)
  pool$fin_year_f <- factor(pool$fin_year)
  ours <- peak_of(suppressMessages(did_fit(cla_18m ~ treated + age + female | la + fin_year, pool,
                                           cluster = ~la, family = "conditional_logit", vcov = "CR1")))
  ref <- peak_of(survival::clogit(cla_18m ~ treated + age + female + fin_year_f + strata(la), pool,
                                  method = "approximate", cluster = la))
  cat(sprintf(paste0("\nConditional logit, national pool, %s rows in %d LAs: sfpceval %.2f s CPU (%.2f s elapsed), ",
                     "heap peak +%.2f GB; survival::clogit %.2f s CPU (%.2f s elapsed), heap peak +%.2f GB; ",
                     "CPU ratio %.1fx\n"),
              format(nrow(pool), big.mark = ","), ours$value$n_clusters, ours$cpu, ours$elapsed, ours$peak_gb,
              ref$cpu, ref$elapsed, ref$peak_gb, ref$cpu / ours$cpu))
  cat(sprintf("Estimate: sfpceval %.10f, survival %.10f (difference %.1e); robust SE %.6f vs %.6f (clogit's robust SE has no CR1 factor)\n",
              coef(ours$value)[["treated"]], coef(ref$value)[["treated"]],
              coef(ours$value)[["treated"]] - coef(ref$value)[["treated"]],
              sqrt(vcov(ours$value)[1, 1]), sqrt(vcov(ref$value)[1, 1])))
}
