//! What the requests of a server share: the [`ServerContext`] handlers see, and the options
//! each stream request is set up with.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::addr::Address;
use crate::default_handle_error;
use crate::error::RequestError;
use crate::proxy::ProxySettings;
#[cfg(feature = "http")]
use crate::server::admission::Budget;
use crate::server::admission::Gate;
use crate::server::hooks::ErrorHook;
use crate::server::parking::Lot;
use crate::shutdown::ShutdownHandle;
use crate::stats::{Active, Counters, Stats};

/// What a handler sees of its server (Python: the handler's `server` attribute).
///
/// It gives the server's address, the shared [`state`](Self::state), and a way to stop the
/// server. The same context is shared by every request of a server.
pub struct ServerContext<S = ()> {
    server_address: Address,
    state: Arc<S>,
    shutdown: ShutdownHandle,
    counters: Counters,
    /// Requests taken and not finished, and the `max_connections` cap.
    gate: Arc<Gate>,
    /// Bytes held by buffered HTTP request bodies.
    #[cfg(feature = "http")]
    bodies: Budget,
    /// HTTP requests being answered, over all connections.
    #[cfg(feature = "http")]
    in_flight: Budget,
    /// The `handle_error` hook, if one was set.
    error_hook: Option<ErrorHook<S>>,
    /// Connections waiting in the listen backlog, as the serving loop last saw it
    /// (`u64::MAX`: not known).
    listen_queue: AtomicU64,
    /// Where idle connections wait for their next request, when the strategy parks them.
    lot: Option<Arc<Lot>>,
}

impl<S> ServerContext<S> {
    /// A context with fresh counters and no body bytes held.
    pub(crate) fn new(
        server_address: Address,
        state: Arc<S>,
        shutdown: ShutdownHandle,
        gate: Gate,
        error_hook: Option<ErrorHook<S>>,
    ) -> Self {
        ServerContext {
            server_address,
            state,
            shutdown,
            counters: Counters::default(),
            gate: Arc::new(gate),
            #[cfg(feature = "http")]
            bodies: Budget::default(),
            #[cfg(feature = "http")]
            in_flight: Budget::default(),
            error_hook,
            listen_queue: AtomicU64::new(u64::MAX),
            lot: None,
        }
    }

    /// Parks idle connections in `lot` (the strategy runs requests in this process).
    pub(crate) fn with_lot(mut self, lot: Lot) -> Self {
        self.lot = Some(Arc::new(lot));
        self
    }

    /// Gives this context a shutdown handle and a `max_connections` gate of its own, with new
    /// wake-up pairs: after `fork`, the ones made before are shared with every other process
    /// forked from the same server. Only for a context no request has used yet.
    pub(crate) fn renew(&mut self, shutdown: ShutdownHandle) -> std::io::Result<()> {
        self.gate = Arc::new(self.gate.renewed()?);
        self.shutdown = shutdown;
        // An epoll instance of its own (nothing is parked in a freshly forked process).
        if self.lot.is_some() {
            self.lot = Some(Arc::new(Lot::new()?));
        }
        Ok(())
    }

    /// The server's shutdown handle, without cloning it.
    pub(crate) fn handle(&self) -> &ShutdownHandle {
        &self.shutdown
    }

    /// Requests taken and not finished, and the `max_connections` cap.
    pub(crate) fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    /// Bytes held by buffered HTTP request bodies.
    #[cfg(feature = "http")]
    pub(crate) fn bodies(&self) -> &Budget {
        &self.bodies
    }

    /// HTTP requests being answered, over all connections (a [`Budget`] of one per request).
    #[cfg(feature = "http")]
    pub(crate) fn in_flight(&self) -> &Budget {
        &self.in_flight
    }

    /// Whether the server is at its `max_connections`: overloaded, so keep-alive should end
    /// and let clients reconnect (perhaps to another server behind the load balancer).
    #[cfg(feature = "http")]
    pub(crate) fn is_full(&self) -> bool {
        !self.gate.has_room()
    }

