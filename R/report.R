# report(): the analysis as files that may leave a secure research
# environment: disclosure-controlled CSV tables, PNG figures and one
# self-contained HTML page.

#' Write an analysis report that may leave a secure research environment
#'
#' Writes into `dir`, and nowhere else: one CSV per table of the analysis
#' (the results table and every table in `analysis$tables`), PNG figures
#' (trend matching per treated authority, balance before and after CEM, the
#' event study, the permutation and bootstrap distributions, the power curve,
#' the exclusion flow as a diagram), `disclosure.csv` (every masked cell:
#' table, row, column) and `report.html`, one self-contained page with every
#' table and figure embedded (no external script, style, font or image: a
#' secure environment has no internet). Every table passes [disclose()] first
#' (masked cells are written `[c]`); a figure is drawn from disclosed counts,
#' from statistics of the whole sample, or is withheld, and the report says
#' which. No row-level record is written: a table with a child or referral
#' identifier column is withheld.
#'
#' `report_files.txt` lists the files written, with the size and md5 of
#' each. Run again into the same `dir`, `report()` removes the files of the
#' earlier report it lists that this run does not write again (the figures
#' and tables of an earlier analysis) and that are unchanged since they were
#' written, and says which; a listed file that was edited since is kept (and
#' named), and no other file is touched. A run that stops with an error
#' still lists the files it wrote (its tables, and its figures by their
#' names and times), so the next run removes them in turn. A
#' `report_files.txt` that is not
#' sfpceval's (its first line is not `# sfpceval report manifest v1`) is
#' left as it is: nothing is removed and no manifest is written.
#'
#' Where rmarkdown or pandoc is missing, the CSV and PNG files are still
#' written and a message says how to get the HTML page.
#'
#' @param analysis An `sfp_analysis` (from `analyse()`): a list with
#'   `results` (one row per estimate), `fits` (fitted objects by model id),
#'   `tables` (named data frames), `design`, `call` and `settings`.
#' @param dir Directory to write into (created if needed).
#' @param threshold,round_to Passed to [disclose()].
#' @param html Write the HTML page (`TRUE`) or CSV and PNG only.
#' @param title Title of the page.
#' @return Invisibly, an `sfp_report`: `dir`, `html` (path or `NA`), `csv`,
#'   `png` (paths), `disclosure` (the masked cells, as in `disclosure.csv`),
#'   `withheld` (figures and tables not written, with the reason),
#'   `headline` (each programme's primary estimates, then those of its
#'   other strand, `analysis = "triangulation"`: the Family Safeguarding
#'   stepped wedge, the Family Valued DiD) and `manifest` (the path of
#'   `report_files.txt`, the list of files written, or `NA` where a file of
#'   that name is not sfpceval's).
#' @examples
#' data(sfp_example_fv)
#' cohort <- build_cohort(sfp_example_fv, design_family_valued(sfp_example_fv))
#' # the shape analyse() returns, here with one table and no estimate
#' a <- structure(list(results = data.frame(),
#'                     tables = list(exclusion_flow = exclusion_flow(cohort))),
#'                class = "sfp_analysis")
#' r <- report(a, file.path(tempdir(), "sfp-report"), html = FALSE)
#' r
#' head(read.csv(file.path(r$dir, "exclusion_flow.csv")))
#' @export
report <- function(analysis, dir, threshold = 10, round_to = NULL, html = TRUE,
                   title = "sfpceval analysis report") {
  if (!inherits(analysis, "sfp_analysis")) {
    stop_arg("analysis", "must be an `sfp_analysis`", "run analyse() first.")
  }
  if (!is.character(dir) || length(dir) != 1L || is.na(dir) || !nzchar(dir)) {
    stop_arg("dir", "must be one directory path", "for example dir = \"report\".")
  }
  if (!is.character(title) || length(title) != 1L || is.na(title)) {
    stop_arg("title", sprintf("must be one character string, not %s", describe_value(title)),
             "give e.g. title = \"Family Valued: impact evaluation\".")
  }
  if (!is.null(analysis$results) && !is.data.frame(analysis$results)) {
    stop_arg("analysis", sprintf("has `results` that is %s, not a data frame", describe_value(analysis$results)),
             "pass the sfp_analysis that analyse() returned, unedited.")
  }
  tabs_ok <- is.null(analysis$tables) || is.list(analysis$tables) && !is.data.frame(analysis$tables) &&
    (!length(analysis$tables) || !is.null(names(analysis$tables)) && all(nzchar(names(analysis$tables))))
  if (!tabs_ok) {
    stop_arg("analysis", "has `tables` that is not a named list of tables",
             "pass the sfp_analysis that analyse() returned, or give tables as list(name = data frame).")
  }
  check_threshold_(threshold)
  if (!is.null(round_to)) disclose_table_(data.frame(n = 10), threshold, round_to = round_to)
  if (!isTRUE(html) && !isFALSE(html)) stop_arg("html", "must be TRUE or FALSE", "use html = FALSE for CSV and PNG only.")
  if (file.exists(dir) && !dir.exists(dir)) {
    stop_arg("dir", sprintf("(\"%s\") is an existing file, not a directory", dir),
             "give the path of a directory (it is created if needed).")
  }
  dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  if (!dir.exists(dir)) stop_arg("dir", sprintf("(\"%s\") could not be created", dir), "give a directory you can write to.")
  dir <- normalizePath(dir)
  # a run that stops half way still lists in the manifest the files it wrote,
  # so the next run removes them as it removes any earlier report's files
  started <- Sys.time()
  csv <- character()
  finished <- FALSE
  on.exit(if (!finished) record_written_(dir, c(csv, figures_since_(dir, started))), add = TRUE)

  withheld <- list()
  tabs <- report_tables_(analysis, threshold, round_to)
  withheld <- c(withheld, attr(tabs, "withheld"))
  for (nm in names(tabs)) {
    f <- file.path(dir, paste0(file_name_(nm), ".csv"))
    utils::write.csv(published_table_(tabs[[nm]]), f, row.names = FALSE, na = "")
    csv <- c(csv, f)
  }
  masked <- disclosure_listing_(tabs)
  utils::write.csv(masked, file.path(dir, "disclosure.csv"), row.names = FALSE)
  csv <- c(csv, file.path(dir, "disclosure.csv"))

  figs <- report_figures_(analysis, tabs, dir, threshold)
  withheld <- c(withheld, figs$withheld)
  withheld <- if (length(withheld)) do.call(rbind, withheld) else
    data.frame(item = character(), reason = character(), stringsAsFactors = FALSE)

  headline <- headline_table_(tabs$results)
  out <- list(dir = dir, html = NA_character_, csv = csv, png = figs$files$file,
              figures = figs$files, disclosure = masked, withheld = withheld,
              headline = headline, threshold = threshold, round_to = round_to)
  if (html) out$html <- render_report_(out, tabs, analysis, title)
  out$manifest <- replace_manifest_(dir, c(csv, figs$files$file, stats::na.omit(out$html)))
  finished <- TRUE
  class(out) <- "sfp_report"
  invisible(out)
}

