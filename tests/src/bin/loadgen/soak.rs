//! Soak: N consultations held at once for a long time (an hour), each call
//! lasting `--call-seconds` and then replaced by a new one, the doctor
//! autosaving the note every few seconds and signing it at the end, and an
//! admin reading the session log list and one session's log all along.
//! Every `--sample-seconds` it records what a slow leak shows: the server's
//! memory, open files and threads, the database's size on disk, its CPU,
//! and the p50/p99 of every kind of request in that period; at the end it
//! compares the start of the run (after the first calls have ended) with
//! its end.
//!
//!   loadgen --server-bin target/release/telehealth --consultations 15 --soak-minutes 60

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use telehealth_tests::api::login;
use telehealth_tests::ParticipantConfig;

use crate::consultation::{Call, Joiner};
use crate::figures::pct;
use crate::server::{cpu_seconds, status_field, Endpoint, Server};

/// How the soak runs.
pub struct Settings {
    pub consultations: usize,
    pub minutes: f64,
    pub call_seconds: u64,
    pub sample_seconds: u64,
    pub autosave_seconds: u64,
    pub admin_read_seconds: u64,
    pub frame_bytes: usize,
    /// Minutes left out of the start window: the server's memory settles
    /// (allocator pools, caches) over the first minutes of a run.
    pub warmup_minutes: f64,
}

/// Access tokens last 15 minutes: every login is renewed this often.
const RENEW_LOGINS: Duration = Duration::from_secs(10 * 60);

/// Sample periods pooled for the start and for the end of the run.
const WINDOW_SAMPLES: usize = 5;

/// What happened in one sample period.
#[derive(Default, Clone)]
struct Tally {
    join_ms: Vec<f64>,
    join_failures: u64,
    note_save_ms: Vec<f64>,
    note_sign_ms: Vec<f64>,
    note_failures: u64,
    admin_list_ms: Vec<f64>,
    admin_session_ms: Vec<f64>,
    admin_failures: u64,
    calls_ended: u64,
    calls_held: u64,
    /// Each ended call's tracks: p99 one-way delay of video frames, ms.
    video_p99_ms: Vec<f64>,
    packets_received: u64,
    packets_lost: u64,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.join_ms.extend(&o.join_ms);
        self.join_failures += o.join_failures;
        self.note_save_ms.extend(&o.note_save_ms);
        self.note_sign_ms.extend(&o.note_sign_ms);
        self.note_failures += o.note_failures;
        self.admin_list_ms.extend(&o.admin_list_ms);
        self.admin_session_ms.extend(&o.admin_session_ms);
        self.admin_failures += o.admin_failures;
        self.calls_ended += o.calls_ended;
        self.calls_held += o.calls_held;
        self.video_p99_ms.extend(&o.video_p99_ms);
        self.packets_received += o.packets_received;
        self.packets_lost += o.packets_lost;
    }

    fn json(&self) -> Value {
        let p = |v: &[f64]| json!({"n": v.len(), "p50": pct(v, 0.5), "p99": pct(v, 0.99)});
        let expected = self.packets_received + self.packets_lost;
        json!({
            "join_ms": p(&self.join_ms),
            "join_failures": self.join_failures,
            "note_save_ms": p(&self.note_save_ms),
            "note_sign_ms": p(&self.note_sign_ms),
            "note_failures": self.note_failures,
            "admin_list_ms": p(&self.admin_list_ms),
            "admin_session_ms": p(&self.admin_session_ms),
            "admin_failures": self.admin_failures,
            "calls_ended": self.calls_ended,
            "calls_held": self.calls_held,
            "video_delay_p99_ms": pct(&self.video_p99_ms, 0.99),
            "loss_pct": if expected > 0 { Some(self.packets_lost as f64 * 100.0 / expected as f64) } else { None },
        })
    }
}

type Shared = Arc<Mutex<Tally>>;

fn record(t: &Shared, f: impl FnOnce(&mut Tally)) {
    if let Ok(mut t) = t.lock() {
        f(&mut t);
    }
}

/// Sends a request with a bearer token; the JSON answer and how long it took (ms).
async fn timed(r: reqwest::RequestBuilder, token: &str) -> Result<(Value, f64)> {
    let t0 = Instant::now();
    let resp = r.bearer_auth(token).send().await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() {
        bail!("{status} {v}");
    }
    Ok((v, ms))
}

