//! Many persistent connections (issue 17): 10,000 echo connections at once against ours
//! (`echo --mode threading`), the tokio peer and the std peer, with the load generator in a
//! process of its own.
//!
//! ```text
//! ssbench many --connections 10000 --rounds 3 --duration 5
//! ```
//!
//! Each round starts every server afresh, one after the other (A B C A B C ...), and runs one
//! load against it: the generator (this program again, `many --generate ADDRESS`) opens every
//! connection before the clock starts, checks each with one round trip, then every connection
//! does request/response in turn (one 64-byte request outstanding per connection) for
//! `--duration` seconds. A task per connection on a tokio runtime of a few threads drives them
//! all (non-blocking sockets, epoll): 10,000 client threads would take the 2 cores from the
//! server, and `poll(2)` over thousands of sockets costs more per echo than the server does.
//! The generator runs at `nice -n -10`, so a server with thousands of runnable threads cannot
//! starve it.
//! Meanwhile the harness reads the server's `VmRSS` and `Threads` from `/proc/PID/status`
//! every 100 ms and keeps the peak.
//!
//! Every load is bounded: connecting (5 s a connection), the check (30 s), the window (at most
//! 60 s) and the drain after it (5 s); the harness kills a generator that outlives all of them.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;

use crate::compare::{self, ServerSpec};
use crate::memory::status_field;
use crate::BoxError;

/// A server of the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Server {
    /// Ours: the echo example, `--mode threading` (a thread per connection).
    Ours,
    /// The tokio peer: a task per connection.
    Tokio,
    /// The std peer: a thread per connection, no framework.
    Std,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Ours => "ours threading",
            Server::Tokio => "tokio",
            Server::Std => "std threads",
        }
    }
}

/// Arguments of `many`.
#[derive(Args, Debug)]
pub struct ManyArgs {
    /// Persistent connections, all open at once.
    #[arg(short = 'c', long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=30_000))]
    pub connections: u32,
    /// Rounds; each round loads every server once.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds of load per server and round (at most 60).
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Threads of the load generator (its runtime's workers, and as many connecting).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=16384))]
    pub size: u16,
    /// The servers, in the order of each round.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ours,tokio,std"
    )]
    pub servers: Vec<Server>,
    /// Our server: the echo example of this build (built first), or this one.
    #[arg(long, value_name = "PATH")]
    pub echo: Option<PathBuf>,
    /// The generator's niceness (`nice -n`; negative needs root, and `nice` then warns and
    /// runs it unchanged). A thread-per-connection server has up to one runnable thread per
    /// connection: at the default priority the scheduler would give the generator's few
    /// threads a sliver of the cores, and every server would be measured against a starved
    /// generator. 0 leaves it as it is.
    #[arg(long, default_value_t = -10, allow_negative_numbers = true, value_parser = clap::value_parser!(i8).range(-20..=19))]
    pub generator_nice: i8,
    /// Before each load, wait (at most 120 s) until the rest of the machine has kept the CPUs
    /// less than this busy (percent) for one second; 100 does not wait.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quiet: u8,
    /// Run as the load generator against ADDRESS and print one `many ...` line (what the
    /// harness starts in a process of its own).
    #[arg(long, value_name = "ADDRESS", hide = true)]
    pub generate: Option<SocketAddr>,
}

/// How long one connection may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting them all may take; those left count as never answered.
const CONNECT_PHASE: Duration = Duration::from_secs(60);
/// How long every connection's first round trip (before the clock starts) may take in all.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the round trips still outstanding at the end of the window may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub fn main(args: &ManyArgs) -> Result<(), BoxError> {
    let (soft, hard) = raise_nofile()?;
    match args.generate {
        Some(target) => {
            eprintln!("   generator: RLIMIT_NOFILE {soft} (hard {hard})");
            let report = generate(target, args)?;
            println!("{}", report.to_line());
            Ok(())
        }
        None => harness(args, (soft, hard)),
    }
}

