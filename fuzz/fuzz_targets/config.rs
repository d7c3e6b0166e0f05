//! The config loader on arbitrary text: every problem is an error with a place, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) =
        poolrelay::config::parse(std::path::Path::new("/fuzz/poolrelay.toml"), text)
    {
        assert!(!errors.0.is_empty());
    }
});
