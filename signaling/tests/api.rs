//! HTTP-level behaviour of the API on the real router and a real database
//! (each test runs on SQLite and on PostgreSQL).

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use serde_json::{json, Value};
use telehealth_records::Store;

async fn count(store: &Store, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    n
}

async fn login_sets_strict_httponly_cookies_that_authenticate(store: Store) {
    let w = world(store).await;
    let r = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "HW1 ", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["user"]["role"], "health_worker");
    assert!(r.body["user"].get("password_hash").is_none());
    let cookies: Vec<_> = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 2);
    for c in &cookies {
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
    }
    let access = cookies.iter().find(|c| c.starts_with("th_access=")).unwrap();
    let cookie = access.split(';').next().unwrap().to_owned();
    let req = Request::builder()
        .uri("/api/auth/me")
        .header("cookie", &cookie)
        .body(Body::empty())
        .unwrap();
    let me = send(&w.app, req).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "hw1");
    // Wrong password and unknown user look the same.
    let bad = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "hw1", "password": "nope"})),
    )
    .await;
    let unknown = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "ghost", "password": "nope"})),
    )
    .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNAUTHORIZED, "wrong_credentials")
    );
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::UNAUTHORIZED, "wrong_credentials")
    );
}
on_both!(login_sets_strict_httponly_cookies_that_authenticate);

async fn refresh_rotates_and_logout_ends_the_session(store: Store) {
    let w = world(store).await;
    let r = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "doc1", "password": PASSWORD})),
    )
    .await;
    let refresh = r.body["refresh_token"].as_str().unwrap().to_owned();
    let r2 = call(
        &w.app,
        Method::POST,
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.body);
    let access = r2.body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(
        r2.body["refresh_token"].as_str().unwrap(),
        refresh,
        "a new refresh token"
    );
    assert_eq!(
        call(&w.app, Method::GET, "/api/auth/me", Some(&access), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&w.app, Method::POST, "/api/auth/logout", Some(&access), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // The access token has not expired, but its session has ended.
    let after = call(&w.app, Method::GET, "/api/auth/me", Some(&access), None).await;
    assert_eq!(
        (after.status, after.code()),
        (StatusCode::UNAUTHORIZED, "session_ended")
    );
    let new_refresh = r2.body["refresh_token"].as_str().unwrap();
    let r3 = call(
        &w.app,
        Method::POST,
        "/api/auth/refresh",
        None,
        Some(json!({"refresh_token": new_refresh})),
    )
    .await;
    assert_eq!(r3.status, StatusCode::UNAUTHORIZED);
}
on_both!(refresh_rotates_and_logout_ends_the_session);

async fn expired_and_forged_tokens_are_refused(store: Store) {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let w = world(store).await;
    let claims = |exp: i64| {
        // Take a real session id from a real token, to isolate the one defect.
        let payload = w.t_hw1.split('.').nth(1).unwrap();
        let decoded: Value = serde_json::from_slice(&base64_url(payload)).unwrap();
        json!({"sub": decoded["sub"], "sid": decoded["sid"], "role": "health_worker", "iat": 0, "exp": exp})
    };
    let now = chrono::Utc::now().timestamp();
    let expired = encode(
        &Header::default(),
        &claims(now - 3600),
        &EncodingKey::from_secret(JWT_KEY),
    )
    .unwrap();
    let r = call(&w.app, Method::GET, "/api/auth/me", Some(&expired), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "token_expired"));
    let forged = encode(
        &Header::default(),
        &claims(now + 3600),
        &EncodingKey::from_secret(b"someone-else's-key-someone-else's-key"),
    )
    .unwrap();
    let r = call(&w.app, Method::GET, "/api/auth/me", Some(&forged), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let r = call(&w.app, Method::GET, "/api/auth/me", Some("not.a.jwt"), None).await;
    assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_token"));
    // alg=none is not accepted either.
    let none_alg = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        w.t_hw1.split('.').nth(1).unwrap()
    );
    assert_eq!(
        call(&w.app, Method::GET, "/api/auth/me", Some(&none_alg), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
on_both!(expired_and_forged_tokens_are_refused);

fn base64_url(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => continue,
        } as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

async fn repeated_login_failures_are_slowed_then_refused(store: Store) {
    let w = world_with(store, fast_throttle()).await;
    for _ in 0..6 {
        let r = call(
            &w.app,
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"username": "hw2", "password": "wrong"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Locked now, even with the right password.
    let r = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "hw2", "password": PASSWORD})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
    );
    assert!(r.headers.get("retry-after").is_some());
    // The address is locked too: another account from the same (here: unknown) address is refused.
    let ok = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "hw1", "password": PASSWORD})),
    )
    .await;
    assert_eq!(
        ok.status,
        StatusCode::TOO_MANY_REQUESTS,
        "same (unknown) address is locked too"
    );
}
on_both!(repeated_login_failures_are_slowed_then_refused);

async fn malformed_requests_get_problem_json_naming_the_problem(store: Store) {
    let w = world(store).await;
    let t = Some(w.t_hw1.as_str());
    let before = count(&w.store, "patients").await;
    // Broken JSON.
    let r = raw(
        &w.app,
        Method::POST,
        "/api/patients",
        t,
        "application/json",
        b"{\"full_name\": ".to_vec(),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "malformed_json"));
    // Wrong type names the field.
    let mut p = patient_json("A");
    p["sex"] = json!(3);
    let r = call(&w.app, Method::POST, "/api/patients", t, Some(p)).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_type"));
    assert_eq!(r.body["errors"][0]["field"], "sex");
    // Unknown enum value.
    let mut p = patient_json("A");
    p["sex"] = json!("robot");
    let r = call(&w.app, Method::POST, "/api/patients", t, Some(p)).await;
    assert_eq!(
        (r.status, r.code(), r.body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, "invalid_value", Some("sex"))
    );
    // Missing and unknown fields. A patient's missing details are reported
    // with the wrong ones, field by field (see the next test); elsewhere the
    // parser names the missing field.
    let r = call(
        &w.app,
        Method::POST,
        "/api/patients",
        t,
        Some(json!({"full_name": "A", "sex": "male"})),
    )
    .await;
    assert_eq!(
        (r.status, r.code(), r.body["errors"][0]["field"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("date_of_birth")
        )
    );
    let r = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "yta1"})),
    )
    .await;
    assert_eq!(
        (r.status, r.code(), r.body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, "missing_field", Some("password"))
    );
    let mut p = patient_json("A");
    p["is_admin"] = json!(true);
    let r = call(&w.app, Method::POST, "/api/patients", t, Some(p)).await;
    assert_eq!(
        (r.status, r.code(), r.body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, "unknown_field", Some("is_admin"))
    );
    // Not JSON at all.
    let r = raw(
        &w.app,
        Method::POST,
        "/api/patients",
        t,
        "text/plain",
        b"hello".to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Oversized body.
    let mut p = patient_json("A");
    p["address"] = json!("x".repeat(300 * 1024));
    let r = call(&w.app, Method::POST, "/api/patients", t, Some(p)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    // Malformed ids in the path and the query.
    let r = call(&w.app, Method::GET, "/api/patients/not-a-uuid", t, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "malformed_id"));
    let r = call(
        &w.app,
        Method::GET,
        "/api/audit?patient_id=zzz",
        Some(&w.t_admin),
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "malformed_id"));
    let r = call(&w.app, Method::GET, "/api/patients?q=ab&limit=-4", t, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_limit"));
    let r = call(&w.app, Method::GET, "/api/patients?q=ab&color=red", t, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "unknown_field"));
    // Unknown id, unknown route.
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/patients/{}", uuid_v4()),
        t,
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"));
    let r = call(&w.app, Method::GET, "/api/nothing-here", t, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        count(&w.store, "patients").await,
        before,
        "no failed request wrote anything"
    );
}
on_both!(malformed_requests_get_problem_json_naming_the_problem);

