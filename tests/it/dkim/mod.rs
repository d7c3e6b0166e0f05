//! DKIM signing, checked by dkimpy (Python), an implementation nobody here wrote: signatures
//! verify for RSA and Ed25519 keys on every kind of message, tampering breaks them, the right
//! identity signs, and identities choose the default configuration set.

mod api;
mod cli;
mod identities;
mod signing;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The Python to run dkimpy with (see `common::python_with`).
pub fn python_with_dkimpy() -> Option<PathBuf> {
    crate::common::python_with(
        "dkim, nacl",
        "verify DKIM signatures: dkimpy and pynacl are not installed (python3 -m venv .venv && .venv/bin/pip install dkimpy pynacl)",
    )
}

/// What dkimpy says about the first signature of `message`.
#[derive(Debug, serde::Deserialize)]
pub struct Verdict {
    pub signatures: usize,
    pub verified: bool,
    pub d: Option<String>,
    pub a: Option<String>,
    pub h: Option<String>,
    pub error: Option<String>,
}

pub fn dkimpy_verify(
    python: &PathBuf,
    message: &[u8],
    records: &BTreeMap<String, String>,
) -> Verdict {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/dkim/verify.py");
    let mut child = Command::new(python)
        .arg(script)
        .arg(serde_json::to_string(records).unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message)
        .expect("message to dkimpy");
    let output = child.wait_with_output().expect("dkimpy finishes");
    assert!(
        output.status.success(),
        "dkimpy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("dkimpy's verdict")
}

/// The DNS records a relay's config asks to publish, as dkimpy's DNS answers.
pub fn published_records(config_path: &std::path::Path) -> BTreeMap<String, String> {
    let config = poolrelay::config::load(config_path).unwrap_or_else(|e| panic!("{e}"));
    config
        .registry
        .identities()
        .iter()
        .filter_map(|identity| {
            let dkim = identity.dkim.as_ref()?;
            Some((identity.dns_record_name()?, dkim.key.dns_record_value()))
        })
        .collect()
}
