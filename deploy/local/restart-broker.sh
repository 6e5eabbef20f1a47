#!/usr/bin/env bash
# Restart one broker, keeping its data: Kafka keeps everything; tansu with
# memory storage loses all topics and messages (a warning is printed). The
# other broker is not touched.
#
#   restart-broker.sh kafka|tansu
#   restart-broker.sh            the one of ours that runs (fails if both or none run)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

acquire_lock
ensure_dirs
broker="${1:-}"
if [[ -z "$broker" ]]; then
  running="$(running_brokers)"
  case "$(printf '%s' "$running" | grep -c .)" in
    1) broker="$running" ;;
    0) die "no broker of ours is running; name the one to start: $0 kafka|tansu" ;;
    *) die "both brokers run; name the one to restart: $0 kafka|tansu" ;;
  esac
fi
broker_marker "$broker" >/dev/null # dies on an unknown name
if running_pid "$broker" "$(broker_marker "$broker")" >/dev/null; then
  log "restarting $broker"
else
  warn "$broker is not running; starting it"
fi
started=$SECONDS
"$KIZUNA_LOCAL_DIR/$broker.sh" restart
log "$broker restarted in $((SECONDS - started))s"