#' @export
print.sfp_report <- function(x, ...) {
  cat("sfpceval report in ", x$dir, "\n", sep = "")
  if (!is.na(x$html)) cat("  HTML: ", basename(x$html), "\n", sep = "")
  cat(sprintf("  %d CSV tables, %d PNG figures; %d cells masked (counts below %s)\n",
              length(x$csv), length(x$png), nrow(x$disclosure), format(x$threshold)))
  if (nrow(x$withheld)) {
    cat("  Withheld:\n")
    cat(sprintf("    %s: %s\n", x$withheld$item, x$withheld$reason), sep = "")
  }
  if (NROW(x$headline)) {
    cat("\nPrimary estimates, then the other strand's (triangulation):\n")
    print(x$headline, row.names = FALSE, right = TRUE)
  }
  invisible(x)
}

# A table's or figure's name as a file name inside `dir`: letters, digits,
# "_", "-" and "." only, never a path.
file_name_ <- function(nm) {
  nm <- gsub("[^A-Za-z0-9_.-]", "_", nm)
  sub("^[.]+", "_", nm)
}

# The files a report wrote are listed in `dir`'s manifest: a header line
# naming it sfpceval's, then one line a file: base name, size in bytes and
# md5 at writing time, tab-separated. A re-run removes the files a manifest
# with that header lists, that this run did not write again (a figure or
# table of an earlier analysis) and that are unchanged since (same size and
# md5); a listed file the user edited is kept. Only plain `.csv`, `.png` and
# `.html` names are removed: never a path, a subdirectory or another file of
# the user's. A `report_files.txt` without the header is the user's: it is
# neither read nor overwritten.
.report_manifest <- "report_files.txt"
.report_manifest_header <- "# sfpceval report manifest v1"

