//! The keep-alive loop on one connection: read a head, check it, read the body, ask the
//! handler, write the response; until either side closes, a limit is hit, or the timeout
//! passes. Also [`Upgraded`], the connection after a protocol switch. The reading side is in
//! `input.rs`, the response writer in `write.rs`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use log::Level;

use crate::addr::Address;
use crate::error::{RequestError, Stage};
use crate::handler::HandleResult;
use crate::report::{say_limited, Limit};
use crate::request::{Connection, Memo, Park, Stream, StreamRequest};
use crate::server::ServerContext;

use super::input::{is_disconnect, is_timeout, Input, ReadError};
use super::message::{reason_phrase, Request, Response, Version};
use super::parse::{self, Framing, Reject};
use super::write::write_response;
use super::HttpHandler;

const LOG: &str = "socketserver::http";

/// The connection after a `101 Switching Protocols` response: the byte stream, for the
/// protocol the client switched to (WebSocket, for example). On a TLS connection it reads and
/// writes plaintext, as `rfile` and `wfile` do.
///
/// Reading first returns the bytes the client sent right after its request (they were read
/// along with it), then reads the connection. Writing sends at once (through `wfile`, flushed
/// after every write). The server closes the connection when [`HttpHandler::upgraded`]
/// returns.
///
/// The connection has one owner, the thread serving it: another thread must not write to it
/// (on TLS it cannot; on a plain socket its bytes would interleave with this thread's). To send
/// from elsewhere (a chat broadcast), queue the bytes for the connection's thread and wake it:
/// it can sleep in `poll(2)` on [`connection`](Self::connection)'s descriptor and a wake-up
/// descriptor of its own, once [`buffered`](Self::buffered) is 0. Another thread may shut the
/// socket down (`connection().try_clone()`) to end a blocked read.
pub struct Upgraded<'r> {
    input: Input<'r>,
    output: &'r mut dyn Write,
    stream: Option<&'r Stream>,
}

impl<'r> Upgraded<'r> {
    /// The connection, for its address, socket options and timeouts (which bound this
    /// stream's reads and writes). It is the raw socket: writing to it directly would bypass
    /// TLS and this stream.
    pub fn connection(&self) -> &'r Connection {
        self.input.connection
    }

    /// What the TLS handshake negotiated; `None` on a plain connection.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&'r crate::tls::TlsInfo> {
        self.stream.and_then(Stream::tls)
    }

    /// Bytes a read returns at once, without waiting for the socket: those read along with
    /// the request or since, and TLS plaintext already decrypted. While it is above 0, the
    /// socket's descriptor may not be readable although a read would not block: check it
    /// before sleeping in `poll(2)`. (Counted exactly while the server's `rbufsize` is at most
    /// 16 KiB, as by default: the reads here then never fill `rfile`'s own buffer.)
    pub fn buffered(&self) -> usize {
        self.input.pending().len() + self.stream.map_or(0, Stream::buffered)
    }

    /// Ends the writing side now, after what was written: on TLS with `close_notify`, then
    /// `shutdown(SHUT_WR)`, so the client reads the end (a WebSocket client waits for the
    /// server to close first). Reading goes on (to linger for what the client still sends).
    pub fn close_write(&mut self) -> io::Result<()> {
        self.output.flush()?;
        match self.stream {
            Some(stream) => stream.shutdown_write(),
            None => self.input.connection.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Upgraded<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.input.pending().is_empty() && self.input.fill(None)? == 0 {
            return Ok(0);
        }
        let pending = self.input.pending();
        let n = pending.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), pending.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.input.pos += n;
        Ok(n)
    }
}

impl Write for Upgraded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write_all(buf)?;
        self.output.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.output.flush()
    }
}

impl fmt::Debug for Upgraded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("buffered", &self.buffered())
            .finish_non_exhaustive()
    }
}

/// Serves HTTP requests on one connection until it closes. Called by `Http<H>::handle`.
pub(crate) fn serve<H: HttpHandler>(
    handler: &mut H,
    request: &mut StreamRequest<'_, H::State>,
) -> HandleResult {
    let server = request.server();
    let client = request.client_address();
    let connection = request.connection();
    let registered = request.registered();
    let stream = request.stream();
    let StreamRequest {
        rfile,
        wfile,
        park,
        memo,
        ..
    } = request;
    let fresh = Memo::default();
    let memo = memo.unwrap_or(&fresh);
    // A parked connection comes back idle (marked so in the registry), with its client's
    // next request to read.
    let resumed = park.resumed;
    let input = Input {
        rfile,
        connection,
        buf: super::input::take_read_buffer(),
        pos: 0,
        end: 0,
        registered,
        idle: resumed,
        read_timeout: &memo.read_timeout,
    };
    let session = Session {
        stream: Some(stream),
        park: Some(park),
        resumed,
        memo,
    };
    serve_connection(handler, input, wfile, session, client, server)
}

