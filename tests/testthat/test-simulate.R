# simulate_sfp(): determinism, schema, structure, rates, calibration, errors.

# ---- plain-R references used below ----

# Rate of becoming looked after (a period of care, short breaks excluded)
# within 548 days (18 months) of each child's first referral in [from, to],
# among children aged <= age_max whose window ends by `end`; optionally only
# referrals open after assessment (assessed, not NFA, not closed RC8/RC9).
# Returns one row per child: la_code, hit.
ref_cla18 <- function(x, from, to, age_max, open_only = FALSE,
                      end = attr(x, "truth")$period$end) {
  r <- x$referrals
  r <- r[r$referral_date >= from & r$referral_date <= to, ]
  r <- r[order(r$child_id, r$referral_date), ]
  r <- r[!duplicated(r$child_id), ]
  ch <- x$children[match(r$child_id, x$children$child_id), ]
  age <- as.numeric(r$referral_date - ch$dob) / 365.25
  keep <- age < age_max + 1 & r$referral_date + 548 <= end
  if (open_only) {
    keep <- keep & !r$referral_nfa &
      r$referral_id %in% x$assessments$referral_id &
      !r$closure_reason %in% c("RC8", "RC9")
  }
  r <- r[keep, ]
  e <- x$cla_episodes
  e <- e[e$rne == "S" & !e$ls %in% c("V3", "V4"), ]
  rd <- r$referral_date[match(e$child_id, r$child_id)]
  entered <- e$child_id[!is.na(rd) & e$decom >= rd & e$decom <= rd + 548]
  hit <- r$child_id %in% entered
  data.frame(la_code = x$children$la_code[match(r$child_id,
                                                   x$children$child_id)],
             hit = hit, stringsAsFactors = FALSE)
}

# One-way ANOVA intracluster correlation (Stata loneway):
# (MSB - MSW) / (MSB + (n0 - 1) MSW), n0 the adjusted mean cluster size.
ref_icc <- function(y, g) {
  g <- factor(g)
  k <- nlevels(g)
  n <- length(y)
  ni <- tabulate(g)
  mi <- tapply(y, g, mean)
  msb <- sum(ni * (mi - mean(y))^2) / (k - 1)
  msw <- sum((y - mi[g])^2) / (n - k)
  n0 <- (n - sum(ni^2) / n) / (k - 1)
  (msb - msw) / (msb + (n0 - 1) * msw)
}

check_schema <- function(x) {
  for (tb in sfp_tables()) {
    d <- x[[tb]]
    spec <- sfp_tables(tb)
    expect_true(all(spec$column[spec$required] %in% names(d)), info = tb)
    for (i in seq_len(nrow(spec))) {
      col <- spec$column[i]
      if (!col %in% names(d)) next
      v <- d[[col]]
      ok <- switch(spec$type[i], chr = is.character(v),
                   date = inherits(v, "Date"), lgl = is.logical(v),
                   int = is.integer(v), dbl = is.double(v),
                   list_chr = is.list(v) &&
                     all(vapply(v, is.character, TRUE)))
      expect_true(ok, info = paste(tb, col))
      if (!spec$na_allowed[i]) expect_false(anyNA(v), info = paste(tb, col))
      if (!is.na(spec$codes[i])) {
        u <- unique(unlist(v))
        expect_true(all(u[!is.na(u)] %in% sfp_codes(spec$codes[i])),
                    info = paste(tb, col))
      }
    }
  }
  # keys unique, foreign keys present, end dates not before start dates
  expect_false(anyDuplicated(x$children$child_id) > 0)
  expect_false(anyDuplicated(x$referrals$referral_id) > 0)
  expect_false(anyDuplicated(x$assessments$assessment_id) > 0)
  expect_false(anyDuplicated(x$assessment_factors) > 0)
  expect_false(anyDuplicated(x$cla_episodes[c("child_id", "decom")]) > 0)
  expect_false(anyDuplicated(x$absence[c("child_id", "academic_year",
                                         "term")]) > 0)
  expect_false(anyDuplicated(x$la_covariates[c("la_code", "month")]) > 0)
  expect_true(all(x$referrals$child_id %in% x$children$child_id))
  expect_true(all(x$children$child_id %in% x$referrals$child_id))
  expect_true(all(x$assessments$referral_id %in% x$referrals$referral_id))
  expect_true(all(x$assessment_factors$assessment_id %in%
                    x$assessments$assessment_id))
  expect_true(all(x$cp_plans$referral_id %in% x$referrals$referral_id))
  expect_true(all(x$cin_plans$referral_id %in% x$referrals$referral_id))
  expect_true(all(x$cla_episodes$child_id %in% x$children$child_id))
  expect_true(all(x$absence$child_id %in% x$children$child_id))
  ge <- function(a, b) all(is.na(a) | is.na(b) | a >= b)
  expect_true(ge(x$referrals$closure_date, x$referrals$referral_date))
  expect_true(ge(x$assessments$assessment_end, x$assessments$assessment_start))
  expect_true(ge(x$cin_plans$end, x$cin_plans$start))
  expect_true(ge(x$cp_plans$end, x$cp_plans$start))
  expect_true(ge(x$cla_episodes$dec, x$cla_episodes$decom))
  a <- x$assessments
  expect_true(ge(a$assessment_start, x$referrals$referral_date[
    match(a$referral_id, x$referrals$referral_id)]))
  expect_true(all(x$absence$unauth_sessions <= x$absence$sessions_possible))
}

