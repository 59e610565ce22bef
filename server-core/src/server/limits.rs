//! What the serving side tracks across requests: the cap on open connections
//! (`max_connections`) and the registry of live stream connections that a stop shuts down: the
//! idle ones at once, the others at the close deadline.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nix::sys::socket::{shutdown, Shutdown};
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

/// Bytes held by buffered request bodies across a server's connections (in this process), so
/// that many clients each sending a large body cannot together take the server's memory.
#[cfg(feature = "http")]
#[derive(Debug, Default)]
pub(crate) struct Budget {
    held: AtomicUsize,
}

#[cfg(feature = "http")]
impl Budget {
    /// Takes `bytes` of the budget until the lease drops, if `max` allows it.
    pub(crate) fn take(&self, bytes: usize, max: usize) -> Option<Lease<'_>> {
        let mut held = self.held.load(Ordering::SeqCst);
        loop {
            let after = held.checked_add(bytes).filter(|&after| after <= max)?;
            match self
                .held
                .compare_exchange(held, after, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    return Some(Lease {
                        budget: self,
                        bytes,
                    })
                }
                Err(now) => held = now,
            }
        }
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

/// Part of a [`Budget`], given back on drop.
#[cfg(feature = "http")]
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    budget: &'a Budget,
    bytes: usize,
}

#[cfg(feature = "http")]
impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::SeqCst);
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
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Set once a stop has closed the idle connections: later ones are refused idleness.
    closing: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    fd: RawFd,
    idle: bool,
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
    pub(crate) fn register(&self, fd: RawFd) -> Registered<'_> {
        let mut slots = self.slots.lock();
        let entry = Some(Entry { fd, idle: false });
        let key = match slots.free.pop() {
            Some(key) => {
                if let Some(slot) = slots.entries.get_mut(key) {
                    *slot = entry;
                }
                key
            }
            None => {
                slots.entries.push(entry);
                slots.entries.len() - 1
            }
        };
        Registered {
            registry: self,
            key,
        }
    }

    /// Shuts down the connections `reach` names; returns how many. [`Reach::Idle`] also
    /// marks the registry closing: a connection that turns idle later is refused (see
    /// [`Registered::set_idle`]), until [`reopen`](Self::reopen).
    pub(crate) fn shutdown(&self, reach: Reach) -> usize {
        let mut slots = self.slots.lock();
        if reach == Reach::Idle {
            slots.closing = true;
        }
        let how = match reach {
            Reach::Idle | Reach::Reads => Shutdown::Read,
            Reach::All => Shutdown::Both,
        };
        let mut count = 0;
        for entry in slots.entries.iter().flatten() {
            if reach == Reach::Idle && !entry.idle {
                continue;
            }
            match shutdown(entry.fd, how) {
                Ok(()) => count += 1,
                Err(e) => {
                    log::debug!(target: "socketserver::server", "shutting down connection fd {}: {e}", entry.fd);
                }
            }
        }
        count
    }

    /// Lets connections turn idle again (the server serves again after a stop).
    pub(crate) fn reopen(&self) {
        self.slots.lock().closing = false;
    }
}

/// A registered connection; removed from the registry on drop.
#[derive(Debug)]
pub(crate) struct Registered<'a> {
    registry: &'a Registry,
    key: usize,
}

impl Registered<'_> {
    /// Marks the connection idle or busy. Turning idle fails (`false`) once a stop has closed
    /// the idle connections: the caller should end the connection rather than wait.
    pub(crate) fn set_idle(&self, idle: bool) -> bool {
        let mut slots = self.registry.slots.lock();
        if idle && slots.closing {
            return false;
        }
        if let Some(Some(entry)) = slots.entries.get_mut(self.key) {
            entry.idle = idle;
        }
        true
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut slots = self.registry.slots.lock();
        if let Some(slot) = slots.entries.get_mut(self.key) {
            *slot = None;
            slots.free.push(self.key);
        }
    }
}
