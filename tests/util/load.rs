#![allow(dead_code)]
//! A steady, bounded load: client threads that each connect, send a line, read the whole reply,
//! check it, and close, until told to stop (or a count or a time bound is reached); then the
//! counts of requests sent and failed. Include it with `#[path = "util/load.rs"] mod load;` beside
//! `mod util;`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Most requests one client thread sends.
const MAX_PER_THREAD: u64 = 50_000;
/// Longest a load runs.
const MAX_TIME: Duration = Duration::from_secs(90);
/// A client waits this long for its reply before counting the request as failed.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    threads: Vec<JoinHandle<(u64, u64, Vec<String>)>>,
}

/// What a load did.
#[derive(Debug)]
pub struct Counts {
    pub sent: u64,
    pub failed: u64,
    /// The first few failures, for the assertion message.
    pub errors: Vec<String>,
}

impl Load {
    /// Starts `threads` clients against `addr`.
    pub fn start(addr: SocketAddr, threads: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|t| {
                let stop = Arc::clone(&stop);
                let sent = Arc::clone(&sent);
                thread::spawn(move || client(addr, t, &stop, &sent))
            })
            .collect();
        Load {
            stop,
            sent,
            threads,
        }
    }

    /// Requests sent so far, by every thread.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `more` requests more than now have been sent.
    pub fn wait_for(&self, more: u64) -> bool {
        let goal = self.sent() + more;
        crate::util::eventually(Duration::from_secs(20), || self.sent() >= goal)
    }

    /// Stops the clients and adds up what they did.
    pub fn stop(self) -> Counts {
        self.stop.store(true, Ordering::SeqCst);
        let mut counts = Counts {
            sent: 0,
            failed: 0,
            errors: Vec::new(),
        };
        for thread in self.threads {
            let (sent, failed, errors) = thread.join().expect("a load thread");
            counts.sent += sent;
            counts.failed += failed;
            counts.errors.extend(errors.into_iter().take(5));
        }
        counts
    }
}

/// One client thread: its counts and first errors.
fn client(
    addr: SocketAddr,
    t: usize,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> (u64, u64, Vec<String>) {
    let started = Instant::now();
    let (mut n, mut failed, mut errors) = (0u64, 0u64, Vec::new());
    while !stop.load(Ordering::SeqCst) && n < MAX_PER_THREAD && started.elapsed() < MAX_TIME {
        n += 1;
        sent.fetch_add(1, Ordering::SeqCst);
        let line = format!("client {t} request {n}\n");
        if let Err(e) = ask(addr, &line) {
            failed += 1;
            if errors.len() < 5 {
                errors.push(format!("{}: {e}", line.trim_end()));
            }
        }
    }
    (n, failed, errors)
}

/// One request: the reply must be the line itself, whole.
fn ask(addr: SocketAddr, line: &str) -> std::io::Result<()> {
    let mut client = TcpStream::connect(addr)?;
    client.set_read_timeout(Some(REPLY_TIMEOUT))?;
    client.write_all(line.as_bytes())?;
    let mut reply = String::new();
    client.read_to_string(&mut reply)?;
    if reply != line {
        return Err(std::io::Error::other(format!("reply {reply:?}")));
    }
    Ok(())
}
