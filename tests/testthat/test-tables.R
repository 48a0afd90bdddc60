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
