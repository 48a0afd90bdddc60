# The statutory returns as analysts receive them, in and out:
#   read_cin_census()  DfE CIN census XML (one file per authority and year) or
#                      its event-per-row flat CSV form -> the CIN tables;
#   read_ssda903()     SSDA903 header / episodes / UASC CSVs -> children and
#                      cla_episodes;
#   read_returns()     a directory written by write_returns() -> sfp_data();
#   write_returns()    sfp_data -> those layouts (simulate_sfp(format =
#                      "returns") calls it).
# The XML is parsed in base R by a small tokenizer for this flat schema
# (xml_parse()); every conversion is counted in attr(x, "conversions") and
# every soft problem in attr(x, "problems"), as sfp_data() does.

# ---------------------------------------------------------------------------
# Element names and where they go

# Single-valued leaves of each container, by the schema column they fill.
.cin_fields <- list(
  Child = c(LAchildID = "child_id", PersonBirthDate = "dob",
            ExpectedPersonBirthDate = "expected_dob",
            GenderCurrent = "gender_current", Sex = "sex",
            Ethnicity = "ethnicity"),
  CINdetails = c(CINreferralDate = "referral_date",
                 ReferralSource = "referral_source",
                 PrimaryNeedCode = "primary_need",
                 CINclosureDate = "closure_date",
                 ReasonForClosure = "closure_reason",
                 ReferralNFA = "referral_nfa"),
  Assessments = c(AssessmentActualStartDate = "assessment_start",
                  AssessmentAuthorisationDate = "assessment_end"),
  CINPlanDates = c(CINPlanStartDate = "start", CINPlanEndDate = "end"),
  ChildProtectionPlans = c(CPPstartDate = "start", CPPendDate = "end",
                           InitialCategoryOfAbuse = "initial_category",
                           LatestCategoryOfAbuse = "latest_category",
                           NumberOfPreviousCPP = "n_previous_cpp")
)
# Multi-valued leaves: element -> (container, column).
.cin_multi <- list(Disability = c("Child", "disability"),
                   AssessmentFactors = c("Assessments", "factor"))
# Containers whose leaves the protocols do not use (read past, counted).
.cin_ignored <- c("Section47", "Reviews", "FormerUPN", "UPN", "UPNunknown",
                  "PersonDeathDate", "PersonSchoolYear",
                  "AssessmentInternalReviewDate", "DateOfInitialCPC",
                  "S47ActualStartDate", "InitialCPCtarget", "ICPCnotRequired",
                  "CPPreviewDate")
# Code list of each coded column.
.cin_codes <- c(ethnicity = "ethnicity", disability = "disability",
                referral_source = "referral_source",
                primary_need = "primary_need", closure_reason = "closure_reason",
                factor = "factor", initial_category = "cp_category",
                latest_category = "cp_category")
# The container each table comes from, and the element of a column there
# (plans share the column names `start` and `end`).
.cin_container <- c(children = "Child", referrals = "CINdetails",
                    assessments = "Assessments", assessment_factors = "Assessments",
                    cin_plans = "CINPlanDates", cp_plans = "ChildProtectionPlans")
.cin_element_name <- function(col, table) {
  f <- c(.cin_fields[[.cin_container[[table]]]], Disability = "disability",
         AssessmentFactors = "factor")
  names(f)[match(col, f)]
}

# SSDA903 published column names.
.s903_header <- c(CHILD = "child_id", SEX = "gender_raw", DOB = "dob",
                  ETHNIC = "ethnicity")
.s903_header_all <- c("CHILD", "SEX", "DOB", "ETHNIC", "UPN", "MOTHER",
                      "MC_DOB")
.s903_episodes <- c(CHILD = "child_id", DECOM = "decom", RNE = "rne",
                    LS = "ls", CIN = "cin", PLACE = "place",
                    PLACE_PROVIDER = "place_provider", DEC = "dec",
                    REC = "rec")
.s903_episodes_all <- c(names(.s903_episodes), "REASON_PLACE_CHANGE",
                        "HOME_POST", "PL_POST", "URN")
.s903_uasc <- c("CHILD", "SEX", "DOB", "DUC")

# ---------------------------------------------------------------------------
# Import log: conversions and problems, as in sfp_data()

new_import_log <- function() {
  log <- new.env(parent = emptyenv())
  log$conversions <- list()
  log$problems <- list()
  log
}
log_conversion <- function(log, table, column, conversion, n) {
  if (n > 0L) log$conversions[[length(log$conversions) + 1L]] <-
      data.frame(table = table, column = column, conversion = conversion,
                 n = as.integer(n), stringsAsFactors = FALSE)
}
log_problem <- function(log, table, column, n, problem) {
  if (n > 0L) log$problems[[length(log$problems) + 1L]] <-
      data.frame(table = table, column = column, n = as.integer(n),
                 problem = problem, stringsAsFactors = FALSE)
}
log_frame <- function(x, cols) {
  if (length(x)) return(do.call(rbind, x))
  out <- as.data.frame(stats::setNames(rep(list(character()), length(cols)), cols),
                       stringsAsFactors = FALSE)
  out$n <- integer()
  out[c(cols[cols != "n"], "n")][cols]
}
finish_log <- function(tables, log, class, warn) {
  conv <- log_frame(log$conversions, c("table", "column", "conversion", "n"))
  prob <- log_frame(log$problems, c("table", "column", "n", "problem"))
  if (warn) for (p in prob$problem) warning(p, call. = FALSE)
  structure(tables, class = c(class, "sfp_returns"), conversions = conv,
            problems = prob)
}

# For each key, TRUE when some column holds two different non-missing values
# (a value filled in by a later return is not a conflict).
conflicting <- function(d, key, cols) {
  k <- d[[key]]
  dup <- k %in% k[duplicated(k)]
  out <- stats::setNames(rep(FALSE, length(unique(k))), unique(k))
  if (!any(dup)) return(out)
  for (col in cols) {
    v <- as.character(d[[col]][dup])
    ok <- !is.na(v)
    n <- tapply(v[ok], k[dup][ok], function(x) length(unique(x)))
    out[names(n)[n > 1L]] <- TRUE
  }
  out
}

# "file a.xml, child C1 (line 12)" for messages.
where_child <- function(file, child, line = NULL) {
  paste0("file ", basename(file),
         if (!is.null(child) && !is.na(child)) paste0(", child ", child) else "",
         if (!is.null(line) && !is.na(line)) paste0(" (line ", line, ")") else "")
}

# ---------------------------------------------------------------------------
# A small XML tokenizer for the flat return schemas (no DTD, no mixed
# content): tags and the text between them, checked for nesting.

xml_unescape <- function(x) {
  if (!any(grepl("&", x, fixed = TRUE))) return(x)
  x <- gsub("&lt;", "<", x, fixed = TRUE)
  x <- gsub("&gt;", ">", x, fixed = TRUE)
  x <- gsub("&quot;", "\"", x, fixed = TRUE)
  x <- gsub("&apos;", "'", x, fixed = TRUE)
  gsub("&amp;", "&", x, fixed = TRUE)
}
xml_escape <- function(x) {
  x <- gsub("&", "&amp;", x, fixed = TRUE)
  x <- gsub("<", "&lt;", x, fixed = TRUE)
  gsub(">", "&gt;", x, fixed = TRUE)
}

# Parse one file into events: one row per opening or closing tag, in
# document order, with name, type (1 open, -1 close), level, line, the text
# that follows an opening tag (for leaves), the index of the matching event,
# and for leaves the name of the parent element. Errors name the file, the
# child and the element.
xml_parse <- function(file) {
  txt <- readChar(file, file.size(file), useBytes = TRUE)
  if (is.na(txt) || !nzchar(txt)) stop(sprintf("CIN census %s is empty.\nFix: give the XML return as exported.", where_child(file, NULL)), call. = FALSE)
  Encoding(txt) <- "UTF-8"
  # Comments, declarations and processing instructions carry no data: blank
  # them out (keeping newlines, so line numbers stay right).
  blank_out <- function(txt, marker, pattern) {
    if (!grepl(marker, txt, fixed = TRUE)) return(txt)
    m <- gregexpr(pattern, txt, perl = TRUE)
    regmatches(txt, m) <- list(gsub("[^\n]", " ", regmatches(txt, m)[[1]]))
    txt
  }
  txt <- blank_out(txt, "<!--", "(?s)<!--.*?-->")
  txt <- blank_out(txt, "<?", "(?s)<\\?.*?\\?>")
  txt <- blank_out(txt, "<!DOCTYPE", "<!DOCTYPE[^>]*>")
  # Split at "<": each piece is "tag>text".
  pieces <- strsplit(txt, "<", fixed = TRUE)[[1]]
  nls <- nchar(pieces, "bytes") - nchar(gsub("\n", "", pieces, fixed = TRUE), "bytes")
  line <- cumsum(nls)[-length(pieces)] + 1L      # line of each tag's "<"
  lead <- pieces[1]
  pieces <- pieces[-1]
  if (!length(pieces)) stop(sprintf("CIN census %s holds no XML elements.\nFix: give the XML return as exported.", where_child(file, NULL)), call. = FALSE)
  gt <- regexpr(">", pieces, fixed = TRUE)
  tags <- paste0("<", substr(pieces, 1L, gt))
  text <- substring(pieces, gt + 1L)
  stray <- gt < 0L | grepl(">", text, fixed = TRUE)
  if (any(stray) || grepl(">", lead, fixed = TRUE)) {
    i <- max(1L, which(stray)[1] - 1L)
    ids <- which(startsWith(pieces[seq_len(i)], "LAchildID>"))
    child <- if (length(ids)) xml_unescape(text[ids[length(ids)]]) else NULL
    stop(sprintf("CIN census %s: a `<` or `>` outside a tag after %s (line %d).\nFix: close the tag, or write < and > in values as &lt; and &gt;.",
                 where_child(file, child), tags[i], line[i]), call. = FALSE)
  }
  close <- startsWith(tags, "</")
  self <- !close & endsWith(tags, "/>")
  name <- sub("^</?([^\\s/>]+)(?s).*$", "\\1", tags, perl = TRUE)
  name <- sub("^.*:", "", name, perl = TRUE) # namespace prefixes
  # A self-closing tag is an opening tag followed by its closing tag.
  k <- rep(seq_along(tags), 1L + self)
  second <- c(FALSE, k[-1] == k[-length(k)])
  type <- ifelse(close[k] | second, -1L, 1L)
  ev <- data.frame(name = name[k], type = type, line = line[k],
                   text = ifelse(second | close[k], "", trimws(text[k])),
                   stringsAsFactors = FALSE)
  ev$text[self[k] & !second] <- ""
  depth <- cumsum(ev$type)
  ev$level <- ifelse(ev$type == 1L, depth, depth + 1L)
  # Nesting: at each level, events alternate opening/closing with equal
  # names. Checked vectorised; on failure a stack walk finds the first error.
  o <- order(ev$level, seq_len(nrow(ev)))
  ok <- all(depth >= 0L) && depth[length(depth)] == 0L
  if (ok) {
    lev <- ev$level[o]
    odd <- seq(1L, length(o), by = 2L)
    ok <- length(o) %% 2L == 0L && all(ev$type[o[odd]] == 1L) &&
      all(ev$type[o[odd + 1L]] == -1L) && all(lev[odd] == lev[odd + 1L]) &&
      all(ev$name[o[odd]] == ev$name[o[odd + 1L]])
  }
  if (!ok) xml_nesting_error(ev, file)
  ev$match <- integer(nrow(ev))
  ev$match[o[odd]] <- o[odd + 1L]
  ev$match[o[odd + 1L]] <- o[odd]
  ev$text <- xml_unescape(ev$text)
  ev$leaf <- ev$type == 1L & ev$match == seq_len(nrow(ev)) + 1L
  # Parent of every opening tag: the last opening tag one level up.
  ev$parent <- NA_integer_
  opens <- which(ev$type == 1L)
  for (l in sort(unique(ev$level[opens]))[-1]) {
    here <- opens[ev$level[opens] == l]
    up <- opens[ev$level[opens] == l - 1L]
    ev$parent[here] <- up[findInterval(here, up)]
  }
  ev
}

