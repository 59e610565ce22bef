//! Stopping an HTTP server with keep-alive clients: idle connections close at once, busy ones
//! get `Connection: close` on their next response, and no response is cut short.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use socketserver::http::{Http, HttpHandler, Request, Response};
use socketserver::{Handler, Pool, ServerContext, Strategy, TcpServer, Threading};

#[derive(Handler)]
struct Hello;

impl HttpHandler for Hello {
    fn respond(&mut self, _request: &Request, _server: &ServerContext) -> Response {
        Response::text(200, "Hello, World!")
    }
}

/// One response read off a keep-alive connection.
enum Reply {
    /// The whole response; whether it said `Connection: close`.
    Whole { close: bool },
    /// End-of-file before any byte of a response: the server closed the idle connection
    /// before the request reached it (HTTP clients retry these, RFC 9112 section 9.3.1).
    ClosedBeforeRequest,
    /// Part of a response, then end-of-file or an error: a lost request.
    Cut(String),
}

fn get(reader: &mut BufReader<TcpStream>) -> Reply {
    let sent = reader
        .get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    if sent.is_err() {
        return Reply::ClosedBeforeRequest;
    }
    let mut head = String::new();
    let mut length = None;
    let mut close = false;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) if head.is_empty() => return Reply::ClosedBeforeRequest,
            Err(e) if head.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Reply::ClosedBeforeRequest
            }
            Ok(0) | Err(_) => return Reply::Cut(head),
            Ok(_) => {}
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
        close |= lower.trim_end() == "connection: close";
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length.unwrap_or(0)];
    match reader.read_exact(&mut body) {
        Ok(()) if body == b"Hello, World!" => Reply::Whole { close },
        _ => Reply::Cut(head),
    }
}

fn connect(address: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    BufReader::new(stream)
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_once_on_stop() {
    idle_closed_at_once::<Threading>(false);
}

#[test]
fn a_parked_keep_alive_connection_is_closed_at_once_on_stop() {
    idle_closed_at_once::<Pool>(true);
}

/// `parked`: the strategy parks the idle connection, so its request ended with its response
/// and close finds none running (or one just finished, if the loop had not looked since).
fn idle_closed_at_once<S: Strategy + Default>(parked: bool) {
    let server = TcpServer::<Http<Hello>, S>::bind("127.0.0.1:0").expect("bind");
    let running = util::serve(server);
    let mut client = connect(running.inet());
    assert!(matches!(get(&mut client), Reply::Whole { close: false }));
    // The client stays connected and silent, as browsers leave their connections.
    let server = running.stop();
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    thread::spawn(move || {
        let _ = tx.send(server.close());
    });
    let report = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("close waited for the idle keep-alive client (30 s keep-alive timeout)");
    println!(
        "close took {:?} with an idle keep-alive client",
        started.elapsed()
    );
    assert_eq!(report.abandoned, 0, "{report:?}");
    if !parked {
        assert_eq!(report.completed, 1, "{report:?}");
    }
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).expect("end of file"), 0);
}

#[test]
fn busy_keep_alive_clients_get_connection_close_and_lose_no_response() {
    busy_clients_lose_nothing::<Threading>();
}

/// The same where idle connections are parked between requests: a stop may find each one
/// busy, parked, or on its way between the two.
#[test]
fn busy_parked_keep_alive_clients_get_connection_close_and_lose_no_response() {
    busy_clients_lose_nothing::<Pool>();
}

