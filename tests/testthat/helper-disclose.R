# disclose()'s worked two-way table (test-disclose.R): authorities A-C by
# arm with both margins; B/control = 4 is the one count below 10.
la_arm_table <- function() {
  data.frame(la = c("A", "B", "C", "Total"),
             control = c(25L, 4L, 30L, 59L),
             treated = c(22L, 18L, 35L, 75L),
             Total = c(47L, 22L, 65L, 134L))
}
