//! A hostile SDP, hostile ICE candidates, unknown rooms/participants and
//! garbage UDP datagrams on the media port get clear errors and do not
//! disturb a running room; a forged STUN request naming a participant cannot
//! claim a source address for it.

mod common;

use std::time::Duration;
use telehealth_sfu::{IceCandidate, ParticipantId, RoomId, SfuError};
use telehealth_tests::{ParticipantConfig, SfuSession, SyntheticParticipant};
use tokio::net::UdpSocket;

fn hostile_sdps(valid: &str) -> Vec<String> {
    let mut v = vec![
        String::new(),
        "garbage".to_owned(),
        "v=0\r\n".to_owned(),
        String::from_utf8_lossy(&[0xff, 0xfe, 0x00, 0x80, 0x0d, 0x0a, 0x3d]).into_owned(),
        valid.replace("a=fingerprint:sha-256 ", "a=fingerprint:sha-256 ZZ:"),
        valid.replace("a=ice-ufrag:", "a=ice-ufrag:\u{0}"),
        valid.replace("m=audio 9", "m=audio 99999999999999999999"),
        valid.replace("UDP/TLS/RTP/SAVPF", "TCP/NOTHING"),
        valid.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/-1/99999999999"),
        valid.replace("a=group:BUNDLE", "a=group:BUNDLE 7 8 9 x"),
    ];
    // Thousands of m-lines.
    let mut many = String::from("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
    for i in 0..2000 {
        many.push_str(&format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na=rtpmap:111 opus/48000/2\r\n"
        ));
    }
    v.push(many);
    v
}

