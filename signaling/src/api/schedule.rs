//! Doctors' working hours and leave, free slots, rescheduling.
//!
//! Times travel in UTC (RFC 3339); working hours are minutes after local
//! midnight in Vietnam (UTC+7), and slots also carry their local start.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use telehealth_records::{
    ConsultationId, FacilityId, FieldError, Leave, Role, Slot, Timestamp, UserId, WorkingHours,
};

use super::ApiRoutes;
use crate::access::{self, ConsultationAccess};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, ApiJson, ApiQuery, PathId};
use crate::state::AppState;

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.get("/api/doctors/{id}/hours", get_hours)
        .put("/api/doctors/{id}/hours", set_hours)
        .get("/api/doctors/{id}/leave", list_leave)
        .post("/api/doctors/{id}/leave", add_leave)
        .delete("/api/doctors/{id}/leave/{leave_id}", delete_leave)
        .get("/api/facilities/{id}/doctors", doctors)
        .get("/api/facilities/{id}/slots", slots)
        .post("/api/consultations/{id}/reschedule", reschedule)
}

/// A doctor's schedule is edited by the doctor or an admin.
async fn schedule_owner(s: &AppState, user: &AuthUser, doctor: UserId) -> ApiResult<()> {
    let target = s.store.user(doctor).await?;
    if target.role != Role::Doctor {
        return Err(ApiError::NotFound("user"));
    }
    if user.role() == Role::Admin || user.user.id == doctor {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            code: "not_your_schedule",
            detail: "Chỉ bác sĩ đó hoặc quản trị viên mới xem và sửa được lịch làm việc này.",
            detail_en: "Only that doctor or an admin may see and change this schedule.",
        })
    }
}

async fn get_hours(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<UserId>,
) -> ApiResult<Json<Vec<WorkingHours>>> {
    schedule_owner(&s, &user, id).await?;
    Ok(Json(s.store.doctor_hours(id).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HoursBody {
    hours: Vec<WorkingHours>,
}

async fn set_hours(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<UserId>,
    ApiJson(b): ApiJson<HoursBody>,
) -> ApiResult<Json<Vec<WorkingHours>>> {
    schedule_owner(&s, &user, id).await?;
    Ok(Json(s.store.set_doctor_hours(&user.actor(), id, &b.hours).await?))
}

async fn list_leave(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<UserId>,
) -> ApiResult<Json<Vec<Leave>>> {
    schedule_owner(&s, &user, id).await?;
    Ok(Json(s.store.doctor_leave(id).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct LeaveBody {
    starts_at: Timestamp,
    ends_at: Timestamp,
    #[serde(default)]
    reason: String,
}

async fn add_leave(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<UserId>,
    ApiJson(b): ApiJson<LeaveBody>,
) -> ApiResult<(StatusCode, Json<Leave>)> {
    schedule_owner(&s, &user, id).await?;
    let l = s
        .store
        .add_leave(&user.actor(), id, b.starts_at, b.ends_at, &b.reason)
        .await?;
    Ok((StatusCode::CREATED, Json(l)))
}

async fn delete_leave(
    State(s): State<AppState>,
    user: AuthUser,
    Path((doctor, leave)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let doctor: UserId = parse_id("id", &doctor)?;
    let leave: uuid::Uuid = parse_id("leave_id", &leave)?;
    schedule_owner(&s, &user, doctor).await?;
    s.store
        .delete_leave(&user.actor(), doctor, &leave.to_string())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, JsonSchema)]
struct DoctorSummary {
    id: UserId,
    display_name: String,
}

/// The doctors of a hospital (names only), for booking a named doctor.
async fn doctors(
    State(s): State<AppState>,
    _user: AuthUser,
    PathId(id): PathId<FacilityId>,
) -> ApiResult<Json<Vec<DoctorSummary>>> {
    s.store.facility(id).await?;
    let list = s.store.hospital_doctors(id).await?;
    Ok(Json(
        list.into_iter()
            .map(|(id, display_name)| DoctorSummary { id, display_name })
            .collect(),
    ))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SlotQuery {
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    doctor_id: Option<String>,
}

/// Free slots at a hospital on one local day (default: today in Vietnam).
async fn slots(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<FacilityId>,
    ApiQuery(q): ApiQuery<SlotQuery>,
) -> ApiResult<Json<Vec<Slot>>> {
    if user.role() == Role::Admin {
        return Err(ApiError::forbidden_role());
    }
    let f = s.store.facility(id).await?;
    if !f.kind.is_hospital() {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "id",
            "not_a_hospital",
            "Chỉ bệnh viện mới có lịch khám.",
            "Only hospitals have appointment slots.",
        )]));
    }
    let now = chrono::Utc::now();
    let day = match q.date.as_deref().filter(|d| !d.is_empty()) {
        None => now
            .with_timezone(&telehealth_records::local_offset())
            .date_naive(),
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
            ApiError::Invalid(vec![FieldError::new(
                "date",
                "invalid_date",
                "Ngày phải ở dạng NNNN-TT-NN.",
                "The date must be YYYY-MM-DD.",
            )])
        })?,
    };
    let doctor = q
        .doctor_id
        .filter(|d| !d.is_empty())
        .map(|d| parse_id::<UserId>("doctor_id", &d))
        .transpose()?;
    Ok(Json(s.store.free_slots(id, doctor, day, now).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RescheduleBody {
    scheduled_start: Timestamp,
    #[serde(default)]
    doctor_id: Option<UserId>,
}

/// Moves a booking: the station that made it, or its doctor.
async fn reschedule(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
    ApiJson(b): ApiJson<RescheduleBody>,
) -> ApiResult<Json<super::consultations::ConsultationView>> {
    let want = match user.role() {
        Role::HealthWorker => ConsultationAccess::Request,
        Role::Doctor => ConsultationAccess::Treat,
        Role::Admin => {
            return Err(access::refuse_consultation(&s, &user, id, "consultation.reschedule").await)
        }
    };
    access::consultation(&s, &user, id, want).await?;
    let c = s
        .store
        .reschedule(&user.actor(), id, b.scheduled_start, b.doctor_id)
        .await?;
    s.hub.publish(&c);
    tracing::info!(consultation = %id, "consultation rescheduled");
    Ok(Json(super::consultations::view(&user, c)))
}