# ---- shared draws ----

fv_small <- simulate_sfp("family_valued", children_per_la_year = 150,
                         seed = 11)
fs_small <- simulate_sfp("family_safeguarding", n_la = 8,
                         children_per_la_year = 80, seed = 11, n_treated = 3)

test_that("the same seed gives the same records, another seed others", {
  again <- simulate_sfp("family_valued", children_per_la_year = 150,
                        seed = 11)
  expect_identical(again, fv_small)
  other <- simulate_sfp("family_valued", children_per_la_year = 150,
                        seed = 12)
  expect_false(identical(other$referrals, fv_small$referrals))
  # the cached calibration does not change the data: a fresh session's
  # first call (pilot walk run again) gives the same records
  cache <- sfpceval:::.sim_cache
  rm(list = ls(cache, all.names = TRUE), envir = cache)
  expect_identical(simulate_sfp("family_valued", children_per_la_year = 150,
                                seed = 11), fv_small)
  # integer and double arguments, list and vector effects: same data
  expect_identical(
    simulate_sfp("family_valued", n_la = 5L, children_per_la_year = 150L,
                 seed = 11L, effects = c(cla = 0)),
    fv_small)
})

test_that("the user's random-number state is restored", {
  set.seed(99)
  a <- stats::runif(3)
  set.seed(99)
  simulate_sfp("family_valued", n_la = 2, children_per_la_year = 10)
  expect_identical(stats::runif(3), a)
  # also when the session had no seed yet, and another generator
  old <- RNGkind()
  on.exit(RNGkind(old[1], old[2], old[3]), add = TRUE)
  RNGkind("L'Ecuyer-CMRG")
  set.seed(5)
  b <- stats::runif(1)
  set.seed(5)
  y <- simulate_sfp("family_valued", n_la = 2, children_per_la_year = 10)
  expect_identical(stats::runif(1), b)
  expect_identical(RNGkind()[1], "L'Ecuyer-CMRG")
  expect_identical(
    y, simulate_sfp("family_valued", n_la = 2, children_per_la_year = 10))
})

test_that("the caller's .Random.seed and generator are untouched (with_seed())", {
  old <- RNGkind()
  on.exit(suppressWarnings(RNGkind(old[1], old[2], old[3])), add = TRUE)
  # a session with a seed, under a non-default generator and sample kind
  suppressWarnings(RNGkind("Knuth-TAOCP-2002", "Box-Muller", "Rounding"))
  set.seed(7)
  before <- get(".Random.seed", globalenv())
  kinds <- RNGkind()
  y <- simulate_sfp("family_valued", n_la = 2, children_per_la_year = 10, seed = 3)
  expect_identical(get(".Random.seed", globalenv()), before)
  expect_identical(RNGkind(), kinds)
  suppressWarnings(RNGkind(old[1], old[2], old[3]))
  # the records do not depend on the caller's generator
  expect_identical(simulate_sfp("family_valued", n_la = 2, children_per_la_year = 10,
                                seed = 3), y)
  # a session with no seed yet keeps none
  if (exists(".Random.seed", globalenv())) rm(".Random.seed", envir = globalenv())
  simulate_sfp("family_valued", n_la = 2, children_per_la_year = 10, seed = 3)
  expect_false(exists(".Random.seed", globalenv()))
  # set.seed() would truncate 2.5 to 2: a seed is one whole number
  expect_error(simulate_sfp("family_valued", n_la = 2, children_per_la_year = 10,
                            seed = 2.5), "`seed` must be one whole number")
})

test_that("the output is a valid sfp_data in the schema, for both designs", {
  for (x in list(fv_small, fs_small)) {
    expect_s3_class(x, "sfp_data")
    expect_identical(names(x), sfp_tables())
    # open records are soft problems (warnings) of the validator by design
    expect_no_error(v <- suppressWarnings(do.call(sfp_data, unclass(x))))
    expect_s3_class(v, "sfp_data")
    # ... and the only soft problems, when the validator records them
    prob <- attr(v, "problems")
    if (is.data.frame(prob) && nrow(prob)) {
      expect_true(all(prob$column %in% c("closure_date", "end", "dec")))
    }
    check_schema(x)
  }
})

test_that("dates lie in the simulated period", {
  for (x in list(fv_small, fs_small)) {
    p <- attr(x, "truth")$period
    expect_true(all(x$referrals$referral_date >= p$start))
    expect_true(all(x$referrals$referral_date <= p$end))
    for (d in list(x$referrals$closure_date, x$cp_plans$end, x$cin_plans$end,
                   x$cla_episodes$dec, x$cla_episodes$decom)) {
      expect_true(all(is.na(d) | d <= p$end))
    }
    expect_true(all(x$la_covariates$month >= as.Date(cut(p$start, "month"))))
    expect_true(all(x$la_covariates$month <= p$end))
    expect_identical(as.integer(format(x$la_covariates$month, "%d")),
                     rep(1L, nrow(x$la_covariates)))
    # first referrals up to the last referral date
    first <- tapply(x$referrals$referral_date, x$referrals$child_id, min)
    expect_true(all(first <= as.numeric(p$last_referral)))
  }
})

