//! Parked connections: stream connections waiting, between requests, for their client's next
//! bytes, watched by the serving loop instead of a worker (Apache's event MPM; issue 17).
//! A TLS handshake waiting for the client's next flight is parked the same way (the
//! pipeline's `Open::proceed`), under the handshake's deadline.
//!
//! A handler that has answered everything its client sent asks to park
//! ([`StreamRequest`](crate::StreamRequest)'s park slot, used by the HTTP layer between
//! keep-alive requests) and returns. The pipeline then puts the connection, with its handler,
//! into the server's [`Lot`]: an epoll instance plus a table of what resumes each connection.
//! The serving loop polls the epoll descriptor beside its listening socket; when a parked
//! connection turns readable (its next request, or the client's close) the loop takes it out
//! and hands it to the strategy as a job, which calls the same handler's `handle` again. So a
//! connection costs a worker only while it has a request to serve, and a pool of a few
//! workers serves thousands of keep-alive clients.
//!
//! A strategy with threads of its own can take the lot's connections itself
//! ([`Strategy::take_parked`](crate::Strategy::take_parked); the [`Pool`](crate::Pool) does):
//! its idle workers wait in `epoll_wait` on the lot, so under load a worker that finishes a
//! request finds the next ready connection without sleeping (leader/follower, as tokio's
//! workers poll their connections), instead of two wake-ups per request through the loop.
//! The serving loop then leaves the lot's readiness to them and only expires and closes.
//!
//! Each connection is registered once (`EPOLLONESHOT`): parking again re-arms it with one
//! `epoll_ctl`, and it is deleted when the connection ends. An event names its slot and the
//! slot's generation, so an event that arrives after its connection left (closed at a stop or
//! an idle timeout) cannot resume the connection that took the slot since.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::Mutex;

use crate::strategy::Job;
use crate::sys;

/// A parked connection: its descriptor, and what resumes it.
pub(crate) trait Parked: Send {
    /// The connection's descriptor, which the lot watches.
    fn fd(&self) -> BorrowedFd<'_>;

    /// Serves the connection again (`Wake::Readable`) or ends it (`Wake::Close`); `true` if
    /// that went well.
    fn resume(self: Box<Self>, wake: Wake) -> bool;

    /// Whether it waits between requests, so a stop closes it at once (its client retries),
    /// rather than in the middle of one (a TLS handshake), which a stop still serves within
    /// the grace period, as a request already running.
    fn idle(&self) -> bool {
        true
    }
}

/// What the lot holds and gives back.
pub(crate) type Resume = Box<dyn Parked>;

/// Why a parked connection is resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Its client sent bytes (or closed): serve it.
    Readable,
    /// Its idle time ran out, or the server closes: end it (the handler's `finish`, then close).
    Close,
}

/// The server's parked connections.
#[derive(Debug)]
pub(crate) struct Lot {
    epoll: Epoll,
    /// Counts [`ParkedConnections::notify`] calls not yet taken (a semaphore): in the epoll
    /// instance under [`NOTIFY`], one-shot, so each one wakes one waiting thread (see
    /// [`Lot::claim`]).
    notify: EventFd,
    table: Mutex<Table>,
    /// How many are parked now (read without the lock, for the metrics and the loop).
    parked: AtomicUsize,
    /// Set when the server closes: later connections are refused a place. Written under the
    /// table's lock, so that no connection is parked after [`close`](Self::close) took them
    /// all; read without it on every request.
    closing: AtomicBool,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// The earliest idle deadline among the parked (`None`: none has one), so the loop's
    /// look for expired connections costs nothing until one is due.
    earliest: Option<Instant>,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// A parked connection and when it must be ended.
pub(crate) struct Entry {
    pub(crate) resume: Resume,
    /// Its idle timeout, handshake deadline or first request's timeout.
    pub(crate) deadline: Option<Instant>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("slots", &self.slots.len())
            .field("free", &self.free.len())
            .finish()
    }
}

