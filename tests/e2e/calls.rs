//! The call's negotiation and seats through the real binary, with real
//! WebRTC peers: an offer whose answer is lost is sent again and the media
//! arrives; an ICE restart that crosses the server's offer (glare) ends with
//! both sides stable and media flowing; a page that comes back with a fresh
//! connection takes its seat back (no ghost), and the page it replaced is
//! told; a seat whose page stays away is removed when its hold runs out.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use telehealth_tests::{ParticipantConfig, WsSession};

async fn session_kinds(
    c: &reqwest::Client,
    server: &Server,
    p: &Province,
    cid: &str,
) -> Vec<serde_json::Value> {
    let session = get(c, server, &p.admin, &format!("/api/sessions/{cid}")).await;
    session["events"].as_array().unwrap().clone()
}

/// The failure users saw: the doctor joins second, and its page never
/// answers the server's offer for the station's tracks (it was busy with its
/// own join and broke). A socket does not lose messages, so the server does
/// not repeat itself on it: after the answer timeout it asks the page to
/// rejoin, once; the page's fresh connection takes its seat back and the
/// media arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_never_answers_is_asked_to_rejoin_and_its_rejoin_brings_the_media() {
    let dir = temp_dir("rejoin");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let url = server.ws_url();
    let station = WsSession::join(&url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    let doctor = WsSession::join(&url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    doctor.hold_offers(true);
    let rejoin = doctor.wait_for("rejoin", Duration::from_secs(15)).await.unwrap();
    assert_eq!(rejoin["reason"], "offer_unanswered");
    assert_eq!(doctor.offers().len(), 1, "not repeated on the same socket");
    assert!(doctor
        .participant
        .report()
        .video_from(&station.participant_id)
        .is_none());
    let pid = doctor.participant_id.clone();
    let doctor = doctor
        .rejoin(ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    assert_eq!(doctor.participant_id, pid, "the same seat");
    media_flows(
        &doctor,
        &station.participant_id,
        660.0,
        20,
        Duration::from_secs(10),
    )
    .await;
    media_flows(&station, &pid, 440.0, 20, Duration::from_secs(10)).await;
    let events = session_kinds(&c, &server, &p, &cid).await;
    assert!(
        events.iter().any(|e| e["kind"] == "rejoin_requested"),
        "the request is in the session log: {events:?}"
    );
}

/// An offer lost with the socket that carried it: the page comes back on a
/// new socket with its connection (`resume`) and an ICE restart; the server
/// sends the same offer again on the new socket (which crosses the page's
/// restart: the page answers it and restarts again), and the media arrives.
/// Meanwhile the server noticed the doctor was missing media (session log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_lost_with_its_socket_is_sent_again_on_the_new_one() {
    let dir = temp_dir("resend");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let url = server.ws_url();
    let doctor = WsSession::join(&url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    doctor.hold_offers(true);
    let station = WsSession::join(&url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || !doctor.offers().is_empty()).await);
    let lost = doctor.offers()[0].clone();
    // The repair watchdog has 2 s to notice before the socket goes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    doctor.drop_socket();
    doctor
        .wait_for("participant_reconnecting", Duration::from_secs(5))
        .await
        .ok();
    let doctor = doctor.resume().await.unwrap();
    media_flows(
        &doctor,
        &station.participant_id,
        660.0,
        20,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        doctor.offers().first(),
        Some(&lost),
        "the very same offer, not a new one"
    );
    let events = session_kinds(&c, &server, &p, &cid).await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "media_repair"
                && e["data"]["participant_id"] == doctor.participant_id.as_str()),
        "a media_repair event for the doctor: {events:?}"
    );
    assert!(
        !doctor.messages().iter().any(|m| m["type"] == "error"),
        "{:?}",
        doctor.messages()
    );
}

