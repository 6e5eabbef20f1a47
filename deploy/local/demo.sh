#!/usr/bin/env bash
# The demo: install what is missing, start PostgreSQL and a broker (KIZUNA_BROKER=kafka|tansu,
# default kafka), build Kizuna, create the topics, start the engine, let the simulator replay a
# year of a small shop's customers (personas from the seeds: truly loyal, price-driven,
# hostages after a bad support streak, quiet churners, ...), and show the output events live:
# tier changes, churn alerts with their plays, segment moves, points earned and clawed back. The engine runs on the
# event-time clock, so a year of history plays out in about a minute. Ctrl-C ends it; the
# stack keeps running (deploy/local/down.sh stops it).
#
#   KIZUNA_DEMO_CUSTOMERS   simulated customers (default 40)
#   KIZUNA_DEMO_RATE        events per second (default 60)
#   KIZUNA_DEMO_SECONDS     stop by itself after this many seconds (default: run until Ctrl-C)
#   KIZUNA_DEMO_POINTS      "all": print every customer's POINTS / EXPIRING lines (default: clawbacks,
#                           redemptions and debts of everyone, everything of one featured customer)
#   KIZUNA_PROGRAMME_FILE   the programme (default: services/loyalty-engine/config/programme-points.toml,
#                           the built-in rules with points)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
repo="$(cd "$KIZUNA_LOCAL_DIR/../.." && pwd)"

"$KIZUNA_LOCAL_DIR/prereqs.sh"
# shellcheck disable=SC1091
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
"$KIZUNA_LOCAL_DIR/up.sh" >/dev/null

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KIZUNA_CACHE_DIR/target}"
log "building kizuna and kizuna-sim (target dir $CARGO_TARGET_DIR; the first build takes a few minutes)"
(cd "$repo" && cargo build --locked --bin kizuna --bin kizuna-sim >&2)
bin="$CARGO_TARGET_DIR/debug"

case "${KIZUNA_BROKER:-kafka}" in
  kafka | tansu) ;;
  *) die "the demo runs on one broker: KIZUNA_BROKER must be kafka or tansu, not '$KIZUNA_BROKER'" ;;
esac
KIZUNA_KAFKA__BROKERS="$(broker_address "${KIZUNA_BROKER:-kafka}")"
export KIZUNA_KAFKA__BROKERS
export KIZUNA_DATABASE__URL="postgres://kizuna:kizuna@127.0.0.1:5432/kizuna"
export KIZUNA_HTTP__BIND="${KIZUNA_HTTP__BIND:-127.0.0.1:8080}"
export KIZUNA_CLOCK="${KIZUNA_CLOCK:-event-time}"
# The demo's programme has points (issue 16): the built-in rules plus a [points] section, so
# the simulator's purchases earn (pending for 14 days), refunds claw back, and PointsChanged
# outputs appear among the others.
export KIZUNA_PROGRAMME_FILE="${KIZUNA_PROGRAMME_FILE:-$repo/services/loyalty-engine/config/programme-points.toml}"
"$bin/kizuna" check-programme >/dev/null || die "the programme $KIZUNA_PROGRAMME_FILE is invalid"
# The console (/console/): fresh login tokens per run unless given; figures refreshed every 2 s
# so the overview follows the simulated year as it plays.
export KIZUNA_CONSOLE__VIEWER_TOKEN="${KIZUNA_CONSOLE__VIEWER_TOKEN:-$(openssl rand -hex 16)}"
export KIZUNA_CONSOLE__ADMIN_TOKEN="${KIZUNA_CONSOLE__ADMIN_TOKEN:-$(openssl rand -hex 16)}"
export KIZUNA_CONSOLE__REFRESH_SECS="${KIZUNA_CONSOLE__REFRESH_SECS:-2}"
# The API needs a role (README, "Roles and tokens"): a viewer token named "demo", fresh per run
# unless given, configured as its SHA-256 like any token (`kizuna hash-token` prints the same).
api_token="${KIZUNA_DEMO_API_TOKEN:-$(openssl rand -hex 32)}"
export KIZUNA_HTTP__TOKENS__DEMO__ROLE=viewer
KIZUNA_HTTP__TOKENS__DEMO__SHA256="$(printf '%s' "$api_token" | sha256sum | cut -d' ' -f1)"
export KIZUNA_HTTP__TOKENS__DEMO__SHA256
# Each run replays its own year: its own topics, consumer group (and so event-time clock) and
# customers, so runs never mix.
run="demo-$(date +%Y%m%d-%H%M%S)"
export KIZUNA_KAFKA__GROUP_ID="kizuna-$run"
export KIZUNA_KAFKA__TOPIC_PREFIX="$run."
"$bin/kizuna" topics create