# The first nesting error, found by a stack walk (only run on failure).
xml_nesting_error <- function(ev, file) {
  stack <- integer()
  for (i in seq_len(nrow(ev))) {
    if (ev$type[i] == 1L) {
      stack <- c(stack, i)
      next
    }
    if (!length(stack)) {
      stop(sprintf("CIN census %s: closing tag </%s> has no opening tag (line %d).\nFix: remove it or add the opening tag.",
                   where_child(file, xml_child_at(ev, i)), ev$name[i], ev$line[i]),
           call. = FALSE)
    }
    top <- stack[length(stack)]
    if (ev$name[top] != ev$name[i]) {
      stop(sprintf("CIN census %s: element <%s> (line %d) is not closed before </%s> (line %d).\nFix: add the closing tag </%s>.",
                   where_child(file, xml_child_at(ev, top)), ev$name[top],
                   ev$line[top], ev$name[i], ev$line[i], ev$name[top]),
           call. = FALSE)
    }
    stack <- stack[-length(stack)]
  }
  top <- stack[length(stack)]
  stop(sprintf("CIN census %s: element <%s> (line %d) is not closed by the end of the file.\nFix: add the closing tag </%s> (is the file cut short?).",
               where_child(file, xml_child_at(ev, top)), ev$name[top],
               ev$line[top], ev$name[top]), call. = FALSE)
}

# LAchildID of the <Child> around event i (for messages), or its position.
xml_child_at <- function(ev, i) {
  ch <- which(ev$type == 1L & ev$name == "Child")
  ch <- ch[ch <= i]
  if (!length(ch)) return(NA_character_)
  c0 <- ch[length(ch)]
  id <- which(ev$name == "LAchildID" & ev$type == 1L)
  id <- id[id > c0]
  nxt <- which(ev$type == 1L & ev$name == "Child")
  nxt <- nxt[nxt > c0]
  if (length(id) && (!length(nxt) || id[1] < nxt[1]) && nzchar(ev$text[id[1]])) {
    return(ev$text[id[1]])
  }
  sprintf("number %d (no LAchildID)", length(ch))
}

# ---------------------------------------------------------------------------
# CIN census XML -> raw character tables (one file)

# Index of the enclosing container named `what` for each event (NA if none).
xml_enclosing <- function(ev, what) {
  op <- which(ev$type == 1L & ev$name == what)
  out <- rep(NA_integer_, nrow(ev))
  if (!length(op)) return(out)
  j <- findInterval(seq_len(nrow(ev)), op)
  inside <- j > 0L
  inside[inside] <- seq_len(nrow(ev))[inside] <= ev$match[op[j[inside]]]
  out[inside] <- j[inside]
  out
}

cin_read_xml <- function(file, log) {
  ev <- xml_parse(file)
  root <- ev$name[1]
  if (root != "Message") {
    stop(sprintf("CIN census %s: the root element is <%s>, not <Message>.\nFix: give the CIN census XML return (Message/Header/Children/Child).",
                 where_child(file, NULL), root), call. = FALSE)
  }
  leaf <- which(ev$leaf)
  hdr <- leaf[xml_enclosing(ev, "Header")[leaf] %in% 1L]
  header <- stats::setNames(ev$text[hdr], ev$name[hdr])
  child_i <- xml_enclosing(ev, "Child")
  n_child <- sum(ev$type == 1L & ev$name == "Child")
  ids <- rep(NA_character_, n_child)
  idl <- leaf[ev$name[leaf] == "LAchildID" & !is.na(child_i[leaf])]
  ids[child_i[idl]] <- ev$text[idl]
  miss <- which(is.na(ids) | !nzchar(ids))
  if (length(miss)) {
    stop(sprintf("CIN census %s: %d <Child> element%s without <LAchildID> (child number %s).\nFix: every child needs its LAchildID.",
                 where_child(file, NULL), length(miss), if (length(miss) > 1) "s" else "",
                 paste(utils::head(miss, 5), collapse = ", ")), call. = FALSE)
  }
  # Containers and the leaves that belong to each.
  containers <- c("Child", "CINdetails", "Assessments", "CINPlanDates",
                  "ChildProtectionPlans")
  idx <- lapply(stats::setNames(containers, containers),
                function(cn) xml_enclosing(ev, cn))
  out <- list()
  for (cn in containers) {
    op <- which(ev$type == 1L & ev$name == cn)
    fields <- .cin_fields[[cn]]
    mine <- leaf[!is.na(idx[[cn]][leaf])]
    # A leaf belongs to the innermost container: drop leaves inside a
    # deeper container of the list.
    deeper <- containers[seq(match(cn, containers) + 1L, length.out = length(containers) - match(cn, containers))]
    if (cn == "Child") deeper <- "CINdetails"
    for (d in deeper) mine <- mine[is.na(idx[[d]][mine])]
    tab <- data.frame(.inst = seq_along(op), stringsAsFactors = FALSE)
    tab$.child <- ids[child_i[op]]
    tab$.line <- ev$line[op]
    if (cn != "Child") tab$.parent <- switch(cn, CINdetails = child_i[op],
                                             idx$CINdetails[op])
    for (el in names(fields)) {
      hit <- mine[ev$name[mine] == el]
      inst <- idx[[cn]][hit]
      dup <- inst[duplicated(inst)]
      if (length(dup)) {
        i <- hit[which(duplicated(inst))[1]]
        stop(sprintf("CIN census %s: <%s> appears more than once in one <%s> (line %d).\nFix: keep one <%s> per <%s>.",
                     where_child(file, ids[child_i[i]]), el, cn, ev$line[i],
                     el, cn), call. = FALSE)
      }
      col <- rep(NA_character_, length(op))
      col[inst] <- ev$text[hit]
      col[!is.na(col) & !nzchar(col)] <- NA_character_
      tab[[fields[[el]]]] <- col
    }
    out[[cn]] <- tab
  }
  for (el in names(.cin_multi)) {
    cn <- .cin_multi[[el]][1]
    hit <- leaf[ev$name[leaf] == el & !is.na(idx[[cn]][leaf])]
    out[[el]] <- data.frame(.inst = idx[[cn]][hit], .child = ids[child_i[hit]],
                            value = ev$text[hit], stringsAsFactors = FALSE)
  }
  known <- c(unlist(lapply(.cin_fields, names)), names(.cin_multi), .cin_ignored)
  extra <- leaf[!is.na(child_i[leaf]) & !ev$name[leaf] %in% known]
  if (length(extra)) {
    log_problem(log, "children", NA, length(extra), sprintf(
      "CIN census %s: %d element%s the protocols do not use were read past (%s).",
      basename(file), length(extra), if (length(extra) > 1) "s" else "",
      paste(utils::head(unique(ev$name[extra]), 5), collapse = ", ")))
  }
  list(header = header, tables = out)
}

# The raw XML tables of one file -> flat raw tables keyed by child and
# referral date (the shape the flat CSV form gives directly).
cin_flatten_xml <- function(p, file) {
  t <- p$tables
  ch <- t$Child
  ch$disability <- cin_collapse(t$Disability, nrow(ch))
  ref <- t$CINdetails
  ref_key <- function(parent) ref$referral_date[parent]
  ass <- t$Assessments
  ass$referral_date <- ref_key(ass$.parent)
  ass$factor <- cin_collapse(t$AssessmentFactors, nrow(ass))
  pl <- t$CINPlanDates
  pl$referral_date <- ref_key(pl$.parent)
  cp <- t$ChildProtectionPlans
  cp$referral_date <- ref_key(cp$.parent)
  miss <- which(is.na(ref$referral_date))
  if (length(miss)) {
    stop(sprintf("CIN census %s: <CINdetails> without <CINreferralDate> (line %d).\nFix: every CINdetails needs its CINreferralDate.",
                 where_child(file, ref$.child[miss[1]]), ref$.line[miss[1]]),
         call. = FALSE)
  }
  list(Child = ch, CINdetails = ref, Assessments = ass, CINPlanDates = pl,
       ChildProtectionPlans = cp)
}

