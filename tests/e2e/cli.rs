//! What an operator reads: `--help`, and the log in a file or a journal.

mod common;

use std::process::Command;

use common::*;

#[test]
fn help_speaks_to_the_operator() {
    let out = Command::new(env!("CARGO_BIN_EXE_telehealth"))
        .arg("--help")
        .output()
        .expect("run telehealth --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.starts_with("Telehealth consultation server"),
        "--help starts with what the program is:\n{help}"
    );
    // The configuration's doc comment is for the code's readers.
    assert!(!help.contains("Not `Debug`"), "{help}");
    assert!(help.contains("--database-url"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_written_to_a_file_has_no_colour_codes() {
    let dir = temp_dir("cli-log");
    let db = database_url("sqlite", &dir).await;
    // Its output goes to a pipe, as to a file or the journal.
    let server = Server::start(&dir, &db);
    let c = client();
    login(&c, &server, "admin", ADMIN_PASSWORD).await;
    let r = c
        .post(server.url("/api/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": "wrong password 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let log = server.output.lock().unwrap().clone();
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "the log holds terminal escape codes:\n{log}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
