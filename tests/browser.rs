//! The console in a real browser (headless Chromium driven by Selenium), in a test binary of its
//! own: cargo runs test binaries one after another, so Chromium starts on a machine that is not
//! busy with the other integration tests (under that load it sometimes exited while starting).

#[allow(dead_code)]
#[path = "it/common/mod.rs"]
mod common;
#[path = "it/console/mod.rs"]
mod console;
