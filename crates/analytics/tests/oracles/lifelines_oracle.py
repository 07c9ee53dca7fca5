"""Reference results for the survival kernels (crates/analytics/src/survival), from lifelines.

Usage: python lifelines_oracle.py OUT_DIR
       python lifelines_oracle.py --benchmark COHORT_CSV

For every case (lifelines' bundled data sets, a seeded synthetic cohort and a few edge cases
made here) this writes OUT_DIR/<case>.csv with the inputs exactly as lifelines received them
and OUT_DIR/expected.json with what lifelines computed from them:

- Kaplan-Meier (KaplanMeierFitter, default alpha 0.05): survival_function_,
  confidence_interval_ (exponential Greenwood), event_table (at_risk, observed, censored) at
  every point of the timeline, median_survival_time_, the median's interval
  (utils.median_survival_times(kmf.confidence_interval_)), survival_function_at_times at a
  few times, and the "At risk" row that plotting.add_at_risk_counts draws at a few times.
- Log-rank: statistics.logrank_test (two groups) and statistics.multivariate_logrank_test
  (two or more groups): test_statistic, p_value, degrees_of_freedom.
- Cox (CoxPHFitter(), Efron ties, default settings): params_, standard_errors_,
  confidence_intervals_, hazard_ratios_, summary z and p, concordance_index_,
  log_likelihood_, log_likelihood_ratio_test(), and the Newton-Raphson iteration count that
  fit(show_progress=True) prints.

With --benchmark it instead times lifelines' KaplanMeierFitter + multivariate_logrank_test +
CoxPHFitter on a cohort CSV (the Rust benchmark test writes it) and prints the seconds per run.

CSV columns: `duration`, `event` (0/1), then `group:<name>` (integer codes of one grouping)
and `x:<name>` (one covariate) columns. Infinite lifelines results (a median that is never
reached) are written as null.
"""

import contextlib
import io
import json
import math
import os
import re
import sys
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import lifelines  # noqa: E402
from lifelines import CoxPHFitter, KaplanMeierFitter  # noqa: E402
from lifelines import datasets  # noqa: E402
from lifelines.plotting import add_at_risk_counts  # noqa: E402
from lifelines.statistics import logrank_test, multivariate_logrank_test  # noqa: E402
from lifelines.utils import median_survival_times  # noqa: E402

warnings.simplefilter("ignore")


def finite_or_none(value):
    value = float(value)
    return value if math.isfinite(value) else None


def floats(values):
    return [float(v) for v in np.asarray(values, dtype=float)]


def ints(values):
    return [int(v) for v in np.asarray(values)]


def at_risk_row(kmf, times):
    """The "At risk" numbers lifelines' risk table shows under a Kaplan-Meier plot at `times`."""
    fig, ax = plt.subplots()
    kmf.plot_survival_function(ax=ax)
    # The fitter's label must not end in a digit: the first tick label starts with it.
    add_at_risk_counts(kmf, ax=ax, xticks=list(times), rows_to_show=["At risk", "Censored", "Events"])
    fig.canvas.draw()
    # It returns the survival curve's axes; the risk table is the twin axes it added.
    ax2 = fig.axes[-1]
    counts = []
    for label in ax2.get_xticklabels():
        numbers = [int(m.group(1)) for m in (re.search(r"(\d+)\s*$", line) for line in label.get_text().split("\n")) if m]
        counts.append(numbers[0])
    plt.close(fig)
    if len(counts) != len(times):
        raise RuntimeError("risk table has %d ticks for %d times" % (len(counts), len(times)))
    return counts


