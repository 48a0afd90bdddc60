placebo_data <- function(seed = 1, n = 9000, start = "2016-04-01") {
  set.seed(seed)
  las <- sprintf("L%02d", 1:8)
  span <- as.integer(as.Date("2022-11-26") - as.Date(start))
  d <- data.frame(la = sample(las, n, TRUE),
                  referral_date = as.Date(start) + sample(0:span, n, TRUE))
  d$cla_18m <- rbinom(nrow(d), 1, 0.06 + 0.02 * (d$la %in% c("L01", "L03")))
  d
}
go <- data.frame(la_code = c("L01", "L02"), go_live_date = as.Date(c("2020-09-01", "2021-01-01")))

test_that("placebo estimates equal plain-R DiDs of means and a stacked lm", {
  d <- placebo_data()
  m <- match_trends(d, go, "cla_18m", n_candidates = 3)
  expect_warning(p <- placebo_test(m, d), class = "sfpceval_few_treated")  # two treated LAs
  pairs <- m$candidates[m$candidates$selected, ]
  stack <- list()
  for (i in seq_len(nrow(pairs))) {
    g <- go$go_live_date[go$la_code == pairs$treated_la[i]]
    cut <- seq(g, by = "-18 months", length.out = 2)[2]
    false <- seq(cut, by = "-12 months", length.out = 2)[2]
    s <- d[d$la %in% c(pairs$treated_la[i], pairs$comparator_la[i]) & d$referral_date < cut, ]
    tr <- s$la == pairs$treated_la[i]
    post <- s$referral_date >= false
    ref <- (mean(s$cla_18m[tr & post]) - mean(s$cla_18m[tr & !post])) -
      (mean(s$cla_18m[!tr & post]) - mean(s$cla_18m[!tr & !post]))
    expect_equal(p$pairs$estimate[i], ref, tolerance = 1e-12)
    expect_equal(p$pairs$false_go_live[i], false)
    s$placebo <- as.integer(tr & post)
    s$pair_la <- paste(i, s$la)
    s$pair_post <- paste(i, post)
    stack[[i]] <- s
  }
  s <- do.call(rbind, stack)
  b <- coef(lm(cla_18m ~ placebo + factor(pair_la) + factor(pair_post), s))[["placebo"]]
  expect_equal(p$stacked$estimate, b, tolerance = 1e-10)
  skip_if_not_installed("clubSandwich")
  fit <- lm(cla_18m ~ placebo + factor(pair_la) + factor(pair_post), s)
  ct <- clubSandwich::coef_test(fit, vcov = "CR2", cluster = s$la, test = "Satterthwaite")
  expect_equal(p$stacked$std.error, ct$SE[ct$Coef == "placebo"], tolerance = 1e-8)
})

test_that("common-shock interaction equals a plain-R regression", {
  d <- placebo_data(2, start = "2015-07-01")   # the window for a 2019-09 go-live starts in 2015Q4
  go2 <- data.frame(la_code = c("L01", "L02"), go_live_date = as.Date(c("2019-09-01", "2020-01-01")))
  m <- match_trends(d, go2, "cla_18m", n_candidates = 2)
  shock <- as.Date("2021-06-01")
  expect_warning(r <- common_shock_test(d, m, shock = shock), class = "sfpceval_few_treated")
  pairs <- m$candidates[m$candidates$selected, ]
  rows <- lapply(seq_len(nrow(pairs)), function(i) {
    g <- go2$go_live_date[go2$la_code == pairs$treated_la[i]]
    s <- d[d$la %in% c(pairs$treated_la[i], pairs$comparator_la[i]) & d$referral_date >= g, ]
    s$tr <- as.integer(s$la == pairs$treated_la[i])
    s$x <- as.integer(s$la == pairs$treated_la[i] & s$referral_date >= shock)
    s$q <- paste(i, format(s$referral_date, "%Y"), (as.integer(format(s$referral_date, "%m")) - 1) %/% 3)
    s$pl <- paste(i, s$la)
    s
  })
  s <- do.call(rbind, rows)
  # "control for the common shock and its interaction": a shock dated
  # inside a quarter (2021-06-01) keeps its main effect
  s$shock <- as.integer(s$referral_date >= shock)
  f <- lm(cla_18m ~ x + shock + factor(pl) + factor(q), s)
  expect_equal(r$term, c("programme x shock", "shock"))
  expect_equal(r$estimate, unname(coef(f)[c("x", "shock")]), tolerance = 1e-10)
  expect_equal(r$absorbed, c(FALSE, FALSE))
  expect_equal(r$n_children, rep(nrow(s), 2))
  skip_if_not_installed("clubSandwich")
  ct <- clubSandwich::coef_test(f, vcov = "CR2", cluster = s$la, test = "Satterthwaite")
  expect_equal(r$std.error, ct$SE[match(c("x", "shock"), ct$Coef)], tolerance = 1e-8)
  # a shock on a quarter boundary: the quarter effects absorb its main effect
  expect_warning(r2 <- common_shock_test(d, m, shock = as.Date("2021-07-01")),
                 class = "sfpceval_few_treated")
  s$x <- s$tr * (s$referral_date >= as.Date("2021-07-01"))
  b2 <- coef(lm(cla_18m ~ x + factor(pl) + factor(q), s))[["x"]]
  expect_equal(r2$estimate[1], b2, tolerance = 1e-10)
  expect_true(is.na(r2$estimate[2]) && r2$absorbed[2])
})

test_that("common-shock test by hand: a shock hitting every authority alike is not flagged", {
  # two pairs, outcome = 1 + 0.5 * shock exactly: the shock's main effect is
  # 0.5, the interaction 0
  d <- placebo_data(4, start = "2015-07-01")
  go2 <- data.frame(la_code = c("L01", "L02"), go_live_date = as.Date(c("2019-09-01", "2020-01-01")))
  m <- data.frame(treated_la = c("L01", "L02"), comparator_la = c("L05", "L06"))
  shock <- as.Date("2021-05-15")
  d$y <- 1 + 0.5 * (d$referral_date >= shock) + 1e-3 * sin(seq_len(nrow(d)))
  expect_warning(r <- common_shock_test(d, m, shock = shock, outcome = "y", design = go2),
                 class = "sfpceval_few_treated")
  expect_equal(r$estimate[2], 0.5, tolerance = 1e-3)
  expect_equal(r$estimate[1], 0, tolerance = 1e-3)
  # a child-level 0/1 column as the shock
  d$hit <- as.integer(d$referral_date >= shock & d$la %in% c("L01", "L05"))
  expect_warning(r3 <- common_shock_test(d, m, shock = "hit", outcome = "y", design = go2),
                 class = "sfpceval_few_treated")
  expect_false(r3$absorbed[2])
})

test_that("placebo and common-shock checks reject bad input", {
  d <- placebo_data(3, n = 3000)
  m <- match_trends(d, go, "cla_18m", n_candidates = 2)
  expect_snapshot(placebo_test(data.frame(), d), error = TRUE)
  expect_snapshot(common_shock_test(d, m, shock = as.Date("2010-01-01")), error = TRUE)
  expect_snapshot(common_shock_test(d, m, shock = "nope"), error = TRUE)
})
