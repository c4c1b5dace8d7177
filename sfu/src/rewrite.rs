//! SSRC, sequence number and timestamp rewriting for one outgoing stream.
//!
//! A subscriber sees one continuous RTP stream per forwarded track even when
//! the SFU switches the simulcast layer underneath it (each layer has its own
//! SSRC, sequence space and timestamp base). On a switch the new source is
//! spliced on after the last packet sent: sequence numbers continue at +1 and
//! timestamps advance by the wall time elapsed, so the subscriber's jitter
//! buffer and NACK logic never see a jump. Packets of the same source keep a
//! fixed offset, so late retransmissions land on the right output number.
//! VP8 PictureIDs (each layer counts its own) are carried across a splice
//! the same way: a receiver that saw the picture ID jump back would take the
//! new layer's frames for old ones.
//! RFC 3550 §5.1 (sequence/timestamp semantics), RFC 7667 §3.7 (selective forwarding).

use std::time::Instant;

/// Rewrites the header fields of packets forwarded to one subscriber.
#[derive(Debug, Clone)]
pub struct StreamRewriter {
    out_ssrc: u32,
    clock_rate: u32,
    source: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    highest_out_seq: u16,
    highest_out_ts: u32,
    highest_out_at: Option<Instant>,
    /// VP8 PictureID: the offset for the current source, the highest sent,
    /// and whether the next one starts a splice.
    pid_offset: u16,
    highest_out_pid: Option<u16>,
    pid_splice: bool,
}

/// The rewritten header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// SSRC the subscriber knows.
    pub ssrc: u32,
    /// Continuous sequence number.
    pub sequence_number: u16,
    /// Continuous timestamp.
    pub timestamp: u32,
}

impl StreamRewriter {
    /// A rewriter emitting `out_ssrc`, for a codec with `clock_rate` Hz.
    pub fn new(out_ssrc: u32, clock_rate: u32) -> Self {
        Self {
            out_ssrc,
            clock_rate: clock_rate.max(1),
            source: None,
            seq_offset: 0,
            ts_offset: 0,
            highest_out_seq: 0,
            highest_out_ts: 0,
            highest_out_at: None,
            pid_offset: 0,
            highest_out_pid: None,
            pid_splice: false,
        }
    }

    /// The SSRC this stream is sent with.
    pub fn out_ssrc(&self) -> u32 {
        self.out_ssrc
    }

    /// The source SSRC being forwarded now (none before the first packet).
    pub fn source(&self) -> Option<u32> {
        self.source
    }

    /// Forwarding stopped for a while (video off): the next packet is
    /// spliced on after the last one sent, even from the same source, so
    /// the subscriber sees no jump in sequence numbers for what it never
    /// was sent.
    pub fn splice(&mut self) {
        self.source = None;
    }

