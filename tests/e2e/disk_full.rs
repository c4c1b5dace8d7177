//! The SQLite database's disk fills up while a doctor saves a note (a small
//! tmpfs of its own, filled with a file): saves are refused with a clear 503
//! `storage_full`, never a 500; nothing acknowledged is lost; once space
//! returns, saving works again without a restart, and the database is whole.
//! Needs root to mount the tmpfs (tests/run.sh runs as root in CI).
//!
//! It found a real fault: with a full disk SQLite may roll a transaction back
//! by itself; sqlx's ROLLBACK then failed and left its connection in the pool
//! inside a transaction holding the write lock. Every later save waited out
//! the busy timeout ("database is locked", 500), and kept failing after space
//! returned, until a restart (records/src/store.rs, `WriteTx`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_owned()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes a file until the disk is full; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5au8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.flush();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_saves_clearly_and_saving_resumes_when_space_returns() {
    let base = temp_dir("disk-full");
    let Some(disk) = SmallDisk::mount(&base.join("fs"), "24m") else {
        if std::env::var_os("CI").is_some() || is_root() {
            panic!("cannot mount a tmpfs as root");
        }
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let dir = disk.0.clone();
    let db = database_url("sqlite", &dir).await;
    let mut server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let cid = accepted_consultation(&c, &server, &p).await;
    let note = post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{cid}/notes"),
        json!({"subjective": "Ho 3 ngày"}),
    )
    .await;
    let nid = note["id"].as_str().unwrap().to_owned();
    let mut acked = (note["version"].as_i64().unwrap(), "Ho 3 ngày".to_owned());

    let filler = fill(&dir);
    let mut refused = 0;
    for i in 0..200 {
        let text = format!("Khám lần {i}: {}", "phổi ran ẩm hai đáy, ".repeat(400));
        let r = c
            .put(server.url(&format!("/api/notes/{nid}")))
            .bearer_auth(&p.doctor)
            .json(&json!({"version": acked.0, "subjective": text}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        match status {
            200 => acked = (body["version"].as_i64().unwrap(), text),
            503 => {
                assert_eq!(body["code"], "storage_full", "{body}");
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
            _ => {
                let log = server.output.lock().unwrap().clone();
                let why: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("internal error") || l.contains("ERROR"))
                    .collect();
                panic!("save {i} with the disk full: {status} {body}\n{}", why.join("\n"))
            }
        }
    }
    println!(
        "disk full: {refused} saves refused with 503 storage_full after version {}",
        acked.0
    );
    assert!(refused >= 3, "the full disk was noticed");
    // Reading the note is refused too while its audit entry cannot be written.
    let r = c
        .get(server.url(&format!("/api/notes/{nid}")))
        .bearer_auth(&p.doctor)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "no read of patient data without its audit entry");

    // Space returns: nothing acknowledged was lost, and saving works again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let stored = get(&c, &server, &p.doctor, &format!("/api/notes/{nid}")).await;
    assert_eq!(
        (stored["version"].as_i64(), stored["subjective"].as_str()),
        (Some(acked.0), Some(acked.1.as_str())),
        "nothing acknowledged is lost"
    );
    let r = c
        .put(server.url(&format!("/api/notes/{nid}")))
        .bearer_auth(&p.doctor)
        .json(&json!({"version": acked.0, "subjective": "Sau khi có chỗ trống"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(
        status,
        200,
        "saving resumes once space returns: {}\n{}",
        r.text().await.unwrap_or_default(),
        errors(&server)
    );
    server.kill();

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    pool.close().await;
    drop(server);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The server's error lines so far.
fn errors(server: &Server) -> String {
    let log = server.output.lock().unwrap().clone();
    log.lines()
        .filter(|l| l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}
