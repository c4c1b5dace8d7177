//! The forwarding path, one publisher to N subscribers: for each incoming
//! RTP packet, per subscriber: rewrite the header (`StreamRewriter`), write
//! it into that subscriber's peer connection (interceptors, NACK buffer,
//! SRTP encryption) and send the datagram on a loopback UDP socket — the
//! same work the engine does per outgoing packet. The subscribers' peer
//! connections are real `rtc` connections, handshaken (ICE, DTLS) in memory
//! against in-memory clients, so no time is spent waiting on a network.
//!
//! Throughput is reported in outgoing packets per second on one core; after
//! each size, the heap allocations per outgoing packet on that path (a
//! counting allocator), the figure "no allocation per forwarded packet"
//! is judged by.

mod common;

use bytes::Bytes;
use common::{forward, leg, Leg};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtc::sansio::Protocol;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The system allocator, counting allocations (not frees) and their bytes.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn forwarding(c: &mut Criterion) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sink = UdpSocket::bind("127.0.0.1:0").expect("bind sink");
    sink.set_nonblocking(true).expect("nonblocking");
    let sink_addr = sink.local_addr().expect("addr");
    socket.set_nonblocking(true).expect("nonblocking");
    let mut group = c.benchmark_group("forward_one_to_n");
    for n in [1u16, 3, 10] {
        let mut legs: Vec<Leg> = (0..n).map(leg).collect();
        let mut seq: u16 = 0;
        let mut ts: u32 = 0;
        let payload = Bytes::from(vec![0x10u8; 1100]);
        let mut buf = [0u8; 2048];
        group.throughput(Throughput::Elements(u64::from(n)));
        let mut step = |legs: &mut Vec<Leg>| {
            let now = Instant::now();
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(3000);
            forward(legs, now, seq, ts, &payload, |datagram| {
                let _ = socket.send_to(datagram, sink_addr);
            });
            // Keep the sink from filling (not part of the SFU's cost, but cheap).
            while sink.recv_from(&mut buf).is_ok() {}
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| step(&mut legs))
        });
        // The same path, counted: steady state, after criterion's runs.
        const PACKETS: u64 = 10_000;
        let (a0, b0) = (
            ALLOCATIONS.load(Ordering::Relaxed),
            ALLOCATED_BYTES.load(Ordering::Relaxed),
        );
        for _ in 0..PACKETS {
            step(&mut legs);
        }
        let outgoing = PACKETS * u64::from(n);
        let (a, bytes) = (
            ALLOCATIONS.load(Ordering::Relaxed) - a0,
            ALLOCATED_BYTES.load(Ordering::Relaxed) - b0,
        );
        println!(
            "forward_one_to_n/{n}: {:.1} heap allocations ({:.0} bytes) per outgoing packet",
            a as f64 / outgoing as f64,
            bytes as f64 / outgoing as f64
        );
        // Keep the clients' state alive until the end of the measurement.
        for leg in legs.iter_mut() {
            while leg.client.poll_write().is_some() {}
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = forwarding
}
criterion_main!(benches);
