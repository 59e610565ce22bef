//! How workers end: stopping them, reaping them, why they ended, and the timers that abort
//! the silent ones and kill those past their deadline.

use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::{signal, Table, Worker, KILL_GRACE, QUICK_EXIT, TARGET};
use crate::handler::Handler;
use crate::prefork::beat::Record;
use crate::prefork::error::PreforkError;
use crate::prefork::figures::reason_index;
use crate::prefork::scoreboard::{ExitReason, Scoreboard, WorkerExit, WorkerState};
use crate::prefork::worker::EXIT_BOOT_ERROR;
use crate::strategy::Strategy;
use crate::transport::Transport;

impl<T: Transport, H: Handler, S: Strategy> Table<T, H, S> {
    /// Stops every worker: SIGTERM (graceful), or SIGQUIT (at once; also when already
    /// stopping).
    pub(in crate::prefork) fn stop(&mut self, graceful: bool) {
        let graceful = graceful && self.stopping.is_none();
        self.stopping = Some(graceful);
        self.notifier.stopping();
        let now = Instant::now();
        let ids: Vec<u64> = self.workers.iter().map(|w| w.id).collect();
        for id in ids {
            if graceful {
                self.term(id, ExitReason::Stop);
                continue;
            }
            let Some(w) = self.find_mut(id) else { continue };
            w.state = WorkerState::Draining;
            w.ending.get_or_insert(ExitReason::Stop);
            w.kill_at = Some(
                w.kill_at
                    .map_or(now + KILL_GRACE, |k| k.min(now + KILL_GRACE)),
            );
            signal(w.pid, Signal::SIGQUIT);
        }
        self.changed = true;
    }

    /// Kills every worker and waits for them (the supervisor cannot go on).
    pub(in crate::prefork) fn kill_all(&mut self) {
        self.stopping = Some(false);
        for w in &self.workers {
            signal(w.pid, Signal::SIGKILL);
        }
        for w in std::mem::take(&mut self.workers) {
            let status = waitpid(w.pid, None);
            self.exited(w, status.unwrap_or(WaitStatus::StillAlive));
        }
    }

    /// Waits, without blocking, for each worker; records those that exited.
    pub(in crate::prefork) fn reap(&mut self) {
        let mut i = 0;
        while let Some(w) = self.workers.get(i) {
            match waitpid(w.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    let w = self.workers.remove(i);
                    self.exited(w, status);
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    log::warn!(target: TARGET, "cannot wait for worker {} (pid {}): {e}", w.id, w.pid);
                    let w = self.workers.remove(i);
                    self.exited(w, WaitStatus::StillAlive);
                }
                Ok(_) => i += 1,
            }
        }
    }

    /// Records the exit of `w`: why, the crash-loop count, and a boot error's stop.
    pub(super) fn exited(&mut self, mut w: Worker, status: WaitStatus) {
        // Whatever it said last.
        if let Ok((records, _)) = w.reader.read(&w.beats) {
            for record in records {
                match record {
                    Record::Beat(figures) => {
                        w.requests = w.requests.max(figures.requests());
                        w.figures = figures;
                    }
                    Record::BootError(message) => w.boot_error = Some(message),
                }
            }
        }
        self.forget_replacement(w.id);
        if let Some(new) = w.replaced_by {
            // The replacement now holds a place of its own.
            if let Some(n) = self.find_mut(new) {
                n.replaces = None;
            }
        }
        let lived = w.started.elapsed();
        let reason = match (&w.ending, status) {
            (_, WaitStatus::Exited(_, EXIT_BOOT_ERROR)) => ExitReason::BootError(
                w.boot_error
                    .take()
                    .unwrap_or_else(|| "its set-up failed".into()),
            ),
            (Some(why), _) => why.clone(),
            (None, WaitStatus::Exited(_, code)) => ExitReason::Exited(code),
            (None, WaitStatus::Signaled(_, signal, _)) => ExitReason::Killed(signal.to_string()),
            (None, _) => ExitReason::Exited(-1),
        };
        let (id, pid) = (w.id, w.pid);
        let unexpected = w.ending.is_none() || reason == ExitReason::HeartbeatTimeout;
        match &reason {
            ExitReason::BootError(message) => {
                log::error!(target: TARGET, "worker {id} (pid {pid}) failed to start: {message}; stopping the server");
                if self.fatal.is_none() {
                    self.fatal = Some(PreforkError::WorkerBoot {
                        worker: id,
                        pid: u32::try_from(pid.as_raw()).unwrap_or(0),
                        message: message.clone(),
                    });
                }
                if !self.stopping() {
                    self.stop(true);
                }
            }
            _ if unexpected && !self.stopping() => {
                self.crashed += 1;
                if lived < QUICK_EXIT {
                    let delay = self.back_off();
                    log::warn!(target: TARGET,
                        "worker {id} (pid {pid}) {reason} after {lived:.1?}; respawning in {delay:?} ({} quick exits in a row)",
                        self.quick_exits);
                } else {
                    self.quick_exits = 0;
                    log::warn!(target: TARGET, "worker {id} (pid {pid}) {reason} after {lived:.1?}; respawning");
                }
            }
            _ => log::info!(target: TARGET, "worker {id} (pid {pid}) exited: {reason}"),
        }
        self.retired_requests += w.requests;
        self.retired.add_counters(&w.figures);
        if let Some(n) = self.ended.get_mut(reason_index(&reason)) {
            *n += 1;
        }
        if self.exits.len() == Scoreboard::HISTORY {
            self.exits.pop_front();
        }
        self.exits.push_back(WorkerExit {
            id,
            pid: u32::try_from(pid.as_raw()).unwrap_or(0),
            lived,
            requests: w.requests,
            reason,
        });
        self.changed = true;
    }

    /// Aborts silent workers, and kills those past their deadline.
    pub(in crate::prefork) fn check_timers(&mut self) {
        let now = Instant::now();
        let timeout = self.options.heartbeat_timeout;
        let mut silent = Vec::new();
        for w in &mut self.workers {
            if w.kill_at.is_some_and(|k| now >= k) {
                log::warn!(target: TARGET, "worker {} (pid {}) still running at its deadline: SIGKILL", w.id, w.pid);
                signal(w.pid, Signal::SIGKILL);
                w.kill_at = None;
                if self.stopping.is_some() {
                    self.killed += 1;
                }
            }
            let since = w.last_beat.unwrap_or(w.started);
            if w.state != WorkerState::Draining && now.duration_since(since) >= timeout {
                silent.push(w.id);
            }
        }
        for id in silent {
            let Some(w) = self.find_mut(id) else { continue };
            let what = if w.state == WorkerState::Starting {
                "did not become ready"
            } else {
                "sent no heartbeat"
            };
            log::warn!(target: TARGET, "worker {id} (pid {}) {what} within {timeout:?}: SIGABRT, SIGKILL in {KILL_GRACE:?}", w.pid);
            w.state = WorkerState::Draining;
            w.ending = Some(ExitReason::HeartbeatTimeout);
            w.kill_at = Some(now + KILL_GRACE);
            signal(w.pid, Signal::SIGABRT);
            self.forget_replacement(id);
            self.changed = true;
        }
    }
}
