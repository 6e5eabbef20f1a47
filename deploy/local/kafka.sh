#!/usr/bin/env bash
# Single-node Apache Kafka 4.x (KRaft, combined broker+controller) on
# 127.0.0.1:${KIZUNA_KAFKA_PORT:-9092} (controller 9093), built from Maven
# Central jars (no tarball). tansu (tansu.sh) may run beside it on its own port.
#
#   kafka.sh [start]   fetch jars (cached), format storage once, start, wait ready
#   kafka.sh stop      stop the broker these scripts started (data is kept)
#   kafka.sh restart   stop + start, keeping data
#   kafka.sh status    exit 0 if our broker runs and answers Metadata
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION="${KIZUNA_KAFKA_VERSION:-4.4.0}"
KAFKA_HOME="$KIZUNA_CACHE_DIR/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_STATE="$KIZUNA_STATE_DIR/kafka"
KAFKA_CONFIG="$KAFKA_STATE/server.properties"
KAFKA_DATA="$KAFKA_STATE/data"
KAFKA_LOGS="$KAFKA_STATE/logs"
KAFKA_OUT="$KAFKA_STATE/kafka.out"
KAFKA_HEAP_OPTS="${KIZUNA_KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
CONTROLLER_PORT=9093

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
  if ! [[ "${spec%%.*}" =~ ^[0-9]+$ ]] || ((${spec%%.*} < 17)); then
    die "Kafka $KAFKA_VERSION needs Java 17 or newer; $java is Java '$spec' (set KIZUNA_JAVA or JAVA_HOME)"
  fi
  printf '%s\n' "$java"
}

