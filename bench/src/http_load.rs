//! Our own HTTP clients, for what wrk does not show or cannot do:
//!
//! - [`count_keep_alive`]: keep-alive connections, a thread each, each counting the responses
//!   it got. A server that leaves some connections unanswered (a pool whose workers are all
//!   held by other keep-alive clients) can still show healthy requests/s; this counts the
//!   connections that got no response at all, and the fewest responses one connection got.
//! - [`connection_per_request`]: each request on a new connection (`Connection: close`, read
//!   to the end), which wrk cannot do: requests/s and latency percentiles.
//!
//! Every load is bounded in time: each read has a timeout that ends at the load's deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::load::Report;
use crate::BoxError;

/// What the keep-alive counter saw.
#[derive(Debug, Clone, Default)]
pub struct Counted {
    /// Clients (each with one connection at a time).
    pub connections: usize,
    /// Clients that got at least one complete response.
    pub answered: usize,
    /// The fewest responses one client got.
    pub min_responses: u64,
    /// Responses over all clients.
    pub responses: u64,
    /// Connections the server closed between responses (the clients opened new ones).
    pub closed: u64,
    /// Clients that gave up (connect refused, reset mid-response, a status other than 200).
    pub errors: u64,
    /// The window, in seconds.
    pub seconds: f64,
}

impl Counted {
    /// Clients that got no response in the whole window.
    pub fn unanswered(&self) -> usize {
        self.connections - self.answered
    }
}

/// The request line and headers for `path` on `target`.
fn request(path: &str, target: SocketAddr, close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: {target}\r\n{connection}\r\n").into_bytes()
}

/// Reads one response (status line, headers, a `Content-Length` body) from `stream` into
/// `buf`, which may hold the start of it already and keeps what follows it. Returns the status
/// and whether the response says `Connection: close`.
fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(u16, bool), BoxError> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head not UTF-8")?;
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or("no status")?;
            let header = |wanted: &str| {
                head.split("\r\n").skip(1).find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case(wanted)
                        .then(|| value.trim())
                })
            };
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or("no Content-Length")?;
            let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
            let total = end + 4 + length;
            while buf.len() < total {
                read_more(stream, buf, &mut chunk, deadline)?;
            }
            buf.drain(..total);
            return Ok((status, close));
        }
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        read_more(stream, buf, &mut chunk, deadline)?;
    }
}

fn read_more(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    deadline: Instant,
) -> Result<(), BoxError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Box::new(std::io::Error::from(ErrorKind::TimedOut)));
    }
    stream.set_read_timeout(Some(left))?;
    match stream.read(chunk)? {
        0 => Err(Box::new(std::io::Error::from(ErrorKind::UnexpectedEof))),
        n => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

/// What one keep-alive client saw.
#[derive(Debug, Clone, Copy, Default)]
struct Client {
    responses: u64,
    /// Times the server closed the connection (`Connection: close`, or end-of-file between
    /// responses); the client then opened a new one, as an HTTP client does.
    closed: u64,
    /// The client gave up: connect refused, reset mid-response, a status other than 200.
    failed: bool,
}

/// Whether `e` is the server closing the connection between responses.
fn is_close(e: &BoxError) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            ErrorKind::UnexpectedEof
                | ErrorKind::ConnectionReset
                | ErrorKind::BrokenPipe
                | ErrorKind::ConnectionAborted
        )
    })
}

/// Whether `e` is a read that timed out (at the window's end).
fn is_timeout(e: &BoxError) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock))
}

/// One keep-alive client until `deadline`: request, response, again; a new connection when
/// the server closes one.
///
/// Returns the connection still open, if any: the caller closes it only once every client has
/// finished, so that no client is served in the window's last moment because others had left.
fn keep_alive_client(
    id: usize,
    first: std::io::Result<TcpStream>,
    target: SocketAddr,
    message: &[u8],
    deadline: Instant,
) -> (Client, Option<TcpStream>) {
    let mut client = Client::default();
    let mut stream = first;
    let mut buf = Vec::with_capacity(4096);
    while Instant::now() < deadline {
        let Ok(conn) = stream.as_mut() else {
            client.failed = true;
            return (client, None);
        };
        let _ = conn.set_nodelay(true);
        buf.clear();
        loop {
            if Instant::now() >= deadline {
                return (client, stream.ok());
            }
            if conn.write_all(message).is_err() {
                client.closed += 1;
                break;
            }
            match read_response(conn, &mut buf, deadline) {
                // A response that completes after the window is not counted: it may have been
                // served only because other clients had stopped.
                Ok(_) if Instant::now() > deadline => return (client, stream.ok()),
                Ok((200, close)) => {
                    client.responses += 1;
                    if close {
                        client.closed += 1;
                        break;
                    }
                }
                Ok(_) => {
                    client.failed = true;
                    return (client, stream.ok());
                }
                Err(e) if is_timeout(&e) => return (client, stream.ok()),
                Err(e) if is_close(&e) && buf.is_empty() => {
                    client.closed += 1;
                    break;
                }
                Err(_) => {
                    client.failed = true;
                    return (client, None);
                }
            }
        }
        stream = connect_from(id, target);
    }
    (client, stream.ok())
}

