//! The SFU's side of one participant's offer/answer exchanges.
//!
//! Both sides may offer: the client when it joins or restarts ICE, the SFU
//! when the set of tracks the participant receives changes. Two offers can
//! cross ("glare"); the roles of the perfect-negotiation pattern settle it
//! (W3C webrtc-pc §10.7, RFC 9429 §4.1.8.1): the SFU is the *impolite*
//! peer — it never rolls back, and a client offer that meets one of ours is
//! ignored; the browser is *polite* — it rolls its own offer back, answers
//! ours, and offers again afterwards. Only one of our offers is ever out.
//!
//! A signaling message can be lost with the socket that carried it (a phone
//! changing cell), never on a socket that stays up (it is TCP). So an offer
//! stays *outstanding* until its answer arrives, and is sent again — the
//! very same SDP — when the participant comes back on a new socket. The same
//! SDP, not a fresh offer: a client that did apply it (and whose answer was
//! the part that was lost) can apply it again, while a new offer after a
//! rollback could number its m-lines differently from what the client
//! already holds and be refused. Each socket carries each offer once, and an
//! answer sent on a socket that has since lost the seat is refused by the
//! owner, so no offer is ever answered twice. A client that does not answer
//! within [`NegotiationConfig::answer_timeout`] on a live socket has a broken
//! connection: it is told to rejoin with a fresh one.
//!
//! This is a plain struct driven by `handle_*(now, …)` and `poll_*(now)`; it
//! holds the decisions, the engine holds the peer connection and does what
//! they say.

use std::time::{Duration, Instant};

/// Timing of offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiationConfig {
    /// How long an offer may wait for its answer on a live socket before the
    /// client is asked to rejoin. Default 8 s: many round trips of a bad 4G
    /// link, plus a slow phone.
    pub answer_timeout: Duration,
}

impl Default for NegotiationConfig {
    fn default() -> Self {
        Self {
            answer_timeout: Duration::from_secs(8),
        }
    }
}

/// What to do with an offer from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOffer {
    /// We have nothing out: apply it and answer.
    Answer,
    /// Glare: our offer is out. Ignore theirs; the client (polite) rolls its
    /// offer back when ours reaches it, answers, and offers again.
    Ignore,
}

/// What the engine should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create a new offer, set it locally, send it, and report it with
    /// [`Negotiation::handle_offer_sent`].
    Offer,
    /// Send this outstanding offer again, unchanged (on a new socket).
    Resend(String),
    /// The client has not answered our offer in time on a live socket: its
    /// connection is broken; ask it to rejoin with a fresh one.
    Rejoin,
}

#[derive(Debug, Clone)]
struct Outstanding {
    sdp: String,
    /// When it was last sent (on the socket there is now).
    last_sent: Instant,
    /// Sent again at the next poll: the participant is on a new socket.
    resend_now: bool,
}

/// One participant's negotiation.
#[derive(Debug, Clone)]
pub struct Negotiation {
    config: NegotiationConfig,
    /// The participant receives tracks its connection does not describe yet.
    needed: bool,
    /// Our offer, until its answer arrives.
    outstanding: Option<Outstanding>,
    /// A socket can carry our messages to the participant now.
    reachable: bool,
    /// A rejoin was asked for and not yet acted on by the client.
    rejoin_sent: bool,
    offers: u64,
    resends: u64,
}

impl Negotiation {
    /// A participant that has just joined: its own offer was answered, so
    /// nothing is out, and its socket is there.
    pub fn new(config: NegotiationConfig) -> Self {
        Self {
            config,
            needed: false,
            outstanding: None,
            reachable: true,
            rejoin_sent: false,
            offers: 0,
            resends: 0,
        }
    }

    /// The tracks the participant should receive changed: an offer is needed.
    pub fn handle_change(&mut self) {
        self.needed = true;
    }

    /// An offer from the client arrived.
    pub fn handle_client_offer(&mut self) -> ClientOffer {
        if self.outstanding.is_some() {
            ClientOffer::Ignore
        } else {
            ClientOffer::Answer
        }
    }

    /// We created `sdp`, set it as our local description and sent it.
    pub fn handle_offer_sent(&mut self, now: Instant, sdp: String) {
        self.needed = false;
        self.offers += 1;
        self.outstanding = Some(Outstanding {
            sdp,
            last_sent: now,
            resend_now: false,
        });
    }

