#!/usr/bin/env bash
# Local PostgreSQL for development and tests: a dedicated Debian cluster
# "baton" (pg_createcluster), listening on 127.0.0.1:55432 only.
# Installs the `postgresql` apt package when the server is missing.
#
# The server in use is checked by talking to it, not by pid files. When the
# cluster is not running and whatever serves 127.0.0.1:55432 accepts the baton
# login, that server is reused, whoever started it (stop and restart leave it
# alone). When the port is held by something that does not accept that login,
# the cluster starts on the next free port above it instead; the port is kept
# in the cluster's config (/etc/postgresql/<ver>/baton/conf.d/90-baton-local.conf)
# and `url` prints the URL in effect.
#
# Usage: deploy/local/postgres.sh <command> [args]
#   start                 install if needed, create/configure the cluster, start it,
#                         wait for pg_isready, ensure role + default databases
#   stop                  fast shutdown (no-op when stopped)
#   restart [--immediate] stop (fast, or immediate = crash-like, WAL recovery on start)
#                         and start again, wait until ready
#   status                one line; exit 0 when running, 3 otherwise
#   url [DB]              print the URL in effect, by default
#                         postgresql://baton:baton@127.0.0.1:55432[/DB]
#   createdb NAME...      create databases if missing (starts the server if needed)
#   dropdb NAME...        drop databases if present (WITH (FORCE))
#   recreate NAME...      drop + create (clean test databases)
#
# Role `baton` (password `baton`, LOGIN SUPERUSER CREATEDB) owns the databases
# baton_lead_ingest, baton_scoring, baton_handoff, baton_metrics.
# Environment: PG_START_TIMEOUT (default 60 s), PG_PORT (default port, 55432),
#   PG_CLUSTER (name of the Debian cluster, default baton).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

CLUSTER="${PG_CLUSTER:-baton}"
DEFAULT_PORT="${PG_PORT:-55432}"
PORT="$DEFAULT_PORT"
# 1 while the server in use is one this script did not start (see load_state).
REUSED=0
HOST=127.0.0.1
ROLE=baton
PASSWORD=baton
DEFAULT_DBS=(baton_lead_ingest baton_scoring baton_handoff baton_metrics)
SOCKET_DIR=/var/run/postgresql
START_TIMEOUT="${PG_START_TIMEOUT:-60}"

die() { echo "postgres.sh: error: $*" >&2; exit 1; }

[[ "$CLUSTER" =~ ^[A-Za-z0-9_]+$ ]] || die "invalid cluster name '$CLUSTER' (letters, digits, _)"
if ! [[ "$DEFAULT_PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((DEFAULT_PORT > 65535)); then
  die "invalid port '$DEFAULT_PORT'"
fi
# Set by `start` when it reuses a server it did not start: that server's port.
REUSED_FILE="$REPO_ROOT/.data/postgres.reused"

base_url() { echo "postgresql://$ROLE:$PASSWORD@$HOST:$PORT"; }

lock() {
  mkdir -p "$REPO_ROOT/.data"
  exec 9>"$REPO_ROOT/.data/.postgres.lock"
  flock -w 170 9 || die "timed out waiting for another postgres.sh"
}

installed_versions() {
  local d
  for d in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x "$d" ]] && basename "$(dirname "$(dirname "$d")")"
  done | sort -n
}

is_installed() {
  command -v pg_ctlcluster >/dev/null && command -v pg_createcluster >/dev/null \
    && command -v pg_isready >/dev/null && [[ -n "$(installed_versions)" ]]
}

ensure_installed() {
  is_installed && return 0
  [[ "$(id -u)" -eq 0 ]] || die "PostgreSQL is not installed and this is not root (run: apt-get install -y postgresql)"
  command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available"
  echo "postgres.sh: installing postgresql with apt-get ..." >&2
  local log; log="$(mktemp)"
  if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q \
         && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
              postgresql postgresql-client; } >"$log" 2>&1 9>&-; then
    tail -n 20 "$log" >&2
    rm -f "$log"
    die "apt-get install postgresql failed"
  fi
  rm -f "$log"
  is_installed || die "postgresql installed but server binaries not found under /usr/lib/postgresql"
}

