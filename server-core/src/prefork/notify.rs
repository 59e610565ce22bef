//! What the supervisor tells the service manager (`sd_notify(3)`, through
//! [`crate::systemd`]; every call is a no-op without `NOTIFY_SOCKET`): `READY=1` when the
//! first worker is ready, `STATUS=` with the live figures, `RELOADING=1` then `READY=1` around
//! a reload, `STOPPING=1` when the drain starts, `MAINPID=` after an upgrade, and `WATCHDOG=1`
//! every half `WatchdogSec=` while a worker is ready.
//!
//! Only the supervisor sends them (systemd's default `NotifyAccess=main` drops the workers'),
//! and the watchdog is kept from the supervisor's own loop, never from a thread: a supervisor
//! that hangs stops feeding it, and systemd restarts the service.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::scoreboard::PreforkStats;
use crate::systemd::{self, NotifyError};

const TARGET: &str = "socketserver::prefork";

/// The longest the `STATUS=` line waits to show new request counts when nothing else changed.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The supervisor's notifications, and what it sent already.
#[derive(Debug)]
pub(super) struct Notifier {
    ready_sent: bool,
    reloading: bool,
    stopping: bool,
    /// Half of `WatchdogSec=`, and when the next `WATCHDOG=1` is due.
    watchdog: Option<(Duration, Instant)>,
    status: String,
    status_at: Option<Instant>,
    failed: bool,
    /// In a program started by an upgrade: the pipe the old supervisor waits on.
    upgrade: Option<OwnedFd>,
    /// After an upgrade, the new program is the main process: this one says no more.
    handed_over: bool,
}

impl Notifier {
    pub(super) fn new(upgrade: Option<OwnedFd>) -> Notifier {
        let watchdog = systemd::watchdog_interval().map(|interval| {
            let half = (interval / 2).max(Duration::from_millis(1));
            log::info!(target: TARGET, "systemd watchdog: WATCHDOG=1 every {half:?}");
            (half, Instant::now())
        });
        Notifier {
            ready_sent: false,
            reloading: false,
            stopping: false,
            watchdog,
            status: String::new(),
            status_at: None,
            failed: false,
            upgrade,
            handed_over: false,
        }
    }

    /// The upgrade's ready pipe, which a worker closes.
    pub(super) fn upgrade_fd(&self) -> Option<RawFd> {
        self.upgrade.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Logs a failed notification: a warning the first time, then at debug level.
    fn sent(&mut self, result: Result<(), NotifyError>) {
        if let Err(e) = result {
            if std::mem::replace(&mut self.failed, true) {
                log::debug!(target: TARGET, "{e}");
            } else {
                log::warn!(target: TARGET, "{e}");
            }
        }
    }

    /// A worker is ready: `READY=1` the first time, and the old supervisor of an upgrade
    /// hears this program is ready.
    pub(super) fn worker_ready(&mut self) {
        if let Some(pipe) = self.upgrade.take() {
            log::info!(target: TARGET, "upgrade: telling the old supervisor this program is ready");
            super::upgrade::say_ready(pipe);
        }
        if !std::mem::replace(&mut self.ready_sent, true) {
            let sent = systemd::notify_ready();
            self.sent(sent);
        }
    }

    /// `STATUS=` with `stats`, if the line changed (or if `changed`, the scoreboard did); at
    /// most every second for request counts alone.
    pub(super) fn status(&mut self, stats: &PreforkStats, changed: bool) {
        if self.handed_over {
            return;
        }
        let due = self.status_at.is_none_or(|at| at.elapsed() >= STATUS_EVERY);
        if !changed && !due {
            return;
        }
        let mut line = format!(
            "{} of {} workers ready, {} requests",
            stats.ready, stats.target, stats.requests
        );
        if stats.crashed > 0 {
            line.push_str(&format!(", {} crashed", stats.crashed));
        }
        if self.reloading {
            line.push_str(", reloading");
        }
        if self.stopping {
            line.push_str(", stopping");
        }
        if line == self.status {
            return;
        }
        self.status_at = Some(Instant::now());
        let sent = systemd::notify_status(&line);
        self.sent(sent);
        self.status = line;
    }

    /// A reload starts: `RELOADING=1`.
    pub(super) fn reloading(&mut self) {
        self.reloading = true;
        let sent = systemd::notify_reloading();
        self.sent(sent);
    }

    /// A reload ended (done, rolled back or cancelled): `READY=1`.
    pub(super) fn reloaded(&mut self) {
        if std::mem::take(&mut self.reloading) {
            let sent = systemd::notify_ready();
            self.sent(sent);
        }
    }

    /// The drain starts: `STOPPING=1`, once.
    pub(super) fn stopping(&mut self) {
        // A reload abandoned for the stop ends with the stop, not with `READY=1`.
        self.reloading = false;
        if !std::mem::replace(&mut self.stopping, true) && !self.handed_over {
            let sent = systemd::notify_stopping();
            self.sent(sent);
        }
    }

    /// The new program of an upgrade is the service's main process now: `MAINPID=pid`.
    /// Sent before this supervisor drains: systemd then watches the new program, and this
    /// one sends nothing more (its `STOPPING=1` would stop the service).
    pub(super) fn main_pid(&mut self, pid: u32) {
        let sent = systemd::notify_main_pid(pid);
        self.sent(sent);
        self.handed_over = true;
        self.watchdog = None;
    }

    /// When the next `WATCHDOG=1` is due, if systemd wants them.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.watchdog.map(|(_, due)| due)
    }

    /// `WATCHDOG=1` if it is due and the server is healthy (at least one worker ready).
    pub(super) fn watchdog(&mut self, healthy: bool) {
        let Some((half, due)) = self.watchdog else {
            return;
        };
        let now = Instant::now();
        if now < due {
            return;
        }
        self.watchdog = Some((half, now + half));
        if healthy {
            let sent = systemd::notify_watchdog();
            self.sent(sent);
        } else {
            log::warn!(target: TARGET, "no worker is ready: WATCHDOG=1 withheld");
        }
    }
}
