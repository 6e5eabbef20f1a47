#!/usr/bin/env bash
# Runs every test: formatting and lint gates, unit and property tests, then against a real
# PostgreSQL and real brokers started by deploy/local:
#   - the end-to-end suite and the webhook gateway suite on Apache Kafka and on tansu;
#   - the webhook-delivery suite on each broker: kizuna-webhooks posting to a real HTTP receiver
#     (tests/receivers/webhook_receiver.py) that verifies every delivery with the Standard
#     Webhooks reference library (installed by deploy/local/prereqs.sh);
#   - the console in Debian's Chromium (Playwright, axe-core), on Apache Kafka; screenshots of
#     every page in both languages go to tests/artifacts/console/;
#   - the guarantees suite (real engine processes killed with -9, resent events, two
#     instances, 1,200 hostile messages, producers on any partitioner) on Apache Kafka, then
#     its disruptive tests (PostgreSQL stopped for 30 s, the broker restarted), one at a time;
#     on tansu, the any-partitioner guarantees.
# Installs what is missing on a fresh Debian machine.
#
#   KIZUNA_TEST_BROKERS_LIST   brokers for the end-to-end suite (default "kafka tansu")
#   KIZUNA_TEST_GUARANTEES     0 to skip the guarantees suite (default 1)
#   CARGO_TARGET_DIR           build cache (default /var/cache/kizuna/target, outside the clone)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
local_dir="$repo/deploy/local"
# shellcheck source-path=SCRIPTDIR source=../deploy/local/lib.sh
. "$local_dir/lib.sh"
step() { printf '\n[kizuna-test] == %s\n' "$*" >&2; }

"$local_dir/prereqs.sh"
# shellcheck disable=SC1091
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KIZUNA_CACHE_DIR/target}"
cd "$repo"
started=$SECONDS

step "cargo fmt --check"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "unit and property tests"
cargo test --locked --workspace --exclude kizuna-e2e

step "published contracts: buf lint and breaking, AsyncAPI, OpenAPI (tests/contracts/check.sh)"
"$repo/tests/contracts/check.sh"

step "building the binaries and the end-to-end suite"
cargo build --locked --bins
cargo test --locked -p kizuna-e2e --no-run

export KIZUNA_TEST_BROKERS="$KIZUNA_BROKER_HOST:$KIZUNA_BROKER_PORT"
for broker in ${KIZUNA_TEST_BROKERS_LIST:-kafka tansu}; do
  step "end-to-end suite on $broker"
  KIZUNA_BROKER="$broker" "$local_dir/up.sh" >/dev/null
  cargo test --locked -p kizuna-e2e --test e2e -- --test-threads 2
  step "webhook gateway suite on $broker"
  cargo test --locked -p kizuna-e2e --test gateway -- --test-threads 2
  step "webhook delivery suite on $broker"
  cargo test --locked -p kizuna-e2e --test webhooks -- --test-threads 2
  # Schema Registry framing: needs the registry up.sh starts (Apicurio, 127.0.0.1:8081).
  step "schema registry framing suite on $broker"
  cargo test --locked -p kizuna-e2e --test registry -- --test-threads 2
  if [[ "$broker" == kafka ]]; then
    step "console in a real browser (Debian's Chromium, Playwright, axe-core) on kafka"
    cargo test --locked -p kizuna-e2e --test console -- --test-threads 1
  fi

  if [[ "$broker" == kafka && "${KIZUNA_TEST_GUARANTEES:-1}" != 0 ]]; then
    step "guarantees suite on kafka"
    KIZUNA_BROKER=kafka cargo test --locked -p kizuna-e2e --test guarantees -- --test-threads 1 --nocapture
    step "guarantees suite on kafka: disruptive tests (PostgreSQL outage, broker restart)"
    KIZUNA_BROKER=kafka cargo test --locked -p kizuna-e2e --test guarantees -- --ignored --test-threads 1 --nocapture
  elif [[ "$broker" == tansu && "${KIZUNA_TEST_GUARANTEES:-1}" != 0 ]]; then
    step "guarantees on tansu: any partitioner (murmur2, CRC32 and key-less producers)"
    KIZUNA_BROKER=tansu cargo test --locked -p kizuna-e2e --test guarantees any_partitioner -- --test-threads 1 --nocapture
  fi
done

# Leave the stack on the default broker (Apache Kafka), as deploy/local/up.sh starts it: the
# demo and the bench that may follow should not find the light broker in its place.
if [[ "$(cat "$KIZUNA_STATE_DIR/broker" 2>/dev/null)" != kafka ]]; then
  step "restoring the default broker (kafka)"
  KIZUNA_BROKER=kafka "$local_dir/up.sh" >/dev/null
fi

step "all tests passed in $((SECONDS - started)) s"
