//! The supervisor's loop: one `poll(2)` on its signal pipe and its workers' heartbeat pipes,
//! until a deadline; then what the signals ask, reaping, timers, and keeping the workers at
//! their number. The workers' table and how it changes (spawn, exits, timers) is in
//! [`table`](super::table); reloads and scaling are here.

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::Signal;

use super::error::PreforkError;
use super::notify::Notifier;
use super::scoreboard::{ExitReason, PreforkReport, WorkerState};
use super::signals::supervisor_signals;
use super::slots::Slots;
use super::table::Table;
use super::upgrade::{self, Outcome, Upgrade};
use super::Prefork;
use crate::error::panic_message;
use crate::handler::Handler;
use crate::signals::Watch;
use crate::strategy::Strategy;
use crate::sys::sleep_until;
use crate::transport::Transport;

const TARGET: &str = "socketserver::prefork";

/// The longest the loop sleeps with nothing due: it reaps on every pass, whatever SIGCHLD
/// said.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// A rolling reload in progress.
#[derive(Debug)]
struct Reload {
    /// The generation before it, restored if it is rolled back.
    previous: u64,
    /// Old workers still to replace, oldest first.
    pending: VecDeque<u64>,
    /// The replacement now starting, if any.
    current: Option<u64>,
}

/// Runs the supervisor of `prefork` until every worker is gone.
pub(super) fn run<T: Transport, H: Handler, S: Strategy>(
    prefork: Prefork<T, H, S>,
) -> Result<PreforkReport, PreforkError> {
    let mut signals = supervisor_signals().map_err(|source| PreforkError::Signal { source })?;
    let Prefork {
        server,
        options,
        on_start,
        mut on_reload,
        on_ready,
        on_change,
        upgrade_name,
        #[cfg(feature = "http")]
        metrics,
    } = prefork;
    // Started by an upgrade: the old supervisor waits to hear this one is ready.
    let ready_pipe = upgrade::take_ready_pipe();
    // Handed over by the old supervisor, but not taken by `Prefork::metrics`: closed.
    drop(upgrade::take_metrics_listener());
    log::info!(target: TARGET, "supervisor {} starting {} workers for {}{}",
        std::process::id(), options.workers, server.server_address(),
        if ready_pipe.is_some() { " (a binary upgrade: the old supervisor waits)" } else { "" });
    let program = upgrade::Program::current().map_err(|e| {
        log::warn!(target: TARGET, "cannot read this program's path and arguments: {e}; SIGUSR2 will be refused");
    });
    let mut upgrading = Upgrading {
        program: program.ok(),
        name: upgrade_name,
        current: None,
        done: None,
    };
    let slots = Slots::new(options.reuse_port, server.as_fd()).map_err(|reason| {
        PreforkError::InvalidOption {
            option: "reuse_port",
            reason,
        }
    })?;
    let notifier = Notifier::new(ready_pipe);
    let mut table = Table::new(
        server, options, on_start, on_ready, on_change, notifier, slots,
    );
    #[cfg(feature = "http")]
    table.set_metrics(metrics);
    let mut reload: Option<Reload> = None;
    let mut reload_queued = false;
    let result = loop {
        if !table.stopping() {
            table.scale();
            table.recycle();
            step_reload(&mut table, &mut reload, &mut reload_queued, &mut on_reload);
            table.fill();
        } else if table.is_empty() && upgrading.current.is_none() {
            break Ok(());
        }
        table.publish();
        if let Err(source) = wait(&mut table, &signals, upgrading.current.as_ref()) {
            log::error!(target: TARGET, "waiting for signals and heartbeats: {source}; killing the workers");
            table.kill_all();
            break Err(PreforkError::Supervise { source });
        }
        for signal in signals.take() {
            on_signal(
                signal,
                &mut table,
                &mut reload,
                &mut reload_queued,
                &mut on_reload,
                &mut upgrading,
            );
        }
        check_upgrade(&mut table, &mut upgrading);
        table.reap();
        table.check_timers();
        let healthy = table.any_ready();
        table.notifier().watchdog(healthy);
        if let Some(r) = &mut reload {
            if rollback_if_failed(&mut table, r, &mut reload_queued) {
                reload = None;
            }
        }
    };
    if let Some(upgrade) = upgrading.current.take() {
        upgrade.kill();
    }
    let (mut report, fatal) = table.finish();
    report.upgraded_to = upgrading.done;
    drop(signals);
    match (result, fatal) {
        (Err(e), _) | (Ok(()), Some(e)) => Err(e),
        (Ok(()), None) => Ok(report),
    }
}

