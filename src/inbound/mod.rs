//! The inbound side: SMTP listeners, sessions, and the classification of each message into a
//! configuration set and pool while it streams in.

mod accept;
pub mod auth;
pub mod auth_limits;
mod auth_session;
mod connection;
mod context;
mod data_phase;
mod feedback_data;
pub mod handoff;
#[doc(hidden)]
pub mod harness;
mod head;
mod headers;
mod listener;
pub mod per_ip;
pub mod quota;
mod received;
pub mod refusal;
mod session;
mod signing;
pub mod submission;
pub mod tls;

pub use context::InboundContext;
pub use headers::HeaderFilter;
pub use listener::serve_listener;
pub use received::sanitize_name;
