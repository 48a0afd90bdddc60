# Shared helpers for user-facing messages. Every message a user can trigger
# names the table (or argument), the column, how many rows, the first few
# offending rows or keys, and what to do.

# "rows 2, 5, 9 and 12 more" (1-based row numbers), optionally with keys.
describe_rows <- function(rows, keys = NULL, key_name = NULL, n_show = 5L) {
  n <- length(rows)
  shown <- utils::head(rows, n_show)
  out <- paste0(if (n == 1L) "row " else "rows ", paste(shown, collapse = ", "))
  if (!is.null(keys)) {
    out <- paste0(out, "; ", key_name %||% "key", " ",
                  paste(utils::head(keys, n_show), collapse = ", "))
  }
  if (n > n_show) out <- paste0(out, " and ", n - n_show, " more")
  out
}

# Stop with a message about offending rows of one column of one table.
#   table, column: names as the user knows them
#   rows:          1-based row numbers (integer vector, length >= 1)
#   problem:       what is wrong, e.g. "have closure_date before referral_date"
#   fix:           what to do
#   keys:          optional key values of those rows, with key_name
stop_rows <- function(table, column, rows, problem, fix, keys = NULL,
                      key_name = NULL) {
  stop(rows_message(table, column, rows, problem, fix, keys, key_name),
       call. = FALSE)
}

warn_rows <- function(table, column, rows, problem, fix, keys = NULL,
                      key_name = NULL) {
  warning(rows_message(table, column, rows, problem, fix, keys, key_name),
          call. = FALSE)
}

rows_message <- function(table, column, rows, problem, fix, keys = NULL,
                         key_name = NULL) {
  n <- length(rows)
  if (n == 1L) problem <- singular_verb(problem)
  where <- if (is.null(column)) sprintf("Table `%s`", table) else
    sprintf("Table `%s`, column `%s`", table, column)
  paste0(where, ": ", format(n, big.mark = ","), if (n == 1L) " row " else " rows ",
         problem, " (", describe_rows(rows, keys, key_name), ").\n", "Fix: ",
         fix)
}

# Stop about an argument of a function.
stop_arg <- function(arg, problem, fix = NULL) {
  stop(sprintf("`%s` %s.%s", arg, problem,
               if (is.null(fix)) "" else paste0("\nFix: ", fix)),
       call. = FALSE)
}

# A count argument (draws, allocations, trials): one whole number from 1 to
# `max`. Checked before anything of that size is made: the permutation and
# simulation functions keep one row (an allocation) or one result per unit, so
# the cap bounds their memory. 1e6 draws give a Monte Carlo standard error of a
# p-value or a power below 0.0005: more cannot change a decision.
.max_draws <- 1e6

check_count_arg <- function(x, arg, max = .max_draws, fix = NULL) {
  if (!is.numeric(x) || length(x) != 1L || !is.finite(x) || x < 1 || x != round(x)) {
    stop_arg(arg, sprintf("must be one whole number of at least 1, not %s", describe_value(x)),
             sprintf("give e.g. `%s = 1000`.", arg))
  }
  if (x > max) {
    stop_arg(arg, sprintf("is %s, more than the %s the package will list or draw (each is kept in memory)",
                          format(x, big.mark = ",", scientific = FALSE),
                          format(max, big.mark = ",", scientific = FALSE)),
             fix %||% sprintf("give at most `%s = %s`: its Monte Carlo error on a p-value or a power is below 0.0005.",
                              arg, format(max, big.mark = "", scientific = FALSE)))
  }
  invisible(as.integer(x))
}

.fix_max_enumerate <- paste("give at most `max_enumerate = 1000000`; when there are more admissible",
                             "allocations they are counted and `n_perm` of them sampled.")

`%||%` <- function(x, y) if (is.null(x)) y else x

# "are not valid" -> "is not valid" etc. for a single row.
singular_verb <- function(problem) {
  sub("^(are|have|hold|start|end|lie|fall|use|give|repeat)\\b", "\\1@", problem) |>
    sub(pattern = "^are@", replacement = "is") |>
    sub(pattern = "^have@", replacement = "has") |>
    sub(pattern = "^(hold|start|end|lie|fall|use|give|repeat)@", replacement = "\\1s")
}

# Gauss-Hermite rule for a standard normal: nodes z and weights w (summing to
# 1) with E f(Z) ~ sum(w * f(z)). From gauss_hermite() (R/glmm.R), the rule
# for the weight exp(-x^2): z = sqrt(2) x, w = w / sqrt(pi).
normal_quadrature <- function(Q) {
  gh <- gauss_hermite(Q)
  list(z = sqrt(2) * gh$x, w = gh$w / sqrt(pi))
}

# Evaluate `expr` with R's generator of `kind` initialised by `init()`, and
# restore the caller's generator and random state afterwards.
with_rng <- function(kind, init, expr) {
  old_kind <- RNGkind()
  had <- exists(".Random.seed", envir = globalenv(), inherits = FALSE)
  if (had) old <- get(".Random.seed", envir = globalenv(), inherits = FALSE)
  on.exit({
    # (restoring a caller's sample.kind = "Rounding" would warn on every call)
    suppressWarnings(RNGkind(old_kind[1], old_kind[2], old_kind[3]))
    if (had) assign(".Random.seed", old, envir = globalenv()) else
      if (exists(".Random.seed", envir = globalenv(), inherits = FALSE))
        rm(".Random.seed", envir = globalenv())
  })
  RNGkind(kind, "Inversion", "Rejection")
  init()
  expr
}

# ... from a seed (default generator), or from a saved L'Ecuyer-CMRG stream.
# The seed is the user's `seed` argument: one whole number (set.seed() would
# silently truncate 2.5 to 2).
with_seed <- function(seed, expr, kind = "Mersenne-Twister") {
  seed <- check_seed(seed)
  with_rng(kind, function() set.seed(seed), expr)
}

check_seed <- function(seed, arg = "seed") {
  if (!is.numeric(seed) || length(seed) != 1L || !is.finite(seed) || seed != round(seed) ||
      abs(seed) > .Machine$integer.max) {
    stop_arg(arg, sprintf("must be one whole number, not %s", describe_value(seed)),
             "give e.g. `seed = 1` (record it with the results).")
  }
  as.integer(seed)
}
with_stream <- function(stream, expr) {
  with_rng("L'Ecuyer-CMRG", function() assign(".Random.seed", stream, envir = globalenv()), expr)
}

# One convention for the package's optimisers (Laplace/AGQ, the linear mixed
# model, the count-model Newton, conditional logit, IRLS, fixed-effect
# demeaning): each returns the list made by optim_status(), stored in the fit
# as `convergence`, and a fit that did not converge calls warn_not_converged().
#   converged:  TRUE when the optimiser's own criterion was met
#   iterations: iterations (or sweeps, or function evaluations) used
#   message:    the optimiser's message, or what was checked
optim_status <- function(converged, iterations, message = NULL) {
  converged <- isTRUE(converged)
  list(converged = converged, iterations = as.integer(iterations)[1L],
       message = message %||% if (converged) "converged" else "did not converge")
}

# Warn, with class "sfpceval_not_converged", that `what` (e.g. "sw_glmm():
# the linear mixed model") did not converge, giving the optimiser's message and
# what to do.
warn_not_converged <- function(what, status, fix) {
  msg <- sprintf("%s did not converge after %d iterations (%s).\nFix: %s",
                 what, status$iterations, status$message, fix)
  warning(structure(class = c("sfpceval_not_converged", "warning", "condition"),
                    list(message = msg, call = NULL)))
}
