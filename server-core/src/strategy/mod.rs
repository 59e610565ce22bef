//! Processing strategies: where a request runs (documented on [`Strategy`]).

//! # Which strategy for which load
//!
//! Measured with the project's harness (`BENCHMARKS.md`), on 2 cores:
//!
//! - **Many long-lived connections** (chat, keep-alive HTTP, RPC sessions): [`Threading`]. A
//!   connection holds its thread for its whole life, and threads are cheap here: about 15 KiB
//!   of memory per idle connection, and 1000 persistent connections served faster than a tokio
//!   server on the same machine. A [`Pool`] serves at once only as many connections as it has
//!   workers, so it suits long-lived connections only where they are idle between requests
//!   and parked there (the HTTP layer's keep-alive; [`Strategy::parks_idle`]): then a few
//!   workers answer thousands of clients. A raw persistent stream holds its worker.
//! - **Keep-alive HTTP with handlers that compute rather than wait**: a [`Pool`] of one worker
//!   per CPU. Its idle workers wait for parked connections themselves, so with as many
//!   workers as cores a busy worker goes from one request to the next without sleeping, as
//!   tokio's do: 0.83-1.10x hyper on tokio and 1.05-1.19x actix-web at 16-256 connections
//!   here, where the default pool (CPUs + 4, for handlers that wait on other services) is
//!   0.75-0.77x hyper, its extra threads waking and preempting each other.
//! - **Many short requests, a new connection each** (classic socketserver clients, HTTP/1.0):
//!   [`Pool`] or [`Threading`], both as fast as a tokio server here. Threading reuses
//!   finished threads, so it does not pay a thread start per request; the pool also bounds
//!   threads and memory under bursts.
//! - **Untrusted or crash-prone handlers, or per-request isolation**: [`Forking`]; each request
//!   costs a `fork`, several times cheaper than Python's forking server but well below threads.
//! - **Datagrams, or tiny handlers**: [`Serial`]; one loop, no hand-off. A UDP echo on the
//!   serial strategy keeps up with a hand-written `recv_from`/`send_to` loop.

mod activity;
mod bookkeeping;
pub mod forking;
pub mod pool;
pub mod threading;

use std::fmt;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::server::parking::{Resume, Wake};
use crate::server::ParkedConnections;

pub use activity::Activity;
pub use forking::Forking;
pub use pool::Pool;
pub use threading::Threading;

/// One request, ready to run: everything serving it needs, owned.
///
/// Running it makes the handler, calls `setup`/`handle`/`finish`, reports failures to
/// `handle_error` and closes the connection or sends the datagram reply. It never panics: handler
/// panics are caught inside.
pub struct Job {
    work: Work,
    listener_fd: Option<RawFd>,
}

/// What a job runs.
enum Work {
    /// A new request: everything serving it, in a closure.
    New(Box<dyn FnOnce() -> bool + Send + 'static>),
    /// A parked connection whose client sent more (already boxed: no second allocation).
    Resumed(Resume),
}

impl Job {
    pub(crate) fn new(
        run: Box<dyn FnOnce() -> bool + Send + 'static>,
        listener_fd: Option<RawFd>,
    ) -> Job {
        Job {
            work: Work::New(run),
            listener_fd,
        }
    }

    /// Serves a parked connection's next request.
    pub(crate) fn resumed(parked: Resume) -> Job {
        Job {
            work: Work::Resumed(parked),
            listener_fd: None,
        }
    }

    /// Runs the request on the current thread; `true` if every handler method succeeded.
    pub fn run(self) -> bool {
        match self.work {
            Work::New(run) => run(),
            Work::Resumed(parked) => parked.resume(Wake::Readable),
        }
    }

