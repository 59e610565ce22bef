//! The process model: a supervisor that forks worker processes serving one listening socket,
//! keeps them alive, and replaces them without losing a request (gunicorn's arbiter, nginx's
//! master, Apache's prefork).
//!
//! # The model
//!
//! [`Prefork::new`] takes a **bound** server. The supervisor (the process that calls
//! [`Prefork::serve`]) never serves: it forks `workers` children, each a copy of it that runs
//! [`serve_forever`](crate::Server::serve_forever) on the same listening socket, with the
//! server's strategy ([`Serial`](crate::Serial), [`Threading`](crate::Threading) or
//! [`Pool`](crate::Pool)) inside. The kernel hands each new connection (or datagram) to one of
//! the workers waiting on the socket. Because the socket is shared, a worker that stops
//! accepting loses nothing: connections queued in the backlog stay there for the others. All
//! four transports work.
//!
//! The supervisor then waits in one `poll(2)` on its signals and its workers' heartbeats:
//!
//! - **Liveness.** Each worker writes a heartbeat to a pipe of its own (no file on disk, as
//!   gunicorn's, which blocks when `/tmp` is slow: gunicorn #1863) from every pass of its
//!   serving loop, at least every `poll_interval` while idle. A worker silent for
//!   [`heartbeat_timeout`](Prefork::heartbeat_timeout) (default 30 s) is sent SIGABRT, then
//!   SIGKILL a second later, and replaced. The first heartbeat marks a worker ready. This is
//!   about liveness only, not how long a request may take (gunicorn's single `timeout` kills
//!   slow requests, #588, #1440): with [`Threading`](crate::Threading) or [`Pool`](crate::Pool)
//!   the loop keeps beating while requests run; with [`Serial`](crate::Serial) a request runs
//!   on the loop itself, so one longer than `heartbeat_timeout` counts as a hang.
//! - **Respawn.** A worker that exits or is killed is replaced at once. Workers that die within
//!   5 s of their start, one after another (a crash loop), are respawned after a delay that
//!   doubles from 100 ms up to 10 s, and goes back to none once a worker lives longer.
//! - **Boot errors.** A worker whose set-up fails
//!   ([`on_worker_start`](Prefork::on_worker_start) returns an error or panics) stops the whole
//!   server: [`serve`](Prefork::serve) returns [`PreforkError::WorkerBoot`] with the message,
//!   instead of respawning workers that can never start (gunicorn's `WORKER_BOOT_ERROR`).
//! - **Recycling.** With [`max_requests`](Prefork::max_requests) (plus a random
//!   [`max_requests_jitter`](Prefork::max_requests_jitter)), a worker that has served that many
//!   requests is replaced *spawn before retire*: its replacement is started, and only once it is
//!   ready does the old worker get SIGTERM and drain (gunicorn stops the old worker first and
//!   drops requests meanwhile: #3038, #2422).
//! - **Orphans.** Each worker asks the kernel to SIGKILL it when the supervisor dies
//!   (`PR_SET_PDEATHSIG`), then checks its parent is still the supervisor (which may have died
//!   just before). Killing the supervisor with `kill -9` leaves no worker holding the port.
//! - **Scoreboard.** The supervisor keeps a row per worker (pid, state, requests, last
//!   heartbeat) and the recent exits with their reason: a [`Scoreboard`], logged at info level
//!   (target `socketserver::prefork`) and given to [`on_change`](Prefork::on_change) on every
//!   change, with one aggregate [`PreforkStats`] for the whole server.
//! - **Metrics.** With `Prefork::metrics` (the `http` feature), the supervisor serves
//!   `/metrics`, `/healthz` and `/readyz` from its own loop: every worker's figures, sent with
//!   its heartbeats, added up, with those of the workers that ended, so counters never go
//!   backwards (the `metrics` module's docs, "The process model", say how).
//!
//! # Signals
//!
//! Send them to the supervisor (its pid is the program's). Beside gunicorn's and nginx's:
//!
//! | signal | here | gunicorn | nginx |
//! |---|---|---|---|
//! | TERM | graceful stop: workers stop accepting, finish their requests within [`graceful_timeout`](Prefork::graceful_timeout), then are killed | graceful | fast |
//! | INT, QUIT | stop at once | fast | INT fast, QUIT graceful |
//! | HUP | rolling reload: [`on_reload`](Prefork::on_reload), then one worker at a time, each replacement ready before its old worker gets TERM; rolled back if a replacement is not ready within `heartbeat_timeout` | reload: new workers, old ones stopped gracefully | check the configuration, new workers, drain the old |
//! | TTIN, TTOU | one worker more, one fewer (never below 1) | same | none |
//! | USR2 | binary upgrade (below): the new program gets the socket, this one drains once it is ready; if it fails, this one keeps serving | re-exec the binary, then TERM the old master by hand | binary upgrade, then QUIT the old master by hand |
//!
//! A second TERM, INT or QUIT while stopping stops at once. A HUP while a reload runs is
//! queued (one at most) and runs after it; HUP, TTIN, TTOU and USR2 while stopping are
//! ignored; a USR2 while an upgrade or a reload runs, and a HUP while an upgrade runs, are
//! ignored; a TERM, INT or QUIT during an upgrade kills the new program first. Each case is
//! said in the log.
//!
//! # Binary upgrade (SIGUSR2)
//!
//! 1. The supervisor forks a child that puts the listening socket on descriptor 3 and sets
//!    `LISTEN_FDS=1`, `LISTEN_PID` (its own pid) and `LISTEN_FDNAMES` (see
//!    [`upgrade_name`](Prefork::upgrade_name)) — systemd's socket-activation protocol, which
//!    [`ListenFds`](crate::systemd::ListenFds) reads — plus [`READY_FD`], a pipe, and
//!    [`METRICS_FD`], the [metrics](Prefork::metrics) listener if there is one. It then
//!    execs the program again with the same arguments and environment: the file at the path
//!    `/proc/self/exe` named when `serve` started, so a binary replaced there is the one that
//!    runs.
//! 2. The new program adopts the socket (it must take it from `ListenFds` rather than bind,
//!    as the examples do) and starts its own supervisor and workers; both sets of workers
//!    accept from the one socket meanwhile, so nothing queued is lost.
//!    [`metrics`](Prefork::metrics) on the same address adopts the metrics listener handed
//!    over instead of binding (Prometheus' configuration names one address). When its first
//!    worker is ready, its [`serve`](Prefork::serve) writes to the pipe and starts answering
//!    scrapes (every program gets this).
//! 3. The old supervisor sends `MAINPID=` (the new pid) to systemd, leaves the Unix socket
//!    file in place, lets go of the metrics listener, drains its workers as on TERM, and
//!    `serve` returns with
//!    [`PreforkReport::upgraded_to`] set; the program exits.
//! 4. If the new program exits, closes the pipe, or is not ready within
//!    [`heartbeat_timeout`](Prefork::heartbeat_timeout), it is killed (its workers die with
//!    it) and the old supervisor keeps serving, saying so in the log.
//!
//! nginx does the same in two steps (USR2 starts the new master with the sockets in the
//! `NGINX` variable; the operator sends WINCH, then QUIT, to the old one once satisfied);
//! gunicorn's USR2 re-execs with the sockets in `GUNICORN_FD` and the operator TERMs the old
//! master. Here the hand-over waits for readiness and completes by itself, as Cloudflare's
//! tableflip does. The new process is a child of the old one until it exits; under systemd,
//! `MAINPID=` makes it the service's main process (it is in the service's cgroup already).
//!
//! # Under systemd
//!
//! The supervisor (never a worker: systemd's default `NotifyAccess=main` would drop their
//! messages) tells the service manager through [`sd_notify`](crate::systemd): `READY=1` when
//! the first worker is ready (for `Type=notify`), `STATUS=` with the live figures
//! (`2 of 2 workers ready, 1234 requests`), `RELOADING=1` on HUP and `READY=1` when the
//! reload ends or rolls back (for `Type=notify-reload`), `STOPPING=1` when the drain starts,
//! `MAINPID=` after an upgrade, and `WATCHDOG=1` every half `WatchdogSec=` while at least one
//! worker is ready, from the supervisor's own loop, so a hung supervisor is restarted. All of
//! it is a no-op without `NOTIFY_SOCKET`. `examples/deploy/` has units to copy. Workers ignore HUP, TTIN, TTOU and USR2, so signalling the whole
//! process group acts once, through the supervisor; a worker's own TERM drains that worker
//! alone (the supervisor replaces it), and its INT or QUIT ends it at once.
//!
//! # Fork rules
//!
//! `fork` copies only the calling thread, so **the supervisor must be single-threaded** at
//! every fork, as it is when [`serve`](Prefork::serve) is called from `main` before any thread
//! starts: a lock another thread held at the fork would stay locked forever in the worker.
//! The supervisor itself never starts a thread, and the strategies start theirs lazily, in the
//! worker, on its first request. Build the server, then call `serve`, before starting threads
//! of your own (or start them in [`on_worker_start`](Prefork::on_worker_start), in each
//! worker).
//!
//! A worker inherits the supervisor's memory (the handler's state: a copy per worker, so
//! counters in it are per worker), the listening socket and the standard streams. It does not
//! keep the supervisor's signal handlers or the other workers' heartbeat pipes. It never
//! returns into your code after the fork: it leaves through `_exit` with a status the
//! supervisor reads (0 stopped, 1 serving failed, 3 set-up failed, 5 aborted). Only the
//! supervisor removes a Unix socket file, when `serve` returns.
//!
//! # Examples
//!
//! ```
//! use std::io::{Read, Write};
//! use socketserver::prefork::Prefork;
//! use socketserver::{HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer};
//!
//! /// Answers with the pid of the worker that served the request.
//! #[derive(Handler)]
//! struct Pid;
//!
//! impl StreamRequestHandler for Pid {
//!     fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
//!         write!(request.wfile, "{}", std::process::id())?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = TcpServer::<Pid>::builder()
//!     .read_timeout(Some(std::time::Duration::from_secs(5)))
//!     .bind("127.0.0.1:0")?;
//! let report = Prefork::new(server)
//!     .workers(2)
//!     .on_ready(|address| {
//!         // In the supervisor, once the first worker serves: ask it, then stop the server
//!         // as an operator would, with SIGTERM.
//!         let addr = address.as_inet().expect("a TCP address");
//!         let mut pid = String::new();
//!         std::net::TcpStream::connect(addr)
//!             .and_then(|mut client| client.read_to_string(&mut pid))
//!             .expect("a reply from a worker");
//!         assert_ne!(pid, std::process::id().to_string(), "served by a worker");
//!         nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
//!     })
//!     .serve()?;
//! assert!(report.stats.started >= 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Listener models
//!
//! **One shared listener** (the default): every worker accepts from the same socket, so a
//! worker that stops (recycled, reloaded, scaled down, crashed, or an old program's after an
//! upgrade) drops nothing that waits in the backlog.
//!
//! **A socket per worker slot** ([`reuse_port(true)`](Prefork::reuse_port), TCP and UDP, the
//! server bound with [`ServerBuilder::reuse_port`](crate::ServerBuilder::reuse_port)): slot 0
//! is the server's socket, slots 1.. are sockets the supervisor binds to the same address with
//! `SO_REUSEPORT`, and the kernel spreads new connections across them (even on average, worse
//! in the worst case). Each socket has its own accept queue, and closing one resets the
//! connections queued on it (LWN 601711, nginx ticket #1300). So the supervisor creates and
//! keeps each slot's socket, and a worker started for a slot (a `max_requests` or reload
//! replacement, a crash's respawn) inherits that same socket: recycling, reloads and crashes
//! lose no queued connection (a crashed slot's connections wait in its queue until the
//! respawn). What still loses them: **SIGTTOU**, which closes the highest slot's socket. The
//! supervisor closes its copy at once and the retiring worker lets go of its copy as soon as it
//! stops accepting (not when its last request ends), which keeps the window to a few
//! milliseconds; connections that land in it are reset, unless `net.ipv4.tcp_migrate_req=1`
//! (Linux 5.14), which moves them to another socket of the group. The log says so at each
//! TTOU. Stopping the whole server closes every slot, as the shared model closes its socket.