/// Raises this process's descriptor limit (soft) to its hard limit; children inherit it.
/// Returns the new (soft, hard) limits.
pub fn raise_nofile() -> Result<(u64, u64), BoxError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok((soft, hard))
}

/// A number from a file of /proc, such as `/proc/sys/kernel/threads-max`.
fn proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Says whether the kernel's limits leave room for a server with a thread per connection
/// (a thread is a task, a pid, and two memory maps: its stack and the guard page below).
fn check_limits(connections: u64, nofile: (u64, u64)) -> Result<(), BoxError> {
    let (soft, hard) = nofile;
    let threads_max = proc_number("/proc/sys/kernel/threads-max");
    let pid_max = proc_number("/proc/sys/kernel/pid_max");
    let map_count = proc_number("/proc/sys/vm/max_map_count");
    let ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join("-"))
        .unwrap_or_else(|_| "?".into());
    let somaxconn = proc_number("/proc/sys/net/core/somaxconn");
    let tasks = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| status_field(pid, "Threads").ok())
                .sum::<u64>()
        })
        .unwrap_or(0);
    let show = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
    eprintln!(
        "limits: RLIMIT_NOFILE {soft} (hard {hard}); threads-max {}, pid_max {}, vm.max_map_count {}, \
         ip_local_port_range {ports}, somaxconn {}; {tasks} tasks running now",
        show(threads_max),
        show(pid_max),
        show(map_count),
        show(somaxconn),
    );
    // The server and the generator each hold one descriptor per connection, plus a few.
    let fds = connections + 64;
    if soft < fds {
        return Err(format!(
            "RLIMIT_NOFILE is {soft} (hard {hard}): {connections} connections need {fds}; raise the hard limit (ulimit -Hn)"
        )
        .into());
    }
    let mut short = Vec::new();
    // One server runs at a time; its threads come on top of what runs now.
    if threads_max.is_some_and(|m| m < tasks + connections + 100) {
        short.push("threads-max");
    }
    if pid_max.is_some_and(|m| m < tasks + connections + 100) {
        short.push("pid_max");
    }
    // Each thread's stack and guard page, and glibc's arenas and the binary's own maps.
    if map_count.is_some_and(|m| m < 2 * connections + 1000) {
        short.push("vm.max_map_count");
    }
    if short.is_empty() {
        eprintln!(
            "limits: enough for {connections} threads ({} tasks, {} maps)",
            tasks + connections,
            2 * connections
        );
        Ok(())
    } else {
        Err(format!(
            "too low for {connections} threads: {} (see the line above)",
            short.join(", ")
        )
        .into())
    }
}

/// What one load measured (one line between the generator and the harness).
#[derive(Debug, Clone, Default)]
struct Report {
    /// Connections asked for.
    connections: u64,
    /// Connections made.
    connected: u64,
    /// Connections whose first round trip (before the clock) came back.
    checked: u64,
    /// Round trips completed within the window.
    requests: u64,
    /// The window, seconds.
    seconds: f64,
    /// Latency quantiles of every round trip of the window (the drain's included), µs.
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    /// Connections closed or reset by the server.
    errors: u64,
    /// Connections made that got no answer in the window (or its drain).
    unanswered: u64,
    /// Requests still unanswered when the drain ended.
    late: u64,
    /// How long connecting took, seconds.
    connect_s: f64,
    /// Echoes per connection in the window: the fewest, the 1st percentile, the median (how
    /// evenly the server shared itself out).
    replies_min: u64,
    replies_p1: u64,
    replies_p50: u64,
}

impl Report {
    fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn to_line(&self) -> String {
        format!(
            "many connections={} connected={} checked={} requests={} seconds={} p50_us={:.1} p99_us={:.1} p999_us={:.1} errors={} unanswered={} late={} connect_s={:.2} replies_min={} replies_p1={} replies_p50={}",
            self.connections,
            self.connected,
            self.checked,
            self.requests,
            self.seconds,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.errors,
            self.unanswered,
            self.late,
            self.connect_s,
            self.replies_min,
            self.replies_p1,
            self.replies_p50
        )
    }

