//! ICE-TCP: a station whose UDP is blocked reaches the SFU over its one TCP
//! port (RFC 6544 passive candidate, RFC 4571 framing) and talks with a
//! participant on UDP; hostile TCP connections are closed without disturbing
//! a running room.

mod common;

use std::time::Duration;
use telehealth_sfu::{Sfu, SfuConfig};
use telehealth_tests::{ParticipantConfig, SfuSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(config: SfuConfig) -> Sfu {
    common::init_tracing();
    Sfu::start(config).await.expect("the SFU binds loopback")
}

/// A doctor on UDP and a station on ICE-TCP only, joined to `room` and
/// hearing and seeing each other.
async fn doctor_on_udp_station_on_tcp(sfu: &Sfu, room: &telehealth_sfu::RoomId) -> (SfuSession, SfuSession) {
    let doctor = SfuSession::join(sfu, room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins over UDP");
    let station = SfuSession::join(
        sfu,
        room,
        ParticipantConfig::new("health-worker", 660.0).tcp_only(),
    )
    .await
    .expect("the station joins over TCP");
    media_both_ways(&doctor, &station).await;
    (doctor, station)
}

/// Waits until both hear each other's tone and see each other's video.
async fn media_both_ways(a: &SfuSession, b: &SfuSession) {
    for (who, from, tone) in [(a, b.id.as_str(), 660.0), (b, a.id.as_str(), 440.0)] {
        let p = who.participant.clone();
        let from = from.to_owned();
        common::eventually(Duration::from_secs(10), "audio and video both ways", || {
            let p = p.clone();
            let from = from.clone();
            async move {
                let r = p.report();
                let f = r.audio_from(&from)?.dominant_frequency_hz?;
                let frames = r.video_from(&from)?.frames_complete;
                ((f - tone).abs() <= 10.0 && frames >= 10).then_some(())
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_only_participant_exchanges_audio_and_video_with_a_udp_participant() {
    let sfu = start(SfuConfig::loopback_with_tcp()).await;
    assert!(sfu.local_tcp_addr().is_some());
    let room = common::room(&sfu, "consultation-tcp").await;
    let (doctor, station) = doctor_on_udp_station_on_tcp(&sfu, &room).await;

    let before = sfu.counters().await.expect("counters");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sfu.counters().await.expect("counters");
    println!("{after:?}");
    // The station's media really rides the TCP connection: it has no UDP
    // socket, and the SFU keeps receiving frames on exactly one connection.
    assert_eq!(after.tcp_open, 1, "one ICE-TCP connection");
    assert!(
        after.tcp_frames_in - before.tcp_frames_in > 100,
        "audio (50/s) and video arrive over TCP: {} frames in 2 s",
        after.tcp_frames_in - before.tcp_frames_in
    );
    assert_eq!(after.tcp_closed_bad, 0);

    for (who, from, tone) in [(&doctor, "health-worker", 660.0), (&station, "doctor", 440.0)] {
        common::assert_heard(&who.participant.report(), from, tone, 100, 50);
    }
    station.leave().await.expect("leave");
    // Leaving closes the participant's connection.
    common::eventually(Duration::from_secs(3), "the TCP connection closed", || {
        let sfu = sfu.clone();
        async move { (sfu.counters().await.ok()?.tcp_open == 0).then_some(()) }
    })
    .await;
    sfu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_engine_takes_ice_tcp_on_its_own_port() {
    let sfu = start(SfuConfig::loopback_with_tcp()).await;
    let engines = sfu.engines();
    assert_eq!(engines.len(), 2);
    let ports: Vec<_> = engines
        .iter()
        .map(|e| e.tcp.expect("ICE-TCP on").port())
        .collect();
    assert_ne!(ports[0], ports[1], "each engine listens on its own TCP port");
    // Two consultations, one per engine, each with a station on TCP only.
    let first = common::room(&sfu, "consultation-tcp-1").await;
    let second = common::room(&sfu, "consultation-tcp-2").await;
    assert_eq!(sfu.engines().iter().map(|e| e.rooms).collect::<Vec<_>>(), [1, 1]);
    let calls = [
        doctor_on_udp_station_on_tcp(&sfu, &first).await,
        doctor_on_udp_station_on_tcp(&sfu, &second).await,
    ];
    // Both calls up; let media flow a little longer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let counters = sfu.engine_counters().await.expect("counters");
    for (i, c) in counters.iter().enumerate() {
        assert_eq!(c.tcp_open, 1, "engine {i}: its station's one connection");
        assert!(c.tcp_frames_in > 100, "engine {i}: media over TCP, {c:?}");
        assert_eq!(c.tcp_closed_bad, 0);
    }
    drop(calls);
    sfu.shutdown().await;
}

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut out = (packet.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(packet);
    out
}

/// Whether the server closes the connection within `within` (EOF or reset;
/// anything it sends before is ignored).
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tcp_connections_are_closed_without_disturbing_a_running_room() {
    let config = SfuConfig {
        tcp_idle_timeout: Duration::from_secs(2),
        tcp_max_connections: 4,
        ..SfuConfig::loopback_with_tcp()
    };
    let sfu = start(config).await;
    let tcp = sfu.local_tcp_addr().expect("TCP port");
    let room = common::room(&sfu, "consultation-tcp-hostile").await;
    let (doctor, station) = doctor_on_udp_station_on_tcp(&sfu, &room).await;
    let ufrag = station.sfu_ice_ufrag();
    let before_doctor = doctor.participant.report();
    let before_station = station.participant.report();

    // Connections over the limit are refused: the station holds one of the
    // four, three silent ones fill the rest, the fifth is closed at once.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(tcp).await.expect("connect"));
    }
    let mut extra = TcpStream::connect(tcp).await.expect("connect");
    assert!(
        closed_by_server(&mut extra, Duration::from_secs(1)).await,
        "a connection over the limit is closed"
    );
    // Silent connections are closed after the idle timeout.
    for s in &mut silent {
        assert!(
            closed_by_server(s, Duration::from_secs(5)).await,
            "an idle connection is closed"
        );
    }

    let giant_prefix = vec![0xff, 0xff, 1, 2, 3];
    let zero_length = vec![0, 0, 0, 4, 1, 2, 3, 4];
    let garbage: Vec<u8> = (0..5000).map(|_| rand::random::<u8>()).collect();
    let not_stun = framed(&[0x80; 200]);
    let unknown_ufrag = framed(&common::forged_binding_request("nobody:evil"));
    // Names the station's real ufrag: only the integrity check stops it.
    let forged = framed(&common::forged_binding_request(&format!("{ufrag}:evil")));
    let oversized = framed(&[0u8; 5000]);
    let cases: [(&str, &[u8]); 7] = [
        ("giant length prefix", &giant_prefix),
        ("zero-length frame", &zero_length),
        ("random bytes", &garbage),
        ("a first packet that is not STUN", &not_stun),
        ("STUN for an unknown ufrag", &unknown_ufrag),
        ("STUN with forged integrity", &forged),
        ("an oversized frame", &oversized),
    ];
    for (what, bytes) in cases {
        let mut s = TcpStream::connect(tcp).await.expect("connect");
        // The server may close mid-write; that is the point.
        let _ = s.write_all(bytes).await;
        assert!(
            closed_by_server(&mut s, Duration::from_secs(1)).await,
            "{what}: the connection is closed before the idle timeout"
        );
    }

    // The room never noticed: both directions kept flowing, nothing lost.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counters = sfu.counters().await.expect("the SFU still answers");
    println!("{counters:?}");
    assert_eq!(counters.tcp_open, 1, "only the station's connection is left");
    assert!(counters.tcp_closed_bad >= 11, "{counters:?}");
    for (who, before, from, tone) in [
        (&doctor, &before_doctor, "health-worker", 660.0),
        (&station, &before_station, "doctor", 440.0),
    ] {
        let r = who.participant.report();
        println!("{r}");
        let v = r.video_from(from).expect("video");
        let a = r.audio_from(from).expect("audio");
        let v0 = before.video_from(from).expect("video before");
        assert!(v.frames_complete > v0.frames_complete + 25, "video kept flowing");
        assert_eq!(v.frames_complete, v.frames_expected, "no frame lost");
        assert_eq!(a.packets_lost, 0, "no audio lost");
        assert!((a.dominant_frequency_hz.expect("tone") - tone).abs() <= 10.0);
    }
    sfu.shutdown().await;
}
