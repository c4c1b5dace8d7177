//! `/api/patients`: register, find, read and correct patients; their vitals
//! and consultations.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use telehealth_records::{
    Consultation, ConsultationScope, Measurements, Patient, PatientId, PatientInput, Pii, Role, Sex, Vitals,
};

use super::ApiRoutes;
use crate::access::{self, PatientAccess};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::state::AppState;

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.post("/api/patients", create)
        .get("/api/patients", search)
        .get("/api/patients/{id}", get)
        .put("/api/patients/{id}", update)
        .get("/api/patients/{id}/vitals", list_vitals)
        .post("/api/patients/{id}/vitals", record_vitals)
        .get("/api/patients/{id}/consultations", consultations)
}

async fn create(
    State(s): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<PatientInput>,
) -> ApiResult<(StatusCode, Json<Patient>)> {
    if user.role() != Role::HealthWorker {
        return Err(access::refuse_role(&s, &user, "patient.create").await);
    }
    let station = access::facility(&user)?;
    let p = s.store.create_patient(&user.actor(), station, &input).await?;
    tracing::info!(patient = %p.id, user = %user.user.id, "patient registered");
    Ok((StatusCode::CREATED, Json(p)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

async fn search(
    State(s): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<Vec<Patient>>> {
    let scope = access::search_scope(&s, &user).await?;
    let text = q.q.unwrap_or_default();
    // What the search looks at: no accents, nothing invisible (a NUL matched every patient).
    if telehealth_records::validate::fold_for_search(&text)
        .chars()
        .count()
        < 2
    {
        return Err(ApiError::Invalid(vec![telehealth_records::FieldError::new(
            "q",
            "too_short",
            "Nhập ít nhất 2 ký tự của tên, số điện thoại hoặc số CCCD để tìm.",
            "Type at least 2 characters of a name, phone number or CCCD.",
        )]));
    }
    let limit = super::limit(q.limit.as_deref(), 20)?;
    Ok(Json(
        s.store
            .search_patients(&user.actor(), &scope, &text, limit)
            .await?,
    ))
}

async fn get(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<PatientId>,
) -> ApiResult<Json<Patient>> {
    access::patient(&s, &user, id, PatientAccess::Read).await?;
    Ok(Json(s.store.read_patient(&user.actor(), id).await?))
}

/// A full replacement of a patient's details, naming the version it edits.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatientUpdate {
    version: i64,
    full_name: Pii<String>,
    date_of_birth: Pii<String>,
    sex: Sex,
    #[serde(default)]
    phone: Option<Pii<String>>,
    #[serde(default)]
    address: Option<Pii<String>>,
    #[serde(default)]
    cccd: Option<Pii<String>>,
    #[serde(default)]
    bhyt: Option<Pii<String>>,
}

async fn update(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<PatientId>,
    ApiJson(u): ApiJson<PatientUpdate>,
) -> ApiResult<Json<Patient>> {
    access::patient(&s, &user, id, PatientAccess::Write).await?;
    let input = PatientInput {
        full_name: u.full_name,
        date_of_birth: u.date_of_birth,
        sex: u.sex,
        phone: u.phone,
        address: u.address,
        cccd: u.cccd,
        bhyt: u.bhyt,
    };
    Ok(Json(
        s.store
            .update_patient(&user.actor(), id, u.version, &input)
            .await?,
    ))
}

async fn list_vitals(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<PatientId>,
) -> ApiResult<Json<Vec<Vitals>>> {
    access::patient(&s, &user, id, PatientAccess::Read).await?;
    Ok(Json(s.store.patient_vitals(&user.actor(), id).await?))
}

async fn record_vitals(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<PatientId>,
    ApiJson(m): ApiJson<Measurements>,
) -> ApiResult<(StatusCode, Json<Vitals>)> {
    access::patient(&s, &user, id, PatientAccess::Write).await?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.record_vitals(&user.actor(), id, None, &m).await?),
    ))
}

async fn consultations(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<PatientId>,
) -> ApiResult<Json<Vec<Consultation>>> {
    access::patient(&s, &user, id, PatientAccess::Read).await?;
    Ok(Json(
        s.store
            .consultations(&user.actor(), &ConsultationScope::Patient(id), None, 100)
            .await?,
    ))
}
