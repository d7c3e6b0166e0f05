//! The relay's TLS identity for STARTTLS and implicit-TLS listeners.
//!
//! TLS 1.2 and 1.3 only, ring provider. The certificate chain and key are PEM files; they are
//! read at start-up and again on SIGHUP (a bad pair on reload is refused and the old one kept).

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// Builds a server configuration from PEM files.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| {
            format!(
                "cannot read certificates from {}: {e}",
                files.cert.display()
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad certificate in {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", files.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "cannot read a private key from {}: {e}",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))
}

/// The current server configuration, replaceable while running.
pub struct InboundTls {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
}

impl InboundTls {
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        Ok(Self {
            files: files.clone(),
            current: ArcSwap::from_pointee(server_config(files)?),
        })
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Re-reads the files; keeps the old pair if the new one is unusable.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.files)?;
        self.current.store(Arc::new(config));
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
        Ok(())
    }
}
