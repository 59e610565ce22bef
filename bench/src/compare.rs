//! The comparison: start every server, run the same load against each in interleaved rounds
//! (A B C, then C B A, and so on), stop them, print medians and ratios, draw the chart.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use crate::load::{self, LoadArgs, Mode, Report};
use crate::scrape::{Scraper, Scrapes};
use crate::BoxError;

/// Which set of scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// A few minutes: the main scenarios at low and middle concurrency.
    Quick,
    /// Every scenario of the first round's speed targets, up to 1000 connections.
    Full,
    /// The process model: `--mode prefork` with 1, 2 and 4 workers, one shared listener and a
    /// socket per worker (`--reuse-port`), against threading and the pool in one process; a
    /// connection per request and persistent connections, 16 clients.
    Process,
    /// Metrics on against off: threading with `--metrics`, scraped once a second, against
    /// plain threading twice (the second shows the noise), 16 persistent connections.
    Metrics,
}

/// Arguments of `compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Which scenarios.
    #[arg(long, value_enum, default_value = "quick")]
    pub suite: Suite,
    /// Rounds per scenario; each round loads every server once.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds per load.
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Where to write the chart (SVG): requests/s against concurrency, persistent TCP.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// The echo example of another build (such as an older commit's
    /// `target/release/examples/echo`): each of our servers is run a second time from it, as
    /// "NAME (baseline)", in the same rounds, to tell a change of ours from the machine's.
    /// A build older than `--max-connections` runs without it (no cap).
    #[arg(long, value_name = "PATH")]
    pub baseline: Option<PathBuf>,
}

/// A server to start: a name and a command line with `{addr}` for the address.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    pub name: &'static str,
    pub argv: Vec<String>,
    /// The server prints `metrics on ADDRESS` after `serving on`: scrape it while it runs.
    pub scrape: bool,
}

struct Scenario {
    name: String,
    mode: Mode,
    connections: u16,
    servers: Vec<ServerSpec>,
    /// A point of the chart (requests/s against concurrency, persistent TCP).
    chart: bool,
}

/// A started server, killed on drop.
pub struct Running {
    child: Child,
    pub address: String,
    /// Scraping its metrics listener, if the spec asks for it.
    scraper: Option<Scraper>,
    /// Its metrics listener, if the spec has one.
    metrics: Option<std::net::SocketAddr>,
}

impl Running {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops scraping its metrics and says what the scrapes saw (`None`: not scraped).
    pub fn stop_scraper(&mut self) -> Option<Scrapes> {
        self.scraper.take().map(Scraper::stop)
    }

    /// Its metrics listener (`metrics on ADDRESS`), if the spec scrapes one.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Before the server goes, or the last scrape would fail against a stopping server.
        self.stop_scraper();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(spec: &ServerSpec, address: &str) -> Result<Running, BoxError> {
    let argv: Vec<String> = spec
        .argv
        .iter()
        .map(|a| a.replace("{addr}", address))
        .collect();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.name))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    stdout.read_line(&mut first)?;
    let address = first
        .trim_end()
        .strip_prefix("serving on ")
        .ok_or_else(|| format!("{} printed {first:?}", spec.name))?
        .to_owned();
    let mut running = Running {
        child,
        address,
        scraper: None,
        metrics: None,
    };
    if spec.scrape {
        // The echo example's second line with --metrics.
        let mut second = String::new();
        stdout.read_line(&mut second)?;
        let metrics: std::net::SocketAddr = second
            .trim_end()
            .strip_prefix("metrics on ")
            .ok_or_else(|| format!("{} printed {second:?}", spec.name))?
            .parse()?;
        running.metrics = Some(metrics);
        running.scraper = Some(Scraper::start(metrics)?);
    }
    Ok(running)
}

fn paths() -> Result<(PathBuf, PathBuf, PathBuf), BoxError> {
    let exe = std::env::current_exe()?;
    let echo = echo_path()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join("py_echo.py");
    Ok((exe, echo, script))
}

/// This build's echo example: `examples/echo` beside the harness, where [`build_echo`] puts
/// it.
pub fn echo_path() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .ok_or("no exe dir")?
        .join("examples")
        .join("echo"))
}

