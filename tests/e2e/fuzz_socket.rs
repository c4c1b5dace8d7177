//! A fuzz target for the call socket, against the real binary: a health
//! worker's or a doctor's socket, opened for a real accepted consultation,
//! sends a run of messages of every type the protocol has (join with a
//! real offer or an edited one, resume, offer, answer, ICE candidates,
//! media, chat, leave, end, ping) with fields of any value, unknown types,
//! wrong shapes and text that is not JSON. Whatever it sends, the socket
//! answers a ping afterwards or has been closed on purpose (a flood, an
//! oversized frame), and the server still takes a new socket and a new
//! call. Under nextest this runs a few seconds of random inputs; see
//! docs/FUZZING.md for longer runs.

mod common;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use telehealth_tests::{leaves_host, ParticipantConfig, SyntheticParticipant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(server: &Server, token: &str, cid: &str) -> Result<Socket, u16> {
    let mut req = server
        .url(&format!("/api/ws?consultation_id={cid}"))
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((s, _)) => Ok(s),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("a socket opens: {e}"),
    }
}

/// Sends a ping and waits for the pong, skipping everything else; false if
/// the socket was closed instead.
async fn answers_ping(s: &mut Socket) -> bool {
    if s.send(Message::Text(json!({"type": "ping"}).to_string().into()))
        .await
        .is_err()
    {
        return false;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("the server sends JSON");
                if v["type"] == "pong" {
                    return true;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return false,
            Err(_) => panic!("the socket neither answered a ping nor closed within 10 s"),
        }
    }
}

/// One message: `kind` picks its type, the rest fills its fields.
type Msg = (u8, String, String, Option<bool>, u8);

fn message((kind, a, b, flag, n): &Msg, cid: &str, offer: &str) -> Message {
    let text = match kind % 14 {
        0 => json!({"type": "ping"}),
        1 => json!({"type": "join", "consultation_id": cid, "sdp": offer}),
        2 => {
            // The real offer with one line replaced.
            let mut lines: Vec<&str> = offer.lines().collect();
            let i = usize::from(*n) % lines.len().max(1);
            if !lines.is_empty() {
                lines[i] = a;
            }
            json!({"type": "join", "consultation_id": cid, "sdp": lines.join("\r\n")})
        }
        3 => json!({"type": "join", "consultation_id": a, "sdp": b, "resume": flag.map(|_| a.clone())}),
        4 => json!({"type": "offer", "sdp": a}),
        5 => json!({"type": "answer", "sdp": a}),
        6 => {
            json!({"type": "ice", "candidate": {"candidate": format!("candidate:{a}"), "sdpMid": b, "sdpMLineIndex": n}})
        }
        7 => {
            json!({"type": "media", "audio": flag.unwrap_or(true), "video": n % 2 == 0, "receive_video": flag})
        }
        8 => json!({"type": "chat", "text": a}),
        9 => json!({"type": "leave"}),
        10 => json!({"type": "end"}),
        11 => json!({"type": a, "consultation_id": b}),
        12 => json!([a, b, n]),
        _ => return Message::Text(a.clone().into()),
    };
    Message::Text(text.to_string().into())
}

#[test]
fn call_socket_messages() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = temp_dir("fuzz-socket");
    let (server, p, cid, offer) = rt.block_on(async {
        let db = database_url("sqlite", &dir).await;
        let server = Server::start(&dir, &db);
        let c = client();
        let p = province(&c, &server).await;
        let cid = accepted_consultation(&c, &server, &p).await;
        let station = SyntheticParticipant::new(ParticipantConfig::new("station", 440.0))
            .await
            .expect("participant");
        let offer = station.create_offer().await.expect("offer");
        (server, p, cid, offer)
    });
    let cid = std::sync::Mutex::new(cid);
    let state = AssertUnwindSafe((&rt, &server, &p, &cid, &offer));
    bolero::check!()
        .with_type::<(bool, Vec<Msg>)>()
        .with_test_time(Duration::from_secs(5))
        .for_each(move |(doctor, msgs)| {
            let (rt, server, p, cid, offer) = *state;
            if msgs
                .iter()
                .any(|(_, a, b, _, _)| leaves_host(a) || leaves_host(b))
            {
                return;
            }
            rt.block_on(async {
                let token = if *doctor { &p.doctor } else { &p.worker };
                let current = cid.lock().unwrap().clone();
                // A user holds at most 8 sockets: the server may not have
                // finished closing the last inputs' yet.
                let mut opened = open(server, token, &current).await;
                for _ in 0..50 {
                    if opened.as_ref().err() != Some(&429) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    opened = open(server, token, &current).await;
                }
                let (mut s, cid) = match opened {
                    Ok(s) => (s, current),
                    // The fuzzer ended that consultation (`end`): a new one.
                    Err(409) => {
                        let fresh = accepted_consultation(&client(), server, p).await;
                        *cid.lock().unwrap() = fresh.clone();
                        (open(server, token, &fresh).await.expect("a socket opens"), fresh)
                    }
                    Err(status) => panic!("a socket for the consultation: {status}"),
                };
                let cid = cid.as_str();
                for m in msgs.iter().take(30) {
                    if s.send(message(m, cid, offer)).await.is_err() {
                        break;
                    }
                }
                if !answers_ping(&mut s).await {
                    // Closed on purpose (a flood, an oversized frame): a
                    // new socket must work.
                    let Ok(mut again) = open(server, token, cid).await else {
                        return;
                    };
                    assert!(
                        answers_ping(&mut again).await,
                        "a new socket answers after one was closed"
                    );
                }
                let _ = s.close(None).await;
            });
        });
    // And after all of it, a real call still connects for both.
    rt.block_on(async {
        let c = client();
        let r = c.get(server.url("/healthz")).send().await.expect("healthz");
        assert!(r.status().is_success(), "healthz {}", r.status());
        let cid2 = accepted_consultation(&c, &server, &p).await;
        let mut s = open(&server, &p.worker, &cid2).await.expect("a socket opens");
        assert!(answers_ping(&mut s).await);
    });
}
