//! `/api/notes/{id}`: read, autosave, sign and amend one note version.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use schemars::JsonSchema;
use serde::Deserialize;
use telehealth_records::{Disposition, Note, NoteContent, NoteId, Pii};

use super::ApiRoutes;
use crate::access;
use crate::auth::AuthUser;
use crate::error::ApiResult;
use crate::extract::{ApiJson, PathId};
use crate::state::AppState;

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    r.get("/api/notes/{id}", get)
        .put("/api/notes/{id}", save)
        .post("/api/notes/{id}/sign", sign)
        .post("/api/notes/{id}/amend", amend)
}

async fn get(State(s): State<AppState>, user: AuthUser, PathId(id): PathId<NoteId>) -> ApiResult<Json<Note>> {
    access::note(&s, &user, id, false).await?;
    Ok(Json(s.store.read_note(&user.actor(), id).await?))
}

/// A draft save: the whole content and the version it was edited from.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoteSave {
    version: i64,
    #[serde(default)]
    subjective: Pii<String>,
    #[serde(default)]
    objective: Pii<String>,
    #[serde(default)]
    assessment: Pii<String>,
    #[serde(default)]
    plan: Pii<String>,
    #[serde(default)]
    icd10_codes: Vec<String>,
    #[serde(default)]
    disposition: Option<Disposition>,
}

/// Saves a draft. Sending the same save twice is harmless; a save based on
/// an older version than the stored one gets 409 with `current_version`.
async fn save(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<NoteId>,
    ApiJson(b): ApiJson<NoteSave>,
) -> ApiResult<Json<Note>> {
    // Only the note's own doctor writes it; anyone else is refused, and audited, in `access::note`.
    let c = access::note(&s, &user, id, true).await?;
    let content = NoteContent {
        subjective: b.subjective,
        objective: b.objective,
        assessment: b.assessment,
        plan: b.plan,
        icd10_codes: b.icd10_codes,
        disposition: b.disposition,
    };
    let saved = s.store.update_note(&user.actor(), id, b.version, &content).await;
    Ok(Json(
        access::audited_write(&s, &user, "note.update", c.patient_id, id.to_string(), saved).await?,
    ))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    version: i64,
}

async fn sign(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<NoteId>,
    ApiJson(b): ApiJson<SignRequest>,
) -> ApiResult<Json<Note>> {
    let c = access::note(&s, &user, id, true).await?;
    let signed = s.store.sign_note(&user.actor(), id, b.version).await;
    let n = access::audited_write(&s, &user, "note.sign", c.patient_id, id.to_string(), signed).await?;
    tracing::info!(note = %id, consultation = %n.consultation_id, "note signed");
    Ok(Json(n))
}

async fn amend(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<NoteId>,
) -> ApiResult<(StatusCode, Json<Note>)> {
    access::note(&s, &user, id, true).await?;
    let n = s.store.amend_note(&user.actor(), id, user.user.id).await?;
    tracing::info!(note = %n.id, amends = %id, "amendment started");
    Ok((StatusCode::CREATED, Json(n)))
}
