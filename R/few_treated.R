# Inference with one or two treated authorities, and the warning that the
# usual few-cluster tools do not hold their size there. The panel is a few
# authorities by a few periods, so this is plain R on G x T matrices.

#' DiD inference with one or two treated authorities
#'
#' With one or two treated clusters cluster-robust t-tests over-reject (one
#' treated authority of six: CR2 with Satterthwaite df rejected about 30% of
#' true nulls at 5%) and the wild cluster restricted bootstrap almost never
#' rejects; randomisation over which authorities are treated has too few
#' assignments (six) to reach 5%. `few_treated_test()` instead learns the
#' distribution of the authority-by-period errors from every authority,
#' treated and comparators, under an explicit model, as Ferman and Pinto
#' (2019) do for few treated groups, and tests with a parametric bootstrap
#' of the studentised statistic:
#'
#' 1. The children are reduced to authority x period cells as in
#'    [fgls_bcj()] (child covariates partialled out within cells, weights in
#'    the means, a cell where a go-live falls inside the period split by
#'    treatment and put back together with the arms' shares, so its
#'    treatment is the treated share of the cell's weight).
#' 2. The cell error is \eqn{u_{gt} = v_{gt} + \bar e_{gt}}: an authority x
#'    period shock, stationary AR(1) with variance \eqn{\sigma_v^2} and
#'    coefficient \eqn{\rho}, plus the cell's sampling noise, whose variance
#'    \eqn{\sigma_e^2/n^{eff}_{gt}} falls with the cell's (Kish effective)
#'    size -- the heteroskedasticity Ferman and Pinto correct for.
#'    \eqn{\sigma_e^2} is the pooled within-cell variance of the children.
#' 3. \eqn{\rho} and \eqn{\sigma_v^2} are estimated under the null from the
#'    two-way demeaned cells \eqn{\tilde u = M u} by matching
#'    \eqn{\sum\tilde u_{gt}^2} and \eqn{\sum\tilde u_{gt}\tilde u_{g,t-1}} to
#'    their exact expectations \eqn{tr(M\Sigma)} and \eqn{tr(MSM\Sigma)} for
#'    a fixed number of periods (so no Nickell bias).
#' 4. The statistic is the two-way fixed-effects DiD on the cells,
#'    \eqn{\hat\beta = c'\bar y}, divided by its standard error under the
#'    model, \eqn{\sqrt{c'\Sigma(\hat\theta)c}}. The bootstrap draws
#'    \eqn{u^* \sim N(0, \Sigma(\hat\theta))}, re-estimates \eqn{\theta}
#'    from \eqn{M u^*} and recomputes the studentised statistic; the p-value
#'    is \eqn{(1 + \#\{|t^*| \ge |t|\})/(B + 1)}. The confidence interval
#'    inverts the test (the same draws at every hypothesised effect).
#'
#' The test holds its size when the model holds (AR(1) shocks, independent
#' across authorities, as variable in the treated authorities as in the
#' comparators once cell sizes are accounted for); `bench/few_treated_size.R`
#' measures it on null data shaped like the protocol's: 4.4% at 5% with one
#' treated authority of six, 4.7% with two of seven, 3.5% with rho = 0.8,
#' 3.8% with treated authorities four times larger, 2.2% (conservative)
#' with a single comparator. The one assumption the data cannot check is
#' the treated authorities' shock variance: when the treated authority's
#' shocks had twice the comparators' standard deviation the test rejected
#' 17.8% of true nulls (CR2 62.5%), and 4.8% when analysed with that ratio
#' (`shock_ratio = 4`). `shock_ratio` states the variance relative to the
#' comparators'; report the result over a range of it as a sensitivity
#' analysis. The panel must be
#' balanced and the regressors besides the treatment must vary within cells
#' (child covariates): authority-level covariates are not supported.
#'
#' @inheritParams fgls_bcj
#' @param formula `outcome ~ treated + child covariates`; the treatment (0/1,
#'   the child's: referred on or after the go-live) first.
#' @param weights `NULL`, the name of a column of `data` or a vector with
#'   one non-negative weight per row (e.g. CEM weights).
#' @param B Bootstrap draws.
#' @param seed Seed of the draws (the caller's random state is restored).
#' @param level Confidence level.
#' @param conf_int Compute the interval by test inversion.
#' @param shock_ratio Variance of the treated authorities' shocks relative
#'   to the comparators' (a sensitivity parameter: the data cannot tell it
#'   with one or two treated authorities). 1, the default, assumes they vary
#'   alike.
#' @references Ferman, B. and Pinto, C. (2019). Inference in
#'   differences-in-differences with few treated groups and
#'   heteroskedasticity. *Review of Economics and Statistics* 101(3),
#'   452-467. Conley, T. G. and Taber, C. R. (2011). Inference with
#'   "difference in differences" with a small number of policy changes.
#'   *Review of Economics and Statistics* 93(1), 113-125.
#' @return An object of class `sfp_few_treated`: `estimate`, `std.error`
#'   (model-based), `statistic`, `p_value`, `conf_int`, `level`, `rho`,
#'   `sigma2` (shock `v`, child `e`), `n_treated`, `G`, `T`, `B`,
#'   `n_dropped`, `n_zero_weight` and `cells` (the G x T matrices `y`,
#'   `treated` and `noise_var`). Methods: `print`, `tidy`, `glance`.
#' @examples
#' set.seed(3)
#' d <- expand.grid(child = 1:40, la = 1:6, year = 1:6)
#' shock <- matrix(rnorm(36, sd = 0.15), 6, 6)
#' d$treated <- as.integer(d$la == 1 & d$year >= 4)
#' d$y <- 0.02 * d$year + shock[cbind(d$la, d$year)] + rnorm(nrow(d), sd = 0.5)
#' few_treated_test(y ~ treated, d, group = "la", time = "year", B = 199)
#' @export
few_treated_test <- function(formula, data, group, time, weights = NULL, B = 999L,
                             seed = 1L, level = 0.95, conf_int = TRUE, shock_ratio = 1) {
  B <- check_whole(B, "B", 19L, "give e.g. B = 999 bootstrap draws.")
  level <- check_number(level, "level", 0, 1, lower_open = TRUE, upper_open = TRUE,
                        fix = "give e.g. level = 0.95.")
  if (!is.numeric(shock_ratio) || length(shock_ratio) != 1L || !(shock_ratio > 0) ||
      !is.finite(shock_ratio)) {
    stop_arg("shock_ratio", "must be one positive number",
             "1 assumes the treated authorities' shocks vary as much as the comparators'")
  }
  if (!isTRUE(conf_int) && !isFALSE(conf_int)) {
    stop_arg("conf_int", "must be TRUE or FALSE", "use conf_int = FALSE to skip the test inversion.")
  }
  P <- panel_rows_(formula, data, group, time, weights)
  bad <- which(!P$X[, 1] %in% c(0, 1))
  if (length(bad)) {
    stop_rows("data", colnames(P$X)[1], P$rows[bad], "have a treatment other than 0 or 1",
              "give the child's treatment first in the formula, as 0/1 (1 = referred on or after the go-live).",
              keys = P$X[bad, 1], key_name = "values")
  }
  check_balanced_(P, group, time)
  G <- P$G
  TT <- P$T
  if (TT < 3L) stop_arg("data", sprintf("has %d periods in `%s`", TT, time),
                        "the AR(1) shocks need three or more periods")
  pos <- P$w > 0
  cells <- fgls_cells_(P$y[pos], P$X[pos, , drop = FALSE], P$w[pos], P$gi[pos], P$ti[pos], G, TT)
  if (ncol(cells$X) != 1L) {
    stop_arg("formula", sprintf("has regressors constant within cells besides the treatment: %s",
                                paste0("`", colnames(cells$X)[-1], "`", collapse = ", ")),
             "keep the treatment first and only child-level covariates")
  }
  ft <- few_treated_cells_(cells, G, TT)
  ntr <- sum(rowSums(ft$D) > 0)
  if (ntr == 0L || ntr == G) {
    stop_arg("formula", sprintf("has %s: %s of the %d groups in `%s` %s treated in some period",
                                if (ntr == 0L) "no treated group" else "no untreated group",
                                if (ntr == 0L) "none" else "all", G, group,
                                if (ntr == 0L) "is" else "are"),
             "the DiD needs treated authorities and comparator authorities that are never treated.")
  }
  Dt <- ft$D - outer(rowMeans(ft$D), colMeans(ft$D), "+") + mean(ft$D)
  if (sum(Dt^2) <= 1e-12 * max(1, sum(ft$D^2))) {
    stop_arg("formula", "has a treatment collinear with the authority and period effects",
             "the treated authorities need periods before their go-live (and the comparators none after)")
  }
  if (as.double(B) * G * TT > 2.5e7) {
    stop_arg("B", sprintf("asks for %s bootstrap draws, which with %d groups x %d periods is %s normal draws (two arrays of %.1f GB)",
                          format(B, big.mark = ","), G, TT, format(as.double(B) * G * TT, big.mark = ",", scientific = FALSE),
                          8 * as.double(B) * G * TT / 1e9),
             sprintf("use at most B = %s here (999 is usual).", format(floor(2.5e7 / (G * TT)), big.mark = ",")))
  }
  k <- ifelse(rowSums(ft$D) > 0, shock_ratio, 1)
  mom <- few_treated_moments_(ft, G, TT, k)
  draws <- with_seed(seed, list(Z = array(stats::rnorm(B * G * TT), c(B, G, TT)),
                                E = matrix(stats::rnorm(B * G * TT), B, G * TT)))
  obs <- few_treated_stat_(ft, mom, 0, draws)
  alpha <- 1 - level
  ci <- if (isTRUE(conf_int)) {
    pfun <- function(b0) few_treated_stat_(ft, mom, b0, draws)$p_value
    # invert_test() (R/wildboot.R): steps of one SE, the test rejects at p <= alpha
    se <- max(obs$std.error, 1e-8)
    invert_test(pfun, obs$estimate, se, alpha, rel = 1e-6, max_double = 41,
                max_bisect = 40, step = se, strict = TRUE, unbounded = Inf)
  } else c(NA_real_, NA_real_)
  structure(list(
    estimate = obs$estimate, std.error = obs$std.error, statistic = obs$statistic,
    p_value = obs$p_value, conf_int = ci, level = level, rho = obs$rho,
    sigma2 = c(v = obs$sigma2_v, e = ft$sigma2_e), shock_ratio = shock_ratio,
    n_treated = ntr, G = G, T = TT,
    B = as.integer(B), n_dropped = P$n_dropped, n_zero_weight = sum(!pos),
    cells = list(y = ft$Y, treated = ft$D, noise_var = ft$V),
    labels = list(group = P$glev, time = P$tlev), call = match.call()
  ), class = "sfp_few_treated")
}