test_that("periods of care start with rne S and their episodes are contiguous", {
  big <- simulate_sfp("family_valued", children_per_la_year = 600, seed = 4)
  e <- big$cla_episodes
  e <- e[order(e$child_id, e$decom), ]
  n <- nrow(e)
  same <- c(FALSE, e$child_id[-1] == e$child_id[-n])
  prev_rec <- c(NA, e$rec[-n])
  prev_dec <- c(NA, e$dec[-n])
  # an episode follows an X1 episode of the same child iff it is not rne S
  cont <- same & !is.na(prev_rec) & prev_rec == "X1"
  expect_identical(e$rne != "S", cont)
  expect_true(all(e$decom[cont] == prev_dec[cont]))
  # a new period starts after the previous one ended
  new_period <- same & e$rne == "S"
  expect_true(all(!is.na(prev_dec[new_period]) &
                    e$decom[new_period] > prev_dec[new_period]))
  # an open episode (no dec) is the child's last and has no rec
  last <- c(!same[-1], TRUE)
  expect_true(all(last[is.na(e$dec)]))
  expect_true(all(is.na(e$rec[is.na(e$dec)])))
  # at most three changes within a period
  period <- cumsum(e$rne == "S")
  expect_lte(max(tabulate(period)), 4L)
  # short breaks (V3/V4) for about 1% of children, only short-break periods
  sb <- unique(e$child_id[e$ls %in% c("V3", "V4")])
  expect_gt(length(sb), 0)
  expect_lt(length(sb) / nrow(big$children), 0.03)
  expect_true(all(e$ls[e$child_id %in% sb] %in% c("V3", "V4")))
  # nobody enters care after their 18th birthday; some leave at 18
  dob <- big$children$dob[match(e$child_id, big$children$child_id)]
  b18 <- as.Date(paste0(as.integer(format(dob, "%Y")) + 18,
                        format(dob, "-%m-%d")))
  ok <- !is.na(b18)
  expect_true(all(e$decom[ok] < b18[ok]))
  expect_gt(sum(e$dec[ok] == b18[ok], na.rm = TRUE), 0)
  # placement codes by date: K3 only from 2024-04-01, H5 only before
  expect_true(all(e$decom[e$place == "K3"] >= as.Date("2024-04-01")))
  expect_true(all(e$decom[e$place == "H5"] < as.Date("2024-04-01")))
  # previous CPPs: at least the child's earlier CPPs in the data
  cp <- big$cp_plans
  cp$child_id <- big$referrals$child_id[match(cp$referral_id,
                                              big$referrals$referral_id)]
  cp <- cp[order(cp$child_id, cp$start), ]
  earlier <- stats::ave(seq_len(nrow(cp)), cp$child_id, FUN = seq_along) - 1L
  expect_true(all(cp$n_previous_cpp >= earlier))
  expect_gt(sum(cp$n_previous_cpp > earlier), 0)
})

test_that("Family Valued roll-out: stratified random order, trial period", {
  ro <- fv_small$rollout
  expect_identical(nrow(ro), 5L)
  expect_identical(ro$wedge_order, 1:5)
  expect_identical(ro$go_live_date,
                   as.Date(c("2020-04-01", "2020-10-01", "2021-04-01",
                             "2021-10-01", "2022-04-01")))
  expect_identical(ro$stratum, c("high", "high", "low", "low", "low"))
  expect_true(all(ro$programme == "FV" & ro$role == "treated"))
  expect_true(all(ro$trial_start == as.Date("2019-10-01")))
  expect_true(all(ro$trial_end == as.Date("2022-09-30")))
  expect_true(all(ro$embed_end == ro$go_live_date))
  expect_true(all(ro$embed_start < ro$go_live_date))
  gap <- as.numeric(ro$alt_go_live_date - ro$go_live_date)
  expect_true(all(gap >= 90 & gap <= 184))
  # the order is random within stratum: over seeds, each high LA goes first
  firsts <- vapply(1:12, function(s) {
    r <- simulate_sfp("family_valued", n_la = 5, children_per_la_year = 2,
                      seed = s)$rollout
    r$la_code[r$wedge_order == 1]
  }, "")
  expect_gt(length(unique(firsts)), 1L)
  # LA codes are synthetic three-digit codes
  expect_true(all(grepl("^9[0-9]{2}$", fv_small$children$la_code)))
  # more LAs are shared out over the five steps
  r10 <- simulate_sfp("family_valued", n_la = 10, children_per_la_year = 2,
                      seed = 1)$rollout
  expect_identical(as.vector(table(r10$wedge_order)), rep(2L, 5))
  expect_true(all(r10$stratum[r10$wedge_order <= 2] == "high"))
  expect_true(all(r10$stratum[r10$wedge_order > 2] == "low"))
})

