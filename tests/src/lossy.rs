//! A weak 4G link in user space: a [`webrtc::runtime::Runtime`] whose UDP
//! sockets drop or delay a chosen share of the participant's own packets, in
//! each direction. There is no tc/netem on the machines this runs on, and a
//! runtime wrapper needs no privileges.
//!
//! Only RTP/RTCP datagrams (first byte 128..=191, RFC 7983) are impaired, so
//! the ICE and DTLS handshakes — which recover from loss only after seconds —
//! stay fast and tests stay deterministic in their set-up; media sees the
//! loss. [`Impairment::set_blackhole`] drops everything, to kill a connection.
//! [`Impairment::set_downlink_rate`] makes the incoming side a bottleneck: a
//! link of that many bits per second with a bounded queue, which delays media
//! once it arrives faster than that and drops it when the queue is full —
//! what a congested 4G cell does, and what a bandwidth estimator reacts to.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime, Transmit,
};

/// Loss and delay applied to one participant's packets. Shared and
/// adjustable while the call runs.
#[derive(Debug, Default)]
pub struct Impairment {
    /// Share of outgoing media packets dropped, in parts per million.
    uplink_loss_ppm: AtomicU32,
    /// Share of incoming media packets dropped, in parts per million.
    downlink_loss_ppm: AtomicU32,
    /// Share of media packets (each direction) held back by `delay`.
    delay_share_ppm: AtomicU32,
    /// Extra delay for the delayed share, microseconds.
    delay_us: AtomicU64,
    /// Drop every datagram, both ways (the network died).
    blackhole: AtomicBool,
    /// Incoming bottleneck in bits per second (0: none).
    downlink_bps: AtomicU64,
    /// Counters: packets dropped up / down.
    dropped_up: AtomicU64,
    dropped_down: AtomicU64,
}

fn ppm(share: f64) -> u32 {
    (share.clamp(0.0, 1.0) * 1_000_000.0) as u32
}

impl Impairment {
    /// No impairment.
    pub fn none() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Drop `uplink` of outgoing and `downlink` of incoming media packets.
    pub fn set_loss(&self, uplink: f64, downlink: f64) {
        self.uplink_loss_ppm.store(ppm(uplink), Ordering::Relaxed);
        self.downlink_loss_ppm.store(ppm(downlink), Ordering::Relaxed);
    }

    /// Delay `share` of media packets in each direction by `delay`.
    pub fn set_delay(&self, share: f64, delay: Duration) {
        self.delay_share_ppm.store(ppm(share), Ordering::Relaxed);
        self.delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// Drop every datagram both ways (or stop doing so).
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::Relaxed);
    }

    /// Limit incoming media to `bps` bits per second, queueing up to
    /// [`BOTTLENECK_QUEUE`] of it and dropping beyond (`None`: no limit).
    pub fn set_downlink_rate(&self, bps: Option<u64>) {
        self.downlink_bps.store(bps.unwrap_or(0), Ordering::Relaxed);
    }

    /// Media packets dropped so far, (outgoing, incoming).
    pub fn dropped(&self) -> (u64, u64) {
        (
            self.dropped_up.load(Ordering::Relaxed),
            self.dropped_down.load(Ordering::Relaxed),
        )
    }

    fn decide(&self, datagram: &[u8], uplink: bool) -> Fate {
        if self.blackhole.load(Ordering::Relaxed) {
            return Fate::Drop;
        }
        let media = datagram.first().is_some_and(|b| (128..=191).contains(b));
        if !media {
            return Fate::Pass;
        }
        let loss = if uplink {
            self.uplink_loss_ppm.load(Ordering::Relaxed)
        } else {
            self.downlink_loss_ppm.load(Ordering::Relaxed)
        };
        let roll = rand::random::<u32>() % 1_000_000;
        if roll < loss {
            let c = if uplink {
                &self.dropped_up
            } else {
                &self.dropped_down
            };
            c.fetch_add(1, Ordering::Relaxed);
            return Fate::Drop;
        }
        let share = self.delay_share_ppm.load(Ordering::Relaxed);
        if share > 0 && rand::random::<u32>() % 1_000_000 < share {
            return Fate::Delay(Duration::from_micros(self.delay_us.load(Ordering::Relaxed)));
        }
        Fate::Pass
    }
}

enum Fate {
    Pass,
    Drop,
    Delay(Duration),
}

/// The longest a packet waits in the downlink bottleneck's queue; a packet
/// that would wait longer is dropped (a drop-tail queue of this many
/// milliseconds at the link rate).
pub const BOTTLENECK_QUEUE: Duration = Duration::from_millis(250);

