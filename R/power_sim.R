# Simulation-based power (issue #7): draw trials from a design with the C
# simulator (src/power.c) and run the real analysis on each.

#' A trial design for simulation-based power
#'
#' Describes the trials [power_sim()] draws: clusters (local authorities)
#' with their go-live periods, the number of children per cluster and period,
#' the baseline rate, the intracluster correlation and how persistent a
#' cluster's deviation is across periods, period effects and categorical
#' covariates.
#'
#' The outcome is binary and follows a random-intercept logistic model:
#' `logit p = alpha_period + gamma_pattern + theta * treated + a_cluster +
#' c_cluster,period` with `a ~ N(0, sigma^2 * autocorr)` and
#' `c ~ N(0, sigma^2 * (1 - autocorr))`. `sigma` is chosen so that the
#' intracluster correlation on the proportion scale (the one-way ANOVA ICC of
#' Stata's `loneway`, as the protocols used) equals `icc` at the baseline rate.
#'
#' @param type `"stepped_wedge"` (every cluster eventually treated; analysed
#'   by the GLMM) or `"did"` (treated and never-treated comparator clusters;
#'   analysed by the DiD regression).
#' @param go_live Each cluster's first treated period (0-based period index;
#'   `Inf` for a comparator never treated). Defaults: Family Valued, five
#'   authorities going live at periods 1-5 of 0-5; DiD, five treated
#'   authorities going live at periods 2-4 and five comparators.
#' @param periods Number of periods.
#' @param m Children per cluster and period: one number, or a clusters x
#'   periods matrix.
#' @param p0 Baseline rate (control condition, period 0, reference pattern).
#' @param icc Intracluster correlation (proportion scale).
#' @param autocorr Correlation of a cluster's random effect between periods
#'   (1: a constant cluster effect, as in Hussey & Hughes).
#' @param period_effects Log-odds shifts of periods 1.. relative to period 0
#'   (length `periods - 1`), default none.
#' @param covariates `NULL` or a list of categorical covariates, each a list
#'   with `prevalence` (probabilities of its levels, summing to 1) and
#'   `log_odds` (effects relative to the first level, first element 0).
#' @param strata For stepped wedges: each cluster's randomisation stratum,
#'   used by the permutation test.
#' @param outcome `"binary"` (the default, above) or `"continuous"`: the
#'   Hussey & Hughes linear model `y = period + theta * treated + a + c + e`
#'   with total variance `sd^2` of which a share `icc` lies between clusters;
#'   `effect` is then a mean difference, and the analysis a linear mixed
#'   model.
#' @param sd Standard deviation of a continuous outcome.
#' @return An object of class `sfp_power_design`.
#' @examples
#' power_design()                     # the Family Valued trial
#' power_design("did", m = 1700, p0 = 0.06, icc = 0.00722)
#' @export
power_design <- function(type = c("stepped_wedge", "did"), go_live = NULL,
                         periods = NULL, m = NULL, p0 = NULL, icc = NULL,
                         autocorr = 1, period_effects = NULL, covariates = NULL,
                         strata = NULL, outcome = c("binary", "continuous"),
                         sd = 1) {
  type <- match.arg(type)
  outcome <- match.arg(outcome)
  if (type == "stepped_wedge") {
    go_live <- go_live %||% 1:5
    periods <- periods %||% 6L
    m <- m %||% 2600
    p0 <- p0 %||% 0.04
    icc <- icc %||% 0.01566
    if (is.null(strata) && length(go_live) == 5L) strata <- c("high", "high", "low", "low", "low")
  } else {
    go_live <- go_live %||% c(2, 2, 3, 3, 4, rep(Inf, 5))
    periods <- periods %||% 6L
    m <- m %||% 1700
    p0 <- p0 %||% 0.06
    icc <- icc %||% 0.00722
  }
  I <- length(go_live)
  if (I < 2L) stop_arg("go_live", "must give at least two clusters")
  if (!is.numeric(go_live) || anyNA(go_live) || any(go_live < 0)) {
    stop_arg("go_live", "must be non-negative period indices (Inf = never treated)")
  }
  if (!is.numeric(periods) || length(periods) != 1L || periods < 2) {
    stop_arg("periods", "must be one whole number of at least 2")
  }
  if (type == "stepped_wedge" && any(!is.finite(go_live))) {
    stop_arg("go_live", "must be finite for a stepped wedge (every cluster is treated)",
             "use `type = \"did\"` for designs with never-treated comparators.")
  }
  if (outcome == "continuous") {
    p0 <- 0.5                    # unused: the mean is 0 in period 0
    if (!is.numeric(sd) || length(sd) != 1L || !(sd > 0)) stop_arg("sd", "must be positive")
  }
  if (!is.numeric(p0) || length(p0) != 1L || !(p0 > 0 && p0 < 1)) {
    stop_arg("p0", "must be a baseline rate strictly between 0 and 1")
  }
  if (!is.numeric(icc) || length(icc) != 1L || !(icc >= 0 && icc < 1)) {
    stop_arg("icc", "must lie in [0, 1)")
  }
  if (!is.numeric(autocorr) || length(autocorr) != 1L || !(autocorr >= 0 && autocorr <= 1)) {
    stop_arg("autocorr", "must lie in [0, 1]")
  }
  M <- if (length(m) == 1L) matrix(m, I, periods) else as.matrix(m)
  if (!identical(dim(M), c(I, as.integer(periods))) || anyNA(M) || any(M < 0)) {
    stop_arg("m", sprintf("must be one number or a %d x %d matrix of non-negative sizes", I, periods),
             "give the children per cluster and period, e.g. `m = 100`.")
  }
  pe <- period_effects %||% rep(0, periods - 1L)
  if (length(pe) != periods - 1L) {
    stop_arg("period_effects", sprintf("must have length periods - 1 = %d", periods - 1L))
  }
  pat <- covariate_patterns(covariates)
  X <- outer(go_live, seq_len(periods) - 1L, "<=") * 1
  cal <- if (outcome == "binary") icc_to_sigma(icc, p0) else
    list(sigma = sd * sqrt(icc), intercept = 0)
  structure(list(type = type, go_live = go_live, periods = as.integer(periods),
                 m = matrix(as.integer(round(M)), I), p0 = p0, icc = icc,
                 autocorr = autocorr, period_effects = pe, covariates = covariates,
                 patterns = pat, treated = X, strata = strata,
                 sigma = cal$sigma, intercept = cal$intercept,
                 outcome = outcome, sd = sd),
            class = "sfp_power_design")
}

