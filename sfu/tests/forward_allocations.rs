//! No heap allocation per forwarded packet on the write path (a subscriber
//! leg's interceptors, NACK buffer and SRTP; third_party/README.md), counted
//! by a counting allocator over real `rtc` peer connections handshaken in
//! memory — the forwarding bench's legs: `rtc`'s default interceptors, VP8
//! packets without header extensions. (With the server's TWCC sender, adding
//! the extension to an outgoing header still grows its extension `Vec`: one
//! allocation, docs/BENCHMARKS.md "A cheaper packet".)

// The bench's legs; it reads fields this test does not.
#[allow(dead_code)]
#[path = "../benches/common/mod.rs"]
mod common;

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

/// The system allocator, counting this thread's allocations while asked to.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    ALLOCATIONS.with(|n| n.get())
}

#[test]
fn forwarding_a_packet_to_subscribers_allocates_nothing() {
    let mut legs: Vec<common::Leg> = (0..3).map(common::leg).collect();
    let payload = Bytes::from(vec![0x10u8; 1100]);
    let mut sent = 0u64;
    let mut run = |legs: &mut Vec<common::Leg>, from: u16, count: u16| {
        for i in 0..count {
            let seq = from.wrapping_add(i);
            let ts = u32::from(seq).wrapping_mul(3000);
            common::forward(legs, Instant::now(), seq, ts, &payload, |datagram| {
                assert!(
                    datagram.len() > 1100,
                    "a protected packet, header and tag included"
                );
                sent += 1;
            });
        }
    };
    // Warm up: queues and buffers grow to the traffic's size, the NACK
    // buffers fill and wrap.
    run(&mut legs, 0, 2_000);
    let packets: u16 = 1_000;
    let allocations = allocations_in(|| run(&mut legs, 2_000, packets));
    let forwarded = 3 * u64::from(packets);
    assert!(
        sent >= 3 * 2_000 + forwarded,
        "every packet reached the wire: {sent}"
    );
    assert_eq!(
        allocations, 0,
        "{allocations} heap allocations for {forwarded} forwarded packets"
    );
}
