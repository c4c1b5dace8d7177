//! Janus's VideoRoom as the load generator's second server, for a
//! side-by-side comparison with ours on the same machine ([`JanusServer`]
//! runs it).
//!
//! [`JanusParticipant`] is one synthetic participant in a VideoRoom, driven
//! through the Janus HTTP API the way `janus.js` drives it: one session with
//! a long-poll loop (which also keeps the session alive), a publisher handle
//! (`joinandconfigure` with our offer → Janus's answer) and a subscriber
//! handle (`join` as subscriber → Janus's offer → our answer with `start`).
//! Janus keeps publishing and subscribing on separate peer connections, so a
//! participant here is two [`SyntheticParticipant`]s where against our server
//! it is one.
//!
//! Janus rewrites each subscriber's RTP timestamps to start near zero, so the
//! audio delay the participant derives from the timestamp means nothing here;
//! the video frames carry their send time in the payload, which Janus
//! forwards unchanged, so video delay is comparable across both servers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

#[cfg(doc)]
use crate::janus_server::JanusServer;
use crate::participant::{ParticipantConfig, SyntheticParticipant};
use crate::report::ParticipantReport;

/// How long to wait for an answer to a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The mid of an SDP's first m-section (`0` if it names none).
fn first_mid(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .unwrap_or("0")
        .trim()
        .to_owned()
}

fn transaction() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The VideoRoom plugin's reply inside a response or event.
fn plugin_data(v: &Value) -> &Value {
    &v["plugindata"]["data"]
}

/// One Janus session: requests, and the long poll that receives events
/// (answers to asynchronous requests, by transaction; the rest, by handle).
struct Session {
    http: reqwest::Client,
    url: String,
    id: u64,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    handles: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
    poll: Mutex<Option<JoinHandle<()>>>,
}

impl Session {
    async fn create(http: &reqwest::Client, url: &str) -> Result<Arc<Session>> {
        let v: Value = http
            .post(url)
            .json(&json!({"janus": "create", "transaction": transaction()}))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await?
            .json()
            .await?;
        let id = v["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("create session: {v}"))?;
        let session = Arc::new(Session {
            http: http.clone(),
            url: url.to_owned(),
            id,
            pending: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            poll: Mutex::new(None),
        });
        let task = tokio::spawn(Session::long_poll(Arc::downgrade(&session)));
        if let Ok(mut p) = session.poll.lock() {
            *p = Some(task);
        }
        Ok(session)
    }

    /// Janus answers a long poll with up to `maxev` events, or a keepalive
    /// after 30 s; each poll also refreshes the session's timeout.
    async fn long_poll(session: std::sync::Weak<Session>) {
        loop {
            let (http, url) = match session.upgrade() {
                Some(s) => (s.http.clone(), format!("{}/{}?maxev=10", s.url, s.id)),
                None => return,
            };
            let resp = http.get(&url).timeout(Duration::from_secs(60)).send().await;
            let body: Value = match resp {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let Some(s) = session.upgrade() else { return };
            let events = match body {
                Value::Array(a) => a,
                Value::Null => continue,
                v => vec![v],
            };
            for ev in events {
                match ev["janus"].as_str() {
                    Some("keepalive") => continue,
                    // The session is gone (destroyed or timed out).
                    Some("error") if ev["error"]["code"] == 458 => return,
                    _ => {}
                }
                if let Some(tx) = ev["transaction"].as_str() {
                    let waiting = s.pending.lock().ok().and_then(|mut p| p.remove(tx));
                    if let Some(w) = waiting {
                        let _ = w.send(ev);
                        continue;
                    }
                }
                if let Some(h) = ev["sender"].as_u64() {
                    if let Some(ch) = s.handles.lock().ok().and_then(|m| m.get(&h).cloned()) {
                        let _ = ch.send(ev);
                    }
                }
            }
        }
    }

    /// Posts a request; returns the synchronous answer, or, when Janus only
    /// acknowledges it, a receiver for the event that answers it.
    async fn post(&self, path: &str, mut body: Value) -> Result<Reply> {
        let tx = transaction();
        body["transaction"] = json!(tx);
        let (send, recv) = oneshot::channel();
        // Registered before posting: the event may come back on the long
        // poll before this request's own response does.
        self.pending
            .lock()
            .map_err(|_| anyhow!("lock"))?
            .insert(tx.clone(), send);
        let v = self.send(path, &body).await?;
        match v["janus"].as_str() {
            Some("ack") => Ok(Reply::Later(recv)),
            other => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&tx);
                }
                match other {
                    Some("success") => {
                        let data = plugin_data(&v);
                        if data.get("error").is_some() {
                            bail!("{}: {data}", body["body"]["request"]);
                        }
                        Ok(Reply::Now(v))
                    }
                    _ => bail!("{body} → {v}"),
                }
            }
        }
    }

    /// Posts `body` to this session's `path`; Janus's immediate answer.
    async fn send(&self, path: &str, body: &Value) -> Result<Value> {
        Ok(self
            .http
            .post(format!("{}/{}{path}", self.url, self.id))
            .json(body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await?
            .json()
            .await?)
    }

    /// Posts a request that Janus only acknowledges.
    async fn notify(&self, path: &str, mut body: Value) -> Result<()> {
        body["transaction"] = json!(transaction());
        let v = self.send(path, &body).await?;
        match v["janus"].as_str() {
            Some("ack" | "success") => Ok(()),
            _ => bail!("{body} → {v}"),
        }
    }

    /// Attaches the VideoRoom plugin: a new handle, with its event stream.
    async fn attach(&self) -> Result<(u64, mpsc::UnboundedReceiver<Value>)> {
        let v = self
            .post("", json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?
            .now()?;
        let id = v["data"]["id"].as_u64().ok_or_else(|| anyhow!("attach: {v}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.handles.lock().map_err(|_| anyhow!("lock"))?.insert(id, tx);
        Ok((id, rx))
    }

    /// Sends a plugin message (with a JSEP when given) to a handle.
    async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Reply> {
        let mut req = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            req["jsep"] = j;
        }
        self.post(&format!("/{handle}"), req).await
    }

    /// Forwards our ICE candidates to a handle as they are gathered. Janus
    /// bundles everything on the first m-line and ignores candidates naming
    /// another (or an empty) mid, so they all go to `first_mid`.
    fn trickle(
        self: &Arc<Self>,
        handle: u64,
        participant: &SyntheticParticipant,
        first_mid: String,
    ) -> Option<JoinHandle<()>> {
        let mut rx = participant.take_local_candidates()?;
        let s = self.clone();
        Some(tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                let cand = json!({
                    "candidate": c.candidate,
                    "sdpMid": first_mid,
                    "sdpMLineIndex": 0,
                });
                // Janus only acknowledges a trickle: no event follows.
                let _ = s
                    .notify(
                        &format!("/{handle}"),
                        json!({"janus": "trickle", "candidate": cand}),
                    )
                    .await;
            }
        }))
    }

    async fn destroy(&self) {
        let _ = self.notify("", json!({"janus": "destroy"})).await;
        if let Ok(mut p) = self.poll.lock() {
            if let Some(t) = p.take() {
                t.abort();
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut p) = self.poll.lock() {
            if let Some(t) = p.take() {
                t.abort();
            }
        }
    }
}

