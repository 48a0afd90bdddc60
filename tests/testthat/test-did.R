# did_fit(): coefficients against lm()/glm() with dummies, CR1 against
# sandwich, CR2/CR3/Satterthwaite against clubSandwich and a slow plain-R
# reference that forms every n_g x n_g matrix, and hand-made cases.

make_did <- function(n = 240, G = 6, seed = 1) {
  set.seed(seed)
  d <- data.frame(la = sample(letters[seq_len(G)], n, TRUE),
                  year = sample(2015:2018, n, TRUE), stringsAsFactors = FALSE)
  d$treated <- as.integer(d$la %in% letters[1:3] & d$year >= 2017)
  d$x <- rnorm(n)
  d$z <- rpois(n, 3)
  d$w <- runif(n, 0.3, 3)
  d$y <- 0.2 * d$treated + 0.3 * d$x + 0.1 * d$z + as.integer(factor(d$la)) / 4 + rnorm(n)
  d
}

lm_dummies <- function(fml, d, wt) {
  if (wt) lm(fml, d, weights = w) else lm(fml, d)
}

# Slow reference: full dummy design, n_g x n_g matrices, clubSandwich's
# definitions written out (`vignette("methods")`, section 3).
ref_crve <- function(Xf, y, w, cl, type, coefs) {
  w <- if (is.null(w)) rep(1, length(y)) else w
  W <- diag(w)
  M <- solve(crossprod(Xf, W %*% Xf))
  b <- M %*% crossprod(Xf, w * y)
  e <- drop(y - Xf %*% b)
  H <- Xf %*% M %*% t(Xf) %*% W
  IH <- diag(length(y)) - H
  mpow <- function(A, p) {
    ev <- eigen(A, symmetric = TRUE)
    v <- ifelse(ev$values > 1e-12, ev$values^p, 0)
    ev$vectors %*% (v * t(ev$vectors))
  }
  adj <- lapply(split(seq_along(y), cl), function(i) {
    if (type == "CR2") {
      Gg <- if (all(w == 1)) IH[i, i] else (IH %*% t(IH))[i, i]
      mpow(Gg, -1 / 2)
    } else {
      solve(IH[i, i])
    }
  })
  idx <- split(seq_along(y), cl)
  meat <- 0
  for (g in seq_along(idx)) {
    i <- idx[[g]]
    s <- t(Xf[i, , drop = FALSE]) %*% W[i, i] %*% adj[[g]] %*% e[i]
    meat <- meat + s %*% t(s)
  }
  V <- M %*% meat %*% M
  dimnames(V) <- list(colnames(Xf), colnames(Xf))
  # Satterthwaite (unweighted or weighted, clubSandwich's P with target I)
  df <- sapply(coefs, function(cn) {
    cvec <- as.numeric(colnames(Xf) == cn)
    P <- matrix(0, length(idx), length(idx))
    q <- lapply(seq_along(idx), function(g) {
      i <- idx[[g]]
      pg <- numeric(length(y))
      pg[i] <- adj[[g]] %*% W[i, i] %*% Xf[i, , drop = FALSE] %*% M %*% cvec
      pg
    })
    U <- Xf
    MU <- M
    Om <- MU %*% crossprod(U, W %*% W %*% U) %*% MU
    for (g in seq_along(idx)) for (h in seq_along(idx)) {
      pg <- q[[g]]
      ph <- q[[h]]
      P[g, h] <- (g == h) * sum(pg^2) + drop(t(pg) %*% U %*% Om %*% t(U) %*% ph) -
        drop(t(pg) %*% U %*% MU %*% t(U) %*% W %*% ph) -
        drop(t(pg) %*% W %*% U %*% MU %*% t(U) %*% ph)
    }
    sum(diag(P))^2 / sum(P^2)
  })
  list(V = V[coefs, coefs], df = df, coef = drop(b)[match(coefs, colnames(Xf))])
}

test_that("coefficients equal lm() with dummies (one, two and no fixed effects)", {
  d <- make_did()
  for (wt in c(FALSE, TRUE)) {
    W <- if (wt) d$w else NULL
    f2 <- did_fit(y ~ treated + x + z | la + year, d, cluster = ~la, weights = W, vcov = "CR1")
    m2 <- lm_dummies(y ~ factor(la) + factor(year) + treated + x + z, d, wt)
    expect_equal(coef(f2), coef(m2)[c("treated", "x", "z")], tolerance = 1e-10)
    f1 <- did_fit(y ~ treated + x | la, d, cluster = "la", weights = W, vcov = "CR1")
    m1 <- lm_dummies(y ~ factor(la) + treated + x, d, wt)
    expect_equal(coef(f1), coef(m1)[c("treated", "x")], tolerance = 1e-10)
    f0 <- did_fit(y ~ treated + x, d, cluster = ~la, weights = W, vcov = "CR1")
    m0 <- lm_dummies(y ~ treated + x, d, wt)
    expect_equal(coef(f0), coef(m0), tolerance = 1e-10)
    expect_equal(nobs(f2), nrow(d))
  }
})

test_that("CR1 equals sandwich::vcovCL(type = 'HC1') on the lm with dummies", {
  skip_if_not_installed("sandwich")
  d <- make_did()
  for (wt in c(FALSE, TRUE)) {
    W <- if (wt) d$w else NULL
    f <- did_fit(y ~ treated + x + z | la + year, d, cluster = ~la, weights = W, vcov = "CR1")
    m <- lm_dummies(y ~ factor(la) + factor(year) + treated + x + z, d, wt)
    V <- sandwich::vcovCL(m, cluster = ~la, type = "HC1")
    expect_equal(vcov(f), V[names(coef(f)), names(coef(f))], tolerance = 1e-10)
    expect_equal(unname(f$df), rep(5, 3))
    f0 <- update(f, vcov = "CR0")
    V0 <- sandwich::vcovCL(m, cluster = ~la, type = "HC0", cadjust = FALSE)
    expect_equal(vcov(f0), V0[names(coef(f)), names(coef(f))], tolerance = 1e-10)
  }
})

