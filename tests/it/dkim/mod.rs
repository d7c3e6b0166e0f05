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

/// The Python to run dkimpy with: `POOLRELAY_TEST_PYTHON`, else the repository's `.venv`
/// (`.ci/run` makes it), else `python3`; `None` (after saying so) when dkimpy is not there.
pub fn python_with_dkimpy() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let python = std::env::var_os("POOLRELAY_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| venv.exists().then_some(venv))
        .unwrap_or_else(|| PathBuf::from("python3"));
    let found = Command::new(&python)
        .args(["-c", "import dkim, nacl"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        Some(python)
    } else {
        crate::common::privilege_missing(
            "verify DKIM signatures: dkimpy and pynacl are not installed (python3 -m venv .venv && .venv/bin/pip install dkimpy pynacl)",
        );
        None
    }
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
