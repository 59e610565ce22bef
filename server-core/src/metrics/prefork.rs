//! What the process model's supervisor answers on its metrics listener: the same families as
//! one process, added up over its workers, plus the workers' own (see the
//! [module docs](super#the-process-model)).

use super::responder::Reply;
use super::text::{Exposition, Kind, CONTENT_TYPE};
use super::{count, ready_family, server_families};
use crate::stats::Stats;

/// Whether the supervisor's server takes requests, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// At least one worker is ready and the supervisor is not stopping.
    Ready,
    /// No worker is ready (yet, or any more).
    NotServing,
    /// The supervisor is stopping (SIGTERM, SIGINT, SIGQUIT, or after an upgrade).
    Draining,
}

/// The supervisor's figures, added up over its workers.
#[derive(Debug, Clone, Default)]
pub(crate) struct PreforkView {
    /// Counters of every worker, live and ended; gauges of the live ones.
    pub(crate) stats: Stats,
    /// The live workers' strategy threads running a request, and waiting for one.
    pub(crate) busy: u64,
    pub(crate) idle: u64,
    /// The listening sockets' accept queues, where Linux tells.
    pub(crate) listen_queue: Option<u64>,
    /// Live workers by state: `(state, how many)`.
    pub(crate) workers: Vec<(&'static str, u64)>,
    /// Workers that ended, by reason: `(reason, how many)`.
    pub(crate) ended: Vec<(&'static str, u64)>,
}

/// The answer to `GET path`, from the figures `view` gives (only made for `/metrics`).
pub(crate) fn answer(
    path: &str,
    readiness: Readiness,
    view: impl FnOnce() -> PreforkView,
) -> Reply {
    match (path, readiness) {
        ("/metrics", _) => Reply {
            status: 200,
            content_type: CONTENT_TYPE,
            body: render(&view(), readiness == Readiness::Ready),
        },
        ("/healthz", _) => Reply::text(200, "ok\n"),
        ("/readyz", Readiness::Ready) => Reply::text(200, "ready\n"),
        ("/readyz", Readiness::Draining) => Reply::text(503, "draining\n"),
        ("/readyz", Readiness::NotServing) => Reply::text(503, "not serving\n"),
        _ => Reply::text(404, "not found: try /metrics, /healthz or /readyz\n"),
    }
}

/// The exposition of `view`.
fn render(view: &PreforkView, ready: bool) -> String {
    let mut e = Exposition::default();
    server_families(
        &mut e,
        &view.stats,
        Some((view.busy, view.idle)),
        view.listen_queue,
    );
    ready_family(&mut e, ready);
    e.family(
        "socketserver_workers",
        "Worker processes alive now, by state.",
        Kind::Gauge,
    );
    for (state, n) in &view.workers {
        e.sample("socketserver_workers", &[("state", state)], count(*n));
    }
    e.family(
        "socketserver_worker_restarts_total",
        "Worker processes that ended, by reason (each replaced, but for stop, scaled_down and boot_error).",
        Kind::Counter,
    );
    for (reason, n) in &view.ended {
        e.sample(
            "socketserver_worker_restarts_total",
            &[("reason", reason)],
            count(*n),
        );
    }
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_the_supervisor_and_metrics_has_the_workers() {
        let view = || PreforkView {
            workers: vec![("starting", 1), ("ready", 2), ("draining", 0)],
            ended: vec![("killed", 1), ("stop", 0)],
            ..PreforkView::default()
        };
        assert_eq!(answer("/readyz", Readiness::Ready, view).status, 200);
        assert_eq!(answer("/readyz", Readiness::Draining, view).status, 503);
        assert_eq!(answer("/readyz", Readiness::NotServing, view).status, 503);
        assert_eq!(answer("/healthz", Readiness::Draining, view).status, 200);
        assert_eq!(answer("/nothing", Readiness::Ready, view).status, 404);
        let text = answer("/metrics", Readiness::Ready, view).body;
        for line in [
            "socketserver_workers{state=\"ready\"} 2\n",
            "socketserver_worker_restarts_total{reason=\"killed\"} 1\n",
            "# TYPE socketserver_worker_restarts_total counter\n",
            "socketserver_strategy_idle 0\n",
            "socketserver_ready 1\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
