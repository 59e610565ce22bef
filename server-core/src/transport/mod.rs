//! The four transports (Python's `address_family` and `socket_type`), and how each binds.
//!
//! The transport is the server's first type parameter: [`Tcp`], [`Udp`], [`UnixStream`] or
//! [`UnixDatagram`]. Stream transports serve a [`StreamRequestHandler`](crate::StreamRequestHandler),
//! datagram transports a [`DatagramRequestHandler`](crate::DatagramRequestHandler).
//!
//! # Binding, step by step
//!
//! Internet sockets (`bind` with anything that implements [`ToSocketAddrs`]):
//!
//! 1. The address is resolved; each resolved address is tried in order, and the first that binds
//!    wins (as `std::net::TcpListener::bind` does). IPv4 and IPv6 both work; `[::]` accepts IPv4
//!    clients too unless the system disables dual-stack sockets.
//! 2. `SO_REUSEADDR` is set when `reuse_address` is on. For TCP it is on by default (as in
//!    `std` and most servers: it only lets a restarted server bind while old connections sit
//!    in `TIME_WAIT`). For UDP it is off by default, because on Linux it would let two servers
//!    share a port silently.
//! 3. `SO_REUSEPORT` is set when `reuse_port` is on (internet sockets only: Linux 6.12.9 and
//!    later reject it on Unix sockets, so asking for it there is an [`Error::InvalidOption`]).
//! 4. `bind(2)`, then for streams `listen(2)` with `backlog` (1024 by default; Python's 5 is far
//!    too small, see gh-80184; the kernel caps it at `net.core.somaxconn`).
//!
//! Unix sockets (`bind` with a path):
//!
//! 1. If the path exists and is not a socket, binding fails with [`Error::PathNotSocket`]; no
//!    user file is ever deleted.
//! 2. If it is a socket, the server tries to connect to it. If that succeeds a live server owns
//!    it: [`Error::UnixPathInUse`]. If the connection is refused the file is stale (left by a
//!    server that died); it is removed, with an `info` log, and binding goes on.
//! 3. `bind(2)` (and `listen(2)` for streams). The server remembers the file it created and
//!    removes it when it closes, unless the file at that path is no longer the same one.
//!
//! Abstract Unix sockets (`bind("@name")`, Linux only):
//!
//! A path that starts with `@` names a socket in Linux's abstract namespace, as systemd's
//! `ListenStream=@name` and `ss -x` write it; write `./@name` for a socket *file* named `@name`.
//! An abstract socket has no file: nothing is created, checked for staleness or removed, and it
//! goes away with its last descriptor. `bind` fails with [`Error::AddrInUse`] while another
//! socket holds the name. The server reports its address as
//! [`UnixAddress::Abstract`](crate::UnixAddress::Abstract), shown as `@name`; clients connect to
//! the name with a leading NUL byte (Python: `sock.connect("\0name")`). `backlog` applies as
//! for files; `socket_mode` is an [`Error::InvalidOption`], because an abstract socket has no
//! permissions: any process in the same network namespace can connect, so check the peer
//! ([`PeerCredentials`](crate::PeerCredentials)) where that matters.
//!
//! Sockets passed to `from_listener`/`from_socket` (Python's `bind_and_activate=False`, and
//! systemd-style socket activation) are checked for the right type and used as they are; a
//! stream socket that is bound but not yet listening is put into listening state. Their socket
//! files are never removed, because the server did not create them.

mod unix;

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use socket2::{Domain, SockRef, Socket, Type};

use crate::addr::Address;
use crate::error::{Error, RequestError, Result};
use crate::request::{Connection, DatagramSocket};
use crate::server::TURN_AWAY_DRAIN;
use crate::sys;

pub(crate) use unix::{bind_unix, unix_local_address, SocketFile};

/// TCP, over IPv4 or IPv6 (Python: `TCPServer`).
#[derive(Debug, Clone, Copy)]
pub struct Tcp;

/// UDP, over IPv4 or IPv6 (Python: `UDPServer`).
#[derive(Debug, Clone, Copy)]
pub struct Udp;

/// Unix domain stream sockets (Python: `UnixStreamServer`).
#[derive(Debug, Clone, Copy)]
pub struct UnixStream;

