//! Memory per idle connection: start a server, open N idle connections, read its RSS.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Args;

use crate::BoxError;

/// Arguments of `memory`.
#[derive(Args, Debug)]
pub struct MemoryArgs {
    /// Idle connections to open (at most 1000).
    #[arg(short = 'c', long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub connections: u16,
    /// The echo example's `--mode`.
    #[arg(long, default_value = "threading")]
    pub mode: String,
}

/// A field of /proc/PID/status, such as `VmRSS` (kB) or `Threads`.
fn status_field(pid: u32, field: &str) -> Result<u64, BoxError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    let value = line.split_whitespace().nth(1).ok_or("empty field")?;
    Ok(value.parse()?)
}

pub fn main(args: &MemoryArgs) -> Result<(), BoxError> {
    crate::compare::build_echo()?;
    let exe = std::env::current_exe()?;
    let echo = exe
        .parent()
        .ok_or("no exe dir")?
        .join("examples")
        .join("echo");
    let spec = crate::compare::ServerSpec {
        name: "ours",
        argv: vec![
            echo.display().to_string(),
            "tcp".into(),
            "{addr}".into(),
            "--mode".into(),
            args.mode.clone(),
        ],
        scrape: false,
    };
    let server = crate::compare::start(&spec, "127.0.0.1:0")?;
    let pid = server.pid();
    let base_rss = status_field(pid, "VmRSS")?;
    let base_threads = status_field(pid, "Threads")?;
    let mut clients = Vec::new();
    for _ in 0..args.connections {
        clients.push(TcpStream::connect(&server.address)?);
    }
    // Bounded wait until every connection has its handler running.
    let want = base_threads + u64::from(args.connections);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_field(pid, "Threads")? < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let threads = status_field(pid, "Threads")?;
    let rss = status_field(pid, "VmRSS")?;
    let per = (rss.saturating_sub(base_rss)) as f64 / f64::from(args.connections);
    println!(
        "mode {}: {} idle connections, threads {} -> {}, RSS {} kB -> {} kB: {:.1} KiB per connection",
        args.mode, args.connections, base_threads, threads, base_rss, rss, per
    );
    drop(clients);
    Ok(())
}
