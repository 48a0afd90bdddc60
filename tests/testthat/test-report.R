# report(): built from an sfp_analysis assembled from the individual function
# calls on the bundled example data (the shape analyse() returns).

results_row <- function(programme, strand, outcome, analysis, term, scale, est,
                        se, lo, hi, p, model) {
  data.frame(programme = programme, strand = strand, outcome = outcome,
             analysis = analysis, term = term, scale = scale, estimate = est,
             std.error = se, conf.low = lo, conf.high = hi, p.value = p,
             p.adjusted = NA_real_, model = model, status = "ok",
             stringsAsFactors = FALSE)
}

example_analysis <- function() {
  data(sfp_example_fv, sfp_example_fs, package = "sfpceval", envir = environment())
  x <- sfp_example_fv
  design <- design_family_valued(x)
  cohort <- build_cohort(x, design)
  primary <- as.data.frame(cohort)
  primary <- primary[!is.na(primary$cla_18m), ]
  primary$gender <- factor(ifelse(primary$gender %in% c("male", "female"),
                                  as.character(primary$gender), "other or unknown"))
  fit <- sw_glmm(cla_18m ~ treated + factor(step) + gender + (1 | la), primary)
  pt <- perm_test(fit, design, data = primary, period = "step", strata = FALSE)
  # the score bootstrap (below 10 clusters wild_boot()'s default is the CR3
  # t-test, #13), whose distribution report() draws
  wb <- suppressWarnings(wild_boot(fit, "treated", variant = "score"), classes = "sfpceval_few_clusters")
  pw <- sw_power(p0 = 0.04, icc = 0.01566, effect = seq(-0.02, 0, by = 0.0025))
  ci <- confint(fit, "treated")
  cf <- coef_table(fit)
  res <- results_row("FV", "stepped_wedge", "cla_18m", "primary", "treated", "log_odds",
                     cf$estimate[cf$term == "treated"], cf$std.error[cf$term == "treated"],
                     ci[1], ci[2], cf$p.value[cf$term == "treated"], "fv_sw_primary")
  res <- rbind(res, results_row("FV", "stepped_wedge", "cla_18m", "permutation", "treated",
                                "log_odds", pt$estimate, NA, NA, NA, pt$p_value, "fv_perm"))
  # Table 1 by arm, with its margins and percentages
  g <- table(primary$gender, factor(primary$treated, 0:1, c("control", "treated")))
  t1 <- data.frame(characteristic = c(rownames(g), "Total"),
                   control = c(g[, 1], sum(g[, 1])), treated = c(g[, 2], sum(g[, 2])),
                   stringsAsFactors = FALSE)
  t1$Total <- t1$control + t1$treated
  t1$pct_treated <- round(100 * t1$treated / t1$Total, 1)
  rownames(t1) <- NULL

  # Family Safeguarding: trend matching, CEM, the DiD
  xs <- sfp_example_fs
  dfs <- design_family_safeguarding(xs)
  cfs <- build_cohort(xs, dfs)
  mc <- build_cohort(xs, design_family_safeguarding(xs, trial_start = as.Date("2015-04-01")),
                     outcomes = "cla_18m")
  m <- match_trends(mc, dfs, "cla_18m", n_candidates = 3)
  stacked <- stack_pairs(cfs, m)
  cm <- cem(data = stacked, design = dfs)
  stacked$cem_weight <- cm$weights
  prim <- stacked[!is.na(stacked$cla_18m) & stacked$cem_weight > 0, ]
  dfit <- suppressMessages(did_fit(cla_18m ~ treated + age | la + fin_year, prim,
                                   cluster = ~la, weights = prim$cem_weight))
  dt <- stats::coef(summary(dfit))
  dci <- confint(dfit)
  res <- rbind(res, results_row("FS", "did", "cla_18m", "primary", "treated", "risk_difference",
                                dfit$coefficients[["treated"]], sqrt(dfit$vcov["treated", "treated"]),
                                dci["treated", 1], dci["treated", 2], NA, "fs_did_primary"))
  tabs <- list(table1 = t1, exclusion_flow = exclusion_flow(cohort),
               cem = matrix_to_df_(cm$n), matching = m$candidates,
               mdes = data.frame(programme = "FV", clusters = 5, m = 2600, icc = 0.01566,
                                 mdes = 0.0088))
  structure(list(results = res, models = data.frame(id = unique(res$model)),
                 fits = list(fv_sw_primary = fit, fv_perm = pt, fv_boot = wb, fv_power = pw,
                             fs_match = m, fs_cem = cm, fs_did_primary = dfit),
                 tables = tabs, design = design, call = quote(analyse(x, design)),
                 settings = list()),
            class = "sfp_analysis")
}

