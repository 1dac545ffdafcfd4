#!/usr/bin/env bash
# Web page benchmark (web page issue): the timeline of a patient with 200 results in the
# 1M-report store of tests/bench/results_query.sh (run that first; it generates and caches
# the store), over HTTPS. Prints the server's latency under wrk (1 and 8 connections) and the
# first render in headless chromium (TTFB, first contentful paint, page weight).
# The patient's consent is recorded first (the registrar bench.clerk of results_query.sh's
# configuration, POST /api/v1/consents) and the issued code is entered on the search page, as
# a doctor does; the page must answer 200 with its results before anything is timed.
# Usage: tests/bench/web_timeline.sh [REPORTS] [PATIENTS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source tests/bench/lib.sh
reports=${1:-1000000}
patients=${2:-5000}
secs=${3:-10}
bench=target/bench-results-$reports-$patients
grep -qx "secret=bench-national-id-secret" "$bench/store/generated" 2>/dev/null || { echo "run tests/bench/results_query.sh $reports $patients first" >&2; exit 2; }
# The configuration results_query.sh writes; one written before it had a registrar cannot
# record consents.
grep -q 'id = "bench.clerk"' "$bench/huren.toml" 2>/dev/null || { echo "run tests/bench/results_query.sh $reports $patients again (its configuration has no registrar)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet
out=$(mktemp); jar=$(mktemp)
target/release/huren serve --config "$bench/huren.toml" --data "$bench/store" \
  --http 127.0.0.1:0 --mllp 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
trap 'stop_pid $pid; rm -f "$out" "$jar"' EXIT
for _ in $(seq 300); do grep -q '"listening":"https"' "$out" && break; sleep 0.1; done
addr=$(grep '"listening":"https"' "$out" | sed 's/.*"addr":"\([^"]*\)".*/\1/') || true
[ -n "$addr" ] || { echo "huren serve did not start (is another one using $bench/store?)" >&2; exit 1; }
base="https://$addr"
nid=990120190000000000
pauth=$(record_consent "$base" bench-clerk-token "nid:$nid")
curl -sk -c "$jar" -b "$jar" -o /dev/null -d "token=bench-token" "$base/ui/login"
csrf=$(curl -sk -c "$jar" -b "$jar" "$base/ui/search" | grep -o 'name="csrf" value="[0-9a-f]*' | head -1 | cut -d'"' -f4)
page=$(curl -sk -c "$jar" -b "$jar" -o /dev/null -w '%{redirect_url}' \
  --data-urlencode "csrf=$csrf" -d by=national -d "national_id=$nid" \
  --data-urlencode "auth_kind=${pauth%% *}" --data-urlencode "auth_code=${pauth#* }" "$base/ui/search")
session=$(awk '$6=="huren_session"{print $7}' "$jar")
[ -n "$page" ] && [ -n "$session" ] || { echo "sign-in or patient search failed" >&2; exit 1; }
n=$(curl -skS --fail-with-body -b "$jar" "$page" | grep -o '<li class="res' | wc -l)
[ "$n" -gt 0 ] || { echo "the timeline shows no results (a refused code?)" >&2; exit 1; }
size() { curl -skS --fail -b "$jar" -o /dev/null -w '%{size_download}' "$@" "$page"; }
plain=$(size); gz=$(size -H 'Accept-Encoding: gzip')
echo "timeline: $n results; HTML $plain bytes, gzip $gz bytes"
for c in 1 8; do
  echo "== GET timeline, $c connection(s), ${secs}s"
  wrk_checked -t1 -c"$c" -d"${secs}s" --latency -H "Cookie: huren_session=$session" -H "Accept-Encoding: gzip" "$page" \
    | grep -E "Requests/sec|50%|90%|99%"
done
echo "== first render in headless chromium (5 loads)"
(cd tests/web && node first_render.mjs "$page" "$session" 5)