#' @export
print.sfp_power_design <- function(x, ...) {
  cat(sprintf("%s design for simulation: %d clusters x %d periods, %s children per cell\n",
              if (x$type == "stepped_wedge") "Stepped-wedge" else "DiD",
              length(x$go_live), x$periods, format(stats::median(x$m), big.mark = ",")))
  cat(sprintf("  baseline %.3g, ICC %.4g (logit-scale SD %.3f), autocorrelation %.2f, %d covariate pattern%s\n",
              x$p0, x$icc, x$sigma, x$autocorr, nrow(x$patterns$X) %||% 1L,
              if ((nrow(x$patterns$X) %||% 1L) == 1L) "" else "s"))
  cat("  go-live period by cluster: ", paste(x$go_live, collapse = " "), "\n", sep = "")
  invisible(x)
}

# Logit-scale SD giving intracluster correlation `icc` on the proportion
# scale (var of cluster rates / p(1 - p)) with mean rate p0, and the
# intercept giving that mean: list(sigma, intercept).
icc_to_sigma <- function(icc, p0) {
  if (icc == 0) return(list(sigma = 0, intercept = stats::qlogis(p0)))
  gh <- normal_quadrature(40L)
  f <- function(s) {
    mu <- logit_mean_solve(p0, s)
    p <- stats::plogis(mu + s * gh$z)
    m1 <- sum(gh$w * p)
    (sum(gh$w * p^2) - m1^2) / (p0 * (1 - p0)) - icc
  }
  s <- stats::uniroot(f, c(1e-8, 8), tol = 1e-12)$root
  list(sigma = s, intercept = logit_mean_solve(p0, s))
}

