//! The measured window and the figures drawn from it: loss, delay, server
//! CPU per forwarded packet, memory, the generator's own cost.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use telehealth_tests::TrackReport;

use crate::consultation::{Call, Leg};
use crate::server::cpu_seconds;

/// The capacity criteria of the benchmark: under 1 % loss and a p99 added
/// delay under 50 ms, with every consultation held.
pub const MAX_LOSS_PCT: f64 = 1.0;
pub const MAX_P99_MS: f64 = 50.0;

/// Every call's legs at one moment. Taking one costs a few ms per audio
/// track (the report analyses the decoded tone), so its moment is the
/// middle of the time it took.
pub struct Snapshot {
    at: Instant,
    calls: Vec<[Leg; 2]>,
}

fn snapshot(calls: &[Call]) -> Snapshot {
    let start = Instant::now();
    let legs = calls.iter().map(Call::legs).collect();
    Snapshot {
        at: start + start.elapsed() / 2,
        calls: legs,
    }
}

/// CPU seconds of the server and of the generator over the window.
pub struct Window {
    before: Snapshot,
    after: Snapshot,
    seconds: f64,
    server_cpu: Option<f64>,
    generator_cpu: Option<f64>,
}

/// Measures `seconds` of the running calls. Delay samples are reset at the
/// start, so delays cover the window only; loss and packet counts are the
/// difference between the two snapshots.
pub async fn measure(calls: &[Call], server_pid: Option<u32>, seconds: u64) -> Window {
    let me = std::process::id();
    let before = snapshot(calls);
    for c in calls {
        c.reset_delays();
    }
    let (cpu0, me0, t0) = (server_pid.and_then(cpu_seconds), cpu_seconds(me), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, me1, elapsed) = (
        server_pid.and_then(cpu_seconds),
        cpu_seconds(me),
        t0.elapsed().as_secs_f64(),
    );
    let after = snapshot(calls);
    Window {
        before,
        after,
        seconds: elapsed,
        server_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
        generator_cpu: me0.zip(me1).map(|(a, b)| b - a),
    }
}

/// Nearest-rank percentile of unsorted values.
pub fn pct(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    Some(s[(((s.len() - 1) as f64) * p).round() as usize])
}

/// Per-track p50s, p95s and p99s, pooled as: the median of the medians,
/// the 95th percentile of the p95s, the 99th percentile of the p99s (with
/// few tracks, about the worst track's).
#[derive(Default)]
struct Delays {
    p50: Vec<f64>,
    p95: Vec<f64>,
    p99: Vec<f64>,
}

impl Delays {
    fn add(&mut self, t: &TrackReport) {
        self.p50.extend(t.delay_ms_median);
        self.p95.extend(t.delay_ms_p95);
        self.p99.extend(t.delay_ms_p99);
    }

    fn json(&self) -> Value {
        json!({"p50": pct(&self.p50, 0.5), "p95": pct(&self.p95, 0.95), "p99": pct(&self.p99, 0.99)})
    }
}

/// A track in the window: received and lost packets since `before`.
struct TrackWindow {
    received: u64,
    lost: u64,
}

fn window(before: Option<&TrackReport>, after: &TrackReport) -> TrackWindow {
    let (r0, l0) = before.map_or((0, 0), |b| (b.packets_received, b.packets_lost));
    TrackWindow {
        received: after.packets_received.saturating_sub(r0),
        lost: after.packets_lost.saturating_sub(l0),
    }
}

fn loss_pct(received: u64, lost: u64) -> f64 {
    if received + lost == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / (received + lost) as f64
    }
}

/// Everything the run found, as JSON.
pub struct Inputs<'a> {
    pub target: &'a str,
    pub server_version: &'a str,
    pub consultations: usize,
    pub joined: usize,
    pub join_failures: Vec<String>,
    pub join_ms: Vec<f64>,
    pub rss_kib_before: Option<f64>,
    pub rss_kib_after: Option<f64>,
    pub server_threads: Option<f64>,
    pub peer_connections_per_consultation: usize,
    pub warmup_s: u64,
    pub machine: Value,
    pub settings: Value,
}

