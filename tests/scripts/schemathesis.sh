#!/usr/bin/env bash
# Property-based API testing with Schemathesis (PyPI), driven by our own
# OpenAPI document (signaling/openapi.json), against the real binary on
# loopback with the demo province: as a health worker, a doctor and an
# admin, it generates valid and invalid requests for every operation and
# fails on any 5xx, any response that breaks the documented schema, and any
# invalid request that is accepted.
#
#   tests/scripts/schemathesis.sh [binary]   (default: the debug build)
#
# TH_ST_REPORT=<dir> keeps each run's requests and responses (VCR cassettes).
# TH_ST_EXAMPLES (default 20) cases per operation and role; TH_ST_SEED
# (default 1, for a reproducible CI) the seed: `TH_ST_SEED=$RANDOM` looks
# somewhere new. The /api/auth operations are left out: logging the
# fuzzing user out, or spending argon2 on every guess, is covered by the
# login tests instead.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
bin=${1:-$target_dir/debug/telehealth}
[ -x "$bin" ] || { echo "no server binary at $bin (cargo build first)" >&2; exit 1; }

venv="${XDG_CACHE_HOME:-$HOME/.cache}/telehealth-schemathesis"
if [ ! -x "$venv/bin/st" ]; then
    echo "== installing schemathesis into $venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet 'schemathesis>=4.0,<5' || exit 1
fi

data=$(mktemp -d "${TMPDIR:-/tmp}/telehealth-st.XXXXXX")
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
media_port=$(python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
admin_pw="admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
TELEHEALTH_ADMIN_PASSWORD="$admin_pw" RUST_LOG=warn "$bin" --demo --data-dir "$data" \
    --http-addr "127.0.0.1:$port" --media-udp-port "$media_port" --public-ip 127.0.0.1 >"$data/server.log" 2>&1 &
server=$!
cleanup() {
    kill "$server" 2>/dev/null
    wait "$server" 2>/dev/null
    rm -rf "$data"
}
trap cleanup EXIT

base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
    curl -fs "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
# The demo accounts' passwords are printed once, at start.
password() { sed 's/\x1b\[[0-9;]*m//g' "$data/server.log" | awk -v u="$1" '$1 == u { print $2; exit }'; }
token() {
    curl -fs -X POST "$base/api/auth/login" -H 'content-type: application/json' \
        -d "{\"username\":\"$1\",\"password\":\"$2\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

failed=0
for who in yta1 bacsi1 admin; do
    if [ "$who" = admin ]; then pw=$admin_pw; else pw=$(password "$who"); fi
    t=$(token "$who" "$pw") || { echo "cannot log in as $who" >&2; exit 1; }
    echo "== schemathesis as $who"
    "$venv/bin/st" --config-file tests/api/schemathesis.toml run signaling/openapi.json \
        --url "$base" -H "Authorization: Bearer $t" \
        --checks not_a_server_error,response_schema_conformance,negative_data_rejection \
        --exclude-path-regex '^/api/(auth|ws)' \
        --max-examples "${TH_ST_EXAMPLES:-20}" --seed "${TH_ST_SEED:-1}" \
        --workers 1 --no-color --output-truncate true --warnings off --generation-database none \
        --report-dir "${TH_ST_REPORT:-$data/report}" ${TH_ST_REPORT:+--report vcr} >"$data/st-$who.log" 2>&1
    status=$?
    # The summary, and the failures (their bodies cut short).
    sed -n '/FAILURES/,$p; /Test cases:/,+1p' "$data/st-$who.log" | cut -c1-400 | head -80
    [ "$status" = 0 ] || failed=1
    if ! kill -0 "$server" 2>/dev/null; then
        echo "the server died" >&2
        tail -20 "$data/server.log" >&2
        exit 1
    fi
done
exit "$failed"
