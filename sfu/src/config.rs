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
    /// The address put in our host candidate. Default: the bind address, or
    /// 127.0.0.1 when bound to the unspecified address.
    pub public_ip: Option<IpAddr>,
    /// ICE disconnected timeout (no traffic). Default 5 s.
    pub ice_disconnected_timeout: Duration,
    /// ICE failed timeout, after which the participant is removed. Default 15 s.
    pub ice_failed_timeout: Duration,
    /// ICE keepalive interval. Default 2 s.
    pub ice_keepalive_interval: Duration,
    /// Interval between stats samples per participant. Default 5 s.
    pub stats_interval: Duration,
    /// Minimum gap between keyframe requests sent to one publisher track. Default 300 ms.
    pub keyframe_min_interval: Duration,
    /// TURN/STUN server URLs handed to clients (not used by the SFU itself).
    pub ice_servers: Vec<String>,
    /// Send-side bandwidth estimation (TWCC feedback, GCC, pacer) on every
    /// outgoing leg; the estimate drives simulcast layer choice and appears in
    /// stats. Default off until measured against browsers: pacing adds queueing delay.
    pub bandwidth_estimation: bool,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 50000),
            public_ip: None,
            ice_disconnected_timeout: Duration::from_secs(5),
            ice_failed_timeout: Duration::from_secs(15),
            ice_keepalive_interval: Duration::from_secs(2),
            stats_interval: Duration::from_secs(5),
            keyframe_min_interval: crate::keyframe::DEFAULT_MIN_INTERVAL,
            ice_servers: Vec::new(),
            bandwidth_estimation: false,
        }
    }
}

impl SfuConfig {
    /// A configuration for tests: loopback, an ephemeral port, short ICE timeouts.
    pub fn loopback() -> Self {
        Self {
            udp_bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            public_ip: None,
            ice_disconnected_timeout: Duration::from_secs(2),
            ice_failed_timeout: Duration::from_secs(4),
            ice_keepalive_interval: Duration::from_millis(500),
            ..Self::default()
        }
    }
}
