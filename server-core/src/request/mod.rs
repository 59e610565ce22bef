//! What a handler gets for one request: the connection or the datagram, the client's address,
//! and the server. The connection itself is in `connection.rs`, `wfile` in `wfile.rs`.

mod connection;
mod rfile;
mod wfile;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::addr::{Address, UnixAddress};
use crate::proxy::ProxyInfo;
use crate::server::connections::Registered;
use crate::server::ServerContext;

pub use connection::{Connection, PeerCredentials, Stream};
pub use rfile::Rfile;
pub use wfile::Wfile;

/// The largest `rfile` buffer with which a connection can be parked: the HTTP layer reads
/// this much at a time, so a `BufReader` no larger passes every read through and holds
/// nothing between them.
pub(crate) const PARK_MAX_RBUFSIZE: usize = 16 * 1024;

/// One stream request: a connection, as a [`StreamRequestHandler`](crate::StreamRequestHandler)
/// sees it (Python: the handler's `request`, `client_address`, `server`, `rfile` and `wfile`).
///
/// `rfile` and `wfile` are public fields so that both can be borrowed at once, as in
/// `io::copy(&mut request.rfile, &mut request.wfile)`.
pub struct StreamRequest<'a, S = ()> {
    /// Buffered reading from the connection (Python: `rfile`); the buffer grows to `rbufsize`
    /// bytes (see [`Rfile`]). On a TLS connection it reads the decrypted plaintext.
    pub rfile: Rfile<'a>,
    /// Writing to the connection (Python: `wfile`); see [`Wfile`]. On a TLS connection it
    /// encrypts.
    pub wfile: Wfile<'a>,
    stream: &'a Stream,
    client_address: &'a Address,
    server: &'a ServerContext<S>,
    registered: Option<&'a Registered>,
    proxy: Option<&'a ProxyInfo>,
    /// Whether the connection may be parked, and whether the handler asked for it.
    pub(crate) park: Park,
    /// What the HTTP layer remembers of the socket from one request to the next.
    pub(crate) memo: Option<&'a Memo>,
}

/// What the HTTP layer remembers of a connection's socket across the times it is served, so
/// that a keep-alive request costs no `getsockopt` and no `setsockopt` it can avoid.
#[derive(Debug, Default)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
pub(crate) struct Memo {
    /// The socket's read and write timeouts as the server set them, before the layer changed
    /// them; `None` until first looked at.
    pub(crate) configured: Cell<Option<(Option<Duration>, Option<Duration>)>>,
    /// What the layer last set the read timeout to (`None`: not yet, or not known).
    pub(crate) read_timeout: Cell<Option<Duration>>,
}

/// Parking the connection between requests (the HTTP layer's keep-alive; see
/// [`Strategy::parks_idle`](crate::Strategy::parks_idle)).
#[derive(Debug, Default)]
pub(crate) struct Park {
    /// The server parks idle connections, and this one can be: `rfile` never holds bytes
    /// between reads (its buffer is at most what a read asks for, so reads bypass it).
    allowed: bool,
    /// This call of `handle` resumes a parked connection: its handler was between requests.
    pub(crate) resumed: bool,
    /// Set by the handler: park, and close the connection if it stays idle this long.
    asked: Option<Option<Duration>>,
    /// Asked before any request was read: this call served nothing, and the connection is a
    /// request on its way, not an idle one.
    first: bool,
}

impl Park {
    /// Asks to park the connection once `handle` returns, closing it after `idle` with no
    /// request. `false` (serve on) if it cannot be parked, or if the stream holds decrypted
    /// bytes a parked socket would not report readable.
    #[cfg(feature = "http")]
    pub(crate) fn ask(&mut self, idle: Option<Duration>, stream: Option<&Stream>) -> bool {
        if !self.allowed || stream.is_some_and(|s| s.buffered() > 0) {
            return false;
        }
        self.asked = Some(idle);
        true
    }

    /// Asks to park a new connection whose client has sent nothing yet, until it does or
    /// `timeout` passes; this call then serves no request. `false` (serve on: read, waiting on
    /// this thread) if it cannot be parked, or if bytes have arrived.
    #[cfg(feature = "http")]
    pub(crate) fn ask_first(&mut self, timeout: Option<Duration>, stream: &Stream) -> bool {
        if !self.allowed || !stream.nothing_arrived() {
            return false;
        }
        self.asked = Some(timeout);
        self.first = true;
        true
    }

