//! Packets in and out: routing what arrives on the shared UDP port to a peer
//! connection, and sending what the connections produce over UDP or ICE-TCP.

use super::tcp::TcpConns;
use super::*;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::VecDeque;

/// A datagram for the engine's UDP socket, which the driver owns.
#[derive(Debug)]
pub(crate) struct Transmit {
    pub to: SocketAddr,
    pub data: BytesMut,
}

/// Where the engine's output goes: datagrams queued for the driver to send
/// on the UDP socket, packets for ICE-TCP into their connection's queue
/// (each connection's task owns its socket).
pub(crate) struct Net {
    /// The address in our UDP host candidate (the local address handed to
    /// the peer connections for UDP packets).
    pub udp_host: SocketAddr,
    /// ICE-TCP connections, when a TCP port is configured.
    pub tcp: Option<TcpConns>,
    /// Datagrams waiting for the driver ([`Engine::poll_transmit`]).
    pub transmits: VecDeque<Transmit>,
}

impl Net {
    /// Sends one packet a peer connection produced, on the transport of its
    /// candidate pair. Never waits: UDP goes to the driver's queue (which it
    /// writes into the socket buffer without waiting), TCP into the
    /// connection's queue, and a full one is loss, which RTP and ICE
    /// recover from.
    pub fn send(&mut self, msg: TaggedBytesMut) {
        if msg.transport.transport_protocol == TransportProtocol::TCP {
            if let Some(tcp) = self.tcp.as_mut() {
                tcp.send(msg.transport.peer_addr, msg.message.freeze());
            }
        } else {
            self.transmits.push_back(Transmit {
                to: msg.transport.peer_addr,
                data: msg.message,
            });
        }
    }
}

/// How often one participant's connection is tried with media from an
/// unknown address ([`Engine::route_moved_media`]).
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Points a packet a peer connection wrote at where its participant really
/// is (see [`crate::path`]).
pub(super) fn redirect(path: &mut crate::path::Path, msg: &mut TaggedBytesMut) {
    if msg.transport.transport_protocol == TransportProtocol::UDP {
        // RFC 7983: a first byte of 0..=3 is STUN.
        let stun = msg.message.first().is_some_and(|b| *b < 4);
        msg.transport.peer_addr = path.handle_send(msg.transport.peer_addr, stun);
    }
}

impl Engine {
    /// The participant a STUN request is for: its USERNAME names one of our
    /// ufrags and its MESSAGE-INTEGRITY was made with that ufrag's password.
    /// (Only such a request may teach us a participant's address; the ICE
    /// agent checks it again.)
    pub(super) fn route_stun(&self, data: &[u8]) -> Option<PeerKey> {
        let creds = self.by_ufrag.get(stun::local_ufrag(data)?)?;
        stun::integrity_ok(data, &creds.pwd, self.crypto.crypto()).then_some(creds.key)
    }

