//! The link's decisions, without sockets or clocks: for each datagram, given
//! the time it arrived and its size, whether it is lost (and why) or when it
//! leaves the link. Time is passed in, so the statistics are checked on a
//! hundred thousand datagrams in milliseconds and the timing on an imagined
//! clock; the relay tasks in `udp.rs` only move bytes and sleep.
//!
//! Per direction a datagram meets, in this order (netem's order):
//! 1. a blackout (everything lost, both ways);
//! 2. random loss, independent or in bursts (a two-state Gilbert model);
//! 3. a bottleneck of `rate_bps` with a drop-tail queue of at most `queue`
//!    of waiting — shared by every UDP flow of the link, as a cell's capacity
//!    is shared by everything the phone sends;
//! 4. a propagation delay plus uniform jitter.
//!
//! Keeping one flow's datagrams in order (a due time never earlier than the
//! previous one's) is the relay's job: order is per flow, the model is per
//! link.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The default [`Shape::queue`]: a generous 4G buffer (bufferbloat included).
pub const DEFAULT_QUEUE: Duration = Duration::from_millis(300);

/// Longest delay, jitter or queue the control API accepts: beyond an hour
/// it is a typo, and `Duration::from_secs_f64` would panic on absurd values.
const MAX_MS: f64 = 3_600_000.0;

/// How one direction of a link treats UDP datagrams. `Shape::default()` is
/// no impairment.
///
/// Every datagram is subject to it — STUN, DTLS and RTP alike. Impairing
/// only media (as [`crate::lossy`] does) is deliberately not offered: on a
/// real link the handshakes are lost too, and how long a call takes to
/// connect through loss is part of what the browser tests measure.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// Long-run share of datagrams lost, 0..=1. Default 0.
    pub loss: f64,
    /// Mean length of a loss burst, in datagrams. 1.0 (the default): each
    /// datagram is lost independently with probability `loss`. Above 1: a
    /// two-state Gilbert model that loses every datagram in its bad state,
    /// stays there `burst_len` datagrams on average and enters it just often
    /// enough that the long-run loss is still `loss` — how fading and cell
    /// edges lose packets.
    pub burst_len: f64,
    /// One-way propagation delay added to every datagram. Default 0.
    pub delay: Duration,
    /// Each datagram gets a further uniform random delay in `[0, jitter]`;
    /// datagrams of one flow never overtake each other, so a late one holds
    /// back those behind it (as a radio link's in-order delivery does).
    pub jitter: Duration,
    /// A bottleneck: datagrams (with their UDP/IP headers) leave at this
    /// many bits per second. `None` (default): no limit.
    pub rate_bps: Option<u64>,
    /// Longest a datagram may wait at the bottleneck before it is dropped
    /// instead (drop-tail). Only matters with `rate_bps`. Default 300 ms.
    pub queue: Duration,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            loss: 0.0,
            burst_len: 1.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_bps: None,
            queue: DEFAULT_QUEUE,
        }
    }
}

/// A [`Shape`] field that makes no sense, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeError {
    /// The field: as named in [`ShapeSpec`] (`loss`, `delay_ms`, …) when
    /// the shape came from there, else as named in [`Shape`].
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ShapeError {}

fn invalid(field: &'static str, reason: impl Into<String>) -> ShapeError {
    ShapeError {
        field,
        reason: reason.into(),
    }
}

impl Shape {
    /// Checks the fields make sense together (the model relies on it).
    pub fn validate(&self) -> Result<(), ShapeError> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(invalid(
                "loss",
                format!("{} is not a share between 0 and 1", self.loss),
            ));
        }
        if !(self.burst_len.is_finite() && self.burst_len >= 1.0) {
            return Err(invalid(
                "burst_len",
                format!("{} is not a mean burst of at least 1", self.burst_len),
            ));
        }
        // In the Gilbert model the gaps between bursts average
        // burst_len·(1−loss)/loss datagrams; below one there is no such chain.
        // (The tolerance lets the boundary, e.g. 80 % in bursts of 4, pass
        // despite rounding.)
        let min_burst = self.loss / (1.0 - self.loss);
        if self.burst_len > 1.0
            && self.loss > 0.0
            && self.loss < 1.0
            && self.burst_len < min_burst * (1.0 - 1e-9)
        {
            return Err(invalid(
                "burst_len",
                format!(
                    "with loss {} bursts must average at least {min_burst:.2} datagrams \
                     (or be 1 for independent loss)",
                    self.loss
                ),
            ));
        }
        if self.rate_bps == Some(0) {
            return Err(invalid("rate_bps", "must be above 0 (omit it for no limit)"));
        }
        Ok(())
    }

    /// Whether the shape changes nothing (then no random draw is made).
    fn is_transparent(&self) -> bool {
        self.loss <= 0.0 && self.delay.is_zero() && self.jitter.is_zero() && self.rate_bps.is_none()
    }
}

