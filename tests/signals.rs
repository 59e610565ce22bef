//! `serve_until_signal` and the default `handle_error`, in real processes: each test runs its
//! server in a child process (this same test binary, re-run with `SIGNALS_CHILD` naming the
//! test), sends it real signals, and reads what it prints. A child that mishandles a signal dies
//! alone instead of taking the test runner with it.
//!
//! The children install no logger, as the README's first program does: what they report must
//! reach stderr anyway.

mod util;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};
use util::child::{exit_status, line_after, lines_of};

/// How long any one step may take before the test fails.
const STEP: Duration = Duration::from_secs(20);

/// Echoes lines until the client closes.
#[derive(Handler)]
struct Lines;

impl StreamRequestHandler for Lines {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut line = String::new();
        while request.rfile.read_line(&mut line)? > 0 {
            request.wfile.write_all(line.as_bytes())?;
            line.clear();
        }
        Ok(())
    }
}

/// Fails every request, as a handler with a bug does.
#[derive(Handler)]
struct Fails;

impl StreamRequestHandler for Fails {
    fn handle(&mut self, _request: &mut StreamRequest<'_>) -> HandleResult {
        Err(std::io::Error::other("the handler's own failure").into())
    }
}

/// Fails every datagram but the one that says `last`, which it answers.
#[derive(Handler)]
struct FailsDatagrams;

impl socketserver::DatagramRequestHandler for FailsDatagrams {
    fn handle(&mut self, request: &mut socketserver::DatagramRequest<'_>) -> HandleResult {
        if request.packet() == b"last" {
            request.wfile.extend_from_slice(b"done");
            return Ok(());
        }
        Err(std::io::Error::other("a datagram the handler rejects").into())
    }
}

/// Whether this process is the child of test `name`.
fn is_child(name: &str) -> bool {
    std::env::var("SIGNALS_CHILD").as_deref() == Ok(name)
}

/// In the child: serves `server` until a signal, announcing `ready <address>` from `on_ready`,
/// then prints `returned <completed> <abandoned>` and what follows.
fn child_serve<T, H, S>(mut server: socketserver::Server<T, H, S>)
where
    T: socketserver::transport::Transport,
    H: socketserver::Handler,
    S: socketserver::Strategy,
{
    server.on_ready(|address| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {address}");
        let _ = out.flush();
    });
    let report = server.serve_until_signal().expect("serve_until_signal");
    println!("returned {} {}", report.completed, report.abandoned);
}

/// A child process running test `name` in child mode, with its stdout and stderr lines on
/// channels (tests/util/child.rs).
struct ChildServer {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

impl ChildServer {
    fn start(name: &str) -> (ChildServer, std::net::SocketAddr) {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("SIGNALS_CHILD", name)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the child");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        let server = ChildServer {
            child,
            stdout,
            stderr,
        };
        let ready = server.expect_line("ready ");
        let address = ready.parse().expect("a socket address");
        (server, address)
    }

    /// Waits for a stdout line holding `prefix` (the test harness may print before it on the
    /// same line); returns what follows it.
    fn expect_line(&self, prefix: &str) -> String {
        line_after(&self.stdout, prefix)
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, signal).expect("signal the child");
    }

    /// Waits for the child to exit (killing it if it does not in time); its status and what
    /// it wrote on stderr that no `line_after` took.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = exit_status(&mut self.child);
        // The child is gone, so its stderr ends and the reader closes the channel.
        let deadline = Instant::now() + STEP;
        let mut stderr = Vec::new();
        while let Ok(line) = self.stderr.recv_deadline(deadline) {
            stderr.push(line);
        }
        (status, stderr.join("\n"))
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client whose line was echoed: the server's handler is now blocked reading from it.
fn idle_client(address: std::net::SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(address).expect("connect");
    client.set_read_timeout(Some(STEP)).expect("timeout");
    client.write_all(b"hello\n").expect("send");
    let mut echoed = [0u8; 6];
    client.read_exact(&mut echoed).expect("echo");
    assert_eq!(&echoed, b"hello\n");
    client
}

