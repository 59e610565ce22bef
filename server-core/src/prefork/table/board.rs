//! What the table tells: the next deadline for the supervisor's sleep, the scoreboard it logs
//! and publishes, and the final report.

use std::time::Instant;

use super::{Table, TARGET};
use crate::handler::Handler;
use crate::prefork::error::PreforkError;
use crate::prefork::scoreboard::{
    PreforkReport, PreforkStats, Scoreboard, WorkerInfo, WorkerState,
};
use crate::strategy::Strategy;
use crate::transport::Transport;

impl<T: Transport, H: Handler, S: Strategy> Table<T, H, S> {
    /// The next instant something is due: a heartbeat deadline, a kill, a fork after a
    /// back-off.
    pub(in crate::prefork) fn next_deadline(&self) -> Option<Instant> {
        let watchdog = self.notifier.next_deadline();
        let timeout = self.options.heartbeat_timeout;
        let workers = self.workers.iter().filter_map(|w| match w.state {
            WorkerState::Draining => w.kill_at,
            _ => Some(w.last_beat.unwrap_or(w.started) + timeout),
        });
        let spawn =
            (!self.stopping() && self.holders().len() < self.target).then_some(self.next_spawn);
        let scrapes = self.metrics_deadline();
        workers.chain(spawn).chain(watchdog).chain(scrapes).min()
    }

    /// The scoreboard now.
    fn scoreboard(&self) -> Scoreboard {
        let workers: Vec<WorkerInfo> = self
            .workers
            .iter()
            .map(|w| WorkerInfo {
                id: w.id,
                pid: u32::try_from(w.pid.as_raw()).unwrap_or(0),
                state: w.state,
                requests: w.requests,
                started: w.started,
                last_heartbeat: w.last_beat,
                generation: w.generation,
            })
            .collect();
        let stats = PreforkStats {
            workers: workers.len(),
            ready: workers
                .iter()
                .filter(|w| w.state == WorkerState::Ready)
                .count(),
            target: self.target,
            requests: self.retired_requests + workers.iter().map(|w| w.requests).sum::<u64>(),
            started: self.started,
            crashed: self.crashed,
        };
        Scoreboard {
            workers,
            exits: self.exits.iter().cloned().collect(),
            stats,
        }
    }

    /// Logs the scoreboard and gives it to `on_change`, if it changed; keeps the service
    /// manager's `STATUS=` line current.
    pub(in crate::prefork) fn publish(&mut self) {
        let changed = std::mem::take(&mut self.changed);
        let board = self.scoreboard();
        self.notifier.status(&board.stats, changed);
        if !changed {
            return;
        }
        log::info!(target: TARGET, "workers {board}");
        if let Some(change) = &mut self.on_change {
            change(&board);
        }
    }

    /// The report, and the error that stopped the server, if one did. Closes the server.
    pub(in crate::prefork) fn finish(mut self) -> (PreforkReport, Option<PreforkError>) {
        self.publish();
        let board = self.scoreboard();
        log::info!(target: TARGET, "supervisor stopped: {} workers started, {} crashed, {} requests",
            board.stats.started, board.stats.crashed, board.stats.requests);
        let report = PreforkReport {
            stats: board.stats,
            exits: board.exits,
            killed: self.killed,
            upgraded_to: None,
        };
        (report, self.fatal.take())
    }
}
