#!/usr/bin/env bash
# Checks roles.sql and after-migrate.sql for real against a running PostgreSQL, in a throwaway
# database with throwaway roles that are dropped at the end (also on failure):
#   1. roles.sql as an admin;
#   2. the migration as the owner role: `kizuna migrate` when a kizuna binary is found
#      (KIZUNA_BIN, else $CARGO_TARGET_DIR or /var/cache/kizuna/target, release then debug),
#      else the migration files with psql plus a stand-in _sqlx_migrations table;
#   3. after-migrate.sql as the owner;
#   4. as the runtime role: SELECT/INSERT/UPDATE/DELETE (and SELECT … FOR UPDATE, bigserial
#      defaults, LISTEN/NOTIFY) on every table work; CREATE TABLE (in the schema, in public,
#      TEMPORARY), ALTER, DROP, TRUNCATE, CREATE SCHEMA and writing _sqlx_migrations fail;
#   6. with a kizuna binary: which CLI commands work under the runtime role (reported only).
#
# Admin access: KIZUNA_PG_ADMIN_URL (a superuser URL), else `su postgres -c psql` (root on a
# Debian PostgreSQL). The roles log in over TCP with a password at KIZUNA_PG_HOST:KIZUNA_PG_PORT
# (default 127.0.0.1:5432); the admin over KIZUNA_PG_ADMIN_URL or the local socket. Exit 0: all checks passed; 1: a check failed; 2: no PostgreSQL
# to check against.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
host="${KIZUNA_PG_HOST:-127.0.0.1}"
port="${KIZUNA_PG_PORT:-5432}"
suffix="$$_$RANDOM"
db="kizuna_rolecheck_$suffix"
schema="kizuna"
owner="kizuna_owner_rc_$suffix"
app="kizuna_app_rc_$suffix"
owner_pw="o$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
app_pw="a$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

export PGOPTIONS="-c client_min_messages=warning"
say() { printf '  [roles] %s\n' "$*"; }
fail() { printf '  [roles] FAIL: %s\n' "$*" >&2; exit 1; }

# admin_psql ARGS... < SQL: runs psql as the admin, reading SQL from stdin.
admin_psql() {
  if [[ -n "${KIZUNA_PG_ADMIN_URL:-}" ]]; then
    psql -X -q -v ON_ERROR_STOP=1 "$KIZUNA_PG_ADMIN_URL" "$@"
  else
    local quoted
    quoted="$(printf ' %q' "$@")"
    su postgres -s /bin/bash -c "cd / && PGOPTIONS='$PGOPTIONS' psql -X -q -v ON_ERROR_STOP=1 -p '$port' $quoted"
  fi
}

command -v psql >/dev/null || { echo "  [roles] psql not installed" >&2; exit 2; }
if [[ -z "${KIZUNA_PG_ADMIN_URL:-}" ]]; then
  if [[ $EUID -ne 0 ]] || ! id postgres >/dev/null 2>&1; then
    echo "  [roles] no KIZUNA_PG_ADMIN_URL and not root with a postgres user" >&2
    exit 2
  fi
  su postgres -s /bin/bash -c "cd / && psql -X -q -p '$port' -c 'select 1'" >/dev/null 2>&1 ||
    { echo "  [roles] PostgreSQL does not answer as the postgres user on port $port" >&2; exit 2; }
fi

cleanup() {
  admin_psql -d postgres -f - >/dev/null 2>&1 <<SQL || true
DROP DATABASE IF EXISTS "$db" WITH (FORCE);
DROP ROLE IF EXISTS "$app";
DROP ROLE IF EXISTS "$owner";
SQL
}
trap cleanup EXIT

owner_url="postgres://$owner:$owner_pw@$host:$port/$db"
app_url="postgres://$app:$app_pw@$host:$port/$db"
as_owner() { psql -X -q -v ON_ERROR_STOP=1 "$owner_url" "$@"; }
as_app() { psql -X -q -v ON_ERROR_STOP=1 "$app_url" "$@"; }

say "server: $(admin_psql -d postgres -Atc 'show server_version')"
say "1. roles.sql as admin (db $db, owner $owner, app $app)"
admin_psql -d postgres -v db="$db" -v schema="$schema" -v owner="$owner" -v owner_password="$owner_pw" \
  -v app="$app" -v app_password="$app_pw" -f - <"$here/roles.sql" >/dev/null
say "   second run (idempotent)"
admin_psql -d postgres -v db="$db" -v schema="$schema" -v owner="$owner" -v owner_password="$owner_pw" \
  -v app="$app" -v app_password="$app_pw" -f - <"$here/roles.sql" >/dev/null

bin="${KIZUNA_BIN:-}"
if [[ -z "$bin" ]]; then
  for t in "${CARGO_TARGET_DIR:-/var/cache/kizuna/target}"/{release,debug}/kizuna "$repo"/target/{release,debug}/kizuna; do
    [[ -x "$t" ]] && { bin="$t"; break; }
  done
fi
if [[ -n "$bin" ]]; then
  say "2. kizuna migrate as the owner ($bin)"
  env -u KIZUNA_CONFIG KIZUNA_DATABASE__URL="$owner_url" "$bin" migrate 2>&1 | sed 's/^/     /'
  [[ ${PIPESTATUS[0]} -eq 0 ]] || fail "kizuna migrate as the owner failed"
