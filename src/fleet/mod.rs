//! Fleet mode: several relays sharing one model, live peers and limits through Redis.
//!
//! `model` (the shared TOML and how it meets a node's own file, pure), `store` (the Redis keys),
//! `node` (joining, keeping the registry on the model, heartbeats, admin changes), `handoff`
//! (forwarded mail's sealed envelope, pure), `limits` (fleet-wide site rates and account quota)
//! and `suppression` (the suppression list shared through Redis).

pub mod commands;
pub mod handoff;
pub mod limits;
pub mod model;
pub mod node;
pub mod store;
pub mod suppression;
pub mod templates;

pub use node::{ChangeError, Fleet};
