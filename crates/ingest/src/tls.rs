//! TLS for listeners (rustls): server certificate, optional required client certificates from
//! a private CA, mapped to institutions by a URI subject-alternative name.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// File.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// A ready acceptor and the certificate → institution map.
pub struct TlsSetup {
    /// The acceptor.
    pub acceptor: TlsAcceptor,
    /// The rustls configuration behind it (dicom-ul runs its own handshake with it).
    pub server_config: Arc<rustls::ServerConfig>,
    /// Whether client certificates are checked (a client CA is configured).
    pub client_auth: bool,
    /// Whether a client may also connect without a certificate (HTTPS: browsers with tokens).
    pub client_cert_optional: bool,
    /// URI SAN → institution code.
    pub uri_to_institution: HashMap<String, String>,
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Loads the certificate chain in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificate found"));
    }
    Ok(certs)
}

/// Builds the TLS setup for a listener. With `client_cert_optional`, a client without a
/// certificate is let through (it must then authenticate otherwise); a certificate, when
/// presented, must still chain to the client CA, not be revoked (`crls`) and map to an
/// institution.
pub fn setup(
    tls: &TlsConfig,
    config: &Config,
    client_cert_optional: bool,
) -> Result<TlsSetup, TlsError> {
    // The ring provider is the one compiled in; installing twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = load_certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| pem_err(&tls.key, e))?;
    let builder = rustls::ServerConfig::builder();
    let server = match &tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca)? {
                roots.add(c).map_err(|e| TlsError::Rustls(e.to_string()))?;
            }
            let mut crls = Vec::new();
            for path in &tls.crls {
                for crl in rustls::pki_types::CertificateRevocationListDer::pem_file_iter(path)
                    .map_err(|e| pem_err(path, e))?
                {
                    crls.push(crl.map_err(|e| pem_err(path, e))?);
                }
            }
            let mut vb = WebPkiClientVerifier::builder(Arc::new(roots)).with_crls(crls);
            if client_cert_optional {
                vb = vb.allow_unauthenticated();
            }
            let verifier = vb.build().map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(certs, key)
    .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let uri_to_institution = config
        .institutions
        .iter()
        .filter_map(|i| i.client_cert_uri.clone().map(|u| (u, i.code.clone())))
        .collect();
    let server = Arc::new(server);
    Ok(TlsSetup {
        acceptor: TlsAcceptor::from(server.clone()),
        server_config: server,
        client_auth: tls.client_ca.is_some(),
        client_cert_optional,
        uri_to_institution,
    })
}

/// The institution proven by the client certificate of a finished handshake: `Ok(None)` when
/// client certificates are not required, an error when one is required but maps to nobody.
pub fn peer_institution(
    setup: &TlsSetup,
    conn: &ServerConnection,
) -> Result<Option<String>, String> {
    if !setup.client_auth {
        return Ok(None);
    }
    let cert = match conn.peer_certificates().and_then(|c| c.first()) {
        Some(c) => c,
        None if setup.client_cert_optional => return Ok(None),
        None => return Err("no client certificate".to_string()),
    };
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("client certificate does not parse: {e}"))?;
    let uris: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    uris.iter()
        .find_map(|u| setup.uri_to_institution.get(u).cloned())
        .map(Some)
        .ok_or_else(|| {
            format!("client certificate URIs {uris:?} belong to no configured institution")
        })
}

/// The TLS client configuration of the outbox (`[outbox.tls]`): receivers' certificates must
/// chain to `ca`; huren presents `cert`/`key` when given. Built at start-up, so a bad file
/// stops `huren serve` with its path.
pub fn outbox_client(
    tls: &crate::config::OutboxTls,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&tls.ca)? {
        roots.add(c).map_err(|e| pem_err(&tls.ca, e))?;
    }
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let cfg = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Rustls(e.to_string()))?
        }
        _ => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}
