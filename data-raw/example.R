# The bundled examples sfp_example_fv and sfp_example_fs (documented in
# R/example-data.R): small simulate_sfp() draws for the man-page examples.
# Run from the package root: Rscript data-raw/example.R
pkgload::load_all(quiet = TRUE)

# Family Valued: the protocol's 5 LAs at 400 new children per LA per year
# (first referrals 2017-10-01 to 2022-09-30, records to 2025-09-30).
sfp_example_fv <- simulate_sfp("family_valued", children_per_la_year = 400,
                               seed = 2020)

# Family Safeguarding: 3 treated LAs and 5 candidate comparators (4 with
# trajectories parallel to a treated LA) at 150 new children per LA per year,
# records 2015-04-01 to 2024-03-31.
sfp_example_fs <- simulate_sfp("family_safeguarding", n_la = 8, n_treated = 3,
                               children_per_la_year = 150, seed = 2015)

save(sfp_example_fv, file = "data/sfp_example_fv.rda", compress = "xz")
save(sfp_example_fs, file = "data/sfp_example_fs.rda", compress = "xz")
print(file.size(c("data/sfp_example_fv.rda", "data/sfp_example_fs.rda")))
print(vapply(sfp_example_fv, NROW, 0L))
print(vapply(sfp_example_fs, NROW, 0L))
