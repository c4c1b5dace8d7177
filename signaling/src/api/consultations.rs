//! `/api/consultations`: request one, see the queue, accept, start and end,
//! and the consultation's notes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use telehealth_records::lifecycle::{self, Facts};
use telehealth_records::{
    Consultation, ConsultationId, ConsultationInput, ConsultationScope, ConsultationState, FieldError, Note,
    NoteContent, Role,
};

use super::ApiRoutes;
use crate::access::{self, ConsultationAccess, PatientAccess};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, PathId};
use crate::state::AppState;

/// A consultation as the API returns it: the record, and what the lifecycle
/// says it means for the caller now (`joinable`, `call`, `closed`,
/// `actions`), so that pages do not work it out themselves.
#[derive(Serialize, JsonSchema)]
pub struct ConsultationView {
    #[serde(flatten)]
    pub consultation: Consultation,
    #[serde(flatten)]
    pub facts: Facts,
}

/// `c` for `user`, now.
pub fn view(user: &AuthUser, c: Consultation) -> ConsultationView {
    let facts = lifecycle::facts(
        &c,
        user.user.id,
        user.role(),
        user.user.facility_id,
        chrono::Utc::now(),
    );
    ConsultationView {
        consultation: c,
        facts,
    }
}

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.post("/api/consultations", create)
        .get("/api/consultations", list)
        .get("/api/consultations/{id}", get)
        .post("/api/consultations/{id}/accept", accept)
        .post("/api/consultations/{id}/state", change_state)
        .get("/api/consultations/{id}/notes", notes)
        .post("/api/consultations/{id}/notes", create_note)
}

async fn create(
    State(s): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<ConsultationInput>,
) -> ApiResult<(StatusCode, Json<ConsultationView>)> {
    // Health workers of the patient's station only; others are refused, and audited, there.
    access::patient(&s, &user, input.patient_id, PatientAccess::Write).await?;
    let station = s.store.facility(access::facility(&user)?).await?;
    let hospital = match input.hospital_id.or(station.referral_hospital_id) {
        Some(h) => h,
        None => {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "hospital_id",
                "required",
                "Chọn bệnh viện nhận ca tư vấn.",
                "Choose the hospital.",
            )]))
        }
    };
    let hf = match s.store.facility(hospital).await {
        Ok(f) => f,
        Err(telehealth_records::RecordsError::NotFound(_)) => {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "hospital_id",
                "unknown_facility",
                "Không tìm thấy bệnh viện này.",
                "No such hospital.",
            )]))
        }
        Err(e) => return Err(e.into()),
    };
    if !hf.kind.is_hospital() {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "hospital_id",
            "not_a_hospital",
            "Ca tư vấn phải gửi tới một bệnh viện.",
            "Consultations go to a hospital.",
        )]));
    }
    let c = match s
        .store
        .create_consultation(&user.actor(), station.id, hospital, &input)
        .await
    {
        // No consent on file, or withdrawn: refused, and the refusal audited under the patient.
        Err(e @ telehealth_records::RecordsError::Consent(_)) => {
            let id = input.patient_id;
            return Err(access::refuse(
                &s,
                &user,
                "consultation.create",
                Some(id),
                Some(id.to_string()),
                e.into(),
            )
            .await);
        }
        r => r?,
    };
    s.hub.publish(&c);
    tracing::info!(consultation = %c.id, kind = %c.kind, "consultation requested");
    Ok((StatusCode::CREATED, Json(view(&user, c))))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<ConsultationView>>> {
    let scope = match user.role() {
        Role::HealthWorker => ConsultationScope::Station(access::facility(&user)?),
        Role::Doctor => ConsultationScope::Doctor {
            doctor: user.user.id,
            hospital: access::facility(&user)?,
        },
        Role::Admin => return Err(access::refuse_role(&s, &user, "consultation.list").await),
    };
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(v) => Some(v.parse::<ConsultationState>().map_err(|_| {
            ApiError::Invalid(vec![FieldError::new(
                "state",
                "invalid_value",
                "Trạng thái không hợp lệ.",
                "Unknown state.",
            )])
        })?),
    };
    let limit = super::limit(q.limit.as_deref(), 100)?;
    let list = s.store.consultations(&user.actor(), &scope, state, limit).await?;
    Ok(Json(list.into_iter().map(|c| view(&user, c)).collect()))
}

async fn get(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
) -> ApiResult<Json<ConsultationView>> {
    access::consultation(&s, &user, id, ConsultationAccess::Read).await?;
    Ok(Json(view(
        &user,
        s.store.read_consultation(&user.actor(), id).await?,
    )))
}

async fn accept(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
) -> ApiResult<Json<ConsultationView>> {
    access::consultation(&s, &user, id, ConsultationAccess::Accept).await?;
    let c = s
        .store
        .accept_consultation(&user.actor(), id, user.user.id)
        .await?;
    s.hub.publish(&c);
    tracing::info!(consultation = %id, doctor = %user.user.id, "consultation accepted");
    Ok(Json(view(&user, c)))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StateChange {
    state: ConsultationState,
}

async fn change_state(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
    ApiJson(body): ApiJson<StateChange>,
) -> ApiResult<Json<ConsultationView>> {
    use ConsultationState::*;
    // Who may cause which state is the lifecycle's rule (a health worker
    // only withdraws a request; the assigned doctor runs the consultation);
    // the move itself is checked by the store.
    let want = match user.role() {
        _ if !body.state.may_be_caused_by(user.role()) => None,
        Role::HealthWorker => Some(ConsultationAccess::Request),
        Role::Doctor => Some(ConsultationAccess::Treat),
        Role::Admin => None,
    };
    match want {
        Some(want) => {
            access::consultation(&s, &user, id, want).await?;
        }
        None => return Err(access::refuse_consultation(&s, &user, id, "consultation.state").await),
    }
    let c = s
        .store
        .transition_consultation(&user.actor(), id, body.state)
        .await?;
    s.hub.publish(&c);
    if matches!(c.state, Completed | Cancelled | NoShow) {
        // However it was ended, the call ends with it, on every page.
        s.calls.consultation_closed(id, c.state).await;
    }
    tracing::info!(consultation = %id, state = %c.state, "consultation state changed");
    Ok(Json(view(&user, c)))
}

async fn notes(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
) -> ApiResult<Json<Vec<Note>>> {
    let c = access::consultation(&s, &user, id, ConsultationAccess::Read).await?;
    let all_versions = user.role() == Role::Doctor && c.doctor_id == Some(user.user.id);
    Ok(Json(
        s.store
            .consultation_notes(&user.actor(), id, !all_versions)
            .await?,
    ))
}

async fn create_note(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
    ApiJson(content): ApiJson<NoteContent>,
) -> ApiResult<(StatusCode, Json<Note>)> {
    let c = access::consultation(&s, &user, id, ConsultationAccess::Treat).await?;
    let n = s
        .store
        .create_note(&user.actor(), id, c.patient_id, user.user.id, &content)
        .await?;
    tracing::info!(consultation = %id, note = %n.id, "note started");
    Ok((StatusCode::CREATED, Json(n)))
}
