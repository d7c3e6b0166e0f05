//! The command line's shape: subcommands, their options and their one-line help (shown by
//! `poolrelay --help` and `poolrelay SUBCOMMAND --help`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use poolrelay::admin::client::Action;
use poolrelay::admin::suppression_client::SuppressionAction;
use poolrelay::config;

/// The config file a command uses without `--config` or `POOLRELAY_CONFIG`: the source tree's
/// example (`config/poolrelay.toml`) when run from a checkout, else the installed
/// `/etc/poolrelay/poolrelay.toml`.
pub fn default_config() -> PathBuf {
    let checkout = PathBuf::from("config/poolrelay.toml");
    match checkout.exists() {
        true => checkout,
        false => PathBuf::from(INSTALLED_CONFIG),
    }
}

/// Where the Debian package puts the config.
pub const INSTALLED_CONFIG: &str = "/etc/poolrelay/poolrelay.toml";

#[derive(Parser)]
#[command(
    name = "poolrelay",
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("POOLRELAY_COMMIT"), ")"),
    about = "SMTP relay with SES-style dedicated IP pools"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the relay in the foreground (logs to stderr; RUST_LOG sets the level).
    Serve {
        #[arg(long, env = "POOLRELAY_CONFIG", default_value_os_t = default_config())]
        config: PathBuf,
    },
    /// Check a config file and print a summary of its pools and configuration sets; exits
    /// non-zero on any error.
    CheckConfig {
        #[arg(long, env = "POOLRELAY_CONFIG", default_value_os_t = default_config())]
        config: PathBuf,
        /// Print only a one-line OK (errors still go to standard error), for ExecStartPre.
        #[arg(long)]
        quiet: bool,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Write a starter config for this host (its addresses as dedicated IPs) into DIR; never
    /// overwrites a file.
    Init {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Write the man pages (poolrelay(8) and one per subcommand) into a folder.
    Man {
        #[arg(long, default_value = "man")]
        dir: PathBuf,
    },
    /// Start a sink and the relay on the example config, send mail through every configuration
    /// set, and show which source IP each message left from.
    Demo {
        #[arg(long, default_value = "config/poolrelay.toml")]
        config: PathBuf,
        /// Messages per configuration set (more than 1 prints a summary instead of a row each).
        #[arg(long, default_value_t = 1)]
        per_set: usize,
        /// Keep running afterwards with the console open on 127.0.0.1 (prints its URL and a
        /// one-time password).
        #[arg(long)]
        console: bool,
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
        /// Send through the SESv2 API at `--target` (signed SendEmail requests) instead of SMTP;
        /// the key comes from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
        #[arg(long)]
        api: bool,
        /// The region requests are signed for (with `--api`).
        #[arg(long, default_value = "us-east-1")]
        region: String,
    },
    /// Read a password from standard input and print its argon2 hash for `[[smtp.user]]`.
    HashPassword,
    /// The fleet ([cluster] in the config): its model in Redis and its nodes.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
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
    /// Email identities (DKIM keys, default configuration sets), through the admin socket.
    Identities {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: IdentitiesCommand,
    },
    /// The account-level suppression list, through the admin socket.
    Suppression {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: SuppressionCommand,
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
pub struct AdminTarget {
    /// The relay's config file: its `[admin] socket` is used.
    #[arg(long, global = true, env = "POOLRELAY_CONFIG", default_value_os_t = default_config())]
    config: PathBuf,
    /// The admin socket, instead of reading it from the config.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl AdminTarget {
    /// The admin socket to use: `--socket`, or the config file's `[admin] socket`.
    pub fn socket(&self) -> anyhow::Result<PathBuf> {
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
pub enum ClusterCommand {
    /// Write this relay's pools, IPs, configuration sets and other shared settings into an
    /// empty Redis as the fleet's model.
    Init {
        #[arg(long, env = "POOLRELAY_CONFIG", default_value_os_t = default_config())]
        config: PathBuf,
    },
    /// Print the fleet model as TOML.
    Export {
        #[arg(long, env = "POOLRELAY_CONFIG", default_value_os_t = default_config())]
        config: PathBuf,
    },
    /// List the nodes with their IPs, liveness and model version.
    Status {
        #[arg(long, env = "POOLRELAY_CONFIG", default_value_os_t = default_config())]
        config: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PoolsCommand {
    /// List the pools (with the two reserved ones).
    List,
    /// Create an empty pool.
    Create { name: String },
    /// Delete a pool that holds no IPs and that no configuration set sends from.
    Delete { name: String },
}

#[derive(Subcommand)]
pub enum IpsCommand {
    /// List the dedicated IPs with their pool, weight, warm-up and suspensions.
    List {
        #[arg(long)]
        pool: Option<String>,
    },
    /// Add a dedicated IP (it must be an address of this host).
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
    Move { ip: String, pool: String },
    /// Remove a dedicated IP.
    Remove { ip: String },
    /// Take an IP out of rotation for every destination (saved in the config).
    Suspend { ip: String },
    /// Put a suspended IP back into rotation (also lifts its site suspensions).
    Resume { ip: String },
}

#[derive(Subcommand)]
pub enum SetsCommand {
    /// List the configuration sets and their sending pools.
    List,
    /// Create a configuration set, sending from `--pool` (default: ses-default-dedicated-pool).
    Create {
        name: String,
        #[arg(long)]
        pool: Option<String>,
    },
    /// Delete a configuration set.
    Delete { name: String },
    /// Change the pool a configuration set sends from.
    SetPool { name: String, pool: String },
}

#[derive(Subcommand)]
pub enum IdentitiesCommand {
    /// List the identities with their DKIM status.
    List,
    /// Show one identity: its DKIM key, status and the DNS record to publish.
    Show { name: String },
}

#[derive(Subcommand)]
pub enum SuppressionCommand {
    /// List suppressed addresses (every page), optionally of one reason.
    List {
        /// BOUNCE or COMPLAINT.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put an address on the list.
    Add {
        address: String,
        /// BOUNCE or COMPLAINT.
        #[arg(long, default_value = "BOUNCE")]
        reason: String,
    },
    /// Take an address off the list.
    Remove { address: String },
    /// Import a CSV file of `address,reason` lines (as SES import jobs take them); bad lines are
    /// reported by number and skipped.
    Import { file: PathBuf },
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// List the queued messages with their state, attempts and last error.
    List,
    /// Attempt a waiting message now.
    Retry { id: String },
    /// Keep a message from being attempted until it is released (survives restarts).
    Hold { id: String },
    /// Release a held message.
    Release { id: String },
    /// Delete a message from the queue (no bounce is sent).
    Delete { id: String },
}

impl SuppressionCommand {
    pub fn action(self) -> SuppressionAction {
        match self {
            Self::List { reason } => SuppressionAction::List { reason },
            Self::Add { address, reason } => SuppressionAction::Add { address, reason },
            Self::Remove { address } => SuppressionAction::Remove { address },
            Self::Import { file } => SuppressionAction::Import { file },
        }
    }
}

impl Command {
    /// The admin socket command this is, with where to send it; `None` for the other commands.
    pub fn admin_action(self) -> Option<(AdminTarget, Action)> {
        let (target, action) = match self {
            Command::Pools { target, command } => (
                target,
                match command {
                    PoolsCommand::List => Action::PoolsList,
                    PoolsCommand::Create { name } => Action::PoolsCreate(name),
                    PoolsCommand::Delete { name } => Action::PoolsDelete(name),
                },
            ),
            Command::Ips { target, command } => (
                target,
                match command {
                    IpsCommand::List { pool } => Action::IpsList(pool),
                    IpsCommand::Add {
                        ip,
                        pool,
                        ehlo_hostname,
                        weight,
                    } => Action::IpsAdd {
                        ip,
                        pool,
                        ehlo_hostname,
                        weight,
                    },
                    IpsCommand::Move { ip, pool } => Action::IpsMove { ip, pool },
                    IpsCommand::Remove { ip } => Action::IpsRemove(ip),
                    IpsCommand::Suspend { ip } => Action::IpsSuspend {
                        ip,
                        suspended: true,
                    },
                    IpsCommand::Resume { ip } => Action::IpsSuspend {
                        ip,
                        suspended: false,
                    },
                },
            ),
            Command::Identities { target, command } => (
                target,
                match command {
                    IdentitiesCommand::List => Action::IdentitiesList,
                    IdentitiesCommand::Show { name } => Action::IdentitiesShow(name),
                },
            ),
            Command::ConfigSets { target, command } => (
                target,
                match command {
                    SetsCommand::List => Action::SetsList,
                    SetsCommand::Create { name, pool } => Action::SetsCreate { name, pool },
                    SetsCommand::Delete { name } => Action::SetsDelete(name),
                    SetsCommand::SetPool { name, pool } => Action::SetsSetPool { name, pool },
                },
            ),
            Command::Queue { target, command } => (
                target,
                match command {
                    QueueCommand::List => Action::QueueList,
                    QueueCommand::Retry { id } => Action::QueueAct {
                        id,
                        action: "retry".into(),
                    },
                    QueueCommand::Hold { id } => Action::QueueAct {
                        id,
                        action: "hold".into(),
                    },
                    QueueCommand::Release { id } => Action::QueueAct {
                        id,
                        action: "release".into(),
                    },
                    QueueCommand::Delete { id } => Action::QueueDelete(id),
                },
            ),
            Command::Status { target } => (target, Action::Status),
            Command::Reload { target } => (target, Action::Reload),
            _ => return None,
        };
        Some((target, action))
    }
}
