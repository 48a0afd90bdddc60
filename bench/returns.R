# read_cin_census() on a Family Valued-sized set of CIN census returns: the
# base-R tokenizer against xml2 (libxml2) parsing the same files, in one
# process. xml2 here only parses and pulls every leaf's name and text (less
# than read_cin_census() does: no nesting checks, keys, code lists or
# joining across years), so the ratio is a lower bound on the tokenizer's
# cost relative to a C parser.
suppressMessages(library(sfpceval))
n <- as.numeric(Sys.getenv("SFP_BENCH_CPY", "2600"))
x <- simulate_sfp("family_valued", children_per_la_year = n, seed = 1)
dir <- tempfile()
t_write <- system.time(write_returns(x, dir))[["elapsed"]]
files <- list.files(file.path(dir, "cin"), full.names = TRUE)
mb <- sum(file.size(files)) / 2^20
cat(sprintf("%d CIN census files, %.1f MB; %s children, %s referrals\n", length(files), mb,
            format(nrow(x$children), big.mark = ","), format(nrow(x$referrals), big.mark = ",")))
cat(sprintf("write_returns(): %.1f s\n", t_write))
gc(reset = TRUE)
t_read <- system.time(cin <- read_cin_census(file.path(dir, "cin")))[["elapsed"]]
peak <- sum(gc()[, 6])
cat(sprintf("read_cin_census(): %.1f s (%.1f MB/s), peak memory %.0f MB\n", t_read, mb / t_read, peak))
if (requireNamespace("xml2", quietly = TRUE)) {
  t_xml2 <- system.time(for (f in files) {
    leaves <- xml2::xml_find_all(xml2::read_xml(f), "//*[not(*)]")
    v <- xml2::xml_text(leaves)
    nm <- xml2::xml_name(leaves)
  })[["elapsed"]]
  cat(sprintf("xml2 parse + leaves: %.1f s; read_cin_census() / xml2 = %.1f\n", t_xml2, t_read / t_xml2))
}
stopifnot(nrow(cin$referrals) == nrow(x$referrals))
