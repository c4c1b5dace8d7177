//! Packets in and out: routing what arrives on the shared UDP port to a peer
//! connection, and sending what the connections produce over UDP or ICE-TCP.

use super::tcp::TcpConns;
use super::*;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

/// The engine's sockets.
pub(crate) struct Net {
    pub socket: UdpSocket,
    /// The address in our UDP host candidate (the local address handed to
    /// the peer connections for UDP packets).
    pub udp_host: SocketAddr,
    /// ICE-TCP connections, when a TCP port is configured.
    pub tcp: Option<TcpConns>,
}

impl Net {
    /// Sends one packet a peer connection produced, on the transport of its
    /// candidate pair. Never waits: UDP writes into the socket buffer, TCP
    /// into the connection's queue, and a full one is loss, which RTP and
    /// ICE recover from.
    pub fn send(&mut self, msg: TaggedBytesMut) {
        if msg.transport.transport_protocol == TransportProtocol::TCP {
            if let Some(tcp) = self.tcp.as_mut() {
                tcp.send(msg.transport.peer_addr, msg.message.freeze());
            }
        } else {
            let _ = self.socket.try_send_to(&msg.message, msg.transport.peer_addr);
        }
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

    pub(super) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
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
            self.counters.datagrams_unrouted += 1;
            return;
        };
        let Some(peer) = self.peers.get_mut(&key) else {
            self.counters.datagrams_unrouted += 1;
            return;
        };
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.net.udp_host,
                peer_addr: from,
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
        self.mark(key);
    }

    /// Drains every peer that may have output, until none has.
    pub(super) fn flush(&mut self, now: Instant) {
        // Bounded: each round only re-marks peers that received forwarded media.
        for _ in 0..64 {
            if self.dirty.is_empty() {
                return;
            }
            let keys = std::mem::take(&mut self.dirty);
            for key in keys {
                self.drain(now, key);
            }
        }
    }

    fn drain(&mut self, now: Instant, key: PeerKey) {
        let (events, messages) = {
            let Some(peer) = self.peers.get_mut(&key) else {
                return;
            };
            while let Some(msg) = peer.pc.poll_write() {
                self.net.send(msg);
            }
            let mut events = Vec::new();
            while let Some(e) = peer.pc.poll_event() {
                events.push(e);
            }
            let mut messages = Vec::new();
            while let Some(m) = peer.pc.poll_read() {
                messages.push(m);
            }
            (events, messages)
        };
        for e in events {
            self.handle_event(key, e);
        }
        for TaggedRTCMessage { now: at, message } in messages {
            match message {
                RTCMessage::RtpPacket(track, packet) => self.forward_rtp(at, key, &track, packet),
                RTCMessage::RtcpPacket(track, packets) => self.handle_rtcp(at, key, &track, &packets),
                _ => {}
            }
        }
        self.negotiate(now, key);
        if let Some(peer) = self.peers.get_mut(&key) {
            while let Some(msg) = peer.pc.poll_write() {
                self.net.send(msg);
            }
            peer.next_timeout = peer.pc.poll_timeout();
        }
    }
}
