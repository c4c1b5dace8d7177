//! The patient's consent to remote consultation and to the processing of
//! their health data (Law 91/2025 on personal data protection: health data
//! is sensitive; processing it needs consent that can be shown later, and the
//! patient may withdraw it).
//!
//! Modelled on FHIR's `Consent` as Medplum uses it: each event is a row —
//! granted (an active consent) or withdrawn (the consent made inactive) —
//! written once and never changed (triggers refuse updates and deletes). Who
//! gave it (the patient, or a guardian named with their relation), which
//! version of the text was read to them, which health worker attested it,
//! where and when. The newest event is the patient's current decision; a
//! consultation can only be requested while it is "granted".

use chrono::{Datelike, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::error::{map_unique, Contested, Result, Unique};
use crate::types::{ConsentDecision, ConsentGiver, ConsentId, FacilityId, PatientId, Pii, Timestamp, UserId};
use crate::validate::{self, Errors, FieldError};
use crate::{RecordsError, Store};

/// One version of the consent text, as read to the patient.
#[derive(Clone, Copy, Debug, Serialize, JsonSchema)]
pub struct ConsentText {
    pub version: &'static str,
    pub title: &'static str,
    pub text: &'static str,
    pub title_en: &'static str,
    pub text_en: &'static str,
}

/// Every version of the text, oldest first; the last is the one in use.
/// A version, once used, is never edited: a new wording is a new version.
pub const CONSENT_TEXTS: &[ConsentText] = &[ConsentText {
    version: "2026-01",
    title: "Đồng ý khám tư vấn từ xa và xử lý dữ liệu sức khỏe",
    text: "Tôi đồng ý:\n\
1. Được bác sĩ của bệnh viện khám tư vấn qua video, có nhân viên y tế của trạm ở bên cạnh. Cuộc gọi không được ghi hình, ghi âm.\n\
2. Trạm y tế và bệnh viện thu thập, lưu giữ và sử dụng thông tin cá nhân và dữ liệu sức khỏe của tôi (họ tên, ngày sinh, số CCCD, số thẻ BHYT, các chỉ số sinh tồn, ảnh chụp gửi trong cuộc gọi, ghi chú của bác sĩ) để khám, chữa bệnh, chuyển tuyến và lưu hồ sơ bệnh án. Dữ liệu chỉ được chia sẻ với các cơ sở y tế tham gia chăm sóc tôi.\n\
Tôi có thể rút lại sự đồng ý bất cứ lúc nào bằng cách báo với trạm y tế. Khi đó sẽ không tạo thêm ca tư vấn từ xa nào cho tôi; tôi vẫn được khám tại trạm như bình thường, và hồ sơ đã có được lưu giữ theo quy định về hồ sơ bệnh án.",
    title_en: "Consent to remote consultation and to the processing of health data",
    text_en: "I agree:\n\
1. To be seen by a hospital doctor over video, with the station's health worker beside me. The call is not recorded.\n\
2. That the health station and the hospital collect, keep and use my personal details and health data (name, date of birth, citizen id, health insurance number, vital signs, photos sent during the call, the doctor's notes) to examine and treat me, refer me, and keep my medical record. The data is shared only with the health facilities taking part in my care.\n\
I may withdraw this consent at any time by telling the health station. No new remote consultation will then be made for me; I can still be seen at the station as before, and the existing record is kept as the law on medical records requires.",
}];

/// The text in use now.
pub fn current_consent_text() -> &'static ConsentText {
    &CONSENT_TEXTS[CONSENT_TEXTS.len() - 1]
}

/// Below this age a guardian gives consent (a "child" in Vietnam's Law on
/// Children is under 16; Decree 13/2023 asks a guardian's consent for a
/// child's personal data).
pub const GUARDIAN_BELOW_AGE: i32 = 16;

/// One consent event.
#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
pub struct Consent {
    pub id: ConsentId,
    pub patient_id: PatientId,
    pub decision: ConsentDecision,
    pub given_by: ConsentGiver,
    /// The guardian's name (personal data), when a guardian gave it.
    pub guardian_name: Option<Pii<String>>,
    /// The guardian's relation to the patient ("mẹ", "con trai"…).
    pub guardian_relation: Option<Pii<String>>,
    /// Which [`CONSENT_TEXTS`] version was read to them.
    pub text_version: String,
    /// The health worker who attests it was given.
    pub recorded_by: UserId,
    /// The health worker's name, for people reading it.
    pub recorded_by_name: String,
    pub facility_id: FacilityId,
    pub recorded_at: Timestamp,
}

