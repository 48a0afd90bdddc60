# Benchmark (issue #14): the Family Valued absence logit, sessions missed out
# of sessions possible with random intercepts for the authority and the
# child within it, `(1 | la/child_id)`, on the default simulated data
# (simulate_sfp("family_valued"): 5 authorities, ~34,000 children with
# absence records, ~90,000 child-terms), as analyse() fits it, against
# lme4::glmer(nAGQ = 1) with the same formula on the same rows, in one
# process. Prints elapsed and CPU time, peak R heap (gc "max used", reset
# before each fit; the C core's scratch is R_alloc'ed, so it is counted) and
# the agreement of the estimates. Then the cost per imputation with a warm
# start (analyse() refits the row on each imputation from the previous fit),
# and the standard errors' Hessian: exact (C, one evaluation: what the fit
# uses since #14) against forward differences of the gradient (what it used
# before), at the estimate, with the largest relative SE difference.
# Memory is O(rows): per cell a handful of doubles, per child ten (no
# children x children matrix; the Hessian per authority is an arrowhead).
# Run from the package root:  nice Rscript bench/glmm_nested.R [noglmer]
pkgload::load_all(quiet = TRUE)
Sys.setenv(OMP_NUM_THREADS = "1")
skip_glmer <- identical(commandArgs(trailingOnly = TRUE)[1], "noglmer")

peak_mb <- function() sum(gc()[, "max used"] * c(56, 8)) / 2^20
run <- function(label, expr) {
  invisible(gc(reset = TRUE))
  base <- sum(gc()[, "used"] * c(56, 8)) / 2^20
  t <- system.time(res <- force(expr))
  cpu[[label]] <<- t[["user.self"]] + t[["sys.self"]]
  cat(sprintf("%-44s elapsed %7.2f s  cpu %7.2f s  peak R heap %6.0f MB (+%4.0f MB over the data)\n",
              label, t[["elapsed"]], t[["user.self"]] + t[["sys.self"]], peak_mb(),
              peak_mb() - base))
  res
}

cpu <- list()
x <- simulate_sfp("family_valued", seed = 1)
d <- design_family_valued(x)
# the plan's formula for the row, as analyse() fitted it (levels without
# events merged, constant covariates left out)
a <- suppressMessages(analyse(x, d, imputations = 0))
f <- a$fits$fv_sw_absence_logit$formula
cat("formula:", paste(deparse(f), collapse = " "), "\n")
# the same rows by hand (as test-analyse.R does)
cohort <- build_cohort(x, d)
ab <- absence_panel(cohort)
co <- as.data.frame(cohort)
co <- co[setdiff(names(co), setdiff(names(ab), "child_id"))]
p <- merge(ab, co, by = "child_id")
vars <- intersect(all.vars(f), names(p))
p <- p[stats::complete.cases(p[vars]), ]
for (v in vars) if (is.factor(p[[v]])) p[[v]] <- droplevels(p[[v]])
cat(sprintf("rows %s, children %s, authorities %d, fixed effects %d\n",
            format(nrow(p), big.mark = ","), format(length(unique(paste(p$la, p$child_id))), big.mark = ","),
            length(unique(p$la)), ncol(stats::model.matrix(lme4::nobars(f), p))))

fit <- run("sw_glmm() (Laplace, cold start)", sw_glmm(f, p))
cat(sprintf("  Newton iterations %d; %s\n", fit$iterations, fit$convergence$message))
warm <- run("sw_glmm() warm start (next imputation)",
            sw_glmm_fit(quote(sw_glmm()), f, p, start = glmm_start(fit)))
cat(sprintf("  Newton iterations %d; max |difference| from the cold fit %.2g\n",
            warm$iterations, max(abs(warm$theta - fit$theta))))
# an imputation changes some covariate values: 5% of the rows' ethnicity and
# FSM permuted, refitted from the fit on the original rows
set.seed(2)
p2 <- p
i <- sample(nrow(p2), round(0.05 * nrow(p2)))
p2$ethnicity_cin[i] <- sample(p2$ethnicity_cin, length(i))
p2$fsm_ever[i] <- sample(p2$fsm_ever, length(i))
warm2 <- run("sw_glmm() warm start, 5% of two covariates changed",
             suppressMessages(sw_glmm_fit(quote(sw_glmm()), f, p2, start = glmm_start(fit))))
cat(sprintf("  Newton iterations %d\n", warm2$iterations))
cells <- fit$nested_cells
th <- unname(fit$theta)
ev <- run("  one log-likelihood + gradient evaluation", nested_eval(cells, th, 1L))
m0 <- ev$mode
ev <- run("  the same from the estimate's modes", nested_eval(cells, th, 1L, m0))
hx <- run("SEs' Hessian, exact (since #14)",
          nested_hessian(cells, th, fit$free, nested_eval(cells, th, 3L, m0)))
hf <- run("SEs' Hessian, forward differences (before)", nested_hessian_fd(cells, th, fit$free, ev))
se_x <- sqrt(diag(solve(-hx)))
se_f <- sqrt(diag(solve(-hf)))
cat(sprintf("  %d free parameters; Hessian time exact / differences: %.3f; max relative SE difference %.2g\n",
            length(fit$free), cpu[["SEs' Hessian, exact (since #14)"]] / cpu[["SEs' Hessian, forward differences (before)"]],
            max(abs(se_x / se_f - 1))))
# what the row cost before (#14): the authority intercept alone
f_la <- stats::update(f, . ~ . - (1 | la/child_id) + (1 | la))
la_fit <- run("sw_glmm() with (1 | la) only (the old row)", suppressMessages(sw_glmm(f_la, p)))
cat(sprintf("FV plan with 5 imputations: the row costs about %.1f s CPU (one cold fit + 4 warm starts)\n",
            cpu[["sw_glmm() (Laplace, cold start)"]] + 4 * cpu[["sw_glmm() warm start, 5% of two covariates changed"]]))

if (!skip_glmer && requireNamespace("lme4", quietly = TRUE)) {
  tg <- system.time(gl <- run("lme4::glmer(nAGQ = 1)",
                              suppressWarnings(lme4::glmer(f, p, family = stats::binomial()))))
  tf <- system.time(sw_glmm(f, p))
  cat(sprintf("glmer / sw_glmm elapsed: %.0f x\n", tg[["elapsed"]] / tf[["elapsed"]]))
  b <- lme4::fixef(gl)
  th <- lme4::getME(gl, "theta")
  cat(sprintf("treated: sw_glmm %.6f (SE %.6f), glmer %.6f (SE %.6f)\n",
              fit$coefficients[["treated"]], sqrt(fit$vcov["treated", "treated"]),
              b[["treated"]], sqrt(as.matrix(stats::vcov(gl))["treated", "treated"])))
  cat(sprintf("SDs (la, child:la): sw_glmm %.6f %.6f, glmer %.6f %.6f\n",
              fit$sigma[1], fit$sigma[2], th[["la.(Intercept)"]], th[["child_id:la.(Intercept)"]]))
  cat(sprintf("max |fixed effect difference| %.2g; logLik sw_glmm %.4f, glmer %.4f\n",
              max(abs(fit$coefficients - b)), fit$loglik, as.numeric(stats::logLik(gl))))
}