/// Glare: the station restarts ICE while the server's offer (for the
/// doctor's tracks) waits for its answer. The server (impolite) ignores the
/// station's offer; the station (polite) answers the server's and offers
/// again; both end stable, with fresh ICE credentials and media both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_that_crosses_the_servers_offer_settles_with_media() {
    let dir = temp_dir("glare");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let url = server.ws_url();
    let station = WsSession::join(&url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    station.hold_offers(true);
    let doctor = WsSession::join(&url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || !station.offers().is_empty()).await);
    // The station's restart goes out while the server's offer is held.
    station.restart_ice();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !station.actions().is_empty(),
        "the restart offer went out: {:?}",
        station.actions()
    );
    station.hold_offers(false);
    media_flows(
        &station,
        &doctor.participant_id,
        440.0,
        20,
        Duration::from_secs(10),
    )
    .await;
    media_flows(
        &doctor,
        &station.participant_id,
        660.0,
        20,
        Duration::from_secs(10),
    )
    .await;
    // The restart happened after all: the station's offer was made again and answered.
    assert!(
        eventually(Duration::from_secs(5), || {
            let a = station.actions();
            a.iter().filter(|(_, w)| w == "ice_restart").count() >= 2
        })
        .await,
        "the polite station offered again after answering: {:?}",
        station.actions()
    );
    assert!(
        !station.participant.offer_outstanding().await,
        "the station ends stable"
    );
    let errors: Vec<_> = station
        .messages()
        .into_iter()
        .filter(|m| m["type"] == "error")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// A reload: the page comes back with a fresh connection and a plain `join`;
/// it gets the same participant back (the room keeps one per person), the
/// other side sees it reconnect, and media flows again. A second page of the
/// same user replaces the first, which is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_comes_back_with_a_fresh_connection_takes_its_seat_back() {
    let dir = temp_dir("seat");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let url = server.ws_url();
    let doctor = WsSession::join(&url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    let station = WsSession::join(&url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    let pid = station.participant_id.clone();
    media_flows(&doctor, &pid, 660.0, 10, Duration::from_secs(8)).await;

    // The reload: the old page vanishes, a new one joins with a new connection.
    let station = station
        .rejoin(ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    assert_eq!(station.participant_id, pid, "the same participant");
    assert_eq!(station.joined["resumed"], true);
    assert_eq!(
        station.joined["participants"].as_array().unwrap().len(),
        2,
        "no ghost: {}",
        station.joined
    );
    doctor
        .wait_for("participant_reconnected", Duration::from_secs(5))
        .await
        .unwrap();
    media_flows(
        &station,
        &doctor.participant_id,
        440.0,
        20,
        Duration::from_secs(10),
    )
    .await;
    let frames = doctor
        .participant
        .report()
        .tracks
        .iter()
        .filter(|t| !t.audio && t.stream_id == pid)
        .map(|t| t.frames_complete)
        .sum::<u64>();
    assert!(
        eventually(Duration::from_secs(10), || {
            doctor
                .participant
                .report()
                .tracks
                .iter()
                .filter(|t| !t.audio && t.stream_id == pid && !t.ended)
                .any(|t| t.frames_decoded > 10)
        })
        .await,
        "the doctor sees the station's new video (had {frames} frames before):\n{}",
        doctor.participant.report()
    );

    // Another page of the same user (a second tab) takes the seat: the first is told.
    let second = WsSession::join(&url, &p.worker, &cid, ParticipantConfig::new("station-2", 700.0))
        .await
        .unwrap();
    assert_eq!(second.participant_id, pid);
    let left = station.wait_for("left", Duration::from_secs(5)).await.unwrap();
    assert_eq!(left["reason"], "replaced");
    // The replaced page can no longer act for the seat.
    station.send(json!({"type": "chat", "text": "từ trang cũ"}));
    let refused = station.wait_for("error", Duration::from_secs(5)).await.unwrap();
    assert_eq!(refused["code"], "not_in_call");
    media_flows(&doctor, &pid, 700.0, 20, Duration::from_secs(10)).await;
}

/// A seat whose page stays away is held for `--seat-hold-secs`, then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_is_held_while_its_page_is_away_then_removed() {
    let dir = temp_dir("hold");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start_with(&dir, &db, &["--seat-hold-secs", "30"]);
    let c = client();
    let p = province(&c, &server).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let url = server.ws_url();
    let doctor = WsSession::join(&url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    let station = WsSession::join(&url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    let pid = station.participant_id.clone();
    media_flows(&doctor, &pid, 660.0, 10, Duration::from_secs(8)).await;
    station.drop_socket();
    let away = doctor
        .wait_for("participant_reconnecting", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(away["seat_hold_s"], 30);
    let dropped = std::time::Instant::now();
    // Still there after 20 s (a rural outage), and the media it sends still flows.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(
        !doctor.messages().iter().any(|m| m["type"] == "participant_left"),
        "removed too early"
    );
    let left = doctor
        .wait_for("participant_left", Duration::from_secs(20))
        .await
        .unwrap();
    let held = dropped.elapsed();
    assert_eq!(left["reason"], "seat_expired");
    assert!(
        held >= Duration::from_secs(29) && held <= Duration::from_secs(35),
        "held {held:?}"
    );
}