mod beat;
mod error;
mod figures;
mod notify;
mod scoreboard;
mod signals;
mod slots;
mod supervisor;
mod table;
mod upgrade;
mod worker;

use std::fmt;
#[cfg(feature = "http")]
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub use error::PreforkError;
pub use scoreboard::{
    ExitReason, PreforkReport, PreforkStats, Scoreboard, WorkerExit, WorkerInfo, WorkerState,
};
pub use upgrade::{METRICS_FD, READY_FD};

use crate::addr::Address;
use crate::error::BoxError;
use crate::handler::Handler;
#[cfg(feature = "http")]
use crate::metrics::responder::Responder;
use crate::server::Server;
use crate::strategy::Strategy;
use crate::transport::Transport;

/// The default [`Prefork::heartbeat_timeout`] and [`Prefork::graceful_timeout`] (gunicorn's
/// `timeout` and `graceful_timeout`): 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default [`Prefork::upgrade_name`]: `listener`.
pub const DEFAULT_UPGRADE_NAME: &str = "listener";

/// What [`Prefork::on_worker_start`] runs, in each worker.
pub(crate) type StartHook = Box<dyn FnMut(u64) -> Result<(), BoxError> + Send>;
/// What [`Prefork::on_reload`] runs, in the supervisor.
type ReloadHook = Box<dyn FnMut() -> Result<(), BoxError> + Send>;
/// What [`Prefork::on_ready`] runs, in the supervisor.
type ReadyHook = Box<dyn FnOnce(&Address) + Send>;
/// What [`Prefork::on_change`] runs, in the supervisor.
type ChangeHook = Box<dyn FnMut(&Scoreboard) + Send>;

