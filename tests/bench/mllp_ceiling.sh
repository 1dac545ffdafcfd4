#!/usr/bin/env bash
# What an MLLP throughput figure can be read against on this machine: each load generator
# (the shared mllp_load.py, and `huren bench mllp`) against `huren bench mllp-sink` — which
# acknowledges every frame at once and stores nothing, so its figure is the client's own
# ceiling — and against `huren serve` (fresh store per run, fsync on). Runs interleaved.
#
# Usage: HUREN_BIN=target/release/huren tests/bench/mllp_ceiling.sh [N] [CONNECTIONS] [REPS]
# Prints one TSV line per run: server, client, rep, msgs/s, p99 ms, ACKs good.
set -euo pipefail
BIN=$(realpath "${HUREN_BIN:?set HUREN_BIN to a release build of huren}")
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"
LOAD=${MLLP_LOAD:-$HERE/../../../shared/tools/mllp_load.py}
N=${1:-20000}
C=${2:-16}
REPS=${3:-3}
[[ -f $LOAD ]] || { echo "mllp_load.py not found at $LOAD (set MLLP_LOAD)" >&2; exit 2; }
TMP=$(mktemp -d)
PID=
trap 'stop; rm -rf "$TMP"' EXIT

# Starts a listener (its command after KIND), waits for its {"listening":"KIND","addr":…}.
start() {
  local kind=$1
  shift
  "$@" > "$TMP/out" 2> "$TMP/err" &
  PID=$!
  for _ in $(seq 100); do
    ADDR=$(grep -m1 "\"listening\":\"$kind\"" "$TMP/out" 2>/dev/null | grep -o '"addr":"[^"]*"' | cut -d'"' -f4) || true
    [[ -n $ADDR ]] && return
    sleep 0.1
  done
  echo "listener did not start: $(cat "$TMP/err")" >&2
  exit 1
}

run_client() { # client -> "msgs/s p99 good"
  case $1 in
    mllp_load.py)
      python3 "$LOAD" --port "${ADDR##*:}" -n "$N" -c "$C" --json 2>/dev/null |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["throughput_msgs_s"], j["lat_ms_p99"], j["acked_ok"])' ;;
    native)
      "$BIN" bench mllp --addr "$ADDR" -n "$N" -c "$C" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["per_sec"], j["p99_ms"], j["ok"])' ;;
  esac
}

printf 'server\tclient\trep\tmsgs_per_s\tp99_ms\tacks_good\n'
for rep in $(seq "$REPS"); do
  for server in sink huren; do
    for client in mllp_load.py native; do
      if [[ $server == sink ]]; then
        start mllp-sink "$BIN" bench mllp-sink --max-seconds 600
      else
        rm -rf "$TMP/data"
        start mllp "$BIN" serve --demo --data "$TMP/data" --mllp 127.0.0.1:0 --http 127.0.0.1:0
      fi
      read -r rate p99 good < <(run_client "$client")
      printf '%s\t%s\t%s\t%s\t%s\t%s/%s\n' "$server" "$client" "$rep" "$rate" "$p99" "$good" "$N"
      stop
    done
  done
done
