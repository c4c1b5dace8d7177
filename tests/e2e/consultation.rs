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
    consent(&c, &server, &p.worker, patient["id"].as_str().unwrap()).await;
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
    // A full-resolution still goes over HTTPS and the doctor is told at once.
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpeg.extend(std::iter::repeat_n(0x5A, 500_000));
    let r = c
        .post(server.url(&format!("/api/consultations/{cid}/photos")))
        .bearer_auth(&p.worker)
        .header("content-type", "image/jpeg")
        .body(jpeg.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let shared = doctor
        .wait_for("photo_shared", Duration::from_secs(2))
        .await
        .unwrap();
    let img = c
        .get(server.url(&format!("/api/photos/{}", shared["photo_id"].as_str().unwrap())))
        .bearer_auth(&p.doctor)
        .send()
        .await
        .unwrap();
    assert_eq!(img.bytes().await.unwrap().as_ref(), jpeg.as_slice());
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
    // The summary counts what the timeline shows: one drop, one return.
    assert_eq!(
        (q["disconnections"].as_u64(), q["reconnections"].as_u64()),
        (Some(1), Some(1)),
        "{q}"
    );
    // Each sample says what reached the participant and what it sent, so that
    // a participant who got nothing while the other sent shows as such.
    let samples: Vec<&Value> = session["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "stats")
        .collect();
    for key in [
        "received_audio_packets",
        "received_video_packets",
        "sent_audio_packets",
        "sent_video_packets",
    ] {
        assert!(
            samples.iter().all(|e| e["data"][key].is_u64()),
            "{key} in every sample"
        );
        assert!(
            samples.iter().any(|e| e["data"][key].as_u64() > Some(0)),
            "{key} above 0 in some sample"
        );
    }
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

/// A second hospital and station with their own staff.
async fn neighbours(c: &reqwest::Client, s: &Server, admin: &str) -> (String, String) {
    let h = post(c, s, admin, "/api/facilities", json!({"code": "H2", "name": "TTYT huyện khác", "kind": "district_hospital", "province": "Điện Biên"})).await;
    let st = post(c, s, admin, "/api/facilities", json!({"code": "S2", "name": "Trạm khác", "kind": "commune_station", "referral_hospital_id": h["id"], "province": "Điện Biên"})).await;
    post(c, s, admin, "/api/users", json!({"username": "bacsi2", "display_name": "Bác sĩ 2", "password": PASSWORD, "role": "doctor", "facility_id": h["id"]})).await;
    post(c, s, admin, "/api/users", json!({"username": "yta2", "display_name": "Y tá 2", "password": PASSWORD, "role": "health_worker", "facility_id": st["id"]})).await;
    (
        login(c, s, "bacsi2", PASSWORD).await,
        login(c, s, "yta2", PASSWORD).await,
    )
}

async fn upgrade_status(ws_url: &str, token: &str, cid: &str) -> Option<u16> {
    let mut req = format!("{ws_url}?consultation_id={cid}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Some(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_are_refused_before_the_upgrade() {
    let dir = temp_dir("outsiders");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let (other_doctor, other_worker) = neighbours(&c, &server, &p.admin).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let ws_url = server.url("/api/ws").replace("http://", "ws://");

    assert_eq!(
        upgrade_status(&ws_url, &other_doctor, &cid).await,
        Some(403),
        "a doctor of another hospital"
    );
    assert_eq!(
        upgrade_status(&ws_url, &other_worker, &cid).await,
        Some(403),
        "a health worker of another station"
    );
    assert_eq!(
        upgrade_status(&ws_url, &p.admin, &cid).await,
        Some(403),
        "an admin"
    );
    // An expired token, signed with the server's own key.
    let key = std::fs::read(dir.join("jwt.key")).unwrap();
    let me = get(&c, &server, &p.worker, "/api/auth/me").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = json!({"sub": me["id"], "sid": "00000000-0000-4000-8000-000000000000", "role": "health_worker", "iat": now - 7200, "exp": now - 3600});
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .unwrap();
    assert_eq!(
        upgrade_status(&ws_url, &expired, &cid).await,
        Some(401),
        "an expired token"
    );
    assert_eq!(
        upgrade_status(&ws_url, "garbage", &cid).await,
        Some(401),
        "a forged token"
    );
    // The participants themselves get in.
    assert_eq!(upgrade_status(&ws_url, &p.worker, &cid).await, None);
    assert_eq!(upgrade_status(&ws_url, &p.doctor, &cid).await, None);
    // And the refusals are in the audit trail.
    let audit = get(&c, &server, &p.admin, "/api/audit?action=call.join").await;
    assert_eq!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["outcome"] == "denied")
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_clients_do_not_disturb_a_running_consultation() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = temp_dir("abuse");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let (other_doctor, _) = neighbours(&c, &server, &p.admin).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let ws_url = server.url("/api/ws").replace("http://", "ws://");
    let doctor = WsSession::join(&ws_url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    let worker = WsSession::join(&ws_url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    media_flows(&doctor, &worker.participant_id, 660.0, 10, Duration::from_secs(5)).await;
    let before = doctor
        .participant
        .report()
        .video_from(&worker.participant_id)
        .unwrap()
        .frames_complete;

    let open = |token: String| {
        let url = ws_url.clone();
        async move {
            let mut req = url.as_str().into_client_request().unwrap();
            req.headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            tokio_tungstenite::connect_async(req).await.unwrap().0
        }
    };
    // Garbage, a hostile SDP, a join of someone else's consultation.
    let mut bad = open(other_doctor.clone()).await;
    for m in [
        "{{{{".to_owned(),
        json!({"type": "join", "consultation_id": cid, "sdp": "v=0\r\nthis is not sdp"}).to_string(),
        json!({"type": "join", "consultation_id": "not-an-id", "sdp": ""}).to_string(),
        json!({"type": "ice", "candidate": {"candidate": "candidate:evil 1 udp 1 999.1.1.1 1 typ host"}})
            .to_string(),
        json!({"type": "end"}).to_string(),
    ] {
        bad.send(Message::Text(m.into())).await.unwrap();
    }
    let mut codes = Vec::new();
    while codes.len() < 5 {
        match tokio::time::timeout(Duration::from_secs(5), bad.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "error" {
                    codes.push(v["code"].as_str().unwrap().to_owned());
                }
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("bad client's socket ended early: {other:?}"),
        }
    }
    assert_eq!(
        codes,
        [
            "bad_message",
            "not_a_participant",
            "malformed_id",
            "not_in_call",
            "not_in_call"
        ]
    );
    // A hostile SDP from a real participant's second page.
    let mut second = open(p.worker.clone()).await;
    second.send(Message::Text(json!({"type": "join", "consultation_id": cid, "sdp": "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"}).to_string().into())).await.unwrap();
    // An oversized frame and a flood.
    let mut big = open(p.worker.clone()).await;
    let _ = big.send(Message::Text("x".repeat(100 * 1024).into())).await;
    let mut flood = open(p.worker.clone()).await;
    for _ in 0..300 {
        if flood
            .send(Message::Text("{\"type\":\"ping\"}".into()))
            .await
            .is_err()
        {
            break;
        }
    }
    // Garbage datagrams at the media port.
    let media = doctor.joined["sdp"].as_str().unwrap().lines().find_map(|l| {
        let l = l.trim();
        l.starts_with("a=candidate:").then(|| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{}:{}", f[4], f[5])
        })
    });
    let addr = media.expect("the answer carries the media port's host candidate");
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..500u32 {
        let junk: Vec<u8> = (0..(i % 1200 + 1))
            .map(|j| (i.wrapping_mul(31) ^ j) as u8)
            .collect();
        udp.send_to(&junk, &addr).unwrap();
    }
    // The consultation went on.
    media_flows(
        &doctor,
        &worker.participant_id,
        660.0,
        before + 50,
        Duration::from_secs(8),
    )
    .await;
    media_flows(&worker, &doctor.participant_id, 440.0, 50, Duration::from_secs(8)).await;
    let state = get(&c, &server, &p.worker, &format!("/api/consultations/{cid}")).await;
    assert_eq!(state["state"], "in_progress");
    assert!(
        server
            .output
            .lock()
            .unwrap()
            .lines()
            .all(|l| !l.contains("panicked")),
        "no panic in the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_live_when_the_server_dies_is_interrupted_after_restart() {
    let dir = temp_dir("restart");
    let db = database_url("sqlite", &dir).await;
    let mut server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let ws_url = server.url("/api/ws").replace("http://", "ws://");
    let doctor = WsSession::join(&ws_url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    let worker = WsSession::join(&ws_url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    assert_eq!(worker.joined["state"], "in_progress");
    // A bad candidate inside the call is an error event in its log.
    worker.send(json!({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 2130706431 192.0.2.7 5000 typ nonsense"}}));
    let refused = worker.wait_for("error", Duration::from_secs(5)).await.unwrap();
    // In fixed words: the parser's message would quote the client's text back.
    assert_eq!(refused["code"], "bad_candidate");
    assert!(!refused.to_string().contains("nonsense"), "{refused}");
    server.kill();
    drop((doctor, worker));
    let server = Server::start(&dir, &db);
    let admin = login(&c, &server, "admin", ADMIN_PASSWORD).await;
    let session = get(&c, &server, &admin, &format!("/api/sessions/{cid}")).await;
    assert_eq!(session["state"], "interrupted");
    let events = session["events"].as_array().unwrap();
    assert_eq!(events.last().unwrap()["data"]["to"], "interrupted");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "error" && e["data"]["code"] == "bad_candidate"),
        "{events:?}"
    );
    // Its participants can rejoin: the consultation goes back in progress.
    let worker_token = login(&c, &server, "yta", PASSWORD).await;
    let doctor_token = login(&c, &server, "bacsi", PASSWORD).await;
    let ws_url = server.url("/api/ws").replace("http://", "ws://");
    let _d = WsSession::join(
        &ws_url,
        &doctor_token,
        &cid,
        ParticipantConfig::new("doctor", 440.0),
    )
    .await
    .unwrap();
    let w = WsSession::join(
        &ws_url,
        &worker_token,
        &cid,
        ParticipantConfig::new("station", 660.0),
    )
    .await
    .unwrap();
    assert_eq!(w.joined["state"], "in_progress");
}
