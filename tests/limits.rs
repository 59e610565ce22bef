//! Limits over real sockets: idle clients and the read timeout (500 idle clients against
//! threading and pool), and the `max_connections` cap. The cap's CPU cost, measured in a
//! process of its own, is in tests/process_faults.rs.

mod util;

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use socketserver::{Pool, Strategy, TcpServer, Threading};
use util::isolation::shared;
use util::lines::{ask, ends, Lines};
use util::{eventually, serve, tcp_client, PATIENCE};

// ---------------------------------------------------------------------------------------------
// Idle clients and the read (idle) timeout

/// 500 clients that connect and send nothing: a well-behaved client is still served, and every
/// idle connection is closed once the read timeout has passed.
fn idle_clients_are_timed_out<S: Strategy>(strategy: S) {
    const IDLE: usize = 500;
    let _shared = shared();
    let server = TcpServer::<Lines>::builder()
        .strategy(strategy)
        .read_timeout(Some(Duration::from_millis(300)))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let addr = running.inet();
    let mut idle: Vec<TcpStream> = (0..IDLE).map(|_| tcp_client(addr)).collect();

    let mut good = tcp_client(addr);
    assert_eq!(
        ask(&mut good, "hello").unwrap().split_once(' ').unwrap().1,
        "hello\n"
    );

    let deadline = Instant::now() + PATIENCE;
    for client in &mut idle {
        client
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        assert!(ends(client), "an idle connection was not closed in time");
    }
    drop(good);
    let server = running.stop();
    assert!(eventually(PATIENCE, || server.stats().active == 0));
    let stats = server.stats();
    assert!(
        stats.failed >= IDLE as u64,
        "{stats:?}: the idle requests timed out"
    );
    assert_eq!(server.close().abandoned, 0);
}

#[test]
fn idle_clients_do_not_starve_threading() {
    idle_clients_are_timed_out(Threading::new().stack_size(64 * 1024));
}

/// A pool serves idle clients a batch of `workers` at a time, each for one read timeout: the
/// good client behind 500 idle ones waits about 500 / 100 × 300 ms.
#[test]
fn idle_clients_do_not_starve_a_pool() {
    idle_clients_are_timed_out(Pool::new().workers(100).queue(0).stack_size(64 * 1024));
}

#[test]
fn read_and_write_timeouts_are_separate_options() {
    let _shared = shared();
    let server = TcpServer::<Lines>::builder()
        .read_timeout(Some(Duration::from_millis(100)))
        .write_timeout(Some(Duration::from_secs(7)))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let mut client = tcp_client(running.inet());
    let started = Instant::now();
    assert!(
        ends(&mut client),
        "the read timeout closed the idle connection"
    );
    assert!(started.elapsed() < Duration::from_secs(7));
    let server = running.stop();
    assert!(eventually(PATIENCE, || server.stats().failed == 1));
    server.close();
}

// ---------------------------------------------------------------------------------------------
// max_connections

