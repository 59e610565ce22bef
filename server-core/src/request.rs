//! What a handler gets for one request: the connection or the datagram, the client's address,
//! and the server.

use std::fmt;
use std::io::{self, BufReader, BufWriter, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::socket::MsgFlags;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use crate::addr::{Address, UnixAddress};
use crate::server::ServerContext;

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
                let creds =
                    nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)?;
                Ok(PeerCredentials {
                    pid: creds.pid(),
                    uid: creds.uid(),
                    gid: creds.gid(),
                })
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
        let fd = self.as_fd().as_raw_fd();
        nix::sys::socket::send(fd, buf, MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)
    }

    /// `sendmsg(2)` with `MSG_NOSIGNAL`; see `write` above.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd = self.as_fd().as_raw_fd();
        nix::sys::socket::sendmsg::<()>(fd, bufs, &[], MsgFlags::MSG_NOSIGNAL, None)
            .map_err(io::Error::from)
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

/// The writing side of a stream request (Python: `wfile`).
///
/// With `wbufsize` 0 (the default, as in Python) every `write` sends at once and sends all of
/// its buffer, like Python's `_SocketWriter` (`sendall`): there are no partial writes. With
/// `wbufsize` above 0 writes are buffered and sent when the buffer fills, on
/// [`flush`](Write::flush), and after the handler's `finish`.
pub struct Wfile<'a> {
    inner: WfileInner<'a>,
}

enum WfileInner<'a> {
    Direct(&'a Connection),
    Buffered(BufWriter<&'a Connection>),
}

impl<'a> Wfile<'a> {
    pub(crate) fn new(connection: &'a Connection, wbufsize: usize) -> Self {
        let inner = if wbufsize == 0 {
            WfileInner::Direct(connection)
        } else {
            WfileInner::Buffered(BufWriter::with_capacity(wbufsize, connection))
        };
        Wfile { inner }
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
            WfileInner::Direct(_) => Ok(()),
            WfileInner::Buffered(w) => w.flush(),
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

/// One stream request: a connection, as a [`StreamRequestHandler`](crate::StreamRequestHandler)
/// sees it (Python: the handler's `request`, `client_address`, `server`, `rfile` and `wfile`).
///
/// `rfile` and `wfile` are public fields so that both can be borrowed at once, as in
/// `io::copy(&mut request.rfile, &mut request.wfile)`.
pub struct StreamRequest<'a, S = ()> {
    /// Buffered reading from the connection (Python: `rfile`); the buffer holds `rbufsize` bytes.
    pub rfile: BufReader<&'a Connection>,
    /// Writing to the connection (Python: `wfile`); see [`Wfile`].
    pub wfile: Wfile<'a>,
    connection: &'a Connection,
    client_address: &'a Address,
    server: &'a ServerContext<S>,
}

impl<'a, S> StreamRequest<'a, S> {
    pub(crate) fn new(
        connection: &'a Connection,
        client_address: &'a Address,
        server: &'a ServerContext<S>,
        rbufsize: usize,
        wbufsize: usize,
    ) -> Self {
        StreamRequest {
            rfile: BufReader::with_capacity(rbufsize, connection),
            wfile: Wfile::new(connection, wbufsize),
            connection,
            client_address,
            server,
        }
    }

    /// The connection itself (Python: `request` / `connection`), for socket options and
    /// timeouts. Reading from it directly skips what `rfile` has already buffered.
    #[doc(alias = "request")]
    pub fn connection(&self) -> &'a Connection {
        self.connection
    }

    /// The client's address (Python: `client_address`). For Unix stream clients this is usually
    /// [`UnixAddress::Unnamed`], as clients rarely bind.
    pub fn client_address(&self) -> &'a Address {
        self.client_address
    }

    /// The server: its address, shared state and shutdown handle (Python: `server`).
    pub fn server(&self) -> &'a ServerContext<S> {
        self.server
    }
}

