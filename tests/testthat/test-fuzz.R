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

# ---- the exported functions of the analysis plan and its outputs -------------
# The same hostile values given to each argument of the exports added with the
# analysis plan (#14, #15, #16): each call ends in a result or in an R error
# that names what is wrong and says how to fix it ("Fix:"), never in one of
# R's own messages ("missing value where TRUE/FALSE needed", "argument is of
# length zero", ...) nor in the C layer's check.

# battery_fv() (helper-fv-small.R) plus the bundled returns written to a
# temporary directory once
fuzz_fv <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      dir <- tempfile()
      write_returns(battery_fv()$x, dir)
      cache <<- c(battery_fv(), list(dir = dir))
    }
    cache
  }
})

# "ok", or the message of an error that does not say what to do.
fuzz_export <- function(f, args) {
  res <- tryCatch({
    suppressWarnings(suppressMessages(do.call(f, args)))
    "ok"
  }, error = function(e) {
    if (inherits(e, "sfpceval_internal_error")) return(paste("C check:", conditionMessage(e)))
    if (grepl("\nFix: ", conditionMessage(e))) "refused" else conditionMessage(e)
  })
  res
}

test_that("the plan's exports answer hostile arguments with a result or a named error", {
  b <- fuzz_fv()
  ftd <- expand.grid(child = 1:4, la = paste0("L", 1:4), year = 1:4)
  ftd$treated <- as.integer(ftd$la == "L1" & ftd$year >= 3)
  ftd$y <- sin(seq_len(nrow(ftd)))
  calls <- list(
    pool_rubin = list(estimate = c(0.21, 0.25, 0.19), std.error = c(0.05, 0.05, 0.06),
                      df_complete = 4, level = 0.95),
    triangulate = list(did = list(estimate = -0.012, std.error = 0.006),
                       sw = list(estimate = -0.008, std.error = 0.005),
                       assumptions = c(did = NA, stepped_wedge = NA), level = 0.95, alpha = 0.05),
    cost_benefit = list(effect = -0.012, p.value = 0.01, children_per_year = 3400,
                        cost_per_child = 60000, costs = rep(4e5, 6), years = 0:5,
                        discount_rate = 0.035, alpha = 0.05, force = FALSE),
    fidelity = list(indicators = data.frame(la = "A", time_point = c("pre", "6m"),
                                            indicator = "caseload", value = c(18, 16))),
    disclose = list(x = data.frame(g = c("a", "b", "Total"), n = c(3L, 20L, 23L)), threshold = 10),
    table1 = list(cohort = b$co, covariates = c("gender", "age")),
    mdes_table = list(cohort = b$co, design = b$d),
    protocol_models = list(design = b$d, outcomes = "cla_18m", sensitivity = FALSE,
                           strands = "stepped_wedge"),
    few_treated_test = list(formula = y ~ treated, data = ftd, group = "la", time = "year",
                            weights = NULL, B = 19, seed = 1, level = 0.95, conf_int = FALSE,
                            shock_ratio = 1),
    cohort_covariates = list(cohort = b$co, outcome = "cla_18m"),
    outcome_table = list(design = b$d),
    read_ssda903 = list(dir = file.path(b$dir, "ssda903"), la_code = NULL, warn = FALSE),
    read_cin_census = list(path = file.path(b$dir, "cin"), la_code = NULL, history = FALSE, warn = FALSE)
  )
  # and the functions whose seeds and test inversion changed with them (#13)
  set.seed(1)
  wd <- expand.grid(child = 1:10, la = letters[1:6], year = 1:4)
  wd$treated <- as.integer(wd$la %in% c("a", "b", "c") & wd$year >= 3)
  wd$y <- rnorm(nrow(wd))
  wfit <- suppressWarnings(did_fit(y ~ treated | la + year, wd, cluster = ~la, vcov = "CR1"))
  calls$wild_boot <- list(fit = wfit, param = "treated", weights = "mammen", B = 99, level = 0.95,
                          r = 0, seed = 1, conf_int = FALSE)
  sd <- expand.grid(la = paste0("L", 1:5), year = 1:4, child = 1:3)
  sd$treated <- as.integer(sd$year >= c(L1 = 3, L2 = 4, L3 = Inf, L4 = Inf, L5 = Inf)[sd$la])
  sd$y <- rnorm(nrow(sd))
  calls$aggregate_att <- list(x = att_gt(sd, outcome = "y", time = "year"), type = "simple",
                              inference = "randomisation", n_perm = 19, max_enumerate = 5,
                              seed = 1, alpha = 0.05)
  if (requireNamespace("DBI", quietly = TRUE) && requireNamespace("RSQLite", quietly = TRUE)) {
    con <- DBI::dbConnect(RSQLite::SQLite(), ":memory:")
    on.exit(DBI::dbDisconnect(con), add = TRUE)
    write_db(b$x, con)
    calls$write_db <- list(x = b$x, con = con, prefix = "copy_", overwrite = TRUE)
    calls$sfp_data <- list(children = "children", referrals = "referrals", con = con, warn = FALSE)
  }
  hostile <- hostile_values[setdiff(names(hostile_values), c("fun", "env"))]
  hostile$fun <- sum
  n_cases <- 0L
  for (nm in names(calls)) {
    f <- get(nm, envir = asNamespace("sfpceval"))
    args <- calls[[nm]]
    expect_identical(fuzz_export(f, args), "ok", label = paste(nm, "(valid call)"))
    failures <- character()
    for (i in seq_along(args)) {
      for (cn in names(hostile)) {
        a <- args
        a[i] <- list(hostile[[cn]])
        r <- fuzz_export(f, a)
        n_cases <- n_cases + 1L
        if (!r %in% c("ok", "refused")) {
          failures <- c(failures, sprintf("%s = <%s>: %s", names(args)[i], cn, r))
        }
      }
    }
    expect_identical(failures, character(), label = nm)
  }
  expect_gt(n_cases, 1000L)
})
