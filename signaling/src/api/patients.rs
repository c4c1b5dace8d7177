//! `/api/patients`: register, find, read and correct patients; their vitals
//! and consultations.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use telehealth_records::{
    Consent, ConsentInput, ConsentText, ConsultationScope, Measurements, Patient, PatientId, PatientInput,
    Pii, Role, Sex, Vitals,
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
        .get("/api/patients/{id}/consents", list_consents)
        .post("/api/patients/{id}/consents", record_consent)
        .get("/api/consent-text", consent_text)
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
    let p = match s.store.create_patient(&user.actor(), station, &input).await {
        Err(telehealth_records::RecordsError::Duplicate(telehealth_records::Unique::Cccd)) => {
            return Err(registered_elsewhere(&s, &user, station, &input).await);
        }
        r => r?,
    };
    tracing::info!(patient = %p.id, user = %user.user.id, "patient registered");
    Ok((StatusCode::CREATED, Json(p)))
}

/// How many "registered elsewhere" answers one user may get in a day.
const ELSEWHERE_PER_DAY: i64 = 5;

/// A citizen id already on file. At the worker's own station, the answer says
/// so (search for the patient). At another facility, it says only that a
/// record exists elsewhere in the province and what to do — but the answer
/// itself tells that this citizen is someone's patient, so it is audited
/// under that patient (an inspector sees who asked about whom) and a user
/// gets at most [`ELSEWHERE_PER_DAY`] of them a day.
async fn registered_elsewhere(
    s: &AppState,
    user: &AuthUser,
    station: telehealth_records::FacilityId,
    input: &PatientInput,
) -> ApiError {
    let cccd = input.cccd.as_ref().map(|c| c.0.as_str()).unwrap_or("");
    let holder = match s.store.cccd_holder(cccd).await {
        Ok(Some(h)) => h,
        Ok(None) => {
            return ApiError::from(telehealth_records::RecordsError::Duplicate(
                telehealth_records::Unique::Cccd,
            ))
        }
        Err(e) => return e.into(),
    };
    if holder.1 == station {
        return ApiError::from(telehealth_records::RecordsError::Duplicate(
            telehealth_records::Unique::Cccd,
        ));
    }
    let since = telehealth_records::Timestamp(chrono::Utc::now() - chrono::Duration::days(1));
    let asked = s
        .store
        .count_audit(user.user.id, "patient.cccd_elsewhere", since)
        .await
        .unwrap_or(i64::MAX);
    let answer = if asked >= ELSEWHERE_PER_DAY {
        ApiError::OverLimit {
            code: "too_many_lookups",
            detail: "Bạn đã gặp nhiều số CCCD có hồ sơ ở cơ sở khác trong hôm nay. Hãy liên hệ bệnh viện huyện để được hỗ trợ.",
            detail_en: "You have met several citizen ids on file elsewhere today. Contact the district hospital for help.",
            retry_after_secs: 24 * 3600,
        }
    } else {
        let vi = "Người này đã có hồ sơ tại một cơ sở y tế khác trong tỉnh, nên không tạo hồ sơ thứ hai. Hãy gọi bệnh viện huyện để được chuyển hồ sơ về trạm.";
        let en = "This person already has a record at another facility in the province, so no second one is made. Call the district hospital to have it moved to your station.";
        ApiError::Conflict {
            code: "registered_elsewhere",
            detail: vi.to_owned(),
            detail_en: en.to_owned(),
            current_version: None,
            errors: vec![telehealth_records::FieldError::new(
                "cccd",
                "registered_elsewhere",
                vi,
                en,
            )],
        }
    };
    access::refuse(
        s,
        user,
        "patient.cccd_elsewhere",
        Some(holder.0),
        Some(holder.0.to_string()),
        answer,
    )
    .await
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    /// Required: a missing one is answered with a message that says so.
    #[schemars(required)]
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
// The API requires these (the document says so); the type reads them
// leniently so that every missing one is reported at once, by name.
#[derive(Deserialize, JsonSchema)]
#[schemars(extend("required" = ["version", "full_name", "date_of_birth", "sex"]))]
#[serde(deny_unknown_fields)]
struct PatientUpdate {
    version: i64,
    #[serde(default)]
    full_name: Pii<String>,
    #[serde(default)]
    date_of_birth: Pii<String>,
    #[serde(default)]
    #[schemars(required)]
    sex: Option<Sex>,
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
) -> ApiResult<Json<Vec<super::consultations::ConsultationView>>> {
    access::patient(&s, &user, id, PatientAccess::Read).await?;
    let list = s
        .store
        .consultations(&user.actor(), &ConsultationScope::Patient(id), None, 100)
        .await?;
    Ok(Json(
        list.into_iter()
            .map(|c| super::consultations::view(&user, c))
            .collect(),
    ))
}

/// The consent text in use, to read to the patient (any signed-in user).
async fn consent_text(_user: AuthUser) -> Json<&'static ConsentText> {
    Json(telehealth_records::current_consent_text())
}

async fn list_consents(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<PatientId>,
) -> ApiResult<Json<Vec<Consent>>> {
    access::patient(&s, &user, id, PatientAccess::Read).await?;
    Ok(Json(s.store.consents(&user.actor(), id).await?))
}

/// Records consent given or withdrawn, attested by a health worker of the
/// patient's station. A withdrawal also cancels the patient's consultations
/// that have not started (requested or booked; the store does both in one
/// transaction): their pages and queues hear of it, their calls close.
async fn record_consent(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<PatientId>,
    ApiJson(input): ApiJson<ConsentInput>,
) -> ApiResult<(StatusCode, Json<Consent>)> {
    access::patient(&s, &user, id, PatientAccess::Write).await?;
    let station = access::facility(&user)?;
    let (consent, cancelled) = s.store.record_consent(&user.actor(), id, station, &input).await?;
    tracing::info!(patient = %id, consent = %consent.id, decision = %consent.decision, "consent recorded");
    for c in cancelled {
        s.hub.publish(&c);
        s.calls.consultation_closed(c.id, c.state).await;
        tracing::info!(consultation = %c.id, "consultation cancelled: consent withdrawn");
    }
    Ok((StatusCode::CREATED, Json(consent)))
}
