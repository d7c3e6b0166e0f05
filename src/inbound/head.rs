//! Where a message's header block is while the message arrives, and what the identities decide
//! once it is complete: held back to be signed (it goes on top of the body at commit), or put
//! into the spool writer ahead of the body.
//!
//! SMTP DATA feeds it piece by piece; the SESv2 API feeds a whole message at once. Both end in
//! the same [`HeadStage::finish`].

use super::headers::HeaderFilter;
use super::signing::{self, Decision, MAX_HELD_HEAD, Signing};
use crate::identity::Identities;
use crate::identity::sign::Signer;
use crate::spool::MessageWriter;

/// A header block kept out of the spool until the message ends, to be signed.
pub(super) struct HeldHead {
    pub(super) bytes: Vec<u8>,
    pub(super) signer: Signer,
    pub(super) fields: Vec<&'static str>,
}

enum Head {
    /// Still arriving.
    Collecting(Vec<u8>),
    /// Complete, held back to be signed.
    Held(HeldHead),
    /// In the spool writer's buffer, ahead of the body.
    Released,
}

/// The header block of one message and the identities' decision about it.
pub(super) struct HeadStage {
    head: Head,
    decision: Option<Decision>,
}

impl HeadStage {
    /// `received` is the trace field poolrelay puts first.
    pub(super) fn new(received: Vec<u8>) -> Self {
        Self {
            head: Head::Collecting(received),
            decision: None,
        }
    }

    /// Runs `filter` over `content`: the header block goes here while it is collected, the rest
    /// to the writer.
    pub(super) fn feed(
        &mut self,
        filter: &mut HeaderFilter,
        content: &[u8],
        writer: &mut MessageWriter,
    ) {
        let mut after_head = Vec::new();
        let head_out = match &mut self.head {
            Head::Collecting(bytes) => bytes,
            _ => &mut after_head,
        };
        filter.feed_split(content, head_out, writer.buffer());
    }

    /// At the end of the message: whatever the filter still holds.
    pub(super) fn finish_filter(&mut self, filter: &mut HeaderFilter, writer: &mut MessageWriter) {
        match &mut self.head {
            Head::Collecting(bytes) => filter.finish(bytes),
            _ => filter.finish(writer.buffer()),
        }
    }

    /// The identities' decision, once the header block is settled.
    pub(super) fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }

    /// Once the header block is complete (or too long to hold), decides what the identities
    /// say about the message, and either holds the block back to be signed or releases it.
    pub(super) fn settle(
        &mut self,
        identities: &Identities,
        filter: &HeaderFilter,
        writer: &mut MessageWriter,
    ) {
        let Head::Collecting(bytes) = &mut self.head else {
            return;
        };
        if !filter.headers_complete() {
            if bytes.len() > MAX_HELD_HEAD {
                self.decision = Some(Decision {
                    default_set: None,
                    note: "unsigned: the header block is over 256 KiB".into(),
                });
                self.release(writer);
            }
            return;
        }
        let decided = signing::plan(identities, bytes);
        self.decision = Some(Decision {
            default_set: decided.default_set,
            note: decided.signing.describe(),
        });
        match decided.signing {
            Signing::Sign { signer, fields } => {
                let bytes = std::mem::take(bytes);
                self.head = Head::Held(HeldHead {
                    bytes,
                    signer,
                    fields,
                });
            }
            Signing::Unsigned(_) => self.release(writer),
        }
    }

    /// Puts the header block into the writer, in front of what arrived after it.
    fn release(&mut self, writer: &mut MessageWriter) {
        if let Head::Collecting(bytes) = std::mem::replace(&mut self.head, Head::Released) {
            let body = std::mem::replace(writer.buffer(), bytes);
            writer.buffer().extend_from_slice(&body);
        }
    }

    /// The held header block (if the message is signed) and how it is signed, for the log.
    pub(super) fn finish(self) -> (Option<HeldHead>, String) {
        let note = self.decision.map_or_else(String::new, |d| d.note);
        match self.head {
            Head::Held(held) => (Some(held), note),
            _ => (None, note),
        }
    }
}
