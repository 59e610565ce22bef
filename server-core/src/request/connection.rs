//! The connected stream socket a stream request is served on (TCP or Unix), and the byte
//! stream a handler reads and writes over it ([`Stream`]: the socket itself, or TLS over it).

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::addr::Address;
use crate::sys;

/// A connected stream socket: TCP or Unix (Python: the handler's `request`/`connection`).
///
/// `&Connection` implements [`Read`] and [`Write`], so the connection can be read and written
/// through shared references, as `&TcpStream` can.
#[derive(Debug)]
#[non_exhaustive]
pub enum Connection {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
}

impl Connection {
    /// The address of the other end.
    pub fn peer_addr(&self) -> io::Result<Address> {
        match self {
            Connection::Tcp(s) => s.peer_addr().map(Address::Inet),
            Connection::Unix(s) => s.peer_addr().map(|a| Address::from_unix(&a)),
        }
    }

    /// A second handle on the same connection (`dup(2)`), for example to write from another
    /// thread while this one reads.
    ///
    /// It is the raw socket: on a TLS connection, writing to it would bypass TLS (the client
    /// would see garbage and drop the connection), and a TLS connection cannot be written from
    /// another thread at all (it has one owner: see [the `tls` module](crate::tls)). Hand what
    /// another thread wants written to the connection's own thread instead. Shutting the clone
    /// down (to wake the connection's thread from a read) is fine either way.
    ///
    /// # Errors
    ///
    /// The operating system's error, such as `EMFILE`.
    pub fn try_clone(&self) -> io::Result<Connection> {
        match self {
            Connection::Tcp(s) => s.try_clone().map(Connection::Tcp),
            Connection::Unix(s) => s.try_clone().map(Connection::Unix),
        }
    }

    /// Sets the read timeout (`SO_RCVTIMEO`); `None` blocks forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.set_read_timeout(timeout),
            Connection::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Sets the write timeout (`SO_SNDTIMEO`); `None` blocks forever.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.set_write_timeout(timeout),
            Connection::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    /// Shuts down the reading half, the writing half, or both (`shutdown(2)`).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Connection::Tcp(s) => s.shutdown(how),
            Connection::Unix(s) => s.shutdown(how),
        }
    }

    /// The credentials of the process at the other end of a Unix connection (`SO_PEERCRED`):
    /// its pid, uid and gid when it connected.
    ///
    /// # Errors
    ///
    /// `Unsupported` on TCP connections; otherwise the operating system's error.
    pub fn peer_credentials(&self) -> io::Result<PeerCredentials> {
        match self {
            Connection::Unix(s) => {
                let (pid, uid, gid) = sys::socket::peer_credentials(s)?;
                Ok(PeerCredentials { pid, uid, gid })
            }
            Connection::Tcp(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "peer credentials exist for unix connections only",
            )),
        }
    }

    /// The TCP stream, if this is a TCP connection.
    pub fn as_tcp(&self) -> Option<&TcpStream> {
        match self {
            Connection::Tcp(s) => Some(s),
            Connection::Unix(_) => None,
        }
    }

    /// The Unix stream, if this is a Unix connection.
    pub fn as_unix(&self) -> Option<&UnixStream> {
        match self {
            Connection::Unix(s) => Some(s),
            Connection::Tcp(_) => None,
        }
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Connection::Tcp(s) => s.as_fd(),
            Connection::Unix(s) => s.as_fd(),
        }
    }
}

impl Read for &Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Connection::Tcp(s) => (&*s).read(buf),
            Connection::Unix(s) => (&*s).read(buf),
        }
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        match *self {
            Connection::Tcp(s) => (&*s).read_vectored(bufs),
            Connection::Unix(s) => (&*s).read_vectored(bufs),
        }
    }
}

