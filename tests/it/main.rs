//! poolrelay's black-box tests, in one binary (one build and link instead of one per area):
//! a real relay on loopback with a real config file and spool, real SMTP clients and a
//! recording sink. One module per area; `common` holds the shared pieces.

mod common;

mod admin;
mod api;
mod auth_limits;
mod commands;
mod crash;
mod delivery;
mod demo;
mod dkim;
mod feedback;
mod fleet;
mod ipv6;
mod large;
mod load;
mod loops;
mod mx;
mod package;
mod pools;
mod protocol;
mod queue;
mod reputation;
mod reverse_dns;
mod service;
mod session_props;
mod smuggling;
mod spool;
mod structure;
mod tls;
mod warmup;
