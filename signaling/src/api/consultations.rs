//! `/api/consultations`: request one, see the queue, accept, start and end,
//! and the consultation's notes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
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
) -> ApiResult<(StatusCode, Json<Consultation>)> {
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
    Ok((StatusCode::CREATED, Json(c)))
}

#[derive(Deserialize)]
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
) -> ApiResult<Json<Vec<Consultation>>> {
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
    Ok(Json(
        s.store.consultations(&user.actor(), &scope, state, limit).await?,
    ))
}

async fn get(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
) -> ApiResult<Json<Consultation>> {
    access::consultation(&s, &user, id, ConsultationAccess::Read).await?;
    Ok(Json(s.store.read_consultation(&user.actor(), id).await?))
}

async fn accept(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
) -> ApiResult<Json<Consultation>> {
    access::consultation(&s, &user, id, ConsultationAccess::Accept).await?;
    let c = s
        .store
        .accept_consultation(&user.actor(), id, user.user.id)
        .await?;
    s.hub.publish(&c);
    tracing::info!(consultation = %id, doctor = %user.user.id, "consultation accepted");
    Ok(Json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateChange {
    state: ConsultationState,
}

async fn change_state(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
    ApiJson(body): ApiJson<StateChange>,
) -> ApiResult<Json<Consultation>> {
    use ConsultationState::*;
    // Health workers may only withdraw a request; the assigned doctor runs
    // the consultation. The lifecycle itself is checked by the store.
    match (user.role(), body.state) {
        (Role::HealthWorker, Cancelled) => {
            access::consultation(&s, &user, id, ConsultationAccess::Request).await?;
        }
        (Role::Doctor, InProgress | Completed | Cancelled | NoShow | Interrupted) => {
            access::consultation(&s, &user, id, ConsultationAccess::Treat).await?;
        }
        _ => return Err(access::refuse_consultation(&s, &user, id, "consultation.state").await),
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
    Ok(Json(c))
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
