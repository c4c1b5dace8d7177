//! Slow clients against the real binary: 30 connections that never send a
//! byte and 30 that send their headers one byte a second (slowloris) are
//! closed by the server within its header deadline (10 s), while a normal
//! request is answered at once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Seconds until the server closes a connection that sends `drip` one byte a
/// second (nothing when empty); `None` if still open after 25 s.
async fn closed_after(addr: &str, drip: &'static [u8]) -> Option<f64> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 1024];
    while t0.elapsed() < Duration::from_secs(25) {
        if sent < drip.len() && s.write_all(&drip[sent..sent + 1]).await.is_err() {
            return Some(t0.elapsed().as_secs_f64());
        }
        sent += 1;
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(t0.elapsed().as_secs_f64()),
            _ => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_connections_are_closed() {
    let dir = temp_dir("slow-clients");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let addr = server.base.trim_start_matches("http://").to_owned();
    const SLOW: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: telehealth\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let silent = join_all((0..30).map(|_| closed_after(&addr, b"")));
    let slow = join_all((0..30).map(|_| closed_after(&addr, SLOW)));
    let normal = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let t = Instant::now();
        let r = client().get(server.url("/healthz")).send().await.unwrap();
        (r.status().as_u16(), t.elapsed())
    };
    let (silent, slow, (status, took)) = tokio::join!(silent, slow, normal);
    println!("silent connections closed after {silent:?} s; slow ones after {slow:?} s; a normal request took {took:?}");
    assert_eq!(status, 200, "a normal request is answered meanwhile");
    for (what, times) in [("silent", &silent), ("slow", &slow)] {
        for t in times {
            let t = t.unwrap_or_else(|| panic!("a {what} connection was still open after 25 s"));
            assert!(t <= 15.0, "a {what} connection was closed only after {t:.1} s");
        }
    }
}