fn hostile_datagrams(ufrag: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 1500],
        vec![0x80; 12],
        vec![0x80, 0xc8, 0x00, 0xff], // RTCP SR header with a huge length
        vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], // DTLS record, truncated
        (0..=255u8).cycle().take(1200).collect(),
    ];
    // STUN binding requests naming a real participant's ufrag, with garbage integrity.
    for len in [0usize, 4, 40, 400] {
        let username = format!("{ufrag}:evil");
        let mut m = vec![0x00, 0x01];
        let attr_len = username.len();
        let padded = attr_len.div_ceil(4) * 4;
        m.extend_from_slice(&((4 + padded + 4 + len) as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[9; 12]);
        m.extend_from_slice(&[0x00, 0x06]);
        m.extend_from_slice(&(attr_len as u16).to_be_bytes());
        m.extend_from_slice(username.as_bytes());
        m.resize(20 + 4 + padded, 0);
        m.extend_from_slice(&[0x00, 0x08]); // MESSAGE-INTEGRITY with a wrong length
        m.extend_from_slice(&(len as u16).to_be_bytes());
        m.extend(std::iter::repeat_n(0xab, len));
        v.push(m);
    }
    // Random junk.
    for _ in 0..50 {
        let n = rand::random::<usize>() % 1400;
        v.push((0..n).map(|_| rand::random::<u8>()).collect());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_does_not_disturb_a_running_room() {
    let sfu = common::start_sfu().await;
    let good = common::room(&sfu, "consultation-good").await;
    let doctor = SfuSession::join(&sfu, &good, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins");
    let worker = SfuSession::join(&sfu, &good, ParticipantConfig::new("health-worker", 660.0))
        .await
        .expect("health worker joins");
    let d = doctor.participant.clone();
    common::eventually(Duration::from_secs(5), "the good room is up", || {
        let d = d.clone();
        async move { (d.report().video_from("health-worker")?.frames_complete > 10).then_some(()) }
    })
    .await;
    let before = doctor.participant.report();
    let before_video = before.video_from("health-worker").expect("video").clone();

    // A second room where mallory joins with a real offer but never connects.
    let evil = common::room(&sfu, "consultation-evil").await;
    let mallory = SyntheticParticipant::new(ParticipantConfig::new("mallory", 100.0))
        .await
        .expect("mallory");
    let valid_offer = mallory.create_offer().await.expect("offer");
    let answer = sfu
        .join(evil.clone(), ParticipantId::new("mallory"), valid_offer.clone())
        .await
        .expect("a valid offer is accepted");
    let ufrag = answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("answer carries our ufrag")
        .to_owned();

    // Hostile SDPs: each is an error, none a panic.
    for (i, sdp) in hostile_sdps(&valid_offer).into_iter().enumerate() {
        let r = sfu
            .join(evil.clone(), ParticipantId::new(format!("bad-{i}")), sdp.clone())
            .await;
        // The first four are not SDP at all; the others may parse and fail later
        // (a wrong fingerprint fails at DTLS), but must never take the SFU down.
        if i < 4 {
            assert!(
                matches!(r, Err(SfuError::InvalidSdp(_))),
                "hostile offer {i}: {r:?}"
            );
        }
        println!(
            "hostile offer {i}: {}",
            match &r {
                Ok(_) => "accepted".to_owned(),
                Err(e) => e.to_string(),
            }
        );
        assert!(!matches!(r, Err(SfuError::Stopped)), "the SFU died on offer {i}");
        let r = sfu
            .handle_offer(evil.clone(), ParticipantId::new("mallory"), sdp)
            .await;
        assert!(
            !matches!(r, Err(SfuError::Stopped)),
            "renegotiation {i} killed the SFU"
        );
    }
    let r = sfu
        .handle_answer(evil.clone(), ParticipantId::new("mallory"), "garbage".into())
        .await;
    assert!(r.is_err());

    // Hostile candidates (loopback only: tests send nothing off this host).
    for c in [
        "",
        "candidate:garbage",
        "candidate:1 1 udp 2130706431 127.0.0.1 99999 typ host",
        "candidate:1 1 udp 2130706431 not-an-ip 9 typ host",
        "candidate:1 999999 tcp -5 127.0.0.1 1 typ relay raddr x rport y",
        &"candidate:".repeat(5000),
    ] {
        let r = sfu
            .add_ice_candidate(
                evil.clone(),
                ParticipantId::new("mallory"),
                IceCandidate {
                    candidate: c.to_owned(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                },
            )
            .await;
        assert!(!matches!(r, Err(SfuError::Stopped)));
    }

    // Unknown rooms and participants.
    assert!(matches!(
        sfu.join(RoomId::new("nope"), ParticipantId::new("x"), valid_offer.clone())
            .await,
        Err(SfuError::UnknownRoom(_))
    ));
    assert!(matches!(
        sfu.leave(good.clone(), ParticipantId::new("nobody")).await,
        Err(SfuError::UnknownParticipant { .. })
    ));
    // (Joining again under a participant id already in the room takes that
    // seat over: the SFU trusts the ids signaling gives it, and signaling
    // lets only the same user do that — tests/e2e/calls.rs.)

    // Garbage datagrams on the media port, from several sockets, some routed
    // to mallory's connection by her ufrag.
    let media = sfu.local_addr();
    let datagrams = hostile_datagrams(&ufrag);
    for _round in 0..5 {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        for d in &datagrams {
            let _ = sock.send_to(d, media).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The good room never noticed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = doctor.participant.report();
    let v = after.video_from("health-worker").expect("video");
    let a = after.audio_from("health-worker").expect("audio");
    println!("{after}");
    assert!(v.frames_complete > before_video.frames_complete + 20);
    assert_eq!(v.frames_complete, v.frames_expected, "no frame lost");
    assert_eq!(a.packets_lost, 0);
    assert!((a.dominant_frequency_hz.expect("tone") - 660.0).abs() <= 10.0);
    let w = worker.participant.report();
    assert_eq!(w.video_from("doctor").expect("video").max_frame_gap, 0);

    let counters = sfu.counters().await.expect("the SFU still answers");
    println!("{counters:?}");
    assert!(counters.datagrams_unrouted > 0, "garbage was seen and dropped");
    // Mallory can still be removed cleanly.
    sfu.leave(evil, ParticipantId::new("mallory"))
        .await
        .expect("leave");
    sfu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stun_does_not_route_an_address_to_a_participant() {
    let sfu = common::start_sfu().await;
    let room = common::room(&sfu, "consultation-forged-stun").await;
    let mallory = SyntheticParticipant::new(ParticipantConfig::new("mallory", 100.0))
        .await
        .expect("mallory");
    let offer = mallory.create_offer().await.expect("offer");
    let answer = sfu
        .join(room.clone(), ParticipantId::new("patient-side"), offer)
        .await
        .expect("join");
    let ufrag = answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .expect("answer carries our ufrag")
        .to_owned();

    // From a fresh address: a request naming the participant's real ufrag
    // but signed with the wrong password, then an RTP-looking datagram.
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let before = sfu.counters().await.expect("counters");
    sock.send_to(
        &common::forged_binding_request(&format!("{ufrag}:evil")),
        sfu.local_addr(),
    )
    .await
    .expect("send");
    sock.send_to(&[0x80; 200], sfu.local_addr()).await.expect("send");
    let after = common::eventually(Duration::from_secs(3), "both datagrams seen", || {
        let sfu = sfu.clone();
        let seen = before.datagrams_in + 2;
        async move { sfu.counters().await.ok().filter(|c| c.datagrams_in >= seen) }
    })
    .await;
    // Neither reached the participant's connection: the forged request did
    // not teach the SFU that this address is the participant's.
    assert_eq!(
        after.datagrams_unrouted - before.datagrams_unrouted,
        2,
        "{after:?}"
    );
    sfu.shutdown().await;
}