    /// What the handler asked: `Some(idle timeout)` to park.
    pub(crate) fn asked(&self) -> Option<Option<Duration>> {
        self.asked
    }

    /// Whether it asked before any request was read ([`ask_first`](Self::ask_first)).
    pub(crate) fn asked_first(&self) -> bool {
        self.first
    }
}

impl<'a, S> StreamRequest<'a, S> {
    pub(crate) fn new(
        stream: &'a Stream,
        client_address: &'a Address,
        server: &'a ServerContext<S>,
        registered: Option<&'a Registered>,
        (rbufsize, wbufsize): (usize, usize),
    ) -> Self {
        StreamRequest {
            rfile: Rfile::new(stream, rbufsize),
            wfile: Wfile::new(stream, wbufsize),
            stream,
            client_address,
            server,
            registered,
            proxy: None,
            park: Park::default(),
            memo: None,
        }
    }

    /// Lends the connection's memo, which outlives this request.
    pub(crate) fn with_memo(mut self, memo: &'a Memo) -> Self {
        self.memo = Some(memo);
        self
    }

    /// Lets the handler park the connection (`allowed`, when the server parks and `rfile`
    /// cannot hold bytes between reads); `resumed` if it was parked before this call.
    pub(crate) fn with_parking(mut self, allowed: bool, resumed: bool) -> Self {
        self.park.allowed = allowed && self.rfile.capacity() <= PARK_MAX_RBUFSIZE;
        self.park.resumed = resumed;
        self
    }

    /// The request came through a proxy that sent this PROXY protocol header.
    pub(crate) fn with_proxy(mut self, proxy: Option<&'a ProxyInfo>) -> Self {
        self.proxy = proxy;
        self
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
    pub(crate) fn registered(&self) -> Option<&'a Registered> {
        self.registered
    }

    /// The connection itself (Python: `request` / `connection`), for socket options and
    /// timeouts. Reading from it directly skips what `rfile` has already buffered.
    ///
    /// It is the raw socket: on a TLS connection, reading or writing it directly would bypass
    /// TLS; use `rfile` and `wfile` (or [`stream`](Self::stream)).
    #[doc(alias = "request")]
    pub fn connection(&self) -> &'a Connection {
        self.stream.connection()
    }

    /// The connection's byte stream, which `rfile` reads and `wfile` writes: the socket, or
    /// TLS over it.
    pub fn stream(&self) -> &'a Stream {
        self.stream
    }

    /// What the TLS handshake negotiated (SNI name, ALPN protocol, the client's certificates,
    /// version and cipher suite), when the server serves TLS
    /// ([`ServerBuilder::tls`](crate::ServerBuilder::tls)); `None` otherwise.
    #[cfg(feature = "tls")]
    pub fn tls(&self) -> Option<&'a crate::tls::TlsInfo> {
        self.stream.tls()
    }

    /// The client's address (Python: `client_address`). For Unix stream clients this is usually
    /// [`UnixAddress::Unnamed`], as clients rarely bind.
    ///
    /// Behind a proxy that sends the PROXY protocol (see
    /// [`ServerBuilder::proxy_protocol`](crate::ServerBuilder::proxy_protocol)) this is the
    /// client the proxy saw; the proxy's own address is in [`proxy`](Self::proxy).
    pub fn client_address(&self) -> &'a Address {
        self.client_address
    }

    /// What the proxy's PROXY protocol header said, when the server requires one
    /// ([`ServerBuilder::proxy_protocol`](crate::ServerBuilder::proxy_protocol)): the proxy's
    /// own address, the address the client connected to, and the TLVs (ALPN, authority,
    /// unique id). `None` when the option is off.
    pub fn proxy(&self) -> Option<&'a ProxyInfo> {
        self.proxy
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
            .field("proxy", &self.proxy.map(ProxyInfo::peer))
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
    /// The packet, readable with [`Read`](std::io::Read) (Python: `rfile`, a `BytesIO` over the packet).
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
