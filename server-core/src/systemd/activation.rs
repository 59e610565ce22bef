//! Socket activation: the descriptors systemd passes (`sd_listen_fds(3)`), checked and handed
//! out as std sockets.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener};

use parking_lot::Mutex;
use socket2::{Domain, Protocol, SockRef, Type};

use super::inetd::InetdConnection;

/// The variables of the protocol, removed by [`ListenFds::from_env`] whatever it finds.
const VARIABLES: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Held while the environment is read and cleared, so that two threads calling
/// [`ListenFds::from_env`] at once cannot both take the same descriptors.
static TAKING: Mutex<()> = parking_lot::const_mutex(());

/// Why the sockets passed by systemd could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// `LISTEN_PID` or `LISTEN_FDS` is not a number (or the count overflows).
    #[error("invalid {variable}={value:?} in the environment: {source}")]
    Environment {
        /// The variable: `"LISTEN_PID"` or `"LISTEN_FDS"`.
        variable: &'static str,
        /// Its text.
        value: String,
        /// What the parser said.
        source: io::Error,
    },
    /// `LISTEN_FDNAMES` does not name exactly `LISTEN_FDS` descriptors.
    #[error("LISTEN_FDNAMES={names:?} does not name the {fds} descriptors of LISTEN_FDS")]
    NameCount {
        /// `LISTEN_FDS`, as text.
        fds: String,
        /// `LISTEN_FDNAMES`.
        names: String,
    },
    /// A descriptor that `LISTEN_FDS` counts is not open.
    #[error("LISTEN_FDS={fds} counts a descriptor that is not open: {source}")]
    NotOpen {
        /// `LISTEN_FDS`, as text.
        fds: String,
        /// The error of `fcntl(2)`, usually `EBADF`.
        source: io::Error,
    },
    /// The descriptor chosen is not the kind of socket asked for.
    #[error("fd {fd} ({name:?}) is {found}; {wanted} was asked for")]
    WrongKind {
        /// The descriptor's number (3 for the first one systemd passes, 0 for inetd's stdin).
        fd: RawFd,
        /// Its name in `LISTEN_FDNAMES` (`"unknown"` without one, `"stdin"` for inetd).
        name: String,
        /// What it is.
        found: SocketKind,
        /// What was asked for, such as `"a TCP listener"`.
        wanted: &'static str,
    },
    /// No descriptor has the name asked for.
    #[error("no socket named {name:?} was passed (LISTEN_FDNAMES: {available:?})")]
    NameNotFound {
        /// The name asked for.
        name: String,
        /// The names passed, in order.
        available: Vec<String>,
    },
    /// The descriptor's type, family or state could not be read.
    #[error("cannot inspect fd {fd} ({name:?}): {source}")]
    Inspect {
        /// The descriptor's number.
        fd: RawFd,
        /// Its name.
        name: String,
        /// The error of `getsockopt(2)`.
        source: io::Error,
    },
}

/// What an inherited descriptor is, as [`ActivationError::WrongKind`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketKind {
    /// A listening TCP socket (`ListenStream=` with an address or port).
    TcpListener,
    /// A connected TCP socket (`Accept=yes`).
    TcpConnection,
    /// A UDP socket (`ListenDatagram=` with an address or port).
    Udp,
    /// A listening Unix stream socket (`ListenStream=` with a path or `@name`).
    UnixListener,
    /// A connected Unix stream socket (`Accept=yes`).
    UnixConnection,
    /// A Unix datagram socket (`ListenDatagram=` with a path or `@name`).
    UnixDatagram,
    /// Any other socket (seqpacket, netlink, a stream socket that neither listens nor is
    /// connected...), described.
    Other(String),
    /// Not a socket at all (a FIFO, a file or a device: `ListenFIFO=`, `ListenSpecial=`).
    NotASocket,
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketKind::TcpListener => "a TCP listener",
            SocketKind::TcpConnection => "a connected TCP socket",
            SocketKind::Udp => "a UDP socket",
            SocketKind::UnixListener => "a Unix stream listener",
            SocketKind::UnixConnection => "a connected Unix stream socket",
            SocketKind::UnixDatagram => "a Unix datagram socket",
            SocketKind::Other(description) => description,
            SocketKind::NotASocket => "not a socket",
        })
    }
}