# The intercept mu with E[plogis(mu + sigma Z)] = p, Z standard normal.
logit_mean_solve <- function(p, sigma) {
  if (sigma == 0) return(stats::qlogis(p))
  gh <- normal_quadrature(40L)
  stats::uniroot(function(mu) sum(gh$w * stats::plogis(mu + sigma * gh$z)) - p,
                 c(-60, 60), tol = 1e-12)$root
}


covariate_patterns <- function(covariates) {
  if (is.null(covariates) || !length(covariates)) {
    return(list(prev = 1, gamma = 0, X = matrix(0, 1L, 0L)))
  }
  if (is.null(names(covariates)) || any(names(covariates) == "")) {
    stop_arg("covariates", "must be a named list")
  }
  lv <- lapply(names(covariates), function(nm) {
    cv <- covariates[[nm]]
    p <- cv$prevalence
    b <- cv$log_odds %||% rep(0, length(p))
    if (!is.numeric(p) || length(p) < 2L || any(p < 0) || abs(sum(p) - 1) > 1e-8) {
      stop_arg(paste0("covariates$", nm, "$prevalence"), "must be probabilities summing to 1")
    }
    if (length(b) != length(p) || b[1] != 0) {
      stop_arg(paste0("covariates$", nm, "$log_odds"),
               "must have one effect per level, the first 0 (the reference level)")
    }
    seq_along(p)
  })
  grid <- expand.grid(lv)
  prev <- Reduce(`*`, lapply(seq_along(lv), function(j) covariates[[j]]$prevalence[grid[[j]]]))
  gamma <- Reduce(`+`, lapply(seq_along(lv), function(j) {
    b <- covariates[[j]]$log_odds %||% rep(0, length(lv[[j]]))
    b[grid[[j]]]
  }))
  X <- do.call(cbind, lapply(seq_along(lv), function(j) {
    L <- length(lv[[j]])
    M <- outer(grid[[j]], 2:L, "==") * 1
    colnames(M) <- paste0(names(covariates)[j], 2:L)
    M
  }))
  list(prev = prev, gamma = gamma, X = X)
}

# One simulated trial as binomial cells (data frame: cluster, period, pattern,
# treated, n, s), drawn with R's current random stream.
simulate_trial_cells <- function(design, theta) {
  if (identical(design$outcome, "continuous")) return(simulate_trial_gaussian(design, theta))
  pat <- design$patterns
  alpha <- design$intercept + c(0, design$period_effects)
  out <- .Call(ffi_sim_trial, design$m, design$treated * 1.0, as.double(alpha),
               as.double(pat$gamma), as.double(pat$prev), as.double(theta),
               as.double(design$sigma), as.double(design$autocorr))
  I <- length(design$go_live)
  J <- design$periods
  K <- length(pat$prev)
  data.frame(cluster = rep(seq_len(I), each = J * K),
             period = rep(rep(seq_len(J) - 1L, each = K), I),
             pattern = rep(seq_len(K), I * J),
             treated = rep(as.vector(t(design$treated)), each = K),
             n = out$n, s = out$s)
}

# A continuous-outcome trial, one row per individual (Hussey & Hughes).
simulate_trial_gaussian <- function(design, theta) {
  I <- length(design$go_live)
  J <- design$periods
  r <- design$autocorr
  a <- stats::rnorm(I, 0, design$sigma * sqrt(r))
  cc <- matrix(stats::rnorm(I * J, 0, design$sigma * sqrt(1 - r)), I, J)
  m <- design$m
  cl <- rep(rep(seq_len(I), J), as.vector(m))
  pe <- rep(rep(seq_len(J), each = I), as.vector(m))
  alpha <- c(0, design$period_effects)
  mu <- alpha[pe] + theta * design$treated[cbind(cl, pe)] + a[cl] + cc[cbind(cl, pe)]
  e_sd <- design$sd * sqrt(1 - design$icc)
  data.frame(cluster = cl, period = pe - 1L, treated = design$treated[cbind(cl, pe)],
             y = mu + stats::rnorm(length(mu), 0, e_sd))
}

