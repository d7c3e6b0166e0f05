//! Text log lines for the systemd journal.
//!
//! Under systemd, the relay's stderr is a stream into journald, which stamps each line with its
//! own time and reads a leading `<N>` as the line's syslog priority (sd-daemon(3)). So when stderr
//! is that stream, lines drop their own timestamp and start with the priority of their level:
//! `journalctl -u poolrelay -p warning` then shows warnings and errors only. systemd names the
//! stream in `JOURNAL_STREAM` (`device:inode`); a relay whose stderr was redirected elsewhere
//! by hand keeps the usual format.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether stderr is the journal stream systemd handed over (`JOURNAL_STREAM` names its device
/// and inode).
pub fn stderr_is_journal() -> bool {
    let Some(named) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` for a valid descriptor; 2 is stderr.
    if unsafe { libc::fstat(2, stat.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    named.to_string_lossy() == format!("{}:{}", stat.st_dev, stat.st_ino)
}

/// The syslog priority journald reads from a `<N>` prefix.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// The usual text line without its timestamp, behind the level's `<N>` priority.
pub struct JournalFormat {
    inner: Format<tracing_subscriber::fmt::format::Full, ()>,
}

impl Default for JournalFormat {
    fn default() -> Self {
        Self {
            inner: Format::default().without_time().with_ansi(false),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.inner.format_event(context, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn lines_carry_their_priority_and_no_timestamp() {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .event_format(JournalFormat::default())
            .with_writer(captured.clone())
            .with_max_level(Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(id = 7, "cannot write");
            tracing::warn!("slow");
            tracing::info!(listen = "127.0.0.1:25", "accepting mail");
            tracing::debug!("detail");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].starts_with("<3>ERROR") && lines[0].contains("id=7"),
            "{text}"
        );
        assert!(lines[1].starts_with("<4> WARN"), "{text}");
        assert!(lines[2].starts_with("<6> INFO") && lines[2].contains("accepting mail"));
        assert!(lines[3].starts_with("<7>DEBUG"), "{text}");
        assert!(!text.contains("\u{1b}["), "no colours: {text}");
    }
}
