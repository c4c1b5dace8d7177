//! A user-space network link emulator: a relay between clients and the real
//! server that reproduces a rural 4G link — loss (random or in bursts),
//! delay, jitter, a rate cap with a drop-tail queue, blackouts, and handovers
//! (the client's address and port change as the server sees them). The
//! machines the tests run on have no `tc netem`, so it relays in user space.
//!
//! # Model
//! The server announces the relay's address as its own (`--public-ip
//! 127.0.0.2` with the port it binds on 127.0.0.1, or a network namespace's
//! veth address), so clients send to a [`Relay`]'s `listen` address and the
//! emulator forwards to its `upstream`, the real server:
//! - **UDP**: each client flow (one client source address on one listener)
//!   gets its own upstream socket on `upstream_ip:0`, so the server sees one
//!   5-tuple per client flow, as behind a NAT. Replies to that socket go back
//!   to the client from the listener. Flows idle for [`FLOW_IDLE`] are
//!   forgotten.
//! - **TCP** (the page's HTTP/WebSocket, ICE-TCP): each accepted connection
//!   is piped to a new connection to `upstream`.
//! - A [`Link`] is everything from one client IP address. Its [`Shape`]s
//!   (one per direction) impair UDP only; TCP feels only blackouts (stalled,
//!   bytes held) and handovers (reset). Every datagram is impaired, STUN and
//!   DTLS included: impairing only media is deliberately not offered, since
//!   on a real link the handshakes suffer too.
//!
//! # Flow
//! `model.rs` decides, without sockets or clocks, each datagram's fate and
//! due time; `udp.rs` runs one task per listener (demultiplexing clients)
//! and one per flow, which owns the flow's upstream socket and a FIFO of
//! (due, datagram) per direction. Only a FIFO's head is released, so a
//! datagram never leaves before the one ahead of it (jitter never reorders a
//! flow) and one timer per flow suffices. Unimpaired datagrams are sent
//! straight away, never through the timer. `tcp.rs` pipes connections;
//! `control.rs` is the HTTP control API of the `linkemu` binary (for
//! browser tests).
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use telehealth_tests::linkemu::{LinkEmulator, LinkEmulatorConfig, Shape};
//!
//! let emulator = LinkEmulator::start(LinkEmulatorConfig {
//!     udp: vec!["127.0.0.2:5000=127.0.0.1:5000".parse()?],
//!     ..LinkEmulatorConfig::default()
//! })?;
//! let station = emulator.link("127.0.0.3".parse()?);
//! let radio = Shape { loss: 0.03, burst_len: 3.0, delay: Duration::from_millis(60), ..Shape::default() };
//! station.set_shape(radio.clone(), radio)?;
//! station.blackout(Duration::from_secs(5));
//! station.handover().await;
//! println!("{:?}", station.stats());
//! # Ok(())
//! # }
//! ```
//!
//! # Out of scope
//! TCP loss, delay and rate (TCP over a lossy link is the kernel's business;
//! the tests only need it to stall and break) and IP fragmentation. The
//! emulator sends only to its configured upstreams and to clients that sent
//! to it: keep both on loopback or the tests' own veth addresses.

pub mod control;
mod model;
pub mod profiles;
mod tcp;
mod udp;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context};
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use model::{Blackout, DropReason, LinkModel};
pub use model::{Shape, ShapeError, ShapeSpec, DEFAULT_QUEUE};

/// How long a UDP flow may carry nothing (either way) before it is
/// forgotten and its upstream socket closed, as a NAT mapping times out.
pub const FLOW_IDLE: Duration = Duration::from_secs(300);

/// Kernel buffers of each relay socket. A relay carrying several calls gets
/// bursts (keyframes) faster than its tasks drain them, and the default
/// ~208 KiB would let the kernel drop datagrams the link never decided to
/// lose. (Capped by `net.core.rmem_max`/`wmem_max`; failing is harmless.)
const SOCKET_BUFFER: usize = 2 << 20;

pub(crate) fn enlarge_buffers(socket: &impl std::os::fd::AsFd) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
}

