//! What a message's `From:` decides once its header block is complete: the identity's default
//! configuration set (when the message names none) and who signs it with DKIM.
//!
//! The header block is held back from the spool until the message ends, so the signature can go
//! on top of it; see `MessageWriter::commit_stamped`.

use std::sync::Arc;

use crate::identity::Identities;
use crate::identity::from::from_address;
use crate::identity::sign::Signer;
use crate::spool::Stamp;

/// A header block longer than this is not held back: it goes to the spool at once, unsigned.
pub const MAX_HELD_HEAD: usize = 256 * 1024;

/// What the identities decide for one message.
#[derive(Debug)]
pub struct Plan {
    /// The identity's default configuration set, when the message names none.
    pub default_set: Option<String>,
    pub signing: Signing,
}

/// What a message's session keeps of the plan once the header block is settled: the default
/// set, and how it is signed (for the log line).
#[derive(Debug)]
pub struct Decision {
    pub default_set: Option<String>,
    pub note: String,
}

#[derive(Debug)]
pub enum Signing {
    Sign {
        signer: Signer,
        fields: Vec<&'static str>,
    },
    /// Why the message goes out unsigned (`None`: no identity covers its `From:`; no need to say).
    Unsigned(Option<String>),
}

impl Signing {
    /// For the log line of an accepted message.
    pub fn describe(&self) -> String {
        match self {
            Signing::Sign { signer, .. } => format!("{} s={}", signer.domain, signer.selector),
            Signing::Unsigned(Some(reason)) => format!("unsigned: {reason}"),
            Signing::Unsigned(None) => "unsigned".to_string(),
        }
    }
}

/// The plan for a message whose (complete) header block is `head`.
pub fn plan(identities: &Identities, head: &[u8]) -> Plan {
    if identities.is_empty() {
        return Plan {
            default_set: None,
            signing: Signing::Unsigned(None),
        };
    }
    let from = match from_address(head) {
        Ok(from) => from,
        Err(problem) => {
            return Plan {
                default_set: None,
                signing: Signing::Unsigned(Some(problem.to_string())),
            };
        }
    };
    let default_set = identities
        .default_configuration_set(&from)
        .map(str::to_string);
    let signing = match identities.signer_for(&from) {
        Some(signer) => Signing::Sign {
            signer,
            fields: Signer::fields_to_sign(head),
        },
        None => Signing::Unsigned(None),
    };
    Plan {
        default_set,
        signing,
    }
}

/// The stamp that signs a message as it is committed. A failure to sign (which a key that
/// loaded should never give) leaves the message unsigned rather than refusing it.
pub fn stamp(signer: Signer, fields: Vec<&'static str>, id: Arc<str>) -> Stamp {
    Box::new(move |pieces| {
        let mut read_error = None;
        let mut checked = pieces.map_while(|piece| match piece {
            Ok(piece) => Some(Ok(piece)),
            Err(error) => {
                read_error = Some(error);
                None
            }
        });
        let signed = signer.sign(fields, &mut checked);
        drop(checked);
        if let Some(error) = read_error {
            return Err(error);
        }
        match signed {
            Ok(field) => Ok(field),
            Err(error) => {
                tracing::error!(id = %id, identity = %signer.identity, %error, "DKIM signing failed; the message goes out unsigned");
                Ok(Vec::new())
            }
        }
    })
}
