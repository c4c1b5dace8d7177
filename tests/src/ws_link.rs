//! Connecting a synthetic participant through the signaling WebSocket of a
//! running server (`/api/ws`), exactly as a browser does: `join` with an
//! offer, answer the server's renegotiation offers (politely: an offer of
//! ours that crosses one of the server's is rolled back and made again),
//! trickle ICE both ways, and come back after a drop.
//!
//! With [`Recovery::Automatic`] the session does what the call page does on
//! a bad link, by itself: it pings the server and takes a socket that stops
//! answering for dead; it reopens the socket with backoff and takes its seat
//! back (`join` + `resume`, no new connection); and it restarts ICE over the
//! socket when its media connection fails or stays disconnected. Every step
//! is noted in [`WsSession::actions`], for tests to see what happened.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use telehealth_sfu::IceCandidate;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::participant::{ParticipantConfig, SyntheticParticipant};

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the session does when its socket or its media path breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing: the test drives `resume` itself.
    Manual,
    /// What the call page does: reconnect and resume, restart ICE.
    Automatic,
}

/// How the automatic recovery is paced (the call page's figures).
const PING_EVERY: Duration = Duration::from_secs(3);
/// A socket that has sent nothing (not even a pong) for this long is dead.
const SILENT_SOCKET: Duration = Duration::from_secs(8);
/// Reconnect delays; the last one repeats.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];
/// ICE is restarted when the media connection has been disconnected this long
/// (or has failed), and again at this interval while it stays down.
const ICE_RESTART_AFTER: Duration = Duration::from_secs(4);

/// What a test can make the session do.
enum Control {
    /// Keep the server's offers without answering them (as a page that is
    /// busy, or whose answer is lost), until released.
    HoldOffers(bool),
    /// Restart ICE now (an offer with fresh credentials).
    RestartIce,
}

/// A participant in a consultation's call, over the signaling socket.
pub struct WsSession {
    /// The WebRTC peer.
    pub participant: Arc<SyntheticParticipant>,
    /// The server's id for this participant (for `resume`).
    pub participant_id: String,
    /// The `joined` message (roster, state, ICE servers).
    pub joined: Value,
    consultation_id: String,
    ws_url: String,
    token: String,
    out: mpsc::UnboundedSender<String>,
    /// Every other server message, in order.
    messages: Arc<Mutex<Vec<Value>>>,
    /// What the automatic recovery did, with when.
    actions: Arc<Mutex<Vec<(Instant, String)>>>,
    /// Every offer the server sent, in order.
    offers: Arc<Mutex<Vec<String>>>,
    control: mpsc::UnboundedSender<Control>,
    task: JoinHandle<()>,
}

/// Opens the socket from `local` (the participant's own address, so that a
/// link emulator in between sees its signaling and its media as one client).
async fn open(ws_url: &str, token: &str, local: IpAddr) -> Result<Socket> {
    let mut req = ws_url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let host = req
        .uri()
        .host()
        .ok_or_else(|| anyhow!("no host in {ws_url}"))?
        .to_owned();
    let port = req.uri().port_u16().unwrap_or(80);
    let connect = async {
        let remote: std::net::SocketAddr = format!("{host}:{port}").parse()?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        let stream = socket.connect(remote).await?;
        stream.set_nodelay(true)?;
        anyhow::Ok(
            tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await,
        )
    };
    let (mut ws, _) = match tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| anyhow!("socket not opened within 10 s"))??
    {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            bail!("socket refused before the upgrade: {} {body}", resp.status());
        }
        Err(e) => return Err(e).context("open signaling socket"),
    };
    // The server speaks first.
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"hello\"") => Ok(ws),
        other => bail!("no hello: {other:?}"),
    }
}

/// Sends `join` and waits for `joined` (keeping what arrives before it).
async fn join_on(ws: &mut Socket, join: Value, messages: &Mutex<Vec<Value>>) -> Result<Value> {
    ws.send(Message::Text(join.to_string().into())).await?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .map_err(|_| anyhow!("no answer to join"))?
            .ok_or_else(|| anyhow!("socket closed during join"))??;
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t)?;
        match v["type"].as_str() {
            Some("joined") => return Ok(v),
            Some("error") => bail!("join refused: {v}"),
            _ => messages.lock().map_err(|_| anyhow!("lock"))?.push(v),
        }
    }
}

fn candidate_from(v: &Value) -> IceCandidate {
    let c = &v["candidate"];
    IceCandidate {
        candidate: c["candidate"].as_str().unwrap_or_default().to_owned(),
        sdp_mid: c["sdp_mid"].as_str().map(str::to_owned),
        sdp_mline_index: c["sdp_mline_index"].as_u64().and_then(|i| u16::try_from(i).ok()),
        username_fragment: c["username_fragment"].as_str().map(str::to_owned),
    }
}

