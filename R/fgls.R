# Brewer, Crossley & Joyce's feasible GLS for few groups,
# with Hansen's (2007) bias correction of the AR(p) coefficients, and the
# LA random-effects GLS that the Family Safeguarding protocol's "feasible
# GLS ... random effects" wording allows.  The panel is
# G x T cells (a few LAs by years or quarters), so this is plain R.

# ---- Hansen's bias correction ------------------------------------------------

# Autocorrelations gamma_0..gamma_n of a stationary AR(p) with
# coefficients rho (Yule-Walker).
ar_acf_ <- function(rho, n) {
  p <- length(rho)
  A <- diag(p)
  b <- numeric(p)
  for (h in seq_len(p)) {
    for (l in seq_len(p)) {
      m <- abs(h - l)
      if (m == 0L) b[h] <- b[h] + rho[l] else A[h, m] <- A[h, m] - rho[l]
    }
  }
  g <- c(1, solve(A, b))
  if (n > p) for (h in (p + 1):n) g[h + 1] <- sum(rho * g[h + 1 - seq_len(p)])
  g[seq_len(n + 1)]
}

ar_stationary_ <- function(rho) {
  all(is.finite(rho)) && all(Mod(polyroot(c(1, -rho))) > 1 + 1e-10)
}

#' Probability limit of the AR(p) estimator on fixed-effects residuals
#'
#' Pooled OLS of a group-demeaned AR(p) series on its own lags is biased
#' when T is small (Nickell; Hansen 2007). `hansen_plim()` gives its
#' probability limit \eqn{\pi_T(\rho)} as G grows with T fixed:
#'
#' * `method = "exact"`: \eqn{\pi_T = [\sum_{t>p}\tilde\Sigma_{L_t,L_t}]^{-1}
#'   \sum_{t>p}\tilde\Sigma_{L_t,t}}, \eqn{\tilde\Sigma = M\Gamma_T M},
#'   \eqn{M = I - 11'/T}, \eqn{L_t = (t-1, \dots, t-p)}.
#' * `method = "hansen"`: the approximation coded in Brewer, Crossley and
#'   Joyce's Stata ado, \eqn{[\Gamma_p + \Delta_{\cdot,2:p+1}/(T-p)]^{-1}
#'   [\gamma_p + \Delta_{\cdot,1}/(T-p)]} with \eqn{\Delta_{ij} = (S - C2_i
#'   - C3_j)/T}. For AR(1), \eqn{\rho = 0.5}, T = 10 it gives
#'   0.368 where the exact limit is 0.312.
#'
#' @param rho AR coefficients \eqn{(\rho_1, \dots, \rho_p)} of a stationary
#'   process.
#' @param T Number of periods per group (before any are dropped).
#' @param method `"exact"` or `"hansen"`.
#' @return Numeric vector of length p: the probability limit.
#' @examples
#' hansen_plim(0.5, 10, "exact")   # 0.312
#' hansen_plim(0.5, 10, "hansen")  # 0.368
#' @export
hansen_plim <- function(rho, T, method = c("exact", "hansen")) {
  method <- match.arg(method)
  p <- length(rho)
  if (!is.numeric(rho) || p == 0L || anyNA(rho)) {
    stop_arg("rho", "must be a numeric vector of AR coefficients")
  }
  if (!is.numeric(T) || length(T) != 1L || is.na(T) || T != round(T) || T <= 2 * p) {
    stop_arg("T", sprintf("must be a whole number above 2p = %d", 2L * p))
  }
  if (!ar_stationary_(rho)) {
    stop_arg("rho", "is not a stationary AR process",
             "the roots of 1 - rho_1 z - ... - rho_p z^p must lie outside the unit circle")
  }
  g <- ar_acf_(rho, T)
  R <- stats::toeplitz(g[seq_len(T)])
  if (method == "exact") {
    M <- diag(T) - 1 / T
    S <- M %*% R %*% M
    A <- matrix(0, p, p)
    b <- numeric(p)
    for (t in (p + 1):T) {
      L <- t - seq_len(p)
      A <- A + S[L, L, drop = FALSE]
      b <- b + S[L, t]
    }
    return(solve(A, b))
  }
  S <- sum(R)
  cs <- colSums(R)
  last <- (T - p + 1):T
  C2 <- vapply(seq_len(p), function(i) sum(cs[-c(seq_len(p - i), last)]), 0)
  C3 <- vapply(seq_len(p + 1), function(j) sum(cs[-c(seq_len(p - j + 1), last)]), 0)
  D <- outer(seq_len(p), seq_len(p + 1), function(i, j) (S - C2[i] - C3[j]) / T)
  Gp <- stats::toeplitz(g[seq_len(p)])
  solve(Gp + D[, 2:(p + 1), drop = FALSE] / (T - p), g[2:(p + 1)] + D[, 1] / (T - p))
}