# Multi-valued leaves -> one string per instance, codes joined by ",".
cin_collapse <- function(m, n) {
  out <- rep(NA_character_, n)
  if (nrow(m)) {
    s <- tapply(m$value, m$.inst, paste, collapse = ",")
    out[as.integer(names(s))] <- s
  }
  out
}

# ---------------------------------------------------------------------------
# CIN census flat CSV (one row per event, the form the Social Finance / LIIA
# tools export: LAchildID, Date, Type, CINreferralDate, ReferralSource, ...,
# Factors, ..., Disabilities) -> the same flat raw tables.

cin_read_csv <- function(file) {
  d <- utils::read.csv(file, colClasses = "character", na.strings = "",
                       check.names = FALSE, strip.white = TRUE)
  need <- c("LAchildID", "CINreferralDate")
  miss <- setdiff(need, names(d))
  if (length(miss)) {
    stop(sprintf("CIN census %s lacks column%s %s.\nFix: give the flat CIN census CSV with its published column names (LAchildID, CINreferralDate, ...).",
                 where_child(file, NULL), if (length(miss) > 1) "s" else "",
                 paste0("`", miss, "`", collapse = ", ")), call. = FALSE)
  }
  d[] <- lapply(d, function(v) { v[!is.na(v) & !nzchar(v)] <- NA; v })
  col <- function(nm) if (nm %in% names(d)) d[[nm]] else rep(NA_character_, nrow(d))
  pick <- function(rows, key, fields, what) {
    sub <- d[rows, , drop = FALSE]
    k <- do.call(paste, c(lapply(key, function(x) sub[[x]]), sep = "\r"))
    vals <- lapply(names(fields), function(f) if (f %in% names(sub)) sub[[f]] else rep(NA_character_, nrow(sub)))
    names(vals) <- fields
    first <- !duplicated(k)
    out <- as.data.frame(c(list(.child = sub$LAchildID[first], .line = which(rows)[first] + 1L),
                           lapply(vals, `[`, first)), stringsAsFactors = FALSE)
    for (f in names(vals)) {
      v <- vals[[f]]
      ref <- v[first][match(k, k[first])]
      bad <- which(!is.na(v) & (is.na(ref) | v != ref))
      if (length(bad)) {
        stop(sprintf("CIN census %s: column `%s` has two values for one %s (rows %d and %d: \"%s\" and \"%s\").\nFix: give one value per %s.",
                     where_child(file, sub$LAchildID[bad[1]]),
                     names(fields)[fields == f][1], what,
                     which(rows)[match(k[bad[1]], k)] + 1L, which(rows)[bad[1]] + 1L,
                     ref[bad[1]] %||% "", v[bad[1]], what), call. = FALSE)
      }
    }
    out
  }
  all <- rep(TRUE, nrow(d))
  ch <- pick(all, "LAchildID", c(.cin_fields$Child, Disabilities = "disability"),
             "child")
  ref <- pick(all, c("LAchildID", "CINreferralDate"), .cin_fields$CINdetails,
              "referral")
  has <- function(nm) !is.na(col(nm))
  ass <- pick(has("AssessmentActualStartDate"),
              c("LAchildID", "CINreferralDate", "AssessmentActualStartDate"),
              c(CINreferralDate = "referral_date", .cin_fields$Assessments,
                Factors = "factor"), "assessment")
  pl <- pick(has("CINPlanStartDate"),
             c("LAchildID", "CINreferralDate", "CINPlanStartDate"),
             c(CINreferralDate = "referral_date", .cin_fields$CINPlanDates),
             "CIN plan")
  cp <- pick(has("CPPstartDate"), c("LAchildID", "CINreferralDate", "CPPstartDate"),
             c(CINreferralDate = "referral_date", .cin_fields$ChildProtectionPlans),
             "child protection plan")
  header <- c(LEA = unique(stats::na.omit(col("LEA")))[1],
              ReferenceDate = NA_character_)
  yr <- unique(stats::na.omit(col("YEAR")))
  if (length(yr) == 1L && grepl("^[0-9]{4}$", yr)) header["ReferenceDate"] <- paste0(yr, "-03-31")
  list(header = header,
       tables = list(Child = ch, CINdetails = ref, Assessments = ass,
                     CINPlanDates = pl, ChildProtectionPlans = cp))
}

# ---------------------------------------------------------------------------
# Conversions shared by both forms

# Character dates -> Date; ISO (the XML form) or dd/mm/YYYY; an impossible
# date is an error naming the file, the child and the element.
cin_dates <- function(v, file, child, line, element, table, log, form = "ISO") {
  p <- parse_dates(v)
  bad <- which(!is.na(v) & is.na(p$date))
  if (length(bad)) {
    i <- bad[1]
    stop(sprintf("CIN census %s: <%s> \"%s\" is not a date%s.\nFix: write dates as YYYY-MM-DD.",
                 where_child(file[i], child[i], line[i]), element, v[i],
                 if (length(bad) > 1) sprintf(" (and %d more)", length(bad) - 1L) else ""),
         call. = FALSE)
  }
  iso <- !is.na(v) & grepl("^[0-9]{4}-", v)
  log_conversion(log, table, element, "ISO text -> Date", sum(iso))
  log_conversion(log, table, element, "dd/mm/YYYY text -> Date", sum(!is.na(v) & !iso))
  p$date
}

# Codes checked against the official list: unknown codes are kept (sfp_data()
# decides whether they are an error) and warned about, naming the file, the
# child and the element.
check_return_codes <- function(v, list_name, file, child, element, table, log) {
  codes <- .code_lists[[list_name]]
  parts <- if (list_name %in% c("disability", "factor")) strsplit(v, ",", fixed = TRUE) else as.list(v)
  len <- lengths(parts)
  flat <- trimws(unlist(parts))
  up <- toupper(flat)
  fixed <- !is.na(flat) & flat != up & up %in% codes
  log_conversion(log, table, element, "code letter case -> official spelling", sum(fixed))
  flat[fixed] <- up[fixed]
  bad <- which(!is.na(flat) & !flat %in% codes)
  if (length(bad)) {
    row <- rep(seq_along(v), len)[bad]
    shown <- utils::head(unique(data.frame(f = basename(file[row]), c = child[row],
                                           v = flat[bad])), 3)
    log_problem(log, table, element, length(bad), sprintf(
      "Unknown code%s in <%s> (%d value%s; not in sfp_codes(\"%s\")): %s.",
      if (length(bad) > 1) "s" else "", element, length(bad),
      if (length(bad) > 1) "s" else "", list_name,
      paste0("\"", shown$v, "\" in file ", shown$f, ", child ", shown$c, collapse = "; ")))
  }
  if (list_name %in% c("disability", "factor")) {
    return(unname(vapply(split(flat, rep(seq_along(v), len)), function(x) {
      if (all(is.na(x))) NA_character_ else paste(x, collapse = ",")
    }, "")[as.character(seq_along(v))]))
  }
  flat
}

# ---------------------------------------------------------------------------
# read_cin_census()

