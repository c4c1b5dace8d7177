//! The SFU's configuration. The composition root fills it (from its own clap
//! `Config`); the defaults work on a laptop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How the SFU listens and paces itself.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// How many media engines run, each on its own thread with its own
    /// sockets and timers; a room lives on one of them. `0` (the default):
    /// one per core this process may use.
    pub engines: usize,
    /// Address of the first engine's UDP socket, which every participant of
    /// its rooms shares for ICE/DTLS/SRTP; engine `i` binds the next ports,
    /// `port + i` (so the firewall opens `port` to `port + engines - 1`).
    /// Default `0.0.0.0:50000`; port 0 gives every engine a free port.
    pub udp_bind: SocketAddr,
    /// Address of the first engine's TCP listener for ICE-TCP (RFC 6544,
    /// passive candidates only), for stations whose UDP is blocked; engine
    /// `i` listens on `port + i`. `None` (the default): no TCP candidate.
    /// Port 0 gives every engine a free port.
    pub tcp_bind: Option<SocketAddr>,
    /// The address put in our host candidates. Default: the bind address, or
    /// 127.0.0.1 when bound to the unspecified address.
    pub public_ip: Option<IpAddr>,
    /// ICE disconnected timeout (no traffic). Default 5 s.
    pub ice_disconnected_timeout: Duration,
    /// ICE failed timeout, after which the participant is removed
    /// ([`crate::CloseReason::ConnectionFailed`]). Default `None`: a
    /// connection never fails on its own. The owner holds a participant's
    /// seat while its path is down (minutes on a rural link: the path comes
    /// back, the client restarts ICE, or it rejoins into the seat) and
    /// removes it when that time is up.
    pub ice_failed_timeout: Option<Duration>,
    /// ICE keepalive interval (our consent checks). Default 1 s: after an
    /// outage the agent learns the path is back from the first answer.
    pub ice_keepalive_interval: Duration,
    /// Interval between stats samples per participant. Default 5 s.
    pub stats_interval: Duration,
    /// Minimum gap between keyframe requests sent to one publisher track. Default 300 ms.
    pub keyframe_min_interval: Duration,
    /// Most ICE-TCP connections open at once, over all engines (each takes
    /// its share); more are closed on accept. Default 1024 (a participant
    /// needs one).
    pub tcp_max_connections: usize,
    /// An ICE-TCP connection that receives nothing for this long is closed.
    /// Default 30 s (clients send consent checks every few seconds and
    /// RTCP every second, media far more often).
    pub tcp_idle_timeout: Duration,
    /// Send-side bandwidth estimation (TWCC feedback, GCC) on every outgoing
    /// leg; the estimate drives each subscriber's simulcast layer and appears
    /// in stats. Forwarded packets are not paced (see `engine/peer.rs`), so it
    /// adds no delay. Default on; off, a subscriber's REMB (if it sends one)
    /// drives the layer instead.
    pub bandwidth_estimation: bool,
    /// How offers to a participant are paced and sent again.
    pub negotiation: crate::negotiation::NegotiationConfig,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            engines: 0,
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 50000),
            tcp_bind: None,
            public_ip: None,
            ice_disconnected_timeout: Duration::from_secs(5),
            ice_failed_timeout: None,
            ice_keepalive_interval: Duration::from_secs(1),
            stats_interval: Duration::from_secs(5),
            keyframe_min_interval: crate::keyframe::DEFAULT_MIN_INTERVAL,
            tcp_max_connections: 1024,
            tcp_idle_timeout: Duration::from_secs(30),
            bandwidth_estimation: true,
            negotiation: crate::negotiation::NegotiationConfig::default(),
        }
    }
}

impl SfuConfig {
    /// The number of engines to run: [`Self::engines`], or one per core
    /// this process may use (its CPU affinity and cgroup quota) when 0.
    pub fn engine_count(&self) -> usize {
        match self.engines {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// A configuration for tests: two engines (whatever the machine, so
    /// that every test meets rooms on more than one), loopback, ephemeral
    /// UDP ports, no TCP, short ICE timeouts.
    pub fn loopback() -> Self {
        Self {
            engines: 2,
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tcp_bind: None,
            public_ip: None,
            ice_disconnected_timeout: Duration::from_secs(2),
            ice_failed_timeout: Some(Duration::from_secs(4)),
            ice_keepalive_interval: Duration::from_millis(500),
            ..Self::default()
        }
    }

    /// [`SfuConfig::loopback`] with ICE-TCP on an ephemeral loopback port too.
    pub fn loopback_with_tcp() -> Self {
        Self {
            tcp_bind: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)),
            ..Self::loopback()
        }
    }
}
