//! The edge: what runs between `accept` and the handler, on the worker that serves the
//! connection (never on the serving loop): reading the PROXY protocol header
//! ([`crate::proxy`]), then the TLS handshake ([`crate::tls`]), both driven by the pipeline's
//! `Open::proceed` (parked while they wait for the client, where the server parks). Also the
//! builder options that configure them.

use std::time::Duration;

use crate::addr::Address;
use crate::error::{Error, RequestError, Result};
use crate::handler::Handler;
use crate::proxy::{self, IpNet, ProxyProtocol};
#[cfg(feature = "tls")]
use crate::report::{say_limited, Limit};
use crate::request::Connection;
use crate::server::{RequestOptions, ServerBuilder, ServerContext};
use crate::strategy::Strategy;
use crate::transport::Transport;

impl<T: Transport, H: Handler, S: Strategy> ServerBuilder<T, H, S> {
    /// Requires every connection to start with a PROXY protocol header of this version, from
    /// a [trusted proxy](Self::trusted_proxies), and shows handlers the client it names
    /// (HAProxy's `send-proxy`/`send-proxy-v2`, nginx's `proxy_protocol on;`). Default:
    /// [`ProxyProtocol::Off`]. See [the `proxy` module](crate::proxy).
    ///
    /// A connection from an untrusted address, or whose header is missing, malformed or late
    /// ([`proxy_header_timeout`](Self::proxy_header_timeout)), is closed without calling the
    /// handler, counted in [`Stats::rejected`](crate::Stats::rejected) and reported to
    /// `handle_error`.
    ///
    /// Stream transports only: on a datagram server it is an [`Error::InvalidOption`] when
    /// binding.
    #[doc(alias = "send-proxy")]
    pub fn proxy_protocol(mut self, protocol: ProxyProtocol) -> Self {
        self.request.proxy.protocol = protocol;
        self
    }

    /// The addresses a PROXY protocol header is accepted from, as CIDR ranges (replacing the
    /// default). Default: loopback only, `127.0.0.0/8` and `::1`. Peers on a Unix socket are
    /// always trusted: who may connect there is decided by the socket file's permissions
    /// ([`socket_mode`](Self::socket_mode)).
    ///
    /// An IPv4 peer of a dual-stack (`[::]`) server, seen as `::ffff:a.b.c.d`, is matched
    /// against the IPv4 ranges. An empty list trusts no internet peer.
    ///
    /// # Examples
    ///
    /// ```
    /// # use socketserver::proxy::{IpNet, ProxyProtocol};
    /// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
    /// # struct App;
    /// # impl Handler for App { type State = (); fn new(_: &ServerContext) -> Self { App } }
    /// # impl StreamRequestHandler for App {
    /// #     fn handle(&mut self, _: &mut StreamRequest<'_>) -> HandleResult { Ok(()) }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = TcpServer::<App>::builder()
    ///     .proxy_protocol(ProxyProtocol::V2)
    ///     .trusted_proxies(["10.1.0.0/16".parse::<IpNet>()?, "::1/128".parse()?])
    ///     .bind("127.0.0.1:0")?;
    /// # Ok(())
    /// # }
    /// ```
    #[doc(alias = "proxy_allow_ips")]
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpNet>) -> Self {
        self.request.proxy.trusted = proxies.into_iter().collect();
        self
    }

    /// How long a connection may take to send its whole PROXY protocol header, counted from
    /// when its worker starts on it. Default:
    /// [`DEFAULT_PROXY_HEADER_TIMEOUT`](crate::proxy::DEFAULT_PROXY_HEADER_TIMEOUT) (5 s).
    ///
    /// It bounds what a client that connects and sends nothing, or trickles its header, costs:
    /// a parked connection where the strategy parks them, otherwise one worker (or thread, or
    /// child), for at most this long. Must be more than zero.
    pub fn proxy_header_timeout(mut self, timeout: Duration) -> Self {
        self.request.proxy.header_timeout = timeout;
        self
    }

    /// Serves every connection over TLS with this configuration (certificate, key, ALPN,
    /// client authentication): the handshake runs on the connection's worker, after the PROXY
    /// header if one is required, under
    /// [`tls_handshake_timeout`](Self::tls_handshake_timeout). Handlers read and write
    /// plaintext through `rfile` and `wfile` as before, and see what was negotiated in
    /// [`StreamRequest::tls`](crate::StreamRequest::tls). Default: no TLS. See
    /// [the `tls` module](crate::tls).
    ///
    /// A connection whose handshake fails or times out is closed without calling the handler,
    /// counted in [`TlsConfig::stats`](crate::tls::TlsConfig::stats) by reason and in
    /// [`Stats::rejected`](crate::Stats::rejected), and logged (rate-limited).
    ///
    /// Keep a clone of `config` to [`reload`](crate::tls::TlsConfig::reload) its certificate
    /// while the server runs.
    ///
    /// Stream transports only: on a datagram server it is an [`Error::InvalidOption`] when
    /// binding.
    #[cfg(feature = "tls")]
    #[doc(alias = "ssl_context")]
    pub fn tls(mut self, config: crate::tls::TlsConfig) -> Self {
        self.request.tls.config = Some(config);
        self
    }

    /// How long a connection's TLS handshake may take in all, counted from when its worker
    /// starts on it (after the PROXY header, if any). Default:
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::tls::DEFAULT_HANDSHAKE_TIMEOUT) (10 s).
    ///
    /// It is a total deadline, not a per-read timeout: it bounds what a client that connects
    /// and sends nothing, or trickles its ClientHello a byte at a time, costs: a parked
    /// connection where the strategy parks them (see [the `tls` module](crate::tls#the-handshake-and-its-deadline)),
    /// otherwise its thread or child, for at most this long. Must be more than zero.
    #[cfg(feature = "tls")]
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.request.tls.handshake_timeout = timeout;
        self
    }

    /// Checks the edge options for this transport: called from `validate` when binding.
    pub(super) fn validate_edge(&self) -> Result<()> {
        let proxy = &self.request.proxy;
        let invalid = |option, reason: &str| {
            Err(Error::InvalidOption {
                option,
                reason: reason.into(),
            })
        };
        if proxy.protocol != ProxyProtocol::Off && matches!(T::NAME, "udp" | "unix-datagram") {
            return invalid(
                "proxy_protocol",
                "the PROXY protocol applies to stream transports (TCP, Unix stream) only",
            );
        }
        if proxy.header_timeout.is_zero() {
            return invalid("proxy_header_timeout", "must be more than zero");
        }
        #[cfg(feature = "tls")]
        {
            let tls = &self.request.tls;
            if tls.config.is_some() && matches!(T::NAME, "udp" | "unix-datagram") {
                return invalid(
                    "tls",
                    "TLS applies to stream transports (TCP, Unix stream) only",
                );
            }
            if tls.handshake_timeout.is_zero() {
                return invalid("tls_handshake_timeout", "must be more than zero");
            }
        }
        Ok(())
    }
}