impl<S> fmt::Debug for StreamRequest<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamRequest")
            .field("client_address", self.client_address)
            .field("server_address", self.server.server_address())
            .field("rbufsize", &self.rfile.capacity())
            .field("wfile", &self.wfile)
            .finish()
    }
}

/// A bound datagram socket: UDP or Unix (Python: the socket in a datagram handler's `request`).
#[derive(Debug)]
#[non_exhaustive]
pub enum DatagramSocket {
    /// A UDP socket.
    Udp(UdpSocket),
    /// A Unix datagram socket.
    Unix(UnixDatagram),
}

impl DatagramSocket {
    /// Sends one datagram to `to` (Python: `socket.sendto`).
    ///
    /// # Errors
    ///
    /// The operating system's error; `InvalidInput` when `to` does not fit this socket's family,
    /// or is an unnamed Unix address (such a client cannot be answered).
    pub fn send_to(&self, buf: &[u8], to: &Address) -> io::Result<usize> {
        match (self, to) {
            (DatagramSocket::Udp(s), Address::Inet(addr)) => s.send_to(buf, addr),
            (DatagramSocket::Unix(s), Address::Unix(UnixAddress::Path(path))) => {
                s.send_to(buf, path)
            }
            (DatagramSocket::Unix(s), Address::Unix(UnixAddress::Abstract(name))) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(buf, &addr)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send a datagram to {to} from this socket"),
            )),
        }
    }
}

impl AsFd for DatagramSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DatagramSocket::Udp(s) => s.as_fd(),
            DatagramSocket::Unix(s) => s.as_fd(),
        }
    }
}

/// One datagram, as a [`DatagramRequestHandler`](crate::DatagramRequestHandler) sees it (Python:
/// the handler's `request`, `client_address`, `server`, `rfile` and `wfile`).
pub struct DatagramRequest<'a, S = ()> {
    /// The packet, readable with [`Read`] (Python: `rfile`, a `BytesIO` over the packet).
    pub rfile: &'a [u8],
    /// The reply, sent to the client in one datagram after `finish` when not empty
    /// (Python: `wfile`).
    pub wfile: Vec<u8>,
    packet: &'a [u8],
    socket: &'a DatagramSocket,
    client_address: &'a Address,
    server: &'a ServerContext<S>,
    send_empty: bool,
}

impl<'a, S> DatagramRequest<'a, S> {
    pub(crate) fn new(
        packet: &'a [u8],
        socket: &'a DatagramSocket,
        client_address: &'a Address,
        server: &'a ServerContext<S>,
    ) -> Self {
        DatagramRequest {
            rfile: packet,
            wfile: Vec::new(),
            packet,
            socket,
            client_address,
            server,
            send_empty: false,
        }
    }

    /// The whole datagram, whatever has been read from `rfile`.
    pub fn packet(&self) -> &'a [u8] {
        self.packet
    }

    /// The server's socket, to send more than one datagram back (Python: the socket in
    /// `request`).
    #[doc(alias = "request")]
    pub fn socket(&self) -> &'a DatagramSocket {
        self.socket
    }

    /// The sender's address (Python: `client_address`).
    pub fn client_address(&self) -> &'a Address {
        self.client_address
    }

    /// The server: its address, shared state and shutdown handle (Python: `server`).
    pub fn server(&self) -> &'a ServerContext<S> {
        self.server
    }

    /// Sends a reply even if `wfile` stays empty (Python always does).
    pub fn send_empty_reply(&mut self) {
        self.send_empty = true;
    }

    pub(crate) fn reply(&self) -> Option<&[u8]> {
        (self.send_empty || !self.wfile.is_empty()).then_some(&self.wfile[..])
    }
}

impl<S> fmt::Debug for DatagramRequest<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramRequest")
            .field("client_address", self.client_address)
            .field("server_address", self.server.server_address())
            .field("len", &self.packet.len())
            .field("reply_len", &self.wfile.len())
            .finish()
    }
}
