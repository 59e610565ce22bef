//! The server: binding, the serving loop, shutdown and closing (Python's `BaseServer`).

mod builder;
pub(crate) mod limits;
pub(crate) mod process;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

pub use builder::{ServerBuilder, DEFAULT_BACKLOG, DEFAULT_GRACE_PERIOD, DEFAULT_MAX_PACKET_SIZE};
pub use process::Serve;

use crate::addr::Address;
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::report::{say, say_limited, Limit};
use crate::shutdown::{ShutdownHandle, Waker};
use crate::signals;
use crate::stats::{Counters, Stats};
use crate::strategy::{DrainReport, Job, Readiness, Serial, Strategy};
use crate::sys::poll_timeout_until;
use crate::transport::{self, Received, SocketFile, Transport};
use crate::wake;
use limits::{Gate, Reach};
use log::Level;

/// What a handler sees of its server (Python: the handler's `server` attribute).
///
/// It gives the server's address, the shared [`state`](Self::state), and a way to stop the
/// server. The same context is shared by every request of a server.
pub struct ServerContext<S = ()> {
    server_address: Address,
    state: Arc<S>,
    pub(crate) shutdown: ShutdownHandle,
    pub(crate) counters: Counters,
    /// Requests taken and not finished, and the `max_connections` cap.
    pub(crate) gate: Arc<Gate>,
    /// Bytes held by buffered HTTP request bodies.
    #[cfg(feature = "http")]
    pub(crate) bodies: limits::Budget,
}

impl<S> ServerContext<S> {
    /// The address the server is bound to (Python: `server_address`). When port 0 was asked
    /// for, this has the port the system picked.
    pub fn server_address(&self) -> &Address {
        &self.server_address
    }

    /// The state shared by every request (the handler's [`Handler::State`]).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The shared state's `Arc`, to keep a reference beyond the request.
    pub fn state_arc(&self) -> &Arc<S> {
        &self.state
    }

    /// The server's counters: requests running, served, failed and rejected.
    pub fn stats(&self) -> Stats {
        let mut stats = self.counters.snapshot();
        stats.open = self.gate.open();
        stats
    }

    /// Whether the server is stopping or closed: a shutdown was requested (through a
    /// [`ShutdownHandle`], a signal with `serve_until_signal`, or [`Server::close`]).
    ///
    /// It stays set after `serve_forever` returns (unlike the stop request itself, which the
    /// loop clears as it acts on it). A handler that serves several requests on one connection
    /// (keep-alive) should check it between requests and end the connection when it is set, so
    /// that closing the server does not wait for the client to hang up.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::io::{BufRead, Write};
    /// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler};
    /// # struct Lines;
    /// # impl Handler for Lines { type State = (); fn new(_: &ServerContext) -> Self { Lines } }
    /// impl StreamRequestHandler for Lines {
    ///     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
    ///         let mut line = String::new();
    ///         // One line per request, until the client hangs up or the server closes.
    ///         while !request.server().is_closing() && request.rfile.read_line(&mut line)? > 0 {
    ///             request.wfile.write_all(line.as_bytes())?;
    ///             line.clear();
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn is_closing(&self) -> bool {
        self.shutdown.is_closing()
    }

    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Asks the server to stop (Python: `server.shutdown()` called from a handler).
    ///
    /// From inside a handler this never blocks: the serving loop stops once the current
    /// request is done. See [`ShutdownHandle::shutdown`].
    pub fn shutdown(&self) {
        self.shutdown.shutdown();
    }
}

impl<S> fmt::Debug for ServerContext<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContext")
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

/// Options each stream request is set up with.
#[derive(Debug, Clone)]
pub(crate) struct RequestOptions {
    pub rbufsize: usize,
    pub wbufsize: usize,
    pub read_timeout: Option<Duration>,
    pub write_timeout: Option<Duration>,
    pub nodelay: bool,
    /// Whether `nodelay` and the timeouts were set on the TCP listening socket, from which
    /// Linux copies them to every accepted connection: then no connection needs a system call
    /// of its own for them. (Unix stream sockets do not inherit timeouts.)
    pub inherited: bool,
}

/// What every request of a server shares.
#[doc(hidden)]
#[derive(Debug)]
pub struct Shared<S> {
    pub(crate) context: ServerContext<S>,
    pub(crate) options: RequestOptions,
}

