//! Request handlers: what runs for each request (Python's `BaseRequestHandler` family),
//! documented on [`Handler`].

use log::Level;

use crate::addr::Address;
use crate::error::{BoxError, RequestError};
use crate::report::{say_limited, Limit};
use crate::request::{DatagramRequest, StreamRequest};
use crate::server::ServerContext;

/// What a handler method returns: `Ok(())`, or any error, which goes to `handle_error`.
pub type HandleResult = Result<(), BoxError>;

/// How a handler is made for each request, and the state it shares with every other request.
///
/// Python calls `RequestHandlerClass(request, client_address, server)` for every request; here the
/// server calls [`Handler::new`] on the thread (or in the process) that will run the request, so a
/// handler itself never crosses threads and needs neither `Send` nor `'static`.
///
/// `#[derive(Handler)]` (from the facade crate) writes this impl for you. Then implement
/// [`StreamRequestHandler`] (TCP and Unix stream servers) or [`DatagramRequestHandler`] (UDP and
/// Unix datagram servers).
///
/// # Lifecycle
///
/// For every request the server makes a new handler with [`Handler::new`], then calls `setup`,
/// `handle` and `finish`, as Python does:
///
/// - If `setup` fails, neither `handle` nor `finish` runs.
/// - `finish` runs whenever `setup` succeeded, even when `handle` failed or panicked.
/// - Every error and every caught panic goes to the `handle_error` hook with the client's address,
///   and the server goes on serving.
///
/// # Server hooks
///
/// Python overrides `verify_request`, `handle_error`, `handle_timeout` and `service_actions` on a
/// subclass of the server. They belong to the server here too: set them on the
/// [`ServerBuilder`](crate::ServerBuilder) (its `verify_request`, `handle_error`,
/// `handle_timeout` and `service_actions` methods), once, for every transport and handler type.
/// Each gets the [`ServerContext`], so it can reach the shared state.
///
/// # Examples
///
/// ```
/// use socketserver::{Handler, ServerContext};
///
/// // A handler with per-request data and no shared state.
/// struct Greeter {
///     lines: usize,
/// }
///
/// impl Handler for Greeter {
///     type State = ();
///     fn new(_server: &ServerContext) -> Self {
///         Greeter { lines: 0 }
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request handler: it does not implement `Handler`",
    label = "`Handler` is missing here",
    note = "add `#[derive(Handler)]` above `struct {Self}` (or implement `Handler` by hand, saying how a handler is made for each request)"
)]
pub trait Handler: Sized {
    /// State shared by all requests of one server (Python: attributes of the server object).
    ///
    /// It lives in an `Arc` and is reached with [`ServerContext::state`]. It must be
    /// `Send + Sync + 'static` because requests may run on several threads at once; use
    /// atomics, a `parking_lot::Mutex` or channels inside it for anything that changes.
    /// Use `()` when there is none.
    type State: Send + Sync + 'static;

    /// Makes the handler for one request.
    fn new(server: &ServerContext<Self::State>) -> Self;
}

/// A handler for stream sockets (TCP, Unix stream): Python's `StreamRequestHandler`.
///
/// The request gives buffered reading (`rfile`) and writing (`wfile`) on the connection; see
/// [`StreamRequest`]. After `finish` the server flushes `wfile`, shuts down the writing half and
/// closes the connection, so the client sees end-of-file as soon as the handler returns.
///
/// # Examples
///
/// An echo handler:
///
/// ```
/// use std::io;
/// use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type State = ();
///     fn new(_: &ServerContext) -> Self {
///         Echo
///     }
/// }
///
/// impl StreamRequestHandler for Echo {
///     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
///         io::copy(&mut request.rfile, &mut request.wfile)?;
///         Ok(())
///     }
/// }
/// ```
pub trait StreamRequestHandler: Handler {
    /// What a client turned away by the server's overload policy
    /// ([`Overload::Reject`](crate::Overload::Reject), at
    /// [`max_connections`](crate::ServerBuilder::max_connections) or the per-client cap) is
    /// sent before its connection closes, in this protocol's words: the HTTP layer sends
    /// `503 Service Unavailable` with `Retry-After: 1`; a line protocol might send `busy\n`.
    /// Keep it short (it is sent without waiting, into the new socket's empty send buffer).
    /// Default: nothing (the connection just closes).
    const BUSY_REPLY: &'static [u8] = b"";

