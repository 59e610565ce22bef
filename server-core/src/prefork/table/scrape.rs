//! The metrics listener of [`Prefork::metrics`](crate::prefork::Prefork::metrics), served
//! from the supervisor's own loop: what to poll, and the answers, made from the table.
//! Without the `http` feature there is no metrics listener: nothing to poll.

#[cfg(not(feature = "http"))]
mod none {
    use std::os::fd::{BorrowedFd, RawFd};
    use std::time::Instant;

    use nix::poll::PollFlags;

    use super::super::Table;
    use crate::handler::Handler;
    use crate::strategy::Strategy;
    use crate::transport::Transport;

    impl<T: Transport, H: Handler, S: Strategy> Table<T, H, S> {
        pub(in crate::prefork) fn metrics_raw_fds(&self) -> Vec<RawFd> {
            Vec::new()
        }

        pub(in crate::prefork) fn metrics_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
            Vec::new()
        }

        pub(in crate::prefork) fn metrics_deadline(&self) -> Option<Instant> {
            None
        }

        pub(in crate::prefork) fn serve_metrics(&mut self, _: &[bool]) {}

        pub(in crate::prefork) fn close_metrics(&mut self) {}

        pub(in crate::prefork) fn metrics_listener(&self) -> Option<BorrowedFd<'_>> {
            None
        }

        pub(in crate::prefork) fn start_metrics(&mut self) {}
    }
}

#[cfg(feature = "http")]
mod with_http {

    use std::os::fd::{AsFd, BorrowedFd, RawFd};
    use std::time::Instant;

    use nix::poll::PollFlags;

    use super::super::Table;
    use crate::handler::Handler;
    use crate::metrics::prefork::{answer, PreforkView, Readiness};
    use crate::metrics::responder::Responder;
    use crate::prefork::figures::{Figures, REASONS};
    use crate::prefork::scoreboard::WorkerState;
    use crate::strategy::Strategy;
    use crate::transport::Transport;

    impl<T: Transport, H: Handler, S: Strategy> Table<T, H, S> {
        /// Serves `responder` from now on.
        pub(in crate::prefork) fn set_metrics(&mut self, responder: Option<Responder>) {
            self.metrics = responder;
        }

        /// The metrics listener's descriptors, which a forked worker closes.
        pub(in crate::prefork) fn metrics_raw_fds(&self) -> Vec<RawFd> {
            self.metrics
                .as_ref()
                .map(Responder::raw_fds)
                .unwrap_or_default()
        }

        /// What the metrics listener needs polled (nothing without one).
        pub(in crate::prefork) fn metrics_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
            self.metrics
                .as_ref()
                .map(Responder::poll_fds)
                .unwrap_or_default()
        }

        /// When the slowest scraper's time is up.
        pub(in crate::prefork) fn metrics_deadline(&self) -> Option<Instant> {
            self.metrics.as_ref().and_then(Responder::next_deadline)
        }

        /// Moves the scrapes on after a poll (`ready`: which of [`metrics_fds`](Self::metrics_fds)
        /// had an event).
        pub(in crate::prefork) fn serve_metrics(&mut self, ready: &[bool]) {
            let Some(mut responder) = self.metrics.take() else {
                return;
            };
            let readiness = self.readiness();
            responder.work(ready, |path| answer(path, readiness, || self.view()));
            self.metrics = Some(responder);
        }

        /// Closes the metrics listener (the scrapers it had queued are still answered): after
        /// an upgrade, the new program's supervisor answers on the socket (handed over in
        /// [`METRICS_FD`](crate::prefork::METRICS_FD)), so scrapes no longer alternate between
        /// the two programs' totals.
        pub(in crate::prefork) fn close_metrics(&mut self) {
            if let Some(responder) = &mut self.metrics {
                responder.stop_listening();
                log::info!(target: "socketserver::metrics",
                "metrics listener closed: the new program serves the metrics");
            }
        }

        /// The metrics listener, to hand to the new program of an upgrade.
        pub(in crate::prefork) fn metrics_listener(&self) -> Option<BorrowedFd<'_>> {
            self.metrics.as_ref().and_then(Responder::listener)
        }

        /// Accepts scrapers from now on (a listener handed over by an upgrade waits until
        /// this program is ready, while the old one still answers).
        pub(in crate::prefork) fn start_metrics(&mut self) {
            if let Some(responder) = &mut self.metrics {
                if responder.start_accepting() {
                    log::info!(target: "socketserver::metrics",
                        "this program is ready: it answers on the metrics listener it was handed");
                }
            }
        }

        /// Ready once a worker is, until the supervisor stops.
        fn readiness(&self) -> Readiness {
            if self.stopping() {
                Readiness::Draining
            } else if self.any_ready() {
                Readiness::Ready
            } else {
                Readiness::NotServing
            }
        }

        /// The whole server's figures: the ended workers' counters, and every live worker's
        /// figures as of its last heartbeat.
        fn view(&self) -> PreforkView {
            let mut total = self.retired;
            for w in &self.workers {
                total.add(&w.figures);
            }
            let Figures { stats, busy, idle } = total;
            let states = [
                WorkerState::Starting,
                WorkerState::Ready,
                WorkerState::Draining,
            ];
            let workers = states
                .iter()
                .map(|state| {
                    let n = self.workers.iter().filter(|w| w.state == *state).count();
                    (label(*state), u64::try_from(n).unwrap_or(u64::MAX))
                })
                .collect();
            let listeners = std::iter::once(self.server.as_fd()).chain(self.slots.sockets());
            let queues: Vec<u64> = listeners
                .filter_map(|fd| crate::sys::socket::listen_queue(fd).ok())
                .collect();
            PreforkView {
                stats,
                busy,
                idle,
                listen_queue: (!queues.is_empty()).then(|| queues.iter().sum()),
                workers,
                ended: REASONS.iter().copied().zip(self.ended).collect(),
            }
        }
    }

    /// A state's `state` label.
    fn label(state: WorkerState) -> &'static str {
        match state {
            WorkerState::Starting => "starting",
            WorkerState::Ready => "ready",
            WorkerState::Draining => "draining",
        }
    }
}
