//! The HTTP control API of the `linkemu` binary: browser tests (Node,
//! Playwright) impair a client's link with it while a call runs. JSON in and
//! out; `{ip}` is the client's address as the emulator sees it.
//!
//! | Request | Body | Answer |
//! |---|---|---|
//! | `POST /links/{ip}/shape` | `{"up": ShapeSpec, "down": ShapeSpec}`, each optional (missing: unimpaired) | [`LinkStats`] |
//! | `POST /links/{ip}/profile` | `{"name": "4g-yeu"}`, a named profile ([`super::profiles`]) | [`LinkStats`] |
//! | `GET /profiles` | | every named profile: name, label, up and down [`ShapeSpec`] |
//! | `POST /links/{ip}/blackout` | `{"ms": 5000}`; `{"ms": 0}` ends it; `{"until_ended": true}` | [`LinkStats`] |
//! | `POST /links/{ip}/handover` | none | [`LinkStats`], once every flow moved |
//! | `GET /links/{ip}` | | [`LinkStats`] |
//! | `GET /links` | | every link's [`LinkStats`] |
//! | `GET /relays` | | `{"udp": [addr…], "tcp": [addr…]}`, the bound listen addresses |
//!
//! A [`ShapeSpec`] is `{"loss": 0.05, "burst_len": 1, "delay_ms": 50,
//! "jitter_ms": 20, "rate_kbps": 1000, "queue_ms": 300}`, every field
//! optional. Bad input gets 400 and `{"error": "…"}` naming the problem.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{Link, LinkEmulator, LinkStats, Shape, ShapeSpec};

/// The control API over `emulator`.
pub fn app(emulator: LinkEmulator) -> Router {
    Router::new()
        .route("/links", get(all_links))
        .route("/links/{ip}", get(one_link))
        .route("/links/{ip}/shape", post(shape))
        .route("/links/{ip}/profile", post(profile))
        .route("/profiles", get(|| async { Json(super::profiles::all()) }))
        .route("/links/{ip}/blackout", post(blackout))
        .route("/links/{ip}/handover", post(handover))
        .route("/relays", get(relays))
        .fallback(|| async { ApiError::NotFound })
        .with_state(emulator)
}

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// The request makes no sense; the message says which part.
    BadRequest(String),
    NotFound,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            ApiError::BadRequest(error) => (StatusCode::BAD_REQUEST, error),
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                "no such endpoint (see GET /links)".to_owned(),
            ),
        };
        (status, Json(ErrorBody { error })).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        // axum's text names the field or the syntax error; the status is
        // 400 whatever the rejection (a missing content type included).
        ApiError::BadRequest(rejection.body_text())
    }
}

fn link(emulator: &LinkEmulator, ip: &str) -> Result<Link, ApiError> {
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{ip:?} is not an IP address")))?;
    Ok(emulator.link(ip))
}

async fn all_links(State(emulator): State<LinkEmulator>) -> Json<Vec<LinkStats>> {
    Json(emulator.links().iter().map(Link::stats).collect())
}

async fn one_link(
    State(emulator): State<LinkEmulator>,
    Path(ip): Path<String>,
) -> Result<Json<LinkStats>, ApiError> {
    Ok(Json(link(&emulator, &ip)?.stats()))
}

/// Body of `POST /links/{ip}/shape`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShapeRequest {
    up: Option<ShapeSpec>,
    down: Option<ShapeSpec>,
}

fn direction(name: &str, spec: Option<ShapeSpec>) -> Result<Shape, ApiError> {
    let spec = spec.unwrap_or_default();
    Shape::try_from(&spec).map_err(|e| ApiError::BadRequest(format!("{name}.{e}")))
}

async fn shape(
    State(emulator): State<LinkEmulator>,
    Path(ip): Path<String>,
    body: Result<Json<ShapeRequest>, JsonRejection>,
) -> Result<Json<LinkStats>, ApiError> {
    let link = link(&emulator, &ip)?;
    let Json(request) = body?;
    apply(&link, request.up, request.down)
}