fn uuid_v4() -> String {
    let u = unique();
    format!(
        "00000000-0000-4000-8000-{:0>12}",
        &u[u.len().saturating_sub(12)..]
    )
    .replace(|c: char| !c.is_ascii_hexdigit() && c != '-', "0")
}

async fn invalid_values_are_refused_with_vietnamese_messages(store: Store) {
    let w = world(store).await;
    let t = Some(w.t_hw1.as_str());
    let mut p = patient_json("Hoàng Văn Sử");
    p["cccd"] = json!("0011850123");
    p["bhyt"] = json!("XX");
    p["phone"] = json!("12");
    p["date_of_birth"] = json!("2090-01-01");
    let r = call(&w.app, Method::POST, "/api/patients", t, Some(p)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
    );
    let mut fields: Vec<_> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect();
    fields.sort();
    assert_eq!(fields, ["bhyt", "cccd", "date_of_birth", "phone"]);

    // An empty registration form, as the page sends it, and a body with no
    // fields at all: every missing field is named at once, each in words a
    // health worker reads, and nothing is written.
    let empty = json!({"full_name": "", "date_of_birth": "", "sex": null, "phone": null,
        "cccd": null, "bhyt": null, "address": null});
    for body in [empty, json!({})] {
        let r = call(&w.app, Method::POST, "/api/patients", t, Some(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        );
        let errors: Vec<_> = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_owned(),
                    e["code"].as_str().unwrap().to_owned(),
                    e["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let named: Vec<_> = errors.iter().map(|(f, c, _)| (f.as_str(), c.as_str())).collect();
        assert_eq!(
            named,
            [
                ("full_name", "required"),
                ("date_of_birth", "required"),
                ("sex", "required")
            ]
        );
        assert!(errors[2].2.contains("giới tính"), "{errors:?}");
        assert!(errors[1].2.contains("ngày sinh"), "{errors:?}");
    }
    assert_eq!(count(&w.store, "patients").await, 0);

    let cccd = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "cccd")
        .unwrap();
    assert_eq!(cccd["code"], "invalid_cccd");
    assert!(cccd["message"].as_str().unwrap().contains("12 chữ số"));

    // A duplicate CCCD is a 409 naming the field.
    let r = call(
        &w.app,
        Method::POST,
        "/api/patients",
        t,
        Some(patient_json("Người thứ nhất")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let pid = r.body["id"].as_str().unwrap().to_owned();
    let r = call(
        &w.app,
        Method::POST,
        "/api/patients",
        t,
        Some(patient_json("Người thứ hai")),
    )
    .await;
    assert_eq!(
        (r.status, r.code(), r.body["errors"][0]["field"].as_str()),
        (StatusCode::CONFLICT, "duplicate", Some("cccd"))
    );

    // Vitals out of range.
    let r = call(
        &w.app,
        Method::POST,
        &format!("/api/patients/{pid}/vitals"),
        t,
        Some(json!({"temperature_c": 3.7, "spo2_pct": 120})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["temperature_c", "spo2_pct"]);
    let r = call(
        &w.app,
        Method::POST,
        &format!("/api/patients/{pid}/vitals"),
        t,
        Some(json!({"temperature_c": 37.2, "spo2_pct": 98})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(count(&w.store, "vitals").await, 1);

    // A consent with nothing in it names every missing field; a guardian
    // needs a name and a relation; an old text is refused.
    let consents = format!("/api/patients/{pid}/consents");
    let r = call(&w.app, Method::POST, &consents, t, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let fields = |r: &Resp| -> Vec<(String, String)> {
        r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_owned(),
                    e["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        fields(&r),
        [
            ("decision".to_owned(), "required".to_owned()),
            ("given_by".to_owned(), "required".to_owned()),
            ("text_version".to_owned(), "required".to_owned())
        ]
    );
    let mut guardian = consent_json("granted");
    guardian["given_by"] = json!("guardian");
    guardian["guardian_name"] = json!("  ");
    let r = call(&w.app, Method::POST, &consents, t, Some(guardian)).await;
    assert_eq!(
        fields(&r),
        [
            ("guardian_name".to_owned(), "required".to_owned()),
            ("guardian_relation".to_owned(), "required".to_owned())
        ]
    );
    let mut old = consent_json("granted");
    old["text_version"] = json!("2019-01");
    let r = call(&w.app, Method::POST, &consents, t, Some(old)).await;
    assert_eq!(
        fields(&r),
        [("text_version".to_owned(), "outdated_text".to_owned())]
    );
    let r = call(
        &w.app,
        Method::POST,
        &consents,
        t,
        Some(json!({"decision": "maybe", "given_by": "patient", "text_version": "2026-01"})),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_value"),
        "{}",
        r.body
    );
    assert_eq!(r.body["errors"][0]["field"], "decision");
    assert_eq!(count(&w.store, "consents").await, 0);

    // An ICD-10 code that is not one.
    w.consent(&pid).await;
    let cid = w.consultation_for(&pid).await;
    let mut n = note_json("x");
    n["icd10_codes"] = json!(["J18.9", "BANANA"]);
    let r = call(
        &w.app,
        Method::POST,
        &format!("/api/consultations/{cid}/notes"),
        Some(&w.t_doc1),
        Some(n),
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.body["errors"][0]["field"].as_str(),
            r.body["errors"][0]["code"].as_str()
        ),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("icd10_codes[1]"),
            Some("invalid_icd10")
        )
    );
    // The right shape, but no code of WHO's list (US ICD-10-CM, made up).
    for unknown in ["E11.65", "J18.7"] {
        let mut n = note_json("x");
        n["icd10_codes"] = json!(["J18.9", unknown]);
        let r = call(
            &w.app,
            Method::POST,
            &format!("/api/consultations/{cid}/notes"),
            Some(&w.t_doc1),
            Some(n),
        )
        .await;
        assert_eq!(
            (r.status, r.body["errors"][0]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_icd10")),
            "{unknown}"
        );
        assert!(r.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("không có trong danh mục ICD-10")));
    }
    assert_eq!(count(&w.store, "notes").await, 0);
}
on_both!(invalid_values_are_refused_with_vietnamese_messages);

async fn patients_can_be_found_and_corrected(store: Store) {
    let w = world(store).await;
    let t = Some(w.t_hw1.as_str());
    let r = call(
        &w.app,
        Method::POST,
        "/api/patients",
        t,
        Some(patient_json("Nguyễn Thị Đào")),
    )
    .await;
    let pid = r.body["id"].as_str().unwrap().to_owned();
    for q in ["dao", "Nguy%E1%BB%85n", "0912345678", "001185012345"] {
        let r = call(&w.app, Method::GET, &format!("/api/patients?q={q}"), t, None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_array().unwrap().len(), 1, "{q}");
    }
    let r = call(&w.app, Method::GET, "/api/patients?q=dao", Some(&w.t_hw2), None).await;
    assert_eq!(
        r.body.as_array().unwrap().len(),
        0,
        "another station sees nothing"
    );
    // Each word in any order, without accents.
    let mut other = patient_json("Đào Văn Nguyên");
    other["cccd"] = json!("001085012346");
    other["sex"] = json!("male");
    let r = call(&w.app, Method::POST, "/api/patients", t, Some(other)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for (q, found) in [
        ("nguyen%20dao", 2),
        ("dao%20nguyen", 2),
        ("thi%20dao%20nguyen", 1),
        ("nguyen%20van", 1),
        ("nguyen%20lan", 0),
    ] {
        let r = call(&w.app, Method::GET, &format!("/api/patients?q={q}"), t, None).await;
        assert_eq!(r.body.as_array().map(Vec::len), Some(found), "{q}: {}", r.body);
    }
    // Too little to search by, once what cannot be seen is left out: a NUL
    // (SQLite's LIKE stops there, and it matched every patient), a zero-width space.
    for q in ["d", "%00x", "x%00", "%E2%80%8Bx", "%00%00%00"] {
        let r = call(&w.app, Method::GET, &format!("/api/patients?q={q}"), t, None).await;
        assert_eq!(
            (r.status, r.body["errors"][0]["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("q")),
            "{q}: {}",
            r.body
        );
    }
    let r = call(&w.app, Method::GET, "/api/patients?q=%00thi%20dao%00", t, None).await;
    assert_eq!(
        r.body.as_array().map(Vec::len),
        Some(1),
        "a NUL is ignored, not a wildcard: {}",
        r.body
    );
    let mut upd = patient_json("Nguyễn Thị Đào");
    upd["version"] = json!(1);
    upd["address"] = json!("Thôn 5");
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/patients/{pid}"),
        t,
        Some(upd.clone()),
    )
    .await;
    assert_eq!((r.status, r.body["version"].as_i64()), (StatusCode::OK, Some(2)));
    let r = call(&w.app, Method::PUT, &format!("/api/patients/{pid}"), t, Some(upd)).await;
    assert_eq!(
        (r.status, r.code(), r.body["current_version"].as_i64()),
        (StatusCode::CONFLICT, "version_conflict", Some(2))
    );
}
on_both!(patients_can_be_found_and_corrected);

async fn notes_autosave_sign_and_amend_over_http(store: Store) {
    let w = world(store).await;
    let (pid, cid) = w.patient_and_consultation("Lý Thị Sao", "001185012345").await;
    let d = Some(w.t_doc1.as_str());
    let r = call(
        &w.app,
        Method::POST,
        &format!("/api/consultations/{cid}/notes"),
        d,
        Some(note_json("Viêm phổi")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let nid = r.body["id"].as_str().unwrap().to_owned();
    let save = |v: i64, a: &str| {
        let mut n = note_json(a);
        n["version"] = json!(v);
        n
    };
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/notes/{nid}"),
        d,
        Some(save(1, "Viêm phổi thùy")),
    )
    .await;
    assert_eq!(r.body["version"], 2);
    // The same save again (a retry after a lost answer) is harmless.
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/notes/{nid}"),
        d,
        Some(save(1, "Viêm phổi thùy")),
    )
    .await;
    assert_eq!((r.status, r.body["version"].as_i64()), (StatusCode::OK, Some(2)));
    // A second tab still on version 1 with other text is told, not obeyed.
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/notes/{nid}"),
        d,
        Some(save(1, "Khác")),
    )
    .await;
    assert_eq!(
        (r.status, r.code(), r.body["current_version"].as_i64()),
        (StatusCode::CONFLICT, "version_conflict", Some(2))
    );
    // Another doctor of the same hospital cannot write it.
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/notes/{nid}"),
        Some(&w.t_doc1b),
        Some(save(2, "x")),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The station does not see a draft…
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/consultations/{cid}/notes"),
        Some(&w.t_hw1),
        None,
    )
    .await;
    assert_eq!(r.body.as_array().unwrap().len(), 0);
    let r = call(
        &w.app,
        Method::POST,
        &format!("/api/notes/{nid}/sign"),
        d,
        Some(json!({"version": 2})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::OK, Some("signed"))
    );
    // …but sees the signed note.
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/consultations/{cid}/notes"),
        Some(&w.t_hw1),
        None,
    )
    .await;
    assert_eq!(r.body[0]["assessment"], "Viêm phổi thùy");
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/notes/{nid}"),
        d,
        Some(save(2, "sửa sau khi ký")),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "note_signed"));
    let refused: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'note.update' AND outcome = 'denied' AND resource_id = $1",
    )
    .bind(&nid)
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    assert_eq!(refused, 1, "the refused change to a signed note is audited");
    let r = call(&w.app, Method::POST, &format!("/api/notes/{nid}/amend"), d, None).await;
    assert_eq!(
        (r.status, r.body["amends_note_id"].as_str()),
        (StatusCode::CREATED, Some(nid.as_str()))
    );
    let aid = r.body["id"].as_str().unwrap().to_owned();
    let r = call(&w.app, Method::POST, &format!("/api/notes/{nid}/amend"), d, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "already_taken"));
    let r = call(
        &w.app,
        Method::PUT,
        &format!("/api/notes/{aid}"),
        d,
        Some(save(1, "Viêm phế quản cấp")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/consultations/{cid}/notes"),
        d,
        None,
    )
    .await;
    let history = r.body.as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["assessment"], "Viêm phổi thùy");
    assert_eq!(history[1]["assessment"], "Viêm phế quản cấp");
    let _ = pid;
}
on_both!(notes_autosave_sign_and_amend_over_http);

async fn two_doctors_accept_at_once_one_wins(store: Store) {
    let w = world(store).await;
    let pid = w.register("A").await;
    w.consent(&pid).await;
    for _ in 0..25 {
        let r = call(
            &w.app,
            Method::POST,
            "/api/consultations",
            Some(&w.t_hw1),
            Some(json!({"patient_id": pid, "kind": "urgent", "reason": "Sốt"})),
        )
        .await;
        let cid = r.body["id"].as_str().unwrap().to_owned();
        let url = format!("/api/consultations/{cid}/accept");
        let (a, b) = tokio::join!(
            call(&w.app, Method::POST, &url, Some(&w.t_doc1), None),
            call(&w.app, Method::POST, &url, Some(&w.t_doc1b), None)
        );
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 409]);
        let loser = if a.status == StatusCode::CONFLICT { &a } else { &b };
        assert_eq!(loser.code(), "already_taken");
    }
}
on_both!(two_doctors_accept_at_once_one_wins);

