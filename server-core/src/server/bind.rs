//! Binding a server, per transport: `bind` to an address or path, or serve on a socket bound
//! elsewhere (`from_listener`, `from_socket`), and the `Server::bind` shortcuts.

use std::fmt;
use std::net::{TcpListener, ToSocketAddrs, UdpSocket};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixDatagram as StdUnixDatagram, UnixListener};
use std::path::Path;
use std::sync::Arc;

use socket2::Type;

use crate::addr::Address;
use crate::error::{Error, Result};
use crate::handler::{DatagramRequestHandler, StreamRequestHandler};
use crate::request::DatagramSocket;
use crate::server::pipeline::{finish_datagram, finish_stream};
use crate::server::{Server, ServerBuilder};
use crate::strategy::Strategy;
use crate::transport::{self, Listener};

impl<H: StreamRequestHandler, S: Strategy> ServerBuilder<transport::Tcp, H, S> {
    /// Binds and listens on `addr` (`"127.0.0.1:8000"`, `"[::1]:0"`, `("localhost", 0)`, a
    /// `SocketAddr`...). Port 0 picks a free port; read it back with
    /// [`Server::server_address`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`], [`Error::AddrInUse`], [`Error::AddrNotAvailable`],
    /// [`Error::PermissionDenied`], [`Error::Bind`], [`Error::Listen`], [`Error::SocketOption`]
    /// or [`Error::InvalidOption`], each naming the address.
    pub fn bind<A: ToSocketAddrs + fmt::Debug>(self, addr: A) -> Result<TcpServerOf<H, S>> {
        self.validate()?;
        let (socket, local) = transport::bind_inet(addr, Type::STREAM, &self.bind)?;
        self.build(
            transport::to_tcp(socket),
            Address::Inet(local),
            None,
            finish_stream::<H>,
            H::BUSY_REPLY,
        )
    }

    /// Serves on a listener bound elsewhere (Python: `bind_and_activate=False`; also what
    /// socket activation hands over, as an `OwnedFd`). A bound socket that is not listening yet
    /// is put into listening state with the `backlog` option. The connection options
    /// ([`nodelay`](Self::nodelay), [`read_timeout`](Self::read_timeout),
    /// [`write_timeout`](Self::write_timeout)) that are set are set on the listener itself,
    /// for its connections to inherit.
    ///
    /// # Errors
    ///
    /// [`Error::WrongSocket`] if it is not a bound stream socket.
    pub fn from_listener(self, listener: impl Into<TcpListener>) -> Result<TcpServerOf<H, S>> {
        self.validate()?;
        let listener = listener.into();
        transport::adopt(listener.as_fd(), Type::STREAM, "tcp", self.bind.backlog)?;
        let local = listener.local_addr().map_err(|e| Error::WrongSocket {
            transport: "tcp",
            reason: e.to_string(),
        })?;
        self.build(
            Listener::Tcp(listener),
            Address::Inet(local),
            None,
            finish_stream::<H>,
            H::BUSY_REPLY,
        )
    }
}

impl<H: DatagramRequestHandler, S: Strategy> ServerBuilder<transport::Udp, H, S> {
    /// Binds a UDP socket to `addr`; port 0 picks a free port.
    ///
    /// # Errors
    ///
    /// As for [`ServerBuilder::<Tcp, _, _>::bind`](ServerBuilder::bind), without `Listen`.
    pub fn bind<A: ToSocketAddrs + fmt::Debug>(
        self,
        addr: A,
    ) -> Result<Server<transport::Udp, H, S>> {
        self.validate()?;
        let (socket, local) = transport::bind_inet(addr, Type::DGRAM, &self.bind)?;
        self.build(
            Arc::new(transport::to_udp(socket)),
            Address::Inet(local),
            None,
            finish_datagram::<H>,
            b"",
        )
    }

    /// Serves on a UDP socket bound elsewhere (Python: `bind_and_activate=False`).
    ///
    /// # Errors
    ///
    /// [`Error::WrongSocket`] if it is not a bound datagram socket.
    pub fn from_socket(self, socket: impl Into<UdpSocket>) -> Result<Server<transport::Udp, H, S>> {
        self.validate()?;
        let socket = socket.into();
        transport::adopt(socket.as_fd(), Type::DGRAM, "udp", self.bind.backlog)?;
        let local = socket.local_addr().map_err(|e| Error::WrongSocket {
            transport: "udp",
            reason: e.to_string(),
        })?;
        self.build(
            Arc::new(DatagramSocket::Udp(socket)),
            Address::Inet(local),
            None,
            finish_datagram::<H>,
            b"",
        )
    }
}

