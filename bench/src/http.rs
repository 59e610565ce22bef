//! The HTTP scenarios (issue 17): our HTTP layer (`Http<H>` on `TcpServer`, with `Threading`
//! and with `Pool::default()`) against hyper on tokio, actix-web, tiny_http and Python's
//! `ThreadingHTTPServer`, on TechEmpower's plaintext and JSON tests.
//!
//! ```text
//! cargo build --release -p socketserver-bench
//! target/release/socketserver-bench http --rounds 3 --duration 3
//! ```
//!
//! Scenarios: plaintext and JSON over keep-alive connections (1, 16, 64, 256 by default,
//! `--connections`), loaded by wrk; and plaintext with a new connection per request at 16
//! clients, loaded by our own client (wrk cannot open a connection per request). After each
//! wrk load of a keep-alive scenario, our own keep-alive client runs the same number of
//! connections for `--count-duration` seconds and counts the responses of each: "unanswered"
//! is the connections that got none (wrk's requests/s alone hides them), "min/conn" the fewest
//! one connection got. The servers run in interleaved rounds (A B C D E, A B C D E, ...); the
//! tables show medians, and the targets table the ratios of medians with the lowest and highest
//! ratio of one round. Every load is bounded in time; every server is killed at the end of its
//! scenario, also on error (a guard's `Drop`).

#[path = "http_load.rs"]
mod load;
#[path = "http_peers.rs"]
mod peers;
#[path = "http_wrk.rs"]
mod wrk;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::compare::{self, Running, ServerSpec};
use crate::BoxError;
use peers::HttpPeer;

/// Our strategies, for `--strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StrategyName {
    /// A thread per connection.
    Threading,
    /// `Pool::default()` (CPUs + 4 workers here: 6 on 2 cores).
    Pool,
    /// A pool of one worker per CPU (2 here), as tokio and actix-web size their workers: for
    /// handlers that compute rather than wait.
    PoolCores,
}

/// Arguments of `http`.
#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Runs one server instead of the comparison: prints `serving on ADDRESS` and serves until
    /// killed. The comparison starts its Rust peers this way.
    #[arg(long, value_enum, value_name = "SERVER")]
    pub serve: Option<HttpPeer>,
    /// Where `--serve` listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub address: String,
    /// Rounds per scenario; each round loads every server once.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Seconds per wrk load (and per connection-per-request load), 1 to 60.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub duration: u64,
    /// Seconds of the keep-alive counter after each wrk load (0.2 to 60).
    #[arg(long, default_value_t = 2.0)]
    pub count_duration: f64,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Our strategies to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "threading,pool,pool-cores"
    )]
    pub strategy: Vec<StrategyName>,
    /// Keep-alive connection counts, comma-separated (1 to 1000 each).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256",
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub connections: Vec<u16>,
    /// Leave out the peers whose name contains this (comma-separated: `python,tiny_http`).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// wrk's threads. The default, 1, keeps the load generator on one of the two cores, so
    /// the server always has the other; with 2, wrk competes with the server for both.
    #[arg(long, default_value_t = 1)]
    pub wrk_threads: u16,
    /// The wrk binary.
    #[arg(long, default_value = "wrk")]
    pub wrk: String,
}

/// The clients connected at once in the connection-per-request scenario.
const CONNECT_CLIENTS: u16 = 16;

/// How a scenario loads a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// wrk over keep-alive connections, then our counter of unanswered connections.
    KeepAlive,
    /// Our client, a new connection per request.
    ConnectionPerRequest,
}

struct Scenario {
    name: String,
    path: &'static str,
    load: Load,
    connections: u16,
}

/// One server's figures in one round.
#[derive(Debug, Clone, Default)]
struct Round {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    /// Keep-alive only: connections of the counter, and how many got no response.
    counted: Option<load::Counted>,
}

