#!/usr/bin/env bash
# Jaeger (v2, the OpenTelemetry Collector-based binary of module version v1.75.0), built from the
# Go module proxy once into $KIZUNA_CACHE_DIR/bin, run with in-memory storage as the local OTLP
# receiver of the engine's traces (README, "Traces"). Loopback only:
#   OTLP gRPC  127.0.0.1:${KIZUNA_JAEGER_OTLP_GRPC_PORT:-4317}
#   OTLP HTTP  127.0.0.1:${KIZUNA_JAEGER_OTLP_HTTP_PORT:-4318}   (telemetry.otlp_endpoint)
#   query API  127.0.0.1:${KIZUNA_JAEGER_QUERY_PORT:-16686}     (/api/traces/<trace id>, the UI)
#   query gRPC 127.0.0.1:${KIZUNA_JAEGER_QUERY_GRPC_PORT:-16685}
#
#   jaeger.sh [start]   build (first run only: minutes), start, wait until the query API answers;
#                       prints KIZUNA_JAEGER_OTLP_HTTP=… and KIZUNA_JAEGER_QUERY=… on stdout
#   jaeger.sh stop      stop the Jaeger these scripts started (its traces are lost)
#   jaeger.sh status    exit 0 if our Jaeger runs and its query API answers
#   jaeger.sh build     only build the binary (cached)
#   jaeger.sh env       print the addresses (it need not run)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

JAEGER_VERSION="${KIZUNA_JAEGER_VERSION:-v1.75.0}"
JAEGER_MODULE=github.com/jaegertracing/jaeger
JAEGER_BIN="$KIZUNA_CACHE_DIR/bin/jaeger-$JAEGER_VERSION"
JAEGER_HOST=127.0.0.1
OTLP_GRPC_PORT="${KIZUNA_JAEGER_OTLP_GRPC_PORT:-4317}"
OTLP_HTTP_PORT="${KIZUNA_JAEGER_OTLP_HTTP_PORT:-4318}"
QUERY_PORT="${KIZUNA_JAEGER_QUERY_PORT:-16686}"
QUERY_GRPC_PORT="${KIZUNA_JAEGER_QUERY_GRPC_PORT:-16685}"
JAEGER_STATE="$KIZUNA_STATE_DIR/jaeger"
JAEGER_CONFIG="$JAEGER_STATE/config.yaml"
JAEGER_OUT="$JAEGER_STATE/jaeger.out"
# Counted from the exec, after the binary has been read into memory (see start). A fresh machine's
# disk can be slow on first reads; a Go binary that has been read starts in about a second.
JAEGER_READY_TIMEOUT="${KIZUNA_JAEGER_READY_TIMEOUT:-120}"
# Must appear in the process's command line for a recorded pid to count as ours.
JAEGER_MARKER="--config $JAEGER_CONFIG"

