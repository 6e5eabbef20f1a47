#!/usr/bin/env bash
# Ensure PostgreSQL runs on 127.0.0.1:5432 with role/database kizuna (password
# kizuna, LOGIN CREATEDB). Reuses a server that already listens there;
# otherwise starts (creating if needed) the Debian cluster and records that we
# started it in $KIZUNA_STATE_DIR/postgres.started, so down.sh stops only that.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_HOST=127.0.0.1
PG_PORT=5432
PG_CLUSTER="${KIZUNA_PG_CLUSTER:-main}"
PG_MAX_CONNECTIONS="${KIZUNA_PG_MAX_CONNECTIONS:-200}"
PG_MARKER="$KIZUNA_STATE_DIR/postgres.started"
DB_URL="postgres://kizuna:kizuna@$PG_HOST:$PG_PORT/kizuna"

acquire_lock
ensure_dirs

# ---- install ---------------------------------------------------------------
installed_pg_version() {
  # Highest installed server major version, e.g. 15.
  local d v best=""
  for d in /usr/lib/postgresql/*/bin/postgres; do
    [[ -x "$d" ]] || continue
    v="${d#/usr/lib/postgresql/}"
    v="${v%%/*}"
    if [[ -z "$best" ]] || ((v > best)); then best="$v"; fi
  done
  printf '%s\n' "$best"
}

PG_VERSION="${KIZUNA_PG_VERSION:-$(installed_pg_version)}"
if [[ -z "$PG_VERSION" ]] || ! command -v pg_ctlcluster >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
  apt_install postgresql
  PG_VERSION="${KIZUNA_PG_VERSION:-$(installed_pg_version)}"
  [[ -n "$PG_VERSION" ]] || die "postgresql installed but no server binary found under /usr/lib/postgresql"
fi

# psql as the postgres superuser over the local unix socket of the server on
# port 5432 (peer auth, the Debian default).
psql_super() {
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres)
}

# ---- start -----------------------------------------------------------------
cluster_field() { # cluster_field FIELD -> value from pg_lsclusters for our cluster
  pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" -v f="$1" \
    '$1 == v && $2 == c { print $f }'
}

pg_answers() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }

if port_open "$PG_HOST" "$PG_PORT"; then
  if [[ -f "$PG_MARKER" ]]; then
    log "PostgreSQL already running on $PG_HOST:$PG_PORT (cluster $(cat "$PG_MARKER"), started by kizuna-stack)"
  else
    log "something already listens on $PG_HOST:$PG_PORT; reusing it (it will not be stopped by down.sh)"
  fi
else
  created=0
  if [[ -z "$(cluster_field 1)" ]]; then
    log "creating PostgreSQL $PG_VERSION cluster '$PG_CLUSTER' on port $PG_PORT"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" --port "$PG_PORT" >&2
    created=1
  fi
  if [[ "$(cluster_field 4)" == online ]]; then
    die "cluster $PG_VERSION/$PG_CLUSTER is running but does not accept TCP connections on $PG_HOST:$PG_PORT; check listen_addresses in /etc/postgresql/$PG_VERSION/$PG_CLUSTER/postgresql.conf"
  fi
  port="$(cluster_field 3)"
  [[ "$port" == "$PG_PORT" ]] ||
    die "cluster $PG_VERSION/$PG_CLUSTER is configured for port $port, not $PG_PORT; set KIZUNA_PG_CLUSTER to a cluster on $PG_PORT"
  # We control this cluster's lifecycle (we create and/or start it), so give
  # it room for tests that open many connections. Idempotent drop-in file.
  confd="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/conf.d"
  if [[ -d "$confd" ]]; then
    conf="$confd/90-kizuna-local.conf"
    # A write-heavy workload: a buffer cache that holds the hot customers and ledger index, and
    # checkpoints far enough apart that full-page writes do not dominate the WAL.
    want="# written by kizuna deploy/local/postgres.sh; safe to delete
max_connections = $PG_MAX_CONNECTIONS
listen_addresses = 'localhost'
shared_buffers = ${KIZUNA_PG_SHARED_BUFFERS:-1GB}
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = lz4"
    if [[ ! -f "$conf" || "$(cat "$conf")" != "$want" ]]; then
      log "writing $conf (max_connections=$PG_MAX_CONNECTIONS, shared_buffers=${KIZUNA_PG_SHARED_BUFFERS:-1GB})"
      printf '%s\n' "$want" >"$conf"
    fi
  fi
  log "starting PostgreSQL cluster $PG_VERSION/$PG_CLUSTER (pg_ctlcluster)"
  if ! pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start >&2 9>&-; then
    show_log_tail "/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"
    die "pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed"
  fi
  printf '%s %s\n' "$PG_VERSION" "$PG_CLUSTER" >"$PG_MARKER"
  ((created)) && printf 'created\n' >"$KIZUNA_STATE_DIR/postgres.created"
fi

if ! wait_until 60 0.5 pg_answers; then
  show_log_tail "/var/log/postgresql/postgresql-$PG_VERSION-$PG_CLUSTER.log"
  die "PostgreSQL on $PG_HOST:$PG_PORT did not accept connections within 60s"
fi

# ---- role and database -----------------------------------------------------
provision() {
  psql_super <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kizuna') THEN
    CREATE ROLE kizuna LOGIN CREATEDB PASSWORD 'kizuna';
  ELSE
    ALTER ROLE kizuna LOGIN CREATEDB PASSWORD 'kizuna';
  END IF;
END
$$;
SELECT 'CREATE DATABASE kizuna OWNER kizuna'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'kizuna')
\gexec
ALTER DATABASE kizuna OWNER TO kizuna;
SQL
}

if id postgres >/dev/null 2>&1 && provision 2>"$KIZUNA_STATE_DIR/postgres-provision.err"; then
  rm -f "$KIZUNA_STATE_DIR/postgres-provision.err"
  log "role kizuna (LOGIN CREATEDB) and database kizuna are in place"
else
  # A reused server we cannot administer: fine if kizuna can already log in.
  if PGCONNECT_TIMEOUT=5 psql -X -q "$DB_URL" -c 'select 1' >/dev/null 2>&1; then
    warn "could not administer the server as 'postgres' ($(head -c 300 "$KIZUNA_STATE_DIR/postgres-provision.err")); kizuna can log in, so going on"
  else
    cat "$KIZUNA_STATE_DIR/postgres-provision.err" >&2 || true
    die "could not create role/database kizuna as the postgres superuser, and $DB_URL does not work"
  fi
fi

# ---- check password auth over TCP ------------------------------------------
if ! out="$(PGCONNECT_TIMEOUT=5 psql -X -A -t "$DB_URL" -c 'select 1' 2>&1)" || [[ "$out" != "1" ]]; then
  die "password login over TCP failed: psql $DB_URL -> $out (check pg_hba.conf: host all all 127.0.0.1/32 scram-sha-256)"
fi
max_conn="$(PGCONNECT_TIMEOUT=5 psql -X -A -t "$DB_URL" -c 'show max_connections')"
log "PostgreSQL ready: DATABASE_URL=$DB_URL (max_connections=$max_conn)"
