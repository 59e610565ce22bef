//! The server: binding, the serving loop, shutdown and closing (Python's `BaseServer`).

// This file holds the serving loop; the other parts have files of their own: `context` (what
// the requests share), `builder` and `bind` (options, then binding per transport), `accept`
// (taking requests), `pipeline` (what runs for each request), `close` (closing, and serving
// until a signal), `admission` and `connections` (what the server counts and tracks).

mod accept;
pub(crate) mod admission;
mod bind;
mod builder;
mod close;
pub(crate) mod connections;
mod context;
mod edge;
mod hooks;
mod inetd;
mod overload;
pub(crate) mod parking;
mod pass;
mod pipeline;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use builder::{ServerBuilder, DEFAULT_BACKLOG, DEFAULT_GRACE_PERIOD, DEFAULT_MAX_PACKET_SIZE};
pub use context::ServerContext;
pub(crate) use context::{RequestOptions, Shared};
use hooks::LoopHooks;
pub use overload::Overload;
pub(crate) use overload::TURN_AWAY_DRAIN;
pub use parking::{ParkedConnections, Wakeup};
use pipeline::Finish;

use crate::addr::Address;
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::shutdown::{ShutdownHandle, StopReceiver};
use crate::stats::Stats;
use crate::strategy::{Readiness, Serial, Strategy};
use crate::sys::{deadline_in, wake};
use crate::transport::{self, SocketFile, Transport};
use accept::Room;
use close::{waker, Signals};
use pass::Event;

/// How one call of [`Server::handle_request`] ended: what its wait for a request came to.
///
/// (Not to be confused with [`HandleResult`](crate::HandleResult), what a handler's methods
/// return.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "handle_request reports whether a request came at all"]
pub enum Waited {
    /// A request came and was handed to the strategy (or was rejected or dropped and reported).
    Handled,
    /// `timeout` passed with no request; `handle_timeout` was called.
    TimedOut,
    /// A shutdown was requested while waiting.
    Stopped,
}

