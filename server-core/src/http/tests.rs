//! The keep-alive loop over real sockets: a server on 127.0.0.1 port 0, raw `TcpStream`
//! clients writing exact bytes, so every edge case is what goes over the wire.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::server::TcpServer;
use crate::ShutdownHandle;

/// Answers with the method, path and body length; `/panic` panics; `/upgrade` switches to an
/// echo of one line.
struct Probe;

impl Handler for Probe {
    type State = ();
    fn new(_: &ServerContext) -> Self {
        Probe
    }
}

impl HttpHandler for Probe {
    fn respond(&mut self, request: &Request, _: &ServerContext) -> Response {
        match request.path() {
            "/panic" => panic!("handler bug"),
            "/upgrade" => Response::switching_protocols("line-echo"),
            "/close" => Response::text(200, "bye").with_header("Connection", "close"),
            _ => Response::text(
                200,
                format!(
                    "{} {} {}",
                    request.method(),
                    request.target(),
                    request.body().len()
                ),
            ),
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_body: 1000,
            max_head: 2000,
            timeout: Some(Duration::from_millis(700)),
            ..Limits::default()
        }
    }

    fn upgraded(&mut self, _: &Request, stream: Upgraded<'_>, _: &ServerContext) -> HandleResult {
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line)?;
        stream
            .get_mut()
            .write_all(format!("echo {line}").as_bytes())?;
        Ok(())
    }
}

struct Running {
    address: SocketAddr,
    stop: ShutdownHandle,
    thread: thread::JoinHandle<crate::Result<()>>,
}

fn start() -> Running {
    let mut server = TcpServer::<Http<Probe>>::bind("127.0.0.1:0").unwrap();
    let address = server.server_address().as_inet().unwrap();
    let stop = server.shutdown_handle();
    let thread = thread::spawn(move || server.serve_forever());
    Running {
        address,
        stop,
        thread,
    }
}

impl Running {
    fn client(&self) -> TcpStream {
        let client = TcpStream::connect(self.address).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
    }

    /// Sends `raw` and reads until the server closes.
    fn exchange(&self, raw: &[u8]) -> String {
        let mut client = self.client();
        client.write_all(raw).unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        String::from_utf8_lossy(&reply).into_owned()
    }

    fn stop(self) {
        self.stop.shutdown();
        self.thread.join().unwrap().unwrap();
    }
}

/// Reads one response with a `Content-Length` body from `reader`: (status line, headers, body).
fn read_response(reader: &mut impl BufRead) -> (String, Vec<String>, String) {
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            length = v.parse().unwrap();
        }
        headers.push(line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (
        status.trim_end().to_owned(),
        headers,
        String::from_utf8(body).unwrap(),
    )
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection_and_pipelines() {
    let server = start();
    let client = server.client();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    for i in 0..3 {
        write!(writer, "GET /n{i} HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        let (status, headers, body) = read_response(&mut reader);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            headers.iter().any(|h| h.starts_with("Date: ")),
            "{headers:?}"
        );
        assert_eq!(body, format!("GET /n{i} 0"));
    }
    // Two requests in one write, the second with a body: answered in order.
    writer
        .write_all(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyzGET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut reader).2, "POST /a 3");
    let (_, headers, body) = read_response(&mut reader);
    assert_eq!(body, "GET /b 0");
    assert!(
        headers.contains(&"Connection: close".to_owned()),
        "{headers:?}"
    );
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "closed after Connection: close");
    server.stop();
}

