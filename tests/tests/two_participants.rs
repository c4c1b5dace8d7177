//! Two synthetic participants in one room receive each other's audio (the
//! right frequency) and video (continuous frame counters) within 3 s of joining.

mod common;

use std::time::{Duration, Instant};
use telehealth_tests::{ParticipantConfig, SfuSession};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_participants_exchange_audio_and_video() {
    let sfu = common::start_sfu().await;
    let room = common::room(&sfu, "consultation-1").await;

    let joined = Instant::now();
    let doctor = SfuSession::join(&sfu, &room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins");
    let worker = SfuSession::join(&sfu, &room, ParticipantConfig::new("health-worker", 660.0))
        .await
        .expect("health worker joins");

    // Within 3 s of joining, each hears the other's tone and sees video.
    for (who, from, tone) in [(&doctor, "health-worker", 660.0), (&worker, "doctor", 440.0)] {
        let p = who.participant.clone();
        common::eventually(Duration::from_secs(3), "audio and video both ways", || {
            let p = p.clone();
            async move {
                let r = p.report();
                let audio = r.audio_from(from)?;
                let video = r.video_from(from)?;
                let f = audio.dominant_frequency_hz?;
                ((f - tone).abs() <= 10.0 && video.frames_complete >= 5).then_some(())
            }
        })
        .await;
    }
    let took = joined.elapsed();

    // Let media flow a little longer, then check continuity.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (who, from, tone) in [(&doctor, "health-worker", 660.0), (&worker, "doctor", 440.0)] {
        let r = who.participant.report();
        let video = common::assert_heard(&r, from, tone, 50, 40);
        assert_eq!(video.max_frame_gap, 0);
        let delay = video.delay_ms_median.expect("delay measured");
        assert!((0.0..200.0).contains(&delay), "one-way video delay {delay} ms");
    }
    println!("both directions up {took:?} after joining");
    sfu.shutdown().await;
}
