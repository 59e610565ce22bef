//! Admission: how much a server takes in at once. A [`Gate`] counts the requests taken and not
//! yet finished (the `max_connections` cap, and the per-client cap); a [`Budget`] counts the bytes that buffered HTTP
//! request bodies hold across connections.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::addr::Address;
use crate::sys::wake;

/// Counts the requests taken and not yet finished in this process, and wakes the serving loop
/// when one finishes while the count is at the cap.
#[derive(Debug)]
pub(crate) struct Gate {
    max: Option<usize>,
    open: AtomicUsize,
    /// With a per-client cap: the cap, and the connections open per client address (an entry
    /// is removed when its count is back to 0, so the map holds at most `open` entries).
    per_client: Option<(usize, Mutex<HashMap<IpAddr, usize>>)>,
    /// The serving loop sleeps in `poll(2)` on it while at the cap.
    room_rx: wake::Wait,
    /// Notified when a request ends with the count at the cap.
    room_tx: wake::Notify,
}

impl Gate {
    pub(crate) fn new(max: Option<usize>, per_client: Option<usize>) -> io::Result<Gate> {
        let (room_tx, room_rx) = wake::pair()?;
        Ok(Gate {
            max,
            open: AtomicUsize::new(0),
            per_client: per_client.map(|cap| (cap, Mutex::new(HashMap::new()))),
            room_rx,
            room_tx,
        })
    }

    /// A gate with the same cap and a wake-up pair of its own (for a forked process).
    pub(crate) fn renewed(&self) -> io::Result<Gate> {
        Gate::new(self.max, self.per_client.as_ref().map(|(cap, _)| *cap))
    }

    /// Requests taken and not yet finished.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The `max_connections` cap.
    pub(crate) fn max(&self) -> Option<usize> {
        self.max
    }

    /// Whether the loop may take another request now.
    pub(crate) fn has_room(&self) -> bool {
        self.max.is_none_or(|max| self.open() < max)
    }

    /// Counts one more request from `client` until the returned guard is dropped; `None`
    /// (and nothing counted) if that client is at its per-client cap.
    pub(crate) fn enter(self: &Arc<Self>, client: &Address) -> Option<Admitted> {
        let counted = match (&self.per_client, client.as_inet()) {
            (Some((cap, clients)), Some(address)) => {
                let mut clients = clients.lock();
                let open = clients.entry(address.ip()).or_insert(0);
                if *open >= *cap {
                    return None;
                }
                *open += 1;
                Some(address.ip())
            }
            _ => None,
        };
        self.open.fetch_add(1, Ordering::SeqCst);
        Some(Admitted {
            gate: Arc::clone(self),
            client: counted,
        })
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
pub(crate) struct Admitted {
    gate: Arc<Gate>,
    /// The client address counted against the per-client cap.
    client: Option<IpAddr>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let (Some(ip), Some((_, clients))) = (self.client, &self.gate.per_client) {
            let mut clients = clients.lock();
            if let Some(open) = clients.get_mut(&ip) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    clients.remove(&ip);
                }
            }
        }
        let before = self.gate.open.fetch_sub(1, Ordering::SeqCst);
        if self.gate.max.is_some_and(|max| before >= max) {
            self.gate.room_tx.notify();
        }
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