/// The session's side of one socket's life, and of the ones after it.
struct Driver {
    participant: Arc<SyntheticParticipant>,
    participant_id: String,
    consultation_id: String,
    ws_url: String,
    token: String,
    messages: Arc<Mutex<Vec<Value>>>,
    actions: Arc<Mutex<Vec<(Instant, String)>>>,
    recovery: Recovery,
    out_rx: mpsc::UnboundedReceiver<String>,
    candidates: Option<mpsc::UnboundedReceiver<IceCandidate>>,
    /// An ICE restart is wanted and not yet answered.
    restart_wanted: bool,
    last_restart: Option<Instant>,
    down_since: Option<Instant>,
    offers: Arc<Mutex<Vec<String>>>,
    control: mpsc::UnboundedReceiver<Control>,
    hold: bool,
    held: Vec<String>,
}

impl Driver {
    fn note(&self, what: impl Into<String>) {
        if let Ok(mut a) = self.actions.lock() {
            a.push((Instant::now(), what.into()));
        }
    }

    async fn run(mut self, mut ws: Socket) {
        loop {
            self.serve(ws).await;
            if self.recovery == Recovery::Manual {
                return;
            }
            self.note("socket_lost");
            ws = match self.reconnect().await {
                Some(ws) => ws,
                None => return,
            };
            // An offer of ours that went down with the old socket goes again.
            if let Some(sdp) = self.participant.pending_offer().await {
                self.note("offer_resent");
                let msg = json!({"type": "offer", "sdp": sdp});
                if ws.send(Message::Text(msg.to_string().into())).await.is_err() {
                    continue;
                }
            }
        }
    }

    /// Reopens the socket with backoff and takes the seat back.
    async fn reconnect(&mut self) -> Option<Socket> {
        for attempt in 0.. {
            tokio::time::sleep(BACKOFF[attempt.min(BACKOFF.len() - 1)]).await;
            let url = format!("{}?consultation_id={}", self.ws_url, self.consultation_id);
            let Ok(mut ws) = open(&url, &self.token, self.participant.bind_ip()).await else {
                continue;
            };
            let join = json!({"type": "join", "consultation_id": self.consultation_id, "resume": self.participant_id});
            match join_on(&mut ws, join, &self.messages).await {
                Ok(_) => {
                    self.note("resumed");
                    return Some(ws);
                }
                Err(e) => {
                    self.note(format!("resume_failed: {e}"));
                    if e.to_string().contains("cannot_resume") {
                        return None;
                    }
                }
            }
        }
        None
    }

    async fn send(&self, sink: &mut futures_util::stream::SplitSink<Socket, Message>, v: Value) -> bool {
        sink.send(Message::Text(v.to_string().into())).await.is_ok()
    }

    async fn restart_ice(&mut self, sink: &mut futures_util::stream::SplitSink<Socket, Message>) -> bool {
        self.restart_wanted = true;
        self.last_restart = Some(Instant::now());
        if self.participant.offer_outstanding().await {
            // One of ours is out already; the restart follows its answer.
            return true;
        }
        match self.participant.restart_ice_offer().await {
            Ok(sdp) => {
                self.note("ice_restart");
                self.send(sink, json!({"type": "offer", "sdp": sdp})).await
            }
            Err(e) => {
                self.note(format!("ice_restart_failed: {e}"));
                true
            }
        }
    }

    /// Answers a server offer (rolling ours back if it crossed it), then
    /// makes ours again if it was an ICE restart. False if the socket broke.
    async fn answer(
        &mut self,
        sink: &mut futures_util::stream::SplitSink<Socket, Message>,
        sdp: String,
    ) -> bool {
        match self.participant.handle_offer(sdp).await {
            Ok(answer) => {
                if !self.send(sink, json!({"type": "answer", "sdp": answer})).await {
                    return false;
                }
            }
            Err(e) => self.note(format!("offer_refused: {e}")),
        }
        // Ours was rolled back if it crossed this one: make it again.
        !self.restart_wanted || self.restart_ice(sink).await
    }

