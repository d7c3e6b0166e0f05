//! The SESv2 API over HTTP(S) for SES's own SDKs and CLI: requests are authenticated with AWS
//! Signature Version 4 (`sigv4`) against the `[[api.key]]` keys (`keys`), then served by the
//! same operations as the admin socket (`listener`).

pub mod address;
mod bulk;
pub mod listener;
mod mime;
mod request;
pub mod send;
pub mod sigv4;
mod template_content;
