//! Scheduling: doctors' weekly hours and leave, free slots, booking without
//! double booking, rescheduling, no-shows, and recovery after a restart.
//!
//! Slots are [`SLOT_MINUTES`] long and aligned to the hour in local time.
//! Vietnam keeps UTC+7 all year, so local time is a fixed offset; times are
//! stored in UTC and converted only for working hours and display.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::audit::{record, Actor, Outcome};
use crate::consultations::{Consultation, ConsultationInput, COLUMNS};
use crate::error::{map_unique, Contested, Result, Unique};
use crate::events::append_event;
use crate::types::{ConsultationId, ConsultationState, FacilityId, Pii, Timestamp, UserId};
use crate::validate::{self, Errors, FieldError};
use crate::{RecordsError, Store};

/// Length of a consultation slot.
pub const SLOT_MINUTES: i64 = 20;

/// Asia/Ho_Chi_Minh: UTC+7, no daylight saving time.
pub fn local_offset() -> FixedOffset {
    // 7 hours is a valid offset (less than a day), so this cannot fail.
    FixedOffset::east_opt(7 * 3600).expect("UTC+7 is a valid offset")
}

/// One block of weekly working hours, local time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, FromRow, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    /// ISO weekday: 1 = Monday … 7 = Sunday.
    pub weekday: i64,
    /// Minutes after local midnight.
    pub start_minute: i64,
    pub end_minute: i64,
}

#[derive(Clone, Debug, Serialize, FromRow, JsonSchema)]
pub struct Leave {
    pub id: String,
    pub doctor_id: UserId,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub reason: String,
    pub created_at: Timestamp,
}

/// A bookable slot and the doctors free in it.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Slot {
    pub start: Timestamp,
    pub end: Timestamp,
    /// The same start in Vietnam's local time, for display.
    pub start_local: String,
    pub doctor_ids: Vec<UserId>,
}

fn slot_error(code: &'static str, vi: &str, en: &str) -> RecordsError {
    RecordsError::field(FieldError::new("scheduled_start", code, vi, en))
}

/// Whether `start` lies on the slot grid.
fn aligned(start: DateTime<Utc>) -> bool {
    start.second() == 0 && start.nanosecond() == 0 && i64::from(start.minute()) % SLOT_MINUTES == 0
}

/// Doctors' hours, leave and bookings over a window ([`Store::availability`]).
#[derive(Debug, Default)]
struct Availability {
    /// (doctor, ISO weekday, start minute, end minute), local time.
    hours: Vec<(UserId, i64, i64, i64)>,
    /// (doctor, from, to).
    leave: Vec<(UserId, Timestamp, Timestamp)>,
    /// (doctor, slot start).
    booked: Vec<(UserId, Timestamp)>,
}

impl Availability {
    /// Whether `doctor` works the whole slot from `start` (local time), is
    /// not on leave at any moment of it, and has no live booking at it.
    fn free(&self, doctor: UserId, start: DateTime<Utc>) -> bool {
        let end = start + Duration::minutes(SLOT_MINUTES);
        let local = start.with_timezone(&local_offset());
        let minute = i64::from(local.hour() * 60 + local.minute());
        let weekday = i64::from(local.weekday().number_from_monday());
        let works = self.hours.iter().any(|&(d, w, from, to)| {
            d == doctor && w == weekday && from <= minute && to >= minute + SLOT_MINUTES
        });
        let away = self
            .leave
            .iter()
            .any(|(d, from, to)| *d == doctor && from.0 < end && to.0 > start);
        let booked = self.booked.iter().any(|(d, at)| *d == doctor && at.0 == start);
        works && !away && !booked
    }
}

