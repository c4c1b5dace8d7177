//! Configuration: flags and `TELEHEALTH_*` environment variables.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Everything the server reads at start. Defaults run on a laptop: HTTP on
/// 127.0.0.1:8080 and an SQLite file under `./data`.
///
/// Not `Debug`: it holds secrets (the JWT key, a database password in the
/// URL, the TURN secret) that must never reach a log.
#[derive(Clone, clap::Parser)]
#[command(
    name = "telehealth",
    version,
    about = "Telehealth consultation server (signaling, SFU, records)",
    // The doc comment above is for the code's readers, not for `--help`.
    long_about = None
)]
pub struct Config {
    /// Address and port for HTTP (or HTTPS when a certificate is given).
    #[arg(long, env = "TELEHEALTH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Directory for the SQLite database and the generated JWT key.
    #[arg(long, env = "TELEHEALTH_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://path` or `postgres://user:pass@host/db`.
    /// Default: `sqlite://<data-dir>/telehealth.db`.
    #[arg(long, env = "TELEHEALTH_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Secret for signing login tokens (HS256), at least 32 bytes. Default:
    /// a random key generated once into `<data-dir>/jwt.key` (mode 0600).
    /// All nodes of a multi-node deployment must share it.
    #[arg(long, env = "TELEHEALTH_JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<String>,

    /// PEM certificate chain: serve HTTPS directly (browsers allow camera
    /// access only on HTTPS or localhost).
    #[arg(long, env = "TELEHEALTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "TELEHEALTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// IP address announced to browsers for media (ICE host candidates).
    /// Default: the HTTP address's IP.
    #[arg(long, env = "TELEHEALTH_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,

    /// Media engines, each on its own thread with its own media port; a
    /// consultation's call lives on one of them. Default: one per core this
    /// process may use. Set it in a deployment, so that the ports to open
    /// do not change with the machine.
    #[arg(long, env = "TELEHEALTH_MEDIA_ENGINES",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub media_engines: Option<u16>,

    /// First UDP port for media (ICE UDP mux), on the HTTP address's IP:
    /// engine `i` uses this port plus `i`, so open
    /// `port` to `port + engines - 1`. 0 picks free ports.
    #[arg(long, env = "TELEHEALTH_MEDIA_UDP_PORT", default_value_t = 50000)]
    pub media_udp_port: u16,

    /// First TCP port for ICE-TCP, for stations whose UDP is blocked
    /// (browsers use it only when UDP fails); one per engine, like the UDP
    /// ports. Default: the same numbers as `--media-udp-port` (TCP and UDP
    /// ports are separate; free ones when that is 0). `0` turns ICE-TCP off.
    #[arg(long, env = "TELEHEALTH_MEDIA_TCP_PORT")]
    pub media_tcp_port: Option<u16>,

    /// TURN server URLs handed to browsers, each with a time-limited
    /// credential (repeat the flag; comma-separated in the variable), e.g.
    /// `turn:turn.example.vn:3479?transport=udp`,
    /// `turn:turn.example.vn:3479?transport=tcp`,
    /// `turns:turn.example.vn:443?transport=tcp`. `stun:` URLs are handed
    /// out as they are. Needs `--turn-secret`.
    #[arg(long = "turn-url", env = "TELEHEALTH_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Vec<String>,

    /// Secret shared with coturn (`static-auth-secret`, with
    /// `use-auth-secret`), at least 16 characters: TURN credentials are
    /// `HMAC-SHA1(secret, "<expiry>:<user id>")`. Set it in the environment
    /// rather than on the command line; it is never logged.
    #[arg(long, env = "TELEHEALTH_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<crate::turn::TurnSecret>,

    /// Seconds a TURN credential stays valid after it is handed out (on each
    /// socket open and join). coturn refuses to refresh an allocation with an
    /// expired credential, so keep it longer than the longest call.
    #[arg(long, env = "TELEHEALTH_TURN_TTL", default_value_t = 14400)]
    pub turn_ttl: u64,

