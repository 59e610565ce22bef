//! The PROXY protocol (HAProxy's, versions 1 and 2): the real client's address behind a load
//! balancer.
//!
//! Behind HAProxy, nginx's `stream` proxy or a cloud load balancer, every connection comes from
//! the proxy, so every [`client_address`](crate::StreamRequest::client_address) would be the
//! proxy's. With the PROXY protocol the proxy starts each connection with a short header that
//! names the client it is relaying; the server reads that header before anything else and the
//! handler sees the real client.
//!
//! Turn it on per server with [`ServerBuilder::proxy_protocol`](crate::ServerBuilder::proxy_protocol):
//!
//! | option | default | what it does |
//! |---|---|---|
//! | [`proxy_protocol`](crate::ServerBuilder::proxy_protocol) | [`ProxyProtocol::Off`] | `V1`, `V2` or `Any`: every connection must start with such a header |
//! | [`trusted_proxies`](crate::ServerBuilder::trusted_proxies) | `127.0.0.0/8`, `::1` | the addresses a header is accepted from; Unix-socket peers are always trusted |
//! | [`proxy_header_timeout`](crate::ServerBuilder::proxy_header_timeout) | [`DEFAULT_PROXY_HEADER_TIMEOUT`] (5 s) | how long a connection may take to send its whole header |
//!
//! What the handler then sees:
//!
//! - [`StreamRequest::client_address`](crate::StreamRequest::client_address) is the client the
//!   proxy saw (its `source` address in the header);
//! - [`StreamRequest::proxy`](crate::StreamRequest::proxy) is the [`ProxyInfo`]: the proxy's
//!   own address, the header's version, the address the client connected to, and the TLVs a
//!   handler may want (ALPN, authority, unique id);
//! - the bytes after the header, untouched, in `rfile`.
//!
//! A `LOCAL` header (a proxy's own health check) and an `UNKNOWN` or unspecified address family
//! keep the proxy's address as the client address: there is no other client to name.
//!
//! # Why the header is required, never detected
//!
//! When the option is on, every connection must start with a header; when it is off, a header is
//! just bytes for the handler. The server never guesses from the first bytes, as the
//! specification demands: if it did, any client could write `PROXY TCP4 1.2.3.4 ...` and be
//! believed. For the same reason a header is only accepted from a
//! [trusted proxy](crate::ServerBuilder::trusted_proxies); a connection from anyone else is
//! closed before any handler runs.
//!
//! # Refusals
//!
//! A connection from an address that is not a trusted proxy, and one from a trusted proxy whose
//! header is missing, malformed, cut short or late, is closed without calling the handler. It is
//! counted in [`Stats::rejected`](crate::Stats::rejected) and reported to `handle_error` as
//! [`RequestError::UntrustedProxy`](crate::RequestError::UntrustedProxy) or
//! [`RequestError::ProxyHeader`](crate::RequestError::ProxyHeader), which name the peer and
//! what was wrong.
//!
//! # How the header is read
//!
//! On the worker that serves the connection (never on the serving loop, so one slow proxy does
//! not hold up the others), for every strategy and in a forked child. The server peeks at the
//! waiting bytes (`recv(2)` with `MSG_PEEK`) to find where the header ends and then reads
//! exactly that many, so the bytes after it (the application's, or a TLS ClientHello) stay in
//! the socket for the handler. The whole header must arrive within
//! [`proxy_header_timeout`](crate::ServerBuilder::proxy_header_timeout): a client that connects
//! and sends nothing, or trickles its header a byte at a time, holds a worker at most that long,
//! and none at all where the strategy parks connections
//! ([`Strategy::parks_idle`](crate::Strategy::parks_idle)): there a header that has not
//! arrived waits parked, as a TLS handshake does, and a stop still reads it to the end
//! within the grace period (except on `Serial`, whose closing never waits).
//! A v1 header is at most 107 bytes; a v2 header at most 16 + 65,535 bytes, as its length field
//! allows. The header is parsed with the [`ppp`](https://docs.rs/ppp) crate.
//!
//! Stream transports only (TCP and Unix stream): a datagram server refuses the options with
//! [`Error::InvalidOption`](crate::Error::InvalidOption) when it binds.
//!
//! # Example
//!
//! A header written by hand, as a proxy would:
//!
//! ```
//! # use std::io::{Read, Write};
//! use socketserver::proxy::ProxyProtocol;
//! use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
//!
//! struct WhoAmI;
//! impl Handler for WhoAmI {
//!     type State = ();
//!     fn new(_: &ServerContext) -> Self { WhoAmI }
//! }
//! impl StreamRequestHandler for WhoAmI {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         let mut line = String::new();
//!         std::io::BufRead::read_line(&mut request.rfile, &mut line)?;
//!         let via = request.proxy().map(|p| p.peer().to_string()).unwrap_or_default();
//!         write!(request.wfile, "{} via {via} said {line}", request.client_address())?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = TcpServer::<WhoAmI>::builder()
//!     .proxy_protocol(ProxyProtocol::V1)
//!     .read_timeout(Some(std::time::Duration::from_secs(5)))
//!     .bind("127.0.0.1:0")?;
//! let addr = server.server_address().as_inet().ok_or("not inet")?;
//!
//! // The proxy (here: us, from 127.0.0.1, trusted by default) writes the header, then relays.
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.write_all(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 80\r\nhello\n")?;
//! let _served = server.handle_request()?;
//!
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert!(reply.starts_with("203.0.113.7:51000 via 127.0.0.1:"), "{reply}");
//! assert!(reply.ends_with(" said hello\n"));
//! # Ok(())
//! # }
//! ```
//!
//! # Configuring the proxy
//!
//! HAProxy (`send-proxy` for v1, `send-proxy-v2` for v2; `check` health checks send a `LOCAL`
//! header with `check-send-proxy`):
//!
//! ```text
//! backend app
//!     balance roundrobin
//!     server app1 127.0.0.1:9000 send-proxy-v2 check check-send-proxy inter 2s
//!     server app2 127.0.0.1:9001 send-proxy-v2 check check-send-proxy inter 2s
//! ```
//!
//! nginx (`stream` module; nginx sends v1):
//!
//! ```text
//! stream {
//!     upstream app { server 127.0.0.1:9000; server 127.0.0.1:9001; }
//!     server {
//!         listen 8000;
//!         proxy_pass app;
//!         proxy_protocol on;
//!     }
//! }
//! ```
//!
//! On the server, trust the proxies' addresses (the default trusts loopback only):
//!
//! ```
//! # use socketserver::proxy::{IpNet, ProxyProtocol};
//! # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
//! # struct App;
//! # impl Handler for App { type State = (); fn new(_: &ServerContext) -> Self { App } }
//! # impl StreamRequestHandler for App {
//! #     fn handle(&mut self, _: &mut StreamRequest<'_>) -> HandleResult { Ok(()) }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TcpServer::<App>::builder()
//!     .proxy_protocol(ProxyProtocol::Any)
//!     .trusted_proxies(["10.0.0.0/8".parse::<IpNet>()?, "127.0.0.1/32".parse()?])
//!     .bind("127.0.0.1:0")?;
//! # Ok(())
//! # }
//! ```

mod header;
mod read;
mod trust;

use std::fmt;
use std::time::Duration;

use crate::addr::Address;

pub use ipnet::IpNet;

pub(crate) use read::HeaderRead;
pub(crate) use trust::ProxySettings;

#[cfg(fuzzing)]
pub use read::fuzz_header;

/// The default of [`ServerBuilder::proxy_header_timeout`](crate::ServerBuilder::proxy_header_timeout):
/// five seconds, long for a proxy (which sends its header with the connection's first
/// packet), short enough that clients which connect and send nothing cannot hold workers for
/// long (pires/go-proxyproto #65).
pub const DEFAULT_PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a server's connections start with a PROXY protocol header, and which version.
///
/// Anything but [`Off`](Self::Off) makes the header required: a connection without one is
/// refused. The version is never guessed: see [the module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyProtocol {
    /// No header: the connection's bytes are the application's (the default).
    #[default]
    Off,
    /// Version 1, the text line (`PROXY TCP4 ...\r\n`): nginx's `proxy_protocol on;`,
    /// HAProxy's `send-proxy`, `curl --haproxy-protocol`.
    V1,
    /// Version 2, the binary header: HAProxy's `send-proxy-v2`, most cloud load balancers.
    V2,
    /// Either version, told apart by its signature (a header is still required).
    Any,
}