/// Janus's answer to a request: now, or as a later event.
enum Reply {
    Now(Value),
    Later(oneshot::Receiver<Value>),
}

impl Reply {
    fn now(self) -> Result<Value> {
        match self {
            Reply::Now(v) => Ok(v),
            Reply::Later(_) => bail!("expected a synchronous answer"),
        }
    }

    /// The event answering the request (the plugin's reply, with a JSEP
    /// when it carries one).
    async fn event(self) -> Result<Value> {
        let v = match self {
            Reply::Now(v) => v,
            Reply::Later(rx) => tokio::time::timeout(REQUEST_TIMEOUT, rx)
                .await
                .map_err(|_| anyhow!("no answer from Janus within {REQUEST_TIMEOUT:?}"))?
                .map_err(|_| anyhow!("Janus session closed"))?,
        };
        let data = plugin_data(&v);
        if data.get("error").is_some() || v["janus"] == "error" {
            bail!("Janus refused: {v}");
        }
        Ok(v)
    }
}

/// Creates a VideoRoom for two publishers, with no bitrate cap (no REMB
/// limit) and no periodic keyframe requests, as our server does.
pub async fn create_room(http: &reqwest::Client, url: &str, room: u64) -> Result<()> {
    let s = Session::create(http, url).await?;
    let (h, _events) = s.attach().await?;
    let r = s
        .message(
            h,
            json!({
                "request": "create",
                "room": room,
                "publishers": 2,
                "bitrate": 0,
                "fir_freq": 0,
                "audiocodec": "opus",
                "videocodec": "vp8",
                "is_private": true,
            }),
            None,
        )
        .await?
        .event()
        .await?;
    if plugin_data(&r)["videoroom"] != "created" {
        bail!("create room: {r}");
    }
    s.destroy().await;
    Ok(())
}