engine_log="$KIZUNA_STATE_DIR/kizuna-demo.log"
if pid="$(running_pid kizuna-demo "kizuna")"; then
  log "stopping the previous demo engine (pid $pid)"
  kill "$pid" 2>/dev/null || true
  wait_until 30 0.2 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
fi
log "starting the engine; log $engine_log"
setsid "$bin/kizuna" run >>"$engine_log" 2>&1 </dev/null 9>&- &
engine=$!
write_pid kizuna-demo "$engine"
watcher=""
sim=""
cleanup() {
  if [[ -n "$sim" ]]; then kill "$sim" 2>/dev/null || true; fi
  if [[ -n "$watcher" ]]; then kill "$watcher" 2>/dev/null || true; fi
  kill "$engine" 2>/dev/null || true
  wait "$engine" 2>/dev/null || true
  rm -f "$(pid_file kizuna-demo)"
  log "engine stopped; the stack keeps running (stop it with deploy/local/down.sh)"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

api="http://$KIZUNA_HTTP__BIND"
if ! wait_until 120 0.5 curl -fs -o /dev/null "$api/readyz"; then
  tail -n 30 "$engine_log" >&2
  die "the engine did not become ready within 120 s; see $engine_log"
fi

# ---- webhook gateway (issue 15: webhooks in) ---------------------------------------------------
# The gateway takes signed platform webhooks and produces kizuna.v1 events to this run's input
# topics (it reads the same KIZUNA_* variables as the engine). Its Shopify secret is random per
# run. The sample order is written next to the state and signed here with openssl, so the curl
# printed below is ready to paste; pasting it twice resends the same delivery, counted once.
#   KIZUNA_DEMO_GATEWAY_BIND   the gateway's address (default 127.0.0.1:8085)
log "building kizuna-gateway"
(cd "$repo" && cargo build --locked --bin kizuna-gateway >&2)
gateway_bind="${KIZUNA_DEMO_GATEWAY_BIND:-127.0.0.1:8085}"
gateway_log="$KIZUNA_STATE_DIR/kizuna-gateway-demo.log"
if pid="$(running_pid kizuna-gateway-demo "kizuna-gateway")"; then
  log "stopping the previous demo gateway (pid $pid)"
  kill "$pid" 2>/dev/null || true
  wait_until 30 0.2 bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" 2>/dev/null || true
fi
shopify_secret="$(openssl rand -hex 24)"
KIZUNA_GATEWAY_HTTP__BIND="$gateway_bind" KIZUNA_GATEWAY_SOURCES__SHOPIFY__SECRET="$shopify_secret" \
  setsid "$bin/kizuna-gateway" run >>"$gateway_log" 2>&1 </dev/null 9>&- &
gateway=$!
write_pid kizuna-gateway-demo "$gateway"
trap 'kill "$gateway" 2>/dev/null || true; rm -f "$(pid_file kizuna-gateway-demo)"; cleanup' EXIT
if ! wait_until 60 0.5 curl -fs -o /dev/null "http://$gateway_bind/readyz"; then
  tail -n 30 "$gateway_log" >&2
  die "the gateway did not become ready within 60 s; see $gateway_log"
fi
order_file="$KIZUNA_STATE_DIR/demo-shopify-order.json"
order_customer="1${run##*-}01"   # a Shopify customer id of this run (digits, no leading zero)
cat >"$order_file" <<ORDER
{"id": 1${run##*-}42, "name": "#1042", "processed_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "currency": "JPY",
 "total_price": "42000", "total_discounts": "3000", "source_name": "web",
 "discount_codes": [{"code": "WELCOME", "amount": "3000", "type": "fixed_amount"}],
 "customer": {"id": $order_customer},
 "line_items": [{"sku": "TEA-01", "title": "Sencha", "quantity": 3, "price": "5000"},
                {"sku": "POT-02", "title": "Kyusu teapot", "quantity": 1, "price": "30000"}]}
ORDER
order_sig="$(openssl dgst -sha256 -hmac "$shopify_secret" -binary <"$order_file" | base64)"
cat >&2 <<GATEWAY

  Webhooks in: the gateway listens on http://$gateway_bind (log $gateway_log).
  Post a signed sample Shopify order (orders/paid, 42,000 JPY); the answer comes after the broker's ack:

curl -sS http://$gateway_bind/webhooks/shopify -H 'Content-Type: application/json' -H 'X-Shopify-Topic: orders/paid' -H 'X-Shopify-Webhook-Id: $run' -H 'X-Shopify-Hmac-Sha256: $order_sig' --data-binary @$order_file

  Then: curl -s -H 'Authorization: Bearer $api_token' $api/v1/customers/$order_customer | python3 -m json.tool
  Pasting it again resends the same delivery (same X-Shopify-Webhook-Id): the engine counts it once.
  (The demo engine runs on the event-time clock and this order is dated now: pasted before the
  replay ends, it moves the demo's clock to now.)
GATEWAY
# ---- end of webhook gateway block -------------------------------------------------------------

prefix="c${run##*-}-"   # customers of this run only
ready="$KIZUNA_STATE_DIR/watch.ready"
rm -f "$ready"
# Points change with nearly every event: print every clawback, redemption and debt, and the
# whole points story of one customer (the one the curl below shows); KIZUNA_DEMO_POINTS=all
# prints every POINTS / EXPIRING line.
featured="${prefix}00003"
points_filter() {
  if [[ "${KIZUNA_DEMO_POINTS:-}" == all ]]; then
    cat
  else
    awk -v who="$featured " '!/  (POINTS|EXPIRING) / || index($0, who) || /clawed back|redeemed|given back|debt/ { print; fflush() }'
  fi
}
"$bin/kizuna" watch --ready-file "$ready" > >(points_filter) &
watcher=$!
wait_until 30 0.2 test -f "$ready" || die "kizuna watch did not start"

cat >&2 <<INFO

  Kizuna is running.
    console       $api/console/   (follows the simulated year as it plays; ja/en)
      log in as admin   $api/console/login?token=$KIZUNA_CONSOLE__ADMIN_TOKEN
      log in as viewer  $api/console/login?token=$KIZUNA_CONSOLE__VIEWER_TOKEN
    metrics       $api/metrics
    readiness     $api/readyz
    customer API  $api/v1/customers/${prefix}00003   (viewer token: $api_token)
    engine log    $engine_log
    topics        $run.*  (follow them yourself: KIZUNA_KAFKA__TOPIC_PREFIX=$run. kizuna watch)
  The simulator now replays a year of ${KIZUNA_DEMO_CUSTOMERS:-40} customers; output events appear below:
    TIER / WARNING  tier changes and announced downgrades
    CHURN           churn-risk level changes, with the play to run and the top drivers
    SEGMENT         moves in the customer grid (loyal, angel, hostage, rebel, ...)
    POINTS          points clawed back by refunds (every customer), and everything ${featured}
                    earns, has released and loses to expiry, with the balances after
    EXPIRING        points of ${featured} that expire soon (PointsWillExpire)
                    (KIZUNA_DEMO_POINTS=all: every customer's points lines)
  Try:  curl -s -H 'Authorization: Bearer $api_token' $api/v1/customers/${prefix}00003 | python3 -m json.tool
  Ctrl-C to stop.

INFO
"$bin/kizuna-sim" --customers "${KIZUNA_DEMO_CUSTOMERS:-40}" --rate "${KIZUNA_DEMO_RATE:-60}" \
  --seed "$RANDOM" --customer-prefix "$prefix" &
sim=$!
if [[ -n "${KIZUNA_DEMO_SECONDS:-}" ]]; then
  sleep "$KIZUNA_DEMO_SECONDS"
  log "KIZUNA_DEMO_SECONDS reached"
else
  wait "$watcher" || true
fi
exit 0
