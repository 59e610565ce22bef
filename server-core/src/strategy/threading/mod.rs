//! A thread for each request (Python's `ThreadingMixIn`), reusing finished threads.

mod idle;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};

use self::idle::Idle;
use super::bookkeeping::{
    drain_report, recv_until, thread_builder, ExitNotice, Ledger, REAP_INTERVAL,
};
use super::{Activity, DrainReport, Job, Strategy};
use crate::error::{Error, Result};

/// Runs every request on a thread of its own (Python: `ThreadingMixIn`, as in
/// `ThreadingTCPServer`).
///
/// Works with all four transports; for the datagram ones every datagram gets its own thread, as
/// in Python. Nothing caps how many threads run at once: one slow client costs one thread, and a
/// flood of clients a flood of threads. Use [`Pool`](super::Pool) to cap them.
///
/// # Options
///
/// Python's class attributes become builder methods:
///
/// - [`block_on_close`](Self::block_on_close) (default `true`): closing the server waits for
///   every handler thread, up to the server's `close_timeout`, and reports how many finished
///   and how many were still running ([`DrainReport`]).
/// - [`daemon_threads`](Self::daemon_threads) (default `false`): daemon threads are never
///   tracked, so closing does not wait for them. Rust has no daemon flag (every thread dies
///   when `main` returns), so this is all it changes.
/// - [`stack_size`](Self::stack_size): the handler threads' stack size.
/// - [`max_idle_threads`](Self::max_idle_threads) and
///   [`idle_thread_timeout`](Self::idle_thread_timeout): how many finished threads wait, and
///   for how long, to run the next request (see below).
///
/// # Threads are reused
///
/// Starting a thread costs more than serving a short request: with a new connection per
/// request, a thread per request spends most of its time being born. So a handler thread
/// that has finished its request waits, up to `idle_thread_timeout` (default 5 s), for the
/// next one, and a new request goes to the thread that started waiting last (its memory still
/// in the CPU's caches; under a trickle of requests the others time out rather than take
/// turns); at most `max_idle_threads` (default 64) wait at once, the others end. Every request
/// still runs on a thread of its own while it runs: nothing queues, and a slow request never
/// delays another. What changes from Python is only that thread-local values may outlive a
/// request; set `max_idle_threads(0)` for a fresh thread per request. Closing the server (or
/// dropping the strategy) ends the waiting threads at once.
///
/// # Bookkeeping
///
/// A thread that ends reports on a channel and is joined on the next request or pass of the
/// loop, so the strategy only ever holds the threads alive, running a request or waiting for
/// one (Python before 3.10 kept every finished thread until the server closed, bpo-37193).
/// The strategy's [`activity`](Strategy::activity) shows the counts
/// ([`active`](Activity::active), [`tracked`](Activity::tracked)), from any thread.
///
/// # Bounds
///
/// The request runs on another thread, so the handler's shared state must be
/// `Send + Sync + 'static` (which [`Handler::State`](crate::Handler::State) requires anyway);
/// the handler itself is made on the handler thread and needs neither.
///
/// # Examples
///
/// Two clients served at once: each handler waits at a barrier until the other one runs too,
/// which only works when they run on threads of their own.
///
/// ```
/// use std::io::{Read, Write};
/// use std::net::TcpStream;
/// use std::sync::Barrier;
/// use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, Threading, ThreadingTcpServer};
///
/// #[derive(Handler)]
/// #[handler(state = Barrier)]
/// struct Meet;
///
/// impl StreamRequestHandler for Meet {
///     fn handle(&mut self, request: &mut StreamRequest<'_, Barrier>) -> HandleResult {
///         request.server().state().wait(); // until both handlers are running
///         request.wfile.write_all(b"met\n")?;
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = ThreadingTcpServer::<Meet>::with_state(Barrier::new(2))
///     .strategy(Threading::new().block_on_close(true))
///     .bind("127.0.0.1:0")?;
/// let addr = server.server_address().as_inet().expect("an internet address");
/// let handle = server.shutdown_handle();
/// let serving = std::thread::spawn(move || server.serve_forever().map(|()| server));
///
/// let mut clients = [TcpStream::connect(addr)?, TcpStream::connect(addr)?];
/// for client in &mut clients {
///     let mut reply = String::new();
///     client.read_to_string(&mut reply)?;
///     assert_eq!(reply, "met\n");
/// }
///
/// handle.shutdown();
/// let server = serving.join().expect("serving thread")?;
/// let report = server.close(); // waits for handler threads still running
/// assert_eq!(report.abandoned, 0);
/// # Ok(())
/// # }
/// ```
#[doc(alias = "ThreadingMixIn")]
#[must_use = "a strategy does nothing until it is given to a server builder"]
pub struct Threading {
    daemon_threads: bool,
    block_on_close: bool,
    stack_size: Option<usize>,
    max_idle_threads: usize,
    idle_thread_timeout: Duration,
    park_idle: bool,
    /// Where finished threads wait for the next request; made with the first thread, once the
    /// options are set.
    idle: Option<Arc<Idle>>,
    /// Join handles of tracked threads that have not been seen to end, by thread number.
    threads: HashMap<u64, JoinHandle<()>>,
    next_id: u64,
    /// Tracked threads send their number here as they end.
    done_tx: Sender<u64>,
    done_rx: Receiver<u64>,
    /// The counters; the serving loop looks at them as it reaps, so `close` reports the
    /// requests that finish after that as completed.
    ledger: Ledger,
}

