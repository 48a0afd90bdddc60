# Benchmark for the linear mixed model's new inference (issues #13, #16):
# sw_glmm(family = gaussian(), cluster = "la") (CR2 with Satterthwaite df)
# and wild_boot() on it, against lme4::lmer + clubSandwich::vcovCR on the
# same data in the same process, on a Family Safeguarding absence-shaped
# panel (children with up to three terms, child random effect, LA and term
# fixed effects, clustered by LA). clubSandwich forms n_g x n_g matrices per
# LA, so it is run on the small panel only; sfpceval also on a large one.
#   nice Rscript bench/lmm_cr2.R [children_small] [children_large]
suppressMessages(pkgload::load_all(".", quiet = TRUE))
args <- commandArgs(trailingOnly = TRUE)
n_small <- if (length(args)) as.integer(args[1]) else 2000L
n_large <- if (length(args) > 1) as.integer(args[2]) else 100000L

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