/// One server's medians over rounds.
#[derive(Debug, Clone, Default)]
struct Summary {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    /// The worst round's unanswered connections, of how many (keep-alive only).
    unanswered: Option<(usize, usize)>,
    /// The fewest responses one connection got, over all rounds (keep-alive only).
    min_responses: Option<u64>,
    /// Connections the server closed between responses, median over rounds (keep-alive only).
    closed: Option<f64>,
    rounds: Vec<(f64, f64)>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn summarise(rounds: &[Round]) -> Summary {
    let pick = |f: fn(&Round) -> f64| median(&mut rounds.iter().map(f).collect::<Vec<_>>());
    let counted: Vec<&load::Counted> = rounds.iter().filter_map(|r| r.counted.as_ref()).collect();
    Summary {
        rps: pick(|r| r.rps),
        p50: pick(|r| r.p50),
        p99: pick(|r| r.p99),
        p999: pick(|r| r.p999),
        errors: rounds.iter().map(|r| r.errors).sum(),
        unanswered: counted
            .iter()
            .map(|c| (c.unanswered(), c.connections))
            .max_by_key(|(u, _)| *u),
        min_responses: counted.iter().map(|c| c.min_responses).min(),
        closed: (!counted.is_empty())
            .then(|| median(&mut counted.iter().map(|c| c.closed as f64).collect::<Vec<_>>())),
        rounds: rounds.iter().map(|r| (r.rps, r.p99)).collect(),
    }
}

fn scenarios(args: &HttpArgs) -> Vec<Scenario> {
    let mut all = Vec::new();
    for (test, path) in [("plaintext", "/plaintext"), ("json", "/json")] {
        for &c in &args.connections {
            all.push(Scenario {
                name: format!("{test} keep-alive, {c} conn"),
                path,
                load: Load::KeepAlive,
                connections: c,
            });
        }
    }
    all.push(Scenario {
        name: format!("plaintext connection per request, {CONNECT_CLIENTS} clients"),
        path: "/plaintext",
        load: Load::ConnectionPerRequest,
        connections: CONNECT_CLIENTS,
    });
    all.retain(|s| args.only.as_deref().is_none_or(|o| s.name.contains(o)));
    all
}

/// The servers, ours first (the ratios' numerator).
fn servers(args: &HttpArgs) -> Result<Vec<ServerSpec>, BoxError> {
    let exe = std::env::current_exe()?.display().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join("py_http.py")
        .display()
        .to_string();
    let rust = |name: &'static str, peer: &str| ServerSpec {
        name,
        argv: vec![
            exe.clone(),
            "http".into(),
            "--serve".into(),
            peer.into(),
            "--address".into(),
            "{addr}".into(),
        ],
        scrape: false,
    };
    let mut all = Vec::new();
    for strategy in &args.strategy {
        all.push(match strategy {
            StrategyName::Threading => rust("ours threading", "ours-threading"),
            StrategyName::Pool => rust("ours pool", "ours-pool"),
            StrategyName::PoolCores => rust("ours pool, 1 per core", "ours-pool-cores"),
        });
    }
    all.push(rust("hyper", "hyper"));
    all.push(rust("actix-web", "actix"));
    all.push(rust("tiny_http", "tiny-http"));
    all.push(ServerSpec {
        name: "python",
        argv: vec!["python3".into(), script, "{addr}".into()],
        scrape: false,
    });
    all.retain(|s| {
        s.name.starts_with("ours") || !args.skip.iter().any(|k| s.name.contains(k.as_str()))
    });
    Ok(all)
}

/// The system's load average over 1, 5 and 15 minutes.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// The commit this harness was started in, and whether the library's sources differ from it
/// (the shared tree may hold work in progress, which a build then includes).
fn commit() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let hash = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--", "server-core", "src"]);
    if dirty.is_empty() {
        hash
    } else {
        format!("{hash} (library sources modified in the tree)")
    }
}

/// Raises the soft descriptor limit to the hard one: the counter holds up to 1000 sockets.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

