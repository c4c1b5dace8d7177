//! A third participant joining late gets video within 1 s, because the SFU
//! asks the publishers for a keyframe (the synthetic publishers send
//! keyframes only when asked, so no other path can deliver one).

mod common;

use std::time::{Duration, Instant};
use telehealth_tests::{ParticipantConfig, SfuSession};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_gets_a_keyframe_within_one_second() {
    let sfu = common::start_sfu().await;
    let room = common::room(&sfu, "consultation-late").await;
    let doctor = SfuSession::join(&sfu, &room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins");
    let worker = SfuSession::join(&sfu, &room, ParticipantConfig::new("health-worker", 660.0))
        .await
        .expect("health worker joins");
    let d = doctor.participant.clone();
    common::eventually(Duration::from_secs(5), "the first two see each other", || {
        let d = d.clone();
        async move {
            let r = d.report();
            (r.video_from("health-worker")?.frames_complete > 10).then_some(())
        }
    })
    .await;
    // Both publishers are well into their streams; their last keyframe is long gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let plis_before = doctor.participant.report().plis_received;
    let frames_before = doctor.participant.report().frames_sent;

    let started = Instant::now();
    let specialist = SfuSession::join(&sfu, &room, ParticipantConfig::new("specialist", 880.0))
        .await
        .expect("specialist joins");
    let s = specialist.participant.clone();
    let (from_doctor, from_worker) =
        common::eventually(Duration::from_secs(1), "video for the late joiner", || {
            let s = s.clone();
            async move {
                let r = s.report();
                let a = r.video_from("doctor")?.first_frame_at?;
                let b = r.video_from("health-worker")?.first_frame_at?;
                Some((a, b))
            }
        })
        .await;
    let to_doctor = from_doctor.duration_since(started);
    let to_worker = from_worker.duration_since(started);
    println!(
        "late joiner: first frame from doctor after {to_doctor:?}, from health worker after {to_worker:?}"
    );
    assert!(to_doctor < Duration::from_secs(1));
    assert!(to_worker < Duration::from_secs(1));

    let r = doctor.participant.report();
    assert!(
        r.plis_received > plis_before,
        "the doctor was asked for a keyframe ({} → {})",
        plis_before,
        r.plis_received
    );
    // The first frame the specialist saw was a keyframe made mid-stream, on request.
    let v = specialist.participant.report();
    let first = v
        .video_from("doctor")
        .and_then(|t| t.first_counter)
        .expect("counter");
    assert!(
        first >= frames_before as u32,
        "first frame {first} is a fresh one"
    );
    // And video keeps coming, continuously, from there on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = specialist.participant.report();
    println!("{v}");
    let t = v.video_from("doctor").expect("video from doctor");
    assert!(t.frames_complete >= 20, "frames {}", t.frames_complete);
    assert_eq!(t.frames_complete, t.frames_expected);
    drop(worker);
    sfu.shutdown().await;
}
