"""The HIM views' SQL on Apache Spark (local mode) and DuckDB, over the Hive-partitioned
Parquet that `chartroom view export` writes, checked against `chartroom sql` over the same
record: every query must give the same rows on all three.

    bench/spark/run.sh DATA_DIR          # makes the venv (pyspark, duckdb), exports, runs this

Prints, per view, its rows and seconds on each engine, then each query's agreement.
Exit status 1 if any answer differs.
"""

import json
import os
import subprocess
import sys
import time

CHARTROOM, DATA, PARQUET = sys.argv[1], sys.argv[2], sys.argv[3]

VIEWS = [
    "patients", "encounters", "encounter_diagnoses", "diagnoses", "procedures",
    "observations", "medications", "immunizations", "claims", "claim_lines",
]

# What an HIM department asks of the views: counts, case mix, coding, length of stay, billing.
# Written once in SQL that SQLite (chartroom sql), Spark SQL and DuckDB all read.
QUERIES = {
    "encounters_by_class": "SELECT class, count(*) AS n FROM encounters GROUP BY class",
    "discharges_by_disposition": (
        "SELECT discharge_disposition, count(*) AS n FROM encounters "
        "WHERE discharge_disposition IS NOT NULL GROUP BY discharge_disposition"
    ),
    "inpatient_days": (
        "SELECT count(*) AS stays, sum(length_of_stay_days) AS days FROM encounters "
        "WHERE class = 'IMP' AND length_of_stay_days IS NOT NULL"
    ),
    "top_diagnoses": (
        "SELECT icd10cm_code, count(*) AS n FROM diagnoses WHERE icd10cm_code IS NOT NULL "
        "GROUP BY icd10cm_code ORDER BY n DESC, icd10cm_code LIMIT 20"
    ),
    "uncoded_diagnoses": "SELECT count(*) AS n FROM diagnoses WHERE icd10cm_code IS NULL",
    "principal_diagnoses_per_encounter": (
        "SELECT rank, count(*) AS n FROM encounter_diagnoses GROUP BY rank"
    ),
    "patients_by_gender": "SELECT gender, count(*) AS n FROM patients GROUP BY gender",
    "deceased_patients": "SELECT count(*) AS n FROM patients WHERE deceased = true",
    "claims_by_status": "SELECT status, count(*) AS n FROM claims GROUP BY status",
    "claim_lines_net": (
        "SELECT count(*) AS lines, round(sum(net), 2) AS net FROM claim_lines WHERE net IS NOT NULL"
    ),
    "vaccines": "SELECT cvx_code, count(*) AS n FROM immunizations GROUP BY cvx_code",
    "medications_by_status": "SELECT status, count(*) AS n FROM medications GROUP BY status",
    "procedures_per_encounter": (
        "SELECT count(DISTINCT encounter_id) AS encounters, count(*) AS n FROM procedures"
    ),
    "observations_with_value": "SELECT count(*) AS n FROM observations WHERE value IS NOT NULL",
}


def normal(rows):
    """Rows as sorted tuples of plain values (floats rounded), comparable across engines."""
    out = []
    for row in rows:
        values = []
        for value in row:
            if isinstance(value, bool):
                values.append(int(value))
            elif isinstance(value, float):
                values.append(round(value, 4))
            elif value is not None and hasattr(value, "__float__") and not isinstance(value, int):
                values.append(round(float(value), 4))
            else:
                values.append(value)
        out.append(tuple(values))
    return sorted(out, key=lambda r: tuple((v is None, str(v)) for v in r))


def chartroom_sql(query):
    done = subprocess.run(
        [CHARTROOM, "sql", "--data", DATA, "--format", "json", query],
        check=True, capture_output=True, text=True,
    )
    objects = json.loads(done.stdout)
    return [tuple(o.values()) for o in objects]


def main():
    from pyspark.sql import SparkSession
    import duckdb

    spark = (
        SparkSession.builder.master("local[2]").appName("chartroom-views")
        .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    duck = duckdb.connect()
    print(f"{'view':<20} {'rows (chartroom)':>16} {'rows (Spark)':>12} {'s (Spark)':>9} {'rows (DuckDB)':>13} {'s (DuckDB)':>10}")
    differences = 0
    for view in VIEWS:
        path = os.path.join(PARQUET, view)
        expected = chartroom_sql(f"SELECT count(*) AS n FROM {view}")[0][0]
        started = time.time()
        frame = spark.read.parquet(path)
        frame.createOrReplaceTempView(view)
        spark_rows = frame.count()
        spark_seconds = time.time() - started
        started = time.time()
        duck.execute(
            f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM "
            f"read_parquet('{path}/**/*.parquet', hive_partitioning = true)"
        )
        duck_rows = duck.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
        duck_seconds = time.time() - started
        same = expected == spark_rows == duck_rows
        differences += not same
        print(f"{view:<20} {expected:>16} {spark_rows:>12} {spark_seconds:>9.2f} {duck_rows:>13} {duck_seconds:>10.2f}{'' if same else '  DIFFERENT'}")
    print()
    for name, query in QUERIES.items():
        expected = normal(chartroom_sql(query))
        started = time.time()
        on_spark = normal([tuple(r) for r in spark.sql(query).collect()])
        spark_seconds = time.time() - started
        on_duck = normal(duck.execute(query).fetchall())
        same = expected == on_spark == on_duck
        differences += not same
        print(f"{name:<36} {len(expected):>4} rows  Spark {spark_seconds:5.2f} s  {'same on all three' if same else 'DIFFERENT'}")
        if not same:
            print(f"  chartroom {expected[:5]}\n  spark     {on_spark[:5]}\n  duckdb    {on_duck[:5]}")
    spark.stop()
    print(f"\n{differences} differences")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
