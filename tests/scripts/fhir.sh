#!/usr/bin/env bash
# Validates the FHIR R4 export with an independent validator: the e2e test
# tests/e2e/fhir.rs creates real data through the REST API of the real
# binary, fetches every FHIR resource type, search, page, $everything, the
# CapabilityStatement and the OperationOutcomes, and writes each answer to a
# directory; then Medplum's R4 validator (tests/fhir/validate.mjs, npm
# packages pinned in tests/fhir/package-lock.json) checks every file. Fails
# when the test fails or any resource is invalid.
#
#   tests/scripts/fhir.sh [extra cargo nextest arguments]
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

if [ ! -d tests/fhir/node_modules/@medplum/core ]; then
    (cd tests/fhir && npm ci --no-audit --no-fund) || exit 1
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/telehealth-fhir.XXXXXX") || exit 1
trap 'rm -rf "$out"' EXIT
if cargo nextest --version >/dev/null 2>&1; then
    TELEHEALTH_FHIR_OUT="$out" cargo nextest run --test fhir "$@" || exit 1
else
    TELEHEALTH_FHIR_OUT="$out" cargo test --test fhir "$@" || exit 1
fi
node tests/fhir/validate.mjs "$out"
