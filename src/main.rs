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
    /// Run a recording SMTP sink that logs the source address of every message it receives.
    Sink {
        #[arg(long, default_value = "127.0.0.1:2526")]
        listen: std::net::SocketAddr,
    },
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
    let config = config::load(&path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let relay = Relay::start(config).await?;
    let signal = wait_for_signal().await?;
    tracing::info!(signal, "signal received");
    relay.shutdown().await;
    Ok(())
}

async fn sink(listen: std::net::SocketAddr) -> anyhow::Result<()> {
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
            Command::Sink { listen } => {
                init_logging("info");
                sink(listen).await
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