    /// Creating or setting our offer failed: try again at the next change.
    pub fn handle_offer_failed(&mut self) {
        self.needed = false;
    }

    /// An answer arrived: whether an offer of ours waits for one.
    pub fn handle_answer(&mut self) -> bool {
        self.outstanding.is_some()
    }

    /// The answer was applied: the exchange is complete.
    pub fn handle_answer_applied(&mut self) {
        self.outstanding = None;
        self.rejoin_sent = false;
    }

    /// The participant's socket went away (`false`) or is back (`true`). An
    /// outstanding offer may have been lost with the old socket: it goes
    /// again as soon as the new one is there.
    pub fn handle_reachable(&mut self, reachable: bool) {
        self.reachable = reachable;
        if reachable {
            if let Some(o) = self.outstanding.as_mut() {
                o.resend_now = true;
            }
        }
    }

    /// Something suggests the participant lacks what it should receive (the
    /// media watchdog): offer anew, unless an offer is out already (its
    /// answer, or the timeout, settles it).
    pub fn handle_repair(&mut self) {
        if self.outstanding.is_none() {
            self.needed = true;
        }
    }

    /// The participant came back with a fresh connection (it rejoined): the
    /// old exchange is void.
    pub fn handle_rejoined(&mut self) {
        self.outstanding = None;
        self.needed = false;
        self.rejoin_sent = false;
    }

    /// What to do now. `pc_stable`: the peer connection has no offer pending
    /// on either side.
    pub fn poll_action(&mut self, now: Instant, pc_stable: bool) -> Option<Action> {
        if !self.reachable {
            return None;
        }
        if let Some(o) = self.outstanding.as_mut() {
            if o.resend_now {
                o.resend_now = false;
                o.last_sent = now;
                self.resends += 1;
                return Some(Action::Resend(o.sdp.clone()));
            }
            if self.rejoin_sent || now.saturating_duration_since(o.last_sent) < self.config.answer_timeout {
                return None;
            }
            self.rejoin_sent = true;
            return Some(Action::Rejoin);
        }
        (self.needed && pc_stable).then_some(Action::Offer)
    }

