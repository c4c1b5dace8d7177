//! Facilities, user accounts and the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use telehealth_records::{
    AuditEntry, AuditQuery, Facility, FacilityId, FacilityInput, NewUser, PatientId, Role, User, UserChanges,
    UserId,
};

use super::ApiRoutes;
use crate::access;
use crate::auth::{check_password_rules, confirm_password, hash_password, AuthUser};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, parse_time, ApiJson, ApiQuery, PathId};
use crate::state::AppState;

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.get("/api/facilities", list_facilities)
        .post("/api/facilities", create_facility)
        .get("/api/facilities/{id}", get_facility)
        .put("/api/facilities/{id}", update_facility)
        .get("/api/users", list_users)
        .post("/api/users", create_user)
        .get("/api/users/{id}", get_user)
        .patch("/api/users/{id}", update_user)
        .get("/api/audit", audit)
        .get("/api/audit/verify", verify_audit)
}

/// Any logged-in user may list facilities (to pick a hospital, say).
async fn list_facilities(State(s): State<AppState>, _user: AuthUser) -> ApiResult<Json<Vec<Facility>>> {
    Ok(Json(s.store.facilities().await?))
}

async fn get_facility(
    State(s): State<AppState>,
    _user: AuthUser,
    PathId(id): PathId<FacilityId>,
) -> ApiResult<Json<Facility>> {
    Ok(Json(s.store.facility(id).await?))
}

async fn create_facility(
    State(s): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<FacilityInput>,
) -> ApiResult<(StatusCode, Json<Facility>)> {
    access::require_role(&user, &[Role::Admin])?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_facility(&user.actor(), &input).await?),
    ))
}

async fn update_facility(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<FacilityId>,
    ApiJson(input): ApiJson<FacilityInput>,
) -> ApiResult<Json<Facility>> {
    access::require_role(&user, &[Role::Admin])?;
    Ok(Json(s.store.update_facility(&user.actor(), id, &input).await?))
}

async fn list_users(State(s): State<AppState>, user: AuthUser) -> ApiResult<Json<Vec<User>>> {
    access::require_role(&user, &[Role::Admin])?;
    Ok(Json(s.store.users().await?))
}

async fn get_user(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<UserId>,
) -> ApiResult<Json<User>> {
    access::require_role(&user, &[Role::Admin])?;
    Ok(Json(s.store.user(id).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    display_name: String,
    password: String,
    role: Role,
    #[serde(default)]
    facility_id: Option<FacilityId>,
}

async fn create_user(
    State(s): State<AppState>,
    user: AuthUser,
    ApiJson(b): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    access::require_role(&user, &[Role::Admin])?;
    check_password_rules(&b.password).map_err(|e| ApiError::Invalid(vec![e]))?;
    let new = NewUser {
        username: b.username,
        display_name: b.display_name,
        password_hash: hash_password(b.password).await?,
        role: b.role,
        facility_id: b.facility_id,
    };
    let created = s.store.create_user(&user.actor(), &new).await?;
    tracing::info!(user = %created.id, role = %created.role, "account created");
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    facility_id: Option<FacilityId>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    /// Required when an admin changes their own password.
    #[serde(default)]
    current_password: Option<String>,
}

async fn update_user(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<UserId>,
    ApiJson(b): ApiJson<UpdateUser>,
) -> ApiResult<Json<User>> {
    access::require_role(&user, &[Role::Admin])?;
    if id == user.user.id && (b.active == Some(false) || b.role.is_some_and(|r| r != Role::Admin)) {
        return Err(ApiError::Invalid(vec![telehealth_records::FieldError::new(
            "active",
            "cannot_lock_yourself_out",
            "Không thể tự khóa hoặc bỏ quyền quản trị của chính mình.",
            "You cannot disable your own account or drop your own admin role.",
        )]));
    }
    let password_hash = match b.password {
        Some(p) => {
            check_password_rules(&p).map_err(|e| ApiError::Invalid(vec![e]))?;
            if id == user.user.id {
                confirm_password(&s, &user, b.current_password).await?;
            }
            Some(hash_password(p).await?)
        }
        None => None,
    };
    let changes = UserChanges {
        display_name: b.display_name,
        role: b.role,
        facility_id: b.facility_id.map(Some),
        active: b.active,
        password_hash,
    };
    Ok(Json(s.store.update_user(&user.actor(), id, &changes).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    #[serde(default)]
    patient_id: Option<String>,
    #[serde(default)]
    actor_id: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    before_id: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

fn opt<T: std::str::FromStr>(field: &str, v: Option<String>) -> ApiResult<Option<T>> {
    v.filter(|s| !s.is_empty())
        .map(|s| parse_id::<T>(field, &s))
        .transpose()
}

async fn audit(
    State(s): State<AppState>,
    user: AuthUser,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    access::require_role(&user, &[Role::Admin])?;

    let q = AuditQuery {
        patient_id: opt::<PatientId>("patient_id", p.patient_id)?,
        actor_id: opt::<UserId>("actor_id", p.actor_id)?,
        action: p.action.filter(|s| !s.is_empty()),
        from: parse_time("from", p.from)?,
        to: parse_time("to", p.to)?,
        before_id: opt::<i64>("before_id", p.before_id)?,
        limit: super::limit(p.limit.as_deref(), 200)?,
    };
    Ok(Json(s.store.audit_entries(&q).await?))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct VerifyParams {
    /// An anchor kept from before: `id:hash`.
    #[serde(default)]
    anchor: Option<String>,
}

/// The audit chain checked end to end, and its head signed by this server:
/// the anchor an admin keeps (and passes back later as `anchor`) to show that
/// nothing up to it was rewritten since.
#[derive(serde::Serialize, JsonSchema)]
struct VerifyReport {
    #[serde(flatten)]
    report: telehealth_records::ChainReport,
    /// Whether the chain holds (and contains the anchor given).
    intact: bool,
    anchor: Option<String>,
    signature: Option<String>,
}

async fn verify_audit(
    State(s): State<AppState>,
    user: AuthUser,
    ApiQuery(p): ApiQuery<VerifyParams>,
) -> ApiResult<Json<VerifyReport>> {
    access::require_role(&user, &[Role::Admin])?;
    let anchor = match p.anchor.filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => {
            let parsed = a
                .split_once(':')
                .and_then(|(id, h)| Some((id.parse::<i64>().ok()?, h.to_owned())))
                .filter(|(_, h)| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            Some(parsed.ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_anchor",
                    "Mốc kiểm tra phải có dạng số-thứ-tự:mã-băm (ví dụ 120:9f86d0…, 64 ký tự hex).",
                    "The anchor must be id:hash (e.g. 120:9f86d0…, 64 hex digits).",
                )
            })?)
        }
    };
    let report = s
        .store
        .verify_audit_chain(anchor.as_ref().map(|(id, h)| (*id, h.as_str())))
        .await?;
    s.store
        .audit(
            &user.actor(),
            "audit.verify",
            "audit_log",
            None,
            None,
            telehealth_records::Outcome::Ok,
        )
        .await?;
    let intact = report.problem.is_none();
    let (anchor, signature) = match (intact, report.head_id) {
        (true, Some(id)) => (
            Some(format!("{id}:{}", report.head_hash)),
            Some(s.auth.sign_anchor(id, &report.head_hash)),
        ),
        _ => (None, None),
    };
    if !intact {
        tracing::error!(broken_at = ?report.broken_at, problem = ?report.problem, "audit chain broken");
    }
    Ok(Json(VerifyReport {
        report,
        intact,
        anchor,
        signature,
    }))
}