impl SocketKind {
    /// Reads what `fd` is: `SO_TYPE`, `SO_DOMAIN`, `SO_PROTOCOL`, and for streams
    /// `SO_ACCEPTCONN` and whether it has a peer.
    pub(crate) fn of(fd: BorrowedFd<'_>) -> io::Result<SocketKind> {
        let socket = SockRef::from(&fd);
        let ty = match socket.r#type() {
            Ok(ty) => ty,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSOCK) => {
                return Ok(SocketKind::NotASocket)
            }
            Err(e) => return Err(e),
        };
        let domain = socket.domain()?;
        let protocol = socket.protocol()?;
        let inet = domain == Domain::IPV4 || domain == Domain::IPV6;
        let kind = if ty == Type::STREAM && (domain == Domain::UNIX || inet) {
            let tcp = protocol.is_none_or(|p| p == Protocol::TCP);
            let state = if socket.is_listener()? {
                Some(true)
            } else if socket.peer_addr().is_ok() {
                Some(false)
            } else {
                None
            };
            match (domain == Domain::UNIX, tcp || !inet, state) {
                (false, true, Some(true)) => SocketKind::TcpListener,
                (false, true, Some(false)) => SocketKind::TcpConnection,
                (true, _, Some(true)) => SocketKind::UnixListener,
                (true, _, Some(false)) => SocketKind::UnixConnection,
                (_, _, None) => SocketKind::Other(format!(
                    "a {domain:?} stream socket that neither listens nor is connected"
                )),
                _ => SocketKind::Other(format!("a {domain:?} stream socket of {protocol:?}")),
            }
        } else if ty == Type::DGRAM && domain == Domain::UNIX {
            SocketKind::UnixDatagram
        } else if ty == Type::DGRAM && inet && protocol.is_none_or(|p| p == Protocol::UDP) {
            SocketKind::Udp
        } else {
            SocketKind::Other(format!("a {domain:?} {ty:?} socket of {protocol:?}"))
        };
        Ok(kind)
    }
}

/// One descriptor passed by systemd.
#[derive(Debug)]
struct Inherited {
    fd: RawFd,
    name: String,
    /// `None` once taken.
    socket: Option<OwnedFd>,
}

impl Inherited {
    fn kind(&self, socket: BorrowedFd<'_>) -> Result<SocketKind, ActivationError> {
        SocketKind::of(socket).map_err(|source| ActivationError::Inspect {
            fd: self.fd,
            name: self.name.clone(),
            source,
        })
    }
}

/// The sockets systemd passed to this process (socket activation, `sd_listen_fds(3)`), to be
/// taken one by one as std sockets and handed to
/// [`ServerBuilder::from_listener`](crate::ServerBuilder) or `from_socket`.
///
/// See [the module docs](super) for the units that go with it. Sockets not taken are closed
/// (with a warning) when this is dropped.
#[derive(Debug, Default)]
pub struct ListenFds {
    fds: Vec<Inherited>,
}

