//! A fixed set of worker threads fed by a bounded queue (no Python equivalent).

use std::fmt;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded};
use nix::poll::{PollFd, PollFlags};

use super::bookkeeping::{recv_until, Ledger};
use super::{Activity, DrainReport, Job, Readiness, Strategy};
use crate::error::{Error, Result};
use crate::server::ParkedConnections;
use crate::sys::{self, wake};

mod workers;

use workers::{PoolShared, Workers};

/// How long `wait_ready` sleeps at most between checks that its workers are alive. Room and the
/// waker wake it at once; this is only a safety net.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Runs requests on a fixed set of worker threads, fed by a bounded queue (beyond Python, which
/// has no pool mix-in).
///
/// [`Threading`](super::Threading) gives every running request a thread of its own, so a burst
/// of clients becomes a burst of threads. A pool caps both threads and memory: at most
/// [`size`](Self::size) requests run at once, and at most [`queue_bound`](Self::queue_bound)
/// more wait for a worker. Works with all four transports.
///
/// # Backpressure
///
/// When every worker is busy and the queue is full, the serving loop stops taking requests (in
/// [`Strategy::wait_ready`]) until a worker finishes one. New clients then wait in the kernel:
/// stream clients in the listening socket's backlog (see the server's `backlog` option), where
/// they cost the program nothing; datagrams in the socket's receive buffer, and the kernel drops
/// those that do not fit (UDP gives no backpressure to senders). The wait is not a polling loop:
/// workers write a byte to a socket pair when they finish a request, and the loop sleeps in
/// `poll(2)` on that socket and on the shutdown waker, so a shutdown is never held up by a full
/// pool.
///
/// # Defaults
///
/// - [`workers`](Self::workers): the number of CPUs (`available_parallelism`) plus 4, at most
///   [`Pool::MAX_DEFAULT_WORKERS`]; so at least 5. This is Python's default for
///   `concurrent.futures.ThreadPoolExecutor`. Handlers mostly wait on their sockets rather
///   than compute, so a pool of exactly one thread per CPU would sit idle while slow clients
///   hold every worker; the cap keeps a large machine from starting hundreds of idle threads.
///   Size it to how many slow clients you want to serve at once.
/// - [`queue`](Self::queue): as many as workers. Queued requests have been accepted but wait
///   for a worker, so a long queue only adds latency and memory: beyond it, clients wait in the
///   backlog for free. One request per worker is enough for a worker that finishes to find the
///   next one waiting.
///
/// # Parked connections
///
/// The pool [takes](Strategy::take_parked) the server's parked connections (idle keep-alive
/// HTTP clients, new HTTP connections whose first request has not arrived, PROXY headers and
/// TLS handshakes waiting for the client): its idle workers wait in `epoll_wait` both for those connections'
/// next bytes and for queued requests, so a worker that finishes a request takes the next ready
/// connection without sleeping, and the serving loop only accepts. The fewer workers, the
/// fewer wake-ups: for keep-alive HTTP whose handlers compute rather than wait, one worker
/// per CPU serves most requests per second (`BENCHMARKS.md`).
///
/// # Workers
///
/// The workers start with the first request, not in the constructor: a constructor that starts
/// threads could not be `Default` (which cannot fail), and a server that never serves starts
/// none. If no worker can be started, [`process_request`](Strategy::process_request) fails with
/// [`Error::Spawn`] and the request is closed unserved; the next request tries again. A panicking
/// handler is caught (by the request pipeline, and again by the worker), so it never costs the
/// pool a worker; a worker that ends anyway is replaced on the next pass of the loop.
///
/// # Closing
///
/// [`close`](Strategy::close) stops feeding the queue and lets the workers finish the queued and
/// running requests, up to the server's `close_timeout`, then joins them. At the deadline, queued
/// requests that no worker has started are dropped (their connections closed unserved) and
/// reported as abandoned along with those still running, whose workers are detached. Dropping
/// the pool without closing lets the workers finish the queue on their own.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use socketserver::{HandleResult, Handler, Pool, PoolTcpServer, StreamRequest, StreamRequestHandler};
///
/// #[derive(Handler)]
/// struct Hello;
///
/// impl StreamRequestHandler for Hello {
///     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
///         request.wfile.write_all(b"hello\n")?;
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Two workers and room for two more requests: the other clients wait in the backlog.
/// let mut server = PoolTcpServer::<Hello>::builder()
///     .strategy(Pool::new().workers(2).queue(2))
///     .bind("127.0.0.1:0")?;
/// let addr = server.server_address().as_inet().expect("an internet address");
/// let handle = server.shutdown_handle();
/// let serving = std::thread::spawn(move || server.serve_forever().map(|()| server));
///
/// let clients: Vec<_> = (0..8).map(|_| std::net::TcpStream::connect(addr)).collect::<Result<_, _>>()?;
/// for mut client in clients {
///     let mut reply = String::new();
///     client.read_to_string(&mut reply)?;
///     assert_eq!(reply, "hello\n");
/// }
///
/// handle.shutdown();
/// let server = serving.join().expect("serving thread")?;
/// assert_eq!(server.close().abandoned, 0);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "ThreadPool")]
#[must_use = "a strategy does nothing until it is given to a server builder"]
pub struct Pool {
    workers: usize,
    queue: Option<usize>,
    stack_size: Option<usize>,
    running: Option<Workers>,
    /// The server's parked connections, which idle workers wait for themselves.
    parked: Option<ParkedConnections>,
    /// The counters; the serving loop looks at them on each call, and closing counts the
    /// requests finished since.
    ledger: Ledger,
}

