# Benchmark: cem() against MatchIt's CEM on 100,000 simulated children with
# the Family Safeguarding protocol's coarsening, matched exactly within
# treated-comparator LA pair x financial year. Run after
#   R CMD INSTALL --library=/tmp/lib-cem .
# with R_LIBS=/tmp/lib-cem:  Rscript bench/cem.R
library(sfpceval)
stopifnot(requireNamespace("MatchIt", quietly = TRUE))

set.seed(20261122)
n <- 100000
pairs <- sprintf("FS%d-C%02d", rep(1:5, each = 2), c(3, 7, 1, 12, 5, 9, 14, 2, 11, 6))
children <- data.frame(
  pair = factor(sample(pairs, n, replace = TRUE)),
  fin_year = factor(sample(c("2017/18", "2018/19", "2019/20", "2020/21",
                             "2021/22", "2022/23", "2023/24"), n,
                           replace = TRUE)),
  in_treated_la = rbinom(n, 1, 0.45),
  gender = factor(sample(c("not recorded/unborn", "male", "female",
                           "indeterminate", "missing"), n, replace = TRUE,
                         prob = c(0.03, 0.48, 0.46, 0.005, 0.025))),
  age = sample(0:12, n, replace = TRUE),
  ethnic_group = ethnic_group(sample(c("WBRI", "WOTH", "MWBC", "AIND", "APKN",
                                       "BAFR", "BCRB", "CHNE", "OOTH", "NOBT"),
                                     n, replace = TRUE,
                                     prob = c(.6, .08, .06, .04, .04, .05,
                                              .03, .02, .03, .05))),
  disabled = rbinom(n, 1, 0.08),
  fsm = rbinom(n, 1, 0.4),
  uasc = rbinom(n, 1, 0.01),
  n_previous_cpp = rpois(n, 0.25),
  stringsAsFactors = FALSE
)

fs <- fs_coarsening()
# Timing: each sample times `inner` consecutive runs and divides (CPU clocks
# tick too coarsely for one 15 ms run); `reps` samples each; we report the
# minimum (the least disturbed sample: the machine may be shared) and the
# median, of elapsed and of CPU (user + system) time per run.
reps <- 7L
timed <- function(f, inner) {
  t <- vapply(seq_len(reps), function(r) {
    st <- system.time(for (i in seq_len(inner)) f()) / inner
    c(elapsed = st[["elapsed"]], cpu = st[["user.self"]] + st[["sys.self"]])
  }, numeric(2))
  c(min_elapsed = min(t["elapsed", ]), min_cpu = min(t["cpu", ]),
    med_elapsed = stats::median(t["elapsed", ]),
    med_cpu = stats::median(t["cpu", ]))
}
run_sfp <- function() {
  cem(fs$formula, children, cutpoints = fs$cutpoints,
      grouping = fs$grouping, exact = fs$exact)
}
# Like for like with MatchIt, which matches but computes no L1 imbalance.
run_sfp_match <- function() {
  cem(fs$formula, children, cutpoints = fs$cutpoints,
      grouping = fs$grouping, exact = fs$exact, l1 = FALSE)
}

# MatchIt, on the same data frame: the exact variables as (factor)
# covariates, cutpoints giving the same bins (MatchIt's bins are left-closed,
# [c, next), open at both ends, and a single number means a number of bins,
# so every vector has two cutpoints).
run_mi <- function() {
  MatchIt::matchit(
    in_treated_la ~ gender + age + ethnic_group + disabled + fsm + uasc +
      n_previous_cpp + pair + fin_year,
    data = children, method = "cem", estimand = "ATT", k2k = FALSE,
    cutpoints = list(age = c(0, 3.5), disabled = c(0.5, 1.5),
                     fsm = c(0.5, 1.5), uasc = c(0.5, 1.5),
                     n_previous_cpp = c(0.5, 1000)))
}

m <- run_sfp()
mi <- run_mi()
t_sfp <- timed(run_sfp, inner = 20L)
t_match <- timed(run_sfp_match, inner = 20L)
stopifnot(identical(run_sfp_match()$weights, m$weights))
t_mi <- timed(run_mi, inner = 2L)

cat(sprintf("children: %s; strata: %s (%s matched); treated matched: %.1f%%\n",
            format(n, big.mark = ","), format(nrow(m$strata), big.mark = ","),
            format(sum(m$strata$matched), big.mark = ","),
            100 * m$n["Matched", "Treated"] / m$n["All", "Treated"]))
cat(sprintf("L1: %.4f before, %.4f after\n", m$imbalance$before$L1,
            m$imbalance$after$L1))
cat(sprintf("max |weight difference| sfpceval vs MatchIt: %.2e\n",
            max(abs(m$weights - unname(mi$weights)))))
cat(sprintf("seconds per run (%d samples) min elapsed  min cpu  median elapsed  median cpu\n",
            reps))
row <- function(label, t) {
  cat(sprintf("%-28s %11.4f %8.4f %15.4f %11.4f\n", label, t[["min_elapsed"]],
              t[["min_cpu"]], t[["med_elapsed"]], t[["med_cpu"]]))
}
row("sfpceval::cem() (with L1)", t_sfp)
row("sfpceval::cem(l1 = FALSE)", t_match)
row("MatchIt::matchit(cem)", t_mi)
ratio <- function(label, t) {
  r <- t_mi / t
  cat(sprintf("ratio MatchIt / %s: %.1f (min elapsed), %.1f (min cpu), %.1f (median elapsed), %.1f (median cpu)\n",
              label, r[["min_elapsed"]], r[["min_cpu"]], r[["med_elapsed"]], r[["med_cpu"]]))
}
ratio("cem(l1 = FALSE), matching only as MatchIt", t_match)
ratio("cem() with L1 before and after", t_sfp)
