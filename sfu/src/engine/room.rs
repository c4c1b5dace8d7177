//! Room membership changes: publishing, subscribing, leaving.

use super::*;

impl Engine {
    // ---------------------------------------------------------- room changes

    /// Adds a sender for `track` to the subscriber's connection (renegotiation follows).
    pub(super) fn subscribe(&mut self, now: Instant, room_id: &RoomId, track_id: &TrackId, sub_key: PeerKey) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(published) = room.tracks.get_mut(track_id) else {
            return;
        };
        if published.publisher == sub_key || published.subs.contains_key(&sub_key) {
            return;
        }
        let Some(sub) = self.peers.get_mut(&sub_key) else {
            return;
        };
        let ssrc = rand::random::<u32>();
        let kind = match published.kind {
            MediaKind::Audio => RtpCodecKind::Audio,
            MediaKind::Video => RtpCodecKind::Video,
        };
        let track = MediaStreamTrack::new(
            published.participant.to_string(),
            track_id.to_string(),
            track_id.to_string(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: published.rtc_codec.clone(),
                ..Default::default()
            }],
        );
        let sender_id = match sub.pc.add_track(track) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(participant = %sub.id, track = %track_id, error = %e, "cannot add track");
                return;
            }
        };
        sub.outbound.insert(track_id.to_string(), track_id.clone());
        sub.outbound_ssrcs.insert(ssrc, track_id.clone());
        sub.negotiation.handle_change();
        let video = published.kind == MediaKind::Video;
        let selector = (published.layers.len() > 1)
            .then(|| LayerSelector::new(nominal_bitrates(published.layers.len()), LayerPolicy::default()));
        published.subs.insert(
            sub_key,
            Subscription {
                sender_id,
                rewriter: StreamRewriter::new(ssrc, published.rtc_codec.clock_rate),
                waiting_keyframe: video,
                keyframe_wanted: false,
                selector,
                payload_type: None,
                strip_red: false,
                counters: Counters::default(),
                watch: crate::delivery::DeliveryWatch::new(),
                confirmed: 0,
                reported: None,
                loss: crate::layers::LossWindow::default(),
                nacked: crate::dedup::SeqWindow::default(),
                nacked_packets: 0,
            },
        );
        if video {
            // Its first picture starts at a keyframe.
            self.keyframe_soon(now);
        }
        self.mark(sub_key);
    }

    pub(super) fn publish(
        &mut self,
        now: Instant,
        key: PeerKey,
        rtc_track_id: String,
        receiver_id: RTCRtpReceiverId,
        ssrc: u32,
    ) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let room_id = peer.room.clone();
        if let Some(track_id) = peer.inbound.get(&rtc_track_id).cloned() {
            // Another simulcast layer of a track we already forward.
            if let Some(p) = self
                .rooms
                .get_mut(&room_id)
                .and_then(|r| r.tracks.get_mut(&track_id))
            {
                if !p.layers.contains(&ssrc) {
                    p.layers.push(ssrc);
                    self.by_ssrc.insert(ssrc, key);
                    learn_rids(peer, receiver_id, &p.layers, &mut p.rids);
                    if let Some(order) = layer_order(&p.layers, &p.rids, &p.layer_bps) {
                        p.layers = order;
                    }
                    resume_selectors(p);
                }
            }
            return;
        }
        let Some(receiver) = peer.pc.rtp_receiver(receiver_id) else {
            return;
        };
        let track = receiver.track();
        let kind = kind_of(track.kind());
        let Some(rtc_codec) = track.codec(ssrc).cloned() else {
            tracing::warn!(participant = %peer.id, "track without codec; not forwarded");
            return;
        };
        let mut layers: Vec<u32> = track.ssrcs().collect();
        if layers.is_empty() {
            layers.push(ssrc);
        }
        let mut rids = HashMap::new();
        learn_rids(peer, receiver_id, &layers, &mut rids);
        if let Some(order) = layer_order(&layers, &rids, &HashMap::new()) {
            layers = order;
        }
        for &ssrc in &layers {
            self.by_ssrc.insert(ssrc, key);
        }
        peer.published_count += 1;
        // Unique across the participant's connections: a track published
        // again after a rejoin must not be taken for the old, ended one.
        let track_id = TrackId::new(format!("{}/{}.{}", peer.id, key, peer.published_count));
        peer.inbound.insert(rtc_track_id, track_id.clone());
        let participant = peer.id.clone();
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        room.tracks.insert(
            track_id.clone(),
            Published {
                publisher: key,
                participant: participant.clone(),
                kind,
                codec: Codec::from_mime(&rtc_codec.mime_type),
                rtc_codec,
                receiver_id,
                layers,
                rids,
                layer_bytes: HashMap::new(),
                layer_bps: HashMap::new(),
                seen: HashMap::new(),
                keyframe: KeyframeRequester::new(self.config.keyframe_min_interval),
                subs: HashMap::new(),
                counters: Counters::default(),
                last_packet_at: None,
            },
        );
        let others: Vec<PeerKey> = room
            .participants
            .values()
            .copied()
            .filter(|&k| k != key)
            .collect();
        tracing::info!(room = %room_id, participant = %participant, track = %track_id, ?kind, "track published");
        for other in others {
            self.subscribe(now, &room_id, &track_id, other);
        }
        self.emit(SfuEvent::TrackPublished {
            room: room_id,
            participant,
            track: track_id,
            kind,
        });
    }

    pub(super) fn unpublish(&mut self, room_id: &RoomId, track_id: &TrackId) {
        let Some(published) = self
            .rooms
            .get_mut(room_id)
            .and_then(|r| r.tracks.remove(track_id))
        else {
            return;
        };
        for (sub_key, sub) in published.subs {
            if let Some(p) = self.peers.get_mut(&sub_key) {
                if let Err(e) = p.pc.remove_track(sub.sender_id) {
                    tracing::debug!(participant = %p.id, error = %e, "remove_track failed");
                }
                p.outbound.remove(track_id.as_str());
                p.outbound_ssrcs.retain(|_, t| t != track_id);
                p.negotiation.handle_change();
                self.mark(sub_key);
            }
        }
        if let Some(p) = self.peers.get_mut(&published.publisher) {
            p.inbound.retain(|_, t| t != track_id);
        }
        self.emit(SfuEvent::TrackUnpublished {
            room: room_id.clone(),
            participant: published.participant,
            track: track_id.clone(),
        });
    }

    pub(super) fn remove_peer(&mut self, key: PeerKey, reason: CloseReason) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.closing {
            return;
        }
        peer.closing = true;
        let room_id = peer.room.clone();
        let participant = peer.id.clone();
        let _ = guarded(|| peer.pc.close().map_err(webrtc));
        // Send what the close produced (DTLS close_notify) before forgetting the peer.
        while let Some(mut msg) = peer.pc.poll_write() {
            super::net::redirect(&mut peer.path, &mut msg);
            self.net.send(msg);
        }
        let published: Vec<TrackId> = self
            .rooms
            .get(&room_id)
            .map(|r| {
                r.tracks
                    .iter()
                    .filter(|(_, t)| t.publisher == key)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for t in &published {
            self.unpublish(&room_id, t);
        }
        if let Some(room) = self.rooms.get_mut(&room_id) {
            // A replaced connection's seat now belongs to its successor.
            if room.participants.get(&participant) == Some(&key) {
                room.participants.remove(&participant);
            }
            for t in room.tracks.values_mut() {
                t.subs.remove(&key);
            }
        }
        self.peers.remove(&key);
        self.by_ufrag.retain(|_, c| c.key != key);
        self.by_addr.retain(|_, k| *k != key);
        self.by_ssrc.retain(|_, k| *k != key);
        if let Some(tcp) = self.net.tcp.as_mut() {
            tcp.close_peer(key);
        }
        self.dirty.retain(|&k| k != key);
        tracing::info!(room = %room_id, participant = %participant, reason = reason.code(), "participant left");
        if reason != CloseReason::Replaced {
            self.emit(SfuEvent::ParticipantLeft {
                room: room_id,
                participant,
                connection: ConnectionId(key),
                reason,
            });
        }
    }

    pub(super) fn close_room(&mut self, room_id: &RoomId, reason: CloseReason) -> Result<()> {
        let room = self
            .rooms
            .get(room_id)
            .ok_or_else(|| SfuError::UnknownRoom(room_id.clone()))?;
        let keys: Vec<PeerKey> = room.participants.values().copied().collect();
        for k in keys {
            self.remove_peer(k, reason);
        }
        self.rooms.remove(room_id);
        self.emit(SfuEvent::RoomClosed {
            room: room_id.clone(),
        });
        Ok(())
    }

    pub(super) fn shutdown(&mut self) {
        let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
        for r in rooms {
            let _ = self.close_room(&r, CloseReason::Shutdown);
        }
    }
}

