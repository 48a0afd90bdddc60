# cem(), imbalance(), fs_coarsening(): checked against slow plain-R
# references written here, against MatchIt's CEM, and on tiny hand-made cases.

# ---- plain-R references (slow, obvious) -------------------------------------

# Strata from a data frame of already coarsened values: string keys, numbered
# in order of first appearance; NA is a value of its own ("NA" in paste).
ref_strata <- function(keys) {
  k <- do.call(paste, c(lapply(keys, function(x) paste0("<", x, ">")),
                        sep = "\r"))
  match(k, unique(k))
}

# CEM ATT weights (`vignette("methods")`, section 1) from strata and treatment, with a
# table of strata; `group` (optional) normalises within groups.
ref_weights <- function(stratum, treat, group = rep(1L, length(treat))) {
  tab <- table(factor(stratum), factor(treat, levels = 0:1))
  n_c <- tab[, "0"]
  n_t <- tab[, "1"]
  ok <- n_c > 0 & n_t > 0
  s <- as.character(stratum)
  matched <- ok[s]
  w <- numeric(length(treat))
  for (g in unique(group)) {
    in_g <- group == g
    m_t <- sum(treat == 1 & matched & in_g)
    m_c <- sum(treat == 0 & matched & in_g)
    for (i in which(in_g & matched)) {
      w[i] <- if (treat[i] == 1) 1 else (m_c / m_t) * (n_t[[s[i]]] / n_c[[s[i]]])
    }
  }
  unname(w)
}

# The cem package's default L1 breaks and its L1 formula (cem::imbalance:
# cut(include.lowest = TRUE) on pretty(range(x), nclass.scott(x), 1) bins,
# factors as they are, rows with weight <= 0 dropped, weights normalised
# within group, L1 = sum over cells of (max - min) / 2).
ref_l1 <- function(treat, vars, w = rep(1, length(treat)), breaks = NULL) {
  binned <- lapply(names(vars), function(v) {
    x <- vars[[v]]
    if (is.numeric(x)) {
      b <- breaks[[v]]
      if (is.null(b)) {
        b <- pretty(range(x, na.rm = TRUE), n = nclass.scott(na.omit(x)), 1)
      }
      cut(x, b, include.lowest = TRUE, labels = FALSE)
    } else {
      as.character(x)
    }
  })
  keep <- w > 0
  cell <- do.call(paste, c(lapply(binned, function(x) paste0("<", x, ">")[keep]),
                           sep = "\r"))
  tr <- treat[keep]
  wk <- w[keep]
  f <- tapply(wk * (tr == 1), cell, sum) / sum(wk[tr == 1])
  g <- tapply(wk * (tr == 0), cell, sum) / sum(wk[tr == 0])
  both <- tapply(tr == 1, cell, any) & tapply(tr == 0, cell, any)
  list(L1 = sum(abs(f - g)) / 2, LCS = 100 * mean(both),
       n_cells = length(f))
}

# A synthetic child-level data set with continuous, integer, categorical and
# exact variables.
make_children <- function(n, seed) {
  set.seed(seed)
  data.frame(
    treated = rbinom(n, 1, 0.35),
    x = rnorm(n),
    u = runif(n, 0, 10),
    age = sample(0:12, n, replace = TRUE),
    sex = factor(sample(c("f", "m", "u"), n, replace = TRUE, prob = c(.48, .48, .04))),
    eth = sample(c("White", "Mixed", "Asian", "Black", "Other"), n, replace = TRUE),
    pair = sample(c("P1", "P2", "P3"), n, replace = TRUE),
    fin_year = sample(c("2019/20", "2020/21", "2021/22"), n, replace = TRUE),
    stringsAsFactors = FALSE
  )
}

# ---- hand-made cases (derived on paper) --------------------------------------

