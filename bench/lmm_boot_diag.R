# Why the wild cluster bootstrap of the linear mixed model over-rejects with
# 5 LAs (issue #13; ?wild_boot, "Linear mixed models"). The null data sets of
# bench/sw_size.R (same seed, same draws), and on each:
#   ols_*      the same bootstrap for OLS with LA and step fixed effects (no
#              variance components at all), plain R, Webb weights enumerated:
#              if it over-rejects as much, holding theta fixed is not the cause;
#   oracle     that OLS bootstrap built from the true errors (demeaned within
#              LA, which the LA effects absorb) instead of the restricted
#              residuals: what the residuals cost;
#   <variant>_{webb,gauss,rad}  LMM variants with Webb weights (6^5,
#              enumerated), Gaussian weights (9,999 draws) and Rademacher (2^5);
#   t3_t4      the CR3 t against t(G - 1), the default below 10 LAs.
# With effect > 0 the same rates are power. Not a test: run once,
#   nice Rscript bench/lmm_boot_diag.R [reps] [shock_sd] [effect]
suppressMessages(pkgload::load_all(".", quiet = TRUE))
args <- commandArgs(trailingOnly = TRUE)
reps <- if (length(args)) as.integer(args[1]) else 1000L
shock_sd <- if (length(args) > 1) as.numeric(args[2]) else 0.25
effect <- if (length(args) > 2) as.numeric(args[3]) else 0
cat(sprintf("%d data sets, LA x step shock SD %g, effect %g\n", reps, shock_sd, effect))
set.seed(20261203)
las <- paste0("L", 1:5)
start <- as.Date("2019-10-01")
go_live <- stats::setNames(start + 182 * (1:5) + c(74, 35, 53, 92, 21), las)
sim_one <- function(G = 5L, n_la_step = 40) {             # as bench/sw_size.R
  n <- n_la_step * (G + 1) * G
  d <- data.frame(la = rep(las, each = n / G), referral_date = start + sample(0:((G + 1) * 182 - 1), n, TRUE))
  d$step <- as.integer(d$referral_date - start) %/% 182L
  d$treated <- as.integer(d$referral_date >= go_live[d$la])
  u <- stats::rnorm(G, sd = 0.4)[match(d$la, las)]
  shock <- matrix(stats::rnorm(G * (G + 1), sd = shock_sd), G, G + 1)[cbind(match(d$la, las), d$step + 1L)]
  d$err <- shock + stats::rnorm(n)
  d$y <- effect * d$treated + 0.05 * d$step + u + d$err
  d
}
Vw <- boot_draws(5, "webb", "enumerate", 1)$V
Vr <- boot_draws(5, "rademacher", "enumerate", 1)$V
Vg <- with_seed(7, matrix(stats::rnorm(5 * 9999), 5))

# OLS two-way FE, CR1, bootstrap data y* = fitted + e o v (e: residuals to flip)
ols_p <- function(d, e) {
  Z <- stats::model.matrix(~ factor(la) + factor(step), d)
  qx <- qr(cbind(Z, d$treated))
  xt <- qr.resid(qr(Z), d$treated)
  cl <- match(d$la, las)
  b <- sum(xt * d$y) / sum(xt^2)
  t0 <- b / sqrt(5 / 4 * sum(rowsum(xt * qr.resid(qx, d$y), cl)^2)) * sum(xt^2)
  K <- sapply(1:5, function(h) rowsum(xt * qr.resid(qx, e * (cl == h)), cl))
  a <- vapply(1:5, function(h) sum(xt * e * (cl == h)), 0)
  ts <- drop(crossprod(a, Vw)) / sqrt(5 / 4 * colSums((K %*% Vw)^2))
  mean(abs(ts) > abs(t0) * (1 + 1e-8))
}

vars <- c("WCU31", "WCU33", "WCR31", "WCR33", "WCR11")
t0 <- proc.time()[["elapsed"]]
res <- t(replicate(reps, {
  d <- sim_one()
  Z <- stats::model.matrix(~ factor(la) + factor(step), d)
  out <- c(ols_wcr11 = ols_p(d, qr.resid(qr(Z), d$y)),
           ols_wcu11 = ols_p(d, qr.resid(qr(cbind(Z, d$treated)), d$y)),
           oracle = ols_p(d, d$err - stats::ave(d$err, d$la)))
  fit <- suppressWarnings(suppressMessages(sw_glmm(y ~ treated + factor(step) + (1 | la), d, family = gaussian())))
  pc <- lmm_boot_pieces(fit, match("treated", names(fit$coefficients)))
  Cg <- lmm_jack_rows(pc)
  jd <- lmm_jack_dgp(pc)
  for (v in vars) {
    vb <- lmm_boot_variant(pc, substr(v, 1, 3), paste0("CR", substr(v, 5, 5)), Cg = Cg,
                           dgp = as.integer(substr(v, 4, 4)), jd = jd)
    tt <- abs(fit$coefficients[["treated"]] / (pc$sc * vb$se))
    for (w in c("webb", "gauss", "rad")) {
      V <- switch(w, webb = Vw, gauss = Vg, rad = Vr)
      st <- .Call(ffi_wcr_stats, V, vb$a0, vb$a1, vb$K0, vb$K1)
      out[paste0(v, "_", w)] <- mean(abs(st[1, ] / sqrt(vb$cf * st[3, ])) > tt * (1 + 1e-8))
    }
    if (v == "WCU33") out["t3_t4"] <- 2 * stats::pt(-tt, 4)
  }
  out
}))
rate <- function(p) {
  r <- mean(p < 0.05)
  sprintf("%5.1f%% (MC s.e. %.1f)", 100 * r, 100 * sqrt(r * (1 - r) / length(p)))
}
for (k in colnames(res)) cat(sprintf("%-14s %s\n", k, rate(res[, k])))
cat(sprintf("OLS-FE and LMM WCR11 (Webb) reach the same decision in %.1f%% of data sets\n",
            100 * mean((res[, "ols_wcr11"] < 0.05) == (res[, "WCR11_webb"] < 0.05))))
cat(sprintf("  (%.0f s)\n", proc.time()[["elapsed"]] - t0))
