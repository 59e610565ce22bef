//! What every example's command line shares: the three flags that bound what clients can hold
//! (`--read-timeout`, `--write-timeout`, `--max-connections`), the parsers for their values,
//! the process model's flags (`--worker-mode`, `--max-requests`, with `--mode prefork`),
//! serving with the `serving on` line (in one process or from worker processes), the PROXY
//! protocol's flags (`--proxy-protocol`, `--trusted-proxy`, `--proxy-header-timeout`, for
//! serving behind HAProxy or nginx), TLS (`--tls-cert`, `--tls-key`, with the `tls` feature
//! only: built with `--no-default-features --features http`, the flags do not exist), and the
//! error report at exit.
//!
//! Each example includes this file with `#[path = "common/cli.rs"] mod cli;` (as it includes
//! its protocol module), so a program copied from an example needs this file too. Each example
//! keeps its own defaults, set with [`Defaults`], and states them in its "Limits" table.

use std::fmt::Display;
use std::io::{self, Write};
use std::net::SocketAddr;
#[cfg(feature = "tls")]
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ValueEnum};
use socketserver::prefork::Prefork;
use socketserver::proxy::{IpNet, ProxyProtocol};
use socketserver::systemd::ListenFds;
#[cfg(feature = "tls")]
use socketserver::tls::TlsConfig;
use socketserver::transport::{Tcp, Transport};
use socketserver::{
    Handler, Overload, Pool, Serial, Server, ServerBuilder, Strategy, StreamRequestHandler,
    Threading,
};

/// The limits every example sets, as flags: put it in the example's `Args` with
/// `#[command(flatten)]`, give it the example's [`Defaults`], and [`apply`](Self::apply) it
/// to the server's builder.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerLimits {
    /// Close a connection that sends nothing for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub read_timeout: Duration,
    /// Drop a client that does not take its answer for this many seconds.
    #[arg(long, value_name = "SECS", value_parser = seconds)]
    pub write_timeout: Duration,
    /// The most connections served at once; what happens to more is --overload's choice.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub max_connections: usize,
    /// At --max-connections: wait in the listen backlog, reject (answer "busy" in the
    /// protocol's words and close), or close at once.
    #[arg(long, value_enum, default_value = "wait")]
    pub overload: OverloadFlag,
    /// The most connections one client address may have open at once; more are turned away
    /// (with --overload's answer).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub per_client: Option<usize>,
}

/// `--overload`: [`socketserver::Overload`] as a flag.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OverloadFlag {
    /// Wait in the kernel's listen backlog.
    Wait,
    /// Answer "busy" in the protocol's words, then close.
    Reject,
    /// Close at once.
    Close,
}

impl ServerLimits {
    /// Sets the limits on `builder`: its `read_timeout`, `write_timeout`, `max_connections`,
    /// `overload` and `max_connections_per_client`.
    // guide-sockets (on std::net alone) and guide-upper (which spells the three calls out)
    // apply them by hand.
    #[allow(dead_code)]
    pub fn apply<T: Transport, H: Handler, S: Strategy>(
        &self,
        builder: ServerBuilder<T, H, S>,
    ) -> ServerBuilder<T, H, S> {
        builder
            .read_timeout(Some(self.read_timeout))
            .write_timeout(Some(self.write_timeout))
            .max_connections(Some(self.max_connections))
            .overload(match self.overload {
                OverloadFlag::Wait => Overload::Wait,
                OverloadFlag::Reject => Overload::Reject,
                OverloadFlag::Close => Overload::Close,
            })
            .max_connections_per_client(self.per_client)
    }
}

