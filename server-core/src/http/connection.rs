//! The keep-alive loop on one connection: read a head, check it, read the body, ask the
//! handler, write the response; until either side closes, a limit is hit, or the timeout
//! passes. Also the response writer and [`Upgraded`], the connection after a protocol switch.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime};

use log::Level;

use crate::addr::Address;
use crate::error::{RequestError, Stage};
use crate::handler::HandleResult;
use crate::report::{say_limited, Limit};
use crate::request::{Connection, StreamRequest};
use crate::server::connections::Registered;
use crate::server::ServerContext;

use super::message::{is_safe_value, is_token, reason_phrase, Request, Response, Version};
use super::parse::{self, Framing, Head, Reject};
use super::{HttpHandler, Limits};

const LOG: &str = "socketserver::http";

/// How much of an unfinished head is checked, as it arrives, for bytes no request can start
/// with.
const PROBE: usize = 64;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// After refusing a request whose body was not read, how long and how much the layer keeps
/// reading (and discarding) so the client sees the refusal instead of a reset: closing a socket
/// with unread data makes the kernel send RST, which can destroy the response in flight.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Why reading a request stopped.
enum ReadError {
    /// The client closed the connection (cleanly, between requests, when nothing was read).
    Closed,
    /// The deadline passed; `partial` if part of a request had arrived.
    Timeout { partial: bool },
    /// The request is malformed or over a limit.
    Reject(Reject),
    /// The connection failed, or closed in the middle of a request.
    Io(io::Error),
}

/// The reading side: `rfile`, plus the bytes read past the current request (pipelining).
struct Input<'r> {
    rfile: &'r mut dyn Read,
    connection: &'r Connection,
    buf: Vec<u8>,
    pos: usize,
    /// The connection's registration, marked idle between requests (none under the fuzzer).
    registered: Option<&'r Registered<'r>>,
    /// Whether it is marked idle now.
    idle: bool,
}

