//! The idle-thread hand-off: handler threads that finished a request wait here for the next
//! one, and a new request goes to the thread that started waiting last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Task;

/// Handler threads waiting for a request: a stack, so the thread that finished last (its
/// stack and caches still warm) takes the next request, and under a trickle of requests the
/// threads at the bottom time out instead of taking turns and all staying alive.
pub(super) struct Idle {
    /// The waiting threads' slots, the most recent last. Emptied, for good, on close.
    waiting: Mutex<Waiting>,
    max: usize,
    timeout: Duration,
}

#[derive(Default)]
struct Waiting {
    slots: Vec<Arc<ThreadSlot>>,
    closed: bool,
}

/// Where one waiting thread receives its next request.
#[derive(Default)]
struct ThreadSlot {
    hand: Mutex<Hand>,
    ready: Condvar,
}

#[derive(Default)]
enum Hand {
    #[default]
    Empty,
    Task(Task),
    Closed,
}

impl ThreadSlot {
    fn give(&self, hand: Hand) {
        *self.hand.lock() = hand;
        self.ready.notify_one();
    }
}

impl Idle {
    /// No thread waits yet; at most `max` will at once, each at most `timeout`.
    pub(super) fn new(max: usize, timeout: Duration) -> Idle {
        Idle {
            waiting: Mutex::default(),
            max,
            timeout,
        }
    }

    /// A handler thread's life: runs `task`, then each request handed to this thread while
    /// it waits, until it should end.
    pub(super) fn serve(&self, task: Task) {
        let slot = Arc::new(ThreadSlot::default());
        let mut task = task;
        loop {
            task.run();
            match self.next_task(&slot) {
                Some(next) => task = next,
                None => break,
            }
        }
    }

    /// Hands `task` to the thread that started waiting last; gives it back if none waits.
    pub(super) fn offer(&self, task: Task) -> std::result::Result<(), Task> {
        let slot = self.waiting.lock().slots.pop();
        match slot {
            Some(slot) => {
                slot.give(Hand::Task(task));
                Ok(())
            }
            None => Err(task),
        }
    }

    /// After a request: waits for the next one, if fewer than `max` threads wait already, at
    /// most `timeout`. `None`: the thread should end.
    fn next_task(&self, slot: &Arc<ThreadSlot>) -> Option<Task> {
        // `None`: a timeout too long to represent, so no timeout at all.
        let deadline = Instant::now().checked_add(self.timeout);
        {
            let mut waiting = self.waiting.lock();
            if waiting.closed || waiting.slots.len() >= self.max {
                return None;
            }
            waiting.slots.push(Arc::clone(slot));
        }
        let mut hand = slot.hand.lock();
        loop {
            match std::mem::take(&mut *hand) {
                Hand::Task(task) => return Some(task),
                Hand::Closed => return None,
                Hand::Empty => {}
            }
            let Some(deadline) = deadline else {
                slot.ready.wait(&mut hand);
                continue;
            };
            if !slot.ready.wait_until(&mut hand, deadline).timed_out() {
                continue;
            }
            // Timed out: leave the stack, unless `offer` or `close` took this slot from it
            // meanwhile; then its hand is on the way, and the thread waits for it. (The two
            // locks are never held together.)
            drop(hand);
            {
                let mut waiting = self.waiting.lock();
                if let Some(i) = waiting.slots.iter().position(|s| Arc::ptr_eq(s, slot)) {
                    waiting.slots.remove(i);
                    return None;
                }
            }
            hand = slot.hand.lock();
            while matches!(*hand, Hand::Empty) {
                slot.ready.wait(&mut hand);
            }
        }
    }

