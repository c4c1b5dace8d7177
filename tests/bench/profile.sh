#!/usr/bin/env bash
# Where the server's time goes under load: records the server process while
# the load generator holds N consultations, then lists the top symbols with
# their share of the server's CPU time and their cost per forwarded packet
# (share × the run's µs per forwarded packet).
#
#   tests/bench/profile.sh                      # ours, 10 consultations, 15 s
#   TARGET=janus N=10 tests/bench/profile.sh
#   CALLGRAPH=1 tests/bench/profile.sh          # also call graphs (DWARF unwinding)
#   TOOL=callgrind N=2 tests/bench/profile.sh   # without perf: callgrind (ours only)
#
# perf samples the cpu-clock software event (VMs without hardware counters
# can still do that). Our release binary keeps line tables, so symbols and
# inlined frames resolve; Debian's janus binary is stripped, so Janus's own
# functions show as addresses (its libraries' exported ones do resolve).
# callgrind runs the server about 50 times slower: use a small N; its counts
# are instructions, not time.
#
# Settings (environment): TARGET (ours|janus), N, WARMUP_S (5), MEASURE_S
# (15), TOOL (perf|callgrind), CALLGRAPH (0|1), TOP (25 rows).
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGET=${TARGET:-ours}
N=${N:-10}
WARMUP_S=${WARMUP_S:-5}
MEASURE_S=${MEASURE_S:-15}
TOOL=${TOOL:-perf}
CALLGRAPH=${CALLGRAPH:-0}
TOP=${TOP:-25}

# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh
bench_deps "$TARGET"
if [ "$TOOL" = perf ] && ! perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
    command -v perf >/dev/null || apt_install linux-perf
    if ! perf record -e cpu-clock -o /dev/null -- true >/dev/null 2>&1; then
        echo "perf cannot sample here: try TOOL=callgrind" >&2
        exit 1
    fi
fi
[ "$TOOL" = callgrind ] && { command -v valgrind >/dev/null || apt_install valgrind; }
bench_build

out="tests/bench/results/profile-$(date -u +%Y-%m-%dT%H%M%SZ)-$TARGET-N$N"
mkdir -p "$out"
json="$out/loadgen.json"
log="$out/loadgen.log"

# Waits until the generator says its window has started; prints the server's pid.
wait_window() {
    local i
    for i in $(seq 1 600); do
        if grep -q '^loadgen: measuring' "$log"; then
            sed -n 's/^loadgen: server .* pid \([0-9]*\)$/\1/p' "$log" | head -1
            return 0
        fi
        if ! kill -0 "$gen_pid" 2>/dev/null; then
            echo "the load generator stopped before measuring: see $log" >&2
            return 1
        fi
        [ "$i" -lt 600 ] && sleep 0.5
    done
    echo "the load generator did not reach its window in 300 s" >&2
    return 1
}

if [ "$TOOL" = perf ]; then
    args=()
    set_target_args "$TARGET"
    "$loadgen" "${args[@]}" --consultations "$N" --warmup "$WARMUP_S" \
        --seconds "$MEASURE_S" --json "$json" 2>"$log" >"$out/loadgen.txt" &
    gen_pid=$!
    server_pid=$(wait_window)
    echo "== recording $TARGET (pid $server_pid) under $N consultations"
    graph=()
    [ "$CALLGRAPH" = 1 ] && graph=(--call-graph "dwarf,16384")
    # Inside the generator's window (which ends by stopping the server), and
    # in a session of its own: perf signals its `sleep` when the recorded
    # process is gone first, and must not hit this script.
    setsid --wait perf record -e cpu-clock -F 999 "${graph[@]}" -p "$server_pid" \
        -o "$out/perf.data" -- sleep $((MEASURE_S > 2 ? MEASURE_S - 1 : 1)) 2>"$out/perf-record.log"
    wait "$gen_pid"
    perf report -i "$out/perf.data" --stdio --no-children --sort dso,symbol \
        --percent-limit 0.3 2>/dev/null >"$out/perf-report.txt"
    [ "$CALLGRAPH" = 1 ] && perf report -i "$out/perf.data" --stdio --children \
        --percent-limit 2 2>/dev/null >"$out/perf-callgraph.txt"
    us=$(jq -r '.server.cpu_us_per_forwarded_packet // 0' "$json")
    echo
    cat "$out/loadgen.txt"
    echo
    samples=$(sed -n 's/^# Samples: \([0-9]*\).*/\1/p' "$out/perf-report.txt")
    printf 'Top symbols of the %s process (%.1f µs per forwarded packet in all; %s samples):\n' \
        "$TARGET" "$us" "$samples"
    printf '%7s  %7s  %-20s %s\n' "share" "µs/pkt" "object" "symbol"
    # perf report rows: "  12.34%  telehealth  [.] symbol …  -  -" (the
    # dashes: IPC columns, empty without hardware counters).
    grep -E '^ +[0-9.]+%' "$out/perf-report.txt" | head -n "$TOP" |
        awk -v us="$us" '{ pct = $1; sub(/%/, "", pct); dso = $2; $1 = ""; $2 = ""; $3 = "";
            sub(/^ +/, ""); sub(/( +-)+ *$/, ""); printf "%6.2f%%  %7.2f  %-20s %.120s\n", pct, pct * us / 100, dso, $0 }'
else
    if [ "$TARGET" != ours ]; then
        echo "TOOL=callgrind runs our server only" >&2
        exit 1
    fi
    password="profile-$RANDOM-$RANDOM-password"
    TELEHEALTH_ADMIN_PASSWORD=$password valgrind --tool=callgrind \
        --callgrind-out-file="$out/callgrind.out" "$telehealth" \
        --http-addr 127.0.0.1:0 --media-udp-port 0 --data-dir "$out/data" \
        >"$out/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 240); do
        grep -q 'listening on' "$out/server.log" && break
        sleep 0.5
    done
    url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$out/server.log" | head -1)
    [ -n "$url" ] || { echo "the server did not start under valgrind: see $out/server.log" >&2; exit 1; }
    "$loadgen" --server "$url" --admin-password "$password" --server-pid "$server_pid" \
        --consultations "$N" --warmup "$WARMUP_S" --seconds "$MEASURE_S" --json "$json" \
        2>"$log" | tee "$out/loadgen.txt"
    kill -TERM "$server_pid"
    wait "$server_pid" || true
    callgrind_annotate --inclusive=no "$out/callgrind.out" 2>/dev/null | head -n $((TOP + 25))
fi
echo
echo "results: $out"
