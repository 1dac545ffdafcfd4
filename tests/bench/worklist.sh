#!/usr/bin/env bash
# Reading-centre worklist benchmark (issue 17): a release `huren serve` on 127.0.0.1 with a fresh
# store and a configuration with one ECG centre (fx-ecg at FX-ZX), a route (FX-SQ01's ECGs →
# fx-ecg) and four readers on its roster. Tasks are made through the real ingest path: the
# community centre's principal uploads the aECG fixture (POST /api/v1/ecg) with a fresh
# document UID and patient ID each time. Then, with OPEN_SMALL (500) and with OPEN_LARGE
# (10,000) open tasks:
#   - GET /api/v1/worklist latency (default limit: the first 200 tasks and the open count; one
#     connection, to the answer's last byte; every read is authorised and audited with the
#     patients shown),
#   - the web page /ui/worklist (signed in as a reader with a session cookie), whole page and
#     ?frag=1 rows, identity and gzip (server time only),
#   - its first render in headless chromium (tests/web/first_render.mjs: RENDERS (7) loads of
#     /ui/worklist from /ui/search, as a reader does, with the reader's session cookie; time to
#     first byte, first contentful paint, load; needs `cd tests/web && npm ci` and
#     /usr/bin/chromium, skipped otherwise or with RENDERS=0),
#   - task events: STREAMS (100) GET /api/v1/events streams of the four readers, then EVENTS
#     (20) uploads one after another; upload → `task` event on every stream,
#   - claim and sign latency over ACTS (200) tasks, one reader, then four readers at once.
# Issue 17's targets: claim and sign p99 ≤ 50 ms; the worklist of 500 open tasks ≤ 300 ms;
# with 10,000 open tasks and 100 streams, a new ECG's task event on every stream p99 ≤ 1 s.
# Every answer must be the expected 2xx (the load tool fails otherwise). The store is removed
# at the end. Usage: [HUREN_BIN=path] [STREAMS=100] [EVENTS=20] [GETS=30]
#   tests/bench/worklist.sh [OPEN_SMALL] [OPEN_LARGE] [ACTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source tests/bench/lib.sh
small=${1:-500}
large=${2:-10000}
acts=${3:-200}
if [ -z "${HUREN_BIN:-}" ]; then cargo build --release --quiet; fi
huren=${HUREN_BIN:-target/release/huren}
ecg=fixtures/ecg/aecg-zh-patient.xml
load() { python3 tests/bench/worklist_load.py --addr "$addr" "$@"; }
dir=$(mktemp -d -t huren-wlbench.XXXXXX)
PID=
trap 'stop; rm -rf "$dir"' EXIT

sender=bench-sq01-token
readers=bench-reader-1,bench-reader-2,bench-reader-3,bench-reader-4
reader=${readers%%,*}
python3 - "$dir/huren.toml" "$(pwd)/config/recognition.toml" "$sender" "$readers" <<'PY'
import hashlib, sys
path, rules, sender, readers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
h = lambda t: hashlib.sha256(t.encode()).hexdigest()
s = f'''[[institution]]
code = "FX-ZX"
name = "上海市奉贤区中心医院"
hl7_senders = ["FX-ZX"]

[[institution]]
code = "FX-SQ01"
name = "奉贤区南桥镇社区卫生服务中心"
hl7_senders = ["LIS/FX-SQ01"]

[identity]
national_id_secret = "bench-national-id-secret"

[recognition]
rules = "{rules}"

[[clinician]]
id = "dr.sq01"
institution = "FX-SQ01"
role = "clinician"
token_sha256 = "{h(sender)}"

[[centre]]
id = "fx-ecg"
name = "奉贤区心电诊断中心"
institution = "FX-ZX"

[[reading_route]]
institution = "FX-SQ01"
kind = "ecg"
centre = "fx-ecg"
'''
for i, t in enumerate(readers, 1):
    s += f'''
[[clinician]]
id = "dr.reader{i}"
institution = "FX-ZX"
role = "clinician"
department = "心电诊断中心"
token_sha256 = "{h(t)}"

[[roster]]
reader = "dr.reader{i}"
centre = "fx-ecg"
'''
open(path, "w", encoding="utf-8").write(s)
PY

