# autoplot() (ggplot2) and the base plot() methods added with it: each plot
# is built and its layers carry the values of the object drawn.

built <- function(p) ggplot2::ggplot_build(p)$data

test_that("permutation distribution: histogram of every allocation and the observed value", {
  set.seed(1)
  d <- expand.grid(la = paste0("LA", 1:5), step = 0:5, child = 1:10)
  d$treated <- as.integer(d$step >= match(d$la, paste0("LA", 1:5)))
  d$y <- rbinom(nrow(d), 1, plogis(-1 + 0.3 * d$treated))
  pt <- perm_test(y ~ 1, statistic = "npwp", strata = FALSE, data = d, adjust = FALSE)
  f <- tempfile(fileext = ".pdf")
  grDevices::pdf(f)
  expect_identical(plot(pt), pt)
  grDevices::dev.off()
  skip_if_not_installed("ggplot2")
  p <- ggplot2::autoplot(pt)
  expect_s3_class(p, "ggplot")
  b <- built(p)
  expect_equal(sum(b[[1]]$count), pt$n_used)
  expect_equal(b[[2]]$xintercept, pt$estimate)
})

test_that("balance: differences in means before and after CEM", {
  set.seed(2)
  d <- data.frame(grp = rep(0:1, each = 100), x = c(rnorm(100), rnorm(100, 0.5)),
                  s = sample(c("a", "b"), 200, TRUE))
  d$xc <- cut(d$x, c(-Inf, -0.5, 0.5, Inf))
  m <- cem(grp ~ xc + s, d)
  f <- tempfile(fileext = ".pdf")
  grDevices::pdf(f)
  expect_identical(plot(m), m)
  grDevices::dev.off()
  skip_if_not_installed("ggplot2")
  p <- ggplot2::autoplot(m)
  b <- built(p)[[2]]
  want <- c(m$imbalance$before$means$difference, m$imbalance$after$means$difference)
  expect_equal(sort(b$x), sort(want))
  expect_error(ggplot2::autoplot(cem(grp ~ xc, d, l1 = FALSE)), "l1 = FALSE")
})

test_that("event study, Goodman-Bacon and power curve", {
  skip_if_not_installed("ggplot2")
  set.seed(3)
  go <- c(A = 3, B = 3, C = 5, D = Inf, E = Inf, F = 4)
  d <- expand.grid(la = names(go), year = 1:6, child = 1:5, stringsAsFactors = FALSE)
  d$treated <- as.integer(d$year >= go[d$la])
  d$y <- rnorm(6)[match(d$la, names(go))] + 0.3 * d$year + 0.5 * d$treated + rnorm(nrow(d))
  bc <- bacon(y ~ treated, d, id = "la", time = "year")
  b <- built(ggplot2::autoplot(bc))
  expect_equal(b[[1]]$yintercept, bc$estimate)
  expect_equal(b[[2]]$y, bc$comparisons$estimate)
  ag <- aggregate_att(att_gt(d, outcome = "y", time = "year"), type = "dynamic",
                      inference = "none")
  b <- built(ggplot2::autoplot(ag))
  expect_equal(b[[3]]$y, ag$by$estimate)
  expect_equal(b[[3]]$x, ag$by$event_time)
  expect_error(ggplot2::autoplot(aggregate_att(att_gt(d, outcome = "y", time = "year"),
                                               inference = "none")), "dynamic")
  ps <- structure(list(results = data.frame(effect = c(0, 0.01, 0.02), power = c(0.05, 0.4, 0.9),
                                            power_low = c(0.02, 0.3, 0.85),
                                            power_high = c(0.1, 0.5, 0.95)),
                       n_sims = 100), class = "sfp_power_sim")
  b <- built(ggplot2::autoplot(ps))
  expect_equal(b[[3]]$y, ps$results$power)
  expect_equal(b[[3]]$ymin, ps$results$power_low)
})

test_that("trend matching: the treated authority, its candidates and the window", {
  skip_if_not_installed("ggplot2")
  set.seed(4)
  nq <- 24
  base <- cumsum(rnorm(nq, 0, 0.02)) + 0.3
  traj <- pmin(pmax(rbind(T1 = base, P1 = base + 0.1, N1 = 0.3 + cumsum(rnorm(nq, 0, 0.02)),
                          N2 = 0.3 + cumsum(rnorm(nq, 0, 0.02))), 0.02), 0.98)
  rows <- expand.grid(la = rownames(traj), q = seq_len(nq), i = 1:50, stringsAsFactors = FALSE)
  rows$referral_date <- seq(as.Date("2016-01-01"), by = "3 months", length.out = nq)[rows$q]
  rows$cla_18m <- as.integer(rows$i <= round(traj[cbind(match(rows$la, rownames(traj)), rows$q)] * 50))
  m <- match_trends(rows, data.frame(la_code = "T1", go_live_date = as.Date("2021-04-01")),
                    "cla_18m", n_candidates = 3)
  p <- ggplot2::autoplot(m, n = 2)
  expect_s3_class(p, "ggplot")
  d <- trend_match_frame(m, 2)
  expect_equal(d$value[d$la == "T1"], unname(m$trends$T1["T1", ]))
  expect_equal(sum(d$window[d$la == "T1"]), length(m$windows$T1$quarters))
  expect_silent(built(p))
})