# Hansen's iteration rho(k+1) = rho_hat - [pi_T(rho(k)) - rho(k)], stopped
# when the largest change relative to |rho| + 1 (Stata's mreldif) is below
# tol; without convergence the first iterate is used (as the ado).
hansen_correct_ <- function(rho_hat, T, bc, tol, maxit) {
  out <- list(rho = rho_hat, converged = NA, iterations = 0L, note = NULL)
  if (bc == "none") return(out)
  method <- if (bc == "exact") "exact" else "hansen"
  if (!ar_stationary_(rho_hat)) {
    out$note <- "the estimated AR coefficients are not stationary, so they were not bias-corrected"
    out$converged <- FALSE
    return(out)
  }
  r <- rho_hat
  first <- NULL
  for (k in seq_len(maxit)) {
    r_new <- rho_hat - (hansen_plim(r, T, method) - r)
    if (k == 1L) first <- r_new
    if (!ar_stationary_(r_new)) break
    if (max(abs(r_new - r) / (abs(r) + 1)) < tol) {
      return(list(rho = r_new, converged = TRUE, iterations = k, note = NULL))
    }
    r <- r_new
  }
  list(rho = first, converged = FALSE, iterations = k,
       note = "the bias correction did not converge; the first iterate is used")
}

# ---- FGLS ----------------------------------------------------------------------

