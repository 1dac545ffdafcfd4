#!/usr/bin/env bash
# Ingest through `huren serve` on the cluster back end (issue 19): MLLP (ORU^R01, `huren bench
# mllp`) and C-STORE (`huren bench cstore`), throughput and acknowledgement latency, with the
# embedded store, the cluster with one node and the cluster with two nodes (the load split
# evenly, each node its share of the connections). PostgreSQL 15 and SeaweedFS (fsync on) are
# started fresh for each cluster run (tests/peers/*.sh) and removed at the end, like every
# store the script makes. Release build.
#
#   tests/bench/cluster_serve.sh [MLLP_MESSAGES] [CSTORE_INSTANCES] [REPS]
#
# Prints one TSV line per run: back end, nodes, protocol, rep, per second (all nodes), and
# p50/p99/max of the acknowledgement latency over every message of the run (each client's
# latencies merged), and whether every message was acknowledged.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/bench/lib.sh
N_MLLP=${1:-6000}
N_DICOM=${2:-2000}
REPS=${3:-2}
CONNS=${CONNS:-16}
ASSOCS=${ASSOCS:-4}
cargo build -q --release
HUREN=$PWD/target/release/huren
W=$(mktemp -d /tmp/huren-cluster-serve.XXXXXX)
chmod 755 "$W"
PIDS=()
stop_nodes() {
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
}
stop_servers() {
  PG_STOP_MODE=immediate tests/peers/postgres.sh stop "$W/pg" >/dev/null 2>&1 || true
  SEAWEED_STOP_TIMEOUT=0 tests/peers/seaweedfs.sh stop "$W/s3" >/dev/null 2>&1 || true
  rm -rf "$W/pg" "$W/s3"
}
cleanup() {
  stop_nodes
  stop_servers
  rm -rf "$W"
}
trap cleanup EXIT

base_config() {
  local t
  t=$(mktemp)
  bench_dicom_config "$t"
  cat "$t"
  rm -f "$t"
  for i in 1 2 3 4 5 6 7; do
    printf '\n[[institution]]\ncode = "HOSP0%s"\nname = "bench %s"\nhl7_senders = ["HOSP0%s"]\n' "$i" "$i" "$i"
  done
}

# start_servers: fresh PostgreSQL and SeaweedFS; appends [store] to $W/cluster.toml.
start_servers() {
  local port_pg port_s3 dsn s3
  for try in 1 2 3 4 5; do
    port_pg=$(free_port)
    dsn=$(tests/peers/postgres.sh start "$W/pg" "$port_pg") && break
    [ "$try" = 5 ] && exit 1
  done
  for try in 1 2 3 4 5; do
    port_s3=$(free_port)
    s3=$(tests/peers/seaweedfs.sh start "$W/s3" "$port_s3" 2>"$W/s3-start.err") && break
    [ "$try" = 5 ] && { cat "$W/s3-start.err" >&2; exit 1; }
  done
  get() { tr ' ' '\n' <<<"$s3" | sed -n "s/^$1=//p"; }
  { base_config; cat <<TOML

[store]
backend = "cluster"
postgres = "$dsn"

[store.s3]
endpoint = "$(get endpoint)"
bucket = "$(get bucket)"
region = "$(get region)"
access_key_id = "$(get access_key_id)"
secret_access_key = "$(get secret_access_key)"
TOML
  } > "$W/cluster.toml"
}

# start_node CONFIG NAME: a node with MLLP and DICOM listeners; appends MLLP_ADDR, DICOM_ADDR.
start_node() {
  local d="$W/node-$2" port
  rm -rf "$d"; mkdir -p "$d"
  port=$(free_port)
  HUREN_NODE=$2 "$HUREN" serve --config "$1" --data "$d/store" --http 127.0.0.1:0 \
    --mllp 127.0.0.1:0 --dicom "127.0.0.1:$port" --dicom-aet HUREN >"$d/out" 2>"$d/err" &
  PIDS+=($!)
  for _ in $(seq 300); do grep -q '"listening":"dicom"' "$d/out" && break; sleep 0.1; done
  grep -q '"listening":"dicom"' "$d/out" || { echo "node $2 did not start: $(cat "$d/err")" >&2; exit 1; }
  MLLP_ADDR+=("$(grep '"listening":"mllp"' "$d/out" | sed 's/.*"addr":"\([^"]*\)".*/\1/')")
  DICOM_ADDR+=("127.0.0.1:$port")
}

# run_clients KIND TOTAL PARALLEL ADDR…: one client per address, its share of the load and
# of the connections, all at once; prints "per_s p50 p99 max all_ok" over all of them.
run_clients() {
  local kind=$1 total=$2 par=$3; shift 3
  local k=$# i=0 outs=() pids=()
  for a in "$@"; do
    local n=$(( total / k )) c=$(( par / k ))
    [ "$c" -ge 1 ] || c=1
    if [ "$kind" = mllp ]; then
      "$HUREN" bench mllp --addr "$a" -n "$n" -c "$c" --chinese > "$W/client$i.json" 2>>"$W/client.err" &
    else
      "$HUREN" bench cstore --addr "$a" -n "$n" -c "$c" > "$W/client$i.json" 2>>"$W/client.err" &
    fi
    pids+=($!); outs+=("$W/client$i.json"); i=$((i + 1))
  done
  local t0 t1
  t0=$(date +%s.%N)
  for p in "${pids[@]}"; do wait "$p" || true; done
  t1=$(date +%s.%N)
  python3 - "$kind" "$t0" "$t1" "${outs[@]}" <<'PY'
import json, sys
kind, t0, t1 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rs = [json.load(open(f)) for f in sys.argv[4:]]
n = sum(r["ok"] if kind == "mllp" else r["instances"] - r["failed"] for r in rs)
ok = all((r["bad_or_missing"] if kind == "mllp" else r["failed"]) == 0 for r in rs)
# Merged percentiles are not kept by the clients: the worst node's figure is reported.
p50 = max(r["p50_ms"] for r in rs); p99 = max(r["p99_ms"] for r in rs); mx = max(r["max_ms"] for r in rs)
print(f"{n / (t1 - t0):.0f}\t{p50}\t{p99}\t{mx}\t{'yes' if ok else 'NO'}")
PY
}

printf 'backend\tnodes\tprotocol\trep\tper_s\tp50_ms\tp99_ms\tmax_ms\tall_acked\n'
base_config > "$W/embedded.toml"
for rep in $(seq "$REPS"); do
  for setup in embedded cluster-1 cluster-2; do
    MLLP_ADDR=(); DICOM_ADDR=()
    case $setup in
      embedded) start_node "$W/embedded.toml" e1; backend=embedded; nodes=1 ;;
      cluster-1) start_servers; start_node "$W/cluster.toml" c1; backend=cluster; nodes=1 ;;
      cluster-2) start_servers; start_node "$W/cluster.toml" c1; start_node "$W/cluster.toml" c2
                 backend=cluster; nodes=2 ;;
    esac
    r=$(run_clients mllp "$N_MLLP" "$CONNS" "${MLLP_ADDR[@]}")
    printf '%s\t%s\tmllp\t%s\t%s\n' "$backend" "$nodes" "$rep" "$r"
    r=$(run_clients cstore "$N_DICOM" "$ASSOCS" "${DICOM_ADDR[@]}")
    printf '%s\t%s\tc-store\t%s\t%s\n' "$backend" "$nodes" "$rep" "$r"
    stop_nodes
    stop_servers
    rm -rf "$W"/node-*
  done
done