#' Simulate trial data from a power design
#'
#' Draws one trial from `design` (see [power_design()]) and returns it as
#' binomial cells, or expanded to one row per child.
#'
#' @param design An `sfp_power_design`.
#' @param effect Treatment effect as a marginal risk difference at the
#'   baseline: the log odds ratio `theta` (conditional on the cluster effect,
#'   the GLMM's estimand) is chosen so that the population-averaged rate under
#'   treatment is `p0 + effect`.
#' @param seed Seed (the user's random stream is left alone).
#' @param rows `FALSE` for cells, `TRUE` for one row per child (outcome `y`).
#' @return A data frame.
#' @examples
#' d <- simulate_trial(power_design(m = 100), effect = 0.01, seed = 1)
#' head(d)
#' @export
simulate_trial <- function(design, effect = 0, seed = 1, rows = FALSE) {
  if (!inherits(design, "sfp_power_design")) stop_arg("design", "must come from power_design()")
  with_seed(seed, {
    cells <- simulate_trial_cells(design, effect_to_theta(effect, design))
  })
  if (!rows || identical(design$outcome, "continuous")) return(cells)
  expand_cells(cells, design)
}

expand_cells <- function(cells, design) {
  idx <- rep(seq_len(nrow(cells)), cells$n)
  ev <- unlist(lapply(seq_len(nrow(cells)), function(i) {
    c(rep(1L, cells$s[i]), rep(0L, cells$n[i] - cells$s[i]))
  }), use.names = FALSE)
  out <- cells[idx, c("cluster", "period", "pattern", "treated")]
  out$y <- ev
  if (ncol(design$patterns$X)) {
    out <- cbind(out, design$patterns$X[out$pattern, , drop = FALSE])
  }
  rownames(out) <- NULL
  out
}

effect_to_theta <- function(effect, design) {
  if (identical(design$outcome, "continuous")) return(effect)
  p1 <- design$p0 + effect
  if (!is.numeric(effect) || length(effect) != 1L || !(p1 > 0 && p1 < 1)) {
    stop_arg("effect", sprintf("must be one risk difference keeping p0 + effect inside (0, 1) (p0 = %g)",
                               design$p0))
  }
  logit_mean_solve(p1, design$sigma) - design$intercept
}