#' Read CIN census returns
#'
#' Reads the Department for Education's children in need (CIN) census as
#' local authorities return it: the XML return (`Message` / `Header` /
#' `Children` / `Child`, one file per authority and year), or its flat CSV
#' form with one row per event (the columns `LAchildID`, `Date`, `Type`,
#' `CINreferralDate`, `ReferralSource`, `PrimaryNeedCode`, `CINclosureDate`,
#' `ReasonForClosure`, `ReferralNFA`, `AssessmentActualStartDate`,
#' `AssessmentAuthorisationDate`, `Factors`, `CINPlanStartDate`,
#' `CINPlanEndDate`, `CPPstartDate`, `CPPendDate`, `InitialCategoryOfAbuse`,
#' `LatestCategoryOfAbuse`, `NumberOfPreviousCPP`, `PersonBirthDate`,
#' `ExpectedPersonBirthDate`, `GenderCurrent` or `Sex`, `Ethnicity`,
#' `Disabilities`, plus `LEA` and `YEAR` where the authority and collection
#' year are not in the file name). Several files, authorities and years are
#' read at once and joined into the CIN tables of [sfp_tables()].
#'
#' What is read: from `ChildIdentifiers`, `LAchildID` (the `child_id`),
#' `PersonBirthDate`, `ExpectedPersonBirthDate`, `GenderCurrent` (to 2023-24)
#' or `Sex` (from 2024-25) as `gender_raw`; from `ChildCharacteristics`,
#' `Ethnicity` and every `Disability`; from each `CINdetails`, the referral
#' (`CINreferralDate`, `ReferralSource`, `PrimaryNeedCode`,
#' `CINclosureDate`, `ReasonForClosure`, `ReferralNFA`) with its
#' `Assessments` (start, authorisation and every `AssessmentFactors` code),
#' `CINPlanDates` and `ChildProtectionPlans` (dates, categories,
#' `NumberOfPreviousCPP`); the authority from `Header/Source/LEA` and the
#' collection from `Header/CollectionDetails/ReferenceDate`. `Section47`,
#' reviews, UPNs and other elements the protocols do not use are read past
#' and counted.
#'
#' Keys: the census has none for referrals and assessments, so
#' `referral_id` is `<child_id>/<CINreferralDate>` and `assessment_id` is
#' `<referral_id>/<AssessmentActualStartDate>` (a suffix `#2`, `#3` marks a
#' repeated start date). A referral open at the end of a collection year is
#' in the next year's return too: across returns each referral, assessment
#' and plan is kept once, from the latest return (which holds its closure),
#' and how many were joined this way is counted. Each referral also carries
#' the `la_code` of the return it came from.
#'
#' Checks: the XML must nest properly (a missing closing tag is an error
#' naming the file, the child and the element); an element that may appear
#' once (a birth date, a referral date) appearing twice in one child or
#' referral is an error; dates must be dates; codes are checked against
#' [sfp_codes()] and unknown ones are warned about, naming the file, the
#' child and the element (they are kept, and [sfp_data()] then decides).
#'
#' @param path Files, or directories to search (recursively) for `.xml` and
#'   `.csv` files.
#' @param la_code The authority's 3-digit code for files whose header (or
#'   `LEA` column) does not give one.
#' @param history `FALSE` (default): one row per child, from the latest
#'   return, with children whose details differ between returns counted.
#'   `TRUE`: one row per child per return, with `recorded_date` the return's
#'   reference date (the form [sfp_data()] accepts, for rules over time).
#' @param warn `TRUE` to raise the soft problems as warnings.
#' @return A list of class `sfp_returns` with the tables `children`,
#'   `referrals`, `assessments`, `assessment_factors`, `cin_plans` and
#'   `cp_plans`, and attributes `conversions` (table, column, conversion, n)
#'   and `problems` (table, column, n, problem). Pass the tables to
#'   [sfp_data()], or read a whole directory with [read_returns()].
#' @seealso [read_ssda903()], [read_returns()], [write_returns()].
#' @examples
#' x <- simulate_sfp("family_valued", children_per_la_year = 30, seed = 1)
#' dir <- tempfile()
#' write_returns(x, dir)
#' cin <- read_cin_census(file.path(dir, "cin"))
#' sapply(cin, nrow)
#' attr(cin, "conversions")
#' @export
read_cin_census <- function(path, la_code = NULL, history = FALSE, warn = TRUE) {
  if (!isTRUE(history) && !isFALSE(history)) {
    stop_arg("history", sprintf("must be TRUE or FALSE, not %s", describe_value(history)),
             "use history = TRUE to keep every return's view of a child.")
  }
  check_return_args(la_code, warn)
  files <- return_files(path, c("xml", "csv"), "path")
  log <- new_import_log()
  raw <- lapply(files, function(f) {
    p <- if (grepl("\\.xml$", f, ignore.case = TRUE)) {
      q <- cin_read_xml(f, log)
      list(header = q$header, tables = cin_flatten_xml(q, f))
    } else cin_read_csv(f)
    la <- p$header[["LEA"]] %||% NA_character_
    if (is.na(la) || !nzchar(la)) la <- la_code %||% return_la_from_path(f)
    if (is.null(la) || is.na(la)) {
      stop(sprintf("CIN census %s: no authority code (no <LEA> in the header).\nFix: give `la_code`.",
                   where_child(f, NULL)), call. = FALSE)
    }
    ref <- p$header[["ReferenceDate"]] %||% NA_character_
    lapply(p$tables, function(t) {
      t$.file <- rep(f, nrow(t))
      t$.la <- rep(la, nrow(t))
      t$.ref <- rep(ref, nrow(t))
      t
    })
  })
  log_conversion(log, "(files)", NA, "files read", length(files))
  stack <- function(nm) {
    ts <- lapply(raw, `[[`, nm)
    cols <- unique(unlist(lapply(ts, names)))
    do.call(rbind, lapply(ts, function(t) {
      t[setdiff(cols, names(t))] <- list(rep(NA_character_, nrow(t)))
      t[cols]
    }))
  }
  tabs <- lapply(stats::setNames(nm = c("Child", "CINdetails", "Assessments",
                                        "CINPlanDates", "ChildProtectionPlans")),
                 stack)
  # Latest return first: reference date, then file order.
  ord <- function(t) order(-as.numeric(parse_dates(t$.ref)$date %||% NA),
                           -match(t$.file, files), na.last = TRUE)
  tabs <- lapply(tabs, function(t) t[ord(t), , drop = FALSE])
  out <- cin_tables(tabs, history, log)
  finish_log(out, log, "sfp_cin_census", warn)
}

# Flat raw tables (latest return first) -> the schema's CIN tables.
cin_tables <- function(t, history, log) {
  conv_dates <- function(tab, cols, table) {
    for (col in cols) {
      tab[[col]] <- cin_dates(tab[[col]], tab$.file, tab$.child, tab$.line,
                              .cin_element_name(col, table), table, log)
    }
    tab
  }
  conv_codes <- function(tab, cols, table) {
    for (col in intersect(cols, names(.cin_codes))) {
      tab[[col]] <- check_return_codes(tab[[col]], .cin_codes[[col]], tab$.file,
                                       tab$.child, .cin_element_name(col, table), table, log)
    }
    tab
  }
  # children
  ch <- t$Child
  ch <- conv_dates(ch, c("dob", "expected_dob"), "children")
  g_cur <- !is.na(ch$gender_current)
  log_conversion(log, "children", "gender_raw", "GenderCurrent -> gender_raw", sum(g_cur))
  log_conversion(log, "children", "gender_raw", "Sex -> gender_raw", sum(!g_cur & !is.na(ch$sex)))
  ch$gender_raw <- as.character(ch$gender_current)
  ch$gender_raw[!g_cur] <- as.character(ch$sex[!g_cur])
  ch$gender_raw <- check_return_codes(ch$gender_raw, "gender_raw", ch$.file, ch$.child,
                                      "GenderCurrent/Sex", "children", log)
  ch <- conv_codes(ch, c("ethnicity", "disability"), "children")
  ch$la_code <- ch$.la
  ch$recorded_date <- parse_dates(ch$.ref)$date
  cols <- c("child_id", "la_code", "dob", "expected_dob", "gender_raw",
            "ethnicity", "disability")
  if (history) {
    if (anyNA(ch$recorded_date)) {
      stop_arg("history", "needs each return's reference date, and some files have none",
               "give XML returns (with Header/CollectionDetails/ReferenceDate) or CSVs with a YEAR column, or use history = FALSE.")
    }
    children <- ch[!duplicated(ch[c("child_id", "recorded_date")]), c(cols, "recorded_date")]
  } else {
    first <- !duplicated(ch$child_id)
    differs <- conflicting(ch, "child_id", setdiff(cols, "child_id"))
    log_conversion(log, "children", NA, "child in several returns: latest kept",
                   sum(duplicated(ch$child_id)))
    log_problem(log, "children", NA, sum(differs), sprintf(
      "%d child%s ha%s details that differ between returns; the latest return's are kept (use history = TRUE for one row per return).",
      sum(differs), if (sum(differs) > 1) "ren" else "", if (sum(differs) > 1) "ve" else "s"))
    # Each column from the latest return that holds it (a birth date first
    # given after the birth, a code first recorded later).
    children <- ch[first, cols]
    for (col in setdiff(cols, "child_id")) {
      ok <- !is.na(ch[[col]])
      children[[col]] <- ch[[col]][ok][match(children$child_id, ch$child_id[ok])]
    }
  }
  children$disability <- strsplit(children$disability, ",", fixed = TRUE)
  children <- children[if (history) order(children$child_id, children$recorded_date) else
    order(children$child_id), , drop = FALSE]

  # referrals
  r <- conv_dates(t$CINdetails, c("referral_date", "closure_date"), "referrals")
  r <- conv_codes(r, c("referral_source", "primary_need", "closure_reason"), "referrals")
  nfa <- tolower(r$referral_nfa)
  bad <- which(!is.na(nfa) & !nfa %in% c("true", "false", "1", "0"))
  if (length(bad)) {
    stop(sprintf("CIN census %s: <ReferralNFA> \"%s\" is not true/false.\nFix: write true, false, 1 or 0.",
                 where_child(r$.file[bad[1]], r$.child[bad[1]], r$.line[bad[1]]), r$referral_nfa[bad[1]]),
         call. = FALSE)
  }
  log_conversion(log, "referrals", "ReferralNFA", "true/false/1/0 -> logical", sum(!is.na(nfa)))
  r$referral_nfa <- nfa %in% c("true", "1")
  r$referral_nfa[is.na(nfa)] <- NA
  r$child_id <- r$.child
  r$la_code <- r$.la
  rkey <- paste(r$child_id, format(r$referral_date), sep = "/")
  log_conversion(log, "referrals", NA, "referral in several returns: latest kept",
                 sum(duplicated(rkey)))
  r <- r[!duplicated(rkey), , drop = FALSE]
  r$referral_id <- paste(r$child_id, format(r$referral_date), sep = "/")
  referrals <- r[order(r$child_id, r$referral_date),
                 c("referral_id", "child_id", "referral_date", "referral_source",
                   "primary_need", "closure_date", "closure_reason",
                   "referral_nfa", "la_code")]
  ref_id <- function(tab) paste(tab$.child, format(parse_dates(tab$referral_date)$date), sep = "/")

  # assessments and factors
  a <- t$Assessments
  a$referral_id <- ref_id(a)
  a <- conv_dates(a, c("assessment_start", "assessment_end"), "assessments")
  a <- conv_codes(a, "factor", "assessment_factors")
  akey <- paste(a$referral_id, format(a$assessment_start))
  log_conversion(log, "assessments", NA, "assessment in several returns: latest kept",
                 sum(duplicated(akey)))
  a <- a[!duplicated(akey), , drop = FALSE]
  a <- a[order(a$referral_id, a$assessment_start), , drop = FALSE]
  base <- paste(a$referral_id, format(a$assessment_start), sep = "/")
  seqn <- stats::ave(seq_along(base), base, FUN = seq_along)
  a$assessment_id <- ifelse(seqn > 1L, paste0(base, "#", seqn), base)
  assessments <- a[c("assessment_id", "referral_id", "assessment_start", "assessment_end")]
  fac <- as.character(a$factor)
  fac[is.na(fac)] <- ""
  fl <- strsplit(fac, ",", fixed = TRUE)
  assessment_factors <- data.frame(assessment_id = rep(a$assessment_id, lengths(fl)),
                                   factor = unlist(fl), stringsAsFactors = FALSE)

  # plans
  plan <- function(p, table, extra = character()) {
    p$referral_id <- ref_id(p)
    p <- conv_dates(p, c("start", "end"), table)
    p <- conv_codes(p, extra, table)
    key <- paste(p$referral_id, format(p$start))
    log_conversion(log, table, NA, "plan in several returns: latest kept", sum(duplicated(key)))
    p <- p[!duplicated(key), , drop = FALSE]
    p[order(p$referral_id, p$start), c("referral_id", "start", "end", extra), drop = FALSE]
  }
  cin_plans <- plan(t$CINPlanDates, "cin_plans")
  cp <- t$ChildProtectionPlans
  bad <- which(!is.na(cp$n_previous_cpp) & !grepl("^[0-9]+$", cp$n_previous_cpp))
  if (length(bad)) {
    stop(sprintf("CIN census %s: <NumberOfPreviousCPP> \"%s\" is not a whole number.\nFix: write a count.",
                 where_child(cp$.file[bad[1]], cp$.child[bad[1]], cp$.line[bad[1]]),
                 cp$n_previous_cpp[bad[1]]), call. = FALSE)
  }
  cp_plans <- plan(cp, "cp_plans", c("initial_category", "latest_category", "n_previous_cpp"))
  log_conversion(log, "cp_plans", "NumberOfPreviousCPP", "text -> integer", sum(!is.na(cp_plans$n_previous_cpp)))
  cp_plans$n_previous_cpp <- as.integer(cp_plans$n_previous_cpp)
  tabs <- list(children = children, referrals = referrals, assessments = assessments,
               assessment_factors = assessment_factors, cin_plans = cin_plans,
               cp_plans = cp_plans)
  lapply(tabs, function(x) { rownames(x) <- NULL; x })
}

