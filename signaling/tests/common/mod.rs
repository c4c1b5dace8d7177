//! Shared test helpers: the real router on a real database (a fresh SQLite
//! file, or a fresh database on the PostgreSQL server that `tests/run.sh`
//! starts), a small world of facilities and users, and a request helper.

#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use telehealth_records::*;
use telehealth_signaling::auth::{hash_password, ThrottlePolicy};
use telehealth_signaling::{app, Config};
use tower::ServiceExt;

pub const PASSWORD: &str = "mật-khẩu-thử-nghiệm";
pub const JWT_KEY: &[u8] = b"test-key-test-key-test-key-test-key-0123456789";

pub async fn sqlite() -> Store {
    let dir = std::env::temp_dir().join(format!("telehealth-sig-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    Store::open(&StoreOptions::new(format!(
        "sqlite://{}?mode=rwc",
        dir.join("t.db").display()
    )))
    .await
    .unwrap()
}

pub async fn postgres() -> Store {
    let base = std::env::var("TELEHEALTH_TEST_POSTGRES_URL").expect(
        "TELEHEALTH_TEST_POSTGRES_URL is not set: run the suite with tests/run.sh, which starts PostgreSQL",
    );
    sqlx_create_db(&base).await
}

async fn sqlx_create_db(base: &str) -> Store {
    let name = format!("s_{}", unique());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(base).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let i = base.rfind('/').unwrap();
    let mut opts = StoreOptions::new(format!("{}/{name}", &base[..i]));
    opts.max_connections = 4;
    Store::open(&opts).await.unwrap()
}

pub fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:x}{:x}{}",
        t,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs an async test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::common::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::common::postgres().await).await
            }
        }
    };
}

pub fn config() -> Config {
    use clap::Parser;
    Config::parse_from(["telehealth"])
}

pub async fn router(store: Store, throttle: ThrottlePolicy) -> Router {
    app(app_state(store, throttle).await)
}

/// The application state on a real SFU (loopback, a free UDP port).
pub async fn app_state(store: Store, throttle: ThrottlePolicy) -> telehealth_signaling::AppState {
    let sfu = telehealth_sfu::Sfu::start(telehealth_sfu::SfuConfig::loopback())
        .await
        .unwrap();
    let calls = telehealth_signaling::call::Calls::new(
        sfu,
        Default::default(),
        telehealth_signaling::call::DEFAULT_SEAT_HOLD,
    );
    // The sender is dropped: these tests never shut the server down.
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let state = telehealth_signaling::state(store.clone(), JWT_KEY, &config(), throttle, calls.clone(), rx);
    // One node, registered and beating as the server's own is.
    state.cluster.register(&store).await.unwrap();
    tokio::spawn(telehealth_signaling::cluster::heartbeat_loop(state.clone()));
    tokio::spawn(telehealth_signaling::call::dispatch(
        calls,
        store,
        state.hub.clone(),
    ));
    state
}

pub fn fast_throttle() -> ThrottlePolicy {
    ThrottlePolicy {
        window: Duration::from_secs(600),
        slow_after: 3,
        step: Duration::from_millis(10),
        lock_after: 6,
        lockout: Duration::from_secs(600),
    }
}

/// A response: status, headers and the JSON body (Null when empty).
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