async fn audit_log_records_who_read_which_patient(store: Store) {
    let w = world(store).await;
    let (pid, cid) = w.patient_and_consultation("Đinh Văn Lực", "001185012345").await;
    call(
        &w.app,
        Method::GET,
        &format!("/api/patients/{pid}"),
        Some(&w.t_doc1),
        None,
    )
    .await;
    // A refused look is recorded too.
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/patients/{pid}"),
        Some(&w.t_doc2),
        None,
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "other_facility"));
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/audit?patient_id={pid}"),
        Some(&w.t_admin),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let entries = r.body.as_array().unwrap();
    let seen = |actor: &str, action: &str, outcome: &str| {
        entries
            .iter()
            .any(|e| e["actor_id"] == actor && e["action"] == action && e["outcome"] == outcome)
    };
    assert!(seen(&w.hw1.id.to_string(), "patient.create", "ok"));
    assert!(seen(&w.doc1.id.to_string(), "patient.read", "ok"));
    assert!(seen(&w.doc2.id.to_string(), "patient.access", "denied"));
    assert!(seen(&w.hw1.id.to_string(), "consultation.create", "ok"));
    // The admin reads the trail but not the record or the note.
    assert_eq!(
        call(
            &w.app,
            Method::GET,
            &format!("/api/patients/{pid}"),
            Some(&w.t_admin),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &w.app,
            Method::GET,
            &format!("/api/consultations/{cid}/notes"),
            Some(&w.t_admin),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/audit?actor_id={}&limit=1", w.doc2.id),
        Some(&w.t_admin),
        None,
    )
    .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
}
on_both!(audit_log_records_who_read_which_patient);

