#!/usr/bin/env bash
# `huren migrate` and `huren verify --config` of an embedded store of N synthetic lab reports
# (default 100000, over 5000 patients) into PostgreSQL + SeaweedFS started here
# (tests/peers/*.sh, fsync on), with the release build. Prints the times and rates; removes
# every store and server it made.
#
#   tests/bench/migrate.sh [N]
#
# VERIFY=0 skips `verify --config`. QUERIES=R (default 2000) then runs R prior-results queries
# on each back end (`cargo bench -p huren-cluster --bench cluster -- query …`); QUERIES=0 skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
cargo build -q --release
HUREN=$PWD/target/release/huren
W=$(mktemp -d /tmp/huren-migrate-bench.XXXXXX)
chmod 755 "$W"
PORT_PG=$(( 20000 + RANDOM % 10000 ))
PORT_S3=$(( 31000 + RANDOM % 10000 ))
cleanup() {
  PG_STOP_MODE=immediate tests/peers/postgres.sh stop "$W/pg" >/dev/null 2>&1 || true
  SEAWEED_STOP_TIMEOUT=0 tests/peers/seaweedfs.sh stop "$W/s3" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
# A busy port fails a start fast: up to 5 tries on other ports.
for try in 1 2 3 4 5; do
  DSN=$(tests/peers/postgres.sh start "$W/pg" "$PORT_PG") && break
  [ "$try" = 5 ] && exit 1
  PORT_PG=$(( 20000 + RANDOM % 10000 ))
done
for try in 1 2 3 4 5; do
  S3=$(tests/peers/seaweedfs.sh start "$W/s3" "$PORT_S3" 2>"$W/s3-start.err") && break
  [ "$try" = 5 ] && { cat "$W/s3-start.err" >&2; exit 1; }
  PORT_S3=$(( 31000 + RANDOM % 10000 ))
done
get() { tr ' ' '\n' <<<"$S3" | sed -n "s/^$1=//p"; }
printf 'bench-migrate-national-id-secret' > "$W/secret"
chmod 600 "$W/secret"
cat > "$W/huren.toml" <<TOML
[identity]
national_id_secret_file = "$W/secret"

[store]
backend = "cluster"
postgres = "$DSN"

[store.s3]
endpoint = "$(get endpoint)"
bucket = "$(get bucket)"
region = "$(get region)"
access_key_id = "$(get access_key_id)"
secret_access_key = "$(get secret_access_key)"
TOML
t0=$(date +%s.%N)
"$HUREN" demo-data --config "$W/huren.toml" --data "$W/data" --reports "$N" --patients 5000 >/dev/null
t1=$(date +%s.%N)
"$HUREN" migrate --from "$W/data" --to-config "$W/huren.toml" 2>/dev/null > "$W/migrate.json"
t2=$(date +%s.%N)
if [ "${VERIFY:-1}" != 0 ]; then
  "$HUREN" verify --config "$W/huren.toml" > "$W/verify.json"
else
  echo '{"reports": '"$N"', "chains": 0, "blobs_checked": 0, "problems": [], "skipped": true}' > "$W/verify.json"
fi
t3=$(date +%s.%N)
du_pg=$(du -sh "$W/pg" | cut -f1); du_s3=$(du -sh "$W/s3" | cut -f1); du_src=$(du -sh "$W/data" | cut -f1)
python3 - "$N" "$t0" "$t1" "$t2" "$t3" "$W/migrate.json" "$W/verify.json" "$du_src" "$du_pg" "$du_s3" <<'PY'
import json, sys
n, t0, t1, t2, t3 = int(sys.argv[1]), *map(float, sys.argv[2:6])
m = json.load(open(sys.argv[6])); v = json.load(open(sys.argv[7]))
assert not m["problems"] and not v["problems"], (m["problems"][:5], v["problems"][:5])
assert m["reports_copied"] == n and v["reports"] == n, (m, v)
print(f"embedded store of {n} reports made in {t1-t0:.1f} s ({sys.argv[8]} on disk)")
print(f"huren migrate: {t2-t1:.1f} s = {n/(t2-t1):.0f} reports/s, copy and check "
      f"({m['ingests']} ingests, {m['reports_verified']} reports and {m['originals_verified']} originals checked)")
if not v.get("skipped"): print(f"huren verify --config: {t3-t2:.1f} s = {v['reports']/(t3-t2):.0f} reports/s "
      f"({v['chains']} chains, {v['blobs_checked']} blobs re-hashed)")
print(f"cluster on disk: PostgreSQL {sys.argv[9]}, SeaweedFS {sys.argv[10]}")
PY
if [ "${QUERIES:-2000}" != 0 ]; then
  cargo bench -q -p huren-cluster --bench cluster -- query "$W/data" "$W/huren.toml" 5000 "${QUERIES:-2000}" 2>/dev/null
fi