read_manifest_ <- function(f) {
  none <- data.frame(file = character(), size = numeric(), md5 = character(),
                     stringsAsFactors = FALSE)
  lines <- readLines(f, warn = FALSE)
  if (!length(lines) || !identical(lines[1L], .report_manifest_header)) return(NULL)
  parts <- strsplit(lines[-1L], "\t")
  parts <- parts[lengths(parts) == 3L]
  if (!length(parts)) return(none)
  data.frame(file = vapply(parts, `[`, "", 1L),
             size = suppressWarnings(as.numeric(vapply(parts, `[`, "", 2L))),
             md5 = vapply(parts, `[`, "", 3L), stringsAsFactors = FALSE)
}

replace_manifest_ <- function(dir, written) {
  f <- file.path(dir, .report_manifest)
  old <- if (file.exists(f)) read_manifest_(f) else NULL
  if (file.exists(f) && is.null(old)) {
    message(sprintf(paste0(
      "report(): %s in %s is not an sfpceval manifest (its first line is not '%s'): ",
      "it is left as it is, no file is removed and no manifest is written; ",
      "move it elsewhere to let report() list its files"), .report_manifest, dir,
      .report_manifest_header))
    return(NA_character_)
  }
  old <- old %||% data.frame(file = character(), size = numeric(), md5 = character(),
                             stringsAsFactors = FALSE)
  ours <- grepl("^[A-Za-z0-9_][A-Za-z0-9_.-]*[.](csv|png|html)$", old$file) &
    !old$file %in% basename(written)
  old <- old[ours, , drop = FALSE]
  path <- file.path(dir, old$file)
  there <- file.exists(path)
  same <- there
  same[there] <- file.size(path[there]) == old$size[there] &
    unname(tools::md5sum(path[there])) == old$md5[there]
  same[is.na(same)] <- FALSE
  if (any(same)) {
    unlink(path[same])
    message("report(): removed the earlier report's files not written again: ",
            paste(old$file[same], collapse = ", "))
  }
  if (any(there & !same)) {
    message("report(): kept the earlier report's files not written again that changed ",
            "since it wrote them: ", paste(old$file[there & !same], collapse = ", "))
  }
  write_manifest_(f, written)
  f
}

write_manifest_ <- function(f, files, old = NULL) {
  lines <- paste(basename(files), file.size(files), unname(tools::md5sum(files)), sep = "\t")
  if (NROW(old)) lines <- c(paste(old$file, old$size, old$md5, sep = "\t"), lines)
  writeLines(c(.report_manifest_header, lines), f)
}

# After a run that stopped: the manifest keeps the earlier report's entries
# and lists the files this run wrote (with their size and md5 now), removing
# nothing; a manifest that is not sfpceval's is left alone.
record_written_ <- function(dir, written) {
  f <- file.path(dir, .report_manifest)
  old <- if (file.exists(f)) read_manifest_(f) else NULL
  if (file.exists(f) && is.null(old)) return(invisible(NULL))
  written <- unique(written[file.exists(written)])
  if (!length(written)) return(invisible(NULL))
  old <- old[!old$file %in% basename(written), , drop = FALSE]
  write_manifest_(f, written, old)
  invisible(f)
}

# The figures and page a run that stopped wrote before it stopped: files
# named as report() names its figures (or report.html), modified since it
# started.
.report_figure_names <- paste0("^((trend_matching|balance|event_study|permutation|bootstrap|power)_",
                               "[A-Za-z0-9_.-]*|exclusion_flow)[.]png$|^report[.]html$")

figures_since_ <- function(dir, since) {
  f <- list.files(dir, pattern = .report_figure_names, full.names = TRUE)
  f[file.mtime(f) >= since - 1]
}

# ---- tables -----------------------------------------------------------------------

.row_level_columns <- c("child_id", "referral_id", "upn", "dob", "date_of_birth")
.text_columns <- c("note", "notes", "message", "warning", "comment")

