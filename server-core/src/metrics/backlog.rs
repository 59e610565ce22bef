//! The accept queue of a TCP listening socket, where Linux reports it (`TCP_INFO`, through
//! [`crate::sys::socket::listen_queue`]).

use std::os::fd::BorrowedFd;

/// Connections waiting in the accept queue of the TCP listening socket `fd`; `None` for other
/// sockets.
pub(crate) fn tcp_backlog(fd: BorrowedFd<'_>) -> Option<u64> {
    crate::sys::socket::listen_queue(fd).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reads_a_listening_sockets_queue() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(tcp_backlog(listener.as_fd()), Some(0));
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The handshakes complete in the kernel: three wait to be accepted.
        assert_eq!(tcp_backlog(listener.as_fd()), Some(3));
        drop(clients);
        let unix = std::os::unix::net::UnixListener::bind(
            std::env::temp_dir().join(format!("backlog-{}.sock", std::process::id())),
        );
        if let Ok(unix) = unix {
            assert_eq!(tcp_backlog(unix.as_fd()), None, "not TCP");
            if let Ok(address) = unix.local_addr() {
                if let Some(path) = address.as_pathname() {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}
