//! HTTPS with rustls: certificate loading, ALPN (h2, http/1.1) and client
//! certificate policies (mTLS).

use courser_config::{ClientAuth, SslConfig};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::{
    self, pki_types::CertificateDer, server::WebPkiClientVerifier, RootCertStore,
};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("http.ssl.{key}: cannot read {path}: {source}")]
    Read {
        /// The config key.
        key: &'static str,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("http.ssl.{key}: {path} holds no {what} in PEM format")]
    Empty {
        /// The config key.
        key: &'static str,
        /// The file.
        path: String,
        /// What was expected.
        what: &'static str,
    },
    /// rustls refused the certificate, key or CA bundle.
    #[error("http.ssl: {0}")]
    Rustls(String),
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.display().to_string(),
        source,
    })
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read {
            key,
            path: path.display().to_string(),
            source: e,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.display().to_string(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// Builds the rustls server config for `http.ssl`.
pub fn server_config(cfg: &SslConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certs("cert", &cfg.cert)?;
    let key_pem = read("key", &cfg.key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Read {
            key: "key",
            path: cfg.key.display().to_string(),
            source: e,
        })?
        .ok_or_else(|| TlsError::Empty {
            key: "key",
            path: cfg.key.display().to_string(),
            what: "private key",
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match (&cfg.root_ca, cfg.client_auth) {
        (_, ClientAuth::None) => builder.with_no_client_auth(),
        (None, other) => {
            tracing::warn!(client_auth = ?other, "http.ssl.client_auth_type needs http.ssl.root_ca to check client certificates; none are requested");
            builder.with_no_client_auth()
        }
        (Some(ca), mode) => {
            let mut roots = RootCertStore::empty();
            for c in certs("root_ca", ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls(format!("root_ca {}: {e}", ca.display())))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            // rustls always verifies a certificate it is given, so "request" and
            // "require any" are served by the stricter verifying policies.
            let v = match mode {
                ClientAuth::Request | ClientAuth::VerifyIfGiven => v.allow_unauthenticated(),
                _ => v,
            };
            builder
                .with_client_cert_verifier(v.build().map_err(|e| TlsError::Rustls(e.to_string()))?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("cert/key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
