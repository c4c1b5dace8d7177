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

linkemu_bin="$(dirname "$bin")/linkemu"
if [ ! -x "$linkemu_bin" ] || [ "$linkemu_bin" -ot "$root/tests/src/linkemu.rs" ]; then
  echo "== building the link emulator"
  (cd "$root" && cargo build -p telehealth-tests --bin linkemu)
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
  linkemu_bin="$target_dir/debug/linkemu"
fi

data=$(mktemp -d "${TMPDIR:-/tmp}/telehealth-browser.XXXXXX")
port=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
# Two media engines whatever the machine (each call lives on one, each has its own port), so that the
# browsers meet calls on more than one; the first of two ports in a row free for UDP and TCP.
media_engines=2
media_port=$(python3 - "$media_engines" <<'PY'
import socket, sys
n = int(sys.argv[1])
for _ in range(100):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0)); first = s.getsockname()[1]; s.close()
    if first + n > 65536:
        continue
    held = []
    try:
        for p in range(first, first + n):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                t = socket.socket(socket.AF_INET, kind); held.append(t); t.bind(('127.0.0.1', p))
    except OSError:
        continue
    finally:
        for t in held:
            t.close()
    print(first)
    break
else:
    sys.exit("no free media ports")
PY
)
admin_pw="admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
server_pid=""
linkemu_pid=""

# The station's browser runs in a network namespace of its own, joined to this one by a veth pair: all of its
# traffic (the pages, the WebSocket, the media) goes through the link emulator, which can cut it (blackout),
# move it (handover) or shape it. The server announces the emulator's address for media. Nothing leaves the host.
netns="thst$$"
veth="thv$$"
net="10.77.$(( $$ % 250 ))"
host_ip="$net.1"
station_ip="$net.2"
netns_up=0
setup_netns() {
  ip netns add "$netns" &&
    ip link add "${veth}a" type veth peer name "${veth}b" &&
    ip link set "${veth}b" netns "$netns" &&
    ip addr add "$host_ip/30" dev "${veth}a" &&
    ip link set "${veth}a" up &&
    ip netns exec "$netns" ip addr add "$station_ip/30" dev "${veth}b" &&
    ip netns exec "$netns" ip link set "${veth}b" up &&
    ip netns exec "$netns" ip link set lo up
}

cleanup() {
  status=$?
  for pid in "$server_pid" "$linkemu_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "$netns_up" = 1 ]; then
    ip link del "${veth}a" 2>/dev/null || true
    ip netns del "$netns" 2>/dev/null || true
  fi
  # TH_SERVER_LOG=<file> keeps the server's log (and the emulator's, beside it) for a closer look.
  if [ -n "${TH_SERVER_LOG:-}" ] && [ -f "$data/server.log" ]; then
    cp "$data/server.log" "$TH_SERVER_LOG" || true
    [ -f "$data/linkemu.log" ] && cp "$data/linkemu.log" "$TH_SERVER_LOG.linkemu" || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$data/server.log" ]; then
    echo "== last lines of the server log" >&2
    tail -n 40 "$data/server.log" >&2 || true
  fi
  rm -rf "$data"
  exit "$status"
}
trap cleanup EXIT INT TERM

if [ "$(id -u)" = 0 ]; then
  setup_netns || { echo "cannot create the station's network namespace (ip netns, veth)" >&2; exit 1; }
  netns_up=1
  public_ip="$host_ip"
else
  echo "== not root: no network namespace for the station, so the network tests (network.spec.js) are skipped" >&2
  public_ip="127.0.0.1"
fi

last_media_port=$((media_port + media_engines - 1))
echo "== starting the server on 127.0.0.1:$port (media ports $media_port-$last_media_port, announced on $public_ip)"
# Settings from the caller's environment must not point the test server at a real database.
env -u TELEHEALTH_DATABASE_URL -u TELEHEALTH_JWT_KEY -u TELEHEALTH_TLS_CERT -u TELEHEALTH_TLS_KEY -u TELEHEALTH_ICE_SERVERS \
  TELEHEALTH_ADMIN_PASSWORD="$admin_pw" \
  "$bin" --demo --data-dir "$data" --http-addr "127.0.0.1:$port" \
  --media-engines "$media_engines" --media-udp-port "$media_port" \
  --public-ip "$public_ip" >"$data/server.log" 2>&1 &
server_pid=$!

if [ "$netns_up" = 1 ]; then
  # Media (each engine's UDP port, and ICE-TCP on the same numbers) and the station's pages go through the
  # emulator.
  relays=(--tcp "$host_ip:$port=127.0.0.1:$port")
  for p in $(seq "$media_port" "$last_media_port"); do
    relays+=(--udp "$host_ip:$p=127.0.0.1:$p" --tcp "$host_ip:$p=127.0.0.1:$p")
  done
  # TH_JANUS_RTP_PORTS=FIRST-LAST (tests/bench/network.sh): Janus, the comparison server, behind the same
  # emulator: its API and each of its media ports, announced on the same address.
  if [ -n "${TH_JANUS_RTP_PORTS:-}" ]; then
    TH_JANUS_HTTP_PORT=$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
    relays+=(--tcp "$host_ip:$TH_JANUS_HTTP_PORT=127.0.0.1:$TH_JANUS_HTTP_PORT")
    for p in $(seq "${TH_JANUS_RTP_PORTS%-*}" "${TH_JANUS_RTP_PORTS#*-}"); do
      relays+=(--udp "$host_ip:$p=127.0.0.1:$p")
    done
    export TH_JANUS_HTTP_PORT
  fi
  "$linkemu_bin" "${relays[@]}" --control 127.0.0.1:0 >"$data/linkemu.log" 2>&1 &
  linkemu_pid=$!
  for _ in $(seq 1 100); do
    grep -q '^linkemu control ' "$data/linkemu.log" 2>/dev/null && break
    kill -0 "$linkemu_pid" 2>/dev/null || { echo "the link emulator exited early" >&2; cat "$data/linkemu.log" >&2; exit 1; }
    sleep 0.1
  done
  TH_LINKEMU=$(sed -n 's/^linkemu control //p' "$data/linkemu.log" | head -1)
  [ -n "$TH_LINKEMU" ] || { echo "the link emulator did not start" >&2; exit 1; }
  export TH_LINKEMU TH_NETNS="$netns" TH_STATION_IP="$station_ip" TH_STATION_URL="http://$host_ip:$port" TH_HOST_IP="$host_ip"
fi

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
# A spec that needs a server of its own (firewall.spec.js: one configured with TURN) starts this binary.
export TH_BIN="$bin"
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