/// A [`Shape`] as JSON (the control API's body and the stats' echo of it):
/// durations in milliseconds, the rate in kbit/s. Every field is optional;
/// a missing one takes the [`Shape::default`] value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeSpec {
    /// [`Shape::loss`], 0..=1.
    pub loss: Option<f64>,
    /// [`Shape::burst_len`], datagrams (1: independent loss).
    pub burst_len: Option<f64>,
    /// [`Shape::delay`].
    pub delay_ms: Option<f64>,
    /// [`Shape::jitter`].
    pub jitter_ms: Option<f64>,
    /// [`Shape::rate_bps`] in kbit/s (1000 bit/s); `null`: no limit.
    pub rate_kbps: Option<f64>,
    /// [`Shape::queue`]; default 300.
    pub queue_ms: Option<f64>,
}

fn millis(field: &'static str, ms: Option<f64>, default: Duration) -> Result<Duration, ShapeError> {
    match ms {
        None => Ok(default),
        Some(ms) if (0.0..=MAX_MS).contains(&ms) => Ok(Duration::from_secs_f64(ms / 1000.0)),
        Some(ms) => Err(invalid(
            field,
            format!("{ms} is not a number of milliseconds between 0 and {MAX_MS}"),
        )),
    }
}

impl TryFrom<&ShapeSpec> for Shape {
    type Error = ShapeError;

    fn try_from(spec: &ShapeSpec) -> Result<Shape, ShapeError> {
        let d = Shape::default();
        let rate_bps = match spec.rate_kbps {
            None => None,
            Some(kbps) if kbps.is_finite() && kbps * 1000.0 >= 1.0 && kbps <= 1e9 => {
                Some((kbps * 1000.0).round() as u64)
            }
            Some(kbps) => return Err(invalid("rate_kbps", format!("{kbps} is not a rate above 0"))),
        };
        let shape = Shape {
            loss: spec.loss.unwrap_or(d.loss),
            burst_len: spec.burst_len.unwrap_or(d.burst_len),
            delay: millis("delay_ms", spec.delay_ms, d.delay)?,
            jitter: millis("jitter_ms", spec.jitter_ms, d.jitter)?,
            rate_bps,
            queue: millis("queue_ms", spec.queue_ms, d.queue)?,
        };
        // (rate_bps is already checked above, under its JSON name.)
        shape.validate()?;
        Ok(shape)
    }
}

impl From<&Shape> for ShapeSpec {
    fn from(s: &Shape) -> ShapeSpec {
        ShapeSpec {
            loss: Some(s.loss),
            burst_len: Some(s.burst_len),
            delay_ms: Some(s.delay.as_secs_f64() * 1000.0),
            jitter_ms: Some(s.jitter.as_secs_f64() * 1000.0),
            rate_kbps: s.rate_bps.map(|bps| bps as f64 / 1000.0),
            queue_ms: Some(s.queue.as_secs_f64() * 1000.0),
        }
    }
}

/// Which way a datagram travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

/// Why a datagram was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    Loss,
    Blackout,
    /// The bottleneck's queue (or the relay's per-flow bound) was full.
    Queue,
}

/// What becomes of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it at this time (possibly already past: send now).
    Deliver(Instant),
    Drop(DropReason),
}

/// A blackout's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blackout {
    Clear,
    Until(Instant),
    UntilEnded,
}

/// Bytes a datagram occupies on the link: its payload plus the UDP header
/// (8) and the IP header (20 for IPv4, 40 for IPv6), so a rate cap means
/// what it means on a real link.
pub(crate) fn wire_bytes(payload: usize, peer: SocketAddr) -> usize {
    payload + if peer.is_ipv4() { 28 } else { 48 }
}