fn busy_clients_lose_nothing<S: Strategy + Default>() {
    const CLIENTS: usize = 16;
    let server = TcpServer::<Http<Hello>, S>::builder()
        .close_timeout(Some(Duration::from_secs(2)))
        .bind("127.0.0.1:0")
        .expect("bind");
    let running = util::serve(server);
    let address = running.inet();
    let served = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let served = Arc::clone(&served);
            let stopping = Arc::clone(&stopping);
            thread::spawn(move || {
                let mut connection = connect(address);
                // (answered after the stop began, closed before the request, cut)
                let mut after = (0usize, 0usize, Vec::new());
                // Bounded: a client stops at `Connection: close`, or after 100,000 requests.
                for _ in 0..100_000 {
                    let stopped_before = stopping.load(Ordering::SeqCst);
                    match get(&mut connection) {
                        Reply::Whole { close } => {
                            served.fetch_add(1, Ordering::SeqCst);
                            if stopped_before {
                                after.0 += 1;
                            }
                            if close {
                                break;
                            }
                        }
                        Reply::ClosedBeforeRequest => {
                            after.1 += 1;
                            break;
                        }
                        Reply::Cut(head) => {
                            after.2.push(head);
                            break;
                        }
                    }
                }
                after
            })
        })
        .collect();
    assert!(
        util::eventually(Duration::from_secs(20), || served.load(Ordering::SeqCst)
            >= 50 * CLIENTS),
        "the clients were not served"
    );
    stopping.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let server = running.stop();
    let report = server.close();
    let took = started.elapsed();
    let mut answered_after = 0;
    let mut closed_before_request = 0;
    let mut cut = Vec::new();
    for client in clients {
        let (a, c, mut k) = client.join().expect("client thread");
        answered_after = answered_after.max(a);
        closed_before_request += c;
        cut.append(&mut k);
    }
    println!(
        "{CLIENTS} keep-alive clients: stop and close took {took:?}; at most {answered_after} \
         response(s) per client after the stop; {closed_before_request} idle connection(s) \
         closed before their next request; {} response(s) cut (bound 0); {report:?}",
        cut.len()
    );
    assert!(cut.is_empty(), "responses cut short: {cut:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
    // Keep-alive ended with the first response after the stop: no serving on until the
    // deadline (a client that saw the flag just before the stop may get one more).
    assert!(
        answered_after <= 2,
        "{answered_after} responses after the stop"
    );
    assert!(
        took < Duration::from_secs(2),
        "close waited for the deadline"
    );
}

/// VmRSS of this process, in bytes.
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[test]
fn stalled_large_bodies_hold_at_most_the_total_body_budget() {
    const CLIENTS: usize = 120;
    const BODY: usize = 1024 * 1024 - 1;
    const BOUND: usize = 96 * 1024 * 1024; // the 64 MiB budget, threads and buffers
    let _alone = util::isolation::alone();
    let server = TcpServer::<Http<Hello>, Threading>::bind("127.0.0.1:0").expect("bind");
    let running = util::serve(server);
    let address = running.inet();
    let before = rss();
    let chunk = vec![b'x'; 64 * 1024];
    // Each client sends a head for a 1 MiB - 1 body, then all of it but its last byte, and
    // stalls; a refused one reads its 503.
    let (tx, rx) = mpsc::channel();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let tx = tx.clone();
            let chunk = chunk.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(address).expect("connect");
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                let head =
                    format!("POST / HTTP/1.1\r\nHost: test\r\nContent-Length: {BODY}\r\n\r\n");
                let mut sent = stream.write_all(head.as_bytes()).is_ok();
                let mut left = BODY - 1;
                while sent && left > 0 {
                    let n = left.min(chunk.len());
                    sent = stream.write_all(&chunk[..n]).is_ok();
                    left -= n;
                }
                let _ = tx.send(());
                let mut answer = [0u8; 64];
                let n = stream.read(&mut answer).unwrap_or(0);
                String::from_utf8_lossy(&answer[..n]).into_owned()
            })
        })
        .collect();
    drop(tx);
    // Every client has sent what it will send.
    for _ in 0..CLIENTS {
        rx.recv_timeout(Duration::from_secs(30))
            .expect("a client did not finish sending");
    }
    // The probe: a GET with no body is still answered at once.
    let mut probe = connect(address);
    assert!(matches!(get(&mut probe), Reply::Whole { .. }));
    let held = rss().saturating_sub(before);
    let server = running.stop();
    drop(server);
    let answers: Vec<String> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    let busy = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 503"))
        .count();
    println!(
        "{CLIENTS} clients stalled on 1 MiB bodies: the server holds {} MiB more (bound {} MiB); \
         {busy} got 503",
        held >> 20,
        BOUND >> 20
    );
    assert!(held <= BOUND, "{} MiB held", held >> 20);
    assert!(busy >= CLIENTS - 64, "only {busy} refused");
}
