//! The layer at its limits (the busy reply, `max_in_flight`, `max_connections`) and what a
//! request costs (allocations, dates, many header fields), over real sockets as in the parent
//! module.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use super::*;
use crate::server::TcpServer;

#[test]
fn the_busy_reply_is_one_whole_http_response() {
    let reply = <Http<Hooks> as crate::StreamRequestHandler>::BUSY_REPLY;
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(reply).unwrap() {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("an incomplete head"),
    };
    assert_eq!(response.code, Some(503));
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| std::str::from_utf8(h.value).unwrap())
    };
    assert_eq!(header("retry-after"), Some("1"));
    assert_eq!(header("connection"), Some("close"));
    let length: usize = header("content-length").unwrap().parse().unwrap();
    assert_eq!(
        reply.len() - head,
        length,
        "Content-Length matches the body"
    );
}

/// Holds every request in `respond` until the test lets it go; at most one in flight.
struct Gated;

struct GateChannels {
    entered: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
    release: (
        crossbeam_channel::Sender<()>,
        crossbeam_channel::Receiver<()>,
    ),
}

impl Handler for Gated {
    type State = GateChannels;
    fn new(_: &ServerContext<GateChannels>) -> Self {
        Gated
    }
}

impl HttpHandler for Gated {
    fn respond(&mut self, _: &Request, server: &ServerContext<GateChannels>) -> Response {
        let _ = server.state().entered.0.send(());
        let _ = server
            .state()
            .release
            .1
            .recv_timeout(Duration::from_secs(10));
        Response::text(200, "done")
    }

    fn limits(&self) -> Limits {
        Limits {
            max_in_flight: Some(1),
            ..Limits::default()
        }
    }
}

#[test]
fn past_max_in_flight_a_request_gets_503_with_retry_after() {
    let channels = GateChannels {
        entered: crossbeam_channel::unbounded(),
        release: crossbeam_channel::unbounded(),
    };
    let mut server = TcpServer::<Http<Gated>, crate::Threading>::with_state(channels)
        .bind("127.0.0.1:0")
        .unwrap();
    let address = server.server_address().as_inet().unwrap();
    let state = std::sync::Arc::clone(server.context().state_arc());
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(address).unwrap();
    first.write_all(get).unwrap();
    state
        .entered
        .1
        .recv_timeout(Duration::from_secs(10))
        .expect("the first request is in flight");
    let mut second = TcpStream::connect(address).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    second.write_all(get).unwrap();
    let mut reply = String::new();
    second.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 503 "), "{reply}");
    assert!(reply.contains("\r\nRetry-After: 1\r\n"), "{reply}");
    state.release.0.send(()).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (status, _, body) = read_response(&mut BufReader::new(first));
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "done")
    );
    stop.shutdown();
    serving.join().unwrap().unwrap();
}

#[test]
fn at_max_connections_responses_end_keep_alive() {
    for (cap, closes) in [(1, true), (2, false)] {
        let mut server = TcpServer::<Http<Probe>>::builder()
            .max_connections(Some(cap))
            .bind("127.0.0.1:0")
            .unwrap();
        let address = server.server_address().as_inet().unwrap();
        let stop = server.shutdown_handle();
        let serving = thread::spawn(move || server.serve_forever());
        let mut client = TcpStream::connect(address).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (_, headers, _) = read_response(&mut BufReader::new(&client));
        let said_close = headers.iter().any(|h| h == "Connection: close");
        assert_eq!(said_close, closes, "cap {cap}: {headers:?}");
        drop(client);
        stop.shutdown();
        serving.join().unwrap().unwrap();
    }
}

/// Counts the allocations of each thread, so a test can count what serving a request costs on
/// the thread that serves it, whatever other tests run at the same time.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_allocation() {
    // `try_with`: nothing to count while the thread's locals are torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call goes to the system allocator unchanged; the counting allocates nothing.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller keeps `alloc`'s contract, which is the system allocator's.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: as for `alloc`.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: `ptr` came from this allocator, which is the system allocator.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as for `realloc`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: CountingAllocator = CountingAllocator;