test_that("Family Safeguarding: treated LAs, comparators, parallel trends", {
  fs <- simulate_sfp("family_safeguarding", children_per_la_year = 5,
                     seed = 2)
  tr <- attr(fs, "truth")
  expect_identical(nrow(fs$rollout), 5L)
  expect_true(all(fs$rollout$programme == "FS" &
                    fs$rollout$role == "treated"))
  expect_identical(fs$rollout$go_live_date,
                   as.Date(c("2020-09-01", "2021-01-01", "2021-05-01",
                             "2021-10-01", "2022-04-01")))
  expect_true(all(diff(fs$rollout$go_live_date) >= 120))
  expect_identical(sum(tr$la$role == "comparator"), 20L)
  expect_setequal(unique(fs$children$la_code), tr$la$la_code)
  expect_identical(min(fs$referrals$referral_date) >= as.Date("2015-04-01"),
                   TRUE)
  # three comparators per treated LA follow its path, five do not
  pt <- tr$parallel_to
  expect_length(pt, 20L)
  expect_identical(sum(!is.na(pt)), 15L)
  expect_identical(as.vector(table(pt)), rep(3L, 5))
  m <- tr$trajectories
  # parallel in rates (the scale of the protocol's linear DiD): each quarter
  # the comparator's expected rate moves from its own level by as much as
  # the treated LA's does. Plain-R reference of the expected rate in the
  # protocol's population (children aged 0-12 at their first referral): the
  # mixture over ages and UASC, over CPP / CIN plan / open without a plan,
  # of the logistic model, times the chance the entry falls within 18 months.
  mod <- tr$model
  g <- sim_age_groups()
  g <- g[g$age <= 12, ]
  months <- ifelse(g$age < 0, -1, floor(g$age_exact * 12))
  f18 <- sim_cla_delay_cdf(pmin(548, (18 * 12 - (months + 0.5)) * 365.25 / 12))
  open <- mod$p_cpp + mod$p_cin + mod$p_noplan
  share <- c(mod$p_cpp, mod$p_cin, mod$p_noplan) / open
  b <- c(mod$b_cpp, 0, mod$b_noplan)
  w <- g$w / sum(g$w) * f18 * (1 - mod$p_nfa) * mod$p_assessed * open *
    tr$calibration_inflation
  rate <- function(la, shift) {
    a <- tr$intercept + tr$la$random_effect[match(la, tr$la$la_code)]
    vapply(shift, function(s) {
      eta <- a + g$age_logit + 3 * g$uasc + s
      sum(w * (share[1] * plogis(eta + b[1]) + share[2] * plogis(eta + b[2]) +
                 share[3] * plogis(eta + b[3])))
    }, 0)
  }
  for (cmp in names(pt)[!is.na(pt)]) {
    moved_cmp <- rate(cmp, m[cmp, ]) - rate(cmp, 0)
    moved_tr <- rate(pt[[cmp]], m[pt[[cmp]], ]) - rate(pt[[cmp]], 0)
    # the shifts are interpolated on a grid 0.004 apart on the logit scale:
    # the error is of order 0.004^2 x the rate's curvature (under 0.1)
    floor <- m[cmp, ] <= -8
    expect_lt(max(abs(moved_cmp - moved_tr)[!floor]), 0.004^2 * 0.1)
    expect_gt(stats::sd(moved_tr), 0.01)
    # where the treated LA's rate falls by more than the comparator's whole
    # level, the comparator's rate stops at (almost) zero
    expect_true(all(moved_tr[floor] < moved_cmp[floor]))
    expect_true(all(rate(cmp, m[cmp, floor]) < 1e-3))
  }
  # authorities with their own path average their calibrated level over the
  # quarters before the first go-live
  pre <- as.Date(colnames(m)) < min(fs$rollout$go_live_date)
  for (la in c(fs$rollout$la_code, names(pt)[is.na(pt)])) {
    expect_equal(mean(rate(la, m[la, pre])), rate(la, 0), tolerance = 1e-7)
  }
  for (cmp in names(pt)[is.na(pt)]) {
    expect_false(any(apply(m[fs$rollout$la_code, ], 1,
                           function(r) isTRUE(all.equal(r, m[cmp, ])))))
  }
  # the 2020 pandemic shock: size 0.3-0.5 on the logit scale, onset in
  # 2020, shared by parallel comparators, visible against 2018-19
  sh <- tr$pandemic_shock
  expect_true(all(abs(sh$amplitude) >= 0.3 & abs(sh$amplitude) <= 0.5))
  expect_true(all(format(sh$onset, "%Y") == "2020"))
  expect_identical(sh$amplitude[match(names(pt)[!is.na(pt)], sh$la_code)],
                   sh$amplitude[match(pt[!is.na(pt)], sh$la_code)])
  yr <- substr(colnames(m), 1, 4)
  dev <- apply(abs(m[, yr == "2020"] -
                     rowMeans(m[, yr %in% c("2018", "2019")])), 1, max)
  expect_gt(mean(dev), 0.25)
})

