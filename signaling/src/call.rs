//! Calls: a consultation's media room, its members, and the glue between the
//! signaling sockets and the SFU.
//!
//! A room is keyed by consultation id. A member is one participant (one peer
//! connection) of one user, bound to the socket that joined it. SFU events are
//! routed to the member's socket, and kept in the session log (joins, leaves,
//! ICE states, reconnections, a stats sample per participant every 5 s).
//!
//! A socket that drops leaves its member in the room for [`RESUME_GRACE`]:
//! a new socket of the same user that sends `join` with `resume` takes it over
//! (with an ICE-restart offer), so no ghost duplicate appears; otherwise the
//! member is removed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use telehealth_records::{Consultation, ConsultationId, ConsultationState, Role, UserId};
use telehealth_sfu::{
    CloseReason, ConnectionState, Direction, MediaKind, ParticipantId, RoomId, Sfu, SfuError, SfuEvent,
    StatsSample,
};
use tokio::sync::mpsc;

use crate::live::Hub;
use crate::turn::IceServers;
use telehealth_records::Store;

/// How long a dropped socket's participant waits to be resumed.
pub const RESUME_GRACE: Duration = Duration::from_secs(20);
/// How early before a booked slot its participants may join.
pub const EARLY_JOIN: chrono::Duration = chrono::Duration::minutes(15);
/// How long after a booked slot's end it can still be joined.
pub const LATE_JOIN: chrono::Duration = chrono::Duration::minutes(60);

/// A message for one socket, already serialized.
pub type Outbox = mpsc::UnboundedSender<String>;

struct Member {
    user_id: UserId,
    role: Role,
    outbox: Option<Outbox>,
    audio: bool,
    video: bool,
    dropped_at: Option<Instant>,
}

#[derive(Default)]
struct Room {
    members: HashMap<ParticipantId, Member>,
}

/// Why a join was refused (stable codes for the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    NotAParticipant,
    NotOpenYet,
    Closed,
    NotAccepted,
    BadSdp,
    UnknownParticipant,
    Media,
}

impl JoinError {
    pub fn code(self) -> &'static str {
        match self {
            JoinError::NotAParticipant => "not_a_participant",
            JoinError::NotOpenYet => "not_open_yet",
            JoinError::Closed => "consultation_closed",
            JoinError::NotAccepted => "not_accepted_yet",
            JoinError::BadSdp => "bad_sdp",
            JoinError::UnknownParticipant => "cannot_resume",
            JoinError::Media => "media_error",
        }
    }

    pub fn messages(self) -> (&'static str, &'static str) {
        match self {
            JoinError::NotAParticipant => (
                "Bạn không tham gia ca tư vấn này.",
                "You are not a participant of this consultation.",
            ),
            JoinError::NotOpenYet => (
                "Ca tư vấn chưa đến giờ. Bạn có thể vào trước giờ hẹn 15 phút.",
                "Not open yet: you can join 15 minutes before the booked time.",
            ),
            JoinError::Closed => (
                "Ca tư vấn đã kết thúc hoặc đã hủy.",
                "This consultation has ended or was cancelled.",
            ),
            JoinError::NotAccepted => (
                "Chưa có bác sĩ nhận ca này. Vui lòng chờ.",
                "No doctor has accepted this request yet. Please wait.",
            ),
            JoinError::BadSdp => (
                "Trình duyệt gửi mô tả phiên không hợp lệ. Tải lại trang và thử lại.",
                "The browser sent an invalid session description. Reload and try again.",
            ),
            JoinError::UnknownParticipant => (
                "Phiên cũ đã hết hạn; hãy vào lại cuộc gọi.",
                "The previous session expired; join the call again.",
            ),
            JoinError::Media => (
                "Máy chủ hình ảnh và âm thanh đang gặp lỗi. Thử lại sau ít phút.",
                "The media server failed. Try again in a few minutes.",
            ),
        }
    }
}

/// Every live call on this node.
#[derive(Clone)]
pub struct Calls {
    pub sfu: Sfu,
    rooms: Arc<Mutex<HashMap<ConsultationId, Room>>>,
    ice_servers: Arc<IceServers>,
}

fn room_id(c: ConsultationId) -> RoomId {
    RoomId::new(c.to_string())
}

