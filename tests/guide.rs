//! The guide's examples (`examples/guide/`, see `socketserver::guide`), run as a reader would:
//! the binary started, its `serving on` line read, real Python clients talking to it, and a
//! signal to stop it. Every client runs under a deadline.

mod example;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use example::{run, Example, CLIENT_DEADLINE};
use nix::sys::signal::Signal;
use std::process::Command;

/// Runs a Python client with `args`; it must exit 0 and print `ok` last. What it printed
/// before (its figures) is passed on to the test's output.
fn python(script: &str, args: &[&str]) {
    let out = run(
        Command::new("python3").arg("-c").arg(script).args(args),
        CLIENT_DEADLINE,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "python client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for line in stdout.lines().filter(|l| *l != "ok") {
        eprintln!("{line}");
    }
}

/// Connects a plain client, checks the server answers `probe` with `expect`, and leaves the
/// connection open and silent: the server has surely accepted it.
fn idle_client(address: &str, probe: &[u8], expect: &[u8]) -> TcpStream {
    let mut client = TcpStream::connect(address).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    client.write_all(probe).expect("probe");
    let mut reply = vec![0; expect.len()];
    client.read_exact(&mut reply).expect("probe reply");
    assert_eq!(reply, expect);
    client
}

/// Sends `signal`, and how long the example took to exit; it must exit 0.
fn stop_timed(server: Example, signal: Signal) -> Duration {
    let start = Instant::now();
    let status = server.stop(signal);
    let took = start.elapsed();
    assert!(status.success(), "the example exited with {status}");
    took
}

/// The idle client sees end-of-file (or a reset) once the server has let it go.
fn assert_let_go(mut client: TcpStream) {
    let mut rest = Vec::new();
    match client.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the idle client was not let go: {e}"),
    }
}

#[test]
fn sockets_echoes_and_lets_idle_clients_go() {
    let server = Example::start(
        "guide-sockets",
        &[
            "127.0.0.1:0",
            "--read-timeout",
            "0.5",
            "--max-connections",
            "2",
        ],
    );
    python(
        r#"
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
address = (host, int(port))
with socket.create_connection(address, timeout=10) as s:
    s.sendall(b"hello")
    assert s.recv(5) == b"hello"
    # Silent now: the server lets us go after its 0.5 s read timeout.
    start = time.monotonic()
    assert s.recv(1) == b""
    idle = time.monotonic() - start
print(f"idle client let go after {idle:.2f} s (bound 0.5 s + 3 s slack)")
assert 0.4 <= idle < 3.5, idle
# The cap is 2: two silent clients fill it, a third is served once one of them is let go.
silent = [socket.create_connection(address, timeout=10) for _ in range(2)]
for s in silent:
    s.sendall(b"x"); assert s.recv(1) == b"x"
start = time.monotonic()
with socket.create_connection(address, timeout=10) as s:
    s.sendall(b"third")
    assert s.recv(5) == b"third"
waited = time.monotonic() - start
print(f"third client served after {waited:.2f} s (cap 2, read timeout 0.5 s)")
assert 0.3 <= waited < 3.5, waited
print("ok")
"#,
        &[&server.address],
    );
    // Ctrl-C ends this hand-written server by the default action.
    let status = server.stop(Signal::SIGINT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(Signal::SIGINT as i32)
    );
}

#[test]
fn framing_answers_messages_however_they_are_split() {
    let server = Example::start("guide-framing", &["127.0.0.1:0", "--max-message", "100"]);
    python(
        r#"
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
address = (host, int(port))

def frame(payload):
    return struct.pack("!I", len(payload)) + payload

def read_message(f):
    n, = struct.unpack("!I", f.read(4))
    return f.read(n).decode()

with socket.create_connection(address, timeout=10) as s:
    f = s.makefile("rb")
    # Two messages in one send, then one sent a byte at a time.
    s.sendall(frame("héllo".encode()) + frame(b"world"))
    assert read_message(f) == "HÉLLO"
    assert read_message(f) == "WORLD"
    for byte in frame(b"slowly"):
        s.sendall(bytes([byte]))
    assert read_message(f) == "SLOWLY"
    # Over the limit: an error, then the connection closes.
    s.sendall(struct.pack("!I", 101))
    assert read_message(f) == "error: 101 bytes is over the limit of 100"
    assert f.read() == b""

with socket.create_connection(address, timeout=10) as s:
    f = s.makefile("rb")
    s.sendall(frame(b"\xff\xfe"))
    assert read_message(f) == "error: the message is not UTF-8"
    assert f.read() == b""
print("ok")
"#,
        &[&server.address],
    );
    let took = stop_timed(server, Signal::SIGTERM);
    eprintln!("framing stopped in {took:?} (bound 5 s)");
    assert!(took < Duration::from_secs(5));
}

#[test]
fn upper_serves_python_docs_client_and_stops_at_once_with_an_idle_client() {
    let server = Example::start("guide-upper", &["127.0.0.1:0", "--max-line", "64"]);
    python(
        r#"
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
address = (host, int(port))
# The client of Python's socketserver documentation.
with socket.create_connection(address, timeout=10) as sock:
    sock.sendall(b"hello world\n")
    assert sock.makefile("rb").readline() == b"HELLO WORLD\n"
# Every line of a connection, and a line over the limit.
with socket.create_connection(address, timeout=10) as sock:
    f = sock.makefile("rb")
    sock.sendall(b"one\ntwo\n")
    assert f.readline() == b"ONE\n" and f.readline() == b"TWO\n"
    sock.sendall(b"x" * 100 + b"\n")
    assert f.readline() == b"error: line too long\n"
    assert f.read() == b""
print("ok")
"#,
        &[&server.address],
    );
    // A client that says one line and then nothing: Ctrl-C must not wait for it.
    let idle = idle_client(&server.address, b"still here\n", b"STILL HERE\n");
    let took = stop_timed(server, Signal::SIGINT);
    eprintln!("upper stopped in {took:?} with an idle client (bound 1 s; grace period 2 s)");
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    assert_let_go(idle);
}