#' Simulation-based power, reusing the real analysis
#'
#' Draws `n_sims` trials from `design` with the C simulator and runs the real
#' analysis on each: the stepped-wedge GLMM (`"glmm"`, Wald test; or
#' `"glmm_perm"`, the stratified permutation test on the GLMM estimate) for a
#' stepped wedge, the DiD regression with CR2 standard errors and
#' Satterthwaite degrees of freedom (`"did"`) for a DiD design, or any
#' function `function(cells, design)` returning `c(estimate, std.error,
#' p.value, conf.low, conf.high)`.
#'
#' Replicate `r` uses its own L'Ecuyer-CMRG stream derived from `seed`, so
#' the answer is the same whether run serially, on `parallel` cores or on any
#' `future` backend (`parallel = "future"`, through future.apply).
#'
#' @param design An `sfp_power_design` from [power_design()].
#' @param effect One or more effects (marginal risk differences; see
#'   [simulate_trial()]). Several give a power curve ([plot()] draws it).
#' @param n_sims Number of simulated trials per effect (at most 1,000,000).
#' @param analysis `NULL` (the design's default: `"glmm"` for a stepped
#'   wedge, `"did"` for a DiD design, `"lmm"` for a continuous outcome), one
#'   of `"glmm"`, `"glmm_perm"`, `"lmm"`, `"did"`, or a function.
#' @param seed Seed of the replicate streams.
#' @param parallel `TRUE` (forked cores where available), `FALSE`, or
#'   `"future"` (the current future plan via future.apply).
#' @param cores Number of cores when `parallel = TRUE` (default: all but one,
#'   at most 4).
#' @param alpha Significance level.
#' @param null Also simulate under no effect and report the rejection rate.
#' @param progress Show a progress bar (cli's when installed, else
#'   `utils::txtProgressBar()`) on serial runs of 20 trials or more.
#' @param max_enumerate,n_perm For `analysis = "glmm_perm"`: the admissible
#'   allocations are counted first and listed when there are at most
#'   `max_enumerate`, otherwise `n_perm` are sampled (seeded by `seed`); the
#'   set is made once and used for every simulated trial. Each at most
#'   1,000,000.
#' @return An object of class `sfp_power_sim`: a data frame `results` with,
#'   per effect, `power` and its 95% Monte Carlo (Wilson) interval, `mean_estimate`,
#'   `truth`, `bias`, `coverage`, and (with `null = TRUE`) `null_rejection`;
#'   and the estimates of every replicate in `replicates`.
#' @examples
#' d <- power_design(m = 300)
#' ps <- power_sim(d, effect = 0.02, n_sims = 20, parallel = FALSE)
#' ps
#' @export
power_sim <- function(design, effect, n_sims = 1000L, analysis = NULL, seed = 1,
                      parallel = TRUE, cores = NULL, alpha = 0.05, null = FALSE,
                      progress = interactive(), max_enumerate = 10000L, n_perm = 1000L) {
  if (!inherits(design, "sfp_power_design")) stop_arg("design", "must come from power_design()")
  if (!is.numeric(effect) || !length(effect) || anyNA(effect)) {
    stop_arg("effect", "must be one or more risk differences",
             "give e.g. `effect = 0.05` (finite numbers).")
  }
  n_sims <- check_count_arg(n_sims, "n_sims")
  check_count_arg(max_enumerate, "max_enumerate", fix = .fix_max_enumerate)
  check_count_arg(n_perm, "n_perm")
  fun <- power_analysis(analysis, design, list(max_enumerate = max_enumerate, n_perm = n_perm,
                                               seed = seed))
  thetas <- vapply(effect, effect_to_theta, 0, design = design)
  jobs <- expand.grid(rep = seq_len(n_sims), k = seq_along(effect))
  if (null) jobs <- rbind(jobs, data.frame(rep = seq_len(n_sims), k = 0L))
  streams <- replicate_streams(seed, n_sims)
  one <- function(i) {
    j <- jobs[i, ]
    th <- if (j$k == 0L) 0 else thetas[j$k]
    # Every effect reuses replicate `rep`'s stream: trials differ across
    # effects only through the effect (common random numbers, so the power
    # curve is smooth).
    cells <- with_stream(streams[[j$rep]], simulate_trial_cells(design, th))
    fun(cells, design)
  }
  res <- run_jobs(nrow(jobs), one, parallel, cores, progress)
  est <- do.call(rbind, res)
  colnames(est) <- c("estimate", "std.error", "p.value", "conf.low", "conf.high")
  reps <- cbind(jobs, est)
  truth_of <- function(k) if (attr(fun, "scale") %in% c("risk_difference", "mean_difference")) {
    if (k == 0L) 0 else effect[k]
  } else if (k == 0L) 0 else thetas[k]
  summarise <- function(k) {
    r <- reps[reps$k == k, ]
    rej <- r$p.value < alpha
    n_ok <- sum(!is.na(rej))
    pw <- mean(rej, na.rm = TRUE)
    ci <- wilson_interval(sum(rej, na.rm = TRUE), n_ok)
    tr <- truth_of(k)
    data.frame(effect = if (k == 0L) 0 else effect[k], power = pw,
               power_low = ci[1], power_high = ci[2],
               mean_estimate = mean(r$estimate, na.rm = TRUE), truth = tr,
               bias = mean(r$estimate, na.rm = TRUE) - tr,
               coverage = mean(r$conf.low <= tr & tr <= r$conf.high, na.rm = TRUE),
               failed = sum(is.na(r$p.value)))
  }
  results <- do.call(rbind, lapply(seq_along(effect), summarise))
  if (null) results$null_rejection <- summarise(0L)$power
  structure(list(results = results, replicates = reps, design = design,
                 analysis = attr(fun, "label"), n_sims = n_sims, alpha = alpha,
                 seed = seed, scale = attr(fun, "scale")),
            class = "sfp_power_sim")
}

