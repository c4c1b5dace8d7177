//! Prometheus metrics: what a province's IT staff need to see the system
//! running (calls, load, quality, errors), in the text exposition format.
//!
//! # Model
//! Counters and histograms that code on the request and media paths bumps
//! live in one process-wide [`Metrics`] ([`global`]); gauges (rooms, states,
//! the pool) are read when Prometheus scrapes ([`render`]). Labels come from
//! closed sets only: a route template, a method, a status, an engine's
//! index, a station's facility id. No patient, no user, no consultation is
//! ever a label or a value.
//!
//! # Where it is served
//! On its own listener (`--metrics-addr`, default `127.0.0.1:9464`, loopback
//! only), never on the public HTTP port; `--metrics-token` also asks for a
//! bearer token ([`serve`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use telehealth_records::{ConsultationId, FacilityId, Role};
use telehealth_sfu::{Direction, StatsSample};

use crate::state::AppState;

/// Seconds: HTTP request durations.
const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Seconds: from a join's offer to its media connected.
const JOIN_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0];
/// A ratio (0.05 is 5 %): packet loss over one stats sample.
const LOSS_BUCKETS: &[f64] = &[0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
/// Seconds: round-trip time of one stats sample.
const RTT_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0];

/// A station's latest quality is dropped this long after its last sample
/// (its call ended): an alert on it then clears instead of firing forever.
const STATION_STALE: Duration = Duration::from_secs(30);
/// A join that never connected is forgotten after this long.
const JOIN_FORGOTTEN: Duration = Duration::from_secs(120);
/// Joins waiting for their media at once (a bound on the map, not on calls).
const JOINS_PENDING_MAX: usize = 10_000;

/// A monotonically increasing count.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Observations counted into fixed buckets.
#[derive(Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, not cumulative; cumulated when rendered.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Which side of a call a participant is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The commune station (health workers).
    Station,
    /// The hospital (doctors).
    Hospital,
}

impl Side {
    pub fn of(role: Role) -> Option<Side> {
        match role {
            Role::HealthWorker => Some(Side::Station),
            Role::Doctor => Some(Side::Hospital),
            Role::Admin => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Side::Station => "station",
            Side::Hospital => "hospital",
        }
    }
}

/// Uplink: what the participant sends to the server; downlink: what the
/// server sends to it.
fn link(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "uplink",
        Direction::Outbound => "downlink",
    }
}

/// One participant's figures of one stats sample, per direction, with
/// the cumulative counters already turned into this interval's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleFigures {
    /// (lost, expected) packets: uplink (expected: received by the server
    /// and lost on the way), downlink (expected: sent by the server; lost:
    /// as the participant's reports say).
    pub packets: [(u64, u64); 2],
    /// NACKs and PLIs this interval: uplink (sent to the participant about
    /// what it sends), downlink (received from it about what it gets).
    pub nacks: [u64; 2],
    pub plis: [u64; 2],
    pub rtt: Option<f64>,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

/// What a station's link did in its latest sample.
#[derive(Clone)]
struct StationNow {
    name: std::sync::Arc<str>,
    loss: [Option<f64>; 2],
    rtt: Option<f64>,
    at: Instant,
}

