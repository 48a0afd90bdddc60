# Panel diagnostics of the Family Safeguarding protocol ("Analysis plan"): Breusch-Godfrey/Wooldridge and Wooldridge's FE tests for
# serial correlation, the (cluster-robust) Hausman test, and the protocol's
# 15%-repeat and 20%-practical-difference rules.  The panels are small
# (LA x period cells, or children x three terms), so this is plain R.

# ---- internal panel helpers -------------------------------------------------

# Validate and sort a panel: returns y, X (model matrix), integer id and
# time codes (sorted by id then time), the original row numbers and the
# number of rows left out for missing values. Stops if there is a single
# unit (`test` names what needs more).
panel_prep_ <- function(formula, data, id, time, cluster = NULL,
                        test = "a panel test") {
  if (!inherits(formula, "formula") || length(formula) != 3L) {
    stop_arg("formula", "must be a two-sided formula such as `y ~ treated + x`")
  }
  if (!is.data.frame(data)) stop_arg("data", "must be a data frame")
  for (a in c("id", "time")) {
    v <- get(a)
    if (!is.character(v) || length(v) != 1L || !v %in% names(data)) {
      stop_arg(a, "must be the name of a column of `data`",
               sprintf("e.g. %s = \"%s\"", a,
                       if (a == "id") "child_id" else "period"))
    }
  }
  cvec <- if (is.null(cluster)) NULL else resolve_cluster_(cluster, data)
  ok <- complete_rows_(formula, data, cvec) & !is.na(data[[id]]) &
    !is.na(data[[time]])
  n_dropped <- report_dropped_(ok, "the outcome, a regressor, the id, the time or the cluster")
  rows <- which(ok)
  d <- data[ok, , drop = FALSE]
  if (nrow(d) == 0L) stop_arg("data", "has no complete rows for this formula")
  ord <- order(d[[id]], d[[time]])
  d <- d[ord, , drop = FALSE]
  rows <- rows[ord]
  y <- stats::model.response(stats::model.frame(formula, d))
  if (!is.numeric(y)) stop_arg("formula", "has an outcome that is not numeric")
  X <- stats::model.matrix(formula, d)
  check_finite_(X, y, deparse(formula[[2]]))
  idc <- match(d[[id]], unique(d[[id]]))
  tlev <- sort(unique(d[[time]]))
  tc <- match(d[[time]], tlev)
  dup <- which(duplicated(cbind(idc, tc)))
  if (length(dup)) {
    stop_rows("data", paste0(id, ", ", time), rows[dup],
              "with an (id, time) pair seen in an earlier row",
              "a panel has one row per unit and period; aggregate or fix the keys")
  }
  if (max(idc) < 2L) {
    stop_arg("data", sprintf("has a single unit in `%s`", id),
             sprintf("%s needs two or more units", test))
  }
  list(y = as.double(y), X = X, id = idc, time = tc, rows = rows,
       cluster = if (is.null(cvec)) idc else cvec[rows],
       n_dropped = n_dropped, N = max(idc), T = length(tlev),
       Ti = tabulate(idc))
}

# Demean the columns of M by groups g (integer codes 1..G).
demean_ <- function(M, g) as.matrix(M) - group_means_w_(M, g)

# Two-way demeaning by alternating projections (exact in the limit, so it
# also holds for unbalanced panels).
demean2_ <- function(M, g, t, tol = 1e-13, maxit = 10000L) {
  M <- as.matrix(M)
  scale <- max(1, max(abs(M)))
  for (it in seq_len(maxit)) {
    M1 <- demean_(demean_(M, g), t)
    if (max(abs(M1 - M)) < tol * scale) return(M1)
    M <- M1
  }
  M
}

# Columns of a matrix that are (numerically) constant.
constant_cols_ <- function(M) {
  if (ncol(M) == 0L) return(logical())
  apply(M, 2, function(v) max(v) - min(v) <= 1e-10 * max(1, max(abs(v))))
}

# Within (FE) regression: y and X demeaned by id (or two-way).  Columns that
# are constant after demeaning (time-invariant, the intercept) are dropped.
# With weights `w` (one-way only): demeaned by weighted group means and
# fitted by weighted least squares (var(e_i) = sigma_e^2 / w_i).
within_fit_ <- function(P, effect = "individual", w = NULL) {
  X <- P$X[, colnames(P$X) != "(Intercept)", drop = FALSE]
  dm <- if (effect == "twoways") function(M) demean2_(M, P$id, P$time) else
    function(M) as.matrix(M) - group_means_w_(M, P$id, w)
  sw <- if (is.null(w)) 1 else sqrt(w)
  Xw <- dm(X)
  keep <- !constant_cols_(Xw) & colSums(abs(Xw)) > 0
  Xw <- Xw[, keep, drop = FALSE]
  yw <- drop(dm(P$y))
  q <- qr(sw * Xw)
  if (ncol(Xw) && q$rank < ncol(Xw)) {
    stop_arg("formula", sprintf("has collinear time-varying regressors: %s",
                                paste0("`", colnames(Xw)[q$pivot[(q$rank + 1):ncol(Xw)]], "`",
                                       collapse = ", ")),
             "remove them")
  }
  b <- if (ncol(Xw)) qr.coef(q, sw * yw) else numeric()
  e <- if (ncol(Xw)) drop(yw - Xw %*% b) else yw
  list(coef = b, resid = e, Xw = Xw, yw = yw, X = X[, keep, drop = FALSE],
       df = length(yw) - P$N - ncol(Xw))
}

