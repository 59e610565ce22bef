//! The figures a worker reports with each heartbeat (its [`Stats`] and its strategy's busy and
//! idle threads), how they cross the pipe, and how the supervisor adds them up.
//!
//! A worker's counters are cumulative over its life, so its latest report replaces the one
//! before. When a worker ends, its counters (not its gauges) move into the supervisor's
//! `retired` figures: the server's totals never go backwards when a worker is recycled, scaled
//! down or dies.

use super::scoreboard::ExitReason;
use crate::stats::{Durations, Stats, DURATION_BUCKETS};
use crate::strategy::Activity;

/// The `reason` label of `socketserver_worker_restarts_total`, one per [`ExitReason`] kind.
pub(super) const REASONS: [&str; 8] = [
    "exited",
    "killed",
    "boot_error",
    "heartbeat_timeout",
    "max_requests",
    "reload",
    "scaled_down",
    "stop",
];

/// `reason`'s place in [`REASONS`].
pub(super) fn reason_index(reason: &ExitReason) -> usize {
    match reason {
        ExitReason::Exited(_) => 0,
        ExitReason::Killed(_) => 1,
        ExitReason::BootError(_) => 2,
        ExitReason::HeartbeatTimeout => 3,
        ExitReason::MaxRequests => 4,
        ExitReason::Reload => 5,
        ExitReason::ScaledDown => 6,
        ExitReason::Stop => 7,
    }
}

/// How many `u64` a report is on the pipe: 9 counters and gauges of [`Stats`], busy and idle,
/// the histogram's buckets, its count and its sum.
const WORDS: usize = 9 + 2 + DURATION_BUCKETS.len() + 2;

/// What a worker reports: its figures as of now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Figures {
    /// The worker's server counters (`open` included).
    pub(super) stats: Stats,
    /// Threads (or the worker itself, with `Serial`) running a request.
    pub(super) busy: u64,
    /// Threads (or the worker itself, with `Serial`) waiting for one.
    pub(super) idle: u64,
}

impl Figures {
    /// The length of a report on the pipe, in bytes.
    pub(super) const LEN: usize = WORDS * 8;

    /// A worker's figures: its server's `stats`, and its strategy's `activity` (none for
    /// `Serial`, whose one thread is the worker itself: busy while a request runs).
    pub(super) fn of_worker(stats: Stats, activity: Option<&Activity>) -> Figures {
        let (busy, idle) = match activity {
            Some(activity) => {
                let busy = activity.active();
                (busy, activity.tracked().saturating_sub(busy))
            }
            None => {
                let busy = stats.active.min(1);
                (busy, 1 - busy)
            }
        };
        Figures {
            stats,
            busy: as_u64(busy),
            idle: as_u64(idle),
        }
    }

    /// Requests the worker has finished.
    pub(super) fn requests(&self) -> u64 {
        self.stats.succeeded.saturating_add(self.stats.failed)
    }

