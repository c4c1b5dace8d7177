//! With 5 % loss on one participant's link (both directions), NACK/RTX
//! recover the video on both legs: frames complete stays above 95 %, and a
//! lost packet is repaired about once (not re-sent at every NACK interval).

mod common;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_recovers_video_under_five_percent_loss() {
    let sfu = common::start_sfu().await;
    let room = common::room(&sfu, "consultation-4g").await;
    // The commune station on 4G: 5 % of its media packets lost each way.
    let (doctor, worker, link) = common::doctor_and_worker_on_a_link(&sfu, &room).await;

    link.set_loss(0.05, 0.05);
    let before_up = doctor.participant.report().video_from("health-worker").cloned();
    let before_down = worker.participant.report().video_from("doctor").cloned();
    tokio::time::sleep(Duration::from_secs(6)).await;
    link.set_loss(0.0, 0.0);
    // Let the last retransmissions land.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (dropped_up, dropped_down) = link.dropped();
    let d = doctor.participant.report();
    let w = worker.participant.report();
    println!("{d}{w}dropped by the link: {dropped_up} up, {dropped_down} down");
    // About 30 each way are expected (5 % of some 600 packets); the bound is
    // far enough below that chance never fails it (20 did, once, in CI).
    assert!(dropped_up > 10 && dropped_down > 10, "the link did lose packets");

    for (label, before, after, dropped) in [
        (
            "uplink (worker → SFU → doctor)",
            before_up,
            d.video_from("health-worker").cloned(),
            dropped_up,
        ),
        (
            "downlink (doctor → SFU → worker)",
            before_down,
            w.video_from("doctor").cloned(),
            dropped_down,
        ),
    ] {
        let (before, after) = (before.expect("video before"), after.expect("video after"));
        let complete = after.frames_complete - before.frames_complete;
        let expected = after.frames_expected - before.frames_expected;
        let ratio = complete as f64 / expected as f64;
        println!(
            "{label}: {complete}/{expected} frames complete ({:.1} %), residual packet loss {:.2} %",
            ratio * 100.0,
            after.loss_ratio() * 100.0
        );
        assert!(expected >= 100, "{label}: only {expected} frames in the window");
        assert!(ratio > 0.95, "{label}: frames complete {:.1} %", ratio * 100.0);
        // Every packet the link dropped (audio and video) is at most one
        // repair; asking again for repaired packets made ~10 copies each.
        assert!(
            after.duplicates <= dropped,
            "{label}: {} duplicates for {dropped} packets lost",
            after.duplicates
        );
    }
    sfu.shutdown().await;
}
