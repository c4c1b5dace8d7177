//! `telehealth audit verify` on the real binary's SQLite database: intact
//! after real use (and the server logs a signed anchor when it starts);
//! exit status 1, naming the entry, once someone holding the file edits one.

mod common;

use std::process::Command;

use common::*;

fn verify(db: &str, anchor: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_telehealth"));
    cmd.args(["audit", "verify", "--database-url", db]);
    if let Some(a) = anchor {
        cmd.args(["--anchor", a]);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_an_edited_entry_in_the_database_file() {
    let dir = temp_dir("audit-chain");
    let db = database_url("sqlite", &dir).await;
    let mut server = Server::start(&dir, &db);
    let c = client();
    let p = province(&c, &server).await;
    accepted_consultation(&c, &server, &p).await;
    let log = server.output.lock().unwrap().clone();
    assert!(
        log.contains("audit chain head"),
        "the server logs an anchor when it starts"
    );
    let anchor = get(&c, &server, &p.admin, "/api/audit/verify").await["anchor"]
        .as_str()
        .unwrap()
        .to_owned();
    server.kill();

    let (ok, out) = verify(&db, Some(&anchor));
    println!("{out}");
    assert!(ok && out.contains("intact"), "{out}");

    // Someone with the file lifts the trigger and turns a refusal into an access.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    sqlx::query("DROP TRIGGER audit_log_append_only_update")
        .execute(&pool)
        .await
        .unwrap();
    let id: i64 = sqlx::query_scalar("SELECT MIN(id) FROM audit_log WHERE action = 'auth.login'")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET client_addr = '10.9.9.9' WHERE id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (ok, out) = verify(&db, None);
    println!("{out}");
    assert!(!ok, "exit status 1: {out}");
    assert!(out.contains(&format!("BROKEN at entry {id}")), "{out}");
}
