library(testthat)
library(sfpceval)

test_check("sfpceval")