test_that("two matched strata and one unmatched: weights by hand", {
  # Stratum A (x = 1): 1 treated, 2 controls; B (x = 2): 2 treated, 1
  # control; C (x = 3): 1 treated only. m_T = 3, m_C = 3, so m_C/m_T = 1.
  # Controls in A: 1 * (1/2) = 0.5; control in B: 1 * (2/1) = 2; the treated
  # unit in C is unmatched: 0. Control weights sum to 0.5 + 0.5 + 2 = 3 = m_C.
  d <- data.frame(treated = c(1, 0, 0, 1, 1, 0, 1),
                  x = factor(c("A", "A", "A", "B", "B", "B", "C")))
  m <- cem(treated ~ x, d)
  expect_equal(m$weights, c(1, 0.5, 0.5, 1, 1, 2, 0))
  expect_equal(m$matched, c(rep(TRUE, 6), FALSE))
  expect_identical(m$stratum, c(1L, 1L, 1L, 2L, 2L, 2L, 3L))
  expect_equal(unname(m$n["Matched", ]), c(3L, 3L))
  expect_equal(unname(m$n["Unmatched", ]), c(0L, 1L))
  expect_equal(m$strata$control_weight, c(0.5, 2, NA))
  expect_equal(weights(m), m$weights)
  expect_equal(nobs(m), 7L)
})

test_that("global and within-exact-group normalisation by hand", {
  # Group g1 holds stratum A (1 treated, 1 control); group g2 holds stratum B
  # (1 treated, 3 controls). Global: m_T = 2, m_C = 4, so A's control weighs
  # (4/2)(1/1) = 2 and B's controls (4/2)(1/3) = 2/3. Within group: g1 has
  # m_T = m_C = 1, weight 1; g2 has m_T = 1, m_C = 3, weight (3/1)(1/3) = 1.
  d <- data.frame(treated = c(1, 0, 1, 0, 0, 0),
                  x = 1, g = c("g1", "g1", "g2", "g2", "g2", "g2"))
  m <- cem(treated ~ x, d, exact = "g")
  expect_equal(m$weights, c(1, 2, 1, 2 / 3, 2 / 3, 2 / 3))
  m2 <- cem(treated ~ x, d, exact = ~ g, normalise = "exact_group")
  expect_equal(m2$weights, c(1, 1, 1, 1, 1, 1))
  expect_equal(m2$by_exact$matched_control, c(1L, 3L))
  expect_equal(m2$by_exact$share_treated_matched, c(1, 1))
})

test_that("L1 and LCS by hand", {
  # Treated: cell a twice, cell b twice -> f = (1/2, 1/2, 0).
  # Controls: a once, b twice, c once -> g = (1/4, 1/2, 1/4).
  # L1 = (1/4 + 0 + 1/4) / 2 = 1/4; cells a and b hold both groups out of 3
  # occupied cells, so LCS = 200/3 %.
  d <- data.frame(treated = c(1, 1, 1, 1, 0, 0, 0, 0),
                  z = c("a", "a", "b", "b", "a", "b", "b", "c"))
  im <- imbalance(treated ~ z, d)
  expect_equal(im$L1, 1 / 4)
  expect_equal(im$LCS, 200 / 3)
  expect_identical(im$n_cells, 3L)
  expect_true(is.na(im$share_treated_matched))
  # Weight 2 on the control in cell c and 0 on one control in b: controls
  # a: 1, b: 1, c: 2 -> g = (1/4, 1/4, 1/2); L1 = (1/4 + 1/4 + 1/2) / 2 = 1/2.
  w <- c(1, 1, 1, 1, 1, 1, 0, 2)
  im2 <- imbalance(treated ~ z, d, weights = w)
  expect_equal(im2$L1, 1 / 2)
  expect_equal(im2$share_treated_matched, 1)
  expect_equal(im2$means$difference[im2$means$term == "z: c"], 0 - 1 / 2)
  # Identical distributions give 0, disjoint ones give 1.
  d2 <- data.frame(treated = c(1, 0, 1, 0), z = c("a", "a", "b", "b"))
  expect_equal(imbalance(treated ~ z, d2)$L1, 0)
  d3 <- data.frame(treated = c(1, 1, 0, 0), z = c("a", "a", "b", "b"))
  expect_equal(imbalance(treated ~ z, d3)$L1, 1)
})

