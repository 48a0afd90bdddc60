test_that("triangulate() equals a hand computation", {
  # DiD -0.012 (se 0.006), SW -0.008 (se 0.004)
  # weights 1/0.006^2 = 27777.8, 1/0.004^2 = 62500; shares 0.3077, 0.6923
  # pooled = (-0.012 * 27777.78 + -0.008 * 62500) / 90277.78 = -0.0092308
  # se = sqrt(1/90277.78) = 0.0033282
  # difference = -0.004, se = sqrt(0.006^2 + 0.004^2) = 0.0072111, z = -0.5547
  t <- triangulate(list(estimate = -0.012, std.error = 0.006),
                   list(estimate = -0.008, std.error = 0.004))
  expect_equal(t$estimate[3], -0.12 / 13)            # = -0.0092308
  expect_equal(t$std.error[3], sqrt(1 / 90277.7777777778))  # = 0.0033282
  expect_equal(t$weight[1:2], c(4, 9) / 13)
  expect_equal(t$estimate[4], -0.004)
  expect_equal(t$statistic[4], -0.004 / sqrt(0.006^2 + 0.004^2))
  expect_equal(t$p.value[4], 2 * pnorm(-0.5547002), tolerance = 1e-7)
  expect_equal(t$conf.low[3], -0.12 / 13 - qnorm(0.975) * sqrt(1 / 90277.7777777778))
  expect_match(attr(t, "reading"), "^aligned")
})

test_that("triangulate(): the protocol's reading when the strands diverge", {
  a <- list(estimate = -0.03, std.error = 0.005, scale = "risk_difference")
  b <- list(estimate = 0.01, std.error = 0.005, scale = "risk_difference")
  expect_match(attr(triangulate(a, b), "reading"), "^diverge: assess")
  expect_match(attr(triangulate(a, b, c(did = TRUE, stepped_wedge = FALSE)), "reading"),
               "rely primarily on the DiD")
  expect_match(attr(triangulate(a, b, c(did = FALSE, stepped_wedge = TRUE)), "reading"),
               "rely primarily on the stepped-wedge")
  expect_match(attr(triangulate(a, b, c(did = TRUE, stepped_wedge = TRUE)), "reading"),
               "identify what accounts")
  # symmetric: swapping the strands flips the difference, keeps the pooled estimate
  s <- triangulate(b, a)
  expect_equal(s$estimate[3], triangulate(a, b)$estimate[3])
  expect_equal(s$estimate[4], -triangulate(a, b)$estimate[4])
})

test_that("triangulate() bad input", {
  expect_snapshot(error = TRUE, triangulate(list(estimate = 1), list(estimate = 1, std.error = 1)))
  expect_snapshot(error = TRUE, triangulate(list(estimate = 1, std.error = 1, scale = "log_odds"),
                                            list(estimate = 1, std.error = 1, scale = "risk_difference")))
})