/// Serving behind a load balancer that sends the PROXY protocol (HAProxy's `send-proxy-v2`,
/// nginx's `proxy_protocol on;`): put it in the example's `Args` with `#[command(flatten)]` and
/// [`apply`](Self::apply) it to the builder. Then the handler sees the client's address, not the
/// balancer's.
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyFlags {
    /// Require a PROXY protocol header on every connection, from a --trusted-proxy: v1
    /// (nginx's `proxy_protocol on;`, HAProxy's `send-proxy`), v2 (HAProxy's `send-proxy-v2`)
    /// or any; connections without one are closed.
    #[arg(long, value_enum, default_value = "off")]
    pub proxy_protocol: ProxyFlag,
    /// An address range (CIDR, such as 10.0.0.0/8) whose connections may send the PROXY
    /// header; repeat it for more [default: 127.0.0.0/8 and ::1]. Unix-socket peers are
    /// always trusted.
    #[arg(long, value_name = "CIDR")]
    pub trusted_proxy: Vec<IpNet>,
    /// Close a connection whose PROXY header has not all arrived after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "5")]
    pub proxy_header_timeout: Duration,
}

/// `--proxy-protocol`: [`socketserver::proxy::ProxyProtocol`] as a flag.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProxyFlag {
    /// No header: the balancer's address is the client's.
    Off,
    /// The text header.
    V1,
    /// The binary header.
    V2,
    /// Either version.
    Any,
}

impl ProxyFlags {
    /// Sets `proxy_protocol`, `trusted_proxies` (when any --trusted-proxy is given) and
    /// `proxy_header_timeout` on `builder`.
    #[allow(dead_code)] // only some examples serve behind a proxy
    pub fn apply<T: Transport, H: Handler, S: Strategy>(
        &self,
        builder: ServerBuilder<T, H, S>,
    ) -> ServerBuilder<T, H, S> {
        let builder = builder
            .proxy_protocol(match self.proxy_protocol {
                ProxyFlag::Off => ProxyProtocol::Off,
                ProxyFlag::V1 => ProxyProtocol::V1,
                ProxyFlag::V2 => ProxyProtocol::V2,
                ProxyFlag::Any => ProxyProtocol::Any,
            })
            .proxy_header_timeout(self.proxy_header_timeout);
        if self.trusted_proxy.is_empty() {
            builder
        } else {
            builder.trusted_proxies(self.trusted_proxy.iter().copied())
        }
    }
}

/// TLS: `--tls-cert PATH --tls-key PATH` (both or neither) serve every connection over TLS with
/// this certificate chain (PEM, the server's certificate first) and private key (PEM). Put it
/// in the example's `Args` with `#[cfg(feature = "tls")] #[command(flatten)]` and
/// [`apply`](Self::apply) it.
///
/// To change the certificate without a restart: with `--mode prefork`, send SIGHUP (the
/// supervisor reloads the files, and the replacement workers serve the new certificate; if
/// the files do not load, the error is logged and the workers keep the old one). In one
/// process, restart it (or call `TlsConfig::reload` from your own code: see
/// `socketserver::tls`).
#[cfg(feature = "tls")]
#[derive(clap::Args, Debug, Clone)]
pub struct TlsFlags {
    /// Serve TLS with this certificate chain (PEM: the server's certificate, then its
    /// intermediates); needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[cfg(feature = "tls")]
impl TlsFlags {
    /// Loads the certificate and key (an error names the file and what is wrong) and sets
    /// them on `builder`, answering ALPN with `alpn` (such as `["http/1.1"]`; none if empty).
    /// Returns the builder and what SIGHUP reloads under `--mode prefork` (pass it to
    /// [`serve_prefork`] or [`ProcessFlags::serve`]). Without the flags, `builder` is as it
    /// was, and the [`Reload`] reloads nothing.
    #[allow(dead_code)] // only some examples serve TLS
    pub fn apply<T: Transport, H: Handler, S: Strategy>(
        &self,
        builder: ServerBuilder<T, H, S>,
        alpn: &[&str],
    ) -> Result<WithReload<T, H, S>, Box<dyn std::error::Error>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok((builder, Reload::default()));
        };
        let config = TlsConfig::builder(cert, key).alpn(alpn).build()?;
        // A clone shares the certificate in use, so a reload through it reaches the server.
        let reload = Reload {
            tls: Some(config.clone()),
        };
        Ok((builder.tls(config), reload))
    }
}

/// A builder, and what SIGHUP reloads for it: what [`TlsFlags::apply`] returns.
#[cfg(feature = "tls")]
pub type WithReload<T, H, S> = (ServerBuilder<T, H, S>, Reload);

