//! Ending a server: [`Server::close`] (the listen backlog, then the strategy's drain, then
//! shutting down connections at the deadline) and [`Server::serve_until_signal`], which serves
//! until a signal and then closes.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags};

use super::{Server, DEFAULT_GRACE_PERIOD};
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::server::connections::Reach;
use crate::server::parking::Wake;
use crate::shutdown::StopReceiver;
use crate::signals::{self, watch_signals, Delays};
use crate::strategy::{DrainReport, Job, Readiness, Strategy};
use crate::sys::{deadline_in, sleep_until, wake};
use crate::transport::Transport;

/// Most requests [`Server::close`] takes from the backlog.
const MAX_BACKLOG_TAKEN: usize = 4096;

impl<T: Transport, H: Handler, S: Strategy> Server<T, H, S> {
    /// Stops serving and releases the server (Python: `server_close`).
    ///
    /// In order: clients that connected before the close and still wait in the listen backlog
    /// are taken and served like any request (closing the socket would reset them; at most as
    /// many as the connection cap and the strategy take at once: the kernel refuses the rest);
    /// the socket is closed, so new clients are refused; the Unix socket file the server
    /// created is removed; then the strategy waits for requests still running, at most
    /// `close_timeout` (builder option), and reports how many finished and how many it stopped
    /// waiting for. Call it after [`serve_forever`](Self::serve_forever) has returned.
    ///
    /// From the start, [`ServerContext::is_closing`](crate::ServerContext::is_closing) is true,
    /// so handlers in keep-alive loops can end early.
    ///
    /// # At the deadline
    ///
    /// When `close_timeout` passes with requests still running, the reading side of their
    /// connections is shut down (`shutdown(2)` with `SHUT_RD`): a handler blocked reading sees
    /// end-of-file, so its thread ends soon after instead of running on for as long as the
    /// client keeps the connection open. [`DrainReport::shut_down`] counts them.
    ///
    /// Only reading is shut down, not writing: a handler that is busy (not waiting for its
    /// client) can still send the reply it owes, and abandoned requests keep their documented
    /// meaning (left to finish on their own). A handler blocked writing to a client that does
    /// not read is bounded by the `write_timeout` option instead.
    /// This reaches the stream connections served on threads of this process (the
    /// [`Serial`](crate::Serial), [`Threading`](crate::Threading) and [`Pool`](crate::Pool)
    /// strategies); requests that the strategy chose not to wait for (daemon threads,
    /// `block_on_close(false)`) are left alone, and so are forked children, whose connections
    /// live in other processes: give them a `read_timeout`, or have them check
    /// [`ServerContext::is_closing`](crate::ServerContext::is_closing).
    #[doc(alias = "server_close")]
    pub fn close(self) -> DrainReport {
        let deadline = self.close_timeout.map(deadline_in);
        self.close_by(deadline)
    }

    /// [`close`](Self::close), waiting for running requests until `deadline`.
    fn close_by(mut self, deadline: Option<Instant>) -> DrainReport {
        self.shared.context().handle().set_closing();
        // Idle connections close at once, as a stop closes idle ones (their clients retry);
        // those in the middle of a request (a TLS handshake, a first request on its way) go
        // to the strategy, to be served to the end within the grace period like any running
        // request. Not on a strategy that runs requests on this thread (`Serial`: closing
        // never waits), which would wait for each in turn, past the grace period.
        let inline = self.strategy.activity().is_none();
        let parked = self.shared.lot().map(|lot| lot.close()).unwrap_or_default();
        for parked in parked {
            if parked.idle() || inline {
                parked.resume(Wake::Close);
            } else {
                self.hand_over(Job::resumed(parked));
            }
        }
        self.drain_waiting();
        let taken = self.serve_backlog();
        if taken > 0 {
            log::info!(target: "socketserver::server",
                "{}: took {taken} requests that came before the close", self.server_address());
        }
        let Server {
            socket,
            mut strategy,
            socket_file,
            shared,
            ..
        } = self;
        let address = shared.context().server_address().clone();
        drop(socket);
        drop(socket_file);
        let mut report = strategy.close(deadline);
        if report.abandoned > 0 && deadline.is_some_and(|d| Instant::now() >= d) {
            report.shut_down = shared
                .context()
                .handle()
                .connections()
                .shutdown(Reach::Reads);
        }
        if report.abandoned > 0 {
            log::warn!(target: "socketserver::server",
                "closed {address}: {} requests completed, {} abandoned at the deadline ({} connections shut down)",
                report.completed, report.abandoned, report.shut_down);
        } else {
            log::info!(target: "socketserver::server",
                "closed {address}: {} running requests completed", report.completed);
        }
        report
    }

