//! The TLS scenarios (issues 15 and 17): full handshakes per second (a new connection per
//! request) and echo over TLS on persistent connections, ours against tokio-rustls, with the
//! same certificate, key type and cipher suite.
//!
//! ```text
//! socketserver-bench tls --rounds 5 --duration 2          # the comparison
//! socketserver-bench tls cert /tmp/tls                     # ca.pem, server.pem, server.key
//! socketserver-bench tls serve --cert S.pem --key S.key 127.0.0.1:0   # the tokio-rustls peer
//! socketserver-bench tls load --mode handshake --target ADDR --ca ca.pem -c 16
//! ```
//!
//! The comparison makes one ECDSA P-256 certificate (signed by a P-256 test CA) in a temporary
//! directory, starts the echo example (`--tls-cert`/`--tls-key`; `--mode threading` and
//! `pool`) and the tokio-rustls peer with it, and loads each in interleaved rounds from a
//! `tls load` process of its own (rustls clients: TLS 1.3, `TLS13_AES_128_GCM_SHA256` only,
//! no resumption; see `tls_load.rs`). It prints medians, ratios, what was negotiated, and the
//! load average before and after (the machine is shared).

#[path = "tls_load.rs"]
mod load;
#[path = "tls_peer.rs"]
mod peer;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::compare::{self, ServerSpec};
use crate::BoxError;
use load::{TlsMode, TlsReport};

/// Arguments of `tls`: the comparison, or one of its parts.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TlsArgs {
    #[command(subcommand)]
    command: Option<TlsCommand>,
    #[command(flatten)]
    compare: CompareArgs,
}

#[derive(Subcommand, Debug)]
enum TlsCommand {
    /// Runs the tokio-rustls echo peer (prints `serving on ADDRESS` first).
    Serve(peer::PeerArgs),
    /// Runs one bounded TLS load and prints one JSON line.
    Load(load::TlsLoadArgs),
    /// Writes a test CA and a server certificate (ECDSA P-256) into DIR, as the comparison
    /// makes them: ca.pem, server.pem, server.key.
    Cert {
        /// The directory (made if missing).
        dir: PathBuf,
    },
}

/// Arguments of the comparison.
#[derive(Args, Debug)]
struct CompareArgs {
    /// Rounds per scenario; each round loads every server once.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per load.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Concurrent clients (connections) per load (1 to 1000).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    clients: u16,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

pub fn main(args: &TlsArgs) -> Result<(), BoxError> {
    match &args.command {
        Some(TlsCommand::Serve(peer)) => peer::serve(peer),
        Some(TlsCommand::Load(load)) => load::main(load),
        Some(TlsCommand::Cert { dir }) => {
            let files = peer::make_certificate(dir)?;
            println!(
                "{}\n{}\n{}",
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            );
            Ok(())
        }
        None => run(&args.compare),
    }
}

struct Scenario {
    name: String,
    mode: TlsMode,
    servers: Vec<ServerSpec>,
}

fn scenarios(clients: u16, files: &peer::CertFiles) -> Result<Vec<Scenario>, BoxError> {
    let exe = std::env::current_exe()?;
    let echo = compare::echo_path()?;
    let (exe, echo) = (exe.display().to_string(), echo.display().to_string());
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    // The echo example over TLS, `--mode MODE` and more flags.
    let ours = |name: &'static str, mode: &str, more: &[&str]| {
        let mut argv = vec![
            echo.clone(),
            "tcp".into(),
            "{addr}".into(),
            "--mode".into(),
            mode.into(),
            // The peer has no cap; 16 clients never reach the example's 256 anyway.
            "--max-connections".into(),
            "4096".into(),
            "--tls-cert".into(),
            cert.clone(),
            "--tls-key".into(),
            key.clone(),
        ];
        argv.extend(more.iter().map(|&a| a.to_owned()));
        ServerSpec {
            name,
            argv,
            scrape: false,
        }
    };
    let tokio = || ServerSpec {
        name: "tokio-rustls",
        argv: vec![
            exe.clone(),
            "tls".into(),
            "serve".into(),
            "--cert".into(),
            cert.clone(),
            "--key".into(),
            key.clone(),
            "{addr}".into(),
        ],
        scrape: false,
    };
    // A persistent connection holds a pool worker until it closes: the pool's default size
    // (CPUs + 4) would leave clients unanswered, so it gets one worker per client.
    let workers = clients.to_string();
    Ok(vec![
        Scenario {
            name: format!("tls handshakes, a connection per request, {clients} clients"),
            mode: TlsMode::Handshake,
            servers: vec![
                ours("ours threading", "threading", &[]),
                ours("ours pool", "pool", &[]),
                tokio(),
            ],
        },
        Scenario {
            name: format!("tls echo, persistent, {clients} conn"),
            mode: TlsMode::Echo,
            servers: vec![
                ours("ours threading", "threading", &[]),
                ours("ours pool, 1 per conn", "pool", &["--workers", &workers]),
                tokio(),
            ],
        },
    ])
}

