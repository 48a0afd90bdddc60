test_that("cost_benefit() equals a hand-computed example (FS 'Benefits')", {
  # effect -0.01 (one point fewer), 3,400 children per LA-year: 34 children
  # not looked after per year; weighted cost per child
  # (50,000 * 60 + 200,000 * 30 + 20,000 * 10) / 100 = 92,000
  pc <- data.frame(placement = c("foster", "residential", "kinship"),
                   cost = c(50000, 200000, 20000), n = c(60, 30, 10))
  cb <- cost_benefit(-0.01, p.value = 0.01, children_per_year = 3400,
                     placement_costs = pc, costs = rep(1e6, 6), discount_rate = 0.035)
  d <- 1 / 1.035^(0:5)
  # undiscounted 34 * 92,000 = 3,128,000 per year
  expect_equal(cb$summary$cost_per_child, 92000)
  expect_equal(cb$by_year$benefit, rep(3128000, 6))
  expect_equal(cb$summary$pv_benefit, 3128000 * sum(d))
  expect_equal(sum(d), 5.5150524, tolerance = 1e-7)
  expect_equal(cb$summary$pv_benefit, 17251083.9, tolerance = 1e-8)
  expect_equal(cb$summary$pv_cost, 1e6 * sum(d))
  expect_equal(cb$summary$bcr, 3.128)
  expect_equal(cb$summary$npsv, 2128000 * sum(d))
  expect_equal(cb$summary$status, "ok")
})

test_that("cost_benefit(): computed only when significant unless asked", {
  cb <- cost_benefit(-0.01, p.value = 0.2, children_per_year = 1000, cost_per_child = 5e4)
  expect_true(is.na(cb$summary$pv_benefit))
  expect_match(cb$summary$status, "^not computed")
  cf <- cost_benefit(-0.01, p.value = 0.2, children_per_year = 1000, cost_per_child = 5e4, force = TRUE)
  expect_equal(cf$summary$pv_benefit, 10 * 5e4 * sum(1 / 1.035^(0:5)))
  expect_match(cf$summary$status, "^computed on request")
  # an increase in care is a cost: negative benefit
  up <- cost_benefit(0.01, children_per_year = 1000, cost_per_child = 5e4)
  expect_lt(up$summary$pv_benefit, 0)
  # costs by year as a data frame; no discounting
  cy <- cost_benefit(-0.02, children_per_year = 100, cost_per_child = 1000,
                     costs = data.frame(year = c(0, 2), cost = c(500, 300)), discount_rate = 0)
  expect_equal(cy$summary$pv_cost, 800)
  expect_equal(cy$summary$pv_benefit, 2 * 1000 * 6)
})

test_that("cost_benefit() bad input", {
  expect_snapshot(error = TRUE, cost_benefit(-0.01, children_per_year = 100))
  expect_snapshot(error = TRUE, cost_benefit(-0.01, children_per_year = 100, cost_per_child = 1,
                                             costs = c(1, 2)))
  expect_snapshot(error = TRUE, cost_benefit(-0.01, children_per_year = 100,
                                             placement_costs = data.frame(placement = "a", cost = NA, n = 1)))
})