# The example analysis is built once for the file.
ana <- NULL
get_analysis <- function() {
  if (is.null(ana)) ana <<- suppressWarnings(example_analysis())
  ana
}

read_csv_chr <- function(f) utils::read.csv(f, colClasses = "character", check.names = FALSE)

# Count columns by name (the test's own list, not the package's heuristic).
count_like <- function(nm) tolower(nm) %in% c("n", "control", "treated", "total", "all",
                                               "children", "count")

test_that("report() writes every table as CSV with no count below 10 and no lone masked cell", {
  skip_on_cran()
  a <- get_analysis()
  dir <- withr::local_tempdir()
  r <- suppressMessages(report(a, dir, html = FALSE))
  expect_s3_class(r, "sfp_report")
  files <- list.files(dir, pattern = "\\.csv$", full.names = TRUE)
  expect_setequal(basename(files),
                  c("results.csv", "table1.csv", "exclusion_flow.csv", "cem.csv",
                    "matching.csv", "mdes.csv", "disclosure.csv"))
  n_count_cols <- 0L
  for (f in files) {
    d <- read_csv_chr(f)
    for (nm in names(d)[count_like(names(d))]) {
      v <- d[[nm]][d[[nm]] != "[c]" & d[[nm]] != ""]
      num <- suppressWarnings(as.numeric(v))
      expect_false(anyNA(num), info = paste(basename(f), nm))
      expect_true(all(num >= 10), info = paste(basename(f), nm))
      n_count_cols <- n_count_cols + 1L
    }
  }
  expect_gte(n_count_cols, 5L)
  # Table 1: each row and each column holds 0 or >= 2 masked cells
  t1 <- read_csv_chr(file.path(dir, "table1.csv"))
  cnt <- as.matrix(t1[c("control", "treated", "Total")]) == "[c]"
  expect_false(any(rowSums(cnt) == 1L))
  expect_false(any(colSums(cnt) == 1L))
  # a percentage of a masked count is masked
  expect_true(all(t1$pct_treated[cnt[, "treated"]] == "[c]"))
  # exclusion flow: within each stage x LA x arm, and each step over LAs
  fl <- read_csv_chr(file.path(dir, "exclusion_flow.csv"))
  m <- fl$n == "[c]"
  for (g in split(m, paste(fl$stage, fl$la, fl$arm))) expect_false(sum(g) == 1L)
  for (g in split(m, paste(fl$stage, fl$step))) expect_false(sum(g) == 1L)
  # the same cohort published in every stage: masked in all or none, per LA x arm
  coh <- fl[fl$step == "cohort", ]
  for (g in split(coh$n == "[c]", paste(coh$la, coh$arm))) expect_true(all(g) || !any(g))
  expect_true(any(m))
  # the matching table has no child count: ranks and distances published
  mt <- read_csv_chr(file.path(dir, "matching.csv"))
  expect_false(any(unlist(mt) == "[c]"))
  expect_setequal(mt$rank, c("1", "2", "3"))
  # the listing names every masked cell of every table
  lst <- read_csv_chr(file.path(dir, "disclosure.csv"))
  expect_equal(sum(lst$table == "exclusion_flow"), sum(m))
  expect_equal(nrow(lst), nrow(r$disclosure))
})

