//! Limits and faults over real sockets: idle clients and timeouts, the `max_connections` cap,
//! closing with connections still open (`is_closing`, the shutdown at the close deadline),
//! abrupt resets, half-closed connections, clients that vanish mid-reply, panicking handlers in
//! bulk, and `accept` failing with `EMFILE` (in a child process with a lowered `RLIMIT_NOFILE`).

mod util;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use socketserver::{
    Activity, Forking, HandleResult, Handler, Pool, Serial, Strategy, StreamRequest,
    StreamRequestHandler, TcpServer, Threading,
};
use util::{eventually, serve, tcp_client, PATIENCE};

// ---------------------------------------------------------------------------------------------
// Test isolation

/// Taken shared by every test; a test that counts the process's threads or descriptors takes it
/// alone, and so does every forking test (no other test's thread may hold one of std's global
/// locks at the moment of a fork; see `Forking`'s docs).
static ALONE: RwLock<()> = parking_lot::const_rwlock(());

/// Test threads blocked on [`ALONE`]: they exist, but belong to no running test.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Held by forking tests until their children are reaped (as nix's tests do).
static FORK_MTX: Mutex<()> = parking_lot::const_mutex(());

fn shared() -> RwLockReadGuard<'static, ()> {
    WAITING.fetch_add(1, Ordering::SeqCst);
    let guard = ALONE.read();
    WAITING.fetch_sub(1, Ordering::SeqCst);
    guard
}

fn alone() -> RwLockWriteGuard<'static, ()> {
    ALONE.write()
}

/// What a forking test holds until its children are reaped.
fn fork_lock() -> (RwLockWriteGuard<'static, ()>, MutexGuard<'static, ()>) {
    (alone(), FORK_MTX.lock())
}

/// The process's threads, less test threads waiting for [`ALONE`] (read first, so that the
/// result is never too low; see tests/strategies.rs).
fn own_threads() -> usize {
    let waiting = WAITING.load(Ordering::SeqCst);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let threads: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    threads - waiting
}

/// The process's open descriptors (the directory's own descriptor not counted).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// Echoes lines until end-of-file; with state, reports how its request ended.
#[derive(Handler)]
#[handler(state = Probe)]
struct Lines;

/// What a [`Lines`] handler tells the test.
#[derive(Default)]
struct Probe {
    events: Option<Sender<Event>>,
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// The handler started; the server was closing (or not).
    Started { closing: bool },
    /// A line arrived; the server was closing (or not).
    Line { closing: bool },
    /// The handler's read loop ended.
    Ended,
}

impl Probe {
    fn channel() -> (Probe, Receiver<Event>) {
        let (tx, rx) = unbounded();
        (Probe { events: Some(tx) }, rx)
    }

    fn send(&self, event: Event) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }
}

impl StreamRequestHandler for Lines {
    fn handle(&mut self, request: &mut StreamRequest<'_, Probe>) -> HandleResult {
        let server = request.server();
        server.state().send(Event::Started {
            closing: server.is_closing(),
        });
        let mut line = String::new();
        let result = loop {
            line.clear();
            match request.rfile.read_line(&mut line) {
                Ok(0) => break Ok(()),
                Ok(_) => {
                    server.state().send(Event::Line {
                        closing: server.is_closing(),
                    });
                    // The number of open requests, so a test can see the cap.
                    let reply = format!("{} {}", server.stats().open, line);
                    if let Err(e) = request.wfile.write_all(reply.as_bytes()) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        server.state().send(Event::Ended);
        result?;
        Ok(())
    }
}

/// Sends `line` and reads the reply line.
fn ask(client: &mut TcpStream, line: &str) -> std::io::Result<String> {
    client.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&*client).read_line(&mut reply)?;
    Ok(reply)
}

/// Reads until end-of-file or a reset; `true` if the server ended the connection.
fn ends(client: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

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
// Resets, half-closed connections, clients that vanish mid-reply

/// Its first line says what to do: `echo` copies the rest back until end-of-file, `flood`
/// writes 32 MiB (giving up quietly when the client is gone, so that a child that survives
/// exits with status 0), `panic` panics.
#[derive(Handler)]
struct Faulty;

/// The panic message of `panic` requests; the test panic hook keeps it quiet.
const ASKED: &str = "asked to panic";

impl StreamRequestHandler for Faulty {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut command = String::new();
        request.rfile.read_line(&mut command)?;
        match command.trim_end() {
            "echo" => {
                io::copy(&mut request.rfile, &mut request.wfile)?;
            }
            "flood" => {
                let chunk = vec![b'x'; 64 * 1024];
                for _ in 0..512 {
                    if request.wfile.write_all(&chunk).is_err() {
                        break;
                    }
                }
            }
            "panic" => panic!("{ASKED}"),
            _ => {}
        }
        Ok(())
    }
}

/// Keeps the 1000 expected panics off stderr; every other panic goes to the default hook.
fn quiet_asked_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let asked = info
                .payload()
                .downcast_ref::<String>()
                .is_some_and(|m| m == ASKED);
            if !asked {
                default(info);
            }
        }));
    });
}

/// `echo` round trip: sends `text`, half-closes, reads everything back.
fn echo(addr: SocketAddr, text: &str) -> String {
    let mut client = tcp_client(addr);
    client
        .write_all(format!("echo\n{text}").as_bytes())
        .unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    reply
}