# The readers' `la_code` (NULL or one code) and `warn` (TRUE/FALSE).
check_return_args <- function(la_code, warn) {
  if (!is.null(la_code) && (!(is.character(la_code) || is.numeric(la_code)) || length(la_code) != 1L ||
                            is.na(la_code) || !nzchar(la_code))) {
    stop_arg("la_code", sprintf("must be NULL or one authority code, not %s", describe_value(la_code)),
             "give the 3-digit code of the authority whose returns these are, e.g. la_code = \"301\".")
  }
  if (!isTRUE(warn) && !isFALSE(warn)) {
    stop_arg("warn", sprintf("must be TRUE or FALSE, not %s", describe_value(warn)),
             "use warn = FALSE to keep the problems in attr(x, \"problems\") only.")
  }
}

# Files under `path` with one of the extensions, sorted.
return_files <- function(path, ext, arg) {
  if (!is.character(path) || !length(path) || anyNA(path) || !all(nzchar(path))) {
    stop_arg(arg, sprintf("must be file or directory paths, not %s", describe_value(path)),
             "give the path of the returns' files or of the directory holding them.")
  }
  miss <- path[!file.exists(path)]
  if (length(miss)) stop_arg(arg, sprintf("names %s, which does not exist", miss[1]),
                             "give existing files or directories.")
  pat <- paste0("\\.(", paste(ext, collapse = "|"), ")$")
  files <- unlist(lapply(path, function(p) {
    if (dir.exists(p)) list.files(p, pattern = pat, recursive = TRUE,
                                  full.names = TRUE, ignore.case = TRUE) else p
  }))
  if (!length(files)) {
    stop_arg(arg, sprintf("holds no %s files", paste0(".", ext, collapse = " or ")),
             "give the directory the returns were saved in.")
  }
  sort(unique(files))
}

# A 3-digit authority code in a file's path (e.g. "cin/201_2023.xml",
# "ssda903/201/2023/episodes.csv"): the one nearest the file name.
return_la_from_path <- function(f) {
  m <- regmatches(f, gregexpr("(^|[/_\\-])[0-9]{3}(?=[/_.\\-])", f, perl = TRUE))[[1]]
  if (!length(m)) return(NULL)
  sub("^[/_\\-]", "", m[length(m)])
}
# A 4-digit collection year in a file's path.
return_year_from_path <- function(f) {
  m <- regmatches(basename(dirname(f)), regexpr("(19|20)[0-9]{2}", basename(dirname(f))))
  if (!length(m)) m <- regmatches(basename(f), regexpr("(19|20)[0-9]{2}", basename(f)))
  if (!length(m)) NA_integer_ else as.integer(m)
}

# ---------------------------------------------------------------------------
# read_ssda903()

#' Read SSDA903 returns
#'
#' Reads the looked-after children return (SSDA903) as local authorities
#' keep it: one CSV per table and year with the published column names:
#' the header (`CHILD`, `SEX`, `DOB`, `ETHNIC`, `UPN`, `MOTHER`, `MC_DOB`),
#' the episodes (`CHILD`, `DECOM`, `RNE`, `LS`, `CIN`, `PLACE`,
#' `PLACE_PROVIDER`, `DEC`, `REC`, `REASON_PLACE_CHANGE`, `HOME_POST`,
#' `PL_POST`, `URN`) and optionally the UASC table (`CHILD`, `SEX`, `DOB`,
#' `DUC`). Files are recognised by their columns, so their names do not
#' matter; other 903 tables are read past. Several years (and authorities)
#' are read at once.
#'
#' Dates are `dd/mm/YYYY` (ISO is accepted too); every conversion is
#' counted. An episode open at the end of a collection year (`DEC` and `REC`
#' blank) is in the next year's return again: episodes are joined across
#' returns by `CHILD` and `DECOM`, keeping the latest return's row (which
#' holds the end), and the number joined is counted, as is the number whose
#' other values differ between returns. A child in several years' headers is
#' kept once, from the latest. An exact duplicate row within one file is
#' dropped and counted; two different rows for one episode in one file are an
#' error naming the file and the child.
#'
#' The collection year is taken from a year (`2023`) in the file's folder or
#' name (the latest return wins); the authority from a 3-digit code in the
#' path or `la_code`.
#'
#' @param dir Directories (searched recursively) or files.
#' @param la_code The authority's 3-digit code when the paths hold none.
#' @param warn `TRUE` to raise soft problems as warnings.
#' @return A list of class `sfp_returns` with `children` (one row per child:
#'   `child_id`, `la_code`, `dob`, `gender_raw`, `ethnicity`, and `uasc`
#'   when a UASC table was given) and `cla_episodes`, with attributes
#'   `conversions` and `problems`.
#' @seealso [read_cin_census()], [read_returns()].
#' @examples
#' x <- simulate_sfp("family_valued", children_per_la_year = 30, seed = 1)
#' dir <- tempfile()
#' write_returns(x, dir)
#' lac <- read_ssda903(file.path(dir, "ssda903"))
#' head(lac$cla_episodes)
#' @export
read_ssda903 <- function(dir, la_code = NULL, warn = TRUE) {
  check_return_args(la_code, warn)
  files <- return_files(dir, "csv", "dir")
  log <- new_import_log()
  parts <- list(header = list(), episodes = list(), uasc = list())
  for (f in files) {
    d <- utils::read.csv(f, colClasses = "character", na.strings = "",
                         check.names = FALSE, strip.white = TRUE)
    names(d) <- toupper(trimws(names(d)))
    kind <- if (all(names(.s903_episodes) %in% names(d))) "episodes" else
      if (all(names(.s903_header) %in% names(d))) "header" else
        if (all(c("CHILD", "DUC") %in% names(d))) "uasc" else NA
    if (is.na(kind)) {
      log_problem(log, "cla_episodes", NA, 1L, sprintf(
        "SSDA903 file %s is not a header, episodes or UASC table and was read past.",
        basename(f)))
      next
    }
    d[] <- lapply(d, function(v) { v[!is.na(v) & !nzchar(v)] <- NA; v })
    la <- la_code %||% return_la_from_path(f)
    d$.la <- rep(if (is.null(la)) NA_character_ else la, nrow(d))
    d$.year <- rep(return_year_from_path(f), nrow(d))
    d$.file <- rep(f, nrow(d))
    d$.line <- seq_len(nrow(d)) + 1L
    parts[[kind]][[length(parts[[kind]]) + 1L]] <- d
  }
  if (!length(parts$episodes) && !length(parts$header)) {
    stop_arg("dir", "holds no SSDA903 header or episodes CSV (by their columns CHILD, SEX, DOB, ETHNIC / CHILD, DECOM, RNE, ...)",
             "give the folder of the 903 returns.")
  }
  stack <- function(ds) {
    if (!length(ds)) return(NULL)
    cols <- unique(unlist(lapply(ds, names)))
    d <- do.call(rbind, lapply(ds, function(x) {
      x[setdiff(cols, names(x))] <- list(rep(NA_character_, nrow(x)))
      x[cols]
    }))
    d[order(-d$.year, -match(d$.file, files), na.last = TRUE), , drop = FALSE]
  }
  hd <- stack(parts$header)
  ep <- stack(parts$episodes)
  ua <- stack(parts$uasc)
  out <- list()
  if (!is.null(hd)) out$children <- s903_children(hd, ua, log)
  if (!is.null(ep)) out$cla_episodes <- s903_episodes(ep, log)
  finish_log(out, log, "sfp_ssda903", warn)
}

s903_dates <- function(v, d, column, table, log) {
  p <- parse_dates(v)
  bad <- which(!is.na(v) & is.na(p$date))
  if (length(bad)) {
    i <- bad[1]
    stop(sprintf("SSDA903 %s: `%s` \"%s\" (row %d) is not a date.\nFix: write dates as dd/mm/YYYY.",
                 where_child(d$.file[i], d$CHILD[i]), column, v[i], d$.line[i]),
         call. = FALSE)
  }
  dmy <- !is.na(v) & grepl("/", v, fixed = TRUE)
  log_conversion(log, table, column, "dd/mm/YYYY text -> Date", sum(dmy))
  log_conversion(log, table, column, "ISO text -> Date", sum(!is.na(v) & !dmy))
  p$date
}

