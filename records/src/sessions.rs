//! Session logs for admins: each consultation as a timeline of events, with a
//! call-quality summary computed from the `stats` samples.
//!
//! A `stats` event's data is one participant's sample over the last
//! [`STATS_INTERVAL_SECS`] seconds:
//! `{"user_id", "loss_pct", "rtt_ms", "jitter_ms", "bitrate_in_kbps",
//! "bitrate_out_kbps", "audio_only"}` (every number optional).
//! Reconnections are events of kind `reconnected`.

use serde::Serialize;
use sqlx::FromRow;

use crate::error::Result;
use crate::events::SessionEvent;
use crate::types::{ConsultationId, ConsultationKind, ConsultationState, FacilityId, Timestamp, UserId};
use crate::Store;

/// How often the SFU samples a participant's quality.
pub const STATS_INTERVAL_SECS: f64 = 5.0;

/// What an admin sees of a consultation: ids, times and quality, no
/// personal data.
#[derive(Clone, Debug, Serialize)]
pub struct SessionSummary {
    pub consultation_id: ConsultationId,
    pub station_id: FacilityId,
    pub hospital_id: FacilityId,
    pub doctor_id: Option<UserId>,
    pub kind: ConsultationKind,
    pub state: ConsultationState,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub quality: Quality,
}

/// Call quality over a whole session.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Quality {
    /// From start to end (or to now, if still running), seconds.
    pub duration_secs: Option<f64>,
    pub samples: usize,
    pub avg_loss_pct: Option<f64>,
    pub worst_loss_pct: Option<f64>,
    pub avg_rtt_ms: Option<f64>,
    pub avg_jitter_ms: Option<f64>,
    /// Time some participant spent receiving audio only (video dropped).
    pub audio_only_secs: f64,
    /// A participant's page came back into the call by itself (`reconnected`).
    pub reconnections: usize,
    /// A participant's page lost its connection to the server (`reconnecting`).
    pub disconnections: usize,
    /// A participant's media path dropped (ICE `disconnected` or `failed`).
    pub media_interruptions: usize,
}

/// Which sessions to list.
#[derive(Clone, Debug, Default)]
pub struct SessionQuery {
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created before.
    pub to: Option<Timestamp>,
    /// The station or the hospital.
    pub facility_id: Option<FacilityId>,
    pub state: Option<ConsultationState>,
    /// Only sessions whose worst loss reached this percentage.
    pub min_worst_loss_pct: Option<f64>,
    pub limit: i64,
}

