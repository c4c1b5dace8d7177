#!/usr/bin/env bash
# Benchmark: how many consultations one machine carries, our server and
# Janus's VideoRoom side by side. A benchmark, not a test: it is not part of
# .ci/run (tests/bench/smoke.sh is the short check that can be).
#
#   tests/bench/run.sh                         # both servers, N = 5, 10, 15, …
#   TARGETS=ours STEPS="10 20 30" tests/bench/run.sh
#
# Installs Debian's janus package (and jq) when missing, builds the release
# binaries, then steps N for each server, interleaved (ours at N, Janus at
# N, then the next N) so that both see the same machine. Every step starts
# a fresh server, joins N consultations (two synthetic participants each),
# waits WARMUP_S seconds (not part of the figures) and measures MEASURE_S
# seconds. SERVER_CPUS and GEN_CPUS can pin the server under test and the
# generator to separate CPUs (off by default: on two vCPUs a generator held
# to one core queues its own packets sooner, p99 43-47 ms at N=30 for both
# servers against 9-18 ms unpinned). A server's stepping stops once it has missed the capacity
# criteria (under 1 % loss, p99 added delay under 50 ms, every consultation
# held) at two steps in a row, or once the generator itself used more than
# GEN_CPU_LIMIT % of one core (past that it queues its own packets and
# measures itself: recorded as the reason). Capacity is the largest N that
# met the criteria.
#
# Writes one JSON per step and summary.md under
# tests/bench/results/<UTC date and time>/ (ignored by git), and prints the
# capacity per server. Settings, as environment variables:
#   TARGETS        servers to step                    (default "ours janus")
#   STEPS          the N to try, in order             (default 5 10 15 … MAX_N)
#   STEP, MAX_N    the default steps' stride and end  (default 5, 100)
#   WARMUP_S       warm-up per step, seconds          (default 5)
#   MEASURE_S      measured seconds per step          (default 20)
#   SERVER_CPUS    the server's CPUs, a taskset list  (default none: not pinned)
#   GEN_CPUS       the generator's CPUs               (default none: not pinned)
#   GEN_CPU_LIMIT  generator CPU, % of one core       (default 100; pinned: 90
#                                                      per generator CPU)
#   JANUS_EVENT_LOOPS  Janus's event_loops            (default 0: Janus's default)
#   FLOOR          1: first measure the floor per forwarded packet
#                  (sfu/benches/floor.rs: SRTP decrypt + encrypt + one
#                  loopback UDP hop) and report each step's µs per packet
#                  as a multiple of it                (default 1)
#
# Targets: ours (one media engine per CPU it may use: one when SERVER_CPUS
# names one CPU), ours1 (ours held to one engine), janus.
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGETS=${TARGETS:-ours janus}
FLOOR=${FLOOR:-1}
STEP=${STEP:-5}
MAX_N=${MAX_N:-100}
STEPS=${STEPS:-$(seq "$STEP" "$STEP" "$MAX_N" | tr '\n' ' ')}
WARMUP_S=${WARMUP_S:-5}
MEASURE_S=${MEASURE_S:-20}
SERVER_CPUS=${SERVER_CPUS:-}
GEN_CPUS=${GEN_CPUS:-}
if [ -n "$GEN_CPUS" ]; then
    gen_cpu_count=$(taskset -c "$GEN_CPUS" nproc)
    GEN_CPU_LIMIT=${GEN_CPU_LIMIT:-$((90 * gen_cpu_count))}
else
    GEN_CPU_LIMIT=${GEN_CPU_LIMIT:-100}
fi
export SERVER_CPUS
export JANUS_EVENT_LOOPS=${JANUS_EVENT_LOOPS:-0}

# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh
# shellcheck disable=SC2086 # TARGETS is a list
bench_deps $TARGETS
bench_build

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
out="tests/bench/results/$stamp"
mkdir -p "$out"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    dirty=" (with uncommitted changes)"
fi

# The floor, in this run, on this machine: the sum of the three medians.
floor_us=""
if [ "$FLOOR" = 1 ]; then
    echo "== the floor per forwarded packet (sfu/benches/floor.rs)"
    cargo bench -q -p telehealth-sfu --bench floor -- --noplot >"$out/floor.txt" 2>&1
    criterion="${CARGO_TARGET_DIR:-target}/criterion/floor"
    floor_us=$(jq -s '[.[].median.point_estimate] | add / 1000 | . * 100 | round / 100' \
        "$criterion/srtp encrypt/new/estimates.json" "$criterion/srtp decrypt/new/estimates.json" \
        "$criterion/udp hop/new/estimates.json")
    echo "   floor: $floor_us µs per forwarded packet"
fi

declare -A stopped capacity missed reason
for t in $TARGETS; do
    stopped[$t]=0
    capacity[$t]=0
    missed[$t]=0
    reason[$t]="it reached the last step"
done

run_step() { # target n → writes $out/<target>-N<n>.json
    local t=$1 n=$2 args=()
    set_target_args "$t"
    echo "== $t, N=$n (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    local pin=()
    [ -n "$GEN_CPUS" ] && pin=(taskset -c "$GEN_CPUS")
    if ! "${pin[@]}" "$loadgen" "${args[@]}" --consultations "$n" --warmup "$WARMUP_S" \
        --seconds "$MEASURE_S" --json "$out/$t-N$n.json" 2>"$out/$t-N$n.log"; then
        echo "   loadgen failed: see $out/$t-N$n.log"
        return 1
    fi
}

