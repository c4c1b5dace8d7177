//! Station connectivity history for admins: per commune station and per day
//! or week, how its calls went on the network (loss, RTT, bitrate,
//! reconnections, audio-only time, failed joins), so that a provincial IT
//! officer can see which station needs a better link.
//!
//! # Buckets and time zone
//! Days are days in the province, Asia/Ho_Chi_Minh (UTC+7 all year, no
//! daylight saving: [`local_offset`]); a week starts on Monday. A
//! consultation belongs, whole, to the bucket of the local day its call
//! started (`started_at`); one that never started (the two sides never were
//! in the call together) to the day of its booked slot, or of its request
//! when urgent. A call across midnight stays on the day it began.
//!
//! # Station side
//! The station's side is its health workers' participants (the role their
//! `joined` entry names); the hospital's side, its doctors'. Averages are
//! over the station side's `stats` samples.
//!
//! # Failed join
//! A join attempt is a station participant's `joined` entry, or a
//! `reconnected` one that came with a new media connection. It failed when
//! that participant's media (ICE) never reached `connected` before the
//! attempt was over: before its next attempt, its `left`, the room's close,
//! or the consultation's end. An attempt still open (the call goes on and the
//! media may yet connect) counts as neither. ICE `failed` states are counted
//! apart (`ice_failures`): a media path that failed and came back by an ICE
//! restart is not a failed join.
//!
//! # Bounds
//! A range is at most [`MAX_RANGE_DAYS`] days and at most
//! [`MAX_CONSULTATIONS`] consultations; the session logs are read in one
//! query per 200 consultations, only the kinds and columns counted here,
//! samples parsed straight into [`SessionStats`] (500 calls with 180,000
//! samples took 3.8 s in a debug build on SQLite). Summing the samples in
//! SQL would be faster still, at the price of two dialects of JSON.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::FromRow;

use crate::error::Result;
use crate::schedule::local_offset;
use crate::session_entry::SessionEntry;
use crate::sessions::{SessionStats, STATS_INTERVAL_SECS};
use crate::types::{ConsultationId, EventKind, FacilityId, FacilityKind, Role, Timestamp, UserId};
use crate::validate::FieldError;
use crate::{RecordsError, Store};

/// The longest range one request may cover, days.
pub const MAX_RANGE_DAYS: i64 = 366;
/// The most consultations one request may read (a province's year is a few
/// thousand); beyond it the caller narrows the range or picks one station.
pub const MAX_CONSULTATIONS: i64 = 50_000;

/// How long one bucket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// One local day.
    Day,
    /// One week, Monday to Sunday.
    Week,
}

impl std::str::FromStr for Bucket {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "day" => Ok(Self::Day),
            "week" => Ok(Self::Week),
            _ => Err(()),
        }
    }
}

impl Bucket {
    /// The first day of the bucket holding `day`.
    pub fn start_of(self, day: NaiveDate) -> NaiveDate {
        match self {
            Self::Day => day,
            Self::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        }
    }
}

/// Which stations, which days.
#[derive(Clone, Debug)]
pub struct ConnectivityQuery {
    /// First local day, included.
    pub from: NaiveDate,
    /// Last local day, included.
    pub to: NaiveDate,
    pub bucket: Bucket,
    /// One station (or all stations when absent).
    pub station_id: Option<FacilityId>,
}

