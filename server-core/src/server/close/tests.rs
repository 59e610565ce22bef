//! A stop while a TLS handshake waits parked: the handshake is finished and its request served
//! within the grace period, as a request already running, not closed as an idle connection.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::handler::{HandleResult, Handler, StreamRequestHandler};
use crate::request::StreamRequest;
use crate::server::{Server, ServerContext};
use crate::strategy::Pool;
use crate::tls::TlsConfig;
use crate::transport::Tcp;

/// Echoes one line.
struct Line;

impl Handler for Line {
    type State = ();
    fn new(_: &ServerContext) -> Self {
        Line
    }
}

impl StreamRequestHandler for Line {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        request.wfile.write_all(line.as_bytes())?;
        Ok(())
    }
}

/// Polls `condition` until it holds, at most 10 s.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    condition()
}

#[test]
fn a_handshake_parked_at_a_stop_is_finished_and_served_in_the_grace_period() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("c.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let config = TlsConfig::from_pem_files(&cert_path, &key_path).unwrap();
    let mut server = Server::<Tcp, Line, Pool>::builder()
        .strategy(Pool::new().workers(1))
        .tls(config.clone())
        .close_timeout(Some(Duration::from_secs(10)))
        .bind("127.0.0.1:0")
        .unwrap();
    let address = server.server_address().as_inet().unwrap();
    let shared = Arc::clone(&server.shared);
    let handle = server.shutdown_handle();
    let serving = std::thread::spawn(move || {
        server.serve_forever().unwrap();
        server.close()
    });

    // The client sends its ClientHello and takes the server's whole flight, but holds back
    // its Finished: the server's handshake waits for it, parked.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut socket = TcpStream::connect(address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    tls.write_tls(&mut socket).unwrap();
    while tls.is_handshaking() {
        assert!(
            tls.read_tls(&mut socket).unwrap() > 0,
            "closed in the handshake"
        );
        tls.process_new_packets().unwrap();
    }
    assert!(tls.wants_write(), "the client's Finished, held back");
    let lot = shared.lot().unwrap();
    assert!(eventually(|| lot.len() == 1), "the handshake is parked");

    // The stop: a handshake under way is a request running, not an idle connection.
    handle.shutdown();
    assert!(eventually(|| lot.is_closing() && lot.len() == 0));
    tls.writer().write_all(b"hello\n").unwrap();
    while tls.wants_write() {
        tls.write_tls(&mut socket).unwrap();
    }
    let mut answer = Vec::new();
    while !answer.ends_with(b"\n") {
        let mut chunk = [0u8; 64];
        match tls.reader().read(&mut chunk) {
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let n = tls.read_tls(&mut socket).unwrap();
                assert!(n > 0, "closed before the answer: {answer:?}");
                tls.process_new_packets().unwrap();
            }
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    assert_eq!(answer, b"hello\n");
    let report = serving.join().unwrap();
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(config.stats().handshakes, 1);
}