/// Keep-alive clients, one thread each: all connect before the clock starts, then each sends
/// a request, reads its response, and again, until the window ends. A client whose connection
/// the server closes opens a new one (and it is counted); a client whose connection breaks
/// mid-response, or that gets a status other than 200, stops and is counted as an error.
pub fn count_keep_alive(
    target: SocketAddr,
    path: &str,
    connections: usize,
    window: Duration,
) -> Result<Counted, BoxError> {
    let start = Arc::new(Barrier::new(connections + 1));
    let end = Arc::new(Barrier::new(connections));
    let message = request(path, target, false);
    let mut threads = Vec::with_capacity(connections);
    for id in 0..connections {
        let start = Arc::clone(&start);
        let end = Arc::clone(&end);
        let message = message.clone();
        let thread = thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let stream = connect_from(id, target);
                start.wait();
                let deadline = Instant::now() + window;
                let (client, open) = keep_alive_client(id, stream, target, &message, deadline);
                // Every client holds its connection until all have finished.
                end.wait();
                drop(open);
                client
            })?;
        threads.push(thread);
    }
    start.wait();
    let began = Instant::now();
    let mut counted = Counted {
        connections,
        min_responses: u64::MAX,
        ..Counted::default()
    };
    for thread in threads {
        let client = thread.join().map_err(|_| "a client thread panicked")?;
        counted.responses += client.responses;
        counted.answered += usize::from(client.responses > 0);
        counted.min_responses = counted.min_responses.min(client.responses);
        counted.closed += client.closed;
        counted.errors += u64::from(client.failed);
    }
    counted.seconds = began.elapsed().as_secs_f64().max(window.as_secs_f64());
    if connections == 0 {
        counted.min_responses = 0;
    }
    Ok(counted)
}

/// Connects from loopback address 127.0.0.(2 + `id` mod 250), so the clients share no more
/// than a few ephemeral port ranges and a client that reconnects often runs none out of ports.
fn connect_from(id: usize, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let host = u8::try_from(2 + id % 250).unwrap_or(2);
    let source = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, host), 0));
    socket.bind(&source.into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(5))?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `clients` threads, each doing: connect, `GET path` with `Connection: close`, read to the
/// end; again until the window ends. Requests/s counts the requests completed in the window.
pub fn connection_per_request(
    target: SocketAddr,
    path: &str,
    clients: usize,
    window: Duration,
) -> Result<Report, BoxError> {
    let start = Arc::new(Barrier::new(clients + 1));
    let message = request(path, target, true);
    let mut threads = Vec::with_capacity(clients);
    for id in 0..clients {
        let start = Arc::clone(&start);
        let message = message.clone();
        let thread = thread::Builder::new().stack_size(256 * 1024).spawn(
            move || -> Result<(Histogram<u64>, u64, u64), String> {
                let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .map_err(|e| e.to_string())?;
                let (mut requests, mut errors) = (0, 0);
                let mut reply = Vec::with_capacity(4096);
                start.wait();
                let deadline = Instant::now() + window;
                while Instant::now() < deadline {
                    let began = Instant::now();
                    let mut once = || -> std::io::Result<bool> {
                        let mut stream = connect_from(id, target)?;
                        stream.write_all(&message)?;
                        let left = deadline.saturating_duration_since(Instant::now());
                        stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                        reply.clear();
                        stream.read_to_end(&mut reply)?;
                        Ok(reply.starts_with(b"HTTP/1.1 200 ")
                            || reply.starts_with(b"HTTP/1.0 200 "))
                    };
                    match once() {
                        Ok(true) if Instant::now() <= deadline => {
                            requests += 1;
                            let us = began.elapsed().as_micros().max(1);
                            let _ = histogram.record(u64::try_from(us).unwrap_or(u64::MAX));
                        }
                        Ok(true) => {}
                        Ok(false) => errors += 1,
                        Err(e)
                            if Instant::now() >= deadline
                                && matches!(
                                    e.kind(),
                                    ErrorKind::TimedOut | ErrorKind::WouldBlock
                                ) => {}
                        Err(_) => errors += 1,
                    }
                }
                Ok((histogram, requests, errors))
            },
        )?;
        threads.push(thread);
    }
    start.wait();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut measured = Report {
        seconds: window.as_secs_f64(),
        ..Report::default()
    };
    for thread in threads {
        let (histogram, requests, errors) =
            thread.join().map_err(|_| "a client thread panicked")??;
        all.add(&histogram)?;
        measured.requests += requests;
        measured.errors += errors;
    }
    measured.p50_us = all.value_at_quantile(0.50) as f64;
    measured.p99_us = all.value_at_quantile(0.99) as f64;
    measured.p999_us = all.value_at_quantile(0.999) as f64;
    Ok(measured)
}