# Arms back to G x T cells (share-weighted): outcome Y, treated share D, and
# the sampling variance of each cell mean V = sigma2_e / n_eff, with sigma2_e
# the pooled within-arm variance (E sum w (r - rbar)^2 = sigma2 (W - sum w^2 / W)).
few_treated_cells_ <- function(cells, G, TT) {
  tab <- cells$tab
  key <- tab$g + (tab$t - 1L) * G
  agg <- function(v) matrix(rowsum(v, key, reorder = TRUE), G, TT)
  Y <- agg(tab$share * cells$y)
  D <- agg(tab$share * cells$X[, 1])
  W <- agg(tab$wsum)
  W2 <- agg(tab$w2)
  den <- sum(tab$wsum - tab$w2 / tab$wsum)
  s2e <- if (den > 0) sum(tab$ssw) / den else 0
  list(Y = Y, D = D, V = s2e * W2 / W^2, sigma2_e = s2e)
}

# Everything about the model that does not depend on the data's outcome:
# the two-way demeaning M (cells in g-fastest order), the DiD weights c,
# and on a grid of rho the traces tr(C R), tr(Q R) (Q = C S C, S the
# symmetric lag-1 selector) and c' (diag(k) x R) c; the noise terms a0, a1,
# vc. k: each authority's shock variance relative to sigma2_v (so the shock
# traces carry sum_g k_g (1 - 1/G) in place of G - 1).
few_treated_moments_ <- function(ft, G, TT, k = rep(1, G)) {
  CG <- diag(G) - 1 / G
  CT <- diag(TT) - 1 / TT
  M <- kronecker(CT, CG)
  S <- matrix(0, TT, TT)
  S[cbind(2:TT, 1:(TT - 1))] <- 0.5
  S <- S + t(S)
  Q <- CT %*% S %*% CT
  Dt <- CG %*% ft$D %*% CT
  cm <- Dt / sum(Dt^2)
  grid <- seq(-0.98, 0.98, by = 0.002)
  tr <- vapply(grid, function(r) {
    R <- stats::toeplitz(r^(0:(TT - 1)))
    c(sum(CT * R), sum(Q * R), sum(k * (cm %*% R) * cm))
  }, numeric(3))
  V <- ft$V
  list(M = M, cm = cm, grid = grid, hC = tr[1, ], hQ = tr[2, ], hc = tr[3, ],
       ratio = tr[2, ] / tr[1, ],
       a0 = (1 - 1 / G) * (1 - 1 / TT) * sum(V),
       a1 = (1 - 1 / G) * sum(sweep(V, 2, diag(Q), "*")),
       vc = sum(cm^2 * V), lag = (G + 1):(G * TT), G = G, TT = TT, k = k,
       kG = (1 - 1 / G) * sum(k))
}