# Group means of the columns of M, weighted by w (NULL: unweighted), one row
# per row of M (g: integer codes 1..G, each present).
group_means_w_ <- function(M, g, w = NULL) {
  M <- as.matrix(M)
  if (is.null(w)) return((rowsum(M, g, reorder = TRUE) / tabulate(g))[g, , drop = FALSE])
  (rowsum(M * w, g, reorder = TRUE) / rowsum(w, g, reorder = TRUE)[, 1])[g, , drop = FALSE]
}

# Random-effects variance components exactly as plm::ercomp() with its
# defaults: "swar" (Swamy-Arora: within and between regressions) and
# "amemiya" (within residuals only, usable with few groups; amemiya_()); balanced
# panels use plm's dfcor = c(2, 2) (swar) / c(1, 1) (amemiya), unbalanced
# panels its dfcor = 3 quadratic-form corrections.  Returns sigma2 (idios,
# id), theta per row and per unit, and the within fit.
re_components_ <- function(P, method = c("swar", "amemiya")) {
  method <- match.arg(method)
  if (method == "amemiya") {
    a <- amemiya_(P)
    return(list(sigma2 = a$sigma2, theta = a$theta[P$id], theta_unit = a$theta, within = a$within))
  }
  wf <- within_fit_(P)
  O <- length(P$y)
  N <- P$N
  Ti <- P$Ti
  KW <- ncol(wf$Xw)
  quad1 <- sum(wf$resid^2)
  gmean <- function(M) group_means_w_(M, P$id)
  X <- P$X[, colnames(P$X) != "(Intercept)", drop = FALSE]
  Z <- cbind(1, X)
  ZB <- gmean(Z)
  bq <- qr(ZB)
  quad2 <- sum(qr.resid(bq, gmean(P$y))^2)
  K <- ncol(Z) - 1L
  if (N - K - 1 <= 0) {
    stop_arg("random_method", sprintf(
      "\"swar\" needs more units (%d) than regressors plus one (%d)", N, K + 1L),
      "use random_method = \"amemiya\"")
  }
  s2e <- quad1 / (O - N - KW)
  if (length(unique(Ti)) == 1L) {
    s2u <- (quad2 / (N - K - 1) - s2e) / Ti[1]
  } else {
    ZS <- (rowsum(Z, P$id))[P$id, , drop = FALSE]
    m_eta <- O - sum(diag(solve(crossprod(ZB), crossprod(ZS, Z))))
    s2u <- (quad2 - (N - K - 1) * s2e) / m_eta
  }
  s2u <- re_variance_floor_(s2u, "pooled OLS")
  theta <- 1 - sqrt(s2e / (s2e + Ti * s2u))
  list(sigma2 = c(idios = s2e, id = s2u), theta = theta[P$id],
       theta_unit = theta, within = wf)
}

# Amemiya's components, with weights w (var(e_i) = sigma_e^2 / w_i; default
# 1): one function for the unweighted panels of the tests (plm's) and the
# weighted random-effects FGLS (fgls_re_w_()). Within WLS residuals r
# (weighted group demeaning), e = y - X b_W centred at its weighted mean,
# quad2 = sum_g W_g ebar_wg^2 (W_g the group's weight). Unweighted and
# balanced: plm's dfcor = c(1, 1), s2e = sum r^2 / (O - G), s2u = (quad2 / G -
# s2e) / T. Otherwise plm's unbalanced formulas (dfcor = 3) with counts
# replaced by weights: s2e = sum w r^2 / (O - G - K_W), E quad2 = m s2e + (W -
# sum W_g^2 / W) s2u with m = G - 1 + tr((Xw'W Xw)^-1 XB'W XB), XB the
# weighted group means of X centred at their weighted mean. Returns sigma2,
# theta per group and the within fit.
amemiya_ <- function(P, w = rep(1, length(P$y)), pooled = "pooled OLS") {
  wf <- within_fit_(P, w = w)
  g <- P$id
  O <- length(P$y)
  N <- P$N
  Wg <- rowsum(w, g, reorder = TRUE)[, 1]
  gmean <- function(M) group_means_w_(M, g, w)
  KW <- ncol(wf$Xw)
  quad1 <- sum(w * wf$resid^2)
  e <- P$y - if (KW) drop(wf$X %*% wf$coef) else 0
  e <- e - sum(w * e) / sum(w)
  quad2 <- sum(w * drop(gmean(e))^2)
  if (all(w == 1) && length(unique(P$Ti)) == 1L) {
    s2e <- quad1 / (O - N)
    s2u <- (quad2 / N - s2e) / P$Ti[1]
  } else {
    s2e <- quad1 / (O - N - KW)
    m_nu <- N - 1
    if (KW) {
      XB <- gmean(wf$X)
      XB <- sweep(XB, 2, colSums(w * XB) / sum(w))
      m_nu <- m_nu + sum(diag(solve(crossprod(sqrt(w) * wf$Xw), crossprod(sqrt(w) * XB))))
    }
    Wt <- sum(w)
    s2u <- (quad2 - m_nu * s2e) / (Wt - sum(Wg^2) / Wt)
  }
  s2u <- re_variance_floor_(s2u, pooled)
  list(sigma2 = c(idios = s2e, id = s2u), theta = 1 - sqrt(s2e / (s2e + Wg * s2u)),
       within = wf)
}

