//! The `poolrelay` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use poolrelay::admin::client::{self as admin_client, Action};
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
    /// Read a password from standard input and print its argon2 hash for `[[smtp.user]]`.
    HashPassword,
    /// Dedicated IP pools, through the admin socket.
    Pools {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: PoolsCommand,
    },
    /// Dedicated IPs, through the admin socket.
    Ips {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: IpsCommand,
    },
    /// Configuration sets, through the admin socket.
    ConfigSets {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: SetsCommand,
    },
    /// The queue, through the admin socket.
    Queue {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Version, uptime, listeners and queue size of a running relay.
    Status {
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Make a running relay re-read its config file (as SIGHUP).
    Reload {
        #[command(flatten)]
        target: AdminTarget,
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

/// Which relay an admin command talks to.
#[derive(clap::Args)]
struct AdminTarget {
    /// The relay's config file: its `[admin] socket` is used.
    #[arg(long, global = true, default_value = "config/poolrelay.toml")]
    config: PathBuf,
    /// The admin socket, instead of reading it from the config.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

impl AdminTarget {
    fn socket(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        let config = config::load(&self.config).map_err(|errors| anyhow::anyhow!("{errors}"))?;
        config.admin.socket.ok_or_else(|| {
            anyhow::anyhow!(
                "{} has no [admin] socket; give --socket",
                self.config.display()
            )
        })
    }
}

#[derive(Subcommand)]
enum PoolsCommand {
    List,
    Create { name: String },
    Delete { name: String },
}

#[derive(Subcommand)]
enum IpsCommand {
    List {
        #[arg(long)]
        pool: Option<String>,
    },
    Add {
        ip: String,
        #[arg(long)]
        pool: Option<String>,
        #[arg(long)]
        ehlo_hostname: Option<String>,
        #[arg(long)]
        weight: Option<u32>,
    },
    /// Move an IP to another pool (ses-default-dedicated-pool takes it out of its pool).
    Move {
        ip: String,
        pool: String,
    },
    Remove {
        ip: String,
    },
    /// Take an IP out of rotation for every destination (saved in the config).
    Suspend {
        ip: String,
    },
    /// Put a suspended IP back into rotation (also lifts its site suspensions).
    Resume {
        ip: String,
    },
}

#[derive(Subcommand)]
enum SetsCommand {
    List,
    Create {
        name: String,
        #[arg(long)]
        pool: Option<String>,
    },
    Delete {
        name: String,
    },
    SetPool {
        name: String,
        pool: String,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    List,
    Retry { id: String },
    Hold { id: String },
    Release { id: String },
    Delete { id: String },
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
        poolrelay::server::install_crypto_provider();
        // Offers STARTTLS (self-signed) so configuration sets with tls_policy = "REQUIRE" can deliver.
        let sink = Sink::start_with_self_signed_tls(listen).await?;
        eprintln!(
            "recording sink listening on {} (STARTTLS offered)",
            sink.addr()
        );
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
    if let Command::HashPassword = &cli.command {
        let mut password = String::new();
        if std::io::stdin().read_line(&mut password).is_err()
            || password.trim_end_matches(['\r', '\n']).is_empty()
        {
            eprintln!("poolrelay: give the password on standard input");
            return ExitCode::from(2);
        }
        return match poolrelay::password::hash(password.trim_end_matches(['\r', '\n'])) {
            Ok(hash) => {
                println!("{hash}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("poolrelay: {error}");
                ExitCode::FAILURE
            }
        };
    }
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
            Command::CheckConfig { .. } | Command::HashPassword => Ok(()),
            Command::Pools { target, command } => {
                let action = match command {
                    PoolsCommand::List => Action::PoolsList,
                    PoolsCommand::Create { name } => Action::PoolsCreate(name),
                    PoolsCommand::Delete { name } => Action::PoolsDelete(name),
                };
                admin_client::run(&target.socket()?, action, target.json).await
            }
            Command::Ips { target, command } => {
                let action = match command {
                    IpsCommand::List { pool } => Action::IpsList(pool),
                    IpsCommand::Add { ip, pool, ehlo_hostname, weight } => Action::IpsAdd { ip, pool, ehlo_hostname, weight },
                    IpsCommand::Move { ip, pool } => Action::IpsMove { ip, pool },
                    IpsCommand::Remove { ip } => Action::IpsRemove(ip),
                    IpsCommand::Suspend { ip } => Action::IpsSuspend { ip, suspended: true },
                    IpsCommand::Resume { ip } => Action::IpsSuspend { ip, suspended: false },
                };
                admin_client::run(&target.socket()?, action, target.json).await
            }
            Command::ConfigSets { target, command } => {
                let action = match command {
                    SetsCommand::List => Action::SetsList,
                    SetsCommand::Create { name, pool } => Action::SetsCreate { name, pool },
                    SetsCommand::Delete { name } => Action::SetsDelete(name),
                    SetsCommand::SetPool { name, pool } => Action::SetsSetPool { name, pool },
                };
                admin_client::run(&target.socket()?, action, target.json).await
            }
            Command::Queue { target, command } => {
                let action = match command {
                    QueueCommand::List => Action::QueueList,
                    QueueCommand::Retry { id } => Action::QueueAct { id, action: "retry".into() },
                    QueueCommand::Hold { id } => Action::QueueAct { id, action: "hold".into() },
                    QueueCommand::Release { id } => Action::QueueAct { id, action: "release".into() },
                    QueueCommand::Delete { id } => Action::QueueDelete(id),
                };
                admin_client::run(&target.socket()?, action, target.json).await
            }
            Command::Status { target } => admin_client::run(&target.socket()?, Action::Status, target.json).await,
            Command::Reload { target } => admin_client::run(&target.socket()?, Action::Reload, target.json).await,
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
