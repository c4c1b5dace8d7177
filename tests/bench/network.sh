#!/usr/bin/env bash
# Benchmark: a call on each link profile, measured in Chromium, through our server and through Janus's VideoRoom
# (Debian's janus, installed when missing) behind the same link emulator in the same run. A benchmark, not a test:
# not part of .ci/run (the short versions with pass/fail bounds are tests/browser/lossy-link.spec.js and
# ladder.spec.js).
#
#   sudo tests/bench/network.sh                  # every profile below
#   MEASURE_S=60 sudo tests/bench/network.sh
#
# Builds the release server, link emulator and Janus launcher, then runs tests/browser/network.bench.js with the
# profiles below: the station's Chromium (fake camera and microphone, simulcast) in its own network namespace
# behind the link emulator, the doctor's on the servers' network; one call through each server, and for each
# profile WARMUP_S seconds to settle, then MEASURE_S seconds of what each page received (getStats). Prints one
# Markdown table (for docs/BENCHMARKS.md) and keeps the raw rows in $OUT (JSON).
#
# Not measured yet: the time to settle after a profile starts, and mouth-to-ear delay.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(id -u)" = 0 ] || { echo "needs root: the station's browser runs in a network namespace of its own" >&2; exit 2; }
WARMUP_S=${WARMUP_S:-10}
MEASURE_S=${MEASURE_S:-30}
OUT=${OUT:-$(mktemp "${TMPDIR:-/tmp}/telehealth-network.XXXXXX.json")}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/telehealth-target}"

bash tests/scripts/deps.sh
echo "== building the release server, link emulator and Janus launcher"
cargo build --release --bin telehealth
cargo build --release -p telehealth-tests --bin linkemu --bin janus-browser

# The emulator's named profiles (tests/src/linkemu/profiles.rs), then the issue's goal conditions, each way
# unless said.
profiles=$(node -e '
const w = +process.argv[1], m = +process.argv[2];
const named = ["sach", "cap-quang-chia-se", "4g-tot", "4g-yeu", "4g-gio-cao-diem"].map((p) => ({ name: p, profile: p }));
const goals = [
  { name: "10% loss, 300 ms RTT", up: { loss: 0.1, delay_ms: 150 }, down: { loss: 0.1, delay_ms: 150 } },
  { name: "5% loss in bursts of 4", up: { loss: 0.05, burst_len: 4 }, down: { loss: 0.05, burst_len: 4 } },
  { name: "300 kbps cap on the station downlink", up: {}, down: { rate_kbps: 300 } },
];
console.log(JSON.stringify([...named, ...goals].map((p) => ({ ...p, warmup_s: w, measure_s: m }))));
' "$WARMUP_S" "$MEASURE_S")

log=$(mktemp)
# Janus's peer connections use these ports; run.sh relays each through the emulator.
TELEHEALTH_BIN="$CARGO_TARGET_DIR/release/telehealth" TH_LINK_PROFILES="$profiles" TH_JANUS_RTP_PORTS=${JANUS_RTP_PORTS:-20000-20031} \
  bash tests/browser/run.sh -c playwright.bench.config.js 2>&1 | tee "$log" | grep -E '^link profile: |^janus ready|passed|failed|Error' || true
grep '^network table: ' "$log" | tail -1 | sed 's/^network table: //' >"$OUT"
[ -s "$OUT" ] || { echo "no figures: see $log" >&2; exit 1; }
rm -f "$log"

# A row per profile and receiving side; for each server: audio concealed, audio packets lost after repair, video
# frames per second, freezes, seconds frozen, resolution received, and the second it settled on it. Then the
# delay table and our server's view.
node -e '
const t = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const sides = [["doctor (station uplink)", "doctor_receives"], ["station (downlink)", "station_receives"]];
const cell = (q) => q ? `${q.concealedPct} % · ${q.audioLost} · ${q.fps} · ${q.freezes} · ${q.freezeSec} · ${q.resolution} · ${q.settle_s}` : "—";
console.log("| profile | receiving | ours: concealed · audio lost · fps · freezes · frozen s · resolution · settled at s | Janus: the same |");
console.log("| --- | --- | --- | --- |");
(t.ours ?? []).forEach((r, i) => {
  for (const [who, k] of sides) console.log(`| ${r.profile} | ${who} | ${cell(r[k])} | ${cell(t.janus?.[i]?.[k])} |`);
});
const delay = (q) => q ? `${q.mouth_to_ear_ms ?? "—"} (buffer ${q.audioBufferMs ?? "—"}, RTT ${q.rttMs ?? "—"})` : "—";
console.log("\n| profile | hearing | ours: mouth to ear, ms (jitter buffer, this page RTT) | Janus: the same |");
console.log("| --- | --- | --- | --- |");
(t.ours ?? []).forEach((r, i) => {
  for (const [who, k] of sides) console.log(`| ${r.profile} | ${who} | ${delay(r[k])} | ${delay(t.janus?.[i]?.[k])} |`);
});
console.log("\n| profile | our estimate of the station downlink, kbps (mean, min) | NACKs from the station | layer changes | RTT ms |");
console.log("| --- | --- | --- | --- | --- |");
for (const v of t.ours_server ?? []) {
  console.log(`| ${v.profile} | ${v.estimate_kbps.mean ?? "—"}, ${v.estimate_kbps.min ?? "—"} | ${v.station_nacks ?? "—"} | ${v.layer_changes.join(" → ") || "none"} | ${v.rtt_ms ?? "—"} |`);
}
' "$OUT"
echo "raw rows: $OUT"
