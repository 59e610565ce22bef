//! What an operator scrapes: the server's figures in Prometheus' text format (version 0.0.4),
//! and health checks, on a listener of their own.
//!
//! [`Server::serve_metrics`] starts a small HTTP server on its own thread and address (for
//! worker processes, [`Prefork::metrics`](crate::prefork::Prefork::metrics) serves it from the
//! supervisor: [below](#the-process-model)), which answers
//!
//! - `GET /metrics`: the figures below, in Prometheus' text exposition format 0.0.4;
//! - `GET /healthz`: `200 ok` while the process answers at all;
//! - `GET /readyz`: `200 ready` while the server takes requests, `503` before it serves and as
//!   soon as it starts draining (a stop, or the first signal with
//!   [`drain_delay`](crate::ServerBuilder::drain_delay)), before its listener closes, so load
//!   balancers that check it move traffic away first.
//!
//! It never touches the request workers: it answers when every worker is busy, and a slow
//! scraper holds only its own thread (5 s timeouts, 16 connections at most, more are closed).
//!
//! # Metrics
//!
//! | name | type | what |
//! |---|---|---|
//! | `socketserver_requests_total{outcome}` | counter | requests handled, `outcome="succeeded"` or `"failed"` |
//! | `socketserver_requests_rejected_total{reason}` | counter | refused before a handler ran: `reason="overloaded"` (at `max_connections`), `"over_client_limit"`, `"other"` (`verify_request`, a bad PROXY header, an oversized datagram) |
//! | `socketserver_connections_gave_up_total` | counter | clients that closed while they waited in the backlog |
//! | `socketserver_requests_cut_off_total` | counter | requests whose connection was shut down at [`max_request_time`](crate::ServerBuilder::max_request_time) |
//! | `socketserver_requests_active` | gauge | handlers running now |
//! | `socketserver_requests_open` | gauge | requests taken and not finished, parked connections included (what `max_connections` caps) |
//! | `socketserver_connections_parked` | gauge | idle keep-alive connections parked in the serving loop, holding no worker ([`Strategy::parks_idle`]) |
//! | `socketserver_request_duration_seconds` | histogram | how long handled requests took (buckets from 0.5 ms to 10 s) |
//! | `socketserver_strategy_busy`, `socketserver_strategy_idle` | gauge | threads, workers or children running a request, and those waiting for one (strategies other than `Serial`) |
//! | `socketserver_listen_queue` | gauge | connections waiting in the listen backlog to be accepted (TCP, where Linux reports it) |
//! | `socketserver_ready` | gauge | 1 while `/readyz` says ready |
//! | `socketserver_workers{state}` | gauge | worker processes alive now, `state="starting"`, `"ready"` or `"draining"` (the process model only) |
//! | `socketserver_worker_restarts_total{reason}` | counter | worker processes that ended, by reason: `"exited"`, `"killed"` (a signal the supervisor did not send: `kill -9`, the OOM killer), `"heartbeat_timeout"`, `"max_requests"`, `"reload"` (each replaced), `"scaled_down"`, `"stop"`, `"boot_error"` (not replaced) (the process model only) |
//!
//! Some PromQL to start with: `rate(socketserver_requests_total[1m])` (requests per second),
//! `sum by (reason) (rate(socketserver_requests_rejected_total[5m]))` (what is refused, and
//! why), `histogram_quantile(0.99, rate(socketserver_request_duration_seconds_bucket[5m]))`
//! (p99 latency), `socketserver_strategy_busy / (socketserver_strategy_busy +
//! socketserver_strategy_idle)` (how busy the workers are), `socketserver_listen_queue`
//! (clients waiting for a slot); with worker processes,
//! `increase(socketserver_worker_restarts_total{reason!~"stop|reload|max_requests|scaled_down"}[1h])`
//! (workers that crashed, were killed or hung in the last hour) and
//! `socketserver_workers{state="ready"}` (how many serve). `tests/prometheus.rs` runs each of
//! these in a real Prometheus.
//!
//! With [`Forking`](crate::Forking), requests are counted by the strategy (its
//! [`Activity`]): the request counters here stay at what the parent saw.
//!
//! # The process model
//!
//! With [`Prefork`](crate::prefork::Prefork), each worker process has its own counters, in
//! its own memory: scraping a worker would show a part of the server, a different part on each
//! scrape (what users of per-process metrics suffer: prometheus/client_python #815). So the
//! supervisor gathers them, and one scrape of it sees the whole server:
//!
//! - **How.** Each worker sends its figures with every heartbeat (at least every 100 ms while
//!   busy, every `poll_interval` while idle; see the [process model](crate::prefork)) on its
//!   heartbeat pipe: its [`Stats`] counters, the duration histogram's buckets, its `active`
//!   and `open` requests, and its strategy's busy and idle threads (a `Serial` worker counts as
//!   one thread, busy while it runs a request). A worker that drained after SIGTERM sends a
//!   last report before it exits.
//! - **What is added up.** Counters (`_total`, the histogram) are the sum over every worker
//!   the server ever had: the live ones as of their last report, and the ended ones as of
//!   theirs. Gauges (`socketserver_requests_active`, `_open`, `socketserver_strategy_busy`,
//!   `_idle`) are the sum over the live workers. `socketserver_listen_queue` is the listening
//!   socket's queue (every slot's, with `reuse_port`), read by the supervisor, which holds it.
//! - **Restarts.** A worker that is recycled, reloaded, scaled down or dies keeps its counts
//!   in the totals, so counters never go backwards while the supervisor runs (Prometheus sees
//!   no counter reset). What a worker finished after its last report is lost if it dies
//!   without draining (SIGKILL, the OOM killer): at most a heartbeat's worth of requests. A
//!   restart of the supervisor itself (a new program after a binary upgrade, or a service
//!   restart) starts again from zero, which Prometheus' `rate` and `increase` handle as a
//!   counter reset.
//! - **Where.** The supervisor serves the listener from its own `poll(2)` loop, beside its
//!   signals and its workers' heartbeats, with a small non-blocking HTTP/1.x responder (one
//!   request per connection, `Connection: close`; 16 scrapers at most, 8 KiB of request, 5 s
//!   each): no thread, because the supervisor forks (a thread's lock held at a fork stays
//!   locked in the child), and no extra process, because the figures are in the supervisor's
//!   memory. It never touches the workers, so it answers while every one is busy or stuck. A
//!   binary upgrade (SIGUSR2) hands the socket itself to the new program (in
//!   [`METRICS_FD`](crate::prefork::METRICS_FD), beside the listening socket), which takes
//!   scrapes from it once its first worker is ready; the old supervisor then lets go. So
//!   scrapes do not alternate between the two programs' totals while the old one drains, and
//!   none queued during the hand-over is reset (as it would be by closing one socket of a
//!   `SO_REUSEPORT` pair). The socket has `SO_REUSEADDR` but not `SO_REUSEPORT`: a second
//!   program started on the same address fails to bind instead of taking half the scrapes.
//! - **`/readyz`** is ready once the first worker is, `503 not serving` before that (and
//!   whenever no worker is ready), and `503 draining` from the moment the supervisor starts to
//!   stop (SIGTERM, SIGINT, SIGQUIT, or handing over to an upgrade), while its workers finish
//!   their requests. `/healthz` answers while the supervisor runs.
//!
//! # Examples
//!
//! ```
//! # use socketserver::{HandleResult, Handler, ServerContext, StreamRequest, StreamRequestHandler, TcpServer};
//! # use std::io::{Read, Write};
//! # struct Echo;
//! # impl Handler for Echo { type State = (); fn new(_: &ServerContext) -> Self { Echo } }
//! # impl StreamRequestHandler for Echo {
//! #     fn handle(&mut self, _: &mut StreamRequest<'_>) -> HandleResult { Ok(()) }
//! # }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TcpServer::<Echo>::bind("127.0.0.1:0")?;
//! let metrics = server.serve_metrics("127.0.0.1:0")?;
//! let mut scrape = std::net::TcpStream::connect(metrics.address())?;
//! scrape.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
//! let mut text = String::new();
//! scrape.read_to_string(&mut text)?;
//! assert!(text.contains("# TYPE socketserver_requests_total counter"));
//! # Ok(())
//! # }
//! ```