test_that("cutpoints follow cut(include.lowest = TRUE): ties go left", {
  # c(0, 3, 12): bins [0, 3] and (3, 12]; 0 and 3 share a bin, 4 and 12 too.
  d <- data.frame(treated = c(1, 0, 1, 0), age = c(0L, 3L, 4L, 12L))
  m <- cem(treated ~ age, d, cutpoints = list(age = c(0, 3, 12)))
  expect_equal(m$weights, c(1, 1, 1, 1))
  expect_identical(m$stratum, c(1L, 1L, 2L, 2L))
  expect_equal(attr(m$coarsening, "breaks")$age, c(0, 3, 12))
})

# ---- against the plain-R reference ------------------------------------------

test_that("weights and strata equal the plain-R reference", {
  d <- make_children(3000, 11)
  d$x[sample(3000, 40)] <- NA            # NA is a value of its own
  d$eth[sample(3000, 30)] <- NA
  d$flag <- sample(c(TRUE, FALSE, NA), 3000, replace = TRUE)
  cp <- list(x = c(-4, -1, -0.3, 0.3, 1, 4), age = c(0, 3, 7, 12))
  m <- cem(treated ~ x + age + sex + eth + flag, d, cutpoints = cp,
           exact = c("pair", "fin_year"))
  keys <- data.frame(
    x = cut(d$x, cp$x, include.lowest = TRUE, labels = FALSE),
    age = cut(d$age, cp$age, include.lowest = TRUE, labels = FALSE),
    sex = d$sex, eth = d$eth, flag = d$flag, pair = d$pair, fy = d$fin_year)
  st <- ref_strata(keys)
  expect_identical(m$stratum, st)
  expect_equal(m$weights, ref_weights(st, d$treated), tolerance = 1e-12)
  grp <- ref_strata(keys[c("pair", "fy")])
  expect_identical(m$exact_group, grp)
  m2 <- update(m, normalise = "exact_group")
  expect_equal(m2$weights, ref_weights(st, d$treated, grp), tolerance = 1e-12)
  # Within-group normalisation: control weights sum to matched controls per
  # group; global: over all groups.
  ctrl <- d$treated == 0
  expect_equal(unname(tapply(m2$weights[ctrl], grp[ctrl], sum)),
               unname(tapply(m2$matched[ctrl], grp[ctrl], sum)))
  expect_equal(sum(m$weights[ctrl]), sum(m$matched[ctrl]))
  # The strata table's control weight is the rows' weight.
  mc <- ctrl & m2$matched
  expect_equal(m2$strata$control_weight[m2$stratum[mc]], m2$weights[mc])
  expect_equal(m$strata$control_weight[m$stratum[mc]], m$weights[mc])
  # Counts add up.
  expect_equal(colSums(m$n[c("Matched", "Unmatched"), ]), m$n["All", ])
  expect_equal(sum(m$by_exact$n_treated), sum(d$treated))
  expect_equal(sum(m$strata$n_treated + m$strata$n_control), nrow(d))
})

test_that("binning in C is cut(include.lowest = TRUE) with open ends", {
  # cut(x, b, include.lowest = TRUE) within [b1, bK]; below b1 is 0, above
  # bK is K, NA/NaN is K + 1: findInterval(left.open, rightmost.closed).
  set.seed(18)
  for (K in c(2, 3, 4, 5, 13, 50, 101)) {
    b <- sort(unique(round(runif(K, -5, 5), 1)))
    x <- c(b, b - 1e-9, b + 1e-9, runif(2000, -6, 6), NA, NaN, -Inf, Inf,
           round(runif(1000, -6, 6), 1))
    ref <- findInterval(x, b, left.open = TRUE, rightmost.closed = TRUE)
    ref[is.na(x)] <- length(b) + 1L
    inside <- !is.na(x) & x >= b[1] & x <= b[length(b)]
    expect_identical(ref[inside], cut(x[inside], b, include.lowest = TRUE,
                                      labels = FALSE))
    got <- .Call(ffi_cem_codes, list(x), 2L, list(b))
    expect_identical(got$codes[[1]], ref)
    expect_identical(got$max_code, max(ref))
    expect_identical(got$n_below, sum(ref == 0L))
    expect_identical(got$n_above, sum(ref == length(b)))
    # integers: a lookup table over a short range, value by value otherwise
    xi <- c(as.integer(round(x[is.finite(x)])), NA)
    for (xx in list(xi, c(xi, 10L^9L))) {
      gi <- .Call(ffi_cem_codes, list(xx), 2L, list(b))$codes[[1]]
      ri <- findInterval(xx, b, left.open = TRUE, rightmost.closed = TRUE)
      ri[is.na(xx)] <- length(b) + 1L
      expect_identical(gi, ri)
    }
  }
})

