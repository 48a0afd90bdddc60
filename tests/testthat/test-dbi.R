# sfp_data() from a database: table names, queries, DBI::Id, lazy tables.

sqlite_with <- function(x) {
  con <- DBI::dbConnect(RSQLite::SQLite(), ":memory:")
  write_db(x, con)
  con
}
db_args <- function(x) {
  tabs <- names(x)[!vapply(unclass(x), is.null, TRUE)]
  stats::setNames(as.list(tabs), tabs)
}
plain <- function(x) lapply(unclass(x)[names(x)], function(t) {
  if (!is.null(t)) rownames(t) <- NULL
  t
})

test_that("tables read from an embedded database equal the data frames", {
  skip_if_not_installed("DBI")
  skip_if_not_installed("RSQLite")
  x <- simulate_sfp("family_valued", children_per_la_year = 40, seed = 2)
  con <- sqlite_with(x)
  on.exit(DBI::dbDisconnect(con))
  y <- do.call(sfp_data, c(db_args(x), list(con = con, warn = FALSE)))
  expect_s3_class(y, "sfp_data")
  expect_equal(plain(y), plain(x))
  cv <- attr(y, "conversions")
  # SQLite keeps dates as numbers and logicals as 0/1: converted and counted.
  expect_equal(cv$n[cv$table == "referrals" & cv$column %in% "referral_date"],
               sum(!is.na(x$referrals$referral_date)))
  expect_true(any(cv$conversion == "0/1 from the database -> logical"))
  expect_equal(cv$n[cv$table == "children" & cv$conversion == "read from the database (rows)"],
               nrow(x$children))
})

test_that("the same analysis from the database and from data frames gives identical results", {
  skip_if_not_installed("DBI")
  skip_if_not_installed("RSQLite")
  env <- new.env()
  utils::data("sfp_example_fv", package = "sfpceval", envir = env)
  x <- env$sfp_example_fv
  con <- sqlite_with(x)
  on.exit(DBI::dbDisconnect(con))
  y <- do.call(sfp_data, c(db_args(x), list(con = con, warn = FALSE)))
  cx <- build_cohort(x, design_family_valued(x))
  cy <- build_cohort(y, design_family_valued(y))
  expect_identical(as.data.frame(cy), as.data.frame(cx))
  expect_identical(exclusion_flow(cy), exclusion_flow(cx))
  d <- as.data.frame(cx)
  d <- d[!is.na(d$cla_18m), ]
  e <- as.data.frame(cy)
  e <- e[!is.na(e$cla_18m), ]
  fx <- sw_glmm(cla_18m ~ treated + factor(step) + (1 | la), d, nAGQ = 1)
  fy <- sw_glmm(cla_18m ~ treated + factor(step) + (1 | la), e, nAGQ = 1)
  expect_identical(coef(fy), coef(fx))
  expect_identical(vcov(fy), vcov(fx))
})

test_that("a query, a DBI::Id and a lazy table are read too", {
  skip_if_not_installed("DBI")
  skip_if_not_installed("RSQLite")
  x <- simulate_sfp("family_valued", children_per_la_year = 40, seed = 2)
  con <- sqlite_with(x)
  on.exit(DBI::dbDisconnect(con))
  cut <- as.numeric(as.Date("2021-01-01"))
  y <- sfp_data(children = DBI::Id(table = "children"),
                referrals = sprintf("SELECT * FROM referrals WHERE referral_date >= %d", cut),
                con = con, warn = FALSE)
  keep <- x$referrals$referral_date >= as.Date("2021-01-01")
  expect_equal(plain(y)$referrals, `rownames<-`(x$referrals[keep, ], NULL))
  skip_if_not_installed("dbplyr")
  lazy <- dplyr::tbl(con, "cla_episodes")
  z <- sfp_data(children = x$children, cla_episodes = lazy, warn = FALSE)
  expect_equal(plain(z)$cla_episodes, plain(x)$cla_episodes)
})

test_that("database arguments are checked", {
  skip_if_not_installed("DBI")
  skip_if_not_installed("RSQLite")
  x <- simulate_sfp("family_valued", children_per_la_year = 20, seed = 2)
  con <- sqlite_with(x)
  on.exit(DBI::dbDisconnect(con))
  expect_error(sfp_data(children = "children"), "`children` must be a data frame or NULL")
  expect_error(sfp_data(children = DBI::Id(table = "children")),
               "`children` is a database table, so `con` must be a DBI connection")
  expect_error(sfp_data(children = "kids", con = con),
               "`children` names the database table \"kids\", which `con` does not hold")
  expect_error(sfp_data(children = x$children, con = "db"), "`con` must be a DBI connection")
  expect_error(write_db(list(), con), "`x` must be an sfp_data object")
})
