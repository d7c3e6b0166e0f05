//! The framing of a segment file: a header, then records, each a fixed-size header and a
//! payload. Pure functions, no I/O, so every torn or damaged shape can be tested.
//!
//! ```text
//! segment: "PRSEG001" | record | record | ...
//! record:  "PRR1" | kind (u8) | 0 0 0 | payload length (u64 LE) | CRC-32 of payload (u32 LE)
//!          | CRC-32 of the 20 header bytes before it (u32 LE) | payload
//! ```
//!
//! Payloads by kind: a *message* is the content, its envelope and the footer of [`super::trailer`];
//! an *update* is a newer envelope (JSON) for a message of the same segment; *done* names a copy
//! of a message of the same segment that needs nothing more (its payload offset and id). Everything about a message is in the
//! segment that holds its content, so each segment is read back on its own.

pub const SEGMENT_MAGIC: &[u8; 8] = b"PRSEG001";
const RECORD_MAGIC: &[u8; 4] = b"PRR1";
pub const HEADER_LEN: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message = 1,
    Update = 2,
    Done = 3,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Message),
            2 => Some(Self::Update),
            3 => Some(Self::Done),
            _ => None,
        }
    }
}

/// The header of a record whose payload has `payload_len` bytes with CRC-32 `payload_crc`.
pub fn header(kind: Kind, payload_len: u64, payload_crc: u32) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(RECORD_MAGIC);
    header[4] = kind as u8;
    header[8..16].copy_from_slice(&payload_len.to_le_bytes());
    header[16..20].copy_from_slice(&payload_crc.to_le_bytes());
    let own = crc32fast::hash(&header[..20]);
    header[20..24].copy_from_slice(&own.to_le_bytes());
    header
}

/// A whole small record (header and payload) in one buffer.
pub fn encode(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.extend_from_slice(&header(
        kind,
        payload.len() as u64,
        crc32fast::hash(payload),
    ));
    record.extend_from_slice(payload);
    record
}

/// The payload of a "done" record: the offset of the message's payload in its segment (so
/// only that copy is done, not a newer one of the same message) and its id.
pub fn done_payload(offset: u64, id: &str) -> Vec<u8> {
    let mut payload = offset.to_le_bytes().to_vec();
    payload.extend_from_slice(id.as_bytes());
    payload
}

/// Reads a "done" payload back.
pub fn parse_done(payload: &[u8]) -> Option<(u64, String)> {
    let (offset, id) = payload.split_at_checked(8)?;
    let offset = u64::from_le_bytes(offset.try_into().ok()?);
    Some((offset, String::from_utf8(id.to_vec()).ok()?))
}

/// One record found in a segment; `payload` is the byte range of its payload in the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    pub payload: std::ops::Range<usize>,
}

/// What reading a segment found: its good records in order, records whose payload is damaged
/// (skipped; the framing around them is intact), and where the trustworthy part ends if it ends
/// before the file does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scanned {
    pub records: Vec<Found>,
    /// Whole records (header included) whose payload checksum or kind is wrong.
    pub damaged: Vec<(std::ops::Range<usize>, String)>,
    /// The offset from which nothing can be trusted, and why: a record cut short by a crash
    /// (never acknowledged) or a header that is not one.
    pub tail: Option<(usize, String)>,
}

