//! Read-only HL7 FHIR R4 export under `/fhir`, for the province's platforms.
//!
//! # Model
//! The same login, roles and facility rules as the REST API: every read goes
//! through [`crate::access`] and the store's audited reads, so a refused
//! access is a 403 written to the audit log and a read leaves the same audit
//! entries as its REST twin. Resources are mapped from records in
//! [`resources`]; the server's description is [`capability`].
//!
//! # Flow
//! `GET /fhir/{type}/{id}` reads, `GET /fhir/{type}?…` searches (a
//! `searchset` Bundle, paged with `_count` and `_offset`),
//! `GET /fhir/Patient/{id}/$everything` gathers one patient's record,
//! `GET /fhir/metadata` is the CapabilityStatement. Every error leaves as an
//! OperationOutcome: [`outcomes`] turns the API's problem+json answers
//! (login, access, database) into one, so that the rules that make them stay
//! in one place.
//!
//! # Out of scope
//! Writes, `_history`, `_include`, XML, and search parameters other than the
//! ones the CapabilityStatement lists (an unknown one is a 400, not ignored:
//! a misspelt `patient` must not widen a search).

pub mod capability;
mod gather;
pub mod resources;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use telehealth_records::{
    AttachmentId, ConsultationId, FacilityId, NoteId, NoteStatus, Outcome, PatientId, Role, UserId, VitalsId,
};

use crate::access::{self, ConsultationAccess, PatientAccess};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::state::AppState;

/// The media type of every answer.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// Entries per page when a search names no `_count`.
pub const DEFAULT_COUNT: usize = 20;
/// Most entries per page, whatever `_count` asks.
pub const MAX_COUNT: usize = 100;
/// Furthest `_offset` accepted (no search holds more than this).
pub const MAX_OFFSET: usize = 100_000;

/// The resource types this server serves, in the CapabilityStatement's order.
pub const TYPES: [&str; 10] = [
    "Patient",
    "Organization",
    "Location",
    "Practitioner",
    "Encounter",
    "Appointment",
    "Observation",
    "Composition",
    "DocumentReference",
    "OperationOutcome",
];

/// The `/fhir` router (nested under `/fhir` by [`crate::app`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/{kind}", get(search))
        .route("/{kind}/{id}", get(read))
        .route("/{kind}/{id}/{op}", get(operation))
        .fallback(|| async {
            FhirError::client(
                StatusCode::NOT_FOUND,
                "not_found",
                "Đường dẫn FHIR không đúng: dùng /fhir/{Loại}/{id} hoặc /fhir/{Loại}?tham-số.",
                "Not a FHIR path: use /fhir/{Type}/{id} or /fhir/{Type}?params.",
            )
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(outcomes))
}

/// A FHIR resource or Bundle as the answer.
pub struct Fhir(pub Value);

impl IntoResponse for Fhir {
    fn into_response(self) -> Response {
        (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON)),
                // Patient data: never kept by a shared cache.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("private, no-store"),
                ),
            ],
            serde_json::to_vec(&self.0).unwrap_or_default(),
        )
            .into_response()
    }
}

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

    fn bad(code: &'static str, detail: impl Into<String>, detail_en: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, detail, detail_en)
    }

    fn not_found(kind: &str, id: &str) -> Self {
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
async fn outcomes(req: Request<Body>, next: Next) -> Response {
    to_outcome(next.run(req).await).await
}

/// The absolute base of this server's FHIR endpoint, from the request's
/// `Host` (checked: it ends up in links).
pub fn base_url(state: &AppState, headers: &HeaderMap) -> FhirResult<String> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !ok {
        return Err(FhirError::bad(
            "bad_host",
            "Tiêu đề Host không hợp lệ.",
            "The Host header is not a valid host name.",
        ));
    }
    let scheme = if state.secure_cookies { "https" } else { "http" };
    Ok(format!("{scheme}://{host}/fhir"))
}

