//! Binding Unix sockets: to a socket file (stale files replaced, the file removed on close), or
//! to a name in Linux's abstract namespace (`@name`: no file at all).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixDatagram as StdUnixDatagram, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::{activate, bind_error, option_error, BindOptions};
use crate::addr::{Address, UnixAddress};
use crate::error::{Error, Result};

/// A socket file this server created, to remove on close if it is still the same file.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl SocketFile {
    fn created(path: &Path) -> SocketFile {
        let identity = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
        SocketFile {
            path: path.to_path_buf(),
            identity,
        }
    }
}

impl Drop for SocketFile {
    /// Removes the file if it is still the one this server created.
    fn drop(&mut self) {
        let Some(identity) = self.identity.take() else {
            return;
        };
        match fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == identity => match fs::remove_file(&self.path) {
                Ok(()) => log::debug!(target: "socketserver::server",
                    "removed socket file {}", self.path.display()),
                Err(e) => log::warn!(target: "socketserver::server",
                    "cannot remove socket file {}: {e}", self.path.display()),
            },
            Ok(_) => log::info!(target: "socketserver::server",
                "socket file {} was replaced by another; leaving it", self.path.display()),
            Err(_) => {}
        }
    }
}

/// Where a Unix server binds, read from what the user passed to `bind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnixName<'a> {
    /// A socket file.
    Path(&'a Path),
    /// A name in Linux's abstract namespace: what follows the `@`.
    Abstract(&'a [u8]),
}

impl<'a> UnixName<'a> {
    /// Reads `path` as systemd's `ListenStream=` does: a leading `@` means the abstract
    /// namespace (`./@name` is a file named `@name`).
    pub(crate) fn of(path: &'a Path) -> UnixName<'a> {
        match path.as_os_str().as_bytes().split_first() {
            Some((b'@', name)) => UnixName::Abstract(name),
            _ => UnixName::Path(path),
        }
    }

    /// The address a server bound to this name reports.
    pub(crate) fn address(self) -> Address {
        Address::Unix(match self {
            UnixName::Path(path) => UnixAddress::Path(path.to_path_buf()),
            UnixName::Abstract(name) => UnixAddress::Abstract(name.to_vec()),
        })
    }
}

/// Checks the path before binding: refuses non-sockets and live sockets, removes stale ones.
fn prepare_unix_path(path: &Path, ty: Type) -> Result<()> {
    let shown = || Address::from(path.to_path_buf());
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(bind_error(shown(), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::PathNotSocket {
            path: path.to_path_buf(),
        });
    }
    let probe = if ty == Type::STREAM {
        StdUnixStream::connect(path).map(drop)
    } else {
        StdUnixDatagram::unbound().and_then(|s| s.connect(path))
    };
    match probe {
        Ok(()) => Err(Error::UnixPathInUse {
            path: path.to_path_buf(),
        }),
        // A live socket of the other type answers EPROTOTYPE: it is in use too.
        Err(e) if e.raw_os_error() == Some(nix::libc::EPROTOTYPE) => Err(Error::UnixPathInUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!(target: "socketserver::server",
                "removing stale unix socket {} (nobody is listening on it)", path.display());
            fs::remove_file(path).map_err(|source| Error::StaleSocket {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(e) => Err(bind_error(shown(), e)),
    }
}

fn invalid(addr: String, reason: &'static str) -> Error {
    Error::InvalidAddress {
        addr,
        source: io::Error::new(io::ErrorKind::InvalidInput, reason),
    }
}

/// Binds a Unix socket of type `ty` at `path`, or in the abstract namespace when `path` starts
/// with `@`. Returns the socket, the address it is bound to, and the socket file to remove on
/// close (none for an abstract name).
pub(crate) fn bind_unix(
    path: &Path,
    ty: Type,
    options: &BindOptions,
) -> Result<(OwnedFd, Address, Option<SocketFile>)> {
    let name = UnixName::of(path);
    let shown = name.address();
    if options.reuse_port {
        return Err(Error::InvalidOption {
            option: "reuse_port",
            reason: "SO_REUSEPORT applies to internet sockets only".into(),
        });
    }
    let sockaddr = match name {
        // Linux would "autobind" a random abstract address, which the server could then not
        // even print.
        UnixName::Path(p) if p.as_os_str().is_empty() => {
            return Err(invalid(
                "\"\"".into(),
                "a Unix socket path must not be empty",
            ))
        }
        UnixName::Abstract([]) => {
            return Err(invalid(
                "@".into(),
                "an abstract socket name must not be empty (write ./@ for a file named @)",
            ))
        }
        UnixName::Abstract(_) if options.socket_mode.is_some() => {
            return Err(Error::InvalidOption {
                option: "socket_mode",
                reason: format!(
                    "{shown} is an abstract socket: it has no file and no permissions \
                     (any process in the network namespace can connect)"
                ),
            })
        }
        UnixName::Path(p) => {
            prepare_unix_path(p, ty)?;
            SockAddr::unix(p)
        }
        // socket2 reads a leading NUL byte as the abstract namespace, without a terminator.
        UnixName::Abstract(n) => SockAddr::unix(OsStr::from_bytes(&[b"\0", n].concat())),
    }
    .map_err(|source| Error::InvalidAddress {
        addr: shown.to_string(),
        source,
    })?;
    let socket = Socket::new(Domain::UNIX, ty, None).map_err(|e| bind_error(shown.clone(), e))?;
    socket.bind(&sockaddr).map_err(|e| match (name, e.kind()) {
        (UnixName::Path(p), io::ErrorKind::AddrInUse) => Error::UnixPathInUse {
            path: p.to_path_buf(),
        },
        _ => bind_error(shown.clone(), e),
    })?;
    let file = match name {
        UnixName::Path(p) => {
            let file = SocketFile::created(p);
            if let Some(mode) = options.socket_mode {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(p, fs::Permissions::from_mode(mode))
                    .map_err(option_error("socket_mode", &shown))?;
            }
            Some(file)
        }
        UnixName::Abstract(_) => None,
    };
    activate(&socket, ty, options, &shown)?;
    Ok((socket.into(), shown, file))
}

/// The address a Unix socket is bound to.
pub(crate) fn unix_local_address(addr: io::Result<std::os::unix::net::SocketAddr>) -> Address {
    addr.map(|a| Address::from_unix(&a))
        .unwrap_or(Address::Unix(UnixAddress::Unnamed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_at_names_the_abstract_namespace() {
        assert_eq!(UnixName::of(Path::new("@web")), UnixName::Abstract(b"web"));
        assert_eq!(
            UnixName::of(Path::new("./@web")),
            UnixName::Path(Path::new("./@web"))
        );
        assert_eq!(
            UnixName::of(Path::new("/run/@web")),
            UnixName::Path(Path::new("/run/@web"))
        );
        assert_eq!(
            UnixName::of(Path::new("@web")).address().to_string(),
            "@web"
        );
    }
}
