#!/usr/bin/env bash
# Runs every test: formatting and lint gates, unit and property tests, then the end-to-end
# suite against a real PostgreSQL and each real broker (Apache Kafka, then tansu), all started
# by deploy/local. Installs what is missing on a fresh Debian machine.
#
#   KIZUNA_TEST_BROKERS_LIST   brokers to run the end-to-end suite on (default "kafka tansu")
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

step "building the binaries and the end-to-end suite"
cargo build --locked --bins
cargo test --locked -p kizuna-e2e --no-run

for broker in ${KIZUNA_TEST_BROKERS_LIST:-kafka tansu}; do
  step "end-to-end suite on $broker"
  KIZUNA_BROKER="$broker" "$local_dir/up.sh" >/dev/null
  KIZUNA_TEST_BROKERS="$KIZUNA_BROKER_HOST:$KIZUNA_BROKER_PORT" \
    cargo test --locked -p kizuna-e2e -- --test-threads 2
done

step "all tests passed in $((SECONDS - started)) s"
