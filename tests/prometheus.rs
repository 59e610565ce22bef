//! A real Prometheus (Debian's `prometheus` package, `/usr/bin/prometheus`) scrapes the echo
//! example served by worker processes (`--mode prefork --workers 2 --metrics`), once a
//! second, on loopback; the test asks Prometheus' HTTP API for the totals and compares them
//! with the requests it sent, before and after every worker is killed with SIGKILL: one scrape
//! of the supervisor sees the whole server, and its counters never go backwards
//! (prometheus/client_python #815 is what users of per-process metrics get instead).

mod example;
mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use util::eventually;

/// Where Debian's package puts the server.
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// How long Prometheus may take to start, scrape and answer with the figure awaited: a few
/// scrape intervals of 1 s, with room for a slow machine.
const SCRAPES: Duration = Duration::from_secs(45);

/// The PromQL the docs of `socketserver::metrics` suggest, as written there.
const DOCUMENTED: [&str; 7] = [
    "rate(socketserver_requests_total[1m])",
    "sum by (reason) (rate(socketserver_requests_rejected_total[5m]))",
    "histogram_quantile(0.99, rate(socketserver_request_duration_seconds_bucket[5m]))",
    "socketserver_strategy_busy / (socketserver_strategy_busy + socketserver_strategy_idle)",
    "socketserver_listen_queue",
    "increase(socketserver_worker_restarts_total{reason!~\"stop|reload|max_requests|scaled_down\"}[1h])",
    "socketserver_workers{state=\"ready\"}",
];

