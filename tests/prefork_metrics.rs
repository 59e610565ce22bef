//! The process model's metrics listener ([`Prefork::metrics`]), in real processes: a
//! supervisor in a child process (this test binary, re-run with `PREFORK_CHILD`), its workers
//! forked from it, scraped over loopback. `/readyz` through the supervisor's life, and totals
//! that keep the requests of recycled and killed workers.

mod example;
#[path = "util/prefork.rs"]
mod harness;
#[path = "util/load.rs"]
mod load;
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crossbeam_channel::Receiver;
use harness::{children_of, echo, is_child, is_dead, say, supervise, threading_server, STEP};
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use socketserver::prefork::Prefork;
use socketserver::transport::Transport;
use socketserver::{Handler, Strategy};
use util::child::{exit_status, lines_of};
use util::eventually;

/// `GET path` on the metrics listener: (status, body).
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut client = TcpStream::connect(address).expect("connect to the metrics listener");
    client.set_read_timeout(Some(STEP)).unwrap();
    client
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    let status = reply
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    (status, body)
}

/// `GET path`: the body of a 200 answer; `None` if the connection failed or was reset.
fn try_get(address: SocketAddr, path: &str) -> Option<String> {
    let mut client = TcpStream::connect(address).ok()?;
    client.set_read_timeout(Some(STEP)).ok()?;
    client
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    client.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200 ").then(|| body.to_owned())
}

/// The value of `series` (`name{labels}` as written) in the exposition `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// In the child: `prefork` with a metrics listener, printing `metrics on ADDRESS` first.
fn supervise_with_metrics<T: Transport, H: Handler, S: Strategy>(prefork: Prefork<T, H, S>) {
    let prefork = prefork.metrics("127.0.0.1:0").expect("bind the metrics");
    let address = prefork.metrics_address().expect("the metrics address");
    say(&format!("metrics on {address}"));
    supervise(prefork);
}

/// SIGKILLs a process this test started indirectly (the new program of an upgrade), so that
/// a failed test leaves nothing running.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !is_dead(self.0) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}

/// The child supervisor, with its stdout lines.
struct Started {
    child: Child,
    lines: Receiver<String>,
}

impl Started {
    fn new(name: &str, env: &[(&str, &str)]) -> Started {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("PREFORK_CHILD", name)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child");
        let lines = lines_of(child.stdout.take().expect("stdout"));
        Started { child, lines }
    }