/// A participant in a Janus VideoRoom: a publisher connection and, once it
/// has subscribed to the other participant, a subscriber connection.
pub struct JanusParticipant {
    /// The publishing peer (sends audio and video, receives nothing).
    pub publisher: Arc<SyntheticParticipant>,
    /// The subscribing peer, after [`subscribe`](Self::subscribe).
    pub subscriber: Option<Arc<SyntheticParticipant>>,
    /// This participant's publisher (feed) id in the room.
    pub feed_id: u64,
    /// Publishers that were in the room when this one joined.
    pub others: Vec<u64>,
    room: u64,
    config: ParticipantConfig,
    session: Arc<Session>,
    events: mpsc::UnboundedReceiver<Value>,
    tasks: Vec<JoinHandle<()>>,
}

impl JanusParticipant {
    /// Opens a session and publishes into `room`.
    pub async fn join(
        http: &reqwest::Client,
        url: &str,
        room: u64,
        config: ParticipantConfig,
    ) -> Result<Self> {
        let session = Session::create(http, url).await?;
        let (handle, events) = session.attach().await?;
        let publisher = SyntheticParticipant::new(config.clone()).await?;
        let offer = publisher.create_offer().await?;
        let reply = session
            .message(
                handle,
                json!({
                    "request": "joinandconfigure",
                    "room": room,
                    "ptype": "publisher",
                    "display": config.name,
                }),
                Some(json!({"type": "offer", "sdp": offer})),
            )
            .await?;
        // Janus has our offer: from here on it takes trickled candidates.
        let mut tasks = Vec::new();
        tasks.extend(session.trickle(handle, &publisher, first_mid(&offer)));
        let joined = reply.event().await.context("joinandconfigure")?;
        let data = plugin_data(&joined);
        if data["videoroom"] != "joined" {
            bail!("publisher join: {joined}");
        }
        let feed_id = data["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no feed id: {joined}"))?;
        let others = data["publishers"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
            .unwrap_or_default();
        let answer = joined["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| anyhow!("no answer: {joined}"))?;
        publisher.apply_answer(answer.to_owned()).await?;
        Ok(Self {
            publisher,
            subscriber: None,
            feed_id,
            others,
            room,
            config,
            session,
            events,
            tasks,
        })
    }

    /// Waits for another publisher to appear in the room (the `publishers`
    /// event a browser reacts to), returning its feed id.
    pub async fn wait_for_publisher(&mut self, timeout: Duration) -> Result<u64> {
        if let Some(&f) = self.others.first() {
            return Ok(f);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow!("no other publisher within {timeout:?}"))?
                .ok_or_else(|| anyhow!("Janus session closed"))?;
            let found = plugin_data(&ev)["publishers"].as_array().and_then(|a| {
                a.iter()
                    .filter_map(|p| p["id"].as_u64())
                    .find(|&id| id != self.feed_id)
            });
            if let Some(f) = found {
                self.others.push(f);
                return Ok(f);
            }
        }
    }

    /// Subscribes to `feed` on a second handle and peer connection.
    pub async fn subscribe(&mut self, feed: u64) -> Result<()> {
        let (handle, _events) = self.session.attach().await?;
        let attached = self
            .session
            .message(
                handle,
                json!({
                    "request": "join",
                    "room": self.room,
                    "ptype": "subscriber",
                    "streams": [{"feed": feed}],
                }),
                None,
            )
            .await?
            .event()
            .await
            .context("subscriber join")?;
        if plugin_data(&attached)["videoroom"] != "attached" {
            bail!("subscriber join: {attached}");
        }
        let offer = attached["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| anyhow!("no offer: {attached}"))?;
        let mut config = self.config.clone();
        config.name = format!("{}-sub", config.name);
        config.send_audio = false;
        config.send_video = false;
        let subscriber = SyntheticParticipant::new(config).await?;
        let answer = subscriber.handle_offer(offer.to_owned()).await?;
        let reply = self
            .session
            .message(
                handle,
                json!({"request": "start", "room": self.room}),
                Some(json!({"type": "answer", "sdp": answer})),
            )
            .await?;
        self.tasks
            .extend(self.session.trickle(handle, &subscriber, first_mid(&answer)));
        let started = reply.event().await.context("start")?;
        if plugin_data(&started)["started"] != "ok" {
            bail!("start: {started}");
        }
        self.subscriber = Some(subscriber);
        Ok(())
    }

    /// What the subscriber connection has received (from the one feed it
    /// subscribed to), if it has subscribed.
    pub fn received(&self) -> Option<ParticipantReport> {
        self.subscriber.as_ref().map(|s| s.report())
    }

    /// Destroys the session (Janus hangs up both connections) and closes
    /// both peers.
    pub async fn leave(self) {
        self.session.destroy().await;
        self.publisher.close().await;
        if let Some(s) = &self.subscriber {
            s.close().await;
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for JanusParticipant {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
