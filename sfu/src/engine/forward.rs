//! The per-packet path: RTP from a publisher to its subscribers, feedback
//! from subscribers, and keyframe requests upstream.

use super::*;

impl Engine {
    // -------------------------------------------------------------- forwarding

    pub(super) fn forward_rtp(
        &mut self,
        now: Instant,
        key: PeerKey,
        rtc_track: &str,
        packet: rtc::rtp::Packet,
    ) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        let Some(track_id) = peer.inbound.get(rtc_track) else {
            return;
        };
        let Some(published) = self
            .rooms
            .get_mut(&peer.room)
            .and_then(|r| r.tracks.get_mut(track_id))
        else {
            return;
        };
        published.counters.packets += 1;
        published.counters.bytes += packet.payload.len() as u64;
        published.last_packet_at = Some(now);
        if packet.payload.is_empty() {
            // Padding only: the publisher probing its own uplink. Nothing to forward.
            return;
        }
        let seen = published.seen.entry(packet.header.ssrc).or_default();
        if !seen.first_time(packet.header.sequence_number) {
            self.counters.rtp_duplicates += 1;
            tracing::trace!(
                ssrc = packet.header.ssrc,
                seq = packet.header.sequence_number,
                "duplicate"
            );
            return;
        }
        let keyframe = published.codec.is_keyframe_start(&packet.payload);
        if keyframe {
            published.keyframe.handle_keyframe(now);
        }
        let ssrc = packet.header.ssrc;
        let layer = published.layers.iter().position(|&s| s == ssrc).unwrap_or(0);
        if keyframe {
            tracing::debug!(publisher = %peer.id, layer, ssrc, "keyframe arrived");
        }
        if published.layers.len() > 1 {
            *published.layer_bytes.entry(ssrc).or_default() += packet.payload.len() as u64;
        }
        let rtc_codec = &published.rtc_codec;
        let video = published.kind == MediaKind::Video;
        // Subscribers that start getting this video now, and at which level.
        let mut started: Vec<(ParticipantId, VideoLevel)> = Vec::new();
        for (&sub_key, sub) in published.subs.iter_mut() {
            let Some(subscriber) = self.peers.get_mut(&sub_key) else {
                continue;
            };
            if !subscriber.can_receive(now) {
                tracing::trace!(subscriber = %subscriber.id, ssrc, "not forwarded: subscriber not connected");
                continue;
            }
            if video && !subscriber.video_wanted {
                tracing::trace!(subscriber = %subscriber.id, ssrc, "not forwarded: audio only");
                continue;
            }
            // A layer switch needs nothing more here: the rewriter splices the
            // new layer on when it sees its SSRC.
            if let Some(sel) = sub.selector.as_mut() {
                match sel.handle_packet(layer, keyframe) {
                    LayerDecision::Drop => {
                        tracing::trace!(subscriber = %subscriber.id, layer, current = ?sel.current(), target = sel.target(), "not forwarded: layer");
                        continue;
                    }
                    LayerDecision::Forward { switched: true } => {
                        tracing::debug!(subscriber = %subscriber.id, layer, "simulcast layer switched");
                        // From the same layer after video was off: no jump in numbers.
                        sub.rewriter.splice();
                        let layers = published.layers.len();
                        started.push((subscriber.id.clone(), VideoLevel::Layer { layer, layers }));
                    }
                    LayerDecision::Forward { switched: false } => {}
                }
            }
            if sub.waiting_keyframe {
                if !keyframe {
                    tracing::trace!(subscriber = %subscriber.id, ssrc, "not forwarded: waiting for a keyframe");
                    continue;
                }
                sub.waiting_keyframe = false;
                if sub.selector.is_none() {
                    started.push((subscriber.id.clone(), VideoLevel::Layer { layer: 0, layers: 1 }));
                }
            }
            if keyframe {
                sub.keyframe_wanted = false;
            }
            let Some(mut sender) = subscriber.pc.rtp_sender(sub.sender_id) else {
                continue;
            };
            let pt = match sub.payload_type {
                Some(pt) => pt,
                None => {
                    let params = sender.get_parameters();
                    let find = |mime: &str, fmtp: Option<&str>| {
                        let codecs = &params.rtp_parameters.codecs;
                        codecs
                            .iter()
                            .find(|c| {
                                c.rtp_codec.mime_type.eq_ignore_ascii_case(mime)
                                    && fmtp.is_none_or(|f| c.rtp_codec.sdp_fmtp_line == f)
                            })
                            .or_else(|| {
                                codecs
                                    .iter()
                                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                            })
                            .map(|c| c.payload_type)
                    };
                    let (pt, strip_red) = match find(&rtc_codec.mime_type, Some(&rtc_codec.sdp_fmtp_line)) {
                        Some(pt) => (pt, false),
                        // Redundant audio to a subscriber that did not
                        // accept it: its primary Opus block only.
                        None if rtc_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_RED) => {
                            let Some(pt) = find(MIME_TYPE_OPUS, None) else {
                                continue;
                            };
                            (pt, true)
                        }
                        None => continue,
                    };
                    sub.payload_type = Some(pt);
                    sub.strip_red = strip_red;
                    pt
                }
            };
            let rw = sub
                .rewriter
                .rewrite(now, ssrc, packet.header.sequence_number, packet.header.timestamp);
            let mut out = packet.clone();
            if published.codec == Codec::Vp8 {
                if let Some((at, pid)) = crate::codec::vp8_picture_id(&out.payload) {
                    let mapped = sub.rewriter.picture_id(pid);
                    if mapped != pid {
                        let mut payload = BytesMut::from(&out.payload[..]);
                        crate::codec::vp8_set_picture_id(&mut payload, at, mapped);
                        out.payload = payload.freeze();
                    }
                }
            }
            if sub.strip_red {
                let Some((_, start)) = crate::codec::red_primary(&out.payload) else {
                    continue;
                };
                out.payload = out.payload.slice(start..);
            }
            out.header.ssrc = rw.ssrc;
            out.header.sequence_number = rw.sequence_number;
            out.header.timestamp = rw.timestamp;
            out.header.payload_type = pt;
            // The publisher's header extension ids mean nothing on this leg;
            // the sender's interceptors add their own (transport-wide
            // sequence numbers). All of the extension block goes, padding
            // included: a stale padding length makes the packet's marshalled
            // size disagree with what is written, and SRTP drops it.
            out.header.extension = false;
            out.header.extension_profile = 0;
            out.header.extensions.clear();
            out.header.extensions_padding = 0;
            // RTP padding was stripped when the packet was read.
            out.header.padding = false;
            let len = out.payload.len() as u64;
            tracing::trace!(subscriber = %subscriber.id, pt, ssrc, seq = packet.header.sequence_number, out_seq = rw.sequence_number, "forward");
            match sender.write_rtp(now, out) {
                Ok(()) => {
                    sub.counters.packets += 1;
                    sub.counters.bytes += len;
                    self.counters.rtp_forwarded += 1;
                    self.counters.rtp_forwarded_bytes += len;
                    if !self.dirty.contains(&sub_key) {
                        self.dirty.push(sub_key);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "write_rtp failed"),
            }
        }
        if !started.is_empty() {
            let publisher = published.participant.clone();
            let Some(peer) = self.peers.get(&key) else {
                return;
            };
            let (room, track) = (peer.room.clone(), peer.inbound.get(rtc_track).cloned());
            for (participant, level) in started {
                self.emit(SfuEvent::VideoLevel {
                    room: room.clone(),
                    participant,
                    publisher: publisher.clone(),
                    track: track.clone().unwrap_or_else(|| TrackId::new(String::new())),
                    level,
                });
            }
        }
    }

    pub(super) fn handle_rtcp(
        &mut self,
        now: Instant,
        key: PeerKey,
        rtc_track: &str,
        packets: &[Box<dyn rtc::rtcp::Packet>],
    ) {
        let Some(peer) = self.peers.get(&key) else {
            return;
        };
        // Reception reports (in RRs, and in the SRs of a subscriber that also
        // publishes): which of our streams reach this subscriber. One compound
        // covers several streams (`rtc` files it under the first).
        for p in packets {
            let any = p.as_any();
            let blocks = match (
                any.downcast_ref::<ReceiverReport>(),
                any.downcast_ref::<rtc::rtcp::sender_report::SenderReport>(),
            ) {
                (Some(rr), _) => &rr.reports,
                (None, Some(sr)) => &sr.reports,
                (None, None) => continue,
            };
            for block in blocks {
                let Some(track) = peer.outbound_ssrcs.get(&block.ssrc) else {
                    tracing::trace!(subscriber = %peer.id, ssrc = block.ssrc, "report about a stream we do not send it");
                    continue;
                };
                tracing::trace!(subscriber = %peer.id, %track, "reception report");
                if let Some(sub) = self
                    .rooms
                    .get_mut(&peer.room)
                    .and_then(|r| r.tracks.get_mut(track))
                    .and_then(|t| t.subs.get_mut(&key))
                {
                    // Any report about the stream: the subscriber's connection
                    // knows it (browsers report nothing about a stream they
                    // have no place for).
                    sub.confirmed += 1;
                    // Cumulative lost is 24-bit signed (RFC 3550 §6.4.1).
                    let lost = i64::from(block.total_lost & 0xFF_FFFF);
                    let lost = if lost >= 0x80_0000 {
                        lost - 0x100_0000
                    } else {
                        lost
                    };
                    sub.reported = Some((lost, block.jitter));
                }
            }
        }
        // Feedback about media we send to this peer, each packet filed under
        // the stream it names, not under the track `rtc` filed the message
        // with (for a compound, its first packet's stream).
        let fallback = peer.outbound.get(rtc_track).cloned();
        // Tracks whose video a REMB turned off for this subscriber.
        let mut off: Vec<(ParticipantId, ParticipantId, TrackId)> = Vec::new();
        for p in packets {
            let any = p.as_any();
            let (named, keyframe): (Vec<u32>, bool) =
                if let Some(pli) = any.downcast_ref::<PictureLossIndication>() {
                    (vec![pli.media_ssrc], true)
                } else if let Some(fir) = any.downcast_ref::<FullIntraRequest>() {
                    (fir.fir.iter().map(|e| e.ssrc).collect(), true)
                } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    (vec![nack.media_ssrc], false)
                } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                    (remb.ssrcs.clone(), false)
                } else {
                    continue;
                };
            let mut tracks: Vec<TrackId> = named
                .iter()
                .filter_map(|s| peer.outbound_ssrcs.get(s).cloned())
                .collect();
            if tracks.is_empty() {
                // A request naming no stream we know (e.g. a REMB for all).
                tracks.extend(fallback.clone());
            }
            tracks.dedup();
            for track_id in tracks {
                let Some(published) = self
                    .rooms
                    .get_mut(&peer.room)
                    .and_then(|r| r.tracks.get_mut(&track_id))
                else {
                    continue;
                };
                let Some(sub) = published.subs.get_mut(&key) else {
                    continue;
                };
                if keyframe {
                    sub.counters.plis += 1;
                    sub.keyframe_wanted = true;
                    self.next_keyframe_tick = self.next_keyframe_tick.min(now);
                    tracing::debug!(subscriber = %peer.id, track = %track_id, "keyframe request from a subscriber");
                    published.keyframe.handle_request(now);
                } else if let Some(nack) = any.downcast_ref::<TransportLayerNack>() {
                    sub.counters.nacks += nack.nacks.len() as u64;
                    for pair in &nack.nacks {
                        for seq in pair.packet_list() {
                            if sub.nacked.first_time(seq) {
                                sub.nacked_packets += 1;
                            }
                        }
                    }
                } else if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                    // With our own send-side estimate, that one decides: two
                    // estimates taking turns would make the layer flap.
                    if !self.config.bandwidth_estimation {
                        if sub.handle_estimate(now, remb.bitrate as u64) {
                            off.push((peer.id.clone(), published.participant.clone(), track_id.clone()));
                        }
                        // A layer switch may now wait for a keyframe.
                        self.next_keyframe_tick = self.next_keyframe_tick.min(now);
                    }
                }
            }
        }
        let room = peer.room.clone();
        for (participant, publisher, track) in off {
            self.emit(SfuEvent::VideoLevel {
                room: room.clone(),
                participant,
                publisher,
                track,
                level: VideoLevel::Off(VideoOff::Bandwidth),
            });
        }
    }

    /// The participant chose audio only (`wanted == false`), or video again.
    pub(super) fn set_video_wanted(&mut self, now: Instant, key: PeerKey, wanted: bool) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.video_wanted == wanted {
            return;
        }
        peer.video_wanted = wanted;
        let (participant, room_id) = (peer.id.clone(), peer.room.clone());
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let mut events = Vec::new();
        for (track_id, published) in room.tracks.iter_mut() {
            if published.kind != MediaKind::Video {
                continue;
            }
            let Some(sub) = published.subs.get_mut(&key) else {
                continue;
            };
            if wanted {
                // From the next keyframe, asked for now.
                sub.waiting_keyframe = true;
                sub.keyframe_wanted = true;
                if let Some(sel) = sub.selector.as_mut() {
                    sel.restart();
                }
                published.keyframe.handle_urgent_request(now);
                self.next_keyframe_tick = self.next_keyframe_tick.min(now);
            } else {
                sub.rewriter.splice();
                events.push(SfuEvent::VideoLevel {
                    room: room_id.clone(),
                    participant: participant.clone(),
                    publisher: published.participant.clone(),
                    track: track_id.clone(),
                    level: VideoLevel::Off(VideoOff::Requested),
                });
            }
        }
        tracing::info!(%participant, wanted, "video wanted");
        for e in events {
            self.emit(e);
        }
        if wanted {
            self.keyframe_tick(now);
        }
    }

    /// Sends the keyframe requests that are due: for subscribers still waiting
    /// for their first keyframe, for pending layer switches, and for PLI/FIR
    /// relayed from subscribers — each rate-limited per publisher track.
    /// Returns whether a need is still open (a keyframe awaited, a request
    /// held back), so that the next look comes soon.
    pub(super) fn keyframe_tick(&mut self, now: Instant) -> bool {
        let mut open = false;
        let mut sends: Vec<(PeerKey, RTCRtpReceiverId, u32)> = Vec::new();
        for room in self.rooms.values_mut() {
            for published in room.tracks.values_mut() {
                if published.kind != MediaKind::Video {
                    continue;
                }
                // The layers whose keyframe someone waits for: a subscriber's
                // first picture, a pending layer switch, or a subscriber's
                // own PLI/FIR — about the layer it is receiving, not another.
                let mut want_layers: Vec<usize> = Vec::new();
                for (sub_key, sub) in &published.subs {
                    open |= sub.waiting_keyframe
                        || sub.keyframe_wanted
                        || sub
                            .selector
                            .as_ref()
                            .is_some_and(|s| s.poll_keyframe_request().is_some());
                    if !self
                        .peers
                        .get(sub_key)
                        .is_some_and(|p| p.can_receive(now) && p.video_wanted)
                    {
                        continue;
                    }
                    let sel = sub.selector.as_ref();
                    let receiving = sel.map_or(0, |s| s.current().unwrap_or(s.target()));
                    let mut want = |l: usize| {
                        if !want_layers.contains(&l) {
                            want_layers.push(l);
                        }
                    };
                    if sub.waiting_keyframe || sub.keyframe_wanted {
                        want(receiving);
                    }
                    if let Some(l) = sel.and_then(|s| s.poll_keyframe_request()) {
                        want(l);
                    }
                }
                if !want_layers.is_empty() {
                    published.keyframe.handle_request(now);
                }
                let requested = published.keyframe.poll_request(now);
                open |= published.keyframe.is_pending();
                if requested {
                    if want_layers.is_empty() {
                        want_layers.push(0);
                    }
                    for layer in want_layers {
                        if let Some(&ssrc) = published.layers.get(layer).or(published.layers.first()) {
                            sends.push((published.publisher, published.receiver_id, ssrc));
                        }
                    }
                }
            }
        }
        for (key, receiver_id, media_ssrc) in sends {
            let Some(p) = self.peers.get_mut(&key) else {
                continue;
            };
            if let Some(mut receiver) = p.pc.rtp_receiver(receiver_id) {
                let pli = PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                };
                if receiver.write_rtcp(now, vec![Box::new(pli)]).is_ok() {
                    self.counters.keyframe_requests += 1;
                    tracing::debug!(participant = %p.id, media_ssrc, "keyframe requested");
                }
            }
            self.mark(key);
        }
        open
    }

    /// Finds subscriptions that should receive media and do not, and repairs
    /// them ([`crate::delivery`]): a keyframe first, then renegotiation.
    pub(super) fn watch_tick(&mut self, now: Instant) {
        let mut repairs: Vec<(RoomId, PeerKey, TrackId, crate::delivery::Repair)> = Vec::new();
        for (room_id, room) in self.rooms.iter_mut() {
            for (track_id, published) in room.tracks.iter_mut() {
                let sending = published
                    .last_packet_at
                    .is_some_and(|t| now.saturating_duration_since(t) <= SENDING_WITHIN);
                let video = published.kind == MediaKind::Video;
                for (sub_key, sub) in published.subs.iter_mut() {
                    // A subscriber we hear nothing from is cut off (its network
                    // dropped): no negotiation repairs that, its path coming
                    // back does.
                    let reachable = self
                        .peers
                        .get(sub_key)
                        .is_some_and(|p| p.can_receive(now) && p.path.heard_within(now, SENDING_WITHIN));
                    // Video off (audio only, asked for or for bandwidth): nothing to forward.
                    let video_off = video
                        && (self.peers.get(sub_key).is_some_and(|p| !p.video_wanted)
                            || sub.selector.as_ref().is_some_and(LayerSelector::video_off));
                    let expected = sending && reachable && !video_off;
                    if let Some(r) = sub
                        .watch
                        .poll(now, expected, sub.counters.packets, sub.confirmed, video)
                    {
                        repairs.push((room_id.clone(), *sub_key, track_id.clone(), r));
                    }
                }
            }
        }
        for (room, sub_key, track, repair) in repairs {
            let Some(peer) = self.peers.get_mut(&sub_key) else {
                continue;
            };
            let participant = peer.id.clone();
            match repair {
                crate::delivery::Repair::Keyframe => {
                    if let Some(sub) = self
                        .rooms
                        .get_mut(&room)
                        .and_then(|r| r.tracks.get_mut(&track))
                        .and_then(|t| t.subs.get_mut(&sub_key))
                    {
                        sub.keyframe_wanted = true;
                    }
                    self.keyframe_soon(now);
                }
                crate::delivery::Repair::Renegotiate => {
                    peer.negotiation.handle_repair();
                    self.mark(sub_key);
                }
            }
            tracing::info!(%participant, %track, repair = repair.code(), "subscriber not receiving; repaired");
            self.emit(SfuEvent::Repaired {
                room,
                participant,
                track,
                repair,
            });
        }
    }

    /// A participant's packets arrive again after a silence: both ways the
    /// pictures need a keyframe now, not after the receivers notice, and not
    /// after the requests' usual interval (the last ones went nowhere).
    pub(super) fn path_resumed(&mut self, now: Instant, key: PeerKey) {
        let Some(room_id) = self.peers.get(&key).map(|p| p.room.clone()) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        for published in room.tracks.values_mut() {
            if published.kind != MediaKind::Video {
                continue;
            }
            let mut wanted = false;
            for (sub_key, sub) in published.subs.iter_mut() {
                // What it receives, and what the others receive from it.
                if *sub_key == key || published.publisher == key {
                    sub.keyframe_wanted = true;
                    wanted = true;
                }
            }
            if wanted {
                published.keyframe.handle_urgent_request(now);
                self.next_keyframe_tick = self.next_keyframe_tick.min(now);
            }
        }
        self.keyframe_tick(now);
    }
}
