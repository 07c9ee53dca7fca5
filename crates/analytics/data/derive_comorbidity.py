"""Writes comorbidity.tsv, the compact form of the comorbidity maps Chartroom embeds, from the
published tables in ../shared/data/comorbidity (mappings.tsv, weights.tsv).

    python3 crates/analytics/data/derive_comorbidity.py ../shared/data/comorbidity > crates/analytics/data/comorbidity.tsv

Only the ICD-10 maps are kept (the record is coded in ICD-10-CM). Lines, tab-separated:
    map     SCORE_NAME  CATEGORY  PREFIX,PREFIX,...      (code without dot starts with a prefix)
    weight  SCORE_NAME  WEIGHTING CATEGORY  WEIGHT
    hfrs    CODE3       WEIGHT                            (first three characters equal)
"""
import csv
import sys
from collections import OrderedDict

source = sys.argv[1]
maps = OrderedDict()
for row in csv.DictReader(open(f"{source}/mappings.tsv"), delimiter="\t"):
    if row["score"] in ("charlson", "elixhauser") and row["icd"] == "icd10":
        maps.setdefault((row["score_name"], row["category"]), []).append(row["code_prefix"])
print("# Derived from ../shared/data/comorbidity by derive_comorbidity.py; see PROVENANCE.md")
for (name, category), prefixes in maps.items():
    print(f"map\t{name}\t{category}\t{','.join(prefixes)}")
for row in csv.DictReader(open(f"{source}/weights.tsv"), delimiter="\t"):
    if row["score_name"] == "hfrs":
        print(f"hfrs\t{row['category']}\t{row['weight']}")
    elif "icd10" in row["score_name"]:
        print(f"weight\t{row['score_name']}\t{row['weighting']}\t{row['category']}\t{row['weight']}")
