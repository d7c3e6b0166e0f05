//! The admin API's request bodies: arbitrary bytes through the JSON body reader and its typed
//! accessors, as every handler uses them. Wrong types are 400s, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = poolrelay::admin::read_request_body(data);
});
