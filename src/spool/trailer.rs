//! The payload of a message record in a segment (see `record`): content, then the envelope, then
//! a fixed-size footer. (Spools of earlier versions held the same bytes as one file per message,
//! `queue/ID.msg`; recovery still reads those.)
//!
//! ```text
//! content bytes (as relayed) | envelope JSON | footer: "PRQ1\0\0\0\0", JSON length (u64 LE),
//!                                                      CRC-32 of content (u32 LE), CRC-32 of JSON (u32 LE)
//! ```
//!
//! The envelope goes last because the content streams in before everything about the message is
//! known. A payload without the footer was still being received when the relay stopped: it was
//! never acknowledged. A footer whose checksums or sizes do not match means damage, and the
//! record is quarantined rather than delivered, so a partial message is never sent.

use super::envelope::Envelope;

pub const MAGIC: &[u8; 8] = b"PRQ1\0\0\0\0";
pub const FOOTER_LEN: usize = 24;

/// What reading a message file found.
#[derive(Debug)]
pub enum Decoded {
    /// A complete message; its content is the first `envelope.size` bytes.
    Complete(Box<Envelope>),
    /// No footer: the message was being received and was never acknowledged.
    Incomplete,
    /// A footer that does not match the file: damage.
    Corrupt(String),
}

/// The envelope and footer to append after `content_crc`-summed content.
pub fn encode(envelope: &Envelope, content_crc: u32) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(envelope)?;
    let mut out = Vec::with_capacity(json.len() + FOOTER_LEN);
    out.extend_from_slice(&json);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&content_crc.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    Ok(out)
}

/// Reads a whole message file back.
pub fn decode(file: &[u8]) -> Decoded {
    let Some(footer_at) = file.len().checked_sub(FOOTER_LEN) else {
        return Decoded::Incomplete;
    };
    let footer = &file[footer_at..];
    if &footer[..8] != MAGIC {
        return Decoded::Incomplete;
    }
    let word = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 8];
        bytes[..range.len()].copy_from_slice(&footer[range]);
        u64::from_le_bytes(bytes)
    };
    let json_len = word(8..16) as usize;
    let content_crc = word(16..20) as u32;
    let json_crc = word(20..24) as u32;
    let Some(content_len) = footer_at.checked_sub(json_len) else {
        return Decoded::Corrupt(format!(
            "envelope length {json_len} is larger than the file"
        ));
    };
    let json = &file[content_len..footer_at];
    if crc32fast::hash(json) != json_crc {
        return Decoded::Corrupt("envelope checksum mismatch".into());
    }
    let envelope: Envelope = match serde_json::from_slice(json) {
        Ok(envelope) => envelope,
        Err(error) => return Decoded::Corrupt(format!("envelope is not valid: {error}")),
    };
    if envelope.size != content_len as u64 {
        return Decoded::Corrupt(format!(
            "content has {content_len} bytes, the envelope says {}",
            envelope.size
        ));
    }
    if crc32fast::hash(&file[..content_len]) != content_crc {
        return Decoded::Corrupt("content checksum mismatch".into());
    }
    Decoded::Complete(Box::new(envelope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Recipient;

    fn envelope(size: u64) -> Envelope {
        Envelope {
            id: "id1".into(),
            received_at: 1,
            sender: "a@example.test".into(),
            recipients: vec![Recipient::new("b@example.test".into())],
            configuration_set: Some("promo".into()),
            pool: "marketing".into(),
            client_ip: "127.0.0.1".parse().unwrap(),
            client_helo: "client".into(),
            size,
            smtputf8: false,
            eight_bit_mime: false,
            ..Envelope::default()
        }
    }

    fn file(content: &[u8]) -> Vec<u8> {
        let mut file = content.to_vec();
        file.extend(encode(&envelope(content.len() as u64), crc32fast::hash(content)).unwrap());
        file
    }

    #[test]
    fn round_trip() {
        let whole = file(b"Subject: x\r\n\r\nbody\r\n");
        match decode(&whole) {
            Decoded::Complete(found) => assert_eq!(*found, envelope(20)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_incomplete_or_corrupt_never_complete() {
        let whole = file(b"Subject: x\r\n\r\nbody\r\n");
        for cut in 0..whole.len() {
            assert!(
                !matches!(decode(&whole[..cut]), Decoded::Complete(_)),
                "cut at {cut}"
            );
        }
        assert!(matches!(decode(b"partial content"), Decoded::Incomplete));
    }

    #[test]
    fn flipped_bytes_are_corrupt() {
        let whole = file(b"Subject: x\r\n\r\nbody\r\n");
        for at in 0..whole.len() - FOOTER_LEN {
            let mut damaged = whole.clone();
            damaged[at] ^= 0x20;
            assert!(matches!(decode(&damaged), Decoded::Corrupt(_)), "byte {at}");
        }
    }
}