/// Shapes both directions of `link` and answers with its stats.
fn apply(link: &Link, up: Option<ShapeSpec>, down: Option<ShapeSpec>) -> Result<Json<LinkStats>, ApiError> {
    let up = direction("up", up)?;
    let down = direction("down", down)?;
    // Both validated above; this cannot fail, but say so if it ever does.
    link.set_shape(up, down)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(Json(link.stats()))
}

/// Body of `POST /links/{ip}/profile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileRequest {
    name: String,
}

async fn profile(
    State(emulator): State<LinkEmulator>,
    Path(ip): Path<String>,
    body: Result<Json<ProfileRequest>, JsonRejection>,
) -> Result<Json<LinkStats>, ApiError> {
    let link = link(&emulator, &ip)?;
    let Json(request) = body?;
    let Some(p) = super::profiles::named(&request.name) else {
        let names: Vec<&str> = super::profiles::all().iter().map(|p| p.name).collect();
        return Err(ApiError::BadRequest(format!(
            "name: no profile {:?}; the profiles are {}",
            request.name.chars().take(40).collect::<String>(),
            names.join(", ")
        )));
    };
    apply(&link, Some(p.up), Some(p.down))
}

/// Body of `POST /links/{ip}/blackout`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlackoutRequest {
    ms: Option<u64>,
    until_ended: Option<bool>,
}

async fn blackout(
    State(emulator): State<LinkEmulator>,
    Path(ip): Path<String>,
    body: Result<Json<BlackoutRequest>, JsonRejection>,
) -> Result<Json<LinkStats>, ApiError> {
    let link = link(&emulator, &ip)?;
    let Json(request) = body?;
    match (request.ms, request.until_ended) {
        (Some(0), None) => link.end_blackout(),
        (Some(ms), None) => link.blackout(Duration::from_millis(ms)),
        (None, Some(true)) => link.blackout_until_ended(),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either ms or until_ended, not both".to_owned(),
            ))
        }
        (None, Some(false) | None) => {
            return Err(ApiError::BadRequest(
                "give ms (0 ends the blackout) or \"until_ended\": true".to_owned(),
            ))
        }
    }
    Ok(Json(link.stats()))
}

async fn handover(
    State(emulator): State<LinkEmulator>,
    Path(ip): Path<String>,
) -> Result<Json<LinkStats>, ApiError> {
    let link = link(&emulator, &ip)?;
    link.handover().await;
    Ok(Json(link.stats()))
}

#[derive(Serialize)]
struct Relays {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
}

async fn relays(State(emulator): State<LinkEmulator>) -> Json<Relays> {
    Json(Relays {
        udp: emulator.udp_addrs().to_vec(),
        tcp: emulator.tcp_addrs().to_vec(),
    })
}

#[cfg(test)]
mod tests {
    //! The API over HTTP on port 0, against a real emulator.
    //! `unwrap`s: loopback calls and JSON the tests wrote.

    use super::*;
    use crate::linkemu::{model::Direction, LinkEmulatorConfig, Relay};
    use serde_json::{json, Value};

    struct Api {
        http: reqwest::Client,
        base: String,
    }

