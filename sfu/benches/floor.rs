//! The physical floor of forwarding one packet, on this machine: what any
//! SFU must spend per packet it relays from one participant to another,
//! with nothing else (no interceptors, no routing, no RTCP, no timers).
//!
//! - `srtp decrypt`: AEAD_AES_128_GCM (the profile browsers and our server
//!   negotiate) on a 1,200-byte RTP packet, replay check included;
//! - `srtp encrypt`: the same packet encrypted for the subscriber;
//! - `udp hop`: one `send_to` and one `recv_from` of that datagram on
//!   loopback, in one thread. On loopback the sender's system call also
//!   delivers the datagram into the receiving socket, so this is the kernel
//!   work a server is charged per forwarded packet: one receive (its own)
//!   and one send including delivery.
//!
//! Their sum is the floor per forwarded packet that the load generator's
//! "server CPU per forwarded packet" compares to (docs/BENCHMARKS.md).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 1_200 - 12;

/// A marshalled RTP packet: 12-byte header, sequence number `seq`.
fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&u32::from(seq).wrapping_mul(3000).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend((0..PAYLOAD).map(|i| (i % 251) as u8));
    p
}

fn context() -> Context {
    let provider = rtc::crypto::default_provider().expect("a crypto provider");
    let profile = ProtectionProfile::AeadAes128Gcm;
    let key = vec![7u8; profile.key_len()];
    let salt = vec![9u8; profile.salt_len()];
    Context::new(&key, &salt, profile, None, None, provider.crypto()).expect("an SRTP context")
}

fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));

    g.bench_function("srtp encrypt", |b| {
        let mut ctx = context();
        let mut seq = 0u16;
        b.iter_custom(|iters| {
            let packets: Vec<Vec<u8>> = (0..iters)
                .map(|_| {
                    seq = seq.wrapping_add(1);
                    rtp(seq)
                })
                .collect();
            let start = Instant::now();
            for p in &packets {
                std::hint::black_box(ctx.encrypt_rtp(p).expect("encrypt"));
            }
            start.elapsed()
        });
    });

    g.bench_function("srtp decrypt", |b| {
        let mut sender = context();
        let mut receiver = context();
        let mut seq = 0u16;
        b.iter_custom(|iters| {
            // Fresh sequence numbers each round (the replay check refuses
            // repeats); a new receiver when they would wrap.
            if u64::from(seq) + iters >= u64::from(u16::MAX) {
                sender = context();
                receiver = context();
                seq = 0;
            }
            let packets: Vec<_> = (0..iters)
                .map(|_| {
                    seq = seq.wrapping_add(1);
                    sender.encrypt_rtp(&rtp(seq)).expect("encrypt")
                })
                .collect();
            let start = Instant::now();
            for p in &packets {
                std::hint::black_box(receiver.decrypt_rtp(p).expect("decrypt"));
            }
            start.elapsed()
        });
    });

    g.bench_function("udp hop", |b| {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let z = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = z.local_addr().expect("address");
        let packet = context().encrypt_rtp(&rtp(1)).expect("encrypt");
        let mut buf = [0u8; 2048];
        b.iter(|| {
            a.send_to(&packet, to).expect("send");
            std::hint::black_box(z.recv_from(&mut buf).expect("receive"));
        });
    });
    g.finish();
}

criterion_group!(benches, floor);
criterion_main!(benches);