#[test]
fn http_1_0_closes_after_the_response_unless_keep_alive() {
    let server = start();
    let reply = server.exchange(b"GET /old HTTP/1.0\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains("Connection: close\r\n"), "{reply}");
    assert!(reply.ends_with("GET /old 0"), "{reply}");

    let client = server.client();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    for _ in 0..2 {
        writer
            .write_all(b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let (_, headers, _) = read_response(&mut reader);
        assert!(
            headers.contains(&"Connection: keep-alive".to_owned()),
            "{headers:?}"
        );
    }
    server.stop();
}

#[test]
fn head_sends_the_length_without_the_body() {
    let server = start();
    let reply = server.exchange(b"HEAD /h HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(reply.contains("Content-Length: 9\r\n"), "{reply}"); // "HEAD /h 0"
    assert!(reply.ends_with("\r\n\r\n"), "no body: {reply}");
    server.stop();
}

#[test]
fn malformed_requests_get_a_400_with_the_reason_and_close() {
    let server = start();
    let reply = server.exchange(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: 1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    assert!(reply.contains("Connection: close\r\n"), "{reply}");
    assert!(reply.contains("malformed request"), "{reply}");
    let reply = server.exchange(b"GET / HTTP/1.1\r\n\r\n");
    assert!(reply.contains("need a Host header"), "{reply}");
    let reply = server.exchange(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 505 "), "{reply}");
    server.stop();
}

#[test]
fn limits_give_413_431_414_and_411() {
    let server = start();
    let mut big = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n".to_vec();
    big.extend(vec![b'x'; 5000]);
    let reply = server.exchange(&big);
    assert!(
        reply.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{reply}"
    );
    let headers = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(3000)
    );
    let reply = server.exchange(headers.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 431 "), "{reply}");
    let line = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "p".repeat(3000));
    let reply = server.exchange(line.as_bytes());
    assert!(reply.starts_with("HTTP/1.1 414 "), "{reply}");
    let reply = server.exchange(
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert!(
        reply.starts_with("HTTP/1.1 411 Length Required\r\n"),
        "{reply}"
    );
    server.stop();
}

#[test]
fn expect_100_continue_gets_continue_then_the_response() {
    let server = start();
    let client = server.client();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    writer
        .write_all(
            b"PUT /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
        )
        .unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "\r\n");
    writer.write_all(b"body").unwrap();
    assert_eq!(read_response(&mut reader).2, "PUT /c 4");
    // Over the limit: the refusal instead of 100 Continue, and no body is awaited.
    writer
        .write_all(
            b"PUT /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4000\r\n\r\n",
        )
        .unwrap();
    let (status, _, _) = read_response(&mut reader);
    assert_eq!(status, "HTTP/1.1 413 Content Too Large");
    server.stop();
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_timeout() {
    let server = start();
    let mut client = server.client();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    let waited = started.elapsed();
    assert!(String::from_utf8_lossy(&reply).ends_with("GET / 0"));
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    server.stop();
}

#[test]
fn a_request_trickling_past_the_deadline_gets_408() {
    let server = start();
    let mut client = server.client();
    let started = Instant::now();
    client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    // A header line every 100 ms: every read of the server succeeds well within 700 ms, so
    // only a deadline for the whole head ends this. The read timeout paces the client.
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut reply = Vec::new();
    for _ in 0..50 {
        if client.write_all(b"X: y\r\n").is_err() {
            break;
        }
        let mut chunk = [0; 1024];
        match client.read(&mut chunk) {
            Ok(n) => {
                reply.extend_from_slice(&chunk[..n]);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = client.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{reply}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    server.stop();
}

#[test]
fn a_panicking_handler_gets_its_client_a_500_and_others_are_served() {
    let server = start();
    let reply = server.exchange(b"GET /panic HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{reply}"
    );
    assert!(reply.contains("Connection: close\r\n"), "{reply}");
    let reply = server.exchange(b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(reply.ends_with("GET /after 0"), "{reply}");
    server.stop();
}

#[test]
fn a_handler_asking_to_close_closes() {
    let server = start();
    let reply = server.exchange(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(reply.ends_with("bye"), "{reply}");
    assert_eq!(reply.matches("Connection").count(), 1, "{reply}");
    server.stop();
}

#[test]
fn an_upgrade_hands_over_the_raw_stream_with_bytes_already_sent() {
    let server = start();
    let mut client = server.client();
    // The first line of the new protocol comes in the same write as the request.
    client
        .write_all(b"GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: line-echo\r\n\r\nhello\n")
        .unwrap();
    let reply = {
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).unwrap();
        String::from_utf8(reply).unwrap()
    };
    assert!(
        reply.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{reply}"
    );
    assert!(reply.ends_with("\r\n\r\necho hello\n"), "{reply}");
    server.stop();
}

#[test]
fn a_client_closing_mid_request_is_not_an_error() {
    let server = start();
    let mut client = server.client();
    client.write_all(b"GET / HTT").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(
        rest.is_empty(),
        "nothing is answered to half a request line"
    );
    let mut client = server.client();
    client
        .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nor to half a body");
    let reply = server.exchange(b"GET /still HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(reply.ends_with("GET /still 0"), "{reply}");
    server.stop();
}

/// The loop run on bytes, as the fuzz targets in `fuzz/` run it (`fuzz_connection`); what the
/// server wrote back, as text. Regression tests for inputs the fuzzers find go here.
fn on_bytes(bytes: &[u8]) -> String {
    let server = TcpServer::<Http<Probe>>::bind("127.0.0.1:0").unwrap();
    let out = fuzz_connection(&mut Probe, bytes, server.context()).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_fuzzing_entry_point_runs_the_real_loop() {
    let out = on_bytes(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    );
    assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{out}");
    assert!(
        out.contains("GET /a 0") && out.ends_with("POST /b 2"),
        "{out}"
    );
    let refused = on_bytes(b"GET / HTTP/1.1\r\n\r\n");
    assert!(
        refused.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{refused}"
    );
    let upgraded = on_bytes(b"GET /upgrade HTTP/1.1\r\nHost: x\r\n\r\nline\n");
    assert!(upgraded.starts_with("HTTP/1.1 101 "), "{upgraded}");
}

/// Answers every request with 204; its state counts the server hooks that ran.
struct Hooks;

#[derive(Default)]
struct HookCounts {
    timeouts: std::sync::atomic::AtomicUsize,
    service_actions: std::sync::atomic::AtomicUsize,
}

impl Handler for Hooks {
    type State = HookCounts;
    fn new(_: &ServerContext<HookCounts>) -> Self {
        Hooks
    }
}

impl HttpHandler for Hooks {
    fn respond(&mut self, _: &Request, _: &ServerContext<HookCounts>) -> Response {
        Response::new(204)
    }
}

#[test]
fn the_server_hooks_run_for_an_http_server() {
    use std::sync::atomic::Ordering::SeqCst;
    let mut server = TcpServer::<Http<Hooks>>::builder()
        .timeout(Some(Duration::from_millis(10)))
        .handle_timeout(|server| {
            server.state().timeouts.fetch_add(1, SeqCst);
        })
        .service_actions(|server| {
            server.state().service_actions.fetch_add(1, SeqCst);
        })
        .bind("127.0.0.1:0")
        .unwrap();
    let state = std::sync::Arc::clone(server.context().state_arc());
    assert_eq!(server.handle_request().unwrap(), crate::Waited::TimedOut);
    assert_eq!(state.timeouts.load(SeqCst), 1);
    let before = state.service_actions.load(SeqCst);
    let address = server.server_address().as_inet().unwrap();
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let mut client = TcpStream::connect(address).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");
    stop.shutdown();
    serving.join().unwrap().unwrap();
    assert!(state.service_actions.load(SeqCst) > before);
}

mod limits_and_cost;