async fn healthz_answers_when_the_database_does(store: Store) {
    let app = router(store.clone(), Default::default()).await;
    assert_eq!(
        call(&app, Method::GET, "/healthz", None, None).await.status,
        StatusCode::OK
    );
    store.close().await;
    let r = call(&app, Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
    );
}
on_both!(healthz_answers_when_the_database_does);

async fn admins_manage_accounts_and_facilities(store: Store) {
    let w = world(store).await;
    let a = Some(w.t_admin.as_str());
    let r = call(&w.app, Method::POST, "/api/users", a, Some(json!({"username": "yta.moi", "display_name": "Y tá mới", "password": "ngắn", "role": "health_worker", "facility_id": w.s1.id}))).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password"))
    );
    let r = call(&w.app, Method::POST, "/api/users", a, Some(json!({"username": "yta.moi", "display_name": "Y tá mới", "password": "mật-khẩu-đủ-dài", "role": "health_worker", "facility_id": w.h1.id}))).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_facility_kind"))
    );
    let r = call(&w.app, Method::POST, "/api/users", a, Some(json!({"username": "yta.moi", "display_name": "Y tá mới", "password": "mật-khẩu-đủ-dài", "role": "health_worker", "facility_id": w.s1.id}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let uid = r.body["id"].as_str().unwrap().to_owned();
    let r = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "yta.moi", "password": "mật-khẩu-đủ-dài"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    // Disabling the account ends its login at once.
    let r = call(
        &w.app,
        Method::PATCH,
        &format!("/api/users/{uid}"),
        a,
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        call(&w.app, Method::GET, "/api/auth/me", Some(&token), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "yta.moi", "password": "mật-khẩu-đủ-dài"})),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "account_disabled"));
    // An admin cannot lock themselves out.
    let r = call(
        &w.app,
        Method::PATCH,
        &format!("/api/users/{}", w.admin.id),
        a,
        Some(json!({"active": false})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // An admin works for the province: no facility, given at creation or
    // later; an account made admin leaves the one it had.
    let r = call(
        &w.app,
        Method::PATCH,
        &format!("/api/users/{}", w.admin.id),
        a,
        Some(json!({"facility_id": w.h1.id})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("admin_has_no_facility"))
    );
    let r = call(&w.app, Method::POST, "/api/users", a, Some(json!({"username": "qtv.moi", "display_name": "Quản trị mới", "password": "mật-khẩu-đủ-dài", "role": "admin", "facility_id": w.h1.id}))).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("admin_has_no_facility"))
    );
    let r = call(
        &w.app,
        Method::PATCH,
        &format!("/api/users/{uid}"),
        a,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["facility_id"].is_null(), "{:?}", r.body);
    // A query parameter given twice is refused by name, not the last one taken.
    let r = call(
        &w.app,
        Method::GET,
        "/api/sessions?state=completed&state=in_progress",
        a,
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code(), r.body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, "repeated_parameter", Some("state"))
    );
    let r = call(
        &w.app,
        Method::POST,
        "/api/facilities",
        a,
        Some(json!({"code": "S9", "name": "Trạm mới", "kind": "commune_station", "province": "Hà Giang"})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("referral_hospital_id"))
    );
    let r = call(
        &w.app,
        Method::POST,
        "/api/facilities",
        a,
        Some(json!({"code": "S1", "name": "Trùng mã", "kind": "district_hospital", "province": "Hà Giang"})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (StatusCode::CONFLICT, Some("code"))
    );
}
on_both!(admins_manage_accounts_and_facilities);

async fn admins_read_session_logs_with_quality(store: Store) {
    let w = world(store).await;
    let (_, cid) = w.patient_and_consultation("Giàng A Páo", "001185012345").await;
    let (_, quiet) = w.patient_and_consultation("Giàng Thị Mỷ", "001185012399").await;
    w.doctor_moves(&cid, "in_progress").await;
    let id: telehealth_records::ConsultationId = cid.parse().unwrap();
    let doc = Some(w.doc1.id);
    for (loss, rtt, audio_only) in [(1.0, 120.0, false), (9.5, 380.0, true), (2.5, 200.0, false)] {
        w.store
            .append_session_event(
                id,
                doc,
                telehealth_records::SessionEntry::Stats(telehealth_records::SessionStats {
                    user_id: Some(w.doc1.id),
                    interval_secs: 5.0,
                    loss_pct: Some(loss),
                    rtt_ms: Some(rtt),
                    audio_only,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
    }
    w.store
        .append_session_event(
            id,
            doc,
            telehealth_records::SessionEntry::Reconnected(telehealth_records::Joining {
                participant_id: "p-\"quoted\"".to_owned(),
                role: telehealth_records::Role::Doctor,
                new_connection: false,
            }),
        )
        .await
        .unwrap();
    w.doctor_moves(&cid, "completed").await;
    let a = Some(w.t_admin.as_str());
    let r = call(&w.app, Method::GET, &format!("/api/sessions/{cid}"), a, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let q = &r.body["quality"];
    assert_eq!(
        (q["samples"].as_u64(), q["worst_loss_pct"].as_f64()),
        (Some(3), Some(9.5))
    );
    assert!((q["avg_rtt_ms"].as_f64().unwrap() - 700.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        (q["audio_only_secs"].as_f64(), q["reconnections"].as_u64()),
        (Some(5.0), Some(1))
    );
    assert!(q["duration_secs"].as_f64().unwrap() >= 0.0);
    let kinds: Vec<_> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("state_changed"));
    assert!(kinds.contains(&"accepted".to_owned()) && kinds.iter().filter(|k| *k == "stats").count() == 3);
    assert!(
        !r.body.to_string().contains("Giàng"),
        "no patient names in session logs"
    );
    // The list summarises each session as its own page does (its events
    // are read for the whole page at once).
    let one = q.clone();
    let r = call(&w.app, Method::GET, "/api/sessions", a, None).await;
    let listed = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["consultation_id"] == cid.as_str())
        .expect("listed");
    assert_eq!(listed["quality"], one);
    // Filters.
    let r = call(&w.app, Method::GET, "/api/sessions?min_worst_loss_pct=5", a, None).await;
    let ids: Vec<_> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["consultation_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, [cid.as_str()]);
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/sessions?state=requested&facility_id={}", w.s1.id),
        a,
        None,
    )
    .await;
    let ids: Vec<_> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["consultation_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        [quiet.as_str()],
        "accepted but not started is still requested"
    );
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/sessions?facility_id={}", w.s2.id),
        a,
        None,
    )
    .await;
    assert!(r.body.as_array().unwrap().is_empty());
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/sessions?facility_id={}", w.h1.id),
        a,
        None,
    )
    .await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = call(&w.app, Method::GET, "/api/sessions?from=yesterday", a, None).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("from"))
    );
    // CSV export.
    let req = axum::http::Request::builder()
        .uri(format!("/api/sessions/{cid}/events.csv"))
        .header("authorization", format!("Bearer {}", w.t_admin))
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(w.app.clone(), req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let lines: Vec<_> = body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "id,at,kind,user_id,data");
    assert_eq!(lines.len(), 1 + kinds.len());
    assert!(
        body.contains(r#"""participant_id"":""p-\""quoted\"""""#),
        "{body}"
    );
    let _ = quiet;
}
on_both!(admins_read_session_logs_with_quality);

