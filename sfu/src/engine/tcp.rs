//! ICE-TCP on one listening port (RFC 6544, passive candidates only), for
//! stations whose UDP is blocked.
//!
//! Every accepted connection gets its own small task: it splits the byte
//! stream into packets ([`crate::tcp_framing`]) and hands them to the engine
//! through one bounded channel, and it writes what the engine queues for it
//! through a bounded per-connection channel. The engine never waits on a
//! socket: a connection whose queue is full loses the packet (as a full UDP
//! buffer would; RTP and ICE recover), and one whose writes stall is closed
//! by its own task. So a slow or hostile connection costs its own task and
//! buffers, never the engine loop or another participant.
//!
//! A connection belongs to the participant named by the USERNAME of its
//! first STUN message, once the message's integrity checks out with that
//! participant's ICE password — as on the UDP port. Anything else as the
//! first packet, bad framing, an oversized frame, silence, or one connection
//! too many, and the connection is closed; nothing else is touched.

use super::{Engine, PeerKey};
use crate::tcp_framing::{encode_into, FrameDecoder};
use bytes::{Bytes, BytesMut};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// The engine's handle for one TCP connection (never reused).
pub(crate) type ConnId = u64;

/// Longest frame accepted from a client. Nothing WebRTC sends comes near it
/// (packets are kept under the path MTU, ~1,200 bytes); the UDP port reads
/// at most 2,048.
pub(crate) const MAX_FRAME_LEN: usize = 4096;
/// A new connection must deliver its first complete frame within this time.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that makes no progress for this long means the peer stopped reading.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Packets queued towards one connection. About a second of video at
/// 2.5 Mbps: beyond that the media is stale anyway and is better dropped.
const SEND_QUEUE: usize = 256;
/// Events from all connections towards the engine.
const EVENT_QUEUE: usize = 1024;
/// Bytes written to the socket in one go, at most.
const WRITE_BATCH: usize = 64 * 1024;

/// What a connection task tells the engine.
pub(crate) enum TcpEvent {
    /// A connection was accepted; `writer` carries packets to it.
    Opened {
        conn: ConnId,
        peer_addr: SocketAddr,
        writer: mpsc::Sender<Bytes>,
    },
    /// One packet arrived.
    Frame { conn: ConnId, data: BytesMut },
    /// The connection is gone.
    Closed { conn: ConnId, reason: TcpClose },
    /// A connection was refused: as many are open as allowed.
    Refused,
}

/// Why a TCP connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpClose {
    /// The client closed it, or reset it.
    PeerClosed,
    /// Nothing arrived for the idle timeout (or no first frame in time).
    Idle,
    /// Not RFC 4571 framing, or a frame over [`MAX_FRAME_LEN`].
    BadFraming,
    /// The client stopped reading what we send.
    WriteStalled,
    /// The engine let go of it (unroutable first packet, participant gone).
    Engine,
}

impl TcpClose {
    fn code(self) -> &'static str {
        match self {
            TcpClose::PeerClosed => "peer_closed",
            TcpClose::Idle => "idle",
            TcpClose::BadFraming => "bad_framing",
            TcpClose::WriteStalled => "write_stalled",
            TcpClose::Engine => "engine",
        }
    }

    /// Closed because of what the client sent (or did not send).
    fn is_misbehaviour(self) -> bool {
        matches!(
            self,
            TcpClose::Idle | TcpClose::BadFraming | TcpClose::WriteStalled
        )
    }
}

/// Starts accepting on `listener`; the receiver gets every connection's events.
/// The accept loop ends when the receiver is dropped.
pub(crate) fn spawn_listener(
    listener: TcpListener,
    max_connections: usize,
    idle_timeout: Duration,
) -> mpsc::Receiver<TcpEvent> {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    tokio::spawn(accept_loop(listener, tx, max_connections, idle_timeout));
    rx
}