    /// One socket, until it closes or falls silent.
    async fn serve(&mut self, ws: Socket) {
        let (mut sink, mut stream) = ws.split();
        let mut heard = Instant::now();
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut watch = tokio::time::interval(Duration::from_millis(250));
        let automatic = self.recovery == Recovery::Automatic;
        loop {
            tokio::select! {
                m = stream.next() => {
                    let Some(Ok(m)) = m else { return };
                    heard = Instant::now();
                    let Message::Text(t) = m else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                    match v["type"].as_str() {
                        Some("offer") => {
                            let sdp = v["sdp"].as_str().unwrap_or_default().to_owned();
                            if let Ok(mut o) = self.offers.lock() {
                                o.push(sdp.clone());
                            }
                            if self.hold {
                                self.held.push(sdp);
                                continue;
                            }
                            if !self.answer(&mut sink, sdp).await {
                                return;
                            }
                        }
                        Some("ice") => {
                            let _ = self.participant.add_remote_candidate(candidate_from(&v)).await;
                        }
                        Some("answer") => {
                            let sdp = v["sdp"].as_str().unwrap_or_default().to_owned();
                            if self.participant.apply_answer(sdp).await.is_ok() {
                                self.restart_wanted = false;
                            }
                        }
                        Some("pong") => {}
                        _ => {
                            if let Ok(mut m) = self.messages.lock() {
                                m.push(v);
                            }
                        }
                    }
                }
                Some(c) = self.control.recv() => {
                    match c {
                        Control::HoldOffers(on) => {
                            self.hold = on;
                            if !on {
                                for sdp in std::mem::take(&mut self.held) {
                                    if !self.answer(&mut sink, sdp).await {
                                        return;
                                    }
                                }
                            }
                        }
                        Control::RestartIce => {
                            // Deliberately not waiting for a held offer: this is how glare happens.
                            self.restart_wanted = true;
                            self.last_restart = Some(Instant::now());
                            match self.participant.restart_ice_offer().await {
                                Ok(sdp) => {
                                    self.note("ice_restart");
                                    if !self.send(&mut sink, json!({"type": "offer", "sdp": sdp})).await {
                                        return;
                                    }
                                }
                                Err(e) => self.note(format!("ice_restart_failed: {e}")),
                            }
                        }
                    }
                }
                Some(text) = self.out_rx.recv() => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                c = async {
                    match self.candidates.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match c {
                        Some(c) => {
                            let msg = json!({"type": "ice", "candidate": {"candidate": c.candidate, "sdp_mid": c.sdp_mid, "sdp_mline_index": c.sdp_mline_index, "username_fragment": c.username_fragment}});
                            if !self.send(&mut sink, msg).await {
                                return;
                            }
                        }
                        None => self.candidates = None,
                    }
                }
                _ = ping.tick(), if automatic => {
                    if heard.elapsed() >= SILENT_SOCKET {
                        self.note("socket_silent");
                        return;
                    }
                    if !self.send(&mut sink, json!({"type": "ping"})).await {
                        return;
                    }
                }
                _ = watch.tick(), if automatic => {
                    let state = self.participant.connection_state();
                    let down = matches!(state, RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed);
                    if !down {
                        self.down_since = None;
                        continue;
                    }
                    let since = *self.down_since.get_or_insert_with(Instant::now);
                    let failed = state == RTCPeerConnectionState::Failed;
                    let waited = self.last_restart.is_none_or(|t| t.elapsed() >= ICE_RESTART_AFTER);
                    if (failed || since.elapsed() >= ICE_RESTART_AFTER) && waited && !self.restart_ice(&mut sink).await {
                        return;
                    }
                }
            }
        }
    }
}

impl WsSession {
    /// Opens a socket and joins the consultation's call (no automatic recovery).
    pub async fn join(
        ws_url: &str,
        token: &str,
        consultation_id: &str,
        config: ParticipantConfig,
    ) -> Result<WsSession> {
        let participant = SyntheticParticipant::new(config).await?;
        Self::connect(ws_url, token, consultation_id, participant, Recovery::Manual).await
    }

    /// Opens a socket and joins, recovering from drops by itself as the page does.
    pub async fn join_recovering(
        ws_url: &str,
        token: &str,
        consultation_id: &str,
        config: ParticipantConfig,
    ) -> Result<WsSession> {
        let participant = SyntheticParticipant::new(config).await?;
        Self::connect(ws_url, token, consultation_id, participant, Recovery::Automatic).await
    }

