//! `[[admin.user]]`: the people who may sign in to the console, and what they may do.

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything the admin API can do.
    Admin,
    /// Sees every page, changes nothing.
    Viewer,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "admin" => Ok(Self::Admin),
            "viewer" => Ok(Self::Viewer),
            other => Err(format!("role is \"admin\" or \"viewer\", not {other:?}")),
        }
    }
}

/// One `[[admin.user]]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub username: String,
    /// argon2 PHC string (`poolrelay hash-password`).
    pub password_hash: String,
    pub role: Role,
}

impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}
