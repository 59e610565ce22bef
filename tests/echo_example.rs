//! The echo example as a user runs it: a real process, Python's `socket` module as the client,
//! signals to stop it, and its one-line errors.

mod example;
mod util;

use std::path::PathBuf;
use std::process::{Command, Output};

use example::Example;
use nix::sys::signal::Signal;
use util::temp_dir;

/// The example binary, built fresh: `cargo test --test echo_example` alone would not rebuild it.
fn echo_binary() -> PathBuf {
    example::binary("echo")
}

/// Runs a Python client script; it must print "ok" and nothing else.
fn python(script: &str, args: &[&str]) {
    let out = example::run(
        Command::new("python3").arg("-c").arg(script).args(args),
        example::CLIENT_DEADLINE,
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "python client failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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
    for mode in ["sync", "threading", "forking", "pool"] {
        let mut args = vec!["tcp", "127.0.0.1:0", "--mode", mode];
        if matches!(mode, "forking" | "pool") {
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
