# Stepped-wedge randomisation and permutation tests (Family Valued protocol,
# "Randomisation" p. 8-9 and "Non-parametric permutation test"; `vignette("methods")`
# section 5 and section 0 item 6).

#' Draw the stepped-wedge allocation, and list every admissible one
#'
#' Randomises local authorities to roll-out steps the way the Family Valued
#' protocol did (p. 8): within readiness strata, with the high-readiness
#' authorities taking the first steps and the low-readiness ones the later
#' steps. Records the seed and lists every allocation the scheme could have
#' produced, which [perm_test()] permutes over.
#'
#' @param las Character vector of local authority codes (unique).
#' @param strata Stratum of each authority (same length as `las`), or `NULL`
#'   for an unstratified randomisation of all authorities to all steps.
#' @param steps The step (roll-out slot) numbers to fill, one per authority;
#'   default `seq_along(las)`.
#' @param seed Integer seed. The user's random number state is restored
#'   afterwards.
#' @param stratum_order Order in which strata take the steps. Default: `"high"`
#'   before `"low"` when the strata are readiness levels, else the factor
#'   levels (or sorted unique values) of `strata`.
#' @return An object of class `sw_allocation`: `allocation` (data frame with
#'   `la`, `stratum`, `step`), `admissible` (integer matrix, one row per
#'   admissible allocation, one column per authority, giving its step),
#'   `seed`, `strata`.
#' @examples
#' a <- sw_randomise(c("L1", "L2", "L3", "L4", "L5"),
#'                   strata = c("high", "low", "high", "low", "low"), seed = 42)
#' a
#' nrow(a$admissible)   # 2! x 3! = 12
#' @export
sw_randomise <- function(las, strata = NULL, steps = seq_along(las), seed,
                         stratum_order = NULL) {
  if (missing(seed) || !is.numeric(seed) || length(seed) != 1L || is.na(seed)) {
    stop_arg("seed", "must be one number", "record the seed you randomise with, e.g. `seed = 20200101`.")
  }
  las <- as.character(las)
  if (!length(las) || anyNA(las) || anyDuplicated(las)) {
    stop_arg("las", "must be unique, non-missing local authority codes")
  }
  if (length(steps) != length(las) || anyNA(steps)) {
    stop_arg("steps", sprintf("must give one step per authority (%d)", length(las)))
  }
  groups <- allocation_groups(las, strata, stratum_order)
  steps <- sort(as.integer(steps))
  slots <- split(steps, rep(seq_along(groups$sizes), groups$sizes))
  # Draw, with the user's generator and random state restored afterwards.
  step_of <- integer(length(las))
  with_seed(seed, for (k in seq_along(groups$members)) {
    who <- groups$members[[k]]
    step_of[who] <- slots[[k]][sample.int(length(who))]
  })
  allocation <- data.frame(la = las, stratum = groups$label, step = step_of,
                           stringsAsFactors = FALSE)
  structure(list(allocation = allocation[order(allocation$step), ],
                 admissible = admissible_allocations(groups$members, slots, las),
                 seed = seed, strata = groups$order),
            class = "sw_allocation")
}

#' @export
print.sw_allocation <- function(x, ...) {
  cat("Stepped-wedge allocation (seed ", x$seed, ")\n", sep = "")
  print(x$allocation, row.names = FALSE)
  n <- nrow(x$admissible)
  cat(sprintf("%d admissible allocations%s; smallest attainable two-sided permutation p-value %s\n",
              n, if (length(x$strata) > 1) " within strata" else "",
              format(1 / n, digits = 3)))
  invisible(x)
}

# Strata as groups of authority indices in slot order.
allocation_groups <- function(las, strata, stratum_order) {
  if (is.null(strata)) {
    return(list(members = list(seq_along(las)), sizes = length(las),
                label = rep(NA_character_, length(las)), order = character()))
  }
  if (length(strata) != length(las) || anyNA(strata)) {
    stop_arg("strata", sprintf("must give a non-missing stratum for each of the %d authorities", length(las)))
  }
  lab <- as.character(strata)
  if (is.null(stratum_order)) {
    stratum_order <- if (all(lab %in% c("high", "low"))) intersect(c("high", "low"), lab)
      else if (is.factor(strata)) intersect(levels(strata), lab) else sort(unique(lab))
  }
  if (!setequal(stratum_order, unique(lab))) {
    stop_arg("stratum_order", "must list each stratum exactly once")
  }
  members <- lapply(stratum_order, function(s) which(lab == s))
  list(members = members, sizes = lengths(members), label = lab,
       order = stratum_order)
}

