//! What the supervisor knows of its workers: the [`Scoreboard`] (one row per worker, the
//! recent exits and why), the aggregate [`PreforkStats`], and the [`PreforkReport`] that
//! [`Prefork::serve`](super::Prefork::serve) returns.

use std::fmt;
use std::time::{Duration, Instant};

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkerState {
    /// Forked, and has not sent its first heartbeat yet: not counted as serving.
    Starting,
    /// Serving: it has sent a heartbeat.
    Ready,
    /// Sent SIGTERM: no longer accepting, finishing its requests (or aborted, on its way out).
    Draining,
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
        })
    }
}

/// Why a worker ended (or is ending).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitReason {
    /// It exited on its own with this status (the supervisor did not ask it to).
    Exited(i32),
    /// A signal the supervisor did not send killed it (such as `kill -9` by an operator, or the
    /// kernel's OOM killer); the signal's name.
    Killed(String),
    /// Its set-up failed ([`Prefork::on_worker_start`](super::Prefork::on_worker_start)
    /// returned an error): the whole server stops.
    BootError(String),
    /// It sent no heartbeat for `heartbeat_timeout`: aborted (SIGABRT, then SIGKILL).
    HeartbeatTimeout,
    /// It served `max_requests`: retired once its replacement was ready.
    MaxRequests,
    /// Replaced by a rolling reload (SIGHUP).
    Reload,
    /// One worker fewer (SIGTTOU).
    ScaledDown,
    /// The server is stopping.
    Stop,
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Exited(code) => write!(f, "exited with status {code}"),
            ExitReason::Killed(signal) => write!(f, "killed by {signal}"),
            ExitReason::BootError(message) => write!(f, "failed to start: {message}"),
            ExitReason::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            ExitReason::MaxRequests => f.write_str("max_requests reached"),
            ExitReason::Reload => f.write_str("reload"),
            ExitReason::ScaledDown => f.write_str("scaled down"),
            ExitReason::Stop => f.write_str("stop"),
        }
    }
}

/// One worker's row on the [`Scoreboard`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// The worker's number: 1 for the first started, counting up (never reused).
    pub id: u64,
    /// Its process id.
    pub pid: u32,
    /// Where it is in its life.
    pub state: WorkerState,
    /// Requests it has finished, as of its last heartbeat.
    pub requests: u64,
    /// When it was forked.
    pub started: Instant,
    /// When its last heartbeat came; `None` before the first.
    pub last_heartbeat: Option<Instant>,
    /// The reload it was started in: 0 before any SIGHUP, then 1, 2...
    pub generation: u64,
}

/// A worker that ended: who, how long it lived, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerExit {
    /// The worker's number.
    pub id: u64,
    /// Its process id.
    pub pid: u32,
    /// How long it lived.
    pub lived: Duration,
    /// Requests it had reported when it ended.
    pub requests: u64,
    /// Why it ended.
    pub reason: ExitReason,
}

/// The whole server in one figure: what [`Server::stats`](crate::Server::stats) is for one
/// process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreforkStats {
    /// Worker processes alive now (starting, ready or draining).
    pub workers: usize,
    /// Of those, the ones serving.
    pub ready: usize,
    /// How many workers the supervisor keeps (`workers`, moved by SIGTTIN and SIGTTOU).
    pub target: usize,
    /// Requests finished by every worker so far, live and exited, as of their last heartbeats
    /// (a worker's requests after its last heartbeat are not counted).
    pub requests: u64,
    /// Worker processes started, replacements included.
    pub started: u64,
    /// Workers that ended without being asked to (crashed, killed, hung): each was replaced.
    pub crashed: u64,
}

/// The supervisor's view of its workers, given to
/// [`Prefork::on_change`](super::Prefork::on_change) on every change and logged at info level
/// (target `socketserver::prefork`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Scoreboard {
    /// The live workers, oldest first.
    pub workers: Vec<WorkerInfo>,
    /// The most recent exits, oldest first (at most [`Scoreboard::HISTORY`]).
    pub exits: Vec<WorkerExit>,
    /// The aggregate figures.
    pub stats: PreforkStats,
}

impl Scoreboard {
    /// How many exits the scoreboard keeps.
    pub const HISTORY: usize = 32;

    /// The pids of the live workers in `state`.
    pub fn pids(&self, state: WorkerState) -> Vec<u32> {
        self.workers
            .iter()
            .filter(|w| w.state == state)
            .map(|w| w.pid)
            .collect()
    }
}

impl fmt::Display for Scoreboard {
    /// One line: `2/2 ready: 1 pid 100 ready 12 requests, 2 pid 101 starting 0 requests`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ready:", self.stats.ready, self.stats.target)?;
        for (i, w) in self.workers.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(
                f,
                "{sep}{} pid {} {} {} requests",
                w.id, w.pid, w.state, w.requests
            )?;
        }
        Ok(())
    }
}

/// What [`Prefork::serve`](super::Prefork::serve) returns once every worker is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreforkReport {
    /// The aggregate figures at the end.
    pub stats: PreforkStats,
    /// The last exits (at most [`Scoreboard::HISTORY`]).
    pub exits: Vec<WorkerExit>,
    /// Workers that did not finish within `graceful_timeout` when stopping, and were killed.
    pub killed: usize,
    /// The pid of the new program, when this supervisor stopped after a binary upgrade
    /// (SIGUSR2) handed its socket over.
    pub upgraded_to: Option<u32>,
}