# Whole numbers below the threshold in free text (messages quoting counts)
# become "[c]"; decimals, identifiers such as "cla_18m" and larger numbers stay.
redact_numbers_ <- function(x, threshold) {
  re <- "(?<![0-9A-Za-z_.])[0-9]+(?![0-9A-Za-z_]|\\.[0-9])"
  m <- gregexpr(re, x, perl = TRUE)
  regmatches(x, m) <- lapply(regmatches(x, m), function(v) {
    ifelse(as.numeric(v) < threshold, "[c]", v)
  })
  x
}

report_tables_ <- function(analysis, threshold, round_to) {
  res <- as.data.frame(analysis$results %||% data.frame())
  tabs <- analysis$tables %||% list()
  tabs <- tabs[!vapply(tabs, is.null, TRUE)]
  withheld <- list()
  hold <- function(nm, why) {
    withheld[[length(withheld) + 1L]] <<- data.frame(item = paste0("table ", nm), reason = why,
                                                     stringsAsFactors = FALSE)
  }
  keep <- list()
  for (nm in names(tabs)) {
    t <- tabs[[nm]]
    if (is.matrix(t) || is.table(t)) t <- matrix_to_df_(unclass(t))
    if (is.character(t)) t <- data.frame(note = t, stringsAsFactors = FALSE)
    text_cols <- if (is.data.frame(t)) intersect(names(t), .text_columns) else character()
    if (length(text_cols)) {
      for (tc in text_cols) t[[tc]] <- redact_numbers_(as.character(t[[tc]]), threshold)
      hold(paste0(nm, " (partly)"), sprintf(
        "free text: whole numbers below %s redacted as [c]; check the rest by hand before release",
        format(threshold)))
    }
    if (!is.data.frame(t)) {
      hold(nm, "not a data frame")
    } else if (any(tolower(names(t)) %in% .row_level_columns)) {
      hold(nm, "holds row-level identifiers")
    } else {
      keep[[nm]] <- t
    }
  }
  out <- disclose(structure(list(results = res, tables = keep), class = "sfp_analysis"),
                  threshold = threshold, round_to = round_to)
  out <- unclass(out)
  attr(out, "withheld") <- withheld
  out
}

disclosure_listing_ <- function(tabs) {
  rows <- lapply(names(tabs), function(nm) {
    l <- disclosure_log(tabs[[nm]])
    if (!nrow(l)) return(NULL)
    data.frame(table = nm, row = l$row, label = l$label, column = l$column,
               stringsAsFactors = FALSE)
  })
  rows <- rows[!vapply(rows, is.null, TRUE)]
  if (!length(rows)) {
    return(data.frame(table = character(), row = integer(), label = character(),
                      column = character(), stringsAsFactors = FALSE))
  }
  do.call(rbind, rows)
}

# The headline: each programme's primary estimates, then those of its other
# strand (`analysis` "triangulation": the strand each protocol pools with its
# own under "Triangulation of results"), in the plan's order within each.
headline_table_ <- function(res) {
  if (is.null(res) || !nrow(res) || !"analysis" %in% names(res)) return(NULL)
  h <- res[res$analysis %in% c("primary", "triangulation"), , drop = FALSE]
  if ("status" %in% names(h)) h <- h[h$status %in% "ok", , drop = FALSE]
  prog <- if ("programme" %in% names(h)) match(h$programme, unique(h$programme)) else rep(0L, nrow(h))
  h <- h[order(prog, match(h$analysis, c("primary", "triangulation"))), , drop = FALSE]
  keep <- intersect(c("programme", "strand", "analysis", "outcome", "term", "scale", "estimate",
                      "conf.low", "conf.high", "p.value"), names(h))
  h <- as.data.frame(h)[keep]
  class(h) <- "data.frame"
  for (nm in intersect(c("estimate", "conf.low", "conf.high"), names(h))) h[[nm]] <- signif(h[[nm]], 3)
  if ("p.value" %in% names(h)) h$p.value <- signif(h$p.value, 2)
  rownames(h) <- NULL
  h
}

# ---- figures ----------------------------------------------------------------------

# One PNG: draws with `draw()` unless `unsafe` gives a reason to withhold.
png_figure_ <- function(dir, name, caption, draw, width = 1000, height = 650) {
  f <- file.path(dir, paste0(file_name_(name), ".png"))
  grDevices::png(f, width = width, height = height, res = 110,
                 type = if (capabilities("cairo")) "cairo" else getOption("bitmapType"))
  ok <- tryCatch({
    draw()
    TRUE
  }, error = function(e) conditionMessage(e), finally = grDevices::dev.off())
  if (!isTRUE(ok)) {
    unlink(f)
    return(list(withheld = data.frame(item = paste0("figure ", name),
                                      reason = paste("could not be drawn:", ok),
                                      stringsAsFactors = FALSE)))
  }
  list(file = data.frame(file = f, name = name, caption = caption, stringsAsFactors = FALSE))
}

