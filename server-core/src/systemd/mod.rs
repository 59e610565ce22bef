//! Running under systemd: socket activation (`LISTEN_FDS`), inetd-style activation
//! (`Accept=yes`) and status notification (`sd_notify`).
//!
//! # Socket activation
//!
//! systemd binds the sockets of a `.socket` unit itself (with its privileges, before the service
//! starts) and passes them to the service as descriptors 3, 4, ... with `LISTEN_FDS`,
//! `LISTEN_PID` and `LISTEN_FDNAMES` in the environment (`sd_listen_fds(3)`).
//! [`ListenFds::from_env`] takes them; its typed takers check each socket's type, family and
//! state (`SO_TYPE`, `SO_DOMAIN`, `SO_ACCEPTCONN`) and hand it over as a std socket, for
//! [`ServerBuilder::from_listener`](crate::ServerBuilder) (streams) or `from_socket`
//! (datagrams). Without activation there is nothing to take, and the server binds as usual:
//!
//! ```
//! use std::io::Write;
//!
//! use socketserver::systemd::ListenFds;
//! use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};
//!
//! #[derive(Handler)]
//! struct Hello;
//!
//! impl StreamRequestHandler for Hello {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         request.wfile.write_all(b"hello\n")?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // At the start of main, before any thread starts.
//! let mut passed = ListenFds::from_env()?;
//! let builder = TcpServer::<Hello>::builder().max_connections(Some(512));
//! let server = match passed.take_tcp(None)? {
//!     Some(listener) => builder.from_listener(listener)?, // started by systemd
//!     None => builder.bind("127.0.0.1:0")?,               // started by hand
//! };
//! // Here nothing was passed, so the server bound its own address.
//! assert!(passed.is_empty());
//! assert!(server.server_address().as_inet().is_some());
//! # Ok(())
//! # }
//! ```
//!
//! A socket of the wrong kind is an error that names it, such as
//! `fd 3 ("web") is a UDP socket; a TCP listener was asked for` ([`ActivationError::WrongKind`]).
//! With several sockets, name them (`FileDescriptorName=`) and take each by name.
//!
//! The units, for each transport (the service's `ExecStart=` is the program that calls
//! `from_env`; socket units are named after their service: `echo.socket` starts
//! `echo.service`):
//!
//! ```ini
//! # /etc/systemd/system/echo.socket
//! [Socket]
//! # TCP: a port, or an address and port; several lines make several sockets.
//! ListenStream=127.0.0.1:9000
//! # UDP (take_udp):            ListenDatagram=127.0.0.1:9000
//! # Unix stream, a file:       ListenStream=/run/echo.sock   (take_unix_stream)
//! # Unix stream, abstract:     ListenStream=@echo            (reported as @echo)
//! # Unix datagram:             ListenDatagram=/run/echo-dgram.sock  (take_unix_datagram)
//! # The name take_tcp(Some("web")) asks for (default: the unit's name, echo.socket).
//! FileDescriptorName=web
//! Backlog=1024
//!
//! [Install]
//! WantedBy=sockets.target
//! ```
//!
//! ```ini
//! # /etc/systemd/system/echo.service
//! [Service]
//! ExecStart=/usr/local/bin/echo --max-connections 512
//! # Type=notify: the units after this one wait for notify_ready().
//! Type=notify
//! # notify-reload instead: `systemctl reload` sends SIGHUP and waits for
//! # notify_reloading() then notify_ready().
//! ```
//!
//! Try one without systemd, with `systemd-socket-activate` (Debian's `systemd` package), which
//! binds, waits for the first client and starts the program with the same environment:
//! `systemd-socket-activate -l 127.0.0.1:9000 --fdname=web ./echo`, then
//! `nc 127.0.0.1 9000`. `--datagram` binds UDP or Unix datagram sockets; `-l @echo` an abstract
//! one.
//!
//! # inetd style (`Accept=yes`)
//!
//! With `Accept=yes`, systemd accepts each connection itself and starts one instance of a
//! templated service (`echo@.service`) per connection, passing the *connected* socket as fd 3
//! (named `connection`). [`inetd_stream`] takes it (or inetd's standard input) as an
//! [`InetdConnection`], to be served once, as Python's `handle_request` does:
//!
//! ```ini
//! # /etc/systemd/system/echo.socket
//! [Socket]
//! ListenStream=9000
//! Accept=yes
//! MaxConnections=64
//! ```
//!
//! ```ini
//! # /etc/systemd/system/echo@.service
//! [Service]
//! ExecStart=/usr/local/bin/echo --inetd
//! # For inetd's protocol (the connection on standard input and output) instead of fd 3:
//! # StandardInput=socket
//! ```
//!
//! A process per connection costs a fork and an exec each: for more than a few connections a
//! second, prefer `Accept=no` and one server.
//!
//! # Notifying systemd
//!
//! [`notify_ready`], [`notify_status`], [`notify_reloading`], [`notify_stopping`],
//! [`notify_main_pid`] and [`notify_watchdog`] send `sd_notify(3)` messages to
//! `NOTIFY_SOCKET` (through the `sd-notify` crate; abstract `@` sockets too), and do nothing
//! when it is unset, so a program calls them whether or not systemd runs it. systemd's default
//! `NotifyAccess=main` drops messages from any process but the main one: a forked worker must
//! leave them to its supervisor (or the unit says `NotifyAccess=all`). [`watchdog_interval`]
//! reads `WatchdogSec=` (`WATCHDOG_USEC`).
//!
//! # Platform
//!
//! Linux only, as the crate. systemd's `vsock:` notification sockets (virtual machines) are
//! not supported: `NOTIFY_SOCKET` must be a path or an `@name`.

mod activation;
mod inetd;
mod notify;

pub use activation::{ActivationError, ListenFds, SocketKind};
pub use inetd::{inetd_stream, InetdConnection};
pub use notify::{
    notify_main_pid, notify_ready, notify_reloading, notify_status, notify_stopping,
    notify_watchdog, watchdog_interval, NotifyError,
};
