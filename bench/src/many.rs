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
//! `--duration` seconds. A few generator threads drive all the connections through `poll(2)`
//! on non-blocking sockets: 10,000 client threads would take the 2 cores from the server.
//! Meanwhile the harness reads the server's `VmRSS` and `Threads` from `/proc/PID/status`
//! every 100 ms and keeps the peak.
//!
//! Every load is bounded: connecting (5 s a connection), the check (30 s), the window (at most
//! 60 s) and the drain after it (5 s); the harness kills a generator that outlives all of them.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use nix::poll::{PollFd, PollFlags};

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
    /// Threads of the load generator; each polls its share of the connections.
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
    /// Run as the load generator against ADDRESS and print one `many ...` line (what the
    /// harness starts in a process of its own).
    #[arg(long, value_name = "ADDRESS", hide = true)]
    pub generate: Option<SocketAddr>,
}

/// How long one connection may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
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

/// One connection's state between polls.
struct Conn {
    /// When the outstanding request was sent.
    sent: Instant,
    /// Bytes of the request written so far.
    written: usize,
    /// Bytes of the echo read so far.
    got: usize,
    /// A request is out and its echo not all back.
    outstanding: bool,
    /// Echoes received in the window (and its drain).
    replies: u64,
    /// Closed or reset: no longer polled.
    dead: bool,
}

/// Where a generator thread is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// One round trip per connection, not measured.
    Check,
    /// Measured: every echo is followed by the next request until the deadline.
    Window(Instant),
    /// After the deadline: waiting for the echoes still out, no new requests.
    Drain,
}

/// What one generator thread measured.
struct ThreadResult {
    histogram: Histogram<u64>,
    connected: u64,
    checked: u64,
    requests: u64,
    errors: u64,
    unanswered: u64,
    late: u64,
    /// Echoes of each connection made, in the window.
    replies: Vec<u64>,
    /// `poll(2)` failed: the thread stopped there.
    failure: Option<BoxError>,
}

/// A thread's connections and their states (the two vectors in step).
struct Driver {
    streams: Vec<TcpStream>,
    conns: Vec<Conn>,
    message: Vec<u8>,
    buf: Vec<u8>,
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
}

impl Driver {
    /// Sends the next request on connection `i` (as much as the socket takes now).
    fn send(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        conn.sent = Instant::now();
        conn.written = 0;
        conn.got = 0;
        conn.outstanding = true;
        self.write_more(i);
    }

