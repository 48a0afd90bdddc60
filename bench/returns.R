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
cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
tw <- system.time(write_returns(x, dir))
files <- list.files(file.path(dir, "cin"), full.names = TRUE)
mb <- sum(file.size(files)) / 2^20
cat(sprintf("%d CIN census files, %.1f MB; %s children, %s referrals\n", length(files), mb,
            format(nrow(x$children), big.mark = ","), format(nrow(x$referrals), big.mark = ",")))
cat(sprintf("write_returns(): %.1f s elapsed, %.1f s CPU\n", tw[["elapsed"]], cpu(tw)))
gc(reset = TRUE)
tr <- system.time(cin <- read_cin_census(file.path(dir, "cin")))
peak <- sum(gc()[, 6])
cat(sprintf("read_cin_census(): %.1f s elapsed, %.1f s CPU (%.1f MB per CPU second), peak memory %.0f MB\n",
            tr[["elapsed"]], cpu(tr), mb / cpu(tr), peak))
if (requireNamespace("xml2", quietly = TRUE)) {
  tx <- system.time(for (f in files) {
    leaves <- xml2::xml_find_all(xml2::read_xml(f), "//*[not(*)]")
    v <- xml2::xml_text(leaves)
    nm <- xml2::xml_name(leaves)
  })
  cat(sprintf("xml2 parse + leaves: %.1f s elapsed, %.1f s CPU; read_cin_census() / xml2 (CPU) = %.2f\n",
              tx[["elapsed"]], cpu(tx), cpu(tr) / cpu(tx)))
}
stopifnot(nrow(cin$referrals) == nrow(x$referrals))
