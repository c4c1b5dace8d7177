//! Station connectivity history: the per-station, per-bucket sums of known
//! session logs, on SQLite and PostgreSQL alike.

mod common;

use chrono::NaiveDate;
use common::{patient_input, world, World};
use telehealth_records::*;

/// A consultation asked for by station `s` (its health worker `hw`).
async fn consultation(store: &Store, w: &World, hw: &User, s: FacilityId) -> ConsultationId {
    let a = w.actor(hw);
    let p = store.create_patient(&a, s, &patient_input("A")).await.unwrap();
    let consent = ConsentInput {
        decision: Some(ConsentDecision::Granted),
        given_by: Some(ConsentGiver::Patient),
        guardian_name: None,
        guardian_relation: None,
        text_version: Some(current_consent_text().version.to_owned()),
    };
    store.record_consent(&a, p.id, s, &consent).await.unwrap();
    let input = ConsultationInput {
        patient_id: p.id,
        kind: ConsultationKind::Urgent,
        reason: Pii("Sốt".into()),
        hospital_id: None,
        scheduled_start: None,
        doctor_id: None,
        vitals: None,
    };
    store
        .create_consultation(&a, s, hw_hospital(w, s), &input)
        .await
        .unwrap()
        .id
}

fn hw_hospital(w: &World, s: FacilityId) -> FacilityId {
    if s == w.s1.id {
        w.h1.id
    } else {
        w.h2.id
    }
}

/// Sets when the call ran (the log's times are what the sums read).
async fn ran(store: &Store, c: ConsultationId, start: &str, end: &str) {
    sqlx::query("UPDATE consultations SET state = 'completed', started_at = $1, ended_at = $2 WHERE id = $3")
        .bind(start.parse::<Timestamp>().unwrap())
        .bind(end.parse::<Timestamp>().unwrap())
        .bind(c)
        .execute(store.pool())
        .await
        .unwrap();
}

