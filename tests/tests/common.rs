//! Shared helpers for the media integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;
use telehealth_sfu::{RoomId, Sfu, SfuConfig, SfuEvent};
use telehealth_tests::ParticipantReport;
use tokio::sync::mpsc::UnboundedReceiver;

/// Starts an SFU on 127.0.0.1, an ephemeral port.
pub async fn start_sfu() -> Sfu {
    init_tracing();
    Sfu::start(SfuConfig::loopback())
        .await
        .expect("the SFU binds 127.0.0.1:0")
}

/// Logs to the test output when RUST_LOG is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Creates a room with a fresh id.
pub async fn room(sfu: &Sfu, name: &str) -> RoomId {
    let id = RoomId::new(name);
    sfu.create_room(id.clone()).await.expect("new room");
    id
}

/// Polls `check` every 50 ms until it returns Some, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for an event matching `pred`, or panics after `timeout`.
pub async fn wait_event(
    events: &mut UnboundedReceiver<SfuEvent>,
    timeout: Duration,
    what: &str,
    mut pred: impl FnMut(&SfuEvent) -> bool,
) -> SfuEvent {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event stream ended waiting for {what}"),
            Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
        }
    }
}

/// A STUN binding request naming `username` (`ours:theirs`), well formed but
/// signed with a password that is not the SFU's.
pub fn forged_binding_request(username: &str) -> Vec<u8> {
    let provider = rtc::crypto::default_provider().expect("the ring crypto provider");
    telehealth_sfu::stun::signed_binding_request(username, "not-the-password-0123456", provider.crypto())
}

/// Asserts what `report` received from the participant named `from`: its
/// tone (± 10 Hz), at least `audio_packets` audio packets with under 2 %
/// loss, and at least `frames` video frames with none missing. Returns the
/// video track, for further checks.
pub fn assert_heard<'r>(
    report: &'r ParticipantReport,
    from: &str,
    tone: f64,
    audio_packets: u64,
    frames: u64,
) -> &'r telehealth_tests::TrackReport {
    println!("{report}");
    let audio = report.audio_from(from).expect("audio track");
    let video = report.video_from(from).expect("video track");
    let f = audio.dominant_frequency_hz.expect("decoded audio");
    assert!(
        (f - tone).abs() <= 10.0,
        "{} heard {f} Hz, expected {tone}",
        report.name
    );
    assert!(
        audio.packets_received >= audio_packets,
        "audio packets {}",
        audio.packets_received
    );
    assert!(audio.loss_ratio() < 0.02, "audio loss {}", audio.loss_ratio());
    assert!(
        video.frames_complete >= frames,
        "frames {}",
        video.frames_complete
    );
    assert_eq!(
        video.frames_complete, video.frames_expected,
        "video counters are continuous"
    );
    video
}

/// A consultation's two synthetic participants: the doctor on a clean link
/// (tone 440 Hz) and the health worker (660 Hz) behind `Impairment` (none
/// yet), both already receiving the other's audio and video.
pub async fn doctor_and_worker_on_a_link(
    sfu: &Sfu,
    room: &RoomId,
) -> (
    telehealth_tests::SfuSession,
    telehealth_tests::SfuSession,
    std::sync::Arc<telehealth_tests::Impairment>,
) {
    use telehealth_tests::{Impairment, ParticipantConfig, SfuSession};
    let doctor = SfuSession::join(sfu, room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins");
    let link = Impairment::none();
    let mut cfg = ParticipantConfig::new("health-worker", 660.0);
    cfg.impairment = link.clone();
    let worker = SfuSession::join(sfu, room, cfg).await.expect("worker joins");
    let (d, w) = (doctor.participant.clone(), worker.participant.clone());
    eventually(Duration::from_secs(5), "audio and video both ways", || {
        let (d, w) = (d.clone(), w.clone());
        async move {
            let a = d.report();
            let b = w.report();
            let up = a.video_from("health-worker")?.frames_complete > 5
                && a.audio_from("health-worker")?.packets_received > 25;
            let down =
                b.video_from("doctor")?.frames_complete > 5 && b.audio_from("doctor")?.packets_received > 25;
            (up && down).then_some(())
        }
    })
    .await;
    (doctor, worker, link)
}
