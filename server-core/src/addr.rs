//! Socket addresses, for every transport: an internet address or a Unix socket address.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The address of a server or a client, whatever the transport.
///
/// Python's `server_address` and `client_address` are a `(host, port)` tuple for internet sockets
/// and a path string for Unix sockets; here they are one type, so a handler written once serves
/// TCP and Unix stream sockets (or UDP and Unix datagram sockets) alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// An IPv4 or IPv6 address with a port.
    Inet(SocketAddr),
    /// A Unix domain socket address.
    Unix(UnixAddress),
}

/// The address of a Unix domain socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnixAddress {
    /// A socket bound to a path in the file system.
    Path(PathBuf),
    /// A Linux abstract socket name (shown with a leading `@`).
    Abstract(Vec<u8>),
    /// A socket that is not bound to any name: a connected stream client that did not bind, or a
    /// datagram client that cannot be answered.
    Unnamed,
}

impl Address {
    /// The internet address, if this is one.
    pub fn as_inet(&self) -> Option<SocketAddr> {
        match self {
            Address::Inet(addr) => Some(*addr),
            Address::Unix(_) => None,
        }
    }

    /// The socket path, if this is a Unix socket bound to a path.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            Address::Unix(UnixAddress::Path(path)) => Some(path),
            _ => None,
        }
    }

    pub(crate) fn from_unix(addr: &std::os::unix::net::SocketAddr) -> Address {
        use std::os::linux::net::SocketAddrExt;
        Address::Unix(if let Some(path) = addr.as_pathname() {
            UnixAddress::Path(path.to_path_buf())
        } else if let Some(name) = addr.as_abstract_name() {
            UnixAddress::Abstract(name.to_vec())
        } else {
            UnixAddress::Unnamed
        })
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Inet(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Self {
        Address::Unix(UnixAddress::Path(path))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Inet(addr) => addr.fmt(f),
            Address::Unix(unix) => unix.fmt(f),
        }
    }
}

impl fmt::Display for UnixAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnixAddress::Path(path) => path.display().fmt(f),
            UnixAddress::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
            UnixAddress::Unnamed => f.write_str("(unnamed)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_what_users_type() {
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(Address::from(v6).to_string(), "[::1]:8080");
        assert_eq!(
            Address::from(PathBuf::from("/tmp/s.sock")).to_string(),
            "/tmp/s.sock"
        );
        assert_eq!(
            Address::Unix(UnixAddress::Abstract(b"x".to_vec())).to_string(),
            "@x"
        );
        assert_eq!(Address::Unix(UnixAddress::Unnamed).to_string(), "(unnamed)");
    }
}
