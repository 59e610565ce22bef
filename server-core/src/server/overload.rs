//! Saying no: what the server does with a connection that comes when `max_connections` are
//! open ([`Overload`]), the per-client cap, and turning a connection away without handling it.

use std::time::Duration;

use crate::handler::Handler;
use crate::server::ServerBuilder;
use crate::transport::Transport;

/// What the serving loop does with a client that connects while
/// [`max_connections`](ServerBuilder::max_connections) requests are open (or that goes past
/// [`max_connections_per_client`](ServerBuilder::max_connections_per_client)).
///
/// A turned-away connection is never also handled: no handler is made for it, and it counts in
/// [`Stats::rejected`](crate::Stats::rejected) and
/// [`Stats::overloaded`](crate::Stats::overloaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overload {
    /// Leave it in the kernel's listen backlog until a request ends (the default). Clients
    /// wait, up to the backlog's size; the kernel refuses (or, for TCP, drops the handshake
    /// of) the ones after. No byte is read or written. Over the per-client cap, where the
    /// connection is already taken, this answers as [`Reject`](Self::Reject) does.
    #[default]
    Wait,
    /// Accept it, send the handler type's busy reply
    /// ([`StreamRequestHandler::BUSY_REPLY`](crate::StreamRequestHandler::BUSY_REPLY): `503`
    /// with `Retry-After: 1` for the HTTP layer), and close it. The reply is sent without
    /// waiting (into the socket's empty send buffer), so a client that does not read cannot
    /// hold up the serving loop; bytes the client already sent are read and dropped first, so
    /// that the close does not reset the connection before the reply arrives. Load can then
    /// go elsewhere at once (a load balancer retries another server) instead of queueing.
    Reject,
    /// Accept it and close it at once, without a word.
    Close,
    /// Accept it and hold it, first come first served, until a request ends (then it is
    /// served) or it has waited `timeout` (then it is turned away: with the busy reply if
    /// `reply`, as [`Reject`](Self::Reject), else closed, as [`Close`](Self::Close)). At most
    /// as many clients wait as `max_connections` (more are turned away at once); a waiting
    /// client holds a descriptor but no slot and no handler. HAProxy's `timeout queue`: a
    /// burst waits a moment instead of being refused, and a long overload is refused in
    /// bounded time instead of sitting in the kernel's backlog.
    Queue {
        /// The longest a client waits for a slot.
        timeout: Duration,
        /// Whether a client whose wait ran out gets the busy reply before its close.
        reply: bool,
    },
}

/// The most bytes read and dropped from a turned-away connection before it is closed (what the
/// client sent before it was turned away, so that closing does not reset the connection and
/// destroy the busy reply in flight). Read without waiting: what has not arrived yet is not
/// waited for.
pub(crate) const TURN_AWAY_DRAIN: usize = 16 * 1024;

/// Overload policy options.
impl<T: Transport, H: Handler, S> ServerBuilder<T, H, S> {
    /// What happens to a client that connects while `max_connections` requests are open
    /// (see [`Overload`]). Default: [`Overload::Wait`], in the kernel's backlog. Without
    /// [`max_connections`](Self::max_connections) (or
    /// [`max_connections_per_client`](Self::max_connections_per_client)) it never applies.
    ///
    /// The policy applies too when the strategy has no room (a [`Pool`](crate::Pool) whose
    /// queue is full, [`Forking`](crate::Forking) at `max_children`): with `Wait` the loop
    /// waits for it, with the others the client is turned away or queued. Datagram servers
    /// drop the datagram with `Reject` and `Close` (there is no connection to answer on), and
    /// queue datagrams as they queue connections.
    ///
    /// # Examples
    ///
    /// ```
    /// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
    /// use socketserver::Overload;
    /// # struct Echo;
    /// # impl Handler for Echo { type State = (); fn new(_: &ServerContext) -> Self { Echo } }
    /// # impl StreamRequestHandler for Echo {
    /// #     fn handle(&mut self, _: &mut StreamRequest<'_>) -> HandleResult { Ok(()) }
    /// # }
    /// # fn main() -> Result<(), socketserver::Error> {
    /// // 256 connections at once; the next client hears "busy" and can try elsewhere.
    /// let server = TcpServer::<Echo>::builder()
    ///     .max_connections(Some(256))
    ///     .overload(Overload::Reject)
    ///     .bind("127.0.0.1:0")?;
    /// # Ok(())
    /// # }
    /// ```
    #[must_use = "a builder does nothing until `bind` or `from_listener` is called"]
    pub fn overload(mut self, policy: Overload) -> Self {
        self.overload = policy;
        self
    }

    /// The most connections one client address (its IP, whatever its port) may have open at
    /// once, so that one client cannot take every slot of `max_connections`. A connection over
    /// it is turned away at once as the [`overload`](Self::overload) policy says (`Wait` answers
    /// as `Reject`: the connection is already taken). Counted in
    /// [`Stats::over_client_limit`](crate::Stats::over_client_limit). Unix socket clients have
    /// no address and are not limited. Default: `None` (no limit). At least 1.
    #[must_use = "a builder does nothing until `bind` or `from_listener` is called"]
    pub fn max_connections_per_client(mut self, max: Option<usize>) -> Self {
        self.max_per_client = max;
        self
    }
}
