#!/usr/bin/env bash
# FHIRPath throughput: Chartroom's engine against fhirpath.js (npm `fhirpath`) on one workload.
# Installs fhirpath.js into target/fhirpath-js (not committed), builds the release binary, runs both.
# Usage: bench/fhirpath-js/run.sh [FHIR_DIR] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
fhir_dir=$(realpath "${1:-../shared/fhir-r4}")
seconds=${2:-10}
work=target/fhirpath-js
mkdir -p "$work"
if [ ! -d "$work/node_modules/fhirpath" ]; then
  (cd "$work" && npm install --silent --no-audit --no-fund fhirpath >/dev/null)
fi
cargo build --release --quiet -p chartroom-bench
echo "== fhirpath.js"
NODE_PATH="$work/node_modules" node bench/fhirpath-js/bench.js "$fhir_dir" "$seconds" "$work/excluded-pairs.txt" | tee "$work/fhirpath-js.txt"
echo "== chartroom (same pairs)"
./target/release/chartroom-bench fhirpath --fhir-dir "$fhir_dir" --seconds "$seconds" --exclude-pairs "$work/excluded-pairs.txt" | tee "$work/chartroom.txt"
ours=$(grep -o '= [0-9]* evaluations/s' "$work/chartroom.txt" | grep -o '[0-9]*')
theirs=$(grep -o '= [0-9]* evaluations/s' "$work/fhirpath-js.txt" | grep -o '[0-9]*')
echo "== ratio: chartroom / fhirpath.js = $(python3 -c "print(round($ours / $theirs, 1))")x"
