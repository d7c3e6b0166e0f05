//! Collecting every problem of a config file with its line and column, and the small value
//! parsers the sections share.

use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::ConfigError;
use super::raw::Text;

/// Collects errors and turns byte spans into line and column numbers.
pub(super) struct Problems<'a> {
    path: &'a Path,
    text: &'a str,
    pub(super) errors: Vec<ConfigError>,
}

impl<'a> Problems<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            path,
            text,
            errors: Vec::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// A duration setting, or `default` seconds when absent (or invalid, which is recorded).
    pub(super) fn duration_or(&mut self, value: &Option<Text>, default: u64) -> Duration {
        value
            .as_ref()
            .and_then(|v| self.check(v, parse_duration))
            .unwrap_or(Duration::from_secs(default))
    }

    pub(super) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        self.errors.push(ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    /// Parses a spanned string with `parse`, recording the error at the value's location.
    pub(super) fn check<T>(
        &mut self,
        value: &Text,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match parse(value.get_ref()) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                self.at(value.span(), message);
                None
            }
        }
    }
}

pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is not a duration (write \"30s\", \"5m\", \"2h\" or \"5d\")")
    })
}

pub(super) fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 address"))
}

pub(super) fn parse_hostname(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!("{text:?} is not a valid host name"))
    }
}

pub(super) fn number_in(
    value: &Spanned<u64>,
    range: Range<u64>,
    what: &str,
    problems: &mut Problems<'_>,
) -> u64 {
    let number = *value.get_ref();
    if !range.contains(&number) {
        problems.at(
            value.span(),
            format!(
                "{what} must be between {} and {}",
                range.start,
                range.end - 1
            ),
        );
    }
    number
}
