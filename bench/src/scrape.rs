//! A stand-in for Prometheus: `GET /metrics` on a server's metrics listener once a second for
//! as long as the server runs, so that "metrics on" pays for being scraped, as it would in
//! production.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::BoxError;

/// How often Prometheus scrapes (its `scrape_interval`, set short).
pub const EVERY: Duration = Duration::from_secs(1);

/// The most bytes one scrape reads: the echo server's page is a few KiB.
const MOST: u64 = 1 << 20;

/// What the scrapes saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scrapes {
    /// Scrapes answered `200` with the request counter in the page.
    pub ok: u64,
    /// Scrapes that failed (refused, timed out, another status, no counter).
    pub failed: u64,
    /// The size of the last page, in bytes.
    pub bytes: usize,
    /// The longest scrape, from connecting to the last byte.
    pub slowest: Duration,
    /// All the scrapes' time added up.
    pub total: Duration,
}

/// A scraping thread; [`stop`](Self::stop) ends it and says what it saw.
pub struct Scraper {
    stop: Sender<()>,
    thread: JoinHandle<Scrapes>,
}

impl Scraper {
    /// Scrapes `address` every [`EVERY`], the first time one interval from now.
    pub fn start(address: SocketAddr) -> Result<Self, BoxError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("scraper".into())
            .spawn(move || {
                let mut scrapes = Scrapes::default();
                // Waiting on the channel, not sleeping: `stop` ends the wait at once.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    let began = Instant::now();
                    let result = scrape(address);
                    let took = began.elapsed();
                    scrapes.slowest = scrapes.slowest.max(took);
                    scrapes.total += took;
                    match result {
                        Ok(bytes) => {
                            scrapes.ok += 1;
                            scrapes.bytes = bytes;
                        }
                        Err(e) => {
                            scrapes.failed += 1;
                            eprintln!("   scrape of {address} failed: {e}");
                        }
                    }
                }
                scrapes
            })?;
        Ok(Scraper { stop, thread })
    }

    /// Stops scraping (at once, not after the interval) and returns the counts.
    pub fn stop(self) -> Scrapes {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// One scrape: `GET /metrics`, the whole answer read; its size in bytes.
fn scrape(address: SocketAddr) -> Result<usize, BoxError> {
    let timeout = Duration::from_secs(1);
    let mut conn = TcpStream::connect_timeout(&address, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut page = String::new();
    conn.take(MOST).read_to_string(&mut page)?;
    let status = page.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("answered {status:?}").into());
    }
    if !page.contains("socketserver_requests_total") {
        return Err("no socketserver_requests_total in the page".into());
    }
    Ok(page.len())
}

/// Arguments of `scrape-cost`.
#[derive(clap::Args, Debug)]
pub struct CostArgs {
    /// Scrapes to make, one after another (at most 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub scrapes: u16,
}

/// `scrape-cost`: what one scrape costs the server. Starts the echo example with `--metrics`,
/// scrapes it `--scrapes` times with no other load, and prints the server's CPU time per
/// scrape (user and system, from `/proc/PID/stat`) beside the size of the host's
/// `/proc/net/tcp`, which the listen-queue gauge reads.
pub fn cost(args: &CostArgs) -> Result<(), BoxError> {
    let echo = crate::compare::build_echo()?;
    let spec = crate::compare::ServerSpec {
        name: "ours threading, metrics",
        argv: vec![
            echo.display().to_string(),
            "tcp".into(),
            "{addr}".into(),
            "--mode".into(),
            "threading".into(),
            "--metrics".into(),
            "127.0.0.1:0".into(),
        ],
        scrape: true,
    };
    let mut server = crate::compare::start(&spec, "127.0.0.1:0")?;
    let address = server.metrics_address().ok_or("no metrics address")?;
    // Scraped here, one after another: the background scraper would add its own.
    server.stop_scraper();
    let pid = server.pid();
    let lines = |table: &str| {
        std::fs::read_to_string(table).map_or(0, |t| t.lines().count().saturating_sub(1))
    };
    let sockets = lines("/proc/net/tcp") + lines("/proc/net/tcp6");
    let (user, system) = cpu_ticks(pid)?;
    let began = Instant::now();
    for _ in 0..args.scrapes {
        scrape(address)?;
    }
    let took = began.elapsed();
    let (user_after, system_after) = cpu_ticks(pid)?;
    let tick_ms = 1000.0 / clock_ticks_per_second() as f64;
    let n = f64::from(args.scrapes);
    println!(
        "{} scrapes, one after another: {:.2} ms each (client side); server CPU per scrape: user {:.2} ms, system {:.2} ms; /proc/net/tcp{{,6}}: {sockets} sockets",
        args.scrapes,
        took.as_secs_f64() * 1000.0 / n,
        (user_after - user) as f64 * tick_ms / n,
        (system_after - system) as f64 * tick_ms / n,
    );
    Ok(())
}

/// A process's CPU time so far, user and system, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<(u64, u64), BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("no ) in /proc/PID/stat")?
        .1
        .split_whitespace()
        .collect();
    let field = |i: usize| -> Result<u64, BoxError> {
        Ok(fields.get(i).ok_or("short /proc/PID/stat")?.parse()?)
    };
    Ok((field(11)?, field(12)?))
}

/// The unit of `/proc/PID/stat`'s times: Linux reports them in USER_HZ, 100 a second on every
/// architecture (what `sysconf(_SC_CLK_TCK)` answers).
fn clock_ticks_per_second() -> u64 {
    100
}