# Within one file, exact duplicates are dropped (counted); a key with two
# different rows is an error.
s903_within_file <- function(d, key, cols, what, table, log) {
  k <- do.call(paste, c(c(list(d$.file), lapply(key, function(x) d[[x]])), sep = "\r"))
  full <- do.call(paste, c(c(list(k), lapply(cols, function(x) d[[x]])), sep = "\r"))
  exact <- duplicated(full)
  log_conversion(log, table, NA, "exact duplicate row in one file dropped", sum(exact))
  d <- d[!exact, , drop = FALSE]
  k <- k[!exact]
  dup <- which(duplicated(k))
  if (length(dup)) {
    i <- dup[1]
    stop(sprintf("SSDA903 %s: two different rows for one %s (rows %d and %d).\nFix: keep one row per %s.",
                 where_child(d$.file[i], d$CHILD[i]), what,
                 d$.line[match(k[i], k)], d$.line[i], what), call. = FALSE)
  }
  d
}

s903_children <- function(hd, ua, log) {
  hd <- s903_within_file(hd, "CHILD", names(.s903_header), "child", "children", log)
  hd$dob <- s903_dates(hd$DOB, hd, "DOB", "children", log)
  differs <- conflicting(hd, "CHILD", setdiff(names(.s903_header), "CHILD"))
  log_conversion(log, "children", NA, "child in several returns: latest kept",
                 sum(duplicated(hd$CHILD)))
  log_problem(log, "children", NA, sum(differs), sprintf(
    "%d child%s in the SSDA903 header differ%s between returns; the latest return is kept.",
    sum(differs), if (sum(differs) > 1) "ren" else "", if (sum(differs) > 1) "" else "s"))
  hd <- hd[!duplicated(hd$CHILD), , drop = FALSE]
  hd$SEX <- check_return_codes(hd$SEX, "gender_raw", hd$.file, hd$CHILD, "SEX", "children", log)
  hd$ETHNIC <- check_return_codes(hd$ETHNIC, "ethnicity", hd$.file, hd$CHILD, "ETHNIC", "children", log)
  out <- data.frame(child_id = hd$CHILD, la_code = hd$.la, dob = hd$dob,
                    gender_raw = hd$SEX, ethnicity = hd$ETHNIC,
                    stringsAsFactors = FALSE)
  log_conversion(log, "children", "gender_raw", "SEX -> gender_raw", sum(!is.na(hd$SEX)))
  if (!is.null(ua)) {
    out$uasc <- out$child_id %in% ua$CHILD
    log_conversion(log, "children", "uasc", "in the UASC table -> uasc", sum(out$uasc))
  }
  out <- out[order(out$child_id), , drop = FALSE]
  rownames(out) <- NULL
  out
}

s903_episodes <- function(ep, log) {
  ep <- s903_within_file(ep, c("CHILD", "DECOM"), names(.s903_episodes), "episode",
                         "cla_episodes", log)
  ep$decom <- s903_dates(ep$DECOM, ep, "DECOM", "cla_episodes", log)
  ep$dec <- s903_dates(ep$DEC, ep, "DEC", "cla_episodes", log)
  key <- paste(ep$CHILD, ep$decom)
  # Joined across returns: the latest row holds the end; count the episodes
  # whose other values differ between returns.
  rest <- setdiff(names(.s903_episodes), c("CHILD", "DECOM", "DEC", "REC"))
  ep$.key <- key
  differs <- conflicting(ep, ".key", rest)
  log_conversion(log, "cla_episodes", NA,
                 "episode in several returns: joined, latest kept", sum(duplicated(key)))
  log_problem(log, "cla_episodes", NA, sum(differs), sprintf(
    "%d episode%s differ%s between returns in RNE, LS, CIN, PLACE or PLACE_PROVIDER; the latest return is kept.",
    sum(differs), if (sum(differs) > 1) "s" else "", if (sum(differs) > 1) "" else "s"))
  ep <- ep[!duplicated(key), , drop = FALSE]
  lists <- c(RNE = "rne", LS = "ls", CIN = "cin_903", PLACE = "place",
             PLACE_PROVIDER = "place_provider", REC = "rec")
  for (col in names(lists)) {
    ep[[col]] <- check_return_codes(ep[[col]], lists[[col]], ep$.file, ep$CHILD, col,
                                    "cla_episodes", log)
  }
  out <- data.frame(child_id = ep$CHILD, decom = ep$decom, dec = ep$dec,
                    rne = ep$RNE, ls = ep$LS, cin = ep$CIN, place = ep$PLACE,
                    place_provider = ep$PLACE_PROVIDER, rec = ep$REC,
                    stringsAsFactors = FALSE)
  out <- out[order(out$child_id, out$decom), , drop = FALSE]
  rownames(out) <- NULL
  out
}

# ---------------------------------------------------------------------------
# Writing the returns (elements in the order of the DfE's CIN census schema)

#' Write records in the layouts of the statutory returns
#'
#' Writes an [sfp_data()] object (typically from [simulate_sfp()]) as a local
#' authority would hold it: the CIN census as one XML return per authority
#' and collection year (`cin/<la_code>_<year>.xml`, or the flat event CSV
#' form with `cin = "csv"`), and the SSDA903 as a header, an episodes and a
#' UASC CSV per authority and year (`ssda903/<la_code>/<year>/header.csv`,
#' `episodes.csv`, `uasc.csv`). A collection year runs from 1 April to the
#' reference date 31 March. Each return holds what was known at its
#' reference date: referrals open at any time in the year with the
#' assessments, plans and episodes started by then; ends after the reference
#' date are left blank (a birth date too, for a child not yet born), and the
#' record appears again, completed, in a later return. `CINPlanDates` are
#' written in every year's return, although the census has collected them
#' only since 2021-22 (real earlier returns hold no CIN plan dates). Gender
#' is written as `GenderCurrent` (codes 0/1/2/9) or `Sex` (M/F/U) as stored;
#' 903 dates as `dd/mm/YYYY`. The elements follow the order of the DfE's
#' schema.
#'
#' The tables no return carries are written in the package's own layout as
#' CSV files under `tables/`: `children.csv` (`child_id`, `uasc`,
#' `fsm_ever6`, `fsm_ever`: the school-census and UASC flags),
#' `absence.csv`, `la_covariates.csv` and `rollout.csv`. [read_returns()]
#' reads the whole directory back.
#'
#' @param x An `sfp_data` object.
#' @param path Directory to write into (created if needed).
#' @param cin `"xml"` (default) or `"csv"` for the CIN census form.
#' @return `path`, invisibly.
#' @seealso [read_returns()], [read_cin_census()], [read_ssda903()].
#' @examples
#' x <- simulate_sfp("family_valued", children_per_la_year = 30, seed = 1)
#' dir <- tempfile()
#' write_returns(x, dir)
#' head(list.files(dir, recursive = TRUE))
#' @export
write_returns <- function(x, path, cin = c("xml", "csv")) {
  if (!inherits(x, "sfp_data")) stop_arg("x", "must be an sfp_data object", "build it with sfp_data() or simulate_sfp().")
  if (!is.character(path) || length(path) != 1L || is.na(path) || !nzchar(path)) {
    stop_arg("path", sprintf("must be one directory path, not %s", describe_value(path)),
             "give e.g. path = tempfile().")
  }
  cin <- match_choice(cin[1], c("xml", "csv"), "cin")
  if (is.null(x$children)) stop_arg("x", "has no `children` table", "returns are written per child.")
  dir.create(path, recursive = TRUE, showWarnings = FALSE)
  if (!is.null(x$referrals)) write_cin_census(x, file.path(path, "cin"), cin)
  if (!is.null(x$cla_episodes)) write_ssda903(x, file.path(path, "ssda903"))
  tdir <- file.path(path, "tables")
  dir.create(tdir, showWarnings = FALSE)
  extra <- intersect(c("child_id", "uasc", "fsm_ever6", "fsm_ever"), names(x$children))
  write_plain_csv(x$children[extra], file.path(tdir, "children.csv"))
  for (nm in c("absence", "la_covariates", "rollout")) {
    if (!is.null(x[[nm]])) write_plain_csv(x[[nm]], file.path(tdir, paste0(nm, ".csv")))
  }
  invisible(path)
}

write_plain_csv <- function(d, file) {
  d[] <- lapply(d, function(v) if (inherits(v, "Date")) format(v) else v)
  utils::write.csv(d, file, row.names = FALSE, na = "")
}

# Collection years (ending 31 March) covering the dates in x.
return_years <- function(x) {
  d <- unlist(lapply(x[c("referrals", "assessments", "cin_plans", "cp_plans",
                         "cla_episodes")], function(t) {
    if (is.null(t)) return(NULL)
    unlist(lapply(t[vapply(t, inherits, TRUE, "Date")], unclass))
  }))
  d <- .Date(range(d, na.rm = TRUE))
  fy <- function(v) as.integer(format(v, "%Y")) + (format(v, "%m") >= "04")
  seq(fy(d[1]), fy(d[2]))
}

fmt_iso <- function(d) ifelse(is.na(d), NA_character_, format(d, "%Y-%m-%d"))
fmt_dmy <- function(d) ifelse(is.na(d), NA_character_, format(d, "%d/%m/%Y"))

# Leaf element lines for the non-missing values: "<El>value</El>".
xml_leaf <- function(el, v, indent) {
  ifelse(is.na(v), "", paste0(indent, "<", el, ">", xml_escape(v), "</", el, ">\n"))
}
# Join the strings of each group into one, in order of `groups` levels.
join_by <- function(s, g, n) {
  out <- character(n)
  if (length(s)) {
    j <- tapply(s, factor(g, levels = seq_len(n)), paste, collapse = "")
    j[is.na(j)] <- ""
    out <- unname(as.character(j))
  }
  out
}

