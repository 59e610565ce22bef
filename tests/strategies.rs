//! The processing strategies over real sockets: `Threading`, `Forking` and `Pool` on every
//! transport, their concurrency limits, closing with and without a deadline, reaping (threads and
//! child processes), and panicking handlers. Ported in spirit from CPython's `test_socketserver`
//! (`ThreadingMixIn`/`ForkingMixIn` servers, `test_threads_reaped` for bpo-37193, and
//! `ForkingMixIn` reaping for bpo-11109).

mod util;

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use socketserver::{
    DatagramRequest, DatagramRequestHandler, Forking, HandleResult, Handler, Pool, RequestError,
    ServerContext, Strategy, StreamRequest, StreamRequestHandler, TcpServer, Threading,
    ThreadingTcpServer, UdpServer, UnixDatagramServer, UnixStreamServer,
};
use util::isolation::{alone, fork_lock, own_threads, shared};
use util::{ask, eventually, serve, tcp_client, temp_dir, udp_client, PATIENCE};

// ---------------------------------------------------------------------------------------------
// Test isolation (the locks and thread counting are in tests/util/isolation.rs)

/// Threads whose name starts with `prefix` (Linux cuts names to 15 bytes).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

// ---------------------------------------------------------------------------------------------
// A handler that runs in this process (threads, pool)

/// What the in-process handlers share with the test.
struct Lab {
    /// Handlers running now, and the most ever at once.
    now: AtomicUsize,
    peak: AtomicUsize,
    /// A `hold` request reports here, then waits for a token on `release`.
    entered: (Sender<()>, Receiver<()>),
    release: (Sender<()>, Receiver<()>),
    /// What `handle_error` was given, as text.
    errors: (Sender<String>, Receiver<String>),
}

impl Default for Lab {
    fn default() -> Lab {
        Lab {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            entered: unbounded(),
            release: unbounded(),
            errors: unbounded(),
        }
    }
}

impl Lab {
    /// Waits until `n` more `hold` requests are running.
    fn wait_entered(&self, n: usize) {
        for i in 0..n {
            self.entered
                .1
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("only {i} of {n} held requests started"));
        }
    }

    /// Lets `n` held requests finish.
    fn release(&self, n: usize) {
        for _ in 0..n {
            self.release.0.send(()).unwrap();
        }
    }

    fn next_error(&self) -> String {
        self.errors.1.recv_timeout(PATIENCE).expect("handle_error")
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Counts a running handler, even if it panics.
struct Busy<'a>(&'a Lab);

