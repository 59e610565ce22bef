//! The prefork supervisor under systemd's protocols, in real processes (see tests/prefork.rs
//! for how the children work): the `sd_notify` datagrams it sends to a `NOTIFY_SOCKET` of the
//! test's own, and the deploy units of `examples/deploy/` run as written.

#[path = "util/prefork.rs"]
mod harness;
#[path = "util/load.rs"]
mod load;
mod util;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use harness::*;
use nix::sys::signal::Signal;
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