/// How long [`Link::handover`] waits for the link's flows and connections
/// to move before it returns anyway.
const HANDOVER_SETTLE: Duration = Duration::from_secs(1);

/// One relayed port: clients send to `listen`, the emulator forwards to
/// `upstream`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relay {
    /// Where clients connect or send; port 0 picks a free one (see
    /// [`LinkEmulator::udp_addrs`]).
    pub listen: SocketAddr,
    /// The real server.
    pub upstream: SocketAddr,
}

impl FromStr for Relay {
    type Err = anyhow::Error;

    /// `LISTEN=UPSTREAM`, e.g. `127.0.0.2:5000=127.0.0.1:5000`.
    fn from_str(s: &str) -> anyhow::Result<Relay> {
        let Some((listen, upstream)) = s.split_once('=') else {
            bail!("{s:?} is not LISTEN=UPSTREAM (e.g. 127.0.0.2:5000=127.0.0.1:5000)");
        };
        Ok(Relay {
            listen: listen
                .parse()
                .with_context(|| format!("listen address {listen:?}"))?,
            upstream: upstream
                .parse()
                .with_context(|| format!("upstream address {upstream:?}"))?,
        })
    }
}

/// What to relay.
#[derive(Clone, Debug)]
pub struct LinkEmulatorConfig {
    /// UDP ports to relay (media, TURN).
    pub udp: Vec<Relay>,
    /// TCP ports to relay (HTTP and WebSocket, ICE-TCP).
    pub tcp: Vec<Relay>,
    /// The local address upstream sockets and connections bind to (the
    /// address the server sees clients come from). Default 127.0.0.1.
    pub upstream_ip: IpAddr,
}