test_that("CR2, CR3 and Satterthwaite df equal clubSandwich (with and without weights)", {
  skip_if_not_installed("clubSandwich")
  d <- make_did()
  cases <- list(
    list(f = y ~ treated + x + z | la + year, lmf = y ~ factor(la) + factor(year) + treated + x + z, cr3 = FALSE),
    list(f = y ~ treated + x + z | year, lmf = y ~ factor(year) + treated + x + z, cr3 = TRUE),
    list(f = y ~ treated + x + z, lmf = y ~ treated + x + z, cr3 = TRUE)
  )
  for (wt in c(FALSE, TRUE)) for (cs in cases) {
    W <- if (wt) d$w else NULL
    m <- lm_dummies(cs$lmf, d, wt)
    f <- did_fit(cs$f, d, cluster = ~la, weights = W, vcov = "CR2")
    nm <- names(coef(f))
    V2 <- clubSandwich::vcovCR(m, cluster = d$la, type = "CR2")
    expect_equal(vcov(f), as.matrix(V2)[nm, nm], tolerance = 1e-8)
    ct <- clubSandwich::coef_test(m, vcov = V2, test = "Satterthwaite")
    expect_equal(unname(f$df), ct[nm, "df_Satt"], tolerance = 1e-8)
    if (cs$cr3) {
      V3 <- clubSandwich::vcovCR(m, cluster = d$la, type = "CR3")
      expect_equal(vcov(update(f, vcov = "CR3")), as.matrix(V3)[nm, nm], tolerance = 1e-8)
    }
  }
})

test_that("CR2, CR3 and df equal the slow plain-R reference", {
  d <- make_did(n = 120, G = 5, seed = 7)
  for (wt in c(FALSE, TRUE)) {
    W <- if (wt) d$w else NULL
    Xf <- model.matrix(~ factor(la) + factor(year) + treated + x, d)
    for (type in c("CR2", "CR3")) {
      f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, weights = W, vcov = type)
      if (type == "CR3") {
        # I - H_gg is singular (LA effects nested in LA clusters): CR3 is then
        # the leave-one-cluster-out jackknife sum_g (b_(g) - b)(b_(g) - b)'.
        b <- coef(f)
        jk <- Reduce(`+`, lapply(unique(d$la), function(g) {
          dd <- d[d$la != g, ]
          bg <- coef(lm_dummies(y ~ factor(la) + factor(year) + treated + x, dd, wt))[names(b)]
          tcrossprod(bg - b)
        }))
        expect_equal(unname(vcov(f)), unname(jk), tolerance = 1e-8)
      } else {
        ref <- ref_crve(Xf, d$y, W, d$la, type, c("treated", "x"))
        expect_equal(unname(vcov(f)), unname(ref$V), tolerance = 1e-8)
        expect_equal(unname(f$df), unname(ref$df), tolerance = 1e-8)
      }
    }
  }
})

test_that("hand-made 4-row case: CR0/CR1/CR2/CR3 variances and df derived on paper", {
  # Clusters A = rows 1-2, B = rows 3-4; treated = (0,1,0,1); y = (0,2,1,1).
  # OLS: intercept 0.5, treated 1; residuals (-.5,.5,.5,-.5).
  # (X'X)^{-1} = [[.5,-.5],[-.5,1]]; cluster scores (0,.5) and (0,-.5):
  # var_CR0(treated) = .5 * 1^2 = .5; CR1 factor 2/1 * 3/2 = 3 -> 1.5.
  # H_ij = .5 when rows share the treatment value, so H_AA = .5 I:
  # CR2 adjusts by sqrt(2) (var 1), CR3 by 2 (var 2). Satterthwaite:
  # p_A = p_B = sqrt(2)(-.5,.5), P = [[.5,-.5],[-.5,.5]] -> df = 1^2/1 = 1.
  d <- data.frame(g = c("A", "A", "B", "B"), treated = c(0, 1, 0, 1), y = c(0, 2, 1, 1))
  f <- did_fit(y ~ treated, d, cluster = ~g, vcov = "CR0")
  expect_equal(unname(coef(f)["treated"]), 1)
  expect_equal(vcov(f)["treated", "treated"], 0.5)
  expect_equal(vcov(update(f, vcov = "CR1"))["treated", "treated"], 1.5)
  f2 <- update(f, vcov = "CR2")
  expect_equal(vcov(f2)["treated", "treated"], 1)
  expect_equal(unname(f2$df["treated"]), 1)
  expect_equal(vcov(update(f, vcov = "CR3"))["treated", "treated"], 2)
})

