# Benchmark for sw_glmm() (issue #6): a simulated 78,000-child Family Valued
# cohort (5 LAs, 6 periods, the protocol's covariates as factors).
# Targets: sw_glmm(nAGQ = 1) at least 100 x faster than lme4::glmer() with
# the same model in the same process; sw_glmm(nAGQ = 25) under 1 s.
# Then (issue #14) the Family Valued primary model as analyse() fits it on
# the default simulated data, cold and warm-started, against glmer.
# Run after R CMD INSTALL --library=/tmp/lib-glmm . with R_LIBS=/tmp/lib-glmm:
#   R_LIBS=/tmp/lib-glmm Rscript --vanilla bench/glmm.R
library(sfpceval)

set.seed(20240601)
n <- 78000L
las <- paste0("LA", 1:5)
draw <- function(levels, prob) factor(sample(levels, n, TRUE, prob), levels = levels)
cohort <- data.frame(
  la = sample(las, n, TRUE, prob = c(0.15, 0.25, 0.2, 0.22, 0.18)),
  period = sample(0:5, n, TRUE),
  gender = draw(c("male", "female", "other"), c(0.49, 0.49, 0.02)),
  age_band = draw(c("0-3", "4-12", "13-17"), c(0.3, 0.45, 0.25)),
  ethnic_group = draw(c("White", "Mixed", "Asian", "Black", "Other", "Missing"),
                      c(0.7, 0.08, 0.09, 0.07, 0.03, 0.03)),
  disabled = draw(c("no", "yes"), c(0.9, 0.1)),
  fsm = draw(c("no", "yes"), c(0.6, 0.4)),
  uasc = draw(c("no", "yes"), c(0.98, 0.02)),
  primary_need = draw(paste0("N", 0:9), c(0.02, 0.5, 0.04, 0.03, 0.1, 0.15, 0.03, 0.01, 0.02, 0.1)),
  stringsAsFactors = FALSE)
# stepped wedge: LA k goes live at the start of period k
cohort$treated <- as.integer(cohort$period >= match(cohort$la, las))
b_la <- c(-0.3, 0.1, 0.25, -0.15, 0.2)[match(cohort$la, las)]
eta <- -2.6 + b_la - 0.15 * cohort$treated + 0.04 * cohort$period +
  0.3 * (cohort$age_band == "13-17") - 0.2 * (cohort$age_band == "4-12") +
  0.25 * (cohort$disabled == "yes") + 0.2 * (cohort$fsm == "yes") +
  0.8 * (cohort$uasc == "yes") + 0.4 * (cohort$primary_need == "N1") -
  0.1 * (cohort$ethnic_group == "Asian")
cohort$entered_care <- rbinom(n, 1, plogis(eta))

f <- entered_care ~ treated + factor(period) + gender + age_band + ethnic_group +
  disabled + fsm + uasc + primary_need + (1 | la)

# elapsed (wall-clock) and CPU (user + system) seconds of this process; on a
# shared machine the CPU time is the fairer measure, both are printed. Peak
# memory: the R heap's maximum ("max used" of gc(), reset before the call)
# and the process's peak resident set (VmHWM, reset through
# /proc/self/clear_refs on Linux), which also counts memory allocated outside
# R's heap (lme4's C++ matrices).
peak_rss_mb <- function() {
  st <- tryCatch(readLines("/proc/self/status"), error = function(e) character())
  v <- grep("^VmHWM:", st, value = TRUE)
  if (length(v)) as.numeric(gsub("[^0-9]", "", v)) / 1024 else NA_real_
}
reset_peaks <- function() {
  invisible(gc(reset = TRUE))
  invisible(tryCatch(cat("5", file = "/proc/self/clear_refs"), error = function(e) NULL))
}
time_it <- function(expr) {
  reset_peaks()
  t0 <- proc.time()
  val <- force(expr)
  t1 <- proc.time() - t0
  heap <- sum(gc()[, "max used"] * c(56, 8)) / 2^20
  list(value = val, time = t1[["elapsed"]], cpu = t1[["user.self"]] + t1[["sys.self"]],
       heap = heap, rss = peak_rss_mb())
}
mem <- function(r) sprintf("peak R heap %.0f MB, process %.0f MB", r$heap, r$rss)

