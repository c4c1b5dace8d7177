//! The REST API under `/api`: one module per resource, each adding its
//! routes to an [`ApiRoutes`] that also records them, so that the OpenAPI
//! document and the authorization matrix can be checked against the real
//! route table.

use axum::handler::Handler;
use axum::http::Method;
use axum::Router;

use crate::state::AppState;

pub mod admin;
pub mod consultations;
pub mod contract;
pub mod notes;
pub mod patients;
pub mod photos;
pub mod schedule;
pub mod sessions;
pub mod stations;
pub mod system;

/// A router that remembers which (method, path) pairs it serves, and each
/// handler's contract (its request and response types).
pub struct ApiRoutes {
    router: Router<AppState>,
    table: Vec<Route>,
}

/// One served operation.
#[derive(Clone)]
pub struct Route {
    /// The HTTP method.
    pub method: Method,
    /// The path template, as axum matches it (`/api/patients/{id}`).
    pub path: &'static str,
    /// The handler's contract, read from its types.
    pub contract: fn() -> contract::Contract,
}

macro_rules! verb {
    ($name:ident, $method:ident, $routing:ident) => {
        pub fn $name<H, T>(mut self, path: &'static str, handler: H) -> Self
        where
            H: Handler<T, AppState> + contract::Documented<T>,
            T: 'static,
        {
            self.table.push(Route {
                method: Method::$method,
                path,
                contract: <H as contract::Documented<T>>::contract,
            });
            self.router = self.router.route(path, axum::routing::$routing(handler));
            self
        }
    };
}

impl ApiRoutes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }
    verb!(get, GET, get);
    verb!(post, POST, post);
    verb!(put, PUT, put);
    verb!(patch, PATCH, patch);
    verb!(delete, DELETE, delete);

    /// A POST route whose body may be larger than the JSON limit.
    pub fn post_large<H, T>(mut self, path: &'static str, handler: H, limit: usize) -> Self
    where
        H: Handler<T, AppState> + contract::Documented<T>,
        T: 'static,
    {
        self.table.push(Route {
            method: Method::POST,
            path,
            contract: <H as contract::Documented<T>>::contract,
        });
        self.router = self.router.route(
            path,
            axum::routing::post(handler).layer(axum::extract::DefaultBodyLimit::max(limit)),
        );
        self
    }
}

/// Every route of the API.
pub fn routes() -> ApiRoutes {
    let r = ApiRoutes::new();
    let r = system::routes(r);
    let r = admin::routes(r);
    let r = patients::routes(r);
    let r = consultations::routes(r);
    let r = schedule::routes(r);
    let r = sessions::routes(r);
    let r = stations::routes(r);
    let r = photos::routes(r);
    notes::routes(r)
}

/// The API's (method, path) table, in registration order.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().table.into_iter().map(|r| (r.method, r.path)).collect()
}

/// Every operation with its handler's contract, in registration order.
pub fn operations() -> Vec<Route> {
    routes().table
}

/// The API router.
pub fn router() -> Router<AppState> {
    routes().router
}

/// Parses an optional `limit` query value.
pub(crate) fn limit(raw: Option<&str>, default: i64) -> crate::error::ApiResult<i64> {
    match raw {
        None | Some("") => Ok(default),
        Some(s) => s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            crate::error::ApiError::bad_request(
                "invalid_limit",
                "“limit” phải là số nguyên dương.",
                "`limit` must be a positive integer.",
            )
        }),
    }
}
