# Stepped-wedge randomisation and permutation tests (Family Valued protocol,
# "Randomisation" p. 8-9 and "Non-parametric permutation test"; Wang & De
# Gruttola 2017, Thompson et al. 2018).

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
#' @param max_enumerate List the admissible allocations only when there are
#'   at most this many. They are counted first (the product over strata of
#'   the number of distinct orderings), so a large design costs nothing.
#'   At most 1,000,000.
#' @return An object of class `sw_allocation`: `allocation` (data frame with
#'   `la`, `stratum`, `step`), `admissible` (integer matrix, one row per
#'   admissible allocation, one column per authority, giving its step; `NULL`
#'   when there are more than `max_enumerate`), `n_admissible` (their
#'   number), `seed`, `strata`.
#' @examples
#' a <- sw_randomise(c("L1", "L2", "L3", "L4", "L5"),
#'                   strata = c("high", "low", "high", "low", "low"), seed = 42)
#' a
#' nrow(a$admissible)   # 2! x 3! = 12
#' @export
sw_randomise <- function(las, strata = NULL, steps = seq_along(las), seed,
                         stratum_order = NULL, max_enumerate = 10000L) {
  if (missing(seed) || !is.numeric(seed) || length(seed) != 1L || is.na(seed)) {
    stop_arg("seed", "must be one number", "record the seed you randomise with, e.g. `seed = 20200101`.")
  }
  las <- as.character(las)
  if (!length(las) || anyNA(las) || anyDuplicated(las)) {
    stop_arg("las", "must be unique, non-missing local authority codes",
             "give each local authority once.")
  }
  if (length(steps) != length(las) || anyNA(steps)) {
    stop_arg("steps", sprintf("must give one step per authority (%d)", length(las)))
  }
  check_count_arg(max_enumerate, "max_enumerate", fix = .fix_max_enumerate)
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
  # every admissible allocation: each group's slots permuted among its members
  slot_of <- integer(length(las))
  for (k in seq_along(groups$members)) slot_of[groups$members[[k]]] <- slots[[k]]
  names(slot_of) <- las
  n_adm <- count_allocations(slot_of, groups$members)
  adm <- if (n_adm <= max_enumerate) enumerate_allocations(slot_of, groups$members) else NULL
  if (!is.null(adm)) storage.mode(adm) <- "integer"
  structure(list(allocation = allocation[order(allocation$step), ],
                 admissible = adm, n_admissible = n_adm,
                 seed = seed, strata = groups$order),
            class = "sw_allocation")
}

