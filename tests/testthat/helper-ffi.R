# Valid argument lists of the .Call entry points, for the tests that call
# them directly (test-fuzz.R, test-reproducible.R, tools/gctorture.R).

# Valid calls of every entry point (small, hand-made; the records simulator's
# arguments are captured from a tiny simulate_sfp() run).
valid_calls <- function() {
  gh_x <- c(-1.224744871391589, 0, 1.224744871391589)
  gh_w <- c(0.2954089751509193, 1.181635900603677, 0.2954089751509193)
  set.seed(3)
  calls <- list(
    ffi_union_days = list(c(1L, 5L, 10L), c(3L, NA, 12L), c(0L, 2L, 3L),
                          c(0L, 0L), c(20L, 20L)),
    ffi_first_in_range = list(c(1L, 5L, 10L), c(0L, 2L, 3L), c(0L, 0L),
                              c(20L, 20L)),
    ffi_first_overlap = list(c(1L, 5L, 10L), c(3L, NA, 12L), c(0L, 2L, 3L),
                             c(0L, 0L), c(20L, 20L)),
    ffi_plan_return = list(c(1L, 5L, 10L), c(3L, NA, 12L), c(0L, 2L, 3L),
                           c(3L, 11L), c(0L, 1L, 2L), c(0L, 0L), c(20L, 20L)),
    ffi_term_sums = list(c(1L, 1L, 2L, NA), c(2020L, 2020L, 2021L, 2020L),
                         c(1L, 2L, 3L, 1L), c(3L * 2020L, 3L * 2021L), 3L,
                         c(60L, 50L, NA, 10L), c(1L, 2L, 3L, 0L)),
    ffi_cem_codes = list(list(c(1.5, 2.5, NA, 7), c(1L, 2L, NA, 1L),
                              c("a", "b", "a", NA)),
                         c(2L, 1L, 0L), list(c(0, 2, 4, 8), 2L, NULL)),
    ffi_cem_moments = list(c(1, 2, 3, NA)),
    ffi_cem_strata = list(list(c(1L, 1L, 2L, 2L, 0L), c(1L, 1L, 1L, 2L, 2L)),
                          c(1L, 0L, 1L, 0L, 1L), 1L, 0L, c(2L, 2L)),
    ffi_cem_l1 = list(list(c(1L, 1L, 2L, 2L, 0L), c(1L, 1L, 1L, 2L, 2L)),
                      c(1L, 0L, 1L, 0L, 1L), list(NULL, c(1, 0.5, 1, 2, 0)),
                      list(c(1, 2, 3, 4, 5), NULL), c(TRUE, TRUE), c(2L, 2L)),
    ffi_demean = list(matrix(as.double(1:12), 6, 2),
                      list(c(0L, 0L, 1L, 1L, 2L, 2L), c(0L, 1L, 0L, 1L, 0L, 1L)),
                      c(3L, 2L), NULL, 1e-10, 100L),
    ffi_wls = list(cbind(1, c(1, 3, 2, 5, 4, 6)), c(1, 2, 2, 4, 5, 5), NULL, 1e-7),
    ffi_clogit = list(cbind(c(0.5, -1, 2, 0, 1, -0.5)), c(1, 0, 0, 1, 0, 1),
                      c(1, 2, 1, 1, 0.5, 1), NULL, c(0L, 2L, 4L, 1L, 3L, 5L),
                      c(0L, 3L, 6L), matrix(c(0L, 1L, 2L, 0L, 1L, 2L), 6, 1), 3L,
                      c(0.2, 0, 0.1, -0.1), c(0L, 1L, 0L, 1L, 2L, 2L), 3L, 2L),
    ffi_crve = list(matrix(rnorm(6), 6, 1), rnorm(6), rep(c(1, 2), 3), 0:5,
                    c(0L, 2L, 4L, 6L), matrix(c(0L, 0L, 1L, 1L, 0L, 1L), 6, 1),
                    2L, diag(0.1, 3), diag(0.01, 3), 2L, TRUE),
    ffi_boot_weights = list(3L, 1L, 8L, TRUE),
    ffi_wcr_stats = list(matrix(c(1, -1, 1), 3, 4), c(1, 2, 3), c(0, 1, 0),
                         diag(3), diag(3)),
    ffi_mle_newton = list(0L, cbind(1, c(0.1, 1.2, -0.3, 0.8, 2, -1)),
                          c(0, 1, 0, 1, 1, 0), double(0), integer(0), c(0, Inf),
                          c(0, 0), c(1e-8, 50)),
    ffi_glmm_binom = list(cbind(1, c(0, 1, 0, 1)), c(1, 2, 0, 3), c(3, 3, 2, 4),
                          c(0L, 2L, 4L), c(0, 0.1), 0.5, gh_x, gh_w, double(0), 2L,
                          list(c(0L, 1L, 3L, 4L, 6L), c(0L, 0L, 1L, 0L, 0L, 1L), c(1, 1, 1, 1, 1, 1)),
                          c(0.1, -0.2, 0, 0.3)),
    ffi_glmm_row_groups = list(matrix(c(1, 1, 2, 2, 1), 5, 1),
                               c(1L, 1L, 1L, 2L, 2L), 0L),
    ffi_sim_trial = list(matrix(5L, 3, 2), matrix(c(0, 0, 1, 0, 1, 1), 3, 2),
                         c(0, 0.1), c(0, 0.5), c(0.6, 0.4), 0.2, 0.3, 0.5)
  )
  calls$ffi_simulate_sfp <- simulate_call_args()
  calls
}

# Arguments of one .Call(ffi_simulate_sfp, ...) from a tiny simulation: the
# inputs of sim_walk() are traced, then sim_walk()'s body is evaluated with
# `.Call` replaced by `list`, which returns the arguments it would pass.
simulate_call_args <- function() {
  ns <- asNamespace("sfpceval")
  cap <- new.env()
  suppressMessages(trace("sim_walk", where = ns, print = FALSE,
                         tracer = bquote(assign("args", as.list(environment()),
                                                envir = .(cap)))))
  on.exit(suppressMessages(untrace("sim_walk", where = ns)), add = TRUE)
  suppressWarnings(simulate_sfp("family_valued", n_la = 2,
                                children_per_la_year = 3, seed = 1))
  walk <- get("sim_walk", envir = ns)
  if (inherits(walk, "functionWithTrace")) walk <- walk@original
  body(walk) <- do.call(substitute, list(body(walk), list(.Call = quote(list))))
  args <- do.call(walk, cap$args[names(formals(walk))])
  args[-1]
}

