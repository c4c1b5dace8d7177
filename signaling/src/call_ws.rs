//! The call part of the socket protocol: join (or resume), negotiation,
//! ICE, mute, chat, leave and end. One function per client message; each
//! returns the reply for the sender (if any) and tells the others through
//! [`crate::call::Calls`]. The socket loop (`ws.rs`) owns a [`CallState`]
//! and hands each call message here; nothing here depends on the socket.

use std::time::{Duration, Instant};

use telehealth_records::{Actor, ConsultationId, ConsultationState, Joining, Role, SessionEntry, UserId};
use telehealth_sfu::{IceCandidate, ParticipantId, RoomId};

use crate::call::{Calls, JoinError};
use crate::protocol::{ClientMessage, ServerMessage};
use crate::state::AppState;

/// The call this socket is in, if any.
pub struct CallState {
    pub current: Option<(telehealth_records::ConsultationId, telehealth_sfu::ParticipantId)>,
    /// The consultation this socket was opened for, if any.
    pub bound: Option<telehealth_records::ConsultationId>,
    pub outbox: crate::call::Outbox,
    pub user: crate::auth::AuthUser,
    /// Error events this socket wrote to the session log in the current minute.
    pub errors: ErrorBudget,
}

/// A socket's errors reach the session log at most [`ErrorBudget::PER_MINUTE`]
/// a minute; the rest are counted and written as one event. (20 sockets
/// sending bad messages wrote 13,500 rows in 15 s, and slowed every note save.)
pub struct ErrorBudget {
    since: Instant,
    logged: u32,
    pub suppressed: u32,
}

impl Default for ErrorBudget {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }
}

impl ErrorBudget {
    pub const PER_MINUTE: u32 = 10;

    /// Whether this error is written; if a minute has passed, also how many
    /// were left out in the one before (to be written first).
    pub fn take(&mut self) -> (bool, u32) {
        let mut left_out = 0;
        if self.since.elapsed() >= Duration::from_secs(60) {
            left_out = std::mem::take(&mut self.suppressed);
            *self = Self::default();
        }
        if self.logged < Self::PER_MINUTE {
            self.logged += 1;
            (true, left_out)
        } else {
            self.suppressed += 1;
            (false, left_out)
        }
    }
}

/// Longest chat message.
const MAX_CHAT: usize = 2000;

fn error(code: &'static str, message: &'static str, message_en: &'static str) -> ServerMessage {
    ServerMessage::error(code, message, message_en)
}

fn join_error(e: JoinError) -> ServerMessage {
    let (vi, en) = e.messages();
    error(e.code(), vi, en)
}

/// The reply to a refused offer, answer or candidate.
/// The SFU's refusal, in fixed words: its text (a parser's message) quotes
/// the client's SDP or candidate, which is neither the client's to be told
/// back nor ours to log.
fn sfu_error(e: &telehealth_sfu::SfuError) -> ServerMessage {
    tracing::debug!(error = e.code(), "SFU refused a call message");
    match e {
        telehealth_sfu::SfuError::InvalidCandidate(_) => error(
            "bad_candidate",
            "Ứng viên ICE không hợp lệ.",
            "Invalid ICE candidate.",
        ),
        _ => error(
            "bad_sdp",
            "Mô tả phiên không hợp lệ.",
            "Invalid session description.",
        ),
    }
}

fn not_in_call() -> ServerMessage {
    error(
        "not_in_call",
        "Bạn chưa vào cuộc gọi.",
        "You have not joined a call.",
    )
}

pub async fn log(state: &AppState, c: ConsultationId, user: Option<UserId>, entry: SessionEntry) {
    if let Err(e) = state.store.append_session_event(c, user, entry).await {
        tracing::error!(consultation = %c, error = %e, "cannot write session event");
    }
}

