//! One child process per request (Python's `ForkingMixIn`).

use std::convert::Infallible;
use std::fmt;
use std::os::fd::BorrowedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::bookkeeping::{drain_report, Ledger, REAP_INTERVAL};
use super::{Activity, DrainReport, Job, Readiness, Strategy};
use crate::error::{Error, Result};
use crate::sys;

/// Forks between two trims of the parent's heap (see [`sys::process::trim_heap`]); the
/// first fork trims too, as the heap then holds what starting the program left free.
const TRIM_EVERY: u32 = 1024;

/// How often waiting for a child to exit checks again (at the limit, and when closing).
const REAP_POLL: Duration = Duration::from_millis(10);

/// Runs every request in a child process of its own (Python: `ForkingMixIn`, as in
/// `ForkingTCPServer`).
///
/// Works with all four transports. The child gets a copy of the server's memory, serves the one
/// request, and exits; a crash or a leak in a handler dies with its child. Stream children close
/// their copy of the listening socket; datagram children reply through the server's socket, which
/// they share with the parent, as in Python.
///
/// # Options
///
/// - [`max_children`](Self::max_children) (default 40, as Python): at the limit the server
///   stops taking requests until a child exits; new clients wait in the kernel's backlog (or,
///   for datagrams, in the socket's receive buffer). Python checks the limit after forking, so
///   it can run one child more; here it is never exceeded.
/// - [`block_on_close`](Self::block_on_close) (default `true`): closing the server waits for the
///   children, up to the server's `close_timeout`.
///
/// # Reaping
///
/// Only this strategy's own children are waited for, each by its pid with `WNOHANG`. Python
/// calls `waitpid(-1)` at the limit, which also reaps children that other code in the program
/// started and is waiting for. Children are reaped on every pass of the serving loop, at least
/// every 100 ms while any run, every 10 ms while the limit is reached, and when closing; so
/// zombies do not pile up (Python's bpo-11109). Their exit statuses are counted in the
/// strategy's [`activity`](Strategy::activity): [`succeeded`](Activity::succeeded) (status 0:
/// every handler method succeeded) and [`failed`](Activity::failed) (status 1: a handler failed
/// or panicked, which the child reported to `handle_error` first; or killed by a signal).
///
/// # The child
///
/// After `fork`, the child closes the listening socket, sets SIGINT and SIGTERM back to their
/// default action (so a Ctrl-C to the process group ends it, instead of running the parent's
/// handlers, which would wake the parent's loop), runs the request, and leaves through
/// `_exit(0)` or `_exit(1)`. It never returns into the serving loop, never unwinds, and runs no
/// destructors or exit handlers: the parent's buffers, its Unix socket file and its threads'
/// state are not the child's to flush or remove.
///
/// The child keeps none of the server's bookkeeping for its request (the registry of live
/// connections, the request's duration in [`Server::stats`](crate::Server::stats)): its copy
/// would die with it unread, and every page a child writes or first runs costs it a page
/// fault. Before its first fork, and every 1024th, the parent gives the free memory of its
/// heap back to the system (glibc's `malloc_trim`), so that each fork copies less.
///
/// # Safety and threads
///
/// `fork` copies only the calling thread. POSIX allows the child of a multi-threaded process
/// only async-signal-safe calls, because a lock another thread held at the moment of the fork
/// stays locked forever in the child. Serving a request needs more than that (it allocates, and
/// the handler may log), so this strategy relies on what Linux and glibc provide, and on the
/// design below:
///
/// - glibc resets its `malloc` locks in the child (through its `fork` handlers), so allocating
///   works; so does everything the request pipeline itself does (socket calls, formatting).
/// - No lock of this library is held across `fork`: the serving thread forks between requests,
///   holding nothing.
/// - Handlers in the child must not rely on locks that other threads may hold: a `Mutex` in the
///   shared state, `stdout`/`stderr` (and so a logger writing there) while another thread
///   prints, or any library that keeps a global lock. If the parent has no other threads
///   (serve on the main thread, no thread pools), none of this applies.
/// - A handler that panics in the child runs the panic hook, which takes std's global hook and
///   backtrace locks: if another thread of the parent was panicking at the moment of the fork,
///   the child hangs (it holds only its own connection, so the server goes on, one child
///   short of `max_children`). Report failures as errors rather than panics.
/// - The child's changes to shared state stay in the child: counters and channels in
///   [`Handler::State`](crate::Handler::State) are copies. Report back through a socket, a pipe
///   or a file.
///
/// Prefer [`Threading`](super::Threading) or [`Pool`](super::Pool) unless the isolation of a
/// process is what you need.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use socketserver::{Forking, ForkingTcpServer, HandleResult, Handler, StreamRequest, StreamRequestHandler};
///
/// /// Answers with the pid of the process that served the request.
/// #[derive(Handler)]
/// struct Pid;
///
/// impl StreamRequestHandler for Pid {
///     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
///         write!(request.wfile, "{}", std::process::id())?;
///         Ok(())
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut server = ForkingTcpServer::<Pid>::builder()
///     .strategy(Forking::new().max_children(4))
///     .bind("127.0.0.1:0")?;
/// let addr = server.server_address().as_inet().expect("an internet address");
/// let handle = server.shutdown_handle();
/// let serving = std::thread::spawn(move || server.serve_forever().map(|()| server));
///
/// let mut pid = String::new();
/// std::net::TcpStream::connect(addr)?.read_to_string(&mut pid)?;
/// assert_ne!(pid.parse::<u32>()?, std::process::id(), "served by a child");
///
/// handle.shutdown();
/// let server = serving.join().expect("serving thread")?;
/// server.close(); // reaps the children
/// # Ok(())
/// # }
/// ```
#[doc(alias = "ForkingMixIn")]
#[must_use = "a strategy does nothing until it is given to a server builder"]
pub struct Forking {
    max_children: usize,
    block_on_close: bool,
    /// Our children not yet reaped (Python: `active_children`).
    children: Vec<Pid>,
    /// The counters, which only reaping moves on: closing counts the children reaped since
    /// it began.
    ledger: Ledger,
    /// Forks until the next trim of the heap: 0 trims before the next fork.
    until_trim: u32,
}

