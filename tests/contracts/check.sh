#!/usr/bin/env bash
# Checks Kizuna's published contracts, and with --write regenerates the generated ones:
#   1. proto/ (kizuna.v1): `buf lint`, and `buf breaking` against proto/baseline/kizuna-v1.binpb,
#      the first release of kizuna.v1 (commit e6b1126): the contract only grows;
#   2. docs/asyncapi.yaml: generated from proto/ and the default configs
#      (tests/contracts/asyncapi.py) and unchanged, then valid for the AsyncAPI parser
#      (npm @asyncapi/parser; any error-level diagnostic fails);
#   3. docs/openapi/{engine,gateway,webhooks}.json: the documents the services generate and
#      serve at /v1/openapi.json (the crates' `openapi` tests compare them), then valid for
#      openapi-spec-validator (PyPI).
# Installs what it needs on a fresh Debian machine, cached under $KIZUNA_CACHE_DIR
# (/var/cache/kizuna): buf from the Go module proxy (bin/buf), the parser (contracts-node/),
# the validator (venv-contracts/, by deploy/local/prereqs.sh).
#
#   tests/contracts/check.sh           check
#   tests/contracts/check.sh --write   regenerate docs/asyncapi.yaml and docs/openapi/*.json
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$repo/tests/contracts"
# shellcheck source-path=SCRIPTDIR source=../../deploy/local/lib.sh
. "$repo/deploy/local/lib.sh"
step() { printf '[kizuna-contracts] %s\n' "$*" >&2; }

write=0
[[ "${1:-}" == --write ]] && write=1

BUF_VERSION=v1.75.0
cache="$KIZUNA_CACHE_DIR"
buf="$cache/bin/buf"
venv="$cache/venv-contracts"
node_dir="$cache/contracts-node"

"$repo/deploy/local/prereqs.sh"
# shellcheck disable=SC1091
[[ -f "$HOME/.cargo/env" ]] && . "$HOME/.cargo/env"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"

# buf, built from the Go module proxy. Go: the one on PATH, /usr/local/go, or Debian's (which
# fetches the toolchain buf asks for through the proxy too, GOTOOLCHAIN=auto).
if [[ "$("$buf" --version 2>/dev/null)" != "${BUF_VERSION#v}" ]]; then
  go="$(command -v go || true)"
  [[ -z "$go" && -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go
  if [[ -z "$go" ]]; then
    [[ $EUID -eq 0 ]] || die "Go is missing; install golang-go (or run as root)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >&2
    go="$(command -v go)"
  fi
  step "installing buf $BUF_VERSION from the Go module proxy"
  mkdir -p "$cache/bin"
  GOBIN="$cache/bin" GOPATH="$cache/go" GOMODCACHE="$cache/go/mod" GOTOOLCHAIN=auto GOFLAGS=-mod=mod \
    "$go" install "github.com/bufbuild/buf/cmd/buf@$BUF_VERSION" >&2
fi

# The AsyncAPI parser, reinstalled only when the lock file changes.
if ! cmp -s "$here/package-lock.json" "$node_dir/package-lock.json" 2>/dev/null ||
  [[ ! -d "$node_dir/node_modules/@asyncapi/parser" ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    [[ $EUID -eq 0 ]] || die "node and npm are missing; install nodejs and npm (or run as root)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >&2
  fi
  step "installing @asyncapi/parser into $node_dir"
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
fi
[[ -x "$venv/bin/openapi-spec-validator" ]] || die "$venv is missing: deploy/local/prereqs.sh installs it"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

step "buf lint (proto/)"
(cd "$repo/proto" && "$buf" lint)
step "buf breaking against proto/baseline/kizuna-v1.binpb (kizuna.v1 as first released, e6b1126)"
(cd "$repo/proto" && "$buf" breaking --against baseline/kizuna-v1.binpb)

(cd "$repo/proto" && "$buf" build -o "$tmp/kizuna.json")
if ((write)); then
  step "writing docs/asyncapi.yaml"
  "$venv/bin/python" "$here/asyncapi.py" "$tmp/kizuna.json" "$repo/docs/asyncapi.yaml"
else
  step "docs/asyncapi.yaml is the document generated from proto/"
  "$venv/bin/python" "$here/asyncapi.py" "$tmp/kizuna.json" "$repo/docs/asyncapi.yaml" --check
fi
step "AsyncAPI parser: docs/asyncapi.yaml"
NODE_PATH="$node_dir/node_modules" node "$here/asyncapi-validate.cjs" "$repo/docs/asyncapi.yaml"

if ((write)); then
  step "writing docs/openapi/*.json from the code"
  export KIZUNA_WRITE_CONTRACTS=1
else
  step "docs/openapi/*.json are the documents the code generates"
fi
# The whole workspace (less the e2e crate), as tests/run.sh's unit-test step builds it: the same
# features, so nothing is rebuilt.
(cd "$repo" && cargo test --locked -q --workspace --exclude kizuna-e2e --lib checked_in_openapi_document >&2)
for doc in "$repo"/docs/openapi/*.json; do
  step "openapi-spec-validator: ${doc#"$repo"/}"
  "$venv/bin/openapi-spec-validator" "$doc" >&2
done
step "contracts OK"
