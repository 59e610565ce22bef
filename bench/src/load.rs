//! The load generator: client threads doing request/response against one server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;

use crate::BoxError;

/// How clients talk to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Persistent TCP connections doing request/response.
    Tcp,
    /// A new TCP connection per request, as Python socketserver clients do.
    TcpConnect,
    /// UDP datagrams.
    Udp,
    /// Persistent Unix stream connections.
    Unix,
    /// A new Unix stream connection per request.
    UnixConnect,
    /// Unix datagrams (each client binds a path).
    UnixDatagram,
    /// No server: a client thread and an echo thread in this process over one loopback TCP
    /// connection. The floor for persistent TCP at one connection.
    Floor,
}

/// One load.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// How clients talk to the server.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// The server: HOST:PORT, or a socket path. Ignored for `floor`.
    #[arg(long, default_value = "")]
    pub target: String,
    /// Concurrent clients (1 to 1000).
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub connections: u16,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// How long to load, in seconds (at most 60).
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
}

/// What one load measured (the echo load here, and the HTTP harness's wrk runs and
/// connection-per-request client).
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Round trips completed within the window.
    pub requests: u64,
    /// Round trips that failed (connection refused, reset, timed out).
    pub errors: u64,
    /// The window: each client loads for this long from the common start.
    pub seconds: f64,
    /// Latency quantiles of every completed round trip, stragglers included, in µs.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl Report {
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> String {
        format!(
            "{{\"rps\":{:.1},\"requests\":{},\"errors\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1}}}",
            self.rps(),
            self.requests,
            self.errors,
            self.p50_us,
            self.p99_us,
            self.p999_us
        )
    }
}

pub fn main(args: &LoadArgs) -> Result<(), BoxError> {
    println!("{}", run(args)?.to_json());
    Ok(())
}

/// One client's results.
struct ClientResult {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
}

/// Runs the load; all clients start together and stop at the deadline.
pub fn run(args: &LoadArgs) -> Result<Report, BoxError> {
    let duration = Duration::from_secs_f64(args.duration.clamp(0.1, 60.0));
    let clients = usize::from(args.connections);
    let floor_server = if args.mode == Mode::Floor {
        Some(floor_echo()?)
    } else {
        None
    };
    let target = match &floor_server {
        Some(addr) => addr.to_string(),
        None => args.target.clone(),
    };
    let start = Arc::new(Barrier::new(clients + 1));
    let mut threads = Vec::with_capacity(clients);
    for id in 0..clients {
        let (start, target, args) = (Arc::clone(&start), target.clone(), args.clone());
        let thread = thread::Builder::new()
            .name(format!("load-{id}"))
            .stack_size(128 * 1024)
            .spawn(move || client(&args, &target, id, &start, duration))?;
        threads.push(thread);
    }
    start.wait();
    let began = Instant::now();
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut requests, mut errors) = (0, 0);
    for thread in threads {
        let result = thread.join().map_err(|_| "a load thread panicked")??;
        total.add(&result.histogram)?;
        requests += result.requests;
        errors += result.errors;
    }
    // Every client measures from the start to its own deadline, `duration` later.
    let seconds = duration.as_secs_f64();
    let straggled = began.elapsed().saturating_sub(duration);
    if straggled > Duration::from_millis(100) {
        eprintln!(
            "   the last round trip ended {:.0} ms after the deadline (not counted in req/s)",
            straggled.as_secs_f64() * 1000.0
        );
    }
    let us = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        requests,
        errors,
        seconds,
        p50_us: us(0.5),
        p99_us: us(0.99),
        p999_us: us(0.999),
    })
}

/// An in-process echo thread on loopback, for the floor measurement.
fn floor_echo() -> Result<std::net::SocketAddr, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || echo_stream(conn));
        }
    });
    Ok(addr)
}

fn echo_stream(conn: TcpStream) {
    let _ = conn.set_nodelay(true);
    // The std peer's own loop: the floor is that peer without a server around it.
    crate::peers::echo(conn);
}

