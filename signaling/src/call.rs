//! Calls: a consultation's media room, its members, and the glue between the
//! signaling sockets and the SFU.
//!
//! A room is keyed by consultation id. A member is one participant (one peer
//! connection) of one user, bound to the socket that joined it. SFU events are
//! routed to the member's socket, and kept in the session log (joins, leaves,
//! ICE states, reconnections, a stats sample per participant every 5 s).
//!
//! A member's *seat* outlives its socket and its media connection: a
//! dropped socket leaves the member in the room for the seat hold
//! ([`Calls::seat_hold`], minutes: a rural link can be gone that long). A new
//! socket of the same user takes it over with `join` + `resume` (the media
//! connection carries on, or restarts ICE), or with a fresh `join` when the
//! page lost its connection (a reload): the same participant id comes back
//! with a new connection, so no ghost duplicate appears. A seat whose socket
//! stays away for the whole hold is removed ([`CloseReason::SeatExpired`]).
//! Only the socket that holds a seat may act for it: a socket that lost its
//! seat to a newer one is told (`left`, reason `replaced`).
//!
//! Seats are this module's; connections are the SFU's. Each seat names the
//! SFU connection it is on ([`telehealth_sfu::ConnectionId`], from the
//! join's answer), and a leave from the SFU ends a seat only when it names
//! that connection: a connection that failed just as its page came back
//! with a new one (a reload) does not take the new one's seat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use telehealth_records::{
    Consultation, ConsultationId, ConsultationState, Role, SessionEntry, SessionStats, UserId,
};
use telehealth_sfu::{
    CloseReason, ConnectionId, ConnectionState, Direction, MediaKind, ParticipantId, RoomId, Sfu, SfuError,
    SfuEvent, StatsSample, VideoLevel,
};
use tokio::sync::mpsc;

use crate::live::Hub;
use crate::protocol::{RosterEntry, ServerCandidate, ServerMessage};
use crate::turn::IceServers;
use telehealth_records::Store;

/// How long a participant's seat waits for its socket to come back, unless
/// configured (`--seat-hold-secs`). Three minutes: a commune's 4G drops for
/// tens of seconds when a phone changes cell or the cell is overloaded, and
/// a power cut at the station's router takes a minute or two to come back.
pub const DEFAULT_SEAT_HOLD: Duration = Duration::from_secs(180);

/// A message for one socket, already serialized.
pub type Outbox = mpsc::UnboundedSender<String>;

struct Member {
    user_id: UserId,
    role: Role,
    outbox: Option<Outbox>,
    audio: bool,
    video: bool,
    dropped_at: Option<Instant>,
    /// The SFU connection the seat is on; `None` while a join makes a new one.
    connection: Option<ConnectionId>,
    /// Leaves the SFU reported while a join was making a new connection:
    /// whether each was about the old connection or the new one is known
    /// only when the join answers.
    left_while_joining: Vec<ConnectionId>,
}

/// What an SFU leave means for the seats ([`Calls::connection_left`]).
enum SeatLeft {
    /// The seat was on that connection: it is gone.
    Gone(Member),
    /// No seat for that participant.
    NoSeat,
    /// About a connection the seat has moved on from (or is moving on
    /// from): the seat stays.
    Stale,
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
    seat_hold: Duration,
    /// Tests: a join stops here, its seat marked as joining, until let go.
    #[cfg(test)]
    pause_join: Arc<Mutex<Option<tests::Pause>>>,
}

/// A successful join.
#[derive(Debug)]
pub struct Joined {
    pub participant: ParticipantId,
    /// The SDP answer to the join's offer; `None` for a resume without one.
    pub answer: Option<String>,
    /// The user was already in the room: same participant, back in its seat.
    pub returned: bool,
}

fn same_socket(a: &Option<Outbox>, b: &Outbox) -> bool {
    a.as_ref().is_some_and(|a| a.same_channel(b))
}

/// Tells a socket that its seat was taken over by a newer one of the same user.
fn tell_replaced(old: Option<Outbox>, new: &Outbox, pid: &ParticipantId) {
    if let Some(old) = old.filter(|o| !o.same_channel(new)) {
        let _ = old.send(
            ServerMessage::Left {
                participant_id: pid.as_str().to_owned(),
                reason: "replaced",
            }
            .to_text(),
        );
    }
}

fn room_id(c: ConsultationId) -> RoomId {
    RoomId::new(c.to_string())
}