impl<'a> Busy<'a> {
    fn enter(lab: &'a Lab) -> Busy<'a> {
        let now = lab.now.fetch_add(1, Ordering::SeqCst) + 1;
        lab.peak.fetch_max(now, Ordering::SeqCst);
        Busy(lab)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads a line and acts on it: `panic`, `fail`, `hold` (wait for a release), `name` (reply with
/// the thread's name), `thread` (reply with the thread's id), or anything else (echo it). Datagrams: `panic`, or echo.
#[derive(Handler)]
#[handler(state = Lab)]
struct Line;

impl StreamRequestHandler for Line {
    fn handle(&mut self, request: &mut StreamRequest<'_, Lab>) -> HandleResult {
        let lab = request.server().state();
        let _busy = Busy::enter(lab);
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        match line.trim_end() {
            "panic" => panic!("told to panic"),
            "fail" => Err("told to fail".into()),
            "hold" => {
                lab.entered.0.send(())?;
                lab.release.1.recv_timeout(PATIENCE)?;
                request.wfile.write_all(b"held\n")?;
                Ok(())
            }
            "name" => {
                let name = thread::current().name().unwrap_or("").to_owned();
                request.wfile.write_all(format!("{name}\n").as_bytes())?;
                Ok(())
            }
            "thread" => {
                let id = thread::current().id();
                request.wfile.write_all(format!("{id:?}\n").as_bytes())?;
                Ok(())
            }
            _ => {
                request.wfile.write_all(line.as_bytes())?;
                Ok(())
            }
        }
    }

    fn handle_error(server: &ServerContext<Lab>, error: &RequestError) {
        let _ = server.state().errors.0.send(error.to_string());
    }
}

impl DatagramRequestHandler for Line {
    fn handle(&mut self, request: &mut DatagramRequest<'_, Lab>) -> HandleResult {
        if request.packet() == b"panic" {
            panic!("told to panic");
        }
        request.wfile.extend_from_slice(request.packet());
        Ok(())
    }

    fn handle_error(server: &ServerContext<Lab>, error: &RequestError) {
        let _ = server.state().errors.0.send(error.to_string());
    }
}

/// Sends `line` on each connection.
fn send_all(clients: &mut [TcpStream], line: &str) {
    for client in clients {
        client.write_all(format!("{line}\n").as_bytes()).unwrap();
    }
}

fn read_reply(client: &mut TcpStream) -> String {
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    reply
}

// ---------------------------------------------------------------------------------------------
// A handler that runs in child processes (forking), reporting over a Unix datagram socket

/// The forking tests' state: where children send their events.
struct ForkLab {
    events: PathBuf,
}

/// Receives the children's events: `start <pid> <client port>`, `error <pid> <text>`,
/// `end <pid>`.
struct Events {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
}

impl Events {
    fn new() -> (Events, ForkLab) {
        let dir = temp_dir();
        let path = dir.path().join("events.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        (Events { socket, _dir: dir }, ForkLab { events: path })
    }

    fn next(&self) -> Vec<String> {
        let mut buf = [0; 512];
        let n = self.socket.recv(&mut buf).expect("an event from a child");
        String::from_utf8_lossy(&buf[..n])
            .split(' ')
            .map(str::to_owned)
            .collect()
    }
}

fn report(events: &Path, message: &str) {
    let socket = UnixDatagram::unbound().expect("event socket");
    let _ = socket.send_to(message.as_bytes(), events);
}

/// In a child: reports `start`, reads a line (`panic`, `fail`, or echo it), reports `end` in
/// `finish`. Datagrams: `panic`, or reply with the child's pid.
#[derive(Handler)]
#[handler(state = ForkLab)]
struct Forked;

impl StreamRequestHandler for Forked {
    fn handle(&mut self, request: &mut StreamRequest<'_, ForkLab>) -> HandleResult {
        let port = request.client_address().as_inet().map_or(0, |a| a.port());
        let events = &request.server().state().events;
        report(events, &format!("start {} {port}", std::process::id()));
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        match line.trim_end() {
            "panic" => panic!("told to panic"),
            "fail" => Err("told to fail".into()),
            _ => {
                request.wfile.write_all(line.as_bytes())?;
                Ok(())
            }
        }
    }

    fn finish(&mut self, request: &mut StreamRequest<'_, ForkLab>) -> HandleResult {
        report(
            &request.server().state().events,
            &format!("end {}", std::process::id()),
        );
        Ok(())
    }

    fn handle_error(server: &ServerContext<ForkLab>, error: &RequestError) {
        report(
            &server.state().events,
            &format!("error {} {error}", std::process::id()),
        );
    }
}

impl DatagramRequestHandler for Forked {
    fn handle(&mut self, request: &mut DatagramRequest<'_, ForkLab>) -> HandleResult {
        if request.packet() == b"panic" {
            panic!("told to panic");
        }
        write!(request.wfile, "{}", std::process::id())?;
        Ok(())
    }

    fn handle_error(server: &ServerContext<ForkLab>, error: &RequestError) {
        report(
            &server.state().events,
            &format!("error {} {error}", std::process::id()),
        );
    }
}

/// Asserts that no process is a zombie child of this one, and that none of `pids` is still
/// ours to wait for.
fn assert_no_zombies(pids: &[i32]) {
    for &pid in pids {
        assert_eq!(
            waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)),
            Err(Errno::ECHILD),
            "child {pid} was reaped by the server"
        );
    }
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        assert!(
            !(fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str())),
            "zombie child: {stat}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Every strategy on every transport

/// One round trip on each transport with a fresh strategy from `make`; returns what each
/// `name` request answered (the thread that served it).
fn every_transport<S: Strategy>(make: impl Fn() -> S) -> Vec<String> {
    let dir = temp_dir();
    let mut names = Vec::new();

    let running = serve(
        TcpServer::<Line>::with_state(Lab::default())
            .strategy(make())
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(running.inet(), "tcp"), "tcp\n");
    names.push(ask(running.inet(), "name"));
    assert_eq!(running.stop().close().abandoned, 0);

    let running = serve(
        UnixStreamServer::<Line>::with_state(Lab::default())
            .strategy(make())
            .bind(dir.path().join("stream.sock"))
            .unwrap(),
    );
    let mut client = std::os::unix::net::UnixStream::connect(running.path()).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"unix\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "unix\n");
    assert_eq!(running.stop().close().abandoned, 0);

    let running = serve(
        UdpServer::<Line>::with_state(Lab::default())
            .strategy(make())
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let client = udp_client(running.inet());
    client.send_to(b"udp", running.inet()).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"udp");
    assert_eq!(running.stop().close().abandoned, 0);

    let running = serve(
        UnixDatagramServer::<Line>::with_state(Lab::default())
            .strategy(make())
            .bind(dir.path().join("dgram.sock"))
            .unwrap(),
    );
    let client = UnixDatagram::bind(dir.path().join("client.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"unix datagram", running.path()).unwrap();
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"unix datagram");
    assert_eq!(running.stop().close().abandoned, 0);
    names
}

#[test]
fn threading_serves_every_transport_on_named_threads() {
    let _shared = shared();
    let names = every_transport(Threading::new);
    assert_eq!(names, ["socketserver-handler\n"]);
}

#[test]
fn pool_serves_every_transport_on_named_workers() {
    let _shared = shared();
    let names = every_transport(|| Pool::new().workers(2));
    assert!(
        names[0].starts_with("socketserver-pool-"),
        "served by {names:?}"
    );
}

#[test]
fn forking_serves_every_transport() {
    let _fork = fork_lock();
    // In the child, the request runs on the copy of the serving thread.
    every_transport(|| Forking::new().max_children(2));
    assert_no_zombies(&[]);
}

// ---------------------------------------------------------------------------------------------
// Many clients at once

/// Connects 50 clients, then has each send at once (a barrier), and checks every answer.
fn fifty_at_once(addr: std::net::SocketAddr) {
    let clients: Vec<TcpStream> = (0..50).map(|_| tcp_client(addr)).collect();
    let barrier = Arc::new(Barrier::new(clients.len()));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                client
                    .write_all(format!("client {i}\n").as_bytes())
                    .unwrap();
                assert_eq!(read_reply(&mut client), format!("client {i}\n"));
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread");
    }
}

#[test]
fn threading_answers_50_clients_connected_at_once() {
    let _shared = shared();
    let running = serve(
        ThreadingTcpServer::<Line>::builder()
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    fifty_at_once(running.inet());
    let report = running.stop().close();
    assert_eq!(report.abandoned, 0);
}

#[test]
fn pool_of_4_answers_50_clients_connected_at_once_in_turn() {
    let _shared = shared();
    // Each request needs only its own client's line, which is sent whether or not the request
    // was accepted yet (the kernel queues it), so a small pool serves them all in turn.
    let running = serve(
        TcpServer::<Line>::builder()
            .strategy(Pool::new().workers(4).queue(4))
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    fifty_at_once(running.inet());
    let server = running.stop();
    assert!(server.state().peak() <= 4, "peak {}", server.state().peak());
    assert_eq!(server.strategy().activity().started(), 50);
    assert_eq!(server.close().abandoned, 0);
}

/// Binds a TCP server with `strategy`, returning it and a handle on its `Lab`.
fn lab_server<S: Strategy>(
    strategy: S,
    close_timeout: Option<Duration>,
) -> (
    socketserver::Server<socketserver::transport::Tcp, Line, S>,
    Arc<Lab>,
) {
    let server = TcpServer::<Line>::builder()
        .strategy(strategy)
        .close_timeout(close_timeout)
        .bind("127.0.0.1:0")
        .unwrap();
    let lab = Arc::clone(server.context().state_arc());
    (server, lab)
}

#[test]
fn pool_of_2_never_runs_more_than_2_handlers_at_once() {
    let _shared = shared();
    let (server, lab) = lab_server(Pool::new().workers(2).queue(1), None);
    let running = serve(server);
    let addr = running.inet();
    let clients: Vec<_> = (0..10)
        .map(|_| thread::spawn(move || ask(addr, "hold")))
        .collect();
    // Release one held request whenever two run, so that the pool is kept full: it must reach
    // two, and the handlers' own count must never see more.
    let (mut entered, mut released) = (0, 0);
    while released < 10 {
        if entered - released < 2 && entered < 10 {
            lab.wait_entered(1);
            entered += 1;
        } else {
            lab.release(1);
            released += 1;
        }
    }
    for client in clients {
        assert_eq!(client.join().unwrap(), "held\n");
    }
    assert_eq!(lab.peak(), 2, "the most handlers running at once");
    let server = running.stop();
    let activity = server.strategy().activity();
    assert!(eventually(PATIENCE, || activity.succeeded() == 10));
    assert_eq!(server.close().abandoned, 0);
}

#[test]
fn forking_never_runs_more_than_max_children_and_leaves_no_zombie() {
    let _fork = fork_lock();
    let (events, state) = Events::new();
    let forking = Forking::new().max_children(2);
    let activity = forking.activity();
    let running = serve(
        TcpServer::<Forked>::with_state(state)
            .strategy(forking)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    // All six connect now; the kernel's backlog holds those the server does not take yet.
    let mut clients: HashMap<u16, TcpStream> = (0..6)
        .map(|_| {
            let client = tcp_client(running.inet());
            (client.local_addr().unwrap().port(), client)
        })
        .collect();
    // A child runs until the test sends its client a line. Release the oldest whenever two
    // run (or when no more will start): the server must then keep two running, never three.
    // Events arrive in the order they were sent, and a child can start only after another
    // was reaped, which is after it sent `end`; so the sequence is exact.
    let (mut running_children, mut pids, mut peak, mut done) = (Vec::new(), Vec::new(), 0, 0);
    while done < 6 {
        if running_children.len() < 2 && pids.len() < 6 {
            let event = events.next();
            assert_eq!(
                event[0], "start",
                "expected a child to start, got {event:?}"
            );
            let pid: i32 = event[1].parse().unwrap();
            let port: u16 = event[2].parse().unwrap();
            assert_ne!(pid as u32, std::process::id(), "served in a child");
            running_children.push((pid, port));
            pids.push(pid);
            peak = peak.max(running_children.len());
            assert!(activity.active() <= 2, "{} children", activity.active());
            continue;
        }
        let (pid, port) = running_children.remove(0);
        let mut client = clients.remove(&port).expect("a child per client");
        // The third request fails: its child exits with status 1.
        let line = if done == 2 { "fail" } else { "hello" };
        client.write_all(format!("{line}\n").as_bytes()).unwrap();
        let expected = if line == "fail" { "" } else { "hello\n" };
        assert_eq!(read_reply(&mut client), expected);
        if line == "fail" {
            assert_eq!(events.next()[..2], ["error", &pid.to_string()]);
        }
        assert_eq!(events.next(), ["end", &pid.to_string()]);
        done += 1;
    }
    assert_eq!(peak, 2, "the most children running at once");
    // The server reaps on its own, without closing.
    assert!(eventually(PATIENCE, || activity.active() == 0));
    assert_eq!((activity.succeeded(), activity.failed()), (5, 1));
    assert_no_zombies(&pids);
    let report = running.stop().close();
    assert_eq!(report, Default::default());
}

// ---------------------------------------------------------------------------------------------
// Closing: waiting for requests in flight, and giving up on them at the deadline

/// Connects `n` clients that each send `hold`, and waits until `running_now` of them run.
fn hold(addr: std::net::SocketAddr, lab: &Lab, n: usize, running_now: usize) -> Vec<TcpStream> {
    let mut clients: Vec<TcpStream> = (0..n).map(|_| tcp_client(addr)).collect();
    send_all(&mut clients, "hold");
    lab.wait_entered(running_now);
    clients
}

#[test]
fn threading_close_waits_for_20_requests_in_flight() {
    let _shared = shared();
    let (server, lab) = lab_server(Threading::new(), None);
    let activity = server.strategy().activity();
    let running = serve(server);
    // 20 handlers at once, each on its own thread.
    let mut clients = hold(running.inet(), &lab, 20, 20);
    let server = running.stop();
    assert_eq!(activity.active(), 20);
    let closer = thread::spawn(move || {
        let report = server.close();
        (report, activity.active())
    });
    lab.release(20);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    let (report, active_after) = closer.join().unwrap();
    assert_eq!((report.completed, report.abandoned), (20, 0));
    assert_eq!(
        active_after, 0,
        "close returned only after every handler ended"
    );
}

#[test]
fn threading_close_timeout_abandons_stuck_handlers_and_reports_them() {
    let _shared = shared();
    let (server, lab) = lab_server(Threading::new(), Some(Duration::from_millis(100)));
    let activity = server.strategy().activity();
    let running = serve(server);
    let mut clients = hold(running.inet(), &lab, 3, 3);
    let started = Instant::now();
    let report = running.stop().close();
    assert!(
        started.elapsed() < PATIENCE,
        "close took {:?}",
        started.elapsed()
    );
    assert_eq!((report.completed, report.abandoned), (0, 3));
    // The abandoned handlers were left to finish on their own.
    lab.release(3);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    assert!(eventually(PATIENCE, || activity.active() == 0));
}

#[test]
fn daemon_threads_are_not_tracked_and_not_waited_for() {
    let _shared = shared();
    let (server, lab) = lab_server(Threading::new().daemon_threads(true), None);
    let activity = server.strategy().activity();
    let running = serve(server);
    let mut clients = hold(running.inet(), &lab, 2, 2);
    assert_eq!((activity.active(), activity.tracked()), (2, 0));
    // No close_timeout, yet close returns at once.
    let report = running.stop().close();
    assert_eq!((report.completed, report.abandoned), (0, 2));
    lab.release(2);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    assert!(eventually(PATIENCE, || activity.active() == 0));
}

#[test]
fn pool_close_waits_for_queued_and_running_requests() {
    let _shared = shared();
    let (server, lab) = lab_server(Pool::new().workers(4).queue(16), None);
    let activity = server.strategy().activity();
    let running = serve(server);
    // 4 run, 16 wait in the queue.
    let mut clients = hold(running.inet(), &lab, 20, 4);
    assert!(eventually(PATIENCE, || activity.started() == 20));
    let server = running.stop();
    assert_eq!(server.strategy().queued(), 16);
    let closer = thread::spawn(move || server.close());
    lab.release(20);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    let report = closer.join().unwrap();
    assert_eq!((report.completed, report.abandoned), (20, 0));
    assert_eq!(lab.peak(), 4);
}

#[test]
fn pool_close_timeout_drops_queued_requests_and_abandons_running_ones() {
    let _shared = shared();
    let (server, lab) = lab_server(
        Pool::new().workers(2).queue(2),
        Some(Duration::from_millis(100)),
    );
    let activity = server.strategy().activity();
    let running = serve(server);
    let mut clients = hold(running.inet(), &lab, 4, 2);
    assert!(eventually(PATIENCE, || activity.started() == 4));
    let report = running.stop().close();
    assert_eq!((report.completed, report.abandoned), (0, 4));
    lab.release(2);
    let mut replies: Vec<String> = clients
        .iter_mut()
        .map(|client| {
            let mut reply = String::new();
            // A dropped request's connection is closed with its line unread: end-of-file or a
            // reset, and no reply either way.
            let _ = client.read_to_string(&mut reply);
            reply
        })
        .collect();
    replies.sort();
    assert_eq!(replies, ["", "", "held\n", "held\n"]);
    assert!(eventually(PATIENCE, || activity.active() == 0));
}

#[test]
fn forking_close_waits_for_running_children() {
    let _fork = fork_lock();
    let (events, state) = Events::new();
    let forking = Forking::new();
    let activity = forking.activity();
    let running = serve(
        TcpServer::<Forked>::with_state(state)
            .strategy(forking)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let mut clients: Vec<TcpStream> = (0..3).map(|_| tcp_client(running.inet())).collect();
    let pids: Vec<i32> = (0..3).map(|_| events.next()[1].parse().unwrap()).collect();
    let server = running.stop();
    // Each child waits for its client's line, so close must wait for the test to send them.
    let closer = thread::spawn(move || server.close());
    send_all(&mut clients, "bye");
    for client in &mut clients {
        assert_eq!(read_reply(client), "bye\n");
    }
    let report = closer.join().unwrap();
    assert_eq!((report.completed, report.abandoned), (3, 0));
    assert_eq!((activity.active(), activity.succeeded()), (0, 3));
    assert_no_zombies(&pids);
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping stays flat (bpo-37193)

#[test]
fn threading_reaps_its_threads_over_1000_connections() {
    let _alone = alone();
    let baseline = own_threads();
    let (server, _lab) = lab_server(
        Threading::new().idle_thread_timeout(Duration::from_millis(100)),
        None,
    );
    let activity = server.strategy().activity();
    let running = serve(server);
    let addr = running.inet();
    // Four clients at a time, 250 connections each; each notes how many threads the strategy
    // holds after its request.
    let most_tracked = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let most_tracked = Arc::clone(&most_tracked);
            let activity = activity.clone();
            thread::spawn(move || {
                for i in 0..250 {
                    let line = format!("{c}-{i}");
                    assert_eq!(ask(addr, &line), format!("{line}\n"));
                    most_tracked.fetch_max(activity.tracked(), Ordering::SeqCst);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // A thread counts its request after the client has its answer.
    assert!(eventually(PATIENCE, || activity.succeeded() == 1000));
    let most = most_tracked.load(Ordering::SeqCst);
    assert!(
        most < 50,
        "up to {most} threads tracked for 4 clients at a time"
    );
    // Ended after the idle timeout and reaped while the server idles, not only when it closes.
    assert!(
        eventually(PATIENCE, || activity.tracked() == 0
            && activity.active() == 0),
        "{activity:?}"
    );
    let report = running.stop().close();
    assert_eq!(report, Default::default());
    assert!(
        eventually(PATIENCE, || threads_named("socketserver-ha") == 0),
        "handler threads left"
    );
    assert!(
        eventually(PATIENCE, || own_threads() <= baseline),
        "{} threads, {baseline} before",
        own_threads()
    );
}

/// A thread that finished a request takes the next one; with `max_idle_threads(0)` every
/// request gets a new thread, as in Python.
#[test]
fn threading_reuses_finished_threads_unless_told_not_to() {
    let _shared = shared();
    let (server, _lab) = lab_server(Threading::new(), None);
    let running = serve(server);
    let addr = running.inet();
    // A request may come before the last thread is back waiting (then it gets a new thread,
    // and later requests may alternate between the two); but soon one runs on a thread that
    // ran an earlier request. Thread ids are never reused, so only reuse can repeat one.
    let mut seen = std::collections::HashSet::new();
    assert!(
        eventually(PATIENCE, || !seen.insert(ask(addr, "thread"))),
        "every request ran on a new thread: {seen:?}"
    );
    running.stop().close();

    let (server, _lab) = lab_server(Threading::new().max_idle_threads(0), None);
    let running = serve(server);
    let addr = running.inet();
    let threads: std::collections::HashSet<String> = (0..20).map(|_| ask(addr, "thread")).collect();
    assert_eq!(threads.len(), 20, "{threads:?}");
    running.stop().close();
}

/// After a burst, a trickle of requests keeps one thread busy, not all of them: the thread
/// that finished last takes the next request, and the others time out.
#[test]
fn threading_lets_spare_threads_time_out_under_a_trickle() {
    let _shared = shared();
    let (server, lab) = lab_server(
        Threading::new().idle_thread_timeout(Duration::from_millis(200)),
        None,
    );
    let activity = server.strategy().activity();
    let running = serve(server);
    let addr = running.inet();
    let mut clients = hold(addr, &lab, 6, 6);
    lab.release(6);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    // Requests one after the other, far more often than the idle timeout: taking turns, all
    // six threads would stay alive.
    assert!(
        eventually(PATIENCE, || {
            assert_eq!(ask(addr, "trickle"), "trickle\n");
            activity.tracked() <= 2
        }),
        "{activity:?}"
    );
    running.stop().close();
}

/// At most `max_idle_threads` wait for a request, and closing ends them at once, however long
/// they would still wait.
#[test]
fn threading_keeps_at_most_max_idle_threads_and_close_ends_them() {
    let _alone = alone();
    let (server, lab) = lab_server(
        Threading::new()
            .max_idle_threads(2)
            .idle_thread_timeout(PATIENCE * 6),
        None,
    );
    let activity = server.strategy().activity();
    let running = serve(server);
    let mut clients = hold(running.inet(), &lab, 6, 6);
    // Six at least: handler threads of an earlier test may still be ending.
    assert!(threads_named("socketserver-ha") >= 6);
    lab.release(6);
    for client in &mut clients {
        assert_eq!(read_reply(client), "held\n");
    }
    // Four threads end; two wait for the next request.
    assert!(
        eventually(PATIENCE, || activity.tracked() == 2
            && threads_named("socketserver-ha") == 2),
        "{activity:?}, {} threads",
        threads_named("socketserver-ha")
    );
    let server = running.stop();
    let started = Instant::now();
    let report = server.close();
    assert!(
        started.elapsed() < PATIENCE,
        "close waited {:?} for idle threads",
        started.elapsed()
    );
    // The two waiting threads' requests may have ended after the loop last looked, so
    // `completed` can count them; nothing was left running.
    assert_eq!(report.abandoned, 0);
    assert_eq!(activity.tracked(), 0);
    assert!(
        eventually(PATIENCE, || threads_named("socketserver-ha") == 0),
        "waiting threads outlived close"
    );
}

// ---------------------------------------------------------------------------------------------
// Panicking handlers: reported, and the next request is served

#[test]
fn threading_panicking_handler_is_reported_and_the_next_request_served() {
    let _shared = shared();
    let (server, lab) = lab_server(Threading::new(), None);
    let activity = server.strategy().activity();
    let running = serve(server);
    assert_eq!(ask(running.inet(), "panic"), "");
    assert!(lab.next_error().contains("panicked: told to panic"));
    assert_eq!(ask(running.inet(), "fail"), "");
    assert!(lab.next_error().contains("told to fail"));
    assert_eq!(ask(running.inet(), "next"), "next\n");
    assert!(eventually(PATIENCE, || activity.finished() == 3));
    assert_eq!((activity.succeeded(), activity.failed()), (1, 2));
    running.stop().close();
}

#[test]
fn pool_panicking_handler_is_reported_and_does_not_shrink_the_pool() {
    let _shared = shared();
    // One worker: the next request is served only if the worker survived the panic.
    let (server, lab) = lab_server(Pool::new().workers(1), None);
    let activity = server.strategy().activity();
    let running = serve(server);
    for _ in 0..3 {
        assert_eq!(ask(running.inet(), "panic"), "");
        assert!(lab.next_error().contains("panicked: told to panic"));
    }
    assert_eq!(ask(running.inet(), "next"), "next\n");
    assert_eq!(activity.tracked(), 1, "one worker, still");
    assert!(eventually(PATIENCE, || activity.finished() == 4));
    assert_eq!((activity.succeeded(), activity.failed()), (1, 3));
    running.stop().close();
}

#[test]
fn forking_panicking_handler_is_reported_by_the_child_and_counted_as_failed() {
    let _fork = fork_lock();
    let (events, state) = Events::new();
    let forking = Forking::new();
    let activity = forking.activity();
    let running = serve(
        TcpServer::<Forked>::with_state(state)
            .strategy(forking)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(running.inet(), "panic"), "");
    assert_eq!(events.next()[0], "start");
    let error = events.next().join(" ");
    assert!(error.contains("panicked: told to panic"), "{error}");
    assert_eq!(events.next()[0], "end", "finish ran in the child");
    assert_eq!(ask(running.inet(), "next"), "next\n");
    assert!(eventually(PATIENCE, || activity.active() == 0));
    assert_eq!((activity.succeeded(), activity.failed()), (1, 1));
    running.stop().close();
    assert_no_zombies(&[]);
}

#[test]
fn threading_panicking_datagram_handler_is_reported_and_the_next_datagram_served() {
    let _shared = shared();
    let server = UdpServer::<Line>::builder()
        .strategy(Threading::new())
        .bind("127.0.0.1:0")
        .unwrap();
    let lab = Arc::clone(server.context().state_arc());
    let running = serve(server);
    let client = udp_client(running.inet());
    client.send_to(b"panic", running.inet()).unwrap();
    assert!(lab.next_error().contains("panicked: told to panic"));
    client.send_to(b"next", running.inet()).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"next", "no reply to the panicking datagram");
    running.stop().close();
}

#[test]
fn pool_panicking_unix_datagram_handler_is_reported_and_the_next_datagram_served() {
    let _shared = shared();
    let dir = temp_dir();
    let server = UnixDatagramServer::<Line>::builder()
        .strategy(Pool::new().workers(1))
        .bind(dir.path().join("server.sock"))
        .unwrap();
    let lab = Arc::clone(server.context().state_arc());
    let running = serve(server);
    let client = UnixDatagram::bind(dir.path().join("client.sock")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.send_to(b"panic", running.path()).unwrap();
    assert!(lab.next_error().contains("panicked: told to panic"));
    client.send_to(b"next", running.path()).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"next");
    running.stop().close();
}

#[test]
fn forking_panicking_datagram_handler_is_reported_and_the_next_datagram_served() {
    let _fork = fork_lock();
    let (events, state) = Events::new();
    let forking = Forking::new();
    let activity = forking.activity();
    let running = serve(
        UdpServer::<Forked>::with_state(state)
            .strategy(forking)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let client = udp_client(running.inet());
    client.send_to(b"panic", running.inet()).unwrap();
    let error = events.next().join(" ");
    assert!(error.contains("panicked: told to panic"), "{error}");
    // The child replies through the server's socket, which it shares with the parent.
    client.send_to(b"next", running.inet()).unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    let pid: u32 = std::str::from_utf8(&buf[..n]).unwrap().parse().unwrap();
    assert_ne!(pid, std::process::id(), "served by a child");
    assert!(eventually(PATIENCE, || activity.active() == 0));
    assert_eq!((activity.succeeded(), activity.failed()), (1, 1));
    running.stop().close();
    assert_no_zombies(&[pid as i32]);
}