/// What the keep-alive loop knows of its connection beyond reading and writing.
struct Session<'r> {
    /// The byte stream (for TLS details and what it has decrypted); `None` under the fuzzer.
    stream: Option<&'r Stream>,
    /// Where to ask for the connection to be parked between requests.
    park: Option<&'r mut Park>,
    /// This call resumes a parked connection: a request was served on it before.
    resumed: bool,
    /// What is remembered of the socket from the connection's earlier requests.
    memo: &'r Memo,
}

/// Serves HTTP requests read from `rfile` and answered on `wfile` (a byte slice and a `Vec`
/// under the fuzzer: `fuzz_connection`, behind `cfg(fuzzing)`). `connection` is only used
/// for its timeouts, for shutting down the writing side, and by an [`Upgraded`] stream.
#[cfg(any(test, fuzzing))]
pub(crate) fn serve_bytes<'r, H: HttpHandler>(
    handler: &mut H,
    rfile: &'r mut dyn Read,
    wfile: &'r mut impl Write,
    connection: &'r Connection,
    client: &Address,
    server: &ServerContext<H::State>,
) -> HandleResult {
    let memo = Memo::default();
    let input = Input {
        rfile,
        connection,
        buf: super::input::take_read_buffer(),
        pos: 0,
        end: 0,
        registered: None,
        idle: false,
        read_timeout: &memo.read_timeout,
    };
    let session = Session {
        stream: None,
        park: None,
        resumed: false,
        memo: &memo,
    };
    serve_connection(handler, input, wfile, session, client, server)
}

