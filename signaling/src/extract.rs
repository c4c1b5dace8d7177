//! Extractors that turn every kind of unreadable request into a clear
//! problem+json answer instead of axum's plain-text rejections.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use telehealth_records::{FieldError, Timestamp};

use crate::error::ApiError;
use crate::state::AppState;

/// Largest JSON body accepted (a long consultation note fits many times).
pub const JSON_LIMIT: usize = 256 * 1024;

/// A JSON body, read with a size limit and deserialized so that an error
/// names the field at fault (`vitals.spo2_pct: invalid type…`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge { limit: JSON_LIMIT })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may also be empty (then `T::default()`), for a request
/// a browser sends bare, relying on a cookie instead (`/api/auth/refresh`).
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::PayloadTooLarge { limit: JSON_LIMIT })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(ApiJsonOrEmpty)
    }
}

/// Parses JSON, turning serde's complaint into a field error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object. serde would fill a struct from an array by
    // position (`["Renamed", null, null, true]` renamed a user), so nothing
    // else is read as one.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
        return Err(ApiError::bad_request(
            "invalid_type",
            "Dữ liệu gửi lên phải là một đối tượng JSON, dạng {\"tên\": giá trị}.",
            "The body must be a JSON object: {\"name\": value}.",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." { String::new() } else { path };
        let msg = inner.to_string();
        // serde's text names the problem (missing field `x`, unknown field
        // `y`, invalid type…); it never echoes the submitted value for
        // strings, so it is safe to return and to log.
        let (code, vi) = if msg.contains("missing field") {
            ("missing_field", "Thiếu trường bắt buộc")
        } else if msg.contains("unknown field") {
            ("unknown_field", "Trường không được chấp nhận")
        } else if msg.contains("unknown variant") {
            ("invalid_value", "Giá trị không nằm trong danh sách cho phép")
        } else if msg.contains("timestamp out of range") {
            ("invalid_value", "Thời điểm phải nằm trong các năm 1900–2999")
        } else if msg.contains("not an RFC 3339 timestamp") {
            (
                "invalid_value",
                "Thời điểm không đúng định dạng (ví dụ 2026-03-01T08:00:00Z)",
            )
        } else if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
            // serde reports some type mismatches (a number where an enum
            // belongs) as syntax errors; only text that is not JSON at all is
            // malformed.
            ("malformed_json", "Dữ liệu JSON không đúng cú pháp")
        } else {
            ("invalid_type", "Sai kiểu dữ liệu")
        };
        let field_for_missing = msg
            .split('`')
            .nth(1)
            .filter(|_| code == "missing_field" || (code == "unknown_field" && field.is_empty()))
            .map(|f| {
                if field.is_empty() {
                    f.to_owned()
                } else {
                    format!("{field}.{f}")
                }
            });
        let field = field_for_missing.unwrap_or(field);
        let detail_en = msg.clone();
        ApiError::BadRequest {
            code,
            detail: if field.is_empty() {
                format!("{vi}.")
            } else {
                format!("{vi}: {field}.")
            },
            detail_en: detail_en.clone(),
            errors: if field.is_empty() {
                vec![]
            } else {
                vec![FieldError::new(field, code, vi, detail_en)]
            },
        }
    })
}

/// A time from a query value (empty counts as absent), or a 400 naming the field.
pub fn parse_time(field: &str, v: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    v.filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<Timestamp>().map_err(|_| {
                let vi = "Thời điểm phải ở dạng RFC 3339, trong các năm 1900–2999, ví dụ 2026-11-23T08:00:00+07:00.";
                let en = "Use RFC 3339 within the years 1900-2999, e.g. 2026-11-23T08:00:00+07:00.";
                ApiError::BadRequest {
                    code: "invalid_time",
                    detail: format!("“{field}”: {vi}"),
                    detail_en: format!("`{field}`: {en}"),
                    errors: vec![FieldError::new(field, "invalid_time", vi, en)],
                }
            })
        })
        .transpose()
}