impl<H: StreamRequestHandler, S: Strategy> ServerBuilder<transport::UnixStream, H, S> {
    /// Binds and listens on the socket file `path`, replacing a stale one (see
    /// [the transport docs](crate::transport)). The file is removed when the server closes.
    ///
    /// A path starting with `@` binds in Linux's abstract namespace instead, as systemd writes
    /// it: no file is made or removed (write `./@name` for a file of that name), and
    /// `socket_mode` is an [`Error::InvalidOption`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for an empty path, [`Error::UnixPathInUse`] if a live server
    /// listens there, [`Error::PathNotSocket`] if the path is another kind of file, [`Error::StaleSocket`] if a stale socket cannot be
    /// removed, [`Error::PermissionDenied`], [`Error::Bind`], [`Error::Listen`] or
    /// [`Error::InvalidOption`] (`reuse_port`).
    pub fn bind(self, path: impl AsRef<Path>) -> Result<Server<transport::UnixStream, H, S>> {
        self.validate()?;
        let path = path.as_ref();
        // `@name` binds in the abstract namespace: no file, and the address says `@name`.
        let (fd, address, file) = transport::bind_unix(path, Type::STREAM, &self.bind)?;
        self.build(
            Listener::Unix(UnixListener::from(fd)),
            address,
            file,
            finish_stream::<H>,
            H::BUSY_REPLY,
        )
    }

    /// Serves on a Unix listener bound elsewhere. Its socket file is left alone on close.
    ///
    /// # Errors
    ///
    /// [`Error::WrongSocket`] if it is not a bound stream socket.
    pub fn from_listener(
        self,
        listener: impl Into<UnixListener>,
    ) -> Result<Server<transport::UnixStream, H, S>> {
        self.validate()?;
        let listener = listener.into();
        transport::adopt(listener.as_fd(), Type::STREAM, "unix", self.bind.backlog)?;
        let local = transport::unix_local_address(listener.local_addr());
        self.build(
            Listener::Unix(listener),
            local,
            None,
            finish_stream::<H>,
            H::BUSY_REPLY,
        )
    }
}

impl<H: DatagramRequestHandler, S: Strategy> ServerBuilder<transport::UnixDatagram, H, S> {
    /// Binds a Unix datagram socket at `path`, replacing a stale one. The file is removed when
    /// the server closes. Clients must bind a path (or an abstract name) of their own to get
    /// replies. A path starting with `@` binds in the abstract namespace, as for the stream
    /// server's [`bind`](ServerBuilder::bind).
    ///
    /// # Errors
    ///
    /// As for the Unix stream server's `bind`, without `Listen`.
    pub fn bind(self, path: impl AsRef<Path>) -> Result<Server<transport::UnixDatagram, H, S>> {
        self.validate()?;
        let path = path.as_ref();
        let (fd, address, file) = transport::bind_unix(path, Type::DGRAM, &self.bind)?;
        let socket = DatagramSocket::Unix(StdUnixDatagram::from(fd));
        self.build(Arc::new(socket), address, file, finish_datagram::<H>, b"")
    }

    /// Serves on a Unix datagram socket bound elsewhere. Its socket file is left alone on close.
    ///
    /// # Errors
    ///
    /// [`Error::WrongSocket`] if it is not a bound datagram socket.
    pub fn from_socket(
        self,
        socket: impl Into<StdUnixDatagram>,
    ) -> Result<Server<transport::UnixDatagram, H, S>> {
        self.validate()?;
        let socket = socket.into();
        transport::adopt(
            socket.as_fd(),
            Type::DGRAM,
            "unix-datagram",
            self.bind.backlog,
        )?;
        let local = transport::unix_local_address(socket.local_addr());
        self.build(
            Arc::new(DatagramSocket::Unix(socket)),
            local,
            None,
            finish_datagram::<H>,
            b"",
        )
    }
}

type TcpServerOf<H, S> = Server<transport::Tcp, H, S>;

macro_rules! bind_shortcut {
    ($transport:ty, $handler:ident, $arg:ident: $ty:ty, $($bound:tt)*) => {
        impl<H: $handler, S: Strategy + Default> Server<$transport, H, S>
        where
            H::State: Default,
        {
            /// Binds with the default options, state and strategy (Python: the server's
            /// constructor). See [`ServerBuilder`] for options.
            ///
            /// # Errors
            ///
            /// As for [`ServerBuilder::bind`].
            pub fn bind<$($bound)*>($arg: $ty) -> Result<Self> {
                Self::builder().bind($arg)
            }
        }
    };
}

bind_shortcut!(transport::Tcp, StreamRequestHandler, addr: A, A: ToSocketAddrs + fmt::Debug);
bind_shortcut!(transport::Udp, DatagramRequestHandler, addr: A, A: ToSocketAddrs + fmt::Debug);
bind_shortcut!(transport::UnixStream, StreamRequestHandler, path: P, P: AsRef<Path>);
bind_shortcut!(transport::UnixDatagram, DatagramRequestHandler, path: P, P: AsRef<Path>);
