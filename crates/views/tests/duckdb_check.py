# pins (installed by .ci/run from tests/requirements.txt): duckdb==1.1.3 pyarrow==18.1.0 pandas==2.2.3
"""Reads the Parquet of the observations and patients views with pyarrow, DuckDB and pandas.

Usage: duckdb_check.py OBSERVATIONS.parquet PATIENTS.parquet EXPECTED.json
Exits 1 naming every difference from EXPECTED (computed by tests/duckdb.rs).
"""
import json
import os
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

observations, patients, expected_path = sys.argv[1:4]
with open(expected_path, encoding="utf-8") as f:
    expected = json.load(f)
failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, expected {want!r}")


utc = pa.timestamp("us", tz="UTC")
for path, column, want in [
    (observations, "effective", utc),
    (observations, "issued", utc),
    (patients, "birth_date", pa.date32()),
    (patients, "deceased_date", utc),
]:
    check(f"pyarrow type of {column}", pq.read_schema(path).field(column).type, want)


def sql_path(path):
    return "'" + path.replace("'", "''") + "'"


db = duckdb.connect()
# date_trunc on a TIMESTAMP WITH TIME ZONE works in the session's zone, which is the machine's
# unless set. The truncated value is read back as text: as a Python datetime it needs pytz.
db.execute("SET TimeZone = 'UTC'")
years = db.execute(
    "SELECT CAST(y AS VARCHAR), n FROM ("
    f"SELECT date_trunc('year', effective) AS y, count(*) AS n FROM {sql_path(observations)} GROUP BY y)"
).fetchall()
check("observations by year", dict(years), dict(map(tuple, expected["effective_years"])))
births = db.execute(
    f"SELECT year(birth_date) AS y, count(*) FROM {sql_path(patients)} GROUP BY y"
).fetchall()
check("patients by birth year", dict(births), dict(map(tuple, expected["birth_years"])))
# Closed here rather than at interpreter exit, where DuckDB's worker threads can still be
# running when the C++ runtime tears down ("terminate called without an active exception").
db.close()

# pandas: the columns arrive as datetimes, so .dt works without parsing or casting.
import pandas as pd

frame = pd.read_parquet(observations)
check("pandas dtype of effective", str(frame["effective"].dtype), "datetime64[us, UTC]")
by_year = {int(y): int(n) for y, n in frame["effective"].dt.year.value_counts().items()}
want_years = {int(str(k)[:4]): n for k, n in map(tuple, expected["effective_years"]) if k is not None}
check("pandas observations by year", by_year, want_years)
born = pd.read_parquet(patients)["birth_date"]
check("pandas birth_date is a date", type(born.dropna().iloc[0]).__name__, "date")

if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
print(f"ok: {len(years)} effective years, {len(births)} birth years")
# Everything is checked. Leave without the interpreter's teardown of DuckDB's and Arrow's
# native thread pools, which is not what this checks and which, on a loaded machine, has
# aborted the process after the checks passed.
sys.stdout.flush()
os._exit(0)
