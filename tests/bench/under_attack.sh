#!/usr/bin/env bash
# Issue 16's "under attack" benchmark (docs/under-attack.md): legitimate MLLP throughput and
# p99 ACK latency (the shared mllp_load.py, plain MLLP: it speaks no TLS) and C-STORE
# throughput (dcmtk's storescu, N instances over one association), first without, then with
# the attack load (attack_load.py: 2,000 idle HTTP sockets, 100 unterminated 96 KiB MLLP
# frames, 8 DICOM associations trickling one byte a second; whatever the server closes is
# opened again each second). Each phase gets a fresh `huren serve --demo` with the default
# listener budgets; the server's peak RSS (VmHWM) is read at the end of each phase.
#
# Usage: HUREN_BIN=target/release/huren tests/bench/under_attack.sh [ORU] [CONNECTIONS] [INSTANCES]
# Prints one TSV line per phase.
set -euo pipefail
BIN=$(realpath "${HUREN_BIN:?set HUREN_BIN to a release build of huren}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
LOAD=${MLLP_LOAD:-$HERE/../../../shared/tools/mllp_load.py}
N=${1:-5000}
C=${2:-4}
INST=${3:-200}
[[ -f $LOAD ]] || { echo "mllp_load.py not found at $LOAD (set MLLP_LOAD)" >&2; exit 2; }
command -v storescu >/dev/null && command -v dcmodify >/dev/null || {
  echo "dcmtk is not installed (apt-get install dcmtk)" >&2
  exit 2
}
TMP=$(mktemp -d)
PID=
APID=
trap 'stop_pid "$APID"; stop; rm -rf "$TMP"' EXIT
bench_dicom_config "$TMP/huren.toml"

# INST copies of a fixture CT slice, each with a new SOP instance UID.
mkdir "$TMP/set"
for i in $(seq "$INST"); do cp "$HERE/../../fixtures/dicom/ct_series_1.dcm" "$TMP/set/$i.dcm"; done
dcmodify -nb -gin "$TMP"/set/*.dcm >/dev/null

kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

printf 'attack\toru_per_s\tp99_ms\tacks_good\tcstore_instances_per_s\tstored_ok\tbaseline_rss_mib\tpeak_rss_mib\n'
for attack in no yes; do
  rm -rf "$TMP/data"
  DPORT=$(free_port)
  "$BIN" serve --demo --config "$TMP/huren.toml" --data "$TMP/data" --mllp 127.0.0.1:0 \
    --http 127.0.0.1:0 --dicom "127.0.0.1:$DPORT" --dicom-aet HUREN > "$TMP/out" 2> "$TMP/err" &
  PID=$!
  for _ in $(seq 100); do grep -q '"dicom"' "$TMP/out" 2>/dev/null && break; sleep 0.1; done
  MLLP=$(grep -m1 '"listening":"mllp"' "$TMP/out" | grep -o '"addr":"[^"]*"' | cut -d'"' -f4)
  HTTP=$(grep -m1 '"listening":"http"' "$TMP/out" | grep -o '"addr":"[^"]*"' | cut -d'"' -f4)
  [[ -n $MLLP && -n $HTTP ]] || { echo "server did not start: $(cat "$TMP/err")" >&2; exit 1; }
  sleep 1
  base=$(kib "$PID" VmRSS)
  if [[ $attack == yes ]]; then
    python3 "$HERE/attack_load.py" --http-addr "$HTTP" --mllp-addr "$MLLP" \
      --dicom-addr "127.0.0.1:$DPORT" --max-seconds 600 > "$TMP/attack" 2>&1 &
    APID=$!
    for _ in $(seq 200); do grep -q 'in place' "$TMP/attack" 2>/dev/null && break; sleep 0.1; done
    grep -q 'in place' "$TMP/attack" || { echo "attack load did not start: $(cat "$TMP/attack")" >&2; exit 1; }
    sleep 2
  fi
  read -r rate p99 good < <(python3 "$LOAD" --port "${MLLP##*:}" -n "$N" -c "$C" --json 2>/dev/null |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["throughput_msgs_s"], j["lat_ms_p99"], j["acked_ok"])')
  start=$(date +%s.%N)
  set +e
  TCP_NODELAY=1 storescu -nh -aet BENCHSCU -aec HUREN 127.0.0.1 "$DPORT" "$TMP"/set/*.dcm > "$TMP/storescu.log" 2>&1
  rc=$?
  set -e
  secs=$(echo "$(date +%s.%N) - $start" | bc -l)
  ok=$INST
  [[ $rc == 0 ]] || ok="failed(rc=$rc)"
  peak=$(kib "$PID" VmHWM)
  if [[ $attack == yes ]]; then
    stop_pid "$APID"
    APID=
    echo "attack load: $(tail -1 "$TMP/attack")" >&2
  fi
  printf '%s\t%s\t%s\t%s/%s\t%.0f\t%s\t%s\t%s\n' "$attack" "$rate" "$p99" "$good" "$N" \
    "$(echo "$INST / $secs" | bc -l)" "$ok" "$((base / 1024))" "$((peak / 1024))"
  stop
done