/// A request and its bookkeeping, on its way to a thread.
struct Task {
    job: Job,
    finished: Finished,
}

impl Task {
    fn run(self) {
        let Task { job, mut finished } = self;
        // Failed, should the request unwind (it catches handler panics itself).
        finished.ok = Some(false);
        finished.ok = Some(job.run());
    }
}

impl Threading {
    /// The name every handler thread gets (`std::thread::current().name()` in a handler).
    ///
    /// Linux shows thread names cut to 15 bytes (`socketserver-ha` in `top -H` or
    /// `/proc/<pid>/task/*/comm`).
    pub const THREAD_NAME: &str = "socketserver-handler";

    /// Default of [`Threading::max_idle_threads`].
    pub const DEFAULT_MAX_IDLE_THREADS: usize = 64;

    /// Default of [`Threading::idle_thread_timeout`].
    pub const DEFAULT_IDLE_THREAD_TIMEOUT: Duration = Duration::from_secs(5);

    /// A thread per request, with Python's defaults: non-daemon threads, waited for on close.
    pub fn new() -> Threading {
        let (done_tx, done_rx) = unbounded();
        Threading {
            daemon_threads: false,
            block_on_close: true,
            stack_size: None,
            max_idle_threads: Threading::DEFAULT_MAX_IDLE_THREADS,
            idle_thread_timeout: Threading::DEFAULT_IDLE_THREAD_TIMEOUT,
            park_idle: false,
            idle: None,
            threads: HashMap::new(),
            next_id: 0,
            done_tx,
            done_rx,
            ledger: Ledger::default(),
        }
    }

    /// Whether closing the server waits for running handler threads (Python: `block_on_close`).
    /// Default: `true`.
    ///
    /// With `false`, no thread is tracked; closing returns at once and reports every running
    /// request as abandoned. Python added this opt-out (bpo-33540) after closing began to wait
    /// and hung applications; here closing waits at most the server's `close_timeout`, which is
    /// usually the better fix.
    pub fn block_on_close(mut self, block: bool) -> Threading {
        self.block_on_close = block;
        self
    }

    /// Whether handler threads are daemon threads (Python: `daemon_threads`). Default: `false`.
    ///
    /// Daemon threads are never tracked, so closing never waits for them. Unlike Python's,
    /// they do not change how the process exits: in Rust, every thread ends when `main`
    /// returns.
    pub fn daemon_threads(mut self, daemon: bool) -> Threading {
        self.daemon_threads = daemon;
        self
    }

