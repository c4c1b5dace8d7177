//! The wall clock jumping under a running server (issue 15, faults): the
//! server runs under libfaketime with its wall clock (not its monotonic
//! clock) moved from a file, as NTP correcting a wrong hardware clock, or a
//! restored snapshot, moves it.
//!
//! Forward a day: access tokens issued before are expired; a booking whose
//! time is now past (with its grace) becomes a no-show by itself; a new
//! login works. Back to the real time: a token issued "in the future" is
//! refused as expired (it would otherwise outlive its 15 minutes by the
//! whole jump), and so is a login session started then (it would outlive
//! its 12 hours by the jump); the no-show stays one, a new login and a
//! booking work.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn libfaketime() -> String {
    for dir in std::fs::read_dir("/usr/lib").unwrap().filter_map(|e| e.ok()) {
        let p = dir.path().join("faketime/libfaketime.so.1");
        if p.exists() {
            return p.display().to_string();
        }
    }
    panic!("libfaketime is not installed (tests/scripts/deps.sh)");
}

async fn status(c: &reqwest::Client, s: &Server, token: &str, path: &str) -> (u16, Value) {
    let r = c.get(s.url(path)).bearer_auth(token).send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// Logs `user` in; the refresh token.
async fn refresh_token_of(c: &reqwest::Client, s: &Server, user: &str) -> String {
    let r = c
        .post(s.url("/api/auth/login"))
        .json(&json!({"username": user, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login {user}");
    let v: Value = r.json().await.unwrap();
    v["refresh_token"].as_str().unwrap().to_owned()
}

/// Refreshes a login session; the status.
async fn refresh(c: &reqwest::Client, s: &Server, token: &str) -> u16 {
    c.post(s.url("/api/auth/refresh"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_no_shows_and_bookings_stay_right_when_the_clock_jumps() {
    let dir = temp_dir("clock");
    let db = database_url("sqlite", &dir).await;
    let clock = dir.join("faketime.rc");
    std::fs::write(&clock, "+0\n").unwrap();
    let lib = libfaketime();
    let clock_s = clock.display().to_string();
    let server = Server::start_with_env(
        &dir,
        &db,
        &[],
        &[
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME_TIMESTAMP_FILE", clock_s.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let c = client();
    let p = province(&c, &server).await;
    let me = get(&c, &server, &p.doctor, "/api/auth/me").await;
    let doctor_id = me["id"].as_str().unwrap().to_owned();
    let hours = json!({"hours": (1..=7).map(|d| json!({"weekday": d, "start_minute": 0, "end_minute": 1440})).collect::<Vec<_>>()});
    let r = c
        .put(server.url(&format!("/api/doctors/{doctor_id}/hours")))
        .bearer_auth(&p.doctor)
        .json(&hours)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The first slot of tomorrow (Vietnam), booked.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .with_timezone(&chrono::FixedOffset::east_opt(7 * 3600).unwrap())
        .date_naive();
    let slots = get(
        &c,
        &server,
        &p.worker,
        &format!("/api/facilities/{}/slots?date={tomorrow}", p.hospital_id),
    )
    .await;
    let start = slots[0]["start"].as_str().expect("a slot").to_owned();
    let patient = post(
        &c,
        &server,
        &p.worker,
        "/api/patients",
        json!({"full_name": "Vàng Thị Dợ", "date_of_birth": "1990-02-03", "sex": "female"}),
    )
    .await;
    consent(&c, &server, &p.worker, patient["id"].as_str().unwrap()).await;
    let booked = post(
        &c,
        &server,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": patient["id"], "kind": "scheduled", "reason": "Tái khám", "scheduled_start": start}),
    )
    .await;
    let cid = booked["id"].as_str().unwrap().to_owned();
    assert_eq!(booked["state"], "scheduled");

    // Forward: past the booking and its 15 minutes of grace.
    let start_at = chrono::DateTime::parse_from_rfc3339(&start).unwrap();
    let ahead = (start_at.timestamp() - chrono::Utc::now().timestamp()) + 20 * 60;
    std::fs::write(&clock, format!("+{ahead}\n")).unwrap();
    let (st, body) = status(&c, &server, &p.worker, "/api/auth/me").await;
    assert_eq!(
        (st, body["code"].as_str()),
        (401, Some("token_expired")),
        "a token from before the jump is expired"
    );
    let worker = login(&c, &server, "yta", PASSWORD).await;
    let admin = login(&c, &server, "admin", ADMIN_PASSWORD).await;
    let ahead_refresh = refresh_token_of(&c, &server, "bacsi").await;
    // The no-show job runs once a minute (on the monotonic clock).
    let asked = Instant::now();
    let state = loop {
        let (_, v) = status(&c, &server, &worker, &format!("/api/consultations/{cid}")).await;
        if v["state"] == "no_show" || asked.elapsed() > Duration::from_secs(75) {
            break v["state"].clone();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        state, "no_show",
        "the missed booking is a no-show at the new time"
    );

    // Back to the real time.
    std::fs::write(&clock, "+0\n").unwrap();
    let (st, body) = status(&c, &server, &worker, "/api/auth/me").await;
    assert_eq!(
        (st, body["code"].as_str()),
        (401, Some("token_expired")),
        "a token issued a day ahead is not good for a day more"
    );
    let (st, _) = status(&c, &server, &admin, "/api/users").await;
    assert_eq!(st, 401);
    assert_eq!(
        refresh(&c, &server, &ahead_refresh).await,
        401,
        "a login session started a day ahead does not last a day more than its 12 hours"
    );
    let now_refresh = refresh_token_of(&c, &server, "bacsi").await;
    assert_eq!(
        refresh(&c, &server, &now_refresh).await,
        200,
        "a new session refreshes"
    );
    let worker = login(&c, &server, "yta", PASSWORD).await;
    let (st, v) = status(&c, &server, &worker, &format!("/api/consultations/{cid}")).await;
    assert_eq!(
        (st, v["state"].as_str()),
        (200, Some("no_show")),
        "a no-show stays one"
    );
    // The same slot is free again and can be booked now.
    let again = post(
        &c,
        &server,
        &worker,
        "/api/consultations",
        json!({"patient_id": patient["id"], "kind": "scheduled", "reason": "Tái khám lại", "scheduled_start": start}),
    )
    .await;
    assert_eq!(again["state"], "scheduled");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
