//! The server hooks (Python: methods overridden on a `BaseServer` subclass): `verify_request`,
//! `handle_error`, `handle_timeout` and `service_actions`, set on the [`ServerBuilder`].
//!
//! They belong to the server, as in Python, not to a handler type: one place declares them,
//! every transport and handler (the HTTP layer included) uses them as they are, and code generic
//! over the transport needs no bound beyond [`Handler`].
//!
//! `handle_error` runs wherever a request runs (other threads, a forked child), so it is `Fn +
//! Send + Sync` and lives in the [`ServerContext`]. The other three run on the serving loop
//! only, so they are `FnMut` (they may keep their own figures without a lock) and live in the
//! [`Server`](super::Server).

use std::fmt;
use std::sync::Arc;

use crate::addr::Address;
use crate::error::RequestError;
use crate::handler::Handler;
use crate::server::{ServerBuilder, ServerContext};
use crate::transport::Transport;

/// What `handle_error` is stored as: shared with every thread that runs requests.
pub(crate) type ErrorHook<S> = Arc<dyn Fn(&ServerContext<S>, &RequestError) + Send + Sync>;

type VerifyHook<S> = Box<dyn FnMut(&ServerContext<S>, &Address) -> bool + Send>;
type LoopHook<S> = Box<dyn FnMut(&ServerContext<S>) + Send>;

/// The hooks run on the serving loop; the defaults when unset are Python's.
pub(crate) struct LoopHooks<S> {
    verify_request: Option<VerifyHook<S>>,
    handle_timeout: Option<LoopHook<S>>,
    service_actions: Option<LoopHook<S>>,
}

impl<S> Default for LoopHooks<S> {
    fn default() -> Self {
        LoopHooks {
            verify_request: None,
            handle_timeout: None,
            service_actions: None,
        }
    }
}

impl<S> LoopHooks<S> {
    /// Python's `verify_request`: serve this client? The default says yes.
    pub(crate) fn verify_request(&mut self, server: &ServerContext<S>, client: &Address) -> bool {
        self.verify_request
            .as_mut()
            .is_none_or(|verify| verify(server, client))
    }

    /// Python's `handle_timeout`. The default does nothing.
    pub(crate) fn handle_timeout(&mut self, server: &ServerContext<S>) {
        if let Some(hook) = &mut self.handle_timeout {
            hook(server);
        }
    }

    /// Python's `service_actions`. The default does nothing.
    pub(crate) fn service_actions(&mut self, server: &ServerContext<S>) {
        if let Some(hook) = &mut self.service_actions {
            hook(server);
        }
    }
}

impl<S> fmt::Debug for LoopHooks<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHooks")
            .field("verify_request", &self.verify_request.is_some())
            .field("handle_timeout", &self.handle_timeout.is_some())
            .field("service_actions", &self.service_actions.is_some())
            .finish()
    }
}

/// The server hooks: Python's overridable server methods, set here once for every transport
/// and handler type.
impl<T: Transport, H: Handler, S> ServerBuilder<T, H, S> {
    /// Decides whether to serve a new connection or datagram (Python: `verify_request`).
    ///
    /// Runs on the serving loop, before a handler is made. Returning `false` closes the
    /// connection at once (drops the datagram) and counts it in [`Stats::rejected`]. Without
    /// this hook every client is served.
    ///
    /// [`Stats::rejected`]: crate::Stats::rejected
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
    /// // Serve loopback clients only.
    /// let server = TcpServer::<Echo>::builder()
    ///     .verify_request(|_server, client| client.as_inet().is_some_and(|a| a.ip().is_loopback()))
    ///     .bind("127.0.0.1:0")?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "a builder does nothing until `bind` or `from_listener` is called"]
    pub fn verify_request(
        mut self,
        hook: impl FnMut(&ServerContext<H::State>, &Address) -> bool + Send + 'static,
    ) -> Self {
        self.loop_hooks.verify_request = Some(Box::new(hook));
        self
    }

    /// Reports a failed request (Python: `handle_error`).
    ///
    /// Gets every error and caught panic of every request, with the client's address and the
    /// stage, wherever the request ran (another thread, a forked child), so it must be
    /// `Send + Sync`. The server keeps serving whatever it does. Without this hook errors go to
    /// [`default_handle_error`](crate::default_handle_error) (logged through `log`,
    /// or to stderr without a logger, at most 20 a second); call it from your hook to keep that
    /// and add your own. Handlers reach it with [`ServerContext::handle_error`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// #[derive(Default)]
    /// struct Failures(AtomicU64);
    /// # struct Echo;
    /// # impl Handler for Echo { type State = Failures; fn new(_: &ServerContext<Failures>) -> Self { Echo } }
    /// # impl StreamRequestHandler for Echo {
    /// #     fn handle(&mut self, _: &mut StreamRequest<'_, Failures>) -> HandleResult { Ok(()) }
    /// # }
    ///
    /// # fn main() -> Result<(), socketserver::Error> {
    /// let server = TcpServer::<Echo>::builder()
    ///     .handle_error(|server, error| {
    ///         server.state().0.fetch_add(1, Ordering::Relaxed);
    ///         socketserver::default_handle_error(server.server_address(), error);
    ///     })
    ///     .bind("127.0.0.1:0")?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "a builder does nothing until `bind` or `from_listener` is called"]
    pub fn handle_error(
        mut self,
        hook: impl Fn(&ServerContext<H::State>, &RequestError) + Send + Sync + 'static,
    ) -> Self {
        self.error_hook = Some(Arc::new(hook));
        self
    }

    /// Runs when [`handle_request`](crate::Server::handle_request) waited its `timeout` and no
    /// request came (Python: `handle_timeout`). Without this hook nothing happens.
    #[must_use = "a builder does nothing until `bind` or `from_listener` is called"]
    pub fn handle_timeout(
        mut self,
        hook: impl FnMut(&ServerContext<H::State>) + Send + 'static,
    ) -> Self {
        self.loop_hooks.handle_timeout = Some(Box::new(hook));
        self
    }

    /// Runs on every pass of the serving loop, and at least every
    /// [`poll_interval`](Self::poll_interval) while idle (Python: `service_actions`). Keep it
    /// short: no request is taken while it runs. Without this hook nothing happens.
    #[must_use = "a builder does nothing until `bind` or `from_listener` is called"]
    pub fn service_actions(
        mut self,
        hook: impl FnMut(&ServerContext<H::State>) + Send + 'static,
    ) -> Self {
        self.loop_hooks.service_actions = Some(Box::new(hook));
        self
    }
}
