//! The PROXY protocol over real sockets (issue 15): headers written by hand by a client on
//! loopback (std's and Python's sockets), as a proxy would send them. The handler must see the
//! client the header names and the bytes after the header intact; untrusted peers and bad or
//! late headers are refused before any handler runs, counted and reported; a silent client is
//! released at the header deadline while others are served; every strategy runs the step,
//! Forking in the child.

mod util;

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use socketserver::proxy::{IpNet, ProxyProtocol};
use socketserver::{
    DatagramRequest, DatagramRequestHandler, Error, ForkingTcpServer, HandleResult, Handler,
    PoolTcpServer, RequestError, ServerContext, StreamRequest, StreamRequestHandler, TcpServer,
    ThreadingTcpServer, UdpServer,
};
use util::isolation;

/// What a handler saw, and the errors `handle_error` got.
#[derive(Clone)]
struct Seen {
    requests: Sender<String>,
    errors: Sender<String>,
}

/// Reads one line and answers (and reports) what it saw: the client address, the proxy, the
/// destination, the TLVs, and the line itself.
struct Who;

impl Handler for Who {
    type State = Option<Seen>;
    fn new(_: &ServerContext<Option<Seen>>) -> Self {
        Who
    }
}

impl StreamRequestHandler for Who {
    fn handle(&mut self, request: &mut StreamRequest<'_, Option<Seen>>) -> HandleResult {
        let mut line = Vec::new();
        request.rfile.read_until(b'\n', &mut line)?;
        let line = String::from_utf8_lossy(&line);
        let proxy = request.proxy();
        let seen = format!(
            "client={} proxy={} to={} local={} authority={} alpn={} id={} line={:?}\n",
            request.client_address(),
            proxy.map_or("-".into(), |p| p.peer().to_string()),
            proxy
                .and_then(|p| p.destination())
                .map_or("-".into(), ToString::to_string),
            proxy.is_some_and(|p| p.is_local()),
            proxy.and_then(|p| p.authority()).unwrap_or("-"),
            proxy
                .and_then(|p| p.alpn())
                .map_or("-".into(), |a| String::from_utf8_lossy(a).into_owned()),
            proxy
                .and_then(|p| p.unique_id())
                .map_or("-".into(), |a| String::from_utf8_lossy(a).into_owned()),
            line,
        );
        if let Some(seen_by) = request.server().state() {
            let _ = seen_by.requests.send(seen.clone());
        }
        request.wfile.write_all(seen.as_bytes())?;
        Ok(())
    }
}

/// A datagram handler, for the datagram server that must refuse the options.
#[derive(Handler)]
struct Nothing;

impl DatagramRequestHandler for Nothing {
    fn handle(&mut self, _: &mut DatagramRequest<'_>) -> HandleResult {
        Ok(())
    }
}

struct Probe {
    requests: Receiver<String>,
    errors: Receiver<String>,
}

/// A builder whose handler and `handle_error` report to the returned probe.
fn probed<S: socketserver::Strategy + Default, T: socketserver::transport::Transport>(
) -> (socketserver::ServerBuilder<T, Who, S>, Probe) {
    let (requests, requests_rx) = unbounded();
    let (errors, errors_rx) = unbounded();
    let seen = Seen { requests, errors };
    let reporter = seen.errors.clone();
    let builder = socketserver::Server::<T, Who, S>::with_state(Some(seen))
        .read_timeout(Some(Duration::from_secs(5)))
        .write_timeout(Some(Duration::from_secs(5)))
        .max_connections(Some(64))
        .handle_error(move |_, error: &RequestError| {
            let _ = reporter.send(format!("{error} | {error:?}"));
        });
    (
        builder,
        Probe {
            requests: requests_rx,
            errors: errors_rx,
        },
    )
}

fn v1_header(client: &str, to: SocketAddr) -> String {
    let (ip, port) = client.rsplit_once(':').expect("ip:port");
    format!("PROXY TCP4 {ip} {} {port} {}\r\n", to.ip(), to.port())
}

