# A small Family Valued simulation (30 children per authority and year), its
# design and its care-entry cohort, built once per test run: the hostile-input
# tests (test-bad-input.R, test-fuzz.R) perturb it.
battery_fv <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      x <- suppressWarnings(simulate_sfp("family_valued", children_per_la_year = 30, seed = 3))
      d <- design_family_valued(x)
      co <- suppressWarnings(suppressMessages(build_cohort(x, d, outcomes = "cla_18m")))
      cache <<- list(x = x, d = d, co = co)
    }
    cache
  }
})