test_that("report() writes no row-level record and only into dir", {
  skip_on_cran()
  a <- get_analysis()
  parent <- withr::local_tempdir()
  dir <- file.path(parent, "out")
  before <- list.files(parent, recursive = TRUE, all.files = TRUE)
  r <- suppressMessages(report(a, dir, html = FALSE))
  after <- list.files(parent, recursive = TRUE, all.files = TRUE)
  expect_true(all(startsWith(setdiff(after, before), "out/")))
  data(sfp_example_fv, package = "sfpceval", envir = environment())
  ids <- unique(as.data.frame(build_cohort(sfp_example_fv,
                                           design_family_valued(sfp_example_fv)))$child_id)
  for (f in r$csv) {
    d <- read_csv_chr(f)
    expect_false(any(unlist(d) %in% ids), info = basename(f))
  }
  # a table with identifiers is withheld, not written
  a$tables$leak <- data.frame(child_id = ids[1:20], n = 20)
  r2 <- suppressMessages(report(a, file.path(parent, "out2"), html = FALSE))
  expect_false(file.exists(file.path(parent, "out2", "leak.csv")))
  expect_true(any(grepl("leak", r2$withheld$item)))
})

test_that("report() draws the figures, from disclosed numbers", {
  skip_on_cran()
  a <- get_analysis()
  dir <- withr::local_tempdir()
  r <- suppressMessages(report(a, dir, html = FALSE))
  expect_setequal(r$figures$name,
                  c("trend_matching_fs_match", "balance_fs_cem", "permutation_fv_perm",
                    "bootstrap_fv_boot", "power_fv_power", "exclusion_flow"))
  for (f in r$png) {
    expect_true(file.exists(f))
    expect_identical(readBin(f, "raw", 4L), as.raw(c(0x89, 0x50, 0x4e, 0x47)))
  }
})

test_that("the HTML page is self-contained and opens without console errors", {
  skip_on_cran()
  skip_if_not_installed("rmarkdown")
  skip_if_not(rmarkdown::pandoc_available("1.12.3"), "pandoc not installed")
  a <- get_analysis()
  dir <- withr::local_tempdir()
  r <- report(a, dir)
  expect_true(file.exists(r$html))
  expect_setequal(list.files(dir), c(basename(r$csv), basename(r$png), "report.html",
                                    "report_files.txt"))
  expect_setequal(read_manifest_(r$manifest)$file, setdiff(list.files(dir), "report_files.txt"))
  html <- paste(readLines(r$html, warn = FALSE), collapse = "\n")
  # no external resource: scripts, styles, fonts, images, imports
  ext <- "(src|href|srcset|data|poster|action)\\s*=\\s*[\"']?\\s*(https?:|ftp:)?//"
  expect_false(grepl(ext, html, ignore.case = TRUE, perl = TRUE))
  expect_false(grepl("url\\(\\s*[\"']?\\s*(https?:)?//", html, ignore.case = TRUE, perl = TRUE))
  expect_false(grepl("@import", html, fixed = TRUE))
  expect_false(grepl("<link[^>]+href=\"(?!data:)", html, perl = TRUE))
  # every figure embedded as a data URI; the masked cells and the rule shown
  expect_equal(lengths(regmatches(html, gregexpr("data:image/png;base64,", html))),
               length(r$png))
  expect_match(html, "[c]", fixed = TRUE)
  expect_match(html, "counts below\\s+10")
  chrome <- Sys.which(c("chromium", "chromium-browser", "google-chrome"))
  chrome <- chrome[nzchar(chrome)]
  skip_if(!length(chrome), "no headless Chromium")
  console <- function(path) {
    err <- tempfile()
    system2(chrome[[1]], c("--headless", "--no-sandbox", "--disable-gpu",
                           "--enable-logging=stderr", "--v=0",
                           "--host-resolver-rules=\"MAP * ~NOTFOUND\"",
                           "--virtual-time-budget=3000", "--dump-dom",
                           paste0("file://", normalizePath(path))),
            stdout = FALSE, stderr = err, timeout = 60)
    grep("CONSOLE|Uncaught|ERR_", readLines(err, warn = FALSE), value = TRUE)
  }
  # the check detects an error when there is one
  bad <- file.path(withr::local_tempdir(), "bad.html")
  writeLines("<html><body><script>throw new Error('boom')</script></body></html>", bad)
  expect_gt(length(console(bad)), 0L)
  expect_identical(console(r$html), character())
})