# rho and sigma2_v from the moments m0 = sum u~^2 and m1 = sum u~_t u~_{t-1}
# (vectors): E m0 = sigma2_v kG tr(C R) + a0, E m1 = sigma2_v kG tr(Q R) + a1
# (kG = (1 - 1/G) sum_g k_g, G - 1 when every k_g = 1), so
# tr(Q R) / tr(C R) = (m1 - a1) / (m0 - a0), increasing in
# rho; then the variance of the DiD estimate sigma2_v c'(I x R)c + vc.
few_treated_theta_ <- function(m0, m1, mom) {
  ex <- m0 - mom$a0
  target <- ifelse(ex > 0, (m1 - mom$a1) / ex, 0)
  rho <- stats::approx(mom$ratio, mom$grid, target, rule = 2, ties = "ordered")$y
  hC <- stats::approx(mom$grid, mom$hC, rho)$y
  hc <- stats::approx(mom$grid, mom$hc, rho)$y
  s2v <- pmax(0, ex / (mom$kG * hC))
  list(rho = rho, sigma2_v = s2v, var = s2v * hc + mom$vc)
}

# The studentised DiD at the hypothesised effect b0 and its parametric
# bootstrap p-value (draws: Z [B, G, T] for the shocks, E [B, G T] for the
# noise, fixed across b0).
few_treated_stat_ <- function(ft, mom, b0, draws) {
  u <- c(ft$Y - b0 * ft$D)
  ut <- drop(mom$M %*% u)
  th <- few_treated_theta_(sum(ut^2), sum(ut[mom$lag] * ut[mom$lag - mom$G]), mom)
  est <- sum(mom$cm * ft$Y)
  tstat <- (est - b0) / sqrt(th$var)
  B <- dim(draws$Z)[1]
  L <- chol(stats::toeplitz(th$rho^(0:(mom$TT - 1))))
  U <- matrix(0, B, mom$G * mom$TT)
  for (g in seq_len(mom$G)) {
    U[, g + (seq_len(mom$TT) - 1L) * mom$G] <- sqrt(th$sigma2_v * mom$k[g]) *
      (draws$Z[, g, ] %*% L)
  }
  U <- U + sweep(draws$E, 2, sqrt(c(ft$V)), "*")
  Ut <- U %*% mom$M
  ths <- few_treated_theta_(rowSums(Ut^2),
                            rowSums(Ut[, mom$lag, drop = FALSE] * Ut[, mom$lag - mom$G, drop = FALSE]),
                            mom)
  tstar <- drop(U %*% c(mom$cm)) / sqrt(ths$var)
  list(estimate = est, std.error = sqrt(th$var), statistic = tstat, rho = th$rho,
       sigma2_v = th$sigma2_v,
       p_value = (1 + sum(abs(tstar) >= abs(tstat) - 1e-12)) / (B + 1))
}

