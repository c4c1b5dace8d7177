//! Per participant stats samples arrive as events at the configured interval:
//! bitrate in/out per track, packets lost, jitter, RTT, NACK/PLI counts.

mod common;

use std::time::Duration;
use telehealth_sfu::{Direction, MediaKind, Sfu, SfuConfig, SfuEvent, StatsSample};
use telehealth_tests::{Impairment, ParticipantConfig, SfuSession};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_samples_describe_each_participant() {
    common::init_tracing();
    let config = SfuConfig {
        stats_interval: Duration::from_secs(1),
        ..SfuConfig::loopback()
    };
    let sfu = Sfu::start(config).await.expect("start");
    let mut events = sfu.events().await.expect("events");
    let room = common::room(&sfu, "consultation-stats").await;
    let _doctor = SfuSession::join(&sfu, &room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins");
    let link = Impairment::none();
    link.set_loss(0.05, 0.0);
    let mut cfg = ParticipantConfig::new("health-worker", 660.0);
    cfg.impairment = link.clone();
    let _worker = SfuSession::join(&sfu, &room, cfg).await.expect("worker joins");

    // Skip the first samples (set-up), then take one per participant.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latest: Vec<StatsSample> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while latest.len() < 2 && tokio::time::Instant::now() < deadline {
        let ev = common::wait_event(&mut events, Duration::from_secs(3), "a stats sample", |e| {
            matches!(e, SfuEvent::Stats(_))
        })
        .await;
        if let SfuEvent::Stats(s) = ev {
            if s.tracks.len() == 4 && !latest.iter().any(|l| l.participant == s.participant) {
                latest.push(s);
            }
        }
    }
    assert_eq!(latest.len(), 2, "a full sample for each participant");
    for s in &latest {
        println!("{s:#?}");
        for dir in [Direction::Inbound, Direction::Outbound] {
            for kind in [MediaKind::Audio, MediaKind::Video] {
                let t = s
                    .tracks
                    .iter()
                    .find(|t| t.direction == dir && t.kind == kind)
                    .unwrap_or_else(|| panic!("{}: no {dir:?} {kind:?}", s.participant));
                assert!(t.packets > 0, "{t:?}");
                let (lo, hi) = match kind {
                    MediaKind::Audio => (5_000, 200_000),
                    MediaKind::Video => (100_000, 1_000_000),
                };
                assert!((lo..hi).contains(&t.bitrate_bps), "{}: {t:?}", s.participant);
                assert!(t.jitter_s.is_some(), "{t:?}");
            }
        }
        assert!(s.rtt_s.is_some_and(|r| r < 0.5), "rtt {:?}", s.rtt_s);
    }
    // The lossy uplink shows as NACKs the SFU sent upstream for the worker's
    // video (cumulative; a few seconds of 5 % loss lose only a handful of
    // video packets, each asked for once, so wait for the first).
    let worker_video_in = |s: &StatsSample| {
        s.tracks
            .iter()
            .find(|t| t.direction == Direction::Inbound && t.kind == MediaKind::Video)
            .cloned()
    };
    let worker = latest
        .iter()
        .find(|s| s.participant.as_str() == "health-worker")
        .expect("worker sample");
    assert!(worker_video_in(worker).is_some(), "worker video in");
    let ev = common::wait_event(
        &mut events,
        Duration::from_secs(15),
        "a NACK for the worker's video",
        |e| {
            matches!(e, SfuEvent::Stats(s) if s.participant.as_str() == "health-worker"
            && worker_video_in(s).is_some_and(|t| t.nacks > 0))
        },
    )
    .await;
    if let SfuEvent::Stats(s) = ev {
        println!("{:?}", worker_video_in(&s));
    }
    sfu.shutdown().await;
}

/// With send-side bandwidth estimation on (TWCC feedback, GCC; the default), media
/// still flows intact and each participant's stats carry the estimate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_estimation_reports_an_estimate_per_participant() {
    common::init_tracing();
    let config = SfuConfig {
        stats_interval: Duration::from_secs(1),
        bandwidth_estimation: true,
        ..SfuConfig::loopback()
    };
    let sfu = Sfu::start(config).await.expect("start");
    let mut events = sfu.events().await.expect("events");
    let room = common::room(&sfu, "consultation-bwe").await;
    let doctor = SfuSession::join(&sfu, &room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins");
    let worker = SfuSession::join(&sfu, &room, ParticipantConfig::new("health-worker", 660.0))
        .await
        .expect("worker joins");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut estimates = std::collections::HashMap::new();
    while estimates.len() < 2 {
        let ev = common::wait_event(
            &mut events,
            Duration::from_secs(5),
            "an estimate",
            |e| matches!(e, SfuEvent::Stats(s) if s.send_estimate_bps.is_some()),
        )
        .await;
        if let SfuEvent::Stats(s) = ev {
            estimates.insert(s.participant.clone(), s.send_estimate_bps);
        }
    }
    println!("estimates: {estimates:?}");
    for e in estimates.values() {
        assert!(e.is_some_and(|bps| bps >= 100_000), "{e:?}");
    }
    for (p, from) in [(&doctor, "health-worker"), (&worker, "doctor")] {
        let r = p.participant.report();
        println!("{r}");
        let v = r.video_from(from).expect("video");
        assert!(v.frames_complete >= 50, "frames {}", v.frames_complete);
        assert!(v.frames_complete_ratio() > 0.95, "{}", v.frames_complete_ratio());
    }
    sfu.shutdown().await;
}