    /// Ends every waiting thread, and lets no other wait from now on.
    pub(super) fn close(&self) {
        let slots = {
            let mut waiting = self.waiting.lock();
            waiting.closed = true;
            std::mem::take(&mut waiting.slots)
        };
        for slot in slots {
            slot.give(Hand::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use crossbeam_channel::{unbounded, Sender};

    use super::super::Finished;
    use super::*;
    use crate::strategy::{Activity, Job};

    /// A request that reports on `ran` when it runs.
    fn task(ran: Sender<()>) -> Task {
        let run = move || ran.send(()).is_ok();
        Task {
            job: Job::new(Box::new(run), None),
            finished: Finished {
                activity: Activity::default(),
                ok: None,
            },
        }
    }

    fn idle(max: usize, timeout: Duration) -> Arc<Idle> {
        Arc::new(Idle::new(max, timeout))
    }

    /// A thread waiting in `next_task`, once its slot is on the stack (use a timeout far
    /// longer than a test runs).
    fn waiting_thread(idle: &Arc<Idle>) -> thread::JoinHandle<Option<Task>> {
        let slot = Arc::new(ThreadSlot::default());
        let thread = {
            let (idle, slot) = (Arc::clone(idle), Arc::clone(&slot));
            thread::spawn(move || idle.next_task(&slot))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !idle
            .waiting
            .lock()
            .slots
            .iter()
            .any(|s| Arc::ptr_eq(s, &slot))
        {
            assert!(Instant::now() < deadline, "the thread never waited");
            thread::yield_now();
        }
        thread
    }

    #[test]
    fn the_thread_that_waited_last_gets_the_next_request() {
        let idle = idle(2, Duration::from_secs(60));
        let older = waiting_thread(&idle);
        let newer = waiting_thread(&idle);
        let (ran, runs) = unbounded();
        assert!(idle.offer(task(ran)).is_ok());
        newer.join().unwrap().expect("a request").run();
        assert!(runs.try_recv().is_ok());
        assert!(!older.is_finished(), "the older thread still waits");
        idle.close();
        assert!(older.join().unwrap().is_none(), "close ends it");
    }

    #[test]
    fn no_more_than_max_wait_and_none_after_close() {
        let idle = idle(1, Duration::from_secs(60));
        let waiter = waiting_thread(&idle);
        // The second finds the stack full and ends at once.
        assert!(idle.next_task(&Arc::new(ThreadSlot::default())).is_none());
        idle.close();
        assert!(waiter.join().unwrap().is_none());
        let (ran, _runs) = unbounded();
        assert!(idle.offer(task(ran)).is_err(), "nobody waits after close");
        assert!(idle.next_task(&Arc::new(ThreadSlot::default())).is_none());
    }

    /// `offer` takes a slot off the stack just as its thread's wait times out: the thread must
    /// wait for the request on its way, not end and lose it.
    #[test]
    fn a_request_given_as_the_wait_times_out_is_not_lost() {
        let timeout = Duration::from_millis(50);
        let idle = idle(1, timeout);
        // The first half of `offer`, as soon as the slot is on the stack. Should this thread
        // be too slow to catch it before the wait times out, try again.
        let (waiter, slot) = (0..100)
            .find_map(|_| {
                let slot = Arc::new(ThreadSlot::default());
                let waiter = {
                    let (idle, slot) = (Arc::clone(&idle), Arc::clone(&slot));
                    thread::spawn(move || idle.next_task(&slot))
                };
                loop {
                    if let Some(popped) = idle.waiting.lock().slots.pop() {
                        return Some((waiter, popped));
                    }
                    if waiter.is_finished() {
                        return None;
                    }
                    thread::yield_now();
                }
            })
            .expect("a waiting slot");
        // The request comes only after the wait has timed out (the subject here).
        thread::sleep(timeout * 4);
        let (ran, runs) = unbounded();
        slot.give(Hand::Task(task(ran)));
        waiter.join().unwrap().expect("the request").run();
        assert!(runs.try_recv().is_ok());
    }

    #[test]
    fn an_unused_waiting_thread_ends_at_the_timeout() {
        let idle = idle(1, Duration::from_millis(20));
        let waiter = {
            let idle = Arc::clone(&idle);
            thread::spawn(move || idle.next_task(&Arc::new(ThreadSlot::default())))
        };
        assert!(waiter.join().unwrap().is_none());
        assert!(idle.waiting.lock().slots.is_empty(), "it left the stack");
    }

    /// `Duration::MAX` means no timeout, not an overflow that kills the waiting thread and
    /// leaves its slot to swallow the next request.
    #[test]
    fn a_timeout_too_long_to_represent_waits_forever() {
        let idle = idle(1, Duration::MAX);
        let waiter = waiting_thread(&idle);
        let (ran, runs) = unbounded();
        assert!(idle.offer(task(ran)).is_ok());
        waiter.join().unwrap().expect("the request").run();
        assert!(runs.try_recv().is_ok());
    }
}
