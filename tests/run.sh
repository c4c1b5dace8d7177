#!/usr/bin/env bash
# Runs every test of the workspace: unit, records (SQLite and PostgreSQL),
# HTTP, end-to-end through the real binary, media.
#
# Installs what is missing (Debian packages: PostgreSQL, libopus, …), starts
# a throwaway PostgreSQL server on loopback, runs the suite, stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/scripts/deps.sh
# shellcheck source=tests/scripts/postgres.sh
source tests/scripts/postgres.sh

if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
