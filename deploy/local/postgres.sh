#!/usr/bin/env bash
# Local PostgreSQL for development and tests: a dedicated Debian cluster
# "baton" (pg_createcluster), listening on 127.0.0.1:55432 only.
# Installs the `postgresql` apt package when the server is missing.
#
# Usage: deploy/local/postgres.sh <command> [args]
#   start                 install if needed, create/configure the cluster, start it,
#                         wait for pg_isready, ensure role + default databases
#   stop                  fast shutdown (no-op when stopped)
#   restart [--immediate] stop (fast, or immediate = crash-like, WAL recovery on start)
#                         and start again, wait until ready
#   status                one line; exit 0 when running, 3 otherwise
#   url [DB]              print postgresql://baton:baton@127.0.0.1:55432[/DB]
#   createdb NAME...      create databases if missing (starts the server if needed)
#   dropdb NAME...        drop databases if present (WITH (FORCE))
#   recreate NAME...      drop + create (clean test databases)
#
# Role `baton` (password `baton`, LOGIN SUPERUSER CREATEDB) owns the databases
# baton_lead_ingest, baton_scoring, baton_handoff, baton_metrics.
# Environment: PG_START_TIMEOUT (default 60 s).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"

CLUSTER=baton
PORT=55432
HOST=127.0.0.1
ROLE=baton
PASSWORD=baton
DEFAULT_DBS=(baton_lead_ingest baton_scoring baton_handoff baton_metrics)
SOCKET_DIR=/var/run/postgresql
START_TIMEOUT="${PG_START_TIMEOUT:-60}"

die() { echo "postgres.sh: error: $*" >&2; exit 1; }

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

log_file() { echo "/var/log/postgresql/postgresql-$VER-$CLUSTER.log"; }

as_postgres() {
  if command -v runuser >/dev/null; then runuser -u postgres -- "$@"; else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
}

# psql over the unix socket as the postgres superuser.
psql_admin() {
  as_postgres env PGOPTIONS="-c client_min_messages=warning" \
    psql -X -q -At -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PORT" -d postgres "$@"
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

# Install, configure, start, ensure role and default DBs. Quiet.
up() {
  ensure_installed
  VER="$(pick_version)"
  configure
  if is_running; then
    if ((CONF_CHANGED)); then
      pg_ctlcluster "$VER" "$CLUSTER" restart >/dev/null 9>&- 2>&1 || pg_start_cluster
    fi
  else
    pg_start_cluster
  fi
  wait_ready
  ensure_role
  create_dbs "${DEFAULT_DBS[@]}"
}

cmd_start() {
  lock
  local t0=$SECONDS
  up
  echo "postgres $VER/$CLUSTER: up at $(base_url) ($((SECONDS - t0))s)"
}

cmd_stop() {
  lock
  if ! is_installed; then echo "postgres: not installed"; return 0; fi
  VER="$(pick_version)"
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
  ensure_installed
  VER="$(pick_version)"
  configure
  if is_running; then
    pg_ctlcluster "$VER" "$CLUSTER" stop -m "$mode" >/dev/null 2>&1 \
      || die "could not stop PostgreSQL $VER/$CLUSTER (-m $mode)"
  fi
  pg_start_cluster
  wait_ready
  ensure_role
  create_dbs "${DEFAULT_DBS[@]}"
  echo "postgres $VER/$CLUSTER: restarted ($mode) at $(base_url) ($((SECONDS - t0))s)"
}

cmd_status() {
  if ! is_installed; then echo "postgres: not installed"; exit 3; fi
  VER="$(pick_version)"
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
  ensure_installed
  VER="$(pick_version)"
  if cluster_exists && is_running && pg_isready -q -h "$HOST" -p "$PORT" -t 2; then return 0; fi
  up
}

cmd_createdb() { check_names "$@"; lock; ensure_up; create_dbs "$@"; echo "postgres: databases ready: $*"; }
cmd_dropdb() { check_names "$@"; lock; ensure_up; drop_dbs "$@"; echo "postgres: databases dropped: $*"; }
cmd_recreate() {
  check_names "$@"; lock; ensure_up; drop_dbs "$@"; create_dbs "$@"
  echo "postgres: databases recreated: $*"
}

cmd_url() {
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