# What a return with reference date `ref` knows of an event table: rows that
# started by then, ends after it blanked.
as_known <- function(t, start, end, ref, blank = character()) {
  t <- t[t[[start]] <= ref, , drop = FALSE]
  late <- !is.na(t[[end]]) & t[[end]] > ref
  t[[end]][late] <- NA
  for (b in blank) t[[b]][late] <- NA
  t
}

write_cin_census <- function(x, dir, form) {
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  ch <- x$children
  r <- x$referrals
  r$la_code <- if ("la_code" %in% names(r)) r$la_code else ch$la_code[match(r$child_id, ch$child_id)]
  # Last date of anything in a referral: it is in every return up to then.
  last <- r$closure_date
  bump <- function(last, id, d) {
    m <- tapply(unclass(d), id, max, na.rm = TRUE)
    v <- m[r$referral_id]
    pmax(unclass(last), ifelse(is.finite(v), v, -Inf), na.rm = TRUE)
  }
  a <- x$assessments %||% data.frame(assessment_id = character(), referral_id = character(), assessment_start = .Date(numeric()), assessment_end = .Date(numeric()))
  last <- bump(last, a$referral_id, pmax(a$assessment_start, a$assessment_end, na.rm = TRUE))
  for (p in list(x$cin_plans, x$cp_plans)) {
    if (!is.null(p)) last <- bump(last, p$referral_id, pmax(p$start, p$end, na.rm = TRUE))
  }
  open_end <- is.na(r$closure_date)
  years <- return_years(x)
  # A birth date after a return's reference date is left out of it, unless
  # no later return holds the child (the last one carries it).
  fy <- function(v) as.integer(format(.Date(v), "%Y")) + (format(.Date(v), "%m") >= "04")
  ry <- ifelse(open_end, max(years), pmin(fy(pmax(last, unclass(r$referral_date), na.rm = TRUE)), max(years)))
  ch$.last_year <- as.integer(tapply(ry, r$child_id, max)[ch$child_id])
  for (la in sort(unique(r$la_code))) {
    for (y in years) {
      ref <- as.Date(sprintf("%d-03-31", y))
      from <- as.Date(sprintf("%d-04-01", y - 1L))
      keep <- r$la_code == la & r$referral_date <= ref &
        (open_end | .Date(last) >= from)
      if (!any(keep)) next
      rr <- as_known(r[keep, , drop = FALSE], "referral_date", "closure_date", ref,
                     "closure_reason")
      file <- file.path(dir, sprintf("%s_%d.%s", la, y, form))
      if (form == "xml") cin_write_xml(x, rr, a, ch, la, ref, file) else
        cin_write_csv(x, rr, a, ch, la, ref, y, file)
    }
  }
}

# The events of the referrals `rr` known at `ref`, as flat tables.
cin_known <- function(x, rr, a, ch, ref) {
  a <- as_known(a[a$referral_id %in% rr$referral_id, , drop = FALSE],
                "assessment_start", "assessment_end", ref)
  f <- x$assessment_factors
  f <- f[f$assessment_id %in% a$assessment_id, , drop = FALSE]
  pl <- x$cin_plans
  pl <- if (is.null(pl)) NULL else as_known(pl[pl$referral_id %in% rr$referral_id, , drop = FALSE], "start", "end", ref)
  cp <- x$cp_plans
  cp <- if (is.null(cp)) NULL else as_known(cp[cp$referral_id %in% rr$referral_id, , drop = FALSE], "start", "end", ref)
  kids <- ch[ch$child_id %in% rr$child_id, , drop = FALSE]
  kids <- kids[order(kids$child_id), , drop = FALSE]
  later <- !is.na(kids$.last_year) & kids$.last_year > as.integer(format(ref, "%Y"))
  kids$dob[!is.na(kids$dob) & kids$dob > ref & later] <- NA
  list(a = a, f = f, pl = pl, cp = cp, kids = kids)
}

gender_element <- function(g) ifelse(g %in% c("M", "F", "U"), "Sex", "GenderCurrent")
disability_string <- function(d) {
  if (is.null(d)) return(NULL)
  if (is.list(d)) vapply(d, function(v) paste(v, collapse = ","), "") else d
}

cin_write_xml <- function(x, rr, a, ch, la, ref, file) {
  k <- cin_known(x, rr, a, ch, ref)
  kids <- k$kids
  rr <- rr[order(rr$child_id, rr$referral_date), , drop = FALSE]
  # Assessments, with their factors.
  a <- k$a[order(k$a$referral_id, k$a$assessment_start), , drop = FALSE]
  ai <- match(k$f$assessment_id, a$assessment_id)
  fac <- join_by(xml_leaf("AssessmentFactors", k$f$factor, "            "), ai, nrow(a))
  ablock <- paste0("        <Assessments>\n",
                   xml_leaf("AssessmentActualStartDate", fmt_iso(a$assessment_start), "          "),
                   xml_leaf("AssessmentAuthorisationDate", fmt_iso(a$assessment_end), "          "),
                   ifelse(nzchar(fac), paste0("          <FactorsIdentifiedAtAssessment>\n", fac,
                                              "          </FactorsIdentifiedAtAssessment>\n"), ""),
                   "        </Assessments>\n")
  blocks <- join_by(ablock, match(a$referral_id, rr$referral_id), nrow(rr))
  if (!is.null(k$pl) && nrow(k$pl)) {
    pl <- k$pl[order(k$pl$referral_id, k$pl$start), , drop = FALSE]
    pb <- paste0("        <CINPlanDates>\n",
                 xml_leaf("CINPlanStartDate", fmt_iso(pl$start), "          "),
                 xml_leaf("CINPlanEndDate", fmt_iso(pl$end), "          "),
                 "        </CINPlanDates>\n")
    blocks <- paste0(blocks, join_by(pb, match(pl$referral_id, rr$referral_id), nrow(rr)))
  }
  if (!is.null(k$cp) && nrow(k$cp)) {
    cp <- k$cp[order(k$cp$referral_id, k$cp$start), , drop = FALSE]
    opt <- function(nm) if (nm %in% names(cp)) cp[[nm]] else rep(NA, nrow(cp))
    cb <- paste0("        <ChildProtectionPlans>\n",
                 xml_leaf("CPPstartDate", fmt_iso(cp$start), "          "),
                 xml_leaf("CPPendDate", fmt_iso(cp$end), "          "),
                 xml_leaf("InitialCategoryOfAbuse", opt("initial_category"), "          "),
                 xml_leaf("LatestCategoryOfAbuse", opt("latest_category"), "          "),
                 xml_leaf("NumberOfPreviousCPP", as.character(opt("n_previous_cpp")), "          "),
                 "        </ChildProtectionPlans>\n")
    cpp_blocks <- join_by(cb, match(cp$referral_id, rr$referral_id), nrow(rr))
  } else cpp_blocks <- character(nrow(rr))
  ropt <- function(nm) if (nm %in% names(rr)) rr[[nm]] else rep(NA, nrow(rr))
  nfa <- ropt("referral_nfa")
  cin <- paste0("      <CINdetails>\n",
                xml_leaf("CINreferralDate", fmt_iso(rr$referral_date), "        "),
                xml_leaf("ReferralSource", ropt("referral_source"), "        "),
                xml_leaf("PrimaryNeedCode", ropt("primary_need"), "        "),
                xml_leaf("CINclosureDate", fmt_iso(rr$closure_date), "        "),
                xml_leaf("ReasonForClosure", ropt("closure_reason"), "        "),
                blocks,
                xml_leaf("ReferralNFA", ifelse(is.na(nfa), NA, ifelse(nfa, "true", "false")), "        "),
                cpp_blocks, "      </CINdetails>\n")
  cins <- join_by(cin, match(rr$child_id, kids$child_id), nrow(kids))
  dis <- disability_string(kids$disability)
  dis_x <- if (is.null(dis)) "" else vapply(strsplit(ifelse(is.na(dis), "", dis), ",", fixed = TRUE),
                                            function(v) if (!length(v)) "" else paste0(
                                              "        <Disabilities>\n",
                                              paste0("          <Disability>", xml_escape(v), "</Disability>\n", collapse = ""),
                                              "        </Disabilities>\n"), "")
  kopt <- function(nm) if (nm %in% names(kids)) kids[[nm]] else rep(NA, nrow(kids))
  g <- kids$gender_raw
  child <- paste0("    <Child>\n      <ChildIdentifiers>\n",
                  xml_leaf("LAchildID", kids$child_id, "        "),
                  xml_leaf("PersonBirthDate", fmt_iso(kids$dob), "        "),
                  xml_leaf("ExpectedPersonBirthDate", fmt_iso(kopt("expected_dob")), "        "),
                  ifelse(is.na(g), "", paste0("        <", gender_element(g), ">", g, "</", gender_element(g), ">\n")),
                  "      </ChildIdentifiers>\n      <ChildCharacteristics>\n",
                  xml_leaf("Ethnicity", kids$ethnicity, "        "), dis_x,
                  "      </ChildCharacteristics>\n", cins, "    </Child>\n")
  head <- sprintf(paste0("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Message>\n  <Header>\n",
                         "    <CollectionDetails>\n      <Collection>CIN</Collection>\n",
                         "      <Year>%d</Year>\n      <ReferenceDate>%s</ReferenceDate>\n",
                         "    </CollectionDetails>\n    <Source>\n      <SourceLevel>L</SourceLevel>\n",
                         "      <LEA>%s</LEA>\n      <SoftwareCode>sfpceval</SoftwareCode>\n",
                         "    </Source>\n  </Header>\n  <Children>\n"),
                  as.integer(format(ref, "%Y")), format(ref), la)
  con <- file(file, "wb")
  on.exit(close(con))
  writeLines(enc2utf8(c(head, paste(child, collapse = ""), "  </Children>\n</Message>")),
             con, sep = "", useBytes = TRUE)
}