    /// The stack size of each handler thread, in bytes. Default: `None`, the standard
    /// library's default (2 MiB, or the `RUST_MIN_STACK` environment variable).
    ///
    /// The system rounds it up to its page size and minimum.
    pub fn stack_size(mut self, bytes: usize) -> Threading {
        self.stack_size = Some(bytes);
        self
    }

    /// How many handler threads that finished a request may wait for the next one at once.
    /// Default: [`Threading::DEFAULT_MAX_IDLE_THREADS`] (64). `0`: every request gets a new thread, which
    /// ends with it, as in Python.
    ///
    /// Set it to about the number of requests that arrive together in a burst; more only holds
    /// memory (each waiting thread keeps the stack pages it has touched).
    pub fn max_idle_threads(mut self, threads: usize) -> Threading {
        self.max_idle_threads = threads;
        self
    }

    /// How long a handler thread that finished a request waits for the next one before it
    /// ends. Default: [`Threading::DEFAULT_IDLE_THREAD_TIMEOUT`] (5 s). An idle server is back to no
    /// handler threads after this long (meanwhile its loop wakes every 100 ms to join the
    /// threads that end). `Duration::MAX`: waiting threads never time out.
    pub fn idle_thread_timeout(mut self, timeout: Duration) -> Threading {
        self.idle_thread_timeout = timeout;
        self
    }

    /// Whether a keep-alive connection waiting for its client's next request gives its thread
    /// back and waits in the serving loop instead ([`Strategy::parks_idle`]). Default: `false`,
    /// a thread per connection for its whole life, which answers a busy client fastest. Turn
    /// it on for many mostly idle clients: each then costs a parked descriptor instead of a
    /// thread.
    pub fn park_idle(mut self, park: bool) -> Threading {
        self.park_idle = park;
        self
    }

    /// Whether threads are tracked, and so waited for on close.
    fn tracks(&self) -> bool {
        self.block_on_close && !self.daemon_threads
    }

    /// Starts a thread for `task`; it then serves what [`Idle`] hands it.
    fn spawn(&mut self, task: Task) -> Result<()> {
        let idle = Arc::clone(self.idle.get_or_insert_with(|| {
            Arc::new(Idle::new(self.max_idle_threads, self.idle_thread_timeout))
        }));
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let track = self.tracks();
        let exit = track.then(|| ExitNotice::new(self.done_tx.clone(), id));
        let builder = thread_builder(Threading::THREAD_NAME.to_owned(), self.stack_size);
        let spawned = builder.spawn(move || {
            let _exit = exit;
            idle.serve(task);
        });
        match spawned {
            Ok(handle) => {
                let activity = self.ledger.activity();
                activity.add_started();
                if track {
                    self.threads.insert(id, handle);
                    activity.set_tracked(self.threads.len());
                }
                Ok(())
            }
            Err(source) => {
                // The closure was dropped unrun, and with it the request (closed unserved) and
                // its guard, whose drop took back the `add_active` of `process_request`.
                self.reap();
                Err(Error::Spawn {
                    what: "a request handler thread",
                    source,
                })
            }
        }
    }

    /// Joins the threads that reported their end.
    fn reap(&mut self) {
        while let Ok(id) = self.done_rx.try_recv() {
            self.join(id);
        }
        // After the joins: a thread counts its request's end before it reports its own, so no
        // request of a thread joined here is left for `close` to count as completed.
        self.ledger.look();
        self.ledger.activity().set_tracked(self.threads.len());
    }

    /// Joins one thread that has reported its end (it is exiting, so this does not block
    /// for long), if it is tracked.
    fn join(&mut self, id: u64) {
        let Some(handle) = self.threads.remove(&id) else {
            return;
        };
        if handle.join().is_err() {
            // Job::run catches handler panics, so only a panic outside the handler lands here.
            log::error!(target: "socketserver::threading", "handler thread {id} panicked");
        }
    }
}

