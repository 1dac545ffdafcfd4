#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests, from Debian's postgresql package.
#
#   postgres.sh start DIR PORT  -> prints one line on stdout, the libpq DSN:
#       host=127.0.0.1 port=PORT user=huren dbname=huren
#   postgres.sh stop DIR        -> pg_ctl stop -m fast (PG_STOP_MODE; SIGKILL if it hangs), removes DIR;
#                                  idempotent
#
# The cluster lives in DIR/data; the server listens on 127.0.0.1:PORT only (no IPv6, no other
# address) and puts its unix socket in DIR. fsync, synchronous_commit and full_page_writes are
# on (the defaults, set explicitly), so a committed transaction is on disk.
#
# Authentication: role `huren` (owner of database `huren`, not a superuser) connects over TCP
# from 127.0.0.1 with `trust`; every other TCP address is rejected. With PG_PASSWORD set, the
# role gets that password and 127.0.0.1 uses scram-sha-256 instead, and the DSN ends in
# `password=...`. The superuser `postgres` can connect only through the unix socket in DIR.
#
# TLS: with PG_SSL_DIR (a directory with server.pem, server.key and ca.pem) the server takes
# only TLS connections over TCP (`hostssl`; every `hostnossl` is rejected) and the DSN ends in
# `sslmode=require`. With PG_SSL_CLIENT as well (the path prefix of a client certificate,
# PREFIX.pem and PREFIX.key, with CN huren), it also requires a client certificate that chains
# to ca.pem and names the role (`clientcert=verify-full`).
#
# initdb refuses to run as root: as root, everything runs as the `postgres` system user (made
# by the Debian package) and DIR is chowned to it, so every parent of DIR must be searchable
# by that user (/tmp is; a 0700 home is not). As any other user, it runs as that user.
#
# Binaries: $PG_BIN, else the newest /usr/lib/postgresql/*/bin. Every wait is bounded; a failed
# start stops what it started, prints the log tail on stderr, removes DIR and exits non-zero.
set -euo pipefail

START_TIMEOUT=${PG_START_TIMEOUT:-60}   # seconds for pg_ctl start and for pg_isready
STOP_TIMEOUT=${PG_STOP_TIMEOUT:-30}     # seconds for pg_ctl stop before SIGKILL
# fast: clean shutdown with a shutdown checkpoint (~1 s of fsyncs after CREATE DATABASE);
# immediate: no checkpoint, fine when DIR is removed anyway.
STOP_MODE=${PG_STOP_MODE:-fast}

die() { echo "postgres.sh: $*" >&2; exit 1; }

find_bin() {
  if [ -n "${PG_BIN:-}" ]; then echo "$PG_BIN"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/initdb" ] || die "no PostgreSQL: apt-get install postgresql (or set PG_BIN)"
  echo "$d"
}

# Run a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]; }

stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  local bin pid=""
  bin=$(find_bin)
  [ -f "$dir/data/postmaster.pid" ] && pid=$(head -n 1 "$dir/data/postmaster.pid")
  [ -z "$pid" ] && [ -f "$dir/pid" ] && pid=$(cat "$dir/pid")
  if alive "$pid"; then
    (cd "$dir" && as_owner "$bin/pg_ctl" stop -D "$dir/data" -m "$STOP_MODE" -w -t "$STOP_TIMEOUT" >/dev/null 2>&1) || true
    if alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      local i
      for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.1; done
    fi
    # Backends outlive a SIGKILLed postmaster briefly; they exit on their own once it is gone.
  fi
  rm -rf "$dir"
}