/// Parses a path or query value into a typed id, or names it as malformed.
pub fn parse_id<T: std::str::FromStr>(field: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::BadRequest {
        code: "malformed_id",
        detail: format!("Mã định danh “{field}” không hợp lệ."),
        detail_en: format!("`{field}` is not a valid id."),
        errors: vec![FieldError::new(
            field,
            "malformed_id",
            "Mã định danh không hợp lệ.",
            "Not a valid id.",
        )],
    })
}

/// A typed id from the single `{id}` segment of the path.
pub struct PathId<T>(pub T);

impl<T: std::str::FromStr + Send, S: Send + Sync> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request("malformed_path", "Đường dẫn không hợp lệ.", "Malformed path.")
            })?;
        parse_id("id", &raw).map(PathId)
    }
}

/// Query-string parameters, with errors as problem+json.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_like(q).map(ApiQuery)
    }
}

fn serde_urlencoded_like<T: DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    // Decode `a=b&c=d` into a JSON object of strings, then deserialize with
    // the same field-naming errors as bodies. Values stay text: query
    // structs take strings and parse numbers themselves.
    let mut map = serde_json::Map::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k);
        let v = percent_decode(v);
        // `?state=a&state=b` means nothing here: refused, not the last one
        // taken silently. (An empty value, as an HTML form sends an unset
        // filter, reaches the handler, which reads it as no filter.)
        if map.contains_key(&k) {
            let vi = "Tham số này xuất hiện nhiều lần; chỉ gửi một lần";
            let en = "This parameter appears more than once; send it once.";
            return Err(ApiError::BadRequest {
                code: "repeated_parameter",
                detail: format!("{vi}: {k}."),
                detail_en: en.to_owned(),
                errors: vec![FieldError::new(k, "repeated_parameter", format!("{vi}."), en)],
            });
        }
        map.insert(k, serde_json::Value::from(v));
    }
    parse_json(&serde_json::to_vec(&map).unwrap_or_default())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The client's address, for the audit trail and login throttling.
#[derive(Clone, Debug)]
pub struct ClientAddr(pub Option<String>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.trust_proxy {
            if let Some(xff) = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
                if let Some(first) = xff.split(',').next().map(str::trim).filter(|s| !s.is_empty()) {
                    return Ok(ClientAddr(Some(first.to_owned())));
                }
            }
        }
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(ClientAddr(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_query_parameter_is_refused_by_name() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Q {
            state: Option<String>,
            q: Option<String>,
        }
        let e = serde_urlencoded_like::<Q>("q=a&state=done&state=open").unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { code: "repeated_parameter", ref errors, .. } if errors[0].field == "state")
        );
        // An empty value (a form's unset filter) is a value, given once.
        let q = serde_urlencoded_like::<Q>("q=&state=open").unwrap();
        assert_eq!((q.q.as_deref(), q.state.as_deref()), (Some(""), Some("open")));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("Nguy%E1%BB%85n+V%C4%83n"), "Nguyễn Văn");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn json_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            a: i64,
            b: Option<String>,
        }
        let e = parse_json::<T>(br#"{"a":"x"}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { code: "invalid_type", ref errors, .. } if errors[0].field == "a")
        );
        let e = parse_json::<T>(br#"{"b":"x"}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { code: "missing_field", ref errors, .. } if errors[0].field == "a")
        );
        let e = parse_json::<T>(br#"{"a":1,"zz":2}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::BadRequest { code: "unknown_field", ref errors, .. } if errors[0].field == "zz")
        );
        let e = parse_json::<T>(br#"["x", "y"]"#).unwrap_err();
        assert!(
            matches!(
                e,
                ApiError::BadRequest {
                    code: "invalid_type",
                    ..
                }
            ),
            "an array is not an object"
        );
        let e = parse_json::<T>(br#" [1, null]"#).unwrap_err();
        assert!(
            matches!(
                e,
                ApiError::BadRequest {
                    code: "invalid_type",
                    ..
                }
            ),
            "an array is not an object"
        );
        let e = parse_json::<T>(br#"{"a":1"#).unwrap_err();
        assert!(matches!(
            e,
            ApiError::BadRequest {
                code: "malformed_json",
                ..
            }
        ));
    }
}
