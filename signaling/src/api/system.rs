//! Health check, the OpenAPI document, and login.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use super::ApiRoutes;
use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.get("/healthz", healthz)
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

async fn healthz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    match tokio::time::timeout(HEALTH_DB_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok((StatusCode::OK, Json(serde_json::json!({"status": "ok"})))),
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

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