#' Feasible GLS for difference-in-differences with few groups
#'
#' Brewer, Crossley and Joyce's (2018) bias-corrected FGLS on the group x
#' period panel, which the Family Safeguarding protocol's
#' primary analysis refers to:
#' 1. Micro data (several rows per LA x period cell) are first reduced to
#'    cell effects \eqn{\hat\delta_{gt}} from \eqn{Y_{igt} = X_{igt}\gamma +
#'    \delta_{gt} + e}: regressors that vary within cells (child covariates)
#'    are partialled out there; regressors constant within every cell (the
#'    treatment indicator, LA covariates) go to the panel regression. With
#'    one row per cell the data are the panel.
#' 2. OLS of the cell outcome on those regressors with group and period fixed
#'    effects; pooled OLS (no constant) of the residuals on their first p
#'    lags within group gives \eqn{\hat\rho}.
#' 3. Bias correction: \eqn{\rho^{(k+1)} = \hat\rho - [\pi_T(\rho^{(k)}) -
#'    \rho^{(k)}]} until the largest change relative to \eqn{|\rho| + 1}
#'    (Stata's `mreldif`) is below `tol`, else the first iterate is used.
#'    `bc = "hansen"` uses the approximate \eqn{\pi_T} of the authors' Stata
#'    ado `hansen` (its formulas, convergence rule and fallback were checked
#'    against the ado's code), `bc = "exact"` the exact fixed-T limit (see
#'    [hansen_plim()]), `"none"` skips it. Where the ado would carry on with a
#'    non-stationary AR process (whose autocorrelations do not exist),
#'    `fgls_bcj()` warns and uses the first iterate, or no correction when
#'    \eqn{\hat\rho} itself is non-stationary.
#' 4. Every column, the constant and the fixed effects included, is
#'    quasi-differenced, \eqn{z^*_{gt} = z_{gt} - \sum_l\tilde\rho_l
#'    z_{g,t-l}}; the first p periods of each group are dropped (no
#'    Prais-Winsten step). OLS gives \eqn{\hat\beta_{FGLS}}.
#' 5. Cluster-robust variance by group with \eqn{c = G/(G-1)\cdot
#'    (N-1)/(N-K)}, N = G(T - p), K all columns, and t(G - 1) inference.
#'
#' `method = "re"` instead fits an LA random-intercept model with period
#' fixed effects to the rows given (children or cells) by feasible GLS:
#' Amemiya's variance components from the within (LA fixed effects)
#' residuals, which work with few LAs, then quasi-demeaning by
#' \eqn{\hat\theta_g = 1 - \sqrt{\sigma_e^2/(\sigma_e^2 + n_g\sigma_u^2)}},
#' OLS, and the same cluster-robust variance and t(G - 1). With `weights`
#' (prior weights: residual variance \eqn{\sigma_e^2/w_i}) the rows are
#' quasi-demeaned by the weighted group mean with \eqn{\hat\theta_g = 1 -
#' \sqrt{\sigma_e^2/(\sigma_e^2 + W_g\sigma_u^2)}}, \eqn{W_g} the group's
#' weight, and fitted by weighted least squares; Amemiya's components are
#' plm's unbalanced-panel formulas with counts replaced by weights (within
#' residuals from the weighted within regression). Equal weights give the
#' unweighted fit; rows of weight 0 are left out and counted.
#'
#' **Treatment that starts inside a period.** The Family Safeguarding
#' treatment is the child's: 1 when the first referral falls on or after
#' the authority's go-live date. In the period that contains a go-live a
#' cell holds both treated and untreated children, so the cell is split by
#' the treatment (the first regressor, when it is 0/1) into its arms
#' (authority x period x arm). Each arm has its own cell effect and enters
#' the panel regression with a weight equal to its share of the cell's
#' weight, so a split cell counts as much as a whole one; the
#' group-period shock is the share-weighted residual of the cell's arms
#' (the AR regression uses it), and quasi-differencing subtracts from each
#' arm \eqn{\rho_l} times the share-weighted cell value of period
#' \eqn{t - l}. A panel without split cells and with equal weights gives
#' BCJ's estimator unchanged.
#'
#' **Weights** (e.g. CEM weights) enter the within-cell regression (weighted
#' least squares), the cell means (weighted means) and the arm shares. The
#' `panel` reports, per arm, the rows `n`, the weight, the share, Kish's
#' effective size \eqn{(\sum w)^2/\sum w^2} and the estimated sampling
#' variance of the weighted cell mean, \eqn{\sum w^2(r - \bar r)^2/(\sum
#' w)^2}. Rows of weight 0 are left out of every step and counted in
#' `n_zero_weight`.
#'
#' Without weights the cell effects are unweighted cell means (BCJ). The
#' panel must be balanced: every group has at least one row (of positive
#' weight) in every period.
#'
#' @param formula `outcome ~ treated + covariates` (fixed effects are added
#'   by the function; do not put group or period dummies in the formula).
#' @param data A data frame: micro data or one row per group x period.
#' @param group,time Names of the group (LA) and period columns.
#' @param p Order of the AR process of the group-period shocks.
#' @param bc Bias correction of the AR coefficients: `"hansen"`, `"exact"`
#'   or `"none"`.
#' @param method `"ar"` (BCJ's FGLS) or `"re"` (LA random-effects GLS).
#' @param tol,maxit Convergence tolerance (largest change relative to
#'   \eqn{|\rho| + 1}) and maximum iterations of the bias correction.
#' @param weights `NULL`, the name of a column of `data` or a vector with
#'   one non-negative weight per row (e.g. CEM weights).
#' @return An object of class `sfp_fgls`: `coefficients` and `vcov` of the
#'   regressors, `df` (G - 1), `rho_hat` (uncorrected) and `rho` (used),
#'   `bc`, `bc_converged`, `G`, `T`, `p`, `nobs` (N), `K`, `micro`,
#'   `first_step` (coefficients of within-cell regressors), `panel` (the
#'   arm data: group, time, outcome, regressors, FE residual, `n`, `weight`,
#'   `share`, `n_eff`, `var_mean`), `n_split` (cells split by treatment),
#'   `weighted`, `n_zero_weight`, `n_dropped`
#'   and `call`; for `method = "re"`, `sigma2` and `theta` instead of the AR
#'   terms. Methods: `print`, `summary`, `coef`, `vcov`, `confint`, `nobs`,
#'   `tidy`, `glance`.
#' @examples
#' set.seed(6)
#' d <- expand.grid(la = 1:8, year = 1:10)
#' d$treated <- as.integer(d$la <= 4 & d$year > 5)
#' d$y <- 0.3 * d$treated + rnorm(8)[d$la] + rnorm(80)
#' fit <- fgls_bcj(y ~ treated, d, group = "la", time = "year", p = 1)
#' fit
#' # Breusch-Godfrey on the LA x year panel of the two-way FE regression
#' serial_test(y ~ treated, fit$panel, id = "la", time = "year", effect = "twoways")
#' @export
fgls_bcj <- function(formula, data, group, time, p = 2,
                     bc = c("hansen", "exact", "none"), method = c("ar", "re"),
                     tol = 1e-6, maxit = 100, weights = NULL) {
  cl <- match.call()
  bc <- match.arg(bc)
  method <- match.arg(method)
  if (!is.numeric(p) || length(p) != 1L || is.na(p) || p < 1 || p != round(p)) {
    stop_arg("p", "must be a whole number of at least 1")
  }
  if (!is.numeric(tol) || length(tol) != 1L || !(tol > 0)) stop_arg("tol", "must be positive")
  if (!is.numeric(maxit) || length(maxit) != 1L || !(maxit >= 1)) {
    stop_arg("maxit", "must be at least 1")
  }
  P <- panel_rows_(formula, data, group, time, weights)
  y <- P$y
  X <- P$X
  w <- P$w
  weighted <- P$weighted
  gi <- P$gi
  ti <- P$ti
  glev <- P$glev
  tlev <- P$tlev
  G <- P$G
  T <- P$T
  n_dropped <- P$n_dropped
  if (method == "re") {
    pos <- w > 0
    empty <- setdiff(seq_len(G), gi[pos])
    if (length(empty)) {
      stop_arg("weights", sprintf("are 0 in every row of %s %s", group,
                                  paste(utils::head(glev[empty], 5), collapse = ", ")),
               "drop the group, or give its matched rows positive weights")
    }
    # equal weights are no weights (the model is the same)
    wp <- if (length(unique(w[pos])) > 1L) w[pos] else rep(1, sum(pos))
    fit <- fgls_re_w_(y[pos], X[pos, , drop = FALSE], wp, gi[pos], ti[pos], glev, tlev,
                      n_dropped, sum(!pos), cl)
    fit$weighted <- weighted
    return(fit)
  }
  check_balanced_(P, group, time)
  if (T <= p) {
    stop_arg("p", sprintf("(%d) must be below the number of periods T = %d", as.integer(p), T),
             "use a lower AR order or more (shorter) periods")
  }
  # rows of weight 0 carry nothing into any mean or regression: set aside, counted
  pos <- w > 0
  n_zero_weight <- sum(!pos)
  cells <- fgls_cells_(y[pos], X[pos, , drop = FALSE], w[pos],
                       gi[pos], ti[pos], G, T)
  Xcell <- cells$X
  kx <- ncol(Xcell)
  cg <- cells$tab$g
  ct <- cells$tab$t
  s <- cells$tab$share
  sw <- sqrt(s)
  FE <- cbind(stats::model.matrix(~ factor(cg, seq_len(G)))[, -1, drop = FALSE],
              stats::model.matrix(~ factor(ct, seq_len(T)))[, -1, drop = FALSE])
  W <- cbind("(Intercept)" = 1, Xcell, FE)
  q <- qr(sw * W)
  if (q$rank < ncol(W)) {
    bad <- colnames(W)[q$pivot[(q$rank + 1):ncol(W)]]
    bad <- intersect(bad, colnames(Xcell))
    if (!length(bad)) bad <- colnames(Xcell)[kx]
    stop_arg("formula", sprintf(
      "has regressors collinear with the group and period fixed effects: %s",
      paste0("`", bad, "`", collapse = ", ")),
      "a regressor constant within groups (or within periods) is absorbed; remove it")
  }
  ycell <- cells$y
  u <- ycell - drop(W %*% qr.coef(q, sw * ycell))
  # the group x period shock: the share-weighted residual of the cell's arms
  cagg <- function(v) {
    a <- rowsum(s * as.matrix(v), cg + (ct - 1L) * G, reorder = TRUE)
    matrix(a, G * T)
  }
  U <- matrix(cagg(u), G, T)
  # AR(p) on FE residuals: pooled OLS without constant, t > p
  resp <- c(U[, (p + 1):T])
  Z <- vapply(seq_len(p), function(l) c(U[, (p + 1 - l):(T - l)]), numeric(G * (T - p)))
  Z <- matrix(Z, ncol = p)
  rho_hat <- drop(solve(crossprod(Z), crossprod(Z, resp)))
  names(rho_hat) <- paste0("rho", seq_len(p))
  if (bc != "none" && T <= 2 * p) {
    stop_arg("p", sprintf("(%d) needs T > 2p periods for the bias correction; T = %d",
                          as.integer(p), T),
             "use a lower AR order, more periods, or bc = \"none\"")
  }
  hc <- hansen_correct_(rho_hat, T, bc, tol, maxit)
  if (!is.null(hc$note)) warning("fgls_bcj(): ", hc$note, ".", call. = FALSE)
  rho <- stats::setNames(hc$rho, names(rho_hat))
  # With the first p periods dropped, the intercept and T - 1 period dummies
  # span only T - p dimensions: drop the dummies of periods 2..p+1 (Stata
  # omits p of them too; the regressors' coefficients do not depend on which).
  redundant <- kx + 1L + (G - 1L) + seq_len(min(p, T - 1L))
  W <- W[, -redundant, drop = FALSE]
  # quasi-difference every column: each arm of cell (g, t) minus rho_l times
  # the share-weighted cell value of (g, t - l); the first p periods are dropped
  keep_rows <- ct > p
  qd <- function(v) {
    v <- as.matrix(v)
    A <- cagg(v)
    out <- v[keep_rows, , drop = FALSE]
    for (l in seq_len(p)) {
      lag <- cg[keep_rows] + (ct[keep_rows] - l - 1L) * G
      out <- out - rho[l] * A[lag, , drop = FALSE]
    }
    out
  }
  ys <- drop(qd(ycell))
  Ws <- qd(W)
  colnames(Ws) <- colnames(W)
  sk <- sw[keep_rows]
  qs <- qr(sk * Ws)
  if (qs$rank < ncol(Ws)) {
    stop_arg("formula", "is collinear with the fixed effects after quasi-differencing",
             "check the AR coefficients (a sum near 1 removes the group effects) and the regressors")
  }
  N <- nrow(Ws)
  K <- ncol(Ws)
  if (N <= K) {
    stop_arg("p", sprintf("leaves N = G(T - p) = %d quasi-differenced cells for K = %d columns",
                          N, K),
             "use a lower AR order or more periods")
  }
  b <- qr.coef(qs, sk * ys)
  e <- drop(ys - Ws %*% b)
  Vall <- ols_vcov_cl_(sk * Ws, sk * e, cg[keep_rows], "CR1")
  dimnames(Vall) <- list(colnames(W), colnames(W))
  names(b) <- colnames(W)
  keep <- colnames(Xcell)
  tab <- cells$tab
  panel <- data.frame(glev[cg], tlev[ct], ycell, Xcell, fe_residual = u,
                      n = tab$n, weight = tab$wsum, share = s, n_eff = tab$n_eff,
                      var_mean = tab$var_mean, check.names = FALSE)
  names(panel)[1:3] <- c(group, time, deparse(formula[[2]]))
  structure(list(
    coefficients = b[keep], vcov = Vall[keep, keep, drop = FALSE],
    coefficients_all = b, vcov_all = Vall, df = G - 1, method = "ar",
    rho_hat = rho_hat, rho = rho, bc = bc, bc_converged = hc$converged,
    bc_iterations = hc$iterations, G = G, T = T, p = as.integer(p), nobs = N,
    K = K, micro = cells$micro, first_step = cells$first_step, panel = panel,
    n_split = sum(duplicated(cg + (ct - 1L) * G)), weighted = weighted,
    n_zero_weight = n_zero_weight, n_dropped = n_dropped, call = cl
  ), class = "sfp_fgls")
}