/// Most parked connections resumed per look, so that new connections are taken too.
pub(crate) const MAX_RESUMED_PER_WAKE: usize = 64;

/// The notification eventfd's token in the epoll instance; no slot's token (its index would
/// be `u32::MAX`, and a table never has that many slots).
const NOTIFY: u64 = u64::MAX;

/// How long [`Lot::wait`] pauses after `epoll_wait` failed.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// How the notification eventfd is watched. One-shot: level-triggered, each token woke one
/// thread and then, as the event stayed ready until that thread read it, another, which found
/// nothing (2.2 reads per notification, more than half of them failing, measured with
/// `strace -c` under TLS handshakes on a pool). One-shot, the thread that gets the event takes
/// a token and re-arms it, which wakes the next thread only if tokens are left.
const NOTIFY_FLAGS: EpollFlags = EpollFlags::EPOLLIN.union(EpollFlags::EPOLLONESHOT);

impl Lot {
    /// An empty lot with an epoll instance of its own.
    pub(crate) fn new() -> io::Result<Lot> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let flags = EfdFlags::EFD_SEMAPHORE | EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC;
        let notify = EventFd::from_flags(flags)?;
        epoll.add(&notify, EpollEvent::new(NOTIFY_FLAGS, NOTIFY))?;
        Ok(Lot {
            epoll,
            notify,
            table: Mutex::new(Table::default()),
            parked: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        })
    }

    /// The descriptor the loop polls: readable when a parked connection is.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }

    /// How many connections are parked now.
    pub(crate) fn len(&self) -> usize {
        self.parked.load(Ordering::Relaxed)
    }

    /// Parks a connection until it is readable or `deadline` passes; `watched` says whether
    /// it was parked before (then it is re-armed, else added). Gives it back when the lot
    /// refuses it (the server closes, or epoll failed): the caller ends it.
    pub(crate) fn park(
        &self,
        parked: Resume,
        watched: bool,
        deadline: Option<Instant>,
    ) -> Result<(), Resume> {
        let mut table = self.table.lock();
        if self.is_closing() {
            return Err(parked);
        }
        let index = match table.free.pop() {
            Some(index) => index,
            None => {
                table.slots.push(Slot::default());
                table.slots.len() - 1
            }
        };
        let Table {
            slots, earliest, ..
        } = &mut *table;
        let Some(slot) = slots.get_mut(index) else {
            return Err(parked);
        };
        slot.generation = slot.generation.wrapping_add(1);
        let token = token(index, slot.generation);
        // Armed under the lock, with the entry in place: the loop takes it only after.
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT;
        let mut event = EpollEvent::new(flags, token);
        let fd = parked.fd();
        let armed = if watched {
            self.epoll
                .modify(fd, &mut event)
                .or_else(|_| self.epoll.add(fd, event))
        } else {
            self.epoll.add(fd, event)
        };
        if let Err(e) = armed {
            log::warn!(target: "socketserver::server", "cannot watch an idle connection: {e}");
            table.free.push(index);
            return Err(parked);
        }
        if let Some(d) = deadline {
            *earliest = Some(earliest.map_or(d, |e| e.min(d)));
        }
        slot.entry = Some(Entry {
            resume: parked,
            deadline,
        });
        drop(table);
        self.parked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether the server closes: a connection in the middle of a request (a TLS handshake,
    /// or a new connection waiting for its first request) is then served on its worker to
    /// the end, not parked again.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Ends a connection [`park`](Self::park) gave back: an idle one is closed; once the
    /// server closes, one in the middle of a request (a TLS handshake, a first request on its
    /// way) is served to the end on this thread instead, as the stop promises (it is not
    /// offered the lot again, so this does not come back here).
    pub(crate) fn refused(&self, parked: Resume) {
        let wake = if self.is_closing() && !parked.idle() {
            Wake::Readable
        } else {
            Wake::Close
        };
        parked.resume(wake);
    }

    /// Stops watching `fd` for good (its connection ends).
    pub(crate) fn forget(&self, fd: BorrowedFd<'_>) {
        let _ = self.epoll.delete(fd);
    }

    /// Takes the connections that turned readable, at most [`MAX_RESUMED_PER_WAKE`], each with
    /// its deadline (for parking it again); never waits.
    pub(crate) fn ready(&self) -> Vec<Entry> {
        if self.len() == 0 {
            return Vec::new();
        }
        let mut events = [EpollEvent::empty(); MAX_RESUMED_PER_WAKE];
        let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(e) => {
                log::debug!(target: "socketserver::server", "epoll_wait: {e}");
                0
            }
        };
        events
            .get(..n)
            .unwrap_or_default()
            .iter()
            .filter_map(|event| self.take(event.data()))
            .collect()
    }

    /// The earliest deadline among the parked, or one a little earlier (a connection taken
    /// out since keeps its place until [`expired`](Self::expired) looks).
    pub(crate) fn earliest(&self) -> Option<Instant> {
        self.table.lock().earliest
    }

    /// Takes the connections whose idle deadline has passed.
    pub(crate) fn expired(&self, now: Instant) -> Vec<Resume> {
        let mut table = self.table.lock();
        if table.earliest.is_none_or(|e| e > now) {
            return Vec::new();
        }
        let mut earliest = None;
        let mut out = Vec::new();
        let Table { slots, free, .. } = &mut *table;
        for (index, slot) in slots.iter_mut().enumerate() {
            let Some(deadline) = slot.entry.as_ref().and_then(|e| e.deadline) else {
                continue;
            };
            if deadline <= now {
                if let Some(entry) = slot.entry.take() {
                    out.push(entry.resume);
                    free.push(index);
                }
            } else {
                earliest = Some(earliest.map_or(deadline, |e: Instant| e.min(deadline)));
            }
        }
        table.earliest = earliest;
        self.parked.fetch_sub(out.len(), Ordering::Relaxed);
        out
    }

    /// Takes every parked connection, and refuses those that come later: the server closes.
    pub(crate) fn close(&self) -> Vec<Resume> {
        let mut table = self.table.lock();
        self.closing.store(true, Ordering::Release);
        table.earliest = None;
        let Table { slots, free, .. } = &mut *table;
        let mut out = Vec::new();
        for (index, slot) in slots.iter_mut().enumerate() {
            if let Some(entry) = slot.entry.take() {
                out.push(entry.resume);
                free.push(index);
            }
        }
        self.parked.fetch_sub(out.len(), Ordering::Relaxed);
        out
    }

    /// Waits until a parked connection turns readable (taken out of the lot) or a
    /// notification comes, or `deadline` passes (`None`: no deadline). As
    /// [`sys::sleep_until`] does, an interrupted or rounded-down wait goes on with the time
    /// that is left, and so does one woken by an event another thread claimed first.
    ///
    /// One event per `epoll_wait`: a thread that took several ready connections would serve
    /// them one after another while other threads sleep (measured: p99 two to three times
    /// worse, throughput no better).
    fn wait(&self, deadline: Option<Instant>) -> Wakeup {
        let mut events = [EpollEvent::empty()];
        loop {
            match self
                .epoll
                .wait(&mut events, sys::poll_timeout_until(deadline))
            {
                Ok(0) if deadline.is_some_and(|d| Instant::now() < d) => continue,
                Ok(0) => return Wakeup::TimedOut,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    // Not expected (the instance is ours and open): pause, so that a thread
                    // that waits again at once does not spin on the failure.
                    log::error!(target: "socketserver::server", "epoll_wait on idle connections: {e}");
                    std::thread::sleep(ERROR_PAUSE);
                    return Wakeup::TimedOut;
                }
            }
            if let Some(wakeup) = self.claim(events[0].data()) {
                return wakeup;
            }
        }
    }

    /// What an event's token gives this thread: a connection to serve, a notification, or
    /// nothing (another thread took the notification, or the connection left).
    fn claim(&self, token: u64) -> Option<Wakeup> {
        if token == NOTIFY {
            let taken = self.notify.read().is_ok();
            let mut event = EpollEvent::new(NOTIFY_FLAGS, NOTIFY);
            if let Err(e) = self.epoll.modify(&self.notify, &mut event) {
                log::error!(target: "socketserver::server", "re-arming the idle connections' notifications: {e}");
            }
            return taken.then_some(Wakeup::Notified);
        }
        self.take(token)
            .map(|entry| Wakeup::Request(Job::resumed(entry.resume)))
    }

    /// The entry an event's token names, if it is still the one the event was for.
    fn take(&self, token: u64) -> Option<Entry> {
        let (index, generation) = untoken(token);
        let mut table = self.table.lock();
        let slot = table.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let entry = slot.entry.take()?;
        table.free.push(index);
        drop(table);
        self.parked.fetch_sub(1, Ordering::Relaxed);
        Some(entry)
    }
}

