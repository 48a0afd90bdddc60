# Randomisation inference for the covariate-adjusted ATT(g, t) (issue #16):
# before, every draw refitted the outcome regressions on the children's rows
# in R (draws x outcome columns x (g, t) pairs x rows); now each draw works
# on cluster x period sufficient statistics (the estimator is linear in y for
# fixed groups). The "before" is the row-level implementation, kept here as
# the reference. Not a test: run once with
#   nice Rscript bench/att_ri.R
library(sfpceval)   # installed: R CMD INSTALL . (or make bench)
ns <- asNamespace("sfpceval")

# ---- the previous row-level implementation --------------------------------
old_att_one <- function(obj, y, in_g, ctrl, t, base) {
  w <- obj$w
  wm <- function(s) if (any(s)) sum(w[s] * y[s]) / sum(w[s]) else NA_real_
  gt <- in_g & obj$t == t
  gb <- in_g & obj$t == base
  ct <- ctrl & obj$t == t
  cb <- ctrl & obj$t == base
  if (!any(gt) || !any(gb) || !any(ct) || !any(cb)) return(NA_real_)
  beta <- function(s) {
    b <- stats::lm.wfit(obj$X[s, , drop = FALSE], y[s], w[s])$coefficients
    b[is.na(b)] <- 0
    b
  }
  both <- gt | gb
  pred <- obj$X[both, , drop = FALSE] %*% (beta(ct) - beta(cb))
  (wm(gt) - wm(gb)) - sum(w[both] * pred) / sum(w[both])
}
old_att_table <- function(obj, y, G, cells = NULL) {
  if (is.matrix(y)) y <- y[, 1]
  g_row <- G[obj$cl]
  out <- list()
  for (gt in ns$att_pairs(obj, G)) {
    g <- gt[1]; t <- gt[2]; base <- gt[3]
    ctrl_ok <- ns$control_mask(obj, g_row, g, t, base)
    in_g <- g_row == g
    out[[length(out) + 1]] <- data.frame(
      group = g, time = t, event_time = t - g,
      att = old_att_one(obj, y, in_g, ctrl_ok, t, base),
      n_group = sum(in_g & obj$t %in% c(t, base)),
      n_control = sum(ctrl_ok & obj$t %in% c(t, base)), post = t >= g - obj$anticipation)
  }
  do.call(rbind, out)
}
old_att_matrix <- function(tab, x, Y, G) {
  Y <- as.matrix(Y)
  if (ncol(Y) == 1L) return(matrix(tab$att))
  vapply(seq_len(ncol(Y)), function(k) old_att_table(x, Y[, k], G)$att, numeric(nrow(tab)))
}
old_env <- new.env(parent = ns)
old_env$att_table <- old_att_table
old_env$att_matrix <- old_att_matrix
old_env$att_cells <- function(x, Y) NULL
old_aggregate <- ns$aggregate_att
environment(old_aggregate) <- old_env

# ---- data: 8 authorities (4 staggered, 4 never), 6 years, 2 covariates ----
make <- function(n, seed = 1) {
  set.seed(seed)
  go <- c(3, 3, 4, 5, Inf, Inf, Inf, Inf)
  d <- data.frame(la = sample(8, n, TRUE), year = sample(6, n, TRUE))
  d$treated <- as.integer(d$year >= go[d$la])
  d$age <- sample(0:17, n, TRUE)
  d$girl <- rbinom(n, 1, 0.5)
  d$y <- rbinom(n, 1, plogis(-2 + 0.03 * d$age + 0.1 * d$treated + 0.05 * d$la))
  d
}
n_perm <- 199L
cat(sprintf("aggregate_att(type = \"simple\", covariates = ~ age + girl), %d sampled draws\n", n_perm))
cat(sprintf("%8s %12s %12s %8s %14s %14s\n", "rows", "before (s)", "after (s)", "ratio",
            "max |diff|", "peak MB after"))
for (n in c(4000L, 16000L)) {
  d <- make(n)
  a <- att_gt(d, outcome = "y", time = "year", covariates = ~ age + girl)
  gc(reset = TRUE)
  t_new <- system.time(s_new <- aggregate_att(a, "simple", n_perm = n_perm, max_enumerate = 10))
  peak <- sum(gc()[, 6])
  t_old <- system.time(s_old <- old_aggregate(a, "simple", n_perm = n_perm, max_enumerate = 10))
  diff <- max(abs(unlist(s_new$overall) - unlist(s_old$overall)))
  cat(sprintf("%8d %12.2f %12.2f %8.1f %14.2e %14.0f\n", n, t_old[["elapsed"]],
              t_new[["elapsed"]], t_old[["elapsed"]] / t_new[["elapsed"]], diff, peak))
}
# at cohort scale (the old path would take hours): 1,000,000 rows, 150
# authorities would need far more assignments; here 8 authorities, 999 draws
d <- make(1e6, seed = 2)
a <- att_gt(d, outcome = "y", time = "year", covariates = ~ age + girl)
invisible(gc(reset = TRUE))
t_big <- system.time(s_big <- aggregate_att(a, "dynamic", n_perm = 999L, max_enumerate = 10))
cat(sprintf("1,000,000 rows, dynamic, 999 draws: %.1f s, peak %.0f MB (data %.0f MB)\n",
            t_big[["elapsed"]], sum(gc()[, 6]), as.numeric(object.size(d)) / 2^20))
