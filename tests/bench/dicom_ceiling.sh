#!/usr/bin/env bash
# What a C-STORE throughput figure can be read against on this machine: dcmtk's storescu
# (TCP_NODELAY=1, as the shared benchmark's "nodelay" mode) sends the shared benchmark's
# small set (2,000 × 39 KB CT) over 1 and 4 associations, to dcmtk's `storescp --ignore`
# (receives every instance, answers success, stores nothing: the client's own ceiling) and
# to `huren serve` (fresh store per run, every instance durable before its 0000). Interleaved.
#
# Usage: HUREN_BIN=target/release/huren tests/bench/dicom_ceiling.sh [REPS]
#   SET (default ~/.cache/huren-dicom-bench/sets/small-2000, made by bench_dicom.sh; its
#   shard* folders are the 4 associations' shares)
# Prints one TSV line per run: server, associations, rep, instances/s, huren CPU µs/instance.
set -euo pipefail
BIN=$(realpath "${HUREN_BIN:?set HUREN_BIN to a release build of huren}")
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPS=${1:-3}
SET=${SET:-${XDG_CACHE_HOME:-$HOME/.cache}/huren-dicom-bench/sets/small-2000}
[[ -d $SET/shard0 ]] || {
  echo "no small set at $SET: run ../shared/tools/bench_dicom.sh once (it makes it), or set SET" >&2
  exit 2
}
command -v storescu >/dev/null && command -v storescp >/dev/null || {
  echo "dcmtk is not installed (apt-get install dcmtk)" >&2
  exit 2
}
export TCP_NODELAY=1
N=$(find "$SET" -name '*.dcm' | wc -l)
TMP=$(mktemp -d)
PID=
trap 'stop; rm -rf "$TMP"' EXIT
bench_dicom_config "$TMP/huren.toml"

cpu_ticks() { [[ -n $PID ]] && awk '{print $14+$15}' "/proc/$PID/stat" || echo 0; }

send() { # associations -> elapsed seconds
  local start end
  start=$(date +%s.%N)
  if [[ $1 == 1 ]]; then
    storescu -R -nh +sd +r -aet BENCHSCU -aec HUREN 127.0.0.1 "$PORT" "$SET" >> "$TMP/storescu.log" 2>&1
  else
    local pids=()
    for d in "$SET"/shard*; do
      storescu -R -nh +sd +r -aet BENCHSCU -aec HUREN 127.0.0.1 "$PORT" "$d" >> "$TMP/storescu.log" 2>&1 &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
  fi
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}

printf 'server\tassociations\trep\tinstances_per_s\tserver_cpu_us_per_instance\n'
for rep in $(seq "$REPS"); do
  for assoc in 1 4; do
    for server in storescp-ignore huren; do
      PORT=$(free_port)
      if [[ $server == huren ]]; then
        rm -rf "$TMP/data"
        "$BIN" serve --config "$TMP/huren.toml" --data "$TMP/data" --dicom "127.0.0.1:$PORT" \
          --dicom-aet HUREN --http 127.0.0.1:0 > "$TMP/out" 2> "$TMP/err" &
        PID=$!
        for _ in $(seq 100); do grep -q '"dicom"' "$TMP/out" 2>/dev/null && break; sleep 0.1; done
      else
        # --fork: one process per association, as a multi-association server.
        storescp --ignore $([[ $assoc == 4 ]] && echo --fork) -aet HUREN "$PORT" > "$TMP/out" 2>&1 &
        PID=$!
        sleep 0.3
      fi
      t0=$(cpu_ticks)
      secs=$(send "$assoc")
      t1=$(cpu_ticks)
      cpu="-"
      [[ $server == huren ]] && cpu=$(( (t1 - t0) * 10000 / N ))
      printf '%s\t%s\t%s\t%.0f\t%s\n' "$server" "$assoc" "$rep" "$(echo "$N / $secs" | bc -l)" "$cpu"
      stop
    done
  done
done
if grep -qi "error\|fail" "$TMP/storescu.log"; then
  echo "storescu reported errors:" >&2
  grep -i "error\|fail" "$TMP/storescu.log" | head -5 >&2
  exit 1
fi