/// TLS for every connection of a server, or none: set with
/// [`ServerBuilder::tls`] and [`ServerBuilder::tls_handshake_timeout`].
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "tls"), derive(Default))]
pub(crate) struct TlsSettings {
    #[cfg(feature = "tls")]
    pub(crate) config: Option<crate::tls::TlsConfig>,
    #[cfg(feature = "tls")]
    pub(crate) handshake_timeout: Duration,
}

#[cfg(feature = "tls")]
impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            config: None,
            handshake_timeout: crate::tls::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// Refuses a connection whose TLS handshake failed: counted as rejected (the configuration's
/// stats counted the reason), logged with a rate limit, and closed both ways. Returns `false`,
/// the request's outcome.
#[cfg(feature = "tls")]
pub(super) fn refuse_handshake<S>(
    server: &ServerContext<S>,
    connection: &Connection,
    client: &Address,
    failure: &crate::tls::Failure,
) -> bool {
    static LIMIT: Limit = Limit::new();
    say_limited(
        &LIMIT,
        log::Level::Info,
        "socketserver::tls",
        format_args!("connection from {client}: {failure}"),
    );
    server.reject();
    let _ = connection.shutdown(std::net::Shutdown::Both);
    false
}

/// The edge's first step for a connection from `peer`: with the PROXY protocol on, refuses
/// an untrusted peer, and gives the header to read (exactly: the bytes after it stay for the
/// handler), which the pipeline reads on the worker or, where connections are parked, parked
/// while the proxy's bytes have not arrived.
///
/// # Errors
///
/// [`RequestError::UntrustedProxy`]: close the connection without a handler ([`refuse`]).
pub(super) fn prepare(
    peer: &Address,
    options: &RequestOptions,
) -> Result<Option<proxy::HeaderRead>, RequestError> {
    let settings = &options.proxy;
    if settings.protocol == ProxyProtocol::Off {
        return Ok(None);
    }
    if !settings.trusts(peer) {
        return Err(RequestError::UntrustedProxy { peer: peer.clone() });
    }
    Ok(Some(proxy::HeaderRead::new(
        settings.protocol,
        settings.header_timeout,
    )))
}

/// Refuses a connection the edge did not accept: counted as rejected, reported to
/// `handle_error`, and closed (both ways, so the client sees the end at once). Returns `false`,
/// the request's outcome.
pub(super) fn refuse<S>(
    server: &ServerContext<S>,
    connection: &Connection,
    error: &RequestError,
) -> bool {
    server.reject();
    server.handle_error(error);
    let _ = connection.shutdown(std::net::Shutdown::Both);
    false
}