serve_config "$huren" "$dir/huren.toml" "$dir"
echo "huren $($huren --version 2>/dev/null || true) at $addr; $(nproc) cores; aECG $(wc -c <"$ecg") bytes"

# round OPEN: the figures with OPEN open tasks on the worklist (n is the tasks made so far).
n=0
round() {
  local open=$1
  echo "== $open open tasks"
  load get --token "$reader" -n "${GETS:-30}" --expect "$open"
  echo "-- web page /ui/worklist and ?frag=1, signed in as a reader (identity, then gzip)"
  load page --token "$reader" -n "${GETS:-30}"
  load page --token "$reader" -n "${GETS:-30}" --gzip
  render "$open"
  echo "-- task events: ${STREAMS:-100} streams, ${EVENTS:-20} uploads one after another"
  load event --token "$sender" --readers "$readers" --ecg "$ecg" -s "${STREAMS:-100}" \
    -n "${EVENTS:-20}" --start "$n" --salt 2
  n=$((n + ${EVENTS:-20}))
  echo "-- claim + sign, $acts tasks, 1 reader"
  load act --tokens "$reader" -k "$acts"
  echo "-- claim + sign, $acts tasks, 4 readers at once"
  load act --tokens "$readers" -k "$acts"
}
# render OPEN: the first render of /ui/worklist in headless chromium (the page shows the first
# 200 tasks and "200 / OPEN"); every load must answer 200 with its rows and paint.
render() {
  local open=$1 runs=${RENDERS:-7} session json
  [ "$runs" -gt 0 ] || return 0
  if [ ! -d tests/web/node_modules/playwright-core ] || [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "-- first render: skipped (cd tests/web && npm ci; chromium at ${CHROMIUM:-/usr/bin/chromium})"
    return 0
  fi
  echo "-- first render in headless chromium: /ui/worklist from /ui/search, $runs loads"
  session=$(load session --token "$reader")
  json=$(cd tests/web && ROWS='tr.task[data-task]' MIN_ROWS=$((open < 200 ? open : 200)) \
    node first_render.mjs "http://$addr/ui/worklist" "$session" "$runs")
  echo "$json"
  python3 -c '
import json, sys
d = json.loads(sys.argv[1]); r = d["runs"]
print("first render, %d loads, %d rows, HTML %d B (%d B decoded): TTFB p50 %d / max %d ms; "
      "FCP p50 %d / max %d ms; load p50 %d / max %d ms" % (
    len(r), r[0]["rows"], r[0]["html_transferred"], r[0]["html_decoded"],
    d["median"]["ttfb_ms"], d["max"]["ttfb_ms"], d["median"]["fcp_ms"], d["max"]["fcp_ms"],
    d["median"]["load_ms"], d["max"]["load_ms"]))' "$json"
}
open_now() { # the open tasks now on the worklist
  curl -sS -H "Authorization: Bearer $reader" "http://$addr/api/v1/worklist" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["open"])'
}

echo "== making $small tasks (uploads over 4 connections)"
load upload --token "$sender" --ecg "$ecg" -n "$small" -c 4 --start 0
n=$small
round "$small"
more=$((large - $(open_now)))
echo "== making $more more tasks (uploads over 4 connections)"
load upload --token "$sender" --ecg "$ecg" -n "$more" -c 4 --start "$n"
n=$((n + more))
round "$large"
echo "store: $(du -sh "$dir/store" | cut -f1); tasks.log $(wc -l <"$dir/store/tasks.log") events; huren RSS $(($(awk '/VmRSS/{print $2}' /proc/$PID/status) / 1024)) MiB"