# Every permutation of 1..n, one per row.
permutations <- function(n) {
  if (n == 1L) return(matrix(1L, 1L, 1L))
  p <- permutations(n - 1L)
  do.call(rbind, lapply(seq_len(n), function(i) cbind(i, p + (p >= i))))
}

# All allocations that permute authorities within their group's slots.
admissible_allocations <- function(members, slots, las) {
  per_group <- lapply(seq_along(members), function(k) {
    p <- permutations(length(members[[k]]))
    matrix(slots[[k]][p], nrow = nrow(p))
  })
  idx <- expand.grid(lapply(per_group, function(m) seq_len(nrow(m))))
  out <- matrix(0L, nrow(idx), length(las), dimnames = list(NULL, las))
  for (k in seq_along(members)) {
    out[, members[[k]]] <- per_group[[k]][idx[[k]], , drop = FALSE]
  }
  out
}

#' Permutation test for a stepped-wedge trial
#'
#' Permutes local authorities to roll-out sequences (never individuals),
#' respecting the randomisation: within readiness strata by default (the
#' Family Valued design admits 2! x 3! = 12 allocations), all allocations on
#' request. Every admissible allocation is enumerated when there are at most
#' `max_enumerate`; otherwise `n_perm` are sampled.
#'
#' Statistics (`vignette("methods")`, section 5):
#' * `"model"`: the treatment estimate of the fitted model, refitted under each
#'   allocation (Wang & De Gruttola 2017). Works for `glm` fits, lme4 fits and
#'   sfpceval's stepped-wedge GLMM.
#' * `"npwp"`: the within-period cluster-summary statistic of Thompson et al.
#'   (2018): in each period with both conditions, the difference between the
#'   mean of the treated and of the control cluster-period summaries, weighted
#'   by the inverse of its pooled-variance estimate. With `adjust = TRUE` the
#'   summaries are cluster-period means of residuals from the null model
#'   (period effects and covariates, no treatment) fitted once.
#'
#' The p-value is the share of allocations whose statistic is at least as
#' extreme as the observed one, counting the observed allocation. When the
#' number of allocations makes the smallest attainable p-value larger than
#' `alpha` (the stratified Family Valued design: 1/12), the result says so
#' plainly: such a test can never reject at `alpha`. A confidence interval by
#' test inversion is given for `"npwp"` where it is defined.
#'
#' @param fit A fitted model whose data hold the treatment, cluster and period
#'   columns: a `glm`, an lme4 fit, or an sfpceval stepped-wedge GLMM. For
#'   `statistic = "npwp"` a formula `y ~ covariates` (the null model's
#'   covariates; `y ~ 1` for none) is also accepted.
#' @param design Optional `sfp_design` (Family Valued) supplying the strata.
#' @param statistic `"model"` or `"npwp"`.
#' @param strata `TRUE` to permute within strata (as randomised), `FALSE` for
#'   all allocations.
#' @param data The individual-level data. Default: the data the fit was made on.
#' @param treatment,cluster,period Column names of the 0/1 treatment, the
#'   cluster (local authority) and the period (integer step).
#' @param stratum Column name in `data` or a vector named by cluster giving
#'   each cluster's stratum; taken from `design` when `NULL`.
#' @param max_enumerate Enumerate when there are at most this many allocations.
#' @param n_perm Number of sampled allocations otherwise.
#' @param seed Seed for sampling allocations.
#' @param alpha Level for the confidence interval and the attainability check.
#' @param adjust For `"npwp"`: residualise on the null model first.
#' @return An object of class `sw_perm_test` with `estimate`, `p_value`,
#'   `n_allocations`, `min_p`, `can_reject`, `statistics` (one per allocation),
#'   `conf_int` (or `NULL`) and a `note`.
#' @examples
#' set.seed(1)
#' d <- expand.grid(la = paste0("L", 1:5), step = 0:5, rep = 1:40)
#' go <- c(L1 = 1, L2 = 2, L3 = 3, L4 = 4, L5 = 5)
#' d$treated <- as.integer(d$step >= go[as.character(d$la)])
#' d$y <- rbinom(nrow(d), 1, plogis(-2 + 0.1 * d$step))
#' strata <- c(L1 = "high", L2 = "high", L3 = "low", L4 = "low", L5 = "low")
#' fit <- glm(y ~ treated + factor(step) + la, binomial, data = d)
#' perm_test(fit, stratum = strata, data = d)
#' perm_test(y ~ 1, statistic = "npwp", stratum = strata, data = d)
#' @export
perm_test <- function(fit, design = NULL, statistic = c("model", "npwp"),
                      strata = TRUE, data = NULL, treatment = "treated",
                      cluster = "la", period = "step", stratum = NULL,
                      max_enumerate = 10000L, n_perm = 2000L, seed = 1,
                      alpha = 0.05, adjust = TRUE) {
  statistic <- match.arg(statistic)
  data <- data %||% model_data(fit)
  if (!is.data.frame(data)) {
    stop_arg("data", "must be the data frame the model was fitted to",
             "pass `data = ` explicitly.")
  }
  for (col in c(treatment, cluster, period)) {
    if (!col %in% names(data)) {
      stop_arg("data", sprintf("has no column `%s`", col),
               "name the treatment, cluster and period columns with `treatment`, `cluster`, `period`.")
    }
  }
  trt <- data[[treatment]]
  if (!all(trt %in% c(0, 1))) {
    stop_rows("data", treatment, which(!trt %in% c(0, 1)), "are not 0/1",
              "code the treatment 1 = under the model, 0 = business as usual.")
  }
  cl <- as.character(data[[cluster]])
  per <- data[[period]]
  if (!is.numeric(per) || anyNA(per)) {
    stop_rows("data", period, which(is.na(per))[1:max(1, sum(is.na(per)))],
              "are missing or not numeric", "give the period as an integer step (0 = baseline).")
  }
  clusters <- sort(unique(cl))
  if (length(clusters) < 2L) {
    stop_arg("data", sprintf("has %d cluster; a permutation test needs at least 2", length(clusters)))
  }
  # Each cluster's first treated period (its sequence); Inf if never treated.
  go_live <- vapply(clusters, function(a) {
    p <- per[cl == a & trt == 1]
    if (length(p)) min(p) else Inf
  }, numeric(1))
  switched_back <- vapply(clusters, function(a) {
    any(trt[cl == a & per >= go_live[[a]]] == 0)
  }, logical(1))
  if (any(switched_back)) {
    stop(sprintf("Treatment in `data` is not a stepped wedge: cluster%s %s ha%s control rows after its first treated period.\nFix: check `%s` against the go-live dates.",
                 if (sum(switched_back) > 1) "s" else "",
                 paste(clusters[switched_back], collapse = ", "),
                 if (sum(switched_back) > 1) "ve" else "s", treatment), call. = FALSE)
  }
  strat <- if (isTRUE(strata)) resolve_strata(stratum, design, data, cl, clusters) else NULL
  allocs <- allocations_for(go_live, strat)
  n_alloc <- nrow(allocs)
  sampled <- n_alloc > max_enumerate
  if (sampled) allocs <- sample_allocations(go_live, strat, n_perm, seed)
  stat_fun <- switch(statistic,
    model = model_statistic(fit, data, treatment, cl, per, clusters),
    npwp = npwp_statistic(fit, data, treatment, cluster, period, cl, per,
                          clusters, adjust))
  stats <- apply(allocs, 1L, stat_fun$at)
  observed <- stat_fun$at(go_live)
  if (!is.finite(observed)) {
    stop("The observed permutation statistic is not finite.\nFix: check that each period with both conditions has at least 3 clusters and varying outcomes.", call. = FALSE)
  }
  extreme <- abs(stats) >= abs(observed) - 1e-12 * max(1, abs(observed))
  p <- if (sampled) (1 + sum(extreme)) / (length(stats) + 1) else mean(extreme)
  min_p <- if (sampled) 1 / (length(stats) + 1) else 1 / n_alloc
  can_reject <- min_p <= alpha
  ci <- NULL
  ci_note <- NULL
  if (statistic == "npwp") {
    if (can_reject) {
      ci <- stat_fun$invert(allocs, observed, alpha, sampled)
    } else {
      ci_note <- "no confidence interval: no shift of the effect can be rejected"
    }
  }
  note <- if (!can_reject) {
    sprintf("With %d admissible allocations the smallest attainable p-value is %s > alpha = %s: this test can never reject at that level.",
            n_alloc, format(min_p, digits = 3), format(alpha))
  } else NULL
  structure(list(statistic = statistic, estimate = observed, p_value = p,
                 n_allocations = n_alloc, sampled = sampled,
                 n_used = length(stats), min_p = min_p,
                 can_reject = can_reject, statistics = stats,
                 allocations = allocs, conf_int = ci, alpha = alpha,
                 strata = !is.null(strat), note = c(note, ci_note)),
            class = "sw_perm_test")
}

