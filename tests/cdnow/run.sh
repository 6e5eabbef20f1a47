#!/usr/bin/env bash
# The CDNOW benchmark (issue 17; README "Public benchmark: CDNOW"), one command:
#   tests/cdnow/run.sh [--strict-targets] [--json FILE]
# Needs PostgreSQL (deploy/local/up.sh; no broker is used). Makes the reference venv if missing
# (lifetimes, pinned: tests/cdnow/requirements.txt), builds kizuna unless KIZUNA_BIN is set,
# loads the 39 calibration weeks into a fresh database with `kizuna backfill`, fits with
# `kizuna fit-model`, scores with `kizuna export-scores`, and prints the figures next to lifetimes
# computed in the same run. Exit 1 when a Kizuna model is off its lifetimes counterpart.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${KIZUNA_CDNOW_VENV:-${KIZUNA_CACHE_DIR:-/var/cache/kizuna}/venv-cdnow}"
admin_url="${KIZUNA_TEST_DATABASE_URL:-postgres://kizuna:kizuna@127.0.0.1:5432/kizuna}"

if ! "$venv/bin/python" -c 'import lifetimes' 2>/dev/null; then
    echo "cdnow: making the reference venv $venv (lifetimes)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$root/tests/cdnow/requirements.txt"
fi

if [[ -z "${KIZUNA_BIN:-}" ]]; then
    (cd "$root" && cargo build -q --bin kizuna)
    KIZUNA_BIN="$(cd "$root" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/kizuna"
fi

db="kizuna_cdnow_$(date +%s)_$$"
psql -q "$admin_url" -c "CREATE DATABASE $db" >/dev/null
cleanup() { psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; }
trap cleanup EXIT

# Only the database matters here: every other KIZUNA_* variable of the caller is dropped.
# shellcheck disable=SC2046
env $(env | sed -n 's/^\(KIZUNA_[A-Z0-9_]*\)=.*/-u \1/p') \
    KIZUNA_DATABASE__URL="${admin_url%/*}/$db" KIZUNA_LOG__LEVEL=warn \
    "$venv/bin/python" "$root/tests/cdnow/cdnow.py" --kizuna "$KIZUNA_BIN" "$@"