/// Orders simulcast layers lowest first by their rid (`q`/`h`/`f`, or `0`/`1`/`2`
/// in the order the browser listed them); non-simulcast tracks have one layer.
/// Notes the rid of each of `layers` that the publisher's receiving track
/// knows now; true if one was learnt.
pub(super) fn learn_rids(
    peer: &mut Peer,
    receiver_id: RTCRtpReceiverId,
    layers: &[u32],
    rids: &mut HashMap<u32, String>,
) -> bool {
    if layers.len() < 2 || layers.iter().all(|s| rids.contains_key(s)) {
        return false;
    }
    let Some(receiver) = peer.pc.rtp_receiver(receiver_id) else {
        return false;
    };
    let track = receiver.track();
    let mut learnt = false;
    for &ssrc in layers {
        if let Some(rid) = track.rid(ssrc).filter(|r| !r.is_empty()) {
            learnt |= rids.insert(ssrc, rid.to_string()).is_none();
        }
    }
    learnt
}

/// Where a rid puts its layer, lowest first, for the names browsers and
/// SFUs use; `None` for any other name.
fn rid_rank(rid: &str) -> Option<u8> {
    match rid {
        "q" | "l" | "low" => Some(0),
        "h" | "m" | "mid" => Some(1),
        "f" | "hi" | "high" => Some(2),
        _ => None,
    }
}