test_that("input handling: integer vs double, unsorted rows, NA rows counted, one FE exact", {
  d <- make_did()
  f <- did_fit(y ~ treated + x + z | la + year, d, cluster = ~la)
  d2 <- d
  d2$z <- as.double(d2$z)
  d2$treated <- as.double(d2$treated)
  expect_equal(coef(did_fit(y ~ treated + x + z | la + year, d2, cluster = ~la)), coef(f))
  set.seed(9)
  d3 <- d[sample(nrow(d)), ]
  f3 <- did_fit(y ~ treated + x + z | la + year, d3, cluster = ~la)
  expect_equal(coef(f3), coef(f), tolerance = 1e-10)
  expect_equal(vcov(f3), vcov(f), tolerance = 1e-10)
  expect_equal(f3$df, f$df, tolerance = 1e-10)
  d4 <- d
  d4$x[c(3, 10)] <- NA
  d4$y[5] <- NA
  expect_snapshot(f4 <- did_fit(y ~ treated + x + z | la + year, d4, cluster = ~la))
  expect_equal(nobs(f4), nrow(d) - 3)
  expect_equal(f4$exclusions$n, 3)
  expect_equal(coef(f4), coef(lm(y ~ factor(la) + factor(year) + treated + x + z, d4))[names(coef(f4))],
               tolerance = 1e-10)
  # zero weights are exclusions, counted
  d5 <- d
  d5$w[1:4] <- 0
  expect_snapshot(f5 <- did_fit(y ~ treated + x | la + year, d5, cluster = ~la, weights = "w"))
  expect_equal(nobs(f5), nrow(d) - 4)
})

test_that("ties in the outcome and covariates, and a cluster of size one, are fine", {
  d <- make_did(n = 100, G = 5)
  d$y <- round(d$y)
  d$x <- round(d$x)
  d <- rbind(d, transform(d[1, ], la = "solo"))
  f <- did_fit(y ~ treated + x | year, d, cluster = ~la, vcov = "CR2")
  m <- lm(y ~ factor(year) + treated + x, d)
  skip_if_not_installed("clubSandwich")
  V <- clubSandwich::vcovCR(m, cluster = d$la, type = "CR2")
  expect_equal(vcov(f), as.matrix(V)[names(coef(f)), names(coef(f))], tolerance = 1e-8)
  expect_true(all(is.finite(f$df)))
})

test_that("collinear covariates are dropped with a message naming them", {
  d <- make_did()
  d$x2 <- 2 * d$x
  d$la_size <- as.integer(factor(d$la)) * 10     # constant within LA: absorbed
  expect_snapshot(f <- did_fit(y ~ treated + x + x2 + la_size | la + year, d, cluster = ~la))
  expect_equal(names(coef(f)), c("treated", "x"))
  expect_setequal(f$dropped, c("x2", "la_size"))
  m <- lm(y ~ factor(la) + factor(year) + treated + x, d)
  expect_equal(coef(f), coef(m)[c("treated", "x")], tolerance = 1e-10)
})

test_that("a treatment collinear with the intercept is an error, not a dropped covariate", {
  d <- make_did()
  d$all_treated <- 1L
  expect_snapshot(error = TRUE, did_fit(y ~ all_treated + x, d, cluster = ~la))
  d$twice <- 2L
  d$yb <- as.integer(d$y > median(d$y))
  expect_error(did_fit(yb ~ twice + x, d, cluster = ~la, family = "binomial"), "`twice`")
})

test_that("bad input gives clear errors (snapshots)", {
  d <- make_did()
  expect_snapshot(error = TRUE, did_fit(y ~ treated + x | la, d[d$la == "a", ], cluster = ~la))
  d$la_treated <- as.integer(d$la %in% c("a", "b"))
  expect_snapshot(error = TRUE, did_fit(y ~ la_treated + x | la + year, d, cluster = ~la))
  dw <- d
  dw$w[c(2, 7)] <- -1
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, dw, cluster = ~la, weights = "w"))
  dw$w[c(2, 7)] <- NA
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, dw, cluster = ~la, weights = "w"))
  di <- d
  di$x[4] <- Inf
  expect_snapshot(error = TRUE, did_fit(y ~ treated + x | la, di, cluster = ~la))
  di$y[6] <- NaN
  di$x[4] <- 0
  expect_snapshot(error = TRUE, did_fit(y ~ treated + x | la, di, cluster = ~la))
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, d, cluster = ~nonexistent))
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, d, cluster = "nope"))
  expect_snapshot(error = TRUE, did_fit(~ treated, d, cluster = ~la))
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, d, cluster = ~la, vcov = "HC3"))
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, d, cluster = ~la, family = "poisson"))
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, d[0, ], cluster = ~la))
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, d, cluster = ~la, family = "binomial"))
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, d, cluster = ~la, bogus = 1))
  expect_snapshot(error = TRUE, did_fit(y ~ treated | la, "not a data frame", cluster = ~la))
})

test_that("family = 'auto' follows the protocol's 5%-95% baseline-rate rule", {
  set.seed(5)
  d <- make_did(n = 600)
  d$b_common <- rbinom(nrow(d), 1, 0.3)
  d$b_rare <- rbinom(nrow(d), 1, 0.12)
  d$b_rare[d$treated == 0] <- 0
  d$b_rare[which(d$treated == 0)[seq(1, 400, by = 25)]] <- 1      # 16 of the untreated rows
  expect_message(fa <- did_fit(b_common ~ treated + x | la + year, d, cluster = ~la), "gaussian")
  expect_equal(fa$family, "gaussian")
  rate <- mean(d$b_rare[d$treated == 0])
  expect_lt(rate, 0.05)
  expect_message(fr <- did_fit(b_rare ~ treated + x | year, d, cluster = ~la, vcov = "CR1"), "binomial")
  expect_equal(fr$family, "binomial")
  expect_equal(fr$family_rule$baseline_rate, rate)
  # the baseline can be overridden
  expect_message(fo <- did_fit(b_common ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1",
                               baseline = 0.01), "binomial")
  expect_equal(fo$family, "binomial")
})