.figure_classes <- c("sfp_trend_match", "sfp_cem", "sfp_aggte", "did_fit", "sw_perm_test",
                     "wild_boot", "sfp_sw_power", "sfp_power_sim")

# The fitted objects a figure can be drawn from, wherever the analysis keeps
# them: `fits` by model id, and lists nested in it or in `extras` (matching
# and CEM objects), named by their path.
figure_objects_ <- function(analysis) {
  found <- list()
  walk <- function(x, path, depth) {
    if (inherits(x, .figure_classes)) {
      found[[paste(path, collapse = "_")]] <<- x
    } else if (is.list(x) && !is.data.frame(x) && is.null(oldClass(x)) && depth < 3L) {
      nms <- names(x) %||% as.character(seq_along(x))
      for (i in seq_along(x)) walk(x[[i]], c(path, nms[i]), depth + 1L)
    }
  }
  for (part in c("fits", "extras")) {
    obj <- analysis[[part]]
    if (is.list(obj)) {
      nms <- names(obj) %||% as.character(seq_along(obj))
      for (i in seq_along(obj)) walk(obj[[i]], nms[i], 0L)
    }
  }
  found[!duplicated(names(found))]
}

fits_of_class_ <- function(fits, cls) {
  fits[vapply(fits, function(f) inherits(f, cls), TRUE)]
}

report_figures_ <- function(analysis, tabs, dir, threshold) {
  fits <- figure_objects_(analysis)
  out <- list()
  add <- function(r) out[[length(out) + 1L]] <<- r
  withhold <- function(item, reason) {
    add(list(withheld = data.frame(item = item, reason = reason, stringsAsFactors = FALSE)))
  }
  for (id in names(fits_of_class_(fits, "sfp_trend_match"))) {
    m <- fits[[id]]
    add(png_figure_(dir, paste0("trend_matching_", id),
                    sprintf("Standardised pre-period trends of `%s`: each treated authority and its nearest candidates (z-scores across authorities per quarter; no count is shown).", m$outcome),
                    function() graphics::plot(m),
                    height = max(650, 330 * grDevices::n2mfrow(length(unique(m$candidates$treated_la)))[1])))
  }
  for (id in names(fits_of_class_(fits, "sfp_cem"))) {
    cm <- fits[[id]]
    if (is.null(cm$imbalance)) next
    s <- summary(cm)
    chk <- disclose(s, threshold)$overall
    if (any(attr(chk, "suppressed")[, c("treated", "control")])) {
      withhold(paste0("figure balance_", id), "a group before or after matching has fewer children than the threshold")
      next
    }
    add(png_figure_(dir, paste0("balance_", id),
                    "Covariate balance before and after coarsened exact matching: differences in (weighted) means or shares, treated - control, over the whole matched sample (the groups' own means are not shown).",
                    function() plot_balance_(s)))
  }
  for (id in names(fits_of_class_(fits, "sfp_aggte"))) {
    a <- fits[[id]]
    add(png_figure_(dir, paste0("event_study_", id), "Event study: average effects by time since go-live.",
                    function() graphics::plot(a)))
  }
  for (id in names(fits_of_class_(fits, "did_fit"))) {
    f <- fits[[id]]
    if (!any(grepl("^event_", names(f$coefficients)))) next
    add(png_figure_(dir, paste0("event_study_", id), "Event study: DiD coefficients by event time with confidence intervals.",
                    function() plot_event_terms_(f)))
  }
  for (id in names(fits_of_class_(fits, "sw_perm_test"))) {
    p <- fits[[id]]
    add(png_figure_(dir, paste0("permutation_", id),
                    sprintf("Permutation distribution of the %s statistic over %d allocations; the line is the observed value.",
                            p$statistic, length(p$statistics)),
                    function() plot_distribution_(p$statistics, p$estimate, "Permutation distribution",
                                                  sprintf("%s statistic", p$statistic))))
  }
  for (id in names(fits_of_class_(fits, "wild_boot"))) {
    b <- fits[[id]]
    if (is.null(b$tstar)) next
    add(png_figure_(dir, paste0("bootstrap_", id),
                    sprintf("Bootstrap distribution of t* (%s, %s weights, %s draws); the line is the observed t.",
                            b$method, b$weights, format(b$B, big.mark = ",")),
                    function() plot_distribution_(b$tstar, b$statistic, "Wild bootstrap distribution", "t*")))
  }
  for (id in names(fits_of_class_(fits, c("sfp_sw_power", "sfp_power_sim")))) {
    pw <- fits[[id]]
    if (inherits(pw, "sfp_sw_power") && NROW(pw$power) < 2L) next
    add(png_figure_(dir, paste0("power_", id), "Power by effect size.",
                    function() if (inherits(pw, "sfp_power_sim")) graphics::plot(pw) else plot_power_(pw)))
  }
  flow_tab <- tabs[["exclusion_flow"]]
  if (!is.null(flow_tab)) {
    add(png_figure_(dir, "exclusion_flow", "Exclusion flow, all authorities and arms ([c] = masked).",
                    function() plot_flow_(flow_tab), width = 1100, height = 800))
  }
  files <- do.call(rbind, lapply(out, `[[`, "file"))
  if (is.null(files)) files <- data.frame(file = character(), name = character(),
                                          caption = character(), stringsAsFactors = FALSE)
  list(files = files, withheld = lapply(Filter(function(o) !is.null(o$withheld), out), `[[`, "withheld"))
}