test_that("without pandoc, CSV and PNG are written and the message says how to get HTML", {
  skip_on_cran()
  ns <- asNamespace("sfpceval")
  old <- get("html_tools_missing_", ns)
  swap <- function(f) {
    unlockBinding("html_tools_missing_", ns)
    assign("html_tools_missing_", f, envir = ns)
    lockBinding("html_tools_missing_", ns)
  }
  swap(function() "pandoc (apt-get install pandoc)")
  withr::defer(swap(old))
  dir <- withr::local_tempdir()
  expect_message(r <- report(get_analysis(), dir), "HTML page needs pandoc")
  expect_true(is.na(r$html))
  expect_false(file.exists(file.path(dir, "report.html")))
  expect_gt(length(r$csv), 1L)
  expect_gt(length(r$png), 1L)
  expect_output(print(r), "PNG figures")
})

test_that("bad input names the argument", {
  expect_snapshot(error = TRUE, report(list(), tempdir()))
  a <- structure(list(results = data.frame()), class = "sfp_analysis")
  expect_snapshot(error = TRUE, report(a, c("a", "b")))
})

test_that("free-text notes: whole numbers below 10 are redacted, the rest flagged for a hand check", {
  a <- structure(list(results = data.frame(),
                      tables = list(notes = data.frame(model = c("m1", "m2"),
                                                       note = c("sw_glmm(): 3 rows with a missing value excluded",
                                                                "did_fit(): 12 rows excluded; sigma 0.5 in cla_18m"),
                                                       stringsAsFactors = FALSE))),
                 class = "sfp_analysis")
  dir <- withr::local_tempdir()
  r <- report(a, dir, html = FALSE)
  n <- read_csv_chr(file.path(dir, "notes.csv"))
  expect_identical(n$note, c("sw_glmm(): [c] rows with a missing value excluded",
                             "did_fit(): 12 rows excluded; sigma 0.5 in cla_18m"))
  expect_true(any(grepl("notes", r$withheld$item) & grepl("by hand", r$withheld$reason)))
})

test_that("figures are found in fits and in nested lists (matching and CEM kept as extras)", {
  a <- get_analysis()
  b <- a
  b$fits <- a$fits[c("fv_perm")]
  b$extras <- list(fs_did_primary = list(cem = a$fits$fs_cem, matches = list(cla_18m = a$fits$fs_match)))
  found <- sfpceval:::figure_objects_(b)
  expect_setequal(names(found), c("fv_perm", "fs_did_primary_cem", "fs_did_primary_matches_cla_18m"))
  dir <- withr::local_tempdir()
  r <- suppressMessages(report(b, dir, html = FALSE))
  expect_setequal(r$figures$name, c("permutation_fv_perm", "balance_fs_did_primary_cem",
                                    "trend_matching_fs_did_primary_matches_cla_18m",
                                    "exclusion_flow"))
})

test_that("report(round_to = 5) publishes counts rounded to 5", {
  skip_on_cran()
  dir <- withr::local_tempdir()
  r <- suppressMessages(report(get_analysis(), dir, round_to = 5, html = FALSE))
  for (f in c("exclusion_flow.csv", "table1.csv")) {
    d <- read_csv_chr(file.path(dir, f))
    for (nm in names(d)[count_like(names(d))]) {
      v <- as.numeric(d[[nm]][d[[nm]] != "[c]"])
      expect_true(all(v %% 5 == 0), info = paste(f, nm))
    }
  }
})

test_that("table names cannot write outside dir", {
  parent <- withr::local_tempdir()
  a <- structure(list(results = data.frame(),
                      tables = list(`../escape` = data.frame(g = "a", n = 20L))),
                 class = "sfp_analysis")
  r <- report(a, file.path(parent, "out"), html = FALSE)
  expect_false(file.exists(file.path(parent, "escape.csv")))
  expect_true(all(dirname(r$csv) == r$dir))
  expect_identical(sfpceval:::file_name_(c("../a b", ".x", "ok_1.2")), c("__a_b", "_x", "ok_1.2"))
})

