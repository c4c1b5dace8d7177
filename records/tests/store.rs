//! The records store's behaviour, run against SQLite and PostgreSQL alike.

mod common;

use std::sync::Arc;

use common::{patient_input, world};
use telehealth_records::*;

async fn urgent(store: &Store, w: &common::World, patient: PatientId) -> Consultation {
    store
        .create_consultation(
            &w.actor(&w.hw1),
            w.s1.id,
            w.h1.id,
            &ConsultationInput {
                patient_id: patient,
                kind: ConsultationKind::Urgent,
                reason: Pii("Sốt cao 3 ngày".into()),
                hospital_id: None,
                scheduled_start: None,
                doctor_id: None,
                vitals: None,
            },
        )
        .await
        .unwrap()
}

fn content(assessment: &str) -> NoteContent {
    NoteContent {
        subjective: Pii("Sốt 3 ngày, ho".into()),
        objective: Pii("T 38.5".into()),
        assessment: Pii(assessment.into()),
        plan: Pii("Paracetamol".into()),
        icd10_codes: vec!["j18.9".into()],
        disposition: Some(Disposition::TreatAtStation),
    }
}

async fn patients_are_created_found_and_updated(store: Store) {
    let w = world(&store).await;
    let a = w.actor(&w.hw1);
    let mut input = patient_input("Nguyễn Thị Đào");
    input.cccd = Some(Pii("001185012345".into()));
    input.bhyt = Some(Pii("dn4010123456789".into()));
    let p = store.create_patient(&a, w.s1.id, &input).await.unwrap();
    w.consent(&store, p.id).await;
    assert_eq!(p.version, 1);
    assert_eq!(p.bhyt.as_ref().unwrap().0, "DN4010123456789");
    // The FHIR export's identifier search: the BHYT as typed or as stored.
    for typed in ["dn4010123456789", " DN40 1012 3456 789 "] {
        assert_eq!(store.bhyt_holder(typed).await.unwrap(), Some((p.id, w.s1.id)));
    }
    assert_eq!(store.bhyt_holder("DN4010123456780").await.unwrap(), None);
    assert_eq!(store.bhyt_holder("not a card").await.unwrap(), None);

    let scope = PatientScope::Facility(w.s1.id);
    for q in [
        "dao",
        "NGUYEN thi",
        "Đào",
        "0912345",
        "001185012345",
        "+84912345678",
    ] {
        let found = store.search_patients(&a, &scope, q, 20).await.unwrap();
        assert_eq!(found.len(), 1, "query {q:?}");
    }
    // Another station's scope does not see the patient.
    let other = store
        .search_patients(&a, &PatientScope::Facility(w.s2.id), "dao", 20)
        .await
        .unwrap();
    assert!(other.is_empty());
    // LIKE wildcards typed by a user match literally.
    assert!(store
        .search_patients(&a, &scope, "%", 20)
        .await
        .unwrap()
        .is_empty());

    // A duplicate CCCD is refused, naming the field.
    let mut dup = patient_input("Người khác");
    dup.cccd = Some(Pii("001185012345".into()));
    match store.create_patient(&a, w.s1.id, &dup).await {
        Err(RecordsError::Duplicate(value)) => assert_eq!(value, Unique::Cccd),
        other => panic!("expected duplicate, got {other:?}"),
    }

    let mut changed = input.clone();
    changed.full_name = Pii("Nguyễn Thị Đào Hoa".into());
    let p2 = store.update_patient(&a, p.id, 1, &changed).await.unwrap();
    assert_eq!(p2.version, 2);
    match store.update_patient(&a, p.id, 1, &changed).await {
        Err(RecordsError::VersionConflict { current }) => assert_eq!(current, 2),
        other => panic!("expected version conflict, got {other:?}"),
    }
    assert_eq!(
        store
            .search_patients(&a, &scope, "dao hoa", 20)
            .await
            .unwrap()
            .len(),
        1
    );
}
on_both!(patients_are_created_found_and_updated);

