//! Starts the real `telehealth` binary for end-to-end tests and talks to it
//! over HTTP.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use telehealth_tests::WsSession;

pub const ADMIN_PASSWORD: &str = "quản-trị-thử-nghiệm";
pub const PASSWORD: &str = "mật-khẩu-thử-nghiệm";

/// A running server process; everything it printed is kept in `output`.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub output: Arc<Mutex<String>>,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let d = std::env::temp_dir().join(format!("telehealth-e2e-{tag}-{t:x}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A database URL for a fresh database of the given backend.
pub async fn database_url(backend: &str, data_dir: &Path) -> String {
    match backend {
        "sqlite" => format!("sqlite://{}?mode=rwc", data_dir.join("telehealth.db").display()),
        _ => {
            let base = std::env::var("TELEHEALTH_TEST_POSTGRES_URL")
                .expect("TELEHEALTH_TEST_POSTGRES_URL is not set: run the suite with tests/run.sh, which starts PostgreSQL");
            let name = format!(
                "e2e_{}",
                data_dir.file_name().unwrap().to_string_lossy().replace('-', "_")
            );
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(&base).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
            format!("{}/{name}", &base[..base.rfind('/').unwrap()])
        }
    }
}

/// Collects `child`'s stdout and stderr, line by line, into the returned
/// buffer, and waits until a line makes `ready` return something (a
/// listening address, say), which is returned too. Panics with the output so
/// far when `what` is not ready within `timeout`.
pub fn capture_output<T: Send + 'static>(
    child: &mut Child,
    what: &str,
    timeout: Duration,
    ready: impl Fn(&str) -> Option<T> + Send + Sync + 'static,
) -> (Arc<Mutex<String>>, T) {
    let output = Arc::new(Mutex::new(String::new()));
    let ready = Arc::new(ready);
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr piped")),
    ] {
        let (output, tx, ready) = (output.clone(), tx.clone(), ready.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(v) = ready(&line) {
                    let _ = tx.send(v);
                }
                let mut o = output.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
    }
    let value = rx
        .recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("{what} did not start:\n{}", output.lock().unwrap()));
    (output, value)
}

impl Server {
    /// Starts the binary on a free port and waits until it listens.
    pub fn start(data_dir: &Path, database_url: &str) -> Server {
        Self::start_with(data_dir, database_url, &[])
    }

    /// Starts the binary with extra flags.
    pub fn start_with(data_dir: &Path, database_url: &str, extra: &[&str]) -> Server {
        Self::start_with_env(data_dir, database_url, extra, &[])
    }