/// The process's counters and histograms.
pub struct Metrics {
    started: SystemTime,
    started_at: Instant,
    http: Mutex<BTreeMap<(&'static str, String, u16), Histogram>>,
    join_seconds: Mutex<Histogram>,
    /// (side, direction) → loss ratio per sample.
    loss: Mutex<BTreeMap<(Side, usize), Histogram>>,
    rtt: Mutex<BTreeMap<Side, Histogram>>,
    /// (side, direction) → count.
    nacks: Mutex<BTreeMap<(Side, usize), u64>>,
    plis: Mutex<BTreeMap<(Side, usize), u64>>,
    pub login_failures: Counter,
    pub login_throttled: Counter,
    pub database_errors: Counter,
    pub websocket_opened: Counter,
    /// Joins waiting for their media, since when.
    joins: Mutex<HashMap<(ConsultationId, String), Instant>>,
    /// Each live room's station, with its name.
    rooms: Mutex<HashMap<ConsultationId, (FacilityId, std::sync::Arc<str>)>>,
    stations: Mutex<HashMap<FacilityId, StationNow>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// This process's metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            started: SystemTime::now(),
            started_at: Instant::now(),
            http: Mutex::default(),
            join_seconds: Mutex::new(Histogram::new(JOIN_BUCKETS)),
            loss: Mutex::default(),
            rtt: Mutex::default(),
            nacks: Mutex::default(),
            plis: Mutex::default(),
            login_failures: Counter::default(),
            login_throttled: Counter::default(),
            database_errors: Counter::default(),
            websocket_opened: Counter::default(),
            joins: Mutex::default(),
            rooms: Mutex::default(),
            stations: Mutex::default(),
        }
    }

    /// One HTTP request served: `route` is the matched template (or
    /// `unmatched`), never the path itself (ids would make endless series).
    pub fn http_request(&self, method: &axum::http::Method, route: &str, status: u16, took: Duration) {
        let method = match method.as_str() {
            "GET" => "GET",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "HEAD" => "HEAD",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        lock(&self.http)
            .entry((method, route.to_owned(), status))
            .or_insert_with(|| Histogram::new(HTTP_BUCKETS))
            .observe(took.as_secs_f64());
    }

    /// A participant's call at `station` (named `station_name`) sent its
    /// offer (`started`) and was answered: its join time runs until
    /// [`Self::media_connected`].
    pub fn join_started(
        &self,
        c: ConsultationId,
        station: FacilityId,
        station_name: &str,
        participant: &str,
        started: Instant,
    ) {
        lock(&self.rooms).insert(c, (station, std::sync::Arc::from(station_name)));
        let mut joins = lock(&self.joins);
        if joins.len() >= JOINS_PENDING_MAX {
            joins.retain(|_, t| t.elapsed() < JOIN_FORGOTTEN);
            if joins.len() >= JOINS_PENDING_MAX {
                return;
            }
        }
        joins.insert((c, participant.to_owned()), started);
    }

    /// A participant's media connection is up: its join time, if it was
    /// joining.
    pub fn media_connected(&self, c: ConsultationId, participant: &str) {
        let started = lock(&self.joins).remove(&(c, participant.to_owned()));
        if let Some(t) = started.filter(|t| t.elapsed() < JOIN_FORGOTTEN) {
            lock(&self.join_seconds).observe(t.elapsed().as_secs_f64());
        }
    }

    /// The room of `c` closed.
    pub fn room_closed(&self, c: ConsultationId) {
        lock(&self.rooms).remove(&c);
        lock(&self.joins).retain(|(room, _), _| *room != c);
    }

    /// One participant's stats sample, as figures of this interval.
    pub fn sample(&self, c: ConsultationId, role: Option<Role>, f: &SampleFigures) {
        let Some(side) = role.and_then(Side::of) else {
            return;
        };
        let mut loss_now = [None, None];
        {
            let mut loss = lock(&self.loss);
            for (i, (lost, expected)) in f.packets.iter().enumerate() {
                if *expected == 0 {
                    continue;
                }
                let ratio = (*lost as f64 / *expected as f64).min(1.0);
                loss_now[i] = Some(ratio);
                loss.entry((side, i))
                    .or_insert_with(|| Histogram::new(LOSS_BUCKETS))
                    .observe(ratio);
            }
        }
        if let Some(rtt) = f.rtt {
            lock(&self.rtt)
                .entry(side)
                .or_insert_with(|| Histogram::new(RTT_BUCKETS))
                .observe(rtt);
        }
        for (map, counts) in [(&self.nacks, f.nacks), (&self.plis, f.plis)] {
            let mut m = lock(map);
            for (i, n) in counts.iter().enumerate() {
                *m.entry((side, i)).or_default() += n;
            }
        }
        if side == Side::Station {
            let station = lock(&self.rooms).get(&c).cloned();
            if let Some((station, name)) = station {
                lock(&self.stations).insert(
                    station,
                    StationNow {
                        name,
                        loss: loss_now,
                        rtt: f.rtt,
                        at: Instant::now(),
                    },
                );
            }
        }
    }

    /// How many joins have been timed (tests).
    pub fn joins_timed(&self) -> u64 {
        lock(&self.join_seconds).count()
    }
}