/// The options of a [`Prefork`].
#[derive(Debug, Clone, Copy)]
struct Options {
    workers: usize,
    max_requests: Option<u64>,
    jitter: u64,
    heartbeat_timeout: Duration,
    graceful_timeout: Duration,
    reuse_port: bool,
}

/// A supervisor of worker processes that serve one bound server (see the [module](self) docs
/// for the model, the signals and the fork rules).
///
/// Set the options with its builder-style methods, then [`serve`](Self::serve).
#[doc(alias = "Arbiter")]
#[doc(alias = "gunicorn")]
#[must_use = "a Prefork does nothing until `serve` is called"]
pub struct Prefork<T: Transport, H: Handler, S: Strategy> {
    server: Server<T, H, S>,
    options: Options,
    on_start: Option<StartHook>,
    on_reload: Option<ReloadHook>,
    on_ready: Option<ReadyHook>,
    on_change: Option<ChangeHook>,
    upgrade_name: String,
    #[cfg(feature = "http")]
    metrics: Option<Responder>,
}

impl<T: Transport, H: Handler, S: Strategy> Prefork<T, H, S> {
    /// A supervisor for `server`, which is bound and not yet serving. Its workers inherit its
    /// socket.
    pub fn new(server: Server<T, H, S>) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Prefork {
            server,
            options: Options {
                workers: cpus,
                max_requests: None,
                jitter: 0,
                heartbeat_timeout: DEFAULT_TIMEOUT,
                graceful_timeout: DEFAULT_TIMEOUT,
                reuse_port: false,
            },
            on_start: None,
            on_reload: None,
            on_ready: None,
            on_change: None,
            upgrade_name: DEFAULT_UPGRADE_NAME.into(),
            #[cfg(feature = "http")]
            metrics: None,
        }
    }

    /// How many workers to keep (gunicorn: `workers`). Default: the number of CPUs. SIGTTIN
    /// and SIGTTOU move it while serving. 0 is refused by [`serve`](Self::serve).
    pub fn workers(mut self, n: usize) -> Self {
        self.options.workers = n;
        self
    }

    /// Replace a worker once it has finished this many requests (gunicorn: `max_requests`),
    /// to bound what a slow leak costs. Default: `None` (never). The replacement is ready
    /// before the old worker stops accepting. Counted from the worker's heartbeats, so a
    /// worker may serve a few requests more before it is retired.
    pub fn max_requests(mut self, max: Option<u64>) -> Self {
        self.options.max_requests = max;
        self
    }

    /// Adds a random 0 to `jitter` requests to each worker's `max_requests` (gunicorn:
    /// `max_requests_jitter`), so that workers started together are not all recycled at once.
    /// Default: 0.
    pub fn max_requests_jitter(mut self, jitter: u64) -> Self {
        self.options.jitter = jitter;
        self
    }

    /// How long a worker may go without a heartbeat before it is aborted and replaced; also
    /// how long a new worker may take to become ready. Default: [`DEFAULT_TIMEOUT`] (30 s).
    /// Keep it well above the server's `poll_interval` (the idle loop beats that often).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.options.heartbeat_timeout = timeout;
        self
    }

    /// How long a worker told to stop (SIGTERM) may take to finish its running requests
    /// before it is killed (gunicorn: `graceful_timeout`). Default: [`DEFAULT_TIMEOUT`] (30 s).
    pub fn graceful_timeout(mut self, timeout: Duration) -> Self {
        self.options.graceful_timeout = timeout;
        self
    }

    /// Runs `start` in each new worker, before it serves, with the worker's number (gunicorn:
    /// `post_fork`): open per-process resources here (connections, threads). An error (or a
    /// panic) is a boot error: the worker leaves, and the supervisor stops the whole server
    /// with [`PreforkError::WorkerBoot`].
    pub fn on_worker_start(
        mut self,
        start: impl FnMut(u64) -> Result<(), BoxError> + Send + 'static,
    ) -> Self {
        self.on_start = Some(Box::new(start));
        self
    }

    /// Runs `reload` in the supervisor on SIGHUP, before any worker is replaced (re-read the
    /// configuration here: the new workers are forked after it). An error (or a panic) cancels
    /// the reload and is logged; the workers keep serving.
    pub fn on_reload(
        mut self,
        reload: impl FnMut() -> Result<(), BoxError> + Send + 'static,
    ) -> Self {
        self.on_reload = Some(Box::new(reload));
        self
    }

    /// Runs `ready` in the supervisor once, when the first worker is ready to serve: announce
    /// the server here (`serving on ...`), not before `serve`.
    pub fn on_ready(mut self, ready: impl FnOnce(&Address) + Send + 'static) -> Self {
        self.on_ready = Some(Box::new(ready));
        self
    }

    /// Runs `change` in the supervisor whenever a worker starts, becomes ready, drains or
    /// exits, with the new [`Scoreboard`]. Keep it quick: the supervisor waits for it.
    pub fn on_change(mut self, change: impl FnMut(&Scoreboard) + Send + 'static) -> Self {
        self.on_change = Some(Box::new(change));
        self
    }

    /// A listening socket per worker slot with `SO_REUSEPORT`, instead of one shared by every
    /// worker (see [listener models](self#listener-models)). Default: off. The server must be
    /// TCP or UDP and bound with [`reuse_port(true)`](crate::ServerBuilder::reuse_port) (or
    /// adopted from a `.socket` unit with `ReusePort=yes`): [`serve`](Self::serve) returns
    /// [`PreforkError::InvalidOption`] otherwise.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.options.reuse_port = on;
        self
    }

    /// The name a binary upgrade (SIGUSR2) gives the listening socket it hands over
    /// (`LISTEN_FDNAMES`), for a program that takes it by name, as it would take systemd's
    /// (`FileDescriptorName=`). Default: [`DEFAULT_UPGRADE_NAME`]; programs that take the first
    /// socket (`take_tcp(None)`) need not set it.
    pub fn upgrade_name(mut self, name: impl Into<String>) -> Self {
        self.upgrade_name = name.into();
        self
    }

    /// Serves the whole server's metrics and health checks on `address`, from the
    /// supervisor (see [the process model](crate::metrics#the-process-model) in the metrics
    /// docs): `/metrics` adds up every worker's figures, `/readyz` is ready once a worker is and
    /// until the supervisor starts to stop. The socket is bound now (port 0 picks a free port:
    /// read it back with [`metrics_address`](Self::metrics_address)) and served from the
    /// supervisor's own loop, without a thread, once [`serve`](Self::serve) runs.
    ///
    /// # Errors
    ///
    /// [`PreforkError::Metrics`] when `address` cannot be bound.
    #[cfg(feature = "http")]
    pub fn metrics<A: ToSocketAddrs + fmt::Debug>(
        mut self,
        address: A,
    ) -> Result<Self, PreforkError> {
        let error = |source| PreforkError::Metrics {
            address: format!("{address:?}"),
            source,
        };
        let responder = match upgrade::inherited_metrics_listener(&address) {
            Some(listener) => Responder::adopt(listener),
            None => Responder::bind(&address),
        };
        self.metrics = Some(responder.map_err(error)?);
        Ok(self)
    }

    /// The address of the metrics listener of [`metrics`](Self::metrics), if one is set.
    #[cfg(feature = "http")]
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.address().ok())
    }

    /// The address the workers serve.
    pub fn server_address(&self) -> &Address {
        self.server.server_address()
    }

    /// Runs the supervisor until SIGTERM (graceful), SIGINT or SIGQUIT (at once), and returns
    /// once every worker is gone. The server is then closed (its Unix socket file removed).
    ///
    /// Call it from a single-threaded process (see the [fork rules](self#fork-rules)). The
    /// signal dispositions in place before are restored when it returns.
    ///
    /// # Errors
    ///
    /// - [`PreforkError::WorkerBoot`] when a worker's set-up failed (after stopping the others);
    /// - [`PreforkError::InvalidOption`] for `workers(0)`, `max_requests(Some(0))` or a zero
    ///   `heartbeat_timeout`;
    /// - [`PreforkError::Signal`] when the signal handlers cannot be installed;
    /// - [`PreforkError::Supervise`] when `poll(2)` fails (the workers are killed first).
    pub fn serve(self) -> Result<PreforkReport, PreforkError> {
        let invalid = |option, reason| Err(PreforkError::InvalidOption { option, reason });
        if self.options.workers == 0 {
            return invalid("workers", "must be at least 1");
        }
        if self.options.max_requests == Some(0) {
            return invalid("max_requests", "must be at least 1 (None: never recycle)");
        }
        if self.options.heartbeat_timeout.is_zero() {
            return invalid("heartbeat_timeout", "must be more than zero");
        }
        supervisor::run(self)
    }
}

impl<T: Transport, H: Handler, S: Strategy> fmt::Debug for Prefork<T, H, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefork")
            .field("server_address", self.server.server_address())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
