# gctorture(TRUE) over the .Call entry points (tools/memcheck.sh gctorture):
# each entry point is called with its valid arguments and with a selection of
# hostile ones (those of tests/testthat/test-fuzz.R), once normally and once
# with a garbage collection at every allocation. A missing PROTECT shows as a
# crash or as a result that differs between the two runs ("FAIL" lines).
suppressPackageStartupMessages(library(sfpceval))
env <- new.env()
sys.source("tests/testthat/helper-ffi.R", envir = env)
for (e in parse("tests/testthat/test-fuzz.R")) {
  if (!identical(e[[1]], as.name("test_that"))) eval(e, env)
}
calls <- env$valid_calls()
# The call is built first, so that only .Call itself (and the error it may
# raise) runs under torture: R-level code under gctorture is very slow.
run <- function(entry, args, torture = FALSE) {
  cl <- as.call(c(list(quote(.Call), entry), args))
  set.seed(1)
  suppressWarnings(tryCatch({
    gctorture(torture)
    x <- eval(cl)
    gctorture(FALSE)
    x
  }, error = function(e) {
    gctorture(FALSE)
    structure(conditionMessage(e), class = "failed")
  }))
}
n_calls <- 0L
n_fail <- 0L
for (nm in names(calls)) {
  entry <- get(nm, envir = env$ns)
  args <- calls[[nm]]
  cases <- list(valid = args)
  for (i in seq_along(args)) {
    em <- env$element_mutations(args[[i]])
    muts <- c(env$hostile_values[c("null", "na")],
              em[intersect(c("drop_last", "elem1_1"), names(em))])
    for (cn in names(muts)) {
      a <- args
      a[i] <- list(muts[[cn]])
      cases[[sprintf("arg %d %s", i, cn)]] <- a
    }
  }
  for (cn in names(cases)) {
    plain <- run(entry, cases[[cn]])
    tortured <- run(entry, cases[[cn]], torture = TRUE)
    n_calls <- n_calls + 1L
    if (!identical(plain, tortured)) {
      n_fail <- n_fail + 1L
      cat("FAIL", nm, cn, "\n")
    }
  }
  cat(nm, ":", length(cases), "calls\n")
}
cat(sprintf("gctorture: %d calls, %d differ\n", n_calls, n_fail))
