#!/usr/bin/env bash
# Kernel writeback for a host where PostgreSQL and Kafka share one disk:
#   writeback.sh on       write dirty pages back after 5 s, checked every 1 s
#                         (the previous values are kept in $KIZUNA_STATE_DIR)
#   writeback.sh off      restore the values saved by "on"
#   writeback.sh status   print the current values
#
# Why: PostgreSQL's growing tables and Kafka's log dirty the page cache at
# ~20 MB/s at 10k events/s. With Linux's defaults (dirty_expire_centisecs=3000,
# dirty_writeback_centisecs=500) the kernel writes a file's dirty pages back once
# they are 30 s old, all at once: ~800 MB in 2 s here, and every commit's WAL
# flush waits behind it (a 300-500 ms latency spike every 30 s). Writing back
# after 5 s keeps the bursts small. up.sh runs "on" (KIZUNA_TUNE_WRITEBACK=0 to
# skip it) and down.sh runs "off". Needs root; without it, says so and does
# nothing.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EXPIRE=/proc/sys/vm/dirty_expire_centisecs
WRITEBACK=/proc/sys/vm/dirty_writeback_centisecs
SAVED="$KIZUNA_STATE_DIR/writeback.saved"

current() { printf '%s %s\n' "$(cat "$EXPIRE")" "$(cat "$WRITEBACK")"; }

writable() {
  if [[ ! -w "$EXPIRE" || ! -w "$WRITEBACK" ]]; then
    log "cannot change kernel writeback (needs root); leaving vm.dirty_expire_centisecs=$(cat "$EXPIRE") as it is"
    return 1
  fi
}

case "${1:-status}" in
  on)
    writable || exit 0
    ensure_dirs
    [[ -f "$SAVED" ]] || current >"$SAVED"
    echo 500 >"$EXPIRE"
    echo 100 >"$WRITEBACK"
    log "kernel writeback: dirty pages written after 5 s, checked every 1 s (was: $(cat "$SAVED"); down.sh restores it)"
    ;;
  off)
    [[ -f "$SAVED" ]] || exit 0
    writable || exit 0
    read -r expire writeback <"$SAVED"
    echo "$expire" >"$EXPIRE"
    echo "$writeback" >"$WRITEBACK"
    rm -f "$SAVED"
    log "kernel writeback restored: vm.dirty_expire_centisecs=$expire vm.dirty_writeback_centisecs=$writeback"
    ;;
  status)
    read -r expire writeback < <(current)
    printf 'vm.dirty_expire_centisecs=%s vm.dirty_writeback_centisecs=%s\n' "$expire" "$writeback"
    ;;
  *) die "usage: $0 on|off|status" ;;
esac