/// What a health worker records.
// The API requires these (the document says so); the type reads them
// leniently so that every missing one is reported at once, by name.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(extend("required" = ["decision", "given_by", "text_version"]))]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    // Missing and wrong fields are reported together (`check`).
    #[serde(default)]
    #[schemars(required)]
    pub decision: Option<ConsentDecision>,
    #[serde(default)]
    #[schemars(required)]
    pub given_by: Option<ConsentGiver>,
    #[serde(default)]
    pub guardian_name: Option<Pii<String>>,
    #[serde(default)]
    pub guardian_relation: Option<Pii<String>>,
    /// The version of the text the page showed; a consent to a text that is
    /// not the one in use is refused (the page was open across an update).
    #[serde(default)]
    #[schemars(required)]
    pub text_version: Option<String>,
}

/// Why a consultation cannot be requested for a patient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentProblem {
    /// No consent was ever recorded.
    Missing,
    /// The newest event is a withdrawal.
    Withdrawn,
}

const COLUMNS: &str = "c.id, c.patient_id, c.decision, c.given_by, c.guardian_name, c.guardian_relation, c.text_version, c.recorded_by, u.display_name AS recorded_by_name, c.facility_id, c.recorded_at";

struct Checked {
    decision: ConsentDecision,
    given_by: ConsentGiver,
    guardian_name: Option<String>,
    guardian_relation: Option<String>,
    text_version: &'static str,
}

fn age_on(dob: &str, today: NaiveDate) -> Option<i32> {
    let d = NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok()?;
    let mut years = today.year() - d.year();
    if (today.month(), today.day()) < (d.month(), d.day()) {
        years -= 1;
    }
    Some(years)
}

fn check(input: &ConsentInput, patient_dob: &str) -> Result<Checked> {
    let mut e = Errors::default();
    let decision = input.decision;
    if decision.is_none() {
        e.push(FieldError::new(
            "decision",
            "required",
            "Chọn bệnh nhân đồng ý hay rút lại sự đồng ý.",
            "Choose whether the patient agrees or withdraws.",
        ));
    }
    let given_by = input.given_by;
    if given_by.is_none() {
        e.push(FieldError::new(
            "given_by",
            "required",
            "Chọn ai trả lời: bệnh nhân hay người giám hộ.",
            "Choose who answered: the patient or a guardian.",
        ));
    }
    let name = input.guardian_name.as_ref().map(|p| p.0.trim()).unwrap_or("");
    let relation = input.guardian_relation.as_ref().map(|p| p.0.trim()).unwrap_or("");
    let (mut guardian_name, mut guardian_relation) = (None, None);
    match given_by {
        Some(ConsentGiver::Guardian) => {
            match validate::text("guardian_name", name, 200) {
                Ok(v) => guardian_name = Some(v),
                Err(_) if name.is_empty() => e.push(FieldError::new(
                    "guardian_name",
                    "required",
                    "Nhập họ tên người giám hộ.",
                    "Enter the guardian's name.",
                )),
                Err(err) => e.push(err),
            }
            match validate::text("guardian_relation", relation, 100) {
                Ok(v) => guardian_relation = Some(v),
                Err(_) if relation.is_empty() => e.push(FieldError::new(
                    "guardian_relation",
                    "required",
                    "Nhập quan hệ của người giám hộ với bệnh nhân (ví dụ: mẹ, con trai).",
                    "Enter how the guardian is related to the patient (e.g. mother, son).",
                )),
                Err(err) => e.push(err),
            }
        }
        _ => {
            if !name.is_empty() || !relation.is_empty() {
                e.push(FieldError::new(
                    "guardian_name",
                    "not_for_patient",
                    "Bệnh nhân tự trả lời thì không ghi người giám hộ.",
                    "No guardian is named when the patient answers.",
                ));
            }
        }
    }
    if decision == Some(ConsentDecision::Granted) && given_by == Some(ConsentGiver::Patient) {
        if let Some(age) = age_on(patient_dob, Utc::now().date_naive()) {
            if age < GUARDIAN_BELOW_AGE {
                e.push(FieldError::new(
                    "given_by",
                    "guardian_required",
                    format!(
                        "Bệnh nhân dưới {GUARDIAN_BELOW_AGE} tuổi: cha, mẹ hoặc người giám hộ phải đồng ý."
                    ),
                    format!("The patient is under {GUARDIAN_BELOW_AGE}: a parent or guardian must consent."),
                ));
            }
        }
    }
    let current = current_consent_text();
    let text_version = match input.text_version.as_deref().map(str::trim) {
        None | Some("") => {
            e.push(FieldError::new(
                "text_version",
                "required",
                "Thiếu phiên bản văn bản đã đọc cho bệnh nhân. Hãy tải lại trang.",
                "The version of the text read to the patient is missing. Reload the page.",
            ));
            current.version
        }
        Some(v) if v == current.version => current.version,
        Some(_) => {
            e.push(FieldError::new(
                "text_version",
                "outdated_text",
                "Nội dung đồng ý đã được cập nhật. Hãy tải lại trang và đọc lại nội dung mới cho bệnh nhân.",
                "The consent text has been updated. Reload the page and read the new text to the patient.",
            ));
            current.version
        }
    };
    e.finish()?;
    Ok(Checked {
        decision: decision.unwrap_or(ConsentDecision::Granted),
        given_by: given_by.unwrap_or(ConsentGiver::Patient),
        guardian_name,
        guardian_relation,
        text_version,
    })
}