/// Closes `client` with a reset (`SO_LINGER` 0) instead of a FIN.
fn reset(client: TcpStream) {
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
}

/// Runs the fault scenarios against a server with `strategy`; returns it stopped. Five
/// requests: two echoes, one reset mid-request (fails), one half-closed echo, and one flood
/// whose client resets after the first 64 KiB (succeeds: the handler gives up quietly).
fn survive_faults<S: Strategy>(
    strategy: S,
) -> socketserver::Server<socketserver::transport::Tcp, Faulty, S> {
    let server = TcpServer::<Faulty>::builder()
        .strategy(strategy)
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let addr = running.inet();
    assert_eq!(echo(addr, "before"), "before");

    // An abrupt reset while the handler reads.
    let mut client = tcp_client(addr);
    client.write_all(b"echo\npartial").unwrap();
    let mut back = [0u8; 7];
    client.read_exact(&mut back).unwrap();
    reset(client);

    // Half-closed: the client is done sending, but still reads the whole reply.
    let text = "line one\nline two\n".repeat(1000);
    assert_eq!(echo(addr, &text), text);

    // The client vanishes while the server writes a large reply: no SIGPIPE death.
    let mut client = tcp_client(addr);
    client.write_all(b"flood\n").unwrap();
    let mut first = vec![0u8; 64 * 1024];
    client.read_exact(&mut first).unwrap();
    reset(client);

    assert_eq!(echo(addr, "after"), "after");
    running.stop()
}

/// The requests of [`survive_faults`] as (succeeded, failed).
const FAULT_OUTCOMES: (u64, u64) = (4, 1);

fn outcomes(activity: &Activity) -> (u64, u64) {
    (activity.succeeded(), activity.failed())
}

#[test]
fn serial_survives_faults() {
    let _shared = shared();
    let server = survive_faults(Serial);
    let stats = server.stats();
    assert_eq!((stats.served, stats.failed), FAULT_OUTCOMES, "{stats:?}");
    server.close();
}

#[test]
fn threading_survives_faults() {
    let _shared = shared();
    let server = survive_faults(Threading::new());
    let activity = server.strategy().activity();
    assert_eq!(server.close().abandoned, 0);
    assert_eq!(outcomes(&activity), FAULT_OUTCOMES);
}

#[test]
fn pool_survives_faults() {
    let _shared = shared();
    let server = survive_faults(Pool::new().workers(2));
    let activity = server.strategy().activity();
    assert_eq!(server.close().abandoned, 0);
    assert_eq!(outcomes(&activity), FAULT_OUTCOMES);
}

// ---------------------------------------------------------------------------------------------
// Panicking handlers in bulk

/// 1000 panicking requests, four at a time: the server keeps serving, and threads, descriptors
/// and counters come back to where they were.
fn thousand_panics<S: Strategy + StrategyActivity>(strategy: S) -> Activity {
    const PANICS: usize = 1000;
    const AT_ONCE: usize = 4;
    quiet_asked_panics();
    util::init();
    let threads = own_threads();
    let fds = open_fds();
    let server = TcpServer::<Faulty>::builder()
        .strategy(strategy)
        .bind("127.0.0.1:0")
        .unwrap();
    let activity = server.strategy().activity_handle();
    let running = serve(server);
    let addr = running.inet();
    for _ in 0..PANICS / AT_ONCE {
        let clients: Vec<TcpStream> = (0..AT_ONCE)
            .map(|_| {
                let mut client = tcp_client(addr);
                client.write_all(b"panic\n").unwrap();
                client
            })
            .collect();
        for mut client in clients {
            // The server closes the connection after the panic.
            let mut rest = Vec::new();
            let _ = client.read_to_end(&mut rest);
            assert!(rest.is_empty());
        }
    }
    assert_eq!(echo(addr, "still serving"), "still serving");
    let server = running.stop();
    assert!(eventually(PATIENCE, || {
        let stats = server.stats();
        stats.active == 0 && stats.open == 0
    }));
    assert_eq!(server.close().abandoned, 0);
    assert!(
        eventually(PATIENCE, || own_threads() <= threads),
        "threads: {} now, {threads} before",
        own_threads()
    );
    assert!(
        eventually(PATIENCE, || open_fds() <= fds),
        "descriptors: {} now, {fds} before",
        open_fds()
    );
    assert_eq!(activity.failed(), PANICS as u64);
    assert_eq!(activity.succeeded(), 1);
    assert_eq!(activity.active(), 0);
    assert_eq!(activity.tracked(), 0);
    activity
}

/// The strategies that keep an [`Activity`].
trait StrategyActivity {
    fn activity_handle(&self) -> Activity;
}

impl StrategyActivity for Threading {
    fn activity_handle(&self) -> Activity {
        self.activity()
    }
}

impl StrategyActivity for Pool {
    fn activity_handle(&self) -> Activity {
        self.activity()
    }
}

impl StrategyActivity for Forking {
    fn activity_handle(&self) -> Activity {
        self.activity()
    }
}

#[test]
fn threading_survives_a_thousand_panics() {
    let _alone = alone();
    thousand_panics(Threading::new());
}

#[test]
fn pool_survives_a_thousand_panics() {
    let _alone = alone();
    thousand_panics(Pool::new().workers(4));
}

#[test]
fn forking_survives_a_thousand_panics() {
    let _fork = fork_lock();
    thousand_panics(Forking::new());
}
