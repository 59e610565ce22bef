//! Limits and faults over real sockets: idle clients and timeouts, the `max_connections` cap,
//! closing with connections still open (`is_closing`, the shutdown at the close deadline),
//! abrupt resets, half-closed connections, clients that vanish mid-reply, panicking handlers in
//! bulk, and `accept` failing with `EMFILE` (in a child process with a lowered `RLIMIT_NOFILE`).

mod example;
mod util;

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::unistd::Pid;
use socketserver::{
    Activity, Forking, HandleResult, Handler, Pool, Serial, Strategy, StreamRequest,
    StreamRequestHandler, TcpServer, Threading, UnixStreamServer,
};
use util::isolation::{alone, fork_lock, own_threads, shared};
use util::{eventually, serve, tcp_client, PATIENCE};

// ---------------------------------------------------------------------------------------------
// Test isolation (the locks and thread counting are in tests/util/isolation.rs)

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
/// exits with status 0), `floodv` does the same with vectored writes to the connection,
/// `panic` panics.
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
            "floodv" => {
                // Vectored writes straight to the connection (`writev`-like).
                let chunk = vec![b'v'; 32 * 1024];
                let mut connection = request.connection();
                for _ in 0..1024 {
                    let slices = [io::IoSlice::new(&chunk), io::IoSlice::new(&chunk)];
                    if !matches!(connection.write_vectored(&slices), Ok(n) if n > 0) {
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

/// Runs the fault scenarios against a server with `strategy`; returns it stopped.
fn survive_faults<S: Strategy>(
    strategy: S,
) -> socketserver::Server<socketserver::transport::Tcp, Faulty, S> {
    let server = TcpServer::<Faulty>::builder()
        .strategy(strategy)
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    fault_scenarios(running.inet());
    running.stop()
}

/// Five requests: two echoes, one reset mid-request (fails), one half-closed echo, and one
/// flood whose client resets after the first 64 KiB (succeeds: the handler gives up quietly).
fn fault_scenarios(addr: SocketAddr) {
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

/// The process's resident memory in KiB (`VmRSS`).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `count` panicking requests, four at a time, and checks each connection is closed.
fn send_panics(addr: std::net::SocketAddr, count: usize) {
    const AT_ONCE: usize = 4;
    for _ in 0..count / AT_ONCE {
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
}

/// 1000 panicking requests, four at a time: the server keeps serving, and threads, descriptors,
/// memory and counters come back to where they were.
fn thousand_panics<S: Strategy + StrategyActivity>(strategy: S) -> Activity {
    const PANICS: usize = 1000;
    // Before the memory baseline: the first requests set up allocator arenas and the panic
    // machinery once.
    const WARM_UP: usize = 40;
    // A leak of 4 KiB per request would show as 4 MiB.
    const RSS_SLACK_KIB: u64 = 4096;
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
    send_panics(addr, WARM_UP);
    let rss = rss_kib();
    send_panics(addr, PANICS);
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
    assert!(
        rss_kib() <= rss + RSS_SLACK_KIB,
        "memory: {} KiB now, {rss} KiB before {PANICS} panics",
        rss_kib()
    );
    assert_eq!(activity.failed(), (WARM_UP + PANICS) as u64);
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

// ---------------------------------------------------------------------------------------------
// Child processes: accept failing with EMFILE, SIGTERM on the echo example

/// Runs the child side of a test in a process of its own, when `FAULTS_CHILD` names one; as an
/// ordinary test it does nothing.
#[test]
fn child_process() {
    match std::env::var("FAULTS_CHILD").as_deref() {
        Ok("emfile") => emfile_child(),
        Ok("forking") => forking_child(),
        Ok("sigpipe") => sigpipe_child(),
        Ok("cap") => cap_child(),
        _ => {}
    }
}

/// The child: a threading server of [`Faulty`] with `max_connections(1)`, until stdin closes.
fn cap_child() {
    let running = serve(
        TcpServer::<Faulty>::builder()
            .strategy(Threading::new())
            .max_connections(Some(1))
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    println!("ready {}", running.inet());
    io::stdout().flush().unwrap();
    let mut line = String::new();
    while io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    running.stop().close();
}

/// At the cap, the serving loop sleeps: a client waiting in the backlog for a second costs
/// the server process (almost) no CPU, and is served as soon as the open request ends.
#[test]
fn max_connections_waits_without_spinning() {
    let _shared = shared();
    let mut child = spawn_child("cap");
    let lines = lines_of(child.stdout.take().unwrap());
    let addr: SocketAddr = line_after(&lines, "ready ").parse().unwrap();
    let pid = child.id();

    let mut holding = tcp_client(addr);
    holding.write_all(b"echo\nx").unwrap();
    let mut x = [0u8; 1];
    holding.read_exact(&mut x).unwrap();

    let mut waiting = tcp_client(addr);
    waiting.write_all(b"echo\nping").unwrap();
    waiting.shutdown(Shutdown::Write).unwrap();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    waiting
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let waited = waiting.read(&mut [0u8; 16]).unwrap_err();
    assert!(
        matches!(waited.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{waited}"
    );
    let share = (cpu_ticks(pid) - before) as f64 / 100.0 / started.elapsed().as_secs_f64();
    assert!(
        share < 0.2,
        "the server used {:.0}% of a core at the cap",
        share * 100.0
    );

    drop(holding);
    waiting.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reply = String::new();
    waiting.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "ping");

    drop(child.stdin.take());
    let status = exit_status(&mut child);
    assert!(status.success(), "{status}");
}

/// The child: with `SIGPIPE` back at its default action (death), threading servers of
/// [`Faulty`] on TCP and on a Unix socket, until stdin closes.
fn sigpipe_child() {
    // SAFETY: SIG_DFL runs no code of ours; the test's threads are not using signals.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.unwrap();
    let dir = util::temp_dir();
    let path = dir.path().join("faulty.sock");
    let tcp = serve(
        TcpServer::<Faulty>::builder()
            .strategy(Threading::new())
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let unix = serve(
        UnixStreamServer::<Faulty>::builder()
            .strategy(Threading::new())
            .bind(&path)
            .unwrap(),
    );
    println!("ready {} {}", tcp.inet(), path.display());
    io::stdout().flush().unwrap();
    let mut line = String::new();
    while io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    tcp.stop().close();
    unix.stop().close();
}

/// A program that has not ignored `SIGPIPE` survives clients that vanish while it writes, on
/// TCP and on Unix sockets (where `write(2)` would raise it: the library sends with
/// `MSG_NOSIGNAL`).
#[test]
fn no_sigpipe_death_even_when_not_ignored() {
    let _shared = shared();
    let mut child = spawn_child("sigpipe");
    let lines = lines_of(child.stdout.take().unwrap());
    let ready = line_after(&lines, "ready ");
    let (tcp, path) = ready.split_once(' ').unwrap();
    let tcp: SocketAddr = tcp.parse().unwrap();

    for _ in 0..3 {
        let mut client = tcp_client(tcp);
        client.write_all(b"flood\n").unwrap();
        let mut first = vec![0u8; 64 * 1024];
        client.read_exact(&mut first).unwrap();
        reset(client);

        for command in ["flood\n", "floodv\n"] {
            let mut client = std::os::unix::net::UnixStream::connect(path).unwrap();
            client.set_read_timeout(Some(PATIENCE)).unwrap();
            client.write_all(command.as_bytes()).unwrap();
            client.read_exact(&mut first).unwrap();
            drop(client);
        }

        let mut client = tcp_client(tcp);
        client.write_all(b"floodv\n").unwrap();
        client.read_exact(&mut first).unwrap();
        reset(client);
    }
    assert_eq!(echo(tcp, "alive"), "alive");
    let mut client = std::os::unix::net::UnixStream::connect(path).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"echo\nalive").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "alive");

    drop(child.stdin.take());
    let status = exit_status(&mut child);
    assert!(status.success(), "{status}");
}

/// The child: a forking server of [`Faulty`] until stdin closes; then it prints how its
/// children exited.
fn forking_child() {
    let server = TcpServer::<Faulty>::builder()
        .strategy(Forking::new())
        .bind("127.0.0.1:0")
        .unwrap();
    let activity = server.strategy().activity();
    let running = serve(server);
    println!("ready {}", running.inet());
    io::stdout().flush().unwrap();
    let mut line = String::new();
    while io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    assert_eq!(running.stop().close().abandoned, 0);
    println!("outcomes {} {}", activity.succeeded(), activity.failed());
    io::stdout().flush().unwrap();
}

/// Forked children survive the faults too, and none dies of SIGPIPE: the flood child exits
/// with status 0 (one killed by a signal would count as failed). The server runs in a process
/// of its own, so that its children do not inherit the test's client sockets (a child holding
/// a copy of a client's socket would keep the connection open after the client resets it).
#[test]
fn forking_survives_faults() {
    let _shared = shared();
    let mut child = spawn_child("forking");
    let lines = lines_of(child.stdout.take().unwrap());
    let addr: SocketAddr = line_after(&lines, "ready ").parse().unwrap();
    fault_scenarios(addr);
    drop(child.stdin.take());
    let outcomes = line_after(&lines, "outcomes ");
    let status = exit_status(&mut child);
    assert!(status.success(), "{status}");
    let (succeeded, failed) = FAULT_OUTCOMES;
    assert_eq!(outcomes, format!("{succeeded} {failed}"));
}

/// Starts this test binary as a child running `mode`.
fn spawn_child(mode: &str) -> std::process::Child {
    spawn_child_logging(mode, "warn")
}

/// [`spawn_child`] with `RUST_LOG` set to `filter`.
fn spawn_child_logging(mode: &str, filter: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FAULTS_CHILD", mode)
        .env("RUST_LOG", filter)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The child's stdout (or stderr) lines, on a channel (so that the test never blocks on a hung
/// child).
fn lines_of(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = unbounded();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for the first line with `prefix` in it; returns what follows.
fn line_after(lines: &Receiver<String>, prefix: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let line = lines.recv_deadline(deadline).expect("the child's line");
        // libtest may print its "test child_process ... " on the same line.
        if let Some((_, rest)) = line.split_once(prefix) {
            return rest.to_owned();
        }
    }
}

/// Waits for the child to exit, killing it if it does not within [`PATIENCE`].
fn exit_status(child: &mut std::process::Child) -> std::process::ExitStatus {
    let mut status = None;
    let exited = eventually(PATIENCE, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("the child did not exit");
    }
    status.unwrap()
}

/// A process's user and system CPU time, in clock ticks (`/proc/<pid>/stat`, fields 14 and 15;
/// always 100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the command name, field 3 is at index 0.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The child: a threading echo server that runs out of descriptors. It lowers its soft
/// `RLIMIT_NOFILE` to just above its highest descriptor and fills every free number, so
/// `accept` fails with `EMFILE`. On "free one" from stdin it says so on stderr and closes one
/// spare descriptor; on "free" it restores the limit.
fn emfile_child() {
    let _ = env_logger::builder()
        .target(env_logger::Target::Stderr)
        .parse_default_env()
        .try_init();
    let server = TcpServer::<Faulty>::builder()
        .strategy(Threading::new())
        .bind("127.0.0.1:0")
        .unwrap();
    let running = serve(server);
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, highest + 1, hard).unwrap();
    let mut spare = Vec::new();
    for _ in 0..=highest {
        match std::fs::File::open("/dev/null") {
            Ok(file) => spare.push(file),
            Err(_) => break,
        }
    }
    assert!(
        std::fs::File::open("/dev/null").is_err(),
        "no descriptor left"
    );
    println!("ready {}", running.inet());
    io::stdout().flush().unwrap();
    let mut stdin = BufReader::new(io::stdin());
    let mut line = String::new();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line, "free one\n");
    eprintln!("freeing one");
    drop(spare.pop());
    line.clear();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line, "free\n");
    // In one step, so that the test knows when the shortage ends.
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    // Until the test closes stdin.
    while stdin.read_line(&mut line).is_ok_and(|n| n > 0) {}
    running.stop().close();
    drop(spare);
}

/// Python's open problem: `accept` fails with `EMFILE` while the listening socket stays
/// readable. The server logs it, backs off without spinning, and serves again once
/// descriptors are free. A server hovering at the limit (each descriptor freed is taken at
/// once, and the next `accept` fails again) is one shortage: one warning, not one per request.
#[test]
fn accept_emfile_is_logged_backed_off_and_recovered() {
    let _shared = shared();
    let mut child = spawn_child_logging("emfile", "warn,socketserver::accept=debug");
    let lines = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let mut log = Vec::new();
    // Waits for the child's next stderr line that contains `text`, keeping every line.
    let mut logged = |text: &str| {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let Ok(line) = stderr.recv_deadline(deadline) else {
                panic!("no {text:?} in the child's log: {log:#?}");
            };
            let found = line.contains(text);
            log.push(line);
            if found {
                return;
            }
        }
    };
    let addr: SocketAddr = line_after(&lines, "ready ").parse().unwrap();
    let pid = child.id();

    // The connection completes in the kernel and waits for an `accept` that keeps failing.
    let mut client = tcp_client(addr);
    client.write_all(b"echo\nping").unwrap();
    let before = cpu_ticks(pid);
    let started = Instant::now();
    // The measuring window: a second in which the request must not be served.
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let waited = client.read(&mut [0u8; 16]).unwrap_err();
    assert!(
        matches!(waited.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{waited}"
    );
    let used = (cpu_ticks(pid) - before) as f64 / 100.0;
    let share = used / started.elapsed().as_secs_f64();
    assert!(
        share < 0.2,
        "the server used {:.0}% of a core while accept failed",
        share * 100.0
    );

    // One descriptor frees up: the waiting client takes it and is served (its handler keeps
    // the descriptor while the client keeps its side open), and `accept` fails again: at once
    // (Linux looks for a descriptor before it looks at the queue), and again for a second
    // client while it waits. Every attempt after the descriptor is freed, but one that may
    // have started before, comes after the first client was taken: two failures logged
    // after "freeing one" mean at least one came after a request was taken.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"free one\n").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reply = [0u8; 4];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ping");
    let mut second = tcp_client(addr);
    second.write_all(b"echo\npong").unwrap();
    second.shutdown(Shutdown::Write).unwrap();
    logged("freeing one");
    logged("os error 24");
    logged("os error 24");

    // Descriptors free up: a new client is served at once, and the loop, having caught up,
    // says that the shortage is over.
    stdin.write_all(b"free\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    client.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    let mut pong = String::new();
    second.read_to_string(&mut pong).unwrap();
    assert_eq!(pong, "pong");
    assert_eq!(echo(addr, "third"), "third");
    logged("taking requests again");

    drop(stdin);
    let status = exit_status(&mut child);
    log.extend(stderr.iter());
    assert!(status.success(), "{status}: {log:#?}");
    // Once, however many attempts failed, before and after the one descriptor was freed.
    let warnings = log
        .iter()
        .filter(|l| l.contains("WARN  socketserver::accept") && l.contains("os error 24"))
        .count();
    assert_eq!(warnings, 1, "{log:#?}");
}

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
