//! Live counters of the requests a strategy runs, readable from any thread.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Live counters of the requests a strategy has running, tracked and finished.
///
/// Every strategy but [`Serial`](super::Serial) keeps one, and hands out a clone with
/// [`Strategy::activity`](super::Strategy::activity) (`server.strategy().activity()`): it
/// reads the same counters from any thread while the server serves elsewhere, for metrics, or
/// for a test that waits until every request has ended. Cloning is cheap (an `Arc`).
///
/// The server keeps counters of its own, whatever the strategy ([`Server::stats`](crate::Server::stats)); requests
/// served in forked child processes are counted only here, from their exit statuses, since a
/// child's counters live in the child's memory.
///
/// What it counts are the strategy's jobs. Where connections are parked
/// ([`Strategy::parks_idle`](super::Strategy::parks_idle)), a connection's TLS handshake and
/// its wait for a first HTTP request may each be a job of their own, counted here (as
/// succeeded unless the handshake failed) but not as requests in the server's `Stats`.
///
/// The counters are updated with relaxed atomics: each value is exact, but two values read one
/// after the other may come from slightly different moments.
#[derive(Clone, Default)]
pub struct Activity {
    inner: Arc<ActivityCounters>,
}

#[derive(Default)]
struct ActivityCounters {
    active: AtomicUsize,
    tracked: AtomicUsize,
    started: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

impl Activity {
    /// Requests running now: handler threads running a request (threading), worker threads
    /// busy (pool), or child processes not yet reaped (forking).
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// What the strategy holds on to: join handles of handler threads, running a request or
    /// waiting for the next one (threading), worker threads (pool), or child pids waiting to be
    /// reaped (forking).
    ///
    /// This stays bounded by what runs at once, never by how many requests were served
    /// (Python's bpo-37193 kept every finished thread until the server closed).
    pub fn tracked(&self) -> usize {
        self.inner.tracked.load(Ordering::Relaxed)
    }

    /// Requests handed to a thread, worker or child process so far.
    pub fn started(&self) -> u64 {
        self.inner.started.load(Ordering::Relaxed)
    }

    /// Requests that ended with every handler method succeeded (for forking: children that
    /// exited with status 0).
    pub fn succeeded(&self) -> u64 {
        self.inner.succeeded.load(Ordering::Relaxed)
    }

    /// Requests that ended with an error or a panic reported to `handle_error` (for forking:
    /// children that exited with a non-zero status or were killed by a signal).
    pub fn failed(&self) -> u64 {
        self.inner.failed.load(Ordering::Relaxed)
    }

    /// Requests that have ended, one way or the other.
    pub fn finished(&self) -> u64 {
        self.succeeded() + self.failed()
    }

    pub(crate) fn add_active(&self) {
        self.inner.active.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes back an [`add_active`](Self::add_active) for a request that never ran.
    pub(crate) fn remove_active(&self) {
        self.inner.active.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn set_active(&self, n: usize) {
        self.inner.active.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_tracked(&self, n: usize) {
        self.inner.tracked.store(n, Ordering::Relaxed);
    }

    pub(crate) fn add_started(&self) {
        self.inner.started.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how a request ended.
    pub(crate) fn record(&self, ok: bool) {
        let counter = if ok {
            &self.inner.succeeded
        } else {
            &self.inner.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how a request ended; it no longer counts as active.
    pub(crate) fn end(&self, ok: bool) {
        self.record(ok);
        self.inner.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Activity")
            .field("active", &self.active())
            .field("tracked", &self.tracked())
            .field("started", &self.started())
            .field("succeeded", &self.succeeded())
            .field("failed", &self.failed())
            .finish()
    }
}
