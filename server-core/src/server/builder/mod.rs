//! Building a server: options first, then bind (Python: class attributes, then the constructor).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::handler::Handler;
use crate::server::hooks::{ErrorHook, LoopHooks};
use crate::server::overload::Overload;
use crate::server::{RequestOptions, Server};
use crate::strategy::{Serial, Strategy};
use crate::transport::{BindOptions, Transport};

mod assemble;

/// Options for a server, then [`bind`](ServerBuilder::bind) (Python: the server's and handler's
/// class attributes, then the constructor).
///
/// Get one from [`Server::builder`] (state made with `Default`) or [`Server::with_state`].
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
/// # fn main() -> Result<(), socketserver::Error> {
/// let server = TcpServer::<Echo>::builder()
///     .backlog(128)
///     .nodelay(true)
///     .request_timeout(Some(std::time::Duration::from_secs(30)))
///     .bind("127.0.0.1:0")?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `bind` or `from_listener` is called"]
pub struct ServerBuilder<T: Transport, H: Handler, S = Serial> {
    state: Arc<H::State>,
    strategy: S,
    pub(super) bind: BindOptions,
    pub(super) request: RequestOptions,
    poll_interval: Duration,
    timeout: Option<Duration>,
    close_timeout: Option<Duration>,
    drain_delay: Duration,
    max_request_time: Option<Duration>,
    max_packet_size: usize,
    max_connections: Option<usize>,
    pub(super) max_per_client: Option<usize>,
    pub(super) overload: Overload,
    pub(super) loop_hooks: LoopHooks<H::State>,
    pub(super) error_hook: Option<ErrorHook<H::State>>,
    _types: PhantomData<fn() -> (T, H)>,
}

/// Python's `max_packet_size` is 8192; a UDP datagram can carry up to 65,507 bytes over IPv4
/// and 65,527 over IPv6, so 64 KiB receives every UDP datagram whole. The buffer is allocated
/// once per server and reused, so the larger size costs nothing per request.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 65_536;

/// The grace period of [`Server::serve_until_signal`] when no
/// [`close_timeout`](ServerBuilder::close_timeout) is set: how long running requests get to
/// finish after SIGINT or SIGTERM. Ten seconds: long enough for ordinary requests, short
/// enough that a person pressing Ctrl-C is not left waiting on an idle client (and a second
/// Ctrl-C stops at once anyway). gunicorn's default is 30 s, systemd's stop timeout 90 s.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// The default `listen(2)` backlog. Python's 5 (gh-80184) drops connections under any burst;
/// Linux caps the value at `net.core.somaxconn` (4096 on recent kernels).
pub const DEFAULT_BACKLOG: i32 = 1024;

impl<T: Transport, H: Handler, S: Strategy> Server<T, H, S> {
    /// A builder with the default options, the state made with `Default`, and the strategy made
    /// with `Default`.
    pub fn builder() -> ServerBuilder<T, H, S>
    where
        H::State: Default,
        S: Default,
    {
        Self::with_state(H::State::default())
    }

    /// A builder with the default options and the given shared state.
    pub fn with_state(state: H::State) -> ServerBuilder<T, H, S>
    where
        S: Default,
    {
        ServerBuilder {
            state: Arc::new(state),
            strategy: S::default(),
            bind: BindOptions {
                reuse_address: None,
                reuse_port: false,
                backlog: DEFAULT_BACKLOG,
                socket_mode: None,
            },
            request: RequestOptions {
                rbufsize: 8192,
                wbufsize: 0,
                read_timeout: None,
                write_timeout: None,
                nodelay: false,
                inherited: false,
                proxy: crate::proxy::ProxySettings::default(),
                tls: crate::server::edge::TlsSettings::default(),
            },
            poll_interval: Duration::from_millis(500),
            timeout: None,
            close_timeout: None,
            drain_delay: Duration::ZERO,
            max_request_time: None,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            max_connections: None,
            max_per_client: None,
            overload: Overload::Wait,
            loop_hooks: LoopHooks::default(),
            error_hook: None,
            _types: PhantomData,
        }
    }
}

impl<T: Transport, H: Handler, S: Strategy> ServerBuilder<T, H, S> {
    /// Uses `strategy` to run requests (Python: choosing a mix-in).
    pub fn strategy<S2: Strategy>(self, strategy: S2) -> ServerBuilder<T, H, S2> {
        ServerBuilder {
            state: self.state,
            strategy,
            bind: self.bind,
            request: self.request,
            poll_interval: self.poll_interval,
            timeout: self.timeout,
            close_timeout: self.close_timeout,
            drain_delay: self.drain_delay,
            max_request_time: self.max_request_time,
            max_packet_size: self.max_packet_size,
            max_connections: self.max_connections,
            max_per_client: self.max_per_client,
            overload: self.overload,
            loop_hooks: self.loop_hooks,
            error_hook: self.error_hook,
            _types: PhantomData,
        }
    }

