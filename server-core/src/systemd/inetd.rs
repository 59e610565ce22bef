//! inetd-style activation (`Accept=yes`, `systemd-socket-activate -a`, inetd): the process is
//! started for one connection, which it finds on fd 3 or on its standard input.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use super::activation::{ActivationError, ListenFds, SocketKind};
use crate::addr::{Address, UnixAddress};
use crate::request::Connection;

/// The one connection an `Accept=yes` service instance (or an inetd program) is started for,
/// in blocking mode, with both ends' addresses.
///
/// Serve it as Python's `handle_request` serves one request; [`into_parts`](Self::into_parts)
/// gives the [`Connection`] and the client's address.
#[derive(Debug)]
pub struct InetdConnection {
    connection: Connection,
    client_address: Address,
    server_address: Address,
    fd: RawFd,
    name: String,
}

impl InetdConnection {
    /// Wraps a connected stream socket taken from descriptor `fd` named `name`.
    pub(crate) fn adopt(
        socket: OwnedFd,
        fd: RawFd,
        name: String,
    ) -> Result<InetdConnection, ActivationError> {
        let inspect = |source: io::Error| ActivationError::Inspect {
            fd,
            name: name.clone(),
            source,
        };
        let kind = SocketKind::of(socket.as_fd()).map_err(inspect)?;
        let (connection, client_address, server_address) = match kind {
            SocketKind::TcpConnection => {
                let stream = TcpStream::from(socket);
                let client = stream.peer_addr().map_err(inspect)?;
                let server = stream.local_addr().map_err(inspect)?;
                (
                    Connection::Tcp(stream),
                    Address::Inet(client),
                    Address::Inet(server),
                )
            }
            SocketKind::UnixConnection => {
                let stream = UnixStream::from(socket);
                let unix = |a: io::Result<std::os::unix::net::SocketAddr>| {
                    a.map(|a| Address::from_unix(&a))
                        .unwrap_or(Address::Unix(UnixAddress::Unnamed))
                };
                let client = unix(stream.peer_addr());
                let server = unix(stream.local_addr());
                (Connection::Unix(stream), client, server)
            }
            found => {
                return Err(ActivationError::WrongKind {
                    fd,
                    name,
                    found,
                    wanted: "a connected stream socket (Accept=yes)",
                })
            }
        };
        // systemd and inetd pass it blocking, but a socket unit cannot promise that.
        match &connection {
            Connection::Tcp(s) => s.set_nonblocking(false),
            Connection::Unix(s) => s.set_nonblocking(false),
        }
        .map_err(inspect)?;
        log::debug!(target: "socketserver::systemd",
            "serving the connection from {client_address} on fd {fd} ({name:?})");
        Ok(InetdConnection {
            connection,
            client_address,
            server_address,
            fd,
            name,
        })
    }

    /// The connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The client's address (Python: `client_address`).
    pub fn client_address(&self) -> &Address {
        &self.client_address
    }

    /// The address the client connected to: the socket unit's `ListenStream=`.
    pub fn server_address(&self) -> &Address {
        &self.server_address
    }

    /// The descriptor it came on: 3 with `LISTEN_FDS`, 0 for inetd's standard input.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Its name: `"connection"` from systemd, `"unknown"` without `LISTEN_FDNAMES`, `"stdin"`
    /// for inetd.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection and the client's address.
    pub fn into_parts(self) -> (Connection, Address) {
        (self.connection, self.client_address)
    }
}

/// Takes the connection this process was started for, inetd-style: systemd's `Accept=yes`
/// (and `systemd-socket-activate --accept`) pass it as fd 3 with `LISTEN_FDS=1`; inetd (and
/// `systemd-socket-activate --inetd`) as standard input and output.
///
/// With `LISTEN_FDS` for this process (see [`ListenFds::from_env`], which this calls and whose
/// caveats apply), it takes the first connected stream socket passed. Otherwise, if standard
/// input is a connected stream socket, it takes a duplicate of it (standard input and output
/// stay open: the connection ends for the client when this one is shut down or the process
/// exits). `Ok(None)` when neither holds: the process was started by hand.
///
/// # Errors
///
/// Those of [`ListenFds::from_env`]; [`ActivationError::WrongKind`] when what was passed is not
/// a connected stream socket (a listener: the unit says `Accept=no`; a datagram socket: inetd's
/// `dgram`), naming the descriptor.
pub fn inetd_stream() -> Result<Option<InetdConnection>, ActivationError> {
    let mut passed = ListenFds::from_env()?;
    if !passed.is_empty() {
        return passed.take_connection(None);
    }
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let name = "stdin";
    match SocketKind::of(fd) {
        Ok(SocketKind::NotASocket) => Ok(None),
        // Standard input closed.
        Err(e) if e.raw_os_error() == Some(nix::libc::EBADF) => Ok(None),
        Err(source) => Err(ActivationError::Inspect {
            fd: 0,
            name: name.into(),
            source,
        }),
        Ok(_) => {
            let socket = fd
                .try_clone_to_owned()
                .map_err(|source| ActivationError::Inspect {
                    fd: 0,
                    name: name.into(),
                    source,
                })?;
            InetdConnection::adopt(socket, 0, name.into()).map(Some)
        }
    }
}
