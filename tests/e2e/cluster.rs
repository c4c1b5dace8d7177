//! Several nodes on one PostgreSQL database, as real processes on loopback:
//! each call is hosted by one node, and the pages that reach other nodes
//! are carried there (their signaling forwarded, their media straight to
//! the host's ports).

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use telehealth_tests::{ParticipantConfig, WsSession};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The JWT key every node shares (as a deployment sets it).
const JWT_KEY: &str = "cluster-test-key-0123456789abcdef0123456789";

/// Starts `ids.len()` nodes on one fresh PostgreSQL database, one after
/// another (the first creates the schema and the admin).
async fn nodes(tag: &str, ids: &[&str]) -> (Vec<Server>, String) {
    nodes_with(tag, ids, &[]).await
}

/// As [`nodes`], with extra flags for every node.
async fn nodes_with(tag: &str, ids: &[&str], extra: &[&str]) -> (Vec<Server>, String) {
    let first = temp_dir(tag);
    let db = database_url("postgres", &first).await;
    let mut servers = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let dir = if i == 0 {
            first.clone()
        } else {
            temp_dir(&format!("{tag}-{id}"))
        };
        servers.push(Server::start_with_env(
            &dir,
            &db,
            &[&["--node-id", id, "--media-engines", "1"], extra].concat(),
            &[("TELEHEALTH_JWT_KEY", JWT_KEY)],
        ));
    }
    (servers, db)
}

/// Whether `cid`'s host gave its call up.
async fn released(db: &str, cid: &str) -> bool {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db).await.unwrap();
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT released FROM room_placements WHERE consultation_id = $1")
            .bind(cid)
            .fetch_optional(&pool)
            .await
            .unwrap();
    pool.close().await;
    row == Some((1,))
}

async fn host_of(db: &str, cid: &str) -> Option<(String, i64)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db).await.unwrap();
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT node_id, epoch FROM room_placements WHERE consultation_id = $1")
            .bind(cid)
            .fetch_optional(&pool)
            .await
            .unwrap();
    pool.close().await;
    row
}

/// The station's page on `a` and the doctor's on `b` join `cid`'s call;
/// returns once audio and video flow both ways.
async fn in_call(a: &Server, b: &Server, p: &Province, cid: &str) -> (WsSession, WsSession) {
    let station = WsSession::join(
        &a.ws_url(),
        &p.worker,
        cid,
        ParticipantConfig::new("station", 660.0),
    )
    .await
    .unwrap();
    let doctor = WsSession::join(
        &b.ws_url(),
        &p.doctor,
        cid,
        ParticipantConfig::new("doctor", 440.0),
    )
    .await
    .unwrap();
    both_ways(&station, &doctor).await;
    (station, doctor)
}

/// Audio and video flow both ways between the station and the doctor.
async fn both_ways(station: &WsSession, doctor: &WsSession) {
    media_flows(
        doctor,
        &station.participant_id,
        660.0,
        20,
        Duration::from_secs(15),
    )
    .await;
    media_flows(
        station,
        &doctor.participant_id,
        440.0,
        20,
        Duration::from_secs(15),
    )
    .await;
}

/// Thirty more video frames from `from` reach `who`, with `from`'s tone:
/// its media still flows, not only did once.
async fn still_flows(who: &WsSession, from: &WsSession, tone: f64) {
    let frames = who
        .participant
        .report()
        .video_from(&from.participant_id)
        .map_or(0, |v| v.frames_complete);
    media_flows(
        who,
        &from.participant_id,
        tone,
        frames + 30,
        Duration::from_secs(10),
    )
    .await;
}

