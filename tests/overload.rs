//! Saying no: each overload policy at `max_connections`, over real sockets, as the extra
//! client sees it (it waits, hears "busy", or is closed), with the counters; the per-client
//! cap with clients from two loopback addresses; the HTTP layer's 503 to Python's `requests`.

mod example;
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use socketserver::{
    HandleResult, Handler, Overload, StreamRequest, StreamRequestHandler, TcpServer, Threading,
};
use util::{serve, tcp_client, tcp_client_from, PATIENCE};

/// Echoes lines until the client closes; counts the connections it handled.
#[derive(Handler)]
#[handler(state = Handled)]
struct Lines {
    #[handler(state)]
    handled: std::sync::Arc<Handled>,
}

#[derive(Default)]
struct Handled(AtomicUsize);

impl StreamRequestHandler for Lines {
    const BUSY_REPLY: &'static [u8] = b"busy\n";

    fn handle(&mut self, request: &mut StreamRequest<'_, Handled>) -> HandleResult {
        self.handled.0.fetch_add(1, Ordering::SeqCst);
        let mut line = String::new();
        while request.rfile.read_line(&mut line)? > 0 {
            request.wfile.write_all(line.as_bytes())?;
            line.clear();
        }
        Ok(())
    }
}

/// Sends a line and reads its echo: the connection is being handled.
fn echoed(client: &mut TcpStream, line: &str) -> String {
    client.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    reply
}

/// Everything the server sends until it closes (or resets) the connection.
fn until_closed(client: &mut TcpStream) -> String {
    let mut got = Vec::new();
    match client.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading until the server closes: {e}"),
    }
    String::from_utf8(got).unwrap()
}

fn server(overload: Overload) -> util::Running<socketserver::transport::Tcp, Lines, Threading> {
    serve(
        TcpServer::<Lines, Threading>::builder()
            .max_connections(Some(1))
            .overload(overload)
            .bind("127.0.0.1:0")
            .unwrap(),
    )
}

#[test]
fn wait_leaves_the_extra_client_in_the_backlog_until_a_connection_ends() {
    let running = server(Overload::Wait);
    let mut first = tcp_client(running.inet());
    assert_eq!(echoed(&mut first, "one"), "one\n");
    let mut second = tcp_client(running.inet());
    second.write_all(b"two\n").unwrap();
    // Nothing to wait on while it waits: a bounded read shows no answer comes yet.
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0; 1];
    let waited = second.read(&mut byte).unwrap_err().kind();
    assert!(
        matches!(
            waited,
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{waited:?}"
    );
    drop(first);
    second.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reader = BufReader::new(second);
    let mut reply = String::new();
    reader.read_line(&mut reply).unwrap();
    assert_eq!(reply, "two\n", "served once the first connection ended");
    let server = running.stop();
    let stats = server.stats();
    assert_eq!((stats.overloaded, stats.rejected), (0, 0), "{stats:?}");
    assert_eq!(server.state().0.load(Ordering::SeqCst), 2);
}

