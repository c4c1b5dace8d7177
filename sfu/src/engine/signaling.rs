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
            Command::Leave {
                room,
                participant,
                reply,
            } => {
                let r = self
                    .peer_key(&room, &participant)
                    .map(|k| self.remove_peer(k, CloseReason::Removed));
                let _ = reply.send(r);
            }
            Command::Subscribe(tx) => self.listeners.push(tx),
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
    ) -> Result<String> {
        let room = self
            .rooms
            .get(&room_id)
            .ok_or_else(|| SfuError::UnknownRoom(room_id.clone()))?;
        if room.participants.contains_key(&participant) {
            return Err(SfuError::ParticipantExists {
                room: room_id,
                participant,
            });
        }
        let udp_host = self.net.udp_host;
        let tcp_host = self.net.tcp.as_ref().map(|t| t.host);
        let mut pc = new_peer_connection(now, &self.config)?;
        let answer = guarded(|| {
            let offer = RTCSessionDescription::offer(offer).map_err(sdp_error)?;
            pc.set_remote_description(now, offer).map_err(sdp_error)?;
            add_host_candidates(&mut pc, udp_host, tcp_host)?;
            let answer = pc.create_answer(None).map_err(sdp_error)?;
            pc.set_local_description(now, answer.clone()).map_err(sdp_error)?;
            Ok(answer.sdp)
        })?;
        let (Some(ufrag), Some(pwd)) = (sdp_ufrag(&answer), sdp_ice_pwd(&answer)) else {
            return Err(SfuError::WebRtc("our answer has no ICE credentials".into()));
        };
        let (ufrag, pwd) = (ufrag.to_owned(), pwd.to_owned());
        let key = self.next_key;
        self.next_key += 1;
        self.by_ufrag.insert(ufrag.clone(), Credentials { key, pwd });
        self.peers.insert(
            key,
            Peer {
                room: room_id.clone(),
                id: participant.clone(),
                pc,
                ufrag,
                addrs: Vec::new(),
                next_timeout: None,
                negotiation_needed: false,
                state: RTCPeerConnectionState::New,
                inbound: HashMap::new(),
                outbound: HashMap::new(),
                published_count: 0,
                closing: false,
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
            self.subscribe(&room_id, &track, key);
        }
        self.mark(key);
        Ok(answer)
    }

    fn handle_offer(&mut self, now: Instant, key: PeerKey, sdp: String) -> Result<String> {
        let peer = self.peers.get_mut(&key).ok_or(SfuError::Stopped)?;
        let answer = guarded(|| {
            if peer.pc.pending_local_description().is_some() {
                // Glare: the client's offer wins; ours is rolled back and made again later.
                let rollback = RTCSessionDescription::rollback(None).map_err(sdp_error)?;
                peer.pc.set_local_description(now, rollback).map_err(sdp_error)?;
                peer.negotiation_needed = true;
            }
            let offer = RTCSessionDescription::offer(sdp).map_err(sdp_error)?;
            peer.pc.set_remote_description(now, offer).map_err(sdp_error)?;
            let answer = peer.pc.create_answer(None).map_err(sdp_error)?;
            peer.pc
                .set_local_description(now, answer.clone())
                .map_err(sdp_error)?;
            Ok(answer.sdp)
        });
        // An ICE restart gives us new credentials: route by the new ufrag too.
        if let Ok(sdp) = &answer {
            if let (Some(ufrag), Some(pwd)) = (sdp_ufrag(sdp), sdp_ice_pwd(sdp)) {
                if ufrag != peer.ufrag {
                    tracing::info!(participant = %peer.id, "ICE restart");
                    peer.ufrag = ufrag.to_owned();
                    let creds = Credentials {
                        key,
                        pwd: pwd.to_owned(),
                    };
                    self.by_ufrag.insert(ufrag.to_owned(), creds);
                }
            }
        }
        self.mark(key);
        answer
    }

    fn handle_answer(&mut self, now: Instant, key: PeerKey, sdp: String) -> Result<()> {
        let peer = self.peers.get_mut(&key).ok_or(SfuError::Stopped)?;
        if peer.pc.pending_local_description().is_none() {
            return Err(SfuError::NegotiationState("no offer is outstanding".into()));
        }
        tracing::debug!(participant = %peer.id, "answer received");
        let r = guarded(|| {
            let answer = RTCSessionDescription::answer(sdp).map_err(sdp_error)?;
            peer.pc.set_remote_description(now, answer).map_err(sdp_error)
        });
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

    pub(super) fn negotiate(&mut self, now: Instant, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if !peer.negotiation_needed || !peer.is_stable() || peer.closing {
            return;
        }
        peer.negotiation_needed = false;
        let offer = guarded(|| {
            let offer = peer.pc.create_offer(None).map_err(webrtc)?;
            peer.pc
                .set_local_description(now, offer.clone())
                .map_err(webrtc)?;
            Ok(offer.sdp)
        });
        match offer {
            Ok(sdp) => {
                let (room, participant) = (peer.room.clone(), peer.id.clone());
                tracing::debug!(%participant, "renegotiation offer sent");
                self.emit(SfuEvent::Offer {
                    room,
                    participant,
                    sdp,
                });
            }
            Err(e) => tracing::warn!(participant = %peer.id, error = %e, "cannot create offer"),
        }
    }

    pub(super) fn handle_event(&mut self, key: PeerKey, event: RTCPeerConnectionEvent) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let (room, participant) = (peer.room.clone(), peer.id.clone());
        match event {
            RTCPeerConnectionEvent::OnNegotiationNeededEvent => peer.negotiation_needed = true,
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
                match state {
                    RTCPeerConnectionState::Failed => self.remove_peer(key, CloseReason::ConnectionFailed),
                    RTCPeerConnectionState::Closed => self.remove_peer(key, CloseReason::PeerClosed),
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                self.publish(key, init.track_id, init.receiver_id, init.ssrc);
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