test_that("binomial fit equals glm() with dummies and vcovCL(HC1)", {
  skip_if_not_installed("sandwich")
  set.seed(4)
  n <- 600
  d <- data.frame(la = sample(letters[1:6], n, TRUE), year = sample(2015:2018, n, TRUE))
  d$treated <- as.integer(d$la %in% c("a", "b", "c") & d$year >= 2017)
  d$x <- rnorm(n)
  d$y <- rbinom(n, 1, plogis(-2 + 0.4 * d$treated + 0.5 * d$x + as.integer(factor(d$la)) / 6))
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "binomial", vcov = "CR1")
  g0 <- glm(y ~ treated + x + factor(la) + factor(year), binomial, d, control = glm.control(epsilon = 1e-14))
  # one more IRLS pass from the optimum so that glm's stored working weights
  # are evaluated at the converged coefficients
  g <- glm(y ~ treated + x + factor(la) + factor(year), binomial, d, start = coef(g0),
           control = glm.control(epsilon = 1e-14))
  nm <- names(coef(f))
  expect_equal(coef(f), coef(g)[nm], tolerance = 1e-10)
  V <- sandwich::vcovCL(g, cluster = ~la, type = "HC1")
  expect_equal(vcov(f), V[nm, nm], tolerance = 1e-8)
  # plain-R score sandwich
  X <- model.matrix(g)
  s <- rowsum(X * (d$y - fitted(g)), d$la)
  M <- solve(crossprod(X, (fitted(g) * (1 - fitted(g))) * X))
  Vr <- 6 / 5 * (n - 1) / (n - ncol(X)) * M %*% crossprod(s) %*% M
  expect_equal(unname(vcov(f)), unname(Vr[nm, nm]), tolerance = 1e-8)
})

test_that("a failed fixed-effect absorption inside the logit warns once and is not 'converged'", {
  set.seed(6)
  d <- make_did(n = 300)
  d$yb <- rbinom(nrow(d), 1, plogis(-1 + 0.5 * d$x))
  warns <- character(0)
  f <- withCallingHandlers(
    suppressMessages(did_fit(yb ~ treated + x | la + year, d, cluster = ~la, family = "binomial",
                             maxit = 1L, tol = 1e-14)),
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  expect_false(f$convergence$converged)
  expect_match(f$convergence$message, "fixed-effect absorption", fixed = TRUE)
  nc <- grep("did not converge", warns, value = TRUE)
  expect_length(nc, 1L)
  expect_match(nc, "maxit", fixed = TRUE)
})

test_that("perfect separation in the logit is an error", {
  set.seed(6)
  d <- make_did(n = 300)
  d$yb <- rbinom(nrow(d), 1, 0.3)
  d$yb[d$la == "f"] <- 0
  expect_snapshot(error = TRUE, did_fit(yb ~ treated + x | la + year, d, cluster = ~la, family = "binomial"))
  d$yb <- as.integer(d$x > 0)
  expect_snapshot(error = TRUE, did_fit(yb ~ treated + x | year, d, cluster = ~la, family = "binomial"))
  # rows are numbered as in `data`, not among the rows left after exclusions
  d$x[1:2] <- NA
  expect_snapshot(error = TRUE, did_fit(yb ~ treated + x | year, d, cluster = ~la, family = "binomial"))
  expect_error(suppressMessages(did_fit(yb ~ treated + x | year, d, cluster = ~la, family = "binomial")),
               "(rows 3, 4, 5, 6, 7 and 291 more)", fixed = TRUE)
  # a fit that did not converge with large linear predictors but no fitted
  # probability within 1e-10 of 0 or 1 says so (not "0 rows ... ()")
  r <- list(mu = c(0.2, 0.5, 0.9, 0.7), eta = c(-16, 0, 16, 0.8),
            convergence = optim_status(FALSE, 100L, "iteration limit reached"))
  expect_snapshot(error = TRUE, check_logit_separation(r, c(3L, 5L, 8L, 9L), "yb"))
  r$convergence <- optim_status(TRUE, 12L, "converged")
  expect_null(check_logit_separation(r, c(3L, 5L, 8L, 9L), "yb"))
})

test_that("conditional logit equals survival::clogit (Breslow) incl. robust variance", {
  skip_if_not_installed("survival")
  set.seed(8)
  n <- 500
  d <- data.frame(la = sample(letters[1:6], n, TRUE), year = sample(2015:2018, n, TRUE))
  d$treated <- as.integer(d$la %in% c("a", "b", "c") & d$year >= 2017)
  d$x <- rnorm(n)
  d$y <- rbinom(n, 1, plogis(-1 + 0.4 * d$treated + 0.5 * d$x))
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "conditional_logit", vcov = "CR0")
  # clogit(method = "approximate") is coxph with constant times and Breslow ties.
  # coxph() recognises a stratum term only when it is written `strata(...)`:
  # `survival::strata(la)` would enter as LA dummies (an unconditional Cox
  # model whose profile likelihood happens to be the same), not as strata.
  strata <- survival::strata
  cl <- survival::coxph(survival::Surv(rep(1, n), y) ~ treated + x + factor(year) + strata(la),
                        d, ties = "breslow", cluster = la)
  # stratified: treated, x and 3 year effects, no LA coefficient
  expect_false(is.null(attr(cl$terms, "specials")$strata))
  expect_length(coef(cl), 5L)
  nm <- names(coef(f))
  expect_equal(coef(f), coef(cl)[nm], tolerance = 1e-8)
  expect_equal(f$vcov_model, cl$naive.var[1:2, 1:2], tolerance = 1e-8, ignore_attr = TRUE)
  expect_equal(unname(vcov(f)), unname(vcov(cl)[1:2, 1:2]), tolerance = 1e-8)
})

