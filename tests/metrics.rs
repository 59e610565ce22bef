//! What an operator scrapes: the metrics text read by a real parser (Python's
//! `prometheus_client`), its totals against the requests the test sent, and `/readyz` through
//! a server's life, including a SIGTERM drain of the echo example behind `--drain-delay`; and
//! the same parser on the text of the echo example's prefork supervisor (its workers added up).

mod example;
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use nix::sys::signal::Signal;
use socketserver::{
    HandleResult, Handler, StreamRequest, StreamRequestHandler, TcpServer, Threading,
};
use util::{eventually, serve, tcp_client, PATIENCE};

/// Echoes one line; fails on `fail`.
#[derive(Handler)]
struct OneLine;

impl StreamRequestHandler for OneLine {
    fn handle(&mut self, request: &mut StreamRequest<'_>) -> HandleResult {
        let mut line = String::new();
        request.rfile.read_line(&mut line)?;
        if line.trim_end() == "fail" {
            return Err("asked to fail".into());
        }
        request.wfile.write_all(line.as_bytes())?;
        Ok(())
    }
}

/// `GET path` on the metrics listener: (status, body).
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut client = TcpStream::connect(address).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client
        .write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    let status = reply
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    (status, body)
}

/// Parses the exposition with `prometheus_client.parser` (format 0.0.4) and prints each
/// sample as `name{labels} value`, labels sorted, one per line.
const PY_PARSE: &str = r#"
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
url = sys.argv[1]
with urllib.request.urlopen(url, timeout=10) as r:
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
    text = r.read().decode()
kinds = {}
for family in text_string_to_metric_families(text):
    kinds[family.name] = family.type
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
for name, kind in sorted(kinds.items()):
    print(f"TYPE {name} {kind}")
print("ok")
"#;

fn sample(parsed: &str, series: &str) -> f64 {
    parsed
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{parsed}"))
        .parse()
        .unwrap()
}

