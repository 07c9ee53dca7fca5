#!/usr/bin/env python3
"""Quality and speed of two peer record-linkage tools on the FEBRL data sets.

Runs Splink 5 (DuckDB backend) and recordlinkage 0.16 (ECM classifier) as
deduplication tasks on febrl1 and febrl2, and prints one JSON object so that
`chartroom mpi eval` can be reported beside them in BENCHMARKS.md.

Each tool is configured after its own FEBRL examples, not tuned on the
truth: the point is to show what a user of that tool gets by following
its documentation.

Quality is measured over ALL true pairs: a true pair that blocking never
generates counts as a miss, exactly as it would for Chartroom.

Usually started through linkage_peers.sh, which prepares the pinned
environment.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

DATASETS = ("febrl1", "febrl2")
RUNS = 3  # seconds are reported as the best of this many runs

Pair = tuple[str, str]


# --------------------------------------------------------------------------
# Truth and scoring
# --------------------------------------------------------------------------


def norm(a: str, b: str) -> Pair:
    """Pairs are unordered: (a, b) and (b, a) must compare equal."""
    return (a, b) if a < b else (b, a)


def read_truth(path: Path) -> set[Pair]:
    with path.open(newline="") as f:
        truth = {norm(r["rec_id_1"], r["rec_id_2"]) for r in csv.DictReader(f)}
    if not truth:
        raise SystemExit(f"no true pairs in {path}")
    return truth


def ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def f1_of(tp: int, predicted: int, true: int) -> float:
    # 2PR/(P+R) simplifies to 2tp/(predicted+true) and is 0 when nothing is
    # predicted.
    return ratio(2 * tp, predicted + true)


def best_f1(scored: list[tuple[float, bool]], n_true: int) -> tuple[float, float | None]:
    """Best F1 over every threshold t, predicting a pair when score >= t.

    Sweeps the distinct scores from high to low; pairs with equal scores are
    admitted together, since no threshold can split them.
    """
    scored = sorted(scored, key=lambda s: s[0], reverse=True)
    best, best_t = 0.0, None
    tp = 0
    i = 0
    while i < len(scored):
        t = scored[i][0]
        while i < len(scored) and scored[i][0] == t:
            tp += scored[i][1]
            i += 1
        f1 = f1_of(tp, i, n_true)
        if f1 > best:
            best, best_t = f1, t
    return best, best_t


def score(
    candidates: Iterable[Pair],
    predicted: Iterable[Pair],
    probabilities: dict[Pair, float] | None,
    truth: set[Pair],
) -> dict:
    cand = set(candidates)
    pred = set(predicted)
    tp = len(pred & truth)
    out = {
        "candidates": len(cand),
        # Share of true pairs that survive blocking: the ceiling on recall.
        "blocking_recall": round(ratio(len(cand & truth), len(truth)), 4),
        "predicted": len(pred),
        "true": len(truth),
        "tp": tp,
        "precision": round(ratio(tp, len(pred)), 4),
        "recall": round(ratio(tp, len(truth)), 4),
        "f1": round(f1_of(tp, len(pred), len(truth)), 4),
        "best_f1": None,
        "best_threshold": None,
    }
    if probabilities is not None:
        b, t = best_f1([(p, k in truth) for k, p in probabilities.items()], len(truth))
        out["best_f1"] = round(b, 4)
        out["best_threshold"] = t
    return out


def comparable(sc: dict) -> dict:
    """A score with its threshold cut to 9 significant digits: DuckDB's
    parallel sums may change the last bits of a probability between runs,
    which is not a difference in the result."""
    t = sc["best_threshold"]
    return {**sc, "best_threshold": None if t is None else f"{t:.9g}"}


def timed(fn: Callable[[], dict]) -> tuple[list[dict], list[float]]:
    """Run fn RUNS times; return every result and every wall time."""
    results, times = [], []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        results.append(fn())
        times.append(time.perf_counter() - t0)
    return results, times


# --------------------------------------------------------------------------
# Splink 5, DuckDB backend
# --------------------------------------------------------------------------
#
# Settings follow Splink's own FEBRL deduplication demo,
# docs/demos/examples/duckdb/febrl3.nb.py (published as febrl3.ipynb), which
# is the dedupe_only FEBRL notebook; febrl4 is a link_only task.


def splink_load(csv_path: Path):
    """Read a FEBRL file into an Arrow table (outside the timed section).

    Every column is read as text so postcodes, dates and ids keep leading
    zeros, as the demo does by casting date_of_birth and soc_sec_id to
    trimmed varchar; empty cells become NULL, which Splink's null levels
    expect.
    """
    import duckdb

    con = duckdb.connect()
    rel = con.read_csv(str(csv_path), header=True, all_varchar=True)
    cols = ", ".join(f"nullif(trim({c}), '') as {c}" for c in rel.columns)
    return con.sql(f"select {cols} from rel").to_arrow_table()


def splink_run(table) -> dict:
    import duckdb
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    # A fresh connection per run, so no run reuses another's cached tables.
    db_api = DuckDBAPI(connection=duckdb.connect())
    df_sdf = db_api.register(table)

    blocking_rules = [
        block_on("soc_sec_id"),
        block_on("given_name"),
        block_on("surname"),
        block_on("date_of_birth"),
        block_on("postcode"),
    ]
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking_rules,
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison(
                "date_of_birth",
                input_is_string=True,
                datetime_format="%Y%m%d",
            ),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=True,
    )
    linker = Linker(df_sdf, settings, log_level=logging.WARNING)

    deterministic_rules = [
        block_on("soc_sec_id"),
        block_on("given_name", "surname", "date_of_birth"),
        "l.given_name = r.surname and l.surname = r.given_name "
        "and l.date_of_birth = r.date_of_birth",
    ]
    linker.training.estimate_probability_two_random_records_match(
        deterministic_rules, recall=0.9
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("date_of_birth")
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("postcode")
    )

    # No threshold: every blocked pair comes back with its probability, which
    # gives the candidate count and the threshold sweep from one prediction.
    predictions = linker.inference.predict()
    rows = (
        predictions.as_duckdbpyrelation()
        .select("rec_id_l, rec_id_r, match_probability")
        .fetchall()
    )
    probs = {norm(a, b): float(p) for a, b, p in rows}
    return {
        "candidates": list(probs),
        "predicted": [k for k, p in probs.items() if p >= 0.5],
        "probabilities": probs,
    }


# --------------------------------------------------------------------------
# recordlinkage 0.16, ECM classifier
# --------------------------------------------------------------------------
#
# Indexing and comparisons follow recordlinkage's FEBRL deduplication example
# (examples/dedup_deterministic.py, on febrl3), with two changes so that its
# features suit the unsupervised ECM classifier and use the same evidence as
# Splink: string comparisons use Jaro-Winkler (the example's names use it,
# its addresses default to Levenshtein), and exact comparisons of postcode,
# street_number and soc_sec_id are added. ECM wants binary features, and
# every comparison below is thresholded or exact, so none need binarising.


def rl_load(csv_path: Path):
    import pandas as pd

    # Text throughout (leading zeros matter); empty cells become NaN, which
    # recordlinkage blocks and compares as missing.
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
    df = df.apply(lambda s: s.str.strip()).replace("", float("nan"))
    return df.set_index("rec_id")


def rl_run(df) -> dict:
    import recordlinkage as rl
    from recordlinkage.compare import Exact, String
    from recordlinkage.index import Block

    indexer = rl.Index()
    indexer.add(Block("given_name"))
    indexer.add(Block("surname"))
    indexer.add(Block("soc_sec_id"))
    candidate_links = indexer.index(df)

    comparer = rl.Compare()
    jw = dict(method="jarowinkler", threshold=0.85)
    comparer.add(String("given_name", "given_name", label="given_name", **jw))
    comparer.add(String("surname", "surname", label="surname", **jw))
    comparer.add(Exact("date_of_birth", "date_of_birth", label="date_of_birth"))
    comparer.add(Exact("soc_sec_id", "soc_sec_id", label="soc_sec_id"))
    comparer.add(Exact("street_number", "street_number", label="street_number"))
    comparer.add(String("address_1", "address_1", label="address_1", **jw))
    comparer.add(String("address_2", "address_2", label="address_2", **jw))
    comparer.add(Exact("suburb", "suburb", label="suburb"))
    comparer.add(Exact("postcode", "postcode", label="postcode"))
    comparer.add(Exact("state", "state", label="state"))
    features = comparer.compute(candidate_links, df)

    ecm = rl.ECMClassifier()
    ecm.fit(features)
    matches = ecm.predict(features)
    prob = ecm.prob(features)

    return {
        "candidates": [norm(a, b) for a, b in candidate_links],
        "predicted": [norm(a, b) for a, b in matches],
        "probabilities": {norm(a, b): float(p) for (a, b), p in prob.items()},
    }


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return f"{platform.system()} {platform.machine()}, {model}, {os.cpu_count()} cores{mem}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--febrl-dir", required=True, type=Path)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    # Library chatter goes to stderr at most; stdout carries only the JSON.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    import recordlinkage
    import splink

    tools = {
        "splink": (splink_load, splink_run),
        "recordlinkage": (rl_load, rl_run),
    }

    results = []
    for name in DATASETS:
        csv_path = args.febrl_dir / f"{name}.csv"
        truth = read_truth(args.febrl_dir / f"{name}_true_pairs.csv")
        for tool, (load, run) in tools.items():
            data = load(csv_path)
            outs, times = timed(functools.partial(run, data))
            scores = [
                score(o["candidates"], o["predicted"], o["probabilities"], truth)
                for o in outs
            ]
            row = {"dataset": name, "tool": tool}
            row.update(scores[0])
            row["seconds"] = round(min(times), 3)
            row["seconds_runs"] = [round(t, 3) for t in times]
            # Both pipelines are deterministic (Splink's u sampling is seeded,
            # ECM starts from fixed values), so every run should score the
            # same; if not, the quality figures are one draw of several.
            row["stable_across_runs"] = all(
                comparable(sc) == comparable(scores[0]) for sc in scores[1:]
            )
            results.append(row)
            print(
                f"{name} {tool}: f1={row['f1']} best_f1={row['best_f1']} "
                f"seconds={row['seconds']}",
                file=sys.stderr,
            )

    report = {
        "machine": machine(),
        "python": platform.python_version(),
        "splink": splink.__version__,
        "recordlinkage": recordlinkage.__version__,
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
