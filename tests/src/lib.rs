//! Test support: the synthetic WebRTC participant and the load generator.
//!
//! A [`SyntheticParticipant`] is a real `webrtc`-crate peer on 127.0.0.1. It
//! publishes an Opus-encoded tone and synthetic VP8-framed video (each frame
//! carries its counter and send time), subscribes to whatever the SFU offers,
//! and reports per received track: packets, loss, one-way delay (same host
//! clock), frames complete and the decoded audio's dominant frequency. Its
//! link can drop or delay a share of its packets each way ([`lossy`]).
//!
//! [`SfuSession`] wires it to an in-process [`telehealth_sfu::Sfu`];
//! [`WsSession`] to a running server's signaling WebSocket (optionally
//! recovering from drops by itself, as the call page does);
//! [`JanusParticipant`] to a Janus VideoRoom (the load generator's
//! comparison server, run by [`JanusServer`]).
//! The `synthetic-participant` binary runs a room of them and prints reports.
//!
//! [`LinkEmulator`] is a user-space relay that gives each client IP a rural
//! link of its own — loss, delay, jitter, rate caps, blackouts, handovers —
//! for the synthetic participants here and (as the `linkemu` binary) for the
//! browser tests.

/// CPU time each thread of this process whose name starts with `prefix`
/// has spent running, in ns, from the scheduler's accounting
/// (`/proc/self/task/*/schedstat`): the SFU's engine threads are
/// `media-engine-N`. Empty where /proc is not there.
pub fn threads_cpu_ns(prefix: &str) -> Vec<(String, u64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let name = name.trim();
        if !name.starts_with(prefix) {
            continue;
        }
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        if let Some(ns) = ns {
            found.push((name.to_owned(), ns));
        }
    }
    found
}

/// A server process started on chosen CPUs (the benchmark gives the server
/// under test a core of its own, away from the load generator): `taskset -c
/// <cpus> <program>`, which execs the program in the same process; just
/// `<program>` without `cpus`.
pub fn server_command(program: &std::path::Path, cpus: Option<&str>) -> tokio::process::Command {
    match cpus {
        Some(cpus) => {
            let mut c = tokio::process::Command::new("taskset");
            c.arg("-c").arg(cpus).arg(program);
            c
        }
        None => tokio::process::Command::new(program),
    }
}

pub mod api;
pub mod janus_link;
pub mod janus_server;
pub mod linkemu;
pub mod lossy;
pub mod media;
pub mod participant;
pub mod report;
pub mod sfu_link;
pub mod ws_link;

pub use janus_link::JanusParticipant;
pub use janus_server::JanusServer;
pub use linkemu::{Link, LinkEmulator, LinkEmulatorConfig, LinkStats, Relay, Shape};
pub use lossy::Impairment;
pub use participant::{ParticipantConfig, SyntheticParticipant};
pub use report::{ParticipantReport, TrackReport};
pub use sfu_link::SfuSession;
pub use ws_link::WsSession;

/// Whether `text` names an address off this host, or a name that might
/// resolve to one. Fuzz targets skip such inputs: the tests send nothing to
/// any address but loopback, and a candidate the fuzzer makes valid would
/// otherwise have the SFU check connectivity to it.
pub fn leaves_host(text: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == '/')
        .filter(|t| t.contains('.') || t.matches(':').count() > 1)
        .any(|t| {
            !t.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
        })
}