impl ListenFds {
    /// Takes the descriptors that `LISTEN_FDS` passes to this process, as `sd_listen_fds(1)`
    /// does (the variables are read by the `sd-notify` crate).
    ///
    /// - Nothing is passed (an empty result) without `LISTEN_PID`, or when `LISTEN_PID` is
    ///   another process's: then the descriptors are left alone, neither closed nor changed.
    /// - Otherwise descriptors 3 to `3 + LISTEN_FDS - 1` become this value's, named by
    ///   `LISTEN_FDNAMES` (`"unknown"` without it), and get `FD_CLOEXEC`, so that programs this
    ///   process starts do not inherit them.
    /// - `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the environment in
    ///   every case, so that children do not take them for theirs; a second call finds nothing.
    ///
    /// Call it at the start of `main`, before starting threads: changing the environment while
    /// another thread reads it (C code calling `getenv`) is a data race, the same caveat as
    /// `sd_listen_fds(1)`'s.
    ///
    /// # Errors
    ///
    /// [`ActivationError::Environment`] if `LISTEN_PID` or `LISTEN_FDS` is not a number,
    /// [`ActivationError::NameCount`] if `LISTEN_FDNAMES` names more or fewer descriptors,
    /// [`ActivationError::NotOpen`] if a counted descriptor is not open.
    pub fn from_env() -> Result<ListenFds, ActivationError> {
        let _taking = TAKING.lock();
        let values = VARIABLES.map(env::var_os);
        // Nothing for this process (no LISTEN_PID, another process's, or LISTEN_FDS=0): then
        // LISTEN_FDNAMES is not read, because sd-notify 0.5 would compare another process's
        // names with no descriptors and report a mismatch.
        let passed = match sd_notify::listen_fds() {
            Ok(fds) if fds.len() == 0 => Ok(Vec::new()),
            Ok(_) => sd_notify::listen_fds_with_names().map(Iterator::collect),
            Err(e) => Err(e),
        };
        for variable in VARIABLES {
            env::remove_var(variable);
        }
        let passed = passed.map_err(|source| classify(source, &values))?;
        let fds = passed
            .into_iter()
            .map(|(fd, name)| Inherited {
                fd,
                name,
                // By the protocol, descriptors 3.. are this process's (LISTEN_PID names it)
                // and open (sd-notify just set FD_CLOEXEC on each); nothing else in this
                // process owns them. The variables are removed under `TAKING` before it is
                // released, so no other call here can take these numbers a second time: the
                // contract of `own_inherited`.
                socket: Some(crate::sys::process::own_inherited(fd)),
            })
            .collect::<Vec<_>>();
        if !fds.is_empty() {
            log::info!(target: "socketserver::systemd", "socket activation: {} descriptor(s) passed ({})",
                fds.len(), fds.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", "));
        }
        Ok(ListenFds { fds })
    }

    /// The number of descriptors passed (taken or not).
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether nothing was passed: the process was not socket-activated.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The names of the descriptors passed, in order (`LISTEN_FDNAMES`).
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.fds.iter().map(|i| i.name.as_str())
    }

    /// Takes a listening TCP socket (`ListenStream=` with a port or an address).
    ///
    /// With `Some(name)`, the next one of that name (`FileDescriptorName=`); with `None`, the
    /// first one not taken yet. `Ok(None)` when nothing was passed, or nothing of that name
    /// (or kind) is left.
    ///
    /// # Errors
    ///
    /// [`ActivationError::WrongKind`] if the socket of that name is not a TCP listener, or, with
    /// `None`, if sockets are left but none is one (naming the first);
    /// [`ActivationError::NameNotFound`] if sockets were passed but none has that name;
    /// [`ActivationError::Inspect`] if its type cannot be read.
    pub fn take_tcp(&mut self, name: Option<&str>) -> Result<Option<TcpListener>, ActivationError> {
        let taken = self.take(name, "a TCP listener", |k| *k == SocketKind::TcpListener)?;
        Ok(taken.map(TcpListener::from))
    }

    /// Takes a UDP socket (`ListenDatagram=` with a port or an address); as
    /// [`take_tcp`](Self::take_tcp) otherwise.
    ///
    /// # Errors
    ///
    /// As for [`take_tcp`](Self::take_tcp).
    pub fn take_udp(&mut self, name: Option<&str>) -> Result<Option<UdpSocket>, ActivationError> {
        let taken = self.take(name, "a UDP socket", |k| *k == SocketKind::Udp)?;
        Ok(taken.map(UdpSocket::from))
    }

    /// Takes a listening Unix stream socket (`ListenStream=` with a path, or `@name` for the
    /// abstract namespace: the server reports it as `@name`); as [`take_tcp`](Self::take_tcp)
    /// otherwise.
    ///
    /// # Errors
    ///
    /// As for [`take_tcp`](Self::take_tcp).
    pub fn take_unix_stream(
        &mut self,
        name: Option<&str>,
    ) -> Result<Option<UnixListener>, ActivationError> {
        let taken = self.take(name, "a Unix stream listener", |k| {
            *k == SocketKind::UnixListener
        })?;
        Ok(taken.map(UnixListener::from))
    }

    /// Takes a Unix datagram socket (`ListenDatagram=` with a path or `@name`); as
    /// [`take_tcp`](Self::take_tcp) otherwise.
    ///
    /// # Errors
    ///
    /// As for [`take_tcp`](Self::take_tcp).
    pub fn take_unix_datagram(
        &mut self,
        name: Option<&str>,
    ) -> Result<Option<UnixDatagram>, ActivationError> {
        let taken = self.take(name, "a Unix datagram socket", |k| {
            *k == SocketKind::UnixDatagram
        })?;
        Ok(taken.map(UnixDatagram::from))
    }

    /// Takes a connected stream socket, TCP or Unix: what systemd passes to each instance of an
    /// `Accept=yes` service (named `"connection"`). See [`inetd_stream`](super::inetd_stream),
    /// which also takes inetd's standard input.
    ///
    /// # Errors
    ///
    /// As for [`take_tcp`](Self::take_tcp) (a listener here is the wrong kind: the socket unit
    /// says `Accept=no`).
    pub fn take_connection(
        &mut self,
        name: Option<&str>,
    ) -> Result<Option<InetdConnection>, ActivationError> {
        let wanted = "a connected stream socket (Accept=yes)";
        let connected =
            |k: &SocketKind| matches!(k, SocketKind::TcpConnection | SocketKind::UnixConnection);
        let Some((index, name)) = self.find(name, wanted, connected)? else {
            return Ok(None);
        };
        let entry = &mut self.fds[index];
        match entry.socket.take() {
            Some(socket) => InetdConnection::adopt(socket, entry.fd, name).map(Some),
            None => Ok(None),
        }
    }

    /// Takes the socket [`find`](Self::find) chooses.
    fn take(
        &mut self,
        name: Option<&str>,
        wanted: &'static str,
        accepts: impl Fn(&SocketKind) -> bool,
    ) -> Result<Option<OwnedFd>, ActivationError> {
        let found = self.find(name, wanted, accepts)?;
        Ok(found.and_then(|(index, name)| {
            log::debug!(target: "socketserver::systemd", "taking fd {} ({name:?}) as {wanted}",
                self.fds[index].fd);
            self.fds[index].socket.take()
        }))
    }

    /// The index (and name) of the socket to take: the next of `name`, or the first not taken
    /// that `accepts` its kind.
    fn find(
        &self,
        name: Option<&str>,
        wanted: &'static str,
        accepts: impl Fn(&SocketKind) -> bool,
    ) -> Result<Option<(usize, String)>, ActivationError> {
        if self.fds.is_empty() {
            return Ok(None);
        }
        if let Some(name) = name {
            if !self.fds.iter().any(|i| i.name == name) {
                return Err(ActivationError::NameNotFound {
                    name: name.to_owned(),
                    available: self.names().map(str::to_owned).collect(),
                });
            }
        }
        let mut first_other = None;
        for (index, entry) in self.fds.iter().enumerate() {
            let Some(socket) = &entry.socket else {
                continue;
            };
            if name.is_some_and(|n| n != entry.name) {
                continue;
            }
            let kind = entry.kind(socket.as_fd())?;
            if accepts(&kind) {
                return Ok(Some((index, entry.name.clone())));
            }
            if name.is_some() {
                return Err(wrong(entry, kind, wanted));
            }
            first_other.get_or_insert((entry, kind));
        }
        match first_other {
            Some((entry, kind)) => Err(wrong(entry, kind, wanted)),
            None => Ok(None),
        }
    }
}

