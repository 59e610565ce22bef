//! An echo server on any transport: the shortest complete socketserver program.
//!
//! Run it:
//!
//! ```text
//! cargo run --example echo -- tcp 127.0.0.1:9000
//! cargo run --example echo -- unix /tmp/echo.sock
//! ```
//!
//! and talk to it:
//!
//! ```text
//! python3 -c "import socket; s = socket.create_connection(('127.0.0.1', 9000)); s.sendall(b'hi'); print(s.recv(2))"
//! ```
//!
//! The three parts of every server are here: the handler (`Echo`, below), the transport (the
//! first argument) and the strategy (`--mode`). Stop it with Ctrl-C: it closes gracefully,
//! removes its socket file and exits 0. `RUST_LOG=debug` shows every connection.
//!
//! In production: `--mode prefork --workers 4` serves from four supervised worker processes
//! (each with `--worker-mode`, threads by default; `--max-requests N` recycles them; SIGHUP
//! replaces them one by one, SIGTTIN/SIGTTOU add or remove one). The workers share one
//! listening socket; with `--reuse-port` (tcp and udp) each has a socket of its own
//! (`SO_REUSEPORT`) and the kernel spreads connections across them. Started by systemd with a
//! socket (`LISTEN_FDS`, see `examples/deploy/`), it serves that socket and ignores ADDRESS.
//!
//! Behind HAProxy or nginx: `--proxy-protocol v2` (HAProxy's `send-proxy-v2`; `v1` for nginx's
//! `proxy_protocol on;`, `any` for either) reads the PROXY header the balancer sends first, so
//! the client logged (at info, `RUST_LOG=info`) is the real client, not the balancer. Headers
//! are accepted from loopback only unless `--trusted-proxy CIDR` (repeatable) says otherwise.
//!
//! Over TLS: `--tls-cert chain.pem --tls-key key.pem` (PEM files; tcp and unix) serves every
//! connection over TLS, and the client talks to it with
//! `openssl s_client -connect 127.0.0.1:9000 -servername localhost -CAfile ca.pem`, or Python's
//! `ssl.create_default_context(cafile="ca.pem").wrap_socket(...)`. With `--mode prefork`,
//! SIGHUP reloads the certificate files; in one process, restart to change them. The TLS flags
//! come with the `tls` feature (on by default); built with `--no-default-features --features
//! http`, they do not exist.
//!
//! # Limits
//!
//! What one client can hold, and how to change it. Without them a client that connects and
//! says nothing would hold `--mode sync` (one client), `--mode pool` (one per worker) or
//! `--mode forking` (one per child) for ever.
//!
//! | bound | default | flag |
//! |---|---|---|
//! | a stream connection with nothing to read is closed after | 10 s | `--read-timeout SECS` |
//! | a client that stops reading its echo is dropped after | 10 s | `--write-timeout SECS` |
//! | connections (or datagrams) in hand at once; more wait in the listen backlog, or hear `busy` and are closed, or are closed | 256, wait | `--max-connections N`, `--overload wait\|reject\|close` |
//! | connections from one client address at once | no limit | `--per-client N` |
//! | metrics scrapers at once, and the time each may take (with `--metrics`) | 16, 5 s | none |
//! | pool workers / forked children / worker processes | CPUs + 4 (at most 32) / 40 / CPUs | `--workers N` |
//! | requests a worker process serves before it is replaced (prefork) | no limit | `--max-requests N` |
//! | bytes held per stream connection (`rfile`'s buffer: 1 KiB, doubling while reads fill it) | 8 KiB | none |
//! | bytes held per datagram (a larger one is dropped, not cut) | 64 KiB | none |
//! | a connection whose PROXY header has not all arrived is closed after (with `--proxy-protocol`) | 5 s | `--proxy-header-timeout SECS` |
//! | a TLS handshake (with `--tls-cert`) must end within, in all | 10 s | none (`ServerBuilder::tls_handshake_timeout`) |
//!
//! The timeouts apply to stream transports (tcp, unix); datagrams are answered at once.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use socketserver::systemd::ListenFds;
use socketserver::transport::Transport;
use socketserver::{
    DatagramRequest, DatagramRequestHandler, HandleResult, Handler, Serial, Server, Strategy,
    StreamRequest, StreamRequestHandler, TcpServer, UdpServer, UnixDatagramServer,
    UnixStreamServer,
};

// The flags every example shares (--read-timeout, --write-timeout, --max-connections), their
// parsers, `serve` (which prints the `serving on` line) and the exit status.
#[path = "common/cli.rs"]
mod cli;
use cli::{
    exit_code, serve_prefork, Defaults, Operations, PreforkFlags, ProxyFlags, Reload, ServerLimits,
};