async fn photos_are_checked_stored_and_audited(store: Store) {
    let w = world(store).await;
    let (pid, cid) = w.patient_and_consultation("Hờ A Sử", "001185012345").await;
    let url = format!("/api/consultations/{cid}/photos");
    let hw = Some(w.t_hw1.as_str());
    let before = count(&w.store, "attachments").await;
    // Declared type and bytes must agree; only images; size limit.
    let r = raw(&w.app, Method::POST, &url, hw, "image/png", JPEG.to_vec()).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("not_an_image"))
    );
    let r = raw(
        &w.app,
        Method::POST,
        &url,
        hw,
        "image/svg+xml",
        b"<svg/>".to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "unsupported_image_type")
    );
    let mut huge = JPEG.to_vec();
    huge.resize(11 * 1024 * 1024, 0);
    let r = raw(&w.app, Method::POST, &url, hw, "image/jpeg", huge).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
    assert_eq!(
        count(&w.store, "attachments").await,
        before,
        "nothing stored from refused uploads"
    );
    // A real-sized photo goes through and comes back byte for byte.
    let mut photo = JPEG.to_vec();
    photo.extend((0..3_000_000u32).map(|i| (i * 7 % 251) as u8));
    let r = raw(&w.app, Method::POST, &url, hw, "image/jpeg", photo.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["size_bytes"].as_u64(), Some(photo.len() as u64));
    let r = call(&w.app, Method::GET, &url, Some(&w.t_doc1), None).await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    // One consultation keeps at most 30 photos and 100 MB of them: the one
    // over is refused by name, and nothing of it is stored.
    for n in 2..=31 {
        let r = raw(&w.app, Method::POST, &url, hw, "image/jpeg", JPEG.to_vec()).await;
        if n <= 30 {
            assert_eq!(r.status, StatusCode::CREATED, "photo {n}: {}", r.body);
        } else {
            assert_eq!(
                (r.status, r.body["errors"][0]["code"].as_str()),
                (StatusCode::UNPROCESSABLE_ENTITY, Some("photo_quota")),
                "photo {n}"
            );
        }
    }
    assert_eq!(count(&w.store, "attachments").await, before + 30);
    let (_, other) = w.patient_and_consultation("Hờ A Páo", "001185012346").await;
    let other_url = format!("/api/consultations/{other}/photos");
    let mut big = JPEG.to_vec();
    big.resize(9 * 1024 * 1024, 7);
    for n in 1..=12 {
        let r = raw(&w.app, Method::POST, &other_url, hw, "image/jpeg", big.clone()).await;
        let expected = if n <= 11 {
            StatusCode::CREATED
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        assert_eq!(r.status, expected, "9 MB photo {n}: {}", r.body);
    }
    assert_eq!(count(&w.store, "attachments").await, before + 41);
    let req = Request::builder()
        .uri(format!("/api/photos/{id}"))
        .header("authorization", format!("Bearer {}", w.t_doc1))
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(w.app.clone(), req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert!(resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let bytes = axum::body::to_bytes(resp.into_body(), 20 << 20).await.unwrap();
    assert!(
        bytes.as_ref() == photo.as_slice(),
        "the doctor gets the exact photo"
    );
    // Others may not look; every look is audited; the session log has it.
    assert_eq!(
        call(
            &w.app,
            Method::GET,
            &format!("/api/photos/{id}"),
            Some(&w.t_doc2),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(
            &w.app,
            Method::GET,
            &format!("/api/photos/{id}"),
            Some(&w.t_admin),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/audit?patient_id={pid}"),
        Some(&w.t_admin),
        None,
    )
    .await;
    let actions: Vec<_> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.contains(&"photo.create".to_owned()) && actions.contains(&"photo.read".to_owned()),
        "{actions:?}"
    );
    let events = w.store.session_events(cid.parse().unwrap()).await.unwrap();
    assert!(events
        .iter()
        .any(|e| e.kind == "photo" && e.data["photo_id"] == id.as_str()));
}
on_both!(photos_are_checked_stored_and_audited);

async fn timestamps_outside_the_years_1900_to_2999_are_refused_at_the_edge(store: Store) {
    let w = world(store).await;
    let t = Some(w.t_doc1.as_str());
    let path = format!("/api/doctors/{}/leave", w.doc1.id);
    let before = count(&w.store, "doctor_leave").await;
    // Years a database cannot order as text (or read back), and years no leave lies in.
    for bad in [
        "-0001-01-01T00:00:00Z",
        "+262142-12-31T23:59:59Z",
        "1899-12-31T23:59:59Z",
        "3000-01-01T00:00:00Z",
    ] {
        let r = call(
            &w.app,
            Method::POST,
            &path,
            t,
            Some(json!({"starts_at": bad, "ends_at": "2030-01-08T01:00:00Z", "reason": "Nghỉ phép"})),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "invalid_value"),
            "{bad}: {}",
            r.body
        );
        assert_eq!(
            r.body["errors"][0]["field"], "starts_at",
            "{bad}: the field is named"
        );
    }
    assert_eq!(count(&w.store, "doctor_leave").await, before, "nothing written");
    // In a query too.
    let r = call(
        &w.app,
        Method::GET,
        "/api/audit?from=%2B262142-12-31T23:59:59Z",
        Some(w.t_admin.as_str()),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_time"),
        "{}",
        r.body
    );
    // The edges of the range are fine.
    let r = call(
        &w.app,
        Method::POST,
        &path,
        t,
        Some(json!({"starts_at": "2999-12-30T00:00:00Z", "ends_at": "2999-12-31T23:59:59Z", "reason": "Nghỉ phép"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}
on_both!(timestamps_outside_the_years_1900_to_2999_are_refused_at_the_edge);

async fn a_reused_refresh_token_ends_the_whole_session(store: Store) {
    let w = world(store).await;
    let refresh = |token: String| {
        let app = w.app.clone();
        async move {
            call(
                &app,
                Method::POST,
                "/api/auth/refresh",
                None,
                Some(json!({"refresh_token": token})),
            )
            .await
        }
    };
    let login = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "doc1", "password": PASSWORD})),
    )
    .await;
    let r1 = login.body["refresh_token"].as_str().unwrap().to_owned();
    // Someone rotates R1 first (a thief, say): R2, and a live access token.
    let second = refresh(r1.clone()).await;
    assert_eq!(second.status, StatusCode::OK);
    let r2 = second.body["refresh_token"].as_str().unwrap().to_owned();
    let access = second.body["access_token"].as_str().unwrap().to_owned();
    // R1 comes back (the owner): refused, and the session ends for every holder.
    let reuse = refresh(r1).await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(r2).await.status,
        StatusCode::UNAUTHORIZED,
        "the newer token dies with its session"
    );
    let me = call(&w.app, Method::GET, "/api/auth/me", Some(&access), None).await;
    assert_eq!(
        (me.status, me.code()),
        (StatusCode::UNAUTHORIZED, "session_ended")
    );
    let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.refresh_reused' AND resource_id = $1 AND outcome = 'denied'")
        .bind(w.doc1.id.to_string())
        .fetch_one(w.store.pool())
        .await
        .unwrap();
    assert_eq!(audited, 1, "the reuse is audited");
    // Other sessions of the same account are untouched; a fresh login works.
    let again = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "doc1", "password": PASSWORD})),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        call(&w.app, Method::GET, "/api/auth/me", Some(&w.t_doc1), None)
            .await
            .status,
        StatusCode::OK
    );
}
on_both!(a_reused_refresh_token_ends_the_whole_session);

