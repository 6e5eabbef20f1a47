#!/usr/bin/env bash
# Install what building and running Kizuna needs on a fresh Debian 12 machine, skipping what is
# there: a C toolchain and headers for librdkafka (built from source by the rdkafka crate),
# Python 3 (broker readiness probe), and Rust (rustup) when cargo is missing.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
for pkg in build-essential pkg-config libssl-dev zlib1g-dev python3 curl ca-certificates; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  [[ $EUID -eq 0 ]] || die "missing packages ${missing[*]}; run as root or install them"
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    log "cargo is in $HOME/.cargo/bin; add it to PATH (source \$HOME/.cargo/env)"
  else
    log "installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >&2
  fi
fi
