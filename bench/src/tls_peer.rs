//! The run's certificate, and the tokio-rustls echo peer that serves it.
//!
//! One ECDSA P-256 key for a test CA and one for the server, made at the start of each run
//! (never a committed key): both servers load the same `server.pem` / `server.key`, and the
//! load generator trusts `ca.pem`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::BoxError;

/// The files of one run's certificate.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The test CA's certificate (PEM): what the load generator trusts.
    pub ca: PathBuf,
    /// The server's certificate (PEM), for `localhost` and `127.0.0.1`, signed by the CA.
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8, ECDSA P-256).
    pub key: PathBuf,
}

/// Makes a test CA and a server certificate it signs, both ECDSA P-256 (SHA-256), and writes
/// them into `dir`.
pub fn make_certificate(dir: &Path) -> Result<CertFiles, BoxError> {
    std::fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "socketserver bench CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = params.self_signed(&ca_key)?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "socketserver bench server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;

    let files = CertFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.ca, ca_cert.pem())?;
    std::fs::write(&files.cert, cert.pem())?;
    std::fs::write(&files.key, key.serialize_pem())?;
    Ok(files)
}

/// Arguments of `tls serve`.
#[derive(Args, Debug)]
pub struct PeerArgs {
    /// The certificate chain (PEM).
    #[arg(long, value_name = "PATH")]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// HOST:PORT (port 0 picks a free port).
    pub address: String,
}

/// The listen backlog, as the library's default and the other peers'.
const BACKLOG: i32 = 1024;

/// The rustls server configuration of the peer: as the library builds its own
/// (`server-core/src/tls/config.rs`): the ring provider, rustls' safe default protocol
/// versions (TLS 1.3 and 1.2), no client authentication, no ALPN, rustls' default session
/// cache and tickets.
fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, BoxError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(config)
}

/// The tokio-rustls echo server: a multi-threaded runtime, a task per connection
/// (`TlsAcceptor::accept`, then read and write back until end of file). Prints `serving on
/// ADDRESS` first and runs until killed.
pub fn serve(args: &PeerArgs) -> Result<(), BoxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&args.cert, &args.key)?));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.address).await?;
        socket2::SockRef::from(&listener).listen(BACKLOG)?;
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "serving on {}", listener.local_addr()?)?;
            out.flush()?;
        }
        loop {
            let (conn, _) = listener.accept().await?;
            conn.set_nodelay(true)?;
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(conn).await else {
                    return;
                };
                let mut buf = [0u8; 8192];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                // close_notify, as the library sends when its handler returns.
                let _ = tls.shutdown().await;
            });
        }
    })
}