/// What SIGHUP reloads under `--mode prefork` before the workers are replaced: the files of
/// `--tls-cert` and `--tls-key`, when [`TlsFlags::apply`] loaded them. `Reload::default()`
/// reloads nothing (no TLS, or a build without the `tls` feature).
#[derive(Clone, Debug, Default)]
pub struct Reload {
    /// The configuration the servers use, shared with them.
    #[cfg(feature = "tls")]
    tls: Option<TlsConfig>,
}

/// One example's defaults for the [`ServerLimits`] flags, written as on the command line
/// (seconds may have fractions). Set them on the example's `Args`:
///
/// ```text
/// #[command(mut_args(Defaults { read_timeout: "10", write_timeout: "10", max_connections: "64" }.flags()))]
/// ```
///
/// Without it the three flags have no default: they are required, and the example says so.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// `--read-timeout`, in seconds.
    pub read_timeout: &'static str,
    /// `--write-timeout`, in seconds.
    pub write_timeout: &'static str,
    /// `--max-connections`.
    pub max_connections: &'static str,
}

impl Defaults {
    /// What `mut_args` applies to each flag of the command: gives the three limits their
    /// defaults (shown by `--help`), and leaves every other flag as it is.
    pub fn flags(self) -> impl FnMut(Arg) -> Arg {
        move |arg| {
            let default = match arg.get_id().as_str() {
                "read_timeout" => self.read_timeout,
                "write_timeout" => self.write_timeout,
                "max_connections" => self.max_connections,
                _ => return arg,
            };
            arg.default_value(default).required(false)
        }
    }
}

/// The flags of `--mode prefork` that every example offering it shares; the example's own
/// `--mode` and `--workers` (how many worker processes) go with them.
#[derive(clap::Args, Debug, Clone)]
pub struct PreforkFlags {
    /// With --mode prefork: where requests run inside each worker process [default:
    /// threading for stream transports, sync for datagram ones].
    #[arg(long, value_enum, value_name = "MODE")]
    pub worker_mode: Option<WorkerMode>,
    /// With --mode prefork: replace a worker once it has served this many requests (each
    /// worker up to 10% more, so that they are not all replaced at once).
    #[arg(long, value_name = "N", value_parser = at_least_one_u64)]
    pub max_requests: Option<u64>,
}

impl PreforkFlags {
    /// An error if a prefork flag is given without `--mode prefork`.
    #[allow(dead_code)] // guide-sockets has no process model
    pub fn check(&self, prefork: bool) -> Result<(), String> {
        if !prefork && (self.worker_mode.is_some() || self.max_requests.is_some()) {
            return Err("--worker-mode and --max-requests apply to --mode prefork".into());
        }
        Ok(())
    }
}

/// What an operator adds around the server: `--metrics ADDRESS` (Prometheus metrics and
/// health checks on their own listener) and `--drain-delay SECS` (after SIGTERM, serve on,
/// not ready, so a load balancer moves traffic first).
#[derive(clap::Args, Debug, Clone)]
pub struct Operations {
    /// Serve /metrics (Prometheus), /healthz and /readyz on this HOST:PORT (port 0 picks a
    /// free port); printed as `metrics on ADDRESS`, the second line, after `serving on`.
    #[arg(long, value_name = "ADDRESS")]
    pub metrics: Option<String>,
    /// After the first SIGTERM or SIGINT, go on serving this many seconds with /readyz failing
    /// (and HTTP keep-alive off), then stop: load balancers move traffic away first.
    #[arg(long, value_name = "SECS", default_value = "0", value_parser = seconds_or_zero)]
    pub drain_delay: Duration,
}

#[allow(dead_code)] // the guide's examples keep to the basics
impl Operations {
    /// Sets `drain_delay` on `builder`.
    pub fn apply<T: Transport, H: Handler, S: Strategy>(
        &self,
        builder: ServerBuilder<T, H, S>,
    ) -> ServerBuilder<T, H, S> {
        builder.drain_delay(self.drain_delay)
    }