    fn from_line(line: &str) -> Result<Report, BoxError> {
        let rest = line
            .trim()
            .strip_prefix("many ")
            .ok_or_else(|| format!("the generator printed {line:?}"))?;
        let mut r = Report::default();
        for pair in rest.split_whitespace() {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("the generator printed {pair:?}"))?;
            let float = || value.parse::<f64>();
            let int = || value.parse::<u64>();
            match key {
                "connections" => r.connections = int()?,
                "connected" => r.connected = int()?,
                "checked" => r.checked = int()?,
                "requests" => r.requests = int()?,
                "seconds" => r.seconds = float()?,
                "p50_us" => r.p50_us = float()?,
                "p99_us" => r.p99_us = float()?,
                "p999_us" => r.p999_us = float()?,
                "errors" => r.errors = int()?,
                "unanswered" => r.unanswered = int()?,
                "late" => r.late = int()?,
                "connect_s" => r.connect_s = float()?,
                "replies_min" => r.replies_min = int()?,
                "replies_p1" => r.replies_p1 = int()?,
                "replies_p50" => r.replies_p50 = int()?,
                _ => {}
            }
        }
        Ok(r)
    }
}

// ---------------------------------------------------------------------------------------------
// The generator.

/// What one connection's task measured.
#[derive(Default)]
struct ConnResult {
    /// Round trips completed within the window.
    requests: u64,
    /// The latency of every round trip of the window and its drain, ns.
    latencies: Vec<u64>,
    /// The server closed or reset the connection.
    error: bool,
}

/// One round trip on a connection.
async fn round_trip(
    stream: &mut tokio::net::TcpStream,
    message: &[u8],
    reply: &mut [u8],
) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(message).await?;
    stream.read_exact(reply).await.map(drop)
}

/// Before the clock: one round trip to check the connection; gives it back if it answered.
async fn check_task(stream: std::net::TcpStream, size: usize) -> Option<tokio::net::TcpStream> {
    let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut reply = vec![0; size];
    let mut stream = tokio::net::TcpStream::from_std(stream).ok()?;
    round_trip(&mut stream, &message, &mut reply).await.ok()?;
    Some(stream)
}

/// On the clock: request/response until the deadline; the round trip under way at the
/// deadline still counts for latency (not for requests/s).
async fn load_task(
    mut stream: tokio::net::TcpStream,
    size: usize,
    deadline: Instant,
    replies: Arc<Vec<AtomicU64>>,
    id: usize,
) -> ConnResult {
    let mut result = ConnResult::default();
    let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut reply = vec![0; size];
    loop {
        let sent = Instant::now();
        if round_trip(&mut stream, &message, &mut reply).await.is_err() {
            result.error = true;
            return result;
        }
        let now = Instant::now();
        let nanos = u64::try_from((now - sent).as_nanos()).unwrap_or(u64::MAX);
        result.latencies.push(nanos.max(1));
        if let Some(count) = replies.get(id) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if now > deadline {
            return result;
        }
        result.requests += 1;
    }
}

/// Connects from a loopback source address of this connection's own (127.0.0.2 and up, as
/// `load`'s connection-per-request clients do), so the ports of one address never run out.
pub(crate) fn connect_from(target: SocketAddr, id: u64) -> io::Result<TcpStream> {
    let source = match target {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => {
            let octets = [127, 0, (id / 250) as u8, (id % 250 + 2) as u8];
            Some(SocketAddr::from((octets, 0)))
        }
        _ => None,
    };
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )?;
    if let Some(source) = source {
        socket.bind(&source.into())?;
    }
    socket.connect_timeout(&target.into(), CONNECT_TIMEOUT)?;
    socket.set_nodelay(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Connects the connections `ids` one after the other, within [`CONNECT_PHASE`]; a failure
/// is reported and counted, not fatal.
fn connect_some(target: SocketAddr, ids: Vec<u64>) -> Vec<(u64, TcpStream)> {
    let deadline = Instant::now() + CONNECT_PHASE;
    let mut streams = Vec::with_capacity(ids.len());
    let mut failed = 0;
    for id in ids {
        if Instant::now() > deadline {
            break;
        }
        match connect_from(target, id) {
            Ok(stream) => streams.push((id, stream)),
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("   generator: connect {id}: {e}");
                }
            }
        }
    }
    streams
}

