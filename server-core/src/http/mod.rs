//! A small HTTP/1.1 layer on top of the stream handler (Python: `http.server`'s
//! `BaseHTTPRequestHandler`). Enabled by the `http` cargo feature, on by default.
//!
//! Python builds `http.server` on `socketserver`: `HTTPServer` is a `TCPServer`, and
//! `BaseHTTPRequestHandler` is a `StreamRequestHandler` whose `handle` parses requests from
//! `rfile` and writes responses to `wfile`. This module is the same layering: an
//! [`HttpHandler`] answers one parsed [`Request`] with a [`Response`], and the adapter
//! [`Http<H>`](Http) makes it a [`StreamRequestHandler`] that any stream server runs, with any
//! strategy:
//!
//! ```
//! use std::io::{Read, Write};
//! use socketserver::http::{Http, HttpHandler, Request, Response};
//! use socketserver::{Handler, ServerContext, TcpServer};
//!
//! #[derive(Handler)]
//! struct Hello;
//!
//! impl HttpHandler for Hello {
//!     fn respond(&mut self, request: &Request, _server: &ServerContext) -> Response {
//!         match (request.method(), request.path()) {
//!             ("GET" | "HEAD", "/hello") => Response::text(200, "hello\n"),
//!             (_, "/hello") => Response::new(405).with_header("Allow", "GET, HEAD"),
//!             _ => Response::text(404, "not found\n"),
//!         }
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Python: HTTPServer(("127.0.0.1", 0), Hello). Add a strategy such as `Threading` as the
//! // third type parameter to serve clients in parallel.
//! let mut server = TcpServer::<Http<Hello>>::bind("127.0.0.1:0")?;
//! let address = server.server_address().as_inet().expect("a TCP address");
//! let stop = server.shutdown_handle();
//! let serving = std::thread::spawn(move || server.serve_forever());
//!
//! let mut client = std::net::TcpStream::connect(address)?;
//! client.write_all(b"GET /hello HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")?;
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(reply.contains("\r\nContent-Length: 6\r\n"));
//! assert!(reply.ends_with("\r\n\r\nhello\n"));
//!
//! stop.shutdown();
//! serving.join().expect("serving thread")?;
//! # Ok(())
//! # }
//! ```
//!
//! # What the layer does
//!
//! - **Parsing** with [`httparse`](https://docs.rs/httparse): the request line and headers.
//!   The layer first looks for the empty line that ends the head, so `httparse` runs once per
//!   request however slowly it arrives. Malformed heads get `400 Bad Request` with the reason in
//!   a `text/plain` body; a version other than 1.0 and 1.1 gets `505`; HTTP/1.1 without exactly
//!   one `Host` gets `400` (RFC 9112 section 3.2).
//! - **Keep-alive**: HTTP/1.1 connections stay open for the next request unless the client or
//!   the handler says `Connection: close`; HTTP/1.0 ones close unless the client asked for
//!   `Connection: keep-alive`. Pipelined requests are served in order.
//! - **Idle connections are parked** where the strategy parks them
//!   ([`Strategy::parks_idle`](crate::Strategy::parks_idle): [`Serial`](crate::Serial),
//!   [`Pool`](crate::Pool), and [`Threading`](crate::Threading) with `park_idle(true)`): once
//!   everything the client sent is answered, the connection is watched with `epoll(7)` and
//!   served again when its next request arrives: by a pool's idle workers, which wait for
//!   such connections themselves ([`Strategy::take_parked`](crate::Strategy::take_parked)),
//!   or else by the serving loop, which hands it to the strategy as a new job.
//!   An idle client then holds no thread, so a pool of a few workers answers thousands of
//!   keep-alive clients and a serial server is not held up by one. A new connection whose
//!   client has sent nothing yet waits for its first request parked too (the layer checks
//!   with one `MSG_PEEK`), so clients that connect and stay silent cannot take the workers;
//!   each is closed at the request timeout, and a stop still gives it the grace period to
//!   send its request (it is a request on its way, not an idle connection; on
//!   [`Serial`](crate::Serial), whose closing never waits, it is closed). Each time a
//!   connection is served counts as one request of the server ([`Stats`](crate::Stats)), with
//!   a handler value of its own ([`Handler::new`]) (a wait for the first request counts as
//!   none, though it makes a handler value); on a connection that is not parked (Threading's
//!   default, Forking), one handler value serves every request.
//! - **Bodies** are framed by `Content-Length` only and handed over whole. A chunked request
//!   body gets `411 Length Required` (the client can resend it with a length; RFC 9110 allows
//!   refusing it) and other transfer codings `501`; `Transfer-Encoding` together with
//!   `Content-Length` gets `400`, because disagreeing framings are how requests are smuggled.
//!   `Expect: 100-continue` is answered with `100 Continue` before the body is read, or with the
//!   refusal instead of it.
//! - **Limits** ([`Limits`], from [`HttpHandler::limits`]): a body over `max_body` (1 MiB) gets
//!   `413`; a head over `max_head` (64 KiB) gets `431` (`414` while still in the request line);
//!   more than `max_headers` (100) header fields get `431`. Bodies held at once, over all
//!   connections, are bounded by `max_bodies_total` (64 MiB): past it a request gets `503` with
//!   `Retry-After: 1` before its body is read. A finished body's buffer is not kept by its
//!   connection. Requests being answered at once can be capped too (`max_in_flight`): past it,
//!   `503` with `Retry-After: 1`. Requests are read through a 16 KiB buffer that the thread
//!   serving the connection keeps between requests and reuses for its next connection (no
//!   allocation and no zeroing per request); a parked connection holds none.
//! - **Overload**: while the server is at its
//!   [`max_connections`](crate::ServerBuilder::max_connections), every response says
//!   `Connection: close`, so keep-alive clients reconnect, and a load balancer can send them
//!   elsewhere, instead of holding their slots; clients turned away at the cap
//!   ([`Overload::Reject`](crate::Overload::Reject)) get `503` with `Retry-After: 1`.
//! - **Stopping**: while the server stops, each response says `Connection: close`, and a
//!   connection waiting for its next request (idle keep-alive) is closed at once, so a stop
//!   does not wait for idle clients and cuts no response. A new connection is given the grace
//!   period for its first request. A request that reaches an idle connection just as it is
//!   closed is not served; HTTP clients retry those (RFC 9112, section 9.3.1).
//! - **Timeouts**: the whole request (head and body) must arrive within the connection's read
//!   timeout, the server's [`request_timeout`](crate::ServerBuilder::request_timeout), or,
//!   when that is not set, [`Limits::timeout`] (30 s). The timeout is a deadline, not a limit per
//!   read, so a client sending a byte at a time cannot hold a thread past it. An idle keep-alive
//!   connection is closed when it passes; a request cut short gets `408`.
//! - **Responses**: the layer adds `Date` (none when the clock is before 1970 or after 9999)
//!   and `Content-Length`, announces `Connection: close` when it will close, sends no body for
//!   `HEAD` (the handler answers `HEAD` as `GET`; the length stays that of the body) and
//!   never for 1xx, 204 and 304. Header names that are not
//!   tokens and values with CR or LF are dropped, so a handler cannot be tricked into header
//!   injection.
//! - **After a refusal** the connection closes; the layer first shuts down its writing side and
//!   reads what the client still sends (at most 2 s and 16 MiB), because closing a socket with
//!   unread data sends a reset that can destroy the refusal before the client reads it.
//! - **Panics** in [`HttpHandler::respond`] become `500 Internal Server Error` for that client,
//!   a report to the server's [`handle_error`](crate::ServerBuilder::handle_error) hook, and a
//!   closed connection; other clients never notice.
//! - **Protocol switches**: a `101` response (see [`Response::switching_protocols`]) ends HTTP on
//!   the connection; the layer then calls [`HttpHandler::upgraded`] with the raw stream
//!   ([`Upgraded`]). This is how the `websocket` example serves WebSocket on the same port.
//!
//! # Design
//!
//! Python's `BaseHTTPRequestHandler` dispatches to `do_GET`, `do_POST`... methods and lets the
//! handler write the status line and headers itself (`send_response`, `send_header`,
//! `end_headers`), which makes it easy to forget `Content-Length` or to send a body for `HEAD`.
//! Here the handler *returns* a [`Response`] value and the layer writes it, so framing is always
//! right, one method sees every method (a `match` on method and path is the router), and a
//! handler is a plain function of the request that is easy to test. The cost is that a
//! response is held in memory whole; that suits APIs and RPC, which this layer is for. A
//! handler that needs to stream takes the raw connection through a `101` upgrade.
//!
//! Everything that is HTTP lives here, once; the `rest`, `jsonrpc`, `xmlrpc` and `websocket`
//! examples only route and encode.

