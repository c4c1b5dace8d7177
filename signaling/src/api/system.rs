//! Health check, the OpenAPI document, and login.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::Serialize;

use super::ApiRoutes;
use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/api/openapi.json", openapi)
        .post("/api/auth/login", auth::login)
        .post("/api/auth/refresh", auth::refresh)
        .post("/api/auth/logout", auth::logout)
        .get("/api/auth/me", auth::me)
        .get("/api/ws", crate::ws::upgrade)
}

/// 200 when the database answers, 503 otherwise.
/// How long `/healthz` waits for the database. A request waits for a
/// pooled connection up to the pool's own timeout (10 s); a health check
/// must answer within a load balancer's (a few seconds), and a database
/// that does not answer in this long is down for it.
const HEALTH_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The body of a healthy `/healthz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HealthStatus {
    /// Always `ok`: an unhealthy server answers 503 with a problem instead.
    status: Healthy,
}

/// The one status a 200 from `/healthz` carries.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Healthy {
    /// The server and its database answer.
    Ok,
}

async fn healthz(State(state): State<AppState>) -> ApiResult<Json<HealthStatus>> {
    match tokio::time::timeout(HEALTH_DB_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(HealthStatus { status: Healthy::Ok })),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "health check: database unreachable");
            Err(ApiError::Unavailable)
        }
        Err(_) => {
            tracing::error!("health check: the database did not answer in time");
            Err(ApiError::Unavailable)
        }
    }
}

/// 200 while this node takes new calls; 503 while it drains, while it
/// cannot renew its heartbeat, or when the database does not answer.
async fn readyz(State(state): State<AppState>) -> ApiResult<Json<HealthStatus>> {
    if state.cluster.draining() || state.cluster.fenced() {
        return Err(ApiError::NotTakingCalls);
    }
    healthz(State(state)).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
