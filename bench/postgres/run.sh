#!/usr/bin/env bash
# PostgreSQL beside SQLite on the same machine, through the real binary over loopback:
#   bench/postgres/run.sh [PATIENTS]        (default 2000 patients, about 250,000 resources)
# - import (resources/s): `chartroom import` of one generated population into each backend;
# - GET Patient/[id] and searches: p50/p99 with one connection, req/s with 16 (wrk);
# - writes (POST Observation, 16 connections per server) with 1 SQLite server, and 1, 2 and 4
#   servers against one PostgreSQL record.
# Needs wrk (Debian package, installed when missing) and starts its own PostgreSQL
# (.ci/postgres) unless CHARTROOM_TEST_POSTGRES names one.
set -euo pipefail
cd "$(dirname "$0")/../.."
patients="${1:-2000}"
work="${BENCH_WORK:-/tmp/chartroom-pg-bench}"
seconds="${BENCH_SECONDS:-10}"
if ! command -v wrk >/dev/null; then
    sudo=; if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
url="${CHARTROOM_TEST_POSTGRES:-$(.ci/postgres)}"
cargo build --release -q -p chartroom
bin="$PWD/target/release/chartroom"
rm -rf "$work"; mkdir -p "$work"
psql "$url" -qc "DROP SCHEMA IF EXISTS bench CASCADE" 2>/dev/null || true

"$bin" generate --patients "$patients" --out "$work/population" >/dev/null
echo "## import ($patients patients)"
"$bin" import "$work/population" --data "$work/sqlite" --quiet --validation warn 2>/dev/null | tail -1 | sed 's/^/sqlite:     /'
"$bin" import "$work/population" --data "$work/pg-import" --store "$url" --store-schema bench --quiet --validation warn 2>/dev/null | tail -1 | sed 's/^/postgres:   /'

ids="$(ls "$work/population" | grep -i '^patient' | head -1)"
python3 - "$work/population/$ids" "$work/ids.lua" <<'PY'
import json, sys
ids = [json.loads(line)["id"] for line in open(sys.argv[1]) if line.strip()]
with open(sys.argv[2], "w") as out:
    out.write("ids = {" + ",".join(f'"{i}"' for i in ids) + "}\n")
    out.write("n = 0\nrequest = function()\n  n = n + 7919\n  return wrk.format('GET', '/fhir/Patient/' .. ids[(n % #ids) + 1])\nend\n")
PY
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
wrk.body = '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}'
LUA

serve() { # data-dir [store args...] -> prints port
    local data="$1"; shift
    "$bin" serve --data "$data" --port 0 --insecure-no-auth "$@" > "$data.banner" 2> "$data.log" &
    echo $! >> "$work/pids"
    for _ in $(seq 100); do
        if grep -q http:// "$data.banner" 2>/dev/null; then break; fi
        sleep 0.1
    done
    grep -o 'http://[^/]*' "$data.banner" | head -1 | sed 's|http://[^:]*:||'
}
stop_all() { # the servers run in subshells, not as this shell's jobs: wait until each is gone
    if [ -f "$work/pids" ]; then
        for pid in $(cat "$work/pids"); do
            kill "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        done
        rm -f "$work/pids"
    fi
}
trap stop_all EXIT
latency() { # port path-or-script
    local port="$1" what="$2"
    if [ -f "$what" ]; then
        wrk -t1 -c1 -d"${seconds}s" --latency -s "$what" "http://127.0.0.1:$port" 
    else
        wrk -t1 -c1 -d"${seconds}s" --latency "http://127.0.0.1:$port$what"
    fi | awk '/ 50%/{p50=$2} / 99%/{p99=$2} /Requests\/sec/{rps=$2} END{printf "p50 %s p99 %s (%s req/s, 1 connection)", p50, p99, rps}'
}
throughput() { # port script-or-path connections
    local port="$1" what="$2" connections="$3"
    if [ -f "$what" ]; then
        wrk -t2 -c"$connections" -d"${seconds}s" -s "$what" "http://127.0.0.1:$port"
    else
        wrk -t2 -c"$connections" -d"${seconds}s" "http://127.0.0.1:$port$what"
    fi | awk '/Requests\/sec/{print $2}'
}

sqlite_port="$(serve "$work/sqlite")"
pg_port="$(serve "$work/pg-a" --store "$url" --store-schema bench)"
family="$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['name'][0]['family'])" "$work/population/$ids")"
echo "## reads and searches"
for backend in sqlite pg; do
    port="${backend}_port"; port="${!port}"
    echo "$backend GET Patient/[id]: $(latency "$port" "$work/ids.lua"); $(throughput "$port" "$work/ids.lua" 16) req/s with 16 connections"
    for search in "/fhir/Patient?family=$family" "/fhir/Observation?code=http://loinc.org|8867-4&_count=50" "/fhir/Condition?clinical-status=active&_count=50" "/fhir/Encounter?date=ge2020-01-01&_count=50"; do
        echo "$backend GET $search: $(latency "$port" "$search")"
    done
done
stop_all

echo "## writes (POST Observation, 16 connections per server, ${seconds} s)"
sqlite_port="$(serve "$work/sqlite")"
echo "sqlite, 1 server: $(throughput "$sqlite_port" "$work/post.lua" 16) writes/s"
stop_all
for servers in 1 2 4; do
    ports=()
    for n in $(seq "$servers"); do ports+=("$(serve "$work/pg-w$servers-$n" --store "$url" --store-schema bench)"); done
    loads=()
    for port in "${ports[@]}"; do
        throughput "$port" "$work/post.lua" 16 > "$work/w-$port" &
        loads+=($!)
    done
    wait "${loads[@]}"
    total="$(cat "$work"/w-* | awk '{s+=$1} END{printf "%.0f", s}')"
    rm -f "$work"/w-*
    echo "postgres, $servers server(s): $total writes/s"
    stop_all
done
