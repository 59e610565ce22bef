//! What the serving side tracks across requests: the cap on open connections
//! (`max_connections`) and the registry of live stream connections that closing shuts down at
//! its deadline.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::wake;

/// Counts the requests taken and not yet finished in this process, and wakes the serving loop
/// when one finishes while the count is at the cap.
#[derive(Debug)]
pub(crate) struct Gate {
    max: Option<usize>,
    open: AtomicUsize,
    /// The serving loop sleeps in `poll(2)` on it while at the cap.
    room_rx: wake::Wait,
    /// Notified when a request ends with the count at the cap.
    room_tx: wake::Notify,
}

impl Gate {
    pub(crate) fn new(max: Option<usize>) -> io::Result<Gate> {
        let (room_tx, room_rx) = wake::pair()?;
        Ok(Gate {
            max,
            open: AtomicUsize::new(0),
            room_rx,
            room_tx,
        })
    }

    /// Requests taken and not yet finished.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Whether the loop may take another request now.
    pub(crate) fn has_room(&self) -> bool {
        self.max.is_none_or(|max| self.open() < max)
    }

    /// Counts one more request until the slot is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> Slot {
        self.open.fetch_add(1, Ordering::SeqCst);
        Slot {
            gate: Arc::clone(self),
        }
    }

    /// The fd that becomes readable when a request ends at the cap.
    pub(crate) fn room_fd(&self) -> BorrowedFd<'_> {
        self.room_rx.fd()
    }

    /// Reads every pending wake-up byte.
    pub(crate) fn drain(&self) {
        self.room_rx.drain();
    }
}

/// One request counted by a [`Gate`]; dropping it ends the count and wakes a waiting loop.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Arc<Gate>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let before = self.gate.open.fetch_sub(1, Ordering::SeqCst);
        if self.gate.max.is_some_and(|max| before >= max) {
            self.gate.room_tx.notify();
        }
    }
}

/// The stream connections whose requests are running in this process, by raw fd.
///
/// A slab: a vector of slots and a free list, behind one lock, so registering and removing are
/// O(1) and take the lock for a few instructions. Only the fd number is kept (no `dup`, which
/// would cost a descriptor per connection); that is sound because an entry is removed, under the
/// lock, before its connection is closed, and [`shutdown_all`](Self::shutdown_all) works under the
/// same lock, so it never reaches a number the system has given to another file since.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    fds: Vec<Option<RawFd>>,
    free: Vec<usize>,
}

impl Registry {
    /// Records `fd` until the returned guard is dropped; drop the guard before closing the fd.
    pub(crate) fn register(&self, fd: RawFd) -> Registered<'_> {
        let mut slots = self.slots.lock();
        let key = match slots.free.pop() {
            Some(key) => {
                if let Some(slot) = slots.fds.get_mut(key) {
                    *slot = Some(fd);
                }
                key
            }
            None => {
                slots.fds.push(Some(fd));
                slots.fds.len() - 1
            }
        };
        Registered {
            registry: self,
            key,
        }
    }

    /// Shuts down the reading side of every registered connection, so that handlers blocked
    /// reading return (they see end-of-file); writing still works, so a handler that owes a
    /// reply can send it. Returns how many were shut down.
    pub(crate) fn shutdown_reads(&self) -> usize {
        let slots = self.slots.lock();
        let mut count = 0;
        for fd in slots.fds.iter().flatten() {
            match nix::sys::socket::shutdown(*fd, nix::sys::socket::Shutdown::Read) {
                Ok(()) => count += 1,
                Err(e) => {
                    log::debug!(target: "socketserver::server", "shutting down connection fd {fd}: {e}");
                }
            }
        }
        count
    }
}

/// A registered connection; removed from the registry on drop.
#[derive(Debug)]
pub(crate) struct Registered<'a> {
    registry: &'a Registry,
    key: usize,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut slots = self.registry.slots.lock();
        if let Some(slot) = slots.fds.get_mut(self.key) {
            *slot = None;
            slots.free.push(self.key);
        }
    }
}