/// The handler: made fresh for every connection (or datagram). No fields, no shared state.
#[derive(Handler)]
struct Echo;

/// On stream transports: copy everything the client sends back to it, until it closes.
impl StreamRequestHandler for Echo {
    /// What `--overload reject` answers a client over `--max-connections` or `--per-client`.
    const BUSY_REPLY: &'static [u8] = b"busy\n";

    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        // Behind a proxy (--proxy-protocol), the client the proxy relays, and the proxy.
        match request.proxy() {
            Some(proxy) => log::info!(
                "client {} via proxy {}",
                request.client_address(),
                proxy.peer()
            ),
            None => log::info!("client {}", request.client_address()),
        }
        // Send back what `rfile` has read, straight from its buffer: `io::copy` would also
        // work, but puts an 8 KiB buffer of its own on this thread's stack.
        loop {
            let read = request.rfile.fill_buf()?;
            if read.is_empty() {
                return Ok(());
            }
            let n = read.len();
            request.wfile.write_all(read)?;
            request.rfile.consume(n);
        }
    }
}

/// On datagram transports: send each datagram back to its sender, even an empty one.
impl DatagramRequestHandler for Echo {
    fn handle(&mut self, request: &mut DatagramRequest<'_>) -> HandleResult {
        request.wfile.extend_from_slice(request.packet());
        request.send_empty_reply();
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TransportArg {
    Tcp,
    Udp,
    Unix,
    UnixDatagram,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    /// Handle each request on the serving thread, one at a time.
    Sync,
    /// A thread per request (finished threads are reused).
    Threading,
    /// A process per request.
    Forking,
    /// A fixed pool of worker threads.
    Pool,
    /// Supervised worker processes (`--workers` of them, default one per CPU), each serving
    /// the same socket with `--worker-mode`.
    Prefork,
}

/// An echo server on TCP, UDP, Unix stream or Unix datagram sockets.
#[derive(Parser, Debug)]
#[command(name = "echo")]
// The defaults of the limits every example shares (the table above).
#[command(mut_args(Defaults { read_timeout: "10", write_timeout: "10", max_connections: "256" }.flags()))]
#[command(mut_arg("max_connections", |arg| arg.help(
    "The most connections (or datagrams) in hand at once; more wait their turn"
)))]
struct Args {
    /// The transport.
    transport: TransportArg,
    /// HOST:PORT for tcp and udp (port 0 picks a free port); a socket path for unix and
    /// unix-datagram (`@name`: Linux's abstract namespace, no file). Ignored when systemd
    /// passes a socket (LISTEN_FDS).
    address: String,
    /// Where requests run [default: threading for tcp and unix, sync for udp and
    /// unix-datagram].
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Workers for the pool, the most children for forking, or the worker processes of
    /// prefork.
    #[arg(long)]
    workers: Option<usize>,
    // --worker-mode and --max-requests, for --mode prefork.
    #[command(flatten)]
    prefork: PreforkFlags,
    /// With --mode prefork (tcp and udp): a listening socket per worker with SO_REUSEPORT,
    /// the kernel spreading connections across them, instead of one socket they share.
    #[arg(long)]
    reuse_port: bool,
    // --metrics ADDRESS, --drain-delay SECS.
    #[command(flatten)]
    operations: Operations,
    // --read-timeout, --write-timeout (stream transports only) and --max-connections.
    #[command(flatten)]
    limits: ServerLimits,
    // --proxy-protocol, --trusted-proxy and --proxy-header-timeout (stream transports only).
    #[command(flatten)]
    proxy: ProxyFlags,
    // --tls-cert and --tls-key (tcp and unix; with the `tls` feature, a default one).
    #[cfg(feature = "tls")]
    #[command(flatten)]
    tls: cli::TlsFlags,
}

