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
use crate::server::connections::Registered;
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
            WfileInner::Direct(_) => Ok(()),
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
    registered: Option<&'a Registered<'a>>,
}

impl<'a, S> StreamRequest<'a, S> {
    pub(crate) fn new(
        connection: &'a Connection,
        client_address: &'a Address,
        server: &'a ServerContext<S>,
        registered: Option<&'a Registered<'a>>,
        (rbufsize, wbufsize): (usize, usize),
    ) -> Self {
        StreamRequest {
            rfile: BufReader::with_capacity(rbufsize, connection),
            wfile: Wfile::new(connection, wbufsize),
            connection,
            client_address,
            server,
            registered,
        }
    }

    /// Marks the connection idle (`true`: the handler waits for the client's next request and
    /// has none in progress) or busy again (`false`).
    ///
    /// A stop closes idle connections at once: a [`ShutdownHandle`](crate::ShutdownHandle), a
    /// signal with `serve_until_signal`, or [`Server::close`](crate::Server::close) shuts them
    /// down, so the handler's pending read returns end-of-file and the handler can end, instead
    /// of holding up the stop until the client hangs up or the close deadline passes. Busy
    /// connections finish their request.
    ///
    /// Returns `false` when the server is already stopping: end the connection instead of
    /// waiting for the client. The HTTP layer does this between keep-alive requests; a line
    /// protocol can do it while it waits for the next line:
    ///
    /// ```
    /// # use std::io::{BufRead, Write};
    /// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler};
    /// # struct Lines;
    /// # impl Handler for Lines { type State = (); fn new(_: &ServerContext) -> Self { Lines } }
    /// impl StreamRequestHandler for Lines {
    ///     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
    ///         let mut line = String::new();
    ///         // Idle while waiting for a line; a stop ends the wait with end-of-file.
    ///         while request.set_idle(true) && request.rfile.read_line(&mut line)? > 0 {
    ///             request.set_idle(false);
    ///             request.wfile.write_all(line.as_bytes())?;
    ///             line.clear();
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    ///
    /// Mark a connection idle only while nothing of the next request has arrived: a client
    /// whose request crosses the stop sees its connection closed without an answer, the race
    /// every keep-alive protocol has (HTTP clients retry such requests when they are
    /// idempotent). Only connections served on threads of this process are reached; a
    /// forked child's are not.
    pub fn set_idle(&self, idle: bool) -> bool {
        self.registered.is_none_or(|r| r.set_idle(idle))
    }

    /// The connection's registration, for the HTTP layer's idle marks.
    #[cfg(feature = "http")]
    pub(crate) fn registered(&self) -> Option<&'a Registered<'a>> {
        self.registered
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recv, socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::OwnedFd;

    /// A connection whose every send arrives as its own record (`SOCK_SEQPACKET`), and the
    /// other end: what one `recv` gets is exactly what one send sent.
    fn records() -> (Connection, OwnedFd) {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        (Connection::Unix(UnixStream::from(ours)), theirs)
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
