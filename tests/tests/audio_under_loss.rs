//! The commune's 4G at its worst for speech: 10 % of the station's media
//! packets lost each way and a 300 ms round trip (the goal for
//! audio). The doctor must keep hearing the patient: in every 200 ms of
//! 20 s, the station's tone decodes at its frequency as a listener with a
//! 150 ms jitter buffer hears it (a retransmission later than that is too
//! late to play), and the same for the station hearing the doctor.

mod common;

use std::time::{Duration, Instant};

const PLAYOUT: Duration = Duration::from_millis(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_stays_at_its_tone_every_second_at_ten_percent_loss_and_300_ms() {
    let sfu = common::start_sfu().await;
    let room = common::room(&sfu, "consultation-weak-4g").await;
    let (doctor, worker, link) = common::doctor_and_worker_on_a_link(&sfu, &room).await;

    link.set_loss(0.10, 0.10);
    link.set_delay(1.0, Duration::from_millis(150));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(21)).await;
    let (dropped_up, dropped_down) = link.dropped();
    assert!(dropped_up > 50 && dropped_down > 50, "the link did lose packets");

    for (label, heard, tone) in [
        (
            "the doctor hears the station",
            doctor.participant.audio_seconds("health-worker", since, PLAYOUT),
            660.0,
        ),
        (
            "the station hears the doctor",
            worker.participant.audio_seconds("doctor", since, PLAYOUT),
            440.0,
        ),
    ] {
        let concealed: Vec<String> = heard
            .iter()
            .map(|s| format!("{:.0}", s.concealed * 100.0))
            .collect();
        let mean = heard.iter().map(|s| s.concealed).sum::<f64>() / heard.len().max(1) as f64;
        println!(
            "{label}: {} s, concealed per second % [{}], mean {:.1} %",
            heard.len(),
            concealed.join(" "),
            mean * 100.0
        );
        assert!(
            heard.len() >= 19,
            "{label}: only {} seconds of audio",
            heard.len()
        );
        // Nothing protects this participant's audio but what reaches it (it
        // sends no RED; the browser tests check RED), so about the link's
        // 10 % is concealed; much more is audio the server lost or held back.
        assert!(mean < 0.15, "{label}: {:.1} % concealed", mean * 100.0);
        for (i, s) in heard.iter().enumerate() {
            assert!(
                s.holds_tone(tone),
                "{label}: second {i} is not the {tone} Hz tone: {s:?}"
            );
        }
    }
}