test_that("moments in C match range() and var() over the finite values", {
  set.seed(19)
  xd <- c(rnorm(500, 1e4, 3), NA, NaN, Inf, -Inf)
  xi <- c(sample(-50:2000, 500, replace = TRUE), NA)
  for (x in list(xd, xi, c(TRUE, FALSE, NA, TRUE))) {
    f <- as.double(x[is.finite(x)])
    mom <- .Call(ffi_cem_moments, x)
    expect_equal(mom[1:3], c(length(f), range(f)))
    expect_equal(mom[4], var(f), tolerance = 1e-12)
  }
  expect_equal(.Call(ffi_cem_moments, c(NA, 2)), c(1, 2, 2, NA))
  expect_equal(.Call(ffi_cem_moments, numeric()), c(0, NA, NA, NA))
})

test_that("default Sturges coarsening is the cem package's", {
  # cem: nclass.Sturges(x) equally spaced breakpoints from min to max, then
  # cut(include.lowest = TRUE).
  d <- make_children(1500, 12)
  m <- cem(treated ~ x + u, d)
  B <- nclass.Sturges(d$x)
  keys <- data.frame(
    x = cut(d$x, seq(min(d$x), max(d$x), length.out = B),
            include.lowest = TRUE, labels = FALSE),
    u = cut(d$u, seq(min(d$u), max(d$u), length.out = B),
            include.lowest = TRUE, labels = FALSE))
  st <- ref_strata(keys)
  expect_identical(m$stratum, st)
  expect_equal(m$weights, ref_weights(st, d$treated), tolerance = 1e-12)
  expect_equal(m$coarsening$method, c("sturges", "sturges"))
  # A number of breakpoints and the other rules.
  m5 <- cem(treated ~ x, d, cutpoints = list(x = 5))
  k5 <- cut(d$x, seq(min(d$x), max(d$x), length.out = 5),
            include.lowest = TRUE, labels = FALSE)
  expect_identical(m5$stratum, ref_strata(data.frame(k5)))
  ms <- cem(treated ~ x, d, cutpoints = list(x = "scott"))
  ks <- cut(d$x, seq(min(d$x), max(d$x), length.out = nclass.scott(d$x)),
            include.lowest = TRUE, labels = FALSE)
  expect_identical(ms$stratum, ref_strata(data.frame(ks)))
})

test_that("grouping merges values; other values keep their own", {
  d <- make_children(2000, 13)
  gr <- list(eth = list(c("Asian", "Black"), c("Mixed", "Other")))
  m <- cem(treated ~ eth + sex, d, grouping = gr)
  e2 <- ifelse(d$eth %in% c("Asian", "Black"), "g1",
               ifelse(d$eth %in% c("Mixed", "Other"), "g2", d$eth))
  st <- ref_strata(data.frame(e2, d$sex))
  expect_identical(m$stratum, st)
  expect_equal(m$weights, ref_weights(st, d$treated), tolerance = 1e-12)
  expect_equal(m$coarsening$n_values[1], 3L)
})

test_that("many strata: hashing resolves collisions exactly", {
  set.seed(14)
  n <- 20000
  d <- data.frame(treated = rbinom(n, 1, 0.5),
                  a = sample(1:150, n, replace = TRUE),
                  b = sample(-3:3, n, replace = TRUE),
                  c = sample(c(.Machine$integer.max, -.Machine$integer.max, 0L),
                             n, replace = TRUE))
  d$a <- factor(d$a)
  m <- cem(treated ~ a + b + c, d,
           cutpoints = list(b = c(-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5)))
  st <- ref_strata(d[c("a", "b", "c")])
  expect_identical(m$stratum, st)
  expect_gt(max(st), 2000)
  expect_equal(m$weights, ref_weights(st, d$treated), tolerance = 1e-12)
})

