# Benchmark for the linear mixed model's new inference (issues #13, #16):
# sw_glmm(family = gaussian(), cluster = "la") (CR2 with Satterthwaite df)
# and wild_boot() on it, against lme4::lmer + clubSandwich::vcovCR on the
# same data in the same process, on a Family Safeguarding absence-shaped
# panel (children with up to three terms, child random effect, LA and term
# fixed effects, clustered by LA). clubSandwich forms n_g x n_g matrices per
# LA, so it is run on the small panel only; sfpceval also on a large one.
# The last part (issue #14) times the CR2 alone on the same inputs: the fast
# path for random effects that nest inside the clusters (b = 0), the previous
# invariant-subspace / quadrature path (options(sfpceval.cr2_fast = FALSE)),
# and clubSandwich where it can take the model, up to the Family
# Safeguarding absence DiD at the protocol's size (about 420,000
# child-terms, 160,000 children, 10 authorities, CEM weights).
#   nice Rscript bench/lmm_cr2.R [children_small] [children_large] [children_protocol]
suppressMessages(pkgload::load_all(".", quiet = TRUE))
args <- commandArgs(trailingOnly = TRUE)
n_small <- if (length(args)) as.integer(args[1]) else 2000L
n_large <- if (length(args) > 1) as.integer(args[2]) else 100000L
n_protocol <- if (length(args) > 2) as.integer(args[3]) else 160000L

panel <- function(nch, G, seed) {
  set.seed(seed)
  las <- sprintf("LA%03d", seq_len(G))
  ch <- data.frame(child_id = seq_len(nch), la = sample(las, nch, TRUE),
                   year = sample(2015:2020, nch, TRUE))
  ch$treated <- as.integer(match(ch$la, las) <= G / 2 & ch$year >= 2018)
  nt <- sample(1:3, nch, TRUE, prob = c(0.2, 0.3, 0.5))
  d <- ch[rep(seq_len(nch), nt), ]
  d$term <- factor(unlist(lapply(nt, seq_len)))
  d$absence <- 8 + 0.5 * d$treated + rnorm(G)[match(d$la, las)] + rnorm(nch, sd = 3)[d$child_id] +
    rnorm(nrow(d), sd = 4)
  d
}

time_it <- function(expr) {
  gc(reset = TRUE)
  t0 <- proc.time()
  val <- force(expr)
  t1 <- proc.time() - t0
  mem <- sum(gc()[, 6])                           # max used (Mb) since reset
  list(value = val, elapsed = t1[["elapsed"]], cpu = t1[["user.self"]] + t1[["sys.self"]], mem = mem)
}

f <- absence ~ treated + factor(la) + factor(year) + term + (1 | child_id)
d <- panel(n_small, 10, 1)
cat(sprintf("Small panel: %s rows, %s children, 10 LAs\n", format(nrow(d), big.mark = ","),
            format(n_small, big.mark = ",")))
a <- time_it(sw_glmm(f, d, family = gaussian(), cluster = "la"))
cat(sprintf("  sfpceval sw_glmm(cluster = \"la\"): %.2f s elapsed, %.2f s CPU, peak %.0f Mb\n",
            a$elapsed, a$cpu, a$mem))
if (requireNamespace("lme4", quietly = TRUE) && requireNamespace("clubSandwich", quietly = TRUE)) {
  b <- time_it({
    l <- lme4::lmer(f, d)
    vc <- clubSandwich::vcovCR(l, cluster = d$la, type = "CR2")
    list(vc = vc, ct = clubSandwich::coef_test(l, vcov = vc, test = "Satterthwaite"))
  })
  cat(sprintf("  lme4::lmer + clubSandwich CR2 + Satterthwaite: %.2f s elapsed, %.2f s CPU, peak %.0f Mb\n",
              b$elapsed, b$cpu, b$mem))
  cat(sprintf("  CPU ratio clubSandwich / sfpceval: %.1f\n", b$cpu / a$cpu))
  cat(sprintf("  largest relative difference of the CR2 SEs: %.1e; of the df: %.1e\n",
              max(abs(sqrt(diag(a$value$cr2$vcov)) / sqrt(diag(as.matrix(b$value$vc))) - 1)),
              max(abs(a$value$cr2$df / b$value$ct$df_Satt - 1))))
}

d <- panel(n_large, 150, 2)
cat(sprintf("Large panel: %s rows, %s children, 150 LAs\n", format(nrow(d), big.mark = ","),
            format(n_large, big.mark = ",")))
a <- time_it(sw_glmm(f, d, family = gaussian(), cluster = "la"))
cat(sprintf("  sfpceval sw_glmm(cluster = \"la\"): %.2f s elapsed, %.2f s CPU, peak %.0f Mb (data %.0f Mb)\n",
            a$elapsed, a$cpu, a$mem, as.numeric(utils::object.size(d)) / 2^20))
