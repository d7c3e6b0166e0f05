//! The `poolrelay` command line.

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, ClusterCommand, Command};
use poolrelay::admin::client as admin_client;
use poolrelay::config;
use poolrelay::server::Relay;
use poolrelay::service_manager;
use poolrelay::sink::Sink;

/// Logs to stderr through a writer thread that writes many lines at once (see
/// `poolrelay::log_writer`); the guard flushes what is left when it is dropped at exit. Without
/// the thread (it could not start), lines go to stderr directly.
fn init_logging(default_level: &str) -> Option<poolrelay::log_writer::LogGuard> {
    init_logging_as(default_level, poolrelay::settings::LogFormat::Text)
}

/// Logging to stderr (through the log writer thread) in `format`; `RUST_LOG` sets the levels.
fn init_logging_as(
    default_level: &str,
    format: poolrelay::settings::LogFormat,
) -> Option<poolrelay::log_writer::LogGuard> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let (writer, guard) = match poolrelay::log_writer::start(std::io::stderr()) {
        Ok((writer, guard)) => (BoxMakeWriter::new(writer), Some(guard)),
        Err(_) => (BoxMakeWriter::new(std::io::stderr), None),
    };
    let lines = tracing_subscriber::fmt::layer().with_writer(writer);
    let lines = match format {
        poolrelay::settings::LogFormat::Json => lines.json().with_current_span(false).boxed(),
        poolrelay::settings::LogFormat::Text if poolrelay::journal::stderr_is_journal() => lines
            .event_format(poolrelay::journal::JournalFormat::default())
            .boxed(),
        poolrelay::settings::LogFormat::Text => lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .init();
    guard
}

/// SIGTERM and SIGINT, listened for from creation on. One value lives for the whole run, so a
/// signal that arrives while the relay is busy elsewhere (a reload, a burst of sink output) is
/// kept until the next `recv`; a listener made anew for each wait would miss a signal arriving
/// between two waits, and the relay's handler would have replaced the default action.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let config = config::load(&path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let relay = Relay::start(config).await?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut stop = StopSignals::new()?;
    service_manager::ready(relay.smtp_addrs());
    loop {
        tokio::select! {
            signal = stop.recv() => {
                tracing::info!(signal, "signal received");
                break;
            }
            _ = hangup.recv() => {
                service_manager::reloading();
                if let Err(error) = relay.reload().await {
                    tracing::error!(error = ?error, "reload refused; the running configuration is kept");
                }
                service_manager::ready(relay.smtp_addrs());
            }
        }
    }
    service_manager::stopping();
    relay.shutdown().await;
    Ok(())
}

async fn sink(listen: std::net::SocketAddr, stats: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(stats) = stats else {
        poolrelay::server::install_crypto_provider();
        // Offers STARTTLS (self-signed) so configuration sets with tls_policy = "REQUIRE" can deliver.
        let sink = Sink::start_with_self_signed_tls(listen).await?;
        eprintln!(
            "recording sink listening on {} (STARTTLS offered)",
            sink.addr()
        );
        let mut seen = 0;
        let mut stop = StopSignals::new()?;
        loop {
            tokio::select! {
                _ = stop.recv() => return Ok(()),
                messages = sink.wait_for(seen + 1, std::time::Duration::from_secs(3600)) => {
                    for message in &messages[seen..] {
                        println!(
                            "from {} (EHLO {}): <{}> -> {:?}, {} bytes{}",
                            message.peer.ip(), message.helo, message.sender, message.recipients, message.content.len(),
                            if message.violation.is_some() { ", NOT CLEAN CRLF" } else { "" }
                        );
                    }
                    seen = messages.len();
                }
            }
        }
    };
    let sink = Sink::start_with(listen, false).await?;
    eprintln!(
        "counting sink listening on {}, stats in {}",
        sink.addr(),
        stats.display()
    );
    let mut written = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let mut stop = StopSignals::new()?;
    loop {
        tokio::select! {
            _ = stop.recv() => return Ok(()),
            _ = tick.tick() => {
                let counts = sink.counts();
                if written.as_ref() != Some(&counts) {
                    let tmp = stats.with_extension("tmp");
                    std::fs::write(&tmp, serde_json::to_vec(&counts)?)?;
                    std::fs::rename(&tmp, &stats)?;
                    written = Some(counts);
                }
            }
        }
    }
}

