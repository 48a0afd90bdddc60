# Benchmark: analyse() runs each protocol's whole plan on the default
# simulated data of the programme (simulate_sfp() defaults: Family Valued 5
# authorities x 5,200 children a year; Family Safeguarding 5 treated + 20
# candidate comparators x 4,700 a year). Prints elapsed and CPU time and peak
# R heap memory (gc "max used") of each run. Target: the Family Valued plan
# with 5 imputations under 60 s on one core. The mice imputations are timed
# on their own too: they are the same for any speed of the model fits.
# Run from the package root:  nice Rscript bench/analyse.R [fv|fs|all]
pkgload::load_all(quiet = TRUE)
Sys.setenv(OMP_NUM_THREADS = "1")
what <- commandArgs(trailingOnly = TRUE)[1]
if (is.na(what)) what <- "all"

peak_mb <- function() sum(gc()[, c("max used")] * c(56, 8)) / 2^20
run <- function(label, expr) {
  invisible(gc(reset = TRUE))
  t <- system.time(res <- force(expr))
  cat(sprintf("%-48s elapsed %7.1f s  cpu %7.1f s  peak R heap %7.0f MB\n", label,
              t[["elapsed"]], t[["user.self"]] + t[["sys.self"]], peak_mb()))
  res
}
summarise <- function(a) {
  r <- a$results
  cat(sprintf("  %d models, %d estimates: %s\n", nrow(a$models), nrow(r),
              paste(names(table(sub(":.*$", "", r$status))), table(sub(":.*$", "", r$status)),
                    sep = " ", collapse = ", ")))
  p <- r[r$analysis == "primary" & r$status == "ok", c("model", "scale", "estimate", "conf.low", "conf.high")]
  print(p, row.names = FALSE, digits = 3)
}

if (what %in% c("fv", "all")) {
  x <- run("FV simulate_sfp() (effect cla = -0.3)",
           simulate_sfp("family_valued", effects = list(cla = -0.3), seed = 1))
  d <- design_family_valued(x)
  a0 <- run("FV plan, complete cases", suppressMessages(analyse(x, d, imputations = 0)))
  summarise(a0)
  prof <- tempfile()
  utils::Rprof(prof, interval = 0.02)
  a5 <- run("FV plan, 5 imputations", suppressMessages(analyse(x, d, imputations = 5)))
  utils::Rprof(NULL)
  summarise(a5)
  # where the time goes (Rprof samples: time inside each function, callees
  # included, so the lines overlap; e.g. binom_fit includes binom_treatment)
  parts <- c(plan_impute = "mice imputations (plan_impute)",
             build_cohort = "cohorts (build_cohort)",
             glmm_prepare = "  model frames and matrices (glmm_prepare)",
             binom_fit = "binomial GLMM fits (binom_fit)",
             binom_newton = "  Newton iterations (binom_newton)",
             binom_treatment = "  odds ratio and risk differences (binom_treatment)",
             sw_glmm_refit = "permutation refits (sw_glmm_refit)",
             glmm_wild_boot = "GLMM wild bootstrap (glmm_wild_boot)",
             lmm_fit = "linear mixed models (lmm_fit)",
             hurdle_fit_ = "hurdle models (hurdle_fit_)",
             tobit_fit = "tobit models (tobit_fit)",
             plan_prune = "covariate pruning (plan_prune)")
  tot <- utils::summaryRprof(prof)$by.total
  unlink(prof)
  cat("  of which (Rprof, s):\n")
  for (f in names(parts)) {
    key <- sprintf("\"%s\"", f)  # summaryRprof() quotes the names
    cat(sprintf("    %-52s %6.1f\n", parts[[f]], if (key %in% rownames(tot)) tot[key, "total.time"] else 0))
  }
  # of which: the mice imputations alone (the same call analyse() makes),
  # and the binomial GLMM fits (sw_glmm() and the permutation refits)
  co <- suppressMessages(build_cohort(x, d))
  miss <- attr(co, "covariate_missing")
  vars <- intersect(names(miss)[miss > 0 & miss <= d$max_missing],
                    plan_model_covariates(protocol_models(d)))
  has_na <- vapply(as.data.frame(co)[vars], anyNA, TRUE)
  run(sprintf("  of which mice, 5 imputations of %s%s", paste(vars[has_na], collapse = ", "),
              if (any(!has_na)) sprintf(" (%s: missing-like levels, no NA)", paste(vars[!has_na], collapse = ", ")) else ""),
      plan_impute(co, d, vars, 5L, 1L))
  fits <- a5$fits[vapply(a5$fits, function(f) inherits(f, "sw_glmm") &&
                           identical(f$family$family, "binomial"), TRUE)]
  cat(sprintf("  binomial GLMMs: %d models x 5 imputations; Newton iterations of the first imputation's fits: %s\n",
              length(fits), paste(vapply(fits, `[[`, 1L, "iterations"), collapse = " ")))
  # of which: the few-cluster inference rows of the linear secondaries (the
  # wild bootstrap, enumerated Webb weights, and the CR3 t-test, which needs
  # the parent fitted with the cluster): the parents alone, then with them
  m <- protocol_models(d)
  par <- m$id %in% c("fv_sw_days_plan_18m_secondary", "fv_sw_absence_secondary")
  new <- par | m$depends_on %in% m$id[par]
  cpu <- function(e) { t <- system.time(e); t[["user.self"]] + t[["sys.self"]] }
  t_par <- cpu(suppressMessages(analyse(x, d, models = m[par, ], imputations = 5, progress = FALSE)))
  t_new <- cpu(suppressMessages(analyse(x, d, models = m[new, ], imputations = 5, progress = FALSE)))
  cat(sprintf("  of which the wild bootstrap and CR3 rows of the linear secondaries (%s): %.1f s CPU (parents alone %.1f s, with them %.1f s)\n",
              paste(m$id[new & !par], collapse = ", "), t_new - t_par, t_par, t_new))
  ap <- run("FV primary + secondary only, 5 imputations",
            suppressMessages(analyse(x, d, imputations = 5, sensitivity = FALSE,
                                     strands = "stepped_wedge")))
  summarise(ap)
  # reference: the primary model by hand (one sw_glmm() call)
  co <- as.data.frame(build_cohort(x, d))
  p <- co[!is.na(co$cla_18m), ]
  f <- a0$fits$fv_sw_cla_18m_primary$formula
  run("reference: one sw_glmm() of the primary model", suppressWarnings(sw_glmm(f, droplevels(p))))
}
if (what %in% c("fs", "all")) {
  x <- run("FS simulate_sfp() (effect cla = -0.3)",
           simulate_sfp("family_safeguarding", effects = list(cla = -0.3), seed = 1))
  d <- design_family_safeguarding(x)
  a0 <- run("FS plan, complete cases", suppressMessages(analyse(x, d, imputations = 0)))
  summarise(a0)
  a5 <- run("FS plan, 5 imputations", suppressMessages(analyse(x, d, imputations = 5)))
  summarise(a5)
}
