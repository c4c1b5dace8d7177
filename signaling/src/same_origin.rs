//! Requests that change something must come from this server's own pages.
//!
//! Browsers attach the session cookies to requests that other sites' pages
//! make (a form posted from a page on a sibling subdomain is "same-site", so
//! `SameSite=Strict` lets it through). So every state-changing request that
//! is not authenticated by an `Authorization` header (which another site's
//! page cannot set) must say it comes from this origin: `Sec-Fetch-Site:
//! same-origin` (or `none`: typed in the address bar) from every current
//! browser; from older ones, an `Origin` naming this host. Requests with
//! neither come from programs, not pages, and carry no ambient cookies a
//! page could borrow. The WebSocket handshake is checked the same way.

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN};
use axum::http::{HeaderMap, Method, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Whether a browser says this request comes from another site's page.
pub fn from_another_page(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    match headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        None => false,
        Some(origin) => {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok());
            origin.split_once("://").map(|(_, h)| h) != host
        }
    }
}

pub fn refusal() -> ApiError {
    ApiError::Forbidden {
        code: "cross_site_request",
        detail: "Yêu cầu bị từ chối vì nó đến từ một trang web khác. Hãy mở hệ thống từ địa chỉ của nó rồi làm lại.",
        detail_en: "Refused: the request came from another website's page. Open the system from its own address and try again.",
    }
}

/// Middleware: refuses state-changing requests from other sites' pages.
pub async fn writes(req: Request<Body>, next: Next) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !req.headers().contains_key(AUTHORIZATION) && from_another_page(req.headers()) {
        tracing::warn!(method = %req.method(), path = req.uri().path(), "cross-site request refused");
        return refusal().into_response();
    }
    next.run(req).await
}