/// Python's `ThreadPoolExecutor` default: CPUs + 4, at most 32.
fn default_workers() -> usize {
    thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .saturating_add(4)
        .min(Pool::MAX_DEFAULT_WORKERS)
}

impl Pool {
    /// The most workers [`Pool::new`] starts, however many CPUs there are.
    pub const MAX_DEFAULT_WORKERS: usize = 32;

    /// A pool with the default size and queue bound (see [Defaults](#defaults)).
    pub fn new() -> Pool {
        Pool {
            workers: default_workers(),
            queue: None,
            stack_size: None,
            running: None,
            parked: None,
            ledger: Ledger::default(),
        }
    }

    /// The number of worker threads, so the most requests that run at once. Default: CPUs + 4,
    /// at most 32 (see [Defaults](#defaults)). A value of 0 is taken as 1.
    pub fn workers(mut self, workers: usize) -> Pool {
        self.workers = workers.max(1);
        self
    }

    /// The most requests that wait for a worker once taken from the socket. Default: as many
    /// as workers. With 0, a request is taken only when a worker is free.
    pub fn queue(mut self, bound: usize) -> Pool {
        self.queue = Some(bound);
        self
    }

    /// The stack size of each worker thread, in bytes. Default: the standard library's (2 MiB,
    /// or the `RUST_MIN_STACK` environment variable).
    pub fn stack_size(mut self, bytes: usize) -> Pool {
        self.stack_size = Some(bytes);
        self
    }

    /// The number of worker threads.
    pub fn size(&self) -> usize {
        self.workers
    }

    /// The most requests that wait for a worker.
    pub fn queue_bound(&self) -> usize {
        self.queue.unwrap_or(self.workers)
    }

    /// Requests taken and waiting for a worker.
    pub fn queued(&self) -> usize {
        self.running.as_ref().map_or(0, |w| w.queued.len())
    }

    /// Starts the pool if needed and replaces workers that ended.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if there is no worker at all afterwards.
    fn start(&mut self) -> Result<&mut Workers> {
        let running = match &mut self.running {
            Some(running) => running,
            slot @ None => {
                let (room_tx, room_rx) = wake::pair().map_err(|source| Error::Spawn {
                    what: "the pool's wake-up socket pair",
                    source,
                })?;
                // Workers waiting on the parked connections take a queued request only once
                // notified (`try_recv`), so the channel cannot be a rendezvous: it holds as
                // many as `wait_ready` lets in (the bound is kept there, by `in_flight`).
                let bound = self.queue.unwrap_or(self.workers);
                let capacity = match self.parked {
                    Some(_) => bound.saturating_add(self.workers),
                    None => bound,
                };
                let (jobs, queued) = bounded(capacity);
                let (exits_tx, exits) = unbounded();
                slot.insert(Workers {
                    jobs: Some(jobs),
                    queued,
                    shared: Arc::new(PoolShared {
                        in_flight: AtomicUsize::new(0),
                        room: room_tx,
                        waiting: AtomicBool::new(false),
                        activity: self.ledger.activity().clone(),
                    }),
                    room: room_rx,
                    handles: (0..self.workers).map(|_| None).collect(),
                    exits_tx,
                    exits,
                    parked: self.parked.clone(),
                })
            }
        };
        running.replace_workers(self.stack_size)?;
        Ok(running)
    }

    /// Replaces workers that ended, once started; logs a failure to start any.
    fn replace_workers(&mut self) {
        if let Some(running) = &mut self.running {
            if let Err(e) = running.replace_workers(self.stack_size) {
                log::error!(target: "socketserver::pool", "{e}");
            }
        }
    }
}

impl Default for Pool {
    fn default() -> Pool {
        Pool::new()
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .field("queue_bound", &self.queue_bound())
            .field("stack_size", &self.stack_size)
            .field("started", &self.running.is_some())
            .field("queued", &self.queued())
            .field("activity", self.ledger.activity())
            .finish()
    }
}

impl Strategy for Pool {
    fn activity(&self) -> Option<Activity> {
        Some(self.ledger.activity().clone())
    }