# Version of our cluster if it exists, else the newest installed server.
pick_version() {
  local v
  v="$(pg_lsclusters -h 2>/dev/null | awk -v c="$CLUSTER" '$2 == c {print $1}' | sort -n | tail -1)"
  [[ -n "$v" ]] || v="$(installed_versions | tail -1)"
  [[ -n "$v" ]] || die "no PostgreSQL server version found under /usr/lib/postgresql"
  echo "$v"
}

cluster_exists() { [[ -f "/etc/postgresql/$VER/$CLUSTER/postgresql.conf" ]]; }

is_running() {
  cluster_exists || return 1
  pg_ctlcluster "$VER" "$CLUSTER" status >/dev/null 2>&1
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# True if role baton can log in over TCP on port $1 and run a query.
can_login() {
  command -v psql >/dev/null || return 1
  local out
  out="$(PGCONNECT_TIMEOUT=5 psql -X -q -At -w -d "postgresql://$ROLE:$PASSWORD@$HOST:$1/postgres" \
         -c 'select 1' 2>/dev/null </dev/null)" || return 1
  [[ "$out" == 1 ]]
}

# The port in the cluster's config; empty when the cluster does not exist.
configured_port() {
  local f p
  for f in "/etc/postgresql/$VER/$CLUSTER/conf.d/90-baton-local.conf" "/etc/postgresql/$VER/$CLUSTER/postgresql.conf"; do
    [[ -f "$f" ]] || continue
    p="$(sed -nE 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' "$f" | tail -n 1)"
    if [[ -n "$p" ]]; then echo "$p"; return 0; fi
  done
}

# Which server is in use, changing nothing: the cluster if it runs (on its
# configured port), else a server `start` reused, else the cluster's configured
# port or the default. Sets VER (empty when not installed), PORT and REUSED.
load_state() {
  local p
  REUSED=0; PORT="$DEFAULT_PORT"; VER=""
  if is_installed; then
    VER="$(pick_version)"
    if cluster_exists; then
      p="$(configured_port)"
      PORT="${p:-$DEFAULT_PORT}"
      if is_running; then return 0; fi
    fi
  fi
  p="$(cat "$REUSED_FILE" 2>/dev/null || true)"
  if [[ "$p" =~ ^[0-9]+$ ]]; then PORT="$p"; REUSED=1; fi
}

own_running() { [[ -n "$VER" ]] && ((REUSED == 0)) && is_running; }

# True if a server answers on the unix socket for port $1 (a stale socket file does not count).
socket_in_use() {
  [[ -S "$SOCKET_DIR/.s.PGSQL.$1" ]] || return 1
  local rc=0
  pg_isready -q -h "$SOCKET_DIR" -p "$1" -t 2 || rc=$?
  ((rc <= 1))
}

# A free port for the cluster: the default, else the configured one, else the
# next free one above the default. Free = nothing answers on TCP or on the unix
# socket of that number.
choose_port() {
  local p conf
  conf="$(configured_port)"
  for p in "$DEFAULT_PORT" ${conf:+"$conf"} $(seq $((DEFAULT_PORT + 1)) $((DEFAULT_PORT + 100))); do
    ((p <= 65535)) || break
    if ! port_open "$p" && ! socket_in_use "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found from $DEFAULT_PORT upwards"
}

log_file() { echo "/var/log/postgresql/postgresql-$VER-$CLUSTER.log"; }

as_postgres() {
  if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
}

# psql over the unix socket as the postgres superuser; over TCP as role baton
# on a reused server.
psql_admin() {
  if ((REUSED)); then
    PGOPTIONS="-c client_min_messages=warning" PGCONNECT_TIMEOUT=5 \
      psql -X -q -At -w -v ON_ERROR_STOP=1 -d "postgresql://$ROLE:$PASSWORD@$HOST:$PORT/postgres" "$@"
  else
    as_postgres env PGOPTIONS="-c client_min_messages=warning" \
      psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PORT" -d postgres "$@"
  fi
}

# Write $2 to file $1 (owned by postgres) only if it differs; sets CONF_CHANGED=1 then.
write_if_changed() {
  local f="$1" content="$2"
  if [[ -f "$f" ]] && [[ "$(cat "$f")" == "$content" ]]; then return 0; fi
  printf '%s\n' "$content" >"$f"
  chown postgres:postgres "$f"
  CONF_CHANGED=1
}

