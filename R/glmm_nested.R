# Logistic GLMM with random intercepts for the authority and for the child
# within it, `(1 | la / child_id)`, by the Laplace approximation (issue #14).
# sw_glmm() comes here for a binomial formula with the nested term; the C
# core is src/glmm_nested.c (ffi_glmm_nested).
#
# Model: logit P(y = 1) = x'beta + s1 u_la + s2 v_child, u, v ~ N(0, 1)
# independent (lme4's spherical parametrisation; s1, s2 are the SDs). A
# child id seen in two authorities is two level-2 units (la / child_id
# means child_id within la, as lme4 reads it: the term `child_id:la`).
#
# Per authority the joint mode of (u_la, v_1..v_m) has an arrowhead Hessian,
# so the mode, the log-determinant and every solve cost O(m) (see the C
# file). The log-likelihood's gradient in theta = (beta, s1, s2) is exact
# for the approximation. The outer optimiser is damped Newton on an
# approximate information (nested_info()); the standard errors come from the
# exact Hessian of the approximation (nested_hessian(): second derivatives
# in C through the same arrowhead structure, one evaluation; until #14 it
# was forward differences of the gradient, kept as nested_hessian_fd() for
# the tests and bench/glmm_nested.R).

# Cells of the nested model: a child's rows with the same model-matrix row
# (the row-grouping engine, via binom_cells()), sorted by child, children
# sorted by authority. Returns the cells with `lstart` (first child of each
# authority, 0-based), `rows` (the non-zeros of X by row) and the labels.
nested_cells <- function(prep) {
  G <- length(prep$levels)
  C <- length(prep$child_levels)
  la_of_child <- prep$cl[match(seq_len(C), prep$child)]
  o <- order(la_of_child, seq_len(C))
  code <- integer(C)
  code[o] <- seq_len(C)
  child <- code[prep$child]
  # the (child, row) key by integer matching on the rows' key when
  # glmm_prepare() made one (as binom_fit()), not a second hash of X
  d <- binom_cells(prep$X, prep$y, child, C, prep$trials, prep$row_key)
  d$lstart <- as.integer(c(0L, cumsum(tabulate(la_of_child[o], G))))
  d$rows <- binom_rows(d$X)
  d$child_levels <- prep$child_levels[o]
  d$G <- G
  d$C <- C
  d
}

# Laplace log-likelihood (without the binomial coefficients) at
# theta = (beta, s1, s2); what = 1 adds its gradient. u0: modes to start from.
nested_eval <- function(d, theta, what = 0L, u0 = double(0)) {
  p <- length(theta) - 2L
  .Call(ffi_glmm_nested, d$s, d$n, d$cstart, d$lstart, d$rows,
        as.double(theta[seq_len(p)]), as.double(theta[p + 1:2]), as.double(u0),
        as.integer(what))
}

# The exact Hessian of the Laplace log-likelihood over `free` at theta (C:
# nested_hess() in src/glmm_nested.c), from `cur` when it was evaluated with
# what = 3 (else one evaluation from its modes); attribute "fails": 1 if
# that extra evaluation's conditional-mode search failed (a failure at
# `cur` itself is the estimate's).
nested_hessian <- function(d, theta, free, cur) {
  fails <- 0L
  if (is.null(cur$hessian)) {
    cur <- nested_eval(d, theta, 3L, cur$mode)
    fails <- as.integer(cur$fail > 0L)
  }
  structure(cur$hessian[free, free, drop = FALSE], fails = fails)
}

# The same by forward differences of the exact gradient (step 1e-7
# relative; the modes start from the point's), symmetrised; attribute
# "fails": the evaluations whose conditional-mode search failed. The
# standard errors' method until #14: kept to check nested_hessian() against
# (tests, bench/glmm_nested.R).
nested_hessian_fd <- function(d, theta, free, cur) {
  m <- length(free)
  H <- matrix(0, m, m)
  fails <- 0L
  for (i in seq_len(m)) {
    j <- free[i]
    tp <- theta
    tp[j] <- tp[j] + 1e-7 * max(1, abs(theta[j]))
    h <- tp[j] - theta[j]
    e <- nested_eval(d, tp, 1L, cur$mode)
    fails <- fails + (e$fail > 0L)
    H[, i] <- (e$gradient[free] - cur$gradient[free]) / h
  }
  structure((H + t(H)) / 2, fails = fails)
}

