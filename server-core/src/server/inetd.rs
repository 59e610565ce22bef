//! Serving one connection accepted elsewhere: inetd, or systemd's `Accept=yes`, which start the
//! program once per connection and hand it the connected socket.

use crate::addr::Address;
use crate::error::{Error, Result};
use crate::handler::StreamRequestHandler;
use crate::request::Connection;
use crate::server::pipeline::finish_stream;
use crate::server::ServerBuilder;
use crate::strategy::Strategy;
use crate::transport::{Accepted, Transport};

impl<T: Transport, H: StreamRequestHandler, S: Strategy> ServerBuilder<T, H, S> {
    /// Serves one connection that was accepted elsewhere, on this thread, and returns whether
    /// every stage of its handler succeeded: for a program started once per connection by
    /// inetd, or by systemd with `Accept=yes` (take the connection with
    /// [`systemd::inetd_stream`](crate::systemd::inetd_stream)), as Python's `handle_request`
    /// serves one request.
    ///
    /// Everything a bound server does for a request is done: the connection options (timeouts,
    /// `nodelay`, buffer sizes), the handler's `setup`, `handle` and `finish`, the
    /// `handle_error` hook for failures and panics, then the writing half is shut down so the
    /// client sees end-of-file. The strategy is not used (there is one request) and neither is
    /// `verify_request` (inetd already chose to serve it). The server address handlers see is
    /// the connection's local address.
    ///
    /// # Errors
    ///
    /// [`Error::WrongSocket`] if the connection has no peer (it is not connected);
    /// [`Error::InvalidOption`] for an invalid option, as `bind` would.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::io::{Read, Write};
    /// # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, UnixStreamServer};
    /// # struct Hello;
    /// # impl Handler for Hello { type State = (); fn new(_: &ServerContext) -> Self { Hello } }
    /// # impl StreamRequestHandler for Hello {
    /// #     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
    /// #         request.wfile.write_all(b"hello\n")?;
    /// #         Ok(())
    /// #     }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // What inetd would hand over: one end of a connected pair.
    /// let (ours, mut client) = std::os::unix::net::UnixStream::pair()?;
    /// let ok = UnixStreamServer::<Hello>::builder().serve_connection(socketserver::Connection::Unix(ours))?;
    /// assert!(ok);
    /// let mut reply = String::new();
    /// client.read_to_string(&mut reply)?;
    /// assert_eq!(reply, "hello\n");
    /// # Ok(())
    /// # }
    /// ```
    pub fn serve_connection(self, connection: Connection) -> Result<bool> {
        self.validate()?;
        let not_connected = |e: std::io::Error| Error::WrongSocket {
            transport: "inetd connection",
            reason: e.to_string(),
        };
        let client_address = connection.peer_addr().map_err(not_connected)?;
        let server_address = local_address(&connection);
        let shared = std::sync::Arc::new(self.into_shared(server_address)?);
        Ok(finish_stream::<H>(
            &shared,
            Accepted {
                connection,
                client_address,
            },
            None,
        ))
    }
}

/// The connection's own end, as the server address handlers see.
fn local_address(connection: &Connection) -> Address {
    match connection {
        Connection::Tcp(s) => s
            .local_addr()
            .map_or(Address::Unix(crate::UnixAddress::Unnamed), Address::Inet),
        Connection::Unix(s) => s
            .local_addr()
            .map_or(Address::Unix(crate::UnixAddress::Unnamed), |a| {
                Address::from_unix(&a)
            }),
    }
}