/// One place for a consultation, refilled with a new one as each ends.
async fn slot(
    i: usize,
    s: Arc<Settings>,
    joiner: Arc<Joiner>,
    tally: Shared,
    end: Instant,
    config: impl Fn(&str, f64) -> ParticipantConfig,
) {
    // Spread the calls' ends evenly over a call's length.
    let offset = Duration::from_secs(s.call_seconds) * i as u32 / s.consultations.max(1) as u32;
    tokio::time::sleep(offset).await;
    // Slot i's consultations use the i-th doctor and health worker.
    let mut k = i;
    while Instant::now() + Duration::from_secs(s.call_seconds) < end {
        k += s.consultations;
        let (call, ms) = match joiner.join(k, &config).await {
            Ok(j) => j,
            Err(e) => {
                eprintln!("soak: slot {i}: join failed: {e:#}");
                record(&tally, |t| t.join_failures += 1);
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        record(&tally, |t| t.join_ms.push(ms));
        let call_end = Instant::now() + Duration::from_secs(s.call_seconds);
        if let Err(e) = note(&s, &joiner, i, &call, &tally, call_end).await {
            eprintln!("soak: slot {i}: note: {e:#}");
            record(&tally, |t| t.note_failures += 1);
        }
        tokio::time::sleep(call_end.saturating_duration_since(Instant::now())).await;
        let legs = call.legs();
        let mut held = true;
        let mut tally_call = Tally {
            calls_ended: 1,
            ..Tally::default()
        };
        for leg in &legs {
            for (track, video) in [(&leg.audio, false), (&leg.video, true)] {
                match track {
                    Some(t) if t.packets_received > 0 => {
                        tally_call.packets_received += t.packets_received;
                        tally_call.packets_lost += t.packets_lost;
                        if video {
                            tally_call.video_p99_ms.extend(t.delay_ms_p99);
                        }
                    }
                    _ => held = false,
                }
            }
        }
        tally_call.calls_held = u64::from(held);
        record(&tally, |t| t.merge(&tally_call));
        call.close().await;
    }
}

/// The doctor's note for the call: created, autosaved until the call's end,
/// then signed.
async fn note(
    s: &Settings,
    joiner: &Joiner,
    i: usize,
    call: &Call,
    tally: &Shared,
    call_end: Instant,
) -> Result<()> {
    let cid = call.consultation_id().context("not our server")?;
    let (http, base, token) = joiner.doctor(i).context("not our server")?;
    let (n, ms) = timed(
        http.post(format!("{base}/api/consultations/{cid}/notes"))
            .json(&json!({"subjective": "Sốt 2 ngày, ho."})),
        &token,
    )
    .await?;
    record(tally, |t| t.note_save_ms.push(ms));
    let id = n["id"].as_str().context("note id")?.to_owned();
    let mut version = n["version"].as_i64().context("note version")?;
    let mut text = String::from("Sốt 2 ngày, ho.");
    let last_save = call_end - Duration::from_secs(s.autosave_seconds.min(s.call_seconds / 2));
    while Instant::now() + Duration::from_secs(s.autosave_seconds) < last_save {
        tokio::time::sleep(Duration::from_secs(s.autosave_seconds)).await;
        text.push_str(" Thêm một dòng.");
        let token = joiner.doctor(i).context("token")?.2;
        match timed(
            http.put(format!("{base}/api/notes/{id}")).json(&json!({
                "version": version,
                "subjective": text,
                "assessment": "Viêm phổi nhẹ",
                "plan": "Kháng sinh, tái khám sau 3 ngày",
                "icd10_codes": ["J18.9"],
                "disposition": "follow_up",
            })),
            &token,
        )
        .await
        {
            Ok((saved, ms)) => {
                version = saved["version"].as_i64().context("note version")?;
                record(tally, |t| t.note_save_ms.push(ms));
            }
            Err(e) => {
                eprintln!("soak: note save: {e:#}");
                record(tally, |t| t.note_failures += 1);
            }
        }
    }
    let token = joiner.doctor(i).context("token")?.2;
    let (_, ms) = timed(
        http.post(format!("{base}/api/notes/{id}/sign"))
            .json(&json!({"version": version})),
        &token,
    )
    .await
    .context("sign")?;
    record(tally, |t| t.note_sign_ms.push(ms));
    Ok(())
}

/// An admin reading the session logs: the list, then the newest session's log.
async fn admin(
    s: Arc<Settings>,
    http: reqwest::Client,
    base: String,
    password: String,
    tally: Shared,
    end: Instant,
) {
    let mut token = String::new();
    let mut renewed = Instant::now() - RENEW_LOGINS;
    while Instant::now() < end {
        if renewed.elapsed() >= RENEW_LOGINS {
            match login(&http, &base, "admin", &password).await {
                Ok(t) => {
                    token = t;
                    renewed = Instant::now();
                }
                Err(e) => eprintln!("soak: admin login: {e:#}"),
            }
        }
        tokio::time::sleep(Duration::from_secs(s.admin_read_seconds)).await;
        let list = timed(http.get(format!("{base}/api/sessions?limit=50")), &token).await;
        let first = match list {
            Ok((v, ms)) => {
                record(&tally, |t| t.admin_list_ms.push(ms));
                v.as_array()
                    .and_then(|a| a.first())
                    .and_then(|x| x["consultation_id"].as_str().or(x["id"].as_str()))
                    .map(str::to_owned)
            }
            Err(e) => {
                eprintln!("soak: admin list: {e:#}");
                record(&tally, |t| t.admin_failures += 1);
                None
            }
        };
        if let Some(id) = first {
            match timed(http.get(format!("{base}/api/sessions/{id}")), &token).await {
                Ok((_, ms)) => record(&tally, |t| t.admin_session_ms.push(ms)),
                Err(e) => {
                    eprintln!("soak: admin session: {e:#}");
                    record(&tally, |t| t.admin_failures += 1);
                }
            }
        }
    }
}

/// Bytes under `dir`, and those of SQLite's write-ahead logs among them.
fn disk_bytes(dir: &Path) -> (u64, u64) {
    let (mut total, mut wal) = (0, 0);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in rd.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (t, w) = disk_bytes(&e.path());
            total += t;
            wal += w;
        } else {
            total += m.len();
            if e.file_name().to_string_lossy().ends_with("-wal") {
                wal += m.len();
            }
        }
    }
    (total, wal)
}

