//! Connecting a synthetic participant through the signaling WebSocket of a
//! running server (`/api/ws`), exactly as a browser does: `join` with an
//! offer, answer the server's renegotiation offers, trickle ICE both ways,
//! and resume after a dropped socket with an ICE restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use telehealth_sfu::IceCandidate;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::participant::{ParticipantConfig, SyntheticParticipant};

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
    task: JoinHandle<()>,
}

async fn open(
    ws_url: &str,
    token: &str,
) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>> {
    let mut req = ws_url.into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = match tokio_tungstenite::connect_async(req).await {
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

impl WsSession {
    /// Opens a socket and joins the consultation's call.
    pub async fn join(
        ws_url: &str,
        token: &str,
        consultation_id: &str,
        config: ParticipantConfig,
    ) -> Result<WsSession> {
        let participant = SyntheticParticipant::new(config).await?;
        Self::connect(ws_url, token, consultation_id, participant, None).await
    }

    async fn connect(
        ws_url: &str,
        token: &str,
        consultation_id: &str,
        participant: Arc<SyntheticParticipant>,
        resume: Option<String>,
    ) -> Result<WsSession> {
        // The call page binds its socket to the consultation, so membership is
        // checked before the upgrade.
        let mut ws = open(&format!("{ws_url}?consultation_id={consultation_id}"), token).await?;
        let offer = if resume.is_some() {
            participant.restart_ice_offer().await?
        } else {
            participant.create_offer().await?
        };
        let mut join = json!({"type": "join", "consultation_id": consultation_id, "sdp": offer});
        if let Some(r) = &resume {
            join["resume"] = json!(r);
        }
        ws.send(Message::Text(join.to_string().into())).await?;
        let messages = Arc::new(Mutex::new(Vec::new()));
        // Wait for `joined` (keeping anything that arrives before it).
        let joined = loop {
            let msg = tokio::time::timeout(Duration::from_secs(15), ws.next())
                .await
                .map_err(|_| anyhow!("no answer to join"))?
                .ok_or_else(|| anyhow!("socket closed during join"))??;
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(&t)?;
            match v["type"].as_str() {
                Some("joined") => break v,
                Some("error") => bail!("join refused: {v}"),
                _ => messages.lock().map_err(|_| anyhow!("lock"))?.push(v),
            }
        };
        let participant_id = joined["participant_id"].as_str().unwrap_or_default().to_owned();
        participant
            .apply_answer(joined["sdp"].as_str().unwrap_or_default().to_owned())
            .await?;
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let mut candidates = participant.take_local_candidates();
        let (p, msgs, out2) = (participant.clone(), messages.clone(), out.clone());
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            loop {
                tokio::select! {
                    m = stream.next() => {
                        let Some(Ok(m)) = m else { return };
                        let Message::Text(t) = m else { continue };
                        let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                        match v["type"].as_str() {
                            Some("offer") => {
                                if let Ok(answer) = p.handle_offer(v["sdp"].as_str().unwrap_or_default().to_owned()).await {
                                    let _ = out2.send(json!({"type": "answer", "sdp": answer}).to_string());
                                }
                            }
                            Some("ice") => {
                                let c = &v["candidate"];
                                let cand = IceCandidate {
                                    candidate: c["candidate"].as_str().unwrap_or_default().to_owned(),
                                    sdp_mid: c["sdp_mid"].as_str().map(str::to_owned),
                                    sdp_mline_index: c["sdp_mline_index"].as_u64().and_then(|i| u16::try_from(i).ok()),
                                    username_fragment: c["username_fragment"].as_str().map(str::to_owned),
                                };
                                let _ = p.add_remote_candidate(cand).await;
                            }
                            Some("answer") => {
                                let _ = p.apply_answer(v["sdp"].as_str().unwrap_or_default().to_owned()).await;
                            }
                            _ => {
                                if let Ok(mut m) = msgs.lock() {
                                    m.push(v);
                                }
                            }
                        }
                    }
                    Some(text) = out_rx.recv() => {
                        if sink.send(Message::Text(text.into())).await.is_err() {
                            return;
                        }
                    }
                    c = async {
                        match candidates.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        match c {
                            Some(c) => {
                                let msg = json!({"type": "ice", "candidate": {"candidate": c.candidate, "sdp_mid": c.sdp_mid, "sdp_mline_index": c.sdp_mline_index, "username_fragment": c.username_fragment}});
                                if sink.send(Message::Text(msg.to_string().into())).await.is_err() {
                                    return;
                                }
                            }
                            None => candidates = None,
                        }
                    }
                }
            }
        });
        Ok(WsSession {
            participant,
            participant_id,
            joined,
            consultation_id: consultation_id.to_owned(),
            ws_url: ws_url.to_owned(),
            token: token.to_owned(),
            out,
            messages,
            task,
        })
    }

    /// Sends a client message (e.g. `{"type": "end"}`).
    pub fn send(&self, msg: Value) {
        let _ = self.out.send(msg.to_string());
    }

    /// Server messages received so far (other than negotiation).
    pub fn messages(&self) -> Vec<Value> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
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

    /// Opens a new socket and resumes the same participant with an ICE restart.
    pub async fn resume(self) -> Result<WsSession> {
        self.task.abort();
        Self::connect(
            &self.ws_url,
            &self.token,
            &self.consultation_id,
            self.participant.clone(),
            Some(self.participant_id.clone()),
        )
        .await
    }
}

impl Drop for WsSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}
