//! The configuration's errors and reload, and the handshake's deadline on a real socket pair.
//! (Full handshakes with real clients: `tests/tls.rs`.)

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::request::Connection;

/// A self-signed certificate for `localhost` and its key, written to `dir`.
fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[test]
fn each_bad_file_is_named_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), "a");
    let (_, other_key) = write_pair(dir.path(), "b");
    let missing = dir.path().join("missing.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "just text\n").unwrap();

    let error = TlsConfig::from_pem_files(&missing, &key).unwrap_err();
    assert!(
        matches!(&error, TlsError::Read { path, .. } if path == &missing),
        "{error}"
    );
    assert!(error.to_string().contains("missing.pem"), "{error}");

    let error = TlsConfig::from_pem_files(&empty, &key).unwrap_err();
    assert!(
        matches!(&error, TlsError::NoCertificate { path } if path == &empty),
        "{error}"
    );

    // A certificate file is no key file.
    let error = TlsConfig::from_pem_files(&cert, &cert).unwrap_err();
    assert!(
        matches!(&error, TlsError::NoKey { path } if path == &cert),
        "{error}"
    );

    let error = TlsConfig::from_pem_files(&cert, &other_key).unwrap_err();
    assert!(matches!(&error, TlsError::KeyMismatch { .. }), "{error}");
    assert!(error.to_string().contains("b.key") && error.to_string().contains("a.pem"));

    let error = TlsConfig::builder(&cert, &key)
        .client_auth(&empty, ClientAuth::Required)
        .build()
        .unwrap_err();
    assert!(
        matches!(&error, TlsError::NoCertificate { path } if path == &empty),
        "{error}"
    );

    TlsConfig::from_pem_files(&cert, &key).expect("the good pair loads");
}

#[test]
fn a_reload_that_fails_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), "a");
    let config = TlsConfig::from_pem_files(&cert, &key).unwrap();
    let before = config.current();
    std::fs::write(&key, "not a key\n").unwrap();
    let error = config.reload().unwrap_err();
    assert!(matches!(error, TlsError::NoKey { .. }), "{error}");
    assert!(
        Arc::ptr_eq(&before, &config.current()),
        "the old configuration stays"
    );
    // New files that load replace it, for every clone.
    let clone = config.clone();
    let (new_cert, new_key) = write_pair(dir.path(), "c");
    std::fs::rename(new_cert, &cert).unwrap();
    std::fs::rename(new_key, &key).unwrap();
    config.reload().unwrap();
    assert!(!Arc::ptr_eq(&before, &clone.current()));
}

use std::sync::Arc;

fn config() -> (tempfile::TempDir, TlsConfig) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_pair(dir.path(), "a");
    let config = TlsConfig::from_pem_files(cert, key).unwrap();
    (dir, config)
}

#[test]
fn a_silent_client_is_cut_at_the_deadline() {
    let (_dir, config) = config();
    let (ours, _client) = UnixStream::pair().unwrap();
    let connection = Connection::Unix(ours);
    let timeout = Duration::from_millis(200);
    let start = Instant::now();
    let failure = accept(&connection, &config, timeout)
        .err()
        .expect("no handshake");
    let took = start.elapsed();
    assert_eq!(failure.reason, Reason::TimedOut);
    assert!(took >= timeout && took < timeout * 5, "took {took:?}");
    assert_eq!(config.stats().timed_out, 1);
}

#[test]
fn a_trickling_client_is_cut_at_the_deadline_not_renewed_by_each_byte() {
    let (_dir, config) = config();
    let (ours, mut client) = UnixStream::pair().unwrap();
    let connection = Connection::Unix(ours);
    let timeout = Duration::from_millis(300);
    // The start of a ClientHello record, one byte every 20 ms: each byte would renew a
    // per-read timeout; the handshake's deadline is total.
    let trickle = thread::spawn(move || {
        let record = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
        for byte in record.iter().cycle().take(200) {
            if client.write_all(&[*byte]).is_err() {
                return;
            }
            thread::park_timeout(Duration::from_millis(20));
        }
    });
    let start = Instant::now();
    let failure = accept(&connection, &config, timeout)
        .err()
        .expect("no handshake");
    let took = start.elapsed();
    eprintln!("trickling handshake cut after {took:?} (bound {timeout:?})");
    assert_eq!(failure.reason, Reason::TimedOut, "{failure}");
    assert!(took < timeout * 3, "took {took:?}");
    drop(connection);
    trickle.join().unwrap();
}

#[test]
fn plaintext_is_counted_as_not_tls() {
    let (_dir, config) = config();
    let (ours, mut client) = UnixStream::pair().unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let connection = Connection::Unix(ours);
    let failure = accept(&connection, &config, Duration::from_secs(5))
        .err()
        .expect("no handshake");
    assert_eq!(failure.reason, Reason::NotTls, "{failure}");
    assert_eq!(config.stats().not_tls, 1);
}