plot_balance_ <- function(s) {
  m <- s$means
  o <- rev(seq_len(nrow(m)))
  r <- range(c(m$diff_before, m$diff_after, 0), na.rm = TRUE, finite = TRUE)
  op <- graphics::par(mar = c(4, 12, 2.5, 1))
  on.exit(graphics::par(op))
  graphics::plot(m$diff_before[o], seq_along(o), xlim = r, yaxt = "n", pch = 1,
                 xlab = "Difference in means (treated - control)", ylab = "",
                 main = "Balance before and after CEM")
  graphics::points(m$diff_after[o], seq_along(o), pch = 19)
  graphics::axis(2, at = seq_along(o), labels = m$term[o], las = 1, cex.axis = 0.7)
  graphics::abline(v = 0, lty = 2)
  graphics::legend("bottomright", c("before", "after"), pch = c(1, 19), bty = "n")
}

plot_event_terms_ <- function(f) {
  ci <- stats::confint(f)
  j <- grep("^event_", rownames(ci))
  e <- suppressWarnings(as.numeric(gsub("[^0-9-]", "", sub("^event_", "", rownames(ci)[j]))))
  e[is.na(e)] <- seq_along(j)[is.na(e)]
  est <- f$coefficients[rownames(ci)[j]]
  graphics::plot(e, est, ylim = range(ci[j, ], 0, na.rm = TRUE), pch = 19,
                 xlab = "Event time", ylab = "Estimate", main = "Event study")
  graphics::arrows(e, ci[j, 1], e, ci[j, 2], angle = 90, code = 3, length = 0.03)
  graphics::abline(h = 0, lty = 2)
}

plot_distribution_ <- function(stats, observed, main, xlab) {
  stats <- stats[is.finite(stats)]
  graphics::hist(stats, breaks = min(60L, max(10L, length(unique(stats)))), main = main,
                 xlab = xlab, col = "grey85", border = "grey40",
                 xlim = range(c(stats, observed), finite = TRUE))
  graphics::abline(v = observed, col = "firebrick", lwd = 2)
}

plot_power_ <- function(pw) {
  p <- pw$power
  graphics::plot(p$effect, p$power, type = "b", pch = 19, ylim = c(0, 1),
                 xlab = "Effect (difference in the outcome's rate)", ylab = "Power",
                 main = "Power curve")
  graphics::abline(h = 0.8, lty = 2, col = "grey40")
}