#[test]
fn ctrl_c_stops_a_serial_server_blocked_reading_an_idle_client_within_the_grace_period() {
    const NAME: &str =
        "ctrl_c_stops_a_serial_server_blocked_reading_an_idle_client_within_the_grace_period";
    if is_child(NAME) {
        child_serve(
            TcpServer::<Lines>::builder()
                .close_timeout(Some(Duration::from_millis(500)))
                .bind("127.0.0.1:0")
                .expect("bind"),
        );
        return;
    }
    let (server, address) = ChildServer::start(NAME);
    let mut client = idle_client(address);
    let started = Instant::now();
    server.signal(Signal::SIGINT);
    let returned = server.expect_line("returned ");
    let took = started.elapsed();
    println!("stopped {took:?} after SIGINT with a silent client (grace 500 ms): {returned}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The handler saw end-of-file, ended, and the connection was closed in order.
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).expect("end of file"), 0);
    let (status, stderr) = server.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains("SIGINT received: stopping 127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("grace period is over"), "{stderr}");
}

#[test]
fn a_second_ctrl_c_stops_at_once() {
    const NAME: &str = "a_second_ctrl_c_stops_at_once";
    if is_child(NAME) {
        child_serve(
            TcpServer::<Lines, socketserver::Threading>::builder()
                .close_timeout(Some(Duration::from_secs(600)))
                .bind("127.0.0.1:0")
                .expect("bind"),
        );
        return;
    }
    let (server, address) = ChildServer::start(NAME);
    let mut client = idle_client(address);
    server.signal(Signal::SIGINT);
    // The watcher says so once it has heard the first: a second sent before could merge
    // with it in the kernel.
    line_after(&server.stderr, "SIGINT received: stopping");
    let started = Instant::now();
    server.signal(Signal::SIGINT);
    let returned = server.expect_line("returned ");
    let took = started.elapsed();
    println!("stopped {took:?} after the second SIGINT (grace 600 s): {returned}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let mut rest = Vec::new();
    assert_eq!(client.read_to_end(&mut rest).unwrap_or(0), 0);
    let (status, stderr) = server.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains("SIGINT received again: stopping"),
        "{stderr}"
    );
}

#[test]
fn signals_work_as_before_once_serve_until_signal_returned() {
    const NAME: &str = "signals_work_as_before_once_serve_until_signal_returned";
    if is_child(NAME) {
        child_serve(TcpServer::<Lines>::bind("127.0.0.1:0").expect("bind"));
        // Default dispositions again: the next SIGINT ends this process. Wait for it; a
        // signal that is handled instead ends `pause` and the wait goes on, until the parent
        // gives up and kills this process.
        println!("waiting");
        loop {
            nix::unistd::pause();
        }
    }
    let (server, _address) = ChildServer::start(NAME);
    server.signal(Signal::SIGTERM);
    server.expect_line("returned ");
    server.expect_line("waiting");
    server.signal(Signal::SIGINT);
    let (status, stderr) = server.finish();
    assert_eq!(
        status.signal(),
        Some(Signal::SIGINT as i32),
        "SIGINT after serve_until_signal returned did not end the process: {status:?}\n{stderr}"
    );
}

#[test]
fn a_signal_right_after_on_ready_stops_gracefully() {
    const NAME: &str = "a_signal_right_after_on_ready_stops_gracefully";
    if is_child(NAME) {
        child_serve(TcpServer::<Lines>::bind("127.0.0.1:0").expect("bind"));
        return;
    }
    for _ in 0..10 {
        let (server, _address) = ChildServer::start(NAME);
        server.signal(Signal::SIGTERM);
        server.expect_line("returned ");
        let (status, stderr) = server.finish();
        assert!(status.success(), "{status:?}\n{stderr}");
    }
}

#[test]
fn a_failing_handler_is_reported_on_stderr_without_a_logger() {
    const NAME: &str = "a_failing_handler_is_reported_on_stderr_without_a_logger";
    if is_child(NAME) {
        child_serve(TcpServer::<Fails>::bind("127.0.0.1:0").expect("bind"));
        return;
    }
    let (server, address) = ChildServer::start(NAME);
    let mut client = TcpStream::connect(address).expect("connect");
    let client_address = client.local_addr().expect("client address");
    client.set_read_timeout(Some(STEP)).expect("timeout");
    let mut rest = Vec::new();
    // The handler failed and the connection closed: the request is over.
    client.read_to_end(&mut rest).expect("end of file");
    server.signal(Signal::SIGTERM);
    let (status, stderr) = server.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    let reported = stderr
        .lines()
        .find(|l| l.contains("the handler's own failure"))
        .unwrap_or_else(|| panic!("no report of the failure on stderr:\n{stderr}"));
    assert!(reported.starts_with("socketserver: error: "), "{reported}");
    assert!(
        reported.contains(&client_address.to_string()),
        "the report does not name the client {client_address}: {reported}"
    );
    assert!(stderr.contains("no logger is installed"), "{stderr}");
}

