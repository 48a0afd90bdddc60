# lme4-style methods for sw_glmm() fits and tidy()/glance()/augment() for
# every fit, test and bootstrap. Checked against lme4 on the same data and
# against plain-R computations written here.

las <- paste0("LA", 1:5)
sim_gen <- function(n, sd, seed) {
  set.seed(seed)
  d <- expand.grid(child = seq_len(n), period = 0:5, la = las, stringsAsFactors = FALSE)
  d$treated <- as.integer(d$period >= match(d$la, las))
  d$x1 <- round(rnorm(nrow(d)), 1)
  b <- rnorm(5, sd = sd)[match(d$la, las)]
  d$y <- rbinom(nrow(d), 1, plogis(-0.8 + 0.4 * d$treated + 0.5 * d$x1 + b))
  d
}
glmer_tight <- function(formula, data) {
  suppressMessages(lme4::glmer(formula, data, family = stats::binomial,
                               control = lme4::glmerControl(optimizer = "bobyqa",
                                                            optCtrl = list(rhoend = 1e-12, maxfun = 1e5))))
}
f1 <- y ~ treated + factor(period) + x1 + (1 | la)
f0 <- y ~ factor(period) + x1 + (1 | la)

test_that("fixef, ranef, VarCorr, logLik, AIC, BIC, nobs agree with lme4 (logit GLMM)", {
  skip_if_not_installed("lme4")
  d <- sim_gen(20, 0.6, 31)
  fit <- sw_glmm(f1, d)
  g <- glmer_tight(f1, d)
  expect_equal(lme4::fixef(fit), lme4::fixef(g), tolerance = 1e-4)
  expect_equal(unname(lme4::ranef(fit)$la), lme4::ranef(g)$la[, 1], tolerance = 1e-4)
  expect_equal(names(lme4::ranef(fit)$la), rownames(lme4::ranef(g)$la))
  vc <- lme4::VarCorr(fit)
  expect_s3_class(vc, "VarCorr.sw_glmm")
  ref <- as.data.frame(lme4::VarCorr(g))
  expect_equal(vc$grp, ref$grp)
  expect_equal(vc$sdcor, ref$sdcor, tolerance = 1e-4)
  expect_equal(vc$vcov, ref$vcov, tolerance = 1e-4)
  expect_equal(as.numeric(logLik(fit)), as.numeric(logLik(g)), tolerance = 1e-6)
  expect_equal(AIC(fit), AIC(g), tolerance = 1e-6)
  expect_equal(BIC(fit), BIC(g), tolerance = 1e-6)
  expect_equal(nobs(fit), nobs(g))
  expect_output(print(vc), "la +\\(Intercept\\)")
  # Wald intervals (plain R from the fit's own variance)
  se <- sqrt(diag(vcov(fit)))
  expect_equal(unname(confint(fit, method = "Wald")),
               unname(cbind(coef(fit) - qnorm(0.975) * se, coef(fit) + qnorm(0.975) * se)))
})

test_that("predict(): conditional, at b = 0 and new authorities agree with lme4", {
  skip_if_not_installed("lme4")
  d <- sim_gen(20, 0.6, 32)
  fit <- sw_glmm(f1, d)
  g <- glmer_tight(f1, d)
  for (type in c("link", "response")) {
    expect_equal(unname(predict(fit, type = type)), unname(predict(g, type = type)), tolerance = 1e-4)
    expect_equal(unname(predict(fit, type = type, re.form = NA)),
                 unname(predict(g, type = type, re.form = NA)), tolerance = 1e-4)
  }
  nd <- d[c(1, 200, 400), ]
  nd$la[2] <- "LA9"                                 # an authority not in the fit
  expect_equal(unname(predict(fit, nd, type = "response")),
               unname(predict(g, nd, type = "response", allow.new.levels = TRUE)), tolerance = 1e-4)
  expect_equal(unname(predict(fit, type = "response", re.form = ~0)),
               unname(predict(fit, type = "response", re.form = NA)))
  expect_equal(unname(fitted(fit)), unname(fitted(g)), tolerance = 1e-4)
  expect_equal(unname(residuals(fit)), unname(residuals(g, type = "response")), tolerance = 1e-4)
})