/// Reads the records of the segment `bytes` (the whole file).
pub fn scan(bytes: &[u8]) -> Scanned {
    let mut scanned = Scanned::default();
    if bytes.len() < SEGMENT_MAGIC.len() || &bytes[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        scanned.tail = Some((0, "not a spool segment (no segment header)".into()));
        return scanned;
    }
    let mut at = SEGMENT_MAGIC.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < HEADER_LEN {
            scanned.tail = Some((at, "a record header cut short".into()));
            return scanned;
        }
        let head = &rest[..HEADER_LEN];
        let word = |range: std::ops::Range<usize>| {
            let mut out = [0u8; 8];
            out[..range.len()].copy_from_slice(&head[range]);
            u64::from_le_bytes(out)
        };
        if &head[..4] != RECORD_MAGIC || crc32fast::hash(&head[..20]) != word(20..24) as u32 {
            scanned.tail = Some((at, "not a record header".into()));
            return scanned;
        }
        let length = word(8..16);
        let start = at + HEADER_LEN;
        let Some(end) = usize::try_from(length)
            .ok()
            .and_then(|length| start.checked_add(length))
            .filter(|&end| end <= bytes.len())
        else {
            scanned.tail = Some((at, "a record cut short".into()));
            return scanned;
        };
        let payload = &bytes[start..end];
        match Kind::from_byte(head[4]) {
            _ if crc32fast::hash(payload) != word(16..20) as u32 => scanned
                .damaged
                .push((at..end, "payload checksum mismatch".into())),
            None => scanned
                .damaged
                .push((at..end, format!("unknown record kind {}", head[4]))),
            Some(kind) => scanned.records.push(Found {
                kind,
                payload: start..end,
            }),
        }
        at = end;
    }
    scanned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(Kind, &[u8])]) -> Vec<u8> {
        let mut bytes = SEGMENT_MAGIC.to_vec();
        for (kind, payload) in records {
            bytes.extend(encode(*kind, payload));
        }
        bytes
    }

    #[test]
    fn records_come_back_in_order() {
        let bytes = segment(&[
            (Kind::Message, b"content"),
            (Kind::Update, b"{}"),
            (Kind::Done, b"id"),
        ]);
        let scanned = scan(&bytes);
        assert_eq!(scanned.tail, None);
        assert!(scanned.damaged.is_empty());
        let kinds: Vec<Kind> = scanned.records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Kind::Message, Kind::Update, Kind::Done]);
        assert_eq!(&bytes[scanned.records[0].payload.clone()], b"content");
        assert_eq!(&bytes[scanned.records[2].payload.clone()], b"id");
    }

    #[test]
    fn every_cut_keeps_the_whole_records_before_it_and_marks_the_tail() {
        let bytes = segment(&[(Kind::Message, b"first"), (Kind::Message, b"second")]);
        let first_end = SEGMENT_MAGIC.len() + HEADER_LEN + 5;
        for cut in SEGMENT_MAGIC.len() + 1..bytes.len() {
            let scanned = scan(&bytes[..cut]);
            let whole = if cut >= first_end { 1 } else { 0 };
            assert_eq!(scanned.records.len(), whole, "cut at {cut}");
            if cut != first_end {
                assert!(scanned.tail.is_some(), "cut at {cut}");
            }
            assert!(scanned.damaged.is_empty());
        }
    }

    #[test]
    fn a_flipped_byte_is_never_read_as_a_good_record() {
        let bytes = segment(&[(Kind::Message, b"first"), (Kind::Message, b"second")]);
        for at in SEGMENT_MAGIC.len()..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            let scanned = scan(&damaged);
            let good: Vec<&[u8]> = scanned
                .records
                .iter()
                .map(|r| &damaged[r.payload.clone()])
                .collect();
            assert!(good.len() < 2, "byte {at}: {good:?}");
            assert!(
                good.iter().all(|p| *p == b"first" || *p == b"second"),
                "byte {at}"
            );
        }
    }

    #[test]
    fn a_damaged_payload_is_skipped_and_the_next_record_still_read() {
        let mut bytes = segment(&[(Kind::Message, b"first"), (Kind::Done, b"x")]);
        bytes[SEGMENT_MAGIC.len() + HEADER_LEN] ^= 1;
        let scanned = scan(&bytes);
        assert_eq!(scanned.damaged.len(), 1);
        assert_eq!(scanned.records.len(), 1);
        assert_eq!(scanned.records[0].kind, Kind::Done);
        assert_eq!(scanned.tail, None);
    }

    #[test]
    fn a_done_payload_names_its_copy() {
        assert_eq!(
            parse_done(&done_payload(42, "id-1")),
            Some((42, "id-1".into()))
        );
        assert_eq!(parse_done(b"short"), None);
    }

    #[test]
    fn a_file_that_is_not_a_segment_is_all_tail() {
        assert_eq!(scan(b"hello").tail.map(|t| t.0), Some(0));
        assert_eq!(scan(b"").tail.map(|t| t.0), Some(0));
    }
}
