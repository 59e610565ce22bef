//! The `Forking` strategy over real sockets: every transport; never more than `max_children`
//! at once, and no zombie left; closing while children run; panicking handlers, reported by the
//! child. Ported in spirit from CPython's `test_socketserver` (`ForkingMixIn` servers, and
//! `ForkingMixIn` reaping for bpo-11109). Every test holds the fork lock until its children are
//! reaped.

mod util;

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::thread;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use socketserver::{
    DatagramRequest, DatagramRequestHandler, Forking, HandleResult, Handler, RequestError,
    ServerContext, Strategy, StreamRequest, StreamRequestHandler, TcpServer, UdpServer,
};
use util::isolation::fork_lock;
use util::lab::{every_transport, read_reply, send_all};
use util::{ask, eventually, serve, tcp_client, temp_dir, udp_client, PATIENCE};

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
}

/// The `handle_error` hook: reports the error with the pid of the process it ran in.
fn forked_error(server: &ServerContext<ForkLab>, error: &RequestError) {
    report(
        &server.state().events,
        &format!("error {} {error}", std::process::id()),
    );
}

impl DatagramRequestHandler for Forked {
    fn handle(&mut self, request: &mut DatagramRequest<'_, ForkLab>) -> HandleResult {
        if request.packet() == b"panic" {
            panic!("told to panic");
        }
        write!(request.wfile, "{}", std::process::id())?;
        Ok(())
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
// Every transport, and the limit on children

#[test]
fn forking_serves_every_transport() {
    let _fork = fork_lock();
    // In the child, the request runs on the copy of the serving thread.
    every_transport(|| Forking::new().max_children(2));
    assert_no_zombies(&[]);
}

#[test]
fn forking_never_runs_more_than_max_children_and_leaves_no_zombie() {
    let _fork = fork_lock();
    let (events, state) = Events::new();
    let forking = Forking::new().max_children(2);
    let activity = forking.activity().unwrap();
    let running = serve(
        TcpServer::<Forked>::with_state(state)
            .handle_error(forked_error)
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
// Closing: waiting for running children

#[test]
fn forking_close_waits_for_running_children() {
    let _fork = fork_lock();
    let (events, state) = Events::new();
    let forking = Forking::new();
    let activity = forking.activity().unwrap();
    let running = serve(
        TcpServer::<Forked>::with_state(state)
            .handle_error(forked_error)
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
// Panicking handlers: reported by the child, and the next request is served

#[test]
fn forking_panicking_handler_is_reported_by_the_child_and_counted_as_failed() {
    let _fork = fork_lock();
    let (events, state) = Events::new();
    let forking = Forking::new();
    let activity = forking.activity().unwrap();
    let running = serve(
        TcpServer::<Forked>::with_state(state)
            .handle_error(forked_error)
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
fn forking_panicking_datagram_handler_is_reported_and_the_next_datagram_served() {
    let _fork = fork_lock();
    let (events, state) = Events::new();
    let forking = Forking::new();
    let activity = forking.activity().unwrap();
    let running = serve(
        UdpServer::<Forked>::with_state(state)
            .handle_error(forked_error)
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