cin_write_csv <- function(x, rr, a, ch, la, ref, year, file) {
  k <- cin_known(x, rr, a, ch, ref)
  kids <- k$kids
  kids$Disabilities <- disability_string(kids$disability) %||% rep(NA_character_, nrow(kids))
  ropt <- function(t, nm) if (!is.null(t) && nm %in% names(t)) t[[nm]] else rep(NA, NROW(t))
  child_cols <- function(id) {
    i <- match(id, kids$child_id)
    g <- kids$gender_raw[i]
    data.frame(PersonBirthDate = fmt_iso(kids$dob[i]),
               ExpectedPersonBirthDate = fmt_iso(ropt(kids, "expected_dob")[i]),
               GenderCurrent = ifelse(gender_element(g) == "GenderCurrent", g, NA),
               Sex = ifelse(gender_element(g) == "Sex", g, NA),
               Ethnicity = kids$ethnicity[i], Disabilities = kids$Disabilities[i],
               stringsAsFactors = FALSE)
  }
  ref_cols <- function(rid) {
    i <- match(rid, rr$referral_id)
    nfa <- ropt(rr, "referral_nfa")[i]
    data.frame(LAchildID = rr$child_id[i], CINreferralDate = fmt_iso(rr$referral_date[i]),
               ReferralSource = ropt(rr, "referral_source")[i],
               PrimaryNeedCode = ropt(rr, "primary_need")[i],
               CINclosureDate = fmt_iso(rr$closure_date[i]),
               ReasonForClosure = ropt(rr, "closure_reason")[i],
               ReferralNFA = ifelse(is.na(nfa), NA, ifelse(nfa, "true", "false")),
               stringsAsFactors = FALSE)
  }
  ev <- function(rid, type, date, extra = NULL) {
    if (!length(rid)) return(NULL)
    d <- cbind(ref_cols(rid), Date = fmt_iso(date), Type = type)
    if (!is.null(extra)) d <- cbind(d, extra)
    cbind(d, child_cols(d$LAchildID))
  }
  fac <- tapply(k$f$factor, k$f$assessment_id, paste, collapse = ",")
  ax <- data.frame(AssessmentActualStartDate = fmt_iso(k$a$assessment_start),
                   AssessmentAuthorisationDate = fmt_iso(k$a$assessment_end),
                   Factors = unname(fac[k$a$assessment_id]), stringsAsFactors = FALSE)
  px <- if (NROW(k$pl)) data.frame(CINPlanStartDate = fmt_iso(k$pl$start), CINPlanEndDate = fmt_iso(k$pl$end))
  cx <- if (NROW(k$cp)) data.frame(CPPstartDate = fmt_iso(k$cp$start), CPPendDate = fmt_iso(k$cp$end),
                                   InitialCategoryOfAbuse = ropt(k$cp, "initial_category"),
                                   LatestCategoryOfAbuse = ropt(k$cp, "latest_category"),
                                   NumberOfPreviousCPP = ropt(k$cp, "n_previous_cpp"))
  rows <- list(ev(rr$referral_id, "CINreferralDate", rr$referral_date),
               ev(rr$referral_id[!is.na(rr$closure_date)], "CINclosureDate", rr$closure_date[!is.na(rr$closure_date)]),
               ev(k$a$referral_id, "AssessmentActualStartDate", k$a$assessment_start, ax),
               if (NROW(k$pl)) ev(k$pl$referral_id, "CINPlanStartDate", k$pl$start, px),
               if (NROW(k$cp)) ev(k$cp$referral_id, "CPPstartDate", k$cp$start, cx))
  cols <- unique(unlist(lapply(rows, names)))
  out <- do.call(rbind, lapply(Filter(Negate(is.null), rows), function(d) {
    d[setdiff(cols, names(d))] <- list(rep(NA, nrow(d)))
    d[cols]
  }))
  out$LEA <- la
  out$YEAR <- year
  first <- c("LAchildID", "Date", "Type")
  out <- out[order(out$LAchildID, out$Date), c(first, setdiff(names(out), first))]
  utils::write.csv(out, file, row.names = FALSE, na = "")
}

write_ssda903 <- function(x, dir) {
  ch <- x$children
  ep <- x$cla_episodes
  ep$la_code <- ch$la_code[match(ep$child_id, ch$child_id)]
  years <- return_years(x)
  for (la in sort(unique(ep$la_code))) {
    for (y in years) {
      ref <- as.Date(sprintf("%d-03-31", y))
      from <- as.Date(sprintf("%d-04-01", y - 1L))
      e <- ep[ep$la_code == la & ep$decom <= ref & (is.na(ep$dec) | ep$dec >= from), , drop = FALSE]
      if (!nrow(e)) next
      e <- as_known(e, "decom", "dec", ref, "rec")
      e <- e[order(e$child_id, e$decom), , drop = FALSE]
      d <- file.path(dir, la, y)
      dir.create(d, recursive = TRUE, showWarnings = FALSE)
      blank <- rep(NA_character_, nrow(e))
      utils::write.csv(data.frame(CHILD = e$child_id, DECOM = fmt_dmy(e$decom), RNE = e$rne,
                                  LS = e$ls, CIN = e$cin, PLACE = e$place,
                                  PLACE_PROVIDER = e$place_provider, DEC = fmt_dmy(e$dec),
                                  REC = e$rec, REASON_PLACE_CHANGE = blank, HOME_POST = blank,
                                  PL_POST = blank, URN = blank),
                       file.path(d, "episodes.csv"), row.names = FALSE, na = "")
      k <- ch[ch$child_id %in% e$child_id, , drop = FALSE]
      k <- k[order(k$child_id), , drop = FALSE]
      blank <- rep(NA_character_, nrow(k))
      utils::write.csv(data.frame(CHILD = k$child_id, SEX = k$gender_raw, DOB = fmt_dmy(k$dob),
                                  ETHNIC = k$ethnicity, UPN = blank, MOTHER = blank,
                                  MC_DOB = blank),
                       file.path(d, "header.csv"), row.names = FALSE, na = "")
      if ("uasc" %in% names(k)) {
        u <- k[k$uasc %in% TRUE, , drop = FALSE]
        duc <- as.Date(paste0(as.integer(format(u$dob, "%Y")) + 18L, format(u$dob, "-%m-%d")))
        utils::write.csv(data.frame(CHILD = u$child_id, SEX = u$gender_raw, DOB = fmt_dmy(u$dob),
                                    DUC = fmt_dmy(duc)),
                         file.path(d, "uasc.csv"), row.names = FALSE, na = "")
      }
    }
  }
}

# ---------------------------------------------------------------------------
# read_returns()

#' Read a directory of returns into sfp_data
#'
#' Reads a directory laid out as [write_returns()] writes it: the CIN census
#' under `cin/` ([read_cin_census()]), the SSDA903 under `ssda903/`
#' ([read_ssda903()]) and the package-layout CSVs under `tables/`
#' (`children.csv` with `uasc` and the free-school-meal flags,
#' `absence.csv`, `la_covariates.csv`, `rollout.csv`), and validates them
#' with [sfp_data()]. Children are those of the CIN census, plus children
#' only in the SSDA903 header.
#'
#' @param path The directory.
#' @param ... Passed to [sfp_data()] (e.g. `date_range`, `warn`).
#' @return An [sfp_data()] object; `attr(x, "import")` holds the readers'
#'   conversions and problems.
#' @examples
#' x <- simulate_sfp("family_valued", children_per_la_year = 30, seed = 1)
#' dir <- tempfile()
#' write_returns(x, dir)
#' y <- read_returns(dir)
#' sapply(y, NROW)
#' @export
read_returns <- function(path, ...) {
  if (!is.character(path) || length(path) != 1L || !dir.exists(path)) {
    stop_arg("path", "must be one existing directory", "give the directory write_returns() wrote.")
  }
  cin <- if (dir.exists(file.path(path, "cin"))) read_cin_census(file.path(path, "cin"))
  lac <- if (dir.exists(file.path(path, "ssda903"))) read_ssda903(file.path(path, "ssda903"))
  tab <- function(nm) {
    f <- file.path(path, "tables", paste0(nm, ".csv"))
    if (file.exists(f)) utils::read.csv(f, colClasses = "character", na.strings = "")
  }
  children <- cin$children
  if (!is.null(lac$children)) {
    only <- lac$children[!lac$children$child_id %in% children$child_id, , drop = FALSE]
    if (nrow(only)) {
      only$expected_dob <- .Date(rep(NA_real_, nrow(only)))
      only$disability <- rep(list(NA_character_), nrow(only))
      children <- rbind(children, only[names(children)])
    }
  }
  extra <- tab("children")
  if (!is.null(extra) && !is.null(children)) {
    i <- match(children$child_id, extra$child_id)
    for (nm in setdiff(names(extra), "child_id")) children[[nm]] <- extra[[nm]][i]
  }
  if (!is.null(children)) children <- children[order(children$child_id), , drop = FALSE]
  rownames(children) <- NULL
  x <- sfp_data(children = children, referrals = cin$referrals,
                assessments = cin$assessments,
                assessment_factors = cin$assessment_factors,
                cin_plans = cin$cin_plans, cp_plans = cin$cp_plans,
                cla_episodes = lac$cla_episodes, absence = tab("absence"),
                la_covariates = tab("la_covariates"), rollout = tab("rollout"), ...)
  logs <- Filter(Negate(is.null), list(cin, lac))
  attr(x, "import") <- list(
    conversions = do.call(rbind, lapply(logs, attr, "conversions")),
    problems = do.call(rbind, lapply(logs, attr, "problems")))
  x
}

#' @export
print.sfp_returns <- function(x, ...) {
  cat("Records read from returns:\n")
  for (nm in names(x)) cat(sprintf("  %-18s %s rows\n", nm, format(NROW(x[[nm]]), big.mark = ",")))
  cv <- attr(x, "conversions")
  if (NROW(cv)) cat(sprintf("%d conversions logged (attr(x, \"conversions\"))\n", nrow(cv)))
  pr <- attr(x, "problems")
  if (NROW(pr)) cat(paste0("  * ", pr$problem, collapse = "\n"), "\n", sep = "")
  invisible(x)
}
