//! TLS over the stream transports (TCP and Unix stream), with rustls.
//!
//! Give the builder a [`TlsConfig`] ([`ServerBuilder::tls`](crate::ServerBuilder::tls)) and
//! every connection is TLS: its worker runs the handshake (never the serving loop), then the
//! handler reads and writes plaintext through the same `rfile` and `wfile` as on a plain
//! connection, and sees what was negotiated in [`StreamRequest::tls`](crate::StreamRequest::tls)
//! ([`TlsInfo`]: the SNI name, the ALPN protocol, the client's certificates, the version and
//! cipher suite). The HTTP layer works unchanged over it, keep-alive and upgrades included.
//!
//! ```no_run
//! # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
//! use socketserver::tls::TlsConfig;
//!
//! struct Hello;
//! # impl Handler for Hello { type State = (); fn new(_: &ServerContext) -> Self { Hello } }
//! impl StreamRequestHandler for Hello {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         let name = request.tls().and_then(|tls| tls.server_name()).unwrap_or("?");
//!         std::io::Write::write_all(&mut request.wfile, format!("hello, {name}\n").as_bytes())?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The certificate chain (leaf first) and its private key, PEM.
//! let tls = TlsConfig::from_pem_files("/etc/hello/chain.pem", "/etc/hello/key.pem")?;
//! let mut server = TcpServer::<Hello>::builder()
//!     .tls(tls.clone())
//!     .read_timeout(Some(std::time::Duration::from_secs(10)))
//!     .bind("127.0.0.1:8443")?;
//! server.serve_forever()?;
//! # Ok(())
//! # }
//! ```
//!
//! (`no_run`: it reads certificate files that a test cannot assume exist; `tests/tls.rs`
//! runs the same with certificates it generates.) Try it with
//! `openssl s_client -connect 127.0.0.1:8443 -servername example.test`, or
//! `curl --cacert ca.pem https://localhost:8443/` against an HTTP handler.
//!
//! # The handshake and its deadline
//!
//! The handshake runs on the connection's worker (thread, pool worker or child), after the
//! PROXY protocol header if one is required, under a **total** deadline:
//! [`ServerBuilder::tls_handshake_timeout`](crate::ServerBuilder::tls_handshake_timeout),
//! default [`DEFAULT_HANDSHAKE_TIMEOUT`] (10 s) (rustls has no handshake timeout of its own;
//! a per-read timeout would be renewed by every byte).
//!
//! Where the strategy parks connections ([`Serial`](crate::Serial), [`Pool`](crate::Pool),
//! and [`Threading`](crate::Threading) with `park_idle(true)`; see
//! [`Strategy::parks_idle`](crate::Strategy::parks_idle)), a handshake that waits for the
//! client's next flight waits parked, as an idle keep-alive connection does, and the worker
//! goes on to other connections: a client that connects and sends nothing, or trickles its
//! ClientHello a byte at a time, holds no worker, and is closed at the deadline. On the other
//! strategies it holds its thread or child for at most the deadline. Either way a worker never
//! waits for the client's bytes while others are ready. A connection whose handshake waited
//! parked is one more job for the strategy (its [`Activity`](crate::Activity) counts jobs);
//! the server's [`Stats`](crate::Stats) count its requests only.
//!
//! A handshake that fails or times out never reaches the handler: the client gets a TLS alert
//! when rustls has one to send (a plaintext client gets the alert's bytes, then the close),
//! the connection is closed, and it is counted by reason in [`TlsStats`]
//! ([`TlsConfig::stats`]) and in [`Stats::rejected`](crate::Stats::rejected). Failures are
//! logged at info under `socketserver::tls`, at most 20 lines a second.
//!
//! # Reloading the certificate
//!
//! [`TlsConfig::reload`] reads the files again: connections accepted afterwards use the new
//! certificate, connections already open keep theirs. If the new files do not load, the old
//! certificate stays and the error is returned for the caller to log. No lock is held across
//! a handshake: each connection takes the current configuration (an `Arc`) in a moment.
//! Clones of a `TlsConfig` share the files, the current certificate and the counters, so keep
//! one clone to reload what the server uses. In the process model
//! ([`Prefork`](crate::prefork::Prefork)), call it from `on_reload` (SIGHUP): the supervisor
//! reloads, then the replacement workers it forks serve the new certificate.
//!
//! # One owner per connection
//!
//! A TLS connection's state (rustls' `ServerConnection`) belongs to the thread serving the
//! connection: reads and writes borrow it for the length of the call, never behind a mutex
//! (a reader blocked in `read` holding a mutex a writer waits for is tiny_http #144's
//! deadlock). So a TLS connection cannot be written from another thread: a handler that needs
//! that (a chat broadcast) hands its messages to the connection's own thread (see
//! `examples/websocket.rs`). [`StreamRequest::connection`](crate::StreamRequest::connection)
//! and [`Connection::try_clone`](crate::Connection::try_clone) give the raw socket, for its
//! addresses, options and timeouts: writing to it would bypass TLS.
//!
//! # End of file
//!
//! A client that closes its connection without TLS's `close_notify` reads as end-of-file, as
//! Python's `ssl` module does by default (`suppress_ragged_eofs=True`): protocols that need
//! to tell a cut-short message from a whole one frame their messages (HTTP does, with
//! `Content-Length`). The server sends `close_notify` when it ends a connection.
//!
//! # Limits
//!
//! | bound | default | option |
//! |---|---|---|
//! | time from the worker's start on a connection to the handshake's end | 10 s | [`ServerBuilder::tls_handshake_timeout`](crate::ServerBuilder::tls_handshake_timeout) |
//! | bytes rustls holds per connection: a record being received (up to 16 KiB plus overhead), decrypted plaintext not yet read (16 KiB), encrypted bytes not yet sent (64 KiB, rustls' default limits) | about 100 KiB | none |

