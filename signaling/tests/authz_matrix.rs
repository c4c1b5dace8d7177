//! The authorization matrix: every route × every kind of caller → the
//! expected status. The table is checked against the router's own route
//! table, so a new endpoint without a row fails this test.
//!
//! Callers: a health worker of the patient's station and of another station,
//! the doctor assigned to the consultation and a doctor of another hospital,
//! an admin, and no login at all. Each row runs on a fresh world so that one
//! caller's allowed write cannot change what the next one sees.

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{json, Value};
use telehealth_records::Store;

/// Statuses for: hw own station, hw other station, doctor assigned, doctor
/// of another hospital, admin, anonymous.
type Row = (Method, &'static str, fn(&Ids) -> Option<Value>, [u16; 6]);

struct Ids {
    patient: String,
    facility: String,
    user: String,
    hw1_username: String,
}

fn none(_: &Ids) -> Option<Value> {
    None
}

fn matrix() -> Vec<Row> {
    use Method as M;
    vec![
        (M::GET, "/healthz", none, [200, 200, 200, 200, 200, 200]),
        (M::GET, "/readyz", none, [200, 200, 200, 200, 200, 200]),
        (M::GET, "/api/openapi.json", none, [200, 200, 200, 200, 200, 200]),
        (
            M::POST,
            "/api/auth/login",
            |i| Some(json!({"username": i.hw1_username, "password": PASSWORD})),
            [200, 200, 200, 200, 200, 200],
        ),
        // A bearer access token is not a refresh token.
        (
            M::POST,
            "/api/auth/refresh",
            |_| Some(json!({})),
            [401, 401, 401, 401, 401, 401],
        ),
        (M::POST, "/api/auth/logout", none, [204, 204, 204, 204, 204, 401]),
        (M::GET, "/api/auth/me", none, [200, 200, 200, 200, 200, 401]),
        // Past the login check, a plain GET is not a WebSocket upgrade.
        (M::GET, "/api/ws", none, [400, 400, 400, 400, 400, 401]),
        (M::GET, "/api/facilities", none, [200, 200, 200, 200, 200, 401]),
        (
            M::POST,
            "/api/facilities",
            |_| {
                Some(
                    json!({"code": "H9", "name": "BV mới", "kind": "district_hospital", "province": "Hà Giang"}),
                )
            },
            [403, 403, 403, 403, 201, 401],
        ),
        (
            M::GET,
            "/api/facilities/{id}",
            none,
            [200, 200, 200, 200, 200, 401],
        ),
        (
            M::PUT,
            "/api/facilities/{id}",
            |_| {
                Some(
                    json!({"code": "H1", "name": "BV đổi tên", "kind": "district_hospital", "province": "Hà Giang"}),
                )
            },
            [403, 403, 403, 403, 200, 401],
        ),
        (M::GET, "/api/users", none, [403, 403, 403, 403, 200, 401]),
        (
            M::POST,
            "/api/users",
            |i| {
                Some(
                    json!({"username": "new.user", "display_name": "Người mới", "password": "mat-khau-du-dai", "role": "doctor", "facility_id": i.facility}),
                )
            },
            [403, 403, 403, 403, 201, 401],
        ),
        (M::GET, "/api/users/{id}", none, [403, 403, 403, 403, 200, 401]),
        (
            M::PATCH,
            "/api/users/{id}",
            |_| Some(json!({"display_name": "Tên mới"})),
            [403, 403, 403, 403, 200, 401],
        ),
        (M::GET, "/api/audit", none, [403, 403, 403, 403, 200, 401]),
        (M::GET, "/api/audit/verify", none, [403, 403, 403, 403, 200, 401]),
        (M::GET, "/api/sessions", none, [403, 403, 403, 403, 200, 401]),
        (M::GET, "/api/sessions/{id}", none, [403, 403, 403, 403, 200, 401]),
        (
            M::GET,
            "/api/sessions/{id}/events.csv",
            none,
            [403, 403, 403, 403, 200, 401],
        ),
        (
            M::GET,
            "/api/stations/connectivity",
            none,
            [403, 403, 403, 403, 200, 401],
        ),
        (
            M::GET,
            "/api/stations/connectivity.csv",
            none,
            [403, 403, 403, 403, 200, 401],
        ),
        (
            M::POST,
            "/api/patients",
            |_| Some(json!({"full_name": "Bệnh nhân mới", "date_of_birth": "1990-01-01", "sex": "male"})),
            [201, 201, 403, 403, 403, 401],
        ),
        (
            M::GET,
            "/api/patients?q=nguyen",
            none,
            [200, 200, 200, 200, 403, 401],
        ),
        (M::GET, "/api/patients/{id}", none, [200, 403, 200, 403, 403, 401]),
        (
            M::PUT,
            "/api/patients/{id}",
            |_| {
                let mut p = patient_json("Nguyễn Thị Mai");
                p["version"] = json!(1);
                Some(p)
            },
            [200, 403, 403, 403, 403, 401],
        ),
        (
            M::GET,
            "/api/patients/{id}/vitals",
            none,
            [200, 403, 200, 403, 403, 401],
        ),
        (
            M::POST,
            "/api/patients/{id}/vitals",
            |_| Some(json!({"pulse_bpm": 88})),
            [201, 403, 403, 403, 403, 401],
        ),
        (
            M::GET,
            "/api/patients/{id}/consultations",
            none,
            [200, 403, 200, 403, 403, 401],
        ),
        (
            M::GET,
            "/api/patients/{id}/consents",
            none,
            [200, 403, 200, 403, 403, 401],
        ),
        (
            M::POST,
            "/api/patients/{id}/consents",
            |_| Some(consent_json("withdrawn")),
            [201, 403, 403, 403, 403, 401],
        ),
        (M::GET, "/api/consent-text", none, [200, 200, 200, 200, 200, 401]),
        (
            M::POST,
            "/api/consultations",
            |i| Some(json!({"patient_id": i.patient, "kind": "urgent", "reason": "Đau bụng"})),
            [201, 403, 403, 403, 403, 401],
        ),
        (M::GET, "/api/consultations", none, [200, 200, 200, 200, 403, 401]),
        (
            M::GET,
            "/api/consultations/{id}",
            none,
            [200, 403, 200, 403, 403, 401],
        ),
        // The consultation is already the assigned doctor's: 409, past the guard.
        (
            M::POST,
            "/api/consultations/{id}/accept",
            none,
            [403, 403, 409, 403, 403, 401],
        ),
        (
            M::POST,
            "/api/consultations/{id}/state",
            |_| Some(json!({"state": "in_progress"})),
            [403, 403, 200, 403, 403, 401],
        ),
        (
            M::GET,
            "/api/consultations/{id}/notes",
            none,
            [200, 403, 200, 403, 403, 401],
        ),
        (
            M::POST,
            "/api/consultations/{id}/notes",
            |_| Some(note_json("Viêm họng")),
            [403, 403, 201, 403, 403, 401],
        ),
        (
            M::GET,
            "/api/doctors/{id}/hours",
            none,
            [403, 403, 200, 403, 200, 401],
        ),
        (
            M::PUT,
            "/api/doctors/{id}/hours",
            |_| Some(json!({"hours": [{"weekday": 1, "start_minute": 480, "end_minute": 600}]})),
            [403, 403, 200, 403, 200, 401],
        ),
        (
            M::GET,
            "/api/doctors/{id}/leave",
            none,
            [403, 403, 200, 403, 200, 401],
        ),
        (
            M::POST,
            "/api/doctors/{id}/leave",
            |_| {
                Some(
                    json!({"starts_at": "2030-01-07T01:00:00Z", "ends_at": "2030-01-08T01:00:00Z", "reason": "Nghỉ phép"}),
                )
            },
            [403, 403, 201, 403, 201, 401],
        ),
        // The doctor deletes the leave first, so the admin then finds nothing.
        (
            M::DELETE,
            "/api/doctors/{id}/leave/{leave_id}",
            none,
            [403, 403, 204, 403, 404, 401],
        ),
        (
            M::GET,
            "/api/facilities/{id}/doctors",
            none,
            [200, 200, 200, 200, 200, 401],
        ),
        (
            M::GET,
            "/api/facilities/{id}/slots",
            none,
            [200, 200, 200, 200, 403, 401],
        ),
        // An urgent request has no slot to move: 409, past the guard.
        (
            M::POST,
            "/api/consultations/{id}/reschedule",
            |_| Some(json!({"scheduled_start": "2030-01-07T01:00:00Z"})),
            [409, 403, 409, 403, 403, 401],
        ),
        (
            M::POST,
            "/api/consultations/{id}/photos",
            none,
            [201, 403, 201, 403, 403, 401],
        ),
        (
            M::GET,
            "/api/consultations/{id}/photos",
            none,
            [200, 403, 200, 403, 403, 401],
        ),
        (M::GET, "/api/photos/{id}", none, [200, 403, 200, 403, 403, 401]),
        // The note is a draft: the station sees it only once signed.
        (M::GET, "/api/notes/{id}", none, [403, 403, 200, 403, 403, 401]),
        (
            M::PUT,
            "/api/notes/{id}",
            |_| {
                let mut n = note_json("Viêm phế quản");
                n["version"] = json!(1);
                Some(n)
            },
            [403, 403, 200, 403, 403, 401],
        ),
        (
            M::POST,
            "/api/notes/{id}/sign",
            |_| Some(json!({"version": 1})),
            [403, 403, 200, 403, 403, 401],
        ),
        // Only a signed note can be amended: 422, past the guard.
        (
            M::POST,
            "/api/notes/{id}/amend",
            none,
            [403, 403, 422, 403, 403, 401],
        ),
    ]
}

async fn authorization_matrix(
    make_store: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Store> + Send>>,
) {
    let rows = matrix();
    // Every route has a row, and every row is a route.
    let mut routes: Vec<String> = telehealth_signaling::api::route_table()
        .iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    let mut covered: Vec<String> = rows
        .iter()
        .map(|(m, p, _, _)| format!("{m} {}", p.split('?').next().unwrap()))
        .collect();
    routes.sort();
    covered.sort();
    assert_eq!(
        routes, covered,
        "the authorization matrix must have exactly one row per route"
    );

    let mut failures = Vec::new();
    for (method, path, body, expected) in rows {
        let w = world(make_store().await).await;
        // The world: patient P at station 1; consultation C (no note yet)
        // accepted by doc1; note N, a complete draft by doc1 on another
        // consultation of P.
        let (pid, cid) = w.patient_and_consultation("Nguyễn Thị Mai", "001185012345").await;
        let c0 = w.consultation_for(&pid).await;
        let n = call(
            &w.app,
            Method::POST,
            &format!("/api/consultations/{c0}/notes"),
            Some(&w.t_doc1),
            Some(note_json("Viêm phổi")),
        )
        .await;
        let nid = n.body["id"].as_str().unwrap().to_owned();
        let ids = Ids {
            patient: pid.clone(),
            facility: w.h1.id.to_string(),
            user: w.hw1.id.to_string(),
            hw1_username: "hw1".into(),
        };
        let leave = w
            .store
            .add_leave(
                &telehealth_records::Actor::system(),
                w.doc1.id,
                "2030-02-01T00:00:00Z".parse().unwrap(),
                "2030-02-02T00:00:00Z".parse().unwrap(),
                "",
            )
            .await
            .unwrap();
        let photo = w
            .store
            .add_photo(
                &telehealth_records::Actor::user(w.hw1.id, w.hw1.role, None),
                cid.parse().unwrap(),
                pid.parse().unwrap(),
                "image/jpeg",
                JPEG,
            )
            .await
            .unwrap();
        let id = if path.starts_with("/api/photos/") {
            photo.id.to_string()
        } else if path.starts_with("/api/doctors/") {
            w.doc1.id.to_string()
        } else if path.starts_with("/api/patients/") {
            pid.clone()
        } else if path.starts_with("/api/consultations/") || path.starts_with("/api/sessions/") {
            cid.clone()
        } else if path.starts_with("/api/notes/") {
            nid.clone()
        } else if path.starts_with("/api/facilities/") {
            w.h1.id.to_string()
        } else {
            ids.user.clone()
        };
        let url = path.replace("{id}", &id).replace("{leave_id}", &leave.id);
        let callers = [
            Some(&w.t_hw1),
            Some(&w.t_hw2),
            Some(&w.t_doc1),
            Some(&w.t_doc2),
            Some(&w.t_admin),
            None,
        ];
        let names = [
            "hw own",
            "hw other",
            "doctor assigned",
            "doctor other",
            "admin",
            "anonymous",
        ];
        for ((token, name), want) in callers.into_iter().zip(names).zip(expected) {
            let denied_before = denied(&w.store).await;
            let r = if method == Method::POST && path.ends_with("/photos") {
                raw(
                    &w.app,
                    method.clone(),
                    &url,
                    token.map(String::as_str),
                    "image/jpeg",
                    JPEG.to_vec(),
                )
                .await
            } else {
                call(
                    &w.app,
                    method.clone(),
                    &url,
                    token.map(String::as_str),
                    body(&ids),
                )
                .await
            };
            if r.status != StatusCode::from_u16(want).unwrap() {
                failures.push(format!(
                    "{method} {path} as {name}: expected {want}, got {} {}",
                    r.status, r.body
                ));
            }
            // Every refused access to a patient's data leaves an audit entry,
            // whatever refused it (role, facility, a signed note).
            let patient_data = ["/api/patients", "/api/consultations", "/api/notes", "/api/photos"]
                .iter()
                .any(|p| path.starts_with(p));
            let refused = r.status == StatusCode::FORBIDDEN || r.code() == "note_signed";
            if patient_data && refused && token.is_some() && denied(&w.store).await == denied_before {
                failures.push(format!(
                    "{method} {path} as {name}: refused ({}) without an audit entry",
                    r.status
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix mismatches:\n{}",
        failures.join("\n")
    );
}

/// How many refusals the audit log holds.
async fn denied(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE outcome = 'denied'")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_sqlite() {
    authorization_matrix(|| Box::pin(sqlite())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_postgres() {
    authorization_matrix(|| Box::pin(postgres())).await
}
