//! One pass of the serving loop besides taking requests: waiting until something happens (the
//! socket, a stop, a signal, a parked connection, a queued client's room), and the
//! housekeeping after it (`service_actions`: cutting requests over `max_request_time`,
//! closing parked connections whose idle time ran out, sampling the listen backlog, the
//! strategy's and the user's hooks).

use std::io;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use super::close::Signals;
use super::{parking, Server};
use crate::handler::Handler;
use crate::strategy::Strategy;
use crate::sys::{deadline_in, sleep_until};
use crate::transport::Transport;

/// How often the loop looks for room while clients wait in the `Overload::Queue` queue.
const QUEUE_RECHECK: Duration = Duration::from_millis(10);

/// How often the loop looks for requests over `max_request_time`.
const CUT_INTERVAL: Duration = Duration::from_millis(100);

/// The shortest wait for a parked connection's deadline: deadlines this close together are
/// ended in one look through the parked connections.
const EXPIRY_STEP: Duration = Duration::from_millis(10);

/// What woke the loop.
pub(super) enum Event {
    Readable,
    Stop,
    Timeout,
    /// A signal arrived for `serve_until_signal`, whose watching thread is not started yet.
    Signal,
}

impl<T: Transport, H: Handler, S: Strategy> Server<T, H, S> {
    pub(super) fn loop_interval(&self) -> Option<Duration> {
        Some(match self.strategy.service_interval() {
            Some(interval) => interval.min(self.poll_interval),
            None => self.poll_interval,
        })
    }

    /// How long one pass of `serve_forever` may wait: the loop's interval, or less when a
    /// parked connection's deadline comes sooner, so that it is ended on time rather than up
    /// to an interval late. At least [`EXPIRY_STEP`]: connections whose deadlines fall close
    /// together are ended in one look (each look goes through every parked connection).
    pub(super) fn pass_timeout(&self) -> Option<Duration> {
        let interval = self.loop_interval();
        let due = self
            .shared
            .lot()
            .and_then(|lot| lot.earliest())
            .map(|d| d.saturating_duration_since(Instant::now()).max(EXPIRY_STEP));
        match (interval, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn service_actions(&mut self) {
        self.cut_overdue();
        self.expire_parked();
        self.sample_listen_queue();
        self.strategy.service_actions();
        self.hooks.service_actions(self.shared.context());
        if let Some(pass) = &mut self.on_pass {
            pass(self.shared.context());
        }
    }

    /// Closes the parked connections whose idle time ran out (on this thread: closing one is
    /// a `shutdown(2)` and a `close(2)`).
    fn expire_parked(&mut self) {
        let Some(lot) = self.shared.lot() else {
            return;
        };
        let expired = lot.expired(Instant::now());
        if !expired.is_empty() {
            log::debug!(target: "socketserver::server",
                "{}: closed {} idle connections at their timeout", self.server_address(), expired.len());
        }
        for parked in expired {
            parked.resume(parking::Wake::Close);
        }
    }

    /// Records the listen backlog's length for the metrics, at most every [`CUT_INTERVAL`]
    /// (one `getsockopt(2)`; stream sockets only).
    fn sample_listen_queue(&mut self) {
        if self
            .last_sample
            .is_some_and(|last| last.elapsed() < CUT_INTERVAL)
        {
            return;
        }
        self.last_sample = Some(Instant::now());
        if T::listener_fd(&self.socket).is_some() {
            let waiting = crate::sys::socket::listen_queue(self.socket.as_fd()).ok();
            self.shared.context().set_listen_queue(waiting);
        }
    }

    /// Shuts down the connections of requests over `max_request_time`, at most every
    /// [`CUT_INTERVAL`].
    fn cut_overdue(&mut self) {
        let Some(limit) = self.max_request_time else {
            return;
        };
        if self.last_cut.elapsed() < CUT_INTERVAL {
            return;
        }
        self.last_cut = Instant::now();
        let context = self.shared.context();
        let cut = context.handle().connections().cut_overdue(limit);
        if cut > 0 {
            context.cut_off(cut);
            log::warn!(target: "socketserver::server",
                "{}: {cut} requests ran past {limit:?} and were cut off", context.server_address());
        }
    }

    /// Waits until the socket is readable, a stop is requested, or `timeout` passes.
    pub(super) fn wait(&self, timeout: Option<Duration>) -> io::Result<Event> {
        // Clients queued by `Overload::Queue` wake the loop when a request ends (the gate's
        // fd), when the first one's wait runs out, and every QUEUE_RECHECK (room in the
        // strategy, such as a pool's queue, has no fd to wait on).
        let queued = !self.waiting.is_empty();
        let mut deadline = match (timeout.map(deadline_in), self.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if queued {
            let recheck = deadline_in(QUEUE_RECHECK);
            deadline = Some(deadline.map_or(recheck, |d| d.min(recheck)));
        }
        let gate = self.shared.context().gate();
        // The socket and the stop waker; then, where there are: the parked connections' epoll
        // instance, the gate's waker (while clients are queued), the signals' socket.
        let extras = [
            self.shared
                .lot()
                .filter(|_| !self.strategy_takes_parked)
                .map(|lot| lot.fd()),
            queued.then(|| gate.room_fd()),
            self.signals.as_ref().and_then(Signals::fd),
        ];
        let listened = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
        loop {
            let mut fds = [self.stops.fd(); 5].map(|fd| PollFd::new(fd, PollFlags::POLLIN));
            fds[0] = PollFd::new(self.socket.as_fd(), PollFlags::POLLIN);
            // Where each extra is in `fds`.
            let mut at = [None; 3];
            let mut watched = 2;
            for (extra, at) in extras.iter().zip(&mut at) {
                if let (Some(fd), Some(slot)) = (extra, fds.get_mut(watched)) {
                    *slot = PollFd::new(*fd, PollFlags::POLLIN);
                    *at = Some(watched);
                    watched += 1;
                }
            }
            let heard = |i: Option<usize>, fds: &[PollFd<'_>]| {
                i.and_then(|i| fds.get(i)).is_some_and(listened)
            };
            if sleep_until(&mut fds[..watched], deadline)? == 0 {
                return Ok(if queued {
                    Event::Readable
                } else {
                    Event::Timeout
                });
            }
            if listened(&fds[1]) && self.stops.drain() {
                return Ok(Event::Stop);
            }
            if heard(at[2], &fds) {
                return Ok(Event::Signal);
            }
            let room = heard(at[1], &fds);
            if room {
                gate.drain();
            }
            if room || heard(at[0], &fds) || listened(&fds[0]) {
                return Ok(Event::Readable);
            }
        }
    }
}
