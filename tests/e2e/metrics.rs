//! The Prometheus metrics through the real binary: a call between two real
//! WebRTC participants shows up (packets and bytes forwarded, rooms,
//! participants, join times, the station's loss and round trip, requests by
//! route, a wrong password), nothing about a patient does; `promtool check
//! metrics` accepts the text; a real Prometheus started here scrapes the
//! node and finds the call's packets, evaluates the alert rules without an
//! error, and answers every query of the Grafana dashboard. The metrics are
//! not on the public port, and ask for their token when one is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use telehealth_tests::{ParticipantConfig, WsSession};

/// The metrics URL the server printed at start.
fn metrics_url(server: &Server) -> String {
    let out = server.output.lock().unwrap();
    out.lines()
        .find_map(|l| l.split("telehealth metrics on ").nth(1))
        .map(|u| u.trim().to_owned())
        .unwrap_or_else(|| panic!("no metrics address printed:\n{out}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of every sample of `name` whose line contains each of `with`,
/// summed.
fn sum_of(text: &str, name: &str, with: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = series.split('{').next().unwrap_or("");
        if metric == name && with.iter().all(|w| series.contains(w)) {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap();
        }
    }
    found
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn prometheus_query(c: &reqwest::Client, base: &str, q: &str) -> Value {
    match c
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        // Prometheus may still be starting.
        Err(_) => Value::Null,
    }
}

/// Asks Prometheus `q` (one number) every 250 ms for up to 30 s until it
/// reaches `at_least`; the last answer.
async fn prometheus_reaches(c: &reqwest::Client, base: &str, q: &str, at_least: f64) -> f64 {
    let mut v = 0.0;
    for _ in 0..120 {
        v = prometheus_query(c, base, q).await["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if v >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_shows_in_the_metrics_and_a_real_prometheus_scrapes_them() {
    let dir = temp_dir("metrics");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start_with(&dir, &db, &["--metrics-addr", "127.0.0.1:0"]);
    let metrics = metrics_url(&server);
    let c = client();
    let on_public_port = c.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(
        on_public_port.status(),
        404,
        "metrics are never on the public port"
    );

    let p = province(&c, &server).await;
    let wrong = c
        .post(server.url("/api/auth/login"))
        .json(&json!({"username": "yta", "password": "not-the-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let nowhere = c.get(server.url("/api/no-such-thing")).send().await.unwrap();
    assert_eq!(nowhere.status(), 404);
    let cid = accepted_consultation(&c, &server, &p).await;
    let url = server.ws_url();
    let station = WsSession::join(&url, &p.worker, &cid, ParticipantConfig::new("station", 660.0))
        .await
        .unwrap();
    let doctor = WsSession::join(&url, &p.doctor, &cid, ParticipantConfig::new("doctor", 440.0))
        .await
        .unwrap();
    media_flows(
        &doctor,
        &station.participant_id,
        660.0,
        20,
        Duration::from_secs(15),
    )
    .await;
    media_flows(
        &station,
        &doctor.participant_id,
        440.0,
        20,
        Duration::from_secs(15),
    )
    .await;

    // The station's quality appears with its first stats sample (every 5 s).
    let scrape = || async { c.get(&metrics).send().await.unwrap().text().await.unwrap() };
    let station_label = format!("station=\"{}\"", p.station_id);
    let mut text = String::new();
    let seen = eventually(Duration::from_secs(20), || {
        text = futures_block(scrape());
        sum_of(&text, "telehealth_station_packet_loss_ratio", &[&station_label]).is_some()
    })
    .await;
    assert!(seen, "the station's loss never showed:\n{text}");

    assert!(
        sum_of(&text, "telehealth_media_packets_forwarded_total", &[]).unwrap() > 100.0,
        "packets forwarded:\n{text}"
    );
    assert!(sum_of(&text, "telehealth_media_bytes_forwarded_total", &[]).unwrap() > 10_000.0);
    assert_eq!(sum_of(&text, "telehealth_rooms", &[]), Some(1.0));
    assert_eq!(sum_of(&text, "telehealth_participants", &[]), Some(2.0));
    assert!(
        sum_of(&text, "telehealth_join_seconds_count", &[]).unwrap() >= 2.0,
        "both joins timed to their media:\n{text}"
    );
    assert!(
        text.contains("station_name=\"Trạm y tế xã\""),
        "the station's name:\n{text}"
    );
    assert!(sum_of(&text, "telehealth_station_rtt_seconds", &[&station_label]).is_some());
    assert!(sum_of(&text, "telehealth_rtt_seconds_count", &["side=\"station\""]).unwrap() >= 1.0);
    assert!(
        sum_of(
            &text,
            "telehealth_packet_loss_ratio_count",
            &["side=\"hospital\"", "direction=\"uplink\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sum_of(
            &text,
            "telehealth_http_request_duration_seconds_count",
            &[
                "method=\"POST\"",
                "route=\"/api/consultations/{id}/accept\"",
                "status=\"200\""
            ]
        )
        .unwrap()
            >= 1.0,
        "requests by route template:\n{text}"
    );
    assert!(
        sum_of(
            &text,
            "telehealth_http_request_duration_seconds_count",
            &["route=\"unmatched\"", "status=\"404\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(sum_of(&text, "telehealth_login_failures_total", &[]).unwrap() >= 1.0);
    assert!(sum_of(&text, "telehealth_websocket_connections", &[]).unwrap() >= 2.0);
    let by_state: f64 = sum_of(&text, "telehealth_consultations", &[]).unwrap();
    assert_eq!(by_state, 1.0, "one consultation, in one state:\n{text}");
    assert_eq!(sum_of(&text, "telehealth_database_up", &[]), Some(1.0));
    // Nothing about the patient or the consultation.
    for secret in ["Sùng A Chử", "Đau ngực", cid.as_str()] {
        assert!(!text.contains(secret), "{secret:?} in the metrics");
    }

    // promtool's own check of the exposition format and its naming rules.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; tests/scripts/deps.sh installs it)");
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus on loopback, scraping every second, with the rules.
    let prom_dir = temp_dir("prometheus");
    let target = metrics
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    let rules = repo().join("deploy/prometheus/alerts.yml");
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: telehealth\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let _prometheus = Process(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!("--storage.tsdb.path={}", prom_dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus package)"),
    );
    let base = format!("http://{web}");
    let packets = prometheus_reaches(&c, &base, "sum(telehealth_media_packets_forwarded_total)", 100.0).await;
    assert!(
        packets >= 100.0,
        "Prometheus never saw the call's packets ({packets})"
    );
    let up = prometheus_query(&c, &base, "up{job=\"telehealth\"}").await;
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");
    // A few scrapes, so that rates over a minute have points to work on.
    let scrapes = prometheus_reaches(&c, &base, "count_over_time(up{job=\"telehealth\"}[1m])", 4.0).await;
    assert!(scrapes >= 4.0, "Prometheus scraped {scrapes} times");

    // Every alert rule evaluated against the live node without an error.
    let mut rules_ok = false;
    let mut rules_seen = Value::Null;
    for _ in 0..40 {
        rules_seen = c
            .get(format!("{base}/api/v1/rules"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let all: Vec<&Value> = rules_seen["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if !all.is_empty() && all.iter().all(|r| r["health"] == "ok") {
            rules_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(rules_ok, "alert rules not evaluated cleanly: {rules_seen}");
    // A rule on a misspelled metric evaluates cleanly too, to nothing: each
    // rule's metrics must be ones the node serves.
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    for line in rules_text.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        for name in metric_names(line) {
            assert!(
                text.contains(&format!("# TYPE {} ", family(&name))),
                "the alert rule `{}` reads {name}, which the node does not serve",
                line.trim()
            );
        }
    }

    // Every query of the dashboard: valid, and on metrics the node serves.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/telehealth.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 20, "the dashboard's queries: {exprs:?}");
    for expr in &exprs {
        let q = expr.replace("$__rate_interval", "1m");
        let r = prometheus_query(&c, &base, &q).await;
        assert_eq!(r["status"], "success", "dashboard query {q}: {r}");
        // With a call running, every panel has something to show, but
        // server errors (none here).
        if !q.contains("status=~\"5..\"") {
            assert!(
                r["data"]["result"].as_array().is_some_and(|a| !a.is_empty()),
                "dashboard query {q} found nothing: {r}"
            );
        }
        for name in metric_names(&q) {
            assert!(
                text.contains(&format!("# TYPE {} ", family(&name))),
                "the dashboard reads {name}, which the node does not serve"
            );
        }
    }
    drop(station);
    drop(doctor);
}

/// The family a series name belongs to (a histogram's `_bucket`, `_sum`
/// and `_count` are its own).
fn family(name: &str) -> &str {
    name.trim_end_matches("_bucket")
        .trim_end_matches("_count")
        .trim_end_matches("_sum")
}

/// `telehealth_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("telehealth_") {
        let tail = &rest[i..];
        let end = tail
            .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Runs a future to completion from inside a synchronous closure.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_ask_for_their_token_and_can_be_turned_off() {
    let dir = temp_dir("metrics-token");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start_with(
        &dir,
        &db,
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--metrics-token",
            "a-long-metrics-token",
        ],
    );
    let metrics = metrics_url(&server);
    let c = client();
    let none = c.get(&metrics).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = c
        .get(&metrics)
        .bearer_auth("a-long-metrics-tokeN")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = c
        .get(&metrics)
        .bearer_auth("a-long-metrics-token")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(right.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = right.text().await.unwrap();
    assert!(text.contains("telehealth_build_info{"), "{text}");
    assert!(!text.contains("a-long-metrics-token"));
    assert!(
        !server.output.lock().unwrap().contains("a-long-metrics-token"),
        "the token is never logged"
    );

    let dir = temp_dir("metrics-off");
    let db = database_url("sqlite", &dir).await;
    let off = Server::start_with(&dir, &db, &["--metrics-addr", "off"]);
    assert!(!off.output.lock().unwrap().contains("telehealth metrics on"));

    let bad = Command::new(env!("CARGO_BIN_EXE_telehealth"))
        .args([
            "--metrics-addr",
            "everywhere",
            "--http-addr",
            "127.0.0.1:0",
            "--media-udp-port",
            "0",
        ])
        .arg("--data-dir")
        .arg(temp_dir("metrics-bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("--metrics-addr"),
        "the error names the setting: {err}"
    );
}