# Rows of a group x period analysis (fgls_bcj(), few_treated_test()): checks
# the formula, data, group and time arguments and the weights, leaves out
# (and counts) incomplete rows, and returns y, X (no intercept), w (1 without
# weights), weighted, wname, gi, ti (codes of the sorted groups and periods),
# glev, tlev, G, T, n_dropped and rows (row numbers in `data`).
panel_rows_ <- function(formula, data, group, time, weights) {
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    stop_arg("formula", "must be a two-sided formula such as `y ~ treated + age`", "give outcome ~ treated + covariates.")
  }
  if (!is.data.frame(data)) stop_arg("data", "must be a data frame", "give the child-level records (one row per child).")
  for (a in c("group", "time")) {
    v <- if (a == "group") group else time
    if (!is.character(v) || length(v) != 1L || !v %in% names(data)) {
      stop_arg(a, "must be the name of a column of `data`",
               sprintf("e.g. %s = \"%s\"", a, if (a == "group") "la_code" else "year"))
    }
  }
  # a column missing in every row is named, not reported as "no complete rows"
  if (nrow(data)) {
    vars <- intersect(c(all.vars(formula), group, time), names(data))
    for (v in vars[vapply(vars, function(v) all(is.na(data[[v]])), TRUE)]) {
      role <- if (v == group) "the `group` column" else if (v == time) "the `time` column" else
        "this variable of the formula"
      stop_rows("data", v, seq_len(nrow(data)), sprintf(
        "with a missing value: %s is missing in every row, so no row can be used", role),
        sprintf("fill in `%s`, or name the right column%s.", v,
                if (v %in% c(group, time)) sprintf(" in `%s =`", if (v == group) "group" else "time") else
                  " in the formula"))
    }
  }
  wname <- if (is.character(weights) && length(weights) == 1L) weights else "weights"
  w <- resolve_weights_(weights, data)
  weighted <- !is.null(w)
  ok <- complete_rows_(formula, data, NULL) & !is.na(data[[group]]) &
    !is.na(data[[time]])
  n_dropped <- report_dropped_(ok, "the outcome, a regressor, the group or the period")
  rows <- which(ok)
  d <- data[ok, , drop = FALSE]
  if (nrow(d) == 0L) stop_arg("data", sprintf("has no complete rows for this formula (%d rows, none complete)", nrow(data)),
                              "check the outcome, regressors, group and period for missing values.")
  w <- if (weighted) w[ok] else rep(1, nrow(d))
  if (!any(w > 0)) {
    stop_rows("data", wname, rows, "all have weight 0, so nothing is estimated",
              "check the weights (CEM gives 0 to unmatched children); at least the matched rows need a positive weight")
  }
  y <- stats::model.response(stats::model.frame(formula, d))
  if (!is.numeric(y)) stop_arg("formula", sprintf("has an outcome that is not numeric (`%s`)", deparse(formula[[2]])),
                               "give a numeric outcome (0/1 for an event).")
  y <- as.double(y)
  X <- stats::model.matrix(formula, d)
  check_finite_(X, y, deparse(formula[[2]]))
  X <- X[, colnames(X) != "(Intercept)", drop = FALSE]
  if (ncol(X) == 0L) {
    stop_arg("formula", "has no regressors", "give the treatment indicator, e.g. y ~ treated")
  }
  glev <- sort(unique(d[[group]]))
  tlev <- sort(unique(d[[time]]))
  gi <- match(d[[group]], glev)
  ti <- match(d[[time]], tlev)
  G <- length(glev)
  T <- length(tlev)
  if (G < 2L) {
    stop_arg("data", sprintf("has a single group in `%s`", group),
             "FGLS with group fixed effects and clustering needs two or more groups")
  }
  list(y = y, X = X, w = w, weighted = weighted, wname = wname, gi = gi, ti = ti,
       glev = glev, tlev = tlev, G = G, T = T, n_dropped = n_dropped, rows = rows)
}