test_that("one LA, tiny sizes and the design settings work", {
  one <- simulate_sfp("family_valued", n_la = 1, children_per_la_year = 3,
                      seed = 1)
  expect_identical(nrow(one$rollout), 1L)
  expect_identical(one$rollout$stratum, "high")
  check_schema(one)
  fs1 <- simulate_sfp("family_safeguarding", n_la = 1,
                      children_per_la_year = 3, seed = 1)
  expect_identical(nrow(fs1$rollout), 1L)
  expect_length(attr(fs1, "truth")$parallel_to, 0L)
  check_schema(fs1)
  short <- simulate_sfp("family_safeguarding", n_la = 3, n_treated = 1,
                        children_per_la_year = 20, seed = 1,
                        start = "2018-01-01", end = "2020-12-31",
                        last_referral = "2019-12-31")
  expect_true(all(short$referrals$referral_date >= as.Date("2018-01-01")))
  expect_true(max(tapply(short$referrals$referral_date,
                         short$referrals$child_id, min)) <=
                as.numeric(as.Date("2019-12-31")))
  check_schema(short)
})

# ---- rates over large draws ----

fv_big <- simulate_sfp("family_valued", n_la = 40, children_per_la_year = 400,
                       seed = 21)
fs_big <- simulate_sfp("family_safeguarding", n_la = 60,
                       children_per_la_year = 300, seed = 22,
                       last_referral = "2020-08-31")

test_that("CLA within 18 months is near the protocols' baselines", {
  tr <- attr(fv_big, "truth")
  fv <- ref_cla18(fv_big, tr$period$trial_start, tr$period$trial_end, 17,
                  open_only = TRUE)
  expect_gte(mean(fv$hit), 0.03)
  expect_lte(mean(fv$hit), 0.05)
  fs <- ref_cla18(fs_big, as.Date("2015-04-01"), as.Date("2020-08-31"), 12)
  expect_gte(mean(fs$hit), 0.045)
  expect_lte(mean(fs$hit), 0.075)
  # the ICC of the LA rates is near the target (0.5 to 1.8 times)
  expect_gte(ref_icc(fv$hit, fv$la_code), 0.5 * 0.01566)
  expect_lte(ref_icc(fv$hit, fv$la_code), 1.8 * 0.01566)
  expect_gte(ref_icc(fs$hit, fs$la_code), 0.5 * 0.00722)
  expect_lte(ref_icc(fs$hit, fs$la_code), 1.8 * 0.00722)
})

test_that("the LA variance agrees with a random-intercept logit (lme4)", {
  skip_if_not_installed("lme4")
  fs <- ref_cla18(fs_big, as.Date("2015-04-01"), as.Date("2020-08-31"), 12)
  agg <- stats::aggregate(hit ~ la_code, fs, function(h) c(sum(h), length(h)))
  d <- data.frame(la = agg$la_code, y = agg$hit[, 1], n = agg$hit[, 2])
  fit <- lme4::glmer(cbind(y, n - y) ~ 1 + (1 | la), data = d,
                     family = stats::binomial)
  sd_hat <- sqrt(as.numeric(lme4::VarCorr(fit)$la))
  sigma <- attr(fs_big, "truth")$sigma_la
  # the realised LA effects have SD sigma exactly (standardised), so the
  # fitted SD differs from it only by binomial noise and the attenuation of
  # averaging over ages; a factor of 1.5 either way is a loose band
  expect_gt(sd_hat, sigma / 1.5)
  expect_lt(sd_hat, sigma * 1.5)
})

