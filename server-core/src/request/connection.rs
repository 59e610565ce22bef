//! The connected stream socket a stream request is served on: TCP or Unix.

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
