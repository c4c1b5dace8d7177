//! ICE restart: a participant restarts ICE mid-call (as after a cell
//! handover); the SFU answers with fresh credentials and media keeps flowing.

mod common;

use std::time::Duration;
use telehealth_tests::{ParticipantConfig, SfuSession};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_keeps_media_flowing() {
    let sfu = common::start_sfu().await;
    let room = common::room(&sfu, "consultation-handover").await;
    let doctor = SfuSession::join(&sfu, &room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins");
    let worker = SfuSession::join(&sfu, &room, ParticipantConfig::new("health-worker", 660.0))
        .await
        .expect("worker joins");
    let (d, w) = (doctor.participant.clone(), worker.participant.clone());
    common::eventually(Duration::from_secs(5), "video both ways", || {
        let (d, w) = (d.clone(), w.clone());
        async move {
            let a = d.report().video_from("health-worker")?.frames_complete;
            let b = w.report().video_from("doctor")?.frames_complete;
            (a > 5 && b > 5).then_some(())
        }
    })
    .await;

    let before_ufrag = worker.sfu_ice_ufrag();
    let before = doctor
        .participant
        .report()
        .video_from("health-worker")
        .cloned()
        .expect("video");
    worker.restart_ice().await.expect("ICE restart negotiates");
    let after_ufrag = worker.sfu_ice_ufrag();
    assert_ne!(
        before_ufrag, after_ufrag,
        "the SFU answered with fresh ICE credentials"
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = doctor
        .participant
        .report()
        .video_from("health-worker")
        .cloned()
        .expect("video");
    let w = worker.participant.report();
    println!("{w}");
    assert!(
        after.frames_complete >= before.frames_complete + 35,
        "video kept flowing up"
    );
    assert!(after.max_frame_gap <= 5, "gap {}", after.max_frame_gap);
    let down = w.video_from("doctor").expect("video down");
    assert!(down.max_frame_gap <= 5, "gap {}", down.max_frame_gap);
    let tone = w
        .audio_from("doctor")
        .and_then(|a| a.dominant_frequency_hz)
        .expect("tone");
    assert!((tone - 440.0).abs() <= 10.0);
    sfu.shutdown().await;
}