/// Times each request and counts it under its route template. Installed
/// as a route layer, so that the matched path is known.
pub async fn track_http(req: Request<axum::body::Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let resp = next.run(req).await;
    global().http_request(&method, &route, resp.status().as_u16(), started.elapsed());
    resp
}

/// Counts requests no route matched (scanners, stale bookmarks), as
/// `unmatched`: installed outside the router, it sees the fallback's answer.
pub async fn track_unmatched(req: Request<axum::body::Body>, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let resp = next.run(req).await;
    if resp.extensions().get::<Tracked>().is_none() {
        global().http_request(&method, "unmatched", resp.status().as_u16(), started.elapsed());
    }
    resp
}

/// Marks a response [`track_http`] counted already.
#[derive(Clone, Copy)]
pub struct Tracked;

/// [`track_http`], marking what it counted.
pub async fn track_matched(req: Request<axum::body::Body>, next: Next) -> Response {
    let mut resp = track_http(req, next).await;
    resp.extensions_mut().insert(Tracked);
    resp
}

// ---- rendering -----------------------------------------------------------

/// Text exposition format (version 0.0.4).
struct Out(String);

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn labels(l: &[(&str, &str)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let inner: Vec<String> = l.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", inner.join(","))
}

fn num(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.is_nan() {
        "NaN".to_owned()
    } else {
        format!("{v}")
    }
}

impl Out {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, l: &[(&str, &str)], v: f64) {
        let _ = writeln!(self.0, "{name}{} {}", labels(l), num(v));
    }

    fn histogram(&mut self, name: &str, l: &[(&str, &str)], h: &Histogram) {
        let mut cumulative = 0u64;
        for (b, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n;
            let le = num(*b);
            let mut with = l.to_vec();
            with.push(("le", &le));
            self.sample(&format!("{name}_bucket"), &with, cumulative as f64);
        }
        let mut with = l.to_vec();
        with.push(("le", "+Inf"));
        self.sample(&format!("{name}_bucket"), &with, h.count as f64);
        self.sample(&format!("{name}_sum"), l, h.sum);
        self.sample(&format!("{name}_count"), l, h.count as f64);
    }
}

