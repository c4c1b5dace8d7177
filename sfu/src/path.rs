//! Where a participant's packets come from, and where ours must go.
//!
//! Two things happen to a commune station's path mid-call that the ICE agent
//! alone handles badly:
//!
//! - **It goes silent and comes back** (a dead cell for a few seconds). When
//!   packets flow again, the pictures on both sides need a keyframe at once:
//!   waiting for the receivers' own loss detection costs seconds. The path
//!   reports [`PathEvent::Resumed`] after a silence.
//! - **Its address changes** (the phone moves from Wi-Fi to 4G, or a carrier
//!   NAT gives the flow a new port). The browser keeps using its same
//!   candidate pair and does not know anything changed; our ICE agent, the
//!   controlled side, never moves its selected pair on its own (RFC 8445
//!   §7.3.1.5 leaves nomination to the controlling agent), so it would keep
//!   sending every packet to the dead address until an ICE restart. Instead,
//!   once a new address has proved itself (the engine binds an address to a
//!   participant only after a STUN request signed with that participant's
//!   ICE password) and the old one has gone quiet, the path *moves*: the ICE
//!   agent keeps believing the participant is at the old address, packets
//!   from the new one are handed to it as if from the old, and what it sends
//!   to the old one goes to the new one — what a symmetric-RTP "latching"
//!   media server does (RFC 7362 §4). An ICE restart starts afresh.
//!
//! A plain struct: the engine hands in each datagram's source and each
//! outgoing packet's destination with the time, and acts on the answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A silence at least this long, then a packet, is a resumed path.
/// Browsers send something at least every 20 ms during a call (audio), RTCP
/// every second even when muted, and ICE consent checks every few seconds.
pub const RESUME_SILENCE: Duration = Duration::from_millis(1000);

/// The old address must have been quiet this long before the path moves to
/// a new one (two live addresses at once are ICE's business, not ours).
pub const MOVE_SILENCE: Duration = Duration::from_millis(500);

/// Something the session log should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathEvent {
    /// Packets arrive again after a silence this long.
    Resumed {
        /// How long nothing arrived.
        silent_for: Duration,
    },
    /// The participant's packets now come from another address.
    Moved {
        /// Where they came from before.
        from: SocketAddr,
        /// Where they come from now.
        to: SocketAddr,
    },
}

/// One participant's UDP path.
#[derive(Debug, Clone, Default)]
pub struct Path {
    /// Where the ICE agent sends (the remote address of its selected pair),
    /// learnt from what it sends.
    ice_remote: Option<SocketAddr>,
    /// Where the participant really is now, when that is not `ice_remote`.
    moved_to: Option<SocketAddr>,
    /// When each address of the participant was last heard (a few at most).
    heard: Vec<(SocketAddr, Instant)>,
    last_heard: Option<Instant>,
    moves: u32,
    events: std::collections::VecDeque<PathEvent>,
}

