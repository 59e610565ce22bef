//! The prefork supervisor under systemd's protocols, in real processes (see tests/prefork.rs
//! for how the children work): the `sd_notify` datagrams it sends to a `NOTIFY_SOCKET` of the
//! test's own, and the deploy units of `examples/deploy/` run as written.

#[path = "example/mod.rs"]
mod example;
#[path = "util/prefork.rs"]
mod harness;
#[path = "util/load.rs"]
mod load;
mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use socketserver::prefork::Prefork;

/// The datagrams sent to the test's `NOTIFY_SOCKET`, one message each.
struct Notes {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notes {
    fn bind(path: &std::path::Path) -> Notes {
        let socket = UnixDatagram::bind(path).expect("bind the notify socket");
        Notes {
            socket,
            seen: Vec::new(),
        }
    }

    /// Reads datagrams until one satisfies `what`; returns it.
    fn until(&mut self, label: &str, what: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {label} datagram within {STEP:?}; seen {:?}",
                self.seen
            );
            self.socket
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let mut buf = [0u8; 4096];
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            self.seen.push(message.clone());
            if what(&message) {
                return message;
            }
        }
    }
}

#[test]
fn sd_notify_says_ready_status_reloading_watchdog_and_stopping() {
    const NAME: &str = "sd_notify_says_ready_status_reloading_watchdog_and_stopping";
    if is_child(NAME) {
        supervise(Prefork::new(threading_server()).workers(2));
        return;
    }
    let dir = util::temp_dir();
    let path = dir.path().join("notify.sock");
    let mut notes = Notes::bind(&path);
    let mut supervisor = Supervisor::start_with(
        NAME,
        &[
            ("NOTIFY_SOCKET", path.to_str().expect("a UTF-8 path")),
            // WATCHDOG=1 every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );

    // READY=1 once a worker is ready, not before: the first STATUS line has none ready.
    notes.until("READY=1", |m| m == "READY=1\n");
    let before: Vec<&String> = notes
        .seen
        .iter()
        .filter(|m| m.starts_with("STATUS="))
        .collect();
    assert!(
        before
            .first()
            .is_some_and(|m| m.starts_with("STATUS=0 of 2 workers ready")),
        "the status before READY=1: {before:?}"
    );
    assert_eq!(notes.seen.iter().filter(|m| *m == "READY=1\n").count(), 1);
    supervisor.settled(2);
    notes.until("STATUS with 2 ready", |m| {
        m.starts_with("STATUS=2 of 2 workers ready")
    });
    assert_eq!(
        harness::echo(supervisor.address, "counted"),
        "counted\n",
        "a request"
    );

    // The watchdog, from the supervisor's loop: 5 in a row, each within 1 s of the last
    // (every 100 ms is asked).
    let mut last = Instant::now();
    for _ in 0..5 {
        notes.until("WATCHDOG=1", |m| m == "WATCHDOG=1\n");
        let gap = last.elapsed();
        eprintln!("WATCHDOG=1 after {gap:?} (asked every 100ms, bound 1s)");
        assert!(gap < Duration::from_secs(1), "{gap:?}");
        last = Instant::now();
    }

    // SIGHUP: RELOADING=1 (with the clock systemd's notify-reload wants), then READY=1 once
    // the reload is over.
    supervisor.signal(Signal::SIGHUP);
    let reloading = notes.until("RELOADING=1", |m| m.starts_with("RELOADING=1\n"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    notes.until("READY=1 after the reload", |m| m == "READY=1\n");
    supervisor.log("reload complete");
    notes.until("the status after the reload", |m| {
        m.starts_with("STATUS=2 of 2 workers ready") && !m.contains("reloading")
    });

    // SIGTERM: STOPPING=1 when the drain starts.
    let report = supervisor.stop();
    assert!(report.contains("crashed=0"), "{report}");
    notes.until("STOPPING=1", |m| m == "STOPPING=1\n");
    eprintln!("sd_notify datagrams: {:?}", notes.seen);
}

/// The value of the first `key=` line of a unit file.
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line in {unit}"))
        .to_owned()
}

/// Runs the `.service`'s `ExecStart=` line as written under `systemd-socket-activate`, on the
/// `.socket`'s host with a free port and the unit's environment; checks `READY=1`, a request
/// (`ask`), and the graceful stop.
fn run_unit(name: &str, ask: impl Fn(&str) -> String, expect: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/deploy");
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let (socket, service) = (
        read(&format!("{name}.socket")),
        read(&format!("{name}.service")),
    );
    // What the units promise.
    assert_eq!(unit_value(&service, "Type"), "notify");
    assert_eq!(
        unit_value(&service, "ExecReload"),
        "/bin/kill -HUP $MAINPID"
    );
    assert_eq!(unit_value(&service, "KillSignal"), "SIGTERM");
    let stop: u64 = unit_value(&service, "TimeoutStopSec")
        .parse()
        .expect("seconds");
    assert!(stop > socketserver::prefork::DEFAULT_TIMEOUT.as_secs() + 1);
    let listen = unit_value(&socket, "ListenStream");
    let host = listen.rsplit_once(':').expect("HOST:PORT").0.to_owned();
    let exec = unit_value(&service, "ExecStart");
    let mut words = exec.split_whitespace();
    let program = words.next().expect("a program");
    let example = program
        .rsplit('/')
        .next()
        .and_then(|b| b.strip_prefix("socketserver-"))
        .expect("/usr/local/bin/socketserver-NAME");
    let binary = example::binary(example);
    let args: Vec<&str> = words.collect();
    let environment = unit_value(&service, "Environment");

    let notify_path = util::temp_dir();
    let notify = notify_path.path().join("notify.sock");
    let mut notes = Notes::bind(&notify);
    let port = std::net::TcpListener::bind(format!("{host}:0"))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address = format!("{host}:{port}");
    let mut child = Command::new("/usr/bin/systemd-socket-activate")
        .args(["-l", &address, "-E", &environment])
        .arg("-E")
        .arg(format!("NOTIFY_SOCKET={}", notify.display()))
        .arg(&binary)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (Debian's systemd package)");
    let stdout = util::child::lines_of(child.stdout.take().expect("stdout"));
    // systemd-socket-activate starts the program at the first connection, which it serves.
    let reply = util::eventually(STEP, || TcpStream::connect(&address).is_ok());
    assert!(reply, "nothing listens on {address}");
    let first = ask(&address);
    assert!(first.starts_with(expect), "{name}: {first:?}");
    util::child::line_after(&stdout, "serving on ");
    notes.until("READY=1", |m| m == "READY=1\n");
    notes.until("STATUS=", |m| m.starts_with("STATUS=2 of 2 workers ready"));
    assert!(ask(&address).starts_with(expect));
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    notes.until("STOPPING=1", |m| m == "STOPPING=1\n");
    let status = util::child::exit_status(&mut child);
    assert!(status.success(), "{name}: {status:?}");
    eprintln!("{name}.service ran as written: {binary:?} {args:?} on {address}");
}

#[test]
fn the_deploy_units_run_as_written_under_systemd_socket_activate() {
    run_unit(
        "echo",
        |address| {
            let mut client = TcpStream::connect(address).expect("connect");
            client.set_read_timeout(Some(STEP)).expect("timeout");
            client.write_all(b"hello units\n").expect("send");
            client.shutdown(Shutdown::Write).expect("half-close");
            let mut reply = String::new();
            client.read_to_string(&mut reply).expect("the echo");
            reply
        },
        "hello units\n",
    );
    run_unit(
        "rest",
        |address| {
            let mut client = TcpStream::connect(address).expect("connect");
            client.set_read_timeout(Some(STEP)).expect("timeout");
            client
                .write_all(b"GET /items HTTP/1.1\r\nHost: units\r\nConnection: close\r\n\r\n")
                .expect("send");
            let mut reply = String::new();
            client.read_to_string(&mut reply).expect("the reply");
            reply
        },
        "HTTP/1.1 200",
    );
}
