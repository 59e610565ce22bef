//! The TLS load generator (`tls load`): rustls clients on blocking sockets, a thread per
//! client, bounded in time; prints one JSON line.
//!
//! Every client offers TLS 1.3 only and one cipher suite, `TLS13_AES_128_GCM_SHA256`, with
//! rustls' default key exchange groups (X25519 first, so X25519 is what a server that takes
//! the client's key share negotiates); it trusts the run's CA only and has session resumption
//! off, so every handshake is a full one (the servers still send their session tickets: rustls'
//! default, the same for both; the client drops them). What was negotiated is counted and
//! reported, handshake by handshake.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, StreamOwned};

use crate::load::Report;
use crate::BoxError;

/// What each client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// A new connection per request: connect, full handshake, send the message, read the
    /// echo, `close_notify`, close.
    Handshake,
    /// One persistent connection per client (connected and handshaken before the clock
    /// starts), request/response on it.
    Echo,
}

/// Arguments of `tls load`.
#[derive(Args, Debug, Clone)]
pub struct TlsLoadArgs {
    /// What each client does.
    #[arg(long, value_enum)]
    pub mode: TlsMode,
    /// The server, HOST:PORT (IPv4 loopback: each client connects from its own 127.0.0.N).
    #[arg(long)]
    pub target: String,
    /// The CA certificate (PEM) the clients trust; the server's certificate is for
    /// `localhost`.
    #[arg(long, value_name = "PATH")]
    pub ca: PathBuf,
    /// Concurrent clients (1 to 1000), a thread each.
    #[arg(short = 'c', long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub connections: u16,
    /// Message size in bytes (1 to 65536).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub size: u32,
    /// How long to load, in seconds (at most 60).
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,
}

/// What one load measured.
#[derive(Debug, Clone, Default)]
pub struct TlsReport {
    /// Round trips (with `handshake`: connections) completed within the window, those that
    /// failed (refused, reset, timed out, TLS errors), the window, and the latency quantiles
    /// of every completed round trip (with `handshake`: connect to the echo read).
    pub load: Report,
    /// Clients that completed at least one round trip, of `clients`.
    pub answered: u64,
    pub clients: u64,
    /// Handshakes by kind: full, full after a HelloRetryRequest, resumed.
    pub full: u64,
    pub retried: u64,
    pub resumed: u64,
    /// What was negotiated, "version suite group" ("mixed" if it differed between handshakes).
    pub negotiated: String,
}

impl TlsReport {
    pub fn rps(&self) -> f64 {
        self.load.rps()
    }

    /// One JSON line (the strings hold no quotes or backslashes).
    pub fn to_json(&self) -> String {
        format!(
            "{{\"rps\":{:.1},\"requests\":{},\"errors\":{},\"seconds\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"answered\":{},\"clients\":{},\"full\":{},\"retried\":{},\"resumed\":{},\"negotiated\":\"{}\"}}",
            self.rps(),
            self.load.requests,
            self.load.errors,
            self.load.seconds,
            self.load.p50_us,
            self.load.p99_us,
            self.load.p999_us,
            self.answered,
            self.clients,
            self.full,
            self.retried,
            self.resumed,
            self.negotiated.replace(['"', '\\'], "")
        )
    }

