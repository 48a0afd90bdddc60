# A cohort whose LA x quarter outcome means follow given trajectories: each
# LA has `n` children per quarter from 2016Q1, a share traj[la, q] with y = 1.
trend_cohort <- function(traj, n = 50) {
  qs <- seq_len(ncol(traj))
  rows <- expand.grid(la = rownames(traj), q = qs, i = seq_len(n), stringsAsFactors = FALSE)
  start <- as.Date("2016-01-01")
  rows$referral_date <- as.Date(sapply(rows$q, function(q) format(seq(start, by = "3 months", length.out = q)[q])))
  k <- round(traj[cbind(match(rows$la, rownames(traj)), rows$q)] * n)
  rows$cla_18m <- as.integer(rows$i <= k)
  rows[, c("la", "referral_date", "cla_18m")]
}

test_that("an exact copy of the treated trend (at another level) ranks first, at distance 0", {
  set.seed(1)
  nq <- 24
  base <- cumsum(rnorm(nq, 0, 0.02)) + 0.3
  traj <- rbind(T1 = base,
                P1 = base + 0.1,                                   # parallel
                N1 = 0.3 + cumsum(rnorm(nq, 0, 0.02)),
                N2 = 0.3 + cumsum(rnorm(nq, 0, 0.02)),
                N3 = 0.35 + 0.005 * seq_len(nq))
  traj <- pmin(pmax(traj, 0.02), 0.98)
  d <- trend_cohort(traj)
  go <- data.frame(la_code = "T1", go_live_date = as.Date("2021-04-01"))
  m <- match_trends(d, go, "cla_18m", n_candidates = 4)
  expect_equal(m$candidates$comparator_la[1], "P1")
  expect_equal(m$candidates$rank, 1:4)
  expect_true(m$candidates$selected[1] && !any(m$candidates$selected[-1]))
  # plain-R reference of the distance: z-scores per quarter across LAs, changes
  # over the 8 quarters ending before go-live - 18 months.
  cells <- aggregate(cla_18m ~ la + q, transform(d, q = as.integer(format(referral_date, "%Y")) * 4 +
                                                   (as.integer(format(referral_date, "%m")) - 1) %/% 3),
                     mean)
  cells <- cells[cells$q < 2019 * 4 + 3, ]         # before 2019-10-01 = go-live - 18 months
  z <- do.call(rbind, lapply(split(cells, cells$q), function(s) transform(s, z = (cla_18m - mean(cla_18m)) / sd(cla_18m))))
  last <- 2019 * 4 + 2                            # 2019Q3
  Z <- sapply(c("T1", "P1", "N1", "N2", "N3"), function(a) z$z[z$la == a & z$q %in% (last - 7):last][order(z$q[z$la == a & z$q %in% (last - 7):last])])
  dZ <- diff(Z)
  ref <- sqrt(colMeans((dZ - dZ[, "T1"])^2))[c("P1", "N1", "N2", "N3")]
  got <- setNames(m$candidates$distance, m$candidates$comparator_la)[names(ref)]
  expect_equal(got, ref, tolerance = 1e-12)
  # (not 0: z-scores divide by each quarter's SD across authorities, so a
  # shifted copy is parallel only up to that scaling)
  expect_lt(unname(got["P1"]), min(got[c("N1", "N2", "N3")]))
  expect_equal(m$windows$T1$quarters, c("2017Q4", "2018Q1", "2018Q2", "2018Q3", "2018Q4",
                                        "2019Q1", "2019Q2", "2019Q3"))
})

test_that("exclusions and eligibility are respected", {
  set.seed(2)
  nq <- 24
  traj <- pmin(pmax(0.3 + matrix(rnorm(5 * nq, 0, 0.03), 5, dimnames = list(c("T1", "T2", "A", "B", "C"), NULL)), 0.02), 0.98)
  d <- trend_cohort(traj, n = 30)
  go <- data.frame(la_code = c("T1", "T2"), go_live_date = as.Date(c("2021-04-01", "2021-07-01")))
  m <- match_trends(d, go, "cla_18m", n_candidates = 10, exclude = "B")
  expect_false(any(m$candidates$comparator_la %in% c("T1", "T2", "B")))
  expect_setequal(m$candidates$comparator_la[m$candidates$treated_la == "T1"], c("A", "C"))
  # a comparator whose data start late is not eligible
  late <- d[!(d$la == "C" & d$referral_date < as.Date("2019-06-01")), ]
  m2 <- match_trends(late, go, "cla_18m")
  expect_false("C" %in% m2$candidates$comparator_la)
  s <- select_matches(m, list(T1 = "C", T2 = character()))
  expect_equal(s$pairs$treated_la, "T1")
  expect_equal(s$pairs$comparator_la, "C")
})

