//! Console sign-in: `[[admin.user]]` passwords checked with argon2 (off the runtime), sessions
//! kept in memory behind a random cookie (`HttpOnly; SameSite=Strict`, `Secure` over HTTPS,
//! `Path=/console`) that lapse after `IDLE_TIMEOUT` without a request, a CSRF token per session
//! on every form, and failed sign-ins slowed per client address as SMTP AUTH failures are.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;

use crate::settings::console::{ConsoleUser, Role};

/// A session without a request for this long is over.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The cookie's name.
pub const COOKIE: &str = "poolrelay_console";
/// Each failed sign-in from an address makes its next attempt wait this much longer (at most
/// `MAX_FAILURE_DELAY`).
const FAILURE_DELAY: Duration = Duration::from_millis(500);
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(5);
/// Sessions kept at most (the oldest idle ones go first).
const MAX_SESSIONS: usize = 10_000;

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub username: String,
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    last_seen: Instant,
}

/// Users, sessions and failure counts of one console.
pub struct Sessions {
    users: Vec<ConsoleUser>,
    by_token: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, u32>>,
    /// Cookies get `Secure` (the console is served over HTTPS).
    pub secure: bool,
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares two tokens in constant time.
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    pub fn new(users: Vec<ConsoleUser>, secure: bool) -> Self {
        Self {
            users,
            by_token: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            secure,
        }
    }

    /// The session a cookie names, if it is still alive (and now touched).
    pub fn find(&self, token: &str) -> Option<Session> {
        let mut sessions = self.by_token.lock();
        let now = Instant::now();
        let alive = sessions
            .get(token)
            .is_some_and(|s| now.duration_since(s.last_seen) < IDLE_TIMEOUT);
        if !alive {
            sessions.remove(token);
            return None;
        }
        let session = sessions.get_mut(token)?;
        session.last_seen = now;
        Some(session.clone())
    }

    /// Checks a form's CSRF token against the session's.
    pub fn csrf_ok(session: &Session, given: Option<&str>) -> bool {
        given.is_some_and(|given| same(given, &session.csrf))
    }

    /// Signs in: the new session's cookie token, or `None` (after the address's delay).
    pub async fn sign_in(&self, client: IpAddr, username: &str, password: &str) -> Option<String> {
        let failures = self.failures.lock().get(&client).copied().unwrap_or(0);
        let delay = (FAILURE_DELAY * failures).min(MAX_FAILURE_DELAY);
        tokio::time::sleep(delay).await;
        let user = self.users.iter().find(|u| u.username == username).cloned();
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || {
            crate::password::verify(hash.as_deref(), &password)
        })
        .await
        .unwrap_or(false);
        let Some(user) = user.filter(|_| matches) else {
            *self.failures.lock().entry(client).or_insert(0) += 1;
            tracing::warn!(%client, username = %crate::inbound::sanitize_name(username), "console sign-in failed");
            return None;
        };
        self.failures.lock().remove(&client);
        let token = random_token();
        let mut sessions = self.by_token.lock();
        if sessions.len() >= MAX_SESSIONS {
            let now = Instant::now();
            sessions.retain(|_, s| now.duration_since(s.last_seen) < IDLE_TIMEOUT);
        }
        sessions.insert(
            token.clone(),
            Session {
                username: user.username.clone(),
                role: user.role,
                csrf: random_token(),
                last_seen: Instant::now(),
            },
        );
        tracing::info!(%client, username = %user.username, "console sign-in");
        Some(token)
    }

    pub fn sign_out(&self, token: &str) {
        self.by_token.lock().remove(token);
    }

    /// The `Set-Cookie` value for a session token (`None`: the cookie is cleared).
    pub fn cookie(&self, token: Option<&str>) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        match token {
            Some(token) => format!(
                "{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                IDLE_TIMEOUT.as_secs()
            ),
            None => {
                format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
            }
        }
    }
}

/// The session token in a `Cookie:` header.
pub fn token_from_cookies(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        let hash = crate::password::hash("right horse").expect("hash");
        Sessions::new(
            vec![ConsoleUser {
                username: "ops".into(),
                password_hash: hash,
                role: Role::Admin,
            }],
            true,
        )
    }

    #[tokio::test]
    async fn a_right_password_makes_a_session_and_a_wrong_one_does_not() {
        let sessions = sessions();
        let client: IpAddr = "192.0.2.1".parse().expect("ip");
        assert_eq!(sessions.sign_in(client, "ops", "wrong").await, None);
        assert_eq!(
            sessions.sign_in(client, "nobody", "right horse").await,
            None
        );
        let token = sessions
            .sign_in(client, "ops", "right horse")
            .await
            .expect("signed in");
        let session = sessions.find(&token).expect("alive");
        assert_eq!(
            (session.username.as_str(), session.role),
            ("ops", Role::Admin)
        );
        assert!(Sessions::csrf_ok(&session, Some(&session.csrf)));
        assert!(!Sessions::csrf_ok(&session, Some("forged")));
        assert!(!Sessions::csrf_ok(&session, None));
        let cookie = sessions.cookie(Some(&token));
        for flag in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/console"] {
            assert!(cookie.contains(flag), "{cookie}");
        }
        assert_eq!(
            token_from_cookies(&format!("a=b; {COOKIE}={token}")),
            Some(token.as_str())
        );
        sessions.sign_out(&token);
        assert!(sessions.find(&token).is_none());
    }
}