test_that("shares of referrals, assessments, plans and placements", {
  x <- fv_big
  r <- x$referrals
  end <- attr(x, "truth")$period$end
  # NFA 5-10%; CPP within 6 months for 12-15% of referrals
  expect_gte(mean(r$referral_nfa), 0.05)
  expect_lte(mean(r$referral_nfa), 0.10)
  cp <- x$cp_plans
  cp_ref <- r$referral_date[match(cp$referral_id, r$referral_id)]
  cpp6 <- length(unique(cp$referral_id[cp$start <= cp_ref + 183]))
  expect_gte(cpp6 / nrow(r), 0.11)
  expect_lte(cpp6 / nrow(r), 0.16)
  # re-referral within 12 months: about 20-25% of referrals
  r <- r[order(r$child_id, r$referral_date), ]
  n <- nrow(r)
  nxt <- c(r$referral_date[-1], NA)
  same <- c(r$child_id[-1] == r$child_id[-n], FALSE)
  obs <- r$referral_date + 365 <= end
  reref <- (same & as.numeric(nxt - r$referral_date) <= 365)[obs]
  expect_gte(mean(reref), 0.18)
  expect_lte(mean(reref), 0.27)
  # assessments for 85-90% of referrals not NFA
  share <- nrow(x$assessments) / sum(!x$referrals$referral_nfa)
  expect_gte(share, 0.85)
  expect_lte(share, 0.90)
  # toxic-trio factors: domestic violence ~30%, parental mental health
  # ~25%, parental substance misuse 15-18%
  f <- x$assessment_factors
  na <- nrow(x$assessments)
  any_of <- function(codes) length(unique(f$assessment_id[f$factor %in%
                                                            codes])) / na
  expect_gte(any_of(c("3A", "3B", "3C")), 0.26)
  expect_lte(any_of(c("3A", "3B", "3C")), 0.34)
  expect_gte(any_of("4B"), 0.21)
  expect_lte(any_of("4B"), 0.29)
  expect_gte(any_of(c("1B", "2B")), 0.14)
  expect_lte(any_of(c("1B", "2B")), 0.19)
  # kinship: 15-20% of first placements
  e <- x$cla_episodes
  s <- e[e$rne == "S" & !e$ls %in% c("V3", "V4"), ]
  s <- s[!duplicated(s$child_id), ]
  expect_gte(mean(s$place %in% sfp_codes("kinship")), 0.15)
  expect_lte(mean(s$place %in% sfp_codes("kinship")), 0.20)
  # CPP durations: median 8-9 months, about 3% over two years
  d <- as.numeric(cp$end - cp$start)
  d <- d[!is.na(d) & cp$start + 900 <= end]
  expect_gte(stats::median(d), 200)
  expect_lte(stats::median(d), 290)
  # unauthorised absence 3-6% of sessions; UASC 1-2%; unborn 1-2%
  ab <- x$absence
  expect_gte(sum(ab$unauth_sessions) / sum(ab$sessions_possible), 0.03)
  expect_lte(sum(ab$unauth_sessions) / sum(ab$sessions_possible), 0.06)
  expect_gte(mean(x$children$uasc), 0.01)
  expect_lte(mean(x$children$uasc), 0.02)
  unborn <- !is.na(x$children$expected_dob)
  expect_gte(mean(unborn), 0.01)
  expect_lte(mean(unborn), 0.02)
  expect_true(all(x$children$gender_raw[unborn] == "0"))
  # summer 2019/20 absence was not collected
  expect_false(any(ab$academic_year == "2019/20" &
                     ab$term %in% c("summer", "summer6th")))
  # a summer6th row always comes with its summer row; about 10% split
  s6 <- paste(ab$child_id, ab$academic_year)[ab$term == "summer6th"]
  expect_true(all(s6 %in% paste(ab$child_id, ab$academic_year)[
    ab$term == "summer"]))
  split <- length(s6) / sum(ab$term == "summer")
  expect_gt(split, 0.05)
  expect_lt(split, 0.15)
  # some children's first referral in the trial period is a repeat
  tr <- attr(x, "truth")$period
  before <- unique(r$child_id[r$referral_date < tr$trial_start])
  during <- unique(r$child_id[r$referral_date >= tr$trial_start &
                                r$referral_date <= tr$trial_end])
  expect_gt(length(intersect(before, during)), 0)
})

test_that("monthly LA covariates: plausible, with gaps and switch-ons", {
  lc <- fs_big$la_covariates
  months <- seq(as.Date("2015-04-01"), as.Date("2024-03-01"), by = "month")
  per_la <- split(lc, lc$la_code)
  expect_length(per_la, 60L)
  n_missing <- vapply(per_la, function(d) sum(!months %in% d$month), 0L)
  late_start <- vapply(per_la, function(d) min(d$month) > months[1], TRUE)
  expect_gt(sum(late_start), 0)            # gaps at the start ...
  expect_gt(sum(n_missing > 0 & !late_start), 0)   # ... and in the middle
  expect_lt(mean(n_missing), 6)
  expect_true(all(lc$prop_fsm >= 0.05 & lc$prop_fsm <= 0.6))
  expect_true(all(lc$prop_white_british > 0 & lc$prop_white_british < 1))
  # the other programme switches on once and stays on
  on <- vapply(per_la, function(d) {
    x <- d$other_innovation_programme[order(d$month)]
    if (!any(x)) return(0L)
    if (all(x[which.max(x):length(x)])) 1L else NA_integer_
  }, 0L)
  expect_false(anyNA(on))
  expect_gt(sum(on), 0)
  expect_lt(sum(on), 30)
})

test_that("non-zero effects move the treated-period outcomes", {
  base <- simulate_sfp("family_valued", children_per_la_year = 1000, seed = 8)
  up <- simulate_sfp("family_valued", children_per_la_year = 1000, seed = 8,
                     effects = list(cla = 1, absence = 5, cpp = 1,
                                    kinship = 1.5))
  tr <- attr(base, "truth")
  # referrals from the last go-live to the end of the trial: all treated
  treated_rate <- function(x) {
    d <- ref_cla18(x, as.Date("2022-04-01"), tr$period$trial_end, 17,
                   open_only = TRUE)
    mean(d$hit)
  }
  expect_gt(treated_rate(up), treated_rate(base) + 0.01)
  expect_identical(attr(up, "truth")$effects$cla, 1)
  # absence: +5 percentage points in terms after a treated referral
  ab <- function(x) sum(x$absence$unauth_sessions) /
    sum(x$absence$sessions_possible)
  expect_gt(ab(up), ab(base) + 0.005)
  # CPPs among referrals after the last go-live, kinship among first
  # placements in periods starting then
  cpp_share <- function(x) {
    r <- x$referrals[x$referrals$referral_date >= as.Date("2022-04-01"), ]
    mean(r$referral_id %in% x$cp_plans$referral_id)
  }
  expect_gt(cpp_share(up), cpp_share(base) + 0.05)
  kin_share <- function(x) {
    e <- x$cla_episodes
    e <- e[e$rne == "S" & e$decom >= as.Date("2022-06-01") &
             !e$ls %in% c("V3", "V4"), ]
    mean(e$place %in% sfp_codes("kinship"))
  }
  expect_gt(kin_share(up), kin_share(base) + 0.05)
  # the children themselves do not change
  expect_identical(up$children, base$children)
})