#' @export
print.sfp_power_sim <- function(x, ...) {
  cat(sprintf("Simulated power: %d trials per effect, analysis %s, alpha %g (estimates on the %s scale)\n",
              x$n_sims, x$analysis, x$alpha, gsub("_", " ", x$scale)))
  print(x$results, row.names = FALSE, digits = 4)
  invisible(x)
}

#' @export
plot.sfp_power_sim <- function(x, ...) {
  r <- x$results
  graphics::plot(r$effect, r$power, type = "b", pch = 16, ylim = c(0, 1),
                 xlab = "Effect (risk difference)", ylab = "Power",
                 main = sprintf("Simulated power (%d trials per effect)", x$n_sims), ...)
  graphics::arrows(r$effect, r$power_low, r$effect, r$power_high,
                   angle = 90, code = 3, length = 0.03)
  graphics::abline(h = 0.8, lty = 3)
  invisible(x)
}

# L'Ecuyer-CMRG stream of each replicate, from one seed.
replicate_streams <- function(seed, n) {
  s <- with_seed(seed, get(".Random.seed", envir = globalenv()), kind = "L'Ecuyer-CMRG")
  out <- vector("list", n)
  for (i in seq_len(n)) {
    out[[i]] <- s
    s <- parallel::nextRNGStream(s)
  }
  out
}


run_jobs <- function(n, one, parallel, cores, progress) {
  if (identical(parallel, "future")) {
    if (!requireNamespace("future.apply", quietly = TRUE)) {
      stop_arg("parallel", "is \"future\" but future.apply is not installed",
               "install future.apply, or use `parallel = TRUE` / `FALSE`.")
    }
    return(future.apply::future_lapply(seq_len(n), one, future.seed = NULL))
  }
  cores <- cores %||% max(1L, min(4L, parallel::detectCores(logical = FALSE) - 1L, na.rm = TRUE))
  if (isTRUE(parallel) && cores > 1L && .Platform$OS.type == "unix") {
    return(parallel::mclapply(seq_len(n), one, mc.cores = cores, mc.set.seed = FALSE))
  }
  show <- progress && n >= 20L
  use_cli <- show && requireNamespace("cli", quietly = TRUE)
  if (use_cli) {
    id <- cli::cli_progress_bar("Simulating trials", total = n, .auto_close = FALSE)
  }
  bar <- if (show && !use_cli) utils::txtProgressBar(0, n, style = 3) else NULL
  out <- vector("list", n)
  for (i in seq_len(n)) {
    out[[i]] <- one(i)
    if (use_cli) cli::cli_progress_update(id = id)
    if (!is.null(bar)) utils::setTxtProgressBar(bar, i)
  }
  if (use_cli) cli::cli_progress_done(id = id)
  if (!is.null(bar)) close(bar)
  out
}

# The analysis run on each simulated trial.
power_analysis <- function(analysis, design,
                           perm = list(max_enumerate = 10000L, n_perm = 1000L, seed = 1L)) {
  if (is.function(analysis)) {
    f <- function(cells, design) {
      out <- tryCatch(as.numeric(analysis(cells, design)), error = function(e) rep(NA_real_, 5))
      if (length(out) != 5L) out <- rep(NA_real_, 5)
      out
    }
    attr(f, "label") <- "user-supplied"
    attr(f, "scale") <- "user"
    return(f)
  }
  continuous <- identical(design$outcome, "continuous")
  analysis <- analysis %||% if (continuous) "lmm" else if (design$type == "stepped_wedge") "glmm" else "did"
  if (continuous && analysis %in% c("glmm", "glmm_perm")) {
    stop_arg("analysis", "must be \"lmm\" or \"did\" for a continuous outcome")
  }
  if (!continuous && analysis == "lmm") stop_arg("analysis", "\"lmm\" is for continuous outcomes")
  f <- switch(analysis,
    glmm = power_glmm,
    glmm_perm = local({
      al <- power_perm_allocations(design, perm$max_enumerate, perm$n_perm, perm$seed)
      function(cells, design) power_glmm_perm(cells, design, al)
    }),
    lmm = power_lmm,
    did = power_did,
    stop_arg("analysis", "must be \"glmm\", \"glmm_perm\", \"lmm\", \"did\" or a function"))
  attr(f, "label") <- analysis
  attr(f, "scale") <- if (continuous) "mean_difference" else if (analysis == "did") "risk_difference" else "log_odds"
  f
}