/// Sleeps until a signal, a heartbeat, a scraper or the next deadline; reads the heartbeats
/// that came, and answers the scrapers.
fn wait<T: Transport, H: Handler, S: Strategy>(
    table: &mut Table<T, H, S>,
    signals: &Watch,
    upgrade: Option<&Upgrade>,
) -> std::io::Result<()> {
    let now = Instant::now();
    let deadline = table.next_deadline().unwrap_or(now + MAX_SLEEP);
    let deadline = deadline.min(now + MAX_SLEEP);
    let deadline = upgrade.map_or(deadline, |u| deadline.min(u.deadline()));
    let (ready, scrapes): (Vec<u64>, Vec<bool>) = {
        let beats = table.beat_fds();
        let scrapers = table.metrics_fds();
        let mut fds = Vec::with_capacity(beats.len() + 1);
        if let Some(fd) = signals.fd() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        if let Some(upgrade) = upgrade {
            fds.push(PollFd::new(upgrade.fd(), PollFlags::POLLIN));
        }
        let skip = fds.len();
        fds.extend(
            beats
                .iter()
                .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
        );
        fds.extend(
            scrapers
                .iter()
                .map(|(fd, flags)| PollFd::new(fd.as_fd(), *flags)),
        );
        sleep_until(&mut fds, Some(deadline))?;
        let has_event = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        let ready = fds
            .iter()
            .skip(skip)
            .zip(&beats)
            .filter(|(fd, _)| has_event(fd))
            .map(|(_, (id, _))| *id)
            .collect();
        let scrapes = fds.iter().skip(skip + beats.len()).map(has_event).collect();
        (ready, scrapes)
    };
    for id in ready {
        table.read_beats(id);
    }
    table.serve_metrics(&scrapes);
    Ok(())
}

/// Acts on one signal.
fn on_signal<T: Transport, H: Handler, S: Strategy>(
    signal: Signal,
    table: &mut Table<T, H, S>,
    reload: &mut Option<Reload>,
    queued: &mut bool,
    on_reload: &mut Option<super::ReloadHook>,
    upgrading: &mut Upgrading,
) {
    match signal {
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT => {
            let graceful = signal == Signal::SIGTERM && !table.stopping();
            if table.stopping() {
                log::warn!(target: TARGET, "{signal} received again: stopping at once");
            } else if graceful {
                log::info!(target: TARGET,
                    "SIGTERM received: stopping the workers gracefully (send it again to stop at once)");
            } else {
                log::info!(target: TARGET, "{signal} received: stopping at once");
            }
            if reload.take().is_some() {
                log::info!(target: TARGET, "the reload in progress is abandoned");
            }
            if let Some(upgrade) = upgrading.current.take() {
                log::warn!(target: TARGET,
                    "the upgrade in progress is abandoned: new program (pid {}) killed", upgrade.pid());
                upgrade.kill();
            }
            table.stop(graceful);
        }
        _ if table.stopping() && signal != Signal::SIGCHLD => {
            log::info!(target: TARGET, "{signal} received while stopping: ignored");
        }
        Signal::SIGUSR2 => start_upgrade(table, reload.is_some(), upgrading),
        Signal::SIGHUP if upgrading.current.is_some() => {
            log::info!(target: TARGET,
                "SIGHUP received while a binary upgrade runs: ignored (reload the new program once it serves)");
        }
        Signal::SIGHUP if reload.is_some() => {
            log::info!(target: TARGET,
                "SIGHUP received while a reload runs: queued, it runs when this one ends");
            *queued = true;
        }
        Signal::SIGHUP => {
            table.notifier().reloading();
            *reload = start_reload(table, on_reload);
            if reload.is_none() {
                table.notifier().reloaded();
            }
        }
        Signal::SIGTTIN => table.set_target(table.target() + 1, signal),
        Signal::SIGTTOU if table.target() > 1 => table.set_target(table.target() - 1, signal),
        Signal::SIGTTOU => {
            log::info!(target: TARGET, "SIGTTOU received: already at 1 worker; ignored");
        }
        _ => {}
    }
}

/// The binary upgrade: what to run, and the one in progress.
#[derive(Debug)]
struct Upgrading {
    program: Option<upgrade::Program>,
    name: String,
    current: Option<Upgrade>,
    /// The new program's pid, once it took over.
    done: Option<u32>,
}

/// SIGUSR2: starts the new program, unless an upgrade or a reload runs.
fn start_upgrade<T: Transport, H: Handler, S: Strategy>(
    table: &mut Table<T, H, S>,
    reloading: bool,
    upgrading: &mut Upgrading,
) {
    if let Some(current) = &upgrading.current {
        log::warn!(target: TARGET,
            "SIGUSR2 received while an upgrade runs (new program pid {}): ignored", current.pid());
        return;
    }
    if reloading {
        log::warn!(target: TARGET,
            "SIGUSR2 received while a reload runs: ignored (send it again once the reload is complete)");
        return;
    }
    let Some(program) = &upgrading.program else {
        log::error!(target: TARGET, "SIGUSR2 received: this program's path is unknown; ignored");
        return;
    };
    let timeout = table.heartbeat_timeout();
    let sockets = upgrade::Sockets {
        listener: table.listener(),
        name: &upgrading.name,
        metrics: table.metrics_listener(),
    };
    match upgrade::start(program, sockets, timeout) {
        Ok(started) => {
            log::info!(target: TARGET,
                "SIGUSR2 received: upgrading: new program pid {} started with the listening socket; \
                 waiting up to {timeout:?} for its first worker", started.pid());
            upgrading.current = Some(started);
        }
        Err(e) => {
            log::error!(target: TARGET, "SIGUSR2 received: cannot start the new program: {e}; this one keeps serving");
        }
    }
}

