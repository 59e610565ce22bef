//! One TLS connection after its handshake: plaintext in and out over the blocking socket.
//!
//! The rustls state is in a `RefCell`: the connection has one owner (the thread serving it),
//! and each read or write borrows the state for the length of the call. Never a mutex: a
//! reader blocked in `read` while holding it would block every writer (tiny_http #144).

use std::cell::{RefCell, RefMut};
use std::io::{self, IoSlice, Read, Write};

use rustls::ServerConnection;

use super::TlsInfo;
use crate::request::Connection;

/// A TLS connection's state, owned by the connection's [`Stream`](crate::Stream).
pub(crate) struct Session {
    tls: RefCell<ServerConnection>,
    info: TlsInfo,
}

/// The socket as rustls reads and writes it: reads with the socket's own timeouts, writes
/// through [`Connection`]'s `MSG_NOSIGNAL` send.
struct Socket<'a>(&'a Connection);

impl Read for Socket<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut connection = self.0;
        connection.read(buf)
    }
}

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut connection = self.0;
        connection.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut connection = self.0;
        connection.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Session {
    pub(crate) fn new(tls: ServerConnection, info: TlsInfo) -> Session {
        Session {
            tls: RefCell::new(tls),
            info,
        }
    }

    pub(crate) fn info(&self) -> &TlsInfo {
        &self.info
    }

    /// The state, for one call. A second borrow could only come from a read or write that
    /// calls another on the same connection, which none does; it is an error, not a panic.
    fn state(&self) -> io::Result<RefMut<'_, ServerConnection>> {
        self.tls.try_borrow_mut().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "the TLS connection is in use by another call on this thread",
            )
        })
    }

    /// Reads plaintext: what rustls has already decrypted, else one read of the socket (with
    /// its timeout) and what it decrypts to. `Ok(0)` at the end of the connection, with or
    /// without the client's `close_notify` (see the module docs, "End of file").
    pub(crate) fn read(&self, socket: &Connection, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut tls = self.state()?;
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    log::trace!(target: "socketserver::tls",
                        "the client closed without close_notify: end of file");
                    return Ok(0);
                }
                Err(e) => return Err(e),
            }
            // What rustls must send before it reads on (an alert, a key update's answer).
            send_pending(&mut tls, socket)?;
            match tls.read_tls(&mut Socket(socket)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(error) = tls.process_new_packets() {
                // The alert that says why, best effort: the connection is over either way.
                let _ = send_pending(&mut tls, socket);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    /// Encrypts and sends what rustls accepts of `buf` (all of it, unless it is larger than
    /// rustls' 64 KiB send buffer): when it returns, the bytes are on the socket.
    pub(crate) fn write(&self, socket: &Connection, buf: &[u8]) -> io::Result<usize> {
        let mut tls = self.state()?;
        let n = tls.writer().write(buf)?;
        send_pending(&mut tls, socket)?;
        Ok(n)
    }

    /// Sends whatever is still pending (after a write that failed midway, say).
    pub(crate) fn flush(&self, socket: &Connection) -> io::Result<()> {
        send_pending(&mut *self.state()?, socket)
    }

    /// Says the connection ends (`close_notify`), best effort.
    pub(crate) fn close_notify(&self, socket: &Connection) {
        if let Ok(mut tls) = self.state() {
            tls.send_close_notify();
            let _ = send_pending(&mut tls, socket);
        }
    }

    /// Decrypted bytes a read returns without touching the socket.
    pub(crate) fn buffered(&self) -> usize {
        match self.state() {
            Ok(mut tls) => tls
                .process_new_packets()
                .map_or(0, |state| state.plaintext_bytes_to_read()),
            Err(_) => 0,
        }
    }
}

/// Sends every TLS record rustls has ready.
pub(super) fn send_pending(tls: &mut ServerConnection, socket: &Connection) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(&mut Socket(socket)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