test_that("update() switches the variance without refitting; methods work", {
  d <- make_did()
  f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la)
  f1 <- update(f, vcov = "CR1")
  expect_equal(vcov(f1), vcov(did_fit(y ~ treated + x | la + year, d, cluster = ~la, vcov = "CR1")))
  expect_identical(f1$X, f$X)
  ci <- confint(f1, level = 0.9)
  q <- qt(0.95, 5)
  se <- sqrt(diag(vcov(f1)))
  expect_equal(unname(ci[, 1]), unname(coef(f1) - q * se))
  td <- tidy.did_fit(f)
  expect_equal(td$estimate, unname(coef(f)))
  expect_equal(td$p.value, 2 * pt(abs(td$statistic), f$df, lower.tail = FALSE))
  expect_equal(glance.did_fit(f)$n_clusters, 6)
  expect_output(print(f), "CR2")
  expect_output(print(summary(f)), "Satterthwaite")
  f2 <- update(f, formula = y ~ treated | la + year)
  expect_equal(names(coef(f2)), "treated")
})

test_that("alternating projections reach the exact two-way solution on unbalanced data", {
  set.seed(11)
  n <- 400
  d <- data.frame(a = sample(1:15, n, TRUE), b = sample(1:9, n, TRUE), cl = sample(1:8, n, TRUE))
  d$treated <- rbinom(n, 1, 0.4)
  d$y <- d$treated + d$a / 3 - d$b / 5 + rnorm(n)
  f <- did_fit(y ~ treated | a + b, d, cluster = ~cl, vcov = "CR1")
  m <- lm(y ~ factor(a) + factor(b) + treated, d)
  expect_equal(unname(coef(f)), unname(coef(m)["treated"]), tolerance = 1e-9)
  V <- sandwich::vcovCL(m, cluster = ~cl, type = "HC1")
  expect_equal(unname(vcov(f))[1, 1], V["treated", "treated"], tolerance = 1e-8)
})

# ---- numerically sound at any scale (#16) ----

# Nearly collinear covariates: x2 = x1 + eps * noise, so that the condition
# number of (x1, x2) is about 1 / eps.
make_illcond <- function(eps, n = 1500, seed = 21) {
  set.seed(seed)
  d <- data.frame(la = sample(letters[1:8], n, TRUE), year = sample(2015:2020, n, TRUE))
  d$treated <- as.integer(d$la %in% letters[1:4] & d$year >= 2018)
  d$x1 <- rnorm(n, 5)
  d$x2 <- d$x1 + eps * rnorm(n)
  d$x3 <- rnorm(n)
  d$w <- runif(n, 0.2, 4)
  d$y <- 0.2 * d$treated + d$x1 - 0.5 * d$x2 + 0.3 * d$x3 + as.integer(factor(d$la)) / 5 + rnorm(n)
  d
}

test_that("least squares from the QR equals lm() to 1e-8 on ill-conditioned covariates", {
  # Reference: the same model on the well-conditioned parametrisation
  # (x1, dd = x2 - x1, exact in floating point by Sterbenz's lemma), mapped
  # back by b_x1 = c_x1 - c_dd, b_x2 = c_dd (and V = A V_c A'). Least
  # squares itself is sensitive to kappa^2 * eps (about 1e-4 at kappa = 1e6)
  # when the residuals are not small, so the two exact-arithmetic-equal
  # answers can differ by more than lm()'s 1e-8; clubSandwich's CR2 on the
  # ill-conditioned lm() itself is off by up to 50% here.
  nm <- c("treated", "x1", "x2", "x3")
  A <- diag(4)
  A[2, 3] <- -1
  for (eps in c(1e-5, 1e-6)) {
    d <- make_illcond(eps)
    d$dd <- d$x2 - d$x1
    expect_gt(kappa(scale(cbind(d$x1, d$x2)), exact = TRUE), 0.1 / eps)
    for (wt in c(FALSE, TRUE)) {
      W <- if (wt) d$w else NULL
      cases <- list(
        list(f = y ~ treated + x1 + x2 + x3, m = y ~ treated + x1 + x2 + x3, r = y ~ treated + x1 + dd + x3),
        list(f = y ~ treated + x1 + x2 + x3 | la, m = y ~ factor(la) + treated + x1 + x2 + x3,
             r = y ~ factor(la) + treated + x1 + dd + x3),
        list(f = y ~ treated + x1 + x2 + x3 | la + year,
             m = y ~ factor(la) + factor(year) + treated + x1 + x2 + x3,
             r = y ~ factor(la) + factor(year) + treated + x1 + dd + x3))
      for (cs in cases) {
        fit <- did_fit(cs$f, d, cluster = ~la, weights = W, vcov = "CR1")
        m <- lm_dummies(cs$m, d, wt)
        expect_false(anyNA(coef(m)))                   # lm() keeps every column
        expect_equal(coef(fit)[nm], coef(m)[nm], tolerance = 1e-8)
        r <- lm_dummies(cs$r, d, wt)
        rn <- c("treated", "x1", "dd", "x3")
        expect_equal(unname(coef(fit)[nm]), drop(A %*% coef(r)[rn]), tolerance = 1e-7)
        Vr <- A %*% sandwich::vcovCL(r, cluster = ~la, type = "HC1")[rn, rn] %*% t(A)
        expect_equal(unname(vcov(fit)[nm, nm]), Vr, tolerance = 1e-7)
      }
      # CR2 (hat blocks from the orthonormal Q = X R^{-1}) against clubSandwich
      # on the well-conditioned parametrisation
      skip_if_not_installed("clubSandwich")
      f2 <- did_fit(y ~ treated + x1 + x2 + x3 | la + year, d, cluster = ~la, weights = W)
      r <- lm_dummies(y ~ factor(la) + factor(year) + treated + x1 + dd + x3, d, wt)
      rn <- c("treated", "x1", "dd", "x3")
      V2 <- A %*% as.matrix(clubSandwich::vcovCR(r, cluster = d$la, type = "CR2"))[rn, rn] %*% t(A)
      expect_equal(unname(diag(vcov(f2))), diag(V2), tolerance = 1e-5)
    }
  }
})