mod connection;
mod input;
mod message;
mod parse;
mod write;

use std::fmt;
use std::time::Duration;

use crate::handler::{HandleResult, Handler, StreamRequestHandler};
use crate::request::StreamRequest;
use crate::server::ServerContext;

pub use connection::Upgraded;
pub use message::{reason_phrase, Request, Response, Version};

/// Limits on what a client may send, from [`HttpHandler::limits`].
///
/// Change them field by field on the default:
///
/// ```
/// use socketserver::http::Limits;
///
/// let mut limits = Limits::default();
/// limits.max_body = 16 * 1024 * 1024;
/// limits.timeout = Some(std::time::Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest body accepted, in bytes; a larger `Content-Length` gets
    /// `413 Content Too Large` before any of the body is read. Default: 1 MiB.
    pub max_body: usize,
    /// The largest request head (request line and headers), in bytes; a longer one gets
    /// `431 Request Header Fields Too Large`, or `414 URI Too Long` if the request line alone
    /// is that long. Default: 64 KiB (Python's `_MAXLINE` is 64 KiB per line).
    pub max_head: usize,
    /// The most header fields accepted; more get `431`. Default: 100 (Python's `_MAXHEADERS`).
    pub max_headers: usize,
    /// How long a whole request may take to arrive, and how long an idle keep-alive connection
    /// stays open, when the server sets no
    /// [`request_timeout`](crate::ServerBuilder::request_timeout) (which wins when set). Also
    /// the write timeout in that case. `None` waits forever, as Python does, which lets idle
    /// clients hold threads. Default: 30 s.
    pub timeout: Option<Duration>,
    /// The most bytes that request bodies may hold at once, over all the server's connections
    /// in this process. A request whose `Content-Length` would go past it gets
    /// `503 Service Unavailable` with `Retry-After: 1` before any of its body is read, and its
    /// connection closes. Each body counts from when its head is read until its response is
    /// written. Default: 64 MiB: 64 bodies of the largest default size at once. (With
    /// [`Forking`](crate::Forking), each child counts its own.)
    pub max_bodies_total: usize,
    /// The most requests being answered at once, over all the server's connections in this
    /// process (from the end of a request's head until its response is written). A request
    /// past it gets `503 Service Unavailable` with `Retry-After: 1`, before its body is read,
    /// and its connection closes: load sheds at once instead of queueing behind busy
    /// handlers. Default: `None` (bounded only by the connections the server takes).
    pub max_in_flight: Option<usize>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 1024 * 1024,
            max_head: 64 * 1024,
            max_headers: 100,
            timeout: Some(Duration::from_secs(30)),
            max_bodies_total: 64 * 1024 * 1024,
            max_in_flight: None,
        }
    }
}