test_that("LA effects are standardised to SD sigma_la unless asked not to", {
  tr <- attr(fs_small, "truth")
  u <- tr$la$random_effect
  expect_equal(mean(u), 0, tolerance = 1e-12)
  expect_equal(stats::sd(u), tr$sigma_la)
  raw <- attr(simulate_sfp("family_safeguarding", n_la = 8,
                           children_per_la_year = 80, seed = 11,
                           n_treated = 3, standardise_la = FALSE), "truth")
  expect_false(isTRUE(all.equal(stats::sd(raw$la$random_effect),
                                raw$sigma_la)))
  # ICC 0: no LA variation at all
  flat <- attr(simulate_sfp("family_valued", n_la = 3, icc = 0,
                            children_per_la_year = 5), "truth")
  expect_identical(flat$sigma_la, 0)
  expect_identical(flat$la$random_effect, c(0, 0, 0))
})

# ---- calibration pieces ----

test_that("Gauss-Hermite rule integrates normal moments (paper values)", {
  gh <- sfpceval:::normal_quadrature(30L)
  expect_equal(sum(gh$w), 1)
  expect_equal(sum(gh$w * gh$z), 0, tolerance = 1e-10)
  expect_equal(sum(gh$w * gh$z^2), 1)            # E Z^2 = 1
  expect_equal(sum(gh$w * gh$z^4), 3)            # E Z^4 = 3
  expect_equal(sum(gh$w * exp(gh$z)), exp(0.5))  # E e^Z = e^(1/2)
})

test_that("the calibration hits baseline and ICC (reference: integrate())", {
  # ages at the middle of a month, as the calibration groups them
  ch <- data.frame(age = c(0, 5, 12, 16),
                   age_exact = c(6.5, 66.5, 150.5, 198.5) / 12,
                   uasc = c(FALSE, FALSE, FALSE, TRUE))
  ch$age_logit <- sfpceval:::sim_age_logit(ch$age)
  cal <- sfpceval:::sim_calibrate(ch, "family_valued", 17, 0.04, 0.016)
  # plain-R reference: the LA rate given u, averaged over N(0, sigma^2)
  m <- sfpceval:::.sim_model
  eta <- ch$age_logit + 3 * ch$uasc
  f18 <- sfpceval:::sim_cla_delay_cdf(pmin(548, (18 - ch$age_exact) * 365.25))
  pk <- c(m$p_cpp, m$p_cin, m$p_noplan) / (m$p_cpp + m$p_cin + m$p_noplan)
  bk <- c(m$b_cpp, 0, m$b_noplan)
  rate_u <- function(u) vapply(u, function(uu) {
    mean(f18 * (pk[1] * plogis(cal$intercept + eta + bk[1] + uu) +
                  pk[2] * plogis(cal$intercept + eta + bk[2] + uu) +
                  pk[3] * plogis(cal$intercept + eta + bk[3] + uu)))
  }, 0)
  s <- cal$sigma
  mu <- integrate(function(u) rate_u(u) * dnorm(u, 0, s), -Inf, Inf)$value
  v <- integrate(function(u) (rate_u(u) - mu)^2 * dnorm(u, 0, s),
                 -Inf, Inf)$value
  # agreement to the root finders' tolerances (1e-7 intercept, 1e-6 SD)
  expect_equal(mu, 0.04, tolerance = 1e-5)
  expect_equal(v / (mu * (1 - mu)), 0.016, tolerance = 1e-4)
  # ICC 0: no LA variation
  expect_identical(sfpceval:::sim_calibrate(ch, "family_valued", 17, 0.04,
                                            0)$sigma, 0)
})

test_that("CLA delay distribution and Easter dates (paper values)", {
  cdf <- sfpceval:::sim_cla_delay_cdf
  # mixture: 65% uniform on 1-182 days, 22% on 183-548, 13% on 549-900
  expect_equal(cdf(c(0, 182, 548, 900, 2000)), c(0, 0.65, 0.87, 1, 1))
  # 365 is day 183 of the 366 days 183-548: half of the second piece
  expect_equal(cdf(365), 0.65 + 0.22 / 2)
  expect_identical(sfpceval:::day_to_date(sfpceval:::easter_sunday(c(2019L, 2020L, 2021L, 2024L))),
                   as.Date(c("2019-04-21", "2020-04-12", "2021-04-04",
                             "2024-03-31")))
})

# ---- errors ----