/// Everything, as Prometheus reads it: the process's counters and what the
/// node, its engines and the database hold now.
pub async fn render(state: &AppState) -> String {
    let m = global();
    let mut o = Out(String::with_capacity(16 * 1024));
    let node = state.cluster.id.as_str();

    o.head("telehealth_build_info", "gauge", "The running version (value 1).");
    o.sample(
        "telehealth_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            (
                "database",
                match state.store.backend() {
                    telehealth_records::Backend::Sqlite => "sqlite",
                    telehealth_records::Backend::Postgres => "postgres",
                },
            ),
            ("node", node),
        ],
        1.0,
    );
    o.head(
        "telehealth_process_start_time_seconds",
        "gauge",
        "When this process started, seconds since the Unix epoch.",
    );
    o.sample(
        "telehealth_process_start_time_seconds",
        &[],
        m.started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs() as f64),
    );

    // The database: counts by state, the pool, reachability.
    let counts = if state.store.unreachable() {
        None
    } else {
        tokio::time::timeout(Duration::from_secs(2), state.store.consultation_counts())
            .await
            .ok()
            .and_then(Result::ok)
    };
    o.head(
        "telehealth_database_up",
        "gauge",
        "0 while this node finds its database unreachable (checked every second on a connection of its own), 1 otherwise.",
    );
    o.sample(
        "telehealth_database_up",
        &[],
        f64::from(u8::from(!state.store.unreachable())),
    );
    if let Some(counts) = &counts {
        o.head(
            "telehealth_consultations",
            "gauge",
            "Consultations in the database by state (every node reports the whole database).",
        );
        for (s, n) in counts {
            o.sample("telehealth_consultations", &[("state", s.as_str())], *n as f64);
        }
    }
    let pool = state.store.pool();
    o.head(
        "telehealth_database_connections",
        "gauge",
        "Database pool connections, by state (in_use, idle).",
    );
    let (size, idle) = (pool.size(), pool.num_idle() as u32);
    o.sample(
        "telehealth_database_connections",
        &[("state", "in_use")],
        f64::from(size.saturating_sub(idle)),
    );
    o.sample(
        "telehealth_database_connections",
        &[("state", "idle")],
        f64::from(idle),
    );
    o.head(
        "telehealth_database_connections_max",
        "gauge",
        "The database pool's size limit.",
    );
    o.sample(
        "telehealth_database_connections_max",
        &[],
        f64::from(pool.options().get_max_connections()),
    );
    o.head(
        "telehealth_database_errors_total",
        "counter",
        "Database operations that failed (unreachable, disk full, other errors), not counting refusals such as duplicates.",
    );
    o.sample(
        "telehealth_database_errors_total",
        &[],
        m.database_errors.get() as f64,
    );

    // The node.
    o.head(
        "telehealth_node_heartbeat_age_seconds",
        "gauge",
        "Seconds since this node last renewed its heartbeat in the database (since it started, if never).",
    );
    o.sample(
        "telehealth_node_heartbeat_age_seconds",
        &[("node", node)],
        state
            .cluster
            .heartbeat_age()
            .unwrap_or_else(|| m.started_at.elapsed())
            .as_secs_f64(),
    );
    o.head(
        "telehealth_node_draining",
        "gauge",
        "1 while this node drains (takes no new calls).",
    );
    o.sample(
        "telehealth_node_draining",
        &[("node", node)],
        f64::from(u8::from(state.cluster.draining())),
    );
    o.head(
        "telehealth_node_fenced",
        "gauge",
        "1 while this node serves no call because it could not prove it is alive.",
    );
    o.sample(
        "telehealth_node_fenced",
        &[("node", node)],
        f64::from(u8::from(state.cluster.fenced())),
    );

    // Media: rooms and participants now, counters since start, per engine.
    let engines = state.calls.sfu.engines();
    o.head(
        "telehealth_rooms",
        "gauge",
        "Calls (rooms) open on each media engine.",
    );
    for (i, e) in engines.iter().enumerate() {
        let i = i.to_string();
        o.sample(
            "telehealth_rooms",
            &[("node", node), ("engine", &i)],
            e.rooms as f64,
        );
    }
    o.head(
        "telehealth_participants",
        "gauge",
        "Participants connected to each media engine.",
    );
    for (i, e) in engines.iter().enumerate() {
        let i = i.to_string();
        o.sample(
            "telehealth_participants",
            &[("node", node), ("engine", &i)],
            e.participants as f64,
        );
    }
    if let Ok(Ok(counters)) =
        tokio::time::timeout(Duration::from_secs(2), state.calls.sfu.engine_counters()).await
    {
        type Field = fn(&telehealth_sfu::EngineCounters) -> u64;
        let families: [(&str, &str, Field); 7] = [
            (
                "telehealth_media_datagrams_received_total",
                "UDP datagrams received on the engine's media port.",
                |c| c.datagrams_in,
            ),
            (
                "telehealth_media_datagrams_dropped_total",
                "Datagrams dropped: from no known participant, or refused by its connection.",
                |c| c.datagrams_unrouted + c.datagrams_rejected,
            ),
            (
                "telehealth_media_packets_forwarded_total",
                "RTP packets forwarded to subscribers.",
                |c| c.rtp_forwarded,
            ),
            (
                "telehealth_media_bytes_forwarded_total",
                "RTP payload bytes forwarded to subscribers.",
                |c| c.rtp_forwarded_bytes,
            ),
            (
                "telehealth_media_keyframe_requests_total",
                "Keyframe requests (PLI) the server sent to publishers.",
                |c| c.keyframe_requests,
            ),
            (
                "telehealth_media_tcp_connections_total",
                "ICE-TCP connections accepted (stations whose UDP is blocked).",
                |c| c.tcp_connections,
            ),
            (
                "telehealth_media_slow_turns_total",
                "Engine loop turns that took 50 ms or more (every packet of the engine waited).",
                |c| c.slow_turns,
            ),
        ];
        for (name, help, field) in families {
            o.head(name, "counter", help);
            for (i, c) in counters.iter().enumerate() {
                let i = i.to_string();
                o.sample(name, &[("node", node), ("engine", &i)], field(c) as f64);
            }
        }
    }

    // Quality, from the stats samples.
    o.head(
        "telehealth_packet_loss_ratio",
        "histogram",
        "Packet loss per stats sample (0.05 is 5 %), by side (station, hospital) and direction (uplink: sent by the participant; downlink: sent to it).",
    );
    for ((side, d), h) in lock(&m.loss).iter() {
        let dir = if *d == 0 { "uplink" } else { "downlink" };
        o.histogram(
            "telehealth_packet_loss_ratio",
            &[("side", side.as_str()), ("direction", dir)],
            h,
        );
    }
    o.head(
        "telehealth_rtt_seconds",
        "histogram",
        "Round-trip time between the server and a participant per stats sample, by side.",
    );
    for (side, h) in lock(&m.rtt).iter() {
        o.histogram("telehealth_rtt_seconds", &[("side", side.as_str())], h);
    }
    for (name, help, map) in [
        (
            "telehealth_nacks_total",
            "Retransmission requests (NACK): uplink, NACK messages the server sent a participant about what it sends; downlink, packets a participant asked the server to send again.",
            &m.nacks,
        ),
        (
            "telehealth_plis_total",
            "Keyframe requests (PLI/FIR): uplink, sent to a participant; downlink, received from one.",
            &m.plis,
        ),
    ] {
        o.head(name, "counter", help);
        for ((side, d), n) in lock(map).iter() {
            let dir = if *d == 0 { "uplink" } else { "downlink" };
            o.sample(name, &[("side", side.as_str()), ("direction", dir)], *n as f64);
        }
    }
    // Rooms that closed while a join was on its way, and joins that never
    // connected, are let go here.
    lock(&m.rooms).retain(|c, _| state.calls.has_room(*c));
    lock(&m.joins).retain(|_, t| t.elapsed() < JOIN_FORGOTTEN);
    let stations: Vec<(FacilityId, StationNow)> = {
        let mut s = lock(&m.stations);
        s.retain(|_, v| v.at.elapsed() < STATION_STALE);
        let mut v: Vec<_> = s.iter().map(|(k, v)| (*k, v.clone())).collect();
        v.sort_by_key(|(k, _)| k.to_string());
        v
    };
    o.head(
        "telehealth_station_packet_loss_ratio",
        "gauge",
        "A commune station's packet loss in its latest stats sample, by direction, while it is in a call (station: the facility id).",
    );
    for (id, now) in &stations {
        let name: &str = &now.name;
        let id = id.to_string();
        for (i, loss) in now.loss.iter().enumerate() {
            if let Some(l) = loss {
                let dir = if i == 0 { "uplink" } else { "downlink" };
                o.sample(
                    "telehealth_station_packet_loss_ratio",
                    &[("station", &id), ("station_name", name), ("direction", dir)],
                    *l,
                );
            }
        }
    }
    o.head(
        "telehealth_station_rtt_seconds",
        "gauge",
        "A commune station's round-trip time in its latest stats sample, while it is in a call.",
    );
    for (id, now) in &stations {
        if let Some(rtt) = now.rtt {
            let name: &str = &now.name;
            o.sample(
                "telehealth_station_rtt_seconds",
                &[("station", &id.to_string()), ("station_name", name)],
                rtt,
            );
        }
    }
    o.head(
        "telehealth_join_seconds",
        "histogram",
        "From a page's join (its offer) to its media connected.",
    );
    o.histogram("telehealth_join_seconds", &[], &lock(&m.join_seconds));

    // HTTP, sockets, logins.
    o.head(
        "telehealth_http_request_duration_seconds",
        "histogram",
        "HTTP requests by method, route template and status.",
    );
    for ((method, route, status), h) in lock(&m.http).iter() {
        let status = status.to_string();
        o.histogram(
            "telehealth_http_request_duration_seconds",
            &[("method", method), ("route", route), ("status", &status)],
            h,
        );
    }
    o.head(
        "telehealth_websocket_connections",
        "gauge",
        "WebSocket connections open now (call and live-update sockets).",
    );
    o.sample(
        "telehealth_websocket_connections",
        &[],
        state.sockets.total() as f64,
    );
    o.head(
        "telehealth_websocket_connections_opened_total",
        "counter",
        "WebSocket connections opened since start.",
    );
    o.sample(
        "telehealth_websocket_connections_opened_total",
        &[],
        m.websocket_opened.get() as f64,
    );
    o.head(
        "telehealth_login_failures_total",
        "counter",
        "Wrong passwords (logins and password confirmations).",
    );
    o.sample(
        "telehealth_login_failures_total",
        &[],
        m.login_failures.get() as f64,
    );
    o.head(
        "telehealth_login_throttled_total",
        "counter",
        "Login attempts refused by the lockout after repeated failures.",
    );
    o.sample(
        "telehealth_login_throttled_total",
        &[],
        m.login_throttled.get() as f64,
    );
    o.0
}

