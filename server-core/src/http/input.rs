//! The reading side of an HTTP connection: `rfile`, the bytes read past the current request
//! (pipelining), the deadline that bounds a whole request, and the idle mark between requests.

use std::cell::Cell;
use std::io::{self, Read};
use std::time::{Duration, Instant};

use crate::request::Connection;
use crate::server::connections::Registered;

use super::parse::{self, Head, Reject};
use super::Limits;

/// How much of an unfinished head is checked, as it arrives, for bytes no request can start
/// with.
const PROBE: usize = 64;

/// Bytes read from the socket at a time. No less than `rfile`'s buffer when a connection can
/// be parked, so that `rfile` passes reads through and holds nothing between requests.
pub(super) const READ_CHUNK: usize = crate::request::PARK_MAX_RBUFSIZE;

/// After refusing a request whose body was not read, how long and how much the layer keeps
/// reading (and discarding) so the client sees the refusal instead of a reset: closing a socket
/// with unread data makes the kernel send RST, which can destroy the response in flight.
pub(super) const LINGER_TIME: Duration = Duration::from_secs(2);
pub(super) const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Why reading a request stopped.
pub(super) enum ReadError {
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
pub(super) struct Input<'r> {
    pub(super) rfile: &'r mut dyn Read,
    pub(super) connection: &'r Connection,
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    /// The end of the bytes read: `buf[end..]` is spare room, already initialised.
    pub(super) end: usize,
    /// The connection's registration, marked idle between requests (none under the fuzzer).
    pub(super) registered: Option<&'r Registered>,
    /// Whether it is marked idle now.
    pub(super) idle: bool,
    /// What the read timeout was last set to on this connection (kept across requests).
    pub(super) read_timeout: &'r Cell<Option<Duration>>,
}

/// How much later than its deadline a read may time out, so that the timeout need not be set
/// again before every read: the first read of each request, with the whole timeout left,
/// finds it already set (from the request before) within this.
const DEADLINE_SLACK: Duration = Duration::from_millis(20);

impl Input<'_> {
    pub(super) fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// Reads more bytes into the buffer, waiting at most until `deadline`; the count read,
    /// 0 at end of file.
    pub(super) fn fill(&mut self, deadline: Option<Instant>) -> Result<usize, io::Error> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.pos > READ_CHUNK {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            // SO_RCVTIMEO bounds one read; setting it to what is left before a read makes it a
            // deadline for the whole request, so a client trickling a byte at a time cannot
            // hold the connection past it. Left alone when already set to what is left, give
            // or take DEADLINE_SLACK (never shorter: a read must not time out early).
            let set = self.read_timeout.get();
            if set.is_none_or(|set| set < left || set > left + DEADLINE_SLACK) {
                // Half the slack over, so the next request's first read, with a little less
                // left, finds it within bounds.
                let timeout = left.max(Duration::from_millis(1)) + DEADLINE_SLACK / 2;
                self.connection.set_read_timeout(Some(timeout))?;
                self.read_timeout.set(Some(timeout));
            }
        }
        let old = self.end;
        if self.buf.len() < old + READ_CHUNK {
            self.buf.resize(old + READ_CHUNK, 0);
        }
        let result = loop {
            match self
                .rfile
                .read(self.buf.get_mut(old..old + READ_CHUNK).unwrap_or_default())
            {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = *result.as_ref().unwrap_or(&0);
        self.end = old + n;
        if n > 0 {
            // The next request has begun: a stop must let it finish.
            self.set_idle(false);
        }
        result
    }

    /// Marks the connection idle (waiting for a request, nothing of it read) or busy; `false`
    /// if the server is stopping and the connection should end instead of waiting.
    pub(super) fn set_idle(&mut self, idle: bool) -> bool {
        if self.idle == idle {
            return true;
        }
        let marked = self.registered.is_none_or(|r| r.set_idle(idle));
        self.idle = idle && marked;
        marked
    }

    /// Reads the next request head. `Err(Closed)` when the client closed between requests.
    pub(super) fn read_head(
        &mut self,
        limits: &Limits,
        deadline: Option<Instant>,
    ) -> Result<Head, ReadError> {
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
    pub(super) fn read_body(
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
        if length == 0 {
            return Ok(Vec::new());
        }
        let end = self.pos + length;
        if end == self.end && self.pos <= READ_CHUNK && self.buf.len() > 2 * READ_CHUNK {
            // Nothing read past the body (the common case): hand the buffer over instead of
            // copying it, so a large body is held once, and the connection does not keep a
            // body-sized buffer once the request is done.
            let mut body = std::mem::take(&mut self.buf);
            body.truncate(end);
            body.drain(..self.pos);
            self.pos = 0;
            self.end = 0;
            return Ok(body);
        }
        let body = self.buf.get(self.pos..end).unwrap_or_default().to_vec();
        self.pos = end;
        Ok(body)
    }

    /// Reads and discards what the client still sends, for a bounded time and amount, so it
    /// reads the refusal already sent instead of a connection reset.
    pub(super) fn linger(&mut self) {
        let deadline = Instant::now() + LINGER_TIME;
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            self.pos = 0;
            self.end = 0;
            match self.fill(Some(deadline)) {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
    }
}

thread_local! {
    /// The read buffer this thread lent its last connection, for the next one: a request
    /// then costs neither an allocation nor zeroing a READ_CHUNK buffer.
    static READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The thread's read buffer (empty the first time); `Input::drop` gives it back.
pub(super) fn take_read_buffer() -> Vec<u8> {
    READ_BUFFER.take()
}

impl Drop for Input<'_> {
    fn drop(&mut self) {
        // Only a buffer of the usual size is kept: not one grown for a large body.
        if self.buf.len() <= READ_CHUNK {
            READ_BUFFER.set(std::mem::take(&mut self.buf));
        }
    }
}

pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Errors that only mean the client went away.
pub(super) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}
