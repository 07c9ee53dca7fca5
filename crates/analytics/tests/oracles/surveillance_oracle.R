# Reference outputs for tests/surveillance_oracle.rs, computed by R's surveillance package.
#
#   Rscript surveillance_oracle.R IN_DIR OUT_DIR
#
# IN_DIR holds series_<name>.csv (one column, `count`) and jobs.csv (columns job, series,
# method, params). `method` is earsC, cusum or farrington; `params` is `key=value` pairs
# separated by `;`, keys as R's control list names (`range=a:b`, `limit54=5,4`).
# For each job this writes OUT_DIR/<job>.csv (t, observed, upperbound, alarm, cusum, expected,
# score, trend; NA where R gives NA) or, if R stops, OUT_DIR/<job>.error with the message.
# Numbers are written with 17 significant digits so the comparison sees R's doubles.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2) stop("usage: Rscript surveillance_oracle.R IN_DIR OUT_DIR")
in_dir <- args[1]
out_dir <- args[2]
suppressPackageStartupMessages(library(surveillance))

parse_value <- function(v) {
  if (grepl("^[0-9]+:[0-9]+$", v)) {
    ab <- as.integer(strsplit(v, ":", fixed = TRUE)[[1]])
    return(ab[1]:ab[2])
  }
  if (grepl(",", v, fixed = TRUE)) return(as.numeric(strsplit(v, ",", fixed = TRUE)[[1]]))
  if (v %in% c("TRUE", "FALSE")) return(as.logical(v))
  num <- suppressWarnings(as.numeric(v))
  if (!is.na(num)) return(num)
  v
}

parse_params <- function(s) {
  control <- list()
  if (is.na(s) || nchar(s) == 0) return(control)
  for (kv in strsplit(s, ";", fixed = TRUE)[[1]]) {
    p <- strsplit(kv, "=", fixed = TRUE)[[1]]
    control[[p[1]]] <- parse_value(p[2])
  }
  control
}

num <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", as.numeric(x)))

write_result <- function(path, t, observed, upperbound, alarm, cusum = NA, expected = NA,
                         score = NA, trend = NA) {
  n <- length(t)
  rep_n <- function(x) if (length(x) == 1) rep(x, n) else x
  lines <- paste(t, num(observed), num(upperbound), num(as.numeric(alarm)), num(rep_n(cusum)),
                 num(rep_n(expected)), num(rep_n(score)), num(rep_n(trend)), sep = ",")
  writeLines(c("t,observed,upperbound,alarm,cusum,expected,score,trend", lines), path)
}

jobs <- read.csv(file.path(in_dir, "jobs.csv"), colClasses = "character")
for (i in seq_len(nrow(jobs))) {
  job <- jobs[i, ]
  y <- read.csv(file.path(in_dir, paste0("series_", job$series, ".csv")))$count
  # epochAsDate = FALSE: periods are indexed 1..n, reference weeks are t - j * 52.
  s <- sts(observed = matrix(y, ncol = 1), start = c(2000, 1), frequency = 52)
  control <- parse_params(job$params)
  out <- file.path(out_dir, paste0(job$job, ".csv"))
  started <- proc.time()[["elapsed"]]
  result <- tryCatch(suppressWarnings({
    if (job$method == "earsC") {
      r <- earsC(s, control = control)
      # The result is the range's rows (its epoch renumbered); the range is in its control.
      write_result(out, r@control$range, observed(r)[, 1], upperbound(r)[, 1], alarms(r)[, 1])
    } else if (job$method == "cusum") {
      r <- algo.cusum(sts2disProg(s), control = control)
      write_result(out, control$range, y[control$range], r$upperbound, r$alarm, cusum = r$cusum)
    } else if (job$method == "farrington") {
      r <- farringtonFlexible(s, control = control)
      # farringtonFlexible does not keep its range; R's default is freq * b + w + 1 .. n
      # (exact names: control$w would partially match weightsThreshold).
      b <- if (is.null(control[["b", exact = TRUE]])) 5 else control[["b", exact = TRUE]]
      w <- if (is.null(control[["w", exact = TRUE]])) 3 else control[["w", exact = TRUE]]
      range <- if (is.null(control$range)) (52 * b + w + 1):length(y) else control$range
      write_result(out, range, observed(r)[, 1], upperbound(r)[, 1], alarms(r)[, 1],
                   expected = r@control$expected[, 1], score = r@control$score[, 1],
                   trend = r@control$trend[, 1])
    } else {
      stop("unknown method ", job$method)
    }
    "ok"
  }), error = function(e) conditionMessage(e))
  if (nzchar(Sys.getenv("SURVEILLANCE_ORACLE_TIMING")))
    message(sprintf("%-40s %6.2f s", job$job, proc.time()[["elapsed"]] - started))
  if (!identical(result, "ok")) writeLines(result, file.path(out_dir, paste0(job$job, ".error")))
}
