# Data shared by the linear mixed model's variance tests (test-glmm.R: CR2,
# test-lmm-cr3.R: CR3): `nch` children in G authorities, each measured 1-3
# times (`since`, months; `yr` its year as a factor), a stepped roll-out by
# period, and y with authority, child and residual variation. With
# `child_weights`, `w` is one weight per child (1, 2.5 or 0.4), drawn before
# y so the outcome is the same with and without it.
lmm_child_data <- function(seed, G = 6, nch = 150, child_weights = FALSE) {
  set.seed(seed)
  las <- paste0("L", seq_len(G))
  ch <- data.frame(child_id = seq_len(nch), la = sample(las, nch, TRUE), period = sample(0:5, nch, TRUE))
  ch$treated <- as.integer(ch$period >= match(ch$la, las) * 5 / G)
  nt <- sample(1:3, nch, TRUE)
  d <- ch[rep(seq_len(nch), nt), ]
  d$since <- unlist(lapply(nt, seq_len)) * 4 + round(runif(nrow(d)), 2)
  d$yr <- factor(d$since %/% 4)
  if (child_weights) d$w <- c(1, 2.5, 0.4)[(d$child_id %% 3) + 1]
  d$y <- 10 + d$treated + 0.3 * d$since + rnorm(G)[match(d$la, las)] +
    rnorm(nch, sd = 2)[d$child_id] + rnorm(nrow(d), sd = 3)
  d
}

cr2_data <- function(seed, G = 6, nch = 150) lmm_child_data(seed, G, nch)
cr3_data <- function(seed, G = 6, nch = 120) lmm_child_data(seed, G, nch, child_weights = TRUE)

# The wild bootstrap's LMM data (test-glmm-boot.R, test-lmm-boot.R): `nch`
# children in G authorities, 1-3 measurements each, a stepped roll-out by
# period, y with authority, child and residual variation and effect 1.
lmm_boot_data <- function(nch = 120, seed = 1, G = 5) {
  set.seed(seed)
  las <- paste0("L", seq_len(G))
  ch <- data.frame(child_id = seq_len(nch), la = sample(las, nch, TRUE),
                   period = sample(0:5, nch, TRUE))
  ch$treated <- as.integer(ch$period >= match(ch$la, las) * 5 / G)
  nt <- sample(1:3, nch, TRUE)
  d <- ch[rep(seq_len(nch), nt), ]
  d$since <- unlist(lapply(nt, seq_len)) * 4 + round(runif(nrow(d)), 2)
  d$y <- 10 + 1 * d$treated + 0.3 * d$since + rnorm(G, sd = 1)[match(d$la, las)] +
    rnorm(nch, sd = 2)[d$child_id] + rnorm(nrow(d), sd = 3)
  d
}

# The linear mixed models of the variance tests on lmm_child_data() (CR2 in
# test-glmm.R, CR3 in test-lmm-cr3.R): nested random intercepts, the LA's
# with period effects, and the child's with the fixed part `child_fixed`
# (the Family Safeguarding absence model). Each case has the formula `f`,
# `phi(theta)`, the random effects' covariance in units of the residual
# variance, and `lme`, the same model for nlme::lme (fixed, random).
lmm_variance_cases <- function(d, child_fixed = y ~ treated + factor(la) + yr) {
  cl <- match(d$la, sort(unique(d$la)))
  ch <- paste(d$child_id, d$la)
  list(
    list(f = y ~ treated + since + (1 | la / child_id),
         phi = function(th) th[1]^2 * outer(cl, cl, "==") + th[2]^2 * outer(ch, ch, "=="),
         lme = list(y ~ treated + since, ~ 1 | la / child_id)),
    list(f = y ~ treated + factor(period) + since + (1 | la),
         phi = function(th) th[1]^2 * outer(cl, cl, "=="),
         lme = list(y ~ treated + factor(period) + since, ~ 1 | la)),
    list(f = stats::update(child_fixed, . ~ . + (1 | child_id)),
         phi = function(th) th[1]^2 * outer(d$child_id, d$child_id, "=="),
         lme = list(child_fixed, ~ 1 | child_id)))
}

# sw_glmm()'s CR2 standard errors and Satterthwaite df against clubSandwich
# on the same model fitted by lme4 or nlme (`ref`); the variance components
# of those agree with sw_glmm's to about 1e-6.
expect_cr2_clubsandwich <- function(fit, ref, cluster) {
  vc <- clubSandwich::vcovCR(ref, cluster = cluster, type = "CR2")
  ct <- clubSandwich::coef_test(ref, vcov = vc, test = "Satterthwaite")
  expect_equal(sqrt(diag(vcov(fit, type = "CR2"))), sqrt(diag(as.matrix(vc))), tolerance = 1e-5,
               ignore_attr = TRUE)
  expect_equal(unname(fit$cr2$df), ct$df_Satt, tolerance = 1e-5)
}