/// One direction's state.
#[derive(Debug)]
struct Pipe {
    shape: Shape,
    /// The Gilbert model's state: in a loss burst.
    bad: bool,
    /// When the bottleneck finishes sending what it has already accepted.
    busy_until: Option<Instant>,
}

impl Pipe {
    fn new(shape: Shape) -> Pipe {
        Pipe {
            shape,
            bad: false,
            busy_until: None,
        }
    }

    fn lost(&mut self, rng: &mut StdRng) -> bool {
        let s = &self.shape;
        if s.loss <= 0.0 {
            return false;
        }
        if s.loss >= 1.0 {
            return true;
        }
        if s.burst_len <= 1.0 {
            return rng.gen::<f64>() < s.loss;
        }
        // Gilbert: leave the bad state with r = 1/burst_len (so bursts are
        // geometric with mean burst_len), enter it with p = loss·r/(1−loss)
        // (so the stationary share of bad, p/(p+r), is `loss`).
        let r = 1.0 / s.burst_len;
        let p = s.loss * r / (1.0 - s.loss);
        self.bad = if self.bad {
            rng.gen::<f64>() >= r
        } else {
            rng.gen::<f64>() < p
        };
        self.bad
    }

    fn admit(&mut self, now: Instant, bytes: usize, rng: &mut StdRng) -> Verdict {
        if self.shape.is_transparent() {
            return Verdict::Deliver(now);
        }
        if self.lost(rng) {
            return Verdict::Drop(DropReason::Loss);
        }
        let mut at = now;
        if let Some(bps) = self.shape.rate_bps {
            let start = self.busy_until.map_or(now, |busy| busy.max(now));
            if start - now > self.shape.queue {
                return Verdict::Drop(DropReason::Queue);
            }
            let nanos = (bytes as u128 * 8 * 1_000_000_000 / bps as u128) as u64;
            self.busy_until = Some(start + Duration::from_nanos(nanos));
            at = start + Duration::from_nanos(nanos);
        }
        at += self.shape.delay;
        if !self.shape.jitter.is_zero() {
            let max = self.shape.jitter.as_nanos().min(u64::MAX as u128) as u64;
            at += Duration::from_nanos(rng.gen_range(0..=max));
        }
        Verdict::Deliver(at)
    }
}

/// One link's shapes, loss state, bottleneck and blackout.
#[derive(Debug)]
pub(crate) struct LinkModel {
    up: Pipe,
    down: Pipe,
    blackout: Blackout,
    rng: StdRng,
}

impl LinkModel {
    /// An unimpaired link. The random generator is passed in so tests can
    /// seed it.
    pub(crate) fn new(rng: StdRng) -> LinkModel {
        LinkModel {
            up: Pipe::new(Shape::default()),
            down: Pipe::new(Shape::default()),
            blackout: Blackout::Clear,
            rng,
        }
    }

    /// Replaces both shapes (already validated). Loss bursts start over; a
    /// queue already building at the bottleneck drains at the new rate.
    pub(crate) fn set_shape(&mut self, up: Shape, down: Shape) {
        self.up = Pipe {
            shape: up,
            bad: false,
            busy_until: self.up.busy_until,
        };
        self.down = Pipe {
            shape: down,
            bad: false,
            busy_until: self.down.busy_until,
        };
    }

    pub(crate) fn shape(&self, dir: Direction) -> &Shape {
        match dir {
            Direction::Up => &self.up.shape,
            Direction::Down => &self.down.shape,
        }
    }

    /// Starts (or replaces) a blackout of `duration` from `now`; one too
    /// long to represent lasts until ended.
    pub(crate) fn start_blackout(&mut self, now: Instant, duration: Duration) {
        self.blackout = match now.checked_add(duration) {
            Some(until) => Blackout::Until(until),
            None => Blackout::UntilEnded,
        };
    }

    pub(crate) fn start_blackout_until_ended(&mut self) {
        self.blackout = Blackout::UntilEnded;
    }

    pub(crate) fn end_blackout(&mut self) {
        self.blackout = Blackout::Clear;
    }

    /// The blackout as of `now` (an expired one is `Clear`).
    pub(crate) fn blackout(&self, now: Instant) -> Blackout {
        match self.blackout {
            Blackout::Until(until) if now >= until => Blackout::Clear,
            b => b,
        }
    }