# warm-up (loads the namespace, compiles the R code) on a small subset
invisible(suppressMessages(sw_glmm(f, cohort[1:2000, ])))

s1 <- time_it(sw_glmm(f, cohort, nAGQ = 1))
s25 <- time_it(sw_glmm(f, cohort, nAGQ = 25))
cat(sprintf("rows %d, binomial cells %d, fixed effects %d, events %d\n",
            n, s1$value$ncells, length(coef(s1$value)), sum(cohort$entered_care)))
cat(sprintf("sw_glmm nAGQ = 1 : %7.3f s elapsed, %7.3f s CPU, %d Newton iterations; %s\n",
            s1$time, s1$cpu, s1$value$iterations, mem(s1)))
cat(sprintf("sw_glmm nAGQ = 25: %7.3f s elapsed, %7.3f s CPU  (target < 1 s: %s elapsed, %s CPU); %s\n",
            s25$time, s25$cpu, if (s25$time < 1) "met" else "NOT met",
            if (s25$cpu < 1) "met" else "NOT met", mem(s25)))

if (requireNamespace("lme4", quietly = TRUE)) {
  g1 <- time_it(lme4::glmer(f, cohort, family = binomial, nAGQ = 1))
  cat(sprintf("lme4::glmer nAGQ = 1: %7.3f s elapsed, %7.3f s CPU; %s\n", g1$time, g1$cpu, mem(g1)))
  cat(sprintf("ratio glmer / sw_glmm (nAGQ = 1): %.0f elapsed, %.0f CPU  (target >= 100: %s)\n",
              g1$time / s1$time, g1$cpu / s1$cpu,
              if (g1$time / s1$time >= 100) "met" else "NOT met"))
  db <- coef(s1$value) - lme4::fixef(g1$value)
  cat(sprintf("fixed effects vs glmer: max |difference| %.2g, max |difference| / SE %.2g\n",
              max(abs(db)), max(abs(db) / sqrt(diag(vcov(s1$value))))))
  cat(sprintf("sigma: sw_glmm %.6f, glmer %.6f; logLik: sw_glmm %.4f, glmer %.4f\n",
              s1$value$sigma, g1$value@theta, s1$value$loglik, as.numeric(logLik(g1$value))))
}

# The Family Valued primary model as analyse() fits it, on the default
# simulated data (simulate_sfp(): 5 LAs x 5,200 children a year): every
# covariate of the protocol, the authority covariates varying by LA and
# month, so that the ~43,000 complete-case children make ~23,000 binomial
# cells. Levels without an event are merged into the largest level first
# (analyse()'s rule; glmer would otherwise chase an infinite coefficient).
x <- simulate_sfp("family_valued", effects = list(cla = -0.3), seed = 1)
dsg <- design_family_valued(x)
co <- as.data.frame(suppressMessages(build_cohort(x, dsg)))
fp <- stats::as.formula(protocol_models(dsg)$formula[1])
vars <- intersect(all.vars(fp), names(co))
pc <- co[stats::complete.cases(co[vars]), vars]
for (v in vars) {
  if (is.character(pc[[v]])) pc[[v]] <- factor(pc[[v]])
  if (!is.factor(pc[[v]]) || v == "la") next
  tab <- table(pc[[v]], pc$cla_18m)
  bad <- rownames(tab)[tab[, 1] == 0 | tab[, 2] == 0]
  if (length(bad)) {
    big <- names(which.max(table(pc[[v]])[setdiff(rownames(tab), bad)]))
    z <- as.character(pc[[v]]); z[z %in% bad] <- big; pc[[v]] <- factor(z)
  }
  pc[[v]] <- droplevels(pc[[v]])
}
p1 <- time_it(sw_glmm(fp, pc))
cat(sprintf("\nFV primary model (default simulated data): %d children, %d binomial cells, %d fixed effects\n",
            nrow(pc), p1$value$ncells, length(coef(p1$value))))
cat(sprintf("sw_glmm nAGQ = 1 : %7.3f s elapsed, %7.3f s CPU, %d Newton iterations; %s\n",
            p1$time, p1$cpu, p1$value$iterations, mem(p1)))
