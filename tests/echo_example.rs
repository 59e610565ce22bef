//! The echo example as a user runs it: a real process, Python's `socket` module as the client,
//! signals to stop it, and its one-line errors.

mod example;
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

// `python` runs a client on the Python that `scripts/test` sets up (target/test-venv).
use example::{python, Example};
use nix::sys::signal::Signal;
use util::temp_dir;

/// The example binary, built fresh: `cargo test --test echo_example` alone would not rebuild it.
fn echo_binary() -> PathBuf {
    example::binary("echo")
}

const PY_STREAM: &str = r#"
import socket, sys
family, target = sys.argv[1], sys.argv[2]
if family == "tcp":
    host, port = target.rsplit(":", 1)
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(target)
payload = bytes(range(256)) * 400  # 100 KiB, every byte value
s.sendall(payload)
s.shutdown(socket.SHUT_WR)
got = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
assert got == payload, (len(got), len(payload))
print("ok")
"#;

const PY_DATAGRAM: &str = r#"
import os, socket, sys, tempfile
family, target = sys.argv[1], sys.argv[2]
if family == "udp":
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dest = (host, int(port))
else:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(os.path.join(tempfile.mkdtemp(), "client.sock"))  # unbound clients get no reply
    dest = target
s.settimeout(10)
for payload in [b"hello", b"", bytes(range(256)) * 32]:
    s.sendto(payload, dest)
    got, _ = s.recvfrom(65536)
    assert got == payload, (got[:20], payload[:20])
print("ok")
"#;

