//! The few REST calls the benchmark binaries make against our server
//! (`loadgen`, `join-time`): JSON in, JSON out, a bearer token when given.

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

/// POSTs `body` to `base` + `path`; the JSON answer, or an error naming the
/// path, the status and the problem the server sent.
pub async fn post(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    path: &str,
    body: Value,
) -> Result<Value> {
    let mut r = http.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{path}: {status} {v}");
    }
    Ok(v)
}

/// Logs `user` in; the access token.
pub async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> Result<String> {
    let v = post(
        http,
        base,
        None,
        "/api/auth/login",
        json!({"username": user, "password": password}),
    )
    .await?;
    Ok(v["access_token"].as_str().context("token")?.to_owned())
}

/// Records `patient`'s own consent to the text in use (read from the server,
/// as the page does): a consultation is refused without it.
pub async fn consent(http: &reqwest::Client, base: &str, token: &str, patient: &str) -> Result<Value> {
    let resp = http
        .get(format!("{base}/api/consent-text"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = resp.status();
    let text: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("/api/consent-text: {status} {text}");
    }
    post(
        http,
        base,
        Some(token),
        &format!("/api/patients/{patient}/consents"),
        json!({"decision": "granted", "given_by": "patient", "text_version": text["version"]}),
    )
    .await
}
