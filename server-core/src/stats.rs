//! Server statistics: what a handler or an operator can read while the server runs.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The upper bounds of the request duration histogram's buckets, in seconds
/// ([`Durations`]): from half a millisecond, as requests here are often that fast, to 10 s.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How long requests took, from the start of their handler to the end of their response: a
/// histogram with the buckets of [`DURATION_BUCKETS`], as Prometheus keeps one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Durations {
    /// Requests that took at most `DURATION_BUCKETS[i]` seconds (cumulative, as Prometheus'
    /// `le` buckets: each counts the ones before it too).
    pub at_most: [u64; DURATION_BUCKETS.len()],
    /// Every request measured (the `+Inf` bucket).
    pub count: u64,
    /// Their durations added up, in seconds.
    pub sum_seconds: f64,
}

/// A snapshot of a server's counters, from [`Server::stats`](crate::Server::stats) or
/// [`ServerContext::stats`](crate::ServerContext::stats).
///
/// Requests that run in forked child processes are counted by the forking strategy, not here:
/// a child's counters live in the child's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
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
    /// slot or a handler. Looked for only after the server was full (at `max_connections`,
    /// or with no room in its strategy or queue), when clients may have waited, until the
    /// backlog is empty again. Not counted in `rejected`.
    pub gave_up: u64,
    /// Requests whose connection was shut down because they ran past
    /// [`max_request_time`](crate::ServerBuilder::max_request_time) (they also end as
    /// `failed` or `succeeded`, as their handler does).
    pub cut_off: u64,
    /// Requests taken from the socket and not yet finished in this process: running, queued
    /// for a worker, or (stream connections) parked between requests. This is what the
    /// `max_connections` builder option caps. With
    /// [`Forking`](crate::Forking), a request leaves this count once handed to its child.
    pub open: usize,
    /// Connections parked between requests: idle keep-alive connections that the serving
    /// loop watches for their next request, holding no worker (see
    /// [`Strategy::parks_idle`](crate::Strategy::parks_idle)). Counted in `open` too.
    pub parked: usize,
    /// How long the finished requests took (`succeeded` and `failed` ones).
    pub durations: Durations,
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
    cut_off: AtomicU64,
    /// Finished requests per duration bucket (not cumulative; the last is over every bound).
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    /// Their durations added up, in nanoseconds.
    duration_nanos: AtomicU64,
}

impl Counters {
    fn durations(&self) -> Durations {
        let mut durations = Durations::default();
        let mut below = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            below += bucket.load(Ordering::Relaxed);
            if let Some(at_most) = durations.at_most.get_mut(i) {
                *at_most = below;
            }
        }
        durations.count = below;
        // Nanoseconds to seconds; an f64 is exact to 2^53 ns (104 days of requests).
        #[allow(clippy::cast_precision_loss)]
        let nanos = self.duration_nanos.load(Ordering::Relaxed) as f64;
        durations.sum_seconds = nanos / 1e9;
        durations
    }

    fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        if let Some(bucket) = self.buckets.get(bucket) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.duration_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            active: self.active.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            overloaded: self.overloaded.load(Ordering::Relaxed),
            over_client_limit: self.over_client_limit.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            cut_off: self.cut_off.load(Ordering::Relaxed),
            open: 0,
            parked: 0,
            durations: self.durations(),
        }
    }

    pub(crate) fn reject(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts requests cut off at `max_request_time`.
    pub(crate) fn cut_off(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.cut_off.fetch_add(n, Ordering::Relaxed);
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

    /// Counts a request as running until the guard is dropped with its outcome. In a child
    /// forked for the request its duration is not measured: the child's counters die with it
    /// (the forking strategy counts children from their exit statuses), and the clock's first
    /// read in a new process costs a page fault.
    pub(crate) fn start(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active {
            counters: self,
            ok: false,
            started: (!crate::sys::process::is_request_child()).then(Instant::now),
            counted: true,
        }
    }
}

/// A running request; counted as failed unless [`Active::succeeded`] is called.
#[derive(Debug)]
pub(crate) struct Active<'a> {
    counters: &'a Counters,
    ok: bool,
    /// `None` when the duration is not measured (in a forked request child).
    started: Option<Instant>,
    /// Whether it ends as a succeeded or failed request ([`Active::served_nothing`]: not).
    counted: bool,
}

impl Active<'_> {
    pub(crate) fn succeeded(&mut self, ok: bool) {
        self.ok = ok;
    }

    /// No request ran after all (a new connection's handler only asked to wait for the
    /// client's first bytes): neither an outcome nor a duration is recorded.
    pub(crate) fn served_nothing(&mut self) {
        self.started = None;
        self.counted = false;
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let finished = if self.ok {
            &self.counters.succeeded
        } else {
            &self.counters.failed
        };
        if self.counted {
            finished.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(started) = self.started {
            self.counters.record(started.elapsed());
        }
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
    }
}