/// Unix domain datagram sockets (Python: `UnixDatagramServer`).
#[derive(Debug, Clone, Copy)]
pub struct UnixDatagram;

/// The transports' internals: what the server needs of a transport. Public items in a
/// private module, so that [`Transport`] can name them while no user can.
mod sealed {
    use std::io;
    use std::net::TcpListener;
    use std::os::fd::{AsFd, BorrowedFd, RawFd};
    use std::os::unix::net::UnixListener;

    use crate::addr::Address;
    use crate::error::RequestError;
    use crate::request::{Connection, DatagramSocket};

    /// What the server needs of a transport; only this crate's four transports have it.
    pub trait Sealed {
        /// The socket requests come from.
        type Socket: AsFd + Send + Sync + 'static;
        /// One request: an accepted connection, or a received datagram.
        type Request: Send + 'static;
        /// Takes one request from the socket, if one is waiting (`WouldBlock` if none).
        fn get_request(
            socket: &Self::Socket,
            buf: &mut [u8],
        ) -> io::Result<Received<Self::Request>>;
        /// Who sent the request.
        fn client_address(request: &Self::Request) -> &Address;
        /// Ends a request that is not served (Python: `shutdown_request`).
        fn close_request(request: Self::Request);
        /// Whether the client already gave up (closed without sending anything) while it
        /// waited in the listen backlog; always `false` for datagrams.
        fn gave_up(request: &Self::Request) -> bool;
        /// Ends a request the overload policy turned away: sends `reply` (if any) without
        /// waiting, after reading and dropping what the client already sent, then closes.
        fn turn_away(request: Self::Request, reply: &[u8]);
        /// The listening socket a forked child should close; `None` for datagram sockets.
        fn listener_fd(socket: &Self::Socket) -> Option<RawFd>;
    }

    /// What one receive produced.
    #[derive(Debug)]
    pub enum Received<R> {
        /// A request to serve.
        Request(R),
        /// Something that arrived and cannot be served (an oversized datagram).
        Dropped(RequestError),
    }

    /// A listening stream socket.
    #[derive(Debug)]
    pub enum Listener {
        /// A TCP listener.
        Tcp(TcpListener),
        /// A Unix stream listener.
        Unix(UnixListener),
    }

    impl AsFd for Listener {
        fn as_fd(&self) -> BorrowedFd<'_> {
            match self {
                Listener::Tcp(l) => l.as_fd(),
                Listener::Unix(l) => l.as_fd(),
            }
        }
    }

    /// An accepted connection and its client's address.
    #[derive(Debug)]
    pub struct Accepted {
        /// The connection.
        pub connection: Connection,
        /// Who connected.
        pub client_address: Address,
    }

    /// A received datagram.
    #[derive(Debug)]
    pub struct Datagram {
        /// What came.
        pub packet: Vec<u8>,
        /// Who sent it.
        pub client_address: Address,
        /// The server's socket, to reply through.
        pub socket: std::sync::Arc<DatagramSocket>,
    }
}

pub(crate) use sealed::{Accepted, Datagram, Listener, Received, Sealed};

/// A transport: one of [`Tcp`], [`Udp`], [`UnixStream`] and [`UnixDatagram`], the first type
/// parameter of [`Server`](crate::Server).
///
/// This trait is sealed: what the server needs of a transport is internal, and only these four
/// implement it. Name it as a bound in code that is generic over the transport
/// (`Server<T: Transport, H: Handler, S: Strategy>`).
pub trait Transport: sealed::Sealed + Send + Sync + 'static {
    /// The transport's name in messages: `"tcp"`, `"udp"`, `"unix"` or `"unix-datagram"`.
    const NAME: &'static str;
}

fn accept(listener: &Listener) -> io::Result<Received<Accepted>> {
    let (connection, client_address) = match listener {
        Listener::Tcp(l) => {
            let (s, a) = l.accept()?;
            (Connection::Tcp(s), Address::Inet(a))
        }
        Listener::Unix(l) => {
            let (s, a) = l.accept()?;
            (Connection::Unix(s), Address::from_unix(&a))
        }
    };
    // On Linux an accepted socket does not inherit O_NONBLOCK from the listener, so the
    // connection is already in blocking mode, as handlers expect.
    Ok(Received::Request(Accepted {
        connection,
        client_address,
    }))
}