impl Input<'_> {
    fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Reads more bytes into the buffer, waiting at most until `deadline`; the count read,
    /// 0 at end of file.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<usize, io::Error> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // SO_RCVTIMEO bounds one read; setting it to what is left before every read makes
            // it a deadline for the whole request, so a client trickling a byte at a time
            // cannot hold the connection past it.
            self.connection
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let result = loop {
            match self.rfile.read(self.buf.get_mut(old..).unwrap_or_default()) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        if n > 0 {
            // The next request has begun: a stop must let it finish.
            self.set_idle(false);
        }
        result
    }

    /// Marks the connection idle (waiting for a request, nothing of it read) or busy; `false`
    /// if the server is stopping and the connection should end instead of waiting.
    fn set_idle(&mut self, idle: bool) -> bool {
        if self.idle == idle {
            return true;
        }
        let marked = self.registered.is_none_or(|r| r.set_idle(idle));
        self.idle = idle && marked;
        marked
    }

    /// Reads the next request head. `Err(Closed)` when the client closed between requests.
    fn read_head(&mut self, limits: &Limits, deadline: Option<Instant>) -> Result<Head, ReadError> {
        let mut scanned = 0;
        loop {
            let pending = self.pending();
            if let Some(end) = parse::find_head_end(pending, scanned) {
                match parse::parse_head(pending, limits) {
                    Err(reject) => return Err(ReadError::Reject(reject)),
                    Ok(Some((_, len))) if len > limits.max_head => {
                        let head = pending.get(..len).unwrap_or_default();
                        return Err(ReadError::Reject(parse::head_too_large(head, limits)));
                    }
                    Ok(Some((head, len))) => {
                        self.pos += len;
                        return Ok(head);
                    }
                    // Only empty lines so far, or an empty line the parser skipped: go on
                    // looking past it.
                    Ok(None) => scanned = end,
                }
            }
            let pending = self.pending();
            if pending.len() > limits.max_head {
                return Err(ReadError::Reject(parse::head_too_large(pending, limits)));
            }
            scanned = scanned.max(pending.len());
            // Bytes that can never start a request (a TLS ClientHello, bare CRs, binary) are
            // refused now rather than at the timeout. Only a short prefix is parsed, so a head
            // trickling in still costs one full parse.
            let probe = pending.get(..pending.len().min(PROBE)).unwrap_or_default();
            if let Err(reject) = parse::parse_head(probe, limits) {
                return Err(ReadError::Reject(reject));
            }
            let partial = !pending.iter().all(|&b| b == b'\r' || b == b'\n');
            match self.fill(deadline) {
                Ok(0) if partial => {
                    return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
                }
                Ok(0) => return Err(ReadError::Closed),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(ReadError::Timeout { partial }),
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Reads a body of exactly `length` bytes.
    fn read_body(
        &mut self,
        length: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<u8>, ReadError> {
        while self.pending().len() < length {
            match self.fill(deadline) {
                Ok(0) => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return Err(ReadError::Timeout { partial: true }),
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        let end = self.pos + length;
        if end == self.buf.len() && self.pos <= READ_CHUNK {
            // Nothing read past the body (the common case): hand the buffer over instead of
            // copying it, so a large body is held once, and the connection does not keep a
            // body-sized buffer once the request is done.
            let mut body = std::mem::take(&mut self.buf);
            body.drain(..self.pos);
            self.pos = 0;
            return Ok(body);
        }
        let body = self.buf.get(self.pos..end).unwrap_or_default().to_vec();
        self.pos = end;
        Ok(body)
    }

    /// Reads and discards what the client still sends, for a bounded time and amount, so it
    /// reads the refusal already sent instead of a connection reset.
    fn linger(&mut self) {
        let deadline = Instant::now() + LINGER_TIME;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.buf.clear();
            self.pos = 0;
            match self.fill(Some(deadline)) {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Errors that only mean the client went away.
fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// The connection after a `101 Switching Protocols` response: the raw byte stream, for the
/// protocol the client switched to (WebSocket, for example).
///
/// Reading first returns the bytes the client sent right after its request (they were read
/// along with it), then reads the connection. Writing goes straight to the connection.
/// Neither side is buffered by this type; the server closes the connection when
/// [`HttpHandler::upgraded`] returns.
///
/// To write from another thread (a chat broadcast, say), clone the socket:
/// `upgraded.connection().as_tcp()` gives the `TcpStream`, and its `try_clone` a second handle.
pub struct Upgraded<'r> {
    input: Input<'r>,
}

impl<'r> Upgraded<'r> {
    /// The connection, for its address, socket options and timeouts.
    pub fn connection(&self) -> &'r Connection {
        self.input.connection
    }
}

impl Read for Upgraded<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let pending = self.input.pending();
        if !pending.is_empty() {
            let n = pending.len().min(out.len());
            if let (Some(dst), Some(src)) = (out.get_mut(..n), pending.get(..n)) {
                dst.copy_from_slice(src);
            }
            self.input.pos += n;
            return Ok(n);
        }
        self.input.rfile.read(out)
    }
}

impl Write for Upgraded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut connection = self.input.connection;
        connection.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Upgraded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("buffered", &self.input.pending().len())
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
    let StreamRequest { rfile, wfile, .. } = request;
    let input = Input {
        rfile,
        connection,
        buf: Vec::new(),
        pos: 0,
        registered,
        idle: false,
    };
    serve_connection(handler, input, wfile, client, server)
}

/// Serves HTTP requests read from `rfile` and answered on `wfile` (a byte slice and a `Vec`
/// under the fuzzer: `fuzz_connection`, behind `cfg(fuzzing)`). `connection` is only used
/// for its timeouts, for shutting down the writing side, and by an [`Upgraded`] stream.
#[cfg(any(test, fuzzing))]
pub(crate) fn serve_bytes<H: HttpHandler>(
    handler: &mut H,
    rfile: &mut dyn Read,
    wfile: &mut impl Write,
    connection: &Connection,
    client: &Address,
    server: &ServerContext<H::State>,
) -> HandleResult {
    let input = Input {
        rfile,
        connection,
        buf: Vec::new(),
        pos: 0,
        registered: None,
        idle: false,
    };
    serve_connection(handler, input, wfile, client, server)
}

/// The keep-alive loop of [`serve`] and [`serve_bytes`].
fn serve_connection<H: HttpHandler>(
    handler: &mut H,
    mut input: Input<'_>,
    wfile: &mut impl Write,
    client: &Address,
    server: &ServerContext<H::State>,
) -> HandleResult {
    let connection = input.connection;
    let limits = handler.limits();
    // The server's request_timeout, when set, already is the socket's timeout; otherwise the
    // layer's own, so an idle keep-alive client never holds a thread forever.
    let sock = socket2::SockRef::from(connection);
    let configured_read = sock.read_timeout().ok().flatten();
    let configured_write = sock.write_timeout().ok().flatten();
    let timeout = configured_read.or(limits.timeout);
    if configured_write.is_none() && timeout.is_some() {
        connection.set_write_timeout(timeout)?;
    }
    let mut served = false;
    loop {
        // Between requests, with nothing of the next one read, the connection is idle: a stop
        // closes it at once. Already stopping: end it now rather than wait for the client. A
        // new connection is not idle: its client connected to send a request, so a stop gives
        // it the grace period to arrive.
        if served && input.pending().is_empty() && !input.set_idle(true) {
            return Ok(());
        }
        served = true;
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
        // server that serves it, and `close` does not wait for it.
        let close = panicked || !keep_alive || response.asks_close() || server.is_closing();
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
            return handler.upgraded(&http_request, Upgraded { input }, server);
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
            H::handle_error(
                server,
                &RequestError::Panic {
                    client: client.clone(),
                    stage: Stage::Handle,
                    message: crate::error::panic_message(payload.as_ref()),
                },
            );
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

/// Writes a response: status line, headers (with `Date`, `Content-Length` and `Connection`
/// added), then the body unless `head_only`.
pub(crate) fn write_response(
    out: &mut impl Write,
    response: &Response,
    version: Version,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    let status = response.status();
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    let mut has_date = false;
    let mut has_connection = false;
    for (name, value) in response.raw_headers() {
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
        if !is_token(name) || !is_safe_value(value) {
            log::error!(target: LOG, "dropped an invalid response header {name:?}: {value:?}");
            continue;
        }
        has_date |= name.eq_ignore_ascii_case("date");
        has_connection |= name.eq_ignore_ascii_case("connection");
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    if !has_date {
        head.push_str("Date: ");
        head.push_str(&httpdate::fmt_http_date(SystemTime::now()));
        head.push_str("\r\n");
    }
    if response.may_have_body() {
        head.push_str(&format!("Content-Length: {}\r\n", response.body().len()));
    }
    if !has_connection {
        if close {
            head.push_str("Connection: close\r\n");
        } else if version == Version::Http10 && status != 101 {
            head.push_str("Connection: keep-alive\r\n");
        }
    }
    head.push_str("\r\n");
    let body = if head_only || !response.may_have_body() {
        &[][..]
    } else {
        response.body()
    };
    if body.len() <= READ_CHUNK {
        // One write, so a small response leaves in one segment.
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        out.write_all(&all)
    } else {
        out.write_all(head.as_bytes())?;
        out.write_all(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(response: &Response, version: Version, head_only: bool, close: bool) -> String {
        let mut out = Vec::new();
        write_response(&mut out, response, version, head_only, close).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_response_gets_date_length_and_its_body() {
        let text = written(&Response::text(200, "hi"), Version::Http11, false, false);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("\r\nDate: "), "{text}");
        assert!(text.contains("\r\nContent-Length: 2\r\n"), "{text}");
        assert!(!text.contains("Connection"), "{text}");
        assert!(text.ends_with("\r\n\r\nhi"), "{text}");
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let text = written(&Response::text(200, "hello"), Version::Http11, true, false);
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn no_content_has_neither_length_nor_body() {
        let text = written(
            &Response::new(204).with_body("ignored"),
            Version::Http11,
            false,
            false,
        );
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn connection_close_and_http_1_0_keep_alive_are_announced() {
        let close = written(&Response::new(200), Version::Http11, false, true);
        assert!(close.contains("Connection: close\r\n"), "{close}");
        let kept = written(&Response::new(200), Version::Http10, false, false);
        assert!(kept.contains("Connection: keep-alive\r\n"), "{kept}");
    }

    #[test]
    fn handler_lengths_and_injected_headers_are_dropped() {
        let response = Response::text(200, "abc")
            .with_header("Content-Length", "999")
            .with_header("Transfer-Encoding", "chunked")
            .with_header("X-Evil", "a\r\nSet-Cookie: b")
            .with_header("Bad Name", "c")
            .with_header("X-Good", "d");
        let text = written(&response, Version::Http11, false, false);
        assert!(text.contains("Content-Length: 3\r\n"), "{text}");
        assert!(!text.contains("999") && !text.contains("chunked"), "{text}");
        assert!(
            !text.contains("Set-Cookie") && !text.contains("Bad Name"),
            "{text}"
        );
        assert!(text.contains("X-Good: d\r\n"), "{text}");
    }

    #[test]
    fn switching_protocols_keeps_its_connection_header() {
        let text = written(
            &Response::switching_protocols("websocket"),
            Version::Http11,
            false,
            false,
        );
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Upgrade: websocket\r\nConnection: Upgrade\r\n"),
            "{text}"
        );
        assert!(!text.contains("Content-Length"), "{text}");
    }
}