impl Path {
    /// A path nothing has been heard on yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn heard_at(&self, addr: SocketAddr) -> Option<Instant> {
        self.heard.iter().find(|(a, _)| *a == addr).map(|(_, t)| *t)
    }

    fn note_heard(&mut self, addr: SocketAddr, now: Instant) {
        match self.heard.iter_mut().find(|(a, _)| *a == addr) {
            Some(e) => e.1 = now,
            None => {
                // Keep the list short: forget the address heard longest ago.
                if self.heard.len() >= 8 {
                    if let Some(i) = self
                        .heard
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, (_, t))| *t)
                        .map(|(i, _)| i)
                    {
                        self.heard.swap_remove(i);
                    }
                }
                self.heard.push((addr, now));
            }
        }
    }

    /// Something arrived over a transport that cannot move (ICE-TCP): only
    /// silence and resumption are tracked.
    pub fn handle_heard(&mut self, now: Instant) {
        let gap = self.last_heard.map(|t| now.saturating_duration_since(t));
        self.last_heard = Some(now);
        if let Some(silent_for) = gap.filter(|g| *g >= RESUME_SILENCE) {
            self.events.push_back(PathEvent::Resumed { silent_for });
        }
    }

    /// A datagram from `from`, an address already proven to be this
    /// participant's. Returns the source address to hand to the ICE agent;
    /// what changed is in [`poll_event`](Self::poll_event).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr) -> SocketAddr {
        self.handle_heard(now);
        let current = self.moved_to.or(self.ice_remote);
        let current_heard = current.and_then(|c| self.heard_at(c));
        self.note_heard(from, now);
        let Some(remote) = self.ice_remote else {
            return from;
        };
        if from == remote {
            // Back on the address ICE chose (or never left it).
            self.moved_to = None;
            return from;
        }
        if self.moved_to == Some(from) {
            return remote;
        }
        let quiet = current_heard.is_none_or(|t| now.saturating_duration_since(t) >= MOVE_SILENCE);
        if !quiet {
            // Both addresses alive: ICE is checking another pair.
            return from;
        }
        let was = current.unwrap_or(remote);
        self.moved_to = Some(from);
        self.moves += 1;
        self.events.push_back(PathEvent::Moved { from: was, to: from });
        remote
    }

    /// What changed, oldest first.
    pub fn poll_event(&mut self) -> Option<PathEvent> {
        self.events.pop_front()
    }

    /// The ICE agent sends a packet to `dest`; `stun` if it is an ICE check
    /// or answer. Returns where it must really go.
    pub fn handle_send(&mut self, dest: SocketAddr, stun: bool) -> SocketAddr {
        if !stun {
            // DTLS and SRTP go to the selected pair's remote address only.
            if self.ice_remote != Some(dest) {
                self.ice_remote = Some(dest);
                self.moved_to = None;
            }
        }
        match self.moved_to {
            Some(actual) if self.ice_remote == Some(dest) => actual,
            _ => dest,
        }
    }

    /// ICE restarted: the agent chooses a pair afresh, from real addresses.
    pub fn handle_ice_restart(&mut self) {
        self.ice_remote = None;
        self.moved_to = None;
    }

    /// The address the ICE agent knows the participant by, when the address
    /// it really uses now has been quiet long enough for a move: media from
    /// an unknown address that proves to be the participant's (it decrypts
    /// with its keys) may then move the path at once, without waiting for
    /// its next ICE check.
    pub fn may_move(&self, now: Instant) -> Option<SocketAddr> {
        let remote = self.ice_remote?;
        let current = self.moved_to.unwrap_or(remote);
        self.heard_at(current)
            .is_none_or(|t| now.saturating_duration_since(t) >= MOVE_SILENCE)
            .then_some(remote)
    }

    /// Whether anything arrived from the participant within `d` of `now`.
    pub fn heard_within(&self, now: Instant, d: Duration) -> bool {
        self.last_heard
            .is_some_and(|t| now.saturating_duration_since(t) <= d)
    }

    /// Where the participant really is, when it moved away from the address
    /// ICE chose.
    pub fn moved_to(&self) -> Option<SocketAddr> {
        self.moved_to
    }

    /// How many times the path moved.
    pub fn moves(&self) -> u32 {
        self.moves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn events(p: &mut Path) -> Vec<PathEvent> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    /// A path where ICE chose `addr(1000)` and packets flowed until `t0 + 100 ms`.
    fn settled(t0: Instant) -> Path {
        let mut p = Path::new();
        assert_eq!(p.handle_datagram(t0, addr(1000)), addr(1000));
        assert_eq!(p.handle_send(addr(1000), false), addr(1000));
        for ms in (20..=100).step_by(20) {
            assert_eq!(p.handle_datagram(at(t0, ms), addr(1000)), addr(1000));
        }
        assert_eq!(events(&mut p), vec![]);
        p
    }

    #[test]
    fn a_silence_then_a_packet_is_a_resumed_path() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        p.handle_datagram(at(t0, 1099), addr(1000));
        assert_eq!(events(&mut p), vec![]);
        p.handle_datagram(at(t0, 6099), addr(1000));
        assert_eq!(
            events(&mut p),
            vec![PathEvent::Resumed {
                silent_for: Duration::from_secs(5)
            }]
        );
        p.handle_heard(at(t0, 6119));
        assert_eq!(events(&mut p), vec![]);
    }

    #[test]
    fn a_handover_moves_the_path_both_ways() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        // After 2.5 s of silence the phone's packets come from a new port.
        let as_seen = p.handle_datagram(at(t0, 2600), addr(2000));
        assert_eq!(as_seen, addr(1000), "the ICE agent sees the address it knows");
        assert_eq!(
            events(&mut p),
            vec![
                PathEvent::Resumed {
                    silent_for: Duration::from_millis(2500)
                },
                PathEvent::Moved {
                    from: addr(1000),
                    to: addr(2000)
                }
            ]
        );
        assert_eq!(p.handle_send(addr(1000), false), addr(2000), "media follows");
        assert_eq!(
            p.handle_send(addr(1000), true),
            addr(2000),
            "consent checks follow"
        );
        assert_eq!(p.handle_datagram(at(t0, 2620), addr(2000)), addr(1000));
        assert_eq!(p.moved_to(), Some(addr(2000)));
        // A second move goes on from the new address, once it is quiet.
        assert_eq!(
            p.handle_datagram(at(t0, 2700), addr(3000)),
            addr(3000),
            "2000 is still alive"
        );
        assert_eq!(events(&mut p), vec![]);
        assert_eq!(p.handle_datagram(at(t0, 3200), addr(3000)), addr(1000));
        assert_eq!(
            events(&mut p),
            vec![PathEvent::Moved {
                from: addr(2000),
                to: addr(3000)
            }]
        );
        assert_eq!(p.handle_send(addr(1000), false), addr(3000));
        assert_eq!(p.moves(), 2);
    }

    #[test]
    fn a_second_address_while_the_first_is_alive_is_left_to_ice() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        // 300 ms after the last packet from the chosen address: not quiet yet.
        assert_eq!(p.handle_datagram(at(t0, 400), addr(2000)), addr(2000));
        assert_eq!(p.handle_send(addr(1000), false), addr(1000));
        assert_eq!(p.moved_to(), None);
        assert_eq!(events(&mut p), vec![]);
    }

    #[test]
    fn coming_back_to_the_old_address_undoes_the_move() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        p.handle_datagram(at(t0, 700), addr(2000));
        assert_eq!(p.handle_datagram(at(t0, 800), addr(1000)), addr(1000));
        assert_eq!(p.handle_send(addr(1000), false), addr(1000));
    }

    #[test]
    fn when_ice_chooses_another_pair_or_restarts_the_move_is_dropped() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        p.handle_datagram(at(t0, 700), addr(2000));
        // ICE now sends media elsewhere on its own.
        assert_eq!(p.handle_send(addr(4000), false), addr(4000));
        assert_eq!(p.moved_to(), None);
        p.handle_datagram(at(t0, 2000), addr(2000));
        p.handle_ice_restart();
        assert_eq!(p.handle_send(addr(1000), true), addr(1000));
        assert_eq!(p.handle_datagram(at(t0, 2100), addr(5000)), addr(5000));
    }

    #[test]
    fn a_move_is_possible_only_once_the_current_address_is_quiet() {
        let t0 = Instant::now();
        let mut p = settled(t0);
        assert_eq!(p.may_move(at(t0, 300)), None, "still heard 200 ms ago");
        assert_eq!(p.may_move(at(t0, 600)), Some(addr(1000)));
        p.handle_datagram(at(t0, 700), addr(2000));
        assert_eq!(p.may_move(at(t0, 800)), None, "the new address is alive");
        assert_eq!(
            p.may_move(at(t0, 1300)),
            Some(addr(1000)),
            "the address ICE knows, for the agent"
        );
    }

    #[test]
    fn nothing_moves_before_ice_has_chosen() {
        let t0 = Instant::now();
        let mut p = Path::new();
        assert_eq!(p.handle_datagram(t0, addr(1000)), addr(1000));
        assert_eq!(p.handle_datagram(at(t0, 900), addr(2000)), addr(2000));
        assert_eq!(p.handle_send(addr(2000), true), addr(2000));
        assert_eq!(events(&mut p), vec![]);
    }
}