impl Default for LinkEmulatorConfig {
    fn default() -> Self {
        LinkEmulatorConfig {
            udp: Vec::new(),
            tcp: Vec::new(),
            upstream_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

/// A running emulator. A cheap handle: clones share it, and dropping the
/// last one (or [`LinkEmulator::shutdown`]) stops every task and closes
/// every socket.
#[derive(Clone)]
pub struct LinkEmulator {
    inner: Arc<Inner>,
}

struct Inner {
    links: Arc<Links>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    /// Tasks hold receivers; `true`, or this sender being dropped with the
    /// last handle, stops them.
    shutdown: watch::Sender<bool>,
}

impl LinkEmulator {
    /// Binds every listener and starts relaying. Must be called inside a
    /// Tokio runtime (the relay tasks are spawned on it).
    pub fn start(config: LinkEmulatorConfig) -> anyhow::Result<LinkEmulator> {
        Self::start_with_idle(config, FLOW_IDLE)
    }

    /// [`LinkEmulator::start`] with another idle timeout (tests cannot wait
    /// five minutes).
    pub(crate) fn start_with_idle(
        config: LinkEmulatorConfig,
        flow_idle: Duration,
    ) -> anyhow::Result<LinkEmulator> {
        let links = Arc::new(Links::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut udp_addrs = Vec::new();
        let mut tcp_addrs = Vec::new();
        // Bind everything before spawning anything, so a failure leaves no
        // task behind.
        let mut udp = Vec::new();
        for relay in &config.udp {
            let socket = std::net::UdpSocket::bind(relay.listen)
                .with_context(|| format!("binding UDP {}", relay.listen))?;
            socket.set_nonblocking(true)?;
            enlarge_buffers(&socket);
            let socket = tokio::net::UdpSocket::from_std(socket)?;
            udp_addrs.push(socket.local_addr()?);
            udp.push((socket, relay.upstream));
        }
        let mut tcp = Vec::new();
        for relay in &config.tcp {
            let listener = std::net::TcpListener::bind(relay.listen)
                .with_context(|| format!("binding TCP {}", relay.listen))?;
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tcp_addrs.push(listener.local_addr()?);
            tcp.push((listener, relay.upstream));
        }
        for (socket, upstream) in udp {
            let listener =
                udp::Listener::new(socket, upstream, config.upstream_ip, links.clone(), flow_idle)?;
            tokio::spawn(listener.run(Shutdown(shutdown_rx.clone())));
        }
        for (listener, upstream) in tcp {
            let listener = tcp::Listener::new(listener, upstream, config.upstream_ip, links.clone())?;
            tokio::spawn(listener.run(Shutdown(shutdown_rx.clone())));
        }
        Ok(LinkEmulator {
            inner: Arc::new(Inner {
                links,
                udp_addrs,
                tcp_addrs,
                shutdown,
            }),
        })
    }

    /// The UDP listeners' bound addresses, in the order configured.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.inner.udp_addrs
    }

    /// The TCP listeners' bound addresses, in the order configured.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.inner.tcp_addrs
    }

    /// The link of client address `ip` (created unimpaired if new).
    pub fn link(&self, ip: IpAddr) -> Link {
        Link {
            state: self.inner.links.get(ip),
        }
    }

    /// Every link seen or asked for so far, by address.
    pub fn links(&self) -> Vec<Link> {
        self.inner
            .links
            .all()
            .into_iter()
            .map(|state| Link { state })
            .collect()
    }

    /// Stops every task now, for every handle.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

/// Everything from one client IP address. A cheap handle; links live as
/// long as the emulator.
#[derive(Clone)]
pub struct Link {
    state: Arc<LinkState>,
}

impl Link {
    /// The client address this link carries.
    pub fn ip(&self) -> IpAddr {
        self.state.ip
    }

    /// Impairs UDP client→server with `up` and server→client with `down`,
    /// from the next datagram on.
    pub fn set_shape(&self, up: Shape, down: Shape) -> Result<(), ShapeError> {
        up.validate()?;
        down.validate()?;
        self.state.model().set_shape(up, down);
        Ok(())
    }

    /// Cuts the link for `duration` from now (replacing any blackout under
    /// way): every UDP datagram is dropped both ways, every TCP connection
    /// stalls both ways, and new TCP connections wait until it ends. A
    /// duration too long to represent (`Duration::MAX`) lasts until
    /// [`Link::end_blackout`].
    pub fn blackout(&self, duration: Duration) {
        self.state.model().start_blackout(Instant::now(), duration);
        self.state.blackout_changed.send_replace(());
    }

    /// Cuts the link until [`Link::end_blackout`].
    pub fn blackout_until_ended(&self) {
        self.state.model().start_blackout_until_ended();
        self.state.blackout_changed.send_replace(());
    }

    /// Restores the link now; stalled TCP bytes flow again.
    pub fn end_blackout(&self) {
        self.state.model().end_blackout();
        self.state.blackout_changed.send_replace(());
    }

    /// The phone moved, as from Wi-Fi to 4G: every UDP flow of the link gets
    /// a fresh upstream socket (a new source port as the server sees it; the
    /// old one is closed, so the server's datagrams to it are lost), and
    /// every TCP connection of the link is reset both ways. Returns once
    /// every flow and connection has moved (at most about a second), so
    /// [`Link::stats`] shows the new ports and nothing more travels the old
    /// way.
    pub async fn handover(&self) {
        self.state.handovers.send_modify(|n| *n += 1);
        let epoch = *self.state.handovers.borrow();
        let settled = async {
            loop {
                // Arm the notification before looking, so a change between
                // the look and the wait is not missed.
                let changed = self.state.registry_changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.state.settled(epoch) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(HANDOVER_SETTLE, settled).await.is_err() {
            tracing::warn!(link = %self.state.ip, "handover: some flows did not move within {HANDOVER_SETTLE:?}");
        }
    }

    /// Counters and state now.
    pub fn stats(&self) -> LinkStats {
        self.state.stats()
    }
}

/// A link's counters and state, as the control API returns them.
#[derive(Clone, Debug, Serialize)]
pub struct LinkStats {
    /// The client address.
    pub ip: IpAddr,
    /// Client → server.
    pub up: DirectionStats,
    /// Server → client.
    pub down: DirectionStats,
    /// The link's UDP flows now.
    pub flows: Vec<FlowStats>,
    /// Open TCP connections (including ones stalled by a blackout).
    pub tcp_connections: usize,
    /// Handovers so far.
    pub handovers: u64,
    /// Time left of a blackout (0: none); see also `blackout_until_ended`.
    pub blackout_remaining_ms: u64,
    /// A blackout holds until ended.
    pub blackout_until_ended: bool,
}

/// One direction's UDP counters (datagrams unless said otherwise).
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirectionStats {
    /// The shape in force.
    pub shape: ShapeSpec,
    /// Delivered to the other side.
    pub forwarded: u64,
    /// Their payload bytes (without UDP/IP headers).
    pub forwarded_bytes: u64,
    /// Lost to `loss`.
    pub dropped_loss: u64,
    /// Lost to a blackout (on arrival, or still queued when it started).
    pub dropped_blackout: u64,
    /// Dropped because the bottleneck's queue or the relay's per-flow
    /// bound was full.
    pub dropped_queue: u64,
}

/// One UDP flow: a client socket talking to one listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowStats {
    /// The client's address.
    pub client: SocketAddr,
    /// The listener it sends to.
    pub relay: SocketAddr,
    /// The flow's upstream socket: where the server sees the client.
    pub upstream: SocketAddr,
}

/// Every link, created on first sight of its address.
#[derive(Default)]
pub(crate) struct Links {
    map: Mutex<HashMap<IpAddr, Arc<LinkState>>>,
}

impl Links {
    pub(crate) fn get(&self, ip: IpAddr) -> Arc<LinkState> {
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; they
        // are the same link as a.b.c.d.
        let ip = ip.to_canonical();
        // unwrap: the lock is never held across a panic point.
        let mut map = self.map.lock().unwrap();
        map.entry(ip)
            .or_insert_with(|| Arc::new(LinkState::new(ip)))
            .clone()
    }

    fn all(&self) -> Vec<Arc<LinkState>> {
        // unwrap: as above.
        let mut all: Vec<_> = self.map.lock().unwrap().values().cloned().collect();
        all.sort_by_key(|l| l.ip);
        all
    }
}

/// A flow or connection: which listener, which client socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PeerKey {
    pub(crate) relay: SocketAddr,
    pub(crate) client: SocketAddr,
}

/// One link's shared state: the model (decisions), counters, and a
/// registry of its flows and connections (for stats and handovers).
pub(crate) struct LinkState {
    ip: IpAddr,
    /// Locked once per datagram, never across an await.
    model: Mutex<LinkModel>,
    /// Pinged when a blackout starts or ends, to wake stalled TCP pipes.
    blackout_changed: watch::Sender<()>,
    /// Handovers so far; flows and connections watch it.
    pub(crate) handovers: watch::Sender<u64>,
    pub(crate) up: Counters,
    pub(crate) down: Counters,
    /// UDP flows → (upstream local address, handover epoch it is on).
    flows: Mutex<BTreeMap<PeerKey, (SocketAddr, u64)>>,
    /// TCP connections → handover epoch they were opened in.
    tcp: Mutex<BTreeMap<PeerKey, u64>>,
    /// Pinged whenever `flows` or `tcp` change (for [`Link::handover`]).
    registry_changed: Notify,
}

impl LinkState {
    fn new(ip: IpAddr) -> LinkState {
        LinkState {
            ip,
            model: Mutex::new(LinkModel::new(rand::rngs::StdRng::from_entropy())),
            blackout_changed: watch::Sender::new(()),
            handovers: watch::Sender::new(0),
            up: Counters::default(),
            down: Counters::default(),
            flows: Mutex::default(),
            tcp: Mutex::default(),
            registry_changed: Notify::new(),
        }
    }

    pub(crate) fn model(&self) -> MutexGuard<'_, LinkModel> {
        // unwrap: the model never panics while locked (its invariants are
        // checked before set_shape).
        self.model.lock().unwrap()
    }

    /// Waits until the link is not blacked out (at once if it is not).
    pub(crate) async fn wait_clear(&self) {
        if self.model().blackout(Instant::now()) == Blackout::Clear {
            return;
        }
        // Subscribe before looking again, so an end_blackout between the
        // look and the wait is seen.
        let mut changed = self.blackout_changed.subscribe();
        loop {
            let blackout = self.model().blackout(Instant::now());
            let ended = match blackout {
                Blackout::Clear => return,
                Blackout::Until(until) => tokio::select! {
                    () = tokio::time::sleep_until(until) => Ok(()),
                    r = changed.changed() => r,
                },
                Blackout::UntilEnded => changed.changed().await,
            };
            if ended.is_err() {
                return; // the link is gone: nothing to wait for
            }
        }
    }

    pub(crate) fn set_flow(&self, key: PeerKey, upstream: SocketAddr, epoch: u64) {
        // unwrap: never held across a panic point.
        self.flows.lock().unwrap().insert(key, (upstream, epoch));
        self.registry_changed.notify_waiters();
    }

    pub(crate) fn remove_flow(&self, key: PeerKey) {
        // unwrap: as above.
        self.flows.lock().unwrap().remove(&key);
        self.registry_changed.notify_waiters();
    }

    pub(crate) fn set_tcp(&self, key: PeerKey, epoch: u64) {
        // unwrap: as above.
        self.tcp.lock().unwrap().insert(key, epoch);
        self.registry_changed.notify_waiters();
    }

    pub(crate) fn remove_tcp(&self, key: PeerKey) {
        // unwrap: as above.
        self.tcp.lock().unwrap().remove(&key);
        self.registry_changed.notify_waiters();
    }

    /// Whether every flow and connection has reached handover `epoch`
    /// (connections never do: they are reset and leave the registry).
    fn settled(&self, epoch: u64) -> bool {
        // unwrap: as above.
        self.flows.lock().unwrap().values().all(|&(_, e)| e >= epoch)
            && self.tcp.lock().unwrap().values().all(|&e| e >= epoch)
    }

    fn stats(&self) -> LinkStats {
        let now = Instant::now();
        let (up_shape, down_shape, blackout) = {
            let model = self.model();
            (
                ShapeSpec::from(model.shape(model::Direction::Up)),
                ShapeSpec::from(model.shape(model::Direction::Down)),
                model.blackout(now),
            )
        };
        // unwrap: never held across a panic point.
        let flows = self.flows.lock().unwrap();
        let flows = flows
            .iter()
            .map(|(key, &(upstream, _))| FlowStats {
                client: key.client,
                relay: key.relay,
                upstream,
            })
            .collect();
        LinkStats {
            ip: self.ip,
            up: self.up.stats(up_shape),
            down: self.down.stats(down_shape),
            flows,
            // unwrap: as above.
            tcp_connections: self.tcp.lock().unwrap().len(),
            handovers: *self.handovers.borrow(),
            blackout_remaining_ms: match blackout {
                Blackout::Until(until) => (until - now).as_millis().try_into().unwrap_or(u64::MAX),
                Blackout::Clear | Blackout::UntilEnded => 0,
            },
            blackout_until_ended: blackout == Blackout::UntilEnded,
        }
    }
}

/// One direction's counters; atomics, as flows of a link count at once.
#[derive(Default)]
pub(crate) struct Counters {
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_blackout: AtomicU64,
    dropped_queue: AtomicU64,
}

impl Counters {
    pub(crate) fn forwarded(&self, bytes: usize) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        self.forwarded_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, reason: DropReason, datagrams: u64) {
        let counter = match reason {
            DropReason::Loss => &self.dropped_loss,
            DropReason::Blackout => &self.dropped_blackout,
            DropReason::Queue => &self.dropped_queue,
        };
        counter.fetch_add(datagrams, Ordering::Relaxed);
    }

    fn stats(&self, shape: ShapeSpec) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            shape,
            forwarded: get(&self.forwarded),
            forwarded_bytes: get(&self.forwarded_bytes),
            dropped_loss: get(&self.dropped_loss),
            dropped_blackout: get(&self.dropped_blackout),
            dropped_queue: get(&self.dropped_queue),
        }
    }
}

/// A task's view of the emulator's shutdown.
#[derive(Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once the emulator is shut down or its last handle dropped.
    pub(crate) async fn wait(&mut self) {
        // An error means the sender (the emulator) is gone: shut down too.
        let _ = self.0.wait_for(|&stop| stop).await;
    }
}
