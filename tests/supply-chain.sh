#!/usr/bin/env bash
# The supply-chain checks of tests/run.sh (README: Supply chain), against deny.toml and the
# Cargo.toml files:
#   - cargo deny: licences, banned crates, sources (crates.io only); and the RustSec advisories
#     when the advisory database can be fetched (it is cloned from GitHub, which some machines,
#     this project's CI among them, cannot reach: then it says so and goes on);
#   - cargo machete: dependencies declared and never used.
# Installs pinned cargo-deny and cargo-machete with `cargo install --locked` when missing (into
# ~/.cargo/bin, once per machine: later runs reuse them).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
say() { printf '[kizuna-supply-chain] %s\n' "$*" >&2; }

DENY_VERSION=0.20.2
MACHETE_VERSION=0.9.2

# tool crate version: installs crate@version unless `cargo tool --version` already names it.
ensure() {
  local tool=$1 crate=$2 version=$3
  if cargo "$tool" --version 2>/dev/null | grep -qF "$version"; then
    return
  fi
  say "installing $crate $version: cargo install --locked $crate --version $version (into ~/.cargo/bin; once per machine)"
  local t0=$SECONDS
  cargo install --locked --quiet "$crate" --version "$version" >&2
  say "installed $crate in $((SECONDS - t0)) s"
}
ensure deny cargo-deny "$DENY_VERSION"
ensure machete cargo-machete "$MACHETE_VERSION"

say "cargo deny check licenses bans sources"
cargo deny --locked check licenses bans sources

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if timeout 120 cargo deny fetch db >"$log" 2>&1; then
  say "cargo deny check advisories"
  cargo deny --locked check advisories
else
  say "the RustSec advisory database cannot be fetched here; advisories NOT checked:"
  grep -m1 -iE 'fatal|error' "$log" >&2 || tail -n 1 "$log" >&2
fi

say "cargo machete (unused dependencies)"
cargo machete
