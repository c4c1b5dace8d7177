//! Connecting a synthetic participant to the SFU through its Rust API (the
//! in-process stand-in for the signaling WebSocket): offer/answer both ways
//! and trickle ICE both ways.

use crate::participant::{ParticipantConfig, SyntheticParticipant};
use anyhow::Result;
use std::sync::Arc;
use telehealth_sfu::{ParticipantId, RoomId, Sfu, SfuEvent};
use tokio::task::JoinHandle;

/// A participant joined to a room of an in-process SFU.
pub struct SfuSession {
    /// The participant.
    pub participant: Arc<SyntheticParticipant>,
    /// Its room.
    pub room: RoomId,
    /// Its id in the room.
    pub id: ParticipantId,
    sfu: Sfu,
    task: JoinHandle<()>,
    ice_ufrag: std::sync::Mutex<String>,
}

fn ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

impl SfuSession {
    /// Creates the participant, joins it to `room` and keeps relaying
    /// signaling between it and the SFU until it leaves.
    pub async fn join(sfu: &Sfu, room: &RoomId, config: ParticipantConfig) -> Result<SfuSession> {
        let id = ParticipantId::new(config.name.clone());
        let participant = SyntheticParticipant::new(config).await?;
        // Subscribe before joining, so the first renegotiation offer is not missed.
        let mut events = sfu.events().await?;
        let offer = participant.create_offer().await?;
        let answer = sfu.join(room.clone(), id.clone(), offer).await?;
        let ice_ufrag = std::sync::Mutex::new(ufrag(&answer));
        participant.apply_answer(answer).await?;
        let mut candidates = participant.take_local_candidates();
        let (p, s, r, i) = (participant.clone(), sfu.clone(), room.clone(), id.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = events.recv() => {
                        let Some(ev) = ev else { return };
                        match ev {
                            SfuEvent::Offer { room, participant, sdp } if room == r && participant == i => {
                                match p.handle_offer(sdp).await {
                                    Ok(answer) => {
                                        if let Err(e) = s.handle_answer(r.clone(), i.clone(), answer).await {
                                            tracing::warn!(error = %e, "SFU rejected answer");
                                        }
                                    }
                                    Err(e) => tracing::warn!(error = %e, "cannot answer SFU offer"),
                                }
                            }
                            SfuEvent::IceCandidate { room, participant, candidate } if room == r && participant == i => {
                                let _ = p.add_remote_candidate(candidate).await;
                            }
                            SfuEvent::ParticipantLeft { room, participant, .. } if room == r && participant == i => return,
                            _ => {}
                        }
                    }
                    c = async {
                        match candidates.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        match c {
                            Some(c) => { let _ = s.add_ice_candidate(r.clone(), i.clone(), c).await; }
                            None => candidates = None,
                        }
                    }
                }
            }
        });
        Ok(SfuSession {
            participant,
            room: room.clone(),
            id,
            sfu: sfu.clone(),
            task,
            ice_ufrag,
        })
    }

    /// The SFU's current ICE ufrag for this participant.
    pub fn sfu_ice_ufrag(&self) -> String {
        self.ice_ufrag.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Restarts ICE (as a client does after a network change): a new offer
    /// with fresh credentials, answered by the SFU with fresh credentials of its own.
    pub async fn restart_ice(&self) -> Result<()> {
        for _ in 0..20 {
            let offer = self.participant.restart_ice_offer().await?;
            let answer = self
                .sfu
                .handle_offer(self.room.clone(), self.id.clone(), offer)
                .await?;
            let Some(answer) = answer else {
                // It crossed an offer of the SFU's: the relay task answers that
                // one (rolling ours back); then offer again.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            if let Ok(mut u) = self.ice_ufrag.lock() {
                *u = ufrag(&answer);
            }
            return self.participant.apply_answer(answer).await;
        }
        anyhow::bail!("the ICE restart kept crossing the SFU's offers")
    }

    /// Leaves through the API (the SFU reports [`telehealth_sfu::CloseReason::Removed`]).
    pub async fn leave(self) -> Result<()> {
        self.sfu.leave(self.room.clone(), self.id.clone()).await?;
        self.participant.close().await;
        self.task.abort();
        Ok(())
    }
}

impl Drop for SfuSession {
    fn drop(&mut self) {
        self.task.abort();
    }
}