# Information (minus Hessian) over `free` for the Newton steps, as
# binom_info(): the fixed-effects block without its third-derivative terms
# (from C, with the gradient: what = 2), the columns of the SDs by forward
# differences of the gradient (two evaluations). At s1 = s2 = 0 it is the
# exact information of the logistic regression. Attribute "fails" as
# nested_hessian().
nested_info <- function(d, theta, free, cur) {
  p <- length(theta) - 2L
  info <- matrix(0, p + 2L, p + 2L)
  info[1:p, 1:p] <- cur$info
  fails <- 0L
  for (j in intersect(free, p + 1:2)) {
    tp <- theta
    tp[j] <- tp[j] + 1e-6 * max(1, abs(theta[j]))
    h <- tp[j] - theta[j]
    e <- nested_eval(d, tp, 1L, cur$mode)
    fails <- fails + (e$fail > 0L)
    col <- -(e$gradient - cur$gradient) / h
    info[, j] <- col
    info[j, ] <- col
  }
  structure(info[free, free, drop = FALSE], fails = fails)
}

# Damped Newton (damped_newton()) over the parameters `free` of theta on
# nested_info(); the modes start from u0, then from the current point's.
# The last step (taken once the decrement is below the tolerance) needs no
# information matrix: what = 1 there.
nested_newton <- function(d, theta, free, ctrl, u0 = double(0)) {
  cur <- nested_eval(d, theta, 2L, u0)
  m0 <- cur$mode
  damped_newton(function(th) nested_eval(d, th, 2L, m0), function(th, cur) nested_info(d, th, free, cur),
                theta, free, ctrl, cur, last = function(th) nested_eval(d, th, 1L, m0),
                moved = function(cur) m0 <<- cur$mode)
}

# The maximisation: the logistic regression (s1 = s2 = 0) as the start of a
# cold fit, Newton over (beta, s1, s2), and the boundary rule (an SD below
# ctrl$boundary_tol is refitted at 0; both, or no gain over the logistic
# regression: the logistic regression). A warm start keeps an SD that was
# at 0 there unless a small SD is better. Returns list(res, f0, zero, free,
# fails): fails counts the evaluations of all the Newton runs and checks
# whose conditional-mode search failed.
nested_optimise <- function(d, p, beta0, start, ctrl, u0 = double(0)) {
  fails <- 0L
  newton <- function(...) {
    r <- nested_newton(...)
    fails <<- fails + r$fails
    r
  }
  fit_f0 <- function() newton(d, c(beta0, 0, 0), seq_len(p), ctrl)
  if (is.null(start)) {
    f0 <- fit_f0()
    th0 <- c(f0$theta[seq_len(p)], 1, 1)
    fixed0 <- integer()
  } else {
    # a warm start keeps an SD that was at the boundary at 0 (checked below)
    f0 <- NULL
    s0 <- abs(unname(start$theta[p + 1:2]))
    fixed0 <- which(s0 == 0)
    th0 <- c(unname(start$theta[seq_len(p)]), ifelse(s0 == 0, 0, pmax(s0, 0.1)))
  }
  res <- newton(d, th0, setdiff(seq_len(p + 2L), p + fixed0), ctrl, u0)
  if (length(fixed0)) {
    # is 0 still the maximum along each SD held there? (the log-likelihood is
    # even in each SD, so compare it with a small SD)
    th <- res$theta
    up <- vapply(fixed0, function(j) {
      e <- nested_eval(d, replace(th, p + j, 0.05), 0L, res$cur$mode)
      fails <<- fails + (e$fail > 0L)
      e$loglik > res$cur$loglik
    }, TRUE)
    if (any(up)) {
      res <- newton(d, replace(th, p + fixed0[up], 0.1),
                           setdiff(seq_len(p + 2L), p + fixed0[!up]), ctrl, res$cur$mode)
    }
  }
  # a variance component at the boundary: refit with it fixed at 0; both:
  # the logistic regression (also when it is no worse than the mixed model)
  zero <- which(abs(res$theta[p + 1:2]) < ctrl$boundary_tol)
  if (length(zero) < 2L && !is.null(f0) &&
      res$cur$loglik <= f0$cur$loglik + 1e-10 * abs(f0$cur$loglik)) zero <- 1:2
  free <- seq_len(p + 2L)
  if (length(zero) == 2L) {
    f0 <- f0 %||% fit_f0()
    res <- f0
    free <- seq_len(p)
  } else if (length(zero)) {
    th <- res$theta
    th[p + zero] <- 0
    free <- setdiff(free, p + zero)
    if (!all(zero %in% fixed0)) res <- newton(d, th, free, ctrl, res$cur$mode)
  }
  list(res = res, f0 = f0, zero = zero, free = free, fails = fails)
}