impl Default for Threading {
    fn default() -> Threading {
        Threading::new()
    }
}

impl Drop for Threading {
    /// Ends the threads waiting for a request, as closing does; running ones go on.
    fn drop(&mut self) {
        if let Some(idle) = &self.idle {
            idle.close();
        }
    }
}

impl fmt::Debug for Threading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Threading")
            .field("daemon_threads", &self.daemon_threads)
            .field("block_on_close", &self.block_on_close)
            .field("stack_size", &self.stack_size)
            .field("max_idle_threads", &self.max_idle_threads)
            .field("idle_thread_timeout", &self.idle_thread_timeout)
            .field("park_idle", &self.park_idle)
            .field("activity", self.ledger.activity())
            .finish_non_exhaustive()
    }
}

/// Ends a request's bookkeeping when it is done, even if it unwinds.
struct Finished {
    activity: Activity,
    /// `None` until a thread runs the request: a request whose thread never started is no
    /// longer active, but did not fail either.
    ok: Option<bool>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        match self.ok {
            Some(ok) => self.activity.end(ok),
            None => self.activity.remove_active(),
        }
    }
}

impl Strategy for Threading {
    fn activity(&self) -> Option<Activity> {
        Some(self.ledger.activity().clone())
    }

    fn parks_idle(&self) -> bool {
        self.park_idle
    }

    /// Hands the request to a thread waiting for one, or starts a thread for it (Python:
    /// `ThreadingMixIn.process_request`), after joining the threads that have ended.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] when the thread cannot be created; the request is closed unserved.
    fn process_request(&mut self, job: Job) -> Result<()> {
        self.reap();
        let activity = self.ledger.activity();
        activity.add_active();
        let mut task = Task {
            job,
            finished: Finished {
                activity: activity.clone(),
                ok: None,
            },
        };
        if let Some(idle) = &self.idle {
            match idle.offer(task) {
                Ok(()) => {
                    activity.add_started();
                    return Ok(());
                }
                Err(back) => task = back,
            }
        }
        self.spawn(task)
    }

    fn service_actions(&mut self) {
        self.reap();
    }

    /// 100 ms while handler threads are tracked (running a request, or waiting for one until
    /// `idle_thread_timeout`), so ended ones are joined even when the server is idle; `None`
    /// otherwise.
    fn service_interval(&self) -> Option<Duration> {
        (!self.threads.is_empty()).then_some(REAP_INTERVAL)
    }

    /// Ends the threads waiting for a request, and waits for the tracked handler threads to
    /// finish their requests, at most until `deadline` (Python: the mix-in's `server_close`,
    /// which waits without a limit).
    ///
    /// `completed` counts the tracked requests that ended before the deadline; `abandoned`
    /// counts the requests still running after it (including daemon threads and, with
    /// `block_on_close(false)`, every running request). Abandoned threads are detached: they
    /// run on, and end on their own.
    fn close(&mut self, deadline: Option<Instant>) -> DrainReport {
        // Threads waiting for a request end at once.
        if let Some(idle) = &self.idle {
            idle.close();
        }
        while !self.threads.is_empty() {
            // The strategy holds a sender itself, so this fails only at the deadline.
            let Some(id) = recv_until(&self.done_rx, deadline) else {
                break;
            };
            self.join(id);
        }
        // Dropping a JoinHandle detaches its thread.
        self.threads.clear();
        self.ledger.activity().set_tracked(0);
        let completed = if self.tracks() {
            // Each request that ended since the serving loop last looked: those this close
            // waited for, or found done. (Read before `active`, so none counts twice.)
            self.ledger.finished_since_look()
        } else {
            0
        };
        let abandoned = self.ledger.activity().active();
        drain_report(
            "socketserver::threading",
            "handler threads",
            completed,
            abandoned,
        )
    }
}