# Stop unless every group x period cell has a row of positive weight.
check_balanced_ <- function(P, group, time) {
  G <- P$G
  T <- P$T
  glev <- P$glev
  tlev <- P$tlev
  w <- P$w
  cell <- P$gi + (P$ti - 1L) * G
  counts <- tabulate(cell[w > 0], G * T)
  if (any(counts == 0L)) {
    miss <- which(counts == 0L)
    mg <- glev[(miss - 1L) %% G + 1L]
    mt <- tlev[(miss - 1L) %/% G + 1L]
    stop(sprintf(paste0(
      "Table `data`: the %s x %s panel is unbalanced: %d of %d cells have no rows%s (%s%s).\n",
      "Fix: BCJ's FGLS needs every group observed in every period. Use coarser periods ",
      "(e.g. years instead of quarters) so every cell has data, drop the groups or ",
      "periods with empty cells, or use method = \"re\"."),
      group, time, length(miss), G * T,
      if (any(w == 0)) " with a positive weight" else "",
      paste(utils::head(paste0(group, " ", mg, " in ", time, " ", mt), 5), collapse = ", "),
      if (length(miss) > 5) sprintf(" and %d more", length(miss) - 5) else ""),
      call. = FALSE)
  }
  invisible(TRUE)
}

# Cell effects for BCJ's FGLS.  Rows (weight w > 0) fall in group x period
# cells; a cell where the treatment (the first regressor, when it is 0/1)
# changes -- a go-live inside the period -- is split into its
# arms.  Within arms, regressors that vary are partialled out by weighted
# least squares with arm effects; the rest are weighted arm means.
#   returns y, X (arm means, arms ordered by period, group, arm), tab (g, t,
#   n rows, wsum, share of the cell's weight, Kish n_eff = wsum^2 / sum w^2,
#   var_mean = sum w^2 (r - rbar)^2 / wsum^2 of the adjusted outcome r,
#   ssw = sum w (r - rbar)^2, w2 = sum w^2),
#   first_step (named coefficients or NULL), micro (any arm with > 1 row).
fgls_cells_ <- function(y, X, w, gi, ti, G, T) {
  cell <- gi + (ti - 1L) * G
  d1 <- X[, 1]
  arm <- if (all(d1 %in% c(0, 1))) as.integer(d1) + 1L else rep(1L, length(y))
  key <- (cell - 1L) * 2L + arm
  ukey <- sort(unique(key))
  a <- match(key, ukey)
  na <- length(ukey)
  wsum <- as.vector(rowsum(w, a, reorder = TRUE))
  wmean <- function(M) rowsum(w * as.matrix(M), a, reorder = TRUE) / wsum
  within_var <- colSums(w * (X - wmean(X)[a, , drop = FALSE])^2)
  varies <- within_var > 1e-10 * pmax(1, colSums(w * X^2))
  Xi <- X[, varies, drop = FALSE]
  Xc <- X[, !varies, drop = FALSE]
  if (ncol(Xc) == 0L) {
    stop_arg("formula", "has no regressor that is constant within group x period cells",
             "the panel regression needs a cell-level regressor such as the treatment indicator")
  }
  first_step <- NULL
  r <- y
  if (ncol(Xi)) {
    Xd <- Xi - wmean(Xi)[a, , drop = FALSE]
    qd <- qr(sqrt(w) * Xd)
    if (qd$rank < ncol(Xd)) {
      stop_arg("formula", sprintf("has collinear individual-level regressors: %s",
                                  paste0("`", colnames(Xd)[qd$pivot[(qd$rank + 1):ncol(Xd)]],
                                         "`", collapse = ", ")),
               "remove them")
    }
    first_step <- stats::setNames(qr.coef(qd, sqrt(w) * (y - wmean(y)[a])), colnames(Xi))
    r <- y - drop(Xi %*% first_step)
  }
  ybar <- drop(wmean(r))
  ucell <- (ukey - 1L) %/% 2L + 1L
  ctot <- as.vector(rowsum(wsum, ucell, reorder = FALSE))[match(ucell, unique(ucell))]
  tab <- data.frame(g = (ucell - 1L) %% G + 1L, t = (ucell - 1L) %/% G + 1L,
                    n = tabulate(a, na), wsum = wsum, share = wsum / ctot,
                    n_eff = wsum^2 / as.vector(rowsum(w^2, a, reorder = TRUE)),
                    var_mean = as.vector(rowsum(w^2 * (r - ybar[a])^2, a, reorder = TRUE)) /
                      wsum^2,
                    ssw = as.vector(rowsum(w * (r - ybar[a])^2, a, reorder = TRUE)),
                    w2 = as.vector(rowsum(w^2, a, reorder = TRUE)))
  Xm <- wmean(Xc)
  colnames(Xm) <- colnames(X)[!varies]
  list(y = ybar, X = Xm, tab = tab, first_step = first_step, micro = any(tab$n > 1L))
}

