//! The inbound command parser and session state machine, fed arbitrary bytes in arbitrary
//! reads: it must never panic, and everything it writes must be well-formed reply lines.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use poolrelay::inbound::InboundContext;
use poolrelay::inbound::harness;

fn context() -> &'static Arc<InboundContext> {
    static CONTEXT: OnceLock<Arc<InboundContext>> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("poolrelay-fuzz-{}", std::process::id()));
        harness::context(&dir).expect("a harness context")
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the input is cut into reads.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(cut % 16) + 1;
    let chunks: Vec<&[u8]> = if cut >= 128 {
        vec![rest]
    } else {
        rest.chunks(step).collect()
    };
    let transcript = harness::run(context(), &chunks);
    for line in &transcript.lines {
        let bytes = line.as_bytes();
        assert!(
            bytes.len() >= 5 && bytes[..3].iter().all(u8::is_ascii_digit),
            "{line:?}"
        );
        assert!(
            line.ends_with("\r\n") && !line[..line.len() - 2].contains(['\r', '\n']),
            "{line:?}"
        );
    }
});