async fn accept_loop(
    listener: TcpListener,
    events: mpsc::Sender<TcpEvent>,
    max_connections: usize,
    idle_timeout: Duration,
) {
    // One permit per open connection, released when its task ends.
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut next: ConnId = 1;
    loop {
        let accepted = tokio::select! {
            _ = events.closed() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer_addr)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Dropping the stream closes it. The engine only counts it.
                    let _ = events.try_send(TcpEvent::Refused);
                    continue;
                };
                // Media is latency-bound; never hold a packet back to fill a segment.
                let _ = stream.set_nodelay(true);
                let conn = next;
                next += 1;
                let events = events.clone();
                tokio::spawn(async move {
                    run_connection(conn, stream, peer_addr, events, idle_timeout).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "ICE-TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn run_connection(
    conn: ConnId,
    stream: TcpStream,
    peer_addr: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    idle_timeout: Duration,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (writer, mut queue) = mpsc::channel::<Bytes>(SEND_QUEUE);
    let opened = TcpEvent::Opened {
        conn,
        peer_addr,
        writer,
    };
    if events.send(opened).await.is_err() {
        return;
    }
    let reader = async {
        let mut decoder = FrameDecoder::new(MAX_FRAME_LEN);
        let mut buf = vec![0u8; 8192];
        let first_deadline = tokio::time::Instant::now() + FIRST_FRAME_TIMEOUT;
        let mut framed = false;
        loop {
            let mut deadline = tokio::time::Instant::now() + idle_timeout;
            if !framed {
                deadline = deadline.min(first_deadline);
            }
            let n = match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
                Err(_) => return TcpClose::Idle,
                Ok(Err(_)) | Ok(Ok(0)) => return TcpClose::PeerClosed,
                Ok(Ok(n)) => n,
            };
            decoder.extend(&buf[..n]);
            loop {
                match decoder.next_frame() {
                    Ok(Some(data)) => {
                        framed = true;
                        // Waits while the engine is busy: TCP flow control
                        // then slows this client alone.
                        if events.send(TcpEvent::Frame { conn, data }).await.is_err() {
                            return TcpClose::Engine;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return TcpClose::BadFraming,
                }
            }
        }
    };
    let writer = async {
        let mut batch = BytesMut::with_capacity(16 * 1024);
        while let Some(packet) = queue.recv().await {
            batch.clear();
            encode_into(&packet, &mut batch);
            // Whatever else is queued goes in the same write.
            while batch.len() < WRITE_BATCH {
                match queue.try_recv() {
                    Ok(p) => {
                        encode_into(&p, &mut batch);
                    }
                    Err(_) => break,
                }
            }
            match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&batch)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return TcpClose::PeerClosed,
                Err(_) => return TcpClose::WriteStalled,
            }
        }
        // The engine dropped its sender: what it queued is written; close.
        let _ = wr.shutdown().await;
        TcpClose::Engine
    };
    // Whichever side ends first ends the connection: dropping both halves closes the socket.
    let reason = tokio::select! {
        r = reader => r,
        r = writer => r,
    };
    let _ = events.send(TcpEvent::Closed { conn, reason }).await;
}

struct Conn {
    peer_addr: SocketAddr,
    writer: mpsc::Sender<Bytes>,
    /// The participant this connection carries, once its first STUN checked out.
    peer: Option<PeerKey>,
}

/// The engine's side of the open TCP connections.
pub(crate) struct TcpConns {
    /// The address in our passive TCP candidate (the local address handed
    /// to the peer connection for TCP packets).
    pub host: SocketAddr,
    conns: HashMap<ConnId, Conn>,
    by_addr: HashMap<SocketAddr, ConnId>,
    /// Outgoing packets dropped because a connection's queue was full.
    pub send_dropped: u64,
}

impl TcpConns {
    pub fn new(host: SocketAddr) -> Self {
        Self {
            host,
            conns: HashMap::new(),
            by_addr: HashMap::new(),
            send_dropped: 0,
        }
    }

    /// Queues a packet for the connection from `peer_addr`, without waiting.
    pub fn send(&mut self, peer_addr: SocketAddr, packet: Bytes) {
        let Some(&conn) = self.by_addr.get(&peer_addr) else {
            return;
        };
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        match c.writer.try_send(packet) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.send_dropped += 1,
            Err(mpsc::error::TrySendError::Closed(_)) => self.close(conn),
        }
    }

    /// Forgets a connection; its task writes what is queued and closes it.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            if self.by_addr.get(&c.peer_addr) == Some(&conn) {
                self.by_addr.remove(&c.peer_addr);
            }
        }
    }

    /// Closes every connection of a participant that is leaving.
    pub fn close_peer(&mut self, key: PeerKey) {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == Some(key))
            .map(|(&id, _)| id)
            .collect();
        for c in conns {
            self.close(c);
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.conns.len()
    }
}

