//! The `SO_REUSEPORT` listener model ([`Prefork::reuse_port`](super::Prefork::reuse_port)):
//! a listening socket per worker *slot*, made and kept by the supervisor, so a replacement
//! worker inherits the very socket of the worker it replaces (and its queue).
//!
//! Slot 0 is the server's own socket; slots 1.. are sockets the supervisor binds to the same
//! address with `SO_REUSEPORT`. A worker of slot `k > 0` puts its slot's socket in place of
//! the server's (`dup2` onto the server's descriptor number), so the server serves it
//! unchanged.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use socket2::{Domain, SockRef, Socket, Type};

use crate::server::DEFAULT_BACKLOG;

/// The supervisor's sockets, one per slot (slot 0: the server's own, not held here).
#[derive(Debug, Default)]
pub(super) struct Slots {
    on: bool,
    sockets: Vec<Option<OwnedFd>>,
}

impl Slots {
    /// `on`: the model is in use for `listener`, which must be an internet socket with
    /// `SO_REUSEPORT` set.
    pub(super) fn new(on: bool, listener: BorrowedFd<'_>) -> Result<Slots, &'static str> {
        if on {
            let socket = SockRef::from(&listener);
            let inet = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .is_some();
            if !inet {
                return Err("SO_REUSEPORT needs a TCP or UDP server");
            }
            if !socket.reuse_port().unwrap_or(false) {
                return Err("the server's socket lacks SO_REUSEPORT: build it with .reuse_port(true) (or ReusePort=yes in the .socket unit)");
            }
        }
        Ok(Slots {
            on,
            sockets: Vec::new(),
        })
    }

    pub(super) fn on(&self) -> bool {
        self.on
    }

    /// Slot `k`'s socket, made the first time it is asked for (slot 0: `None`, the server's).
    pub(super) fn socket(
        &mut self,
        k: usize,
        listener: BorrowedFd<'_>,
    ) -> io::Result<Option<RawFd>> {
        if !self.on || k == 0 {
            return Ok(None);
        }
        if self.sockets.len() < k {
            self.sockets.resize_with(k, || None);
        }
        let Some(place) = self.sockets.get_mut(k - 1) else {
            return Ok(None);
        };
        if place.is_none() {
            *place = Some(bind_like(listener)?);
        }
        Ok(place.as_ref().map(AsRawFd::as_raw_fd))
    }

    /// Closes slot `k`'s socket (the supervisor's copy): once its worker has let go of it,
    /// the kernel drops the connections still queued on it (unless `tcp_migrate_req` is on).
    pub(super) fn close(&mut self, k: usize) {
        if let Some(place) = k.checked_sub(1).and_then(|i| self.sockets.get_mut(i)) {
            *place = None;
        }
    }

    /// The slot sockets (slot 1 on), for their accept queues.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // the metrics listener's
    pub(super) fn sockets(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.sockets.iter().flatten().map(AsFd::as_fd)
    }

    /// Every slot socket's descriptor, which a worker closes (except its own, put in place).
    pub(super) fn fds(&self) -> Vec<RawFd> {
        self.sockets
            .iter()
            .flatten()
            .map(AsRawFd::as_raw_fd)
            .collect()
    }
}

/// A socket like `listener` (family, type, address), with `SO_REUSEPORT`, bound and listening.
fn bind_like(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let model = SockRef::from(&listener);
    let addr = model.local_addr()?;
    let ty = model.r#type()?;
    let domain = addr.as_socket().map_or(Domain::IPV4, Domain::for_address);
    let socket = Socket::new(domain, ty, None)?;
    if ty == Type::STREAM {
        socket.set_reuse_address(true)?;
    }
    socket.set_reuse_port(true)?;
    if domain == Domain::IPV6 {
        socket.set_only_v6(model.only_v6().unwrap_or(false))?;
    }
    socket.bind(&addr)?;
    if ty == Type::STREAM {
        socket.listen(DEFAULT_BACKLOG)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// In a worker of slot `k > 0`: its slot's socket takes the place of the server's.
pub(super) fn put_in_place(socket: RawFd, server: BorrowedFd<'_>) -> io::Result<()> {
    nix::unistd::dup2(socket, server.as_raw_fd())?;
    Ok(())
}

/// In a worker that stopped accepting: lets go of its listening socket at once (a fresh,
/// unbound socket takes its descriptor number), so that a slot being closed is closed now, not
/// when the worker's last request ends. Stream sockets only (a datagram worker still replies
/// through its socket while it drains).
pub(super) fn let_go(server: BorrowedFd<'_>) {
    let socket = SockRef::from(&server);
    if socket.r#type().ok() != Some(Type::STREAM) {
        return;
    }
    let domain = match socket.local_addr().ok().and_then(|a| a.as_socket()) {
        Some(a) => Domain::for_address(a),
        None => return,
    };
    if let Ok(placeholder) = Socket::new(domain, Type::STREAM, None) {
        let _ = nix::unistd::dup2(placeholder.as_fd().as_raw_fd(), server.as_raw_fd());
    }
}