test_that("the bread is (R'R)^{-1} from the QR: plain-R reference and a hand-made case", {
  d <- make_illcond(1e-6)
  X <- cbind(1, d$treated, d$x1, d$x2)
  q <- qr(sqrt(d$w) * X)
  r <- .Call(ffi_wls, X, d$y, d$w, 1e-7)
  expect_equal(r$coef, drop(qr.coef(q, sqrt(d$w) * d$y)), tolerance = 1e-10)
  expect_equal(r$bread, chol2inv(qr.R(q)), tolerance = 1e-10)
  expect_equal(r$resid, drop(d$y - X %*% r$coef), tolerance = 1e-12)
  # hand-made: y = 1 + 2x on x = 0, 1, 2 exactly; X'X = [[3, 3], [3, 5]],
  # (X'X)^{-1} = [[5, -3], [-3, 3]] / 6
  h <- .Call(ffi_wls, cbind(1, c(0, 1, 2)), c(1, 3, 5), NULL, 1e-7)
  expect_equal(h$coef, c(1, 2), tolerance = 1e-14)
  expect_equal(h$bread, matrix(c(5, -3, -3, 3), 2) / 6, tolerance = 1e-14)
  expect_equal(h$resid, c(0, 0, 0), tolerance = 1e-14)
  # a column collinear with those before it is dropped, as by lm()
  h2 <- .Call(ffi_wls, cbind(1, c(0, 1, 2), c(0, 2, 4), c(1, 0, 0)), c(1, 3, 5), NULL, 1e-7)
  expect_identical(h2$keep, c(TRUE, TRUE, FALSE, TRUE))
  expect_true(is.na(h2$coef[3]))
})

test_that("exact collinearity is reported by column name, as lm() drops it", {
  d <- make_illcond(1e-6)
  d$x4 <- d$x1 - d$x3
  expect_message(fit <- did_fit(y ~ treated + x1 + x3 + x4 | la + year, d, cluster = ~la),
                 "dropped 1 covariate.*`x4`")
  expect_identical(fit$dropped, "x4")
  m <- lm(y ~ factor(la) + factor(year) + treated + x1 + x3 + x4, d)
  expect_true(is.na(coef(m)["x4"]))
  expect_equal(coef(fit), coef(m)[c("treated", "x1", "x3")], tolerance = 1e-8)
})

# Two fixed effects connected only along a chain (level a of the first meets
# levels a and a + 1 of the second): plain alternating projections converge
# very slowly here.
make_chain <- function(L = 150, per = 20, seed = 31) {
  set.seed(seed)
  d <- data.frame(a = rep(seq_len(L), each = per))
  d$b <- pmin(d$a + rep(0:1, length.out = nrow(d)), L)
  d$x <- rnorm(nrow(d))
  d$treated <- rbinom(nrow(d), 1, 0.5)
  d$y <- 0.3 * d$treated + d$x + d$a / 10 + sin(d$b) + rnorm(nrow(d))
  d$cl <- (d$a - 1) %/% 10
  d
}

test_that("chain-connected fixed effects (150 levels) equal lm() to 1e-8, with a convergence report", {
  d <- make_chain()
  fit <- did_fit(y ~ treated + x | a + b, d, cluster = ~cl, vcov = "CR1")
  m <- lm(y ~ factor(a) + factor(b) + treated + x, d)
  expect_equal(coef(fit), coef(m)[c("treated", "x")], tolerance = 1e-8)
  expect_true(fit$convergence$converged)
  expect_lt(fit$convergence$iterations, 10000L)
  expect_true(sfpceval:::glance.did_fit(fit)$converged)
  # weighted, and row order does not matter
  d$w <- runif(nrow(d), 0.5, 2)
  o <- sample(nrow(d))
  fw <- did_fit(y ~ treated + x | a + b, d[o, ], cluster = ~cl, weights = ~w, vcov = "CR1")
  mw <- lm(y ~ factor(a) + factor(b) + treated + x, d, weights = w)
  expect_equal(coef(fw), coef(mw)[c("treated", "x")], tolerance = 1e-8)
  # the sweep limit reached: the package's warning, and the report says so
  expect_warning(f1 <- did_fit(y ~ treated + x | a + b, d, cluster = ~cl, vcov = "CR1", maxit = 5),
                 class = "sfpceval_not_converged")
  expect_false(f1$convergence$converged)
  expect_identical(f1$convergence$iterations, 5L)
  expect_false(sfpceval:::glance.did_fit(f1)$converged)
  # three effects: the accelerated projections on the vectors
  d$c3 <- sample(1:7, nrow(d), TRUE)
  f3 <- did_fit(y ~ treated + x | a + b + c3, d, cluster = ~cl, vcov = "CR1")
  m3 <- lm(y ~ factor(a) + factor(b) + factor(c3) + treated + x, d)
  expect_equal(coef(f3), coef(m3)[c("treated", "x")], tolerance = 1e-8)
  expect_true(f3$convergence$converged)
  # one fixed effect is exact: one sweep
  f0 <- did_fit(y ~ treated + x | a, d, cluster = ~cl, vcov = "CR1")
  expect_identical(f0$convergence$iterations, 1L)
})

# ---- logit with the fixed effects absorbed inside IRLS (#16, #13) ----

make_logit <- function(n = 600, G = 6, seed = 4) {
  set.seed(seed)
  d <- data.frame(la = sample(letters[seq_len(G)], n, TRUE), year = sample(2015:2018, n, TRUE))
  d$treated <- as.integer(d$la %in% letters[1:3] & d$year >= 2017)
  d$x <- rnorm(n)
  d$w <- runif(n, 0.5, 2)
  d$y <- rbinom(n, 1, plogis(-1.5 + 0.4 * d$treated + 0.5 * d$x + as.integer(factor(d$la)) / 6))
  d
}

