//! Socket-level system calls: writes that never raise `SIGPIPE`, `shutdown(2)` by descriptor,
//! peer credentials, the options connections inherit, and telling a shortage of descriptors or
//! memory from other `accept(2)` failures.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{self, sockopt, MsgFlags};

/// `send(2)` with `MSG_NOSIGNAL`: a peer that has gone away makes it fail with `EPIPE`
/// (`BrokenPipe`) instead of raising `SIGPIPE`.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    socket::send(fd.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)
}

/// `sendmsg(2)` with `MSG_NOSIGNAL`: [`send`] for several buffers at once.
pub(crate) fn send_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    socket::sendmsg::<()>(fd.as_raw_fd(), bufs, &[], MsgFlags::MSG_NOSIGNAL, None)
        .map_err(io::Error::from)
}

/// `recv(2)` with `MSG_DONTWAIT`, and `MSG_PEEK` if `peek`: what has arrived, up to
/// `buf.len()` bytes, without blocking (`WouldBlock` when nothing has); with `peek` the bytes
/// stay in the socket for the next read. The PROXY header reader uses it to read its header
/// exactly, never past it.
pub(crate) fn recv_now(fd: BorrowedFd<'_>, buf: &mut [u8], peek: bool) -> io::Result<usize> {
    let mut flags = MsgFlags::MSG_DONTWAIT;
    if peek {
        flags |= MsgFlags::MSG_PEEK;
    }
    socket::recv(fd.as_raw_fd(), buf, flags).map_err(io::Error::from)
}

/// `send(2)` without waiting (`MSG_DONTWAIT`) and without `SIGPIPE`: what fits in the
/// socket's send buffer now, or `WouldBlock`.
pub(crate) fn send_now(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    socket::send(fd.as_raw_fd(), buf, flags).map_err(io::Error::from)
}

/// `sendmsg(2)` without waiting and without `SIGPIPE`: [`send_now`] for several buffers at once.
#[cfg(feature = "tls")]
pub(crate) fn send_vectored_now(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    socket::sendmsg::<()>(fd.as_raw_fd(), bufs, &[], flags, None).map_err(io::Error::from)
}

/// Whether the peer of a just-accepted stream socket has already gone: it closed (or reset) the
/// connection and sent nothing, as a client does that gave up while it waited in the listen
/// backlog. One `poll(2)` that does not wait, and a peek when something is there.
pub(crate) fn peer_gave_up(fd: BorrowedFd<'_>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // Readable: data, or the end of the stream; nothing at all is the common case, one call.
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1)) {
        return false;
    }
    // A client that sent its request and then half-closed (as Python's socketserver clients
    // often do) has data waiting: it is served.
    let mut byte = [0; 1];
    match recv_now(fd, &mut byte, true) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    }
}

/// Reads and drops what has already arrived on a socket, up to `most` bytes, without waiting.
pub(crate) fn discard_pending(fd: BorrowedFd<'_>, most: usize) {
    let mut buf = [0; 4096];
    let mut left = most;
    while left > 0 {
        let want = left.min(buf.len());
        match buf.get_mut(..want).map(|b| recv_now(fd, b, false)) {
            Some(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

/// Connections waiting in the accept queue of a TCP listening socket: `TCP_INFO`'s
/// `tcpi_unacked`, which Linux sets to that queue's length for a listening socket. One
/// `getsockopt(2)`; other sockets answer an error (Unix sockets) or a figure of theirs.
pub(crate) fn listen_queue(fd: BorrowedFd<'_>) -> io::Result<u64> {
    use nix::libc;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::tcp_info>())
        .map_err(|_| io::Error::other("tcp_info does not fit a socklen_t"))?;
    // SAFETY: `info` is a zeroed buffer of `len` bytes that lives across the call;
    // getsockopt writes at most `len` bytes into it and stores how many in `len`; `fd` is an
    // open descriptor for the borrow's life.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a zeroed `tcp_info` is a valid value (plain integers), and the kernel wrote
    // only integers over part of it.
    let info = unsafe { info.assume_init() };
    Ok(u64::from(info.tcpi_unacked))
}

/// `shutdown(2)` on a descriptor known only by number (a registered connection, which its
/// owner keeps open while this runs).
pub(crate) fn shutdown(fd: RawFd, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => socket::Shutdown::Read,
        Shutdown::Write => socket::Shutdown::Write,
        Shutdown::Both => socket::Shutdown::Both,
    };
    socket::shutdown(fd, how).map_err(io::Error::from)
}

/// The pid, uid and gid of the process at the other end of a Unix connection
/// (`SO_PEERCRED`), as they were when it connected.
pub(crate) fn peer_credentials(stream: &UnixStream) -> io::Result<(i32, u32, u32)> {
    let creds = socket::getsockopt(stream, sockopt::PeerCredentials)?;
    Ok((creds.pid(), creds.uid(), creds.gid()))
}

/// Sets `TCP_NODELAY` (if `nodelay`) and the read and write timeouts (if given) on a
/// socket; on a TCP listener, the connections it accepts inherit them.
pub(crate) fn set_connection_options(
    socket: &impl AsFd,
    nodelay: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
) -> io::Result<()> {
    let socket = socket2::SockRef::from(socket);
    if nodelay {
        socket.set_nodelay(true)?;
    }
    // Rounded up to the microsecond, as std does: a timeval of zero means no timeout.
    let at_least_1us = |t: Duration| t.max(Duration::from_micros(1));
    if let Some(timeout) = read_timeout {
        socket.set_read_timeout(Some(at_least_1us(timeout)))?;
    }
    if let Some(timeout) = write_timeout {
        socket.set_write_timeout(Some(at_least_1us(timeout)))?;
    }
    Ok(())
}

/// The read and write timeouts set on a socket (`None` for none, or when they cannot be read).
#[cfg(feature = "http")]
pub(crate) fn timeouts(socket: &impl AsFd) -> (Option<Duration>, Option<Duration>) {
    let socket = socket2::SockRef::from(socket);
    (
        socket.read_timeout().ok().flatten(),
        socket.write_timeout().ok().flatten(),
    )
}

/// Whether `accept(2)` failed for lack of descriptors or memory (`EMFILE`, `ENFILE`,
/// `ENOBUFS`, `ENOMEM`): the listening socket stays readable, so retrying at once would spin.
pub(crate) fn is_resource_shortage(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS | nix::libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn listen_queue_counts_the_connections_waiting_to_be_accepted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(listen_queue(listener.as_fd()).unwrap(), 0);
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The handshakes complete in the kernel: three wait to be accepted.
        assert_eq!(listen_queue(listener.as_fd()).unwrap(), 3);
        drop(clients);
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(listen_queue(unix.as_fd()).is_err(), "not TCP");
    }
}