#[test]
fn a_flood_of_failing_requests_logs_a_bounded_number_of_lines() {
    const NAME: &str = "a_flood_of_failing_requests_logs_a_bounded_number_of_lines";
    const SENT: usize = 2000;
    if is_child(NAME) {
        child_serve(socketserver::UdpServer::<FailsDatagrams>::bind("127.0.0.1:0").expect("bind"));
        return;
    }
    let (server, address) = ChildServer::start(NAME);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind client");
    client.set_read_timeout(Some(STEP)).expect("timeout");
    for _ in 0..SENT {
        client.send_to(b"bad", address).expect("send");
    }
    // Datagrams are handled in order: once `last` is answered, every earlier one that the
    // kernel kept has failed and been reported. The flood may have filled the server's
    // receive buffer, which drops datagrams, `last` among them: send it again until answered.
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let answered = (0..40).any(|_| {
        client.send_to(b"last", address).expect("send");
        let mut reply = [0u8; 8];
        matches!(client.recv_from(&mut reply), Ok((4, _)) if &reply[..4] == b"done")
    });
    assert!(answered, "`last` was never answered");
    server.signal(Signal::SIGTERM);
    let (status, stderr) = server.finish();
    assert!(status.success(), "{status:?}");
    let reported = stderr
        .lines()
        .filter(|l| l.contains("a datagram the handler rejects"))
        .count();
    println!("{SENT} failing datagrams: {reported} lines on stderr (bound 60: 20 a second)");
    assert!(reported >= 1, "nothing reported:\n{stderr}");
    assert!(reported <= 60, "{reported} lines");
}

#[test]
fn a_signal_is_heard_while_a_full_pool_holds_the_loop() {
    const NAME: &str = "a_signal_is_heard_while_a_full_pool_holds_the_loop";
    if is_child(NAME) {
        child_serve(
            TcpServer::<Lines, socketserver::Pool>::builder()
                .strategy(socketserver::Pool::new().workers(1).queue(1))
                .close_timeout(Some(Duration::from_millis(500)))
                .bind("127.0.0.1:0")
                .expect("bind"),
        );
        return;
    }
    let (server, address) = ChildServer::start(NAME);
    // One client holds the only worker, one waits in the queue, and a third leaves the
    // serving loop waiting for room in the pool (not in its own poll).
    let mut busy = idle_client(address);
    let queued = TcpStream::connect(address).expect("connect");
    let waiting = TcpStream::connect(address).expect("connect");
    let started = Instant::now();
    server.signal(Signal::SIGTERM);
    let returned = server.expect_line("returned ");
    let took = started.elapsed();
    println!("stopped {took:?} after SIGTERM with a full pool (grace 500 ms): {returned}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let mut rest = Vec::new();
    assert_eq!(busy.read_to_end(&mut rest).expect("end of file"), 0);
    drop((queued, waiting));
    let (status, stderr) = server.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("SIGTERM received: stopping"), "{stderr}");
}

#[test]
fn a_forking_server_starts_no_signal_thread_until_a_signal() {
    // A second thread would send every fork through glibc's slower multi-threaded path
    // (BENCHMARKS.md, issue 13): the thread that acts on signals starts at the first one.
    const NAME: &str = "a_forking_server_starts_no_signal_thread_until_a_signal";
    if is_child(NAME) {
        child_serve(
            TcpServer::<Lines, socketserver::Forking>::builder()
                .close_timeout(Some(Duration::from_secs(2)))
                .bind("127.0.0.1:0")
                .expect("bind"),
        );
        return;
    }
    let (server, address) = ChildServer::start(NAME);
    drop(idle_client(address));
    // The child's threads by name (the test harness has one of its own).
    let tasks = std::fs::read_dir(format!("/proc/{}/task", server.child.id())).expect("tasks");
    let names: Vec<String> = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect();
    println!("threads while serving: {names:?} (want no socketserver-signals)");
    // (Linux keeps 15 bytes of a thread's name: "socketserver-si".)
    assert!(
        !names
            .iter()
            .any(|n| "socketserver-signals".starts_with(n.as_str())),
        "{names:?}"
    );
    server.signal(Signal::SIGINT);
    server.expect_line("returned ");
    let (status, stderr) = server.finish();
    assert!(status.success(), "{status:?}\n{stderr}");
}
