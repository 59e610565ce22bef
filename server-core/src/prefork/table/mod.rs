//! The supervisor's table of workers and how it changes: forking, heartbeats, exits, timers,
//! keeping the number; `exits` has how workers end, `board` what the table reports.

mod board;
mod exits;
mod scrape;

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::beat::{Reader, Record};
use super::error::PreforkError;
use super::figures::Figures;
use super::notify::Notifier;
use super::scoreboard::{ExitReason, WorkerExit, WorkerState};
use super::signals::pipe;
use super::slots::Slots;
use super::worker::{self, Birth};
use super::{ChangeHook, Options, ReadyHook, StartHook};
use crate::handler::Handler;
#[cfg(feature = "http")]
use crate::metrics::responder::Responder;
use crate::server::Server;
use crate::strategy::Strategy;
use crate::sys::signal::{block_all, restore_mask};
use crate::transport::Transport;

const TARGET: &str = "socketserver::prefork";

/// A worker that dies sooner than this after its start counts toward a crash loop.
const QUICK_EXIT: Duration = Duration::from_secs(5);
/// The first respawn delay in a crash loop; it doubles with every quick exit in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest respawn delay.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Between SIGABRT and SIGKILL for a silent worker; also how long a worker stopped at once
/// (SIGQUIT) has before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(1);
/// Longest time between two heartbeats of a busy worker.
const MAX_BEAT_EVERY: Duration = Duration::from_millis(100);

/// One worker, as the supervisor sees it.
#[derive(Debug)]
struct Worker {
    id: u64,
    pid: Pid,
    beats: OwnedFd,
    reader: Reader,
    state: WorkerState,
    started: Instant,
    last_beat: Option<Instant>,
    requests: u64,
    /// Its figures, as of its last heartbeat.
    figures: Figures,
    /// Its listener slot (`SO_REUSEPORT` model; always 0 with one shared listener).
    slot: usize,
    /// `max_requests` plus this worker's jitter.
    limit: Option<u64>,
    generation: u64,
    /// The worker this one replaces once ready, and why.
    replaces: Option<(u64, ExitReason)>,
    /// The worker starting to replace this one.
    replaced_by: Option<u64>,
    /// Why the supervisor asked it to end.
    ending: Option<ExitReason>,
    /// When to SIGKILL it.
    kill_at: Option<Instant>,
    boot_error: Option<String>,
}

impl Worker {
    /// Counts toward the number of workers: not draining, and not a replacement still
    /// starting (its old worker holds the place until it is ready).
    fn holds_place(&self) -> bool {
        self.state != WorkerState::Draining && self.replaces.is_none()
    }
}

/// The workers and everything the supervisor decides about them.
pub(super) struct Table<T: Transport, H: Handler, S: Strategy> {
    server: Server<T, H, S>,
    options: Options,
    on_start: Option<StartHook>,
    on_ready: Option<ReadyHook>,
    on_change: Option<ChangeHook>,
    workers: Vec<Worker>,
    target: usize,
    generation: u64,
    next_id: u64,
    started: u64,
    crashed: u64,
    /// Requests of the workers that exited.
    retired_requests: u64,
    /// The counters of the workers that exited, as of their last heartbeats.
    retired: Figures,
    /// Workers that exited, by reason ([`REASONS`](super::figures::REASONS)).
    ended: [u64; super::figures::REASONS.len()],
    /// The metrics listener, served from the supervisor's loop.
    #[cfg(feature = "http")]
    metrics: Option<Responder>,
    exits: VecDeque<WorkerExit>,
    /// Quick exits in a row, and no fork before `next_spawn`.
    quick_exits: u32,
    next_spawn: Instant,
    /// `Some(graceful)` once stopping.
    stopping: Option<bool>,
    fatal: Option<PreforkError>,
    killed: usize,
    changed: bool,
    random: RandomState,
    notifier: Notifier,
    slots: Slots,
}

