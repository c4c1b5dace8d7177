//! Errors under `/fhir`: every one leaves as an OperationOutcome
//! (<https://hl7.org/fhir/R4/operationoutcome.html>), also those that the
//! API's own rules (login, access, database gate) answer as problem+json.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{resources, FHIR_JSON};
use crate::error::ApiError;

/// An error of the FHIR edge: one of the API's (rendered as an
/// OperationOutcome by [`outcomes`]) or one of FHIR's own.
#[derive(Debug)]
pub enum FhirError {
    Api(ApiError),
    Client {
        status: StatusCode,
        code: &'static str,
        detail: String,
        detail_en: String,
    },
}

pub type FhirResult<T> = Result<T, FhirError>;

impl FhirError {
    pub fn client(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<String>,
        detail_en: impl Into<String>,
    ) -> Self {
        FhirError::Client {
            status,
            code,
            detail: detail.into(),
            detail_en: detail_en.into(),
        }
    }

    pub(super) fn bad(code: &'static str, detail: impl Into<String>, detail_en: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, detail, detail_en)
    }

    pub(super) fn not_found(kind: &str, id: &str) -> Self {
        let id: String = id.chars().take(64).collect();
        Self::client(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Không tìm thấy {kind}/{id}."),
            format!("No {kind} with id `{id}`."),
        )
    }
}

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        FhirError::Api(e)
    }
}

impl From<telehealth_records::RecordsError> for FhirError {
    fn from(e: telehealth_records::RecordsError) -> Self {
        FhirError::Api(e.into())
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        match self {
            FhirError::Api(e) => e.into_response(),
            FhirError::Client {
                status,
                code,
                detail,
                detail_en,
            } => outcome_response(status, code, &detail, &detail_en, HeaderMap::new()),
        }
    }
}

/// OperationOutcome.issue.code for an HTTP status.
fn issue_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "login",
        403 => "forbidden",
        404 => "not-found",
        405 | 406 | 415 => "not-supported",
        409 => "conflict",
        413 => "too-costly",
        429 => "throttled",
        400 | 422 => "invalid",
        503 => "transient",
        _ => "exception",
    }
}

/// One error as an OperationOutcome: the stable code, the Vietnamese text
/// for the person, the English one as diagnostics.
pub fn outcome(status: StatusCode, code: &str, detail: &str, detail_en: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": if status.is_server_error() { "fatal" } else { "error" },
            "code": issue_code(status),
            "details": {
                "coding": [{ "system": resources::ERROR_SYSTEM, "code": code }],
                "text": detail,
            },
            "diagnostics": detail_en,
        }],
    })
}

fn outcome_response(
    status: StatusCode,
    code: &str,
    detail: &str,
    detail_en: &str,
    mut headers: HeaderMap,
) -> Response {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&outcome(status, code, detail, detail_en)).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Turns a problem+json answer into the same error as an OperationOutcome,
/// keeping its status and headers (`Retry-After`, `WWW-Authenticate`).
pub async fn to_outcome(resp: Response) -> Response {
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if !is_problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // Problems are small; anything past 64 KiB is not one of ours.
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let p: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = |k: &str| p[k].as_str().unwrap_or("").to_owned();
    let code = p["code"].as_str().unwrap_or("error").to_owned();
    outcome_response(
        parts.status,
        &code,
        &text("detail"),
        &text("detail_en"),
        parts.headers,
    )
}

/// Every error under `/fhir` leaves as an OperationOutcome.
pub(super) async fn outcomes(req: Request<Body>, next: Next) -> Response {
    to_outcome(next.run(req).await).await
}