d2 <- panel(n_large / 4, 6, 3)
g <- time_it(sw_glmm(absence ~ treated + factor(year) + term + (1 | la / child_id), d2,
                     family = gaussian(), cluster = "la"))
w <- time_it(wild_boot(g$value, "treated"))
cat(sprintf("  6 LAs, %s rows, (1 | la / child_id): fit + CR2 %.2f s CPU; wild_boot (Webb, 6^6 draws) %.2f s CPU, peak %.0f Mb\n",
            format(nrow(d2), big.mark = ","), g$cpu, w$cpu, max(g$mem, w$mem)))

# ---- CEM-weighted (issue #14): the Family Safeguarding absence DiD ----------
# weights per child as CEM gives them: 1 for the treated half of the LAs, one
# of 40 stratum weights in the comparators (many classes of the working
# covariance's spectrum per LA)
cem_weights <- function(d, G) {
  las <- sort(unique(d$la))
  wk <- round(runif(40, 0.1, 3), 3)
  wc <- ifelse(match(d$la, las) <= G / 2, 1, wk[(d$child_id %% 40) + 1])
  wc
}
fw <- absence ~ treated + factor(la) + factor(year) + term + (1 | child_id)
d <- panel(n_small, 10, 4)
d$w <- cem_weights(d, 10)
cat(sprintf("Weighted, small panel: %s rows, %s children, 10 LAs, %d distinct weights\n",
            format(nrow(d), big.mark = ","), format(n_small, big.mark = ","), length(unique(d$w))))
a <- time_it(sw_glmm(fw, d, family = gaussian(), weights = "w", cluster = "la"))
cat(sprintf("  sfpceval sw_glmm(weights =, cluster = \"la\"): %.2f s elapsed, %.2f s CPU, peak %.0f Mb\n",
            a$elapsed, a$cpu, a$mem))
if (requireNamespace("lme4", quietly = TRUE)) {
  b <- time_it(lme4::lmer(fw, d, weights = w))
  cat(sprintf("  lme4::lmer(weights =) (no CR2: clubSandwich refuses weighted lmer): %.2f s CPU, peak %.0f Mb; largest coefficient difference %.1e\n",
              b$cpu, b$mem, max(abs(lme4::fixef(b$value) - a$value$coefficients))))
}
# nested, against nlme::lme(varFixed) + clubSandwich (rows in nlme's order)
fn <- absence ~ treated + factor(year) + term + (1 | la / child_id)
d$child_id <- sprintf("c%07d", d$child_id)
d <- d[order(d$la, d$child_id), ]
a <- time_it(sw_glmm(fn, d, family = gaussian(), weights = "w", cluster = "la"))
cat(sprintf("  (1 | la / child_id): sfpceval %.2f s CPU, peak %.0f Mb\n", a$cpu, a$mem))
if (requireNamespace("nlme", quietly = TRUE) && requireNamespace("clubSandwich", quietly = TRUE)) {
  d$iw <- 1 / d$w
  b <- time_it({
    m <- nlme::lme(absence ~ treated + factor(year) + term, random = ~ 1 | la / child_id, data = d,
                   weights = nlme::varFixed(~ iw))
    vc <- clubSandwich::vcovCR(m, cluster = d$la, type = "CR2")
    list(vc = vc, ct = clubSandwich::coef_test(m, vcov = vc, test = "Satterthwaite"))
  })
  cat(sprintf("  nlme::lme(varFixed) + clubSandwich CR2 + Satterthwaite: %.2f s CPU, peak %.0f Mb; CPU ratio %.1f\n",
              b$cpu, b$mem, b$cpu / a$cpu))
  cat(sprintf("  largest relative difference of the CR2 SEs: %.1e; of the df: %.1e\n",
              max(abs(sqrt(diag(a$value$cr2$vcov)) / sqrt(diag(as.matrix(b$value$vc))) - 1)),
              max(abs(a$value$cr2$df / b$value$ct$df_Satt - 1))))
}
d <- panel(n_large / 4, 10, 5)
d$w <- cem_weights(d, 10)
a <- time_it(sw_glmm(fw, d, family = gaussian(), weights = "w", cluster = "la"))
cat(sprintf("Weighted, %s rows, %s children, 10 LAs: sw_glmm(weights =, cluster = \"la\") %.2f s elapsed, %.2f s CPU, peak %.0f Mb\n",
            format(nrow(d), big.mark = ","), format(n_large / 4, big.mark = ","), a$elapsed, a$cpu, a$mem))