#[test]
fn reject_answers_busy_closes_and_never_handles_the_client() {
    let running = server(Overload::Reject);
    let mut first = tcp_client(running.inet());
    assert_eq!(echoed(&mut first, "one"), "one\n");
    let mut second = tcp_client(running.inet());
    // What the client sent before it was turned away is read and dropped, so the close does
    // not reset the connection before the reply arrives.
    second.write_all(b"two\n").unwrap();
    assert_eq!(until_closed(&mut second), "busy\n");
    // The first connection was never disturbed.
    assert_eq!(echoed(&mut first, "still"), "still\n");
    drop(first);
    let server = running.stop();
    let stats = server.stats();
    assert_eq!(
        (stats.overloaded, stats.rejected, stats.over_client_limit),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(
        server.state().0.load(Ordering::SeqCst),
        1,
        "only the first was handled"
    );
}

#[test]
fn close_closes_the_extra_client_at_once_without_a_word() {
    let running = server(Overload::Close);
    let mut first = tcp_client(running.inet());
    assert_eq!(echoed(&mut first, "one"), "one\n");
    let mut second = tcp_client(running.inet());
    assert_eq!(until_closed(&mut second), "");
    drop(first);
    let server = running.stop();
    let stats = server.stats();
    assert_eq!((stats.overloaded, stats.rejected), (1, 1), "{stats:?}");
    assert_eq!(server.state().0.load(Ordering::SeqCst), 1);
}

#[test]
fn the_per_client_cap_turns_away_one_address_and_serves_another() {
    let running = serve(
        TcpServer::<Lines, Threading>::builder()
            .max_connections_per_client(Some(1))
            .overload(Overload::Reject)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let three = Ipv4Addr::new(127, 0, 0, 3);
    let mut first = tcp_client_from(two, running.inet());
    assert_eq!(echoed(&mut first, "one"), "one\n");
    let mut again = tcp_client_from(two, running.inet());
    assert_eq!(
        until_closed(&mut again),
        "busy\n",
        "127.0.0.2 is at its cap"
    );
    let mut other = tcp_client_from(three, running.inet());
    assert_eq!(echoed(&mut other, "three"), "three\n", "127.0.0.3 is not");
    // Once 127.0.0.2's connection ends, it may connect again.
    drop(first);
    assert!(util::eventually(PATIENCE, || {
        let mut retry = tcp_client_from(two, running.inet());
        retry.write_all(b"back\n").unwrap();
        let mut reader = BufReader::new(retry);
        let mut reply = String::new();
        reader.read_line(&mut reply).is_ok() && reply == "back\n"
    }));
    drop(other);
    let server = running.stop();
    let stats = server.stats();
    assert!(stats.over_client_limit >= 1, "{stats:?}");
    assert_eq!(stats.overloaded, 0, "{stats:?}");
}

/// Holds the server's one connection with a request in progress (its `100 Continue` says the
/// server is reading it), then asks again with `requests`.
const PY_BUSY: &str = r#"
import socket, sys, requests
url = sys.argv[1]
host, port = url.removeprefix("http://").split(":")
held = socket.create_connection((host, int(port)), timeout=10)
held.sendall(b"POST /items HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
assert held.recv(65536).startswith(b"HTTP/1.1 100"), "the first request is being read"
r = requests.get(url + "/items", timeout=10)
assert r.status_code == 503, r.status_code
assert r.headers["Retry-After"] == "1", r.headers
assert r.headers["Connection"] == "close", r.headers
held.close()
print("ok")
"#;

#[test]
fn rest_at_its_cap_answers_503_with_retry_after_to_python_requests() {
    let rest = example::Example::start(
        "rest",
        &[
            "127.0.0.1:0",
            "--max-connections",
            "1",
            "--overload",
            "reject",
        ],
    );
    example::python(PY_BUSY, &[&rest.url()]);
    assert_eq!(rest.stop(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn a_client_that_gave_up_in_the_backlog_costs_no_slot_and_no_handler() {
    let running = server(Overload::Wait);
    let mut first = tcp_client(running.inet());
    assert_eq!(echoed(&mut first, "one"), "one\n");
    // Waits in the backlog, then gives up: connects and closes without a word.
    let gave_up = tcp_client(running.inet());
    let port = gave_up.local_addr().unwrap().port();
    drop(gave_up);
    // The kernel takes the close in on the server's side in its own time (softirq, maybe
    // another core): wait until the waiting connection shows it (CLOSE_WAIT), as it will have
    // by the time a real client that gave up reaches the front of the backlog.
    assert!(
        util::eventually(PATIENCE, || close_wait_from(port)),
        "the server side saw the client's close"
    );
    // Waits too, but has sent its line and only half-closed: it is still served.
    let mut patient = tcp_client(running.inet());
    patient.write_all(b"two\n").unwrap();
    patient.shutdown(std::net::Shutdown::Write).unwrap();
    drop(first);
    assert_eq!(until_closed(&mut patient), "two\n");
    let server = running.stop();
    let stats = server.stats();
    assert_eq!((stats.gave_up, stats.rejected), (1, 0), "{stats:?}");
    assert_eq!(
        server.state().0.load(Ordering::SeqCst),
        2,
        "one and two were handled"
    );
}

#[test]
fn queue_holds_the_extra_client_until_a_slot_frees_then_serves_it() {
    let running = server(Overload::Queue {
        timeout: Duration::from_secs(10),
        reply: true,
    });
    let mut first = tcp_client(running.inet());
    assert_eq!(echoed(&mut first, "one"), "one\n");
    let mut second = tcp_client(running.inet());
    second.write_all(b"two\n").unwrap();
    // Queued, not answered, while the first holds the only slot.
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0; 1];
    assert!(second.read(&mut byte).is_err(), "no answer while queued");
    drop(first);
    second.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reply = String::new();
    BufReader::new(second).read_line(&mut reply).unwrap();
    assert_eq!(reply, "two\n", "served from the queue once the slot freed");
    let server = running.stop();
    let stats = server.stats();
    assert_eq!((stats.overloaded, stats.rejected), (0, 0), "{stats:?}");
    assert_eq!(server.state().0.load(Ordering::SeqCst), 2);
}

#[test]
fn queue_turns_away_a_client_whose_wait_ran_out_and_it_was_never_handled() {
    const WAIT: Duration = Duration::from_millis(300);
    let running = server(Overload::Queue {
        timeout: WAIT,
        reply: true,
    });
    let mut first = tcp_client(running.inet());
    assert_eq!(echoed(&mut first, "one"), "one\n");
    let mut second = tcp_client(running.inet());
    second.write_all(b"two\n").unwrap();
    let started = std::time::Instant::now();
    assert_eq!(until_closed(&mut second), "busy\n");
    let waited = started.elapsed();
    eprintln!("turned away after {waited:?} in the queue (timeout {WAIT:?})");
    assert!(waited >= WAIT && waited < WAIT * 4, "{waited:?}");
    drop(first);
    let server = running.stop();
    let stats = server.stats();
    assert_eq!((stats.overloaded, stats.rejected), (1, 1), "{stats:?}");
    assert_eq!(server.state().0.load(Ordering::SeqCst), 1);
}

#[test]
fn reject_applies_when_the_pools_queue_is_full() {
    let running = serve(
        TcpServer::<Lines>::builder()
            .strategy(socketserver::Pool::new().workers(1).queue(1))
            .overload(Overload::Reject)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    // The one worker is busy, the one queue place taken: the pool has no room.
    let mut first = tcp_client(running.inet());
    assert_eq!(echoed(&mut first, "one"), "one\n");
    let mut queued = tcp_client(running.inet());
    queued.write_all(b"two\n").unwrap();
    assert!(util::eventually(PATIENCE, || {
        let mut extra = tcp_client(running.inet());
        until_closed(&mut extra) == "busy\n"
    }));
    drop(first);
    let mut reply = String::new();
    BufReader::new(queued).read_line(&mut reply).unwrap();
    assert_eq!(reply, "two\n", "the pool's queued client is served");
    let server = running.stop();
    assert!(server.stats().overloaded >= 1, "{:?}", server.stats());
}

/// Whether the server side of the connection from local port `port` is in CLOSE_WAIT: the
/// client's close has reached it (`/proc/net/tcp`: the remote port in hex, state `08`).
fn close_wait_from(port: u16) -> bool {
    let remote = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2).is_some_and(|r| r.ends_with(&remote)) && fields.get(3) == Some(&"08")
        })
}
