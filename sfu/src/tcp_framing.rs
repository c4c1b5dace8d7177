//! RFC 4571 framing for ICE over TCP (RFC 6544 §3): every STUN, DTLS, RTP
//! or RTCP packet on a TCP connection is preceded by its length as a 16-bit
//! big-endian number.
//!
//! The decoder refuses a frame longer than its limit as soon as the length
//! prefix arrives, so a hostile prefix of 65,535 costs nothing to buffer; and
//! a zero length, which no packet has, as broken framing.

use bytes::{Buf, BytesMut};

/// Why a byte stream is not acceptable framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// A frame of length zero.
    Empty,
    /// A frame longer than the limit.
    TooLong(usize),
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FramingError::Empty => write!(f, "zero-length frame"),
            FramingError::TooLong(n) => write!(f, "frame of {n} bytes is over the limit"),
        }
    }
}

/// Splits a TCP byte stream into packets.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_len: usize,
}

impl FrameDecoder {
    /// A decoder accepting frames of up to `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(max_len.min(4096) + 2),
            max_len,
        }
    }

    /// Appends bytes read from the connection.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete packet, `Ok(None)` if more bytes are needed, or an
    /// error when the stream cannot be framing (the connection should close).
    pub fn next_frame(&mut self) -> Result<Option<BytesMut>, FramingError> {
        if self.buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if len == 0 {
            return Err(FramingError::Empty);
        }
        if len > self.max_len {
            return Err(FramingError::TooLong(len));
        }
        if self.buf.len() < 2 + len {
            return Ok(None);
        }
        self.buf.advance(2);
        Ok(Some(self.buf.split_to(len)))
    }

    /// Bytes buffered towards an incomplete frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Appends `packet` with its length prefix to `out`; false (nothing appended)
/// if the packet cannot be framed (empty, or over 65,535 bytes).
pub fn encode_into(packet: &[u8], out: &mut BytesMut) -> bool {
    let Ok(len) = u16::try_from(packet.len()) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(packet);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(packets: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        for p in packets {
            assert!(encode_into(p, &mut out));
        }
        out
    }

    #[test]
    fn splits_frames_across_arbitrary_reads() {
        let stream = framed(&[b"first", &[7u8; 1200], b"x"]);
        // Feed it one byte at a time: every split point is exercised.
        let mut d = FrameDecoder::new(1500);
        let mut got = Vec::new();
        for b in stream.iter() {
            d.extend(&[*b]);
            while let Some(f) = d.next_frame().expect("valid framing") {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, vec![b"first".to_vec(), vec![7u8; 1200], b"x".to_vec()]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn refuses_an_oversized_prefix_before_its_body_arrives() {
        let mut d = FrameDecoder::new(1500);
        d.extend(&[0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FramingError::TooLong(65535)));
        let mut d = FrameDecoder::new(1500);
        d.extend(&1501u16.to_be_bytes());
        assert_eq!(d.next_frame(), Err(FramingError::TooLong(1501)));
    }

    #[test]
    fn refuses_an_empty_frame() {
        let mut d = FrameDecoder::new(1500);
        d.extend(&[0, 0, 0, 1, 9]);
        assert_eq!(d.next_frame(), Err(FramingError::Empty));
    }

    #[test]
    fn cannot_frame_empty_or_huge_packets() {
        let mut out = BytesMut::new();
        assert!(!encode_into(&[], &mut out));
        assert!(!encode_into(&vec![0u8; 70_000], &mut out));
        assert!(out.is_empty());
    }
}