test_that("a report of analyse() on simulated data: no count below 10, no lone masked cell", {
  skip_on_cran()
  skip_if_not(exists("analyse", envir = asNamespace("sfpceval"), inherits = FALSE))
  data(sfp_example_fv, package = "sfpceval", envir = environment())
  d <- design_family_valued(sfp_example_fv)
  m <- protocol_models(d)
  m <- m[m$strand == "stepped_wedge" &
           m$analysis %in% c("primary", "secondary", "wild_bootstrap", "permutation"), ]
  a <- suppressMessages(suppressWarnings(analyse(sfp_example_fv, d, models = m,
                                                 imputations = 0L, progress = FALSE)))
  dir <- withr::local_tempdir()
  r <- report(a, dir, html = FALSE)
  expect_true(all(c("results.csv", "table1.csv", "exclusion_flow.csv") %in% basename(r$csv)))
  expect_true(all(c("permutation_fv_sw_cla_18m_permutation", "exclusion_flow") %in% r$figures$name))
  # with 5 authorities the wild row is the score bootstrap studentised by a
  # linearised CR3 jackknife (#13): its bootstrap distribution is drawn
  expect_identical(a$fits$fv_sw_cla_18m_wild$variant, "score_cr3")
  expect_true("bootstrap_fv_sw_cla_18m_wild" %in% r$figures$name)
  t1 <- read_csv_chr(file.path(dir, "table1.csv"))
  for (nm in c("n_control", "n_treated")) {
    v <- t1[[nm]][t1[[nm]] != "[c]"]
    expect_true(all(as.numeric(v) >= 10), info = nm)
    # within each covariate, 0 or >= 2 masked levels per arm (a 0/1 covariate's
    # other level is not shown, so one masked level is protected by it)
    for (g in split(t1[[nm]] == "[c]", t1$variable)) {
      if (length(g) > 1L) expect_false(sum(g) == 1L)
    }
  }
  fl <- read_csv_chr(file.path(dir, "exclusion_flow.csv"))
  v <- fl$n[fl$n != "[c]"]
  expect_true(all(as.numeric(v) >= 10))
  res <- read_csv_chr(file.path(dir, "results.csv"))
  ok <- res$status == "ok"
  expect_false(any(res$estimate[ok] %in% c("[c]", "")))
  expect_equal(as.numeric(res$estimate[ok]), as.data.frame(a)$estimate[as.data.frame(a)$status == "ok"])
})

test_that("a re-run removes the files the earlier report wrote, and only those", {
  parent <- withr::local_tempdir()
  dir <- file.path(parent, "out")
  flow <- data.frame(g = c("a", "b"), n = c(20L, 30L))
  pw <- sw_power(p0 = 0.04, icc = 0.01566, effect = c(-0.02, -0.01))
  a1 <- structure(list(results = data.frame(), fits = list(old_power = pw),
                       tables = list(old_table = flow, kept = flow)),
                  class = "sfp_analysis")
  r1 <- report(a1, dir, html = FALSE)
  expect_true(all(file.exists(file.path(dir, c("old_table.csv", "kept.csv",
                                               "power_old_power.png")))))
  # the user's own files in the same directory, and one outside it
  writeLines("mine", file.path(dir, "notes.txt"))
  writeLines("mine", file.path(dir, "my_figure.png"))
  writeLines("mine", file.path(dir, "my_table.csv"))
  writeLines("mine", file.path(parent, "outside.csv"))
  a2 <- structure(list(results = data.frame(), tables = list(kept = flow)),
                  class = "sfp_analysis")
  r2 <- report(a2, dir, html = FALSE)
  expect_false(file.exists(file.path(dir, "old_table.csv")))
  expect_false(file.exists(file.path(dir, "power_old_power.png")))
  expect_true(file.exists(file.path(dir, "kept.csv")))
  expect_setequal(list.files(dir),
                  c("kept.csv", "results.csv", "disclosure.csv", "notes.txt", "my_figure.png",
                    "my_table.csv", basename(r2$manifest)))
  expect_setequal(read_manifest_(r2$manifest)$file, basename(c(r2$csv, r2$png)))
  # a manifest naming files outside dir or in a subdirectory, or not the
  # report's kinds, deletes none of them, even with their right size and md5
  dir.create(file.path(dir, "sub"))
  writeLines("mine", file.path(dir, "sub", "x.csv"))
  listed <- c("../outside.csv", "notes.txt", "sub/x.csv", "kept.csv")
  fp <- file.path(dir, listed)
  writeLines(c("# sfpceval report manifest v1",
               paste(listed, file.size(fp), unname(tools::md5sum(fp)), sep = "\t")),
             r2$manifest)
  a3 <- structure(list(results = data.frame(), tables = list(other = flow)),
                  class = "sfp_analysis")
  expect_message(report(a3, dir, html = FALSE), "removed .*: kept[.]csv\n$")
  expect_true(file.exists(file.path(parent, "outside.csv")))
  expect_true(file.exists(file.path(dir, "notes.txt")))
  expect_true(file.exists(file.path(dir, "sub", "x.csv")))
  expect_false(file.exists(file.path(dir, "kept.csv")))
})

