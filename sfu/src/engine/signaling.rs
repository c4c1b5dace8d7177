//! Commands from the [`Sfu`](crate::Sfu) handles: joining, offer/answer in
//! both directions, trickled candidates, leaving; and the renegotiation the
//! SFU starts itself when the tracks a participant receives change.

use super::*;
use rtc::peer_connection::event::RTCPeerConnectionEvent;

impl Engine {
    pub(super) fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::CreateRoom(room, reply) => {
                let r = match self.rooms.entry(room) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        Err(SfuError::RoomExists(e.key().clone()))
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(Room {
                            participants: BTreeMap::new(),
                            tracks: BTreeMap::new(),
                        });
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Command::CloseRoom(room, reply) => {
                let r = self.close_room(&room, CloseReason::RoomClosed);
                let _ = reply.send(r);
            }
            Command::Join {
                room,
                participant,
                offer,
                reply,
            } => {
                let r = self.join(now, room, participant, offer);
                let _ = reply.send(r);
            }
            Command::Offer {
                room,
                participant,
                sdp,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .and_then(|k| self.handle_offer(now, k, sdp));
                let _ = reply.send(r);
            }
            Command::Answer {
                room,
                participant,
                sdp,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .and_then(|k| self.handle_answer(now, k, sdp));
                let _ = reply.send(r);
            }
            Command::Candidate {
                room,
                participant,
                candidate,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .and_then(|k| self.add_candidate(k, candidate));
                let _ = reply.send(r);
            }
            Command::Remove {
                room,
                participant,
                reason,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .map(|k| self.remove_peer(k, reason));
                let _ = reply.send(r);
            }
            Command::Reachable {
                room,
                participant,
                reachable,
                reply,
            } => {
                let r = self.peer_key(&room, &participant).map(|k| {
                    if let Some(p) = self.peers.get_mut(&k) {
                        p.negotiation.handle_reachable(reachable);
                    }
                    self.mark(k);
                });
                let _ = reply.send(r);
            }
            Command::WantVideo {
                room,
                participant,
                wanted,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .map(|k| self.set_video_wanted(now, k, wanted));
                let _ = reply.send(r);
            }
            Command::Subscribe(tx) => self.listeners.push(tx),
            Command::Participants(room, reply) => {
                let r = self
                    .rooms
                    .get(&room)
                    .map(|r| {
                        r.participants
                            .iter()
                            .map(|(p, &k)| (p.clone(), ConnectionId(k)))
                            .collect()
                    })
                    .ok_or(SfuError::UnknownRoom(room));
                let _ = reply.send(r);
            }
            Command::Counters(tx) => {
                let mut c = self.counters.clone();
                if let Some(tcp) = self.net.tcp.as_ref() {
                    c.tcp_open = tcp.open() as u64;
                    c.tcp_send_dropped = tcp.send_dropped;
                }
                let _ = tx.send(c);
            }
            Command::Shutdown(_) => {}
        }
    }

    fn peer_key(&self, room: &RoomId, participant: &ParticipantId) -> Result<PeerKey> {
        let r = self
            .rooms
            .get(room)
            .ok_or_else(|| SfuError::UnknownRoom(room.clone()))?;
        r.participants
            .get(participant)
            .copied()
            .ok_or_else(|| SfuError::UnknownParticipant {
                room: room.clone(),
                participant: participant.clone(),
            })
    }

    fn join(
        &mut self,
        now: Instant,
        room_id: RoomId,
        participant: ParticipantId,
        offer: String,
    ) -> Result<(String, ConnectionId)> {
        let room = self
            .rooms
            .get(&room_id)
            .ok_or_else(|| SfuError::UnknownRoom(room_id.clone()))?;
        // The same participant joining again comes back with a fresh
        // connection (a reload, or a connection it gave up on): it takes its
        // seat back. The old connection goes without a `ParticipantLeft`.
        let replaced = room.participants.get(&participant).copied();
        let udp_host = self.net.udp_host;
        let tcp_host = self.net.tcp.as_ref().map(|t| t.host);
        let (mut pc, send_estimate) = new_peer_connection(now, &self.config)?;
        let answer = guarded(|| {
            let offer = RTCSessionDescription::offer(offer).map_err(sdp_error)?;
            pc.set_remote_description(now, offer).map_err(sdp_error)?;
            add_host_candidates(&mut pc, udp_host, tcp_host)?;
            prefer_red(&mut pc);
            let answer = pc.create_answer(None).map_err(sdp_error)?;
            pc.set_local_description(now, answer.clone()).map_err(sdp_error)?;
            Ok(rtp_candidates_only(answer.sdp))
        })?;
        let (Some(ufrag), Some(pwd)) = (sdp_ufrag(&answer), sdp_ice_pwd(&answer)) else {
            return Err(SfuError::WebRtc("our answer has no ICE credentials".into()));
        };
        let (ufrag, pwd) = (ufrag.to_owned(), pwd.to_owned());
        if let Some(old) = replaced {
            tracing::info!(room = %room_id, %participant, "participant rejoined with a new connection");
            self.remove_peer(old, CloseReason::Replaced);
        }
        let key = self.keys.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.by_ufrag.insert(ufrag.clone(), Credentials { key, pwd });
        self.peers.insert(
            key,
            Peer {
                room: room_id.clone(),
                id: participant.clone(),
                pc,
                ufrag,
                addrs: Vec::new(),
                armed: None,
                negotiation: crate::negotiation::Negotiation::new(self.config.negotiation),
                path: crate::path::Path::new(),
                last_probe: None,
                state: RTCPeerConnectionState::New,
                inbound: HashMap::new(),
                outbound: HashMap::new(),
                outbound_ssrcs: HashMap::new(),
                published_count: 0,
                closing: false,
                video_wanted: true,
                send_estimate,
            },
        );
        let existing: Vec<TrackId> = match self.rooms.get_mut(&room_id) {
            Some(room) => {
                room.participants.insert(participant, key);
                room.tracks.keys().cloned().collect()
            }
            None => Vec::new(),
        };
        for track in existing {
            self.subscribe(now, &room_id, &track, key);
        }
        self.mark(key);
        Ok((answer, ConnectionId(key)))
    }

    /// An offer from the client. `None`: it crossed one of ours and is
    /// ignored (we are the impolite peer; the client answers ours and offers
    /// again).
    fn handle_offer(&mut self, now: Instant, key: PeerKey, sdp: String) -> Result<Option<String>> {
        let peer = self.peers.get_mut(&key).ok_or(SfuError::Stopped)?;
        if peer.negotiation.handle_client_offer() == crate::negotiation::ClientOffer::Ignore {
            tracing::debug!(participant = %peer.id, "client offer crossed ours; ignored");
            return Ok(None);
        }
        let answer = guarded(|| {
            let offer = RTCSessionDescription::offer(sdp).map_err(sdp_error)?;
            peer.pc.set_remote_description(now, offer).map_err(sdp_error)?;
            prefer_red(&mut peer.pc);
            let answer = peer.pc.create_answer(None).map_err(sdp_error)?;
            peer.pc
                .set_local_description(now, answer.clone())
                .map_err(sdp_error)?;
            Ok(rtp_candidates_only(answer.sdp))
        });
        if answer.is_err() && peer.pc.pending_remote_description().is_some() {
            // Never leave the connection half-negotiated by a bad offer.
            let _ = guarded(|| {
                let rollback = RTCSessionDescription::rollback(None).map_err(sdp_error)?;
                peer.pc.set_remote_description(now, rollback).map_err(sdp_error)
            });
        }
        // An ICE restart gives us new credentials: route by the new ufrag too.
        if let Ok(sdp) = &answer {
            if let (Some(ufrag), Some(pwd)) = (sdp_ufrag(sdp), sdp_ice_pwd(sdp)) {
                if ufrag != peer.ufrag {
                    tracing::info!(participant = %peer.id, "ICE restart");
                    peer.ufrag = ufrag.to_owned();
                    peer.path.handle_ice_restart();
                    let creds = Credentials {
                        key,
                        pwd: pwd.to_owned(),
                    };
                    self.by_ufrag.insert(ufrag.to_owned(), creds);
                }
            }
        }
        self.mark(key);
        answer.map(Some)
    }

    fn handle_answer(&mut self, now: Instant, key: PeerKey, sdp: String) -> Result<()> {
        let peer = self.peers.get_mut(&key).ok_or(SfuError::Stopped)?;
        if !peer.negotiation.handle_answer() || peer.pc.pending_local_description().is_none() {
            return Err(SfuError::NegotiationState("no offer is outstanding".into()));
        }
        tracing::debug!(participant = %peer.id, "answer received");
        let r = guarded(|| {
            let answer = RTCSessionDescription::answer(sdp).map_err(sdp_error)?;
            peer.pc.set_remote_description(now, answer).map_err(sdp_error)
        });
        if r.is_ok() {
            peer.negotiation.handle_answer_applied();
        }
        // A refused answer leaves our offer out: a client that cannot answer
        // it is told to rejoin when the answer timeout runs out.
        self.mark(key);
        r
    }

    fn add_candidate(&mut self, key: PeerKey, c: IceCandidate) -> Result<()> {
        let peer = self.peers.get_mut(&key).ok_or(SfuError::Stopped)?;
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        let r = guarded(|| {
            peer.pc
                .add_remote_candidate(init)
                .map_err(|e| SfuError::InvalidCandidate(e.to_string()))
        });
        self.mark(key);
        r
    }

    /// Sends what the participant's negotiation asks for: a new offer once
    /// the connection is stable, an outstanding offer again, or a request to
    /// rejoin ([`crate::negotiation`]).
    pub(super) fn negotiate(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.closing {
            return;
        }
        let stable = peer.is_stable();
        // Asked after every drain: nothing is cloned unless there is something to do.
        let Some(action) = peer.negotiation.poll_action(now, stable) else {
            return;
        };
        let (room, participant) = (peer.room.clone(), peer.id.clone());
        match action {
            crate::negotiation::Action::Offer => {
                let offer = guarded(|| {
                    let offer = peer.pc.create_offer(None).map_err(webrtc)?;
                    peer.pc
                        .set_local_description(now, offer.clone())
                        .map_err(webrtc)?;
                    Ok(rtp_candidates_only(offer.sdp))
                });
                match offer {
                    Ok(sdp) => {
                        peer.negotiation.handle_offer_sent(now, sdp.clone());
                        tracing::debug!(%participant, "renegotiation offer sent");
                        self.emit(SfuEvent::Offer {
                            room,
                            participant,
                            sdp,
                        });
                    }
                    Err(e) => {
                        peer.negotiation.handle_offer_failed();
                        tracing::warn!(%participant, error = %e, "cannot create offer");
                    }
                }
            }
            crate::negotiation::Action::Resend(sdp) => {
                tracing::info!(%participant, "offer sent again (no answer yet)");
                self.emit(SfuEvent::Offer {
                    room,
                    participant,
                    sdp,
                });
            }
            crate::negotiation::Action::Rejoin => {
                tracing::warn!(%participant, "offer never answered; asking the client to rejoin");
                self.emit(SfuEvent::RejoinNeeded { room, participant });
            }
        }
    }

    pub(super) fn handle_event(&mut self, now: Instant, key: PeerKey, event: RTCPeerConnectionEvent) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let (room, participant) = (peer.room.clone(), peer.id.clone());
        match event {
            RTCPeerConnectionEvent::OnNegotiationNeededEvent => peer.negotiation.handle_change(),
            RTCPeerConnectionEvent::OnIceCandidateEvent(ev) => {
                if let Ok(init) = ev.candidate.to_json() {
                    self.emit(SfuEvent::IceCandidate {
                        room,
                        participant,
                        candidate: IceCandidate {
                            candidate: init.candidate,
                            sdp_mid: init.sdp_mid,
                            sdp_mline_index: init.sdp_mline_index,
                            username_fragment: init.username_fragment,
                        },
                    });
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                peer.state = state;
                self.emit(SfuEvent::ConnectionState {
                    room,
                    participant,
                    state: connection_state(state),
                });
                // A closed connection (the page went away: reload, tab
                // closed) stays in its seat, silent, until the participant
                // rejoins into it or its owner removes it. Failed happens
                // only with a failed timeout set, or when DTLS fails.
                if state == RTCPeerConnectionState::Failed {
                    self.remove_peer(key, CloseReason::ConnectionFailed);
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                self.publish(now, key, init.track_id, init.receiver_id, init.ssrc);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(rtc_track_id)) => {
                if let Some(track) = peer.inbound.get(&rtc_track_id).cloned() {
                    self.unpublish(&room, &track);
                }
            }
            _ => {}
        }
    }
}

