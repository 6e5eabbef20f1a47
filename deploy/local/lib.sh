# shellcheck shell=bash
# Shared helpers for the Kizuna local-stack scripts. Source it, don't run it:
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KIZUNA_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KIZUNA_STATE_DIR="${KIZUNA_STATE_DIR:-/var/lib/kizuna-local}"
KIZUNA_CACHE_DIR="${KIZUNA_CACHE_DIR:-/var/cache/kizuna}"
KIZUNA_BROKER_HOST=127.0.0.1
# Both brokers can run at once, each on its own port.
KIZUNA_KAFKA_PORT="${KIZUNA_KAFKA_PORT:-9092}"
KIZUNA_TANSU_PORT="${KIZUNA_TANSU_PORT:-9094}"
# Seconds a broker gets to answer Metadata after start, and to exit after SIGTERM.
KIZUNA_BROKER_READY_TIMEOUT="${KIZUNA_BROKER_READY_TIMEOUT:-90}"
KIZUNA_STOP_TIMEOUT="${KIZUNA_STOP_TIMEOUT:-30}"
export KIZUNA_STATE_DIR KIZUNA_CACHE_DIR

log() { printf '[kizuna-stack] %s\n' "$*" >&2; }
warn() { printf '[kizuna-stack] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[kizuna-stack] ERROR: %s\n' "$*" >&2
  exit 1
}

ensure_dirs() {
  mkdir -p "$KIZUNA_STATE_DIR" "$KIZUNA_CACHE_DIR"
}

# Serialise the stack scripts (up/down/restart and the per-service scripts) on
# fd 9. Nested calls (up.sh -> kafka.sh) see KIZUNA_LOCK_HELD and skip it.
# Daemons must be started with 9>&- so they do not inherit the lock.
acquire_lock() {
  [[ -n "${KIZUNA_LOCK_HELD:-}" ]] && return 0
  ensure_dirs
  exec 9>"$KIZUNA_STATE_DIR/.lock"
  if ! flock -n 9; then
    log "waiting for another kizuna-stack script to finish (lock $KIZUNA_STATE_DIR/.lock)"
    flock -w 300 9 ||
      die "another process holds $KIZUNA_STATE_DIR/.lock for more than 300s (a daemon started with fd 9 still open? see: fuser -v $KIZUNA_STATE_DIR/.lock)"
  fi
  export KIZUNA_LOCK_HELD=1
}

# ---- pid files --------------------------------------------------------------
# A pid file $KIZUNA_STATE_DIR/NAME.pid holds one pid. A pid only counts as
# ours while /proc/PID/cmdline still contains the expected marker, so a
# recycled pid never gets signalled.

pid_file() { printf '%s/%s.pid\n' "$KIZUNA_STATE_DIR" "$1"; }

# read_pid NAME -> prints the pid or nothing
read_pid() {
  local f
  f="$(pid_file "$1")"
  [[ -r "$f" ]] || return 0
  local pid
  pid="$(tr -dc '0-9' <"$f")"
  [[ -n "$pid" ]] && printf '%s\n' "$pid"
  return 0
}

# pid_matches PID MARKER: process alive and its command line contains MARKER
pid_matches() {
  local pid="$1" marker="$2" cmdline
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$marker"* ]]
}

# running_pid NAME MARKER -> prints the pid if the recorded process is alive,
# removes a stale pid file otherwise (returns 1).
running_pid() {
  local name="$1" marker="$2" pid
  pid="$(read_pid "$name")"
  if [[ -n "$pid" ]] && pid_matches "$pid" "$marker"; then
    printf '%s\n' "$pid"
    return 0
  fi
  if [[ -e "$(pid_file "$name")" ]]; then
    log "removing stale pid file $(pid_file "$name")${pid:+ (pid $pid is gone or is not ours)}"
    rm -f "$(pid_file "$name")"
  fi
  return 1
}

write_pid() { printf '%s\n' "$2" >"$(pid_file "$1")"; }

# stop_pid NAME MARKER [TIMEOUT]: SIGTERM the recorded process, SIGKILL after
# TIMEOUT seconds, remove the pid file. Harmless when nothing runs.
stop_pid() {
  local name="$1" marker="$2" timeout="${3:-$KIZUNA_STOP_TIMEOUT}" pid
  if ! pid="$(running_pid "$name" "$marker")"; then
    log "$name: not running (nothing to stop)"
    return 0
  fi
  log "$name: stopping pid $pid (SIGTERM, SIGKILL after ${timeout}s)"
  kill -TERM "$pid" 2>/dev/null || true
  if wait_until "$timeout" 0.5 not_pid_matches "$pid" "$marker"; then
    log "$name: stopped"
  else
    warn "$name: pid $pid still alive after ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_until 10 0.2 not_pid_matches "$pid" "$marker" ||
      die "$name: pid $pid survived SIGKILL"
  fi
  rm -f "$(pid_file "$name")"
}

not_pid_matches() { ! pid_matches "$@"; }

# ---- waiting ----------------------------------------------------------------

# wait_until TIMEOUT INTERVAL CMD [ARGS...]: run CMD until it succeeds;
# returns 1 if it has not succeeded within TIMEOUT seconds.
wait_until() {
  local timeout="$1" interval="$2"
  shift 2
  local deadline=$((SECONDS + timeout))
  while true; do
    if "$@"; then return 0; fi
    ((SECONDS >= deadline)) && return 1
    sleep "$interval"
  done
}