impl Engine {
    pub(super) fn handle_tcp_event(&mut self, now: Instant, event: TcpEvent) {
        let Some(tcp) = self.net.tcp.as_mut() else {
            return;
        };
        match event {
            TcpEvent::Opened {
                conn,
                peer_addr,
                writer,
            } => {
                self.counters.tcp_connections += 1;
                tracing::debug!(conn, "ICE-TCP connection accepted");
                tcp.by_addr.insert(peer_addr, conn);
                tcp.conns.insert(
                    conn,
                    Conn {
                        peer_addr,
                        writer,
                        peer: None,
                    },
                );
            }
            TcpEvent::Frame { conn, data } => self.handle_tcp_frame(now, conn, data),
            TcpEvent::Closed { conn, reason } => {
                let bound = tcp.conns.get(&conn).and_then(|c| c.peer);
                // A client's spare connection falls silent once ICE chose
                // another pair: idle, but not misbehaving.
                let spare = bound.is_some() && reason == TcpClose::Idle;
                if reason.is_misbehaviour() && !spare {
                    self.counters.tcp_closed_bad += 1;
                }
                let participant = bound.and_then(|k| self.peers.get(&k)).map(|p| p.id.clone());
                tracing::debug!(
                    conn,
                    ?participant,
                    reason = reason.code(),
                    "ICE-TCP connection closed"
                );
                tcp.close(conn);
            }
            TcpEvent::Refused => self.counters.tcp_closed_bad += 1,
        }
    }

    fn handle_tcp_frame(&mut self, now: Instant, conn: ConnId, data: BytesMut) {
        self.counters.tcp_frames_in += 1;
        let Some(tcp) = self.net.tcp.as_ref() else {
            return;
        };
        let Some(c) = tcp.conns.get(&conn) else {
            return;
        };
        let (peer_addr, bound, host) = (c.peer_addr, c.peer, tcp.host);
        let key = match bound {
            Some(k) => Some(k),
            None => self.route_stun(&data),
        };
        let Some(key) = key.filter(|k| self.peers.contains_key(k)) else {
            // Not a checked STUN request naming a participant, or its
            // participant left: this connection carries nobody.
            if bound.is_none() {
                self.counters.tcp_closed_bad += 1;
            }
            if let Some(tcp) = self.net.tcp.as_mut() {
                tcp.close(conn);
            }
            return;
        };
        if bound.is_none() {
            if let Some(c) = self.net.tcp.as_mut().and_then(|t| t.conns.get_mut(&conn)) {
                c.peer = Some(key);
            }
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        // A TCP connection cannot move; only silences are noticed.
        peer.path.handle_heard(now);
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: host,
                peer_addr,
                ecn: None,
                transport_protocol: TransportProtocol::TCP,
            },
            message: data,
        };
        let r = super::guarded(|| peer.pc.handle_read(msg).map_err(super::peer::webrtc));
        if let Err(e) = r {
            self.counters.datagrams_rejected += 1;
            tracing::debug!(participant = %peer.id, error = %e, "TCP frame rejected");
        }
        self.path_events(now, key);
        self.mark(key);
    }
}