fetch_jars() {
  if [[ -f "$KAFKA_HOME/.complete" ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null; then
    log "Kafka $KAFKA_VERSION jars cached in $KAFKA_LIBS"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || apt_install maven
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS (first run only)"
  local work="$KAFKA_HOME.tmp.$$" started=$SECONDS
  rm -rf "$work"
  mkdir -p "$work"
  # Build from a copy of the pom, so Maven writes nothing into the git clone.
  cp "$KIZUNA_LOCAL_DIR/kafka/pom.xml" "$work/pom.xml"
  if ! mvn -q -B -Dstyle.color=never -f "$work/pom.xml" \
    -Dmaven.repo.local="$KIZUNA_CACHE_DIR/m2" \
    -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$work/libs" >"$work/mvn.log" 2>&1; then
    show_log_tail "$work/mvn.log" 60
    die "mvn could not fetch Kafka $KAFKA_VERSION (full log: $work/mvn.log)"
  fi
  [[ -f "$work/libs/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn (see $work/mvn.log)"
  rm -rf "$KAFKA_HOME"
  mv "$work" "$KAFKA_HOME"
  date -u +%FT%TZ >"$KAFKA_HOME/.complete"
  log "fetched $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - started))s"
}

# The settings of a single-node cluster, shared with kafka-secure.sh.
single_node_settings() {
  cat <<'EOF'
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# Lenient for local work; the Kizuna binary creates its topics explicitly anyway.
auto.create.topics.enable=true
delete.topic.enable=true
EOF
}

write_config() {
  mkdir -p "$KAFKA_STATE" "$KAFKA_DATA" "$KAFKA_LOGS"
  cp "$KIZUNA_LOCAL_DIR/kafka/log4j2.properties" "$KAFKA_STATE/log4j2.properties"
  cat >"$KAFKA_CONFIG.new" <<EOF
# Written by deploy/local/kafka.sh (rewritten on every start; edit the script).
# Single node, KRaft, combined broker+controller, loopback only.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://$KIZUNA_BROKER_HOST:$KIZUNA_KAFKA_PORT,CONTROLLER://$KIZUNA_BROKER_HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KIZUNA_BROKER_HOST:$KIZUNA_KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# Dynamic quorum (formatted with --standalone), so no controller.quorum.voters.
controller.quorum.bootstrap.servers=$KIZUNA_BROKER_HOST:$CONTROLLER_PORT
log.dirs=$KAFKA_DATA

$(single_node_settings)
EOF
  mv "$KAFKA_CONFIG.new" "$KAFKA_CONFIG"
}

format_storage() {
  local java="$1" cluster_id
  if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
    log "Kafka storage already formatted ($KAFKA_DATA, $(grep '^cluster.id=' "$KAFKA_DATA/meta.properties"))"
    return 0
  fi
  if [[ -s "$KAFKA_STATE/cluster-id" ]]; then
    cluster_id="$(cat "$KAFKA_STATE/cluster-id")"
  else
    cluster_id="$("$java" -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_STATE/log4j2.properties" \
      -Dkafka.logs.dir="$KAFKA_LOGS" kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOGS/storage-tool.log" | tail -n1)"
    [[ "$cluster_id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "StorageTool random-uuid returned '$cluster_id' (see $KAFKA_LOGS/storage-tool.log)"
    printf '%s\n' "$cluster_id" >"$KAFKA_STATE/cluster-id"
  fi
  log "formatting Kafka storage in $KAFKA_DATA (cluster id $cluster_id, standalone KRaft quorum)"
  if ! "$java" -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_STATE/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_LOGS" kafka.tools.StorageTool format --standalone --ignore-formatted \
    -t "$cluster_id" -c "$KAFKA_CONFIG" >>"$KAFKA_LOGS/storage-tool.log" 2>&1; then
    show_log_tail "$KAFKA_LOGS/storage-tool.log"
    die "kafka storage format failed (log: $KAFKA_LOGS/storage-tool.log)"
  fi
}

fail_start() {
  local what="did not answer Metadata on $KIZUNA_BROKER_HOST:$KIZUNA_KAFKA_PORT within ${KIZUNA_BROKER_READY_TIMEOUT}s (stopped it)"
  running_pid kafka "$KAFKA_MARKER" >/dev/null || what="exited during startup"
  show_log_tail "$KAFKA_LOGS/server.log" 40
  show_log_tail "$KAFKA_OUT" 20
  stop_pid kafka "$KAFKA_MARKER" 20 >/dev/null 2>&1 || true
  die "Kafka $what; logs: $KAFKA_LOGS/server.log and $KAFKA_OUT"
}

start() {
  local pid java
  if pid="$(running_pid kafka "$KAFKA_MARKER")"; then
    log "Kafka already running (pid $pid); checking it answers"
    if broker_ready kafka 5 --quiet 2>/dev/null || wait_broker_ready kafka "$KAFKA_MARKER" "$KIZUNA_BROKER_READY_TIMEOUT"; then
      record_broker ''
      log "Kafka $KAFKA_VERSION already up on $KIZUNA_BROKER_HOST:$KIZUNA_KAFKA_PORT (pid $pid); nothing to do"
      return 0
    fi
    show_log_tail "$KAFKA_LOGS/server.log" 40
    die "Kafka pid $pid runs but does not answer Metadata on $KIZUNA_BROKER_HOST:$KIZUNA_KAFKA_PORT; run deploy/local/down.sh broker and retry (log: $KAFKA_LOGS/server.log)"
  fi
  ensure_broker_port_free kafka
  if port_open "$KIZUNA_BROKER_HOST" "$CONTROLLER_PORT"; then
    die "port $KIZUNA_BROKER_HOST:$CONTROLLER_PORT (Kafka controller listener) is already in use by another process"
  fi
  java="$(find_java)"
  fetch_jars
  write_config
  format_storage "$java"

  log "starting Kafka $KAFKA_VERSION (KRaft broker+controller) on $KIZUNA_BROKER_HOST:$KIZUNA_KAFKA_PORT; log $KAFKA_LOGS/server.log"
  printf '\n==== %s starting Kafka %s ====\n' "$(date -u +%FT%TZ)" "$KAFKA_VERSION" >>"$KAFKA_OUT"
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM options
  setsid "$java" $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -Xlog:gc*:file="$KAFKA_LOGS/gc.log":time,tags:filecount=5,filesize=10M \
    -Djava.awt.headless=true \
    -Dkafka.logs.dir="$KAFKA_LOGS" \
    -Dlog4j2.configurationFile="$KAFKA_STATE/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$KAFKA_CONFIG" >>"$KAFKA_OUT" 2>&1 </dev/null 9>&- &
  pid=$!
  write_pid kafka "$pid"
  if ! wait_until 10 0.2 pid_matches "$pid" "$KAFKA_MARKER"; then
    show_log_tail "$KAFKA_OUT" 20
    rm -f "$(pid_file kafka)"
    die "Kafka process (pid $pid) did not start"
  fi
  wait_broker_ready kafka "$KAFKA_MARKER" "$KIZUNA_BROKER_READY_TIMEOUT" || fail_start
  record_broker ''
  log "Kafka $KAFKA_VERSION ready on $KIZUNA_BROKER_HOST:$KIZUNA_KAFKA_PORT (pid $pid, data $KAFKA_DATA)"
}

stop() {
  stop_pid kafka "$KAFKA_MARKER"
  record_broker ''
}

# kafka-secure.sh sources this file for find_java, fetch_jars and the install paths.
[[ "${BASH_SOURCE[0]}" == "$0" ]] || return 0

acquire_lock
ensure_dirs
case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  restart)
    stop
    start
    ;;
  status)
    pid="$(running_pid kafka "$KAFKA_MARKER")" || die "Kafka is not running (no live pid in $(pid_file kafka))"
    broker_ready kafka 5 || die "Kafka pid $pid does not answer Metadata"
    ;;
  *) die "usage: $0 [start|stop|restart|status]" ;;
esac
