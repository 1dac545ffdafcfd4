#!/usr/bin/env bash
# C-FIND latency with huren's native client (`huren bench cfind`), on the shared DICOM
# benchmark's load set (10,000 instances, 500 patients), one association and eight.
# The shared tool's C-FIND figure comes from pynetdicom, whose protocol thread polls with
# 1 ms sleeps; this shows the server's side. Run tests/bench/bench_dicom_huren.sh once
# first: it builds the load set under ~/.cache/huren-dicom-bench/sets/load-10000.
# Usage: [HUREN_BIN=path] tests/bench/cfind_native.sh [QUERIES]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source tests/bench/lib.sh
n=${1:-4000}
work=${WORK:-${XDG_CACHE_HOME:-$HOME/.cache}/huren-dicom-bench}
set_dir=$work/sets/load-10000
[ -d "$set_dir" ] || { echo "no load set at $set_dir: run tests/bench/bench_dicom_huren.sh first" >&2; exit 2; }
command -v storescu >/dev/null || { echo "storescu is required (apt-get install dcmtk)" >&2; exit 2; }
bin=${HUREN_BIN:-}
if [ -z "$bin" ]; then cargo build --release --quiet; bin=target/release/huren; fi
tmp=$(mktemp -d)
bench_dicom_config "$tmp/huren.toml"
port=$(free_port)
"$bin" serve --config "$tmp/huren.toml" --data "$tmp/store" --dicom "127.0.0.1:$port" \
  --dicom-aet HUREN --http 127.0.0.1:0 --mllp 127.0.0.1:0 >"$tmp/out" 2>/dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q '"listening":"dicom"' "$tmp/out" && break; sleep 0.1; done
echo "loading $(find "$set_dir" -type f | wc -l) instances (4 associations)..." >&2
pids=()
for d in "$set_dir"/shard*; do
  TCP_NODELAY=1 storescu -R -nh +sd +r -aet BENCHSCU -aec HUREN 127.0.0.1 "$port" "$d" >/dev/null 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for c in 1 8; do
  "$bin" bench cfind --addr "127.0.0.1:$port" -n "$n" -c "$c" --patients 500
done