/// `GET /metrics` on the metrics listener.
async fn metrics(
    State((state, token)): State<(AppState, Option<std::sync::Arc<str>>)>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            use sha2::Digest;
            // Compared as digests: the time taken does not tell how much
            // of a guess was right.
            sha2::Sha256::digest(g.as_bytes()) == sha2::Sha256::digest(token.as_bytes())
        });
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the bearer token set with --metrics-token\n",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        render(&state).await,
    )
        .into_response()
}

/// The metrics listener's application: `/metrics` only.
pub fn router(state: AppState, token: Option<String>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "metrics are at /metrics\n") })
        .with_state((state, token.map(std::sync::Arc::from)))
}

/// Serves the metrics on `listener` until the server stops.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState, token: Option<String>) {
    let stop = crate::stopped(state.shutdown.clone());
    let app = router(state, token);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::warn!(error = %e, "the metrics listener stopped");
    }
}

/// Per-track memory of cumulative counters, so that each sample's figures
/// are the interval's.
#[derive(Default)]
pub struct Seen {
    lost: i64,
    nacks: u64,
    plis: u64,
}

/// Turns a sample's cumulative per-track counters into this interval's,
/// per direction. `seen` remembers each track's last values.
pub fn figures(s: &StatsSample, seen: &mut HashMap<String, Seen>) -> SampleFigures {
    let mut f = SampleFigures {
        rtt: s.rtt_s,
        ..Default::default()
    };
    for t in &s.tracks {
        let i = dir_index(t.direction);
        let key = format!("{}:{}", t.track, link(t.direction));
        let prev = seen.entry(key).or_default();
        let lost = (t.packets_lost - prev.lost).max(0) as u64;
        f.packets[i].0 += lost;
        // Inbound: `packets` arrived, `lost` did not. Outbound: `packets`
        // were sent, and the participant's reports say `lost` of them never
        // arrived.
        f.packets[i].1 += match t.direction {
            Direction::Inbound => t.packets + lost,
            Direction::Outbound => t.packets.max(lost),
        };
        f.nacks[i] += t.nacks.saturating_sub(prev.nacks);
        f.plis[i] += t.plis.saturating_sub(prev.plis);
        *prev = Seen {
            lost: t.packets_lost,
            nacks: t.nacks,
            plis: t.plis,
        };
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_renders_cumulative_buckets_with_sum_and_count() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 3.0, f64::NAN] {
            h.observe(v);
        }
        let mut o = Out(String::new());
        o.histogram("x", &[("a", "b")], &h);
        assert_eq!(
            o.0,
            "x_bucket{a=\"b\",le=\"0.1\"} 1\nx_bucket{a=\"b\",le=\"1\"} 3\nx_bucket{a=\"b\",le=\"+Inf\"} 4\n\
             x_sum{a=\"b\"} 4.25\nx_count{a=\"b\"} 4\n"
        );
    }

    fn track(direction: Direction, packets: u64, lost: i64, nacks: u64) -> telehealth_sfu::TrackStats {
        telehealth_sfu::TrackStats {
            track: telehealth_sfu::TrackId::new("t"),
            kind: telehealth_sfu::MediaKind::Video,
            direction,
            packets,
            bitrate_bps: 0,
            packets_lost: lost,
            jitter_s: None,
            nacks,
            plis: 0,
            layer: None,
            codec: "video/vp8".into(),
        }
    }

    fn stats(tracks: Vec<telehealth_sfu::TrackStats>) -> StatsSample {
        StatsSample {
            room: telehealth_sfu::RoomId::new("r"),
            participant: telehealth_sfu::ParticipantId::new("p"),
            at: SystemTime::now(),
            interval: Duration::from_secs(5),
            rtt_s: Some(0.05),
            send_estimate_bps: None,
            tracks,
        }
    }

    #[test]
    fn cumulative_counters_become_each_intervals_figures_per_direction() {
        let mut seen = HashMap::new();
        // Uplink: 95 arrived, 5 lost (of 100); downlink: 200 sent, the
        // participant reports 10 of them lost.
        let first = figures(
            &stats(vec![
                track(Direction::Inbound, 95, 5, 3),
                track(Direction::Outbound, 200, 10, 7),
            ]),
            &mut seen,
        );
        assert_eq!(first.packets, [(5, 100), (10, 200)]);
        assert_eq!(first.nacks, [3, 7]);
        // Next interval: loss and NACKs are cumulative, packets are not.
        let second = figures(
            &stats(vec![
                track(Direction::Inbound, 100, 5, 3),
                track(Direction::Outbound, 200, 30, 9),
            ]),
            &mut seen,
        );
        assert_eq!(second.packets, [(0, 100), (20, 200)]);
        assert_eq!(second.nacks, [0, 2]);
        let m = Metrics::new();
        let c = ConsultationId::new();
        m.join_started(c, FacilityId::new(), "Trạm B", "p", Instant::now());
        m.sample(c, Some(Role::HealthWorker), &second);
        let now = lock(&m.stations).values().next().cloned().unwrap();
        assert_eq!(now.loss, [Some(0.0), Some(0.1)], "uplink clean, downlink 10 %");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(labels(&[("r", "a\"b\\c\nd")]), "{r=\"a\\\"b\\\\c\\nd\"}");
    }

    #[test]
    fn a_station_without_samples_for_a_while_is_dropped_and_joins_time_once() {
        let m = Metrics::new();
        let c = ConsultationId::new();
        let station = FacilityId::new();
        m.join_started(c, station, "Trạm A", "p1", Instant::now());
        m.media_connected(c, "p1");
        m.media_connected(c, "p1");
        assert_eq!(
            m.joins_timed(),
            1,
            "a second connected (an ICE restart) is not a join"
        );
        let f = SampleFigures {
            packets: [(5, 100), (0, 100)],
            nacks: [1, 2],
            plis: [0, 1],
            rtt: Some(0.2),
        };
        m.sample(c, Some(Role::HealthWorker), &f);
        assert_eq!(lock(&m.stations).len(), 1);
        assert_eq!(lock(&m.stations)[&station].loss, [Some(0.05), Some(0.0)]);
        m.sample(c, Some(Role::Admin), &f);
        assert_eq!(lock(&m.nacks).values().sum::<u64>(), 3, "admins are on no side");
        m.room_closed(c);
        assert!(lock(&m.rooms).is_empty());
    }
}
