//! The call comes back by itself when the station's network drops, through
//! the real binary, with synthetic participants (real WebRTC peers) whose
//! every packet — media and the signaling socket — crosses the user-space
//! link emulator: the server announces the emulator's address for media, and
//! the station's socket goes to the emulator's TCP port. The station's link
//! is cut for 5 s, then 60 s, then handed over (new address and port as the
//! server sees them, its TCP connections reset). The browser versions of the
//! same cases are in tests/browser/network.spec.js; these cover the server's
//! part without a browser.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use telehealth_tests::{LinkEmulator, LinkEmulatorConfig, ParticipantConfig, Relay, WsSession};

const STATION_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const DOCTOR_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
const RELAY_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Media engines the server runs here: two, whatever the machine, each
/// with its own port behind the relay.
const ENGINES: u16 = 2;

/// A first port from which [`ENGINES`] UDP ports are free on the server's
/// address and the relay's.
fn free_udp_ports() -> u16 {
    for _ in 0..100 {
        let first = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let all_free = (0..ENGINES).all(|i| {
            first.checked_add(i).is_some_and(|p| {
                std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok()
                    && std::net::UdpSocket::bind((RELAY_IP, p)).is_ok()
            })
        });
        if all_free {
            return first;
        }
    }
    panic!("no {ENGINES} free UDP ports in a row");
}

/// The server with its media announced on the relay, and the relay in front
/// of its media ports (one per engine) and its HTTP port.
struct Setup {
    server: Server,
    emulator: LinkEmulator,
    /// The station's WebSocket URL, through the relay.
    station_ws: String,
    /// The doctor's, direct.
    doctor_ws: String,
}

fn setup(tag: &str, db: &str, dir: &std::path::Path) -> Setup {
    let media = free_udp_ports();
    let server = Server::start_with(
        dir,
        db,
        &[
            "--public-ip",
            "127.0.0.2",
            "--media-engines",
            &ENGINES.to_string(),
            "--media-udp-port",
            &media.to_string(),
            "--media-tcp-port",
            "0",
        ],
    );
    let http: SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the server's address");
    let emulator = LinkEmulator::start(LinkEmulatorConfig {
        udp: (media..media + ENGINES)
            .map(|port| Relay {
                listen: SocketAddr::new(RELAY_IP, port),
                upstream: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
            })
            .collect(),
        tcp: vec![Relay {
            listen: SocketAddr::new(RELAY_IP, 0),
            upstream: http,
        }],
        upstream_ip: Ipv4Addr::LOCALHOST.into(),
    })
    .unwrap_or_else(|e| panic!("{tag}: link emulator: {e}"));
    let station_ws = format!("ws://{}/api/ws", emulator.tcp_addrs()[0]);
    let doctor_ws = server.url("/api/ws").replace("http://", "ws://");
    Setup {
        server,
        emulator,
        station_ws,
        doctor_ws,
    }
}