test_that("on the simulated Family Safeguarding data a parallel comparator ranks first for every treated LA", {
  skip_on_cran()   # about 30 s: the full-size pool (25 LAs, about 1 million children)
  x <- simulate_sfp("family_safeguarding")
  # the protocol matches on the four years before go-live: the matching
  # cohort starts with the records (the analysis period starts in 2017)
  design <- design_family_safeguarding(x, trial_start = as.Date("2015-04-01"))
  cohort <- suppressMessages(build_cohort(x, design, outcomes = "cla_18m"))
  m <- match_trends(cohort, design, "cla_18m", n_candidates = 20)
  parallel_to <- attr(x, "truth")$parallel_to
  cand <- m$candidates
  built_parallel <- !is.na(parallel_to[cand$comparator_la]) &
    parallel_to[cand$comparator_la] == cand$treated_la
  first <- cand[cand$rank == 1, ]
  expect_setequal(first$treated_la, design$las$la_code[design$las$role == "treated"])
  expect_true(all(built_parallel[cand$rank == 1]))
  # each treated LA: every comparator built with its trend is nearer than
  # every comparator that was not
  for (tla in unique(cand$treated_la)) {
    rows <- cand$treated_la == tla
    expect_lt(max(cand$distance[rows & built_parallel]),
              min(cand$distance[rows & !built_parallel]))
  }
  # the protocol's window: 8 quarters ending where the 18-month exclusion starts
  expect_true(all(lengths(lapply(m$windows, `[[`, "quarters")) == 8L))
})

test_that("a cohort that starts too late for the window gives a warning naming the authorities", {
  set.seed(5)
  traj <- matrix(0.3, 3, 24, dimnames = list(c("T1", "A", "B"), NULL))
  d <- trend_cohort(traj, n = 10)
  go <- data.frame(la_code = "T1", go_live_date = as.Date("2019-04-01"))
  expect_snapshot(m <- match_trends(d, go, "cla_18m"))
  expect_length(m$windows$T1$quarters, 7L)     # 2016Q1 to 2017Q3: the data start in 2016
})

test_that("match_trends and select_matches reject bad input", {
  set.seed(3)
  traj <- matrix(0.3, 3, 24, dimnames = list(c("T1", "A", "B"), NULL))
  d <- trend_cohort(traj, n = 10)
  go <- data.frame(la_code = "T1", go_live_date = as.Date("2021-04-01"))
  expect_snapshot(match_trends(d, data.frame(la_code = "ZZ", go_live_date = as.Date("2021-04-01")), "cla_18m"), error = TRUE)
  expect_snapshot(match_trends(d, go, "nope"), error = TRUE)
  expect_snapshot(match_trends(d, data.frame(la_code = "T1", go_live_date = as.Date("2017-04-01")), "cla_18m"), error = TRUE)
  expect_snapshot(match_trends(d, go, "cla_18m", exclude = c("A", "B")), error = TRUE)
  m <- match_trends(d, go, "cla_18m")
  expect_snapshot(select_matches(m, list(T1 = "ZZ")), error = TRUE)
})

test_that("stack_pairs repeats a comparator once per pair and marks the treated side", {
  co <- data.frame(la = c("A", "A", "B", "C", "C"),
                   referral_date = as.Date(c("2019-01-01", "2021-01-01", "2021-06-01",
                                             "2019-05-01", "2021-02-01")),
                   y = 1:5)
  pairs <- data.frame(treated_la = c("A", "B"), comparator_la = c("C", "C"))
  go <- data.frame(la_code = c("A", "B"), go_live_date = as.Date(c("2020-01-01", "2021-03-01")))
  s <- stack_pairs(co, pairs, go)
  expect_equal(nrow(s), 2 + 2 + 1 + 2)                 # C's two children appear twice
  expect_equal(s$pair, rep(c("A-C", "B-C"), c(4, 3)))
  expect_equal(s$in_treated_la, c(1, 1, 0, 0, 1, 0, 0))
  expect_equal(s$period, c("pre", "post", "pre", "post", "post", "pre", "pre"))
  expect_equal(s$y, c(1, 2, 4, 5, 3, 4, 5))
})

test_that("the protocol's CEM is one call with the design", {
  set.seed(4)
  n <- 600
  st <- data.frame(in_treated_la = rbinom(n, 1, 0.5), pair = sample(c("A-C", "B-C"), n, TRUE),
                   fin_year = sample(c("2019/20", "2020/21"), n, TRUE),
                   gender = factor(sample(c("male", "female"), n, TRUE)),
                   age = sample(0:12, n, TRUE), ethnic_group = ethnic_group(sample(c("WBRI", "BAFR"), n, TRUE)),
                   disabled = rbinom(n, 1, 0.1), fsm = rbinom(n, 1, 0.4), uasc = rbinom(n, 1, 0.02),
                   n_previous_cpp = rpois(n, 0.3))
  ro <- data.frame(la_code = c("A", "B"), programme = "FS", role = "treated",
                   go_live_date = as.Date(c("2020-04-01", "2020-10-01")))
  d <- design_family_safeguarding(ro)
  fs <- fs_coarsening()
  a <- cem(data = st, design = d)
  b <- cem(fs$formula, st, cutpoints = fs$cutpoints, grouping = fs$grouping, exact = fs$exact)
  expect_identical(a$weights, b$weights)
  expect_equal(a$exact, c("pair", "fin_year"))
})