test_that("every grouping path in C gives the reference strata", {
  # The C kernel packs the codes of a row into one 64-bit key when it can:
  # small key spaces are addressed directly, larger ones hashed; when the
  # codes cannot be packed it hashes a mix of them and compares codes.
  set.seed(16)
  n <- 5000
  mk <- function(levels, k) {
    as.data.frame(lapply(seq_len(k), function(j)
      factor(sample(levels, n, replace = TRUE), levels = seq_len(levels))))
  }
  for (shape in list(c(4, 3), c(200, 3), c(1000, 7))) {
    X <- mk(shape[1], shape[2])
    # every row twice (shuffled), so that even 1000^7 cells hold matches
    X <- X[sample(rep(seq_len(n / 2), 2)), , drop = FALSE]
    rownames(X) <- NULL
    d <- cbind(treated = rbinom(n, 1, 0.5), X)
    f <- stats::reformulate(names(X), "treated")
    m <- cem(f, d)
    st <- ref_strata(X)
    expect_identical(m$stratum, st)
    expect_equal(m$weights, ref_weights(st, d$treated), tolerance = 1e-12)
    expect_equal(imbalance(f, d)$L1, ref_l1(d$treated, X)$L1, tolerance = 1e-12)
  }
  # Character, numeric and logical exact variables with missing values.
  d <- make_children(2000, 17)
  d$pair[sample(2000, 50)] <- NA
  d$yr <- sample(c(2019L, 2020L, NA), 2000, replace = TRUE)
  d$flag <- sample(c(TRUE, FALSE, NA), 2000, replace = TRUE)
  m <- cem(treated ~ sex, d, exact = c("pair", "yr", "flag"))
  st <- ref_strata(d[c("sex", "pair", "yr", "flag")])
  expect_identical(m$stratum, st)
  expect_identical(m$exact_group, ref_strata(d[c("pair", "yr", "flag")]))
  expect_equal(m$weights, ref_weights(st, d$treated), tolerance = 1e-12)
  expect_equal(sum(m$by_exact$n_treated + m$by_exact$n_control), 2000L)
})

test_that("L1 equals the plain-R reference of the cem formula", {
  d <- make_children(2500, 15)
  vars <- d[c("x", "u", "age", "sex", "eth")]
  im <- imbalance(treated ~ x + u + age + sex + eth, d)
  ref <- ref_l1(d$treated, vars)
  expect_equal(im$L1, ref$L1, tolerance = 1e-12)
  expect_equal(im$LCS, ref$LCS, tolerance = 1e-12)
  expect_identical(im$n_cells, ref$n_cells)
  expect_equal(im$breaks$x, pretty(range(d$x), nclass.scott(d$x), 1))
  expect_equal(im$breaks$age, pretty(range(d$age), nclass.scott(d$age), 1))
  # Univariate L1 is the same formula on one variable.
  expect_equal(im$univariate$L1[im$univariate$variable == "u"],
               ref_l1(d$treated, d["u"])$L1, tolerance = 1e-12)
  # After CEM: weights from the match, breaks from the full data.
  m <- cem(treated ~ x + age + sex, d,
           cutpoints = list(x = c(-4, -1, 0, 1, 4), age = c(0, 3, 12)))
  ref_b <- ref_l1(d$treated, d[c("x", "age", "sex")])
  # ref_l1() takes the default breaks from all rows, weight 0 or not.
  ref_a <- ref_l1(d$treated, d[c("x", "age", "sex")], w = m$weights)
  expect_equal(m$imbalance$before$L1, ref_b$L1, tolerance = 1e-12)
  expect_equal(m$imbalance$after$L1, ref_a$L1, tolerance = 1e-12)
  expect_equal(imbalance(treated ~ x + age + sex, d, weights = m)$L1,
               ref_a$L1, tolerance = 1e-12)
  # Given breaks are used as they are.
  im_b <- imbalance(treated ~ x, d, breaks = list(x = c(-5, 0, 5)))
  expect_equal(im_b$L1, ref_l1(d$treated, d["x"], breaks = list(x = c(-5, 0, 5)))$L1,
               tolerance = 1e-12)
  # Weighted means.
  ctl <- d$treated == 0 & m$weights > 0
  expect_equal(m$imbalance$after$means$control[1],
               weighted.mean(d$x[ctl], m$weights[ctl]), tolerance = 1e-12)
})

