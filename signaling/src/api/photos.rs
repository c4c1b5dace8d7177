//! Photos: a full-resolution still from the station's camera, uploaded over
//! HTTPS (not through the lossy video) and shown to the doctor at once.
//!
//! The body is the image itself (`Content-Type: image/jpeg|png|webp`, at most
//! 10 MB); its bytes must match the declared type.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use telehealth_records::{Attachment, AttachmentId, ConsultationId, Role, MAX_PHOTO_BYTES};

use super::ApiRoutes;
use crate::access::{self, ConsultationAccess};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::extract::PathId;
use crate::state::AppState;

pub fn routes(r: ApiRoutes) -> ApiRoutes {
    // A little room above the image limit so that the store, not the body
    // limit, names an oversized photo when it is just over.
    r.post_large(
        "/api/consultations/{id}/photos",
        upload,
        MAX_PHOTO_BYTES + 64 * 1024,
    )
    .get("/api/consultations/{id}/photos", list)
    .get("/api/photos/{id}", get)
}

const TYPES: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

async fn upload(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<Attachment>)> {
    // The station's health workers and the consultation's doctor may add photos.
    let want = match user.role() {
        Role::HealthWorker => ConsultationAccess::Request,
        Role::Doctor => ConsultationAccess::Treat,
        Role::Admin => return Err(access::refuse_consultation(&s, &user, id, "photo.add").await),
    };
    let c = access::consultation(&s, &user, id, want).await?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !TYPES.contains(&ctype.as_str()) {
        return Err(ApiError::bad_request(
            "unsupported_image_type",
            "Ảnh phải ở dạng JPEG, PNG hoặc WebP.",
            "The photo must be JPEG, PNG or WebP.",
        ));
    }
    let body = body.map_err(|_| ApiError::PayloadTooLarge {
        limit: MAX_PHOTO_BYTES,
    })?;
    let a = s
        .store
        .add_photo(&user.actor(), id, c.patient_id, &ctype, &body)
        .await?;
    tracing::info!(consultation = %id, photo = %a.id, bytes = a.size_bytes, "photo added");
    s.calls.broadcast(
        id,
        None,
        &crate::protocol::ServerMessage::PhotoShared {
            photo_id: a.id,
            consultation_id: id,
            uploaded_by: a.uploaded_by,
        },
    );
    Ok((StatusCode::CREATED, Json(a)))
}

async fn list(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<ConsultationId>,
) -> ApiResult<Json<Vec<Attachment>>> {
    access::consultation(&s, &user, id, ConsultationAccess::Read).await?;
    Ok(Json(s.store.photos(&user.actor(), id).await?))
}

async fn get(
    State(s): State<AppState>,
    user: AuthUser,
    PathId(id): PathId<AttachmentId>,
) -> ApiResult<Response> {
    let meta = s.store.photo_meta(id).await?;
    access::consultation(&s, &user, meta.consultation_id, ConsultationAccess::Read).await?;
    let (meta, data) = s.store.read_photo(&user.actor(), id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, meta.content_type),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
            (header::CONTENT_DISPOSITION, "inline".to_owned()),
            // A photo opened on its own is an image and nothing else, even if
            // its bytes are also a page (a polyglot): no script, no origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; img-src 'self'; sandbox".to_owned(),
            ),
        ],
        data,
    )
        .into_response())
}