/// One station's calls over one bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
pub struct StationConnectivity {
    pub station_id: FacilityId,
    pub station_code: String,
    pub station_name: String,
    /// The bucket's first local day (a Monday for weeks), `YYYY-MM-DD`. The
    /// range's first and last weeks count only the days inside the range.
    pub bucket_start: String,
    /// Consultations whose call started (both sides were in it).
    pub calls: u32,
    /// Their length, start to end (to now while one goes on), minutes.
    pub call_minutes: f64,
    /// The station side's quality samples.
    pub samples: u32,
    pub avg_loss_pct: Option<f64>,
    /// The 95th percentile of the samples' loss (nearest rank).
    pub p95_loss_pct: Option<f64>,
    pub worst_loss_pct: Option<f64>,
    pub avg_rtt_ms: Option<f64>,
    pub avg_jitter_ms: Option<f64>,
    /// What the station's participants sent to the server (their upload:
    /// the camera and microphone reaching the doctor) and received from
    /// it (their download), kbit/s.
    pub avg_bitrate_in_kbps: Option<f64>,
    pub avg_bitrate_out_kbps: Option<f64>,
    /// The station's pages came back into a call by themselves.
    pub reconnections: u32,
    /// Seconds the station's participants received audio only because
    /// their link could not carry the video (not a camera turned off).
    pub audio_only_secs: f64,
    /// Join attempts of the station's participants, and those whose media
    /// never connected (see the module's documentation).
    pub join_attempts: u32,
    pub failed_joins: u32,
    /// ICE `failed` states of the station's participants.
    pub ice_failures: u32,
    /// The hospital side of the same calls (the doctors), for comparison:
    /// when both sides are bad, the server or the hospital is at fault.
    pub hospital_avg_loss_pct: Option<f64>,
    pub hospital_avg_rtt_ms: Option<f64>,
}

#[derive(FromRow)]
struct Row {
    id: ConsultationId,
    station_id: FacilityId,
    station_code: String,
    station_name: String,
    day_at: Timestamp,
    started_at: Option<Timestamp>,
    ended_at: Option<Timestamp>,
}

/// What is read of a session-log row: not its id.
#[derive(FromRow)]
struct LogRow {
    consultation_id: ConsultationId,
    at: Timestamp,
    kind: String,
    user_id: Option<UserId>,
    data: String,
}

/// The samples and counts of one bucket, summed before the averages. Only
/// the loss of each sample is kept (for its percentile); the rest are sums.
#[derive(Default)]
struct Acc {
    row: StationConnectivity,
    loss: Vec<f64>,
    loss_mean: Mean,
    rtt: Mean,
    jitter: Mean,
    bitrate_in: Mean,
    bitrate_out: Mean,
    hospital_loss: Mean,
    hospital_rtt: Mean,
}

/// A mean weighted by the seconds each sample covers.
#[derive(Default)]
struct Mean {
    weight: f64,
    sum: f64,
}

impl Mean {
    fn add(&mut self, v: Option<f64>, weight: f64) {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            self.weight += weight;
            self.sum += v * weight;
        }
    }
    fn get(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.sum / self.weight)
    }
}

/// A join attempt that has not connected after this long failed, even if
/// the page gave up and tried again (a reload within it is not a failure).
const JOIN_GIVES_UP_SECS: i64 = 20;