async fn an_admin_changes_their_own_password_only_with_the_current_one(store: Store) {
    let w = world(store).await;
    let path = format!("/api/users/{}", w.admin.id);
    let t = Some(w.t_admin.as_str());
    let new = "mật-khẩu-mới-của-quản-trị";
    let r = call(&w.app, Method::PATCH, &path, t, Some(json!({"password": new}))).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("current_password_required")
        ),
        "{}",
        r.body
    );
    let r = call(
        &w.app,
        Method::PATCH,
        &path,
        t,
        Some(json!({"password": new, "current_password": "không-phải-nó"})),
    )
    .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_current_password")),
        "{}",
        r.body
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'user.password_confirm' AND outcome = 'denied'",
    )
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    assert_eq!(audited, 1, "the wrong answer is audited");
    // Nothing changed: the old password still logs in.
    let login = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "admin", "password": PASSWORD})),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    // Someone else's password needs no current one (a reset, by an admin).
    let other = format!("/api/users/{}", w.doc1.id);
    let r = call(&w.app, Method::PATCH, &other, t, Some(json!({"password": new}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(
        &w.app,
        Method::PATCH,
        &path,
        t,
        Some(json!({"password": new, "current_password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
on_both!(an_admin_changes_their_own_password_only_with_the_current_one);

async fn writes_from_another_sites_page_are_refused(store: Store) {
    let w = world(store).await;
    // Two requests in hospital 1's queue, not yet accepted.
    let requested = |name: &'static str, cccd: &'static str| {
        let w = &w;
        async move {
            let mut p = patient_json(name);
            p["cccd"] = json!(cccd);
            let pid = call(&w.app, Method::POST, "/api/patients", Some(&w.t_hw1), Some(p))
                .await
                .body["id"]
                .clone();
            w.consent(pid.as_str().unwrap()).await;
            let c = json!({"patient_id": pid, "kind": "urgent", "reason": "Sốt cao"});
            let r = call(
                &w.app,
                Method::POST,
                "/api/consultations",
                Some(&w.t_hw1),
                Some(c),
            )
            .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    let cid = requested("Lò Thị Xuân", "001185012399").await;
    let cid2 = requested("Lò Thị Páo", "001185012398").await;
    let login = call(
        &w.app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": "doc1", "password": PASSWORD})),
    )
    .await;
    let cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    let accept = |site: Option<&'static str>, origin: Option<&'static str>, bearer: bool| {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/consultations/{cid}/accept"))
            .header("host", "telehealth.example")
            .header("content-type", "application/x-www-form-urlencoded");
        b = if bearer {
            b.header("authorization", format!("Bearer {}", w.t_doc1))
        } else {
            b.header("cookie", &cookie)
        };
        if let Some(s) = site {
            b = b.header("sec-fetch-site", s);
        }
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        send(&w.app, b.body(Body::empty()).unwrap())
    };
    // A form on another site's page (a sibling subdomain is "same-site"), with the doctor's cookies.
    for (site, origin) in [
        (Some("cross-site"), None),
        (Some("same-site"), Some("https://tin-tuc.telehealth.example")),
        (None, Some("https://evil.example")),
        (None, Some("null")),
    ] {
        let r = accept(site, origin, false).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "cross_site_request"),
            "{site:?} {origin:?}"
        );
    }
    let c = call(
        &w.app,
        Method::GET,
        &format!("/api/consultations/{cid}"),
        Some(&w.t_doc1),
        None,
    )
    .await;
    assert_eq!(c.body["state"], "requested", "nothing accepted");
    // A login posted from another site is refused too (it would sign the victim in as the attacker).
    let r = send(
        &w.app,
        Request::builder()
            .method(Method::POST)
            .uri("/api/auth/login")
            .header("sec-fetch-site", "cross-site")
            .header("content-type", "application/json")
            .body(Body::from(
                json!({"username": "doc1", "password": PASSWORD}).to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A bearer token cannot come from another site's page: not refused (then the consultation's own rules apply).
    let r = accept(Some("cross-site"), None, true).await;
    assert_ne!(r.code(), "cross_site_request", "{}", r.body);
    // The app's own page: accepted.
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/consultations/{cid2}/accept"))
        .header("cookie", &cookie)
        .header("host", "telehealth.example");
    b = b
        .header("sec-fetch-site", "same-origin")
        .header("origin", "https://telehealth.example");
    let r = send(&w.app, b.body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = send(
        &w.app,
        Request::builder()
            .method(Method::POST)
            .uri(format!("/api/consultations/{cid2}/state"))
            .header("cookie", &cookie)
            .header("host", "telehealth.example")
            .header("origin", "https://telehealth.example")
            .header("content-type", "application/json")
            .body(Body::from(json!({"state": "cancelled"}).to_string()))
            .unwrap(),
    )
    .await;
    assert_ne!(
        r.code(),
        "cross_site_request",
        "an older browser's same-origin Origin passes: {}",
        r.body
    );
}
on_both!(writes_from_another_sites_page_are_refused);

async fn bodies_names_and_passwords_that_only_look_valid_are_refused(store: Store) {
    let w = world(store).await;
    let a = Some(w.t_admin.as_str());
    let user = format!("/api/users/{}", w.doc1.id);
    // An array is not an object (serde would fill fields by position: it renamed the user).
    let r = call(
        &w.app,
        Method::PATCH,
        &user,
        a,
        Some(json!(["Renamed", null, null, true])),
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "invalid_type"),
        "{}",
        r.body
    );
    // Names of nothing visible, or that reverse the text around them.
    for name in [
        "\u{200B}\u{200B}\u{200B}",
        " \u{FEFF} ",
        "Bác sĩ \u{202E}ịhT",
        "Nguyễn\u{0}Văn",
    ] {
        let r = call(
            &w.app,
            Method::PATCH,
            &user,
            a,
            Some(json!({"display_name": name})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}: {}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "display_name", "{name:?}");
    }
    let mut p = patient_json("\u{200B}\u{200C}");
    p["cccd"] = json!("001185012397");
    let r = call(&w.app, Method::POST, "/api/patients", Some(&w.t_hw1), Some(p)).await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("full_name")),
        "{}",
        r.body
    );
    // Passwords of spaces, or with control characters.
    for pw in [
        "          ",
        "   abc    ",
        "mật-khẩu\u{0}dài-lắm",
        "mật\tkhẩu-dài-lắm",
    ] {
        let r = call(&w.app, Method::PATCH, &user, a, Some(json!({"password": pw}))).await;
        assert_eq!(
            (r.status, r.body["errors"][0]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("weak_password")),
            "{pw:?}: {}",
            r.body
        );
    }
    let r = call(&w.app, Method::GET, &user, a, None).await;
    assert_eq!(r.body["display_name"], w.doc1.display_name, "nothing changed");
    // A passphrase with spaces is fine.
    let r = call(
        &w.app,
        Method::PATCH,
        &user,
        a,
        Some(json!({"password": "trâu ăn cỏ non"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
on_both!(bodies_names_and_passwords_that_only_look_valid_are_refused);

/// Whoever holds the database can lift the append-only triggers.
async fn lift_append_only(store: &Store) {
    for sql in [
        "DROP TRIGGER audit_log_append_only_update",
        "DROP TRIGGER audit_log_append_only_delete",
        "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    ] {
        let _ = sqlx::query(sql).execute(store.pool()).await;
    }
}

async fn the_audit_chain_shows_entries_changed_removed_or_cut_off(store: Store) {
    let w = world(store).await;
    let a = Some(w.t_admin.as_str());
    let verify = |anchor: Option<String>| {
        let app = w.app.clone();
        let token = w.t_admin.clone();
        async move {
            let q = anchor.map(|x| format!("?anchor={x}")).unwrap_or_default();
            call(
                &app,
                Method::GET,
                &format!("/api/audit/verify{q}"),
                Some(&token),
                None,
            )
            .await
            .body
        }
    };
    let ok = verify(None).await;
    assert_eq!(ok["intact"], true, "{ok}");
    assert!(ok["checked"].as_i64().unwrap() > 5, "{ok}");
    let anchor = ok["anchor"].as_str().unwrap().to_owned();
    assert_eq!(ok["signature"].as_str().map(str::len), Some(64), "{ok}");
    // Later entries, then the anchor still holds.
    call(&w.app, Method::GET, "/api/audit?limit=5", a, None).await;
    assert_eq!(verify(Some(anchor.clone())).await["intact"], true);
    let r = call(&w.app, Method::GET, "/api/audit/verify?anchor=12:xyz", a, None).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_anchor"));
    let r = call(&w.app, Method::GET, "/api/audit/verify", Some(&w.t_doc1), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "admins only");

    lift_append_only(&w.store).await;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM audit_log ORDER BY id")
        .fetch_all(w.store.pool())
        .await
        .unwrap();
    let middle = ids[ids.len() / 2];
    // An entry changed: a denied read made to look allowed.
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM audit_log WHERE id = $1")
        .bind(middle)
        .fetch_one(w.store.pool())
        .await
        .unwrap();
    let flipped = if outcome == "ok" { "denied" } else { "ok" };
    sqlx::query("UPDATE audit_log SET outcome = $1 WHERE id = $2")
        .bind(flipped)
        .bind(middle)
        .execute(w.store.pool())
        .await
        .unwrap();
    let r = verify(None).await;
    assert_eq!(
        (r["intact"].as_bool(), r["broken_at"].as_i64()),
        (Some(false), Some(middle)),
        "{r}"
    );
    assert!(r["problem"].as_str().unwrap().contains("changed"), "{r}");
    assert!(r["anchor"].is_null(), "no anchor is signed for a broken chain");
    sqlx::query("UPDATE audit_log SET outcome = $1 WHERE id = $2")
        .bind(&outcome)
        .bind(middle)
        .execute(w.store.pool())
        .await
        .unwrap();
    assert_eq!(verify(None).await["intact"], true, "put back, it holds again");
    // An entry removed.
    sqlx::query("DELETE FROM audit_log WHERE id = $1")
        .bind(middle)
        .execute(w.store.pool())
        .await
        .unwrap();
    let r = verify(None).await;
    assert_eq!(
        (r["intact"].as_bool(), r["broken_at"].as_i64()),
        (Some(false), Some(ids[ids.len() / 2 + 1])),
        "{r}"
    );
    assert!(r["problem"].as_str().unwrap().contains("does not follow"), "{r}");
}
on_both!(the_audit_chain_shows_entries_changed_removed_or_cut_off);

async fn an_anchor_kept_outside_shows_a_chain_cut_off_and_its_head_rewritten(store: Store) {
    let w = world(store).await;
    let a = Some(w.t_admin.as_str());
    let first = call(&w.app, Method::GET, "/api/audit/verify", a, None).await.body;
    let keep: i64 = first["head_id"].as_i64().unwrap();
    for _ in 0..3 {
        call(&w.app, Method::GET, "/api/audit?limit=1", a, None).await;
    }
    let later = call(&w.app, Method::GET, "/api/audit/verify", a, None).await.body;
    let anchor = later["anchor"].as_str().unwrap().to_owned();
    // The newest entries removed, and the recorded head set back to match:
    // the chain alone looks whole.
    lift_append_only(&w.store).await;
    sqlx::query("DELETE FROM audit_log WHERE id > $1")
        .bind(keep)
        .execute(w.store.pool())
        .await
        .unwrap();
    let (hash, n): (String, i64) = sqlx::query_as(
        "SELECT hash, (SELECT COUNT(*) FROM audit_log WHERE hash IS NOT NULL) FROM audit_log WHERE id = $1",
    )
    .bind(keep)
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE audit_chain SET hash = $1, entries = $2 WHERE id = 1")
        .bind(&hash)
        .bind(n)
        .execute(w.store.pool())
        .await
        .unwrap();
    let r = call(&w.app, Method::GET, "/api/audit/verify", a, None).await.body;
    assert_eq!(r["intact"], true, "{r}");
    // The anchor kept from before was not.
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/audit/verify?anchor={anchor}"),
        a,
        None,
    )
    .await
    .body;
    assert_eq!(r["intact"], false, "{r}");
    assert!(r["problem"].as_str().unwrap().contains("missing"), "{r}");
}
on_both!(an_anchor_kept_outside_shows_a_chain_cut_off_and_its_head_rewritten);

async fn a_long_session_log_comes_a_page_at_a_time(store: Store) {
    let w = world(store).await;
    let (_, cid) = w.patient_and_consultation("Giàng Thị Mỷ", "001185012396").await;
    let c: telehealth_records::ConsultationId = cid.parse().unwrap();
    for i in 0..25 {
        w.store
            .append_session_event(
                c,
                None,
                telehealth_records::SessionEntry::Stats(telehealth_records::SessionStats {
                    loss_pct: Some(f64::from(i % 7)),
                    rtt_ms: Some(40.0),
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
    }
    let a = Some(w.t_admin.as_str());
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    let mut pages = 0;
    loop {
        let q = after.map(|x| format!("&after_id={x}")).unwrap_or_default();
        let r = call(
            &w.app,
            Method::GET,
            &format!("/api/sessions/{cid}?limit=10{q}"),
            a,
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            r.body["quality"]["samples"], 25,
            "the summary covers every event, on every page"
        );
        let events = r.body["events"].as_array().unwrap();
        assert!(events.len() <= 10);
        seen.extend(events.iter().map(|e| e["id"].as_i64().unwrap()));
        pages += 1;
        match r.body["next_after_id"].as_i64() {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let all: Vec<i64> = call(&w.app, Method::GET, &format!("/api/sessions/{cid}"), a, None)
        .await
        .body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(
        all.len() >= 25 && pages >= 3,
        "{} events in {pages} pages",
        all.len()
    );
    assert_eq!(seen, all, "the pages together are the whole log, in order, once");
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/sessions/{cid}?after_id=abc"),
        a,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}
on_both!(a_long_session_log_comes_a_page_at_a_time);

async fn a_citizen_id_on_file_at_another_station_is_an_audited_and_limited_answer(store: Store) {
    let w = world(store).await;
    let mut p = patient_json("Vàng Thị Dua");
    p["cccd"] = json!("001185012395");
    let r = call(
        &w.app,
        Method::POST,
        "/api/patients",
        Some(&w.t_hw1),
        Some(p.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let pid = r.body["id"].as_str().unwrap().to_owned();
    // The same station: the usual "search for them".
    let r = call(
        &w.app,
        Method::POST,
        "/api/patients",
        Some(&w.t_hw1),
        Some(p.clone()),
    )
    .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "duplicate"));
    // Another station: told only that a record exists elsewhere, and audited under that patient.
    for _ in 0..5 {
        let r = call(
            &w.app,
            Method::POST,
            "/api/patients",
            Some(&w.t_hw2),
            Some(p.clone()),
        )
        .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::CONFLICT, "registered_elsewhere"),
            "{}",
            r.body
        );
        assert!(
            !r.body.to_string().contains(&pid),
            "the other record is not named"
        );
    }
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'patient.cccd_elsewhere' AND patient_id = $1 AND actor_id = $2 AND outcome = 'denied'",
    )
    .bind(&pid)
    .bind(w.hw2.id.to_string())
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    assert_eq!(audited, 5);
    // A sixth in a day: 429 (go through the hospital), audited like the others.
    let r = call(&w.app, Method::POST, "/api/patients", Some(&w.t_hw2), Some(p)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_lookups"),
        "{}",
        r.body
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'patient.cccd_elsewhere' AND patient_id = $1",
    )
    .bind(&pid)
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    assert_eq!(audited, 6);
}
on_both!(a_citizen_id_on_file_at_another_station_is_an_audited_and_limited_answer);

async fn a_withdrawn_consent_stops_new_consultations_and_cancels_unstarted_ones(store: Store) {
    let w = world(store).await;
    let pid = w.register("Sùng Thị Mỷ").await;
    let request = || json!({"patient_id": pid, "kind": "urgent", "reason": "Ho kéo dài"});
    let ask = || {
        call(
            &w.app,
            Method::POST,
            "/api/consultations",
            Some(&w.t_hw1),
            Some(request()),
        )
    };
    let denied = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'consultation.create' AND outcome = 'denied' AND patient_id = $1",
        )
        .bind(&pid)
        .fetch_one(w.store.pool())
        .await
        .unwrap()
    };

    // Never asked: refused, the refusal audited under the patient, nothing written.
    let r = ask().await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "consent_required"),
        "{}",
        r.body
    );
    assert_eq!(r.body["errors"][0]["field"], "patient_id");
    assert_eq!(denied().await, 1);
    assert_eq!(count(&w.store, "consultations").await, 0);

    // Given: one request waits in the queue, another is under way.
    w.consent(&pid).await;
    let waiting = ask().await.body["id"].as_str().unwrap().to_owned();
    let started = w.consultation_for(&pid).await;
    let r = w.doctor_moves(&started, "in_progress").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Withdrawn: the waiting request is cancelled, the call under way goes on,
    // and a new request is refused until consent is given again.
    let r = call(
        &w.app,
        Method::POST,
        &format!("/api/patients/{pid}/consents"),
        Some(&w.t_hw1),
        Some(consent_json("withdrawn")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["decision"], "withdrawn");
    let state = |id: String| {
        let app = w.app.clone();
        let t = w.t_hw1.clone();
        async move {
            call(
                &app,
                Method::GET,
                &format!("/api/consultations/{id}"),
                Some(&t),
                None,
            )
            .await
            .body["state"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(state(waiting).await, "cancelled");
    assert_eq!(state(started.clone()).await, "in_progress");
    let r = ask().await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "consent_withdrawn"),
        "{}",
        r.body
    );
    assert_eq!(denied().await, 2);

    // The doctor of the call under way sees the history, newest first, and who attested it.
    let r = call(
        &w.app,
        Method::GET,
        &format!("/api/patients/{pid}/consents"),
        Some(&w.t_doc1),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let events = r.body.as_array().unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e["decision"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["withdrawn", "granted"]
    );
    assert_eq!(events[0]["recorded_by_name"], w.hw1.display_name.as_str());
    assert_eq!(
        events[0]["text_version"],
        telehealth_records::current_consent_text().version
    );

    // Given again: requests are accepted again.
    w.consent(&pid).await;
    assert_eq!(ask().await.status, StatusCode::CREATED);
}
on_both!(a_withdrawn_consent_stops_new_consultations_and_cancels_unstarted_ones);

async fn a_consultation_says_what_each_caller_may_do_now(store: Store) {
    let w = world(store).await;
    let (_, cid) = w.patient_and_consultation("Hờ Thị Sua", "001185012399").await;
    let facts = |t: String| {
        let app = w.app.clone();
        let url = format!("/api/consultations/{cid}");
        async move {
            let r = call(&app, Method::GET, &url, Some(&t), None).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            (
                r.body["participant"].as_bool().unwrap(),
                r.body["joinable"].as_bool().unwrap(),
                r.body["call"].as_str().unwrap().to_owned(),
                r.body["closed"].as_bool().unwrap(),
                r.body["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>(),
            )
        }
    };
    // Accepted by doc1: the station and doc1 take part and may join; doc1b, of the same hospital, does not.
    assert_eq!(
        facts(w.t_hw1.clone()).await,
        (
            true,
            true,
            "open".into(),
            false,
            vec!["join".into(), "cancel".into()]
        )
    );
    assert_eq!(
        facts(w.t_doc1.clone()).await,
        (
            true,
            true,
            "open".into(),
            false,
            vec!["join".into(), "start".into()]
        )
    );
    let r = w.doctor_moves(&cid, "in_progress").await;
    assert_eq!(r.body["actions"], json!(["join", "complete"]), "{}", r.body);
    let r = w.doctor_moves(&cid, "completed").await;
    assert_eq!(
        (r.body["closed"].as_bool(), r.body["call"].as_str()),
        (Some(true), Some("closed"))
    );
    assert_eq!(
        facts(w.t_hw1.clone()).await,
        (true, false, "closed".into(), true, vec![])
    );
}
on_both!(a_consultation_says_what_each_caller_may_do_now);
