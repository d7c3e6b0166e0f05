//! poolrelay: a self-hosted SMTP relay with Amazon SES-style dedicated IP pools.
//!
//! A message's `X-SES-CONFIGURATION-SET` header names a configuration set, the set names a pool of
//! source addresses, and the message leaves from one of them. Modules follow a message through
//! the relay: [`inbound`] (SMTP server, classification) → [`spool`] (durable store) → [`queue`]
//! (scheduling, retries) → [`outbound`] (next hop, IP selection, SMTP client), with [`registry`]
//! (pools, IPs, configuration sets) and [`config`] beside them.

pub mod admin;
pub mod api;
pub mod config;
pub mod console;
pub mod demo;
pub mod dns;
pub mod dns_checks;
pub mod domain;
pub mod events;
pub mod feedback;
pub mod fleet;
pub mod identity;
pub mod inbound;
pub mod init;
pub mod journal;
pub mod ledger;
pub mod load;
pub mod load_api;
pub mod log_writer;
pub mod manual;
pub mod metrics;
pub mod outbound;
pub mod password;
pub mod queue;
pub mod registry;
pub mod return_path;
pub mod secret_file;
pub mod server;
pub mod service_manager;
pub mod settings;
pub mod sink;
pub mod smtp;
pub mod spool;
mod startup;