# ---- analyses run on each simulated trial ------------------------------------

# The DiD regression (linear probability model, cluster and period fixed
# effects, CR2 with Satterthwaite df) of one row per child, computed on the
# cells' sufficient statistics: children in a cell share every regressor, so
# the least squares on rows is the least squares of the cell proportion s/n
# with weights n, and the rows' CR2 and df are the cells' with n as
# frequency weights (did_freq_weights()); no rows are built.
power_did <- function(cells, design) {
  continuous <- identical(design$outcome, "continuous")
  covs <- colnames(design$patterns$X)
  rhs <- paste(paste(c("treated", covs), collapse = " + "), "| cluster + period")
  if (continuous) {
    d <- cells
    f <- stats::as.formula(paste("y ~", rhs))
  } else {
    d <- cells[cells$n > 0, c("cluster", "period", "pattern", "treated", "n", "s")]
    d$ybar <- d$s / d$n
    if (length(covs)) d <- cbind(d, design$patterns$X[d$pattern, , drop = FALSE])
    f <- stats::as.formula(paste("ybar ~", rhs))
  }
  fit <- tryCatch(suppressMessages(
    if (continuous) did_fit(f, d, cluster = ~cluster, family = "gaussian", vcov = "CR2") else
      did_freq_weights(did_fit(f, d, cluster = ~cluster, weights = ~n, family = "gaussian",
                               vcov = "CR0"), "CR2")),
                  error = function(e) NULL)
  if (is.null(fit)) return(rep(NA_real_, 5))
  r <- did_term(fit, "treated")
  q <- stats::qt(0.975, r$df)
  c(r$estimate, r$std.error, r$p.value, r$estimate - q * r$std.error, r$estimate + q * r$std.error)
}

# The stepped-wedge GLMM (random intercept per cluster, period fixed effects,
# covariate patterns), fitted by Laplace on the trial's binomial cells: the
# same code sw_glmm() runs after collapsing rows, without building 78,000
# rows. Wald test, as sw_glmm() reports.
power_glmm <- function(cells, design) {
  fit <- tryCatch(glmm_fit_trial(cells, design, se = TRUE), error = function(e) NULL)
  if (is.null(fit)) return(rep(NA_real_, 5))
  est <- fit$coefficients[["treated"]]
  se <- sqrt(fit$vcov["treated", "treated"])
  if (!is.finite(se)) return(c(est, NA, NA, NA, NA))
  q <- stats::qnorm(0.975)
  c(est, se, 2 * stats::pnorm(-abs(est / se)), est - q * se, est + q * se)
}

# The GLMM estimate with the stratified permutation test (Wang & De Gruttola)
# over the design's admissible allocations (within `design$strata`). The
# allocations are counted, then listed (at most `max_enumerate`) or sampled
# once per design (power_perm_allocations()), not once per trial.
power_glmm_perm <- function(cells, design, allocs = power_perm_allocations(design)) {
  fit <- tryCatch(glmm_fit_trial(cells, design, se = FALSE), error = function(e) NULL)
  if (is.null(fit)) return(rep(NA_real_, 5))
  obs <- fit$coefficients[["treated"]]
  d <- fit$cells
  cl <- d$cell_cluster
  per <- attr(d, "period")
  refit <- function(tr) stats::coef(sw_glmm_refit(fit, tr, se = FALSE))[["treated"]]
  stats <- apply(allocs$allocations, 1L, function(g) refit(as.integer(per >= g[cl])))
  # the observed statistic through the same refit path as the allocations'
  # (as perm_test() does), so the observed allocation ties with itself
  # exactly; the first fit differs from its refit at the optimiser's
  # tolerance, which a 1e-12 tie rule would count as less extreme
  t_obs <- refit(as.integer(d$X[, "treated"]))
  ext <- abs(stats) >= abs(t_obs) - 1e-12 * max(1, abs(t_obs))
  p <- if (allocs$sampled) (1 + sum(ext)) / (length(stats) + 1) else mean(ext)
  c(obs, NA_real_, p, NA_real_, NA_real_)
}

