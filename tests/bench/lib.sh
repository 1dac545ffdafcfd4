# Helpers the bench scripts source (bash).

# bench_dicom_config FILE: huren's DICOM bench configuration — AE title HUREN, the load
# generators' AE title BENCHSCU known as institution BENCH (as the shared bench_dicom.sh calls),
# and a fixed national-ID secret (serve refuses to start without one; bench data only).
bench_dicom_config() {
  cat > "$1" <<'TOML'
[identity]
national_id_secret = "bench-national-id-secret"

[dicom]
ae_title = "HUREN"
max_associations = 64

[[dicom.ae]]
aet = "BENCHSCU"
institution = "BENCH"
TOML
}

# free_port: a TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# stop_pid PID: ends a background server and reaps it (never fails).
stop_pid() {
  if [[ -n ${1:-} ]]; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}

# stop: stop_pid for the script's current server, kept in PID (then cleared).
stop() {
  stop_pid "${PID:-}"
  PID=
}
