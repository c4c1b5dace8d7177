//! Consultation notes (SOAP, ICD-10 codes, disposition).
//!
//! A note is a draft until its author signs it. Drafts are saved as the
//! doctor types: each save names the version it was based on, so two tabs
//! cannot silently overwrite each other, and repeating a save that already
//! went through is answered with the saved note (autosave retries are safe).
//! A signed note never changes — the database refuses it too; an amendment is
//! a new version that points to the note it replaces.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::error::{map_unique, Contested, Result, Unique};
use crate::types::{ConsultationId, Disposition, NoteId, NoteStatus, PatientId, Pii, Timestamp, UserId};
use crate::validate::{self, Errors, FieldError};
use crate::{RecordsError, Store};

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Note {
    pub id: NoteId,
    pub consultation_id: ConsultationId,
    pub patient_id: PatientId,
    pub author_id: UserId,
    pub status: NoteStatus,
    /// Edit counter of this note version, for optimistic concurrency.
    pub version: i64,
    #[serde(flatten)]
    pub content: NoteContent,
    /// The signed note this one amends, if it is an amendment.
    pub amends_note_id: Option<NoteId>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub signed_at: Option<Timestamp>,
}

/// What the doctor writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteContent {
    #[serde(default)]
    pub subjective: Pii<String>,
    #[serde(default)]
    pub objective: Pii<String>,
    #[serde(default)]
    pub assessment: Pii<String>,
    #[serde(default)]
    pub plan: Pii<String>,
    #[serde(default)]
    pub icd10_codes: Vec<String>,
    #[serde(default)]
    pub disposition: Option<Disposition>,
}

#[derive(FromRow)]
struct Row {
    id: NoteId,
    consultation_id: ConsultationId,
    patient_id: PatientId,
    author_id: UserId,
    status: NoteStatus,
    version: i64,
    subjective: Pii<String>,
    objective: Pii<String>,
    assessment: Pii<String>,
    plan: Pii<String>,
    icd10_codes: String,
    disposition: Option<Disposition>,
    amends_note_id: Option<NoteId>,
    created_at: Timestamp,
    updated_at: Timestamp,
    signed_at: Option<Timestamp>,
}

impl TryFrom<Row> for Note {
    type Error = RecordsError;
    fn try_from(r: Row) -> Result<Note> {
        let icd10_codes = serde_json::from_str(&r.icd10_codes)
            .map_err(|e| RecordsError::Corrupt(format!("note {} icd10_codes: {e}", r.id)))?;
        Ok(Note {
            id: r.id,
            consultation_id: r.consultation_id,
            patient_id: r.patient_id,
            author_id: r.author_id,
            status: r.status,
            version: r.version,
            content: NoteContent {
                subjective: r.subjective,
                objective: r.objective,
                assessment: r.assessment,
                plan: r.plan,
                icd10_codes,
                disposition: r.disposition,
            },
            amends_note_id: r.amends_note_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            signed_at: r.signed_at,
        })
    }
}

const COLUMNS: &str = "id, consultation_id, patient_id, author_id, status, version, subjective, objective, assessment, plan, icd10_codes, disposition, amends_note_id, created_at, updated_at, signed_at";

/// Each SOAP section may hold a long note, not a novel.
const MAX_SECTION: usize = 20_000;

fn clean(c: &NoteContent) -> Result<NoteContent> {
    let mut errs = Errors::default();
    let mut section = |name: &str, v: &Pii<String>| match validate::optional_text(name, &v.0, MAX_SECTION) {
        Ok(s) => Pii(s),
        Err(e) => {
            errs.push(e);
            Pii(String::new())
        }
    };
    let subjective = section("subjective", &c.subjective);
    let objective = section("objective", &c.objective);
    let assessment = section("assessment", &c.assessment);
    let plan = section("plan", &c.plan);
    let mut codes = Vec::new();
    if c.icd10_codes.len() > 20 {
        errs.push(FieldError::new(
            "icd10_codes",
            "too_many",
            "Tối đa 20 mã ICD-10.",
            "At most 20 ICD-10 codes.",
        ));
    }
    for (i, code) in c.icd10_codes.iter().enumerate() {
        match validate::icd10(&format!("icd10_codes[{i}]"), code) {
            Ok(code) if !codes.contains(&code) => codes.push(code),
            Ok(_) => {}
            Err(e) => errs.push(e),
        }
    }
    errs.finish()?;
    Ok(NoteContent {
        subjective,
        objective,
        assessment,
        plan,
        icd10_codes: codes,
        disposition: c.disposition,
    })
}