# LA random-effects GLS (Amemiya variance components, amemiya_()), CR1 by
# LA, t(G - 1), with weights w > 0 (1: unweighted, plm's):
# y = a + X b + tau_t + u_g + e, var(e_i) = sigma_e^2 / w_i. The GLS
# transform is sqrt(w_i) (y_i - theta_g ybar_wg), ybar_wg the weighted group
# mean, theta_g = 1 - sqrt(s2e / (s2e + W_g s2u)), W_g the group's weight.
fgls_re_w_ <- function(y, X, w, gi, ti, glev, tlev, n_dropped, n_zero_weight, cl) {
  G <- length(glev)
  TF <- if (length(tlev) > 1L) {
    stats::model.matrix(~ factor(ti, seq_along(tlev)))[, -1, drop = FALSE]
  } else matrix(0, length(y), 0)
  colnames(TF) <- if (ncol(TF)) paste0("period_", tlev[-1]) else character()
  Xf <- cbind("(Intercept)" = 1, X, TF)
  q0 <- qr(Xf)
  if (q0$rank < ncol(Xf)) {
    bad <- colnames(Xf)[q0$pivot[(q0$rank + 1):ncol(Xf)]]
    stop_arg("formula", sprintf("has collinear regressors: %s", paste0("`", bad, "`", collapse = ", ")),
             "remove them")
  }
  weighted <- length(unique(w)) > 1L
  P <- list(y = y, X = Xf, id = gi, N = G, Ti = tabulate(gi, G))
  a <- amemiya_(P, w, if (weighted) "pooled weighted least squares" else "pooled OLS")
  theta <- a$theta
  sw <- sqrt(w)
  rd <- re_data_(P, list(theta = theta[gi]), w)
  Xs <- rd$X
  ys <- rd$y
  q <- qr(sw * Xs)
  b <- qr.coef(q, sw * ys)
  names(b) <- colnames(Xf)
  e <- drop(ys - Xs %*% b)
  V <- ols_vcov_cl_(sw * Xs, sw * e, gi, "CR1")
  dimnames(V) <- list(colnames(Xf), colnames(Xf))
  keep <- colnames(X)
  structure(list(
    coefficients = b[keep], vcov = V[keep, keep, drop = FALSE],
    coefficients_all = b, vcov_all = V, df = G - 1, method = "re",
    sigma2 = a$sigma2, theta = stats::setNames(theta, glev), G = G,
    T = length(tlev), nobs = length(y), K = ncol(Xf), weighted = weighted,
    n_zero_weight = n_zero_weight, n_dropped = n_dropped, call = cl
  ), class = "sfp_fgls")
}