# A negative estimate of the random effect's variance is set to 0, with a
# warning naming the model it leaves (`pooled`).
re_variance_floor_ <- function(s2u, pooled) {
  if (s2u >= 0) return(s2u)
  warning("The estimated variance of the random effect is negative (",
          format(s2u, digits = 3), "); it is set to 0, so the random-effects ",
          "model is ", pooled, ".", call. = FALSE)
  0
}

# Quasi-demeaned data of the random-effects model (intercept becomes 1 -
# theta): z - theta z_bar with rc$theta per row and z_bar the group mean,
# weighted by w (NULL: unweighted; fgls_re_w_() passes its weights).
re_data_ <- function(P, rc, w = NULL) {
  th <- rc$theta
  gm <- function(M) group_means_w_(M, P$id, w)
  list(y = P$y - th * drop(gm(P$y)), X = P$X - th * gm(P$X))
}

# Cluster-robust (sandwich) variance of OLS coefficients.
#   type "CR1": Stata's factor G/(G-1) (N-1)/(N-K); "CR0": none (plm's
#   vcovHC(method = "arellano")).
ols_vcov_cl_ <- function(X, e, cluster, type = c("CR1", "CR0")) {
  type <- match.arg(type)
  bread <- solve(crossprod(X))
  sg <- rowsum(X * e, as.integer(factor(cluster)), reorder = FALSE)
  G <- nrow(sg)
  N <- nrow(X)
  K <- ncol(X)
  c_adj <- if (type == "CR1") G / (G - 1) * (N - 1) / (N - K) else 1
  c_adj * bread %*% crossprod(sg) %*% bread
}

# "p-value = 0.03" or "p-value < 2.2e-16"
format_p_ <- function(p, digits = 4) {
  s <- format.pval(p, digits = digits)
  if (startsWith(s, "<")) paste("p-value", s) else paste("p-value =", s)
}

htest_ <- function(stat, df, p, method, extra = list()) {
  structure(c(list(statistic = stat, parameter = df, p.value = unname(p),
                   method = method), extra),
            class = c("sfp_panel_test", "htest"))
}

# ---- serial correlation -----------------------------------------------------

