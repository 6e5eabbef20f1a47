#!/usr/bin/env bash
# Stop what the kizuna-stack scripts started, and nothing else:
#   down.sh          both brokers (kafka and tansu, by pid file; and the secured
#                    Kafka of kafka-secure.sh if it runs), the Schema
#                    Registry (registry.sh), Jaeger (jaeger.sh, if it runs)
#                    and PostgreSQL (only if postgres.sh
#                    started the cluster); restores the kernel writeback
#                    settings up.sh changed
#   down.sh broker   just the brokers (all three)
# Data stays in $KIZUNA_STATE_DIR (tansu memory storage is lost, by nature).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

what="${1:-all}"
case "$what" in
  all | broker) ;;
  *) die "usage: $0 [broker]" ;;
esac

acquire_lock
ensure_dirs
stop_pid kafka "$KAFKA_MARKER"
stop_pid tansu "$TANSU_MARKER"
"$KIZUNA_LOCAL_DIR/kafka-secure.sh" stop
rm -f "$KIZUNA_STATE_DIR/broker"
[[ "$what" == broker ]] && exit 0

"$KIZUNA_LOCAL_DIR/registry.sh" stop
"$KIZUNA_LOCAL_DIR/jaeger.sh" stop

marker="$KIZUNA_STATE_DIR/postgres.started"
if [[ -f "$marker" ]]; then
  read -r pg_version pg_cluster <"$marker" || true
  if [[ -n "${pg_version:-}" && -n "${pg_cluster:-}" ]] &&
    pg_lsclusters -h 2>/dev/null | awk -v v="$pg_version" -v c="$pg_cluster" '$1 == v && $2 == c && $4 == "online" { f = 1 } END { exit !f }'; then
    log "stopping PostgreSQL cluster $pg_version/$pg_cluster (started by kizuna-stack)"
    pg_ctlcluster "$pg_version" "$pg_cluster" stop -m fast >&2 || die "pg_ctlcluster $pg_version $pg_cluster stop failed"
    log "PostgreSQL stopped"
  else
    log "PostgreSQL cluster ${pg_version:-?}/${pg_cluster:-?} (started by kizuna-stack) is not running"
  fi
  rm -f "$marker"
else
  log "PostgreSQL was not started by kizuna-stack; leaving it alone"
fi
"$KIZUNA_LOCAL_DIR/writeback.sh" off
