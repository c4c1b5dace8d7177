//! Several nodes on one PostgreSQL database (shared/DESIGN.md, "Scale").
//!
//! Each node registers itself and renews a heartbeat ([`heartbeat_loop`]);
//! each consultation's call is placed on one live node, with an epoch, the
//! first time a page's call socket asks for it after its node is gone
//! ([`Cluster::route`]). A call socket that reaches another node is
//! forwarded there at the signaling level ([`forward`]): the page keeps
//! talking to the address it loaded (one origin, its cookies, one load
//! balancer), while its media goes straight to the hosting node's media
//! ports, named in that node's ICE candidates. Redirecting the page to the
//! other node instead would need every node reachable by browsers under its
//! own name, with the login cookie valid there.
//!
//! A node serves a call only while the database says it holds it: at each
//! heartbeat it lets go of the rooms whose placement moved (a node that was
//! hung and came back), and when it cannot renew its heartbeat for the dead
//! timeout while other nodes were alive it lets go of all of them, since
//! another node may be taking them over (alone, nobody can: its calls go on
//! while the database is away). The pages of a room let go of have their
//! sockets closed
//! (`call_moved`), reconnect by themselves and join where the call is now.
//!
//! With SQLite there is one node (a second process on the same file is
//! refused at start), and all of this places every call on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use telehealth_records::{ConsultationId, HeartbeatError, NodeHeartbeat, Store};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The header a forwarded call socket carries: the node that forwarded it.
/// A node that receives one and does not host the call refuses it rather
/// than forward it again (no loops while a call moves).
pub const VIA: &str = "x-telehealth-via";

/// How long a node waits for the hosting node to accept a forwarded socket.
const FORWARD_CONNECT: Duration = Duration::from_secs(5);

/// This node in the cluster.
pub struct Cluster {
    pub id: String,
    /// A token of this process: a restarted node is a new instance.
    instance: String,
    /// Where the other nodes reach this one.
    pub url: String,
    /// The media address(es) this node announces, for admins.
    media: String,
    pub dead_after: Duration,
    draining: AtomicBool,
    /// The calls this node serves, with the epoch it was given each.
    held: Mutex<HashMap<ConsultationId, i64>>,
    /// Set while this node cannot prove it is alive: it serves nothing.
    fenced: AtomicBool,
    /// At the last heartbeat, another live node could take calls over.
    others_alive: AtomicBool,
    /// The server is stopping: no more heartbeats.
    stopping: AtomicBool,
    /// When the heartbeat was last renewed (by this process's clock, which
    /// a wall-clock step does not move).
    last_heartbeat: Mutex<Option<Instant>>,
    /// Calls let go of: their sockets close.
    evicted: broadcast::Sender<ConsultationId>,
}

/// Where a call socket goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node hosts the call.
    Here,
    /// Another node does: forward the socket to its URL.
    Forward { node: String, url: String },
}