#' Tests for serial correlation in panel residuals
#'
#' The Family Safeguarding protocol checks for serial correlation with the
#' Breusch-Godfrey test (footnote 23: serial correlation if p < 0.05). As
#' each child appears once, the test runs on a panel where serial
#' correlation can live: the LA x period panel of
#' cell means or residuals, or the three-term school-absence panel (child x
#' term).
#'
#' * `test = "bg"`: Breusch-Godfrey/Wooldridge. The residuals \eqn{\hat e} of
#'   the (quasi-)demeaned model are regressed on the demeaned regressors and
#'   \eqn{\hat e_{i,t-1}, \dots, \hat e_{i,t-p}}; \eqn{LM = nR^2 \sim
#'   \chi^2_p} (or an F test). With `lags = "within"` (default) the lags are
#'   taken within each unit over consecutive periods and rows without all
#'   lags are left out of the auxiliary regression. `lags = "stacked"`
#'   reproduces `plm::pbgtest()`, which passes the stacked panel to
#'   `lmtest::bgtest()`, so lags run across unit boundaries with the first
#'   rows zero-filled.
#' * `test = "wooldridge"`: Wooldridge's test for FE models
#'   (`plm::pwartest()`, Wooldridge 2010 s10.5.4): pooled OLS of the FE
#'   residual on its own lag; under no serial correlation of the
#'   idiosyncratic errors the slope is \eqn{-1/(T-1)}; \eqn{F = [(\hat\delta
#'   + 1/(T-1))/se]^2} with a cluster-robust (Arellano, HC0) standard error,
#'   \eqn{F(1, n - 2)}. Preferred for short panels such as the absence panel.
#'
#' @param formula `outcome ~ regressors`.
#' @param data A data frame with one row per unit and period.
#' @param id,time Names of the unit column (LA, or child) and the period
#'   column (sortable: year, quarter index, term number).
#' @param test `"bg"` or `"wooldridge"`.
#' @param model For `"bg"`: the model whose residuals are tested,
#'   `"within"` (fixed effects), `"random"` or `"pooling"`.
#' @param effect `"individual"` (unit effects) or `"twoways"` (unit and
#'   period effects, as in the DiD model).
#' @param order Order p of the Breusch-Godfrey test; default 1 with
#'   `lags = "within"`, and plm's `min(T_i)` with `lags = "stacked"`.
#' @param lags `"within"` or `"stacked"`; see Details.
#' @param type `"Chisq"` or `"F"` for the Breusch-Godfrey statistic.
#' @param cluster Cluster for the Wooldridge test's robust standard error:
#'   `NULL` (the unit, as plm) or a column name (e.g. the LA for the absence
#'   panel).
#' @param random_method Variance components for `model = "random"`:
#'   `"swar"` (plm's default) or `"amemiya"`.
#' @return An object of class `c("sfp_panel_test", "htest")` with
#'   `statistic`, `parameter` (degrees of freedom), `p.value`, `method`,
#'   `nobs` (rows of the auxiliary regression) and `serial_correlation`
#'   (p < 0.05, the protocol's rule).
#' @examples
#' set.seed(4)
#' d <- expand.grid(la = 1:10, year = 1:8)
#' d$x <- rnorm(80)
#' d$y <- d$x + rnorm(10)[d$la] + rnorm(80)
#' serial_test(y ~ x, d, id = "la", time = "year")
#' serial_test(y ~ x, d, id = "la", time = "year", test = "wooldridge")
#' @export
serial_test <- function(formula, data, id, time, test = c("bg", "wooldridge"),
                        model = c("within", "random", "pooling"),
                        effect = c("individual", "twoways"), order = NULL,
                        lags = c("within", "stacked"), type = c("Chisq", "F"),
                        cluster = NULL, random_method = c("swar", "amemiya")) {
  test <- match.arg(test)
  model <- match.arg(model)
  effect <- match.arg(effect)
  lags <- match.arg(lags)
  type <- match.arg(type)
  random_method <- match.arg(random_method)
  P <- panel_prep_(formula, data, id, time, cluster)
  if (P$T < 2L) {
    stop_arg("data", sprintf("has a single period in `%s`", time),
             "serial correlation needs two or more periods per unit")
  }
  if (test == "wooldridge") return(wooldridge_test_(P, effect))
  if (model == "random" && effect == "twoways") {
    stop_arg("effect", "\"twoways\" is not available with model = \"random\"",
             "use model = \"within\", or effect = \"individual\"")
  }
  if (model == "within") {
    wf <- within_fit_(P, effect)
    Xd <- wf$Xw
    yd <- wf$yw
  } else if (model == "random") {
    rd <- re_data_(P, re_components_(P, random_method))
    Xd <- rd$X
    yd <- rd$y
  } else {
    Xd <- P$X
    yd <- P$y
  }
  # as plm (cstcovar.rm = "all"): drop constant columns but the intercept
  Xd <- Xd[, !constant_cols_(Xd) | colnames(Xd) == "(Intercept)", drop = FALSE]
  resi <- if (ncol(Xd)) stats::lm.fit(Xd, yd)$residuals else yd
  n <- length(resi)
  if (is.null(order)) order <- if (lags == "stacked") min(P$Ti) else 1L
  if (!is.numeric(order) || length(order) != 1L || order < 1 || order != round(order)) {
    stop_arg("order", "must be a whole number of at least 1")
  }
  if (lags == "stacked") {
    Z <- vapply(seq_len(order), function(l) c(rep(0, min(l, n)), resi[seq_len(max(n - l, 0))]),
                numeric(n))
  } else {
    key <- P$id * (P$T + order + 1) + P$time
    Z <- vapply(seq_len(order), function(l) {
      resi[match(key - l, key)]
    }, numeric(n))
  }
  Z <- matrix(Z, n)
  use <- stats::complete.cases(Z)
  if (sum(use) <= ncol(Xd) + order) {
    stop_arg("order", sprintf(
      "(%d) leaves %d rows with all lags, too few for the auxiliary regression",
      order, sum(use)),
      "use a lower order, or lags = \"stacked\" to replicate plm::pbgtest()")
  }
  Xa <- cbind(Xd[use, , drop = FALSE], Z[use, , drop = FALSE])
  r <- resi[use]
  n_aux <- length(r)
  aux <- stats::lm.fit(Xa, r)
  k <- ncol(Xd)
  if (type == "Chisq") {
    stat <- n_aux * sum(aux$fitted.values^2) / sum(r^2)
    df <- c(df = order)
    p <- stats::pchisq(stat, order, lower.tail = FALSE)
  } else {
    ssu <- sum(aux$residuals^2)
    stat <- ((sum(r^2) - ssu) / order) / (ssu / (n_aux - k - order))
    df <- c(df1 = order, df2 = n_aux - k - order)
    p <- stats::pf(stat, df[1], df[2], lower.tail = FALSE)
  }
  names(stat) <- if (type == "Chisq") "chisq" else "F"
  htest_(stat, df, p, sprintf(
    "Breusch-Godfrey/Wooldridge test for serial correlation of order up to %d (%s model, %s lags)",
    as.integer(order), model, lags),
    list(nobs = n_aux, serial_correlation = p < 0.05))
}