test_that("the manifest records each file's size and md5 under sfpceval's header", {
  dir <- withr::local_tempdir()
  flow <- data.frame(g = c("a", "b"), n = c(20L, 30L))
  a <- structure(list(results = data.frame(), tables = list(flow = flow)),
                 class = "sfp_analysis")
  r <- report(a, dir, html = FALSE)
  lines <- readLines(r$manifest)
  expect_identical(lines[1L], "# sfpceval report manifest v1")
  # plain-R reading of the lines: name, size, md5, tab-separated
  rows <- do.call(rbind, strsplit(lines[-1L], "\t"))
  f <- file.path(dir, rows[, 1])
  expect_setequal(rows[, 1], basename(c(r$csv, r$png)))
  expect_equal(as.numeric(rows[, 2]), unname(file.info(f)$size))
  expect_identical(rows[, 3], unname(tools::md5sum(f)))
})

test_that("a re-run keeps a listed file the user edited, and removes a stale figure", {
  dir <- withr::local_tempdir()
  flow <- data.frame(g = c("a", "b"), n = c(20L, 30L))
  pw <- sw_power(p0 = 0.04, icc = 0.01566, effect = c(-0.02, -0.01))
  a1 <- structure(list(results = data.frame(), fits = list(old_power = pw),
                       tables = list(old_table = flow, edited = flow)),
                  class = "sfp_analysis")
  report(a1, dir, html = FALSE)
  # the user edits one of the report's tables after it was written
  cat("2,c,40\n", file = file.path(dir, "edited.csv"), append = TRUE)
  a2 <- structure(list(results = data.frame(), tables = list(new = flow)),
                  class = "sfp_analysis")
  msgs <- testthat::capture_messages(report(a2, dir, html = FALSE))
  expect_true(file.exists(file.path(dir, "edited.csv")))
  expect_true(any(grepl("kept .*changed.*: edited[.]csv\n$", msgs)))
  expect_false(file.exists(file.path(dir, "power_old_power.png")))
  expect_false(file.exists(file.path(dir, "old_table.csv")))
  removed <- grep("^report\\(\\): removed", msgs, value = TRUE)
  expect_length(removed, 1L)
  expect_match(removed, "power_old_power[.]png")
  expect_match(removed, "old_table[.]csv")
  expect_false(grepl("edited", removed))
})

