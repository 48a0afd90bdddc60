# Reproducibility: every function that draws random numbers gives the same
# result for the same seed, on any number of workers and any future backend,
# and leaves the user's random stream as its documentation says -- also when
# the call is interrupted inside the C code.

# The user's stream before and after `expr`, and its value.
stream_after <- function(expr) {
  set.seed(2026)
  before <- .Random.seed
  value <- force(expr)
  list(value = value, untouched = identical(.Random.seed, before))
}

wb_data <- function() {
  set.seed(3)
  d <- data.frame(la = sample(letters[1:6], 120, TRUE), year = sample(2015:2018, 120, TRUE),
                  stringsAsFactors = FALSE)
  d$treated <- as.integer(d$la %in% c("a", "b") & d$year >= 2017)
  d$y <- 0.2 * d$treated + rnorm(120)
  d
}

test_that("seeded functions repeat themselves and leave the user's stream alone", {
  d <- power_design(m = 60)
  fit <- did_fit(y ~ treated | la + year, wb_data(), cluster = ~la, vcov = "CR1")
  cases <- list(
    simulate_sfp = function() suppressWarnings(
      simulate_sfp("family_valued", n_la = 2, children_per_la_year = 3, seed = 4)),
    simulate_trial = function() simulate_trial(d, effect = 0.02, seed = 4),
    power_sim = function() power_sim(d, effect = 0.02, n_sims = 3, parallel = FALSE,
                                     seed = 4)$replicates,
    sw_randomise = function() sw_randomise(c("A", "B", "C", "D"), seed = 4)$allocation,
    wild_boot = function() wild_boot(fit, "treated", weights = "mammen", B = 99,
                                     seed = 4, conf_int = FALSE)$tstar
  )
  for (nm in names(cases)) {
    first <- stream_after(cases[[nm]]())
    second <- stream_after(cases[[nm]]())
    expect_true(first$untouched, label = paste(nm, "leaves the stream alone"))
    expect_identical(first$value, second$value, label = nm)
  }
})

test_that("a seeded function ignores the user's generator kind", {
  d <- power_design(m = 60)
  a <- simulate_trial(d, effect = 0.02, seed = 11)
  old <- RNGkind()
  on.exit(RNGkind(old[1], old[2], old[3]))
  RNGkind("L'Ecuyer-CMRG", "Box-Muller")
  b <- simulate_trial(d, effect = 0.02, seed = 11)
  expect_identical(RNGkind()[1:2], c("L'Ecuyer-CMRG", "Box-Muller"))
  RNGkind(old[1], old[2], old[3])
  expect_identical(a, b)
})

test_that("power_sim() gives the same replicates on 1 or 2 workers and any future backend", {
  skip_if_not_installed("future")
  skip_if_not_installed("future.apply")
  d <- power_design(m = 60)
  ref <- power_sim(d, effect = 0.02, n_sims = 4, parallel = FALSE, seed = 9)$replicates
  forked <- power_sim(d, effect = 0.02, n_sims = 4, parallel = TRUE, cores = 2,
                      seed = 9)$replicates
  expect_identical(forked, ref)
  old_plan <- future::plan()
  on.exit(future::plan(old_plan), add = TRUE)
  plans <- list(sequential = list(future::sequential))
  if (future::supportsMulticore()) plans$multicore <- list(future::multicore, workers = 2)
  for (nm in names(plans)) {
    do.call(future::plan, plans[[nm]])
    got <- power_sim(d, effect = 0.02, n_sims = 4, parallel = "future", seed = 9)$replicates
    expect_identical(got, ref, label = paste("future plan", nm))
  }
})

test_that("an interrupt inside C draws saves the generator's state first", {
  # setTimeLimit() makes R_CheckUserInterrupt() raise an error, which unwinds
  # the C loop exactly as a user's interrupt does. The wild bootstrap's draws
  # check for interrupts every 65,536 draws; 10 million take about 0.2 s.
  boot <- get("ffi_boot_weights", envir = asNamespace("sfpceval"))
  set.seed(1)
  fresh <- .Random.seed
  first_draws <- runif(3)
  set.seed(1)
  interrupted <- tryCatch({
    setTimeLimit(cpu = 0.05)
    .Call(boot, 1L, 1L, 1e7L, FALSE)
    FALSE
  }, error = function(e) grepl("time limit", conditionMessage(e)),
  finally = setTimeLimit())
  skip_if_not(interrupted, "the draws finished before the time limit")
  # the draws made before the interrupt are not handed out again
  expect_false(identical(.Random.seed, fresh))
  expect_false(identical(runif(3), first_draws))
})

test_that("an interrupted simulate_sfp() restores the user's stream", {
  set.seed(5)
  before <- .Random.seed
  interrupted <- tryCatch({
    setTimeLimit(cpu = 0.5)
    suppressWarnings(simulate_sfp("family_safeguarding", seed = 1))
    FALSE
  }, error = function(e) grepl("time limit", conditionMessage(e)),
  finally = setTimeLimit())
  skip_if_not(interrupted, "the simulation finished before the time limit")
  expect_identical(.Random.seed, before)
})
