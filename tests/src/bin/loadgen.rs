//! Load generator: N concurrent consultations of two synthetic participants
//! each, through a running server's signaling and SFU, for a set duration.
//!
//!   loadgen --server http://127.0.0.1:8080 --admin-password … --server-pid PID \
//!           --consultations 10 --seconds 20 [--json out.json]
//!
//! Each participant publishes Opus audio (20 ms packets, 50/s) and synthetic
//! VP8 video (30 fps, ~800 kbps). Reports: consultations held, per-track loss,
//! one-way delay through the server (same host clock; p50/p95/p99), join time
//! (socket open → first video packet at the other side, p50/p95), the
//! server's CPU time per forwarded packet and memory per consultation (from
//! /proc of the server process), and the generator's own CPU use.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use telehealth_tests::{ParticipantConfig, WsSession};

#[derive(Parser)]
struct Args {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The admin's password (to create the accounts it uses).
    #[arg(long, env = "TELEHEALTH_ADMIN_PASSWORD")]
    admin_password: String,
    /// The server's process id, for CPU and memory (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Concurrent consultations.
    #[arg(long, default_value_t = 10)]
    consultations: usize,
    /// Measured seconds, after everybody has joined.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Video bytes per frame (30 fps; 3,300 bytes ≈ 800 kbps).
    #[arg(long, default_value_t = 3300)]
    frame_bytes: usize,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Resident memory of a process in KiB, from /proc/<pid>/status.
fn rss_kib(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn pct(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(((v.len() - 1) as f64) * p).round() as usize])
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    path: &str,
    body: Value,
) -> Result<Value> {
    let mut r = http.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path}: {status} {v}");
    }
    Ok(v)
}