/// The load average (1, 5 and 15 minutes), as `/proc/loadavg` says it.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| {
            let fields: Vec<&str> = s.split_whitespace().take(3).collect();
            (fields.len() == 3).then(|| fields.join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs one `tls load` in a process of its own and reads its report; a load that has not
/// ended well after its window is killed.
fn load_once(
    mode: TlsMode,
    target: &str,
    ca: &Path,
    clients: u16,
    duration: f64,
) -> Result<TlsReport, BoxError> {
    let mode = match mode {
        TlsMode::Handshake => "handshake",
        TlsMode::Echo => "echo",
    };
    let mut child = Command::new(std::env::current_exe()?)
        .args(["tls", "load", "--mode", mode, "--target", target, "--ca"])
        .arg(ca)
        .args([
            "-c",
            &clients.to_string(),
            "--duration",
            &duration.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = tx.send(stdout.read_to_string(&mut out).map(|_| out));
    });
    // The window, the clients' 5 s socket timeouts twice over, and some slack.
    let limit = Duration::from_secs_f64(duration.clamp(0.1, 60.0)) + Duration::from_secs(30);
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out?,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the {mode} load did not end within {limit:?}").into());
        }
    };
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("the {mode} load failed ({status})").into());
    }
    let line = out.lines().last().ok_or("the load printed nothing")?;
    TlsReport::from_json(line)
}

/// The CPU time (user and system, all threads) a process has used so far, in µs: from
/// `/proc/PID/stat`, in clock ticks of 10 ms (Linux's `USER_HZ`, 100 on every architecture
/// that matters here).
fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command's closing parenthesis: utime is field 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// One server's medians over the rounds of a scenario.
struct Summary {
    name: &'static str,
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    /// The fewest clients answered in one round, of `clients`.
    answered: u64,
    clients: u64,
    /// Handshakes: full, full after a HelloRetryRequest, resumed.
    kinds: [u64; 3],
    negotiated: Vec<String>,
    /// Requests/s of each round, in order.
    rounds: Vec<f64>,
    /// The server's CPU time per request (median), in µs, and each round's.
    cpu: f64,
    cpu_rounds: Vec<f64>,
}

/// One load of one server: what the load generator saw, and the server's CPU time per
/// request in µs (0 if `/proc` could not be read).
type Measured = (TlsReport, f64);

fn summarise(name: &'static str, measured: &[Measured]) -> Summary {
    let reports: Vec<TlsReport> = measured.iter().map(|(r, _)| r.clone()).collect();
    let cpu_rounds: Vec<f64> = measured.iter().map(|(_, c)| *c).collect();
    let pick = |f: fn(&TlsReport) -> f64| median(&mut reports.iter().map(f).collect::<Vec<_>>());
    let mut negotiated: Vec<String> = reports.iter().map(|r| r.negotiated.clone()).collect();
    negotiated.sort();
    negotiated.dedup();
    Summary {
        name,
        rps: pick(TlsReport::rps),
        p50: pick(|r| r.load.p50_us),
        p99: pick(|r| r.load.p99_us),
        p999: pick(|r| r.load.p999_us),
        errors: reports.iter().map(|r| r.load.errors).sum(),
        answered: reports.iter().map(|r| r.answered).min().unwrap_or(0),
        clients: reports.iter().map(|r| r.clients).max().unwrap_or(0),
        kinds: [
            reports.iter().map(|r| r.full).sum(),
            reports.iter().map(|r| r.retried).sum(),
            reports.iter().map(|r| r.resumed).sum(),
        ],
        negotiated,
        rounds: reports.iter().map(TlsReport::rps).collect(),
        cpu: median(&mut cpu_rounds.clone()),
        cpu_rounds,
    }
}

fn run(args: &CompareArgs) -> Result<(), BoxError> {
    let before = load_average();
    eprintln!("load average at the start: {before}");
    compare::build_echo()?;
    let dir = std::env::temp_dir().join(format!("ssbench-tls-{}", std::process::id()));
    let files = peer::make_certificate(&dir)?;
    let result = run_scenarios(args, &files);
    let _ = std::fs::remove_dir_all(&dir);
    let results = result?;
    let after = load_average();
    print_results(args, &results, &before, &after);
    Ok(())
}