impl Store {
    /// Records a consent event for a patient of `facility`, with its audit
    /// entry (`consent.grant` or `consent.withdraw`). A withdrawal cancels,
    /// in the same transaction, the patient's consultations that have not
    /// started: nothing new happens under a consent taken back, and nothing
    /// is left half done. Returns the event and the consultations cancelled.
    pub async fn record_consent(
        &self,
        actor: &Actor,
        patient: PatientId,
        facility: FacilityId,
        input: &ConsentInput,
    ) -> Result<(Consent, Vec<crate::Consultation>)> {
        let dob: Option<String> = sqlx::query_scalar("SELECT date_of_birth FROM patients WHERE id = $1")
            .bind(patient)
            .fetch_optional(&self.pool)
            .await?;
        let dob = dob.ok_or(RecordsError::NotFound("patient"))?;
        let c = check(input, &dob)?;
        let by = actor.user_id.ok_or(RecordsError::NotFound("user"))?;
        let id = ConsentId::new();
        let mut w = self.begin_write().await?;
        let seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM consents WHERE patient_id = $1")
                .bind(patient)
                .fetch_one(&mut **w)
                .await?;
        sqlx::query(
            "INSERT INTO consents (id, patient_id, seq, decision, given_by, guardian_name, guardian_relation,
                 text_version, recorded_by, facility_id, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(id)
        .bind(patient)
        .bind(seq)
        .bind(c.decision)
        .bind(c.given_by)
        .bind(c.guardian_name.map(Pii))
        .bind(c.guardian_relation.map(Pii))
        .bind(c.text_version)
        .bind(by)
        .bind(facility)
        .bind(Timestamp::now())
        .execute(&mut **w)
        .await
        // Two events for one patient at once: the later one is told to try again.
        .map_err(|e| match map_unique(e, &[("seq", Unique::ConsentSeq)]) {
            RecordsError::Duplicate(_) => RecordsError::AlreadyTaken(Contested::Consent),
            e => e,
        })?;
        let action = match c.decision {
            ConsentDecision::Granted => "consent.grant",
            ConsentDecision::Withdrawn => "consent.withdraw",
        };
        record(
            &mut w,
            actor,
            action,
            "consent",
            Some(id.to_string()),
            Some(patient),
            Outcome::Ok,
        )
        .await?;
        let row = sqlx::query_as::<_, Consent>(&format!(
            "SELECT {COLUMNS} FROM consents c JOIN users u ON u.id = c.recorded_by WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut **w)
        .await?;
        let mut cancelled = Vec::new();
        if c.decision == ConsentDecision::Withdrawn {
            let not_started: Vec<crate::ConsultationId> = sqlx::query_scalar(&format!(
                "SELECT id FROM consultations WHERE patient_id = $1 AND state IN {}",
                crate::lifecycle::sql_list(crate::lifecycle::NOT_STARTED)
            ))
            .bind(patient)
            .fetch_all(&mut **w)
            .await?;
            for id in not_started {
                cancelled.push(
                    crate::consultations::transition_in(
                        &mut w,
                        actor,
                        id,
                        crate::ConsultationState::Cancelled,
                    )
                    .await?,
                );
            }
        }
        w.commit().await?;
        Ok((row, cancelled))
    }

    /// A patient's consent events, newest first, with an audit entry.
    pub async fn consents(&self, actor: &Actor, patient: PatientId) -> Result<Vec<Consent>> {
        let rows = sqlx::query_as::<_, Consent>(&format!(
            "SELECT {COLUMNS} FROM consents c JOIN users u ON u.id = c.recorded_by
             WHERE c.patient_id = $1 ORDER BY c.seq DESC LIMIT 200"
        ))
        .bind(patient)
        .fetch_all(&self.pool)
        .await?;
        self.audit(
            actor,
            "consent.read",
            "patient",
            Some(patient.to_string()),
            Some(patient),
            Outcome::Ok,
        )
        .await?;
        Ok(rows)
    }
}

/// Inside a write transaction: refuses unless the patient's newest consent
/// event is a grant (read in the same transaction as the write it guards).
pub(crate) async fn require_granted(
    tx: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    patient: PatientId,
) -> Result<()> {
    let newest: Option<ConsentDecision> =
        sqlx::query_scalar("SELECT decision FROM consents WHERE patient_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(patient)
            .fetch_optional(&mut **tx)
            .await?;
    match newest {
        Some(ConsentDecision::Granted) => Ok(()),
        Some(ConsentDecision::Withdrawn) => Err(RecordsError::Consent(ConsentProblem::Withdrawn)),
        None => Err(RecordsError::Consent(ConsentProblem::Missing)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(decision: ConsentDecision, by: ConsentGiver) -> ConsentInput {
        ConsentInput {
            decision: Some(decision),
            given_by: Some(by),
            guardian_name: None,
            guardian_relation: None,
            text_version: Some(current_consent_text().version.to_owned()),
        }
    }

    fn codes(r: Result<Checked>) -> Vec<(String, &'static str)> {
        match r {
            Err(RecordsError::Invalid(v)) => v.into_iter().map(|e| (e.field, e.code)).collect(),
            Err(e) => panic!("{e}"),
            Ok(_) => vec![],
        }
    }

    #[test]
    fn an_empty_consent_names_every_missing_field() {
        let empty = ConsentInput {
            decision: None,
            given_by: None,
            guardian_name: None,
            guardian_relation: None,
            text_version: None,
        };
        assert_eq!(
            codes(check(&empty, "1980-01-01")),
            [
                ("decision".to_owned(), "required"),
                ("given_by".to_owned(), "required"),
                ("text_version".to_owned(), "required")
            ]
        );
    }

    #[test]
    fn a_guardian_is_named_and_a_child_needs_one() {
        let g = input(ConsentDecision::Granted, ConsentGiver::Guardian);
        assert_eq!(
            codes(check(&g, "2020-05-01")),
            [
                ("guardian_name".to_owned(), "required"),
                ("guardian_relation".to_owned(), "required")
            ]
        );
        let child = input(ConsentDecision::Granted, ConsentGiver::Patient);
        assert_eq!(
            codes(check(&child, "2020-05-01")),
            [("given_by".to_owned(), "guardian_required")]
        );
        // An adult, and a child's own withdrawal, need no guardian.
        assert!(check(&child, "1980-05-01").is_ok());
        assert!(check(
            &input(ConsentDecision::Withdrawn, ConsentGiver::Patient),
            "2020-05-01"
        )
        .is_ok());
    }

    #[test]
    fn an_old_text_is_refused() {
        let mut old = input(ConsentDecision::Granted, ConsentGiver::Patient);
        old.text_version = Some("2019-01".into());
        assert_eq!(
            codes(check(&old, "1980-01-01")),
            [("text_version".to_owned(), "outdated_text")]
        );
    }

    #[test]
    fn age_counts_whole_years() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 10).unwrap();
        assert_eq!(age_on("2010-03-10", today), Some(16));
        assert_eq!(age_on("2010-03-11", today), Some(15));
        assert_eq!(age_on("not a date", today), None);
    }
}
