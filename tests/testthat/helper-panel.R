# An unbalanced LA x year panel of rows (6 authorities, 2015-2019; three
# treated from 2017) with a covariate x, weights w, an outcome y (effect 0.2,
# slope `y_x` on x), a hurdle count (non-zero with probability `p_count(x)`),
# days censored to 0-300 and, with `yb = TRUE`, a 0/1 outcome yb (drawn
# last: the other columns do not depend on it). The bad-input battery
# (test-bad-input.R) and the row-order tests (test-row-order.R) use it.
la_year_rows <- function(n = 120, seed = 3, y_x = 1, p_count = function(x) 0.5,
                         yb = TRUE) {
  set.seed(seed)
  d <- data.frame(la = sample(letters[1:6], n, TRUE), year = sample(2015:2019, n, TRUE),
                  stringsAsFactors = FALSE)
  d$treated <- as.integer(d$la %in% c("a", "b", "c") & d$year >= 2017)
  d$x <- rnorm(n)
  d$w <- runif(n, 0.5, 2)
  d$y <- 0.2 * d$treated + y_x * d$x + rnorm(n)
  d$count <- ifelse(runif(n) < p_count(d$x), rpois(n, 2) + 1, 0)
  d$days <- pmin(pmax(100 + 80 * d$x + rnorm(n, sd = 90), 0), 300)
  if (yb) d$yb <- rbinom(n, 1, 0.4)
  d
}
