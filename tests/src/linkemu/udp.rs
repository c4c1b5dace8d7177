//! UDP relaying. One task per listener receives from every client and hands
//! each datagram to its flow's task; one task per flow owns the flow's
//! upstream socket (so a handover is a local socket swap) and, per
//! direction, a FIFO of (due, datagram) with one timer for its head. Only
//! the head is ever released, so a datagram leaves no earlier than the one
//! ahead of it: jitter never reorders a flow (its effective due time is the
//! largest so far, as on a radio link's in-order delivery), and one timer
//! per flow suffices.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::watch;
use tokio::time::Instant;

use super::model::{wire_bytes, Blackout, Direction, DropReason, Verdict};
use super::{enlarge_buffers, Counters, LinkState, Links, PeerKey, Shutdown};

/// Most datagrams a flow holds per direction (and in its hand-off
/// channel): bounds memory when a long delay meets a fast sender. Beyond
/// it datagrams are dropped and counted as queue drops. (With a rate cap
/// the bottleneck's `queue` duration usually binds first.)
const MAX_QUEUED: usize = 4096;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// How often a listener forgets flows whose tasks have ended.
const SWEEP: Duration = Duration::from_secs(30);

/// A datagram from a client, stamped on arrival: the hand-off to the flow's
/// task is the emulator's overhead, not link delay.
struct Arrival {
    at: Instant,
    data: Vec<u8>,
}

/// One UDP listener and its upstream.
pub(crate) struct Listener {
    socket: Arc<UdpSocket>,
    addr: SocketAddr,
    upstream: SocketAddr,
    upstream_ip: IpAddr,
    links: Arc<Links>,
    /// [`super::FLOW_IDLE`] but in tests.
    flow_idle: Duration,
}

/// The listener's side of a flow.
struct FlowHandle {
    tx: mpsc::Sender<Arrival>,
    link: Arc<LinkState>,
}

impl Listener {
    pub(crate) fn new(
        socket: UdpSocket,
        upstream: SocketAddr,
        upstream_ip: IpAddr,
        links: Arc<Links>,
        flow_idle: Duration,
    ) -> io::Result<Listener> {
        let addr = socket.local_addr()?;
        Ok(Listener {
            socket: Arc::new(socket),
            addr,
            upstream,
            upstream_ip,
            links,
            flow_idle,
        })
    }

    pub(crate) async fn run(self, mut shutdown: Shutdown) {
        let mut flows: HashMap<SocketAddr, FlowHandle> = HashMap::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut sweep = tokio::time::interval(SWEEP);
        loop {
            let (n, client) = tokio::select! {
                biased;
                () = shutdown.wait() => return,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::debug!(relay = %self.addr, "receive: {e}");
                        continue;
                    }
                },
                _ = sweep.tick() => {
                    flows.retain(|_, flow| !flow.tx.is_closed());
                    continue;
                }
            };
            let arrival = Arrival {
                at: Instant::now(),
                data: buf[..n].to_vec(),
            };
            let arrival = match flows.get(&client) {
                Some(flow) => match flow.tx.try_send(arrival) {
                    Ok(()) => continue,
                    Err(TrySendError::Full(_)) => {
                        flow.link.up.dropped(DropReason::Queue, 1);
                        continue;
                    }
                    // The flow went idle and ended: this starts a new one.
                    Err(TrySendError::Closed(arrival)) => arrival,
                },
                None => arrival,
            };
            match self.start_flow(client, shutdown.clone()).await {
                Ok(flow) => {
                    // A fresh channel has room; ignoring the result is safe.
                    let _ = flow.tx.try_send(arrival);
                    flows.insert(client, flow);
                }
                Err(e) => {
                    tracing::warn!(%client, relay = %self.addr, "no upstream socket for a new flow: {e}")
                }
            }
        }
    }

    async fn start_flow(&self, client: SocketAddr, shutdown: Shutdown) -> io::Result<FlowHandle> {
        let link = self.links.get(client.ip());
        // Subscribe before binding: a handover from here on moves the new
        // flow too.
        let handovers = link.handovers.subscribe();
        let epoch = *handovers.borrow();
        let upstream = UdpSocket::bind((self.upstream_ip, 0)).await?;
        enlarge_buffers(&upstream);
        let upstream_addr = upstream.local_addr()?;
        let key = PeerKey {
            relay: self.addr,
            client,
        };
        link.set_flow(key, upstream_addr, epoch);
        tracing::debug!(%client, relay = %self.addr, upstream = %upstream_addr, "new flow");
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        let flow = Flow {
            link: link.clone(),
            key,
            relay: self.socket.clone(),
            upstream,
            upstream_addr,
            server: self.upstream,
            upstream_ip: self.upstream_ip,
            up: Fifo::new(),
            down: Fifo::new(),
            last_activity: Instant::now(),
            idle_timeout: self.flow_idle,
        };
        tokio::spawn(flow.run(rx, handovers, shutdown));
        Ok(FlowHandle { tx, link })
    }
}

/// One direction's datagrams waiting for their due time, in arrival order.
type Fifo = VecDeque<(Instant, Vec<u8>)>;

/// One client socket's traffic through one listener.
struct Flow {
    link: Arc<LinkState>,
    key: PeerKey,
    /// The listener's socket: datagrams go down to the client from it.
    relay: Arc<UdpSocket>,
    /// This flow's own socket towards the server.
    upstream: UdpSocket,
    upstream_addr: SocketAddr,
    server: SocketAddr,
    upstream_ip: IpAddr,
    up: Fifo,
    down: Fifo,
    /// Last datagram either way; the flow ends `idle_timeout` after it.
    last_activity: Instant,
    idle_timeout: Duration,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.link.remove_flow(self.key);
    }
}