    /// Waits for a line with `prefix`; what follows it.
    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let line = self
                .lines
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no {prefix:?} line within {STEP:?}"));
            if let Some((_, rest)) = line.split_once(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn readyz_waits_for_the_first_worker_and_fails_as_soon_as_the_supervisor_drains() {
    const NAME: &str =
        "readyz_waits_for_the_first_worker_and_fails_as_soon_as_the_supervisor_drains";
    if is_child(NAME) {
        // Each worker's set-up waits until the test opens the gate (a FIFO) for writing.
        let gate = std::env::var("PREFORK_GATE").expect("PREFORK_GATE");
        let prefork = Prefork::new(threading_server())
            .workers(2)
            .on_worker_start(move |_| {
                std::fs::File::open(&gate)?;
                Ok(())
            });
        supervise_with_metrics(prefork);
        return;
    }
    let dir = util::temp_dir();
    let gate = dir.path().join("gate");
    nix::unistd::mkfifo(&gate, Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
    let gate_path = gate.to_str().expect("a UTF-8 path");
    let child = Started::new(NAME, &[("PREFORK_GATE", gate_path)]);
    let metrics: SocketAddr = child.line("metrics on ").parse().expect("an address");

    // Forked, not ready: the supervisor answers, and says so.
    assert!(eventually(STEP, || get(metrics, "/metrics")
        .1
        .contains("socketserver_workers{state=\"starting\"} 2\n")));
    assert_eq!(get(metrics, "/readyz"), (503, "not serving\n".into()));
    assert_eq!(get(metrics, "/healthz"), (200, "ok\n".into()));
    let (_, text) = get(metrics, "/metrics");
    assert_eq!(value(&text, "socketserver_ready"), Some(0.0), "{text}");

    // The gate opens: both workers finish their set-up and serve.
    // Opening a FIFO without blocking fails (ENXIO) until a reader has it open.
    let mut writer: Option<std::fs::File> = None;
    assert!(
        eventually(STEP, || {
            writer = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(OFlag::O_NONBLOCK.bits())
                .open(&gate)
                .ok();
            writer.is_some()
        }),
        "a worker waits at the gate"
    );
    let address: SocketAddr = child.line("serving on ").parse().expect("an address");
    assert!(eventually(STEP, || get(metrics, "/metrics")
        .1
        .contains("socketserver_workers{state=\"ready\"} 2\n")));
    drop(writer);
    assert_eq!(get(metrics, "/readyz"), (200, "ready\n".into()));

    // A client in the middle of a request holds its worker in the drain.
    let mut client = TcpStream::connect(address).expect("connect");
    client.set_read_timeout(Some(STEP)).unwrap();
    client.write_all(b"half a ").unwrap();
    assert!(eventually(STEP, || value(
        &get(metrics, "/metrics").1,
        "socketserver_requests_active"
    ) == Some(1.0)));
    kill(child.pid(), Signal::SIGTERM).expect("SIGTERM the supervisor");
    let started = Instant::now();
    assert!(
        eventually(STEP, || get(metrics, "/readyz")
            == (503, "draining\n".into())),
        "/readyz fails once the supervisor drains"
    );
    eprintln!("/readyz failed {:?} after SIGTERM", started.elapsed());
    let (_, text) = get(metrics, "/metrics");
    assert_eq!(value(&text, "socketserver_ready"), Some(0.0), "{text}");
    assert!(
        value(&text, "socketserver_workers{state=\"draining\"}").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    // The request in flight still completes.
    client.write_all(b"line\n").unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "half a line\n");
    let report = child.line("report ");
    assert!(report.contains("crashed=0"), "{report}");
    let mut child = child;
    assert!(exit_status(&mut child.child).success());
}

#[test]
fn totals_keep_the_requests_of_recycled_and_killed_workers() {
    const NAME: &str = "totals_keep_the_requests_of_recycled_and_killed_workers";
    if is_child(NAME) {
        supervise_with_metrics(
            Prefork::new(threading_server())
                .workers(2)
                .max_requests(Some(20)),
        );
        return;
    }
    let child = Started::new(NAME, &[]);
    let metrics: SocketAddr = child.line("metrics on ").parse().expect("an address");
    let address: SocketAddr = child.line("serving on ").parse().expect("an address");
    let succeeded = "socketserver_requests_total{outcome=\"succeeded\"}";
    let scrape = || get(metrics, "/metrics").1;

    // Workers recycled at 20 requests each (how often depends on how the kernel spreads the
    // connections).
    const FIRST: usize = 100;
    for i in 0..FIRST {
        assert_eq!(echo(address, &format!("r{i}")), format!("r{i}\n"));
    }
    let mut text = String::new();
    let recycles = "socketserver_worker_restarts_total{reason=\"max_requests\"}";
    let counted = eventually(STEP, || {
        text = scrape();
        value(&text, succeeded) == Some(FIRST as f64)
            && value(&text, recycles).is_some_and(|n| n >= 1.0)
    });
    let recycled = value(&text, recycles);
    eprintln!(
        "sent {FIRST}, the supervisor counts {:?} ({recycled:?} workers recycled)",
        value(&text, succeeded)
    );
    assert!(counted, "{text}");
    assert!(recycled.is_some_and(|n| n >= 1.0), "{text}");
    assert_eq!(
        value(&text, "socketserver_request_duration_seconds_count"),
        Some(FIRST as f64)
    );

    // Every live worker killed once none is starting or draining (a recycled worker killed
    // while it drains counts as recycled): what they reported stays.
    let settled = eventually(STEP, || {
        text = scrape();
        value(&text, "socketserver_workers{state=\"ready\"}") == Some(2.0)
            && value(&text, "socketserver_workers{state=\"starting\"}") == Some(0.0)
            && value(&text, "socketserver_workers{state=\"draining\"}") == Some(0.0)
    });
    assert!(settled, "{text}");
    let workers = children_of(child.pid());
    assert!(!workers.is_empty());
    for pid in &workers {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let killed = "socketserver_worker_restarts_total{reason=\"killed\"}";
    assert!(
        eventually(STEP, || {
            text = scrape();
            value(&text, killed) == Some(workers.len() as f64)
        }),
        "{text}"
    );
    eprintln!(
        "{} workers killed: the supervisor counts {:?}",
        workers.len(),
        value(&text, succeeded)
    );
    assert_eq!(value(&text, succeeded), Some(FIRST as f64), "{text}");

    const MORE: usize = 10;
    for i in 0..MORE {
        assert_eq!(echo(address, &format!("m{i}")), format!("m{i}\n"));
    }
    assert!(
        eventually(STEP, || {
            text = scrape();
            value(&text, succeeded) == Some((FIRST + MORE) as f64)
        }),
        "{text}"
    );
    let report = {
        kill(child.pid(), Signal::SIGTERM).expect("SIGTERM");
        child.line("report ")
    };
    eprintln!("{report}");
}

#[test]
fn after_an_upgrade_only_the_new_program_answers_on_the_metrics_address() {
    // A fixed port, as a Prometheus configuration names it: the system picks a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let metrics_flag = format!("127.0.0.1:{port}");
    let mut old = example::Example::start(
        "echo",
        &[
            "tcp",
            "127.0.0.1:0",
            "--mode",
            "prefork",
            "--workers",
            "2",
            "--metrics",
            &metrics_flag,
        ],
    );
    assert_eq!(old.next_line(), format!("metrics on {metrics_flag}"));
    let metrics: SocketAddr = metrics_flag.parse().expect("an address");
    let address: SocketAddr = old.address.parse().expect("an address");
    let succeeded = "socketserver_requests_total{outcome=\"succeeded\"}";
    const SENT: usize = 5;
    for i in 0..SENT {
        // The echo example echoes until the client's end of stream.
        let mut client = TcpStream::connect(address).expect("connect");
        client.set_read_timeout(Some(STEP)).unwrap();
        client.write_all(format!("u{i}").as_bytes()).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, format!("u{i}"));
    }
    assert!(eventually(STEP, || value(
        &get(metrics, "/metrics").1,
        succeeded
    ) == Some(SENT as f64)));

    // A request in flight keeps the old supervisor draining after the hand-over.
    let mut held = TcpStream::connect(address).expect("connect");
    held.set_read_timeout(Some(STEP)).unwrap();
    held.write_all(b"held").unwrap();
    let old_pid = Pid::from_raw(i32::try_from(old.pid()).expect("pid"));
    assert!(eventually(STEP, || value(
        &get(metrics, "/metrics").1,
        "socketserver_requests_active"
    ) == Some(1.0)));
    // Scrapers that keep scraping through the hand-over, as a Prometheus with a short interval
    // (and a load balancer's health checks) would: none may be reset.
    let stop_scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scrapers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop_scraping.clone();
            std::thread::spawn(move || {
                let (mut scrapes, mut failed) = (0u32, 0u32);
                // Bounded: the hand-over takes a fraction of a second.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && scrapes < 50_000 {
                    scrapes += 1;
                    failed += u32::from(try_get(metrics, "/metrics").is_none());
                }
                (scrapes, failed)
            })
        })
        .collect();
    old.signal(Signal::SIGUSR2);
    // The new program (the old one's child until it exits) prints its own two lines.
    assert!(old.next_line().starts_with("serving on "));
    assert_eq!(old.next_line(), format!("metrics on {metrics_flag}"));
    let new_pid = children_of(old_pid)
        .into_iter()
        .find(|pid| !children_of(Pid::from_raw(*pid)).is_empty())
        .expect("the new supervisor, with workers of its own");
    // Not this test's child: stopped by the guard if the test fails before it stops it.
    let _new_guard = KillOnDrop(new_pid);

