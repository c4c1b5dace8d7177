//! Scheduling on both databases: hours, leave, free slots, booking without
//! double booking (also under concurrency), rescheduling, no-shows, restart.

mod common;

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};
use common::{patient_input, world};
use telehealth_records::*;

/// Next Monday 08:00 local time (UTC+7), as UTC, at least a day ahead.
fn next_monday_8() -> chrono::DateTime<Utc> {
    let today = (Utc::now() + Duration::days(2))
        .with_timezone(&local_offset())
        .date_naive();
    let days = (7 - today.weekday().num_days_from_monday()) % 7;
    let monday: NaiveDate = today + Duration::days(i64::from(days));
    local_offset()
        .from_local_datetime(&monday.and_hms_opt(8, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn weekday_hours(start_h: i64, end_h: i64) -> Vec<WorkingHours> {
    (1..=5)
        .map(|d| WorkingHours {
            weekday: d,
            start_minute: start_h * 60,
            end_minute: end_h * 60,
        })
        .collect()
}

fn booking(patient: PatientId, start: chrono::DateTime<Utc>, doctor: Option<UserId>) -> ConsultationInput {
    ConsultationInput {
        patient_id: patient,
        kind: ConsultationKind::Scheduled,
        reason: Pii("Tái khám tăng huyết áp".into()),
        hospital_id: None,
        scheduled_start: Some(Timestamp(start)),
        doctor_id: doctor,
        vitals: None,
    }
}

async fn slots_follow_hours_leave_and_bookings(store: Store) {
    let w = world(&store).await;
    let sys = Actor::system();
    store
        .set_doctor_hours(&sys, w.doc1.id, &weekday_hours(8, 10))
        .await
        .unwrap();
    store
        .set_doctor_hours(&sys, w.doc1b.id, &weekday_hours(9, 10))
        .await
        .unwrap();
    let monday8 = next_monday_8();
    let day = monday8.with_timezone(&local_offset()).date_naive();
    let slots = store.free_slots(w.h1.id, None, day, Utc::now()).await.unwrap();
    // 08:00-10:00 in 20-minute slots = 6; doc1b joins from 09:00.
    assert_eq!(slots.len(), 6);
    assert_eq!(slots[0].start.0, monday8);
    assert!(slots[0].start_local.ends_with("+07:00") && slots[0].start_local.contains("T08:00:00"));
    assert_eq!(slots[0].doctor_ids, [w.doc1.id]);
    assert_eq!(slots[3].doctor_ids.len(), 2);
    // Saturday: nobody works.
    assert!(store
        .free_slots(w.h1.id, None, day + Duration::days(5), Utc::now())
        .await
        .unwrap()
        .is_empty());
    // Leave from 08:00 to 09:00 removes doc1's first three slots.
    store
        .add_leave(
            &sys,
            w.doc1.id,
            Timestamp(monday8),
            Timestamp(monday8 + Duration::hours(1)),
            "Tập huấn",
        )
        .await
        .unwrap();
    let slots = store
        .free_slots(w.h1.id, Some(w.doc1.id), day, Utc::now())
        .await
        .unwrap();
    assert_eq!(slots.len(), 3);
    // A booking takes the slot.
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let nine = monday8 + Duration::hours(1);
    let c = store
        .create_consultation(
            &w.actor(&w.hw1),
            w.s1.id,
            w.h1.id,
            &booking(p.id, nine, Some(w.doc1.id)),
        )
        .await
        .unwrap();
    assert_eq!(
        (c.state, c.doctor_id, c.scheduled_end.unwrap().0),
        (
            ConsultationState::Scheduled,
            Some(w.doc1.id),
            nine + Duration::minutes(20)
        )
    );
    let slots = store.free_slots(w.h1.id, None, day, Utc::now()).await.unwrap();
    let at_nine = slots.iter().find(|s| s.start.0 == nine).unwrap();
    assert_eq!(at_nine.doctor_ids, [w.doc1b.id]);
}
on_both!(slots_follow_hours_leave_and_bookings);

async fn bookings_are_refused_when_not_possible(store: Store) {
    let w = world(&store).await;
    store
        .set_doctor_hours(&Actor::system(), w.doc1.id, &weekday_hours(8, 9))
        .await
        .unwrap();
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let a = w.actor(&w.hw1);
    let m8 = next_monday_8();
    let book = |start, doctor| {
        let (store, a, input) = (store.clone(), a.clone(), booking(p.id, start, doctor));
        let (station, hospital) = (w.s1.id, w.h1.id);
        async move { store.create_consultation(&a, station, hospital, &input).await }
    };
    // Not on the grid.
    assert!(
        matches!(book(m8 + Duration::minutes(7), None).await, Err(RecordsError::Invalid(e)) if e[0].code == "not_a_slot")
    );
    // Outside working hours.
    assert!(matches!(
        book(m8 + Duration::hours(3), None).await,
        Err(RecordsError::AlreadyTaken(Contested::Slot))
    ));
    // In the past.
    let past = Utc.with_ymd_and_hms(2020, 1, 6, 1, 0, 0).unwrap();
    assert!(matches!(book(past, None).await, Err(RecordsError::Invalid(e)) if e[0].code == "slot_in_past"));
    // A doctor of another hospital.
    assert!(
        matches!(book(m8, Some(w.doc2.id)).await, Err(RecordsError::Invalid(e)) if e[0].field == "doctor_id")
    );
    // The same slot twice.
    book(m8, None).await.unwrap();
    assert!(matches!(
        book(m8, Some(w.doc1.id)).await,
        Err(RecordsError::AlreadyTaken(Contested::Slot))
    ));
    // Urgent requests take no time.
    let urgent = ConsultationInput {
        kind: ConsultationKind::Urgent,
        ..booking(p.id, m8, None)
    };
    assert!(matches!(
        store.create_consultation(&a, w.s1.id, w.h1.id, &urgent).await,
        Err(RecordsError::Invalid(_))
    ));
    // The database itself refuses a double booking that skips the checks.
    let c = store
        .consultations(&a, &ConsultationScope::Station(w.s1.id), None, 10)
        .await
        .unwrap();
    let raw = sqlx::query(
        "INSERT INTO consultations (id, patient_id, station_id, hospital_id, doctor_id, requested_by, kind, state, reason, scheduled_start, scheduled_end, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', 'scheduled', 'x', $7, $8, $9, $9)",
    )
    .bind(ConsultationId::new())
    .bind(p.id)
    .bind(w.s1.id)
    .bind(w.h1.id)
    .bind(w.doc1.id)
    .bind(w.hw1.id)
    .bind(c[0].scheduled_start)
    .bind(c[0].scheduled_end)
    .bind(Timestamp::now())
    .execute(store.pool())
    .await;
    assert!(
        raw.is_err(),
        "unique index must refuse a second live booking of one doctor's slot"
    );
}
on_both!(bookings_are_refused_when_not_possible);

async fn concurrent_bookings_of_one_slot_never_double_book(store: Store) {
    let w = world(&store).await;
    let sys = Actor::system();
    store
        .set_doctor_hours(&sys, w.doc1.id, &weekday_hours(8, 9))
        .await
        .unwrap();
    store
        .set_doctor_hours(&sys, w.doc1b.id, &weekday_hours(8, 9))
        .await
        .unwrap();
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let m8 = next_monday_8();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (store, a, input) = (store.clone(), w.actor(&w.hw1), booking(p.id, m8, None));
        let station = w.s1.id;
        let hospital = w.h1.id;
        tasks.push(tokio::spawn(async move {
            store.create_consultation(&a, station, hospital, &input).await
        }));
    }
    let mut doctors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(c) => doctors.push(c.doctor_id.unwrap()),
            Err(RecordsError::AlreadyTaken(Contested::Slot)) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    doctors.sort();
    let mut expected = vec![w.doc1.id, w.doc1b.id];
    expected.sort();
    assert_eq!(doctors, expected, "two doctors, two bookings, one each");
}
on_both!(concurrent_bookings_of_one_slot_never_double_book);

async fn reschedule_no_show_and_restart(store: Store) {
    let w = world(&store).await;
    let sys = Actor::system();
    store
        .set_doctor_hours(&sys, w.doc1.id, &weekday_hours(8, 10))
        .await
        .unwrap();
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let a = w.actor(&w.hw1);
    let m8 = next_monday_8();
    let c = store
        .create_consultation(&a, w.s1.id, w.h1.id, &booking(p.id, m8, None))
        .await
        .unwrap();
    let moved = store
        .reschedule(&a, c.id, Timestamp(m8 + Duration::minutes(40)), None)
        .await
        .unwrap();
    assert_eq!(moved.scheduled_start.unwrap().0, m8 + Duration::minutes(40));
    // The old slot is free again; the new one is taken.
    let c2 = store
        .create_consultation(&a, w.s1.id, w.h1.id, &booking(p.id, m8, None))
        .await
        .unwrap();
    assert!(matches!(
        store
            .reschedule(&a, c2.id, Timestamp(m8 + Duration::minutes(40)), None)
            .await,
        Err(RecordsError::AlreadyTaken(Contested::Slot))
    ));
    // No-show: 15 minutes' grace after the start.
    assert!(store
        .mark_no_shows(m8 + Duration::minutes(10), Duration::minutes(15))
        .await
        .unwrap()
        .is_empty());
    let gone = store
        .mark_no_shows(m8 + Duration::minutes(16), Duration::minutes(15))
        .await
        .unwrap();
    assert_eq!(gone.iter().map(|c| c.id).collect::<Vec<_>>(), [c2.id]);
    assert_eq!(
        store.consultation(c2.id).await.unwrap().state,
        ConsultationState::NoShow
    );
    assert_eq!(
        store.consultation(c.id).await.unwrap().state,
        ConsultationState::Scheduled
    );
    // A consultation live when the server stopped is interrupted on restart.
    store
        .transition_consultation(&sys, c.id, ConsultationState::InProgress)
        .await
        .unwrap();
    // Not while another live node hosts its call.
    let six = std::time::Duration::from_secs(6);
    for n in ["other", "me"] {
        let hb = NodeHeartbeat {
            id: n,
            instance: n,
            url: "http://127.0.0.1:1",
            media: "",
            draining: n == "me",
            rooms: 0,
            participants: 0,
        };
        store.node_heartbeat(&hb, Some(six)).await.unwrap();
    }
    assert_eq!(
        store.place_call(c.id, six).await.unwrap().unwrap().node_id,
        "other"
    );
    assert!(store
        .interrupt_live_consultations("me", six)
        .await
        .unwrap()
        .is_empty());
    sqlx::query("UPDATE nodes SET heartbeat_at = heartbeat_at - 60000 WHERE id = 'other'")
        .execute(store.pool())
        .await
        .unwrap();
    let interrupted = store.interrupt_live_consultations("me", six).await.unwrap();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(
        store.consultation(c.id).await.unwrap().state,
        ConsultationState::Interrupted
    );
    let log = store.session_events(c.id).await.unwrap();
    assert!(log.iter().any(|e| e.kind == "rescheduled"));
    assert_eq!(log.last().unwrap().data["to"], "interrupted");
}
on_both!(reschedule_no_show_and_restart);

async fn working_hours_are_validated(store: Store) {
    let w = world(&store).await;
    let bad = [
        WorkingHours {
            weekday: 8,
            start_minute: 0,
            end_minute: 60,
        },
        WorkingHours {
            weekday: 1,
            start_minute: 600,
            end_minute: 500,
        },
        WorkingHours {
            weekday: 2,
            start_minute: 480,
            end_minute: 720,
        },
        WorkingHours {
            weekday: 2,
            start_minute: 600,
            end_minute: 780,
        },
    ];
    match store.set_doctor_hours(&Actor::system(), w.doc1.id, &bad).await {
        Err(RecordsError::Invalid(e)) => {
            let codes: Vec<_> = e.iter().map(|e| e.code).collect();
            assert_eq!(codes, ["out_of_range", "invalid_hours", "overlapping_hours"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        store.doctor_hours(w.doc1.id).await.unwrap().is_empty(),
        "nothing half-written"
    );
}
on_both!(working_hours_are_validated);
