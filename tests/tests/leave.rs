//! A participant leaving (or its connection dying) removes its tracks from
//! the others, with its close reason in the events.

mod common;

use std::time::Duration;
use telehealth_sfu::{CloseReason, ConnectionState, SfuEvent};
use telehealth_tests::{ParticipantConfig, SfuSession};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_dying_participants_are_removed_with_their_reason() {
    let sfu = common::start_sfu().await;
    let mut events = sfu.events().await.expect("events");
    let room = common::room(&sfu, "consultation-leave").await;
    let doctor = SfuSession::join(&sfu, &room, ParticipantConfig::new("doctor", 440.0))
        .await
        .expect("doctor joins");
    let worker = SfuSession::join(&sfu, &room, ParticipantConfig::new("health-worker", 660.0))
        .await
        .expect("health worker joins");
    let specialist = SfuSession::join(&sfu, &room, ParticipantConfig::new("specialist", 880.0))
        .await
        .expect("specialist joins");
    let d = doctor.participant.clone();
    common::eventually(Duration::from_secs(5), "the doctor receives both others", || {
        let d = d.clone();
        async move {
            let r = d.report();
            let ok = r.audio_from("health-worker")?.packets_received > 20
                && r.audio_from("specialist")?.packets_received > 20;
            ok.then_some(())
        }
    })
    .await;

    // 1. The health worker leaves through the API.
    worker.leave().await.expect("leave");
    let mut unpublished = 0;
    let mut left = None;
    while left.is_none() || unpublished < 2 {
        match common::wait_event(&mut events, Duration::from_secs(3), "worker's removal", |e| {
            matches!(e, SfuEvent::TrackUnpublished { participant, .. } | SfuEvent::ParticipantLeft { participant, .. }
                if participant.as_str() == "health-worker")
        })
        .await
        {
            SfuEvent::TrackUnpublished { .. } => unpublished += 1,
            SfuEvent::ParticipantLeft { reason, .. } => left = Some(reason),
            _ => {}
        }
    }
    assert_eq!(left, Some(CloseReason::Removed));
    // The doctor's connection is renegotiated without the worker's tracks.
    let d = doctor.participant.clone();
    common::eventually(
        Duration::from_secs(3),
        "the worker's tracks end at the doctor",
        || {
            let d = d.clone();
            async move {
                let r = d.report();
                let ended = r.audio_from("health-worker")?.ended && r.video_from("health-worker")?.ended;
                ended.then_some(())
            }
        },
    )
    .await;

    let r = doctor.participant.report();
    assert!(
        !r.audio_from("specialist").expect("specialist audio").ended,
        "only the leaver's tracks end"
    );

    // 2. The specialist's network dies (no close, nothing more on the wire).
    specialist.participant.impairment().set_blackhole(true);
    let mut saw_disconnected = false;
    let reason = loop {
        let ev = common::wait_event(&mut events, Duration::from_secs(15), "specialist's removal", |e| {
            matches!(e, SfuEvent::ConnectionState { participant, .. } | SfuEvent::ParticipantLeft { participant, .. }
                if participant.as_str() == "specialist")
        })
        .await;
        match ev {
            SfuEvent::ConnectionState { state, .. } => {
                saw_disconnected |= state == ConnectionState::Disconnected
            }
            SfuEvent::ParticipantLeft { reason, .. } => break reason,
            _ => {}
        }
    };
    assert_eq!(reason, CloseReason::ConnectionFailed);
    assert!(saw_disconnected, "Disconnected was reported before the removal");
    let d = doctor.participant.clone();
    common::eventually(
        Duration::from_secs(3),
        "the specialist's tracks end at the doctor",
        || {
            let d = d.clone();
            async move {
                let r = d.report();
                let ended = r.audio_from("specialist")?.ended && r.video_from("specialist")?.ended;
                ended.then_some(())
            }
        },
    )
    .await;

    // 3. Closing the room removes the last one with its reason.
    sfu.close_room(room.clone()).await.expect("close");
    let ev = common::wait_event(
        &mut events,
        Duration::from_secs(3),
        "doctor's removal",
        |e| matches!(e, SfuEvent::ParticipantLeft { participant, .. } if participant.as_str() == "doctor"),
    )
    .await;
    assert!(matches!(
        ev,
        SfuEvent::ParticipantLeft {
            reason: CloseReason::RoomClosed,
            ..
        }
    ));
    assert!(
        sfu.leave(room, doctor.id.clone()).await.is_err(),
        "the room is gone"
    );
    sfu.shutdown().await;
}