#[test]
fn chat_broadcasts_and_drops_a_client_that_does_not_read() {
    let server = Example::start("guide-chat", &["127.0.0.1:0", "--queue", "16"]);
    python(
        r#"
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
address = (host, int(port))

def join(rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(address)
    f = s.makefile("rb")
    welcome = f.readline()
    assert welcome.startswith(b"welcome, you are "), welcome
    return s, f, welcome.split()[-1].decode()

# A joins and never reads again.
slow, slow_file, slow_id = join(rcvbuf=4096)
b, bf, b_id = join()
c, cf, c_id = join()
b.sendall(b"hi all\n")
assert bf.readline() == f"{b_id}: hi all\n".encode()
assert cf.readline() == f"{b_id}: hi all\n".encode()

# B talks, line by line, waiting for each of its lines to come back; C listens.
# A's socket buffers and its queue of 16 fill up, and A is dropped; B and C never wait on it.
line = b"x" * 1000 + b"\n"
count = 5000
worst = 0.0
start = time.monotonic()
for i in range(count):
    sent = time.monotonic()
    b.sendall(line)
    assert bf.readline() == f"{b_id}: ".encode() + line
    worst = max(worst, time.monotonic() - sent)
    assert cf.readline() == f"{b_id}: ".encode() + line
total = time.monotonic() - start
print(f"{count} lines of 1 KB in {total:.2f} s; worst round trip {worst*1000:.0f} ms "
      f"(bound 2000 ms) with a client that does not read")
assert worst < 2.0, worst

# A was dropped: after what its buffers held, it reads end-of-file (or a reset).
got = 0
try:
    while True:
        chunk = slow.recv(65536)
        if not chunk:
            break
        got += len(chunk)
except ConnectionResetError:
    pass
print(f"the slow client got {got} of {count * len(line)} bytes, then was dropped")
assert got < count * len(line)
print("ok")
"#,
        &[&server.address],
    );
    let idle = idle_client(&server.address, b"", b"welcome, you are 4\n");
    let took = stop_timed(server, Signal::SIGTERM);
    eprintln!("chat stopped in {took:?} with an idle client (bound 1 s; grace period 2 s)");
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    assert_let_go(idle);
}

#[test]
fn notes_serves_requests_and_stops_at_once_with_a_keep_alive_client() {
    let server = Example::start(
        "guide-notes",
        &["127.0.0.1:0", "--max-notes", "3", "--max-body", "256"],
    );
    python(
        r#"
import requests, sys
base = "http://" + sys.argv[1]
with requests.Session() as s:            # one keep-alive connection for all of it
    r = s.post(f"{base}/notes", json={"text": "buy milk"}, timeout=10)
    assert r.status_code == 201, r.status_code
    assert r.json() == {"id": 1, "text": "buy milk"}
    location = r.headers["Location"]
    assert location == "/notes/1"
    assert s.get(base + location, timeout=10).json() == {"id": 1, "text": "buy milk"}
    assert s.get(f"{base}/notes", timeout=10).json() == [1]
    assert s.get(f"{base}/notes/99", timeout=10).status_code == 404
    r = s.patch(f"{base}/notes", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, POST"
    assert s.post(f"{base}/notes", data=b"not json", timeout=10).status_code == 400
    assert s.post(f"{base}/notes", json={"txt": 1}, timeout=10).status_code == 400
    # The limits: a body over 256 bytes, and a fourth note.
    r = s.post(f"{base}/notes", json={"text": "x" * 300}, timeout=10)
    print(f"a 300-byte note: {r.status_code} (max body 256 bytes)")
    assert r.status_code == 413, r.status_code
    for text in ["two", "three"]:
        assert s.post(f"{base}/notes", json={"text": text}, timeout=10).status_code == 201
    r = s.post(f"{base}/notes", json={"text": "four"}, timeout=10)
    assert r.status_code == 503 and "full" in r.json()["error"], r.text
    assert s.delete(base + location, timeout=10).status_code == 204
    assert s.delete(base + location, timeout=10).status_code == 404
    assert s.get(f"{base}/notes", timeout=10).json() == [2, 3]
print("ok")
"#,
        &[&server.address],
    );
    // A keep-alive client that made one request and stays: SIGTERM must not wait for it.
    let mut client = TcpStream::connect(&server.address).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    client
        .write_all(b"GET /notes HTTP/1.1\r\nHost: guide\r\n\r\n")
        .expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        client.read_exact(&mut byte).expect("answer head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("UTF-8 head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("connection: close"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    let mut body = vec![0; length];
    client.read_exact(&mut body).expect("answer body");
    assert_eq!(body, b"[2,3]");
    let took = stop_timed(server, Signal::SIGTERM);
    eprintln!(
        "notes stopped in {took:?} with an idle keep-alive client (bound 1 s; grace period 2 s)"
    );
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    assert_let_go(client);
}
