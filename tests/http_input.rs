//! Input that can never form an HTTP request is refused at once, not at the request timeout.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, ServerContext, TcpServer, Threading};

#[derive(Handler)]
struct Hello;

impl HttpHandler for Hello {
    fn respond(&mut self, _request: &Request, _server: &ServerContext) -> Response {
        Response::text(200, "hello\n")
    }
}

/// Sends `bytes` without closing, and reads the answer: the time it took and its first line.
fn answer_to(address: std::net::SocketAddr, bytes: &[u8]) -> (Duration, String) {
    let mut client = TcpStream::connect(address).expect("connect");
    // Well below the layer's 30 s request timeout: an answer only at the timeout fails.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    client.write_all(bytes).expect("send");
    let mut answer = Vec::new();
    let _ = client.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    (
        started.elapsed(),
        text.lines().next().unwrap_or_default().to_owned(),
    )
}

#[test]
fn a_tls_client_hello_and_bare_carriage_returns_get_a_fast_400() {
    let server = TcpServer::<Http<Hello>, Threading>::bind("127.0.0.1:0").expect("bind");
    let running = util::serve(server);
    let address = running.inet();
    // The first bytes of a TLS 1.2/1.3 ClientHello record.
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    for (what, bytes) in [
        ("a TLS ClientHello", &hello[..]),
        ("bare CR lines", &b"\r\r\r\r"[..]),
        ("binary", &b"\x00\x01\x02GET / HTTP/1.1\r\n"[..]),
    ] {
        let (took, status) = answer_to(address, bytes);
        println!("{what}: {status:?} after {took:?} (bound 1 s; the request timeout is 30 s)");
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{what}");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }
    // A request trickled in a byte at a time is still served.
    let mut client = TcpStream::connect(address).expect("connect");
    for byte in b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n" {
        client.write_all(&[*byte]).expect("send");
    }
    let mut answer = String::new();
    client.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    running.stop();
}