/// A handler of HTTP requests (Python: a `BaseHTTPRequestHandler` subclass).
///
/// Implement [`respond`](Self::respond), then serve [`Http<Self>`](Http) on any stream server.
/// One handler value is made (with [`Handler::new`], usually `#[derive(Handler)]`) each time
/// a connection is served, and answers its requests in order: every request of the connection
/// where idle connections are not parked, the requests that arrive while it is busy where
/// they are (see "Idle connections are parked" in the [module documentation](self)). Keep what
/// outlives a request in the server's state, reached through the server as for any handler,
/// not in the handler value.
///
/// See the [module documentation](self) for a complete server and what the layer checks before
/// `respond` is called.
pub trait HttpHandler: Handler {
    /// Answers one request (Python: `do_GET`, `do_POST`... in one method).
    ///
    /// Answer `HEAD` as `GET`: the layer drops the body. Return `Response::new(405)` with an
    /// `Allow` header for a method the path does not support, as RFC 9110 asks.
    #[doc(alias = "do_GET")]
    #[doc(alias = "do_POST")]
    fn respond(&mut self, request: &Request, server: &ServerContext<Self::State>) -> Response;

    /// The limits for requests on this connection. The default is [`Limits::default`].
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// Takes over the connection after a `101 Switching Protocols` response was sent
    /// (see [`Response::switching_protocols`]). `request` is the request that asked to switch.
    ///
    /// The connection closes when this returns. Errors go to `handle_error`. The default
    /// closes the connection at once.
    fn upgraded(
        &mut self,
        request: &Request,
        stream: Upgraded<'_>,
        server: &ServerContext<Self::State>,
    ) -> HandleResult {
        let _ = (request, stream, server);
        Ok(())
    }
}