#[test]
fn tcp_echo_with_a_python_client_then_sigterm_exits_zero() {
    let echo = Example::start_keeping_stderr("echo", &["tcp", "127.0.0.1:0"]);
    assert!(
        !echo.address.ends_with(":0"),
        "the real port is printed: {}",
        echo.address
    );
    python(PY_STREAM, &["tcp", &echo.address]);
    python(PY_STREAM, &["tcp", &echo.address]);
    let (status, err) = echo.stop_with_stderr(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
}

#[test]
fn unix_echo_then_sigint_exits_zero_and_removes_the_socket_file() {
    let dir = temp_dir();
    let path = dir.path().join("echo.sock");
    let echo = Example::start_keeping_stderr("echo", &["unix", path.to_str().unwrap()]);
    assert_eq!(echo.address, path.to_str().unwrap());
    python(PY_STREAM, &["unix", &echo.address]);
    let (status, err) = echo.stop_with_stderr(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert!(!path.exists(), "socket file removed on exit");
}

#[test]
fn udp_echo_with_a_python_client() {
    let echo = Example::start_keeping_stderr("echo", &["udp", "127.0.0.1:0"]);
    python(PY_DATAGRAM, &["udp", &echo.address]);
    let (status, _) = echo.stop_with_stderr(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn unix_datagram_echo_with_a_python_client() {
    let dir = temp_dir();
    let path = dir.path().join("echo-dgram.sock");
    let echo = Example::start_keeping_stderr("echo", &["unix-datagram", path.to_str().unwrap()]);
    python(PY_DATAGRAM, &["unix-datagram", &echo.address]);
    let (status, _) = echo.stop_with_stderr(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    assert!(!path.exists());
}

fn run_to_failure(args: &[&str]) -> Output {
    Command::new(echo_binary())
        .args(args)
        .output()
        .expect("run the echo example")
}

/// A failure: non-zero exit, nothing on stdout, one line on stderr that contains `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "nothing is served: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(needle), "{err:?} names {needle}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err:?}"
    );
}

#[test]
fn a_busy_port_is_one_line_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_to_failure(&["tcp", &addr]);
    assert_one_line_error(&out, &format!("address {addr} is already in use"));
}

#[test]
fn a_live_socket_path_is_one_line_naming_it() {
    let dir = temp_dir();
    let path = dir.path().join("live.sock");
    let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let out = run_to_failure(&["unix", path.to_str().unwrap()]);
    assert_one_line_error(&out, path.to_str().unwrap());
}

#[test]
fn a_bad_address_is_one_line_naming_it() {
    let out = run_to_failure(&["udp", "localhost:http-not-a-port"]);
    assert_one_line_error(&out, "localhost:http-not-a-port");
}

#[test]
fn every_mode_echoes_on_stream_and_datagram_transports() {
    let dir = temp_dir();
    for mode in ["sync", "threading", "forking", "pool", "prefork"] {
        let mut args = vec!["tcp", "127.0.0.1:0", "--mode", mode];
        if matches!(mode, "forking" | "pool" | "prefork") {
            args.extend(["--workers", "3"]);
        }
        let echo = Example::start_keeping_stderr("echo", &args);
        python(PY_STREAM, &["tcp", &echo.address]);
        let (status, err) = echo.stop_with_stderr(Signal::SIGTERM);
        assert_eq!(status.code(), Some(0), "tcp --mode {mode}: {err}");

        let path = dir.path().join(format!("{mode}.sock"));
        let echo = Example::start_keeping_stderr(
            "echo",
            &["unix-datagram", path.to_str().unwrap(), "--mode", mode],
        );
        python(PY_DATAGRAM, &["unix-datagram", &echo.address]);
        let (status, err) = echo.stop_with_stderr(Signal::SIGTERM);
        assert_eq!(status.code(), Some(0), "unix-datagram --mode {mode}: {err}");
        assert!(!path.exists(), "--mode {mode} removed its socket file");
    }
}

/// The default read timeout the example sets (`--read-timeout`), which is what frees a worker
/// held by a silent client.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a probe may wait for its echo while silent clients sit there: the read timeout
/// that frees a place for it, plus slack for a loaded machine.
const PROBE_BOUND: Duration = Duration::from_secs(20);

/// Connects `silent` clients that send nothing, then a probe; returns how long the probe
/// waited for its echo, or fails the test if that took longer than [`PROBE_BOUND`].
///
/// The silent clients connect first, so the kernel hands them to the server before the probe:
/// each takes the place (the one serving thread, a pool worker, a forked child, one of
/// `--max-connections`) that the probe needs until the read timeout closes it.
fn probe_behind_silent_clients(echo: &Example, silent: usize, what: &str) -> Duration {
    let addr: SocketAddr = echo.address.parse().expect("a TCP address");
    let quiet: Vec<TcpStream> = (0..silent)
        .map(|_| TcpStream::connect(addr).expect("a silent client connects"))
        .collect();
    let started = Instant::now();
    let mut probe = TcpStream::connect(addr).expect("the probe connects");
    probe.set_read_timeout(Some(PROBE_BOUND)).unwrap();
    probe.write_all(b"probe\n").expect("send the probe");
    let mut echoed = [0; 6];
    let got = probe.read_exact(&mut echoed);
    let waited = started.elapsed();
    eprintln!(
        "{what}: probe echoed after {:.2} s behind {silent} silent client(s) (bound {} s)",
        waited.as_secs_f64(),
        PROBE_BOUND.as_secs()
    );
    assert!(
        got.is_ok() && &echoed == b"probe\n" && waited < PROBE_BOUND,
        "{what}: {silent} silent clients denied service: no echo within {PROBE_BOUND:?} ({got:?})"
    );
    drop(quiet);
    waited
}

/// Stops the example with SIGTERM and checks it exits 0.
fn stop_cleanly(echo: Example, what: &str) {
    let (status, err) = echo.stop_with_stderr(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{what}: {err}");
}

#[test]
fn one_silent_client_does_not_stop_mode_sync() {
    let echo = Example::start_keeping_stderr("echo", &["tcp", "127.0.0.1:0", "--mode", "sync"]);
    let waited = probe_behind_silent_clients(&echo, 1, "--mode sync");
    assert!(
        waited >= DEFAULT_READ_TIMEOUT / 2,
        "the probe waited its turn"
    );
    stop_cleanly(echo, "--mode sync");
}

#[test]
fn more_silent_clients_than_workers_do_not_stop_mode_pool() {
    let echo = Example::start_keeping_stderr(
        "echo",
        &["tcp", "127.0.0.1:0", "--mode", "pool", "--workers", "2"],
    );
    probe_behind_silent_clients(&echo, 3, "--mode pool --workers 2");
    stop_cleanly(echo, "--mode pool");
}

#[test]
fn more_silent_clients_than_children_do_not_stop_mode_forking() {
    let echo = Example::start_keeping_stderr(
        "echo",
        &["tcp", "127.0.0.1:0", "--mode", "forking", "--workers", "2"],
    );
    probe_behind_silent_clients(&echo, 3, "--mode forking --workers 2");
    stop_cleanly(echo, "--mode forking");
}

#[test]
fn the_connection_cap_holds_and_silent_clients_time_out_of_it() {
    let args = [
        "tcp",
        "127.0.0.1:0",
        "--max-connections",
        "2",
        "--read-timeout",
        "1.5",
    ];
    let echo = Example::start_keeping_stderr("echo", &args);
    let waited = probe_behind_silent_clients(&echo, 2, "--max-connections 2 --read-timeout 1.5");
    // Without the cap the thread-per-connection default would echo at once: the probe waited
    // in the listen backlog until a silent client's read timeout freed a place.
    assert!(
        waited >= Duration::from_millis(1000),
        "the probe was served past the cap after {waited:?}"
    );
    stop_cleanly(echo, "--max-connections 2");
}

#[test]
fn a_zero_or_negative_limit_is_one_line_naming_the_flag() {
    for (flag, value) in [
        ("--read-timeout", "0"),
        ("--write-timeout", "-1"),
        ("--max-connections", "0"),
    ] {
        let out = run_to_failure(&["tcp", "127.0.0.1:0", &format!("{flag}={value}")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag}={value} is refused");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag}")),
            "{flag}={value}: {err}"
        );
    }
}

/// Debian's `systemd-socket-activate`: binds like a `.socket` unit, and starts the program
/// with the socket on fd 3 (`LISTEN_FDS=1`) at the first connection.
const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

#[test]
fn socket_activated_echo_serves_the_passed_socket_from_prefork_workers() {
    use std::io::BufRead;
    use std::process::Stdio;
    assert!(
        std::path::Path::new(SOCKET_ACTIVATE).exists(),
        "{SOCKET_ACTIVATE} is missing: scripts/test installs Debian's systemd package"
    );
    // A free port for systemd-socket-activate to bind (it cannot be told to pick one).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut activate = Command::new(SOCKET_ACTIVATE)
        .args(["-l", &listen])
        .arg(echo_binary())
        // ADDRESS is not used when a socket is passed: this one could not even be bound.
        .args(["tcp", "192.0.2.1:1", "--mode", "prefork", "--workers", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(activate.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("Listening on"), "{line:?}");
    // The first connection starts the service; the kernel queues it until a worker takes it.
    python(PY_STREAM, &["tcp", &listen]);
    let mut stdout = std::io::BufReader::new(activate.stdout.take().unwrap());
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), format!("serving on {listen}"));
    python(PY_STREAM, &["tcp", &listen]);
    let pid = nix::unistd::Pid::from_raw(activate.id().try_into().unwrap());
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(util::child::exit_status(&mut activate).code(), Some(0));
}
