test_that("table1() counts, percentages and means by arm equal a hand computation", {
  d <- data.frame(treated = c(0, 0, 0, 1, 1),
                  gender = factor(c("male", "female", "male", "female", NA),
                                  levels = c("male", "female", "indeterminate")),
                  disabled = c(0, 1, 0, 1, 1),
                  age = c(2, 4, 9, 1, 5))
  t1 <- table1(d, c("gender", "disabled", "age"))
  row <- function(v, l) t1[t1$variable == v & t1$level == l, ]
  expect_equal(row("children", "")$n_control, 3)
  expect_equal(row("children", "")$n_treated, 2)
  expect_equal(row("gender", "male")$n_control, 2)
  expect_equal(row("gender", "male")$value_control, 200 / 3)
  expect_equal(row("gender", "female")$value_treated, 100)   # 1 of 1 recorded
  expect_equal(row("gender", "indeterminate")$n_treated, 0)
  expect_equal(row("gender", "missing")$n_treated, 1)
  expect_equal(row("gender", "missing")$value_treated, 50)
  expect_equal(row("disabled", "1")$value_control, 100 / 3)
  expect_equal(row("age", "")$value_control, 5)
  expect_equal(row("age", "")$sd_control, sd(c(2, 4, 9)))
  expect_equal(row("age", "")$value_treated, 3)
  # row order of the cohort does not matter
  expect_equal(table1(d[5:1, ], c("gender", "disabled", "age")), t1)
  expect_snapshot(error = TRUE, table1(d, "ethnicity"))
})

test_that("mdes_table(): the protocol's rows, the data's values from the package's functions", {
  data(sfp_example_fv, package = "sfpceval", envir = environment())
  d <- design_family_valued(sfp_example_fv)
  co <- build_cohort(sfp_example_fv, d)
  m <- mdes_table(co, d)
  expect_equal(m$protocol[m$row == "MDES"], "0.007")
  expect_equal(m$protocol[m$row == "Sample Size (children) Total"], "78,000")
  df <- as.data.frame(co)
  ok <- !is.na(df$cla_18m)
  base <- mean(df$cla_18m[ok & df$treated == 0])
  expect_equal(m$data[m$row == "Baseline measures"], format(signif(base, 3)))
  expect_equal(m$data[m$row == "Number of clusters"], "5")
  expect_equal(m$data[m$row == "Sample Size (children) Total"], format(sum(ok)))
  icc <- icc_anova(df$cla_18m[ok], df$la[ok])$icc
  cell <- sum(ok) / 5 / length(unique(df$step[ok]))
  sp <- sw_power(clusters_per_step = 1, steps = 5, m = cell, p0 = base, icc = max(icc, 1e-6), power = 0.8)
  expect_equal(m$data[m$row == "MDES"],
               format(signif(abs(sp$mdes$effect[sp$mdes$direction == "decrease"]), 3)))
  data(sfp_example_fs, package = "sfpceval", envir = environment())
  ds <- design_family_safeguarding(sfp_example_fs)
  ms <- mdes_table(build_cohort(sfp_example_fs, ds), ds)
  expect_equal(ms$protocol[ms$row == "MDES (Cohen's d)"], "0.08")
  expect_equal(ms$data[ms$row == "Number of clusters"], "3")
})

test_that("a child repeated in the cohort is an error naming the table, column and rows", {
  # Table 1 and the MDES table count children: the cohort has one row per
  # child, so a repeated child_id (stacked pairs, bound cohorts, imputed
  # copies) would count a child twice.
  d <- data.frame(child_id = c("a", "b", "a", "c", "b"), treated = c(0, 0, 1, 1, 0),
                  age = c(2, 4, 9, 1, 5))
  expect_snapshot(error = TRUE, table1(d, "age"))
  expect_error(table1(d, "age"), "rows 3, 5; child_id a, b")
  # distinct ids, or no id column at all: counted as given
  expect_equal(table1(d[1:2, ], "age")$n_control[1], 2)
  expect_equal(table1(d[-1], "age")$n_control[1], 3)
  data(sfp_example_fv, package = "sfpceval", envir = environment())
  des <- design_family_valued(sfp_example_fv)
  co <- suppressMessages(build_cohort(sfp_example_fv, des))
  twice <- rbind(co, co[c(4, 2), ])
  attributes(twice)[setdiff(names(attributes(co)), c("names", "row.names"))] <-
    attributes(co)[setdiff(names(attributes(co)), c("names", "row.names"))]
  expect_s3_class(twice, "sfp_cohort")
  expect_snapshot(error = TRUE, mdes_table(twice, des))
  expect_error(table1(twice), "table1\\(\\) counts each child once")
})
