# The GLMM score bootstrap studentised by a linearised CR3 jackknife, written
# out here independently of wild_boot(variant = "score_cr3") (its default
# below 10 clusters since #13, which this bench first measured), the
# WCR33 idea of MacKinnon, Nielsen & Webb 2023 carried to the score
# bootstrap. At the fit restricted to treated = 0, with
# s_h the cluster scores and H_h each cluster's Hessian of its integrated
# (Laplace) log-likelihood (H = sum H_h), a_h = (H^-1 s_h)_j; for a draw v the
# leave-g-out estimate moves by ((H - H_g)^-1 sum_{h != g} v_h s_h)_j, so
# (J v)_g = sum_{h != g} v_h ((H - H_g)^-1 s_h)_j - a'v and
# t*(v) = a'v / sqrt((G - 1) / G sum_g (J v)_g^2), t = t*(1); all 6^5 Webb
# vectors. Same data sets as bench/glmm_size.R (seeds 1001...), printed
# beside wild_boot()'s CR3 t-test (bench/glmm_size.R prints the package's
# score_cr3 column: 5.2% on the same 1,000 data sets, and the same p-values
# on those compared one by one).
# Run from the package root:  nice Rscript bench/glmm_score_cr3.R [reps] [G] [effect]
pkgload::load_all(quiet = TRUE)
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args) >= 1) as.integer(args[1]) else 300L
G <- if (length(args) >= 2) as.integer(args[2]) else 5L
effect <- if (length(args) >= 3) as.numeric(args[3]) else 0
n <- 60L
las <- paste0("L", seq_len(G))
V <- boot_draws(G, "webb", if (G <= 6) "enumerate" else 999L, 1L)$V

score_cr3 <- function(fit, j = 2L) {
  d <- fit$cells
  p <- ncol(d$X)
  at <- glmm_restricted(fit, j)$contrib(0)
  th <- at$theta
  bnd <- th[p + 1L] == 0
  free <- if (bnd) seq_len(p) else seq_len(p + 1L)
  gh <- if (bnd) gauss_hermite(1L) else d$gh
  dd <- d
  dd$gh <- gh
  dd$rows <- binom_rows(d$X)
  mode <- binom_eval(dd, th[1:p], th[p + 1L], 0L, double(0))$mode
  Hg <- lapply(seq_len(G), function(g) {
    i <- (d$cstart[g] + 1L):d$cstart[g + 1L]
    X <- d$X[i, , drop = FALSE]
    dg <- list(X = X, s = d$s[i], n = d$n[i], cstart = c(0L, length(i)), rows = binom_rows(X), gh = gh)
    binom_eval(dg, th[1:p], th[p + 1L], 3L, mode[g])$hessian[free, free, drop = FALSE]
  })
  H <- Reduce(`+`, Hg)
  S <- at$scores[, free, drop = FALSE]
  fj <- match(j, free)
  a <- drop(S %*% solve(-H)[, fj])
  C <- t(vapply(seq_len(G), function(g) drop(S %*% solve(-(H - Hg[[g]]))[, fj]), double(G)))  # C[g, h]
  diag(C) <- 0
  tstat <- function(V) {
    num <- colSums(V * a)
    Jv <- C %*% V - matrix(num, G, ncol(V), byrow = TRUE)
    num / sqrt((G - 1) / G * colSums(Jv^2))
  }
  t0 <- tstat(matrix(1, G, 1))
  mean(abs(tstat(V)) > abs(t0) + 1e-8 * max(1, abs(t0)))
}

one <- function(seed) {
  set.seed(seed)
  d <- expand.grid(la = las, step = 0:G, rep = seq_len(n), stringsAsFactors = FALSE)
  d$treated <- as.integer(d$step >= match(d$la, las))
  u <- rnorm(G, sd = 0.4)[match(d$la, las)]
  e <- rnorm(G * (G + 1), sd = 0)[match(paste(d$la, d$step), paste(rep(las, G + 1), rep(0:G, each = G)))]
  d$y <- rbinom(nrow(d), 1, plogis(-1.2 + 0.05 * d$step + effect * d$treated + u + e))
  fit <- suppressWarnings(suppressMessages(sw_glmm(y ~ treated + factor(step) + (1 | la), d)))
  c(cand = score_cr3(fit) < 0.05,
    cr3 = suppressMessages(wild_boot(fit, "treated", variant = "CR3t"))$p_value < 0.05)
}
tt <- proc.time()
res <- t(vapply(seq_len(reps), function(s) one(1000 + s), numeric(2)))
tt <- proc.time() - tt
rate <- function(x) {
  p <- mean(x)
  sprintf("%5.1f%% (MC s.e. %.1f, n = %d)", 100 * p, 100 * sqrt(p * (1 - p) / length(x)), length(x))
}
cat(sprintf("Binomial GLMM, %d data sets, %d LAs (as bench/glmm_size.R), effect %.2f: rejection of treated = 0 at 5%%\n",
            reps, G, effect))
cat(sprintf("  score bootstrap studentised by a linearised CR3 jackknife (Webb): %s\n", rate(res[, "cand"])))
cat(sprintf("  CR3 t-test (wild_boot() default), same data sets:               %s\n", rate(res[, "cr3"])))
cat(sprintf("  total %.0f s CPU\n", tt[["user.self"]]))