    /// Maps one packet's `(ssrc, seq, ts)` to the subscriber's stream. A packet
    /// from a different SSRC than the last one starts a splice (the caller only
    /// switches sources at a keyframe).
    pub fn rewrite(&mut self, now: Instant, ssrc: u32, seq: u16, ts: u32) -> Rewritten {
        if self.source != Some(ssrc) {
            match self.highest_out_at {
                // The first packet ever: pass numbers through unchanged.
                None => {
                    self.seq_offset = 0;
                    self.ts_offset = 0;
                }
                Some(at) => {
                    let elapsed = now.saturating_duration_since(at);
                    let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u32;
                    let next_ts = self.highest_out_ts.wrapping_add(ticks.max(1));
                    self.seq_offset = self.highest_out_seq.wrapping_add(1).wrapping_sub(seq);
                    self.ts_offset = next_ts.wrapping_sub(ts);
                }
            }
            self.source = Some(ssrc);
            self.highest_out_at = None;
            self.pid_splice = true;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let newer = match self.highest_out_at {
            None => true,
            Some(_) => {
                let d = out_seq.wrapping_sub(self.highest_out_seq);
                d != 0 && d < 0x8000
            }
        };
        if newer {
            self.highest_out_seq = out_seq;
            self.highest_out_ts = out_ts;
            self.highest_out_at = Some(now);
        }
        Rewritten {
            ssrc: self.out_ssrc,
            sequence_number: out_seq,
            timestamp: out_ts,
        }
    }
}

impl StreamRewriter {
    /// Maps the VP8 PictureID of the packet just passed to [`Self::rewrite`]
    /// (15 bits): after a splice it continues at the highest sent + 1.
    pub fn picture_id(&mut self, pid: u16) -> u16 {
        if self.pid_splice {
            self.pid_splice = false;
            self.pid_offset = self
                .highest_out_pid
                .map_or(0, |h| h.wrapping_add(1).wrapping_sub(pid) & 0x7FFF);
        }
        let out = pid.wrapping_add(self.pid_offset) & 0x7FFF;
        let newer = self
            .highest_out_pid
            .is_none_or(|h| (out.wrapping_sub(h) & 0x7FFF) < 0x4000);
        if newer {
            self.highest_out_pid = Some(out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn single_source_passes_numbers_through() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(42, 90_000);
        let a = r.rewrite(t0, 7, 100, 5000);
        assert_eq!((a.ssrc, a.sequence_number, a.timestamp), (42, 100, 5000));
        let b = r.rewrite(t0, 7, 101, 8000);
        assert_eq!((b.sequence_number, b.timestamp), (101, 8000));
        // A late retransmission keeps its place.
        let c = r.rewrite(t0, 7, 99, 2000);
        assert_eq!((c.sequence_number, c.timestamp), (99, 2000));
    }

    #[test]
    fn switching_source_continues_sequence_and_time() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(42, 90_000);
        r.rewrite(t0, 1, 65534, 1000);
        r.rewrite(t0, 1, 65535, 1000);
        // 100 ms later the high layer (another SSRC, another base) takes over.
        let t1 = t0 + Duration::from_millis(100);
        let s = r.rewrite(t1, 2, 3000, 777_777);
        assert_eq!(s.sequence_number, 0, "wraps from 65535 to 0");
        assert_eq!(s.timestamp, 1000 + 9000);
        let s2 = r.rewrite(t1, 2, 3001, 777_777 + 3000);
        assert_eq!((s2.sequence_number, s2.timestamp), (1, 1000 + 9000 + 3000));
        // Switching back splices again, after the highest number sent.
        let t2 = t1 + Duration::from_millis(10);
        let s3 = r.rewrite(t2, 1, 20, 5);
        assert_eq!(s3.sequence_number, 2);
        assert_eq!(s3.timestamp, 1000 + 9000 + 3000 + 900);
    }

    #[test]
    fn vp8_picture_ids_continue_across_a_switch() {
        let t0 = Instant::now();
        let mut r = StreamRewriter::new(42, 90_000);
        r.rewrite(t0, 1, 10, 0);
        assert_eq!(r.picture_id(30_000), 30_000, "the first passes through");
        r.rewrite(t0, 1, 11, 3000);
        assert_eq!(r.picture_id(30_001), 30_001);
        // Another layer, whose own count is far behind: it continues at +1.
        r.rewrite(t0, 2, 500, 90_000);
        assert_eq!(r.picture_id(7), 30_002);
        r.rewrite(t0, 2, 501, 93_000);
        assert_eq!(r.picture_id(8), 30_003);
        // Across the 15-bit wrap.
        r.rewrite(t0, 1, 12, 6000);
        assert_eq!(r.picture_id(32_767), 30_004);
        r.rewrite(t0, 1, 13, 9000);
        assert_eq!(r.picture_id(0), 30_005);
        // A resumed stream of the same source (video was off) continues too.
        r.splice();
        r.rewrite(t0, 1, 900, 99_000);
        assert_eq!(r.picture_id(500), 30_006);
    }
}
