#!/usr/bin/env bash
# Schema Registry with a Confluent-compatible API on 127.0.0.1:8081: Apicurio
# Registry 2.6.x, in-memory storage, run from the release build Apicurio
# publishes on Maven Central (no Docker, no Quarkus build step here).
#
#   registry.sh [start]   fetch (cached), start, wait until the ccompat API answers
#   registry.sh stop      stop the registry these scripts started (all schemas are lost)
#   registry.sh restart   stop + start (comes back empty)
#   registry.sh status    exit 0 if our registry runs and answers
#
# Confluent-compatible API: http://127.0.0.1:$KIZUNA_REGISTRY_PORT/apis/ccompat/v7
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REGISTRY_VERSION="${KIZUNA_REGISTRY_VERSION:-2.6.13.Final}"
REGISTRY_HOST=127.0.0.1
REGISTRY_PORT="${KIZUNA_REGISTRY_PORT:-8081}"
REGISTRY_HOME="$KIZUNA_CACHE_DIR/apicurio-registry-$REGISTRY_VERSION"
REGISTRY_JAR="$REGISTRY_HOME/app/apicurio-registry-app-$REGISTRY_VERSION-runner.jar"
REGISTRY_STATE="$KIZUNA_STATE_DIR/registry"
REGISTRY_OUT="$REGISTRY_STATE/registry.out"
# Port of the running registry, so status/stop/start find it whatever KIZUNA_REGISTRY_PORT says now.
REGISTRY_PORT_FILE="$REGISTRY_STATE/port"
REGISTRY_HEAP_OPTS="${KIZUNA_REGISTRY_HEAP_OPTS:--Xms64m -Xmx384m}"
# C1 only and the serial collector: ready in ~5 s instead of ~9 s on 2 cores and
# ~50 MB less RSS; a local registry serves few requests (serializers cache ids).
REGISTRY_JVM_OPTS="${KIZUNA_REGISTRY_JVM_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC}"
REGISTRY_READY_TIMEOUT="${KIZUNA_REGISTRY_READY_TIMEOUT:-120}"
# Must appear in the JVM's command line for a recorded pid to count as ours.
REGISTRY_MARKER="-Dkizuna.stack=registry"
CCOMPAT_PATH=/apis/ccompat/v7