fn open_files(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// Runs the soak; the JSON report.
pub async fn run(s: Settings, srv: &Server, joiner: Joiner) -> Result<Value> {
    let Endpoint::Ours { base, admin_password } = &srv.endpoint else {
        bail!("the soak runs against our server only");
    };
    let s = Arc::new(s);
    let joiner = Arc::new(joiner);
    let tally: Shared = Arc::default();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(s.minutes * 60.0);
    let frame_bytes = s.frame_bytes;
    let config = move |name: &str, tone: f64| {
        let mut c = ParticipantConfig::new(name, tone);
        c.video_fps = 30;
        c.frame_bytes = frame_bytes;
        c.keyframe_bytes = frame_bytes * 3;
        c
    };
    let mut tasks = Vec::new();
    for i in 0..s.consultations {
        tasks.push(tokio::spawn(slot(
            i,
            s.clone(),
            joiner.clone(),
            tally.clone(),
            end,
            config,
        )));
    }
    tasks.push(tokio::spawn(admin(
        s.clone(),
        reqwest::Client::new(),
        base.clone(),
        admin_password.clone(),
        tally.clone(),
        end,
    )));
    let renew = {
        let joiner = joiner.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_LOGINS).await;
                if let Err(e) = joiner.renew_logins().await {
                    eprintln!("soak: renewing logins: {e:#}");
                }
            }
        })
    };

    let pid = srv.pid;
    let mut samples: Vec<(Value, Tally)> = Vec::new();
    let mut cpu_prev = (pid.and_then(cpu_seconds), Instant::now());
    eprintln!(
        "soak: {} consultations, calls of {} s, {} min; a sample every {} s",
        s.consultations, s.call_seconds, s.minutes, s.sample_seconds
    );
    eprintln!("soak:   min    RSS MiB  fds  threads  disk MiB (wal)  cpu %  calls held/ended  save p99  admin p99  join p99  video p99");
    let mut next = t0;
    let mut ended = false;
    while !ended {
        next += Duration::from_secs(s.sample_seconds);
        if next >= end {
            next = end;
            ended = true;
        }
        tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
        let period = std::mem::take(&mut *tally.lock().expect("tally"));
        let cpu_now = (pid.and_then(cpu_seconds), Instant::now());
        let cpu_pct = cpu_prev
            .0
            .zip(cpu_now.0)
            .map(|(a, b)| (b - a) * 100.0 / cpu_now.1.duration_since(cpu_prev.1).as_secs_f64());
        cpu_prev = cpu_now;
        let (disk, wal) = srv.data_dir.as_deref().map(disk_bytes).unwrap_or((0, 0));
        let mut admin_ms = period.admin_list_ms.clone();
        admin_ms.extend(&period.admin_session_ms);
        let sample = json!({
            "minute": t0.elapsed().as_secs_f64() / 60.0,
            "rss_mib": pid.and_then(|p| status_field(p, "VmRSS")).map(|k| k / 1024.0),
            "open_files": pid.and_then(open_files),
            "threads": pid.and_then(|p| status_field(p, "Threads")),
            "disk_mib": disk as f64 / 1048576.0,
            "wal_mib": wal as f64 / 1048576.0,
            "server_cpu_pct": cpu_pct,
            "period": period.json(),
        });
        let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.1}"));
        eprintln!(
            "soak: {:>5.1}  {:>9}  {:>3}  {:>7}  {:>8.1} ({:.1})  {:>5}  {:>7}/{:<7}  {:>8}  {:>9}  {:>8}  {:>9}",
            sample["minute"].as_f64().unwrap_or(0.0),
            f(sample["rss_mib"].as_f64()),
            sample["open_files"],
            sample["threads"],
            disk as f64 / 1048576.0,
            wal as f64 / 1048576.0,
            f(cpu_pct),
            period.calls_held,
            period.calls_ended,
            f(pct(&period.note_save_ms, 0.99)),
            f(pct(&admin_ms, 0.99)),
            f(pct(&period.join_ms, 0.99)),
            f(pct(&period.video_p99_ms, 0.99)),
        );
        samples.push((sample, period));
    }
    renew.abort();
    for t in tasks {
        let _ = t.await;
    }

    // The start: the first periods once the first calls have ended (the
    // server has seen every kind of request) and the warm-up is over; the
    // end: the last periods.
    let warm_s = ((s.call_seconds + s.sample_seconds) as f64)
        .max(s.warmup_minutes * 60.0)
        .min(s.minutes * 60.0 / 2.0);
    let warm: Vec<&(Value, Tally)> = samples
        .iter()
        .filter(|(v, _)| v["minute"].as_f64().unwrap_or(0.0) * 60.0 >= warm_s)
        .collect();
    let window = |w: &[&(Value, Tally)]| {
        let mut t = Tally::default();
        for (_, p) in w {
            t.merge(p);
        }
        let max = |k: &str| {
            w.iter()
                .filter_map(|(v, _)| v[k].as_f64())
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        let mut admin_ms = t.admin_list_ms.clone();
        admin_ms.extend(&t.admin_session_ms);
        json!({
            "minutes": [w.first().map(|(v, _)| v["minute"].clone()), w.last().map(|(v, _)| v["minute"].clone())],
            "rss_mib_max": max("rss_mib"),
            "open_files_max": max("open_files"),
            "threads_max": max("threads"),
            "disk_mib": w.last().map(|(v, _)| v["disk_mib"].clone()),
            "wal_mib_max": max("wal_mib"),
            "admin_read_ms_p99": pct(&admin_ms, 0.99),
            "requests": t.json(),
        })
    };
    let n = warm.len().min(WINDOW_SAMPLES);
    let start = window(&warm[..n]);
    let last = window(&warm[warm.len() - n..]);
    let total = {
        let mut t = Tally::default();
        for (_, p) in &samples {
            t.merge(p);
        }
        t
    };
    let growth = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if a > 0.0 => Some((b - a) * 100.0 / a),
        _ => None,
    };
    let growth_json = json!({
        "rss_pct": growth(&start["rss_mib_max"], &last["rss_mib_max"]),
        "open_files_pct": growth(&start["open_files_max"], &last["open_files_max"]),
        "threads_pct": growth(&start["threads_max"], &last["threads_max"]),
        "note_save_p99_pct": growth(&start["requests"]["note_save_ms"]["p99"], &last["requests"]["note_save_ms"]["p99"]),
        "admin_read_p99_pct": growth(&start["admin_read_ms_p99"], &last["admin_read_ms_p99"]),
        "join_p99_pct": growth(&start["requests"]["join_ms"]["p99"], &last["requests"]["join_ms"]["p99"]),
        "video_delay_p99_pct": growth(&start["requests"]["video_delay_p99_ms"], &last["requests"]["video_delay_p99_ms"]),
    });
    let disk_start = start["disk_mib"].as_f64().unwrap_or(0.0);
    let disk_end = last["disk_mib"].as_f64().unwrap_or(0.0);
    let calls_between: u64 = warm
        .iter()
        .skip(n)
        .map(|(_, p)| p.calls_ended)
        .sum::<u64>()
        .max(1);
    Ok(json!({
        "soak": {
            "consultations": s.consultations,
            "minutes": s.minutes,
            "call_seconds": s.call_seconds,
            "autosave_seconds": s.autosave_seconds,
            "admin_read_seconds": s.admin_read_seconds,
            "sample_seconds": s.sample_seconds,
            "warmup_minutes": s.warmup_minutes,
        },
        "total": total.json(),
        "start": start,
        "end": last,
        "growth": growth_json,
        "disk_kib_per_call": (disk_end - disk_start) * 1024.0 / calls_between as f64,
        "samples": samples.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(),
    }))
}

