//! Durability: the server is killed with SIGKILL while a doctor's browser
//! saves a note in a loop; after a restart every acknowledged save is there.
//! Runs on SQLite (the default deployment) and PostgreSQL.
//!
//! The same run checks that the server's log output (at debug level) never
//! contains the patient's name, citizen id or any note text.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const PATIENT_NAME: &str = "Phạm Thị Bí Mật";
const GUARDIAN_NAME: &str = "Đỗ Văn Giám Hộ";
const PATIENT_CCCD: &str = "001185987654";

fn note_text(n: u64) -> String {
    format!("Ghi chú lâm sàng bí mật lần lưu {n}")
}

async fn durability(backend: &str) {
    let dir = temp_dir(backend);
    let db = database_url(backend, &dir).await;
    let c = client();
    let mut server = Server::start(&dir, &db);

    // Set up a province slice through the API, as an admin would.
    let admin = login(&c, &server, "admin", ADMIN_PASSWORD).await;
    let h = post(
        &c,
        &server,
        &admin,
        "/api/facilities",
        json!({"code": "H", "name": "TTYT huyện", "kind": "district_hospital", "province": "Điện Biên"}),
    )
    .await;
    let st = post(&c, &server, &admin, "/api/facilities", json!({"code": "S", "name": "Trạm y tế xã", "kind": "commune_station", "referral_hospital_id": h["id"], "province": "Điện Biên"})).await;
    post(&c, &server, &admin, "/api/users", json!({"username": "bacsi", "display_name": "Bác sĩ", "password": PASSWORD, "role": "doctor", "facility_id": h["id"]})).await;
    post(&c, &server, &admin, "/api/users", json!({"username": "yta", "display_name": "Y tá", "password": PASSWORD, "role": "health_worker", "facility_id": st["id"]})).await;
    let hw = login(&c, &server, "yta", PASSWORD).await;
    let p = post(&c, &server, &hw, "/api/patients", json!({"full_name": PATIENT_NAME, "date_of_birth": "1985-06-01", "sex": "female", "cccd": PATIENT_CCCD})).await;
    // Given by a guardian, whose name is personal data too.
    let text = get(&c, &server, &hw, "/api/consent-text").await;
    post(
        &c,
        &server,
        &hw,
        &format!("/api/patients/{}/consents", p["id"].as_str().unwrap()),
        json!({"decision": "granted", "given_by": "guardian", "guardian_name": GUARDIAN_NAME,
               "guardian_relation": "chồng", "text_version": text["version"]}),
    )
    .await;
    let cons = post(
        &c,
        &server,
        &hw,
        "/api/consultations",
        json!({"patient_id": p["id"], "kind": "urgent", "reason": "Khó thở"}),
    )
    .await;
    let cid = cons["id"].as_str().unwrap().to_owned();
    let mut doc = login(&c, &server, "bacsi", PASSWORD).await;
    post(
        &c,
        &server,
        &doc,
        &format!("/api/consultations/{cid}/accept"),
        json!({}),
    )
    .await;
    let note = post(
        &c,
        &server,
        &doc,
        &format!("/api/consultations/{cid}/notes"),
        json!({"subjective": note_text(0)}),
    )
    .await;
    let nid = note["id"].as_str().unwrap().to_owned();

    let mut counter = 0u64;
    let mut acked: (i64, String) = (1, note_text(0));
    for round in 0..3u64 {
        // Save as fast as possible while a timer kills the server.
        let kill_after = Duration::from_millis(400 + 350 * round);
        let started = std::time::Instant::now();
        let mut saves_this_round = 0;
        let in_flight: (i64, String) = loop {
            if started.elapsed() >= kill_after {
                // Kill with a request on the wire: fire one save, then kill
                // before its answer can be read.
                counter += 1;
                let text = note_text(counter);
                let req = c
                    .put(server.url(&format!("/api/notes/{nid}")))
                    .bearer_auth(&doc)
                    .json(&json!({"version": acked.0, "subjective": text}))
                    .send();
                let pending = tokio::spawn(req);
                tokio::time::sleep(Duration::from_millis(2)).await;
                server.kill();
                let _ = pending.await;
                break (acked.0 + 1, text);
            }
            counter += 1;
            let text = note_text(counter);
            let r = c
                .put(server.url(&format!("/api/notes/{nid}")))
                .bearer_auth(&doc)
                .json(&json!({"version": acked.0, "subjective": text}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["version"].as_i64().unwrap(), acked.0 + 1);
            acked = (acked.0 + 1, text);
            saves_this_round += 1;
        };
        assert!(saves_this_round > 5, "the loop saved something before the kill");

        server = Server::start(&dir, &db);
        doc = login(&c, &server, "bacsi", PASSWORD).await;
        let r = c
            .get(server.url(&format!("/api/notes/{nid}")))
            .bearer_auth(&doc)
            .send()
            .await
            .unwrap();
        let stored: Value = r.json().await.unwrap();
        let version = stored["version"].as_i64().unwrap();
        let text = stored["subjective"].as_str().unwrap().to_owned();
        // Every acknowledged save survived; the unacknowledged one may or
        // may not have, but nothing in between is lost or garbled.
        if version == acked.0 {
            assert_eq!(
                text, acked.1,
                "round {round}: the last acknowledged save is the stored one"
            );
        } else {
            let (v, t) = in_flight;
            assert_eq!(
                (version, text.as_str()),
                (v, t.as_str()),
                "round {round}: stored state is the in-flight save"
            );
            acked = (v, t);
        }
    }

    let logs = server.output.lock().unwrap().clone();
    assert!(logs.contains("listening"), "logs were captured");
    for secret in [
        PATIENT_NAME,
        PATIENT_CCCD,
        GUARDIAN_NAME,
        "Ghi chú lâm sàng",
        "Khó thở",
    ] {
        assert!(
            !logs.contains(secret),
            "server output contains personal data {secret:?}"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_note_saves_survive_sigkill_sqlite() {
    durability("sqlite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_note_saves_survive_sigkill_postgres() {
    durability("postgres").await
}