    /// Decides the fate of a datagram of `bytes` (see [`wire_bytes`])
    /// arriving at `now` going `dir`.
    pub(crate) fn on_datagram(&mut self, dir: Direction, now: Instant, bytes: usize) -> Verdict {
        if self.blackout(now) != Blackout::Clear {
            return Verdict::Drop(DropReason::Blackout);
        }
        let pipe = match dir {
            Direction::Up => &mut self.up,
            Direction::Down => &mut self.down,
        };
        pipe.admit(now, bytes, &mut self.rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn model(up: Shape) -> LinkModel {
        let mut m = LinkModel::new(StdRng::seed_from_u64(7));
        m.set_shape(up, Shape::default());
        m
    }

    /// Sends `n` datagrams 1 ms apart; returns which were lost.
    fn losses(m: &mut LinkModel, n: usize) -> Vec<bool> {
        let t0 = Instant::now();
        (0..n)
            .map(|i| {
                let now = t0 + Duration::from_millis(i as u64);
                matches!(
                    m.on_datagram(Direction::Up, now, 100),
                    Verdict::Drop(DropReason::Loss)
                )
            })
            .collect()
    }

    fn mean_burst(lost: &[bool]) -> f64 {
        let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count() + usize::from(lost[0]);
        lost.iter().filter(|&&l| l).count() as f64 / bursts as f64
    }

    #[test]
    fn default_shape_delivers_at_once() {
        let mut m = model(Shape::default());
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(m.on_datagram(Direction::Up, now, 1200), Verdict::Deliver(now));
            assert_eq!(m.on_datagram(Direction::Down, now, 1200), Verdict::Deliver(now));
        }
    }

    #[test]
    fn independent_loss_has_the_rate_and_short_bursts() {
        let lost = losses(
            &mut model(Shape {
                loss: 0.1,
                ..Shape::default()
            }),
            200_000,
        );
        let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        assert!((rate - 0.1).abs() < 0.004, "loss rate {rate}");
        // Independent loss: bursts are geometric with mean 1/(1−p).
        let burst = mean_burst(&lost);
        assert!((burst - 1.0 / 0.9).abs() < 0.03, "mean burst {burst}");
    }

    #[test]
    fn burst_loss_has_the_burst_length_and_the_same_rate() {
        let lost = losses(
            &mut model(Shape {
                loss: 0.1,
                burst_len: 5.0,
                ..Shape::default()
            }),
            400_000,
        );
        let rate = lost.iter().filter(|&&l| l).count() as f64 / lost.len() as f64;
        // About 8000 bursts: the rate is 0.1 ± 0.0013 (one sigma).
        assert!((rate - 0.1).abs() < 0.004, "loss rate {rate}");
        let burst = mean_burst(&lost);
        assert!((burst - 5.0).abs() < 0.3, "mean burst {burst}");
    }

    #[test]
    fn total_loss_loses_everything() {
        let lost = losses(
            &mut model(Shape {
                loss: 1.0,
                burst_len: 3.0,
                ..Shape::default()
            }),
            1000,
        );
        assert!(lost.iter().all(|&l| l));
    }

    #[test]
    fn delay_and_jitter_stay_in_range_and_vary() {
        let delay = Duration::from_millis(50);
        let jitter = Duration::from_millis(20);
        let mut m = model(Shape {
            delay,
            jitter,
            ..Shape::default()
        });
        let now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..10_000 {
            let Verdict::Deliver(at) = m.on_datagram(Direction::Up, now, 100) else {
                panic!("dropped")
            };
            assert!(at >= now + delay && at <= now + delay + jitter, "{:?}", at - now);
            seen.push(at - now);
        }
        let min = *seen.iter().min().unwrap(); // unwrap: 10 000 elements
        let max = *seen.iter().max().unwrap();
        assert!(min < delay + Duration::from_millis(1) && max > delay + jitter - Duration::from_millis(1));
        // The other direction is untouched.
        assert_eq!(m.on_datagram(Direction::Down, now, 100), Verdict::Deliver(now));
    }

    #[test]
    fn bottleneck_paces_at_the_rate_and_drops_beyond_the_queue() {
        // 100 kbit/s, 100 ms of queue; 972 + 28 bytes = 8000 bits = 80 ms each.
        let mut m = model(Shape {
            rate_bps: Some(100_000),
            queue: Duration::from_millis(100),
            ..Shape::default()
        });
        let now = Instant::now();
        let bytes = wire_bytes(972, "127.0.0.1:1".parse().unwrap()); // unwrap: literal address
        let v: Vec<Verdict> = (0..4).map(|_| m.on_datagram(Direction::Up, now, bytes)).collect();
        let ms = |ms| Verdict::Deliver(now + Duration::from_millis(ms));
        // Waits 0 and 80 ms (within the queue), then 160 ms: dropped.
        assert_eq!(
            v,
            vec![
                ms(80),
                ms(160),
                Verdict::Drop(DropReason::Queue),
                Verdict::Drop(DropReason::Queue)
            ]
        );
        // Once the queue drained the link carries again, 80 ms per datagram.
        let later = now + Duration::from_millis(160);
        assert_eq!(
            m.on_datagram(Direction::Up, later, bytes),
            Verdict::Deliver(later + Duration::from_millis(80))
        );
    }

    #[test]
    fn blackout_drops_both_ways_until_it_ends() {
        let mut m = model(Shape::default());
        let now = Instant::now();
        m.start_blackout(now, Duration::from_secs(2));
        let blacked = Verdict::Drop(DropReason::Blackout);
        assert_eq!(m.on_datagram(Direction::Up, now, 100), blacked);
        assert_eq!(
            m.on_datagram(Direction::Down, now + Duration::from_millis(1999), 100),
            blacked
        );
        let after = now + Duration::from_secs(2);
        assert_eq!(
            m.on_datagram(Direction::Down, after, 100),
            Verdict::Deliver(after)
        );
        assert_eq!(m.blackout(after), Blackout::Clear);

        m.start_blackout(now, Duration::MAX);
        assert_eq!(
            m.blackout(now + Duration::from_secs(1_000_000)),
            Blackout::UntilEnded
        );
        m.end_blackout();
        assert_eq!(m.on_datagram(Direction::Up, now, 100), Verdict::Deliver(now));
    }

    #[test]
    fn nonsense_shapes_are_refused_naming_the_field() {
        let field = |s: Shape| s.validate().unwrap_err().field;
        assert_eq!(
            field(Shape {
                loss: 1.5,
                ..Shape::default()
            }),
            "loss"
        );
        assert_eq!(
            field(Shape {
                loss: f64::NAN,
                ..Shape::default()
            }),
            "loss"
        );
        assert_eq!(
            field(Shape {
                burst_len: 0.5,
                ..Shape::default()
            }),
            "burst_len"
        );
        // 80 % loss in bursts of 2 would need gaps of half a datagram.
        assert_eq!(
            field(Shape {
                loss: 0.8,
                burst_len: 2.0,
                ..Shape::default()
            }),
            "burst_len"
        );
        assert_eq!(
            field(Shape {
                rate_bps: Some(0),
                ..Shape::default()
            }),
            "rate_bps"
        );
        assert!(Shape {
            loss: 0.8,
            burst_len: 4.0,
            ..Shape::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn spec_converts_with_defaults_and_names_bad_fields() {
        let spec: ShapeSpec =
            serde_json::from_str(r#"{"loss": 0.05, "delay_ms": 50, "rate_kbps": 1000}"#).unwrap(); // unwrap: valid literal
        let shape = Shape::try_from(&spec).unwrap(); // unwrap: valid values
        assert_eq!(
            shape,
            Shape {
                loss: 0.05,
                delay: Duration::from_millis(50),
                rate_bps: Some(1_000_000),
                ..Shape::default()
            }
        );
        assert_eq!(Shape::try_from(&ShapeSpec::from(&shape)).unwrap(), shape); // unwrap: round trip of a valid shape
        let bad = |json: &str| {
            Shape::try_from(&serde_json::from_str::<ShapeSpec>(json).unwrap())
                .unwrap_err()
                .field
        };
        assert_eq!(bad(r#"{"delay_ms": -1}"#), "delay_ms");
        assert_eq!(bad(r#"{"rate_kbps": 0}"#), "rate_kbps");
        assert_eq!(bad(r#"{"loss": 2}"#), "loss");
        assert!(
            serde_json::from_str::<ShapeSpec>(r#"{"delay": 5}"#).is_err(),
            "unknown field accepted"
        );
    }
}