# Create the cluster if missing and (re)write its config; CONF_CHANGED=1 if anything changed.
configure() {
  local confdir="/etc/postgresql/$VER/$CLUSTER"
  CONF_CHANGED=0
  if ! cluster_exists; then
    pg_createcluster "$VER" "$CLUSTER" --port "$PORT" --locale C.UTF-8 --encoding UTF8 \
      --start-conf manual >/dev/null 2>&1 \
      || die "pg_createcluster $VER $CLUSTER failed (is port $PORT taken by another cluster? see pg_lsclusters)"
  fi
  mkdir -p "$confdir/conf.d"
  grep -qE "^[[:space:]]*include_dir[[:space:]]*=[[:space:]]*'conf.d'" "$confdir/postgresql.conf" \
    || echo "include_dir = 'conf.d'" >>"$confdir/postgresql.conf"
  # port also lives in postgresql.conf itself (pg_lsclusters reads it from there)
  sed -i -E "s/^[#[:space:]]*port[[:space:]]*=.*/port = $PORT/" "$confdir/postgresql.conf"
  write_if_changed "$confdir/conf.d/90-baton-local.conf" "# managed by deploy/local/postgres.sh
listen_addresses = '$HOST'
port = $PORT
max_connections = 200
shared_buffers = 128MB
# durability stays on: tests exercise crash recovery
fsync = on
synchronous_commit = on
full_page_writes = on
password_encryption = 'scram-sha-256'
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '"
  write_if_changed "$confdir/pg_hba.conf" "# managed by deploy/local/postgres.sh
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  peer
host    all       all   127.0.0.1/32   scram-sha-256"
}

wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT))
  until pg_isready -q -h "$HOST" -p "$PORT" -t 2 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      echo "---- last lines of $(log_file) ----" >&2
      tail -n 25 "$(log_file)" >&2 2>/dev/null || true
      die "PostgreSQL $VER/$CLUSTER not ready on $HOST:$PORT after ${START_TIMEOUT}s"
    fi
    sleep 0.3
  done
}

pg_start_cluster() {
  local out
  if ! out="$(pg_ctlcluster "$VER" "$CLUSTER" start 9>&- 2>&1)"; then
    echo "$out" >&2
    echo "---- last lines of $(log_file) ----" >&2
    tail -n 25 "$(log_file)" >&2 2>/dev/null || true
    die "pg_ctlcluster $VER $CLUSTER start failed"
  fi
}

ensure_role() {
  psql_admin <<SQL
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') THEN
    CREATE ROLE $ROLE LOGIN SUPERUSER CREATEDB PASSWORD '$PASSWORD';
  ELSIF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'
                    AND rolcanlogin AND rolsuper AND rolcreatedb) THEN
    ALTER ROLE $ROLE LOGIN SUPERUSER CREATEDB PASSWORD '$PASSWORD';
  END IF;
END
\$\$;
SQL
}