/// `hash-password`: reads the password from standard input, prints its argon2 hash.
fn hash_password() -> ExitCode {
    let mut password = String::new();
    if std::io::stdin().read_line(&mut password).is_err()
        || password.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("poolrelay: give the password on standard input");
        return ExitCode::from(2);
    }
    match poolrelay::password::hash(password.trim_end_matches(['\r', '\n'])) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("poolrelay: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `check-config`: every problem with its line, or a summary of the pools and sets.
fn check_config(path: &Path, quiet: bool) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            println!("{}: ok", path.display());
            if !quiet {
                print!("{}", loaded.summary());
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(2)
        }
    }
}

/// `load`: sends the planned load and prints the report.
async fn load(plan: poolrelay::load::LoadPlan, json: bool) -> anyhow::Result<()> {
    let report = poolrelay::load::run(plan, true).await;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} messages: {} accepted, {} refused, {} errors in {:.2}s = {:.0} msg/s; MAIL→250 p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            report.messages,
            report.accepted,
            report.refused,
            report.errors,
            report.seconds,
            report.accepted_per_second,
            report.p50_ms,
            report.p99_ms,
            report.max_ms
        );
    }
    Ok(())
}

/// The commands that need the async runtime.
async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let format = poolrelay::settings::LogFormat::of_config(&config);
            let _log = init_logging_as("info", format);
            serve(config).await
        }
        Command::Demo {
            config,
            per_set,
            console,
        } => {
            let _log = init_logging("warn");
            poolrelay::demo::run(&config, per_set.max(1), console).await
        }
        Command::Sink { listen, stats } => {
            let _log = init_logging("info");
            sink(listen, stats).await
        }
        Command::Load {
            target,
            connections,
            messages,
            size,
            configuration_sets,
            connection_per_message,
            recipient_domain,
            json,
            api,
            region,
        } => {
            let _log = init_logging("warn");
            let api = match api {
                true => Some(api_credentials(region)?),
                false => None,
            };
            let plan = poolrelay::load::LoadPlan {
                target,
                connections,
                messages,
                size,
                configuration_sets,
                connection_per_message,
                recipient_domain,
                api,
            };
            load(plan, json).await
        }
        Command::Cluster { command } => {
            let _log = init_logging("warn");
            match command {
                ClusterCommand::Init { config } => poolrelay::fleet::commands::init(&config).await,
                ClusterCommand::Export { config } => {
                    poolrelay::fleet::commands::export(&config).await
                }
                ClusterCommand::Status { config, json } => {
                    poolrelay::fleet::commands::status(&config, json).await
                }
            }
        }
        Command::Suppression { target, command } => {
            let action = command.action();
            poolrelay::admin::suppression_client::run(&target.socket()?, action, target.json).await
        }
        admin => match admin.admin_action() {
            Some((target, action)) => {
                admin_client::run(&target.socket()?, action, target.json).await
            }
            None => Ok(()),
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::HashPassword => return hash_password(),
        Command::CheckConfig { config, quiet } => return check_config(config, *quiet),
        Command::Init { dir } => {
            return match poolrelay::init::write_starter(dir) {
                Ok(path) => {
                    println!(
                        "wrote {}; check it with poolrelay check-config --config {}",
                        path.display(),
                        path.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("poolrelay: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            return match poolrelay::manual::write_pages(Cli::command(), dir) {
                Ok(pages) => {
                    println!("{} man pages written to {}", pages.len(), dir.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("poolrelay: cannot write the man pages: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "poolrelay", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("poolrelay: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("poolrelay: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The key `poolrelay load --api` signs with, from the environment as the AWS tools read it.
fn api_credentials(region: String) -> anyhow::Result<poolrelay::load_api::ApiCredentials> {
    let read = |name: &str| {
        std::env::var(name).map_err(|_| {
            anyhow::anyhow!("--api needs {name} in the environment (the key to sign with)")
        })
    };
    Ok(poolrelay::load_api::ApiCredentials {
        access_key_id: read("AWS_ACCESS_KEY_ID")?,
        secret_access_key: read("AWS_SECRET_ACCESS_KEY")?,
        region,
    })
}
