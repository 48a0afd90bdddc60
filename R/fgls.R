# Brewer, Crossley & Joyce's feasible GLS for few groups (`vignette("methods")`, section 2),
# with Hansen's (2007) bias correction of the AR(p) coefficients, and the
# LA random-effects GLS that the Family Safeguarding protocol's "feasible
# GLS ... random effects" wording allows (`vignette("methods")`, section 0 item 3).  The panel is
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
#'   - C3_j)/T} (`vignette("methods")`, section 2). For AR(1), \eqn{\rho = 0.5}, T = 10 it gives
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
#' period panel (`vignette("methods")`, section 2), which the Family Safeguarding protocol's
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
#' OLS, and the same cluster-robust variance and t(G - 1).
#'
#' The cell effects are unweighted cell means (BCJ). The panel must be
#' balanced: every group has at least one row in every period.
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
#' @return An object of class `sfp_fgls`: `coefficients` and `vcov` of the
#'   regressors, `df` (G - 1), `rho_hat` (uncorrected) and `rho` (used),
#'   `bc`, `bc_converged`, `G`, `T`, `p`, `nobs` (N), `K`, `micro`,
#'   `first_step` (coefficients of within-cell regressors), `panel` (the
#'   cell data: group, time, outcome, regressors, FE residual), `n_dropped`
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
                     tol = 1e-6, maxit = 100) {
  cl <- match.call()
  bc <- match.arg(bc)
  method <- match.arg(method)
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    stop_arg("formula", "must be a two-sided formula such as `y ~ treated + age`")
  }
  if (!is.data.frame(data)) stop_arg("data", "must be a data frame")
  for (a in c("group", "time")) {
    v <- get(a)
    if (!is.character(v) || length(v) != 1L || !v %in% names(data)) {
      stop_arg(a, "must be the name of a column of `data`",
               sprintf("e.g. %s = \"%s\"", a, if (a == "group") "la_code" else "year"))
    }
  }
  if (!is.numeric(p) || length(p) != 1L || is.na(p) || p < 1 || p != round(p)) {
    stop_arg("p", "must be a whole number of at least 1")
  }
  if (!is.numeric(tol) || length(tol) != 1L || !(tol > 0)) stop_arg("tol", "must be positive")
  if (!is.numeric(maxit) || length(maxit) != 1L || !(maxit >= 1)) {
    stop_arg("maxit", "must be at least 1")
  }
  ok <- complete_rows_(formula, data, NULL) & !is.na(data[[group]]) &
    !is.na(data[[time]])
  n_dropped <- report_dropped_(ok, "the outcome, a regressor, the group or the period")
  rows <- which(ok)
  d <- data[ok, , drop = FALSE]
  if (nrow(d) == 0L) stop_arg("data", "has no complete rows for this formula")
  y <- stats::model.response(stats::model.frame(formula, d))
  if (!is.numeric(y)) stop_arg("formula", "has an outcome that is not numeric")
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
  if (method == "re") {
    return(fgls_re_(y, X, gi, ti, glev, tlev, n_dropped, cl))
  }
  cell <- gi + (ti - 1L) * G
  counts <- tabulate(cell, G * T)
  if (any(counts == 0L)) {
    miss <- which(counts == 0L)
    mg <- glev[(miss - 1L) %% G + 1L]
    mt <- tlev[(miss - 1L) %/% G + 1L]
    stop(sprintf(paste0(
      "Table `data`: the %s x %s panel is unbalanced: %d of %d cells have no rows (%s%s).\n",
      "Fix: BCJ's FGLS needs every group observed in every period. Use coarser periods ",
      "(e.g. years instead of quarters) so every cell has data, drop the groups or ",
      "periods with empty cells, or use method = \"re\"."),
      group, time, length(miss), G * T,
      paste(utils::head(paste0(group, " ", mg, " in ", time, " ", mt), 5), collapse = ", "),
      if (length(miss) > 5) sprintf(" and %d more", length(miss) - 5) else ""),
      call. = FALSE)
  }
  if (T <= p) {
    stop_arg("p", sprintf("(%d) must be below the number of periods T = %d", as.integer(p), T),
             "use a lower AR order or more (shorter) periods")
  }
  micro <- any(counts > 1L)
  first_step <- NULL
  if (micro) {
    cmean <- function(M) rowsum(as.matrix(M), cell, reorder = TRUE) / counts
    within_var <- colSums((X - cmean(X)[cell, , drop = FALSE])^2)
    varies <- within_var > 1e-10 * pmax(1, colSums(X^2))
    Xi <- X[, varies, drop = FALSE]
    Xc <- X[, !varies, drop = FALSE]
    if (ncol(Xc) == 0L) {
      stop_arg("formula", "has no regressor that is constant within group x period cells",
               "the panel regression needs a cell-level regressor such as the treatment indicator")
    }
    gamma <- numeric()
    yr <- y
    if (ncol(Xi)) {
      Xd <- Xi - cmean(Xi)[cell, , drop = FALSE]
      qd <- qr(Xd)
      if (qd$rank < ncol(Xd)) {
        stop_arg("formula", sprintf("has collinear individual-level regressors: %s",
                                    paste0("`", colnames(Xd)[qd$pivot[(qd$rank + 1):ncol(Xd)]],
                                           "`", collapse = ", ")),
                 "remove them")
      }
      gamma <- qr.coef(qd, y - cmean(y)[cell])
      names(gamma) <- colnames(Xi)
      yr <- y - drop(Xi %*% gamma)
      first_step <- gamma
    }
    ycell <- drop(cmean(yr))
    Xcell <- cmean(Xc)
  } else {
    o <- order(cell)
    ycell <- y[o]
    Xcell <- X[o, , drop = FALSE]
  }
  colnames(Xcell) <- colnames(X)[if (micro) !varies else seq_len(ncol(X))]
  # cells are ordered group-fastest: index g + (t - 1) G
  cg <- rep(seq_len(G), T)
  ct <- rep(seq_len(T), each = G)
  FE <- cbind(stats::model.matrix(~ factor(cg))[, -1, drop = FALSE],
              stats::model.matrix(~ factor(ct))[, -1, drop = FALSE])
  W <- cbind("(Intercept)" = 1, Xcell, FE)
  kx <- ncol(Xcell)
  q <- qr(W)
  if (q$rank < ncol(W)) {
    bad <- colnames(W)[q$pivot[(q$rank + 1):ncol(W)]]
    bad <- intersect(bad, colnames(Xcell))
    if (!length(bad)) bad <- colnames(Xcell)[kx]
    stop_arg("formula", sprintf(
      "has regressors collinear with the group and period fixed effects: %s",
      paste0("`", bad, "`", collapse = ", ")),
      "a regressor constant within groups (or within periods) is absorbed; remove it")
  }
  u <- qr.resid(q, ycell)
  U <- matrix(u, G, T)
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
  # quasi-difference every column, drop the first p periods
  qd <- function(v) {
    V <- matrix(v, G, T)
    out <- V[, (p + 1):T, drop = FALSE]
    for (l in seq_len(p)) out <- out - rho[l] * V[, (p + 1 - l):(T - l), drop = FALSE]
    c(out)
  }
  # With the first p periods dropped, the intercept and T - 1 period dummies
  # span only T - p dimensions: drop the dummies of periods 2..p+1 (Stata
  # omits p of them too; the regressors' coefficients do not depend on which).
  redundant <- kx + 1L + (G - 1L) + seq_len(min(p, T - 1L))
  W <- W[, -redundant, drop = FALSE]
  ys <- qd(ycell)
  Ws <- apply(W, 2, qd)
  Ws <- matrix(Ws, ncol = ncol(W), dimnames = list(NULL, colnames(W)))
  qs <- qr(Ws)
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
  b <- qr.coef(qs, ys)
  e <- drop(ys - Ws %*% b)
  gs <- rep(seq_len(G), T - p)
  Vall <- ols_vcov_cl_(Ws, e, gs, "CR1")
  dimnames(Vall) <- list(colnames(W), colnames(W))
  names(b) <- colnames(W)
  keep <- colnames(Xcell)
  panel <- data.frame(glev[cg], tlev[ct], ycell, Xcell, fe_residual = u,
                      check.names = FALSE)
  names(panel)[1:3] <- c(group, time, deparse(formula[[2]]))
  structure(list(
    coefficients = b[keep], vcov = Vall[keep, keep, drop = FALSE],
    coefficients_all = b, vcov_all = Vall, df = G - 1, method = "ar",
    rho_hat = rho_hat, rho = rho, bc = bc, bc_converged = hc$converged,
    bc_iterations = hc$iterations, G = G, T = T, p = as.integer(p), nobs = N,
    K = K, micro = micro, first_step = first_step, panel = panel,
    n_dropped = n_dropped, call = cl
  ), class = "sfp_fgls")
}