/// Moves an upgrade on: once the new program is ready, this supervisor hands over
/// (`MAINPID=`) and drains; if it failed, this one keeps serving.
fn check_upgrade<T: Transport, H: Handler, S: Strategy>(
    table: &mut Table<T, H, S>,
    upgrading: &mut Upgrading,
) {
    let Some(current) = &mut upgrading.current else {
        return;
    };
    match current.check() {
        Outcome::Waiting => {}
        Outcome::Ready(pid) => {
            upgrading.current = None;
            let pid = u32::try_from(pid.as_raw()).unwrap_or(0);
            log::info!(target: TARGET,
                "upgrade: the new program (pid {pid}) is ready; this supervisor drains its workers and exits");
            upgrading.done = Some(pid);
            table.notifier().main_pid(pid);
            table.forget_socket_file();
            table.close_metrics();
            table.stop(true);
        }
        Outcome::Failed(why) => {
            log::error!(target: TARGET,
                "upgrade failed: the new program (pid {}) {why}; this one keeps serving", current.pid());
            upgrading.current = None;
        }
    }
}

/// Runs `on_reload`, then starts replacing the workers one at a time.
fn start_reload<T: Transport, H: Handler, S: Strategy>(
    table: &mut Table<T, H, S>,
    on_reload: &mut Option<super::ReloadHook>,
) -> Option<Reload> {
    if let Some(hook) = on_reload {
        let outcome = catch_unwind(AssertUnwindSafe(hook))
            .unwrap_or_else(|panic| Err(format!("panicked: {}", panic_message(&*panic)).into()));
        if let Err(e) = outcome {
            log::error!(target: TARGET,
                "SIGHUP received: on_reload failed: {e}; reload cancelled, the workers keep serving");
            return None;
        }
    }
    let previous = table.generation();
    table.set_generation(previous + 1);
    let pending: VecDeque<u64> = table.holders().into_iter().collect();
    log::info!(target: TARGET,
        "SIGHUP received: reloading {} workers one at a time (generation {})",
        pending.len(), previous + 1);
    Some(Reload {
        previous,
        pending,
        current: None,
    })
}

/// Moves the reload on: starts the next replacement once the last one is ready, and ends the
/// reload (starting a queued one) when every old worker is replaced.
fn step_reload<T: Transport, H: Handler, S: Strategy>(
    table: &mut Table<T, H, S>,
    reload: &mut Option<Reload>,
    queued: &mut bool,
    on_reload: &mut Option<super::ReloadHook>,
) {
    let Some(r) = reload else {
        return;
    };
    if let Some(current) = r.current {
        if table.state(current) == Some(WorkerState::Starting) {
            return;
        }
        // Ready (its old worker got SIGTERM), or gone (rolled back before this).
        r.current = None;
    }
    while let Some(old) = r.pending.pop_front() {
        if !table.is_replaceable(old) {
            continue;
        }
        match table.spawn_replacement(old, ExitReason::Reload) {
            Some(new) => {
                r.current = Some(new);
                return;
            }
            None => {
                // No fork now (a back-off): try this one again on a later pass.
                r.pending.push_front(old);
                return;
            }
        }
    }
    log::info!(target: TARGET, "reload complete: generation {}", table.generation());
    *reload = None;
    table.notifier().reloaded();
    if std::mem::take(queued) {
        log::info!(target: TARGET, "running the queued reload");
        table.notifier().reloading();
        *reload = start_reload(table, on_reload);
        if reload.is_none() {
            table.notifier().reloaded();
        }
    }
}

/// Rolls the reload back when its current replacement failed to become ready (it died, or
/// was aborted for missing the readiness deadline); `true` if it did.
fn rollback_if_failed<T: Transport, H: Handler, S: Strategy>(
    table: &mut Table<T, H, S>,
    reload: &mut Reload,
    queued: &mut bool,
) -> bool {
    let Some(current) = reload.current else {
        return false;
    };
    match table.state(current) {
        Some(WorkerState::Starting) => return false,
        Some(WorkerState::Ready) => {
            reload.current = None;
            return false;
        }
        // Aborted (it missed the readiness deadline), or gone.
        Some(WorkerState::Draining) | None => {}
    }
    table.set_generation(reload.previous);
    log::error!(target: TARGET,
        "reload rolled back: worker {current} did not become ready; the old workers keep serving");
    if std::mem::take(queued) {
        log::info!(target: TARGET, "the queued reload is dropped with it");
    }
    table.notifier().reloaded();
    true
}
