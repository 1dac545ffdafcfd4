#!/usr/bin/env bash
# Prior-results query benchmark (recognition issue): a store of REPORTS synthetic lab reports
# over PATIENTS patients (200 results per patient at the defaults), `huren serve` over HTTPS,
# wrk with 16 keep-alive connections on GET /api/v1/patients/{id}/results and on POST
# /api/v1/recognition/check. Every request is authenticated, evaluated and audited (fsync).
# The patient's consent is recorded once before the timed runs (a registrar, bench.clerk, POST
# /api/v1/consents) and every request sends the issued X-Patient-Authorization value; a run
# with any answer other than 2xx fails (a refusal must not count as throughput).
# Usage: tests/bench/results_query.sh [REPORTS] [PATIENTS] [SECONDS]
# ANSWER_CACHE_MB=0 turns the answer cache off: every request is then evaluated afresh (the
# cost of the first request after a patient's results change).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source tests/bench/lib.sh
reports=${1:-1000000}
patients=${2:-5000}
secs=${3:-20}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
# HUREN_BIN=path runs another build (for A/B comparisons); default: a fresh release build.
if [ -z "${HUREN_BIN:-}" ]; then cargo build --release --quiet; fi
huren=${HUREN_BIN:-target/release/huren}
bench=target/bench-results-$reports-$patients
token=bench-token
# The registration clerk's token (records consents; reads nothing). Also used by web_timeline.sh.
clerk_token=bench-clerk-token
mkdir -p "$bench"
if [ ! -f "$bench/certs/ca.pem" ]; then
  $huren certs dev --out "$bench/certs" --institution FX-ZX >/dev/null
fi
python3 - "$bench" "$token" "${ANSWER_CACHE_MB:-256}" "$clerk_token" <<'PY'
import hashlib, sys
bench, token, cache_mb, clerk = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
s = open("config/huren.toml", encoding="utf-8").read()
insts = s[s.index("\n[[institution]]\n") + 1 : s.index("\n[identity]")]
open(f"{bench}/huren.toml", "w", encoding="utf-8").write(insts + f'''
[identity]
national_id_secret = "bench-national-id-secret"

[recognition]
rules = "{__import__("os").path.abspath("config/recognition.toml")}"

[http]
answer_cache_mb = {cache_mb}

[http.tls]
cert = "certs/server.pem"
key = "certs/server.key"

[[clinician]]
id = "bench"
institution = "FX-ZX"
role = "clinician"
token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"

[[clinician]]
id = "bench.clerk"
institution = "FX-ZX"
role = "registrar"
token_sha256 = "{hashlib.sha256(clerk.encode()).hexdigest()}"
''')
PY
sed -i "s|\"certs/|\"$(pwd)/$bench/certs/|" "$bench/huren.toml"
# The marker names the national-ID secret the keys were made with; a store cached under
# another (the 12-byte "bench-secret" of earlier runs, now refused as too short) is remade.
if ! grep -qx "secret=bench-national-id-secret" "$bench/store/generated" 2>/dev/null; then
  rm -rf "$bench/store"
  $huren demo-data --config "$bench/huren.toml" --data "$bench/store" \
    --reports "$reports" --patients "$patients"
  echo "secret=bench-national-id-secret" >"$bench/store/generated"
fi
out=$(mktemp)
$huren serve --config "$bench/huren.toml" --data "$bench/store" \
  --http 127.0.0.1:0 --mllp 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
trap 'stop_pid $pid; rm -f "$out"' EXIT
for _ in $(seq 300); do grep -q '"listening":"https"' "$out" && break; sleep 0.1; done
addr=$(grep '"listening":"https"' "$out" | sed 's/.*"addr":"\([^"]*\)".*/\1/') || true
[ -n "$addr" ] || { echo "huren serve did not start (is another one using $bench/store?)" >&2; exit 1; }
# The one patient every request asks about; its consent is recorded before the timed runs.
patient=nid:990120190000000000
pauth=$(record_consent "https://$addr" "$clerk_token" "$patient")
url="https://$addr/api/v1/patients/$patient/results"
get() { # curl options… -> the answer's body; fails unless 200
  curl -skS --fail-with-body -H "Authorization: Bearer $token" \
    -H "X-Patient-Authorization: $pauth" "$@" "$url"
}
n=$(get | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
echo "store: $reports reports over $patients patients; $patient has $n results"
gz=$(get -H "Accept-Encoding: gzip" | wc -c)
plain=$(get | wc -c)
echo "answer: $plain bytes JSON, $gz bytes gzip"
# Every request is authenticated, authorised and audited (fdatasync before the answer); the
# evaluated answer is kept until the patient's reports change or a validity window closes
# (docs/api.md, "Answer cache"), so these runs measure the kept-answer path.
for enc in ${ENCODINGS:-identity gzip}; do
  echo "== GET results, 16 connections, ${secs}s, Accept-Encoding: $enc"
  wrk_checked -t2 -c16 -d"${secs}s" --latency -H "Authorization: Bearer $token" \
    -H "X-Patient-Authorization: $pauth" -H "Accept-Encoding: $enc" "$url"
  echo "== POST recognition/check, 16 connections, ${secs}s, Accept-Encoding: $enc"
  HUREN_TOKEN=$token HUREN_PATIENT=$patient HUREN_ENCODING=$enc HUREN_PATIENT_AUTHORIZATION=$pauth \
    wrk_checked -t2 -c16 -d"${secs}s" --latency -s tests/bench/check.lua \
    "https://$addr/api/v1/recognition/check"
done