# ---- against MatchIt ---------------------------------------------------------

test_that("weights equal MatchIt's CEM given the same coarsening", {
  skip_if_not_installed("MatchIt")
  # MatchIt bins numeric cutpoints left-closed ([c1, c2), via findInterval)
  # where cut(include.lowest = TRUE) is right-closed; on continuous data no
  # value sits on a cutpoint, so both coarsen identically. On integer data,
  # MatchIt's cutpoints are shifted by 0.5 to give the same bins.
  mi_w <- function(f, d, ...) {
    suppressWarnings(MatchIt::matchit(f, data = d, method = "cem",
                                      estimand = "ATT", k2k = FALSE, ...))$weights
  }
  # 1. continuous covariates with cutpoints, a factor
  d <- make_children(3000, 21)
  cp <- list(x = c(-4, -1, -0.3, 0.3, 1, 4), u = c(0, 2.5, 5, 7.5, 10))
  m <- cem(treated ~ x + u + sex, d, cutpoints = cp)
  expect_equal(m$weights, unname(mi_w(treated ~ x + u + sex, d, cutpoints = cp)),
               tolerance = 1e-12)
  # 2. with exact variables (MatchIt: as factor covariates)
  m <- cem(treated ~ x + u + sex, d, cutpoints = cp, exact = ~ pair + fin_year)
  dd <- transform(d, pair = factor(pair), fin_year = factor(fin_year))
  expect_equal(m$weights,
               unname(mi_w(treated ~ x + u + sex + pair + fin_year, dd,
                           cutpoints = cp)),
               tolerance = 1e-12)
  # 3. integer age, grouping of a factor, exact variables
  d <- make_children(4000, 22)
  d$eth <- factor(d$eth)
  gr <- list(eth = list(c("Asian", "Black"), c("Mixed", "Other")))
  m <- cem(treated ~ age + eth + sex, d, cutpoints = list(age = c(0, 3, 12)),
           grouping = gr, exact = c("pair", "fin_year"))
  dd <- transform(d, pair = factor(pair), fin_year = factor(fin_year))
  expect_equal(m$weights,
               unname(mi_w(treated ~ age + eth + sex + pair + fin_year, dd,
                           cutpoints = list(age = c(0, 3.5)), grouping = gr)),
               tolerance = 1e-12)
  # 4. default Sturges: B breakpoints from min to max (cem) are MatchIt's
  # B - 1 equal bins; continuous data, so no ties at the inner breakpoints.
  d <- make_children(2000, 23)
  m <- cem(treated ~ x + u, d)
  B <- nclass.Sturges(d$x)
  expect_equal(m$weights,
               unname(mi_w(treated ~ x + u, d,
                           cutpoints = list(x = B - 1, u = B - 1))),
               tolerance = 1e-12)
})

# ---- edge cases -----------------------------------------------------------------

test_that("integer and double input, unsorted rows give the same match", {
  d <- make_children(1500, 31)
  cp <- list(age = c(0, 3, 7, 12))
  m_int <- cem(treated ~ age + sex, d, cutpoints = cp, exact = "pair")
  d2 <- d
  d2$age <- as.double(d2$age)
  d2$treated <- as.double(d2$treated)
  m_dbl <- cem(treated ~ age + sex, d2, cutpoints = cp, exact = "pair")
  expect_identical(m_int$weights, m_dbl$weights)
  d3 <- d
  d3$treated <- d3$treated == 1
  expect_identical(cem(treated ~ age + sex, d3, cutpoints = cp,
                       exact = "pair")$weights, m_int$weights)
  o <- sample(nrow(d))
  m_perm <- cem(treated ~ age + sex, d[o, ], cutpoints = cp, exact = "pair")
  expect_equal(m_perm$weights, m_int$weights[o], tolerance = 1e-14)
  expect_equal(m_perm$imbalance$after$L1, m_int$imbalance$after$L1,
               tolerance = 1e-12)
})