# The allocations of the design's go-live periods within its strata: all of
# them when there are at most `max_enumerate`, else `n_perm` sampled with
# `seed` (the same set for every simulated trial).
power_perm_allocations <- function(design, max_enumerate = 10000L, n_perm = 1000L, seed = 1L) {
  go <- stats::setNames(as.numeric(design$go_live), seq_along(design$go_live))
  allocation_set(go, strata_groups(design$strata, length(go)), max_enumerate, n_perm, seed)
}

# Fit the stepped-wedge GLMM on simulated cells through sw_glmm()'s own
# cell-level code (R/glmm.R): model matrix per cell, cells sorted by cluster.
glmm_fit_trial <- function(cells, design, se = TRUE) {
  keep <- cells$n > 0
  cells <- cells[keep, ]
  o <- order(cells$cluster)
  cells <- cells[o, ]
  J <- design$periods
  P <- outer(cells$period, seq_len(J - 1L), "==") * 1
  colnames(P) <- paste0("period", seq_len(J - 1L))
  X <- cbind(`(Intercept)` = 1, treated = as.numeric(cells$treated), P,
             design$patterns$X[cells$pattern, , drop = FALSE])
  G <- length(design$go_live)
  d <- list(X = X, n = as.double(cells$n), s = as.double(cells$s),
            cell_cluster = cells$cluster,
            cstart = as.integer(c(0L, cumsum(tabulate(cells$cluster, G)))),
            row_cell = seq_len(nrow(cells)), row_s = as.double(cells$s),
            row_n = as.double(cells$n))
  attr(d, "period") <- cells$period
  d$gh <- gauss_hermite(1L)
  d$u0 <- double(0)
  cf <- lapply(c(0, 1), function(val) {
    Xc <- d$X
    Xc[, 2L] <- val
    unique_rows(Xc, d$n)
  })
  trt_info <- list(name = "treated", coef = 2L, main_only = TRUE,
                   cf = list(X0 = cf[[1]], X1 = cf[[2]]))
  info <- list(levels = as.character(seq_len(G)), groups = "cluster", Q = 1L,
               sigma_fixed = NULL, trt_info = trt_info)
  fit <- binom_estimate(d, info, glmm_control(list()), start = NULL, se = se)
  fit$n_data <- nrow(cells)
  fit$kept_rows <- seq_len(nrow(cells))
  attr(fit$cells, "period") <- cells$period
  fit
}

# The linear mixed model (random intercept per cluster, period effects) on a
# continuous outcome, Wald test with normal quantiles as Hussey & Hughes.
power_lmm <- function(rows, design) {
  fit <- tryCatch(suppressWarnings(suppressMessages(
    sw_glmm(y ~ treated + factor(period) + (1 | cluster), rows, family = stats::gaussian()))),
    error = function(e) NULL)
  if (is.null(fit)) return(rep(NA_real_, 5))
  est <- fit$coefficients[["treated"]]
  se <- sqrt(fit$vcov["treated", "treated"])
  q <- stats::qnorm(0.975)
  c(est, se, 2 * stats::pnorm(-abs(est / se)), est - q * se, est + q * se)
}

# Wilson score interval for a proportion x / n (95%).
wilson_interval <- function(x, n, level = 0.95) {
  if (n == 0) return(c(NA_real_, NA_real_))
  z <- stats::qnorm(1 - (1 - level) / 2)
  p <- x / n
  centre <- (p + z^2 / (2 * n)) / (1 + z^2 / n)
  half <- z * sqrt(p * (1 - p) / n + z^2 / (4 * n^2)) / (1 + z^2 / n)
  c(centre - half, centre + half)
}