    fn write_more(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        while conn.written < self.message.len() {
            match (&self.streams[i]).write(&self.message[conn.written..]) {
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    conn.dead = true;
                    self.errors += 1;
                    return;
                }
            }
        }
    }

    /// Reads what connection `i` has; on a whole echo, records it and (in the window) sends
    /// the next request.
    fn read_ready(&mut self, i: usize, phase: Phase) {
        loop {
            match (&self.streams[i]).read(&mut self.buf) {
                Ok(0) => {
                    self.conns[i].dead = true;
                    self.errors += 1;
                    return;
                }
                Ok(n) => {
                    let size = self.message.len();
                    let conn = &mut self.conns[i];
                    conn.got += n;
                    if conn.outstanding && conn.got >= size {
                        conn.got -= size;
                        conn.outstanding = false;
                        let now = Instant::now();
                        if phase != Phase::Check {
                            let nanos = u64::try_from((now - conn.sent).as_nanos())
                                .unwrap_or(u64::MAX)
                                .max(1);
                            self.histogram.saturating_record(nanos);
                            conn.replies += 1;
                        }
                        if let Phase::Window(deadline) = phase {
                            if now <= deadline {
                                self.requests += 1;
                                self.send(i);
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.conns[i].dead = true;
                    self.errors += 1;
                    return;
                }
            }
        }
    }

    /// Connections with a request out, not dead.
    fn outstanding(&self) -> usize {
        self.conns
            .iter()
            .filter(|c| c.outstanding && !c.dead)
            .count()
    }

    /// One `poll(2)` over the live connections (at most 50 ms), then handles what it reported.
    fn poll_once(&mut self, phase: Phase) -> Result<(), BoxError> {
        let ready: Vec<(usize, PollFlags)> = {
            let mut index = Vec::with_capacity(self.streams.len());
            let mut fds = Vec::with_capacity(self.streams.len());
            for (i, (stream, conn)) in self.streams.iter().zip(&self.conns).enumerate() {
                if conn.dead {
                    continue;
                }
                let mut events = PollFlags::POLLIN;
                if conn.outstanding && conn.written < self.message.len() {
                    events |= PollFlags::POLLOUT;
                }
                index.push(i);
                fds.push(PollFd::new(stream.as_fd(), events));
            }
            if fds.is_empty() {
                return Ok(());
            }
            match nix::poll::poll(&mut fds, 50u16) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            fds.iter()
                .zip(index)
                .filter_map(|(fd, i)| fd.revents().filter(|r| !r.is_empty()).map(|r| (i, r)))
                .collect()
        };
        for (i, revents) in ready {
            if revents.contains(PollFlags::POLLOUT) {
                self.write_more(i);
            }
            if revents.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                self.read_ready(i, phase);
            }
        }
        Ok(())
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

/// One generator thread: connects `ids`, waits for the others, checks, loads, drains.
///
/// It passes both of the generator's gates whatever happens, so no thread waits for ever; a
/// failure of `poll(2)` ends its loops and comes back in `failure`.
fn drive(
    target: SocketAddr,
    ids: Vec<u64>,
    size: usize,
    duration: Duration,
    gate: &Barrier,
    histogram: Histogram<u64>,
) -> ThreadResult {
    let mut driver = Driver {
        streams: Vec::with_capacity(ids.len()),
        conns: Vec::with_capacity(ids.len()),
        message: (0..size).map(|i| (i % 251) as u8).collect(),
        buf: vec![0; 64 * 1024],
        histogram,
        requests: 0,
        errors: 0,
    };
    let mut failure = None;
    let mut failed = 0u64;
    for id in ids {
        match connect_from(target, id) {
            Ok(stream) => {
                driver.streams.push(stream);
                driver.conns.push(Conn {
                    sent: Instant::now(),
                    written: 0,
                    got: 0,
                    outstanding: false,
                    replies: 0,
                    dead: false,
                });
            }
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("   generator: connect {id}: {e}");
                }
            }
        }
    }
    let connected = driver.streams.len() as u64;
    // 1: everyone connected.
    gate.wait();
    for i in 0..driver.conns.len() {
        driver.send(i);
    }
    let check_deadline = Instant::now() + CHECK_TIMEOUT;
    while failure.is_none() && driver.outstanding() > 0 && Instant::now() < check_deadline {
        failure = driver.poll_once(Phase::Check).err();
    }
    let checked = driver
        .conns
        .iter()
        .filter(|c| !c.dead && !c.outstanding)
        .count() as u64;
    // A connection whose check never came back keeps its request out: it gets no other.
    // 2: everyone checked; the clock starts.
    gate.wait();
    let deadline = Instant::now() + duration;
    for i in 0..driver.conns.len() {
        if !driver.conns[i].dead && !driver.conns[i].outstanding {
            driver.send(i);
        }
    }
    while failure.is_none() && Instant::now() < deadline {
        failure = driver.poll_once(Phase::Window(deadline)).err();
    }
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    while failure.is_none() && driver.outstanding() > 0 && Instant::now() < drain_deadline {
        failure = driver.poll_once(Phase::Drain).err();
    }
    ThreadResult {
        unanswered: driver.conns.iter().filter(|c| c.replies == 0).count() as u64,
        late: driver.outstanding() as u64,
        replies: driver.conns.iter().map(|c| c.replies).collect(),
        histogram: driver.histogram,
        connected,
        checked,
        requests: driver.requests,
        errors: driver.errors,
        failure,
    }
}

/// The generator: `args.connections` connections over `args.threads` threads.
fn generate(target: SocketAddr, args: &ManyArgs) -> Result<Report, BoxError> {
    let duration = Duration::from_secs_f64(args.duration.clamp(0.1, 60.0));
    let threads = u64::from(args.threads);
    let connections = u64::from(args.connections);
    let gate = Arc::new(Barrier::new(usize::from(args.threads) + 1));
    let began = Instant::now();
    let mut handles = Vec::new();
    for t in 0..threads {
        let ids: Vec<u64> = (0..connections).filter(|id| id % threads == t).collect();
        let gate = Arc::clone(&gate);
        let size = usize::from(args.size);
        let histogram = Histogram::new_with_bounds(1, 60_000_000_000, 3)?;
        handles.push(
            thread::Builder::new()
                .name(format!("many-{t}"))
                .spawn(move || drive(target, ids, size, duration, &gate, histogram))?,
        );
    }
    gate.wait();
    let connect_s = began.elapsed().as_secs_f64();
    eprintln!("   generator: connected in {connect_s:.1} s");
    gate.wait();
    let mut report = Report {
        connections,
        seconds: duration.as_secs_f64(),
        connect_s,
        ..Report::default()
    };
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut replies = Vec::with_capacity(args.connections as usize);
    for handle in handles {
        let r = handle.join().map_err(|_| "a generator thread panicked")?;
        if let Some(e) = r.failure {
            return Err(format!("a generator thread: poll: {e}").into());
        }
        total.add(&r.histogram)?;
        report.connected += r.connected;
        report.checked += r.checked;
        report.requests += r.requests;
        report.errors += r.errors;
        report.unanswered += r.unanswered;
        report.late += r.late;
        replies.extend(r.replies);
    }
    // A connection never made had no echo.
    replies.resize(args.connections as usize, 0);
    replies.sort_unstable();
    let at = |q: f64| replies[((replies.len() - 1) as f64 * q) as usize];
    report.replies_min = at(0.0);
    report.replies_p1 = at(0.01);
    report.replies_p50 = at(0.5);
    // The connections never made got no answer either.
    report.unanswered += connections - report.connected;
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
}

/// One load of one server: the generator's report and the server's peaks.
#[derive(Debug, Clone)]
struct Round {
    report: Report,
    seen: Seen,
}

/// Runs the generator in a process of its own against `target`, sampling `pid` every 100 ms.
fn load_once(args: &ManyArgs, target: &str, pid: u32) -> Result<Round, BoxError> {
    let exe = std::env::current_exe()?;
    let mut seen = Seen {
        base_rss_kb: status_field(pid, "VmRSS")?,
        ..Seen::default()
    };
    let mut child = Command::new(exe)
        .args(["many", "--generate", target])
        .args(["--connections", &args.connections.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--size", &args.size.to_string()])
        .args(["--duration", &args.duration.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // Connect (5 s each at worst, but they go in parallel) + check + window + drain + margin.
    let limit = CHECK_TIMEOUT
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
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    Ok(Round {
        report: Report::from_line(&line)?,
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
        None => {
            compare::build_echo()?;
            let exe = std::env::current_exe()?;
            exe.parent()
                .ok_or("no exe dir")?
                .join("examples")
                .join("echo")
        }
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
            // A fresh server each round: the last one's 10,000 threads are gone.
            let running = compare::start(&spec(server), "127.0.0.1:0")?;
            let result = load_once(args, &running.address, running.pid())?;
            drop(running);
            let r = &result.report;
            eprintln!(
                "   round {round} {:<15} {:>8.0} req/s  p50 {:>8.2} ms  p99 {:>7.1} ms  unanswered {}  errors {}  echoes per connection {}/{}/{}  peak RSS {} MiB  threads {}  (load {})",
                server.name(),
                r.rps(),
                r.p50_us / 1000.0,
                r.p99_us / 1000.0,
                r.unanswered,
                r.errors + r.late,
                r.replies_min,
                r.replies_p1,
                r.replies_p50,
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
        "{} persistent connections, {}-byte echo, one request out per connection; generator: {} threads polling, in a process of its own; medians of {} rounds of {} s per server, interleaved.",
        args.connections, args.size, args.threads, args.rounds, args.duration
    );
    println!();
    println!("| server | req/s | p50 ms | p99 ms | p99.9 ms | unanswered | errors | echoes per connection: fewest / 1st pct / median | peak RSS MiB | RSS per connection KiB | peak threads | connect s |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let conns = f64::from(args.connections);
    for (server, rs) in args.servers.iter().zip(rounds) {
        let pick = |f: &dyn Fn(&Round) -> f64| median(rs.iter().map(f).collect());
        let max = |f: &dyn Fn(&Round) -> u64| rs.iter().map(f).max().unwrap_or(0);
        println!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.1} | {} | {} | {:.0} / {:.0} / {:.0} | {:.0} | {:.1} | {} | {:.1} |",
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
    }
}