    /// Serves until SIGINT or SIGTERM arrives, then closes gracefully within a grace period.
    ///
    /// What happens, in order:
    ///
    /// 1. The handlers are installed, then the [`on_ready`](Self::on_ready) callback runs and
    ///    the server serves.
    /// 2. **The first signal** stops taking requests, at once or after the builder's
    ///    [`drain_delay`](crate::ServerBuilder::drain_delay) (serving on, not ready, so load
    ///    balancers move traffic first), and says so (through `log`, or on stderr when no
    ///    logger is installed). Idle keep-alive connections (see
    ///    [`StreamRequest::set_idle`](crate::StreamRequest::set_idle)) are closed at once;
    ///    running requests get the **grace period** to finish: the builder's
    ///    [`close_timeout`](crate::ServerBuilder::close_timeout), or [`DEFAULT_GRACE_PERIOD`]
    ///    (10 s) when that is `None`. When it passes, the reading side of every connection
    ///    still open is shut down, so a handler blocked reading (a silent client, or a
    ///    [`Serial`](crate::Serial) handler waiting on the serving thread) sees end-of-file and ends; see
    ///    [`close`](Self::close). Then the server is closed as `close` does.
    /// 3. **A second signal** stops at once: every connection is shut down both ways, so
    ///    handlers blocked reading or writing end now, `close` does not wait, and the previous
    ///    handlers are put back, so a third signal does what it would have done without this
    ///    server (by default, end the process).
    /// 4. Before returning, the signal dispositions in place before are restored: SIGINT and
    ///    SIGTERM work as before for the rest of the process.
    ///
    /// Other code may stop the server through a [`ShutdownHandle`](crate::ShutdownHandle) as well; the grace period
    /// then counts from that stop.
    ///
    /// Forked children ([`Forking`](crate::Forking)) share the terminal's process group, so
    /// Ctrl-C reaches them too, with the default action: they end at once.
    ///
    /// The signals are acted on by a thread of their own. Where handlers run elsewhere than
    /// the serving thread (every strategy but `Serial`), it starts at the first signal; until
    /// then the serving loop watches for them, so a server that was never signalled runs on
    /// one thread, and a `Forking` server's every `fork` avoids glibc's slower path for
    /// processes with several threads (6-24% CPU per connection here; `BENCHMARKS.md`).
    ///
    /// # Errors
    ///
    /// [`Error::Signal`] if the handlers cannot be installed, or what
    /// [`serve_forever`](Self::serve_forever) returns.
    pub fn serve_until_signal(mut self) -> Result<DrainReport> {
        let (watch, quit) = signals::Watch::start().map_err(|source| Error::Signal { source })?;
        let grace = self.close_timeout.unwrap_or(DEFAULT_GRACE_PERIOD);
        let handle = self.shutdown_handle();
        let stop = Arc::new(parking_lot::Mutex::new(None::<Instant>));
        // The thread that acts on the signals starts at the first one (the loop watches the
        // signals' socket until then; see `Signals`), or when serving ends, for signals
        // during the close.
        let watcher = Arc::new(parking_lot::Mutex::new(None));
        let start = {
            let stop = Arc::clone(&stop);
            let handle = handle.clone();
            let address = self.server_address().clone();
            let gate = Arc::clone(self.shared.context().gate());
            let delays = Delays {
                drain: self.drain_delay,
                grace,
            };
            let watcher = Arc::clone(&watcher);
            move |mut watch: signals::Watch| {
                let spawned = std::thread::Builder::new()
                    .name("socketserver-signals".into())
                    .spawn(move || {
                        watch_signals(&mut watch, &handle, &address, &gate, delays, &stop);
                    });
                match spawned {
                    Ok(thread) => *watcher.lock() = Some(thread),
                    // The watch is dropped with the closure: the signals get their previous
                    // handlers back (the default ends the process).
                    Err(e) => log::error!(target: "socketserver::server",
                        "cannot start the signal watching thread: {e}"),
                }
            }
        };
        // A strategy that runs handlers on this thread (`Serial`: no activity elsewhere) gets
        // the thread now: a handler blocked on a client would leave a signal unheard.
        let lazy = self.strategy.activity().is_some();
        let start: Box<dyn FnOnce(signals::Watch) + Send> = Box::new(start);
        if lazy {
            match Signals::new(watch, self.stops.fd(), start) {
                Ok(signals) => self.signals = Some(signals),
                Err(source) => return Err(Error::Signal { source }),
            }
        } else {
            start(watch);
        }
        let served = self.serve_forever();
        self.start_signal_thread();
        // The deadline counts from the stop: a signal's, or now for a stop by other means.
        let deadline = *stop.lock().get_or_insert_with(|| deadline_in(grace));
        let report = served.map(|()| self.close_by(Some(deadline)));
        quit.quit();
        let thread = watcher.lock().take();
        if thread.is_some_and(|t| t.join().is_err()) {
            log::error!(target: "socketserver::server", "the signal watching thread panicked");
        }
        report
    }