# glm() at its optimum, with the working weights evaluated there
glm_opt <- function(fml, d, wt = FALSE) {
  d$.w <- if (wt) d$w else 1
  g0 <- suppressWarnings(glm(fml, binomial, d, weights = .w, control = glm.control(epsilon = 1e-14)))
  suppressWarnings(glm(fml, binomial, d, weights = .w, start = coef(g0), control = glm.control(epsilon = 1e-14)))
}

test_that("logit with absorbed fixed effects equals glm() with dummies (no, one, two effects; weights)", {
  d <- make_logit()
  for (wt in c(FALSE, TRUE)) {
    W <- if (wt) d$w else NULL
    cases <- list(list(f = y ~ treated + x, m = y ~ treated + x),
                  list(f = y ~ treated + x | la, m = y ~ treated + x + factor(la)),
                  list(f = y ~ treated + x | la + year, m = y ~ treated + x + factor(la) + factor(year)))
    for (cs in cases) {
      f <- did_fit(cs$f, d, cluster = ~la, weights = W, family = "binomial", vcov = "CR1")
      g <- glm_opt(cs$m, d, wt)
      nm <- names(coef(f))
      expect_equal(coef(f), coef(g)[nm], tolerance = 1e-8)
      expect_equal(vcov(f), sandwich::vcovCL(g, cluster = ~la, type = "HC1")[nm, nm], tolerance = 1e-7)
      expect_true(f$convergence$converged)
    }
  }
  # row order and shifting a covariate do not matter
  f1 <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "binomial")
  o <- sample(nrow(d))
  f2 <- did_fit(y ~ treated + x | la + year, d[o, ], cluster = ~la, family = "binomial")
  expect_equal(coef(f1), coef(f2), tolerance = 1e-9)
  expect_equal(vcov(f1), vcov(f2), tolerance = 1e-8)
  d$x <- d$x + 1000
  f3 <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, family = "binomial")
  expect_equal(coef(f1), coef(f3), tolerance = 1e-8)
})

# Plain-R reference for the logit's CR2/CR3: the last IRLS step as a
# regression of the scaled working response on the scaled full dummy design
# (sqrt(w v) X), where the working model is homoskedastic: ref_crve() above,
# unweighted, on that system.
ref_logit_crve <- function(g, d, type, coefs) {
  X <- model.matrix(g)
  mu <- fitted(g)
  wv <- weights(g, type = "working")
  z <- g$linear.predictors + (g$y - mu) / (mu * (1 - mu))
  ref_crve(sqrt(wv) * X, sqrt(wv) * z, NULL, d$la, type, coefs)
}

test_that("logit CR2/CR3 and Satterthwaite df: plain-R reference and clubSandwich", {
  skip_if_not_installed("clubSandwich")
  d <- make_logit()
  for (wt in c(FALSE, TRUE)) {
    W <- if (wt) d$w else NULL
    g <- glm_opt(y ~ treated + x + factor(la) + factor(year), d, wt)
    nm <- c("treated", "x")
    f <- did_fit(y ~ treated + x | la + year, d, cluster = ~la, weights = W, family = "binomial", vcov = "CR2")
    ref <- ref_logit_crve(g, d, "CR2", nm)
    expect_equal(unname(vcov(f)), unname(ref$V), tolerance = 1e-7)
    expect_equal(unname(f$df), unname(ref$df), tolerance = 1e-7)
    # CR3 (I - H_gg invertible: LA not absorbed) equals the reference and
    # clubSandwich's CR3 on the glm
    g3 <- glm_opt(y ~ treated + x + factor(year), d, wt)
    f3 <- did_fit(y ~ treated + x | year, d, cluster = ~la, weights = W, family = "binomial", vcov = "CR3")
    expect_equal(unname(vcov(f3)), unname(ref_logit_crve(g3, d, "CR3", nm)$V), tolerance = 1e-7)
    V3 <- as.matrix(clubSandwich::vcovCR(g3, cluster = d$la, type = "CR3"))[nm, nm]
    expect_equal(unname(vcov(f3)), unname(V3), tolerance = 1e-7)
  }
  # CR2: with working weights constant within clusters (cluster-level
  # covariates only) the symmetric adjustment is clubSandwich's CR2 on the glm,
  # degrees of freedom included
  set.seed(5)
  G <- 12
  e <- data.frame(la = rep(sprintf("la%02d", seq_len(G)), each = 40))
  e$treated <- as.integer(e$la %in% sprintf("la%02d", 1:6))
  e$size <- rep(rnorm(G), each = 40)
  e$y <- rbinom(nrow(e), 1, plogis(-1 + 0.5 * e$treated + 0.3 * e$size))
  f <- did_fit(y ~ treated + size, e, cluster = ~la, family = "binomial", vcov = "CR2")
  g <- glm_opt(y ~ treated + size, e)
  V2 <- clubSandwich::vcovCR(g, cluster = e$la, type = "CR2")
  expect_equal(unname(vcov(f)), unname(as.matrix(V2)), tolerance = 1e-7)
  ct <- clubSandwich::coef_test(g, vcov = V2, test = "Satterthwaite")
  expect_equal(unname(f$df), ct$df_Satt, tolerance = 1e-6)
})

