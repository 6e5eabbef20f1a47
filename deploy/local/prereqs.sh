#!/usr/bin/env bash
# Install what building and running Kizuna needs on a fresh Debian 12 machine, skipping what is
# there: a C toolchain and headers for librdkafka (built from source by the rdkafka crate),
# Python 3 (broker readiness probe, the tests' webhook receiver), Rust (rustup) when cargo is
# missing, and a virtualenv ($KIZUNA_CACHE_DIR/venv-receivers) with the Standard Webhooks
# reference library (PyPI standardwebhooks, pinned in tests/receivers/requirements.txt) that the
# webhook tests' receiver verifies every signature with, and the CloudEvents SDK (PyPI
# cloudevents, same file) that the end-to-end suite parses every dead letter with; one
# ($KIZUNA_CACHE_DIR/venv-contracts) with openapi-spec-validator (pinned in tests/contracts/requirements.txt) for
# tests/contracts/check.sh. For the console's browser tests:
# Debian's Chromium with the Noto CJK fonts (Japanese pages), Node.js/npm, a virtualenv
# ($KIZUNA_CACHE_DIR/venv-console) with Playwright for Python (it drives /usr/bin/chromium; its
# own browser download is never used) and axe-core from npm ($KIZUNA_CACHE_DIR/console-node),
# both pinned in tests/console/.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

missing=()
for pkg in build-essential pkg-config libssl-dev zlib1g-dev python3 python3-venv curl ca-certificates \
  chromium fonts-noto-cjk; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# npm comes with Debian's npm package, or inside another nodejs build (e.g. NodeSource's).
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
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

# The virtualenv of the webhook receiver and of the dead letters' CloudEvents check, made with
# Debian's python3 (not a pyenv shim) so it is the same on every machine; reinstalled only when
# the pinned requirements change.
requirements="$KIZUNA_LOCAL_DIR/../../tests/receivers/requirements.txt"
venv="$KIZUNA_CACHE_DIR/venv-receivers"
if [[ -f "$requirements" ]] && ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  ensure_dirs
  log "installing the webhook receiver's Python packages into $venv"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$venv/requirements.txt"
fi

# The contract checks' virtualenv (tests/contracts/check.sh): openapi-spec-validator, and PyYAML
# for the AsyncAPI generator; reinstalled only when the pinned requirements change.
requirements="$KIZUNA_LOCAL_DIR/../../tests/contracts/requirements.txt"
venv="$KIZUNA_CACHE_DIR/venv-contracts"
if [[ -f "$requirements" ]] && ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  ensure_dirs
  log "installing the contract checks' Python packages into $venv"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$venv/requirements.txt"
fi

# The console's browser tests: Playwright for Python and axe-core, reinstalled only when their
# pinned versions change.
console_tests="$KIZUNA_LOCAL_DIR/../../tests/console"
venv="$KIZUNA_CACHE_DIR/venv-console"
if [[ -f "$console_tests/requirements.txt" ]] && ! cmp -s "$console_tests/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
  ensure_dirs
  log "installing the console tests' Python packages into $venv"
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$console_tests/requirements.txt" >&2
  cp "$console_tests/requirements.txt" "$venv/requirements.txt"
fi
node_dir="$KIZUNA_CACHE_DIR/console-node"
if [[ -f "$console_tests/package-lock.json" ]] && ! cmp -s "$console_tests/package-lock.json" "$node_dir/package-lock.json" 2>/dev/null; then
  ensure_dirs
  log "installing axe-core into $node_dir"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$console_tests/package.json" "$console_tests/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --silent >&2)
fi