    /// Records the listen backlog's length, as the serving loop sees it now.
    pub(crate) fn set_listen_queue(&self, waiting: Option<u64>) {
        self.listen_queue
            .store(waiting.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Connections waiting in the listen backlog when the serving loop last looked (TCP only).
    #[cfg(feature = "http")] // the metrics listener
    pub(crate) fn listen_queue(&self) -> Option<u64> {
        Some(self.listen_queue.load(Ordering::Relaxed)).filter(|&n| n != u64::MAX)
    }

    /// Counts a request refused before a handler ran.
    pub(crate) fn reject(&self) {
        self.counters.reject();
    }

    /// Counts requests cut off at `max_request_time`.
    pub(crate) fn cut_off(&self, n: usize) {
        self.counters.cut_off(n);
    }

    /// Counts a client that gave up waiting in the backlog.
    pub(crate) fn gave_up(&self) {
        self.counters.gave_up();
    }

    /// Counts a client turned away by the overload policy (`per_client`: at its own cap).
    pub(crate) fn turn_away(&self, per_client: bool) {
        self.counters.turn_away(per_client);
    }

    /// Counts a request as running until the guard is dropped with its outcome.
    pub(crate) fn start_request(&self) -> Active<'_> {
        self.counters.start()
    }
}

impl<S> ServerContext<S> {
    /// The address the server is bound to (Python: `server_address`). When port 0 was asked
    /// for, this has the port the system picked.
    pub fn server_address(&self) -> &Address {
        &self.server_address
    }

    /// The state shared by every request (the handler's [`Handler::State`](crate::Handler::State)).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The shared state's `Arc`, to keep a reference beyond the request.
    pub fn state_arc(&self) -> &Arc<S> {
        &self.state
    }

    /// The server's counters: requests running, succeeded, failed and rejected.
    pub fn stats(&self) -> Stats {
        let mut stats = self.counters.snapshot();
        stats.open = self.gate.open();
        stats.parked = self.lot.as_deref().map_or(0, Lot::len);
        stats
    }

    /// Whether the server is stopping or closed: a shutdown was requested (through a
    /// [`ShutdownHandle`], a signal with `serve_until_signal`, or
    /// [`Server::close`](crate::Server::close)).
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

    /// Reports a failed request through the server's `handle_error` hook (Python:
    /// `self.server.handle_error(...)` from a handler): the one set with
    /// [`ServerBuilder::handle_error`](crate::ServerBuilder::handle_error), or
    /// [`default_handle_error`](crate::default_handle_error).
    ///
    /// The server calls it for every failed request; a handler calls it for failures it
    /// handles itself and still wants reported (a bad message in a keep-alive loop).
    pub fn handle_error(&self, error: &RequestError) {
        match &self.error_hook {
            Some(hook) => hook(self, error),
            None => default_handle_error(&self.server_address, error),
        }
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
    /// The PROXY protocol: off, or required from the trusted proxies (`server/edge.rs`).
    pub proxy: ProxySettings,
    /// TLS: off, or the configuration and the handshake's deadline (`server/edge.rs`).
    /// Without the `tls` feature it is empty, and nothing reads it.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub tls: crate::server::edge::TlsSettings,
}

/// What every request of a server shares.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    context: ServerContext<S>,
    options: RequestOptions,
}

impl<S> Shared<S> {
    pub(crate) fn new(context: ServerContext<S>, options: RequestOptions) -> Self {
        Shared { context, options }
    }

    /// The parked connections, if this server parks them.
    pub(crate) fn lot(&self) -> Option<&Arc<Lot>> {
        self.context.lot.as_ref()
    }

    /// Whether a connection that waits for its client may be parked now: the server parks
    /// connections and is not closing (then each is served to the end on its worker).
    pub(crate) fn parks_now(&self) -> bool {
        self.lot().is_some_and(|lot| !lot.is_closing())
    }

    /// What handlers see of the server.
    pub(crate) fn context(&self) -> &ServerContext<S> {
        &self.context
    }

    /// What handlers see of the server, to change before any request runs.
    pub(crate) fn context_mut(&mut self) -> &mut ServerContext<S> {
        &mut self.context
    }

    /// Options each stream request is set up with.
    pub(crate) fn options(&self) -> &RequestOptions {
        &self.options
    }
}