async fn metadata(State(s): State<AppState>, headers: HeaderMap) -> FhirResult<Fhir> {
    Ok(Fhir(capability::statement(&base_url(&s, &headers)?)))
}

fn unknown_type(kind: &str) -> FhirError {
    let kind: String = kind.chars().take(64).collect();
    FhirError::client(
        StatusCode::NOT_FOUND,
        "unknown_resource_type",
        format!(
            "Máy chủ không cung cấp loại tài nguyên “{kind}”. Các loại có: {}.",
            TYPES[..9].join(", ")
        ),
        format!(
            "This server does not serve resource type `{kind}`. It serves: {}.",
            TYPES[..9].join(", ")
        ),
    )
}

/// A store's "not found" as FHIR's 404 naming the resource; any other
/// error (the database away…) stays what it is.
fn missing(e: telehealth_records::RecordsError, kind: &str, id: &str) -> FhirError {
    match e {
        telehealth_records::RecordsError::NotFound(_) => FhirError::not_found(kind, id),
        e => e.into(),
    }
}

fn parse_id<T: std::str::FromStr>(kind: &str, id: &str) -> FhirResult<T> {
    id.parse().map_err(|_| FhirError::not_found(kind, id))
}

async fn read(
    State(s): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> FhirResult<Fhir> {
    let base = base_url(&s, &headers)?;
    let actor = user.actor();
    let r = match kind.as_str() {
        "Patient" => {
            let pid: PatientId = parse_id(&kind, &id)?;
            access::patient(&s, &user, pid, PatientAccess::Read).await?;
            resources::patient(&s.store.read_patient(&actor, pid).await?)
        }
        "Encounter" | "Appointment" => {
            let cid: ConsultationId = parse_id(&kind, &id)?;
            let c = s
                .store
                .consultation(cid)
                .await
                .map_err(|e| missing(e, &kind, &id))?;
            if kind == "Appointment" && resources::appointment(&c).is_none() {
                // An urgent request was never booked.
                return Err(FhirError::not_found(&kind, &id));
            }
            access::consultation(&s, &user, cid, ConsultationAccess::Read).await?;
            let c = s.store.read_consultation(&actor, cid).await?;
            match kind.as_str() {
                "Encounter" => resources::encounter(&c),
                _ => resources::appointment(&c).ok_or_else(|| FhirError::not_found(&kind, &id))?,
            }
        }
        "Observation" => {
            let (vid, suffix) = id
                .rsplit_once('-')
                .ok_or_else(|| FhirError::not_found(&kind, &id))?;
            let vid: VitalsId = parse_id(&kind, vid).map_err(|_| FhirError::not_found(&kind, &id))?;
            let v = s.store.vitals(vid).await.map_err(|e| missing(e, &kind, &id))?;
            if resources::observation(&v, suffix).is_none() {
                return Err(FhirError::not_found(&kind, &id));
            }
            access::patient(&s, &user, v.patient_id, PatientAccess::Read).await?;
            s.store
                .audit(
                    &actor,
                    "vitals.read",
                    "vitals",
                    Some(vid.to_string()),
                    Some(v.patient_id),
                    Outcome::Ok,
                )
                .await?;
            resources::observation(&v, suffix).ok_or_else(|| FhirError::not_found(&kind, &id))?
        }
        "Composition" => {
            let nid: NoteId = parse_id(&kind, &id)?;
            let (_, _, _, status) = s.store.note_meta(nid).await.map_err(|e| missing(e, &kind, &id))?;
            if status != NoteStatus::Signed {
                // Drafts are not exported: a Composition is a signed note.
                return Err(FhirError::not_found(&kind, &id));
            }
            let c = access::note(&s, &user, nid, false).await?;
            let n = s.store.read_note(&actor, nid).await?;
            resources::composition(&n, &c).ok_or_else(|| FhirError::not_found(&kind, &id))?
        }
        "DocumentReference" => {
            let aid: AttachmentId = parse_id(&kind, &id)?;
            let meta = s
                .store
                .photo_meta(aid)
                .await
                .map_err(|e| missing(e, &kind, &id))?;
            access::consultation(&s, &user, meta.consultation_id, ConsultationAccess::Read).await?;
            // The REST way of describing a consultation's photos, audited.
            let list = s.store.photos(&actor, meta.consultation_id).await?;
            let a = list
                .iter()
                .find(|a| a.id == aid)
                .ok_or_else(|| FhirError::not_found(&kind, &id))?;
            resources::document_reference(a, &base)
        }
        "Organization" | "Location" => {
            let fid: FacilityId = parse_id(&kind, &id)?;
            let f = s.store.facility(fid).await.map_err(|e| missing(e, &kind, &id))?;
            s.store
                .audit(
                    &actor,
                    "facility.read",
                    "facility",
                    Some(fid.to_string()),
                    None,
                    Outcome::Ok,
                )
                .await?;
            match kind.as_str() {
                "Organization" => resources::organization(&f),
                _ => resources::location(&f),
            }
        }
        "Practitioner" => {
            let uid: UserId = parse_id(&kind, &id)?;
            let u = s.store.user(uid).await.map_err(|e| missing(e, &kind, &id))?;
            if u.role == Role::Admin {
                // Admins treat no one: not practitioners.
                return Err(FhirError::not_found(&kind, &id));
            }
            s.store
                .audit(
                    &actor,
                    "user.read",
                    "user",
                    Some(uid.to_string()),
                    None,
                    Outcome::Ok,
                )
                .await?;
            resources::practitioner(&u)
        }
        _ => return Err(unknown_type(&kind)),
    };
    Ok(Fhir(r))
}

/// A search's parameters, checked: the filters, and the page asked for.
pub struct SearchParams {
    /// The filters as given (name, value), in order, without the paging ones.
    pub filters: Vec<(String, String)>,
    pub count: usize,
    pub offset: usize,
}

impl SearchParams {
    /// Reads `raw` for a search that knows the filters `allowed`.
    pub fn parse(raw: Vec<(String, String)>, allowed: &[&str]) -> FhirResult<Self> {
        let mut filters: Vec<(String, String)> = Vec::new();
        let mut count = DEFAULT_COUNT;
        let mut offset = 0;
        let mut seen = BTreeSet::new();
        for (name, value) in raw {
            if !seen.insert(name.clone()) {
                return Err(FhirError::bad(
                    "repeated_search_parameter",
                    format!("Tham số “{}” chỉ được dùng một lần.", clip(&name)),
                    format!("Search parameter `{}` may be given once.", clip(&name)),
                ));
            }
            match name.as_str() {
                "_count" => {
                    count = value.parse::<usize>().map_err(|_| {
                        FhirError::bad(
                            "invalid_count",
                            "“_count” phải là số nguyên không âm.",
                            "`_count` must be a non-negative integer.",
                        )
                    })?;
                    // Bounded: a client cannot make one page cost more.
                    count = count.min(MAX_COUNT);
                }
                "_offset" => {
                    offset = value
                        .parse::<usize>()
                        .ok()
                        .filter(|o| *o <= MAX_OFFSET)
                        .ok_or_else(|| {
                            FhirError::bad(
                                "invalid_offset",
                                format!("“_offset” phải là số nguyên từ 0 đến {MAX_OFFSET}."),
                                format!("`_offset` must be an integer from 0 to {MAX_OFFSET}."),
                            )
                        })?;
                }
                "_format" => {
                    if !matches!(
                        value.as_str(),
                        "json" | "application/json" | "application/fhir+json"
                    ) {
                        return Err(FhirError::client(
                            StatusCode::NOT_ACCEPTABLE,
                            "unsupported_format",
                            "Máy chủ chỉ trả về JSON (_format=json).",
                            "This server answers in JSON only (_format=json).",
                        ));
                    }
                }
                n if allowed.contains(&n) => filters.push((name, value)),
                _ => {
                    return Err(FhirError::bad(
                        "unknown_search_parameter",
                        format!(
                            "Tham số tìm kiếm “{}” không được hỗ trợ ở đây. Dùng: {}.",
                            clip(&name),
                            known(allowed)
                        ),
                        format!(
                            "Search parameter `{}` is not supported here. Supported: {}.",
                            clip(&name),
                            known(allowed)
                        ),
                    ))
                }
            }
        }
        Ok(Self {
            filters,
            count,
            offset,
        })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.filters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn known(allowed: &[&str]) -> String {
    let mut all: Vec<&str> = allowed.to_vec();
    all.extend(["_count", "_offset"]);
    all.join(", ")
}

fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Percent-encodes a query component (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One page of `all` as a `searchset` Bundle, with `self`, `first`,
/// `previous` and `next` links (`path` is relative to the base, e.g.
/// `Encounter` or `Patient/{id}/$everything`).
pub fn bundle(base: &str, path: &str, p: &SearchParams, all: Vec<Value>) -> Value {
    let total = all.len();
    let link = |offset: usize| {
        let mut q: Vec<String> = p
            .filters
            .iter()
            .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
            .collect();
        q.push(format!("_count={}", p.count));
        q.push(format!("_offset={offset}"));
        format!("{base}/{path}?{}", q.join("&"))
    };
    let mut links = vec![
        json!({ "relation": "self", "url": link(p.offset) }),
        json!({ "relation": "first", "url": link(0) }),
    ];
    if p.offset > 0 {
        links.push(json!({ "relation": "previous", "url": link(p.offset.saturating_sub(p.count.max(1))) }));
    }
    if p.count > 0 && p.offset + p.count < total {
        links.push(json!({ "relation": "next", "url": link(p.offset + p.count) }));
    }
    let entries: Vec<Value> = all
        .into_iter()
        .skip(p.offset)
        .take(p.count)
        .map(|r| {
            let full = format!(
                "{base}/{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            );
            json!({ "fullUrl": full, "resource": r, "search": { "mode": "match" } })
        })
        .collect();
    let mut b = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": telehealth_records::Timestamp::now().to_string(),
        "total": total,
        "link": links,
    });
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

type RawQuery = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

fn query(q: RawQuery) -> FhirResult<Vec<(String, String)>> {
    q.map(|Query(v)| v).map_err(|_| {
        FhirError::bad(
            "invalid_query",
            "Chuỗi truy vấn không đọc được.",
            "The query string cannot be read.",
        )
    })
}

/// The patient a `patient` (or `subject`) parameter names: `Patient/{id}`
/// or a bare id.
fn patient_param(p: &SearchParams) -> FhirResult<PatientId> {
    let Some(v) = p.get("patient").or(p.get("subject")) else {
        return Err(FhirError::bad(
            "patient_required",
            "Tìm kiếm này cần tham số “patient” (mã bệnh nhân).",
            "This search needs the `patient` parameter (a Patient id).",
        ));
    };
    v.strip_prefix("Patient/").unwrap_or(v).parse().map_err(|_| {
        FhirError::bad(
            "invalid_patient",
            "“patient” phải là mã bệnh nhân (Patient/{id}).",
            "`patient` must name a Patient: Patient/{id} or the id.",
        )
    })
}

async fn search(
    State(s): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path(kind): Path<String>,
    q: RawQuery,
) -> FhirResult<Fhir> {
    let base = base_url(&s, &headers)?;
    let raw = query(q)?;
    let g = gather::Gather {
        s: &s,
        user: &user,
        base: &base,
    };
    let (p, all) = match kind.as_str() {
        "Patient" => {
            let p = SearchParams::parse(raw, &["identifier"])?;
            let all = g.patients_by_identifier(p.get("identifier")).await?;
            (p, all)
        }
        "Organization" | "Location" => {
            let p = SearchParams::parse(raw, &[])?;
            let all = g.facilities(&kind).await?;
            (p, all)
        }
        "Encounter" | "Appointment" | "Composition" | "DocumentReference" => {
            let p = SearchParams::parse(raw, &["patient", "subject"])?;
            let pid = patient_param(&p)?;
            access::patient(&s, &user, pid, PatientAccess::Read).await?;
            let cons = g.consultations(pid).await?;
            let all = match kind.as_str() {
                "Encounter" => cons.iter().map(resources::encounter).collect(),
                "Appointment" => cons.iter().filter_map(resources::appointment).collect(),
                "Composition" => g.compositions(&cons).await?,
                _ => g.documents(&cons).await?,
            };
            (p, all)
        }
        "Observation" => {
            let p = SearchParams::parse(raw, &["patient", "subject", "category", "code"])?;
            let pid = patient_param(&p)?;
            access::patient(&s, &user, pid, PatientAccess::Read).await?;
            let all = g.observations(pid, p.get("category"), p.get("code")).await?;
            (p, all)
        }
        "Practitioner" => {
            return Err(FhirError::bad(
                "search_not_supported",
                "Practitioner chỉ đọc theo mã (Practitioner/{id}).",
                "Practitioner is read by id only (Practitioner/{id}); search it through the resources that name it.",
            ))
        }
        _ => return Err(unknown_type(&kind)),
    };
    Ok(Fhir(bundle(&base, &kind, &p, all)))
}

async fn operation(
    State(s): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    Path((kind, id, op)): Path<(String, String, String)>,
    q: RawQuery,
) -> FhirResult<Fhir> {
    if !TYPES.contains(&kind.as_str()) {
        return Err(unknown_type(&kind));
    }
    if kind != "Patient" || op != "$everything" {
        let op = clip(&op);
        return Err(FhirError::client(
            StatusCode::NOT_FOUND,
            "unknown_operation",
            format!("Không có thao tác “{op}” trên {kind}: chỉ có Patient/{{id}}/$everything."),
            format!("No `{op}` on {kind}: this server offers Patient/{{id}}/$everything only."),
        ));
    }
    let base = base_url(&s, &headers)?;
    let p = SearchParams::parse(query(q)?, &[])?;
    let pid: PatientId = parse_id("Patient", &id)?;
    access::patient(&s, &user, pid, PatientAccess::Read).await?;
    let g = gather::Gather {
        s: &s,
        user: &user,
        base: &base,
    };
    let all = g.everything(pid).await?;
    Ok(Fhir(bundle(
        &base,
        &format!("Patient/{pid}/$everything"),
        &p,
        all,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &[(&str, &str)], allowed: &[&str]) -> FhirResult<SearchParams> {
        SearchParams::parse(
            q.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            allowed,
        )
    }

    #[test]
    fn count_is_bounded_and_unknown_parameters_refused() {
        let p = params(&[("_count", "100000")], &[]).unwrap();
        assert_eq!(p.count, MAX_COUNT);
        assert_eq!(params(&[], &[]).unwrap().count, DEFAULT_COUNT);
        assert!(params(&[("patinet", "x")], &["patient"]).is_err());
        assert!(params(&[("_count", "-1")], &[]).is_err());
        assert!(params(&[("_offset", "100001")], &[]).is_err());
        assert!(params(&[("patient", "a"), ("patient", "b")], &["patient"]).is_err());
    }

    #[test]
    fn pages_link_to_the_next_one() {
        let p = params(&[("patient", "Patient/1"), ("_count", "2")], &["patient"]).unwrap();
        let all = (0..5)
            .map(|i| json!({"resourceType": "Encounter", "id": i.to_string()}))
            .collect();
        let b = bundle("http://h/fhir", "Encounter", &p, all);
        assert_eq!(b["total"], 5);
        assert_eq!(b["entry"].as_array().unwrap().len(), 2);
        let next = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .unwrap();
        assert_eq!(
            next["url"],
            "http://h/fhir/Encounter?patient=Patient%2F1&_count=2&_offset=2"
        );
    }
}
