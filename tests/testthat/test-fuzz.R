# Every registered .Call entry point, called directly with hostile arguments:
# wrong types, lengths 0 and 1, NA/NaN/Inf, huge and negative codes,
# mismatched lengths, unsorted offsets. The R process must survive and each
# call must end in a result or an error of class "sfpceval_internal_error"
# (the C layer's own checks), never in a crash or an unclassed error.

ns <- asNamespace("sfpceval")
# valid_calls(): one valid argument list per entry point (helper-ffi.R)

# One call of `entry` with the argument list `args`: "ok", "classed" or the
# message of an unclassed error.
fuzz_call <- function(entry, args) {
  res <- tryCatch(
    withCallingHandlers(do.call(.Call, c(list(entry), args)),
                        warning = function(w) invokeRestart("muffleWarning")),
    error = function(e) e)
  if (!inherits(res, "error")) return("ok")
  if (inherits(res, "sfpceval_internal_error")) return("classed")
  conditionMessage(res)
}

# Whole-argument replacements.
hostile_values <- list(
  null = NULL, list0 = list(), int0 = integer(0), dbl0 = double(0),
  lgl0 = logical(0), na = NA, na_int = NA_integer_, na_real = NA_real_,
  nan = NaN, inf = Inf, minf = -Inf, minus1 = -1L, zero = 0L, one_dbl = 1,
  int_max = .Machine$integer.max, int_min = -.Machine$integer.max,
  huge_dbl = 1e308, str = "a", true = TRUE, seq3 = 1:3,
  dbl_nan = c(0.5, NaN), mat_dbl = matrix(1, 2, 2), mat_int = matrix(1L, 3, 1),
  list_int = list(1L), list_null = list(NULL), fun = sum, env = globalenv()
)

# Edits of one valid argument: its type, length, order and single elements.
element_mutations <- function(x) {
  out <- list()
  n <- length(x)
  if (is.atomic(x) && n > 0) {
    bad <- if (is.integer(x)) {
      list(NA_integer_, -1L, .Machine$integer.max, -.Machine$integer.max)
    } else if (is.double(x)) {
      list(NA_real_, NaN, Inf, -Inf, 1e308, -1e308, -1)
    } else if (is.logical(x)) {
      list(NA)
    } else {
      list(NA_character_)
    }
    for (b in seq_along(bad)) {
      for (pos in unique(c(1L, n))) {
        y <- x
        y[pos] <- bad[[b]]
        out[[sprintf("elem%d_%d", pos, b)]] <- y
      }
    }
    if (n > 1) {
      out$reversed <- rev(x)
      out$drop_last <- x[-n]
      out$first_only <- x[1]
    }
    out$extended <- c(x, x[1])
    if (is.integer(x)) out$as_double <- as.double(x)
    if (is.double(x)) out$as_integer <- suppressWarnings(as.integer(x))
    if (is.matrix(x)) {
      out$transposed <- t(x)
      out$no_dim <- as.vector(x)
    }
  }
  if (is.list(x) && n > 0) {
    out$list_drop_last <- x[-n]
    out$list_extended <- c(x, x[1])
    for (k in seq_len(n)) {
      sub <- c(element_mutations(x[[k]]),
               list(null = NULL, str = "a", int0 = integer(0)))
      for (nm in names(sub)) {
        y <- x
        y[k] <- list(sub[[nm]])
        out[[sprintf("item%d_%s", k, nm)]] <- y
      }
    }
  }
  out
}

test_that("the fuzz covers every registered entry point", {
  registered <- names(getDLLRegisteredRoutines("sfpceval")$.Call)
  expect_setequal(names(valid_calls()), registered)
})

test_that("every entry point answers hostile arguments with a result or a classed error", {
  calls <- valid_calls()
  n_cases <- 0L
  for (nm in names(calls)) {
    entry <- get(nm, envir = ns)
    args <- calls[[nm]]
    expect_identical(fuzz_call(entry, args), "ok", label = paste(nm, "(valid call)"))
    failures <- character()
    for (i in seq_along(args)) {
      cases <- c(hostile_values, element_mutations(args[[i]]))
      for (cn in names(cases)) {
        a <- args
        a[i] <- list(cases[[cn]])
        r <- fuzz_call(entry, a)
        n_cases <- n_cases + 1L
        if (!r %in% c("ok", "classed")) {
          failures <- c(failures, sprintf("arg %d, %s: %s", i, cn, r))
        }
      }
    }
    expect_identical(failures, character(), label = nm)
  }
  expect_gt(n_cases, 2000L)
})

test_that("a C check names the entry point and the argument", {
  f <- get("ffi_crve", envir = ns)
  args <- valid_calls()$ffi_crve
  args[[5]] <- c(0L, 4L, 2L, 6L) # unsorted cluster offsets
  e <- tryCatch(do.call(.Call, c(list(f), args)), error = function(e) e)
  expect_s3_class(e, "sfpceval_internal_error")
  expect_identical(e$entry, "ffi_crve")
  expect_identical(e$arg, "starts")
  expect_match(conditionMessage(e), "^internal error in ffi_crve\\(\\): `starts`")
})