    /// The server's listening socket, which a forked child does not need and should close.
    /// `None` for datagram servers, whose children reply through the server's socket.
    pub fn listener_fd(&self) -> Option<RawFd> {
        self.listener_fd
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("listener_fd", &self.listener_fd)
            .finish_non_exhaustive()
    }
}

/// What closing a server found: the requests it waited for, and those it stopped waiting for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Requests that were still running when closing began (or had finished since the serving
    /// loop last checked) and finished before the deadline.
    pub completed: usize,
    /// Requests still running when the deadline passed (or when not waited for): they were left
    /// to finish on their own.
    pub abandoned: usize,
    /// Connections of abandoned requests that [`Server::close`](crate::Server::close) shut down
    /// at the deadline, so that their handlers stop waiting on them (see its docs). Strategies
    /// leave it at 0; the server fills it in.
    pub shut_down: usize,
}

/// Whether the loop may take another request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// Take the next request.
    Ready,
    /// The waker fired while waiting: the server is being asked to stop.
    Woken,
}

/// Where requests run: Python's `process_request`, and the strategy's part of `service_actions`
/// and `server_close` (Python's mix-ins).
///
/// The strategy is the server's third type parameter. The serving loop accepts a request (or
/// receives a datagram), wraps everything that serving it takes into a [`Job`], and hands the job
/// to the strategy's [`process_request`](Strategy::process_request):
///
/// | strategy | Python | where the job runs |
/// |---|---|---|
/// | [`Serial`] | plain `TCPServer` | on the serving thread, one request at a time |
/// | [`Threading`] | `ThreadingMixIn` | on a thread of its own (finished threads are reused) |
/// | [`Forking`] | `ForkingMixIn` | in a new child process per request, at most `max_children` at once |
/// | [`Pool`] | none | on a fixed set of worker threads, fed by a bounded queue |
///
/// Each is a type implementing the same trait, never a change to the servers; the aliases such
/// as [`ThreadingTcpServer`](crate::ThreadingTcpServer) name the common combinations. A strategy
/// can also hold back the loop: the loop asks [`Strategy::wait_ready`] before every request,
/// which is how [`Forking`] (at `max_children`) and [`Pool`] (queue full) apply backpressure
/// (clients then wait in the kernel's backlog).
///
/// Closing a server lets the strategy wait for the requests still running, up to the server's
/// `close_timeout`, and report them in a [`DrainReport`]. The strategies that run requests
/// elsewhere count them in an [`Activity`], readable from any thread.
///
/// | | [`Threading`] | [`Forking`] | [`Pool`] |
/// |---|---|---|---|
/// | concurrency cap | none | `max_children` (40) | `workers` (CPUs + 4, at most 32) |
/// | waits on close | `block_on_close` (true) | `block_on_close` (true) | always |
/// | handler panic | caught in its thread | caught in the child, exit status 1 | caught, the worker lives on |
/// | shared state changes | seen by all | stay in the child | seen by all |
///
/// Strategies must be `Send` so that a server can be moved to the thread that serves it.
pub trait Strategy: Send + 'static {
    /// Runs (or arranges to run) one request (Python: `process_request`).
    ///
    /// # Errors
    ///
    /// When the job could not be started (a thread or process could not be created). The server
    /// logs it, closes the request, and keeps serving.
    fn process_request(&mut self, job: Job) -> Result<()>;

    /// Waits until the strategy can take another request, or until `waker` becomes readable.
    ///
    /// The default is always ready. Bounded strategies block here when full.
    fn wait_ready(&mut self, waker: BorrowedFd<'_>) -> Readiness {
        let _ = waker;
        Readiness::Ready
    }

    /// Housekeeping on every pass of the serving loop, such as reaping children.
    fn service_actions(&mut self) {}

    /// The longest the loop may sleep before calling [`service_actions`](Self::service_actions)
    /// again; `None` means the strategy has no housekeeping.
    fn service_interval(&self) -> Option<Duration> {
        None
    }

    /// Waits for running requests when the server closes (Python: the mix-in's part of
    /// `server_close`), at most until `deadline`.
    fn close(&mut self, deadline: Option<Instant>) -> DrainReport {
        let _ = deadline;
        DrainReport::default()
    }

    /// Whether a connection waiting for its client's next request is handed back to the
    /// serving loop (parked) instead of holding the thread that serves it.
    ///
    /// The HTTP layer parks a keep-alive connection once it has answered everything its
    /// client sent; the connection is watched with `epoll(7)` and served again when the
    /// client's next request arrives (Apache's event MPM): by the strategy's own threads if it
    /// [takes the parked connections](Self::take_parked), else by the serving loop, which
    /// watches them beside the listening socket and gives each to the strategy as a new job
    /// (a hand-off per burst of requests: two system calls and a wake-up of the serving
    /// thread). Then an idle client costs no thread, and a [`Pool`] of a few workers serves
    /// thousands of keep-alive clients. The same holds for a new HTTP connection whose first
    /// request has not arrived, a PROXY protocol header that has not, and a TLS handshake
    /// waiting for the client's next flight (these, unlike idle connections, are served to
    /// the end when the server closes, except on [`Serial`], whose closing never waits).
    ///
    /// Default `false`. [`Serial`] and [`Pool`] park (one thread, or a few, must not be held
    /// by idle clients); [`Threading`] does when asked ([`Threading::park_idle`]);
    /// [`Forking`] never (its requests run in other processes, which cannot hand a connection
    /// back).
    fn parks_idle(&self) -> bool {
        false
    }

    /// Offered the server's parked connections when it starts serving (if it
    /// [parks](Self::parks_idle) them): a strategy whose own threads wait for the parked
    /// connections' next requests keeps the handle and returns `true`, and the serving loop
    /// then leaves them to it (it still closes those that idle too long, and all of them at a
    /// stop). The default, `false`, leaves them to the loop, which hands each to
    /// [`process_request`](Self::process_request) as a job.
    ///
    /// The [`Pool`] takes them: its idle workers wait in [`ParkedConnections::wait`], so under
    /// load a worker that finishes a request takes the next ready connection without sleeping
    /// (leader/follower), where the loop's hand-off costs two thread wake-ups per request. It
    /// may be offered again (each `serve_forever` or `handle_request`); a strategy that keeps
    /// it must answer `true` each time, or the connections are watched twice.
    fn take_parked(&mut self, parked: &ParkedConnections) -> bool {
        let _ = parked;
        false
    }

    /// A handle on the counters of the requests this strategy runs elsewhere (threads, worker
    /// threads, child processes), readable from any thread while the server serves: for
    /// metrics, or to wait until every request has ended. `None` (the default) for a strategy
    /// that runs requests on the serving thread, such as [`Serial`], whose requests the
    /// server's own [`Stats`](crate::Stats) count.
    fn activity(&self) -> Option<Activity> {
        None
    }
}