impl ProxyProtocol {
    /// Whether a header of `version` is accepted.
    pub(crate) fn accepts(self, version: ProxyVersion) -> bool {
        matches!(
            (self, version),
            (ProxyProtocol::Any, _)
                | (ProxyProtocol::V1, ProxyVersion::V1)
                | (ProxyProtocol::V2, ProxyVersion::V2)
        )
    }
}

impl fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
            ProxyProtocol::Any => "v1 or v2",
        })
    }
}

/// The version of a PROXY protocol header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyVersion {
    /// The text version.
    V1,
    /// The binary version.
    V2,
}

impl fmt::Display for ProxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        })
    }
}

/// The v2 TLV type of the ALPN protocol the client negotiated with the proxy (`PP2_TYPE_ALPN`).
pub const TLV_ALPN: u8 = 0x01;
/// The v2 TLV type of the host name the client asked for (`PP2_TYPE_AUTHORITY`, often SNI).
pub const TLV_AUTHORITY: u8 = 0x02;
/// The v2 TLV type of the proxy's unique id for the connection (`PP2_TYPE_UNIQUE_ID`).
pub const TLV_UNIQUE_ID: u8 = 0x05;

/// What a PROXY protocol header said about a connection, as a handler sees it through
/// [`StreamRequest::proxy`](crate::StreamRequest::proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInfo {
    pub(crate) peer: Address,
    pub(crate) version: ProxyVersion,
    pub(crate) local: bool,
    pub(crate) source: Option<Address>,
    pub(crate) destination: Option<Address>,
    pub(crate) tlvs: Vec<(u8, Vec<u8>)>,
}