impl Forking {
    /// Python's default `max_children`.
    pub const DEFAULT_MAX_CHILDREN: usize = 40;

    /// A process per request, with Python's defaults: at most 40 children, waited for on close.
    pub fn new() -> Forking {
        Forking {
            max_children: Forking::DEFAULT_MAX_CHILDREN,
            block_on_close: true,
            children: Vec::new(),
            ledger: Ledger::default(),
            until_trim: 0,
        }
    }

    /// The most children running at once (Python: `max_children`). Default:
    /// [`Forking::DEFAULT_MAX_CHILDREN`] (40). A value of 0 is taken as 1.
    pub fn max_children(mut self, max: usize) -> Forking {
        self.max_children = max.max(1);
        self
    }

    /// Whether closing the server waits for the children (Python: `block_on_close`).
    /// Default: `true`.
    ///
    /// With `false`, closing reaps the children that have exited and reports the others as
    /// abandoned; they run on and are reaped by nobody, so they stay zombies until the program
    /// exits.
    pub fn block_on_close(mut self, block: bool) -> Forking {
        self.block_on_close = block;
        self
    }

    /// Waits, without blocking, for each of our children; records the statuses of those that
    /// exited.
    fn reap(&mut self) {
        let activity = self.ledger.activity();
        self.children.retain(|&pid| loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return true,
                Ok(WaitStatus::Exited(_, 0)) => {
                    activity.record(true);
                    return false;
                }
                Ok(WaitStatus::Exited(_, status)) => {
                    log::debug!(target: "socketserver::forking", "child {pid} exited with status {status}");
                    activity.record(false);
                    return false;
                }
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    log::warn!(target: "socketserver::forking", "child {pid} was killed by {signal}");
                    activity.record(false);
                    return false;
                }
                // Stopped or continued: still ours, still to be reaped.
                Ok(_) => return true,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // ECHILD: someone else (a `waitpid(-1)` elsewhere in the program) reaped
                    // it, so its status is lost.
                    log::warn!(target: "socketserver::forking", "cannot wait for child {pid}: {e}");
                    return false;
                }
            }
        });
        activity.set_active(self.children.len());
        activity.set_tracked(self.children.len());
    }
}