test_that("NA, NaN and Inf are kept, never dropped", {
  d <- data.frame(treated = c(1, 0, 1, 0, 1, 0, 1, 0),
                  x = c(NA, NaN, 1, 1, Inf, Inf, -Inf, 2))
  # NA and NaN share a value; Inf lies above the cutpoints (own bin), -Inf
  # below (own bin, no control): rows 1-2 match, 3-4 match, 5-6 match.
  expect_snapshot(m <- cem(treated ~ x, d, cutpoints = list(x = c(0, 1, 2))))
  expect_equal(m$weights, c(1, 1, 1, 1, 1, 1, 0, 0))
  expect_equal(nobs(m), 8L)
  # Default breaks use the finite values; infinite ones get their own bins.
  expect_warning(m2 <- cem(treated ~ x, d), "outside")
  expect_equal(sum(m2$n["All", ]), 8L)
  im <- imbalance(treated ~ x, d)
  expect_true(is.finite(im$L1))
})

test_that("one exact group and a constant variable work", {
  d <- make_children(300, 32)
  d$one <- "P1"
  expect_snapshot(m <- cem(treated ~ sex, d, exact = "one"))
  m0 <- cem(treated ~ sex, d)
  expect_equal(m$weights, m0$weights)
  expect_equal(nrow(m$by_exact), 1L)
  d$k <- 5
  mk <- cem(treated ~ k + sex, d)
  expect_equal(mk$weights, m0$weights)
  # Exact matching only.
  me <- cem(treated ~ 1, d, exact = ~ pair)
  expect_equal(me$weights, ref_weights(match(d$pair, unique(d$pair)), d$treated))
})

test_that("keep_all = TRUE returns the data with the match columns", {
  d <- data.frame(treated = c(1, 0, 0, 1, 1, 0, 1),
                  x = factor(c("A", "A", "A", "B", "B", "B", "C")))
  m <- cem(treated ~ x, d)
  expect_null(m$data)
  m_all <- cem(treated ~ x, d, keep_all = TRUE)
  expect_equal(nrow(m_all$data), 7L)
  expect_equal(m_all$data$cem_weight, c(1, 0.5, 0.5, 1, 1, 2, 0))
  expect_equal(m_all$data$cem_matched, m$matched)
  expect_equal(m_all$data$cem_stratum, m$stratum)
  expect_equal(m_all$data$x, d$x)
})

test_that("fs_coarsening() carries the protocol's coarsening", {
  fs <- fs_coarsening()
  expect_equal(fs$exact, c("pair", "fin_year"))
  expect_equal(fs_coarsening("period")$exact, c("pair", "period"))
  expect_equal(all.vars(fs$formula),
               c("in_treated_la", "gender", "age", "ethnic_group", "disabled", "fsm",
                 "uasc", "n_previous_cpp"))
  set.seed(33)
  n <- 3000
  co <- data.frame(
    in_treated_la = rbinom(n, 1, 0.5),
    gender = factor(sample(c("male", "female", "not recorded"), n, TRUE,
                           prob = c(.49, .49, .02))),
    age = sample(0:12, n, replace = TRUE),
    ethnic_group = ethnic_group(sample(c("WBRI", "MWBC", "AIND", "BAFR", "OOTH"),
                                       n, replace = TRUE)),
    disabled = sample(c(TRUE, FALSE), n, TRUE, prob = c(.1, .9)),
    fsm = rbinom(n, 1, 0.4), uasc = rbinom(n, 1, 0.02),
    n_previous_cpp = rpois(n, 0.3),
    pair = sample(c("P1", "P2"), n, TRUE),
    fin_year = sample(c("2019/20", "2020/21"), n, TRUE))
  m <- cem(fs$formula, co, cutpoints = fs$cutpoints, grouping = fs$grouping,
           exact = fs$exact)
  keys <- data.frame(co$gender, co$age > 3, co$ethnic_group, co$disabled,
                     co$fsm, co$uasc, co$n_previous_cpp >= 1, co$pair,
                     co$fin_year)
  st <- ref_strata(keys)
  expect_identical(m$stratum, st)
  expect_equal(m$weights, ref_weights(st, co$in_treated_la), tolerance = 1e-12)
})

