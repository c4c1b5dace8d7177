//! Runs rooms of synthetic participants against an in-process SFU and
//! prints what each participant measured, plus the SFU's CPU time per
//! forwarded packet (every packet is handled on the engines' own threads,
//! so their CPU time is the SFU's cost).
//!
//! `cargo run --release -p telehealth-tests --bin synthetic-participant -- --rooms 10 --seconds 20`

use anyhow::Result;
use clap::Parser;
use std::time::Duration;
use telehealth_sfu::{RoomId, Sfu, SfuConfig};
use telehealth_tests::{Impairment, ParticipantConfig, SfuSession};

#[derive(Parser, Debug)]
#[command(about = "Synthetic consultations through the telehealth SFU")]
struct Args {
    /// Number of rooms (consultations), two participants each.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Seconds to measure after everyone is connected.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Share of the health worker's media packets lost each way (0.0-1.0).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Media engines (each its own thread and port; rooms are spread).
    #[arg(long, default_value_t = 1)]
    engines: usize,
    /// Print every participant's report.
    #[arg(long)]
    verbose: bool,
}

/// CPU time the SFU's engine threads have spent running, summed.
fn engines_cpu_ns() -> Option<u64> {
    let threads = telehealth_tests::threads_cpu_ns("media-engine-");
    (!threads.is_empty()).then(|| threads.iter().map(|(_, ns)| ns).sum())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sfu = Sfu::start(SfuConfig {
        engines: args.engines,
        ..SfuConfig::loopback()
    })
    .await?;
    let mut sessions = Vec::new();
    for r in 0..args.rooms {
        let room = RoomId::new(format!("consultation-{r}"));
        sfu.create_room(room.clone()).await?;
        let doctor =
            SfuSession::join(&sfu, &room, ParticipantConfig::new(&format!("doctor-{r}"), 440.0)).await?;
        let mut cfg = ParticipantConfig::new(&format!("worker-{r}"), 660.0);
        let link = Impairment::none();
        link.set_loss(args.loss, args.loss);
        cfg.impairment = link;
        let worker = SfuSession::join(&sfu, &room, cfg).await?;
        sessions.push((doctor, worker));
    }
    // Warm up: everyone connected and receiving.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c0 = sfu.counters().await?;
    let cpu0 = engines_cpu_ns();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let c1 = sfu.counters().await?;
    let cpu1 = engines_cpu_ns();

    let mut worst_frames = 1.0f64;
    let mut tones_ok = 0;
    for (d, w) in &sessions {
        for (p, peer, tone) in [
            (&d.participant, w.participant.name(), 660.0),
            (&w.participant, d.participant.name(), 440.0),
        ] {
            let r = p.report();
            if args.verbose {
                print!("{r}");
            }
            if let Some(v) = r.video_from(peer) {
                worst_frames = worst_frames.min(v.frames_complete_ratio());
            }
            if let Some(f) = r.audio_from(peer).and_then(|a| a.dominant_frequency_hz) {
                if (f - tone).abs() <= 10.0 {
                    tones_ok += 1;
                }
            }
        }
    }
    let forwarded = c1.rtp_forwarded - c0.rtp_forwarded;
    println!(
        "{} rooms, {} s: {} RTP packets forwarded ({:.0}/s), {} of {} audio tracks at the right tone, worst video frames complete {:.1} %",
        args.rooms,
        args.seconds,
        forwarded,
        forwarded as f64 / args.seconds as f64,
        tones_ok,
        sessions.len() * 2,
        worst_frames * 100.0,
    );
    match (cpu0, cpu1) {
        (Some(a), Some(b)) if forwarded > 0 => {
            let cpu = b - a;
            println!(
                "SFU engine threads' CPU ({} engines): {:.3} s ({:.1} % of one core); {:.2} µs per forwarded packet (includes receive, SRTP, RTCP, ICE)",
                args.engines,
                cpu as f64 / 1e9,
                cpu as f64 / 1e9 / args.seconds as f64 * 100.0,
                cpu as f64 / 1e3 / forwarded as f64
            );
        }
        _ => println!("SFU engine threads' CPU time not available on this system"),
    }
    sfu.shutdown().await;
    Ok(())
}