wooldridge_test_ <- function(P, effect) {
  wf <- within_fit_(P, effect)
  e <- wf$resid
  key <- P$id * (P$T + 2) + P$time
  e1 <- e[match(key - 1, key)]
  use <- !is.na(e1)
  if (sum(use) < 3L) {
    stop_arg("data", "has fewer than 3 unit-periods with a previous period",
             "the Wooldridge test needs longer panels")
  }
  Xa <- cbind(1, e1[use])
  ya <- e[use]
  b <- qr.coef(qr(Xa), ya)
  V <- ols_vcov_cl_(Xa, drop(ya - Xa %*% b), P$cluster[use], "CR0")
  rho0 <- -1 / (P$T - 1)
  stat <- c(F = ((b[2] - rho0) / sqrt(V[2, 2]))^2)
  df <- c(df1 = 1, df2 = sum(use) - 2)
  p <- stats::pf(stat, df[1], df[2], lower.tail = FALSE)
  htest_(stat, df, p, "Wooldridge's test for serial correlation in FE panels",
         list(nobs = sum(use), estimate = c(slope = unname(b[2]), h0 = rho0),
              serial_correlation = unname(p < 0.05)))
}

#' @export
print.sfp_panel_test <- function(x, digits = 4, ...) {
  cat(x$method, "\n", sep = "")
  cat(sprintf("%s = %s, df = %s, %s\n", names(x$statistic),
              format(unname(x$statistic), digits = digits),
              paste(vapply(unname(x$parameter), format, "", digits = digits),
                    collapse = ", "),
              format_p_(x$p.value, digits)))
  if (!is.null(x$serial_correlation)) {
    cat(if (isTRUE(x$serial_correlation)) "Serial correlation (p < 0.05).\n" else
      "No evidence of serial correlation at the 5% level.\n")
  }
  if (!is.null(x$prefer)) cat(sprintf("Prefer the %s model (5%% level).\n", x$prefer))
  if (!is.null(x$comparison)) {
    cm <- x$comparison
    cat(sprintf(paste0(
      "%s: %s estimate %s vs main regression %s; difference %s (SE %s, t(%d), %s): %s\n",
      "  relative difference %+.1f%%: %s\n",
      "Protocol decision: %s\n"),
      cm$term, cm$chosen, format(cm$estimate_chosen, digits = digits),
      format(cm$estimate_main, digits = digits), format(cm$difference, digits = digits),
      format(cm$se_difference, digits = digits), as.integer(cm$df),
      format_p_(cm$p.value, digits),
      if (cm$statistically_different) "statistically different" else "not statistically different",
      100 * cm$relative_difference,
      if (cm$practically_different) "practically different (beyond 20%)" else
        "not practically different (within 20%)",
      if (cm$different) "statistically and practically different from the main regression" else
        "not both statistically and practically different: the main regression stands"))
  }
  invisible(x)
}

# ---- Hausman ------------------------------------------------------------------