/// A socket server: a transport `T`, a request handler `H` and a processing strategy `S`.
///
/// Use the aliases: [`TcpServer`], [`UdpServer`], [`UnixStreamServer`], [`UnixDatagramServer`],
/// each with a strategy parameter that defaults to [`Serial`].
///
/// # Ready-made servers
///
/// [`ThreadingTcpServer`](crate::ThreadingTcpServer), [`PoolUdpServer`](crate::PoolUdpServer),
/// [`ForkingUnixStreamServer`](crate::ForkingUnixStreamServer) and their siblings name each
/// transport with each strategy (Python: `ThreadingTCPServer` and friends). Python spells out eight combinations as empty classes; generics give all twelve (four
/// transports, three strategies) for free, including the pool, which Python lacks. Each is
/// [`Server`] with its transport and strategy filled in, so everything on [`Server`] and
/// [`ServerBuilder`](crate::ServerBuilder) applies. To change a strategy's options, pass a
/// configured one to the builder:
///
/// ```
/// # use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler};
/// use socketserver::{Threading, ThreadingTcpServer};
/// # #[derive(Handler)]
/// # struct Echo;
/// # impl StreamRequestHandler for Echo {
/// #     fn handle(&mut self, _: &mut StreamRequest<'_>) -> HandleResult { Ok(()) }
/// # }
/// # fn main() -> Result<(), socketserver::Error> {
/// let server = ThreadingTcpServer::<Echo>::builder()
///     .strategy(Threading::new().daemon_threads(true))
///     .bind("127.0.0.1:0")?;
/// # server.close();
/// # Ok(())
/// # }
/// ```
///
/// # The serving loop
///
/// [`serve_forever`](Self::serve_forever) waits in `poll(2)` on the server's socket and on a
/// waker. For every request it calls the `verify_request` hook, wraps the request into a
/// [`Job`](crate::Job) and hands it to the strategy. It calls `service_actions` on every pass,
/// and at least every `poll_interval` when idle. A [`ShutdownHandle`] wakes it at once.
///
/// # Closing
///
/// [`close`](Self::close) (Python: `server_close`) stops listening, removes the Unix socket file
/// the server created, and lets the strategy wait for running requests. Dropping the server does
/// the same without waiting.
pub struct Server<T: Transport, H: Handler, S: Strategy = Serial> {
    socket: T::Socket,
    shared: Arc<Shared<H::State>>,
    /// Serves one request: chosen by the transport's `bind`.
    finish: Finish<H::State, T>,
    /// What a turned-away client is sent (the handler type's busy reply; empty for
    /// datagrams).
    busy: &'static [u8],
    /// What happens at `max_connections`.
    overload: Overload,
    /// Whether clients may have waited for a slot since the backlog was last empty (the loop
    /// found the server full): new connections are then looked at for clients that gave up.
    clients_waited: std::cell::Cell<bool>,
    /// Clients held by [`Overload::Queue`], each with the end of its wait.
    waiting: VecDeque<(Instant, T::Request)>,
    /// A waker that is always set, to ask the strategy for room without waiting (made on
    /// first use; `None` inside if it could not be made).
    always: Option<Option<(wake::Notify, wake::Wait)>>,
    /// `verify_request`, `handle_timeout` and `service_actions`.
    hooks: LoopHooks<H::State>,
    strategy: S,
    /// Where stop requests arrive: the receiving end of the [`ShutdownHandle`]'s wake-up pair.
    stops: StopReceiver,
    buf: Vec<u8>,
    /// The current shortage, if `accept(2)` is failing for lack of resources: its first failure
    /// is a warning, the others debug messages, so a long shortage does not flood the log.
    shortage: Option<accept::Shortage>,
    socket_file: Option<SocketFile>,
    poll_interval: Duration,
    timeout: Option<Duration>,
    close_timeout: Option<Duration>,
    /// How long `serve_until_signal` serves on, not ready, after the first signal.
    drain_delay: Duration,
    /// The longest a request may run before its connection is cut off.
    max_request_time: Option<Duration>,
    /// When the loop last looked for requests over `max_request_time`.
    last_cut: Instant,
    /// When the loop last recorded the listen backlog's length (`None`: not yet, so the first
    /// pass records it and a scrape right after serving starts has the figure).
    last_sample: Option<Instant>,
    /// Called once, when the loop first waits for requests.
    on_ready: Option<ReadyCallback>,
    /// Crate-internal: run on every pass of the loop, after `service_actions` (the process
    /// model's worker heartbeat).
    on_pass: Option<PassCallback<H::State>>,
    /// `serve_until_signal`'s signals until the first one starts their thread.
    signals: Option<Signals>,
    /// Whether the strategy's threads take the parked connections themselves
    /// ([`Strategy::take_parked`]); then the loop does not watch them.
    strategy_takes_parked: bool,
    _handler: PhantomData<fn() -> H>,
}

/// What [`Server::on_ready`] runs.
type ReadyCallback = Box<dyn FnOnce(&Address) + Send>;

/// What `Server::on_pass` runs.
type PassCallback<S> = Box<dyn FnMut(&ServerContext<S>) + Send>;

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

impl<T: Transport, H: Handler, S: Strategy> Server<T, H, S> {
    /// The address the server is bound to (Python: `server_address`). When port 0 was asked
    /// for, this is the port the system picked.
    #[doc(alias = "local_addr")]
    pub fn server_address(&self) -> &Address {
        self.shared.context().server_address()
    }

    /// What handlers see of this server: address, state and shutdown.
    pub fn context(&self) -> &ServerContext<H::State> {
        self.shared.context()
    }

    /// The state shared by every request.
    pub fn state(&self) -> &H::State {
        self.shared.context().state()
    }