impl Write for &Connection {
    /// Sends with `MSG_NOSIGNAL`, so a client that has gone away makes the write fail with
    /// `EPIPE` (`BrokenPipe`) instead of raising `SIGPIPE`, which would kill a program that has
    /// not ignored it (Rust's `main` ignores it; a host program, or a binary built with
    /// `-Zon-broken-pipe=kill`, may not). `std`'s `TcpStream` already does this for `write`,
    /// but not for Unix streams or vectored writes.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sys::socket::send(self.as_fd(), buf)
    }

    /// `sendmsg(2)` with `MSG_NOSIGNAL`; see `write` above.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sys::socket::send_vectored(self.as_fd(), bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Who is at the other end of a Unix connection, from [`Connection::peer_credentials`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PeerCredentials {
    /// The peer's process id.
    pub pid: i32,
    /// The peer's user id.
    pub uid: u32,
    /// The peer's group id.
    pub gid: u32,
}

/// The byte stream of one connection, as `rfile` reads it and `wfile` writes it: the socket
/// itself, or TLS over it (see [the `tls` module](crate::tls)). Handlers read and write the
/// same plaintext either way.
///
/// `&Stream` implements [`Read`] and [`Write`], as `&Connection` does. It has one owner,
/// the thread serving the connection: it is not `Sync`, and a TLS stream's state is borrowed
/// only for the length of each call (never a mutex).
pub struct Stream {
    connection: Connection,
    /// Boxed: a rustls session is kilobytes, and a `Stream` moves through the request
    /// pipeline's frames, on every handler thread's stack (one page more per connection).
    #[cfg(feature = "tls")]
    tls: Option<Box<crate::tls::Session>>,
}

impl Stream {
    /// The plain socket.
    pub(crate) fn plain(connection: Connection) -> Stream {
        Stream {
            connection,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// TLS over the socket from now on, after a completed handshake.
    #[cfg(feature = "tls")]
    pub(crate) fn secure(&mut self, session: crate::tls::Session) {
        self.tls = Some(Box::new(session));
    }

    /// The socket underneath, for its addresses, options and timeouts (which apply to TLS
    /// reads and writes too). Writing to it directly on a TLS connection would bypass TLS.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// What the TLS handshake negotiated; `None` on a plain connection.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&crate::tls::TlsInfo> {
        self.tls.as_deref().map(crate::tls::Session::info)
    }

    /// Bytes a read returns at once without waiting for the socket: TLS plaintext already
    /// decrypted (0 on a plain connection, where the socket's own buffer is what `poll(2)`
    /// sees). Check it before sleeping in `poll` on the socket: data rustls holds does not
    /// make the socket readable.
    pub fn buffered(&self) -> usize {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.buffered();
        }
        0
    }

    /// Whether the client has sent nothing yet that a read would return or wait for: no
    /// decrypted bytes, and nothing in the socket (a `MSG_PEEK` that would block). Bytes that
    /// arrived, an end of file or an error all count as something: a read then returns.
    #[cfg(feature = "http")]
    pub(crate) fn nothing_arrived(&self) -> bool {
        if self.buffered() > 0 {
            return false;
        }
        let mut byte = [0u8; 1];
        matches!(
            crate::sys::socket::recv_now(self.connection.as_fd(), &mut byte, true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Ends the writing side: on TLS, `close_notify` first; then `shutdown(SHUT_WR)`, so the
    /// client sees the end at once.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tls.close_notify(&self.connection);
        }
        self.connection.shutdown(Shutdown::Write)
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Stream");
        debug.field("connection", &self.connection);
        #[cfg(feature = "tls")]
        debug.field("tls", &self.tls());
        debug.finish()
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.read(&self.connection, buf);
        }
        (&self.connection).read(buf)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            let first = bufs.iter_mut().find(|b| !b.is_empty());
            return first.map_or(Ok(0), |buf| self.read(buf));
        }
        (&self.connection).read_vectored(bufs)
    }
}

impl Write for &Stream {
    /// On a plain connection: one send with `MSG_NOSIGNAL` (see `&Connection`'s `write`). On
    /// TLS: encrypts and sends, returning once the records are on the socket.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.write(&self.connection, buf);
        }
        (&self.connection).write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            let first = bufs.iter().find(|b| !b.is_empty());
            return first.map_or(Ok(0), |buf| self.write(buf));
        }
        (&self.connection).write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.flush(&self.connection);
        }
        Ok(())
    }
}
