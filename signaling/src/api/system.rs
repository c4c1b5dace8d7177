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
async fn healthz(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok((StatusCode::OK, Json(serde_json::json!({"status": "ok"})))),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            Err(ApiError::Unavailable)
        }
    }
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}