fn wrong(entry: &Inherited, found: SocketKind, wanted: &'static str) -> ActivationError {
    ActivationError::WrongKind {
        fd: entry.fd,
        name: entry.name.clone(),
        found,
        wanted,
    }
}

impl Drop for ListenFds {
    /// Closes the sockets not taken, saying so: systemd passed them for a reason.
    fn drop(&mut self) {
        for entry in &self.fds {
            if entry.socket.is_some() {
                log::warn!(target: "socketserver::systemd",
                    "fd {} ({:?}) passed by socket activation was not used; closing it",
                    entry.fd, entry.name);
            }
        }
    }
}

/// Turns an error of `sd_notify::listen_fds_with_names` into ours. `values` are the variables
/// as they were, in the order of [`VARIABLES`].
fn classify(source: io::Error, values: &[Option<OsString>; 3]) -> ActivationError {
    let text = |i: usize| {
        values[i]
            .as_ref()
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if source.raw_os_error().is_some() {
        return ActivationError::NotOpen {
            fds: text(1),
            source,
        };
    }
    // sd-notify 0.5 says which variable in its message ("invalid LISTEN_FDNAMES"...).
    let message = source.to_string();
    if message.contains("LISTEN_FDNAMES") {
        ActivationError::NameCount {
            fds: text(1),
            names: text(2),
        }
    } else if message.contains("LISTEN_PID") {
        ActivationError::Environment {
            variable: "LISTEN_PID",
            value: text(0),
            source,
        }
    } else {
        ActivationError::Environment {
            variable: "LISTEN_FDS",
            value: text(1),
            source,
        }
    }
}