    /// Starts the binary with extra flags and environment variables.
    pub fn start_with_env(
        data_dir: &Path,
        database_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_telehealth"));
        cmd.args(extra);
        cmd.envs(env.iter().copied());
        // Defaults a test may override (a flag may be given only once).
        for (flag, value) in [("--http-addr", "127.0.0.1:0"), ("--media-udp-port", "0")] {
            if !extra.contains(&flag) {
                cmd.args([flag, value]);
            }
        }
        let mut child = cmd
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--database-url", database_url])
            .env("TELEHEALTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // The most verbose logging: nothing personal may appear even here.
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start telehealth");
        let (output, base) = capture_output(&mut child, "server", Duration::from_secs(60), |line| {
            line.split("listening on ")
                .nth(1)
                .filter(|u| u.starts_with("http"))
                .map(|u| u.trim().to_owned())
        });
        Server { child, base, output }
    }

    /// Kills the process without warning (SIGKILL): no shutdown, no flush.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The call socket's URL.
    pub fn ws_url(&self) -> String {
        self.url("/api/ws").replace("http://", "ws://")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

pub async fn login(c: &reqwest::Client, s: &Server, user: &str, password: &str) -> String {
    let r = c
        .post(s.url("/api/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login {user}");
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

pub async fn post(c: &reqwest::Client, s: &Server, token: &str, path: &str, body: Value) -> Value {
    send(c, s, token, reqwest::Method::POST, path, body).await
}

pub async fn put(c: &reqwest::Client, s: &Server, token: &str, path: &str, body: Value) -> Value {
    send(c, s, token, reqwest::Method::PUT, path, body).await
}

/// A JSON request that must succeed; its answer.
async fn send(
    c: &reqwest::Client,
    s: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let r = c
        .request(method.clone(), s.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

/// Records the patient's own consent to the text in use (read from the
/// server, as the page does), as a health worker does before a first
/// consultation.
pub async fn consent(c: &reqwest::Client, s: &Server, token: &str, patient: &str) -> Value {
    let text = get(c, s, token, "/api/consent-text").await;
    post(
        c,
        s,
        token,
        &format!("/api/patients/{patient}/consents"),
        serde_json::json!({"decision": "granted", "given_by": "patient", "text_version": text["version"]}),
    )
    .await
}

/// Polls `f` until it returns true or the timeout passes.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

/// Tokens of a small province set up through the API: one hospital with a
/// doctor, one station with a health worker.
pub struct Province {
    pub admin: String,
    pub doctor: String,
    pub worker: String,
    pub hospital_id: String,
    pub station_id: String,
}

pub async fn province(c: &reqwest::Client, s: &Server) -> Province {
    let admin = login(c, s, "admin", ADMIN_PASSWORD).await;
    let h = post(
        c,
        s,
        &admin,
        "/api/facilities",
        json!({"code": "H", "name": "TTYT huyện", "kind": "district_hospital", "province": "Điện Biên"}),
    )
    .await;
    let st = post(c, s, &admin, "/api/facilities", json!({"code": "S", "name": "Trạm y tế xã", "kind": "commune_station", "referral_hospital_id": h["id"], "province": "Điện Biên"})).await;
    post(c, s, &admin, "/api/users", json!({"username": "bacsi", "display_name": "Bác sĩ", "password": PASSWORD, "role": "doctor", "facility_id": h["id"]})).await;
    post(c, s, &admin, "/api/users", json!({"username": "yta", "display_name": "Y tá", "password": PASSWORD, "role": "health_worker", "facility_id": st["id"]})).await;
    Province {
        doctor: login(c, s, "bacsi", PASSWORD).await,
        worker: login(c, s, "yta", PASSWORD).await,
        admin,
        hospital_id: h["id"].as_str().unwrap().to_owned(),
        station_id: st["id"].as_str().unwrap().to_owned(),
    }
}

pub async fn get(c: &reqwest::Client, s: &Server, token: &str, path: &str) -> Value {
    let r = c.get(s.url(path)).bearer_auth(token).send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "GET {path}: {status} {v}");
    v
}

/// Waits until `who` hears `from`'s tone (± 10 Hz) and has `min_frames` of
/// its video complete; fails with the participant's report after `within`.
pub async fn media_flows(who: &WsSession, from: &str, tone: f64, min_frames: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let r = who.participant.report();
        let ok = r
            .audio_from(from)
            .and_then(|a| a.dominant_frequency_hz)
            .is_some_and(|f| (f - tone).abs() <= 10.0)
            && r.video_from(from)
                .is_some_and(|v| v.frames_complete >= min_frames);
        if ok {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "media from {from} did not arrive in {within:?}:\n{r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An urgent consultation requested by the province's station for a new
/// patient and accepted by its doctor; returns its id.
pub async fn accepted_consultation(c: &reqwest::Client, s: &Server, p: &Province) -> String {
    let patient = post(
        c,
        s,
        &p.worker,
        "/api/patients",
        json!({"full_name": "Sùng A Chử", "date_of_birth": "1980-01-01", "sex": "male"}),
    )
    .await;
    consent(c, s, &p.worker, patient["id"].as_str().unwrap()).await;
    let cons = post(
        c,
        s,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": patient["id"], "kind": "urgent", "reason": "Đau ngực"}),
    )
    .await;
    let cid = cons["id"].as_str().unwrap().to_owned();
    post(
        c,
        s,
        &p.doctor,
        &format!("/api/consultations/{cid}/accept"),
        json!({}),
    )
    .await;
    cid
}