else
  say "2. no kizuna binary found: migrations with psql as the owner, plus a stand-in _sqlx_migrations"
  for f in "$repo"/services/loyalty-engine/migrations/*.sql; do as_owner -f "$f" >/dev/null; done
  as_owner -c 'CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,
    installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, checksum bytea NOT NULL,
    execution_time bigint NOT NULL)' >/dev/null
fi

tables="customers event_ledger consumer_offsets outbox output_log tier_overrides engine_clock churn_models _sqlx_migrations"
got="$(as_owner -Atc "select string_agg(tablename || ':' || tableowner, ' ' order by tablename) from pg_tables where schemaname = '$schema'")"
for t in $tables; do
  [[ " $got " == *" $t:$owner "* ]] || fail "table $schema.$t missing or not owned by $owner (have: $got)"
done
in_public="$(as_owner -Atc "select count(*) from pg_tables where schemaname = 'public'")"
[[ "$in_public" == 0 ]] || fail "the migration created $in_public table(s) in public instead of $schema"
say "   tables in schema $schema, all owned by $owner: $tables"

say "3. after-migrate.sql as the owner"
as_owner -v app="$app" -f - <"$here/after-migrate.sql" >/dev/null

say "4. the runtime role may read and write every table"
as_app -f - >/dev/null <<'SQL'
BEGIN;
INSERT INTO customers (customer_id, tier, lifetime_spend_minor, orders, home_partition, state)
  VALUES ('rc-1', 'member', 0, 0, 0, '{}');
UPDATE customers SET tier = 'silver', next_check_at = now() WHERE customer_id = 'rc-1';
SELECT * FROM customers WHERE customer_id = 'rc-1' FOR UPDATE;
INSERT INTO event_ledger (customer_id, event_id, occurred_at, kind, body, source)
  VALUES ('rc-1', 'e-1', now(), 'purchase', '{}', 'check');
INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) VALUES ('g', 'purchases', 0, 1)
  ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset;
SELECT * FROM consumer_offsets FOR UPDATE;
INSERT INTO outbox (ce_id, partition, customer_id, topic, key, payload, headers)
  VALUES ('c-1', 0, 'rc-1', 'loyalty.tier-changed', 'rc-1', 'x', '[]') RETURNING id;
INSERT INTO output_log (customer_id, ce_id, ce_type, caused_by, effective_at, payload)
  VALUES ('rc-1', gen_random_uuid(), 't', 'e-1', now(), '{}');
INSERT INTO tier_overrides (customer_id, previous_tier, tier, reason, set_by, set_at, expires_at)
  VALUES ('rc-1', 'member', 'gold', 'check', 'check', now(), now() + interval '1 day') RETURNING id;
INSERT INTO engine_clock (group_id, max_event_time) VALUES ('g', now());
INSERT INTO churn_models (as_of, r, alpha, a, b, log_likelihood, customers, report)
  VALUES (now(), 1, 1, 1, 1, 0, 1, 'check') RETURNING version;
SELECT max(version) FROM _sqlx_migrations;
SELECT pg_notify('kizuna_outbox', '');
LISTEN kizuna_outbox;
DELETE FROM outbox; DELETE FROM output_log; DELETE FROM tier_overrides; DELETE FROM engine_clock;
DELETE FROM churn_models; DELETE FROM consumer_offsets; DELETE FROM event_ledger; DELETE FROM customers;
COMMIT;
SQL
say "   ok: INSERT/SELECT/SELECT FOR UPDATE/UPDATE/DELETE on all 8 tables, sequences, LISTEN/NOTIFY, SELECT _sqlx_migrations"

say "5. the runtime role may not change the schema"
denied=0
for stmt in \
  "CREATE TABLE $schema.rc_evil (x int)" \
  "CREATE TABLE public.rc_evil (x int)" \
  "CREATE TABLE rc_evil (x int)" \
  "CREATE TEMPORARY TABLE rc_evil (x int)" \
  "CREATE SCHEMA rc_evil" \
  "CREATE INDEX rc_evil ON customers (updated_at)" \
  "ALTER TABLE customers ADD COLUMN rc_evil int" \
  "DROP TABLE outbox" \
  "TRUNCATE event_ledger" \
  "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (999, 'x', true, '\\x00', 0)" \
  "DELETE FROM _sqlx_migrations"; do
  if out="$(as_app -c "$stmt" 2>&1)"; then
    fail "runtime role was allowed: $stmt"
  elif [[ "$out" != *"permission denied"* && "$out" != *"must be owner"* ]]; then
    fail "unexpected error for '$stmt': $out"
  fi
  denied=$((denied + 1))
done
say "   ok: $denied DDL/privileged statements refused (permission denied / must be owner)"
if [[ -n "$bin" ]]; then
  say "6. kizuna under the runtime role with database.migrate_on_start = false"
  # The engine itself (`kizuna run`) needs Kafka too; the CLI commands below need only the
  # database. They report, without failing the check, whether they work under this role.
  for cmd in export-scores fit-model; do
    if out="$(env -u KIZUNA_CONFIG KIZUNA_DATABASE__URL="$app_url" KIZUNA_DATABASE__MIGRATE_ON_START=false \
        "$bin" "$cmd" 2>&1 >/dev/null)"; then
      say "   ok: kizuna $cmd"
    elif [[ "$out" == *"permission denied"* ]]; then
      say "   NOTE: kizuna $cmd is refused under the runtime role: ${out//$'\n'/ }"
      say "         (the CLI commands apply migrations before running, whatever migrate_on_start says;"
      say "          run them with the owner role until they honour it)"
    else
      say "   ok: kizuna $cmd ran under the runtime role and ended with: ${out##*$'\n'}"
    fi
  done
fi
say "all role checks passed; dropping $db, $app, $owner"