test_that("marginal predictions integrate over the random intercept (plain R)", {
  d <- sim_gen(10, 0.8, 33)
  fit <- sw_glmm(f1, d)
  nd <- d[c(1, 50, 299), ]
  eta <- predict(fit, nd, re.form = NA)
  s <- unname(fit$sigma)
  ref <- vapply(eta, function(e) stats::integrate(function(b) stats::plogis(e + b) * stats::dnorm(b, 0, s),
                                                  -Inf, Inf, rel.tol = 1e-12)$value, 0)
  got <- predict(fit, nd, type = "response", re.form = NA, marginal = TRUE)
  expect_equal(unname(got), unname(ref), tolerance = 1e-8)
  # Averaged over every row, treated minus control, it is the marginal risk
  # difference sw_glmm() reports.
  dd <- d[fit$kept_rows, ]
  p1 <- predict(fit, transform(dd, treated = 1L), type = "response", re.form = NA, marginal = TRUE)
  p0 <- predict(fit, transform(dd, treated = 0L), type = "response", re.form = NA, marginal = TRUE)
  rd <- fit$treatment$risk_difference
  expect_equal(mean(p1 - p0), rd$estimate[rd$type == "marginal"], tolerance = 1e-6)
  expect_error(predict(fit, marginal = TRUE), "`marginal` applies to binomial fits")
  expect_error(predict(fit, re.form = ~ (1 | la)), "`re.form` must be NULL")
})

test_that("anova() between nested fits equals lme4's likelihood-ratio test", {
  skip_if_not_installed("lme4")
  d <- sim_gen(20, 0.6, 34)
  a <- anova(sw_glmm(f0, d), sw_glmm(f1, d))
  b <- anova(glmer_tight(f0, d), glmer_tight(f1, d))
  expect_equal(a$npar, b$npar)
  expect_equal(a$Chisq, b$Chisq, tolerance = 1e-4)
  expect_equal(a$`Pr(>Chisq)`, b$`Pr(>Chisq)`, tolerance = 1e-4)
  expect_equal(a$AIC, b$AIC, tolerance = 1e-6)
  # plain R: the statistic is twice the log-likelihood difference
  expect_equal(a$Chisq[2], 2 * (a$logLik[2] - a$logLik[1]))
  expect_error(anova(sw_glmm(f0, d)), "at least one more sw_glmm")
  expect_error(anova(sw_glmm(f0, d), sw_glmm(f1, d[-1, ])), "different numbers of rows")
})

test_that("gaussian fits: VarCorr, ranef, predict and anova (REML refitted by ML) agree with lme4", {
  skip_if_not_installed("lme4")
  # 12 authorities, so that the authority SD is well determined (with 5 the
  # REML surface is flat enough for two optimisers to differ by 1e-4 in it).
  set.seed(35)
  la12 <- paste0("LA", 1:12)
  d <- expand.grid(child_id = 1:20, period = 0:5, la = la12, stringsAsFactors = FALSE)
  d$treated <- as.integer(d$period >= (match(d$la, la12) + 1) %/% 2)
  d$child_id <- paste0("c", d$child_id)
  key <- paste(d$child_id, d$la)
  d$z <- 10 + 2 * d$treated + rnorm(12, sd = 1.5)[match(d$la, la12)] +
    rnorm(240, sd = 1)[match(key, unique(key))] + rnorm(nrow(d), sd = 2)
  fm <- z ~ treated + factor(period) + (1 | la / child_id)
  fit <- sw_glmm(fm, d, family = gaussian())
  l <- lme4::lmer(fm, d)
  vc <- lme4::VarCorr(fit)
  ref <- as.data.frame(lme4::VarCorr(l))
  expect_equal(vc$grp, ref$grp)
  expect_equal(vc$sdcor, ref$sdcor, tolerance = 1e-4)
  expect_equal(vc$sdcor, c(rev(unname(fit$sigma)), fit$residual_sd))
  expect_equal(unname(lme4::ranef(fit)$la), lme4::ranef(l)$la[, 1], tolerance = 1e-4)
  expect_equal(unname(predict(fit)), unname(predict(l)), tolerance = 1e-4)
  expect_equal(unname(predict(fit, re.form = NA)), unname(predict(l, re.form = NA)), tolerance = 1e-4)
  fm0 <- z ~ factor(period) + (1 | la / child_id)
  expect_message(a <- anova(sw_glmm(fm0, d, family = gaussian()), fit), "refitting model\\(s\\) with ML")
  b <- suppressMessages(anova(lme4::lmer(fm0, d), l))
  expect_equal(a$Chisq, b$Chisq, tolerance = 1e-4)
  expect_equal(a$logLik, b$logLik, tolerance = 1e-6)
})