async fn invalid_patients_are_refused_with_every_field_named(store: Store) {
    let w = world(&store).await;
    let input = PatientInput {
        full_name: Pii("  ".into()),
        date_of_birth: Pii("2999-01-01".into()),
        sex: Some(Sex::Male),
        phone: Some(Pii("123".into())),
        address: None,
        cccd: Some(Pii("12ab".into())),
        bhyt: Some(Pii("XX9".into())),
    };
    match store.create_patient(&w.actor(&w.hw1), w.s1.id, &input).await {
        Err(RecordsError::Invalid(errs)) => {
            let mut fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
            fields.sort();
            assert_eq!(fields, ["bhyt", "cccd", "date_of_birth", "full_name", "phone"]);
            assert!(errs
                .iter()
                .all(|e| !e.message.is_empty() && !e.message_en.is_empty()));
        }
        other => panic!("expected invalid, got {other:?}"),
    }
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM patients")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing half-written");
}
on_both!(invalid_patients_are_refused_with_every_field_named);

async fn doctors_see_patients_through_consultations(store: Store) {
    let w = world(&store).await;
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("Lò Văn Páo"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let d1 = PatientScope::Doctor {
        doctor: w.doc1.id,
        hospital: w.h1.id,
    };
    let d1b = PatientScope::Doctor {
        doctor: w.doc1b.id,
        hospital: w.h1.id,
    };
    let d2 = PatientScope::Doctor {
        doctor: w.doc2.id,
        hospital: w.h2.id,
    };
    assert!(
        !store.patient_in_scope(p.id, &d1).await.unwrap(),
        "no consultation yet"
    );
    let c = urgent(&store, &w, p.id).await;
    // Queued to hospital 1: both its doctors see it; hospital 2's does not.
    assert!(store.patient_in_scope(p.id, &d1).await.unwrap());
    assert!(store.patient_in_scope(p.id, &d1b).await.unwrap());
    assert!(!store.patient_in_scope(p.id, &d2).await.unwrap());
    // Once doc1 accepts, only doc1 does.
    store
        .accept_consultation(&w.actor(&w.doc1), c.id, w.doc1.id)
        .await
        .unwrap();
    assert!(store.patient_in_scope(p.id, &d1).await.unwrap());
    assert!(!store.patient_in_scope(p.id, &d1b).await.unwrap());
    assert_eq!(
        store
            .search_patients(&w.actor(&w.doc1), &d1, "pao", 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .search_patients(&w.actor(&w.doc1b), &d1b, "pao", 10)
        .await
        .unwrap()
        .is_empty());
}
on_both!(doctors_see_patients_through_consultations);

async fn exactly_one_doctor_wins_an_urgent_request(store: Store) {
    let w = world(&store).await;
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    for _round in 0..5 {
        let c = urgent(&store, &w, p.id).await;
        let store = Arc::new(store.clone());
        let mut tasks = Vec::new();
        for d in [&w.doc1, &w.doc1b, &w.doc1, &w.doc1b] {
            let (store, actor, id) = (store.clone(), w.actor(d), d.id);
            tasks.push(tokio::spawn(async move {
                store.accept_consultation(&actor, c.id, id).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => wins += 1,
                Err(RecordsError::AlreadyTaken(_)) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(wins, 1);
    }
}
on_both!(exactly_one_doctor_wins_an_urgent_request);

async fn consultation_transitions_are_checked_and_logged(store: Store) {
    let w = world(&store).await;
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let c = urgent(&store, &w, p.id).await;
    let a = w.actor(&w.doc1);
    match store
        .transition_consultation(&a, c.id, ConsultationState::Completed)
        .await
    {
        Err(RecordsError::IllegalTransition { from, to }) => {
            assert_eq!(
                (from, to),
                (ConsultationState::Requested, ConsultationState::Completed)
            )
        }
        other => panic!("{other:?}"),
    }
    let c2 = store
        .transition_consultation(&a, c.id, ConsultationState::InProgress)
        .await
        .unwrap();
    assert!(c2.started_at.is_some());
    let c3 = store
        .transition_consultation(&a, c.id, ConsultationState::Completed)
        .await
        .unwrap();
    assert!(c3.ended_at.is_some());
    let events = store.session_events(c.id).await.unwrap();
    let states: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "state_changed")
        .map(|e| e.data["to"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["requested", "in_progress", "completed"]);
    // The metrics' counts by state: every state, zeros included.
    let counts = store.consultation_counts().await.unwrap();
    assert_eq!(counts.len(), ConsultationState::ALL.len());
    for (state, n) in counts {
        assert_eq!(n, i64::from(state == ConsultationState::Completed), "{state}");
    }
}
on_both!(consultation_transitions_are_checked_and_logged);

async fn signed_notes_never_change_and_amendments_chain(store: Store) {
    let w = world(&store).await;
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let c = urgent(&store, &w, p.id).await;
    let a = w.actor(&w.doc1);
    let n = store
        .create_note(&a, c.id, p.id, w.doc1.id, &content("Viêm phổi"))
        .await
        .unwrap();
    assert_eq!((n.version, n.status), (1, NoteStatus::Draft));
    assert_eq!(n.content.icd10_codes, ["J18.9"]);
    // One original note per consultation.
    assert!(matches!(
        store.create_note(&a, c.id, p.id, w.doc1.id, &content("x")).await,
        Err(RecordsError::Duplicate(Unique::ConsultationNote))
    ));
    let n2 = store
        .update_note(&a, n.id, 1, &content("Viêm phổi cộng đồng"))
        .await
        .unwrap();
    assert_eq!(n2.version, 2);
    let signed = store.sign_note(&a, n.id, 2).await.unwrap();
    assert_eq!(signed.status, NoteStatus::Signed);
    // Signed: the store refuses an edit…
    assert!(matches!(
        store.update_note(&a, n.id, 2, &content("changed")).await,
        Err(RecordsError::Immutable(_))
    ));
    // …and so does the database, even behind the store's back.
    let raw = sqlx::query("UPDATE notes SET assessment = 'tampered' WHERE id = $1")
        .bind(n.id)
        .execute(store.pool())
        .await;
    assert!(raw.is_err(), "trigger must refuse changing a signed note");
    let raw = sqlx::query("DELETE FROM notes WHERE id = $1")
        .bind(n.id)
        .execute(store.pool())
        .await;
    assert!(raw.is_err(), "trigger must refuse deleting a signed note");

    // Amendment: a new draft pointing at the signed note.
    let am = store.amend_note(&a, n.id, w.doc1.id).await.unwrap();
    assert_eq!(am.amends_note_id, Some(n.id));
    assert_eq!(am.status, NoteStatus::Draft);
    assert_eq!(am.content.assessment.0, "Viêm phổi cộng đồng");
    // Only the latest version can be amended.
    assert!(matches!(
        store.amend_note(&a, n.id, w.doc1.id).await,
        Err(RecordsError::AlreadyTaken(_))
    ));
    let am = store
        .update_note(&a, am.id, 1, &content("Viêm phế quản"))
        .await
        .unwrap();
    store.sign_note(&a, am.id, am.version).await.unwrap();
    let am2 = store.amend_note(&a, am.id, w.doc1.id).await.unwrap();
    let history = store.consultation_notes(&a, c.id, false).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].id, n.id);
    assert_eq!(history[1].amends_note_id, Some(n.id));
    assert_eq!(history[2].amends_note_id, Some(am.id));
    assert_eq!(history[2].id, am2.id);
    assert_eq!(store.consultation_notes(&a, c.id, true).await.unwrap().len(), 2);
    let original = store.read_note(&a, n.id).await.unwrap();
    assert_eq!(
        original.content.assessment.0, "Viêm phổi cộng đồng",
        "signed text unchanged"
    );
}
on_both!(signed_notes_never_change_and_amendments_chain);

async fn concurrent_draft_saves_one_wins_one_conflicts(store: Store) {
    let w = world(&store).await;
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let c = urgent(&store, &w, p.id).await;
    let a = w.actor(&w.doc1);
    let n = store
        .create_note(&a, c.id, p.id, w.doc1.id, &content("v1"))
        .await
        .unwrap();
    let (s1, s2) = (store.clone(), store.clone());
    let (a1, a2) = (a.clone(), a.clone());
    let t1 = tokio::spawn(async move { s1.update_note(&a1, n.id, 1, &content("tab one")).await });
    let t2 = tokio::spawn(async move { s2.update_note(&a2, n.id, 1, &content("tab two")).await });
    let r = [t1.await.unwrap(), t2.await.unwrap()];
    let ok = r.iter().filter(|r| r.is_ok()).count();
    let conflicts = r
        .iter()
        .filter(|r| matches!(r, Err(RecordsError::VersionConflict { current: 2 })))
        .count();
    assert_eq!((ok, conflicts), (1, 1), "{r:?}");
    // The winner's retry of the very same save is answered, not refused.
    let winner = r.iter().find_map(|r| r.as_ref().ok()).unwrap();
    let again = store.update_note(&a, n.id, 1, &winner.content).await.unwrap();
    assert_eq!(again.version, 2);
    assert_eq!(again.content, winner.content);
}
on_both!(concurrent_draft_saves_one_wins_one_conflicts);

async fn signing_needs_assessment_and_disposition(store: Store) {
    let w = world(&store).await;
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let c = urgent(&store, &w, p.id).await;
    let a = w.actor(&w.doc1);
    let n = store
        .create_note(&a, c.id, p.id, w.doc1.id, &NoteContent::default())
        .await
        .unwrap();
    match store.sign_note(&a, n.id, 1).await {
        Err(RecordsError::Invalid(errs)) => {
            let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["assessment", "disposition"]);
        }
        other => panic!("{other:?}"),
    }
    let bad = NoteContent {
        icd10_codes: vec!["J18.9".into(), "nonsense".into()],
        ..content("x")
    };
    match store.update_note(&a, n.id, 1, &bad).await {
        Err(RecordsError::Invalid(errs)) => assert_eq!(errs[0].field, "icd10_codes[1]"),
        other => panic!("{other:?}"),
    }
}
on_both!(signing_needs_assessment_and_disposition);

async fn vitals_are_range_checked(store: Store) {
    let w = world(&store).await;
    let a = w.actor(&w.hw1);
    let p = store
        .create_patient(&a, w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let good = Measurements {
        temperature_c: Some(38.5),
        pulse_bpm: Some(96),
        systolic_mmhg: Some(120),
        diastolic_mmhg: Some(80),
        respiratory_rate: Some(20),
        spo2_pct: Some(97),
        weight_kg: Some(52.5),
    };
    let v = store.record_vitals(&a, p.id, None, &good).await.unwrap();
    assert_eq!(v.measurements, good);
    // One set by id (the FHIR export's Observation read).
    let one = store.vitals(v.id).await.unwrap();
    assert_eq!((one.patient_id, one.measurements), (p.id, good.clone()));
    assert!(matches!(
        store.vitals(VitalsId::new()).await,
        Err(RecordsError::NotFound("vitals"))
    ));
    let bad = Measurements {
        temperature_c: Some(385.0),
        systolic_mmhg: Some(80),
        diastolic_mmhg: Some(120),
        spo2_pct: Some(101),
        ..Default::default()
    };
    match store.record_vitals(&a, p.id, None, &bad).await {
        Err(RecordsError::Invalid(errs)) => {
            let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["temperature_c", "diastolic_mmhg", "spo2_pct"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(store
        .record_vitals(&a, p.id, None, &Measurements::default())
        .await
        .is_err());
    assert_eq!(store.patient_vitals(&a, p.id).await.unwrap().len(), 1);
}
on_both!(vitals_are_range_checked);

async fn every_patient_access_is_audited_and_the_log_is_append_only(store: Store) {
    let w = world(&store).await;
    let a = w.actor(&w.hw1);
    let p = store
        .create_patient(&a, w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    store.read_patient(&a, p.id).await.unwrap();
    store
        .search_patients(&a, &PatientScope::Facility(w.s1.id), "a", 10)
        .await
        .unwrap();
    store
        .record_vitals(
            &a,
            p.id,
            None,
            &Measurements {
                pulse_bpm: Some(80),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    store.patient_vitals(&a, p.id).await.unwrap();
    let entries = store
        .audit_entries(&AuditQuery {
            patient_id: Some(p.id),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<_> = entries.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "patient.create",
            "patient.read",
            "patient.search",
            "vitals.create",
            "vitals.read"
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e.actor_id == Some(w.hw1.id) && e.client_addr.as_deref() == Some("127.0.0.1")));
    assert!(common::refuses_rewrites(&store, "audit_log", "action = 'x'").await);
}
on_both!(every_patient_access_is_audited_and_the_log_is_append_only);

async fn a_consultation_needs_the_patients_current_consent(store: Store) {
    let w = world(&store).await;
    let a = w.actor(&w.hw1);
    let p = store
        .create_patient(&a, w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    let request = ConsultationInput {
        patient_id: p.id,
        kind: ConsultationKind::Urgent,
        reason: Pii("Sốt".into()),
        hospital_id: None,
        scheduled_start: None,
        doctor_id: None,
        vitals: None,
    };
    let refused = |r: Result<telehealth_records::Consultation, RecordsError>| match r {
        Err(RecordsError::Consent(problem)) => problem,
        other => panic!("{other:?}"),
    };
    // Never asked: refused, and nothing written.
    assert_eq!(
        refused(store.create_consultation(&a, w.s1.id, w.h1.id, &request).await),
        ConsentProblem::Missing
    );
    let event = |decision| ConsentInput {
        decision: Some(decision),
        given_by: Some(ConsentGiver::Guardian),
        guardian_name: Some(Pii("Lò Thị Dung".into())),
        guardian_relation: Some(Pii("con gái".into())),
        text_version: Some(current_consent_text().version.to_owned()),
    };
    let (granted, none) = store
        .record_consent(&a, p.id, w.s1.id, &event(ConsentDecision::Granted))
        .await
        .unwrap();
    assert!(none.is_empty(), "a grant cancels nothing");
    assert_eq!(granted.recorded_by, w.hw1.id);
    assert_eq!(granted.recorded_by_name, "HW1");
    assert_eq!(
        granted.guardian_relation.as_ref().map(|r| r.0.as_str()),
        Some("con gái")
    );
    let waiting = store
        .create_consultation(&a, w.s1.id, w.h1.id, &request)
        .await
        .unwrap();
    // Withdrawn: the waiting request is cancelled in the same write, with
    // its session event; urgent and booked requests are both refused.
    let (_, cancelled) = store
        .record_consent(&a, p.id, w.s1.id, &event(ConsentDecision::Withdrawn))
        .await
        .unwrap();
    assert_eq!(
        cancelled.iter().map(|c| (c.id, c.state)).collect::<Vec<_>>(),
        [(waiting.id, ConsultationState::Cancelled)]
    );
    assert_eq!(
        store.consultation(waiting.id).await.unwrap().state,
        ConsultationState::Cancelled
    );
    assert!(store
        .session_events(waiting.id)
        .await
        .unwrap()
        .iter()
        .any(|e| e.kind == "state_changed" && e.data["to"] == "cancelled"));
    assert_eq!(
        refused(store.create_consultation(&a, w.s1.id, w.h1.id, &request).await),
        ConsentProblem::Withdrawn
    );
    let booking = ConsultationInput {
        kind: ConsultationKind::Scheduled,
        scheduled_start: Some(Timestamp(chrono::Utc::now() + chrono::Duration::days(2))),
        ..request.clone()
    };
    assert_eq!(
        refused(store.create_consultation(&a, w.s1.id, w.h1.id, &booking).await),
        ConsentProblem::Withdrawn
    );
    // Given again: allowed again; the history keeps every event, newest first.
    store
        .record_consent(&a, p.id, w.s1.id, &event(ConsentDecision::Granted))
        .await
        .unwrap();
    store
        .create_consultation(&a, w.s1.id, w.h1.id, &request)
        .await
        .unwrap();
    let history: Vec<_> = store
        .consents(&a, p.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.decision)
        .collect();
    assert_eq!(
        history,
        [
            ConsentDecision::Granted,
            ConsentDecision::Withdrawn,
            ConsentDecision::Granted
        ]
    );
    let actions: Vec<_> = store
        .audit_entries(&AuditQuery {
            patient_id: Some(p.id),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .rev()
        .map(|e| e.action)
        .filter(|a| a.starts_with("consent."))
        .collect();
    assert_eq!(
        actions,
        [
            "consent.grant",
            "consent.withdraw",
            "consent.grant",
            "consent.read"
        ]
    );
    // Nobody rewrites what a patient said.
    assert!(common::refuses_rewrites(&store, "consents", "decision = 'granted'").await);
}
on_both!(a_consultation_needs_the_patients_current_consent);

async fn facilities_and_users_follow_their_rules(store: Store) {
    let w = world(&store).await;
    let sys = Actor::system();
    let orphan = FacilityInput {
        code: "S9".into(),
        name: "Trạm".into(),
        kind: FacilityKind::CommuneStation,
        referral_hospital_id: None,
        province: "Lào Cai".into(),
    };
    assert!(matches!(
        store.create_facility(&sys, &orphan).await,
        Err(RecordsError::Invalid(_))
    ));
    let to_station = FacilityInput {
        referral_hospital_id: Some(w.s1.id),
        ..orphan.clone()
    };
    assert!(matches!(
        store.create_facility(&sys, &to_station).await,
        Err(RecordsError::Invalid(_))
    ));
    let dup = FacilityInput {
        code: "H1".into(),
        kind: FacilityKind::DistrictHospital,
        referral_hospital_id: None,
        ..orphan.clone()
    };
    assert!(matches!(
        store.create_facility(&sys, &dup).await,
        Err(RecordsError::Duplicate(Unique::FacilityCode))
    ));
    let doc_at_station = NewUser {
        username: "d9".into(),
        display_name: "D".into(),
        password_hash: "x".into(),
        role: Role::Doctor,
        facility_id: Some(w.s1.id),
    };
    assert!(matches!(
        store.create_user(&sys, &doc_at_station).await,
        Err(RecordsError::Invalid(_))
    ));
    let dup_user = NewUser {
        username: "HW1".into(),
        facility_id: Some(w.s1.id),
        role: Role::HealthWorker,
        ..doc_at_station
    };
    assert!(matches!(
        store.create_user(&sys, &dup_user).await,
        Err(RecordsError::Duplicate(Unique::Username))
    ));
    // Deactivating an account ends its sessions.
    let sid = store
        .create_auth_session(
            &sys,
            w.hw1.id,
            "hash1",
            Timestamp(chrono::Utc::now() + chrono::Duration::hours(1)),
        )
        .await
        .unwrap();
    assert!(store.session_user(sid).await.unwrap().is_some());
    store
        .update_user(
            &sys,
            w.hw1.id,
            &UserChanges {
                active: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(store.session_user(sid).await.unwrap().is_none());
}
on_both!(facilities_and_users_follow_their_rules);

async fn refresh_tokens_rotate_once(store: Store) {
    let w = world(&store).await;
    let exp = Timestamp(chrono::Utc::now() + chrono::Duration::hours(1));
    let sid = store
        .create_auth_session(&Actor::system(), w.doc1.id, "old", exp)
        .await
        .unwrap();
    let s = store
        .rotate_refresh_token("old", "new", exp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.id, sid);
    assert!(store
        .rotate_refresh_token("old", "newer", exp)
        .await
        .unwrap()
        .is_none());
    store.revoke_auth_session(&Actor::system(), sid).await.unwrap();
    assert!(store
        .rotate_refresh_token("new", "newer", exp)
        .await
        .unwrap()
        .is_none());
    assert!(store.session_user(sid).await.unwrap().is_none());
}
on_both!(refresh_tokens_rotate_once);

async fn a_request_carries_its_vitals_or_writes_nothing(store: Store) {
    let w = world(&store).await;
    let a = w.actor(&w.hw1);
    let p = store
        .create_patient(&a, w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    let input = |m: Measurements| ConsultationInput {
        patient_id: p.id,
        kind: ConsultationKind::Urgent,
        reason: Pii("Sốt".into()),
        hospital_id: None,
        scheduled_start: None,
        doctor_id: None,
        vitals: Some(m),
    };
    let bad = Measurements {
        spo2_pct: Some(140),
        ..Default::default()
    };
    match store.create_consultation(&a, w.s1.id, w.h1.id, &input(bad)).await {
        Err(RecordsError::Invalid(e)) => assert_eq!(e[0].field, "spo2_pct"),
        other => panic!("{other:?}"),
    }
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM consultations")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "invalid vitals: no consultation either");
    let good = Measurements {
        temperature_c: Some(39.1),
        spo2_pct: Some(93),
        ..Default::default()
    };
    let c = store
        .create_consultation(&a, w.s1.id, w.h1.id, &input(good.clone()))
        .await
        .unwrap();
    let v = store.patient_vitals(&a, p.id).await.unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].consultation_id, &v[0].measurements), (Some(c.id), &good));
}
on_both!(a_request_carries_its_vitals_or_writes_nothing);

fn beat<'a>(id: &'a str, instance: &'a str, draining: bool) -> NodeHeartbeat<'a> {
    NodeHeartbeat {
        id,
        instance,
        url: "http://127.0.0.1:1",
        media: "127.0.0.1:50000",
        draining,
        rooms: 0,
        participants: 0,
    }
}

const DEAD_AFTER: std::time::Duration = std::time::Duration::from_secs(6);

/// Makes node `id`'s last heartbeat a minute old, as if it had died.
async fn age_node(store: &Store, id: &str) {
    sqlx::query("UPDATE nodes SET heartbeat_at = heartbeat_at - 60000 WHERE id = $1")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
}

async fn a_node_id_belongs_to_one_live_process(store: Store) {
    store
        .node_heartbeat(&beat("a", "first", false), Some(DEAD_AFTER))
        .await
        .unwrap();
    store
        .node_heartbeat(&beat("a", "first", false), Some(DEAD_AFTER))
        .await
        .unwrap();
    match store
        .node_heartbeat(&beat("a", "second", false), Some(DEAD_AFTER))
        .await
    {
        Err(HeartbeatError::IdInUse(id)) => assert_eq!(id, "a"),
        other => panic!("a second live process took node a: {other:?}"),
    }
    // Once the first is dead, a new process may take the id over.
    age_node(&store, "a").await;
    store
        .node_heartbeat(&beat("a", "second", false), Some(DEAD_AFTER))
        .await
        .unwrap();
    assert!(matches!(
        store
            .node_heartbeat(&beat("a", "first", false), Some(DEAD_AFTER))
            .await,
        Err(HeartbeatError::IdInUse(_))
    ));
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].heartbeat_age_ms < 5000, "{nodes:?}");
    // One process per database (SQLite's lock): it takes the id whatever
    // the last heartbeat says (a clock that went back).
    sqlx::query("UPDATE nodes SET heartbeat_at = heartbeat_at + 3600000")
        .execute(store.pool())
        .await
        .unwrap();
    store
        .node_heartbeat(&beat("a", "third", false), None)
        .await
        .unwrap();
    store.node_leave("a", "third").await.unwrap();
    store.node_leave("a", "second").await.unwrap();
    assert!(store.nodes().await.unwrap().is_empty());
}
on_both!(a_node_id_belongs_to_one_live_process);

async fn calls_are_placed_once_spread_and_moved_off_dead_nodes(store: Store) {
    let w = world(&store).await;
    let p = store
        .create_patient(&w.actor(&w.hw1), w.s1.id, &patient_input("A"))
        .await
        .unwrap();
    w.consent(&store, p.id).await;
    // No node yet: nobody can take a call.
    let first = urgent(&store, &w, p.id).await;
    assert_eq!(store.place_call(first.id, DEAD_AFTER).await.unwrap(), None);
    for n in ["a", "b", "c"] {
        store
            .node_heartbeat(&beat(n, n, false), Some(DEAD_AFTER))
            .await
            .unwrap();
    }
    // Nine calls placed at the same moment, from several tasks: three each.
    let mut calls = Vec::new();
    for _ in 0..9 {
        calls.push(urgent(&store, &w, p.id).await.id);
    }
    let mut tasks = Vec::new();
    for &c in &calls {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.place_call(c, DEAD_AFTER).await }));
    }
    let mut placed = Vec::new();
    for t in tasks {
        placed.push(t.await.unwrap().unwrap().expect("a live node"));
    }
    for n in ["a", "b", "c"] {
        let on_n = placed.iter().filter(|p| p.node_id == n).count();
        assert_eq!(on_n, 3, "node {n} got {on_n} of 9: {placed:?}");
        assert_eq!(store.placements_of(n).await.unwrap().len(), 3);
    }
    // A call keeps its node while that node lives.
    for p in &placed {
        let again = store
            .place_call(p.consultation_id, DEAD_AFTER)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(p.placed_now, Some(None), "placed for the first time");
        assert_eq!(
            (&again.node_id, again.epoch, again.placed_now),
            (&p.node_id, 1, None)
        );
    }
    // A draining node keeps its calls and takes no new one.
    store
        .node_heartbeat(&beat("c", "c", true), Some(DEAD_AFTER))
        .await
        .unwrap();
    let on_c = placed.iter().find(|p| p.node_id == "c").unwrap();
    assert_eq!(
        store
            .place_call(on_c.consultation_id, DEAD_AFTER)
            .await
            .unwrap()
            .unwrap()
            .node_id,
        "c"
    );
    let new = store.place_call(first.id, DEAD_AFTER).await.unwrap().unwrap();
    assert_ne!(new.node_id, "c");
    // Node b dies: its calls move, with a higher epoch, and b no longer
    // holds them (what fences it if it comes back).
    age_node(&store, "b").await;
    for p in placed.iter().filter(|p| p.node_id == "b") {
        let moved = store
            .place_call(p.consultation_id, DEAD_AFTER)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.node_id, "a", "c drains, so b's calls go to a");
        assert_eq!(moved.epoch, 2);
        assert_eq!(moved.placed_now, Some(Some("b".to_owned())));
    }
    assert!(store.placements_of("b").await.unwrap().is_empty());
    // A call given up is placed again with a higher epoch; a stale release
    // (an old epoch) changes nothing.
    let on_a = store.place_call(calls[0], DEAD_AFTER).await.unwrap().unwrap();
    assert!(!store
        .release_call(on_a.consultation_id, &on_a.node_id, on_a.epoch - 1)
        .await
        .unwrap());
    assert!(store
        .release_call(on_a.consultation_id, &on_a.node_id, on_a.epoch)
        .await
        .unwrap());
    let again = store
        .place_call(on_a.consultation_id, DEAD_AFTER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.epoch, on_a.epoch + 1);
    assert_eq!(
        again.placed_now,
        Some(Some(on_a.node_id.clone())),
        "placed again, from its old node"
    );
    assert!(
        !store
            .placements_of(&on_a.node_id)
            .await
            .unwrap()
            .iter()
            .any(|(c, e)| *c == on_a.consultation_id && *e == on_a.epoch),
        "its old node holds it no more"
    );
    // Every node dead: nobody can take a call.
    for n in ["a", "c"] {
        age_node(&store, n).await;
    }
    assert_eq!(store.place_call(calls[1], DEAD_AFTER).await.unwrap(), None);
}
on_both!(calls_are_placed_once_spread_and_moved_off_dead_nodes);

async fn a_job_lease_is_held_by_one_node_until_it_lapses(store: Store) {
    let ttl = std::time::Duration::from_secs(90);
    assert!(store.take_lease("no_shows", "a", ttl).await.unwrap());
    assert!(!store.take_lease("no_shows", "b", ttl).await.unwrap());
    assert!(
        store.take_lease("no_shows", "a", ttl).await.unwrap(),
        "renewed by its holder"
    );
    assert!(store.take_lease("other_job", "b", ttl).await.unwrap());
    sqlx::query("UPDATE job_leases SET until = until - 100000 WHERE name = 'no_shows'")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(
        store.take_lease("no_shows", "b", ttl).await.unwrap(),
        "taken over once lapsed"
    );
    assert!(!store.take_lease("no_shows", "a", ttl).await.unwrap());
}
on_both!(a_job_lease_is_held_by_one_node_until_it_lapses);