/// What one call of [`Server::handle_request`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "handle_request reports whether a request came at all"]
pub enum HandleOutcome {
    /// A request came and was handed to the strategy (or was rejected or dropped and reported).
    Handled,
    /// `timeout` passed with no request; `handle_timeout` was called.
    TimedOut,
    /// A shutdown was requested while waiting.
    Stopped,
}

/// Most requests [`Server::close`] takes from the backlog.
const MAX_BACKLOG_TAKEN: usize = 4096;

/// Most requests taken in one wake-up of the loop, so that housekeeping still runs under load.
const MAX_REQUESTS_PER_WAKE: usize = 64;

/// How long the loop pauses when `accept(2)` fails for lack of resources (`EMFILE` and the like),
/// so it does not spin while the listening socket stays readable.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A shortage of descriptors or memory is over once requests are taken with no `accept(2)`
/// failing for this long (or once the loop has caught up with the waiting clients).
const SHORTAGE_OVER: Duration = Duration::from_secs(1);

/// `accept(2)` failing for lack of resources: since when, and how often.
#[derive(Debug, Clone, Copy)]
struct Shortage {
    failures: u64,
    last: Instant,
}

/// A socket server: a transport `T`, a request handler `H` and a processing strategy `S`.
///
/// Use the aliases: [`TcpServer`], [`UdpServer`], [`UnixStreamServer`], [`UnixDatagramServer`],
/// each with a strategy parameter that defaults to [`Serial`].
///
/// # The serving loop
///
/// [`serve_forever`](Self::serve_forever) waits in `poll(2)` on the server's socket and on a
/// waker. For every request it calls the handler's `verify_request`, wraps the request into a
/// [`Job`] and hands it to the strategy. It calls `service_actions` on every pass, and at least
/// every `poll_interval` when idle. A [`ShutdownHandle`] wakes it at once.
///
/// # Closing
///
/// [`close`](Self::close) (Python: `server_close`) stops listening, removes the Unix socket file
/// the server created, and lets the strategy wait for running requests. Dropping the server does
/// the same without waiting.
pub struct Server<T: Transport, H: Handler, S: Strategy = Serial> {
    socket: T::Socket,
    shared: Arc<Shared<H::State>>,
    strategy: S,
    waker: Waker,
    buf: Vec<u8>,
    /// The current shortage, if `accept(2)` is failing for lack of resources: its first failure
    /// is a warning, the others debug messages, so a long shortage does not flood the log.
    shortage: Option<Shortage>,
    socket_file: Option<SocketFile>,
    poll_interval: Duration,
    timeout: Option<Duration>,
    close_timeout: Option<Duration>,
    /// Called once, when the loop first waits for requests.
    on_ready: Option<ReadyCallback>,
    _handler: PhantomData<fn() -> H>,
}

/// What [`Server::on_ready`] runs.
type ReadyCallback = Box<dyn FnOnce(&Address) + Send>;

/// Whether the `max_connections` cap lets the loop take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    Free,
    Woken,
    Full,
}

/// A TCP server (Python: `TCPServer`, or with a strategy, `ThreadingTCPServer` and the like).
#[doc(alias = "TCPServer")]
pub type TcpServer<H, S = Serial> = Server<transport::Tcp, H, S>;
/// A UDP server (Python: `UDPServer`).
#[doc(alias = "UDPServer")]
pub type UdpServer<H, S = Serial> = Server<transport::Udp, H, S>;
/// A Unix stream server (Python: `UnixStreamServer`).
pub type UnixStreamServer<H, S = Serial> = Server<transport::UnixStream, H, S>;
/// A Unix datagram server (Python: `UnixDatagramServer`).
pub type UnixDatagramServer<H, S = Serial> = Server<transport::UnixDatagram, H, S>;

/// What woke the loop.
enum Event {
    Readable,
    Stop,
    Timeout,
}

impl<T: Transport, H: Serve<T>, S: Strategy> Server<T, H, S> {
    /// The address the server is bound to (Python: `server_address`). When port 0 was asked
    /// for, this is the port the system picked.
    #[doc(alias = "local_addr")]
    pub fn server_address(&self) -> &Address {
        self.shared.context.server_address()
    }