/// The readable summary.
pub fn table(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    let (a, b, g) = (&r["start"], &r["end"], &r["growth"]);
    let rows = [
        (
            "RSS, MiB (max)",
            f(&a["rss_mib_max"]),
            f(&b["rss_mib_max"]),
            f(&g["rss_pct"]),
        ),
        (
            "open files (max)",
            f(&a["open_files_max"]),
            f(&b["open_files_max"]),
            f(&g["open_files_pct"]),
        ),
        (
            "threads (max)",
            f(&a["threads_max"]),
            f(&b["threads_max"]),
            f(&g["threads_pct"]),
        ),
        ("disk, MiB", f(&a["disk_mib"]), f(&b["disk_mib"]), "-".into()),
        (
            "WAL, MiB (max)",
            f(&a["wal_mib_max"]),
            f(&b["wal_mib_max"]),
            "-".into(),
        ),
        (
            "note save p99, ms",
            f(&a["requests"]["note_save_ms"]["p99"]),
            f(&b["requests"]["note_save_ms"]["p99"]),
            f(&g["note_save_p99_pct"]),
        ),
        (
            "admin read p99, ms",
            f(&a["admin_read_ms_p99"]),
            f(&b["admin_read_ms_p99"]),
            f(&g["admin_read_p99_pct"]),
        ),
        (
            "join p99, ms",
            f(&a["requests"]["join_ms"]["p99"]),
            f(&b["requests"]["join_ms"]["p99"]),
            f(&g["join_p99_pct"]),
        ),
        (
            "video delay p99, ms",
            f(&a["requests"]["video_delay_p99_ms"]),
            f(&b["requests"]["video_delay_p99_ms"]),
            f(&g["video_delay_p99_pct"]),
        ),
    ];
    let t = &r["total"];
    let mut s = format!(
        "soak: {} consultations at once, {} min; {} calls ended, {} held both ways; {} join, {} note and {} admin failures; {:.1} KiB of disk per call\n",
        r["soak"]["consultations"],
        r["soak"]["minutes"],
        t["calls_ended"],
        t["calls_held"],
        t["join_failures"],
        t["note_failures"],
        t["admin_failures"],
        r["disk_kib_per_call"].as_f64().unwrap_or(0.0),
    );
    s.push_str(&format!(
        "  {:<22} {:>10} {:>10} {:>9}\n",
        "", "start", "end", "growth %"
    ));
    for (k, x, y, z) in rows {
        s.push_str(&format!("  {k:<22} {x:>10} {y:>10} {z:>9}\n"));
    }
    s
}