test_that("a report_files.txt without sfpceval's header deletes nothing and is left as it is", {
  dir <- withr::local_tempdir()
  flow <- data.frame(g = c("a", "b"), n = c(20L, 30L))
  # the user's own results.csv and figure, listed in the user's own file list
  writeLines("mine", file.path(dir, "my_results.csv"))
  writeLines("mine", file.path(dir, "fig.png"))
  mine <- c("my_results.csv", "fig.png")
  writeLines(mine, file.path(dir, "report_files.txt"))
  a <- structure(list(results = data.frame(), tables = list(flow = flow)),
                 class = "sfp_analysis")
  expect_message(r <- report(a, dir, html = FALSE), "not an sfpceval manifest")
  expect_true(all(file.exists(file.path(dir, mine))))
  expect_identical(readLines(file.path(dir, "report_files.txt")), mine)
  expect_identical(r$manifest, NA_character_)
  # an old-style list with sizes and md5 but no header: still not ours
  fp <- file.path(dir, mine)
  writeLines(paste(mine, file.size(fp), unname(tools::md5sum(fp)), sep = "\t"),
             file.path(dir, "report_files.txt"))
  expect_message(report(a, dir, html = FALSE), "not an sfpceval manifest")
  expect_true(all(file.exists(fp)))
})

test_that("the headline shows each programme's primary rows, then its triangulation strand", {
  # the results as analyse() orders them (the plan's order): Family
  # Safeguarding's DiD rows, a sensitivity row, then its stepped-wedge
  # strand, which the protocol sets out under "Triangulation of results"
  res <- rbind(
    results_row("FS", "stepped_wedge", "cla_18m", "triangulation", "treated", "risk_difference",
                -0.017, 0.003, -0.023, -0.011, 6e-8, "fs_sw_cla_18m_primary"),
    results_row("FS", "did", "cla_18m", "primary", "treated", "risk_difference",
                -0.0132, 0.009, -0.0311, 0.00465, 0.13, "fs_did_cla_18m_fgls"),
    results_row("FS", "did", "cla_18m", "secondary", "treated", "risk_difference",
                0.01, 0.01, -0.01, 0.03, 0.3, "fs_did_rereferral_secondary"),
    results_row("FS", "did", "cla_18m", "treatment_open_days_28", "treated", "risk_difference",
                0.09, 0.02, 0.05, 0.13, 0.001, "fs_did_cla_18m_open_days_28"),
    results_row("FS", "did", "cla_18m", "primary", "treated", "log_odds",
                -0.404, 0.16, -0.73, -0.0776, 0.023, "fs_did_cla_18m_primary"),
    results_row("FS", "stepped_wedge", "cla_18m", "triangulation", "treated", "risk_difference",
                -0.017, 0.05, -0.135, 0.101, 0.55, "fs_sw_cla_18m_wild"))
  bad <- res[1, ]
  bad$model <- "fs_sw_not_run"
  bad$status <- "failed: not identified"
  a <- structure(list(results = rbind(res, bad), tables = list()), class = "sfp_analysis")
  r <- report(a, withr::local_tempdir(), html = FALSE)
  h <- r$headline
  # primary rows first, in the plan's order, then the triangulation rows;
  # secondary and sensitivity rows and rows that did not run are left out
  expect_identical(h$analysis, c("primary", "primary", "triangulation", "triangulation"))
  expect_identical(h$strand, c("did", "did", "stepped_wedge", "stepped_wedge"))
  expect_identical(h$scale, c("risk_difference", "log_odds", "risk_difference", "risk_difference"))
  expect_equal(h$estimate, signif(c(-0.0132, -0.404, -0.017, -0.017), 3))
  expect_equal(h$conf.low, signif(c(-0.0311, -0.73, -0.023, -0.135), 3))
  expect_identical(names(h), c("programme", "strand", "analysis", "outcome", "term", "scale",
                               "estimate", "conf.low", "conf.high", "p.value"))
  expect_output(print(r), "Primary estimates, then the other strand's (triangulation)", fixed = TRUE)
  # two programmes in one table: each programme's primary rows, then its
  # other strand, programmes in the order they come
  # protocol_models() labels every row of the FV DiD strand "triangulation",
  # secondary outcomes too; the protocol triangulates "the found treatment
  # effect for the primary outcome" only, so a secondary outcome's row is not
  # in the headline
  fv <- rbind(
    results_row("FV", "did", "cla_18m", "triangulation", "treated", "log_odds",
                -0.2, 0.1, -0.4, 0, 0.05, "fv_did_cla_18m_primary"),
    results_row("FV", "did", "return_36m", "triangulation", "treated", "risk_difference",
                0.03, 0.02, -0.01, 0.07, 0.13, "fv_did_return_36m_secondary"),
    results_row("FV", "stepped_wedge", "cla_18m", "primary", "treated", "log_odds",
                -0.26, 0.12, -0.49, -0.03, 0.028, "fv_sw_cla_18m_primary"))
  h2 <- sfpceval:::headline_table_(rbind(fv, res))
  expect_identical(paste(h2$programme, h2$analysis),
                   c("FV primary", "FV triangulation", "FS primary", "FS primary",
                     "FS triangulation", "FS triangulation"))
  expect_false("return_36m" %in% h2$outcome)
  expect_identical(unique(h2$outcome), "cla_18m")
  expect_equal(h2$estimate[1:2], c(-0.26, -0.2))
  # a table without triangulation rows: the primary rows alone, as before
  h3 <- sfpceval:::headline_table_(res[res$analysis != "triangulation", ])
  expect_identical(h3$analysis, c("primary", "primary"))
  # a results table without a programme column (edited by hand)
  h4 <- sfpceval:::headline_table_(res[names(res) != "programme"])
  expect_identical(h4$analysis, c("primary", "primary", "triangulation", "triangulation"))
  expect_identical(h4$estimate, h$estimate)
})

