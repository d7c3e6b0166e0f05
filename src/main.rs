//! The `poolrelay` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use poolrelay::config;
use poolrelay::server::Relay;
use poolrelay::sink::Sink;

#[derive(Parser)]
#[command(
    name = "poolrelay",
    version,
    about = "SMTP relay with SES-style dedicated IP pools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay in the foreground (logs to stderr; RUST_LOG sets the level).
    Serve {
        #[arg(long, default_value = "config/poolrelay.toml")]
        config: PathBuf,
    },
    /// Check a config file and print a summary of its pools and configuration sets.
    CheckConfig {
        #[arg(long, default_value = "config/poolrelay.toml")]
        config: PathBuf,
    },
    /// Start a sink and the relay on the example config, send mail through every configuration
    /// set, and show which source IP each message left from.
    Demo {
        #[arg(long, default_value = "config/poolrelay.toml")]
        config: PathBuf,
        /// Messages per configuration set (more than 1 prints a summary instead of a row each).
        #[arg(long, default_value_t = 1)]
        per_set: usize,
    },
    /// Send load to an SMTP relay and report messages per second and latency.
    Load {
        /// The relay to send to.
        #[arg(long, default_value = "127.0.0.1:2525")]
        target: std::net::SocketAddr,
        /// Concurrent SMTP sessions.
        #[arg(long, default_value_t = 20)]
        connections: usize,
        /// Messages in all.
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 2048)]
        size: usize,
        /// Configuration set names, used in turn (comma-separated); none: no header.
        #[arg(long, value_delimiter = ',')]
        configuration_sets: Vec<String>,
        /// Open a new connection for every message instead of reusing sessions.
        #[arg(long)]
        connection_per_message: bool,
        /// Domain of the generated recipients.
        #[arg(long, default_value = "example.test")]
        recipient_domain: String,
        /// Print the report as one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a recording SMTP sink that logs the source address of every message it receives.
    Sink {
        #[arg(long, default_value = "127.0.0.1:2526")]
        listen: std::net::SocketAddr,
        /// Keep only counts (per source IP), not content, and write them as JSON to this file
        /// about ten times a second (for benchmarks).
        #[arg(long)]
        stats: Option<PathBuf>,
    },
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let config = config::load(&path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let relay = Relay::start(config).await?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            signal = wait_for_signal() => {
                tracing::info!(signal = signal?, "signal received");
                break;
            }
            _ = hangup.recv() => {
                if let Err(error) = relay.reload().await {
                    tracing::error!(error = ?error, "reload refused; the running configuration is kept");
                }
            }
        }
    }
    relay.shutdown().await;
    Ok(())
}

async fn sink(listen: std::net::SocketAddr, stats: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(stats) = stats else {
        let sink = Sink::start(listen).await?;
        eprintln!("recording sink listening on {}", sink.addr());
        let mut seen = 0;
        loop {
            tokio::select! {
                signal = wait_for_signal() => { signal?; return Ok(()); }
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
    loop {
        tokio::select! {
            signal = wait_for_signal() => { signal?; return Ok(()); }
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CheckConfig { config } = &cli.command {
        return match config::load(config) {
            Ok(loaded) => {
                println!("{}: ok", config.display());
                print!("{}", loaded.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("poolrelay: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => {
                init_logging("info");
                serve(config).await
            }
            Command::Demo { config, per_set } => {
                init_logging("warn");
                poolrelay::demo::run(&config, per_set.max(1)).await
            }
            Command::Sink { listen, stats } => {
                init_logging("info");
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
            } => {
                init_logging("warn");
                let plan = poolrelay::load::LoadPlan {
                    target,
                    connections,
                    messages,
                    size,
                    configuration_sets,
                    connection_per_message,
                    recipient_domain,
                };
                let report = poolrelay::load::run(plan, true).await;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!(
                        "{} messages: {} accepted, {} refused, {} errors in {:.2}s = {:.0} msg/s; MAIL→250 p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                        report.messages, report.accepted, report.refused, report.errors, report.seconds,
                        report.accepted_per_second, report.p50_ms, report.p99_ms, report.max_ms
                    );
                }
                Ok(())
            }
            Command::CheckConfig { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("poolrelay: {error:#}");
            ExitCode::FAILURE
        }
    }
}