test_that("augment() of sw_glmm adds fitted values and residuals", {
  skip_if_not_installed("generics")
  d <- sim_gen(10, 0.6, 36)
  fit <- sw_glmm(f1, d)
  a <- generics::augment(fit)
  expect_equal(nrow(a), nobs(fit))
  expect_equal(a$.fitted, unname(predict(fit, type = "response")))
  expect_equal(a$.resid, a$y - a$.fitted)
  expect_equal(a$.fixed, unname(predict(fit, re.form = NA)))
})

test_that("tidy() and glance() exist for every fit, test and bootstrap", {
  skip_if_not_installed("generics")
  set.seed(37)
  d <- expand.grid(la = las, year = 2015:2022, child = 1:15, stringsAsFactors = FALSE)
  d$treated_la <- d$la %in% las[1:3]   # 3 treated: did_fit() warns with fewer
  d$post <- d$year >= 2019
  d$D <- as.integer(d$treated_la & d$post)
  d$x <- rnorm(nrow(d))
  d$y <- 1 + 0.5 * d$D + 0.3 * d$x + rnorm(5)[match(d$la, las)] + rnorm(nrow(d))
  d$count <- rpois(nrow(d), exp(0.2 + 0.2 * d$x)) * rbinom(nrow(d), 1, 0.6)
  did <- did_fit(y ~ D + x | la + year, d, cluster = ~la)
  hur <- hurdle_fit(count ~ D + x, d, cluster = ~la)
  tob <- tobit_fit(count ~ D + x, d, left = 0, cluster = ~la)
  boot <- wild_boot(did, "D", B = 99, seed = 1)
  zc <- zero_check(count ~ D + x, d)
  d$grp <- as.integer(d$treated_la)
  d$xc <- cut(d$x, c(-Inf, -1, 0, 1, Inf))
  cm <- cem(grp ~ xc, d)
  for (obj in list(did, hur, tob, boot, zc, cm)) {
    t <- generics::tidy(obj)
    expect_s3_class(t, "data.frame")
    expect_gt(nrow(t), 0)
  }
  for (obj in list(did, hur, tob, boot, cm)) {
    expect_equal(nrow(generics::glance(obj)), 1L)
  }
  # augment() of a linear DiD: residuals and fitted values of the full
  # fixed-effects regression (plain R: lm with factor fixed effects)
  a <- generics::augment(did, d)
  ref <- lm(y ~ D + x + factor(la) + factor(year), d)
  expect_equal(a$.resid, unname(residuals(ref)), tolerance = 1e-8)
  expect_equal(a$.fitted, unname(fitted(ref)), tolerance = 1e-8)
  expect_error(generics::augment(did, d[-1, ]), "`data` must be the data frame did_fit\\(\\) was run on")
  # the tidied estimates are the fits' own
  expect_equal(generics::tidy(boot)$estimate, boot$estimate)
  expect_equal(generics::glance(boot)$B, boot$B)
  tz <- generics::tidy(zc)
  expect_equal(tz$observed, zc$observed)
  expect_equal(tz$p.value, zc$p.value)
  # cem: counts, and augment() adds the weights row by row
  tc <- generics::tidy(cm)
  expect_true(all(c("count", "n") %in% names(tc)))
  a <- generics::augment(cm, data = d)
  expect_equal(a$.weight, cm$weights)
  expect_equal(a$.matched, cm$matched)
  expect_error(generics::augment(cm, data = d[-1, ]), "`data` must be the data frame cem\\(\\) was run on")
})