# ---- bad input: clear errors and warnings ------------------------------------

test_that("bad input gives clear errors", {
  d <- make_children(50, 41)
  expect_snapshot(error = TRUE, {
    cem(treated ~ x, transform(d, treated = treated + 1))
    cem(treated ~ x, transform(d, treated = replace(treated, 3, NA)))
    cem(sex ~ x, d)
    cem(treated ~ x, d[0, ])
    cem(treated ~ x, transform(d, treated = 0))
    cem(treated ~ x, transform(d, treated = 1))
    cem(treated ~ x, d, cutpoints = list(x = c(0, 2, 1)))
    cem(treated ~ x, d, cutpoints = list(x = c(0, 1, 1)))
    cem(treated ~ x, d, cutpoints = list(x = "nope"))
    cem(treated ~ x, d, cutpoints = list(x = 2.5))
    cem(treated ~ sex, d, cutpoints = list(sex = c(0, 1)))
    cem(treated ~ x, d, cutpoints = list(age = c(0, 1)))
    cem(treated ~ x, d, cutpoints = list(c(0, 1)))
    cem(treated ~ eth, d, grouping = list(eth = list("Asian", c("Asian", "Black"))))
    cem(treated ~ x, d, cutpoints = list(x = c(0, 1)), grouping = list(x = list(0)))
    cem(treated ~ x, d, exact = c("pair", "region"))
    cem(treated ~ x, d, exact = 3)
    cem(treated ~ x, d, keep_all = NA)
    cem(treated ~ x, as.list(d))
    cem(~ x, d)
    cem(treated ~ nothere, d)
    cem(treated ~ 1, d)
    cem(treated ~ x, transform(d, cem_weight = 1), keep_all = TRUE)
  })
})

test_that("no matches at all is an error with counts", {
  d <- data.frame(treated = c(1, 1, 0, 0), x = c("a", "b", "c", "d"))
  expect_snapshot(error = TRUE, cem(treated ~ x, d))
  d2 <- data.frame(treated = c(1, 0, 1, 0), g = c("p1", "p2", "p1", "p2"), x = 1)
  expect_snapshot(error = TRUE, cem(treated ~ x, d2, exact = "g"))
})

test_that("imbalance() rejects bad weights and breaks", {
  d <- make_children(40, 42)
  m <- cem(treated ~ sex, d)
  expect_snapshot(error = TRUE, {
    imbalance(treated ~ x, d, weights = rep(1, 3))
    imbalance(treated ~ x, d, weights = replace(rep(1, 40), c(2, 5), c(NA, -1)))
    imbalance(treated ~ x, d, weights = 1 - d$treated)
    imbalance(treated ~ x, d[1:30, ], weights = m)
    imbalance(treated ~ x, d, breaks = list(x = c(1, 0)))
  })
})

test_that("print and summary show before and after", {
  d <- data.frame(treated = c(1, 0, 0, 1, 1, 0, 1),
                  x = factor(c("A", "A", "A", "B", "B", "B", "C")),
                  g = c("p", "p", "p", "p", "p", "p", "q"))
  m <- cem(treated ~ x, d, exact = "g")
  expect_snapshot({
    print(m)
    summary(m)
    imbalance(treated ~ x, d, weights = m)
  })
  s <- summary(m)
  expect_equal(s$overall$share_treated_matched, c(1, 3 / 4))
  expect_equal(s$overall$strata, c(3L, 2L))
  gl <- glance.sfp_cem(m)
  expect_equal(gl$matched_treated, 3L)
  expect_equal(gl$L1_after, m$imbalance$after$L1)
})