/// Nearest-rank percentile `p` (0-100) of `v`, which it sorts.
fn percentile(v: &mut [f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// The session-log kinds read here.
const KINDS: &[EventKind] = &[
    EventKind::VideoLevel,
    EventKind::Joined,
    EventKind::Reconnected,
    EventKind::IceState,
    EventKind::Left,
    EventKind::RoomClosed,
    EventKind::Stats,
];

/// The instant local day `d` begins.
fn local_midnight(d: NaiveDate) -> Timestamp {
    // Midnight exists on every day at a fixed offset.
    let t = local_offset()
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight is a valid time"))
        .single()
        .expect("a fixed offset maps every local time once");
    Timestamp(t.with_timezone(&chrono::Utc))
}

/// The local day of an instant.
pub fn local_day(t: Timestamp) -> NaiveDate {
    t.0.with_timezone(&local_offset()).date_naive()
}

impl ConnectivityQuery {
    /// The range's problems, each naming its field.
    pub fn check(&self) -> std::result::Result<(), Vec<FieldError>> {
        let days = (self.to - self.from).num_days() + 1;
        if days < 1 {
            return Err(vec![FieldError::new(
                "to",
                "range_reversed",
                "Ngày kết thúc phải sau hoặc bằng ngày bắt đầu.",
                "The last day must be on or after the first day.",
            )]);
        }
        if days > MAX_RANGE_DAYS {
            return Err(vec![FieldError::new(
                "from",
                "range_too_long",
                format!("Khoảng thời gian dài nhất là {MAX_RANGE_DAYS} ngày."),
                format!("A range covers at most {MAX_RANGE_DAYS} days."),
            )]);
        }
        Ok(())
    }
}

impl Store {
    /// Each station's connectivity per bucket over a range, ordered by
    /// station then bucket; buckets without a call or a join attempt are left
    /// out. `now` ends the calls still going on.
    pub async fn station_connectivity(
        &self,
        q: &ConnectivityQuery,
        now: Timestamp,
    ) -> Result<Vec<StationConnectivity>> {
        q.check().map_err(RecordsError::Invalid)?;
        let rows = sqlx::query_as::<_, Row>(
            "SELECT c.id, c.station_id, f.code AS station_code, f.name AS station_name,
                    COALESCE(c.started_at, c.scheduled_start, c.created_at) AS day_at,
                    c.started_at, c.ended_at
             FROM consultations c JOIN facilities f ON f.id = c.station_id
             WHERE f.kind = $1
               AND COALESCE(c.started_at, c.scheduled_start, c.created_at) >= $2
               AND COALESCE(c.started_at, c.scheduled_start, c.created_at) < $3
               AND ($4 IS NULL OR c.station_id = $4)
             ORDER BY c.id
             LIMIT $5",
        )
        .bind(FacilityKind::CommuneStation)
        .bind(local_midnight(q.from))
        .bind(local_midnight(q.to + Duration::days(1)))
        .bind(q.station_id)
        .bind(MAX_CONSULTATIONS + 1)
        .fetch_all(&self.pool)
        .await?;
        if rows.len() as i64 > MAX_CONSULTATIONS {
            return Err(RecordsError::Invalid(vec![FieldError::new(
                "from",
                "too_many_consultations",
                format!("Quá {MAX_CONSULTATIONS} ca tư vấn: hãy chọn khoảng ngắn hơn hoặc một trạm."),
                format!(
                    "More than {MAX_CONSULTATIONS} consultations: choose a shorter range or one station."
                ),
            )]));
        }
        let mut buckets: BTreeMap<(FacilityId, NaiveDate), Acc> = BTreeMap::new();
        for page in rows.chunks(200) {
            let ids: Vec<ConsultationId> = page.iter().map(|r| r.id).collect();
            let rows: Vec<LogRow> = self
                .session_rows_of("consultation_id, at, kind, user_id, data", &ids, KINDS)
                .await?;
            // Parsing the samples is most of the work: off the async
            // threads, which also carry the calls' signaling.
            let parsed = tokio::task::spawn_blocking(move || {
                rows.into_iter()
                    .filter_map(|e| {
                        read(&e.kind, &e.data).map(|entry| (e.consultation_id, e.at, e.user_id, entry))
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| RecordsError::Corrupt(format!("reading session logs: {e}")))?;
            let mut entries: HashMap<ConsultationId, Vec<Entry>> = HashMap::new();
            for (c, at, user, entry) in parsed {
                entries.entry(c).or_default().push((at, user, entry));
            }
            for r in page {
                let start = q.bucket.start_of(local_day(r.day_at));
                let acc = buckets.entry((r.station_id, start)).or_insert_with(|| Acc {
                    row: StationConnectivity {
                        station_id: r.station_id,
                        station_code: r.station_code.clone(),
                        station_name: r.station_name.clone(),
                        bucket_start: start.format("%Y-%m-%d").to_string(),
                        ..Default::default()
                    },
                    ..Default::default()
                });
                let entries = entries.remove(&r.id).unwrap_or_default();
                add_consultation(acc, r, &entries, now);
            }
        }
        Ok(buckets
            .into_values()
            .filter(|a| a.row.calls > 0 || a.row.join_attempts > 0)
            .map(Acc::finish)
            .collect())
    }
}

/// A stored entry read as its kind, or `None` for one that does not read
/// (an older log). Samples, most of the rows, are parsed straight from the
/// text into their type.
fn read(kind: &str, data: &str) -> Option<SessionEntry> {
    if kind == EventKind::Stats.as_str() {
        return serde_json::from_str::<SessionStats>(data)
            .ok()
            .map(SessionEntry::Stats);
    }
    SessionEntry::read(kind, &serde_json::from_str(data).ok()?)
}

/// A session-log entry: when, who wrote it, what.
type Entry = (Timestamp, Option<UserId>, SessionEntry);

/// One consultation's log (its entries, in order, with who wrote them) into
/// its bucket.
fn add_consultation(acc: &mut Acc, r: &Row, entries: &[Entry], now: Timestamp) {
    let last_at = entries.iter().map(|(at, _, _)| *at).max();
    if let Some(s) = r.started_at {
        acc.row.calls += 1;
        // A call that never ended (interrupted, dropped) lasted until its
        // log's last entry; one going on has a sample every few seconds.
        let end = r.ended_at.or(last_at).unwrap_or(s).min(now);
        acc.row.call_minutes += ((end.0 - s.0).num_milliseconds() as f64 / 60_000.0).max(0.0);
    }
    // Who is who: a participant's role from its join, and a user's as a
    // fallback for samples that name no participant.
    let mut by_participant: HashMap<String, Role> = HashMap::new();
    let mut by_user: HashMap<UserId, Role> = HashMap::new();
    for (_, user, e) in entries {
        if let SessionEntry::Joined(j) | SessionEntry::Reconnected(j) = e {
            by_participant.insert(j.participant_id.clone(), j.role);
            if let Some(u) = user {
                by_user.insert(*u, j.role);
            }
        }
    }
    let station = |pid: Option<&str>, user: Option<UserId>| -> Option<bool> {
        let role = pid
            .and_then(|p| by_participant.get(p))
            .or_else(|| user.and_then(|u| by_user.get(&u)))?;
        match role {
            Role::HealthWorker => Some(true),
            Role::Doctor => Some(false),
            Role::Admin => None,
        }
    };
    // Open join attempts of the station's participants: since when, and
    // connected yet? One that ends unconnected after JOIN_GIVES_UP_SECS
    // failed.
    let mut open: HashMap<String, (Timestamp, bool)> = HashMap::new();
    let failed = |attempt: Option<(Timestamp, bool)>, at: Timestamp| {
        attempt.is_some_and(|(since, connected)| {
            !connected && (at.0 - since.0).num_seconds() >= JOIN_GIVES_UP_SECS
        })
    };
    // Why each participant gets no video, as the server last said.
    let mut video_off: HashMap<&str, Option<&str>> = HashMap::new();
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    for (at, user, e) in entries {
        match e {
            SessionEntry::Joined(j) | SessionEntry::Reconnected(j) => {
                let attempt = matches!(e, SessionEntry::Joined(_)) || j.new_connection;
                if j.role == Role::HealthWorker && attempt {
                    if failed(open.insert(j.participant_id.clone(), (*at, false)), *at) {
                        acc.row.failed_joins += 1;
                    }
                    acc.row.join_attempts += 1;
                }
                if matches!(e, SessionEntry::Reconnected(_)) && j.role == Role::HealthWorker {
                    acc.row.reconnections += 1;
                }
            }
            SessionEntry::IceState {
                participant_id,
                state,
            } => {
                if station(Some(participant_id), *user) != Some(true) {
                    continue;
                }
                match state.as_str() {
                    "connected" | "completed" => {
                        if let Some((_, c)) = open.get_mut(participant_id) {
                            *c = true;
                        }
                    }
                    "failed" => acc.row.ice_failures += 1,
                    _ => {}
                }
            }
            SessionEntry::Left { participant_id, .. } => {
                if failed(open.remove(participant_id), *at) {
                    acc.row.failed_joins += 1;
                }
            }
            SessionEntry::RoomClosed {} => {
                acc.row.failed_joins += open.drain().filter(|(_, a)| failed(Some(*a), *at)).count() as u32;
            }
            SessionEntry::VideoLevel {
                participant_id, off, ..
            } => {
                video_off.insert(participant_id, off.as_deref());
            }
            SessionEntry::Stats(s) => {
                // A sample in which nothing flowed either way (waiting
                // alone for the other side) says nothing about the link.
                let packets = [
                    s.received_audio_packets,
                    s.received_video_packets,
                    s.sent_audio_packets,
                    s.sent_video_packets,
                ];
                if packets.iter().all(Option::is_some) && packets.iter().flatten().sum::<u64>() == 0 {
                    continue;
                }
                let secs = finite(Some(s.interval_secs))
                    .filter(|s| *s > 0.0)
                    .unwrap_or(STATS_INTERVAL_SECS);
                match station(s.participant_id.as_deref(), s.user_id.or(*user)) {
                    Some(true) => {
                        acc.row.samples += 1;
                        acc.loss.extend(finite(s.loss_pct));
                        acc.loss_mean.add(s.loss_pct, secs);
                        acc.rtt.add(s.rtt_ms, secs);
                        acc.jitter.add(s.jitter_ms, secs);
                        acc.bitrate_in.add(s.bitrate_in_kbps.map(|b| b as f64), secs);
                        acc.bitrate_out.add(s.bitrate_out_kbps.map(|b| b as f64), secs);
                        // Audio only because the link could not carry the
                        // video, not because a camera was off or someone
                        // chose it.
                        let why = s
                            .participant_id
                            .as_deref()
                            .and_then(|p| video_off.get(p).copied().flatten());
                        if s.audio_only && why == Some("bandwidth") {
                            acc.row.audio_only_secs += secs;
                        }
                    }
                    Some(false) => {
                        acc.hospital_loss.add(s.loss_pct, secs);
                        acc.hospital_rtt.add(s.rtt_ms, secs);
                    }
                    None => {}
                }
            }
            // Not read (the query asks for the kinds above only).
            SessionEntry::StateChanged { .. }
            | SessionEntry::Accepted {}
            | SessionEntry::Rescheduled { .. }
            | SessionEntry::Photo { .. }
            | SessionEntry::Reconnecting { .. }
            | SessionEntry::Media { .. }
            | SessionEntry::Chat { .. }
            | SessionEntry::Error { .. }
            | SessionEntry::ErrorsSuppressed { .. }
            | SessionEntry::TrackPublished { .. }
            | SessionEntry::TrackUnpublished { .. }
            | SessionEntry::MediaRepair { .. }
            | SessionEntry::MediaResumed { .. }
            | SessionEntry::AddressChanged { .. }
            | SessionEntry::RejoinRequested { .. }
            | SessionEntry::CallPlaced { .. } => {}
        }
    }
    // The consultation is over (or its log has been quiet for a while: an
    // interrupted call no one came back to): its attempts are too.
    let quiet = last_at.is_some_and(|t| (now.0 - t.0).num_minutes() >= 10);
    if r.ended_at.is_some() || quiet {
        let end = r.ended_at.or(last_at).unwrap_or(now);
        acc.row.failed_joins += open.values().filter(|a| failed(Some(**a), end)).count() as u32;
    }
}

impl Acc {
    fn finish(mut self) -> StationConnectivity {
        let mut r = self.row;
        r.avg_loss_pct = self.loss_mean.get();
        r.worst_loss_pct = self.loss.iter().copied().reduce(f64::max);
        r.p95_loss_pct = percentile(&mut self.loss, 95.0);
        r.avg_rtt_ms = self.rtt.get();
        r.avg_jitter_ms = self.jitter.get();
        r.avg_bitrate_in_kbps = self.bitrate_in.get();
        r.avg_bitrate_out_kbps = self.bitrate_out.get();
        r.hospital_avg_loss_pct = self.hospital_loss.get();
        r.hospital_avg_rtt_ms = self.hospital_rtt.get();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_days_are_local() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        // 2026-12-06 is a Sunday, 2026-12-07 a Monday.
        assert_eq!(Bucket::Week.start_of(d("2026-12-06")), d("2026-11-30"));
        assert_eq!(Bucket::Week.start_of(d("2026-12-07")), d("2026-12-07"));
        assert_eq!(Bucket::Day.start_of(d("2026-12-06")), d("2026-12-06"));
        // 23:30 UTC is 06:30 the next morning in Hà Nội.
        let t: Timestamp = "2026-12-06T23:30:00Z".parse().unwrap();
        assert_eq!(local_day(t), d("2026-12-07"));
        assert_eq!(
            local_midnight(d("2026-12-07")).to_string(),
            "2026-12-06T17:00:00.000Z"
        );
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&mut v, 95.0), Some(19.0));
        assert_eq!(percentile(&mut [3.0], 95.0), Some(3.0));
        assert_eq!(percentile(&mut [], 95.0), None);
    }
}
