//! The station connectivity report over HTTP: admins read it as JSON and
//! CSV, the query's problems are 400s naming their field (on SQLite and on
//! PostgreSQL).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use telehealth_records::{
    local_day, Actor, FacilityInput, Joining, Role, SessionEntry, SessionStats, Store, Timestamp,
};

/// A call from station 1 today: the health worker's media connected, one
/// sample of 4 % loss and 150 ms; the doctor's sample apart.
async fn one_call(w: &World) {
    let (_, cid) = w.patient_and_consultation("Giàng A Páo", "001185012345").await;
    w.doctor_moves(&cid, "in_progress").await;
    let id = cid.parse().unwrap();
    let hw = Some(w.hw1.id);
    let entries = [
        (
            hw,
            SessionEntry::Joined(Joining {
                participant_id: "p-hw".into(),
                role: Role::HealthWorker,
                new_connection: true,
            }),
        ),
        (
            hw,
            SessionEntry::IceState {
                participant_id: "p-hw".into(),
                state: "connected".into(),
            },
        ),
        (
            hw,
            SessionEntry::Stats(SessionStats {
                user_id: hw,
                participant_id: Some("p-hw".into()),
                loss_pct: Some(4.0),
                rtt_ms: Some(150.0),
                bitrate_in_kbps: Some(600),
                bitrate_out_kbps: Some(400),
                ..Default::default()
            }),
        ),
    ];
    for (user, e) in entries {
        w.store.append_session_event(id, user, e).await.unwrap();
    }
    w.doctor_moves(&cid, "completed").await;
}

async fn csv(w: &World, path: &str) -> (StatusCode, String, String) {
    let req = Request::builder()
        .uri(path)
        .header("authorization", format!("Bearer {}", w.t_admin))
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(w.app.clone(), req).await.unwrap();
    let status = resp.status();
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, ctype, String::from_utf8(body.to_vec()).unwrap())
}

async fn admins_read_station_connectivity(store: Store) {
    let w = world(store).await;
    // A station name a spreadsheet would take for a formula.
    let s1 = &w.s1;
    let input = FacilityInput {
        code: s1.code.clone(),
        name: "=HYPERLINK(\"http://x\",\"Trạm 1\")".into(),
        kind: s1.kind,
        referral_hospital_id: s1.referral_hospital_id,
        province: s1.province.clone(),
    };
    w.store
        .update_facility(&Actor::system(), s1.id, &input)
        .await
        .unwrap();
    one_call(&w).await;
    let a = Some(w.t_admin.as_str());
    let today = local_day(Timestamp::now()).to_string();

    // The default range (the last 30 days, by day) holds today's call.
    let r = call(&w.app, Method::GET, "/api/stations/connectivity", a, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["to"].as_str(), r.body["bucket"].as_str()),
        (Some(today.as_str()), Some("day"))
    );
    assert_eq!(r.body["time_zone"], "Asia/Ho_Chi_Minh");
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{}", r.body);
    let row = &rows[0];
    assert_eq!(row["station_id"], s1.id.to_string());
    assert_eq!(row["bucket_start"], today.as_str());
    assert_eq!(
        (
            row["calls"].as_u64(),
            row["samples"].as_u64(),
            row["join_attempts"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(
        (
            row["avg_loss_pct"].as_f64(),
            row["avg_rtt_ms"].as_f64(),
            row["failed_joins"].as_u64()
        ),
        (Some(4.0), Some(150.0), Some(0))
    );
    // By week, for one station: the Monday that starts this week.
    let r = call(
        &w.app,
        Method::GET,
        &format!(
            "/api/stations/connectivity?bucket=week&from=&facility_id={}",
            s1.id
        ),
        a,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let monday = telehealth_records::Bucket::Week
        .start_of(today.parse().unwrap())
        .to_string();
    assert_eq!(r.body["rows"][0]["bucket_start"], monday.as_str());
    // The other station has nothing.
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/stations/connectivity?facility_id={}", w.s2.id),
        a,
        None,
    )
    .await;
    assert_eq!(r.body["rows"].as_array().map(Vec::len), Some(0));

    // Others may not read it.
    for t in [&w.t_hw1, &w.t_doc1] {
        let r = call(&w.app, Method::GET, "/api/stations/connectivity", Some(t), None).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "forbidden_role"));
    }

    // A bad query is a 400 naming what is wrong.
    let h1 = w.h1.id.to_string();
    for (q, field, code) in [
        ("from=2026-13-01", "from", "invalid_date"),
        ("to=yesterday", "to", "invalid_date"),
        ("bucket=month", "bucket", "invalid_bucket"),
        ("from=2026-12-07&to=2026-12-01", "to", "range_reversed"),
        ("from=2025-01-01&to=2026-12-01", "from", "range_too_long"),
        (
            &format!("facility_id={h1}") as &str,
            "facility_id",
            "not_a_station",
        ),
        ("facility_id=abc", "facility_id", "malformed_id"),
    ] {
        for path in ["/api/stations/connectivity", "/api/stations/connectivity.csv"] {
            let r = call(&w.app, Method::GET, &format!("{path}?{q}"), a, None).await;
            assert_eq!(
                (r.status, r.code(), r.body["errors"][0]["field"].as_str()),
                (StatusCode::BAD_REQUEST, code, Some(field)),
                "{path}?{q}: {}",
                r.body
            );
        }
    }

    // The CSV: a header, one row per station and bucket, no formulas.
    let (status, ctype, body) = csv(&w, "/api/stations/connectivity.csv").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ctype.starts_with("text/csv"));
    let lines: Vec<&str> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{body}");
    let header: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(
        &header[..4],
        ["station_id", "station_code", "station_name", "bucket_start"]
    );
    assert_eq!(header.len(), 21);
    assert!(
        lines[1].starts_with(&format!("{},S1,\"'=HYPERLINK(", s1.id)),
        "{body}"
    );
    assert!(lines[1].contains(&format!(",{today},1,")), "{body}");
    assert!(lines[1].contains(",4.00,4.00,4.00,150.00,"), "{body}");
}
on_both!(admins_read_station_connectivity);