    /// Reads what [`to_json`](Self::to_json) wrote.
    pub fn from_json(line: &str) -> Result<TlsReport, BoxError> {
        let field = |name: &str| -> Result<&str, BoxError> {
            let key = format!("\"{name}\":");
            let at = line
                .find(&key)
                .ok_or_else(|| format!("no {name} in {line:?}"))?;
            let rest = &line[at + key.len()..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Ok(rest[..end].trim_matches('"'))
        };
        let float = |name: &str| -> Result<f64, BoxError> { Ok(field(name)?.parse()?) };
        let int = |name: &str| -> Result<u64, BoxError> { Ok(field(name)?.parse()?) };
        Ok(TlsReport {
            load: Report {
                requests: int("requests")?,
                errors: int("errors")?,
                seconds: float("seconds")?,
                p50_us: float("p50_us")?,
                p99_us: float("p99_us")?,
                p999_us: float("p999_us")?,
            },
            answered: int("answered")?,
            clients: int("clients")?,
            full: int("full")?,
            retried: int("retried")?,
            resumed: int("resumed")?,
            negotiated: field("negotiated")?.to_owned(),
        })
    }
}

pub fn main(args: &TlsLoadArgs) -> Result<(), BoxError> {
    println!("{}", run(args)?.to_json());
    Ok(())
}

/// The clients' configuration: TLS 1.3, `TLS13_AES_128_GCM_SHA256` only, the run's CA, no
/// resumption (every handshake a full one).
fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, BoxError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots.add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)?;
    }
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        ..rustls::crypto::ring::default_provider()
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// One client's results.
struct ClientResult {
    histogram: Histogram<u64>,
    requests: u64,
    errors: u64,
    kinds: [u64; 3],
    negotiated: Option<String>,
    mixed: bool,
}

impl ClientResult {
    /// Counts a finished handshake and what it negotiated.
    fn handshaken(&mut self, tls: &ClientConnection) {
        match tls.handshake_kind() {
            Some(HandshakeKind::Full) => self.kinds[0] += 1,
            Some(HandshakeKind::FullWithHelloRetryRequest) => self.kinds[1] += 1,
            Some(HandshakeKind::Resumed) => self.kinds[2] += 1,
            None => {}
        }
        let version = match tls.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "unknown",
        };
        let suite = tls
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        let group = tls
            .negotiated_key_exchange_group()
            .map_or_else(|| "unknown".to_owned(), |g| format!("{:?}", g.name()));
        let now = format!("{version} {suite} {group}");
        match &self.negotiated {
            None => self.negotiated = Some(now),
            Some(before) if *before != now => self.mixed = true,
            Some(_) => {}
        }
    }
}

/// Runs the load; all clients start together and stop at the deadline.
pub fn run(args: &TlsLoadArgs) -> Result<TlsReport, BoxError> {
    let duration = Duration::from_secs_f64(args.duration.clamp(0.1, 60.0));
    let clients = usize::from(args.connections);
    let target: SocketAddr = args.target.parse()?;
    let config = client_config(&args.ca)?;
    let start = Arc::new(Barrier::new(clients + 1));
    let mut threads = Vec::with_capacity(clients);
    for id in 0..clients {
        let (start, config, args) = (Arc::clone(&start), Arc::clone(&config), args.clone());
        let thread = thread::Builder::new()
            .name(format!("tls-load-{id}"))
            .spawn(move || client(&args, target, &config, id, &start, duration))?;
        threads.push(thread);
    }
    start.wait();
    let began = Instant::now();
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut report = TlsReport {
        load: Report {
            seconds: duration.as_secs_f64(),
            ..Report::default()
        },
        clients: clients as u64,
        ..TlsReport::default()
    };
    let mut negotiated: Option<String> = None;
    for thread in threads {
        let result = thread.join().map_err(|_| "a load thread panicked")??;
        total.add(&result.histogram)?;
        report.load.requests += result.requests;
        report.load.errors += result.errors;
        report.answered += u64::from(result.requests > 0);
        report.full += result.kinds[0];
        report.retried += result.kinds[1];
        report.resumed += result.kinds[2];
        match (&negotiated, result.negotiated) {
            (_, None) => {}
            (None, Some(now)) => negotiated = Some(now),
            (Some(before), Some(now)) if *before != now => report.negotiated = "mixed".into(),
            _ => {}
        }
        if result.mixed {
            report.negotiated = "mixed".into();
        }
    }
    if report.negotiated.is_empty() {
        report.negotiated = negotiated.unwrap_or_else(|| "none".into());
    }
    let straggled = began.elapsed().saturating_sub(duration);
    if straggled > Duration::from_millis(100) {
        eprintln!(
            "   the last round trip ended {:.0} ms after the deadline (not counted in req/s)",
            straggled.as_secs_f64() * 1000.0
        );
    }
    let us = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    report.load.p50_us = us(0.5);
    report.load.p99_us = us(0.99);
    report.load.p999_us = us(0.999);
    Ok(report)
}

