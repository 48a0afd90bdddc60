# `make demo`: the main job on the bundled synthetic data.
# Simulates both protocols' records, validates them and prints a summary
# (counts per table, per local authority and per year). Later analyses are
# added here as they land.
suppressPackageStartupMessages(library(sfpceval))

for (design in c("family_valued", "family_safeguarding")) {
  cat("\n==================== ", design, " ====================\n", sep = "")
  t0 <- proc.time()[["elapsed"]]
  x <- simulate_sfp(design, seed = 20201001)
  cat(sprintf("simulated in %.1f s\n", proc.time()[["elapsed"]] - t0))
  # Re-validate from the raw tables, as a user would with real records.
  x <- do.call(sfp_data, c(unclass(x)[sfp_tables()], warn = FALSE))
  print(summary(x))
}
