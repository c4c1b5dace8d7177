//! The last step of the degradation ladder, with synthetic participants: a
//! subscriber that asks for audio only gets no video until it asks again.
//! Each step is an `SfuEvent::VideoLevel`. (Audio only for a downlink too
//! thin for the lowest layer is tested with Chromium, `ladder.spec.js`: the
//! decision weighs what the viewer asks to be sent again, and the synthetic
//! receiver asks only now and then, unlike a browser.)

mod common;

use std::time::Duration;
use telehealth_sfu::{ParticipantId, SfuEvent, VideoLevel, VideoOff};
use telehealth_tests::{ParticipantConfig, SfuSession, SyntheticParticipant};
use tokio::sync::mpsc::UnboundedReceiver;

/// RTP packets `p` received of `from`'s audio, or of its video.
fn packets_from(p: &SyntheticParticipant, from: &str, audio: bool) -> u64 {
    p.report()
        .tracks
        .iter()
        .filter(|t| t.audio == audio && t.stream_id == from)
        .map(|t| t.packets_received)
        .sum()
}

/// Waits for the next step of `who`'s video ladder.
async fn next_level(events: &mut UnboundedReceiver<SfuEvent>, who: &str, timeout: Duration) -> VideoLevel {
    let ev = common::wait_event(
        events,
        timeout,
        "a video level",
        |e| matches!(e, SfuEvent::VideoLevel { participant, .. } if participant.as_str() == who),
    )
    .await;
    let SfuEvent::VideoLevel { level, .. } = ev else {
        unreachable!("wait_event returned what the predicate accepted")
    };
    println!("{who}: {level:?}");
    level
}

/// What arrives at `p` from `from` over `secs`: (video packets, audio packets).
async fn arriving(p: &SyntheticParticipant, from: &str, secs: u64) -> (u64, u64) {
    let (v, a) = (packets_from(p, from, false), packets_from(p, from, true));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (packets_from(p, from, false) - v, packets_from(p, from, true) - a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_asks_for_audio_only_gets_no_video_until_it_asks_again() {
    let sfu = common::start_sfu().await;
    let mut events = sfu.events().await.expect("events");
    let room = common::room(&sfu, "consultation-audio-only").await;
    let _station = SfuSession::join(&sfu, &room, ParticipantConfig::new("health-worker", 660.0))
        .await
        .expect("the station joins");
    let doctor = SfuSession::join(&sfu, &room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("the doctor joins");
    let d = doctor.participant.clone();
    assert!(
        matches!(
            next_level(&mut events, "doctor", Duration::from_secs(5)).await,
            VideoLevel::Layer { .. }
        ),
        "the doctor's video starts"
    );
    let (video, audio) = arriving(&d, "health-worker", 1).await;
    assert!(
        video > 20 && audio > 20,
        "both flow first: {video} video, {audio} audio packets"
    );

    sfu.set_video_wanted(room.clone(), ParticipantId::new("doctor"), false)
        .await
        .expect("audio only");
    assert_eq!(
        next_level(&mut events, "doctor", Duration::from_secs(2)).await,
        VideoLevel::Off(VideoOff::Requested)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (video, audio) = arriving(&d, "health-worker", 2).await;
    assert_eq!(
        video, 0,
        "no video forwarded to a subscriber that asked for audio only"
    );
    assert!(audio > 50, "audio keeps coming: {audio} packets");

    sfu.set_video_wanted(room.clone(), ParticipantId::new("doctor"), true)
        .await
        .expect("video again");
    assert!(matches!(
        next_level(&mut events, "doctor", Duration::from_secs(3)).await,
        VideoLevel::Layer { layer: 0, layers: 1 }
    ));
    let (video, _) = arriving(&d, "health-worker", 1).await;
    assert!(video > 20, "video again: {video} packets");
    // From a keyframe, as one stream: no hole where the pause was.
    let r = d.report();
    let v = r.video_from("health-worker").expect("video");
    assert_eq!(v.packets_lost, 0, "the pause is not a gap in the stream\n{r}");
    sfu.shutdown().await;
}
