//! Settings types shared by the config and the stages that apply them: plain data with their
//! parsing and matching rules, importing nothing else of the relay but `domain` (names are
//! compared as A-labels). The config file is parsed
//! into these; `registry`, `smtp` and `outbound` read them. Keeping them here is what lets the
//! config depend on no stage of the flow.

pub mod account;
pub mod api;
pub mod cluster;
pub mod console;
pub mod feedback;
pub mod health;
pub mod route;
pub mod shaping;
pub mod suppression;
pub mod warmup;

pub use warmup::{WarmupSettings, default_warmup_schedule};

/// `[log] format`: text lines (the default) or JSON lines with the same fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("log format {text:?} is not \"text\" or \"json\"")),
        }
    }

    /// The `[log] format` of a config file, read on its own before logging starts (the file is
    /// checked fully afterwards): text when the file or the key cannot be read.
    pub fn of_config(path: &std::path::Path) -> Self {
        #[derive(serde::Deserialize)]
        struct Only {
            log: Option<LogOnly>,
        }
        #[derive(serde::Deserialize)]
        struct LogOnly {
            format: Option<String>,
        }
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| toml::from_str::<Only>(&text).ok())
            .and_then(|only| only.log?.format)
            .and_then(|format| Self::parse(&format).ok())
            .unwrap_or_default()
    }
}

/// What to do with a bare LF or bare CR inside DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareNewline {
    /// Refuse the message with 554 5.6.0 (Postfix `smtpd_forbid_bare_newline = reject`).
    Reject,
    /// Accept it as a line end, written out as CRLF; never as part of the end-of-data marker.
    Normalize,
}
