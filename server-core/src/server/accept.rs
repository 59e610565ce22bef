//! Taking requests: from the socket to the strategy, within the `max_connections` cap, and
//! backing off (and saying so, once) while `accept(2)` fails for lack of descriptors or memory.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::Level;
use nix::poll::{PollFd, PollFlags};

use super::parking::Wake;
use super::{waker, Overload, Server};
use crate::handler::Handler;
use crate::report::{say_limited, Limit};
use crate::shutdown::ShutdownHandle;
use crate::strategy::{Job, Readiness, Strategy};
use crate::sys::{self, deadline_in, sleep_until, wake};
use crate::transport::{Received, Transport};

/// Most requests taken in one wake-up of the loop, so that housekeeping still runs under load.
const MAX_REQUESTS_PER_WAKE: usize = 64;

/// How long the loop pauses when `accept(2)` fails for lack of resources (`EMFILE` and the like),
/// so it does not spin while the listening socket stays readable.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A shortage of descriptors or memory is over once requests are taken with no `accept(2)`
/// failing for this long (or once the loop has caught up with the waiting clients).
const SHORTAGE_OVER: Duration = Duration::from_secs(1);

/// `accept(2)` failing for lack of resources: since when, and how often.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shortage {
    failures: u64,
    last: Instant,
}

/// What the socket had: a request, something it reported itself (look again), or nothing.
enum Next<R> {
    Request(R),
    Again,
    Nothing,
}

/// Whether the `max_connections` cap lets the loop take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    Free,
    Woken,
    Full,
}

impl<T: Transport, H: Handler, S: Strategy> Server<T, H, S> {
    /// Hands the parked connections whose clients sent more to the strategy, each as a job
    /// (they already hold their place under `max_connections`); returns how many. Should a
    /// stop come while the strategy has no room, the rest go back to the lot, to be served
    /// if the server serves on, or closed with it.
    pub(super) fn resume_parked(&mut self) -> usize {
        if self.strategy_takes_parked {
            return 0;
        }
        let Some(ready) = self.shared.lot().map(|lot| lot.ready()) else {
            return 0;
        };
        let mut ready = ready.into_iter();
        let mut resumed = 0;
        while let Some(entry) = ready.next() {
            if self.strategy.wait_ready(waker(&self.signals, &self.stops)) == Readiness::Woken {
                // Back in the lot, under the deadline each had.
                for entry in std::iter::once(entry).chain(ready.by_ref()) {
                    match self.shared.lot() {
                        Some(lot) => {
                            if let Err(parked) = lot.park(entry.resume, true, entry.deadline) {
                                lot.refused(parked);
                            }
                        }
                        None => {
                            entry.resume.resume(Wake::Close);
                        }
                    }
                }
                break;
            }
            resumed += 1;
            self.hand_over(Job::resumed(entry.resume));
        }
        resumed
    }

    /// Hands a request's work to the strategy as a job; a failure to start it (a thread or a
    /// process could not be made) is logged, limited, as it may repeat for every request while
    /// it lasts, and the request is dropped (its connection closes).
    pub(super) fn hand_over(&mut self, job: Job) {
        if let Err(e) = self.strategy.process_request(job) {
            static LIMIT: Limit = Limit::new();
            say_limited(
                &LIMIT,
                Level::Error,
                "socketserver::server",
                format_args!("server {}: {e}", self.shared.context().server_address()),
            );
        }
    }

    /// Takes the requests that are waiting, up to a bound.
    pub(super) fn take_requests(&mut self, handle: &ShutdownHandle) {
        for _ in 0..MAX_REQUESTS_PER_WAKE {
            // Re-check after every request: a shutdown while serving must not take one more
            // (Python's bpo-35017).
            if handle.is_requested() {
                return;
            }
            if self.overload == Overload::Wait {
                // At the cap: sleep until a request ends, a stop, or the loop's interval (so
                // that `service_actions` still runs), then go back to the loop.
                if self.wait_room(self.loop_interval()) != Room::Free
                    || self.strategy.wait_ready(waker(&self.signals, &self.stops))
                        == Readiness::Woken
                {
                    return;
                }
                if !self.take_one() {
                    return;
                }
                continue;
            }
            // The other policies never wait: queued clients first, then new ones, served if
            // there is room now and turned away (or queued) if not.
            self.expire_waiting();
            let room = self.has_room_now();
            if !room {
                self.clients_waited.set(true);
            }
            if room {
                if let Some((_, request)) = self.waiting.pop_front() {
                    self.dispatch(request, true);
                    continue;
                }
            }
            let more = if room {
                self.take_one()
            } else if matches!(self.overload, Overload::Queue { .. })
                && self.waiting.len() < self.queue_capacity()
            {
                self.queue_one()
            } else {
                self.turn_away_one()
            };
            if !more {
                return;
            }
        }
    }