/// TechEmpower's plaintext test: `Hello, World!`, and every header field count and the last
/// field's value on `/fields`.
struct Plaintext;

impl Handler for Plaintext {
    type State = ();
    fn new(_: &ServerContext) -> Self {
        Plaintext
    }
}

impl HttpHandler for Plaintext {
    fn respond(&mut self, request: &Request, _: &ServerContext) -> Response {
        match request.path() {
            "/fields" => {
                let last = request.headers().last().map(|(n, v)| (n, v.to_vec()));
                let (name, value) = last.unwrap_or_default();
                Response::text(
                    200,
                    format!(
                        "{} {name}: {}",
                        request.headers().count(),
                        String::from_utf8_lossy(&value)
                    ),
                )
            }
            _ => Response::text(200, "Hello, World!"),
        }
    }
}

#[test]
fn a_keep_alive_request_costs_a_handful_of_allocations() {
    // The handler's own response is two (its body and its header list); the layer's share is
    // the request it hands over: the target and the header fields.
    const BOUND: f64 = 6.0;
    let server = TcpServer::<Http<Plaintext>>::bind("127.0.0.1:0").unwrap();
    let request =
        b"GET /plaintext HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n";
    // Allocations to serve `n` pipelined requests on one connection (the real loop, on this
    // thread), less what the connection itself costs.
    let allocations = |n: usize| {
        let bytes = request.repeat(n);
        let before = ALLOCATIONS.get();
        let out = fuzz_connection(&mut Plaintext, &bytes, server.context()).unwrap();
        let used = ALLOCATIONS.get() - before;
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), n, "{text}");
        assert_eq!(text.matches("\r\n\r\nHello, World!").count(), n, "{text}");
        used
    };
    let one = allocations(1);
    let many = allocations(201);
    let per_request = (many - one) as f64 / 200.0;
    eprintln!("allocations per keep-alive request {per_request:.2} (bound {BOUND})");
    assert!(
        per_request <= BOUND,
        "{per_request} allocations per request"
    );
}

#[test]
fn many_header_fields_arrive_whole_and_dates_are_current() {
    let mut server = TcpServer::<Http<Plaintext>>::bind("127.0.0.1:0").unwrap();
    let address = server.server_address().as_inet().unwrap();
    let stop = server.shutdown_handle();
    let serving = thread::spawn(move || server.serve_forever());
    let client = TcpStream::connect(address).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    // More fields than the parser keeps on the stack (32), up to the default limit (100).
    for fields in [1, 31, 32, 33, 100] {
        let mut raw = String::from("GET /fields HTTP/1.1\r\nHost: a\r\n");
        for i in 1..fields {
            raw.push_str(&format!("X-Field-{i}:  value {i} \r\n"));
        }
        raw.push_str("\r\n");
        writer.write_all(raw.as_bytes()).unwrap();
        let (status, headers, body) = read_response(&mut reader);
        assert_eq!(status, "HTTP/1.1 200 OK");
        let last = match fields {
            1 => "Host: a".to_owned(),
            n => format!("X-Field-{}: value {}", n - 1, n - 1),
        };
        assert_eq!(body, format!("{fields} {last}"));
        // The Date is an IMF-fixdate of now (within the second it was cached in).
        let date = headers
            .iter()
            .find_map(|h| h.strip_prefix("Date: "))
            .unwrap();
        let sent = httpdate::parse_http_date(date).unwrap();
        let now = std::time::SystemTime::now();
        let age = now.duration_since(sent).unwrap_or_default();
        assert!(age < Duration::from_secs(2), "Date {date} is {age:?} old");
        assert!(sent < now + Duration::from_secs(1), "Date {date} is ahead");
    }
    // One past the limit: 431, and the connection closes.
    let mut raw = String::from("GET /fields HTTP/1.1\r\nHost: a\r\n");
    for i in 1..101 {
        raw.push_str(&format!("X-Field-{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    writer.write_all(raw.as_bytes()).unwrap();
    let (status, _, _) = read_response(&mut reader);
    assert!(status.starts_with("HTTP/1.1 431 "), "{status}");
    stop.shutdown();
    serving.join().unwrap().unwrap();
}