/// Runs every request on the serving thread, one at a time (Python: plain `TCPServer`/`UDPServer`).
///
/// Simple and cheap, but one slow client holds up every other. Nothing is ever running when the
/// server closes, so closing never waits: connections parked in the middle of a request (a TLS
/// handshake, or an HTTP connection whose first request has not arrived) are closed with the
/// idle ones, where a threaded strategy would serve them within the grace period.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serial;

impl Strategy for Serial {
    fn process_request(&mut self, job: Job) -> Result<()> {
        job.run();
        Ok(())
    }

    /// Parks: a keep-alive client between requests would otherwise hold up every other.
    fn parks_idle(&self) -> bool {
        true
    }
}

impl<S: Strategy + ?Sized> Strategy for Box<S> {
    fn process_request(&mut self, job: Job) -> Result<()> {
        (**self).process_request(job)
    }

    fn wait_ready(&mut self, waker: BorrowedFd<'_>) -> Readiness {
        (**self).wait_ready(waker)
    }

    fn service_actions(&mut self) {
        (**self).service_actions()
    }

    fn service_interval(&self) -> Option<Duration> {
        (**self).service_interval()
    }

    fn close(&mut self, deadline: Option<Instant>) -> DrainReport {
        (**self).close(deadline)
    }

    fn activity(&self) -> Option<Activity> {
        (**self).activity()
    }

    fn parks_idle(&self) -> bool {
        (**self).parks_idle()
    }

    fn take_parked(&mut self, parked: &ParkedConnections) -> bool {
        (**self).take_parked(parked)
    }
}
