//! The emulator end to end on loopback: plain sockets as clients (on
//! 127.0.0.3 and 127.0.0.4, so each is its own link) and as the "server"
//! (on 127.0.0.1), listeners on 127.0.0.2. The statistics of the loss model
//! are checked on far more datagrams in `model.rs`; here each test checks
//! that the relay really does what the link says, in real time.
//!
//! The machine is shared (builds and browser tests run beside these), so
//! the process may stall for tens of milliseconds at any time. Assertions
//! are arranged so a stall cannot make them fail while a broken behaviour
//! still does: receivers stop when the link's counters account for every
//! datagram sent (not after a quiet period), lower bounds on delay are exact
//! (send times are taken before sending, and a stall only adds), upper
//! bounds hold for the median rather than every datagram, and blackout
//! boundaries are checked with 100 ms margins.
//!
//! `unwrap`s here are on loopback socket calls and on datagrams the tests
//! built themselves: a failure is a broken test machine or a bug, and
//! should fail the test loudly.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::*;

const CLIENT_A: &str = "127.0.0.3";
const CLIENT_B: &str = "127.0.0.4";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A datagram: sequence number, sender id, then padding to `len`.
fn probe(seq: u32, sender: u8, len: usize) -> Vec<u8> {
    let mut d = vec![0; len.max(5)];
    d[..4].copy_from_slice(&seq.to_be_bytes());
    d[4] = sender;
    d
}

fn seq(d: &[u8]) -> u32 {
    u32::from_be_bytes(d[..4].try_into().unwrap())
}

async fn udp(ip: &str) -> Arc<UdpSocket> {
    let socket = UdpSocket::bind((ip, 0)).await.unwrap();
    enlarge_buffers(&socket);
    Arc::new(socket)
}

/// A UDP server on 127.0.0.1 and an emulator relaying 127.0.0.2:any to it.
async fn udp_setup() -> (LinkEmulator, Arc<UdpSocket>, SocketAddr) {
    let server = udp("127.0.0.1").await;
    let emulator = LinkEmulator::start(LinkEmulatorConfig {
        udp: vec![Relay {
            listen: "127.0.0.2:0".parse().unwrap(),
            upstream: server.local_addr().unwrap(),
        }],
        ..LinkEmulatorConfig::default()
    })
    .unwrap();
    let relay = emulator.udp_addrs()[0];
    (emulator, server, relay)
}

struct Received {
    at: Instant,
    data: Vec<u8>,
}

/// Receives on a socket in the background until finished.
struct Collector {
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<Vec<Received>>,
}

impl Collector {
    fn start(socket: Arc<UdpSocket>) -> Collector {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0; 65_536];
            loop {
                tokio::select! {
                    biased;
                    received = socket.recv_from(&mut buf) => {
                        let (n, _) = received.unwrap();
                        got.push(Received { at: Instant::now(), data: buf[..n].to_vec() });
                    }
                    _ = &mut stopped => break,
                }
            }
            // And whatever is already waiting.
            while let Ok((n, _)) = socket.try_recv_from(&mut buf) {
                got.push(Received {
                    at: Instant::now(),
                    data: buf[..n].to_vec(),
                });
            }
            got
        });
        Collector { stop, task }
    }

    /// Everything received, in order. Call once [`accounted`] says all has
    /// arrived.
    async fn finish(self) -> Vec<Received> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

/// Waits until the link has forwarded or dropped `total` datagrams going
/// `dir`. Loopback delivers during the send, so then every forwarded one is
/// already in its receiver's socket.
async fn accounted(link: &Link, dir: model::Direction, total: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = link.stats();
        let d = match dir {
            model::Direction::Up => stats.up,
            model::Direction::Down => stats.down,
        };
        let seen = d.forwarded + d.dropped_loss + d.dropped_blackout + d.dropped_queue;
        if seen >= total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{dir:?}: {seen} of {total} datagrams accounted for"
        );
        sleep(ms(5)).await;
    }
}

const UP: model::Direction = model::Direction::Up;
const DOWN: model::Direction = model::Direction::Down;

