#!/usr/bin/env bash
# A second, secured Apache Kafka (same install as kafka.sh, its own data and ports): KRaft single
# node with a SASL_SSL listener on 127.0.0.1:${KIZUNA_KAFKA_SECURE_PORT:-9096} (controller on
# 127.0.0.1:${KIZUNA_KAFKA_SECURE_CONTROLLER_PORT:-9097}, PLAINTEXT, loopback only). The plain
# broker on 9092 is not touched.
#
#   kafka-secure.sh [start]   make the TLS files and credentials (once), format (once), start,
#                             wait until TLS answers; prints the connection settings on stdout
#   kafka-secure.sh stop      stop it (data, certificates and credentials are kept)
#   kafka-secure.sh status    exit 0 if it runs and completes a TLS handshake trusting our CA
#   kafka-secure.sh env       print the connection settings (it need not run)
#
# Made on first start, under $KIZUNA_STATE_DIR/kafka-secure/:
#   tls/ca.pem, tls/ca.key     a CA of its own (openssl, RSA 2048, 10 years)
#   tls/broker.pem, broker.p12 the broker's certificate (SAN IP:127.0.0.1, DNS:localhost) and
#                              PKCS#12 keystore, signed by that CA, renewed 30 days before expiry
#   credentials                the SCRAM-SHA-512 users, created at format time with
#                              `StorageTool format --add-scram`: `kizuna` (clients) and
#                              `kizuna-broker` (the broker's own inter-broker login); random
#                              passwords, mode 0600
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=kafka.sh
. "$(dirname "${BASH_SOURCE[0]}")/kafka.sh" # find_java, fetch_jars, single_node_settings, KAFKA_LIBS

SECURE_PORT="${KIZUNA_KAFKA_SECURE_PORT:-9096}"
SECURE_CONTROLLER_PORT="${KIZUNA_KAFKA_SECURE_CONTROLLER_PORT:-9097}"
SECURE_STATE="$KIZUNA_STATE_DIR/kafka-secure"
SECURE_CONFIG="$SECURE_STATE/server.properties"
SECURE_DATA="$SECURE_STATE/data"
SECURE_LOGS="$SECURE_STATE/logs"
SECURE_OUT="$SECURE_STATE/kafka.out"
SECURE_TLS="$SECURE_STATE/tls"
SECURE_CREDENTIALS="$SECURE_STATE/credentials"
SECURE_HEAP_OPTS="${KIZUNA_KAFKA_SECURE_HEAP_OPTS:--Xms256m -Xmx512m}"
SECURE_MARKER="kafka.Kafka $SECURE_CONFIG"
SECURE_USER=kizuna
SECURE_BROKER_USER=kizuna-broker
MECHANISM=SCRAM-SHA-512

# credential NAME -> its value from the credentials file
credential() { sed -n "s/^$1=//p" "$SECURE_CREDENTIALS"; }

# The passwords, made once. New passwords mean new SCRAM users, which only a format creates:
# the data dir of the old ones is removed.
ensure_credentials() {
  mkdir -p "$SECURE_STATE"
  if [[ -s "$SECURE_CREDENTIALS" ]] && [[ -n "$(credential password)" ]]; then
    return 0
  fi
  log "secured Kafka: creating SCRAM-SHA-512 credentials in $SECURE_CREDENTIALS"
  rm -rf "$SECURE_DATA"
  (
    umask 077
    {
      printf 'user=%s\n' "$SECURE_USER"
      printf 'password=%s\n' "$(openssl rand -hex 16)"
      printf 'broker_user=%s\n' "$SECURE_BROKER_USER"
      printf 'broker_password=%s\n' "$(openssl rand -hex 16)"
      printf 'keystore_password=%s\n' "$(openssl rand -hex 16)"
    } >"$SECURE_CREDENTIALS.new"
  )
  mv "$SECURE_CREDENTIALS.new" "$SECURE_CREDENTIALS"
}

# The CA and the broker's certificate, made with openssl; remade when missing or expiring
# within 30 days.
ensure_tls() {
  local tls="$SECURE_TLS"
  if [[ -s "$tls/ca.pem" && -s "$tls/broker.p12" && -s "$tls/broker.pem" ]] &&
    openssl x509 -checkend 2592000 -noout -in "$tls/broker.pem" >/dev/null &&
    openssl x509 -checkend 2592000 -noout -in "$tls/ca.pem" >/dev/null; then
    return 0
  fi
  log "secured Kafka: making a CA and a broker certificate for 127.0.0.1/localhost in $tls (openssl)"
  local work="$tls.tmp.$$"
  rm -rf "$work"
  mkdir -p "$work"
  chmod 700 "$work"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
      -keyout "$work/ca.key" -out "$work/ca.pem" -subj "/CN=Kizuna local test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
      openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$work/broker.key" -out "$work/broker.csr" \
        -subj "/CN=localhost" &&
      printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$work/broker.ext" &&
      openssl x509 -req -sha256 -days 825 -in "$work/broker.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -CAcreateserial -extfile "$work/broker.ext" -out "$work/broker.pem" &&
      openssl pkcs12 -export -in "$work/broker.pem" -inkey "$work/broker.key" -certfile "$work/ca.pem" \
        -name broker -out "$work/broker.p12" -passout "pass:$(credential keystore_password)"
  } >"$work/openssl.log" 2>&1 || {
    show_log_tail "$work/openssl.log"
    die "openssl could not make the secured Kafka's certificates (log: $work/openssl.log)"
  }
  # Clients of any user may read the CA; the keys and the keystore stay 0600.
  chmod 755 "$work"
  chmod 644 "$work/ca.pem" "$work/broker.pem"
  rm -f "$work/broker.csr" "$work/broker.ext" "$work/ca.srl"
  rm -rf "$tls"
  mv "$work" "$tls"
}

