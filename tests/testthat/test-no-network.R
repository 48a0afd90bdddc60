# Records about children never leave the machine through the package: the
# demo's core steps (simulate, validate, summarise, build a cohort, match,
# fit) run with every way R opens a network connection trapped, and with the
# file system watched: nothing may be written outside tempdir().

# The functions that open a connection to another machine. A call of any of
# them is recorded (and refused) while the trap is set.
network_functions <- function() {
  fns <- list(base = c("url", "socketConnection", "make.socket",
                       "socketAccept", "serverSocket"),
              utils = c("download.file", "url.show"))
  if (requireNamespace("curl", quietly = TRUE)) {
    fns$curl <- intersect(c("curl", "curl_fetch_memory", "curl_fetch_disk",
                            "curl_download", "new_handle"),
                          getNamespaceExports("curl"))
  }
  fns
}

# Run `expr` with the network functions traced; returns the names called.
with_network_trapped <- function(expr) {
  rec <- new.env()
  rec$calls <- character()
  traced <- list()
  for (pkg in names(network_functions())) {
    ns <- asNamespace(pkg)
    for (f in network_functions()[[pkg]]) {
      if (!exists(f, envir = ns, inherits = FALSE)) next
      tracer <- bquote({
        assign("calls", c(get("calls", envir = .(rec)), .(paste0(pkg, "::", f))),
               envir = .(rec))
        stop("sfpceval test: network access refused")
      })
      suppressMessages(trace(f, tracer = tracer, where = ns, print = FALSE))
      traced[[length(traced) + 1L]] <- list(f = f, ns = ns)
    }
  }
  on.exit(for (t in traced) suppressMessages(untrace(t$f, where = t$ns)))
  force(expr)
  rec$calls
}

# Run `expr` recording every path R opens for writing (file connections in
# a "w"/"a" mode, and the functions that create, copy or move files).
with_writes_recorded <- function(expr) {
  rec <- new.env()
  rec$paths <- character()
  # function -> (argument naming the path, argument naming the mode or NA)
  watch <- list(file = c("description", "open"), gzfile = c("description", "open"),
                bzfile = c("description", "open"), xzfile = c("description", "open"),
                file.create = c("...", NA), dir.create = c("path", NA),
                file.copy = c("to", NA), file.rename = c("to", NA),
                file.append = c("file1", NA), sink = c("file", NA),
                saveRDS = c("file", NA), save = c("file", NA))
  ns <- baseenv()
  for (f in names(watch)) {
    arg <- watch[[f]][1]
    mode <- watch[[f]][2]
    path_expr <- if (arg == "...") quote(unlist(list(...))) else as.name(arg)
    writes <- if (is.na(mode)) TRUE else bquote(grepl("[wa]", .(as.name(mode))))
    tracer <- bquote(if (.(writes) && is.character(.(path_expr)))
      assign("paths", c(get("paths", envir = .(rec)), .(path_expr)), envir = .(rec)))
    suppressMessages(trace(f, tracer = tracer, where = ns, print = FALSE))
  }
  on.exit(for (f in names(watch)) suppressMessages(untrace(f, where = ns)))
  force(expr)
  p <- setdiff(rec$paths, c("", "stdin", "stdout", "stderr"))
  unique(normalizePath(p, mustWork = FALSE))
}

# Every file under `dir` with its size and modification time.
snapshot <- function(dir) {
  files <- list.files(dir, recursive = TRUE, full.names = TRUE, all.files = TRUE,
                      no.. = TRUE)
  info <- file.info(files, extra_cols = FALSE)
  data.frame(file = files, size = info$size, mtime = as.numeric(info$mtime),
             stringsAsFactors = FALSE)
}

test_that("the demo's core steps open no connection and write only to tempdir()", {
  before <- snapshot(getwd())
  td <- normalizePath(tempdir())
  written <- NULL
  calls <- with_network_trapped(written <- with_writes_recorded({
    x <- suppressWarnings(simulate_sfp("family_safeguarding", n_la = 4,
                                       children_per_la_year = 15, seed = 3))
    y <- do.call(sfp_data, c(unclass(x)[sfp_tables()], warn = FALSE))
    s <- summary(y)
    end <- as.Date(attr(x, "truth")$period$end)
    co <- suppressMessages(build_cohort(x, design_family_safeguarding(x, data_end = end)))
    expect_gt(nrow(co), 0)
  }))
  expect_identical(calls, character())
  expect_identical(written[!startsWith(written, td)], character())
  # and nothing changed in the working directory
  after <- snapshot(getwd())
  expect_identical(after, before)
})

test_that("the traps do catch a connection and a write", {
  calls <- with_network_trapped(
    try(suppressWarnings(readLines(url("http://localhost:1"))), silent = TRUE))
  expect_true("base::url" %in% calls)
  f <- tempfile()
  expect_identical(with_writes_recorded(writeLines("x", f)), normalizePath(f))
  unlink(f)
})

test_that("the package's code calls no network function", {
  # a static check of every function in the namespace
  ns <- asNamespace("sfpceval")
  net <- unlist(network_functions(), use.names = FALSE)
  net <- c(net, "curl_fetch_memory", "GET", "POST", "httr", "RCurl", "socket")
  uses <- character()
  for (f in ls(ns, all.names = TRUE)) {
    obj <- get(f, envir = ns)
    if (!is.function(obj)) next
    found <- intersect(all.names(body(obj)), net)
    if (length(found)) uses <- c(uses, paste(f, found, sep = ": "))
  }
  expect_identical(uses, character())
})
