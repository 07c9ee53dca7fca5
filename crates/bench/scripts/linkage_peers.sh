#!/usr/bin/env bash
# Benchmark the peer record-linkage tools (Splink 5 on DuckDB, recordlinkage
# 0.16 with ECM) on the FEBRL deduplication data sets, for comparison with
# `chartroom mpi eval` in BENCHMARKS.md.
#
# Usage: linkage_peers.sh [FEBRL_DIR] [OUT_JSON]
#   FEBRL_DIR  holds febrl{1,2}.csv and febrl{1,2}_true_pairs.csv
#              (default: ../shared/data/febrl relative to the repo root).
#              The data is read in place and never copied into the repo.
#   OUT_JSON   if given, the JSON report is also written there.
#
# The report goes to stdout; progress and library warnings go to stderr.
#
# The tools live in a virtual environment under target/ (never committed,
# removed by `cargo clean`), created on first use from the exact pins in
# linkage-requirements.txt and rebuilt only when that file changes.
set -euo pipefail

die() {
    echo "linkage_peers.sh: $*" >&2
    exit 1
}

script_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# crates/bench/scripts -> repo root, so the script works from any cwd.
repo_root=$(cd -- "$script_dir/../../.." && pwd)

febrl_dir=${1:-$repo_root/../shared/data/febrl}
out_json=${2:-}
[ $# -le 2 ] || die "usage: linkage_peers.sh [FEBRL_DIR] [OUT_JSON]"

[ -d "$febrl_dir" ] || die "FEBRL directory not found: $febrl_dir"
for f in febrl1.csv febrl1_true_pairs.csv febrl2.csv febrl2_true_pairs.csv; do
    [ -s "$febrl_dir/$f" ] || die "missing or empty: $febrl_dir/$f"
done

requirements=$script_dir/linkage-requirements.txt
[ -f "$requirements" ] || die "missing $requirements"

venv=$repo_root/target/bench-tools/linkage-venv
py=$venv/bin/python

if [ ! -x "$py" ]; then
    command -v python3 >/dev/null || die "python3 not found"
    # The pins include numpy 2.4, which needs Python 3.11 or newer.
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "python3 >= 3.11 required, found $(python3 --version 2>&1)"
    echo "creating $venv" >&2
    mkdir -p -- "$(dirname -- "$venv")"
    python3 -m venv -- "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi

# Reinstall only when the pins change: the hash of the requirements file is
# stored in the venv after a successful install and checked on every run.
stamp=$venv/.requirements.sha256
want=$(sha256sum -- "$requirements" | cut -d' ' -f1)
if [ "$(cat -- "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "installing $requirements into $venv" >&2
    rm -f -- "$stamp"
    "$py" -m pip install --disable-pip-version-check --no-input -r "$requirements" >&2 ||
        die "pip install failed"
    # A resolver conflict would otherwise only surface as odd numbers later.
    "$py" -m pip check >&2 || die "pip check failed: inconsistent environment"
    echo "$want" >"$stamp"
fi

args=(--febrl-dir "$febrl_dir")
if [ -n "$out_json" ]; then
    args+=(--out "$out_json")
fi
exec "$py" "$script_dir/linkage_peers.py" "${args[@]}"