for n in $STEPS; do
    for t in $TARGETS; do
        [ "${stopped[$t]}" = 1 ] && continue
        json="$out/$t-N$n.json"
        if ! run_step "$t" "$n"; then
            stopped[$t]=1
            reason[$t]="the generator failed at N=$n"
            continue
        fi
        within=$(jq -r '.capacity_criteria.within' "$json")
        gen=$(jq -r '.generator.cpu_percent_of_one_core // 0 | floor' "$json")
        jq -r --arg floor "$floor_us" '"   held \(.consultations_held)/\(.consultations), loss \(.loss_pct.total * 100 | round / 100) %, video p99 \(.added_delay_ms.video.p99 // "-") ms, server \(.server.cpu_us_per_forwarded_packet // 0 | round) µs/pkt\(if $floor == "" then "" else " (\((.server.cpu_us_per_forwarded_packet // 0) / ($floor | tonumber) * 10 | round / 10)× the floor)" end), generator \(.generator.cpu_percent_of_one_core // 0 | round) % of a core → within: \(.capacity_criteria.within)"' "$json"
        if [ "$within" = true ]; then
            capacity[$t]=$n
            missed[$t]=0
        else
            missed[$t]=$((${missed[$t]} + 1))
        fi
        if [ "$gen" -gt "$GEN_CPU_LIMIT" ]; then
            stopped[$t]=1
            reason[$t]="the generator used $gen % of a core at N=$n (limit $GEN_CPU_LIMIT %): beyond this it measures itself"
        elif [ "${missed[$t]}" -ge 2 ]; then
            stopped[$t]=1
            reason[$t]="missed the criteria at two steps in a row (last N=$n)"
        fi
    done
done

# The summary: one row per step, then the capacity per server.
summary="$out/summary.md"
{
    echo "# Benchmark run $stamp"
    echo
    first=$(find "$out" -name '*.json' | sort | head -1)
    if [ -n "$first" ]; then
        jq -r '"Machine: \(.machine.cpus) vCPU \(.machine.cpu_model), \(.machine.memory_gib) GiB, Linux \(.machine.kernel)."' "$first"
    fi
    echo "Commit: $commit$dirty. Each step: ${WARMUP_S} s warm-up, ${MEASURE_S} s measured, fresh server."
    echo "Server on CPU(s) ${SERVER_CPUS:-any}, generator on CPU(s) ${GEN_CPUS:-any} (generator limit $GEN_CPU_LIMIT % of a core)."
    if [ -n "$floor_us" ]; then
        echo "Floor per forwarded packet in this run (sfu/benches/floor.rs: SRTP decrypt + encrypt + one loopback UDP hop): $floor_us µs."
    fi
    echo "Command: \`TARGETS=\"$TARGETS\" STEPS=\"$STEPS\" WARMUP_S=$WARMUP_S MEASURE_S=$MEASURE_S SERVER_CPUS=\"$SERVER_CPUS\" GEN_CPUS=\"$GEN_CPUS\" tests/bench/run.sh\`"
    echo
    echo "| server | N | held | tones right | forwarded pkts/s | loss total / worst track | video delay p50 / p95 / p99 | audio delay p50 / p95 / p99 | join p50 / p95 | server CPU | µs per forwarded packet | × floor | server KiB per consultation | generator CPU | load avg before | within |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for t in $TARGETS; do
        for n in $STEPS; do
            json="$out/$t-N$n.json"
            [ -f "$json" ] || continue
            jq -r --arg floor "$floor_us" 'def f(d): if . == null then "-" else (. * pow(10; d) | round / pow(10; d) | tostring) end;
                "| \(.target)\(if .settings.server_engines then " (\(.settings.server_engines) engine)" else "" end) \(.server_version) | \(.consultations) | \(.consultations_held) | \(.tones_right)/\(.consultations_joined * 2) | \(.forwarded_packets_per_s | f(0)) | \(.loss_pct.total | f(2)) / \(.loss_pct.worst_track | f(2)) % | \(.added_delay_ms.video.p50 | f(1)) / \(.added_delay_ms.video.p95 | f(1)) / \(.added_delay_ms.video.p99 | f(1)) ms | \(.added_delay_ms.audio.p50 | f(1)) / \(.added_delay_ms.audio.p95 | f(1)) / \(.added_delay_ms.audio.p99 | f(1)) ms | \(.join_ms.p50 | f(0)) / \(.join_ms.p95 | f(0)) ms | \(.server.cpu_percent_of_one_core | f(0)) % | \(.server.cpu_us_per_forwarded_packet | f(1)) | \(if $floor == "" or .server.cpu_us_per_forwarded_packet == null then "-" else (.server.cpu_us_per_forwarded_packet / ($floor | tonumber) | f(1)) end) | \(.server.rss_kib_per_consultation | f(0)) | \(.generator.cpu_percent_of_one_core | f(0)) % | \(.machine.loadavg_before) | \(.capacity_criteria.within) |"' "$json"
        done
    done
    echo
    for t in $TARGETS; do
        echo "- **$t**: capacity ${capacity[$t]} consultations; stopped because ${reason[$t]}."
    done
} >"$summary"

echo
cat "$summary"
echo
echo "results: $out"