# LA random-effects GLS (Amemiya variance components), CR1 by LA, t(G - 1).
fgls_re_ <- function(y, X, gi, ti, glev, tlev, n_dropped, cl) {
  G <- length(glev)
  TF <- if (length(tlev) > 1L) {
    stats::model.matrix(~ factor(ti))[, -1, drop = FALSE]
  } else matrix(0, length(y), 0)
  colnames(TF) <- if (ncol(TF)) paste0("period_", tlev[-1]) else character()
  Xf <- cbind("(Intercept)" = 1, X, TF)
  o <- order(gi, ti)
  q0 <- qr(Xf)
  if (q0$rank < ncol(Xf)) {
    bad <- colnames(Xf)[q0$pivot[(q0$rank + 1):ncol(Xf)]]
    stop_arg("formula", sprintf("has collinear regressors: %s",
                                paste0("`", bad, "`", collapse = ", ")),
             "remove them")
  }
  P <- list(y = y[o], X = Xf[o, , drop = FALSE], id = gi[o], time = ti[o],
            N = G, T = length(tlev), Ti = tabulate(gi, G))
  rc <- re_components_(P, "amemiya")
  rd <- re_data_(P, rc)
  q <- qr(rd$X)
  b <- qr.coef(q, rd$y)
  names(b) <- colnames(Xf)
  e <- drop(rd$y - rd$X %*% b)
  V <- ols_vcov_cl_(rd$X, e, P$id, "CR1")
  dimnames(V) <- list(colnames(Xf), colnames(Xf))
  keep <- colnames(X)
  theta <- stats::setNames(rc$theta_unit, glev)
  structure(list(
    coefficients = b[keep], vcov = V[keep, keep, drop = FALSE],
    coefficients_all = b, vcov_all = V, df = G - 1, method = "re",
    sigma2 = rc$sigma2, theta = theta, G = G, T = length(tlev),
    nobs = length(y), K = ncol(Xf), n_dropped = n_dropped, call = cl
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