impl<T: Transport, H: Handler, S: Strategy> Table<T, H, S> {
    pub(super) fn new(
        server: Server<T, H, S>,
        options: Options,
        on_start: Option<StartHook>,
        on_ready: Option<ReadyHook>,
        on_change: Option<ChangeHook>,
        notifier: Notifier,
        slots: Slots,
    ) -> Self {
        Table {
            server,
            options,
            on_start,
            on_ready,
            on_change,
            workers: Vec::new(),
            target: options.workers,
            generation: 0,
            next_id: 1,
            started: 0,
            crashed: 0,
            retired_requests: 0,
            retired: Figures::default(),
            ended: [0; super::figures::REASONS.len()],
            #[cfg(feature = "http")]
            metrics: None,
            exits: VecDeque::new(),
            quick_exits: 0,
            next_spawn: Instant::now(),
            stopping: None,
            fatal: None,
            killed: 0,
            changed: true,
            random: RandomState::new(),
            notifier,
            slots,
        }
    }

    /// What the supervisor tells the service manager.
    pub(super) fn notifier(&mut self) -> &mut Notifier {
        &mut self.notifier
    }

    pub(super) fn heartbeat_timeout(&self) -> Duration {
        self.options.heartbeat_timeout
    }

    /// The listening socket, which an upgrade hands over.
    pub(super) fn listener(&self) -> BorrowedFd<'_> {
        self.server.as_fd()
    }

    /// After an upgrade: the new program serves the socket file, which this server must
    /// leave alone when it closes.
    pub(super) fn forget_socket_file(&mut self) {
        self.server.forget_socket_file();
    }

    /// Whether any worker is ready (the server is healthy, for the watchdog).
    pub(super) fn any_ready(&self) -> bool {
        self.workers.iter().any(|w| w.state == WorkerState::Ready)
    }

    pub(super) fn stopping(&self) -> bool {
        self.stopping.is_some()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    pub(super) fn target(&self) -> usize {
        self.target
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    pub(super) fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    pub(super) fn state(&self, id: u64) -> Option<WorkerState> {
        self.find(id).map(|w| w.state)
    }

    fn find(&self, id: u64) -> Option<&Worker> {
        self.workers.iter().find(|w| w.id == id)
    }

    fn find_mut(&mut self, id: u64) -> Option<&mut Worker> {
        self.workers.iter_mut().find(|w| w.id == id)
    }

    /// The workers holding a place, oldest first.
    pub(super) fn holders(&self) -> Vec<u64> {
        let holders = self.workers.iter().filter(|w| w.holds_place());
        holders.map(|w| w.id).collect()
    }

    /// Whether `id` can be replaced now: holding a place, and not being replaced already.
    pub(super) fn is_replaceable(&self, id: u64) -> bool {
        self.find(id)
            .is_some_and(|w| w.holds_place() && w.replaced_by.is_none() && w.ending.is_none())
    }

    /// Each worker's heartbeat pipe, with its number.
    pub(super) fn beat_fds(&self) -> Vec<(u64, BorrowedFd<'_>)> {
        self.workers
            .iter()
            .map(|w| (w.id, w.beats.as_fd()))
            .collect()
    }

    /// SIGTTIN and SIGTTOU: the new number of workers. One fewer retires the newest worker
    /// still starting, else the oldest.
    pub(super) fn set_target(&mut self, target: usize, signal: Signal) {
        log::info!(target: TARGET, "{signal} received: {} workers, was {}", target, self.target);
        self.target = target;
    }

    /// Retires workers beyond the number.
    pub(super) fn scale(&mut self) {
        while self.holders().len() > self.target {
            let starting = self
                .workers
                .iter()
                .rev()
                .find(|w| w.holds_place() && w.state == WorkerState::Starting);
            let pick = if self.slots.on() {
                // A socket per slot: the highest slot goes, with its socket.
                self.workers
                    .iter()
                    .filter(|w| w.holds_place())
                    .max_by_key(|w| w.slot)
            } else {
                starting.or_else(|| self.workers.iter().find(|w| w.holds_place()))
            };
            let Some((id, slot)) = pick.map(|w| (w.id, w.slot)) else {
                return;
            };
            self.term(id, ExitReason::ScaledDown);
            if self.slots.on() {
                log::info!(target: TARGET,
                    "closing the socket of slot {slot}: connections still queued on it are reset \
                     unless net.ipv4.tcp_migrate_req=1");
                self.slots.close(slot);
            }
        }
    }

    /// Starts a replacement for each ready worker past its `max_requests`.
    pub(super) fn recycle(&mut self) {
        let due: Vec<u64> = self
            .workers
            .iter()
            .filter(|w| w.state == WorkerState::Ready && w.limit.is_some_and(|l| w.requests >= l))
            .map(|w| w.id)
            .collect();
        for id in due {
            if self.is_replaceable(id) {
                log::info!(target: TARGET, "worker {id} reached max_requests: starting its replacement");
                if self
                    .spawn_replacement(id, ExitReason::MaxRequests)
                    .is_none()
                {
                    return;
                }
            }
        }
    }

    /// Forks workers until the number is reached (unless backing off).
    pub(super) fn fill(&mut self) {
        while self.holders().len() < self.target {
            if self.spawn(None).is_none() {
                return;
            }
        }
    }

    /// Starts a worker that replaces `old` once ready; its number, or `None` if no fork now.
    pub(super) fn spawn_replacement(&mut self, old: u64, why: ExitReason) -> Option<u64> {
        let new = self.spawn(Some((old, why)))?;
        if let Some(w) = self.find_mut(old) {
            w.replaced_by = Some(new);
        }
        Some(new)
    }

    /// Forks a worker; its number, or `None` while backing off or when `fork` failed.
    fn spawn(&mut self, replaces: Option<(u64, ExitReason)>) -> Option<u64> {
        let now = Instant::now();
        if now < self.next_spawn {
            return None;
        }
        let id = self.next_id;
        let supervisor = nix::unistd::getpid();
        let slot = match &replaces {
            Some((old, _)) => self.find(*old).map_or(0, |w| w.slot),
            None => self.free_slot(),
        };
        let slot_socket = match self.slots.socket(slot, self.server.as_fd()) {
            Ok(socket) => socket,
            Err(e) => {
                return self
                    .spawn_failed(id, &format!("cannot bind the socket of slot {slot}: {e}"))
            }
        };
        let started = pipe().and_then(|(rx, tx)| Ok((rx, tx, block_all()?)));
        let (rx, tx, mask) = match started {
            Ok(started) => started,
            Err(e) => return self.spawn_failed(id, &e.to_string()),
        };
        // The supervisor is single-threaded (the fork rules in the module docs), so the child
        // is a full copy of the only thread and may do anything (the first case of
        // `sys::process::fork`'s contract); no lock of this library is held here. Every
        // signal is blocked across the fork, and the child never returns: `worker::run`
        // leaves through `_exit`.
        let mut tx = Some(tx);
        let forked = crate::sys::process::fork(|| {
            let mut close: Vec<RawFd> = self.workers.iter().map(|w| w.beats.as_raw_fd()).collect();
            close.push(rx.as_raw_fd());
            close.extend(self.notifier.upgrade_fd());
            close.extend(self.slots.fds());
            close.extend(self.metrics_raw_fds());
            let Some(beats) = tx.take() else {
                worker::leave(worker::EXIT_BOOT_ERROR)
            };
            let birth = Birth {
                id,
                supervisor,
                beats,
                close,
                beat_every: (self.options.heartbeat_timeout / 4).min(MAX_BEAT_EVERY),
                graceful_timeout: self.options.graceful_timeout,
                slot_socket,
                reuse_port: self.slots.on(),
            };
            worker::run(&mut self.server, birth, self.on_start.as_mut())
        });
        restore_mask(&mask);
        drop(tx);
        match forked {
            Ok(child) => {
                self.next_id += 1;
                self.started += 1;
                let jitter = match self.options.jitter {
                    0 => 0,
                    j => self.random.hash_one((id, child.as_raw())) % (j + 1),
                };
                let replacing = replaces
                    .as_ref()
                    .map(|(old, why)| format!(" to replace worker {old} ({why})"));
                log::info!(target: TARGET, "started worker {id} (pid {child}){}", replacing.unwrap_or_default());
                self.workers.push(Worker {
                    id,
                    pid: child,
                    beats: rx,
                    reader: Reader::default(),
                    state: WorkerState::Starting,
                    started: now,
                    last_beat: None,
                    requests: 0,
                    figures: Figures::default(),
                    slot,
                    limit: self.options.max_requests.map(|m| m.saturating_add(jitter)),
                    generation: self.generation,
                    replaces,
                    replaced_by: None,
                    ending: None,
                    kill_at: None,
                    boot_error: None,
                });
                self.changed = true;
                Some(id)
            }
            Err(e) => self.spawn_failed(id, &e.to_string()),
        }
    }

    /// The lowest slot no live worker (but a draining one) holds.
    fn free_slot(&self) -> usize {
        let taken: Vec<usize> = self
            .workers
            .iter()
            .filter(|w| w.state != WorkerState::Draining)
            .map(|w| w.slot)
            .collect();
        (0..).find(|k| !taken.contains(k)).unwrap_or(0)
    }

    /// A fork that failed counts as a quick exit (backing off).
    fn spawn_failed(&mut self, id: u64, error: &str) -> Option<u64> {
        let delay = self.back_off();
        log::error!(target: TARGET, "cannot start worker {id}: {error}; trying again in {delay:?}");
        None
    }

    /// One more quick exit in a row: the next fork waits; the delay.
    fn back_off(&mut self) -> Duration {
        self.quick_exits = self.quick_exits.saturating_add(1);
        let doubling = 2u32.saturating_pow(self.quick_exits.saturating_sub(1).min(16));
        let delay = FIRST_BACKOFF.saturating_mul(doubling).min(MAX_BACKOFF);
        self.next_spawn = Instant::now() + delay;
        delay
    }

    /// Reads what worker `id` wrote on its pipe.
    pub(super) fn read_beats(&mut self, id: u64) {
        let Some(w) = self.find_mut(id) else { return };
        let records = match w.reader.read(&w.beats) {
            Ok((records, _closed)) => records,
            Err(e) => {
                log::debug!(target: TARGET, "worker {id}: reading its heartbeats: {e}");
                return;
            }
        };
        for record in records {
            match record {
                Record::Beat(figures) => self.beat(id, figures),
                Record::BootError(message) => {
                    if let Some(w) = self.find_mut(id) {
                        w.boot_error = Some(message);
                    }
                }
            }
        }
    }

    /// A heartbeat: the worker lives; the first one makes it ready (and retires the worker it
    /// replaces).
    fn beat(&mut self, id: u64, figures: Figures) {
        let Some(w) = self.find_mut(id) else { return };
        w.last_beat = Some(Instant::now());
        w.requests = w.requests.max(figures.requests());
        w.figures = figures;
        if w.state != WorkerState::Starting {
            return;
        }
        w.state = WorkerState::Ready;
        let pid = w.pid;
        let replaces = w.replaces.take();
        log::info!(target: TARGET, "worker {id} (pid {pid}) ready");
        self.changed = true;
        self.notifier.worker_ready();
        self.start_metrics();
        if let Some(ready) = self.on_ready.take() {
            ready(self.server.server_address());
        }
        if let Some((old, why)) = replaces {
            if let Some(o) = self.find_mut(old) {
                o.replaced_by = None;
            }
            self.term(old, why);
        }
    }

    /// Sends SIGTERM to worker `id`: it stops accepting and drains within `graceful_timeout`.
    fn term(&mut self, id: u64, why: ExitReason) {
        let graceful = self.options.graceful_timeout;
        let Some(w) = self.find_mut(id) else { return };
        if w.state == WorkerState::Draining {
            return;
        }
        w.state = WorkerState::Draining;
        w.ending.get_or_insert(why.clone());
        w.kill_at = Some(Instant::now() + graceful + KILL_GRACE);
        let pid = w.pid;
        log::info!(target: TARGET, "worker {id} (pid {pid}) draining: {why}");
        signal(pid, Signal::SIGTERM);
        self.forget_replacement(id);
        self.changed = true;
    }

    /// A replacement that will never be ready: its old worker is no longer being replaced.
    fn forget_replacement(&mut self, id: u64) {
        let replaces = self.find_mut(id).and_then(|w| w.replaces.take());
        if let Some((old, _)) = replaces {
            if let Some(o) = self.find_mut(old) {
                o.replaced_by = None;
            }
        }
    }
}

/// Sends `signal` to `pid`, which is a worker not yet reaped (so the pid is still ours).
fn signal(pid: Pid, signal: Signal) {
    if let Err(e) = kill(pid, signal) {
        log::debug!(target: TARGET, "{signal} to worker pid {pid}: {e}");
    }
}