    /// Sets `SO_REUSEADDR` before binding (Python: `allow_reuse_address`).
    ///
    /// Default: on for TCP (as `std` does; it only lets a restarted server bind while old
    /// connections linger in `TIME_WAIT`), off for UDP (on Linux it would let two servers share
    /// a port). Ignored for Unix sockets.
    #[doc(alias = "allow_reuse_address")]
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.bind.reuse_address = Some(on);
        self
    }

    /// Sets `SO_REUSEPORT` before binding, so several servers can share a port and the kernel
    /// spreads clients across them (Python: `allow_reuse_port`). Default: off.
    ///
    /// Internet sockets only: binding a Unix server with it fails with
    /// [`Error::InvalidOption`](crate::Error::InvalidOption) (Linux 6.12.9 and later reject it there).
    #[doc(alias = "allow_reuse_port")]
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.bind.reuse_port = on;
        self
    }

    /// The `listen(2)` backlog (Python: `request_queue_size`). Default: [`DEFAULT_BACKLOG`].
    #[doc(alias = "request_queue_size")]
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.bind.backlog = backlog;
        self
    }

    /// The permission bits of the Unix socket file the server creates, such as `0o660` (only
    /// its owner and group may connect). Default: `None`, what the process umask gives.
    /// Ignored for internet sockets.
    ///
    /// The mode is set right after `bind(2)`; for no window at all, put the socket in a
    /// directory that only the intended clients can enter.
    pub fn socket_mode(mut self, mode: u32) -> Self {
        self.bind.socket_mode = Some(mode);
        self
    }

    /// The longest the serving loop sleeps between `service_actions` calls while idle
    /// (Python: `serve_forever(poll_interval)`). Default: 500 ms. Shutdown does not wait for
    /// it: the loop is woken at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long [`Server::handle_request`] waits for a request (Python: the server's
    /// `timeout`). Default: `None`, wait forever.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long [`Server::serve_until_signal`] goes on serving after the first signal, not
    /// ready, before it stops taking requests: [`ServerContext::is_closing`](crate::ServerContext::is_closing) is true (the HTTP
    /// layer answers `Connection: close`; a [metrics listener](Server::serve_metrics)'s
    /// `/readyz` fails), so a load balancer that checks readiness moves traffic elsewhere
    /// while this server still answers, and no client meets a closed port. Set it to the
    /// balancer's check interval times its failure count (HAProxy `inter 1s fall 2`: 2 s). The
    /// grace period counts from its end; a second signal still stops at once. Default: zero.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// The longest one request on a stream connection may run: past it, the connection is
    /// shut down both ways, so the handler's next read or write fails and it ends, and the
    /// request counts in [`Stats::cut_off`](crate::Stats::cut_off) (an HTTP keep-alive
    /// connection's time restarts with each request; waiting between requests does not
    /// count). Looked at from the serving loop at least every 100 ms, so it needs a strategy
    /// that runs requests off the loop ([`Threading`](crate::Threading),
    /// [`Pool`](crate::Pool)); a handler that never reads or writes (a busy loop) is not
    /// stopped by it. This is apart from the read and write timeouts (one stalled operation)
    /// and from the process model's liveness checks (a whole worker). Default: `None`.
    pub fn max_request_time(mut self, limit: Option<Duration>) -> Self {
        self.max_request_time = limit;
        self
    }

    /// How long [`Server::close`] waits for running requests before giving up on them.
    /// Default: `None`, wait for all of them.
    ///
    /// It is also the grace period of [`Server::serve_until_signal`], counted from the signal;
    /// there `None` means [`DEFAULT_GRACE_PERIOD`], as a stop by signal must end. Use
    /// `Some(Duration::MAX)` to wait for running requests however long they take.
    pub fn close_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The read buffer size of `rfile` for stream requests (Python: `rbufsize`). Default: 8192.
    /// Must be at least 1. The buffer starts at 1 KiB and grows to this size as reads fill it
    /// (see [`Rfile`](crate::Rfile)).
    pub fn rbufsize(mut self, size: usize) -> Self {
        self.request.rbufsize = size;
        self
    }

    /// The write buffer size of `wfile` for stream requests (Python: `wbufsize`). Default: 0,
    /// unbuffered: every write is sent at once, in full.
    pub fn wbufsize(mut self, size: usize) -> Self {
        self.request.wbufsize = size;
        self
    }

    /// Sets both [`read_timeout`](Self::read_timeout) and [`write_timeout`](Self::write_timeout)
    /// on every stream connection (Python: the handler's `timeout`, which applies to both).
    /// Default: `None`.
    #[doc(alias = "timeout")]
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request.read_timeout = timeout;
        self.request.write_timeout = timeout;
        self
    }

    /// The longest a read on a stream connection may wait for data (`SO_RCVTIMEO`), which is
    /// also the connection's **idle timeout**. Default: `None`, wait forever.
    ///
    /// A read that waits longer fails with `WouldBlock`/`TimedOut`; unless the handler catches
    /// it, that ends the request through `handle_error`, and the connection is closed. Because
    /// every wait for the client's next bytes is such a read, this bounds how long a connection
    /// may stay without the server receiving anything: between requests on a keep-alive
    /// connection, and before the first byte. A client that connects and sends nothing holds a
    /// thread (or a pool worker) for at most this long.
    ///
    /// There is no separate `idle_timeout` option: the library does not know where a stream's
    /// requests begin and end (the handler does), so at the socket level "idle" is exactly "no
    /// bytes for this long". A handler that wants a shorter wait between requests than within
    /// one can set its own with [`Connection::set_read_timeout`](crate::Connection::set_read_timeout).
    ///
    /// With a [`Pool`](crate::Pool), clients that connect and send nothing each hold a worker
    /// until this timeout passes, so a client behind `n` of them waits about
    /// `n / workers × read_timeout`; see also [`max_connections`](Self::max_connections).
    ///
    /// A zero timeout is refused with [`Error::InvalidOption`](crate::Error::InvalidOption) when binding: use `None`.
    #[doc(alias = "idle_timeout")]
    #[doc(alias = "SO_RCVTIMEO")]
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request.read_timeout = timeout;
        self
    }

    /// The longest a write on a stream connection may wait for room in the socket's send
    /// buffer (`SO_SNDTIMEO`): a client that stops reading a large reply holds its request at
    /// most this long per write. Default: `None`, wait forever. A write that waits longer fails
    /// with `WouldBlock`/`TimedOut` and ends the request through `handle_error`. A zero
    /// timeout is refused with [`Error::InvalidOption`](crate::Error::InvalidOption) when binding: use `None`.
    #[doc(alias = "SO_SNDTIMEO")]
    pub fn write_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request.write_timeout = timeout;
        self
    }

    /// The most requests (stream connections, or datagrams) taken from the socket and not yet
    /// finished, whatever the strategy. Default: `None`, no cap beyond the strategy's own
    /// ([`Pool`](crate::Pool)'s workers and queue, [`Forking`](crate::Forking)'s
    /// `max_children`). Must be at least 1. [`Stats::open`](crate::Stats::open) shows the
    /// current count.
    ///
    /// At the cap, the serving loop stops accepting until a request finishes; it sleeps in
    /// `poll(2)` and is woken when one ends, so it does not spin, and a shutdown still wakes it
    /// at once. New clients wait in the kernel's listen backlog (see [`backlog`](Self::backlog)),
    /// where they cost the program nothing, and are served in order as requests end; datagrams
    /// wait in the socket's receive buffer. Nothing is rejected, so
    /// [`Stats::rejected`](crate::Stats::rejected) does not change.
    ///
    /// Why wait rather than accept and close at once: a client that waits is served later
    /// instead of failing, as with the strategies' own caps; an accept-and-close loop would
    /// cost the server work for every attempt a flood of clients makes; and a client that
    /// wants to give up can use a connect timeout. Combine it with a
    /// [`read_timeout`](Self::read_timeout), so that idle connections cannot hold the cap
    /// forever.
    ///
    /// With [`Forking`](crate::Forking) a request counts only until its child has been forked
    /// (the parent no longer holds the connection); use `max_children` there.
    #[doc(alias = "max_clients")]
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets `TCP_NODELAY` on every TCP connection (Python: `disable_nagle_algorithm`).
    /// Default: off, as in Python. Ignored for Unix sockets.
    ///
    /// Like the read and write timeouts, it is set once on the listening socket, from which
    /// Linux copies it to every accepted connection: no system call per connection. (Unix
    /// stream connections do not inherit timeouts, so they get theirs one by one.)
    #[doc(alias = "disable_nagle_algorithm")]
    pub fn nodelay(mut self, on: bool) -> Self {
        self.request.nodelay = on;
        self
    }

    /// The receive buffer for datagrams (Python: `max_packet_size`). Default:
    /// [`DEFAULT_MAX_PACKET_SIZE`]. A larger datagram is dropped and reported to `handle_error`
    /// as [`RequestError::Truncated`](crate::RequestError::Truncated), never passed on cut short.
    pub fn max_packet_size(mut self, size: usize) -> Self {
        self.max_packet_size = size;
        self
    }
}

impl<T: Transport, H: Handler, S: fmt::Debug> fmt::Debug for ServerBuilder<T, H, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("transport", &T::NAME)
            .field("strategy", &self.strategy)
            .field("bind", &self.bind)
            .field("request", &self.request)
            .field("poll_interval", &self.poll_interval)
            .field("timeout", &self.timeout)
            .field("close_timeout", &self.close_timeout)
            .field("drain_delay", &self.drain_delay)
            .field("max_request_time", &self.max_request_time)
            .field("max_packet_size", &self.max_packet_size)
            .field("max_connections", &self.max_connections)
            .field("max_per_client", &self.max_per_client)
            .field("overload", &self.overload)
            .field("hooks", &self.loop_hooks)
            .field("handle_error", &self.error_hook.is_some())
            .finish_non_exhaustive()
    }
}