    /// When [`poll_action`](Self::poll_action) may next have something to do
    /// (the answer timeout; changes and new sockets are acted on at once).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.reachable || self.rejoin_sent {
            return None;
        }
        self.outstanding
            .as_ref()
            .map(|o| o.last_sent + self.config.answer_timeout)
    }

    /// Our offer is out, waiting for its answer.
    pub fn is_offer_outstanding(&self) -> bool {
        self.outstanding.is_some()
    }

    /// An offer is needed and none is out yet.
    pub fn is_needed(&self) -> bool {
        self.needed
    }

    /// Offers made so far, and how many times one was sent again.
    pub fn counts(&self) -> (u64, u64) {
        (self.offers, self.resends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn cfg() -> NegotiationConfig {
        NegotiationConfig {
            answer_timeout: Duration::from_secs(8),
        }
    }

    #[test]
    fn nothing_happens_until_a_change() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        assert_eq!(n.poll_action(t0, true), None);
        assert_eq!(n.poll_timeout(), None);
        assert_eq!(n.handle_client_offer(), ClientOffer::Answer);
        assert!(!n.handle_answer(), "an answer with nothing out is unexpected");
    }

    /// The failure seen in the browser: the SFU's offer for the other side's
    /// tracks goes out 1 ms after the join was answered. It must be one offer
    /// at a time, and sent only once the connection is stable.
    #[test]
    fn a_change_is_offered_once_stable_and_one_at_a_time() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        n.handle_change();
        assert_eq!(n.poll_action(t0, false), None, "not while an exchange is open");
        assert_eq!(n.poll_action(t0, true), Some(Action::Offer));
        n.handle_offer_sent(t0, "o1".into());
        // More changes while the offer is out wait for its answer.
        n.handle_change();
        assert_eq!(n.poll_action(ms(t0, 10), false), None);
        assert!(n.handle_answer());
        n.handle_answer_applied();
        assert_eq!(n.poll_action(ms(t0, 20), true), Some(Action::Offer));
        n.handle_offer_sent(ms(t0, 20), "o2".into());
        assert!(n.handle_answer());
        n.handle_answer_applied();
        assert_eq!(n.poll_action(ms(t0, 30), true), None);
        assert!(!n.handle_answer(), "a second answer to o2 is unexpected");
        assert_eq!(n.counts(), (2, 0));
    }

    #[test]
    fn glare_ignores_the_client_offer_while_ours_is_out() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        n.handle_change();
        assert_eq!(n.poll_action(t0, true), Some(Action::Offer));
        n.handle_offer_sent(t0, "ours".into());
        // The client's ICE-restart offer crosses ours.
        assert_eq!(n.handle_client_offer(), ClientOffer::Ignore);
        // The polite client answers ours, then offers again: now accepted.
        assert!(n.handle_answer());
        n.handle_answer_applied();
        assert_eq!(n.handle_client_offer(), ClientOffer::Answer);
    }

    #[test]
    fn an_offer_unanswered_on_a_live_socket_asks_for_a_rejoin_once() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        n.handle_change();
        assert_eq!(n.poll_action(t0, true), Some(Action::Offer));
        n.handle_offer_sent(t0, "sdp-1".into());
        assert_eq!(n.poll_timeout(), Some(ms(t0, 8000)));
        // The socket is TCP: the offer is not sent again on it.
        assert_eq!(n.poll_action(ms(t0, 7999), false), None);
        assert_eq!(n.poll_action(ms(t0, 8000), false), Some(Action::Rejoin));
        assert_eq!(n.poll_action(ms(t0, 20_000), false), None, "asked once");
        assert_eq!(n.poll_timeout(), None);
        // It rejoins with a fresh connection: the old exchange is void.
        n.handle_rejoined();
        assert!(!n.is_offer_outstanding());
        assert_eq!(n.counts(), (1, 0));
    }

    #[test]
    fn nothing_is_sent_while_the_socket_is_gone_and_the_offer_goes_again_on_the_new_one() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        n.handle_change();
        n.poll_action(t0, true);
        n.handle_offer_sent(t0, "sdp".into());
        n.handle_reachable(false);
        assert_eq!(n.poll_action(ms(t0, 60_000), false), None);
        assert_eq!(n.poll_timeout(), None);
        n.handle_reachable(true);
        // At once, not after the timeout, and the same SDP.
        assert_eq!(
            n.poll_action(ms(t0, 60_001), false),
            Some(Action::Resend("sdp".into()))
        );
        assert_eq!(n.poll_action(ms(t0, 60_002), false), None);
        // Its answer completes the exchange; no second one is due.
        assert!(n.handle_answer());
        n.handle_answer_applied();
        assert!(!n.handle_answer());
        assert_eq!(n.counts(), (1, 1));
    }

    #[test]
    fn the_answer_timeout_starts_again_on_a_new_socket() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        n.handle_change();
        n.poll_action(t0, true);
        n.handle_offer_sent(t0, "sdp".into());
        n.handle_reachable(false);
        n.handle_reachable(true);
        assert_eq!(
            n.poll_action(ms(t0, 7000), false),
            Some(Action::Resend("sdp".into()))
        );
        assert_eq!(
            n.poll_action(ms(t0, 9000), false),
            None,
            "8 s from the resend, not the first send"
        );
        assert_eq!(n.poll_action(ms(t0, 15_000), false), Some(Action::Rejoin));
    }

    #[test]
    fn changes_while_the_socket_is_gone_are_offered_when_it_is_back() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        n.handle_reachable(false);
        n.handle_change();
        assert_eq!(n.poll_action(t0, true), None);
        n.handle_reachable(true);
        assert_eq!(n.poll_action(ms(t0, 1), true), Some(Action::Offer));
    }

    #[test]
    fn a_repair_offers_anew_unless_an_offer_is_out() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        n.handle_repair();
        assert_eq!(n.poll_action(t0, true), Some(Action::Offer));
        n.handle_offer_sent(t0, "sdp".into());
        n.handle_repair();
        assert_eq!(
            n.poll_action(ms(t0, 5), false),
            None,
            "its answer or the timeout settles it"
        );
    }

    #[test]
    fn a_failed_offer_waits_for_the_next_change() {
        let t0 = Instant::now();
        let mut n = Negotiation::new(cfg());
        n.handle_change();
        assert_eq!(n.poll_action(t0, true), Some(Action::Offer));
        n.handle_offer_failed();
        assert_eq!(n.poll_action(ms(t0, 1), true), None);
        assert!(!n.is_needed());
    }
}
