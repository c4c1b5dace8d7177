//! Simulcast layer choice follows each subscriber's send-side estimate: a
//! publisher sends three layers; the doctor's downlink becomes a 350 kbps
//! bottleneck, the SFU's estimate for it falls and it is moved down a layer;
//! the bottleneck goes, the estimate recovers and it is moved back up — and
//! the doctor's video keeps coming as one stream throughout.

mod common;

use std::time::Duration;
use telehealth_sfu::{Direction, MediaKind, Sfu, SfuConfig, SfuEvent, StatsSample};
use telehealth_tests::{Impairment, ParticipantConfig, SfuSession, SyntheticParticipant};
use tokio::sync::mpsc::UnboundedReceiver;

/// The layer forwarded to `who` and its estimate, from its next stats sample.
async fn next_sample(events: &mut UnboundedReceiver<SfuEvent>, who: &str) -> (Option<usize>, Option<u64>) {
    let ev = common::wait_event(
        events,
        Duration::from_secs(5),
        "a stats sample",
        |e| matches!(e, SfuEvent::Stats(s) if s.participant.as_str() == who),
    )
    .await;
    let SfuEvent::Stats(StatsSample {
        tracks,
        send_estimate_bps,
        ..
    }) = ev
    else {
        unreachable!("wait_event returned what the predicate accepted")
    };
    let layer = tracks
        .iter()
        .find(|t| t.direction == Direction::Outbound && t.kind == MediaKind::Video)
        .and_then(|t| t.layer);
    (layer, send_estimate_bps)
}

/// Reads samples until `done(layer, estimate)` holds, or panics after `timeout`.
async fn until(
    events: &mut UnboundedReceiver<SfuEvent>,
    who: &str,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(Option<usize>, u64) -> bool,
) -> (usize, u64) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (layer, estimate) = next_sample(events, who).await;
        println!("{who}: layer {layer:?}, estimate {estimate:?}");
        if let (Some(l), Some(e)) = (layer, estimate) {
            if done(Some(l), e) {
                return (l, e);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
    }
}

fn frames_from(p: &SyntheticParticipant, from: &str) -> u64 {
    p.report()
        .video_from(from)
        .map(|v| v.frames_complete)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_layer_follows_the_subscribers_estimate_down_and_back_up() {
    common::init_tracing();
    let config = SfuConfig {
        stats_interval: Duration::from_secs(1),
        ..SfuConfig::loopback()
    };
    assert!(config.bandwidth_estimation, "on by default");
    let sfu = Sfu::start(config).await.expect("start");
    let mut events = sfu.events().await.expect("events");
    let room = common::room(&sfu, "consultation-simulcast").await;
    // Three layers at 25 fps: about 50, 160 and 600 kbps.
    let station = SfuSession::join(
        &sfu,
        &room,
        ParticipantConfig::new("health-worker", 660.0).simulcast(&[("q", 250), ("h", 800), ("f", 3000)]),
    )
    .await
    .expect("the station joins");
    let link = Impairment::none();
    let mut cfg = ParticipantConfig::new("doctor", 440.0);
    cfg.impairment = link.clone();
    let doctor = SfuSession::join(&sfu, &room, cfg)
        .await
        .expect("the doctor joins");
    let d = doctor.participant.clone();

    // A clear link: the estimate allows the top layer.
    let (_, before) = until(
        &mut events,
        "doctor",
        Duration::from_secs(40),
        "the top layer",
        |l, _| l == Some(2),
    )
    .await;
    let frames = frames_from(&d, "health-worker");
    assert!(frames > 25, "video flows: {frames} frames");
    // Past the trial of the step up (a step up that makes the link lose is
    // taken back at once, whatever the estimate): the estimate decides here.
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The doctor's downlink becomes a 350 kbps bottleneck: the top layer
    // (600 kbps) no longer fits, queues build, the estimate falls and the
    // SFU moves the doctor down.
    link.set_downlink_rate(Some(350_000));
    let (_, low) = until(
        &mut events,
        "doctor",
        Duration::from_secs(40),
        "a lower layer",
        |l, _| l.is_some_and(|l| l < 2),
    )
    .await;
    assert!(low < before, "the estimate fell: {before} → {low} bps");
    let during = frames_from(&d, "health-worker");
    assert!(during > frames, "video kept coming while congested");

    // The bottleneck goes: the estimate climbs back and the top layer returns.
    link.set_downlink_rate(None);
    let (_, after) = until(
        &mut events,
        "doctor",
        Duration::from_secs(60),
        "the top layer again",
        |l, _| l == Some(2),
    )
    .await;
    assert!(after > low, "the estimate recovered: {low} → {after} bps");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r = d.report();
    println!("{r}");
    assert!(
        frames_from(&d, "health-worker") > during,
        "video kept coming after recovery"
    );
    // One video track from the station, whatever layer it carried.
    let videos = r
        .tracks
        .iter()
        .filter(|t| !t.audio && t.stream_id == "health-worker")
        .count();
    assert_eq!(videos, 1, "one continuous stream per published track");
    let audio = r.audio_from("health-worker").expect("audio");
    assert!(
        (audio.dominant_frequency_hz.expect("tone") - 660.0).abs() <= 10.0,
        "audio throughout"
    );
    drop(station);
    sfu.shutdown().await;
}

/// The station's network changes mid-call (an ICE restart, so a new remote
/// description for its connection): the doctor keeps getting its simulcast
/// video. The synthetic station, like a browser, stops naming its layers
/// (MID and RID header extensions) once receiver reports acknowledge them;
/// `rtc` forgets layer bindings on every remote description, so without
/// [`telehealth_sfu::layer_ids`] the layers could not be recognised again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_video_survives_the_publishers_ice_restart() {
    let sfu = common::start_sfu().await;
    let room = common::room(&sfu, "consultation-simulcast-restart").await;
    let station = SfuSession::join(
        &sfu,
        &room,
        ParticipantConfig::new("health-worker", 660.0).simulcast(&[("q", 250), ("h", 800)]),
    )
    .await
    .expect("the station joins");
    let doctor = SfuSession::join(&sfu, &room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("the doctor joins");
    let d = doctor.participant.clone();
    common::eventually(Duration::from_secs(5), "the station's video", || {
        let d = d.clone();
        async move { (frames_from(&d, "health-worker") > 25).then_some(()) }
    })
    .await;
    // Long enough for receiver reports (every second) to have gone out.
    tokio::time::sleep(Duration::from_secs(3)).await;

    station.restart_ice().await.expect("ICE restart");
    let after_restart = frames_from(&d, "health-worker");
    common::eventually(Duration::from_secs(5), "video after the restart", || {
        let d = d.clone();
        async move { (frames_from(&d, "health-worker") > after_restart + 50).then_some(()) }
    })
    .await;
    let r = d.report();
    println!("{r}");
    let v = r.video_from("health-worker").expect("video");
    assert!(
        v.max_frame_gap < 10,
        "the picture did not stop: gap of {} frames",
        v.max_frame_gap
    );
    sfu.shutdown().await;
}
