//! What each handler takes and gives, read from its Rust signature, so that
//! the OpenAPI document (signaling/openapi.json) can be checked against the
//! real request and response types instead of drifting from them.
//!
//! Every handler registered through [`super::ApiRoutes`] must be
//! [`Documented`]: each of its arguments an [`ArgContract`] and its output a
//! [`ResponseContract`]. A handler with a new kind of extractor, or one that
//! returns an opaque `impl IntoResponse`, does not compile until it says what
//! it contributes; the test `signaling/tests/openapi.rs` then compares the
//! schemas generated here (with `schemars`, from the same serde attributes
//! that do the encoding) with the document.

use std::future::Future;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use schemars::{JsonSchema, Schema, SchemaGenerator};

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiQuery, ClientAddr, PathId};

/// The schema of `T` as one self-contained document (its own `$defs`), as
/// the client sends it (`deserialize`) or as the server writes it.
fn schema<T: JsonSchema + ?Sized>(deserialize: bool) -> Schema {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let settings = if deserialize {
        settings.for_deserialize()
    } else {
        settings.for_serialize()
    };
    SchemaGenerator::new(settings).into_root_schema_for::<T>()
}

/// What one handler argument adds to the operation.
pub trait ArgContract {
    /// The JSON request body, if this argument reads it.
    fn body() -> Option<Schema> {
        None
    }
    /// The query string, as an object schema, if this argument reads it.
    fn query() -> Option<Schema> {
        None
    }
}

impl<S> ArgContract for State<S> {}
impl ArgContract for AuthUser {}
impl ArgContract for ClientAddr {}
impl ArgContract for HeaderMap {}
impl<T> ArgContract for PathId<T> {}
impl<T> ArgContract for Path<T> {}
/// A raw body (a photo's bytes): documented by hand, not a JSON schema.
impl<E> ArgContract for Result<axum::body::Bytes, E> {}
/// The signaling socket's upgrade: its messages are checked against
/// `protocol` by their own test.
impl<E> ArgContract for Result<axum::extract::ws::WebSocketUpgrade, E> {}

impl<T: JsonSchema> ArgContract for ApiJson<T> {
    fn body() -> Option<Schema> {
        Some(schema::<T>(true))
    }
}

impl<T: JsonSchema> ArgContract for ApiJsonOrEmpty<T> {
    fn body() -> Option<Schema> {
        Some(schema::<T>(true))
    }
}

impl<T: JsonSchema> ArgContract for ApiQuery<T> {
    fn query() -> Option<Schema> {
        Some(schema::<T>(true))
    }
}

/// The body of a handler's successful answer.
#[derive(Debug, Clone)]
pub enum ResponseBody {
    /// JSON of this schema.
    Json(Schema),
    /// No body (204, or a status alone).
    Empty,
    /// Not JSON (an image, CSV, the OpenAPI document itself): documented by
    /// hand.
    Other,
}

/// What a handler's output says about its successful answer.
pub trait ResponseContract {
    /// The body of a 2xx answer.
    fn body() -> ResponseBody;
}

impl ResponseBody {
    /// JSON written from a `T`.
    pub fn json<T: JsonSchema + ?Sized>() -> Self {
        Self::Json(schema::<T>(false))
    }
}

impl<T: JsonSchema> ResponseContract for Json<T> {
    fn body() -> ResponseBody {
        ResponseBody::json::<T>()
    }
}
impl<T: ResponseContract> ResponseContract for (StatusCode, T) {
    fn body() -> ResponseBody {
        T::body()
    }
}
impl<T: ResponseContract> ResponseContract for Result<T, ApiError> {
    fn body() -> ResponseBody {
        T::body()
    }
}
impl ResponseContract for StatusCode {
    fn body() -> ResponseBody {
        ResponseBody::Empty
    }
}
impl ResponseContract for () {
    fn body() -> ResponseBody {
        ResponseBody::Empty
    }
}
impl ResponseContract for Response {
    fn body() -> ResponseBody {
        ResponseBody::Other
    }
}
/// A handler that only ever refuses.
impl ResponseContract for ApiError {
    fn body() -> ResponseBody {
        ResponseBody::Empty
    }
}

/// The schema of every error answer's body.
pub fn problem() -> Schema {
    schema::<crate::error::Problem<'static>>(false)
}

/// One operation's contract, as the handler's types state it.
#[derive(Debug, Clone)]
pub struct Contract {
    /// The JSON request body, if the handler reads one.
    pub body: Option<Schema>,
    /// The query parameters, as an object schema, if the handler reads any.
    pub query: Option<Schema>,
    /// The successful answer's body.
    pub response: ResponseBody,
}

/// A handler whose arguments and output state its contract. `T` is axum's
/// `Handler` marker, `(M, T1, …, Tn)` for a function of n arguments.
pub trait Documented<T> {
    /// The handler's contract.
    fn contract() -> Contract;
}

impl<F, Fut> Documented<((),)> for F
where
    F: FnOnce() -> Fut,
    Fut: Future,
    Fut::Output: ResponseContract,
{
    fn contract() -> Contract {
        Contract {
            body: None,
            query: None,
            response: Fut::Output::body(),
        }
    }
}

macro_rules! documented {
    ($($ty:ident),+) => {
        impl<F, Fut, M, $($ty),+> Documented<(M, $($ty,)+)> for F
        where
            F: FnOnce($($ty),+) -> Fut,
            Fut: Future,
            Fut::Output: ResponseContract,
            $($ty: ArgContract),+
        {
            fn contract() -> Contract {
                Contract {
                    body: None$(.or_else($ty::body))+,
                    query: None$(.or_else($ty::query))+,
                    response: Fut::Output::body(),
                }
            }
        }
    };
}

documented!(T1);
documented!(T1, T2);
documented!(T1, T2, T3);
documented!(T1, T2, T3, T4);
documented!(T1, T2, T3, T4, T5);
documented!(T1, T2, T3, T4, T5, T6);
documented!(T1, T2, T3, T4, T5, T6, T7);