    /// Serves `server` in this process until a signal (as [`serve`] does), with the metrics
    /// listener when `--metrics` is given: `serving on ADDRESS`, then `metrics on ADDRESS`.
    pub fn serve<T: Transport, H: Handler, S: Strategy>(
        &self,
        mut server: Server<T, H, S>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let metrics = match &self.metrics {
            Some(address) => Some(server.serve_metrics(address.as_str())?),
            None => None,
        };
        let metrics_address = metrics.as_ref().map(|m| m.address());
        server.on_ready(move |address| {
            announce(address);
            Self::announce_metrics(metrics_address);
        });
        server.serve_until_signal()?;
        drop(metrics);
        Ok(())
    }

    /// Prints `metrics on ADDRESS`, the line after `serving on`, when there is a listener.
    fn announce_metrics(metrics: Option<SocketAddr>) {
        if let Some(metrics) = metrics {
            let mut stdout = io::stdout().lock();
            let _ = writeln!(stdout, "metrics on {metrics}").and_then(|()| stdout.flush());
        }
    }
}

/// `--mode`, `--workers` and the prefork flags of the HTTP examples, which serve TCP: threads
/// in this process (`--mode threading`, the default), or supervised worker processes.
#[derive(clap::Args, Debug, Clone)]
pub struct ProcessFlags {
    /// Where requests run: a thread per connection in this process, or supervised worker
    /// processes that serve the same socket (each keeps its own in-memory state).
    #[arg(long, value_enum, default_value = "threading")]
    pub mode: ProcessMode,
    /// With --mode prefork: how many worker processes [default: one per CPU].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub workers: Option<usize>,
    // --worker-mode and --max-requests.
    #[command(flatten)]
    pub prefork: PreforkFlags,
}

/// `--mode` of the HTTP examples.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProcessMode {
    /// A thread per connection, in this process.
    Threading,
    /// Supervised worker processes.
    Prefork,
}

#[allow(dead_code)] // echo and the guide's examples have flags of their own
impl ProcessFlags {
    /// The strategy the server (or each worker process) runs.
    pub fn strategy(&self) -> Result<Box<dyn Strategy>, String> {
        let prefork = matches!(self.mode, ProcessMode::Prefork);
        self.prefork.check(prefork)?;
        if self.workers.is_some() && !prefork {
            return Err("--workers applies to --mode prefork".into());
        }
        Ok(self.prefork.worker_mode.map_or_else(
            || Box::new(Threading::new()) as Box<dyn Strategy>,
            WorkerMode::strategy,
        ))
    }

    /// Serves in this process, or from the worker processes of `--mode prefork`.
    /// `reload` is what SIGHUP reloads in the supervisor (`--tls-cert`'s files).
    pub fn serve<T: Transport, H: Handler, S: Strategy>(
        &self,
        server: Server<T, H, S>,
        operations: &Operations,
        reload: &Reload,
    ) -> Result<(), Box<dyn std::error::Error>> {
        match self.mode {
            ProcessMode::Threading => operations.serve(server),
            ProcessMode::Prefork => {
                let cpus = std::thread::available_parallelism().map_or(1, usize::from);
                let workers = self.workers.unwrap_or(cpus);
                serve_prefork(server, workers, &self.prefork, false, operations, reload)
            }
        }
    }
}

/// Binds `address`, or serves the TCP socket systemd passed (`LISTEN_FDS`), if any.
#[allow(dead_code)] // the guide's examples bind by hand
pub fn bind_tcp<H: StreamRequestHandler, S: Strategy>(
    builder: ServerBuilder<Tcp, H, S>,
    address: &str,
) -> Result<Server<Tcp, H, S>, Box<dyn std::error::Error>> {
    Ok(match ListenFds::from_env()?.take_tcp(None)? {
        Some(socket) => builder.from_listener(socket)?,
        None => builder.bind(address)?,
    })
}

/// Where requests run inside each worker process of `--mode prefork`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WorkerMode {
    /// On the worker's serving thread, one at a time.
    Sync,
    /// A thread per connection (finished threads are reused).
    Threading,
    /// A fixed pool of threads (CPUs + 4, at most 32).
    Pool,
}

impl WorkerMode {
    /// The strategy each worker runs.
    #[allow(dead_code)] // guide-sockets has no process model
    pub fn strategy(self) -> Box<dyn Strategy> {
        match self {
            WorkerMode::Sync => Box::new(Serial),
            WorkerMode::Threading => Box::new(Threading::new()),
            WorkerMode::Pool => Box::new(Pool::new()),
        }
    }
}

