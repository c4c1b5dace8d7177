//! A node runs one media engine per core, each on its own thread with its
//! own media port: rooms created together are spread over the engines, a
//! room's participants are told its engine's port, and calls on every
//! engine carry audio and video both ways at once.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;
use telehealth_sfu::{ParticipantId, Sfu, SfuConfig};
use telehealth_tests::{ParticipantConfig, SfuSession, SyntheticParticipant};

/// The ports of the UDP host candidates in an SDP answer.
fn candidate_ports(sdp: &str) -> BTreeSet<u16> {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=candidate:"))
        .filter(|c| c.to_ascii_lowercase().contains(" udp "))
        .filter_map(|c| c.split_whitespace().nth(5)?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_spread_over_the_engines_and_each_carries_its_calls() {
    common::init_tracing();
    let config = SfuConfig::loopback();
    assert_eq!(config.engines, 2, "the test configuration runs two engines");
    let sfu = Sfu::start(config).await.expect("the SFU starts");
    let engines = sfu.engines();
    assert_eq!(engines.len(), 2);
    assert_ne!(
        engines[0].udp, engines[1].udp,
        "each engine has its own media port"
    );

    // Four consultations start together: two on each engine.
    let rooms = [
        common::room(&sfu, "consultation-a").await,
        common::room(&sfu, "consultation-b").await,
        common::room(&sfu, "consultation-c").await,
        common::room(&sfu, "consultation-d").await,
    ];
    let placed: Vec<usize> = sfu.engines().iter().map(|e| e.rooms).collect();
    assert_eq!(placed, [2, 2], "four rooms spread over two engines");

    // A participant's answer names the port of the engine hosting its room.
    let mut ports_seen = BTreeSet::new();
    for room in &rooms {
        let probe = SyntheticParticipant::new(ParticipantConfig::new("probe", 300.0))
            .await
            .expect("a probe");
        let offer = probe.create_offer().await.expect("an offer");
        let answer = sfu
            .join(room.clone(), ParticipantId::new("probe"), offer)
            .await
            .expect("the probe joins");
        let ports = candidate_ports(&answer);
        assert_eq!(ports.len(), 1, "one UDP candidate in {answer}");
        let port = *ports.first().expect("a port");
        assert!(
            engines.iter().any(|e| e.udp.port() == port),
            "{room}: port {port} is no engine's"
        );
        ports_seen.insert(port);
        sfu.leave(room.clone(), ParticipantId::new("probe"))
            .await
            .expect("the probe leaves");
        probe.close().await;
    }
    assert_eq!(ports_seen.len(), 2, "the rooms' answers name both engines' ports");

    // A call in the first two rooms, one on each engine, both at once.
    let mut calls = Vec::new();
    for (room, tones) in rooms[..2].iter().zip([(440.0, 660.0), (520.0, 780.0)]) {
        let doctor = SfuSession::join(&sfu, room, ParticipantConfig::new("doctor", tones.0))
            .await
            .expect("the doctor joins");
        let station = SfuSession::join(&sfu, room, ParticipantConfig::new("station", tones.1))
            .await
            .expect("the station joins");
        calls.push((doctor, station, tones));
    }
    // Each engine holds one call's two connections (published by the
    // engine after it has answered the join, so looked for until seen).
    common::eventually(Duration::from_secs(3), "two participants on each engine", || {
        let peers: Vec<usize> = sfu.engines().iter().map(|e| e.participants).collect();
        async move { (peers == [2, 2]).then_some(()) }
    })
    .await;
    for (doctor, station, (doctor_tone, station_tone)) in &calls {
        for (who, from, tone) in [
            (doctor, "station", *station_tone),
            (station, "doctor", *doctor_tone),
        ] {
            let p = who.participant.clone();
            common::eventually(Duration::from_secs(10), "audio and video both ways", || {
                let p = p.clone();
                async move {
                    let r = p.report();
                    let f = r.audio_from(from)?.dominant_frequency_hz?;
                    ((f - tone).abs() <= 10.0 && r.video_from(from)?.frames_complete >= 5).then_some(())
                }
            })
            .await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (doctor, station, (doctor_tone, station_tone)) in &calls {
        common::assert_heard(&doctor.participant.report(), "station", *station_tone, 50, 40);
        common::assert_heard(&station.participant.report(), "doctor", *doctor_tone, 50, 40);
    }

    // Each engine forwarded its own call's packets, on a thread of its own.
    let counters = sfu.engine_counters().await.expect("counters");
    for (i, c) in counters.iter().enumerate() {
        assert!(
            c.rtp_forwarded > 100,
            "engine {i} forwarded {} packets",
            c.rtp_forwarded
        );
    }
    // The node's counters are every engine's summed (read a moment later,
    // while media still flows: at least the sum, and not one engine's).
    let total = sfu.counters().await.expect("the sum");
    let sum: u64 = counters.iter().map(|c| c.rtp_forwarded).sum();
    assert!(
        (sum..sum + sum / 2).contains(&total.rtp_forwarded),
        "node {}, engines {counters:?}",
        total.rtp_forwarded
    );
    for i in 0..2 {
        let name = format!("media-engine-{i}");
        let threads: Vec<u64> = telehealth_tests::threads_cpu_ns(&name)
            .into_iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, ns)| ns)
            .collect();
        assert_eq!(threads.len(), 1, "one thread runs engine {i}");
        assert!(
            threads[0] >= 10_000_000,
            "engine {i}'s thread did the work: {} ns",
            threads[0]
        );
    }

    // A room closed frees its place: the next room goes there.
    sfu.close_room(rooms[2].clone()).await.expect("closed");
    let freed: Vec<usize> = sfu.engines().iter().map(|e| e.rooms).collect();
    assert_eq!(freed.iter().sum::<usize>(), 3);
    let emptier = freed
        .iter()
        .position(|&n| n == 1)
        .expect("an engine with one room");
    common::room(&sfu, "consultation-e").await;
    assert_eq!(
        sfu.engines()[emptier].rooms,
        2,
        "the new room went to the engine with room to spare"
    );
    assert!(
        sfu.create_room(rooms[0].clone()).await.is_err(),
        "a room that exists cannot be created again"
    );

    drop(calls);
    sfu.shutdown().await;
}

/// Two pages join one consultation at the same moment: both ask for its
/// room, one creates it, and the other's request about the room must reach
/// the engine after the creation, never ahead of it. The creating task is
/// made to yield at its next await (its cooperative budget spent), which is
/// where a busy signaling task may be descheduled; each number of spent
/// units is tried, so that one of them lands on the yield.
#[tokio::test(flavor = "current_thread")]
async fn a_room_another_page_is_creating_is_there_for_the_other_join() {
    common::init_tracing();
    let sfu = Sfu::start(SfuConfig::loopback()).await.expect("the SFU starts");
    for spent in 120..=130u32 {
        let room = telehealth_sfu::RoomId::new(format!("consultation-{spent}"));
        let creator = {
            let (sfu, room) = (sfu.clone(), room.clone());
            tokio::spawn(async move {
                for _ in 0..spent {
                    tokio::task::consume_budget().await;
                }
                sfu.create_room(room).await
            })
        };
        let joiner = {
            let (sfu, room) = (sfu.clone(), room.clone());
            tokio::spawn(async move {
                // As the signaling does on a join: create, or find it there.
                match sfu.create_room(room.clone()).await {
                    Ok(()) | Err(telehealth_sfu::SfuError::RoomExists(_)) => {}
                    Err(e) => return Err(e),
                }
                sfu.participants(room).await.map(|_| ())
            })
        };
        let created = creator.await.expect("the creator ran");
        let found = joiner.await.expect("the joiner ran");
        assert!(
            created.is_ok() || matches!(created, Err(telehealth_sfu::SfuError::RoomExists(_))),
            "{spent}: {created:?}"
        );
        assert!(
            found.is_ok(),
            "{spent}: the other page's request found no room: {found:?}"
        );
    }
    sfu.shutdown().await;
}
