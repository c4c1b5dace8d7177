//! Read-only HL7 FHIR R4 export under `/fhir`, for the province's platforms.
//!
//! # Model
//! The same login, roles and facility rules as the REST API: every read goes
//! through [`crate::access`] and the store's audited reads, so a refused
//! access is a 403 written to the audit log and a read leaves the same audit
//! entries as its REST twin. Resources are mapped from records in
//! [`resources`]; searches and `$everything` gather them in `gather`, pages
//! and Bundles are made in `search`, errors in `outcome`; the server's
//! description is [`capability`].
//!
//! # Flow
//! `GET /fhir/{type}/{id}` reads, `GET /fhir/{type}?…` searches (a
//! `searchset` Bundle, paged with `_count` and `_offset`),
//! `GET /fhir/Patient/{id}/$everything` gathers one patient's record,
//! `GET /fhir/metadata` is the CapabilityStatement. Every error leaves as an
//! OperationOutcome: `outcome::outcomes` turns the API's problem+json answers
//! (login, access, database) into one, so that the rules that make them stay
//! in one place.
//!
//! # Out of scope
//! Writes, `_history`, `_include`, XML, and search parameters other than the
//! ones the CapabilityStatement lists (an unknown one is a 400, not ignored:
//! a misspelt `patient` must not widen a search).

pub mod capability;
mod gather;
mod outcome;
pub mod resources;
mod search;

pub use outcome::{outcome, to_outcome, FhirError, FhirResult};
use search::clip;
pub use search::{bundle, SearchParams};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;
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
        .layer(middleware::from_fn(outcome::outcomes))
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
            // Access first: a caller without it learns nothing of the
            // consultation (not even whether it was booked), and is audited.
            access::consultation(&s, &user, cid, ConsultationAccess::Read).await?;
            if kind == "Appointment" && resources::appointment(&c).is_none() {
                // An urgent request was never booked.
                return Err(FhirError::not_found(&kind, &id));
            }
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
            access::patient(&s, &user, v.patient_id, PatientAccess::Read).await?;
            if resources::observation(&v, suffix).is_none() {
                return Err(FhirError::not_found(&kind, &id));
            }
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
            let (cid, _, _, status) = s.store.note_meta(nid).await.map_err(|e| missing(e, &kind, &id))?;
            if status != NoteStatus::Signed {
                // Drafts are not exported: a Composition is a signed note.
                // Whoever may not read the consultation is refused (and
                // audited) rather than told there is a draft.
                access::consultation(&s, &user, cid, ConsultationAccess::Read).await?;
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
        cut: Default::default(),
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
    let mut b = bundle(&base, &kind, &p, all);
    if g.was_cut() {
        search::mark_cut(&mut b);
    }
    Ok(Fhir(b))
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
        cut: Default::default(),
    };
    let all = g.everything(pid).await?;
    let mut b = bundle(&base, &format!("Patient/{pid}/$everything"), &p, all);
    if g.was_cut() {
        search::mark_cut(&mut b);
    }
    Ok(Fhir(b))
}