/// The keep-alive loop of [`serve`] and [`serve_bytes`].
fn serve_connection<'r, H: HttpHandler, W: Write + 'r>(
    handler: &mut H,
    mut input: Input<'r>,
    wfile: &'r mut W,
    session: Session<'r>,
    client: &Address,
    server: &ServerContext<H::State>,
) -> HandleResult {
    let Session {
        stream,
        mut park,
        resumed,
        memo,
    } = session;
    let connection = input.connection;
    let limits = handler.limits();
    // The server's request_timeout, when set, already is the socket's timeout; otherwise the
    // layer's own, so an idle keep-alive client never holds a thread forever.
    // Looked at and set on the connection's first request only (the memo keeps them).
    let (configured_read, configured_write) = match memo.configured.get() {
        Some(configured) => configured,
        None => {
            let configured = crate::sys::socket::timeouts(connection);
            memo.configured.set(Some(configured));
            if configured.1.is_none() {
                if let Some(timeout) = configured.0.or(limits.timeout) {
                    connection.set_write_timeout(Some(timeout))?;
                }
            }
            configured
        }
    };
    let timeout = configured_read.or(limits.timeout);
    let mut served = resumed;
    let mut first = true;
    loop {
        // Between requests, with nothing of the next one read, the connection is idle: a stop
        // closes it at once. Already stopping: end it now rather than wait for the client. A
        // new connection is not idle: its client connected to send a request, so a stop gives
        // it the grace period to arrive.
        if served && input.pending().is_empty() {
            if !input.set_idle(true) {
                return Ok(());
            }
            // Where the strategy parks idle connections, wait for the next request in the
            // serving loop rather than on this thread (not on the first pass of a resumed
            // connection: it was woken because bytes came).
            if !first && park.as_mut().is_some_and(|p| p.ask(timeout, stream)) {
                return Ok(());
            }
        } else if !served
            && input.pending().is_empty()
            && park
                .as_mut()
                .zip(stream)
                .is_some_and(|(p, s)| p.ask_first(timeout, s))
        {
            // A new connection whose client has sent nothing yet waits for its first request
            // parked too, so a client that connects and stays silent holds no worker (it is
            // closed at `timeout`, as it would be here).
            return Ok(());
        }
        served = true;
        first = false;
        let deadline = timeout.map(|t| Instant::now() + t);
        let head = match input.read_head(&limits, deadline) {
            Ok(head) => head,
            Err(stop) => return stopped(stop, &mut input, wfile, client),
        };
        let framing = match parse::framing(&head, &limits) {
            Ok(framing) => framing,
            Err(reject) => return refuse(&reject, &mut input, wfile, client),
        };
        let keep_alive = parse::client_keeps_alive(&head);
        // The body's bytes count against the server-wide budget until the response is out.
        let _lease = match server
            .bodies()
            .take(framing.length, limits.max_bodies_total)
        {
            Some(lease) => lease,
            None => {
                static LIMIT: Limit = Limit::new();
                say_limited(
                    &LIMIT,
                    Level::Warn,
                    LOG,
                    format_args!(
                    "{client}: refused a {} byte body: request bodies already hold {} of {} bytes",
                    framing.length, server.bodies().held(), limits.max_bodies_total),
                );
                let busy = Reject::new(503, "too many request bodies at once; retry later");
                return refuse(&busy, &mut input, wfile, client);
            }
        };
        // Counted from here until the response is out, against `max_in_flight`.
        let _in_flight = match limits.max_in_flight {
            None => None,
            Some(max) => match server.in_flight().take(1, max) {
                Some(lease) => Some(lease),
                None => {
                    static LIMIT: Limit = Limit::new();
                    say_limited(
                        &LIMIT,
                        Level::Warn,
                        LOG,
                        format_args!("{client}: refused a request: {max} already in flight"),
                    );
                    let busy = Reject::new(503, "too many requests at once; retry later");
                    return refuse(&busy, &mut input, wfile, client);
                }
            },
        };
        let body = match read_body(&mut input, wfile, framing, deadline) {
            Ok(body) => body,
            Err(stop) => return stopped(stop, &mut input, wfile, client),
        };
        let version = head.version;
        let http_request = Request {
            method: head.method,
            target: head.target,
            version,
            headers: head.headers,
            body,
            client_address: client.clone(),
        };
        let head_only = http_request.method == "HEAD";
        let (response, panicked) = respond(handler, &http_request, server, client);
        let upgrade = response.status() == 101 && !panicked;
        // While the server stops (and after `serve_forever` returned, while `close` drains),
        // the response says `Connection: close`, so the client opens its next connection to a
        // server that serves it, and `close` does not wait for it. So it does while the server
        // is at `max_connections`: keep-alive would hold the slot the next client waits for.
        let close = panicked
            || !keep_alive
            || response.asks_close()
            || server.is_closing()
            || server.is_full();
        log::debug!(target: LOG, "{client} \"{} {} {version}\" {} {}",
            http_request.method, http_request.target, response.status(), response.body().len());
        let written = write_response(wfile, &response, version, head_only, close && !upgrade)
            .and_then(|()| wfile.flush());
        match written {
            Ok(()) => {}
            Err(e) if is_disconnect(&e) || is_timeout(&e) => {
                log::debug!(target: LOG, "{client}: response not delivered: {e}");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if upgrade {
            // Hand the connection over with the socket's own timeouts, not the layer's.
            connection.set_read_timeout(configured_read)?;
            connection.set_write_timeout(configured_write)?;
            memo.read_timeout.set(None);
            let upgraded = Upgraded {
                input,
                output: wfile,
                stream,
            };
            return handler.upgraded(&http_request, upgraded, server);
        }
        if close {
            return Ok(());
        }
    }
}

/// Reads the body, sending `100 Continue` first when the client waits for it.
fn read_body(
    input: &mut Input<'_>,
    wfile: &mut impl Write,
    framing: Framing,
    deadline: Option<Instant>,
) -> Result<Vec<u8>, ReadError> {
    if framing.expect_continue && input.pending().is_empty() {
        wfile
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .and_then(|()| wfile.flush())
            .map_err(ReadError::Io)?;
    }
    input.read_body(framing.length, deadline)
}

/// Asks the handler for a response, and whether it panicked. A panic becomes
/// `500 Internal Server Error` for this client and a report to `handle_error`, and the
/// connection closes.
fn respond<H: HttpHandler>(
    handler: &mut H,
    request: &Request,
    server: &ServerContext<H::State>,
    client: &Address,
) -> (Response, bool) {
    // AssertUnwindSafe: after a panic the handler is never called again; the connection
    // closes (500 responses close it) and the handler is dropped with it.
    match catch_unwind(AssertUnwindSafe(|| handler.respond(request, server))) {
        Ok(response) => (response, false),
        Err(payload) => {
            server.handle_error(&RequestError::Panic {
                client: client.clone(),
                stage: Stage::Handle,
                message: crate::error::panic_message(payload.as_ref()),
            });
            (Response::text(500, "500 Internal Server Error\n"), true)
        }
    }
}

/// Ends the connection after reading stopped, answering where an answer helps.
fn stopped(
    stop: ReadError,
    input: &mut Input<'_>,
    wfile: &mut impl Write,
    client: &Address,
) -> HandleResult {
    match stop {
        ReadError::Closed => Ok(()),
        ReadError::Timeout { partial: false } => {
            log::debug!(target: LOG, "{client}: idle keep-alive connection timed out");
            Ok(())
        }
        ReadError::Timeout { partial: true } => refuse(
            &Reject::new(408, "the request did not arrive in time"),
            input,
            wfile,
            client,
        ),
        ReadError::Reject(reject) => refuse(&reject, input, wfile, client),
        ReadError::Io(e) if is_disconnect(&e) || is_timeout(&e) => {
            log::debug!(target: LOG, "{client}: connection ended mid-request: {e}");
            Ok(())
        }
        ReadError::Io(e) => Err(e.into()),
    }
}

/// Sends a refusal, closes the writing side, and lingers so the client can read it.
fn refuse(
    reject: &Reject,
    input: &mut Input<'_>,
    wfile: &mut impl Write,
    client: &Address,
) -> HandleResult {
    log::debug!(target: LOG, "{client}: {} {}", reject.status, reject.reason);
    let mut response = Response::text(
        reject.status,
        format!(
            "{} {}: {}\n",
            reject.status,
            reason_phrase(reject.status),
            reject.reason
        ),
    );
    if reject.status == 503 {
        response = response.with_header("Retry-After", "1");
    }
    let sent =
        write_response(wfile, &response, Version::Http11, false, true).and_then(|()| wfile.flush());
    if let Err(e) = sent {
        log::debug!(target: LOG, "{client}: refusal not delivered: {e}");
        return Ok(());
    }
    let _ = input.connection.shutdown(Shutdown::Write);
    input.linger();
    Ok(())
}