impl Store {
    /// Replaces a doctor's weekly hours.
    pub async fn set_doctor_hours(
        &self,
        actor: &Actor,
        doctor: UserId,
        hours: &[WorkingHours],
    ) -> Result<Vec<WorkingHours>> {
        let mut errs = Errors::default();
        for (i, h) in hours.iter().enumerate() {
            if !(1..=7).contains(&h.weekday) {
                errs.push(FieldError::new(
                    format!("hours[{i}].weekday"),
                    "out_of_range",
                    "Thứ trong tuần từ 1 (thứ Hai) đến 7 (Chủ nhật).",
                    "Weekday is 1 (Monday) to 7 (Sunday).",
                ));
            }
            if !(0..1440).contains(&h.start_minute)
                || !(1..=1440).contains(&h.end_minute)
                || h.start_minute >= h.end_minute
            {
                errs.push(FieldError::new(
                    format!("hours[{i}]"),
                    "invalid_hours",
                    "Giờ bắt đầu phải trước giờ kết thúc, trong cùng một ngày.",
                    "Start must be before end, within one day.",
                ));
            }
            if hours[..i].iter().any(|o| {
                o.weekday == h.weekday && o.start_minute < h.end_minute && h.start_minute < o.end_minute
            }) {
                errs.push(FieldError::new(
                    format!("hours[{i}]"),
                    "overlapping_hours",
                    "Các khung giờ làm việc trong một ngày không được chồng nhau.",
                    "Working hours on one day must not overlap.",
                ));
            }
        }
        errs.finish()?;
        let mut w = self.begin_write().await?;
        sqlx::query("DELETE FROM doctor_hours WHERE doctor_id = $1")
            .bind(doctor)
            .execute(&mut **w)
            .await?;
        for h in hours {
            sqlx::query("INSERT INTO doctor_hours (doctor_id, weekday, start_minute, end_minute) VALUES ($1, $2, $3, $4)")
                .bind(doctor)
                .bind(h.weekday)
                .bind(h.start_minute)
                .bind(h.end_minute)
                .execute(&mut **w)
                .await?;
        }
        record(
            &mut w,
            actor,
            "schedule.hours",
            "user",
            Some(doctor.to_string()),
            None,
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        self.doctor_hours(doctor).await
    }

    pub async fn doctor_hours(&self, doctor: UserId) -> Result<Vec<WorkingHours>> {
        Ok(sqlx::query_as::<_, WorkingHours>(
            "SELECT weekday, start_minute, end_minute FROM doctor_hours WHERE doctor_id = $1 ORDER BY weekday, start_minute",
        )
        .bind(doctor)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn add_leave(
        &self,
        actor: &Actor,
        doctor: UserId,
        starts: Timestamp,
        ends: Timestamp,
        reason: &str,
    ) -> Result<Leave> {
        if starts >= ends {
            return Err(RecordsError::field(FieldError::new(
                "ends_at",
                "invalid_range",
                "Thời điểm kết thúc phải sau thời điểm bắt đầu.",
                "The end must be after the start.",
            )));
        }
        let reason = validate::optional_text("reason", reason, 200).map_err(RecordsError::field)?;
        let id = uuid::Uuid::new_v4().to_string();
        let mut w = self.begin_write().await?;
        let l = sqlx::query_as::<_, Leave>(
            "INSERT INTO doctor_leave (id, doctor_id, starts_at, ends_at, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             RETURNING id, doctor_id, starts_at, ends_at, reason, created_at",
        )
        .bind(&id)
        .bind(doctor)
        .bind(starts)
        .bind(ends)
        .bind(reason)
        .bind(Timestamp::now())
        .fetch_one(&mut **w)
        .await?;
        record(
            &mut w,
            actor,
            "schedule.leave",
            "user",
            Some(doctor.to_string()),
            None,
            Outcome::Ok,
        )
        .await?;
        w.commit().await?;
        Ok(l)
    }

    pub async fn delete_leave(&self, actor: &Actor, doctor: UserId, id: &str) -> Result<()> {
        let mut w = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM doctor_leave WHERE id = $1 AND doctor_id = $2")
            .bind(id)
            .bind(doctor)
            .execute(&mut **w)
            .await?;
        if r.rows_affected() == 0 {
            return Err(RecordsError::NotFound("leave"));
        }
        record(
            &mut w,
            actor,
            "schedule.leave_delete",
            "user",
            Some(doctor.to_string()),
            None,
            Outcome::Ok,
        )
        .await?;
        w.commit().await
    }

    pub async fn doctor_leave(&self, doctor: UserId) -> Result<Vec<Leave>> {
        Ok(sqlx::query_as::<_, Leave>(
            "SELECT id, doctor_id, starts_at, ends_at, reason, created_at FROM doctor_leave WHERE doctor_id = $1 ORDER BY starts_at",
        )
        .bind(doctor)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Active doctors of a hospital, by name.
    pub async fn hospital_doctors(&self, hospital: FacilityId) -> Result<Vec<(UserId, String)>> {
        Ok(sqlx::query_as::<_, (UserId, String)>(
            "SELECT id, display_name FROM users WHERE facility_id = $1 AND role = 'doctor' AND active = 1 ORDER BY display_name",
        )
        .bind(hospital)
        .fetch_all(&self.pool)
        .await?)
    }

    /// What decides whether `doctors` are free between `from` and `to`:
    /// their weekly hours, their leave and their bookings in that window,
    /// read in three queries (not three per slot and doctor).
    async fn availability(
        &self,
        doctors: &[UserId],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Availability> {
        if doctors.is_empty() {
            return Ok(Availability::default());
        }
        // The doctors' placeholders, after `first` others.
        let list = |first: usize| {
            (0..doctors.len())
                .map(|i| format!("${}", i + first + 1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let hours_sql = format!(
            "SELECT doctor_id, weekday, start_minute, end_minute FROM doctor_hours WHERE doctor_id IN ({})",
            list(0)
        );
        // $1 and $2: the window.
        let list = list(2);
        let leave_sql = format!(
            "SELECT doctor_id, starts_at, ends_at FROM doctor_leave WHERE starts_at < $2 AND ends_at > $1 AND doctor_id IN ({list})"
        );
        let booked_sql = format!(
            "SELECT doctor_id, scheduled_start FROM consultations
             WHERE scheduled_start >= $1 AND scheduled_start < $2
               AND state IN {} AND doctor_id IN ({list})",
            crate::lifecycle::sql_list(crate::lifecycle::HOLDS_SLOT)
        );
        let (from, to) = (Timestamp(from), Timestamp(to));
        let mut hours = sqlx::query_as::<_, (UserId, i64, i64, i64)>(&hours_sql);
        let mut leave = sqlx::query_as::<_, (UserId, Timestamp, Timestamp)>(&leave_sql)
            .bind(from)
            .bind(to);
        let mut booked = sqlx::query_as::<_, (UserId, Timestamp)>(&booked_sql)
            .bind(from)
            .bind(to);
        for d in doctors {
            hours = hours.bind(*d);
            leave = leave.bind(*d);
            booked = booked.bind(*d);
        }
        Ok(Availability {
            hours: hours.fetch_all(&self.pool).await?,
            leave: leave.fetch_all(&self.pool).await?,
            booked: booked.fetch_all(&self.pool).await?,
        })
    }

    /// Free slots at a hospital on one local day, after `now`.
    pub async fn free_slots(
        &self,
        hospital: FacilityId,
        doctor: Option<UserId>,
        day: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<Slot>> {
        let doctors: Vec<UserId> = match doctor {
            Some(d) => vec![d],
            None => self
                .hospital_doctors(hospital)
                .await?
                .into_iter()
                .map(|d| d.0)
                .collect(),
        };
        let tz = local_offset();
        let midnight = tz
            .from_local_datetime(&day.and_time(NaiveTime::MIN))
            .single()
            .ok_or_else(|| RecordsError::Corrupt("local midnight".into()))?
            .with_timezone(&Utc);
        let day_end = midnight + Duration::days(1);
        let known = self.availability(&doctors, midnight, day_end).await?;
        let mut slots = Vec::new();
        for i in 0..(24 * 60 / SLOT_MINUTES) {
            let start = midnight + Duration::minutes(i * SLOT_MINUTES);
            if start <= now {
                continue;
            }
            let free: Vec<UserId> = doctors
                .iter()
                .copied()
                .filter(|d| known.free(*d, start))
                .collect();
            if !free.is_empty() {
                slots.push(Slot {
                    start: Timestamp(start),
                    end: Timestamp(start + Duration::minutes(SLOT_MINUTES)),
                    start_local: start.with_timezone(&tz).to_rfc3339(),
                    doctor_ids: free,
                });
            }
        }
        Ok(slots)
    }

    /// Checks a requested slot and picks the doctor: the one asked for, or
    /// any free doctor of the hospital. Returns the candidates in order.
    async fn slot_candidates(
        &self,
        hospital: FacilityId,
        doctor: Option<UserId>,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserId>> {
        if !aligned(start) {
            return Err(slot_error(
                "not_a_slot",
                &format!("Giờ hẹn phải bắt đầu vào phút 00, 20 hoặc 40 (mỗi lượt {SLOT_MINUTES} phút)."),
                &format!("Appointments start at :00, :20 or :40 ({SLOT_MINUTES}-minute slots)."),
            ));
        }
        if start <= now {
            return Err(slot_error(
                "slot_in_past",
                "Không thể đặt lịch vào thời điểm đã qua.",
                "That time has passed.",
            ));
        }
        let doctors = self.hospital_doctors(hospital).await?;
        let candidates: Vec<UserId> = match doctor {
            Some(d) if doctors.iter().any(|x| x.0 == d) => vec![d],
            Some(_) => {
                return Err(RecordsError::field(FieldError::new(
                    "doctor_id",
                    "not_at_hospital",
                    "Bác sĩ này không làm việc tại bệnh viện đã chọn.",
                    "This doctor does not work at the chosen hospital.",
                )))
            }
            None => doctors.into_iter().map(|d| d.0).collect(),
        };
        let known = self
            .availability(&candidates, start, start + Duration::minutes(SLOT_MINUTES))
            .await?;
        let free: Vec<UserId> = candidates.into_iter().filter(|d| known.free(*d, start)).collect();
        if free.is_empty() {
            return Err(RecordsError::AlreadyTaken(Contested::Slot));
        }
        Ok(free)
    }

    /// Books a scheduled consultation. Double booking is refused by the
    /// database's unique index even if two bookings race past the checks.
    pub(crate) async fn book(
        &self,
        actor: &Actor,
        station: FacilityId,
        hospital: FacilityId,
        input: &ConsultationInput,
        reason: String,
    ) -> Result<Consultation> {
        let start = input
            .scheduled_start
            .ok_or_else(|| slot_error("required", "Chọn giờ hẹn.", "Choose a time."))?;
        let requested_by = actor.user_id.ok_or(RecordsError::NotFound("user"))?;
        for doctor in self
            .slot_candidates(hospital, input.doctor_id, start.0, Utc::now())
            .await?
        {
            let id = ConsultationId::new();
            let now = Timestamp::now();
            let mut w = self.begin_write().await?;
            crate::consents::require_granted(&mut w, input.patient_id).await?;
            let inserted = sqlx::query_as::<_, Consultation>(&format!(
                "INSERT INTO consultations (id, patient_id, station_id, hospital_id, doctor_id, requested_by, kind, state, reason,
                     scheduled_start, scheduled_end, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', 'scheduled', $7, $8, $9, $10, $10) RETURNING {COLUMNS}"
            ))
            .bind(id)
            .bind(input.patient_id)
            .bind(station)
            .bind(hospital)
            .bind(doctor)
            .bind(requested_by)
            .bind(Pii(reason.clone()))
            .bind(start)
            .bind(Timestamp(start.0 + Duration::minutes(SLOT_MINUTES)))
            .bind(now)
            .fetch_one(&mut **w)
            .await
            .map_err(|e| map_unique(
                    e,
                    &[("consultations_no_double_booking", Unique::Slot), ("scheduled_start", Unique::Slot)],
                ));
            let c = match inserted {
                Ok(c) => c,
                // Someone took this doctor's slot between the check and the insert.
                Err(RecordsError::Duplicate(_)) => continue,
                Err(e) => return Err(e),
            };
            if let Some(m) = &input.vitals {
                crate::vitals::insert_vitals(&mut w, actor, input.patient_id, Some(id), m).await?;
            }
            append_event(
                &mut w,
                id,
                actor.user_id,
                crate::SessionEntry::StateChanged {
                    from: None,
                    to: crate::types::ConsultationState::Scheduled,
                },
            )
            .await?;
            record(
                &mut w,
                actor,
                "consultation.create",
                "consultation",
                Some(id.to_string()),
                Some(input.patient_id),
                Outcome::Ok,
            )
            .await?;
            w.commit().await?;
            return Ok(c);
        }
        Err(RecordsError::AlreadyTaken(Contested::Slot))
    }

    /// Moves a scheduled consultation to another slot (and maybe doctor).
    pub async fn reschedule(
        &self,
        actor: &Actor,
        id: ConsultationId,
        start: Timestamp,
        doctor: Option<UserId>,
    ) -> Result<Consultation> {
        let c = self.consultation(id).await?;
        if c.state != ConsultationState::Scheduled {
            return Err(RecordsError::IllegalTransition {
                from: c.state,
                to: ConsultationState::Scheduled,
            });
        }
        let wanted = doctor.or(c.doctor_id);
        for d in self
            .slot_candidates(c.hospital_id, wanted, start.0, Utc::now())
            .await?
        {
            let mut w = self.begin_write().await?;
            let updated = sqlx::query_as::<_, Consultation>(&format!(
                "UPDATE consultations SET doctor_id = $2, scheduled_start = $3, scheduled_end = $4, updated_at = $5
                 WHERE id = $1 AND state = 'scheduled' RETURNING {COLUMNS}"
            ))
            .bind(id)
            .bind(d)
            .bind(start)
            .bind(Timestamp(start.0 + Duration::minutes(SLOT_MINUTES)))
            .bind(Timestamp::now())
            .fetch_optional(&mut **w)
            .await
            .map_err(|e| map_unique(
                    e,
                    &[("consultations_no_double_booking", Unique::Slot), ("scheduled_start", Unique::Slot)],
                ));
            let c2 = match updated {
                Ok(Some(c2)) => c2,
                Ok(None) => return Err(RecordsError::AlreadyTaken(Contested::Consultation)),
                Err(RecordsError::Duplicate(_)) => continue,
                Err(e) => return Err(e),
            };
            append_event(
                &mut w,
                id,
                actor.user_id,
                crate::SessionEntry::Rescheduled {
                    from: c.scheduled_start,
                    to: start,
                    doctor_id: d,
                },
            )
            .await?;
            record(
                &mut w,
                actor,
                "consultation.reschedule",
                "consultation",
                Some(id.to_string()),
                Some(c.patient_id),
                Outcome::Ok,
            )
            .await?;
            w.commit().await?;
            return Ok(c2);
        }
        Err(RecordsError::AlreadyTaken(Contested::Slot))
    }

    /// Marks as no-show every scheduled consultation whose start is more than
    /// `grace` before `now` and that nobody started.
    pub async fn mark_no_shows(&self, now: DateTime<Utc>, grace: Duration) -> Result<Vec<Consultation>> {
        let cutoff = Timestamp(now - grace);
        let due: Vec<(ConsultationId,)> =
            sqlx::query_as("SELECT id FROM consultations WHERE state = 'scheduled' AND scheduled_start < $1")
                .bind(cutoff)
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::new();
        for (id,) in due {
            match self
                .transition_consultation(&Actor::system(), id, ConsultationState::NoShow)
                .await
            {
                Ok(c) => out.push(c),
                // Started or cancelled meanwhile: nothing to do.
                Err(RecordsError::IllegalTransition { .. } | RecordsError::AlreadyTaken(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// On a node's startup: consultations that were live on it when it
    /// stopped, or on no live node, are `interrupted` (their rooms are
    /// gone); those another live node hosts carry on.
    pub async fn interrupt_live_consultations(
        &self,
        node: &str,
        dead_after: std::time::Duration,
    ) -> Result<Vec<Consultation>> {
        let live: Vec<(ConsultationId,)> = sqlx::query_as(&format!(
            "SELECT c.id FROM consultations c
             LEFT JOIN room_placements p ON p.consultation_id = c.id
             LEFT JOIN nodes n ON n.id = p.node_id
             WHERE c.state = 'in_progress'
               AND (p.node_id IS NULL OR p.node_id = $1 OR p.released = 1 OR n.id IS NULL
                    OR n.heartbeat_at < {} - $2)",
            self.now_ms_sql()
        ))
        .bind(node)
        .bind(i64::try_from(dead_after.as_millis()).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for (id,) in live {
            match self
                .transition_consultation(&Actor::system(), id, ConsultationState::Interrupted)
                .await
            {
                Ok(c) => out.push(c),
                Err(RecordsError::IllegalTransition { .. } | RecordsError::AlreadyTaken(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
