#!/usr/bin/env bash
# The HIM views on Apache Spark (local mode) and DuckDB against `chartroom sql`:
#   bench/spark/run.sh DATA_DIR [PARQUET_DIR]
# Installs what it needs: Debian's openjdk-17-jre-headless when java is missing, and a venv
# with pyspark and duckdb (bench/spark/requirements.txt) under target/bench-tools.
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${1:?usage: bench/spark/run.sh DATA_DIR [PARQUET_DIR]}"
parquet="${2:-$data/parquet}"
if ! command -v java >/dev/null; then
    sudo=; if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
tools="$PWD/target/bench-tools"
if [ ! -x "$tools/spark-venv/bin/python" ]; then
    python3 -m venv "$tools/spark-venv"
fi
"$tools/spark-venv/bin/pip" install --quiet --disable-pip-version-check -r bench/spark/requirements.txt
cargo build --release -q -p chartroom
chartroom="$PWD/target/release/chartroom"
started=$(date +%s.%N)
"$chartroom" view export --data "$data" --out "$parquet"
echo "export: $(echo "$(date +%s.%N) - $started" | bc) s"
"$tools/spark-venv/bin/python" bench/spark/run_views.py "$chartroom" "$data" "$parquet"
