//! Patients: registered at a commune station, seen by doctors through
//! consultations. Every read and write leaves an audit entry.

use chrono::{NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::error::{map_unique, Result, Unique};
use crate::types::{FacilityId, PatientId, Pii, Sex, Timestamp, UserId};
use crate::validate::{self, Errors, FieldError};
use crate::{RecordsError, Store};

#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
pub struct Patient {
    pub id: PatientId,
    /// The commune station that registered the patient.
    pub facility_id: FacilityId,
    pub full_name: Pii<String>,
    /// `YYYY-MM-DD`.
    pub date_of_birth: Pii<String>,
    pub sex: Sex,
    pub phone: Option<Pii<String>>,
    pub address: Option<Pii<String>>,
    /// 12-digit citizen id (căn cước công dân).
    pub cccd: Option<Pii<String>>,
    /// Health insurance number (mã thẻ BHYT).
    pub bhyt: Option<Pii<String>>,
    /// Increases with every update; an update names the version it edits.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a health worker types to register (or correct) a patient.
// The API requires these (the document says so); the type reads them
// leniently so that every missing one is reported at once, by name.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[schemars(extend("required" = ["full_name", "date_of_birth", "sex"]))]
#[serde(deny_unknown_fields)]
pub struct PatientInput {
    // Missing, empty and wrong are reported together, field by field
    // (`clean`), not as the first field the parser could not read.
    #[serde(default)]
    pub full_name: Pii<String>,
    #[serde(default)]
    pub date_of_birth: Pii<String>,
    #[serde(default)]
    #[schemars(required)]
    pub sex: Option<Sex>,
    #[serde(default)]
    pub phone: Option<Pii<String>>,
    #[serde(default)]
    pub address: Option<Pii<String>>,
    #[serde(default)]
    pub cccd: Option<Pii<String>>,
    #[serde(default)]
    pub bhyt: Option<Pii<String>>,
}

/// Which patients a caller may see (decided by the caller's guard).
#[derive(Clone, Copy, Debug)]
pub enum PatientScope {
    /// Patients registered at this station.
    Facility(FacilityId),
    /// Patients with a consultation this doctor takes part in, or one that
    /// waits in this hospital's queue.
    Doctor { doctor: UserId, hospital: FacilityId },
}

struct Clean {
    full_name: String,
    search_name: String,
    dob: NaiveDate,
    sex: Sex,
    phone: Option<String>,
    address: Option<String>,
    cccd: Option<String>,
    bhyt: Option<String>,
}

fn non_empty(v: &Option<Pii<String>>) -> Option<&str> {
    v.as_ref().map(|p| p.0.trim()).filter(|s| !s.is_empty())
}

fn clean(p: &PatientInput) -> Result<Clean> {
    let mut errs = Errors::default();
    let today = Utc::now().date_naive();
    let name = validate::text("full_name", &p.full_name.0, 200);
    let dob = validate::date_of_birth(&p.date_of_birth.0, today);
    let phone = non_empty(&p.phone).map(validate::phone).transpose();
    let address = non_empty(&p.address)
        .map(|a| validate::optional_text("address", a, 500))
        .transpose();
    let sex = p.sex.ok_or_else(|| {
        FieldError::new(
            "sex",
            "required",
            "Chọn giới tính của bệnh nhân.",
            "Choose the patient's sex.",
        )
    });
    let cccd = non_empty(&p.cccd)
        .map(|c| validate::cccd(c, dob.as_ref().ok().copied(), p.sex))
        .transpose();
    let bhyt = non_empty(&p.bhyt).map(validate::bhyt).transpose();
    macro_rules! take {
        ($r:expr) => {
            match $r {
                Ok(v) => Some(v),
                Err(e) => {
                    errs.push(e);
                    None
                }
            }
        };
    }
    let (name, dob, sex, phone, address, cccd, bhyt) = (
        take!(name),
        take!(dob),
        take!(sex),
        take!(phone),
        take!(address),
        take!(cccd),
        take!(bhyt),
    );
    errs.finish()?;
    // Every `take!` above succeeded, or `finish` returned the errors.
    let full_name = name.unwrap_or_default();
    Ok(Clean {
        search_name: validate::fold_for_search(&full_name),
        full_name,
        dob: dob.unwrap_or_default(),
        sex: sex.unwrap_or(Sex::Other),
        phone: phone.flatten(),
        address: address.flatten(),
        cccd: cccd.flatten(),
        bhyt: bhyt.flatten(),
    })
}

const COLUMNS: &str = "id, facility_id, full_name, date_of_birth, sex, phone, address, cccd, bhyt, version, created_at, updated_at";

/// SQL condition (on table alias `p`) limiting patients to a scope; binds
/// `$1` and `$2`.
fn scope_sql(scope: &PatientScope) -> &'static str {
    match scope {
        PatientScope::Facility(_) => "p.facility_id = $1 AND $2 IS NULL",
        PatientScope::Doctor { .. } => {
            "EXISTS (SELECT 1 FROM consultations c WHERE c.patient_id = p.id
                AND (c.doctor_id = $1 OR (c.hospital_id = $2 AND c.state = 'requested' AND c.doctor_id IS NULL)))"
        }
    }
}

