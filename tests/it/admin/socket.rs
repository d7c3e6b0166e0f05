//! The socket itself: peer credentials, what may stand at its path, its mode and group.

use std::os::unix::fs::PermissionsExt;

use crate::common::http::{call, call_expecting_error};
use crate::common::*;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_outside_allowed_uids_are_refused() {
    let sink = start_sink().await;
    let relay = TestRelay::start(&admin_config(sink.addr(), "allowed_uids = [4242424]")).await;
    call_expecting_error(
        &socket(relay.dir.path()),
        "GET",
        "/v2/email/dedicated-ip-pools",
        None,
        (403, "AccessDeniedException"),
    )
    .await;
    let (status, _) = call(
        &socket(relay.dir.path()),
        "POST",
        "/v2/email/dedicated-ip-pools",
        Some(json!({"PoolName": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    let text = std::fs::read_to_string(relay.dir.path().join("poolrelay.toml")).unwrap();
    assert!(!text.contains("name = \"x\""), "nothing changed");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_or_symlink_at_the_socket_path_stops_start_up() {
    let sink = start_sink().await;
    for kind in ["file", "symlink"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("var")).unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, b"do not delete").unwrap();
        let sock = socket(dir.path());
        if kind == "file" {
            std::fs::write(&sock, b"not a socket").unwrap();
        } else {
            std::os::unix::fs::symlink(&target, &sock).unwrap();
        }
        let path = dir.path().join("poolrelay.toml");
        std::fs::write(&path, admin_config(sink.addr(), "")).unwrap();
        let config = poolrelay::config::load(&path).unwrap();
        let error = poolrelay::server::Relay::start(config)
            .await
            .err()
            .expect("start-up is refused");
        assert!(
            format!("{error:#}").contains("is not a socket"),
            "{error:#}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"do not delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_group_gets_a_0660_socket() {
    use std::os::unix::fs::MetadataExt;
    let sink = start_sink().await;
    // "root" (gid 0) exists on every Linux machine.
    let relay = TestRelay::start(&admin_config(sink.addr(), "group = \"root\"")).await;
    let metadata = std::fs::metadata(socket(relay.dir.path())).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o660);
    assert_eq!(metadata.gid(), 0);
    relay.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("poolrelay.toml");
    std::fs::write(
        &path,
        admin_config(sink.addr(), "group = \"no-such-group-here\""),
    )
    .unwrap();
    let error = poolrelay::server::Relay::start(poolrelay::config::load(&path).unwrap())
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{error:#}").contains("no group named no-such-group-here"),
        "{error:#}"
    );
}

/// A folder that its group (or anyone) may write to stops start-up: another user could swap the
/// socket for a link between its creation and its chown. Failed before: only world-writable
/// folders were refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_writable_socket_folder_stops_start_up() {
    use std::os::unix::fs::PermissionsExt;
    let sink = start_sink().await;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("var");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o770)).unwrap();
    let path = dir.path().join("poolrelay.toml");
    std::fs::write(&path, admin_config(sink.addr(), "")).unwrap();
    let config = poolrelay::config::load(&path).unwrap();
    let error = poolrelay::server::Relay::start(config)
        .await
        .err()
        .expect("start-up is refused");
    assert!(
        format!("{error:#}").contains("writable by others than its owner"),
        "{error:#}"
    );
    assert!(!socket(dir.path()).exists(), "no socket was made");
}