/// Builds the echo example (release) beside the harness; returns its path.
pub fn build_echo() -> Result<PathBuf, BoxError> {
    let cargo = std::env::var("CARGO")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // Into the target directory this harness runs from (it runs `<its dir>/examples/echo`),
    // whatever CARGO_TARGET_DIR says.
    let exe = std::env::current_exe()?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("the harness is not in a target directory")?;
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--example",
            "echo",
            "--target-dir",
        ])
        .arg(target)
        .current_dir(root)
        .status()?;
    if !status.success() {
        return Err("building the echo example failed".into());
    }
    echo_path()
}

fn scenarios(suite: Suite) -> Result<Vec<Scenario>, BoxError> {
    let (exe, echo, script) = paths()?;
    let (exe, echo, script) = (
        exe.display().to_string(),
        echo.display().to_string(),
        script.display().to_string(),
    );
    // The echo example with `--mode MODE` and more flags.
    let ours_with = |name: &'static str, transport: &str, mode: &str, more: &[&str]| {
        let mut argv = vec![
            echo.clone(),
            transport.into(),
            "{addr}".into(),
            "--mode".into(),
            mode.into(),
            // The example caps connections at 256 by default (a safe default for users);
            // the peers have no cap, and the largest scenario holds 1000 at once.
            "--max-connections".into(),
            "4096".into(),
        ];
        argv.extend(more.iter().map(|&a| a.to_owned()));
        ServerSpec {
            name,
            argv,
            scrape: false,
        }
    };
    let ours =
        |name: &'static str, transport: &str, mode: &str| ours_with(name, transport, mode, &[]);
    let peer = |name: &'static str, which: &str, transport: &str| ServerSpec {
        name,
        argv: vec![
            exe.clone(),
            "serve".into(),
            which.into(),
            transport.into(),
            "{addr}".into(),
        ],
        scrape: false,
    };
    let python = |name: &'static str, mode: &str, transport: &str| ServerSpec {
        name,
        argv: vec![
            "python3".into(),
            script.clone(),
            mode.into(),
            transport.into(),
            "{addr}".into(),
        ],
        scrape: false,
    };
    let persistent = |c: u16| Scenario {
        name: format!("tcp persistent, {c} conn"),
        mode: Mode::Tcp,
        connections: c,
        servers: vec![
            ours("ours threading", "tcp", "threading"),
            peer("std threads", "std", "tcp"),
            peer("tokio", "tokio", "tcp"),
            python("python threading", "threading", "tcp"),
        ],
        chart: true,
    };
    let levels: &[u16] = match suite {
        Suite::Quick => &[1, 16, 64],
        Suite::Full => &[1, 16, 64, 256, 1000],
        Suite::Process | Suite::Metrics => &[],
    };
    let mut all: Vec<Scenario> = levels.iter().map(|&c| persistent(c)).collect();
    // The floor runs in the same rounds as the servers at one connection, so the machine's
    // state is the same for both sides of the ratio.
    if let Some(one) = all.iter_mut().find(|s| s.connections == 1) {
        one.servers.push(ServerSpec {
            name: "floor (no server)",
            argv: Vec::new(),
            scrape: false,
        });
    }
    if matches!(suite, Suite::Quick | Suite::Full) {
        all.push(Scenario {
            name: "tcp connection per request, 16 clients".into(),
            mode: Mode::TcpConnect,
            connections: 16,
            servers: vec![
                ours("ours threading", "tcp", "threading"),
                ours("ours pool", "tcp", "pool"),
                ours("ours forking", "tcp", "forking"),
                peer("std threads", "std", "tcp"),
                peer("tokio", "tokio", "tcp"),
                python("python threading", "threading", "tcp"),
                python("python forking", "forking", "tcp"),
            ],
            chart: false,
        });
        for (transport, mode, label) in [
            ("udp", Mode::Udp, "udp"),
            ("unix-datagram", Mode::UnixDatagram, "unix datagram"),
        ] {
            all.push(Scenario {
                name: format!("{label}, 16 clients"),
                mode,
                connections: 16,
                servers: vec![
                    ours("ours sync", transport, "sync"),
                    peer("std loop", "std", transport),
                    peer("tokio", "tokio", transport),
                ],
                chart: false,
            });
        }
    }
    if suite == Suite::Process {
        // `--mode prefork`: supervised worker processes, each with threads (its default
        // --worker-mode), sharing one listening socket or (--reuse-port) each with its own.
        let prefork = |name: &'static str, workers: &str, reuse_port: bool| {
            let mut more = vec!["--workers", workers];
            if reuse_port {
                more.push("--reuse-port");
            }
            ours_with(name, "tcp", "prefork", &more)
        };
        let workers = || {
            vec![
                ours("ours threading", "tcp", "threading"),
                prefork("prefork 1 worker", "1", false),
                prefork("prefork 2 workers", "2", false),
                prefork("prefork 2, reuse-port", "2", true),
                prefork("prefork 4 workers", "4", false),
                prefork("prefork 4, reuse-port", "4", true),
            ]
        };
        // The single-process pool first: issue 17's target is prefork / pool.
        let mut servers = vec![ours("ours pool", "tcp", "pool")];
        servers.extend(workers());
        all.push(Scenario {
            name: "process model, connection per request, 16 clients".into(),
            mode: Mode::TcpConnect,
            connections: 16,
            servers,
            chart: false,
        });
        // A persistent connection holds a pool worker until it closes: the pool's default
        // size (CPUs + 4) would leave 10 of 16 clients unanswered, so it gets one per client.
        let mut servers = vec![ours_with(
            "ours pool, 16",
            "tcp",
            "pool",
            &["--workers", "16"],
        )];
        servers.extend(workers());
        all.push(Scenario {
            name: "process model, persistent, 16 conn".into(),
            mode: Mode::Tcp,
            connections: 16,
            servers,
            chart: false,
        });
    }
    if suite == Suite::Metrics {
        let mut metrics = ours_with(
            "ours threading, metrics",
            "tcp",
            "threading",
            &["--metrics", "127.0.0.1:0"],
        );
        metrics.scrape = true;
        all.push(Scenario {
            name: "metrics, tcp persistent, 16 conn".into(),
            mode: Mode::Tcp,
            connections: 16,
            servers: vec![
                ours("ours threading", "tcp", "threading"),
                metrics,
                // The same server again: how far two identical servers differ here.
                ours("ours threading, again", "tcp", "threading"),
            ],
            chart: false,
        });
    }
    Ok(all)
}

