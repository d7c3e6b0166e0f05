//! The AUTH exchange inside a session (RFC 4954): PLAIN and LOGIN, only inside TLS.
//!
//! Wrong credentials get `535 5.7.8`; from the third failure each reply is delayed a little
//! longer, and the fifth failure ends the session, so guessing is slow. `*` cancels (501), a
//! second AUTH after success gets 503, and a malformed exchange 501.

use std::time::{Duration, Instant};

use super::auth::{self, SaslError, SaslStep};
use super::session::{Next, Phase, Session};
use crate::smtp::Reply;

/// Failures after which replies are delayed.
const SLOW_AFTER: u32 = 2;
/// Failures after which the session is closed.
const CLOSE_AFTER: u32 = 5;

impl Session {
    pub(super) fn auth_command(&mut self, mechanism: u64, initial_response: String) -> Next {
        if self.authenticated.is_some() {
            return self.error(Reply::new(503, "5.5.1", "Already authenticated"));
        }
        if self.transaction().is_some() {
            return self.error(Reply::new(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            ));
        }
        if self.tls.is_none() {
            return self.error(Reply::new(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            ));
        }
        if self.greeting().is_none() {
            return self.error(Reply::new(503, "5.5.1", "Send EHLO first"));
        }
        if self.ctx.settings.users.is_empty() {
            return self.error(Reply::new(504, "5.5.4", "Authentication is not enabled"));
        }
        let initial = initial_response.trim();
        if mechanism == smtp_proto::AUTH_PLAIN {
            if initial.is_empty() {
                self.await_sasl(SaslStep::PlainResponse);
                self.reply(Reply::new(334, "", ""));
                return Next::ReadMore;
            }
            return self.sasl_line(SaslStep::PlainResponse, initial.as_bytes());
        }
        if mechanism == smtp_proto::AUTH_LOGIN {
            if initial.is_empty() {
                self.await_sasl(SaslStep::LoginUsername);
                self.reply(Reply::new(334, "", auth::challenge("Username:")));
                return Next::ReadMore;
            }
            return self.sasl_line(SaslStep::LoginUsername, initial.as_bytes());
        }
        self.error(Reply::new(
            504,
            "5.5.4",
            "Unrecognized authentication type; use PLAIN or LOGIN",
        ))
    }

    /// The client's next line answers a 334.
    fn await_sasl(&mut self, step: SaslStep) {
        if let Phase::Ready(greeting) = std::mem::replace(&mut self.phase, Phase::Connected) {
            self.phase = Phase::Sasl(greeting, step);
        }
    }

    /// One client line of a SASL exchange.
    pub(super) fn sasl_line(&mut self, step: SaslStep, line: &[u8]) -> Next {
        let failed = |error: SaslError| match error {
            SaslError::Cancelled => Reply::new(501, "5.0.0", "Authentication cancelled"),
            SaslError::Malformed => Reply::new(501, "5.5.2", "Malformed authentication response"),
        };
        match step {
            SaslStep::PlainResponse => match auth::decode_plain(line) {
                Ok((username, password)) => Next::Authenticate { username, password },
                Err(error) => self.error(failed(error)),
            },
            SaslStep::LoginUsername => match auth::decode_line(line) {
                Ok(username) => {
                    self.await_sasl(SaslStep::LoginPassword { username });
                    self.reply(Reply::new(334, "", auth::challenge("Password:")));
                    Next::ReadMore
                }
                Err(error) => self.error(failed(error)),
            },
            SaslStep::LoginPassword { username } => match auth::decode_line(line) {
                Ok(password) => Next::Authenticate { username, password },
                Err(error) => self.error(failed(error)),
            },
        }
    }

    /// Checks the credentials and replies. Returns false when the session must end.
    pub(super) async fn authenticate(&mut self, username: String, password: String) -> bool {
        let client = self.peer.ip();
        let limits = &self.ctx.auth_limits;
        if limits.blocked(client, Instant::now()) {
            tracing::warn!(%client, "authentication refused: too many failures from this address");
            self.reply(Reply::new(
                421,
                "4.7.0",
                "Too many failed authentications from your address, try again later",
            ));
            return false;
        }
        let users = self.ctx.settings.users.clone();
        let turn = limits.turn().await;
        let checked = tokio::task::spawn_blocking(move || {
            auth::verify(&users, &username, &password).cloned()
        })
        .await;
        drop(turn);
        match checked {
            Ok(Some(user)) => {
                tracing::info!(client = %self.peer, user = %user.username, "authenticated");
                self.authenticated = Some(user);
                self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
                true
            }
            _ => {
                self.auth_failures += 1;
                limits.failed(client, Instant::now());
                tracing::warn!(client = %self.peer, failures = self.auth_failures, "authentication failed");
                if self.auth_failures > SLOW_AFTER {
                    let delay =
                        Duration::from_millis(250 * u64::from(self.auth_failures - SLOW_AFTER));
                    tokio::time::sleep(delay).await;
                }
                self.reply(Reply::new(
                    535,
                    "5.7.8",
                    "Authentication credentials invalid",
                ));
                if self.auth_failures >= CLOSE_AFTER {
                    self.reply(Reply::new(421, "4.7.0", "Too many authentication failures"));
                    return false;
                }
                true
            }
        }
    }
}
