//! TLS on the stream transports with real clients: Python's `ssl` module with the test CA
//! (certificates made at test time, `util/pki.rs`), clients that must be refused, hostile
//! handshakes (silent, trickling, plaintext) cut at their deadline while others are served,
//! certificate reload under load, client authentication, and every strategy.

#![cfg(feature = "tls")]

mod example;
#[path = "util/pki.rs"]
mod pki;
mod util;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use example::{python, python3, python_output};
use pki::Pki;
use socketserver::tls::{ClientAuth, TlsConfig};
use socketserver::{
    Error, Forking, HandleResult, Handler, Pool, Serial, ServerContext, Strategy, StreamRequest,
    StreamRequestHandler, TcpServer, Threading, UdpServer,
};
use util::{eventually, PATIENCE};

/// Answers each line with the line and what TLS negotiated:
/// `LINE sni=NAME alpn=PROTO peer=N version=V`. Counts the connections it served.
struct Info;

#[derive(Default)]
struct Served(AtomicUsize);

impl Handler for Info {
    type State = Served;
    fn new(_: &ServerContext<Served>) -> Self {
        Info
    }
}

impl StreamRequestHandler for Info {
    fn handle(&mut self, request: &mut StreamRequest<'_, Served>) -> HandleResult {
        request.server().state().0.fetch_add(1, Ordering::SeqCst);
        let tls = request.tls().ok_or("not a TLS connection")?.clone();
        let mut line = String::new();
        while request.rfile.read_line(&mut line)? > 0 {
            let alpn = tls.alpn_protocol().map(String::from_utf8_lossy);
            writeln!(
                request.wfile,
                "{} sni={} alpn={} peer={} version={}",
                line.trim_end(),
                tls.server_name().unwrap_or("-"),
                alpn.as_deref().unwrap_or("-"),
                tls.peer_certificates().len(),
                tls.version(),
            )?;
            line.clear();
        }
        Ok(())
    }
}

fn server<S: Strategy>(
    strategy: S,
    config: &TlsConfig,
    handshake_timeout: Duration,
) -> util::Running<socketserver::transport::Tcp, Info, S> {
    let server = TcpServer::<Info>::builder()
        .strategy(strategy)
        .tls(config.clone())
        .tls_handshake_timeout(handshake_timeout)
        .read_timeout(Some(PATIENCE))
        .write_timeout(Some(PATIENCE))
        .max_connections(Some(64))
        .bind("127.0.0.1:0")
        .expect("bind");
    util::serve(server)
}

/// Python: connect with the test CA (argv: port, CA file, SNI name, ALPN or "-", client cert
/// and key or "-"), send `hello`, print the answer, then `ok`.
const PY_ASK: &str = r#"
import socket, ssl, sys
port, ca, name, alpn, cert, key = sys.argv[1:7]
context = ssl.create_default_context(cafile=ca)
if alpn != "-":
    context.set_alpn_protocols([alpn])
if cert != "-":
    context.load_cert_chain(cert, key)
