#!/usr/bin/env bash
# Runs every test: Rust unit, records (SQLite and PostgreSQL), HTTP,
# end-to-end through the real binary, media (real WebRTC peers), fuzz
# targets (a second or a few of each); then property-based API tests
# (Schemathesis), the FHIR export through an independent R4 validator
# (tests/scripts/fhir.sh; TELEHEALTH_FHIR_VALIDATION=0 skips it), the browser
# app's type check and lint, and the browser tests in Chromium.
#
# Installs what is missing (Debian packages: PostgreSQL, libopus, Chromium…;
# npm packages for the checks), starts a throwaway PostgreSQL server on
# loopback, runs everything, stops it. Set TELEHEALTH_BROWSER_TESTS=0 to skip
# the browser part. Extra arguments go to cargo nextest.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

bash tests/scripts/deps.sh || exit 1
# shellcheck source=tests/scripts/postgres.sh
source tests/scripts/postgres.sh || exit 1

log=$(mktemp)
failed=0
# The tests' databases and data directories go into a directory of this run,
# removed at the end: a run leaves nothing behind (each SQLite test database
# is up to ~100 MB, and a few thousand of them filled a disk).
run_tmp=$(mktemp -d "${TMPDIR:-/tmp}/telehealth-run.XXXXXX") || exit 1
# Like /tmp: a test runs a throwaway PostgreSQL as its own user in there.
chmod 1777 "$run_tmp"
export TMPDIR="$run_tmp"

echo "== Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
else
    cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log"
fi
[ "${PIPESTATUS[0]}" = 0 ] || failed=1
# nextest: "Summary [ 77.682s] 115 tests run: 115 passed, 0 skipped"
rust_passed=$(grep -Eo '[0-9]+ tests? run: [0-9]+ passed' "$log" | tail -1 | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+')
rust_failed=$(grep -Eo '[0-9]+ failed' "$log" | tail -1 | grep -Eo '[0-9]+')
if [ -z "$rust_passed" ]; then
    # cargo test prints one "test result:" line per binary.
    rust_passed=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$log" | grep -Eo '[0-9]+ passed' | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
fi

# Property-based API tests (Schemathesis, from our OpenAPI document) against
# the binary the integration tests built. TELEHEALTH_API_FUZZ=0 skips them.
api_passed=0
api_failed=0
if [ "${TELEHEALTH_API_FUZZ:-1}" = 1 ]; then
    echo "== API property tests (schemathesis)"
    if bash tests/scripts/schemathesis.sh; then api_passed=1; else api_failed=1; failed=1; fi
fi

fhir_passed=0
fhir_failed=0
if [ "${TELEHEALTH_FHIR_VALIDATION:-1}" = 1 ]; then
    echo "== FHIR R4 export through an independent validator (Medplum)"
    if bash tests/scripts/fhir.sh; then fhir_passed=1; else fhir_failed=1; failed=1; fi
fi

browser_passed=0
browser_failed=0
if [ "${TELEHEALTH_BROWSER_TESTS:-1}" = 1 ]; then
    echo "== browser app: type check and lint"
    (
        cd web-client
        [ -d node_modules/typescript ] || npm ci --no-audit --no-fund
        npm run --silent typecheck && npm run --silent lint
    ) || failed=1
    echo "== browser tests (Chromium)"
    # The integration tests above built the binary; reuse it.
    target_dir=${CARGO_TARGET_DIR:-target}
    case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
    [ -x "$target_dir/debug/telehealth" ] && export TELEHEALTH_BIN="$target_dir/debug/telehealth"
    bash tests/browser/run.sh 2>&1 | tee "$log"
    [ "${PIPESTATUS[0]}" = 0 ] || failed=1
    browser_passed=$(grep -Eo '^\s*[0-9]+ passed' "$log" | tail -1 | grep -Eo '[0-9]+')
    browser_failed=$(grep -Eo '^\s*[0-9]+ failed' "$log" | tail -1 | grep -Eo '[0-9]+')
fi
rm -f "$log"
rm -rf "$run_tmp"

passed=$(( ${rust_passed:-0} + api_passed + fhir_passed + ${browser_passed:-0} ))
nfailed=$(( ${rust_failed:-0} + api_failed + fhir_failed + ${browser_failed:-0} ))
if [ "$failed" != 0 ] && [ "$nfailed" = 0 ]; then
    nfailed=1 # a step failed outside any test (build, type check, lint)
fi
echo "tests: $passed passed, $nfailed failed"
exit "$failed"