# The conditional modes a warm start begins from: the earlier fit's
# (glmm_start()$modes) when its authorities and children are these, in this
# order (the mode search from them converges to the same modes; they only
# save its first iterations); else none (from 0).
nested_start_modes <- function(start, la, d) {
  m <- start$modes
  if (is.null(m) || !identical(m$la, la) || !identical(m$child, d$child_levels) ||
      length(m$value) != d$G + d$C) return(double(0))
  m$value
}

# The fit (sw_glmm() with a binomial family and a `(1 | la / child_id)`
# term). `start`: glmm_start() of an earlier fit of the same model (analyse()
# across imputations).
nested_fit <- function(prep, ctrl, start = NULL) {
  d <- nested_cells(prep)
  p <- ncol(d$X)
  nm <- colnames(d$X)
  # a warm start applies only to the same columns
  if (!is.null(start) && !(length(start$theta) == p + 2L &&
                           identical(names(start$theta)[seq_len(p)], nm))) start <- NULL
  beta0 <- if (!is.null(start$beta0)) unname(start$beta0) else {
    b <- double(p)
    j0 <- which(nm == "(Intercept)")
    if (length(j0)) b[j0] <- stats::qlogis(sum(d$s) / sum(d$n))
    b
  }
  opt <- nested_optimise(d, p, beta0, start, ctrl, nested_start_modes(start, prep$levels, d))
  res <- opt$res
  f0 <- opt$f0
  zero <- opt$zero
  free <- opt$free
  theta <- res$theta
  theta[p + 1:2] <- abs(theta[p + 1:2])
  cur <- nested_eval(d, theta, 3L, res$cur$mode)
  Vfull <- matrix(NA_real_, p + 2L, p + 2L)
  new_fail <- NULL
  Hs <- nested_hessian(d, theta, free, cur)
  Vi <- tryCatch(solve(-Hs), error = function(e) NULL)
  if (!is.null(Vi) && all(is.finite(Vi))) {
    # one Newton step on the Hessian (the steps above use an approximate
    # information, which converges linearly) squares the remaining error
    th <- theta
    th[free] <- th[free] + drop(Vi %*% cur$gradient[free])
    new <- nested_eval(d, th, 1L, cur$mode)
    new_fail <- as.integer(new$fail > 0L)
    # near the maximum the log-likelihood cannot tell the points apart
    # (rounding), the Newton decrement can
    dec <- function(r) sum(r$gradient[free] * drop(Vi %*% r$gradient[free]))
    if (is.finite(new$loglik) && dec(new) <= dec(cur) && all(th[p + 1:2] >= 0)) {
      theta <- th
      cur <- new
      new_fail <- NULL # counted as the estimate's
    }
  }
  if (is.null(Vi) || any(!is.finite(diag(Vi))) || any(diag(Vi) <= 0)) {
    warning("sw_glmm(): the Hessian is not negative definite at the estimate (separation or a flat likelihood); standard errors are not available.",
            call. = FALSE)
  } else {
    Vfull[free, free] <- Vi
  }
  gn <- c(prep$groups[1], paste0(prep$groups[2], ":", prep$groups[1]))
  dimnames(Vfull) <- list(c(nm, paste0("sigma_", gn)), c(nm, paste0("sigma_", gn)))
  conv <- nested_status(res, cur, attr(Hs, "fails"), opt$fails + (new_fail %||% 0L))
  if (!conv$converged) {
    warn_not_converged("sw_glmm(): the Laplace Newton iteration (nested random intercepts)", conv,
                       "treat the estimates with caution; merge sparse categories or increase `control$maxit`.")
  }
  beta <- stats::setNames(theta[seq_len(p)], nm)
  sig <- stats::setNames(theta[p + 1:2], gn)
  G <- d$G
  C <- d$C
  re <- stats::setNames(list(stats::setNames(sig[1] * cur$mode[seq_len(G)], prep$levels),
                             stats::setNames(sig[2] * cur$mode[G + seq_len(C)], d$child_levels)), gn)
  re_sd <- stats::setNames(list(stats::setNames(sig[1] * cur$scale[seq_len(G)], prep$levels),
                                stats::setNames(sig[2] * cur$scale[G + seq_len(C)], d$child_levels)), gn)
  lchoose_sum <- if (is.null(prep$trials)) 0 else sum(lchoose(prep$trials, prep$y))
  out <- list(coefficients = beta, vcov = Vfull[seq_len(p), seq_len(p), drop = FALSE],
              vcov_theta = Vfull, sigma = sig,
              loglik = cur$loglik + lchoose_sum, df = length(free),
              nobs = length(d$row_cell), ntrials = sum(d$n),
              ngroups = stats::setNames(c(G, C), gn), ncells = nrow(d$X),
              method = "Laplace", nAGQ = 1L, boundary = length(zero) > 0L,
              boundary_terms = gn[zero], sigma_fixed = NULL,
              converged = conv$converged, convergence = conv, iterations = res$iterations,
              ranef = re, ranef_sd = re_sd, nested = TRUE,
              theta = stats::setNames(theta, c(nm, ".sigma", ".sigma_child")),
              theta0 = if (!is.null(f0)) f0$theta[seq_len(p)] else beta0, free = free, ctrl = ctrl,
              # what nested_eval() needs (profile intervals), not the model matrix
              nested_cells = d[c("s", "n", "cstart", "lstart", "rows", "G", "C")],
              loglik_const = lchoose_sum,
              trt_info = nested_trt_info(prep, d),
              # the conditional modes (spherical), for glmm_start()
              modes = list(value = cur$mode, la = prep$levels, child = d$child_levels))
  class(out) <- "sw_glmm"
  out$treatment <- nested_treatment(out)
  out
}