test_that("bad arguments give clear errors", {
  expect_snapshot(simulate_sfp(n_la = 0), error = TRUE)
  expect_snapshot(simulate_sfp(n_la = 2.5), error = TRUE)
  expect_snapshot(simulate_sfp(n_la = NA), error = TRUE)
  expect_snapshot(simulate_sfp(children_per_la_year = "many"), error = TRUE)
  expect_snapshot(simulate_sfp(children_per_la_year = Inf), error = TRUE)
  expect_snapshot(simulate_sfp(n_la = 99, children_per_la_year = 1e5),
                  error = TRUE)
  expect_snapshot(simulate_sfp(effects = list(cla = 0.1, foster = 1)),
                  error = TRUE)
  expect_snapshot(simulate_sfp(effects = list(0.1)), error = TRUE)
  expect_snapshot(simulate_sfp(effects = list(cla = NaN)), error = TRUE)
  expect_snapshot(simulate_sfp(icc = 1), error = TRUE)
  expect_snapshot(simulate_sfp(icc = -0.01), error = TRUE)
  expect_snapshot(simulate_sfp(baseline = 0), error = TRUE)
  expect_snapshot(simulate_sfp(baseline = 0.45, n_la = 2), error = TRUE)
  expect_snapshot(simulate_sfp("family_valued", icc = 0.9, n_la = 2),
                  error = TRUE)
  expect_snapshot(simulate_sfp(seed = NA), error = TRUE)
  expect_snapshot(simulate_sfp(start = "yesterday"), error = TRUE)
  expect_snapshot(simulate_sfp(start = "2020-01-01", end = "2020-06-30"),
                  error = TRUE)
  expect_snapshot(simulate_sfp(design = "stepped"), error = TRUE)
  expect_snapshot(simulate_sfp(n_treated = 7), error = TRUE)
  expect_snapshot(simulate_sfp(colour = "red"), error = TRUE)
  expect_snapshot(simulate_sfp(trend_sd = -1), error = TRUE)
  expect_snapshot(simulate_sfp(last_referral = "2030-01-01"), error = TRUE)
})

test_that("the bundled examples are valid and as documented", {
  env <- new.env()
  utils::data("sfp_example_fv", "sfp_example_fs", package = "sfpceval",
              envir = env)
  fv <- env$sfp_example_fv
  fs <- env$sfp_example_fs
  check_schema(fv)
  check_schema(fs)
  expect_identical(attr(fv, "truth")$design, "family_valued")
  expect_identical(nrow(fv$rollout), 5L)
  expect_identical(attr(fs, "truth")$design, "family_safeguarding")
  expect_identical(nrow(fs$rollout), 3L)
  expect_identical(sum(attr(fs, "truth")$la$role == "comparator"), 5L)
  expect_true(all(unlist(attr(fv, "truth")$effects) == 0))
})

test_that("no record starts after the extract date", {
  x <- simulate_sfp("family_valued", children_per_la_year = 200, seed = 11)
  end <- as.Date("2025-09-30")
  expect_true(all(x$referrals$referral_date <= end))
  expect_true(all(x$assessments$assessment_start <= end))
  expect_true(all(x$cin_plans$start <= end))
  expect_true(all(x$cp_plans$start <= end))
  expect_true(all(x$cla_episodes$decom <= end))
  expect_true(all(x$assessment_factors$assessment_id %in% x$assessments$assessment_id))
})

test_that("Family Valued comparators for the DiD strand (n_comparators)", {
  # default 0: the stepped-wedge records are unchanged (fv_small above)
  expect_identical(simulate_sfp("family_valued", children_per_la_year = 150, seed = 11,
                                n_comparators = 0), fv_small)
  x <- simulate_sfp("family_valued", children_per_la_year = 150, seed = 11, n_comparators = 5)
  tr <- attr(x, "truth")
  ro <- x$rollout
  # the comparators are in the roll-out, never live, after the five treated LAs
  expect_identical(ro$role, rep(c("treated", "comparator"), c(5L, 5L)))
  expect_identical(ro$la_code[6:10], as.character(906:910))
  expect_true(all(is.na(ro$go_live_date[6:10])))
  expect_true(all(ro$programme == "FV"))
  check_schema(x)
  # the treated LAs' roll-out (order, dates, strata) is the design's own
  expect_identical(sort(ro$go_live_date[1:5]),
                   as.Date(c("2020-04-01", "2020-10-01", "2021-04-01", "2021-10-01", "2022-04-01")))
  expect_setequal(unique(x$children$la_code), as.character(901:910))
  # as for Family Safeguarding: three per treated LA at most, a quarter of
  # them (rounded down) with their own paths; a parallel comparator has its
  # treated LA's logit path
  expect_identical(unname(tr$parallel_to), c("901", "902", "903", "904", NA))
  tj <- tr$trajectories
  for (cmp in c("906", "907", "908", "909")) {
    expect_identical(tj[cmp, ], tj[tr$parallel_to[[cmp]], ])
  }
  expect_false(isTRUE(all.equal(tj["910", ], tj["901", ])))
  # never live, so no effect applies to their referrals
  expect_true(all(is.na(tr$la$go_live_date[tr$la$role == "comparator"])))
  # the DiD design takes them; the stepped-wedge design refuses them
  d <- design_family_valued(x, strand = "did")
  expect_identical(d$las$role, rep(c("treated", "comparator"), c(5L, 5L)))
  expect_error(design_family_valued(x), "strand = \"did\"")
})

test_that("n_comparators: bad values and Family Safeguarding", {
  expect_snapshot(simulate_sfp("family_valued", n_comparators = -1), error = TRUE)
  expect_snapshot(simulate_sfp("family_valued", n_comparators = 2.5), error = TRUE)
  expect_snapshot(simulate_sfp("family_safeguarding", n_comparators = 3), error = TRUE)
})