#[test]
fn prometheus_client_parses_the_text_and_the_totals_are_the_requests_sent() {
    let server = TcpServer::<OneLine, Threading>::builder()
        .bind("127.0.0.1:0")
        .unwrap();
    let metrics = server.serve_metrics("127.0.0.1:0").unwrap();
    let running = serve(server);
    const OK: usize = 20;
    const FAILING: usize = 5;
    for i in 0..OK {
        let mut client = tcp_client(running.inet());
        client.write_all(format!("line {i}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        BufReader::new(client).read_line(&mut reply).unwrap();
        assert_eq!(reply, format!("line {i}\n"));
    }
    for _ in 0..FAILING {
        let mut client = tcp_client(running.inet());
        client.write_all(b"fail\n").unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
    }
    // The last request is counted when its handler's thread ends it, just after the reply.
    let all = format!(
        "socketserver_request_duration_seconds_count {}\n",
        OK + FAILING
    );
    assert!(eventually(PATIENCE, || get(metrics.address(), "/metrics")
        .1
        .contains(&all)));
    let url = format!("http://{}/metrics", metrics.address());
    let out = example::python_output(PY_PARSE, &[&url]);
    example::assert_python_ok(&out);
    let parsed = String::from_utf8(out.stdout).unwrap();
    eprintln!("{parsed}");
    assert_eq!(
        sample(
            &parsed,
            "socketserver_requests_total{outcome=\"succeeded\"}"
        ),
        OK as f64
    );
    assert_eq!(
        sample(&parsed, "socketserver_requests_total{outcome=\"failed\"}"),
        FAILING as f64
    );
    assert_eq!(
        sample(&parsed, "socketserver_request_duration_seconds_count{}"),
        (OK + FAILING) as f64
    );
    assert_eq!(
        sample(
            &parsed,
            "socketserver_request_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        (OK + FAILING) as f64
    );
    assert_eq!(sample(&parsed, "socketserver_requests_active{}"), 0.0);
    assert_eq!(sample(&parsed, "socketserver_listen_queue{}"), 0.0);
    assert_eq!(sample(&parsed, "socketserver_ready{}"), 1.0);
    for (family, kind) in [
        ("socketserver_requests", "counter"),
        ("socketserver_request_duration_seconds", "histogram"),
        ("socketserver_strategy_busy", "gauge"),
    ] {
        assert!(
            parsed.contains(&format!("TYPE {family} {kind}")),
            "{family} is a {kind}:\n{parsed}"
        );
    }
    drop(running.stop());
    drop(metrics);
}

#[test]
fn readyz_is_ready_only_while_the_server_serves() {
    let server = TcpServer::<OneLine>::bind("127.0.0.1:0").unwrap();
    let metrics = server.serve_metrics("127.0.0.1:0").unwrap();
    assert_eq!(get(metrics.address(), "/readyz").0, 503, "not serving yet");
    assert_eq!(get(metrics.address(), "/healthz"), (200, "ok\n".into()));
    let running = serve(server);
    assert!(eventually(PATIENCE, || get(metrics.address(), "/readyz").0 == 200));
    let server = running.stop();
    assert_eq!(get(metrics.address(), "/readyz").0, 503, "stopped");
    assert_eq!(get(metrics.address(), "/nothing").0, 404);
    drop(server);
}

#[test]
fn on_sigterm_readyz_fails_while_echo_still_serves_then_it_stops() {
    let mut echo = example::Example::start(
        "echo",
        &[
            "tcp",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--drain-delay",
            "3",
        ],
    );
    let metrics = echo.metrics_address();
    let address: SocketAddr = echo.address.parse().unwrap();
    assert_eq!(get(metrics, "/readyz").0, 200);
    echo.signal(Signal::SIGTERM);
    assert!(
        eventually(PATIENCE, || get(metrics, "/readyz").0 == 503),
        "/readyz fails once the drain starts"
    );
    // Still serving: a load balancer has the drain delay to move its traffic.
    let mut client = TcpStream::connect(address).expect("the port is still open");
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.write_all(b"still here").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "still here");
    // It stops by itself once the delay and the grace period are over.
    assert_eq!(echo.exit_status().code(), Some(0));
}

#[test]
fn prometheus_client_parses_the_prefork_supervisors_text_with_every_worker_in_it() {
    let mut echo = example::Example::start(
        "echo",
        &[
            "tcp",
            "127.0.0.1:0",
            "--mode",
            "prefork",
            "--workers",
            "2",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let metrics = echo.metrics_address();
    let address: SocketAddr = echo.address.parse().unwrap();
    const SENT: usize = 30;
    for i in 0..SENT {
        let mut client = TcpStream::connect(address).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        client.write_all(format!("hello {i}").as_bytes()).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).unwrap();
        assert_eq!(reply, format!("hello {i}"));
    }
    let all = format!("socketserver_request_duration_seconds_count {SENT}\n");
    assert!(eventually(PATIENCE, || get(metrics, "/metrics")
        .1
        .contains(&all)));
    let url = format!("http://{metrics}/metrics");
    let out = example::python_output(PY_PARSE, &[&url]);
    example::assert_python_ok(&out);
    let parsed = String::from_utf8(out.stdout).unwrap();
    eprintln!("{parsed}");
    assert_eq!(
        sample(
            &parsed,
            "socketserver_requests_total{outcome=\"succeeded\"}"
        ),
        SENT as f64
    );
    assert_eq!(
        sample(&parsed, "socketserver_workers{state=\"ready\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &parsed,
            "socketserver_worker_restarts_total{reason=\"killed\"}"
        ),
        0.0
    );
    assert_eq!(sample(&parsed, "socketserver_ready{}"), 1.0);
    // No request runs now, in any worker.
    assert_eq!(sample(&parsed, "socketserver_strategy_busy{}"), 0.0);
    for (family, kind) in [
        ("socketserver_workers", "gauge"),
        ("socketserver_worker_restarts", "counter"),
        ("socketserver_request_duration_seconds", "histogram"),
    ] {
        assert!(
            parsed.contains(&format!("TYPE {family} {kind}")),
            "{family} is a {kind}:\n{parsed}"
        );
    }
    assert_eq!(get(metrics, "/readyz"), (200, "ready\n".into()));
    assert_eq!(echo.stop(Signal::SIGTERM).code(), Some(0));
}
