# The test inversion as the estimators coded it before they shared
# invert_test() (#13), the reference for it: from `est`, step outwards by
# `step`, doubling, while p(est + dir * step) > alpha (at most `expand`
# doublings, else +-Inf), then bisect `bisect` times between the last point
# inside and the first outside, stopping early once they are closer than
# `width`. Returns the two bounds.
invert_loop_ref <- function(pfun, est, step, alpha, expand, bisect, width = 0) {
  bound <- function(dir) {
    inside <- est
    s <- step
    k <- 0
    while (pfun(est + dir * s) > alpha) {
      inside <- est + dir * s
      s <- 2 * s
      k <- k + 1
      if (k > expand) return(dir * Inf)
    }
    outside <- est + dir * s
    for (i in seq_len(bisect)) {
      mid <- (inside + outside) / 2
      if (pfun(mid) > alpha) inside <- mid else outside <- mid
      if (abs(outside - inside) < width) break
    }
    (inside + outside) / 2
  }
  c(bound(-1), bound(1))
}

# A confidence interval by test inversion: just inside each end (by `eps`)
# the p-value pval(theta) of the test of effect theta is above alpha, just
# outside it is at most alpha.
expect_ci_inverts <- function(pval, ci, alpha = 0.05, eps = 1e-4 * diff(ci)) {
  expect_gt(pval(ci[1] + eps), alpha)
  expect_lte(pval(ci[1] - eps), alpha)
  expect_gt(pval(ci[2] - eps), alpha)
  expect_lte(pval(ci[2] + eps), alpha)
}
