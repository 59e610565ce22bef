//! [`TlsConfig`]: the certificate, the key and the options, loaded from PEM files, and
//! reloaded from them on demand.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Counters, TlsStats};

/// Why a [`TlsConfig`] could not be made or reloaded: each variant names the file and what is
/// wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read (missing, unreadable).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("{} is not valid PEM: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        reason: String,
    },
    /// The file holds no `CERTIFICATE` section.
    #[error("{} holds no certificate (expected a PEM \"CERTIFICATE\" section)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file holds no private key (PKCS#8, PKCS#1 RSA or SEC1 EC, PEM).
    #[error("{} holds no private key (expected a PEM \"PRIVATE KEY\" section)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key cannot be used (an unsupported algorithm, a malformed key).
    #[error("the private key in {} cannot be used: {reason}", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The private key is not the key of the chain's first certificate.
    #[error(
        "the private key in {} does not match the first certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate chain file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate of the client CA bundle cannot be used as a trust anchor.
    #[error("the CA bundle {} cannot be used: {reason}", path.display())]
    BadCa {
        /// The CA bundle file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// rustls refused the configuration for another reason.
    #[error("TLS configuration refused: {reason}")]
    Config {
        /// What rustls said.
        reason: String,
    },
}

/// Whether a client must present a certificate, with
/// [`TlsConfigBuilder::client_auth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// A client without a certificate (signed by the CA bundle) is refused.
    Required,
    /// A client may present one (then it must be signed by the CA bundle) or none.
    Optional,
}

/// What the configuration is built from, kept to reload it.
#[derive(Debug, Clone)]
struct Sources {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<(PathBuf, ClientAuth)>,
    alpn: Vec<Vec<u8>>,
}

struct Inner {
    sources: Sources,
    current: RwLock<Arc<ServerConfig>>,
    counters: Counters,
}

/// A server's TLS configuration: its certificate chain and key (PEM files), and its options.
/// Give it to [`ServerBuilder::tls`](crate::ServerBuilder::tls). See the [module](crate::tls) docs.
///
/// Cloning is cheap, and clones share everything: the files, the certificate in use (so a
/// [`reload`](Self::reload) through one clone is seen by all) and the [counters](Self::stats).
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Inner>,
}

impl TlsConfig {
    /// Loads the certificate chain (`cert_chain`, PEM: the server's certificate first, then
    /// the intermediates) and its private key (`key`, PEM: PKCS#8, PKCS#1 or SEC1), with no
    /// ALPN and no client authentication. For those options, see [`builder`](Self::builder).
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file: missing or unreadable, not PEM, no certificate in it,
    /// no key in it, a key that cannot be used or does not match the certificate.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        TlsConfig::builder(cert_chain, key).build()
    }

    /// A builder for a configuration with options (ALPN, client authentication).
    pub fn builder(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> TlsConfigBuilder {
        TlsConfigBuilder {
            sources: Sources {
                cert: cert_chain.as_ref().to_path_buf(),
                key: key.as_ref().to_path_buf(),
                client_ca: None,
                alpn: Vec::new(),
            },
        }
    }

    /// Reads the files again and uses them for the connections accepted from now on;
    /// connections already open keep the certificate they were served with.
    ///
    /// # Errors
    ///
    /// The [`TlsError`] of the new files: then nothing changes, the old certificate stays in
    /// use. Log it: the server goes on serving with the old one.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.inner.sources)?;
        *self.inner.current.write() = Arc::new(config);
        log::info!(target: "socketserver::tls", "reloaded the certificate from {}",
            self.inner.sources.cert.display());
        Ok(())
    }

    /// The handshakes run with this configuration (and its clones) so far, by outcome.
    pub fn stats(&self) -> TlsStats {
        self.inner.counters.snapshot()
    }

    /// The certificate chain file.
    pub fn cert_path(&self) -> &Path {
        &self.inner.sources.cert
    }

    /// The private key file.
    pub fn key_path(&self) -> &Path {
        &self.inner.sources.key
    }

    /// The configuration for a new connection: held for a moment, never across a handshake.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.inner.current.read())
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sources = &self.inner.sources;
        f.debug_struct("TlsConfig")
            .field("cert", &sources.cert)
            .field("key", &sources.key)
            .field("client_ca", &sources.client_ca)
            .field(
                "alpn",
                &sources
                    .alpn
                    .iter()
                    .map(|p| String::from_utf8_lossy(p))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Options for a [`TlsConfig`], from [`TlsConfig::builder`].
#[derive(Debug, Clone)]
#[must_use = "a TlsConfigBuilder does nothing until `build` is called"]
pub struct TlsConfigBuilder {
    sources: Sources,
}

impl TlsConfigBuilder {
    /// The ALPN protocols the server speaks, most preferred first (such as `["h2",
    /// "http/1.1"]`, or just `["http/1.1"]` for the HTTP layer). A client that offers ALPN
    /// but none of these is refused (RFC 7301); one that offers none is served. Default: none
    /// (ALPN is not answered).
    pub fn alpn<P: AsRef<[u8]>>(mut self, protocols: impl IntoIterator<Item = P>) -> Self {
        self.sources.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Asks clients for a certificate signed by one of the CAs in `ca_bundle` (PEM), and
    /// refuses clients without one when `auth` is [`ClientAuth::Required`]. The handler sees
    /// the client's chain in [`TlsInfo::peer_certificates`](super::TlsInfo::peer_certificates).
    /// Default: no client authentication.
    pub fn client_auth(mut self, ca_bundle: impl AsRef<Path>, auth: ClientAuth) -> Self {
        self.sources.client_ca = Some((ca_bundle.as_ref().to_path_buf(), auth));
        self
    }

    /// Loads the files.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file and what is wrong with it.
    pub fn build(self) -> Result<TlsConfig, TlsError> {
        let config = load(&self.sources)?;
        Ok(TlsConfig {
            inner: Arc::new(Inner {
                sources: self.sources,
                current: RwLock::new(Arc::new(config)),
                counters: Counters::default(),
            }),
        })
    }
}

/// The crypto provider: rustls' `ring`, named explicitly so that another crate enabling
/// aws-lc-rs in the same program cannot make the process default ambiguous.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(path: &Path, error: pem::Error) -> TlsError {
    match error {
        pem::Error::Io(source) => TlsError::Read {
            path: path.to_path_buf(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// The certificates in a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => pem_error(path, other),
    })
}

/// Builds the rustls configuration from the files.
fn load(sources: &Sources) -> Result<ServerConfig, TlsError> {
    let chain = certificates(&sources.cert)?;
    let key = private_key(&sources.key)?;
    let provider = provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: sources.cert.clone(),
            key: sources.key.clone(),
        },
        other => TlsError::BadKey {
            path: sources.key.clone(),
            reason: other.to_string(),
        },
    })?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            reason: e.to_string(),
        })?;
    let builder = match &sources.client_ca {
        None => builder.with_no_client_auth(),
        Some((path, auth)) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::BadCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = match auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|e| TlsError::BadCa {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Single(Arc::new(certified))));
    config.alpn_protocols.clone_from(&sources.alpn);
    Ok(config)
}

/// The one certificate chain and key of a configuration, whatever the client asks for.
#[derive(Debug)]
struct Single(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Single {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
