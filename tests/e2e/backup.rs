//! Backups: `telehealth backup` copies the SQLite database while the server
//! runs and doctors keep writing; `telehealth restore` brings the copy back
//! into a new data directory, and the restored server serves every note
//! that was acknowledged before the backup started.
//!
//! Also: a restore is refused while a server holds the database, over an
//! existing database without `--force`, and from a damaged file (leaving
//! nothing behind); a backup never overwrites a file; PostgreSQL is pointed
//! to pg_dump.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Runs `telehealth <args>`: (success, stdout + stderr).
async fn telehealth(args: Vec<String>) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_telehealth"))
            .args(&args)
            .env_remove("TELEHEALTH_DATABASE_URL")
            .env_remove("TELEHEALTH_DATA_DIR")
            .output()
            .expect("run telehealth")
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// One save the writers sent: which note, the version it makes, the text,
/// and when its 200 came back (None: never acknowledged).
#[derive(Clone, Debug)]
struct Save {
    note: String,
    version: i64,
    text: String,
    acked_at: Option<Instant>,
}

type Log = Arc<Mutex<Vec<Save>>>;

/// Opens consultations and writes their notes (create, then autosaves)
/// until `stop`, logging every save.
async fn writer(
    server_url: String,
    worker: String,
    doctor: String,
    patient: String,
    tag: u32,
    log: Log,
    stop: Arc<AtomicBool>,
) {
    let c = client();
    let url = |p: &str| format!("{server_url}{p}");
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let cons: Value = c
            .post(url("/api/consultations"))
            .bearer_auth(&worker)
            .json(&json!({"patient_id": patient, "kind": "urgent", "reason": "Ho kéo dài"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cid = cons["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no consultation: {cons}"))
            .to_owned();
        let r = c
            .post(url(&format!("/api/consultations/{cid}/accept")))
            .bearer_auth(&doctor)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let text = format!("ghi chú {tag}-{n} bản 1");
        let r = c
            .post(url(&format!("/api/consultations/{cid}/notes")))
            .bearer_auth(&doctor)
            .json(&json!({"subjective": text}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        let note: Value = r.json().await.unwrap();
        let nid = note["id"].as_str().unwrap().to_owned();
        log.lock().unwrap().push(Save {
            note: nid.clone(),
            version: 1,
            text,
            acked_at: Some(Instant::now()),
        });
        for v in 2..=4i64 {
            let text = format!("ghi chú {tag}-{n} bản {v}");
            let i = {
                let mut l = log.lock().unwrap();
                l.push(Save {
                    note: nid.clone(),
                    version: v,
                    text: text.clone(),
                    acked_at: None,
                });
                l.len() - 1
            };
            let r = c
                .put(url(&format!("/api/notes/{nid}")))
                .bearer_auth(&doctor)
                .json(&json!({"version": v - 1, "subjective": text}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let saved: Value = r.json().await.unwrap();
            assert_eq!(saved["version"].as_i64(), Some(v));
            log.lock().unwrap()[i].acked_at = Some(Instant::now());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_writes_restores_every_acknowledged_note() {
    let dir = temp_dir("backup");
    let db = database_url("sqlite", &dir).await;
    let server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    let patient = post(
        &c,
        &server,
        &p.worker,
        "/api/patients",
        json!({"full_name": "Vàng Thị Dua", "date_of_birth": "1979-11-02", "sex": "female"}),
    )
    .await;
    let pid = patient["id"].as_str().unwrap().to_owned();
    consent(&c, &server, &p.worker, &pid).await;

    // Some bulk, so that the copy takes long enough for writes to land
    // while it runs: full-resolution photos of one consultation.
    let cons = post(
        &c,
        &server,
        &p.worker,
        "/api/consultations",
        json!({"patient_id": pid, "kind": "urgent", "reason": "Phát ban"}),
    )
    .await;
    let cid = cons["id"].as_str().unwrap().to_owned();
    post(
        &c,
        &server,
        &p.doctor,
        &format!("/api/consultations/{cid}/accept"),
        json!({}),
    )
    .await;
    for i in 0..4u8 {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
        jpeg.extend((0..8_000_000u32).map(|j| (j as u8) ^ i));
        let r = c
            .post(server.url(&format!("/api/consultations/{cid}/photos")))
            .bearer_auth(&p.worker)
            .header("content-type", "image/jpeg")
            .body(jpeg)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|tag| {
            tokio::spawn(writer(
                server.base.clone(),
                p.worker.clone(),
                p.doctor.clone(),
                pid.clone(),
                tag,
                log.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The backup, while both writers keep going.
    let file = dir.join("backup.db");
    let started = Instant::now();
    let (ok, out) = telehealth(vec![
        "backup".into(),
        "--database-url".into(),
        db.clone(),
        s(&file),
    ])
    .await;
    let finished = Instant::now();
    assert!(ok, "backup failed: {out}");
    assert!(out.contains("integrity ok"), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let saves = log.lock().unwrap().clone();
    let before: Vec<&Save> = saves
        .iter()
        .filter(|s| s.acked_at.is_some_and(|t| t < started))
        .collect();
    let during = saves
        .iter()
        .filter(|s| s.acked_at.is_some_and(|t| t >= started && t <= finished))
        .count();
    eprintln!(
        "saves acknowledged: {} before the backup, {during} during it ({:?})",
        before.len(),
        finished - started
    );
    assert!(
        before.len() >= 10,
        "the writers saved before the backup: {}",
        before.len()
    );
    assert!(
        during >= 1,
        "writes went on during the backup (it took {:?})",
        finished - started
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the backup is readable by its owner only");
    }

    // A backup never overwrites a file.
    let (ok, out) = telehealth(vec![
        "backup".into(),
        "--database-url".into(),
        db.clone(),
        s(&file),
    ])
    .await;
    assert!(!ok && out.contains("already exists"), "{out}");
    // A restore over the running server's database is refused, untouched.
    let (ok, out) = telehealth(vec![
        "restore".into(),
        "--database-url".into(),
        db.clone(),
        "--force".into(),
        s(&file),
    ])
    .await;
    assert!(
        !ok && out.contains("in use by a running telehealth server"),
        "{out}"
    );
    let r = c.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Restore into a fresh data directory and start a server on it.
    let dir2 = temp_dir("restored");
    let (ok, out) = telehealth(vec!["restore".into(), "--data-dir".into(), s(&dir2), s(&file)]).await;
    assert!(ok, "restore failed: {out}");
    let restored_db = format!("sqlite://{}?mode=rwc", dir2.join("telehealth.db").display());
    let restored = Server::start(&dir2, &restored_db);
    let doctor = login(&c, &restored, "bacsi", PASSWORD).await;

    // Every note acknowledged before the backup started is there, at least
    // at the version acknowledged then; whatever it holds is a save that
    // was really sent (a later one may have made it into the copy).
    let mut newest_before: HashMap<&str, &Save> = HashMap::new();
    for s in &before {
        let e = newest_before.entry(s.note.as_str()).or_insert(s);
        if s.version > e.version {
            *e = s;
        }
    }
    for (nid, acked) in &newest_before {
        let r = c
            .get(restored.url(&format!("/api/notes/{nid}")))
            .bearer_auth(&doctor)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "note {nid} acknowledged before the backup is missing"
        );
        let note: Value = r.json().await.unwrap();
        let version = note["version"].as_i64().unwrap();
        let text = note["subjective"].as_str().unwrap();
        assert!(
            version >= acked.version,
            "note {nid}: version {version} < acknowledged {}",
            acked.version
        );
        assert!(
            saves
                .iter()
                .any(|s| s.note == *nid && s.version == version && s.text == text),
            "note {nid}: restored v{version} {text:?} is no save that was sent"
        );
    }
    let photos = get(
        &c,
        &restored,
        &doctor,
        &format!("/api/consultations/{cid}/photos"),
    )
    .await;
    assert_eq!(photos.as_array().map(Vec::len), Some(4), "{photos}");
    drop(restored);

    // Over an existing database: refused without --force; with it, the old
    // one is kept beside the restored one.
    let (ok, out) = telehealth(vec!["restore".into(), "--data-dir".into(), s(&dir2), s(&file)]).await;
    assert!(!ok && out.contains("--force"), "{out}");
    let (ok, out) = telehealth(vec![
        "restore".into(),
        "--data-dir".into(),
        s(&dir2),
        "--force".into(),
        s(&file),
    ])
    .await;
    assert!(ok && out.contains("moved to"), "{out}");
    let kept = std::fs::read_dir(&dir2)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".replaced-")
        })
        .count();
    assert!(kept >= 1, "the replaced database is kept");

    // A damaged backup is refused, and nothing is left half-written.
    let bad = dir.join("damaged.db");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[4096..mid] {
        *b = 0xA5;
    }
    std::fs::write(&bad, &bytes).unwrap();
    let dir3 = temp_dir("damaged");
    let (ok, out) = telehealth(vec!["restore".into(), "--data-dir".into(), s(&dir3), s(&bad)]).await;
    assert!(!ok, "a damaged backup was restored: {out}");
    let left: Vec<String> = std::fs::read_dir(&dir3)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Not a database at all.
    std::fs::write(&bad, b"not a database").unwrap();
    let (ok, out) = telehealth(vec!["restore".into(), "--data-dir".into(), s(&dir3), s(&bad)]).await;
    assert!(!ok && out.contains("integrity"), "{out}");

    // PostgreSQL has its own tools.
    let (ok, out) = telehealth(vec![
        "backup".into(),
        "--database-url".into(),
        "postgres://telehealth@127.0.0.1/telehealth".into(),
        s(&dir.join("pg.db")),
    ])
    .await;
    assert!(!ok && out.contains("pg_dump"), "{out}");

    drop(server);
    for d in [dir, dir2, dir3] {
        let _ = std::fs::remove_dir_all(d);
    }
}