#' @export
print.sw_perm_test <- function(x, ...) {
  cat(sprintf("Stepped-wedge permutation test (%s statistic)\n",
              if (x$statistic == "model") "model-based, Wang & De Gruttola" else
                "within-period cluster summaries, Thompson et al."))
  cat(sprintf("  allocations: %d%s%s\n", x$n_allocations,
              if (x$strata) " (within strata)" else " (unstratified)",
              if (x$sampled) sprintf(", %d sampled", x$n_used) else ", all enumerated"))
  cat(sprintf("  estimate: %s   p-value: %s\n", format(x$estimate, digits = 4),
              format(x$p_value, digits = 3)))
  if (!is.null(x$conf_int)) {
    cat(sprintf("  %g%% CI by test inversion: [%s, %s]\n", 100 * (1 - x$alpha),
                format(x$conf_int[1], digits = 4), format(x$conf_int[2], digits = 4)))
  }
  for (n in x$note) cat("  Note: ", n, "\n", sep = "")
  invisible(x)
}

model_data <- function(fit) {
  if (inherits(fit, "formula")) return(NULL)
  if (!is.null(fit$data) && is.data.frame(fit$data)) return(fit$data)
  NULL
}

resolve_strata <- function(stratum, design, data, cl, clusters) {
  if (is.null(stratum) && !is.null(design)) stratum <- design$strata
  if (is.null(stratum)) {
    stop_arg("stratum", "is needed to permute within strata",
             "give each cluster's stratum (a column of `data` or a vector named by cluster), or use `strata = FALSE` for all allocations.")
  }
  if (is.character(stratum) && length(stratum) == 1L && stratum %in% names(data)) {
    s <- tapply(as.character(data[[stratum]]), cl, function(v) unique(v))
    if (any(lengths(s) != 1L)) {
      stop_arg("stratum", "must be constant within each cluster")
    }
    s <- unlist(s)
  } else {
    s <- stratum
    if (is.null(names(s)) || !all(clusters %in% names(s))) {
      stop_arg("stratum", sprintf("must be named by cluster and cover every cluster (%s)",
                                  paste(clusters, collapse = ", ")))
    }
  }
  as.character(s[clusters])
}

