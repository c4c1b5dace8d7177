#!/usr/bin/env bash
# A short check of the benchmark tooling (under a minute after the build):
# two consultations for 5 s against each server; every consultation must be
# held, with audio (the right tone) and video both ways. Not the benchmark
# (tests/bench/run.sh is). The Rust suite runs the same check against our
# server in tests/tests/loadgen_smoke.rs.
#
#   tests/bench/smoke.sh                 # ours and Janus (installed when missing)
#   TARGETS=ours tests/bench/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

TARGETS=${TARGETS:-ours janus}
# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh
# shellcheck disable=SC2086 # TARGETS is a list
bench_deps $TARGETS
bench_build

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
failed=0
for t in $TARGETS; do
    args=()
    set_target_args "$t"
    echo "== $t: 2 consultations, 5 s"
    if ! "$loadgen" "${args[@]}" --consultations 2 --warmup 1 --seconds 5 \
        --json "$out/$t.json" 2>"$out/$t.log"; then
        echo "FAIL $t: loadgen failed"
        cat "$out/$t.log"
        failed=1
        continue
    fi
    if jq -e '.consultations_held == 2 and .tones_right == 4
            and (.tracks | length) == 8 and ([.tracks[].packets > 0] | all)' \
        "$out/$t.json" >/dev/null; then
        echo "ok $t"
    else
        echo "FAIL $t: not every consultation held with audio and video both ways"
        failed=1
    fi
done
exit "$failed"
