//! Reading the header off a connection, exactly: peek at what has arrived, find where the
//! header ends, then consume that many bytes and no more.
//!
//! Every peek that finds the header incomplete is followed by consuming all it saw (those bytes
//! all belong to the header), so the next wait sleeps on an empty socket buffer until new bytes
//! come: no busy loop, however the header is split.

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use super::header::{self, Frame, MAX_HEADER, V1_MAX};
use super::{ProxyError, ProxyInfo, ProxyProtocol};
use crate::addr::Address;
use crate::request::Connection;
use crate::sys;

/// Where the header's bytes come from: a socket, or (for tests and the fuzzer) a script.
pub(crate) trait Source {
    /// Sleeps until bytes (or end-of-file) can be peeked, or `deadline` passes (`false`).
    fn wait(&mut self, deadline: Instant) -> io::Result<bool>;
    /// Copies what has arrived, up to `buf.len()` bytes, without consuming it; `Ok(0)` at
    /// end-of-file, `WouldBlock` when nothing has arrived.
    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Consumes `buf.len()` bytes that a peek has shown to be there, into `buf`.
    fn consume(&mut self, buf: &mut [u8]) -> io::Result<()>;
}

impl Source for &Connection {
    fn wait(&mut self, deadline: Instant) -> io::Result<bool> {
        let mut fds = [PollFd::new(self.as_fd(), PollFlags::POLLIN)];
        Ok(sys::sleep_until(&mut fds, Some(deadline))? > 0)
    }

    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        sys::socket::recv_now(self.as_fd(), buf, true)
    }

    fn consume(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match sys::socket::recv_now(self.as_fd(), buf, false) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Reads the header a connection from `peer` must start with (of a version `accepted`
/// allows), within `timeout`, leaving every byte after it unread.
///
/// # Errors
///
/// [`ProxyError`]: late, cut short, not a header, malformed, or the socket failed.
#[cfg(any(test, fuzzing))]
pub(crate) fn read_header(
    source: impl Source,
    peer: &Address,
    accepted: ProxyProtocol,
    timeout: Duration,
) -> Result<ProxyInfo, ProxyError> {
    let mut reading = HeaderRead::new(accepted, timeout);
    match reading.advance(source, peer, true) {
        Some(result) => result,
        None => unreachable!("a read that waits ends with the header or an error"),
    }
}

/// A header being read: what has been consumed of it so far, and its deadline. Where the
/// server parks connections, it waits for the proxy's next bytes parked
/// ([`advance`](Self::advance) without `wait`), as a TLS handshake does.
#[derive(Debug)]
pub(crate) struct HeaderRead {
    header: Vec<u8>,
    accepted: ProxyProtocol,
    timeout: Duration,
    deadline: Instant,
}

impl HeaderRead {
    /// Starts reading a header of a version `accepted` allows, to end within `timeout`.
    pub(crate) fn new(accepted: ProxyProtocol, timeout: Duration) -> HeaderRead {
        HeaderRead {
            header: Vec::new(),
            accepted,
            timeout,
            deadline: sys::deadline_in(timeout),
        }
    }

    /// When the whole header must have arrived.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The error for a header still incomplete at its deadline.
    pub(crate) fn timed_out(&self) -> ProxyError {
        ProxyError::Timeout {
            timeout: self.timeout,
            received: self.header.len(),
        }
    }

    /// Reads on with what has arrived: `Some` with the header or why it failed; `None` when
    /// nothing more has arrived and `wait` is off. With `wait`, it sleeps in `poll` for the
    /// proxy's bytes, until the deadline.
    pub(crate) fn advance(
        &mut self,
        mut source: impl Source,
        peer: &Address,
        wait: bool,
    ) -> Option<Result<ProxyInfo, ProxyError>> {
        // One v1 header, or a v2 header's fixed part and addresses, fits; longer v2 headers
        // take several rounds. Peeking further than the header is harmless: only `consume`
        // takes bytes.
        let mut peeked = [0u8; 2 * V1_MAX + 2];
        loop {
            let arrived = if wait {
                source.wait(self.deadline)
            } else {
                Ok(Instant::now() < self.deadline)
            };
            match arrived {
                Ok(true) => {}
                Ok(false) => return Some(Err(self.timed_out())),
                Err(e) => return Some(Err(e.into())),
            }
            let want = peeked.len().min(MAX_HEADER - self.header.len());
            let n = match source.peek(&mut peeked[..want]) {
                Ok(0) => {
                    return Some(Err(ProxyError::Closed {
                        received: self.header.len(),
                    }))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !wait => return None,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Some(Err(e.into())),
            };
            let before = self.header.len();
            self.header.extend_from_slice(&peeked[..n]);
            let framed = header::frame(&self.header, self.accepted);
            let done = match framed {
                Ok(Frame::Complete { version, len }) => {
                    self.header.truncate(len);
                    Some(version)
                }
                Ok(Frame::Incomplete) => None,
                Err(e) => return Some(Err(e)),
            };
            if let Err(e) = source.consume(&mut self.header[before..]) {
                return Some(Err(e.into()));
            }
            if let Some(version) = done {
                return Some(header::parse(&self.header, version, peer));
            }
        }
    }
}

/// Runs the header reader on `data` as a trusted proxy's connection would deliver it, in
/// pieces, and checks that it consumed exactly the header: for the `cargo fuzz` target
/// `proxy_header` (built with `--cfg fuzzing`). The first byte picks the accepted versions
/// and the size of the pieces; the rest is what the connection carries.
///
/// # Panics
///
/// When the reader breaks its contract (consumes past the header, or accepts a header its
/// own framing disagrees with): what the fuzzer looks for.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn fuzz_header(data: &[u8]) {
    let Some((&config, bytes)) = data.split_first() else {
        return;
    };
    let accepted = match config & 3 {
        0 => ProxyProtocol::V1,
        1 => ProxyProtocol::V2,
        _ => ProxyProtocol::Any,
    };
    let piece = usize::from(config >> 2) + 1;
    let mut script = Script {
        bytes,
        arrived: piece.min(bytes.len()),
        consumed: 0,
        piece,
    };
    let peer = Address::Inet(([127, 0, 0, 1], 1).into());
    let result = read_header(&mut script, &peer, accepted, Duration::from_secs(1));
    if let Ok(info) = result {
        // The header consumed is what framing the whole input finds, and nothing after it.
        match header::frame(bytes, accepted) {
            Ok(Frame::Complete { len, version }) => {
                assert_eq!(script.consumed, len, "consumed past or short of the header");
                assert_eq!(info.version, version);
            }
            other => panic!("accepted a header that framing the whole input rejects: {other:?}"),
        }
        // Every address and TLV the handler can see is printable without panicking.
        let _ = format!("{info:?} {}", info.client());
    } else {
        assert!(script.consumed <= MAX_HEADER);
    }
}

/// A connection played from a byte string: `arrived` bytes have come, `piece` more arrive on
/// every wait.
#[cfg(any(test, fuzzing))]
#[derive(Debug)]
pub(crate) struct Script<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) arrived: usize,
    pub(crate) consumed: usize,
    pub(crate) piece: usize,
}

#[cfg(any(test, fuzzing))]
impl Source for &mut Script<'_> {
    fn wait(&mut self, _deadline: Instant) -> io::Result<bool> {
        if self.consumed == self.arrived {
            if self.arrived == self.bytes.len() {
                // End-of-file is "ready" too: the peek then returns 0.
                return Ok(true);
            }
            self.arrived = (self.arrived + self.piece).min(self.bytes.len());
        }
        Ok(true)
    }

    fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let ready = &self.bytes[self.consumed..self.arrived];
        let n = ready.len().min(buf.len());
        buf[..n].copy_from_slice(&ready[..n]);
        Ok(n)
    }

    fn consume(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let ready = &self.bytes[self.consumed..self.arrived];
        assert!(
            buf.len() <= ready.len(),
            "consumed bytes that had not arrived"
        );
        buf.copy_from_slice(&ready[..buf.len()]);
        self.consumed += buf.len();
        Ok(())
    }
}
