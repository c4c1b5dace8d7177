//! Logins under attack, against the real binary on SQLite:
//! - 500 logins at once from 500 addresses, with usernames that do not exist
//!   (each still costs an argon2id check of 19 MiB): the server's memory stays
//!   bounded (it reached 3.8 GiB with 150 before password checks were taken in
//!   turn), every answer is 401 or 503 `busy` with `Retry-After`, and a real
//!   login works at once afterwards;
//! - 200 guesses at once at one account from one address, then 5 each from 40
//!   addresses at another: no more guesses are checked than the lockout allows
//!   (10), the rest are refused with 429, and the right password is refused too
//!   while the account is locked.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use serde_json::json;

/// The lockout's limit (`ThrottlePolicy::default().lock_after`).
const LOCK_AFTER: usize = 10;

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is this machine).
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .local_address(IpAddr::V4(ip))
        .build()
        .unwrap()
}

/// The process's peak resident memory so far, in MiB (VmHWM).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in /proc/pid/status");
    kib / 1024
}

/// Status, code and Retry-After of one login attempt.
async fn attempt(
    c: &reqwest::Client,
    s: &Server,
    user: &str,
    password: &str,
) -> (u16, String, Option<String>) {
    let r = c
        .post(s.url("/api/auth/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("the server answers");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        retry,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_logins_at_once_keep_memory_bounded() {
    let dir = temp_dir("login-flood");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let pid = server.child.id();
    // One real login first: the process as it runs, hashing once.
    login(&client(), &server, "admin", ADMIN_PASSWORD).await;
    let before = peak_rss_mib(pid);

    let started = Instant::now();
    let answers = join_all((0..500u32).map(|i| {
        let server = &server;
        async move {
            let c = client_from(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8));
            attempt(&c, server, &format!("khong-co-{i}"), "đoán-bừa-mật-khẩu").await
        }
    }))
    .await;
    let took = started.elapsed();
    let after = peak_rss_mib(pid);
    let unauthorized = answers.iter().filter(|a| a.0 == 401).count();
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    println!(
        "500 logins at once: {unauthorized} checked (401), {} turned away (503) in {:.1} s; peak RSS {before} MiB before, {after} MiB after",
        busy.len(),
        took.as_secs_f64()
    );
    for a in &answers {
        assert!(a.0 == 401 || a.0 == 503, "only 401 or 503 busy: {a:?}");
    }
    for a in &busy {
        assert_eq!(a.1, "busy", "{a:?}");
        assert!(a.2.is_some(), "503 busy says when to come back: {a:?}");
    }
    assert!(unauthorized > 0, "some logins are checked while the flood lasts");
    // One argon2id check holds 19 MiB; one runs per core at a time, each
    // hashing thread keeping its memory. The rest is slack for 500 connections.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let bound = before + cores * 20 + 60;
    assert!(
        after <= bound,
        "peak memory grew from {before} MiB to {after} MiB under 500 logins at once (bound {bound} MiB)"
    );
    // The flood is over: a real login works at once.
    let t = Instant::now();
    login(&client(), &server, "admin", ADMIN_PASSWORD).await;
    println!("a real login after the flood: {} ms", t.elapsed().as_millis());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_sent_at_once_are_counted_before_they_are_checked() {
    let dir = temp_dir("login-guesses");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    // Creates the accounts `yta` and `bacsi`.
    province(&c, &server).await;

    // 200 guesses at once, one account, one address.
    let answers = join_all((0..200).map(|i| {
        let (c, server) = (&c, &server);
        async move { attempt(c, server, "yta", &format!("sai-{i}")).await }
    }))
    .await;
    let checked = answers.iter().filter(|a| a.0 == 401).count();
    let refused = answers.iter().filter(|a| a.0 == 429).count();
    println!("200 guesses at once from one address: {checked} checked, {refused} refused");
    assert!(checked <= LOCK_AFTER, "{checked} of 200 guesses were checked");
    assert_eq!(
        checked + refused,
        200,
        "only 401 or 429: {:?}",
        answers.iter().find(|a| a.0 != 401 && a.0 != 429)
    );
    assert!(
        answers.iter().filter(|a| a.0 == 429).all(|a| a.2.is_some()),
        "429 says when to come back"
    );
    let (status, code, _) = attempt(&c, &server, "yta", PASSWORD).await;
    assert_eq!(
        (status, code.as_str()),
        (429, "too_many_attempts"),
        "the right password is refused while locked"
    );

    // 5 guesses each from 40 addresses at once, at another account.
    let answers = join_all((0..200u32).map(|i| {
        let server = &server;
        async move {
            let c = client_from(Ipv4Addr::new(127, 2, 0, (i / 5 + 1) as u8));
            attempt(&c, server, "bacsi", &format!("sai-{i}")).await
        }
    }))
    .await;
    let checked = answers.iter().filter(|a| a.0 == 401).count();
    println!("200 guesses at once from 40 addresses: {checked} checked");
    assert!(
        checked <= LOCK_AFTER,
        "{checked} of 200 guesses from 40 addresses were checked"
    );
    assert!(
        answers.iter().all(|a| a.0 == 401 || a.0 == 429),
        "only 401 or 429: {:?}",
        answers.iter().find(|a| a.0 != 401 && a.0 != 429)
    );
    let (status, _, _) = attempt(
        &client_from(Ipv4Addr::new(127, 3, 0, 1)),
        &server,
        "bacsi",
        PASSWORD,
    )
    .await;
    assert_eq!(
        status, 429,
        "the right password from a fresh address is refused while locked"
    );
}
