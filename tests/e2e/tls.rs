//! With a certificate, the server speaks HTTPS itself (browsers allow the
//! camera only on HTTPS), and login cookies are marked `Secure`.

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let dir = temp_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
        ])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed by tests/scripts/deps.sh");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let db = database_url("sqlite", &dir).await;
    let server = Server::start_with(
        &dir,
        &db,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);

    // A client that trusts the certificate gets answers over TLS…
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, body) = curl(&[&server.url("/healthz")]);
    assert!(ok && body.contains("\"ok\""), "{body}");
    let login = format!("{{\"username\":\"admin\",\"password\":\"{ADMIN_PASSWORD}\"}}");
    let (ok, headers) = curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "content-type: application/json",
        "-d",
        &login,
        &server.url("/api/auth/login"),
    ]);
    assert!(ok);
    let cookies: Vec<_> = headers
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("set-cookie"))
        .collect();
    assert_eq!(cookies.len(), 2, "{headers}");
    assert!(cookies.iter().all(|c| c.contains("Secure")), "{cookies:?}");
    // …and plain HTTP on the same port gets nothing useful.
    let plain = server.url("/healthz").replace("https://", "http://");
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", &plain])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"ok\""));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