pub fn report(w: &Window, i: Inputs<'_>) -> Value {
    let janus = i.target == "janus";
    let (mut audio_delay, mut video_delay) = (Delays::default(), Delays::default());
    let (mut received, mut lost, mut worst_loss) = (0u64, 0u64, 0.0f64);
    let (mut frames_complete, mut frames_expected) = (0u64, 0u64);
    let (mut held, mut tones_right) = (0usize, 0usize);
    let mut tracks = Vec::new();
    for (n, (legs1, legs0)) in w.after.calls.iter().zip(&w.before.calls).enumerate() {
        let mut ok = true;
        for (l1, l0) in legs1.iter().zip(legs0) {
            let pairs = [
                ("audio", l1.audio.as_ref(), l0.audio.as_ref()),
                ("video", l1.video.as_ref(), l0.video.as_ref()),
            ];
            for (kind, after, before) in pairs {
                let Some(after) = after else {
                    ok = false;
                    continue;
                };
                let tw = window(before, after);
                if tw.received == 0 {
                    ok = false;
                }
                received += tw.received;
                lost += tw.lost;
                let loss = loss_pct(tw.received, tw.lost);
                worst_loss = worst_loss.max(loss);
                let mut t = json!({
                    "consultation": n,
                    "to": l1.to,
                    "kind": kind,
                    "packets": tw.received,
                    "lost": tw.lost,
                    "loss_pct": loss,
                    "delay_ms": {"p50": after.delay_ms_median, "p95": after.delay_ms_p95, "p99": after.delay_ms_p99},
                });
                if kind == "audio" && janus {
                    // Derived from the RTP timestamp, which Janus rewrites.
                    t["delay_ms"] = Value::Null;
                }
                if kind == "audio" {
                    audio_delay.add(after);
                    let right = after
                        .dominant_frequency_hz
                        .is_some_and(|f| (f - l1.tone_hz).abs() <= 10.0);
                    tones_right += usize::from(right);
                    t["tone_hz"] = json!(after.dominant_frequency_hz);
                } else {
                    video_delay.add(after);
                    let (c0, e0) = before.map_or((0, 0), |b| (b.frames_complete, b.frames_expected));
                    let (c, e) = (
                        after.frames_complete.saturating_sub(c0),
                        after.frames_expected.saturating_sub(e0),
                    );
                    frames_complete += c;
                    frames_expected += e;
                    t["frames_complete"] = json!(c);
                    t["frames_expected"] = json!(e);
                }
                tracks.push(t);
            }
        }
        held += usize::from(ok);
    }
    // The packet counts span from the middle of one snapshot to the middle
    // of the other; scale them to the CPU window between the snapshots.
    let packet_span = w.after.at.saturating_duration_since(w.before.at).as_secs_f64();
    let rate = received as f64 / packet_span.max(1e-9);
    let forwarded_in_window = rate * w.seconds;
    let loss_total = loss_pct(received, lost);
    let p99 = pct(&video_delay.p99, 0.99);
    let within = held == i.consultations && loss_total < MAX_LOSS_PCT && p99.is_some_and(|p| p < MAX_P99_MS);
    let mut join_sorted = i.join_ms.clone();
    join_sorted.sort_by(f64::total_cmp);
    let per_consultation = |kib: f64| kib / i.joined.max(1) as f64;
    json!({
        "target": i.target,
        "server_version": i.server_version,
        "consultations": i.consultations,
        "consultations_joined": i.joined,
        "consultations_held": held,
        "join_failures": i.join_failures,
        "tones_right": tones_right,
        "warmup_s": i.warmup_s,
        "seconds": w.seconds,
        "forwarded_packets_per_s": rate,
        "loss_pct": {"total": loss_total, "worst_track": worst_loss},
        "video_frames_complete_pct": if frames_expected > 0 { Some(frames_complete as f64 * 100.0 / frames_expected as f64) } else { None },
        "added_delay_ms": {
            "video": video_delay.json(),
            "audio": if janus { Value::Null } else { audio_delay.json() },
        },
        "join_ms": {"p50": pct(&join_sorted, 0.5), "p95": pct(&join_sorted, 0.95), "max": join_sorted.last()},
        "server": {
            "cpu_percent_of_one_core": w.server_cpu.map(|c| c / w.seconds * 100.0),
            "cpu_us_per_forwarded_packet": w.server_cpu.map(|c| c * 1e6 / forwarded_in_window.max(1.0)),
            "rss_mib_before": i.rss_kib_before.map(|k| k / 1024.0),
            "rss_mib_after": i.rss_kib_after.map(|k| k / 1024.0),
            "rss_kib_per_consultation": i.rss_kib_before.zip(i.rss_kib_after).map(|(a, b)| per_consultation(b - a)),
            "threads": i.server_threads,
        },
        "generator": {
            "cpu_percent_of_one_core": w.generator_cpu.map(|c| c / w.seconds * 100.0),
            "cpu_us_per_received_packet": w.generator_cpu.map(|c| c * 1e6 / forwarded_in_window.max(1.0)),
            "peer_connections": i.peer_connections_per_consultation * i.joined,
        },
        "capacity_criteria": {
            "max_loss_pct": MAX_LOSS_PCT,
            "max_p99_ms": MAX_P99_MS,
            "within": within,
        },
        "machine": i.machine,
        "settings": i.settings,
        "notes": if janus {
            vec!["Janus rewrites each subscriber's RTP timestamps from zero, so audio delay (derived from the timestamp) is not measured; added delay is the video frames' (send time carried in the payload) for both servers.",
                 "Janus uses separate publisher and subscriber peer connections: 4 per consultation, against 2 on our server."]
        } else {
            vec!["Added delay for the comparison is the video frames' (send time carried in the payload); audio delay is derived from the RTP timestamp, which our server forwards unchanged."]
        },
        "tracks": tracks,
    })
}