    /// Runs before `handle` (Python: `setup`). If it fails, neither `handle` nor `finish` runs.
    fn setup(&mut self, request: &mut StreamRequest<'_, Self::State>) -> HandleResult {
        let _ = request;
        Ok(())
    }

    /// Serves the request (Python: `handle`).
    fn handle(&mut self, request: &mut StreamRequest<'_, Self::State>) -> HandleResult;

    /// Runs after `handle`, even when it failed or panicked (Python: `finish`).
    fn finish(&mut self, request: &mut StreamRequest<'_, Self::State>) -> HandleResult {
        let _ = request;
        Ok(())
    }
}

/// A handler for datagram sockets (UDP, Unix datagram): Python's `DatagramRequestHandler`.
///
/// Each datagram is one request. The request gives the packet (`rfile`, also
/// [`DatagramRequest::packet`]) and a reply buffer (`wfile`); what the handler wrote to `wfile` is
/// sent back to the sender after `finish`, in one datagram.
///
/// Unlike Python, nothing is sent when the handler wrote nothing: Python always sends, so a
/// handler that only listens emits empty datagrams. Call
/// [`DatagramRequest::send_empty_reply`] to send an empty one on purpose.
///
/// # Examples
///
/// ```
/// use std::io::Write;
/// use socketserver::{DatagramRequest, DatagramRequestHandler, HandleResult, Handler, ServerContext};
///
/// struct Upper;
///
/// impl Handler for Upper {
///     type State = ();
///     fn new(_: &ServerContext) -> Self {
///         Upper
///     }
/// }
///
/// impl DatagramRequestHandler for Upper {
///     fn handle(&mut self, request: &mut DatagramRequest<'_>) -> HandleResult {
///         let upper = request.packet().to_ascii_uppercase();
///         request.wfile.write_all(&upper)?;
///         Ok(())
///     }
/// }
/// ```
pub trait DatagramRequestHandler: Handler {
    /// Runs before `handle` (Python: `setup`). If it fails, neither `handle` nor `finish` runs.
    fn setup(&mut self, request: &mut DatagramRequest<'_, Self::State>) -> HandleResult {
        let _ = request;
        Ok(())
    }

    /// Serves the datagram (Python: `handle`).
    fn handle(&mut self, request: &mut DatagramRequest<'_, Self::State>) -> HandleResult;

    /// Runs after `handle`, even when it failed or panicked (Python: `finish`).
    fn finish(&mut self, request: &mut DatagramRequest<'_, Self::State>) -> HandleResult {
        let _ = request;
        Ok(())
    }
}

/// The default `handle_error`: logs through `log`, naming the server and the client (Python
/// prints the traceback to stderr).
///
/// Failures are logged at error level (target `socketserver::handler`); what clients cause
/// (undeliverable replies, oversized datagrams, a missing or untrusted PROXY header) at warn
/// level. When no logger is installed (`log`'s level is off),
/// the message goes to stderr instead, so a failing handler is never silent; set
/// [`ServerBuilder::handle_error`](crate::ServerBuilder::handle_error) to report elsewhere or
/// not at all. At most 20 messages a second are written,
/// so that a flood of bad requests does not become a flood of log lines; the next message
/// written says how many were left out.
pub fn default_handle_error(server_address: &Address, error: &RequestError) {
    static LIMIT: Limit = Limit::new();
    let level = match error {
        // What clients (or the network) did, not a fault of the server's.
        RequestError::Truncated { .. }
        | RequestError::UnboundClient { .. }
        | RequestError::Reply { .. }
        | RequestError::UntrustedProxy { .. }
        | RequestError::ProxyHeader { .. } => Level::Warn,
        _ => Level::Error,
    };
    say_limited(
        &LIMIT,
        level,
        "socketserver::handler",
        format_args!("server {server_address}: {error}"),
    );
}
