//! Memory per idle connection: start a server, open N idle connections, read its RSS, and
//! split what the connections added by kind of mapping (`/proc/PID/smaps`).
//!
//! ```text
//! ssbench memory --connections 10000 --mode threading,pool
//! ```
//!
//! The kinds: the stacks of threads (a read-write anonymous mapping right above a one-page
//! guard, as glibc makes them), malloc's heaps (`[heap]`, and the 64 MiB-aligned arenas glibc
//! gives threads), the main thread's stack, files (the binary, libraries), and other anonymous
//! memory. With `--mode forking` or `prefork` the children are counted too (their `Pss`,
//! which splits pages they share).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::BoxError;

/// Arguments of `memory`.
#[derive(Args, Debug)]
pub struct MemoryArgs {
    /// Idle connections to open (the descriptor limit is raised to its hard limit first).
    #[arg(short = 'c', long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=30_000))]
    pub connections: u32,
    /// The echo example's `--mode`s, one server after the other (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "threading")]
    pub mode: Vec<String>,
    /// The echo example to run: this build's (built first), or this one (another build, such
    /// as a local change to measure).
    #[arg(long, value_name = "PATH")]
    pub echo: Option<PathBuf>,
}

/// A field of /proc/PID/status, such as `VmRSS` (kB) or `Threads`.
pub fn status_field(pid: u32, field: &str) -> Result<u64, BoxError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    let value = line.split_whitespace().nth(1).ok_or("empty field")?;
    Ok(value.parse()?)
}

/// Open descriptors of a process.
fn open_fds(pid: u32) -> Result<u64, BoxError> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// The children of a process (a forking or prefork server's).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A field of /proc/PID/smaps_rollup, in kB.
fn rollup_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(&format!("{field}:")))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Resident kB of a process by kind of mapping, from /proc/PID/smaps.
fn by_kind(pid: u32) -> Result<BTreeMap<&'static str, u64>, BoxError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    // (start, end, perms, path, rss kB) of each mapping, in address order.
    let mut maps: Vec<(u64, u64, String, String, u64)> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
            {
                let perms = words.next().unwrap_or("").to_owned();
                let path = words.nth(3).unwrap_or("").to_owned();
                maps.push((start, end, perms, path, 0));
                continue;
            }
        }
        if first == "Rss:" {
            if let (Some(last), Some(kb)) = (maps.last_mut(), words.next()) {
                last.4 = kb.parse().unwrap_or(0);
            }
        }
    }
    const PAGE: u64 = 4096;
    const ARENA: u64 = 64 * 1024 * 1024;
    let mut kinds = BTreeMap::new();
    for (i, (start, _end, perms, path, rss)) in maps.iter().enumerate() {
        let guard_below = i > 0 && {
            let (s, e, p, path, _) = &maps[i - 1];
            *e == *start && e - s == PAGE && p.starts_with("---") && path.is_empty()
        };
        let kind = match path.as_str() {
            "[heap]" => "malloc heaps",
            "[stack]" => "main thread stack",
            "" if perms.starts_with("rw") && guard_below => "thread stacks",
            "" if perms.starts_with("rw") && start % ARENA == 0 => "malloc heaps",
            "" => "other anonymous",
            p if p.starts_with('[') => "other anonymous",
            _ => "files",
        };
        *kinds.entry(kind).or_insert(0) += rss;
    }
    Ok(kinds)
}

/// Waits (at most `within`) until `ready` holds, checking every 20 ms.
fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn main(args: &MemoryArgs) -> Result<(), BoxError> {
    let (soft, hard) = crate::many::raise_nofile()?;
    let n = u64::from(args.connections);
    if soft < n + 64 {
        return Err(
            format!("RLIMIT_NOFILE is {soft} (hard {hard}): too low for {n} connections").into(),
        );
    }
    eprintln!(
        "load average at the start: {}; RLIMIT_NOFILE {soft} (hard {hard})",
        crate::many::loadavg()
    );
    let echo = match &args.echo {
        Some(path) => path.clone(),
        None => crate::compare::build_echo()?,
    };
    for mode in &args.mode {
        measure(&echo, mode, args.connections)?;
    }
    eprintln!("load average at the end: {}", crate::many::loadavg());
    Ok(())
}