macro_rules! stream_transport {
    ($t:ty, $name:literal) => {
        impl Transport for $t {
            const NAME: &'static str = $name;
        }
        impl Sealed for $t {
            type Socket = Listener;
            type Request = Accepted;
            fn get_request(socket: &Listener, _buf: &mut [u8]) -> io::Result<Received<Accepted>> {
                accept(socket)
            }
            fn client_address(request: &Accepted) -> &Address {
                &request.client_address
            }
            fn close_request(request: Accepted) {
                // Python's shutdown_request: SHUT_WR, then close; errors such as ENOTCONN
                // mean the client is gone already.
                let _ = request.connection.shutdown(std::net::Shutdown::Write);
            }
            fn gave_up(request: &Accepted) -> bool {
                sys::socket::peer_gave_up(request.connection.as_fd())
            }
            fn turn_away(request: Accepted, reply: &[u8]) {
                if !reply.is_empty() {
                    let fd = request.connection.as_fd();
                    // What the client sent would make the close a reset, which can destroy
                    // the reply before the client reads it.
                    sys::socket::discard_pending(fd, TURN_AWAY_DRAIN);
                    let _ = sys::socket::send_now(fd, reply);
                }
                Self::close_request(request);
            }
            fn listener_fd(socket: &Listener) -> Option<RawFd> {
                Some(socket.as_fd().as_raw_fd())
            }
        }
    };
}

macro_rules! datagram_transport {
    ($t:ty, $name:literal) => {
        impl Transport for $t {
            const NAME: &'static str = $name;
        }
        impl Sealed for $t {
            type Socket = std::sync::Arc<DatagramSocket>;
            type Request = Datagram;
            fn get_request(
                socket: &std::sync::Arc<DatagramSocket>,
                buf: &mut [u8],
            ) -> io::Result<Received<Datagram>> {
                recv_datagram(socket, buf)
            }
            fn client_address(request: &Datagram) -> &Address {
                &request.client_address
            }
            fn close_request(_request: Datagram) {}
            fn gave_up(_request: &Datagram) -> bool {
                false
            }
            fn turn_away(_request: Datagram, _reply: &[u8]) {}
            fn listener_fd(_socket: &std::sync::Arc<DatagramSocket>) -> Option<RawFd> {
                // A forked child replies through the server's socket, so it keeps it.
                None
            }
        }
    };
}

stream_transport!(Tcp, "tcp");
stream_transport!(UnixStream, "unix");
datagram_transport!(Udp, "udp");
datagram_transport!(UnixDatagram, "unix-datagram");

/// Receives one datagram without blocking, detecting truncation.
///
/// The buffer is one byte longer than `max_packet_size`: a datagram that fills that extra byte
/// was larger than allowed, and is dropped and reported instead of being passed on cut short.
/// This uses `std`'s `recv_from`, which parses every kind of sender address safely (nix 0.29's
/// `UnixAddr` parsing panics on the empty address of an unbound Unix datagram sender).
fn recv_datagram(
    socket: &std::sync::Arc<DatagramSocket>,
    buf: &mut [u8],
) -> io::Result<Received<Datagram>> {
    let (size, client_address) = match &**socket {
        DatagramSocket::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, Address::Inet(a)))?,
        DatagramSocket::Unix(s) => s.recv_from(buf).map(|(n, a)| (n, Address::from_unix(&a)))?,
    };
    let capacity = buf.len().saturating_sub(1);
    if size > capacity {
        return Ok(Received::Dropped(RequestError::Truncated {
            client: client_address,
            capacity,
        }));
    }
    let packet = buf[..size].to_vec();
    Ok(Received::Request(Datagram {
        packet,
        client_address,
        socket: socket.clone(),
    }))
}

/// Socket options used while binding.
#[derive(Debug, Clone)]
pub(crate) struct BindOptions {
    pub reuse_address: Option<bool>,
    pub reuse_port: bool,
    pub backlog: i32,
    pub socket_mode: Option<u32>,
}

/// Wraps an address the caller typed, for error messages.
struct Shown<'a, A: fmt::Debug>(&'a A);

