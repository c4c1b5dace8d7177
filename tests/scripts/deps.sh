#!/usr/bin/env bash
# Installs the system packages the build and the tests need, when missing.
# Debian packages only; safe to run again (does nothing when all are there).
set -euo pipefail

need=()
command -v pkg-config >/dev/null || need+=(pkg-config)
pkg-config --exists opus 2>/dev/null || need+=(libopus-dev)
command -v cmake >/dev/null || need+=(cmake)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
# Schemathesis (tests/scripts/schemathesis.sh) is installed into a venv.
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The TURN test runs Debian's coturn on loopback; deploy/check.sh lints scripts.
command -v turnserver >/dev/null || need+=(coturn)
# The clock-jump test (tests/e2e/clock_jumps.rs) runs the server under libfaketime.
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(libfaketime)
command -v shellcheck >/dev/null || need+=(shellcheck)
# The metrics test checks /metrics with promtool and scrapes it with a real
# Prometheus; deploy/check.sh checks the alert rules with promtool.
command -v promtool >/dev/null || need+=(prometheus)
# The FHIR validator (tests/fhir) and the browser app's checks run on Node.js.
command -v npm >/dev/null || need+=(npm)
if [ "${TELEHEALTH_BROWSER_TESTS:-1}" = 1 ] && [ -f "$(dirname "$0")/../browser/package.json" ]; then
    command -v chromium >/dev/null || need+=(chromium)
fi

if [ ${#need[@]} -gt 0 ]; then
    # shellcheck source=tests/scripts/apt.sh
    source "$(dirname "$0")/apt.sh"
    apt_install "${need[@]}"
    # The package enables a system-wide coturn on 3478; the tests start their own.
    # So does Prometheus on 9090 (and its node exporter); the metrics test
    # starts its own on a free port.
    for service in coturn prometheus prometheus-node-exporter; do
        if [[ " ${need[*]} " == *" ${service%%-*} "* ]] && command -v systemctl >/dev/null; then
            sudo=()
            [ "$(id -u)" = 0 ] || sudo=(sudo)
            "${sudo[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    done
fi
# The FHIR validator's npm packages (pinned by tests/fhir/package-lock.json).
if [ "${TELEHEALTH_FHIR_VALIDATION:-1}" = 1 ] && [ ! -d "$(dirname "$0")/../fhir/node_modules/@medplum/core" ]; then
    (cd "$(dirname "$0")/../fhir" && npm ci --no-audit --no-fund)
fi