#' @export
coef.sfp_fgls <- function(object, ...) object$coefficients

#' @export
vcov.sfp_fgls <- function(object, ...) object$vcov

#' @export
nobs.sfp_fgls <- function(object, ...) object$nobs

#' @export
confint.sfp_fgls <- function(object, parm, level = 0.95, ...) {
  confint.sfp_mle(object, parm, level)
}

#' @exportS3Method generics::tidy
tidy.sfp_fgls <- function(x, conf.int = TRUE, conf.level = 0.95, ...) {
  tidy.sfp_mle(x, conf.int = conf.int, conf.level = conf.level)
}

#' @exportS3Method generics::glance
glance.sfp_fgls <- function(x, ...) {
  out <- data.frame(method = x$method, nobs = x$nobs, n_groups = x$G,
                    n_periods = x$T, df = x$df)
  if (x$method == "ar") {
    out$p <- x$p
    out$bc <- x$bc
    out$bc_converged <- x$bc_converged
    out$rho_sum <- sum(x$rho)
  } else {
    out$sigma2_idios <- x$sigma2[["idios"]]
    out$sigma2_group <- x$sigma2[["id"]]
  }
  out
}

#' @export
summary.sfp_fgls <- function(object, ...) {
  structure(list(object = object,
                 table = coef_table_(object$coefficients, object$vcov, object$df)),
            class = "summary.sfp_fgls")
}