/// Socket timeouts of the clients: a server that stops answering costs a client this long.
const TIMEOUT: Duration = Duration::from_secs(5);

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects from this client's own loopback address (127.0.0.2 and up; see `load.rs`:
/// TIME_WAIT would exhaust one address's ports at these rates) and runs the full handshake.
fn connect(
    target: SocketAddr,
    id: usize,
    config: &Arc<ClientConfig>,
    result: &mut ClientResult,
) -> Result<Tls, BoxError> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    if matches!(target, SocketAddr::V4(v4) if v4.ip().is_loopback()) {
        let source = SocketAddr::from(([127, 0, (id / 250) as u8, (id % 250 + 2) as u8], 0));
        socket.bind(&source.into())?;
    }
    socket.connect_timeout(&target.into(), TIMEOUT)?;
    let mut tcp: TcpStream = socket.into();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let mut tls = ClientConnection::new(Arc::clone(config), ServerName::try_from("localhost")?)?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)?;
    }
    result.handshaken(&tls);
    Ok(StreamOwned::new(tls, tcp))
}

/// One request on a connection: send the message, read its echo whole.
fn round_trip(tls: &mut Tls, message: &[u8], reply: &mut [u8]) -> std::io::Result<()> {
    tls.write_all(message)?;
    tls.read_exact(reply)
}

/// A new connection per request: connect, handshake, round trip, `close_notify`, close.
fn once(
    target: SocketAddr,
    id: usize,
    config: &Arc<ClientConfig>,
    result: &mut ClientResult,
    message: &[u8],
    reply: &mut [u8],
) -> Result<(), BoxError> {
    let mut tls = connect(target, id, config, result)?;
    round_trip(&mut tls, message, reply)?;
    tls.conn.send_close_notify();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut tls.sock)?;
    }
    Ok(())
}

fn client(
    args: &TlsLoadArgs,
    target: SocketAddr,
    config: &Arc<ClientConfig>,
    id: usize,
    start: &Barrier,
    duration: Duration,
) -> Result<ClientResult, BoxError> {
    let mut result = ClientResult {
        histogram: Histogram::new_with_bounds(1, 60_000_000_000, 3)?,
        requests: 0,
        errors: 0,
        kinds: [0; 3],
        negotiated: None,
        mixed: false,
    };
    let size = args.size as usize;
    let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut reply = vec![0; size];
    // Persistent connections are made before the clock starts; one that fails is counted and
    // made again in the window.
    let mut persistent = match args.mode {
        TlsMode::Echo => match connect(target, id, config, &mut result) {
            Ok(tls) => Some(tls),
            Err(e) => {
                eprintln!("   client {id}: {e}");
                result.errors += 1;
                None
            }
        },
        TlsMode::Handshake => None,
    };
    start.wait();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if args.mode == TlsMode::Echo && persistent.is_none() {
            // A broken persistent connection: connect again (not a request), or give up.
            match connect(target, id, config, &mut result) {
                Ok(tls) => persistent = Some(tls),
                Err(_) => break,
            }
        }
        let began = Instant::now();
        let outcome: Result<(), BoxError> = match &mut persistent {
            Some(tls) => round_trip(tls, &message, &mut reply).map_err(Into::into),
            None => once(target, id, config, &mut result, &message, &mut reply),
        };
        match outcome {
            Ok(()) if reply != message => result.errors += 1,
            Ok(()) => {
                let nanos = u64::try_from(began.elapsed().as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1);
                result.histogram.saturating_record(nanos);
                // Throughput counts what the window held; a straggler's latency still counts.
                if Instant::now() <= deadline {
                    result.requests += 1;
                }
            }
            Err(_) => {
                result.errors += 1;
                persistent = None;
            }
        }
    }
    Ok(result)
}
