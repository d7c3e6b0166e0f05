//! The admin socket: HTTP/1.1 with JSON bodies on a Unix socket, speaking SESv2's resource model
//! (dedicated IP pools, dedicated IPs, configuration sets, email identities) plus the queue and
//! status.
//!
//! Every write is validated, persisted to the config file (keeping the operator's comments) and
//! only then applied to the running relay, so after a restart the relay has exactly the state the
//! API last reported. Writes are serialized; reads see the current registry snapshot. One file per
//! resource: `pools`, `ips`, `configuration_sets`, `identities`, `queue`, `status`.

mod account;
pub mod body;
pub mod client;
pub mod configuration_sets;
pub mod error;
pub mod http;
mod identities;
pub mod ips;
pub mod paging;
pub mod pools;
pub mod queue;
mod socket;
pub mod state;
mod status;
pub mod suppression;
pub mod suppression_client;
mod tags;
pub mod templates;

pub use error::ApiError;
pub use socket::{bind_admin_socket, serve, serve_metrics};
pub use state::AdminState;

/// Reads a request body as the handlers do and reads the fields they read, for the fuzz
/// targets: every wrong shape must be an [`ApiError`], never a panic.
#[doc(hidden)]
pub fn read_request_body(bytes: &[u8]) -> Result<(), ApiError> {
    let body = body::Body::parse(bytes)?;
    for key in [
        "PoolName",
        "Ip",
        "DestinationPoolName",
        "ConfigurationSetName",
        "EmailIdentity",
        "SigningAttributesOrigin",
    ] {
        let _ = body.string(key);
        let _ = body.required(key);
    }
    for key in ["Weight", "WarmupPercentage", "MaxDeliverySeconds"] {
        let _ = body.number(key);
    }
    let _ = body.boolean("SigningEnabled");
    for key in ["DeliveryOptions", "SendingOptions"] {
        let inner = body.object(key)?;
        let _ = inner.string("SendingPoolName");
        let _ = inner.string("TlsPolicy");
    }
    for key in ["DkimSigningAttributes", "SigningAttributes"] {
        let inner = body.object(key)?;
        for field in [
            "DomainSigningSelector",
            "DomainSigningPrivateKey",
            "NextSigningKeyLength",
        ] {
            let _ = inner.string(field);
        }
    }
    Ok(())
}