for port in "$OTLP_GRPC_PORT" "$OTLP_HTTP_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT"; do
  if ! [[ "$port" =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
    die "Jaeger ports must be TCP port numbers, not '$port'"
  fi
done

find_go() {
  local go
  go="$(command -v go || true)"
  [[ -z "$go" && -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go
  if [[ -z "$go" ]]; then
    apt_install golang-go
    go="$(command -v go)"
  fi
  printf '%s\n' "$go"
}

# build: a scratch module that requires Jaeger as a tool (`go get -tool`), then `go build`. The
# module cache is the project's ($KIZUNA_CACHE_DIR/go/mod); the build cache is temporary and
# removed afterwards (only the binary is kept). GOTOOLCHAIN=auto fetches the Go version Jaeger
# asks for through the proxy when the local one is older.
build() {
  if [[ -x "$JAEGER_BIN" ]]; then
    log "Jaeger $JAEGER_VERSION cached at $JAEGER_BIN"
    return 0
  fi
  local go work started=$SECONDS
  mkdir -p "$KIZUNA_CACHE_DIR/bin"
  # One build at a time (not under the stack's lock: it takes minutes).
  exec 8>"$KIZUNA_CACHE_DIR/bin/.jaeger-build.lock"
  flock -w 1800 8 || die "another Jaeger build holds $KIZUNA_CACHE_DIR/bin/.jaeger-build.lock"
  if [[ -x "$JAEGER_BIN" ]]; then
    log "Jaeger $JAEGER_VERSION was built meanwhile: $JAEGER_BIN"
    exec 8>&-
    return 0
  fi
  go="$(find_go)"
  work="$(mktemp -d "${TMPDIR:-/tmp}/kizuna-jaeger-build.XXXXXX")"
  log "building Jaeger $JAEGER_VERSION from the Go module proxy into $JAEGER_BIN (first run only, several minutes; log $work/build.log)"
  (
    cd "$work"
    export GOPATH="$KIZUNA_CACHE_DIR/go" GOMODCACHE="$KIZUNA_CACHE_DIR/go/mod" GOCACHE="$work/gocache" \
      GOTOOLCHAIN=auto GOFLAGS=-mod=mod
    printf 'module kizuna.local/jaeger-build\n\ngo 1.24\n' >go.mod
    "$go" get -tool "$JAEGER_MODULE/cmd/jaeger@$JAEGER_VERSION" &&
      "$go" build -trimpath -o "$JAEGER_BIN.tmp" "$JAEGER_MODULE/cmd/jaeger"
  ) >"$work/build.log" 2>&1 || {
    show_log_tail "$work/build.log" 40
    rm -f "$JAEGER_BIN.tmp"
    die "building Jaeger $JAEGER_VERSION failed (full log: $work/build.log)"
  }
  mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
  # The Go build cache is large and only this build used it.
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
  exec 8>&-
  log "built Jaeger $JAEGER_VERSION in $((SECONDS - started))s ($(du -h "$JAEGER_BIN" | cut -f1))"
}

write_config() {
  mkdir -p "$JAEGER_STATE"
  cat >"$JAEGER_CONFIG" <<EOF
# Written by deploy/local/jaeger.sh: OTLP in, in-memory storage, the query API; loopback only.
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memory_store:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memory_store
    http:
      endpoint: "$JAEGER_HOST:$QUERY_PORT"
    grpc:
      endpoint: "$JAEGER_HOST:$QUERY_GRPC_PORT"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: "$JAEGER_HOST:$OTLP_GRPC_PORT"
      http:
        endpoint: "$JAEGER_HOST:$OTLP_HTTP_PORT"
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory_store
EOF
}

query_url() { printf 'http://%s:%s\n' "$JAEGER_HOST" "$QUERY_PORT"; }

# The query API answers (it lists the services it has seen).
answers() { curl -fsS -m 3 -o /dev/null "$(query_url)/api/services" 2>/dev/null; }

print_env() {
  printf 'KIZUNA_JAEGER_OTLP_HTTP=http://%s:%s\n' "$JAEGER_HOST" "$OTLP_HTTP_PORT"
  printf 'KIZUNA_JAEGER_OTLP_GRPC=http://%s:%s\n' "$JAEGER_HOST" "$OTLP_GRPC_PORT"
  printf 'KIZUNA_JAEGER_QUERY=%s\n' "$(query_url)"
}

wait_ready() {
  local deadline=$((SECONDS + JAEGER_READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    running_pid jaeger "$JAEGER_MARKER" >/dev/null || return 1
    answers && return 0
    sleep 0.2
  done
  answers
}

start() {
  local pid port
  command -v curl >/dev/null 2>&1 || apt_install curl
  if pid="$(running_pid jaeger "$JAEGER_MARKER")"; then
    if wait_ready; then
      log "Jaeger already up (pid $pid); query API $(query_url)"
      print_env
      return 0
    fi
    show_log_tail "$JAEGER_OUT" 30
    die "Jaeger pid $pid runs but $(query_url)/api/services does not answer; run '$0 stop' and start again (log: $JAEGER_OUT)"
  fi
  for port in "$OTLP_GRPC_PORT" "$OTLP_HTTP_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT"; do
    port_open "$JAEGER_HOST" "$port" &&
      die "port $JAEGER_HOST:$port is already in use by a process these scripts did not start; stop it or set KIZUNA_JAEGER_*_PORT"
  done
  write_config
  # Read the 120 MB binary once before the readiness clock starts: on a machine whose disk is
  # cold, paging it in at exec time took longer than the whole readiness wait (CI, 2026-12-08).
  local t_read=$SECONDS
  cat "$JAEGER_BIN" >/dev/null
  (((SECONDS - t_read) >= 2)) && log "read the Jaeger binary ($(du -m "$JAEGER_BIN" | cut -f1) MB) in $((SECONDS - t_read))s"
  log "starting Jaeger $JAEGER_VERSION (in-memory) with OTLP on $JAEGER_HOST:$OTLP_GRPC_PORT (gRPC) and $JAEGER_HOST:$OTLP_HTTP_PORT (HTTP), query API $(query_url); log $JAEGER_OUT"
  printf '\n==== %s starting Jaeger %s ====\n' "$(date -u +%FT%TZ)" "$JAEGER_VERSION" >>"$JAEGER_OUT"
  local t0=$SECONDS
  setsid "$JAEGER_BIN" --config "$JAEGER_CONFIG" >>"$JAEGER_OUT" 2>&1 </dev/null 9>&- &
  pid=$!
  write_pid jaeger "$pid"
  if ! wait_ready; then
    show_log_tail "$JAEGER_OUT" 40
    stop_pid jaeger "$JAEGER_MARKER" 10 >/dev/null 2>&1 || true
    die "Jaeger did not become ready within ${JAEGER_READY_TIMEOUT}s (stopped it); log: $JAEGER_OUT"
  fi
  log "Jaeger ready in $((SECONDS - t0))s (pid $pid)"
  print_env
}

status() {
  local pid
  pid="$(running_pid jaeger "$JAEGER_MARKER")" || die "Jaeger is not running (no live pid in $(pid_file jaeger))"
  answers || die "Jaeger pid $pid runs but $(query_url)/api/services does not answer (log: $JAEGER_OUT)"
  log "Jaeger running (pid $pid); query API $(query_url)"
  print_env
}

case "${1:-start}" in
  start)
    ensure_dirs
    build
    acquire_lock
    start
    ;;
  stop)
    acquire_lock
    stop_pid jaeger "$JAEGER_MARKER"
    ;;
  status) status ;;
  build)
    ensure_dirs
    build
    ;;
  env) print_env ;;
  *) die "usage: $0 [start|stop|status|build|env]" ;;
esac
