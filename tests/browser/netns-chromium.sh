#!/usr/bin/env bash
# Chromium inside the station's network namespace (run.sh creates it and exports TH_NETNS): the station's
# browser reaches the server only through the link emulator. Playwright drives it over a pipe, so control
# does not cross the namespace.
set -euo pipefail
exec ip netns exec "${TH_NETNS:?run through tests/browser/run.sh}" "${CHROMIUM:-/usr/bin/chromium}" "$@"
