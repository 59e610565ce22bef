//! What the strategies that run requests elsewhere share to keep count of them: the
//! [`Ledger`] of their counters and the [`ExitNotice`] a thread leaves as it ends.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::{Activity, DrainReport};

/// How often the serving loop reaps finished threads or child processes while idle, when any
/// are tracked.
pub(crate) const REAP_INTERVAL: Duration = Duration::from_millis(100);

/// A strategy's counters, and how many requests had finished when the serving loop last
/// looked at them: those that finish afterwards are the ones closing reports as completed.
#[derive(Default)]
pub(crate) struct Ledger {
    activity: Activity,
    seen_finished: u64,
}

impl Ledger {
    /// The counters.
    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The serving loop looks: what has finished so far is not closing's to report.
    pub(crate) fn look(&mut self) {
        self.seen_finished = self.activity.finished();
    }

    /// Requests finished since the last [`look`](Self::look).
    pub(crate) fn finished_since_look(&self) -> usize {
        let since = self.activity.finished().saturating_sub(self.seen_finished);
        usize::try_from(since).unwrap_or(usize::MAX)
    }
}

/// What closing found when nothing was shut down; warns (under `target`) that the `abandoned`
/// requests, running on `what`, are left to finish on their own.
pub(crate) fn drain_report(
    target: &str,
    what: &str,
    completed: usize,
    abandoned: usize,
) -> DrainReport {
    if abandoned > 0 {
        log::warn!(target: target,
            "closing: {abandoned} {what} still running are left to finish on their own");
    }
    DrainReport {
        completed,
        abandoned,
        shut_down: 0,
    }
}

/// Sends a thread's number on a channel when dropped: moved into the thread, it reports the
/// thread's end even if the thread unwinds.
pub(crate) struct ExitNotice<Id: Copy> {
    done: Sender<Id>,
    id: Id,
}

impl<Id: Copy> ExitNotice<Id> {
    pub(crate) fn new(done: Sender<Id>, id: Id) -> ExitNotice<Id> {
        ExitNotice { done, id }
    }
}

impl<Id: Copy> Drop for ExitNotice<Id> {
    fn drop(&mut self) {
        // The strategy holds a receiver until it is dropped; after that nobody listens.
        let _ = self.done.send(self.id);
    }
}

/// The next message on `rx`, waiting at most until `deadline` (`None`: however long it takes).
/// `None` once the deadline passed (or every sender is gone, which a strategy that keeps a
/// sender itself never sees).
pub(crate) fn recv_until<T>(rx: &Receiver<T>, deadline: Option<Instant>) -> Option<T> {
    match deadline {
        None => rx.recv().ok(),
        Some(deadline) => rx.recv_deadline(deadline).ok(),
    }
}

/// A builder for a thread named `name`, with `stack_size` bytes of stack if set (otherwise the
/// standard library's default).
pub(crate) fn thread_builder(name: String, stack_size: Option<usize>) -> thread::Builder {
    let builder = thread::Builder::new().name(name);
    match stack_size {
        Some(size) => builder.stack_size(size),
        None => builder,
    }
}
