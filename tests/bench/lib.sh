# Helpers the bench scripts source (bash).

# bench_dicom_config FILE: huren's DICOM bench configuration — AE title HUREN, the load
# generators' AE title BENCHSCU known as institution BENCH (as the shared bench_dicom.sh calls),
# and a fixed national-ID secret (serve refuses to start without one; bench data only).
bench_dicom_config() {
  cat > "$1" <<'TOML'
[identity]
national_id_secret = "bench-national-id-secret"

[dicom]
ae_title = "HUREN"
max_associations = 64

[[dicom.ae]]
aet = "BENCHSCU"
institution = "BENCH"
TOML
}

# free_port: a TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# stop_pid PID: ends a background server and reaps it (never fails).
stop_pid() {
  if [[ -n ${1:-} ]]; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

# serve_config HUREN CONFIG DIR: starts `HUREN serve --config CONFIG` on a store in DIR/store
# and ephemeral ports (stdout DIR/serve.out, stderr DIR/serve.err), waits (30 s at most) for
# its HTTP listener and sets PID and addr; fails with the server's error when it does not start.
serve_config() {
  : >"$3/serve.out"
  "$1" serve --config "$2" --data "$3/store" \
    --http 127.0.0.1:0 --mllp 127.0.0.1:0 >"$3/serve.out" 2>"$3/serve.err" &
  PID=$!
  for _ in $(seq 300); do grep -q '"listening":"http"' "$3/serve.out" && break; sleep 0.1; done
  addr=$(grep '"listening":"http"' "$3/serve.out" | sed 's/.*"addr":"\([^"]*\)".*/\1/') || true
  [ -n "$addr" ] || { echo "huren serve did not start: $(cat "$3/serve.err")" >&2; return 1; }
}

# stop: stop_pid for the script's current server, kept in PID (then cleared).
stop() {
  stop_pid "${PID:-}"
  PID=
}

# record_consent BASE_URL REGISTRAR_TOKEN PATIENT: records the patient's consent (a health
# card, scope all, 24 h) with POST /api/v1/consents as a registrar and prints the issued
# X-Patient-Authorization value ("health_card CODE"). The server verifies every code (a code
# it did not issue is refused 403, five wrong ones lock the person 429), so a benchmark sends
# this value, never a fixed one. Fails unless the answer is 201. (-k: the bench's own dev CA.)
record_consent() {
  local base=$1 token=$2 patient=$3 body status
  body=$(mktemp)
  status=$(curl -sk -o "$body" -w '%{http_code}' -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' \
    -d "{\"patient\":\"$patient\",\"credential\":{\"kind\":\"health_card\",\"value\":\"bench-card-$patient\"},\"scope\":\"all\",\"ttl_hours\":24}" \
    "$base/api/v1/consents") || status=000
  if [[ $status != 201 ]]; then
    echo "recording the consent of $patient: HTTP $status $(cat "$body")" >&2
    rm -f "$body"
    return 1
  fi
  python3 -c 'import json,sys; print(json.load(sys.stdin)["authorization"])' <"$body"
  rm -f "$body"
}

# wrk_checked ARGS…: runs wrk with ARGS, prints its report, and fails when any answer was not
# 2xx/3xx (a refused request, 403 or 429, is fast: it must never count as throughput).
wrk_checked() {
  local out
  out=$(wrk "$@")
  printf '%s\n' "$out"
  if grep -q "Non-2xx or 3xx responses" <<<"$out"; then
    echo "wrk: $(grep "Non-2xx or 3xx responses" <<<"$out" | sed "s/^ *//") (a 403/429?): the figures are not valid" >&2
    return 1
  fi
}