/// The server's parked connections, handed to a strategy whose own threads take them
/// ([`Strategy::take_parked`](crate::Strategy::take_parked)).
///
/// Threads wait in [`wait`](Self::wait) until a parked connection's client sends its next
/// request; the connection comes out as a [`Job`] that serves it (and parks it again, or
/// closes it). Any number of threads may wait at once: each ready connection goes to one of
/// them, and a thread that finds one ready does not sleep at all, so a busy pool serves
/// request after request with no wake-up between them. [`notify`](Self::notify) wakes one
/// waiting thread, for work that did not come through the lot (a new connection in the
/// strategy's own queue). Cloning gives another handle on the same connections.
#[derive(Clone)]
pub struct ParkedConnections {
    lot: Arc<Lot>,
}

/// What [`ParkedConnections::wait`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Wakeup {
    /// A parked connection's client sent more: run the job to serve it.
    Request(Job),
    /// A [`notify`](ParkedConnections::notify) call, taken by this thread alone.
    Notified,
    /// The timeout passed (or `epoll_wait` failed, which is logged).
    TimedOut,
}

impl ParkedConnections {
    pub(crate) fn new(lot: Arc<Lot>) -> ParkedConnections {
        ParkedConnections { lot }
    }

    /// Waits until a parked connection turns readable or a notification comes, at most
    /// `timeout` (`None`: no limit).
    pub fn wait(&self, timeout: Option<Duration>) -> Wakeup {
        self.lot.wait(timeout.map(sys::deadline_in))
    }