/// Sends `n` numbered datagrams as fast as the relay drains them (a pause
/// every 32, so no kernel buffer overflows).
async fn send_burst(socket: &UdpSocket, to: SocketAddr, n: u32, sender: u8, len: usize) {
    for i in 0..n {
        socket.send_to(&probe(i, sender, len), to).await.unwrap();
        if i % 32 == 31 {
            sleep(ms(1)).await;
        }
    }
}

/// What a server received: (source, datagram), in order.
type Log = Arc<Mutex<Vec<(SocketAddr, Vec<u8>)>>>;

/// Replies to every datagram with the same bytes; keeps what arrived.
fn udp_echo(server: Arc<UdpSocket>) -> Log {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0; 65_536];
        while let Ok((n, from)) = server.recv_from(&mut buf).await {
            log.lock().unwrap().push((from, buf[..n].to_vec()));
            let _ = server.send_to(&buf[..n], from).await;
        }
    });
    seen
}

fn lost_bursts(received_seqs: &[u32], sent: u32) -> Vec<u32> {
    let mut bursts = Vec::new();
    let mut expected = 0;
    for &s in received_seqs.iter().chain(std::iter::once(&sent)) {
        if s > expected {
            bursts.push(s - expected);
        }
        expected = s + 1;
    }
    bursts
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn round_trip(socket: &UdpSocket, to: SocketAddr) -> Duration {
    let mut buf = [0; 64];
    let start = Instant::now();
    socket.send_to(b"ping", to).await.unwrap();
    timeout(ms(1000), socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    start.elapsed()
}

#[tokio::test]
async fn unimpaired_relay_delivers_every_datagram_in_order_both_ways_one_source_per_flow() {
    let (emulator, server, relay) = udp_setup().await;
    let seen = udp_echo(server.clone());
    // Two client sockets on one address (two flows of one link), one on
    // another address.
    let clients = [udp(CLIENT_A).await, udp(CLIENT_A).await, udp(CLIENT_B).await];
    let echoes: Vec<_> = clients.iter().map(|c| Collector::start(c.clone())).collect();
    const N: u32 = 1000;
    for i in 0..N {
        for (id, client) in clients.iter().enumerate() {
            client.send_to(&probe(i, id as u8, 200), relay).await.unwrap();
        }
        if i % 16 == 15 {
            sleep(ms(1)).await;
        }
    }
    let (a, b) = (emulator.link(ip(CLIENT_A)), emulator.link(ip(CLIENT_B)));
    accounted(&a, DOWN, 2 * N as u64).await;
    accounted(&b, DOWN, N as u64).await;
    for (id, echo) in echoes.into_iter().enumerate() {
        let got: Vec<u32> = echo.finish().await.iter().map(|r| seq(&r.data)).collect();
        assert_eq!(
            got,
            (0..N).collect::<Vec<_>>(),
            "echoes to client {id}: all, in order"
        );
    }
    let seen = seen.lock().unwrap().clone();
    let mut sources: HashMap<u8, Vec<SocketAddr>> = HashMap::new();
    for (id, client) in clients.iter().enumerate() {
        let id = id as u8;
        let from_client: Vec<_> = seen.iter().filter(|(_, d)| d[4] == id).collect();
        let order: Vec<u32> = from_client.iter().map(|(_, d)| seq(d)).collect();
        assert_eq!(
            order,
            (0..N).collect::<Vec<_>>(),
            "server got client {id}'s datagrams in order"
        );
        let mut addrs: Vec<SocketAddr> = from_client.iter().map(|(from, _)| *from).collect();
        addrs.dedup();
        assert_eq!(addrs.len(), 1, "client {id} appears as one source");
        assert_eq!(addrs[0].ip(), ip("127.0.0.1"), "from the upstream address");
        assert_ne!(addrs[0], client.local_addr().unwrap());
        sources.insert(id, addrs);
    }
    assert!(sources[&0] != sources[&1] && sources[&1] != sources[&2] && sources[&0] != sources[&2]);

    let a = a.stats();
    assert_eq!(
        (a.up.forwarded, a.down.forwarded, a.flows.len()),
        (2 * N as u64, 2 * N as u64, 2)
    );
    assert_eq!(b.stats().flows.len(), 1);

    // Latency: what the relay adds to a round trip (two crossings) must be
    // well under a millisecond each way.
    let direct = udp("127.0.0.1").await;
    let mut via_relay = Vec::new();
    let mut straight = Vec::new();
    for _ in 0..200 {
        via_relay.push(round_trip(&clients[0], relay).await);
        straight.push(round_trip(&direct, server.local_addr().unwrap()).await);
    }
    let added = median(via_relay).saturating_sub(median(straight));
    assert!(added < ms(1), "relay adds {added:?} to a round trip");
}

#[tokio::test]
async fn random_loss_drops_about_the_requested_share() {
    let (emulator, server, relay) = udp_setup().await;
    let link = emulator.link(ip(CLIENT_A));
    link.set_shape(
        Shape {
            loss: 0.1,
            ..Shape::default()
        },
        Shape::default(),
    )
    .unwrap();
    let got = Collector::start(server);
    let client = udp(CLIENT_A).await;
    const N: u32 = 5000;
    send_burst(&client, relay, N, 0, 100).await;
    accounted(&link, UP, N as u64).await;
    let got: Vec<u32> = got.finish().await.iter().map(|r| seq(&r.data)).collect();
    let lost = N as u64 - got.len() as u64;
    // Binomial: 500 ± 21 (one sigma).
    assert!((400..=600).contains(&lost), "lost {lost} of {N}");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "survivors in order");
    let stats = link.stats();
    assert_eq!(
        (stats.up.dropped_loss, stats.up.forwarded),
        (lost, got.len() as u64),
        "stats match"
    );
}

#[tokio::test]
async fn burst_loss_has_the_mean_burst_length_and_the_same_rate() {
    let (emulator, server, relay) = udp_setup().await;
    let link = emulator.link(ip(CLIENT_A));
    let bursty = Shape {
        loss: 0.1,
        burst_len: 5.0,
        ..Shape::default()
    };
    link.set_shape(bursty, Shape::default()).unwrap();
    let got = Collector::start(server);
    let client = udp(CLIENT_A).await;
    const N: u32 = 10_000;
    send_burst(&client, relay, N, 0, 100).await;
    accounted(&link, UP, N as u64).await;
    let got: Vec<u32> = got.finish().await.iter().map(|r| seq(&r.data)).collect();
    let bursts = lost_bursts(&got, N);
    let lost: u32 = bursts.iter().sum();
    let rate = lost as f64 / N as f64;
    let mean = lost as f64 / bursts.len() as f64;
    // About 200 bursts: the mean burst is 5 ± 0.3, the rate 0.1 ± 0.01.
    assert!((0.065..=0.135).contains(&rate), "loss rate {rate}");
    assert!(
        (3.8..=6.2).contains(&mean),
        "mean burst {mean} over {} bursts",
        bursts.len()
    );
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test]
async fn delay_and_jitter_give_the_range_and_keep_order() {
    let (emulator, server, relay) = udp_setup().await;
    let (delay, jitter) = (ms(40), ms(20));
    let link = emulator.link(ip(CLIENT_A));
    link.set_shape(
        Shape {
            delay,
            jitter,
            ..Shape::default()
        },
        Shape::default(),
    )
    .unwrap();
    let client = udp(CLIENT_A).await;
    let one_way = |got: &[Received], sent: &[Instant]| -> Vec<Duration> {
        got.iter().map(|r| r.at - sent[seq(&r.data) as usize]).collect()
    };

    // Spaced wider than the jitter, so the in-order rule never binds: each
    // delay is `delay` plus its own uniform share of `jitter`. A client with
    // the same delay and no jitter sends in lockstep: the machine (timer
    // wake-ups under whatever else runs on it) delays both alike, so the
    // jitter shows as the difference.
    let baseline = udp(CLIENT_B).await;
    let no_jitter = Shape {
        delay,
        ..Shape::default()
    };
    emulator
        .link(ip(CLIENT_B))
        .set_shape(no_jitter, Shape::default())
        .unwrap();
    let got = Collector::start(server.clone());
    let mut sent = Vec::new();
    for i in 0..40 {
        // Before sending: a stall after it must not shorten the delay.
        sent.push(Instant::now());
        client.send_to(&probe(i, 0, 100), relay).await.unwrap();
        baseline.send_to(&probe(i, 1, 100), relay).await.unwrap();
        sleep(ms(25)).await;
    }
    accounted(&link, UP, 40).await;
    accounted(&emulator.link(ip(CLIENT_B)), UP, 40).await;
    let (jittered, steady): (Vec<_>, Vec<_>) = got.finish().await.into_iter().partition(|r| r.data[4] == 0);
    let delays = one_way(&jittered, &sent);
    assert_eq!(delays.len(), 40);
    assert!(
        delays.iter().all(|&d| d >= delay),
        "a datagram beat the delay: {delays:?}"
    );
    let steady = percentile(one_way(&steady, &sent), 0.5);
    assert!(steady <= delay + ms(15), "median delay without jitter {steady:?}");
    // Uniform jitter adds jitter/2 at the median, and some datagrams get
    // almost none. (Every datagram's bound is checked on the model.)
    let p50 = percentile(delays.clone(), 0.5).saturating_sub(steady);
    assert!(
        p50 >= jitter / 2 - ms(5) && p50 <= jitter / 2 + ms(5),
        "jitter adds {p50:?} at the median"
    );
    let p10 = percentile(delays, 0.1).saturating_sub(steady);
    assert!(
        p10 <= ms(6),
        "jitter not spread from 0: {p10:?} at the 10th percentile"
    );

    // Back to back (1 ms apart, much less than the jitter): none overtakes.
    let got = Collector::start(server.clone());
    const N: u32 = 200;
    let mut sent = Vec::new();
    for i in 0..N {
        sent.push(Instant::now());
        client.send_to(&probe(i, 0, 100), relay).await.unwrap();
        sleep(ms(1)).await;
    }
    accounted(&link, UP, 40 + N as u64).await;
    let got = got.finish().await;
    let order: Vec<u32> = got.iter().map(|r| seq(&r.data)).collect();
    assert_eq!(order, (0..N).collect::<Vec<_>>(), "all delivered, none overtaken");
    assert!(one_way(&got, &sent).iter().all(|&d| d >= delay));

    // Lifting the delay does not let new datagrams overtake held ones.
    let got = Collector::start(server);
    for i in 0..20 {
        if i == 10 {
            // Let the relay take the first ten under the delay.
            sleep(ms(5)).await;
            link.set_shape(Shape::default(), Shape::default()).unwrap();
        }
        client.send_to(&probe(i, 0, 100), relay).await.unwrap();
    }
    accounted(&link, UP, 40 + N as u64 + 20).await;
    let order: Vec<u32> = got.finish().await.iter().map(|r| seq(&r.data)).collect();
    assert_eq!(
        order,
        (0..20).collect::<Vec<_>>(),
        "overtaken when the delay was lifted"
    );
}

#[tokio::test]
async fn rate_cap_carries_the_rate_and_drops_beyond_the_queue() {
    let (emulator, server, relay) = udp_setup().await;
    let link = emulator.link(ip(CLIENT_A));
    let queue = ms(300);
    link.set_shape(
        Shape {
            rate_bps: Some(500_000),
            queue,
            ..Shape::default()
        },
        Shape::default(),
    )
    .unwrap();
    let got = Collector::start(server);
    let client = udp(CLIENT_A).await;
    // What the machine's timer wake-ups add right now (see the delay test):
    // a client whose datagrams are held 1 ms, in lockstep.
    let baseline = udp(CLIENT_B).await;
    let held = Shape {
        delay: ms(1),
        ..Shape::default()
    };
    emulator
        .link(ip(CLIENT_B))
        .set_shape(held, Shape::default())
        .unwrap();
    // Offer 1 Mbit/s (1000-byte payloads every 8 ms) for 1.5 s.
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(ms(8));
    let end = Instant::now() + ms(1500);
    while Instant::now() < end {
        tick.tick().await;
        let seq = sent.len() as u32;
        sent.push(Instant::now());
        client.send_to(&probe(seq, 0, 1000), relay).await.unwrap();
        baseline.send_to(&probe(seq, 1, 100), relay).await.unwrap();
    }
    accounted(&link, UP, sent.len() as u64).await;
    accounted(&emulator.link(ip(CLIENT_B)), UP, sent.len() as u64).await;
    let (got, held): (Vec<_>, Vec<_>) = got.finish().await.into_iter().partition(|r| r.data[4] == 0);
    let machine = percentile(
        held.iter().map(|r| r.at - sent[seq(&r.data) as usize]).collect(),
        0.5,
    )
    .saturating_sub(ms(1));
    let span = got.last().unwrap().at - got.first().unwrap().at;
    let bits = (got.len() - 1) as f64 * 1028.0 * 8.0; // with UDP/IP headers
    let kbps = bits / span.as_secs_f64() / 1000.0;
    assert!((425.0..=575.0).contains(&kbps), "carried {kbps:.0} kbit/s");
    let delays: Vec<Duration> = got.iter().map(|r| r.at - sent[seq(&r.data) as usize]).collect();
    let max_delay = *delays.iter().max().unwrap();
    assert!(max_delay >= ms(250), "the queue filled: max delay {max_delay:?}");
    // The queue stays full: most wait `queue` plus 16.4 ms of sending, no
    // more. (Every datagram's bound is checked on the model; a stall may
    // push a few beyond.)
    let p50 = percentile(delays, 0.5).saturating_sub(machine);
    assert!(
        p50 <= queue + ms(17) + ms(8),
        "queue bounded: median delay {p50:?} beyond the machine's {machine:?}"
    );
    let stats = link.stats();
    assert!(
        stats.up.dropped_queue > 30,
        "dropped beyond the queue: {}",
        stats.up.dropped_queue
    );
    assert_eq!(stats.up.forwarded + stats.up.dropped_queue, sent.len() as u64);
    assert_eq!(stats.up.forwarded, got.len() as u64);
}

#[tokio::test]
async fn udp_blackout_drops_both_ways_for_its_duration_then_passes() {
    let (emulator, server, relay) = udp_setup().await;
    let client = udp(CLIENT_A).await;
    // Open the flow and learn where the server sees it.
    client.send_to(b"hello", relay).await.unwrap();
    let mut buf = [0; 64];
    let (_, flow) = timeout(ms(1000), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();

    let link = emulator.link(ip(CLIENT_A));
    link.blackout(ms(300));
    // Taken after the blackout started, so it ends by t0 + 300 ms.
    let t0 = Instant::now();
    let end = t0 + ms(600);
    let at_server = Collector::start(server.clone());
    let at_client = Collector::start(client.clone());
    // Both ends send every 5 ms; a datagram carries when it was sent, in
    // ms since t0 (stamped before sending, so it reaches the relay later).
    let mut tick = tokio::time::interval(ms(5));
    let mut sent = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        let offset = (Instant::now() - t0).as_millis() as u32;
        client.send_to(&probe(offset, 0, 100), relay).await.unwrap();
        server.send_to(&probe(offset, 1, 100), flow).await.unwrap();
        sent.push(offset);
    }
    // Up: the hello too.
    accounted(&link, UP, 1 + sent.len() as u64).await;
    accounted(&link, DOWN, sent.len() as u64).await;
    let up: Vec<u32> = at_server.finish().await.iter().map(|r| seq(&r.data)).collect();
    let down: Vec<u32> = at_client.finish().await.iter().map(|r| seq(&r.data)).collect();
    // Sent before 200 ms: certainly inside the blackout (100 ms of margin
    // for a stall between sending and relaying). Sent from 300 ms on:
    // certainly after it.
    let during: Vec<u32> = sent.iter().copied().filter(|&o| o < 200).collect();
    let after: Vec<u32> = sent.iter().copied().filter(|&o| o >= 300).collect();
    assert!(during.len() >= 20 && after.len() >= 20, "sent too few: {sent:?}");
    for (name, got) in [("up", &up), ("down", &down)] {
        let leaked: Vec<_> = got.iter().filter(|o| during.contains(o)).collect();
        assert!(
            leaked.is_empty(),
            "{name}: got datagrams sent during the blackout: {leaked:?}"
        );
        let missing: Vec<_> = after.iter().filter(|o| !got.contains(o)).collect();
        assert!(missing.is_empty(), "{name}: lost after the blackout: {missing:?}");
    }
    let stats = link.stats();
    let counted = during.len() as u64;
    assert!(
        stats.up.dropped_blackout >= counted && stats.down.dropped_blackout >= counted,
        "{stats:?}"
    );
    assert_eq!(stats.blackout_remaining_ms, 0);
}

/// A TCP echo server, reporting when it accepts a connection and how each
/// ends (cleanly or an error).
struct TcpEcho {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<Instant>,
    ended: mpsc::UnboundedReceiver<io::Result<()>>,
}

async fn tcp_echo() -> TcpEcho {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ends, ended) = mpsc::unbounded_channel();
    let (accepts, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = accepts.send(Instant::now());
            let ends = ends.clone();
            tokio::spawn(async move {
                let mut buf = [0; 4096];
                let end = loop {
                    match conn.read(&mut buf).await {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            if let Err(e) = conn.write_all(&buf[..n]).await {
                                break Err(e);
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                let _ = ends.send(end);
            });
        }
    });
    TcpEcho {
        addr,
        accepted,
        ended,
    }
}

async fn tcp_setup() -> (LinkEmulator, SocketAddr, TcpEcho) {
    let echo = tcp_echo().await;
    let emulator = LinkEmulator::start(LinkEmulatorConfig {
        tcp: vec![Relay {
            listen: "127.0.0.2:0".parse().unwrap(),
            upstream: echo.addr,
        }],
        ..LinkEmulatorConfig::default()
    })
    .unwrap();
    let relay = emulator.tcp_addrs()[0];
    (emulator, relay, echo)
}

async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((self::ip(ip), 0).into()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Writes `msg` and reads its echo.
async fn tcp_round_trip(conn: &mut TcpStream, msg: &[u8]) {
    conn.write_all(msg).await.unwrap();
    let mut buf = vec![0; msg.len()];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, msg);
}

#[tokio::test]
async fn tcp_blackout_stalls_open_and_new_connections_until_it_ends() {
    let (emulator, relay, mut echo) = tcp_setup().await;
    let link = emulator.link(ip(CLIENT_A));
    let mut open = connect_from(CLIENT_A, relay).await;
    timeout(ms(1000), echo.accepted.recv()).await.unwrap();
    tcp_round_trip(&mut open, b"before").await;

    link.blackout(ms(400));
    // Taken after the blackout started: it ends by t0 + 400 ms.
    let t0 = Instant::now();
    let stalled = tokio::spawn(async move {
        tcp_round_trip(&mut open, b"during").await;
        (open, t0.elapsed())
    });
    sleep(ms(50)).await;
    // A connection opened during the blackout goes through once it ends.
    let opened = t0.elapsed();
    let mut late = connect_from(CLIENT_A, relay).await;
    tcp_round_trip(&mut late, b"new").await;
    let late_done = t0.elapsed();
    let (mut open, open_done) = stalled.await.unwrap();
    assert!(
        opened < ms(350),
        "test too slow to open a connection during the blackout ({opened:?})"
    );
    // Ended at most a few ms before t0 + 400 ms (it started just before t0).
    for (name, done) in [("open", open_done), ("new", late_done)] {
        assert!(
            done >= ms(395),
            "{name} connection's round trip done {done:?} into a 400 ms blackout"
        );
        assert!(
            done < ms(1000),
            "{name} connection stalled past the blackout: {done:?}"
        );
    }
    assert_eq!(link.stats().tcp_connections, 2);
    // The server saw the new connection only once the blackout ended.
    let server_saw = timeout(ms(1000), echo.accepted.recv()).await.unwrap().unwrap() - t0;
    assert!(
        server_saw >= ms(395),
        "the new connection reached the server {server_saw:?} into the blackout"
    );

    // Until ended: nothing moves until end_blackout.
    link.blackout_until_ended();
    let stalled = tokio::spawn(async move { tcp_round_trip(&mut open, b"held").await });
    sleep(ms(300)).await;
    assert!(
        !stalled.is_finished(),
        "bytes crossed a blackout held until ended"
    );
    assert!(link.stats().blackout_until_ended);
    link.end_blackout();
    timeout(ms(1000), stalled)
        .await
        .expect("round trip after end_blackout")
        .unwrap();
}

#[tokio::test]
async fn udp_handover_changes_the_source_port_and_the_same_client_socket_still_reaches_the_server() {
    let (emulator, server, relay) = udp_setup().await;
    let client = udp(CLIENT_A).await;
    let mut buf = [0; 64];
    client.send_to(b"before", relay).await.unwrap();
    let (_, old) = timeout(ms(1000), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();

    let link = emulator.link(ip(CLIENT_A));
    link.handover().await;
    client.send_to(b"after", relay).await.unwrap();
    let (n, new) = timeout(ms(1000), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"after");
    assert_eq!(new.ip(), old.ip());
    assert_ne!(new.port(), old.port(), "the server sees a new source port");

    // The old address is gone: what the server sends there is lost; the
    // new one reaches the same client socket.
    server.send_to(b"to old", old).await.unwrap();
    server.send_to(b"to new", new).await.unwrap();
    let (n, from) = timeout(ms(1000), client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&buf[..n], from), (&b"to new"[..], relay));
    assert!(
        timeout(ms(200), client.recv_from(&mut buf)).await.is_err(),
        "got a datagram sent to the old port"
    );
    assert!(
        std::net::UdpSocket::bind(old).is_ok(),
        "the old upstream socket is still open"
    );

    let stats = link.stats();
    assert_eq!(stats.handovers, 1);
    let flows: Vec<SocketAddr> = stats.flows.iter().map(|f| f.upstream).collect();
    assert_eq!(flows, vec![new]);
}

#[tokio::test]
async fn tcp_handover_resets_open_connections_both_ways() {
    let (emulator, relay, mut echo) = tcp_setup().await;
    let mut conn = connect_from(CLIENT_A, relay).await;
    tcp_round_trip(&mut conn, b"hello").await;

    let link = emulator.link(ip(CLIENT_A));
    link.handover().await;
    let mut buf = [0; 16];
    let client_end = timeout(ms(1000), conn.read(&mut buf)).await.unwrap();
    assert_eq!(
        client_end.unwrap_err().kind(),
        io::ErrorKind::ConnectionReset,
        "client side"
    );
    let server_end = timeout(ms(1000), echo.ended.recv()).await.unwrap().unwrap();
    assert_eq!(
        server_end.unwrap_err().kind(),
        io::ErrorKind::ConnectionReset,
        "server side"
    );

    // The page reconnects.
    let mut again = connect_from(CLIENT_A, relay).await;
    tcp_round_trip(&mut again, b"again").await;
    let stats = link.stats();
    assert_eq!((stats.handovers, stats.tcp_connections), (1, 1));
}

#[tokio::test]
async fn links_are_per_source_ip() {
    let (emulator, server, relay) = udp_setup().await;
    let (link_a, link_b) = (emulator.link(ip(CLIENT_A)), emulator.link(ip(CLIENT_B)));
    let lose_all = Shape {
        loss: 1.0,
        ..Shape::default()
    };
    let got = Collector::start(server);
    let (a, b) = (udp(CLIENT_A).await, udp(CLIENT_B).await);
    // First all of 127.0.0.3's datagrams are lost, then it is blacked out.
    link_a.set_shape(lose_all, Shape::default()).unwrap();
    for i in 0..200 {
        if i == 100 {
            accounted(&link_a, UP, 100).await;
            link_a.set_shape(Shape::default(), Shape::default()).unwrap();
            link_a.blackout_until_ended();
        }
        a.send_to(&probe(i, 0, 100), relay).await.unwrap();
        b.send_to(&probe(i, 1, 100), relay).await.unwrap();
    }
    accounted(&link_a, UP, 200).await;
    accounted(&link_b, UP, 200).await;
    let got = got.finish().await;
    let from_b: Vec<u32> = got
        .iter()
        .filter(|r| r.data[4] == 1)
        .map(|r| seq(&r.data))
        .collect();
    assert_eq!(from_b, (0..200).collect::<Vec<_>>(), "127.0.0.4 untouched");
    assert!(
        got.iter().all(|r| r.data[4] == 1),
        "127.0.0.3's datagrams got through"
    );
    let (a, b) = (link_a.stats(), link_b.stats());
    assert_eq!((a.up.dropped_loss, a.up.dropped_blackout), (100, 100));
    assert_eq!(
        (b.up.forwarded, b.up.dropped_loss, b.up.dropped_blackout),
        (200, 0, 0)
    );
    assert_eq!((b.blackout_until_ended, b.up.shape.loss), (false, Some(0.0)));
}

#[tokio::test]
async fn dropping_the_last_handle_stops_every_task() {
    let server = udp("127.0.0.1").await;
    let echo = tcp_echo().await;
    let emulator = LinkEmulator::start(LinkEmulatorConfig {
        udp: vec![Relay {
            listen: "127.0.0.2:0".parse().unwrap(),
            upstream: server.local_addr().unwrap(),
        }],
        tcp: vec![Relay {
            listen: "127.0.0.2:0".parse().unwrap(),
            upstream: echo.addr,
        }],
        ..LinkEmulatorConfig::default()
    })
    .unwrap();
    let (udp_relay, tcp_relay) = (emulator.udp_addrs()[0], emulator.tcp_addrs()[0]);
    let client = udp(CLIENT_A).await;
    client.send_to(b"x", udp_relay).await.unwrap();
    let mut buf = [0; 8];
    let (_, flow) = timeout(ms(1000), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let link = emulator.link(ip(CLIENT_A));
    let clone = emulator.clone();
    drop(emulator);
    assert!(
        std::net::UdpSocket::bind(udp_relay).is_err(),
        "a clone keeps it running"
    );
    drop(clone);
    // The listeners and the flow's upstream socket close as the tasks end.
    let deadline = Instant::now() + ms(3000);
    loop {
        let free = std::net::UdpSocket::bind(udp_relay).is_ok()
            && std::net::TcpListener::bind(tcp_relay).is_ok()
            && std::net::UdpSocket::bind(flow).is_ok();
        if free {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sockets still open after the last handle dropped"
        );
        sleep(ms(10)).await;
    }
    assert!(link.stats().flows.is_empty());
}

#[tokio::test]
async fn idle_flows_are_forgotten_and_a_new_datagram_starts_a_new_one() {
    let server = udp("127.0.0.1").await;
    let idle = ms(1000);
    let config = LinkEmulatorConfig {
        udp: vec![Relay {
            listen: "127.0.0.2:0".parse().unwrap(),
            upstream: server.local_addr().unwrap(),
        }],
        ..LinkEmulatorConfig::default()
    };
    let emulator = LinkEmulator::start_with_idle(config, idle).unwrap();
    let relay = emulator.udp_addrs()[0];
    let link = emulator.link(ip(CLIENT_A));
    let client = udp(CLIENT_A).await;
    let mut buf = [0; 16];
    client.send_to(b"one", relay).await.unwrap();
    let (_, first) = timeout(ms(1000), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    // Traffic either way keeps it: the server talks for a while.
    for _ in 0..4 {
        sleep(idle * 3 / 10).await;
        server.send_to(b"still here", first).await.unwrap();
        timeout(ms(1000), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        link.stats().flows.len(),
        1,
        "forgotten while the server was talking"
    );

    let deadline = Instant::now() + idle + ms(2000);
    while !link.stats().flows.is_empty() {
        assert!(Instant::now() < deadline, "idle flow not forgotten");
        sleep(ms(20)).await;
    }
    assert!(
        std::net::UdpSocket::bind(first).is_ok(),
        "the idle flow's socket is still open"
    );
    client.send_to(b"two", relay).await.unwrap();
    let (n, second) = timeout(ms(1000), server.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"two");
    assert_eq!(
        link.stats().flows.iter().map(|f| f.upstream).collect::<Vec<_>>(),
        vec![second]
    );
}
