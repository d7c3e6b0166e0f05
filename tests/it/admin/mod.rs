//! The admin socket, driven over a real Unix socket: SESv2 shapes and errors, changes that take
//! effect for the next message, persistence that keeps the operator's comments, and the socket's
//! permission and peer-credential checks.

use std::path::{Path, PathBuf};

use crate::common::*;

mod cli;
mod metrics;
mod queue;
mod reload;
mod resources;
mod socket;

pub(super) fn admin_config(sink: std::net::SocketAddr, admin_extra: &str) -> String {
    format!(
        r#"# operator notes: do not remove
{}{}[admin]
socket = "var/admin.sock"
{admin_extra}

# pool a serves the reset mail
[[pool]]
name = "a"
[[pool]]
name = "b"
[[ip]]
address = "127.0.0.2" # the first address
pool = "a"
[[ip]]
address = "127.0.0.3"
pool = "b"
[[configuration_set]]
name = "sa"
sending_pool = "a"
"#,
        smtp_section(""),
        catch_all_route(sink)
    )
}

pub(super) fn socket(dir: &Path) -> PathBuf {
    dir.join("var/admin.sock")
}

pub(super) async fn send_with_set(relay: &TestRelay, set: &str, subject: &str) {
    let (mut client, _) = RawClient::connect(relay.addr).await;
    client.send_for_set(set, "user@example.test", subject).await;
}
