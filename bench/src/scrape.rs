//! A stand-in for Prometheus: `GET /metrics` on a server's metrics listener once a second for
//! as long as the server runs, so that "metrics on" pays for being scraped, as it would in
//! production.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

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
                    match scrape(address) {
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