    /// What handlers see of this server: address, state and shutdown.
    pub fn context(&self) -> &ServerContext<H::State> {
        &self.shared.context
    }

    /// The state shared by every request.
    pub fn state(&self) -> &H::State {
        self.shared.context.state()
    }

    /// A cloneable handle that stops [`serve_forever`](Self::serve_forever) from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shared.context.shutdown.clone()
    }

    /// The server's counters: requests running, served, failed and rejected.
    pub fn stats(&self) -> Stats {
        self.shared.context.stats()
    }

    /// The processing strategy.
    pub fn strategy(&self) -> &S {
        &self.strategy
    }

    /// Runs `ready` once, when the server first waits for requests: in
    /// [`serve_forever`](Self::serve_forever), [`handle_request`](Self::handle_request) or
    /// [`serve_until_signal`](Self::serve_until_signal), after everything they set up
    /// (with `serve_until_signal`, its signal handlers) is in place.
    ///
    /// Announce the server here rather than before serving: a supervisor or a test that reads
    /// the announcement and at once sends `SIGTERM` then finds the handlers installed, and a
    /// stop always goes through the graceful path (without it, a signal in between kills the
    /// process and leaves a Unix socket file behind). Setting it again replaces the callback.
    ///
    /// # Examples
    ///
    /// ```
    /// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
    /// # struct Echo;
    /// # impl Handler for Echo { type State = (); fn new(_: &ServerContext) -> Self { Echo } }
    /// # impl StreamRequestHandler for Echo {
    /// #     fn handle(&mut self, _: &mut StreamRequest<'_>) -> HandleResult { Ok(()) }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut server = TcpServer::<Echo>::bind("127.0.0.1:0")?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// server.on_ready(move |address| {
    ///     let _ = tx.send(address.to_string());
    /// });
    /// let stop = server.shutdown_handle();
    /// let serving = std::thread::spawn(move || server.serve_forever());
    /// println!("serving on {}", rx.recv()?);
    /// stop.shutdown();
    /// serving.join().expect("serving thread")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_ready(&mut self, ready: impl FnOnce(&Address) + Send + 'static) {
        self.on_ready = Some(Box::new(ready));
    }

    /// Runs the `on_ready` callback, the first time only.
    fn ready(&mut self) {
        if let Some(ready) = self.on_ready.take() {
            ready(self.shared.context.server_address());
        }
    }

    /// Serves requests until a shutdown is requested (Python: `serve_forever`).
    ///
    /// Returns `Ok(())` once [`ShutdownHandle::shutdown`] (or a signal, with
    /// [`serve_until_signal`](Self::serve_until_signal)) asked it to stop. Requests still running
    /// in other threads or processes are not waited for here; [`close`](Self::close) does that.
    ///
    /// Failed requests never end the loop: they go to `handle_error`. Failures of `accept(2)`
    /// are logged (target `socketserver::accept`); when they come from a lack of descriptors or
    /// memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) the loop pauses 100 ms before accepting
    /// again, instead of spinning on a socket that stays readable. Such a shortage is logged
    /// once as a warning (further attempts at debug level), and once at info level when it is
    /// over: when the loop has caught up with the waiting clients, or has taken requests
    /// with no failure for a second. A server that hovers at its limit, where every
    /// descriptor freed is taken at once, is one shortage: one warning.
    ///
    /// # Errors
    ///
    /// [`Error::Serve`] if waiting on the socket fails (`poll(2)` errors other than `EINTR`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::io::{Read, Write};
    /// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
    /// struct Hello;
    /// impl Handler for Hello {
    ///     type State = ();
    ///     fn new(_: &ServerContext) -> Self { Hello }
    /// }
    /// impl StreamRequestHandler for Hello {
    ///     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
    ///         request.wfile.write_all(b"hello\n")?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut server = TcpServer::<Hello>::bind("127.0.0.1:0")?;
    /// let addr = server.server_address().as_inet().expect("an internet address");
    /// let handle = server.shutdown_handle();
    /// let serving = std::thread::spawn(move || server.serve_forever());
    ///
    /// let mut reply = String::new();
    /// std::net::TcpStream::connect(addr)?.read_to_string(&mut reply)?;
    /// assert_eq!(reply, "hello\n");
    ///
    /// handle.shutdown();
    /// serving.join().expect("serving thread")?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn serve_forever(&mut self) -> Result<()> {
        let handle = self.shared.context.shutdown.clone();
        let _serving = handle.start_serving();
        log::info!(target: "socketserver::server", "serving {} on {}", T::NAME, self.server_address());
        self.ready();
        let result = loop {
            if handle.is_requested() {
                break Ok(());
            }
            match self.wait(self.loop_interval()) {
                Err(source) => {
                    break Err(Error::Serve {
                        addr: self.server_address().clone(),
                        source,
                    })
                }
                Ok(Event::Stop) => break Ok(()),
                Ok(Event::Readable) => self.take_requests(&handle),
                Ok(Event::Timeout) => {}
            }
            self.service_actions();
        };
        self.waker.drain();
        log::info!(target: "socketserver::server", "stopped serving on {}", self.server_address());
        result
    }

    /// Waits for one request and handles it (Python: `handle_request`).
    ///
    /// Waits at most the server's `timeout` (builder option; `None` waits forever). If nothing
    /// came by then it calls the handler's `handle_timeout` and returns
    /// [`HandleOutcome::TimedOut`]. A shutdown request ends the wait with
    /// [`HandleOutcome::Stopped`] (Python ignores it here).
    ///
    /// # Errors
    ///
    /// [`Error::Serve`] if waiting on the socket fails.
    pub fn handle_request(&mut self) -> Result<HandleOutcome> {
        let handle = self.shared.context.shutdown.clone();
        let deadline = self.timeout.map(|t| Instant::now() + t);
        self.ready();
        let outcome = loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if handle.is_requested() {
                break HandleOutcome::Stopped;
            }
            let event = self.wait(remaining).map_err(|source| Error::Serve {
                addr: self.server_address().clone(),
                source,
            })?;
            match event {
                Event::Stop => break HandleOutcome::Stopped,
                Event::Timeout => {
                    H::handle_timeout(&self.shared.context);
                    break HandleOutcome::TimedOut;
                }
                Event::Readable => {
                    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    match self.wait_room(remaining) {
                        Room::Free => {}
                        Room::Woken => continue,
                        Room::Full if deadline.is_some_and(|d| Instant::now() >= d) => {
                            H::handle_timeout(&self.shared.context);
                            break HandleOutcome::TimedOut;
                        }
                        Room::Full => continue,
                    }
                    if self.strategy.wait_ready(self.waker.fd()) == Readiness::Woken {
                        continue;
                    }
                    if self.take_one() {
                        break HandleOutcome::Handled;
                    }
                }
            }
        };
        if outcome == HandleOutcome::Stopped {
            self.waker.drain();
            handle.clear();
        }
        self.service_actions();
        Ok(outcome)
    }

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
    /// From the start, [`ServerContext::is_closing`] is true, so handlers in keep-alive loops
    /// can end early.
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
    /// [`Serial`], [`Threading`](crate::Threading) and [`Pool`](crate::Pool)
    /// strategies); requests that the strategy chose not to wait for (daemon threads,
    /// `block_on_close(false)`) are left alone, and so are forked children, whose connections
    /// live in other processes: give them a `read_timeout`, or have them check
    /// [`ServerContext::is_closing`].
    #[doc(alias = "server_close")]
    pub fn close(self) -> DrainReport {
        let deadline = self
            .close_timeout
            .map(|t| Instant::now().checked_add(t).unwrap_or_else(far_future));
        self.close_by(deadline)
    }

    /// [`close`](Self::close), waiting for running requests until `deadline`.
    fn close_by(mut self, deadline: Option<Instant>) -> DrainReport {
        self.shared.context.shutdown.set_closing();
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
        let address = shared.context.server_address().clone();
        drop(socket);
        drop(socket_file);
        let mut report = strategy.close(deadline);
        if report.abandoned > 0 && deadline.is_some_and(|d| Instant::now() >= d) {
            report.shut_down = shared.context.shutdown.connections().shutdown(Reach::Reads);
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
    /// 2. **The first signal** stops taking requests at once, and says so (through `log`, or
    ///    on stderr when no logger is installed). Idle keep-alive connections (see
    ///    [`StreamRequest::set_idle`](crate::StreamRequest::set_idle)) are closed at once;
    ///    running requests get the **grace period** to finish: the builder's
    ///    [`close_timeout`](ServerBuilder::close_timeout), or [`DEFAULT_GRACE_PERIOD`]
    ///    (10 s) when that is `None`. When it passes, the reading side of every connection
    ///    still open is shut down, so a handler blocked reading (a silent client, or a
    ///    [`Serial`] handler waiting on the serving thread) sees end-of-file and ends; see
    ///    [`close`](Self::close). Then the server is closed as `close` does.
    /// 3. **A second signal** stops at once: every connection is shut down both ways, so
    ///    handlers blocked reading or writing end now, `close` does not wait, and the previous
    ///    handlers are put back, so a third signal does what it would have done without this
    ///    server (by default, end the process).
    /// 4. Before returning, the signal dispositions in place before are restored: SIGINT and
    ///    SIGTERM work as before for the rest of the process.
    ///
    /// Other code may stop the server through a [`ShutdownHandle`] as well; the grace period
    /// then counts from that stop.
    ///
    /// Forked children ([`Forking`](crate::Forking)) share the terminal's process group, so
    /// Ctrl-C reaches them too, with the default action: they end at once.
    ///
    /// # Errors
    ///
    /// [`Error::Signal`] if the handlers cannot be installed, or what
    /// [`serve_forever`](Self::serve_forever) returns.
    pub fn serve_until_signal(mut self) -> Result<DrainReport> {
        let (mut watch, quit) =
            signals::Watch::start().map_err(|source| Error::Signal { source })?;
        let grace = self.close_timeout.unwrap_or(DEFAULT_GRACE_PERIOD);
        let handle = self.shutdown_handle();
        let stop = Arc::new(parking_lot::Mutex::new(None::<Instant>));
        let watcher = {
            let stop = Arc::clone(&stop);
            let handle = handle.clone();
            let address = self.server_address().clone();
            let gate = Arc::clone(&self.shared.context.gate);
            std::thread::Builder::new()
                .name("socketserver-signals".into())
                .spawn(move || watch_signals(&mut watch, &handle, &address, &gate, grace, &stop))
                .map_err(|source| Error::Spawn {
                    what: "the signal watching thread",
                    source,
                })?
        };
        let served = self.serve_forever();
        // The deadline counts from the stop: a signal's, or now for a stop by other means.
        let deadline = *stop
            .lock()
            .get_or_insert_with(|| Instant::now().checked_add(grace).unwrap_or_else(far_future));
        let report = served.map(|()| self.close_by(Some(deadline)));
        quit.quit();
        if watcher.join().is_err() {
            log::error!(target: "socketserver::server", "the signal watching thread panicked");
        }
        report
    }

    fn loop_interval(&self) -> Option<Duration> {
        Some(match self.strategy.service_interval() {
            Some(interval) => interval.min(self.poll_interval),
            None => self.poll_interval,
        })
    }

    fn service_actions(&mut self) {
        self.strategy.service_actions();
        H::service_actions(&self.shared.context);
    }

    /// Waits until the socket is readable, a stop is requested, or `timeout` passes.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Event> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let poll_timeout = poll_timeout_until(deadline);
            let mut fds = [
                PollFd::new(self.socket.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.waker.fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, poll_timeout) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(0) => return Ok(Event::Timeout),
                Ok(_) => {
                    let woken = fds[1].revents().is_some_and(|r| !r.is_empty());
                    if woken && self.waker.drain() {
                        return Ok(Event::Stop);
                    }
                    if fds[0].revents().is_some_and(|r| !r.is_empty()) {
                        return Ok(Event::Readable);
                    }
                }
            }
        }
    }

    /// Takes the requests that are waiting, up to a bound.
    fn take_requests(&mut self, handle: &ShutdownHandle) {
        for _ in 0..MAX_REQUESTS_PER_WAKE {
            // Re-check after every request: a shutdown while serving must not take one more
            // (Python's bpo-35017).
            if handle.is_requested() {
                return;
            }
            // At the cap: sleep until a request ends, a stop, or the loop's interval (so that
            // `service_actions` still runs), then go back to the loop.
            if self.wait_room(self.loop_interval()) != Room::Free
                || self.strategy.wait_ready(self.waker.fd()) == Readiness::Woken
            {
                return;
            }
            if !self.take_one() {
                return;
            }
        }
    }

    /// Takes one request if one is waiting; `false` if none was.
    fn take_one(&mut self) -> bool {
        match T::get_request(&self.socket, &mut self.buf) {
            Ok(Received::Request(request)) => {
                if self
                    .shortage
                    .is_some_and(|s| s.last.elapsed() >= SHORTAGE_OVER)
                {
                    self.end_shortage();
                }
                let context = &self.shared.context;
                if !H::verify_request(context, T::client_address(&request)) {
                    log::debug!(target: "socketserver::request",
                        "verify_request rejected {}", T::client_address(&request));
                    context.counters.reject();
                    T::close_request(request);
                    return true;
                }
                let shared = Arc::clone(&self.shared);
                // Counts the request against `max_connections` until the job has run or been
                // dropped (for forking: until the parent has handed it to the child).
                let slot = context.gate.enter();
                let job = Job::new(
                    Box::new(move || {
                        let ok = H::finish_request(&shared, request);
                        drop(slot);
                        ok
                    }),
                    T::listener_fd(&self.socket),
                );
                if let Err(e) = self.strategy.process_request(job) {
                    // Once per request while, say, threads cannot be made: limited.
                    static LIMIT: Limit = Limit::new();
                    say_limited(
                        &LIMIT,
                        Level::Error,
                        "socketserver::server",
                        format_args!("server {}: {e}", context.server_address()),
                    );
                }
                true
            }
            Ok(Received::Dropped(error)) => {
                let context = &self.shared.context;
                context.counters.reject();
                H::handle_error(context, &error);
                true
            }
            Err(e) => {
                self.get_request_failed(e);
                false
            }
        }
    }

    fn get_request_failed(&mut self, error: io::Error) {
        match error.kind() {
            // Linux's `accept` looks for a free descriptor before it looks at the queue, so
            // "nothing waiting" means descriptors were there: the loop has caught up and the
            // shortage is over. (Not at the first request taken: at the limit, every
            // descriptor freed is taken at once and the next `accept` fails again; that is
            // the same shortage, and must not log a warning per request. `take_one` ends it
            // too once requests are taken with no failure for `SHORTAGE_OVER`, for
            // `handle_request`, which never calls `accept` without a client waiting.)
            io::ErrorKind::WouldBlock => self.end_shortage(),
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {
                log::debug!(target: "socketserver::accept",
                    "{}: client left before accept: {error}", self.server_address());
            }
            _ => {
                let scarce = matches!(
                    error.raw_os_error(),
                    Some(
                        nix::libc::EMFILE
                            | nix::libc::ENFILE
                            | nix::libc::ENOBUFS
                            | nix::libc::ENOMEM
                    )
                );
                let addr = self.shared.context.server_address();
                if !scarce {
                    static LIMIT: Limit = Limit::new();
                    say_limited(
                        &LIMIT,
                        Level::Error,
                        "socketserver::accept",
                        format_args!("{addr}: cannot take a request: {error}"),
                    );
                } else {
                    let failures = self.shortage.map_or(0, |s| s.failures) + 1;
                    if failures == 1 {
                        log::warn!(target: "socketserver::accept",
                            "{addr}: cannot take a request: {error}; pausing {ACCEPT_BACKOFF:?} between attempts until it works");
                    } else {
                        log::debug!(target: "socketserver::accept",
                            "{addr}: cannot take a request: {error} (attempt {failures})");
                    }
                    self.shortage = Some(Shortage {
                        failures,
                        last: Instant::now(),
                    });
                }
                self.pause(ACCEPT_BACKOFF);
            }
        }
    }

    /// Ends the current shortage, if any, saying so.
    fn end_shortage(&mut self) {
        if let Some(shortage) = self.shortage.take() {
            log::info!(target: "socketserver::accept",
                "{}: taking requests again after {} failed attempts",
                self.server_address(), shortage.failures);
        }
    }

    /// Waits while `max_connections` requests are open, at most `timeout` (`None`: until there
    /// is room or a stop). Never spins: it sleeps in `poll(2)` on the waker and on the gate's
    /// socket, which gets a byte when a request ends at the cap.
    fn wait_room(&self, timeout: Option<Duration>) -> Room {
        let gate = &self.shared.context.gate;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            // The common case costs no system call: the wake-up bytes matter only before a
            // sleep in `poll`.
            if gate.has_room() {
                return Room::Free;
            }
            // Drop stale wake-ups, then look again: a request that ended in between may have
            // had its byte drained.
            gate.drain();
            if gate.has_room() {
                return Room::Free;
            }
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Room::Full;
            }
            let poll_timeout = poll_timeout_until(deadline);
            let mut fds = [
                PollFd::new(self.waker.fd(), PollFlags::POLLIN),
                PollFd::new(gate.room_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, poll_timeout) {
                Ok(_) if fds[0].revents().is_some_and(|r| !r.is_empty()) => return Room::Woken,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    // The serving loop polls the waker next and reports the error.
                    log::error!(target: "socketserver::server", "waiting for a connection to end: {e}");
                    return Room::Woken;
                }
            }
        }
    }

    /// Takes the clients waiting in the listen backlog (datagrams in the receive buffer) when
    /// closing: they came before the close, and closing the socket would reset them. Only as
    /// many as the connection cap and the strategy take without waiting, and at most
    /// [`MAX_BACKLOG_TAKEN`]; the kernel refuses the rest when the socket closes.
    fn serve_backlog(&mut self) -> usize {
        // Nothing waiting (the usual case): leave the strategy alone.
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
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
            && self.shared.context.gate.has_room()
            && self.strategy.wait_ready(always.fd()) == Readiness::Ready
            && self.take_one()
        {
            taken += 1;
        }
        taken
    }

    /// Sleeps up to `duration`, waking early for a stop request.
    fn pause(&self, duration: Duration) {
        let mut fds = [PollFd::new(self.waker.fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(duration).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut fds, ms);
    }
}

