#!/usr/bin/env bash
# Restart the broker that runs now (the one recorded in $KIZUNA_STATE_DIR/broker
# or found by pid file), keeping its data: Kafka keeps everything; tansu with
# memory storage loses all topics and messages (a warning is printed).
# With no broker running, starts ${KIZUNA_BROKER:-kafka}.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

acquire_lock
ensure_dirs
if broker="$(running_broker)"; then
  log "restarting $broker"
else
  broker="$(cat "$KIZUNA_STATE_DIR/broker" 2>/dev/null || true)"
  broker="${broker:-${KIZUNA_BROKER:-kafka}}"
  warn "no broker of ours is running; starting $broker"
fi
started=$SECONDS
"$KIZUNA_LOCAL_DIR/$broker.sh" restart
log "$broker restarted in $((SECONDS - started))s"