test_that("a run that stops with an error lists what it wrote; the next run removes it", {
  dir <- withr::local_tempdir()
  flow <- data.frame(g = c("a", "b"), n = c(20L, 30L))
  pw <- sw_power(p0 = 0.04, icc = 0.01566, effect = c(-0.02, -0.01))
  a1 <- structure(list(results = data.frame(), fits = list(old_power = pw),
                       tables = list(first = flow)), class = "sfp_analysis")
  r1 <- report(a1, dir, html = FALSE)
  writeLines("mine", file.path(dir, "my_table.csv"))
  # a second plan whose CEM object is broken: report() stops at the balance
  # figure, after writing its tables (results.csv and disclosure.csv again)
  broken <- structure(list(imbalance = 1), class = "sfp_cem")
  a2 <- structure(list(results = data.frame(), fits = list(broken = broken),
                       tables = list(second = flow, results_by_la = flow)),
                  class = "sfp_analysis")
  expect_error(report(a2, dir, html = FALSE))
  m <- read_manifest_(r1$manifest)
  # the first run's entries, and the second run's tables with their size and
  # md5 as written now (so they are not taken for files the user edited)
  expect_true(all(c("first.csv", "power_old_power.png", "second.csv", "results_by_la.csv",
                    "results.csv", "disclosure.csv") %in% m$file))
  expect_false(anyDuplicated(m$file) > 0)
  f <- file.path(dir, m$file)
  expect_identical(m$md5, unname(tools::md5sum(f)))
  expect_false("my_table.csv" %in% m$file)
  # a third plan: every file of the first two runs goes, the user's stays
  a3 <- structure(list(results = data.frame(), tables = list(third = flow)), class = "sfp_analysis")
  msgs <- testthat::capture_messages(r3 <- report(a3, dir, html = FALSE))
  expect_setequal(list.files(dir), c("third.csv", "results.csv", "disclosure.csv", "my_table.csv",
                                     "report_files.txt"))
  expect_false(any(grepl("kept", msgs)))
  # figures: only files named as report() names them, modified since the run began
  writeLines("x", file.path(dir, "bootstrap_fit.png"))
  writeLines("x", file.path(dir, "holiday.png"))
  old <- file.path(dir, "power_old.png")
  writeLines("x", old)
  Sys.setFileTime(old, Sys.time() - 3600)
  since <- sfpceval:::figures_since_(dir, Sys.time() - 60)
  expect_identical(basename(since), "bootstrap_fit.png")
  # a manifest that is not sfpceval's is left alone after a stopped run too
  writeLines("my list", file.path(dir, "report_files.txt"))
  expect_error(suppressMessages(report(a2, dir, html = FALSE)))
  expect_identical(readLines(file.path(dir, "report_files.txt")), "my list")
})
