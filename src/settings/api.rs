//! `[api]` and `[[api.key]]`: the SESv2 HTTP API's listeners and the keys that may sign requests.

use std::net::SocketAddr;

/// One access key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub access_key_id: String,
    /// The secret access key (from `secret_access_key_file` or inline); never logged.
    pub secret: String,
    /// `allow` has `send`: SendEmail and friends.
    pub send: bool,
    /// `allow` has `admin`: every other operation.
    pub admin: bool,
    /// As `[[smtp.user]]`: the configuration sets this key may send through (`None`: any).
    pub allowed_configuration_sets: Option<Vec<String>>,
    /// The From: domains this key may send as (`None`: any).
    pub allowed_from_domains: Option<Vec<String>>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("access_key_id", &self.access_key_id)
            .field("send", &self.send)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    pub listen: Vec<SocketAddr>,
    /// The region requests must be signed for.
    pub region: String,
    /// HTTPS with the `[smtp.tls]` certificate.
    pub tls: bool,
    pub keys: Vec<ApiKey>,
}

impl ApiSettings {
    pub fn key(&self, access_key_id: &str) -> Option<&ApiKey> {
        self.keys.iter().find(|k| k.access_key_id == access_key_id)
    }
}
