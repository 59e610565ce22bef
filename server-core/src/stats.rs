//! Server statistics: what a handler or an operator can read while the server runs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A snapshot of a server's counters, from [`Server::stats`](crate::Server::stats) or
/// [`ServerContext::stats`](crate::ServerContext::stats).
///
/// Requests that run in forked child processes are counted by the forking strategy, not here:
/// a child's counters live in the child's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests whose handler is running now.
    pub active: usize,
    /// Requests whose handler finished with every stage succeeding.
    pub succeeded: u64,
    /// Requests that ended with an error or a panic (each also went to `handle_error`).
    pub failed: u64,
    /// Requests refused before a handler ran, for any reason: `verify_request` said no, an
    /// oversized datagram was dropped, the overload policy turned a client away (also counted
    /// in `overloaded` and `over_client_limit`), a PROXY header was missing or came from an
    /// untrusted peer.
    pub rejected: u64,
    /// Clients turned away at `max_connections` by the [`Overload`](crate::Overload) policy
    /// `Reject` or `Close` (with `Wait` they wait in the backlog and are not counted).
    pub overloaded: u64,
    /// Clients turned away because their address had
    /// [`max_connections_per_client`](crate::ServerBuilder::max_connections_per_client)
    /// connections open.
    pub over_client_limit: u64,
    /// Clients that had already closed their connection, without sending anything, when the
    /// server took it from the listen backlog (they gave up waiting): closed without costing a
    /// slot or a handler. Looked for only while a `max_connections` cap is set, when clients
    /// may wait. Not counted in `rejected`.
    pub gave_up: u64,
    /// Requests taken from the socket and not yet finished in this process: running, or queued
    /// for a worker. This is what the `max_connections` builder option caps. With
    /// [`Forking`](crate::Forking), a request leaves this count once handed to its child.
    pub open: usize,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    active: AtomicUsize,
    succeeded: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    overloaded: AtomicU64,
    over_client_limit: AtomicU64,
    gave_up: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            active: self.active.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
            over_client_limit: self.over_client_limit.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            open: 0,
        }
    }

    pub(crate) fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client that gave up waiting in the backlog.
    pub(crate) fn gave_up(&self) {
        self.gave_up.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client turned away at `max_connections` (`per_client`: at its own cap).
    pub(crate) fn turn_away(&self, per_client: bool) {
        self.reject();
        let reason = if per_client {
            &self.over_client_limit
        } else {
            &self.overloaded
        };
        reason.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request as running until the guard is dropped with its outcome.
    pub(crate) fn start(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active {
            counters: self,
            ok: false,
        }
    }
}

/// A running request; counted as failed unless [`Active::succeeded`] is called.
#[derive(Debug)]
pub(crate) struct Active<'a> {
    counters: &'a Counters,
    ok: bool,
}

impl Active<'_> {
    pub(crate) fn succeeded(&mut self, ok: bool) {
        self.ok = ok;
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let finished = if self.ok {
            &self.counters.succeeded
        } else {
            &self.counters.failed
        };
        finished.fetch_add(1, Ordering::Relaxed);
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
    }
}