    /// Wakes one thread waiting in [`wait`](Self::wait) (or the next to call it), which gets
    /// [`Wakeup::Notified`]. Each call is one wake-up: `n` calls wake `n` threads.
    pub fn notify(&self) {
        if let Err(e) = self.lot.notify.write(1) {
            log::error!(target: "socketserver::server", "waking a thread for idle connections: {e}");
        }
    }

    /// Takes one pending notification without waiting: for a thread that found, by itself,
    /// the work a notification was sent for (a queued request), so that no other thread is
    /// woken for it. `false` if none was pending.
    pub fn take_notification(&self) -> bool {
        self.lot.notify.read().is_ok()
    }

    /// How many connections are parked now.
    pub fn len(&self) -> usize {
        self.lot.len()
    }

    /// Whether no connection is parked now.
    pub fn is_empty(&self) -> bool {
        self.lot.len() == 0
    }

    /// Whether both handles reach the same connections.
    pub fn same_as(&self, other: &ParkedConnections) -> bool {
        Arc::ptr_eq(&self.lot, &other.lot)
    }
}

impl fmt::Debug for ParkedConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParkedConnections")
            .field("parked", &self.lot.len())
            .finish()
    }
}

/// An epoll event's data: the slot's index and generation.
fn token(index: usize, generation: u32) -> u64 {
    (index as u64) << 32 | u64::from(generation)
}

fn untoken(token: u64) -> (usize, u32) {
    ((token >> 32) as usize, token as u32)
}

#[cfg(test)]
mod tests;
