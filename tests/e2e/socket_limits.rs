//! What one user can make the server spend through sockets, against the real
//! binary: at most 8 sockets open at once per user (the 9th is refused with
//! 429 `too_many_sockets`, and a closed one frees its place), and a socket
//! that keeps sending bad messages writes at most 10 error events a minute to
//! the consultation's session log, the rest counted in one event.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(server: &Server, token: &str, query: &str) -> Result<Socket, u16> {
    let mut req = format!("{}{query}", server.url("/api/ws").replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("socket: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_holds_a_few_sockets_and_cannot_flood_the_session_log() {
    let dir = temp_dir("socket-limits");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let cid = accepted_consultation(&c, &server, &p).await;

    let mut sockets = Vec::new();
    for i in 0..8 {
        sockets.push(
            open(&server, &p.worker, "")
                .await
                .unwrap_or_else(|s| panic!("socket {i}: {s}")),
        );
    }
    assert_eq!(
        open(&server, &p.worker, "").await.err(),
        Some(429),
        "a 9th socket is refused"
    );
    assert!(
        open(&server, &p.doctor, "").await.is_ok(),
        "another user is not affected"
    );
    sockets.pop().unwrap().close(None).await.unwrap();
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(s) = open(&server, &p.worker, "").await {
            reopened = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a closed socket gives its place back");
    drop(sockets);
    drop(reopened);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Bad messages on a socket opened for the consultation: each gets its
    // error reply, but the session log keeps 10 and a count of the rest.
    let mut s = open(&server, &p.worker, &format!("?consultation_id={cid}"))
        .await
        .unwrap();
    let mut errors = 0;
    for _burst in 0..3 {
        for _ in 0..45 {
            s.send(Message::Text(r#"{"type":"answer","sdp":"v=0"}"#.into()))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    s.close(None).await.unwrap();
    while let Some(Ok(m)) = s.next().await {
        if let Message::Text(t) = m {
            if t.contains(r#""type":"error""#) {
                errors += 1;
            }
        }
    }
    assert_eq!(errors, 135, "every bad message is answered");
    let mut events = Vec::new();
    for _ in 0..50 {
        let session = get(&c, &server, &p.admin, &format!("/api/sessions/{cid}")).await;
        events = session["events"].as_array().unwrap().clone();
        if events.iter().any(|e| e["kind"] == "errors_suppressed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = events.iter().filter(|e| e["kind"] == "error").count();
    let suppressed: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "errors_suppressed")
        .collect();
    println!("135 bad messages: {logged} error events, suppressed {suppressed:?}");
    assert_eq!(logged, 10, "at most 10 error events a minute from one socket");
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["data"]["count"], 125);
}
