//! The pool's running part: its worker threads, what they share with the pool, and each
//! worker's loop (the queue, and the parked connections when the pool takes them).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::super::bookkeeping::{thread_builder, ExitNotice};
use super::super::{Activity, Job};
use crate::error::{Error, Result};
use crate::server::{ParkedConnections, Wakeup};
use crate::sys::wake;

/// The pool once its workers have started.
pub(super) struct Workers {
    /// The queue's sending end; dropped when closing, which ends the workers once it is empty.
    pub(super) jobs: Option<Sender<Job>>,
    /// A receiving end kept to drop the requests still queued at the close deadline.
    pub(super) queued: Receiver<Job>,
    pub(super) shared: Arc<PoolShared>,
    /// Woken when a request finishes while the serving loop waits for room.
    pub(super) room: wake::Wait,
    /// Join handles by worker number; `None` where a worker could not be started or ended.
    pub(super) handles: Vec<Option<JoinHandle<()>>>,
    /// Workers send their number here as they end.
    pub(super) exits_tx: Sender<usize>,
    pub(super) exits: Receiver<usize>,
    /// The server's parked connections, if the workers wait on them (and for queued
    /// requests through their notifications); else the workers wait on the queue.
    pub(super) parked: Option<ParkedConnections>,
}

/// What the workers share with the pool.
pub(super) struct PoolShared {
    /// Requests accepted and not yet finished: queued plus running.
    pub(super) in_flight: AtomicUsize,
    /// Notified when a request finishes while `waiting` is set.
    pub(super) room: wake::Notify,
    /// Set while the serving loop sleeps in `wait_ready` because the pool is full: only then
    /// does a finished request cost a wake-up write.
    pub(super) waiting: AtomicBool,
    pub(super) activity: Activity,
}

impl Workers {
    pub(super) fn live(&self) -> usize {
        self.handles.iter().filter(|h| h.is_some()).count()
    }

    /// Joins workers that ended, and starts one for every empty slot.
    pub(super) fn replace_workers(&mut self, stack_size: Option<usize>) -> Result<()> {
        while let Ok(index) = self.exits.try_recv() {
            if let Some(handle) = self.handles.get_mut(index).and_then(Option::take) {
                let _ = handle.join();
                log::error!(target: "socketserver::pool", "worker {index} ended; starting another");
            }
        }
        if self.jobs.is_none() {
            // Closing: no more workers.
            return Ok(());
        }
        let mut failure = None;
        for (index, slot) in self.handles.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            let builder = thread_builder(format!("socketserver-pool-{index}"), stack_size);
            let receiver = self.queued.clone();
            let shared = Arc::clone(&self.shared);
            let exit = ExitNotice::new(self.exits_tx.clone(), index);
            let parked = self.parked.clone();
            match builder.spawn(move || work(receiver, &shared, parked, exit)) {
                Ok(handle) => *slot = Some(handle),
                Err(source) => {
                    log::error!(target: "socketserver::pool", "cannot start worker {index}: {source}");
                    failure = Some(source);
                }
            }
        }
        let live = self.live();
        self.shared.activity.set_tracked(live);
        match failure {
            Some(source) if live == 0 => Err(Error::Spawn {
                what: "a pool worker thread",
                source,
            }),
            _ => Ok(()),
        }
    }
}

/// A worker's loop: run queued requests until the queue is closed and empty, and, when the
/// workers take the server's parked connections, the requests of those that turn readable.
/// `exit` tells the pool the worker ended, even if it unwinds.
fn work(
    jobs: Receiver<Job>,
    shared: &PoolShared,
    parked: Option<ParkedConnections>,
    exit: ExitNotice<usize>,
) {
    let _exit = exit;
    let Some(parked) = parked else {
        for job in jobs.iter() {
            shared.run(job);
        }
        return;
    };
    // Each queued request comes with a notification, and closing sends one per worker: so a
    // worker looks at the queue once per notification (and after each parked connection's
    // request), and ends when it is closed and empty.
    loop {
        match parked.wait(None) {
            Wakeup::Request(job) => {
                shared.in_flight.fetch_add(1, Ordering::SeqCst);
                shared.activity.add_started();
                shared.run(job);
                // Then a queued request, if there is one. The notifications are one item of
                // the epoll instance, served in turn with the ready connections: with hundreds
                // of keep-alive clients always ready, new connections got one turn in each
                // round of them (486 of 1000 new clients unanswered for 2 s, measured).
                if let Ok(job) = jobs.try_recv() {
                    parked.take_notification();
                    shared.run(job);
                }
            }
            Wakeup::Notified => match jobs.try_recv() {
                Ok(job) => shared.run(job),
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {}
            },
            Wakeup::TimedOut => {}
        }
    }
}

impl PoolShared {
    /// Runs one request, counted in `in_flight` and the activity already.
    pub(super) fn run(&self, job: Job) {
        self.activity.add_active();
        // Job::run catches handler panics already; this keeps the worker alive should
        // anything else in the request panic. AssertUnwindSafe: the job is consumed, and the
        // worker touches nothing it could have left half-changed.
        let ok = catch_unwind(AssertUnwindSafe(|| job.run())).unwrap_or_else(|_| {
            log::error!(target: "socketserver::pool", "a request panicked outside its handler");
            false
        });
        self.activity.end(ok);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        // After the decrement, so that `wait_ready` sees the room once woken. Both sides use
        // SeqCst: either the loop's second look sees this decrement, or this sees `waiting`.
        if self.waiting.load(Ordering::SeqCst) {
            self.room.notify();
        }
    }
}

impl Workers {
    /// Closes the queue and wakes every worker waiting on the parked connections, so that
    /// each sees it closed once it is empty.
    pub(super) fn close_queue(&mut self) {
        if self.jobs.take().is_some() {
            if let Some(parked) = &self.parked {
                for _ in 0..self.handles.len() {
                    parked.notify();
                }
            }
        }
    }
}

impl Drop for Workers {
    /// Lets the workers finish the queue on their own.
    fn drop(&mut self) {
        self.close_queue();
    }
}