impl<A: fmt::Debug> fmt::Display for Shown<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{:?}", self.0);
        f.write_str(text.trim_matches('"'))
    }
}

fn bind_error(addr: Address, source: io::Error) -> Error {
    match source.kind() {
        io::ErrorKind::AddrInUse => Error::AddrInUse { addr, source },
        io::ErrorKind::AddrNotAvailable => Error::AddrNotAvailable { addr, source },
        io::ErrorKind::PermissionDenied => Error::PermissionDenied { addr, source },
        _ => Error::Bind { addr, source },
    }
}

fn option_error<'a>(
    option: &'static str,
    addr: &'a Address,
) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::SocketOption {
        option,
        addr: addr.clone(),
        source,
    }
}

/// Binds an internet socket of type `ty`, trying each resolved address in turn.
pub(crate) fn bind_inet<A: ToSocketAddrs + fmt::Debug>(
    addr: A,
    ty: Type,
    options: &BindOptions,
) -> Result<(Socket, SocketAddr)> {
    let addrs = addr
        .to_socket_addrs()
        .map_err(|source| Error::InvalidAddress {
            addr: Shown(&addr).to_string(),
            source,
        })?;
    let mut last = None;
    for candidate in addrs {
        match bind_one(candidate, ty, options) {
            Ok(bound) => return Ok(bound),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::InvalidAddress {
        addr: Shown(&addr).to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "resolved to no address"),
    }))
}

fn bind_one(addr: SocketAddr, ty: Type, options: &BindOptions) -> Result<(Socket, SocketAddr)> {
    let shown = Address::Inet(addr);
    let socket = Socket::new(Domain::for_address(addr), ty, None)
        .map_err(|e| bind_error(shown.clone(), e))?;
    let reuse_address = options.reuse_address.unwrap_or(ty == Type::STREAM);
    if reuse_address {
        socket
            .set_reuse_address(true)
            .map_err(option_error("SO_REUSEADDR", &shown))?;
    }
    if options.reuse_port {
        socket
            .set_reuse_port(true)
            .map_err(option_error("SO_REUSEPORT", &shown))?;
    }
    socket
        .bind(&addr.into())
        .map_err(|e| bind_error(shown.clone(), e))?;
    activate(&socket, ty, options, &shown)?;
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    Ok((socket, local))
}

/// Python's `server_activate`: listens (streams only) and makes the socket non-blocking for the
/// serving loop.
fn activate(socket: &Socket, ty: Type, options: &BindOptions, shown: &Address) -> Result<()> {
    if ty == Type::STREAM {
        socket
            .listen(options.backlog)
            .map_err(|source| Error::Listen {
                addr: shown.clone(),
                source,
            })?;
    }
    socket
        .set_nonblocking(true)
        .map_err(option_error("O_NONBLOCK", shown))
}

/// Checks a socket handed in by the caller and prepares it for serving.
pub(crate) fn adopt(
    fd: BorrowedFd<'_>,
    ty: Type,
    transport: &'static str,
    backlog: i32,
) -> Result<()> {
    let socket = SockRef::from(&fd);
    let wrong = |reason: String| Error::WrongSocket { transport, reason };
    let actual = socket
        .r#type()
        .map_err(|e| wrong(format!("cannot read its type: {e}")))?;
    if actual != ty {
        return Err(wrong(format!("it is a {actual:?} socket, not {ty:?}")));
    }
    let local = socket
        .local_addr()
        .map_err(|e| wrong(format!("it is not bound: {e}")))?;
    if local.is_unnamed() || local.as_socket().is_some_and(|a| a.port() == 0) {
        return Err(wrong("it is not bound to an address".into()));
    }
    if ty == Type::STREAM && !socket.is_listener().unwrap_or(false) {
        socket
            .listen(backlog)
            .map_err(|e| wrong(format!("listen failed: {e}")))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| wrong(format!("cannot make it non-blocking: {e}")))?;
    Ok(())
}

pub(crate) fn to_tcp(socket: Socket) -> Listener {
    Listener::Tcp(socket.into())
}

pub(crate) fn to_udp(socket: Socket) -> DatagramSocket {
    DatagramSocket::Udp(UdpSocket::from(socket))
}