    /// A datagram that reached our UDP port from `from` at `now`.
    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.counters.datagrams_in += 1;
        let key = match self.by_addr.get(&from) {
            Some(&k) => Some(k),
            None => {
                let key = self.route_stun(data);
                if let Some(k) = key {
                    if let Some(peer) = self.peers.get_mut(&k) {
                        peer.addrs.push(from);
                        self.by_addr.insert(from, k);
                    }
                }
                key
            }
        };
        let Some(key) = key else {
            if !self.route_moved_media(now, from, data) {
                self.counters.datagrams_unrouted += 1;
            }
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            self.counters.datagrams_unrouted += 1;
            return;
        };
        // After a handover the ICE agent is told the address it knows.
        let as_seen = peer.path.handle_datagram(now, from);
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.net.udp_host,
                peer_addr: as_seen,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        let r = guarded(|| peer.pc.handle_read(msg).map_err(webrtc));
        if let Err(e) = r {
            self.counters.datagrams_rejected += 1;
            tracing::debug!(participant = %peer.id, error = %e, "datagram rejected");
        }
        self.path_events(now, key);
        self.mark(key);
    }

    /// Media from an unknown address: perhaps a participant whose address
    /// changed (a handover, a new NAT port), before its next ICE check would
    /// tell us. The RTP header names the stream (SSRC) and so the participant
    /// that publishes it; if that participant's own address has gone quiet,
    /// the packet is handed to its connection as if from the address ICE
    /// knows. Only a packet that then decrypts and authenticates with the
    /// participant's SRTP keys comes out the other side: that proves the new
    /// address is theirs, and the path moves to it at once. Anything else is
    /// dropped, and each participant is tried at most every
    /// [`PROBE_INTERVAL`], so strangers cannot make this costly.
    fn route_moved_media(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> bool {
        // RTP only (RFC 7983: first byte 128..=191; RTCP's packet types are 192..=223).
        if data.len() < 12 || !(128..=191).contains(&data[0]) || (192..=223).contains(&data[1]) {
            return false;
        }
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let Some(&key) = self.by_ssrc.get(&ssrc) else {
            return false;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            return false;
        };
        let Some(known) = peer.path.may_move(now) else {
            return false;
        };
        if peer
            .last_probe
            .is_some_and(|t| now.saturating_duration_since(t) < PROBE_INTERVAL)
        {
            return false;
        }
        peer.last_probe = Some(now);
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.net.udp_host,
                peer_addr: known,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        let _ = guarded(|| peer.pc.handle_read(msg).map_err(webrtc));
        let mut messages = Vec::new();
        while let Some(m) = peer.pc.poll_read() {
            messages.push(m);
        }
        let authentic = messages.iter().any(|m| {
            matches!(&m.message, RTCMessage::RtpPacket(_, p)
                if p.header.ssrc == ssrc && p.header.sequence_number == seq)
        });
        if authentic {
            peer.addrs.push(from);
            self.by_addr.insert(from, key);
            peer.path.handle_datagram(now, from);
            tracing::debug!(participant = %peer.id, "media from a new address decrypted with its keys");
        }
        self.process_messages(key, messages);
        self.path_events(now, key);
        self.mark(key);
        authentic
    }

    /// Acts on what a participant's path noticed: keyframes when it comes
    /// back after a silence, and both facts for the session log.
    pub(super) fn path_events(&mut self, now: Instant, key: PeerKey) {
        loop {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            let Some(ev) = peer.path.poll_event() else {
                return;
            };
            let (room, participant) = (peer.room.clone(), peer.id.clone());
            match ev {
                crate::path::PathEvent::Resumed { silent_for } => {
                    tracing::info!(%participant, silent_ms = silent_for.as_millis() as u64, "path resumed");
                    self.path_resumed(now, key);
                    self.emit(SfuEvent::PathResumed {
                        room,
                        participant,
                        silent_for,
                    });
                }
                crate::path::PathEvent::Moved { .. } => {
                    // Addresses are the participant's; the log keeps only that it moved.
                    tracing::info!(%participant, "participant's address changed; media follows it");
                    // Packets were lost while it moved: keyframes now, both ways.
                    self.path_resumed(now, key);
                    self.emit(SfuEvent::PathMoved { room, participant });
                }
            }
        }
    }

    /// What a peer connection read: media to forward, feedback to act on.
    fn process_messages(&mut self, key: PeerKey, mut messages: Vec<TaggedRTCMessage>) {
        for TaggedRTCMessage { now: at, message } in messages.drain(..) {
            match message {
                RTCMessage::RtpPacket(track, packet) => self.forward_rtp(at, key, &track, packet),
                RTCMessage::RtcpPacket(track, packets) => self.handle_rtcp(at, key, &track, &packets),
                _ => {}
            }
        }
        self.messages = messages;
    }

    /// Drains every peer that may have output, until none has. The driver
    /// calls it after each turn's inputs, then [`Engine::poll_transmit`].
    pub(crate) fn flush(&mut self, now: Instant) {
        // Bounded: each round only re-marks peers that received forwarded media.
        for _ in 0..64 {
            if self.dirty.is_empty() {
                return;
            }
            // Swapped with the spare list rather than taken: both keep their
            // capacity, so marking a peer allocates nothing.
            let mut keys = std::mem::take(&mut self.dirty_spare);
            std::mem::swap(&mut keys, &mut self.dirty);
            for &key in &keys {
                self.drain(now, key);
            }
            keys.clear();
            self.dirty_spare = keys;
        }
    }

    /// The next datagram to send on the UDP socket.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.net.transmits.pop_front()
    }

    fn drain(&mut self, now: Instant, key: PeerKey) {
        let started = Instant::now();
        let (events, messages) = {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            while let Some(mut msg) = peer.pc.poll_write() {
                redirect(&mut peer.path, &mut msg);
                self.net.send(msg);
            }
            let mut events = Vec::new();
            while let Some(e) = peer.pc.poll_event() {
                events.push(e);
            }
            // The engine's list, kept between drains (no allocation per packet).
            let mut messages = std::mem::take(&mut self.messages);
            while let Some(m) = peer.pc.poll_read() {
                messages.push(m);
            }
            (events, messages)
        };
        for e in events {
            self.handle_event(now, key, e);
        }
        let polled = started.elapsed();
        let n = messages.len();
        self.process_messages(key, messages);
        if started.elapsed() > Duration::from_millis(50) {
            tracing::warn!(
                key,
                polled_ms = polled.as_millis() as u64,
                total_ms = started.elapsed().as_millis() as u64,
                messages = n,
                "slow drain"
            );
        }
        self.negotiate(now, key);
        if let Some(peer) = self.peers.get_mut(&key) {
            while let Some(mut msg) = peer.pc.poll_write() {
                redirect(&mut peer.path, &mut msg);
                self.net.send(msg);
            }
        }
        self.rearm(key);
    }
}
