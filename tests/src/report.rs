//! What a synthetic participant measured.

use std::fmt;
use std::time::Instant;

/// One received track.
#[derive(Debug, Clone)]
pub struct TrackReport {
    /// The track id the SFU gave it.
    pub track_id: String,
    /// The stream id (the publisher's participant id).
    pub stream_id: String,
    /// Audio (else video).
    pub audio: bool,
    /// The track was ended by renegotiation.
    pub ended: bool,
    /// Distinct RTP packets received.
    pub packets_received: u64,
    /// Packets missing in the received sequence range (after NACK recovery).
    pub packets_lost: u64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// One-way delay, median (audio: per packet; video: per complete frame), ms.
    pub delay_ms_median: Option<f64>,
    /// One-way delay, 95th percentile, ms.
    pub delay_ms_p95: Option<f64>,
    /// One-way delay, 99th percentile, ms.
    pub delay_ms_p99: Option<f64>,
    /// Video frames received complete.
    pub frames_complete: u64,
    /// Video frames in the counter range seen.
    pub frames_expected: u64,
    /// Longest run of consecutive missing frames between complete ones.
    pub max_frame_gap: u64,
    /// First frame counter seen.
    pub first_counter: Option<u32>,
    /// Last frame counter seen.
    pub last_counter: Option<u32>,
    /// When the first packet arrived.
    pub first_packet_at: Instant,
    /// When the first complete frame arrived.
    pub first_frame_at: Option<Instant>,
    /// Frames a decoder could have shown: in order from a keyframe, with no
    /// frame missing since (a hole waits for the next keyframe).
    pub frames_decoded: u64,
    /// When the last such frame arrived.
    pub last_decoded_at: Option<Instant>,
    /// Dominant frequency of the decoded audio (last second), Hz.
    pub dominant_frequency_hz: Option<f64>,
}

impl TrackReport {
    /// Share of packets lost in the received range.
    pub fn loss_ratio(&self) -> f64 {
        let expected = self.packets_received + self.packets_lost;
        if expected == 0 {
            0.0
        } else {
            self.packets_lost as f64 / expected as f64
        }
    }

    /// Share of frames received complete.
    pub fn frames_complete_ratio(&self) -> f64 {
        if self.frames_expected == 0 {
            0.0
        } else {
            self.frames_complete as f64 / self.frames_expected as f64
        }
    }
}

/// Everything one participant measured.
#[derive(Debug, Clone)]
pub struct ParticipantReport {
    /// The participant.
    pub name: String,
    /// Received tracks, by track id.
    pub tracks: Vec<TrackReport>,
    /// Video frames sent.
    pub frames_sent: u64,
    /// Keyframes sent.
    pub keyframes_sent: u64,
    /// PLI/FIR received from the SFU.
    pub plis_received: u64,
    /// Audio packets sent.
    pub audio_packets_sent: u64,
    /// Media packets dropped by the link impairment, (outgoing, incoming).
    pub dropped: (u64, u64),
}

impl ParticipantReport {
    /// The received audio track published by `publisher`, if any.
    pub fn audio_from(&self, publisher: &str) -> Option<&TrackReport> {
        self.latest(publisher, true)
    }

    /// The received video track published by `publisher`, if any.
    pub fn video_from(&self, publisher: &str) -> Option<&TrackReport> {
        self.latest(publisher, false)
    }

    /// The publisher's track of this kind that is live now: after a rejoin a
    /// publisher has an ended track and a newer one; the newest live one wins.
    fn latest(&self, publisher: &str, audio: bool) -> Option<&TrackReport> {
        self.tracks
            .iter()
            .filter(|t| t.audio == audio && t.stream_id == publisher)
            .max_by_key(|t| (!t.ended, t.first_packet_at))
    }
}

impl fmt::Display for ParticipantReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: sent {} frames ({} key, {} PLI received), {} audio packets, dropped up/down {:?}",
            self.name,
            self.frames_sent,
            self.keyframes_sent,
            self.plis_received,
            self.audio_packets_sent,
            self.dropped
        )?;
        for t in &self.tracks {
            writeln!(
                f,
                "  {}{} from {} ({}): {} pkts, lost {} ({:.2}%), dup {}, delay median {:.1?} ms p95 {:.1?} ms{}",
                t.track_id,
                if t.ended { " (ended)" } else { "" },
                t.stream_id,
                if t.audio { "audio" } else { "video" },
                t.packets_received,
                t.packets_lost,
                t.loss_ratio() * 100.0,
                t.duplicates,
                t.delay_ms_median,
                t.delay_ms_p95,
                if t.audio {
                    format!(", tone {:?} Hz", t.dominant_frequency_hz)
                } else {
                    format!(
                        ", frames {}/{} ({:.1}%), {} decodable, max gap {}",
                        t.frames_complete,
                        t.frames_expected,
                        t.frames_complete_ratio() * 100.0,
                        t.frames_decoded,
                        t.max_frame_gap
                    )
                }
            )?;
        }
        Ok(())
    }
}
