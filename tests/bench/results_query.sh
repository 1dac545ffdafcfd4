#!/usr/bin/env bash
# Prior-results query benchmark (recognition issue): a store of REPORTS synthetic lab reports
# over PATIENTS patients (200 results per patient at the defaults), `huren serve` over HTTPS,
# wrk with 16 keep-alive connections on GET /api/v1/patients/{id}/results and on POST
# /api/v1/recognition/check. Every request is authenticated, evaluated and audited (fsync).
# Usage: tests/bench/results_query.sh [REPORTS] [PATIENTS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
reports=${1:-1000000}
patients=${2:-5000}
secs=${3:-20}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet
bench=target/bench-results-$reports-$patients
token=bench-token
mkdir -p "$bench"
if [ ! -f "$bench/certs/ca.pem" ]; then
  target/release/huren certs dev --out "$bench/certs" --institution FX-ZX >/dev/null
fi
python3 - "$bench" "$token" <<'PY'
import hashlib, sys
bench, token = sys.argv[1], sys.argv[2]
s = open("config/huren.toml", encoding="utf-8").read()
insts = s[s.index("\n[[institution]]\n") + 1 : s.index("\n[identity]")]
open(f"{bench}/huren.toml", "w", encoding="utf-8").write(insts + f'''
[identity]
national_id_secret = "bench-secret"

[recognition]
rules = "{__import__("os").path.abspath("config/recognition.toml")}"

[http.tls]
cert = "certs/server.pem"
key = "certs/server.key"

[[clinician]]
id = "bench"
institution = "FX-ZX"
role = "clinician"
token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"
''')
PY
sed -i "s|\"certs/|\"$(pwd)/$bench/certs/|" "$bench/huren.toml"
if [ ! -f "$bench/store/generated" ]; then
  rm -rf "$bench/store"
  target/release/huren demo-data --config "$bench/huren.toml" --data "$bench/store" \
    --reports "$reports" --patients "$patients"
  touch "$bench/store/generated"
fi
out=$(mktemp)
target/release/huren serve --config "$bench/huren.toml" --data "$bench/store" \
  --http 127.0.0.1:0 --mllp 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 300); do grep -q '"listening":"https"' "$out" && break; sleep 0.1; done
addr=$(grep '"listening":"https"' "$out" | sed 's/.*"addr":"\([^"]*\)".*/\1/')
patient=nid:990120190000000000
url="https://$addr/api/v1/patients/$patient/results"
n=$(curl -sk -H "Authorization: Bearer $token" -H "X-Patient-Authorization: health_card 1" "$url" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
echo "store: $reports reports over $patients patients; $patient has $n results"
echo "== GET results, 16 connections, ${secs}s"
wrk -t2 -c16 -d"${secs}s" --latency -H "Authorization: Bearer $token" \
  -H "X-Patient-Authorization: health_card 1" "$url"
echo "== POST recognition/check, 16 connections, ${secs}s"
HUREN_TOKEN=$token HUREN_PATIENT=$patient wrk -t2 -c16 -d"${secs}s" --latency \
  -s tests/bench/check.lua "https://$addr/api/v1/recognition/check"