impl ProxyInfo {
    /// The proxy's own address: the other end of the socket.
    pub fn peer(&self) -> &Address {
        &self.peer
    }

    /// The header's version.
    pub fn version(&self) -> ProxyVersion {
        self.version
    }

    /// Whether the header was a v2 `LOCAL` command: a connection the proxy made on its own
    /// behalf (a health check), not for a client. The client address is then the proxy's.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The client the proxy relayed, as the header names it; `None` for `LOCAL` headers and
    /// for the `UNKNOWN` (v1) and unspecified (v2) address families, where the client address
    /// the handler sees is the proxy's own.
    pub fn source(&self) -> Option<&Address> {
        self.source.as_ref()
    }

    /// The address the client connected to (the proxy's front end), when the header names it.
    pub fn destination(&self) -> Option<&Address> {
        self.destination.as_ref()
    }

    /// The application protocol the client negotiated with the proxy over TLS (v2 TLV
    /// [`TLV_ALPN`]), such as `b"h2"`.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.tlv(TLV_ALPN)
    }

    /// The host name the client asked the proxy for (v2 TLV [`TLV_AUTHORITY`], usually the
    /// TLS SNI), when it is UTF-8.
    pub fn authority(&self) -> Option<&str> {
        self.tlv(TLV_AUTHORITY)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The proxy's unique id for this connection (v2 TLV [`TLV_UNIQUE_ID`], HAProxy's
    /// `unique-id-format`), for joining its logs with the server's.
    pub fn unique_id(&self) -> Option<&[u8]> {
        self.tlv(TLV_UNIQUE_ID)
    }

    /// The value of the first v2 TLV of type `kind`.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_slice())
    }

    /// Every v2 TLV in the header, in order, as (type, value).
    pub fn tlvs(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.tlvs.iter().map(|(k, v)| (*k, v.as_slice()))
    }

    /// The client address handlers see: the header's source, or the proxy's own address for
    /// `LOCAL` and unknown families.
    pub(crate) fn client(&self) -> &Address {
        self.source.as_ref().unwrap_or(&self.peer)
    }
}

/// Why a PROXY protocol header from a trusted proxy was not accepted
/// ([`RequestError::ProxyHeader`](crate::RequestError::ProxyHeader)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The whole header did not arrive within `proxy_header_timeout`.
    #[error("no complete PROXY header within {timeout:?} ({received} bytes received)")]
    Timeout {
        /// `proxy_header_timeout`.
        timeout: Duration,
        /// The bytes of the header received by then.
        received: usize,
    },
    /// The connection ended before the header did.
    #[error("connection closed before the PROXY header ended ({received} bytes received)")]
    Closed {
        /// The bytes of the header received.
        received: usize,
    },
    /// The connection does not start with a header of an accepted version.
    #[error("expected a PROXY protocol {expected} header, got {got:?}")]
    NotAHeader {
        /// The versions the server accepts.
        expected: ProxyProtocol,
        /// The first bytes received (at most 16).
        got: String,
    },
    /// A v1 header with no `\r\n` within its 107 bytes.
    #[error("PROXY v1 header longer than 107 bytes")]
    TooLong,
    /// The header has the right signature but does not parse.
    #[error("malformed PROXY {version} header: {reason}")]
    Malformed {
        /// The header's version.
        version: ProxyVersion,
        /// What the parser found wrong.
        reason: String,
    },
    /// Reading the header failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;
