#!/usr/bin/env bash
# Start the local stack: PostgreSQL, then one broker on 127.0.0.1:9092
# (KIZUNA_BROKER=kafka|tansu, default kafka), then a Schema Registry on
# 127.0.0.1:8081 (registry.sh; KIZUNA_REGISTRY=0 skips it). Idempotent. Logs go
# to stderr; the connection settings are printed on stdout at the end. Also
# shortens the kernel's writeback delay (writeback.sh; KIZUNA_TUNE_WRITEBACK=0
# skips it).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

broker="${KIZUNA_BROKER:-kafka}"
case "$broker" in
  kafka | tansu) ;;
  *) die "KIZUNA_BROKER must be kafka or tansu, not '$broker'" ;;
esac

acquire_lock
ensure_dirs
started=$SECONDS
if [[ "${KIZUNA_TUNE_WRITEBACK:-1}" != 0 ]]; then
  "$KIZUNA_LOCAL_DIR/writeback.sh" on
fi
"$KIZUNA_LOCAL_DIR/postgres.sh"
"$KIZUNA_LOCAL_DIR/$broker.sh" start
printf '%s\n' "$broker" >"$KIZUNA_STATE_DIR/broker"
registry_url=
if [[ "${KIZUNA_REGISTRY:-1}" != 0 ]]; then
  "$KIZUNA_LOCAL_DIR/registry.sh" start
  registry_url="http://127.0.0.1:${KIZUNA_REGISTRY_PORT:-8081}/apis/ccompat/v7"
fi
log "stack up in $((SECONDS - started))s (broker: $broker; state: $KIZUNA_STATE_DIR; cache: $KIZUNA_CACHE_DIR)"
cat <<SETTINGS
DATABASE_URL=postgres://kizuna:kizuna@127.0.0.1:5432/kizuna
KAFKA_BROKERS=$KIZUNA_BROKER_HOST:$KIZUNA_BROKER_PORT
KIZUNA_BROKER=$broker
SETTINGS
if [[ -n "$registry_url" ]]; then
  printf 'SCHEMA_REGISTRY_URL=%s\n' "$registry_url"
fi