pub async fn handle(state: &AppState, call: &mut CallState, msg: ClientMessage) -> Option<ServerMessage> {
    let reply = dispatch(state, call, msg).await;
    // Errors inside a call belong in its session log.
    if let (Some(ServerMessage::Error { code, .. }), Some(c)) =
        (&reply, call.current.as_ref().map(|c| c.0).or(call.bound))
    {
        let user = Some(call.user.user.id);
        let (write, left_out) = call.errors.take();
        if left_out > 0 {
            log(
                state,
                c,
                user,
                SessionEntry::ErrorsSuppressed {
                    count: left_out.into(),
                },
            )
            .await;
        }
        if write {
            log(
                state,
                c,
                user,
                SessionEntry::Error {
                    code: code.to_string(),
                },
            )
            .await;
        }
    }
    reply
}

/// The seat this socket holds, if it still does (a newer socket of the same
/// user may have taken it over).
fn seat(state: &AppState, call: &mut CallState) -> Option<(ConsultationId, ParticipantId)> {
    let (c, pid) = call.current.clone()?;
    if state.calls.holds_seat(c, &pid, &call.outbox) {
        Some((c, pid))
    } else {
        call.current = None;
        None
    }
}

async fn dispatch(state: &AppState, call: &mut CallState, msg: ClientMessage) -> Option<ServerMessage> {
    match msg {
        ClientMessage::Ping {} => Some(ServerMessage::Pong),
        ClientMessage::Join {
            consultation_id,
            sdp,
            resume,
        } => Some(join(state, call, &consultation_id, sdp, resume).await),
        ClientMessage::Offer { sdp } => {
            let Some((c, pid)) = seat(state, call) else {
                return Some(not_in_call());
            };
            match state
                .calls
                .sfu
                .handle_offer(RoomId::new(c.to_string()), pid, sdp)
                .await
            {
                Ok(Some(answer)) => Some(ServerMessage::Answer { sdp: answer }),
                // It crossed our offer (glare): the page answers ours, then offers again.
                Ok(None) => None,
                Err(e) => Some(sfu_error(&e)),
            }
        }
        ClientMessage::Answer { sdp } => {
            let Some((c, pid)) = seat(state, call) else {
                return Some(not_in_call());
            };
            match state
                .calls
                .sfu
                .handle_answer(RoomId::new(c.to_string()), pid, sdp)
                .await
            {
                Ok(()) => None,
                Err(e) => Some(sfu_error(&e)),
            }
        }
        ClientMessage::Ice { candidate } => {
            let Some((c, pid)) = seat(state, call) else {
                return Some(not_in_call());
            };
            let cand = IceCandidate {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: candidate.username_fragment,
            };
            match state
                .calls
                .sfu
                .add_ice_candidate(RoomId::new(c.to_string()), pid, cand)
                .await
            {
                Ok(()) => None,
                Err(e) => Some(sfu_error(&e)),
            }
        }
        ClientMessage::Media {
            audio,
            video,
            receive_video,
        } => {
            let Some((c, pid)) = seat(state, call) else {
                return Some(not_in_call());
            };
            let receive_video = receive_video.unwrap_or(true);
            if let Err(e) = state
                .calls
                .sfu
                .set_video_wanted(RoomId::new(c.to_string()), pid.clone(), receive_video)
                .await
            {
                // Not in the media room yet (or any more): nothing to stop.
                tracing::debug!(consultation = %c, error = %e, "video wanted not applied");
            }
            state.calls.set_media(c, &pid, audio, video);
            state.calls.broadcast(
                c,
                Some(&pid),
                &ServerMessage::ParticipantMedia {
                    participant_id: pid.as_str().to_owned(),
                    audio,
                    video,
                },
            );
            log(
                state,
                c,
                Some(call.user.user.id),
                SessionEntry::Media {
                    participant_id: pid.as_str().to_owned(),
                    audio,
                    video,
                    receive_video,
                },
            )
            .await;
            None
        }
        ClientMessage::Chat { text } => {
            let Some((c, pid)) = seat(state, call) else {
                return Some(not_in_call());
            };
            let text = text.trim().to_owned();
            if text.is_empty() || text.chars().count() > MAX_CHAT {
                return Some(error(
                    "bad_chat",
                    "Tin nhắn trống hoặc quá dài (tối đa 2000 ký tự).",
                    "Empty or too long (at most 2000 characters).",
                ));
            }
            let chars = text.chars().count();
            let msg = ServerMessage::Chat {
                participant_id: pid.as_str().to_owned(),
                user_id: call.user.user.id,
                text,
                at: telehealth_records::Timestamp::now(),
            };
            state.calls.broadcast(c, None, &msg);
            // The text may be clinical: the log keeps that a message was sent, not what it said.
            log(
                state,
                c,
                Some(call.user.user.id),
                SessionEntry::Chat {
                    participant_id: pid.as_str().to_owned(),
                    chars,
                },
            )
            .await;
            None
        }
        ClientMessage::Leave {} => {
            let Some((c, pid)) = seat(state, call) else {
                return Some(not_in_call());
            };
            call.current = None;
            // The SFU reports ParticipantLeft (reason `removed`) to everyone.
            let _ = state.calls.sfu.leave(RoomId::new(c.to_string()), pid).await;
            None
        }
        ClientMessage::End {} => Some(end(state, call).await),
    }
}

