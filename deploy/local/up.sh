#!/usr/bin/env bash
# Start the local stack: PostgreSQL, then the broker(s) KIZUNA_BROKER names:
#   kafka (default)  Apache Kafka on 127.0.0.1:9092 (KIZUNA_KAFKA_PORT)
#   tansu            tansu on 127.0.0.1:9094 (KIZUNA_TANSU_PORT)
#   both             both at once (what the tests use: each test runs on each broker)
# A broker not named is left as it is (running or not). Then a Schema Registry
# on 127.0.0.1:8081 (registry.sh; KIZUNA_REGISTRY=0 skips it). Idempotent. Logs
# go to stderr; the connection settings are printed on stdout at the end. Also
# shortens the kernel's writeback delay (writeback.sh; KIZUNA_TUNE_WRITEBACK=0
# skips it).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

selection="${KIZUNA_BROKER:-kafka}"
brokers="$(brokers_of "$selection")"

acquire_lock
ensure_dirs
started=$SECONDS
if [[ "${KIZUNA_TUNE_WRITEBACK:-1}" != 0 ]]; then
  "$KIZUNA_LOCAL_DIR/writeback.sh" on
fi
"$KIZUNA_LOCAL_DIR/postgres.sh"
for broker in $brokers; do
  "$KIZUNA_LOCAL_DIR/$broker.sh" start
done
first="${brokers%%$'\n'*}"
record_broker "$first"
registry_url=
if [[ "${KIZUNA_REGISTRY:-1}" != 0 ]]; then
  "$KIZUNA_LOCAL_DIR/registry.sh" start
  registry_url="http://127.0.0.1:${KIZUNA_REGISTRY_PORT:-8081}/apis/ccompat/v7"
fi
log "stack up in $((SECONDS - started))s (broker: $selection; state: $KIZUNA_STATE_DIR; cache: $KIZUNA_CACHE_DIR)"
printf 'DATABASE_URL=%s\n' "postgres://kizuna:kizuna@127.0.0.1:5432/kizuna"
# KAFKA_BROKERS: the one broker, or Apache Kafka when both run.
printf 'KAFKA_BROKERS=%s\n' "$(broker_address "$first")"
printf 'KIZUNA_BROKER=%s\n' "$selection"
# What the end-to-end tests (crate kizuna-e2e) read to reach each broker.
for broker in $brokers; do
  case "$broker" in
    kafka) printf 'KIZUNA_TEST_KAFKA=%s\n' "$(broker_address kafka)" ;;
    tansu) printf 'KIZUNA_TEST_TANSU=%s\n' "$(broker_address tansu)" ;;
  esac
done
if [[ -n "$registry_url" ]]; then
  printf 'SCHEMA_REGISTRY_URL=%s\n' "$registry_url"
fi