    async fn connect(
        ws_url: &str,
        token: &str,
        consultation_id: &str,
        participant: Arc<SyntheticParticipant>,
        recovery: Recovery,
    ) -> Result<WsSession> {
        // The call page binds its socket to the consultation, so membership is
        // checked before the upgrade.
        let mut ws = open(
            &format!("{ws_url}?consultation_id={consultation_id}"),
            token,
            participant.bind_ip(),
        )
        .await?;
        let offer = participant.create_offer().await?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        let join = json!({"type": "join", "consultation_id": consultation_id, "sdp": offer});
        let joined = join_on(&mut ws, join, &messages).await?;
        let participant_id = joined["participant_id"].as_str().unwrap_or_default().to_owned();
        participant
            .apply_answer(joined["sdp"].as_str().unwrap_or_default().to_owned())
            .await?;
        Ok(Self::drive(
            ws,
            participant,
            participant_id,
            joined,
            consultation_id,
            ws_url,
            token,
            messages,
            recovery,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn drive(
        ws: Socket,
        participant: Arc<SyntheticParticipant>,
        participant_id: String,
        joined: Value,
        consultation_id: &str,
        ws_url: &str,
        token: &str,
        messages: Arc<Mutex<Vec<Value>>>,
        recovery: Recovery,
    ) -> WsSession {
        let (out, out_rx) = mpsc::unbounded_channel::<String>();
        let (control, control_rx) = mpsc::unbounded_channel();
        let actions = Arc::new(Mutex::new(Vec::new()));
        let offers = Arc::new(Mutex::new(Vec::new()));
        let driver = Driver {
            participant: participant.clone(),
            participant_id: participant_id.clone(),
            consultation_id: consultation_id.to_owned(),
            ws_url: ws_url.to_owned(),
            token: token.to_owned(),
            messages: messages.clone(),
            actions: actions.clone(),
            recovery,
            out_rx,
            candidates: participant.take_local_candidates(),
            restart_wanted: false,
            last_restart: None,
            down_since: None,
            offers: offers.clone(),
            control: control_rx,
            hold: false,
            held: Vec::new(),
        };
        let task = tokio::spawn(driver.run(ws));
        WsSession {
            participant,
            participant_id,
            joined,
            consultation_id: consultation_id.to_owned(),
            ws_url: ws_url.to_owned(),
            token: token.to_owned(),
            out,
            messages,
            actions,
            offers,
            control,
            task,
        }
    }

    /// The consultation this socket joined.
    pub fn consultation_id(&self) -> &str {
        &self.consultation_id
    }

    /// Every offer the server sent so far (resends included), in order.
    pub fn offers(&self) -> Vec<String> {
        self.offers.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Holds the server's offers unanswered (`true`), or answers the held
    /// ones now and carries on (`false`).
    pub fn hold_offers(&self, on: bool) {
        let _ = self.control.send(Control::HoldOffers(on));
    }

    /// Restarts ICE now, even with a server offer held (glare).
    pub fn restart_ice(&self) {
        let _ = self.control.send(Control::RestartIce);
    }

    /// Sends a client message (e.g. `{"type": "end"}`).
    pub fn send(&self, msg: Value) {
        let _ = self.out.send(msg.to_string());
    }

    /// Server messages received so far (other than negotiation).
    pub fn messages(&self) -> Vec<Value> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// What the automatic recovery did so far, with when.
    pub fn actions(&self) -> Vec<(Instant, String)> {
        self.actions.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Waits until a server message of this type arrives.
    pub async fn wait_for(&self, kind: &str, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = self.messages().into_iter().find(|v| v["type"] == kind) {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no {kind} message within {timeout:?}; got {:?}", self.messages());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drops the socket abruptly (the peer connection stays), as when a
    /// phone's network changes.
    pub fn drop_socket(&self) {
        self.task.abort();
    }

    /// Opens a new socket and takes the seat back with the same peer
    /// connection (`join` + `resume`), then restarts ICE over it.
    pub async fn resume(self) -> Result<WsSession> {
        self.task.abort();
        let mut ws = open(
            &format!("{}?consultation_id={}", self.ws_url, self.consultation_id),
            &self.token,
            self.participant.bind_ip(),
        )
        .await?;
        let join =
            json!({"type": "join", "consultation_id": self.consultation_id, "resume": self.participant_id});
        let joined = join_on(&mut ws, join, &self.messages).await?;
        let session = Self::drive(
            ws,
            self.participant.clone(),
            self.participant_id.clone(),
            joined,
            &self.consultation_id,
            &self.ws_url,
            &self.token,
            self.messages.clone(),
            Recovery::Manual,
        );
        let offer = session.participant.restart_ice_offer().await?;
        session.send(json!({"type": "offer", "sdp": offer}));
        Ok(session)
    }

    /// Comes back with a fresh peer connection (as a reloaded page does): a
    /// new socket and `join` with a new offer; the server gives the seat back.
    pub async fn rejoin(self, config: ParticipantConfig) -> Result<WsSession> {
        self.task.abort();
        self.participant.close().await;
        let participant = SyntheticParticipant::new(config).await?;
        Self::connect(
            &self.ws_url,
            &self.token,
            &self.consultation_id,
            participant,
            Recovery::Manual,
        )
        .await
    }
}

impl Drop for WsSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}