    /// Appends the report's bytes to `out` (`LEN` of them, little endian).
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        let s = &self.stats;
        let d = &s.durations;
        let words = [
            s.succeeded,
            s.failed,
            s.rejected,
            s.overloaded,
            s.over_client_limit,
            s.gave_up,
            s.cut_off,
            as_u64(s.active),
            as_u64(s.open),
            self.busy,
            self.idle,
        ]
        .into_iter()
        .chain(d.at_most)
        .chain([d.count, d.sum_seconds.to_bits()]);
        for word in words {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// A report from its `LEN` bytes; `None` if there are fewer.
    pub(super) fn decode(bytes: &[u8]) -> Option<Figures> {
        let mut words = bytes
            .get(..Self::LEN)?
            .chunks_exact(8)
            .filter_map(|w| <[u8; 8]>::try_from(w).ok().map(u64::from_le_bytes));
        let mut next = || words.next().unwrap_or(0);
        let mut stats = Stats {
            succeeded: next(),
            failed: next(),
            rejected: next(),
            overloaded: next(),
            over_client_limit: next(),
            gave_up: next(),
            cut_off: next(),
            active: as_usize(next()),
            open: as_usize(next()),
            ..Stats::default()
        };
        let busy = next();
        let idle = next();
        let mut durations = Durations::default();
        for bucket in &mut durations.at_most {
            *bucket = next();
        }
        durations.count = next();
        durations.sum_seconds = f64::from_bits(next());
        stats.durations = durations;
        Some(Figures { stats, busy, idle })
    }

    /// Adds `other`'s counters (requests, rejections, the histogram) to these; the gauges
    /// (`active`, `open`, busy, idle) stay: an ended worker runs nothing.
    pub(super) fn add_counters(&mut self, other: &Figures) {
        let (s, o) = (&mut self.stats, &other.stats);
        for (mine, theirs) in [
            (&mut s.succeeded, o.succeeded),
            (&mut s.failed, o.failed),
            (&mut s.rejected, o.rejected),
            (&mut s.overloaded, o.overloaded),
            (&mut s.over_client_limit, o.over_client_limit),
            (&mut s.gave_up, o.gave_up),
            (&mut s.cut_off, o.cut_off),
            (&mut s.durations.count, o.durations.count),
        ] {
            *mine = mine.saturating_add(theirs);
        }
        for (mine, theirs) in s.durations.at_most.iter_mut().zip(o.durations.at_most) {
            *mine = mine.saturating_add(theirs);
        }
        s.durations.sum_seconds += o.durations.sum_seconds;
    }

    /// Adds all of `other` to these: its counters and its gauges.
    #[cfg_attr(not(feature = "http"), allow(dead_code))] // the metrics listener's
    pub(super) fn add(&mut self, other: &Figures) {
        self.add_counters(other);
        self.stats.active = self.stats.active.saturating_add(other.stats.active);
        self.stats.open = self.stats.open.saturating_add(other.stats.open);
        self.busy = self.busy.saturating_add(other.busy);
        self.idle = self.idle.saturating_add(other.idle);
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn as_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: u64) -> Figures {
        let mut f = Figures::default();
        f.stats.succeeded = n;
        f.stats.failed = 1;
        f.stats.rejected = 2;
        f.stats.overloaded = 1;
        f.stats.over_client_limit = 1;
        f.stats.gave_up = 3;
        f.stats.cut_off = 5;
        f.stats.active = 2;
        f.stats.open = 4;
        f.stats.durations.at_most = [n + 1; DURATION_BUCKETS.len()];
        f.stats.durations.count = n + 1;
        f.stats.durations.sum_seconds = 0.25;
        f.busy = 2;
        f.idle = 6;
        f
    }

    #[test]
    fn a_report_decodes_to_what_was_encoded() {
        let figures = sample(u64::MAX - 1);
        let mut bytes = Vec::new();
        figures.encode(&mut bytes);
        assert_eq!(bytes.len(), Figures::LEN);
        assert_eq!(Figures::decode(&bytes), Some(figures));
        assert_eq!(Figures::decode(&bytes[1..]), None);
    }

    #[test]
    fn ended_workers_add_their_counters_not_their_gauges() {
        let mut retired = Figures::default();
        retired.add_counters(&sample(10));
        retired.add_counters(&sample(5));
        assert_eq!(retired.requests(), 17);
        assert_eq!(retired.stats.durations.count, 17);
        assert_eq!(retired.stats.durations.at_most[0], 17);
        assert_eq!(retired.stats.durations.sum_seconds, 0.5);
        assert_eq!((retired.stats.active, retired.stats.open), (0, 0));
        assert_eq!((retired.busy, retired.idle), (0, 0));
        let mut total = retired;
        total.add(&sample(1));
        assert_eq!(total.requests(), 19);
        assert_eq!((total.stats.active, total.busy, total.idle), (2, 2, 6));
    }

    #[test]
    fn a_serial_worker_is_its_own_busy_or_idle_thread() {
        let mut stats = Stats::default();
        assert_eq!(
            (
                Figures::of_worker(stats, None).busy,
                Figures::of_worker(stats, None).idle
            ),
            (0, 1)
        );
        stats.active = 1;
        assert_eq!(Figures::of_worker(stats, None).busy, 1);
        assert_eq!(Figures::of_worker(stats, None).idle, 0);
    }
}