pub(crate) mod prefork;
pub(crate) mod responder;
mod text;

use std::fmt;
use std::marker::PhantomData;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::http::{Http, HttpHandler, Request, Response};
use crate::server::{Overload, Server, ServerContext, Shared, TcpServer};
use crate::shutdown::ShutdownHandle;
use crate::stats::{Stats, DURATION_BUCKETS};
use crate::strategy::{Activity, Serial, Strategy};
use crate::transport::Transport;
use text::{le, Exposition, Kind};

/// The most connections the metrics listener serves at once; more are closed.
const MAX_SCRAPERS: usize = 16;

/// How long a scraper may take to send its request or read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// A running metrics listener (see the [module docs](self)); stops when dropped.
pub struct MetricsServer {
    address: SocketAddr,
    stop: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (the port the system picked, for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl<T: Transport, H: Handler, S: Strategy> Server<T, H, S> {
    /// Serves this server's metrics and health checks on `address`, from a thread of its own,
    /// until the returned [`MetricsServer`] is dropped (see the [`metrics`](crate::metrics)
    /// module for what it answers). Start it before serving; `/readyz` says ready once the
    /// serving loop runs.
    ///
    /// # Errors
    ///
    /// Binding `address` (as [`TcpServer::bind`] fails), or starting the thread
    /// ([`Error::Spawn`]).
    pub fn serve_metrics<A: ToSocketAddrs + fmt::Debug>(
        &self,
        address: A,
    ) -> Result<MetricsServer> {
        let source = Source {
            shared: Arc::clone(self.shared()),
            activity: self.strategy().activity(),
            handle: self.shutdown_handle(),
        };
        let mut metrics = TcpServer::<Http<Endpoint<H::State>>, Serial>::with_state(source)
            .nodelay(true)
            .read_timeout(Some(SCRAPE_TIMEOUT))
            .write_timeout(Some(SCRAPE_TIMEOUT))
            .max_connections(Some(MAX_SCRAPERS))
            .overload(Overload::Close)
            .bind(address)?;
        let address = metrics
            .server_address()
            .as_inet()
            .ok_or_else(|| Error::InvalidOption {
                option: "metrics address",
                reason: "must be an internet address".into(),
            })?;
        let stop = metrics.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("socketserver-metrics".into())
            .spawn(move || {
                if let Err(e) = metrics.serve_forever() {
                    log::error!(target: "socketserver::metrics", "metrics on {address}: {e}");
                }
            })
            .map_err(|source| Error::Spawn {
                what: "the metrics thread",
                source,
            })?;
        log::info!(target: "socketserver::metrics", "metrics on {address}");
        Ok(MetricsServer {
            address,
            stop,
            thread: Some(thread),
        })
    }
}

/// What the metrics listener reads: the served server's shared part and its strategy's
/// counters.
struct Source<St> {
    shared: Arc<Shared<St>>,
    activity: Option<Activity>,
    handle: ShutdownHandle,
}

impl<St> Source<St> {
    fn context(&self) -> &ServerContext<St> {
        self.shared.context()
    }

    fn ready(&self) -> bool {
        self.handle.is_serving() && !self.handle.is_closing()
    }

    /// The exposition, from the figures now.
    fn render(&self) -> String {
        let mut e = Exposition::default();
        let strategy = self.activity.as_ref().map(|activity| {
            let busy = activity.active();
            (
                as_u64(busy),
                as_u64(activity.tracked().saturating_sub(busy)),
            )
        });
        // Sampled by the serving loop, which holds the socket: the listener keeps no
        // descriptor of it (one would keep it open, queueing connections, after the close).
        let listen_queue = self.context().listen_queue();
        server_families(&mut e, &self.context().stats(), strategy, listen_queue);
        ready_family(&mut e, self.ready());
        e.finish()
    }
}

/// A count as a sample value: exact in an f64 up to 2^53.
fn count(n: u64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    n
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The server's families (every row of the table in the module docs but
/// `socketserver_ready`): from `stats`, the strategy's `(busy, idle)` if it keeps them, and
/// the listen queue where Linux tells.
fn server_families(
    e: &mut Exposition,
    stats: &Stats,
    strategy: Option<(u64, u64)>,
    listen_queue: Option<u64>,
) {
    let gauge = |n: usize| count(as_u64(n));
    e.family(
        "socketserver_requests_total",
        "Requests handled, by outcome.",
        Kind::Counter,
    )
    .sample(
        "socketserver_requests_total",
        &[("outcome", "succeeded")],
        count(stats.succeeded),
    )
    .sample(
        "socketserver_requests_total",
        &[("outcome", "failed")],
        count(stats.failed),
    );
    let other = stats
        .rejected
        .saturating_sub(stats.overloaded)
        .saturating_sub(stats.over_client_limit);
    e.family(
        "socketserver_requests_rejected_total",
        "Requests refused before a handler ran, by reason.",
        Kind::Counter,
    );
    for (reason, n) in [
        ("overloaded", stats.overloaded),
        ("over_client_limit", stats.over_client_limit),
        ("other", other),
    ] {
        e.sample(
            "socketserver_requests_rejected_total",
            &[("reason", reason)],
            count(n),
        );
    }
    e.family(
        "socketserver_connections_gave_up_total",
        "Clients that closed while they waited in the listen backlog.",
        Kind::Counter,
    )
    .sample(
        "socketserver_connections_gave_up_total",
        &[],
        count(stats.gave_up),
    )
    .family(
        "socketserver_requests_cut_off_total",
        "Requests whose connection was shut down at max_request_time.",
        Kind::Counter,
    )
    .sample(
        "socketserver_requests_cut_off_total",
        &[],
        count(stats.cut_off),
    )
    .family(
        "socketserver_requests_active",
        "Handlers running now.",
        Kind::Gauge,
    )
    .sample("socketserver_requests_active", &[], gauge(stats.active))
    .family(
        "socketserver_requests_open",
        "Requests taken and not finished.",
        Kind::Gauge,
    )
    .sample("socketserver_requests_open", &[], gauge(stats.open))
    .family(
        "socketserver_connections_parked",
        "Idle connections parked in the serving loop between requests.",
        Kind::Gauge,
    )
    .sample("socketserver_connections_parked", &[], gauge(stats.parked));
    let durations = stats.durations;
    let name = "socketserver_request_duration_seconds";
    e.family(name, "How long handled requests took.", Kind::Histogram);
    for (bound, n) in DURATION_BUCKETS.iter().zip(durations.at_most) {
        e.sample(&format!("{name}_bucket"), &[("le", &le(*bound))], count(n));
    }
    e.sample(
        &format!("{name}_bucket"),
        &[("le", "+Inf")],
        count(durations.count),
    )
    .sample(&format!("{name}_sum"), &[], durations.sum_seconds)
    .sample(&format!("{name}_count"), &[], count(durations.count));
    if let Some((busy, idle)) = strategy {
        e.family(
            "socketserver_strategy_busy",
            "Threads, workers or children running a request.",
            Kind::Gauge,
        )
        .sample("socketserver_strategy_busy", &[], count(busy))
        .family(
            "socketserver_strategy_idle",
            "Threads or workers waiting for a request.",
            Kind::Gauge,
        )
        .sample("socketserver_strategy_idle", &[], count(idle));
    }
    if let Some(waiting) = listen_queue {
        e.family(
            "socketserver_listen_queue",
            "Connections waiting in the listen backlog to be accepted.",
            Kind::Gauge,
        )
        .sample("socketserver_listen_queue", &[], count(waiting));
    }
}

/// `socketserver_ready`.
fn ready_family(e: &mut Exposition, ready: bool) {
    e.family(
        "socketserver_ready",
        "1 while the server takes requests and is not draining.",
        Kind::Gauge,
    )
    .sample("socketserver_ready", &[], if ready { 1.0 } else { 0.0 });
}

/// The metrics listener's HTTP handler.
struct Endpoint<St>(PhantomData<fn() -> St>);

impl<St: Send + Sync + 'static> Handler for Endpoint<St> {
    type State = Source<St>;

    fn new(_: &ServerContext<Source<St>>) -> Self {
        Endpoint(PhantomData)
    }
}

impl<St: Send + Sync + 'static> HttpHandler for Endpoint<St> {
    fn respond(&mut self, request: &Request, server: &ServerContext<Source<St>>) -> Response {
        if request.method() != "GET" && request.method() != "HEAD" {
            return Response::new(405).with_header("Allow", "GET, HEAD");
        }
        let source = server.state();
        match request.path() {
            "/metrics" => Response::new(200)
                .with_content_type(text::CONTENT_TYPE)
                .with_body(source.render()),
            "/healthz" => Response::text(200, "ok\n"),
            "/readyz" if source.ready() => Response::text(200, "ready\n"),
            "/readyz" if source.handle.is_closing() => Response::text(503, "draining\n"),
            "/readyz" => Response::text(503, "not serving\n"),
            _ => Response::text(404, "not found: try /metrics, /healthz or /readyz\n"),
        }
    }
}
