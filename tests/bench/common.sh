#!/usr/bin/env bash
# Shared by run.sh, smoke.sh and profile.sh (sourced from the repository
# root): installing what the benchmark needs, building the release binaries.

# shellcheck source=tests/scripts/apt.sh
source tests/scripts/apt.sh

# jq for the reports; for Janus (when the targets name it): Debian's janus
# package and a C compiler for its loopback shim (see tests/src/janus_server.rs).
bench_deps() { # targets…
    command -v jq >/dev/null || apt_install jq
    case " $* " in
    *" janus "*)
        if ! command -v janus >/dev/null; then
            echo "== installing Debian's janus package"
            apt_install janus
            # The packaged service listens on every interface; the benchmark
            # starts its own loopback-only instance.
            systemctl disable --now janus.service >/dev/null 2>&1 || true
        fi
        command -v cc >/dev/null || apt_install gcc
        ;;
    esac
}

# Builds the server and the load generator (release); sets $telehealth and
# $loadgen to their paths.
bench_build() {
    echo "== building release binaries"
    cargo build --release --bin telehealth
    cargo build --release -p telehealth-tests --bin loadgen
    local target_dir=${CARGO_TARGET_DIR:-target}
    telehealth="$target_dir/release/telehealth"
    loadgen="$target_dir/release/loadgen"
    export telehealth loadgen
}

# Sets the array `args` to the loadgen arguments that select a target:
# ours (one media engine per CPU it may use), ours1 (ours with one engine),
# janus.
set_target_args() { # ours|ours1|janus
    # shellcheck disable=SC2034 # used by the scripts that source this
    case "$1" in
    ours) args=(--server-bin "$telehealth") ;;
    ours1) args=(--server-bin "$telehealth" --server-engines 1) ;;
    *) args=(--target janus --janus-event-loops "${JANUS_EVENT_LOOPS:-0}") ;;
    esac
    # On the CPUs SERVER_CPUS names, when set (run.sh sets it).
    if [ -n "${SERVER_CPUS:-}" ]; then
        args+=(--server-cpus "$SERVER_CPUS")
    fi
}