impl Calls {
    pub fn new(sfu: Sfu, ice_servers: IceServers, seat_hold: Duration) -> Self {
        Self {
            sfu,
            rooms: Arc::new(Mutex::new(HashMap::new())),
            ice_servers: Arc::new(ice_servers),
            seat_hold,
            #[cfg(test)]
            pause_join: Arc::default(),
        }
    }

    /// How long a seat waits for its socket.
    pub fn seat_hold(&self) -> Duration {
        self.seat_hold
    }

    /// Whether this socket (its outbox) holds the participant's seat.
    pub fn holds_seat(&self, c: ConsultationId, pid: &ParticipantId, socket: &Outbox) -> bool {
        self.lock()
            .get(&c)
            .and_then(|r| r.members.get(pid))
            .is_some_and(|m| same_socket(&m.outbox, socket))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConsultationId, Room>> {
        // A poisoned lock means a panic mid-update elsewhere; the map itself
        // is still consistent (every update is a single insert or remove).
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends a message to every member of a room except `except`.
    pub fn broadcast(&self, c: ConsultationId, except: Option<&ParticipantId>, msg: &ServerMessage) {
        let text = msg.to_text();
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

    fn send_to(&self, c: ConsultationId, pid: &ParticipantId, msg: &ServerMessage) {
        if let Some(tx) = self
            .lock()
            .get(&c)
            .and_then(|r| r.members.get(pid))
            .and_then(|m| m.outbox.clone())
        {
            let _ = tx.send(msg.to_text());
        }
    }

    /// Who is in a room, for `joined`.
    pub fn roster(&self, c: ConsultationId) -> Vec<RosterEntry> {
        self.lock()
            .get(&c)
            .map(|r| {
                r.members
                    .iter()
                    .map(|(pid, m)| RosterEntry {
                        participant_id: pid.as_str().to_owned(),
                        user_id: m.user_id,
                        role: m.role,
                        audio: m.audio,
                        video: m.video,
                        connected: m.dropped_at.is_none(),
                    })
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
        use telehealth_records::lifecycle::{self, CallClosed};
        if !lifecycle::is_participant(c, user, role, facility) {
            return Err(JoinError::NotAParticipant);
        }
        lifecycle::call_open(c, now).map_err(|e| match e {
            CallClosed::NotAccepted => JoinError::NotAccepted,
            CallClosed::NotOpenYet => JoinError::NotOpenYet,
            CallClosed::Closed => JoinError::Closed,
        })
    }

    /// Joins a user with a fresh connection (its offer); returns the answer.
    /// A user already in the room takes its seat back: same participant id,
    /// the new connection replaces the old one, and an older socket that
    /// still held the seat is told it was replaced.
    pub async fn join(
        &self,
        c: ConsultationId,
        user: UserId,
        role: Role,
        offer: String,
        outbox: Outbox,
    ) -> Result<Joined, JoinError> {
        let room = room_id(c);
        match self.sfu.create_room(room.clone()).await {
            Ok(()) | Err(SfuError::RoomExists(_)) => {}
            Err(e) => {
                tracing::error!(consultation = %c, error = %e, "cannot create room");
                return Err(JoinError::Media);
            }
        }
        // Register before joining so the first SFU offer finds the socket.
        // The seat's connection is unknown until the SFU answers: a leave
        // reported meanwhile is kept aside, not applied ([`Member`]).
        let (pid, previous) = {
            let mut rooms = self.lock();
            let r = rooms.entry(c).or_default();
            let existing = r
                .members
                .iter()
                .find(|(_, m)| m.user_id == user)
                .map(|(p, _)| p.clone());
            match existing {
                Some(pid) => {
                    let m = r.members.get_mut(&pid).map(|m| {
                        (
                            m.outbox.replace(outbox.clone()),
                            m.dropped_at.take(),
                            m.connection.take(),
                        )
                    });
                    (pid, m)
                }
                None => {
                    let pid = ParticipantId::new(uuid::Uuid::new_v4().to_string());
                    r.members.insert(
                        pid.clone(),
                        Member {
                            user_id: user,
                            role,
                            outbox: Some(outbox.clone()),
                            audio: true,
                            video: true,
                            dropped_at: None,
                            connection: None,
                            left_while_joining: Vec::new(),
                        },
                    );
                    (pid, None)
                }
            }
        };
        #[cfg(test)]
        {
            let pause = self.pause_join.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(p) = pause {
                p.reached.notify_one();
                p.resume.notified().await;
            }
        }
        match self.sfu.join_connection(room.clone(), pid.clone(), offer).await {
            Ok((answer, connection)) => {
                let seated = {
                    let mut rooms = self.lock();
                    match rooms.get_mut(&c).and_then(|r| r.members.get_mut(&pid)) {
                        // The new connection ended before its join answered
                        // (the room closed meanwhile).
                        Some(m) if m.left_while_joining.contains(&connection) => false,
                        Some(m) => {
                            // Two joins of one user crossing (two tabs): the
                            // SFU kept the later connection, the larger id.
                            m.connection = Some(m.connection.map_or(connection, |k| k.max(connection)));
                            m.left_while_joining.clear();
                            true
                        }
                        None => false,
                    }
                };
                if !seated {
                    self.forget(c, &pid);
                    let _ = self.sfu.remove(room, pid, CloseReason::Removed).await;
                    return Err(JoinError::Media);
                }
                let returned = previous.is_some();
                if let Some((old, _, _)) = previous {
                    tell_replaced(old, &outbox, &pid);
                }
                Ok(Joined {
                    participant: pid,
                    answer: Some(answer),
                    returned,
                })
            }
            Err(e) => {
                match previous {
                    // The old connection is untouched: give its seat back,
                    // unless it ended while this join was refused.
                    Some((old, dropped, connection)) => {
                        let ended = {
                            let mut rooms = self.lock();
                            match rooms.get_mut(&c).and_then(|r| r.members.get_mut(&pid)) {
                                Some(m) => {
                                    if same_socket(&m.outbox, &outbox) {
                                        m.outbox = old;
                                        m.dropped_at = dropped;
                                    }
                                    // Unless another join of the same user
                                    // answered meanwhile (it owns the seat now).
                                    match (m.connection, connection) {
                                        (None, Some(k)) if m.left_while_joining.contains(&k) => true,
                                        (None, Some(k)) => {
                                            m.connection = Some(k);
                                            m.left_while_joining.clear();
                                            false
                                        }
                                        // Another join is still making its connection: it decides.
                                        _ => false,
                                    }
                                }
                                None => false,
                            }
                        };
                        if ended {
                            self.forget(c, &pid);
                            self.broadcast(
                                c,
                                None,
                                &ServerMessage::ParticipantLeft {
                                    participant_id: pid.as_str().to_owned(),
                                    user_id: Some(user),
                                    reason: CloseReason::ConnectionFailed.code(),
                                },
                            );
                        }
                    }
                    None => {
                        self.forget(c, &pid);
                    }
                }
                // The code, not the text: an SDP parser's message quotes the
                // client's SDP (addresses, fingerprints).
                tracing::info!(consultation = %c, error = e.code(), "join refused by the SFU");
                Err(match e {
                    SfuError::InvalidSdp(_) => JoinError::BadSdp,
                    _ => JoinError::Media,
                })
            }
        }
    }

    /// A new socket of the same user takes over a seat whose connection
    /// carries on (the page kept its peer connection; only the socket
    /// dropped). An offer of ours that waited for its answer is sent again
    /// on the new socket.
    pub async fn resume(
        &self,
        c: ConsultationId,
        pid: &ParticipantId,
        user: UserId,
        outbox: Outbox,
    ) -> Result<(), JoinError> {
        let old = {
            let mut rooms = self.lock();
            let m = rooms
                .get_mut(&c)
                .and_then(|r| r.members.get_mut(pid))
                .ok_or(JoinError::UnknownParticipant)?;
            if m.user_id != user {
                return Err(JoinError::UnknownParticipant);
            }
            m.dropped_at = None;
            m.outbox.replace(outbox.clone())
        };
        tell_replaced(old, &outbox, pid);
        self.sfu
            .set_reachable(room_id(c), pid.clone(), true)
            .await
            .map_err(|e| match e {
                SfuError::UnknownParticipant { .. } | SfuError::UnknownRoom(_) => {
                    JoinError::UnknownParticipant
                }
                _ => JoinError::Media,
            })
    }

    /// The SFU reports that one of a participant's connections ended. The
    /// seat goes with it only if it was on that connection: a leave that
    /// crossed a rejoin (the old connection failed as the page came back
    /// with a new one) must not take the new one's seat.
    fn connection_left(&self, c: ConsultationId, pid: &ParticipantId, connection: ConnectionId) -> SeatLeft {
        {
            let mut rooms = self.lock();
            let Some(m) = rooms.get_mut(&c).and_then(|r| r.members.get_mut(pid)) else {
                return SeatLeft::NoSeat;
            };
            match m.connection {
                Some(k) if k == connection => {}
                Some(_) => return SeatLeft::Stale,
                None => {
                    m.left_while_joining.push(connection);
                    return SeatLeft::Stale;
                }
            }
        }
        self.forget(c, pid).map_or(SeatLeft::NoSeat, SeatLeft::Gone)
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

    /// A socket went away. If it held a seat, the seat waits for the user's
    /// next socket for [`Calls::seat_hold`], then is removed.
    pub async fn socket_dropped(&self, c: ConsultationId, pid: &ParticipantId, socket: &Outbox) {
        let user = {
            let mut rooms = self.lock();
            let Some(m) = rooms.get_mut(&c).and_then(|r| r.members.get_mut(pid)) else {
                return;
            };
            if !same_socket(&m.outbox, socket) {
                // A newer socket holds the seat already.
                return;
            }
            m.outbox = None;
            m.dropped_at = Some(Instant::now());
            m.user_id
        };
        self.broadcast(
            c,
            Some(pid),
            &ServerMessage::ParticipantReconnecting {
                participant_id: pid.as_str().to_owned(),
                user_id: user,
                seat_hold_s: self.seat_hold.as_secs(),
            },
        );
        // Nobody can take our messages meanwhile: offers wait.
        let _ = self.sfu.set_reachable(room_id(c), pid.clone(), false).await;
        // A new socket may have taken the seat while that was on its way.
        let back = self
            .lock()
            .get(&c)
            .and_then(|r| r.members.get(pid))
            .is_some_and(|m| m.outbox.is_some());
        if back {
            let _ = self.sfu.set_reachable(room_id(c), pid.clone(), true).await;
        }
        let calls = self.clone();
        let pid = pid.clone();
        tokio::spawn(async move {
            tokio::time::sleep(calls.seat_hold).await;
            let expired = calls
                .lock()
                .get(&c)
                .and_then(|r| r.members.get(&pid))
                .is_some_and(|m| m.dropped_at.is_some_and(|d| d.elapsed() >= calls.seat_hold));
            if expired {
                tracing::info!(consultation = %c, participant = %pid, "seat not taken back in time; removing");
                let _ = calls.sfu.remove(room_id(c), pid, CloseReason::SeatExpired).await;
            }
        });
    }

    /// The consultation is over (ended, cancelled, no-show): everyone in its
    /// call is told, and the room closes, whoever ended it and however.
    pub async fn consultation_closed(&self, c: ConsultationId, state: ConsultationState) {
        self.broadcast(
            c,
            None,
            &ServerMessage::ConsultationState {
                consultation_id: c,
                state,
            },
        );
        match self.sfu.close_room(room_id(c)).await {
            Ok(()) | Err(SfuError::UnknownRoom(_)) => {}
            Err(e) => tracing::warn!(consultation = %c, error = %e, "cannot close the room"),
        }
    }

    /// The calls this node has rooms for.
    pub fn room_ids(&self) -> Vec<ConsultationId> {
        self.lock().keys().copied().collect()
    }

    /// Rooms and seats on this node (its load, for the heartbeat).
    pub fn load(&self) -> (usize, usize) {
        let rooms = self.lock();
        (rooms.len(), rooms.values().map(|r| r.members.len()).sum())
    }

    /// This node no longer hosts `c` (another node took it over, or this
    /// one can no longer prove it holds it): its seats are let go without a
    /// word to their sockets, which the caller closes so that the pages
    /// reconnect and join where the call now is, and its room closes.
    pub async fn evict(&self, c: ConsultationId) {
        self.lock().remove(&c);
        match self.sfu.close_room(room_id(c)).await {
            Ok(()) | Err(SfuError::UnknownRoom(_)) => {}
            Err(e) => tracing::warn!(consultation = %c, error = %e, "cannot close the room"),
        }
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

    /// Whether this node has a room for `c` (someone joined and it has not
    /// closed).
    pub fn has_room(&self, c: ConsultationId) -> bool {
        self.lock().contains_key(&c)
    }

    /// Whether the doctor and someone from the station are both in the room.
    pub fn both_sides_present(&self, c: ConsultationId) -> bool {
        let roles = self.roles(c);
        roles.contains(&Role::Doctor) && roles.contains(&Role::HealthWorker)
    }
}

/// Per-track bookkeeping: each participant's cumulative track counters
/// (loss, NACKs, PLIs) become per-interval figures, for the session log and
/// the metrics alike.
#[derive(Default)]
struct LossMemory {
    /// Each participant's tracks (room, participant).
    seen: HashMap<(String, String), HashMap<String, crate::metrics::Seen>>,
}

impl LossMemory {
    /// A room closed: its tracks' memory goes (it grew with every call).
    fn forget(&mut self, room: &str) {
        self.seen.retain(|(r, _), _| r != room);
    }

    /// The sample's figures this interval.
    fn figures(&mut self, s: &StatsSample) -> crate::metrics::SampleFigures {
        let seen = self
            .seen
            .entry((s.room.to_string(), s.participant.to_string()))
            .or_default();
        crate::metrics::figures(s, seen)
    }

    /// One participant's sample, as stored in the session log, with its
    /// interval's `figures`.
    fn sample(
        s: &StatsSample,
        user: Option<UserId>,
        figures: &crate::metrics::SampleFigures,
    ) -> SessionStats {
        let lost: u64 = figures.packets.iter().map(|(lost, _)| lost).sum();
        let mut got = 0u64;
        let (mut bin, mut bout) = (0u64, 0u64);
        let (mut out_audio, mut out_video) = (0u64, 0u64);
        let (mut in_audio, mut in_video) = (0u64, 0u64);
        let mut jitter: Option<f64> = None;
        let (mut nacks, mut plis) = (0u64, 0u64);
        let mut layers = Vec::new();
        let (mut audio_sent, mut audio_received): (Option<&str>, Option<&str>) = (None, None);
        for t in &s.tracks {
            if t.kind == MediaKind::Audio {
                match t.direction {
                    Direction::Inbound => audio_sent = Some(&t.codec),
                    Direction::Outbound => audio_received = Some(&t.codec),
                }
            }
            got += t.packets;
            jitter = match (jitter, t.jitter_s) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            nacks += t.nacks;
            plis += t.plis;
            match t.direction {
                Direction::Inbound => {
                    bin += t.bitrate_bps;
                    match t.kind {
                        MediaKind::Audio => in_audio += t.packets,
                        MediaKind::Video => in_video += t.packets,
                    }
                }
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
        SessionStats {
            user_id: user,
            participant_id: Some(s.participant.as_str().to_owned()),
            interval_secs: s.interval.as_secs_f64(),
            loss_pct: Some(if total > 0.0 {
                (lost as f64 * 100.0 / total * 100.0).round() / 100.0
            } else {
                0.0
            }),
            rtt_ms: s.rtt_s.map(|r| (r * 1000.0 * 10.0).round() / 10.0),
            jitter_ms: jitter.map(|j| (j * 1000.0 * 10.0).round() / 10.0),
            bitrate_in_kbps: Some(bin / 1000),
            bitrate_out_kbps: Some(bout / 1000),
            audio_only: out_audio > 0 && out_video == 0,
            // Packets this interval: forwarded to the participant (what
            // it could receive) and published by it. An admin's session
            // page flags a participant that got none while another sent.
            received_audio_packets: Some(out_audio),
            received_video_packets: Some(out_video),
            sent_audio_packets: Some(in_audio),
            sent_video_packets: Some(in_video),
            nacks: Some(nacks),
            plis: Some(plis),
            layers,
            // Redundant audio shows here: `audio/red` when the participant
            // sends it (and when it receives it).
            audio_codec_sent: audio_sent.map(str::to_owned),
            audio_codec_received: audio_received.map(str::to_owned),
            send_estimate_kbps: s.send_estimate_bps.map(|b| b / 1000),
        }
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
        handle_event(&calls, &store, &hub, &mut loss, ev).await;
    }
    tracing::info!("SFU event stream ended");
}

/// One SFU event: to the sockets it concerns, and into the session log.
async fn handle_event(calls: &Calls, store: &Store, hub: &Hub, loss: &mut LossMemory, ev: SfuEvent) {
    let Ok(c) = ev.room().as_str().parse::<ConsultationId>() else {
        return;
    };
    let log = |user: Option<UserId>, entry: SessionEntry| {
        let store = store.clone();
        async move {
            if let Err(e) = store.append_session_event(c, user, entry).await {
                tracing::error!(consultation = %c, error = %e, "cannot write session event");
            }
        }
    };
    match ev {
        SfuEvent::Offer { participant, sdp, .. } => {
            calls.send_to(c, &participant, &ServerMessage::Offer { sdp });
        }
        SfuEvent::IceCandidate {
            participant,
            candidate,
            ..
        } => {
            calls.send_to(
                c,
                &participant,
                &ServerMessage::Ice {
                    candidate: ServerCandidate {
                        candidate: candidate.candidate,
                        sdp_mid: candidate.sdp_mid,
                        sdp_mline_index: candidate.sdp_mline_index,
                        username_fragment: candidate.username_fragment,
                    },
                },
            );
        }
        SfuEvent::ConnectionState {
            participant, state, ..
        } => {
            let user = calls.member_user(c, &participant).map(|m| m.0);
            let s = match state {
                ConnectionState::New => "new",
                ConnectionState::Connecting => "connecting",
                ConnectionState::Connected => {
                    crate::metrics::global().media_connected(c, participant.as_str());
                    "connected"
                }
                ConnectionState::Disconnected => "disconnected",
                ConnectionState::Failed => "failed",
                ConnectionState::Closed => "closed",
            };
            log(
                user,
                SessionEntry::IceState {
                    participant_id: participant.as_str().to_owned(),
                    state: s.to_owned(),
                },
            )
            .await;
            calls.broadcast(
                c,
                None,
                &ServerMessage::ConnectionState {
                    participant_id: participant.as_str().to_owned(),
                    state: s,
                },
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
                user,
                SessionEntry::TrackPublished {
                    participant_id: participant.as_str().to_owned(),
                    track: track.as_str().to_owned(),
                    kind: kind.to_owned(),
                },
            )
            .await;
        }
        SfuEvent::TrackUnpublished {
            participant, track, ..
        } => {
            let user = calls.member_user(c, &participant).map(|m| m.0);
            log(
                user,
                SessionEntry::TrackUnpublished {
                    participant_id: participant.as_str().to_owned(),
                    track: track.as_str().to_owned(),
                },
            )
            .await;
        }
        SfuEvent::ParticipantLeft {
            participant,
            connection,
            reason,
            ..
        } => {
            let m = match calls.connection_left(c, &participant, connection) {
                SeatLeft::Gone(m) => Some(m),
                SeatLeft::NoSeat => None,
                SeatLeft::Stale => {
                    tracing::debug!(consultation = %c, %participant, %connection, reason = reason.code(), "an old connection ended; the seat stays");
                    return;
                }
            };
            let user = m.as_ref().map(|m| m.user_id);
            log(
                user,
                SessionEntry::Left {
                    participant_id: participant.as_str().to_owned(),
                    reason: reason.code().to_owned(),
                },
            )
            .await;
            if let Some(tx) = m.and_then(|m| m.outbox) {
                let _ = tx.send(
                    ServerMessage::Left {
                        participant_id: participant.as_str().to_owned(),
                        reason: reason.code(),
                    }
                    .to_text(),
                );
            }
            calls.broadcast(
                c,
                None,
                &ServerMessage::ParticipantLeft {
                    participant_id: participant.as_str().to_owned(),
                    user_id: user,
                    reason: reason.code(),
                },
            );
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
        SfuEvent::RoomClosed { room } => {
            loss.forget(room.as_str());
            crate::metrics::global().room_closed(c);
            log(None, SessionEntry::RoomClosed {}).await;
        }
        SfuEvent::Stats(sample) => {
            let member = calls.member_user(c, &sample.participant);
            let user = member.map(|m| m.0);
            let figures = loss.figures(&sample);
            crate::metrics::global().sample(c, member.map(|m| m.1), &figures);
            let stats = LossMemory::sample(&sample, user, &figures);
            log(user, SessionEntry::Stats(stats)).await;
        }
        SfuEvent::Repaired {
            participant,
            track,
            repair,
            ..
        } => {
            let user = calls.member_user(c, &participant).map(|m| m.0);
            log(
                user,
                SessionEntry::MediaRepair {
                    participant_id: participant.as_str().to_owned(),
                    track: track.as_str().to_owned(),
                    repair: repair.code().to_owned(),
                },
            )
            .await;
        }
        SfuEvent::PathResumed {
            participant,
            silent_for,
            ..
        } => {
            let user = calls.member_user(c, &participant).map(|m| m.0);
            log(
                user,
                SessionEntry::MediaResumed {
                    participant_id: participant.as_str().to_owned(),
                    silent_ms: silent_for.as_millis() as u64,
                },
            )
            .await;
        }
        SfuEvent::PathMoved { participant, .. } => {
            let user = calls.member_user(c, &participant).map(|m| m.0);
            log(
                user,
                SessionEntry::AddressChanged {
                    participant_id: participant.as_str().to_owned(),
                },
            )
            .await;
        }
        SfuEvent::VideoLevel {
            participant,
            publisher,
            track,
            level,
            ..
        } => {
            let user = calls.member_user(c, &participant).map(|m| m.0);
            let (layer, layers, off) = match level {
                VideoLevel::Layer { layer, layers } => (Some(layer), Some(layers), None),
                VideoLevel::Off(why) => (None, None, Some(why.code())),
            };
            log(
                user,
                SessionEntry::VideoLevel {
                    participant_id: participant.as_str().to_owned(),
                    publisher_id: publisher.as_str().to_owned(),
                    track: track.as_str().to_owned(),
                    layer,
                    layers,
                    off: off.map(str::to_owned),
                },
            )
            .await;
            // Both pages: the one that stops (or starts again) getting
            // the picture, and the one whose picture it is.
            calls.broadcast(
                c,
                None,
                &ServerMessage::VideoLevel {
                    participant_id: participant.as_str().to_owned(),
                    publisher_id: publisher.as_str().to_owned(),
                    layer,
                    layers,
                    off,
                },
            );
        }
        SfuEvent::RejoinNeeded { participant, .. } => {
            let user = calls.member_user(c, &participant).map(|m| m.0);
            log(
                user,
                SessionEntry::RejoinRequested {
                    participant_id: participant.as_str().to_owned(),
                    why: "offer_unanswered".to_owned(),
                },
            )
            .await;
            calls.send_to(
                c,
                &participant,
                &ServerMessage::Rejoin {
                    reason: "offer_unanswered",
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telehealth_records::StoreOptions;
    use telehealth_sfu::SfuConfig;

    /// A real offer (the synthetic participant's WebRTC stack).
    const OFFER: &str = include_str!("../tests/fixtures/offer.sdp");

    async fn world() -> (Calls, Store, mpsc::UnboundedReceiver<SfuEvent>) {
        let sfu = Sfu::start(SfuConfig::loopback()).await.unwrap();
        let events = sfu.events().await.unwrap();
        let calls = Calls::new(sfu, IceServers::default(), DEFAULT_SEAT_HOLD);
        let dir = std::env::temp_dir().join(format!("telehealth-calls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let store = Store::open(&StoreOptions::new(url)).await.unwrap();
        (calls, store, events)
    }

    async fn next_left(events: &mut mpsc::UnboundedReceiver<SfuEvent>) -> SfuEvent {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("a leave within 10 s")
                .expect("the SFU runs");
            if matches!(ev, SfuEvent::ParticipantLeft { .. }) {
                return ev;
            }
        }
    }

    async fn in_sfu(calls: &Calls, c: ConsultationId) -> Vec<ParticipantId> {
        match calls.sfu.participants(room_id(c)).await {
            Ok(list) => list.into_iter().map(|(p, _)| p).collect(),
            Err(SfuError::UnknownRoom(_)) => Vec::new(),
            Err(e) => panic!("{e}"),
        }
    }

    fn seats(calls: &Calls, c: ConsultationId) -> Vec<ParticipantId> {
        calls
            .roster(c)
            .into_iter()
            .map(|r| ParticipantId::new(r.participant_id))
            .collect()
    }

    /// The SFU gives up on a page's connection just as the page, reloaded,
    /// joins again with a new one: the leave, handled after the rejoin, is
    /// about the old connection and must not take the new one's seat (the
    /// page would be told it left while the SFU serves it, and its socket
    /// would be refused as not in the call).
    #[tokio::test]
    async fn a_leave_that_crosses_a_rejoin_keeps_the_new_seat() {
        let (calls, store, mut events) = world().await;
        let hub = Hub::default();
        let mut loss = LossMemory::default();
        let (c, user) = (ConsultationId::new(), UserId::new());
        let (tx1, _rx1) = mpsc::unbounded_channel();
        let first = calls
            .join(c, user, Role::HealthWorker, OFFER.into(), tx1)
            .await
            .expect("joined");
        calls
            .sfu
            .remove(
                room_id(c),
                first.participant.clone(),
                CloseReason::ConnectionFailed,
            )
            .await
            .unwrap();
        let left = next_left(&mut events).await;
        // The reload's join arrives before that leave is handled.
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let again = calls
            .join(c, user, Role::HealthWorker, OFFER.into(), tx2.clone())
            .await
            .expect("joined again");
        assert_eq!(again.participant, first.participant, "the same seat");
        handle_event(&calls, &store, &hub, &mut loss, left).await;

        assert!(
            calls.holds_seat(c, &again.participant, &tx2),
            "the new socket keeps its seat"
        );
        assert_eq!(seats(&calls, c), in_sfu(&calls, c).await, "seats and SFU agree");
        assert_eq!(seats(&calls, c), vec![again.participant.clone()]);
        while let Ok(m) = rx2.try_recv() {
            assert!(
                !m.contains(r#""type":"left""#),
                "the new socket was told it left: {m}"
            );
        }

        // A leave of the connection the seat is on does end the seat.
        calls
            .sfu
            .remove(room_id(c), again.participant.clone(), CloseReason::Removed)
            .await
            .unwrap();
        let left = next_left(&mut events).await;
        handle_event(&calls, &store, &hub, &mut loss, left).await;
        assert!(seats(&calls, c).is_empty(), "the seat is gone");
        assert!(in_sfu(&calls, c).await.is_empty());
        calls.sfu.shutdown().await;
    }

    /// Where a join stops in a test ([`Calls::pause_join`]).
    pub(super) struct Pause {
        pub(super) reached: Arc<tokio::sync::Notify>,
        pub(super) resume: Arc<tokio::sync::Notify>,
    }

    /// Starts a join of `user` that stops with its seat marked as joining;
    /// returns once it stopped, with what lets it go on.
    async fn paused_join(
        calls: &Calls,
        c: ConsultationId,
        user: UserId,
        outbox: Outbox,
    ) -> (
        tokio::task::JoinHandle<Result<Joined, JoinError>>,
        Arc<tokio::sync::Notify>,
    ) {
        let (reached, resume) = (
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(tokio::sync::Notify::new()),
        );
        *calls.pause_join.lock().unwrap() = Some(Pause {
            reached: reached.clone(),
            resume: resume.clone(),
        });
        let join = tokio::spawn({
            let calls = calls.clone();
            async move { calls.join(c, user, Role::Doctor, OFFER.into(), outbox).await }
        });
        reached.notified().await;
        (join, resume)
    }

    /// A leave reported while a join makes the new connection is held until
    /// the join says which connection it made: about the old one, the new
    /// seat stays; about the new one (the room closed meanwhile), the seat
    /// goes and the join says so.
    #[tokio::test]
    async fn a_leave_during_a_rejoin_waits_for_the_join_to_say_which_connection_it_was() {
        let (calls, _store, _events) = world().await;
        let (c, user) = (ConsultationId::new(), UserId::new());
        let (tx1, _rx1) = mpsc::unbounded_channel();
        let first = calls
            .join(c, user, Role::Doctor, OFFER.into(), tx1)
            .await
            .expect("joined");
        let pid = first.participant.clone();
        let old = calls.sfu.participants(room_id(c)).await.unwrap()[0].1;

        // The old connection's leave arrives while the rejoin is under way.
        let (tx2, _rx2) = mpsc::unbounded_channel();
        let (join, resume) = paused_join(&calls, c, user, tx2.clone()).await;
        assert!(matches!(calls.connection_left(c, &pid, old), SeatLeft::Stale));
        resume.notify_one();
        join.await.unwrap().expect("the rejoin succeeds");
        assert!(calls.holds_seat(c, &pid, &tx2), "the new seat stays");
        let now_on = calls.sfu.participants(room_id(c)).await.unwrap();
        assert_eq!(seats(&calls, c), vec![pid.clone()]);
        assert_eq!(now_on.len(), 1);
        let new = now_on[0].1;
        assert!(new > old, "a later connection has a larger id");

        // Now a leave of the connection this next join is making (its id is
        // the next one: the engine numbers connections in order).
        let (tx3, _rx3) = mpsc::unbounded_channel();
        let (join, resume) = paused_join(&calls, c, user, tx3).await;
        let coming = ConnectionId(new.0 + 1);
        assert!(matches!(calls.connection_left(c, &pid, coming), SeatLeft::Stale));
        resume.notify_one();
        assert_eq!(join.await.unwrap().unwrap_err(), JoinError::Media);
        assert!(seats(&calls, c).is_empty(), "no seat left behind");
        assert!(in_sfu(&calls, c).await.is_empty(), "and no connection");
        calls.sfu.shutdown().await;
    }
}