#' @export
print.sw_allocation <- function(x, ...) {
  cat("Stepped-wedge allocation (seed ", x$seed, ")\n", sep = "")
  print(x$allocation, row.names = FALSE)
  n <- x$n_admissible
  cat(sprintf("%s admissible allocations%s%s; smallest attainable two-sided permutation p-value %s\n",
              format(n, big.mark = ",", scientific = FALSE),
              if (length(x$strata) > 1) " within strata" else "",
              if (is.null(x$admissible)) " (not listed: more than `max_enumerate`)" else "",
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

# ---- allocations: count first, enumerate only what is small ------------------
#
# An allocation gives each cluster a value (a step, or a go-live date) by
# permuting the observed values within groups (strata). Clusters sharing a
# value give identical allocations, so the distinct allocations of a group of
# n clusters with value multiplicities k_1, k_2, ... number
# n! / (k_1! k_2! ...), and the total is the product over groups. It is
# computed (in doubles, exact up to 2^53) before anything is listed: listing
# is done only when the count is at most `max_enumerate`; otherwise
# allocations are sampled, uniformly over the distinct ones (a uniform
# permutation within each group is uniform over its distinct arrangements).

count_allocations <- function(values, groups) {
  prod(vapply(groups, function(g) {
    k <- tabulate(match(values[g], unique(values[g])))
    round(exp(lfactorial(length(g)) - sum(lfactorial(k))))
  }, 0))
}

# Every distinct allocation (a matrix, one row per allocation, one column per
# cluster, named by `names(values)`). Callers check the count first.
enumerate_allocations <- function(values, groups) {
  # multiset_permutations() (R/stagger.R) lists distinct arrangements of a
  # character vector; the values are coded as the index of their first match
  per_group <- lapply(groups, function(g) {
    v <- values[g]
    code <- multiset_permutations(as.character(match(v, v)))
    matrix(v[as.integer(code)], nrow = nrow(code))
  })
  idx <- expand.grid(lapply(per_group, function(m) seq_len(nrow(m))))
  out <- matrix(values[1L], nrow(idx), length(values), dimnames = list(NULL, names(values)))
  for (k in seq_along(groups)) out[, groups[[k]]] <- per_group[[k]][idx[[k]], , drop = FALSE]
  out
}

# n allocations drawn uniformly (with replacement), seeded; the user's random
# state is restored.
sample_allocations <- function(values, groups, n, seed) {
  out <- with_seed(seed, t(vapply(seq_len(n), function(i) {
    v <- values
    for (g in groups) v[g] <- values[g][sample.int(length(g))]
    v
  }, values)))
  if (length(values) == 1L) out <- t(out)
  colnames(out) <- names(values)
  out
}

# The allocations a test or simulation uses: list(allocations, count,
# sampled). `groups`: list of cluster indices per stratum.
allocation_set <- function(values, groups, max_enumerate, n_perm, seed) {
  count <- count_allocations(values, groups)
  if (count <= max_enumerate) {
    list(allocations = enumerate_allocations(values, groups), count = count, sampled = FALSE)
  } else {
    list(allocations = sample_allocations(values, groups, n_perm, seed), count = count,
         sampled = TRUE)
  }
}

strata_groups <- function(strat, n) {
  if (is.null(strat)) list(seq_len(n)) else lapply(unique(strat), function(s) which(strat == s))
}

#' Permutation test for a stepped-wedge trial
#'
#' Permutes local authorities to roll-out sequences (never individuals),
#' respecting the randomisation: within readiness strata by default (the
#' Family Valued design admits 2! x 3! = 12 allocations), all allocations on
#' request. The allocations are counted first (n! / (k_1! k_2! ...) per
#' stratum, clusters sharing a go-live giving the same allocation); every
#' distinct one is enumerated when there are at most `max_enumerate`,
#' otherwise `n_perm` are sampled uniformly with `seed`.
#'
#' **What is permuted.** With go-live dates (from `design` or `go_live`) the
#' test permutes the allocation of the go-live *dates* to authorities within
#' strata, the randomisation that actually happened, and rebuilds each
#' child's treatment from its own `date`: treated when the date is on or
#' after its authority's go-live under that allocation. This is the
#' protocol's treatment, so it holds when a go-live falls inside a six-month
#' step (the COVID-shifted dates), for the alternative implementation date
#' (`go_live = "alt_go_live_date"`) and for the embedding-period analysis
#' (the rows analysed are those of the data given, that is, with the
#' observed embedding exclusions). The treatment in `data` must equal the one
#' rebuilt from the observed dates; rows where it does not are named.
#' Without dates (no `design`, no `go_live`) an authority's go-live is its
#' first treated period and a row is treated from that period on, which
#' needs every go-live on a period boundary.
#'
#' If no allocation other than the observed one is admissible (every
#' stratum holds one authority, or its authorities share one go-live) the
#' test stops: it could not reject anything.
#'
#' Statistics:
#' * `"model"`: the treatment estimate of the fitted model, refitted under each
#'   allocation (Wang & De Gruttola 2017). Works for `glm` fits, lme4 fits and
#'   sfpceval's stepped-wedge GLMM.
#' * `"npwp"`: the within-period cluster-summary statistic of Thompson et al.
#'   (2018): in each period with both conditions, the difference between the
#'   mean of the treated and of the control cluster-period summaries, weighted
#'   by the inverse of its pooled-variance estimate. With `adjust = TRUE` the
#'   summaries are cluster-period means of residuals from the null model
#'   (period effects and covariates, no treatment) fitted once. A go-live
#'   inside a period gives that cluster a treated and a control summary (the
#'   means of its rows in each arm) in that period.
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
#' @param go_live Each cluster's go-live date: a vector of dates named by
#'   cluster, or the name of a date column of `design$las`
#'   (`"alt_go_live_date"` for the alternative implementation date). Default:
#'   the design's Operationally Live dates when `design` is given, else none
#'   (the period rule).
#' @param date Column of `data` with each child's own date (default
#'   `"referral_date"`), from which the treatment is rebuilt under each
#'   allocation of go-live dates. Used only with go-live dates.
#' @param max_enumerate Enumerate when there are at most this many
#'   allocations. They are counted first, in closed form, so a large design
#'   is never listed. At most 1,000,000.
#' @param n_perm Number of sampled allocations otherwise (at most 1,000,000).
#' @param seed Seed for sampling allocations.
#' @param alpha Level for the confidence interval and the attainability check.
#' @param adjust For `"npwp"`: residualise on the null model first.
#' @param conf_int For `"npwp"`: compute the confidence interval by test
#'   inversion (default `TRUE`; `FALSE` saves time in simulations).
#' @return An object of class `sw_perm_test` with `estimate`, `p_value`,
#'   `n_allocations` (the count of distinct admissible allocations),
#'   `sampled`, `n_used`, `min_p`, `can_reject`, `statistics` (one per
#'   allocation used), `allocations` (one row per allocation used: each
#'   cluster's go-live period, or its go-live date as a number of days since
#'   1970 with the dates in attribute `go_live_dates`), `permuted`
#'   (`"go-live dates"` or `"go-live periods"`), `conf_int` (or `NULL`) and a
#'   `note`.
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
                      go_live = NULL, date = "referral_date",
                      max_enumerate = 10000L, n_perm = 2000L, seed = 1,
                      alpha = 0.05, adjust = TRUE, conf_int = TRUE) {
  statistic <- match.arg(statistic)
  check_count_arg(max_enumerate, "max_enumerate", fix = .fix_max_enumerate)
  check_count_arg(n_perm, "n_perm")
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
  idx <- match(cl, clusters)
  gl <- resolve_go_live(go_live, design, clusters)
  rule <- if (is.null(gl)) {
    period_rule(trt, per, idx, clusters, treatment)
  } else {
    date_rule(gl, data, date, trt, idx, clusters, treatment)
  }
  strat <- if (isTRUE(strata)) resolve_strata(stratum, design, data, cl, clusters) else NULL
  groups <- strata_groups(strat, length(clusters))
  aset <- allocation_set(rule$values, groups, max_enumerate, n_perm, seed)
  n_alloc <- aset$count
  if (n_alloc < 2) {
    stop(sprintf(paste0("No allocation other than the observed one is admissible: %s.\n",
                        "Fix: permute across strata (`strata = FALSE`) or check the go-live %s of each cluster."),
                 if (is.null(strat)) "every cluster has the same go-live" else
                   "each stratum holds one cluster, or its clusters share one go-live",
                 if (is.null(gl)) "periods" else "dates"), call. = FALSE)
  }
  allocs <- aset$allocations
  sampled <- aset$sampled
  # rows whose treatment agrees under every allocation: same cluster and same
  # position among the candidate go-lives
  split <- findInterval(rule$when, sort(unique(rule$values)))
  stat_fun <- switch(statistic,
    model = model_statistic(fit, data, treatment, idx, rule$when, split),
    npwp = npwp_statistic(fit, data, treatment, cluster, period, idx, per, rule$when,
                          split, rule$values, adjust))
  stats <- apply(allocs, 1L, stat_fun$at)
  observed <- stat_fun$at(rule$values)
  if (!is.finite(observed)) {
    stop("The observed permutation statistic is not finite.\nFix: check that each period with both conditions has at least 3 clusters and varying outcomes.", call. = FALSE)
  }
  extreme <- abs(stats) >= abs(observed) - 1e-12 * max(1, abs(observed))
  p <- if (sampled) (1 + sum(extreme)) / (length(stats) + 1) else mean(extreme)
  min_p <- if (sampled) 1 / (length(stats) + 1) else 1 / n_alloc
  can_reject <- min_p <= alpha
  ci <- NULL
  ci_note <- NULL
  if (statistic == "npwp" && isTRUE(conf_int)) {
    if (can_reject) {
      ci <- stat_fun$invert(allocs, observed, alpha, sampled)
    } else {
      ci_note <- "no confidence interval: no shift of the effect can be rejected"
    }
  }
  note <- if (!can_reject) {
    sprintf("With %s admissible allocations the smallest attainable p-value is %s > alpha = %s: this test can never reject at that level.",
            format(n_alloc, big.mark = ",", scientific = FALSE), format(min_p, digits = 3), format(alpha))
  } else NULL
  structure(list(statistic = statistic, estimate = observed, p_value = p,
                 n_allocations = n_alloc, sampled = sampled,
                 n_used = length(stats), min_p = min_p,
                 can_reject = can_reject, statistics = stats,
                 allocations = if (is.null(gl)) allocs else
                   structure(allocs, go_live_dates = rule$dates),
                 permuted = if (is.null(gl)) "go-live periods" else "go-live dates",
                 conf_int = ci, alpha = alpha,
                 strata = !is.null(strat), note = c(note, ci_note)),
            class = "sw_perm_test")
}

# Each cluster's go-live date, or NULL for the period rule: from `go_live`
# (a vector named by cluster, or a column of `design$las`) or the design's
# Operationally Live dates.
resolve_go_live <- function(go_live, design, clusters) {
  if (is.null(go_live)) {
    if (is.null(design) || is.null(design$las$go_live_date)) return(NULL)
    go_live <- "go_live_date"
  }
  if (is.character(go_live) && length(go_live) == 1L && is.null(names(go_live))) {
    las <- design$las
    if (is.null(las) || !go_live %in% names(las)) {
      stop_arg("go_live", sprintf("is \"%s\", which is not a column of `design$las`", go_live),
               "give a design from design_family_valued() holding that date, or a vector of dates named by cluster.")
    }
    go_live <- stats::setNames(las[[go_live]], as.character(las$la_code))
  }
  if (!(inherits(go_live, "Date") || is.numeric(go_live)) || is.null(names(go_live))) {
    stop_arg("go_live", "must be a vector of go-live dates named by cluster, or the name of a date column of `design$las`")
  }
  miss <- setdiff(clusters, names(go_live))
  if (length(miss)) {
    stop_arg("go_live", sprintf("has no date for cluster%s %s", if (length(miss) > 1) "s" else "",
                                paste(utils::head(miss, 5), collapse = ", ")),
             "give a go-live date for every cluster in `data`.")
  }
  g <- go_live[clusters]
  if (anyNA(g)) {
    stop_arg("go_live", sprintf("is missing for cluster%s %s", if (sum(is.na(g)) > 1) "s" else "",
                                paste(clusters[is.na(g)], collapse = ", ")),
             "every cluster of a stepped wedge goes live; give its date.")
  }
  g
}

# The period rule: a cluster's go-live is its first treated period, and a row
# is treated from that period on. `values`: per cluster; `when`: per row.
period_rule <- function(trt, per, idx, clusters, treatment) {
  first <- rep(Inf, length(clusters))
  tp <- tapply(per[trt == 1], idx[trt == 1], min)
  first[as.integer(names(tp))] <- tp
  back <- which(trt == 0 & per >= first[idx])
  if (length(back)) {
    who <- unique(clusters[idx[back]])
    stop(sprintf(paste0("Treatment in `data` is not a function of the period: cluster%s %s ha%s control rows in or after its first treated period ",
                        "(%s; a go-live inside a period, or a switch back).\n",
                        "Fix: give each child's date (`date`, e.g. \"referral_date\") and the go-live dates (`design` or `go_live`), ",
                        "so that the dates are permuted; or check `%s`."),
                 if (length(who) > 1) "s" else "", paste(who, collapse = ", "),
                 if (length(who) > 1) "ve" else "s", describe_rows(back), treatment), call. = FALSE)
  }
  list(values = stats::setNames(first, clusters), when = as.numeric(per), dates = NULL)
}

# The date rule (the protocol's treatment): a child is treated if its own
# date is on or after its LA's go-live date; the go-live dates are permuted.
date_rule <- function(gl, data, date, trt, idx, clusters, treatment) {
  if (!is.character(date) || length(date) != 1L || !date %in% names(data)) {
    stop_arg("date", sprintf("is `%s`, which is not a column of `data`", paste(date, collapse = ", ")),
             "name the column with each child's date (e.g. \"referral_date\") from which the treatment was built.")
  }
  dt <- data[[date]]
  if (!(inherits(dt, "Date") || is.numeric(dt)) || inherits(dt, "Date") != inherits(gl, "Date")) {
    stop_arg("date", sprintf("names column `%s`, which is %s; it must be a Date like the go-live dates", date,
                             class(dt)[1]), "convert it with as.Date().")
  }
  bad <- which(is.na(dt))
  if (length(bad)) stop_rows("data", date, bad, "are missing", "fill in the date or drop the rows (and count them).")
  when <- as.numeric(dt)
  values <- stats::setNames(as.numeric(gl), clusters)
  rebuilt <- as.integer(when >= values[idx])
  bad <- which(rebuilt != trt)
  if (length(bad)) {
    stop_rows("data", treatment, bad,
              sprintf("differ from the treatment rebuilt from `%s` and the go-live dates (treated = on or after the LA's go-live)", date),
              "give the go-live dates the treatment was built from (e.g. `go_live = \"alt_go_live_date\"` for the alternative implementation date).")
  }
  list(values = values, when = when, dates = gl)
}

#' @export
print.sw_perm_test <- function(x, ...) {
  cat(sprintf("Stepped-wedge permutation test (%s statistic)\n",
              if (x$statistic == "model") "model-based, Wang & De Gruttola" else
                "within-period cluster summaries, Thompson et al."))
  cat(sprintf("  allocations of %s: %s%s%s\n", x$permuted %||% "go-live periods",
              format(x$n_allocations, big.mark = ",", scientific = FALSE),
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

# The model statistic: refit with the treatment implied by an allocation
# (`go`, one go-live per cluster; a row is treated when its `when` is on or
# after its cluster's go-live).
model_statistic <- function(fit, data, treatment, idx, when, split) {
  if (inherits(fit, "formula")) {
    stop_arg("fit", "must be a fitted model for `statistic = \"model\"`")
  }
  if (inherits(fit, "sw_glmm") && !is.null(fit$cells)) {
    # refit on the fit's binomial cells, split so that every allocation's
    # treatment is constant within a cell: no data frame, warm start
    if (fit$nobs != nrow(data) && (fit$n_data %||% -1L) != nrow(data)) {
      stop_arg("data", sprintf("has %d rows but the fit used %d", nrow(data), fit$nobs),
               "pass the data the model was fitted to.")
    }
    rows <- if (length(when) == fit$n_data) fit$kept_rows else seq_along(when)
    fit_s <- glmm_split_cells(fit, split[rows] + (idx[rows] - 1) * (max(split) + 1))
    w <- when[rows]
    ix <- idx[rows]
    return(list(at = function(go) {
      tr <- as.integer(w >= go[ix])
      unname(stats::coef(sw_glmm_refit(fit_s, tr, se = FALSE))[[treatment]])
    }))
  }
  # a binomial sw_glmm() fit (the nested one) starts each refit from the
  # observed fit's estimates: the same estimates to the optimiser's tolerance
  start <- glmm_start(fit)
  list(at = function(go) {
    d <- data
    d[[treatment]] <- as.integer(when >= go[idx])
    treatment_estimate(refit_with(fit, d, start), treatment)
  })
}

# (an sw_glmm() fit without cells -- gaussian, or binomial with nested
# random intercepts -- is refitted from its formula with its control, quietly:
# a boundary variance under some allocation is not news; `start`:
# glmm_start() of a binomial fit, from which the refit's iterations start)
refit_with <- function(fit, data, start = NULL) {
  if (inherits(fit, "sw_glmm")) {
    return(suppressMessages(sw_glmm_fit(fit$call, fit$formula, data, family = fit$family,
                                        REML = isTRUE(fit$REML),
                                        treatment = fit$trt_info$name %||% "treated",
                                        control = fit$ctrl %||% list(),
                                        weights = fit$prior_weights, start = start)))
  }
  stats::update(fit, data = data, evaluate = TRUE)
}

treatment_estimate <- function(fit, treatment) {
  b <- if (inherits(fit, "merMod")) getExportedValue("lme4", "fixef")(fit) else stats::coef(fit)
  if (!treatment %in% names(b)) {
    stop_arg("fit", sprintf("has no coefficient `%s`", treatment))
  }
  unname(b[[treatment]])
}

# Thompson et al.'s within-period statistic on cluster-period summaries.
# Returns closures: at(go) gives the statistic under the allocation `go`
# (each cluster's go-live); invert() the CI by test inversion. The rows are
# held as units (cluster x period x position among the candidate go-lives)
# whose treatment is the same under every allocation; a cluster-period
# summary is the mean over its rows of one arm, so a go-live inside a period
# gives that cluster a treated and a control summary in that period.
npwp_statistic <- function(fit, data, treatment, cluster, period, idx, per, when,
                           split, values, adjust) {
  f <- if (inherits(fit, "formula")) fit else stats::formula(fit)
  if (inherits(fit, "sw_glmm")) f <- parse_glmm_formula(f)$fixed
  y <- eval(f[[2L]], data, environment(f))
  if (is.logical(y)) y <- as.numeric(y)
  if (!is.numeric(y) || anyNA(y) || !is.null(dim(y))) {
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
  pl <- sort(unique(per))
  pidx <- match(per, pl)
  S <- max(split) + 1
  ukey <- ((idx - 1) * length(pl) + (pidx - 1)) * S + split
  uk <- unique(ukey)
  u <- match(ukey, uk)
  first <- match(seq_along(uk), u)
  u_sum <- as.vector(rowsum(y, u, reorder = TRUE))
  u_n <- tabulate(u, length(uk))
  u_cl <- idx[first]
  u_per <- pidx[first]
  u_when <- when[first]
  tr_obs <- u_when >= values[u_cl]
  np <- length(pl)
  npwp <- function(go, shift = 0) {
    tr <- u_when >= go[u_cl]
    g <- ((u_cl - 1) * np + (u_per - 1)) * 2 + tr
    gs <- rowsum(cbind(u_sum - shift * u_n * tr_obs, u_n), g, reorder = TRUE)
    gk <- as.numeric(rownames(gs))
    m <- gs[, 1] / gs[, 2]
    g_per <- (gk %/% 2) %% np
    g_tr <- gk %% 2 == 1
    num <- 0
    den <- 0
    for (j in unique(g_per)) {
      a <- m[g_per == j & g_tr]
      b <- m[g_per == j & !g_tr]
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
    t_obs <- npwp(values, theta)
    st <- apply(allocs, 1L, function(g) npwp(g, theta))
    ext <- abs(st) >= abs(t_obs) - 1e-12 * max(1, abs(t_obs))
    if (sampled) (1 + sum(ext)) / (length(st) + 1) else mean(ext)
  }
  invert <- function(allocs, observed, alpha, sampled) {
    spread <- max(1e-8, 4 * stats::sd(u_sum / u_n))
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