async fn join(
    state: &AppState,
    call: &mut CallState,
    raw_id: &str,
    sdp: Option<String>,
    resume: Option<String>,
) -> ServerMessage {
    let started = std::time::Instant::now();
    let Ok(c) = raw_id.parse::<ConsultationId>() else {
        return error(
            "malformed_id",
            "Mã ca tư vấn không hợp lệ.",
            "Malformed consultation id.",
        );
    };
    if call.bound.is_some_and(|b| b != c) {
        return error(
            "wrong_consultation",
            "Kết nối này được mở cho một ca tư vấn khác.",
            "This connection was opened for another consultation.",
        );
    }
    // A page already in the call may join again: with an offer it brings a
    // fresh connection (it gave up on the old one), with `resume` it is
    // already where it asks to be. Either way the seat stays its own.
    let user = &call.user.user;
    let cons = match state.store.consultation(c).await {
        Ok(cons) => cons,
        Err(telehealth_records::RecordsError::NotFound(_)) => {
            return error(
                "unknown_consultation",
                "Không tìm thấy ca tư vấn.",
                "No such consultation.",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "join: database");
            crate::metrics::global().database_errors.inc();
            return error(
                "internal_error",
                "Máy chủ gặp lỗi; thử lại.",
                "Server error; try again.",
            );
        }
    };
    if let Err(e) = Calls::may_join(&cons, user.id, user.role, user.facility_id, chrono::Utc::now()) {
        if e == JoinError::NotAParticipant {
            let _ = state
                .store
                .audit(
                    &call.user.actor(),
                    "call.join",
                    "consultation",
                    Some(c.to_string()),
                    Some(cons.patient_id),
                    telehealth_records::Outcome::Denied,
                )
                .await;
        }
        return join_error(e);
    }
    // Served here only while this node holds the call (a socket that was
    // not opened for it, or one that outlived a move, is sent to its node).
    match state.cluster.route(&state.store, c).await {
        Ok(crate::cluster::Route::Here) => {}
        Ok(crate::cluster::Route::Forward { .. }) | Err(_) => {
            return error(
                "call_elsewhere",
                "Cuộc gọi đang ở máy chủ khác. Trang sẽ tự kết nối lại; nếu không, hãy tải lại trang.",
                "The call is on another server. The page reconnects by itself; if not, reload it.",
            )
        }
    }
    let (pid, answer, resumed) = match (resume, sdp) {
        // The page kept its peer connection: only the socket is new.
        (Some(p), None) => {
            let pid = ParticipantId::new(p);
            match state.calls.resume(c, &pid, user.id, call.outbox.clone()).await {
                Ok(()) => (pid, None, true),
                Err(e) => return join_error(e),
            }
        }
        // A fresh connection; a user already in the call takes its seat back.
        (_, Some(sdp)) => match state
            .calls
            .join(c, user.id, user.role, sdp, call.outbox.clone())
            .await
        {
            Ok(j) => (j.participant, j.answer, j.returned),
            Err(e) => return join_error(e),
        },
        (None, None) => {
            return error(
                "bad_sdp",
                "Thiếu mô tả phiên (offer) để vào cuộc gọi. Tải lại trang và thử lại.",
                "A join needs an SDP offer (or resume). Reload and try again.",
            )
        }
    };
    call.current = Some((c, pid.clone()));
    if answer.is_some() {
        // The station's name labels its link's quality for the province's
        // IT staff (a facility's name, not a person's).
        let station_name = state
            .store
            .facility(cons.station_id)
            .await
            .map(|f| f.name)
            .unwrap_or_default();
        crate::metrics::global().join_started(c, cons.station_id, &station_name, pid.as_str(), started);
    }
    let joining = Joining {
        participant_id: pid.as_str().to_owned(),
        role: user.role,
        new_connection: answer.is_some(),
    };
    let entry = if resumed {
        SessionEntry::Reconnected(joining)
    } else {
        SessionEntry::Joined(joining)
    };
    log(state, c, Some(user.id), entry).await;
    let _ = state
        .store
        .audit(
            &call.user.actor(),
            "call.join",
            "consultation",
            Some(c.to_string()),
            Some(cons.patient_id),
            telehealth_records::Outcome::Ok,
        )
        .await;
    let (participant_id, user_id, role) = (pid.as_str().to_owned(), user.id, user.role);
    let announce = if resumed {
        ServerMessage::ParticipantReconnected {
            participant_id,
            user_id,
            role,
        }
    } else {
        ServerMessage::ParticipantJoined {
            participant_id,
            user_id,
            role,
        }
    };
    state.calls.broadcast(c, Some(&pid), &announce);
    tracing::info!(consultation = %c, participant = %pid, user = %user.id, resumed, "joined call");
    // The consultation is in progress once the doctor and the station are both there.
    let mut current = cons.state;
    if state.calls.both_sides_present(c)
        && matches!(
            cons.state,
            ConsultationState::Requested | ConsultationState::Scheduled | ConsultationState::Interrupted
        )
    {
        match state
            .store
            .transition_consultation(&Actor::system(), c, ConsultationState::InProgress)
            .await
        {
            Ok(updated) => {
                current = updated.state;
                state.hub.publish(&updated);
                state.calls.broadcast(
                    c,
                    Some(&pid),
                    &ServerMessage::ConsultationState {
                        consultation_id: c,
                        state: updated.state,
                    },
                );
            }
            Err(e) => tracing::info!(consultation = %c, error = %e, "not moved to in_progress"),
        }
    }
    ServerMessage::Joined {
        consultation_id: c,
        participant_id: pid.as_str().to_owned(),
        sdp: answer,
        resumed,
        state: current,
        seat_hold_s: state.calls.seat_hold().as_secs(),
        ice_servers: state
            .calls
            .ice_servers()
            .for_user(user.id, std::time::SystemTime::now()),
        participants: state.calls.roster(c),
    }
}