impl Calls {
    pub fn new(sfu: Sfu, ice_servers: IceServers) -> Self {
        Self {
            sfu,
            rooms: Arc::new(Mutex::new(HashMap::new())),
            ice_servers: Arc::new(ice_servers),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConsultationId, Room>> {
        // A poisoned lock means a panic mid-update elsewhere; the map itself
        // is still consistent (every update is a single insert or remove).
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a message to every member of a room except `except`.
    pub fn broadcast(&self, c: ConsultationId, except: Option<&ParticipantId>, msg: &Value) {
        let text = msg.to_string();
        if let Some(room) = self.lock().get(&c) {
            for (pid, m) in &room.members {
                if Some(pid) != except {
                    if let Some(tx) = &m.outbox {
                        let _ = tx.send(text.clone());
                    }
                }
            }
        }
    }

    fn send_to(&self, c: ConsultationId, pid: &ParticipantId, msg: &Value) {
        if let Some(tx) = self
            .lock()
            .get(&c)
            .and_then(|r| r.members.get(pid))
            .and_then(|m| m.outbox.clone())
        {
            let _ = tx.send(msg.to_string());
        }
    }

    /// Who is in a room, for `joined`.
    pub fn roster(&self, c: ConsultationId) -> Vec<Value> {
        self.lock()
            .get(&c)
            .map(|r| {
                r.members
                    .iter()
                    .map(|(pid, m)| json!({"participant_id": pid.as_str(), "user_id": m.user_id, "role": m.role, "audio": m.audio, "video": m.video, "connected": m.dropped_at.is_none()}))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Roles present (connected or within grace) in a room.
    fn roles(&self, c: ConsultationId) -> Vec<Role> {
        self.lock()
            .get(&c)
            .map(|r| r.members.values().map(|m| m.role).collect())
            .unwrap_or_default()
    }

    /// Checks that `user` may join `c` now.
    pub fn may_join(
        c: &Consultation,
        user: UserId,
        role: Role,
        facility: Option<telehealth_records::FacilityId>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), JoinError> {
        let member = match role {
            Role::Doctor => c.doctor_id == Some(user),
            Role::HealthWorker => facility == Some(c.station_id),
            Role::Admin => false,
        };
        if !member {
            return Err(JoinError::NotAParticipant);
        }
        match c.state {
            ConsultationState::Completed | ConsultationState::Cancelled | ConsultationState::NoShow => {
                Err(JoinError::Closed)
            }
            ConsultationState::Requested if c.doctor_id.is_none() => Err(JoinError::NotAccepted),
            ConsultationState::Scheduled => match (c.scheduled_start, c.scheduled_end) {
                (Some(s), _) if now < s.0 - EARLY_JOIN => Err(JoinError::NotOpenYet),
                (_, Some(e)) if now > e.0 + LATE_JOIN => Err(JoinError::Closed),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Joins a user's new participant; returns its id and the SDP answer.
    pub async fn join(
        &self,
        c: ConsultationId,
        user: UserId,
        role: Role,
        offer: String,
        outbox: Outbox,
    ) -> Result<(ParticipantId, String), JoinError> {
        let room = room_id(c);
        match self.sfu.create_room(room.clone()).await {
            Ok(()) | Err(SfuError::RoomExists(_)) => {}
            Err(e) => {
                tracing::error!(consultation = %c, error = %e, "cannot create room");
                return Err(JoinError::Media);
            }
        }
        let pid = ParticipantId::new(uuid::Uuid::new_v4().to_string());
        // Register before joining so the first SFU offer finds the socket.
        self.lock().entry(c).or_default().members.insert(
            pid.clone(),
            Member {
                user_id: user,
                role,
                outbox: Some(outbox),
                audio: true,
                video: true,
                dropped_at: None,
            },
        );
        match self.sfu.join(room, pid.clone(), offer).await {
            Ok(answer) => Ok((pid, answer)),
            Err(e) => {
                self.forget(c, &pid);
                tracing::info!(consultation = %c, error = %e, "join refused by the SFU");
                Err(match e {
                    SfuError::InvalidSdp(_) => JoinError::BadSdp,
                    _ => JoinError::Media,
                })
            }
        }
    }

    /// A new socket of the same user takes over a participant kept in grace;
    /// the offer restarts ICE. Returns the answer.
    pub async fn resume(
        &self,
        c: ConsultationId,
        pid: &ParticipantId,
        user: UserId,
        offer: String,
        outbox: Outbox,
    ) -> Result<String, JoinError> {
        {
            let mut rooms = self.lock();
            let m = rooms
                .get_mut(&c)
                .and_then(|r| r.members.get_mut(pid))
                .ok_or(JoinError::UnknownParticipant)?;
            if m.user_id != user {
                return Err(JoinError::UnknownParticipant);
            }
            m.outbox = Some(outbox);
            m.dropped_at = None;
        }
        self.sfu
            .handle_offer(room_id(c), pid.clone(), offer)
            .await
            .map_err(|e| match e {
                SfuError::InvalidSdp(_) => JoinError::BadSdp,
                SfuError::UnknownParticipant { .. } | SfuError::UnknownRoom(_) => {
                    JoinError::UnknownParticipant
                }
                _ => JoinError::Media,
            })
    }

    fn forget(&self, c: ConsultationId, pid: &ParticipantId) -> Option<Member> {
        let mut rooms = self.lock();
        let room = rooms.get_mut(&c)?;
        let m = room.members.remove(pid);
        if room.members.is_empty() {
            rooms.remove(&c);
        }
        m
    }

    /// The socket of a member went away: keep the member for the grace period.
    pub fn socket_dropped(&self, c: ConsultationId, pid: &ParticipantId) {
        let user = {
            let mut rooms = self.lock();
            let Some(m) = rooms.get_mut(&c).and_then(|r| r.members.get_mut(pid)) else {
                return;
            };
            m.outbox = None;
            m.dropped_at = Some(Instant::now());
            m.user_id
        };
        self.broadcast(
            c,
            Some(pid),
            &json!({"type": "participant_reconnecting", "participant_id": pid.as_str(), "user_id": user}),
        );
        let calls = self.clone();
        let pid = pid.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RESUME_GRACE).await;
            let expired = calls
                .lock()
                .get(&c)
                .and_then(|r| r.members.get(&pid))
                .is_some_and(|m| m.dropped_at.is_some_and(|d| d.elapsed() >= RESUME_GRACE));
            if expired {
                tracing::info!(consultation = %c, participant = %pid, "not resumed in time; removing");
                let _ = calls.sfu.leave(room_id(c), pid).await;
            }
        });
    }

    pub fn set_media(&self, c: ConsultationId, pid: &ParticipantId, audio: bool, video: bool) {
        if let Some(m) = self.lock().get_mut(&c).and_then(|r| r.members.get_mut(pid)) {
            m.audio = audio;
            m.video = video;
        }
    }

    pub fn member_user(&self, c: ConsultationId, pid: &ParticipantId) -> Option<(UserId, Role)> {
        self.lock()
            .get(&c)
            .and_then(|r| r.members.get(pid))
            .map(|m| (m.user_id, m.role))
    }

    /// STUN/TURN servers to hand to pages (TURN with per-user credentials).
    pub fn ice_servers(&self) -> &IceServers {
        &self.ice_servers
    }

    /// Whether the doctor and someone from the station are both in the room.
    pub fn both_sides_present(&self, c: ConsultationId) -> bool {
        let roles = self.roles(c);
        roles.contains(&Role::Doctor) && roles.contains(&Role::HealthWorker)
    }
}

/// Per-track loss bookkeeping: cumulative counters become per-interval loss.
#[derive(Default)]
struct LossMemory {
    lost: HashMap<(String, String, String), i64>,
}

impl LossMemory {
    /// One participant's sample, as stored in the session log.
    fn sample_json(&mut self, s: &StatsSample, user: Option<UserId>) -> Value {
        let (mut lost, mut got) = (0i64, 0u64);
        let (mut bin, mut bout) = (0u64, 0u64);
        let (mut out_audio, mut out_video) = (0u64, 0u64);
        let mut jitter: Option<f64> = None;
        let (mut nacks, mut plis) = (0u64, 0u64);
        let mut layers = Vec::new();
        for t in &s.tracks {
            let key = (
                s.room.to_string(),
                s.participant.to_string(),
                format!("{}:{:?}", t.track, t.direction),
            );
            let prev = self.lost.insert(key, t.packets_lost).unwrap_or(0);
            lost += (t.packets_lost - prev).max(0);
            got += t.packets;
            jitter = match (jitter, t.jitter_s) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            nacks += t.nacks;
            plis += t.plis;
            match t.direction {
                Direction::Inbound => bin += t.bitrate_bps,
                Direction::Outbound => {
                    bout += t.bitrate_bps;
                    match t.kind {
                        MediaKind::Audio => out_audio += t.packets,
                        MediaKind::Video => out_video += t.packets,
                    }
                    if let Some(l) = t.layer {
                        layers.push(l);
                    }
                }
            }
        }
        let total = got as f64 + lost as f64;
        json!({
            "user_id": user,
            "participant_id": s.participant.as_str(),
            "loss_pct": if total > 0.0 { (lost as f64 * 100.0 / total * 100.0).round() / 100.0 } else { 0.0 },
            "rtt_ms": s.rtt_s.map(|r| (r * 1000.0 * 10.0).round() / 10.0),
            "jitter_ms": jitter.map(|j| (j * 1000.0 * 10.0).round() / 10.0),
            "bitrate_in_kbps": bin / 1000,
            "bitrate_out_kbps": bout / 1000,
            "audio_only": out_audio > 0 && out_video == 0,
            "nacks": nacks,
            "plis": plis,
            "layers": layers,
            "send_estimate_kbps": s.send_estimate_bps.map(|b| b / 1000),
        })
    }
}

/// Routes SFU events to sockets and into the session log, until the SFU stops.
pub async fn dispatch(calls: Calls, store: Store, hub: Hub) {
    let mut events = match calls.sfu.events().await {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to SFU events");
            return;
        }
    };
    let mut loss = LossMemory::default();
    while let Some(ev) = events.recv().await {
        let Ok(c) = ev.room().as_str().parse::<ConsultationId>() else {
            continue;
        };
        let log = |kind: &'static str, user: Option<UserId>, data: Value| {
            let store = store.clone();
            async move {
                if let Err(e) = store.append_session_event(c, kind, user, data).await {
                    tracing::error!(consultation = %c, error = %e, "cannot write session event");
                }
            }
        };
        match ev {
            SfuEvent::Offer { participant, sdp, .. } => {
                calls.send_to(c, &participant, &json!({"type": "offer", "sdp": sdp}));
            }
            SfuEvent::IceCandidate {
                participant,
                candidate,
                ..
            } => {
                calls.send_to(
                    c,
                    &participant,
                    &json!({"type": "ice", "candidate": {"candidate": candidate.candidate, "sdp_mid": candidate.sdp_mid, "sdp_mline_index": candidate.sdp_mline_index, "username_fragment": candidate.username_fragment}}),
                );
            }
            SfuEvent::ConnectionState {
                participant, state, ..
            } => {
                let user = calls.member_user(c, &participant).map(|m| m.0);
                let s = match state {
                    ConnectionState::New => "new",
                    ConnectionState::Connecting => "connecting",
                    ConnectionState::Connected => "connected",
                    ConnectionState::Disconnected => "disconnected",
                    ConnectionState::Failed => "failed",
                    ConnectionState::Closed => "closed",
                };
                log(
                    "ice_state",
                    user,
                    json!({"participant_id": participant.as_str(), "state": s}),
                )
                .await;
                calls.broadcast(
                    c,
                    None,
                    &json!({"type": "connection_state", "participant_id": participant.as_str(), "state": s}),
                );
            }
            SfuEvent::TrackPublished {
                participant,
                track,
                kind,
                ..
            } => {
                let user = calls.member_user(c, &participant).map(|m| m.0);
                let kind = match kind {
                    MediaKind::Audio => "audio",
                    MediaKind::Video => "video",
                };
                log(
                    "track_published",
                    user,
                    json!({"participant_id": participant.as_str(), "track": track.as_str(), "kind": kind}),
                )
                .await;
            }
            SfuEvent::TrackUnpublished {
                participant, track, ..
            } => {
                let user = calls.member_user(c, &participant).map(|m| m.0);
                log(
                    "track_unpublished",
                    user,
                    json!({"participant_id": participant.as_str(), "track": track.as_str()}),
                )
                .await;
            }
            SfuEvent::ParticipantLeft {
                participant, reason, ..
            } => {
                let m = calls.forget(c, &participant);
                let user = m.as_ref().map(|m| m.user_id);
                log(
                    "left",
                    user,
                    json!({"participant_id": participant.as_str(), "reason": reason.code()}),
                )
                .await;
                if let Some(tx) = m.and_then(|m| m.outbox) {
                    let _ = tx.send(json!({"type": "left", "participant_id": participant.as_str(), "reason": reason.code()}).to_string());
                }
                calls.broadcast(c, None, &json!({"type": "participant_left", "participant_id": participant.as_str(), "user_id": user, "reason": reason.code()}));
                // Everybody gone without the doctor ending it: interrupted.
                if calls.roles(c).is_empty()
                    && reason != CloseReason::RoomClosed
                    && reason != CloseReason::Shutdown
                {
                    let _ = calls.sfu.close_room(room_id(c)).await;
                    if let Ok(cons) = store.consultation(c).await {
                        if cons.state == ConsultationState::InProgress {
                            if let Ok(cons) = store
                                .transition_consultation(
                                    &telehealth_records::Actor::system(),
                                    c,
                                    ConsultationState::Interrupted,
                                )
                                .await
                            {
                                hub.publish(&cons);
                            }
                        }
                    }
                }
            }
            SfuEvent::RoomClosed { .. } => {
                log("room_closed", None, json!({})).await;
            }
            SfuEvent::Stats(sample) => {
                let user = calls.member_user(c, &sample.participant).map(|m| m.0);
                let data = loss.sample_json(&sample, user);
                log("stats", user, data).await;
            }
        }
    }
    tracing::info!("SFU event stream ended");
}
