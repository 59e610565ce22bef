//! Behind real load balancers (issue 15): Debian's HAProxy and nginx, started on loopback by
//! each test with the configuration files of `examples/deploy/` (haproxy.cfg, nginx-stream.conf;
//! their addresses replaced by the test's: tests/util/balancers.rs), in front of our servers
//! with the PROXY protocol on. The handler must see the client's address, not the balancer's;
//! several servers behind one HAProxy share a bounded load, and one stopped gracefully under
//! that load costs no request.
//!
//! Needs `haproxy`, `nginx` and `libnginx-mod-stream` (scripts/test installs them).

#[path = "util/balancers.rs"]
mod balancers;
mod example;
#[path = "util/load.rs"]
mod load;
mod util;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use balancers::{whoami_from, Balancer, EchoOne, LineLoad, Served};
use example::{run, Example, CLIENT_DEADLINE};
use load::Load;
use nix::sys::signal::Signal;
use socketserver::metrics::MetricsServer;
use socketserver::proxy::ProxyProtocol;
use socketserver::{Threading, ThreadingTcpServer};
use util::Running;

/// A server behind a balancer, its count of lines answered, and its metrics listener (on the
/// same address: HAProxy's health checks ask its `/readyz`).
struct Backend {
    running: Running<socketserver::transport::Tcp, EchoOne, Threading>,
    lines: Arc<AtomicU64>,
    metrics: MetricsServer,
}

impl Backend {
    /// The server's address and its metrics listener's, as [`Balancer::haproxy`] takes them.
    fn checked(&self) -> (SocketAddr, SocketAddr) {
        (self.running.inet(), self.metrics.address())
    }
}

/// The address the test's clients connect from: neither the balancer's nor the server's.
const CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// A server behind a balancer: bounded as the examples are, requiring `protocol`.
fn backend(host: &str, protocol: ProxyProtocol) -> Backend {
    let lines = Arc::new(AtomicU64::new(0));
    let served = Served {
        lines: Arc::clone(&lines),
    };
    let server = ThreadingTcpServer::<EchoOne>::with_state(served)
        .proxy_protocol(protocol)
        .proxy_header_timeout(Duration::from_secs(2))
        .read_timeout(Some(Duration::from_secs(10)))
        .write_timeout(Some(Duration::from_secs(10)))
        .max_connections(Some(256))
        .bind((host, 0))
        .expect("bind a backend");
    let metrics = server.serve_metrics((host, 0)).expect("a metrics listener");
    Backend {
        running: util::serve(server),
        lines,
        metrics,
    }
}

/// A server's own count of lines answered (health checks send none).
fn lines(server: &Backend) -> u64 {
    server.lines.load(Ordering::SeqCst)
}

/// `whoami` through the balancer from [`CLIENT`]: the handler must name the client.
fn assert_sees_the_client(balancer: &Balancer, version: &str) {
    let reply = whoami_from(CLIENT, balancer.front)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", balancer.name, balancer.logs()));
    eprintln!("{}: {}", balancer.name, reply.trim_end());
    // "from=127.0.0.3:PORT client=127.0.0.3:PORT proxy=127.0.0.1:P version=v2"
    let from = field(&reply, "from");
    assert_eq!(
        field(&reply, "client"),
        from,
        "{}: the handler must see the client's address\n{reply}",
        balancer.name
    );
    let proxy: SocketAddr = field(&reply, "proxy").parse().expect("a proxy address");
    assert_ne!(proxy.ip(), CLIENT, "{reply}");
    assert_eq!(field(&reply, "version"), version, "{reply}");
}