    /// Whether a request taken now would run at once: the connection cap has room and the
    /// strategy is ready (asked without waiting).
    fn has_room_now(&mut self) -> bool {
        if !self.shared.context().gate().has_room() {
            return false;
        }
        let always = self.always.get_or_insert_with(|| {
            // A waker that is always set: a strategy with no room answers `Woken` at once.
            wake::pair().ok().inspect(|(set, _)| set.notify())
        });
        match always {
            Some((_, waker)) => self.strategy.wait_ready(waker.fd()) == Readiness::Ready,
            // No pair could be made: ask as the Wait policy does (the strategy may block).
            None => self.strategy.wait_ready(waker(&self.signals, &self.stops)) == Readiness::Ready,
        }
    }

    /// How many clients may wait in the queue of [`Overload::Queue`]: as many as may be served
    /// at once.
    fn queue_capacity(&self) -> usize {
        self.shared
            .context()
            .gate()
            .max()
            .unwrap_or(MAX_REQUESTS_PER_WAKE)
    }

    /// Takes one waiting client into the queue of [`Overload::Queue`]; `false` if none was
    /// waiting.
    fn queue_one(&mut self) -> bool {
        let Overload::Queue { timeout, .. } = self.overload else {
            return self.turn_away_one();
        };
        match self.next_request() {
            Next::Request(request) => {
                log::debug!(target: "socketserver::request",
                    "at max_connections: {} waits up to {timeout:?}", T::client_address(&request));
                self.waiting.push_back((deadline_in(timeout), request));
                true
            }
            Next::Again => true,
            Next::Nothing => false,
        }
    }

    /// Turns away the queued clients whose wait ran out.
    pub(super) fn expire_waiting(&mut self) {
        let now = Instant::now();
        while self
            .waiting
            .front()
            .is_some_and(|(deadline, _)| *deadline <= now)
        {
            if let Some((_, request)) = self.waiting.pop_front() {
                log::debug!(target: "socketserver::request",
                    "{} waited its time in the queue: turned away", T::client_address(&request));
                self.shared.context().turn_away(false);
                T::turn_away(request, self.busy_reply());
            }
        }
    }

