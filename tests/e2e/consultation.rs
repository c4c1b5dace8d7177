//! A whole urgent consultation through the real binary: the health worker
//! asks, the doctor sees it pushed and accepts, both join with real WebRTC
//! peers over the signaling socket, audio and video flow through the SFU,
//! the health worker's socket drops and resumes the same participant, the
//! doctor ends the consultation, and the session log holds the timeline with
//! stats samples and a quality summary.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use telehealth_tests::{ParticipantConfig, WsSession};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn media_flows(who: &WsSession, from: &str, tone: f64, min_frames: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let r = who.participant.report();
        let ok = r
            .audio_from(from)
            .and_then(|a| a.dominant_frequency_hz)
            .is_some_and(|f| (f - tone).abs() <= 10.0)
            && r.video_from(from)
                .is_some_and(|v| v.frames_complete >= min_frames);
        if ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "media from {from} did not arrive in {within:?}:\n{r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_consultation_end_to_end() {
    let dir = temp_dir("call");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let ws_url = server.url("/api/ws").replace("http://", "ws://");

    // The doctor's page is open and listening.
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", p.doctor).parse().unwrap());
    let (mut doctor_page, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    doctor_page.next().await.unwrap().unwrap(); // hello

    let patient = post(
        &c,
        &server,
        &p.worker,
        "/api/patients",
        json!({"full_name": "Lò Thị Xuân", "date_of_birth": "1990-02-03", "sex": "female"}),
    )
    .await;
    let cons = post(
        &c,
        &server,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": patient["id"], "kind": "urgent", "reason": "Khó thở"}),
    )
    .await;
    let cid = cons["id"].as_str().unwrap().to_owned();
    let pushed: Value = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match doctor_page.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    break serde_json::from_str(&t).unwrap()
                }
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("pushed within a second");
    assert_eq!(
        (pushed["type"].as_str(), pushed["consultation_id"].as_str()),
        (Some("consultation_changed"), Some(cid.as_str()))
    );

    // Joining before a doctor accepted is refused with a clear code.
    let early = WsSession::join(&ws_url, &p.worker, &cid, ParticipantConfig::new("early", 500.0)).await;
    assert!(early.err().unwrap().to_string().contains("not_accepted_yet"));

    post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{cid}/accept"),
        json!({}),
    )
    .await;
    let doctor = WsSession::join(&ws_url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    let worker = WsSession::join(&ws_url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    assert_eq!(
        worker.joined["state"], "in_progress",
        "both sides present: the consultation is in progress"
    );
    // Media tracks are labelled with the publisher's participant id.
    media_flows(&doctor, &worker.participant_id, 660.0, 10, Duration::from_secs(5)).await;
    media_flows(&worker, &doctor.participant_id, 440.0, 10, Duration::from_secs(5)).await;
    let state = get(&c, &server, &p.worker, &format!("/api/consultations/{cid}")).await;
    assert_eq!(state["state"], "in_progress");

    // Mute and chat reach the other side.
    worker.send(json!({"type": "media", "audio": true, "video": false}));
    worker.send(json!({"type": "chat", "text": "Bác sĩ nghe rõ không?"}));
    doctor
        .wait_for("participant_media", Duration::from_secs(3))
        .await
        .unwrap();
    let chat = doctor.wait_for("chat", Duration::from_secs(3)).await.unwrap();
    assert_eq!(chat["text"], "Bác sĩ nghe rõ không?");

    // Let a stats interval pass, then drop the health worker's socket.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let pid = worker.participant_id.clone();
    worker.drop_socket();
    doctor
        .wait_for("participant_reconnecting", Duration::from_secs(5))
        .await
        .unwrap();
    let frames_before = doctor
        .participant
        .report()
        .video_from(&pid)
        .unwrap()
        .frames_complete;
    let worker = worker.resume().await.unwrap();
    assert_eq!(worker.participant_id, pid, "the same participant resumes");
    assert_eq!(
        worker.joined["participants"].as_array().unwrap().len(),
        2,
        "no ghost duplicate: {}",
        worker.joined
    );
    doctor
        .wait_for("participant_reconnected", Duration::from_secs(5))
        .await
        .unwrap();
    media_flows(&doctor, &pid, 660.0, frames_before + 20, Duration::from_secs(8)).await;

    // The doctor ends it.
    doctor.send(json!({"type": "end"}));
    doctor.wait_for("ended", Duration::from_secs(5)).await.unwrap();
    let st = worker
        .wait_for("consultation_state", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(st["state"], "completed");

    // The session log holds the whole timeline.
    let session = get(&c, &server, &p.admin, &format!("/api/sessions/{cid}")).await;
    let kinds: Vec<String> = session["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("joined"), 2, "one join per person: {kinds:?}");
    assert_eq!(count("reconnecting"), 1, "{kinds:?}");
    assert_eq!(count("reconnected"), 1, "{kinds:?}");
    assert!(count("stats") >= 2, "stats samples every 5 s: {kinds:?}");
    assert!(
        count("ice_state") >= 2 && count("chat") == 1 && count("media") == 1,
        "{kinds:?}"
    );
    let states: Vec<_> = session["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "state_changed")
        .map(|e| e["data"]["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["requested", "in_progress", "completed"]);
    let q = &session["quality"];
    assert!(
        q["samples"].as_u64().unwrap() >= 2 && q["duration_secs"].as_f64().unwrap() > 5.0,
        "{q}"
    );
    assert!(
        q["avg_rtt_ms"].is_number() || q["avg_loss_pct"].is_number(),
        "{q}"
    );
    assert_eq!(q["reconnections"], 1);
    let text = session.to_string();
    assert!(
        !text.contains("Lò Thị") && !text.contains("nghe rõ"),
        "no personal data in the session log"
    );
    let logs = server.output.lock().unwrap().clone();
    assert!(!logs.contains("Lò Thị") && !logs.contains("Khó thở") && !logs.contains("nghe rõ"));
}
