"""Comorbidity indices by comorbidipy 0.8 for the Rust oracle test.

    python comorbidipy_oracle.py INPUT.csv OUTPUT.json

INPUT.csv has id,code,age rows (codes without dots). OUTPUT.json holds, for every Charlson
and Elixhauser ICD-10 code map and weighting, each id's comorbidity_score (and, for the
Charlson weighting, age_adj_comorbidity_score and survival_10yr), and each id's HFRS score
and category.
"""
import json
import sys

import polars as pl
from comorbidipy import comorbidity, hfrs

source, target = sys.argv[1], sys.argv[2]
df = pl.read_csv(source, schema_overrides={"id": pl.Utf8, "code": pl.Utf8, "age": pl.Int64})
out = {"version": __import__("comorbidipy").__version__, "schemes": {}, "hfrs": {}}
schemes = [("charlson", v, w) for v in ("quan", "swedish", "australian", "shmi")
           for w in ("charlson", "quan", "shmi", "shmi_modified")]
schemes += [("elixhauser", "quan", w) for w in ("van_walraven", "swiss")]
for score, variant, weighting in schemes:
    age = "age" if (score, weighting) == ("charlson", "charlson") else None
    result = comorbidity(df, id_col="id", code_col="code", age_col=age, score=score,
                         icd="icd10", variant=variant, weighting=weighting, assign0=True)
    rows = {}
    for row in result.iter_rows(named=True):
        entry = {"score": row["comorbidity_score"]}
        if age:
            entry["age_adj"] = row["age_adj_comorbidity_score"]
            entry["survival_10yr"] = row["survival_10yr"]
        rows[row["id"]] = entry
    out["schemes"][f"{score}/{variant}/{weighting}"] = rows
for row in hfrs(df, id_col="id", code_col="code").iter_rows(named=True):
    out["hfrs"][row["id"]] = {"score": row["hfrs_score"], "category": row["hfrs_category"]}
json.dump(out, open(target, "w"))