/// What the signal watching thread of [`Server::serve_until_signal`] does: on the first signal,
/// asks the server to stop and sets the close deadline; at the deadline, shuts down the reading
/// side of every connection still open; on a second signal, shuts every connection down both
/// ways, makes the deadline now, and gives the signals back to their previous handlers.
fn watch_signals(
    watch: &mut signals::Watch,
    handle: &ShutdownHandle,
    address: &Address,
    gate: &Gate,
    grace: Duration,
    stop: &parking_lot::Mutex<Option<Instant>>,
) {
    let target = "socketserver::server";
    let first = match watch.wait(None) {
        Ok(signals::Heard::Signal(signal)) => signal,
        Ok(_) => return,
        Err(e) => {
            log::error!(target: target, "{address}: waiting for signals: {e}");
            return;
        }
    };
    let deadline = Instant::now().checked_add(grace).unwrap_or_else(far_future);
    *stop.lock() = Some(deadline);
    say(
        Level::Info,
        target,
        format_args!(
            "{first} received: stopping {address}; {} running requests get up to {grace:?} \
             to finish (send {first} again to stop at once)",
            gate.open()
        ),
    );
    handle.request();
    let mut cut = false;
    loop {
        match watch.wait((!cut).then_some(deadline)) {
            Ok(signals::Heard::Timeout) => {
                let shut = handle.connections().shutdown(Reach::Reads);
                say(
                    Level::Warn,
                    target,
                    format_args!(
                        "{address}: the {grace:?} grace period is over; {shut} connections \
                         still open have their reading side shut down"
                    ),
                );
                cut = true;
            }
            Ok(signals::Heard::Signal(signal)) => {
                *stop.lock() = Some(Instant::now());
                let shut = handle.connections().shutdown(Reach::All);
                say(
                    Level::Warn,
                    target,
                    format_args!(
                        "{signal} received again: stopping {address} now; {shut} connections \
                         shut down"
                    ),
                );
                watch.release();
                return;
            }
            Ok(signals::Heard::Quit) => return,
            Err(e) => {
                log::error!(target: target, "{address}: waiting for signals: {e}");
                return;
            }
        }
    }
}

/// A deadline that never comes, for durations too long to add to now.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

impl<T: Transport, H: Handler, S: Strategy> AsFd for Server<T, H, S> {
    /// The server's socket (Python: `fileno()`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl<T: Transport, H: Handler, S: Strategy + fmt::Debug> fmt::Debug for Server<T, H, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("transport", &T::NAME)
            .field("server_address", self.shared.context.server_address())
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}