fn client(
    args: &LoadArgs,
    target: &str,
    id: usize,
    start: &Barrier,
    duration: Duration,
) -> Result<ClientResult, BoxError> {
    let mut result = ClientResult {
        histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        requests: 0,
        errors: 0,
    };
    let message: Vec<u8> = (0..args.size).map(|i| (i % 251) as u8).collect();
    let mut reply = vec![0; args.size.max(1)];
    let timeout = Some(Duration::from_secs(5));
    let mut transport = match args.mode {
        Mode::Tcp | Mode::Floor => Some(Conn::Tcp(connect_tcp(target, timeout)?)),
        Mode::Unix => Some(Conn::Unix(connect_unix(target, timeout)?)),
        Mode::Udp => {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.connect(target)?;
            socket.set_read_timeout(Some(Duration::from_millis(500)))?;
            Some(Conn::Udp(socket))
        }
        Mode::UnixDatagram => {
            let path = client_path(id);
            let _ = std::fs::remove_file(&path);
            let socket = UnixDatagram::bind(&path)?;
            socket.connect(target)?;
            socket.set_read_timeout(Some(Duration::from_millis(500)))?;
            Some(Conn::UnixDatagram(socket, path))
        }
        Mode::TcpConnect | Mode::UnixConnect => None,
    };
    start.wait();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let began = Instant::now();
        let ok = match (&mut transport, args.mode) {
            (Some(conn), _) => conn.round_trip(&message, &mut reply),
            (None, Mode::TcpConnect) => connect_tcp_from(target, id, timeout)
                .and_then(|mut c| once(&mut c, &message, &mut reply)),
            (None, _) => {
                connect_unix(target, timeout).and_then(|mut c| once(&mut c, &message, &mut reply))
            }
        };
        match ok {
            Ok(()) => {
                let nanos = u64::try_from(began.elapsed().as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1);
                result.histogram.saturating_record(nanos);
                // Throughput counts what the window held: one round trip that straggles past
                // the deadline (a retransmitted segment takes 200 ms to 1 s) must not stretch
                // the window for all. Its latency still counts above.
                if Instant::now() <= deadline {
                    result.requests += 1;
                }
            }
            Err(_) => {
                result.errors += 1;
                if matches!(args.mode, Mode::Tcp | Mode::Unix | Mode::Floor) {
                    // A broken persistent connection: reconnect and go on.
                    transport = match args.mode {
                        Mode::Unix => connect_unix(target, timeout).ok().map(Conn::Unix),
                        _ => connect_tcp(target, timeout).ok().map(Conn::Tcp),
                    };
                    if transport.is_none() {
                        break;
                    }
                }
            }
        }
    }
    Ok(result)
}

fn client_path(id: usize) -> PathBuf {
    std::env::temp_dir().join(format!("ssbench-{}-{id}.sock", std::process::id()))
}

fn connect_tcp(target: &str, timeout: Option<Duration>) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(target)?;
    finish_tcp(stream, timeout)
}

/// Connects from a loopback source address of this client's own (127.0.0.2 and up).
///
/// A new connection per request leaves each closed connection in TIME_WAIT on the client side
/// for a minute; from one source address the ~28k ephemeral ports run out within a few
/// seconds at these rates, and connects then stall for seconds whichever server is measured.
/// Each client thread has its own source address, so each has its own port range. IPv4
/// loopback targets only; anything else connects normally.
fn connect_tcp_from(
    target: &str,
    id: usize,
    timeout: Option<Duration>,
) -> std::io::Result<TcpStream> {
    let addr: std::net::SocketAddr = match target.parse() {
        Ok(addr @ std::net::SocketAddr::V4(v4)) if v4.ip().is_loopback() => addr,
        _ => return connect_tcp(target, timeout),
    };
    let octets = [127, 0, (id / 250) as u8, (id % 250 + 2) as u8];
    let source = std::net::SocketAddr::from((octets, 0));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&source.into())?;
    socket.connect(&addr.into())?;
    finish_tcp(socket.into(), timeout)
}

fn finish_tcp(stream: TcpStream, timeout: Option<Duration>) -> std::io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(timeout)?;
    Ok(stream)
}

fn connect_unix(target: &str, timeout: Option<Duration>) -> std::io::Result<UnixStream> {
    let stream = UnixStream::connect(target)?;
    stream.set_read_timeout(timeout)?;
    Ok(stream)
}

/// One request on a fresh connection: send, half-close, read the echo.
fn once<S: Read + Write + HalfClose>(
    conn: &mut S,
    message: &[u8],
    reply: &mut [u8],
) -> std::io::Result<()> {
    conn.write_all(message)?;
    conn.half_close()?;
    conn.read_exact(&mut reply[..message.len()])
}

trait HalfClose {
    fn half_close(&self) -> std::io::Result<()>;
}

impl HalfClose for TcpStream {
    fn half_close(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl HalfClose for UnixStream {
    fn half_close(&self) -> std::io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    Udp(UdpSocket),
    UnixDatagram(UnixDatagram, PathBuf),
}

impl Conn {
    fn round_trip(&mut self, message: &[u8], reply: &mut [u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.write_all(message)?;
                s.read_exact(&mut reply[..message.len()])
            }
            Conn::Unix(s) => {
                s.write_all(message)?;
                s.read_exact(&mut reply[..message.len()])
            }
            Conn::Udp(s) => {
                s.send(message)?;
                s.recv(reply).map(drop)
            }
            Conn::UnixDatagram(s, _) => {
                s.send(message)?;
                s.recv(reply).map(drop)
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Conn::UnixDatagram(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}