    impl Api {
        async fn start(emulator: LinkEmulator) -> Api {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app(emulator)).await });
            // No proxy: a proxy from the environment must not see loopback calls.
            Api {
                http: reqwest::Client::builder().no_proxy().build().unwrap(),
                base,
            }
        }

        async fn answer(r: reqwest::RequestBuilder) -> (u16, Value) {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json().await.unwrap())
        }

        async fn post(&self, path: &str, body: Value) -> (u16, Value) {
            Self::answer(self.http.post(format!("{}{path}", self.base)).json(&body)).await
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            Self::answer(self.http.get(format!("{}{path}", self.base))).await
        }
    }

    #[tokio::test]
    async fn shapes_blacks_out_and_hands_over_with_errors_naming_the_problem() {
        let emulator = LinkEmulator::start(LinkEmulatorConfig {
            udp: vec![Relay {
                listen: "127.0.0.2:0".parse().unwrap(),
                upstream: "127.0.0.1:9".parse().unwrap(),
            }],
            ..LinkEmulatorConfig::default()
        })
        .unwrap();
        let api = Api::start(emulator.clone()).await;
        let client: IpAddr = "127.0.0.3".parse().unwrap();

        let up = json!({"loss": 0.05, "burst_len": 1, "delay_ms": 50, "jitter_ms": 20, "rate_kbps": 1000});
        let (status, stats) = api.post("/links/127.0.0.3/shape", json!({ "up": up })).await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(
            (&stats["up"]["shape"]["loss"], &stats["up"]["shape"]["rate_kbps"]),
            (&json!(0.05), &json!(1000.0))
        );
        assert_eq!(
            stats["down"]["shape"]["loss"], 0.0,
            "a missing direction is unimpaired"
        );
        let shape = emulator.link(client).state.model().shape(Direction::Up).clone();
        let expected = (
            Duration::from_millis(50),
            Duration::from_millis(20),
            Some(1_000_000),
        );
        assert_eq!((shape.delay, shape.jitter, shape.rate_bps), expected);

        for (path, body, names) in [
            ("/links/127.0.0.3/shape", json!({"up": {"loss": 2}}), "up.loss"),
            ("/links/127.0.0.3/shape", json!({"down": {"delay": 5}}), "delay"),
            ("/links/nonsense/shape", json!({}), "nonsense"),
            ("/links/127.0.0.3/profile", json!({"name": "5g"}), "4g-yeu"),
            ("/links/127.0.0.3/profile", json!({}), "name"),
            ("/links/127.0.0.3/blackout", json!({}), "ms"),
            ("/links/127.0.0.3/blackout", json!({"ms": -1}), "ms"),
            (
                "/links/127.0.0.3/blackout",
                json!({"ms": 1, "until_ended": true}),
                "not both",
            ),
        ] {
            let (status, body) = api.post(path, body).await;
            assert_eq!(status, 400, "{path}: {body}");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(names), "{path}: {error:?} should name {names}");
        }
        // A refused shape changed nothing.
        assert_eq!(
            emulator.link(client).state.model().shape(Direction::Up).clone(),
            shape
        );

        // A named profile, both ways; the list names it.
        let (status, listed) = api.get("/profiles").await;
        assert_eq!(status, 200);
        let yeu = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "4g-yeu")
            .cloned()
            .expect("4g-yeu is listed");
        assert_eq!(yeu["label"], "4G yếu / weak 4G");
        let (status, stats) = api
            .post("/links/127.0.0.3/profile", json!({"name": "4g-yeu"}))
            .await;
        assert_eq!(status, 200, "{stats}");
        assert_eq!(
            (&stats["up"]["shape"]["loss"], &stats["up"]["shape"]["burst_len"]),
            (&json!(0.05), &json!(3.0))
        );
        assert_eq!(stats["down"]["shape"]["rate_kbps"], json!(1500.0));
        let (_, _) = api.post("/links/127.0.0.3/shape", json!({ "up": up })).await;

        let (_, stats) = api.post("/links/127.0.0.3/blackout", json!({"ms": 5000})).await;
        let remaining = stats["blackout_remaining_ms"].as_u64().unwrap();
        assert!((4000..=5000).contains(&remaining), "{stats}");
        let (_, stats) = api.post("/links/127.0.0.3/blackout", json!({"ms": 0})).await;
        assert_eq!(stats["blackout_remaining_ms"], 0);
        let (_, stats) = api
            .post("/links/127.0.0.3/blackout", json!({"until_ended": true}))
            .await;
        assert_eq!(stats["blackout_until_ended"], true);

        let (status, stats) = api.post("/links/127.0.0.3/handover", json!({})).await;
        assert_eq!((status, stats["handovers"].as_u64()), (200, Some(1)));

        let (status, one) = api.get("/links/127.0.0.4").await;
        assert_eq!((status, one["up"]["forwarded"].as_u64()), (200, Some(0)));
        let (status, all) = api.get("/links").await;
        assert_eq!(
            (status, &all[0]["ip"], &all[1]["ip"]),
            (200, &json!("127.0.0.3"), &json!("127.0.0.4"))
        );
        let (status, relays) = api.get("/relays").await;
        assert_eq!(
            (status, relays["udp"][0].as_str()),
            (200, Some(emulator.udp_addrs()[0].to_string().as_str()))
        );
        let (status, body) = api.get("/nope").await;
        assert_eq!((status, body["error"].is_string()), (404, true));
    }
}
