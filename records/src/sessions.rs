//! Session logs for admins: each consultation as a timeline of events, with a
//! call-quality summary computed from the `stats` samples.
//!
//! A `stats` event's data is one participant's sample, [`SessionStats`]:
//! the signaling writes it and the summary reads it as that type, with the
//! interval it covers. Reconnections are events of kind `reconnected`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use crate::error::Result;
use crate::events::SessionEvent;
use crate::session_entry::SessionEntry;
use crate::types::{
    ConsultationId, ConsultationKind, ConsultationState, EventKind, FacilityId, Timestamp, UserId,
};
use crate::Store;

/// The interval of a sample written before samples said their own (the
/// SFU's default then and now).
pub const STATS_INTERVAL_SECS: f64 = 5.0;

fn default_interval() -> f64 {
    STATS_INTERVAL_SECS
}

/// One participant's call quality over one sampling interval: the data of a
/// `stats` session event. Fields added since the first samples default, so
/// an older log still reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionStats {
    #[serde(default)]
    pub user_id: Option<UserId>,
    #[serde(default)]
    pub participant_id: Option<String>,
    /// The seconds the sample covers (the SFU's `stats_interval`).
    #[serde(default = "default_interval")]
    pub interval_secs: f64,
    /// Packets lost of those sent to and by the participant, %.
    #[serde(default)]
    pub loss_pct: Option<f64>,
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    #[serde(default)]
    pub jitter_ms: Option<f64>,
    #[serde(default)]
    pub bitrate_in_kbps: Option<u64>,
    #[serde(default)]
    pub bitrate_out_kbps: Option<u64>,
    /// It received audio and no video.
    #[serde(default)]
    pub audio_only: bool,
    /// Packets forwarded to the participant (what it could receive) and
    /// published by it, this interval.
    #[serde(default)]
    pub received_audio_packets: Option<u64>,
    #[serde(default)]
    pub received_video_packets: Option<u64>,
    #[serde(default)]
    pub sent_audio_packets: Option<u64>,
    #[serde(default)]
    pub sent_video_packets: Option<u64>,
    #[serde(default)]
    pub nacks: Option<u64>,
    #[serde(default)]
    pub plis: Option<u64>,
    /// The simulcast layers forwarded to it.
    #[serde(default)]
    pub layers: Vec<usize>,
    /// `audio/red` when redundant audio flows (sent by it, received by it).
    #[serde(default)]
    pub audio_codec_sent: Option<String>,
    #[serde(default)]
    pub audio_codec_received: Option<String>,
    #[serde(default)]
    pub send_estimate_kbps: Option<u64>,
}

