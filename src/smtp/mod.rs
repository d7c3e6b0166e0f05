//! SMTP pieces shared by the inbound server and the outbound client. Nothing here does I/O:
//! each piece takes bytes and returns bytes or a decision, so it is tested without sockets.

pub mod address;
pub mod data;
pub mod dot_stuff;
pub mod header_fields;
pub mod line;
pub mod reply;
pub mod stream;

pub use reply::Reply;