#[test]
fn max_connections_holds_clients_in_the_backlog() {
    let _shared = shared();
    let server = TcpServer::<Lines, Threading>::builder()
        .strategy(Threading::new())
        .max_connections(Some(2))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let addr = running.inet();

    let mut a = tcp_client(addr);
    assert_eq!(ask(&mut a, "a").unwrap(), "1 a\n");
    let mut b = tcp_client(addr);
    assert_eq!(ask(&mut b, "b").unwrap(), "2 b\n");

    // The kernel completes C's handshake, but the server does not accept it while A and B are
    // open: C's line gets no answer.
    let mut c = tcp_client(addr);
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let waited = ask(&mut c, "c").unwrap_err();
    assert!(
        matches!(waited.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{waited}"
    );

    // A leaves: C is taken at once and sees two open requests (B and itself).
    drop(a);
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reply = String::new();
    BufReader::new(&c).read_line(&mut reply).unwrap();
    assert_eq!(reply, "2 c\n");

    drop((b, c));
    let server = running.stop();
    assert!(eventually(PATIENCE, || server.stats().open == 0));
    assert_eq!(server.stats().rejected, 0);
    assert_eq!(server.close().abandoned, 0);
}

#[test]
fn max_connections_of_zero_is_refused() {
    let error = TcpServer::<Lines>::builder()
        .max_connections(Some(0))
        .bind("127.0.0.1:0")
        .unwrap_err();
    assert!(error.to_string().contains("max_connections"), "{error}");
}

/// A shutdown wakes a loop that waits at the cap.
#[test]
fn shutdown_wakes_a_loop_at_the_cap() {
    let _shared = shared();
    let server = TcpServer::<Lines, Threading>::builder()
        .strategy(Threading::new())
        .max_connections(Some(1))
        .close_timeout(Some(Duration::from_millis(100)))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let mut a = tcp_client(running.inet());
    assert_eq!(ask(&mut a, "a").unwrap(), "1 a\n");
    let _waiting = tcp_client(running.inet());
    let started = Instant::now();
    let server = running.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    let report = server.close();
    assert_eq!((report.abandoned, report.shut_down), (1, 1));
    assert!(ends(&mut a));
}

// ---------------------------------------------------------------------------------------------
// The longest a request may run

#[test]
fn a_request_past_max_request_time_is_cut_off_and_others_are_served() {
    let _shared = shared();
    const LIMIT: Duration = Duration::from_millis(300);
    let server = TcpServer::<Lines, Threading>::builder()
        .max_request_time(Some(LIMIT))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    // Connects and says nothing: its handler waits to read, with no read timeout set.
    let mut stuck = tcp_client(running.inet());
    let started = Instant::now();
    let mut byte = [0; 1];
    let read = std::io::Read::read(&mut stuck, &mut byte);
    let took = started.elapsed();
    eprintln!(
        "cut off after {took:?} (limit {LIMIT:?}, bound {:?})",
        LIMIT * 4
    );
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "the connection was cut: {read:?}"
    );
    assert!(took >= LIMIT && took < LIMIT * 4, "{took:?}");
    // Others are served as before, each within the limit.
    let mut other = tcp_client(running.inet());
    let reply = ask(&mut other, "after").unwrap();
    assert!(reply.ends_with(" after\n"), "served: {reply:?}");
    drop(other);
    let server = running.stop();
    assert_eq!(server.stats().cut_off, 1, "{:?}", server.stats());
}

#[test]
fn max_request_time_counts_each_keep_alive_request_not_the_idle_time_between() {
    let _shared = shared();
    let server = TcpServer::<IdleBetweenLines, Threading>::builder()
        .max_request_time(Some(Duration::from_millis(300)))
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let client = tcp_client(running.inet());
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut writer = client;
    // Three lines over ~1 s on one connection: the handler reads line after line, marking the
    // connection idle between them (as the HTTP layer does), so no request is over the limit.
    for i in 0..3 {
        if i > 0 {
            // The gap between requests, longer than the limit: idle time, not request time.
            let gap = Instant::now() + Duration::from_millis(400);
            while Instant::now() < gap {
                std::thread::park_timeout(gap - Instant::now());
            }
        }
        std::io::Write::write_all(&mut writer, format!("line {i}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        assert_eq!(reply, format!("line {i}\n"));
    }
    drop((reader, writer));
    let server = running.stop();
    assert_eq!(server.stats().cut_off, 0, "{:?}", server.stats());
}

/// Echoes lines, marking its connection idle while it waits for the next one, as the HTTP
/// layer does between keep-alive requests.
#[derive(socketserver::Handler)]
struct IdleBetweenLines;

impl socketserver::StreamRequestHandler for IdleBetweenLines {
    fn handle(
        &mut self,
        request: &mut socketserver::StreamRequest<'_>,
    ) -> socketserver::HandleResult {
        let mut line = String::new();
        loop {
            line.clear();
            request.set_idle(true);
            let n = request.rfile.read_line(&mut line)?;
            request.set_idle(false);
            if n == 0 {
                return Ok(());
            }
            std::io::Write::write_all(&mut request.wfile, line.as_bytes())?;
        }
    }
}
