#!/usr/bin/env bash
# STEMI alert benchmark (issue 18): a release `huren serve` on 127.0.0.1 with a fresh store and
# a configuration with one alert group (fx-pci at FX-ZX, escalate_after_secs 86400 so that no
# escalation step interferes), four cardiologists on its duty roster all day, and a route
# (FX-SQ01's STEMI alerts → fx-pci); no reading route, so the streams carry alerts only.
# Through the real ingest path (POST /api/v1/ecg as the community centre's principal):
#   - STREAMS (100) GET /api/v1/events streams of the four duty doctors (raw sockets, one
#     selector thread),
#   - a background uploader in its own thread and connection, RATE (20) non-critical ECGs per
#     second (the fixture with its statement 急性下壁心肌梗死 replaced by 窦性心律: no alert),
#   - UPLOADS (50) STEMI uploads (the fixture aecg-zh-patient.xml, a fresh recording and patient
#     each: one new alert each) one after another; per upload and stream the time from the 201
#     (and from before sending) to that stream's `event: alert` of the new alert.
# Issue 18's target: p99 ≤ 1 s (aim ≤ 200 ms). Every answer must be the expected 2xx, and
# GET /api/v1/alerts?state=all must list exactly the measured alerts at the end. The store is
# removed at the end. Usage: [HUREN_BIN=path] [STREAMS=100] [RATE=20] tests/bench/alerts.sh [UPLOADS]
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source tests/bench/lib.sh
uploads=${1:-50}
if [ -z "${HUREN_BIN:-}" ]; then cargo build --release --quiet; fi
huren=${HUREN_BIN:-target/release/huren}
ecg=fixtures/ecg/aecg-zh-patient.xml
dir=$(mktemp -d -t huren-alertbench.XXXXXX)
PID=
trap 'stop; rm -rf "$dir"' EXIT

sender=bench-sq01-token
readers=bench-cardio-1,bench-cardio-2,bench-cardio-3,bench-cardio-4
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

[[alert_group]]
id = "fx-pci"
name = "区中心医院胸痛中心"
institution = "FX-ZX"
phone = "021-5742-0000"
escalate_after_secs = 86400

[[alert_route]]
institution = "FX-SQ01"
kind = "stemi"
group = "fx-pci"
'''
for i, t in enumerate(readers, 1):
    s += f'''
[[clinician]]
id = "dr.cardio{i}"
institution = "FX-ZX"
role = "clinician"
department = "心内科"
token_sha256 = "{h(t)}"

[[alert_duty]]
reader = "dr.cardio{i}"
group = "fx-pci"
'''
open(path, "w", encoding="utf-8").write(s)
PY

serve_config "$huren" "$dir/huren.toml" "$dir"
echo "huren $($huren --version 2>/dev/null || true) at $addr; $(nproc) cores; aECG $(wc -c <"$ecg") bytes; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== ${STREAMS:-100} streams, background ${RATE:-20} non-critical ECG/s, $uploads STEMI uploads one after another"
python3 tests/bench/worklist_load.py --addr "$addr" alert --token "$sender" --readers "$readers" \
  --ecg "$ecg" -s "${STREAMS:-100}" -r "${RATE:-20}" -n "$uploads"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg); store: $(du -sh "$dir/store" | cut -f1); alerts.log $(wc -l <"$dir/store/alerts.log" 2>/dev/null || echo 0) events; huren RSS $(($(awk '/VmRSS/{print $2}' /proc/$PID/status) / 1024)) MiB"