pub fn main(args: &HttpArgs) -> Result<(), BoxError> {
    if let Some(peer) = args.serve {
        return peers::serve(peer, &args.address);
    }
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let count_window = Duration::from_secs_f64(args.count_duration.clamp(0.2, 60.0));
    wrk::check(&args.wrk)?;
    raise_fd_limit();
    let dir = std::env::temp_dir().join(format!("ssbench-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = wrk::write_script(&dir)?;
    let specs = servers(args)?;
    let commit = commit();
    let load_before = load_average();
    eprintln!("commit {commit}; load average at start {load_before}");
    let mut results: Vec<(Scenario, Vec<Summary>)> = Vec::new();
    for scenario in scenarios(args) {
        eprintln!("== {}", scenario.name);
        // Started for this scenario, killed when `running` drops (also on an error below).
        let mut running: Vec<Running> = Vec::new();
        for spec in &specs {
            running.push(compare::start(spec, "127.0.0.1:0")?);
        }
        let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); specs.len()];
        for round in 0..args.rounds {
            for (i, server) in running.iter().enumerate() {
                let target: SocketAddr = server.address.parse()?;
                let figures = match scenario.load {
                    Load::KeepAlive => {
                        let url = format!("http://{target}{}", scenario.path);
                        let report = wrk::run(
                            &args.wrk,
                            &script,
                            &url,
                            args.wrk_threads,
                            scenario.connections,
                            args.duration,
                        )?;
                        let counted = load::count_keep_alive(
                            target,
                            scenario.path,
                            usize::from(scenario.connections),
                            count_window,
                        )?;
                        Round {
                            rps: report.rps(),
                            p50: report.p50_us,
                            p99: report.p99_us,
                            p999: report.p999_us,
                            errors: report.errors,
                            counted: Some(counted),
                        }
                    }
                    Load::ConnectionPerRequest => {
                        let measured = load::connection_per_request(
                            target,
                            scenario.path,
                            usize::from(scenario.connections),
                            Duration::from_secs(args.duration),
                        )?;
                        Round {
                            rps: measured.rps(),
                            p50: measured.p50_us,
                            p99: measured.p99_us,
                            p999: measured.p999_us,
                            errors: measured.errors,
                            counted: None,
                        }
                    }
                };
                let counted = figures.counted.as_ref().map_or(String::new(), |c| {
                    format!(
                        "  unanswered {}/{}  min/conn {}  closed {}  gave up {}",
                        c.unanswered(),
                        c.connections,
                        c.min_responses,
                        c.closed,
                        c.errors
                    )
                });
                eprintln!(
                    "   round {round} {:<15} {:>9.0} req/s  p99 {:>9.1} us  errors {}{counted}",
                    specs[i].name, figures.rps, figures.p99, figures.errors
                );
                rounds[i].push(figures);
            }
        }
        drop(running);
        results.push((scenario, rounds.iter().map(|r| summarise(r)).collect()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let load_after = load_average();
    eprintln!("load average at end {load_after}");
    println!(
        "HTTP, commit {commit}; medians of {} interleaved rounds; wrk {} thread(s), {} s a load; keep-alive counter {} s; load average {load_before} at start, {load_after} at end.",
        args.rounds, args.wrk_threads, args.duration, args.count_duration
    );
    println!();
    print_table(&specs, &results);
    print_targets(&specs, &results);
    Ok(())
}

fn print_table(specs: &[ServerSpec], results: &[(Scenario, Vec<Summary>)]) {
    println!("| scenario | server | req/s | p50 µs | p99 µs | p99.9 µs | errors | unanswered | min/conn | closed | first row ÷ this |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (scenario, summaries) in results {
        let first = summaries.first().map_or(0.0, |s| s.rps);
        for (spec, s) in specs.iter().zip(summaries) {
            let ratio = if s.rps > 0.0 {
                format!("{:.2}", first / s.rps)
            } else {
                "-".into()
            };
            let unanswered = s
                .unanswered
                .map_or("-".into(), |(u, of)| format!("{u} of {of}"));
            let min = s.min_responses.map_or("-".into(), |m| m.to_string());
            let closed = s.closed.map_or("-".into(), |c| format!("{c:.0}"));
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {unanswered} | {min} | {closed} | {ratio} |",
                scenario.name, spec.name, s.rps, s.p50, s.p99, s.p999, s.errors
            );
        }
    }
}

/// A row of the targets table.
struct Target {
    label: String,
    measured: String,
    rounds: String,
    wanted: String,
    /// `None`: a figure to read, not a target.
    met: Option<bool>,
    /// Missed only within the rounds' spread.
    near: bool,
    /// Not met whatever the figure: clients of ours were left unanswered, and wrk's figures
    /// are those of the clients that were served.
    unanswered: Option<(usize, usize)>,
}

/// A ratio of medians, `a / b` of `metric`, with the lowest and highest ratio of one round.
fn ratio(a: &Summary, b: &Summary, p99: bool) -> Option<(f64, f64, f64)> {
    let pick = |s: &Summary| if p99 { s.p99 } else { s.rps };
    let round = |r: &(f64, f64)| if p99 { r.1 } else { r.0 };
    if pick(b) <= 0.0 {
        return None;
    }
    let each: Vec<f64> = a
        .rounds
        .iter()
        .zip(&b.rounds)
        .filter(|(_, b)| round(b) > 0.0)
        .map(|(a, b)| round(a) / round(b))
        .collect();
    let low = each.iter().copied().fold(f64::INFINITY, f64::min);
    let high = each.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((pick(a) / pick(b), low, high))
}

fn print_targets(specs: &[ServerSpec], results: &[(Scenario, Vec<Summary>)]) {
    let find = |summaries: &'_ [Summary], name: &str| -> Option<usize> {
        specs
            .iter()
            .position(|s| s.name == name)
            .filter(|&i| i < summaries.len())
    };
    let mut rows: Vec<Target> = Vec::new();
    for (scenario, summaries) in results {
        // Targets hold from 16 connections up; 1 connection is a figure to read.
        let targeted = scenario.load == Load::ConnectionPerRequest || scenario.connections >= 16;
        for ours in ["ours threading", "ours pool", "ours pool, 1 per core"] {
            let Some(o) = find(summaries, ours) else {
                continue;
            };
            let o = &summaries[o];
            let peers: &[(&str, Option<f64>)] = match scenario.load {
                Load::KeepAlive => &[
                    ("hyper", Some(1.0)),
                    ("actix-web", Some(1.0)),
                    ("tiny_http", Some(1.5)),
                    ("python", None),
                ],
                Load::ConnectionPerRequest => &[
                    ("hyper", Some(1.0)),
                    ("actix-web", None),
                    ("tiny_http", None),
                    ("python", None),
                ],
            };
            for &(peer, want) in peers {
                let Some(p) = find(summaries, peer) else {
                    continue;
                };
                let Some((median, low, high)) = ratio(o, &summaries[p], false) else {
                    continue;
                };
                let want = want.filter(|_| targeted);
                rows.push(Target {
                    label: format!("{}: {ours} / {peer}", scenario.name),
                    measured: format!("{median:.2}"),
                    rounds: format!("{low:.2} - {high:.2}"),
                    wanted: want.map_or("-".into(), |w| format!(">= {w:.2}")),
                    met: want.map(|w| median >= w),
                    near: want.is_some_and(|w| median < w && high >= w),
                    unanswered: o.unanswered.filter(|(u, _)| *u > 0 && want.is_some()),
                });
            }
            if let Some(h) = find(summaries, "hyper") {
                if let Some((median, low, high)) = ratio(&summaries[h], o, true) {
                    let want = targeted.then_some(1.0);
                    rows.push(Target {
                        label: format!("{}: hyper p99 / {ours} p99", scenario.name),
                        measured: format!("{median:.2}"),
                        rounds: format!("{low:.2} - {high:.2}"),
                        wanted: want.map_or("-".into(), |w| format!(">= {w:.2}")),
                        met: want.map(|w| median >= w),
                        near: want.is_some_and(|w| median < w && high >= w),
                        unanswered: o.unanswered.filter(|(u, _)| *u > 0 && want.is_some()),
                    });
                }
            }
            if let Some((unanswered, of)) = o.unanswered {
                rows.push(Target {
                    label: format!(
                        "{}: {ours}, clients unanswered (worst round)",
                        scenario.name
                    ),
                    measured: format!("{unanswered} of {of}"),
                    rounds: String::new(),
                    wanted: "0".into(),
                    met: Some(unanswered == 0),
                    near: false,
                    unanswered: None,
                });
            }
        }
    }
    println!();
    println!("| target | measured (median) | each round | wanted | met |");
    println!("|---|---:|---:|---:|---|");
    for t in rows {
        let met = match (t.met, t.near, t.unanswered) {
            (None, _, _) => "-".to_owned(),
            (Some(_), _, Some((u, of))) => {
                format!("**no**: {u} of {of} clients unanswered (wrk measured the others)")
            }
            (Some(true), _, None) => "yes".to_owned(),
            (Some(false), true, None) => "**no**, within the rounds' spread".to_owned(),
            (Some(false), false, None) => "**no**".to_owned(),
        };
        println!(
            "| {} | {} | {} | {} | {met} |",
            t.label, t.measured, t.rounds, t.wanted
        );
    }
}
