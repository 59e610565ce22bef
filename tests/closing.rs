//! Closing with connections still open: `is_closing` as the handler sees it, the shutdown of
//! blocked connections at the close deadline, and SIGTERM on the echo example with a request in
//! flight.

mod example;
mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socketserver::{Pool, Strategy, TcpServer, Threading};
use util::child::{exit_status, line_after, lines_of};
use util::isolation::shared;
use util::lines::{ask, ends, Event, Lines, Probe};
use util::{eventually, serve, tcp_client, PATIENCE};

// ---------------------------------------------------------------------------------------------
// Closing: is_closing and the shutdown at the deadline

fn close_shuts_down_blocked_connections<S: Strategy>(strategy: S) {
    let _shared = shared();
    let (probe, events) = Probe::channel();
    let server = TcpServer::<Lines>::with_state(probe)
        .strategy(strategy)
        .close_timeout(Some(Duration::from_millis(200)))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let mut client = tcp_client(running.inet());
    assert_eq!(ask(&mut client, "one").unwrap(), "1 one\n");
    assert_eq!(
        events.recv_timeout(PATIENCE).unwrap(),
        Event::Started { closing: false }
    );
    assert_eq!(
        events.recv_timeout(PATIENCE).unwrap(),
        Event::Line { closing: false }
    );

    let server = running.stop();
    // serve_forever has returned, and the handler can tell the server is closing.
    assert_eq!(ask(&mut client, "two").unwrap(), "1 two\n");
    assert_eq!(
        events.recv_timeout(PATIENCE).unwrap(),
        Event::Line { closing: true }
    );

    // The client keeps its connection open: at the deadline, close shuts it down, the
    // handler's blocked read returns, and its thread ends.
    let started = Instant::now();
    let report = server.close();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!((report.abandoned, report.shut_down), (1, 1), "{report:?}");
    assert_eq!(events.recv_timeout(PATIENCE).unwrap(), Event::Ended);
    assert!(ends(&mut client));
}

#[test]
fn close_deadline_shuts_down_threading_connections() {
    close_shuts_down_blocked_connections(Threading::new());
}

#[test]
fn close_deadline_shuts_down_pool_connections() {
    close_shuts_down_blocked_connections(Pool::new().workers(2));
}

#[test]
fn is_closing_is_false_again_when_serving_restarts() {
    let _shared = shared();
    let (probe, events) = Probe::channel();
    let server = TcpServer::<Lines>::with_state(probe)
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let server = running.stop();
    assert!(server.context().is_closing());
    let running = serve(server);
    let mut client = tcp_client(running.inet());
    assert_eq!(ask(&mut client, "x").unwrap(), "1 x\n");
    assert_eq!(
        events.recv_timeout(PATIENCE).unwrap(),
        Event::Started { closing: false }
    );
    drop(client);
    running.stop().close();
}

// ---------------------------------------------------------------------------------------------
// SIGTERM on the echo example

/// The echo example, built fresh.
fn echo_binary() -> std::path::PathBuf {
    example::binary("echo")
}

/// SIGTERM while a request is in flight: it completes, new connections are refused once the
/// listener is closed, and the process exits 0.
#[test]
fn sigterm_lets_requests_in_flight_finish() {
    let _shared = shared();
    let mut child = Command::new(echo_binary())
        .args(["tcp", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let addr: SocketAddr = line_after(&lines, "serving on ").parse().unwrap();

    let mut in_flight = tcp_client(addr);
    in_flight.write_all(b"hi").unwrap();
    let mut back = [0u8; 2];
    in_flight.read_exact(&mut back).unwrap();

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert!(
        eventually(PATIENCE, || TcpStream::connect(addr)
            .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused)),
        "new connections are refused after SIGTERM"
    );

    // The request in flight is still served to its end.
    in_flight.write_all(b"more").unwrap();
    let mut more = [0u8; 4];
    in_flight.read_exact(&mut more).unwrap();
    assert_eq!(&more, b"more");
    in_flight.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    in_flight.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    let status = exit_status(&mut child);
    assert_eq!(status.code(), Some(0), "{status}");
}