allocations_for <- function(go_live, strat) {
  clusters <- names(go_live)
  if (is.null(strat)) {
    groups <- list(seq_along(clusters))
  } else {
    groups <- lapply(unique(strat), function(s) which(strat == s))
  }
  per_group <- lapply(groups, function(g) {
    p <- permutations(length(g))
    matrix(go_live[g][p], nrow = nrow(p))
  })
  idx <- expand.grid(lapply(per_group, function(m) seq_len(nrow(m))))
  out <- matrix(0, nrow(idx), length(clusters), dimnames = list(NULL, clusters))
  for (k in seq_along(groups)) out[, groups[[k]]] <- per_group[[k]][idx[[k]], , drop = FALSE]
  # Clusters sharing a sequence give identical allocations: keep distinct ones.
  out[!duplicated(out), , drop = FALSE]
}

sample_allocations <- function(go_live, strat, n_perm, seed) {
  groups <- if (is.null(strat)) list(seq_along(go_live)) else
    lapply(unique(strat), function(s) which(strat == s))
  out <- with_seed(seed, t(replicate(n_perm, {
    v <- go_live
    for (g in groups) v[g] <- go_live[g][sample.int(length(g))]
    v
  })))
  colnames(out) <- names(go_live)
  out
}

# The model statistic: refit with the treatment implied by an allocation.
model_statistic <- function(fit, data, treatment, cl, per, clusters) {
  if (inherits(fit, "formula")) {
    stop_arg("fit", "must be a fitted model for `statistic = \"model\"`")
  }
  idx <- match(cl, clusters)
  if (inherits(fit, "sw_glmm")) {
    # refit on the fit's binomial cells: no data frame, warm start
    if (fit$nobs != nrow(data) && (fit$n_data %||% -1L) != nrow(data)) {
      stop_arg("data", sprintf("has %d rows but the fit used %d", nrow(data), fit$nobs),
               "pass the data the model was fitted to.")
    }
    return(list(at = function(go) {
      tr <- as.integer(per >= go[idx])
      unname(stats::coef(sw_glmm_refit(fit, tr, se = FALSE))[[treatment]])
    }))
  }
  list(at = function(go) {
    d <- data
    d[[treatment]] <- as.integer(per >= go[idx])
    treatment_estimate(refit_with(fit, d), treatment)
  })
}

refit_with <- function(fit, data) stats::update(fit, data = data, evaluate = TRUE)