/// A v2 PROXY header for IPv4 with the given TLVs.
fn v2_header(command: u8, source: ([u8; 4], u16), to: SocketAddr, tlvs: &[(u8, &[u8])]) -> Vec<u8> {
    let SocketAddr::V4(to) = to else {
        panic!("an IPv4 server")
    };
    let mut body = Vec::new();
    body.extend(source.0);
    body.extend(to.ip().octets());
    body.extend(source.1.to_be_bytes());
    body.extend(to.port().to_be_bytes());
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend(u16::try_from(value.len()).unwrap().to_be_bytes());
        body.extend(*value);
    }
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([0x20 | command, 0x11]);
    header.extend(u16::try_from(body.len()).unwrap().to_be_bytes());
    header.extend(body);
    header
}

/// Connects, writes `bytes` in one write, and reads the reply until the server closes.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut client = util::tcp_client(addr);
    client.write_all(bytes).unwrap();
    let mut reply = String::new();
    // A refused connection may end with a reset rather than an orderly close.
    let _ = client.read_to_string(&mut reply);
    reply
}

fn field<'a>(reply: &'a str, name: &str) -> &'a str {
    reply
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name).and_then(|w| w.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {reply:?}"))
}

#[test]
fn a_v1_header_names_the_client_and_the_bytes_after_it_reach_the_handler() {
    let _shared = isolation::shared();
    let (builder, probe) = probed::<socketserver::Serial, socketserver::transport::Tcp>();
    let server = util::serve(
        builder
            .proxy_protocol(ProxyProtocol::V1)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let addr = server.inet();
    let header = v1_header("203.0.113.7:51000", addr);
    // Header and request in one write, as proxies send them.
    let reply = exchange(addr, format!("{header}hello after the header\n").as_bytes());
    assert_eq!(field(&reply, "client"), "203.0.113.7:51000", "{reply}");
    assert!(field(&reply, "proxy").starts_with("127.0.0.1:"), "{reply}");
    assert_eq!(field(&reply, "to"), addr.to_string());
    assert!(
        reply.ends_with("line=\"hello after the header\\n\"\n"),
        "{reply}"
    );
    assert_eq!(probe.requests.len(), 1);
    let stats = server.stop().stats();
    assert_eq!((stats.succeeded, stats.rejected), (1, 0), "{stats:?}");
    assert!(probe.errors.is_empty());
}

/// Python's socket module writes a v2 header with TLVs, then its request, in two writes.
const PY_V2: &str = r#"
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value
body = socket.inet_aton("198.51.100.9") + socket.inet_aton(host) + struct.pack("!HH", 40000, port)
body += tlv(0x01, b"h2") + tlv(0x02, b"shop.example") + tlv(0x05, b"req-7")
header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body
s = socket.create_connection((host, port), timeout=10)
s.sendall(header)
s.sendall(b"\x00binary \xff bytes\n")
reply = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
print(reply.decode("utf-8", "replace"), end="")
"#;

fn python3() -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .skip(1)
                .take(4)
                .map(|dir| dir.join("test-venv").join("bin").join("python3"))
                .find(|python| python.is_file())
        })
        .unwrap_or_else(|| "python3".into())
}

