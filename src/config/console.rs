//! `[[admin.user]]`: unique names, valid password hashes, known roles.

use toml::Spanned;

use super::problems::Problems;
use super::raw::RawAdminUser;
use crate::settings::console::{ConsoleUser, Role};

pub(super) fn users(
    raw: &[Spanned<RawAdminUser>],
    problems: &mut Problems<'_>,
) -> Vec<ConsoleUser> {
    let mut users: Vec<ConsoleUser> = Vec::new();
    for user in raw {
        let user = user.get_ref();
        let name = user.username.get_ref();
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            problems.at(
                user.username.span(),
                format!("admin user name {name:?} is invalid: 1-64 characters, no spaces"),
            );
            continue;
        }
        if users.iter().any(|u| &u.username == name) {
            problems.at(
                user.username.span(),
                format!("admin user {name:?} is defined twice"),
            );
        }
        let hash = problems.check(&user.password_hash, |h| {
            crate::password::check_hash(h).map(|()| h.to_string())
        });
        let role = match &user.role {
            None => Some(Role::Viewer),
            Some(role) => problems.check(role, |r| r.parse::<Role>()),
        };
        if let (Some(password_hash), Some(role)) = (hash, role) {
            users.push(ConsoleUser {
                username: name.clone(),
                password_hash,
                role,
            });
        }
    }
    users
}
