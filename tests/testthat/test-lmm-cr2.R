# The fast CR2 path for linear mixed models whose random effects nest inside
# the clusters without spanning them (b = 0: the Family Safeguarding absence
# model, child random effects clustered by authority), against the dense
# plain-R definition and the previous invariant-subspace / quadrature path.

# Inputs of lmm_cr2() for a panel of G clusters of children with 1-3 rows
# each: X (with cluster dummies, so that every cluster has a null direction
# of G), the GLS residuals under Phi = W^-1 + a sum_c J_c, and M.
# single = TRUE: child 1 alone in cluster G.
cr2_inputs <- function(seed, G = 5, nch = 120, weights = c("none", "few", "many"), a = 1.7,
                       single = FALSE) {
  weights <- match.arg(weights)
  set.seed(seed)
  cl0 <- if (single) c(G, sample(G - 1L, nch - 1L, TRUE)) else sample(G, nch, TRUE)
  nt <- sample(1:3, nch, TRUE)
  ch <- rep(seq_len(nch), nt)
  cl <- cl0[ch]
  n <- length(ch)
  wc <- switch(weights, none = rep(1, nch), few = sample(c(0.5, 1, 2.5), nch, TRUE),
               many = runif(nch, 0.2, 4))
  w <- wc[ch]
  term <- unlist(lapply(nt, seq_len))
  X <- cbind(1, treated = as.numeric(cl <= 2 & term > 1), term2 = term == 2, term3 = term == 3,
             age = round(runif(nch, 0, 12))[ch] * 100, outer(cl, 2:G, "==") + 0)
  Phi <- diag(1 / w) + a * outer(ch, ch, "==")
  y <- drop(X %*% c(3, 0.5, 0.2, -0.1, 0.001, rnorm(G - 1))) + drop(t(chol(Phi)) %*% rnorm(n))
  Pi <- solve(Phi)
  M <- solve(crossprod(X, Pi %*% X))
  e <- drop(y - X %*% (M %*% crossprod(X, Pi %*% y)))
  list(X = X, e = e, cl = cl, unit = ch, a = a, M = M, w = if (weights == "none") NULL else w, Phi = Phi)
}

# The dense definition (Pustejovsky & Tipton 2018): A_g = R'(R (Phi_g -
# X_g M X_g') R')^+1/2 R, R = chol(Phi_g), the pseudo-inverse square root on
# the eigenvalues above 1e-12 of the largest; V = M sum_g u_g u_g' M, u_g =
# X_g'Phi_g^-1 A_g e_g; Satterthwaite df from T_gh = delta_gh p_g'Phi_g p_g -
# (X_g'p_g)' M (X_h'p_h), p_g = A_g Phi_g^-1 X_g M L_j.
dense_cr2 <- function(inp, L = diag(ncol(inp$X))) {
  X <- inp$X
  M <- inp$M
  gs <- sort(unique(inp$cl))
  mpow <- function(x) {
    ev <- eigen((x + t(x)) / 2, symmetric = TRUE)
    ev$vectors %*% (ifelse(ev$values > 1e-12 * max(ev$values), ev$values^-0.5, 0) * t(ev$vectors))
  }
  pieces <- lapply(gs, function(g) {
    i <- which(inp$cl == g)
    Pg <- inp$Phi[i, i]
    R <- chol(Pg)
    A <- t(R) %*% mpow(R %*% (Pg - X[i, ] %*% M %*% t(X[i, ])) %*% t(R)) %*% R
    AWX <- A %*% solve(Pg, X[i, ])
    list(u = crossprod(AWX, inp$e[i]), P = AWX %*% M %*% L, X = X[i, ], Pg = Pg)
  })
  U <- sapply(pieces, `[[`, "u")
  df <- vapply(seq_len(ncol(L)), function(j) {
    XP <- sapply(pieces, function(pc) crossprod(pc$X, pc$P[, j]))
    T <- -crossprod(XP, M %*% XP)
    diag(T) <- diag(T) + vapply(pieces, function(pc) sum(pc$P[, j] * (pc$Pg %*% pc$P[, j])), 0)
    sum(diag(T))^2 / sum(T^2)
  }, 0)
  list(vcov = M %*% tcrossprod(U) %*% M, df = df)
}

