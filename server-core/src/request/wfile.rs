//! `wfile`: the writing side of a stream request, and when its bytes go out.

use std::fmt;
use std::io::{self, BufWriter, Write};

use super::Stream;

/// The writing side of a stream request (Python: `wfile`).
///
/// # When bytes go out
///
/// With `wbufsize` 0 (the default, as in Python) every call sends at once, and sends all of
/// its bytes, like Python's `_SocketWriter` (`sendall`): there are no partial writes.
///
/// - `write` and `write_all`: one call, one send.
/// - `write!` and `writeln!`: the whole formatted text is assembled first, then sent in one
///   send, so `writeln!(request.wfile, "hello {name}")` reaches a client that does one
///   `recv` as one piece (std's default would send every literal piece and argument on its
///   own).
///
/// With `wbufsize` above 0, writes are buffered and sent when the buffer fills, on
/// [`flush`](Write::flush), and after the handler's `finish`.
///
/// Either way, a send is one system call but TCP may still split or merge what arrives: a
/// client must read until it has a whole message (a line, a length), never trust one `recv`.
pub struct Wfile<'a> {
    inner: WfileInner<'a>,
    /// Where `write!` assembles its text before the one send (unbuffered mode).
    scratch: Vec<u8>,
}

/// The most scratch space a `Wfile` keeps between `write!` calls.
const SCRATCH_KEPT: usize = 64 * 1024;

enum WfileInner<'a> {
    Direct(&'a Stream),
    Buffered(BufWriter<&'a Stream>),
}

impl<'a> Wfile<'a> {
    pub(crate) fn new(stream: &'a Stream, wbufsize: usize) -> Self {
        let inner = if wbufsize == 0 {
            WfileInner::Direct(stream)
        } else {
            WfileInner::Buffered(BufWriter::with_capacity(wbufsize, stream))
        };
        Wfile {
            inner,
            scratch: Vec::new(),
        }
    }
}

impl Write for Wfile<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            WfileInner::Direct(conn) => conn.write_all(buf).map(|()| buf.len()),
            WfileInner::Buffered(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            WfileInner::Direct(conn) => conn.write_all(buf),
            WfileInner::Buffered(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            WfileInner::Direct(stream) => stream.flush(),
            WfileInner::Buffered(w) => w.flush(),
        }
    }

    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> io::Result<()> {
        if let Some(text) = args.as_str() {
            return self.write_all(text.as_bytes());
        }
        match &mut self.inner {
            WfileInner::Direct(connection) => {
                let mut text = std::mem::take(&mut self.scratch);
                text.clear();
                let sent = text
                    .write_fmt(args)
                    .and_then(|()| connection.write_all(&text));
                if text.capacity() <= SCRATCH_KEPT {
                    self.scratch = text;
                }
                sent
            }
            WfileInner::Buffered(w) => w.write_fmt(args),
        }
    }
}

impl fmt::Debug for Wfile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buffered = match &self.inner {
            WfileInner::Direct(_) => 0,
            WfileInner::Buffered(w) => w.capacity(),
        };
        f.debug_struct("Wfile")
            .field("wbufsize", &buffered)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recv, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    /// A connection whose every send arrives as its own record (`SOCK_SEQPACKET`), and the
    /// other end: what one `recv` gets is exactly what one send sent.
    fn records() -> (Stream, OwnedFd) {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let connection = crate::request::Connection::Unix(UnixStream::from(ours));
        (Stream::plain(connection), theirs)
    }

    fn first_record(fd: &OwnedFd) -> String {
        let mut buf = [0u8; 256];
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn one_write_macro_is_one_send() {
        let (connection, peer) = records();
        let mut wfile = Wfile::new(&connection, 0);
        let ip = "127.0.0.1";
        let port = 4242;
        writeln!(wfile, "hello {ip} on port {port}").expect("write");
        assert_eq!(first_record(&peer), "hello 127.0.0.1 on port 4242\n");
        // A plain string needs no formatting, and still is one send.
        write!(wfile, "plain").expect("write");
        assert_eq!(first_record(&peer), "plain");
    }

    #[test]
    fn a_large_formatted_write_leaves_no_large_scratch_behind() {
        let (connection, _peer) = records();
        let mut wfile = Wfile::new(&connection, 0);
        write!(wfile, "{}", "x".repeat(100)).expect("write");
        assert!(
            wfile.scratch.capacity() >= 100,
            "small scratch kept for reuse"
        );
        let huge = "y".repeat(SCRATCH_KEPT + 1);
        // Larger than a record may be, so the send fails; only the scratch's fate matters.
        let _ = write!(wfile, "{huge}");
        assert!(wfile.scratch.capacity() <= SCRATCH_KEPT);
    }
}
