#!/usr/bin/env bash
# Web page benchmark (web page issue): the timeline of a patient with 200 results in the
# 1M-report store of tests/bench/results_query.sh (run that first; it generates and caches
# the store), over HTTPS. Prints the server's latency under wrk (1 and 8 connections) and the
# first render in headless chromium (TTFB, first contentful paint, page weight).
# Usage: tests/bench/web_timeline.sh [REPORTS] [PATIENTS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
reports=${1:-1000000}
patients=${2:-5000}
secs=${3:-10}
bench=target/bench-results-$reports-$patients
grep -qx "secret=bench-national-id-secret" "$bench/store/generated" 2>/dev/null || { echo "run tests/bench/results_query.sh $reports $patients first" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet
out=$(mktemp); jar=$(mktemp)
target/release/huren serve --config "$bench/huren.toml" --data "$bench/store" \
  --http 127.0.0.1:0 --mllp 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out" "$jar"' EXIT
for _ in $(seq 300); do grep -q '"listening":"https"' "$out" && break; sleep 0.1; done
addr=$(grep '"listening":"https"' "$out" | sed 's/.*"addr":"\([^"]*\)".*/\1/')
base="https://$addr"
curl -sk -c "$jar" -b "$jar" -o /dev/null -d "token=bench-token" "$base/ui/login"
csrf=$(curl -sk -c "$jar" -b "$jar" "$base/ui/search" | grep -o 'name="csrf" value="[0-9a-f]*' | head -1 | cut -d'"' -f4)
page=$(curl -sk -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' \
  -d "csrf=$csrf&by=national&national_id=990120190000000000&auth_kind=health_card&auth_code=1" "$base/ui/search")
session=$(awk '$6=="huren_session"{print $7}' "$jar")
n=$(curl -sk -b "$jar" "$page" | grep -o '<li class="res' | wc -l)
echo "timeline: $n results; HTML $(curl -sk -b "$jar" "$page" | wc -c) bytes, gzip $(curl -sk -b "$jar" -H 'Accept-Encoding: gzip' "$page" | wc -c) bytes"
for c in 1 8; do
  echo "== GET timeline, $c connection(s), ${secs}s"
  wrk -t1 -c"$c" -d"${secs}s" --latency -H "Cookie: huren_session=$session" -H "Accept-Encoding: gzip" "$page" \
    | grep -E "Requests/sec|50%|90%|99%"
done
echo "== first render in headless chromium (5 loads)"
(cd tests/web && node first_render.mjs "$page" "$session" 5)