/// Waits (at most `within`) until `ready` holds, checking every 10 ms.
fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !ready() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// The generator: `args.connections` connections, a task each on a tokio runtime of
/// `args.threads` threads (epoll underneath), in this process of its own.
fn generate(target: SocketAddr, args: &ManyArgs) -> Result<Report, BoxError> {
    let duration = Duration::from_secs_f64(args.duration.clamp(0.1, 60.0));
    let threads = u64::from(args.threads);
    let connections = u64::from(args.connections);
    let size = usize::from(args.size);
    // Connect first, from as many plain threads, each connection a blocking connect.
    let began = Instant::now();
    let connecting: Vec<_> = (0..threads)
        .map(|t| {
            let ids: Vec<u64> = (0..connections).filter(|id| id % threads == t).collect();
            thread::spawn(move || connect_some(target, ids))
        })
        .collect();
    let mut streams = Vec::with_capacity(args.connections as usize);
    for handle in connecting {
        streams.extend(handle.join().map_err(|_| "a connecting thread panicked")?);
    }
    let connect_s = began.elapsed().as_secs_f64();
    let connected = streams.len() as u64;
    eprintln!("   generator: {connected} connected in {connect_s:.1} s");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.threads))
        .enable_io()
        .build()?;
    let checks: Vec<_> = {
        // `from_std` registers the socket with this runtime's reactor.
        let _inside = runtime.enter();
        streams
            .into_iter()
            .map(|(id, stream)| (id, runtime.spawn(check_task(stream, size))))
            .collect()
    };
    // Every connection checked (or the check's time is up); then the clock starts.
    wait_until(CHECK_TIMEOUT, || {
        checks.iter().all(|(_, t)| t.is_finished())
    });
    let mut checked = Vec::with_capacity(checks.len());
    for (id, task) in checks {
        if task.is_finished() {
            if let Ok(Some(stream)) = runtime.block_on(task) {
                checked.push((id, stream));
            }
        } else {
            // Never answered: it gets no request on the clock (and counts as unanswered).
            task.abort();
        }
    }
    let replies: Arc<Vec<AtomicU64>> =
        Arc::new((0..connections).map(|_| AtomicU64::new(0)).collect());
    let checked_count = checked.len() as u64;
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = checked
        .into_iter()
        .map(|(id, stream)| {
            runtime.spawn(load_task(
                stream,
                size,
                deadline,
                Arc::clone(&replies),
                id as usize,
            ))
        })
        .collect();
    // The harness reads the server's CPU time at these two lines.
    println!("window");
    io::stdout().flush()?;
    thread::sleep(deadline.saturating_duration_since(Instant::now()));
    println!("end");
    io::stdout().flush()?;
    // The round trips under way at the deadline: at most DRAIN_TIMEOUT more.
    wait_until(DRAIN_TIMEOUT, || tasks.iter().all(|t| t.is_finished()));
    let mut report = Report {
        connections,
        connected,
        checked: checked_count,
        seconds: duration.as_secs_f64(),
        connect_s,
        ..Report::default()
    };
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for task in tasks {
        if !task.is_finished() {
            // Still waiting for its echo: left behind.
            report.late += 1;
            task.abort();
            continue;
        }
        let result = runtime
            .block_on(task)
            .map_err(|e| format!("a connection's task: {e}"))?;
        for nanos in result.latencies {
            total.saturating_record(nanos);
        }
        report.requests += result.requests;
        report.errors += u64::from(result.error);
    }
    runtime.shutdown_background();
    let mut replies: Vec<u64> = replies.iter().map(|r| r.load(Ordering::Relaxed)).collect();
    report.unanswered = replies.iter().filter(|&&r| r == 0).count() as u64;
    replies.sort_unstable();
    let at = |q: f64| replies[((replies.len() - 1) as f64 * q) as usize];
    report.replies_min = at(0.0);
    report.replies_p1 = at(0.01);
    report.replies_p50 = at(0.5);
    let us = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    report.p50_us = us(0.5);
    report.p99_us = us(0.99);
    report.p999_us = us(0.999);
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// What the harness saw of the server during one load.
#[derive(Debug, Clone, Default)]
struct Seen {
    base_rss_kb: u64,
    peak_rss_kb: u64,
    peak_threads: u64,
    /// CPU time (user and system, all threads) the server used in the window, seconds.
    cpu_s: f64,
    /// CPU time the generator used in all, seconds.
    generator_cpu_s: f64,
}