    /// Seconds a participant's place in a call is kept while its page is
    /// away (network lost, page reloaded): within it the page comes back into
    /// the same call by itself. 30 to 3600.
    #[arg(long, env = "TELEHEALTH_SEAT_HOLD_SECS", default_value_t = 180,
          value_parser = clap::value_parser!(u64).range(30..=3600))]
    pub seat_hold_secs: u64,

    /// This node's id in a deployment of several nodes on one PostgreSQL
    /// database (unique among them; a second live process with the same id
    /// is refused). Default: the machine's host name (a StatefulSet pod's
    /// name in Kubernetes).
    #[arg(long, env = "TELEHEALTH_NODE_ID")]
    pub node_id: Option<String>,

    /// Where the other nodes reach this node's HTTP, plain `http://`, on the
    /// deployment's internal network: a page's call socket that reaches
    /// another node is forwarded here when this node hosts the call (media
    /// itself goes straight to this node's media ports). Default:
    /// `http://<--public-ip or the HTTP address>:<HTTP port>`.
    #[arg(long, env = "TELEHEALTH_NODE_URL")]
    pub node_url: Option<String>,

    /// Seconds without a heartbeat (renewed every third of it) after which
    /// a node is taken for dead and its calls are placed on another node at
    /// their next join; a node that cannot renew its own for that long stops
    /// serving its calls. 3 to 60.
    #[arg(long, env = "TELEHEALTH_NODE_DEAD_AFTER_SECS", default_value_t = 6,
          value_parser = clap::value_parser!(u64).range(3..=60))]
    pub node_dead_after_secs: u64,

    /// Draining (on SIGUSR1, before an upgrade): this node takes no new
    /// calls and keeps the ones it hosts until they end or this many seconds
    /// pass, then hands the rest to other nodes (their pages reconnect by
    /// themselves) and stops. 0 to 86400.
    #[arg(long, env = "TELEHEALTH_DRAIN_DEADLINE_SECS", default_value_t = 1800,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub drain_deadline_secs: u64,

    /// Where Prometheus reads the metrics (`/metrics`, text format): an
    /// address and port of their own, never the public HTTP port. `off`
    /// turns them off. Default: `127.0.0.1:9464`, this machine only (skipped
    /// with a warning when that port is taken). Serve them beyond loopback
    /// only on a private network, with `--metrics-token`.
    #[arg(long, env = "TELEHEALTH_METRICS_ADDR")]
    pub metrics_addr: Option<String>,

    /// A bearer token Prometheus must send for the metrics
    /// (`authorization: credentials_file` in its scrape config). Set it in
    /// the environment; it is never logged.
    #[arg(long, env = "TELEHEALTH_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Take the client address from `X-Forwarded-For` (only behind a reverse
    /// proxy that sets it; otherwise clients could forge their address).
    #[arg(long, env = "TELEHEALTH_TRUST_PROXY", default_value_t = false)]
    pub trust_proxy: bool,

    /// Seed a demo province (two hospitals, four stations, their staff) and
    /// print the demo passwords.
    #[arg(long, env = "TELEHEALTH_DEMO", default_value_t = false)]
    pub demo: bool,

    /// Log format: `text` or `json`.
    #[arg(long, env = "TELEHEALTH_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    /// Minutes an access token lives; the browser refreshes it silently.
    #[arg(long, env = "TELEHEALTH_ACCESS_TOKEN_MINUTES", default_value_t = 15)]
    pub access_token_minutes: i64,

    /// Hours a login lasts without activity (refresh-token lifetime).
    #[arg(long, env = "TELEHEALTH_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: i64,
}

impl Config {
    /// The SFU's settings, derived from ours.
    pub fn sfu_config(&self) -> telehealth_sfu::SfuConfig {
        telehealth_sfu::SfuConfig {
            engines: self.media_engines.map_or(0, usize::from),
            udp_bind: std::net::SocketAddr::new(self.http_addr.ip(), self.media_udp_port),
            tcp_bind: match self.media_tcp_port.unwrap_or(self.media_udp_port) {
                0 if self.media_tcp_port.is_some() => None,
                port => Some(std::net::SocketAddr::new(self.http_addr.ip(), port)),
            },
            public_ip: self.public_ip,
            ..Default::default()
        }
    }

    /// This node's id (see `--node-id`).
    pub fn node_id(&self) -> String {
        if let Some(id) = self.node_id.as_ref().filter(|s| !s.trim().is_empty()) {
            return id.trim().to_owned();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".to_owned())
    }

    /// Where other nodes reach this one (see `--node-url`), for the HTTP
    /// address actually bound.
    pub fn node_url(&self, bound: std::net::SocketAddr) -> String {
        if let Some(u) = self.node_url.as_ref().filter(|s| !s.trim().is_empty()) {
            return u.trim().trim_end_matches('/').to_owned();
        }
        let ip = match (bound.ip(), self.public_ip) {
            (ip, Some(public)) if ip.is_unspecified() => public,
            (ip, _) => ip,
        };
        format!("http://{}", std::net::SocketAddr::new(ip, bound.port()))
    }

    /// The metrics' bearer token, if one is set (an empty one is none).
    pub fn metrics_token(&self) -> Option<&str> {
        self.metrics_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => default_database_url(&self.data_dir),
        }
    }

    /// The ICE servers to hand to pages, checked.
    pub fn ice_servers(&self) -> Result<crate::turn::IceServers, crate::turn::TurnConfigError> {
        crate::turn::IceServers::new(
            &self.turn_urls,
            self.turn_secret.clone(),
            std::time::Duration::from_secs(self.turn_ttl),
        )
    }
}

/// The metrics' port when `--metrics-addr` is not given (the port
/// Prometheus's exporters conventionally take for an application's own).
pub const DEFAULT_METRICS_PORT: u16 = 9464;

/// The SQLite file under the data directory, used when no `--database-url`
/// is given (also by `telehealth backup` and `restore`).
pub fn default_database_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("telehealth.db").display())
}