/// The adapter that serves an [`HttpHandler`] on a stream server: `TcpServer<Http<MyApi>>`,
/// `UnixStreamServer<Http<MyApi>, Threading>` and so on (Python: `HTTPServer` with a
/// `BaseHTTPRequestHandler` subclass).
///
/// It is a [`StreamRequestHandler`] whose `handle` runs the keep-alive loop described in the
/// [module documentation](self). `Http<H>` shares `H`'s state.
pub struct Http<H> {
    handler: H,
}

impl<H> Http<H> {
    /// The wrapped handler.
    pub fn get_ref(&self) -> &H {
        &self.handler
    }

    /// The wrapped handler, mutably.
    pub fn get_mut(&mut self) -> &mut H {
        &mut self.handler
    }
}

impl<H: HttpHandler> Handler for Http<H> {
    type State = H::State;

    fn new(server: &ServerContext<Self::State>) -> Self {
        Http {
            handler: H::new(server),
        }
    }
}

impl<H: HttpHandler> StreamRequestHandler for Http<H> {
    /// `503 Service Unavailable` with `Retry-After: 1` and `Connection: close`.
    const BUSY_REPLY: &'static [u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
        Retry-After: 1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        Content-Length: 19\r\n\
        Connection: close\r\n\
        \r\n\
        503 Server is busy\n";

    fn handle(&mut self, request: &mut StreamRequest<'_, Self::State>) -> HandleResult {
        connection::serve(&mut self.handler, request)
    }
}

impl<H> fmt::Debug for Http<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("handler", &std::any::type_name::<H>())
            .finish()
    }
}

/// Runs the real keep-alive loop of [`Http<H>`](Http) on `bytes`, as if one client had sent
/// them on a connection and then closed its writing side, and returns what the layer wrote
/// back. For the `cargo fuzz` targets in `fuzz/` (`cargo fuzz` builds with `--cfg fuzzing`)
/// and the regression tests of what they find: no stability promise.
///
/// The connection is one end of a Unix socket pair, made non-blocking so that a handler
/// writing to an [`Upgraded`] stream can never block on the unread other end; reading happens
/// from `bytes`, so the timeouts never fire.
///
/// # Errors
///
/// Making the socket pair, and whatever error the loop itself returns.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn fuzz_connection<H: HttpHandler>(
    handler: &mut H,
    bytes: &[u8],
    server: &ServerContext<H::State>,
) -> Result<Vec<u8>, crate::error::BoxError> {
    let (ours, _peer) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let connection = crate::request::Connection::Unix(ours);
    let client = crate::addr::Address::Inet(std::net::SocketAddr::from(([127, 0, 0, 1], 9)));
    let mut rfile = bytes;
    let mut wfile = Vec::new();
    connection::serve_bytes(
        handler,
        &mut rfile,
        &mut wfile,
        &connection,
        &client,
        server,
    )?;
    Ok(wfile)
}

#[cfg(test)]
mod tests;