write_secure_config() {
  mkdir -p "$SECURE_DATA" "$SECURE_LOGS"
  cp "$KIZUNA_LOCAL_DIR/kafka/log4j2.properties" "$SECURE_STATE/log4j2.properties"
  local keystore_password broker_password
  keystore_password="$(credential keystore_password)"
  broker_password="$(credential broker_password)"
  (
    umask 077
    cat >"$SECURE_CONFIG.new" <<EOF
# Written by deploy/local/kafka-secure.sh (rewritten on every start; edit the script).
# Single node, KRaft, combined broker+controller, loopback only; clients on SASL_SSL.
process.roles=broker,controller
node.id=1
listeners=SASL_SSL://$KIZUNA_BROKER_HOST:$SECURE_PORT,CONTROLLER://$KIZUNA_BROKER_HOST:$SECURE_CONTROLLER_PORT
advertised.listeners=SASL_SSL://$KIZUNA_BROKER_HOST:$SECURE_PORT
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=$KIZUNA_BROKER_HOST:$SECURE_CONTROLLER_PORT
log.dirs=$SECURE_DATA

sasl.enabled.mechanisms=$MECHANISM
sasl.mechanism.inter.broker.protocol=$MECHANISM
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$SECURE_BROKER_USER" password="$broker_password";
ssl.keystore.type=PKCS12
ssl.keystore.location=$SECURE_TLS/broker.p12
ssl.keystore.password=$keystore_password
ssl.key.password=$keystore_password
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_TLS/ca.pem
ssl.client.auth=none
ssl.endpoint.identification.algorithm=https

$(single_node_settings)
EOF
  )
  mv "$SECURE_CONFIG.new" "$SECURE_CONFIG"
}

# Formats the data dir once, creating both SCRAM users in the bootstrap metadata.
format_secure_storage() {
  local java="$1" cluster_id
  if [[ -f "$SECURE_DATA/meta.properties" ]]; then
    return 0
  fi
  local storage=(-cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$SECURE_STATE/log4j2.properties"
    -Dkafka.logs.dir="$SECURE_LOGS" kafka.tools.StorageTool)
  cluster_id="$("$java" "${storage[@]}" random-uuid 2>>"$SECURE_LOGS/storage-tool.log" | tail -n1)"
  [[ "$cluster_id" =~ ^[A-Za-z0-9_-]{22}$ ]] || die "StorageTool random-uuid returned '$cluster_id' (see $SECURE_LOGS/storage-tool.log)"
  log "secured Kafka: formatting $SECURE_DATA (cluster id $cluster_id) with SCRAM-SHA-512 users $SECURE_USER and $SECURE_BROKER_USER"
  if ! "$java" "${storage[@]}" format --standalone -t "$cluster_id" -c "$SECURE_CONFIG" \
    --add-scram "$MECHANISM=[name=$SECURE_USER,password=$(credential password)]" \
    --add-scram "$MECHANISM=[name=$SECURE_BROKER_USER,password=$(credential broker_password)]" \
    >>"$SECURE_LOGS/storage-tool.log" 2>&1; then
    show_log_tail "$SECURE_LOGS/storage-tool.log"
    die "secured Kafka: storage format failed (log: $SECURE_LOGS/storage-tool.log)"
  fi
}