    // The old program handed its metrics socket over with the listening one: the new one takes
    // scrapes from it once ready, the old one lets go, and no scrape queued meanwhile is reset;
    // every scrape then reaches the new program, which counts from zero.
    let (mut streak, mut scrapes, mut failed) = (0, 0u32, 0u32);
    let only_new = eventually(STEP, || {
        scrapes += 1;
        let Some(text) = try_get(metrics, "/metrics") else {
            failed += 1;
            streak = 0;
            return false;
        };
        streak = if value(&text, succeeded) == Some(0.0) {
            streak + 1
        } else {
            0
        };
        streak == 20
    });
    let old_alive = !is_dead(old_pid.as_raw());
    stop_scraping.store(true, std::sync::atomic::Ordering::Relaxed);
    for scraper in scrapers {
        let (more, more_failed) = scraper.join().expect("a scraper thread");
        scrapes += more;
        failed += more_failed;
    }
    eprintln!(
        "after the hand-over: {streak} scrapes in a row from the new program, old supervisor {}; \
         {failed} of {scrapes} scrapes failed (bound 0)",
        if old_alive { "still draining" } else { "gone" }
    );
    assert!(only_new, "scrapes still reach the old supervisor");
    assert!(
        old_alive,
        "the streak was seen while the old supervisor drained"
    );
    assert_eq!(failed, 0, "scrapes reset while the listeners changed hands");

    // The held request completes on its old worker; the old program then exits.
    held.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    held.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "held");
    assert!(
        eventually(STEP, || is_dead(old_pid.as_raw())),
        "the old supervisor exits"
    );
    // The new program shares the example's stdout: stopped first, so that reading the old
    // one's last output ends.
    kill(Pid::from_raw(new_pid), Signal::SIGTERM).expect("SIGTERM the new supervisor");
    assert!(
        eventually(STEP, || is_dead(new_pid)),
        "the new supervisor stops"
    );
    assert_eq!(old.exit_status().code(), Some(0));
}
