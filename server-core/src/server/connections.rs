//! The live stream connections of a server, which a stop shuts down: the idle ones at once,
//! the others at the close deadline.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::shutdown::ShutdownHandle;
use crate::sys;

/// The stream connections whose requests are running in this process, by raw fd, each marked
/// busy or idle.
///
/// A slab: a vector of slots and a free list, behind one lock, so registering and removing are
/// O(1) and take the lock for a few instructions. Only the fd number is kept (no `dup`, which
/// would cost a descriptor per connection); that is sound because an entry is removed, under the
/// lock, before its connection is closed, and [`shutdown`](Self::shutdown) works under the same
/// lock, so it never reaches a number the system has given to another file since.
///
/// "Idle" means the handler waits for the client's next request (an HTTP keep-alive connection
/// between requests): a stop closes such connections at once instead of waiting for the client
/// or the close deadline. See [`StreamRequest::set_idle`](crate::StreamRequest::set_idle).
#[derive(Debug, Default)]
pub(crate) struct Registry {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Set once a stop has closed the idle connections: later ones are refused idleness.
    closing: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    fd: RawFd,
    idle: bool,
    /// When it last turned busy: the start of the request it runs.
    busy_since: Instant,
    /// Shut down for running past the time limit (reported once).
    cut: bool,
}

/// Which registered connections [`Registry::shutdown`] reaches, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Idle connections, reading side: their handlers see end-of-file and end. (Bytes that
    /// arrived before are still read: Linux returns what is queued before end-of-file.)
    Idle,
    /// Every connection, reading side only: handlers blocked reading return, and one that owes
    /// a reply can still send it.
    Reads,
    /// Every connection, both directions: nothing more is read or written.
    All,
}

impl Registry {
    /// Records `fd` until the returned guard is dropped; drop the guard before closing the fd.
    /// The guard owns `handle`, whose registry this is, so that a parked connection can take
    /// it along.
    ///
    /// In a child forked for one request nothing is recorded: only the server's own process
    /// shuts connections down, in its own registry, and the child's copy is never read.
    pub(crate) fn register(handle: &ShutdownHandle, fd: RawFd) -> Registered {
        if sys::process::is_request_child() {
            return Registered { slot: None };
        }
        let mut table = handle.connections().table.lock();
        let entry = Some(Entry {
            fd,
            idle: false,
            busy_since: Instant::now(),
            cut: false,
        });
        let key = match table.free.pop() {
            Some(key) => {
                if let Some(slot) = table.entries.get_mut(key) {
                    *slot = entry;
                }
                key
            }
            None => {
                table.entries.push(entry);
                table.entries.len() - 1
            }
        };
        drop(table);
        Registered {
            slot: Some((handle.clone(), key)),
        }
    }

    /// Shuts down the connections `reach` names; returns how many. [`Reach::Idle`] also
    /// marks the registry closing: a connection that turns idle later is refused (see
    /// [`Registered::set_idle`]), until [`reopen`](Self::reopen).
    pub(crate) fn shutdown(&self, reach: Reach) -> usize {
        let mut table = self.table.lock();
        if reach == Reach::Idle {
            table.closing = true;
        }
        let how = match reach {
            Reach::Idle | Reach::Reads => std::net::Shutdown::Read,
            Reach::All => std::net::Shutdown::Both,
        };
        let mut count = 0;
        for entry in table.entries.iter().flatten() {
            if reach == Reach::Idle && !entry.idle {
                continue;
            }
            match sys::socket::shutdown(entry.fd, how) {
                Ok(()) => count += 1,
                Err(e) => {
                    log::debug!(target: "socketserver::server", "shutting down connection fd {}: {e}", entry.fd);
                }
            }
        }
        count
    }

    /// Shuts down, both ways, the connections whose request has run longer than `limit`
    /// (idle ones wait for a request and are not running one); returns how many, each counted
    /// once.
    pub(crate) fn cut_overdue(&self, limit: Duration) -> usize {
        let mut table = self.table.lock();
        let mut count = 0;
        for entry in table.entries.iter_mut().flatten() {
            if entry.idle || entry.cut || entry.busy_since.elapsed() <= limit {
                continue;
            }
            entry.cut = true;
            match sys::socket::shutdown(entry.fd, std::net::Shutdown::Both) {
                Ok(()) => count += 1,
                Err(e) => {
                    log::debug!(target: "socketserver::server", "cutting off connection fd {}: {e}", entry.fd);
                }
            }
        }
        count
    }

    /// Lets connections turn idle again (the server serves again after a stop).
    pub(crate) fn reopen(&self) {
        self.table.lock().closing = false;
    }
}

/// A registered connection; removed from the registry on drop.
#[derive(Debug)]
pub(crate) struct Registered {
    /// The server's handle, which holds the registry, and the connection's slot in it; `None`
    /// when not recorded (in a forked request child).
    slot: Option<(ShutdownHandle, usize)>,
}

impl Registered {
    /// Marks the connection idle or busy. Turning idle fails (`false`) once a stop has closed
    /// the idle connections: the caller should end the connection rather than wait. A
    /// connection not recorded (in a forked child, which no stop reaches) may always turn
    /// idle.
    pub(crate) fn set_idle(&self, idle: bool) -> bool {
        let Some((handle, key)) = &self.slot else {
            return true;
        };
        let mut table = handle.connections().table.lock();
        if idle && table.closing {
            return false;
        }
        if let Some(Some(entry)) = table.entries.get_mut(*key) {
            if entry.idle && !idle {
                // A new request on a kept-alive connection: its time starts now.
                entry.busy_since = Instant::now();
            }
            entry.idle = idle;
        }
        true
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let Some((handle, key)) = &self.slot else {
            return;
        };
        let mut table = handle.connections().table.lock();
        if let Some(slot) = table.entries.get_mut(*key) {
            *slot = None;
            table.free.push(*key);
        }
    }
}