start() {
  local dir=$1 port=$2
  [[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1024 ] && [ "$port" -le 65535 ] \
    || die "PORT must be a number in 1024..65535"
  if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then die "$dir exists and is not empty"; fi
  local bin; bin=$(find_bin)
  id postgres >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ] || die "no postgres user (apt-get install postgresql makes it)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  # The unix socket path must fit in sun_path (107 bytes).
  [ ${#dir} -le 90 ] || die "DIR path too long for a unix socket (${#dir} > 90 chars): $dir"
  START_DIR=$dir
  trap 'rc=$?; if [ $rc -ne 0 ]; then echo "postgres.sh: start failed; log tail:" >&2; tail -n 30 "$START_DIR/postgres.log" "$START_DIR/initdb.log" >&2 2>/dev/null || true; stop "$START_DIR"; fi' EXIT
  chmod 700 "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  as_owner test -w "$dir" || die "the postgres user cannot write $dir (is every parent searchable?)"

  # --no-sync: the fresh cluster files are not flushed by initdb (saves ~0.1-0.5 s); the
  # server itself runs with fsync=on, and the first checkpoint flushes them.
  (cd "$dir" && as_owner "$bin/initdb" -D "$dir/data" -U postgres --encoding=UTF8 --locale=C \
     --auth-local=trust --auth-host=reject --no-sync --no-instructions) >"$dir/initdb.log" 2>&1 \
    || die "initdb failed"

  local method=trust
  [ -n "${PG_PASSWORD:-}" ] && method=scram-sha-256
  local host=host options=""
  if [ -n "${PG_SSL_DIR:-}" ]; then
    host=hostssl
    [ -n "${PG_SSL_CLIENT:-}" ] && options="clientcert=verify-full"
    cp "$PG_SSL_DIR/server.pem" "$dir/data/server.crt"
    cp "$PG_SSL_DIR/server.key" "$dir/data/server.key"
    cp "$PG_SSL_DIR/ca.pem" "$dir/data/root.crt"
    chmod 600 "$dir/data/server.key"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir/data/server.crt" "$dir/data/server.key" "$dir/data/root.crt"; fi
  fi
  cat > "$dir/data/pg_hba.conf" <<EOF
# TYPE     DATABASE  USER      ADDRESS          METHOD
local      all       postgres                   trust
local      all       huren                      trust
hostnossl  all       all       0.0.0.0/0        reject
$host      all       huren     127.0.0.1/32     $method $options
host       all       all       0.0.0.0/0        reject
host       all       all       ::/0             reject
EOF
  # Without TLS, plain connections of huren from 127.0.0.1 are the point: no hostnossl line.
  if [ "$host" = host ]; then sed -i '/^hostnossl/d' "$dir/data/pg_hba.conf"; fi
  cat >> "$dir/data/postgresql.conf" <<EOF

# tests/peers/postgres.sh
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
password_encryption = scram-sha-256
max_connections = 100
shared_buffers = 32MB
logging_collector = off
log_min_messages = warning
EOF
  if [ -n "${PG_SSL_DIR:-}" ]; then
    cat >> "$dir/data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'root.crt'
EOF
  fi

  (cd "$dir" && as_owner "$bin/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t "$START_TIMEOUT") \
     >/dev/null 2>&1 || die "pg_ctl start failed"
  head -n 1 "$dir/data/postmaster.pid" > "$dir/pid"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/pid"

  local psql=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres)
  local pw_sql="NULL"
  [ -n "${PG_PASSWORD:-}" ] && pw_sql="'$(printf '%s' "$PG_PASSWORD" | sed "s/'/''/g")'"
  (cd "$dir" && as_owner "${psql[@]}" -c "CREATE ROLE huren LOGIN PASSWORD $pw_sql" \
     -c "CREATE DATABASE huren OWNER huren") >>"$dir/postgres.log" 2>&1 || die "could not create role/database huren"

  local deadline=$((SECONDS + START_TIMEOUT))
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U huren -d huren -t 2; do
    [ $SECONDS -lt $deadline ] || die "pg_isready: not accepting connections on 127.0.0.1:$port"
    sleep 0.1
  done

  local dsn="host=127.0.0.1 port=$port user=huren dbname=huren"
  [ -n "${PG_PASSWORD:-}" ] && dsn="$dsn password=$PG_PASSWORD"
  if [ -n "${PG_SSL_DIR:-}" ]; then
    dsn="$dsn sslmode=require"
    if [ -n "${PG_SSL_CLIENT:-}" ]; then
      # libpq wants the client key private to the user running psql.
      cp "$PG_SSL_CLIENT.key" "$dir/psql-client.key"
      chmod 600 "$dir/psql-client.key"
      export PGSSLCERT="$PG_SSL_CLIENT.pem" PGSSLKEY="$dir/psql-client.key"
    fi
  fi
  # The DSN itself works: a query as huren over TCP.
  [ "$(PGCONNECT_TIMEOUT=5 "$bin/psql" -X -At "$dsn" -c 'SELECT current_user' 2>>"$dir/postgres.log")" = huren ] \
    || die "cannot connect with: $dsn"

  trap - EXIT
  echo "$dsn"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || die "usage: $0 start DIR PORT"; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR PORT | stop DIR" ;;
esac