# optim_status() of the fit: not converged when Newton did not converge or a
# conditional-mode search failed at the estimate (`cur`) or in the Hessian's
# evaluations (hess_fails, which the standard errors rest on); failures in
# the other evaluations (line searches, the Newton information, boundary
# checks: other_fails) are counted in the message.
nested_status <- function(res, cur, hess_fails, other_fails) {
  what <- c("a conditional-mode search hit its iteration limit",
            "a conditional-mode search or the log-likelihood was not finite (SDs too large?)")
  msg <- if (cur$fail > 0L) paste(what[cur$fail], "at the estimate") else res$message
  if (hess_fails > 0L) {
    msg <- sprintf("%s; the conditional-mode search failed in %d of the Hessian's gradient evaluations",
                   msg, hess_fails)
  }
  if (other_fails > 0L) {
    msg <- sprintf("%s; the conditional-mode search failed in %d evaluation%s of the line searches, the Newton information or the boundary checks",
                   msg, other_fails, if (other_fails == 1L) "" else "s")
  }
  optim_status(res$converged && cur$fail == 0L && hess_fails == 0L, res$iterations, msg)
}

# The counterfactual rows for the treatment's odds ratio and risk
# differences, as binom_fit() builds them: with a main effect only, the
# cells with the treatment column set (binom_cf_risks()), so the cells'
# model matrix and trials are kept (`cells`; the counterfactual matrices
# would be two more copies, and their unique rows cost a hash of each for
# few duplicates when a covariate is continuous); otherwise the unique rows
# of the counterfactual model matrices.
nested_trt_info <- function(prep, d) {
  tr <- prep$treatment
  if (is.null(tr)) return(NULL)
  if (tr$main_only) {
    return(list(name = tr$name, coef = tr$coef, cells = list(X = d$X, n = d$n), main_only = TRUE))
  }
  w <- prep$trials %||% rep(1, nrow(tr$X0))
  list(name = tr$name, coef = tr$coef,
       cf = list(X0 = unique_rows(tr$X0, w), X1 = unique_rows(tr$X1, w)), main_only = FALSE)
}