fn scope_binds(scope: &PatientScope) -> (String, Option<String>) {
    match scope {
        PatientScope::Facility(f) => (f.to_string(), None),
        PatientScope::Doctor { doctor, hospital } => (doctor.to_string(), Some(hospital.to_string())),
    }
}

impl Store {
    /// Registers a patient at `facility` (the health worker's station).
    pub async fn create_patient(
        &self,
        actor: &Actor,
        facility: FacilityId,
        input: &PatientInput,
    ) -> Result<Patient> {
        let c = clean(input)?;
        let id = PatientId::new();
        let now = Timestamp::now();
        let mut w = self.begin_write().await?;
        let p = sqlx::query_as::<_, Patient>(&format!(
            "INSERT INTO patients (id, facility_id, full_name, search_name, date_of_birth, sex, phone, address, cccd, bhyt, version, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $12, $12) RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(facility)
        .bind(&c.full_name)
        .bind(&c.search_name)
        .bind(c.dob.to_string())
        .bind(c.sex)
        .bind(c.phone)
        .bind(c.address)
        .bind(c.cccd)
        .bind(c.bhyt)
        .bind(actor.user_id)
        .bind(now)
        .fetch_one(&mut **w)
        .await
        .map_err(|e| map_unique(e, &[("cccd", Unique::Cccd)]))?;
        record(
            &mut w,
            actor,
            "patient.create",
            "patient",
            Some(id.to_string()),
            Some(id),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(p)
    }

    /// Replaces a patient's details; `version` must be the current one.
    pub async fn update_patient(
        &self,
        actor: &Actor,
        id: PatientId,
        version: i64,
        input: &PatientInput,
    ) -> Result<Patient> {
        let c = clean(input)?;
        let mut w = self.begin_write().await?;
        let updated = sqlx::query_as::<_, Patient>(&format!(
            "UPDATE patients SET full_name = $3, search_name = $4, date_of_birth = $5, sex = $6, phone = $7,
                 address = $8, cccd = $9, bhyt = $10, version = version + 1, updated_at = $11
             WHERE id = $1 AND version = $2 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(version)
        .bind(&c.full_name)
        .bind(&c.search_name)
        .bind(c.dob.to_string())
        .bind(c.sex)
        .bind(c.phone)
        .bind(c.address)
        .bind(c.cccd)
        .bind(c.bhyt)
        .bind(Timestamp::now())
        .fetch_optional(&mut **w)
        .await
        .map_err(|e| map_unique(e, &[("cccd", Unique::Cccd)]))?;
        let Some(p) = updated else {
            let current: Option<(i64,)> = sqlx::query_as("SELECT version FROM patients WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut **w)
                .await?;
            return Err(match current {
                None => RecordsError::NotFound("patient"),
                Some((current,)) => RecordsError::VersionConflict { current },
            });
        };
        record(
            &mut w,
            actor,
            "patient.update",
            "patient",
            Some(id.to_string()),
            Some(id),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(p)
    }

    /// Reads a patient for display, with an audit entry.
    pub async fn read_patient(&self, actor: &Actor, id: PatientId) -> Result<Patient> {
        let mut w = self.begin_write().await?;
        let p = sqlx::query_as::<_, Patient>(&format!("SELECT {COLUMNS} FROM patients WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut **w)
            .await?
            .ok_or(RecordsError::NotFound("patient"))?;
        record(
            &mut w,
            actor,
            "patient.read",
            "patient",
            Some(id.to_string()),
            Some(id),
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(p)
    }

    /// The station a patient belongs to (for access checks; not audited
    /// because no personal data leaves the store).
    /// The patient holding this citizen id (as registration writes it), and their facility.
    pub async fn cccd_holder(&self, cccd: &str) -> Result<Option<(PatientId, FacilityId)>> {
        let Ok(cccd) = validate::cccd(cccd, None, None) else {
            return Ok(None);
        };
        Ok(
            sqlx::query_as("SELECT id, facility_id FROM patients WHERE cccd = $1")
                .bind(cccd)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The patient holding this health insurance number (as registration
    /// writes it), and their facility: the FHIR export's identifier search.
    pub async fn bhyt_holder(&self, bhyt: &str) -> Result<Option<(PatientId, FacilityId)>> {
        let Ok(bhyt) = validate::bhyt(bhyt) else {
            return Ok(None);
        };
        Ok(
            sqlx::query_as("SELECT id, facility_id FROM patients WHERE bhyt = $1")
                .bind(bhyt)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn patient_facility(&self, id: PatientId) -> Result<FacilityId> {
        let row: Option<(FacilityId,)> = sqlx::query_as("SELECT facility_id FROM patients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.0).ok_or(RecordsError::NotFound("patient"))
    }

    /// Whether a patient is within a scope (for access checks).
    pub async fn patient_in_scope(&self, id: PatientId, scope: &PatientScope) -> Result<bool> {
        let (a, b) = scope_binds(scope);
        let row: Option<(i64,)> = sqlx::query_as(&format!(
            "SELECT 1 FROM patients p WHERE {} AND p.id = $3",
            scope_sql(scope)
        ))
        .bind(a)
        .bind(b)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Finds patients in a scope by name (accents optional), phone or CCCD.
    /// Each patient returned gets an audit entry.
    pub async fn search_patients(
        &self,
        actor: &Actor,
        scope: &PatientScope,
        query: &str,
        limit: i64,
    ) -> Result<Vec<Patient>> {
        let q: String = query.chars().filter(|c| !validate::invisible(*c)).collect();
        let digits: String = q
            .chars()
            .filter(|c| !matches!(c, ' ' | '.' | '-' | '+'))
            .collect();
        let (a, b) = scope_binds(scope);
        let scope_cond = scope_sql(scope);
        let cols = COLUMNS
            .split(", ")
            .map(|c| format!("p.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let limit = limit.clamp(1, 100);
        let rows = if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
            // Digits: a CCCD (exact) or a phone number (normalized, prefix).
            let phone = match digits.strip_prefix("84") {
                Some(rest) if rest.len() == 9 => format!("0{rest}"),
                _ => digits.clone(),
            };
            sqlx::query_as::<_, Patient>(&format!(
                "SELECT {cols} FROM patients p WHERE {scope_cond}
                   AND (p.cccd = $3 OR p.phone LIKE $4 ESCAPE '\\')
                 ORDER BY p.search_name LIMIT $5"
            ))
            .bind(a)
            .bind(b)
            .bind(digits.clone())
            .bind(format!("{}%", escape_like(&phone)))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
        } else {
            // Each word, in any order, without accents: "nguyen dao" finds
            // "Nguyễn Thị Đào". At most eight words are looked at.
            let folded = validate::fold_for_search(&q);
            let words: Vec<&str> = folded.split(' ').filter(|w| !w.is_empty()).take(8).collect();
            let conds = (0..words.len())
                .map(|i| format!("p.search_name LIKE ${} ESCAPE '\\'", i + 3))
                .collect::<Vec<_>>()
                .join(" AND ");
            let sql = format!(
                "SELECT {cols} FROM patients p WHERE {scope_cond} AND {conds}
                 ORDER BY p.search_name LIMIT ${}",
                words.len() + 3
            );
            let mut query = sqlx::query_as::<_, Patient>(&sql).bind(a).bind(b);
            for w in &words {
                query = query.bind(format!("%{}%", escape_like(w)));
            }
            query.bind(limit).fetch_all(&self.pool).await?
        };
        let mut w = self.begin_write().await?;
        for p in &rows {
            record(
                &mut w,
                actor,
                "patient.search",
                "patient",
                Some(p.id.to_string()),
                Some(p.id),
                Outcome::Ok,
            )
            .await?;
        }
        w.commit().await?;
        Ok(rows)
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
