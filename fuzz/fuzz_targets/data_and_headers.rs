//! The DATA reader (both bare-newline policies) and the header classifier on arbitrary message
//! bytes in arbitrary reads: no panic, nothing after the end marker is taken, and a normalized
//! message has only CRLF line ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use poolrelay::inbound::HeaderFilter;
use poolrelay::settings::BareNewline;
use poolrelay::smtp::data::DataReader;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 32) + 1;
    for policy in [BareNewline::Reject, BareNewline::Normalize] {
        let mut reader = DataReader::new(policy, 1 << 20);
        let mut filter = HeaderFilter::new();
        let (mut content, mut kept) = (Vec::new(), Vec::new());
        let mut consumed = 0;
        for chunk in rest.chunks(step) {
            let mut offset = 0;
            while offset < chunk.len() {
                content.clear();
                let fed = reader.feed(&chunk[offset..], &mut content);
                filter.feed(&content, &mut kept);
                offset += fed.consumed;
                consumed += fed.consumed;
                if fed.finished {
                    break;
                }
                if fed.consumed == 0 {
                    break;
                }
            }
        }
        filter.finish(&mut kept);
        assert!(consumed <= rest.len());
        if policy == BareNewline::Normalize && reader.violation().is_none() {
            for (i, &b) in kept.iter().enumerate() {
                if b == b'\n' {
                    assert!(i > 0 && kept[i - 1] == b'\r', "bare LF kept at {i}");
                }
            }
        }
        if let Some(set) = filter.configuration_set() {
            assert!(set.len() <= 8 * 1024);
        }
    }
});