with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(b"hello\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = tls.recv(4096)
            if not chunk:
                break
            answer += chunk
        print(answer.decode().strip())
        print("serial", tls.getpeercert()["serialNumber"])
print("ok")
"#;

fn ask(port: u16, pki: &Pki, name: &str, alpn: &str, client: Option<&pki::Issued>) -> String {
    let (cert, key) = client.map_or(("-".into(), "-".into()), |c| {
        (c.cert.display().to_string(), c.key.display().to_string())
    });
    let out = python_output(
        PY_ASK,
        &[
            &port.to_string(),
            &pki.ca.display().to_string(),
            name,
            alpn,
            &cert,
            &key,
        ],
    );
    example::assert_python_ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python that must fail: prints the exception's class and message.
const PY_REFUSED: &str = r#"
import socket, ssl, sys
port, ca = sys.argv[1:3]
context = ssl.create_default_context(cafile=None if ca == "-" else ca)
try:
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello\n")
            data = tls.recv(4096)
            print("answered", data)
except (ssl.SSLError, ConnectionError) as e:
    print("refused", type(e).__name__, e)
"#;

fn refused(port: u16, ca: &str) -> String {
    let out = python_output(PY_REFUSED, &[&port.to_string(), ca]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.starts_with("refused"),
        "the client was not refused: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn python_ssl_with_the_test_ca_sees_sni_and_alpn() {
    let _shared = util::isolation::shared();
    let pki = Pki::new();
    let leaf = pki.server("server", 7, false);
    let config = TlsConfig::builder(&leaf.cert, &leaf.key)
        .alpn(["x-test/1", "http/1.1"])
        .build()
        .unwrap();
    let running = server(Threading::new(), &config, Duration::from_secs(10));
    let port = running.inet().port();
    let answer = ask(port, &pki, "localhost", "x-test/1", None);
    assert!(
        answer.contains("hello sni=localhost alpn=x-test/1 peer=0 version=TLSv1.3"),
        "{answer}"
    );
    // No SNI (an IP address is never sent as SNI), no ALPN offered: both absent.
    let answer = ask(port, &pki, "127.0.0.1", "-", None);
    assert!(answer.contains("hello sni=- alpn=- peer=0"), "{answer}");
    assert_eq!(config.stats().handshakes, 2);
    running.stop();
}

#[test]
fn a_client_without_the_ca_is_refused_and_counted() {
    let _shared = util::isolation::shared();
    let pki = Pki::new();
    let leaf = pki.server("server", 1, false);
    let config = TlsConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let running = server(Threading::new(), &config, Duration::from_secs(10));
    let why = refused(running.inet().port(), "-");
    assert!(why.contains("CERTIFICATE_VERIFY_FAILED"), "{why}");
    assert!(
        eventually(PATIENCE, || config.stats().bad_certificate == 1),
        "{:?}",
        config.stats()
    );
    let server = running.stop();
    assert_eq!(
        server.state().0.load(Ordering::SeqCst),
        0,
        "the handler never ran"
    );
    assert_eq!(server.stats().rejected, 1);
}

#[test]
fn an_expired_certificate_is_refused_by_the_client() {
    let _shared = util::isolation::shared();
    let pki = Pki::new();
    let leaf = pki.server("expired", 2, true);
    let config = TlsConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let running = server(Threading::new(), &config, Duration::from_secs(10));
    let why = refused(running.inet().port(), &pki.ca.display().to_string());
    assert!(why.contains("expired"), "{why}");
    assert!(
        eventually(PATIENCE, || config.stats().bad_certificate == 1),
        "{:?}",
        config.stats()
    );
    running.stop();
}

#[test]
fn a_plaintext_client_gets_a_clean_close_and_the_server_keeps_serving() {
    let _shared = util::isolation::shared();
    let pki = Pki::new();
    let leaf = pki.server("server", 3, false);
    let config = TlsConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let running = server(Threading::new(), &config, Duration::from_secs(10));
    let mut plain = util::tcp_client(running.inet());
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    // An alert, then the end: never a hang (the read timeout is PATIENCE).
    let end = plain.read_to_end(&mut got);
    let took = start.elapsed();
    eprintln!(
        "plaintext client: closed after {took:?} with {} bytes (an alert: {:02x?}) (bound {PATIENCE:?})",
        got.len(),
        got
    );
    assert!(end.is_ok(), "not a clean close: {end:?}");
    assert!(took < PATIENCE);
    assert_eq!(got.first(), Some(&0x15), "a TLS alert record");
    assert_eq!(config.stats().not_tls, 1);
    let answer = ask(running.inet().port(), &pki, "localhost", "-", None);
    assert!(answer.contains("hello sni=localhost"), "{answer}");
    running.stop();
}

#[test]
fn stalled_handshakes_are_released_at_the_deadline_while_others_are_served() {
    let _shared = util::isolation::shared();
    stalled_handshakes(Threading::new(), "threading");
}

/// On the strategies that park connections, a handshake waiting for its client waits parked:
/// three stalled handshakes do not hold the one serving thread (`Serial`) or the one worker,
/// and are still cut at their deadline.
#[test]
fn stalled_handshakes_hold_no_worker_where_connections_are_parked() {
    let _shared = util::isolation::shared();
    stalled_handshakes(Serial, "serial");
    stalled_handshakes(Pool::new().workers(1), "a pool of 1 worker");
}

/// Two silent clients and a trickling one, while a real client is served at once; the three
/// are cut at the handshake deadline and counted as timed out.
fn stalled_handshakes<S: Strategy>(strategy: S, name: &str) {
    let pki = Pki::new();
    let leaf = pki.server("server", 4, false);
    let config = TlsConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let deadline = Duration::from_secs(2);
    let running = server(strategy, &config, deadline);
    let addr = running.inet();
    // Two clients that connect and send nothing, and one that trickles a ClientHello's first
    // bytes, one every 100 ms: a per-read timeout would never fire for it.
    let opened = Instant::now();
    let silent: Vec<TcpStream> = (0..2).map(|_| util::tcp_client(addr)).collect();
    let trickler = thread::spawn(move || {
        let mut client = util::tcp_client(addr);
        let hello = [
            0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        let start = Instant::now();
        for byte in hello.iter().cycle().take(300) {
            if client.write_all(&[*byte]).is_err() {
                break;
            }
            thread::park_timeout(Duration::from_millis(100));
            // The server's close (or alert) ends the trickle: check without blocking.
            client.set_nonblocking(true).unwrap();
            let mut probe = [0u8; 64];
            let ended = client.read(&mut probe).is_ok();
            client.set_nonblocking(false).unwrap();
            if ended {
                break;
            }
        }
        start.elapsed()
    });
    // Meanwhile a real client is served at once.
    let served = Instant::now();
    let answer = ask(addr.port(), &pki, "localhost", "-", None);
    let served_in = served.elapsed();
    assert!(answer.contains("hello sni=localhost"), "{answer}");
    assert!(
        served_in < deadline,
        "served in {served_in:?} while others stalled"
    );
    for mut client in silent {
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
    }
    let silent_stall = opened.elapsed();
    let trickle_stall = trickler.join().unwrap();
    eprintln!(
        "{name}: stalled handshakes released: silent after {silent_stall:?}, trickling after \
         {trickle_stall:?} (bound {deadline:?}); a client served meanwhile in {served_in:?}"
    );
    assert!(silent_stall >= deadline && silent_stall < deadline * 2);
    assert!(trickle_stall < deadline * 2, "{trickle_stall:?}");
    assert!(
        eventually(PATIENCE, || config.stats().timed_out == 3),
        "{:?}",
        config.stats()
    );
    assert_eq!(config.stats().handshakes, 1);
    running.stop();
}

#[test]
fn a_required_client_certificate_is_seen_by_the_handler_and_its_absence_refused() {
    let _shared = util::isolation::shared();
    let pki = Pki::new();
    let leaf = pki.server("server", 5, false);
    let alice = pki.client("alice", 6, "alice");
    let config = TlsConfig::builder(&leaf.cert, &leaf.key)
        .client_auth(&pki.ca, ClientAuth::Required)
        .build()
        .unwrap();
    let running = server(Threading::new(), &config, Duration::from_secs(10));
    let port = running.inet().port();
    let answer = ask(port, &pki, "localhost", "-", Some(&alice));
    // Python sends its chain: the leaf, and the CA it verified it with.
    assert!(
        answer.contains("hello sni=localhost alpn=- peer="),
        "{answer}"
    );
    assert!(!answer.contains("peer=0"), "{answer}");
    // Without one: TLS 1.3 finishes the client's side first, so the refusal (an alert) comes
    // on its first read.
    let why = refused(port, &pki.ca.display().to_string());
    assert!(why.to_lowercase().contains("certificate"), "{why}");
    assert!(
        eventually(PATIENCE, || config.stats().bad_certificate == 1),
        "{:?}",
        config.stats()
    );
    let server = running.stop();
    assert_eq!(
        server.state().0.load(Ordering::SeqCst),
        1,
        "only alice was served"
    );
}

#[test]
fn tls_on_a_datagram_server_is_refused_at_bind() {
    let pki = Pki::new();
    let leaf = pki.server("server", 8, false);
    let config = TlsConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let error = UdpServer::<Datagrams>::builder()
        .tls(config)
        .bind("127.0.0.1:0")
        .expect_err("refused");
    assert!(
        matches!(&error, Error::InvalidOption { option: "tls", .. }),
        "{error}"
    );
}

/// A datagram handler, to show TLS is refused on datagram servers.
struct Datagrams;

impl Handler for Datagrams {
    type State = ();
    fn new(_: &ServerContext) -> Self {
        Datagrams
    }
}

impl socketserver::DatagramRequestHandler for Datagrams {
    fn handle(&mut self, _: &mut socketserver::DatagramRequest<'_>) -> HandleResult {
        Ok(())
    }
}

/// Python load: `threads` clients, each doing handshake + request in a loop until it has done
/// `after` requests since the line `reloaded` came on stdin (at most 60 s in all). Prints
/// `started` once every client has done a request, then one JSON line: requests done, failed,
/// and the serials seen by connections begun after the reload.
const PY_LOAD: &str = r#"
import json, socket, ssl, sys, threading, time
port, ca, threads, after = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
context = ssl.create_default_context(cafile=ca)
reloaded = threading.Event()
lock = threading.Lock()
done, failed, serials_after, errors = [0], [0], set(), []
first = threading.Barrier(threads + 1)
def client(i):
    count_after = 0
    waited = False
    end = time.monotonic() + 60
    while count_after < after and time.monotonic() < end:
        began_after = reloaded.is_set()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"hello\n")
                    answer = b""
                    while not answer.endswith(b"\n"):
                        chunk = tls.recv(4096)
                        if not chunk:
                            raise ConnectionError("closed early")
                        answer += chunk
                    assert answer.startswith(b"hello"), answer
                    serial = int(tls.getpeercert()["serialNumber"], 16)
            with lock:
                done[0] += 1
                if began_after:
                    serials_after.add(serial)
        except Exception as e:
            with lock:
                failed[0] += 1
                errors.append(repr(e))
        if not waited:
            waited = True
            first.wait(30)
        if began_after:
            count_after += 1
threads_ = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
for t in threads_: t.start()
first.wait(30)
print("started", flush=True)
line = sys.stdin.readline()
reloaded.set()
for t in threads_: t.join(90)
print(json.dumps({"done": done[0], "failed": failed[0], "serials_after": sorted(serials_after), "errors": errors[:3]}), flush=True)
"#;

#[test]
fn reload_under_load_fails_no_request_and_new_connections_see_the_new_certificate() {
    let _shared = util::isolation::shared();
    let pki = Pki::new();
    let old = pki.server("server", 10, false);
    let config = TlsConfig::from_pem_files(&old.cert, &old.key).unwrap();
    let running = server(Threading::new(), &config, Duration::from_secs(10));
    let port = running.inet().port();
    let mut load = python3()
        .arg("-c")
        .arg(PY_LOAD)
        .args([
            port.to_string(),
            pki.ca.display().to_string(),
            "8".into(),
            "20".into(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start python");
    let mut stdout = std::io::BufReader::new(load.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started", "{line}");
    // A reload that fails keeps the old certificate serving (the load goes on without error).
    std::fs::write(&old.key, "not a key\n").unwrap();
    let error = config.reload().expect_err("a bad key is refused");
    eprintln!("reload refused as it should be: {error}");
    // The new certificate, written over the old files, as certbot does.
    let new = pki.server("new", 11, false);
    std::fs::copy(&new.cert, &old.cert).unwrap();
    std::fs::copy(&new.key, &old.key).unwrap();
    let reloaded = Instant::now();
    config.reload().expect("reload");
    let reload_took = reloaded.elapsed();
    writeln!(load.stdin.take().unwrap(), "reloaded").unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    let status = load.wait().unwrap();
    assert!(status.success(), "{status}");
    let report: serde_json::Value = serde_json::from_str(&line).expect(&line);
    eprintln!(
        "reload under load: {} requests, {} failed (bound 0); the reload took {reload_took:?}; \
         serials seen by connections begun after it: {}",
        report["done"], report["failed"], report["serials_after"]
    );
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["serials_after"], serde_json::json!([11]), "{report}");
    assert!(report["done"].as_u64().unwrap() >= 8 * 20);
    running.stop();
}

/// The same conversation, under `strategy`.
fn serves_tls<S: Strategy>(strategy: S) {
    let pki = Pki::new();
    let leaf = pki.server("server", 12, false);
    let config = TlsConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let running = server(strategy, &config, Duration::from_secs(10));
    let port = running.inet().port();
    for _ in 0..2 {
        let answer = ask(port, &pki, "localhost", "-", None);
        assert!(answer.contains("hello sni=localhost"), "{answer}");
    }
    running.stop();
}

#[test]
fn every_strategy_serves_tls() {
    {
        let _shared = util::isolation::shared();
        serves_tls(Serial);
        serves_tls(Threading::new());
        serves_tls(Pool::new().workers(2));
    }
    let _fork = util::isolation::fork_lock();
    serves_tls(Forking::new());
}

#[test]
fn a_plain_client_over_unix_stream_tls_is_served() {
    let _shared = util::isolation::shared();
    let pki = Pki::new();
    let leaf = pki.server("server", 13, false);
    let config = TlsConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let dir = util::temp_dir();
    let path = dir.path().join("tls.sock");
    let server = socketserver::UnixStreamServer::<Info>::builder()
        .tls(config.clone())
        .read_timeout(Some(PATIENCE))
        .bind(&path)
        .expect("bind");
    let running = util::serve(server);
    python(
        r#"
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[2])
raw = socket.socket(socket.AF_UNIX)
raw.settimeout(10)
raw.connect(sys.argv[1])
with context.wrap_socket(raw, server_hostname="localhost") as tls:
    tls.sendall(b"hi\n")
    answer = tls.recv(4096)
    assert answer.startswith(b"hi sni=localhost"), answer
print("ok")
"#,
        &[&path.display().to_string(), &pki.ca.display().to_string()],
    );
    assert_eq!(config.stats().handshakes, 1);
    running.stop();
}

/// Answers `hello PATH` over HTTP.
#[derive(Default)]
struct HttpsHello;

impl Handler for HttpsHello {
    type State = ();
    fn new(_: &ServerContext) -> Self {
        HttpsHello
    }
}

impl socketserver::http::HttpHandler for HttpsHello {
    fn respond(
        &mut self,
        request: &socketserver::http::Request,
        _: &ServerContext,
    ) -> socketserver::http::Response {
        socketserver::http::Response::text(200, format!("hello {}", request.path()))
    }
}

/// HTTPS keep-alive on a pool of one worker: while a client holds a connection that has not
/// finished its handshake, Python's `requests` runs five requests on one kept-alive TLS
/// connection (its handshake and its idle times parked, then its requests), and the stalled
/// handshake is cut at its deadline.
#[test]
fn https_keep_alive_on_one_worker_beside_a_stalled_handshake() {
    let _shared = util::isolation::shared();
    let pki = Pki::new();
    let leaf = pki.server("server", 31, false);
    let config = TlsConfig::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let server = socketserver::TcpServer::<socketserver::http::Http<HttpsHello>>::builder()
        .strategy(Pool::new().workers(1))
        .tls(config.clone())
        .tls_handshake_timeout(Duration::from_secs(2))
        .bind("127.0.0.1:0")
        .expect("bind");
    let running = util::serve(server);
    let port = running.inet().port();
    // Sends nothing: before the handshakes were parked, it held the one worker for 2 s.
    let mut stalled = util::tcp_client(running.inet());
    let started = Instant::now();
    python(
        r#"
import requests, sys
port, ca = sys.argv[1:3]
with requests.Session() as s:
    for i in range(5):
        r = s.get(f"https://localhost:{port}/k{i}", verify=ca, timeout=10)
        assert r.status_code == 200 and r.text == f"hello /k{i}", r.text
print("ok")
"#,
        &[&port.to_string(), &pki.ca.display().to_string()],
    );
    let served_in = started.elapsed();
    assert!(
        served_in < Duration::from_secs(2),
        "five requests took {served_in:?} beside a stalled handshake"
    );
    assert_eq!(config.stats().handshakes, 1, "one kept-alive connection");
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest);
    assert!(
        eventually(PATIENCE, || config.stats().timed_out == 1),
        "{:?}",
        config.stats()
    );
    running.stop();
}