treatment_estimate <- function(fit, treatment) {
  b <- if (inherits(fit, "merMod")) getExportedValue("lme4", "fixef")(fit) else stats::coef(fit)
  if (!treatment %in% names(b)) {
    stop_arg("fit", sprintf("has no coefficient `%s`", treatment))
  }
  unname(b[[treatment]])
}

# Thompson et al.'s within-period statistic on cluster-period summaries.
# Returns closures: at(go) gives the statistic under the allocation `go`
# (each cluster's first treated period); invert() the CI by test inversion.
npwp_statistic <- function(fit, data, treatment, cluster, period, cl, per,
                           clusters, adjust) {
  f <- if (inherits(fit, "formula")) fit else stats::formula(fit)
  y <- eval(f[[2L]], data, environment(f))
  if (is.logical(y)) y <- as.numeric(y)
  if (!is.numeric(y) || anyNA(y)) {
    stop_arg("data", "has a missing or non-numeric outcome",
             "drop rows with a missing outcome first (and count them).")
  }
  if (adjust) {
    # Null model: period effects and individual covariates, no treatment and
    # no cluster terms (those would absorb part of the effect).
    labs <- attr(stats::terms(f), "term.labels")
    vars <- lapply(labs, function(l) all.vars(str2lang(l)))
    drop <- vapply(vars, function(v) any(v %in% c(treatment, cluster)), TRUE)
    covars <- labs[!drop]
    covars <- covars[!vapply(covars, function(l) grepl("factor\\(", l) &&
                               any(all.vars(str2lang(l)) %in% period), TRUE)]
    d0 <- data
    d0$.period <- factor(per)
    nf <- stats::reformulate(c(".period", covars), response = f[[2L]])
    fam <- if (all(y %in% c(0, 1))) stats::binomial() else stats::gaussian()
    y <- y - stats::fitted(stats::glm(nf, family = fam, data = d0))
  }
  key <- (match(cl, clusters) - 1) * (max(per) + 1) + (per - min(per))
  ukey <- sort(unique(key))
  kidx <- match(key, ukey)
  summ <- as.numeric(tapply(y, kidx, mean))
  first <- match(seq_along(ukey), kidx)
  s_cl <- match(cl, clusters)[first]
  s_per <- per[first]
  s_trt <- as.numeric(tapply(data[[treatment]], kidx, max)) == 1
  go_obs <- vapply(seq_along(clusters), function(a) {
    p <- s_per[s_cl == a & s_trt]
    if (length(p)) min(p) else Inf
  }, numeric(1))
  treated_obs <- s_per >= go_obs[s_cl]
  periods <- sort(unique(s_per))
  npwp <- function(go, shift = 0) {
    tr <- s_per >= go[s_cl]
    v <- summ - shift * treated_obs
    num <- 0
    den <- 0
    for (j in periods) {
      inj <- s_per == j
      a <- v[inj & tr]
      b <- v[inj & !tr]
      nI <- length(a)
      nC <- length(b)
      if (nI == 0L || nC == 0L || nI + nC < 3L) next
      ss <- sum((a - mean(a))^2) + sum((b - mean(b))^2)
      s2 <- ss / (nI + nC - 2)
      if (s2 <= 0) next
      w <- 1 / (s2 * (1 / nI + 1 / nC))
      num <- num + w * (mean(a) - mean(b))
      den <- den + w
    }
    if (den == 0) NA_real_ else num / den
  }
  pval <- function(theta, allocs, sampled) {
    t_obs <- npwp(go_obs, theta)
    st <- apply(allocs, 1L, function(g) npwp(g, theta))
    ext <- abs(st) >= abs(t_obs) - 1e-12 * max(1, abs(t_obs))
    if (sampled) (1 + sum(ext)) / (length(st) + 1) else mean(ext)
  }
  invert <- function(allocs, observed, alpha, sampled) {
    spread <- max(1e-8, 4 * stats::sd(summ))
    bound <- function(dir) {
      inside <- observed
      step <- spread
      outside <- observed + dir * step
      k <- 0
      while (pval(outside, allocs, sampled) > alpha) {
        inside <- outside
        step <- 2 * step
        outside <- observed + dir * step
        k <- k + 1
        if (k > 50) return(dir * Inf)
      }
      for (i in 1:50) {
        mid <- (inside + outside) / 2
        if (pval(mid, allocs, sampled) > alpha) inside <- mid else outside <- mid
      }
      (inside + outside) / 2
    }
    c(bound(-1), bound(1))
  }
  list(at = function(go) npwp(go), invert = invert)
}