check_names() {
  local n
  (($#)) || die "no database name given"
  for n in "$@"; do
    [[ "$n" =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]] || die "invalid database name '$n' (letters, digits, _)"
  done
}

create_dbs() {
  local n
  for n in "$@"; do
    if [[ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$n'")" ]]; then
      psql_admin -c "CREATE DATABASE \"$n\" OWNER $ROLE" >/dev/null
    fi
  done
}

drop_dbs() {
  local n
  for n in "$@"; do
    psql_admin -c "DROP DATABASE IF EXISTS \"$n\" WITH (FORCE)" >/dev/null
  done
}

# Make a server available: the running cluster (kept on its port), else a
# server on the default port that accepts the baton login (reused), else the
# cluster started on a free port. Then ensure role and default DBs. Quiet;
# NOTE says why the port differs from the default.
up() {
  NOTE=""
  load_state
  if own_running; then
    rm -f "$REUSED_FILE"
    configure
    if ((CONF_CHANGED)); then
      pg_ctlcluster "$VER" "$CLUSTER" restart >/dev/null 9>&- 2>&1 || pg_start_cluster
    fi
  elif port_open "$DEFAULT_PORT" && can_login "$DEFAULT_PORT"; then
    PORT="$DEFAULT_PORT"; REUSED=1
    echo "$PORT" >"$REUSED_FILE"
    create_dbs "${DEFAULT_DBS[@]}"
    return 0
  else
    REUSED=0
    rm -f "$REUSED_FILE"
    ensure_installed
    VER="$(pick_version)"
    PORT="$(choose_port)"
    ((PORT == DEFAULT_PORT)) || NOTE=" (port $DEFAULT_PORT in use by something else)"
    configure
    pg_start_cluster
  fi
  wait_ready
  ensure_role
  create_dbs "${DEFAULT_DBS[@]}"
}

# The status line after up().
up_line() {
  if ((REUSED)); then
    echo "postgres: reusing the server already serving $(base_url)"
  else
    echo "postgres $VER/$CLUSTER: $1 at $(base_url)$NOTE ($2s)"
  fi
}

cmd_start() {
  lock
  local t0=$SECONDS
  up
  up_line up "$((SECONDS - t0))"
}

cmd_stop() {
  lock
  load_state
  if ((REUSED)); then
    rm -f "$REUSED_FILE"
    echo "postgres: not ours (reused server at $(base_url)), left running"
    return 0
  fi
  if [[ -z "$VER" ]]; then echo "postgres: not installed"; return 0; fi
  if is_running; then
    pg_ctlcluster "$VER" "$CLUSTER" stop -m fast >/dev/null 2>&1 \
      || pg_ctlcluster "$VER" "$CLUSTER" stop -m immediate \
      || die "could not stop PostgreSQL $VER/$CLUSTER"
    echo "postgres $VER/$CLUSTER: stopped"
  else
    echo "postgres $VER/$CLUSTER: not running"
  fi
}

cmd_restart() {
  local mode=fast
  case "${1:-}" in
    "") ;;
    --immediate) mode=immediate ;;
    *) die "usage: postgres.sh restart [--immediate]" ;;
  esac
  lock
  local t0=$SECONDS
  load_state
  ((REUSED == 0)) || die "the server at $(base_url) was not started by this script (reused); not restarting it"
  if ! own_running; then
    up
    up_line up "$((SECONDS - t0))"
    return 0
  fi
  NOTE=""
  configure
  pg_ctlcluster "$VER" "$CLUSTER" stop -m "$mode" >/dev/null 2>&1 \
    || die "could not stop PostgreSQL $VER/$CLUSTER (-m $mode)"
  pg_start_cluster
  wait_ready
  ensure_role
  create_dbs "${DEFAULT_DBS[@]}"
  up_line "restarted ($mode)" "$((SECONDS - t0))"
}

cmd_status() {
  load_state
  if ((REUSED)); then
    if can_login "$PORT"; then echo "postgres: reusing the server at $(base_url) (not ours)"; return 0; fi
    echo "postgres: reused server at $(base_url) does not accept the login"; exit 3
  fi
  if [[ -z "$VER" ]]; then echo "postgres: not installed"; exit 3; fi
  if ! cluster_exists; then echo "postgres $VER/$CLUSTER: not created"; exit 3; fi
  if is_running && pg_isready -q -h "$HOST" -p "$PORT" -t 2; then
    echo "postgres $VER/$CLUSTER: running at $(base_url)"
  elif is_running; then
    echo "postgres $VER/$CLUSTER: running but not accepting connections on $HOST:$PORT"; exit 3
  else
    echo "postgres $VER/$CLUSTER: stopped"; exit 3
  fi
}

# For createdb/dropdb/recreate: make sure the server is up (quietly).
ensure_up() {
  load_state
  if ((REUSED)) && can_login "$PORT"; then return 0; fi
  if own_running && pg_isready -q -h "$HOST" -p "$PORT" -t 2; then return 0; fi
  up
}

cmd_createdb() { check_names "$@"; lock; ensure_up; create_dbs "$@"; echo "postgres: databases ready: $*"; }
cmd_dropdb() { check_names "$@"; lock; ensure_up; drop_dbs "$@"; echo "postgres: databases dropped: $*"; }
cmd_recreate() {
  check_names "$@"; lock; ensure_up; drop_dbs "$@"; create_dbs "$@"
  echo "postgres: databases recreated: $*"
}

cmd_url() {
  load_state
  if [[ -n "${1:-}" ]]; then check_names "$1"; echo "$(base_url)/$1"; else base_url; fi
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  (($#)) && shift
  case "$cmd" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart "$@" ;;
    status) cmd_status ;;
    url) cmd_url "$@" ;;
    createdb) cmd_createdb "$@" ;;
    dropdb) cmd_dropdb "$@" ;;
    recreate) cmd_recreate "$@" ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) echo "postgres.sh: unknown command '$cmd'" >&2; usage >&2; exit 2 ;;
  esac
}

main "$@"
