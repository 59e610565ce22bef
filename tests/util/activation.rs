//! Shared by tests/systemd.rs and tests/abstract_sockets.rs (included with `#[path]`): echo
//! handlers, a Python client runner, and the kernel's list of Unix sockets.
#![allow(dead_code)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::Command;

use socketserver::{
    DatagramRequest, DatagramRequestHandler, HandleResult, Handler, StreamRequest,
    StreamRequestHandler,
};

/// Echoes lines until the client closes.
#[derive(Handler)]
pub struct EchoLines;

impl StreamRequestHandler for EchoLines {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut line = String::new();
        while request.rfile.read_line(&mut line)? > 0 {
            request.wfile.write_all(line.as_bytes())?;
            line.clear();
        }
        Ok(())
    }
}

/// Echoes each datagram.
#[derive(Handler)]
pub struct EchoDatagrams;

impl DatagramRequestHandler for EchoDatagrams {
    fn handle(&mut self, request: &mut DatagramRequest<'_>) -> HandleResult {
        let packet = request.packet().to_vec();
        request.wfile.extend_from_slice(&packet);
        Ok(())
    }
}

/// The venv `scripts/test` makes (`<target dir>/test-venv`), found from this test binary's
/// path, else `python3` from the `PATH`.
fn python3() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .take(4)
                .map(|dir| dir.join("test-venv").join("bin").join("python3"))
                .find(|python| python.is_file())
        })
        .unwrap_or_else(|| "python3".into())
}

/// Runs a Python client (every socket in it sets a timeout, so it cannot hang) with `args`;
/// it must exit 0. Returns what it printed.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python3())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3 (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the Python client failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Python: send `argv[2]` and a newline to the stream socket `argv[1]` (a leading `@` is the
/// abstract namespace, a `host:port` is TCP), and print the whole reply.
pub const PY_STREAM_ECHO: &str = r#"
import socket, sys
where, text = sys.argv[1], sys.argv[2]
if where.startswith("@"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    target = "\0" + where[1:]
elif where.startswith("/"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    target = where
else:
    host, port = where.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    target = (host, int(port))
s.settimeout(10)
s.connect(target)
s.sendall(text.encode() + b"\n")
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
print(reply.decode(), end="")
"#;

/// The names of the abstract Unix sockets bound on this machine now (`@name`, from
/// `/proc/net/unix`, whose last column is the address).
pub fn abstract_names() -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/unix").expect("read /proc/net/unix");
    table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(7))
        .filter(|name| name.starts_with('@'))
        .map(str::to_owned)
        .collect()
}

/// A name no other test (or test run) uses.
pub fn unique_name(what: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "socketserver-test-{}-{what}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