fn f1(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.1}"))
        .unwrap_or_else(|| "-".into())
}

fn f0(v: &Value) -> String {
    v.as_f64()
        .map(|x| format!("{x:.0}"))
        .unwrap_or_else(|| "-".into())
}

/// The readable table.
pub fn table(r: &Value) -> String {
    let d = &r["added_delay_ms"];
    let mut s = String::new();
    s.push_str(&format!(
        "{} {}: {} consultations, {} joined, {} held, {} of {} tones right, {} forwarded packets/s\n",
        r["target"].as_str().unwrap_or("?"),
        r["server_version"].as_str().unwrap_or("?"),
        r["consultations"],
        r["consultations_joined"],
        r["consultations_held"],
        r["tones_right"],
        r["consultations_joined"].as_u64().unwrap_or(0) * 2,
        f0(&r["forwarded_packets_per_s"]),
    ));
    let rows = [
        (
            "loss total / worst track",
            format!(
                "{} % / {} %",
                f1(&r["loss_pct"]["total"]),
                f1(&r["loss_pct"]["worst_track"])
            ),
        ),
        (
            "video frames complete",
            format!("{} %", f1(&r["video_frames_complete_pct"])),
        ),
        (
            "added delay, video p50/p95/p99",
            format!(
                "{} / {} / {} ms",
                f1(&d["video"]["p50"]),
                f1(&d["video"]["p95"]),
                f1(&d["video"]["p99"])
            ),
        ),
        (
            "added delay, audio p50/p95/p99",
            format!(
                "{} / {} / {} ms",
                f1(&d["audio"]["p50"]),
                f1(&d["audio"]["p95"]),
                f1(&d["audio"]["p99"])
            ),
        ),
        (
            "join p50 / p95",
            format!("{} / {} ms", f0(&r["join_ms"]["p50"]), f0(&r["join_ms"]["p95"])),
        ),
        (
            "server CPU",
            format!(
                "{} % of a core, {} µs per forwarded packet",
                f1(&r["server"]["cpu_percent_of_one_core"]),
                f1(&r["server"]["cpu_us_per_forwarded_packet"])
            ),
        ),
        (
            "server memory per consultation",
            format!("{} KiB", f0(&r["server"]["rss_kib_per_consultation"])),
        ),
        (
            "generator CPU",
            format!(
                "{} % of a core, {} µs per received packet",
                f1(&r["generator"]["cpu_percent_of_one_core"]),
                f1(&r["generator"]["cpu_us_per_received_packet"])
            ),
        ),
        (
            "within capacity criteria",
            format!(
                "{} (loss < {MAX_LOSS_PCT} %, p99 < {MAX_P99_MS} ms, all held)",
                r["capacity_criteria"]["within"]
            ),
        ),
    ];
    for (k, v) in rows {
        s.push_str(&format!("  {k:<32} {v}\n"));
    }
    s
}