#' @export
print.sfp_few_treated <- function(x, digits = 4, ...) {
  cat("DiD with few treated authorities: parametric bootstrap of AR(1) authority-period shocks\n")
  cat(sprintf("%d authorities (%d treated) x %d periods; %d draws\n", x$G, x$n_treated, x$T, x$B))
  cat(sprintf("rho %s, shock variance %s%s, child variance %s\n", format(x$rho, digits = digits),
              format(x$sigma2[["v"]], digits = digits),
              if (!isTRUE(x$shock_ratio == 1)) sprintf(" (treated authorities x %s)",
                                                       format(x$shock_ratio)) else "",
              format(x$sigma2[["e"]], digits = digits)))
  cat(sprintf("estimate %s (model SE %s), t = %s, bootstrap %s\n",
              format(x$estimate, digits = digits), format(x$std.error, digits = digits),
              format(x$statistic, digits = digits), format_p_(x$p_value, digits)))
  if (all(is.finite(x$conf_int))) {
    cat(sprintf("%g%% confidence interval (test inversion): [%s, %s]\n", 100 * x$level,
                format(x$conf_int[1], digits = digits), format(x$conf_int[2], digits = digits)))
  }
  invisible(x)
}

# ---- the warning -------------------------------------------------------------

# Fewest treated clusters at which each method held its size in simulation
# (null data shaped like the protocol's; bench/few_treated_size.R and
# bench/did_size.R): one treated authority of six, CR2 rejected 31.5% at 5%
# and the wild cluster restricted bootstrap 0.1-0.4%; two of seven, CR2 1.2%,
# WCR with Webb weights 3.8%.
few_treated_min_ <- data.frame(
  method = c("CR0", "CR1", "CR2", "CR3", "webb", "rademacher", "mammen"),
  label = c(rep("cluster-robust t-tests (%s)", 4),
            rep("the wild cluster bootstrap (%s weights)", 3)),
  min_treated = c(3L, 3L, 3L, 3L, 2L, 3L, 3L),
  stringsAsFactors = FALSE)