impl Default for Forking {
    fn default() -> Forking {
        Forking::new()
    }
}

impl fmt::Debug for Forking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forking")
            .field("max_children", &self.max_children)
            .field("block_on_close", &self.block_on_close)
            .field("children", &self.children)
            .field("activity", self.ledger.activity())
            .finish()
    }
}

/// The child's side of `fork`: serve the request, then `_exit`. Never returns.
fn child(job: Job) -> Infallible {
    if let Some(listener) = job.listener_fd() {
        // The child owns a copy of the listening socket it must not accept on. Closing the raw
        // fd is fine: the object owning it is never dropped here, as the child `_exit`s.
        sys::process::close_in_child(listener);
    }
    sys::process::mark_request_child();
    sys::process::default_signals_in_child(&[Signal::SIGINT, Signal::SIGTERM]);
    // Job::run catches handler panics; this guard covers anything else, so that the child
    // never unwinds into the parent's serving loop.
    let ok = catch_unwind(AssertUnwindSafe(|| job.run())).unwrap_or(false);
    sys::process::exit_now(if ok { 0 } else { 1 })
}

impl Strategy for Forking {
    fn activity(&self) -> Option<Activity> {
        Some(self.ledger.activity().clone())
    }

    /// Forks a child that serves the request (Python: `ForkingMixIn.process_request`). The
    /// parent closes its copy of the connection and returns at once.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] when `fork` fails (`EAGAIN`: too many processes, or `ENOMEM`); the
    /// request is closed unserved.
    fn process_request(&mut self, job: Job) -> Result<()> {
        // The child may only rely on what stays usable after a fork in a multi-threaded
        // process (see "Safety and threads" on `Forking`, and the contract of
        // `sys::process::fork`): it runs `child`, which closes an fd, resets two signals, runs
        // the request with glibc's malloc (reset in the child by glibc's fork handlers) and
        // `_exit`s. No lock of this library is held here: the serving thread calls this
        // between requests, and `self` is reached only through `&mut`. Handlers are documented
        // not to rely on locks other threads may hold.
        if self.until_trim == 0 {
            // Fewer pages in the parent: fewer for every fork to copy, and no free chunks
            // for every child to merge (each a copy-on-write fault) when it first allocates.
            sys::process::trim_heap();
            self.until_trim = TRIM_EVERY;
        }
        self.until_trim -= 1;
        let mut job = Some(job);
        let forked = sys::process::fork(|| match job.take() {
            Some(job) => child(job),
            None => sys::process::exit_now(1),
        });
        match forked {
            Ok(child) => {
                // The child owns the connection now; dropping the job closes the parent's copy
                // (no shutdown, which would cut the child's connection too).
                drop(job);
                log::debug!(target: "socketserver::forking", "forked child {child}");
                self.children.push(child);
                let activity = self.ledger.activity();
                activity.add_started();
                activity.set_active(self.children.len());
                activity.set_tracked(self.children.len());
                Ok(())
            }
            Err(source) => Err(Error::Spawn {
                what: "a request child process",
                source,
            }),
        }
    }

    /// Blocks while `max_children` children run, reaping every 10 ms, until one exits or the
    /// server is asked to stop.
    fn wait_ready(&mut self, waker: BorrowedFd<'_>) -> Readiness {
        loop {
            self.reap();
            if self.children.len() < self.max_children {
                return Readiness::Ready;
            }
            let mut fds = [PollFd::new(waker, PollFlags::POLLIN)];
            match sys::sleep_until(&mut fds, Some(Instant::now() + REAP_POLL)) {
                Ok(0) => {}
                Ok(_) => return Readiness::Woken,
                Err(e) => {
                    // The serving loop polls the same fd next and reports the error.
                    log::error!(target: "socketserver::forking", "waiting for a child to exit: {e}");
                    return Readiness::Woken;
                }
            }
        }
    }