pub async fn send(app: &Router, req: Request<Body>) -> Resp {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20).await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    if status.is_client_error() || status.is_server_error() {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(
            ct, "application/problem+json",
            "error responses are problem+json: {status} {body}"
        );
        assert!(
            body["code"].is_string() && body["detail"].is_string() && body["detail_en"].is_string(),
            "{body}"
        );
    }
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn call(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Resp {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    send(app, req).await
}

pub async fn raw(
    app: &Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Resp {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    send(app, b.body(Body::from(body)).unwrap()).await
}

pub async fn login(app: &Router, username: &str) -> String {
    let r = call(
        app,
        Method::POST,
        "/api/auth/login",
        None,
        Some(json!({"username": username, "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "login {username}: {}", r.body);
    r.body["access_token"].as_str().unwrap().to_owned()
}

/// Two hospitals, a station referring to each, one user per role and
/// facility (plus a second doctor at hospital 1), logged in.
pub struct World {
    pub store: Store,
    pub app: Router,
    pub h1: Facility,
    pub h2: Facility,
    pub s1: Facility,
    pub s2: Facility,
    pub admin: User,
    pub hw1: User,
    pub hw2: User,
    pub doc1: User,
    pub doc1b: User,
    pub doc2: User,
    pub t_admin: String,
    pub t_hw1: String,
    pub t_hw2: String,
    pub t_doc1: String,
    pub t_doc1b: String,
    pub t_doc2: String,
}

pub async fn world(store: Store) -> World {
    world_with(store, ThrottlePolicy::default()).await
}

pub async fn world_with(store: Store, throttle: ThrottlePolicy) -> World {
    let sys = Actor::system();
    let fac = |code: &str, kind: FacilityKind, referral: Option<FacilityId>| FacilityInput {
        code: code.into(),
        name: format!("Cơ sở {code}"),
        kind,
        referral_hospital_id: referral,
        province: "Hà Giang".into(),
    };
    let h1 = store
        .create_facility(&sys, &fac("H1", FacilityKind::DistrictHospital, None))
        .await
        .unwrap();
    let h2 = store
        .create_facility(&sys, &fac("H2", FacilityKind::DistrictHospital, None))
        .await
        .unwrap();
    let s1 = store
        .create_facility(&sys, &fac("S1", FacilityKind::CommuneStation, Some(h1.id)))
        .await
        .unwrap();
    let s2 = store
        .create_facility(&sys, &fac("S2", FacilityKind::CommuneStation, Some(h2.id)))
        .await
        .unwrap();
    let hash = hash_password(PASSWORD.into()).await.unwrap();
    let user = |name: &str, role: Role, f: Option<FacilityId>| NewUser {
        username: name.into(),
        display_name: name.to_uppercase(),
        password_hash: hash.clone(),
        role,
        facility_id: f,
    };
    let admin = store
        .create_user(&sys, &user("admin", Role::Admin, None))
        .await
        .unwrap();
    let hw1 = store
        .create_user(&sys, &user("hw1", Role::HealthWorker, Some(s1.id)))
        .await
        .unwrap();
    let hw2 = store
        .create_user(&sys, &user("hw2", Role::HealthWorker, Some(s2.id)))
        .await
        .unwrap();
    let doc1 = store
        .create_user(&sys, &user("doc1", Role::Doctor, Some(h1.id)))
        .await
        .unwrap();
    let doc1b = store
        .create_user(&sys, &user("doc1b", Role::Doctor, Some(h1.id)))
        .await
        .unwrap();
    let doc2 = store
        .create_user(&sys, &user("doc2", Role::Doctor, Some(h2.id)))
        .await
        .unwrap();
    let app = router(store.clone(), throttle).await;
    let t_admin = login(&app, "admin").await;
    let t_hw1 = login(&app, "hw1").await;
    let t_hw2 = login(&app, "hw2").await;
    let t_doc1 = login(&app, "doc1").await;
    let t_doc1b = login(&app, "doc1b").await;
    let t_doc2 = login(&app, "doc2").await;
    World {
        store,
        app,
        h1,
        h2,
        s1,
        s2,
        admin,
        hw1,
        hw2,
        doc1,
        doc1b,
        doc2,
        t_admin,
        t_hw1,
        t_hw2,
        t_doc1,
        t_doc1b,
        t_doc2,
    }
}

pub fn patient_json(name: &str) -> Value {
    json!({
        "full_name": name,
        "date_of_birth": "1985-03-27",
        "sex": "female",
        "phone": "0912 345 678",
        "address": "Thôn 2, xã Y Tý",
        "cccd": "001185012345",
        "bhyt": "DN4010123456789"
    })
}

/// The patient's own consent event, to the text in use.
pub fn consent_json(decision: &str) -> Value {
    json!({
        "decision": decision,
        "given_by": "patient",
        "text_version": telehealth_records::current_consent_text().version,
    })
}

pub fn note_json(assessment: &str) -> Value {
    json!({
        "subjective": "Sốt 3 ngày, ho khan",
        "objective": "T 38.6, SpO2 96%",
        "assessment": assessment,
        "plan": "Paracetamol 500mg",
        "icd10_codes": ["J18.9"],
        "disposition": "treat_at_station"
    })
}

impl World {
    /// A patient at station 1, with an urgent consultation to hospital 1
    /// accepted by doc1. Returns (patient id, consultation id).
    pub async fn patient_and_consultation(&self, name: &str, cccd: &str) -> (String, String) {
        let mut p = patient_json(name);
        p["cccd"] = json!(cccd);
        let r = call(
            &self.app,
            Method::POST,
            "/api/patients",
            Some(&self.t_hw1),
            Some(p),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let pid = r.body["id"].as_str().unwrap().to_owned();
        self.consent(&pid).await;
        let c = self.consultation_for(&pid).await;
        (pid, c)
    }

    /// doc1 moves a consultation to `state`.
    pub async fn doctor_moves(&self, cid: &str, state: &str) -> Resp {
        call(
            &self.app,
            Method::POST,
            &format!("/api/consultations/{cid}/state"),
            Some(&self.t_doc1),
            Some(json!({ "state": state })),
        )
        .await
    }

    /// Registers a patient at station 1 (hw1); returns the id.
    pub async fn register(&self, name: &str) -> String {
        let r = call(
            &self.app,
            Method::POST,
            "/api/patients",
            Some(&self.t_hw1),
            Some(patient_json(name)),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Records the patient's consent (hw1 attests it), as before a first consultation.
    pub async fn consent(&self, pid: &str) {
        let r = call(
            &self.app,
            Method::POST,
            &format!("/api/patients/{pid}/consents"),
            Some(&self.t_hw1),
            Some(consent_json("granted")),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }

    pub async fn consultation_for(&self, pid: &str) -> String {
        let r = call(
            &self.app,
            Method::POST,
            "/api/consultations",
            Some(&self.t_hw1),
            Some(json!({"patient_id": pid, "kind": "urgent", "reason": "Sốt cao, khó thở"})),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let cid = r.body["id"].as_str().unwrap().to_owned();
        let r = call(
            &self.app,
            Method::POST,
            &format!("/api/consultations/{cid}/accept"),
            Some(&self.t_doc1),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        cid
    }
}

/// The smallest thing that starts like a JPEG (the server checks the
/// signature, it does not decode images).
pub const JPEG: &[u8] = &[
    0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0xFF, 0xD9,
];