/// The CPUs' busy and total jiffies so far, from /proc/stat.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle and iowait
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

/// Waits until the machine's CPUs were less than `percent` busy over one second (at most
/// 120 s); returns the last busy share seen and the seconds waited.
fn wait_quiet(percent: u8) -> (f64, f64) {
    let began = Instant::now();
    let mut busy = 0.0;
    loop {
        if let Some((b0, t0)) = cpu_jiffies() {
            thread::sleep(Duration::from_secs(1));
            if let Some((b1, t1)) = cpu_jiffies() {
                busy = (b1 - b0) as f64 * 100.0 / (t1 - t0).max(1) as f64;
            }
        }
        if percent >= 100 || busy < f64::from(percent) || began.elapsed() > Duration::from_secs(120)
        {
            return (busy, began.elapsed().as_secs_f64());
        }
    }
}

/// The CPU time a process has used (all its threads, live and ended), in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some((utime + stime) as f64 / tick as f64)
}

/// One load of one server: the generator's report and the server's peaks.
#[derive(Debug, Clone)]
struct Round {
    report: Report,
    seen: Seen,
}

impl Round {
    /// The server's CPU time per request of the window, µs: what a request costs it, which
    /// other work on the machine moves far less than requests/s.
    fn cpu_per_request_us(&self) -> f64 {
        if self.report.requests > 0 {
            self.seen.cpu_s * 1e6 / self.report.requests as f64
        } else {
            0.0
        }
    }

    /// The same for the generator (all of its run: connecting, checking and the window).
    fn generator_cpu_per_request_us(&self) -> f64 {
        if self.report.requests > 0 {
            self.seen.generator_cpu_s * 1e6 / self.report.requests as f64
        } else {
            0.0
        }
    }
}