/// The downlink bottleneck: packets leave in order, each when the link has
/// finished carrying the ones before it.
#[derive(Default)]
struct Bottleneck {
    queue: VecDeque<(Instant, Vec<u8>, RecvMeta)>,
    /// When the link is free again.
    free_at: Option<Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Bottleneck {
    /// Queues a packet on a link of `bps`; false if the queue is full (dropped).
    fn push(&mut self, now: Instant, bps: u64, data: Vec<u8>, meta: RecvMeta) -> bool {
        let start = self.free_at.filter(|t| *t > now).unwrap_or(now);
        if start.saturating_duration_since(now) > BOTTLENECK_QUEUE {
            return false;
        }
        let on_wire = Duration::from_secs_f64(data.len() as f64 * 8.0 / bps.max(1) as f64);
        let leaves = start + on_wire;
        self.free_at = Some(leaves);
        self.queue.push_back((leaves, data, meta));
        true
    }

    /// The head packet if it has left the link; otherwise arms the timer.
    fn poll_pop(&mut self, cx: &mut Context<'_>) -> Option<(Vec<u8>, RecvMeta)> {
        let due = self.queue.front()?.0;
        if due <= Instant::now() {
            self.timer = None;
            return self.queue.pop_front().map(|(_, d, m)| (d, m));
        }
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
        if timer.deadline() != due.into() {
            timer.as_mut().reset(due.into());
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer = None;
                self.queue.pop_front().map(|(_, d, m)| (d, m))
            }
            Poll::Pending => None,
        }
    }
}

/// A runtime that wraps another and impairs the UDP sockets it creates.
pub struct LossyRuntime {
    inner: Arc<dyn Runtime>,
    impairment: Arc<Impairment>,
}

impl fmt::Debug for LossyRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossyRuntime").finish_non_exhaustive()
    }
}

impl LossyRuntime {
    /// Wraps `inner` (normally `webrtc::runtime::default_runtime()`).
    pub fn new(inner: Arc<dyn Runtime>, impairment: Arc<Impairment>) -> Self {
        Self { inner, impairment }
    }
}

impl Runtime for LossyRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.inner.spawn(future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let inner = self.inner.wrap_udp_socket(socket)?;
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Arc::new(LossySocket {
            inner,
            impairment: self.impairment.clone(),
            delayed_tx: tx,
            delayed_rx: Mutex::new(rx),
            bottleneck: Mutex::new(Bottleneck::default()),
        }))
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.inner.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.inner.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.inner.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.inner.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.inner.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.inner.yield_now()
    }

    fn name(&self) -> &'static str {
        "lossy"
    }
}

type Delayed = (Vec<u8>, RecvMeta);

struct LossySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    impairment: Arc<Impairment>,
    delayed_tx: mpsc::UnboundedSender<Delayed>,
    delayed_rx: Mutex<mpsc::UnboundedReceiver<Delayed>>,
    bottleneck: Mutex<Bottleneck>,
}

/// Copies one datagram into the caller's first buffer.
fn deliver(
    bufs: &mut [IoSliceMut<'_>],
    meta: &mut [RecvMeta],
    data: &[u8],
    m: RecvMeta,
) -> Poll<io::Result<usize>> {
    let n = data.len().min(bufs[0].len());
    bufs[0][..n].copy_from_slice(&data[..n]);
    meta[0] = m;
    meta[0].len = n;
    meta[0].stride = n.max(1);
    Poll::Ready(Ok(1))
}

impl fmt::Debug for LossySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LossySocket").finish_non_exhaustive()
    }
}

impl AsyncUdpSocket for LossySocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        match self.impairment.decide(transmit.contents, true) {
            Fate::Pass => self.inner.poll_send(cx, transmit),
            Fate::Drop => Poll::Ready(Ok(transmit.contents.len())),
            Fate::Delay(d) => {
                let inner = self.inner.clone();
                let data = transmit.contents.to_vec();
                let dest = transmit.destination;
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = inner.send_to(&data, dest).await;
                });
                Poll::Ready(Ok(transmit.contents.len()))
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        if bufs.is_empty() || meta.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Delayed datagrams whose time has come go first, then what has
        // crossed the bottleneck.
        if let Ok(mut rx) = self.delayed_rx.lock() {
            if let Poll::Ready(Some((data, m))) = rx.poll_recv(cx) {
                return deliver(bufs, meta, &data, m);
            }
        }
        if let Ok(mut b) = self.bottleneck.lock() {
            if let Some((data, m)) = b.poll_pop(cx) {
                return deliver(bufs, meta, &data, m);
            }
        }
        loop {
            let r = self.inner.poll_recv(cx, &mut bufs[..1], &mut meta[..1]);
            match r {
                Poll::Ready(Ok(n)) if n >= 1 => {
                    let len = meta[0].len.min(bufs[0].len());
                    let bps = self.impairment.downlink_bps.load(Ordering::Relaxed);
                    let media = bufs[0].first().is_some_and(|b| (128..=191).contains(b));
                    let fate = self.impairment.decide(&bufs[0][..len], false);
                    if bps > 0 && media && matches!(fate, Fate::Pass) {
                        // Through the bottleneck: queued (or dropped when full),
                        // delivered by a later poll when it has crossed.
                        if let Ok(mut b) = self.bottleneck.lock() {
                            let data = bufs[0][..len].to_vec();
                            if !b.push(Instant::now(), bps, data, meta[0]) {
                                self.impairment.dropped_down.fetch_add(1, Ordering::Relaxed);
                            }
                            if let Some((data, m)) = b.poll_pop(cx) {
                                return deliver(bufs, meta, &data, m);
                            }
                        }
                        continue;
                    }
                    match fate {
                        Fate::Pass => return Poll::Ready(Ok(1)),
                        Fate::Drop => continue,
                        Fate::Delay(d) => {
                            let data = bufs[0][..len].to_vec();
                            let m = meta[0];
                            let tx = self.delayed_tx.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(d).await;
                                let _ = tx.send((data, m));
                            });
                            continue;
                        }
                    }
                }
                other => return other,
            }
        }
    }
}
