test_that("ethnic major groups follow the protocol's footnote 11", {
  x <- c("WBRI", "WROM", "MWBC", "AIND", "ABAN", "BAFR", "CHNE", "OOTH",
         "REFU", "NOBT", NA)
  expect_equal(
    as.character(ethnic_group(x)),
    c("White", "White", "Mixed", "Asian", "Asian", "Black", "Other", "Other",
      "Missing", "Missing", "Missing")
  )
  expect_equal(as.character(ethnic_group("CHNE", chne = "asian")), "Asian")
  expect_equal(levels(ethnic_group(character())),
               c("White", "Mixed", "Asian", "Black", "Other", "Missing"))
})

test_that("code sets are subsets of their code lists", {
  expect_true(all(sfp_codes("kinship") %in% sfp_codes("place")))
  expect_true(all(sfp_codes("reunification_sensitivity") %in% sfp_codes("rec")))
  expect_true(all(sfp_codes("toxic_trio_broad") %in% sfp_codes("factor")))
  expect_true(all(sfp_codes("toxic_trio_core") %in% sfp_codes("toxic_trio_broad")))
  expect_false(any(c("1A", "2A", "4A", "24A") %in% sfp_codes("toxic_trio_broad")))
  expect_snapshot(sfp_codes("nope"), error = TRUE)
})
