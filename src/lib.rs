//! Python's `socketserver`, for Rust: write a request handler, pick a transport and a processing
//! strategy, and get a correct server.
//!
//! New to sockets in Rust, or coming from Python's socket tutorials? Start with
//! [the guide](guide): raw sockets, bytes and framing, then `socketserver`, recipes, and HTTP,
//! RPC and WebSocket, each chapter with the Python beside the Rust and a runnable example.
//!
//! # Hello, world
//!
//! An echo server on TCP, serving one client, then stopping:
//!
//! ```
//! use std::io::{self, Read, Write};
//! use std::net::{Shutdown, TcpStream};
//! use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};
//!
//! #[derive(Handler)]
//! struct Echo;
//!
//! impl StreamRequestHandler for Echo {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         io::copy(&mut request.rfile, &mut request.wfile)?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = TcpServer::<Echo>::bind("127.0.0.1:0")?;
//! let address = server.server_address().as_inet().expect("a TCP address");
//! let stop = server.shutdown_handle();
//! let serving = std::thread::spawn(move || server.serve_forever());
//!
//! let mut client = TcpStream::connect(address)?;
//! client.write_all(b"hello")?;
//! client.shutdown(Shutdown::Write)?;
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert_eq!(reply, "hello");
//!
//! stop.shutdown();
//! serving.join().expect("serving thread")?;
//! # Ok(())
//! # }
//! ```
//!
//! # The three parts
//!
//! Python's `socketserver` splits a server into three independent parts, and so does this crate.
//! A server is the type [`Server<T, H, S>`](Server):
//!
//! - **The transport `T`** (Python: `address_family` and `socket_type`): [`transport::Tcp`],
//!   [`transport::Udp`], [`transport::UnixStream`] or [`transport::UnixDatagram`]. The aliases
//!   [`TcpServer`], [`UdpServer`], [`UnixStreamServer`] and [`UnixDatagramServer`] fix it.
//!   IPv4 and IPv6 both work; the address decides.
//! - **The request handler `H`** (Python: `RequestHandlerClass`): a type implementing
//!   [`Handler`] (how it is made and what state it shares) and either
//!   [`StreamRequestHandler`] or [`DatagramRequestHandler`]. A new handler is made for every
//!   request, and its `setup`, `handle` and `finish` run as in Python.
//! - **The processing strategy `S`** (Python: the mix-ins): where a request runs. It is the
//!   server's last type parameter, [`Serial`] by default: every request runs on the serving
//!   thread, one at a time (Python's plain `TCPServer`). Every strategy implements the
//!   [`Strategy`] trait and is chosen with [`ServerBuilder::strategy`] or by naming it in the
//!   type, so adding a strategy adds a type and never changes a server or a handler.
//!
//! Because the strategy is a type parameter, the compiler knows which code runs where, and a
//! handler that only ever runs in the serving thread pays nothing for threads it does not use.
//! A strategy chosen at run time is a `Box<dyn Strategy>` (see `examples/echo.rs`).
//!
//! What Python overrides on a server subclass belongs to the server here too, not to any of
//! the three parts: the hooks `verify_request`, `handle_error`, `handle_timeout` and
//! `service_actions` are closures given to the [`ServerBuilder`] (see
//! [`ServerBuilder::verify_request`]), once, whatever the transport and handler. So code that
//! is generic over servers needs no bound beyond the three parts' own traits:
//! `Server<T: transport::Transport, H: Handler, S: Strategy>`. The transport's `bind` is where
//! the handler trait is checked: a [`StreamRequestHandler`] for stream transports, a
//! [`DatagramRequestHandler`] for datagram ones.
//!
//! The layers built on the three parts keep to them: the HTTP layer ([`http`]) is a stream
//! handler (`Http<H>`), and the process model ([`prefork`]) runs a whole server, with its
//! strategy, in each worker process. Every item has one path, at the crate root, except the
//! items of those layers and of [`transport`] and [`systemd`].
//!
//! # Sharing state between requests
//!
//! Python handlers reach shared data through `self.server`. Here the handler's
//! [`Handler::State`] lives in an `Arc` inside the server; handlers reach it through
//! [`ServerContext::state`], and `#[derive(Handler)]` can hand it to a field:
//!
//! ```
//! use std::io::Write;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};
//!
//! #[derive(Default)]
//! struct Visits(AtomicUsize);
//!
//! #[derive(Handler)]
//! #[handler(state = Visits)]
//! struct Counter {
//!     #[handler(state)]
//!     visits: Arc<Visits>,
//! }
//!
//! impl StreamRequestHandler for Counter {
//!     fn handle(&mut self, request: &mut StreamRequest<'_, Visits>) -> HandleResult {
//!         let n = self.visits.0.fetch_add(1, Ordering::SeqCst) + 1;
//!         write!(request.wfile, "you are visitor {n}\n")?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = TcpServer::<Counter>::bind("127.0.0.1:0")?;
//! let address = server.server_address().as_inet().expect("a TCP address");
//! // Serve exactly two requests on this thread, as Python's handle_request does.
//! let clients = std::thread::spawn(move || -> std::io::Result<String> {
//!     let mut last = String::new();
//!     for _ in 0..2 {
//!         last.clear();
//!         std::io::Read::read_to_string(&mut std::net::TcpStream::connect(address)?, &mut last)?;
//!     }
//!     Ok(last)
//! });
//! server.handle_request()?;
//! server.handle_request()?;
//! assert_eq!(clients.join().expect("clients")?, "you are visitor 2\n");
//! assert_eq!(server.state().0.load(Ordering::SeqCst), 2);
//! # Ok(())
//! # }
//! ```
//!
//! `#[derive(Handler)]` writes the [`Handler`] impl: `#[handler(state = Type)]` on the struct
//! names the shared state, `#[handler(state)]` on a field receives its `Arc`,
//! `#[handler(default = expr)]` starts a field from an expression, and every other field starts
//! from `Default`. Its full reference, with the mistakes it rejects and why, is on
//! [`derive@Handler`].
//!
//! # Stopping
//!
//! [`Server::serve_forever`] runs until a [`ShutdownHandle`] asks it to stop. The handle is
//! `Clone + Send`; `shutdown()` wakes the loop at once (no 0.5 s polling) and returns when the
//! loop has stopped. Called from inside a handler it only asks and returns, so it cannot
//! deadlock the way Python's does. [`Server::close`] (Python: `server_close`) then stops
//! listening, serves the clients already waiting in the listen backlog, removes the Unix socket
//! file and waits for running requests, and [`Server::serve_until_signal`] does all of this on
//! SIGINT or SIGTERM: the first signal gives running requests a grace period
//! ([`DEFAULT_GRACE_PERIOD`], 10 s, or the builder's `close_timeout`), after which
//! connections still open have their reading side shut down; a second signal stops at once.
//! A stop closes idle connections at once (those marked with [`StreamRequest::set_idle`], as
//! the HTTP layer marks keep-alive connections between requests). Announce the server from
//! [`Server::on_ready`], which runs once the signal handlers are in place.
//!
//! # Limits
//!
//! What a client can make a server hold, and what bounds it. The library's defaults follow
//! Python where Python has one (no timeouts, no cap); a server on a network should set the
//! first three, as every example does (their opening comments list their own limits and flags).
//!
//! | bound | builder option / field | default |
//! |---|---|---|
//! | time without a byte from the client (idle and slow clients) | [`ServerBuilder::read_timeout`] | none: wait forever, as Python |
//! | time a write may wait for a client that does not read | [`ServerBuilder::write_timeout`] | none |
//! | requests (connections, datagrams) open at once | [`ServerBuilder::max_connections`] | none beyond the strategy's own |
//! | threads / workers / children | [`Pool::workers`], [`Forking::max_children`], [`Threading`]'s idle threads | CPUs + 4 (at most 32) / 40 / 64 idle |
//! | bytes buffered per stream connection | [`ServerBuilder::rbufsize`], [`ServerBuilder::wbufsize`] | 8 KiB at most (the read buffer starts at 1 KiB and grows) / 0 (unbuffered) |
//! | one datagram | [`ServerBuilder::max_packet_size`] | 64 KiB; larger ones are reported, never truncated |
//! | clients waiting to be accepted | [`ServerBuilder::backlog`] | 1024 (kernel-held) |
//! | running requests after a stop | [`ServerBuilder::close_timeout`] | `close`: wait for all; `serve_until_signal`: 10 s |
//! | HTTP: one body / one head / header fields | [`http::Limits`] `max_body`, `max_head`, `max_headers` | 1 MiB / 64 KiB / 100 |
//! | HTTP: all buffered bodies at once | [`http::Limits`] `max_bodies_total` | 64 MiB, then `503` |
//! | HTTP: time for a whole request, and idle keep-alive | [`http::Limits`] `timeout` | 30 s |
//! | HTTP: requests being answered at once | [`http::Limits`] `max_in_flight` | none; past it `503` |
//! | connections from one client address | [`ServerBuilder::max_connections_per_client`] | none |
//! | a client turned away at the cap | [`ServerBuilder::overload`] | waits in the backlog ([`Overload::Wait`]); `Reject`/`Close` answer without waiting |
//! | time for a PROXY protocol header | [`ServerBuilder::proxy_header_timeout`] | 5 s (when the protocol is on) |
//! | time for a TLS handshake, in all (a silent or trickling client is cut) | [`ServerBuilder::tls_handshake_timeout`] | 10 s (with [`ServerBuilder::tls`]) |
//! | time one request may run (its connection is then cut off) | [`ServerBuilder::max_request_time`] | none |
//! | log lines from per-request failures | the default `handle_error` | 20 a second, then counted |
//! | scrapers of the metrics listener | [`Server::serve_metrics`] | 16 at once, 5 s each |
//!
//! # Running in production
//!
//! Python's `socketserver` stops at one process; the parts below take a server the rest of the
//! way. Each module's docs have the details and the comparison with gunicorn, nginx and
//! systemd; `examples/deploy/` has systemd units and nginx and HAProxy configurations, and every
//! example takes the flags that turn these on (`--help`).
//!
//! ## Worker processes
//!
//! [`prefork::Prefork`] runs a supervisor that forks N workers serving the same socket, each
//! with any strategy inside. It replaces dead or silent workers (heartbeats through a pipe,
//! crash-loop back-off), recycles them after `max_requests` with the replacement ready first,
//! reloads them one at a time on SIGHUP, adds or removes one on SIGTTIN/SIGTTOU, upgrades the
//! binary on SIGUSR2 without closing the socket, and takes its workers with it when it dies.
//! One shared socket, or a SO_REUSEPORT socket per worker slot that outlives its workers.
//! A request that runs too long is cut off by [`ServerBuilder::max_request_time`], apart from
//! the workers' liveness.
//!
//! ## systemd
//!
//! [`systemd::ListenFds`] takes the sockets of socket activation (`LISTEN_FDS`, each checked
//! for type and family), [`ServerBuilder::serve_connection`] serves the one connection of an
//! `Accept=yes` service, and the supervisor reports readiness, status, reloads, stops and
//! watchdog pings through `sd_notify`. Unix addresses starting with `@` are Linux abstract
//! sockets, as systemd writes them.
//!
//! ## Behind a proxy
//!
//! Behind HAProxy or nginx every connection comes from the proxy. With
//! [`ServerBuilder::proxy_protocol`] the server reads the PROXY protocol header (v1, v2) that
//! the proxy sends first, from [trusted proxies](ServerBuilder::trusted_proxies) only, under
//! its own deadline, so handlers see the real client in [`StreamRequest::client_address`] and
//! the proxy in [`StreamRequest::proxy`]; see [`proxy`]. Several servers behind one balancer
//! stop without failing a request with [`ServerBuilder::drain_delay`]: after the signal each
//! serves on while its `/readyz` ([`metrics`]) fails, so the balancer moves traffic first.
//!
//! ## TLS
//!
//! [`ServerBuilder::tls`] serves every stream connection over TLS (rustls; the `tls` feature,
//! on by default). Handlers read and write plaintext through the same `rfile` and `wfile`, and
//! see the SNI name, the ALPN protocol and client certificates in [`StreamRequest::tls`]. The
//! handshake runs on the worker, never on the serving loop, under its own total deadline, so a
//! client that stalls it costs one worker for at most that long;
//! [`TlsConfig::reload`](tls::TlsConfig::reload) switches to new certificate files without a
//! restart (on SIGHUP with [`prefork`]). See [`tls`].
//!
//! ## Overload
//!
//! At [`max_connections`](ServerBuilder::max_connections) the [`Overload`] policy decides:
//! clients wait in the kernel's backlog (the default), are answered in the protocol's words
//! ([`StreamRequestHandler::BUSY_REPLY`]: `503` with `Retry-After: 1` for HTTP) and closed, or
//! are closed at once; a client turned away is never handled.
//! [`max_connections_per_client`](ServerBuilder::max_connections_per_client) keeps one client
//! from taking every slot; clients that gave up while they waited in the backlog cost nothing;
//! the HTTP layer sheds load with [`http::Limits`]`::max_in_flight` and ends keep-alive while
//! the server is full, so load can move elsewhere. Every decision is counted in [`Stats`].
//!
//! ## Metrics
//!
//! [`Server::serve_metrics`] answers Prometheus scrapes (text format 0.0.4: requests by
//! outcome, rejections by reason, a duration histogram, busy and idle workers, the listen
//! queue), `/healthz` and `/readyz`, on its own address and thread, so it answers while every
//! worker is busy. The [`metrics`] module lists the metrics and PromQL to start with.
//!
//! # Errors
//!
//! Binding fails with an [`Error`] that names the address or path: [`Error::AddrInUse`],
//! [`Error::UnixPathInUse`] and so on. A request that fails, by an error or a panic, never stops
//! the server: it goes to the server's `handle_error` hook ([`ServerBuilder::handle_error`]) as a
//! [`RequestError`], whose default
//! logs it through the `log` crate (this crate never installs a logger), or writes it to stderr
//! when no logger is installed, so a failure is never silent. `Error`'s `Debug` form is its
//! message and causes, so `fn main() -> Result<(), socketserver::Error>` prints a readable line.
//!
//! # Python names
//!
//! | Python | here |
//! |---|---|
//! | `TCPServer`, `UDPServer`, `UnixStreamServer`, `UnixDatagramServer` | [`TcpServer`], [`UdpServer`], [`UnixStreamServer`], [`UnixDatagramServer`] |
//! | `BaseRequestHandler`, `StreamRequestHandler`, `DatagramRequestHandler` | [`Handler`] + [`StreamRequestHandler`] / [`DatagramRequestHandler`] |
//! | calling `RequestHandlerClass(request, client_address, server)` | [`Handler::new`], written by [`#[derive(Handler)]`](derive@Handler) |
//! | `setup`, `handle`, `finish` | the same, returning [`HandleResult`] |
//! | `self.request`, `self.client_address`, `self.server` | [`StreamRequest::connection`], [`StreamRequest::client_address`], [`StreamRequest::server`] |
//! | `self.rfile`, `self.wfile` | `request.rfile`, `request.wfile` |
//! | `server_address` | [`Server::server_address`], [`ServerContext::server_address`] |
//! | `serve_forever`, `handle_request`, `shutdown`, `server_close` | [`Server::serve_forever`], [`Server::handle_request`], [`ShutdownHandle::shutdown`], [`Server::close`] |
//! | overriding `verify_request`, `handle_error`, `handle_timeout`, `service_actions` on a server subclass | closures given to the builder methods of the same names: [`ServerBuilder::verify_request`] and the rest |
//! | `allow_reuse_address`, `allow_reuse_port`, `request_queue_size` | [`ServerBuilder::reuse_address`], [`ServerBuilder::reuse_port`], [`ServerBuilder::backlog`] |
//! | `timeout` (server), `timeout` (handler), `disable_nagle_algorithm` | [`ServerBuilder::timeout`], [`ServerBuilder::request_timeout`], [`ServerBuilder::nodelay`] |
//! | `rbufsize`, `wbufsize`, `max_packet_size` | [`ServerBuilder::rbufsize`], [`ServerBuilder::wbufsize`], [`ServerBuilder::max_packet_size`] |
//! | `bind_and_activate=False` | `ServerBuilder::from_listener` / `from_socket` |
//! | `OSError` | [`Error`], with the address or path |
//!
//! What differs, and why:
//!
//! - `shutdown()` lives on a handle, wakes the loop at once, and never deadlocks.
//! - The default backlog is 1024, not 5; `max_packet_size` is 64 KiB, not 8 KiB, and a larger
//!   datagram is reported rather than silently cut short.
//! - Unix socket files are cleaned up: a stale one is replaced, a live one refused by name, and
//!   the server's own removed on close.
//! - A datagram handler that writes nothing sends nothing (Python sends an empty datagram).
//! - Handler panics are caught per request, reported, and the server keeps serving.
//! - Limits Python lacks: [`ServerBuilder::max_connections`], separate
//!   [`ServerBuilder::read_timeout`] and [`ServerBuilder::write_timeout`], request counters
//!   ([`Server::stats`]), and [`ServerContext::is_closing`] for handlers that should end
//!   keep-alive loops when the server closes.

#[doc(inline)]
pub use server_core::*;

/// The guide: from raw sockets to `socketserver`, Python beside Rust, chapter by chapter.
pub mod guide;

// The derive's reference and example are its own docs (server-derive/src/lib.rs), shown on
// this crate's page because the re-export is inlined.
#[doc(inline)]
pub use server_derive::Handler;

/// The README's Rust code, compiled as a doc-test so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
