//! The browser app, embedded in the binary (no build step, no Node at run
//! time). `build.rs` lists every file of `web-client/`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::AppState;

/// (URL path, content type, content encoding, body) of every embedded file.
type File = (&'static str, &'static str, Option<&'static str>, &'static [u8]);
const FILES: &[File] = include!(concat!(env!("OUT_DIR"), "/web_files.rs"));

pub fn router() -> Router<AppState> {
    let mut r = Router::new();
    for (path, ctype, encoding, body) in FILES {
        r = r.route(path, get(move || async move { file(ctype, *encoding, body) }));
    }
    r
}

/// A stored file; one stored gzip-compressed is sent as it is, with
/// `Content-Encoding: gzip` (every browser takes it).
fn file(ctype: &'static str, encoding: Option<&'static str>, body: &'static [u8]) -> Response {
    let mut resp = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response();
    if let Some(e) = encoding {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, header::HeaderValue::from_static(e));
    }
    if ctype.starts_with("text/html") {
        // The app loads nothing from elsewhere; media comes from the camera.
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(
                "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
            ),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_app_is_embedded() {
        assert!(super::FILES
            .iter()
            .any(|(p, c, e, b)| *p == "/" && c.starts_with("text/html") && e.is_none() && !b.is_empty()));
        assert!(super::FILES.iter().all(|(p, _, _, _)| p.starts_with('/')));
        // The ICD-10 list is served compressed, under its own name.
        assert!(super::FILES
            .iter()
            .any(|(p, _, e, _)| *p == "/icd10/who2019.tsv" && *e == Some("gzip")));
    }
}
