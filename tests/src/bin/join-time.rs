//! Measures join time through a running server: from opening the signaling
//! socket to the first video packet arriving at the other side, over N joins.
//!
//!   join-time --server http://127.0.0.1:8080 --admin-password … [--joins 50]
//!
//! Each round: a health worker requests an urgent consultation, the doctor
//! accepts and joins, then the health worker opens its socket and joins; we
//! time (a) until the doctor receives the worker's first video packet and
//! (b) until the worker receives the doctor's. Prints JSON and a table.

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
    /// Number of joins.
    #[arg(long, default_value_t = 50)]
    joins: usize,
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, token: &str, body: Value) -> Result<Value> {
        telehealth_tests::api::post(&self.http, &self.base, Some(token), path, body).await
    }
    async fn login(&self, user: &str, password: &str) -> Result<String> {
        telehealth_tests::api::login(&self.http, &self.base, user, password).await
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn first_video(s: &WsSession, from: &str, since: Instant, timeout: Duration) -> Result<f64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = s.participant.report().video_from(from) {
            return Ok(v.first_packet_at.saturating_duration_since(since).as_secs_f64() * 1000.0);
        }
        if Instant::now() > deadline {
            bail!("no video from {from} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let api = Api {
        http: reqwest::Client::new(),
        base: args.server.trim_end_matches('/').to_owned(),
    };
    let ws_url = format!("{}/api/ws", api.base.replacen("http", "ws", 1));
    let admin = api.login("admin", &args.admin_password).await?;
    let tag = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let password = format!("bench-{tag}-password");
    let h = api.post("/api/facilities", &admin, json!({"code": format!("BENCH-H-{tag}"), "name": "Benchmark hospital", "kind": "district_hospital", "province": "Bench"})).await?;
    let st = api.post("/api/facilities", &admin, json!({"code": format!("BENCH-S-{tag}"), "name": "Benchmark station", "kind": "commune_station", "referral_hospital_id": h["id"], "province": "Bench"})).await?;
    let (du, wu) = (format!("bench.doc.{tag}"), format!("bench.hw.{tag}"));
    api.post("/api/users", &admin, json!({"username": du, "display_name": "Bench doctor", "password": password, "role": "doctor", "facility_id": h["id"]})).await?;
    api.post("/api/users", &admin, json!({"username": wu, "display_name": "Bench worker", "password": password, "role": "health_worker", "facility_id": st["id"]})).await?;
    let doctor = api.login(&du, &password).await?;
    let worker = api.login(&wu, &password).await?;
    let patient = api
        .post(
            "/api/patients",
            &worker,
            json!({"full_name": "Benchmark", "date_of_birth": "1990-01-01", "sex": "other"}),
        )
        .await?;
    telehealth_tests::api::consent(
        &api.http,
        &api.base,
        &worker,
        patient["id"].as_str().context("id")?,
    )
    .await?;

    let (mut to_doctor, mut to_worker) = (Vec::new(), Vec::new());
    for i in 0..args.joins {
        let c = api
            .post(
                "/api/consultations",
                &worker,
                json!({"patient_id": patient["id"], "kind": "urgent", "reason": "benchmark"}),
            )
            .await?;
        let cid = c["id"].as_str().context("id")?.to_owned();
        api.post(&format!("/api/consultations/{cid}/accept"), &doctor, json!({}))
            .await?;
        let d = WsSession::join(&ws_url, &doctor, &cid, ParticipantConfig::new("doctor", 440.0)).await?;
        let t0 = Instant::now();
        let w = WsSession::join(&ws_url, &worker, &cid, ParticipantConfig::new("worker", 660.0)).await?;
        let a = first_video(&d, &w.participant_id, t0, Duration::from_secs(10)).await?;
        let b = first_video(&w, &d.participant_id, t0, Duration::from_secs(10)).await?;
        to_doctor.push(a);
        to_worker.push(b);
        d.send(json!({"type": "end"}));
        d.wait_for("ended", Duration::from_secs(5)).await?;
        d.participant.close().await;
        w.participant.close().await;
        eprintln!(
            "join {:>3}: {a:7.1} ms to the doctor, {b:7.1} ms to the worker",
            i + 1
        );
    }
    let mut all: Vec<f64> = to_doctor.iter().chain(&to_worker).copied().collect();
    for v in [&mut to_doctor, &mut to_worker, &mut all] {
        v.sort_by(f64::total_cmp);
    }
    let summary = json!({
        "joins": args.joins,
        "worker_to_doctor_ms": {"p50": percentile(&to_doctor, 0.5), "p95": percentile(&to_doctor, 0.95), "max": to_doctor.last()},
        "doctor_to_worker_ms": {"p50": percentile(&to_worker, 0.5), "p95": percentile(&to_worker, 0.95), "max": to_worker.last()},
        "both_ms": {"p50": percentile(&all, 0.5), "p95": percentile(&all, 0.95)},
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    println!(
        "\njoin time (socket open → first video packet at the other side), {} joins",
        args.joins
    );
    println!("  direction            p50 ms   p95 ms");
    println!(
        "  worker → doctor    {:8.1} {:8.1}",
        percentile(&to_doctor, 0.5),
        percentile(&to_doctor, 0.95)
    );
    println!(
        "  doctor → worker    {:8.1} {:8.1}",
        percentile(&to_worker, 0.5),
        percentile(&to_worker, 0.95)
    );
    Ok(())
}
