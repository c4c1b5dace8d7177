//! Load generator: N concurrent consultations of two synthetic participants
//! each, through a real server's signaling and media plane, for a set
//! duration; the same load and the same figures against our server or
//! against Janus's VideoRoom, for a side-by-side comparison.
//!
//!   loadgen --server-bin target/release/telehealth --consultations 10 --seconds 20 [--json out.json]
//!   loadgen --target janus --consultations 10 --seconds 20 [--json out.json]
//!   loadgen --server http://127.0.0.1:8080 --admin-password … --server-pid PID …
//!   loadgen --server-bin target/release/telehealth --consultations 15 --soak-minutes 60
//!
//! With `--server-bin` it starts our binary itself (fresh SQLite database,
//! free loopback ports); with `--target janus` it starts Janus from a
//! generated loopback-only configuration (installing Debian's package when
//! missing). Each participant publishes Opus audio (20 ms packets, 50/s)
//! and synthetic VP8 video (30 fps, ~800 kbps). Consultations join one after
//! another; after a warm-up the window is measured. Reports: consultations
//! held; per-track loss; one-way delay through the server (same host clock;
//! p50/p95/p99); join time (the second participant starting to join → the
//! first's first video packet from it, p50/p95); the server's CPU time per
//! forwarded packet and memory per consultation (from /proc of its
//! process); and the generator's own CPU use. JSON (`--json`) and a table.

mod consultation;
mod figures;
mod server;
mod soak;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use serde_json::json;
use telehealth_tests::ParticipantConfig;

use crate::consultation::Joiner;
use crate::server::status_field;

/// Which server carries the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Our server (`telehealth`): signaling WebSocket and SFU.
    Ours,
    /// Janus's VideoRoom plugin, through Janus's HTTP API.
    Janus,
}

#[derive(Parser)]
pub struct Args {
    /// The server to load.
    #[arg(long, value_enum, default_value_t = Target::Ours)]
    target: Target,
    /// Ours: start this `telehealth` binary (fresh database, free ports)
    /// instead of using a running server.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Ours: base URL of a running server (without --server-bin).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Ours: the running server's admin password (without --server-bin).
    #[arg(long, env = "TELEHEALTH_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Ours: the running server's process id, for CPU and memory (without
    /// --server-bin).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Janus: the executable (installed from Debian's package when missing).
    #[arg(long, default_value = "janus")]
    janus_bin: PathBuf,
    /// Janus: `event_loops` (0, Janus's default, gives each handle a thread).
    #[arg(long, default_value_t = 0)]
    janus_event_loops: u32,
    /// Janus: `debug_level` (4 is Janus's default; ours logs at info).
    #[arg(long, default_value_t = 4)]
    janus_debug_level: u8,
    /// Keep the started server's data, configuration and log in this folder
    /// (default: a temporary folder, removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Run the started server (ours or Janus) on these CPUs only, a
    /// `taskset -c` list such as `0`; pin the generator itself with
    /// `taskset` around it (tests/bench/run.sh does both).
    #[arg(long)]
    pub server_cpus: Option<String>,
    /// Media engines of our started server (`--media-engines`); default:
    /// its own (one per CPU it may use, so one when pinned to one CPU).
    #[arg(long)]
    pub server_engines: Option<u16>,
    /// Concurrent consultations.
    #[arg(long, default_value_t = 10)]
    consultations: usize,
    /// Seconds after everybody has joined before the measured window.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Measured seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Video bytes per frame (30 fps; 3,300 bytes ≈ 800 kbps).
    #[arg(long, default_value_t = 3300)]
    frame_bytes: usize,
    /// Soak instead (ours only): hold `--consultations` calls for this many
    /// minutes, each replaced by a new one after `--call-seconds`, the
    /// doctor autosaving and signing a note, an admin reading session logs;
    /// report memory, open files, disk and p99s at the start and the end.
    #[arg(long)]
    soak_minutes: Option<f64>,
    /// Soak: how long each call lasts, seconds.
    #[arg(long, default_value_t = 120)]
    call_seconds: u64,
    /// Soak: seconds between samples.
    #[arg(long, default_value_t = 60)]
    sample_seconds: u64,
    /// Soak: seconds between the doctor's note autosaves (the page's pace).
    #[arg(long, default_value_t = 5)]
    autosave_seconds: u64,
    /// Soak: seconds between the admin's reads (the list, then one log).
    #[arg(long, default_value_t = 5)]
    admin_read_seconds: u64,
    /// Soak: minutes before the start window (memory settles first).
    #[arg(long, default_value_t = 10.0)]
    soak_warmup_minutes: f64,
    /// Write the JSON report here (without it, it goes to stdout before the table).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Consecutive failed joins after which no more consultations are tried.
const MAX_CONSECUTIVE_JOIN_FAILURES: usize = 3;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let machine = server::machine();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let srv = server::start(&args).await?;
    // Scripts (tests/bench/profile.sh) read these two lines from stderr.
    if let Some(pid) = srv.pid {
        eprintln!("loadgen: server {} pid {pid}", srv.name);
    }
    let http = reqwest::Client::new();
    let joiner = Joiner::new(&srv, &http, args.consultations).await?;
    let rss_before = srv.pid.and_then(|p| status_field(p, "VmRSS"));

