//! When each datagram reached this host, not when the engine got to it.
//!
//! The time a packet is handed to a peer connection is its arrival time for
//! everything downstream, the transport-wide congestion control feedback
//! above all: the publisher's browser reads a growing gap between its send
//! times and our arrival times as a queue building on the path, and lowers
//! its sending rate. Stamped when the engine reads the packet, every pause
//! of this process (a busy core, a slow turn) looked like such a queue: on
//! a 2-core machine shared with two browsers, a publisher's estimate stayed
//! at 150-300 kbps on a clean loopback link, holding its camera to its
//! lowest layer, in two of three calls. The kernel stamps each datagram as
//! it is received (`SO_TIMESTAMPNS`, as libwebrtc does for its own sockets);
//! that stamp, moved onto the monotonic clock, is the arrival time.

use std::io;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use tokio::net::UdpSocket;

/// Asks the kernel to stamp each datagram received on `socket`. Without it
/// (an old kernel, another OS) arrival is the time the engine reads it.
pub(super) fn enable(socket: &UdpSocket) {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::socket::setsockopt(socket, nix::sys::socket::sockopt::ReceiveTimestampns, &true)
    {
        tracing::warn!(error = %e, "no kernel receive timestamps: arrival is when the engine reads a packet");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
}

/// A kernel stamp on the wall clock, as an instant on the monotonic clock:
/// `now` minus the time since the stamp. A stamp from the future or more
/// than a second old (the wall clock stepped in between) is not trusted:
/// arrival is `now`.
fn to_instant(stamp: SystemTime, wall_now: SystemTime, now: Instant) -> Instant {
    match wall_now.duration_since(stamp) {
        Ok(age) if age <= std::time::Duration::from_secs(1) => now.checked_sub(age).unwrap_or(now),
        _ => now,
    }
}

/// Reads one datagram if one is queued, without waiting: its length, its
/// sender and when it reached this host. `WouldBlock` when none is queued
/// (and the socket's readiness is cleared, so `readable()` waits again).
pub(super) fn try_recv(
    socket: &UdpSocket,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, SocketAddr, Instant)> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        socket.try_io(tokio::io::Interest::READABLE, || {
            let mut iov = [io::IoSliceMut::new(buf)];
            let msg = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(cmsg), MsgFlags::empty())
                .map_err(io::Error::from)?;
            let mut stamp = None;
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::ScmTimestampns(ts) = c {
                        stamp = Some(
                            SystemTime::UNIX_EPOCH
                                + std::time::Duration::new(
                                    ts.tv_sec().max(0) as u64,
                                    ts.tv_nsec().clamp(0, 999_999_999) as u32,
                                ),
                        );
                    }
                }
            }
            let from = msg
                .address
                .as_ref()
                .and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                        .or_else(|| {
                            a.as_sockaddr_in6()
                                .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                        })
                })
                .ok_or_else(|| io::Error::other("datagram without a sender address"))?;
            let n = msg.bytes;
            let now = Instant::now();
            let at = match stamp {
                Some(s) => to_instant(s, SystemTime::now(), now),
                None => now,
            };
            Ok((n, from, at))
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cmsg;
        let (n, from) = socket.try_recv_from(buf)?;
        Ok((n, from, Instant::now()))
    }
}

/// Room for the control message that carries the stamp.
pub(super) fn cmsg_buffer() -> Vec<u8> {
    #[cfg(target_os = "linux")]
    {
        nix::cmsg_space!(nix::sys::time::TimeSpec)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_stamp_becomes_an_instant_as_far_in_the_past() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let at = to_instant(wall - Duration::from_millis(40), wall, now);
        assert_eq!(now - at, Duration::from_millis(40));
    }

    #[test]
    fn a_stamp_from_a_stepped_clock_is_not_trusted() {
        let now = Instant::now();
        let wall = SystemTime::now();
        assert_eq!(to_instant(wall + Duration::from_millis(5), wall, now), now);
        assert_eq!(to_instant(wall - Duration::from_secs(30), wall, now), now);
    }

    /// A datagram read a while after it arrived is stamped with when it
    /// arrived: the kernel's stamp, not the read.
    #[tokio::test]
    async fn a_datagram_read_late_keeps_its_arrival_time() {
        let rx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        enable(&rx);
        // When no socket on the host had stamps on, Linux turns stamping
        // on in deferred work: until it has run, a datagram is stamped when
        // it is read. A running server's first packets only are affected.
        std::thread::sleep(Duration::from_millis(100));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent_at = Instant::now();
        tx.send_to(b"ping", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(150));
        rx.readable().await.unwrap();
        let mut buf = [0u8; 64];
        let mut cmsg = cmsg_buffer();
        let (n, from, at) = try_recv(&rx, &mut buf, &mut cmsg).unwrap();
        let read_at = Instant::now();
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(from, tx.local_addr().unwrap());
        assert!(
            at < sent_at + Duration::from_millis(50),
            "arrival {:?} after sending, read {:?} after",
            at - sent_at,
            read_at - sent_at
        );
        assert!(matches!(
            try_recv(&rx, &mut buf, &mut cmsg),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    }
}