fn measure(echo: &std::path::Path, mode: &str, connections: u32) -> Result<(), BoxError> {
    let n = u64::from(connections);
    let spec = crate::compare::ServerSpec {
        name: "ours",
        argv: vec![
            echo.display().to_string(),
            "tcp".into(),
            "{addr}".into(),
            "--mode".into(),
            mode.to_owned(),
            // Every connection is held (the example's default cap is 256) ...
            "--max-connections".into(),
            (n + 100).to_string(),
            // ... and stays open while the others connect and the figures are read.
            "--read-timeout".into(),
            "600".into(),
        ],
        scrape: false,
    };
    let server = crate::compare::start(&spec, "127.0.0.1:0")?;
    let pid = server.pid();
    let target: SocketAddr = server.address.parse()?;
    let base_rss = status_field(pid, "VmRSS")?;
    let base_threads = status_field(pid, "Threads")?;
    let base_fds = open_fds(pid)?;
    let base_kinds = by_kind(pid)?;
    let base_anon = rollup_field(pid, "Anonymous");
    let mut clients: Vec<TcpStream> = Vec::with_capacity(connections as usize);
    for id in 0..n {
        match crate::many::connect_from(target, id) {
            Ok(client) => clients.push(client),
            // A server that holds a few connections (a pool: one per worker) leaves the rest
            // in its listen backlog, and connecting stalls once that is full.
            Err(e) => {
                println!("mode {mode}: connection {id} failed ({e}); measuring those made");
                break;
            }
        }
    }
    let n = clients.len() as u64;
    if n == 0 {
        return Err(format!("mode {mode}: no connection made").into());
    }
    // Bounded waits: every connection accepted, then (a thread per connection) its handler
    // running, then the RSS still for 200 ms.
    let accepted = wait_until(Duration::from_secs(30), || {
        open_fds(pid).is_ok_and(|fds| fds >= base_fds + n)
    });
    let threaded = mode == "threading";
    let handled = !threaded
        || wait_until(Duration::from_secs(30), || {
            status_field(pid, "Threads").is_ok_and(|t| t >= base_threads + n)
        });
    let mut last = 0;
    wait_until(Duration::from_secs(10), || {
        let rss = status_field(pid, "VmRSS").unwrap_or(0);
        let still = rss == last;
        last = rss;
        if !still {
            std::thread::sleep(Duration::from_millis(180));
        }
        still
    });
    let threads = status_field(pid, "Threads")?;
    let rss = status_field(pid, "VmRSS")?;
    let fds = open_fds(pid)?;
    let kinds = by_kind(pid)?;
    let anon = rollup_field(pid, "Anonymous");
    let kids = children(pid);
    let kids_pss: u64 = kids.iter().map(|&c| rollup_field(c, "Pss")).sum();
    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / n as f64;
    println!(
        "mode {mode}: {n} idle connections, threads {base_threads} -> {threads}, descriptors {base_fds} -> {fds}, RSS {base_rss} kB -> {rss} kB: {:.1} KiB per connection (anonymous memory: {:.1} KiB)",
        per(rss, base_rss),
        per(anon, base_anon),
    );
    if !accepted || !handled {
        println!(
            "  (within 30 s the server held {} of the {n} connections{}: the rest wait in its listen backlog, and the figure per connection is over all {n})",
            fds.saturating_sub(base_fds),
            if threaded { " or had not started all their threads" } else { "" }
        );
    }
    if !kids.is_empty() {
        println!(
            "  and {} child processes: Pss {kids_pss} kB in all, {:.1} KiB per connection",
            kids.len(),
            kids_pss as f64 / n as f64
        );
    }
    let mut names: Vec<&&str> = kinds.keys().chain(base_kinds.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let before = base_kinds.get(*name).copied().unwrap_or(0);
        let after = kinds.get(*name).copied().unwrap_or(0);
        println!(
            "  {name:<18} {before:>8} kB -> {after:>8} kB: {:>5.1} KiB per connection",
            per(after, before)
        );
    }
    drop(clients);
    drop(server);
    Ok(())
}