    /// Parks: otherwise as many idle keep-alive clients as there are workers would leave
    /// every other client unanswered.
    fn parks_idle(&self) -> bool {
        true
    }

    /// Takes them: idle workers wait for the parked connections' next requests themselves,
    /// and for queued requests through the handle's notifications.
    fn take_parked(&mut self, parked: &ParkedConnections) -> bool {
        if self.running.is_some() && !self.parked.as_ref().is_some_and(|p| p.same_as(parked)) {
            // Workers already wait on the queue alone (or on other connections): they keep
            // doing so, and the loop hands these connections over.
            return false;
        }
        self.parked = Some(parked.clone());
        true
    }

    /// Queues the request for a worker, starting the workers on the first request.
    ///
    /// Blocks while the queue is full; the serving loop calls
    /// [`wait_ready`](Strategy::wait_ready) first, so it never is.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if no worker thread can be started; the request is closed unserved.
    fn process_request(&mut self, job: Job) -> Result<()> {
        self.ledger.look();
        let running = self.start()?;
        let Some(jobs) = &running.jobs else {
            // Only after close, which consumes the pool's running state: unreachable.
            return Ok(());
        };
        running.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        running.shared.activity.add_started();
        if jobs.send(job).is_err() {
            // The pool holds a receiver itself, so this cannot happen; the job was dropped,
            // which closes the request.
            running.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        } else if let Some(parked) = &running.parked {
            parked.notify();
        }
        Ok(())
    }

    /// Blocks while every worker is busy and the queue is full, until a worker finishes a
    /// request or `waker` becomes readable.
    fn wait_ready(&mut self, waker: BorrowedFd<'_>) -> Readiness {
        loop {
            let Some(running) = &self.running else {
                return Readiness::Ready;
            };
            let limit = running.live() + self.queue.unwrap_or(self.workers);
            let shared = &running.shared;
            if shared.in_flight.load(Ordering::SeqCst) < limit {
                return Readiness::Ready;
            }
            // Ask the workers for a wake-up, then look again: a request that finished before
            // they could see the flag has left room already.
            shared.waiting.store(true, Ordering::SeqCst);
            if shared.in_flight.load(Ordering::SeqCst) < limit {
                shared.waiting.store(false, Ordering::SeqCst);
                return Readiness::Ready;
            }
            let mut fds = [
                PollFd::new(waker, PollFlags::POLLIN),
                PollFd::new(running.room.fd(), PollFlags::POLLIN),
            ];
            let polled = sys::sleep_until(&mut fds, Some(Instant::now() + CHECK_INTERVAL));
            shared.waiting.store(false, Ordering::SeqCst);
            match polled {
                Ok(0) => {
                    // Nothing finished for a while: make sure the workers are alive.
                    self.replace_workers();
                }
                Ok(_) => {
                    if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                        return Readiness::Woken;
                    }
                    running.room.drain();
                }
                Err(e) => {
                    // The serving loop polls the waker next and reports the error.
                    log::error!(target: "socketserver::pool", "waiting for a free worker: {e}");
                    return Readiness::Woken;
                }
            }
        }
    }

    /// Replaces workers that ended.
    fn service_actions(&mut self) {
        self.ledger.look();
        self.replace_workers();
    }

    /// Closes the queue, lets the workers finish the queued and running requests until
    /// `deadline`, and joins them.
    ///
    /// `completed` counts the requests that finished since the serving loop last called the
    /// pool (so those that finished after `serve_forever` returned count too); `abandoned` those
    /// still running at the deadline plus the queued ones dropped unserved.
    fn close(&mut self, deadline: Option<Instant>) -> DrainReport {
        let Some(mut running) = self.running.take() else {
            return DrainReport::default();
        };
        running.close_queue();
        let mut live = running.live();
        while live > 0 {
            // The pool holds an exit sender itself, so this fails only at the deadline.
            let Some(index) = recv_until(&running.exits, deadline) else {
                break;
            };
            if let Some(handle) = running.handles.get_mut(index).and_then(Option::take) {
                let _ = handle.join();
                live -= 1;
            }
        }
        let mut dropped = 0;
        if live > 0 {
            while let Ok(job) = running.queued.try_recv() {
                drop(job);
                dropped += 1;
            }
            running
                .shared
                .in_flight
                .fetch_sub(dropped, Ordering::SeqCst);
        }
        let completed = self.ledger.finished_since_look();
        let abandoned = running.shared.in_flight.load(Ordering::SeqCst) + dropped;
        self.ledger.activity().set_tracked(0);
        if abandoned > 0 {
            log::warn!(target: "socketserver::pool",
                "closing: {dropped} queued requests dropped unserved, {} running ones left to their {live} workers",
                abandoned - dropped);
        }
        DrainReport {
            completed,
            abandoned,
            shut_down: 0,
        }
    }
}