# Odds ratio and risk differences (at u = v = 0, and marginal over both
# random intercepts: their sum is N(0, s1^2 + s2^2), so mean_risk() with
# that SD; the gradient in (s1, s2) by the chain rule).
nested_treatment <- function(fit) {
  ti <- fit$trt_info
  if (is.null(ti) || is.null(ti$coef)) return(NULL)
  p <- length(fit$coefficients)
  j <- match(ti$coef, names(fit$coefficients))
  b <- fit$coefficients[[j]]
  se <- sqrt(fit$vcov[j, j])
  z <- stats::qnorm(0.975)
  or <- data.frame(term = ti$coef, log_odds_ratio = b, std.error = se, odds_ratio = exp(b),
                   conf.low = exp(b - z * se), conf.high = exp(b + z * se))
  gh <- gauss_hermite(25L)
  s12 <- fit$theta[p + 1:2]
  st <- sqrt(sum(s12^2))
  chain <- if (st > 0) s12 / st else c(0, 0)
  free <- fit$free
  V <- fit$vcov_theta[free, free, drop = FALSE]
  rd <- lapply(c(conditional = FALSE, marginal = TRUE), function(marg) {
    # binom_cf_risks() on the counterfactual rows, at the summed SD
    rr <- binom_cf_risks(list(trt_info = list(cf = ti$cf, main_only = isTRUE(ti$main_only), coef = ti$coef),
                              cells = ti$cells, coefficients = fit$coefficients,
                              theta = c(fit$theta[seq_len(p)], st)), marg, gh)
    r1 <- rr$X1
    r0 <- rr$X0
    gr <- r1$gradient - r0$gradient
    gr <- c(gr[seq_len(p)], gr[p + 1L] * chain)[free]
    est <- r1$value - r0$value
    se <- sqrt(drop(crossprod(gr, V %*% gr)))
    c(estimate = est, std.error = se, conf.low = est - z * se, conf.high = est + z * se)
  })
  rd <- data.frame(type = names(rd), do.call(rbind, rd), row.names = NULL)
  list(odds_ratio = or, risk_difference = rd)
}

# Profile log-likelihood of coefficient j (for confint(method = "profile")):
# the other parameters refitted by Newton, from the previous point.
nested_profile_fun <- function(fit, j) {
  d <- fit$nested_cells
  free <- setdiff(fit$free, j)
  last <- unname(fit$theta)
  function(b) {
    th <- last
    th[j] <- b
    r <- nested_newton(d, th, free, fit$ctrl)
    last <<- r$theta
    r$cur$loglik + fit$loglik_const
  }
}

# The nested binomial model is fitted by the Laplace approximation with both
# SDs estimated.
nested_check_args <- function(nAGQ, sigma, groups) {
  if (nAGQ != 1) {
    stop_arg("nAGQ", sprintf("is %d, but a binomial model with nested random intercepts `(1 | %s / %s)` is fitted by the Laplace approximation only",
                             as.integer(nAGQ), groups[1], groups[2]),
             "use nAGQ = 1 (as lme4::glmer(), whose nAGQ > 1 needs a single scalar random effect).")
  }
  if (!is.null(sigma)) {
    stop_arg("sigma", "cannot be fixed for a binomial model with nested random intercepts",
             "drop `sigma`, or write one random intercept `(1 | la)` to fix its SD.")
  }
}
