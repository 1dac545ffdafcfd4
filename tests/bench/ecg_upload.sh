#!/usr/bin/env bash
# ECG upload benchmark: POST /api/v1/ecg → durable → 201, 50 concurrent connections, against a
# release `huren serve --demo` on a fresh store. Prints wrk's throughput and latency
# percentiles. Usage: [HUREN_BIN=path] tests/bench/ecg_upload.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
conns=${2:-50}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
# HUREN_BIN runs a given build (for A/B runs); by default the release build of this tree.
bin=${HUREN_BIN:-}
if [ -z "$bin" ]; then cargo build --release --quiet; bin=target/release/huren; fi
data=$(mktemp -d)
out=$(mktemp)
"$bin" serve --demo --data "$data/store" --http 127.0.0.1:0 --mllp 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$out"' EXIT
for _ in $(seq 100); do grep -q "\"demo_token\":" "$out" && break; sleep 0.1; done
addr=$(grep '"listening":"http"' "$out" | sed 's/.*"addr":"\([^"]*\)".*/\1/')
HUREN_TOKEN=$(grep "\"demo_token\":" "$out" | sed 's/.*"demo_token":"\([^"]*\)".*/\1/')
export HUREN_TOKEN HUREN_ECG=fixtures/ecg/aecg-zh-patient.xml
echo "ECG upload: $(wc -c <"$HUREN_ECG") bytes aECG (12 leads, 10 s), $conns connections, ${secs}s"
# Warm-up (not reported): the first seconds on a fresh store and a cold process show
# one-off stalls (page faults, file growth) that are not the steady state.
HUREN_UID_SALT=0000 wrk -t2 -c"$conns" -d"${WARMUP:-5}s" -s tests/bench/ecg_upload.lua \
  "http://$addr" >/dev/null 2>&1
wrk -t2 -c"$conns" -d"${secs}s" --latency -s tests/bench/ecg_upload.lua "http://$addr"