impl Flow {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Arrival>,
        mut handovers: watch::Receiver<u64>,
        mut shutdown: Shutdown,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let timer = tokio::time::sleep_until(Instant::now());
        tokio::pin!(timer);
        let idle = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(idle);
        loop {
            let next = self.next_due();
            if let Some(next) = next {
                if timer.deadline() != next {
                    timer.as_mut().reset(next);
                }
            }
            // Biased: a handover or shutdown requested before a datagram
            // arrived is acted on before that datagram is forwarded.
            tokio::select! {
                biased;
                () = shutdown.wait() => return,
                Ok(()) = handovers.changed() => {
                    let epoch = *handovers.borrow_and_update();
                    self.rebind(epoch).await;
                }
                () = &mut timer, if next.is_some() => self.flush().await,
                arrival = rx.recv() => match arrival {
                    Some(arrival) => {
                        self.last_activity = arrival.at;
                        self.forward(Direction::Up, arrival.at, &arrival.data).await;
                    }
                    None => return, // the listener is gone
                },
                received = self.upstream.recv_from(&mut buf) => match received {
                    Ok((n, from)) if from == self.server => {
                        let now = Instant::now();
                        self.last_activity = now;
                        self.forward(Direction::Down, now, &buf[..n]).await;
                    }
                    // Only the server may answer, as through a
                    // port-restricted NAT.
                    Ok((_, from)) => tracing::debug!(%from, flow = ?self.key, "datagram not from the server"),
                    Err(e) => tracing::debug!(flow = ?self.key, "receive: {e}"),
                },
                () = &mut idle => {
                    let quiet_until = self.last_activity + self.idle_timeout;
                    if Instant::now() < quiet_until {
                        idle.as_mut().reset(quiet_until);
                        continue;
                    }
                    rx.close();
                    // A datagram handed over just before the close would be
                    // lost with the channel; send it as is instead (the
                    // listener starts a new flow for the next one).
                    while let Ok(arrival) = rx.try_recv() {
                        self.send(Direction::Up, &arrival.data).await;
                    }
                    tracing::debug!(flow = ?self.key, "idle flow forgotten");
                    return;
                }
            }
        }
    }

    fn fifo(&mut self, dir: Direction) -> &mut Fifo {
        match dir {
            Direction::Up => &mut self.up,
            Direction::Down => &mut self.down,
        }
    }

    fn counters(&self, dir: Direction) -> &Counters {
        match dir {
            Direction::Up => &self.link.up,
            Direction::Down => &self.link.down,
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let up = self.up.front().map(|&(due, _)| due);
        let down = self.down.front().map(|&(due, _)| due);
        match (up, down) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets the model decide a datagram's fate; sends it now if it is due
    /// and nothing is queued ahead of it, else queues it.
    async fn forward(&mut self, dir: Direction, arrived: Instant, data: &[u8]) {
        if self.fifo(dir).len() >= MAX_QUEUED {
            self.counters(dir).dropped(DropReason::Queue, 1);
            return;
        }
        let peer = match dir {
            Direction::Up => self.server,
            Direction::Down => self.key.client,
        };
        let verdict = self
            .link
            .model()
            .on_datagram(dir, arrived, wire_bytes(data.len(), peer));
        let due = match verdict {
            Verdict::Deliver(due) => due,
            Verdict::Drop(reason) => {
                self.counters(dir).dropped(reason, 1);
                return;
            }
        };
        let fifo = self.fifo(dir);
        // Behind anything queued, whatever its own due time: never
        // overtake the datagram ahead.
        if fifo.is_empty() && due <= Instant::now() {
            self.send(dir, data).await;
        } else {
            fifo.push_back((due, data.to_vec()));
        }
    }

    /// Sends, per direction, the datagrams at the head that are due (one
    /// not yet due holds back those behind it).
    async fn flush(&mut self) {
        let now = Instant::now();
        // Datagrams in flight when a blackout starts are lost, as in a
        // radio that died.
        let blackout = self.link.model().blackout(now) != Blackout::Clear;
        for dir in [Direction::Up, Direction::Down] {
            while let Some(&(due, _)) = self.fifo(dir).front() {
                if due > now {
                    break;
                }
                // unwrap: `front()` was Some just above.
                let (_, data) = self.fifo(dir).pop_front().unwrap();
                if blackout {
                    self.counters(dir).dropped(DropReason::Blackout, 1);
                } else {
                    self.send(dir, &data).await;
                }
            }
        }
    }

    async fn send(&self, dir: Direction, data: &[u8]) {
        let sent = match dir {
            Direction::Up => self.upstream.send_to(data, self.server).await,
            Direction::Down => self.relay.send_to(data, self.key.client).await,
        };
        match sent {
            Ok(_) => self.counters(dir).forwarded(data.len()),
            Err(e) => tracing::debug!(flow = ?self.key, ?dir, "send: {e}"),
        }
    }

    /// A handover: a fresh upstream socket (a new port as the server sees
    /// it). Dropping the old one closes it, so whatever the server still
    /// sends there is lost, as it is when a phone changes network.
    async fn rebind(&mut self, epoch: u64) {
        match UdpSocket::bind((self.upstream_ip, 0))
            .await
            .and_then(|s| Ok((s.local_addr()?, s)))
        {
            Ok((addr, socket)) => {
                enlarge_buffers(&socket);
                tracing::debug!(flow = ?self.key, from = %self.upstream_addr, to = %addr, "handover");
                self.upstream = socket;
                self.upstream_addr = addr;
            }
            Err(e) => tracing::warn!(flow = ?self.key, "handover: no new socket, keeping the old one: {e}"),
        }
        // Recorded either way, so Link::handover does not wait for it.
        self.link.set_flow(self.key, self.upstream_addr, epoch);
    }
}
