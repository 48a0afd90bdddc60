test_that("fidelity() applies the protocol's thresholds", {
  ind <- data.frame(
    la = c("A", "A", "A", "A", "A", "A", "A", "B", "B", "B", "B"),
    time_point = c("pre", "6m", "6m", "6m", "6m", "12m", "12m", "pre", "6m", "6m", "12m"),
    indicator = c("fgc_coordinators", "fgc_coordinators", "staff_trained", "caseload",
                  "vacancy_rate", "leadership_buy_in", "fgc_conversion",
                  "fgc_coordinators", "fgc_coordinators", "staff_trained", "confident_to_change"),
    value = c(3, 5, 0.70, 17.5, 0.20, 0.69, 0.4, 4, 4, 0.65, 0.8))
  f <- fidelity(ind)
  get <- function(la, tp, i) f$met[f$la == la & f$time_point == tp & f$indicator == i]
  expect_true(get("A", "6m", "fgc_coordinators"))       # "has increased": 5 > 3
  expect_false(get("B", "6m", "fgc_coordinators"))      # 4 is not more than 4
  expect_true(is.na(get("A", "pre", "fgc_coordinators")))
  expect_true(get("A", "6m", "staff_trained"))          # "70% have attended": 0.70 >= 0.70
  expect_false(get("B", "6m", "staff_trained"))
  expect_false(get("A", "6m", "caseload"))              # "17 or below"
  expect_true(get("A", "6m", "vacancy_rate"))           # "20% or below"
  expect_false(get("A", "12m", "leadership_buy_in"))    # 70%
  expect_true(get("B", "12m", "confident_to_change"))
  expect_true(is.na(get("A", "12m", "fgc_conversion"))) # descriptive
  expect_equal(nrow(f), nrow(ind))
  # row order of the input does not matter
  expect_equal(fidelity(ind[rev(seq_len(nrow(ind))), ]), f)
  th <- fidelity_thresholds()
  expect_equal(sum(th$source == "staff survey"), 8L)   # the eight survey items
})

test_that("fidelity() bad input", {
  expect_snapshot(error = TRUE, fidelity(data.frame(la = "A", value = 1)))
  expect_snapshot(error = TRUE, fidelity(data.frame(la = "A", time_point = "6m",
                                                    indicator = "morale", value = 1)))
  expect_snapshot(error = TRUE, fidelity(data.frame(la = "A", time_point = "3m",
                                                    indicator = "caseload", value = 1)))
})