test_that("the quadrature nodes give lambda^-1/2 across the spectrum", {
  for (rng in list(c(1e-13, 1), c(2, 50), c(0.3, 0.3 + 1e-9))) {
    q <- cr2_isqrt_nodes(rng[1], rng[2])
    lam <- exp(seq(log(rng[1]), log(rng[2]), length.out = 200))
    f <- vapply(lam, function(l) sum(q$w / (l + q$s)), 0)
    expect_lt(max(abs(f * sqrt(lam) - 1)), 1e-11)
  }
  # the widened interval of cr2_cluster_fast() (lo down to 1e-15 hi, 80 nodes)
  q <- cr2_isqrt_nodes(1e-15, 1, 80L)
  lam <- 10^seq(-15, 0, length.out = 200)
  expect_lt(max(abs(vapply(lam, function(l) sum(q$w / (l + q$s)), 0) * sqrt(lam) - 1)), 1e-11)
})

test_that("fast LMM CR2 (b = 0) equals the dense definition and the previous path", {
  for (cs in list(list(7, "none"), list(8, "few"), list(9, "many"), list(10, "many", a = 0))) {
    inp <- cr2_inputs(cs[[1]], weights = cs[[2]], a = if (length(cs) > 2) cs$a else 1.7)
    ref <- dense_cr2(inp)
    fast <- lmm_cr2(inp$X, inp$e, inp$cl, inp$unit, inp$a, 0, inp$M, w = inp$w, fast = TRUE)
    old <- lmm_cr2(inp$X, inp$e, inp$cl, inp$unit, inp$a, 0, inp$M, w = inp$w, fast = FALSE)
    expect_equal(fast$vcov, ref$vcov, tolerance = 1e-8)
    expect_equal(fast$df, ref$df, tolerance = 1e-8)
    expect_equal(fast$vcov, old$vcov, tolerance = 1e-8)
    expect_equal(fast$df, old$df, tolerance = 1e-8)
    # a contrast matrix L, as sw_glmm() passes its back-transformation
    L <- diag(ncol(inp$X))
    L[2, 5] <- 0.3
    expect_equal(lmm_cr2(inp$X, inp$e, inp$cl, inp$unit, inp$a, 0, inp$M, L = L, w = inp$w)$df,
                 dense_cr2(inp, L)$df, tolerance = 1e-8)
  }
})

test_that("fast LMM CR2 is invariant to row order, column scale and outcome scale", {
  inp <- cr2_inputs(11, weights = "many")
  f0 <- lmm_cr2(inp$X, inp$e, inp$cl, inp$unit, inp$a, 0, inp$M, w = inp$w)
  o <- sample(nrow(inp$X))
  f1 <- lmm_cr2(inp$X[o, ], inp$e[o], inp$cl[o], inp$unit[o], inp$a, 0, inp$M, w = inp$w[o])
  expect_equal(f1$vcov, f0$vcov, tolerance = 1e-10)
  expect_equal(f1$df, f0$df, tolerance = 1e-10)
  # X D (D diagonal) has M D^-2-scaled: V -> D^-1 V D^-1, df unchanged;
  # e * c: V * c^2
  D <- c(1, 1, 1, 1, 1e-4, rep(1, ncol(inp$X) - 5))
  f2 <- lmm_cr2(inp$X %*% diag(D), 1e3 * inp$e, inp$cl, inp$unit, inp$a, 0,
                inp$M / outer(D, D), w = inp$w)
  expect_equal(f2$vcov, 1e6 * f0$vcov / outer(D, D), tolerance = 1e-9)
  expect_equal(f2$df, f0$df, tolerance = 1e-9)
})

test_that("sw_glmm(weights =, cluster =) on the FS absence model uses the fast path and equals the previous one", {
  inp <- cr2_inputs(12, G = 6, nch = 200, weights = "many")
  d <- data.frame(y = inp$e + drop(inp$X %*% rep(0.1, ncol(inp$X))), treated = inp$X[, "treated"],
                  term = factor(1 + inp$X[, "term2"] + 2 * inp$X[, "term3"]),
                  la = paste0("L", inp$cl), child_id = inp$unit, w = inp$w)
  f <- y ~ treated + term + factor(la) + (1 | child_id)
  fit <- sw_glmm(f, d, family = gaussian(), weights = "w", cluster = "la")
  old <- withr::with_options(list(sfpceval.cr2_fast = FALSE),
                             sw_glmm(f, d, family = gaussian(), weights = "w", cluster = "la"))
  expect_equal(vcov(fit, type = "CR2"), vcov(old, type = "CR2"), tolerance = 1e-8)
  expect_equal(fit$cr2$df, old$cr2$df, tolerance = 1e-8)
})

# The three paths of lmm_cr2() with b = 0: fast, invariant subspace, and its
# quadrature (many classes, forced by sfpceval.cr2_exact_max = 0).
cr2_paths <- function(inp, X = inp$X, e = inp$e, M = inp$M) {
  run <- function(fast) lmm_cr2(X, e, inp$cl, inp$unit, inp$a, 0, M, w = inp$w, fast = fast)
  list(fast = run(TRUE), old = run(FALSE),
       quad = withr::with_options(list(sfpceval.cr2_exact_max = 0), run(FALSE)))
}

