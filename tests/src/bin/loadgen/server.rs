//! The server under load: ours (started from its binary, or already
//! running) or Janus (started from a generated configuration), and what
//! /proc says about its process and the machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use telehealth_tests::janus_server::{self, JanusOptions, JanusServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::{Args, Target};

/// How to reach the server.
pub enum Endpoint {
    /// Our server: its base URL and the admin's password.
    Ours { base: String, admin_password: String },
    /// Janus: the base URL of its HTTP API.
    Janus { url: String },
}

/// What keeps a server we started alive.
enum Guard {
    /// A server somebody else started.
    External,
    Ours {
        child: tokio::process::Child,
        dir: PathBuf,
        remove_dir: bool,
    },
    Janus(JanusServer),
}

/// The server under load.
pub struct Server {
    /// `telehealth` or `janus`.
    pub name: &'static str,
    /// Its version.
    pub version: String,
    /// Its process, for CPU time and memory.
    pub pid: Option<u32>,
    /// How to reach it.
    pub endpoint: Endpoint,
    /// Where its log is, when we started it.
    pub log: Option<PathBuf>,
    /// Ours, started here: its data folder (the database).
    pub data_dir: Option<PathBuf>,
    guard: Guard,
}

fn work_dir(args: &Args, tag: &str) -> (PathBuf, bool) {
    match &args.work_dir {
        Some(d) => (d.clone(), false),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let d = std::env::temp_dir().join(format!("loadgen-{tag}-{}-{nanos:x}", std::process::id()));
            (d, true)
        }
    }
}

/// Starts (or attaches to) the server the arguments name.
pub async fn start(args: &Args) -> Result<Server> {
    match args.target {
        Target::Janus => {
            janus_server::ensure_installed(&args.janus_bin)?;
            let (dir, remove) = work_dir(args, "janus");
            let janus = JanusServer::start(&JanusOptions {
                binary: args.janus_bin.clone(),
                dir: (!remove).then_some(dir),
                debug_level: args.janus_debug_level,
                event_loops: args.janus_event_loops,
                cpus: args.server_cpus.clone(),
                ..JanusOptions::default()
            })
            .await?;
            Ok(Server {
                name: "janus",
                version: janus.version.clone(),
                pid: janus.pid(),
                endpoint: Endpoint::Janus {
                    url: janus.url.clone(),
                },
                log: Some(janus.dir().join("janus.log")),
                data_dir: None,
                guard: Guard::Janus(janus),
            })
        }
        Target::Ours => match &args.server_bin {
            Some(bin) => start_ours(args, bin).await,
            None => {
                let admin_password = args.admin_password.clone().ok_or_else(|| {
                    anyhow!("--admin-password is needed with --server (or use --server-bin)")
                })?;
                Ok(Server {
                    name: "telehealth",
                    version: "unknown (started elsewhere)".into(),
                    pid: args.server_pid,
                    endpoint: Endpoint::Ours {
                        base: args.server.trim_end_matches('/').to_owned(),
                        admin_password,
                    },
                    log: None,
                    data_dir: None,
                    guard: Guard::External,
                })
            }
        },
    }
}

/// Starts our binary on free loopback ports with a fresh SQLite database.
async fn start_ours(args: &Args, bin: &Path) -> Result<Server> {
    let version = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .with_context(|| format!("run {} --version", bin.display()))?;
    let version = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .last()
        .unwrap_or("?")
        .to_owned();
    let (dir, remove_dir) = work_dir(args, "telehealth");
    std::fs::create_dir_all(&dir)?;
    let admin_password = format!("loadgen-{:016x}", rand::random::<u64>());
    let log_path = dir.join("telehealth.log");
    let log = std::fs::File::create(&log_path)?;
    let mut command = telehealth_tests::server_command(bin, args.server_cpus.as_deref());
    if let Some(n) = args.server_engines {
        command.arg("--media-engines").arg(n.to_string());
    }
    let mut child = command
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--media-udp-port",
            "0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env("TELEHEALTH_ADMIN_PASSWORD", &admin_password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone()?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let mut log = tokio::fs::File::from_std(log);
    // The server prints its address once it listens; everything it prints
    // (its log too) goes on to the log file.
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            log.write_all(format!("{line}\n").as_bytes()).await?;
            if let Some(url) = line.split("listening on ").nth(1) {
                return Ok(url.trim().to_owned());
            }
        }
        bail!("the server exited before listening; see {}", log_path.display())
    })
    .await
    .map_err(|_| anyhow!("the server did not listen within 60 s"))??;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if log.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                break;
            }
        }
    });
    Ok(Server {
        name: "telehealth",
        version,
        pid: child.id(),
        endpoint: Endpoint::Ours { base, admin_password },
        log: (!remove_dir).then_some(log_path),
        data_dir: Some(dir.join("data")),
        guard: Guard::Ours {
            child,
            dir,
            remove_dir,
        },
    })
}

impl Server {
    /// Stops a server we started (dropping it removes its temporary folder).
    pub async fn stop(mut self) {
        match &mut self.guard {
            Guard::External => {}
            Guard::Ours { child, .. } => {
                let _ = child.kill().await;
            }
            Guard::Janus(_) => {
                if let Guard::Janus(j) = std::mem::replace(&mut self.guard, Guard::External) {
                    j.stop().await;
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Guard::Ours {
            child,
            dir,
            remove_dir,
        } = &mut self.guard
        {
            let _ = child.start_kill();
            if *remove_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// CPU seconds (user + system, all threads) of a process, from /proc/<pid>/stat.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// A field of /proc/<pid>/status, as a number (e.g. `VmRSS` in KiB, `Threads`).
pub fn status_field(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.split(':').next() == Some(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The machine: CPUs, their model, and the load before the run (other
/// work on the machine skews every figure).
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned());
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let mem_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| (kib / 1024.0 / 1024.0).round())
    });
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "memory_gib": mem_gib,
        "loadavg_before": loadavg,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
    })
}
