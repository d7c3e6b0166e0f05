//! Telling systemd how the relay is doing (`Type=notify` in the packaged unit).
//!
//! systemd hands a service the path of a datagram socket in `NOTIFY_SOCKET`; the service writes
//! `READY=1` there once it is really up. For poolrelay "up" means the spool is recovered and every
//! listener is bound, so `systemctl start` returns only when mail can be handed over, and units
//! ordered `After=poolrelay.service` start against a relay that answers. Reloads (SIGHUP) and
//! shutdown are announced too, so `systemctl reload` waits for the new configuration.
//!
//! Without `NOTIFY_SOCKET` (the relay started by hand, or by another supervisor) every call here
//! does nothing. A failure to notify is logged, never fatal: the relay works without systemd.

use sd_notify::NotifyState;
use std::net::SocketAddr;

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// The spool is recovered and the listeners at `listen` accept mail.
pub fn ready(listen: &[SocketAddr]) {
    let status = status_line(listen);
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A reload (SIGHUP) has started; `ready` follows when it is over, whatever its outcome.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The relay is shutting down: listeners close, unfinished work stays in the spool.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("shutting down; unfinished mail stays in the spool"),
    ]);
}

/// The `STATUS=` line `systemctl status` shows.
fn status_line(listen: &[SocketAddr]) -> String {
    let addresses: Vec<String> = listen.iter().map(ToString::to_string).collect();
    format!("accepting mail on {}", addresses.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_names_every_listener() {
        let listen = [
            "127.0.0.1:25".parse().unwrap(),
            "[::1]:587".parse().unwrap(),
        ];
        assert_eq!(
            status_line(&listen),
            "accepting mail on 127.0.0.1:25, [::1]:587"
        );
    }
}
