//! Facilities: commune stations and the hospitals they refer to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::error::{map_unique, Result, Unique};
use crate::types::{FacilityId, FacilityKind, Timestamp};
use crate::validate::{self, Errors, FieldError};
use crate::{RecordsError, Store};

#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
pub struct Facility {
    pub id: FacilityId,
    /// Short unique code (the ministry's facility code where there is one).
    pub code: String,
    pub name: String,
    pub kind: FacilityKind,
    /// For a commune station: the hospital its consultations go to.
    pub referral_hospital_id: Option<FacilityId>,
    pub province: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A facility to create, or the new content of one.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FacilityInput {
    pub code: String,
    pub name: String,
    pub kind: FacilityKind,
    #[serde(default)]
    pub referral_hospital_id: Option<FacilityId>,
    pub province: String,
}

const COLUMNS: &str = "id, code, name, kind, referral_hospital_id, province, created_at, updated_at";

impl Store {
    async fn check_facility_input(&self, id: Option<FacilityId>, f: &FacilityInput) -> Result<FacilityInput> {
        let mut errs = Errors::default();
        let code = validate::text("code", &f.code, 32);
        let name = validate::text("name", &f.name, 200);
        let province = validate::text("province", &f.province, 100);
        match (f.kind, f.referral_hospital_id) {
            (FacilityKind::CommuneStation, None) => errs.push(FieldError::new(
                "referral_hospital_id",
                "required",
                "Trạm y tế xã phải có bệnh viện tuyến trên để chuyển ca tư vấn.",
                "A commune station needs the hospital it refers to.",
            )),
            (FacilityKind::CommuneStation, Some(h)) => match self.facility(h).await {
                Ok(hf) if hf.kind.is_hospital() && Some(h) != id => {}
                Ok(_) => errs.push(FieldError::new(
                    "referral_hospital_id",
                    "not_a_hospital",
                    "Cơ sở tuyến trên phải là bệnh viện.",
                    "The referral facility must be a hospital.",
                )),
                Err(RecordsError::NotFound(_)) => errs.push(FieldError::new(
                    "referral_hospital_id",
                    "unknown_facility",
                    "Không tìm thấy bệnh viện tuyến trên này.",
                    "No such referral hospital.",
                )),
                Err(e) => return Err(e),
            },
            (_, Some(_)) => errs.push(FieldError::new(
                "referral_hospital_id",
                "not_allowed",
                "Chỉ trạm y tế xã mới có bệnh viện tuyến trên.",
                "Only commune stations have a referral hospital.",
            )),
            (_, None) => {}
        }
        let out = FacilityInput {
            code: code.clone().unwrap_or_default(),
            name: name.clone().unwrap_or_default(),
            kind: f.kind,
            referral_hospital_id: f.referral_hospital_id,
            province: province.clone().unwrap_or_default(),
        };
        for r in [code, name, province] {
            errs.check(r.map(|_| ()));
        }
        errs.finish()?;
        Ok(out)
    }

    pub async fn create_facility(&self, actor: &Actor, input: &FacilityInput) -> Result<Facility> {
        let f = self.check_facility_input(None, input).await?;
        let now = Timestamp::now();
        let id = FacilityId::new();
        let mut w = self.begin_write().await?;
        let row = sqlx::query_as::<_, Facility>(&format!(
            "INSERT INTO facilities ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(&f.code)
        .bind(&f.name)
        .bind(f.kind)
        .bind(f.referral_hospital_id)
        .bind(&f.province)
        .bind(now)
        .fetch_one(&mut **w)
        .await
        .map_err(|e| map_unique(e, &[("code", Unique::FacilityCode)]))?;
        record(
            &mut w,
            actor,
            "facility.create",
            "facility",
            Some(id.to_string()),
            None,
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn update_facility(
        &self,
        actor: &Actor,
        id: FacilityId,
        input: &FacilityInput,
    ) -> Result<Facility> {
        let f = self.check_facility_input(Some(id), input).await?;
        let mut w = self.begin_write().await?;
        let row = sqlx::query_as::<_, Facility>(&format!(
            "UPDATE facilities SET code = $2, name = $3, kind = $4, referral_hospital_id = $5, province = $6, updated_at = $7
             WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(&f.code)
        .bind(&f.name)
        .bind(f.kind)
        .bind(f.referral_hospital_id)
        .bind(&f.province)
        .bind(Timestamp::now())
        .fetch_optional(&mut **w)
        .await
        .map_err(|e| map_unique(e, &[("code", Unique::FacilityCode)]))?
        .ok_or(RecordsError::NotFound("facility"))?;
        record(
            &mut w,
            actor,
            "facility.update",
            "facility",
            Some(id.to_string()),
            None,
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(row)
    }

    pub async fn facility(&self, id: FacilityId) -> Result<Facility> {
        sqlx::query_as::<_, Facility>(&format!("SELECT {COLUMNS} FROM facilities WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(RecordsError::NotFound("facility"))
    }

    pub async fn facility_by_code(&self, code: &str) -> Result<Option<Facility>> {
        Ok(
            sqlx::query_as::<_, Facility>(&format!("SELECT {COLUMNS} FROM facilities WHERE code = $1"))
                .bind(code)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn facilities(&self) -> Result<Vec<Facility>> {
        Ok(sqlx::query_as::<_, Facility>(&format!(
            "SELECT {COLUMNS} FROM facilities ORDER BY kind DESC, name"
        ))
        .fetch_all(&self.pool)
        .await?)
    }
}