fn run_scenarios(
    args: &CompareArgs,
    files: &peer::CertFiles,
) -> Result<Vec<(String, Vec<Summary>)>, BoxError> {
    let mut results = Vec::new();
    for scenario in scenarios(args.clients, files)? {
        if args
            .only
            .as_deref()
            .is_some_and(|only| !scenario.name.contains(only))
        {
            continue;
        }
        eprintln!("== {}", scenario.name);
        let running = scenario
            .servers
            .iter()
            .map(|spec| compare::start(spec, "127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reports: Vec<Vec<Measured>> = vec![Vec::new(); running.len()];
        for round in 0..args.rounds {
            for (i, server) in running.iter().enumerate() {
                let cpu_before = cpu_us(server.pid());
                let report = load_once(
                    scenario.mode,
                    &server.address,
                    &files.ca,
                    args.clients,
                    args.duration,
                )?;
                // Every request the server served, stragglers included (the window's count
                // would leave some of the CPU they used uncounted).
                let served = report.load.requests.max(1) as f64;
                let cpu = match (cpu_before, cpu_us(server.pid())) {
                    (Some(a), Some(b)) => b.saturating_sub(a) as f64 / served,
                    _ => 0.0,
                };
                eprintln!(
                    "   round {round} {:<22} {:>9.0} req/s  p99 {:>9.1} us  cpu {cpu:>6.1} us/req  errors {}  answered {}/{}",
                    scenario.servers[i].name,
                    report.rps(),
                    report.load.p99_us,
                    report.load.errors,
                    report.answered,
                    report.clients,
                );
                reports[i].push((report, cpu));
            }
        }
        drop(running);
        let summaries = scenario
            .servers
            .iter()
            .zip(&reports)
            .map(|(spec, r)| summarise(spec.name, r))
            .collect();
        results.push((scenario.name, summaries));
    }
    Ok(results)
}

fn print_results(
    args: &CompareArgs,
    results: &[(String, Vec<Summary>)],
    before: &str,
    after: &str,
) {
    println!(
        "64-byte echo over TLS; medians of {} rounds of {} s per server, interleaved; ratio = the scenario's first row / that row. Load average {before} at the start, {after} at the end.",
        args.rounds, args.duration
    );
    println!();
    println!("| scenario | server | req/s | p50 µs | p99 µs | p99.9 µs | errors | clients answered | server CPU µs/req | first row ÷ this |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, summaries) in results {
        let first = summaries.first().map_or(0.0, |s| s.rps);
        for s in summaries {
            let ratio = if s.rps > 0.0 {
                format!("{:.2}", first / s.rps)
            } else {
                "-".into()
            };
            println!(
                "| {name} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {}/{} | {:.1} | {ratio} |",
                s.name, s.rps, s.p50, s.p99, s.p999, s.errors, s.answered, s.clients, s.cpu
            );
        }
    }
    println!();
    for (name, summaries) in results {
        for s in summaries {
            println!(
                "- {} in \"{name}\": negotiated {}; handshakes {} full, {} after a HelloRetryRequest, {} resumed",
                s.name,
                s.negotiated.join(", "),
                s.kinds[0],
                s.kinds[1],
                s.kinds[2]
            );
        }
    }
    println!();
    println!("| target | measured (median) | each round | wanted | met |");
    println!("|---|---:|---:|---:|---|");
    for (name, summaries) in results {
        let Some(tokio) = summaries.iter().find(|s| s.name == "tokio-rustls") else {
            continue;
        };
        let label = if name.starts_with("tls handshakes") {
            "tls handshakes/s"
        } else {
            "tls echo req/s"
        };
        for ours in summaries.iter().filter(|s| s.name.starts_with("ours")) {
            let who = ours.name.trim_start_matches("ours ");
            let clients = args.clients;
            target_row(
                &format!("{label}, {clients} clients: {who} / tokio-rustls"),
                (ours.rps, &ours.rounds),
                (tokio.rps, &tokio.rounds),
                Some(1.0),
            );
            // Above 1: ours spends less CPU per request than tokio-rustls.
            target_row(
                &format!(
                    "{label}, {clients} clients: server CPU per request, tokio-rustls / {who}"
                ),
                (tokio.cpu, &tokio.cpu_rounds),
                (ours.cpu, &ours.cpu_rounds),
                None,
            );
        }
    }
}

/// One row of the targets table: `a / b` of the medians, the lowest and highest ratio of one
/// round's figures, and whether it reaches `want` (`None`: a figure to read, not a target).
fn target_row(label: &str, a: (f64, &[f64]), b: (f64, &[f64]), want: Option<f64>) {
    if b.0 <= 0.0 {
        return;
    }
    let ratio = a.0 / b.0;
    let each: Vec<f64> =
        a.1.iter()
            .zip(b.1)
            .filter(|(_, b)| **b > 0.0)
            .map(|(a, b)| a / b)
            .collect();
    let low = each.iter().copied().fold(f64::INFINITY, f64::min);
    let high = each.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (wanted, met) = match want {
        None => ("-".to_owned(), "-"),
        Some(want) if ratio >= want => (format!(">= {want:.2}"), "yes"),
        Some(want) if high >= want => {
            (format!(">= {want:.2}"), "**no**, within the rounds' spread")
        }
        Some(want) => (format!(">= {want:.2}"), "**no**"),
    };
    println!("| {label} | {ratio:.2} | {low:.2} - {high:.2} | {wanted} | {met} |");
}
