//! Routing a datagram on the shared media port to its peer connection before
//! ICE has chosen a pair: by the USERNAME of a STUN binding request, whose
//! first half is our ICE ufrag (RFC 8445 §7.2.2, RFC 5389 §15.3).

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// Whether the datagram looks like STUN (RFC 7983 demultiplexing: first byte 0..=3).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] < 4 && datagram[4..8] == MAGIC_COOKIE
}

/// Our ufrag from the USERNAME attribute (`ours:theirs`) of a STUN message, if any.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(20..20 + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let value = body.get(i + 4..i + 4 + alen)?;
        if typ == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attributes are padded to 4 bytes.
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let padded = username.len().div_ceil(4) * 4;
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&(username.len() as u16).to_be_bytes());
        m.extend_from_slice(username);
        m.resize(20 + 4 + padded, 0);
        m
    }

    #[test]
    fn finds_our_ufrag() {
        let m = binding_request(b"abcd:wxyz1");
        assert_eq!(local_ufrag(&m), Some("abcd"));
    }

    #[test]
    fn garbage_is_not_stun() {
        assert_eq!(local_ufrag(b""), None);
        assert_eq!(local_ufrag(&[0u8; 19]), None);
        assert_eq!(local_ufrag(&[0x80; 200]), None);
        let mut m = binding_request(b"abcd:wxyz");
        m[3] = 0xff; // length past the end
        assert_eq!(local_ufrag(&m), None);
        let mut m = binding_request(b"abcd:wxyz");
        m[22] = 0xff; // attribute length past the end
        assert_eq!(local_ufrag(&m), None);
    }
}