/// When the first frame a decoder could show arrived after `since`, from
/// `publisher`, polling every 10 ms; panics after `within`.
async fn first_frame_after(who: &WsSession, publisher: &str, since: Instant, within: Duration) -> Duration {
    let deadline = since + within;
    loop {
        let r = who.participant.report();
        if let Some(at) = r.video_from(publisher).and_then(|v| v.last_decoded_at) {
            if at > since {
                return at.saturating_duration_since(since);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new frame from {publisher} within {within:?} of {since:?}:\n{r}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_comes_back_by_itself_after_blackouts_and_a_handover() {
    let dir = temp_dir("network");
    let db = database_url("sqlite", &dir).await;
    let s = setup("network", &db, &dir);
    let c = client();
    let p = province(&c, &s.server).await;
    let cid = accepted_consultation(&c, &s.server, &p).await;
    let station_link = s.emulator.link(STATION_IP);
    let doctor = WsSession::join_recovering(
        &s.doctor_ws,
        &p.doctor,
        &cid,
        ParticipantConfig::new("doctor", 440.0).bind_ip(DOCTOR_IP),
    )
    .await
    .expect("doctor joins");
    let station = WsSession::join_recovering(
        &s.station_ws,
        &p.worker,
        &cid,
        ParticipantConfig::new("station", 660.0).bind_ip(STATION_IP),
    )
    .await
    .expect("station joins through the emulator");
    let (sp, dp) = (station.participant_id.clone(), doctor.participant_id.clone());
    media_flows(&doctor, &sp, 660.0, 20, Duration::from_secs(10)).await;
    media_flows(&station, &dp, 440.0, 20, Duration::from_secs(10)).await;
    let stats = station_link.stats();
    assert!(
        !stats.flows.is_empty() && stats.tcp_connections >= 1,
        "the station's media and socket go through the emulator: {stats:?}"
    );

    // A 5 s blackout: the first new frame on both sides within 1 s of its end.
    station_link.blackout(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ended = Instant::now();
    let (a, b) = tokio::join!(
        first_frame_after(&station, &dp, ended, Duration::from_secs(10)),
        first_frame_after(&doctor, &sp, ended, Duration::from_secs(10)),
    );
    println!("5 s blackout: first new frame {a:?} (station), {b:?} (doctor) after its end");
    assert!(
        a <= Duration::from_secs(1) && b <= Duration::from_secs(1),
        "{a:?} {b:?}"
    );

    // A 60 s blackout: the socket dies too; the station comes back by itself
    // (new socket, same seat, ICE restart) and media is back within 5 s.
    station_link.blackout(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(60)).await;
    let ended = Instant::now();
    let (a, b) = tokio::join!(
        first_frame_after(&station, &dp, ended, Duration::from_secs(20)),
        first_frame_after(&doctor, &sp, ended, Duration::from_secs(20)),
    );
    println!(
        "60 s blackout: first new frame {a:?} (station), {b:?} (doctor) after its end; station did {:?}",
        station
            .actions()
            .iter()
            .map(|(_, w)| w.as_str())
            .collect::<Vec<_>>()
    );
    assert!(
        a <= Duration::from_secs(5) && b <= Duration::from_secs(5),
        "{a:?} {b:?}"
    );
    assert!(
        station.actions().iter().any(|(_, w)| w == "resumed"),
        "it came back on a new socket: {:?}",
        station.actions()
    );
    media_flows(&doctor, &sp, 660.0, 20, Duration::from_secs(10)).await;

    // A handover: new address and port, TCP reset. Media back within 3 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = station_link.stats();
    station_link.handover().await;
    let moved = Instant::now();
    let (a, b) = tokio::join!(
        first_frame_after(
            &station,
            &dp,
            moved + Duration::from_millis(200),
            Duration::from_secs(10)
        ),
        first_frame_after(
            &doctor,
            &sp,
            moved + Duration::from_millis(200),
            Duration::from_secs(10)
        ),
    );
    let after = station_link.stats();
    println!("handover: frames again {a:?} (station), {b:?} (doctor) after 200 ms past it");
    assert_ne!(
        before.flows.first().map(|f| f.upstream),
        after.flows.first().map(|f| f.upstream),
        "the server sees the station at a new port"
    );
    assert!(
        a + Duration::from_millis(200) <= Duration::from_secs(3)
            && b + Duration::from_millis(200) <= Duration::from_secs(3),
        "{a:?} {b:?}"
    );

    // The same consultation, the same seats, and the log tells what happened.
    let session = get(&c, &s.server, &p.admin, &format!("/api/sessions/{cid}")).await;
    let events = session["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let of_station = |k: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == k && e["data"]["participant_id"] == sp.as_str())
            .count()
    };
    assert!(of_station("media_resumed") >= 2, "{kinds:?}");
    assert!(of_station("address_changed") >= 1, "{kinds:?}");
    assert!(of_station("reconnected") >= 1, "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "joined").count(),
        2,
        "one join per person, no ghost: {kinds:?}"
    );
    assert!(!kinds.contains(&"left"), "nobody was removed: {kinds:?}");
    let cons = get(&c, &s.server, &p.worker, &format!("/api/consultations/{cid}")).await;
    assert_eq!(cons["state"], "in_progress");
}