#[test]
fn a_v2_header_from_python_gives_the_client_and_the_tlvs() {
    let _shared = isolation::shared();
    let (builder, probe) = probed::<socketserver::Serial, socketserver::transport::Tcp>();
    let server = util::serve(
        builder
            .proxy_protocol(ProxyProtocol::V2)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let addr = server.inet();
    let out = Command::new(python3())
        .arg("-c")
        .arg(PY_V2)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .output()
        .expect("run python3 (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply = String::from_utf8_lossy(&out.stdout);
    assert_eq!(field(&reply, "client"), "198.51.100.9:40000", "{reply}");
    assert_eq!(field(&reply, "authority"), "shop.example");
    assert_eq!(field(&reply, "alpn"), "h2");
    assert_eq!(field(&reply, "id"), "req-7");
    // The payload after the header, binary bytes included, is what the handler read.
    assert!(
        reply.contains("line=\"\\0binary \u{fffd} bytes\\n\""),
        "{reply}"
    );
    server.stop();
    assert!(probe.errors.is_empty());
}

#[test]
fn a_local_header_keeps_the_proxy_as_the_client() {
    let _shared = isolation::shared();
    let (builder, _probe) = probed::<socketserver::Serial, socketserver::transport::Tcp>();
    let server = util::serve(
        builder
            .proxy_protocol(ProxyProtocol::Any)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let addr = server.inet();
    let mut client = util::tcp_client(addr);
    let local = client.local_addr().unwrap();
    client
        .write_all(&[&v2_header(0, ([1, 2, 3, 4], 5), addr, &[])[..], b"check\n"].concat())
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(field(&reply, "client"), local.to_string(), "{reply}");
    assert_eq!(field(&reply, "local"), "true");
    server.stop();
}

#[test]
fn an_untrusted_peer_is_refused_counted_and_reported() {
    let _shared = isolation::shared();
    let (builder, probe) = probed::<socketserver::Serial, socketserver::transport::Tcp>();
    let server = util::serve(
        builder
            .proxy_protocol(ProxyProtocol::Any)
            .trusted_proxies(["127.0.0.1/32".parse::<IpNet>().unwrap()])
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let addr = server.inet();
    let mut client = util::tcp_client_from(Ipv4Addr::new(127, 0, 0, 2), addr);
    let header = v1_header("203.0.113.7:51000", addr);
    client
        .write_all(format!("{header}hello\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    let _ = client.read_to_string(&mut reply);
    assert_eq!(reply, "", "an untrusted peer gets no answer");
    let error = probe.errors.recv_timeout(util::PATIENCE).expect("reported");
    assert!(
        error.contains("127.0.0.2:") && error.contains("not a trusted proxy"),
        "{error}"
    );
    // The trusted address is still served.
    let reply = exchange(addr, format!("{header}hello\n").as_bytes());
    assert_eq!(field(&reply, "client"), "203.0.113.7:51000");
    let stats = server.stop().stats();
    assert_eq!((stats.rejected, stats.succeeded), (1, 1), "{stats:?}");
    assert_eq!(
        probe.requests.len(),
        1,
        "the handler never ran for the untrusted peer"
    );
}

#[test]
fn missing_and_malformed_headers_are_refused_with_the_reason() {
    let _shared = isolation::shared();
    let (builder, probe) = probed::<socketserver::Serial, socketserver::transport::Tcp>();
    let server = util::serve(
        builder
            .proxy_protocol(ProxyProtocol::V1)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let addr = server.inet();
    let cases: [(&[u8], &str); 4] = [
        (
            b"GET / HTTP/1.1\r\n\r\n",
            "expected a PROXY protocol v1 header",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\nhello\n",
            "malformed PROXY v1 header",
        ),
        (
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\0",
            "expected a PROXY protocol v1 header",
        ),
        (
            b"PROXY TCP4 1.2.3.4",
            "closed before the PROXY header ended",
        ),
    ];
    for (input, reason) in cases {
        let mut client = util::tcp_client(addr);
        client.write_all(input).unwrap();
        // The server may have refused (and closed) already: then there is nothing to shut.
        let _ = client.shutdown(std::net::Shutdown::Write);
        let mut reply = String::new();
        let _ = client.read_to_string(&mut reply);
        assert_eq!(reply, "", "{}", input.escape_ascii());
        let error = probe.errors.recv_timeout(util::PATIENCE).expect("reported");
        assert!(
            error.contains(reason) && error.contains("connection from proxy 127.0.0.1:"),
            "{}: {error}",
            input.escape_ascii()
        );
    }
    let stats = server.stop().stats();
    assert_eq!(
        (stats.rejected, stats.succeeded, stats.failed),
        (4, 0, 0),
        "{stats:?}"
    );
    assert!(probe.requests.is_empty());
}

#[test]
fn a_silent_client_is_released_at_the_header_deadline_while_others_are_served() {
    let _shared = isolation::shared();
    let (builder, probe) = probed::<socketserver::Threading, socketserver::transport::Tcp>();
    silent_clients(builder, &probe, "threading");
}

/// Where connections are parked, a header that has not arrived waits parked: two silent
/// clients hold neither `Serial`'s one thread nor a pool's one worker.
#[test]
fn silent_proxy_clients_hold_no_worker_where_connections_are_parked() {
    let _shared = isolation::shared();
    let (builder, probe) = probed::<socketserver::Serial, socketserver::transport::Tcp>();
    silent_clients(builder, &probe, "serial");
    let (builder, probe) = probed::<socketserver::Pool, socketserver::transport::Tcp>();
    let one = builder.strategy(socketserver::Pool::new().workers(1));
    silent_clients(one, &probe, "a pool of 1 worker");
}

/// Two silent clients (one sends nothing, one half a header) are released at the header
/// deadline, reported and counted as rejected, while a proxied client is served at once.
fn silent_clients<S: socketserver::Strategy>(
    builder: socketserver::ServerBuilder<socketserver::transport::Tcp, Who, S>,
    probe: &Probe,
    name: &str,
) {
    const DEADLINE: Duration = Duration::from_millis(400);
    let server = util::serve(
        builder
            .proxy_protocol(ProxyProtocol::Any)
            .proxy_header_timeout(DEADLINE)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let addr = server.inet();
    // Two silent clients: one sends nothing, one half a header.
    let started = Instant::now();
    let mut silent = util::tcp_client(addr);
    let mut trickle = util::tcp_client(addr);
    trickle.write_all(b"PROXY TCP4 1.2").unwrap();
    // Meanwhile a proxied client is served at once.
    let served = Instant::now();
    let reply = exchange(
        addr,
        format!("{}hi\n", v1_header("192.0.2.5:7", addr)).as_bytes(),
    );
    let serve_time = served.elapsed();
    assert_eq!(field(&reply, "client"), "192.0.2.5:7");
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let _ = trickle.read_to_end(&mut rest);
    let stall = started.elapsed();
    eprintln!(
        "{name}: silent clients released after {} ms (bound {} ms); another client served in {} ms meanwhile",
        stall.as_millis(),
        DEADLINE.as_millis(),
        serve_time.as_millis()
    );
    assert!(rest.is_empty());
    assert!(stall >= DEADLINE, "released before the deadline: {stall:?}");
    assert!(
        stall < DEADLINE + Duration::from_secs(2),
        "held past the deadline: {stall:?}"
    );
    assert!(
        serve_time < DEADLINE,
        "the other client waited for the silent ones: {serve_time:?}"
    );
    for _ in 0..2 {
        let error = probe.errors.recv_timeout(util::PATIENCE).expect("reported");
        assert!(
            error.contains("no complete PROXY header within 400ms"),
            "{error}"
        );
    }
    let stats = server.stop().stats();
    assert_eq!((stats.rejected, stats.succeeded), (2, 1), "{stats:?}");
}

#[test]
fn every_strategy_reads_the_header_on_its_worker() {
    let _shared = isolation::shared();
    let header = v1_header("203.0.113.8:1234", "127.0.0.1:1".parse().unwrap());
    let ask = |addr: SocketAddr| {
        let reply = exchange(addr, format!("{header}x\n").as_bytes());
        field(&reply, "client").to_owned()
    };
    let threading = util::serve(
        ThreadingTcpServer::<Who>::builder()
            .proxy_protocol(ProxyProtocol::V1)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(threading.inet()), "203.0.113.8:1234");
    threading.stop();
    let pool = util::serve(
        PoolTcpServer::<Who>::builder()
            .proxy_protocol(ProxyProtocol::V1)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(pool.inet()), "203.0.113.8:1234");
    pool.stop();
    let serial = util::serve(
        TcpServer::<Who>::builder()
            .proxy_protocol(ProxyProtocol::V1)
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    assert_eq!(ask(serial.inet()), "203.0.113.8:1234");
    serial.stop();
}

#[test]
fn forking_reads_the_header_in_the_child() {
    let _lock = isolation::fork_lock();
    let server = util::serve(
        ForkingTcpServer::<Who>::builder()
            .proxy_protocol(ProxyProtocol::V2)
            .read_timeout(Some(Duration::from_secs(5)))
            .bind("127.0.0.1:0")
            .unwrap(),
    );
    let addr = server.inet();
    let reply = exchange(
        addr,
        &[
            &v2_header(1, ([192, 0, 2, 44], 9), addr, &[(0x02, b"f.example")])[..],
            b"y\n",
        ]
        .concat(),
    );
    assert_eq!(field(&reply, "client"), "192.0.2.44:9", "{reply}");
    assert_eq!(field(&reply, "authority"), "f.example");
    // A refused connection is closed by the child too.
    assert_eq!(exchange(addr, b"no header\n"), "");
    server.stop().close();
}

#[test]
fn unix_socket_peers_are_trusted() {
    let _shared = isolation::shared();
    let dir = util::temp_dir();
    let path = dir.path().join("proxied.sock");
    let (builder, _probe) = probed::<socketserver::Serial, socketserver::transport::UnixStream>();
    let server = util::serve(
        builder
            .proxy_protocol(ProxyProtocol::V1)
            .bind(&path)
            .unwrap(),
    );
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(util::PATIENCE)).unwrap();
    client
        .write_all(b"PROXY TCP6 2001:db8::9 2001:db8::1 4000 80\r\nunix\n")
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(field(&reply, "client"), "[2001:db8::9]:4000", "{reply}");
    server.stop().close();
}

#[test]
fn the_options_are_refused_on_datagram_servers_and_a_zero_deadline_anywhere() {
    let error = UdpServer::<Nothing>::builder()
        .proxy_protocol(ProxyProtocol::V2)
        .bind("127.0.0.1:0")
        .expect_err("UDP takes no PROXY header");
    assert!(
        matches!(
            error,
            Error::InvalidOption {
                option: "proxy_protocol",
                ..
            }
        ),
        "{error}"
    );
    let error = TcpServer::<Who>::builder()
        .proxy_header_timeout(Duration::ZERO)
        .bind("127.0.0.1:0")
        .expect_err("zero deadline");
    assert!(matches!(
        error,
        Error::InvalidOption {
            option: "proxy_header_timeout",
            ..
        }
    ));
    // Off is the default, and then a header is just bytes for the handler.
    let server = util::serve(TcpServer::<Who>::bind("127.0.0.1:0").unwrap());
    let addr = server.inet();
    let reply = exchange(addr, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    assert!(field(&reply, "client").starts_with("127.0.0.1:"), "{reply}");
    assert_eq!(field(&reply, "proxy"), "-");
    server.stop();
}

#[test]
fn ipv6_and_dual_stack_peers_are_matched_against_the_trusted_ranges() {
    let _shared = isolation::shared();
    let header = "PROXY TCP6 2001:db8::5 2001:db8::1 4000 80\r\nv6\n";
    // ::1 is trusted by default.
    let v6 = util::serve(
        TcpServer::<Who>::builder()
            .proxy_protocol(ProxyProtocol::V1)
            .bind("[::1]:0")
            .unwrap(),
    );
    let reply = exchange(v6.inet(), header.as_bytes());
    assert_eq!(field(&reply, "client"), "[2001:db8::5]:4000", "{reply}");
    v6.stop();
    // A dual-stack server sees an IPv4 client as ::ffff:127.0.0.1, matched as 127.0.0.1.
    let dual = util::serve(
        TcpServer::<Who>::builder()
            .proxy_protocol(ProxyProtocol::V1)
            .trusted_proxies(["127.0.0.1/32".parse::<IpNet>().unwrap()])
            .bind("[::]:0")
            .unwrap(),
    );
    let port = dual.inet().port();
    let reply = exchange(SocketAddr::from(([127, 0, 0, 1], port)), header.as_bytes());
    assert_eq!(field(&reply, "client"), "[2001:db8::5]:4000", "{reply}");
    let stats = dual.stop().stats();
    assert_eq!((stats.succeeded, stats.rejected), (1, 0), "{stats:?}");
}