/// Waits for `server` to exit by itself; its exit status.
async fn exit_of(server: &mut Server, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            return s;
        }
        if std::time::Instant::now() >= deadline {
            let log = server.output.lock().unwrap().clone();
            let tail: Vec<&str> = log.lines().filter(|l| !l.contains("DEBUG")).collect();
            panic!(
                "the node did not exit:\n{}",
                tail[tail.len().saturating_sub(40)..].join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A station whose page talks to node A and a doctor whose page talks to
/// node B share one consultation: the call is hosted on one node (here C,
/// the least loaded by id), both sockets are forwarded there, and audio and
/// video flow both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_joined_through_two_nodes_is_hosted_on_one_with_media_both_ways() {
    // Placement breaks ties by node id: "n1" (node C) takes the first call.
    let (servers, db) = nodes("cluster", &["n2", "n3", "n1"]).await;
    let (a, b, c_node) = (&servers[0], &servers[1], &servers[2]);
    let c = client();
    let p = province(&c, a).await;
    let cid = accepted_consultation(&c, a, &p).await;

    let (_station, _doctor) = in_call(a, b, &p, &cid).await;

    assert_eq!(host_of(&db, &cid).await, Some(("n1".to_owned(), 1)));
    let forwarded = |s: &Server| {
        s.output
            .lock()
            .unwrap()
            .matches("call socket forwarded to its node")
            .count()
    };
    assert!(forwarded(a) >= 1, "node A forwarded the station's socket");
    assert!(forwarded(b) >= 1, "node B forwarded the doctor's socket");
    assert_eq!(forwarded(c_node), 0);
    let host_log = c_node.output.lock().unwrap().clone();
    assert!(host_log.contains("call placed on this node"), "{host_log}");
    // Both in one room: the host saw the doctor and the station together,
    // which is what starts the consultation.
    let state = get(&c, b, &p.doctor, &format!("/api/consultations/{cid}")).await;
    assert_eq!(state["state"], "in_progress", "{state}");
}

/// Joins `cid` afresh through `server` (as a page that lost its call does:
/// its socket comes back, its seat is gone with the dead node, and it joins
/// with a new connection), retrying at the page's pace until a node takes
/// the call.
async fn join_until_placed(server: &Server, token: &str, cid: &str, name: &str, tone: f64) -> WsSession {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match WsSession::join(&server.ws_url(), token, cid, ParticipantConfig::new(name, tone)).await {
            Ok(s) => return s,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name} never got back in: {e:#}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The node hosting a call is killed (SIGKILL) mid-call: the pages come
/// back through the nodes they talk to, the call is placed on a surviving
/// node (a higher epoch, in the session log), and audio and video flow both
/// ways again in the same consultation; a note saved before the kill is
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_node_is_killed_comes_back_on_a_surviving_node() {
    let (mut servers, db) = nodes("takeover", &["n2", "n3", "n1"]).await;
    let c = client();
    let p = province(&c, &servers[0]).await;
    let cid = accepted_consultation(&c, &servers[0], &p).await;
    let (a, b) = (&servers[0], &servers[1]);
    let (station, doctor) = in_call(a, b, &p, &cid).await;
    assert_eq!(host_of(&db, &cid).await, Some(("n1".to_owned(), 1)));
    let note = post(
        &c,
        b,
        &p.doctor,
        &format!("/api/consultations/{cid}/notes"),
        serde_json::json!({"subjective": "Đau ngực trái từ sáng"}),
    )
    .await;

    servers[2].kill();
    let killed = std::time::Instant::now();
    drop(station);
    drop(doctor);
    let (a, b) = (&servers[0], &servers[1]);
    let (station, doctor) = tokio::join!(
        join_until_placed(a, &p.worker, &cid, "station", 660.0),
        join_until_placed(b, &p.doctor, &cid, "doctor", 440.0),
    );
    let rejoined = killed.elapsed();
    both_ways(&station, &doctor).await;
    eprintln!(
        "kill -> both rejoined {:.1} s, -> media both ways {:.1} s",
        rejoined.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );

    let (host, epoch) = host_of(&db, &cid).await.unwrap();
    assert!(host == "n2" || host == "n3", "placed on a surviving node: {host}");
    assert_eq!(epoch, 2);
    let session = get(&c, a, &p.admin, &format!("/api/sessions/{cid}")).await;
    let moved = session["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "call_placed" && e["data"]["from"] == "n1")
        .cloned();
    let moved = moved.unwrap_or_else(|| panic!("the move is in the session log: {session}"));
    assert_eq!(moved["data"]["node"], host.as_str());
    let state = get(&c, a, &p.doctor, &format!("/api/consultations/{cid}")).await;
    assert_eq!(state["state"], "in_progress", "{state}");
    let nid = note["id"].as_str().unwrap();
    let saved = get(&c, a, &p.doctor, &format!("/api/notes/{nid}")).await;
    assert_eq!(saved["subjective"], "Đau ngực trái từ sáng");
}

type Page = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A page's live-updates socket (the queue), opened on `server`.
async fn queue_page(server: &Server, token: &str) -> Page {
    let mut req = server.ws_url().as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut page, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let hello = page.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("hello"), "{hello:?}");
    page
}

/// The next message of `type` on the page within `within`.
async fn pushed(page: &mut Page, kind: &str, within: Duration) -> Value {
    tokio::time::timeout(within, async {
        loop {
            match page.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == kind {
                        break v;
                    }
                }
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} within {within:?}"))
}

async fn request(c: &reqwest::Client, s: &Server, p: &Province) -> String {
    let patient = post(
        c,
        s,
        &p.worker,
        "/api/patients",
        json!({"full_name": "Lò Văn Pọm", "date_of_birth": "1975-05-05", "sex": "male"}),
    )
    .await;
    consent(c, s, &p.worker, patient["id"].as_str().unwrap()).await;
    let cons = post(
        c,
        s,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": patient["id"], "kind": "urgent", "reason": "Sốt cao"}),
    )
    .await;
    cons["id"].as_str().unwrap().to_owned()
}

/// The doctor's queue, open on node C, hears within a second of a request
/// the station makes on node A (PostgreSQL NOTIFY); when C's listening
/// connection is cut, C's pages are told to refetch once it is back, and
/// later requests reach them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_on_one_node_reaches_a_queue_open_on_another() {
    let (servers, db) = nodes("queue", &["n1", "n2", "n3"]).await;
    let (a, c_node) = (&servers[0], &servers[2]);
    let c = client();
    let p = province(&c, a).await;
    let mut queue = queue_page(c_node, &p.doctor).await;

    let cid = request(&c, a, &p).await;
    let change = pushed(&mut queue, "consultation_changed", Duration::from_secs(1)).await;
    assert_eq!(change["consultation_id"], cid.as_str());
    assert_eq!(change["state"], "requested");
    // Ids and states only: nothing about the patient travels.
    assert!(!change.to_string().contains("Lò Văn Pọm") && !change.to_string().contains("Sốt cao"));

    // Every node's listening connection is cut.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    let cut: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(cut.len(), 3, "one listening connection per node");
    pushed(&mut queue, "resync", Duration::from_secs(10)).await;
    let second = request(&c, a, &p).await;
    let change = pushed(&mut queue, "consultation_changed", Duration::from_secs(1)).await;
    assert_eq!(change["consultation_id"], second.as_str());
}

async fn login_status(
    c: &reqwest::Client,
    s: &Server,
    user: &str,
    password: &str,
    from: usize,
) -> reqwest::StatusCode {
    c.post(s.url("/api/auth/login"))
        .header("x-forwarded-for", format!("10.0.0.{}", from + 1))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Ten wrong passwords for one account, sent at once and spread over three
/// nodes, lock it on every node: the failures are counted in the shared
/// database, not per process (where each node would have seen three or
/// four and let the right password in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_lockout_holds_whichever_nodes_the_attempts_hit() {
    // Each attempt from its own address (behind a proxy that says so), so
    // that only the account's count can lock it.
    let (servers, _db) = nodes_with("throttle", &["n1", "n2", "n3"], &["--trust-proxy"]).await;
    let c = client();
    province(&c, &servers[0]).await;
    let attempts = (0..10).map(|i| login_status(&c, &servers[i % 3], "bacsi", "đoán-sai", i));
    let answers = futures_util::future::join_all(attempts).await;
    assert!(
        answers.iter().all(|s| *s == reqwest::StatusCode::UNAUTHORIZED),
        "ten wrong passwords, each refused as wrong: {answers:?}"
    );
    for s in &servers {
        let r = c
            .post(s.url("/api/auth/login"))
            .header("x-forwarded-for", "10.0.1.1")
            .json(&json!({"username": "bacsi", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::TOO_MANY_REQUESTS,
            "locked on {}",
            s.base
        );
        assert!(r.headers().get("retry-after").is_some());
    }
}

fn signal(server: &Server, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &server.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

async fn node_draining(db: &str, id: &str) -> Option<i64> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db).await.unwrap();
    let row: Option<(i64,)> = sqlx::query_as("SELECT draining FROM nodes WHERE id = $1")
        .bind(id)
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.map(|r| r.0)
}

/// A node told to drain (SIGUSR1) keeps its running call where it is, with
/// its media, places a new call elsewhere even when the pages reach it, and
/// once its call has ended it gives up its registration and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_keeps_its_call_takes_no_new_one_and_exits_when_it_ends() {
    let (mut servers, db) = nodes("drain", &["n2", "n3", "n1"]).await;
    let c = client();
    let p = province(&c, &servers[0]).await;
    let first = accepted_consultation(&c, &servers[0], &p).await;
    let (station, doctor) = in_call(&servers[0], &servers[1], &p, &first).await;
    assert_eq!(host_of(&db, &first).await, Some(("n1".to_owned(), 1)));

    // One idle call placed on each of the other nodes (a page's call socket
    // opened, placing it): every node hosts one, so a new call would go to
    // n1 (ties go by id) were it not draining.
    for (cid, on) in [
        (accepted_consultation(&c, &servers[0], &p).await, "n2"),
        (accepted_consultation(&c, &servers[0], &p).await, "n3"),
    ] {
        call_socket(&servers[0], &p.doctor, &cid).await;
        assert_eq!(host_of(&db, &cid).await, Some((on.to_owned(), 1)));
    }

    let ready = |s: &Server, path: &str| c.get(s.url(path)).send();
    assert_eq!(ready(&servers[2], "/readyz").await.unwrap().status(), 200);
    signal(&servers[2], "-USR1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while node_draining(&db, "n1").await != Some(1) {
        assert!(tokio::time::Instant::now() < deadline, "n1 never said it drains");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Out of the load balancer's rotation for new work, still alive.
    let r = ready(&servers[2], "/readyz").await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_taking_calls");
    assert_eq!(ready(&servers[2], "/healthz").await.unwrap().status(), 200);
    assert_eq!(ready(&servers[0], "/readyz").await.unwrap().status(), 200);
    // A new call, its pages talking to the draining node itself: hosted elsewhere.
    let second = accepted_consultation(&c, &servers[0], &p).await;
    let drainer = &servers[2];
    let station2 = WsSession::join(
        &drainer.ws_url(),
        &p.worker,
        &second,
        ParticipantConfig::new("station2", 700.0),
    )
    .await
    .unwrap();
    let doctor2 = WsSession::join(
        &drainer.ws_url(),
        &p.doctor,
        &second,
        ParticipantConfig::new("doctor2", 480.0),
    )
    .await
    .unwrap();
    media_flows(
        &doctor2,
        &station2.participant_id,
        700.0,
        20,
        Duration::from_secs(15),
    )
    .await;
    media_flows(
        &station2,
        &doctor2.participant_id,
        480.0,
        20,
        Duration::from_secs(15),
    )
    .await;
    let (host2, _) = host_of(&db, &second).await.unwrap();
    assert_ne!(host2, "n1", "a draining node takes no new call");
    // The running call has not moved, and its media still flows.
    still_flows(&doctor, &station, 660.0).await;
    media_flows(
        &station,
        &doctor.participant_id,
        440.0,
        20,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(host_of(&db, &first).await, Some(("n1".to_owned(), 1)));
    assert!(
        servers[2].child.try_wait().unwrap().is_none(),
        "still running while its call lasts"
    );

    // The call ends: the node exits by itself, cleanly.
    post(
        &c,
        &servers[1],
        &p.doctor,
        &format!("/api/consultations/{first}/state"),
        json!({"state": "completed"}),
    )
    .await;
    let status = exit_of(&mut servers[2], Duration::from_secs(30)).await;
    assert!(status.success(), "exited cleanly: {status:?}");
    assert_eq!(node_draining(&db, "n1").await, None, "its registration is gone");
    // The other call carried on.
    still_flows(&doctor2, &station2, 700.0).await;
    let log = servers[2].output.lock().unwrap().clone();
    assert!(log.contains("drained: no call left here"), "{log}");
}

/// Opens a page's call socket for `cid` on `server` (which places the call)
/// and returns it once the server has said hello.
async fn call_socket(server: &Server, token: &str, cid: &str) -> Page {
    let mut req = format!("{}?consultation_id={cid}", server.ws_url())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut page, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    page.next().await.unwrap().unwrap();
    page
}

/// Ten calls whose pages open at the same moment, spread over three nodes,
/// are spread over the three (placement counts the calls placed a moment
/// ago, one placement at a time): none gets them all, none is left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_calls_started_at_once_across_three_nodes_are_spread() {
    let (servers, db) = nodes("spread", &["n1", "n2", "n3"]).await;
    let c = client();
    let p = province(&c, &servers[0]).await;
    let mut calls = Vec::new();
    for _ in 0..10 {
        calls.push(accepted_consultation(&c, &servers[0], &p).await);
    }
    let pages = futures_util::future::join_all(
        calls
            .iter()
            .enumerate()
            .map(|(i, cid)| call_socket(&servers[i % 3], &p.doctor, cid)),
    )
    .await;
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for cid in &calls {
        let (node, epoch) = host_of(&db, cid).await.expect("placed");
        assert_eq!(epoch, 1);
        *per_node.entry(node).or_default() += 1;
    }
    drop(pages);
    assert_eq!(per_node.len(), 3, "every node took some: {per_node:?}");
    assert!(
        per_node.values().all(|n| (3..=4).contains(n)),
        "spread evenly: {per_node:?}"
    );
}

/// The hosting node hangs (SIGSTOP) mid-call: once its heartbeat is stale
/// the pages' call is placed on another node and the media flows there.
/// When the hung node wakes (SIGCONT) it finds at its next heartbeat that
/// the call moved, lets its stale room go, and serves nothing of it: a
/// page that reaches it is carried to the new host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_whose_call_moved_lets_it_go_when_it_wakes() {
    let (servers, db) = nodes("stale", &["n2", "n3", "n1"]).await;
    let c = client();
    let p = province(&c, &servers[0]).await;
    let cid = accepted_consultation(&c, &servers[0], &p).await;
    let (a, b, hung) = (&servers[0], &servers[1], &servers[2]);
    let (station, doctor) = in_call(a, b, &p, &cid).await;
    assert_eq!(host_of(&db, &cid).await, Some(("n1".to_owned(), 1)));

    signal(hung, "-STOP");
    drop(station);
    drop(doctor);
    let (station, doctor) = tokio::join!(
        join_until_placed(a, &p.worker, &cid, "station", 660.0),
        join_until_placed(b, &p.doctor, &cid, "doctor", 440.0),
    );
    media_flows(
        &doctor,
        &station.participant_id,
        660.0,
        20,
        Duration::from_secs(15),
    )
    .await;
    let (host, epoch) = host_of(&db, &cid).await.unwrap();
    assert_ne!(host, "n1");
    assert_eq!(epoch, 2);

    signal(hung, "-CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !hung.output.lock().unwrap().contains("placed elsewhere") {
        assert!(
            std::time::Instant::now() < deadline,
            "the woken node kept its stale room"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The call stays where it moved, with its media; the woken node carries
    // a page that reaches it there.
    assert_eq!(host_of(&db, &cid).await, Some((host.clone(), 2)));
    still_flows(&doctor, &station, 660.0).await;
    let forwarded_before = hung
        .output
        .lock()
        .unwrap()
        .matches("call socket forwarded")
        .count();
    let _page = call_socket(hung, &p.doctor, &cid).await;
    assert_eq!(
        hung.output
            .lock()
            .unwrap()
            .matches("call socket forwarded")
            .count(),
        forwarded_before + 1
    );
    assert_eq!(host_of(&db, &cid).await, Some((host, 2)));
}

/// A draining node whose call outlasts the drain deadline hands it over:
/// the call is given up, its pages reconnect and join on another node with
/// media both ways, the session log shows the move, and the node exits
/// cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlasts_the_drain_deadline_moves_to_another_node() {
    let (mut servers, db) =
        nodes_with("deadline", &["n2", "n3", "n1"], &["--drain-deadline-secs", "2"]).await;
    let c = client();
    let p = province(&c, &servers[0]).await;
    let cid = accepted_consultation(&c, &servers[0], &p).await;
    let (station, doctor) = in_call(&servers[0], &servers[1], &p, &cid).await;
    assert_eq!(host_of(&db, &cid).await, Some(("n1".to_owned(), 1)));

    signal(&servers[2], "-USR1");
    let drained = std::time::Instant::now();
    // At the deadline the call is given up (its pages' sockets close) …
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !released(&db, &cid).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the call was never given up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        drained.elapsed() >= Duration::from_secs(2),
        "not before the deadline"
    );
    // … and come back, on another node.
    drop(station);
    drop(doctor);
    let (station, doctor) = tokio::join!(
        join_until_placed(&servers[0], &p.worker, &cid, "station", 660.0),
        join_until_placed(&servers[1], &p.doctor, &cid, "doctor", 440.0),
    );
    both_ways(&station, &doctor).await;
    eprintln!(
        "drain started -> media both ways on another node: {:.1} s",
        drained.elapsed().as_secs_f64()
    );
    let (host, epoch) = host_of(&db, &cid).await.unwrap();
    assert!(host == "n2" || host == "n3", "{host}");
    assert_eq!(epoch, 2);
    let session = get(&c, &servers[0], &p.admin, &format!("/api/sessions/{cid}")).await;
    assert!(
        session["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "call_placed" && e["data"]["from"] == "n1"),
        "{session}"
    );
    let status = exit_of(&mut servers[2], Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    assert!(servers[2]
        .output
        .lock()
        .unwrap()
        .contains("drain deadline passed"));
}