if ! [[ "$REGISTRY_PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((REGISTRY_PORT > 65535)); then
  die "KIZUNA_REGISTRY_PORT must be a TCP port number, not '$REGISTRY_PORT'"
fi

find_java() {
  local java="${KIZUNA_JAVA:-}"
  if [[ -z "$java" && -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then java="$JAVA_HOME/bin/java"; fi
  if [[ -z "$java" ]]; then java="$(command -v java || true)"; fi
  if [[ -z "$java" ]]; then
    apt_install openjdk-17-jre-headless
    java="$(command -v java)"
  fi
  local spec
  spec="$("$java" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ { print $2 }')"
  # Apicurio 2.6.x is built for Java 11; it is run and checked here on 17.
  if ! [[ "${spec%%.*}" =~ ^[0-9]+$ ]] || ((${spec%%.*} < 11)); then
    die "Apicurio Registry $REGISTRY_VERSION needs Java 11 or newer; $java is Java '$spec' (set KIZUNA_JAVA or JAVA_HOME)"
  fi
  printf '%s\n' "$java"
}

fetch_app() {
  if [[ -f "$REGISTRY_HOME/.complete" && -f "$REGISTRY_JAR" ]]; then
    log "Apicurio Registry $REGISTRY_VERSION cached in $REGISTRY_HOME"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "fetching Apicurio Registry $REGISTRY_VERSION (io.apicurio:apicurio-registry-app:tar.gz:all, ~140 MB) from Maven Central into $REGISTRY_HOME (first run only)"
  local work="$REGISTRY_HOME.tmp.$$" started=$SECONDS
  rm -rf "$work"
  mkdir -p "$work"
  # Build from a copy of the pom, so Maven writes nothing into the git clone.
  cp "$KIZUNA_LOCAL_DIR/registry/pom.xml" "$work/pom.xml"
  if ! mvn -q -B -Dstyle.color=never --strict-checksums -f "$work/pom.xml" \
    -Dmaven.repo.local="$KIZUNA_CACHE_DIR/m2" \
    -Dregistry.version="$REGISTRY_VERSION" \
    -Dregistry.unpack.dir="$work/app" \
    dependency:unpack >"$work/mvn.log" 2>&1; then
    show_log_tail "$work/mvn.log" 60
    die "mvn could not fetch Apicurio Registry $REGISTRY_VERSION (full log: $work/mvn.log)"
  fi
  [[ -f "$work/app/apicurio-registry-app-$REGISTRY_VERSION-runner.jar" ]] ||
    die "apicurio-registry-app-$REGISTRY_VERSION-runner.jar missing after mvn (this script knows the 2.6.x layout; see $work/app and $work/mvn.log)"
  rm -rf "$work/target" # unpack markers only
  rm -rf "$REGISTRY_HOME"
  mv "$work" "$REGISTRY_HOME"
  date -u +%FT%TZ >"$REGISTRY_HOME/.complete"
  log "fetched Apicurio Registry $REGISTRY_VERSION ($(find "$REGISTRY_HOME/app/lib" -name '*.jar' | wc -l) jars) in $((SECONDS - started))s"
}

url() { printf 'http://%s:%s%s\n' "$REGISTRY_HOST" "$1" "${2:-}"; }

# registry_answers PORT: the Confluent-compatible API lists subjects (HTTP 200).
registry_answers() {
  curl -fsS -m 3 -o /dev/null "$(url "$1" "$CCOMPAT_PATH/subjects")" 2>/dev/null
}

recorded_port() {
  local p
  p="$(tr -dc '0-9' <"$REGISTRY_PORT_FILE" 2>/dev/null || true)"
  printf '%s\n' "${p:-$REGISTRY_PORT}"
}

# wait_registry_ready PORT TIMEOUT: fails early if our process exits meanwhile.
wait_registry_ready() {
  local port="$1" timeout="$2"
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    running_pid registry "$REGISTRY_MARKER" >/dev/null || return 1
    registry_answers "$port" && return 0
    sleep 0.25
  done
  registry_answers "$port"
}

rss_of() { awk '/^VmRSS:/ { printf "%d MB", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || true; }

fail_start() {
  local what
  what="did not answer $(url "$REGISTRY_PORT" "$CCOMPAT_PATH/subjects") within ${REGISTRY_READY_TIMEOUT}s (stopped it)"
  running_pid registry "$REGISTRY_MARKER" >/dev/null || what="exited during startup"
  show_log_tail "$REGISTRY_OUT" 40
  stop_pid registry "$REGISTRY_MARKER" 20 >/dev/null 2>&1 || true
  rm -f "$REGISTRY_PORT_FILE"
  die "Apicurio Registry $what; log: $REGISTRY_OUT"
}

start() {
  local pid java port t0
  if pid="$(running_pid registry "$REGISTRY_MARKER")"; then
    port="$(recorded_port)"
    [[ "$port" == "$REGISTRY_PORT" ]] ||
      die "our registry already runs on port $port (pid $pid), not $REGISTRY_PORT; run '$0 stop' first to move it"
    if registry_answers "$port" || wait_registry_ready "$port" "$REGISTRY_READY_TIMEOUT"; then
      log "Apicurio Registry already up on $(url "$port") (pid $pid, RSS $(rss_of "$pid")); nothing to do"
      return 0
    fi
    show_log_tail "$REGISTRY_OUT" 40
    die "registry pid $pid runs but $(url "$port" "$CCOMPAT_PATH/subjects") does not answer; run '$0 restart' (log: $REGISTRY_OUT)"
  fi
  if port_open "$REGISTRY_HOST" "$REGISTRY_PORT"; then
    local holder
    holder="$(ss -Hltnp "sport = :$REGISTRY_PORT" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1)"
    die "port $REGISTRY_HOST:$REGISTRY_PORT is already in use by a process these scripts did not start${holder:+ ($holder)}; stop it or set KIZUNA_REGISTRY_PORT"
  fi
  command -v curl >/dev/null 2>&1 || apt_install curl
  java="$(find_java)"
  fetch_app
  mkdir -p "$REGISTRY_STATE"

  log "starting Apicurio Registry $REGISTRY_VERSION (in-memory H2 storage) on $(url "$REGISTRY_PORT"); log $REGISTRY_OUT"
  printf '\n==== %s starting Apicurio Registry %s on port %s ====\n' "$(date -u +%FT%TZ)" "$REGISTRY_VERSION" "$REGISTRY_PORT" >>"$REGISTRY_OUT"
  t0=$EPOCHREALTIME
  # Settings are system properties, which override the app's application.properties:
  # loopback only; a small JDBC pool (the prod profile keeps 20..100 H2 connections).
  # shellcheck disable=SC2086 # REGISTRY_HEAP_OPTS and REGISTRY_JVM_OPTS are lists of JVM options
  setsid "$java" $REGISTRY_HEAP_OPTS $REGISTRY_JVM_OPTS -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    "$REGISTRY_MARKER" \
    -Dquarkus.http.host="$REGISTRY_HOST" \
    -Dquarkus.http.port="$REGISTRY_PORT" \
    -Dquarkus.datasource.jdbc.initial-size=2 \
    -Dquarkus.datasource.jdbc.min-size=2 \
    -Dquarkus.datasource.jdbc.max-size=20 \
    -jar "$REGISTRY_JAR" >>"$REGISTRY_OUT" 2>&1 </dev/null 9>&- &
  pid=$!
  write_pid registry "$pid"
  printf '%s\n' "$REGISTRY_PORT" >"$REGISTRY_PORT_FILE"
  if ! wait_until 10 0.2 pid_matches "$pid" "$REGISTRY_MARKER"; then
    show_log_tail "$REGISTRY_OUT" 20
    rm -f "$(pid_file registry)" "$REGISTRY_PORT_FILE"
    die "registry process (pid $pid) did not start"
  fi
  wait_registry_ready "$REGISTRY_PORT" "$REGISTRY_READY_TIMEOUT" || fail_start
  log "Apicurio Registry $REGISTRY_VERSION ready in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')s on $(url "$REGISTRY_PORT") (pid $pid, RSS $(rss_of "$pid")); Confluent-compatible API: $(url "$REGISTRY_PORT" "$CCOMPAT_PATH")"
}

stop() {
  stop_pid registry "$REGISTRY_MARKER"
  rm -f "$REGISTRY_PORT_FILE"
}

status() {
  local pid port subjects
  pid="$(running_pid registry "$REGISTRY_MARKER")" || die "registry is not running (no live pid in $(pid_file registry))"
  port="$(recorded_port)"
  subjects="$(curl -fsS -m 3 "$(url "$port" "$CCOMPAT_PATH/subjects")" 2>/dev/null)" ||
    die "registry pid $pid runs but $(url "$port" "$CCOMPAT_PATH/subjects") does not answer (log: $REGISTRY_OUT)"
  log "Apicurio Registry running on $(url "$port") (pid $pid, RSS $(rss_of "$pid")); $CCOMPAT_PATH/subjects: $subjects"
}

acquire_lock
ensure_dirs
case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart)
    stop
    start
    ;;
  status) status ;;
  *) die "usage: $0 [start|stop|restart|status]" ;;
esac