/// What an admin sees of a consultation: ids, times and quality, no
/// personal data.
#[derive(Clone, Debug, Serialize, JsonSchema)]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
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
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    for e in events {
        // A kind this version does not write, or an entry that does not read
        // as its kind (an older log), counts for nothing; a stats sample
        // that does not read as one still counts as a sample.
        let Some(entry) = SessionEntry::read(&e.kind, &e.data) else {
            if e.kind == EventKind::Stats.as_str() {
                q.samples += 1;
            }
            continue;
        };
        match entry {
            SessionEntry::Stats(s) => {
                q.samples += 1;
                loss.extend(finite(s.loss_pct));
                rtt.extend(finite(s.rtt_ms));
                jitter.extend(finite(s.jitter_ms));
                if s.audio_only {
                    q.audio_only_secs += finite(Some(s.interval_secs)).unwrap_or(STATS_INTERVAL_SECS);
                }
            }
            SessionEntry::Reconnected(_) => q.reconnections += 1,
            SessionEntry::Reconnecting { .. } => q.disconnections += 1,
            SessionEntry::IceState { state, .. } => {
                if matches!(state.as_str(), "disconnected" | "failed") {
                    q.media_interruptions += 1
                }
            }
            SessionEntry::StateChanged { .. }
            | SessionEntry::Accepted {}
            | SessionEntry::Rescheduled { .. }
            | SessionEntry::Photo { .. }
            | SessionEntry::Joined(_)
            | SessionEntry::Media { .. }
            | SessionEntry::Chat { .. }
            | SessionEntry::Error { .. }
            | SessionEntry::ErrorsSuppressed { .. }
            | SessionEntry::TrackPublished { .. }
            | SessionEntry::TrackUnpublished { .. }
            | SessionEntry::Left { .. }
            | SessionEntry::RoomClosed {}
            | SessionEntry::MediaRepair { .. }
            | SessionEntry::MediaResumed { .. }
            | SessionEntry::AddressChanged { .. }
            | SessionEntry::VideoLevel { .. }
            | SessionEntry::RejoinRequested { .. }
            | SessionEntry::CallPlaced { .. } => {}
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
const QUALITY_KINDS: &[EventKind] = &[
    EventKind::Stats,
    EventKind::Reconnected,
    EventKind::Reconnecting,
    EventKind::IceState,
];

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
    fn a_sample_reads_back_as_written_and_an_old_one_still_reads() {
        let s = SessionStats {
            user_id: Some(UserId::new()),
            participant_id: Some("p1".into()),
            interval_secs: 1.0,
            loss_pct: Some(2.5),
            audio_only: true,
            layers: vec![0, 2],
            audio_codec_sent: Some("audio/red".into()),
            ..Default::default()
        };
        let back: SessionStats = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        // Written before samples said their interval or their packet counts.
        let old: SessionStats =
            serde_json::from_value(json!({"loss_pct": 1.0, "rtt_ms": 80.0, "audio_only": false})).unwrap();
        assert_eq!(old.interval_secs, STATS_INTERVAL_SECS);
        assert_eq!(old.received_audio_packets, None);
    }

    fn entry(e: SessionEntry) -> SessionEvent {
        ev(e.kind().as_str(), e.data())
    }

    fn joining() -> crate::Joining {
        crate::Joining {
            participant_id: "p".into(),
            role: crate::types::Role::HealthWorker,
            new_connection: true,
        }
    }

    fn reconnecting() -> SessionEntry {
        SessionEntry::Reconnecting {
            participant_id: "p".into(),
            socket: "gone".into(),
        }
    }

    fn ice(state: &str) -> SessionEntry {
        SessionEntry::IceState {
            participant_id: "p".into(),
            state: state.into(),
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
            // A sample that says its own interval is counted by it.
            ev("stats", json!({"interval_secs": 2.0, "audio_only": true})),
            ev("stats", json!({"loss_pct": "bad", "rtt_ms": 200.0})),
            entry(SessionEntry::Reconnected(joining())),
            entry(reconnecting()),
            entry(reconnecting()),
            entry(ice("disconnected")),
            entry(ice("connected")),
            entry(ice("failed")),
            entry(SessionEntry::Joined(joining())),
            // An entry that does not read as its kind counts for nothing.
            ev("reconnecting", json!({})),
        ];
        let s: Timestamp = "2026-11-23T08:00:00.000Z".parse().unwrap();
        let e: Timestamp = "2026-11-23T08:12:30.000Z".parse().unwrap();
        let q = quality(&events, Some(s), Some(e), Timestamp::now());
        assert_eq!(q.samples, 4);
        assert_eq!(q.avg_loss_pct, Some(4.0));
        assert_eq!(q.worst_loss_pct, Some(7.0));
        assert_eq!(q.avg_rtt_ms, Some(200.0));
        assert_eq!(q.avg_jitter_ms, Some(10.0));
        assert_eq!(q.audio_only_secs, 7.0);
        assert_eq!(q.reconnections, 1);
        assert_eq!(q.disconnections, 2);
        assert_eq!(q.media_interruptions, 2);
        assert_eq!(q.duration_secs, Some(750.0));
        assert_eq!(quality(&[], None, None, Timestamp::now()), Quality::default());
    }
}
