# Benchmark (issues #13, #14): the logit did_fit() score bootstrap's
# confidence interval by test inversion, each p(r) a restricted IRLS refit
# with the fixed effects absorbed, on the Family Safeguarding logit DiD that
# `make demo` fits (the demo's simulation: 5 treated + 10 candidate
# authorities, seed 20201001; care entry within 18 months, CEM-weighted,
# authority and financial-year effects, 10 authorities in the matched
# sample). Four paths in one process, on the same fit and the same 9,999
# Webb draws:
#   new      wild_boot(): refits warm-started along the tangent, the grid
#            tested up to its first rejection, the last bisection steps
#            inside 0.01 se brackets interpolated;
#   exact    the same warm starts, a refit at every r the inversion asks for
#            (score_boot(interp = 0), the full grid);
#   former   the code before this change, verbatim (logit_score_contrib_former()
#            below, on the same irls_fe()): each refit started from the
#            nearest one's linear predictor with only the offset moved to r,
#            the full grid, a refit at every r;
#   cold     the former code with every refit IRLS from the data (the path
#            before any warm start).
# Prints CPU time, refits, the ratio, the limits (differences in standard
# errors) and the peak R heap of each.
# Run from the package root:  nice Rscript bench/score_boot.R [quick]
# (quick: leave out the cold path, the slowest).
pkgload::load_all(quiet = TRUE)
quick <- identical(commandArgs(trailingOnly = TRUE)[1], "quick")
seed <- 20201001
x <- simulate_sfp("family_safeguarding", n_la = 15, seed = seed, effects = list(cla = log(0.8)))
design <- design_family_safeguarding(x)
m <- protocol_models(design)
a <- suppressMessages(analyse(x, design, models = m[m$id == "fs_did_cla_18m_primary", ],
                              imputations = 0L, progress = FALSE))
f <- a$fits$fs_did_cla_18m_primary
rm(x, a)
stopifnot(f$family == "binomial")
cat(sprintf("FS logit DiD (make demo's data): %s rows, %d columns, fixed effects %s (%s levels), %d clusters\n",
            format(length(f$y), big.mark = ","), ncol(f$X_raw), "la + financial year",
            paste(f$fe$nlev, collapse = " + "), f$n_clusters))

cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
peak_mb <- function() sum(gc()[, "max used"] * c(56, 8)) / 2^20
run <- function(expr) {
  invisible(gc(reset = TRUE))
  t <- system.time(val <- force(expr))
  list(value = val, cpu = cpu(t), mem = peak_mb())
}
draws <- boot_draws(f$n_clusters, "webb", 9999L, seed)
pig <- tabulate(f$cluster, f$n_clusters) / length(f$cluster)
beta <- unname(f$coefficients["treated"])
se <- sqrt(f$vcov["treated", "treated"])
# the former paths: the test at r = 0, then a refit at every r, through the
# same invert_test()
invert_with <- function(contrib) {
  n <- 0L
  pv <- function(r) {
    n <<- n + 1L
    score_boot_test(as.vector(contrib(r)), pig, draws$V, beta)$p_value
  }
  pv(0)
  ci <- invert_test(pv, beta, se, 0.05)
  list(conf_int = ci, refits = n)
}
# the former a_g(r), verbatim: the full design demeaned again and a second
# QR after the restricted IRLS, n x k products for the scores
logit_score_contrib_former <- function(fit, param, r, start = NULL) {
  X <- fit$X_raw
  j <- match(param, colnames(X))
  ctrl <- fit$ctrl %||% did_control()
  w <- fit$weights
  ww <- if (is.null(w)) 1 else w
  codes0 <- local_codes(fit$fe)
  rf <- irls_fe(fit$y, X[, -j, drop = FALSE], codes0, fit$fe$nlev, w,
                offset = r * X[, j], ctrl = ctrl,
                eta_start = if (!is.null(start)) start$eta + (r - start$r) * X[, j])
  mu <- rf$mu
  wv <- ww * mu * (1 - mu)
  Xt <- if (length(codes0)) .Call(ffi_demean, X, codes0, fit$fe$nlev, wv, ctrl$tol, ctrl$maxit) else X
  M <- .Call(ffi_wls, Xt, rep(0, nrow(Xt)), wv, 1e-7)$bread
  S <- rowsum(Xt * (ww * (fit$y - mu)), fit$cluster, reorder = TRUE)
  structure(drop(S %*% M[, j]), convergence = rf$convergence, eta = rf$eta)
}
former <- function() {
  made <- list()
  invert_with(function(r) {
    near <- if (length(made)) made[[which.min(abs(vapply(made, `[[`, 0, "r") - r))]]
    a <- logit_score_contrib_former(f, "treated", r, start = near)
    made[[length(made) + 1L]] <<- list(r = r, eta = attr(a, "eta"))
    a
  })
}
res <- list(new = run(suppressMessages(wild_boot(f, "treated", seed = seed))),
            exact = run(score_boot(f, "treated", draws, 0.95, 0, interp = 0)),
            former = run(former()))
if (!quick) res$cold <- run(invert_with(function(r) logit_score_contrib_former(f, "treated", r)))
ref <- res$exact$value$conf_int
cat(sprintf("score bootstrap interval (9,999 Webb draws), estimate %.6f, se %.6f\n", beta, se))
for (k in names(res)) {
  v <- res[[k]]$value
  cat(sprintf("  %-8s %7.1f s CPU  %3d refits  ratio to new %5.1f  [%.8f, %.8f]  (limits - exact) / se: %8.1e %8.1e  peak R heap %5.0f MB\n",
              k, res[[k]]$cpu, v$refits, res[[k]]$cpu / res$new$cpu, v$conf_int[1], v$conf_int[2],
              (v$conf_int[1] - ref[1]) / se, (v$conf_int[2] - ref[2]) / se, res[[k]]$mem))
}