mod config;
mod handshake;
mod session;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use config::{ClientAuth, TlsConfig, TlsConfigBuilder, TlsError};
#[cfg(test)]
pub(crate) use handshake::accept;
pub(crate) use handshake::{Failure, Handshake, Step};
pub(crate) use session::Session;

use rustls_pki_types::CertificateDer;

/// The default of [`ServerBuilder::tls_handshake_timeout`](crate::ServerBuilder::tls_handshake_timeout):
/// 10 s for the whole handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a TLS handshake negotiated, as the handler sees it through
/// [`StreamRequest::tls`](crate::StreamRequest::tls).
#[derive(Clone)]
pub struct TlsInfo {
    server_name: Option<String>,
    alpn: Option<Vec<u8>>,
    peer_certificates: Vec<CertificateDer<'static>>,
    version: &'static str,
    cipher_suite: String,
}

impl TlsInfo {
    /// The name the client asked for with SNI (`server_name` in Python's `ssl`), if it sent one.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The protocol chosen by ALPN (Python: `selected_alpn_protocol()`), from those given to
    /// [`TlsConfigBuilder::alpn`], if the client offered one of them.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// The client's certificate chain, leaf first, in DER (Python: `getpeercert(True)` for the
    /// leaf), when client authentication is on and the client sent one; verified against the
    /// configured CA bundle. Empty otherwise.
    pub fn peer_certificates(&self) -> &[CertificateDer<'static>] {
        &self.peer_certificates
    }

    /// The protocol version, such as `"TLSv1.3"` (Python's `version()` spelling).
    pub fn version(&self) -> &str {
        self.version
    }

    /// The cipher suite, as rustls names it (such as `"TLS13_AES_256_GCM_SHA384"`).
    pub fn cipher_suite(&self) -> &str {
        &self.cipher_suite
    }
}

impl fmt::Debug for TlsInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsInfo")
            .field("server_name", &self.server_name)
            .field("alpn", &self.alpn.as_deref().map(String::from_utf8_lossy))
            .field("peer_certificates", &self.peer_certificates.len())
            .field("version", &self.version)
            .field("cipher_suite", &self.cipher_suite)
            .finish()
    }
}

/// Handshakes of a [`TlsConfig`] (and its clones), counted by outcome, from
/// [`TlsConfig::stats`]. Counted in the process that ran them: under `Forking` or
/// [`Prefork`](crate::prefork::Prefork), each child counts its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsStats {
    /// Handshakes completed: the handler ran.
    pub handshakes: u64,
    /// Handshakes not finished by the deadline (a client that sent nothing, or too slowly).
    pub timed_out: u64,
    /// No protocol version, cipher suite or ALPN protocol both sides support.
    pub no_shared_cipher_or_protocol: u64,
    /// A certificate was refused: the client refused ours (an unknown CA, a wrong name, an
    /// expired one), or ours refused the client's (or it sent none where one is required).
    pub bad_certificate: u64,
    /// The client did not speak TLS (plaintext on the TLS port).
    pub not_tls: u64,
    /// The client closed the connection before the handshake ended, without an alert.
    pub closed: u64,
    /// Anything else: a protocol error, a failed socket.
    pub other: u64,
}

/// Why a handshake did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    TimedOut,
    NoShared,
    BadCertificate,
    NotTls,
    Closed,
    Other,
}

impl Reason {
    fn describe(self) -> &'static str {
        match self {
            Reason::TimedOut => "timed out",
            Reason::NoShared => "no shared protocol version, cipher suite or ALPN protocol",
            Reason::BadCertificate => "certificate refused",
            Reason::NotTls => "not TLS",
            Reason::Closed => "closed by the client",
            Reason::Other => "failed",
        }
    }
}

/// The counters behind [`TlsStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    handshakes: AtomicU64,
    timed_out: AtomicU64,
    no_shared: AtomicU64,
    bad_certificate: AtomicU64,
    not_tls: AtomicU64,
    closed: AtomicU64,
    other: AtomicU64,
}

impl Counters {
    pub(crate) fn succeeded(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, reason: Reason) {
        let counter = match reason {
            Reason::TimedOut => &self.timed_out,
            Reason::NoShared => &self.no_shared,
            Reason::BadCertificate => &self.bad_certificate,
            Reason::NotTls => &self.not_tls,
            Reason::Closed => &self.closed,
            Reason::Other => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> TlsStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TlsStats {
            handshakes: get(&self.handshakes),
            timed_out: get(&self.timed_out),
            no_shared_cipher_or_protocol: get(&self.no_shared),
            bad_certificate: get(&self.bad_certificate),
            not_tls: get(&self.not_tls),
            closed: get(&self.closed),
            other: get(&self.other),
        }
    }
}
