//! The WebSocket: login checked before the upgrade, live updates pushed to
//! the right pages within a second, bad clients answered or cut off while
//! others go on. Runs over real TCP on both databases.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use telehealth_records::Store;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn serve(w: &World) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = w.app.clone();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    addr
}

async fn connect(addr: SocketAddr, token: Option<&str>, origin: Option<&str>) -> Result<Socket, u16> {
    let mut req = format!("ws://{addr}/api/ws").into_client_request().unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((s, _)) => Ok(s),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// The next JSON message, skipping pings; None on close or timeout.
async fn next(s: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

async fn hello(s: &mut Socket) -> Value {
    let h = next(s, Duration::from_secs(5)).await.expect("hello");
    assert_eq!(
        (h["type"].as_str(), h["protocol"].as_u64()),
        (Some("hello"), Some(1))
    );
    h
}

async fn updates_reach_the_right_pages_within_a_second(store: Store) {
    let w = world(store).await;
    let addr = serve(&w).await;
    let mut hw1 = connect(addr, Some(&w.t_hw1), None).await.unwrap();
    let mut doc1 = connect(addr, Some(&w.t_doc1), None).await.unwrap();
    let mut doc2 = connect(addr, Some(&w.t_doc2), None).await.unwrap();
    let mut admin = connect(addr, Some(&w.t_admin), None).await.unwrap();
    for s in [&mut hw1, &mut doc1, &mut doc2, &mut admin] {
        hello(s).await;
    }
    let r = call(
        &w.app,
        Method::POST,
        "/api/patients",
        Some(&w.t_hw1),
        Some(patient_json("Vàng Thị Dợ")),
    )
    .await;
    let pid = r.body["id"].as_str().unwrap().to_owned();
    w.consent(&pid).await;
    let r = call(
        &w.app,
        Method::POST,
        "/api/consultations",
        Some(&w.t_hw1),
        Some(json!({"patient_id": pid, "kind": "urgent", "reason": "Sốt cao co giật"})),
    )
    .await;
    let cid = r.body["id"].as_str().unwrap().to_owned();

    let m = next(&mut doc1, Duration::from_secs(1))
        .await
        .expect("doctor of the hospital is told within a second");
    assert_eq!(
        (
            m["type"].as_str(),
            m["consultation_id"].as_str(),
            m["state"].as_str()
        ),
        (
            Some("consultation_changed"),
            Some(cid.as_str()),
            Some("requested")
        )
    );
    let text = m.to_string();
    assert!(
        !text.contains("Vàng") && !text.contains("co giật"),
        "no personal data in pushed messages: {text}"
    );
    let m = next(&mut hw1, Duration::from_secs(1))
        .await
        .expect("the station is told too");
    assert_eq!(m["consultation_id"].as_str(), Some(cid.as_str()));
    assert!(
        next(&mut doc2, Duration::from_millis(400)).await.is_none(),
        "another hospital hears nothing"
    );
    assert!(
        next(&mut admin, Duration::from_millis(100)).await.is_none(),
        "admins get no clinical updates"
    );

    call(
        &w.app,
        Method::POST,
        &format!("/api/consultations/{cid}/accept"),
        Some(&w.t_doc1),
        None,
    )
    .await;
    let m = next(&mut hw1, Duration::from_secs(1))
        .await
        .expect("the station sees the acceptance");
    assert_eq!(m["doctor_id"].as_str(), Some(w.doc1.id.to_string().as_str()));
}
on_both!(updates_reach_the_right_pages_within_a_second);

async fn the_login_is_checked_before_the_upgrade(store: Store) {
    let w = world(store).await;
    let addr = serve(&w).await;
    assert_eq!(connect(addr, None, None).await.err(), Some(401));
    assert_eq!(
        connect(addr, Some("forged.token.value"), None).await.err(),
        Some(401)
    );
    // A page from another site cannot use the user's cookie to open a socket.
    assert_eq!(
        connect(addr, Some(&w.t_hw1), Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    let same = format!("http://{addr}");
    let mut ok = connect(addr, Some(&w.t_hw1), Some(&same)).await.unwrap();
    hello(&mut ok).await;
    // A logged-out session cannot open one either.
    assert_eq!(
        call(&w.app, Method::POST, "/api/auth/logout", Some(&w.t_hw2), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(connect(addr, Some(&w.t_hw2), None).await.err(), Some(401));
}
on_both!(the_login_is_checked_before_the_upgrade);

async fn bad_clients_are_answered_or_cut_off_while_others_go_on(store: Store) {
    let w = world(store).await;
    let addr = serve(&w).await;
    let mut good = connect(addr, Some(&w.t_doc1), None).await.unwrap();
    hello(&mut good).await;

    // Garbage gets an error and the socket stays usable.
    let mut s = connect(addr, Some(&w.t_hw1), None).await.unwrap();
    hello(&mut s).await;
    for garbage in [
        "not json",
        "{\"type\":\"fly\"}",
        "{\"type\":\"ping\",\"x\":1}",
        "[]",
    ] {
        s.send(Message::Text(garbage.into())).await.unwrap();
        let m = next(&mut s, Duration::from_secs(2)).await.unwrap();
        assert_eq!(
            (m["type"].as_str(), m["code"].as_str()),
            (Some("error"), Some("bad_message")),
            "{garbage}"
        );
    }
    s.send(Message::Binary(vec![0, 1, 2].into())).await.unwrap();
    assert_eq!(
        next(&mut s, Duration::from_secs(2)).await.unwrap()["code"],
        "binary_not_supported"
    );
    s.send(Message::Text("{\"type\":\"ping\"}".into())).await.unwrap();
    assert_eq!(
        next(&mut s, Duration::from_secs(2)).await.unwrap()["type"],
        "pong"
    );

    // An oversized frame ends the connection.
    let mut big = connect(addr, Some(&w.t_hw1), None).await.unwrap();
    hello(&mut big).await;
    let _ = big.send(Message::Text("x".repeat(200 * 1024).into())).await;
    assert!(
        next(&mut big, Duration::from_secs(3)).await.is_none(),
        "oversized frame closes the socket"
    );

    // A flood is cut off with a reason.
    let mut flood = connect(addr, Some(&w.t_hw2), None).await.unwrap();
    hello(&mut flood).await;
    for _ in 0..200 {
        if flood
            .send(Message::Text("{\"type\":\"ping\"}".into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut close_reason = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, flood.next()).await {
        match msg {
            Ok(Message::Close(Some(frame))) => {
                close_reason = Some((u16::from(frame.code), frame.reason.to_string()));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(close_reason, Some((1008, "rate_limited".to_owned())));

    // The well-behaved page never noticed.
    good.send(Message::Text("{\"type\":\"ping\"}".into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut good, Duration::from_secs(2)).await.unwrap()["type"],
        "pong"
    );
}
on_both!(bad_clients_are_answered_or_cut_off_while_others_go_on);

async fn booking_over_http_shows_times_in_vietnam(store: Store) {
    let w = world(store).await;
    let hours = json!({"hours": (1..=7).map(|d| json!({"weekday": d, "start_minute": 0, "end_minute": 1440})).collect::<Vec<_>>()});
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/doctors/{}/hours", w.doc1.id),
        Some(&w.t_doc1),
        Some(hours),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .with_timezone(&telehealth_records::local_offset())
        .date_naive();
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/facilities/{}/slots?date={tomorrow}", w.h1.id),
        Some(&w.t_hw1),
        None,
    )
    .await;
    let slots = r.body.as_array().unwrap();
    assert_eq!(slots.len(), 72, "a whole day of 20-minute slots");
    assert!(slots[0]["start_local"]
        .as_str()
        .unwrap()
        .ends_with("T00:00:00+07:00"));
    let start = slots[0]["start"].as_str().unwrap().to_owned();
    let r = call(
        &w.app,
        Method::POST,
        "/api/patients",
        Some(&w.t_hw1),
        Some(patient_json("A")),
    )
    .await;
    let pid = r.body["id"].as_str().unwrap().to_owned();
    w.consent(&pid).await;
    let book =
        json!({"patient_id": pid, "kind": "scheduled", "reason": "Tái khám", "scheduled_start": start});
    let r = call(
        &w.app,
        Method::POST,
        "/api/consultations",
        Some(&w.t_hw1),
        Some(book.clone()),
    )
    .await;
    assert_eq!(
        (r.status, r.body["doctor_id"].as_str()),
        (StatusCode::CREATED, Some(w.doc1.id.to_string().as_str()))
    );
    let r = call(
        &w.app,
        Method::POST,
        "/api/consultations",
        Some(&w.t_hw1),
        Some(book),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "slot_unavailable"));
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/facilities/{}/slots?date=tomorrow", w.h1.id),
        Some(&w.t_hw1),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("date"))
    );
}
on_both!(booking_over_http_shows_times_in_vietnam);

/// The next message of `kind` (others skipped), within `within`.
async fn next_of(s: &mut Socket, kind: &str, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = next(s, left).await?;
        if m["type"] == kind {
            return Some(m);
        }
    }
}

/// A real offer (made by the synthetic participant's WebRTC stack) for a
/// page that never answers connectivity checks.
const OFFER: &str = include_str!("fixtures/offer.sdp");

/// Issue 15, item 12: the SFU dropping a participant (its connection
/// failed: this test server gives up after 4 s, as `SfuConfig::loopback`
/// says) must end the socket's seat too. Before, the socket kept it: a
/// rejoin was refused `already_in_call`, an ICE candidate got a mislabelled
/// `bad_sdp`, chat was dropped without a word.
async fn a_socket_whose_participant_the_sfu_dropped_can_join_again(store: Store) {
    let w = world(store).await;
    let addr = serve(&w).await;
    let p = call(
        &w.app,
        Method::POST,
        "/api/patients",
        Some(&w.t_hw1),
        Some(patient_json("Giàng Thị Sính")),
    )
    .await;
    w.consent(p.body["id"].as_str().unwrap()).await;
    let c = call(
        &w.app,
        Method::POST,
        "/api/consultations",
        Some(&w.t_hw1),
        Some(json!({"patient_id": p.body["id"], "kind": "urgent", "reason": "Khó thở"})),
    )
    .await;
    let cid = c.body["id"].as_str().unwrap().to_owned();
    let r = call(
        &w.app,
        Method::POST,
        &format!("/api/consultations/{cid}/accept"),
        Some(&w.t_doc1),
        None,
    )
    .await;
    assert!(r.status.is_success(), "{}", r.body);

    let mut s = connect(addr, Some(&w.t_hw1), None).await.unwrap();
    hello(&mut s).await;
    let join = json!({"type": "join", "consultation_id": cid, "sdp": OFFER}).to_string();
    s.send(Message::Text(join.clone().into())).await.unwrap();
    let joined = next_of(&mut s, "joined", Duration::from_secs(10))
        .await
        .expect("joined");
    let pid = joined["participant_id"].as_str().unwrap().to_owned();
    // A path where nobody answers: the connection fails.
    let dead = json!({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}});
    s.send(Message::Text(dead.to_string().into())).await.unwrap();
    let left = next_of(&mut s, "left", Duration::from_secs(30))
        .await
        .expect("the page is told its participant left");
    assert_eq!(
        (left["participant_id"].as_str(), left["reason"].as_str()),
        (Some(pid.as_str()), Some("connection_failed"))
    );

    // No seat any more: said plainly, for a candidate and for chat alike.
    s.send(Message::Text(dead.to_string().into())).await.unwrap();
    let e = next_of(&mut s, "error", Duration::from_secs(5))
        .await
        .expect("an error");
    assert_eq!(e["code"], "not_in_call", "{e}");
    s.send(Message::Text(
        json!({"type": "chat", "text": "còn ai không?"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let e = next_of(&mut s, "error", Duration::from_secs(5))
        .await
        .expect("an error");
    assert_eq!(e["code"], "not_in_call", "{e}");

    // And the same socket joins again, as the page does when it retries.
    s.send(Message::Text(join.into())).await.unwrap();
    let again = next_of(&mut s, "joined", Duration::from_secs(10))
        .await
        .expect("joined again");
    assert!(
        again["sdp"].as_str().is_some_and(|a| a.contains("a=ice-ufrag")),
        "{again}"
    );
}
on_both!(a_socket_whose_participant_the_sfu_dropped_can_join_again);