# a refit from the fit's estimates (as analyse() refits each imputation)
pc2 <- pc
set.seed(2)
i <- sample(nrow(pc2), round(0.04 * nrow(pc2)))
pc2$ethnicity_cin[i] <- sample(pc2$ethnicity_cin[-i], length(i))
w1 <- time_it(sfpceval:::sw_glmm_fit(quote(sw_glmm(fp, pc2)), fp, pc2,
                                     start = sfpceval:::glmm_start(p1$value)))
c1 <- time_it(sw_glmm(fp, pc2))
cat(sprintf("  the same model on data with 4%% of ethnicity re-drawn (an imputation): cold %.3f s CPU (%d iterations), warm start %.3f s CPU (%d); max |difference| / SE %.1g\n",
            c1$cpu, c1$value$iterations, w1$cpu, w1$value$iterations,
            max(abs(coef(w1$value) - coef(c1$value)) / sqrt(diag(vcov(c1$value))))))
if (requireNamespace("lme4", quietly = TRUE)) {
  gp <- time_it(suppressMessages(lme4::glmer(fp, pc, family = binomial, nAGQ = 1)))
  cat(sprintf("lme4::glmer nAGQ = 1: %7.3f s elapsed, %7.3f s CPU; %s\n", gp$time, gp$cpu, mem(gp)))
  cat(sprintf("ratio glmer / sw_glmm: %.0f elapsed, %.0f CPU\n", gp$time / p1$time, gp$cpu / p1$cpu))
  db <- coef(p1$value) - lme4::fixef(gp$value)
  cat(sprintf("fixed effects vs glmer: max |difference| / SE %.2g; SE ratio %.4f to %.4f; logLik %.4f vs %.4f\n",
              max(abs(db) / sqrt(diag(vcov(p1$value)))),
              min(sqrt(diag(vcov(p1$value))) / sqrt(diag(as.matrix(vcov(gp$value))))),
              max(sqrt(diag(vcov(p1$value))) / sqrt(diag(as.matrix(vcov(gp$value))))),
              p1$value$loglik, as.numeric(logLik(gp$value))))
}

# Not a target: the nested linear mixed model of the school absence outcome
# (50,000 children, 1-3 terms each) against lme4::lmer.
set.seed(7)
nch <- 50000L
ch <- data.frame(child_id = seq_len(nch), la = sample(las, nch, TRUE), period = sample(0:5, nch, TRUE),
                 sex = sample(c("F", "M"), nch, TRUE), age_band = sample(c("0-3", "4-12", "13-17"), nch, TRUE))
ch$treated <- as.integer(ch$period >= match(ch$la, las))
nt <- sample(1:3, nch, TRUE, prob = c(0.2, 0.3, 0.5))
ab <- ch[rep(seq_len(nch), nt), ]
ab$term <- factor(unlist(lapply(nt, seq_len)))
ab$since <- as.numeric(ab$term) * 4 + runif(nrow(ab))
ab$absence <- 10 + 2 * ab$treated + 0.3 * ab$since + rnorm(5, sd = 2)[match(ab$la, las)] +
  rnorm(nch, sd = 3)[ab$child_id] + rnorm(nrow(ab), sd = 4)
fa <- absence ~ treated + factor(period) + term + since + sex + age_band + (1 | la / child_id)
m1 <- time_it(sw_glmm(fa, ab, family = gaussian()))
cat(sprintf("\nLMM (1 | la / child_id), %d rows: sw_glmm %.3f s elapsed, %.3f s CPU\n",
            nrow(ab), m1$time, m1$cpu))
if (requireNamespace("lme4", quietly = TRUE)) {
  l1 <- time_it(lme4::lmer(fa, ab))
  cat(sprintf("lme4::lmer: %.3f s elapsed, %.3f s CPU; ratio %.0f (CPU); max |fixed-effect difference| %.2g; REML logLik %.4f vs %.4f\n",
              l1$time, l1$cpu, l1$cpu / m1$cpu, max(abs(coef(m1$value) - lme4::fixef(l1$value))),
              m1$value$loglik, as.numeric(logLik(l1$value))))
}