    /// When the first queued client's wait runs out, if any waits.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.waiting.front().map(|(deadline, _)| *deadline)
    }

    /// At close: serves the queued clients there is room for now, and turns the others away.
    pub(super) fn drain_waiting(&mut self) {
        while let Some((_, request)) = self.waiting.pop_front() {
            if self.has_room_now() {
                self.dispatch(request, true);
            } else {
                self.shared.context().turn_away(false);
                T::turn_away(request, self.busy_reply());
            }
        }
    }

    /// Takes one request if one is waiting; `false` if none was.
    pub(super) fn take_one(&mut self) -> bool {
        match self.next_request() {
            Next::Request(request) => {
                if self
                    .shortage
                    .is_some_and(|s| s.last.elapsed() >= SHORTAGE_OVER)
                {
                    self.end_shortage();
                }
                self.dispatch(request, false);
                true
            }
            Next::Again => true,
            Next::Nothing => false,
        }
    }

    /// Hands a request to the strategy, unless its client gave up, `verify_request` says no,
    /// or its client is at its per-client cap. `queued`: it waited in the `Overload::Queue`.
    fn dispatch(&mut self, request: T::Request, queued: bool) {
        let context = self.shared.context();
        // Clients that waited for a slot (in the backlog while the server was full, or in the
        // queue): one that gave up and closed must not take a slot, or a handler's time (emqx
        // #14145). Looked at only then: it costs a poll (and a peek) per connection.
        if (queued || self.clients_waited.get()) && T::gave_up(&request) {
            log::debug!(target: "socketserver::request",
                "{} gave up waiting before it was taken", T::client_address(&request));
            context.gave_up();
            T::close_request(request);
            return;
        }
        if !self
            .hooks
            .verify_request(context, T::client_address(&request))
        {
            log::debug!(target: "socketserver::request",
                "verify_request rejected {}", T::client_address(&request));
            context.reject();
            T::close_request(request);
            return;
        }
        // Counts the request against `max_connections` (and its client's cap) until the job
        // has run or been dropped (for forking: until the parent has handed it to the child).
        let Some(admitted) = context.gate().enter(T::client_address(&request)) else {
            log::debug!(target: "socketserver::request",
                "{} is at its connection cap: turned away", T::client_address(&request));
            context.turn_away(true);
            T::turn_away(request, self.busy_reply());
            return;
        };
        let shared = Arc::clone(&self.shared);
        let finish = self.finish;
        let run = Box::new(move || finish(&shared, request, Some(admitted)));
        self.hand_over(Job::new(run, T::listener_fd(&self.socket)));
    }

    /// Takes one waiting client and turns it away, as the overload policy says; `false` if
    /// none was waiting.
    fn turn_away_one(&mut self) -> bool {
        match self.next_request() {
            Next::Request(request) => {
                log::debug!(target: "socketserver::request",
                    "at max_connections: {} turned away", T::client_address(&request));
                self.shared.context().turn_away(false);
                T::turn_away(request, self.busy_reply());
                true
            }
            Next::Again => true,
            Next::Nothing => false,
        }
    }

    /// What a turned-away client is sent: the busy reply with [`Overload::Reject`], nothing
    /// otherwise.
    fn busy_reply(&self) -> &'static [u8] {
        match self.overload {
            Overload::Close | Overload::Queue { reply: false, .. } => b"",
            _ => self.busy,
        }
    }

    /// Takes the next request from the socket. A datagram that cannot be served (oversized) is
    /// counted and reported here, and so is a failed `accept(2)`.
    fn next_request(&mut self) -> Next<T::Request> {
        match T::get_request(&self.socket, &mut self.buf) {
            Ok(Received::Request(request)) => Next::Request(request),
            Ok(Received::Dropped(error)) => {
                let context = self.shared.context();
                context.reject();
                context.handle_error(&error);
                Next::Again
            }
            Err(e) => {
                self.get_request_failed(e);
                Next::Nothing
            }
        }
    }

    fn get_request_failed(&mut self, error: io::Error) {
        match error.kind() {
            // Linux's `accept` looks for a free descriptor before it looks at the queue, so
            // "nothing waiting" means descriptors were there: the loop has caught up and the
            // shortage is over. (Not at the first request taken: at the limit, every
            // descriptor freed is taken at once and the next `accept` fails again; that is
            // the same shortage, and must not log a warning per request. `take_one` ends it
            // too once requests are taken with no failure for `SHORTAGE_OVER`, for
            // `handle_request`, which never calls `accept` without a client waiting.)
            io::ErrorKind::WouldBlock => {
                // The backlog is empty: whoever comes next did not wait.
                self.clients_waited.set(false);
                self.end_shortage();
            }
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset => {
                log::debug!(target: "socketserver::accept",
                    "{}: client left before accept: {error}", self.server_address());
            }
            _ => {
                let scarce = sys::socket::is_resource_shortage(&error);
                let addr = self.shared.context().server_address();
                if !scarce {
                    static LIMIT: Limit = Limit::new();
                    say_limited(
                        &LIMIT,
                        Level::Error,
                        "socketserver::accept",
                        format_args!("{addr}: cannot take a request: {error}"),
                    );
                } else {
                    let failures = self.shortage.map_or(0, |s| s.failures) + 1;
                    if failures == 1 {
                        log::warn!(target: "socketserver::accept",
                            "{addr}: cannot take a request: {error}; pausing {ACCEPT_BACKOFF:?} between attempts until it works");
                    } else {
                        log::debug!(target: "socketserver::accept",
                            "{addr}: cannot take a request: {error} (attempt {failures})");
                    }
                    self.shortage = Some(Shortage {
                        failures,
                        last: Instant::now(),
                    });
                }
                self.pause(ACCEPT_BACKOFF);
            }
        }
    }

    /// Ends the current shortage, if any, saying so.
    fn end_shortage(&mut self) {
        if let Some(shortage) = self.shortage.take() {
            log::info!(target: "socketserver::accept",
                "{}: taking requests again after {} failed attempts",
                self.server_address(), shortage.failures);
        }
    }

    /// Waits while `max_connections` requests are open, at most `timeout` (`None`: until there
    /// is room or a stop). Never spins: it sleeps in `poll(2)` on the waker and on the gate's
    /// socket, which gets a byte when a request ends at the cap.
    pub(super) fn wait_room(&self, timeout: Option<Duration>) -> Room {
        let gate = self.shared.context().gate();
        let deadline = timeout.map(deadline_in);
        loop {
            // The common case costs no system call: the wake-up bytes matter only before a
            // sleep in `poll`.
            if gate.has_room() {
                return Room::Free;
            }
            // Drop stale wake-ups, then look again: a request that ended in between may have
            // had its byte drained.
            gate.drain();
            if gate.has_room() {
                return Room::Free;
            }
            // Full: clients now wait in the backlog, and may give up there.
            self.clients_waited.set(true);
            if deadline.is_some_and(|d| d <= Instant::now()) {
                return Room::Full;
            }
            let mut fds = [
                PollFd::new(waker(&self.signals, &self.stops), PollFlags::POLLIN),
                PollFd::new(gate.room_fd(), PollFlags::POLLIN),
            ];
            match sleep_until(&mut fds, deadline) {
                Ok(_) if fds[0].revents().is_some_and(|r| !r.is_empty()) => return Room::Woken,
                Ok(_) => {}
                Err(e) => {
                    // The serving loop polls the waker next and reports the error.
                    log::error!(target: "socketserver::server", "waiting for a connection to end: {e}");
                    return Room::Woken;
                }
            }
        }
    }

    /// Sleeps up to `duration`, waking early for a stop request.
    fn pause(&self, duration: Duration) {
        let mut fds = [PollFd::new(
            waker(&self.signals, &self.stops),
            PollFlags::POLLIN,
        )];
        let _ = sleep_until(&mut fds, Some(deadline_in(duration)));
    }
}
