# Data shared by the linear mixed model's variance tests (test-glmm.R: CR2,
# test-lmm-cr3.R: CR3): `nch` children in G authorities, each measured 1-3
# times (`since`, months; `yr` its year as a factor), a stepped roll-out by
# period, and y with authority, child and residual variation. With
# `child_weights`, `w` is one weight per child (1, 2.5 or 0.4), drawn before
# y so the outcome is the same with and without it.
lmm_child_data <- function(seed, G = 6, nch = 150, child_weights = FALSE) {
  set.seed(seed)
  las <- paste0("L", seq_len(G))
  ch <- data.frame(child_id = seq_len(nch), la = sample(las, nch, TRUE), period = sample(0:5, nch, TRUE))
  ch$treated <- as.integer(ch$period >= match(ch$la, las) * 5 / G)
  nt <- sample(1:3, nch, TRUE)
  d <- ch[rep(seq_len(nch), nt), ]
  d$since <- unlist(lapply(nt, seq_len)) * 4 + round(runif(nrow(d)), 2)
  d$yr <- factor(d$since %/% 4)
  if (child_weights) d$w <- c(1, 2.5, 0.4)[(d$child_id %% 3) + 1]
  d$y <- 10 + d$treated + 0.3 * d$since + rnorm(G)[match(d$la, las)] +
    rnorm(nch, sd = 2)[d$child_id] + rnorm(nrow(d), sd = 3)
  d
}

cr2_data <- function(seed, G = 6, nch = 150) lmm_child_data(seed, G, nch)
cr3_data <- function(seed, G = 6, nch = 120) lmm_child_data(seed, G, nch, child_weights = TRUE)

# The wild bootstrap's LMM data (test-glmm-boot.R, test-lmm-boot.R): `nch`
# children in G authorities, 1-3 measurements each, a stepped roll-out by
# period, y with authority, child and residual variation and effect 1.
lmm_boot_data <- function(nch = 120, seed = 1, G = 5) {
  set.seed(seed)
  las <- paste0("L", seq_len(G))
  ch <- data.frame(child_id = seq_len(nch), la = sample(las, nch, TRUE),
                   period = sample(0:5, nch, TRUE))
  ch$treated <- as.integer(ch$period >= match(ch$la, las) * 5 / G)
  nt <- sample(1:3, nch, TRUE)
  d <- ch[rep(seq_len(nch), nt), ]
  d$since <- unlist(lapply(nt, seq_len)) * 4 + round(runif(nrow(d)), 2)
  d$y <- 10 + 1 * d$treated + 0.3 * d$since + rnorm(G, sd = 1)[match(d$la, las)] +
    rnorm(nch, sd = 2)[d$child_id] + rnorm(nrow(d), sd = 3)
  d
}
