//! Session logs for admins: list with filters, one session's timeline and
//! quality summary, and the timeline as CSV.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use telehealth_records::{
    ConsultationId, ConsultationState, FacilityId, FieldError, Role, SessionEvent, SessionQuery,
    SessionSummary,
};

use super::ApiRoutes;
use crate::access;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, parse_time, ApiQuery, PathId};
use crate::state::AppState;

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.get("/api/sessions", list)
        .get("/api/sessions/{id}", get)
        .get("/api/sessions/{id}/events.csv", csv)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    facility_id: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    min_worst_loss_pct: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<SessionSummary>>> {
    access::require_role(&user, &[Role::Admin])?;
    let state = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(v) => Some(v.parse::<ConsultationState>().map_err(|_| {
            ApiError::Invalid(vec![FieldError::new(
                "state",
                "invalid_value",
                "Trạng thái không hợp lệ.",
                "Unknown state.",
            )])
        })?),
    };
    let min_loss = match q.min_worst_loss_pct.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(v) => Some(
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    ApiError::Invalid(vec![FieldError::new(
                        "min_worst_loss_pct",
                        "invalid_number",
                        "Phải là một số không âm (phần trăm).",
                        "Must be a non-negative number (percent).",
                    )])
                })?,
        ),
    };
    let query = SessionQuery {
        from: parse_time("from", q.from)?,
        to: parse_time("to", q.to)?,
        facility_id: q
            .facility_id
            .filter(|s| !s.is_empty())
            .map(|f| parse_id::<FacilityId>("facility_id", &f))
            .transpose()?,
        state,
        min_worst_loss_pct: min_loss,
        limit: super::limit(q.limit.as_deref(), 100)?,
    };
    Ok(Json(s.store.sessions(&query).await?))
}

#[derive(Serialize, JsonSchema)]
struct SessionDetail {
    #[serde(flatten)]
    summary: SessionSummary,
    /// One page of the events, oldest first.
    events: Vec<SessionEvent>,
    /// Where the next page starts (`after_id`), or null after the last.
    next_after_id: Option<i64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    after_id: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// Events per page: by default, and at most.
const EVENTS_PAGE: i64 = 1000;
const EVENTS_PAGE_MAX: i64 = 5000;

/// The session's summary (over all its events) and one page of its events:
/// a long call's log is several megabytes, read a page at a time.
async fn get(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<SessionDetail>> {
    access::require_role(&user, &[Role::Admin])?;
    let after = q
        .after_id
        .filter(|a| !a.is_empty())
        .map(|a| parse_id::<i64>("after_id", &a))
        .transpose()?
        .unwrap_or(0);
    let limit = super::limit(q.limit.as_deref(), EVENTS_PAGE)?.min(EVENTS_PAGE_MAX) as usize;
    let (summary, events) = s.store.session(id).await?;
    let mut page: Vec<SessionEvent> = events
        .into_iter()
        .filter(|e| e.id > after)
        .take(limit + 1)
        .collect();
    let next_after_id = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(SessionDetail {
        summary,
        events: page,
        next_after_id,
    }))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

async fn csv(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
) -> ApiResult<Response> {
    access::require_role(&user, &[Role::Admin])?;
    let (_, events) = s.store.session(id).await?;
    let mut out = String::from("id,at,kind,user_id,data\r\n");
    for e in events {
        let user = e.user_id.map(|u| u.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{}\r\n",
            e.id,
            e.at,
            csv_field(&e.kind),
            user,
            csv_field(&e.data.to_string())
        ));
    }
    let disposition = format!("attachment; filename=\"session-{id}.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        out,
    )
        .into_response())
}