#' Hausman test: fixed or random effects
#'
#' The protocol chooses between individual fixed and random effects "using
#' a cluster-robust Hausman test" and then asks whether the chosen model's
#' treatment estimate is "statistically different and practically different"
#' from the main regression's (`main`).
#'
#' * `method = "aux"` (default): Wooldridge's (2010 s10.7.3) auxiliary
#'   regression. The random-effects quasi-demeaned outcome is regressed on the
#'   quasi-demeaned regressors (intercept \eqn{1 - \hat\theta_i}) and the
#'   within-demeaned time-varying regressors \eqn{\tilde X}; \eqn{H =
#'   \hat\gamma'V(\hat\gamma)^{-1}\hat\gamma \sim \chi^2_k} for the
#'   coefficients \eqn{\hat\gamma} on \eqn{\tilde X}. With `vcov = "CR1"`
#'   (default) V is cluster-robust with Stata's small-sample factor, `"CR0"`
#'   is plm's `vcovHC(method = "arellano")` (so it equals
#'   `plm::phtest(method = "aux", vcov = function(x) vcovHC(x, method =
#'   "arellano"))`), and `"classical"` is the OLS variance (plm's
#'   `phtest(method = "aux")` without `vcov`), which ignores clustering.
#'   On a balanced panel the statistic equals plm's auxiliary regression;
#'   on an unbalanced one plm uses an intercept of 1 rather than
#'   \eqn{1 - \hat\theta_i}.
#' * `method = "classic"`: \eqn{(b_{FE} - b_{RE})'[V_{FE} -
#'   V_{RE}]^{-1}(b_{FE} - b_{RE})}, as `plm::phtest()`; not robust to
#'   clustering.
#'
#' @inheritParams serial_test
#' @param method `"aux"` or `"classic"`.
#' @param vcov For `"aux"`: `"CR1"`, `"CR0"` or `"classical"`.
#' @param cluster Cluster for the robust variance: `NULL` (the unit) or a
#'   column name, e.g. the LA when units are children.
#' @param main,param,threshold,level The protocol's second step: "whether
#'   the chosen model produces a statistically different and practically
#'   different estimate of the treatment effect to the treatment effect
#'   estimated from the main regression (where we take practically different
#'   to be 20% above or below)". `main` is the main regression as a formula
#'   (e.g. `y ~ treated + age + factor(la) + factor(year)`), fitted by least
#'   squares on the same rows; `param` the treatment term. The difference of
#'   the chosen model's estimate and the main one has a cluster-robust
#'   variance from the clusters' joint influence on both estimators
#'   (\eqn{\psi_g = (X'X)^{-1}X_g'e_g}, \eqn{V = G/(G-1)\sum_g(\psi_{chosen,g}
#'   - \psi_{main,g})^2}), tested with t(G - 1) at `1 - level`; practically
#'   different is [practically_different()] with `threshold`; on null
#'   children x terms panels it rejected 6.1% at 5% with 6 authorities and
#'   5.8% with 30 (`bench/hausman_size.R`). `NULL` (default) skips the step.
#' @return An object of class `c("sfp_panel_test", "htest")` with
#'   `statistic`, `parameter`, `p.value`, `method`, `sigma2` (variance
#'   components), `nobs`, `prefer` (`"fixed effects"` if p < 0.05, else
#'   `"random effects"`) and, with `main`, `comparison`: a one-row data frame
#'   with both estimates and standard errors, the difference, its SE,
#'   statistic, df and p-value, `statistically_different`,
#'   `relative_difference`, `practically_different` and `different` (both:
#'   the protocol's decision).
#' @examples
#' set.seed(5)
#' d <- expand.grid(child = 1:60, term = 1:3)
#' d$la <- (d$child - 1) %/% 12 + 1
#' u <- rnorm(60)
#' d$x <- rnorm(180) + 0.5 * u[d$child]
#' d$absence <- 2 + d$x + u[d$child] + rnorm(180)
#' hausman_test(absence ~ x, d, id = "child", time = "term", cluster = "la")
#' # and the protocol's comparison with the main regression
#' hausman_test(absence ~ x, d, id = "child", time = "term", cluster = "la",
#'              main = absence ~ x + factor(term), param = "x")
#' @export
hausman_test <- function(formula, data, id, time, method = c("aux", "classic"),
                         vcov = c("CR1", "CR0", "classical"), cluster = NULL,
                         random_method = c("swar", "amemiya"), main = NULL,
                         param = "treated", threshold = 0.2, level = 0.95) {
  method <- match.arg(method)
  vcov <- match.arg(vcov)
  random_method <- match.arg(random_method)
  P <- panel_prep_(formula, data, id, time, cluster, test = "the Hausman test")
  if (!"(Intercept)" %in% colnames(P$X)) {
    stop_arg("formula", "has no intercept", "keep the intercept (drop `- 1` / `+ 0`)")
  }
  rc <- re_components_(P, random_method)
  wf <- rc$within
  k <- ncol(wf$Xw)
  if (k == 0L) {
    stop_arg("formula", "has no time-varying regressors",
             "the Hausman test compares coefficients on time-varying regressors")
  }
  rd <- re_data_(P, rc)
  if (method == "aux") {
    Xa <- cbind(rd$X, wf$Xw)
    colnames(Xa) <- c(colnames(rd$X), paste0(colnames(wf$Xw), ".tilde"))
    q <- qr(Xa)
    b <- qr.coef(q, rd$y)
    e <- drop(rd$y - Xa %*% b)
    idx <- ncol(rd$X) + seq_len(k)
    V <- if (vcov == "classical") {
      sum(e^2) / (nrow(Xa) - ncol(Xa)) * chol2inv(qr.R(q))[order(q$pivot), order(q$pivot)]
    } else {
      ols_vcov_cl_(Xa, e, P$cluster, vcov)
    }
    g <- b[idx]
    stat <- drop(crossprod(g, solve(V[idx, idx, drop = FALSE], g)))
    label <- sprintf("Regression-based Hausman test (%s variance%s)", vcov,
                     if (vcov == "classical") "" else sprintf(", %d clusters",
                                                              length(unique(P$cluster))))
  } else {
    bw <- wf$coef
    vw <- sum(wf$resid^2) / wf$df * solve(crossprod(wf$Xw))
    q <- qr(rd$X)
    br <- qr.coef(q, rd$y)
    names(br) <- colnames(rd$X)
    er <- drop(rd$y - rd$X %*% br)
    vr <- sum(er^2) / (nrow(rd$X) - ncol(rd$X)) * solve(crossprod(rd$X))
    dimnames(vr) <- list(colnames(rd$X), colnames(rd$X))
    nm <- names(bw)
    d <- bw - br[nm]
    stat <- abs(drop(crossprod(d, solve(vw - vr[nm, nm, drop = FALSE], d))))
    label <- "Hausman test (classical)"
  }
  stat <- c(chisq = stat)
  p <- stats::pchisq(stat, k, lower.tail = FALSE)
  prefer <- if (p < 0.05) "fixed effects" else "random effects"
  comparison <- if (is.null(main)) NULL else
    hausman_compare_(P, data, rd, wf, main, param, prefer, threshold, level)
  htest_(stat, c(df = k), p, label,
         list(sigma2 = rc$sigma2, nobs = length(P$y), prefer = prefer,
              comparison = comparison))
}