async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> Result<String> {
    let v = post(
        http,
        base,
        None,
        "/api/auth/login",
        json!({"username": user, "password": password}),
    )
    .await?;
    Ok(v["access_token"].as_str().context("token")?.to_owned())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::new();
    let base = args.server.trim_end_matches('/').to_owned();
    let ws_url = format!("{}/api/ws", base.replacen("http", "ws", 1));
    let pid = args.server_pid.map(|p| p.to_string());
    let me = std::process::id().to_string();

    // Accounts: one hospital and station, a doctor and a health worker per consultation.
    let admin = login(&http, &base, "admin", &args.admin_password).await?;
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let password = format!("load-{tag}-password");
    let h = post(&http, &base, Some(&admin), "/api/facilities", json!({"code": format!("LOAD-H-{tag}"), "name": "Load hospital", "kind": "district_hospital", "province": "Load"})).await?;
    let st = post(&http, &base, Some(&admin), "/api/facilities", json!({"code": format!("LOAD-S-{tag}"), "name": "Load station", "kind": "commune_station", "referral_hospital_id": h["id"], "province": "Load"})).await?;
    let (du, wu) = (format!("load.doc.{tag}"), format!("load.hw.{tag}"));
    post(&http, &base, Some(&admin), "/api/users", json!({"username": du, "display_name": "Load doctor", "password": password, "role": "doctor", "facility_id": h["id"]})).await?;
    post(&http, &base, Some(&admin), "/api/users", json!({"username": wu, "display_name": "Load worker", "password": password, "role": "health_worker", "facility_id": st["id"]})).await?;
    let doctor = login(&http, &base, &du, &password).await?;
    let worker = login(&http, &base, &wu, &password).await?;
    let patient = post(
        &http,
        &base,
        Some(&worker),
        "/api/patients",
        json!({"full_name": "Load", "date_of_birth": "1990-01-01", "sex": "other"}),
    )
    .await?;

    let rss_before = pid.as_deref().and_then(rss_kib);
    let config = |name: &str, tone: f64| {
        let mut c = ParticipantConfig::new(name, tone);
        c.video_fps = 30;
        c.frame_bytes = args.frame_bytes;
        c.keyframe_bytes = args.frame_bytes * 3;
        c
    };
    let mut pairs = Vec::new();
    let mut join_ms = Vec::new();
    for i in 0..args.consultations {
        let c = post(
            &http,
            &base,
            Some(&worker),
            "/api/consultations",
            json!({"patient_id": patient["id"], "kind": "urgent", "reason": "load"}),
        )
        .await?;
        let cid = c["id"].as_str().context("id")?.to_owned();
        post(
            &http,
            &base,
            Some(&doctor),
            &format!("/api/consultations/{cid}/accept"),
            json!({}),
        )
        .await?;
        let d = WsSession::join(&ws_url, &doctor, &cid, config(&format!("d{i}"), 440.0)).await?;
        let t0 = Instant::now();
        let w = WsSession::join(&ws_url, &worker, &cid, config(&format!("w{i}"), 660.0)).await?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(v) = d.participant.report().video_from(&w.participant_id) {
                join_ms.push(v.first_packet_at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                break;
            }
            if Instant::now() > deadline {
                bail!("consultation {i}: no video within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pairs.push((d, w));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The measured window.
    let count = |pairs: &[(WsSession, WsSession)]| -> u64 {
        pairs
            .iter()
            .flat_map(|(d, w)| [d.participant.report(), w.participant.report()])
            .flat_map(|r| r.tracks.into_iter().map(|t| t.packets_received))
            .sum()
    };
    let (pkts0, cpu0, me0, t0) = (
        count(&pairs),
        pid.as_deref().and_then(cpu_seconds),
        cpu_seconds(&me),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (pkts1, cpu1, me1, elapsed) = (
        count(&pairs),
        pid.as_deref().and_then(cpu_seconds),
        cpu_seconds(&me),
        t0.elapsed().as_secs_f64(),
    );
    let rss_after = pid.as_deref().and_then(rss_kib);

    let forwarded = pkts1.saturating_sub(pkts0);
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let (mut loss, mut d50, mut d95, mut d99) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut held, mut tones_ok) = (0, 0);
    for (d, w) in &pairs {
        let (rd, rw) = (d.participant.report(), w.participant.report());
        let mut ok = true;
        for (r, from, tone) in [(&rd, &w.participant_id, 660.0), (&rw, &d.participant_id, 440.0)] {
            match (r.audio_from(from), r.video_from(from)) {
                (Some(a), Some(v)) => {
                    if a.dominant_frequency_hz.is_some_and(|f| (f - tone).abs() <= 10.0) {
                        tones_ok += 1;
                    }
                    for t in [a, v] {
                        loss.push(t.loss_ratio() * 100.0);
                        d50.extend(t.delay_ms_median);
                        d95.extend(t.delay_ms_p95);
                        d99.extend(t.delay_ms_p99);
                    }
                }
                _ => ok = false,
            }
        }
        if ok {
            held += 1;
        }
    }
    let worst_loss = loss.iter().copied().fold(0.0, f64::max);
    let report = json!({
        "consultations": args.consultations,
        "consultations_held": held,
        "tones_right": tones_ok,
        "seconds": elapsed,
        "forwarded_packets_per_s": forwarded as f64 / elapsed,
        "loss_pct": {"mean": loss.iter().sum::<f64>() / loss.len().max(1) as f64, "worst_track": worst_loss},
        "added_delay_ms": {"p50": pct(&mut d50, 0.5), "p95_of_tracks_p95": pct(&mut d95, 0.95), "p99_of_tracks_p99": pct(&mut d99, 0.99)},
        "join_ms": {"p50": pct(&mut join_ms.clone(), 0.5), "p95": pct(&mut join_ms, 0.95)},
        "server": {
            "cpu_percent_of_one_core": server_cpu.map(|c| c / elapsed * 100.0),
            "cpu_us_per_forwarded_packet": server_cpu.map(|c| c * 1e6 / forwarded.max(1) as f64),
            "rss_mib_before": rss_before.map(|k| k / 1024.0),
            "rss_mib_after": rss_after.map(|k| k / 1024.0),
            "rss_kib_per_consultation": rss_before.zip(rss_after).map(|(a, b)| (b - a) / args.consultations.max(1) as f64),
        },
        "generator_cpu_percent_of_one_core": me0.zip(me1).map(|(a, b)| (b - a) / elapsed * 100.0),
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(p) = &args.json {
        std::fs::write(p, &text)?;
    }
    let f = |v: &Value| {
        v.as_f64()
            .map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "\n{} consultations, {} held, {} of {} tones right, {:.0} forwarded packets/s",
        args.consultations,
        held,
        tones_ok,
        2 * args.consultations,
        forwarded as f64 / elapsed
    );
    println!(
        "  loss mean / worst track      {} % / {} %",
        f(&report["loss_pct"]["mean"]),
        f(&report["loss_pct"]["worst_track"])
    );
    println!(
        "  added delay p50 / p95 / p99  {} / {} / {} ms",
        f(&report["added_delay_ms"]["p50"]),
        f(&report["added_delay_ms"]["p95_of_tracks_p95"]),
        f(&report["added_delay_ms"]["p99_of_tracks_p99"])
    );
    println!(
        "  join p50 / p95               {} / {} ms",
        f(&report["join_ms"]["p50"]),
        f(&report["join_ms"]["p95"])
    );
    println!(
        "  server CPU                   {} % of a core, {} µs per forwarded packet",
        f(&report["server"]["cpu_percent_of_one_core"]),
        f(&report["server"]["cpu_us_per_forwarded_packet"])
    );
    println!(
        "  server memory per consultation {} KiB",
        f(&report["server"]["rss_kib_per_consultation"])
    );
    println!(
        "  generator CPU                {} % of a core",
        f(&report["generator_cpu_percent_of_one_core"])
    );
    for (d, w) in &pairs {
        d.send(json!({"type": "end"}));
        let _ = w;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(())
}
