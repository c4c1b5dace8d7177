//! The SFU's configuration. The composition root fills it (from its own clap
//! `Config`); the defaults work on a laptop.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How the SFU listens and paces itself.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Address of the one UDP socket every participant's ICE/DTLS/SRTP goes
    /// through. Default `0.0.0.0:50000`; port 0 picks a free one.
    pub udp_bind: SocketAddr,
    /// Address of the one TCP listener for ICE-TCP (RFC 6544, passive
    /// candidates only), for stations whose UDP is blocked. `None` (the
    /// default): no TCP candidate. Port 0 picks a free one.
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
    /// Most ICE-TCP connections open at once; more are closed on accept.
    /// Default 1024 (a participant needs one).
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
    /// A configuration for tests: loopback, an ephemeral UDP port, no TCP,
    /// short ICE timeouts.
    pub fn loopback() -> Self {
        Self {
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