#' @export
print.summary.sfp_fgls <- function(x, digits = 4, ...) {
  print(x$object, digits = digits)
  invisible(x)
}

#' @export
print.sfp_fgls <- function(x, digits = 4, ...) {
  if (x$method == "ar") {
    cat(sprintf("BCJ feasible GLS, AR(%d) group-period shocks, bias correction: %s\n",
                x$p, x$bc))
    cat(sprintf("%d groups x %d periods%s; %d quasi-differenced cells, %d columns\n",
                x$G, x$T, if (x$micro) " (cell effects from micro data)" else "",
                x$nobs, x$K))
    if (isTRUE(x$n_split > 0) || isTRUE(x$weighted)) {
      cat(sprintf("%s%s\n",
                  if (isTRUE(x$n_split > 0)) sprintf(
                    "%d cells split by treatment (go-live inside the period)", x$n_split) else "",
                  if (isTRUE(x$weighted)) sprintf(
                    "%sweighted cell means%s", if (isTRUE(x$n_split > 0)) "; " else "",
                    if (x$n_zero_weight > 0) sprintf(", %d rows of weight 0 left out",
                                                     x$n_zero_weight) else "") else ""))
    }
    cat("rho (uncorrected):", format(x$rho_hat, digits = digits), "\n")
    cat("rho (used):       ", format(x$rho, digits = digits),
        if (isFALSE(x$bc_converged)) "(correction not converged: first iterate)" else "",
        "\n")
  } else {
    cat("Random-effects GLS (group random intercept, period fixed effects)\n")
    cat(sprintf("%d rows in %d groups; sigma2 idiosyncratic %s, group %s\n",
                x$nobs, x$G, format(x$sigma2[["idios"]], digits = digits),
                format(x$sigma2[["id"]], digits = digits)))
  }
  if (x$n_dropped > 0) cat(sprintf("%d rows with missing values left out\n", x$n_dropped))
  cat(sprintf("Cluster-robust SEs by group (CR1), t(%d) reference\n", as.integer(x$df)))
  tab <- coef_table_(x$coefficients, x$vcov, x$df)
  m <- as.matrix(tab[-1])
  dimnames(m) <- list(tab$term, c("Estimate", "Std. Error", "t value", "Pr(>|t|)"))
  print(signif(m, digits))
  invisible(x)
}
