//! TURN for real: Debian's coturn on loopback, configured from
//! `deploy/turnserver.conf` (REST-API shared secret), and the real binary
//! configured to hand it to call pages with time-limited credentials.
//!
//! The station's synthetic participant is forced to relay-only (as behind a
//! carrier NAT that lets nothing else through): its audio and video reach
//! the doctor, and the doctor's reach it, through coturn and the SFU, and
//! the pair ICE selected is a relay one. coturn accepts the handed-out
//! credential and refuses a forged one and an expired one. Neither the
//! secret nor a credential appears in the server's (debug-level) output.
//!
//! Needs `turnserver` (Debian's coturn; `tests/scripts/deps.sh` installs it).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::BytesMut;
use common::*;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::turn::client::{Client as TurnClient, ClientConfig, Event as TurnEvent};
use serde_json::{json, Value};
use telehealth_tests::{ParticipantConfig, WsSession};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use webrtc::peer_connection::RTCIceServer;

/// coturn on 127.0.0.1, killed when dropped.
struct Coturn {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl Coturn {
    fn start(dir: &std::path::Path, secret: &str) -> Coturn {
        // The checkout's own file (read at run time: a test binary may be
        // reused from a shared target directory by a clone elsewhere).
        let root =
            std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let conf = std::path::Path::new(&root).join("deploy/turnserver.conf");
        // A free port: bind, note it, let go (coturn binds it a moment later).
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = match Command::new("turnserver")
            .arg("-c")
            .arg(&conf)
            // Loopback only, plain UDP/TCP (no certificate here); the SFU is
            // a loopback peer, which production refuses.
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--no-tls", "--no-dtls", "--allow-loopback-peers"])
            // The deployed configuration relays to the media server only.
            .args(["--allowed-peer-ip", "127.0.0.1"])
            .arg(format!("--static-auth-secret={secret}"))
            .arg(format!("--pidfile={}", dir.join("turnserver.pid").display()))
            .arg(format!("--db={}", dir.join("turndb").display()))
            .args(["--log-file=stdout", "--simple-log", "--verbose"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                panic!("cannot start turnserver ({e}): install Debian's coturn (tests/scripts/deps.sh does)")
            }
        };
        let (output, ()) = capture_output(&mut child, "coturn", Duration::from_secs(20), |line| {
            line.contains("UDP listener opened on").then_some(())
        });
        Coturn {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            output,
        }
    }