    if let Some(minutes) = args.soak_minutes {
        let settings = soak::Settings {
            consultations: args.consultations,
            minutes,
            call_seconds: args.call_seconds,
            sample_seconds: args.sample_seconds,
            autosave_seconds: args.autosave_seconds,
            admin_read_seconds: args.admin_read_seconds,
            frame_bytes: args.frame_bytes,
            warmup_minutes: args.soak_warmup_minutes,
        };
        let mut report = soak::run(settings, &srv, joiner).await?;
        report["server_version"] = json!(srv.version);
        report["machine"] = machine;
        report["started_unix"] = json!(started_unix);
        let text = serde_json::to_string_pretty(&report)?;
        match &args.json {
            Some(p) => std::fs::write(p, &text)?,
            None => println!("{text}\n"),
        }
        print!("{}", soak::table(&report));
        srv.stop().await;
        return Ok(());
    }

    let config = |name: &str, tone: f64| {
        let mut c = ParticipantConfig::new(name, tone);
        c.video_fps = 30;
        c.frame_bytes = args.frame_bytes;
        c.keyframe_bytes = args.frame_bytes * 3;
        c
    };
    let (mut calls, mut join_ms, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let mut consecutive = 0;
    for i in 0..args.consultations {
        match joiner.join(i, config).await {
            Ok((call, ms)) => {
                calls.push(call);
                join_ms.push(ms);
                consecutive = 0;
            }
            Err(e) => {
                eprintln!("consultation {i}: {e:#}");
                failures.push(format!("{i}: {e:#}"));
                consecutive += 1;
                if consecutive >= MAX_CONSECUTIVE_JOIN_FAILURES {
                    eprintln!("{consecutive} joins failed in a row: no more consultations");
                    break;
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    eprintln!("loadgen: measuring {} s", args.seconds);
    let window = figures::measure(&calls, srv.pid, args.seconds).await;
    let report = figures::report(
        &window,
        figures::Inputs {
            target: srv.name,
            server_version: &srv.version,
            consultations: args.consultations,
            joined: calls.len(),
            join_failures: failures,
            join_ms,
            rss_kib_before: rss_before,
            rss_kib_after: srv.pid.and_then(|p| status_field(p, "VmRSS")),
            server_threads: srv.pid.and_then(|p| status_field(p, "Threads")),
            peer_connections_per_consultation: match args.target {
                Target::Ours => 2,
                Target::Janus => 4,
            },
            warmup_s: args.warmup,
            machine,
            settings: json!({
                "started_unix": started_unix,
                "video_fps": 30,
                "frame_bytes": args.frame_bytes,
                "audio_packets_per_s": 50,
                "janus_event_loops": (args.target == Target::Janus).then_some(args.janus_event_loops),
                "janus_debug_level": (args.target == Target::Janus).then_some(args.janus_debug_level),
                "server_log": srv.log.as_ref().map(|p| p.display().to_string()),
                "server_cpus": args.server_cpus,
                "server_engines": args.server_engines,
                "generator_cpus": std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                        .map(|v| v.trim().to_owned())
                }),
            }),
        },
    );
    let text = serde_json::to_string_pretty(&report)?;
    match &args.json {
        Some(p) => std::fs::write(p, &text)?,
        None => println!("{text}\n"),
    }
    print!("{}", figures::table(&report));

    for c in calls {
        c.close().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.stop().await;
    Ok(())
}