# The protocol's second step: is the chosen (FE or RE) model's estimate of
# `param` statistically and practically different from the main
# regression's? Both are least squares on the same rows, so the variance of
# the difference comes from the clusters' joint influence:
# psi_g = (X'X)^{-1} X_g' e_g for each estimator, V = G/(G-1) sum_g
# (psi_chosen,g - psi_main,g)^2, t(G - 1) reference.
hausman_compare_ <- function(P, data, rd, wf, main, param, prefer, threshold, level) {
  if (!inherits(main, "formula") || length(main) != 3L) {
    stop_arg("main", "must be the main regression as a two-sided formula",
             "e.g. main = absence ~ treated + age + factor(la) + factor(term)")
  }
  if (!is.character(param) || length(param) != 1L) {
    stop_arg("param", "must name the treatment term compared with the main regression",
             "e.g. param = \"treated\"")
  }
  miss <- setdiff(all.vars(main), names(data))
  if (length(miss)) {
    stop_arg("main", sprintf("uses %s, not found in `data`",
                             paste0("`", miss, "`", collapse = ", ")))
  }
  dm <- data[P$rows, , drop = FALSE]
  na <- which(!stats::complete.cases(dm[all.vars(main)]))
  if (length(na)) {
    stop_rows("data", NULL, P$rows[na], "with a missing value in a variable of `main`",
              "compare the models on the same rows: remove those rows first")
  }
  Xm <- stats::model.matrix(main, dm)
  ym <- as.double(stats::model.response(stats::model.frame(main, dm)))
  ch <- if (prefer == "fixed effects") list(X = wf$Xw, y = wf$yw) else rd
  for (nm in c("main", "chosen")) {
    cols <- colnames(if (nm == "main") Xm else ch$X)
    if (!param %in% cols) {
      stop_arg("param", sprintf("(`%s`) is not a coefficient of the %s model%s", param,
                                if (nm == "main") "main" else prefer,
                                if (nm == "chosen" && prefer == "fixed effects")
                                  " (it must vary within units)" else ""),
               sprintf("use one of %s", paste0("`", utils::head(cols, 6), "`", collapse = ", ")))
    }
  }
  infl <- function(X, y) {
    q <- qr(X)
    if (q$rank < ncol(X)) {
      stop_arg("main", "has collinear regressors", "remove the redundant terms")
    }
    b <- qr.coef(q, y)
    e <- drop(y - X %*% b)
    j <- match(param, colnames(X))
    Bi <- chol2inv(qr.R(q))[order(q$pivot), order(q$pivot), drop = FALSE]
    psi <- drop(rowsum(X * e, P$cluster, reorder = TRUE) %*% Bi[, j])
    list(b = unname(b[j]), psi = psi)
  }
  m <- infl(Xm, ym)
  c_ <- infl(ch$X, ch$y)
  G <- length(m$psi)
  cf <- G / (G - 1)
  se <- function(psi) sqrt(cf * sum(psi^2))
  d <- c_$b - m$b
  se_d <- se(c_$psi - m$psi)
  # the same estimator twice (e.g. RE with no unit variance against pooled
  # OLS): the difference is rounding, not a statistic
  same <- abs(d) <= sqrt(.Machine$double.eps) * max(abs(c(c_$b, m$b)), 1e-300)
  tstat <- if (same) 0 else d / se_d
  pv <- 2 * stats::pt(-abs(tstat), G - 1)
  pr <- practically_different(c_$b, m$b, threshold)
  stat_diff <- pv < 1 - level
  data.frame(term = param, chosen = prefer, estimate_chosen = c_$b,
             se_chosen = se(c_$psi), estimate_main = m$b, se_main = se(m$psi),
             difference = d, se_difference = se_d, statistic = tstat, df = G - 1,
             p.value = pv, statistically_different = stat_diff,
             relative_difference = attr(pr, "relative_difference"),
             practically_different = as.vector(pr), different = stat_diff & as.vector(pr))
}