    fn log(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The REST-scheme password, computed independently of the server's code.
fn rest_password(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Asks coturn for a relay allocation with these credentials, as a
/// browser's ICE agent does: the relayed address, or coturn's refusal.
async fn allocate(server: SocketAddr, username: &str, password: &str) -> Result<SocketAddr, String> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let mut client = TurnClient::new(
        ClientConfig {
            turn_serv_addr: server.to_string(),
            local_addr: local,
            transport_protocol: TransportProtocol::UDP,
            username: username.to_owned(),
            password: password.to_owned(),
            ..Default::default()
        },
        rtc::crypto::default_provider().unwrap(),
    )
    .unwrap();
    client.allocate(Instant::now()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(out) = client.poll_write() {
            sock.send_to(&out.message, out.transport.peer_addr).await.unwrap();
        }
        while let Some(event) = client.poll_event() {
            match event {
                TurnEvent::AllocateResponse(_, relayed) => return Ok(relayed),
                TurnEvent::AllocateError(_, e) => return Err(e.to_string()),
                TurnEvent::TransactionTimeout(_) => return Err("no answer".into()),
                _ => {}
            }
        }
        assert!(Instant::now() < deadline, "coturn did not answer the allocation");
        match tokio::time::timeout(Duration::from_millis(50), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => client
                .handle_read(TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr: local,
                        peer_addr: from,
                        transport_protocol: TransportProtocol::UDP,
                        ecn: None,
                    },
                    message: BytesMut::from(&buf[..n]),
                })
                .unwrap(),
            _ => client.handle_timeout(Instant::now()).unwrap(),
        }
    }
}

/// The first message of a socket (`hello`).
async fn hello(ws_url: &str, token: &str) -> Value {
    let mut req = ws_url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    match ws.next().await {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => serde_json::from_str(&t).unwrap(),
        other => panic!("no hello: {other:?}"),
    }
}

const TTL_SECS: u64 = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_station_reaches_the_doctor_through_coturn() {
    let dir = temp_dir("turn");
    let secret = format!("{:032x}", rand::random::<u128>());
    let coturn = Coturn::start(&dir, &secret);
    let turn_url = format!("turn:{}?transport=udp", coturn.addr);

    let db = database_url("sqlite", &dir).await;
    let ttl = TTL_SECS.to_string();
    let server = Server::start_with(
        &dir,
        &db,
        &[
            "--turn-url",
            &turn_url,
            "--turn-secret",
            &secret,
            "--turn-ttl",
            &ttl,
        ],
    );
    let c = client();
    let p = province(&c, &server).await;
    let ws_url = server.url("/api/ws").replace("http://", "ws://");
    let cid = accepted_consultation(&c, &server, &p).await;

    // A page that is not a call gets no TURN credential.
    let plain = hello(&ws_url, &p.worker).await;
    assert!(plain.get("ice_servers").is_none(), "{plain}");

    // The call page's hello carries this user's time-limited credential.
    let h = hello(&format!("{ws_url}?consultation_id={cid}"), &p.worker).await;
    let me = get(&c, &server, &p.worker, "/api/auth/me").await;
    let worker_id = me["id"].as_str().unwrap().to_owned();
    let servers = h["ice_servers"]
        .as_array()
        .unwrap_or_else(|| panic!("no ice_servers in {h}"));
    assert_eq!(servers.len(), 1, "{h}");
    let entry = &servers[0];
    assert_eq!(entry["urls"], json!([turn_url]));
    let username = entry["username"].as_str().unwrap().to_owned();
    let credential = entry["credential"].as_str().unwrap().to_owned();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, worker_id, "the username names the user");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry > now + TTL_SECS - 60 && expiry <= now + TTL_SECS + 1,
        "expires --turn-ttl after it was handed out: {expiry} vs now {now}"
    );
    assert_eq!(
        credential,
        rest_password(&secret, &username),
        "HMAC-SHA1 of the username"
    );

    // coturn takes it, and refuses a forged one and an expired one.
    let relayed = allocate(coturn.addr, &username, &credential).await;
    assert!(relayed.is_ok(), "handed-out credential refused: {relayed:?}");
    let forged = allocate(
        coturn.addr,
        &username,
        &rest_password("not-the-secret-at-all", &username),
    )
    .await;
    assert!(
        forged.is_err(),
        "a credential signed with another secret was accepted"
    );
    let expired_name = format!("{}:{worker_id}", now - 60);
    let expired = allocate(coturn.addr, &expired_name, &rest_password(&secret, &expired_name)).await;
    assert!(expired.is_err(), "an expired credential was accepted");

    // The doctor on the hospital network (host candidates); the station
    // through coturn only.
    let doctor = WsSession::join(&ws_url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    let ice = vec![RTCIceServer {
        urls: vec![turn_url.clone()],
        username: username.clone(),
        credential: credential.clone(),
    }];
    let worker = WsSession::join(
        &ws_url,
        &p.worker,
        &cid,
        ParticipantConfig::new("station", 660.0).relay_only(ice),
    )
    .await
    .unwrap();
    // `joined` carries a fresh credential for the same user too.
    assert_eq!(worker.joined["ice_servers"][0]["urls"], json!([turn_url]));
    assert!(worker.joined["ice_servers"][0]["username"]
        .as_str()
        .is_some_and(|u| u.ends_with(&format!(":{worker_id}"))));

    media_flows(
        &doctor,
        &worker.participant_id,
        660.0,
        20,
        Duration::from_secs(15),
    )
    .await;
    media_flows(
        &worker,
        &doctor.participant_id,
        440.0,
        20,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        worker
            .participant
            .selected_local_candidate_type()
            .await
            .as_deref(),
        Some("relay"),
        "the station's selected candidate pair goes through the relay"
    );

    // coturn saw this user's allocation and the permission for the SFU.
    let log = coturn.log();
    let user_lines: Vec<&str> = log.lines().filter(|l| l.contains(&username)).collect();
    assert!(
        user_lines
            .iter()
            .any(|l| l.contains("ALLOCATE processed, success")),
        "coturn log has no allocation for {username}:\n{log}"
    );
    assert!(
        user_lines
            .iter()
            .any(|l| l.contains("CREATE_PERMISSION processed, success")),
        "coturn log has no permission for {username}:\n{log}"
    );

    // Neither the secret nor a credential is ever logged by the server.
    let logs = server.output.lock().unwrap().clone();
    assert!(logs.contains("TURN credentials handed to call pages"), "{logs}");
    for leaked in [secret.as_str(), credential.as_str()] {
        assert!(
            !logs.contains(leaked),
            "server output contains a TURN secret or credential"
        );
    }
    if let Some(fresh) = worker.joined["ice_servers"][0]["credential"].as_str() {
        assert!(!logs.contains(fresh), "server output contains a TURN credential");
    }

    worker.participant.close().await;
    doctor.participant.close().await;
    drop(server);
    drop(coturn);
    let _ = std::fs::remove_dir_all(&dir);
}
