//! The WebSocket at `/api/ws`: one per open page, carrying live updates now
//! and the call's signaling as it lands.
//!
//! The login is checked before the upgrade (cookie or bearer token), and
//! the Origin must be this server's. Each socket is one loop over: the
//! socket, hub updates, a heartbeat, a periodic session check, and server
//! shutdown. Every close has an enumerated reason, logged and sent.
//!
//! Protocol (JSON text frames, `type`-tagged, version [`PROTOCOL`]) is
//! documented in `docs/signaling.md`.

use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::AuthUser;
use crate::call_ws::{CallState, ErrorBudget};
use crate::error::{ApiError, ApiResult};
pub use crate::protocol::PROTOCOL;
use crate::protocol::{ClientMessage, ServerMessage};
use crate::state::AppState;

/// Largest frame a client may send.
pub const MAX_FRAME: usize = 64 * 1024;
/// Heartbeat: the server pings this often and closes after `IDLE` silence.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(15);
pub(crate) const IDLE: Duration = Duration::from_secs(45);
/// Messages per second a client may send before it is cut off.
const RATE_PER_SEC: u32 = 50;

/// Why the server closed a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    ClientClosed,
    Idle,
    SessionEnded,
    Flooding,
    ServerShutdown,
    SocketError,
    /// This node let the call go (another node hosts it now): the page
    /// reconnects and is placed where the call is.
    CallMoved,
}

impl CloseReason {
    fn code_and_text(self) -> (u16, &'static str) {
        match self {
            CloseReason::ClientClosed => (1000, "client_closed"),
            CloseReason::Idle => (1001, "idle_timeout"),
            CloseReason::SessionEnded => (4001, "session_ended"),
            CloseReason::Flooding => (1008, "rate_limited"),
            CloseReason::ServerShutdown => (1001, "server_shutdown"),
            CloseReason::SocketError => (1011, "socket_error"),
            CloseReason::CallMoved => (4002, "call_moved"),
        }
    }
}

/// `GET /api/ws`: authenticate, check the Origin, then upgrade.
/// `?consultation_id=` binds the socket to one consultation's call: the
/// caller's membership and the consultation's time window are then checked
/// before the upgrade.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    #[serde(default)]
    consultation_id: Option<String>,
}

pub async fn upgrade(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<WsQuery>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = ws.map_err(|_| {
        ApiError::bad_request(
            "websocket_required",
            "Đường dẫn này chỉ nhận kết nối WebSocket.",
            "This path only accepts WebSocket connections.",
        )
    })?;
    // A page of another site must not open a socket with this user's cookies.
    if crate::same_origin::from_another_page(&headers) {
        return Err(crate::same_origin::refusal());
    }
    let slot = state.sockets.open(user.user.id).ok_or(ApiError::OverLimit {
        code: "too_many_sockets",
        detail: "Bạn đang mở quá nhiều trang của hệ thống cùng lúc. Hãy đóng bớt các thẻ (tab) không dùng rồi tải lại trang.",
        detail_en: "You have too many pages of the system open at once. Close the tabs you do not need and reload.",
        retry_after_secs: 5,
    })?;
    let bound = match q.consultation_id.filter(|c| !c.is_empty()) {
        None => None,
        Some(raw) => Some(check_membership(&state, &user, &raw).await?),
    };
    // A call socket goes to the node that hosts its call.
    if let Some(c) = bound {
        if let crate::cluster::Route::Forward { node, url } = state.cluster.route(&state.store, c).await? {
            if headers.contains_key(crate::cluster::VIA) {
                // Forwarded here by a node that took this one for the host:
                // the call moved meanwhile. The page tries again.
                return Err(ApiError::CallElsewhere);
            }
            let token = crate::auth::access_token(&headers).unwrap_or_default().to_owned();
            return Ok(ws
                .max_message_size(MAX_FRAME)
                .max_frame_size(MAX_FRAME)
                .on_upgrade(move |socket| async move {
                    crate::cluster::forward(state, socket, c, node, url, token).await;
                    drop(slot);
                }));
        }
    }
    Ok(ws
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| async move {
            session(state, user, socket, bound).await;
            drop(slot);
        }))
}