    /// Takes the clients waiting in the listen backlog (datagrams in the receive buffer) when
    /// closing: they came before the close, and closing the socket would reset them. Only as
    /// many as the connection cap and the strategy take without waiting, and at most
    /// [`MAX_BACKLOG_TAKEN`]; the kernel refuses the rest when the socket closes.
    fn serve_backlog(&mut self) -> usize {
        // Nothing waiting (the usual case): leave the strategy alone.
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        if !matches!(sleep_until(&mut fds, Some(Instant::now())), Ok(n) if n > 0) {
            return 0;
        }
        // A waker that is always set: a strategy with no room answers `Woken` at once
        // instead of waiting for a worker or a child.
        let Ok((set, always)) = wake::pair() else {
            return 0;
        };
        set.notify();
        let mut taken = 0;
        while taken < MAX_BACKLOG_TAKEN
            && self.shared.context().gate().has_room()
            && self.strategy.wait_ready(always.fd()) == Readiness::Ready
            && self.take_one()
        {
            taken += 1;
        }
        taken
    }
}

/// `serve_until_signal`'s signals, heard but not yet acted on: the thread that acts on them
/// starts at the first signal, so that a server that was not signalled runs (and forks) from
/// one thread: `fork` in a process with a second thread goes through glibc's slower
/// multi-threaded path (fork handlers, copy-on-write faults on its locks), which cost
/// `Forking` 6-24% CPU per connection (BENCHMARKS.md, issue 13). Until then the loop
/// watches the signals' socket, and every wait outside the loop's own (for room in the
/// strategy or under the cap) wakes for a signal as for a stop: it waits on `either`.
///
/// Only for strategies that never run a handler on the serving thread: a `Serial` handler
/// blocked reading a client would leave a signal unheard.
pub(super) struct Signals {
    watch: crate::signals::Watch,
    /// Readable when the stop waker or the signals' socket is (an epoll instance of both).
    either: nix::sys::epoll::Epoll,
    /// Starts the watching thread with the watch.
    start: Box<dyn FnOnce(crate::signals::Watch) + Send>,
}

/// What waits outside the loop's own `wait` watch to wake for a stop (or, until their thread
/// starts, a signal). A function of the two fields, so the strategy can be borrowed beside it.
pub(super) fn waker<'a>(signals: &'a Option<Signals>, stops: &'a StopReceiver) -> BorrowedFd<'a> {
    match signals {
        Some(signals) => signals.either.0.as_fd(),
        None => stops.fd(),
    }
}

impl Signals {
    /// The signals' socket, readable while a signal waits (for the loop's poll).
    pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.watch.fd()
    }

    /// Starts the watching thread.
    pub(super) fn start(self) {
        (self.start)(self.watch);
    }

    /// Watches `watch` until `start` is called with it; `stops` is the server's stop waker.
    pub(super) fn new(
        watch: crate::signals::Watch,
        stops: BorrowedFd<'_>,
        start: Box<dyn FnOnce(crate::signals::Watch) + Send>,
    ) -> io::Result<Signals> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
        let either = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        either.add(stops, EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        if let Some(fd) = watch.fd() {
            either.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, 1))?;
        }
        Ok(Signals {
            watch,
            either,
            start,
        })
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests;
