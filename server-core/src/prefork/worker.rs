//! A worker's life, in the child after `fork`: set-up, serving with heartbeats, the graceful
//! stop on SIGTERM, and `_exit` with a status the supervisor understands. A worker never
//! returns into the caller's code.

use std::os::fd::{OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::beat::{self, Record};
use super::figures::Figures;
use super::signals;
use super::slots;
use super::StartHook;
use crate::error::panic_message;
use crate::handler::Handler;
use crate::server::Server;
use crate::signals::{Heard, Watch};
use crate::stats::Stats;
use crate::strategy::Strategy;
use crate::sys::{deadline_in, sleep_until};
use crate::transport::Transport;

/// Drained and stopped, or stopped at once on SIGINT/SIGQUIT, or the supervisor was gone.
pub(super) const EXIT_STOPPED: i32 = 0;
/// The serving loop failed (`poll(2)` failed): respawned like a crash.
pub(super) const EXIT_SERVE_FAILED: i32 = 1;
/// The set-up failed: the supervisor stops the whole server (gunicorn's `WORKER_BOOT_ERROR`).
pub(super) const EXIT_BOOT_ERROR: i32 = 3;
/// Aborted by the supervisor (SIGABRT) for a missed heartbeat.
pub(super) const EXIT_ABORTED: i32 = 5;

/// How often a draining worker looks whether its last requests have finished.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// What a worker is given at its birth.
pub(super) struct Birth {
    /// The worker's number.
    pub(super) id: u64,
    /// The supervisor's pid, to check it is still the parent.
    pub(super) supervisor: Pid,
    /// The worker's end of its heartbeat pipe.
    pub(super) beats: OwnedFd,
    /// Descriptors of the supervisor's that the worker must not keep: the other workers'
    /// heartbeat pipes, and the supervisor's end of its own.
    pub(super) close: Vec<RawFd>,
    /// Least time between two heartbeats.
    pub(super) beat_every: Duration,
    /// How long the worker drains after SIGTERM before it leaves anyway.
    pub(super) graceful_timeout: Duration,
    /// With `SO_REUSEPORT`: its slot's socket, to put in place of the server's (slot 0: none).
    pub(super) slot_socket: Option<RawFd>,
    /// With `SO_REUSEPORT`: let go of the listening socket once it stops accepting.
    pub(super) reuse_port: bool,
}

/// Leaves the process at once with `code`: no destructors, no exit handlers, no flushing of
/// the supervisor's buffers (they are the supervisor's).
pub(super) fn leave(code: i32) -> ! {
    crate::sys::process::exit_now(code)
}

/// The worker: never returns.
pub(super) fn run<T, H, S>(
    server: &mut Server<T, H, S>,
    birth: Birth,
    on_start: Option<&mut StartHook>,
) -> !
where
    T: Transport,
    H: Handler,
    S: Strategy,
{
    // Die with the supervisor (a SIGKILL from the kernel when it goes); and if it went
    // before this line, leave now: nobody would ever stop this worker.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err()
        || nix::unistd::getppid() != birth.supervisor
    {
        leave(EXIT_STOPPED);
    }
    let id = birth.id;
    let beats = Arc::new(birth.beats);
    let slot = birth
        .slot_socket
        .map(|socket| slots::put_in_place(socket, std::os::fd::AsFd::as_fd(&*server)));
    for fd in &birth.close {
        let _ = nix::unistd::close(*fd);
    }
    let fail = |message: String| -> ! {
        log::error!(target: "socketserver::prefork", "worker {id}: {message}");
        beat::send(&beats, &Record::BootError(message));
        leave(EXIT_BOOT_ERROR)
    };
    if let Some(Err(e)) = slot {
        fail(format!("cannot take its slot's socket: {e}"));
    }
    let term = match signals::worker_signals() {
        Ok(term) => term,
        Err(e) => fail(format!("cannot set up its signal handlers: {e}")),
    };
    // The server's wake-up pairs were made before the fork and are every worker's: this
    // worker's stop must wake its own loop only.
    if let Err(e) = server.renew_after_fork() {
        fail(format!("cannot make its wake-up pairs: {e}"));
    }
    if let Some(on_start) = on_start {
        match catch_unwind(AssertUnwindSafe(|| on_start(id))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail(e.to_string()),
            Err(panic) => fail(format!("panicked: {}", panic_message(&*panic))),
        }
    }

    // The first beat, when the loop first waits for requests, says "ready"; then a beat at
    // most every `beat_every`, from every pass of the loop, with the worker's figures (what
    // the supervisor's metrics add up).
    let activity = server.strategy().activity();
    {
        let beats = Arc::clone(&beats);
        let activity = activity.clone();
        server.on_ready(move |_| {
            let figures = Figures::of_worker(Stats::default(), activity.as_ref());
            beat::send(&beats, &Record::Beat(figures));
        });
    }
    {
        let beats = Arc::clone(&beats);
        let activity = activity.clone();
        let every = birth.beat_every;
        let mut last = Instant::now();
        server.on_pass(move |context| {
            if last.elapsed() < every {
                return;
            }
            last = Instant::now();
            let figures = Figures::of_worker(context.stats(), activity.as_ref());
            beat::send(&beats, &Record::Beat(figures));
        });
    }

    // SIGTERM: stop taking requests, and give the running ones `graceful_timeout`.
    let handle = server.shutdown_handle();
    let graceful = birth.graceful_timeout;
    let watcher = {
        std::thread::Builder::new()
            .name("socketserver-worker".into())
            .spawn(move || {
                let mut term = term;
                watch_term(&mut term, &handle, graceful, id);
            })
    };
    if let Err(e) = watcher {
        fail(format!("cannot start its signal watching thread: {e}"));
    }

    if let Err(e) = server.serve_forever() {
        log::error!(target: "socketserver::prefork", "worker {id}: {e}");
        leave(EXIT_SERVE_FAILED);
    }
    if birth.reuse_port {
        slots::let_go(std::os::fd::AsFd::as_fd(&*server));
    }

    // Drain: the watching thread `_exit`s at the deadline if requests are still running.
    let deadline = deadline_in(graceful);
    while server.stats().open > 0 && Instant::now() < deadline {
        let _ = sleep_until(&mut [], Some(Instant::now() + DRAIN_POLL));
    }
    // The last report: the requests finished since the last beat, and while draining, count
    // in the server's totals too.
    let figures = Figures::of_worker(server.stats(), activity.as_ref());
    beat::send(&beats, &Record::Beat(figures));
    log::debug!(target: "socketserver::prefork", "worker {id}: drained");
    leave(EXIT_STOPPED)
}

/// The worker's signal watching thread: on SIGTERM, asks the serving loop to stop, then leaves
/// the process when `graceful` has passed (if the drain has not ended it first).
fn watch_term(term: &mut Watch, handle: &crate::ShutdownHandle, graceful: Duration, id: u64) {
    let mut deadline = None;
    loop {
        match term.wait(deadline) {
            Ok(Heard::Timeout) => {
                log::warn!(target: "socketserver::prefork",
                    "worker {id}: requests still running after the {graceful:?} graceful timeout; leaving");
                leave(EXIT_STOPPED);
            }
            Ok(Heard::Signal(_)) => {
                if deadline.is_none() {
                    log::info!(target: "socketserver::prefork", "worker {id}: SIGTERM: draining");
                    deadline = Some(deadline_in(graceful));
                    handle.shutdown_nowait();
                }
            }
            Ok(Heard::Quit) => {}
            Err(e) => {
                log::error!(target: "socketserver::prefork", "worker {id}: waiting for signals: {e}");
                leave(EXIT_SERVE_FAILED);
            }
        }
    }
}
