# Times R's surveillance package on the series chartroom-bench analytics wrote: one sts with a
# column per series (weekly, freq 52), each method called once over the first N columns, as
# R users call it. Prints "method seconds series" lines.
#
#   Rscript surveillance_timing.R SERIES.csv N_EARS_CUSUM N_FARRINGTON
suppressPackageStartupMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
counts <- as.matrix(read.csv(args[1], check.names = FALSE))
n_fast <- min(as.integer(args[2]), ncol(counts))
n_farrington <- min(as.integer(args[3]), ncol(counts))
weeks <- nrow(counts)
timed <- function(label, n, f) {
  s <- sts(observed = counts[, seq_len(n), drop = FALSE], frequency = 52)
  started <- proc.time()[["elapsed"]]
  invisible(f(s))
  cat(label, proc.time()[["elapsed"]] - started, n, "\n")
}
for (method in c("C1", "C2", "C3")) {
  timed(paste0("ears-", tolower(method)), n_fast, function(s) earsC(s, control = list(method = method)))
}
timed("cusum", n_fast, function(s) {
  for (i in seq_len(ncol(s))) {
    algo.cusum(sts2disProg(s[, i]), control = list(range = 53:weeks))
  }
})
timed("farrington", n_farrington, function(s) farringtonFlexible(s, control = list(range = 264:weeks)))