impl Store {
    async fn note_row(&self, id: NoteId) -> Result<Note> {
        sqlx::query_as::<_, Row>(&format!("SELECT {COLUMNS} FROM notes WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RecordsError::NotFound("note"))?
            .try_into()
    }

    /// A note's ids and status, for access checks (no text, not audited).
    pub async fn note_meta(&self, id: NoteId) -> Result<(ConsultationId, PatientId, UserId, NoteStatus)> {
        let n = self.note_row(id).await?;
        Ok((n.consultation_id, n.patient_id, n.author_id, n.status))
    }

    /// Starts the note of a consultation (the first version, a draft).
    pub async fn create_note(
        &self,
        actor: &Actor,
        consultation: ConsultationId,
        patient: PatientId,
        author: UserId,
        content: &NoteContent,
    ) -> Result<Note> {
        let c = clean(content)?;
        self.insert_note(actor, consultation, patient, author, &c, None, "note.create")
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_note(
        &self,
        actor: &Actor,
        consultation: ConsultationId,
        patient: PatientId,
        author: UserId,
        c: &NoteContent,
        amends: Option<NoteId>,
        action: &str,
    ) -> Result<Note> {
        let id = NoteId::new();
        let now = Timestamp::now();
        let mut w = self.begin_write().await?;
        let note: Note = sqlx::query_as::<_, Row>(&format!(
            "INSERT INTO notes ({COLUMNS}) VALUES ($1, $2, $3, $4, 'draft', 1, $5, $6, $7, $8, $9, $10, $11, $12, $12, NULL)
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(consultation)
        .bind(patient)
        .bind(author)
        .bind(&c.subjective)
        .bind(&c.objective)
        .bind(&c.assessment)
        .bind(&c.plan)
        .bind(serde_json::to_string(&c.icd10_codes).map_err(|e| RecordsError::Corrupt(e.to_string()))?)
        .bind(c.disposition)
        .bind(amends)
        .bind(now)
        .fetch_one(&mut **w)
        .await
        .map_err(|e| map_unique(
                e,
                &[
                    ("amends_note_id", Unique::NoteAmendment),
                    ("notes_one_original", Unique::ConsultationNote),
                    ("consultation_id", Unique::ConsultationNote),
                ],
            ))?
        .try_into()?;
        record(
            &mut w,
            actor,
            action,
            "note",
            Some(id.to_string()),
            Some(patient),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(note)
    }

    /// Saves a draft. `base_version` is the version the editor started from.
    pub async fn update_note(
        &self,
        actor: &Actor,
        id: NoteId,
        base_version: i64,
        content: &NoteContent,
    ) -> Result<Note> {
        let c = clean(content)?;
        let mut w = self.begin_write().await?;
        let updated = sqlx::query_as::<_, Row>(&format!(
            "UPDATE notes SET subjective = $3, objective = $4, assessment = $5, plan = $6, icd10_codes = $7,
                 disposition = $8, version = version + 1, updated_at = $9
             WHERE id = $1 AND version = $2 AND status = 'draft' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(base_version)
        .bind(&c.subjective)
        .bind(&c.objective)
        .bind(&c.assessment)
        .bind(&c.plan)
        .bind(serde_json::to_string(&c.icd10_codes).map_err(|e| RecordsError::Corrupt(e.to_string()))?)
        .bind(c.disposition)
        .bind(Timestamp::now())
        .fetch_optional(&mut **w)
        .await
        .map_err(|e| map_unique(e, &[]))?;
        let note: Note = match updated {
            Some(row) => row.try_into()?,
            None => {
                drop(w);
                let current = self.note_row(id).await?;
                // The same save, repeated after its answer was lost: it
                // already went through, so answer with the saved note.
                if current.version == base_version + 1 && current.content == c {
                    return Ok(current);
                }
                return Err(if current.status == NoteStatus::Signed {
                    RecordsError::Immutable("signed note")
                } else {
                    RecordsError::VersionConflict {
                        current: current.version,
                    }
                });
            }
        };
        record(
            &mut w,
            actor,
            "note.update",
            "note",
            Some(id.to_string()),
            Some(note.patient_id),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(note)
    }

    /// Signs a draft (at `base_version`). A signature needs an assessment and a
    /// disposition. Signing an already signed note at the same version is
    /// answered with the note (a repeated click).
    pub async fn sign_note(&self, actor: &Actor, id: NoteId, base_version: i64) -> Result<Note> {
        let current = self.note_row(id).await?;
        if current.status == NoteStatus::Signed {
            return if current.version == base_version {
                Ok(current)
            } else {
                Err(RecordsError::Immutable("signed note"))
            };
        }
        let mut errs = Errors::default();
        if current.content.assessment.0.trim().is_empty() {
            errs.push(FieldError::new(
                "assessment",
                "required_to_sign",
                "Cần có phần đánh giá (A) trước khi ký.",
                "An assessment is needed before signing.",
            ));
        }
        if current.content.disposition.is_none() {
            errs.push(FieldError::new(
                "disposition",
                "required_to_sign",
                "Cần chọn hướng xử trí trước khi ký.",
                "Choose a disposition before signing.",
            ));
        }
        errs.finish()?;
        let mut w = self.begin_write().await?;
        let signed = sqlx::query_as::<_, Row>(&format!(
            "UPDATE notes SET status = 'signed', signed_at = $3, updated_at = $3
             WHERE id = $1 AND version = $2 AND status = 'draft' RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(base_version)
        .bind(Timestamp::now())
        .fetch_optional(&mut **w)
        .await?;
        let Some(row) = signed else {
            return Err(RecordsError::VersionConflict {
                current: current.version,
            });
        };
        let note: Note = row.try_into()?;
        record(
            &mut w,
            actor,
            "note.sign",
            "note",
            Some(id.to_string()),
            Some(note.patient_id),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(note)
    }

    /// Starts an amendment of a signed note: a new draft with the same
    /// content that points to it. Only the latest version can be amended.
    pub async fn amend_note(&self, actor: &Actor, id: NoteId, author: UserId) -> Result<Note> {
        let signed = self.note_row(id).await?;
        if signed.status != NoteStatus::Signed {
            return Err(RecordsError::field(FieldError::new(
                "note_id",
                "not_signed",
                "Chỉ sửa đổi được ghi chú đã ký; bản nháp thì cứ sửa trực tiếp.",
                "Only a signed note can be amended; edit a draft directly.",
            )));
        }
        self.insert_note(
            actor,
            signed.consultation_id,
            signed.patient_id,
            author,
            &signed.content,
            Some(id),
            "note.amend",
        )
        .await
        .map_err(|e| match e {
            RecordsError::Duplicate(_) => RecordsError::AlreadyTaken(Contested::NoteAmendment),
            e => e,
        })
    }

    /// Reads one note version, with an audit entry.
    pub async fn read_note(&self, actor: &Actor, id: NoteId) -> Result<Note> {
        let n = self.note_row(id).await?;
        self.audit(
            actor,
            "note.read",
            "note",
            Some(id.to_string()),
            Some(n.patient_id),
            Outcome::Ok,
        )
        .await?;
        Ok(n)
    }

    /// Every note version of a consultation, oldest first, with an audit entry.
    pub async fn consultation_notes(
        &self,
        actor: &Actor,
        consultation: ConsultationId,
        signed_only: bool,
    ) -> Result<Vec<Note>> {
        let rows = sqlx::query_as::<_, Row>(&format!(
            "SELECT {COLUMNS} FROM notes WHERE consultation_id = $1 AND ($2 = 0 OR status = 'signed') ORDER BY created_at, id"
        ))
        .bind(consultation)
        .bind(i64::from(signed_only))
        .fetch_all(&self.pool)
        .await?;
        let notes = rows.into_iter().map(Note::try_from).collect::<Result<Vec<_>>>()?;
        if notes.is_empty() {
            // Nothing read, nothing to write: no turn at the writer.
            return Ok(notes);
        }
        let mut w = self.begin_write().await?;
        for n in &notes {
            record(
                &mut w,
                actor,
                "note.read",
                "note",
                Some(n.id.to_string()),
                Some(n.patient_id),
                Outcome::Ok,
            )
            .await?;
        }
        w.commit().await?;
        Ok(notes)
    }
}