/// The worker processes of a prefork supervisor (its children) and the CPU time each has
/// used so far, in clock ticks; empty for a server of one process.
fn worker_cpu(supervisor: u32) -> Vec<(u32, u64)> {
    let children =
        std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children"))
            .unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some((pid, utime + stime))
        })
        .collect()
}

/// Each worker's share of the CPU time the workers used between `before` and `after`, largest
/// first ("52% 48%"); `None` for fewer than two workers, or none that ran throughout.
fn worker_shares(before: &[(u32, u64)], after: &[(u32, u64)]) -> Option<String> {
    let mut used: Vec<u64> = after
        .iter()
        .filter_map(|(pid, ticks)| {
            let (_, was) = before.iter().find(|(p, _)| p == pid)?;
            Some(ticks.saturating_sub(*was))
        })
        .collect();
    let total: u64 = used.iter().sum();
    if used.len() < 2 || total == 0 {
        return None;
    }
    used.sort_unstable_by(|a, b| b.cmp(a));
    let shares: Vec<String> = used
        .iter()
        .map(|&u| format!("{:.0}%", u as f64 * 100.0 / total as f64))
        .collect();
    Some(shares.join(" "))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Medians over rounds for one server in one scenario.
#[derive(Debug, Clone, Default)]
struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    /// Requests/s and p99 of each round, in order, for ratios round by round.
    rounds: Vec<(f64, f64)>,
}

