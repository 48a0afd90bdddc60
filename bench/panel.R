# Benchmark of the panel topic (#5): hurdle_fit() vs pscl::hurdle(),
# tobit_fit() vs AER::tobit() (each with LA-clustered sandwich::vcovCL),
# and serial_test()/hausman_test() vs plm, on simulated data.  Run once:
#   R CMD INSTALL --library=/tmp/lib-panel . && R_LIBS=/tmp/lib-panel Rscript bench/panel.R
library(sfpceval)

time_it <- function(expr, reps = 3L) {
  e <- substitute(expr)
  pf <- parent.frame()
  min(vapply(seq_len(reps), function(i) system.time(eval(e, pf))[["elapsed"]], 0))
}
row <- function(what, ours, ref) {
  cat(sprintf("%-44s sfpceval %7.3f s   reference %7.3f s   ratio %6.1fx\n",
              what, ours, ref, ref / ours))
}

set.seed(1)
n <- 100000
d <- data.frame(age = runif(n, 0, 12), female = rbinom(n, 1, 0.5),
                treated = rbinom(n, 1, 0.5), la = sample(1:10, n, TRUE))
pos <- runif(n) < plogis(-0.5 + 0.1 * d$age - 0.2 * d$treated)
d$days <- ifelse(pos, rnbinom(n, mu = exp(4 + 0.05 * d$age - 0.1 * d$treated), size = 1.2), 0)
d$capped <- pmin(d$days, 548)

cat(sprintf("n = %d children, 10 LAs\n", n))
if (requireNamespace("pscl", quietly = TRUE) && requireNamespace("sandwich", quietly = TRUE)) {
  for (dist in c("poisson", "negbin")) {
    ours <- time_it(hurdle_fit(days ~ age + female + treated, d, dist = dist, cluster = "la"))
    ref <- time_it({
      h <- pscl::hurdle(days ~ age + female + treated, data = d, dist = dist)
      sandwich::vcovCL(h, cluster = ~la)
    })
    row(sprintf("hurdle (%s) + clustered SEs", dist), ours, ref)
  }
}
if (requireNamespace("AER", quietly = TRUE) && requireNamespace("sandwich", quietly = TRUE)) {
  ours <- time_it(tobit_fit(capped ~ age + female + treated, d, 0, 548, cluster = "la"))
  ref <- time_it({
    tb <- AER::tobit(capped ~ age + female + treated, left = 0, right = 548, data = d)
    sandwich::vcovCL(tb, cluster = ~la)
  })
  row("two-limit tobit + clustered SEs", ours, ref)
}

# absence panel: 20,000 children x 3 terms
if (requireNamespace("plm", quietly = TRUE)) {
  m <- 20000
  a <- expand.grid(child = 1:m, term = 1:3)
  a$age <- runif(nrow(a), 5, 12)
  a$absence <- 3 + 0.2 * a$age + rnorm(m)[a$child] + rnorm(nrow(a))
  pa <- plm::pdata.frame(a, index = c("child", "term"))
  ours <- time_it(serial_test(absence ~ age, a, "child", "term", lags = "stacked"), 1L)
  ref <- time_it(plm::pbgtest(plm::plm(absence ~ age, pa, model = "within")), 1L)
  row("pbgtest, 20,000 children x 3 terms", ours, ref)
  ours <- time_it(hausman_test(absence ~ age, a, "child", "term", vcov = "CR0"), 1L)
  ref <- time_it(plm::phtest(absence ~ age, pa, method = "aux",
                             vcov = function(x) plm::vcovHC(x, method = "arellano")), 1L)
  row("robust Hausman (aux), 20,000 x 3", ours, ref)
}

# BCJ FGLS on 10 LAs x 24 quarters of micro data (100,000 children)
q <- data.frame(la = sample(1:10, n, TRUE), quarter = sample(1:24, n, TRUE),
                age = runif(n, 0, 12))
q$treated <- as.integer(q$la <= 5 & q$quarter > 12)
q$y <- rbinom(n, 1, 0.2 + 0.02 * q$treated)
t_fgls <- time_it(fgls_bcj(y ~ treated + age, q, "la", "quarter", p = 2))
cat(sprintf("%-44s sfpceval %7.3f s\n", "fgls_bcj, 100,000 children, 10 x 24 cells", t_fgls))