def kaplan_meier(T, E):
    kmf = KaplanMeierFitter(label="km").fit(T, E)
    timeline = kmf.survival_function_.index.values
    ci = kmf.confidence_interval_
    median_ci = median_survival_times(kmf.confidence_interval_)
    # Times for the point look-ups: on and between timeline points, before the first event,
    # past the last duration.
    t_max = float(np.max(T))
    probe = sorted(
        set(
            [0.0, t_max, t_max * 1.5 + 1.0]
            + [float(np.quantile(T, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)]
            + [float(np.quantile(T, q)) + 0.5 for q in (0.3, 0.6)]
        )
    )
    survival_at = kmf.survival_function_at_times(probe)
    return {
        "timeline": floats(timeline),
        "survival": floats(kmf.survival_function_["km"].values),
        "ci_lower": floats(ci.iloc[:, 0].values),
        "ci_upper": floats(ci.iloc[:, 1].values),
        "at_risk": ints(kmf.event_table["at_risk"].values),
        "observed": ints(kmf.event_table["observed"].values),
        "censored": ints(kmf.event_table["censored"].values),
        "median": finite_or_none(kmf.median_survival_time_),
        "median_ci": [finite_or_none(median_ci.iloc[0, 0]), finite_or_none(median_ci.iloc[0, 1])],
        "survival_at": [[t, float(s)] for t, s in zip(probe, survival_at.values)],
        "at_risk_at": [[t, n] for t, n in zip(probe, at_risk_row(kmf, probe))],
    }


def log_rank(T, E, groups, name):
    results = []
    levels = np.unique(groups)
    if len(levels) == 2:
        a, b = groups == levels[0], groups == levels[1]
        r = logrank_test(T[a], T[b], event_observed_A=E[a], event_observed_B=E[b])
        results.append(
            {"group": name, "test": "logrank_test", "test_statistic": float(r.test_statistic),
             "p_value": float(r.p_value), "degrees_of_freedom": int(r.degrees_of_freedom)}
        )
    r = multivariate_logrank_test(T, groups, E)
    results.append(
        {"group": name, "test": "multivariate_logrank_test", "test_statistic": float(r.test_statistic),
         "p_value": float(r.p_value), "degrees_of_freedom": int(r.degrees_of_freedom)}
    )
    return results


def cox(T, E, covariates):
    df = pd.DataFrame(covariates)
    df["__T"] = T
    df["__E"] = E
    cph = CoxPHFitter()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cph.fit(df, "__T", "__E", show_progress=True)
    match = re.search(r"Convergence success after (\d+) iterations", printed.getvalue())
    if not match:
        raise RuntimeError("lifelines did not report convergence:\n" + printed.getvalue())
    summary = cph.summary
    names = list(covariates.keys())
    llr = cph.log_likelihood_ratio_test()
    return {
        "names": names,
        "params": floats(cph.params_[names].values),
        "standard_errors": floats(cph.standard_errors_[names].values),
        "hazard_ratios": floats(cph.hazard_ratios_[names].values),
        "ci_lower": floats(cph.confidence_intervals_.loc[names].iloc[:, 0].values),
        "ci_upper": floats(cph.confidence_intervals_.loc[names].iloc[:, 1].values),
        "z": floats(summary.loc[names, "z"].values),
        "p_values": floats(summary.loc[names, "p"].values),
        "concordance_index": float(cph.concordance_index_),
        "log_likelihood": float(cph.log_likelihood_),
        "log_likelihood_ratio_test": [float(llr.test_statistic), int(llr.degrees_freedom), float(llr.p_value)],
        "iterations": int(match.group(1)),
    }


def codes(values):
    """Integer codes of a grouping, in np.unique order (the order lifelines sorts groups in)."""
    _, inverse = np.unique(np.asarray(values), return_inverse=True)
    return inverse.astype(int)


def case(out_dir, name, T, E, groups=None, covariates=None, km=True):
    """Writes the inputs of one case and returns lifelines' results for it."""
    T = np.asarray(T, dtype=float)
    E = np.asarray(E, dtype=int)
    groups = groups or {}
    covariates = {k: np.asarray(v, dtype=float) for k, v in (covariates or {}).items()}
    columns = {"duration": T, "event": E}
    for g, values in groups.items():
        columns["group:" + g] = values
    for x, values in covariates.items():
        columns["x:" + x] = values
    # repr() of a float round-trips exactly, so the Rust side reads lifelines' very inputs.
    frame = pd.DataFrame(columns)
    with open(os.path.join(out_dir, name + ".csv"), "w") as f:
        f.write(",".join(frame.columns) + "\n")
        for row in frame.itertuples(index=False):
            f.write(",".join(repr(float(v)) if isinstance(v, float) else str(int(v)) for v in row) + "\n")
    result = {"name": name, "csv": name + ".csv", "logrank": []}
    if km:
        result["km"] = kaplan_meier(T, E)
    for g, values in groups.items():
        result["logrank"] += log_rank(T, E, np.asarray(values), g)
    if covariates:
        result["cox"] = cox(T, E, covariates)
    return result


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    cases = []

    w = datasets.load_waltons()
    cases.append(case(out_dir, "waltons", w["T"], w["E"], groups={"group": codes(w["group"])},
                      covariates={"miR-137": (w["group"] == "miR-137").astype(float)}))

    r = datasets.load_rossi()
    rossi_x = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
    cases.append(case(out_dir, "rossi", r["week"], r["arrest"], groups={"fin": codes(r["fin"])},
                      covariates={c: r[c] for c in rossi_x}))

    lung = datasets.load_lung().dropna(subset=["age", "sex", "ph.ecog"])
    cases.append(case(out_dir, "lung", lung["time"], lung["status"], groups={"sex": codes(lung["sex"])},
                      covariates={c: lung[c] for c in ["age", "sex", "ph.ecog"]}))

    g = datasets.load_gbsg2()
    gbsg2_x = {c: g[c] for c in ["age", "tsize", "pnodes", "progrec", "estrec"]}
    gbsg2_x["horTh"] = (g["horTh"] == "yes").astype(float)
    cases.append(case(out_dir, "gbsg2", g["time"], g["cens"],
                      groups={"horTh": codes(g["horTh"]), "tgrade": codes(g["tgrade"])}, covariates=gbsg2_x))

    lx = datasets.load_larynx()
    stage = 1 + lx["Stage_II"] + 2 * lx["Stage_III"] + 3 * lx["Stage_IV"]
    cases.append(case(out_dir, "larynx", lx["time"], lx["death"], groups={"stage": codes(stage)},
                      covariates={c: lx[c] for c in ["age", "Stage_II", "Stage_III", "Stage_IV"]}))

    dd = datasets.load_dd()
    cases.append(case(out_dir, "dd", dd["duration"], dd["observed"],
                      groups={"regime": codes(dd["regime"]), "democracy": codes(dd["democracy"])},
                      covariates={"democracy": (dd["democracy"] == "Democracy").astype(float),
                                  "start_year": dd["start_year"]}))

    k = datasets.load_kidney_transplant()
    kidney_group = k["black_male"] + 2 * k["white_male"] + 3 * k["black_female"]
    cases.append(case(out_dir, "kidney_transplant", k["time"], k["death"], groups={"race_sex": codes(kidney_group)},
                      covariates={c: k[c] for c in ["age", "black_male", "white_male", "black_female"]}))

    ly = datasets.load_lymphoma()
    cases.append(case(out_dir, "lymphoma", ly["Time"], ly["Censor"], groups={"stage": codes(ly["Stage_group"])}))

    # A cohort the size the benchmark extracts: integer day times (many ties of events and
    # censorings), three covariates, three arms. Seeded, and written out, so both sides see it.
    rng = np.random.default_rng(20240611)
    n = 3000
    age = rng.normal(62, 11, n).round()
    female = rng.integers(0, 2, n).astype(float)
    biomarker = rng.lognormal(0.0, 0.5, n)
    arm = rng.integers(0, 3, n)
    hazard = 0.002 * np.exp(0.03 * (age - 60) - 0.4 * female + 0.5 * np.log(biomarker) - 0.2 * arm)
    event_time = np.ceil(rng.exponential(1 / hazard))
    censor_time = np.ceil(rng.uniform(30, 1500, n))
    cases.append(case(out_dir, "synthetic_cohort", np.minimum(event_time, censor_time),
                      (event_time <= censor_time).astype(int), groups={"arm": arm},
                      covariates={"age": age, "female": female, "biomarker": biomarker}))

    # Edge cases.
    # Events up to the median, every later subject censored: the curve stays flat at its last
    # value, and the upper confidence bound never reaches 0.5.
    cases.append(case(out_dir, "censored_after_median",
                      [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
                      [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]))
    # The curve never reaches 0.5: no median (lifelines' inf).
    cases.append(case(out_dir, "median_never_reached",
                      [2, 3, 3, 5, 8, 8, 9, 12, 13, 20], [1, 0, 1, 0, 0, 1, 0, 0, 0, 0]))
    # Ties of events and censorings at the same times, events at time 0, and a last
    # observation that is an event (the curve drops to 0).
    cases.append(case(out_dir, "ties_events_censorings",
                      [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3.5, 3.5, 4, 4, 5, 5, 5, 6],
                      [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 1],
                      groups={"arm": [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]},
                      covariates={"x": [0.5, 1.2, -0.3, 2.0, 0.1, 0.0, 1.1, -1.0, 0.7, 0.3, 1.5, -0.2,
                                        0.9, 0.4, -0.6, 1.8, 0.2, 1.0]}))
    # Survival exactly 0.5 in exact arithmetic: lifelines' sum of logs lands on
    # 0.5000000000000001 for six subjects (its median is then the next time, 4) and on
    # 0.49999999999999983 for ten (median 5); the kernel must land on the same side.
    cases.append(case(out_dir, "median_on_exact_half_6", [1, 2, 3, 4, 5, 6], [1] * 6))
    cases.append(case(out_dir, "median_on_exact_half_10", list(range(1, 11)), [1] * 10))
    # One group, all followed to the event (no censoring).
    cases.append(case(out_dir, "single_group_uncensored",
                      [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5], [1] * 11))
    # lifelines' own CoxPHFitter docstring example: ties under Efron with a three-level covariate.
    cases.append(case(out_dir, "docstring_example",
                      [5, 3, 9, 8, 7, 4, 4, 3, 2, 5, 6, 7], [1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0],
                      groups={"var": [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2]},
                      covariates={"var": [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2],
                                  "age": [4, 3, 9, 8, 7, 4, 4, 3, 2, 5, 6, 7]}))

    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"lifelines": lifelines.__version__, "cases": cases}, f, allow_nan=False, indent=1)


def benchmark(path):
    """Seconds per KM + log-rank + Cox fit (best of five runs) on one cohort CSV."""
    import time

    df = pd.read_csv(path)
    T, E = df["duration"].values, df["event"].values
    groups = df[[c for c in df.columns if c.startswith("group:")][0]].values
    covariates = df[["duration", "event"] + [c for c in df.columns if c.startswith("x:")]]

    def run():
        kmf = KaplanMeierFitter().fit(T, E)
        lr = multivariate_logrank_test(T, groups, E)
        cph = CoxPHFitter().fit(covariates, "duration", "event")
        # concordance_index_ is computed on first access; the Rust side computes it in the fit.
        return kmf.median_survival_time_, lr.test_statistic, cph.concordance_index_

    run()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        median, statistic, c = run()
        best = min(best, time.perf_counter() - started)
    print("lifelines: median %s, log-rank %.3f, C %.4f" % (median, statistic, c))
    print("lifelines seconds: %.6f" % best)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--benchmark":
        benchmark(sys.argv[2])
    else:
        main()
