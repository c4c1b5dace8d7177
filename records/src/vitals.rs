//! Vital signs, with units in the field names and plausibility ranges.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::error::Result;
use crate::types::{ConsultationId, PatientId, Timestamp, UserId, VitalsId};
use crate::validate::{in_range, Errors, FieldError};
use crate::{RecordsError, Store};

/// One set of measurements. Every value is optional; at least one is needed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, FromRow, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Measurements {
    /// Body temperature, °C.
    #[serde(default)]
    pub temperature_c: Option<f64>,
    /// Heart rate, beats per minute.
    #[serde(default)]
    pub pulse_bpm: Option<i64>,
    /// Blood pressure, mmHg.
    #[serde(default)]
    pub systolic_mmhg: Option<i64>,
    #[serde(default)]
    pub diastolic_mmhg: Option<i64>,
    /// Breaths per minute.
    #[serde(default)]
    pub respiratory_rate: Option<i64>,
    /// Oxygen saturation, %.
    #[serde(default)]
    pub spo2_pct: Option<i64>,
    /// Body weight, kg.
    #[serde(default)]
    pub weight_kg: Option<f64>,
}

#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
pub struct Vitals {
    pub id: VitalsId,
    pub patient_id: PatientId,
    pub consultation_id: Option<ConsultationId>,
    pub recorded_by: UserId,
    pub recorded_at: Timestamp,
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub measurements: Measurements,
}

pub(crate) fn check(m: &Measurements) -> Result<()> {
    let mut e = Errors::default();
    if let Some(v) = m.temperature_c {
        e.check(in_range("temperature_c", v, 30.0, 45.0, "°C").map(drop));
    }
    if let Some(v) = m.pulse_bpm {
        e.check(in_range("pulse_bpm", v, 20, 250, "lần/phút").map(drop));
    }
    if let Some(v) = m.systolic_mmhg {
        e.check(in_range("systolic_mmhg", v, 50, 280, "mmHg").map(drop));
    }
    if let Some(v) = m.diastolic_mmhg {
        e.check(in_range("diastolic_mmhg", v, 20, 180, "mmHg").map(drop));
    }
    match (m.systolic_mmhg, m.diastolic_mmhg) {
        (Some(s), Some(d)) if d >= s => e.push(FieldError::new(
            "diastolic_mmhg",
            "diastolic_not_below_systolic",
            "Huyết áp tâm trương phải thấp hơn tâm thu. Có thể hai số bị đảo.",
            "Diastolic pressure must be below systolic. The two may be swapped.",
        )),
        (Some(_), None) | (None, Some(_)) => e.push(FieldError::new(
            "diastolic_mmhg",
            "blood_pressure_incomplete",
            "Huyết áp cần cả số tâm thu và tâm trương.",
            "Blood pressure needs both systolic and diastolic values.",
        )),
        _ => {}
    }
    if let Some(v) = m.respiratory_rate {
        e.check(in_range("respiratory_rate", v, 4, 80, "lần/phút").map(drop));
    }
    if let Some(v) = m.spo2_pct {
        e.check(in_range("spo2_pct", v, 50, 100, "%").map(drop));
    }
    if let Some(v) = m.weight_kg {
        e.check(in_range("weight_kg", v, 0.3, 350.0, "kg").map(drop));
    }
    if m == &Measurements::default() {
        e.push(FieldError::new(
            "vitals",
            "empty",
            "Hãy nhập ít nhất một chỉ số sinh tồn.",
            "Enter at least one measurement.",
        ));
    }
    for (field, v) in [("temperature_c", m.temperature_c), ("weight_kg", m.weight_kg)] {
        if v.is_some_and(|v| !v.is_finite()) {
            e.push(FieldError::new(
                field,
                "not_a_number",
                "Giá trị không phải là số.",
                "Not a number.",
            ));
        }
    }
    e.finish()
}

const COLUMNS: &str = "id, patient_id, consultation_id, recorded_by, recorded_at, temperature_c, pulse_bpm, systolic_mmhg, diastolic_mmhg, respiratory_rate, spo2_pct, weight_kg";

impl Store {
    pub async fn record_vitals(
        &self,
        actor: &Actor,
        patient: PatientId,
        consultation: Option<ConsultationId>,
        m: &Measurements,
    ) -> Result<Vitals> {
        check(m)?;
        let mut w = self.begin_write().await?;
        let v = insert_vitals(&mut w, actor, patient, consultation, m).await?;
        w.commit().await?;
        Ok(v)
    }

    /// One set of vitals, without an audit entry: for the access check
    /// before it is shown (the caller audits what it shows).
    pub async fn vitals(&self, id: VitalsId) -> Result<Vitals> {
        sqlx::query_as::<_, Vitals>(&format!("SELECT {COLUMNS} FROM vitals WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RecordsError::NotFound("vitals"))
    }

    /// A patient's vitals, newest first, with an audit entry.
    pub async fn patient_vitals(&self, actor: &Actor, patient: PatientId) -> Result<Vec<Vitals>> {
        let rows = sqlx::query_as::<_, Vitals>(&format!(
            "SELECT {COLUMNS} FROM vitals WHERE patient_id = $1 ORDER BY recorded_at DESC, id LIMIT 200"
        ))
        .bind(patient)
        .fetch_all(&self.pool)
        .await?;
        self.audit(
            actor,
            "vitals.read",
            "patient",
            Some(patient.to_string()),
            Some(patient),
            Outcome::Ok,
        )
        .await?;
        Ok(rows)
    }
}

/// Writes checked measurements and their audit entry inside a transaction.
pub(crate) async fn insert_vitals(
    tx: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    actor: &Actor,
    patient: PatientId,
    consultation: Option<ConsultationId>,
    m: &Measurements,
) -> Result<Vitals> {
    let by = actor.user_id.ok_or(RecordsError::NotFound("user"))?;
    let id = VitalsId::new();
    let v = sqlx::query_as::<_, Vitals>(&format!(
        "INSERT INTO vitals ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(patient)
    .bind(consultation)
    .bind(by)
    .bind(Timestamp::now())
    .bind(m.temperature_c)
    .bind(m.pulse_bpm)
    .bind(m.systolic_mmhg)
    .bind(m.diastolic_mmhg)
    .bind(m.respiratory_rate)
    .bind(m.spo2_pct)
    .bind(m.weight_kg)
    .fetch_one(&mut **tx)
    .await?;
    record(
        tx,
        actor,
        "vitals.create",
        "vitals",
        Some(id.to_string()),
        Some(patient),
        Outcome::Ok,
    )
    .await?;
    Ok(v)
}
