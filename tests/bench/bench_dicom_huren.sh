#!/usr/bin/env bash
# Runs the shared DICOM benchmark (bench_dicom.sh) against huren, with a bench clinician
# token, so QIDO-RS is measured authenticated (huren never answers patient data without
# auth). What differs from the shared script is only this, applied to a temporary copy:
#   - the Python helper's QIDO requests and wrk's qido.lua send
#     "Authorization: $BENCH_AUTH" when BENCH_AUTH is set (nothing otherwise, so the same
#     copy measures Orthanc unchanged);
#   - huren runs with a bench configuration: AE title HUREN, the load generator's AE
#     BENCHSCU known (institution BENCH), one [[clinician]] whose token is random per run
#     and stored only as its SHA-256.
# Usage: HUREN_BIN=target/release/huren tests/bench/bench_dicom_huren.sh [orthanc]
#   (extra environment — REPS, NAGLE_MODES, PYNETDICOM, … — is passed to bench_dicom.sh)
set -euo pipefail
SRC=${BENCH_SCRIPT:-/work/shared/tools/bench_dicom.sh}
: "${HUREN_THIRD_PARTY:=/work/shared/third_party}"
export SRC_DIR=${SRC_DIR:-$HUREN_THIRD_PARTY/dicom}
TMP=$(mktemp -d)
sed -e 's|headers={"Accept": "application/dicom+json"})|headers={"Accept": "application/dicom+json", **({"Authorization": os.environ["BENCH_AUTH"]} if os.environ.get("BENCH_AUTH") else {})})|' \
    -e 's|{\["Accept"\] = "application/dicom+json"})|{["Accept"] = "application/dicom+json", ["Authorization"] = os.getenv("BENCH_AUTH")})|' \
    "$SRC" > "$TMP/bench_dicom.sh"
if cmp -s "$SRC" "$TMP/bench_dicom.sh"; then
  echo "bench_dicom.sh changed: the Authorization edits did not apply" >&2; exit 2
fi
if [[ "${1:-}" == orthanc ]]; then
  unset BENCH_AUTH
  exec bash "$TMP/bench_dicom.sh"
fi
HUREN_BIN=$(realpath "${HUREN_BIN:?set HUREN_BIN to a release build of huren}")
TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
HASH=$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_dicom_config "$TMP/huren-bench.toml"
cat >> "$TMP/huren-bench.toml" <<TOML

# The instance count below asks for every instance in one answer.
[access]
search_cap = 100000

[[clinician]]
id = "bench"
institution = "BENCH"
role = "clinician"
token_sha256 = "$HASH"
TOML
export BENCH_AUTH="Bearer $TOKEN"
export SUT_NAME=huren AEC=HUREN QIDO_ROOT=/dicomweb
export HTTP_PORT=${HTTP_PORT:-18042}
export QUERY_KINDS=${QUERY_KINDS:-qido cfind findscu wrk}
export SUT_START_CMD="$HUREN_BIN serve --config $TMP/huren-bench.toml --data \$SUT_DB --dicom 127.0.0.1:\$DICOM_PORT --dicom-aet \$AEC --http 127.0.0.1:\$HTTP_PORT"
export SUT_COUNT_CMD="curl -s -H 'Authorization: $BENCH_AUTH' 'http://127.0.0.1:$HTTP_PORT/dicomweb/instances?limit=10000' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'"
exec bash "$TMP/bench_dicom.sh"