    /// A cloneable handle that stops [`serve_forever`](Self::serve_forever) from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shared.context().shutdown_handle()
    }

    /// The server's counters: requests running, succeeded, failed and rejected.
    pub fn stats(&self) -> Stats {
        self.shared.context().stats()
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

    /// Runs `pass` on every pass of the serving loop, after `service_actions`: at least every
    /// `poll_interval` while idle. For the crate's own use (the process model's heartbeat).
    pub(crate) fn on_pass(&mut self, pass: impl FnMut(&ServerContext<H::State>) + Send + 'static) {
        self.on_pass = Some(Box::new(pass));
    }

    /// Leaves the Unix socket file alone when this server closes: for a prefork supervisor
    /// that hands its socket over to a new program (a binary upgrade), which serves that file
    /// on.
    pub(crate) fn forget_socket_file(&mut self) {
        self.socket_file = None;
    }

    /// What every request of this server shares (for the metrics listener).
    #[cfg(feature = "http")]
    pub(crate) fn shared(&self) -> &Arc<Shared<H::State>> {
        &self.shared
    }

    /// Gives this server wake-up pairs of its own, for its shutdown handle and its
    /// `max_connections` gate: for a process forked from the one that bound the server
    /// (a prefork worker), whose pairs are otherwise shared with every other such process, so
    /// that one worker's stop could wake another. Call it in the child, before serving.
    ///
    /// # Errors
    ///
    /// Making the pairs; or the server's shared part being held elsewhere (a request has run).
    pub(crate) fn renew_after_fork(&mut self) -> io::Result<()> {
        let (shutdown, stops) = crate::shutdown::pair()?;
        let shared = Arc::get_mut(&mut self.shared).ok_or_else(|| {
            io::Error::other("the server's shared state is in use; renew before serving")
        })?;
        shared.context_mut().renew(shutdown)?;
        self.stops = stops;
        Ok(())
    }

    /// Starts the thread that acts on `serve_until_signal`'s signals, if not started yet.
    fn start_signal_thread(&mut self) {
        if let Some(signals) = self.signals.take() {
            signals.start();
        }
    }

    /// Runs the `on_ready` callback, the first time only.
    fn ready(&mut self) {
        if let Some(lot) = self.shared.lot() {
            let parked = ParkedConnections::new(Arc::clone(lot));
            self.strategy_takes_parked = self.strategy.take_parked(&parked);
        }
        if let Some(ready) = self.on_ready.take() {
            ready(self.shared.context().server_address());
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
        let handle = self.shared.context().shutdown_handle();
        let _serving = handle.start_serving();
        log::info!(target: "socketserver::server", "serving {} on {}", T::NAME, self.server_address());
        self.ready();
        let result = loop {
            if handle.is_requested() {
                break Ok(());
            }
            match self.wait(self.pass_timeout()) {
                Err(source) => {
                    break Err(Error::Serve {
                        addr: self.server_address().clone(),
                        source,
                    })
                }
                Ok(Event::Stop) => break Ok(()),
                Ok(Event::Signal) => self.start_signal_thread(),
                Ok(Event::Readable) => {
                    self.resume_parked();
                    self.take_requests(&handle);
                }
                Ok(Event::Timeout) => {}
            }
            self.service_actions();
        };
        self.stops.drain();
        log::info!(target: "socketserver::server", "stopped serving on {}", self.server_address());
        result
    }

    /// Waits for one request and handles it (Python: `handle_request`).
    ///
    /// Waits at most the server's `timeout` (builder option; `None` waits forever). If nothing
    /// came by then it calls the `handle_timeout` hook and returns
    /// [`Waited::TimedOut`]. A shutdown request ends the wait with
    /// [`Waited::Stopped`] (Python ignores it here).
    ///
    /// # Errors
    ///
    /// [`Error::Serve`] if waiting on the socket fails.
    pub fn handle_request(&mut self) -> Result<Waited> {
        let handle = self.shared.context().shutdown_handle();
        let deadline = self.timeout.map(deadline_in);
        self.ready();
        let outcome = loop {
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if handle.is_requested() {
                break Waited::Stopped;
            }
            let event = self.wait(remaining).map_err(|source| Error::Serve {
                addr: self.server_address().clone(),
                source,
            })?;
            match event {
                Event::Stop => break Waited::Stopped,
                Event::Signal => self.start_signal_thread(),
                Event::Timeout => {
                    self.hooks.handle_timeout(self.shared.context());
                    break Waited::TimedOut;
                }
                Event::Readable => {
                    if self.resume_parked() > 0 {
                        break Waited::Handled;
                    }
                    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    match self.wait_room(remaining) {
                        Room::Free => {}
                        Room::Woken => continue,
                        Room::Full if deadline.is_some_and(|d| Instant::now() >= d) => {
                            self.hooks.handle_timeout(self.shared.context());
                            break Waited::TimedOut;
                        }
                        Room::Full => continue,
                    }
                    if self.strategy.wait_ready(waker(&self.signals, &self.stops))
                        == Readiness::Woken
                    {
                        continue;
                    }
                    if self.take_one() {
                        break Waited::Handled;
                    }
                }
            }
        };
        if outcome == Waited::Stopped {
            self.stops.drain();
            handle.clear();
        }
        self.service_actions();
        Ok(outcome)
    }
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
            .field("server_address", self.shared.context().server_address())
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}