/// Appends an entry at a given time (the store stamps its own entries now).
async fn put(store: &Store, c: ConsultationId, at: &str, user: Option<UserId>, e: SessionEntry) {
    sqlx::query(
        "INSERT INTO session_events (consultation_id, at, kind, user_id, data) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(c)
    .bind(at.parse::<Timestamp>().unwrap())
    .bind(e.kind())
    .bind(user)
    .bind(e.data().to_string())
    .execute(store.pool())
    .await
    .unwrap();
}

fn joined(pid: &str, role: Role) -> SessionEntry {
    SessionEntry::Joined(Joining {
        participant_id: pid.into(),
        role,
        new_connection: true,
    })
}

fn ice(pid: &str, state: &str) -> SessionEntry {
    SessionEntry::IceState {
        participant_id: pid.into(),
        state: state.into(),
    }
}

fn left(pid: &str) -> SessionEntry {
    SessionEntry::Left {
        participant_id: pid.into(),
        reason: "left".into(),
    }
}

fn stats(pid: &str, loss: f64, rtt: f64, bitrate: (u64, u64), audio_only: bool) -> SessionEntry {
    SessionEntry::Stats(SessionStats {
        participant_id: Some(pid.into()),
        interval_secs: 5.0,
        loss_pct: Some(loss),
        rtt_ms: Some(rtt),
        bitrate_in_kbps: Some(bitrate.0),
        bitrate_out_kbps: Some(bitrate.1),
        audio_only,
        ..Default::default()
    })
}

fn video_off(pid: &str, why: &str) -> SessionEntry {
    SessionEntry::VideoLevel {
        participant_id: pid.into(),
        publisher_id: "other".into(),
        track: "video".into(),
        layer: None,
        layers: None,
        off: Some(why.into()),
    }
}

/// A sample in which the participant sent and received `packets` in all.
fn flowing(pid: &str, loss: f64, packets: u64, audio_only: bool) -> SessionEntry {
    SessionEntry::Stats(SessionStats {
        participant_id: Some(pid.into()),
        interval_secs: 5.0,
        loss_pct: Some(loss),
        rtt_ms: Some(80.0),
        audio_only,
        received_audio_packets: Some(packets),
        received_video_packets: Some(0),
        sent_audio_packets: Some(0),
        sent_video_packets: Some(0),
        ..Default::default()
    })
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn query(from: &str, to: &str, bucket: Bucket, station: Option<FacilityId>) -> ConnectivityQuery {
    ConnectivityQuery {
        from: day(from),
        to: day(to),
        bucket,
        station_id: station,
    }
}

async fn station_connectivity_sums_known_calls(store: Store) {
    let w = world(&store).await;
    let (hw, doc) = (Some(w.hw1.id), Some(w.doc1.id));
    // A: 23:30-23:50 on Sunday 6 December, Hà Nội time (16:30Z).
    let a = consultation(&store, &w, &w.hw1, w.s1.id).await;
    ran(&store, a, "2026-12-06T16:30:00Z", "2026-12-06T16:50:00Z").await;
    let at = "2026-12-06T16:31:00Z";
    put(&store, a, at, hw, joined("a-hw", Role::HealthWorker)).await;
    put(&store, a, at, doc, joined("a-doc", Role::Doctor)).await;
    put(&store, a, at, hw, ice("a-hw", "connected")).await;
    put(&store, a, at, doc, ice("a-doc", "connected")).await;
    put(&store, a, at, hw, stats("a-hw", 2.0, 100.0, (500, 300), false)).await;
    // Its link could not carry the doctor's video: audio only.
    put(&store, a, at, None, video_off("a-hw", "bandwidth")).await;
    put(&store, a, at, hw, stats("a-hw", 10.0, 300.0, (300, 100), true)).await;
    put(&store, a, at, doc, stats("a-doc", 1.0, 50.0, (900, 900), false)).await;
    // The station's page came back by itself (same media connection): a
    // reconnection, not a new attempt; then its media failed and came back.
    let back = SessionEntry::Reconnected(Joining {
        participant_id: "a-hw".into(),
        role: Role::HealthWorker,
        new_connection: false,
    });
    put(&store, a, at, hw, back).await;
    put(&store, a, at, hw, ice("a-hw", "failed")).await;
    put(&store, a, at, hw, ice("a-hw", "connected")).await;
    put(&store, a, at, hw, left("a-hw")).await;
    put(&store, a, at, doc, left("a-doc")).await;
    // B: 00:10 on Monday 7 December local (17:10Z on the 6th): the next day
    // and the next week. Its first attempt never connected.
    let b = consultation(&store, &w, &w.hw1, w.s1.id).await;
    ran(&store, b, "2026-12-06T17:10:00Z", "2026-12-06T17:15:30Z").await;
    let at = "2026-12-06T17:10:00Z";
    put(&store, b, at, hw, joined("b-hw1", Role::HealthWorker)).await;
    put(&store, b, at, hw, ice("b-hw1", "checking")).await;
    let at = "2026-12-06T17:10:30Z";
    put(&store, b, at, hw, left("b-hw1")).await;
    put(&store, b, at, hw, joined("b-hw2", Role::HealthWorker)).await;
    put(&store, b, at, hw, ice("b-hw2", "connected")).await;

    let now = Timestamp::now();
    let rows = store
        .station_connectivity(&query("2026-12-01", "2026-12-07", Bucket::Day, None), now)
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (ra, rb) = (&rows[0], &rows[1]);
    assert_eq!(
        (ra.bucket_start.as_str(), rb.bucket_start.as_str()),
        ("2026-12-06", "2026-12-07")
    );
    assert_eq!((ra.station_id, ra.station_code.as_str()), (w.s1.id, "S1"));
    assert_eq!((ra.calls, ra.call_minutes, ra.samples), (1, 20.0, 2));
    assert_eq!(
        (ra.avg_loss_pct, ra.p95_loss_pct, ra.worst_loss_pct, ra.avg_rtt_ms),
        (Some(6.0), Some(10.0), Some(10.0), Some(200.0))
    );
    assert_eq!(
        (
            ra.avg_bitrate_in_kbps,
            ra.avg_bitrate_out_kbps,
            ra.audio_only_secs
        ),
        (Some(400.0), Some(200.0), 5.0)
    );
    assert_eq!(
        (
            ra.reconnections,
            ra.join_attempts,
            ra.failed_joins,
            ra.ice_failures
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(
        (ra.hospital_avg_loss_pct, ra.hospital_avg_rtt_ms),
        (Some(1.0), Some(50.0))
    );
    assert_eq!((rb.calls, rb.call_minutes, rb.samples), (1, 5.5, 0));
    assert_eq!((rb.join_attempts, rb.failed_joins, rb.avg_loss_pct), (2, 1, None));

    // Weeks start on Monday: A in the week of 30 November, B in the next.
    let weeks = store
        .station_connectivity(
            &query("2026-12-01", "2026-12-13", Bucket::Week, Some(w.s1.id)),
            now,
        )
        .await
        .unwrap();
    let starts: Vec<_> = weeks.iter().map(|r| (r.bucket_start.as_str(), r.calls)).collect();
    assert_eq!(starts, [("2026-11-30", 1), ("2026-12-07", 1)]);
    // The range's edges are local midnights: the 7th alone holds B only.
    let seventh = store
        .station_connectivity(&query("2026-12-07", "2026-12-07", Bucket::Day, None), now)
        .await
        .unwrap();
    assert_eq!(seventh, std::slice::from_ref(rb));
    // The other station and an empty year have nothing.
    for q in [
        query("2026-12-01", "2026-12-07", Bucket::Day, Some(w.s2.id)),
        query("2025-01-01", "2025-12-31", Bucket::Week, None),
    ] {
        assert!(store.station_connectivity(&q, now).await.unwrap().is_empty());
    }
    // A station whose join never connected, in a call that never started:
    // no call, one failed join, on the day it was asked for.
    let c = consultation(&store, &w, &w.hw2, w.s2.id).await;
    let today = local_day(now).to_string();
    let at = now.to_string();
    put(&store, c, &at, Some(w.hw2.id), joined("c-hw", Role::HealthWorker)).await;
    let q = query(&today, &today, Bucket::Day, Some(w.s2.id));
    let open = store.station_connectivity(&q, now).await.unwrap();
    assert_eq!(
        (
            open.len(),
            open[0].calls,
            open[0].join_attempts,
            open[0].failed_joins
        ),
        (1, 0, 1, 0),
        "an attempt still open is not failed yet"
    );
    let later = Timestamp(now.0 + chrono::Duration::seconds(30)).to_string();
    put(&store, c, &later, Some(w.hw2.id), left("c-hw")).await;
    let rows = store.station_connectivity(&q, now).await.unwrap();
    assert_eq!(
        (rows[0].station_id, rows[0].calls, rows[0].failed_joins),
        (w.s2.id, 0, 1)
    );
}
on_both!(station_connectivity_sums_known_calls);

async fn station_connectivity_ranges_are_bounded(store: Store) {
    let now = Timestamp::now();
    for (q, field, code) in [
        (
            query("2026-12-07", "2026-12-06", Bucket::Day, None),
            "to",
            "range_reversed",
        ),
        (
            query("2025-01-01", "2026-01-02", Bucket::Week, None),
            "from",
            "range_too_long",
        ),
    ] {
        match store.station_connectivity(&q, now).await {
            Err(RecordsError::Invalid(errs)) => {
                assert_eq!((errs[0].field.as_str(), errs[0].code), (field, code))
            }
            other => panic!("{q:?}: {other:?}"),
        }
    }
    // 366 days is allowed.
    let q = query("2025-01-01", "2026-01-01", Bucket::Week, None);
    assert!(store.station_connectivity(&q, now).await.unwrap().is_empty());
}
on_both!(station_connectivity_ranges_are_bounded);

/// What the link did, not what people did: a call that was interrupted and
/// never ended lasts until its log's last entry (not until now); samples in
/// which nothing flowed (waiting alone) are left out; audio only because a
/// camera was off is not the link's; a page reloaded within 20 s is not a
/// failed join, one that never connected in 30 s is.
async fn station_connectivity_reads_what_the_link_did(store: Store) {
    let w = world(&store).await;
    let hw = Some(w.hw2.id);
    let d = consultation(&store, &w, &w.hw2, w.s2.id).await;
    sqlx::query("UPDATE consultations SET state = 'interrupted', started_at = $1 WHERE id = $2")
        .bind("2026-11-10T02:00:00Z".parse::<Timestamp>().unwrap())
        .bind(d)
        .execute(store.pool())
        .await
        .unwrap();
    put(
        &store,
        d,
        "2026-11-10T01:59:00Z",
        hw,
        joined("d-hw", Role::HealthWorker),
    )
    .await;
    // Reloaded 5 s later, before connecting: not a failure.
    let again = SessionEntry::Reconnected(Joining {
        participant_id: "d-hw".into(),
        role: Role::HealthWorker,
        new_connection: true,
    });
    put(&store, d, "2026-11-10T01:59:05Z", hw, again).await;
    put(&store, d, "2026-11-10T01:59:06Z", hw, ice("d-hw", "connected")).await;
    // Waiting alone: nothing flowed; then a call, 4 % loss.
    put(
        &store,
        d,
        "2026-11-10T01:59:10Z",
        hw,
        flowing("d-hw", 0.0, 0, true),
    )
    .await;
    put(
        &store,
        d,
        "2026-11-10T02:01:00Z",
        hw,
        flowing("d-hw", 4.0, 250, false),
    )
    .await;
    // Audio only chosen on the page: not for the link's sake.
    put(
        &store,
        d,
        "2026-11-10T02:02:00Z",
        None,
        video_off("d-hw", "requested"),
    )
    .await;
    put(
        &store,
        d,
        "2026-11-10T02:10:00Z",
        hw,
        flowing("d-hw", 4.0, 250, true),
    )
    .await;
    // A second page of the station never connected, then the log fell quiet.
    put(
        &store,
        d,
        "2026-11-10T02:11:00Z",
        hw,
        joined("d-hw2", Role::HealthWorker),
    )
    .await;
    put(&store, d, "2026-11-10T02:12:00Z", hw, ice("d-hw2", "checking")).await;

    let q = query("2026-11-10", "2026-11-10", Bucket::Day, Some(w.s2.id));
    let rows = store.station_connectivity(&q, Timestamp::now()).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!((r.calls, r.call_minutes), (1, 12.0), "to the log's last entry");
    assert_eq!(
        (r.samples, r.avg_loss_pct),
        (2, Some(4.0)),
        "the quiet sample is left out"
    );
    assert_eq!(r.audio_only_secs, 0.0, "audio only by choice is not the link");
    assert_eq!(
        (r.join_attempts, r.failed_joins, r.reconnections),
        (3, 1, 1),
        "the reload is no failure; the page that never connected is"
    );
}
on_both!(station_connectivity_reads_what_the_link_did);