#[derive(FromRow)]
struct Row {
    id: ConsultationId,
    station_id: FacilityId,
    hospital_id: FacilityId,
    doctor_id: Option<UserId>,
    kind: ConsultationKind,
    state: ConsultationState,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Computes the quality summary of one session from its events.
pub fn quality(
    events: &[SessionEvent],
    started: Option<Timestamp>,
    ended: Option<Timestamp>,
    now: Timestamp,
) -> Quality {
    let (mut loss, mut rtt, mut jitter) = (Vec::new(), Vec::new(), Vec::new());
    let mut q = Quality::default();
    for e in events {
        match e.kind.as_str() {
            "stats" => {
                q.samples += 1;
                let num = |k: &str| {
                    e.data
                        .get(k)
                        .and_then(serde_json::Value::as_f64)
                        .filter(|x| x.is_finite())
                };
                loss.extend(num("loss_pct"));
                rtt.extend(num("rtt_ms"));
                jitter.extend(num("jitter_ms"));
                if e.data.get("audio_only").and_then(serde_json::Value::as_bool) == Some(true) {
                    q.audio_only_secs += STATS_INTERVAL_SECS;
                }
            }
            "reconnected" => q.reconnections += 1,
            "reconnecting" => q.disconnections += 1,
            "ice_state"
                if matches!(
                    e.data.get("state").and_then(serde_json::Value::as_str),
                    Some("disconnected" | "failed")
                ) =>
            {
                q.media_interruptions += 1
            }
            _ => {}
        }
    }
    q.avg_loss_pct = mean(&loss);
    q.worst_loss_pct = loss.iter().copied().reduce(f64::max);
    q.avg_rtt_ms = mean(&rtt);
    q.avg_jitter_ms = mean(&jitter);
    q.duration_secs =
        started.map(|s| ((ended.unwrap_or(now).0 - s.0).num_milliseconds() as f64 / 1000.0).max(0.0));
    q
}

/// The session events [`quality`] reads.
const QUALITY_KINDS: &[&str] = &["stats", "reconnected", "reconnecting", "ice_state"];

impl Store {
    /// Sessions matching a query, newest first, with their quality.
    pub async fn sessions(&self, q: &SessionQuery) -> Result<Vec<SessionSummary>> {
        let rows = sqlx::query_as::<_, Row>(
            "SELECT id, station_id, hospital_id, doctor_id, kind, state, created_at, started_at, ended_at
             FROM consultations
             WHERE ($1 IS NULL OR created_at >= $1)
               AND ($2 IS NULL OR created_at < $2)
               AND ($3 IS NULL OR station_id = $3 OR hospital_id = $3)
               AND ($4 IS NULL OR state = $4)
             ORDER BY created_at DESC
             LIMIT $5",
        )
        .bind(q.from)
        .bind(q.to)
        .bind(q.facility_id)
        .bind(q.state)
        .bind(if q.min_worst_loss_pct.is_some() {
            5000
        } else {
            q.limit.clamp(1, 1000)
        })
        .fetch_all(&self.pool)
        .await?;
        let now = Timestamp::now();
        let limit = q.limit.clamp(1, 1000) as usize;
        let mut out = Vec::new();
        // The events of a page of sessions in one query (not one each); the
        // next page only while sessions are still wanted.
        for page in rows.chunks(200) {
            let ids: Vec<ConsultationId> = page.iter().map(|r| r.id).collect();
            let mut events = self.session_events_of(&ids, QUALITY_KINDS).await?;
            for r in page {
                let events = events.remove(&r.id).unwrap_or_default();
                let quality = quality(&events, r.started_at, r.ended_at, now);
                if let Some(min) = q.min_worst_loss_pct {
                    if quality.worst_loss_pct.is_none_or(|w| w < min) {
                        continue;
                    }
                }
                out.push(SessionSummary {
                    consultation_id: r.id,
                    station_id: r.station_id,
                    hospital_id: r.hospital_id,
                    doctor_id: r.doctor_id,
                    kind: r.kind,
                    state: r.state,
                    created_at: r.created_at,
                    started_at: r.started_at,
                    ended_at: r.ended_at,
                    quality,
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// One session's summary and its whole timeline.
    pub async fn session(&self, id: ConsultationId) -> Result<(SessionSummary, Vec<SessionEvent>)> {
        let c = self.consultation(id).await?;
        let events = self.session_events(id).await?;
        let quality = quality(&events, c.started_at, c.ended_at, Timestamp::now());
        Ok((
            SessionSummary {
                consultation_id: c.id,
                station_id: c.station_id,
                hospital_id: c.hospital_id,
                doctor_id: c.doctor_id,
                kind: c.kind,
                state: c.state,
                created_at: c.created_at,
                started_at: c.started_at,
                ended_at: c.ended_at,
                quality,
            },
            events,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &str, data: serde_json::Value) -> SessionEvent {
        SessionEvent {
            id: 0,
            consultation_id: ConsultationId::new(),
            at: Timestamp::now(),
            kind: kind.into(),
            user_id: None,
            data,
        }
    }

    #[test]
    fn quality_summarises_samples() {
        let events = [
            ev(
                "stats",
                json!({"loss_pct": 1.0, "rtt_ms": 100.0, "jitter_ms": 10.0}),
            ),
            ev(
                "stats",
                json!({"loss_pct": 7.0, "rtt_ms": 300.0, "audio_only": true}),
            ),
            ev("stats", json!({"loss_pct": "bad", "rtt_ms": 200.0})),
            ev("reconnected", json!({})),
            ev("reconnecting", json!({})),
            ev("reconnecting", json!({})),
            ev("ice_state", json!({"state": "disconnected"})),
            ev("ice_state", json!({"state": "connected"})),
            ev("ice_state", json!({"state": "failed"})),
            ev("joined", json!({})),
        ];
        let s: Timestamp = "2026-11-23T08:00:00.000Z".parse().unwrap();
        let e: Timestamp = "2026-11-23T08:12:30.000Z".parse().unwrap();
        let q = quality(&events, Some(s), Some(e), Timestamp::now());
        assert_eq!(q.samples, 3);
        assert_eq!(q.avg_loss_pct, Some(4.0));
        assert_eq!(q.worst_loss_pct, Some(7.0));
        assert_eq!(q.avg_rtt_ms, Some(200.0));
        assert_eq!(q.avg_jitter_ms, Some(10.0));
        assert_eq!(q.audio_only_secs, 5.0);
        assert_eq!(q.reconnections, 1);
        assert_eq!(q.disconnections, 2);
        assert_eq!(q.media_interruptions, 2);
        assert_eq!(q.duration_secs, Some(750.0));
        assert_eq!(quality(&[], None, None, Timestamp::now()), Quality::default());
    }
}