test_that("tidy() and glance() of the permutation and panel tests", {
  skip_if_not_installed("generics")
  d <- sim_gen(10, 0.5, 38)
  pt <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d, period = "period",
                  adjust = FALSE)
  t <- generics::tidy(pt)
  expect_equal(t$p.value, pt$p_value)
  expect_equal(t$estimate, pt$estimate)
  expect_equal(generics::glance(pt)$n_allocations, 120L)
  set.seed(39)
  p <- expand.grid(id = 1:30, t = 1:6)
  p$x1 <- rnorm(nrow(p))
  p$y <- 0.5 * p$x1 + rnorm(30)[p$id] + rnorm(nrow(p))
  st <- serial_test(y ~ x1, p, "id", "t")
  ts <- generics::tidy(st)
  expect_equal(ts$p.value, st$p.value)
  expect_equal(ts$statistic, unname(st$statistic))
  expect_equal(generics::glance(st), ts)
})

test_that("a modelsummary table of a DiD and a GLMM renders", {
  skip_if_not_installed("modelsummary")
  d <- sim_gen(10, 0.5, 40)
  fit <- sw_glmm(f1, d)
  d$year <- d$period
  did <- did_fit(y ~ treated | la + year, d, cluster = ~la)
  tab <- modelsummary::modelsummary(list(DiD = did, GLMM = fit), output = "data.frame")
  expect_true(any(tab$term == "treated"))
})

test_that("tidy() of the staggered-adoption results", {
  skip_if_not_installed("generics")
  set.seed(3)
  go <- c(A = 3, B = 3, C = 5, D = Inf, E = Inf, F = 4)
  d <- expand.grid(la = names(go), year = 1:6, child = 1:5, stringsAsFactors = FALSE)
  d$treated <- as.integer(d$year >= go[d$la])
  d$y <- rnorm(6)[match(d$la, names(go))] + 0.3 * d$year + 0.5 * d$treated + rnorm(nrow(d))
  at <- att_gt(d, outcome = "y", time = "year")
  expect_equal(generics::tidy(at)$estimate, at$att$att)
  expect_equal(generics::tidy(at)$term[1], sprintf("ATT(%s,%s)", at$att$group[1], at$att$time[1]))
  ag <- aggregate_att(at, type = "dynamic", inference = "none")
  expect_equal(generics::tidy(ag)$estimate, c(ag$overall$estimate, ag$by$estimate))
  bc <- bacon(y ~ treated, d, id = "la", time = "year")
  expect_equal(generics::tidy(bc)$estimate, bc$comparisons$estimate)
  expect_equal(generics::glance(bc)$estimate, bc$estimate)
})

test_that("tidy() of trend matching and imbalance", {
  skip_if_not_installed("generics")
  set.seed(4)
  nq <- 24
  base <- cumsum(rnorm(nq, 0, 0.02)) + 0.3
  traj <- pmin(pmax(rbind(T1 = base, P1 = base + 0.1, N1 = 0.3 + cumsum(rnorm(nq, 0, 0.02)),
                          N2 = 0.3 + cumsum(rnorm(nq, 0, 0.02))), 0.02), 0.98)
  rows <- expand.grid(la = rownames(traj), q = seq_len(nq), i = 1:50, stringsAsFactors = FALSE)
  rows$referral_date <- seq(as.Date("2016-01-01"), by = "3 months", length.out = nq)[rows$q]
  rows$cla_18m <- as.integer(rows$i <= round(traj[cbind(match(rows$la, rownames(traj)), rows$q)] * 50))
  m <- match_trends(rows, data.frame(la_code = "T1", go_live_date = as.Date("2021-04-01")),
                    "cla_18m", n_candidates = 3)
  tm <- generics::tidy(m)
  expect_equal(tm$comparator_la, m$candidates$comparator_la)
  expect_equal(tm$distance, m$candidates$distance)
  set.seed(5)
  d <- data.frame(grp = rep(0:1, each = 50), x = c(rnorm(50), rnorm(50, 0.5)),
                  s = sample(c("a", "b"), 100, TRUE))
  im <- imbalance(grp ~ x + s, d)
  expect_equal(generics::tidy(im)$L1, im$univariate$L1)
  expect_equal(generics::glance(im)$L1, im$L1)
})