impl Cluster {
    pub fn new(id: String, url: String, media: String, dead_after: Duration) -> Self {
        let instance = uuid::Uuid::new_v4().to_string();
        let (evicted, _) = broadcast::channel(256);
        Self {
            id,
            instance,
            url,
            media,
            dead_after,
            draining: AtomicBool::new(false),
            held: Mutex::default(),
            fenced: AtomicBool::new(false),
            others_alive: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            last_heartbeat: Mutex::new(None),
            evicted,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<ConsultationId, i64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
    }

    /// Whether this node may serve anything (it renewed its heartbeat
    /// within the dead timeout).
    pub fn fenced(&self) -> bool {
        self.fenced.load(Ordering::Relaxed)
    }

    /// How long ago this node last renewed its heartbeat (`None`: never).
    pub fn heartbeat_age(&self) -> Option<Duration> {
        self.last_heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// Calls whose sockets must close (this node let them go).
    pub fn evictions(&self) -> broadcast::Receiver<ConsultationId> {
        self.evicted.subscribe()
    }

    /// Where `c`'s call is served, placing it if its node is gone.
    pub async fn route(&self, store: &Store, c: ConsultationId) -> ApiResult<Route> {
        if self.fenced() {
            return Err(ApiError::CallElsewhere);
        }
        let placed = store.place_call(c, self.dead_after).await?;
        let Some(p) = placed else {
            tracing::warn!(consultation = %c, "no live node can take the call");
            return Err(ApiError::CallElsewhere);
        };
        if let Some(from) = &p.placed_now {
            tracing::info!(consultation = %c, node = %p.node_id, epoch = p.epoch, from = ?from, "call placed");
            let entry = telehealth_records::SessionEntry::CallPlaced {
                node: p.node_id.clone(),
                epoch: p.epoch,
                from: from.clone(),
            };
            if let Err(e) = store.append_session_event(c, None, entry).await {
                tracing::error!(consultation = %c, error = %e, "cannot write session event");
            }
        }
        if p.node_id == self.id {
            let before = self.held().insert(c, p.epoch);
            if before != Some(p.epoch) {
                tracing::info!(consultation = %c, epoch = p.epoch, "call placed on this node");
            }
            Ok(Route::Here)
        } else {
            Ok(Route::Forward {
                node: p.node_id,
                url: p.url,
            })
        }
    }

    /// Lets go of `c` here: its room closes and its sockets are closed.
    async fn let_go(&self, state: &AppState, c: ConsultationId, why: &'static str) {
        self.held().remove(&c);
        tracing::warn!(consultation = %c, why, "this node lets the call go; its pages reconnect where it is now");
        let _ = self.evicted.send(c);
        state.calls.evict(c).await;
    }

    pub(crate) async fn beat(&self, state: &AppState) -> Result<(), HeartbeatError> {
        if self.stopping.load(Ordering::Relaxed) {
            // Its registration is being removed: no heartbeat may put it back.
            return Ok(());
        }
        let (rooms, participants) = state.calls.load();
        let hb = NodeHeartbeat {
            id: &self.id,
            instance: &self.instance,
            url: &self.url,
            media: &self.media,
            draining: self.draining(),
            rooms: i64::try_from(rooms).unwrap_or(i64::MAX),
            participants: i64::try_from(participants).unwrap_or(i64::MAX),
        };
        state.store.node_heartbeat(&hb, Some(self.dead_after)).await?;
        *self.last_heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if state.store.backend() == telehealth_records::Backend::Postgres {
            if let Ok(others) = state.store.other_nodes_alive(&self.id, self.dead_after).await {
                self.others_alive.store(others, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The calls this node holds or has a room for.
    fn calls_here(&self, state: &AppState) -> Vec<ConsultationId> {
        let mut calls: Vec<ConsultationId> = self.held().keys().copied().collect();
        calls.extend(state.calls.room_ids());
        calls.sort_unstable_by_key(|c| c.to_string());
        calls.dedup();
        calls
    }

    /// Whether this node serves `c` now.
    pub fn holds(&self, c: ConsultationId) -> bool {
        !self.fenced() && self.held().contains_key(&c)
    }

    /// After a heartbeat: lets go of the rooms this node no longer holds
    /// (the database places them elsewhere, or here under a newer epoch
    /// than the one they were joined under), and forgets calls that are
    /// over. Each call is read on its own, after the list was taken: a call
    /// placed here meanwhile is not in the list, and its row is written
    /// before it enters `held` or gets a room, so it is never let go by
    /// mistake.
    async fn check_claims(&self, state: &AppState) {
        for c in self.calls_here(state) {
            let Ok(row) = state.store.placement_of(c).await else {
                return;
            };
            let ours = row
                .as_ref()
                .filter(|r| r.node_id == self.id && r.released == 0)
                .map(|r| r.epoch);
            let over = row.as_ref().is_some_and(|r| r.over == 1);
            let held = self.held().get(&c).copied();
            let has_room = state.calls.room_ids().contains(&c);
            match (ours, held) {
                // A finished call: its room closes with the consultation.
                _ if over => {
                    self.held().remove(&c);
                }
                (Some(e), Some(h)) if e == h => {}
                // Placed here again under a newer epoch, with no join since:
                // whatever room is left from before is stale.
                (Some(_), Some(_)) if has_room => self.let_go(state, c, "placed here again").await,
                (Some(e), _) => {
                    self.held().insert(c, e);
                }
                (None, _) if has_room => self.let_go(state, c, "placed elsewhere").await,
                (None, _) => {
                    self.held().remove(&c);
                }
            }
        }
    }

    /// Registers this node. With SQLite there is one process per database
    /// (a file lock says so), so it takes its id over at once. On PostgreSQL
    /// an id whose last heartbeat is fresh may be this node's previous
    /// process, killed a moment ago, or another live node given the same
    /// id: it waits up to twice the dead timeout for that heartbeat to go
    /// stale, and is refused if it does not.
    pub async fn register(&self, store: &Store) -> Result<(), HeartbeatError> {
        let hb = NodeHeartbeat {
            id: &self.id,
            instance: &self.instance,
            url: &self.url,
            media: &self.media,
            draining: false,
            rooms: 0,
            participants: 0,
        };
        if store.backend() == telehealth_records::Backend::Sqlite {
            return store.node_heartbeat(&hb, None).await;
        }
        let give_up = Instant::now() + self.dead_after * 2;
        let mut told = false;
        loop {
            match store.node_heartbeat(&hb, Some(self.dead_after)).await {
                Err(HeartbeatError::IdInUse(_)) if Instant::now() < give_up => {
                    if !told {
                        tracing::warn!(node = %self.id, "this node id beat a moment ago (the previous process?); waiting for it to go stale");
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// Gives up every call placed here (at a clean exit, or at the end of
    /// a drain): the next join of each places it on a live node at once,
    /// without waiting for this node to be taken for dead. No heartbeat
    /// runs after it.
    pub async fn release_all(&self, store: &Store) {
        self.stopping.store(true, Ordering::Relaxed);
        let held: Vec<(ConsultationId, i64)> = self.held().drain().collect();
        for (c, epoch) in held {
            match store.release_call(c, &self.id, epoch).await {
                Ok(_) => {}
                Err(e) => tracing::warn!(consultation = %c, error = %e, "cannot give the call up"),
            }
        }
    }

    /// Removes this node's registration at a clean exit.
    pub async fn leave(&self, store: &Store) {
        if let Err(e) = store.node_leave(&self.id, &self.instance).await {
            tracing::warn!(error = %e, "cannot remove this node's registration");
        }
    }
}

/// Renews this node's heartbeat every third of the dead timeout, and lets
/// go of calls it no longer holds. Runs until the server stops.
pub async fn heartbeat_loop(state: AppState) {
    let cluster = state.cluster.clone();
    let mut last_ok = Instant::now();
    let mut tick = tokio::time::interval(cluster.dead_after / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::time::timeout(cluster.dead_after / 3, cluster.beat(&state)).await {
            Ok(Ok(())) => {
                last_ok = Instant::now();
                if cluster.fenced.swap(false, Ordering::Relaxed) {
                    tracing::info!("heartbeat renewed: this node serves calls again");
                }
                if tokio::time::timeout(cluster.dead_after / 3, cluster.check_claims(&state))
                    .await
                    .is_err()
                {
                    tracing::warn!("the calls' placements could not be read in time");
                }
            }
            Ok(Err(HeartbeatError::IdInUse(id))) => {
                tracing::error!(node = %id, "another live process has taken this node's id; serving no call");
                fence(&state).await;
            }
            // Not renewed for the dead timeout: when other nodes were alive,
            // they take this node's calls over, so it must stop serving them
            // (no call in two rooms). Alone, nobody can take them: its calls
            // go on while the database is away, as they always have.
            Ok(Err(_)) | Err(_)
                if last_ok.elapsed() >= cluster.dead_after
                    && cluster.others_alive.load(Ordering::Relaxed) =>
            {
                if !cluster.fenced() {
                    tracing::error!("heartbeat not renewed within the dead timeout while other nodes live; letting every call go");
                    fence(&state).await;
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "heartbeat not renewed"),
            Err(_) => tracing::warn!("heartbeat not answered"),
        }
    }
}

/// This node cannot prove it holds its calls: it lets all of them go.
async fn fence(state: &AppState) {
    let cluster = &state.cluster;
    cluster.fenced.store(true, Ordering::Relaxed);
    for c in cluster.calls_here(state) {
        cluster.let_go(state, c, "heartbeat lost").await;
    }
}

fn to_upstream(m: Message) -> Option<tungstenite::Message> {
    Some(match m {
        Message::Text(t) => tungstenite::Message::text(t.as_str()),
        Message::Binary(b) => tungstenite::Message::Binary(b),
        Message::Close(f) => tungstenite::Message::Close(f.map(|f| tungstenite::protocol::CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        // Each hop keeps its own connection alive.
        Message::Ping(_) | Message::Pong(_) => return None,
    })
}

fn to_client(m: tungstenite::Message) -> Option<Message> {
    Some(match m {
        tungstenite::Message::Text(t) => Message::Text(t.as_str().into()),
        tungstenite::Message::Binary(b) => Message::Binary(b),
        tungstenite::Message::Close(f) => Message::Close(f.map(|f| CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        _ => return None,
    })
}

/// The close a page gets when its call's node is gone: it reconnects, and
/// the new socket is placed where the call is now.
fn moved() -> Message {
    Message::Close(Some(CloseFrame {
        code: 4002,
        reason: "call_moved".into(),
    }))
}

/// Carries a page's call socket to the node that hosts its call, both
/// ways, until either side closes. The page is told `call_moved` (and
/// reconnects) when the hosting node cannot be reached or goes away.
pub async fn forward(
    state: AppState,
    mut client: WebSocket,
    c: ConsultationId,
    node: String,
    url: String,
    token: String,
) {
    let ws_url = format!(
        "{}/api/ws?consultation_id={c}",
        url.replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1)
    );
    let request = match tungstenite::client::IntoClientRequest::into_client_request(ws_url.as_str()) {
        Ok(mut r) => {
            let headers = r.headers_mut();
            let auth = format!("Bearer {token}").parse();
            let via = state.cluster.id.parse();
            if let (Ok(auth), Ok(via)) = (auth, via) {
                headers.insert(axum::http::header::AUTHORIZATION, auth);
                headers.insert(VIA, via);
            }
            r
        }
        Err(e) => {
            tracing::error!(node = %node, error = %e, "bad node URL; cannot forward the call socket");
            let _ = client.send(moved()).await;
            return;
        }
    };
    let connected = tokio::time::timeout(FORWARD_CONNECT, tokio_tungstenite::connect_async(request)).await;
    let upstream = match connected {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(e)) => {
            tracing::warn!(consultation = %c, node = %node, error = %e, "the call's node refused or cannot be reached");
            let _ = client.send(moved()).await;
            return;
        }
        Err(_) => {
            tracing::warn!(consultation = %c, node = %node, "the call's node did not answer");
            let _ = client.send(moved()).await;
            return;
        }
    };
    tracing::info!(consultation = %c, node = %node, "call socket forwarded to its node");
    let (mut up_tx, mut up_rx) = upstream.split();
    let stop = crate::stopped(state.shutdown.clone());
    tokio::pin!(stop);
    // The hosting node's pings are answered by this hop, so this hop is
    // the one to notice a page that went silent.
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + crate::ws::PING_EVERY,
        crate::ws::PING_EVERY,
    );
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            m = client.recv() => match m {
                Some(Ok(m)) => {
                    last_heard = Instant::now();
                    let closing = matches!(m, Message::Close(_));
                    if let Some(m) = to_upstream(m) {
                        if up_tx.send(m).await.is_err() {
                            let _ = client.send(moved()).await;
                            break;
                        }
                    }
                    if closing {
                        break;
                    }
                }
                _ => {
                    let _ = up_tx.send(tungstenite::Message::Close(None)).await;
                    break;
                }
            },
            m = up_rx.next() => match m {
                Some(Ok(m)) => {
                    let closing = matches!(m, tungstenite::Message::Close(_));
                    if let Some(m) = to_client(m) {
                        if client.send(m).await.is_err() {
                            let _ = up_tx.send(tungstenite::Message::Close(None)).await;
                            break;
                        }
                    }
                    if closing {
                        break;
                    }
                }
                // The hosting node went away without a word (killed, or the
                // network between the nodes broke).
                _ => {
                    tracing::warn!(consultation = %c, node = %node, "the call's node dropped the forwarded socket");
                    let _ = client.send(moved()).await;
                    break;
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > crate::ws::IDLE || client.send(Message::Ping(Vec::new().into())).await.is_err() {
                    let _ = up_tx.send(tungstenite::Message::Close(None)).await;
                    break;
                }
            }
            _ = &mut stop => {
                let _ = up_tx.send(tungstenite::Message::Close(None)).await;
                let _ = client.send(Message::Close(Some(CloseFrame { code: 1001, reason: "server_shutdown".into() }))).await;
                break;
            }
        }
    }
}

/// Drains this node (SIGUSR1): it takes no new calls (its heartbeat says
/// so at once), keeps the calls it hosts until they end or `deadline`
/// passes, then hands the rest over (each given up in the database, its
/// pages told to reconnect, which places it on another node) and returns:
/// the caller stops the server.
pub async fn drain(state: AppState, deadline: Duration) {
    let cluster = state.cluster.clone();
    cluster.set_draining(true);
    tracing::warn!(
        deadline_secs = deadline.as_secs(),
        "draining: no new calls here; the running ones stay until they end or the deadline passes"
    );
    if let Err(e) = cluster.beat(&state).await {
        tracing::warn!(error = %e, "cannot say this node drains yet; the next heartbeat will");
    }
    let until = Instant::now() + deadline;
    loop {
        let (rooms, _) = state.calls.load();
        if rooms == 0 {
            tracing::info!("drained: no call left here");
            break;
        }
        if Instant::now() >= until {
            tracing::warn!(
                calls = rooms,
                "drain deadline passed: handing the remaining calls to other nodes"
            );
            let calls = cluster.calls_here(&state);
            cluster.release_all(&state.store).await;
            for c in calls {
                cluster
                    .let_go(&state, c, "handed over at the end of a drain")
                    .await;
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A consultation ended on another node (its doctor completed it there,
/// say): if its call is hosted here, everyone in it is told and its room
/// closes, as when it ends on this node.
pub async fn close_calls_ended_elsewhere(state: AppState) {
    let mut changes = state.hub.subscribe();
    loop {
        match changes.recv().await {
            Ok(crate::live::HubEvent::Remote(change)) if change.state.is_final() => {
                let c = change.consultation_id;
                if state.calls.room_ids().contains(&c) {
                    tracing::info!(consultation = %c, state = %change.state, "call ended on another node; closing its room");
                    state.calls.consultation_closed(c, change.state).await;
                }
            }
            // Some may have been missed: every room whose consultation is
            // over closes.
            Ok(crate::live::HubEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                for c in state.calls.room_ids() {
                    if let Ok(cons) = state.store.consultation(c).await {
                        if cons.state.is_final() {
                            state.calls.consultation_closed(c, cons.state).await;
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