test_that("LMM CR2 with a covariate nearly collinear with a cluster dummy equals the reparametrised dense definition", {
  # z = (cluster 1) + eps nu: X = X2 T with X2 = [X, nu] well conditioned,
  # so the CR2 of X's coefficients is the dense definition on X2 for the
  # contrasts L = T^-T (CR2 and its df are invariant to reparametrisation),
  # which is well defined at every eps (G's only null direction is cluster
  # 1's dummy, exact in X2). dense_cr2() on X itself is not a reference here:
  # it forms Phi_g - X_g M X_g' with kappa(M) ~ 1e7 / eps^2 and its 1e-12 cut
  # then decides on rounding (df off by 1e-3 at eps = 1e-3). The package
  # takes M as given (here solve() of the near-singular X'Phi^-1 X, as a
  # fit does), so its error is of order u kappa_s, u the unit roundoff and
  # kappa_s the condition number of X'Phi^-1 X scaled to unit diagonal;
  # tolerance 1e3 u kappa_s (at least 1e-10).
  skip_if_not_installed("withr")
  for (w in c("none", "many")) for (eps in c(1e-2, 1e-3, 1e-4)) {
    inp <- cr2_inputs(7, weights = w)
    set.seed(1)
    nu <- rnorm(nrow(inp$X))
    X2 <- cbind(inp$X, nu = nu)
    p <- ncol(X2)
    Tm <- diag(p)
    Tm[, p] <- c(1, 0, 0, 0, 0, -1, -1, -1, -1, eps)                      # z = X2 Tm[, p]
    X <- X2 %*% Tm
    Pi <- solve(inp$Phi)
    A <- crossprod(X, Pi %*% X)
    M <- solve(A)
    e <- drop(inp$e - X %*% (M %*% crossprod(X, Pi %*% inp$e)))
    M2 <- solve(crossprod(X2, Pi %*% X2))
    Ti <- solve(Tm)
    ref <- dense_cr2(modifyList(inp, list(X = X2, M = M2, e = e)), L = t(Ti))
    refV <- Ti %*% dense_cr2(modifyList(inp, list(X = X2, M = M2, e = e)))$vcov %*% t(Ti)
    kap <- kappa(A / sqrt(outer(diag(A), diag(A))), exact = TRUE)
    tol <- max(1e-10, 1e3 * .Machine$double.eps * kap)
    for (r in cr2_paths(inp, X, e, M)) {
      expect_equal(r$df, ref$df, tolerance = tol)
      expect_equal(sqrt(diag(r$vcov)), sqrt(diag(refV)), tolerance = tol)
    }
    if (eps == 1e-2) {
      expect_equal(cr2_paths(inp, X, e, M)$old$df,
                   dense_cr2(modifyList(inp, list(X = X, M = M, e = e)))$df, tolerance = 1e-8)
    }
  }
})

test_that("LMM CR2 with a cluster of a single child equals the dense definition", {
  skip_if_not_installed("withr")
  for (w in c("none", "many")) {
    inp <- cr2_inputs(11, weights = w, single = TRUE)
    expect_equal(sum(inp$cl == 5), sum(inp$unit == 1))
    ref <- dense_cr2(inp)
    for (r in cr2_paths(inp)) {
      expect_equal(r$vcov, ref$vcov, tolerance = 1e-8)
      expect_equal(r$df, ref$df, tolerance = 1e-8)
    }
  }
})

test_that("the fast path's quadrature interval contains G's spectrum (lower bound from the s = 0 system)", {
  # with the interval starting at 0.9 of the largest eigenvalue, the smaller
  # eigenvalues of G get wrong weights (df off by 2e-3 in the weighted case
  # when the bound is switched off); the bound must move the interval down
  # to them, so the result stays equal to the dense definition
  skip_if_not_installed("withr")
  for (cs in list(list(7, "none"), list(9, "many"))) {
    inp <- cr2_inputs(cs[[1]], weights = cs[[2]])
    ref <- dense_cr2(inp)
    r <- withr::with_options(list(sfpceval.cr2_quad_lo = 0.9),
      lmm_cr2(inp$X, inp$e, inp$cl, inp$unit, inp$a, 0, inp$M, w = inp$w, fast = TRUE))
    expect_equal(r$vcov, ref$vcov, tolerance = 1e-8)
    expect_equal(r$df, ref$df, tolerance = 1e-8)
  }
})