# The exclusion flow as boxes: population steps down the left, exclusions to
# the right, each outcome's analysed sample along the bottom; numbers are the
# disclosed ones.
plot_flow_ <- function(flow) {
  if ("la" %in% names(flow)) {
    keep <- flow$la == "All"
    pub <- published_table_(flow)$n[keep]
    flow <- as.data.frame(flow)[keep, , drop = FALSE]
  } else {
    pub <- published_table_(flow)$n
  }
  pop <- flow$stage == "population"
  steps <- flow$step[pop]
  npub <- pub[pop]
  outs <- unique(flow$stage[!pop])
  an <- vapply(outs, function(o) {
    k <- which(flow$stage == o & flow$step == "analysed")
    if (length(k)) pub[k[1L]] else "-"
  }, "")
  graphics::plot.new()
  graphics::plot.window(c(0, 1), c(0, 1))
  graphics::title("Exclusion flow")
  box <- function(x, y, lab, w = 0.36, h = 0.07, col = "grey95") {
    graphics::rect(x - w / 2, y - h / 2, x + w / 2, y + h / 2, col = col, border = "grey30")
    graphics::text(x, y, lab, cex = 0.75)
  }
  k <- length(steps)
  ys <- seq(0.9, 0.35, length.out = max(k, 2L))[seq_len(k)]
  first <- 1L
  last <- k
  box(0.25, ys[first], paste0(steps[first], "\nn = ", npub[first]))
  if (k > 2L) {
    for (i in 2:(k - 1L)) {
      box(0.72, ys[i], paste0(steps[i], "\nn = ", npub[i]), w = 0.45, col = "mistyrose")
      graphics::arrows(0.25, ys[i], 0.72 - 0.225, ys[i], length = 0.07)
    }
  }
  box(0.25, ys[last], paste0(steps[last], "\nn = ", npub[last]), col = "honeydew")
  graphics::segments(0.25, ys[first] - 0.035, 0.25, ys[last] + 0.035)
  if (length(outs)) {
    xs <- seq(0.08, 0.92, length.out = length(outs))
    w <- min(0.8 / length(outs), 0.3)
    for (i in seq_along(outs)) {
      box(xs[i], 0.12, paste0(outs[i], "\nanalysed ", an[i]), w = w, h = 0.09, col = "aliceblue")
      graphics::arrows(0.25, ys[last] - 0.035, xs[i], 0.165, length = 0.05, col = "grey50")
    }
  }
}

# ---- HTML -----------------------------------------------------------------------

render_report_ <- function(rep, tabs, analysis, title) {
  missing <- html_tools_missing_()
  if (!is.null(missing)) {
    message("report(): CSV and PNG files written to ", rep$dir, "; the HTML page needs ",
            missing, ".")
    return(NA_character_)
  }
  template <- system.file("report", "report.Rmd", package = "sfpceval")
  work <- tempfile("sfpceval-report-")
  dir.create(work)
  on.exit(unlink(work, recursive = TRUE), add = TRUE)
  file.copy(template, file.path(work, "report.Rmd"))
  css <- system.file("report", "report.css", package = "sfpceval")
  file.copy(css, file.path(work, "report.css"))
  pub <- lapply(tabs, published_table_, digits = 4)
  settings <- analysis$settings
  info <- list(title = title, rep = rep, tables = pub, design = analysis$design,
               call = analysis$call, settings = settings,
               created = format(Sys.time(), "%Y-%m-%d %H:%M %Z"),
               version = as.character(utils::packageVersion("sfpceval")))
  saveRDS(info, file.path(work, "report.rds"))
  fmt <- rmarkdown::html_document(self_contained = TRUE, theme = NULL, highlight = NULL,
                                  mathjax = NULL, css = "report.css", section_divs = TRUE,
                                  pandoc_args = c("--metadata", paste0("pagetitle=", title)))
  out <- rmarkdown::render(file.path(work, "report.Rmd"), output_format = fmt,
                           output_file = "report.html", output_dir = work,
                           intermediates_dir = work, knit_root_dir = work,
                           envir = new.env(parent = globalenv()), quiet = TRUE)
  dest <- file.path(rep$dir, "report.html")
  file.copy(out, dest, overwrite = TRUE)
  dest
}

# NULL when the HTML page can be made, else what to install.
html_tools_missing_ <- function() {
  if (!requireNamespace("rmarkdown", quietly = TRUE) || !requireNamespace("knitr", quietly = TRUE)) {
    return(paste0("the rmarkdown and knitr packages (install.packages(c(\"rmarkdown\", \"knitr\")), ",
                  "or apt-get install r-cran-rmarkdown) and pandoc"))
  }
  if (!rmarkdown::pandoc_available("1.12.3")) {
    return("pandoc (apt-get install pandoc, or RStudio's: set RSTUDIO_PANDOC to its directory)")
  }
  NULL
}