# Count the clusters with a treated row (treat != 0) and warn, with class
# "sfpceval_few_treated", when there are fewer than `method` needs. Returns
# the count invisibly. Used by did_fit() (method = its vcov) and wild_boot()
# (method = its weights).
few_treated_check_ <- function(treat, cluster, method, caller) {
  n_treated <- length(unique(cluster[!is.na(treat) & treat != 0]))
  few_treated_warn_(n_treated, length(unique(cluster)), method, caller)
  invisible(n_treated)
}

few_treated_warn_ <- function(n_treated, n_clusters, method, caller) {
  row <- few_treated_min_[few_treated_min_$method == method, ]
  if (is.null(n_treated) || !nrow(row) || is.na(n_treated) || n_treated == 0L || n_treated >= row$min_treated) {
    return(invisible(FALSE))
  }
  msg <- sprintf(paste0(
    "%s: %d treated cluster%s of %d: %s do not hold their size with fewer than %d treated ",
    "clusters (with one treated authority of six, CR2 rejected 31%% of true nulls at 5%% and ",
    "the wild cluster bootstrap under 1%%).\nFix: use few_treated_test(), which holds its size ",
    "with one or two treated authorities."),
    caller, n_treated, if (n_treated == 1L) "" else "s", n_clusters,
    sprintf(row$label, method), row$min_treated)
  warning(structure(class = c("sfpceval_few_treated", "warning", "condition"),
                    list(message = msg, call = NULL)))
  invisible(TRUE)
}

#' @exportS3Method generics::tidy
tidy.sfp_few_treated <- function(x, ...) {
  data.frame(term = "treated", estimate = x$estimate, std.error = x$std.error,
             statistic = x$statistic, p.value = x$p_value, conf.low = x$conf_int[1],
             conf.high = x$conf_int[2])
}

#' @exportS3Method generics::glance
glance.sfp_few_treated <- function(x, ...) {
  data.frame(n_groups = x$G, n_treated = x$n_treated, n_periods = x$T, rho = x$rho,
             sigma2_shock = x$sigma2[["v"]], sigma2_child = x$sigma2[["e"]],
             shock_ratio = x$shock_ratio, B = x$B)
}