/// Prometheus, started for one test, stopped (and reaped) when dropped.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second, on a free loopback port, with its
    /// configuration and its database in a temporary directory.
    fn start(target: SocketAddr) -> Prometheus {
        if !Path::new(PROMETHEUS).is_file() {
            let how = if nix::unistd::geteuid().is_root() {
                "run the tests with `scripts/test`, which installs it"
            } else {
                "install it with `sudo apt-get install prometheus`, or run `scripts/test` as root"
            };
            panic!("{PROMETHEUS} is missing (Debian's prometheus package): {how}");
        }
        let dir = util::temp_dir();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: socketserver\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        // A free port: the system picks one, and it is let go for Prometheus to bind.
        let address = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            address,
            _dir: dir,
        };
        assert!(
            eventually(SCRAPES, || get(address, "/-/ready")
                .is_some_and(|(status, _)| status == 200)),
            "prometheus not ready within {SCRAPES:?}:\n{}",
            prometheus.log()
        );
        prometheus
    }

    /// What Prometheus logged.
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The value of the instant query `promql` (a single number), if it has one now.
    fn query(&self, promql: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = get(self.address, &path)?;
        if status != 200 {
            return None;
        }
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[t,"N"]}]}}
        let value = answer.pointer("/data/result/0/value/1")?.as_str()?;
        value.parse().ok()
    }

    /// How many series the instant query `promql` returns; `None` if Prometheus refuses it.
    fn series(&self, promql: &str) -> Option<usize> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = get(self.address, &path)?;
        let answer: serde_json::Value = serde_json::from_str(&body).ok()?;
        if status != 200 || answer.pointer("/status")?.as_str()? != "success" {
            return None;
        }
        Some(answer.pointer("/data/result")?.as_array()?.len())
    }

    /// Polls `promql` until it equals `expected` (bounded by [`SCRAPES`]); the last value.
    fn until(&self, promql: &str, expected: f64) -> Option<f64> {
        let mut last = None;
        eventually(SCRAPES, || {
            last = self.query(promql);
            last == Some(expected)
        });
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let _ = kill(pid, Signal::SIGTERM);
        let stopped = eventually(Duration::from_secs(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` over HTTP/1.0: the status and the body; `None` if the server is not there.
fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut client = TcpStream::connect(address).ok()?;
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    client
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    client.read_to_string(&mut reply).ok()?;
    let status = reply.get(9..12)?.parse().ok()?;
    let (_, body) = reply.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

/// Percent-encodes a query parameter.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `n` requests to the echo example, each on its own connection: every one must come back.
fn send(address: SocketAddr, n: usize, tag: &str) {
    for i in 0..n {
        let mut client = TcpStream::connect(address).expect("connect to echo");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let line = format!("{tag} {i}\n");
        client.write_all(line.as_bytes()).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, line, "request {i} of {n}");
    }
}

/// The worker processes: the supervisor's children.
fn workers_of(supervisor: u32) -> Vec<i32> {
    let path = format!("/proc/{supervisor}/task/{supervisor}/children");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

#[test]
fn prometheus_counts_every_request_of_every_worker_even_after_they_are_killed() {
    let mut echo = example::Example::start(
        "echo",
        &[
            "tcp",
            "127.0.0.1:0",
            "--mode",
            "prefork",
            "--workers",
            "2",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = echo.metrics_address();
    let address: SocketAddr = echo.address.parse().expect("a socket address");
    let prometheus = Prometheus::start(metrics);
    let total = "sum(socketserver_requests_total)";

    // Requests spread over both workers by the kernel: one scrape of the supervisor sees them
    // all.
    const BEFORE: usize = 200;
    let started = Instant::now();
    send(address, BEFORE, "before");
    let seen = prometheus.until(total, BEFORE as f64);
    eprintln!(
        "sent {BEFORE} requests, Prometheus reports {seen:?} (after {:.1?})",
        started.elapsed()
    );
    assert_eq!(seen, Some(BEFORE as f64), "{}", prometheus.log());
    let up = prometheus.query("up{job=\"socketserver\"}");
    assert_eq!(up, Some(1.0), "the target is scraped");

    // Every worker killed at once, as the OOM killer would: the supervisor keeps what they had
    // reported, and replaces them.
    let killed = workers_of(echo.pid());
    assert_eq!(killed.len(), 2, "two workers: {killed:?}");
    for pid in &killed {
        kill(Pid::from_raw(*pid), Signal::SIGKILL).expect("SIGKILL a worker");
    }
    let restarts = prometheus.until(
        "sum(socketserver_worker_restarts_total{reason=\"killed\"})",
        killed.len() as f64,
    );
    assert_eq!(restarts, Some(killed.len() as f64), "{}", prometheus.log());
    let after_kill = prometheus.query(total);
    eprintln!(
        "killed {} workers with SIGKILL: Prometheus reports {after_kill:?} requests (was {BEFORE})",
        killed.len()
    );
    assert_eq!(after_kill, Some(BEFORE as f64));
    assert!(
        eventually(SCRAPES, || prometheus
            .query("sum(socketserver_workers{state=\"ready\"})")
            == Some(2.0)),
        "the killed workers are replaced"
    );

    // The replacements' requests add to the dead workers' ones.
    const AFTER: usize = 100;
    send(address, AFTER, "after");
    let seen = prometheus.until(total, (BEFORE + AFTER) as f64);
    eprintln!(
        "sent {} requests in all, Prometheus reports {seen:?}",
        BEFORE + AFTER
    );
    assert_eq!(seen, Some((BEFORE + AFTER) as f64));
    // Prometheus never saw the counters go backwards.
    let resets = prometheus.query("sum(resets(socketserver_requests_total[10m]))");
    assert_eq!(resets, Some(0.0), "counter resets seen by Prometheus");
    let histogram = prometheus.query("sum(socketserver_request_duration_seconds_count)");
    assert_eq!(histogram, Some((BEFORE + AFTER) as f64));
    // The PromQL of the metrics module's docs: each one is valid, and has an answer.
    for promql in DOCUMENTED {
        let mut series = None;
        let answered = eventually(SCRAPES, || {
            series = prometheus.series(promql);
            series.is_some_and(|n| n > 0)
        });
        eprintln!("{promql}: {series:?} series");
        assert!(answered, "{promql}: {series:?}");
    }

    assert_eq!(echo.stop(Signal::SIGTERM).code(), Some(0));
    drop(prometheus);
}
