//! The outbound reply parser on what a hostile next hop may send, a byte at a time or in
//! pieces: no panic, replies come out or a clear error, and it never takes more than the input.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use poolrelay::outbound::client::ReplyReader;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 64) + 1;
    let mut input = BytesMut::new();
    let mut reader = ReplyReader::default();
    for chunk in rest.chunks(step) {
        input.extend_from_slice(chunk);
        loop {
            let before = input.len();
            match reader.next(&mut input) {
                Ok(Some(reply)) => {
                    assert!((100..1000).contains(&reply.code) || reply.code < 1000);
                    reader = ReplyReader::default();
                }
                Ok(None) => break,
                Err(_) => return,
            }
            if input.len() == before {
                break;
            }
        }
    }
});