fn field<'a>(reply: &'a str, name: &str) -> &'a str {
    reply
        .split_whitespace()
        .find_map(|w| w.strip_prefix(name).and_then(|w| w.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {reply:?}"))
}

#[test]
fn haproxy_send_proxy_v1_and_v2_show_the_client() {
    for (send, protocol, version) in [
        ("send-proxy", ProxyProtocol::V1, "v1"),
        ("send-proxy-v2", ProxyProtocol::V2, "v2"),
        ("send-proxy-v2", ProxyProtocol::Any, "v2"),
    ] {
        let server = backend("127.0.0.1", protocol);
        let haproxy = Balancer::haproxy(&[server.checked()], send);
        assert_sees_the_client(&haproxy, version);
        drop(haproxy);
        let server = server.running.stop();
        let stats = server.stats();
        assert!(stats.succeeded >= 1, "{send}: {stats:?}");
        assert_eq!(
            stats.rejected, 0,
            "{send}: every connection HAProxy opens to the server starts with the header"
        );
    }
}

#[test]
fn nginx_stream_proxy_protocol_shows_the_client() {
    let server = backend("127.0.0.1", ProxyProtocol::V1);
    let nginx = Balancer::nginx(&[server.running.inet()]);
    assert_sees_the_client(&nginx, "v1");
    // A second connection through the same nginx worker: each gets its own header.
    assert_sees_the_client(&nginx, "v1");
    drop(nginx);
    assert!(lines(&server) >= 2);
    let stats = server.running.stop().stats();
    assert_eq!(stats.rejected, 0, "{stats:?}");
}

#[test]
fn a_load_spreads_over_three_servers_and_survives_a_graceful_stop() {
    const PHASE: u64 = 300;
    let mut servers: Vec<Option<Backend>> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .into_iter()
        .map(|host| Some(backend(host, ProxyProtocol::V2)))
        .collect();
    let addresses: Vec<(SocketAddr, SocketAddr)> =
        servers.iter().flatten().map(Backend::checked).collect();
    let haproxy = Balancer::haproxy(&addresses, "send-proxy-v2");
    let counts = |servers: &[Option<Backend>]| -> Vec<u64> {
        servers
            .iter()
            .map(|s| s.as_ref().map_or(0, lines))
            .collect()
    };

    // Phase 1: a bounded load through HAProxy reaches every server.
    let load = Load::start(haproxy.front, 4);
    assert!(
        load.wait_for(PHASE),
        "the load did not get going\n{}",
        haproxy.logs()
    );
    let spread = counts(&servers);
    eprintln!(
        "phase 1: {} sent, served per server {spread:?}",
        load.sent()
    );
    assert!(
        spread.iter().all(|&n| n > 0),
        "round robin reaches every server: {spread:?}"
    );

    // Phase 2: one server stops gracefully (stop, then close: the backlog is served first)
    // while the load goes on; HAProxy moves its traffic to the other two. Its metrics listener
    // goes before the close: it holds a copy of the listening socket (for the listen queue
    // gauge), which would keep taking connections into a backlog that nobody serves.
    let stopped = servers[1].take().expect("server 1");
    let server = stopped.running.stop();
    drop(stopped.metrics);
    let report = server.close();
    let served_by_stopped = stopped.lines.load(Ordering::SeqCst);
    let before = counts(&servers);
    assert!(
        load.wait_for(PHASE),
        "the load stalled after the stop\n{}",
        haproxy.logs()
    );
    let result = load.stop();
    let after = counts(&servers);
    eprintln!(
        "phase 2: server 1 stopped after {served_by_stopped} lines ({report:?}); \
         others {before:?} -> {after:?}; requests sent {}, failed {} (bound 0)",
        result.sent, result.failed
    );
    assert_eq!(
        result.failed,
        0,
        "a graceful stop behind HAProxy loses no request: {:?}\n{}",
        result.errors,
        haproxy.logs()
    );
    assert!(
        after[0] > before[0] && after[2] > before[2],
        "{before:?} -> {after:?}"
    );
    let total: u64 = after.iter().sum::<u64>() + served_by_stopped;
    assert!(
        total == result.sent,
        "every request answered: {total} lines for {} sent",
        result.sent
    );
    drop(haproxy);
    for server in servers.into_iter().flatten() {
        let stats = server.running.stop().stats();
        assert_eq!(stats.rejected, 0, "{stats:?}");
    }
}

#[test]
fn the_rest_example_behind_haproxy_answers_whoami_with_the_client() {
    let mut rest = Example::start(
        "rest",
        &[
            "127.0.0.1:0",
            "--proxy-protocol",
            "v2",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = rest.metrics_address();
    let haproxy = Balancer::haproxy_rest(rest.address.parse().expect("an address"), metrics);
    let out = run(
        Command::new("curl").args([
            "-sS",
            "--max-time",
            "10",
            "--interface",
            &CLIENT.to_string(),
            "-w",
            "\n%{local_ip}:%{local_port}",
            &format!("http://{}/whoami", haproxy.front),
        ]),
        CLIENT_DEADLINE,
    );
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, local) = text
        .rsplit_once('\n')
        .expect("the body, then curl's address");
    eprintln!("rest behind haproxy: {body} (curl from {local})");
    let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(json["client"], local, "the client's address, not HAProxy's");
    drop(haproxy);
    assert_eq!(rest.stop(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn the_echo_example_behind_nginx_echoes_without_the_header() {
    let echo = Example::start("echo", &["tcp", "127.0.0.1:0", "--proxy-protocol", "v1"]);
    let nginx = Balancer::nginx(&[echo.address.parse().expect("an address")]);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((CLIENT, 0)).into()).unwrap();
    socket.connect(&nginx.front.into()).unwrap();
    let mut client: std::net::TcpStream = socket.into();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let line = b"through nginx\n";
    client.write_all(line).unwrap();
    // Exactly the line comes back: the header nginx sent before it was the server's to read.
    let mut back = vec![0; line.len()];
    client.read_exact(&mut back).unwrap();
    assert_eq!(back, line);
    drop(client);
    drop(nginx);
    assert_eq!(echo.stop(Signal::SIGTERM).code(), Some(0));
}

/// Requests completed per phase of the HAProxy scale-out (about half a second of load).
const PHASE_REQUESTS: u64 = 3_000;

/// Connections HAProxy logged as served by each of `servers` (`echo/echo1`...), in order.
fn per_server(haproxy: &Balancer, servers: usize) -> Vec<u64> {
    let logged = haproxy.connections_per_server();
    (1..=servers)
        .map(|i| logged.get(&format!("echo/echo{i}")).copied().unwrap_or(0))
        .collect()
}

/// haproxy.cfg as its header says: three echo examples with `--metrics` and `--drain-delay 2`,
/// health checks on their /readyz. One stopped gracefully under a steady load is taken out by
/// its failing /readyz while it still serves (HAProxy logs it DOWN for `503`, not for a refused
/// connection), and no request fails.
#[test]
fn haproxy_takes_a_draining_echo_example_out_on_readyz_and_loses_nothing() {
    let hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let mut servers: Vec<(Example, SocketAddr, SocketAddr)> = hosts
        .iter()
        .map(|host| {
            let address = format!("{host}:0");
            let mut example = Example::start(
                "echo",
                &[
                    "tcp",
                    &address,
                    "--proxy-protocol",
                    "v2",
                    "--metrics",
                    &address,
                    "--drain-delay",
                    "2",
                ],
            );
            let metrics = example.metrics_address();
            let served = example.address.parse().expect("an address");
            (example, served, metrics)
        })
        .collect();
    let checked: Vec<(SocketAddr, SocketAddr)> = servers.iter().map(|s| (s.1, s.2)).collect();
    let haproxy = Balancer::haproxy(&checked, "send-proxy-v2");
    let load = LineLoad::start(haproxy.front, 4);

    // Phase 1: the three share the load.
    let (t0, s0) = (load.tally(), per_server(&haproxy, 3));
    assert!(
        load.wait_completed(PHASE_REQUESTS, Duration::from_secs(20)),
        "the load did not get going: {:?}\n{}",
        load.errors(),
        haproxy.logs()
    );
    let (t1, s1) = (load.tally(), per_server(&haproxy, 3));
    eprintln!(
        "phase 1, three servers: {}; connections per server {:?}",
        t1 - t0,
        sub(&s1, &s0)
    );
    assert_eq!((t1 - t0).failed, 0, "{:?}", load.errors());
    assert!(sub(&s1, &s0).iter().all(|&n| n > 0), "{s0:?} -> {s1:?}");

    // Phase 2: SIGTERM to echo2. It serves on for 2 s with /readyz failing; HAProxy's checks
    // (inter 1s fall 2) take it out; then it closes and exits.
    let stopping = std::time::Instant::now();
    let (example, _, _) = servers.remove(1);
    assert_eq!(example.stop(Signal::SIGTERM).code(), Some(0));
    let stopped_after = stopping.elapsed();
    assert!(
        load.wait_completed(PHASE_REQUESTS, Duration::from_secs(20)),
        "the load stalled after the stop: {:?}\n{}",
        load.errors(),
        haproxy.logs()
    );
    let errors = load.errors();
    let end = load.stop();
    let s2 = per_server(&haproxy, 3);
    let logs = haproxy.logs();
    let down = logs
        .lines()
        .find(|l| l.contains("echo/echo2 is DOWN"))
        .unwrap_or("(no DOWN line)")
        .to_owned();
    eprintln!(
        "phase 2, echo2 stopped gracefully (exited {:.1} s after SIGTERM): {} (bound 0 \
         failed); connections per server {:?}; HAProxy: {down}",
        stopped_after.as_secs_f64(),
        end - t1,
        sub(&s2, &s1)
    );
    assert_eq!(
        end.failed, 0,
        "a graceful stop behind HAProxy loses no request: {errors:?}\n{logs}"
    );
    assert!(
        down.contains("code: 503"),
        "taken out by its /readyz while draining, not by a refused connection: {down}"
    );
    let after = sub(&s2, &s1);
    assert!(after[0] > 0 && after[2] > 0, "{after:?}");
    drop(haproxy);
    for (example, _, _) in servers {
        assert_eq!(example.stop(Signal::SIGTERM).code(), Some(0));
    }
}

/// `after - before`, element by element.
fn sub(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}