/// Runs the generator in a process of its own against `target`, sampling `pid` every 100 ms.
fn load_once(args: &ManyArgs, target: &str, pid: u32) -> Result<Round, BoxError> {
    let exe = std::env::current_exe()?;
    let mut seen = Seen {
        base_rss_kb: status_field(pid, "VmRSS")?,
        ..Seen::default()
    };
    let mut child = Command::new("nice")
        .args(["-n", &args.generator_nice.to_string()])
        .arg(exe)
        .args(["many", "--generate", target])
        .args(["--connections", &args.connections.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--size", &args.size.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // The generator's lines, as they come: `window`, `end`, then its report.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut report = None;
    let mut window_cpu = None;
    let limit = CONNECT_PHASE
        + CHECK_TIMEOUT
        + Duration::from_secs_f64(args.duration.clamp(0.1, 60.0))
        + DRAIN_TIMEOUT
        + Duration::from_secs(60);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Ok(rss) = status_field(pid, "VmRSS") {
            seen.peak_rss_kb = seen.peak_rss_kb.max(rss);
        }
        if let Ok(threads) = status_field(pid, "Threads") {
            seen.peak_threads = seen.peak_threads.max(threads);
        }
        while let Ok(line) = lines.try_recv() {
            match line.as_str() {
                "window" => window_cpu = cpu_seconds(pid),
                "end" => {
                    if let (Some(before), Some(after)) = (window_cpu, cpu_seconds(pid)) {
                        seen.cpu_s = after - before;
                    }
                }
                _ => report = Some(Report::from_line(&line)?),
            }
        }
        // `nice` execs the generator: the child's pid is the generator's.
        if let Some(cpu) = cpu_seconds(child.id()) {
            seen.generator_cpu_s = cpu;
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the generator ran over {} s: killed", limit.as_secs()).into());
        }
        thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        return Err(format!("the generator failed: {status}").into());
    }
    // Its last line may come after the exit was seen (the reader thread is bounded by the
    // pipe's end, which the exit closes).
    if report.is_none() {
        if let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
            report = Some(Report::from_line(&line)?);
        }
    }
    Ok(Round {
        report: report.ok_or("the generator printed no report")?,
        seen,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn harness(args: &ManyArgs, nofile: (u64, u64)) -> Result<(), BoxError> {
    let load_start = loadavg();
    eprintln!("load average at the start: {load_start}");
    let connections = u64::from(args.connections);
    check_limits(connections, nofile)?;
    let echo = match &args.echo {
        Some(path) => path.clone(),
        None => compare::build_echo()?,
    };
    let exe = std::env::current_exe()?.display().to_string();
    let spec = |server: Server| match server {
        Server::Ours => ServerSpec {
            name: server.name(),
            argv: vec![
                echo.display().to_string(),
                "tcp".into(),
                "{addr}".into(),
                "--mode".into(),
                "threading".into(),
                // The example caps connections at 256 by default; all of them are held here.
                "--max-connections".into(),
                (connections + 100).to_string(),
                // Connecting 10,000 takes seconds: the first must not time out meanwhile.
                "--read-timeout".into(),
                "120".into(),
                "--write-timeout".into(),
                "120".into(),
            ],
            scrape: false,
        },
        Server::Tokio | Server::Std => ServerSpec {
            name: server.name(),
            argv: vec![
                exe.clone(),
                "serve".into(),
                if server == Server::Tokio {
                    "tokio"
                } else {
                    "std"
                }
                .into(),
                "tcp".into(),
                "{addr}".into(),
            ],
            scrape: false,
        },
    };
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); args.servers.len()];
    for round in 0..args.rounds {
        for (i, &server) in args.servers.iter().enumerate() {
            let (busy, waited) = wait_quiet(args.quiet);
            // A fresh server each round: the last one's 10,000 threads are gone.
            let running = compare::start(&spec(server), "127.0.0.1:0")?;
            let result = load_once(args, &running.address, running.pid())?;
            drop(running);
            let r = &result.report;
            eprintln!(
                "   round {round} {:<15} {:>8.0} req/s  p50 {:>8.2} ms  p99 {:>7.1} ms  unanswered {}  errors {}  echoes per connection {}/{}/{}  server CPU {:.1} µs/request  generator CPU {:.1} µs/request  peak RSS {} MiB  threads {}  (load {}; the CPUs were {busy:.0}% busy before, after {waited:.0} s of waiting)",
                server.name(),
                r.rps(),
                r.p50_us / 1000.0,
                r.p99_us / 1000.0,
                r.unanswered,
                r.errors + r.late,
                r.replies_min,
                r.replies_p1,
                r.replies_p50,
                result.cpu_per_request_us(),
                result.generator_cpu_per_request_us(),
                result.seen.peak_rss_kb / 1024,
                result.seen.peak_threads,
                loadavg(),
            );
            rounds[i].push(result);
        }
    }
    print_results(args, &rounds);
    println!();
    println!(
        "Load average (1, 5, 15 min) at the start: {load_start}; at the end: {}.",
        loadavg()
    );
    Ok(())
}

fn print_results(args: &ManyArgs, rounds: &[Vec<Round>]) {
    println!(
        "{} persistent connections, {}-byte echo, one request out per connection; generator: a task per connection on {} threads (tokio), in a process of its own; medians of {} rounds of {} s per server, interleaved.",
        args.connections, args.size, args.threads, args.rounds, args.duration
    );
    println!();
    println!("| server | req/s | p50 ms | p99 ms | p99.9 ms | unanswered | errors | echoes per connection: fewest / 1st pct / median | server CPU µs per request | peak RSS MiB | RSS per connection KiB | peak threads | connect s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let conns = f64::from(args.connections);
    for (server, rs) in args.servers.iter().zip(rounds) {
        let pick = |f: &dyn Fn(&Round) -> f64| median(rs.iter().map(f).collect());
        let max = |f: &dyn Fn(&Round) -> u64| rs.iter().map(f).max().unwrap_or(0);
        println!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.1} | {} | {} | {:.0} / {:.0} / {:.0} | {:.1} | {:.0} | {:.1} | {} | {:.1} |",
            server.name(),
            pick(&|r| r.report.rps()),
            pick(&|r| r.report.p50_us) / 1000.0,
            pick(&|r| r.report.p99_us) / 1000.0,
            pick(&|r| r.report.p999_us) / 1000.0,
            max(&|r| r.report.unanswered),
            max(&|r| r.report.errors + r.report.late),
            pick(&|r| r.report.replies_min as f64),
            pick(&|r| r.report.replies_p1 as f64),
            pick(&|r| r.report.replies_p50 as f64),
            pick(&|r| r.cpu_per_request_us()),
            pick(&|r| r.seen.peak_rss_kb as f64) / 1024.0,
            pick(&|r| r.seen.peak_rss_kb.saturating_sub(r.seen.base_rss_kb) as f64) / conns,
            max(&|r| r.seen.peak_threads),
            pick(&|r| r.report.connect_s),
        );
    }
    println!();
    println!("(unanswered, errors: the most in one round; errors counts connections closed or reset and requests still out after the 5 s drain. Echoes per connection: medians over rounds. RSS per connection: the server's peak VmRSS during the load less its VmRSS before, over the connections.)");
    let find = |s: Server| {
        args.servers
            .iter()
            .position(|&x| x == s)
            .map(|i| &rounds[i])
    };
    let (Some(ours), Some(tokio)) = (find(Server::Ours), find(Server::Tokio)) else {
        return;
    };
    println!();
    println!("| target | measured (median) | each round | wanted | met |");
    println!("|---|---:|---:|---:|---|");
    let row = |label: &str,
               a: &[Round],
               b: &[Round],
               f: fn(&Round) -> f64,
               want: &str,
               ok: fn(f64) -> bool| {
        let ma = median(a.iter().map(f).collect());
        let mb = median(b.iter().map(f).collect());
        let ratio = if mb > 0.0 { ma / mb } else { f64::NAN };
        let each: Vec<f64> = a
            .iter()
            .zip(b)
            .filter(|(_, b)| f(b) > 0.0)
            .map(|(a, b)| f(a) / f(b))
            .collect();
        let low = each.iter().copied().fold(f64::INFINITY, f64::min);
        let high = each.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let met = if want == "-" {
            "-"
        } else if ok(ratio) {
            "yes"
        } else {
            "**no**"
        };
        println!("| {label} | {ratio:.2} | {low:.2} - {high:.2} | {want} | {met} |");
    };
    let rps: fn(&Round) -> f64 = |r| r.report.rps();
    let p99: fn(&Round) -> f64 = |r| r.report.p99_us;
    let n = args.connections;
    row(
        &format!("{n} conn: threading / tokio, req/s"),
        ours,
        tokio,
        rps,
        ">= 1.00",
        |r| r >= 1.0,
    );
    row(
        &format!("{n} conn: threading p99 / tokio p99"),
        ours,
        tokio,
        p99,
        "<= 2.00",
        |r| r <= 2.0,
    );
    row(
        &format!("{n} conn: threading CPU per request / tokio's"),
        ours,
        tokio,
        Round::cpu_per_request_us,
        "-",
        |_| true,
    );
    if let Some(std) = find(Server::Std) {
        row(
            &format!("{n} conn: threading / std threads, req/s"),
            ours,
            std,
            rps,
            "-",
            |_| true,
        );
        row(
            &format!("{n} conn: threading p99 / std threads p99"),
            ours,
            std,
            p99,
            "-",
            |_| true,
        );
        row(
            &format!("{n} conn: threading CPU per request / std threads'"),
            ours,
            std,
            Round::cpu_per_request_us,
            "-",
            |_| true,
        );
    }
}
