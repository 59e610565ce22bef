//! The accept queue of a TCP listening socket, where Linux reports it: in `/proc/net/tcp` and
//! `/proc/net/tcp6`, a listening socket's `rx_queue` is the connections waiting to be accepted
//! (what `ss -lt` shows as Recv-Q).

use std::os::fd::{AsRawFd, BorrowedFd};

/// Connections waiting in the accept queue of the TCP listening socket `fd` (for a holder of
/// the socket itself, such as the supervisor of the process model).
pub(crate) fn tcp_backlog(fd: BorrowedFd<'_>) -> Option<u64> {
    tcp_backlog_by_inode(socket_inode(fd)?)
}

/// The inode number of a socket, which names it in `/proc/net/tcp`.
pub(crate) fn socket_inode(fd: BorrowedFd<'_>) -> Option<u64> {
    nix::sys::stat::fstat(fd.as_raw_fd()).ok().map(|stat| stat.st_ino)
}

/// Connections waiting in the accept queue of the TCP listening socket with inode `inode`;
/// `None` for other sockets, once it is closed, or where `/proc` does not tell.
///
/// By inode, not through a descriptor: a second descriptor would keep the socket open after
/// the server closes it, and the kernel would go on queueing connections nobody accepts.
pub(crate) fn tcp_backlog_by_inode(inode: u64) -> Option<u64> {
    let inode = inode.to_string();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|text| listening_queue(&text, &inode))
}

/// Finds the listening socket with `inode` in a `/proc/net/tcp` table: how many wait.
fn listening_queue(table: &str, inode: &str) -> Option<u64> {
    const LISTEN: &str = "0A";
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) != Some(&LISTEN) || fields.get(9) != Some(&inode) {
            return None;
        }
        let (_, waiting) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(waiting, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn reads_a_listening_sockets_queue_from_proc() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let inode = socket_inode(listener.as_fd()).unwrap();
        assert_eq!(tcp_backlog_by_inode(inode), Some(0));
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The handshakes complete in the kernel: three wait to be accepted.
        assert_eq!(tcp_backlog_by_inode(inode), Some(3));
        drop(clients);
        drop(listener);
        assert_eq!(tcp_backlog_by_inode(inode), None, "gone with the socket");
    }

    #[test]
    fn parses_a_table_line() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                     0: 0100007F:1F90 00000000:0000 0A 00000400:00000002 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0\n";
        assert_eq!(listening_queue(table, "4242"), Some(2));
        assert_eq!(listening_queue(table, "4243"), None);
    }
}