# ---- protocol decision rules -----------------------------------------------------

#' Share of individuals who occur repeatedly (the protocol's 15% rule)
#'
#' The Family Safeguarding protocol tries individual fixed- and
#' random-effects models "if the share of individuals that occur repeatedly
#' in our sample is larger than 15 percent" (Analysis plan), while its
#' footnote 25 measures the repeat sub-population against "all
#' observations". Both shares are returned; `basis` picks the one the
#' decision uses (default the main text's share of individuals).
#'
#' @param id Vector of individual identifiers, one per observation (row).
#' @param threshold The share above which multilevel models are tried.
#' @param basis `"individuals"` (share of distinct individuals seen more than
#'   once) or `"observations"` (share of rows belonging to such
#'   individuals).
#' @return An object of class `sfp_repeat_share`: a list with
#'   `n_observations`, `n_individuals`, `n_repeated`, `share_individuals`,
#'   `share_observations`, `threshold`, `basis` and `consider_multilevel`
#'   (logical).
#' @examples
#' repeat_share(c("a", "b", "b", "c", "d", "d", "d", "e"))
#' @export
repeat_share <- function(id, threshold = 0.15,
                         basis = c("individuals", "observations")) {
  basis <- match.arg(basis)
  if (!is.numeric(threshold) || length(threshold) != 1L || is.na(threshold) ||
      threshold < 0 || threshold > 1) {
    stop_arg("threshold", "must be a single share between 0 and 1")
  }
  if (length(id) == 0L) {
    stop_arg("id", "is empty", "give one identifier per observation")
  }
  if (anyNA(id)) {
    stop_rows("id", NULL, which(is.na(id)), "with a missing identifier",
              "fill in or remove those observations first")
  }
  tab <- table(id)
  rep_ids <- tab > 1L
  out <- list(n_observations = length(id), n_individuals = length(tab),
              n_repeated = sum(rep_ids),
              share_individuals = mean(rep_ids),
              share_observations = sum(tab[rep_ids]) / length(id),
              threshold = threshold, basis = basis)
  share <- if (basis == "individuals") out$share_individuals else out$share_observations
  out$consider_multilevel <- share > threshold
  structure(out, class = "sfp_repeat_share")
}

#' @export
print.sfp_repeat_share <- function(x, ...) {
  cat(sprintf("%d observations of %d individuals; %d individuals occur more than once\n",
              x$n_observations, x$n_individuals, x$n_repeated))
  cat(sprintf("share of individuals %.1f%%, share of observations %.1f%%\n",
              100 * x$share_individuals, 100 * x$share_observations))
  cat(sprintf("Rule (share of %s > %.0f%%): %s\n", x$basis, 100 * x$threshold,
              if (x$consider_multilevel) "try individual fixed/random effects" else
                "keep the main specification"))
  disclosure_status(c(x$n_observations, x$n_individuals, x$n_repeated))
  invisible(x)
}

#' Is an alternative estimate practically different from the main one?
#'
#' The protocol calls an estimate from an alternative model "practically
#' different" from the main regression's when it lies more than 20% above or
#' below it: \eqn{|\hat\beta_{alt}/\hat\beta_{main} - 1| > 0.2}.
#'
#' @param est_alt Estimate(s) from the alternative model.
#' @param est_main Estimate(s) from the main model (non-zero), recycled.
#' @param threshold The relative difference above which estimates differ.
#' @return A logical vector, with attribute `relative_difference`
#'   (\eqn{\hat\beta_{alt}/\hat\beta_{main} - 1}).
#' @examples
#' practically_different(c(-0.05, -0.035), -0.04)
#' @export
practically_different <- function(est_alt, est_main, threshold = 0.2) {
  if (!is.numeric(est_alt) || !is.numeric(est_main)) {
    stop_arg("est_alt/est_main", "must be numeric", "give the two estimates as numbers.")
  }
  if (!is.numeric(threshold) || length(threshold) != 1L || is.na(threshold) ||
      threshold < 0) {
    stop_arg("threshold", "must be a single non-negative number")
  }
  zero <- which(est_main == 0)
  if (length(zero)) {
    stop_arg("est_main", sprintf("is 0 at position %s, so a relative difference is undefined",
                                 paste(utils::head(zero, 5), collapse = ", ")),
             "compare the estimates on an absolute scale instead")
  }
  rel <- est_alt / est_main - 1
  structure(abs(rel) > threshold, relative_difference = rel)
}
