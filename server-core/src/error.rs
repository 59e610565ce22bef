//! The library's error types.
//!
//! [`Error`] is what binding, serving and closing a server can fail with; every variant names the
//! address or path involved and keeps the operating system's error as its `source`.
//! [`RequestError`] is what a single request can fail with; it is handed to the handler's
//! `handle_error` hook, and the server keeps serving.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::addr::Address;

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        if source.is_some() {
            write!(f, "\n\nCaused by:")?;
        }
        while let Some(cause) = source {
            write!(f, "\n    {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A boxed error, the error type request handlers return.
///
/// Any error that is `Send + Sync + 'static` converts into it with `?`, as do `&str` and `String`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors from creating, running or closing a server.
///
/// Every variant says what failed and where (the address or the socket path). Variants that wrap an
/// operating system error expose it through [`std::error::Error::source`].
///
/// Its `Debug` form is the message followed by its causes, as `anyhow` prints, so that
/// `fn main() -> Result<(), socketserver::Error>` ends with a readable line such as
/// `Error: address 127.0.0.1:9000 is already in use` and the operating system's reason, not a
/// dump of the variant's fields. Match on the variant to reach the fields.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address could not be parsed or resolved, or resolved to nothing.
    #[error("invalid address {addr}: {source}")]
    InvalidAddress {
        /// The address as the caller gave it.
        addr: String,
        /// Why it is invalid.
        source: io::Error,
    },
    /// Another socket is already bound to this address (`EADDRINUSE`).
    #[error("address {addr} is already in use")]
    AddrInUse {
        /// The address that was asked for.
        addr: Address,
        /// The operating system's error.
        source: io::Error,
    },
    /// The address does not belong to this machine (`EADDRNOTAVAIL`).
    #[error("address {addr} is not available on this machine")]
    AddrNotAvailable {
        /// The address that was asked for.
        addr: Address,
        /// The operating system's error.
        source: io::Error,
    },
    /// Binding needs a privilege the process lacks (`EACCES`), such as a port below 1024 or a
    /// directory it may not write to.
    #[error("permission denied binding {addr}")]
    PermissionDenied {
        /// The address or path that was asked for.
        addr: Address,
        /// The operating system's error.
        source: io::Error,
    },
    /// A live server already listens on this Unix socket path: connecting to it succeeded.
    #[error("a server is already listening on unix socket {}", path.display())]
    UnixPathInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// The path exists and is not a socket; it is left alone rather than deleted.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    PathNotSocket {
        /// The path.
        path: PathBuf,
    },
    /// A stale Unix socket file (nobody listening) was found but could not be removed.
    #[error("cannot remove stale unix socket {}: {source}", path.display())]
    StaleSocket {
        /// The socket path.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Any other failure to create or bind the socket.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address or path that was asked for.
        addr: Address,
        /// The operating system's error.
        source: io::Error,
    },
    /// `listen(2)` failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The bound address.
        addr: Address,
        /// The operating system's error.
        source: io::Error,
    },
    /// Setting a socket option failed.
    #[error("cannot set {option} on {addr}: {source}")]
    SocketOption {
        /// The option, by its `SO_*` or `TCP_*` name.
        option: &'static str,
        /// The address being bound.
        addr: Address,
        /// The operating system's error.
        source: io::Error,
    },
    /// A builder option has a value the server cannot use, or does not apply to this transport.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The builder method's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket handed to `from_listener`/`from_socket` is of the wrong kind for this server.
    #[error("cannot adopt socket for a {transport} server: {reason}")]
    WrongSocket {
        /// The transport of the server, such as `"tcp"`.
        transport: &'static str,
        /// What is wrong with the socket.
        reason: String,
    },
    /// The serving loop failed in a way it cannot recover from (for example `poll(2)` failed).
    #[error("serving on {addr} failed: {source}")]
    Serve {
        /// The server's address.
        addr: Address,
        /// The operating system's error.
        source: io::Error,
    },
    /// Installing the SIGINT/SIGTERM handlers failed.
    #[error("cannot install signal handlers: {source}")]
    Signal {
        /// The operating system's error.
        source: io::Error,
    },
    /// Starting a worker thread or process failed.
    #[error("cannot start {what}: {source}")]
    Spawn {
        /// What could not be started, such as `"pool worker thread"`.
        what: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

/// The stage of a request handler's lifecycle in which something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Making the handler (`Handler::new`).
    New,
    /// `setup`.
    Setup,
    /// `handle`.
    Handle,
    /// `finish`.
    Finish,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::New => "new",
            Stage::Setup => "setup",
            Stage::Handle => "handle",
            Stage::Finish => "finish",
        })
    }
}

/// Why one request failed; passed to the handler's `handle_error` hook.
///
/// The server keeps serving after every one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A handler method returned an error.
    #[error("request from {client}: {stage} failed: {source}")]
    Handler {
        /// The client's address.
        client: Address,
        /// Which handler method failed.
        stage: Stage,
        /// The error it returned.
        source: BoxError,
    },
    /// A handler method panicked; the panic was caught.
    #[error("request from {client}: {stage} panicked: {message}")]
    Panic {
        /// The client's address.
        client: Address,
        /// Which handler method panicked.
        stage: Stage,
        /// The panic message, when it was a string.
        message: String,
    },
    /// A datagram was larger than `max_packet_size`; it was dropped, not passed on truncated.
    #[error("datagram from {client} dropped: larger than max_packet_size ({capacity} bytes)")]
    Truncated {
        /// The sender's address.
        client: Address,
        /// `max_packet_size`.
        capacity: usize,
    },
    /// The reply to a datagram could not be sent.
    #[error("cannot send reply to {client}: {source}")]
    Reply {
        /// The sender's address.
        client: Address,
        /// The operating system's error.
        source: io::Error,
    },
    /// A server that requires a PROXY protocol header was connected to from an address that is
    /// not one of its [trusted proxies](crate::ServerBuilder::trusted_proxies): the connection
    /// was closed before any handler ran, and counted in
    /// [`Stats::rejected`](crate::Stats::rejected).
    #[error(
        "connection from {peer} refused: not a trusted proxy (the PROXY protocol is required)"
    )]
    UntrustedProxy {
        /// The address the connection came from.
        peer: Address,
    },
    /// A trusted proxy's connection did not start with an acceptable PROXY protocol header
    /// (missing, malformed, cut short or late): it was closed before any handler ran, and
    /// counted in [`Stats::rejected`](crate::Stats::rejected).
    #[error("connection from proxy {peer}: {source}")]
    ProxyHeader {
        /// The proxy's address.
        peer: Address,
        /// What was wrong with the header.
        source: crate::proxy::ProxyError,
    },
    /// The sender of a Unix datagram did not bind a path, so the reply has nowhere to go.
    #[error("cannot reply to an unbound unix datagram client ({len} byte reply dropped)")]
    UnboundClient {
        /// The reply's length.
        len: usize,
    },
}

impl RequestError {
    /// The client the failed request came from.
    pub fn client_address(&self) -> Address {
        match self {
            RequestError::Handler { client, .. }
            | RequestError::Panic { client, .. }
            | RequestError::Truncated { client, .. }
            | RequestError::Reply { client, .. } => client.clone(),
            RequestError::UntrustedProxy { peer } | RequestError::ProxyHeader { peer, .. } => {
                peer.clone()
            }
            RequestError::UnboundClient { .. } => Address::Unix(crate::addr::UnixAddress::Unnamed),
        }
    }
}

/// A `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The text of a panic payload, when it has one: what [`RequestError::Panic`] reports.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    }
}
