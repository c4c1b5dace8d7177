#!/usr/bin/env bash
# Browser tests: builds the server if needed, starts it on a free loopback port with a fresh data directory and
# the demo province, runs Playwright (Debian's Chromium, never a downloaded browser), stops the server.
# Exits non-zero when a test fails. Extra arguments go to `playwright test` (e.g. -g device).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
chromium=${CHROMIUM:-/usr/bin/chromium}

if [ ! -x "$chromium" ]; then
  echo "Chromium not found at $chromium: install Debian's package (apt-get install -y chromium)." >&2
  exit 2
fi

if [ -n "${TELEHEALTH_BIN:-}" ] && [ -x "$TELEHEALTH_BIN" ]; then
  # The caller (tests/run.sh) already built it with the test suite.
  bin="$TELEHEALTH_BIN"
else
  echo "== building the server (cargo decides whether anything changed)"
  (cd "$root" && cargo build --bin telehealth)
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
  bin="$target_dir/debug/telehealth"
fi

if [ ! -d "$here/node_modules/@playwright/test" ]; then
  echo "== installing the test dependencies (no browser download)"
  (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

data=$(mktemp -d "${TMPDIR:-/tmp}/telehealth-browser.XXXXXX")
port=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
admin_pw="admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
server_pid=""

cleanup() {
  status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$data/server.log" ]; then
    echo "== last lines of the server log" >&2
    tail -n 40 "$data/server.log" >&2 || true
  fi
  rm -rf "$data"
  exit "$status"
}
trap cleanup EXIT INT TERM

echo "== starting the server on 127.0.0.1:$port"
# Settings from the caller's environment must not point the test server at a real database.
env -u TELEHEALTH_DATABASE_URL -u TELEHEALTH_JWT_KEY -u TELEHEALTH_TLS_CERT -u TELEHEALTH_TLS_KEY -u TELEHEALTH_ICE_SERVERS \
  TELEHEALTH_ADMIN_PASSWORD="$admin_pw" \
  "$bin" --demo --data-dir "$data" --http-addr "127.0.0.1:$port" --media-udp-port 0 >"$data/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 240); do
  if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then echo "the server exited early" >&2; exit 1; fi
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null

# The demo accounts' passwords, as printed: "    yta1     <password>  (health_worker)".
while read -r user pw _role; do
  export "TH_PW_${user^^}=$pw"
done < <(grep -E '^\s+(yta[0-9]+|bacsi[0-9]+)\s+\S+\s+\(' "$data/server.log")
export TH_PW_ADMIN="$admin_pw"
export TH_BASE_URL="http://127.0.0.1:$port"
export CHROMIUM="$chromium"
[ -n "${TH_PW_YTA1:-}" ] && [ -n "${TH_PW_BACSI1:-}" ] || { echo "demo passwords not found in the server log" >&2; exit 1; }

echo "== running the browser tests"
cd "$here"
started=$(date +%s)
set +e
npx playwright test "$@"
result=$?
set -e
echo "== browser tests finished in $(( $(date +%s) - started )) s (exit $result); screenshots in $here/screenshots/"
exit "$result"