async fn end(state: &AppState, call: &mut CallState) -> ServerMessage {
    let Some((c, _)) = seat(state, call) else {
        return not_in_call();
    };
    let user = &call.user.user;
    let cons = match state.store.consultation(c).await {
        Ok(cons) => cons,
        Err(_) => {
            return error(
                "unknown_consultation",
                "Không tìm thấy ca tư vấn.",
                "No such consultation.",
            )
        }
    };
    if user.role != Role::Doctor || cons.doctor_id != Some(user.id) {
        return error(
            "not_allowed",
            "Chỉ bác sĩ phụ trách mới kết thúc được ca tư vấn.",
            "Only the consultation's doctor can end it.",
        );
    }
    match state
        .store
        .transition_consultation(&call.user.actor(), c, ConsultationState::Completed)
        .await
    {
        Ok(updated) => {
            state.hub.publish(&updated);
            call.current = None;
            state.calls.consultation_closed(c, updated.state).await;
            tracing::info!(consultation = %c, "consultation ended by its doctor");
            ServerMessage::Ended { consultation_id: c }
        }
        Err(e) => {
            let api: crate::error::ApiError = e.into();
            tracing::info!(consultation = %c, error = ?api, "end refused");
            error(
                "illegal_transition",
                "Không thể kết thúc ca tư vấn ở trạng thái hiện tại.",
                "The consultation cannot end from its current state.",
            )
        }
    }
}
