# read_cin_census(), read_ssda903(), write_returns(), read_returns().

# A hand-made CIN census return holding every element the protocols use,
# plus elements they do not (Section47, reviews, UPNs), a comment, an XML
# declaration, a self-closing element and an escaped character.
cin_xml <- function(child1 = NULL, child2 = NULL) {
  child1 <- child1 %||% '
    <Child>
      <ChildIdentifiers>
        <LAchildID>A1</LAchildID>
        <UPN>A123456789012</UPN>
        <FormerUPN/>
        <PersonBirthDate>2015-06-01</PersonBirthDate>
        <GenderCurrent>1</GenderCurrent>
      </ChildIdentifiers>
      <ChildCharacteristics>
        <Ethnicity>WBRI</Ethnicity>
        <Disabilities>
          <Disability>HAND</Disability>
          <Disability>HEAR</Disability>
        </Disabilities>
      </ChildCharacteristics>
      <CINdetails>
        <CINreferralDate>2021-05-03</CINreferralDate>
        <ReferralSource>1A</ReferralSource>
        <PrimaryNeedCode>N1</PrimaryNeedCode>
        <CINclosureDate>2022-02-27</CINclosureDate>
        <ReasonForClosure>RC8</ReasonForClosure>
        <DateOfInitialCPC>2021-06-01</DateOfInitialCPC>
        <Assessments>
          <AssessmentActualStartDate>2021-05-04</AssessmentActualStartDate>
          <AssessmentInternalReviewDate>2021-05-20</AssessmentInternalReviewDate>
          <AssessmentAuthorisationDate>2021-06-10</AssessmentAuthorisationDate>
          <FactorsIdentifiedAtAssessment>
            <AssessmentFactors>3B</AssessmentFactors>
            <AssessmentFactors>4B</AssessmentFactors>
          </FactorsIdentifiedAtAssessment>
        </Assessments>
        <CINPlanDates>
          <CINPlanStartDate>2021-06-11</CINPlanStartDate>
          <CINPlanEndDate>2021-09-30</CINPlanEndDate>
        </CINPlanDates>
        <Section47>
          <S47ActualStartDate>2021-05-10</S47ActualStartDate>
          <InitialCPCtarget>2021-05-25</InitialCPCtarget>
          <DateOfInitialCPC>2021-05-24</DateOfInitialCPC>
          <ICPCnotRequired>false</ICPCnotRequired>
        </Section47>
        <ReferralNFA>false</ReferralNFA>
        <ChildProtectionPlans>
          <CPPstartDate>2021-10-01</CPPstartDate>
          <CPPendDate>2022-02-20</CPPendDate>
          <InitialCategoryOfAbuse>NEG</InitialCategoryOfAbuse>
          <LatestCategoryOfAbuse>EMO</LatestCategoryOfAbuse>
          <NumberOfPreviousCPP>1</NumberOfPreviousCPP>
          <Reviews>
            <CPPreviewDate>2021-12-01</CPPreviewDate>
          </Reviews>
        </ChildProtectionPlans>
      </CINdetails>
      <CINdetails>
        <CINreferralDate>2022-03-01</CINreferralDate>
        <ReferralSource>5A</ReferralSource>
        <PrimaryNeedCode>N4</PrimaryNeedCode>
        <ReferralNFA>true</ReferralNFA>
      </CINdetails>
    </Child>'
  child2 <- child2 %||% '
    <Child>
      <ChildIdentifiers>
        <LAchildID>B&amp;2</LAchildID>
        <PersonBirthDate>2022-04-10</PersonBirthDate>
        <ExpectedPersonBirthDate>2022-04-01</ExpectedPersonBirthDate>
        <Sex>F</Sex>
      </ChildIdentifiers>
      <ChildCharacteristics>
        <Ethnicity>bafr</Ethnicity>
      </ChildCharacteristics>
      <CINdetails>
        <CINreferralDate>2022-01-15</CINreferralDate>
        <ReferralSource>3A</ReferralSource>
        <PrimaryNeedCode>N1</PrimaryNeedCode>
        <ReferralNFA>0</ReferralNFA>
        <Assessments>
          <AssessmentActualStartDate>2022-01-16</AssessmentActualStartDate>
        </Assessments>
      </CINdetails>
    </Child>'
  paste0('<?xml version="1.0" encoding="UTF-8"?>
<!-- a hand-made return -->
<Message>
  <Header>
    <CollectionDetails>
      <Collection>CIN</Collection>
      <Year>2022</Year>
      <ReferenceDate>2022-03-31</ReferenceDate>
    </CollectionDetails>
    <Source>
      <SourceLevel>L</SourceLevel>
      <LEA>201</LEA>
    </Source>
  </Header>
  <Children>', child1, child2, '
  </Children>
</Message>
')
}

write_tmp <- function(text, name, dir = tempfile()) {
  dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  f <- file.path(dir, name)
  writeLines(text, f, useBytes = TRUE)
  f
}

test_that("a hand-made CIN census XML is read element by element", {
  f <- write_tmp(cin_xml(), "cin.xml")
  x <- read_cin_census(f)
  expect_s3_class(x, "sfp_returns")
  ch <- x$children
  expect_equal(ch$child_id, c("A1", "B&2"))
  expect_equal(ch$la_code, c("201", "201"))
  expect_equal(ch$dob, as.Date(c("2015-06-01", "2022-04-10")))
  expect_equal(ch$expected_dob, as.Date(c(NA, "2022-04-01")))
  expect_equal(ch$gender_raw, c("1", "F"))
  expect_equal(ch$ethnicity, c("WBRI", "BAFR"))   # letter case corrected
  expect_equal(ch$disability, list(c("HAND", "HEAR"), NA_character_))

  r <- x$referrals
  expect_equal(r$referral_id, c("A1/2021-05-03", "A1/2022-03-01", "B&2/2022-01-15"))
  expect_equal(r$child_id, c("A1", "A1", "B&2"))
  expect_equal(r$referral_date, as.Date(c("2021-05-03", "2022-03-01", "2022-01-15")))
  expect_equal(r$referral_source, c("1A", "5A", "3A"))
  expect_equal(r$primary_need, c("N1", "N4", "N1"))
  expect_equal(r$closure_date, as.Date(c("2022-02-27", NA, NA)))
  expect_equal(r$closure_reason, c("RC8", NA, NA))
  expect_equal(r$referral_nfa, c(FALSE, TRUE, FALSE))
  expect_equal(r$la_code, rep("201", 3))

  a <- x$assessments
  expect_equal(a$assessment_id, c("A1/2021-05-03/2021-05-04", "B&2/2022-01-15/2022-01-16"))
  expect_equal(a$referral_id, c("A1/2021-05-03", "B&2/2022-01-15"))
  expect_equal(a$assessment_start, as.Date(c("2021-05-04", "2022-01-16")))
  expect_equal(a$assessment_end, as.Date(c("2021-06-10", NA)))
  expect_equal(x$assessment_factors,
               data.frame(assessment_id = "A1/2021-05-03/2021-05-04",
                          factor = c("3B", "4B")))
  expect_equal(x$cin_plans,
               data.frame(referral_id = "A1/2021-05-03",
                          start = as.Date("2021-06-11"), end = as.Date("2021-09-30")))
  expect_equal(x$cp_plans,
               data.frame(referral_id = "A1/2021-05-03",
                          start = as.Date("2021-10-01"), end = as.Date("2022-02-20"),
                          initial_category = "NEG", latest_category = "EMO",
                          n_previous_cpp = 1L))
  cv <- attr(x, "conversions")
  expect_equal(cv$n[cv$column %in% "ReferralNFA"], 3L)
  expect_equal(cv$n[cv$conversion == "GenderCurrent -> gender_raw"], 1L)
  expect_equal(cv$n[cv$conversion == "Sex -> gender_raw"], 1L)
  expect_equal(cv$n[cv$column %in% "Ethnicity" & grepl("letter case", cv$conversion)], 1L)
  # The tables pass the schema.
  expect_s3_class(suppressWarnings(do.call(sfp_data, unclass(x)[names(x)])), "sfp_data")
})

test_that("malformed CIN census files name the file, the child and the element", {
  good <- cin_xml()
  # a missing closing tag
  bad <- sub("<PersonBirthDate>2015-06-01</PersonBirthDate>",
             "<PersonBirthDate>2015-06-01", good, fixed = TRUE)
  f <- write_tmp(bad, "la201.xml")
  err <- tryCatch(read_cin_census(f), error = conditionMessage)
  expect_match(err, "file la201.xml", fixed = TRUE)
  expect_match(err, "child A1", fixed = TRUE)
  expect_match(err, "<PersonBirthDate>", fixed = TRUE)
  expect_match(err, "not closed", fixed = TRUE)
  # a file cut short
  f <- write_tmp(sub("</Message>", "", good, fixed = TRUE), "cut.xml")
  expect_error(read_cin_census(f), "cut.xml: element <Message> \\(line 3\\) is not closed by the end")
  cut <- max(gregexpr("</Child>", good, fixed = TRUE)[[1]]) + 3L
  f <- write_tmp(substr(good, 1, cut), "torn.xml")
  expect_error(read_cin_census(f), "file torn.xml, child B&2: a `<` or `>` outside a tag after </CINdetails>",
               fixed = TRUE)
  # a child with two birth dates
  bad <- sub("<PersonBirthDate>2022-04-10</PersonBirthDate>",
             "<PersonBirthDate>2022-04-10</PersonBirthDate><PersonBirthDate>2022-04-11</PersonBirthDate>",
             good, fixed = TRUE)
  f <- write_tmp(bad, "two.xml")
  expect_error(read_cin_census(f),
               "file two.xml, child B&2: <PersonBirthDate> appears more than once", fixed = TRUE)
  # an unknown code: a warning, the value kept for sfp_data() to judge
  bad <- sub("<PrimaryNeedCode>N4</PrimaryNeedCode>",
             "<PrimaryNeedCode>N11</PrimaryNeedCode>", good, fixed = TRUE)
  f <- write_tmp(bad, "code.xml")
  expect_warning(x <- read_cin_census(f),
                 "<PrimaryNeedCode>.*\"N11\" in file code.xml, child A1")
  expect_equal(x$referrals$primary_need[2], "N11")
  expect_equal(attr(x, "problems")$column, "PrimaryNeedCode")
  # an impossible date
  bad <- sub("2021-09-30", "2021-09-31", good, fixed = TRUE)
  f <- write_tmp(bad, "date.xml")
  expect_error(read_cin_census(f),
               "file date.xml, child A1 \\(line [0-9]+\\): <CINPlanEndDate> \"2021-09-31\" is not a date")
  # a child without its identifier, a stray closing tag, another root
  bad <- sub("<LAchildID>A1</LAchildID>", "", good, fixed = TRUE)
  expect_error(read_cin_census(write_tmp(bad, "noid.xml")), "noid.xml.*without <LAchildID> \\(child number 1\\)")
  bad <- sub("</Ethnicity>", "</Ethnicity></Sex>", good, fixed = TRUE)
  expect_error(read_cin_census(write_tmp(bad, "stray.xml")), "stray.xml, child A1.*</Sex>")
  expect_error(read_cin_census(write_tmp("<Return><a>1</a></Return>", "root.xml")),
               "root element is <Return>")
  bad <- sub("<ReferralNFA>true</ReferralNFA>", "<ReferralNFA>maybe</ReferralNFA>", good, fixed = TRUE)
  expect_error(read_cin_census(write_tmp(bad, "nfa.xml")), "nfa.xml, child A1.*<ReferralNFA> \"maybe\"")
})

test_that("the tokenizer handles namespaces, attributes and CRLF line ends", {
  x <- cin_xml()
  x <- gsub("<Message>", "<cin:Message xmlns:cin=\"urn:x\">", x, fixed = TRUE)
  x <- gsub("</Message>", "</cin:Message>", x, fixed = TRUE)
  x <- gsub("<Child>", "<Child id=\"1\">", x, fixed = TRUE)
  x <- gsub("\n", "\r\n", x, fixed = TRUE)
  a <- read_cin_census(write_tmp(x, "ns.xml"))
  b <- read_cin_census(write_tmp(cin_xml(), "plain.xml"))
  expect_equal(unclass(a)[names(a)], unclass(b)[names(b)])
})

test_that("xml2 reads the hand-made file the same way (a cross-check of the tokenizer)", {
  skip_if_not_installed("xml2")
  f <- write_tmp(cin_xml(), "x2.xml")
  doc <- xml2::read_xml(f)
  kids <- xml2::xml_find_all(doc, "//Child")
  ids <- xml2::xml_text(xml2::xml_find_first(kids, ".//LAchildID"))
  refs <- xml2::xml_text(xml2::xml_find_all(doc, "//CINdetails/CINreferralDate"))
  fac <- xml2::xml_text(xml2::xml_find_all(doc, "//AssessmentFactors"))
  x <- read_cin_census(f)
  expect_equal(x$children$child_id, ids)
  expect_equal(sort(format(x$referrals$referral_date)), sort(refs))
  expect_equal(x$assessment_factors$factor, fac)
})

test_that("several returns: a referral open at year end is joined, latest kept", {
  dir <- tempfile()
  y1 <- cin_xml()
  # The next year's return: A1's second referral now closed; B&2 gone.
  y2 <- sub("<ReferenceDate>2022-03-31</ReferenceDate>", "<ReferenceDate>2023-03-31</ReferenceDate>",
            cin_xml(child2 = ""), fixed = TRUE)
  y2 <- sub("<ReferralNFA>true</ReferralNFA>",
            "<CINclosureDate>2022-03-02</CINclosureDate><ReasonForClosure>RC7</ReasonForClosure><ReferralNFA>true</ReferralNFA>",
            y2, fixed = TRUE)
  write_tmp(y1, "201_2022.xml", dir)
  write_tmp(y2, "201_2023.xml", dir)
  x <- read_cin_census(dir)
  expect_equal(nrow(x$referrals), 3L)
  expect_equal(x$referrals$closure_date[2], as.Date("2022-03-02"))
  expect_equal(x$referrals$closure_reason[2], "RC7")
  cv <- attr(x, "conversions")
  expect_equal(cv$n[cv$conversion == "referral in several returns: latest kept"], 2L)
  expect_equal(cv$n[cv$conversion == "files read"], 2L)
  h <- read_cin_census(dir, history = TRUE)
  expect_equal(h$children$child_id, c("A1", "A1", "B&2"))
  expect_equal(h$children$recorded_date, as.Date(c("2022-03-31", "2023-03-31", "2022-03-31")))
  # a child whose details conflict between returns is counted
  y3 <- sub("<Ethnicity>WBRI</Ethnicity>", "<Ethnicity>WIRI</Ethnicity>", y2, fixed = TRUE)
  y3 <- sub("2023-03-31", "2024-03-31", y3, fixed = TRUE)
  write_tmp(y3, "201_2024.xml", dir)
  expect_warning(x <- read_cin_census(dir), "1 child has details that differ")
  expect_equal(x$children$ethnicity[1], "WIRI")
})

# The census has no referral or assessment keys: map the simulated ones to
# the derived <child>/<date> keys, then compare every table as a whole.
expect_round_trip <- function(x, y) {
  rid <- stats::setNames(paste(x$referrals$child_id, x$referrals$referral_date, sep = "/"),
                         x$referrals$referral_id)
  aid <- stats::setNames(paste(rid[x$assessments$referral_id], x$assessments$assessment_start, sep = "/"),
                         x$assessments$assessment_id)
  e <- unclass(x)
  e$referrals$referral_id <- unname(rid[e$referrals$referral_id])
  for (t in c("assessments", "cin_plans", "cp_plans")) e[[t]]$referral_id <- unname(rid[e[[t]]$referral_id])
  e$assessments$assessment_id <- unname(aid[e$assessments$assessment_id])
  e$assessment_factors$assessment_id <- unname(aid[e$assessment_factors$assessment_id])
  for (t in names(e)[!vapply(e, is.null, TRUE)]) {
    a <- e[[t]]
    b <- y[[t]]
    a <- a[do.call(order, unname(as.list(a[1:2]))), , drop = FALSE]
    b <- b[do.call(order, unname(as.list(b[1:2]))), names(a), drop = FALSE]
    rownames(a) <- rownames(b) <- NULL
    expect_equal(b, a, label = paste("table", t, "read back"))
  }
}

test_that("Family Safeguarding records round-trip too (more authorities, comparators)", {
  x <- simulate_sfp("family_safeguarding", n_la = 8, children_per_la_year = 15, seed = 12,
                    format = "returns", path = dir <- tempfile())
  y <- suppressWarnings(read_returns(dir))
  expect_round_trip(x, y)
  expect_setequal(unique(y$referrals$la_code), unique(x$children$la_code))
})

test_that("simulate -> write as returns -> read gives the same tables (XML and flat CSV)", {
  x <- simulate_sfp("family_valued", children_per_la_year = 40, seed = 11,
                    format = "returns", path = dir <- tempfile())
  expect_true(all(c("cin", "ssda903", "tables") %in% list.files(dir)))
  y <- suppressWarnings(read_returns(dir))
  expect_s3_class(y, "sfp_data")
  expect_round_trip(x, y)
  # Each referral knows its authority.
  expect_equal(y$referrals$la_code,
               x$children$la_code[match(y$referrals$child_id, x$children$child_id)])
  # The flat CSV form of the census gives the same CIN tables.
  write_returns(x, dir2 <- tempfile(), cin = "csv")
  expect_true(all(grepl("\\.csv$", list.files(file.path(dir2, "cin")))))
  a <- read_cin_census(file.path(dir, "cin"))
  b <- read_cin_census(file.path(dir2, "cin"))
  expect_equal(unclass(b)[names(b)], unclass(a)[names(a)])
})

test_that("a return holds only what was known at its reference date", {
  x <- simulate_sfp("family_valued", children_per_la_year = 40, seed = 5)
  write_returns(x, dir <- tempfile())
  f <- list.files(file.path(dir, "cin"), full.names = TRUE)[2]
  one <- read_cin_census(f)
  ref <- as.Date(paste0(regmatches(f, regexpr("[0-9]{4}(?=\\.xml)", f, perl = TRUE)), "-03-31"))
  expect_true(all(one$referrals$referral_date <= ref))
  expect_true(all(is.na(one$referrals$closure_date) | one$referrals$closure_date <= ref))
  expect_true(all(one$referrals$closure_date >= ref - 365, na.rm = TRUE))
  expect_true(all(is.na(one$cp_plans$end) | one$cp_plans$end <= ref))
})

# ---- SSDA903 ----

s903_write <- function(dir, year, header, episodes, uasc = NULL) {
  d <- file.path(dir, "201", year)
  dir.create(d, recursive = TRUE, showWarnings = FALSE)
  utils::write.csv(header, file.path(d, "header.csv"), row.names = FALSE, na = "")
  utils::write.csv(episodes, file.path(d, "episodes.csv"), row.names = FALSE, na = "")
  if (!is.null(uasc)) utils::write.csv(uasc, file.path(d, "uasc.csv"), row.names = FALSE, na = "")
}
ep <- function(child, decom, rne, ls, place, dec, rec, cin = "N1", pp = "PR1") {
  data.frame(CHILD = child, DECOM = decom, RNE = rne, LS = ls, CIN = cin,
             PLACE = place, PLACE_PROVIDER = pp, DEC = dec, REC = rec,
             REASON_PLACE_CHANGE = NA, HOME_POST = NA, PL_POST = NA, URN = NA)
}

test_that("SSDA903: episodes spanning returns are joined, duplicates counted", {
  dir <- tempfile()
  hdr <- data.frame(CHILD = c("K1", "K2"), SEX = c("1", "2"),
                    DOB = c("01/02/2010", "15/07/2019"), ETHNIC = c("WBRI", "BAFR"),
                    UPN = NA, MOTHER = NA, MC_DOB = NA)
  # 2022: K1's episode open at 31 March; K2's closed; an exact duplicate row.
  e22 <- rbind(ep("K1", "01/10/2021", "S", "C2", "U1", NA, NA),
               ep("K2", "05/05/2021", "S", "V2", "U4", "20/06/2021", "E4A"),
               ep("K2", "05/05/2021", "S", "V2", "U4", "20/06/2021", "E4A"))
  # 2023: K1's episode again, now ended with a change of placement.
  e23 <- rbind(ep("K1", "01/10/2021", "S", "C2", "U1", "03/04/2022", "X1"),
               ep("K1", "03/04/2022", "P", "C2", "U4", NA, NA))
  s903_write(dir, 2022, hdr, e22)
  s903_write(dir, 2023, hdr[1, ], e23,
             uasc = data.frame(CHILD = "K1", SEX = "1", DOB = "01/02/2010", DUC = "01/02/2028"))
  x <- read_ssda903(dir)
  expect_equal(x$cla_episodes,
               data.frame(child_id = c("K1", "K1", "K2"),
                          decom = as.Date(c("2021-10-01", "2022-04-03", "2021-05-05")),
                          dec = as.Date(c("2022-04-03", NA, "2021-06-20")),
                          rne = c("S", "P", "S"), ls = c("C2", "C2", "V2"),
                          cin = "N1", place = c("U1", "U4", "U4"),
                          place_provider = "PR1", rec = c("X1", NA, "E4A")))
  expect_equal(x$children,
               data.frame(child_id = c("K1", "K2"), la_code = "201",
                          dob = as.Date(c("2010-02-01", "2019-07-15")),
                          gender_raw = c("1", "2"), ethnicity = c("WBRI", "BAFR"),
                          uasc = c(TRUE, FALSE)))
  cv <- attr(x, "conversions")
  expect_equal(cv$n[cv$conversion == "episode in several returns: joined, latest kept"], 1L)
  expect_equal(cv$n[cv$table == "cla_episodes" & cv$conversion == "exact duplicate row in one file dropped"], 1L)
  expect_equal(cv$n[cv$column %in% "DECOM"], 4L)   # 3 rows in 2022 less 1 duplicate, 2 in 2023
})

test_that("SSDA903: conflicts and bad values are named", {
  dir <- tempfile()
  hdr <- data.frame(CHILD = "K1", SEX = "1", DOB = "01/02/2010", ETHNIC = "WBRI",
                    UPN = NA, MOTHER = NA, MC_DOB = NA)
  s903_write(dir, 2022, hdr, ep("K1", "01/10/2021", "S", "C2", "U1", NA, NA))
  s903_write(dir, 2023, hdr, ep("K1", "01/10/2021", "S", "C2", "U3", "01/12/2022", "E4A"))
  expect_warning(x <- read_ssda903(dir), "1 episode differs between returns")
  expect_equal(x$cla_episodes$place, "U3")
  dir <- tempfile()
  s903_write(dir, 2022, hdr, rbind(ep("K1", "01/10/2021", "S", "C2", "U1", NA, NA),
                                   ep("K1", "01/10/2021", "S", "C2", "U2", NA, NA)))
  expect_error(read_ssda903(dir), "episodes.csv, child K1: two different rows for one episode \\(rows 2 and 3\\)")
  dir <- tempfile()
  s903_write(dir, 2022, hdr, ep("K1", "31/02/2021", "S", "C2", "U1", NA, NA))
  expect_error(read_ssda903(dir), "episodes.csv, child K1: `DECOM` \"31/02/2021\" \\(row 2\\) is not a date")
  dir <- tempfile()
  s903_write(dir, 2022, hdr, ep("K1", "01/10/2021", "S", "C2", "Q9", NA, NA))
  expect_warning(read_ssda903(dir), "<PLACE>.*\"Q9\" in file episodes.csv, child K1")
  expect_error(read_ssda903(tempdir_empty <- tempfile()), "does not exist")
})

test_that("bad arguments are named", {
  expect_error(simulate_sfp("family_valued", format = "returns"), "`path` must be one directory path")
  expect_error(write_returns(list(), tempfile()), "`x` must be an sfp_data object")
  expect_error(read_returns(tempfile()), "`path` must be one existing directory")
  d <- tempfile(); dir.create(d)
  expect_error(read_cin_census(d), "`path` holds no .xml or .csv files")
})

test_that("the flat CSV form: conflicting rows and missing columns are named", {
  d <- data.frame(LAchildID = c("A1", "A1"), Date = c("2021-05-03", "2021-06-01"),
                  Type = c("CINreferralDate", "CINclosureDate"),
                  CINreferralDate = "2021-05-03", ReferralSource = c("1A", "1B"),
                  CINclosureDate = "2021-06-01", PersonBirthDate = "2015-01-01",
                  GenderCurrent = "1", Ethnicity = "WBRI", LEA = "201", YEAR = "2022")
  f <- file.path(tempfile(), "flat.csv")
  dir.create(dirname(f))
  utils::write.csv(d, f, row.names = FALSE)
  expect_error(read_cin_census(f),
               "file flat.csv, child A1: column `ReferralSource` has two values for one referral \\(rows 2 and 3")
  d$ReferralSource <- "1A"
  utils::write.csv(d, f, row.names = FALSE)
  x <- read_cin_census(f)
  expect_equal(x$referrals$la_code, "201")
  expect_equal(x$referrals$closure_date, as.Date("2021-06-01"))
  expect_equal(read_cin_census(f, history = TRUE)$children$recorded_date, as.Date("2022-03-31"))
  utils::write.csv(d[c("LAchildID", "Date")], f, row.names = FALSE)
  expect_error(read_cin_census(f), "flat.csv lacks column `CINreferralDate`")
  d$LEA <- NULL
  d$YEAR <- NULL
  utils::write.csv(d, f, row.names = FALSE)
  expect_error(read_cin_census(f), "no authority code")
  expect_equal(read_cin_census(f, la_code = "305")$children$la_code, "305")
  expect_error(read_cin_census(f, la_code = "305", history = TRUE),
               "`history` needs each return's reference date")
})

test_that("read_returns(): a child only in the SSDA903 comes from its header", {
  x <- simulate_sfp("family_valued", children_per_la_year = 40, seed = 7)
  kid <- x$cla_episodes$child_id[1]
  refs <- x$referrals$referral_id[x$referrals$child_id == kid]
  ass <- x$assessments$assessment_id[x$assessments$referral_id %in% refs]
  y <- suppressWarnings(sfp_data(
    children = x$children, referrals = x$referrals[!x$referrals$referral_id %in% refs, ],
    assessments = x$assessments[!x$assessments$assessment_id %in% ass, ],
    assessment_factors = x$assessment_factors[!x$assessment_factors$assessment_id %in% ass, ],
    cin_plans = x$cin_plans[!x$cin_plans$referral_id %in% refs, ],
    cp_plans = x$cp_plans[!x$cp_plans$referral_id %in% refs, ],
    cla_episodes = x$cla_episodes))
  write_returns(y, dir <- tempfile())
  z <- suppressWarnings(read_returns(dir))
  got <- z$children[z$children$child_id == kid, ]
  want <- x$children[x$children$child_id == kid, ]
  expect_equal(nrow(got), 1L)
  expect_equal(got$dob, want$dob)
  expect_equal(got$gender_raw, want$gender_raw)
  expect_equal(got$la_code, want$la_code)
  expect_equal(got$uasc, want$uasc)
  expect_true(is.na(got$expected_dob))
  expect_true(is.na(got$disability[[1]]))
  expect_equal(nrow(z$children), nrow(x$children))
})

test_that("the authority code is the 3-digit code nearest the file name", {
  expect_equal(return_la_from_path("/home/u_001/r/ssda903/901/2018/header.csv"), "901")
  expect_equal(return_la_from_path("/x/cin/201_2023.xml"), "201")
  expect_null(return_la_from_path("/x/2023/cin.xml"))
  expect_equal(return_year_from_path("/x/ssda903/901/2018/header.csv"), 2018L)
})

test_that("the readers' error messages (snapshots)", {
  good <- cin_xml()
  dir <- tempfile()
  f1 <- write_tmp(sub("<PersonBirthDate>2015-06-01</PersonBirthDate>",
                      "<PersonBirthDate>2015-06-01", good, fixed = TRUE), "unclosed.xml", dir)
  f2 <- write_tmp(sub("<CINreferralDate>2022-03-01</CINreferralDate>",
                      "<CINreferralDate>2022-03-01</CINreferralDate><CINreferralDate>2022-03-02</CINreferralDate>",
                      good, fixed = TRUE), "twice.xml", dir)
  f3 <- write_tmp(sub("<CPPendDate>2022-02-20</CPPendDate>", "<CPPendDate>20/02/2022x</CPPendDate>",
                      good, fixed = TRUE), "baddate.xml", dir)
  f4 <- write_tmp(sub("<NumberOfPreviousCPP>1</NumberOfPreviousCPP>",
                      "<NumberOfPreviousCPP>one</NumberOfPreviousCPP>", good, fixed = TRUE), "count.xml", dir)
  expect_snapshot(read_cin_census(f1), error = TRUE)
  expect_snapshot(read_cin_census(f2), error = TRUE)
  expect_snapshot(read_cin_census(f3), error = TRUE)
  expect_snapshot(read_cin_census(f4), error = TRUE)
  expect_snapshot(read_ssda903(dir), error = TRUE)
  expect_snapshot(read_cin_census(write_tmp(sub("<Ethnicity>WBRI</Ethnicity>", "<Ethnicity>WXYZ</Ethnicity>",
                                                good, fixed = TRUE), "eth.xml"))$children$ethnicity)
})