/// Parses a count flag: a whole number, at least 1.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// Parses a large count flag: a whole number, at least 1.
pub fn at_least_one_u64(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{text:?}: {e}")),
    }
}

/// Parses a delay flag: seconds, fractions allowed, zero or more.
pub fn seconds_or_zero(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    seconds(text)
}

/// Parses a timeout flag: seconds, fractions allowed, more than zero.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than zero seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text:?}: {e}"))
}

/// Serves until Ctrl-C or SIGTERM (`serve_until_signal`), printing `serving on ADDRESS` once
/// the server really serves.
///
/// The line is printed from `on_ready`, after the signal handlers are installed, so a script or
/// a test that sends SIGTERM as soon as it reads the line gets a graceful stop, never the
/// default action (which would leave a Unix socket file behind).
#[allow(dead_code)] // guide-sockets, on std::net alone, has no `Server`
pub fn serve<T: Transport, H: Handler, S: Strategy>(
    mut server: Server<T, H, S>,
) -> Result<(), Box<dyn std::error::Error>> {
    server.on_ready(announce);
    server.serve_until_signal()?;
    Ok(())
}

/// Serves from `workers` supervised worker processes (the process model) until SIGTERM
/// (graceful) or SIGINT (at once), printing `serving on ADDRESS` once, from the supervisor,
/// when the first worker is ready, then `metrics on ADDRESS` with `--metrics` (the
/// supervisor serves every worker's figures added up). The other signals (HUP, TTIN, TTOU) work as the
/// `socketserver::prefork` docs say.
///
/// With `reuse_port`, each worker slot gets a listening socket of its own and the kernel
/// spreads connections across them (`Prefork::reuse_port`); `server` must then be TCP or UDP,
/// bound with the builder's `reuse_port(true)`. On SIGHUP the supervisor runs `reload` (the
/// certificate files of `--tls-cert`) before it replaces the workers.
#[allow(dead_code)] // guide-sockets has no process model
pub fn serve_prefork<T: Transport, H: Handler, S: Strategy>(
    server: Server<T, H, S>,
    workers: usize,
    flags: &PreforkFlags,
    reuse_port: bool,
    operations: &Operations,
    reload: &Reload,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut prefork = Prefork::new(server)
        .workers(workers)
        .reuse_port(reuse_port)
        .max_requests(flags.max_requests)
        .max_requests_jitter(flags.max_requests.map_or(0, |n| n / 10));
    // --metrics: the supervisor serves the whole server's figures on a listener of its own,
    // from its own loop (no thread: it forks).
    if let Some(address) = operations.metrics.as_deref() {
        prefork = prefork.metrics(address)?;
    }
    let metrics = prefork.metrics_address();
    prefork = prefork.on_ready(move |address| {
        announce(address);
        Operations::announce_metrics(metrics);
    });
    // With --tls-cert: SIGHUP reloads the certificate files before the workers are replaced;
    // files that do not load stop the reload (logged), and the old certificate stays.
    #[cfg(feature = "tls")]
    if let Some(tls) = reload.tls.clone() {
        prefork = prefork.on_reload(move || Ok(tls.reload()?));
    }
    #[cfg(not(feature = "tls"))]
    let _ = reload; // nothing to reload without the `tls` feature
    let report = prefork.serve()?;
    log::info!("workers stopped: {report:?}");
    Ok(())
}

/// Prints `serving on ADDRESS` on stdout, at once: the line scripts and tests wait for.
pub fn announce(address: &impl Display) {
    let mut stdout = io::stdout().lock();
    // Nobody reading stdout (closed, or a full pipe gone) is no reason to stop serving.
    let _ = writeln!(stdout, "serving on {address}").and_then(|()| stdout.flush());
}

/// The end of `main`: exit 0 on `Ok`, or report the error as `PROGRAM: ERROR` on stderr and
/// exit 1.
pub fn exit_code(program: &str, result: Result<(), impl Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            ExitCode::FAILURE
        }
    }
}