/// The order `layers` belong in, lowest first, if it can be told and
/// differs from theirs: by rid where every layer's is known (and one of
/// the usual names); while some rid is not known yet, by measured bitrate
/// where each layer sends clearly more than the one below it. A layer
/// whose rid was not known used to be sorted last, taken for the top one:
/// the index a subscriber's selector climbed to was then the lowest layer,
/// and the doctor on a clean link watched 320×180 for the whole call.
pub(super) fn layer_order(
    layers: &[u32],
    rids: &HashMap<u32, String>,
    bps: &HashMap<u32, Option<f64>>,
) -> Option<Vec<u32>> {
    if layers.len() < 2 {
        return None;
    }
    let mut order = layers.to_vec();
    if layers.iter().all(|s| rids.contains_key(s)) {
        let ranks: Vec<u8> = layers
            .iter()
            .map(|s| rids.get(s).and_then(|r| rid_rank(r)))
            .collect::<Option<_>>()?;
        order.sort_by_key(|s| ranks[layers.iter().position(|l| l == s).unwrap_or(0)]);
    } else {
        let rates: Vec<f64> = layers
            .iter()
            .map(|s| bps.get(s).copied().flatten())
            .collect::<Option<_>>()?;
        let rate = |s: &u32| rates[layers.iter().position(|l| l == s).unwrap_or(0)];
        order.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        // Only when the bitrates say it plainly: a layer ramping up is not
        // yet above the next.
        if order.windows(2).any(|w| rate(&w[1]) < rate(&w[0]) * 1.3) {
            return None;
        }
    }
    (order != layers).then_some(order)
}

/// Every subscriber of `p` gets a selector over its layers as they are
/// now; it keeps the layer it is getting, so the picture carries on.
pub(super) fn resume_selectors(p: &mut Published) {
    let layers = p.layers.clone();
    for sub in p.subs.values_mut() {
        let current = sub
            .rewriter
            .source()
            .and_then(|s| layers.iter().position(|&l| l == s));
        sub.selector = Some(LayerSelector::resume(
            nominal_bitrates(layers.len()),
            LayerPolicy::default(),
            current,
        ));
    }
}

/// Layer bitrates assumed until measured (`stats.rs` measures them every
/// half second): 150 kbps, 500 kbps, 1.5 Mbps — what browsers send for
/// quarter, half and full resolution of a 720p camera.
pub(super) fn nominal_bitrates(layers: usize) -> Vec<u64> {
    [150_000, 500_000, 1_500_000]
        .into_iter()
        .chain(std::iter::repeat(1_500_000))
        .take(layers)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rids(pairs: &[(u32, &str)]) -> HashMap<u32, String> {
        pairs.iter().map(|&(s, r)| (s, r.to_owned())).collect()
    }

    fn bps(pairs: &[(u32, f64)]) -> HashMap<u32, Option<f64>> {
        pairs.iter().map(|&(s, b)| (s, Some(b))).collect()
    }

    #[test]
    fn layers_are_ordered_by_rid_once_every_rid_is_known() {
        let r = rids(&[(1, "f"), (2, "q"), (3, "h")]);
        assert_eq!(layer_order(&[1, 2, 3], &r, &HashMap::new()), Some(vec![2, 3, 1]));
        assert_eq!(
            layer_order(&[2, 3, 1], &r, &HashMap::new()),
            None,
            "already in order"
        );
        // Names that say nothing of their place: the order stays.
        let r = rids(&[(1, "a"), (2, "b")]);
        assert_eq!(layer_order(&[2, 1], &r, &bps(&[(1, 1e6), (2, 1e5)])), None);
    }

    /// What a renegotiation left behind in a real call: the top layer's rid
    /// known, the two others' forgotten. Sorting the unknown ones last made
    /// the lowest layer the "top" one.
    #[test]
    fn while_a_rid_is_unknown_the_bitrates_order_the_layers() {
        let r = rids(&[(1, "f")]);
        // Nothing measured yet: no order can be told, none is made up.
        assert_eq!(layer_order(&[1, 2, 3], &r, &HashMap::new()), None);
        let rates = bps(&[(1, 700_000.0), (2, 140_000.0), (3, 350_000.0)]);
        assert_eq!(layer_order(&[1, 2, 3], &r, &rates), Some(vec![2, 3, 1]));
        // Two layers sending about the same: not plain enough to reorder.
        let close = bps(&[(1, 700_000.0), (2, 600_000.0), (3, 350_000.0)]);
        assert_eq!(layer_order(&[1, 2, 3], &r, &close), None);
        // A paused layer (nothing measured): keep the order.
        let mut paused = rates.clone();
        paused.insert(1, None);
        assert_eq!(layer_order(&[1, 2, 3], &r, &paused), None);
    }
}