test_that("hand-made logit: two clusters of two rows, CR0 from the score on paper", {
  # y ~ 1: mu = mean(y) = 1/2, score of cluster g = sum_g (y - mu),
  # bread = 1 / (n mu (1 - mu)) = 1; clusters {1, 0}, {1, 0}... use {1, 1}, {0, 0}:
  # scores +1 and -1, so CR0 = 1 * (1 + 1) * 1 = 2 on the intercept.
  d <- data.frame(y = c(1, 1, 0, 0), g = c("a", "a", "b", "b"), treated = c(1, 0, 1, 0))
  expect_warning(f <- did_fit(y ~ treated, d, cluster = ~g, family = "binomial", vcov = "CR0"),
                 "treated clusters")
  expect_equal(unname(coef(f)), c(0, 0), tolerance = 1e-12)
  # bread = (X'VX)^{-1} with V = 1/4: X'X = [[4, 2], [2, 2]] -> X'VX^{-1} = 4 * [[.5, -.5], [-.5, 1]]
  # scores: a: (1/2 + 1/2, 1/2) = (1, .5), b: (-1, -.5)
  M <- 4 * matrix(c(0.5, -0.5, -0.5, 1), 2)
  s <- rbind(c(1, 0.5), c(-1, -0.5))
  expect_equal(unname(vcov(f)), unname(M %*% crossprod(s) %*% M), tolerance = 1e-12)
})

test_that("logit DiD on 1,000,000 rows with 150 LAs + 8 years: fit object < 5x the data", {
  set.seed(1)
  n <- 1e6
  d <- data.frame(la = sample.int(150, n, TRUE), year = sample.int(8, n, TRUE) + 2014L)
  d$treated <- as.integer(d$la <= 5 & d$year >= 2019)
  d$y <- rbinom(n, 1, plogis(-3.5 + 0.2 * d$treated + d$la / 300 + (d$year - 2018) / 20))
  f <- did_fit(y ~ treated | la + year, d, cluster = ~la, family = "binomial", vcov = "CR1")
  expect_lt(as.numeric(object.size(f)), 5 * as.numeric(object.size(d)))
  expect_true(f$convergence$converged)
  expect_true(is.finite(f$vcov[1, 1]) && f$vcov[1, 1] > 0)
  # the same estimate as the fit with LA dummies on the 1,200 LA x year cells
  # (a binomial logit on cell counts is the same likelihood)
  cells <- aggregate(cbind(s = y, n = 1) ~ la + year + treated, d, sum)
  g <- glm(cbind(s, n - s) ~ treated + factor(la) + factor(year), binomial, cells,
           control = glm.control(epsilon = 1e-14))
  expect_equal(unname(coef(f)), unname(coef(g)["treated"]), tolerance = 1e-7)
})

test_that("conditional logit: Newton with step halving reports convergence", {
  skip_if_not_installed("survival")
  set.seed(8)
  n <- 400
  d <- data.frame(la = sample(letters[1:6], n, TRUE), x = rnorm(n))
  d$y <- rbinom(n, 1, plogis(-1 + 2 * d$x))
  s <- as.integer(factor(d$la))
  r <- clogit_newton(d$y, cbind(x = d$x), rep(1, n), s)
  expect_true(r$convergence$converged)
  strata <- survival::strata
  cl <- survival::coxph(survival::Surv(rep(1, n), y) ~ x + strata(la), d, ties = "breslow")
  expect_identical(names(coef(cl)), "x")
  expect_equal(unname(r$coef), unname(coef(cl)), tolerance = 1e-8)
  r1 <- clogit_newton(d$y, cbind(x = d$x), rep(1, n), s, maxit = 1L)
  expect_false(r1$convergence$converged)
  # a far start (b = 8): the full Newton step overshoots; halving keeps the
  # log-likelihood rising and reaches the same optimum
  r8 <- clogit_newton(d$y, cbind(x = d$x), rep(1, n), s, start = 8)
  expect_true(r8$convergence$converged)
  expect_equal(r8$coef, r$coef, tolerance = 1e-8)
})

test_that("event_time() builds the periods-since-go-live dummies", {
  # LA a goes live in year 2: years 1..4 -> periods 0, 1, 2, 3; b never does.
  d <- data.frame(la = rep(c("a", "b"), each = 4), year = rep(1:4, 2), go = rep(c(2, NA), each = 4))
  e <- event_time(d, "go", "year")
  expect_equal(attr(e, "event_terms"), c("event_1", "event_2", "event_3"))
  expect_equal(e$event_1, c(0, 1, 0, 0, 0, 0, 0, 0))
  expect_equal(e$event_3, c(0, 0, 0, 1, 0, 0, 0, 0))
  e2 <- event_time(d, "go", "year", max_period = 2)
  expect_equal(e2$event_2, c(0, 0, 1, 1, 0, 0, 0, 0))
  dd <- data.frame(t = as.Date(c("2020-01-01", "2020-07-03", "2021-01-02")), g = as.Date("2020-01-01"))
  expect_equal(event_time(dd, "g", "t", period = 365.25 / 2)$event_2, c(0, 1, 0))
  expect_snapshot(error = TRUE, event_time(d, "golive", "year"))
  # in a regression the dummies replace the treatment term
  set.seed(2)
  dd <- expand.grid(i = 1:20, la = letters[1:4], year = 1:5)
  dd$go <- ifelse(dd$la %in% c("a", "b"), 3, NA)
  dd <- event_time(dd, "go", "year")
  dd$y <- rnorm(nrow(dd)) + 0.5 * dd$event_2
  f <- did_fit(y ~ event_1 + event_2 + event_3 | la + year, dd, cluster = ~la, vcov = "CR1")
  m <- lm(y ~ factor(la) + factor(year) + event_1 + event_2 + event_3, dd)
  expect_equal(coef(f), coef(m)[names(coef(f))], tolerance = 1e-10)
})
