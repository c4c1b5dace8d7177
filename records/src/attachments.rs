//! Still images attached to a consultation (a rash, a wound, a document),
//! sent at full resolution over HTTPS rather than through lossy video.

use schemars::JsonSchema;
use serde::Serialize;
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::error::Result;
use crate::events::append_event;
use crate::types::{AttachmentId, ConsultationId, PatientId, Timestamp, UserId};
use crate::validate::FieldError;
use crate::{RecordsError, Store};

/// Largest photo accepted (a 12-megapixel JPEG is about 4-6 MB).
pub const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
/// Most photos one consultation keeps: a wound from a few sides, a rash, a
/// prescription, a test result, several times over. Bounds what one account
/// can make the server store (each photo is in the database).
pub const MAX_PHOTOS_PER_CONSULTATION: i64 = 30;
/// Most bytes of photos one consultation keeps.
pub const MAX_PHOTO_BYTES_PER_CONSULTATION: i64 = 100 * 1024 * 1024;

#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
pub struct Attachment {
    pub id: AttachmentId,
    pub consultation_id: ConsultationId,
    pub patient_id: PatientId,
    pub uploaded_by: UserId,
    pub content_type: String,
    pub size_bytes: i64,
    pub created_at: Timestamp,
}

/// The image type its first bytes announce (JPEG, PNG, WebP), if any.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

const COLUMNS: &str = "id, consultation_id, patient_id, uploaded_by, content_type, size_bytes, created_at";

impl Store {
    /// Stores a photo. Its declared type must be what its bytes are.
    pub async fn add_photo(
        &self,
        actor: &Actor,
        consultation: ConsultationId,
        patient: PatientId,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Attachment> {
        let by = actor.user_id.ok_or(RecordsError::NotFound("user"))?;
        if bytes.is_empty() || bytes.len() > MAX_PHOTO_BYTES {
            return Err(RecordsError::field(FieldError::new(
                "body",
                "bad_size",
                "Ảnh trống hoặc lớn hơn 10 MB.",
                "The photo is empty or larger than 10 MB.",
            )));
        }
        if sniff_image(bytes) != Some(content_type) {
            return Err(RecordsError::field(FieldError::new(
                "body",
                "not_an_image",
                "Tệp gửi lên không phải ảnh JPEG, PNG hoặc WebP như đã khai báo.",
                "The upload is not the JPEG, PNG or WebP image it claims to be.",
            )));
        }
        let id = AttachmentId::new();
        let mut w = self.begin_write().await?;
        let (count, stored): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM attachments WHERE consultation_id = $1",
        )
        .bind(consultation)
        .fetch_one(&mut **w)
        .await?;
        if count >= MAX_PHOTOS_PER_CONSULTATION
            || stored + bytes.len() as i64 > MAX_PHOTO_BYTES_PER_CONSULTATION
        {
            return Err(RecordsError::field(FieldError::new(
                "body",
                "photo_quota",
                format!(
                    "Ca tư vấn này đã có đủ ảnh (tối đa {MAX_PHOTOS_PER_CONSULTATION} ảnh, {} MB). Gửi ảnh qua ca tư vấn mới nếu cần.",
                    MAX_PHOTO_BYTES_PER_CONSULTATION / (1024 * 1024)
                ),
                format!(
                    "This consultation has all the photos it can keep (at most {MAX_PHOTOS_PER_CONSULTATION}, {} MB). Send more in a new consultation if needed.",
                    MAX_PHOTO_BYTES_PER_CONSULTATION / (1024 * 1024)
                ),
            )));
        }
        let a = sqlx::query_as::<_, Attachment>(&format!(
            "INSERT INTO attachments (id, consultation_id, patient_id, uploaded_by, content_type, size_bytes, data, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(consultation)
        .bind(patient)
        .bind(by)
        .bind(content_type)
        .bind(bytes.len() as i64)
        .bind(bytes.to_vec())
        .bind(Timestamp::now())
        .fetch_one(&mut **w)
        .await?;
        append_event(
            &mut w,
            consultation,
            Some(by),
            crate::SessionEntry::Photo {
                photo_id: id,
                bytes: bytes.len() as u64,
            },
        )
        .await?;
        record(
            &mut w,
            actor,
            "photo.create",
            "photo",
            Some(id.to_string()),
            Some(patient),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(a)
    }

    /// A photo's description (for access checks; no image, not audited).
    pub async fn photo_meta(&self, id: AttachmentId) -> Result<Attachment> {
        sqlx::query_as::<_, Attachment>(&format!("SELECT {COLUMNS} FROM attachments WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RecordsError::NotFound("photo"))
    }

    /// A consultation's photos, oldest first (descriptions only).
    pub async fn photos(&self, actor: &Actor, consultation: ConsultationId) -> Result<Vec<Attachment>> {
        let rows = sqlx::query_as::<_, Attachment>(&format!(
            "SELECT {COLUMNS} FROM attachments WHERE consultation_id = $1 ORDER BY created_at, id"
        ))
        .bind(consultation)
        .fetch_all(&self.pool)
        .await?;
        if let Some(first) = rows.first() {
            self.audit(
                actor,
                "photo.list",
                "consultation",
                Some(consultation.to_string()),
                Some(first.patient_id),
                Outcome::Ok,
            )
            .await?;
        }
        Ok(rows)
    }

    /// One photo with its bytes, with an audit entry.
    pub async fn read_photo(&self, actor: &Actor, id: AttachmentId) -> Result<(Attachment, Vec<u8>)> {
        let meta = self.photo_meta(id).await?;
        let (data,): (Vec<u8>,) = sqlx::query_as("SELECT data FROM attachments WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        self.audit(
            actor,
            "photo.read",
            "photo",
            Some(id.to_string()),
            Some(meta.patient_id),
            Outcome::Ok,
        )
        .await?;
        Ok((meta, data))
    }
}

#[cfg(test)]
mod tests {
    use super::sniff_image;

    #[test]
    fn images_are_recognised_by_their_bytes() {
        assert_eq!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]), Some("image/jpeg"));
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_image(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_image(b"<svg onload=alert(1)>"), None);
        assert_eq!(sniff_image(b""), None);
    }
}