    /// Reaps children that have exited (Python: `collect_children` in `service_actions`).
    fn service_actions(&mut self) {
        self.reap();
    }

    /// 100 ms while children run, so they are reaped even when no request comes; `None`
    /// otherwise.
    fn service_interval(&self) -> Option<Duration> {
        (!self.children.is_empty()).then_some(REAP_INTERVAL)
    }

    /// Reaps the children, waiting for them at most until `deadline` if `block_on_close`
    /// (Python: `collect_children(blocking=True)` in `server_close`).
    ///
    /// `completed` counts the children reaped while closing; `abandoned` those still running
    /// at the deadline. They are not killed, and unlike requests on threads their connections
    /// are not shut down at the deadline (they live in the children): bound them with the
    /// server's `read_timeout`, or have keep-alive handlers check
    /// [`ServerContext::is_closing`](crate::ServerContext::is_closing), which a child sees
    /// only if the stop was requested before it was forked.
    fn close(&mut self, deadline: Option<Instant>) -> DrainReport {
        self.ledger.look();
        loop {
            self.reap();
            if self.children.is_empty() || !self.block_on_close {
                break;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            let next = deadline.map_or(now + REAP_POLL, |d| d.min(now + REAP_POLL));
            // Library polling for our own pids only: `waitpid(-1)` would block properly but
            // could reap other code's children.
            if let Err(e) = sys::sleep_until(&mut [], Some(next)) {
                log::error!(target: "socketserver::forking", "waiting for the children to exit: {e}");
                break;
            }
        }
        drain_report(
            "socketserver::forking",
            "children",
            self.ledger.finished_since_look(),
            self.children.len(),
        )
    }
}

impl Drop for Forking {
    /// Reaps the children that have exited; never waits.
    fn drop(&mut self) {
        self.reap();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use nix::sys::resource::{getrusage, UsageWho};

    use super::Forking;
    use crate::strategy::{Job, Strategy};

    /// Most page faults the child may take for one small allocation of 2 KiB.
    const BOUND: u64 = 12;

    /// A parent whose heap holds free chunks waiting in malloc's fast bins, each on a page of
    /// its own (as a server's start-up leaves them): the child's first allocation of a size
    /// malloc serves from its large bins merges them, touching, so copying, each of those
    /// pages, unless the parent gave them back before forking.
    #[test]
    fn a_child_does_not_copy_the_pages_of_the_parents_free_chunks() {
        const CHUNKS: usize = 40;
        let mut spacers = Vec::with_capacity(CHUNKS);
        let mut small = Vec::with_capacity(CHUNKS);
        for _ in 0..CHUNKS {
            small.push(Box::new([1u8; 48]));
            spacers.push(vec![1u8; 4096]);
        }
        // 40 frees of one small size: 7 go to the thread's cache, the others to the fast bins.
        drop(small);

        let (mut report, mut child_end) = UnixStream::pair().expect("a socket pair");
        let mut forking = Forking::new();
        let job = Job::new(
            Box::new(move || {
                let before = getrusage(UsageWho::RUSAGE_SELF).map(|u| u.minor_page_faults());
                let buffer = std::hint::black_box(vec![1u8; 2048]);
                let after = getrusage(UsageWho::RUSAGE_SELF).map(|u| u.minor_page_faults());
                drop(buffer);
                let faults = match (before, after) {
                    (Ok(before), Ok(after)) => u64::try_from(after - before).unwrap_or(u64::MAX),
                    _ => u64::MAX,
                };
                child_end.write_all(&faults.to_le_bytes()).is_ok()
            }),
            None,
        );
        forking.process_request(job).expect("fork");
        report
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a read timeout");
        let mut faults = [0u8; 8];
        report.read_exact(&mut faults).expect("the child's count");
        let faults = u64::from_le_bytes(faults);
        let report = forking.close(Some(Instant::now() + Duration::from_secs(10)));
        assert_eq!(report.abandoned, 0, "the child exited");
        drop(spacers);
        eprintln!("the child's 2 KiB allocation took {faults} page faults (bound {BOUND})");
        assert!(faults <= BOUND, "{faults} page faults (bound {BOUND})");
    }
}