# ---- the CR2 alone: fast (b = 0) vs previous path vs clubSandwich (#14) -----
# lmm_cr2()'s inputs are captured from sw_glmm() once, then both paths run
# on them. Peak memory: the R heap's maximum during the call above what it
# held before (the inputs: X alone is n x p doubles).
capture_cr2 <- function(f, d, weights = NULL) {
  ns <- asNamespace("sfpceval")
  orig <- get("lmm_cr2", ns)
  got <- NULL
  unlockBinding("lmm_cr2", ns)
  assign("lmm_cr2", function(...) {
    got <<- list(...)
    orig(...)
  }, ns)
  on.exit(assign("lmm_cr2", orig, ns))
  fit <- sw_glmm(f, d, family = gaussian(), weights = weights, cluster = "la")
  list(fit = fit, args = got)
}
time_cr2 <- function(args, fast) {
  base <- sum(gc(reset = TRUE)[, 2])
  t0 <- proc.time()
  val <- do.call(sfpceval:::lmm_cr2, c(args, list(fast = fast)))
  t1 <- proc.time() - t0
  list(value = val, cpu = t1[["user.self"]] + t1[["sys.self"]], elapsed = t1[["elapsed"]],
       mem = sum(gc()[, 6]) - base)
}
report_cr2 <- function(label, a, b) {
  cat(sprintf("  %s: fast %.2f s CPU (peak +%.0f Mb), previous %.2f s CPU (peak +%.0f Mb); ratio %.1f;\n    largest relative difference of the SEs %.1e, of the df %.1e\n",
              label, a$cpu, a$mem, b$cpu, b$mem, b$cpu / a$cpu,
              max(abs(sqrt(diag(a$value$vcov)) / sqrt(diag(b$value$vcov)) - 1)),
              max(abs(a$value$df / b$value$df - 1))))
}
fa <- absence ~ treated + factor(la) + factor(year) + term + (1 | child_id)
d <- panel(n_small, 10, 6)
cat(sprintf("CR2 alone, unweighted, %s rows, 10 LAs (child random effects, clustered by LA)\n",
            format(nrow(d), big.mark = ",")))
cp <- capture_cr2(fa, d)
report_cr2("sfpceval", time_cr2(cp$args, TRUE), time_cr2(cp$args, FALSE))
if (requireNamespace("lme4", quietly = TRUE) && requireNamespace("clubSandwich", quietly = TRUE)) {
  l <- lme4::lmer(fa, d)
  gc(reset = TRUE)
  base <- sum(gc()[, 2])
  t0 <- proc.time()
  vc <- clubSandwich::vcovCR(l, cluster = d$la, type = "CR2")
  ct <- clubSandwich::coef_test(l, vcov = vc, test = "Satterthwaite")
  t1 <- proc.time() - t0
  cat(sprintf("  clubSandwich vcovCR + coef_test on lmer: %.2f s CPU (peak +%.0f Mb); SEs differ from sfpceval's by %.1e, df by %.1e (relative)\n",
              t1[["user.self"]] + t1[["sys.self"]], sum(gc()[, 6]) - base,
              max(abs(sqrt(diag(cp$fit$cr2$vcov)) / sqrt(diag(as.matrix(vc))) - 1)),
              max(abs(cp$fit$cr2$df / ct$df_Satt - 1))))
}

# the Family Safeguarding absence DiD's shape at the protocol's size: 10
# authorities, children with up to three terms, child-level covariates,
# CEM-type weights (one per child; several hundred distinct values in the
# comparators)
protocol_panel <- function(nch, seed) {
  d <- panel(nch, 10, seed)
  set.seed(seed + 1)
  d$eth <- factor(sample(letters[1:18], nch, TRUE, prob = c(10, rep(1, 17))))[d$child_id]
  d$need <- factor(sample(LETTERS[1:9], nch, TRUE))[d$child_id]
  d$age <- sample(0:12, nch, TRUE)[d$child_id]
  wk <- round(runif(1000, 0.05, 5), 4)
  d$w <- ifelse(match(d$la, sort(unique(d$la))) <= 5, 1, wk[sample(1000, nch, TRUE)][d$child_id])
  d
}
fp <- absence ~ treated + factor(la) + factor(year) + term + eth + need + age + (1 | child_id)
d <- protocol_panel(n_protocol, 7)
t0 <- proc.time()
cp <- capture_cr2(fp, d, weights = "w")
cat(sprintf("CR2 alone, the FS absence DiD's shape: %s rows, %s children, 10 LAs, %d distinct weights, %d columns\n",
            format(nrow(d), big.mark = ","), format(n_protocol, big.mark = ","), length(unique(d$w)),
            ncol(cp$args[[1]])))
cat(sprintf("  sw_glmm(weights =, cluster = \"la\") as a whole (fit + fast CR2 + CR3): %.1f s CPU\n",
            sum((proc.time() - t0)[c("user.self", "sys.self")])))
report_cr2("sfpceval", time_cr2(cp$args, TRUE), time_cr2(cp$args, FALSE))
cat("  (clubSandwich: its lme method clusters only at a random-effect level, and it forms n_g x n_g\n   matrices per authority (up to ~60,000 rows here), so it is not run at this size)\n")