fn summarise(reports: &[Report]) -> Summary {
    let pick = |f: fn(&Report) -> f64| median(&mut reports.iter().map(f).collect::<Vec<_>>());
    Summary {
        rps: pick(Report::rps),
        p50: pick(|r| r.p50_us),
        p99: pick(|r| r.p99_us),
        p999: pick(|r| r.p999_us),
        errors: reports.iter().map(|r| r.errors).sum(),
        rounds: reports.iter().map(|r| (r.rps(), r.p99_us)).collect(),
    }
}

/// What a target compares.
#[derive(Clone, Copy)]
enum Metric {
    Rps,
    P99,
}

impl Metric {
    fn median(self, s: &Summary) -> f64 {
        match self {
            Metric::Rps => s.rps,
            Metric::P99 => s.p99,
        }
    }

    fn round(self, round: (f64, f64)) -> f64 {
        match self {
            Metric::Rps => round.0,
            Metric::P99 => round.1,
        }
    }
}

pub fn main(args: &CompareArgs) -> Result<(), BoxError> {
    build_echo()?;
    let dir = std::env::temp_dir().join(format!("ssbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut all = scenarios(args.suite)?;
    if let Some(baseline) = &args.baseline {
        let echo = echo_path()?;
        let echo = echo.display().to_string();
        let help = Command::new(baseline).arg("--help").output()?;
        let capped = String::from_utf8_lossy(&help.stdout).contains("--max-connections");
        if !capped {
            eprintln!("the baseline has no --max-connections: it runs without a cap");
        }
        for scenario in &mut all {
            let mut servers = Vec::new();
            for spec in scenario.servers.drain(..) {
                let ours = spec.argv.first() == Some(&echo);
                let mut twin = spec.clone();
                servers.push(spec);
                if ours {
                    // A few names per run, kept to the end: leaked rather than owned.
                    twin.name = Box::leak(format!("{} (baseline)", twin.name).into_boxed_str());
                    twin.argv[0] = baseline.display().to_string();
                    if !capped {
                        if let Some(i) = twin.argv.iter().position(|a| a == "--max-connections") {
                            twin.argv.drain(i..(i + 2).min(twin.argv.len()));
                        }
                    }
                    servers.push(twin);
                }
            }
            scenario.servers = servers;
        }
    }
    for scenario in all {
        if args
            .only
            .as_deref()
            .is_some_and(|only| !scenario.name.contains(only))
        {
            continue;
        }
        eprintln!("== {}", scenario.name);
        let stream = matches!(scenario.mode, Mode::Tcp | Mode::TcpConnect | Mode::Udp);
        let mut running = Vec::new();
        for (i, spec) in scenario.servers.iter().enumerate() {
            if spec.argv.is_empty() {
                running.push(None);
                continue;
            }
            let address = if stream {
                "127.0.0.1:0".to_owned()
            } else {
                dir.join(format!("server-{i}.sock")).display().to_string()
            };
            running.push(Some(start(spec, &address)?));
        }
        // The CPU time of each worker process so far, to see how evenly they shared the load.
        let workers_before: Vec<Vec<(u32, u64)>> = running
            .iter()
            .map(|s| s.as_ref().map(|s| worker_cpu(s.pid())).unwrap_or_default())
            .collect();
        let mut reports: Vec<Vec<Report>> = vec![Vec::new(); scenario.servers.len()];
        for round in 0..args.rounds {
            // Every other round in reverse (A B C, C B A, ...): a server's figure depends on
            // what ran just before it (measured: the same binary as its own baseline came out
            // 0.92-0.94x when it always ran second), so each pair swaps places.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..running.len()).collect()
            } else {
                (0..running.len()).rev().collect()
            };
            for i in order {
                let server = &running[i];
                // A server with no command is the floor: the load generator's own echo thread.
                let mode = if server.is_none() {
                    Mode::Floor
                } else {
                    scenario.mode
                };
                let load = LoadArgs {
                    mode,
                    target: server
                        .as_ref()
                        .map(|s| s.address.clone())
                        .unwrap_or_default(),
                    connections: scenario.connections,
                    size: 64,
                    duration: args.duration,
                };
                let report = load::run(&load)?;
                eprintln!(
                    "   round {round} {:<18} {:>10.0} req/s  p99 {:>8.1} us  errors {}",
                    scenario.servers[i].name,
                    report.rps(),
                    report.p99_us,
                    report.errors
                );
                reports[i].push(report);
            }
        }
        let mut notes = Vec::new();
        for ((spec, server), before) in scenario.servers.iter().zip(&running).zip(&workers_before) {
            let Some(server) = server else { continue };
            if let Some(shares) = worker_shares(before, &worker_cpu(server.pid())) {
                notes.push(format!(
                    "{} in \"{}\": each worker's share of the workers' CPU time: {shares}",
                    spec.name, scenario.name
                ));
            }
        }
        for (spec, server) in scenario.servers.iter().zip(running.iter_mut()) {
            if let Some(scrapes) = server.as_mut().and_then(Running::stop_scraper) {
                let n = scrapes.ok + scrapes.failed;
                let mean = scrapes.total.as_secs_f64() * 1e6 / n.max(1) as f64;
                notes.push(format!(
                    "{} in \"{}\": scraped {n} times (every {} s, for the whole scenario), {} failed, {} bytes a page, {mean:.0} µs a scrape on average (client side, connect to last byte), {:.0} µs the slowest",
                    spec.name,
                    scenario.name,
                    crate::scrape::EVERY.as_secs(),
                    scrapes.failed,
                    scrapes.bytes,
                    scrapes.slowest.as_secs_f64() * 1e6,
                ));
            }
        }
        drop(running);
        let summaries = scenario
            .servers
            .iter()
            .zip(&reports)
            .map(|(s, r)| (s.name, summarise(r)))
            .collect();
        results.push(ScenarioResult {
            name: scenario.name,
            connections: scenario.connections,
            summaries,
            chart: scenario.chart,
            notes,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&results, args);
    print_targets(&results);
    if let Some(path) = &args.chart {
        chart(&results, path)?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

/// One scenario's medians, per server.
struct ScenarioResult {
    name: String,
    connections: u16,
    summaries: Vec<(&'static str, Summary)>,
    /// A point of the chart.
    chart: bool,
    /// What else was seen (the metrics scrapes), printed under the table.
    notes: Vec<String>,
}

type Results = [ScenarioResult];

fn print_table(results: &Results, args: &CompareArgs) {
    println!("64-byte echo; medians of {} rounds of {} s per server, interleaved; ratio = the scenario's first row / that row.", args.rounds, args.duration);
    println!();
    println!(
        "| scenario | server | req/s | p50 µs | p99 µs | p99.9 µs | errors | first row ÷ this |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for ScenarioResult {
        name, summaries, ..
    } in results
    {
        let ours = summaries.first().map(|(_, s)| s.rps).unwrap_or(0.0);
        for (server, s) in summaries {
            let ratio = if s.rps > 0.0 {
                format!("{:.2}", ours / s.rps)
            } else {
                "-".into()
            };
            println!(
                "| {name} | {server} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {ratio} |",
                s.rps, s.p50, s.p99, s.p999, s.errors
            );
        }
    }
    let notes: Vec<&String> = results.iter().flat_map(|r| &r.notes).collect();
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("- {note}");
        }
    }
}

/// Looks up one server's medians in the scenario whose name starts with `scenario`.
fn find<'a>(results: &'a Results, scenario: &str, server: &str) -> Option<&'a Summary> {
    results
        .iter()
        .find(|r| r.name.starts_with(scenario))?
        .summaries
        .iter()
        .find(|(name, _)| *name == server)
        .map(|(_, s)| s)
}

/// One target: the ratio of the medians, and the lowest and highest ratio of one round's
/// figures (servers loaded one after the other in the same round), which shows how much the
/// machine's noise moves it.
struct Target {
    label: String,
    /// The lowest ratio that meets the target; `None`: a figure to read, not a target.
    want: Option<f64>,
    median: Option<f64>,
    spread: Option<(f64, f64)>,
}

/// The speed targets, as ratios of medians measured in this run.
fn print_targets(results: &Results) {
    let mut rows: Vec<Target> = Vec::new();
    let mut compare = |label: String,
                       a: Option<&Summary>,
                       b: Option<&Summary>,
                       want: Option<f64>,
                       metric: Metric| {
        let (median, spread) = match (a, b) {
            (Some(a), Some(b)) if metric.median(b) > 0.0 => {
                let each: Vec<f64> = a
                    .rounds
                    .iter()
                    .zip(&b.rounds)
                    .filter(|(_, b)| metric.round(**b) > 0.0)
                    .map(|(a, b)| metric.round(*a) / metric.round(*b))
                    .collect();
                let low = each.iter().copied().fold(f64::INFINITY, f64::min);
                let high = each.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (
                    Some(metric.median(a) / metric.median(b)),
                    (!each.is_empty()).then_some((low, high)),
                )
            }
            _ => (None, None),
        };
        rows.push(Target {
            label,
            want,
            median,
            spread,
        });
    };
    let rps = Metric::Rps;
    for c in [1, 16, 64, 256, 1000] {
        let scenario = format!("tcp persistent, {c} conn");
        let ours = find(results, &scenario, "ours threading");
        compare(
            format!("persistent {c} conn: threading / tokio"),
            ours,
            find(results, &scenario, "tokio"),
            Some(1.0),
            rps,
        );
        compare(
            format!("persistent {c} conn: threading / std threads"),
            ours,
            find(results, &scenario, "std threads"),
            Some(0.95),
            rps,
        );
    }
    compare(
        "persistent 1 conn: threading / floor (no server)".into(),
        find(results, "tcp persistent, 1 conn", "ours threading"),
        find(results, "tcp persistent, 1 conn", "floor (no server)"),
        Some(0.85),
        rps,
    );
    let connect = "tcp connection per request";
    compare(
        "connection per request: pool / tokio".into(),
        find(results, connect, "ours pool"),
        find(results, connect, "tokio"),
        Some(1.0),
        rps,
    );
    compare(
        "connection per request: threading / tokio".into(),
        find(results, connect, "ours threading"),
        find(results, connect, "tokio"),
        Some(0.8),
        rps,
    );
    compare(
        "connection per request: forking / python forking".into(),
        find(results, connect, "ours forking"),
        find(results, connect, "python forking"),
        Some(5.0),
        rps,
    );
    for scenario in ["udp", "unix datagram"] {
        let ours = find(results, scenario, "ours sync");
        compare(
            format!("{scenario}: ours / std loop"),
            ours,
            find(results, scenario, "std loop"),
            Some(0.95),
            rps,
        );
        compare(
            format!("{scenario}: ours / tokio"),
            ours,
            find(results, scenario, "tokio"),
            Some(1.0),
            rps,
        );
    }
    compare(
        "persistent 256 conn: tokio p99 / threading p99".into(),
        find(results, "tcp persistent, 256 conn", "tokio"),
        find(results, "tcp persistent, 256 conn", "ours threading"),
        Some(1.0),
        Metric::P99,
    );
    // The process model (issue 17: 2 workers >= 1.0x the single-process pool, with a new
    // connection per request), its scaling, and the two listener models against each other.
    let connect = "process model, connection per request";
    let pool = find(results, connect, "ours pool");
    for (server, want) in [
        ("prefork 2 workers", Some(1.0)),
        ("prefork 2, reuse-port", Some(1.0)),
        ("prefork 1 worker", None),
        ("prefork 4 workers", None),
        ("prefork 4, reuse-port", None),
    ] {
        compare(
            format!("process model, connection per request: {server} / pool"),
            find(results, connect, server),
            pool,
            want,
            rps,
        );
    }
    compare(
        "process model, connection per request: prefork 2 / 1 worker".into(),
        find(results, connect, "prefork 2 workers"),
        find(results, connect, "prefork 1 worker"),
        None,
        rps,
    );
    let persistent = "process model, persistent";
    for server in ["prefork 2 workers", "prefork 2, reuse-port"] {
        compare(
            format!("process model, persistent 16 conn: {server} / threading"),
            find(results, persistent, server),
            find(results, persistent, "ours threading"),
            None,
            rps,
        );
    }
    for (scenario, label) in [
        (connect, "connection per request"),
        (persistent, "persistent"),
    ] {
        for n in ["2", "4"] {
            let shared = if n == "2" {
                "prefork 2 workers"
            } else {
                "prefork 4 workers"
            };
            let own = if n == "2" {
                "prefork 2, reuse-port"
            } else {
                "prefork 4, reuse-port"
            };
            compare(
                format!("process model, {label}, {n} workers: reuse-port / shared"),
                find(results, scenario, own),
                find(results, scenario, shared),
                None,
                rps,
            );
        }
    }
    // Metrics (issue 16: under 3% overhead at 16 persistent connections).
    let metrics = "metrics, tcp persistent, 16 conn";
    let off = find(results, metrics, "ours threading");
    compare(
        "metrics on / off, persistent 16 conn".into(),
        find(results, metrics, "ours threading, metrics"),
        off,
        Some(0.97),
        rps,
    );
    compare(
        "metrics off, again / off (the noise)".into(),
        find(results, metrics, "ours threading, again"),
        off,
        None,
        rps,
    );
    // With --baseline: each of our servers against the same server of the other build.
    for result in results {
        for (name, summary) in &result.summaries {
            let twin = format!("{name} (baseline)");
            if let Some((_, baseline)) = result.summaries.iter().find(|(n, _)| *n == twin) {
                compare(
                    format!("{}: {name} / baseline", result.name),
                    Some(summary),
                    Some(baseline),
                    None,
                    rps,
                );
            }
        }
    }
    println!();
    println!("| target | measured (median) | each round | wanted | met |");
    println!("|---|---:|---:|---:|---|");
    let mut not_run = 0;
    for Target {
        label,
        want,
        median,
        spread,
    } in rows
    {
        // Each suite runs some scenarios; a target of another suite is left out.
        let Some(median) = median else {
            not_run += 1;
            continue;
        };
        let (low, high) = spread.unwrap_or((median, median));
        let rounds = spread.map_or(String::new(), |_| format!("{low:.2} - {high:.2}"));
        let (wanted, met) = match want {
            None => ("-".to_owned(), "-"),
            Some(want) if median >= want => (format!(">= {want:.2}"), "yes"),
            Some(want) if high >= want => {
                (format!(">= {want:.2}"), "**no**, within the rounds' spread")
            }
            Some(want) => (format!(">= {want:.2}"), "**no**"),
        };
        println!("| {label} | {median:.2} | {rounds} | {wanted} | {met} |");
    }
    if not_run > 0 {
        println!();
        println!("({not_run} targets of other suites not run.)");
    }
}

fn chart(results: &Results, path: &Path) -> Result<(), BoxError> {
    use plotters::prelude::*;
    let mut series: BTreeMap<&str, Vec<(u16, f64)>> = BTreeMap::new();
    let mut levels: Vec<u16> = Vec::new();
    for ScenarioResult {
        connections,
        summaries,
        chart,
        ..
    } in results
    {
        if !chart {
            continue;
        }
        levels.push(*connections);
        for (server, s) in summaries {
            series
                .entry(server)
                .or_default()
                .push((*connections, s.rps));
        }
    }
    if levels.is_empty() {
        return Ok(());
    }
    let max = series
        .values()
        .flatten()
        .map(|(_, r)| *r)
        .fold(0.0, f64::max)
        * 1.1;
    let index = |c: u16| levels.iter().position(|&l| l == c).unwrap_or(0) as f64;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Persistent TCP, 64-byte echo: requests/s against concurrency",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.2..(levels.len() as f64 - 0.8), 0.0..max.max(1.0))?;
    chart
        .configure_mesh()
        .x_labels(levels.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                levels
                    .get(i as usize)
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .x_desc("concurrent connections")
        .y_desc("requests/s")
        .draw()?;
    for (i, (server, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let data: Vec<(f64, f64)> = points.iter().map(|&(c, r)| (index(c), r)).collect();
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
            .label(*server)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(data.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        // Upper left: the lines start low at one connection, so nothing is hidden there.
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