/// The description as sent to the client, without the RTCP-component
/// copies of our candidates. `rtc` writes each candidate twice, as
/// component 1 and component 2, but our descriptions multiplex RTCP with
/// RTP (`a=rtcp-mux`; a browser's `rtcpMuxPolicy` can only be "require",
/// RFC 8829 §4.1.1), so component 2 has nothing to connect; Chromium logs
/// each such line as a candidate it could not use.
pub(crate) fn rtp_candidates_only(sdp: String) -> String {
    let rtcp = |line: &str| {
        line.strip_prefix("a=candidate:")
            .and_then(|rest| rest.split_ascii_whitespace().nth(1))
            == Some("2")
    };
    if !sdp.lines().any(rtcp) {
        return sdp;
    }
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if !rtcp(line.trim_end()) {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod candidate_tests {
    use super::rtp_candidates_only;

    #[test]
    fn only_component_one_candidates_are_sent() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n\
a=candidate:1 2 udp 2130706431 10.0.0.1 5000 typ host\r\n\
a=candidate:2 1 tcp 1671430143 10.0.0.1 5001 typ host tcptype passive\r\n\
a=candidate:2 2 tcp 1671430143 10.0.0.1 5001 typ host tcptype passive\r\n\
a=end-of-candidates\r\n";
        let out = rtp_candidates_only(sdp.to_owned());
        assert_eq!(
            out,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\n\
a=candidate:2 1 tcp 1671430143 10.0.0.1 5001 typ host tcptype passive\r\n\
a=end-of-candidates\r\n"
        );
        // Nothing to take out: the same text.
        assert_eq!(rtp_candidates_only(out.clone()), out);
    }
}