# tls_ready [--quiet]: a TLS handshake on the SASL_SSL port that trusts only our CA and checks
# the certificate names 127.0.0.1.
tls_ready() {
  python3 - "$KIZUNA_BROKER_HOST" "$SECURE_PORT" "$SECURE_TLS/ca.pem" "${1:-}" <<'EOF'
import socket, ssl, sys
host, port, ca, quiet = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "--quiet"
try:
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((host, port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            subject = dict(x[0] for x in tls.getpeercert()["subject"])
            if not quiet:
                print(f"[kizuna-stack] secured Kafka {host}:{port}: TLS {tls.version()}, certificate CN={subject.get('commonName')} verified against {ca}", file=sys.stderr)
except Exception as e:
    if not quiet:
        print(f"[kizuna-stack] secured Kafka {host}:{port}: no TLS handshake: {e}", file=sys.stderr)
    sys.exit(1)
EOF
}

# The broker logs this once its listeners accept connections (SCRAM users loaded).
server_started() { grep -q 'Kafka Server started' "$SECURE_LOGS/server.log" 2>/dev/null; }

secure_ready() { running_pid kafka-secure "$SECURE_MARKER" >/dev/null && server_started && tls_ready --quiet; }

print_env() {
  printf 'KIZUNA_SECURE_KAFKA=%s:%s\n' "$KIZUNA_BROKER_HOST" "$SECURE_PORT"
  printf 'KIZUNA_SECURE_KAFKA_PROTOCOL=SASL_SSL\n'
  printf 'KIZUNA_SECURE_KAFKA_MECHANISM=%s\n' "$MECHANISM"
  printf 'KIZUNA_SECURE_KAFKA_CA=%s\n' "$SECURE_TLS/ca.pem"
  printf 'KIZUNA_SECURE_KAFKA_USER=%s\n' "$(credential user)"
  printf 'KIZUNA_SECURE_KAFKA_PASSWORD=%s\n' "$(credential password)"
}

start_secure() {
  local pid java started=$SECONDS
  if pid="$(running_pid kafka-secure "$SECURE_MARKER")"; then
    if wait_until 60 0.5 secure_ready; then
      log "secured Kafka already up on $KIZUNA_BROKER_HOST:$SECURE_PORT (pid $pid); nothing to do"
      print_env
      return 0
    fi
    show_log_tail "$SECURE_LOGS/server.log" 40
    die "secured Kafka pid $pid runs but completes no TLS handshake on $KIZUNA_BROKER_HOST:$SECURE_PORT; run $0 stop and retry (log: $SECURE_LOGS/server.log)"
  fi
  local port
  for port in "$SECURE_PORT" "$SECURE_CONTROLLER_PORT"; do
    if port_open "$KIZUNA_BROKER_HOST" "$port"; then
      die "port $KIZUNA_BROKER_HOST:$port (secured Kafka) is already in use by a process these scripts did not start; set KIZUNA_KAFKA_SECURE_PORT / KIZUNA_KAFKA_SECURE_CONTROLLER_PORT"
    fi
  done
  java="$(find_java)"
  fetch_jars
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  ensure_credentials
  ensure_tls
  write_secure_config
  format_secure_storage "$java"

  log "starting the secured Kafka $KAFKA_VERSION (SASL_SSL, $MECHANISM) on $KIZUNA_BROKER_HOST:$SECURE_PORT; log $SECURE_LOGS/server.log"
  printf '\n==== %s starting Kafka %s (secured) ====\n' "$(date -u +%FT%TZ)" "$KAFKA_VERSION" >>"$SECURE_OUT"
  # A fresh server.log, so "Kafka Server started" is this start's.
  [[ -f "$SECURE_LOGS/server.log" ]] && mv "$SECURE_LOGS/server.log" "$SECURE_LOGS/server.log.previous"
  # shellcheck disable=SC2086 # SECURE_HEAP_OPTS is a list of JVM options
  setsid "$java" $SECURE_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true \
    -Dkafka.logs.dir="$SECURE_LOGS" \
    -Dlog4j2.configurationFile="$SECURE_STATE/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$SECURE_CONFIG" >>"$SECURE_OUT" 2>&1 </dev/null 9>&- &
  pid=$!
  write_pid kafka-secure "$pid"
  if ! wait_until "$KIZUNA_BROKER_READY_TIMEOUT" 0.5 secure_ready; then
    local what="completed no TLS handshake on $KIZUNA_BROKER_HOST:$SECURE_PORT within ${KIZUNA_BROKER_READY_TIMEOUT}s (stopped it)"
    running_pid kafka-secure "$SECURE_MARKER" >/dev/null || what="exited during startup"
    tls_ready || true
    show_log_tail "$SECURE_LOGS/server.log" 40
    show_log_tail "$SECURE_OUT" 20
    stop_pid kafka-secure "$SECURE_MARKER" 20 >/dev/null 2>&1 || true
    die "secured Kafka $what; logs: $SECURE_LOGS/server.log and $SECURE_OUT"
  fi
  tls_ready
  log "secured Kafka ready on $KIZUNA_BROKER_HOST:$SECURE_PORT in $((SECONDS - started))s (pid $pid, data $SECURE_DATA)"
  print_env
}

acquire_lock
ensure_dirs
case "${1:-start}" in
  start) start_secure ;;
  stop) stop_pid kafka-secure "$SECURE_MARKER" ;;
  status)
    pid="$(running_pid kafka-secure "$SECURE_MARKER")" || die "the secured Kafka is not running (no live pid in $(pid_file kafka-secure))"
    tls_ready || die "the secured Kafka (pid $pid) completes no TLS handshake on $KIZUNA_BROKER_HOST:$SECURE_PORT"
    ;;
  env)
    [[ -s "$SECURE_CREDENTIALS" ]] || die "no credentials yet: run $0 start"
    print_env
    ;;
  *) die "usage: $0 [start|stop|status|env]" ;;
esac