fn main() -> ExitCode {
    env_logger::init();
    exit_code("echo", run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let strategy = strategy(args)?;
    let addr = args.address.as_str();
    // The limits of the table above, from the flags: what any one client can hold.
    let limits = &args.limits;
    let ops = &args.operations;
    // Behind a load balancer: the PROXY protocol's flags (a datagram transport refuses them).
    let proxy = &args.proxy;
    // Started by systemd with a socket (LISTEN_FDS): serve it instead of binding ADDRESS.
    let mut inherited = ListenFds::from_env()?;
    match args.transport {
        TransportArg::Tcp => {
            let builder = ops
                .apply(proxy.apply(limits.apply(TcpServer::<Echo>::builder().strategy(strategy))));
            let builder = builder.nodelay(true).reuse_port(args.reuse_port);
            // --tls-cert and --tls-key: TLS on every connection; under --mode prefork, SIGHUP
            // reloads the files (`reload`).
            #[cfg(feature = "tls")]
            let (builder, reload) = args.tls.apply(builder, &[])?;
            #[cfg(not(feature = "tls"))]
            let reload = Reload::default();
            let server = match inherited.take_tcp(None)? {
                Some(socket) => builder.from_listener(socket)?,
                None => builder.bind(addr)?,
            };
            run_server(args, server, &reload)
        }
        TransportArg::Udp => {
            let builder = ops
                .apply(proxy.apply(limits.apply(UdpServer::<Echo>::builder().strategy(strategy))))
                .reuse_port(args.reuse_port);
            let server = match inherited.take_udp(None)? {
                Some(socket) => builder.from_socket(socket)?,
                None => builder.bind(addr)?,
            };
            run_server(args, server, &Reload::default())
        }
        TransportArg::Unix => {
            let builder = ops.apply(
                proxy.apply(limits.apply(UnixStreamServer::<Echo>::builder().strategy(strategy))),
            );
            #[cfg(feature = "tls")]
            let (builder, reload) = args.tls.apply(builder, &[])?;
            #[cfg(not(feature = "tls"))]
            let reload = Reload::default();
            let server = match inherited.take_unix_stream(None)? {
                Some(socket) => builder.from_listener(socket)?,
                None => builder.bind(addr)?,
            };
            run_server(args, server, &reload)
        }
        TransportArg::UnixDatagram => {
            let builder = ops.apply(
                proxy.apply(limits.apply(UnixDatagramServer::<Echo>::builder().strategy(strategy))),
            );
            let server = match inherited.take_unix_datagram(None)? {
                Some(socket) => builder.from_socket(socket)?,
                None => builder.bind(addr)?,
            };
            run_server(args, server, &Reload::default())
        }
    }
}

/// Serves in this process, or from worker processes with `--mode prefork` (where SIGHUP runs
/// `reload` before it replaces them).
fn run_server<T: Transport>(
    args: &Args,
    server: Server<T, Echo, Box<dyn Strategy>>,
    reload: &Reload,
) -> Result<(), Box<dyn std::error::Error>> {
    match args.mode {
        Some(Mode::Prefork) => {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            serve_prefork(
                server,
                args.workers.unwrap_or(cpus),
                &args.prefork,
                args.reuse_port,
                &args.operations,
                reload,
            )
        }
        _ => args.operations.serve(server),
    }
}

/// The strategy `--mode` asks for, chosen at run time, so boxed.
///
/// Without `--mode`, stream transports (tcp, unix) get a thread per connection, so one idle
/// client cannot hold up the others; datagram transports (udp, unix-datagram) are served on the
/// serving thread, as each datagram is answered at once. `--workers N` sizes the pool, or caps
/// the children of `--mode forking`.
fn strategy(args: &Args) -> Result<Box<dyn Strategy>, String> {
    let stream = matches!(args.transport, TransportArg::Tcp | TransportArg::Unix);
    let mode = args
        .mode
        .unwrap_or(if stream { Mode::Threading } else { Mode::Sync });
    args.prefork.check(matches!(mode, Mode::Prefork))?;
    if args.reuse_port && !matches!(mode, Mode::Prefork) {
        return Err("--reuse-port applies to --mode prefork".into());
    }
    if args.reuse_port && !matches!(args.transport, TransportArg::Tcp | TransportArg::Udp) {
        return Err(
            "--reuse-port applies to tcp and udp (SO_REUSEPORT is for internet sockets)".into(),
        );
    }
    let workers = match args.workers {
        Some(0) => return Err("--workers must be at least 1".into()),
        Some(_) if matches!(mode, Mode::Sync | Mode::Threading) => {
            return Err("--workers applies to --mode pool, forking and prefork".into())
        }
        workers => workers,
    };
    Ok(match mode {
        Mode::Sync => Box::new(Serial),
        Mode::Threading => Box::new(socketserver::Threading::new()),
        Mode::Forking => {
            let forking = socketserver::Forking::new();
            Box::new(match workers {
                Some(n) => forking.max_children(n),
                None => forking,
            })
        }
        Mode::Pool => {
            let pool = socketserver::Pool::new();
            Box::new(match workers {
                Some(n) => pool.workers(n),
                None => pool,
            })
        }
        // What runs inside each worker process; `--workers` counts the processes.
        Mode::Prefork => match args.prefork.worker_mode {
            Some(worker_mode) => worker_mode.strategy(),
            None if stream => Box::new(socketserver::Threading::new()),
            None => Box::new(Serial),
        },
    })
}
