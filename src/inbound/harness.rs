//! An inbound session's protocol driven with bytes, without sockets or a runtime: what the fuzz
//! targets (`fuzz/`) and the session's property test feed arbitrary input to. The DATA phase
//! and STARTTLS need a connection; here they end the run.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::auth_limits::AuthLimits;
use super::context::InboundContext;
use super::per_ip::PerIpConnections;
use super::session::{Next, Session};
use crate::events::EventLog;
use crate::queue::QueueHandle;
use crate::spool::Spool;

/// The config the harness runs on: relaying from loopback, one configuration set, one user.
const CONFIG: &str = r#"[smtp]
listen = ["127.0.0.1:0"]
hostname = "relay.test"
max_recipients = 5
[[ip]]
address = "127.0.0.2"
[[configuration_set]]
name = "news"
"#;

/// What a session said, and why it stopped.
#[derive(Debug, Default)]
pub struct Transcript {
    /// Every reply line, with its CRLF.
    pub lines: Vec<String>,
    /// The session stopped reading commands: it closed, or DATA, STARTTLS or AUTH began.
    pub stopped: bool,
}

/// A context for harness sessions, spooling (if ever) under `spool_dir`.
pub fn context(spool_dir: &Path) -> std::io::Result<Arc<InboundContext>> {
    let config = crate::config::parse(Path::new("/harness/poolrelay.toml"), CONFIG)
        .map_err(|errors| std::io::Error::other(errors.to_string()))?;
    Ok(Arc::new(InboundContext {
        registry: Arc::new(ArcSwap::from_pointee(config.registry.clone())),
        spool: Spool::open(spool_dir)?,
        queue: QueueHandle::detached(),
        shutdown: CancellationToken::new(),
        max_age: config.queue.max_age,
        events: Arc::new(EventLog::disabled()),
        per_ip: PerIpConnections::new(config.smtp.max_connections_per_ip),
        auth_limits: AuthLimits::new(1, config.smtp.auth_failures_per_ip),
        tls: None,
        feedback: None,
        quota: Arc::default(),
        settings: config.smtp,
    }))
}

/// Feeds `chunks` (as separate reads) to a new session from 127.0.0.1 and returns what it said.
pub fn run(ctx: &Arc<InboundContext>, chunks: &[&[u8]]) -> Transcript {
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
    let mut session = Session::new(ctx.clone(), peer, None);
    let mut transcript = Transcript::default();
    for chunk in chunks {
        session.input.extend_from_slice(chunk);
        let next = session.ingest();
        collect(&mut session.output, &mut transcript);
        if next != Next::ReadMore {
            transcript.stopped = true;
            break;
        }
    }
    transcript
}

fn collect(output: &mut Vec<u8>, transcript: &mut Transcript) {
    let text = String::from_utf8_lossy(output).into_owned();
    output.clear();
    transcript
        .lines
        .extend(text.split_inclusive("\r\n").map(str::to_string));
}