/// Refuses, before the upgrade, a user who may not join this consultation now.
async fn check_membership(
    state: &AppState,
    user: &AuthUser,
    raw: &str,
) -> ApiResult<telehealth_records::ConsultationId> {
    use crate::call::{Calls, JoinError};
    let c: telehealth_records::ConsultationId = crate::extract::parse_id("consultation_id", raw)?;
    let cons = state.store.consultation(c).await?;
    let u = &user.user;
    match Calls::may_join(&cons, u.id, u.role, u.facility_id, chrono::Utc::now()) {
        Ok(()) => Ok(c),
        Err(JoinError::NotAParticipant) => {
            let _ = state
                .store
                .audit(
                    &user.actor(),
                    "call.join",
                    "consultation",
                    Some(c.to_string()),
                    Some(cons.patient_id),
                    telehealth_records::Outcome::Denied,
                )
                .await;
            Err(ApiError::Forbidden {
                code: "not_a_participant",
                detail: "Bạn không tham gia ca tư vấn này.",
                detail_en: "You are not a participant of this consultation.",
            })
        }
        Err(e) => {
            let (vi, en) = e.messages();
            Err(ApiError::Conflict {
                code: e.code(),
                detail: vi.into(),
                detail_en: en.into(),
                current_version: None,
                errors: vec![],
            })
        }
    }
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> Result<(), axum::Error> {
    socket.send(Message::Text(msg.to_text().into())).await
}

async fn session(
    state: AppState,
    user: AuthUser,
    mut socket: WebSocket,
    bound: Option<telehealth_records::ConsultationId>,
) {
    let role = user.user.role;
    let facility = user.user.facility_id;
    let uid = user.user.id;
    tracing::info!(user = %uid, session = %user.session, "socket opened");
    let mut updates = state.hub.subscribe();
    let mut evictions = state.cluster.evictions();
    let stop = crate::stopped(state.shutdown.clone());
    tokio::pin!(stop);
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut session_check = tokio::time::interval(Duration::from_secs(30));
    let mut last_heard = Instant::now();
    let mut window = (Instant::now(), 0u32);
    let (outbox, mut inbox) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut call = CallState {
        current: None,
        bound,
        outbox,
        user: user.clone(),
        errors: ErrorBudget::default(),
    };
    let hello = ServerMessage::Hello {
        protocol: PROTOCOL,
        user_id: uid,
        role,
        ice_servers: bound.map(|_| {
            state
                .calls
                .ice_servers()
                .for_user(uid, std::time::SystemTime::now())
        }),
    };
    let mut reason = if send(&mut socket, &hello).await.is_err() {
        Some(CloseReason::SocketError)
    } else {
        None
    };

    while reason.is_none() {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(Ok(msg)) = incoming else {
                    reason = Some(CloseReason::ClientClosed);
                    break;
                };
                last_heard = Instant::now();
                if window.0.elapsed() >= Duration::from_secs(1) {
                    window = (Instant::now(), 0);
                }
                window.1 += 1;
                if window.1 > RATE_PER_SEC {
                    reason = Some(CloseReason::Flooding);
                    break;
                }
                match msg {
                    Message::Text(text) => {
                        let reply = match serde_json::from_str::<ClientMessage>(&text) {
                            Ok(m) => crate::call_ws::handle(&state, &mut call, m).await,
                            Err(_) => Some(ServerMessage::error("bad_message", "Tin nhắn không hợp lệ hoặc không được hỗ trợ.", "Malformed or unsupported message.")),
                        };
                        if let Some(reply) = reply {
                            if send(&mut socket, &reply).await.is_err() {
                                reason = Some(CloseReason::SocketError);
                            }
                        }
                    }
                    Message::Binary(_) => {
                        let reply = ServerMessage::error(
                            "binary_not_supported",
                            "Chỉ nhận tin nhắn dạng văn bản JSON.",
                            "Only JSON text messages are accepted.",
                        );
                        if send(&mut socket, &reply).await.is_err() {
                            reason = Some(CloseReason::SocketError);
                        }
                    }
                    Message::Close(_) => reason = Some(CloseReason::ClientClosed),
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            update = updates.recv() => {
                let msg = match &update {
                    Ok(crate::live::HubEvent::Change(change) | crate::live::HubEvent::Remote(change)) if change.concerns(role, facility, uid) => ServerMessage::ConsultationChanged(change.clone()),
                    Ok(crate::live::HubEvent::Change(_) | crate::live::HubEvent::Remote(_)) => continue,
                    Ok(crate::live::HubEvent::Resync) => ServerMessage::Resync,
                    Err(RecvError::Lagged(_)) => ServerMessage::Resync,
                    Err(RecvError::Closed) => { reason = Some(CloseReason::ServerShutdown); break; }
                };
                if send(&mut socket, &msg).await.is_err() {
                    reason = Some(CloseReason::SocketError);
                }
            }
            Some(out) = inbox.recv() => {
                if socket.send(Message::Text(out.into())).await.is_err() {
                    reason = Some(CloseReason::SocketError);
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE {
                    reason = Some(CloseReason::Idle);
                } else if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    reason = Some(CloseReason::SocketError);
                }
            }
            _ = session_check.tick() => {
                // Logout or deactivation ends open sockets too.
                if !matches!(state.store.session_user(user.session).await, Ok(Some(_))) {
                    reason = Some(CloseReason::SessionEnded);
                }
            }
            evicted = evictions.recv() => {
                let ours = call.current.as_ref().map(|c| c.0).or(bound);
                match evicted {
                    Ok(c) if Some(c) == ours => {
                        // The seat went with the room: nothing to keep.
                        call.current = None;
                        reason = Some(CloseReason::CallMoved);
                    }
                    // Some were missed: is this socket's call still here?
                    Err(RecvError::Lagged(_)) if call.current.as_ref().is_some_and(|(c, _)| !state.cluster.holds(*c)) => {
                        call.current = None;
                        reason = Some(CloseReason::CallMoved);
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => {}
                }
            }
            _ = &mut stop => reason = Some(CloseReason::ServerShutdown),
        }
    }
    let reason = reason.unwrap_or(CloseReason::SocketError);
    if let (n @ 1.., Some(c)) = (
        call.errors.suppressed,
        call.current.as_ref().map(|c| c.0).or(call.bound),
    ) {
        crate::call_ws::log(
            &state,
            c,
            Some(uid),
            telehealth_records::SessionEntry::ErrorsSuppressed { count: n.into() },
        )
        .await;
    }
    if let Some((c, pid)) = call.current.take() {
        // Keep the participant for a while: a reconnecting socket resumes it.
        state.calls.socket_dropped(c, &pid, &call.outbox).await;
        crate::call_ws::log(
            &state,
            c,
            Some(uid),
            telehealth_records::SessionEntry::Reconnecting {
                participant_id: pid.as_str().to_owned(),
                socket: reason.code_and_text().1.to_owned(),
            },
        )
        .await;
    }
    let (code, text) = reason.code_and_text();
    if reason != CloseReason::ClientClosed && reason != CloseReason::SocketError {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: text.into(),
            })))
            .await;
        // The closing handshake (RFC 6455 §7.1.1): read until the client's
        // Close, so that unread client data does not make the kernel reset
        // the connection before our Close frame (and its reason) arrives.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    tracing::info!(user = %uid, reason = text, "socket closed");
}