# port_open HOST PORT: something accepts TCP connections there.
port_open() {
  # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# broker_ready NAME [TIMEOUT [ARGS...]]: a Kafka Metadata request to broker NAME
# (kafka or tansu, on its own port) lists a broker (see broker-ready.py).
# Output goes to stderr like all logs.
broker_ready() {
  python3 "$KIZUNA_LOCAL_DIR/broker-ready.py" "$(broker_address "$1")" \
    --timeout "${2:-$KIZUNA_BROKER_READY_TIMEOUT}" "${@:3}" >&2
}

# wait_broker_ready NAME MARKER TIMEOUT: wait until the broker answers
# Metadata; fails early if the recorded process exits meanwhile.
wait_broker_ready() {
  local name="$1" marker="$2" timeout="$3"
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if ! running_pid "$name" "$marker" >/dev/null; then
      log "$name process exited before it became ready"
      return 1
    fi
    if broker_ready "$name" 2 --quiet 2>/dev/null; then
      broker_ready "$name" 5
      return 0
    fi
    sleep 0.5
  done
  broker_ready "$name" 2 # last try; prints why it is not ready
}

# show_log_tail FILE [LINES]: print the end of a log for a failure message.
show_log_tail() {
  local f="$1" n="${2:-40}"
  if [[ -s "$f" ]]; then
    printf '[kizuna-stack] ---- last %s lines of %s ----\n' "$n" "$f" >&2
    tail -n "$n" "$f" >&2
    printf '[kizuna-stack] ---- end of %s ----\n' "$f" >&2
  else
    printf '[kizuna-stack] (log %s is empty or missing)\n' "$f" >&2
  fi
}

# ---- brokers ----------------------------------------------------------------
# Apache Kafka listens on 127.0.0.1:$KIZUNA_KAFKA_PORT (9092), tansu on
# 127.0.0.1:$KIZUNA_TANSU_PORT (9094); both can run at the same time. Their pid
# files are kafka.pid and tansu.pid; the markers below must appear in the
# process's command line for a recorded pid to count as ours.
KAFKA_MARKER="kafka.Kafka $KIZUNA_STATE_DIR/kafka/server.properties"
TANSU_MARKER="broker --listener-url tcp://$KIZUNA_BROKER_HOST:$KIZUNA_TANSU_PORT"

broker_marker() {
  case "$1" in
    kafka) printf '%s\n' "$KAFKA_MARKER" ;;
    tansu) printf '%s\n' "$TANSU_MARKER" ;;
    *) die "unknown broker '$1' (expected kafka or tansu)" ;;
  esac
}

broker_port() {
  case "$1" in
    kafka) printf '%s\n' "$KIZUNA_KAFKA_PORT" ;;
    tansu) printf '%s\n' "$KIZUNA_TANSU_PORT" ;;
    *) die "unknown broker '$1' (expected kafka or tansu)" ;;
  esac
}

# broker_address NAME -> 127.0.0.1:PORT of broker NAME
broker_address() { printf '%s:%s\n' "$KIZUNA_BROKER_HOST" "$(broker_port "$1")"; }

# brokers_of SELECTION -> the broker names of kafka|tansu|both, one a line.
brokers_of() {
  case "$1" in
    kafka | tansu) printf '%s\n' "$1" ;;
    both) printf '%s\n' kafka tansu ;;
    *) die "KIZUNA_BROKER must be kafka, tansu or both, not '$1'" ;;
  esac
}

# running_brokers -> prints "kafka" and/or "tansu" (one a line) for ours that run.
running_brokers() {
  local b
  for b in kafka tansu; do
    if running_pid "$b" "$(broker_marker "$b")" >/dev/null; then
      printf '%s\n' "$b"
    fi
  done
}

# record_broker [NAME]: $KIZUNA_STATE_DIR/broker names one broker of ours that
# runs: NAME if it runs, else the one it named before if that still runs, else
# kafka or tansu, whichever runs; removed when none runs. up.sh records the one
# it prints as KAFKA_BROKERS (kafka for KIZUNA_BROKER=both). Informational (the
# bench prints it); the tests do not read it.
record_broker() {
  local f="$KIZUNA_STATE_DIR/broker" b current
  current="$(head -n1 "$f" 2>/dev/null || true)"
  for b in ${1:-} $current kafka tansu; do
    case "$b" in kafka | tansu) ;; *) continue ;; esac
    if running_pid "$b" "$(broker_marker "$b")" >/dev/null; then
      printf '%s\n' "$b" >"$f"
      return 0
    fi
  done
  rm -f "$f"
}

# ensure_broker_port_free NAME: before starting broker NAME, fail clearly if a
# process these scripts did not start holds its port. The other broker is left
# alone: it has a port of its own.
ensure_broker_port_free() {
  local name="$1" port
  port="$(broker_port "$name")"
  if port_open "$KIZUNA_BROKER_HOST" "$port"; then
    local holder
    holder="$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n1)"
    die "port $KIZUNA_BROKER_HOST:$port (for $name) is already in use by a process these scripts did not start${holder:+ ($holder)}; stop that process or choose another port (KIZUNA_KAFKA_PORT / KIZUNA_TANSU_PORT) and retry"
  fi
}

require_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed${2:+ ($2)}"
}

# apt_install PKG...: install Debian packages (apt-get update first if needed).
apt_install() {
  [[ "$(id -u)" -eq 0 ]] || die "need root to apt-get install $*"
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q "$@" >&2; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get update -q >&2
    apt-get install -y -q "$@" >&2 || die "apt-get install $* failed"
  fi
}
